// The translator's WebAssembly writer: its LEB128 encodings, checked against WebAssembly itself
// (a module returning the constant must return exactly it), and its label bookkeeping.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { Code, I64, moduleBytes } from "../../host/jit/wasm-writer";

function constant(v: number | bigint): bigint {
  const code = new Code();
  code.i64(v).finish();
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
  const wasm = moduleBytes({ imports: [], run: { type: { params: [], results: [I64] }, locals: [], code }, memoryMaxPages: 1 });
  const table = new WebAssembly.Table({ initial: 0, element: "anyfunc" });
  const run = new WebAssembly.Instance(new WebAssembly.Module(wasm as Uint8Array<ArrayBuffer>), { env: { memory, table } }).exports.run as () => bigint;
  return run();
}

describe("wasm-writer", () => {
  it("encodes i64 constants given as numbers or BigInts exactly", () => {
    for (const v of [0, 1, -1, 63, 64, -64, -65, 0x3fffffff, 0x40000000, -0x40000000, -0x40000001, 2 ** 31, -(2 ** 31), 0xffffffff, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER]) {
      expect(constant(v), String(v)).toBe(BigInt(v));
    }
    for (const v of [-(1n << 63n), (1n << 63n) - 1n, 1n << 62n]) expect(constant(v)).toBe(v);
    fc.assert(fc.property(fc.maxSafeInteger(), (v) => constant(v) === BigInt(v)), { numRuns: 300 });
    fc.assert(fc.property(fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n }), (v) => constant(v) === v), { numRuns: 300 });
  });

  it("refuses a branch to a label that is not open", () => {
    const c = new Code();
    const a = c.block();
    c.end(a);
    expect(() => c.br(a)).toThrow(/not open/);
  });
});
