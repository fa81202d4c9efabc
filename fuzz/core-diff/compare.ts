/**
 * Case-by-case comparison of two result sets, and the allow list: the differences between
 * wasmvisor and QEMU that the ISA permits (each with its reason). Everything else is a bug in
 * one of the two.
 */
import { D, DONE, R, RESULT_BYTES, RESULT_HEADER, SCRATCH_BYTES, TRAP_LOG, L0_SLOTS, type CaseImage } from "./image";

export interface Difference {
  field: string;
  qemu: bigint;
  wasmvisor: bigint;
}

/** The record's header fields by name (x1..x31, f0..f31, CSRs, trap log entries, PTEs). */
export function fieldName(i: number): string {
  if (i === R.done) return "done";
  if (i < R.f) return `x${i}`;
  if (i < R.fcsr) return `f${i - R.f}`;
  if (i >= R.log && i < R.log + TRAP_LOG * 4) {
    const n = i - R.log;
    return `trap${n >> 2}.${["mcause", "mepc", "mtval", "mstatus"][n & 3]}`;
  }
  if (i >= R.pte && i <= R.pte + L0_SLOTS) return i === R.pte + L0_SLOTS ? "pte.mega" : `pte.${i - R.pte}`;
  const named = Object.entries(R).find(([k, v]) => v === i && k !== "x" && k !== "log" && k !== "pte");
  return named ? named[0] : `field${i}`;
}

const BREAKPOINT = 3n, STORE_MISALIGNED = 6n, ECALL_FROM_S = 9n;
const SC_FAULTS = [7n, 15n];
const AMO_AS_LOAD: [bigint, bigint][] = [[4n, 6n], [5n, 7n], [13n, 15n]];
const INTERRUPT = 1n << 63n;
const logField = (k: number, n: number) => R.log + k * 4 + n;

/**
 * Why a field's difference is allowed, or null: differences confined to one field, the rest of
 * the case being the same.
 *  - mtval/stval on EBREAK: QEMU writes 0, wasmvisor the EBREAK's address (as Spike does); the
 *    privileged spec (3.1.16, mtval) allows either: zero, or the faulting virtual address.
 *  - mstatus.VS, UXL, MPV, GVA (and SD, which follows VS): QEMU 7.2 lets M-mode write VS without
 *    the V extension (allowed: with S-mode, VS need not be read-only zero), UXL (WARL: QEMU
 *    supports a 32-bit U-mode, wasmvisor only 64), MPV and GVA without the H extension (QEMU's
 *    side is wrong: they do not exist then). A case never returns to U-mode after its start,
 *    so a different UXL changes nothing else; the runtime sets UXL and SXL to 64 for each case.
 *  - mstatus.FS Dirty in wasmvisor where QEMU leaves it: wasmvisor marks the FP state Dirty on
 *    every FP instruction that may change it. Where nothing changed, Dirty ("potentially
 *    modified") is allowed; where only fflags changed (a compare or a conversion to an x
 *    register that raised a flag), QEMU 7.2 leaves FS as it was, which is wrong: fcsr is FP
 *    state. (The converse, QEMU Dirty and wasmvisor not, is never allowed.)
 *  - sepc/mepc bit 0: always zero with C (privileged spec 3.1.14); QEMU 7.2 keeps a written 1.
 *  - tval of a misaligned load or store that faults: QEMU splits it at an alignment boundary and
 *    reports the aligned address of the part that faulted (which may lie before the access);
 *    wasmvisor reports the access's address. The spec asks for the address of the portion that
 *    faulted: wasmvisor's is, QEMU's is not (QEMU's side is wrong).
 *  - mip.STIP once menvcfg.STCE is set: with Sstc, STIP then reflects stimecmp (set to its
 *    maximum here, so clear, as wasmvisor reads it); QEMU 7.2 keeps the bit software wrote
 *    until its timer next fires (QEMU's side is wrong).

 *  - mie's and mip's bits 2, 6, 10 (VS-level interrupts) and 13 (LCOFI): QEMU 7.2 keeps them writable with
 *    neither the H extension nor Sscofpmf, where they are read-only zero (QEMU's side is wrong).
 *  - mcounteren, scounteren: 32-bit registers (privileged spec 3.1.11), read zero-extended;
 *    QEMU 7.2 keeps the 64 bits written (QEMU's side is wrong).
 *  - menvcfg/senvcfg bits 4-7 (CBIE, CBCFE, CBZE) and menvcfg.PBMTE (62): QEMU 7.2 keeps them
 *    without Zicbom, Zicboz or Svpbmt,
 *    where they are read-only zero (QEMU's side is wrong).
 *  - A PTE's D (and A) bit set by wasmvisor only, in a case with an SC: wasmvisor translates an
 *    SC for writing, setting A and D, before it finds the reservation missing and fails it (as
 *    Spike does); QEMU fails it without a walk. The spec leaves a failing SC's A/D updates open.
 *  - A PTE's A bit set by QEMU only, on a page an AMO took a store/AMO page fault on (with MXR,
 *    an executable page reads): QEMU 7.2 performs an AMO as a read, then a write, and sets A on
 *    the read that succeeded; no access was made, so A should stay clear (QEMU's side is wrong).
 */
