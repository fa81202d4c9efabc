// Node adapter: find and compile build/core.wasm once per process (workers compile their own).
import { readFileSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { compileCore } from "../../core/core";

let cached: WebAssembly.Module | undefined;

/** The package root: the nearest directory above this file with build.js in it. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, "build.js")) && existsSync(join(dir, "package.json"))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error("cannot find the wasmvisor package root (build.js)");
    dir = up;
  }
}

export function loadCoreModule(): WebAssembly.Module {
  if (cached) return cached;
  const file = join(packageRoot(), "build/core.wasm");
  if (!existsSync(file)) throw new Error(`${file} is missing: run 'npm run build' first`);
  cached = compileCore(readFileSync(file));
  return cached;
}
