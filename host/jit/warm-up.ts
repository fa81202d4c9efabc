// The compile thread's warm-up (docs/PERFORMANCE.md, "Warming the engine"): while the first VM is
// still being built, run a small RISC-V program on a throw-away core and translate it, so that
// V8 has compiled the hot parts of the core and of the translator before a guest needs them.
//
// Left cold, a guest's first ~50 ms ran the core's Liftoff code (about a quarter of its
// optimized speed) while V8 compiled the run loop for speed, and the first pages translated took
// 15-25 ms each (the translator's JavaScript not compiled yet) against ~5 ms later. V8 shares a
// module's compiled code among the threads that compile the same bytes, so the run loop's
// optimized code made here is the one every pCPU thread of the process runs.

import * as L from "../core/layout";
import { Core } from "../core/core";
import { TranslationTier } from "./tier";
import type { CompileModule } from "./compiler";

// Registers, CSRs and opcodes the program uses.
const [zero, ra, t0, t1, t2, s0, s1, a0, a1, a2, a3, a4, a5, a6, a7, t3, t4, t5] = [0, 1, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 28, 29, 30];
const MSTATUS = 0x300, MTVEC = 0x305, MEPC = 0x341, SATP = 0x180, SSCRATCH = 0x140;
const OP = 0x33, OP_IMM = 0x13, OP_32 = 0x3b, LOAD = 0x03, STORE = 0x23, BRANCH = 0x63, AMO = 0x2f, SYSTEM = 0x73;

const r = (f7: number, rs2: number, rs1: number, f3: number, rd: number, op: number) => (f7 << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op) >>> 0;
const i = (imm: number, rs1: number, f3: number, rd: number, op: number) => ((imm & 0xfff) << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op) >>> 0;
const s = (imm: number, rs2: number, rs1: number, f3: number) => ((imm >> 5 & 0x7f) << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | (imm & 0x1f) << 7 | STORE) >>> 0;
const b = (imm: number, rs2: number, rs1: number, f3: number) =>
  ((imm >> 12 & 1) << 31 | (imm >> 5 & 0x3f) << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | (imm >> 1 & 0xf) << 8 | (imm >> 11 & 1) << 7 | BRANCH) >>> 0;
const jal = (rd: number, imm: number) => ((imm >> 20 & 1) << 31 | (imm >> 1 & 0x3ff) << 21 | (imm >> 11 & 1) << 20 | (imm >> 12 & 0xff) << 12 | rd << 7 | 0x6f) >>> 0;
const csrrw = (rd: number, csr: number, rs1: number) => i(csr, rs1, 1, rd, SYSTEM);
const csrrs = (rd: number, csr: number, rs1: number) => i(csr, rs1, 2, rd, SYSTEM);
const csrrc = (rd: number, csr: number, rs1: number) => i(csr, rs1, 3, rd, SYSTEM);
const addi = (rd: number, rs1: number, imm: number) => i(imm, rs1, 0, rd, OP_IMM);
const slli = (rd: number, rs1: number, sh: number) => i(sh, rs1, 1, rd, OP_IMM);
const srli = (rd: number, rs1: number, sh: number) => i(sh, rs1, 5, rd, OP_IMM);
const auipc = (rd: number, imm20: number) => (imm20 << 12 | rd << 7 | 0x17) >>> 0;
const lui = (rd: number, imm20: number) => (imm20 << 12 | rd << 7 | 0x37) >>> 0;
const MRET = 0x30200073, ECALL = 0x00000073, SFENCE_VMA = 0x12000073;

type Item = number | { half: number } | { label: string } | { align: 4 } | ((pc: number, at: (label: string) => number) => number);

/**
 * The program, at the start of RAM: a body of integer, memory, atomic, CSR and compressed
 * instructions called in a loop, first 256 times in M-mode on physical addresses, then for ever
 * in S-mode under Sv39 paging (a gigapage mapping RAM), with an ecall to M-mode each time round.
 * Its data page follows its code page; the page table, the next one.
 */
