/*
 * crt.S - start-up code and trap entry points for wasmvisor bare-metal guests.
 *
 * Entry (M-mode, at 0x80000000): a0 = hart id, a1 = device-tree address.
 * Only hart 0 runs the program; other harts park in a WFI loop.
 *
 * Trap frames (struct trap_frame in riscv.h):
 *   x[0..31] at 8*i (x[2] is the interrupted sp), then cause, epc, tval, status.
 * The C dispatchers may edit epc/status (and any register) in the frame; the
 * entry code writes them back before mret/sret.
 */
#define FRAME_SIZE  (36 * 8)
#define F_CAUSE     (32 * 8)
#define F_EPC       (33 * 8)
#define F_TVAL      (34 * 8)
#define F_STATUS    (35 * 8)

    .section .text.init, "ax", @progbits
    .globl _start
_start:
    .option push
    .option norelax
    la      gp, __global_pointer$
    .option pop
    csrr    t0, mhartid
    bnez    t0, park
    mv      s0, a0
    mv      s1, a1

    la      sp, __stack_top
    la      t0, __mtrap_stack_top
    csrw    mscratch, t0

    /* Clear BSS (8-byte aligned by the linker script). */
    la      t0, __bss_start
    la      t1, __bss_end
1:  bgeu    t0, t1, 2f
    sd      zero, 0(t0)
    addi    t0, t0, 8
    j       1b
2:
    /* Open PMP for S/U (entry 0: NAPOT covering everything, RWX).
       If PMP CSRs do not exist the write traps and we land on 3f. */
    la      t0, 3f
    csrw    mtvec, t0
    li      t0, -1
    csrw    pmpaddr0, t0
    li      t0, 0x1f
    csrw    pmpcfg0, t0
    .balign 4
3:
    la      t0, m_trap_entry
    csrw    mtvec, t0
    csrw    mie, zero
    csrw    medeleg, zero
    csrw    mideleg, zero
    csrw    satp, zero
    la      t0, __strap_stack_top
    csrw    sscratch, t0
    la      t0, s_trap_entry
    csrw    stvec, t0
    /* Floating point on (FS = Initial), fcsr = 0. */
    li      t0, (3 << 13)
    csrc    mstatus, t0
    li      t0, (1 << 13)
    csrs    mstatus, t0
    csrw    fcsr, zero

    mv      a0, s0
    mv      a1, s1
    call    main
    call    htif_exit
park:
    wfi
    j       park

/* ---------------------------------------------------------------- */
/* Trap entry macros                                                 */

.macro SAVE_REGS
    sd      x1, 1*8(sp)
    sd      x3, 3*8(sp)
    .irp r, 4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    sd      x\r, \r*8(sp)
    .endr
.endm

.macro RESTORE_REGS
    ld      x1, 1*8(sp)
    ld      x3, 3*8(sp)
    .irp r, 4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    ld      x\r, \r*8(sp)
    .endr
.endm

    .text
    .balign 4
    .globl m_trap_entry
m_trap_entry:
    csrrw   sp, mscratch, sp        /* sp = M trap stack, mscratch = old sp */
    addi    sp, sp, -FRAME_SIZE
    SAVE_REGS
    csrr    t0, mscratch
    sd      t0, 2*8(sp)
    csrw    mscratch, sp            /* a nested trap pushes below this frame */
    .option push
    .option norelax
    la      gp, __global_pointer$   /* interrupted code may run with another gp */
    .option pop
    csrr    t0, mcause
    sd      t0, F_CAUSE(sp)
    csrr    t0, mepc
    sd      t0, F_EPC(sp)
    csrr    t0, mtval
    sd      t0, F_TVAL(sp)
    csrr    t0, mstatus
    sd      t0, F_STATUS(sp)
    mv      a0, sp
    call    m_trap_dispatch
    ld      t0, F_EPC(sp)
    csrw    mepc, t0
    ld      t0, F_STATUS(sp)
    csrw    mstatus, t0
    addi    t0, sp, FRAME_SIZE
    csrw    mscratch, t0
    RESTORE_REGS
    ld      sp, 2*8(sp)
    mret

    .balign 4
    .globl s_trap_entry
