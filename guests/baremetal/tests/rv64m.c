/* rv64m - multiply/divide, including division by zero and signed overflow. */
#include "test.h"
#include "insn.h"

#define MIN64 0x8000000000000000ul
#define MAX64 0x7ffffffffffffffful
#define NEG1  0xfffffffffffffffful

static void test_mul(void)
{
    CHECK_EQ(RR("mul", 7, 6), 42);
    CHECK_EQ(RR("mul", -7, 6), (unsigned long)-42);
    CHECK_EQ(RR("mul", NEG1, NEG1), 1);
    CHECK_EQ(RR("mul", 0x100000000, 0x100000000), 0);   /* low 64 bits of 2^64 */
    CHECK_EQ(RR("mul", 0x123456789abcdef0, 0x10), 0x23456789abcdef00);
    CHECK_EQ(RR("mul", MIN64, NEG1), MIN64);
    CHECK_EQ(RR("mul", 0xffffffff, 0xffffffff), 0xfffffffe00000001);

    /* mulh: signed x signed, high 64 bits */
    CHECK_EQ(RR("mulh", NEG1, NEG1), 0);                 /* 1 */
    CHECK_EQ(RR("mulh", NEG1, 1), NEG1);                 /* -1 */
    CHECK_EQ(RR("mulh", MIN64, MIN64), 0x4000000000000000);
    CHECK_EQ(RR("mulh", MIN64, MAX64), 0xc000000000000000);
    CHECK_EQ(RR("mulh", MAX64, MAX64), 0x3fffffffffffffff);
    CHECK_EQ(RR("mulh", 0x100000000, 0x100000000), 1);
    CHECK_EQ(RR("mulh", -0x100000000l, 0x100000000), NEG1);
    CHECK_EQ(RR("mulh", 2, 3), 0);
    CHECK_EQ(RR("mulh", -2, 3), NEG1);

    /* mulhu: unsigned x unsigned */
    CHECK_EQ(RR("mulhu", NEG1, NEG1), 0xfffffffffffffffe);
    CHECK_EQ(RR("mulhu", NEG1, 2), 1);
    CHECK_EQ(RR("mulhu", MIN64, MIN64), 0x4000000000000000);
    CHECK_EQ(RR("mulhu", MIN64, 2), 1);
    CHECK_EQ(RR("mulhu", 0x123456789abcdef0, 0x0fedcba987654321), 0x0121fa00ad77d742);
    CHECK_EQ(RR("mulhu", 5, 7), 0);

    /* mulhsu: signed rs1 x unsigned rs2 */
    CHECK_EQ(RR("mulhsu", NEG1, NEG1), NEG1);            /* -(2^64-1): high = -1 */
    CHECK_EQ(RR("mulhsu", NEG1, 1), NEG1);
    CHECK_EQ(RR("mulhsu", 1, NEG1), 0);
    CHECK_EQ(RR("mulhsu", MIN64, NEG1), 0x8000000000000000); /* -2^63*(2^64-1) */
    CHECK_EQ(RR("mulhsu", 2, MIN64), 1);
    CHECK_EQ(RR("mulhsu", -2, MIN64), NEG1);
    CHECK_EQ(RR("mulhsu", 0, NEG1), 0);

    /* mulw: low 32 bits of product, sign-extended; upper input bits ignored */
    CHECK_EQ(RR("mulw", 0x10000, 0x8000), 0xffffffff80000000);
    CHECK_EQ(RR("mulw", 0x7fffffff, 2), 0xfffffffffffffffe);
    CHECK_EQ(RR("mulw", 0xabcdef0000000003, 0x1234567800000005), 15);
    CHECK_EQ(RR("mulw", NEG1, NEG1), 1);
    CHECK_EQ(RR("mulw", 0xffffffff, 0xffffffff), 1);
    CHECK_EQ(RR("mulw", 0x12345, 0x67890), 0x5cca2ed0);
}

