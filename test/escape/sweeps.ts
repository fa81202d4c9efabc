// The escape suite's sweeps, as assembly for M-mode attackers: stores and loads across the whole
// guest-physical space outside the attacker's RAM, and writes of every CSR. Each counts the traps
// it takes in s1 and, in s3, those whose cause is not what hardware gives for it; sweepHandler is
// their trap vector (it skips the instruction).
import { RAM, RAM_SIZE } from "./rig";

/**
 * Every device window, the boot ROM, the CLINT, holes and far beyond 4 GiB (every 64 KiB up to
 * 4 GiB, then every 64 GiB up to 2^39), at every width, aligned or not, across a page boundary;
 * its own RAM is skipped (its code is there). Expected: access faults and misaligned faults (4-7).
 * Labels are prefixed with `p`; uses t1-t6, s2, s4, s5, a6, a7.
 */
export const physicalSweep = (p: string): string => `
    li s1, 0            # traps
    li s3, 0            # unexpected causes
    li a6, 4            # misaligned load (4) .. store access fault (7)
    li a7, 7
    li t1, 0x12345678   # the value stored: not a command of the test finisher
    li s2, 0
    li s4, 0x100000000
    li s5, 0x10000
  ${p}_sweep:
    li t2, ${RAM}
    blt s2, t2, ${p}_hit
    li t2, ${RAM + RAM_SIZE}
    blt s2, t2, ${p}_skip
  ${p}_hit:
    sd t1, 0(s2)
    sw t1, 8(s2)
    sh t1, 18(s2)
    sb t1, 23(s2)
    sw t1, 1(s2)        # misaligned
    addi t6, s2, 2044
    sd t1, 2044(t6)     # across a page boundary (s2 + 4088)
    ld t3, 0(s2)
    lw t3, 3(s2)
    lbu t3, 2047(s2)
  ${p}_skip:
    add s2, s2, s5
    blt s2, s4, ${p}_sweep
    li s5, 0x1000000000
    li s4, 0x8000000000
    bltu s2, s4, ${p}_sweep
`;

// Every CSR but those that would take away the attacker's own ability to go on (mstatus, misa,
// mie, mtvec, PMP, mseccfg).
const KEEP = new Set([0x300, 0x301, 0x304, 0x305, 0x747]);
const CSRS = Array.from({ length: 4096 }, (_, i) => i).filter((c) => !KEEP.has(c) && !(c >= 0x3a0 && c <= 0x3ef));

/**
 * Every CSR written with all ones and then zero: the ones that do not exist raise
 * illegal-instruction exceptions (2), the others take what they can hold (WARL). Uses t1, a6, a7.
 */
export const csrSweep = `
    li s1, 0
    li s3, 0
    li a6, 2
    li a7, 2
    li t1, -1
${CSRS.map((c) => `    csrrw x0, ${c}, t1\n    csrrw x0, ${c}, x0`).join("\n")}
`;

/** The sweeps' trap vector at `label`: counts in s1 (and in s3 a cause outside [a6, a7]), skips the instruction. */
export const sweepHandler = (label: string): string => `
  ${label}:
    csrr t4, mcause
    bltu t4, a6, 1f
    bleu t4, a7, 2f
  1:
    addi s3, s3, 1
  2:
    addi s1, s1, 1
    csrr t4, mepc
    addi t4, t4, 4
    csrw mepc, t4
    mret
`;
