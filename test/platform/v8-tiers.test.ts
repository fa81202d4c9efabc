// The Node compile thread picks V8's tier for each translation (host/platform/node/v8-tiers.ts):
// seen from outside, through V8's own trace of what it compiled with which compiler.
import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { startupTiering } from "../../host/platform/node/v8-tiers";
import { buildBaremetal } from "../../guests/baremetal/build.mjs";

const built = (await buildBaremetal({ log: () => {} })).programs as Record<string, string>;

describe("V8's tier per translation", () => {
  it("reads the process's tiering flags as node was given them, V8's defaults otherwise", () => {
    expect(startupTiering([])).toBe("--wasm-dynamic-tiering --wasm-tier-up --liftoff --wasm-lazy-compilation");
    expect(startupTiering(["--no-liftoff", "--max-old-space-size=100", "--no_wasm_lazy_compilation", "--wasm-lazy-compilation", "--no-wasm-tier-up"]))
      .toBe("--wasm-dynamic-tiering --no-wasm-tier-up --no-liftoff --wasm-lazy-compilation");
  });

  it("compiles translations with Liftoff alone, V8 never tiering one up, and the hot one with TurboFan at once", () => {
    const run = spawnSync(process.execPath, ["--trace-wasm-compilation-times", "bin/wasmvisor.js", "boot", "--bios", "none", "--kernel", built["bench-int"]!, "--jit", "on", "--stats"],
      { encoding: "utf8", maxBuffer: 64 << 20 });
    expect(run.status).toBe(0);
    const out = run.stdout; // V8's trace and the guest's console; --stats on stderr
    expect(out).toMatch(/PASS: bench-int/);
    // "Compiled function 0x55d0c2a3b4c0#12 using Liftoff, took ..." per function compiled, by module.
    // V8 writes a line in pieces through its own buffer, and the guest's console (written by Node
    // straight to the pipe) can land between them: "Compiled function BENCH ...\nPASS: ...\n0x55d0...#12
    // using TurboFan" (once in ~10 runs on a translation's line, which then went uncounted).
    const byModule = new Map<string, Set<string>>();
    const functions = new Map<string, Set<string>>();
    for (const m of out.matchAll(/Compiled function (?:[^\n]*\n){0,4}?(0x[0-9a-f]+)#(\d+) using (Liftoff|TurboFan)/g)) {
      (byModule.get(m[1]!) ?? byModule.set(m[1]!, new Set()).get(m[1]!)!).add(m[3]!);
      (functions.get(m[1]!) ?? functions.set(m[1]!, new Set()).get(m[1]!)!).add(m[2]!);
    }
    // The translations are the modules of one function; the core has many.
    const translations = [...byModule].filter(([mod]) => functions.get(mod)!.size === 1).map(([, tiers]) => [...tiers].sort().join("+"));
    expect(translations.length).toBeGreaterThan(1);
    expect(translations).not.toContain("Liftoff+TurboFan");
    expect(translations).toContain("Liftoff");
    expect(translations).toContain("TurboFan");
    const optimized = Number(/(\d+) units optimized,/.exec(run.stderr)?.[1]);
    expect(optimized).toBeGreaterThan(0);
    // Each TurboFan-only translation is one the tier asked to optimize; not one each, though: V8's
    // module cache hands back a module still alive for the same bytes without compiling (a page
    // optimized, dropped and optimized again: 3 optimized, 2 in the trace, in ~1 run of 15).
    const turbofan = translations.filter((t) => t === "TurboFan").length;
    expect(turbofan).toBeGreaterThan(0);
    expect(turbofan).toBeLessThanOrEqual(optimized);
  }, 120_000);
});
