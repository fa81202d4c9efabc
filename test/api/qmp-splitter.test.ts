// QMP's input splitter (host/api/qmp.ts) on arbitrary input: valid messages cut anywhere come out
// whole and in order; anything else gives errors, never an exception, and memory stays bounded.
import { describe, test, expect } from "vitest";
import fc from "fast-check";
import { JsonSplitter } from "../../host/api/qmp";

/** `text` cut at the given points. */
function cut(text: string, points: number[]): string[] {
  const at = [...new Set(points.map((p) => p % (text.length + 1)))].sort((a, b) => a - b);
  const out: string[] = [];
  let prev = 0;
  for (const p of at) { out.push(text.slice(prev, p)); prev = p; }
  out.push(text.slice(prev));
  return out;
}

describe("JsonSplitter", () => {
  test("JSON objects, with or without newlines between them, cut into any chunks, come out as sent", () => {
    fc.assert(fc.property(
      fc.array(fc.dictionary(fc.string(), fc.jsonValue()), { minLength: 1, maxLength: 8 }),
      fc.array(fc.constantFrom("", "\n", "\r\n", " ", "\t")),
      fc.array(fc.nat()),
      (objects, seps, points) => {
        const text = objects.map((o, i) => JSON.stringify(o) + (seps[i] ?? "")).join("");
        const s = new JsonSplitter();
        const got = cut(text, points).flatMap((chunk) => s.push(chunk));
        expect(got).toEqual(objects.map((o) => ({ json: JSON.parse(JSON.stringify(o)) })));
      },
    ), { numRuns: 300 });
  });

  test("arbitrary input never throws, and what it keeps stays bounded", () => {
    fc.assert(fc.property(
      fc.array(fc.oneof(fc.string({ maxLength: 64 }), fc.constantFrom("{", "}", "[", "]", '"', "\\", "\n", '{"execute":'), fc.string({ unit: "binary", maxLength: 64 })), { maxLength: 200 }),
      (chunks) => {
        const s = new JsonSplitter();
        for (const c of chunks) {
          for (const m of s.push(c)) expect("json" in m || typeof m.error === "string").toBe(true);
          expect((s as unknown as { buf: string }).buf.length).toBeLessThanOrEqual((1 << 20) + 64 * 2);
        }
      },
    ), { numRuns: 300 });
  });

  test("an endless string or nesting is cut at 1 MiB with an error, and the next message is read", () => {
    const s = new JsonSplitter();
    const out = [...s.push('{"a": "'), ...Array.from({ length: 20 }, () => s.push("x".repeat(100_000))).flat()];
    expect(out.filter((m) => "error" in m && /at most 1048576 bytes/.test(m.error))).toHaveLength(1);
    const deep = s.push(`\n${"[".repeat(200)}${"]".repeat(200)}\n{"execute":"query-status"}\n`);
    expect(deep.at(-1)).toEqual({ json: { execute: "query-status" } });
  });
});
