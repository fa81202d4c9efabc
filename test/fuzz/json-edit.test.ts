// The paths hostile JSON edits pick from: counted and walked (a device state has thousands), they
// are the pre-order listing of every place in the document, so an input picks the same place as
// when they were listed.
import { describe, test, expect } from "vitest";
import fc from "fast-check";
import { countJsonPaths, jsonPathAt } from "../../fuzz/targets/json-edit";

/** Every path into `v` in pre-order: the reference. */
function listPaths(v: unknown, at: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  out.push(at);
  if (Array.isArray(v)) v.forEach((x, i) => listPaths(x, [...at, i], out));
  else if (v && typeof v === "object") for (const [k, x] of Object.entries(v)) listPaths(x, [...at, k], out);
  return out;
}

describe("JSON paths for hostile edits", () => {
  test("are the pre-order listing of a document's places (property: fast-check)", () => {
    fc.assert(fc.property(fc.jsonValue(), (v) => {
      const all = listPaths(v);
      expect(countJsonPaths(v)).toBe(all.length);
      expect(Array.from({ length: all.length }, (_, n) => jsonPathAt(v, n))).toEqual(all);
    }));
  });

  test("of a saved state: nested objects, arrays of words, strings", () => {
    const state = { kind: "ethoc", version: 1, regs: [1, 2, 3], queues: [{ num: 8, ready: true, addr: { lo: 1, hi: 0 } }, { num: 0 }], bytes: "AAAA" };
    const all = listPaths(state);
    expect(all.length).toBe(17);
    expect(all.map((_, n) => jsonPathAt(state, n))).toEqual(all);
    expect(jsonPathAt(state, 12)).toEqual(["queues", 0, "addr", "lo"]);
  });
});
