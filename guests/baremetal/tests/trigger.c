/* trigger - the debug triggers (Sdtrig): tselect enumeration, tinfo, tdata1 as WARL,
   mcontrol (type 2) and mcontrol6 (type 6) address triggers on execute, load and store
   with the M/S/U bits, equal / NAPOT / >= / < matches and chains, breakpoint exceptions
   with mtval = the address, and the rule that keeps M-mode handlers (MIE = 0) from
   triggering again. */
#include "test.h"

long trig_inc(long);
long trig_loop(long);
long trig_c_inc(long);
extern char trig_loop_body[], trig_c_insn[];

#define TYPE2 (2UL << 60)
#define TYPE6 (6UL << 60)
#define DMODE (1UL << 59)
#define ACTION(a) ((unsigned long)(a) << 12)
#define CHAIN (1UL << 11)
#define MATCH(m) ((unsigned long)(m) << 7)
#define T_M (1UL << 6)
#define T_S (1UL << 4)
#define T_U (1UL << 3)
#define T_EXEC 4UL
#define T_STORE 2UL
#define T_LOAD 1UL
#define CAUSE_BREAKPOINT_ 3

static volatile uint64_t data[8] __attribute__((aligned(64)));

static int ntriggers;

/* QEMU 7.2 leaves mtval 0 on a trigger's breakpoint exception (Sdtrig: the address). */
#define CHECK_TVAL(t, want) do { \
    if ((t) == 0) DEVIATION("breakpoint exception from a trigger with mtval 0"); \
    else CHECK_EQ(t, want); } while (0)

static void trig_set(int i, unsigned long t1, unsigned long t2)
{
    csr_write(tselect, i);
    csr_write(tdata1, TYPE2);   /* nothing enabled */
    csr_write(tdata2, t2);
    csr_write(tdata1, t1);
}

static void trig_clear_all(void)
{
    for (int i = 0; i < ntriggers; i++) {
        csr_write(tselect, i);
        csr_write(tdata1, TYPE2);   /* nothing enabled */
        csr_write(tdata2, 0);
    }
}

static long load_at(volatile uint64_t *p, long old)
{
    long v = old;
    __asm__ __volatile__(".option push\n.option norvc\nld %0, 0(%1)\n.option pop" : "+r"(v) : "r"(p) : "memory");
    return v;
}
static void store_at(volatile uint64_t *p, long v)
{
    __asm__ __volatile__(".option push\n.option norvc\nsd %0, 0(%1)\n.option pop" : : "r"(v), "r"(p) : "memory");
}
static void store_word(volatile void *p, long v)
{
    __asm__ __volatile__(".option push\n.option norvc\nsw %0, 0(%1)\n.option pop" : : "r"(v), "r"(p) : "memory");
}

/* M-mode action 0 triggers fire only with MIE set (no tcontrol); mie = 0 keeps interrupts out. */
static void mie_on(void) { csr_write(mie, 0); csr_set(mstatus, MSTATUS_MIE); }
static void mie_off(void) { csr_clear(mstatus, MSTATUS_MIE); }

static void test_enumerate(void)
{
    int n = 0;
    for (; n < 64; n++) {
        csr_write(tselect, n);
        if (csr_read(tselect) != (unsigned long)n) break;
    }
    ntriggers = n;
    CHECK(ntriggers >= 2);
    /* Out of reset each one exists: a type other than 0 ("none here"). */
    for (int i = 0; i < ntriggers; i++) {
        csr_write(tselect, i);
        CHECK((csr_read(tdata1) >> 60) != 0);
    }
    printf("%d triggers\n", ntriggers);
    csr_write(tselect, 0);
    unsigned long info = csr_read(tinfo);
    CHECK_EQ((info >> 2) & 1, 1);   /* mcontrol */
    CHECK_EQ((info >> 6) & 1, 1);   /* mcontrol6 */
}

static void test_warl(void)
{
    csr_write(tselect, 0);
    /* The riscv-tests breakpoint test's value reads back exactly. */
    csr_write(tdata1, TYPE2 | T_M | T_EXEC);
    CHECK_EQ(csr_read(tdata1), TYPE2 | T_M | T_EXEC);
    csr_write(tdata1, TYPE6 | T_M | T_S | T_U | T_LOAD | T_STORE | MATCH(2));
    if (csr_read(tdata1) == (TYPE6 | T_M | T_S | T_U | T_LOAD | T_STORE))
        DEVIATION("mcontrol6 without the >= match");
    else
        CHECK_EQ(csr_read(tdata1), TYPE6 | T_M | T_S | T_U | T_LOAD | T_STORE | MATCH(2));
    /* M-mode cannot take a trigger for a debugger (dmode) nor ask for debug mode (action 1). */
    csr_write(tdata1, TYPE6 | DMODE | ACTION(1) | T_M | T_EXEC);
    CHECK_EQ(csr_read(tdata1) & (DMODE | ACTION(15)), 0);
    CHECK_EQ(csr_read(tdata1) >> 60, 6);
    /* tdata2 holds any address. */
    csr_write(tdata2, 0x123456789abcdef0UL);
    CHECK_EQ(csr_read(tdata2), 0x123456789abcdef0UL);
    csr_write(tdata1, TYPE2);   /* nothing enabled */
    trig_clear_all();
}

