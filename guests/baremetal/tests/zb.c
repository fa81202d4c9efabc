/* zb - Zba, Zbb and Zbs bit-manipulation instructions (RV64). */
#include "test.h"
#include "insn.h"

static void test_zba(void)
{
    CHECK_EQ(RR("sh1add", 3, 100), 106);
    CHECK_EQ(RR("sh2add", 3, 100), 112);
    CHECK_EQ(RR("sh3add", 3, 100), 124);
    CHECK_EQ(RR("sh1add", 0x8000000000000001, 0), 2);               /* bit 63 shifted out */
    CHECK_EQ(RR("sh3add", 0xffffffffffffffff, 8), 0);                 /* -1*8 + 8 */
    CHECK_EQ(RR("add.uw", 0xffffffff80000000, 1), 0x80000001);        /* zero-extends rs1 low word */
    CHECK_EQ(RR("add.uw", 0x1234567800000005, 0x100000000), 0x100000005);
    CHECK_EQ(RR("sh1add.uw", 0xffffffff80000000, 1), 0x100000001);
    CHECK_EQ(RR("sh2add.uw", 0xabcdef01ffffffff, 0), 0x3fffffffc);
    CHECK_EQ(RR("sh3add.uw", 0x0000000100000002, 0x1000), 0x1010);
    CHECK_EQ(RI("slli.uw", 0xffffffff80000001, 4), 0x800000010);
    CHECK_EQ(RI("slli.uw", 0x12345678ffffffff, 32), 0xffffffff00000000);
    CHECK_EQ(RI("slli.uw", 0xffffffffffffffff, 0), 0xffffffff);       /* zext.w */
}

static void test_zbb_logic(void)
{
    CHECK_EQ(RR("andn", 0xff00ff00ff00ff00, 0x0ff00ff00ff00ff0), 0xf000f000f000f000);
    CHECK_EQ(RR("orn", 0xff00ff00ff00ff00, 0x0ff00ff00ff00ff0), 0xff0fff0fff0fff0f);
    CHECK_EQ(RR("xnor", 0xff00ff00ff00ff00, 0x0ff00ff00ff00ff0), 0x0f0f0f0f0f0f0f0f);
    CHECK_EQ(RR("andn", 0x1234, 0), 0x1234);
    CHECK_EQ(RR("orn", 0, 0), 0xffffffffffffffff);
    CHECK_EQ(RR("xnor", 0x5555555555555555, 0x5555555555555555), 0xffffffffffffffff);
}

static void test_zbb_count(void)
{
    CHECK_EQ(R1("clz", 0), 64);
    CHECK_EQ(R1("clz", 1), 63);
    CHECK_EQ(R1("clz", 0x8000000000000000), 0);
    CHECK_EQ(R1("clz", 0x00000000ffffffff), 32);
    CHECK_EQ(R1("clz", 0x0001000000000000), 15);
    CHECK_EQ(R1("clzw", 0), 32);
    CHECK_EQ(R1("clzw", 0xffffffff00000001), 31);                     /* upper word ignored */
    CHECK_EQ(R1("clzw", 0x80000000), 0);
    CHECK_EQ(R1("clzw", 0x00010000), 15);
    CHECK_EQ(R1("ctz", 0), 64);
    CHECK_EQ(R1("ctz", 0x8000000000000000), 63);
    CHECK_EQ(R1("ctz", 0x0000000000010000), 16);
    CHECK_EQ(R1("ctz", 0xffffffffffffffff), 0);
    CHECK_EQ(R1("ctzw", 0), 32);
    CHECK_EQ(R1("ctzw", 0x100000000), 32);                            /* low word is zero */
    CHECK_EQ(R1("ctzw", 0x80000000), 31);
    CHECK_EQ(R1("ctzw", 0x00000008), 3);
    CHECK_EQ(R1("cpop", 0), 0);
    CHECK_EQ(R1("cpop", 0xffffffffffffffff), 64);
    CHECK_EQ(R1("cpop", 0x8000000000000001), 2);
    CHECK_EQ(R1("cpop", 0x0123456789abcdef), 32);
    CHECK_EQ(R1("cpopw", 0xffffffff00000000), 0);
    CHECK_EQ(R1("cpopw", 0x00000000ffffffff), 32);
    CHECK_EQ(R1("cpopw", 0x1234567800000007), 3);
}

static void test_zbb_minmax_ext(void)
{
    CHECK_EQ(RR("max", -1, 1), 1);
    CHECK_EQ(RR("max", 0x8000000000000000, 0x7fffffffffffffff), 0x7fffffffffffffff);
    CHECK_EQ(RR("maxu", -1, 1), 0xffffffffffffffff);
    CHECK_EQ(RR("maxu", 0x8000000000000000, 0x7fffffffffffffff), 0x8000000000000000);
    CHECK_EQ(RR("min", -1, 1), 0xffffffffffffffff);
    CHECK_EQ(RR("min", 5, 5), 5);
    CHECK_EQ(RR("minu", -1, 1), 1);
    CHECK_EQ(RR("minu", 0, 0xffffffffffffffff), 0);
    CHECK_EQ(R1("sext.b", 0x80), 0xffffffffffffff80);
    CHECK_EQ(R1("sext.b", 0x123456789abcde7f), 0x7f);
    CHECK_EQ(R1("sext.h", 0x8000), 0xffffffffffff8000);
    CHECK_EQ(R1("sext.h", 0xffffffffffff7fff), 0x7fff);
    CHECK_EQ(R1("zext.h", 0xffffffffffff8000), 0x8000);
    CHECK_EQ(R1("zext.h", 0x123456789abcdef0), 0xdef0);
}

