/* rv64i - RV64I base integer instructions, including edge cases. */
#include "test.h"
#include "insn.h"

/* rv64i_asm.S */
unsigned long jal_link_check(void);
unsigned long jalr_lowbit_check(void);
unsigned long jalr_same_reg_check(void);
unsigned long jalr_negative_offset_check(void);
unsigned long backward_branch_loop(unsigned long n);
unsigned long x0_check(void);
unsigned long auipc_check(void);
unsigned long lui_addi_combo(void);

static void test_add_sub(void)
{
    CHECK_EQ(RR("add", 1, 2), 3);
    CHECK_EQ(RR("add", 0x7fffffffffffffff, 1), 0x8000000000000000);
    CHECK_EQ(RR("add", -1, -1), 0xfffffffffffffffe);
    CHECK_EQ(RR("sub", 0, 1), 0xffffffffffffffff);
    CHECK_EQ(RR("sub", 0x8000000000000000, 1), 0x7fffffffffffffff);
    CHECK_EQ(RR("sub", 5, 5), 0);
    /* W forms: 32-bit result, sign-extended; upper input bits ignored */
    CHECK_EQ(RR("addw", 0x7fffffff, 1), 0xffffffff80000000);
    CHECK_EQ(RR("addw", 0x100000001, 0x200000002), 3);
    CHECK_EQ(RR("addw", 0xffffffff, 1), 0);
    CHECK_EQ(RR("subw", 0, 1), 0xffffffffffffffff);
    CHECK_EQ(RR("subw", 0x80000000, 1), 0x7fffffff);
    CHECK_EQ(RR("subw", 0x1234567800000000, 0x0000000100000000), 0);
    CHECK_EQ(RI("addi", 10, -2048), 0xfffffffffffff80a);
    CHECK_EQ(RI("addi", 10, 2047), 2057);
    CHECK_EQ(RI("addi", 0xffffffffffffffff, 1), 0);
    CHECK_EQ(RI("addiw", 0x7fffffff, 1), 0xffffffff80000000);
    CHECK_EQ(RI("addiw", 0x12345678ffffffff, 0), 0xffffffffffffffff); /* sext.w */
    CHECK_EQ(RI("addiw", 0xabcdef0012345678, 0), 0x12345678);
    CHECK_EQ(RI("addiw", 0, -1), 0xffffffffffffffff);
    CHECK_EQ(RI("addiw", 0x80000000, -1), 0x7fffffff);
}

static void test_logic(void)
{
    CHECK_EQ(RR("and", 0xff00ff00ff00ff00, 0x0ff00ff00ff00ff0), 0x0f000f000f000f00);
    CHECK_EQ(RR("or", 0xff00ff00ff00ff00, 0x0ff00ff00ff00ff0), 0xfff0fff0fff0fff0);
    CHECK_EQ(RR("xor", 0xff00ff00ff00ff00, 0x0ff00ff00ff00ff0), 0xf0f0f0f0f0f0f0f0);
    CHECK_EQ(RI("andi", 0x123456789abcdef0, -16), 0x123456789abcdef0);
    CHECK_EQ(RI("andi", 0x123456789abcdef7, 0x7f0), 0x6f0);
    CHECK_EQ(RI("andi", 0x123456789abcdef7, -2048), 0x123456789abcd800);
    CHECK_EQ(RI("ori", 0x1000000000000000, -2048), 0xfffffffffffff800);
    CHECK_EQ(RI("ori", 0x10, 0x0f), 0x1f);
    CHECK_EQ(RI("xori", 0x5555555555555555, -1), 0xaaaaaaaaaaaaaaaa); /* not */
    CHECK_EQ(RI("xori", 0xf0, 0x0ff), 0x0f);
}

