// Escape suite, first part: hostile guests beside a VM that keeps a pattern in its RAM and checks
// it while counting. One stores to and loads from the whole guest-physical space outside its RAM
// (every device window, the boot ROM, the CLINT, holes, far beyond 4 GiB) at every width, aligned
// or not; one writes every CSR. Each then never yields. The host answers every access as hardware
// would (an access fault where nothing is, a device's answer where one is, an illegal-instruction
// exception for a CSR that does not exist), the other VM keeps its memory and finishes in its share
// of the CPU, and the daemon keeps answering.
import { describe, test, expect } from "vitest";
import { assemble } from "../../host/util/riscv-asm";
import { besideVictim, RAM, UART } from "./rig";
import { physicalSweep, csrSweep, sweepHandler } from "./sweeps";

/** A sweep, then "F" on the UART if it took traps, all of the kinds hardware gives ("B" if not); and no yield ever. */
const attacker = (sweep: string): Uint8Array => assemble(`
    la t0, handler
    csrw mtvec, t0
${sweep}
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
${sweepHandler("handler")}
`, { origin: RAM }).bytes;
const ATTACKER = attacker(physicalSweep("p"));
const CSR_ATTACKER = attacker(csrSweep);

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
