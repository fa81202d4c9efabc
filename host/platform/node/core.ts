// Node adapter: find and compile build/core.wasm once per process (workers compile their own).
import { readFileSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { compileCore } from "../../core/core";

let cached: WebAssembly.Module | undefined;
let root: string | undefined;

/**
 * The package root: the nearest directory above this file whose package.json is wasmvisor's (the
 * repository, or the installed package under node_modules); build/ and dist/ are there.
 */
export function packageRoot(): string {
  if (root) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (isWasmvisor(join(dir, "package.json"))) return (root = dir);
    const up = dirname(dir);
    if (up === dir) throw new Error("cannot find the wasmvisor package root (its package.json) above this module");
    dir = up;
  }
}

function isWasmvisor(file: string): boolean {
  try {
    return (JSON.parse(readFileSync(file, "utf8")) as { name?: unknown }).name === "wasmvisor";
  } catch {
    return false; // none here, or not JSON
  }
}

export function loadCoreModule(): WebAssembly.Module {
  if (cached) return cached;
  const file = join(packageRoot(), "build/core.wasm");
  if (!existsSync(file)) throw new Error(`${file} is missing: run 'npm run build' first`);
  cached = compileCore(readFileSync(file));
  return cached;
}