const ENVCFG_CBO = 0xf0n | (1n << 62n);
const PTE_A = 0x40n, PTE_D = 0x80n;
/**
 * QEMU's allowed CSR differences (above) that a block may carry into registers and memory: a case
 * whose block writes such a CSR (its final value need not show it any more) and reads it back.
 */
const CSR_QUIRKS: { name: string; csrs: number[]; why: string }[] = [
  { name: "mstatus", csrs: [0x300, 0x100], why: "VS, UXL, MPV, GVA" },
  { name: "mie/mip", csrs: [0x304, 0x104, 0x344, 0x144], why: "the VS-level and LCOF bits" },
  { name: "mcounteren/scounteren", csrs: [0x306, 0x106], why: "64 bits kept" },
  { name: "menvcfg/senvcfg", csrs: [0x30a, 0x10a], why: "CBIE, CBCFE, CBZE, PBMTE kept" },
  { name: "sepc/mepc", csrs: [0x341, 0x141], why: "bit 0 kept" },
];

/** CSR numbers the block's CSR instructions may write (csrrw/csrrwi always, the others with a nonzero source). */
function csrsWritten(c: CaseImage): number[] {
  return words(c).filter((w) => (w & 0x7f) === 0x73 && ((w >> 12) & 3) !== 0 && (((w >> 12) & 3) === 1 || ((w >> 15) & 31) !== 0)).map((w) => w >>> 20);
}

/**
 * Instructions whose result QEMU 7.2 computes differently; a case holding one that differs is
 * explained (the result is computed with, so what follows differs too).
 *  - ctzw: the trailing zeros of the low word, 32 when it is zero (Zbb); QEMU 7.2 counts on
 *    into the upper word (ctzw of 0x1234567800000000 gives 35), wasmvisor gives 32. QEMU wrong.
 *  - An SC of another width than the LR before it: QEMU compares the LR's value at the SC's
 *    width and fails it; wasmvisor lets it succeed. Not a constrained LR/SC loop, so the SC may
 *    fail or succeed: both allowed.
 */
const INSN_QUIRKS: { why: string; match: (c: CaseImage) => boolean }[] = [
  { why: "ctzw: QEMU 7.2 counts zeros past the low word (35 for 0x1234567800000000), the spec stops at 32", match: (c) => words(c).some((w) => ((w & 0xfff0707f) >>> 0) === 0x6010101b) },
  { why: "SC of another width than its LR: outside a constrained LR/SC loop the SC may fail (QEMU) or succeed (wasmvisor)", match: scOfOtherWidth },
];

/** The block's 32-bit words at every 2-byte offset (what a CSR or instruction check scans). */
function words(c: CaseImage): number[] {
  const dv = new DataView(c.code.buffer, c.code.byteOffset, c.code.byteLength);
  const out: number[] = [];
  for (let o = 0; o + 4 <= c.code.length; o += 2) out.push(dv.getUint32(o, true));
  return out;
}

/** CSR numbers the block's CSR instructions name. */
function csrsRead(c: CaseImage): number[] {
  return words(c).filter((w) => (w & 0x7f) === 0x73 && ((w >> 12) & 3) !== 0).map((w) => w >>> 20);
}

