// Small hand-written programs aimed at the translation tier's edges: each runs interpreted and
// under `--jit all` (every page translated as soon as it ran), and must end with the same
// registers and the same number of retired instructions.
import { describe, expect, it } from "vitest";
import { EXIT, assemble, run, same } from "./asm";

describe("translated code at its edges", () => {
  it("x0 stays zero when an FP instruction writes it and a later one reads it", () => {
    const t = same("x0fp", `
  li t0, 0x6000        # mstatus.FS: dirty
  csrs mstatus, t0
  li t1, 0x1234
  fmv.d.x f1, t1
  li s0, 20000
  li a0, 0
loop:
  fmv.x.d x0, f1       # the core writes x0 in the hart block
  fmv.d.x f3, x0       # and reads it from there
  fmv.x.d a1, f3
  add a0, a0, a1
  addi s0, s0, -1
  bnez s0, loop
${EXIT}`);
    expect(t.regs[10]).toBe(0n);
    expect(t.jit!.retired).toBeGreaterThan(100_000);
  });

  it("atomics run by the core see the registers translated code just wrote, and their results", () => {
    const t = same("amo", `
  la s1, word
  li s0, 5000
loop:
  addi a1, s0, 7       # the AMO's operand, written just before it
  amoadd.d a2, a1, (s1)
  add a3, a3, a2
1:
  lr.w a4, (s1)
  addi a4, a4, 3
  sc.w a5, a4, (s1)
  bnez a5, 1b
  amoswap.w a6, a4, (s1)
  xor a3, a3, a6
  addi s0, s0, -1
  bnez s0, loop
  ld a7, 0(s1)
${EXIT}
  .align 12            # a page of its own: stores to a code page drop its translation
word: .dword 0
`);
    expect(t.regs[13]).not.toBe(0n); // a3
    expect(t.jit!.retired / t.instret).toBeGreaterThan(0.5);
  });

  it("faults, MMIO loads and stores, misaligned accesses and a store into its own page, precisely", () => {
    const t = same("mem", `
  la t0, handler
  csrw mtvec, t0
  li s0, 3000
  li s3, 0x10000000    # the UART
  la s4, data
  li s5, 0x1000        # nothing there: an access fault
  .align 12
loop:
  addi s1, s1, 3
  lbu t1, 5(s3)        # MMIO load, completed by the host on the next run()
  add s2, s2, t1
  sd s1, 0(s4)
  ld t2, 0(s4)
  add s2, s2, t2
  addi s6, s6, 1
  lw t3, 0(s5)         # faults: the handler skips it and counts
  add s2, s2, s6
  sb s1, 2(s3)         # MMIO store
  xor s2, s2, s1
  lw t4, 3(s4)         # misaligned
  add s2, s2, t4
patch:
  addi s8, s8, 1       # rewritten below: the page changes under its translation
  la t5, patch
  lw t6, 0(t5)
  li a7, 0x100000
  add t6, t6, a7
  sw t6, 0(t5)
  addi s0, s0, -1
  bnez s0, loop
${EXIT}
  .align 4
handler:
  addi s7, s7, 1
  csrr t0, mepc
  addi t0, t0, 4
  csrw mepc, t0
  mret
  .align 3
data: .dword 0, 0
`);
    expect(t.regs[23]).toBeGreaterThanOrEqual(3000n); // s7: traps taken (each access fault among them)
  });

  it("straight-line code longer than a block, and past instructions left to the interpreter, runs translated", () => {
    const body = Array.from({ length: 300 }, (_, k) => (k % 50 === 25 ? "  csrr t2, mscratch\n" : `  addi a${k % 6}, a${(k + 1) % 6}, ${k % 7}\n`)).join("");
    const t = same("straight", `
  li s0, 2000
loop:
${body}
  addi s0, s0, -1
  bnez s0, loop
${EXIT}`);
    expect(t.jit!.retired / t.instret).toBeGreaterThan(0.9);
  });

  it("inline double operations give way to the core wherever a flag other than NX is raised", () => {
    // Each line: an operation at an edge, then the flags it raised are collected (in a5) and
    // reset to NX alone, the state in which the translator's inline paths run.
    const cases = [
      ["0x0010000000000001", "0x3fe0000000000000", "fmul.d f2, f0, f1"], // tiny: UF
      ["0x7fefffffffffffff", "0x7fefffffffffffff", "fadd.d f2, f0, f1"], // OF
      ["0x3ff0000000000000", "0x0", "fdiv.d f2, f0, f1"], // DZ
      ["0xbff0000000000000", "0x0", "fsqrt.d f2, f0"], // NV
      ["0x7ff0000000000000", "0xfff0000000000000", "fadd.d f2, f0, f1"], // inf - inf: NV
      ["0xbff0000000000000", "0x0", "fcvt.wu.d a4, f0, rtz"], // NV, and the result
      ["0x41e0000000000000", "0x0", "fcvt.w.d a4, f0, rtz"], // 2^31: NV
      ["0xc3e0000000000000", "0x0", "fcvt.l.d a4, f0, rtz"], // -2^63: exact, no NV
      ["0x7ff4000000000000", "0x0", "feq.d a4, f0, f1"], // signaling NaN: NV
      ["0x7ff8000000000000", "0x0", "flt.d a4, f0, f1"], // quiet NaN: NV
      ["0x0000000000000001", "0x4000000000000000", "fdiv.d f2, f0, f1"], // subnormal result: UF
      ["0x8000000000000000", "0x0", "fadd.d f2, f0, f1"], // -0 + 0
    ];
    const body = cases.map(([a, b, insn]) => `
  li t0, ${a}
  fmv.d.x f0, t0
  li t0, ${b}
  fmv.d.x f1, t0
  ${insn}
  fmv.x.d t2, f2
  add a6, a6, t2
  add a6, a6, a4
  frflags t1
  slli a5, a5, 1
  xor a5, a5, t1
  fsflags s1`).join("");
    const t = same("fpedges", `
  li t0, 0x6000
  csrs mstatus, t0     # FS dirty
  li s1, 1             # NX
  fsflags s1
  li s0, 3000
  .align 12
loop:${body}
  addi s0, s0, -1
  bnez s0, loop
${EXIT}`);
    expect(t.regs[15]).not.toBe(0n); // a5: flags were raised
    expect(t.jit!.retired / t.instret).toBeGreaterThan(0.5);
  });

  it("a trap loop under --jit all is stopped as interpreted", () => {
    const bytes = assemble("trap", `
  li t0, 0x40000000    # nothing there: every fetch faults, the handler's too
  csrw mtvec, t0
  jr t0
`);
    const r = run(bytes, "all", 90);
    expect(r.reason).toMatchObject({ kind: "error", message: expect.stringMatching(/stuck in a trap loop/) });
  }, 120_000);
});