static void test_execute(void)
{
    /* Equal match on a 32-bit instruction, M-mode, MIE set: a breakpoint exception before it runs. */
    trig_set(0, TYPE2 | T_M | T_EXEC, (unsigned long)trig_inc);
    mie_on();
    trap_catch_start();
    long r = trig_inc(10);
    trap_catch_stop();
    mie_off();
    CHECK_EQ(caught.count, 1);
    CHECK_EQ(caught.cause, CAUSE_BREAKPOINT_);
    CHECK_EQ(caught.epc, (unsigned long)trig_inc);
    CHECK_TVAL(caught.tval, (unsigned long)trig_inc);
    CHECK_EQ(r, 10);   /* the addi did not run */

    /* The same with MIE clear: an M-mode handler must not trigger again, so nothing fires. */
    trap_catch_start();
    r = trig_inc(10);
    trap_catch_stop();
    if (caught.count == 1)
        DEVIATION("an action 0 trigger fired in M-mode with MIE = 0 (no tcontrol)");
    else
        CHECK_EQ(r, 11);

    /* Only the M bit: S-mode runs through; with the S bit too it traps to M from S. */
    CHECK_EQ(run_mode(PRV_S, trig_inc, 20), 21);
    trig_set(0, TYPE6 | T_S | T_EXEC, (unsigned long)trig_inc);
    trap_catch_start();
    r = run_mode(PRV_S, trig_inc, 20);
    trap_catch_stop();
    CHECK_EQ(caught.count, 1);
    CHECK_EQ(caught.cause, CAUSE_BREAKPOINT_);
    CHECK_EQ(caught.prev, PRV_S);
    CHECK_TVAL(caught.tval, (unsigned long)trig_inc);
    CHECK_EQ(r, 20);
    /* U only: from U it fires, from S it does not. */
    trig_set(0, TYPE6 | T_U | T_EXEC, (unsigned long)trig_inc);
    CHECK_EQ(run_mode(PRV_S, trig_inc, 30), 31);
    trap_catch_start();
    r = run_mode(PRV_U, trig_inc, 30);
    trap_catch_stop();
    CHECK_EQ(caught.count, 1);
    CHECK_EQ(caught.prev, PRV_U);
    CHECK_EQ(r, 30);

    /* A compressed instruction at 2 mod 4. */
    trig_set(0, TYPE6 | T_M | T_EXEC, (unsigned long)trig_c_insn);
    mie_on();
    trap_catch_start();
    r = trig_c_inc(5);
    trap_catch_stop();
    mie_off();
    CHECK_EQ(caught.count, 1);
    CHECK_TVAL(caught.tval, (unsigned long)trig_c_insn);
    CHECK_EQ(r, 5);

    trig_clear_all();
}

/* A hook that counts breakpoints on trig_loop_body and disarms the trigger at the 5th. */
static volatile int loop_hits;
static int loop_hook(struct trap_frame *f, int smode)
{
    if (f->cause != CAUSE_BREAKPOINT_ || f->epc != (unsigned long)trig_loop_body) return 0;
    if (++loop_hits == 5) { csr_write(tselect, 1); csr_write(tdata1, TYPE2);   /* nothing enabled */ }
    return 1;   /* re-run the addi: with the trigger armed it traps again */
}

/* A hot loop (perhaps translated by now) still stops where the trigger says. */
static void test_execute_hot(void)
{
    CHECK_EQ(trig_loop(200000), 200000);
    trig_set(1, TYPE6 | T_M | T_EXEC, (unsigned long)trig_loop_body);
    loop_hits = 0;
    m_trap_hook = loop_hook;
    mie_on();
    long r = trig_loop(1000);
    mie_off();
    m_trap_hook = 0;
    CHECK_EQ(loop_hits, 5);
    CHECK_EQ(r, 1000);
    trig_clear_all();
}

