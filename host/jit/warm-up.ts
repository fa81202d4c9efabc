// The compile thread's warm-up (docs/PERFORMANCE.md, "Warming the engine"): while the first VM is
// still being built, run a small RISC-V program on a throw-away core and translate it, so that
// V8 has compiled the hot parts of the core and of the translator before a guest needs them.
//
// Left cold, a guest's first ~50 ms ran the core's Liftoff code (about a quarter of its
// optimized speed) while V8 compiled the run loop for speed, and the first pages translated took
// 15-25 ms each (the translator's JavaScript not compiled yet) against ~5 ms later. V8 shares a
// module's compiled code among the threads that compile the same bytes, so the run loop's
// optimized code made here is the one every pCPU thread of the process runs.

import * as L from "../core/layout";
import { Core } from "../core/core";
import { WARM_UP_PROGRAM } from "./warm-up-program";
import { TranslationTier } from "./tier";
import type { CompileModule } from "./compiler";

export interface WarmUp {
  /** The core that ran it (its hart 0 ends in S-mode, in the program's loop). */
  core: Core;
  /** Instructions interpreted, then run with the program's pages translated. */
  interpreted: number;
  translated: number;
  /** Translations made of the program's code. */
  translations: number;
}

/**
 * Warm the engine up for `module` (the core's): run the program interpreted for `interpretMs`,
 * then translated for `translateMs`, every page it runs translated at once on this thread and
 * compiled by `compile` (the compile thread's own, so that the same path warms up).
 */
export function warmUp(module: WebAssembly.Module, { compile, interpretMs = 6, translateMs = 10 }: { compile?: CompileModule; interpretMs?: number; translateMs?: number } = {}): WarmUp {
  const core = new Core({ module, ramSize: 1 << 20 });
  core.phys(L.RAM_GPA, WARM_UP_PROGRAM.length)!.set(WARM_UP_PROGRAM); // (warm-up.s)
  core.setPc(0, L.RAM_GPA);
  const runFor = (ms: number, after: () => void): number => {
    let n = 0;
    for (const until = performance.now() + ms; performance.now() < until;) {
      core.run(0, 20_000);
      n += core.executed(0);
      after();
    }
    return n;
  };
  const interpreted = runFor(interpretMs, () => {});
  const tier = new TranslationTier(core, "all", undefined, compile);
  const translated = runFor(translateMs, () => tier.update());
  tier.close();
  return { core, interpreted, translated, translations: tier.stats().translations };
}
