// The translation tier's compile thread on Node (host/jit/compiler.ts): one per pCPU thread,
// choosing V8's tier for each translation (v8-tiers.ts).
import { workerData, type MessagePort } from "node:worker_threads";
import { serveJitCompiles } from "../../jit/compiler";
import { warmUp } from "../../jit/warm-up";
import { loadCoreModule } from "./core";
import { v8TierCompiler } from "./v8-tiers";

// Kept alive while the thread sets V8's flags: another thread compiling the core gets this copy
// from V8's module cache rather than one made under a translation's flags.
export const core = loadCoreModule();

// Idle until the guest's first page gets hot: warm V8 up for the core's run loop (shared with the
// pCPU threads through that cache) and for the translator. An optimization only: if it fails,
// the thread serves as it is.
const compile = v8TierCompiler();
try {
  warmUp(core, { compile });
} catch {
  /* cold */
}

// Requests and replies go over the port the pCPU's thread made for them (it polls its end).
const port = (workerData as { port: MessagePort }).port;
serveJitCompiles({ postMessage: (m) => port.postMessage(m), onRequest: (h) => port.on("message", h) }, compile);
