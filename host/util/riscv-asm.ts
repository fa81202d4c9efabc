/**
 * In-repo RISC-V (RV64GC + Zicsr/Zifencei/Zba/Zbb/Zbs + privileged) encoder
 * and tiny two-pass assembler: the tests', benchmarks' and fuzzers' programs, and the compile
 * thread's warm-up (host/jit/warm-up.ts).
 *
 *   import { asm, enc, encSeq, assemble, reg, csr } from "./riscv-asm";
 *
 *   const code = asm`
 *     li   a0, 42
 *   loop:
 *     addi a0, a0, -1
 *     bnez a0, loop
 *     c.addi a1, 1
 *   `;                                  // Uint8Array, little-endian
 *   enc.addi("a0", "a0", -1)            // 0xfff50513 (single 32-bit word)
 *   enc["c.addi"](10, 1)                // 0x0505 (16-bit value)
 *   encSeq.li("a0", 0x123456789n)       // [lui, addiw, slli, addi ...]
 *
 * Syntax accepted by the assembler (GNU-as compatible where it matters):
 *   - one statement per line, `;` separates statements, `#` or `//` start a comment
 *   - labels `name:` (several per line allowed) and numeric local labels `1:` used
 *     as `1b` / `1f`
 *   - registers: x0..x31 / ABI names (zero ra sp gp tp t0-6 s0-11 fp a0-7),
 *     f0..f31 / ft0-11 fs0-11 fa0-7
 *   - immediates: expressions over decimal / 0x / 0o / 0b literals, 'c' chars,
 *     symbols, `.`, with + - * / % << >> & | ^ ~ and parentheses
 *   - branch / jump targets: a label or `.`-relative expression is an address;
 *     a *plain number* is a PC-relative byte offset (e.g. `beqz a0, 8`)
 *   - memory operands `imm(reg)` / `(reg)`; AMO address `(reg)`
 *   - FP rounding mode as optional last operand: rne rtz rdn rup rmm dyn
 *     (default dyn; fcvt.d.s / fcvt.d.w / fcvt.d.wu default to rne like GNU as)
 *   - fence sets: any combination of i,o,r,w (or 0); `fence` alone = iorw,iorw
 *   - directives: .byte .half/.2byte/.short .word/.4byte/.long .dword/.8byte/.quad,
 *     .align/.p2align (power of two), .balign, .space/.skip/.zero n[,fill],
 *     .equ/.set name, expr, and ignored .option/.text/.globl/.global
 *     (alignment padding in code: zero byte if odd, then c.nop, then nops)
 * Plain mnemonics never auto-compress; use the explicit c.* mnemonics.
 */

export type Operand = number | bigint | string;

/** Error thrown for any malformed input. `line` is 1-based (0 for enc/encSeq). */
export class AsmError extends Error {
  constructor(message: string, readonly line = 0, readonly source = "") {
    super(message);
    this.name = "AsmError";
  }
}

/** Internal error without location info; wrapped into an AsmError by callers. */
class OpError extends Error {}

function fail(msg: string): never {
  throw new OpError(msg);
}

// ---------------------------------------------------------------------------
// Registers, CSRs, rounding modes
// ---------------------------------------------------------------------------

const XABI = [
  "zero", "ra", "sp", "gp", "tp", "t0", "t1", "t2", "s0", "s1",
  "a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7",
  "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11",
  "t3", "t4", "t5", "t6",
];
const FABI = [
  "ft0", "ft1", "ft2", "ft3", "ft4", "ft5", "ft6", "ft7", "fs0", "fs1",
  "fa0", "fa1", "fa2", "fa3", "fa4", "fa5", "fa6", "fa7",
  "fs2", "fs3", "fs4", "fs5", "fs6", "fs7", "fs8", "fs9", "fs10", "fs11",
  "ft8", "ft9", "ft10", "ft11",
];

const XREGS = new Map<string, number>();
const FREGS = new Map<string, number>();
for (let i = 0; i < 32; i++) {
  XREGS.set(`x${i}`, i);
  XREGS.set(XABI[i], i);
  FREGS.set(`f${i}`, i);
  FREGS.set(FABI[i], i);
}
XREGS.set("fp", 8);

function lookupReg(map: Map<string, number>, v: Operand, what: string): number {
  if (typeof v === "number" || typeof v === "bigint") {
    const n = Number(v);
    if (Number.isInteger(n) && n >= 0 && n < 32) return n;
    fail(`bad ${what} register number ${String(v)}`);
  }
  const r = map.get(v.trim().toLowerCase());
  if (r === undefined) fail(`bad ${what} register '${v.trim()}'`);
  return r;
}

/** Integer register number for an ABI (`a0`, `fp`) or `xN` name. Throws on bad names. */
export function reg(name: string | number): number {
  try {
    return lookupReg(XREGS, name, "integer");
  } catch (e) {
    throw new AsmError((e as Error).message);
  }
}

/** Floating-point register number for an ABI (`fa0`) or `fN` name. */
export function freg(name: string | number): number {
  try {
    return lookupReg(FREGS, name, "floating-point");
  } catch (e) {
    throw new AsmError((e as Error).message);
  }
}

function buildCsrTable(): Record<string, number> {
  const t: Record<string, number> = {
    // Unprivileged floating-point CSRs
    fflags: 0x001, frm: 0x002, fcsr: 0x003,
    // Unprivileged counters/timers (RV64: no *h halves)
    cycle: 0xc00, time: 0xc01, instret: 0xc02,
    // Supervisor
    sstatus: 0x100, sie: 0x104, stvec: 0x105, scounteren: 0x106, senvcfg: 0x10a,
    sscratch: 0x140, sepc: 0x141, scause: 0x142, stval: 0x143, sip: 0x144,
    satp: 0x180, scontext: 0x5a8,
    // Machine information
    mvendorid: 0xf11, marchid: 0xf12, mimpid: 0xf13, mhartid: 0xf14, mconfigptr: 0xf15,
    // Machine trap setup
    mstatus: 0x300, misa: 0x301, medeleg: 0x302, mideleg: 0x303, mie: 0x304,
    mtvec: 0x305, mcounteren: 0x306,
    // Machine trap handling (mtinst/mtval2 exist only with the H extension)
    mscratch: 0x340, mepc: 0x341, mcause: 0x342, mtval: 0x343, mip: 0x344,
    mtinst: 0x34a, mtval2: 0x34b,
    // Machine configuration
    menvcfg: 0x30a, mseccfg: 0x747,
    // Machine counters / counter setup
    mcycle: 0xb00, minstret: 0xb02, mcountinhibit: 0x320,
    // Debug / trace
    tselect: 0x7a0, tdata1: 0x7a1, tdata2: 0x7a2, tdata3: 0x7a3, tinfo: 0x7a4,
    tcontrol: 0x7a5, mcontext: 0x7a8, mscontext: 0x7aa,
    dcsr: 0x7b0, dpc: 0x7b1, dscratch0: 0x7b2, dscratch1: 0x7b3,
  };
  for (let i = 3; i < 32; i++) {
    t[`hpmcounter${i}`] = 0xc00 + i;
    t[`mhpmcounter${i}`] = 0xb00 + i;
    t[`mhpmevent${i}`] = 0x320 + i;
  }
  // RV64: only even pmpcfg registers exist.
  for (let i = 0; i < 16; i += 2) t[`pmpcfg${i}`] = 0x3a0 + i;
  for (let i = 0; i < 64; i++) t[`pmpaddr${i}`] = 0x3b0 + i;
  return t;
}

/** CSR name -> number for every CSR of an RV64 M/S/U machine (privileged spec 1.12). */
export const CSR: Readonly<Record<string, number>> = Object.freeze(buildCsrTable());

/** CSR number for a name (case-insensitive) or numeric value (0..4095). */
export function csr(name: string | number): number {
  try {
    return parseCsr(name, null);
  } catch (e) {
    throw new AsmError((e as Error).message);
  }
}

/** FP rounding-mode operand names -> rm field value. */
export const ROUNDING_MODES: Readonly<Record<string, number>> = Object.freeze({
  rne: 0, rtz: 1, rdn: 2, rup: 3, rmm: 4, dyn: 7,
});

// ---------------------------------------------------------------------------
// Expressions
// ---------------------------------------------------------------------------

/** Symbol resolution context used while evaluating expressions. */
interface Ctx {
  /** Address of the current statement (including origin). */
  pc: bigint;
  /** Returns the value of a symbol or undefined if not (yet) known. */
  lookup(name: string): bigint | undefined;
  /** Final pass: undefined symbols are errors. */
  final: boolean;
}

