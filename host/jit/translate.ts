// The translator (docs/TRANSLATION.md): the decoded slots of one or more cached code pages (a
// unit) become one WebAssembly function that runs their blocks on the hart's registers, branching
// between the blocks of a page, and from page to page of the unit, without returning to the run
// loop. The run loop enters it through the core's function table when it meets an OP_JIT slot
// (cpu.ts), whose marker names the unit's page it is in.
//
// Covered: RV64I and RVC (already expanded in the slots), M, Zba, Zbb, Zbs,
// loads and stores through an inline TLB compare with the core's slow paths behind it, F, D and A
// run by the core (jitExec). Anything else (CSRs, system instructions) is left to the
// interpreter: the block ends before it and the next one starts after it.

import * as L from "../core/layout";
import * as O from "../core/ops";
import { Code, F64, I32, I64, OP, moduleBytes, tableCallType, type Label } from "./wasm-writer";

// The run loop's status codes (cpu.ts), as translations leave them in H_JIT_STATUS.
const ST_NEXT = 1;
const ST_FAULT = 3;
const JIT_LEAVE = 6;
/** Longest block: a translation's first block may overrun the slice by this much. */
const MAX_BLOCK = 64;

// The translation's parameters and locals. P_TLB_F: the fetch TLB (crossing into another page of
// the unit checks how pc is mapped); P_PAGE: which of the unit's pages pc is in (the marker's).
const P_H = 0, P_PAGE_VA = 1, P_PC = 2, P_TLB_R = 3, P_TLB_W = 4, P_BUDGET = 5, P_TLB_F = 6, P_PAGE = 7;
const V_RETIRED = 8, V_VA = 9, V_E = 10, V_ST = 11, V_T = 12;
// What a load or store site that missed the TLB leaves for the shared slow path, and any site for
// the shared exit: one constant, V_INFO (see siteInfo), which the handlers unpack.
const V_KIND = 13, V_ARG = 14, V_VAL = 15, V_SITE = 16, V_NEXT = 17, V_SITE_RET = 18, V_INFO = 19;
// Temporaries of the high multiplies.
const V_A = 20, V_B = 21, V_M = 22;
// The dispatch's index: the next instruction's halfword in its page.
const V_IDX = 23;
// Floating point inline: whether its fast paths may run (see fpFastOk), a result's bits, an operand.
const V_FPOK = 24, V_FBITS = 25, V_FX = 26;
// What a leaving translation retired (addRetired).
const V_ADD = 27;
// The registers the unit uses live in locals from here on, one each, in register order (emitUnit):
// only those, because V8's baseline compiler zero-fills every local's stack slot at each entry
// (docs/PERFORMANCE.md, "Warming the engine"). A register missing from them would read local 0, an
// i32: the module would not validate, and the pages would stay interpreted.
const X_FIRST = 28;
const TEMPS = [I32, I64, I32, I32, I64, I32, I32, I64, I32, I32, I32, I32, I64, I64, I64, I32, I32, I64, F64, I32];
/** The module's exported counter of the instructions it retired (global 0): the tier reads how hot a translation runs. */
export const RETIRED_COUNTER = "retired";
/**
 * The module's exported table index (global 1), set by the tier when it installs the unit: a page's
 * markers are the unit's own only while they carry it (crossing checks that).
 */
export const INDEX_GLOBAL = "index";
/** The module's exported count of its exits (global 2): few instructions a visit is a unit that crosses to others often. */
export const EXITS_COUNTER = "exits";
const G_RETIRED = 0, G_INDEX = 1, G_EXITS = 2;
const KIND_LOAD = 0, KIND_STORE = 1;
// Imports: the core's slow paths, and the tier's caller of the function table (jitGo).
const F_LOAD = 0, F_STORE = 1, F_EXEC = 2, F_CHAIN = 3, F_GO = 4;
/** The type of the core's slow paths (F_LOAD..F_CHAIN): one for all, unused arguments zeros. */
const SLOW_TYPE = { params: [I64, I64, I64], results: [I32] };
/** A translation's function: (h, page va, pc, read TLB, write TLB, budget, fetch TLB, page in unit) -> next pc. */
export const RUN_TYPE = { params: [I32, I64, I64, I32, I32, I32, I32, I32], results: [I64] };
/** jitChain's answer: the table index, and the unit's page in the top byte. */
const CHAIN_PAGE_SHIFT = 24;

/** One decoded slot (decode.ts layout). */
export interface Slot {
  off: number;
  op: number;
  len: number;
  rd: number;
  rs1: number;
  rs2: number;
  imm: number;
}

/** The slot for the halfword at byte `off` of the page whose slots are at `slots`, or null where nothing is decoded. */
export function slotAt(view: DataView, slots: number, off: number): Slot | null {
  const p = slots + off * 4;
  const op = view.getUint8(p);
  if (op === 0) return null;
  return {
    off, op: op & 0x7f, len: op & O.COMPRESSED ? 2 : 4,
    rd: view.getUint8(p + 1) >> 3, rs1: view.getUint8(p + 2) >> 3, rs2: view.getUint8(p + 3) >> 3,
    imm: view.getInt32(p + 4, true),
  };
}

const LOADS: Record<number, [number, number, number]> = { // op: [wasm load, f3, alignment bits]
  [O.OP_LB]: [OP.i64Load8S, 0, 0], [O.OP_LH]: [OP.i64Load16S, 1, 1], [O.OP_LW]: [OP.i64Load32S, 2, 2],
  [O.OP_LD]: [OP.i64Load, 3, 3], [O.OP_LBU]: [OP.i64Load8U, 4, 0], [O.OP_LHU]: [OP.i64Load16U, 5, 1],
  [O.OP_LWU]: [OP.i64Load32U, 6, 2],
};
const STORES: Record<number, [number, number]> = { // op: [wasm store, size log2]
  [O.OP_SB]: [OP.i64Store8, 0], [O.OP_SH]: [OP.i64Store16, 1], [O.OP_SW]: [OP.i64Store32, 2], [O.OP_SD]: [OP.i64Store, 3],
};
const BRANCHES: Record<number, number> = {
  [O.OP_BEQ]: OP.i64Eq, [O.OP_BNE]: OP.i64Ne, [O.OP_BLT]: OP.i64LtS, [O.OP_BGE]: OP.i64GeS,
  [O.OP_BLTU]: OP.i64LtU, [O.OP_BGEU]: OP.i64GeU,
};
// rd = rs1 <op> imm, and rd = rs1 <op> rs2, with a 32-bit sign extension after for the *W forms.
const IMM_OPS: Record<number, [number, boolean]> = {
  [O.OP_ADDI]: [OP.i64Add, false], [O.OP_XORI]: [OP.i64Xor, false], [O.OP_ORI]: [OP.i64Or, false],
  [O.OP_ANDI]: [OP.i64And, false], [O.OP_SLLI]: [OP.i64Shl, false], [O.OP_SRLI]: [OP.i64ShrU, false],
  [O.OP_SRAI]: [OP.i64ShrS, false], [O.OP_RORI]: [OP.i64Rotr, false], [O.OP_ADDIW]: [OP.i64Add, true],
  [O.OP_SLLIW]: [OP.i64Shl, true],
};
const REG_OPS: Record<number, [number, boolean]> = {
  [O.OP_ADD]: [OP.i64Add, false], [O.OP_SUB]: [OP.i64Sub, false], [O.OP_SLL]: [OP.i64Shl, false],
  [O.OP_XOR]: [OP.i64Xor, false], [O.OP_SRL]: [OP.i64ShrU, false], [O.OP_SRA]: [OP.i64ShrS, false],
  [O.OP_OR]: [OP.i64Or, false], [O.OP_AND]: [OP.i64And, false], [O.OP_MUL]: [OP.i64Mul, false],
  [O.OP_ROL]: [OP.i64Rotl, false], [O.OP_ROR]: [OP.i64Rotr, false],
  [O.OP_ADDW]: [OP.i64Add, true], [O.OP_SUBW]: [OP.i64Sub, true], [O.OP_MULW]: [OP.i64Mul, true],
};
const W32_OPS: Record<number, number> = { // rd = sx32(rs1_32 <op> rs2_32) (or imm)
  [O.OP_SLLW]: OP.i32Shl, [O.OP_SRLW]: OP.i32ShrU, [O.OP_SRAW]: OP.i32ShrS,
  [O.OP_SRLIW]: OP.i32ShrU, [O.OP_SRAIW]: OP.i32ShrS, [O.OP_ROLW]: OP.i32Rotl, [O.OP_RORW]: OP.i32Rotr,
  [O.OP_RORIW]: OP.i32Rotr,
};
const UNARY_W: Record<number, number> = { // rd = zx(op(rs1_32))
  [O.OP_CLZW]: OP.i32Clz, [O.OP_CTZW]: OP.i32Ctz, [O.OP_CPOPW]: OP.i32Popcnt,
};
const BITS = new Set([O.OP_BCLR, O.OP_BSET, O.OP_BINV, O.OP_BEXT, O.OP_BCLRI, O.OP_BSETI, O.OP_BINVI, O.OP_BEXTI]);
const MULH = new Set([O.OP_MULH, O.OP_MULHU, O.OP_MULHSU]);
const UNARY: Record<number, number> = {
  [O.OP_CLZ]: OP.i64Clz, [O.OP_CTZ]: OP.i64Ctz, [O.OP_CPOP]: OP.i64Popcnt,
  [O.OP_SEXTB]: OP.i64Extend8S, [O.OP_SEXTH]: OP.i64Extend16S,
};
const SHADD: Record<number, [number, boolean]> = { // rd = (rs1 [zext32]) << n + rs2
  [O.OP_SH1ADD]: [1, false], [O.OP_SH2ADD]: [2, false], [O.OP_SH3ADD]: [3, false],
  [O.OP_ADDUW]: [0, true], [O.OP_SH1ADDUW]: [1, true], [O.OP_SH2ADDUW]: [2, true], [O.OP_SH3ADDUW]: [3, true],
};
const DIVS = new Set([O.OP_DIV, O.OP_DIVU, O.OP_REM, O.OP_REMU, O.OP_DIVW, O.OP_DIVUW, O.OP_REMW, O.OP_REMUW]);
// Floating point and atomics run in the core (jitExec: the interpreter's code, its rounding modes,
// flags and reservations), called with the slot: the block goes on around them. The common double
// operations also have an inline fast path (fpFast) for when their flags cannot change.
const FP_OPS = new Set([O.OP_FLW, O.OP_FLD, O.OP_FSW, O.OP_FSD, O.OP_FP, O.OP_FADD_D, O.OP_FSUB_D, O.OP_FMUL_D, O.OP_FDIV_D]);
const CORE_OPS = new Set([...FP_OPS, O.OP_AMO]);
/** OP_FP instructions that write an integer register: fmv.x.w/d, fclass, feq/flt/fle, fcvt to an integer. */
function fpWritesInt(inst: number): boolean {
  const f7 = inst >>> 25;
  return (inst & 0x7f) === 0x53 && (f7 === 0x70 || f7 === 0x71 || f7 === 0x50 || f7 === 0x51 || f7 === 0x60 || f7 === 0x61);
}