static void test_shifts(void)
{
    CHECK_EQ(RR("sll", 1, 63), 0x8000000000000000);
    CHECK_EQ(RR("sll", 1, 64), 1);                  /* only 6 bits of shamt */
    CHECK_EQ(RR("sll", 0xff, 0xffffffffffffffc4), 0xff0); /* shamt = 4 */
    CHECK_EQ(RR("srl", 0x8000000000000000, 63), 1);
    CHECK_EQ(RR("srl", 0xffffffffffffffff, 1), 0x7fffffffffffffff);
    CHECK_EQ(RR("srl", 0x8000000000000000, 64), 0x8000000000000000);
    CHECK_EQ(RR("sra", 0x8000000000000000, 63), 0xffffffffffffffff);
    CHECK_EQ(RR("sra", 0x8000000000000000, 1), 0xc000000000000000);
    CHECK_EQ(RR("sra", 0x4000000000000000, 62), 1);
    CHECK_EQ(RI("slli", 3, 63), 0x8000000000000000);
    CHECK_EQ(RI("slli", 0x123456789abcdef0, 4), 0x23456789abcdef00);
    CHECK_EQ(RI("srli", 0x8000000000000001, 63), 1);
    CHECK_EQ(RI("srli", 0xf000000000000000, 0), 0xf000000000000000);
    CHECK_EQ(RI("srai", 0x8000000000000000, 63), 0xffffffffffffffff);
    CHECK_EQ(RI("srai", 0x7000000000000000, 60), 7);
    /* W shifts: 5-bit shamt, operate on low 32 bits, sign-extend result */
    CHECK_EQ(RR("sllw", 1, 31), 0xffffffff80000000);
    CHECK_EQ(RR("sllw", 1, 32), 1);
    CHECK_EQ(RR("sllw", 0xffffffff00000003, 1), 6);
    CHECK_EQ(RR("srlw", 0x80000000, 0), 0xffffffff80000000);
    CHECK_EQ(RR("srlw", 0x80000000, 31), 1);
    CHECK_EQ(RR("srlw", 0xffffffff80000000, 1), 0x40000000);
    CHECK_EQ(RR("srlw", 0x1234567800000010, 4), 1);
    CHECK_EQ(RR("sraw", 0x80000000, 31), 0xffffffffffffffff);
    CHECK_EQ(RR("sraw", 0x80000000, 4), 0xfffffffff8000000);
    CHECK_EQ(RR("sraw", 0x00000000f0000000, 36), 0xffffffffff000000); /* shamt = 4 */
    CHECK_EQ(RR("sraw", 0xffffffff7fffffff, 30), 1);
    CHECK_EQ(RI("slliw", 1, 31), 0xffffffff80000000);
    CHECK_EQ(RI("slliw", 0xffffffff, 16), 0xffffffffffff0000);
    CHECK_EQ(RI("srliw", 0xffffffffffffffff, 0), 0xffffffffffffffff);
    CHECK_EQ(RI("srliw", 0xffffffffffffffff, 1), 0x7fffffff);
    CHECK_EQ(RI("srliw", 0xffffffff, 31), 1);
    CHECK_EQ(RI("sraiw", 0x80000000, 31), 0xffffffffffffffff);
    CHECK_EQ(RI("sraiw", 0x12345678, 8), 0x123456);
    CHECK_EQ(RI("sraiw", 0xfffffffff0000000, 0), 0xfffffffff0000000);
}

static void test_compare(void)
{
    CHECK_EQ(RR("slt", -1, 0), 1);
    CHECK_EQ(RR("slt", 0, -1), 0);
    CHECK_EQ(RR("slt", 0x8000000000000000, 0x7fffffffffffffff), 1);
    CHECK_EQ(RR("slt", 5, 5), 0);
    CHECK_EQ(RR("sltu", -1, 0), 0);
    CHECK_EQ(RR("sltu", 0, -1), 1);
    CHECK_EQ(RR("sltu", 0x8000000000000000, 0x7fffffffffffffff), 0);
    CHECK_EQ(RR("sltu", 4, 5), 1);
    CHECK_EQ(RI("slti", -5, -4), 1);
    CHECK_EQ(RI("slti", -4, -4), 0);
    CHECK_EQ(RI("slti", 0x7fffffffffffffff, -1), 0);
    CHECK_EQ(RI("slti", 0x8000000000000000, 0), 1);
    CHECK_EQ(RI("sltiu", 5, -1), 1);          /* imm sign-extends to 2^64-1 */
    CHECK_EQ(RI("sltiu", 0xffffffffffffffff, -1), 0);
    CHECK_EQ(RI("sltiu", 0, 1), 1);           /* seqz */
    CHECK_EQ(RI("sltiu", 7, 1), 0);
    CHECK_EQ(RI("sltiu", 0x7ff, 2047), 0);
    CHECK_EQ(RR("sltu", 0, 3), 1);            /* snez */
}

