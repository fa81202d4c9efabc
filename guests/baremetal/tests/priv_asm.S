/* priv_asm.S - helpers for the privileged-architecture test. */
#define RUN_MODE_MAGIC 0x52554e4d
#define CLINT_MSIP      0x2000000
#define CLINT_MTIMECMP  0x2004000
    .text

/* long do_ecall(long): executes ecall (a7 = 0) at ecall_insn; returns a0 + 1 */
    .globl do_ecall, ecall_insn
do_ecall:
    li      a7, 0
ecall_insn:
    ecall
    addi    a0, a0, 1
    ret

/* long do_ebreak(long): 32-bit ebreak at ebreak_insn */
    .globl do_ebreak, ebreak_insn
do_ebreak:
    .option push
    .option norvc
ebreak_insn:
    ebreak
    .option pop
    ret

/* long do_illegal(long): 32-bit illegal instruction (unimp = csrrw x0, cycle, x0) */
    .globl do_illegal, illegal_insn
do_illegal:
    .option push
    .option norvc
illegal_insn:
    csrrw   x0, cycle, x0
    .option pop
    ret

/* long do_illegal_custom(long): custom-0 opcode */
    .globl do_illegal_custom, illegal_custom_insn
do_illegal_custom:
illegal_custom_insn:
    .word   0x0000500b
    ret

/* long do_illegal_c(long): the all-zero 16-bit parcel is illegal */
    .globl do_illegal_c, illegal_c_insn
do_illegal_c:
illegal_c_insn:
    .2byte  0x0000
    ret

/* unsigned long mret_to_m(void): mret with MPP = M, MPIE = 1, MIE = 0;
   returns mstatus observed right after the mret (then clears MIE). */
    .globl mret_to_m
mret_to_m:
    li      t0, (3 << 11) | (1 << 7)
    csrs    mstatus, t0
    li      t0, (1 << 3)
    csrc    mstatus, t0
    lla     t0, 1f
    csrw    mepc, t0
    mret
1:  csrr    a0, mstatus
    li      t0, (1 << 3)
    csrc    mstatus, t0
    ret

/* long s_sret_to_u(long): runs in S; srets to U with SPP = U, SPIE = 1, SIE = 0.
   The U code does ecall (a7 = 0), then returns 0x77 to run_mode's caller. */
    .globl s_sret_to_u, u_after_sret
s_sret_to_u:
    li      t0, (1 << 8)
    csrc    sstatus, t0
    li      t0, (1 << 5)
    csrs    sstatus, t0
    li      t0, (1 << 1)
    csrc    sstatus, t0
    lla     t0, u_after_sret
    csrw    sepc, t0
    sret
u_after_sret:
    li      a7, 0
    .globl u_ecall_insn
u_ecall_insn:
    ecall
    li      a0, 0x77
    li      a7, RUN_MODE_MAGIC
    ecall
2:  j       2b

/* long do_sret(long): sret (expected to trap: from U always, from S when TSR = 1) */
    .globl do_sret, sret_insn
do_sret:
sret_insn:
    sret
    ret

/* long jump_2mod4(long): jalr to a 32-bit instruction at an address = 2 mod 4 */
    .globl jump_2mod4
jump_2mod4:
    lla     t0, 1f
    addi    t0, t0, 1               /* odd: bit 0 is cleared by jalr */
    jalr    t1, 0(t0)
    li      a0, -1
    ret
    .balign 4
    c.nop
1:  .option push
    .option norvc
    addi    a0, a0, 100             /* this instruction is at 2 mod 4 */
    .option pop
    ret

/* Vectored machine trap table (mtvec MODE = 1). Exceptions use entry 0
   (the normal handler); machine software and timer interrupts have their own
   entries that record the vector number in vec_taken and silence the source. */
    .balign 256
    .globl mtvec_table
    .option push
    .option norvc                   /* every entry must be exactly 4 bytes */
mtvec_table:
    j       m_trap_entry            /* 0: exceptions */
    j       vec_bad                 /* 1: SSI */
    j       vec_bad                 /* 2 */
    j       vec_msi                 /* 3: MSI */
    j       vec_bad                 /* 4 */
    j       vec_bad                 /* 5: STI */
    j       vec_bad                 /* 6 */
    j       vec_mti                 /* 7: MTI */
    j       vec_bad                 /* 8 */
    j       vec_bad                 /* 9: SEI */
    j       vec_bad                 /* 10 */
    j       vec_bad                 /* 11: MEI */
    .option pop
vec_bad:
    j       m_trap_entry            /* reported as unexpected */
vec_msi:
    csrrw   sp, mscratch, sp
    addi    sp, sp, -16
    sd      t0, 0(sp)
    sd      t1, 8(sp)
    li      t0, CLINT_MSIP
    sw      zero, 0(t0)
    li      t0, 3
    j       vec_record
vec_mti:
    csrrw   sp, mscratch, sp
    addi    sp, sp, -16
    sd      t0, 0(sp)
    sd      t1, 8(sp)
    li      t0, CLINT_MTIMECMP
    li      t1, -1
    sd      t1, 0(t0)
    li      t0, 7
vec_record:
    lla     t1, vec_taken
    sd      t0, 0(t1)
    csrr    t0, mcause
    lla     t1, vec_cause
    sd      t0, 0(t1)
    ld      t0, 0(sp)
    ld      t1, 8(sp)
    addi    sp, sp, 16
    csrrw   sp, mscratch, sp
    mret

    .bss
    .balign 8
    .globl vec_taken, vec_cause
vec_taken:  .dword 0
vec_cause:  .dword 0
