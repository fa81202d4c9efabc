// The worker thread of one pCPU: the control plane (Hypervisor) drives its Pcpu through Comlink.
import { parentPort, workerData } from "node:worker_threads";
import { setFlagsFromString } from "node:v8";
import * as Comlink from "comlink";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { Pcpu } from "../../hv/pcpu";
import { nodePlatform } from "./index";

// V8 drops the bytecode of functions that have not run for a few of its full collections (one
// every 30-100 ms while VMs come and go), and compiles it again at their next call: a restore,
// which runs once in a while, ran at half speed with its code rebuilt each time (to running:
// 5.6-6.9 ms, against 2.8-3.3 ms with the bytecode kept; docs/PERFORMANCE.md). The flag is the
// process's: the control plane's rare paths keep theirs too. What it keeps is code that has run,
// once per thread, not per VM.
setFlagsFromString("--no-flush-bytecode");

// The translation tier's compile thread starts with this thread rather than with its first VM: a
// VM restored or migrated here finds it ready, its first hot pages translated without waiting for
// a worker's start (50-100 ms on a busy machine). For `boot`
// and `start` the launcher decided: it started it already (its port is in workerData), or, the
// tier off, says none (null; a VM that turns it on after all gets one at its build).
const launched = (workerData as { compileThread?: unknown } | null)?.compileThread;
if (launched !== null && nodePlatform.defaultJit?.() === "on") nodePlatform.jitCompiler?.();

if (parentPort) Comlink.expose(new Pcpu(nodePlatform), nodeEndpoint(parentPort));