interface ExprValue {
  value: bigint;
  /** The expression referenced a symbol or `.` (i.e. denotes an address). */
  symbolic: boolean;
  /** Some symbol was not yet defined (first pass only). */
  unresolved: boolean;
}

const TOKEN_RE = /\s*(0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+|\d+[bf]?\b|\d+|'(?:\\.|[^'\\])'|<<|>>|[A-Za-z_.$][\w.$]*|[-+*/%&|^~()])/y;

function evalExpr(text: string, ctx: Ctx | null): ExprValue {
  const toks: string[] = [];
  const src = text.trim();
  if (src === "") fail("missing expression");
  TOKEN_RE.lastIndex = 0;
  let pos = 0;
  while (pos < src.length) {
    TOKEN_RE.lastIndex = pos;
    const m = TOKEN_RE.exec(src);
    if (!m) fail(`bad expression '${src}'`);
    toks.push(m[1]);
    pos = TOKEN_RE.lastIndex;
    while (pos < src.length && /\s/.test(src[pos])) pos++;
  }
  let i = 0;
  let symbolic = false;
  let unresolved = false;
  const peek = () => toks[i];
  const next = () => toks[i++];

  const primary = (): bigint => {
    const t = next();
    if (t === undefined) fail(`unexpected end of expression '${src}'`);
    if (t === "(") {
      const v = binary(0);
      if (next() !== ")") fail(`missing ')' in '${src}'`);
      return v;
    }
    if (t === "-") return -primary();
    if (t === "+") return primary();
    if (t === "~") return ~primary();
    if (/^0[xX]/.test(t)) return BigInt("0x" + t.slice(2).replace(/_/g, ""));
    if (/^0[bB]/.test(t)) return BigInt("0b" + t.slice(2).replace(/_/g, ""));
    if (/^0[oO]/.test(t)) return BigInt("0o" + t.slice(2).replace(/_/g, ""));
    if (/^\d+$/.test(t)) return BigInt(t);
    if (t.startsWith("'")) {
      const body = t.slice(1, -1);
      const esc: Record<string, string> = { n: "\n", t: "\t", r: "\r", "0": "\0", "\\": "\\", "'": "'" };
      const ch = body.startsWith("\\") ? esc[body[1]] ?? body[1] : body;
      return BigInt(ch.charCodeAt(0));
    }
    if (/^\d+[bf]$/.test(t) || /^[A-Za-z_.$]/.test(t)) {
      symbolic = true;
      if (!ctx) fail(`symbol '${t}' not allowed here`);
      if (t === ".") return ctx.pc;
      const v = ctx.lookup(t);
      if (v === undefined) {
        if (ctx.final) fail(`undefined symbol '${t}'`);
        unresolved = true;
        return ctx.pc;
      }
      return v;
    }
    fail(`unexpected '${t}' in expression '${src}'`);
  };
  const PREC: Record<string, number> = {
    "|": 1, "^": 2, "&": 3, "<<": 4, ">>": 4, "+": 5, "-": 5, "*": 6, "/": 6, "%": 6,
  };
  const binary = (minPrec: number): bigint => {
    let lhs = primary();
    for (;;) {
      const op = peek();
      const p = op === undefined ? undefined : PREC[op];
      if (p === undefined || p < minPrec) break;
      next();
      const rhs = binary(p + 1);
      switch (op) {
        case "+": lhs = lhs + rhs; break;
        case "-": lhs = lhs - rhs; break;
        case "*": lhs = lhs * rhs; break;
        case "/": if (rhs === 0n) fail("division by zero"); lhs = lhs / rhs; break;
        case "%": if (rhs === 0n) fail("division by zero"); lhs = lhs % rhs; break;
        case "<<": lhs = lhs << rhs; break;
        case ">>": lhs = lhs >> rhs; break;
        case "&": lhs = lhs & rhs; break;
        case "|": lhs = lhs | rhs; break;
        case "^": lhs = lhs ^ rhs; break;
      }
    }
    return lhs;
  };
  const value = binary(0);
  if (i !== toks.length) fail(`junk '${toks.slice(i).join(" ")}' in expression '${src}'`);
  return { value, symbolic, unresolved };
}

function toBig(v: Operand, ctx: Ctx | null): ExprValue {
  if (typeof v === "bigint") return { value: v, symbolic: false, unresolved: false };
  if (typeof v === "number") {
    if (!Number.isSafeInteger(v)) fail(`immediate ${v} is not a (safe) integer`);
    return { value: BigInt(v), symbolic: false, unresolved: false };
  }
  return evalExpr(v, ctx);
}

function parseCsr(v: Operand, ctx: Ctx | null): number {
  if (typeof v === "string") {
    const n = CSR[v.trim().toLowerCase()];
    if (n !== undefined) return n;
    if (/^[A-Za-z_][\w.]*$/.test(v.trim()) && (!ctx || ctx.lookup(v.trim()) === undefined)) {
      fail(`unknown CSR '${v.trim()}'`);
    }
  }
  const x = toBig(v, ctx).value;
  if (x < 0n || x > 0xfffn) fail(`CSR number ${x} out of range 0..4095`);
  return Number(x);
}

// ---------------------------------------------------------------------------
// Field helpers
// ---------------------------------------------------------------------------

function signed(v: bigint, bits: number, what: string): number {
  const lo = -(1n << BigInt(bits - 1));
  const hi = (1n << BigInt(bits - 1)) - 1n;
  if (v < lo || v > hi) fail(`${what} ${v} out of range ${lo}..${hi}`);
  return Number(v);
}

function unsigned(v: bigint, lo: number, hi: number, what: string): number {
  if (v < BigInt(lo) || v > BigInt(hi)) fail(`${what} ${v} out of range ${lo}..${hi}`);
  return Number(v);
}

function aligned(v: number, align: number, what: string): number {
  if (v % align !== 0) fail(`${what} ${v} is not a multiple of ${align}`);
  return v;
}

function bits(v: number, hi: number, lo: number): number {
  return Math.floor(v / 2 ** lo) & ((1 << (hi - lo + 1)) - 1);
}

const u32 = (x: number) => x >>> 0;

