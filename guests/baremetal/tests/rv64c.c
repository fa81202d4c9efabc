/* rv64c - compressed instructions (explicit c.* forms in rv64c_asm.S). */
#include "test.h"

#define F1(name) unsigned long name(unsigned long a0, unsigned long a1);
F1(c_li_m32) F1(c_li_31) F1(c_lui_neg) F1(c_lui_31) F1(c_lui_1)
F1(c_addi_m32) F1(c_addi_31) F1(c_addiw_0) F1(c_addiw_m1) F1(c_addiw_1)
F1(c_slli_63) F1(c_slli_1) F1(c_srli_63) F1(c_srli_4) F1(c_srai_63) F1(c_srai_4)
F1(c_andi_m32) F1(c_andi_31) F1(c_mv) F1(c_add) F1(c_sub) F1(c_xor) F1(c_or) F1(c_and)
F1(c_addw) F1(c_subw) F1(c_addi16sp_check) F1(c_addi4spn_1020) F1(c_addi4spn_4)
F1(c_j_check) F1(c_beqz_taken) F1(c_bnez_taken) F1(c_jalr_link) F1(c_backward_loop)
F1(misaligned_32bit_check) F1(c_nop_check) F1(c_sp_loads_stores) F1(c_ebreak_insn)
unsigned long c_lw_0(void *p);
unsigned long c_lw_124(void *p);
unsigned long c_ld_0(void *p);
unsigned long c_ld_248(void *p);
void c_sw_4(void *p, unsigned long v);
void c_sd_248(void *p, unsigned long v);
void c_fld_fsd(void *p);

static uint64_t buf[32] __attribute__((aligned(8)));

int main(void)
{
    CHECK_EQ(c_li_m32(0, 0), 0xffffffffffffffe0);
    CHECK_EQ(c_li_31(0, 0), 31);
    CHECK_EQ(c_lui_neg(0, 0), 0xfffffffffffe0000);
    CHECK_EQ(c_lui_31(0, 0), 0x1f000);
    CHECK_EQ(c_lui_1(0, 0), 0x1000);
    CHECK_EQ(c_addi_m32(0, 0), 0xffffffffffffffe0);
    CHECK_EQ(c_addi_31(0xffffffffffffffff, 0), 30);
    CHECK_EQ(c_addiw_0(0x1234567880000000, 0), 0xffffffff80000000);
    CHECK_EQ(c_addiw_0(0xffffffff7fffffff, 0), 0x7fffffff);
    CHECK_EQ(c_addiw_m1(0x80000000, 0), 0x7fffffff);
    CHECK_EQ(c_addiw_1(0x7fffffff, 0), 0xffffffff80000000);
    CHECK_EQ(c_slli_63(3, 0), 0x8000000000000000);
    CHECK_EQ(c_slli_1(0xc000000000000001, 0), 0x8000000000000002);
    CHECK_EQ(c_srli_63(0x8000000000000000, 0), 1);
    CHECK_EQ(c_srli_4(0xf000000000000010, 0), 0x0f00000000000001);
    CHECK_EQ(c_srai_63(0x8000000000000000, 0), 0xffffffffffffffff);
    CHECK_EQ(c_srai_4(0xf000000000000010, 0), 0xff00000000000001);
    CHECK_EQ(c_andi_m32(0x123456789abcdeff, 0), 0x123456789abcdee0);
    CHECK_EQ(c_andi_31(0x123456789abcdeff, 0), 0x1f);
    CHECK_EQ(c_mv(1, 0xabcdef), 0xabcdef);
    CHECK_EQ(c_add(0x7fffffffffffffff, 1), 0x8000000000000000);
    CHECK_EQ(c_sub(0, 1), 0xffffffffffffffff);
    CHECK_EQ(c_xor(0xff00, 0x0ff0), 0xf0f0);
    CHECK_EQ(c_or(0xff00, 0x0ff0), 0xfff0);
    CHECK_EQ(c_and(0xff00, 0x0ff0), 0x0f00);
    CHECK_EQ(c_addw(0x7fffffff, 1), 0xffffffff80000000);
    CHECK_EQ(c_addw(0x100000001, 0x200000002), 3);
    CHECK_EQ(c_subw(0, 1), 0xffffffffffffffff);
    CHECK_EQ(c_subw(0x80000000, 1), 0x7fffffff);
    CHECK_EQ(c_addi16sp_check(0, 0), 0);
    CHECK_EQ(c_addi4spn_1020(0, 0), 1020);
    CHECK_EQ(c_addi4spn_4(0, 0), 4);

    for (int i = 0; i < 32; i++)
        buf[i] = 0x0101010101010101ull * (uint64_t)(i + 0x80);
    CHECK_EQ(c_lw_0(buf), 0xffffffff80808080);
    CHECK_EQ(c_lw_124(buf), 0xffffffff8f8f8f8f);    /* upper half of buf[15] */
    CHECK_EQ(c_ld_0(buf), 0x8080808080808080);
    CHECK_EQ(c_ld_248(buf), 0x9f9f9f9f9f9f9f9f);
    c_sw_4(buf, 0x1122334455667788);
    CHECK_EQ(buf[0], 0x5566778880808080);
    c_sd_248(buf, 0x0123456789abcdef);
    CHECK_EQ(buf[31], 0x0123456789abcdef);
    c_fld_fsd(buf);
    CHECK_EQ(buf[30], 0x8181818181818181);
    CHECK_EQ(c_sp_loads_stores(0, 0xfedcba9876543210), 0x76543210);
    CHECK_EQ(c_sp_loads_stores(0, 0x00000000f0000000), 0xfffffffff0000000);

    CHECK_EQ(c_j_check(0, 0), 7);
    CHECK_EQ(c_beqz_taken(0, 0), 1);
    CHECK_EQ(c_beqz_taken(0x100000000, 0), 0);
    CHECK_EQ(c_bnez_taken(0x8000000000000000, 0), 1);
    CHECK_EQ(c_bnez_taken(0, 0), 0);
    CHECK_EQ(c_jalr_link(0, 0), 0);
    CHECK_EQ(c_backward_loop(12, 0), 12);
    CHECK_EQ(misaligned_32bit_check(0, 0), 0x55);
    CHECK_EQ(c_nop_check(0, 0), 9);

    /* c.ebreak: breakpoint exception at its own pc; resume after 2 bytes */
    trap_catch_start();
    c_ebreak_insn(0, 0);
    trap_catch_stop();
    CHECK_EQ(caught.count, 1);
    CHECK_EQ(caught.cause, CAUSE_BREAKPOINT);
    CHECK_EQ(caught.epc, (unsigned long)c_ebreak_insn);
    return test_summary("rv64c");
}
