/**
 * Random and mutated cases for the core's differential fuzzing: a starting state (privilege,
 * paging, every register, the CSRs a case sets, its pages' permissions) and a block of RV64GC
 * (+ Zba/Zbb/Zbs) instructions. What the block may do is limited by construction, so that every
 * case ends and none reaches outside its own memory, on both sides:
 *  - control flow goes forward only (branches, jal, auipc+jalr to later items; no mret, sret
 *    or wfi where they would not trap), so a block ends at its closing ecall or a trap;
 *  - x2, x8 and x9 are pointers into the data window: only `addi` items of at most ±64 (eight a
 *    pointer at most) change them, and every memory access goes through one with a 12-bit offset,
 *    so every access lands in the 16 KiB window (or its pages' faults);
 *  - the CSRs the runtime needs (mtvec, mscratch, medeleg, mideleg, satp, stvec, PMP) and those
 *    that differ by design (counters, timers, misa's writes, debug triggers) are never written
 *    or read by the block (see the allow list in compare.ts for what is left and why).
 * Random 32-bit words and mutated words pass through sanitize(), which keeps them to these rules.
 */
import { prng } from "../../test/prng";
import { liSequence } from "../../host/util/riscv-asm";
import { CLINT_MSIP, CODE_PAGES, CODE_VA, D, MEGA_VA, PTE, SATP, SCRATCH, STUB, STUB_VA, WINDOW_VA, codePage, newDescriptor, pte, type CaseImage } from "./image";

export type Priv = 0 | 1 | 3;

/** One item of a block: a plain instruction, or a forward jump to the item `skip` items on. */
export type Item =
  | { k: "w"; w: number; n: 2 | 4 }
  | { k: "b"; w: number; skip: number } // B-type, offset filled in
  | { k: "cb"; w: number; skip: number } // c.beqz/c.bnez, offset filled in
  | { k: "cj"; skip: number }
  | { k: "jal"; rd: number; skip: number }
  | { k: "jalr"; rd: number; tmp: number; skip: number } // auipc tmp; jalr rd, off(tmp)
  | { k: "msip"; tmp: number } // lui tmp, CLINT; sw zero, 0(tmp): msip cleared
  | { k: "satp"; tmp: number; rd: number; value: bigint }; // li tmp, value; csrrw rd, satp, tmp

export interface CaseSpec {
  priv: Priv;
  /** satp: paged (Sv39, Sv48 or Sv57, all mapping the same) or bare. */
  paged: boolean;
  sv: 39 | 48 | 57;
  /** mstatus as the case starts (MPP and MIE are set from priv). */
  mstatus: bigint;
  x: bigint[];
  /** Pointers' offsets in the window (x2, x8, x9). */
  ptr: number[];
  f: bigint[];
  fcsr: number;
  medeleg: bigint;
  mideleg: bigint;
  mie: bigint;
  mip: bigint;
  stvecMode: number;
  /** mtvec vectored (interrupts reach the runtime through its vector table). */
  mtvecVectored: boolean;
  /** The CLINT's msip set as the case starts (MSIP pending). */
  msip: boolean;
  other: bigint[]; // sscratch sepc scause stval mcause mtval mcounteren scounteren menvcfg senvcfg
  /** Leaf permission bits: code page, window pages 0-3, the alias, the megapage. */
  perm: bigint[];
  /**
   * An instruction across the block's page boundary: item `at` (a 32-bit word) starts 2 bytes
   * before the second page, which the last run maps as `last` and the runs before it as
   * `first` (another page has `upper` for the instruction's upper half).
   */
  cross?: { at: number; upper: number; first: SecondPage; last: SecondPage };
  /** The megapage's PPN is misaligned (a page fault on use). */
  megaMisaligned: boolean;
  seed: bigint;
  items: Item[];
}

/** How the second code page is mapped: to the page after the first or to the other one (`alt`), with a leaf's bits. */
export interface SecondPage { alt: boolean; perm: bigint }

export const POINTERS = [2, 8, 9];
const isPointer = (r: number) => r === 2 || r === 8 || r === 9;
const MAX_ADJUST = 8;

type Rand = () => number;

function randomSource(seed: number) {
  const next = prng(seed);
  const int = (n: number) => Math.floor((next() / 4294967296) * n);
  const pick = <T>(a: readonly T[]): T => a[int(a.length)]!;
  const chance = (p: number) => next() / 4294967296 < p;
  const u64 = () => (BigInt(next()) << 32n) | BigInt(next());
  return { next: next as Rand, int, pick, chance, u64 };
}
export type Random = ReturnType<typeof randomSource>;
export const random = randomSource;