/** Loads and stores: their slow path ends their block, and the next instruction starts one (where the slow path comes back). */
function isSite(op: number): boolean {
  return OP_CLASS[op] & SITE ? true : false;
}
const ENDS_BLOCK = new Set([...Object.keys(BRANCHES).map(Number), O.OP_JAL, O.OP_JALR]);

function supportedOp(op: number): boolean {
  return op === O.OP_NOP || op === O.OP_FENCE || CORE_OPS.has(op) || op in LOADS || op in STORES || op in BRANCHES || op in IMM_OPS || op in REG_OPS ||
    op in W32_OPS || op in UNARY || op in UNARY_W || BITS.has(op) || MULH.has(op) || op in SHADD || DIVS.has(op) || ENDS_BLOCK.has(op) ||
    op === O.OP_LUI || op === O.OP_AUIPC || op === O.OP_SLTI || op === O.OP_SLTIU || op === O.OP_SLT ||
    op === O.OP_SLTU || op === O.OP_ANDN || op === O.OP_ORN || op === O.OP_XNOR || op === O.OP_MIN ||
    op === O.OP_MINU || op === O.OP_MAX || op === O.OP_MAXU || op === O.OP_ZEXTH || op === O.OP_SLLIUW ||
    op === O.OP_ORCB || op === O.OP_REV8;
}

// What the page's analysis asks of every slot, by op (a slot's op is 7 bits), looked up rather
// than tested against a dozen tables each time: the translator's time is much of what a
// translation costs (docs/PERFORMANCE.md, "A slower machine").
const SUPPORTED = 1, SITE = 2, ENDS = 4, BRANCH = 8;
const OP_CLASS = Uint8Array.from({ length: 128 }, (_, op) =>
  (supportedOp(op) ? SUPPORTED : 0) | (op in LOADS || op in STORES ? SITE : 0) | (ENDS_BLOCK.has(op) ? ENDS : 0) | (op in BRANCHES ? BRANCH : 0));

function supported(op: number): boolean {
  return OP_CLASS[op] & SUPPORTED ? true : false;
}

/** A unit's translation: the bytes to compile, and for each of its pages the offsets (in bytes) of its block entries. */
export interface UnitTranslation {
  wasm: Uint8Array;
  pages: { entries: number[]; instructions: number }[];
}

/**
 * One page of a unit: its decoded slots (`view` at `slots`, slot i for the halfword at byte 2i),
 * with `sampled` (the page's DC_SAMPLED bits) its hot region only (hotRegion); and, where the unit
 * has more than one page, where the page is: `host`, its host page offset (the cache's tag, what
 * the fetch TLB maps its addresses to), and `live`, the address of its slots in the core's memory
 * (where its markers are).
 */
export interface UnitPage {
  view: DataView;
  slots: number;
  sampled?: Uint8Array | null;
  host?: number;
  live?: number;
}

/**
 * Whether this engine has WebAssembly tail calls (V8 since 11.2, Firefox 121, Safari 18.2):
 * translations chain into each other's pages with them, and return to the run loop without.
 */
export const TAIL_CALLS = (() => {
  // (module (type (func)) (table 0 funcref) (func (type 0) i32.const 0 return_call_indirect (type 0)))
  const probe = [0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 1, 4, 1, 0x60, 0, 0, 3, 2, 1, 0, 4, 4, 1, 0x70, 0, 0, 10, 9, 1, 7, 0, 0x41, 0, 0x13, 0, 0, 0x0b];
  try {
    return WebAssembly.validate(new Uint8Array(probe));
  } catch {
    return false;
  }
})();

// H_JIT_RETIRED += what `value` pushes (translations chained from one call of the run loop's add
// up), and so does this translation's own counter (it wraps at 2^32: the tier reads differences).
function addRetired(c: Code, value: () => void): void {
  value();
  c.set(V_ADD);
  c.get(P_H).get(P_H).mem(OP.i32Load, 2, L.H_JIT_RETIRED).get(V_ADD).op(OP.i32Add).mem(OP.i32Store, 2, L.H_JIT_RETIRED);
  c.globalGet(G_RETIRED).get(V_ADD).op(OP.i32Add).globalSet(G_RETIRED);
  c.globalGet(G_EXITS).i32(1).op(OP.i32Add).globalSet(G_EXITS);
}

/** A page's blocks to translate, in page order: with `sampled`, its hot region (hotRegion), else every decoded block. */
function pageBlocks({ view, slots, sampled }: UnitPage): Slot[][] {
  // Leaders: where blocks begin. Targets of the page's own branches and jumps, the instruction
  // after each control transfer, and the first slot of each decoded run. Code entered elsewhere
  // (a call from another page) is interpreted up to the next leader, at most a block away.
  const page: (Slot | null)[] = new Array(2048); // the page's slots, read once, by halfword
  const leader = new Uint8Array(2050); // by halfword, up to just past the page's end
  let prevEnd = -1; // where the last decoded instruction ended
  for (let off = 0; off < 4096; off += 2) {
    const s = (page[off >> 1] = slotAt(view, slots, off));
    if (!s) continue;
    const cls = OP_CLASS[s.op];
    if (off !== prevEnd) leader[off >> 1] = 1;
    prevEnd = off + s.len;
    // Past an instruction left to the interpreter, translated code starts again.
    if (!(cls & SUPPORTED)) leader[(off + s.len) >> 1] = 1;
    if (cls & BRANCH || s.op === O.OP_JAL) {
      const t = off + s.imm;
      if (t >= 0 && t < 4096 && view.getUint8(slots + t * 4) !== 0) leader[t >> 1] = 1;
    }
    if (cls & (ENDS | SITE)) leader[(off + s.len) >> 1] = 1;
  }
  // Blocks: from each supported leader to a control transfer, an unsupported or undecoded
  // instruction, the next leader or MAX_BLOCK instructions; in page order.
  let blocks: Slot[][] = [];
  for (let start = 0; start < 4096; start += 2) {
    if (!leader[start >> 1]) continue;
    const block: Slot[] = [];
    for (let off = start; off < 4096; ) {
      if (off !== start && leader[off >> 1]) break;
      if (block.length === MAX_BLOCK) {
        leader[off >> 1] = 1; // cut: the rest starts a block of its own, met further on
        break;
      }
      const s = page[off >> 1];
      if (!s || !(OP_CLASS[s.op] & SUPPORTED)) break;
      block.push(s);
      if (OP_CLASS[s.op] & (ENDS | SITE)) break;
      off += s.len;
    }
    if (block.length > 0) blocks.push(block);
  }
  if (sampled) blocks = hotRegion(blocks, sampled, view, slots);
  return blocks;
}