/** Whether the block holds an SC. */
function hasSc(c: CaseImage): boolean {
  return words(c).some((w) => (w & 0x7f) === 0x2f && w >>> 27 === 3);
}
/** Whether a trap of `r`'s case is a store/AMO page fault on an AMO. */
function amoPageFault(r: BigUint64Array, c: CaseImage): boolean {
  const traps: [bigint, bigint][] = [[r[R.scause]!, r[R.sepc]!]];
  for (let k = 0; k < Math.min(Number(r[R.traps]), TRAP_LOG); k++) traps.push([r[logField(k, 0)]!, r[logField(k, 1)]!]);
  return traps.some(([cause, epc]) => {
    const word = cause === 15n ? wordAt(c, epc) : null;
    return word !== null && (word & 0x7f) === 0x2f && word >>> 27 !== 2;
  });
}
const MSTATUS_QEMU_WARL = (3n << 9n) | (3n << 32n) | (3n << 38n) | (1n << 63n);
const MSTATUS_FS = 3n << 13n;
const MIE_QEMU_EXTRA = 0x2444n;
/** The fields above as they reach an x register through a CSR read in the block. */
const X_QUIRKS: { name: string; csrs: number[]; ok: (q: bigint, w: bigint) => boolean }[] = [
  { name: "mstatus/sstatus", csrs: [0x300, 0x100], ok: (q, w) => ((q ^ w) & ~(MSTATUS_QEMU_WARL | MSTATUS_FS)) === 0n },
  { name: "mie/sie/mip/sip", csrs: [0x304, 0x104, 0x344, 0x144], ok: (q, w) => ((q ^ w) & ~MIE_QEMU_EXTRA) === 0n && (w & MIE_QEMU_EXTRA) === 0n },
  { name: "mcounteren/scounteren", csrs: [0x306, 0x106], ok: (q, w) => (q & 0xffffffffn) === w },
  { name: "menvcfg/senvcfg", csrs: [0x30a, 0x10a], ok: (q, w) => ((q ^ w) & ~ENVCFG_CBO) === 0n && (w & ENVCFG_CBO) === 0n },
  { name: "mepc/sepc", csrs: [0x341, 0x141], ok: (q, w) => (q ^ w) === 1n && !(w & 1n) },
  { name: "mtval/stval", csrs: [0x343, 0x143], ok: (q) => q === 0n },
];
function allowedField(f: number, q: BigUint64Array, w: BigUint64Array, c: CaseImage): string | null {
  const isMstatus = f === R.mstatus || (f >= R.log && f < R.log + TRAP_LOG * 4 && ((f - R.log) & 3) === 3);
  if (isMstatus) {
    const fsDirty = (w[f]! & MSTATUS_FS) === MSTATUS_FS ? MSTATUS_FS : 0n;
    if (((q[f]! ^ w[f]!) & ~(MSTATUS_QEMU_WARL | fsDirty)) === 0n) {
      return fsDirty && (q[f]! ^ w[f]!) & MSTATUS_FS
        ? "mstatus.FS: wasmvisor marks Dirty where QEMU does not (allowed, or QEMU misses an fflags change)"
        : "mstatus: QEMU 7.2 lets M-mode write VS (no V), UXL, MPV and GVA (no H); wasmvisor keeps them fixed";
    }
  }
  if ((f === R.sepc || f === R.mepc) && (q[f]! ^ w[f]!) === 1n && !(w[f]! & 1n)) {
    return "sepc/mepc bit 0: always zero (wasmvisor); QEMU 7.2 keeps a written 1";
  }
  if ((f === R.mie || f === R.mip) && ((q[f]! ^ w[f]!) & ~MIE_QEMU_EXTRA) === 0n && (w[f]! & MIE_QEMU_EXTRA) === 0n) {
    return "mie/mip: QEMU 7.2 keeps the VS-level and LCOF bits with neither H nor Sscofpmf";
  }
  if ((f === R.menvcfg || f === R.senvcfg) && ((q[f]! ^ w[f]!) & ~ENVCFG_CBO) === 0n && (w[f]! & ENVCFG_CBO) === 0n) {
    return "menvcfg/senvcfg: QEMU 7.2 keeps CBIE, CBCFE, CBZE and PBMTE without Zicbom, Zicboz or Svpbmt";
  }
  if (f >= R.pte && f <= R.pte + L0_SLOTS && (q[f]! ^ w[f]!) === PTE_A && (q[f]! & PTE_A) && amoPageFault(w, c)) {
    return "PTE.A after a faulting AMO: QEMU 7.2 translates an AMO for reading first and sets A before the write faults";
  }
  if (f >= R.pte && f <= R.pte + L0_SLOTS && ((q[f]! ^ w[f]!) & ~(PTE_A | PTE_D)) === 0n && (w[f]! & PTE_D) && hasSc(c)) {
    return "PTE.D after a failed SC: wasmvisor translates an SC as a store before it knows it fails (as Spike does), QEMU fails it without a walk";
  }
  if ((f === R.mcounteren || f === R.scounteren) && (q[f]! & 0xffffffffn) === w[f] && w[f]! >> 32n === 0n) {
    return "mcounteren/scounteren: 32-bit registers; QEMU 7.2 keeps all 64 bits written";
  }
  if (f >= R.x + 1 && f < R.x + 32) {
    const read = csrsRead(c);
    const quirk = X_QUIRKS.find((k) => k.ok(q[f]!, w[f]!) && read.some((n) => k.csrs.includes(n)));
    if (quirk) return `an x register read from ${quirk.name}: as that CSR's difference above`;
  }
  let cause: bigint | null = null;
  if (f === R.mtval) cause = q[R.mcause]!;
  else if (f === R.stval) cause = q[R.scause]!;
  else if (f >= R.log && f < R.log + TRAP_LOG * 4 && ((f - R.log) & 3) === 2) cause = q[f - 2]!;
  if (cause === BREAKPOINT && q[f] === 0n) return "tval on EBREAK: zero (QEMU) or the address (wasmvisor), both allowed";
  if (cause !== null && ACCESS_FAULTS.includes(cause) && q[f]! < w[f]! && [1n, 3n, 7n].some((m) => q[f] === (w[f]! & ~m))) {
    return "tval of a misaligned access that faults: QEMU gives the aligned address of its part, wasmvisor the access's (the spec: the portion that faulted)";
  }
  if (f === R.mip && (q[f]! ^ w[f]!) === STIP && (q[f]! & STIP) && (w[R.menvcfg]! & STCE)) {
    return "mip.STIP with menvcfg.STCE set: Sstc makes it the stimecmp comparison (clear, as wasmvisor reads it); QEMU 7.2 keeps the bit written before";
  }
  return null;
}

