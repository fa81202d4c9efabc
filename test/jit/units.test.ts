// Units: pages translated into one function, in which a call from one to another is a branch
// (translate.ts emitCross). Under --jit all (the tests' mode) linked pages not translated yet make
// a unit; under --jit on, a unit compiled for speed takes the linked units when both cross to
// others all the time (tier.ts). Crossing must check what the hart would: that pc's page is still
// mapped to the page translated, and that page's code still what was translated; these programs
// change each under a running unit.
import { describe, expect, it } from "vitest";
import { EXIT, assemble, same } from "./asm";
import { VirtMachine } from "../../host/machine/virt";
import { nodePlatform } from "../../host/platform/node";

// A function in its own page, called by a loop in another.
const CALLEE = (step: number) => `
  addi a0, a0, ${step}
  xor a2, a0, s1
  add a3, a3, a2
  srli a2, a3, 3
  add a4, a4, a2
  addi a5, a5, 1
  ret
`;

const callLoop = (rounds: number) => `
  li s1, ${rounds}
  li a0, 0
1:
  call far
  addi s1, s1, -1
  bnez s1, 1b
${EXIT}
  .org 0x1000
far:
${CALLEE(1)}`;

describe("units of pages", () => {
  it("a loop calling into another page runs as one unit", () => {
    const t = same("unit-call", callLoop(3000000));
    expect(t.regs[10]).toBe(3000000n);
    expect(t.jit!.units).toBeLessThan(t.jit!.translations); // a unit of two pages (at least)
    expect(t.jit!.retired / t.instret).toBeGreaterThan(0.5);
  }, 60_000);

  it("a store to one of its pages (no fence.i): the unit runs on, and the page's new code runs", () => {
    // After 1,500,000 calls the loop rewrites the callee's first instruction (addi a0, a0, 1 -> 3).
    const t = same("unit-store", `
  li s1, 3000000
  li a0, 0
  li s2, 1500000
1:
  call far
  addi s1, s1, -1
  bne s1, s2, 2f
  la t0, far
  lw t1, 0(t0)
  li t2, 0x00200000     # addi's immediate field, 1 -> 3
  add t1, t1, t2
  sw t1, 0(t0)
2:
  bnez s1, 1b
${EXIT}
  .org 0x1000
far:
  .option push
  .option norvc
${CALLEE(1)}
  .option pop`);
    expect(t.regs[10]).toBe(1500000n + 3n * 1500000n);
    expect(t.jit!.units).toBeLessThan(t.jit!.translations);
  }, 60_000);

  it("one of its pages mapped elsewhere (Sv39, sfence.vma): the call goes to the new page's code", () => {
    // S-mode calls the page at 0x80020000 (identity-mapped: a unit with the caller's page), then
    // maps that address to 0x80021000, whose code adds 100 instead of 1, and calls it as often.
    const L0 = 0x80032000;
    const t = same("unit-remap", `
  li t0, -1
  csrw pmpaddr0, t0
  li t0, 0x1f
  csrw pmpcfg0, t0      # S-mode may reach everything
  # root (0x80030000): [0] 1 GiB identity (the devices), [2] -> L1 (0x80031000); L1[0] -> L0
  li t0, 0x80030000
  li t1, 0xcf
  sd t1, 0(t0)
  li t1, ((0x80031000 >> 12) << 10) | 1
  sd t1, 16(t0)
  li t0, 0x80031000
  li t1, ((${L0} >> 12) << 10) | 1
  sd t1, 0(t0)
  # L0: 0x80000000-0x801fffff identity, 4 KiB pages
  li t0, ${L0}
  li t1, ((0x80000000 >> 12) << 10) | 0xcf
  li t2, 512
  li t3, 1 << 10
3:
  sd t1, 0(t0)
  add t1, t1, t3
  addi t0, t0, 8
  addi t2, t2, -1
  bnez t2, 3b
  li t0, (8 << 60) | (0x80030000 >> 12)
  csrw satp, t0
  sfence.vma
  li t0, 0x1800
  csrc mstatus, t0
  li t0, 0x800
  csrs mstatus, t0      # MPP = S
  la t0, smain
  csrw mepc, t0
  mret
  .org 0x1000           # a page of its own, entered at its first byte as the callee's is
smain:
  li a0, 0
  li s1, 1500000
1:
  call far
  addi s1, s1, -1
  bnez s1, 1b
  li t0, ${L0} + 0x20 * 8
  li t1, ((0x80021000 >> 12) << 10) | 0xcf
  sd t1, 0(t0)
  sfence.vma
  li s1, 1500000
2:
  call far
  addi s1, s1, -1
  bnez s1, 2b
${EXIT}
  .org 0x20000
far:
${CALLEE(1)}
  .org 0x21000
${CALLEE(100)}`);
    expect(t.regs[10]).toBe(1500000n + 100n * 1500000n);
    expect(t.jit!.units).toBeLessThan(t.jit!.translations);
  }, 60_000);

  // Long enough for the optimizing compile to come back while it runs (3 M rounds ended first, at
  // times, on this machine).
  const ON_ROUNDS = 30_000_000;
  it("under --jit on, with a compile thread: the loop and the function, translated apart, are one unit once compiled for speed", async () => {
    const m = new VirtMachine({
      module: nodePlatform.coreModule(), memory: 64 << 20, bios: null, kernel: { name: "unit-on", bytes: assemble("unit-on", callLoop(ON_ROUNDS)) },
      jit: "on", jitCompiler: nodePlatform.jitCompiler!(), output: () => {},
    });
    for (let i = 0; ; i++) {
      const r = m.step();
      if (r.state === "stopped") {
        expect(r.reason).toEqual({ kind: "poweroff", code: 0 });
        break;
      }
      if (i % 4 === 3) await new Promise((resolve) => setImmediate(resolve)); // the compile thread's replies
    }
    expect(m.core.x(0, 10)).toBe(BigInt(ON_ROUNDS));
    const jit = m.stats().jit!;
    m.close();
    expect(jit.optimized).toBeGreaterThan(0);
    expect(jit.units).toBeLessThan(jit.translations); // the two pages in one unit
  }, 120_000);
});