/**
 * Translate a unit: one function for all its pages, entered in any of them (P_PAGE, the page's
 * place in `pages`), going from one to another without leaving. Returns null when no page has
 * anything worth translating (a page with nothing has no entries).
 */
export function translateUnit(pages: UnitPage[], memoryPages: number): UnitTranslation | null {
  const blocks = pages.map(pageBlocks);
  if (blocks.every((b) => b.length === 0)) return null;
  const code = new Code();
  const registers = emitUnit(code, pages, blocks);
  const wasm = moduleBytes({
    imports: [
      // The core's slow paths, of one type (why: assembly/cpu.ts).
      { name: "jitLoad", type: SLOW_TYPE },
      { name: "jitStore", type: SLOW_TYPE },
      { name: "jitExec", type: SLOW_TYPE },
      { name: "jitChain", type: SLOW_TYPE },
      // The run function at a table index, tail-called (wasm-writer.ts tableCallerBytes).
      { name: "jitGo", type: tableCallType(RUN_TYPE) },
    ],
    run: { type: RUN_TYPE, locals: [...TEMPS, ...Array<number>(registers).fill(I64)], code },
    memoryMaxPages: memoryPages,
    counters: [RETIRED_COUNTER, INDEX_GLOBAL, EXITS_COUNTER],
  });
  return {
    wasm,
    pages: blocks.map((page) => ({ entries: page.map((b) => b[0].off), instructions: page.reduce((n, b) => n + b.length, 0) })),
  };
}

/** One page's translation (a unit of one), or null. */
export function translatePage(view: DataView, slots: number, memoryPages: number, sampled?: Uint8Array | null): (UnitTranslation & { entries: number[]; instructions: number }) | null {
  const t = translateUnit([{ view, slots, sampled }], memoryPages);
  return t && { ...t, ...t.pages[0] };
}

/**
 * The part of a page worth compiling: the blocks where heat samples fell (`sampled`: a bit per
 * 32-byte granule of the page), every block on a path within the page from one of those to one
 * of those (the whole of the loops they are in, rare branches included, and the code between hot
 * spots), and the straight-line code around them, up to the control transfers before and after
 * (unrolled code such as blake2s's runs thousands of instructions without a branch: samples fall
 * in some of its blocks, all of it is hot). Code run once per call behind a branch, error paths
 * and what ran once stay interpreted. The compile cost is per byte and more than linear in a function's size
 * (TurboFan: 34 ms for a page's 17 KiB, 160-180 ms for 54 KiB), and a kernel page is mostly
 * code that runs a little. With no sampled block (samples that fell past the page's blocks),
 * every block.
 */
function hotRegion(blocks: Slot[][], sampled: Uint8Array, view: DataView, slots: number): Slot[][] {
  const at = blockAt(blocks.map((b) => b[0].off));
  const succ: number[][] = blocks.map(() => []);
  const pred: number[][] = blocks.map(() => []);
  const edge = (i: number, off: number) => {
    let j = at(off);
    if (j < 0) {
      // An instruction the interpreter runs, after which translated code goes on.
      const s = off >= 0 && off < 4096 ? slotAt(view, slots, off) : null;
      if (s && !supported(s.op)) j = at(off + s.len);
    }
    if (j < 0) return;
    succ[i].push(j);
    pred[j].push(i);
  };
  const hot: number[] = [];
  // straight[i]: the block that block i, ending at no control transfer, always goes on to.
  const straight: (number | undefined)[] = [];
  blocks.forEach((b, i) => {
    const last = b[b.length - 1];
    const end = last.off + last.len;
    if (OP_CLASS[last.op] & BRANCH) edge(i, last.off + last.imm);
    if (last.op === O.OP_JAL) edge(i, last.off + last.imm);
    // Past the block: a branch not taken, a site's return point, a cut, and where a call returns.
    if (!(last.op === O.OP_JAL || last.op === O.OP_JALR) || last.rd !== 0) edge(i, end);
    if (!(OP_CLASS[last.op] & ENDS)) straight[i] = succ[i][0];
    for (let g = b[0].off >> 5; g <= (end - 1) >> 5; g++) {
      if (sampled[g >> 3] & (1 << (g & 7))) {
        hot.push(i);
        break;
      }
    }
  });
  if (hot.length === 0) return blocks;
  const reach = (from: number[], next: number[][]) => {
    const seen = new Uint8Array(blocks.length);
    for (const i of from) seen[i] = 1;
    for (const todo = [...from]; todo.length; ) for (const j of next[todo.pop()!]) if (!seen[j]) { seen[j] = 1; todo.push(j); }
    return seen;
  };
  const after = reach(hot, succ), before = reach(hot, pred);
  const region = after.map((a, i) => a & before[i]);
  // Blocks are in page order, so one pass each way closes the region over straight-line edges.
  for (let i = blocks.length - 1; i >= 0; i--) if (straight[i] !== undefined && region[straight[i]!]) region[i] = 1;
  for (let i = 0; i < blocks.length; i++) if (straight[i] !== undefined && region[i]) region[straight[i]!] = 1;
  return blocks.filter((_, i) => region[i]);
}

/** Block index by the page offset (bytes) it starts at (`starts`, the blocks' in order): -1 where none starts, or off the page. */
function blockAt(starts: number[]): (off: number) => number {
  const index = new Int32Array(2048).fill(-1);
  starts.forEach((off, i) => { index[off >> 1] = i; });
  return (off) => (off >= 0 && off < 4096 && (off & 1) === 0 ? index[off >> 1] : -1);
}

