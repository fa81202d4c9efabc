// bench/REPORT.md and its plots (bench/results/*.svg) from one run's results. Pure: run.ts
// writes the files.
import type { CpuSummary } from "./cpu";
import type { BootResult } from "./boot";
import type { ExitsResult } from "./exits";
import type { MemoryResult } from "./memory";
import type { MachineInfo } from "./machine";
import { barChart, COLORS, formatValue, type Series } from "./svg";

export const SUITES = ["cpu", "boot", "exits", "memory"] as const;
export type Suite = (typeof SUITES)[number];

/** bench/results/latest.json. A suite left out with --only is absent. */
export interface BenchResult {
  date: string;
  quick: boolean;
  command: string;
  machine: MachineInfo;
  cpu?: CpuSummary;
  boot?: BootResult;
  exits?: ExitsResult;
  memory?: MemoryResult;
}

export interface TargetCheck {
  target: string;
  measured: string;
  /** null: not measured in this run. */
  pass: boolean | null;
}

// The issue's goals ("A fast core, and the benchmark harness").
export const TARGETS = { mips: 200, ratioVsQemu: 0.15, bootParaS: 2, overheadMiB: 8, mmioUs: 1 } as const;

export function checkTargets(r: BenchResult): TargetCheck[] {
  const check = (target: string, value: number | null | undefined, ok: (v: number) => boolean, show: (v: number) => string): TargetCheck =>
    value === null || value === undefined ? { target, measured: "not measured", pass: null } : { target, measured: show(value), pass: ok(value) };
  return [
    check(`CPU: geometric mean ≥ ${TARGETS.mips} MIPS`, r.cpu?.mips, (v) => v >= TARGETS.mips, (v) => `${v.toFixed(1)} MIPS`),
    check(`CPU: ≥ ${TARGETS.ratioVsQemu * 100}% of QEMU`, r.cpu?.ratio_vs_qemu, (v) => v >= TARGETS.ratioVsQemu, (v) => `${(v * 100).toFixed(1)}%`),
    check(`Boot: Linux to shell prompt (para) ≤ ${TARGETS.bootParaS} s`, r.boot?.linux_para_s, (v) => v <= TARGETS.bootParaS, (v) => `${v.toFixed(2)} s`),
    check(`Memory: overhead ≤ ${TARGETS.overheadMiB} MiB per VM`, r.memory?.overhead_mib, (v) => v <= TARGETS.overheadMiB, (v) => `${v.toFixed(2)} MiB`),
    check(`Exits: MMIO round trip ≤ ${TARGETS.mmioUs} µs`, r.exits?.mmio_roundtrip_us, (v) => v <= TARGETS.mmioUs, (v) => `${v.toFixed(3)} µs`),
  ];
}

const verdict = (pass: boolean | null) => (pass === null ? "not run" : pass ? "pass" : "**FAIL**");
const percent = (a: number, b: number) => `${((100 * a) / b).toFixed(0)}%`;

function table(head: string[], align: string[], rows: string[][]): string {
  return [`| ${head.join(" | ")} |`, `|${align.join("|")}|`, ...rows.map((cells) => `| ${cells.join(" | ")} |`)].join("\n");
}

const WASMVISOR: Series = { name: "wasmvisor", color: COLORS.wasmvisor };
/** "QEMU 7.2 TCG", from the version the machine reported. */
function qemuSeries(m: MachineInfo): Series {
  const version = /^\d+\.\d+/.exec(m.qemu ?? "")?.[0];
  return { name: version ? `QEMU ${version} TCG` : "QEMU TCG", color: COLORS.qemu };
}

interface Section {
  markdown: string;
  plot?: { file: string; svg: string };
}

