/* rv64i_asm.S - control-transfer checks for rv64i. Each returns 0 on success
   (or the computed value documented below). Uncompressed encodings only. */
    .option norvc
    .text

/* jal writes pc+4 into rd and jumps. */
    .globl jal_link_check
jal_link_check:
    jal     t0, 1f
2:  li      a0, 1               /* must be skipped */
    ret
1:  lla     t1, 2b
    sub     a0, t0, t1
    ret

/* jalr clears bit 0 of the target. */
    .globl jalr_lowbit_check
jalr_lowbit_check:
    lla     t0, 1f
    addi    t0, t0, 1
    jalr    t1, 0(t0)
3:  li      a0, 1
    ret
1:  lla     t2, 3b
    sub     a0, t1, t2
    ret

/* jalr with rd == rs1 uses the old rs1 value for the target. */
    .globl jalr_same_reg_check
jalr_same_reg_check:
    lla     t0, 1f
    jalr    t0, 0(t0)
3:  li      a0, 1
    ret
1:  lla     t1, 3b
    sub     a0, t0, t1
    ret

/* jalr with a negative offset. */
    .globl jalr_negative_offset_check
jalr_negative_offset_check:
    lla     t0, 1f
    addi    t0, t0, 16
    jalr    t1, -16(t0)
3:  li      a0, 1
    ret
1:  lla     t2, 3b
    sub     a0, t1, t2
    ret

/* Counts a backward-branch loop: returns n (n >= 1). */
    .globl backward_branch_loop
backward_branch_loop:
    mv      t0, a0
    li      a1, 0
1:  addi    a1, a1, 1
    addi    t0, t0, -1
    bnez    t0, 1b
    mv      a0, a1
    ret

/* Writes to x0 are discarded. Returns x0 read after several writes. */
    .globl x0_check
x0_check:
    addi    x0, x0, 5
    lui     x0, 0x12345
    addi    sp, sp, -16
    li      t0, -1
    sd      t0, 0(sp)
    ld      x0, 0(sp)
    addi    sp, sp, 16
    jal     x0, 1f
1:  add     a0, x0, x0
    or      a0, a0, x0
    ret

/* auipc: pc-relative upper immediates. Returns 0 on success. */
    .globl auipc_check
auipc_check:
    li      a0, 0
    jal     t3, 1f
1:  auipc   t0, 0               /* t0 = address of this auipc = t3 */
    sub     t1, t0, t3
    or      a0, a0, t1
2:  auipc   t0, 1               /* = label 2 + 0x1000 */
    lla     t1, 2b
    sub     t0, t0, t1
    li      t2, 0x1000
    sub     t0, t0, t2
    or      a0, a0, t0
3:  auipc   t0, 0xfffff         /* = label 3 - 0x1000 */
    lla     t1, 3b
    sub     t0, t1, t0
    li      t2, 0x1000
    sub     t0, t0, t2
    or      a0, a0, t0
    ret

/* lui + addi with a negative low part: returns 0xffffffff7fffffff. */
    .globl lui_addi_combo
lui_addi_combo:
    lui     a0, 0x80000
    addi    a0, a0, -1
    ret
