// The engine itself: coverage guidance finds what blind mutation cannot (a four-byte magic
// checked one byte at a time), crashes are told from clean rejections, and a slow input is caught.
import { describe, test, expect } from "vitest";
import fc from "fast-check";
import { mutate } from "../../fuzz/engine/mutate";
import { prng } from "../prng";
import { BlockCoverage } from "../../fuzz/engine/coverage";
import { fuzz } from "../../fuzz/engine/fuzzer";
import { InputReader, InputWriter } from "../../fuzz/engine/input";
import { isOneLineError, type Target } from "../../fuzz/engine/target";

// The code under test, nested one byte at a time: each byte matched is a new block.
function magic(b: Uint8Array): void {
  if (b[0] === 0x46) {
    if (b[1] === 0x55) {
      if (b[2] === 0x5a) {
        if (b[3] === 0x5a) throw new TypeError("found the magic");
      }
    }
  }
  if (b[0] === 0x21) throw new Error("a clean one-line rejection");
}

const magicTarget: Target<null> = {
  name: "magic", about: "", maxLength: 16, setup: () => null, run: (b) => magic(b), rejects: isOneLineError, seeds: () => [new Uint8Array(4)],
};
const thisFile = (url: string) => url.includes("engine.test.ts");

describe("the fuzzing engine", () => {
  test("reaches a four-byte magic with coverage guidance, not without it", async () => {
    const coverage = new BlockCoverage(thisFile);
    try {
      const guided = await fuzz(magicTarget, null, { iterations: 200_000, seed: 3, coverage, untilCrash: true });
      expect(guided.crashes.map((c) => c.signature)).toEqual([expect.stringMatching(/^TypeError: found the magic/)]);
      expect(guided.crashes[0]!.input.subarray(0, 4)).toEqual(Uint8Array.of(0x46, 0x55, 0x5a, 0x5a));
      expect(guided.corpus).toBeGreaterThanOrEqual(4);
    } finally {
      coverage.close();
    }
    const blind = await fuzz(magicTarget, null, { iterations: 20_000, seed: 3 });
    expect(blind.crashes).toEqual([]);
  }, 60_000);

  test("a one-line Error is a clean rejection; engine errors and multi-line messages are not", () => {
    expect(isOneLineError(new Error("bad header: use a qcow2 image"))).toBe(true);
    expect(isOneLineError(new TypeError("x is undefined"))).toBe(false);
    expect(isOneLineError(new RangeError("Invalid typed array length"))).toBe(false);
    expect(isOneLineError(new Error("two\nlines"))).toBe(false);
    expect(isOneLineError("a string")).toBe(false);
  });

  test("an input slower than the time limit is a crash", async () => {
    const slow: Target<null> = {
      ...magicTarget, seeds: () => [Uint8Array.of(1)],
      run: (b) => { if (b[0] === 1) { const end = performance.now() + 30; while (performance.now() < end); } },
    };
    const stats = await fuzz(slow, null, { iterations: 5, timeLimitMs: 10 });
    expect(stats.crashes.map((c) => c.kind)).toEqual(["slow"]);
  });

  test("any program a seed writes reads back the same (property: fast-check)", () => {
    const op = fc.oneof(
      fc.record({ k: fc.constant("u8" as const), v: fc.integer({ min: 0, max: 255 }) }),
      fc.record({ k: fc.constant("u32" as const), v: fc.integer({ min: 0, max: 0xffffffff }) }),
      fc.record({ k: fc.constant("u64" as const), v: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }),
      fc.tuple(fc.integer({ min: -1000, max: 1000 }), fc.integer({ min: 0, max: 2 ** 31 }), fc.nat()).map(([lo, span, at]) => ({ k: "int" as const, lo, hi: lo + span, v: lo + (at % (span + 1)) })),
      fc.record({ k: fc.constant("blob" as const), v: fc.uint8Array({ maxLength: 40 }) }),
    );
    fc.assert(fc.property(fc.array(op, { maxLength: 20 }), (ops) => {
      const w = new InputWriter();
      for (const o of ops) {
        if (o.k === "u8") w.u8(o.v); else if (o.k === "u32") w.u32(o.v); else if (o.k === "u64") w.u64(o.v);
        else if (o.k === "int") w.int(o.lo, o.hi, o.v); else w.blob(64, o.v);
      }
      const r = new InputReader(w.finish());
      for (const o of ops) {
        const got = o.k === "u8" ? r.u8() : o.k === "u32" ? r.u32() : o.k === "u64" ? r.u64() : o.k === "int" ? r.int(o.lo, o.hi) : r.blob(64);
        expect(got).toEqual(o.v);
      }
      expect(r.done).toBe(true);
    }));
  });

  test("mutations stay within the target's length and leave their input alone (property: fast-check)", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 100 }), fc.integer({ min: 1, max: 256 }), fc.nat(), (input, other, max, seed) => {
      const before = input.slice();
      const out = mutate(input, prng(seed), max, other);
      expect(out).toBeInstanceOf(Uint8Array);
      expect(out.length).toBeLessThanOrEqual(max);
      expect(input).toEqual(before);
    }));
  });

  test("inputs read back as written, and past their end as zeros", () => {
    const bytes = new InputWriter().u8(7).u16(0x1234).u32(0xdeadbeef).int(10, 20, 15).int(0, 100_000, 99_999).blob(8, [1, 2, 3]).u64(2n ** 63n + 5n).finish();
    const r = new InputReader(bytes);
    expect([r.u8(), r.u16(), r.u32(), r.int(10, 20), r.int(0, 100_000)]).toEqual([7, 0x1234, 0xdeadbeef, 15, 99_999]);
    expect(Array.from(r.blob(8))).toEqual([1, 2, 3]);
    expect(r.u64()).toBe(2n ** 63n + 5n);
    expect(r.done).toBe(true);
    expect([r.u8(), r.u32(), r.bool()]).toEqual([0, 0, false]);
  });
});
