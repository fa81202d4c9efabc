/* vm - Sv39 and Sv48 address translation from S-mode (and U-mode through a
   U-accessible alias of RAM): gigapages, megapages, 4 KiB pages, a Sv48
   terapage, misaligned superpages, permissions (R/W/X/U, SUM, MXR), hardware
   A/D updates, every page-fault kind with stval, sfence.vma, MPRV. */
#include "test.h"
#include "insn.h"

#define PTE_V (1ul << 0)
#define PTE_R (1ul << 1)
#define PTE_W (1ul << 2)
#define PTE_X (1ul << 3)
#define PTE_U (1ul << 4)
#define PTE_G (1ul << 5)
#define PTE_A (1ul << 6)
#define PTE_D (1ul << 7)
#define PPN(pa) ((((unsigned long)(pa)) >> 12) << 10)
#define RAM 0x80000000ul

/* Page tables */
static uint64_t root39[512] __attribute__((aligned(4096)));   /* also Sv48's level-2 table for VA < 512 GiB */
static uint64_t l1_c0[512] __attribute__((aligned(4096)));    /* VA 0xc0000000 .. 0xffffffff */
static uint64_t l0_c04[512] __attribute__((aligned(4096)));   /* VA 0xc0400000 .. 0xc05fffff */
static uint64_t root48[512] __attribute__((aligned(4096)));
static uint64_t l2_hi48[512] __attribute__((aligned(4096)));  /* Sv48 VA 0x80_0000_0000 .. */

/* Physical pages mapped by the 4 KiB entries */
enum { PG_RO, PG_RW, PG_XO, PG_U, PG_AD, PG_A5, PG_A6, PG_CODE, PG_COUNT };
static uint64_t pages[PG_COUNT][512] __attribute__((aligned(4096)));
static uint64_t ustack[512] __attribute__((aligned(16)));
static volatile uint64_t marker = 0x6d61726b65722121ul;

/* Virtual layout */
#define VA_MEGA      0xc0000000ul             /* 2 MiB page -> PA 0x80000000 */
#define VA_BADMEGA   0xc0200000ul             /* megapage with a misaligned PPN */
#define VA_PAGE(i)   (0xc0400000ul + (unsigned long)(i) * 4096ul)
enum { V_RO, V_RW, V_XO, V_U, V_AD, V_AD2, V_INVALID, V_WONLY, V_CODE_X, V_CODE_R, V_CODE_U,
       V_CODE_A0, V_REMAP };
#define ALIAS_OFF    (0x40000000l - (long)RAM)  /* U gigapage: VA 0x40000000 -> PA 0x80000000 */
#define VA_SV48_HI   0x8000000000ul           /* Sv48 gigapage -> PA 0x80000000; non-canonical in Sv39 */
#define VA_SV48_TERA 0x10000000000ul          /* Sv48 terapage -> PA 0 */
#define VA_NONCANON48 0x0000800000000000ul    /* non-canonical in Sv48 */

#define SATP(mode, root) (((unsigned long)(mode) << SATP_MODE_SHIFT) | ((unsigned long)(root) >> 12))
#define sfence_all() __asm__ __volatile__("sfence.vma" ::: "memory")
#define sfence_va(va) __asm__ __volatile__("sfence.vma %0, zero" : : "r"(va) : "memory")

typedef long (*code_fn)(void);
#define CALL(va) (((code_fn)(va))())