const ACCESS_FAULTS = [5n, 7n, 13n, 15n];
const STIP = 0x20n, STCE = 1n << 63n;
/** Whether the block holds an LR and an SC of different widths. */
function scOfOtherWidth(c: CaseImage): boolean {
  const width = (op: number) => new Set(words(c).filter((w) => (w & 0x7f) === 0x2f && w >>> 27 === op).map((w) => (w >> 12) & 7));
  const lr = width(2), sc = width(3);
  return [...sc].some((n) => [...lr].some((m) => m !== n));
}

/**
 * Whether an LR before offset `at` of the block may have reserved the address an SC through
 * pointer `base` there uses, on QEMU (whose xRET after a trap at one of `trapsAt` clears it). Every LR and SC goes through a pointer register (generate.ts), which
 * only `addi p, p, imm` moves; a branch may skip such a move, so each pointer's possible values
 * are its start value plus any subset of the moves before (at most eight of each).
 */
function mayBeReserved(c: CaseImage, at: number, base: number, trapsAt: number[]): boolean {
  const dv = new DataView(c.code.buffer, c.code.byteOffset, c.code.byteLength);
  const values = new Map<number, Set<bigint>>();
  const of = (r: number) => values.get(r) ?? values.set(r, new Set([c.desc[D.x + r]!])).get(r)!;
  const reserved = new Set<bigint>();
  for (let o = 0; o < at; ) {
    if ((dv.getUint16(o, true) & 3) !== 3) { o += 2; continue; }
    const w = dv.getUint32(o, true);
    const rd = (w >> 7) & 31, rs1 = (w >> 15) & 31;
    if ((w & 0x707f) === 0x13 && rd === rs1 && rd !== 0) {
      const s = of(rd);
      for (const v of [...s]) s.add(BigInt.asUintN(64, v + BigInt(w >> 20)));
    }
    if ((w & 0x7f) === 0x2f && w >>> 27 === 2) for (const v of of(rs1)) reserved.add(v);
    if (trapsAt.includes(o)) reserved.clear(); // the handler's mret

    o += 4;
  }
  return [...of(base)].some((v) => reserved.has(v));
}

/** The 32-bit word at virtual address `epc` of the case's block, or null outside it. */
function wordAt(c: CaseImage, epc: bigint): number | null {
  const off = Number(epc - c.desc[D.entry]!);
  if (!(off >= 0 && off + 4 <= c.code.length)) return null;
  return new DataView(c.code.buffer, c.code.byteOffset).getUint32(off, true);
}

interface Trap { cause: bigint; epc: bigint; tval: bigint }

