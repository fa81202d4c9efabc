// A thread running one hart of a VM whose memory another thread also runs (test/parallel/):
// it attaches its own Core to the shared memory, with its own decoded-code cache, and runs the
// hart (translated, as the caller says) until the hart halts.
import { parentPort, workerData } from "node:worker_threads";
import { Core } from "../../host/core/core";
import { TranslationTier, type JitMode } from "../../host/jit/tier";
import * as L from "../../host/core/layout";

const { module, memory, ramSize, harts, hart, jit, budget, napMs } = workerData as {
  module: WebAssembly.Module; memory: WebAssembly.Memory; ramSize: number; harts: number; hart: number; jit: JitMode; budget: number; napMs: number;
};
const nap = new Int32Array(new SharedArrayBuffer(4));
const core = new Core({ module, memory, ramSize, harts, codeCache: 1 });
const tier = jit === "off" ? null : new TranslationTier(core, jit);
parentPort!.postMessage({ ready: true });
const t0 = performance.now();
for (;;) {
  const exit = core.run(hart, budget);
  tier?.update();
  Atomics.wait(nap, 0, 0, napMs); // the other hart's thread may share this core
  if (exit === L.EXIT_HALT) break;
  if (exit !== L.EXIT_BUDGET) throw new Error(`hart ${hart}: unexpected exit ${exit}`);
}
parentPort!.postMessage({ ms: performance.now() - t0, instret: Number(core.instret(hart)), translated: tier?.stats().retired ?? 0, a2: Number(core.x(hart, 12)) });