static void test_data(void)
{
    for (int i = 0; i < 8; i++) data[i] = 100 + i;
    /* Loads of the page first, so its translation is cached before the trigger is armed. */
    long sum = 0;
    for (int i = 0; i < 1000; i++) sum += load_at(&data[i & 7], 0);
    CHECK_EQ(sum, 1000 * 100 + 125 * 28);

    /* Load trigger, equal: the load traps and does not happen; stores and other loads do not trap. */
    trig_set(0, TYPE2 | T_M | T_LOAD, (unsigned long)&data[2]);
    mie_on();
    trap_catch_start();
    long v = load_at(&data[2], -1);
    trap_catch_stop();
    CHECK_EQ(caught.count, 1);
    CHECK_EQ(caught.cause, CAUSE_BREAKPOINT_);
    CHECK_TVAL(caught.tval, (unsigned long)&data[2]);
    CHECK_EQ(v, -1);
    EXPECT_NO_TRAP(v = load_at(&data[3], -1));
    CHECK_EQ(v, 103);
    EXPECT_NO_TRAP(store_at(&data[2], 42));
    mie_off();
    trig_clear_all();   /* QEMU's triggers fire with MIE = 0 too: none armed while C code reads data */
    CHECK_EQ(data[2], 42);

    /* Store trigger: the store traps and memory keeps its value. */
    trig_set(0, TYPE6 | T_M | T_STORE, (unsigned long)&data[4]);
    mie_on();
    trap_catch_start();
    store_at(&data[4], 7);
    /* An equal match sees any byte of the access: a word store covering it. */
    store_word((char *)&data[4], 9);
    trap_catch_stop();
    mie_off();
    trig_clear_all();
    CHECK_EQ(caught.count, 2);
    CHECK_TVAL(caught.tval, (unsigned long)&data[4]);
    CHECK_EQ(data[4], 104);

    /* A range from a chain: >= &data[1] and < &data[3], on stores. */
    trig_clear_all();
    trig_set(0, TYPE6 | T_M | T_STORE | MATCH(2) | CHAIN, (unsigned long)&data[1]);
    trig_set(1, TYPE6 | T_M | T_STORE | MATCH(3), (unsigned long)&data[3]);
    csr_write(tselect, 0);
    if (((csr_read(tdata1) >> 7) & 15) != 2) {
        DEVIATION("mcontrol6 without the >= and < matches: no ranges");
    } else {
        CHECK_EQ(csr_read(tdata1) & CHAIN, CHAIN);
        mie_on();
        EXPECT_TRAP(CAUSE_BREAKPOINT_, store_at(&data[1], 1));
        EXPECT_TRAP(CAUSE_BREAKPOINT_, store_at(&data[2], 1));
        EXPECT_NO_TRAP(store_at(&data[0], 1));
        EXPECT_NO_TRAP(store_at(&data[3], 1));
        mie_off();
        trig_clear_all();
        CHECK_EQ(data[1], 101);
        CHECK_EQ(data[3], 1);
    }

    /* NAPOT: 16 bytes at &data[4] (tdata2 = base | 7), on loads. */
    trig_clear_all();
    trig_set(0, TYPE6 | T_M | T_LOAD | MATCH(1), (unsigned long)&data[4] | 7);
    mie_on();
    EXPECT_TRAP(CAUSE_BREAKPOINT_, load_at(&data[5], 0));
    EXPECT_TRAP(CAUSE_BREAKPOINT_, load_at(&data[4], 0));
    EXPECT_NO_TRAP(load_at(&data[6], 0));
    EXPECT_NO_TRAP(load_at(&data[3], 0));
    mie_off();

    /* Loads and stores from S-mode with the S bit only. */
    trig_set(0, TYPE6 | T_S | T_LOAD | T_STORE, (unsigned long)&data[7]);
    EXPECT_NO_TRAP(load_at(&data[7], 0));
    trig_clear_all();
}

static long s_load7(long a) { return load_at(&data[7], a); }

static void test_data_smode(void)
{
    data[7] = 77;
    trig_set(0, TYPE6 | T_S | T_LOAD, (unsigned long)&data[7]);
    trap_catch_start();
    long v = run_mode(PRV_S, s_load7, -5);
    trap_catch_stop();
    CHECK_EQ(caught.count, 1);
    CHECK_EQ(caught.prev, PRV_S);
    CHECK_TVAL(caught.tval, (unsigned long)&data[7]);
    CHECK_EQ(v, -5);
    trig_clear_all();
    CHECK_EQ(run_mode(PRV_S, s_load7, -5), 77);
}

int main(void)
{
    test_enumerate();
    test_warl();
    test_execute();
    test_execute_hot();
    test_data();
    test_data_smode();
    return test_summary("trigger");
}