// The function: a loop that dispatches on the unit's page pc is in (P_PAGE) and on pc's offset
// in it to the block starting there (br_table), runs it, and goes round again until pc leaves the
// unit's pages, reaches an instruction no block starts at, or the budget is spent. The registers
// the unit uses live in locals for the whole call: loaded on entry, and those it writes stored
// back when it leaves (the core's slow paths for loads and stores do not read them; an FP
// instruction's integer source is stored before the core runs it). Blocks that follow one another
// in a page fall through. A load or store that misses the TLB goes to one slow path shared by the
// unit (so each site's code is small): it calls the core, reloads the register a load wrote, and
// comes back through the dispatch to the next instruction, which starts a block. A jump out of
// its page goes to `cross`, which goes on in the unit's page holding the target, when there is
// one whose translation still stands there (emitCross).
//
//   block $exit                      status exits: V_ST, and the site's constant
//     loop $dispatch
//       block $slow                  load and store sites branch here on a TLB miss, with their constant
//         block $leave               leave at P_PC
//           block $cross             pc (P_PC) left its page: another of the unit's?
//             block $leaveIdx        no block at V_IDX in the page
//               budget check, br_table over the pages, each page's br_table over its blocks, the blocks
//             end  ;; pc from V_IDX, br $leave
//           end    ;; into another page of the unit, br $dispatch; or on to $leave
//         end  ;; leave: store registers, return P_PC (or chain on)
//       end    ;; slow path: call the core, reload rd, br $dispatch or $exit
//     end
//   end        ;; exit: store registers; retired and status from the site; its pc or the next
function emitUnit(c: Code, pages: UnitPage[], unitBlocks: Slot[][][]): number {
  // The registers the blocks read or write (loaded on entry), and those they write (stored on leaving), in order.
  const used = new Uint8Array(32), writes = new Uint8Array(32);
  for (const blk of unitBlocks.flat()) {
    for (const s of blk) {
      const [reads, writesRd] = operands(s);
      for (const r of reads) used[r] = 1;
      if (writesRd) used[s.rd] = writes[s.rd] = 1;
    }
  }
  const load: number[] = [], store: number[] = [];
  for (let r = 1; r < 32; r++) {
    if (used[r]) load.push(r);
    if (writes[r]) store.push(r);
  }
  const written = new Set(store);
  const local = new Int32Array(32); // register r's local (used ones only)
  load.forEach((r, k) => { local[r] = X_FIRST + k; });
  if (unitBlocks.some((blocks) => blocks.some((blk) => blk.some((s) => FP_OPS.has(s.op))))) fpFastOk(c);
  const loadReg = (r: number) => c.get(P_H).mem(OP.i64Load, 3, L.H_X + r * 8).set(local[r]);
  for (const r of load) loadReg(r);
  const storeRegs = () => { for (const r of store) c.get(P_H).get(local[r]).mem(OP.i64Store, 3, L.H_X + r * 8); };
  // Entered at a leader of page P_PAGE.
  c.get(P_PC).get(P_PAGE_VA).op(OP.i64Sub).op(OP.i32WrapI64).i32(1).op(OP.i32ShrU).set(V_IDX);
  // Sites branch to the slow path and the exit with their constant (siteInfo).
  const exit = c.blockI32();
  const dispatch = c.loop();
  const slow = c.blockI32();
  const leave = c.block();
  const severalPages = unitBlocks.filter((b) => b.length > 0).length > 1;
  const cross = severalPages ? c.block() : leave;
  const leaveIdx = c.block();
  c.get(V_RETIRED).get(P_BUDGET).op(OP.i32GeS).brIf(leaveIdx);
  const pageLabels: Label[] = [];
  for (let p = unitBlocks.length - 1; p >= 0; p--) if (unitBlocks[p].length > 0) pageLabels[p] = c.block();
  if (pageLabels.length > 1 || unitBlocks[0].length === 0) {
    const byPage = unitBlocks.map((b, p) => (b.length > 0 ? pageLabels[p] : leaveIdx));
    c.get(P_PAGE).brTable(byPage, leaveIdx);
  }
  const emitter = new BlockEmitter(c, { dispatch, slow, leave, cross, exit }, written, local);
  unitBlocks.forEach((blocks, p) => {
    if (blocks.length === 0) return;
    c.end(pageLabels[p]);
    emitter.view = pages[p].view;
    emitter.slots = pages[p].slots;
    const first = blocks[0][0].off >> 1;
    const last = blocks[blocks.length - 1][0].off >> 1;
    const labels: Label[] = [];
    for (let i = blocks.length - 1; i >= 0; i--) labels[i] = c.block();
    const table: Label[] = new Array<Label>(last - first + 1).fill(leaveIdx);
    blocks.forEach((blk, i) => { table[(blk[0].off >> 1) - first] = labels[i]; });
    c.get(V_IDX);
    if (first !== 0) c.i32(first).op(OP.i32Sub);
    c.brTable(table, leaveIdx);
    const at = blockAt(blocks.map((b) => b[0].off));
    let copied = 0;
    blocks.forEach((blk, i) => {
      c.end(labels[i]);
      // A jump to a later block of the page is a branch out of the labels still open, straight to
      // it; one to this or an earlier block goes round the dispatch, which checks the budget, or
      // into a copy of the loop it closes.
      const later = (off: number) => { const k = at(off); return k > i ? labels[k] : null; };
      emitter.loopCopy = (off) => {
        const k = at(off);
        if (k < 0 || k > i) return false;
        const size = blocks.slice(k, i + 1).reduce((n, b) => n + b.length, 0);
        if (size > LOOP_COPY_MAX || copied + size > LOOP_COPIES_MAX) return false;
        copied += size;
        emitLoopCopy(c, emitter, blocks, k, i, labels, at, dispatch);
        return true;
      };
      emitter.emit(blk, blocks[i + 1]?.[0].off, later);
      emitter.loopCopy = null;
    });
  });
  c.end(leaveIdx);
  // Leaving at the dispatch (the budget is spent, or no block starts there): pc from the index.
  c.get(P_PAGE_VA).get(V_IDX).i32(1).op(OP.i32Shl).op(OP.i64ExtendI32U).op(OP.i64Add).set(P_PC);
  if (severalPages) {
    c.br(leave);
    c.end(cross);
    emitCross(c, pages, unitBlocks, dispatch, leave);
  }
  c.end(leave);
  storeRegs();
  // Entered at an OP_JIT slot, a translation always runs a block first: leaving with nothing done
  // would send the run loop round for ever, so it is a bug to be seen.
  const stuck = c.get(V_RETIRED).op(OP.i32Eqz).if_();
  c.get(P_H).get(P_PC).mem(OP.i64Store, 3, L.H_EXIT_DATA).get(P_H).get(P_PAGE_VA).mem(OP.i64Store, 3, L.H_EXIT_ADDR)
    .get(P_H).get(P_BUDGET).mem(OP.i32Store, 2, L.H_EXIT_SIZE);
  c.op(OP.unreachable).end(stuck);
  addRetired(c, () => c.get(V_RETIRED));
  if (TAIL_CALLS) {
    // Budget left: go on in the translation of the page pc is in, if there is one (a tail call:
    // the run loop sees one return, at the end of the chain).
    const more = c.get(V_RETIRED).get(P_BUDGET).op(OP.i32LtS).if_();
    const found = c.get(P_PC).i64(0).i64(0).call(F_CHAIN).tee(V_IDX).i32(0).op(OP.i32GeS).if_();
    c.get(P_H).get(P_PC).i64(-4096n).op(OP.i64And).get(P_PC).get(P_TLB_R).get(P_TLB_W).get(P_BUDGET).get(V_RETIRED).op(OP.i32Sub)
      .get(P_TLB_F).get(V_IDX).i32(CHAIN_PAGE_SHIFT).op(OP.i32ShrU)
      .get(V_IDX).i32((1 << CHAIN_PAGE_SHIFT) - 1).op(OP.i32And).returnCall(F_GO);
    c.end(found);
    c.end(more);
  }
  c.get(P_H).i32(0).mem(OP.i32Store, 2, L.H_JIT_STATUS);
  c.get(P_PC).ret();
  c.end(slow);
  // The slow path of a load or store site.
  c.set(V_INFO);
  unpackSite(c);
  const isLoad = c.get(V_KIND).i32(KIND_LOAD).op(OP.i32Eq).if_();
  c.get(V_VA).get(V_ARG).op(OP.i64ExtendI32U).i64(0).call(F_LOAD).set(V_ST);
  // The load wrote its register in the hart block (or, a fault, did not: the local is the truth).
  const reload = c.get(V_ST).i32(ST_FAULT).op(OP.i32Ne).if_();
  const done = c.block();
  const cases: Label[] = [];
  for (let k = load.length - 1; k >= 0; k--) cases[k] = c.block();
  const byReg: Label[] = [];
  for (let r = 0; r < 32; r++) byReg.push(r !== 0 && used[r] ? cases[load.indexOf(r)] : done);
  c.get(V_ARG).i32(11).op(OP.i32ShrU).brTable(byReg, done); // rd
  load.forEach((r, k) => {
    c.end(cases[k]);
    loadReg(r);
    c.br(done);
  });
  c.end(done);
  c.end(reload);
  c.else_();
  c.get(V_VA).get(V_ARG).op(OP.i64ExtendI32U).get(V_VAL).call(F_STORE).set(V_ST);
  c.end(isLoad);
  c.get(V_INFO).get(V_ST).i32(ST_NEXT).op(OP.i32Ne).brIf(exit).op(OP.drop);
  c.get(V_RETIRED).get(V_SITE_RET).op(OP.i32Add).i32(1).op(OP.i32Add).set(V_RETIRED);
  c.get(V_NEXT).i32(1).op(OP.i32ShrU).set(V_IDX);
  c.br(dispatch);
  c.end(dispatch);
  c.op(OP.unreachable);
  c.end(exit);
  c.set(V_INFO);
  unpackSite(c);
  storeRegs();
  // A fault leaves at the site, which did not retire; MMIO, tohost and JIT_LEAVE after it.
  const fault = c.get(V_ST).i32(ST_FAULT).op(OP.i32Eq).if_();
  addRetired(c, () => c.get(V_RETIRED).get(V_SITE_RET).op(OP.i32Add));
  c.get(P_H).i32(ST_FAULT).mem(OP.i32Store, 2, L.H_JIT_STATUS);
  c.get(P_PAGE_VA).get(V_SITE).op(OP.i64ExtendI32U).op(OP.i64Add).ret();
  c.end(fault);
  addRetired(c, () => c.get(V_RETIRED).get(V_SITE_RET).op(OP.i32Add).i32(1).op(OP.i32Add));
  c.get(P_H).get(V_ST).get(V_ST).i32(JIT_LEAVE).op(OP.i32Ne).op(OP.i32Mul).mem(OP.i32Store, 2, L.H_JIT_STATUS); // JIT_LEAVE: 0
  c.get(P_PAGE_VA).get(V_NEXT).op(OP.i64ExtendI32U).op(OP.i64Add).ret();
  c.finish();
  return load.length;
}