/**
 * Why two runs that part ways at a trap (QEMU's and wasmvisor's) may, or null. What follows a
 * parting differs too, so an allowed parting explains the whole case.
 *  - SC with no reservation: QEMU fails it (rd = 1) without translating or checking the address;
 *    wasmvisor raises what the access would (misaligned, access or page fault). For a misaligned
 *    address the A extension requires the exception (QEMU's side is wrong); for a fault, whether
 *    an SC that would fail raises it is not specified (both allowed).
 *  - A faulting AMO, or SC with a reservation: QEMU 7.2 raises load address misaligned (4), load
 *    access fault (5) or load page fault (13); the privileged spec's causes for an AMO or SC are
 *    the store/AMO ones (6, 7, 15), which wasmvisor raises. QEMU's side is wrong.
 *  - Several interrupts pending at once: QEMU 7.2 without AIA takes the lowest-numbered (STI 5
 *    or SSI 1 before SEI 9); the privileged spec orders them MEI, MSI, MTI, SEI, SSI, STI, as
 *    wasmvisor does. QEMU's side is wrong.
 */
function allowedParting(q: Trap, w: Trap, c: CaseImage, qTrapOffsets: number[]): string | null {
  const word = wordAt(c, w.epc);
  const amo = word !== null && (word & 0x7f) === 0x2f ? word >>> 27 : -1;
  const misaligned = word !== null && w.tval % BigInt(4 << ((word >> 12) & 1)) !== 0n;
  // A misaligned SC never holds a reservation (an LR there would have trapped). A faulting one
  // has none on QEMU where no LR before it may have had its address, or a trap came between
  // (QEMU's xRET clears the reservation; the privileged spec lets xRET clear it or not, and
  // wasmvisor keeps it): QEMU then fails it without an access. One with a reservation would
  // fault on QEMU too, at the same instruction.
  const reserved = word !== null && mayBeReserved(c, Number(w.epc - c.desc[D.entry]!), (word >> 15) & 31, qTrapOffsets);
  if (q.epc !== w.epc && amo === 3 && (w.cause === STORE_MISALIGNED ? misaligned : !reserved && SC_FAULTS.includes(w.cause))) {
    return "SC without a reservation (none taken, or a trap's xRET cleared it on QEMU): QEMU fails it without checking the address, wasmvisor raises the exception";
  }
  if (q.epc === w.epc && amo >= 0 && amo !== 2 && AMO_AS_LOAD.some(([l, st]) => q.cause === l && w.cause === st)) {
    return "AMO or SC fault: QEMU 7.2 raises the load exception (misaligned, access or page fault), the spec the store/AMO one";
  }
  if (q.epc === w.epc && (q.cause & INTERRUPT) && w.cause === (INTERRUPT | 9n) && (q.cause === (INTERRUPT | 5n) || q.cause === (INTERRUPT | 1n))) {
    return "simultaneous interrupts: QEMU 7.2 takes the lowest-numbered, the spec SEI before SSI and STI";
  }
  return null;
}

export interface CaseOutcome {
  differences: Difference[];
  explained: string[];
  /**
   * An SC wasmvisor faulted on where QEMU went on, with an LR before it that may have reserved
   * its address: whether QEMU had no reservation (and skipped the access) is for a probe to
   * tell. A store in the SC's place that faults the same on QEMU shows the access does fault
   * there, so QEMU did not make it: it had no reservation (diff.ts runs the probes).
   */
  scProbe?: { at: number; cause: bigint };
  /**
   * Why the comparison stopped short of the whole record (the rest excused by an allowed
   * difference that decides how it runs), or undefined when every field was compared.
   */
  cutShort?: string;
}

/** The reason a confirmed SC probe gives. */
export const SC_PROBE_REASON = "SC whose reservation QEMU had dropped (a store there faults the same on QEMU): QEMU fails it without the access, wasmvisor raises the fault";