static void setup(void)
{
    root39[2] = PPN(RAM) | PTE_V | PTE_R | PTE_W | PTE_X | PTE_A | PTE_D;            /* identity gigapage */
    root39[1] = PPN(RAM) | PTE_V | PTE_R | PTE_W | PTE_X | PTE_U | PTE_A | PTE_D;    /* U alias gigapage */
    root39[3] = PPN(l1_c0) | PTE_V;
    l1_c0[0] = PPN(RAM) | PTE_V | PTE_R | PTE_W | PTE_A | PTE_D;                     /* megapage */
    l1_c0[1] = PPN(RAM + 0x1000) | PTE_V | PTE_R | PTE_W | PTE_A | PTE_D;            /* misaligned */
    l1_c0[2] = PPN(l0_c04) | PTE_V;
    l0_c04[V_RO] = PPN(pages[PG_RO]) | PTE_V | PTE_R | PTE_A | PTE_D;
    l0_c04[V_RW] = PPN(pages[PG_RW]) | PTE_V | PTE_R | PTE_W | PTE_A | PTE_D;
    l0_c04[V_XO] = PPN(pages[PG_XO]) | PTE_V | PTE_X | PTE_A;
    l0_c04[V_U] = PPN(pages[PG_U]) | PTE_V | PTE_R | PTE_W | PTE_U | PTE_A | PTE_D;
    l0_c04[V_AD] = PPN(pages[PG_AD]) | PTE_V | PTE_R | PTE_W;                         /* A = D = 0 */
    l0_c04[V_AD2] = PPN(pages[PG_AD]) | PTE_V | PTE_R | PTE_W;                        /* A = D = 0 */
    l0_c04[V_INVALID] = PPN(pages[PG_RW]) | PTE_R | PTE_W | PTE_A | PTE_D;            /* V = 0 */
    l0_c04[V_WONLY] = PPN(pages[PG_RW]) | PTE_V | PTE_W | PTE_A | PTE_D;              /* reserved */
    l0_c04[V_CODE_X] = PPN(pages[PG_CODE]) | PTE_V | PTE_R | PTE_X | PTE_A;
    l0_c04[V_CODE_R] = PPN(pages[PG_CODE]) | PTE_V | PTE_R | PTE_A;                   /* not X */
    l0_c04[V_CODE_U] = PPN(pages[PG_CODE]) | PTE_V | PTE_R | PTE_X | PTE_U | PTE_A;
    l0_c04[V_CODE_A0] = PPN(pages[PG_CODE]) | PTE_V | PTE_X;                          /* A = 0 */
    l0_c04[V_REMAP] = PPN(pages[PG_A5]) | PTE_V | PTE_R | PTE_W | PTE_A | PTE_D;

    root48[0] = PPN(root39) | PTE_V;
    root48[1] = PPN(l2_hi48) | PTE_V;
    l2_hi48[0] = PPN(RAM) | PTE_V | PTE_R | PTE_W | PTE_X | PTE_A | PTE_D;
    root48[2] = PPN(0) | PTE_V | PTE_R | PTE_W | PTE_A | PTE_D;                       /* terapage */

    for (int i = 0; i < 512; i++) {
        pages[PG_RO][i] = 0x1111111111111111ul;
        pages[PG_RW][i] = 0x2222222222222222ul;
        pages[PG_XO][i] = 0x3333333333333333ul;
        pages[PG_U][i] = 0x4444444444444444ul;
        pages[PG_AD][i] = 0x5555555555555555ul;
        pages[PG_A5][i] = 0xa5a5a5a5a5a5a5a5ul;
        pages[PG_A6][i] = 0xa6a6a6a6a6a6a6a6ul;
    }
    pages[PG_CODE][0] = 0x0000806702a00513ul;        /* addi a0, zero, 42; jalr zero, 0(ra) */
    __asm__ __volatile__("fence.i" ::: "memory");
}

/* expects exactly one page fault of `cause` at stval `va`, taken by the S handler */
#define EXPECT_PF(cause_, va_, stmt) do { \
    EXPECT_TRAP(cause_, stmt); \
    CHECK_EQ(caught.tval, (unsigned long)(va_)); \
    CHECK_EQ(caught.handler, PRV_S); } while (0)