/**
 * pc (P_PC) has left its page: when it is in another of the unit's pages, go on there, as the
 * core's jitChain would have chained into it: only if nothing wants the hart (its triggers, the
 * host's attention), the fetch TLB maps pc to that page (it is still the page at that address,
 * executable) and the unit's marker is in pc's slot (the page's slots still hold what was
 * translated, and this unit is the one installed there: a marker carries its unit's table index,
 * INDEX_GLOBAL). Otherwise on to $leave, which chains the slow way or returns.
 */
function emitCross(c: Code, pages: UnitPage[], unitBlocks: Slot[][][], dispatch: Label, leave: Label): void {
  c.get(P_H).mem(OP.i32Load, 2, L.H_TRIG_ARMED).get(P_H).atomic(OP.i32AtomicLoad, 2, L.H_ATTN).op(OP.i32Or).brIf(leave);
  // e = tlbF + ((pc >> 12) & (entries - 1)) * 16; its tag must be pc's page
  c.get(P_TLB_F).get(P_PC).i64(12 - Math.log2(L.TLB_ENTRY_BYTES)).op(OP.i64ShrU).op(OP.i32WrapI64)
    .i32((L.TLB_ENTRIES - 1) * L.TLB_ENTRY_BYTES).op(OP.i32And).op(OP.i32Add).set(V_E);
  c.get(V_E).mem(OP.i64Load, 3, 0).get(P_PC).i64(-4096n).op(OP.i64And).op(OP.i64Ne).brIf(leave);
  // The host page it maps to (V_ARG), and pc's slot offset in a page (V_SITE).
  c.get(V_E).mem(OP.i64Load, 3, 8).get(P_PC).i64(-4096n).op(OP.i64And).op(OP.i64Add).op(OP.i32WrapI64).set(V_ARG);
  c.get(P_PC).op(OP.i32WrapI64).i32(0xfff).op(OP.i32And).i32(2).op(OP.i32Shl).set(V_SITE);
  unitBlocks.forEach((blocks, p) => {
    if (blocks.length === 0) return;
    const { host, live } = pages[p];
    if (host === undefined || live === undefined) throw new Error("translate: a unit's page without its host page and slots");
    const here = c.get(V_ARG).i32(host).op(OP.i32Eq).if_();
    c.get(V_SITE).mem(OP.i32Load8U, 0, live).i32(O.OP_JIT).op(OP.i32Ne).brIf(leave);
    c.get(V_SITE).mem(OP.i32Load, 2, live + 4).globalGet(G_INDEX).op(OP.i32Ne).brIf(leave);
    c.get(P_PC).i64(-4096n).op(OP.i64And).set(P_PAGE_VA).i32(p).set(P_PAGE);
    c.get(V_SITE).i32(3).op(OP.i32ShrU).set(V_IDX);
    c.br(dispatch);
    c.end(here);
  });
}

/**
 * Loops: a block i that jumps back to a block k of the page (k <= i) closes a loop. The dispatch
 * can enter the page at any of its blocks, so the blocks stay where they are; at that jump
 * starts a copy of blocks k..i inside a wasm `loop`, entered at its head only, in which the jump
 * back is a branch to the loop's start (while the budget lasts) and jumps forward are branches
 * to the copy's own blocks or, past block i, to the page's. A jump anywhere else, a slow path's
 * return and the budget's end go through the dispatch to the page's blocks as before; the copy's
 * last block, not jumping back, falls out of the loop into block i + 1. So a hot loop runs
 * round a `loop` with its registers in locals, without a `br_table` an iteration. Copies are not
 * nested, and bounded: at most LOOP_COPY_MAX instructions a loop, LOOP_COPIES_MAX a page.
 */
const LOOP_COPY_MAX = 128;
const LOOP_COPIES_MAX = 512;

function emitLoopCopy(c: Code, emitter: BlockEmitter, blocks: Slot[][], k: number, i: number, labels: Label[],
  blockAt: (off: number) => number, dispatch: Label): void {
  // Out of budget: round the dispatch (which leaves) rather than into the loop.
  const spent = c.get(V_RETIRED).get(P_BUDGET).op(OP.i32GeS).if_();
  c.i32(blocks[k][0].off >> 1).set(V_IDX).br(dispatch);
  c.end(spent);
  const head = c.loop();
  const inner: Label[] = [];
  for (let j = i; j > k; j--) inner[j] = c.block();
  emitter.loopHead = { off: blocks[k][0].off, label: head };
  emitter.loopCopy = null;
  for (let j = k; j <= i; j++) {
    if (j > k) c.end(inner[j]);
    const later = (off: number) => {
      const q = blockAt(off);
      return q <= j ? null : q <= i ? inner[q] : labels[q];
    };
    emitter.emit(blocks[j], blocks[j + 1]?.[0].off, later);
  }
  emitter.loopHead = null;
  c.end(head);
}

const BYTES_7F = 0x7f7f7f7f7f7f7f7fn, BYTES_80 = -0x7f7f7f7f7f7f7f80n; // 0x8080808080808080
// Doubles' fields (IEEE 754 binary64).
const D_SIGN = -(2n ** 63n), D_ABS = 2n ** 63n - 1n, D_INF = 0x7ffn << 52n, D_HIDDEN = 1n << 52n;
/** mstatus.FS (both bits: Dirty) and fcsr's fields the fast paths depend on. */
const MS_FS = 0x6000, FCSR_FRM = 0xe0, FCSR_NX = 1;

// The inline FP paths' precondition, for the whole call (nothing a translation runs changes it:
// CSR writes and traps end a translation): the FP state is Dirty (writing an FP register changes
// nothing in mstatus), frm is round-to-nearest-even and NX is already set (an inexact result
// raises nothing new). Compilers' code sets NX early and never clears it.
function fpFastOk(c: Code): void {
  c.get(P_H).mem(OP.i32Load, 2, L.H_MSTATUS).i32(MS_FS).op(OP.i32And).i32(MS_FS).op(OP.i32Eq);
  c.get(P_H).mem(OP.i32Load, 2, L.H_FCSR).i32(FCSR_FRM | FCSR_NX).op(OP.i32And).i32(FCSR_NX).op(OP.i32Eq);
  c.op(OP.i32And).set(V_FPOK);
}

// A site's constant: the slow path's kind (bit 0), a load's f3 or a store's size log2 (bits 1-3),
// a load's rd (bits 4-8), the instruction's index in its block (bits 9-15), its offset in the page
// (bits 16-27), and whether it is 4 bytes long (bit 28).
function siteInfo(s: Slot, i: number, kind: number, arg: number): number {
  return kind | (arg << 1) | (s.rd << 4) | (i << 9) | (s.off << 16) | (s.len === 4 ? 1 << 28 : 0);
}

function unpackSite(c: Code): void {
  c.get(V_INFO).i32(16).op(OP.i32ShrU).i32(0xfff).op(OP.i32And).set(V_SITE);
  c.get(V_SITE).i32(2).op(OP.i32Add).get(V_INFO).i32(27).op(OP.i32ShrU).i32(2).op(OP.i32And).op(OP.i32Add).set(V_NEXT);
  c.get(V_INFO).i32(9).op(OP.i32ShrU).i32(0x7f).op(OP.i32And).set(V_SITE_RET);
  c.get(V_INFO).i32(1).op(OP.i32And).set(V_KIND);
  // V_ARG: f3 | rd * 8 << 8 for jitLoad, the size in bytes for jitStore
  const load = c.get(V_KIND).i32(KIND_LOAD).op(OP.i32Eq).if_();
  c.get(V_INFO).i32(1).op(OP.i32ShrU).i32(7).op(OP.i32And).get(V_INFO).i32(4).op(OP.i32ShrU).i32(31).op(OP.i32And).i32(11).op(OP.i32Shl).op(OP.i32Or).set(V_ARG);
  c.else_();
  c.i32(1).get(V_INFO).i32(1).op(OP.i32ShrU).i32(7).op(OP.i32And).op(OP.i32Shl).set(V_ARG);
  c.end(load);
}

// The registers an instruction reads (its rs1/rs2 as the translator uses them), and whether it writes rd.
function operands(s: Slot): [number[], boolean] {
  const op = s.op;
  if (op === O.OP_NOP || op === O.OP_FENCE || op === O.OP_FADD_D || op === O.OP_FSUB_D || op === O.OP_FMUL_D || op === O.OP_FDIV_D) return [[], false];
  if (op === O.OP_FLW || op === O.OP_FLD || op === O.OP_FSW || op === O.OP_FSD) return [[s.rs1], false];
  if (op === O.OP_AMO) return [[s.rs1, s.rs2], true];
  if (op === O.OP_FP) return [[s.rs1], fpWritesInt(s.imm)]; // an int source (fmv.d.x, fcvt.d.l) or destination (fmv.x.d, feq.d, fclass.d)
  if (op in STORES || op in BRANCHES) return [[s.rs1, s.rs2], false];
  if (op === O.OP_LUI || op === O.OP_AUIPC || op === O.OP_JAL) return [[], true];
  return [[s.rs1, s.rs2], true]; // the rest read at most rs1 and rs2 (an unused field is harmless)
}

