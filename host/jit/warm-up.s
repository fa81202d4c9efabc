# The compile thread's warm-up program (host/jit/warm-up.ts), assembled by build.js with the
# in-repo assembler (host/util/riscv-asm.ts) into host/jit/warm-up-program.ts.
#
# At the start of RAM: a body of integer, memory, atomic, CSR and compressed instructions called
# in a loop, first 256 times in M-mode on physical addresses, then for ever in S-mode under Sv39
# paging (a gigapage mapping RAM), with an ecall to M-mode each time round. Its data page follows
# its code page; the page table, the next one. Position-independent: everything is pc-relative.
    auipc s0, 1              # the data page
    la    t0, mtrap
    csrw  mtvec, t0
    li    s1, 0
mloop:
    call  body
    addi  s1, s1, 1
    li    t0, 256
    blt   s1, t0, mloop
    # The root table, a page past the data: entry 2 maps 0x80000000 (1 GiB, RWX, accessed, dirty).
    li    t2, 0x1000
    add   t1, s0, t2
    li    t2, 0x200000cf
    sd    t2, 16(t1)
    srli  t2, t1, 12
    li    t3, 1
    slli  t3, t3, 63
    or    t2, t2, t3
    csrw  satp, t2
    sfence.vma
    li    t2, 3 << 11
    csrc  mstatus, t2
    li    t2, 1 << 11        # MPP = S
    csrs  mstatus, t2
    la    t2, sloop
    csrw  mepc, t2
    mret
sloop:
    call  body
    ecall
    j     sloop
body:
    addi  a0, a0, 1
    add   a1, a1, a0
    xor   a2, a2, a1
    slli  a3, a2, 3
    srli  a4, a3, 2
    sltu  a5, a4, a3
    mul   a6, a0, a1
    divu  a7, a1, a0
    addw  t3, a1, a2
    sd    a1, 0(s0)
    ld    t4, 0(s0)
    sw    a2, 8(s0)
    lw    t4, 8(s0)
    sh    a3, 12(s0)
    lhu   t4, 12(s0)
    sb    a4, 14(s0)
    lbu   t4, 14(s0)
    amoadd.w t4, a0, (s0)
    lr.d  t4, (s0)
    sc.d  t4, a1, (s0)
    csrrw t4, sscratch, a0
    csrr  t4, sscratch
    c.addi a0, 1
    c.mv  a1, a0
    c.add a2, a1
    c.ld  a3, 0(s0)
    c.sd  a2, 16(s0)
    beqz  a0, 1f             # not taken
    bnez  a0, 1f             # taken, over the addi
    addi  a0, a0, 0
1:  ret
    .balign 4                # (mtvec's low bits are its mode)
mtrap:
    csrr  t5, mepc
    addi  t5, t5, 4
    csrw  mepc, t5
    mret
