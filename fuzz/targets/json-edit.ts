/** Hostile edits of JSON documents (saved states, definitions): a path into the document and a value. */
import type { InputReader } from "../engine/input";

/** Every path into a JSON value, containers included. */
export function jsonPaths(v: unknown, at: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  out.push(at);
  if (Array.isArray(v)) v.forEach((x, i) => jsonPaths(x, [...at, i], out));
  else if (v && typeof v === "object") for (const [k, x] of Object.entries(v)) jsonPaths(x, [...at, k], out);
  return out;
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
  const all = jsonPaths(doc);
  const path = all[input.int(0, all.length - 1)]!;
  const value = hostileJson(input);
  if (path.length === 0) return value;
  let parent = doc as Record<string | number, unknown>;
  for (const k of path.slice(0, -1)) parent = parent[k] as Record<string | number, unknown>;
  const key = path[path.length - 1]!;
  if (input.int(0, 5) === 0 && !Array.isArray(parent)) delete parent[key];
  else parent[key] = value;
  return doc;
}
