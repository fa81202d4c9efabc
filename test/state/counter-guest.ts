// A guest for state tests: what it prints shows whether it went on exactly where it was.
import { assemble } from "../../host/util/riscv-asm";
import { KERNEL_ADDR } from "../../host/machine/virt";
import { TIMEBASE_HZ } from "../../host/core/core";

const UART = 0x10000000;
/** The end of each guest here: SBI SRST, a clean shutdown (and a loop, should it return). */
const POWEROFF = `
    li a0, 0
    li a1, 0
    li a7, 0x53525354
    li a6, 0
    ecall
  1: j 1b
`;
// An S-mode kernel on the built-in SBI: fills 64 KiB of RAM with a pattern, then prints the
// digits 0..9 with a busy wait between them, checking the pattern before each (an X instead of
// the digit if it changed: a page lost or changed on the way shows in the output), then shuts
// down.
const EXPECTED_SUM = BigInt.asUintN(64, 0x9e3779b9n * (8192n * 8193n / 2n));
/**
 * `spin`: iterations of the busy wait between digits (about 3 instructions each), or
 * `{ waitMs }`: a busy wait on the time CSR for that long, whatever the tier runs it.
 */
export const counterKernel = (spin: number | { waitMs: number } = 300_000): Uint8Array => assemble(`
    li s3, ${KERNEL_ADDR + 0x100000}
    li t1, 8192
    mv t2, s3
    li t3, 0x9e3779b9
  fill:
    mul t4, t1, t3
    sd t4, 0(t2)
    addi t2, t2, 8
    addi t1, t1, -1
    bnez t1, fill
    li s0, ${UART}
    li s1, 0
    li s2, 10
  next:
    li t1, 8192
    mv t2, s3
    li t5, 0
  sum:
    ld t4, 0(t2)
    add t5, t5, t4
    addi t2, t2, 8
    addi t1, t1, -1
    bnez t1, sum
    li t6, ${EXPECTED_SUM}
    beq t5, t6, good
    li t5, 88
    sb t5, 0(s0)
    j waiting
  good:
    addi t5, s1, 48
    sb t5, 0(s0)
  waiting:
${typeof spin === "number" ? `
    li t0, ${spin}
  wait:
    addi t0, t0, -1
    bnez t0, wait` : `
    rdtime t0
    li t1, ${spin.waitMs * (TIMEBASE_HZ / 1000)}
    add t0, t0, t1
  wait:
    rdtime t1
    bltu t1, t0, wait`}
    addi s1, s1, 1
    bne s1, s2, next
${POWEROFF}`, { origin: KERNEL_ADDR }).bytes;


/**
 * A guest that writes memory faster than any link carries it, for post-copy: 8 MiB of pages,
 * each with its own constant (checked) and a shared counter rewritten in every page `passes`
 * times between digits. Before each digit it checks every page: an X instead of the digit if a
 * page holds an older counter or lost its constant (a page that came late, or stale). Needs 32 MiB.
 */
export const dirtyingKernel = (passes = 1000): Uint8Array => assemble(`
    li s3, ${KERNEL_ADDR + 0x100000}
    li s4, 2048
    li s0, ${UART}
    li s1, 0
    li s2, 10
    li s6, 0
    li t3, 0x9e3779b9
    li t5, 4096
    li t1, 0
    mv t2, s3
  init:
    mul t4, t1, t3
    sd t4, 8(t2)
    add t2, t2, t5
    addi t1, t1, 1
    bne t1, s4, init
  next:
    li s5, ${passes}
  pass:
    addi s6, s6, 1
    mv t2, s3
    mv t1, s4
  write:
    sd s6, 0(t2)
    add t2, t2, t5
    addi t1, t1, -1
    bnez t1, write
    addi s5, s5, -1
    bnez s5, pass
    mv t2, s3
    li t1, 0
  check:
    ld t4, 0(t2)
    bne t4, s6, bad
    mul t6, t1, t3
    ld t4, 8(t2)
    bne t4, t6, bad
    add t2, t2, t5
    addi t1, t1, 1
    bne t1, s4, check
    addi a3, s1, 48
    sb a3, 0(s0)
    j after
  bad:
    li a3, 88
    sb a3, 0(s0)
  after:
    addi s1, s1, 1
    bne s1, s2, next
${POWEROFF}`, { origin: KERNEL_ADDR }).bytes;