const rType = (op: number, f3: number, f7: number, rd: number, rs1: number, rs2: number) =>
  u32((f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op);

const iType = (op: number, f3: number, rd: number, rs1: number, imm: number) =>
  u32(((imm & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op);

const sType = (op: number, f3: number, rs1: number, rs2: number, imm: number) =>
  u32((bits(imm & 0xfff, 11, 5) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | ((imm & 0x1f) << 7) | op);

function bType(f3: number, rs1: number, rs2: number, off: bigint): number {
  const o = aligned(signed(off, 13, "branch offset"), 2, "branch offset") & 0x1fff;
  return u32((bits(o, 12, 12) << 31) | (bits(o, 10, 5) << 25) | (rs2 << 20) | (rs1 << 15) |
    (f3 << 12) | (bits(o, 4, 1) << 8) | (bits(o, 11, 11) << 7) | 0x63);
}

function jType(rd: number, off: bigint): number {
  const o = aligned(signed(off, 21, "jump offset"), 2, "jump offset") & 0x1fffff;
  return u32((bits(o, 20, 20) << 31) | (bits(o, 10, 1) << 21) | (bits(o, 11, 11) << 20) |
    (bits(o, 19, 12) << 12) | (rd << 7) | 0x6f);
}

const imm12 = (v: bigint) => signed(v, 12, "immediate");

function uimm20(v: bigint): number {
  if (v < -(1n << 19n) || v > 0xfffffn) fail(`upper immediate ${v} out of range 0..0xfffff (or -524288..-1)`);
  return Number(v & 0xfffffn);
}

const uType = (op: number, rd: number, imm: bigint) => u32((uimm20(imm) << 12) | (rd << 7) | op);

// ---------------------------------------------------------------------------
// Instruction table
// ---------------------------------------------------------------------------

/**
 * Operand kinds:
 *  x  integer register      f  FP register         i  immediate expression
 *  o  branch/jump target (PC-relative offset)       m  memory `imm(reg)` -> imm, reg
 *  a  AMO address `(reg)`   c  CSR name/number     rm rounding mode (optional)
 *  fs fence set
 * A trailing `?` marks an optional operand (only at the end).
 */
type Kind = "x" | "f" | "i" | "o" | "m" | "a" | "c" | "rm" | "fs";
type Val = number | bigint;
interface Variant {
  kinds: Kind[];
  optional: number; // number of trailing optional kinds
  compressed: boolean;
  build: (v: Val[]) => number[];
}

const TABLE = new Map<string, Variant[]>();

function def(mn: string, spec: string, build: (v: any[]) => number | number[]) {
  const parts = spec === "" ? [] : spec.split(",").map((s) => s.trim());
  let optional = 0;
  const kinds = parts.map((p) => {
    if (p.endsWith("?")) {
      optional++;
      return p.slice(0, -1) as Kind;
    }
    if (optional) throw new Error(`internal: optional operand before required in ${mn}`);
    return p as Kind;
  });
  const variant: Variant = {
    kinds,
    optional,
    compressed: mn.startsWith("c."),
    build: (v) => {
      const r = build(v);
      return Array.isArray(r) ? r : [r];
    },
  };
  const list = TABLE.get(mn);
  if (list) list.push(variant);
  else TABLE.set(mn, [variant]);
}

// --- RV32I / RV64I --------------------------------------------------------

def("lui", "x,i", ([rd, imm]) => uType(0x37, rd, imm));
def("auipc", "x,i", ([rd, imm]) => uType(0x17, rd, imm));
def("jal", "x,o", ([rd, off]) => jType(rd, off));
def("jal", "o", ([off]) => jType(1, off));
def("jalr", "x,m", ([rd, imm, rs1]) => iType(0x67, 0, rd, rs1, imm12(imm)));
def("jalr", "x,x,i", ([rd, rs1, imm]) => iType(0x67, 0, rd, rs1, imm12(imm)));
def("jalr", "x,x", ([rd, rs1]) => iType(0x67, 0, rd, rs1, 0));
def("jalr", "x", ([rs1]) => iType(0x67, 0, 1, rs1, 0));

const BRANCHES: [string, number][] = [["beq", 0], ["bne", 1], ["blt", 4], ["bge", 5], ["bltu", 6], ["bgeu", 7]];
for (const [mn, f3] of BRANCHES) def(mn, "x,x,o", ([a, b, off]) => bType(f3, a, b, off));

const LOADS: [string, number][] = [["lb", 0], ["lh", 1], ["lw", 2], ["ld", 3], ["lbu", 4], ["lhu", 5], ["lwu", 6]];
for (const [mn, f3] of LOADS) def(mn, "x,m", ([rd, imm, rs1]) => iType(0x03, f3, rd, rs1, imm12(imm)));
const STORES: [string, number][] = [["sb", 0], ["sh", 1], ["sw", 2], ["sd", 3]];
for (const [mn, f3] of STORES) def(mn, "x,m", ([rs2, imm, rs1]) => sType(0x23, f3, rs1, rs2, imm12(imm)));

const ALUI: [string, number][] = [["addi", 0], ["slti", 2], ["sltiu", 3], ["xori", 4], ["ori", 6], ["andi", 7]];
for (const [mn, f3] of ALUI) def(mn, "x,x,i", ([rd, rs1, imm]) => iType(0x13, f3, rd, rs1, imm12(imm)));
def("addiw", "x,x,i", ([rd, rs1, imm]) => iType(0x1b, 0, rd, rs1, imm12(imm)));

/** Shift-immediate style: fixed upper imm bits `hi`, shamt of `width` bits. */
function shiftI(mn: string, op: number, f3: number, hi: number, width: number) {
  def(mn, "x,x,i", ([rd, rs1, sh]) =>
    iType(op, f3, rd, rs1, hi | unsigned(sh, 0, (1 << width) - 1, "shift amount")));
}
shiftI("slli", 0x13, 1, 0x000, 6);
shiftI("srli", 0x13, 5, 0x000, 6);
shiftI("srai", 0x13, 5, 0x400, 6);
shiftI("slliw", 0x1b, 1, 0x000, 5);
shiftI("srliw", 0x1b, 5, 0x000, 5);
shiftI("sraiw", 0x1b, 5, 0x400, 5);

const RR: [string, number, number, number][] = [
  // mnemonic, opcode, funct3, funct7
  ["add", 0x33, 0, 0x00], ["sub", 0x33, 0, 0x20], ["sll", 0x33, 1, 0x00], ["slt", 0x33, 2, 0x00],
  ["sltu", 0x33, 3, 0x00], ["xor", 0x33, 4, 0x00], ["srl", 0x33, 5, 0x00], ["sra", 0x33, 5, 0x20],
  ["or", 0x33, 6, 0x00], ["and", 0x33, 7, 0x00],
  ["addw", 0x3b, 0, 0x00], ["subw", 0x3b, 0, 0x20], ["sllw", 0x3b, 1, 0x00], ["srlw", 0x3b, 5, 0x00],
  ["sraw", 0x3b, 5, 0x20],
  // M
  ["mul", 0x33, 0, 0x01], ["mulh", 0x33, 1, 0x01], ["mulhsu", 0x33, 2, 0x01], ["mulhu", 0x33, 3, 0x01],
  ["div", 0x33, 4, 0x01], ["divu", 0x33, 5, 0x01], ["rem", 0x33, 6, 0x01], ["remu", 0x33, 7, 0x01],
  ["mulw", 0x3b, 0, 0x01], ["divw", 0x3b, 4, 0x01], ["divuw", 0x3b, 5, 0x01], ["remw", 0x3b, 6, 0x01],
  ["remuw", 0x3b, 7, 0x01],
  // Zba
  ["add.uw", 0x3b, 0, 0x04], ["sh1add", 0x33, 2, 0x10], ["sh2add", 0x33, 4, 0x10], ["sh3add", 0x33, 6, 0x10],
  ["sh1add.uw", 0x3b, 2, 0x10], ["sh2add.uw", 0x3b, 4, 0x10], ["sh3add.uw", 0x3b, 6, 0x10],
  // Zbb
  ["andn", 0x33, 7, 0x20], ["orn", 0x33, 6, 0x20], ["xnor", 0x33, 4, 0x20],
  ["max", 0x33, 6, 0x05], ["maxu", 0x33, 7, 0x05], ["min", 0x33, 4, 0x05], ["minu", 0x33, 5, 0x05],
  ["rol", 0x33, 1, 0x30], ["ror", 0x33, 5, 0x30], ["rolw", 0x3b, 1, 0x30], ["rorw", 0x3b, 5, 0x30],
  // Zbs
  ["bclr", 0x33, 1, 0x24], ["bext", 0x33, 5, 0x24], ["binv", 0x33, 1, 0x34], ["bset", 0x33, 1, 0x14],
];
for (const [mn, op, f3, f7] of RR) def(mn, "x,x,x", ([rd, rs1, rs2]) => rType(op, f3, f7, rd, rs1, rs2));

// Zba / Zbb / Zbs immediate forms
shiftI("slli.uw", 0x1b, 1, 0x080, 6);
shiftI("rori", 0x13, 5, 0x600, 6);
shiftI("roriw", 0x1b, 5, 0x600, 5);
shiftI("bclri", 0x13, 1, 0x480, 6);
shiftI("bexti", 0x13, 5, 0x480, 6);
shiftI("binvi", 0x13, 1, 0x680, 6);
shiftI("bseti", 0x13, 1, 0x280, 6);

// Zbb unary: [mnemonic, opcode, funct3, imm12]
const UNARY: [string, number, number, number][] = [
  ["clz", 0x13, 1, 0x600], ["ctz", 0x13, 1, 0x601], ["cpop", 0x13, 1, 0x602],
  ["sext.b", 0x13, 1, 0x604], ["sext.h", 0x13, 1, 0x605],
  ["clzw", 0x1b, 1, 0x600], ["ctzw", 0x1b, 1, 0x601], ["cpopw", 0x1b, 1, 0x602],
  ["orc.b", 0x13, 5, 0x287], ["rev8", 0x13, 5, 0x6b8],
  ["zext.h", 0x3b, 4, 0x080],
];
for (const [mn, op, f3, imm] of UNARY) def(mn, "x,x", ([rd, rs1]) => iType(op, f3, rd, rs1, imm));

// --- fences, system ---------------------------------------------------------

def("fence", "", () => 0x0ff0000f);
def("fence", "fs,fs", ([p, s]) => u32((p << 24) | (s << 20) | 0x0f));
def("fence.tso", "", () => 0x8330000f);
def("fence.i", "", () => 0x0000100f);
def("pause", "", () => 0x0100000f);
def("ecall", "", () => 0x00000073);
def("ebreak", "", () => 0x00100073);
def("sret", "", () => 0x10200073);
def("mret", "", () => 0x30200073);
def("dret", "", () => 0x7b200073);
def("wfi", "", () => 0x10500073);
def("sfence.vma", "x?,x?", ([rs1 = 0, rs2 = 0]) => u32(0x12000073 | (rs2 << 20) | (rs1 << 15)));
def("unimp", "", () => 0xc0001073);

const csrType = (f3: number, rd: number, c: number, rs1: number) =>
  u32((c << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | 0x73);
const uimm5 = (v: bigint) => unsigned(v, 0, 31, "CSR immediate");
const CSRI: [string, number][] = [["csrrw", 1], ["csrrs", 2], ["csrrc", 3]];
for (const [mn, f3] of CSRI) {
  def(mn, "x,c,x", ([rd, c, rs1]) => csrType(f3, rd, c, rs1));
  def(mn + "i", "x,c,i", ([rd, c, imm]) => csrType(f3 + 4, rd, c, uimm5(imm)));
}

// --- A ----------------------------------------------------------------------

const AMOS: [string, number][] = [
  ["amoswap", 0x01], ["amoadd", 0x00], ["amoxor", 0x04], ["amoand", 0x0c], ["amoor", 0x08],
  ["amomin", 0x10], ["amomax", 0x14], ["amominu", 0x18], ["amomaxu", 0x1c],
];
const ORDERINGS: [string, number][] = [["", 0], [".aq", 2], [".rl", 1], [".aqrl", 3]];
for (const [w, f3] of [["w", 2], ["d", 3]] as const) {
  for (const [sfx, aqrl] of ORDERINGS) {
    const amo = (f5: number, rd: number, rs1: number, rs2: number) =>
      u32((f5 << 27) | (aqrl << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | 0x2f);
    def(`lr.${w}${sfx}`, "x,a", ([rd, rs1]) => amo(0x02, rd, rs1, 0));
    def(`sc.${w}${sfx}`, "x,x,a", ([rd, rs2, rs1]) => amo(0x03, rd, rs1, rs2));
    for (const [name, f5] of AMOS) def(`${name}.${w}${sfx}`, "x,x,a", ([rd, rs2, rs1]) => amo(f5, rd, rs1, rs2));
  }
}

// --- F / D ------------------------------------------------------------------

def("flw", "f,m", ([rd, imm, rs1]) => iType(0x07, 2, rd, rs1, imm12(imm)));
def("fld", "f,m", ([rd, imm, rs1]) => iType(0x07, 3, rd, rs1, imm12(imm)));
def("fsw", "f,m", ([rs2, imm, rs1]) => sType(0x27, 2, rs1, rs2, imm12(imm)));
def("fsd", "f,m", ([rs2, imm, rs1]) => sType(0x27, 3, rs1, rs2, imm12(imm)));

const fpOp = (f5: number, fmt: number, rm: number, rd: number, rs1: number, rs2: number) =>
  rType(0x53, rm, (f5 << 2) | fmt, rd, rs1, rs2);

for (const [s, fmt] of [["s", 0], ["d", 1]] as const) {
  const FMA: [string, number][] = [["fmadd", 0x43], ["fmsub", 0x47], ["fnmsub", 0x4b], ["fnmadd", 0x4f]];
  for (const [mn, op] of FMA) {
    def(`${mn}.${s}`, "f,f,f,f,rm?", ([rd, rs1, rs2, rs3, rm = 7]) =>
      u32((rs3 << 27) | (fmt << 25) | (rs2 << 20) | (rs1 << 15) | (rm << 12) | (rd << 7) | op));
  }
  const ARITH: [string, number][] = [["fadd", 0x00], ["fsub", 0x01], ["fmul", 0x02], ["fdiv", 0x03]];
  for (const [mn, f5] of ARITH) {
    def(`${mn}.${s}`, "f,f,f,rm?", ([rd, rs1, rs2, rm = 7]) => fpOp(f5, fmt, rm, rd, rs1, rs2));
  }
  def(`fsqrt.${s}`, "f,f,rm?", ([rd, rs1, rm = 7]) => fpOp(0x0b, fmt, rm, rd, rs1, 0));
  const F3OPS: [string, number, number][] = [
    ["fsgnj", 0x04, 0], ["fsgnjn", 0x04, 1], ["fsgnjx", 0x04, 2], ["fmin", 0x05, 0], ["fmax", 0x05, 1],
  ];
  for (const [mn, f5, f3] of F3OPS) def(`${mn}.${s}`, "f,f,f", ([rd, a, b]) => fpOp(f5, fmt, f3, rd, a, b));
  const CMP: [string, number][] = [["feq", 2], ["flt", 1], ["fle", 0]];
  for (const [mn, f3] of CMP) def(`${mn}.${s}`, "x,f,f", ([rd, a, b]) => fpOp(0x14, fmt, f3, rd, a, b));
  def(`fclass.${s}`, "x,f", ([rd, a]) => fpOp(0x1c, fmt, 1, rd, a, 0));
  // int <-> fp conversions
  const INTS: [string, number][] = [["w", 0], ["wu", 1], ["l", 2], ["lu", 3]];
  for (const [it, sel] of INTS) {
    def(`fcvt.${it}.${s}`, "x,f,rm?", ([rd, a, rm = 7]) => fpOp(0x18, fmt, rm, rd, a, sel));
    // int -> double for 32-bit ints is exact: GNU as encodes rm = rne by default.
    const dflt = s === "d" && (it === "w" || it === "wu") ? 0 : 7;
    def(`fcvt.${s}.${it}`, "f,x,rm?", ([rd, a, rm = dflt]) => fpOp(0x1a, fmt, rm, rd, a, sel));
  }
  // Pseudo-instructions on sign injection
  def(`fmv.${s}`, "f,f", ([rd, a]) => fpOp(0x04, fmt, 0, rd, a, a));
  def(`fneg.${s}`, "f,f", ([rd, a]) => fpOp(0x04, fmt, 1, rd, a, a));
  def(`fabs.${s}`, "f,f", ([rd, a]) => fpOp(0x04, fmt, 2, rd, a, a));
}
def("fcvt.s.d", "f,f,rm?", ([rd, a, rm = 7]) => fpOp(0x08, 0, rm, rd, a, 1));
def("fcvt.d.s", "f,f,rm?", ([rd, a, rm = 0]) => fpOp(0x08, 1, rm, rd, a, 0));
for (const mn of ["fmv.x.w", "fmv.x.s"]) def(mn, "x,f", ([rd, a]) => fpOp(0x1c, 0, 0, rd, a, 0));
for (const mn of ["fmv.w.x", "fmv.s.x"]) def(mn, "f,x", ([rd, a]) => fpOp(0x1e, 0, 0, rd, a, 0));
def("fmv.x.d", "x,f", ([rd, a]) => fpOp(0x1c, 1, 0, rd, a, 0));
def("fmv.d.x", "f,x", ([rd, a]) => fpOp(0x1e, 1, 0, rd, a, 0));

// --- Pseudo-instructions ----------------------------------------------------

const ADDI = (rd: number, rs1: number, imm: number) => iType(0x13, 0, rd, rs1, imm);

/** GNU as `li` expansion (load_const in tc-riscv.c) for RV64. */
function loadConst(rd: number, v: bigint, out: number[]): void {
  const lower = ((v & 0xfffn) ^ 0x800n) - 0x800n;
  const upper = BigInt.asIntN(64, v - lower);
  if (BigInt.asIntN(32, v) !== v) {
    let shift = 12n;
    while (((upper >> shift) & 1n) === 0n) shift++;
    loadConst(rd, upper >> shift, out);
    out.push(iType(0x13, 1, rd, rd, Number(shift)));
    if (lower !== 0n) out.push(ADDI(rd, rd, Number(lower)));
  } else {
    let hi = 0;
    if (upper !== 0n) {
      out.push(u32((Number((upper >> 12n) & 0xfffffn) << 12) | (rd << 7) | 0x37));
      hi = rd;
    }
    if (lower !== 0n || hi === 0) out.push(iType(0x1b, 0, rd, hi, Number(lower)));
  }
}

/** Instruction words GNU as emits for `li rd, value` (value: any 64-bit constant). */
export function liSequence(rd: number, value: bigint | number): number[] {
  let v = BigInt(value);
  if (v < -(1n << 63n) || v >= 1n << 64n) fail(`li constant ${v} does not fit in 64 bits`);
  v = BigInt.asIntN(64, v);
  if (v >= -2048n && v <= 2047n) return [ADDI(rd, 0, Number(v))];
  const out: number[] = [];
  loadConst(rd, v, out);
  return out;
}

def("li", "x,i", ([rd, v]) => liSequence(rd, v));
def("nop", "", () => ADDI(0, 0, 0));
def("mv", "x,x", ([rd, rs]) => ADDI(rd, rs, 0));
def("not", "x,x", ([rd, rs]) => iType(0x13, 4, rd, rs, -1));
def("neg", "x,x", ([rd, rs]) => rType(0x33, 0, 0x20, rd, 0, rs));
def("negw", "x,x", ([rd, rs]) => rType(0x3b, 0, 0x20, rd, 0, rs));
def("sext.w", "x,x", ([rd, rs]) => iType(0x1b, 0, rd, rs, 0));
def("zext.w", "x,x", ([rd, rs]) => rType(0x3b, 0, 0x04, rd, rs, 0));
def("zext.b", "x,x", ([rd, rs]) => iType(0x13, 7, rd, rs, 255));
def("seqz", "x,x", ([rd, rs]) => iType(0x13, 3, rd, rs, 1));
def("snez", "x,x", ([rd, rs]) => rType(0x33, 3, 0, rd, 0, rs));
def("sltz", "x,x", ([rd, rs]) => rType(0x33, 2, 0, rd, rs, 0));
def("sgtz", "x,x", ([rd, rs]) => rType(0x33, 2, 0, rd, 0, rs));
def("beqz", "x,o", ([rs, off]) => bType(0, rs, 0, off));
def("bnez", "x,o", ([rs, off]) => bType(1, rs, 0, off));
def("blez", "x,o", ([rs, off]) => bType(5, 0, rs, off));
def("bgez", "x,o", ([rs, off]) => bType(5, rs, 0, off));
def("bltz", "x,o", ([rs, off]) => bType(4, rs, 0, off));
def("bgtz", "x,o", ([rs, off]) => bType(4, 0, rs, off));
def("bgt", "x,x,o", ([a, b, off]) => bType(4, b, a, off));
def("ble", "x,x,o", ([a, b, off]) => bType(5, b, a, off));
def("bgtu", "x,x,o", ([a, b, off]) => bType(6, b, a, off));
def("bleu", "x,x,o", ([a, b, off]) => bType(7, b, a, off));
def("j", "o", ([off]) => jType(0, off));
def("jr", "x", ([rs]) => iType(0x67, 0, 0, rs, 0));
def("jr", "x,i", ([rs, imm]) => iType(0x67, 0, 0, rs, imm12(imm)));
def("jr", "m", ([imm, rs]) => iType(0x67, 0, 0, rs, imm12(imm)));
def("ret", "", () => iType(0x67, 0, 0, 1, 0));

/** Split a PC-relative offset into auipc hi20 / lo12 parts. */
function hiLo(off: bigint): [number, number] {
  if (off < -(1n << 31n) - 0x800n || off >= (1n << 31n) - 0x800n) fail(`PC-relative offset ${off} out of range`);
  const lo = Number(((off & 0xfffn) ^ 0x800n) - 0x800n);
  const hi = Number(((off - BigInt(lo)) >> 12n) & 0xfffffn);
  return [hi, lo];
}
const AUIPC = (rd: number, hi: number) => u32((hi << 12) | (rd << 7) | 0x17);
// Locally resolved auipc-based pseudos (GNU as would emit relocations for these).
for (const mn of ["la", "lla"]) {
  def(mn, "x,o", ([rd, off]) => {
    const [hi, lo] = hiLo(off);
    return [AUIPC(rd, hi), ADDI(rd, rd, lo)];
  });
}
def("call", "o", ([off]) => {
  const [hi, lo] = hiLo(off);
  return [AUIPC(1, hi), iType(0x67, 0, 1, 1, lo)];
});
def("call", "x,o", ([rd, off]) => {
  const [hi, lo] = hiLo(off);
  return [AUIPC(rd, hi), iType(0x67, 0, rd, rd, lo)];
});
def("tail", "o", ([off]) => {
  const [hi, lo] = hiLo(off);
  return [AUIPC(6, hi), iType(0x67, 0, 0, 6, lo)];
});

// CSR pseudos
def("csrr", "x,c", ([rd, c]) => csrType(2, rd, c, 0));
def("csrw", "c,x", ([c, rs]) => csrType(1, 0, c, rs));
def("csrs", "c,x", ([c, rs]) => csrType(2, 0, c, rs));
def("csrc", "c,x", ([c, rs]) => csrType(3, 0, c, rs));
def("csrwi", "c,i", ([c, imm]) => csrType(5, 0, c, uimm5(imm)));
def("csrsi", "c,i", ([c, imm]) => csrType(6, 0, c, uimm5(imm)));
def("csrci", "c,i", ([c, imm]) => csrType(7, 0, c, uimm5(imm)));
for (const [mn, c] of [["rdcycle", 0xc00], ["rdtime", 0xc01], ["rdinstret", 0xc02]] as const) {
  def(mn, "x", ([rd]) => csrType(2, rd, c, 0));
}
for (const [sfx, c] of [["csr", 3], ["rm", 2], ["flags", 1]] as const) {
  def(`fr${sfx}`, "x", ([rd]) => csrType(2, rd, c, 0));
  def(`fs${sfx}`, "x", ([rs]) => csrType(1, 0, c, rs));
  def(`fs${sfx}`, "x,x", ([rd, rs]) => csrType(1, rd, c, rs));
  if (sfx !== "csr") {
    def(`fs${sfx}i`, "i", ([imm]) => csrType(5, 0, c, uimm5(imm)));
    def(`fs${sfx}i`, "x,i", ([rd, imm]) => csrType(5, rd, c, uimm5(imm)));
  }
}

// --- C (explicit compressed mnemonics) ---------------------------------------

function creg(r: number, what = "register"): number {
  if (r < 8 || r > 15) fail(`compressed ${what} must be x8..x15 (s0,s1,a0-a5), got x${r}`);
  return r - 8;
}
const h16 = (x: number) => x & 0xffff;
function cimm(v: bigint, lo: number, hi: number, align: number, what: string, nonzero = false): number {
  const n = aligned(unsigned(v, lo, hi, what), align, what);
  if (nonzero && n === 0) fail(`${what} must be nonzero`);
  return n;
}
function cimm6(v: bigint, what = "immediate"): number {
  return signed(v, 6, what) & 0x3f;
}
function needSp(r: number, mn: string) {
  if (r !== 2) fail(`${mn} base register must be sp`);
}
function notZero(r: number, mn: string, what = "rd") {
  if (r === 0) fail(`${mn}: ${what} must not be x0`);
}

// CI-format: funct3 | imm[5] | rd | imm[4:0] | op
const ci = (f3: number, op: number, rd: number, imm6: number) =>
  h16((f3 << 13) | (bits(imm6, 5, 5) << 12) | (rd << 7) | ((imm6 & 0x1f) << 2) | op);

def("c.nop", "", () => 0x0001);
def("c.unimp", "", () => 0x0000);
def("c.ebreak", "", () => 0x9002);
def("c.addi", "x,i", ([rd, imm]) => ci(0, 1, rd, cimm6(imm)));
def("c.addiw", "x,i", ([rd, imm]) => (notZero(rd, "c.addiw"), ci(1, 1, rd, cimm6(imm))));
def("c.li", "x,i", ([rd, imm]) => ci(2, 1, rd, cimm6(imm)));
def("c.lui", "x,i", ([rd, imm]) => {
  if (rd === 2) fail("c.lui: rd must not be sp (that is c.addi16sp)");
  let v = imm as bigint;
  if (v >= 0xfffe0n && v <= 0xfffffn) v -= 0x100000n;
  if (v === 0n) fail("c.lui: immediate must be nonzero");
  return ci(3, 1, rd, signed(v, 6, "c.lui immediate (1..31 or 0xfffe0..0xfffff)") & 0x3f);
});
function addi16sp(imm: bigint): number {
  const n = aligned(signed(imm, 10, "c.addi16sp immediate"), 16, "c.addi16sp immediate");
  if (n === 0) fail("c.addi16sp immediate must be nonzero");
  const o = n & 0x3ff;
  return h16((3 << 13) | (bits(o, 9, 9) << 12) | (2 << 7) | (bits(o, 4, 4) << 6) | (bits(o, 6, 6) << 5) |
    (bits(o, 8, 7) << 3) | (bits(o, 5, 5) << 2) | 1);
}
def("c.addi16sp", "x,i", ([rd, imm]) => (needSp(rd, "c.addi16sp"), addi16sp(imm)));
def("c.addi16sp", "i", ([imm]) => addi16sp(imm));
def("c.addi4spn", "x,x,i", ([rd, rs, imm]) => {
  needSp(rs, "c.addi4spn");
  const n = cimm(imm, 0, 1020, 4, "c.addi4spn immediate", true);
  return h16((bits(n, 5, 4) << 11) | (bits(n, 9, 6) << 7) | (bits(n, 2, 2) << 6) | (bits(n, 3, 3) << 5) |
    (creg(rd) << 2));
});
// CL/CS formats
function clsW(f3: number, r: number, imm: bigint, base: number, mn: string): number {
  const n = cimm(imm, 0, 124, 4, `${mn} offset`);
  return h16((f3 << 13) | (bits(n, 5, 3) << 10) | (creg(base) << 7) | (bits(n, 2, 2) << 6) |
    (bits(n, 6, 6) << 5) | (creg(r) << 2));
}
function clsD(f3: number, r: number, imm: bigint, base: number, mn: string): number {
  const n = cimm(imm, 0, 248, 8, `${mn} offset`);
  return h16((f3 << 13) | (bits(n, 5, 3) << 10) | (creg(base) << 7) | (bits(n, 7, 6) << 5) | (creg(r) << 2));
}
def("c.lw", "x,m", ([rd, imm, rs1]) => clsW(2, rd, imm, rs1, "c.lw"));
def("c.sw", "x,m", ([rs2, imm, rs1]) => clsW(6, rs2, imm, rs1, "c.sw"));
def("c.ld", "x,m", ([rd, imm, rs1]) => clsD(3, rd, imm, rs1, "c.ld"));
def("c.sd", "x,m", ([rs2, imm, rs1]) => clsD(7, rs2, imm, rs1, "c.sd"));
def("c.fld", "f,m", ([rd, imm, rs1]) => clsD(1, rd, imm, rs1, "c.fld"));
def("c.fsd", "f,m", ([rs2, imm, rs1]) => clsD(5, rs2, imm, rs1, "c.fsd"));
// Stack-pointer relative
function lspW(f3: number, rd: number, imm: bigint): number {
  const n = cimm(imm, 0, 252, 4, "offset");
  return h16((f3 << 13) | (bits(n, 5, 5) << 12) | (rd << 7) | (bits(n, 4, 2) << 4) | (bits(n, 7, 6) << 2) | 2);
}
function lspD(f3: number, rd: number, imm: bigint): number {
  const n = cimm(imm, 0, 504, 8, "offset");
  return h16((f3 << 13) | (bits(n, 5, 5) << 12) | (rd << 7) | (bits(n, 4, 3) << 5) | (bits(n, 8, 6) << 2) | 2);
}
function sspW(f3: number, rs2: number, imm: bigint): number {
  const n = cimm(imm, 0, 252, 4, "offset");
  return h16((f3 << 13) | (bits(n, 5, 2) << 9) | (bits(n, 7, 6) << 7) | (rs2 << 2) | 2);
}
function sspD(f3: number, rs2: number, imm: bigint): number {
  const n = cimm(imm, 0, 504, 8, "offset");
  return h16((f3 << 13) | (bits(n, 5, 3) << 10) | (bits(n, 8, 6) << 7) | (rs2 << 2) | 2);
}
def("c.lwsp", "x,m", ([rd, imm, b]) => (needSp(b, "c.lwsp"), notZero(rd, "c.lwsp"), lspW(2, rd, imm)));
def("c.ldsp", "x,m", ([rd, imm, b]) => (needSp(b, "c.ldsp"), notZero(rd, "c.ldsp"), lspD(3, rd, imm)));
def("c.fldsp", "f,m", ([rd, imm, b]) => (needSp(b, "c.fldsp"), lspD(1, rd, imm)));
def("c.swsp", "x,m", ([rs2, imm, b]) => (needSp(b, "c.swsp"), sspW(6, rs2, imm)));
def("c.sdsp", "x,m", ([rs2, imm, b]) => (needSp(b, "c.sdsp"), sspD(7, rs2, imm)));
def("c.fsdsp", "f,m", ([rs2, imm, b]) => (needSp(b, "c.fsdsp"), sspD(5, rs2, imm)));
// Control transfer
function cjOff(off: bigint): number {
  const o = aligned(signed(off, 12, "c.j offset"), 2, "c.j offset") & 0xfff;
  return h16((5 << 13) | (bits(o, 11, 11) << 12) | (bits(o, 4, 4) << 11) | (bits(o, 9, 8) << 9) |
    (bits(o, 10, 10) << 8) | (bits(o, 6, 6) << 7) | (bits(o, 7, 7) << 6) | (bits(o, 3, 1) << 3) |
    (bits(o, 5, 5) << 2) | 1);
}
def("c.j", "o", ([off]) => cjOff(off));
function cbr(f3: number, rs: number, off: bigint): number {
  const o = aligned(signed(off, 9, "branch offset"), 2, "branch offset") & 0x1ff;
  return h16((f3 << 13) | (bits(o, 8, 8) << 12) | (bits(o, 4, 3) << 10) | (creg(rs) << 7) |
    (bits(o, 7, 6) << 5) | (bits(o, 2, 1) << 3) | (bits(o, 5, 5) << 2) | 1);
}
def("c.beqz", "x,o", ([rs, off]) => cbr(6, rs, off));
def("c.bnez", "x,o", ([rs, off]) => cbr(7, rs, off));
def("c.jr", "x", ([rs]) => (notZero(rs, "c.jr", "rs1"), h16(0x8002 | (rs << 7))));
def("c.jalr", "x", ([rs]) => (notZero(rs, "c.jalr", "rs1"), h16(0x9002 | (rs << 7))));
def("c.mv", "x,x", ([rd, rs]) => (notZero(rs, "c.mv", "rs2"), h16(0x8002 | (rd << 7) | (rs << 2))));
def("c.add", "x,x", ([rd, rs]) => (notZero(rs, "c.add", "rs2"), h16(0x9002 | (rd << 7) | (rs << 2))));
// Integer register-immediate / register-register
const shamt6 = (v: bigint) => unsigned(v, 0, 63, "shift amount");
def("c.slli", "x,i", ([rd, sh]) => ci(0, 2, rd, shamt6(sh)));
const cbType = (f2: number, rd: number, imm6: number) =>
  h16((4 << 13) | (bits(imm6, 5, 5) << 12) | (f2 << 10) | (creg(rd) << 7) | ((imm6 & 0x1f) << 2) | 1);
def("c.srli", "x,i", ([rd, sh]) => cbType(0, rd, shamt6(sh)));
def("c.srai", "x,i", ([rd, sh]) => cbType(1, rd, shamt6(sh)));
def("c.andi", "x,i", ([rd, imm]) => cbType(2, rd, cimm6(imm)));
const CA: [string, number, number][] = [
  ["c.sub", 0, 0], ["c.xor", 0, 1], ["c.or", 0, 2], ["c.and", 0, 3], ["c.subw", 1, 0], ["c.addw", 1, 1],
];
for (const [mn, b12, f2] of CA) {
  def(mn, "x,x", ([rd, rs2]) =>
    h16((4 << 13) | (b12 << 12) | (3 << 10) | (creg(rd) << 7) | (f2 << 5) | (creg(rs2) << 2) | 1));
}

/** All mnemonics the encoder knows (sorted). */
export function mnemonics(): string[] {
  return [...TABLE.keys()].sort();
}

// ---------------------------------------------------------------------------
// Operand parsing / matching
// ---------------------------------------------------------------------------

/** Split an operand string on top-level commas. */
function splitOperands(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of s) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) {
      out.push(cur.trim());
      cur = "";
    } else cur += ch;
  }
  if (cur.trim() !== "" || out.length) out.push(cur.trim());
  return out;
}

/** Parse `expr(reg)` / `(reg)`; returns undefined if the string is not of that shape. */
function splitMem(s: string): [string, string] | undefined {
  const t = s.trim();
  if (!t.endsWith(")")) return undefined;
  let depth = 0;
  for (let i = t.length - 1; i >= 0; i--) {
    if (t[i] === ")") depth++;
    else if (t[i] === "(") {
      depth--;
      if (depth === 0) {
        const inner = t.slice(i + 1, -1).trim();
        if (!XREGS.has(inner.toLowerCase())) return undefined;
        return [t.slice(0, i).trim(), inner];
      }
    }
  }
  return undefined;
}

function parseFenceSet(v: Operand): number {
  if (typeof v !== "string") return unsigned(BigInt(v), 0, 15, "fence set");
  const t = v.trim().toLowerCase();
  if (t === "0") return 0;
  if (!/^[iorw]+$/.test(t)) fail(`bad fence set '${v}' (use a combination of i, o, r, w)`);
  let n = 0;
  for (const ch of t) {
    const b = { i: 8, o: 4, r: 2, w: 1 }[ch]!;
    if (n & b) fail(`duplicate '${ch}' in fence set '${v}'`);
    n |= b;
  }
  return n;
}

interface MatchResult {
  vals?: Val[];
  err?: string;
  progress: number;
}

/**
 * Try to parse tokens according to kinds. `encMode` enables the JS-call
 * conveniences: numeric registers and memory operands given as two args (imm, base).
 */
function matchVariant(v: Variant, toks: Operand[], ctx: Ctx | null, encMode: boolean): MatchResult {
  const vals: Val[] = [];
  let t = 0;
  let k = 0;
  try {
    for (; k < v.kinds.length; k++) {
      const kind = v.kinds[k];
      if (t >= toks.length) {
        if (k >= v.kinds.length - v.optional) break;
        return { err: `missing operand(s)`, progress: k };
      }
      const tok = toks[t++];
      if (!encMode && typeof tok === "string" && tok.trim() === "") fail(`empty operand`);
      switch (kind) {
        case "x":
          vals.push(lookupReg(XREGS, encMode ? tok : String(tok), "integer"));
          break;
        case "f":
          vals.push(lookupReg(FREGS, encMode ? tok : String(tok), "floating-point"));
          break;
        case "i": {
          vals.push(toBig(tok, ctx).value);
          break;
        }
        case "o": {
          const e = toBig(tok, ctx);
          if (e.unresolved) vals.push(0n);
          else if (e.symbolic) vals.push(e.value - (ctx ? ctx.pc : 0n));
          else vals.push(e.value);
          break;
        }
        case "m": {
          const mem = typeof tok === "string" ? splitMem(tok) : undefined;
          if (mem) {
            vals.push(mem[0] === "" ? 0n : toBig(mem[0], ctx).value);
            vals.push(lookupReg(XREGS, mem[1], "integer"));
          } else if (encMode && t < toks.length) {
            vals.push(toBig(tok, ctx).value);
            vals.push(lookupReg(XREGS, toks[t++], "integer"));
          } else fail(`expected memory operand 'offset(reg)', got '${String(tok)}'`);
          break;
        }
        case "a": {
          const mem = typeof tok === "string" ? splitMem(tok) : undefined;
          if (mem) {
            if (mem[0] !== "" && toBig(mem[0], ctx).value !== 0n) fail(`AMO address offset must be 0`);
            vals.push(lookupReg(XREGS, mem[1], "integer"));
          } else if (encMode) vals.push(lookupReg(XREGS, tok, "integer"));
          else fail(`expected address operand '(reg)', got '${String(tok)}'`);
          break;
        }
        case "c":
          vals.push(parseCsr(tok, ctx));
          break;
        case "rm": {
          const name = String(tok).trim().toLowerCase();
          const rm = encMode && typeof tok !== "string" && /^[0-7]$/.test(name) ? Number(name) : ROUNDING_MODES[name];
          if (rm === undefined) fail(`bad rounding mode '${String(tok)}' (rne rtz rdn rup rmm dyn)`);
          vals.push(rm);
          break;
        }
        case "fs":
          vals.push(parseFenceSet(tok));
          break;
      }
    }
    if (t < toks.length) return { err: `too many operands`, progress: k };
  } catch (e) {
    if (e instanceof OpError) return { err: e.message, progress: k + 1 };
    throw e;
  }
  return { vals, progress: k + 1 };
}

interface Encoded {
  words: number[];
  compressed: boolean;
}

function encodeInsn(mn: string, toks: Operand[], ctx: Ctx | null, encMode: boolean): Encoded {
  const variants = TABLE.get(mn.toLowerCase());
  if (!variants) fail(`unknown mnemonic '${mn}'`);
  let best: MatchResult | undefined;
  for (const v of variants) {
    const r = matchVariant(v, toks, ctx, encMode);
    if (r.vals) {
      try {
        return { words: v.build(r.vals), compressed: v.compressed };
      } catch (e) {
        if (!(e instanceof OpError)) throw e;
        const cand = { err: e.message, progress: 1000 };
        if (!best || cand.progress > best.progress) best = cand;
        continue;
      }
    }
    if (!best || r.progress > best.progress) best = r;
  }
  const forms = variants.map((v) => `${mn} ${v.kinds.map((k, i) =>
    (i >= v.kinds.length - v.optional ? `[${k}]` : k)).join(", ")}`.trim()).join(" | ");
  fail(`${best!.err} for '${mn}' (forms: ${forms})`);
}

function wordsToBytes(e: Encoded): number[] {
  const out: number[] = [];
  for (const w of e.words) {
    out.push(w & 0xff, (w >>> 8) & 0xff);
    if (!e.compressed) out.push((w >>> 16) & 0xff, (w >>> 24) & 0xff);
  }
  return out;
}

// ---------------------------------------------------------------------------
// enc / encSeq: direct JS API
// ---------------------------------------------------------------------------

export type EncodeFn = (...operands: Operand[]) => number;
export type EncodeSeqFn = (...operands: Operand[]) => number[];

function encCall(mn: string, ops: Operand[]): Encoded {
  try {
    return encodeInsn(mn, ops, null, true);
  } catch (e) {
    if (e instanceof OpError) throw new AsmError(`${mn} ${ops.map(String).join(", ")}: ${e.message}`);
    throw e;
  }
}

function makeEncoders<T>(f: (mn: string) => T): Record<string, T> {
  const o: Record<string, T> = {};
  for (const mn of TABLE.keys()) {
    o[mn] = f(mn);
    if (mn.includes(".")) o[mn.replace(/\./g, "_")] = o[mn];
  }
  return o;
}

/**
 * One encoder function per mnemonic (also under `_` instead of `.`: enc.fadd_d).
 * Returns the instruction as an unsigned number: 32-bit word, or a 16-bit
 * value for c.* mnemonics. Throws if the mnemonic expands to several
 * instructions (use encSeq for that). Registers may be numbers or names;
 * memory operands either "8(sp)" or two args (8, "sp"); branch/jump targets
 * are PC-relative byte offsets.
 */
export const enc: Record<string, EncodeFn> = makeEncoders((mn) => (...ops: Operand[]) => {
  const e = encCall(mn, ops);
  if (e.words.length !== 1) {
    throw new AsmError(`${mn} ${ops.map(String).join(", ")} expands to ${e.words.length} instructions; use encSeq`);
  }
  return e.words[0];
});

/** Like `enc`, but returns every instruction word of the expansion (e.g. `li`). */
export const encSeq: Record<string, EncodeSeqFn> = makeEncoders((mn) => (...ops: Operand[]) =>
  encCall(mn, ops).words.slice());

// ---------------------------------------------------------------------------
// Text assembler
// ---------------------------------------------------------------------------

export interface AsmStatement {
  /** 1-based source line. */
  line: number;
  /** Statement text (without labels and comments). */
  source: string;
  /** Absolute address (origin + offset). */
  address: number;
  size: number;
  bytes: Uint8Array;
}

export interface AsmResult {
  bytes: Uint8Array;
  /** Label -> absolute address (origin + offset). Numeric local labels are omitted. */
  labels: Record<string, number>;
  statements: AsmStatement[];
}

export interface AsmOptions {
  /** Address of the first byte (default 0). Affects label values only. */
  origin?: number | bigint;
}

interface Stmt {
  line: number;
  text: string;
  source: string;
  index: number;
  op: string; // mnemonic or directive (lower-case)
  args: string;
  offset: number;
  size: number;
}

const NOP_BYTES = [0x13, 0x00, 0x00, 0x00];

function alignPad(offset: number, align: number): number[] {
  const pad = (align - (offset % align)) % align;
  const out: number[] = [];
  let p = pad;
  while (p % 2 !== 0) { out.push(0); p--; }
  if (p % 4 === 2) { out.push(0x01, 0x00); p -= 2; }
  while (p > 0) { out.push(...NOP_BYTES); p -= 4; }
  return out;
}

const DATA_SIZES: Record<string, number> = {
  ".byte": 1, ".half": 2, ".2byte": 2, ".short": 2, ".word": 4, ".4byte": 4, ".long": 4,
  ".dword": 8, ".8byte": 8, ".quad": 8,
};

function dataBytes(args: string, size: number, ctx: Ctx): number[] {
  const out: number[] = [];
  const items = splitOperands(args);
  if (items.length === 0) fail(`missing value`);
  const nbits = BigInt(size * 8);
  for (const it of items) {
    const v = evalExpr(it, ctx).value;
    if (v < -(1n << (nbits - 1n)) || v >= 1n << nbits) fail(`value ${v} does not fit in ${size} byte(s)`);
    let u = BigInt.asUintN(size * 8, v);
    for (let i = 0; i < size; i++) {
      out.push(Number(u & 0xffn));
      u >>= 8n;
    }
  }
  return out;
}

function smallInt(args: string, ctx: Ctx, lo: number, hi: number, what: string): number {
  const v = evalExpr(args, ctx);
  if (v.unresolved) fail(`${what} must be a constant`);
  return unsigned(v.value, lo, hi, what);
}

/** Emit the bytes of one statement (pass 1 computes sizes, pass 2 the final bytes). */
function emitStmt(st: Stmt, ctx: Ctx, symbols: Map<string, bigint>, pass: 1 | 2): number[] {
  const op = st.op;
  if (op.startsWith(".")) {
    if (op in DATA_SIZES) return dataBytes(st.args, DATA_SIZES[op], ctx);
    switch (op) {
      case ".align":
      case ".p2align": {
        const n = smallInt(splitOperands(st.args)[0] ?? "", ctx, 0, 16, "alignment exponent");
        return alignPad(st.offset, 1 << n);
      }
      case ".balign": {
        const n = smallInt(splitOperands(st.args)[0] ?? "", ctx, 1, 65536, "alignment");
        if (n & (n - 1)) fail(`alignment ${n} is not a power of two`);
        return alignPad(st.offset, n);
      }
      case ".space":
      case ".skip":
      case ".zero": {
        const a = splitOperands(st.args);
        if (a.length < 1 || a.length > 2) fail(`${op} takes size[, fill]`);
        const n = smallInt(a[0], ctx, 0, 1 << 26, "size");
        const fill = a.length > 1 ? smallInt(a[1], ctx, -128, 255, "fill byte") & 0xff : 0;
        return new Array<number>(n).fill(fill);
      }
      case ".equ":
      case ".set": {
        const a = splitOperands(st.args);
        if (a.length !== 2 || !/^[A-Za-z_.$][\w.$]*$/.test(a[0])) fail(`${op} takes name, value`);
        const v = evalExpr(a[1], ctx);
        if (v.unresolved) fail(`${op} value must be defined before use`);
        if (pass === 1) {
          if (symbols.has(a[0])) fail(`symbol '${a[0]}' already defined`);
          symbols.set(a[0], v.value);
        }
        return [];
      }
      case ".option":
      case ".text":
      case ".globl":
      case ".global":
        return [];
      default:
        fail(`unknown directive '${op}'`);
    }
  }
  const toks = st.args.trim() === "" ? [] : splitOperands(st.args);
  return wordsToBytes(encodeInsn(op, toks, ctx, false));
}

const LABEL_RE = /^\s*([A-Za-z_.$][\w.$]*|\d+)\s*:/;

/** Assemble source text; returns bytes, label addresses and per-statement info. */
export function assemble(source: string, options: AsmOptions = {}): AsmResult {
  const origin = BigInt(options.origin ?? 0);
  const symbols = new Map<string, bigint>(); // named labels + .equ (absolute values)
  const labelNames: string[] = [];
  const localDefs = new Map<string, { index: number; offset: number }[]>();
  const stmts: Stmt[] = [];
  const pendingLabels: { name: string; line: number }[] = [];

  const where = (line: number, text: string, msg: string) =>
    new AsmError(`line ${line}: ${msg} (in "${text.trim()}")`, line, text);

  // Parse lines into statements.
  const lines = source.split(/\r?\n/);
  for (let ln = 0; ln < lines.length; ln++) {
    const raw = lines[ln];
    let text = raw;
    const hash = text.indexOf("#");
    if (hash >= 0) text = text.slice(0, hash);
    const sl = text.indexOf("//");
    if (sl >= 0) text = text.slice(0, sl);
    for (let part of text.split(";")) {
      let m: RegExpExecArray | null;
      while ((m = LABEL_RE.exec(part))) {
        pendingLabels.push({ name: m[1], line: ln + 1 });
        part = part.slice(m[0].length);
      }
      const body = part.trim();
      if (body === "" && !pendingLabels.length) continue;
      const sp = body.search(/\s/);
      const op = (sp < 0 ? body : body.slice(0, sp)).toLowerCase();
      const args = sp < 0 ? "" : body.slice(sp + 1);
      if (op !== "" && !/^(\.[\w.]+|[a-z][\w.]*)$/.test(op)) throw where(ln + 1, raw, `bad mnemonic '${op}'`);
      stmts.push({
        line: ln + 1, text: raw, source: body, index: stmts.length, op, args, offset: 0, size: 0,
      });
      // Attach labels to this statement (defined at its offset, computed in pass 1).
      (stmts[stmts.length - 1] as Stmt & { labels?: string[] }).labels = pendingLabels.map((l) => l.name);
      pendingLabels.length = 0;
    }
  }

  const resolveLocal = (name: string, index: number, final: boolean): bigint | undefined => {
    const m = /^(\d+)([bf])$/.exec(name);
    if (!m) return undefined;
    const defs = localDefs.get(m[1]) ?? [];
    let hit: { index: number; offset: number } | undefined;
    if (m[2] === "b") {
      for (const d of defs) if (d.index <= index) hit = d;
    } else {
      hit = defs.find((d) => d.index > index);
    }
    if (!hit) {
      if (final || m[2] === "b") fail(`undefined local label '${name}'`);
      return undefined;
    }
    return origin + BigInt(hit.offset);
  };

  // Pass 1: sizes and label offsets.
  let offset = 0;
  for (const st of stmts) {
    st.offset = offset;
    for (const name of (st as Stmt & { labels?: string[] }).labels ?? []) {
      if (/^\d+$/.test(name)) {
        const list = localDefs.get(name) ?? [];
        list.push({ index: st.index, offset });
        localDefs.set(name, list);
      } else {
        if (symbols.has(name)) throw where(st.line, st.text, `label '${name}' already defined`);
        symbols.set(name, origin + BigInt(offset));
        labelNames.push(name);
      }
    }
    if (st.op === "") continue;
    const ctx: Ctx = {
      pc: origin + BigInt(offset),
      final: false,
      lookup: (n) => symbols.get(n) ?? resolveLocal(n, st.index, false),
    };
    try {
      st.size = emitStmt(st, ctx, symbols, 1).length;
    } catch (e) {
      if (e instanceof OpError) throw where(st.line, st.text, e.message);
      throw e;
    }
    offset += st.size;
  }

  // Pass 2: final bytes.
  const bytes = new Uint8Array(offset);
  const out: AsmStatement[] = [];
  for (const st of stmts) {
    if (st.op === "") continue;
    const ctx: Ctx = {
      pc: origin + BigInt(st.offset),
      final: true,
      lookup: (n) => symbols.get(n) ?? resolveLocal(n, st.index, true),
    };
    let b: number[];
    try {
      b = emitStmt(st, ctx, symbols, 2);
    } catch (e) {
      if (e instanceof OpError) throw where(st.line, st.text, e.message);
      throw e;
    }
    if (b.length !== st.size) {
      throw where(st.line, st.text, `size changed between passes (${st.size} -> ${b.length}); ` +
        `operands that determine size must be constants defined before use`);
    }
    bytes.set(b, st.offset);
    if (b.length === 0 && st.op.startsWith(".")) continue;
    out.push({
      line: st.line, source: st.source, address: Number(origin) + st.offset, size: b.length,
      bytes: Uint8Array.from(b),
    });
  }
  const labels: Record<string, number> = {};
  for (const n of labelNames) labels[n] = Number(symbols.get(n)!);
  return { bytes, labels, statements: out };
}

/**
 * Assemble a template literal (or plain string) to bytes. Interpolated values
 * are inserted as text (numbers/bigints in decimal).
 */
export function asm(strings: TemplateStringsArray | string, ...values: unknown[]): Uint8Array {
  let src: string;
  if (typeof strings === "string") src = strings;
  else {
    src = strings[0];
    for (let i = 0; i < values.length; i++) src += String(values[i]) + strings[i + 1];
  }
  return assemble(src).bytes;
}

/** Split little-endian bytes into 32-bit words (length must be a multiple of 4). */
export function toWords(bytes: Uint8Array): number[] {
  if (bytes.length % 4) throw new AsmError(`byte length ${bytes.length} is not a multiple of 4`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: number[] = [];
  for (let i = 0; i < bytes.length; i += 4) out.push(dv.getUint32(i, true));
  return out;
}
