// A minimal WebAssembly binary writer: just what the translator (translate.ts) emits. Structured
// control is tracked with a label stack so that branches name their target instead of counting
// the depth by hand.

export const I32 = 0x7f;
export const I64 = 0x7e;
export const F64 = 0x7c;
const EMPTY = 0x40;

export class Bytes {
  private buf = new Uint8Array(1024);
  length = 0;
  byte(b: number): this {
    if (this.length === this.buf.length) this.grow(1);
    this.buf[this.length++] = b;
    return this;
  }
  bytes(b: ArrayLike<number>): this {
    if (this.length + b.length > this.buf.length) this.grow(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
    return this;
  }
  private grow(more: number): void {
    const n = new Uint8Array(Math.max(this.buf.length * 2, this.length + more));
    n.set(this.buf.subarray(0, this.length));
    this.buf = n;
  }
  u32(v: number): this {
    do {
      let b = v & 0x7f;
      v >>>= 7;
      if (v !== 0) b |= 0x80;
      this.byte(b);
    } while (v !== 0);
    return this;
  }
  s64(v: bigint): this {
    for (;;) {
      const b = Number(v & 0x7fn);
      v >>= 7n;
      const done = (v === 0n && (b & 0x40) === 0) || (v === -1n && (b & 0x40) !== 0);
      this.byte(done ? b : b | 0x80);
      if (done) return this;
    }
  }
  /** Signed LEB128 of a safe integer (numbers, not BigInts: the translator writes many). */
  sleb(v: number): this {
    for (;;) {
      let b: number;
      if (v >= -0x40000000 && v < 0x40000000) {
        b = v & 0x7f;
        v >>= 7;
      } else {
        b = ((v % 128) + 128) % 128;
        v = (v - b) / 128;
      }
      const done = (v === 0 && (b & 0x40) === 0) || (v === -1 && (b & 0x40) !== 0);
      this.byte(done ? b : b | 0x80);
      if (done) return this;
    }
  }
  name(s: string): this {
    this.u32(s.length);
    for (let i = 0; i < s.length; i++) this.byte(s.charCodeAt(i));
    return this;
  }
  /** A section or body: this writer's bytes, prefixed by their length. */
  sized(into: Bytes): void {
    into.u32(this.length);
    into.bytes(this.view());
  }
  view(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

/** A label a branch can name: a block (branch goes to its end) or a loop (to its start). */
export type Label = { readonly id: number; readonly height: number };

/** One function body's instructions. */
export class Code extends Bytes {
  private labels: Label[] = [];
  private nextLabel = 0;

  block(): Label {
    this.byte(0x02).byte(EMPTY);
    return this.push();
  }
  /** A block whose branches carry an i32 to its end. */
  blockI32(): Label {
    this.byte(0x02).byte(I32);
    return this.push();
  }
  loop(): Label {
    this.byte(0x03).byte(EMPTY);
    return this.push();
  }
  if_(): Label {
    this.byte(0x04).byte(EMPTY);
    return this.push();
  }
  ifI64(): Label {
    this.byte(0x04).byte(I64);
    return this.push();
  }
  else_(): this {
    return this.byte(0x05);
  }
  end(label: Label): this {
    if (this.labels.pop() !== label) throw new Error("wasm-writer: blocks must end innermost first");
    return this.byte(0x0b);
  }
  br(label: Label): this {
    return this.byte(0x0c).u32(this.depth(label));
  }
  brIf(label: Label): this {
    return this.byte(0x0d).u32(this.depth(label));
  }
  brTable(targets: Label[], dflt: Label): this {
    this.byte(0x0e).u32(targets.length);
    for (const t of targets) this.u32(this.depth(t));
    return this.u32(this.depth(dflt));
  }
  ret(): this {
    return this.byte(0x0f);
  }
  call(fn: number): this {
    return this.byte(0x10).u32(fn);
  }
  /** A tail call to function `fn` (the callee returns for this one). */
  returnCall(fn: number): this {
    return this.byte(0x12).u32(fn);
  }
  /** A tail call through table 0 to a function of type `type`. */
  returnCallIndirect(type: number): this {
    return this.byte(0x13).u32(type).u32(0);
  }
  get(local: number): this {
    return this.byte(0x20).u32(local);
  }
  set(local: number): this {
    return this.byte(0x21).u32(local);
  }
  tee(local: number): this {
    return this.byte(0x22).u32(local);
  }
  globalGet(global: number): this {
    return this.byte(0x23).u32(global);
  }
  globalSet(global: number): this {
    return this.byte(0x24).u32(global);
  }
  i32(v: number): this {
    return this.byte(0x41).sleb(v | 0);
  }
  i64(v: number | bigint): this {
    this.byte(0x42);
    return typeof v === "number" && Number.isSafeInteger(v) ? this.sleb(v) : this.s64(BigInt.asIntN(64, BigInt(v)));
  }
  f64(v: number): this {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v, true);
    return this.byte(0x44).bytes(b);
  }
  /** An atomic memory instruction (0xfe prefix) with its memarg. */
  atomic(op: number, align: number, offset: number): this {
    return this.byte(0xfe).u32(op).u32(align).u32(offset);
  }
  /** A load or store opcode with its memarg (natural alignment). */
  mem(op: number, align: number, offset: number): this {
    return this.byte(op).u32(align).u32(offset);
  }
  op(a: number, b?: number): this {
    this.byte(a);
    return b === undefined ? this : this.byte(b);
  }
  /** The end of the function body. */
  finish(): this {
    if (this.labels.length !== 0) throw new Error("wasm-writer: unclosed blocks");
    return this.byte(0x0b);
  }

  private push(): Label {
    const l = { id: this.nextLabel++, height: this.labels.length };
    this.labels.push(l);
    return l;
  }
  private depth(label: Label): number {
    if (this.labels[label.height] !== label) throw new Error("wasm-writer: branch to a label that is not open");
    return this.labels.length - 1 - label.height;
  }
}

// Opcodes the translator uses.
export const OP = {
  unreachable: 0x00, drop: 0x1a, select: 0x1b,
  i32Load: 0x28, i64Load: 0x29, i32Load8U: 0x2d, i64Load8S: 0x30, i64Load8U: 0x31, i64Load16S: 0x32, i64Load16U: 0x33,
  i64Load32S: 0x34, i64Load32U: 0x35, i32Store: 0x36, i64Store: 0x37, i64Store8: 0x3c, i64Store16: 0x3d,
  i64Store32: 0x3e,
  i32Clz: 0x67, i32Ctz: 0x68, i32Popcnt: 0x69, i32Rotl: 0x77, i32Rotr: 0x78, i32Eqz: 0x45, i32Eq: 0x46, i32Ne: 0x47, i32LtS: 0x48, i32LtU: 0x49, i32GeS: 0x4e, i32GeU: 0x4f,
  i64Eqz: 0x50, i64Eq: 0x51, i64Ne: 0x52, i64LtS: 0x53, i64LtU: 0x54, i64GtS: 0x55, i64GtU: 0x56,
  i64GeS: 0x59, i64GeU: 0x5a,
  i32Add: 0x6a, i32Sub: 0x6b, i32Mul: 0x6c, i32DivS: 0x6d, i32DivU: 0x6e, i32RemS: 0x6f, i32RemU: 0x70,
  i32And: 0x71, i32Or: 0x72, i32Shl: 0x74, i32ShrS: 0x75, i32ShrU: 0x76,
  i64Clz: 0x79, i64Ctz: 0x7a, i64Popcnt: 0x7b, i64Add: 0x7c, i64Sub: 0x7d, i64Mul: 0x7e, i64DivS: 0x7f,
  i64DivU: 0x80, i64RemS: 0x81, i64RemU: 0x82, i64And: 0x83, i64Or: 0x84, i64Xor: 0x85, i64Shl: 0x86,
  i64ShrS: 0x87, i64ShrU: 0x88, i64Rotl: 0x89, i64Rotr: 0x8a,
  i32WrapI64: 0xa7, i64ExtendI32S: 0xac, i64ExtendI32U: 0xad,
  i64Extend8S: 0xc2, i64Extend16S: 0xc3, i64Extend32S: 0xc4,
  f64Load: 0x2b, f64Eq: 0x61, f64Ne: 0x62, f64Lt: 0x63, f64Gt: 0x64, f64Le: 0x65, f64Ge: 0x66,
  f64Sqrt: 0x9f, f64Add: 0xa0, f64Sub: 0xa1, f64Mul: 0xa2, f64Div: 0xa3,
  i32TruncF64S: 0xaa, i32TruncF64U: 0xab, i64TruncF64S: 0xb0, i64TruncF64U: 0xb1,
  f64ConvertI32S: 0xb7, f64ConvertI32U: 0xb8, f64ConvertI64S: 0xb9, f64ConvertI64U: 0xba,
  i64ReinterpretF64: 0xbd,
  i32AtomicLoad: 0x10, i32AtomicRmwAdd: 0x1e, // after the 0xfe prefix (Code.atomic)
} as const;

export interface FuncType {
  params: number[];
  results: number[];
}

/** A module: the header, then `sections` (id and body) in order. */
function moduleOf(sections: [number, Bytes][]): Uint8Array {
  const out = new Bytes().bytes([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);
  for (const [id, body] of sections) {
    out.byte(id);
    body.sized(out);
  }
  return out.view().slice();
}

/** The type section: `types` in order (their indices are 0, 1, ...). */
function typeSection(types: FuncType[]): Bytes {
  const sec = new Bytes().u32(types.length);
  for (const t of types) sec.byte(0x60).u32(t.params.length).bytes(t.params).u32(t.results.length).bytes(t.results);
  return sec;
}

/** The code section of a module's one function: its `locals` (run-length encoded by type) and `code`. */
function codeSection(locals: number[], code: Code): Bytes {
  const groups: [number, number][] = [];
  for (const t of locals) {
    const last = groups[groups.length - 1];
    if (last && last[1] === t) last[0]++;
    else groups.push([1, t]);
  }
  const body = new Bytes().u32(groups.length);
  for (const [n, t] of groups) body.u32(n).byte(t);
  body.bytes(code.view());
  const sec = new Bytes().u32(1);
  body.sized(sec);
  return sec;
}

/**
 * A module of one exported function `run`, importing the shared memory `env.memory` and the
 * functions `imports` (in order: their indices are 0, 1, ...; each distinct type is declared once,
 * run's included), and exporting the mutable i32 globals `counters` (global 0, 1, ..., starting
 * at 0). It does not import the function table it is called through (see tableCallerBytes).
 */
export function moduleBytes(opts: {
  imports: { name: string; type: FuncType }[];
  run: { type: FuncType; locals: number[]; code: Code };
  memoryMaxPages: number;
  counters?: string[];
}): Uint8Array {
  const counters = opts.counters ?? [];
  // Each distinct type once (imports of one type share it).
  const types: FuncType[] = [];
  const typeIndex = (t: FuncType): number => {
    const i = types.findIndex((u) => u.params.join() === t.params.join() && u.results.join() === t.results.join());
    return i >= 0 ? i : types.push(t) - 1;
  };
  const importSec = new Bytes().u32(opts.imports.length + 1);
  importSec.name("env").name("memory").byte(0x02).byte(0x03).u32(1).u32(opts.memoryMaxPages);
  for (const imp of opts.imports) importSec.name("env").name(imp.name).byte(0x00).u32(typeIndex(imp.type));
  const runType = typeIndex(opts.run.type);
  const sections: [number, Bytes][] = [[1, typeSection(types)], [2, importSec], [3, new Bytes().u32(1).u32(runType)]];
  if (counters.length > 0) {
    const globalSec = new Bytes().u32(counters.length);
    for (let i = 0; i < counters.length; i++) globalSec.byte(I32).byte(0x01).byte(0x41).byte(0x00).byte(0x0b); // mut i32 = i32.const 0
    sections.push([6, globalSec]);
  }
  const exportSec = new Bytes().u32(1 + counters.length).name("run").byte(0x00).u32(opts.imports.length);
  counters.forEach((name, i) => exportSec.name(name).byte(0x03).u32(i));
  sections.push([7, exportSec], [10, codeSection(opts.run.locals, opts.run.code)]);
  return moduleOf(sections);
}

/**
 * A module importing the function table `env.table` and exporting `call`: `type`'s parameters and
 * then a table index, a tail call to the function of type `type` at that index. Modules that call
 * through the table import this instead of the table: V8 (11, Node 20) keeps every instance that
 * imports a table alive for as long as the table is, and every instantiation and every change to
 * the table updates each such instance, so that a table imported by each of thousands of
 * translations made them never collected and each new one slower than the last (a boot under
 * `--jit all`: 4.5 s of `table.set`, measured in docs/PERFORMANCE.md). One instance of this
 * serves them all.
 */
export function tableCallerBytes(type: FuncType): Uint8Array {
  const callType = tableCallType(type);
  const code = new Code();
  for (let i = 0; i < callType.params.length; i++) code.get(i);
  code.returnCallIndirect(0).finish();
  return moduleOf([
    [1, typeSection([type, callType])],
    [2, new Bytes().u32(1).name("env").name("table").byte(0x01).byte(0x70).byte(0x00).u32(0)], // funcref, at least 0 entries
    [3, new Bytes().u32(1).u32(1)],
    [7, new Bytes().u32(1).name("call").byte(0x00).u32(0)],
    [10, codeSection([], code)],
  ]);
}

/** The type of the table caller's `call` for functions of `type`: their arguments, then the table index. */
export function tableCallType(type: FuncType): FuncType {
  return { params: [...type.params, I32], results: type.results };
}