/* ---- S-mode, Sv39 ---------------------------------------------------------- */
static long s_sv39(long arg)
{
    unsigned long moff = (unsigned long)&marker - RAM;

    /* satp as seen from S */
    CHECK_EQ(csr_read(satp) >> SATP_MODE_SHIFT, SATP_MODE_SV39);

    /* megapage: another view of the start of RAM, readable and writable */
    CHECK_EQ(LD("lwu", VA_MEGA, 0), *(volatile uint32_t *)RAM);
    CHECK_EQ(LD("ld", VA_MEGA + moff, 0), 0x6d61726b65722121ul);
    ST("sd", VA_MEGA + moff, 0, 0x0123456789abcdeful);
    CHECK_EQ(marker, 0x0123456789abcdeful);
    marker = 0x6d61726b65722121ul;
    /* U alias gigapage: not accessible from S without SUM */
    EXPECT_PF(CAUSE_LOAD_PAGE_FAULT, (unsigned long)&marker + ALIAS_OFF,
              LD("ld", (unsigned long)&marker + ALIAS_OFF, 0));

    /* 4 KiB pages and their permissions */
    CHECK_EQ(LD("ld", VA_PAGE(V_RO), 0), 0x1111111111111111ul);
    CHECK_EQ(LD("lbu", VA_PAGE(V_RO) + 4095, 0), 0x11);
    EXPECT_PF(CAUSE_STORE_PAGE_FAULT, VA_PAGE(V_RO) + 8, ST("sd", VA_PAGE(V_RO), 8, 1));
    CHECK_EQ(pages[PG_RO][1], 0x1111111111111111ul);
    ST("sd", VA_PAGE(V_RW), 16, 0xfeedfacecafebeeful);
    CHECK_EQ(pages[PG_RW][2], 0xfeedfacecafebeeful);
    CHECK_EQ(LD("ld", VA_PAGE(V_RW), 16), 0xfeedfacecafebeeful);
    /* AMOs need write permission: store/AMO page fault on a read-only page */
    {
        unsigned long va = VA_PAGE(V_RO) + 24, old;
        trap_catch_start();
        __asm__ __volatile__(".option push\n.option norvc\namoadd.d %0, %2, (%1)\n.option pop"
                             : "=r"(old) : "r"(va), "r"(1ul) : "memory");
        trap_catch_stop();
        CHECK_EQ(caught.count, 1);
        CHECK_EQ(caught.cause, CAUSE_STORE_PAGE_FAULT);
        CHECK_EQ(caught.tval, va);
    }

    /* execute-only page: loads fault unless MXR */
    EXPECT_PF(CAUSE_LOAD_PAGE_FAULT, VA_PAGE(V_XO), LD("ld", VA_PAGE(V_XO), 0));
    csr_set(sstatus, MSTATUS_MXR);
    EXPECT_NO_TRAP(CHECK_EQ(LD("ld", VA_PAGE(V_XO), 0), 0x3333333333333333ul));
    EXPECT_PF(CAUSE_STORE_PAGE_FAULT, VA_PAGE(V_XO), ST("sd", VA_PAGE(V_XO), 0, 0));
    csr_clear(sstatus, MSTATUS_MXR);

    /* invalid and reserved (W without R) PTEs */
    EXPECT_PF(CAUSE_LOAD_PAGE_FAULT, VA_PAGE(V_INVALID) + 8, LD("ld", VA_PAGE(V_INVALID), 8));
    EXPECT_PF(CAUSE_STORE_PAGE_FAULT, VA_PAGE(V_INVALID) + 8, ST("sd", VA_PAGE(V_INVALID), 8, 0));
    EXPECT_PF(CAUSE_FETCH_PAGE_FAULT, VA_PAGE(V_INVALID), CALL(VA_PAGE(V_INVALID)));
    CHECK_EQ(caught.epc, VA_PAGE(V_INVALID));
    EXPECT_PF(CAUSE_LOAD_PAGE_FAULT, VA_PAGE(V_WONLY), LD("ld", VA_PAGE(V_WONLY), 0));
    EXPECT_PF(CAUSE_STORE_PAGE_FAULT, VA_PAGE(V_WONLY) + 0x10, ST("sd", VA_PAGE(V_WONLY), 0x10, 0));
    /* misaligned superpage */
    EXPECT_PF(CAUSE_LOAD_PAGE_FAULT, VA_BADMEGA + 0x40, LD("ld", VA_BADMEGA, 0x40));
    EXPECT_PF(CAUSE_STORE_PAGE_FAULT, VA_BADMEGA + 0x40, ST("sd", VA_BADMEGA, 0x40, 0));
    /* unmapped canonical address, and a non-canonical one (bit 39 set, bits 63..40 clear) */
    EXPECT_PF(CAUSE_LOAD_PAGE_FAULT, 0xffffffc000000000ul, LD("ld", 0xffffffc000000000ul, 0));
    EXPECT_PF(CAUSE_LOAD_PAGE_FAULT, VA_SV48_HI, LD("ld", VA_SV48_HI, 0));
    EXPECT_PF(CAUSE_STORE_PAGE_FAULT, VA_SV48_HI + 8, ST("sd", VA_SV48_HI, 8, 0));

    /* instruction fetch */
    EXPECT_NO_TRAP(CHECK_EQ(CALL(VA_PAGE(V_CODE_X)), 42));
    EXPECT_PF(CAUSE_FETCH_PAGE_FAULT, VA_PAGE(V_CODE_R), CALL(VA_PAGE(V_CODE_R)));
    CHECK_EQ(caught.epc, VA_PAGE(V_CODE_R));
    /* S may never execute a U page, even with SUM */
    EXPECT_PF(CAUSE_FETCH_PAGE_FAULT, VA_PAGE(V_CODE_U), CALL(VA_PAGE(V_CODE_U)));
    csr_set(sstatus, MSTATUS_SUM);
    EXPECT_PF(CAUSE_FETCH_PAGE_FAULT, VA_PAGE(V_CODE_U), CALL(VA_PAGE(V_CODE_U)));
    csr_clear(sstatus, MSTATUS_SUM);
    EXPECT_PF(CAUSE_FETCH_PAGE_FAULT, VA_SV48_HI + 0x100, CALL(VA_SV48_HI + 0x100));

    /* U page from S: SUM controls loads/stores */
    EXPECT_PF(CAUSE_LOAD_PAGE_FAULT, VA_PAGE(V_U), LD("ld", VA_PAGE(V_U), 0));
    EXPECT_PF(CAUSE_STORE_PAGE_FAULT, VA_PAGE(V_U), ST("sd", VA_PAGE(V_U), 0, 0));
    csr_set(sstatus, MSTATUS_SUM);
    EXPECT_NO_TRAP(CHECK_EQ(LD("ld", VA_PAGE(V_U), 0), 0x4444444444444444ul));
    EXPECT_NO_TRAP(ST("sd", VA_PAGE(V_U), 8, 0x4545454545454545ul));
    CHECK_EQ(pages[PG_U][1], 0x4545454545454545ul);
    csr_clear(sstatus, MSTATUS_SUM);

    /* hardware A/D updates */
    CHECK_EQ(l0_c04[V_AD] & (PTE_A | PTE_D), 0);
    CHECK_EQ(LD("ld", VA_PAGE(V_AD), 0), 0x5555555555555555ul);
    CHECK_EQ(l0_c04[V_AD] & (PTE_A | PTE_D), PTE_A);
    ST("sd", VA_PAGE(V_AD), 0, 0x5656565656565656ul);
    CHECK_EQ(l0_c04[V_AD] & (PTE_A | PTE_D), PTE_A | PTE_D);
    CHECK_EQ(pages[PG_AD][0], 0x5656565656565656ul);
    ST("sd", VA_PAGE(V_AD2), 8, 0x5757575757575757ul);                 /* store first: A and D */
    CHECK_EQ(l0_c04[V_AD2] & (PTE_A | PTE_D), PTE_A | PTE_D);
    CHECK_EQ(l0_c04[V_CODE_A0] & PTE_A, 0);
    CHECK_EQ(CALL(VA_PAGE(V_CODE_A0)), 42);                            /* fetch sets A */
    CHECK_EQ(l0_c04[V_CODE_A0] & (PTE_A | PTE_D), PTE_A);

    /* sfence.vma after changing a PTE */
    CHECK_EQ(LD("ld", VA_PAGE(V_REMAP), 0), 0xa5a5a5a5a5a5a5a5ul);
    l0_c04[V_REMAP] = PPN(pages[PG_A6]) | PTE_V | PTE_R | PTE_W | PTE_A | PTE_D;
    sfence_va(VA_PAGE(V_REMAP));
    CHECK_EQ(LD("ld", VA_PAGE(V_REMAP), 0), 0xa6a6a6a6a6a6a6a6ul);
    l0_c04[V_REMAP] = PPN(pages[PG_A5]) | PTE_V | PTE_R | PTE_W | PTE_A | PTE_D;
    sfence_all();
    CHECK_EQ(LD("ld", VA_PAGE(V_REMAP), 0), 0xa5a5a5a5a5a5a5a5ul);
    l0_c04[V_REMAP] = PPN(pages[PG_A5]) | PTE_R | PTE_W | PTE_A | PTE_D;  /* invalidate */
    sfence_va(VA_PAGE(V_REMAP));
    EXPECT_PF(CAUSE_LOAD_PAGE_FAULT, VA_PAGE(V_REMAP), LD("ld", VA_PAGE(V_REMAP), 0));
    return 0x5339;
}