// ---- encodings ----
const R = (op: number, f3: number, f7: number, rd: number, rs1: number, rs2: number) => ((f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op) >>> 0;
const I = (op: number, f3: number, rd: number, rs1: number, imm: number) => (((imm & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op) >>> 0;
const S = (op: number, f3: number, rs1: number, rs2: number, imm: number) => ((((imm >> 5) & 0x7f) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | ((imm & 0x1f) << 7) | op) >>> 0;
const R4 = (op: number, rm: number, fmt: number, rd: number, rs1: number, rs2: number, rs3: number) => ((rs3 << 27) | (fmt << 25) | (rs2 << 20) | (rs1 << 15) | (rm << 12) | (rd << 7) | op) >>> 0;
const EBREAK = 0x0010_0073;
const ECALL = 0x0000_0073;

function bImm(w: number, off: number): number {
  return (w & 0x01fff07f) | (((off >> 12) & 1) << 31) | (((off >> 5) & 0x3f) << 25) | (((off >> 1) & 0xf) << 8) | (((off >> 11) & 1) << 7);
}
function jImm(rd: number, off: number): number {
  return ((((off >> 20) & 1) << 31) | (((off >> 1) & 0x3ff) << 21) | (((off >> 11) & 1) << 20) | (((off >> 12) & 0xff) << 12) | (rd << 7) | 0x6f) >>> 0;
}
function cbImm(w: number, off: number): number {
  return (w & 0xe383) | (((off >> 8) & 1) << 12) | (((off >> 3) & 3) << 10) | (((off >> 6) & 3) << 5) | (((off >> 1) & 3) << 3) | (((off >> 5) & 1) << 2);
}
function cjImm(off: number): number {
  const b = (n: number) => (off >> n) & 1;
  return 0xa001 | (b(11) << 12) | (b(4) << 11) | (((off >> 8) & 3) << 9) | (b(10) << 8) | (b(6) << 7) | (b(7) << 6) | (((off >> 1) & 7) << 3) | (b(5) << 2);
}

/** Item sizes in bytes. */
export function itemBytes(it: Item): number {
  if (it.k === "satp") return 4 * (liSequence(it.tmp, it.value).length + 1);
  return it.k === "w" ? it.n : it.k === "cb" || it.k === "cj" ? 2 : it.k === "jalr" || it.k === "msip" ? 8 : 4;
}

/**
 * The block's bytes: items, then the closing ECALL (its mtval is zero on both sides, where
 * an EBREAK's may differ). Jumps past the end land on it.
 */
export function layout(items: readonly Item[]): Uint8Array {
  const at: number[] = [];
  let pc = 0;
  for (const it of items) { at.push(pc); pc += itemBytes(it); }
  at.push(pc);
  const out = new Uint8Array(pc + 4);
  const dv = new DataView(out.buffer);
  const target = (i: number, skip: number) => at[Math.min(i + 1 + skip, items.length)]!;
  items.forEach((it, i) => {
    const p = at[i]!;
    switch (it.k) {
      case "w": if (it.n === 2) dv.setUint16(p, it.w, true); else dv.setUint32(p, it.w, true); break;
      case "b": dv.setUint32(p, bImm(it.w, target(i, it.skip) - p) >>> 0, true); break;
      case "jal": dv.setUint32(p, jImm(it.rd, target(i, it.skip) - p), true); break;
      case "cb": {
        // c.beqz/c.bnez reach 256 bytes: beyond, the target is the farthest item in reach.
        let j = Math.min(i + 1 + it.skip, items.length);
        while (at[j]! - p > 254) j--;
        dv.setUint16(p, cbImm(it.w, at[j]! - p), true);
        break;
      }
      case "cj": dv.setUint16(p, cjImm(target(i, it.skip) - p), true); break;
      case "jalr": {
        const off = target(i, it.skip) - p;
        dv.setUint32(p, ((it.tmp << 7) | 0x17) >>> 0, true); // auipc tmp, 0
        dv.setUint32(p + 4, I(0x67, 0, it.rd, it.tmp, off), true);
        break;
      }
      case "satp":
        liSequence(it.tmp, it.value).forEach((x, n) => dv.setUint32(p + 4 * n, x, true));
        dv.setUint32(p + itemBytes(it) - 4, ((0x180 << 20) | (it.tmp << 15) | (1 << 12) | (it.rd << 7) | 0x73) >>> 0, true);
        break;
      case "msip":
        dv.setUint32(p, (CLINT_MSIP | (it.tmp << 7) | 0x37) >>> 0, true); // lui tmp, CLINT_MSIP >> 12
        dv.setUint32(p + 4, S(0x23, 2, it.tmp, 0, 0), true); // sw zero, 0(tmp)
        break;
    }
  });
  dv.setUint32(pc, ECALL, true);
  return out;
}

// ---- CSRs ----
/** CSRs the block may read and write. */
const CSR_RW = [0x001, 0x002, 0x003, 0x100, 0x104, 0x106, 0x10a, 0x140, 0x141, 0x142, 0x143, 0x144,
  0x300, 0x304, 0x306, 0x30a, 0x341, 0x342, 0x343, 0x344];
/** CSRs the block may only read (a write would break the runtime, or is WARL that differs). */
const CSR_RO = [0x105, 0x180, 0x301, 0x302, 0x303, 0x305, 0x340, 0xf11, 0xf12, 0xf13, 0xf14, 0xf15, 0x3a0, 0x3b0];
/**
 * Counters and timers (their values differ between any two machines), debug triggers (QEMU has
 * them, wasmvisor not yet), PMP entries 16-63 (QEMU 7.2 has 16 entries, so their CSRs are
 * illegal there; wasmvisor has 64 read-only-zero ones: the spec allows 0, 16 or 64).
 */
function csrBanned(c: number): boolean {
  return (c >= 0xb00 && c <= 0xb9f) || (c >= 0xc00 && c <= 0xc9f) || c === 0x14d || c === 0x24d || c === 0x320
    || (c >= 0x7a0 && c <= 0x7af) || (c >= 0x3a4 && c <= 0x3af) || (c >= 0x3c0 && c <= 0x3ef);
}
function csrWritable(c: number): boolean {
  return CSR_RW.includes(c) || (!CSR_RO.includes(c) && !(c >= 0x3a0 && c <= 0x3ef) && c !== 0x747 && !(c >= 0x323 && c <= 0x33f) && !csrBanned(c));
}

/** Registers a random instruction may write: all but x0 and the pointers. */
function dataReg(r: Random): number {
  for (;;) {
    const x = 1 + r.int(31);
    if (!isPointer(x)) return x;
  }
}
const anyReg = (r: Random) => r.int(32);

/**
 * A word as the block may run it: jumps become ecall, memory accesses go through a pointer, an
 * x destination is never a pointer, CSR accesses stay within what is allowed, mret, sret and
 * wfi become ecall unless they trap in `priv`. Returns null for words to drop (16-bit words).
 */
export function sanitize(w: number, r: Random, priv: Priv, tsr: boolean, tw: boolean): number | null {
  w >>>= 0;
  if ((w & 3) !== 3) return null;
  const op = w & 0x7f;
  const rd = (w >> 7) & 31, f3 = (w >> 12) & 7, rs1 = (w >> 15) & 31;
  const setRd = (x: number) => ((w & ~(31 << 7)) | (x << 7)) >>> 0;
  const setRs1 = (x: number) => ((w & ~(31 << 15)) | (x << 15)) >>> 0;
  if ((w & 0x1f) === 0x1f) return null; // 48-bit and longer encodings
  switch (op) {
    case 0x63: case 0x6f: case 0x67: return ECALL;
    case 0x03: case 0x2f: {
      w = setRs1(r.pick(POINTERS));
      return isPointer(rd) ? setRd(dataReg(r)) : w;
    }
    case 0x07: case 0x23: case 0x27: return setRs1(r.pick(POINTERS));
    case 0x13: case 0x17: case 0x1b: case 0x33: case 0x37: case 0x3b:
      return isPointer(rd) ? setRd(dataReg(r)) : w;
    case 0x53: {
      const f5 = w >>> 27;
      const xDest = f5 === 0x14 || f5 === 0x18 || f5 === 0x1c;
      return xDest && isPointer(rd) ? setRd(dataReg(r)) : w;
    }
    case 0x73: {
      if (f3 === 0) {
        const f12 = w >>> 20;
        if (f12 === 0x302 || f12 === 0x7b2) return priv === 3 ? ECALL : w;
        if (f12 === 0x102) return priv === 0 || (priv === 1 && tsr) ? w : ECALL;
        if (f12 === 0x105) return priv === 0 || (priv === 1 && tw) ? w : ECALL;
        return w;
      }
      if (f3 === 4) return w; // reserved: illegal
      const c = w >>> 20;
      const writes = (f3 & 3) === 1 || rs1 !== 0;
      if (csrBanned(c) || (writes && !csrWritable(c))) {
        const csr = writes ? r.pick(CSR_RW) : r.pick([...CSR_RW, ...CSR_RO]);
        w = ((w & 0xfffff) | (csr << 20)) >>> 0;
      }
      // Counter enables and envcfg only through immediates (and envcfg's FIOM alone): QEMU 7.2
      // keeps bits there that are read-only zero (compare.ts), and values read back from them
      // would carry the difference into everything computed after.
      const now = w >>> 20;
      if (now === 0x306 || now === 0x106 || now === 0x30a || now === 0x10a) {
        w = (w | (4 << 12)) >>> 0;
        if (now === 0x30a || now === 0x10a) w = (w & ~(0x1e << 15)) >>> 0;
      }
      return isPointer(rd) ? setRd(dataReg(r)) : w;
    }
    default:
      return w; // fences, FP multiply-adds, reserved and custom opcodes (illegal)
  }
}

// ---- instruction classes ----
function alu(r: Random): number {
  const rd = dataReg(r), a = anyReg(r), b = anyReg(r);
  switch (r.int(6)) {
    case 0: return R(0x33, r.int(8), r.pick([0, 0x20, 1]), rd, a, b) >>> 0; // base ops, sub/sra, M
    case 1: return R(0x3b, r.pick([0, 1, 4, 5, 6, 7]), r.pick([0, 0x20, 1]), rd, a, b); // W forms
    case 2: {
      const f3 = r.pick([0, 2, 3, 4, 6, 7, 1, 5]);
      if (f3 === 1) return I(0x13, 1, rd, a, r.int(64));
      if (f3 === 5) return I(0x13, 5, rd, a, r.int(64) | (r.chance(0.5) ? 0x400 : 0));
      return I(0x13, f3, rd, a, r.int(4096) - 2048);
    }
    case 3: {
      const f3 = r.pick([0, 1, 5]);
      if (f3 === 0) return I(0x1b, 0, rd, a, r.int(4096) - 2048);
      return I(0x1b, f3, rd, a, r.int(32) | (f3 === 5 && r.chance(0.5) ? 0x400 : 0));
    }
    case 4: return ((r.next() & 0xfffff000) | (rd << 7) | r.pick([0x37, 0x17])) >>> 0; // lui, auipc
    default: return bitmanip(r, rd, a, b);
  }
}

/** Zba, Zbb, Zbs (both machines have them). */
function bitmanip(r: Random, rd: number, a: number, b: number): number {
  const forms: (() => number)[] = [
    () => R(0x33, r.pick([2, 4, 6]), 0x10, rd, a, b), // sh1add sh2add sh3add
    () => R(0x3b, r.pick([0, 2, 4, 6]), r.pick([0x04, 0x10]), rd, a, b), // add.uw, shNadd.uw
    () => I(0x1b, 1, rd, a, 0x080 | r.int(64)), // slli.uw
    () => R(0x33, r.pick([7, 6, 4]), 0x20, rd, a, b), // andn orn xnor
    () => R(0x33, r.pick([4, 5, 6, 7]), 0x05, rd, a, b), // min minu max maxu
    () => R(0x33, r.pick([1, 5]), 0x30, rd, a, b), // rol ror
    () => R(0x3b, r.pick([1, 5]), 0x30, rd, a, b), // rolw rorw
    () => I(0x13, 5, rd, a, 0x600 | r.int(64)), // rori
    () => I(0x1b, 5, rd, a, 0x600 | r.int(32)), // roriw
    () => I(0x13, 1, rd, a, r.pick([0x600, 0x601, 0x602, 0x604, 0x605])), // clz ctz cpop sext.b sext.h
    () => I(0x1b, 1, rd, a, r.pick([0x600, 0x601, 0x602])), // clzw ctzw cpopw
    () => R(0x3b, 4, 0x04, rd, a, 0), // zext.h
    () => I(0x13, 5, rd, a, r.pick([0x287, 0x6b8])), // orc.b rev8
    () => R(0x33, r.pick([1, 5, 1, 1]), r.pick([0x24, 0x14, 0x34]), rd, a, b), // bclr bext binv bset
    () => I(0x13, r.pick([1, 5]), rd, a, (r.pick([0x24, 0x14, 0x34, 0x24]) << 5) | r.int(64)), // bclri bexti binvi bseti
  ];
  return r.pick(forms)();
}

function memory(r: Random): number {
  const base = r.pick(POINTERS);
  const off = r.chance(0.5) ? r.int(64) - 32 : r.int(4096) - 2048;
  switch (r.int(5)) {
    case 0: case 1: return I(0x03, r.int(7), dataReg(r), base, off); // lb lh lw ld lbu lhu lwu
    case 2: return S(0x23, r.int(4), base, anyReg(r), off);
    case 3: return I(0x07, r.pick([2, 3]), r.int(32), base, off); // flw fld
    default: return S(0x27, r.pick([2, 3]), base, r.int(32), off); // fsw fsd
  }
}

function atomic(r: Random): number {
  const f5 = r.pick([0x02, 0x03, 0x02, 0x03, 0x01, 0x00, 0x04, 0x0c, 0x08, 0x10, 0x14, 0x18, 0x1c]);
  const rs2 = f5 === 0x02 ? 0 : anyReg(r);
  return ((f5 << 27) | (r.int(4) << 25) | (rs2 << 20) | (r.pick(POINTERS) << 15) | (r.pick([2, 3]) << 12) | (dataReg(r) << 7) | 0x2f) >>> 0;
}

/** Interesting floating-point bit patterns: zeros, infinities, NaNs (quiet, signalling, boxed or not), subnormals, limits. */
export function fpValue(r: Random): bigint {
  const singles = [0n, 0x80000000n, 0x7f800000n, 0xff800000n, 0x7fc00000n, 0x7f800001n, 0xffc00001n, 0x00000001n, 0x007fffffn,
    0x3f800000n, 0xbf800000n, 0x4f000000n, 0xcf000000n, 0x5f000000n, 0x7f7fffffn, 0x3effffffn, 0x3f000000n, 0x4b000001n];
  const doubles = [0n, 0x8000000000000000n, 0x7ff0000000000000n, 0xfff0000000000000n, 0x7ff8000000000000n, 0x7ff0000000000001n,
    0x0000000000000001n, 0x000fffffffffffffn, 0x3ff0000000000000n, 0xbff0000000000000n, 0x41e0000000000000n, 0xc1e0000000000000n,
    0x43e0000000000000n, 0x7fefffffffffffffn, 0x3fe0000000000000n, 0x4330000000000001n, 0x3fdfffffffffffffn];
  switch (r.int(6)) {
    case 0: return 0xffffffff00000000n | r.pick(singles);
    case 1: return 0xffffffff00000000n | BigInt(r.next());
    case 2: return r.pick(doubles);
    case 3: return r.chance(0.5) ? r.pick(singles) | (BigInt(r.next()) << 32n) : r.pick(doubles) ^ BigInt(r.int(4));
    case 4: return (r.pick([0x3ffn, 0x400n, 0x3fen, 0x43en, 0x41dn, 0xbffn, 0xc3en]) << 52n) | (r.u64() & 0xfffffffffffffn);
    default: return r.u64();
  }
}

function fp(r: Random): number {
  const fmt = r.int(2); // S, D
  const rm = r.chance(0.7) ? 7 : r.int(8);
  const fd = r.int(32), a = r.int(32), b = r.int(32), c = r.int(32);
  switch (r.int(9)) {
    case 0: return R(0x53, rm, (r.pick([0x00, 0x04, 0x08, 0x0c]) | fmt), fd, a, b); // fadd fsub fmul fdiv
    case 1: return R(0x53, rm, 0x2c | fmt, fd, a, 0); // fsqrt
    case 2: return R(0x53, r.int(3), 0x10 | fmt, fd, a, b); // fsgnj fsgnjn fsgnjx
    case 3: return R(0x53, r.int(2), 0x14 | fmt, fd, a, b); // fmin fmax
    case 4: return R4(r.pick([0x43, 0x47, 0x4b, 0x4f]), rm, fmt, fd, a, b, c);
    case 5: return R(0x53, r.int(3), 0x50 | fmt, dataReg(r), a, b); // fle flt feq
    case 6: {
      // fcvt between integers and floats, and between formats
      switch (r.int(3)) {
        case 0: return R(0x53, rm, 0x60 | fmt, dataReg(r), a, r.int(4)); // fcvt.{w,wu,l,lu}.{s,d}
        case 1: return R(0x53, rm, 0x68 | fmt, fd, anyReg(r), r.int(4)); // fcvt.{s,d}.{w,wu,l,lu}
        default: return fmt ? R(0x53, rm, 0x21, fd, a, 0) : R(0x53, rm, 0x20, fd, a, 1); // fcvt.d.s, fcvt.s.d
      }
    }
    case 7: return R(0x53, r.int(2), 0x70 | fmt, dataReg(r), a, 0); // fmv.x.{w,d}, fclass
    default: return R(0x53, 0, 0x78 | fmt, fd, anyReg(r), 0); // fmv.{w,d}.x
  }
}

function csr(r: Random): number {
  const f3 = r.pick([1, 2, 3, 5, 6, 7]);
  const readOnly = r.chance(0.3);
  let c: number;
  if (r.chance(0.08)) c = r.int(4096); // any number: most are not CSRs
  else c = readOnly ? r.pick([...CSR_RW, ...CSR_RO]) : r.pick(CSR_RW);
  const src = readOnly && f3 !== 1 && f3 !== 5 ? 0 : f3 >= 5 ? r.int(32) : anyReg(r);
  return ((c << 20) | (src << 15) | (f3 << 12) | (dataReg(r) << 7) | 0x73) >>> 0;
}

function system(r: Random, priv: Priv, tsr: boolean, tw: boolean): number {
  switch (r.int(8)) {
    case 0: return ECALL;
    case 1: return EBREAK;
    case 2: return (((r.int(16) << 24) | (r.int(16) << 20) | 0x0f) >>> 0); // fence pred, succ
    case 3: return 0x0000100f; // fence.i
    case 4: return R(0x73, 0, 0x09, 0, anyReg(r), anyReg(r)); // sfence.vma
    default: return sanitize(r.pick([0x30200073, 0x10200073, 0x10500073]), r, priv, tsr, tw)!; // mret sret wfi: where they trap
  }
}

/** Compressed instructions (not the jumps). */
function compressed(r: Random): number {
  const c3 = () => 8 + r.int(8);
  const c3d = () => r.pick([10, 11, 12, 13, 14, 15]); // x8-x15 but the pointers
  const rd = dataReg(r);
  const nz6 = () => { const v = 1 + r.int(63); return v; };
  const ci = (f3: number, op: number, reg: number, imm: number) => (f3 << 13) | (((imm >> 5) & 1) << 12) | (reg << 7) | ((imm & 0x1f) << 2) | op;
  const ptrC = r.pick([8, 9]) - 8;
  switch (r.int(14)) {
    case 0: return ci(0, 1, rd, r.int(64)); // c.addi (rd != pointer)
    case 1: return ci(1, 1, rd, r.int(64)); // c.addiw
    case 2: return ci(2, 1, rd, r.int(64)); // c.li
    case 3: { const v = nz6(); return ci(3, 1, rd, v); } // c.lui (nonzero imm; rd 2 excluded by dataReg)
    case 4: return ci(0, 2, rd, r.int(64)); // c.slli
    case 5: return (4 << 13) | (r.int(2) << 10) | (((r.int(64) >> 5) & 1) << 12) | ((c3d() - 8) << 7) | ((r.int(32)) << 2) | 1; // c.srli c.srai
    case 6: return (4 << 13) | (2 << 10) | (r.int(2) << 12) | ((c3d() - 8) << 7) | (r.int(32) << 2) | 1; // c.andi
    case 7: return (4 << 13) | (3 << 10) | (r.int(2) << 12) | ((c3d() - 8) << 7) | (r.int(4) << 5) | ((c3() - 8) << 2) | 1; // c.sub..c.addw
    case 8: return (4 << 13) | (r.int(2) << 12) | (rd << 7) | ((1 + r.int(31)) << 2) | 2; // c.mv / c.add
    case 9: { // c.lw c.ld c.fld c.sw c.sd c.fsd through x8/x9
      const f3 = r.pick([1, 2, 3, 5, 6, 7]);
      const data = f3 === 2 || f3 === 3 ? c3d() - 8 : r.int(8);
      return (f3 << 13) | (r.int(8) << 10) | (ptrC << 7) | (r.int(4) << 5) | (data << 2) | 0;
    }
    case 10: { // c.lwsp c.ldsp c.fldsp / c.swsp c.sdsp c.fsdsp through sp
      const f3 = r.pick([1, 2, 3, 5, 6, 7]);
      if (f3 <= 3) return (f3 << 13) | (r.int(2) << 12) | ((f3 === 1 ? r.int(32) : rd) << 7) | (r.int(32) << 2) | 2;
      return (f3 << 13) | (r.int(64) << 7) | (r.int(32) << 2) | 2;
    }
    case 11: return r.pick([0x0001, 0x9002, 0x0000, 0x8002, 0x6001, 0x6101 | (r.int(2) << 12)]); // c.nop c.ebreak c.illegal, c.jr x0 and c.lui x0 (reserved), c.addi16sp 0 (reserved or adjust)
    case 12: return ((0 << 13) | (r.int(256) << 5) | ((c3d() - 8) << 2)) & 0xffff; // c.addi4spn (imm 0: reserved)
    default: return (3 << 13) | (2 << 7) | 1 | (r.int(2) << 12) | (r.int(32) << 2); // c.addi16sp: changes sp! replaced below
  }
}

/** A pointer move: addi p, p, ±64 at most. */
function adjust(r: Random): Item {
  const p = r.pick(POINTERS);
  return { k: "w", n: 4, w: I(0x13, 0, p, p, r.int(129) - 64) };
}
const isAdjust = (it: Item) => it.k === "w" && it.n === 4 && (it.w & 0x707f) === 0x13 && isPointer((it.w >> 7) & 31) && ((it.w >> 7) & 31) === ((it.w >> 15) & 31);

function item(r: Random, spec: CaseSpec, left: number): Item {
  const tsr = (spec.mstatus & (1n << 22n)) !== 0n, tw = (spec.mstatus & (1n << 21n)) !== 0n;
  const roll = r.int(100);
  const skip = () => r.int(Math.max(1, Math.min(left, 12)));
  if (roll < 22) return { k: "w", n: 4, w: alu(r) };
  if (roll < 36) return { k: "w", n: 4, w: memory(r) };
  if (roll < 42) return { k: "w", n: 4, w: atomic(r) };
  if (roll < 56) return { k: "w", n: 4, w: fp(r) };
  if (roll < 63) return { k: "w", n: 4, w: sanitize(csr(r), r, spec.priv, tsr, tw)! };
  if (roll < 67) return { k: "w", n: 4, w: system(r, spec.priv, tsr, tw) };
  if (roll < 77) {
    const h = compressed(r);
    if ((h & 0xef83) === 0x6101) return adjust(r); // c.addi16sp would move sp unchecked
    return { k: "w", n: 2, w: h };
  }
  if (roll < 80) return adjust(r);
  if (roll < 86) return { k: "b", w: R(0x63, r.pick([0, 1, 4, 5, 6, 7]), 0, 0, anyReg(r), anyReg(r)), skip: skip() };
  if (roll < 88) return { k: "cb", w: (r.pick([6, 7]) << 13) | (r.int(8) << 7) | 1, skip: skip() };
  if (roll < 89) return { k: "cj", skip: skip() };
  if (roll < 91) return { k: "jal", rd: r.chance(0.5) ? 0 : dataReg(r), skip: skip() };
  if (roll < 93) return { k: "jalr", rd: r.chance(0.5) ? 0 : dataReg(r), tmp: dataReg(r), skip: skip() };
  // msip cleared through the CLINT (an access fault, or a page fault when paged, outside M-mode
  // where PMP or paging forbid it). Only cleared: set by a store, the interrupt would be taken
  // at a point each machine picks (the spec asks only for a bounded time); the case's start
  // sets it, where the mret that enters the block takes it at once if enabled.
  if (roll === 93) return { k: "msip", tmp: dataReg(r) };
  if (roll === 94 && spec.paged) return satpItem(r, spec);
  const w = sanitize(r.next(), r, spec.priv, tsr, tw);
  return w === null ? { k: "w", n: 4, w: alu(r) } : { k: "w", n: 4, w };
}

/**
 * A satp write (M-mode: what MPRV's accesses use; S-mode: the block's own translation, or an
 * illegal instruction under TVM; U-mode: illegal) in a paged case: another root mapping the same
 * (Sv39, Sv48, Sv57: wasmvisor has no Sv57, so the write leaves satp as it was, as the spec has it
 * for a mode not supported; QEMU 7.2 takes it), an unsupported mode (no effect on either), or,
 * from S-mode, Bare (the next fetch faults). Bare from M-mode with MPRV, then Sv57, would leave
 * wasmvisor Bare where QEMU translates; Bare with instruction access faults delegated would
 * send the fault to stvec's virtual address, now unmapped, for ever: neither is generated.
 */
const bareAllowed = (spec: CaseSpec) => spec.priv === 1 && !(spec.medeleg & 2n);
function satpItem(r: Random, spec: CaseSpec): Item {
  const asid = r.chance(0.3) ? BigInt(r.int(0x10000)) << 44n : 0n;
  const root = (v: bigint) => v & ((1n << 44n) - 1n);
  const values = [SATP.sv39, SATP.sv48, SATP.sv57, SATP.sv57, (BigInt(r.pick([1, 2, 3, 4, 5, 6, 7, 11, 12, 13, 14, 15])) << 60n) | root(SATP.sv39)];
  const value = bareAllowed(spec) && r.chance(0.1) ? 0n : r.pick(values) | asid;
  return { k: "satp", tmp: dataReg(r), rd: r.chance(0.5) ? 0 : dataReg(r), value };
}

/** At most MAX_ADJUST pointer moves per pointer: beyond, the window's bounds no longer hold. */
function limitAdjusts(items: Item[]): Item[] {
  const count = new Map<number, number>();
  return items.filter((it) => {
    if (!isAdjust(it)) return true;
    const p = ((it as { w: number }).w >> 7) & 31;
    const n = (count.get(p) ?? 0) + 1;
    count.set(p, n);
    return n <= MAX_ADJUST;
  });
}

function intValue(r: Random): bigint {
  switch (r.int(6)) {
    case 0: return BigInt(r.int(33) - 16) & 0xffffffffffffffffn;
    case 1: return r.pick([0x7fffffffffffffffn, 0x8000000000000000n, 0xffffffff80000000n, 0x7fffffffn, 0x80000000n, 0xffffffffn, 0x100000000n]);
    case 2: return BigInt.asUintN(64, BigInt.asIntN(32, BigInt(r.next())));
    case 3: return BigInt(r.next());
    default: return r.u64();
  }
}

function permBits(r: Random, forCode: boolean, user: boolean): bigint {
  if (r.chance(forCode ? 0.9 : 0.75)) {
    // A valid leaf: what the case's mode needs, A and D mostly set.
    let b = PTE.V | (forCode ? PTE.X | (r.chance(0.3) ? PTE.R : 0n) : PTE.R | (r.chance(0.8) ? PTE.W : 0n) | (r.chance(0.1) ? PTE.X : 0n));
    if (user || r.chance(0.1)) b |= PTE.U;
    if (r.chance(0.85)) b |= PTE.A;
    if (r.chance(0.7)) b |= PTE.D;
    return b;
  }
  return BigInt(r.int(256)) | (r.chance(0.7) ? PTE.V : 0n);
}

/** A new random case. */
export function randomCase(r: Random): CaseSpec {
  const priv: Priv = r.pick([0, 1, 3, 1, 0] as const);
  const paged = priv !== 3 ? r.chance(0.7) : r.chance(0.3);
  let mstatus = 0n;
  const bit = (n: number, p: number) => { if (r.chance(p)) mstatus |= 1n << BigInt(n); };
  bit(1, 0.3); bit(5, 0.3); bit(8, 0.3); // SIE SPIE SPP
  bit(18, 0.4); bit(19, 0.3); bit(20, 0.2); bit(21, 0.2); bit(22, 0.2); // SUM MXR TVM TW TSR
  mstatus |= BigInt(r.chance(0.85) ? r.pick([1, 2, 3, 3]) : 0) << 13n; // FS
  if (priv === 3 && r.chance(0.3)) mstatus |= (1n << 17n) | (BigInt(r.pick([0, 1])) << 11n); // MPRV with MPP S or U (after mret: U)
  bit(7, 0.3); // MPIE (mret puts it in MIE)
  const spec: CaseSpec = {
    priv, paged, sv: r.pick([39, 39, 48, 57] as const), mstatus,
    x: Array.from({ length: 32 }, (_, i) => (i === 0 ? 0n : intValue(r))),
    ptr: POINTERS.map(() => (3072 + r.int(10240)) & (r.chance(0.6) ? ~7 : ~0)),
    f: Array.from({ length: 32 }, () => fpValue(r)),
    fcsr: r.chance(0.8) ? r.int(5) << 5 | r.int(32) : r.int(256),
    medeleg: r.chance(0.4) ? BigInt(r.next()) & 0xb1ffn & ~0x200n : 0n, // never ecall from S (the stub's own)
    mideleg: r.chance(0.3) ? 0x222n : 0n,
    mie: r.chance(0.4) ? BigInt(r.next()) & 0xaaan : 0n,
    mip: r.chance(0.15) ? BigInt(r.next()) & 0x222n : 0n,
    stvecMode: r.int(2),
    mtvecVectored: r.chance(0.5),
    msip: r.chance(0.2),
    other: [intValue(r), intValue(r) & ~1n, intValue(r), intValue(r), intValue(r), intValue(r), BigInt(r.next()) & 7n, BigInt(r.next()) & 7n, r.chance(0.2) ? 1n : 0n, r.chance(0.2) ? 1n : 0n],
    perm: [permBits(r, true, priv === 0), ...Array.from({ length: 5 }, () => permBits(r, false, priv === 0)), permBits(r, false, priv === 0)],
    megaMisaligned: r.chance(0.05),
    seed: r.u64() | 1n,
    items: [],
  };
  const n = 1 + r.int(r.chance(0.2) ? 120 : 40);
  for (let i = 0; i < n; i++) spec.items.push(item(r, spec, n - i));
  spec.items = limitAdjusts(spec.items);
  return r.chance(0.2) ? withCross(r, spec, false) : spec;
}

/** A variant of `spec`: items replaced, inserted, deleted, bit-flipped, spliced from `other`, or its state changed. */
export function mutateCase(r: Random, spec: CaseSpec, other: CaseSpec): CaseSpec {
  const s: CaseSpec = { ...spec, x: [...spec.x], f: [...spec.f], ptr: [...spec.ptr], perm: [...spec.perm], other: [...spec.other], items: [...spec.items] };
  const tsr = (s.mstatus & (1n << 22n)) !== 0n, tw = (s.mstatus & (1n << 21n)) !== 0n;
  for (let m = 1 + r.int(4); m > 0; m--) {
    const i = r.int(Math.max(1, s.items.length));
    switch (r.int(9)) {
      case 0: if (s.items.length) s.items[i] = item(r, s, s.items.length - i); break;
      case 1: s.items.splice(i, 0, item(r, s, s.items.length - i)); break;
      case 2: if (s.items.length > 1) s.items.splice(i, 1); break;
      case 3: {
        const it = s.items[i];
        if (it?.k === "w" && it.n === 4) {
          const w = sanitize(it.w ^ (1 << r.int(32)), r, s.priv, tsr, tw);
          if (w !== null) s.items[i] = { k: "w", n: 4, w };
        }
        break;
      }
      case 4: s.items.splice(i, 0, ...other.items.slice(r.int(other.items.length + 1)).slice(0, 1 + r.int(8))); break;
      case 5: s.x[1 + r.int(31)] = intValue(r); break;
      case 6: s.f[r.int(32)] = fpValue(r); break;
      case 7: s.perm[r.int(s.perm.length)] = permBits(r, false, s.priv === 0); break;
      default:
        s.fcsr = r.int(256);
        s.mstatus ^= 1n << BigInt(r.pick([1, 3, 5, 7, 8, 18, 19, 20, 21, 22, 13, 14]));
        if (r.chance(0.2)) s.msip = !s.msip;
        if (r.chance(0.2)) s.mie ^= 1n << BigInt(r.pick([1, 3, 5, 9]));
        break;
    }
  }
  // Words spliced from a case of another privilege, or made before TSR or TW changed, keep to
  // this one's rules (a WFI that no longer traps would wait for ever).
  const tsrNow = (s.mstatus & (1n << 22n)) !== 0n, twNow = (s.mstatus & (1n << 21n)) !== 0n;
  s.items = limitAdjusts(s.items.map((it): Item => {
    // satp writes keep to satpItem's rules: paged cases only, Bare from S-mode only.
    if (it.k === "satp" && (!s.paged || (it.value === 0n && !bareAllowed(s)))) return { k: "w", n: 4, w: 0x13 };
    if (it.k !== "w" || it.n !== 4) return it;
    const w = sanitize(it.w, r, s.priv, tsrNow, twNow);
    return w === null ? { k: "w", n: 4, w: 0x13 } : { ...it, w };
  })).slice(0, 400);
  while (layout(s.items).length > 0x1000) s.items.pop();
  if (s.cross || r.chance(0.05)) return withCross(r, s, !!s.cross && r.chance(0.8));
  return s;
}

const MSTATUS_MPP = 3n << 11n;
/** UXL = SXL = 64: written at each case's start (QEMU keeps a UXL the last case wrote). */
const MSTATUS_XL64 = 0xan << 32n;

/** The descriptor and code case `index` of an image runs `spec` from. */
export function caseImage(spec: CaseSpec, index: number): CaseImage {
  const d = newDescriptor();
  const code = layout(spec.items);
  if (code.length > 0x1000) throw new Error("a case's block is larger than a page");
  const pa = codePage(index);
  const fetchPaged = spec.paged && spec.priv !== 3;
  const mprv = spec.priv === 3 && (spec.mstatus & (1n << 17n)) !== 0n;
  const dataPaged = spec.paged && (spec.priv !== 3 || mprv);
  // A block that crosses into its second page starts where its straddling instruction's first half ends its first.
  const cross = spec.cross && crossable(spec, spec.cross.at) ? spec.cross : undefined;
  const start = cross ? 0x1000 - 2 - itemOffset(spec.items, cross.at) : 0;
  const base = fetchPaged ? CODE_VA : pa;
  const entry = base + start;
  spec.x.forEach((v, i) => (d[D.x + i] = v));
  spec.ptr.forEach((off, i) => (d[D.x + POINTERS[i]!] = BigInt((dataPaged ? (i === 2 && spec.paged ? MEGA_VA : WINDOW_VA) : SCRATCH) + off)));
  spec.f.forEach((v, i) => (d[D.f + i] = v));
  d[D.fcsr] = BigInt(spec.fcsr);
  // mret starts the case: MPP is its privilege, MIE (after) its MPIE; MIE is clear until then.
  d[D.mstatus] = (spec.mstatus & ~MSTATUS_MPP & ~8n) | (BigInt(spec.priv) << 11n) | MSTATUS_XL64;
  d[D.entry] = BigInt(entry);
  d[D.end] = BigInt(entry + code.length - 4);
  d[D.delta] = BigInt.asUintN(64, BigInt(pa - base));
  d[D.satp] = !spec.paged ? 0n : SATP[`sv${spec.sv}`];
  d[D.medeleg] = spec.medeleg;
  d[D.mideleg] = spec.mideleg;
  d[D.mie] = spec.mie;
  d[D.mip] = spec.mip;
  d[D.mtvecMode] = spec.mtvecVectored ? 1n : 0n;
  d[D.msip] = spec.msip ? 1n : 0n;
  d[D.stvec] = BigInt(spec.paged ? STUB_VA : STUB) + BigInt(spec.stvecMode);
  [D.sscratch, D.sepc, D.scause, D.stval, D.mcause, D.mtval, D.mcounteren, D.scounteren, D.menvcfg, D.senvcfg].forEach((f, i) => (d[f] = spec.other[i]!));
  d[D.seed] = spec.seed;
  const [codePerm, ...windowPerm] = spec.perm;
  // The second virtual page: the page after the first (contiguous), or another whose first
  // halfword is the straddling instruction's other upper half; mapped one way in the runs
  // before the last and maybe another in the last (the runtime's sfence.vma between).
  const second = (m: SecondPage | undefined) => pte(pa + (m?.alt ? 0x2000 : 0x1000), m?.perm ?? codePerm!);
  d[D.pte + 0] = pte(pa, codePerm!);
  d[D.pte + 1] = second(cross?.last);
  d[D.pteFirst] = second(cross?.first ?? cross?.last);
  d[D.runs] = cross && fetchPaged && d[D.pteFirst] !== d[D.pte + 1] ? 2n : 0n;
  d[D.pte + 3] = pte(STUB, PTE.V | PTE.X | PTE.A);
  for (let p = 0; p < 4; p++) d[D.pte + 4 + p] = pte(SCRATCH + p * 0x1000, windowPerm[p]!);
  d[D.pte + 8] = pte(SCRATCH, windowPerm[4]!);
  d[D.mega] = pte(SCRATCH + (spec.megaMisaligned ? 0x1000 : 0), windowPerm[5]!);
  const pages = new Uint8Array(CODE_PAGES * 0x1000);
  pages.set(code, start);
  pages.copyWithin(0x2000, 0x1000, 0x2000);
  const executed = code.slice();
  if (cross) {
    new DataView(pages.buffer).setUint16(0x2000, cross.upper, true);
    // The block as its last run fetches it: the straddling instruction's upper half from the page mapped then.
    if (fetchPaged && cross.last.alt) new DataView(executed.buffer).setUint16(0x1000 - start, cross.upper, true);
  }
  return { desc: d, pages, code: executed, satpWrites: spec.items.flatMap((it) => (it.k === "satp" ? [it.value] : [])) };
}

/** Byte offset of item `k` in the block. */
export function itemOffset(items: readonly Item[], k: number): number {
  let at = 0;
  for (let i = 0; i < k; i++) at += itemBytes(items[i]!);
  return at;
}

/** Whether item `k` may straddle the page boundary: a 32-bit word, not an AMO (the handler reads an AMO's funct5 through the first mapping). */
function crossable(spec: CaseSpec, k: number): boolean {
  const it = spec.items[k];
  return !!it && it.k === "w" && it.n === 4 && (it.w & 0x7f) !== 0x2f && itemOffset(spec.items, k) <= 0xffe;
}

/** Whether `w` is a word sanitize() would leave as it is (in `spec`'s privilege, TSR and TW). */
function keepsRules(w: number, spec: CaseSpec): boolean {
  const tsr = (spec.mstatus & (1n << 22n)) !== 0n, tw = (spec.mstatus & (1n << 21n)) !== 0n;
  return sanitize(w, random(1), spec.priv, tsr, tw) === w >>> 0;
}

/** A mapping of the second code page: the page after the first or the other one, with a leaf's bits (often a fetch fault). */
function secondPage(r: Random, user: boolean): SecondPage {
  const perm = r.chance(0.4) ? PTE.V | PTE.X | PTE.A | (user ? PTE.U : 0n) | (r.chance(0.3) ? PTE.R : 0n) | (r.chance(0.5) ? PTE.D : 0n)
    : r.chance(0.5) ? permBits(r, true, user) : BigInt(r.int(256));
  return { alt: r.chance(0.4), perm };
}

/**
 * `spec` with an instruction across its page boundary (or none, when no item can), or with
 * the one it has kept to the rules after a mutation: a 32-bit word whose other upper half (the
 * other page's) keeps to sanitize()'s rules too.
 */
function withCross(r: Random, spec: CaseSpec, keep: boolean): CaseSpec {
  const old = spec.cross;
  let at = old && keep && crossable(spec, old.at) ? old.at : -1;
  if (at < 0) {
    const can = spec.items.map((_, k) => k).filter((k) => crossable(spec, k));
    if (!can.length) return { ...spec, cross: undefined };
    at = r.pick(can);
  }
  const w = (spec.items[at] as { w: number }).w;
  let upper = old && at === old.at && keepsRules(((w & 0xffff) | (old.upper << 16)) >>> 0, spec) ? old.upper : -1;
  for (let n = 0; n < 24 && upper < 0; n++) {
    const u = r.int(0x10000);
    if (keepsRules(((w & 0xffff) | (u << 16)) >>> 0, spec)) upper = u;
  }
  if (upper < 0) upper = w >>> 16;
  const last = old?.last ?? secondPage(r, spec.priv === 0);
  return { ...spec, cross: { at, upper, last, first: old?.first ?? (r.chance(0.5) ? last : secondPage(r, spec.priv === 0)) } };
}

/** `spec` without items [at, at + n) (the straddling instruction's index kept to its item, or dropped with it). */
export function withoutItems(spec: CaseSpec, at: number, n: number): CaseSpec {
  const items = [...spec.items.slice(0, at), ...spec.items.slice(at + n)];
  const c = spec.cross;
  const cross = !c || (c.at >= at && c.at < at + n) ? undefined : { ...c, at: c.at >= at + n ? c.at - n : c.at };
  return { ...spec, items, cross };
}
