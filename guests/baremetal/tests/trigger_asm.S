/* trigger_asm.S - code the trigger test puts breakpoints on. */
    .text

/* long trig_inc(long): a0 + 1, in one 32-bit instruction (skipped when a breakpoint on it traps) */
    .globl trig_inc
    .p2align 2
trig_inc:
    .option push
    .option norvc
    addi    a0, a0, 1
    .option pop
    ret

/* long trig_loop(long n): counts to n in a loop whose body is trig_loop_body (a hot loop the
   translation tier may compile); returns the count */
    .globl trig_loop, trig_loop_body
    .p2align 2
trig_loop:
    .option push
    .option norvc
    li      t0, 0
1:
trig_loop_body:
    addi    t0, t0, 1
    blt     t0, a0, 1b
    mv      a0, t0
    .option pop
    ret

/* long trig_c_inc(long): a0 + 1 in a compressed instruction at an address 2 mod 4 */
    .globl trig_c_inc, trig_c_insn
    .p2align 2
trig_c_inc:
    c.nop
trig_c_insn:
    c.addi  a0, 1
    ret