/** Compare case `i`'s records (`c`: the case as the image held it). */
export function compareCase(qemu: Uint8Array, wasmvisor: Uint8Array, i: number, c: CaseImage): CaseOutcome {
  const off = i * RESULT_BYTES;
  const q = new BigUint64Array(qemu.buffer.slice(qemu.byteOffset + off, qemu.byteOffset + off + RESULT_HEADER));
  const w = new BigUint64Array(wasmvisor.buffer.slice(wasmvisor.byteOffset + off, wasmvisor.byteOffset + off + RESULT_HEADER));
  const out: CaseOutcome = { differences: [], explained: [] };
  if (q[R.done] !== DONE || w[R.done] !== DONE) {
    out.differences.push({ field: "done", qemu: q[R.done]!, wasmvisor: w[R.done]! });
    return out;
  }
  // Where the two first took different traps (M-mode's log, then the S-mode trap a delegated
  // one left); tval and mstatus aside, allowedField's business.
  const traps = Math.min(Number(q[R.traps]), Number(w[R.traps]), TRAP_LOG);
  // The stub's ecall ends a case after a trap delegated to S-mode: that trap is in scause/sepc/stval.
  const stub = c.desc[D.stvec]! & ~3n;
  const trap = (r: BigUint64Array, k: number): Trap => r[logField(k, 0)] === ECALL_FROM_S && r[logField(k, 1)]! - stub < 0x1000n
    ? { cause: r[R.scause]!, epc: r[R.sepc]!, tval: r[R.stval]! }
    : { cause: r[logField(k, 0)]!, epc: r[logField(k, 1)]!, tval: r[logField(k, 2)]! };
  let parting: [Trap, Trap] | null = null;
  for (let k = 0; k < TRAP_LOG && !parting; k++) {
    const same = [0, 1].every((n) => q[logField(k, n)] === w[logField(k, n)]);
    if (same && k < traps) continue;
    if (!same || q[R.traps] !== w[R.traps]) parting = [trap(q, k), trap(w, k)];
    break;
  }
  if (!parting && (q[R.scause] !== w[R.scause] || q[R.sepc] !== w[R.sepc])) {
    parting = [{ cause: q[R.scause]!, epc: q[R.sepc]!, tval: q[R.stval]! }, { cause: w[R.scause]!, epc: w[R.sepc]!, tval: w[R.stval]! }];
  }
  const qTrapOffsets = Array.from({ length: Math.min(Number(q[R.traps]), TRAP_LOG) }, (_, k) => Number(q[logField(k, 1)]! - c.desc[D.entry]!));
  const why = parting && allowedParting(parting[0], parting[1], c, qTrapOffsets);
  if (why) {
    out.explained.push(why);
    out.cutShort = why;
    return out;
  }
  if (parting) {
    const [qt, wt] = parting;
    const word = wordAt(c, wt.epc);
    if (word !== null && qt.epc !== wt.epc && (word & 0x7f) === 0x2f && word >>> 27 === 3 && SC_FAULTS.includes(wt.cause)) {
      out.scProbe = { at: Number(wt.epc - c.desc[D.entry]!), cause: wt.cause };
    }
  }
  for (let f = 1; f < q.length; f++) {
    if (q[f] === w[f]) continue;
    const why = allowedField(f, q, w, c);
    if (why) out.explained.push(why);
    else out.differences.push({ field: fieldName(f), qemu: q[f]!, wasmvisor: w[f]! });
  }
  const qs = new BigUint64Array(qemu.buffer.slice(qemu.byteOffset + off + RESULT_HEADER, qemu.byteOffset + off + RESULT_BYTES));
  const ws = new BigUint64Array(wasmvisor.buffer.slice(wasmvisor.byteOffset + off + RESULT_HEADER, wasmvisor.byteOffset + off + RESULT_BYTES));
  for (let k = 0; k < SCRATCH_BYTES / 8; k++) {
    if (qs[k] !== ws[k]) out.differences.push({ field: `window+0x${(k * 8).toString(16)}`, qemu: qs[k]!, wasmvisor: ws[k]! });
  }
  // A CSR whose value may differ as allowed above (the block writes it), read into a register and
  // computed with: what follows differs too, so the case is explained.
  const read = csrsRead(c), written = csrsWritten(c);
  const quirk = out.differences.length ? CSR_QUIRKS.find((k) => k.csrs.some((n) => read.includes(n)) && k.csrs.some((n) => written.includes(n))) : undefined;
  if (quirk) {
    out.explained.push(`${quirk.name} read back and computed with: ${quirk.why}`);
    out.cutShort = out.explained[out.explained.length - 1];
    out.differences = [];
    return out;
  }
  // An instruction QEMU 7.2 gets wrong, in a case that differs: what follows differs too.
  const wrong = out.differences.length ? INSN_QUIRKS.find((k) => k.match(c)) : undefined;
  if (wrong) {
    out.explained.push(wrong.why);
    out.cutShort = wrong.why;
    out.differences = [];
  }
  return out;
}

export function formatDifferences(d: readonly Difference[]): string {
  return d.map((x) => `${x.field}: qemu 0x${x.qemu.toString(16)} wasmvisor 0x${x.wasmvisor.toString(16)}`).join("; ");
}
