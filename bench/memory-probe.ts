// The memory suite's measuring process (dist/bench-memory.js, started by bench/memory.ts with
// --expose-gc): nothing else runs in it. It boots one Linux guest to warm the process up,
// records its resident set, boots `vms` more Linux guests on this thread to their shell
// prompts, records it again, and prints a ProbeResult as JSON.
import { existsSync, readFileSync } from "node:fs";
import { VirtMachine, type VirtConfig } from "../host/machine/virt";
import { loadCoreModule } from "../host/platform/node/core";
import { nodePlatform } from "../host/platform/node";
import { RAM_HOST } from "../host/core/layout";
import { READY, PROMPT } from "./boot";
import { PAGE_SIZE, countNonZeroPages, processMemory, wasmMemoryResidency } from "./procfs";
import type { ProbeRequest, ProbeResult } from "./memory";

const BOOT_TIMEOUT_MS = 300_000;
const SETTLE_MS = 2000;

/** A VM with its console on strings: what it printed, and keys waiting to be typed. */
class Guest {
  output = "";
  readonly input: number[] = [];
  ready = -1; // index in output just after READY, -1 until then
  readonly machine: VirtMachine;

  constructor(cfg: Omit<VirtConfig, "output" | "input">) {
    this.machine = new VirtMachine({
      ...cfg,
      output: (bytes) => { this.output += Buffer.from(bytes).toString("latin1"); },
      input: () => this.input.shift() ?? -1,
    });
  }
}

function gc(): void {
  const collect = (globalThis as { gc?: () => void }).gc;
  if (!collect) throw new Error("the memory probe needs node --expose-gc");
  collect();
}

const NAP = new Int32Array(new SharedArrayBuffer(4));

// One step of each guest (Enter typed for a guest that asks for it), a nap when none had work
// (their timers come due), then a turn of the event loop, as a pCPU's: the translation tier's
// compile thread answers through it.
async function round(guests: Guest[]): Promise<void> {
  let busy = false;
  for (const g of guests) {
    const r = g.machine.step();
    if (r.state === "stopped") throw new Error(`guest stopped: ${JSON.stringify(r.reason)}\n${g.output.slice(-2000)}`);
    if (r.state === "running") busy = true;
    if (g.ready < 0 && g.output.includes(READY)) {
      g.ready = g.output.indexOf(READY) + READY.length;
      g.input.push(13); // Enter: BusyBox asks for it before starting the shell
    }
  }
  if (!busy) Atomics.wait(NAP, 0, 0, 1);
  await new Promise((resolve) => setImmediate(resolve));
}

// Round-robin on this thread until every guest shows its prompt, then leave them there.
async function bootToPrompt(guests: Guest[]): Promise<void> {
  const t0 = performance.now();
  let waiting = [...guests];
  while (waiting.length) {
    await round(waiting);
    waiting = waiting.filter((g) => g.ready < 0 || !PROMPT.test(g.output.slice(g.ready)));
    if (performance.now() - t0 > BOOT_TIMEOUT_MS) throw new Error(`guests did not reach their prompts within ${BOOT_TIMEOUT_MS / 1000} s`);
  }
}

// Run the guests, idle at their prompts, a while longer: compiles V8 is still doing in the
// background (a translation tiering up holds megabytes while it compiles) end before the count.
async function settle(guests: Guest[]): Promise<void> {
  const until = performance.now() + SETTLE_MS;
  while (performance.now() < until) await round(guests);
}

async function probe(req: ProbeRequest): Promise<ProbeResult> {
  const module = loadCoreModule();
  const kernel = { name: req.kernel, bytes: new Uint8Array(readFileSync(req.kernel)) };
  const initrd = { name: req.initrd, bytes: new Uint8Array(readFileSync(req.initrd)) };
  const ramSize = req.ramMiB * 2 ** 20;

  // With the tier, the guests share this thread's compile thread, as the VMs of a pCPU do.
  const jitCompiler = req.jit === "on" ? nodePlatform.jitCompiler?.() : undefined;
  const config = { module, memory: ramSize, bios: "builtin" as const, kernel, initrd, append: "console=ttyS0", virtioConsole: true, jit: req.jit, jitCompiler };
  // A first guest, booted before the baseline, pays the process's one-time costs (the core's
  // optimized code, V8's and Node's warm-up, the compile thread): they belong to the hypervisor,
  // not to each VM.
  const warmup = new Guest(config);
  await bootToPrompt([warmup]);
  await settle([warmup]);
  warmup.output = "";
  gc();
  const before = processMemory();
  const heapBefore = process.memoryUsage();
  const guests: Guest[] = [];
  for (let i = 0; i < req.vms; i++) guests.push(new Guest(config));
  await bootToPrompt(guests);
  await settle(guests);
  for (const g of guests) g.output = ""; // the console log is the probe's, not the VM's
  gc();
  const after = processMemory();
  const heapAfter = process.memoryUsage();

  // Then each VM's own memory. The probe marker (in the spare page past RAM) is written after
  // the resident set was read, so it does not count. Without a pagemap (some sandboxes hide it),
  // pages holding data are fewer than those touched: the overhead computed from them is an upper bound.
  const method: ProbeResult["method"] = existsSync("/proc/self/pagemap") ? "pagemap" : "nonzero-pages";
  let guestRam = 0, coreRegion = 0, pages = 0, wasmBytes = 0;
  for (const g of guests) {
    const jit = g.machine.stats().jit;
    pages += jit?.live ?? 0;
    wasmBytes += jit?.liveWasmBytes ?? 0;
    const mem = g.machine.core.memory;
    if (method === "pagemap") {
      const resident = wasmMemoryResidency(mem, RAM_HOST, ramSize, mem.buffer.byteLength - PAGE_SIZE);
      guestRam += resident.ram;
      coreRegion += resident.belowRam;
    } else {
      guestRam += countNonZeroPages(g.machine.core.ram) * PAGE_SIZE;
      coreRegion += countNonZeroPages(new Uint8Array(mem.buffer, 0, RAM_HOST)) * PAGE_SIZE;
    }
  }
  return {
    method,
    rss_before: before.rss,
    rss_after: after.rss,
    page_tables: after.pageTables - before.pageTables,
    js_heap: heapAfter.heapUsed - heapBefore.heapUsed,
    js_heap_reserved: Math.max(0, heapAfter.heapTotal - heapBefore.heapTotal - (heapAfter.heapUsed - heapBefore.heapUsed)),
    guest_ram_touched: guestRam,
    core_region_touched: coreRegion,
    ...(req.jit === "on" ? { translations: { pages, wasm_bytes: wasmBytes } } : {}),
  };
}

process.stdout.write(JSON.stringify(await probe(JSON.parse(process.argv[2]) as ProbeRequest)) + "\n");
process.exit(0); // the compile thread is unref'd, but say so