class BlockEmitter {
  constructor(
    private readonly c: Code,
    private readonly to: { dispatch: Label; slow: Label; leave: Label; cross: Label; exit: Label },
    private readonly written: Set<number>,
    /** Each register's local (those the unit uses). */
    private readonly local: Int32Array,
  ) {}
  /** The page being emitted: its slots (`view` at `slots`). */
  view!: DataView;
  slots = 0;

  /**
   * One block; `nextStart`: where the block after it in the function starts (it falls through
   * there); `later`: the label of a later block starting at an offset, if there is one.
   */
  emit(block: Slot[], nextStart: number | undefined, later: (off: number) => Label | null): void {
    const lastSlot = block[block.length - 1];
    const ends = (OP_CLASS[lastSlot.op] & ENDS) !== 0;
    block.forEach((s, i) => { if (!ends || s !== lastSlot) this.instruction(s, i); });
    this.count(block.length);
    const next = lastSlot.off + lastSlot.len;
    if (ends) {
      this.transfer(lastSlot, later);
      if (lastSlot.op === O.OP_JALR || lastSlot.op === O.OP_JAL) return;
    }
    // Past the block's end (a branch not taken, a leader, a site's return point or an
    // instruction not translated): the next block if it starts there, else leave (to the next
    // page: perhaps the unit's).
    if (next === nextStart) return;
    this.pcAt(next);
    this.c.set(P_PC).br(next >= 4096 ? this.to.cross : this.to.leave);
  }

  // A block's last instruction, a control transfer; a branch not taken goes on past it.
  private transfer(s: Slot, later: (off: number) => Label | null): void {
    const c = this.c;
    if (s.op === O.OP_JALR) {
      this.read(s.rs1);
      this.plus(s.imm);
      c.i64(-2).op(OP.i64And).set(V_T);
      this.link(s);
      // In the page: round the dispatch; else to another page (perhaps the unit's).
      c.get(V_T).set(P_PC);
      c.get(V_T).get(P_PAGE_VA).op(OP.i64Sub).set(V_T);
      const inPage = c.get(V_T).i64(4096).op(OP.i64LtU).if_();
      c.get(V_T).op(OP.i32WrapI64).i32(1).op(OP.i32ShrU).set(V_IDX).br(this.to.dispatch);
      c.end(inPage);
      c.br(this.to.cross);
      return;
    }
    if (s.op === O.OP_JAL) {
      this.link(s);
      this.jump(s.off + s.imm, later);
      return;
    }
    this.read(s.rs1);
    this.read(s.rs2);
    c.op(BRANCHES[s.op]);
    const taken = c.if_();
    this.jump(s.off + s.imm, later);
    c.end(taken);
  }

  /** In a loop's copy (emitLoopCopy): its head's offset, and the `loop` to branch to. */
  loopHead: { off: number; label: Label } | null = null;
  /** Outside a copy: makes the copy of the loop a jump back to `off` closes, if it will (emitPage). */
  loopCopy: ((off: number) => boolean) | null = null;

  // To the instruction at page offset `off`: straight to a later block, round the loop in a copy
  // of one, into a new copy of the loop it closes, else through the dispatch.
  private jump(off: number, later: (off: number) => Label | null): void {
    if (this.loopHead?.off === off) this.c.get(V_RETIRED).get(P_BUDGET).op(OP.i32LtS).brIf(this.loopHead.label);
    const label = later(off);
    if (label) this.c.br(label);
    else if (this.loopCopy?.(off)) return;
    else if (off >= 0 && off < 4096) this.c.i32(off >> 1).set(V_IDX).br(this.to.dispatch);
    else { this.pcAt(off); this.c.set(P_PC).br(this.to.cross); }
  }

  // ---- registers ----
  private read(r: number): void {
    if (r === 0) this.c.i64(0);
    else this.c.get(this.local[r]);
  }
  /** The value on the stack goes to rd (dropped for x0). */
  private write(rd: number): void {
    if (rd === 0) this.c.op(OP.drop);
    else this.c.set(this.local[rd]);
  }
  /** A jump's return address to rd (none for x0: `j`, `ret`). */
  private link(s: Slot): void {
    if (s.rd === 0) return;
    this.pcAt(s.off + s.len);
    this.write(s.rd);
  }
  /** Adds `imm` to the value on the stack. */
  private plus(imm: number): void {
    if (imm !== 0) this.c.i64(imm).op(OP.i64Add);
  }
  private pcAt(off: number): void {
    this.c.get(P_PAGE_VA).i64(off).op(OP.i64Add);
  }
  private count(n: number): void {
    this.c.get(V_RETIRED).i32(n).op(OP.i32Add).set(V_RETIRED);
  }
  /** To the slow path (a TLB miss) or the exit (a status from the core) for the i-th instruction of its block. */
  private toSlow(s: Slot, i: number, kind: number, arg: number): void {
    this.c.i32(siteInfo(s, i, kind, arg)).br(this.to.slow);
  }
  private toExit(s: Slot, i: number): void {
    this.c.i32(siteInfo(s, i, KIND_STORE, 0)).br(this.to.exit);
  }

  private instruction(s: Slot, i: number): void {
    const c = this.c;
    const op = s.op;
    if (op === O.OP_NOP) return;
    if (op === O.OP_FENCE) { // as the interpreter: a locked add of zero, a full barrier on the host
      c.get(P_H).i32(0).atomic(OP.i32AtomicRmwAdd, 2, L.H_FENCE).op(OP.drop);
      return;
    }
    if (CORE_OPS.has(op)) {
      const fast = this.fpFast(s);
      let done: Label | undefined;
      if (fast) {
        done = c.block();
        const core = c.block();
        c.get(V_FPOK).op(OP.i32Eqz).brIf(core);
        fast(core);
        c.br(done);
        c.end(core);
      }
      // The core runs it on the hart block: its integer sources (an address, fmv.d.x's, an AMO's
      // operand) must be there.
      const [reads, writesInt] = operands(s);
      for (const r of new Set(reads)) if (this.written.has(r)) c.get(P_H).get(this.local[r]).mem(OP.i64Store, 3, L.H_X + r * 8);
      c.i64(this.view.getBigUint64(this.slots + s.off * 4, true));
      this.pcAt(s.off);
      c.i64(0).call(F_EXEC).set(V_ST);
      if (writesInt && s.rd !== 0) {
        const wrote = c.get(V_ST).i32(ST_FAULT).op(OP.i32Ne).if_();
        c.get(P_H).mem(OP.i64Load, 3, L.H_X + s.rd * 8).set(this.local[s.rd]);
        c.end(wrote);
      }
      const bad = c.get(V_ST).i32(ST_NEXT).op(OP.i32Ne).if_();
      this.toExit(s, i);
      c.end(bad);
      if (done) c.end(done);
      return;
    }
    if (op in LOADS) {
      const [wop, f3, align] = LOADS[op];
      this.read(s.rs1);
      this.plus(s.imm); c.set(V_VA);
      this.tlbEntry(P_TLB_R);
      const hit = this.tlbHit(align).if_();
      c.get(V_VA).get(V_E).mem(OP.i64Load, 3, 8).op(OP.i64Add).op(OP.i32WrapI64).mem(wop, align, 0);
      this.write(s.rd);
      c.else_();
      this.toSlow(s, i, KIND_LOAD, f3);
      c.end(hit);
      return;
    }
    if (op in STORES) {
      const [wop, size] = STORES[op];
      this.read(s.rs1);
      this.plus(s.imm); c.set(V_VA);
      this.tlbEntry(P_TLB_W);
      const hit = this.tlbHit(size).if_();
      c.get(V_VA).get(V_E).mem(OP.i64Load, 3, 8).op(OP.i64Add).op(OP.i32WrapI64);
      this.read(s.rs2);
      c.mem(wop, size, 0);
      c.else_();
      this.read(s.rs2);
      c.set(V_VAL);
      this.toSlow(s, i, KIND_STORE, size);
      c.end(hit);
      return;
    }
    this.alu(s);
  }