function program(): Uint8Array {
  const items: Item[] = [
    auipc(s0, 1), // s0: the data page
    auipc(t0, 0), (pc, at) => addi(t0, t0, at("mtrap") - (pc - 4)), csrrw(zero, MTVEC, t0),
    addi(s1, zero, 0),
    { label: "mloop" },
    (pc, at) => jal(ra, at("body") - pc),
    addi(s1, s1, 1), addi(t0, zero, 256),
    (pc, at) => b(at("mloop") - pc, t0, s1, 4), // blt s1, t0
    // The root table, one page past the data: entry 2 maps 0x80000000 (1 GiB, RWX, accessed, dirty).
    lui(t2, 1), r(0, t2, s0, 0, t1, OP), // t1 = s0 + 0x1000
    lui(t2, 0x20000), addi(t2, t2, 0xcf), s(16, t2, t1, 3),
    srli(t2, t1, 12), addi(t3, zero, 1), slli(t3, t3, 63), r(0, t3, t2, 6, t2, OP), csrrw(zero, SATP, t2), SFENCE_VMA,
    addi(t2, zero, 3), slli(t2, t2, 11), csrrc(zero, MSTATUS, t2), addi(t2, zero, 1), slli(t2, t2, 11), csrrs(zero, MSTATUS, t2), // MPP = S
    auipc(t2, 0), (pc, at) => addi(t2, t2, at("sloop") - (pc - 4)), csrrw(zero, MEPC, t2), MRET,
    { label: "sloop" },
    (pc, at) => jal(ra, at("body") - pc),
    ECALL,
    (pc, at) => jal(zero, at("sloop") - pc),
    { label: "body" },
    addi(a0, a0, 1), r(0, a0, a1, 0, a1, OP), r(0, a1, a2, 4, a2, OP), slli(a3, a2, 3), srli(a4, a3, 2), r(0, a3, a4, 3, a5, OP), // add, xor, sltu
    r(1, a1, a0, 0, a6, OP), r(1, a0, a1, 5, a7, OP), r(0, a2, a1, 0, t3, OP_32), // mul, divu, addw
    s(0, a1, s0, 3), i(0, s0, 3, t4, LOAD), s(8, a2, s0, 2), i(8, s0, 2, t4, LOAD), // sd/ld, sw/lw
    s(12, a3, s0, 1), i(12, s0, 5, t4, LOAD), s(14, a4, s0, 0), i(14, s0, 4, t4, LOAD), // sh/lhu, sb/lbu
    r(0, a0, s0, 2, t4, AMO), r(2 << 2, 0, s0, 3, t4, AMO), r(3 << 2, a1, s0, 3, t4, AMO), // amoadd.w, lr.d, sc.d
    csrrw(t4, SSCRATCH, a0), csrrs(t4, SSCRATCH, zero),
    { half: 0x0505 }, { half: 0x85aa }, { half: 0x962e }, { half: 0x6014 }, { half: 0xe810 }, // c.addi a0,1; c.mv a1,a0; c.add a2,a1; c.ld a3,0(s0); c.sd a2,16(s0)
    b(8, zero, a0, 0), b(8, zero, a0, 1), addi(a0, a0, 0), // beq (not taken), bne (taken, over the addi)
    i(0, ra, 0, zero, 0x67), // ret
    { align: 4 }, // (mtvec's low bits are its mode)
    { label: "mtrap" },
    csrrs(t5, MEPC, zero), addi(t5, t5, 4), csrrw(zero, MEPC, t5), MRET,
  ];
  const size = (it: Item, pc: number) => (typeof it !== "object" ? 4 : "half" in it ? 2 : "align" in it ? pc & 2 : 0);
  const labels = new Map<string, number>();
  let pc = 0;
  for (const it of items) {
    if (typeof it === "object" && "label" in it) labels.set(it.label, pc);
    pc += size(it, pc);
  }
  const at = (label: string) => labels.get(label)!;
  const bytes = new Uint8Array(pc);
  const view = new DataView(bytes.buffer);
  pc = 0;
  for (const it of items) {
    if (typeof it === "number") view.setUint32(pc, it, true);
    else if (typeof it === "function") view.setUint32(pc, it(pc, at), true);
    else if ("half" in it) view.setUint16(pc, it.half, true);
    else if ("align" in it && pc & 2) view.setUint16(pc, 0x0001, true); // c.nop
    pc += size(it, pc);
  }
  return bytes;
}

export interface WarmUp {
  /** The core that ran it (its hart 0 ends in S-mode, in the program's loop). */
  core: Core;
  /** Instructions interpreted, then run with the program's pages translated. */
  interpreted: number;
  translated: number;
  /** Translations made of the program's code. */
  translations: number;
}

/**
 * Warm the engine up for `module` (the core's): run the program interpreted for `interpretMs`,
 * then translated for `translateMs`, every page it runs translated at once on this thread and
 * compiled by `compile` (the compile thread's own, so that the same path warms up).
 */
export function warmUp(module: WebAssembly.Module, { compile, interpretMs = 6, translateMs = 10 }: { compile?: CompileModule; interpretMs?: number; translateMs?: number } = {}): WarmUp {
  const core = new Core({ module, ramSize: 1 << 20 });
  core.phys(L.RAM_GPA, 4096)!.set(program());
  core.setPc(0, L.RAM_GPA);
  const runFor = (ms: number, after: () => void): number => {
    let n = 0;
    for (const until = performance.now() + ms; performance.now() < until;) {
      core.run(0, 20_000);
      n += core.executed(0);
      after();
    }
    return n;
  };
  const interpreted = runFor(interpretMs, () => {});
  const tier = new TranslationTier(core, "all", undefined, compile);
  const translated = runFor(translateMs, () => tier.update());
  tier.close();
  return { core, interpreted, translated, translations: tier.stats().translations };
}