function cpuSection(cpu: CpuSummary, quick: boolean, qemuBars: Series): Section {
  const qemu = cpu.qemu_mips !== null;
  const rows = cpu.programs.map((p) => [p.program, `${(p.instructions / 1e6).toFixed(1)} M`, `${p.mips.toFixed(1)}`,
    ...(qemu ? [p.qemuMips!.toFixed(1), percent(p.mips, p.qemuMips!)] : [])]);
  rows.push(["**geometric mean**", "", `**${cpu.mips.toFixed(1)}**`,
    ...(qemu ? [`**${cpu.qemu_mips!.toFixed(1)}**`, `**${percent(cpu.mips, cpu.qemu_mips!)}**`] : [])]);
  const svg = barChart({
    title: "CPU-bound guest programs", axis: "MIPS (higher is better)", series: qemu ? [WASMVISOR, qemuBars] : [WASMVISOR],
    groups: [...cpu.programs.map((p) => ({ label: p.program.replace(/^bench-/, ""), values: qemu ? [p.mips, p.qemuMips!] : [p.mips] })),
      { label: "geomean", values: qemu ? [cpu.mips, cpu.qemu_mips!] : [cpu.mips] }],
    target: { value: TARGETS.mips, label: `target ${TARGETS.mips} MIPS` },
  });
  return {
    markdown: "## CPU\n\n" +
      `The bare-metal programs of \`guests/bench/\` run to completion on the core${qemu ? " and on `qemu-system-riscv64 -M spike` (same binaries; QEMU's time includes its start-up)" : ""}; ` +
      `${quick ? "one run each (quick mode, fewer iterations)" : `medians of ${cpu.programs[0]?.seconds.length} runs`}.\n\n` +
      table(["program", "instructions", "wasmvisor MIPS", ...(qemu ? ["QEMU MIPS", "ratio"] : [])],
        ["---", "---:", "---:", ...(qemu ? ["---:", "---:"] : [])], rows),
    plot: { file: "cpu.svg", svg },
  };
}

function bootSection(boot: BootResult, qemuBars: Series): Section {
  const line = (what: string, median: number, runs: number[]) => [what, `${median.toFixed(2)} s`, runs.map((s) => s.toFixed(2)).join(", ")];
  const rows = [line("wasmvisor, para (built-in SBI)", boot.linux_para_s, boot.runs.para), line("wasmvisor, full (Debian's OpenSBI)", boot.linux_full_s, boot.runs.full)];
  if (boot.qemu_linux_s !== null) rows.push(line("qemu-system-riscv64 (OpenSBI)", boot.qemu_linux_s, boot.runs.qemu));
  const svg = barChart({
    title: "Linux guest: process start to shell prompt", axis: "seconds (lower is better)",
    series: boot.qemu_linux_s !== null ? [WASMVISOR, qemuBars] : [WASMVISOR],
    groups: [{ label: "para (built-in SBI)", values: [boot.linux_para_s, null] }, { label: "full (OpenSBI)", values: [boot.linux_full_s, boot.qemu_linux_s] }],
    target: { value: TARGETS.bootParaS, label: `target (para) ${TARGETS.bootParaS} s` },
  });
  return {
    markdown: "## Boot\n\n" +
      "The Linux guest of `guests/linux` (same kernel and initramfs everywhere, `console=ttyS0`), from the start of the process " +
      "to its shell prompt.\n\n" +
      table(["", "time to shell prompt (median)", "runs"], ["---", "---:", "---"], rows),
    plot: { file: "boot.svg", svg },
  };
}

function exitsSection(exits: ExitsResult): Section {
  const rows = exits.rows.map((r) => [r.label, r.detail, `${formatValue(r.mean_us)} µs`, `±${r.rme_percent.toFixed(1)}%`, `${r.samples}`,
    r.guest_instructions === null ? "—" : `${r.guest_instructions}`]);
  const timed = exits.rows.filter((r) => r.guest_instructions !== null);
  const svg = barChart({
    title: "Exit round trips (core → host → core)", axis: "µs per round trip (lower is better)", series: [WASMVISOR],
    groups: timed.map((r) => ({ label: r.label, values: [r.mean_us] })),
    target: { value: TARGETS.mmioUs, label: `target (MMIO) ${TARGETS.mmioUs} µs` },
  });
  return {
    markdown: "## Exits\n\n" +
      "One round trip per benchmarked call, timed with benchmark.js (mean, relative margin of error at 95%): `core.run()` runs a " +
      "tiny guest loop to its next exit and the host handles the exit, as `VirtMachine.step()` does, all on this thread. " +
      "The guest loop's own instructions (last column) are included, not subtracted. The Comlink call, to an idle VM " +
      "worker thread and back, is there for scale and not plotted.\n\n" +
      table(["round trip", "what", "mean", "error", "samples", "guest instructions"], ["---", "---", "---:", "---:", "---:", "---:"], rows),
    plot: { file: "exits.svg", svg },
  };
}