  // ---- floating point, inline ----
  // While fpFastOk holds, a double operation whose result is a normal number (or, for a sum, any
  // finite number) can raise no flag but NX, which is already set, and rounds as the host does:
  // the host's instruction gives the architectural result. Anything else (a NaN, an infinity, a
  // tiny result, a conversion out of range) branches to `core`, which runs it in full.

  private fr(r: number, type: "i64" | "f64"): void {
    this.c.get(P_H).mem(type === "i64" ? OP.i64Load : OP.f64Load, 3, L.H_F + r * 8);
  }
  /** Store V_FBITS to f[rd]. */
  private fw(rd: number): void {
    this.c.get(P_H).get(V_FBITS).mem(OP.i64Store, 3, L.H_F + rd * 8);
  }
  // The bits on the stack to V_FBITS; to `core` unless they are a normal number (finite: any finite one).
  private checked(core: Label, finite: boolean): void {
    const c = this.c;
    c.op(OP.i64ReinterpretF64).set(V_FBITS);
    if (finite) c.get(V_FBITS).i64(D_INF).op(OP.i64And).i64(D_INF).op(OP.i64Eq).brIf(core);
    else c.get(V_FBITS).i64(D_ABS).op(OP.i64And).i64(D_HIDDEN + 1n).op(OP.i64Sub).i64(D_INF - D_HIDDEN - 1n).op(OP.i64GeU).brIf(core);
  }

  /** The fast path of an F/D instruction, or null when it has none (single precision, other rounding modes, FMA...). */
  private fpFast(s: Slot): ((core: Label) => void) | null {
    const c = this.c;
    const op = s.op;
    const rm = (s.imm >>> 12) & 7;
    const rne = rm === 0 || rm === 7; // round to nearest even, statically or as frm (fpFastOk)
    if (op === O.OP_FLD || op === O.OP_FSD) {
      const load = op === O.OP_FLD;
      return (core) => {
        this.read(s.rs1);
        this.plus(s.imm); c.set(V_VA);
        this.tlbEntry(load ? P_TLB_R : P_TLB_W);
        this.tlbHit(3).op(OP.i32Eqz).brIf(core);
        if (load) c.get(P_H);
        c.get(V_VA).get(V_E).mem(OP.i64Load, 3, 8).op(OP.i64Add).op(OP.i32WrapI64);
        if (load) c.mem(OP.i64Load, 3, 0).mem(OP.i64Store, 3, L.H_F + s.rd * 8);
        else { this.fr(s.rs2, "i64"); c.mem(OP.i64Store, 3, 0); }
      };
    }
    if (op >= O.OP_FADD_D && op <= O.OP_FDIV_D) {
      if (!rne) return null;
      const wop = [OP.f64Add, OP.f64Sub, OP.f64Mul, OP.f64Div][op - O.OP_FADD_D];
      return (core) => {
        this.fr(s.rs1, "f64"); this.fr(s.rs2, "f64"); c.op(wop);
        // A finite sum is exact or merely inexact (sums in the subnormal range are exact).
        this.checked(core, op === O.OP_FADD_D || op === O.OP_FSUB_D);
        this.fw(s.rd);
      };
    }
    if (op !== O.OP_FP || (s.imm & 0x7f) !== 0x53) return null;
    const f7 = s.imm >>> 25, f3 = (s.imm >>> 12) & 7, rs2 = (s.imm >>> 20) & 31;
    if (f7 === 0x2d && rs2 === 0 && rne) { // fsqrt.d
      return (core) => { this.fr(s.rs1, "f64"); c.op(OP.f64Sqrt); this.checked(core, false); this.fw(s.rd); };
    }
    if (f7 === 0x11 && f3 <= 2) { // fsgnj.d, fsgnjn.d, fsgnjx.d: bits only, never a flag
      return () => {
        this.fr(s.rs1, "i64");
        if (f3 !== 2) c.i64(~D_SIGN).op(OP.i64And);
        this.fr(s.rs2, "i64");
        if (f3 === 1) c.i64(-1).op(OP.i64Xor);
        c.i64(D_SIGN).op(OP.i64And).op(f3 === 2 ? OP.i64Xor : OP.i64Or).set(V_FBITS);
        this.fw(s.rd);
      };
    }
    if (f7 === 0x71 && f3 === 0 && rs2 === 0) return () => { this.fr(s.rs1, "i64"); this.write(s.rd); }; // fmv.x.d
    if (f7 === 0x79 && f3 === 0 && rs2 === 0) return () => { this.read(s.rs1); c.set(V_FBITS); this.fw(s.rd); }; // fmv.d.x
    if (f7 === 0x69 && rs2 <= 3 && (rs2 <= 1 ? rm <= 4 || rm === 7 : rne)) { // fcvt.d.w[u], fcvt.d.l[u]
      return () => {
        this.read(s.rs1);
        if (rs2 <= 1) c.op(OP.i32WrapI64, rs2 === 0 ? OP.f64ConvertI32S : OP.f64ConvertI32U);
        else c.op(rs2 === 2 ? OP.f64ConvertI64S : OP.f64ConvertI64U);
        c.op(OP.i64ReinterpretF64).set(V_FBITS);
        this.fw(s.rd);
      };
    }
    if (f7 === 0x61 && rs2 <= 3 && rm === 1) { // fcvt.w[u].d, fcvt.l[u].d rounding toward zero
      // In range (NaN is not) the host's truncation is the result; the word forms sign-extend.
      const [lo, hi, trunc] = [
        [-2147483649, 2147483648, OP.i32TruncF64S], [-1, 4294967296, OP.i32TruncF64U],
        [-9223372036854777856, 9223372036854775808, OP.i64TruncF64S], [-1, 18446744073709551616, OP.i64TruncF64U],
      ][rs2];
      return (core) => {
        this.fr(s.rs1, "f64"); c.set(V_FX);
        c.get(V_FX).f64(lo).op(OP.f64Gt).get(V_FX).f64(hi).op(OP.f64Lt).op(OP.i32And).op(OP.i32Eqz).brIf(core);
        c.get(V_FX).op(trunc);
        if (rs2 <= 1) c.op(OP.i64ExtendI32S);
        this.write(s.rd);
      };
    }
    if (f7 === 0x51 && f3 <= 2) { // fle.d, flt.d, feq.d: a NaN may raise NV, the core decides
      return (core) => {
        this.fr(s.rs1, "f64"); c.set(V_FX);
        c.get(V_FX).get(V_FX).op(OP.f64Ne);
        this.fr(s.rs2, "f64"); this.fr(s.rs2, "f64"); c.op(OP.f64Ne).op(OP.i32Or).brIf(core);
        c.get(V_FX);
        this.fr(s.rs2, "f64");
        c.op([OP.f64Le, OP.f64Lt, OP.f64Eq][f3], OP.i64ExtendI32U);
        this.write(s.rd);
      };
    }
    return null;
  }

  // e = tlb + ((va >> 12) & (TLB_ENTRIES - 1)) * 16
  private tlbEntry(table: number): void {
    // ((va >> 12) & (entries - 1)) * 16 as one shift and one mask
    this.c.get(table).get(V_VA).i64(12 - Math.log2(L.TLB_ENTRY_BYTES)).op(OP.i64ShrU).op(OP.i32WrapI64)
      .i32((L.TLB_ENTRIES - 1) * L.TLB_ENTRY_BYTES).op(OP.i32And).op(OP.i32Add).set(V_E);
  }
  // tag == va & (PAGE_MASK | size - 1): misaligned accesses miss too
  private tlbHit(align: number): Code {
    return this.c.get(V_E).mem(OP.i64Load, 3, 0).get(V_VA).i64(-4096 | ((1 << align) - 1))
      .op(OP.i64And).op(OP.i64Eq);
  }

