// The translator's WebAssembly writer: its LEB128 encodings, checked against WebAssembly itself
// (a module returning the constant must return exactly it), its label bookkeeping, and the
// table caller translations chain through (a real tail call; they are not kept alive by the table).
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { Code, I32, I64, OP, moduleBytes, tableCallerBytes } from "../../host/jit/wasm-writer";

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

  // A countdown that goes on through the table caller to the function at a table index (itself):
  // run(n, index) is 42 after n tail calls.
  const countdown = () => {
    const code = new Code();
    const zero = code.get(0).op(OP.i64Eqz).if_();
    code.i64(42).ret().end(zero);
    code.get(0).i64(1).op(OP.i64Sub).get(1).get(1).returnCall(0).finish();
    return moduleBytes({
      imports: [{ name: "go", type: { params: [I64, I32, I32], results: [I64] } }],
      run: { type: { params: [I64, I32], results: [I64] }, locals: [], code }, memoryMaxPages: 1,
    }) as Uint8Array<ArrayBuffer>;
  };
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });

  it("the table caller tail-calls the function at a table index with the arguments, the stack not growing", () => {
    const table = new WebAssembly.Table({ initial: 4, element: "anyfunc" });
    const go = new WebAssembly.Instance(new WebAssembly.Module(tableCallerBytes({ params: [I64, I32], results: [I64] }) as Uint8Array<ArrayBuffer>), { env: { table } }).exports.call;
    const run = new WebAssembly.Instance(new WebAssembly.Module(countdown()), { env: { memory, go } }).exports.run as (n: bigint, i: number) => bigint;
    table.set(3, run);
    expect(run(0n, 3)).toBe(42n);
    expect(run(5n, 3)).toBe(42n);
    expect(run(2_000_000n, 3)).toBe(42n); // calls that were not tail calls would overflow the stack long before
    table.set(3, null);
    expect(() => run(1n, 3)).toThrow(); // the index is what is called
  });

  it("a module made by moduleBytes is not kept alive by the table it is called through", async () => {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const table = new WebAssembly.Table({ initial: 1, element: "anyfunc" });
    const go = new WebAssembly.Instance(new WebAssembly.Module(tableCallerBytes({ params: [I64, I32], results: [I64] }) as Uint8Array<ArrayBuffer>), { env: { table } }).exports.call;
    const module = new WebAssembly.Module(countdown());
    const refs: WeakRef<WebAssembly.Instance>[] = [];
    for (let i = 0; i < 50; i++) {
      const instance = new WebAssembly.Instance(module, { env: { memory, go } });
      table.set(0, instance.exports.run as () => bigint);
      expect((table.get(0) as (n: bigint, i: number) => bigint)(3n, 0)).toBe(42n);
      refs.push(new WeakRef(instance));
    }
    table.set(0, null);
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 5));
      gc();
    }
    // V8 may hold on to the last one a while (it was called last); a module importing the table
    // kept all 50 (the bug this guards against).
    expect(refs.filter((r) => r.deref() !== undefined).length).toBeLessThanOrEqual(1);
  });

  it("refuses a branch to a label that is not open", () => {
    const c = new Code();
    const a = c.block();
    c.end(a);
    expect(() => c.br(a)).toThrow(/not open/);
  });
});