function memorySection(m: MemoryResult): Section {
  const v = m.per_vm;
  const rows = [
    ["core region touched (hart blocks, TLBs, tables: the VM memory below `RAM_HOST`)", v.core_region_mib],
    ["JS heap", v.js_heap_mib],
    ["host page tables", v.page_tables_mib],
    ["other (device models, buffers, code, allocator)", v.other_mib],
    ["**overhead per VM**", v.overhead_mib],
    ["guest RAM touched per VM (not overhead)", v.guest_ram_touched_mib],
  ].map(([what, mib]) => [what as string, `${(mib as number).toFixed(2)} MiB`]);
  const svg = barChart({
    title: "Host memory per VM beyond touched guest RAM", axis: "MiB (lower is better)", series: [WASMVISOR],
    groups: [{ label: "core region", values: [v.core_region_mib] }, { label: "JS heap", values: [v.js_heap_mib] },
      { label: "page tables", values: [v.page_tables_mib] }, { label: "other", values: [v.other_mib] },
      { label: "total overhead", values: [v.overhead_mib] }],
    target: { value: TARGETS.overheadMiB, label: `target ${TARGETS.overheadMiB} MiB` },
  });
  const counted = m.method === "pagemap"
    ? "the guest RAM pages resident in the process (`/proc/self/pagemap` over each VM's RAM in its WebAssembly.Memory, located through `/proc/self/maps` and checked with a marker the probe writes; " +
      "capped by the mapping's Rss from `/proc/self/smaps`, so pages only read, which map the shared zero page, do not count)"
    : "the guest RAM pages holding a non-zero byte (no `/proc/self/pagemap` here): fewer than the pages touched, so the overhead is an upper bound";
  return {
    markdown: "## Memory\n\n" +
      `A fresh Node process (\`bench/memory-probe.ts\`, nothing else in it) boots one Linux guest to pay the process's one-time costs ` +
      `(the core's optimized code, V8's warm-up), records its resident set, boots ${m.vms_per_run} more Linux guests ` +
      `(para mode, ${m.guest_ram_mib} MiB of RAM each) on its own thread to their shell prompts, collects garbage and records it again. ` +
      `Per VM, overhead = (growth of the resident set + growth of the page tables − guest RAM touched) / ${m.vms_per_run}, where guest RAM touched is ` +
      `${counted}. Everything else counts against the VMs: their core regions (hart blocks, TLBs, decoded-code cache), device models and JS objects. ${m.runs.length > 1 ? `Median of ${m.runs.length} processes; the breakdown is from the median one.` : "One process (quick mode)."}\n\n` +
      table(["per VM", "MiB"], ["---", "---:"], rows),
    plot: { file: "memory.svg", svg },
  };
}

/** The report's Markdown and its plots (file name -> SVG text, linked as results/<file>). */
export function renderReport(r: BenchResult): { markdown: string; plots: Record<string, string> } {
  const m = r.machine;
  const sections = [
    r.cpu && cpuSection(r.cpu, r.quick, qemuSeries(m)), r.boot && bootSection(r.boot, qemuSeries(m)), r.exits && exitsSection(r.exits), r.memory && memorySection(r.memory),
  ].filter((s): s is Section => !!s);
  const plots: Record<string, string> = {};
  const body = sections.map((s) => {
    if (!s.plot) return s.markdown;
    plots[s.plot.file] = s.plot.svg;
    return `${s.markdown}\n\n![${s.plot.file}](results/${s.plot.file})`;
  });
  const markdown = [
    "# wasmvisor benchmark report",
    `Generated by \`${r.command}\` on ${r.date}${r.quick ? " — **quick mode**: one run each, fewer iterations; indicative only" : ""}. ` +
    "Figures: `bench/results/latest.json`.",
    "## Machine\n\n" + table(["CPU", "cores", "memory", "OS", "kernel", "Node", "QEMU"], ["---", "---:", "---:", "---", "---", "---", "---"],
      [[m.cpu, `${m.cores}`, `${m.memoryGiB} GiB`, m.os, m.kernel, m.node, m.qemu ?? "not installed"]]),
    "## Targets\n\n" + table(["target", "measured", "result"], ["---", "---:", "---"],
      checkTargets(r).map((t) => [t.target, t.measured, verdict(t.pass)])),
    ...body,
  ].join("\n\n") + "\n";
  return { markdown, plots };
}