static void test_upper(void)
{
    CHECK_EQ(U0("lui", 0x80000), 0xffffffff80000000);
    CHECK_EQ(U0("lui", 0x7ffff), 0x7ffff000);
    CHECK_EQ(U0("lui", 0xfffff), 0xfffffffffffff000);
    CHECK_EQ(U0("lui", 0x12345), 0x12345000);
    CHECK_EQ(lui_addi_combo(), 0xffffffff80000000 - 1);
    CHECK_EQ(auipc_check(), 0);
}

static void test_jumps(void)
{
    CHECK_EQ(jal_link_check(), 0);
    CHECK_EQ(jalr_lowbit_check(), 0);
    CHECK_EQ(jalr_same_reg_check(), 0);
    CHECK_EQ(jalr_negative_offset_check(), 0);
    CHECK_EQ(backward_branch_loop(10), 10);
    CHECK_EQ(backward_branch_loop(1), 1);
    CHECK_EQ(x0_check(), 0);
}

static void test_branches(void)
{
    CHECK_EQ(BR("beq", 5, 5), 1);
    CHECK_EQ(BR("beq", 5, 6), 0);
    CHECK_EQ(BR("beq", 0x100000005, 5), 0);
    CHECK_EQ(BR("bne", 5, 6), 1);
    CHECK_EQ(BR("bne", -1, -1), 0);
    CHECK_EQ(BR("blt", -1, 0), 1);
    CHECK_EQ(BR("blt", 0, -1), 0);
    CHECK_EQ(BR("blt", 3, 3), 0);
    CHECK_EQ(BR("blt", 0x8000000000000000, 0x7fffffffffffffff), 1);
    CHECK_EQ(BR("bge", 3, 3), 1);
    CHECK_EQ(BR("bge", -1, 0), 0);
    CHECK_EQ(BR("bge", 0, -1), 1);
    CHECK_EQ(BR("bltu", -1, 0), 0);
    CHECK_EQ(BR("bltu", 0, -1), 1);
    CHECK_EQ(BR("bltu", 3, 3), 0);
    CHECK_EQ(BR("bgeu", -1, 0), 1);
    CHECK_EQ(BR("bgeu", 0, -1), 0);
    CHECK_EQ(BR("bgeu", 3, 3), 1);
    CHECK_EQ(BR("bgeu", 0x8000000000000000, 0x7fffffffffffffff), 1);
}

static uint8_t membuf[64] __attribute__((aligned(64)));

static void fill_membuf(void)
{
    /* bytes 0x80 0x81 ... 0xbf: every byte has its top bit set */
    for (int i = 0; i < 64; i++)
        ((volatile uint8_t *)membuf)[i] = (uint8_t)(0x80 + i);
}

