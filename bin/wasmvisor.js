#!/usr/bin/env -S node --v8-pool-size=2
// Entry point: the bundled CLI lives in dist/ (built by `npm run build`).
//
// V8's pool of helper threads (background compiles, the GC's helpers) is 4 by default, whatever
// the cores; the threads that matter here are the vCPUs' and the translation tier's own. On two
// cores, a Linux boot to its prompt took 0.70 s with 4 helpers and 0.68 s with 2 or 1 (10 boots
// each, docs/PERFORMANCE.md): the helpers' JavaScript recompiles took the core the vCPU needed.
// The pool is fixed when Node starts, so the flag is here (`node bin/wasmvisor.js` runs without it).
import { existsSync, readdirSync } from "node:fs";
import { setPriority } from "node:os";
import { fileURLToPath } from "node:url";

// V8 starts its helper threads (its background compilers, the GC's helpers) with the process;
// the threads started from here on run vCPUs (pCPU workers) and the translation tier. With few
// cores, V8 compiling several jobs at once (the translator's and the VMM's own JavaScript) took
// the core a vCPU was running on (docs/PERFORMANCE.md): lowered, they get what vCPUs leave.
// Linux only (a thread's nice value; elsewhere, or not permitted, nothing changes).
const HELPER_NICE = 10;
if (process.platform === "linux") {
  try {
    for (const tid of readdirSync("/proc/self/task").map(Number)) if (tid !== process.pid) setPriority(tid, HELPER_NICE);
  } catch {
    /* as they were */
  }
}

const cli = new URL("../dist/cli.js", import.meta.url);
if (!existsSync(fileURLToPath(cli))) {
  process.stderr.write("wasmvisor: not built yet: run 'npm run build' in the wasmvisor directory\n");
  process.exit(1);
}
// A VM's pCPU thread takes about 60 ms to start (Node's worker bootstrap, then its bundle): for
// the commands that boot one, start it now, while this thread loads the CLI. The Node platform
// takes it for its first pCPU (host/platform/node startPcpu). Its compile thread too (the
// translation tier's), whose start otherwise took the second core while the guest's firmware and
// early kernel ran (docs/PERFORMANCE.md); the pCPU thread takes its port. Left out when the
// command line or WASMVISOR_JIT turns the tier off (a guess on the raw arguments: if wrong, a
// thread idles or the pCPU thread starts its own).
if (process.argv[2] === "boot" || process.argv[2] === "start") {
  const { Worker, MessageChannel } = await import("node:worker_threads");
  const args = process.argv.slice(3);
  const at = args.findIndex((a) => a === "--jit" || a === "-jit");
  const jit = at >= 0 ? args[at + 1] : args.find((a) => /^--?jit=/.test(a))?.replace(/^--?jit=/, "") ?? process.env.WASMVISOR_JIT;
  let options = { workerData: { compileThread: null } }; // null: none, the tier is off
  if (jit !== "off") {
    const { port1, port2 } = new MessageChannel();
    new Worker(new URL("../dist/jit-worker.js", import.meta.url), { workerData: { port: port2 }, transferList: [port2] }).unref();
    options = { workerData: { compileThread: port1 }, transferList: [port1] };
  }
  // Its young generation as host/platform/node's PCPU_YOUNG_GENERATION_MB says.
  const worker = new Worker(new URL("../dist/pcpu-worker.js", import.meta.url), { ...options, resourceLimits: { maxYoungGenerationSizeMb: 6 } });
  worker.unref(); // until taken: a command that never runs a VM exits as before
  const early = { worker, failed: false };
  worker.once("error", () => { early.failed = true; });
  worker.once("exit", () => { early.failed = true; });
  globalThis[Symbol.for("wasmvisor.earlyPcpu")] = early;
}
await import(cli.href);
