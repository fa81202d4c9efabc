// Escape suite, first part: hostile guests beside a VM that keeps a pattern in its RAM and checks
// it while counting. One stores to and loads from the whole guest-physical space outside its RAM
// (every device window, the boot ROM, the CLINT, holes, far beyond 4 GiB) at every width, aligned
// or not; one writes every CSR. Each then never yields. The host answers every access as hardware
// would (an access fault where nothing is, a device's answer where one is, an illegal-instruction
// exception for a CSR that does not exist), the other VM keeps its memory and finishes in its share
// of the CPU, and the daemon keeps answering.
import { describe, test, expect } from "vitest";
import { assemble } from "../encoder";
import { besideVictim, RAM, RAM_SIZE, UART } from "./rig";

// The trap handler skips the faulting instruction and counts the fault; a cause other than an
// access or misaligned fault (what hardware gives for these accesses) is marked in s3.
const ATTACKER = assemble(`
    la t0, handler
    csrw mtvec, t0
    li s1, 0            # faults
    li s3, 0            # unexpected causes
    li t1, 0x12345678   # the value stored: not a command of the test finisher
    li s2, 0
    li s4, 0x100000000  # first sweep: 0 .. 4 GiB, every 64 KiB, and the page after a window's start
    li s5, 0x10000
  sweep:
    li t2, ${RAM}
    blt s2, t2, hit
    li t2, ${RAM + RAM_SIZE}
    blt s2, t2, skip    # its own RAM: its code is there
  hit:
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
  skip:
    add s2, s2, s5
    blt s2, s4, sweep
    li s5, 0x1000000000  # then far beyond 4 GiB, up to 2^39
    li s4, 0x8000000000
    bltu s2, s4, sweep
    li t0, ${UART}
    li t2, 70           # 'F': faults were taken, all of the expected kinds
    beqz s1, bad
    bnez s3, bad
    j report
  bad:
    li t2, 66           # 'B'
  report:
    sb t2, 0(t0)
  forever:
    j forever           # and never yields
  handler:
    csrr t4, mcause
    addi t5, t4, -4     # misaligned load (4) .. store access fault (7)
    li t6, 3
    bleu t5, t6, expected
    addi s3, s3, 1
  expected:
    addi s1, s1, 1
    csrr t4, mepc
    addi t4, t4, 4
    csrw mepc, t4
    mret
`, { origin: RAM }).bytes;

// Every CSR written with all ones and then zero from M-mode, but those that would take away the
// attacker's own ability to go on (mstatus, misa, mie, mtvec, PMP, mseccfg): the ones that do not
// exist raise illegal-instruction exceptions, the others take what they can hold (WARL).
const KEEP = new Set([0x300, 0x301, 0x304, 0x305, 0x747]);
const CSRS = Array.from({ length: 4096 }, (_, i) => i).filter((c) => !KEEP.has(c) && !(c >= 0x3a0 && c <= 0x3ef));
const CSR_ATTACKER = assemble(`
    la t0, handler
    csrw mtvec, t0
    li s1, 0            # illegal-instruction exceptions
    li s3, 0            # other causes
    li t1, -1
${CSRS.map((c) => `    csrrw x0, ${c}, t1\n    csrrw x0, ${c}, x0`).join("\n")}
    li t0, ${UART}
    li t2, 70           # 'F'
    beqz s1, bad
    bnez s3, bad
    j report
  bad:
    li t2, 66           # 'B'
  report:
    sb t2, 0(t0)
  forever:
    j forever
  handler:
    csrr t4, mcause
    li t5, 2
    beq t4, t5, expected
    addi s3, s3, 1
  expected:
    addi s1, s1, 1
    csrr t4, mepc
    addi t4, t4, 4
    csrw mepc, t4
    mret
`, { origin: RAM }).bytes;

/** `program` beside the counting victim: the victim finishes intact, the attacker reports F and spins on. */
async function faultsBesideVictim(program: Uint8Array): Promise<void> {
  await besideVictim({ program }, async (scene) => {
    await scene.startVictim();
    await scene.victimFinishes();
    expect((await scene.attackerSays(/[FB]/)).slice(-1)).toBe("F");
    await scene.attackerStillRuns();
  });
}

describe("hostile guests beside another VM", () => {
  test("a guest sweeping the guest-physical space outside its RAM at every width gets faults and device answers", async () => {
    await faultsBesideVictim(ATTACKER);
  }, 120_000);

  test("a guest writing every CSR gets illegal-instruction exceptions where there is none", async () => {
    await faultsBesideVictim(CSR_ATTACKER);
  }, 120_000);
});