/* ---- S-mode, Sv48 ---------------------------------------------------------- */
static long s_sv48(long arg)
{
    unsigned long moff = (unsigned long)&marker - RAM;
    CHECK_EQ(csr_read(satp) >> SATP_MODE_SHIFT, SATP_MODE_SV48);
    CHECK_EQ(LD("ld", VA_SV48_HI + moff, 0), 0x6d61726b65722121ul);        /* gigapage above 2^39 */
    CHECK_EQ(LD("ld", VA_SV48_TERA + (unsigned long)&marker, 0), 0x6d61726b65722121ul); /* terapage */
    ST("sd", VA_SV48_TERA + (unsigned long)&marker, 0, 0x1122334455667788ul);
    CHECK_EQ(marker, 0x1122334455667788ul);
    marker = 0x6d61726b65722121ul;
    CHECK_EQ(LD("ld", VA_PAGE(V_RO), 0), 0x1111111111111111ul);            /* via shared lower levels */
    CHECK_EQ(LD("lwu", VA_MEGA, 0), *(volatile uint32_t *)RAM);
    EXPECT_PF(CAUSE_STORE_PAGE_FAULT, VA_PAGE(V_RO), ST("sd", VA_PAGE(V_RO), 0, 0));
    EXPECT_PF(CAUSE_LOAD_PAGE_FAULT, VA_NONCANON48, LD("ld", VA_NONCANON48, 0));
    EXPECT_PF(CAUSE_LOAD_PAGE_FAULT, 0xffff800000000000ul, LD("ld", 0xffff800000000000ul, 0)); /* canonical, unmapped */
    EXPECT_NO_TRAP(CHECK_EQ(CALL(VA_SV48_HI + ((unsigned long)pages[PG_CODE] - RAM)), 42));
    EXPECT_PF(CAUSE_FETCH_PAGE_FAULT, VA_SV48_TERA + (unsigned long)pages[PG_CODE],
              CALL(VA_SV48_TERA + (unsigned long)pages[PG_CODE]));    /* terapage is not X */
    return 0x5348;
}