static void test_loads_stores(void)
{
    uint8_t *b = membuf;
    fill_membuf();
    CHECK_EQ(LD("lb", b, 0), 0xffffffffffffff80);
    CHECK_EQ(LD("lbu", b, 0), 0x80);
    CHECK_EQ(LD("lb", b, 1), 0xffffffffffffff81);
    CHECK_EQ(LD("lh", b, 0), 0xffffffffffff8180);
    CHECK_EQ(LD("lhu", b, 0), 0x8180);
    CHECK_EQ(LD("lw", b, 4), 0xffffffff87868584);
    CHECK_EQ(LD("lwu", b, 4), 0x87868584);
    CHECK_EQ(LD("ld", b, 8), 0x8f8e8d8c8b8a8988);
    CHECK_EQ(LD("lb", b + 16, -1), 0xffffffffffffff8f);   /* negative offset */
    CHECK_EQ(LD("ld", b + 32, -16), 0x9796959493929190);
    /* positive values must not sign-extend */
    ((volatile uint8_t *)b)[20] = 0x7f;
    ((volatile uint8_t *)b)[21] = 0x7f;
    CHECK_EQ(LD("lb", b, 20), 0x7f);
    CHECK_EQ(LD("lh", b, 20), 0x7f7f);

    /* stores write exactly their width */
    fill_membuf();
    ST("sb", b, 0, 0x1122334455667788);
    CHECK_EQ(LD("ld", b, 0), 0x8786858483828188);
    ST("sh", b, 8, 0x1122334455667788);
    CHECK_EQ(LD("ld", b, 8), 0x8f8e8d8c8b8a7788);
    ST("sw", b, 16, 0x1122334455667788);
    CHECK_EQ(LD("ld", b, 16), 0x9796959455667788);
    ST("sd", b, 24, 0x1122334455667788);
    CHECK_EQ(LD("ld", b, 24), 0x1122334455667788);
    CHECK_EQ(LD("ld", b, 32), 0xa7a6a5a4a3a2a1a0);
    ST("sw", b + 48, -8, 0xdeadbeef);
    CHECK_EQ(LD("lwu", b, 40), 0xdeadbeef);
    CHECK_EQ(LD("lw", b, 40), 0xffffffffdeadbeef);

    /* misaligned loads and stores within a page */
    fill_membuf();
    CHECK_EQ(LD("lh", b, 1), 0xffffffffffff8281);
    CHECK_EQ(LD("lhu", b, 7), 0x8887);
    CHECK_EQ(LD("lw", b, 1), 0xffffffff84838281);
    CHECK_EQ(LD("lwu", b, 6), 0x89888786);
    CHECK_EQ(LD("ld", b, 1), 0x8887868584838281);
    CHECK_EQ(LD("ld", b, 13), 0x94939291908f8e8d);
    CHECK_EQ(LD("ld", b, 7), 0x8e8d8c8b8a898887);
    ST("sh", b, 3, 0xa1b2);
    CHECK_EQ(LD("ld", b, 0), 0x878685a1b2828180);
    ST("sw", b, 13, 0x01020304);
    CHECK_EQ(LD("ld", b, 8), 0x0203048c8b8a8988);
    CHECK_EQ(LD("ld", b, 16), 0x9796959493929101);
    ST("sd", b, 33, 0x0123456789abcdef);
    CHECK_EQ(LD("ld", b, 32), 0x23456789abcdefa0);
    CHECK_EQ(LD("ld", b, 40), 0xafaeadacabaaa901);
}

static void test_fence_i(void)
{
    /* Self-modifying code: write `addi a0, zero, K; ret`, fence.i, call it. */
    static uint32_t code[4] __attribute__((aligned(16)));
    volatile uint32_t *c = code;
    unsigned long (*fn)(void) = (unsigned long (*)(void))(void *)code;
    c[0] = 0x02a00513;       /* addi a0, zero, 42 */
    c[1] = 0x00008067;       /* jalr zero, 0(ra) */
    __asm__ __volatile__("fence.i" ::: "memory");
    CHECK_EQ(fn(), 42);
    c[0] = 0xfff00513;       /* addi a0, zero, -1 */
    __asm__ __volatile__("fence.i" ::: "memory");
    CHECK_EQ(fn(), 0xffffffffffffffff);
    c[0] = 0x7ff00513;       /* addi a0, zero, 2047 */
    __asm__ __volatile__("fence.i" ::: "memory");
    CHECK_EQ(fn(), 2047);
    __asm__ __volatile__("fence rw, rw\n\tfence\n\tfence iorw, iorw\n\tfence r, r" ::: "memory");
    CHECK(1);
}

int main(void)
{
    test_add_sub();
    test_logic();
    test_shifts();
    test_compare();
    test_upper();
    test_jumps();
    test_branches();
    test_loads_stores();
    test_fence_i();
    return test_summary("rv64i");
}
