// VirtMachine.step() shares a step among a VM's harts in quanta, so a hart spinning on a lock
// does not hold up the hart that would release it for a whole step.
import { test, expect } from "vitest";
import { assemble } from "../host/util/riscv-asm";
import { VirtMachine } from "../host/machine/virt";
import { loadCoreModule } from "../host/platform/node/core";

const RAM = 0x80000000;

test("a hart waiting for another sees it act within the same step", () => {
  // Hart 0 spins until hart 1 clears `flag`, then sets `seen`; hart 1 clears it and spins.
  const prog = assemble(`
    bnez a0, hart1
    la t0, flag
  1:
    lw t1, 0(t0)
    bnez t1, 1b
    la t0, seen
    li t1, 1
    sw t1, 0(t0)
  2:
    j 2b
  hart1:
    la t0, flag
    sw zero, 0(t0)
  3:
    j 3b
    .balign 4096
  flag:
    .word 1
  seen:
    .word 0
  `, { origin: RAM });
  const m = new VirtMachine({ module: loadCoreModule(), memory: 16 << 20, harts: 2, bios: null, kernel: { name: "harts", bytes: prog.bytes }, output: () => {} });
  const seen = () => new DataView(m.core.phys(Number(prog.labels.seen), 4)!.slice().buffer).getUint32(0, true);
  expect(m.step(1_000_000).state).toBe("running");
  // Hart 0 spun a quantum, hart 1 cleared the flag, hart 0 saw it: all in one step (before,
  // hart 0 spun the whole step first).
  expect(seen()).toBe(1);
  expect(m.work).toBeGreaterThanOrEqual(2_000_000); // each hart still got its whole budget
});