/* ---- U-mode helpers (run through the U alias; no globals) ------------------- */
static long u_load(long va) { return (long)LD("ld", va, 0); }
static long u_store(long va) { ST("sd", va, 0, 0x7777777777777777ul); return 0; }
static long u_call(long va) { return CALL(va); }

static long run_u(long (*fn)(long), long arg)
{
    return run_mode_ex(PRV_U, fn, arg, ALIAS_OFF, (long)(ustack + 512) + ALIAS_OFF);
}

static void u_tests(void)
{
    EXPECT_NO_TRAP(CHECK_EQ(run_u(u_load, VA_PAGE(V_U)), 0x4444444444444444l));
    EXPECT_NO_TRAP(run_u(u_store, VA_PAGE(V_U) + 16));
    CHECK_EQ(pages[PG_U][2], 0x7777777777777777ul);
    EXPECT_NO_TRAP(CHECK_EQ(run_u(u_call, VA_PAGE(V_CODE_U)), 42));
    /* U may not touch S pages */
    EXPECT_TRAP(CAUSE_LOAD_PAGE_FAULT, run_u(u_load, VA_PAGE(V_RW)));
    CHECK_EQ(caught.tval, VA_PAGE(V_RW));
    CHECK_EQ(caught.handler, PRV_S);
    CHECK_EQ(caught.prev, PRV_U);
    EXPECT_TRAP(CAUSE_LOAD_PAGE_FAULT, run_u(u_load, (long)&marker));
    CHECK_EQ(caught.tval, (unsigned long)&marker);
    EXPECT_TRAP(CAUSE_STORE_PAGE_FAULT, run_u(u_store, VA_PAGE(V_RW)));
    CHECK_EQ(caught.tval, VA_PAGE(V_RW));
    EXPECT_TRAP(CAUSE_FETCH_PAGE_FAULT, run_u(u_call, VA_PAGE(V_CODE_X)));
    CHECK_EQ(caught.tval, VA_PAGE(V_CODE_X));
    CHECK_EQ(caught.epc, VA_PAGE(V_CODE_X));
    CHECK_EQ(caught.prev, PRV_U);
    /* SUM does not affect U; MXR lets U read its own execute-only pages? (no such
       page here) -- U reading a U page is unaffected by SUM */
    csr_set(mstatus, MSTATUS_SUM);
    EXPECT_NO_TRAP(CHECK_EQ(run_u(u_load, VA_PAGE(V_U)), 0x4444444444444444l));
    EXPECT_TRAP(CAUSE_LOAD_PAGE_FAULT, run_u(u_load, VA_PAGE(V_RO)));
    csr_clear(mstatus, MSTATUS_SUM);
}