static void test_div(void)
{
    CHECK_EQ(RR("div", 20, 6), 3);
    CHECK_EQ(RR("div", -20, 6), (unsigned long)-3);      /* rounds toward zero */
    CHECK_EQ(RR("div", 20, -6), (unsigned long)-3);
    CHECK_EQ(RR("div", -20, -6), 3);
    CHECK_EQ(RR("div", 5, 0), NEG1);                     /* division by zero */
    CHECK_EQ(RR("div", 0, 0), NEG1);
    CHECK_EQ(RR("div", MIN64, NEG1), MIN64);             /* overflow */
    CHECK_EQ(RR("div", MIN64, 1), MIN64);
    CHECK_EQ(RR("div", MIN64, 2), 0xc000000000000000);

    CHECK_EQ(RR("divu", 20, 6), 3);
    CHECK_EQ(RR("divu", -20, 6), 0x2aaaaaaaaaaaaaa7);   /* (2^64-20)/6 */
    CHECK_EQ(RR("divu", 5, 0), NEG1);
    CHECK_EQ(RR("divu", MIN64, NEG1), 0);
    CHECK_EQ(RR("divu", NEG1, NEG1), 1);
    CHECK_EQ(RR("divu", NEG1, 1), NEG1);

    CHECK_EQ(RR("rem", 20, 6), 2);
    CHECK_EQ(RR("rem", -20, 6), (unsigned long)-2);      /* sign of dividend */
    CHECK_EQ(RR("rem", 20, -6), 2);
    CHECK_EQ(RR("rem", -20, -6), (unsigned long)-2);
    CHECK_EQ(RR("rem", 5, 0), 5);                        /* x % 0 = x */
    CHECK_EQ(RR("rem", -5, 0), (unsigned long)-5);
    CHECK_EQ(RR("rem", MIN64, NEG1), 0);                 /* overflow */

    CHECK_EQ(RR("remu", 20, 6), 2);
    CHECK_EQ(RR("remu", -20, 6), 2);                     /* 2^64-20 = 6*q + 2 */
    CHECK_EQ(RR("remu", 5, 0), 5);
    CHECK_EQ(RR("remu", NEG1, 0), NEG1);
    CHECK_EQ(RR("remu", MIN64, NEG1), MIN64);

    /* W forms: operate on low 32 bits, result sign-extended */
    CHECK_EQ(RR("divw", 20, 6), 3);
    CHECK_EQ(RR("divw", 0xffffffec, 6), (unsigned long)-3);   /* low 32 = -20 */
    CHECK_EQ(RR("divw", 0x1200000014, 0x3400000006), 3);      /* upper bits ignored */
    CHECK_EQ(RR("divw", 5, 0x100000000), NEG1);               /* low 32 of divisor = 0 */
    CHECK_EQ(RR("divw", 0x80000000, 0xffffffff), 0xffffffff80000000); /* INT32_MIN / -1 */
    CHECK_EQ(RR("divw", 0x80000000, 1), 0xffffffff80000000);
    CHECK_EQ(RR("divuw", 0xffffffec, 6), 0x2aaaaaa7);         /* (2^32-20)/6 */
    CHECK_EQ(RR("divuw", 0x80000000, 1), 0xffffffff80000000); /* result sign-extended */
    CHECK_EQ(RR("divuw", 7, 0), NEG1);
    CHECK_EQ(RR("divuw", 0xffffffff, 0xffffffff), 1);
    CHECK_EQ(RR("remw", 0xffffffec, 6), (unsigned long)-2);
    CHECK_EQ(RR("remw", 20, 0xfffffffa), 2);
    CHECK_EQ(RR("remw", 0x80000000, 0xffffffff), 0);
    CHECK_EQ(RR("remw", 0xffffffff80000005, 0), 0xffffffff80000005);
    CHECK_EQ(RR("remw", 0x0000000180000005, 0), 0xffffffff80000005); /* sign-extended dividend */
    CHECK_EQ(RR("remuw", 0xffffffec, 6), 2);
    CHECK_EQ(RR("remuw", 0x80000005, 0), 0xffffffff80000005);
    CHECK_EQ(RR("remuw", 0x12345678, 0x10000), 0x5678);
    CHECK_EQ(RR("remuw", 0xfffffffe, 0xffffffff), 0xfffffffffffffffe);
}

int main(void)
{
    test_mul();
    test_div();
    return test_summary("rv64m");
}
