// V8's tier for each translation, chosen by the compile thread (docs/TRANSLATION.md, "Two tiers").
//
// Left to itself, V8 compiles a module with Liftoff and recompiles each function with TurboFan
// once it has run a while: for a translation, ~1 ms of TurboFan a KiB, which most of a boot's code
// never repays (docs/PERFORMANCE.md). Node has no per-module switch, but V8 reads its tiering
// flags when it creates a module: set around one compile, they make that module Liftoff's for
// good, or TurboFan's at once when the tier asks for speed. The flags are the process's: while
// they are set (one compile's time), a module another thread creates gets them too. The core's
// module is the one that matters, and the compile thread keeps a copy of it alive, which V8's
// module cache hands to any thread compiling the same bytes.
import { setFlagsFromString } from "node:v8";
import type { CompileModule } from "../../jit/compiler";

const TIERING = ["wasm-dynamic-tiering", "wasm-tier-up", "liftoff", "wasm-lazy-compilation"];
const BASELINE = "--no-wasm-dynamic-tiering --no-wasm-tier-up --liftoff --no-wasm-lazy-compilation";
const OPTIMIZED = "--no-wasm-dynamic-tiering --no-wasm-tier-up --no-liftoff --no-wasm-lazy-compilation";
// An optimized translation's bytes end with this custom section: V8 shares one module among
// compiles of the same bytes, and would hand back the baseline one, still alive.
const OPTIMIZED_MARK = Uint8Array.from([0x00, 0x0a, 0x09, ...Array.from("optimized", (ch) => ch.charCodeAt(0))]);

/** The tiering flags as the process started (V8's defaults, or what node was given in `args`). */
export function startupTiering(args: readonly string[]): string {
  return TIERING.map((name) => {
    let on = true; // V8's default for all four
    for (const a of args) {
      const m = /^--(no-)?([\w-]+)$/.exec(a);
      if (m && m[2].replace(/_/g, "-") === name) on = !m[1];
    }
    return `--${on ? "" : "no-"}${name}`;
  }).join(" ");
}

/** A CompileModule that picks V8's tier, putting the process's flags back after each compile. */
export function v8TierCompiler(restore = startupTiering([...process.execArgv, ...(process.env.NODE_OPTIONS ?? "").split(/\s+/)])): CompileModule {
  return (wasm, optimize) => {
    let bytes = wasm;
    if (optimize) {
      bytes = new Uint8Array(wasm.length + OPTIMIZED_MARK.length);
      bytes.set(wasm);
      bytes.set(OPTIMIZED_MARK, wasm.length);
    }
    setFlagsFromString(optimize ? OPTIMIZED : BASELINE);
    try {
      return new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>);
    } finally {
      setFlagsFromString(restore);
    }
  };
}