static void test_zbb_rotate(void)
{
    CHECK_EQ(RR("rol", 0x8000000000000001, 1), 0x0000000000000003);
    CHECK_EQ(RR("rol", 0x0123456789abcdef, 4), 0x123456789abcdef0);
    CHECK_EQ(RR("rol", 0x0123456789abcdef, 68), 0x123456789abcdef0);   /* shamt mod 64 */
    CHECK_EQ(RR("rol", 0x0123456789abcdef, 0), 0x0123456789abcdef);
    CHECK_EQ(RR("ror", 0x0000000000000003, 1), 0x8000000000000001);
    CHECK_EQ(RR("ror", 0x0123456789abcdef, 8), 0xef0123456789abcd);
    CHECK_EQ(RR("ror", 0x0123456789abcdef, 63), 0x02468acf13579bde);
    CHECK_EQ(RI("rori", 0x0123456789abcdef, 4), 0xf0123456789abcde);
    CHECK_EQ(RI("rori", 0x0123456789abcdef, 63), 0x02468acf13579bde);
    CHECK_EQ(RI("rori", 0x8000000000000000, 0), 0x8000000000000000);
    /* W forms rotate the low word and sign-extend */
    CHECK_EQ(RR("rolw", 0x0000000080000001, 1), 3);
    CHECK_EQ(RR("rolw", 0xffffffff12345678, 4), 0x23456781);
    CHECK_EQ(RR("rolw", 0x0000000012345678, 36), 0x23456781);           /* shamt mod 32 */
    CHECK_EQ(RR("rolw", 0x0000000040000000, 1), 0xffffffff80000000);
    CHECK_EQ(RR("rorw", 0x0000000000000001, 1), 0xffffffff80000000);
    CHECK_EQ(RR("rorw", 0xabcdef0012345678, 8), 0x78123456);
    CHECK_EQ(RI("roriw", 0x0000000000000003, 1), 0xffffffff80000001);
    CHECK_EQ(RI("roriw", 0xffffffff12345678, 16), 0x56781234);
    CHECK_EQ(RI("roriw", 0x0000000080000000, 0), 0xffffffff80000000);
}

static void test_zbb_bytes(void)
{
    CHECK_EQ(R1("rev8", 0x0123456789abcdef), 0xefcdab8967452301);
    CHECK_EQ(R1("rev8", 0x00000000000000ff), 0xff00000000000000);
    CHECK_EQ(R1("orc.b", 0x0102000400000080), 0xffff00ff000000ff);
    CHECK_EQ(R1("orc.b", 0), 0);
    CHECK_EQ(R1("orc.b", 0x8000000000000001), 0xff000000000000ff);
}

static void test_zbs(void)
{
    CHECK_EQ(RR("bclr", 0xffffffffffffffff, 63), 0x7fffffffffffffff);
    CHECK_EQ(RR("bclr", 0xffffffffffffffff, 64), 0xfffffffffffffffe);   /* index mod 64 */
    CHECK_EQ(RR("bclr", 0x10, 4), 0);
    CHECK_EQ(RI("bclri", 0xffffffffffffffff, 31), 0xffffffff7fffffff);
    CHECK_EQ(RI("bclri", 0x1, 0), 0);
    CHECK_EQ(RR("bext", 0x8000000000000000, 63), 1);
    CHECK_EQ(RR("bext", 0x8000000000000000, 62), 0);
    CHECK_EQ(RR("bext", 0x20, 69), 1);                                  /* bit 5 */
    CHECK_EQ(RI("bexti", 0x0000000100000000, 32), 1);
    CHECK_EQ(RI("bexti", 0xfffffffffffffffe, 0), 0);
    CHECK_EQ(RR("binv", 0, 63), 0x8000000000000000);
    CHECK_EQ(RR("binv", 0xff, 3), 0xf7);
    CHECK_EQ(RI("binvi", 0x8000000000000000, 63), 0);
    CHECK_EQ(RI("binvi", 0, 40), 0x0000010000000000);
    CHECK_EQ(RR("bset", 0, 63), 0x8000000000000000);
    CHECK_EQ(RR("bset", 0x1, 0), 0x1);
    CHECK_EQ(RR("bset", 0, 96), 0x100000000);                           /* bit 32 */
    CHECK_EQ(RI("bseti", 0, 31), 0x80000000);                           /* no sign extension */
    CHECK_EQ(RI("bseti", 0x5, 1), 0x7);
}

int main(void)
{
    test_zba();
    test_zbb_logic();
    test_zbb_count();
    test_zbb_minmax_ext();
    test_zbb_rotate();
    test_zbb_bytes();
    test_zbs();
    return test_summary("zb");
}
