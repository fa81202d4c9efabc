/* rv64c_asm.S - one compressed instruction per function, operands in a0/a1,
   result in a0. Every instruction below is written in its explicit c.* form,
   so the assembler must emit the 16-bit encoding. */
    .option rvc
    .text

.macro FN name
    .globl \name
    .type \name, @function
    .balign 2
\name:
.endm

FN c_li_m32
    c.li    a0, -32
    c.jr    ra
FN c_li_31
    c.li    a0, 31
    c.jr    ra
FN c_lui_neg            /* nzimm = -32 -> 0xfffffffffffe0000 */
    c.lui   a0, 0xfffe0
    c.jr    ra
FN c_lui_31
    c.lui   a0, 31
    c.jr    ra
FN c_lui_1
    c.lui   t0, 1
    c.mv    a0, t0
    c.jr    ra
FN c_addi_m32
    c.addi  a0, -32
    c.jr    ra
FN c_addi_31
    c.addi  a0, 31
    c.jr    ra
FN c_addiw_0            /* sext.w */
    c.addiw a0, 0
    c.jr    ra
FN c_addiw_m1
    c.addiw a0, -1
    c.jr    ra
FN c_addiw_1
    c.addiw a0, 1
    c.jr    ra
FN c_slli_63
    c.slli  a0, 63
    c.jr    ra
FN c_slli_1
    c.slli  a0, 1
    c.jr    ra
FN c_srli_63
    c.srli  a0, 63
    c.jr    ra
FN c_srli_4
    c.srli  a0, 4
    c.jr    ra
FN c_srai_63
    c.srai  a0, 63
    c.jr    ra
FN c_srai_4
    c.srai  a0, 4
    c.jr    ra
FN c_andi_m32
    c.andi  a0, -32
    c.jr    ra
FN c_andi_31
    c.andi  a0, 31
    c.jr    ra
FN c_mv
    c.mv    a0, a1
    c.jr    ra
FN c_add
    c.add   a0, a1
    c.jr    ra
FN c_sub
    c.sub   a0, a1
    c.jr    ra
FN c_xor
    c.xor   a0, a1
    c.jr    ra
FN c_or
    c.or    a0, a1
    c.jr    ra
FN c_and
    c.and   a0, a1
    c.jr    ra
FN c_addw
    c.addw  a0, a1
    c.jr    ra
FN c_subw
    c.subw  a0, a1
    c.jr    ra

/* c.addi16sp / c.addi4spn: return sp-relative deltas (expects 0 overall) */
FN c_addi16sp_check
    c.mv    t0, sp
    c.addi16sp sp, -512
    sub     a0, t0, sp          /* 512 */
    c.addi16sp sp, 496
    c.addi  sp, 16
    sub     t1, t0, sp          /* 0 */
    addi    a0, a0, -512
    or      a0, a0, t1
    c.jr    ra
FN c_addi4spn_1020       /* returns (sp + 1020) - sp */
    c.addi4spn a0, sp, 1020
    sub     a0, a0, sp
    c.jr    ra
FN c_addi4spn_4
    c.addi4spn a1, sp, 4
    sub     a0, a1, sp
    c.jr    ra

/* loads/stores through a0 = base, a1 = value */
FN c_lw_0
    c.lw    a0, 0(a0)
    c.jr    ra
FN c_lw_124
    c.lw    a0, 124(a0)
    c.jr    ra
FN c_ld_0
    c.ld    a0, 0(a0)
    c.jr    ra
FN c_ld_248
    c.ld    a0, 248(a0)
    c.jr    ra
FN c_sw_4
    c.sw    a1, 4(a0)
    c.jr    ra
FN c_sd_248
    c.sd    a1, 248(a0)
    c.jr    ra
FN c_fld_fsd            /* copies 8 bytes from 8(a0) to 240(a0) through f8 */
    c.fld   fs0, 8(a0)
    c.fsd   fs0, 240(a0)
    c.jr    ra

/* stack-pointer relative: store a1 at 504(sp) etc., read back */
FN c_sp_loads_stores
    addi    sp, sp, -512
    c.sdsp  a1, 504(sp)
    c.ldsp  a2, 504(sp)
    c.swsp  a1, 252(sp)
    c.lwsp  a3, 252(sp)         /* sign-extended low word */
    c.fsdsp fs1, 0(sp)          /* preserve fs1 */
    fmv.d.x ft0, a1
    c.fsdsp ft0, 8(sp)
    c.fldsp fs1, 8(sp)
    fmv.x.d a4, fs1
    c.fldsp fs1, 0(sp)
    addi    sp, sp, 512
    sub     a2, a2, a1          /* 0 */
    sub     a4, a4, a1          /* 0 */
    or      a0, a2, a4
    c.beqz  a0, 1f
    c.jr    ra
1:  c.mv    a0, a3
    c.jr    ra

/* control flow */
FN c_j_check            /* returns 7 */
    c.li    a0, 7
    c.j     1f
    c.li    a0, 1
1:  c.jr    ra
FN c_beqz_taken         /* returns 1 if c.beqz a0 is taken */
    c.beqz  a0, 1f
    c.li    a0, 0
    c.jr    ra
1:  c.li    a0, 1
    c.jr    ra
FN c_bnez_taken
    c.bnez  a0, 1f
    c.li    a0, 0
    c.jr    ra
1:  c.li    a0, 1
    c.jr    ra
FN c_jalr_link          /* returns link - address after c.jalr (0 = pc + 2) */
    c.mv    t1, ra
    lla     t0, 2f
    c.jalr  t0
1:  c.mv    ra, t1
    lla     t2, 1b
    sub     a0, a0, t2
    c.jr    ra
2:  c.mv    a0, ra
    c.jr    ra
FN c_backward_loop      /* counts a0 down with c.addi/c.bnez; returns iterations */
    c.li    a1, 0
1:  c.addi  a1, 1
    c.addi  a0, -1
    c.bnez  a0, 1b
    c.mv    a0, a1
    c.jr    ra

/* 32-bit instructions at 2-mod-4 addresses and jumps to such targets. */
FN misaligned_32bit_check   /* returns 0x55 */
    .balign 4
    c.nop
    .option push
    .option norvc
    addi    a0, zero, 0x50      /* at 2 mod 4 */
    lla     t0, 1f
    jalr    zero, 0(t0)
    addi    a0, zero, 1
    .option pop
    .balign 4
    c.nop
1:  .option push                /* 1: is 2 mod 4 */
    .option norvc
    addi    a0, a0, 5
    .option pop
    c.jr    ra

FN c_ebreak_insn
    c.ebreak
    c.jr    ra
FN c_nop_check
    c.li    a0, 9
    c.nop
    c.jr    ra
