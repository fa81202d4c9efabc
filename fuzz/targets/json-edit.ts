/** Hostile edits of JSON documents (saved states, definitions): a path into the document and a value. */
import type { InputReader } from "../engine/input";

// The paths into a JSON value, containers included, in pre-order: the value itself, then each
// array item or object field (in Object.keys order) with everything in it. A device's state has
// thousands of them, so they are counted and walked rather than listed.

/** How many paths there are into `v`. */
export function countJsonPaths(v: unknown): number {
  let n = 1;
  if (Array.isArray(v)) for (const x of v) n += countJsonPaths(x);
  else if (v && typeof v === "object") for (const k of Object.keys(v)) n += countJsonPaths((v as Record<string, unknown>)[k]);
  return n;
}

/** Path number `n` (0 <= n < countJsonPaths(v)) into `v`. */
export function jsonPathAt(v: unknown, n: number): (string | number)[] {
  const path: (string | number)[] = [];
  while (n > 0) {
    n--; // past `v` itself, into what it holds
    const keys: (string | number)[] = Array.isArray(v) ? v.map((_, i) => i) : Object.keys(v as object);
    for (const k of keys) {
      const x = (v as Record<string | number, unknown>)[k];
      const inside = countJsonPaths(x);
      if (n < inside) {
        path.push(k);
        v = x;
        break;
      }
      n -= inside;
    }
  }
  return path;
}

export function hostileJson(input: InputReader): unknown {
  switch (input.int(0, 11)) {
    case 0: return null;
    case 1: return input.pick([0, -1, 1, 2 ** 53, 2 ** 64, -(2 ** 31), 0.5, 1e308, 4096, 65536, 2 ** 32 - 1, 2 ** 32]);
    case 2: return input.u32();
    case 3: return input.pick(["", "0", "-1", "18446744073709551615", "18446744073709551616", "0x10", "AAAA", "=", "a".repeat(5000)]);
    case 4: return input.bool();
    case 5: return [];
    case 6: return {};
    case 7: return Array.from({ length: input.int(0, 70) }, () => input.u8());
    case 8: return { kind: "x", version: 1 };
    case 9: return String(input.u32() * 2 ** 20 + input.u32());
    case 10: return input.int(0, 70);
    default: return new TextDecoder().decode(input.blob(32));
  }
}

/** Set (or delete) one place of `doc` to a hostile value; returns the document (a new one if the root was replaced). */
export function editJson(doc: unknown, input: InputReader): unknown {
  const path = jsonPathAt(doc, input.int(0, countJsonPaths(doc) - 1));
  const value = hostileJson(input);
  if (path.length === 0) return value;
  let parent = doc as Record<string | number, unknown>;
  for (const k of path.slice(0, -1)) parent = parent[k] as Record<string | number, unknown>;
  const key = path[path.length - 1]!;
  if (input.int(0, 5) === 0 && !Array.isArray(parent)) delete parent[key];
  else parent[key] = value;
  return doc;
}
