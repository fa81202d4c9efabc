/**
 * The fuzzer's files: fuzz/corpus/<target>/ the committed seed corpus (the targets' seed
 * programs), fuzz/crashes/<target>/ inputs that crashed (committed with their fix: the
 * regression tests replay them), fuzz/.corpus/<target>/ what runs found (not committed).
 * Files are named by a hash of their bytes, so the same input is never kept twice.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The fuzz/ directory, found upward from this file (it runs from fuzz/engine/ and from dist/). */
export function fuzzDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, "fuzz", "engine"))) return join(dir, "fuzz");
    const up = dirname(dir);
    if (up === dir) throw new Error("cannot find the fuzz/ directory above " + fileURLToPath(import.meta.url));
    dir = up;
  }
}

export type CorpusKind = "corpus" | "crashes" | ".corpus";

export function corpusPath(kind: CorpusKind, target: string): string {
  return join(fuzzDir(), kind, target);
}

export function inputName(input: Uint8Array): string {
  return createHash("sha256").update(input).digest("hex").slice(0, 16);
}

export function readInputs(kind: CorpusKind, target: string): { name: string; input: Uint8Array }[] {
  const dir = corpusPath(kind, target);
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((f) => f.endsWith(".bin")).sort()
    .map((f) => ({ name: f, input: new Uint8Array(readFileSync(join(dir, f))) }));
}

/** Keep `input` under fuzz/<kind>/<target>/; returns its path. */
export function saveInput(kind: CorpusKind, target: string, input: Uint8Array, note?: string): string {
  const dir = corpusPath(kind, target);
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${inputName(input)}.bin`);
  writeFileSync(file, input);
  if (note !== undefined) writeFileSync(file.replace(/\.bin$/, ".txt"), note + "\n");
  return file;
}