  private alu(s: Slot): void {
    const c = this.c;
    const op = s.op;
    const imm = s.imm;
    // Nothing to compute for x0 (these have no other effect): nops the compiler and RVC make
    // (`addi x0`, hints) cost no code.
    if (s.rd === 0) return;
    const a = () => this.read(s.rs1);
    const b = () => this.read(s.rs2);
    if (op in IMM_OPS) {
      const [wop, w] = IMM_OPS[op];
      a();
      // `mv` and `sext.w` are addi/addiw of 0, and a shift or an or of 0 is the register.
      if (imm !== 0 || wop === OP.i64And) c.i64(imm).op(wop);
      if (w) c.op(OP.i64Extend32S);
    } else if (op in REG_OPS) {
      const [wop, w] = REG_OPS[op];
      a(); b(); c.op(wop);
      if (w) c.op(OP.i64Extend32S);
    } else if (op in W32_OPS) {
      a(); c.op(OP.i32WrapI64);
      if (op === O.OP_SRLIW || op === O.OP_SRAIW || op === O.OP_RORIW) c.i32(s.imm);
      else { b(); c.op(OP.i32WrapI64); }
      c.op(W32_OPS[op], OP.i64ExtendI32S);
    } else if (op in UNARY) {
      a(); c.op(UNARY[op]);
    } else if (op in UNARY_W) {
      a(); c.op(OP.i32WrapI64, UNARY_W[op]).op(OP.i64ExtendI32U);
    } else if (BITS.has(op)) {
      // the bit: 1 << (rs2 or the immediate; wasm masks the shift count to 6 bits, as RISC-V does)
      const imm = op === O.OP_BCLRI || op === O.OP_BSETI || op === O.OP_BINVI || op === O.OP_BEXTI;
      const bit = () => { c.i64(1); if (imm) c.i64(s.imm); else b(); c.op(OP.i64Shl); };
      if (op === O.OP_BCLR || op === O.OP_BCLRI) { a(); bit(); c.i64(-1).op(OP.i64Xor, OP.i64And); }
      else if (op === O.OP_BSET || op === O.OP_BSETI) { a(); bit(); c.op(OP.i64Or); }
      else if (op === O.OP_BINV || op === O.OP_BINVI) { a(); bit(); c.op(OP.i64Xor); }
      else { a(); if (imm) c.i64(s.imm); else b(); c.op(OP.i64ShrU).i64(1).op(OP.i64And); }
    } else if (MULH.has(op)) {
      this.mulh(s);
    } else if (op in SHADD) {
      const [n, uw] = SHADD[op];
      a();
      if (uw) c.i64(0xffffffff).op(OP.i64And);
      if (n) c.i64(n).op(OP.i64Shl);
      b(); c.op(OP.i64Add);
    } else if (op === O.OP_LUI) {
      c.i64(imm);
    } else if (op === O.OP_AUIPC) {
      this.pcAt(s.off + s.imm);
    } else if (op === O.OP_SLTI || op === O.OP_SLTIU) {
      a(); c.i64(imm).op(op === O.OP_SLTI ? OP.i64LtS : OP.i64LtU, OP.i64ExtendI32U);
    } else if (op === O.OP_SLT || op === O.OP_SLTU) {
      a(); b(); c.op(op === O.OP_SLT ? OP.i64LtS : OP.i64LtU, OP.i64ExtendI32U);
    } else if (op === O.OP_ANDN || op === O.OP_ORN) {
      a(); b(); c.i64(-1).op(OP.i64Xor, op === O.OP_ANDN ? OP.i64And : OP.i64Or);
    } else if (op === O.OP_XNOR) {
      a(); b(); c.op(OP.i64Xor).i64(-1).op(OP.i64Xor);
    } else if (op === O.OP_MIN || op === O.OP_MINU || op === O.OP_MAX || op === O.OP_MAXU) {
      const cmp = op === O.OP_MIN ? OP.i64LtS : op === O.OP_MINU ? OP.i64LtU : op === O.OP_MAX ? OP.i64GtS : OP.i64GtU;
      a(); b(); a(); b(); c.op(cmp, OP.select);
    } else if (op === O.OP_ORCB) {
      // A byte's top bit after adding 0x7f to its low seven bits, or-ed with it: whether the
      // byte is nonzero (no carry crosses bytes); then 0x01 per such byte times 0xff.
      a(); c.i64(BYTES_7F).op(OP.i64And).i64(BYTES_7F).op(OP.i64Add);
      a(); c.op(OP.i64Or).i64(BYTES_80).op(OP.i64And).i64(7).op(OP.i64ShrU).i64(0xff).op(OP.i64Mul);
    } else if (op === O.OP_REV8) {
      // Swap bytes within halfwords, halfwords within words, then the words.
      a(); c.set(V_T);
      for (const [k, mask] of [[8, 0x00ff00ff00ff00ffn], [16, 0x0000ffff0000ffffn]] as const) {
        c.get(V_T).i64(k).op(OP.i64ShrU).i64(mask).op(OP.i64And);
        c.get(V_T).i64(mask).op(OP.i64And).i64(k).op(OP.i64Shl).op(OP.i64Or).set(V_T);
      }
      c.get(V_T).i64(32).op(OP.i64Rotl);
    } else if (op === O.OP_ZEXTH) {
      a(); c.i64(0xffff).op(OP.i64And);
    } else if (op === O.OP_SLLIUW) {
      a(); c.i64(0xffffffff).op(OP.i64And).i64(imm).op(OP.i64Shl);
    } else if (DIVS.has(op)) {
      this.div(s);
    } else {
      throw new Error(`translate: op ${op} has no translation`);
    }
    this.write(s.rd);
  }

  // The high 64 bits of the 128-bit product, from 32-bit halves (WebAssembly has no wider multiply):
  // unsigned, then corrected for a negative operand (mulh: both signed, mulhsu: rs1 signed).
  private mulh(s: Slot): void {
    const c = this.c;
    this.read(s.rs1); c.set(V_A);
    this.read(s.rs2); c.set(V_B);
    const lo = (v: number) => c.get(v).i64(0xffffffff).op(OP.i64And);
    const hi = (v: number) => c.get(v).i64(32).op(OP.i64ShrU);
    // mid = (al*bl >> 32) + (ah*bl & 0xffffffff) + al*bh: cannot overflow
    lo(V_A); lo(V_B); c.op(OP.i64Mul).i64(32).op(OP.i64ShrU);
    hi(V_A); lo(V_B); c.op(OP.i64Mul).i64(0xffffffff).op(OP.i64And).op(OP.i64Add);
    lo(V_A); hi(V_B); c.op(OP.i64Mul).op(OP.i64Add).set(V_M);
    // hi = ah*bh + (ah*bl >> 32) + (mid >> 32)
    hi(V_A); hi(V_B); c.op(OP.i64Mul);
    hi(V_A); lo(V_B); c.op(OP.i64Mul).i64(32).op(OP.i64ShrU).op(OP.i64Add);
    c.get(V_M).i64(32).op(OP.i64ShrU).op(OP.i64Add);
    if (s.op === O.OP_MULH || s.op === O.OP_MULHSU) {
      // - (a < 0 ? b : 0)
      c.get(V_B).i64(0).get(V_A).i64(0).op(OP.i64LtS).op(OP.select).op(OP.i64Sub);
    }
    if (s.op === O.OP_MULH) {
      c.get(V_A).i64(0).get(V_B).i64(0).op(OP.i64LtS).op(OP.select).op(OP.i64Sub);
    }
  }

  // Division as RISC-V defines it: by zero gives all ones (quotient) or the dividend (remainder),
  // overflow gives the dividend (quotient) or zero (remainder); WebAssembly traps on both.
  private div(s: Slot): void {
    const c = this.c;
    const op = s.op;
    const w = op === O.OP_DIVW || op === O.OP_DIVUW || op === O.OP_REMW || op === O.OP_REMUW;
    const rem = op === O.OP_REM || op === O.OP_REMU || op === O.OP_REMW || op === O.OP_REMUW;
    const signed = op === O.OP_DIV || op === O.OP_REM || op === O.OP_DIVW || op === O.OP_REMW;
    const a = () => { this.read(s.rs1); if (w) c.op(OP.i32WrapI64); };
    const b = () => { this.read(s.rs2); if (w) c.op(OP.i32WrapI64); };
    b(); c.op(w ? OP.i32Eqz : OP.i64Eqz);
    const zero = c.ifI64();
    if (rem) { a(); if (w) c.op(OP.i64ExtendI32S); } else c.i64(-1);
    c.else_();
    if (signed && !rem) {
      // MIN / -1: the dividend
      a(); if (w) c.op(OP.i64ExtendI32S); c.set(V_T);
      b(); if (w) c.op(OP.i64ExtendI32S); c.i64(-1).op(OP.i64Eq);
      c.get(V_T).i64(w ? -(2 ** 31) : -(1n << 63n)).op(OP.i64Eq).op(OP.i32And);
      const ovf = c.ifI64();
      c.get(V_T);
      c.else_();
      a(); b(); c.op(w ? OP.i32DivS : OP.i64DivS);
      if (w) c.op(OP.i64ExtendI32S);
      c.end(ovf);
    } else {
      // rem_s of MIN by -1 is 0 in WebAssembly, as RISC-V wants
      a(); b();
      c.op(rem ? (signed ? (w ? OP.i32RemS : OP.i64RemS) : (w ? OP.i32RemU : OP.i64RemU))
        : (w ? OP.i32DivU : OP.i64DivU));
      if (w) c.op(OP.i64ExtendI32S);
    }
    c.end(zero);
  }
}
