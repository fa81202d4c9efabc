// Memory suite: host memory a VM costs beyond the guest RAM it has touched. Each run is a fresh
// process (bench/memory-probe.ts) that boots one guest to warm up, then `vms` more Linux guests
// to their shell prompts; per VM:
//
//   overhead = (RSS growth + page-table growth - guest RAM pages resident) / vms
//
// Everything else counts against the VM: its core region (hart blocks, TLBs, decoded-code
// cache: all of its WebAssembly.Memory below RAM_HOST), device models, JS heap. The process's
// one-time costs (the core's compiled code, V8's warm-up) are paid by the warm-up guest, before
// the baseline: they are the hypervisor's, whatever the number of VMs.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { packageRoot } from "../host/platform/node/core";
import { PCPU_YOUNG_GENERATION_MB } from "../host/platform/node";
import { median } from "../host/util/stats";
import type { Guest } from "./boot";

export interface ProbeRequest {
  kernel: string;
  initrd: string;
  vms: number;
  ramMiB: number;
  /** The translation tier: "on" counts what its translations cost (V8's code for them lives outside the VM's region). */
  jit: "off" | "on";
}

/** What one probe process measured, in bytes, summed over its VMs. */
export interface ProbeResult {
  /** How guest RAM touched was counted: resident pages, or (fallback) non-zero pages. */
  method: "pagemap" | "nonzero-pages";
  rss_before: number;
  rss_after: number;
  page_tables: number;
  js_heap: number;
  /**
   * Growth of the JS heap's pages beyond its live objects: V8 enlarges its young generation when
   * the guests allocate fast (several booting at once). A process-wide cost, paid once: shown
   * apart so it does not pass for the VMs' own. Absent in runs before 2026-12-06.
   */
  js_heap_reserved?: number;
  guest_ram_touched: number;
  core_region_touched: number;
  /** With the translation tier: its live translations (pages) and their WebAssembly, over the VMs measured. */
  translations?: { pages: number; wasm_bytes: number };
}

/** Per VM, in MiB. */
export interface MemoryBreakdown {
  overhead_mib: number;
  core_region_mib: number;
  js_heap_mib: number;
  /** See ProbeResult.js_heap_reserved. */
  js_heap_reserve_mib: number;
  page_tables_mib: number;
  /** The rest of the overhead: device models, buffers, code, allocator slack. */
  other_mib: number;
  guest_ram_touched_mib: number;
}

export interface MemoryResult {
  /** The translation tier of the run; absent in runs before 2026-12-06 (interpreted). */
  jit?: "off" | "on";
  overhead_mib: number;
  vms_per_run: number;
  guest_ram_mib: number;
  method: ProbeResult["method"];
  /** The run with the median overhead. */
  per_vm: MemoryBreakdown;
  runs: ProbeResult[];
  /** With the translation tier: the median run's live translations, over its VMs. */
  translations?: ProbeResult["translations"];
  /** The same measured with `--jit on` (absent before 2026-12-06). */
  translated?: MemoryResult;
}

const MiB = 2 ** 20;

export function breakdown(p: ProbeResult, vms: number): MemoryBreakdown {
  const perVm = (bytes: number) => bytes / vms / MiB;
  const overhead = perVm(p.rss_after - p.rss_before + p.page_tables - p.guest_ram_touched);
  const core = perVm(p.core_region_touched), heap = perVm(p.js_heap), reserve = perVm(p.js_heap_reserved ?? 0), tables = perVm(p.page_tables);
  return {
    overhead_mib: overhead, core_region_mib: core, js_heap_mib: heap, js_heap_reserve_mib: reserve, page_tables_mib: tables,
    other_mib: overhead - core - heap - reserve - tables, guest_ram_touched_mib: perVm(p.guest_ram_touched),
  };
}

/** Interpreted, then with the translation tier. */
export function memorySuite(g: Guest, runs: number, vms: number, log: (s: string) => void): MemoryResult {
  return { ...memoryRuns(g, runs, vms, "off", log), translated: memoryRuns(g, runs, vms, "on", log) };
}

function memoryRuns(g: Guest, runs: number, vms: number, jit: "off" | "on", log: (s: string) => void): MemoryResult {
  const req: ProbeRequest = { kernel: g.kernel, initrd: g.initramfs, vms, ramMiB: 256, jit };
  const probes: ProbeResult[] = [];
  for (let i = 0; i < runs; i++) {
    // The probe runs its VMs on its main thread, with a pCPU thread's young generation (a third
    // of it is one semi-space).
    const semiSpace = `--max-semi-space-size=${PCPU_YOUNG_GENERATION_MB / 3}`;
    const r = spawnSync(process.execPath, ["--expose-gc", semiSpace, join(packageRoot(), "dist/bench-memory.js"), JSON.stringify(req)],
      { encoding: "utf8", timeout: 600_000 });
    if (r.status !== 0) throw new Error(`memory probe failed (status ${r.status}):\n${r.stderr}`);
    probes.push(JSON.parse(r.stdout) as ProbeResult);
  }
  const overheads = probes.map((p) => breakdown(p, vms).overhead_mib);
  const mid = probes[overheads.indexOf(median(overheads))] ?? probes[0]; // any run when the median falls between two
  const perVm = breakdown(mid, vms);
  const result: MemoryResult = {
    jit, overhead_mib: median(overheads), vms_per_run: vms, guest_ram_mib: req.ramMiB, method: mid.method, per_vm: perVm, runs: probes,
    ...(mid.translations ? { translations: mid.translations } : {}),
  };
  const tr = mid.translations;
  log(`  ${vms} Linux guests (${req.ramMiB} MiB RAM each, --jit ${jit}) at their prompts: ${result.overhead_mib.toFixed(2)} MiB overhead per VM ` +
    `(core region ${perVm.core_region_mib.toFixed(2)}, JS heap ${perVm.js_heap_mib.toFixed(2)} + ${perVm.js_heap_reserve_mib.toFixed(2)} V8's growth, page tables ${perVm.page_tables_mib.toFixed(2)}, ` +
    `other ${perVm.other_mib.toFixed(2)}); guest RAM touched ${perVm.guest_ram_touched_mib.toFixed(1)} MiB per VM` +
    (tr ? `; ${(tr.pages / vms).toFixed(0)} translations live per VM, ${(tr.wasm_bytes / vms / 1024).toFixed(0)} KiB of WebAssembly` : ""));
  return result;
}