s_trap_entry:
    csrrw   sp, sscratch, sp
    addi    sp, sp, -FRAME_SIZE
    SAVE_REGS
    csrr    t0, sscratch
    sd      t0, 2*8(sp)
    csrw    sscratch, sp
    .option push
    .option norelax
    la      gp, __global_pointer$
    .option pop
    csrr    t0, scause
    sd      t0, F_CAUSE(sp)
    csrr    t0, sepc
    sd      t0, F_EPC(sp)
    csrr    t0, stval
    sd      t0, F_TVAL(sp)
    csrr    t0, sstatus
    sd      t0, F_STATUS(sp)
    mv      a0, sp
    call    s_trap_dispatch
    ld      t0, F_EPC(sp)
    csrw    sepc, t0
    ld      t0, F_STATUS(sp)
    csrw    sstatus, t0
    addi    t0, sp, FRAME_SIZE
    csrw    sscratch, t0
    RESTORE_REGS
    ld      sp, 2*8(sp)
    sret

/* ---------------------------------------------------------------- */
/*
 * long run_mode_ex(long mode, long (*fn)(long), long arg, long offset, long usp)
 *
 * Runs fn(arg) in privilege mode `mode` (0 = U, 1 = S, 3 = M) and returns its
 * result in M-mode. `offset` is added to the addresses of fn, the trampoline
 * and gp (to run code through a virtual alias of RAM); `usp` is the stack for
 * the lower mode (0: keep the current stack). The lower mode ends with
 * `ecall` with a7 = RUN_MODE_MAGIC, which m_trap_dispatch turns into a
 * return to run_mode_resume.
 */
#define RUN_MODE_MAGIC 0x52554e4d
    .globl run_mode_ex
run_mode_ex:
    addi    sp, sp, -112
    sd      ra, 0(sp)
    sd      s0, 8(sp)
    sd      s1, 16(sp)
    sd      s2, 24(sp)
    sd      s3, 32(sp)
    sd      s4, 40(sp)
    sd      s5, 48(sp)
    sd      s6, 56(sp)
    sd      s7, 64(sp)
    sd      s8, 72(sp)
    sd      s9, 80(sp)
    sd      s10, 88(sp)
    sd      s11, 96(sp)
    sd      tp, 104(sp)
    la      t0, run_mode_saved_sp
    sd      sp, 0(t0)
    /* mstatus.MPP = mode */
    li      t0, (3 << 11)
    csrc    mstatus, t0
    andi    t1, a0, 3
    slli    t1, t1, 11
    csrs    mstatus, t1
    /* mepc = trampoline + offset */
    la      t0, run_mode_tramp
    add     t0, t0, a3
    csrw    mepc, t0
    add     t2, a1, a3              /* t2 = fn + offset */
    mv      a0, a2
    beqz    a4, 1f
    mv      sp, a4
1:  add     gp, gp, a3
    mret

    .globl run_mode_tramp
run_mode_tramp:
    jalr    t2
    li      a7, RUN_MODE_MAGIC
    ecall
2:  j       2b

    .globl run_mode_resume
run_mode_resume:                    /* entered in M-mode via mret, a0 = result */
    .option push
    .option norelax
    la      gp, __global_pointer$
    .option pop
    la      t0, run_mode_saved_sp
    ld      sp, 0(t0)
    ld      ra, 0(sp)
    ld      s0, 8(sp)
    ld      s1, 16(sp)
    ld      s2, 24(sp)
    ld      s3, 32(sp)
    ld      s4, 40(sp)
    ld      s5, 48(sp)
    ld      s6, 56(sp)
    ld      s7, 64(sp)
    ld      s8, 72(sp)
    ld      s9, 80(sp)
    ld      s10, 88(sp)
    ld      s11, 96(sp)
    ld      tp, 104(sp)
    addi    sp, sp, 112
    ret

/* ---------------------------------------------------------------- */
/* HTIF mailbox: alone in its own page-aligned section.               */
    .section .tohost, "aw", @progbits
    .balign 8
    .globl tohost
    .type tohost, @object
    .size tohost, 8
tohost:
    .dword 0
    .globl fromhost
    .type fromhost, @object
    .size fromhost, 8
fromhost:
    .dword 0

    .bss
    .balign 8
    .globl run_mode_saved_sp
run_mode_saved_sp:
    .dword 0