int main(void)
{
    setup();
    trap_insn_len = 4;          /* every faulting access below is a 32-bit instruction */
    csr_write(medeleg, (1ul << CAUSE_FETCH_PAGE_FAULT) | (1ul << CAUSE_LOAD_PAGE_FAULT) |
                       (1ul << CAUSE_STORE_PAGE_FAULT));

    /* satp is WARL: an unsupported mode leaves it unchanged */
    csr_write(satp, 0);
    csr_write(satp, SATP(1, root39));
    CHECK_EQ(csr_read(satp), 0);
    csr_write(satp, SATP(SATP_MODE_SV39, root39));
    CHECK_EQ(csr_read(satp), SATP(SATP_MODE_SV39, root39));
    sfence_all();

    /* M-mode ignores satp ... */
    CHECK_EQ(marker, 0x6d61726b65722121ul);
    /* ... unless MPRV = 1, which translates M loads/stores with MPP's privilege */
    {
        unsigned long v;
        csr_clear(mstatus, MSTATUS_MPP);
        csr_set(mstatus, (unsigned long)PRV_S << 11);
        __asm__ __volatile__("csrs mstatus, %2\n\tlwu %0, 0(%1)\n\tcsrc mstatus, %2"
                             : "=&r"(v) : "r"(VA_MEGA), "r"(MSTATUS_MPRV) : "memory");
        CHECK_EQ(v, *(volatile uint32_t *)RAM);
        csr_set(mstatus, MSTATUS_MPP);
    }

    trap_catch_start();
    CHECK_EQ(run_mode(PRV_S, s_sv39, 0), 0x5339);
    trap_catch_stop();
    u_tests();

    csr_write(satp, SATP(SATP_MODE_SV48, root48));
    if ((csr_read(satp) >> SATP_MODE_SHIFT) != SATP_MODE_SV48) {
        printf("FAIL: Sv48 not supported (satp=0x%lx)\n", csr_read(satp));
        test_failures++;
    } else {
        sfence_all();
        CHECK_EQ(run_mode(PRV_S, s_sv48, 0), 0x5348);
    }
    csr_write(satp, 0);
    sfence_all();
    csr_write(medeleg, 0);
    return test_summary("vm");
}
