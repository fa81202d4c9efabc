// Driving the board (VirtMachine) on the test's own thread, step by step: for tests of the
// board and its devices, and the CPU benchmark. VMs proper run on a pCPU (host/hv/pcpu.ts),
// the only run loop in the VMM.
import { VirtMachine, type Image, type StopReason, type VirtConfig } from "../host/machine/virt";
import type { JitMode } from "../host/jit/tier";
import { nodePlatform } from "../host/platform/node";

/**
 * The translation tier's mode for guests the tests run: WASMVISOR_JIT (off, on, all), so that the
 * whole suite can be run under the translator (docs/TRANSLATION.md).
 */
export const TEST_JIT: JitMode = nodePlatform.defaultJit!();

/**
 * How many times longer a guest takes to do something under TEST_JIT: "all" translates every
 * page as it first runs, and again each time the code cache lets it go (a Linux boot 13-19 s
 * against about 1; docs/TRANSLATION.md). Waits for a guest scale by it, nothing else.
 */
export const GUEST_SLOWDOWN = TEST_JIT === "all" ? 10 : 1;

/** Step `m` until the guest stops (throws after `timeoutSeconds` of wall time); idle steps sleep. */
export function runToStop(m: VirtMachine, timeoutSeconds = 60): StopReason {
  const t0 = performance.now();
  const nap = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    const r = m.step();
    if (r.state === "stopped") return r.reason;
    if ((performance.now() - t0) / 1000 > timeoutSeconds) {
      throw new Error(`guest did not stop within ${timeoutSeconds} s (pc 0x${m.core.pc(0).toString(16)})`);
    }
    if (r.state === "idle") Atomics.wait(nap, 0, 0, Math.min(r.sleepSeconds * 1000, 10));
  }
}

export interface BareMetalRun {
  reason: StopReason;
  /** Console output (HTIF or UART), as Latin-1 text. */
  output: string;
  instructions: number;
  seconds: number;
}

/** Run a bare-metal program (started in M-mode, as with --bios none) to its end. */
export function runBareMetal(
  module: WebAssembly.Module,
  program: Image,
  opts: { memory?: number; timeoutSeconds?: number; drives?: VirtConfig["drives"]; jit?: JitMode } = {},
): BareMetalRun & { machine: VirtMachine } {
  let output = "";
  const m = new VirtMachine({
    module,
    memory: opts.memory ?? 64 << 20,
    bios: null,
    kernel: program,
    drives: opts.drives,
    jit: opts.jit ?? TEST_JIT,
    output: (b) => { for (const c of b) output += String.fromCharCode(c); },
  });
  const t0 = performance.now();
  const reason = runToStop(m, opts.timeoutSeconds ?? 120);
  return { reason, output, instructions: m.core.totalInstret(), seconds: (performance.now() - t0) / 1000, machine: m };
}
