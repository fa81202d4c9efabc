// The engine itself: coverage guidance finds what blind mutation cannot (a four-byte magic
// checked one byte at a time), crashes are told from clean rejections, and a slow input is caught.
import { describe, test, expect } from "vitest";
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
      const guided = await fuzz(magicTarget, null, { iterations: 200_000, seed: 3, coverage });
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
