// bench/REPORT.md and its plots (bench/results/*.svg) from one run's results. Pure: run.ts
// writes the files.
import type { CpuResult, CpuSummary } from "./cpu";
import type { BootResult } from "./boot";
import type { GuestIntResult } from "./guest-int";
import type { ExitsResult } from "./exits";
import type { MemoryBreakdown, MemoryResult } from "./memory";
import type { MachineInfo } from "./machine";
import type { GuestSuiteResult, Machine, Measured } from "./fullvspara";
import type { HypervisorResult } from "./hypervisor";
import type { MigrationBench, MigrationRun, SnapshotBench } from "./state";
import type { BrowserBenchResult } from "./browser";
import type { ContainersResult } from "./containers";
import type { SmpResult, SpinRuns } from "./smp";
import { median } from "../host/util/stats";
import { barChart, COLORS, formatValue, type Series } from "./svg";
import { ITERATIONS_GOAL, PROGRAMS_GOAL, type CoreDiffResult, type FuzzResults } from "../fuzz/engine/results";

export const SUITES = ["cpu", "guestint", "boot", "exits", "memory", "fullvspara", "paging", "hypervisor", "snapshot", "migration", "browser", "containers", "smp"] as const;
export type Suite = (typeof SUITES)[number];

/** bench/results/latest.json. A suite left out with --only is absent. */
export interface BenchResult {
  date: string;
  quick: boolean;
  command: string;
  machine: MachineInfo;
  /** Suites this run did not measure, kept from an earlier run (`--only`): the date of the run that measured each. */
  carried?: Partial<Record<Suite, string>>;
  cpu?: CpuSummary;
  guestint?: GuestIntResult;
  boot?: BootResult;
  exits?: ExitsResult;
  memory?: MemoryResult;
  fullvspara?: GuestSuiteResult;
  paging?: GuestSuiteResult;
  hypervisor?: HypervisorResult;
  snapshot?: SnapshotBench;
  migration?: MigrationBench;
  browser?: BrowserBenchResult;
  containers?: ContainersResult;
  smp?: SmpResult;
}

export interface TargetCheck {
  target: string;
  measured: string;
  /** null: not measured in this run. */
  pass: boolean | null;
}

// The issues' goals ("A fast core, and the benchmark harness"; "The hypervisor proper"; the
// translation tier's: each program ≥ 50% of QEMU's speed, their geometric mean ≥ 70%, Linux at
// its prompt no later than on QEMU). The first ratio bar (15%) stays until the 70% one is met.
export const TARGETS = {
  mips: 200, ratioVsQemu: 0.15, programRatioVsQemu: 0.5, geomeanRatioVsQemu: 0.7, bootVsQemu: 1, bootParaS: 2, overheadMiB: 8, mmioUs: 1,
  shareError: 0.05, capPoints: 0.02, jain: 0.99, busy: 0.95, echoP99Ms: 50, densityVms: 100,
  restoreMs: 5, migrationDowntimeMs: 5, browserSpeed: 0.9, smpSpeedup: 1.8,
} as const;

export function checkTargets(r: BenchResult): TargetCheck[] {
  const check = (target: string, value: number | null | undefined, ok: (v: number) => boolean, show: (v: number) => string): TargetCheck =>
    value === null || value === undefined ? { target, measured: "not measured", pass: null } : { target, measured: show(value), pass: ok(value) };
  return [
    check(`CPU: geometric mean ≥ ${TARGETS.mips} MIPS`, r.cpu?.mips, (v) => v >= TARGETS.mips, (v) => `${v.toFixed(1)} MIPS`),
    check(`CPU: geometric mean ≥ ${TARGETS.ratioVsQemu * 100}% of QEMU (first bar, kept until the ${TARGETS.geomeanRatioVsQemu * 100}% one is met)`, r.cpu?.ratio_vs_qemu,
      (v) => v >= TARGETS.ratioVsQemu, (v) => `${(v * 100).toFixed(1)}%`),
    ...cpuVsQemuTargets(r.cpu, check),
    check(`CPU: integer programs in the Linux guest ≥ ${TARGETS.programRatioVsQemu * 100}% of QEMU (translation tier)`, r.guestint?.programs.length && r.guestint.ratio_vs_qemu !== null
      ? Math.min(...r.guestint.programs.map((p) => median(p.qemu) / median(p.translated))) : undefined,
    (v) => v >= TARGETS.programRatioVsQemu, (v) => `worst ${pct(v)}`),
    check(`Boot: Linux to shell prompt (para) ≤ ${TARGETS.bootParaS} s`, r.boot?.linux_para_s, (v) => v <= TARGETS.bootParaS, (v) => `${v.toFixed(2)} s`),
    // Full mode boots through OpenSBI as QEMU does: the like-for-like comparison. Para is shown beside it.
    check("Boot: Linux to shell prompt (full, OpenSBI) no slower than QEMU", r.boot?.qemu_linux_s ? r.boot.linux_full_s / r.boot.qemu_linux_s : undefined,
      (v) => v <= TARGETS.bootVsQemu, (v) => `${r.boot!.linux_full_s.toFixed(2)} s against ${r.boot!.qemu_linux_s!.toFixed(2)} s (${(v * 100).toFixed(0)}% of QEMU's time${roundByRound(r.boot!)}); para ${r.boot!.linux_para_s.toFixed(2)} s`),
    check(`Memory: overhead ≤ ${TARGETS.overheadMiB} MiB per VM`, r.memory?.overhead_mib, (v) => v <= TARGETS.overheadMiB, (v) => `${v.toFixed(2)} MiB`),
    check(`Memory with the translation tier (\`--jit on\`): overhead ≤ ${TARGETS.overheadMiB} MiB per VM`, r.memory?.translated?.overhead_mib, (v) => v <= TARGETS.overheadMiB, (v) => `${v.toFixed(2)} MiB`),
    check(`Exits: MMIO round trip ≤ ${TARGETS.mmioUs} µs`, r.exits?.mmio_roundtrip_us, (v) => v <= TARGETS.mmioUs, (v) => `${v.toFixed(3)} µs`),
    ...(r.hypervisor ? hypervisorTargets(r.hypervisor, check) : []),
    check(`Snapshot: restore of an idle 256 MiB Linux to running ≤ ${TARGETS.restoreMs} ms`, r.snapshot?.wasmvisor.restore_ms, (v) => v <= TARGETS.restoreMs, (v) => `${v.toFixed(1)} ms`),
    check(`Migration: idle 256 MiB Linux, downtime the guest sees ≤ ${TARGETS.migrationDowntimeMs} ms`, r.migration?.idle.wasmvisor.guest_gap_ms, (v) => v <= TARGETS.migrationDowntimeMs, (v) => `${v.toFixed(1)} ms`),
    check("Migration: idle 256 MiB Linux, total time ≤ QEMU's", r.migration?.idle.qemu ? r.migration.idle.wasmvisor.total_ms / r.migration.idle.qemu.total_ms : undefined,
      (v) => v <= 1, (v) => `${r.migration!.idle.wasmvisor.total_ms.toFixed(0)} ms against ${r.migration!.idle.qemu!.total_ms.toFixed(0)} ms (${(v * 100).toFixed(0)}%)`),
    check(`Browser: guest programs in Chromium ≥ ${TARGETS.browserSpeed * 100}% of Node's MIPS`, r.browser?.ratio, (v) => v >= TARGETS.browserSpeed,
      (v) => `${r.browser!.browser_mips.toFixed(1)} against ${r.browser!.node_mips.toFixed(1)} MIPS (${(v * 100).toFixed(1)}%)`),
    check(`Browser: Linux boot in the page ≥ ${TARGETS.browserSpeed * 100}% of Node's speed`, r.browser?.linux ? r.browser.linux.node_s / r.browser.linux.browser_s : undefined, (v) => v >= TARGETS.browserSpeed,
      (v) => `${r.browser!.linux!.browser_s.toFixed(2)} s against ${r.browser!.linux!.node_s.toFixed(2)} s (${(v * 100).toFixed(1)}%)`),
    check(`SMP: 2 CPU-bound processes on 2 vCPUs ≥ ${TARGETS.smpSpeedup}× the throughput of one`, r.smp?.wasmvisor.speedup, (v) => v >= TARGETS.smpSpeedup,
      (v) => `${v.toFixed(2)}×${r.smp!.qemu ? ` (QEMU ${r.smp!.qemu.speedup.toFixed(2)}×)` : ""}`),
    check("SMP: atomic-counter and lock torture exact under --jit off and --jit on", r.smp ? r.smp.torture.filter((t) => t.ok).length : undefined,
      (v) => v === r.smp!.torture.length && v === 2, () => r.smp!.torture.map((t) => `--jit ${t.jit} ${t.ok ? "exact" : "WRONG"}`).join(", ")),
  ];
}

type Check = (t: string, v: number | null | undefined, ok: (v: number) => boolean, show: (v: number) => string) => TargetCheck;

/** The translation tier's bars, against QEMU's times less its start-up (not measured in results from before that was timed). */
function cpuVsQemuTargets(cpu: CpuSummary | undefined, check: Check): TargetCheck[] {
  const programBar = `CPU: every program ≥ ${TARGETS.programRatioVsQemu * 100}% of QEMU (translation tier's bar)`;
  const geomeanBar = `CPU: geometric mean ≥ ${TARGETS.geomeanRatioVsQemu * 100}% of QEMU (translation tier's bar)`;
  if (cpu && cpu.qemu_mips !== null && (cpu.qemu_startup_s === undefined || cpu.qemu_startup_s === null)) {
    const measured = "not measured (QEMU's start-up was not subtracted in that run)";
    return [{ target: programBar, measured, pass: null }, { target: geomeanBar, measured, pass: null }];
  }
  const ratios = cpu?.qemu_mips ? cpu.programs.map((p) => ({ program: p.program, ratio: p.mips / p.qemuMips! })) : [];
  const worst = ratios.length ? ratios.reduce((a, b) => (b.ratio < a.ratio ? b : a)) : undefined;
  return [
    check(programBar, worst?.ratio, (v) => v >= TARGETS.programRatioVsQemu, (v) => `worst ${worst!.program} ${pct(v)}`),
    check(geomeanBar, cpu?.ratio_vs_qemu, (v) => v >= TARGETS.geomeanRatioVsQemu, (v) => pct(v)),
  ];
}

function hypervisorTargets(h: HypervisorResult, check: (t: string, v: number, ok: (v: number) => boolean, show: (v: number) => string) => TargetCheck): TargetCheck[] {
  const worstEcho = Math.max(...h.isolation.layouts.map((l) => l.p99_ms));
  return [
    check(`Hypervisor: weights 1:2:4 within ${TARGETS.shareError * 100}% of their shares`, h.fairness.worst_error, (v) => v <= TARGETS.shareError, (v) => `worst ${pct(v)} off`),
    check(`Hypervisor: a 25% cap within ${TARGETS.capPoints * 100} points`, Math.abs(h.cap.share - h.cap.cap), (v) => v <= TARGETS.capPoints, (v) => `${pct(h.cap.share)} (${(v * 100).toFixed(1)} points off)`),
    check(`Hypervisor: Jain's index ≥ ${TARGETS.jain} for equal weights`, h.equal.jain, (v) => v >= TARGETS.jain, (v) => v.toFixed(4)),
    check(`Hypervisor: 2 pCPUs, 3 busy VMs: host ≥ ${TARGETS.busy * 100}% busy and spread`, h.balance.spread ? h.balance.busy : 0, (v) => v >= TARGETS.busy, (v) => `${pct(h.balance.busy)} busy, ${h.balance.spread ? "spread" : "not spread"} (${h.balance.moves} move(s))`),
    check(`Hypervisor: console echo p99 < ${TARGETS.echoP99Ms} ms next to a spinner or a disk flood`, worstEcho, (v) => v < TARGETS.echoP99Ms, (v) => `${v.toFixed(1)} ms (worst layout)`),
    h.density.vms < TARGETS.densityVms
      ? { target: `Hypervisor: ≥ ${TARGETS.densityVms} VMs of 32 MiB running a small guest at once`, measured: `not measured (quick run: ${h.density.vms} VMs)`, pass: null }
      : check(`Hypervisor: ≥ ${TARGETS.densityVms} VMs of 32 MiB running a small guest at once`, h.density.running, (v) => v >= TARGETS.densityVms, (v) => `${v} running`),
  ];
}

const verdict = (pass: boolean | null) => (pass === null ? "not run" : pass ? "pass" : "**FAIL**");
const percent = (a: number, b: number) => `${((100 * a) / b).toFixed(0)}%`;
/** A fraction as a percentage with one decimal: 0.256 → "25.6%". */
const pct = (v: number) => `${(v * 100).toFixed(1)}%`;

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
  plots?: { file: string; svg: string }[];
}

function cpuSection(cpu: CpuSummary, quick: boolean, qemuBars: Series): Section {
  const qemu = cpu.qemu_mips !== null;
  const startup = qemu ? cpu.qemu_startup_s ?? null : null;
  // Results from before the translation tier have no interpreter column: their MIPS were the interpreter's.
  const tier = cpu.interpreter_mips !== undefined;
  const qemuTime = (p: CpuResult) => `${p.qemuRawSeconds!.toFixed(3)} − ${startup!.toFixed(3)} = ${p.qemuSeconds!.toFixed(3)} s`;
  const rows = cpu.programs.map((p) => [p.program, `${(p.instructions / 1e6).toFixed(1)} M`,
    ...(tier ? [p.interpreterMips!.toFixed(1)] : []), `${p.mips.toFixed(1)}`,
    ...(startup !== null ? [qemuTime(p)] : []), ...(qemu ? [p.qemuMips!.toFixed(1), percent(p.mips, p.qemuMips!)] : [])]);
  rows.push(["**geometric mean**", "", ...(tier ? [`**${cpu.interpreter_mips!.toFixed(1)}**`] : []), `**${cpu.mips.toFixed(1)}**`, ...(startup !== null ? [""] : []),
    ...(qemu ? [`**${cpu.qemu_mips!.toFixed(1)}**`, `**${percent(cpu.mips, cpu.qemu_mips!)}**`] : [])]);
  const interpreterBars: Series = { name: "wasmvisor, interpreter", color: COLORS.interpreter };
  const series = [...(tier ? [interpreterBars, { ...WASMVISOR, name: "wasmvisor, translated" }] : [WASMVISOR]), ...(qemu ? [qemuBars] : [])];
  const values = (interp: number | undefined, mips: number, q: number | undefined) => [...(tier ? [interp!] : []), mips, ...(qemu ? [q!] : [])];
  const svg = barChart({
    title: "CPU-bound guest programs", axis: "MIPS (higher is better)", series,
    groups: [...cpu.programs.map((p) => ({ label: p.program.replace(/^bench-/, ""), values: values(p.interpreterMips, p.mips, p.qemuMips) })),
      { label: "geomean", values: values(cpu.interpreter_mips, cpu.mips, cpu.qemu_mips ?? undefined) }],
    target: { value: TARGETS.mips, label: `target ${TARGETS.mips} MIPS` },
  });
  const runs = (xs: number[]) => xs.map((x) => (x * 1000).toFixed(0)).join(", ");
  const qemuNote = !qemu ? ""
    : startup === null ? " and on `qemu-system-riscv64 -M spike` (same binaries; QEMU's time includes its start-up)"
    : " and on `qemu-system-riscv64 -M spike` (same binaries). QEMU is timed as a whole process, so its start-up and exit, " +
      `timed on an empty guest that exits at once through HTIF (\`guests/bench/empty.c\`; median of ${cpu.qemu_startup_runs?.length} runs in this run: ` +
      `${(startup * 1000).toFixed(1)} ms; runs ${runs(cpu.qemu_startup_runs ?? [])} ms), is subtracted from each program's QEMU time ` +
      "(the whole process's time is `qemuRawSeconds` in `latest.json`); QEMU's MIPS and the ratios are from what remains " +
      "(the core's time never included its start-up)";
  const tierNote = tier ? " Each program runs with the translation tier (`--jit on`: the *translated* column, which the ratio uses) and on the interpreter alone (`--jit off`), taking turns." : "";
  let cost = "";
  if (tier && cpu.programs.every((p) => p.jit)) {
    const costRows = cpu.programs.map((p) => {
      const j = p.jit!;
      return [p.program, `${j.translations}`, `${j.blocks}`, `${j.instructions}`, `${j.compileMs.toFixed(1)} ms`,
        j.translations ? `${((1000 * j.compileMs) / j.translations).toFixed(0)} µs` : "—", `${(j.wasmBytes / 1024).toFixed(1)} KiB`,
        percent(j.retired, p.instructions)];
    });
    cost = "\n\nWhat the translation tier did (last translated run of each program): pages compiled, the blocks and guest instructions they cover, " +
      "host time to generate, compile and instantiate them, the WebAssembly generated, and the share of retired instructions that translated code retired.\n\n" +
      table(["program", "pages compiled", "blocks", "instructions", "compile time", "per page", "wasm", "retired translated"],
        ["---", "---:", "---:", "---:", "---:", "---:", "---:", "---:"], costRows);
  }
  return {
    markdown: "## CPU\n\n" +
      `The bare-metal programs of \`guests/bench/\` run to completion on the core${qemuNote}; ` +
      `${quick ? "one run each (quick mode, fewer iterations)" : `medians of ${cpu.programs[0]?.seconds.length} runs`}.${tierNote}\n\n` +
      table(["program", "instructions", ...(tier ? ["interpreter MIPS", "translated MIPS"] : ["wasmvisor MIPS"]), ...(startup !== null ? ["QEMU time: whole − start-up"] : []), ...(qemu ? ["QEMU MIPS", "ratio"] : [])],
        ["---", "---:", ...(tier ? ["---:"] : []), "---:", ...(startup !== null ? ["---:"] : []), ...(qemu ? ["---:", "---:"] : [])], rows) + cost,
    plots: [{ file: "cpu.svg", svg }],
  };
}

const NODE: Series = { name: "Node (worker thread)", color: COLORS.wasmvisor };
const CHROMIUM: Series = { name: "Chromium (Web Worker)", color: COLORS.qemu };

function browserSection(b: BrowserBenchResult, quick: boolean): Section {
  const rows = b.programs.map((p) => [p.program, `${(p.instructions / 1e6).toFixed(1)} M`, p.node_mips.toFixed(1), p.browser_mips.toFixed(1), percent(p.browser_mips, p.node_mips)]);
  rows.push(["**geometric mean**", "", `**${b.node_mips.toFixed(1)}**`, `**${b.browser_mips.toFixed(1)}**`, `**${percent(b.browser_mips, b.node_mips)}**`]);
  const plots = [{
    file: "browser.svg",
    svg: barChart({
      title: "The same guest programs in Node and in Chromium", axis: "MIPS (higher is better)", series: [NODE, CHROMIUM],
      groups: [...b.programs.map((p) => ({ label: p.program.replace(/^bench-/, ""), values: [p.node_mips, p.browser_mips] })),
        { label: "geomean", values: [b.node_mips, b.browser_mips] }],
    }),
  }];
  let linux = "";
  if (b.linux) {
    const l = b.linux;
    const runs = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(", ");
    linux = "\n\nThe page's Linux VM (the full machine on Debian's OpenSBI, its data disk a qcow2 overlay over `disk.ext4`, a virtio NIC on user-mode " +
      "networking: `web/guest-vm.ts`), to its shell prompt. From the VM's start: in Node through the same API (a host that has booted before), " +
      "and in the page as it measures it (its second boot, its Reset: the core's code has reached the engine's top tier in both; " +
      "its disk's image read over HTTP, its NIC relayed to the server). From nothing: `wasmvisor boot` with the same VM from the process's start, " +
      "and the page from a cold load (a new browser profile: no cache, no storage; the core compiled, the boot images fetched, the overlay made).\n\n" +
      table(["", "Node", "Chromium", "Chromium's speed"], ["---", "---:", "---:", "---:"], [
        ["from the VM's start", `${l.node_s.toFixed(2)} s`, `${l.browser_s.toFixed(2)} s`, percent(l.node_s, l.browser_s)],
        ["from nothing (process start; cold page load)", `${l.node_cold_s.toFixed(2)} s`, `${l.page_cold_s.toFixed(2)} s`, percent(l.node_cold_s, l.page_cold_s)],
      ]) + `\n\nRuns (s): Node ${runs(l.runs.node)}; Chromium ${runs(l.runs.browser)}; \`wasmvisor boot\` ${runs(l.runs.node_cold)}; cold page ${runs(l.runs.page_cold)}.`;
    plots.push({
      file: "browser-boot.svg",
      svg: barChart({
        title: "Linux to its shell prompt, Node and the page", axis: "seconds (lower is better)", series: [NODE, CHROMIUM],
        groups: [{ label: "from the VM's start", values: [l.node_s, l.browser_s] }, { label: "from nothing", values: [l.node_cold_s, l.page_cold_s] }],
      }),
    });
  }
  const base = b.baseline;
  const engines = base ? "\n\nFor scale, the engines alone (`bench/browser-baseline.ts`): a WebAssembly loop of integer arithmetic takes " +
    `${base.node.mix_ms.toFixed(0)} ms in Node and ${base.browser.mix_ms.toFixed(0)} ms in Chromium (Chromium at ${percent(base.node.mix_ms, base.browser.mix_ms)} of Node's speed), ` +
    `and a first touch of 64 MiB of shared WebAssembly memory (the host's page faults, which a guest pays for each page of RAM it uses) ` +
    `${base.node.touch_ms.toFixed(0)} ms and ${base.browser.touch_ms.toFixed(0)} ms.` : "";
  return {
    markdown: "## Browser\n\n" +
      `The bare-metal programs of \`guests/bench/\` through the embedding API in Node (\`nodePlatform\`: the pCPU on a worker thread) and in ${b.chromium.startsWith("Chrom") ? b.chromium : `Chromium ${b.chromium}`} ` +
      "(`browserPlatform`: the pCPU on a Web Worker), the same code timing them (`bench/guest-run.ts`), taken in turns; " +
      `${quick ? "one run each (quick mode, fewer iterations)" : "medians"}.\n\n` +
      table(["program", "instructions", "Node MIPS", "Chromium MIPS", "Chromium/Node"], ["---", "---:", "---:", "---:", "---:"], rows) + engines + linux,
    plots,
  };
}

function guestIntSection(g: GuestIntResult): Section {
  const qemu = g.ratio_vs_qemu !== null;
  const s = (xs: number[]) => `${median(xs).toFixed(2)} s`;
  const rows = g.programs.map((p) => [p.program, `\`${p.command.replace(/\|/g, "\\|")}\``, s(p.interpreter), s(p.translated),
    ...(qemu ? [s(p.qemu), percent(median(p.qemu), median(p.translated))] : [])]);
  return {
    markdown: "## Integer work in the Linux guest\n\n" +
      "BusyBox's md5sum and sha256sum from the guest's initramfs, over data `dd` makes in the guest, and its gzip and zcat (call-heavy code " +
      "across many pages) over two copies of the BusyBox binary in the guest's tmpfs, timed by the guest's own `time` " +
      "(real), in one boot each (full mode, Debian's OpenSBI): wasmvisor with the interpreter alone (`--jit off`), with the translation tier " +
      `(\`--jit on\`)${qemu ? ", and qemu-system-riscv64 with the same kernel and initramfs" : ""}; medians of the runs in that boot ` +
      "(the first run of each pays for warming up, translation included).\n\n" +
      table(["program", "command", "interpreter", "translated", ...(qemu ? ["QEMU", "translated vs QEMU's speed"] : [])],
        ["---", "---", "---:", "---:", ...(qemu ? ["---:", "---:"] : [])], rows),
  };
}

function smpSection(smp: SmpResult, qemuBars: Series): Section {
  const mops = (xs: number[]) => `${(median(xs) / 1e6).toFixed(1)} M/s`;
  const spinRow = (name: string, s: SpinRuns) => [name, `${(s.work / 1e6).toFixed(0)} M`, mops(s.one), mops(s.two), `**${s.speedup.toFixed(2)}×**`];
  const rows = [spinRow("wasmvisor, translation tier (`--jit on`)", smp.wasmvisor), ...(smp.qemu ? [spinRow("qemu-system-riscv64", smp.qemu)] : [])];
  const tortures = [...smp.torture.map((t) => ({ name: `wasmvisor, \`--jit ${t.jit}\``, t })), ...(smp.qemu_torture ? [{ name: "qemu-system-riscv64", t: smp.qemu_torture }] : [])];
  const tortureRows = tortures.map(({ name, t }) => [name, t.ok ? "exact" : "**WRONG**", `${t.seconds.toFixed(2)} s`, `${t.casRetries}`, `${t.interleavings}`]);
  const svg = barChart({
    title: `Two CPU-bound processes on ${smp.vcpus} vCPUs: throughput over one`, axis: "speed-up (higher is better)",
    series: smp.qemu ? [WASMVISOR, qemuBars] : [WASMVISOR],
    groups: [{ label: "2 processes / 1", values: [smp.wasmvisor.speedup, ...(smp.qemu ? [smp.qemu.speedup] : [])] }],
    target: { value: TARGETS.smpSpeedup, label: `target ${TARGETS.smpSpeedup}×` },
  });
  return {
    markdown: "## SMP\n\n" +
      `The Linux guest with ${smp.vcpus} vCPUs (full mode, Debian's OpenSBI; wasmvisor with \`${smp.wasmvisor_args.join(" ")}\`, QEMU with \`-smp ${smp.vcpus}\`). ` +
      "`wv-smp spin` (`guests/linux/bench/wv-smp.c`) runs one, then two processes, each pinned to its own vCPU, of the same fixed integer work " +
      `(calibrated to about ${smp.seconds_per_run} s for one process), timed by the guest from releasing them to the last one's end; ` +
      `throughput is all processes' steps per second, medians of ${smp.wasmvisor.one.length} runs taken in turns. The speed-up is the two-process throughput over the one-process one; ` +
      `it needs two idle host cores (the host's 1-minute load average before the runs: ${smp.host_load.toFixed(2)}).\n\n` +
      table(["", "work per process", "1 process", "2 processes", "speed-up"], ["---", "---:", "---:", "---:", "---:"], rows) +
      `\n\n\`wv-smp torture -t ${smp.vcpus} -n ${smp.torture_iters}\`: threads pinned one per vCPU add to shared counters through AMOs, a pthread mutex, ` +
      "an LR/SC spinlock and 32- and 64-bit CAS loops, then pass messages with release/acquire ordering; every count must be exact and no message stale. " +
      "Lost CAS races, and interleavings (a thread seeing another's increment between two of its own), show that the threads overlapped; " +
      "the guest's whole result lines are in `latest.json`.\n\n" +
      table(["", "result", "time", "lost CAS races", "interleavings"], ["---", "---", "---:", "---:", "---:"], tortureRows),
    plots: [{ file: "smp.svg", svg }],
  };
}

/**
 * Full mode's time over QEMU's boot by boot (each round boots both, one after the other): a
 * machine whose speed drifts within a run moves the two medians apart where the pairs stay close
 * (QEMU's own boots spread over ±20% in one run on the bench machine of 2026-12-07).
 */
function roundByRound(boot: BootResult): string {
  const n = Math.min(boot.runs.full.length, boot.runs.qemu.length);
  if (n < 2) return "";
  const ratios = Array.from({ length: n }, (_, i) => boot.runs.full[i] / boot.runs.qemu[i]);
  const pct = (x: number) => (x * 100).toFixed(0);
  return `; boot by boot ${pct(Math.min(...ratios))}-${pct(Math.max(...ratios))}%, median ${pct(median(ratios))}%`;
}

function bootSection(boot: BootResult, qemuBars: Series): Section {
  const line = (what: string, median: number, runs: number[]) => [what, `${median.toFixed(2)} s`, runs.map((s) => s.toFixed(2)).join(", ")];
  const tier = boot.jit ? ` (\`--jit ${boot.jit}\`, the default)` : "";
  const rows = [line(`wasmvisor, para (built-in SBI)${tier}`, boot.linux_para_s, boot.runs.para), line(`wasmvisor, full (Debian's OpenSBI)${tier}`, boot.linux_full_s, boot.runs.full)];
  if (boot.linux_full_interpreted_s !== undefined) rows.push(line("wasmvisor, full, the interpreter alone (`--jit off`)", boot.linux_full_interpreted_s, boot.runs.fullInterpreted ?? []));
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
      (boot.node_start_s !== undefined ? `Of wasmvisor's time, Node's own start-up (\`node -e 0\`) is ${(boot.node_start_s * 1000).toFixed(0)} ms` +
        (boot.node_start_with_extra_ca_s !== undefined ? `; the boots ran without this machine's NODE_EXTRA_CA_CERTS, which Node reads as it starts ` +
          `(${(boot.node_start_with_extra_ca_s * 1000).toFixed(0)} ms with it; wasmvisor checks no certificate, and a user's machine does not set it)` : "") + ".\n\n" : "") +
      table(["", "time to shell prompt (median)", "runs"], ["---", "---:", "---"], rows),
    plots: [{ file: "boot.svg", svg }],
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
    plots: [{ file: "exits.svg", svg }],
  };
}

function memorySection(m: MemoryResult): Section {
  // Interpreted, and with the translation tier when the run measured it.
  const tiers = [m, ...(m.translated ? [m.translated] : [])];
  const parts: [string, (v: MemoryBreakdown) => number][] = [
    ["core region touched (hart blocks, TLBs, tables: the VM memory below `RAM_HOST`)", (v) => v.core_region_mib],
    ["JS heap (live objects)", (v) => v.js_heap_mib],
    ["JS heap grown by V8 beyond them (its young generation, enlarged while the guests booted: once per process, not per VM)", (v) => v.js_heap_reserve_mib ?? 0],
    ["host page tables", (v) => v.page_tables_mib],
    ["other (device models, buffers, code (V8's for translations too), allocator)", (v) => v.other_mib],
    ["**overhead per VM**", (v) => v.overhead_mib],
    ["guest RAM touched per VM (not overhead)", (v) => v.guest_ram_touched_mib],
  ];
  const rows = parts.map(([what, of]) => [what, ...tiers.map((t) => `${of(t.per_vm).toFixed(2)} MiB`)]);
  const live = m.translated?.translations;
  if (live) {
    const vms = m.translated!.vms_per_run;
    rows.push(["translations alive per VM at the prompt (their WebAssembly)", "", `${(live.pages / vms).toFixed(0)} (${(live.wasm_bytes / vms / 1024).toFixed(0)} KiB)`]);
  }
  const SERIES: Series[] = m.translated ? [{ name: "wasmvisor, interpreter", color: COLORS.interpreter }, { ...WASMVISOR, name: "wasmvisor, --jit on" }] : [WASMVISOR];
  const bar = (label: string, of: (v: MemoryBreakdown) => number) => ({ label, values: tiers.map((t) => of(t.per_vm)) });
  const svg = barChart({
    title: "Host memory per VM beyond touched guest RAM", axis: "MiB (lower is better)", series: SERIES,
    groups: [bar("core region", (v) => v.core_region_mib), bar("JS heap", (v) => v.js_heap_mib + (v.js_heap_reserve_mib ?? 0)),
      bar("page tables", (v) => v.page_tables_mib), bar("other", (v) => v.other_mib), bar("total overhead", (v) => v.overhead_mib)],
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
      `(para mode, ${m.guest_ram_mib} MiB of RAM each) on its own thread to their shell prompts (its JavaScript heap's young generation capped as a pCPU thread's is), collects garbage and records it again. ` +
      `Per VM, overhead = (growth of the resident set + growth of the page tables − guest RAM touched) / ${m.vms_per_run}, where guest RAM touched is ` +
      `${counted}. Everything else counts against the VMs: their core regions (hart blocks, TLBs, decoded-code cache), device models and JS objects. ${m.runs.length > 1 ? `Median of ${m.runs.length} processes; the breakdown is from the median one.` : "One process (quick mode)."}\n\n` +
      (m.translated ? "Then the same again with the translation tier (`--jit on`: its translations' WebAssembly compiled by V8, whose code lives outside the VMs' memory and counts in \"other\").\n\n" : "") +
      table(["per VM", ...(m.translated ? ["interpreted", "`--jit on`"] : ["MiB"])], ["---", ...tiers.map(() => "---:")], rows),
    plots: [{ file: "memory.svg", svg }],
  };
}

// ---- full vs para, and paging: the same workloads on several machines ----

const machineName = (m: Machine) => `${m.mode} · ${m.paging}`;
const MACHINE_COLORS: Record<string, string> = {
  "para · nested": COLORS.wasmvisor, "para · shadow": "#8fb3e0", "full · nested": COLORS.qemu, "full · shadow": "#f0c688",
};
const machineSeries = (ms: Machine[]): Series[] => ms.map((m) => ({ name: machineName(m), color: MACHINE_COLORS[machineName(m)] ?? "#888" }));

/** Time per operation (or per byte), whatever way the figure is expressed: lower is better. */
const cost = (w: Measured) => (w.better === "higher" ? 1 / w.value : w.value);
/** How many times `w`'s cost is `base`'s. */
const costRatio = (w: Measured, base: Measured) => cost(w) / cost(base);

const workload = (m: Machine, key: string) => m.workloads.find((w) => w.key === key);
const runsText = (r: GuestSuiteResult) =>
  `${r.runs > 1 ? `${r.runs} times each in one boot (median)` : "once each (quick mode)"}, after one uncounted warm-up run`;
const usPerExit = (w: Measured) => (w.host_us_per_exit === null ? "—" : `${formatValue(w.host_us_per_exit)} µs`);

/** One table row per workload of the first machine, one cell per machine. */
function perWorkload(ms: Machine[], cell: (w: Measured) => string, first: (w: Measured) => string[]): string[][] {
  return ms[0].workloads.map((w0) => [...first(w0), ...ms.map((m) => {
    const w = workload(m, w0.key);
    return w ? cell(w) : "—";
  })]);
}

/** "2.5× faster" / "1.3× slower" / "as fast": how `w` compares with `base` (by cost per operation). */
function compare(w: Measured, base: Measured): string {
  const r = costRatio(w, base);
  if (Math.abs(r - 1) < 0.05) return "about as fast as";
  return r < 1 ? `${formatValue(1 / r)}× faster than` : `${formatValue(r)}× slower than`;
}

/** The MMIO device, other than the interrupt controller, with the most exits in `w`. */
function busiestDevice(w: Measured | undefined): string | null {
  const top = Object.entries(w?.delta.mmio ?? {}).filter(([name, n]) => name !== "plic" && n > 0).sort((x, y) => y[1] - x[1])[0];
  return top ? top[0] : null;
}

/**
 * What the full-vs-para figures say, workload by workload: the comparison as measured, and the
 * mechanism behind it, with this run's exit counts (so the text stays true whatever the numbers).
 */
function fullVsParaNotes(para: Machine | undefined, full: Machine | undefined): string[] {
  if (!para || !full) return [];
  const both = (key: string) => {
    const p = workload(para, key), f = workload(full, key);
    return p && f ? { p, f } : null;
  };
  const exits = (w: Measured) => `${formatValue(w.exits_per_op)} exits per ${w.op}`;
  const dev = (w: Measured) => busiestDevice(w) ?? "no device";
  // Host time spent on exits per operation, and its share of the operation's time.
  const opUs = (w: Measured) => (w.metric === "MB/s" ? (65536 / (w.value * 1e6)) * 1e6 : w.value);
  const exitUs = (w: Measured) => w.exits_per_op * (w.host_us_per_exit ?? 0);
  const instrPerOp = (w: Measured) => w.delta.instructions / Math.max(1, w.delta.ops);
  const exitShare = (w: Measured) => `${formatValue(exitUs(w))} µs of host time in exits per ${w.op} (${formatValue((100 * exitUs(w)) / opUs(w))}% of its time)`;
  const notes: string[] = [];
  for (const key of ["disk_read", "disk_write"]) {
    const x = both(key);
    if (!x) continue;
    notes.push(`- **${x.p.label}**: para is ${compare(x.p, x.f)} full (${formatValue(x.p.value)} vs ${formatValue(x.f.value)} MB/s). ` +
      `Para's ${dev(x.p)} takes a whole request per notification and the host copies the 64 KiB block in one go: ${exits(x.p)}. ` +
      `Full's ${dev(x.f)} moves data through its data register one access at a time: ${exits(x.f)}, ` +
      `${formatValue(x.f.exits_per_op / Math.max(x.p.exits_per_op, 1e-9))}× as many. Each PIO exit is cheap (${usPerExit(x.f)} of host time against ` +
      `${usPerExit(x.p)} for a virtio one, which does the copying), but their number decides.`);
  }
  const con = both("console");
  if (con) {
    notes.push(`- **Console**: para (${para.console}, ${dev(con.p)}) is ${compare(con.p, con.f)} full (${full.console}, ${dev(con.f)}): ` +
      `${exits(con.p)} against ${exits(con.f)}. The virtio console hands over a buffer of bytes per notification; the 16550 UART ` +
      "takes one byte per register write, with status reads around it.");
  }
  for (const key of ["tcp-rx", "tcp-tx"]) {
    const x = both(key);
    if (!x) continue;
    notes.push(`- **${x.p.label}**: para is ${compare(x.p, x.f)} full (${formatValue(x.p.value)} vs ${formatValue(x.f.value)} MB/s), ` +
      `${exits(x.p)} (${usPerExit(x.p)} each) against ${exits(x.f)} (${usPerExit(x.f)} each) on ${dev(x.f)}: ` +
      `${exitShare(x.p)} against ${exitShare(x.f)}. So most of the gap is not the exits but the guest's own work: it runs ` +
      `${formatValue(instrPerOp(x.p))} instructions per 64 KiB in para and ${formatValue(instrPerOp(x.f))} in full ` +
      `(${formatValue(instrPerOp(x.f) / instrPerOp(x.p))}×), because the ethoc driver copies every frame between its own buffers and ` +
      "the kernel's and drives each one through the MAC's registers. The host's user-mode TCP stack is the same in both. A virtio " +
      "exit does more work (a whole batch of frames, through the host's TCP stack when it transmits), hence its higher host time.");
  }
  const ping = both("ping");
  if (ping) {
    notes.push(`- **Ping**: para is ${compare(ping.p, ping.f)} full (${formatValue(ping.p.value)} vs ${formatValue(ping.f.value)} µs) with ` +
      `${exits(ping.p)} against ${exits(ping.f)} (per packet the ethoc driver reads and writes several descriptor and interrupt ` +
      `registers; virtio-net needs a notification and the interrupt acknowledgement): ${exitShare(ping.p)} against ${exitShare(ping.f)}. ` +
      `The guest runs about as many instructions per ping in both (${formatValue(instrPerOp(ping.p))} and ${formatValue(instrPerOp(ping.f))}): ` +
      "the round trip is mostly the guest's network stack and the VMM's user-mode network answering, which both modes share, so " +
      "the device model decides little of it.");
  }
  const timer = both("timer");
  if (timer) {
    const tick = timer.p.value > 2000 && timer.f.value > 2000;
    notes.push(`- **Timer**: a 1 ms nanosleep takes ${formatValue(timer.p.value)} µs in para and ${formatValue(timer.f.value)} µs in full ` +
      `(${exits(timer.p)} and ${exits(timer.f)}). Both program the Sstc timer (stimecmp) directly, which the core emulates without an exit; ` +
      "the exits are the WFI halts while the guest sleeps. " +
      (tick
        ? "Sleeps end on the guest's periodic tick, not when asked: this kernel has no high-resolution timers, so the figure measures its HZ."
        : "The time above 1 ms is the guest's timer slack and its wake-up path."));
  }
  const micro = ["syscall", "pagefault", "ptmod", "forkwait", "mmap"].map(both).filter((x): x is { p: Measured; f: Measured } => !!x);
  if (micro.length) {
    // Para slower by more than 10% although it exits less: the exits do not explain it.
    const unexplained = micro.filter((x) => costRatio(x.p, x.f) > 1.1 && x.p.exits_per_op <= x.f.exits_per_op);
    notes.push("- **Microbenchmarks** (" + micro.map((x) => `${x.p.key}: para ${compare(x.p, x.f)} full`).join("; ") + "). " +
      "They stay inside the guest: " + micro.map((x) => `${x.p.key} ${formatValue(x.p.exits_per_op)} · ${formatValue(x.f.exits_per_op)}`).join(", ") +
      " exits per operation (para · full). A system call, a page fault or a page-table write costs no exit in either mode: the core " +
      "runs the guest kernel in its own S-mode, so privileged work is trapped and emulated inside it, never in the VMM. " +
      (unexplained.length
        ? `Para is nevertheless slower on ${unexplained.map((x) => x.p.key).join(", ")} with fewer exits, so the exits do not explain the gap; ` +
          "the cause is not established. A candidate is placement: the guest's physical layout differs (OpenSBI keeps the bottom of RAM " +
          "in full mode), and the core's TLB is direct-mapped and its decoded-code cache 2-way, both indexed by address."
        : "The remaining differences are within the few exits above and run-to-run noise."));
  }
  return notes;
}

/** The same for nested vs shadow paging. */
function pagingNotes(nested: Machine | undefined, shadow: Machine | undefined): string[] {
  if (!nested || !shadow) return [];
  const notes: string[] = [];
  const perMiss = (w: Measured) => (w.delta.paging?.tlbMisses ? w.delta.paging.walkRefs / w.delta.paging.tlbMisses : 0);
  const random = nested.workloads.filter((w) => w.key.startsWith("randaccess_"));
  if (random.length) {
    const pairs = random.map((n) => ({ n, s: workload(shadow, n.key) })).filter((x): x is { n: Measured; s: Measured } => !!x.s);
    // With hardly any TLB misses the walk cannot be what differs.
    const missless = pairs.filter(({ n, s }) => (n.paging_per_op.tlbMisses ?? 0) < 0.01 && Math.abs(costRatio(s, n) - 1) >= 0.05);
    const last = pairs[pairs.length - 1];
    notes.push("- **Random reads** (TLB-miss-heavy): " + pairs.map(({ n, s }) =>
      `${n.label.replace("random reads, ", "")}: shadow ${compare(s, n)} nested (${formatValue(n.paging_per_op.tlbMisses ?? 0)} TLB misses per read)`).join("; ") + ". " +
      (last ? `A miss costs nested paging the two-dimensional walk, ${formatValue(perMiss(last.n))} memory references ` +
        `(every guest PTE address goes through the P2M), and shadow paging one walk of its shadow table, ${formatValue(perMiss(last.s))}: ` +
        "beyond the TLB's 1024 pages, where most reads miss, the shorter walk shows. " : "") +
      (missless.length
        ? `With ${missless.map(({ n }) => n.label.replace("random reads, ", "")).join(" and ")} there are almost no misses, so the walk does not ` +
          "explain the difference measured there; it comes from outside paging (the two modes run in separate boots, with different " +
          "physical placement in the core's direct-mapped TLB and 2-way decoded-code cache) and should not be read as a paging result."
        : "While the buffer fits the TLB there are few misses and the modes agree."));
  }
  for (const key of ["forkwait", "mmap"]) {
    const n = workload(nested, key), s = workload(shadow, key);
    if (!n || !s) continue;
    notes.push(`- **${n.label}** (page-table-update-heavy): shadow is ${compare(s, n)} nested, with ` +
      `${formatValue(s.paging_per_op.ptWriteTraps ?? 0)} page-table write traps and ${formatValue(s.paging_per_op.shadowFaults ?? 0)} shadow faults per ${s.op}. ` +
      "On hardware each of those traps would be a VM exit (around a microsecond), which is why shadow paging loses on page-table-heavy work " +
      "there; in wasmvisor the trap is handled inside the core, costing about one emulated store and a few table writes, so the " +
      "cheaper TLB misses can still make up for it.");
  }
  return notes;
}

function fullVsParaSection(r: GuestSuiteResult): Section {
  const ms = r.machines;
  const names = ms.map(machineName);
  // The guest's device, its driver, and the device model that served the workload.
  const device = (d: Machine["disk"], w: Measured | undefined) => {
    const model = busiestDevice(w);
    return d ? `${d.name} (${d.driver}${model ? `; MMIO: ${model}` : ""})` : "none";
  };
  const find = (mode: string, paging: string) => ms.find((m) => m.mode === mode && m.paging === paging);
  const shadow = ms.filter((m) => m.paging === "shadow");
  const throughput = ms[0].workloads.filter((w) => w.metric === "MB/s");
  const base = ms[0];
  const plots = [
    {
      file: "fullvspara-throughput.svg",
      svg: barChart({
        title: "Disk and network throughput", axis: "MB/s (higher is better)", series: machineSeries(ms),
        groups: throughput.map((w0) => ({ label: w0.label.replace(/ \(.*\)$/, ""), values: ms.map((m) => workload(m, w0.key)?.value ?? null) })),
      }),
    },
    {
      // The throughputs have their own chart (absolute MB/s): their ratios can dwarf the rest.
      file: "fullvspara-relative.svg",
      svg: barChart({
        title: `Other workloads: cost per operation relative to ${machineName(base)}`, axis: `× ${machineName(base)} (lower is better)`,
        series: machineSeries(ms),
        groups: base.workloads.filter((w0) => !throughput.includes(w0)).map((w0) => ({
          label: w0.key, values: ms.map((m) => {
            const w = workload(m, w0.key);
            return w ? costRatio(w, w0) : null;
          }),
        })),
      }),
    },
  ];
  return {
    markdown: "## Full vs para virtualization\n\n" +
      `The Linux guest of \`guests/linux\` (one hart, ${r.memory_mib} MiB) boots in each machine mode — **para**: the built-in SBI ` +
      "and virtio devices; **full**: Debian's OpenSBI in the guest and the full machine's default devices, as `wasmvisor boot --mode full` " +
      `has them — under each paging mode, and runs the same workloads, ${runsText(r)}. The disk and NIC are the ones the guest found:\n\n` +
      table(["machine", "disk", "NIC", "console", "exits in an empty window"], ["---", "---", "---", "---", "---:"],
        ms.map((m) => [machineName(m), device(m.disk, workload(m, "disk_read")), device(m.nic, workload(m, "tcp-rx")), m.console, `${m.gate_exits}`])) + "\n\n" +
      "Each workload runs between two gates at which the host reads the VM's counters (the gates' own exits are the last column above). " +
      "Disk: `dd` on the raw device with O_DIRECT, 64 KiB blocks. Console: `wv-bench console` writing 64-byte lines to the console, " +
      "timed until the terminal has sent them. Network: TCP to and from a server in the benchmark process (10.0.2.2, user-mode " +
      "networking), and `ping -A` to 10.0.2.2 (answered by the VMM). Timer: `nanosleep` of 1 ms in a loop. The microbenchmarks follow " +
      "Adams & Agesen (ASPLOS 2006). MB = 10⁶ bytes; ↑ higher is better, ↓ lower is better.\n\n" +
      table(["workload", "unit", ...names], ["---", "---", ...names.map(() => "---:")],
        perWorkload(ms, (w) => formatValue(w.value), (w) => [w.label, `${w.metric}${w.better === "higher" ? " ↑" : " ↓"}`])) + "\n\n" +
      "Exits per operation (returns from the core to the host: MMIO, SBI calls, WFI halts...; not the VMM's time-slice ends) · host " +
      "time per exit (handling MMIO, SBI and tohost exits):\n\n" +
      table(["workload", "per", ...names], ["---", "---", ...names.map(() => "---:")],
        perWorkload(ms, (w) => `${formatValue(w.exits_per_op)} · ${usPerExit(w)}`, (w) => [w.label, w.op])) + "\n\n" +
      (shadow.length
        ? "Under shadow paging the core also traps the guest's writes to its page tables; it handles them itself, so they are not " +
          "exits. Page-table write traps per operation:\n\n" +
          table(["workload", "per", ...shadow.map(machineName)], ["---", "---", ...shadow.map(() => "---:")],
            perWorkload(shadow, (w) => formatValue(w.paging_per_op.ptWriteTraps ?? 0), (w) => [w.label, w.op])) + "\n\n"
        : "") +
      "**What the figures say** (nested paging; the shadow columns agree unless the paging section says otherwise):\n\n" +
      fullVsParaNotes(find("para", "nested"), find("full", "nested")).join("\n"),
    plots,
  };
}

function pagingSection(r: GuestSuiteResult): Section {
  const nested = r.machines.find((m) => m.paging === "nested");
  const shadow = r.machines.find((m) => m.paging === "shadow");
  const ms = [nested, shadow].filter((m): m is Machine => !!m);
  const per = (w: Measured | undefined, counter: string) => (w ? formatValue(w.paging_per_op[counter] ?? 0) : "—");
  const walkPerMiss = (w: Measured | undefined) => {
    const p = w?.delta.paging;
    return p && p.tlbMisses ? formatValue(p.walkRefs / p.tlbMisses) : "—";
  };
  const rows = ms[0].workloads.map((w0) => {
    const n = nested && workload(nested, w0.key), s = shadow && workload(shadow, w0.key);
    const pair = (f: (w: Measured | undefined) => string) => `${f(n)} · ${f(s)}`;
    return [w0.label, w0.metric, n ? formatValue(n.value) : "—", s ? formatValue(s.value) : "—", n && s ? `${formatValue(costRatio(s, n))}×` : "—",
      pair((w) => per(w, "tlbMisses")), pair(walkPerMiss), per(s, "shadowFaults"), per(s, "ptWriteTraps"),
      pair((w) => (w ? formatValue(w.exits_per_op) : "—"))];
  });
  const svg = barChart({
    title: "Nested vs shadow paging: cost per operation", axis: "× nested (lower is better)", series: machineSeries(ms),
    groups: ms[0].workloads.map((w0) => ({
      label: w0.key.replace(/^randaccess_(\d+)$/, "random $1 MiB"),
      values: ms.map((m) => {
        const w = workload(m, w0.key), base = nested && workload(nested, w0.key);
        return w && base ? costRatio(w, base) : null;
      }),
    })),
  });
  const mode = ms[0].mode;
  return {
    markdown: "## Paging: nested vs shadow\n\n" +
      `The Linux guest (${mode} mode, ${r.memory_mib} MiB) under each paging mode, ${runsText(r)}. TLB-miss-heavy: random 8-byte reads ` +
      "over a resident buffer (`wv-bench randaccess`); the core's TLB maps 1024 pages (4 MiB), so larger buffers miss it on most reads. " +
      "Page-table-update-heavy: forkwait and mmap/munmap churn. On a TLB miss, nested paging walks the guest's page table through the " +
      "P2M (walk references per miss); shadow paging walks its shadow table, filled on shadow faults and kept coherent by trapping the " +
      "guest's page-table writes inside the core (not exits).\n\n" +
      table(["workload", "unit", "nested", "shadow", "shadow / nested", "TLB misses per op (nested · shadow)", "walk refs per miss (nested · shadow)",
        "shadow faults per op", "PT write traps per op", "exits per op (nested · shadow)"],
      ["---", "---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:"], rows) + "\n\n" +
      `Per op: per ${[...new Set(ms[0].workloads.map((w) => w.op))].join(", per ")}.\n\n` +
      "**What the figures say:**\n\n" + pagingNotes(nested, shadow).join("\n"),
    plots: [{ file: "paging.svg", svg }],
  };
}

function hypervisorSection(h: HypervisorResult): Section {
  const svg = barChart({
    title: "CPU shares on one pCPU: weights 1:2:4", axis: "share of the pCPU", series: [{ name: "measured", color: COLORS.wasmvisor }, { name: "by weight", color: COLORS.qemu }],
    groups: h.fairness.weights.map((w, i) => ({ label: `weight ${w}`, values: [h.fairness.shares[i] * 100, h.fairness.expected[i] * 100] })),
  });
  const d = h.density;
  return {
    markdown: "## The hypervisor: many VMs on one host\n\n" +
      "Through the embedding API (`Hypervisor`, what `wasmvisor host` serves). CPU-bound VMs are a two-instruction bare-metal loop; " +
      `shares come from the scheduler's accounting over ${h.fairness.seconds} s windows after a warm-up.\n\n` +
      table(["measure", "result", "setting"], ["---", "---:", "---"], [
        ["weights 1:2:4 on one pCPU", h.fairness.shares.map(pct).join(" · "), `expected ${h.fairness.expected.map(pct).join(" · ")}; worst ${pct(h.fairness.worst_error)} off`],
        ["4 equal weights on one pCPU: Jain's index", h.equal.jain.toFixed(4), h.equal.shares.map(pct).join(" · ")],
        ["a VM capped at 25% against an uncapped one", pct(h.cap.share), `the other VM: ${pct(h.cap.competitor_share)}`],
        ["3 busy VMs, 2 pCPUs (two started on one)", `${pct(h.balance.busy)} busy`, `the balancer moved ${h.balance.moves} VM(s) after ${formatValue(h.balance.reaction_s)} s; spread over both: ${h.balance.spread ? "yes" : "no"}; utilisation measured after that`],
        ...h.isolation.layouts.map((l) => [`console echo, sharing a pCPU with ${l.with}`, `p99 ${formatValue(l.p99_ms)} ms`, `p50 ${formatValue(l.p50_ms)} ms over ${l.samples} keys`]),
        [`${d.vms} Linux VMs of ${d.memory_mib} MiB at once`, `${d.running} running`, `all at their prompts ${formatValue(d.total_s)} s after the first create`],
        ["host memory per VM beyond the guest RAM it touched", `${formatValue(d.overhead_mib_per_vm)} MiB`, `guest RAM touched: ${formatValue(d.guest_touched_mib_per_vm)} MiB per VM (process RSS, before and after)`],
        ["VM start: create (build the machine)", `${formatValue(d.create_ms.p50)} ms p50`, `max ${formatValue(d.create_ms.max)} ms`],
        ["VM start: Linux to its prompt, with the others booting", `${formatValue(d.ready_s.p50)} s p50`, `max ${formatValue(d.ready_s.max)} s`],
        [`the host while all ${d.vms} idle at their prompts`, `${formatValue(d.idle_cpu * 100)}% of one core`, "all threads (process CPU time over 5 s): halted vCPUs are out of the run queue; tickless guests rarely wake"],
      ]) + "\n\n" +
      "**What the figures say:** proportional share follows the weights because each VM's virtual time advances by CPU time divided " +
      "by its weight and the least advanced runs next; the cap is enforced per 100 ms period, so a capped VM waits even when the " +
      "pCPU would idle. The echo latency stays low next to a spinning VM because the pCPU preempts in steps of about 1 ms, and a " +
      "VM woken by an interrupt (a key) is boosted ahead of the CPU hog; next to a disk flood it stays low because disk requests " +
      "are handled in the flooding VM's own time slices. For scale, Firecracker quotes at most 5 MiB of VMM memory per microVM " +
      "and about 125 ms to start one; a wasmvisor VM's fixed cost is mostly its decoded-code cache (see the memory suite).",
    plots: [{ file: "hypervisor.svg", svg }],
  };
}

function containersSection(c: ContainersResult, qemuBars: Series): Section {
  const CONTAINER: Series = { name: `container (${c.runtime.name})`, color: COLORS.container };
  const VM: Series = { name: "wasmvisor VM", color: COLORS.wasmvisor };
  const INTERP: Series = { name: "wasmvisor, interpreter", color: COLORS.interpreter };
  const qemu = c.startup.qemu.length > 0;
  const d = c.density;
  const ms = (xs: number[]) => `${formatValue(median(xs))} ms`;
  const sec = (xs: number[]) => `${formatValue(median(xs))} s`;
  const times = (a: number, b: number) => (a > b ? `${formatValue(a / b)}×` : `1/${formatValue(b / a)}`);
  const vmCost = (w: ContainersResult["workloads"][number]) => (w.better === "higher" ? w.container / w.vm : w.vm / w.container);
  const micro = c.workloads.filter((w) => w.unit !== "MB/s");
  const io = c.workloads.filter((w) => w.unit === "MB/s");
  const cpuQemu = c.cpu.every((p) => p.qemu.length > 0);
  const budget = 1024;
  const plots = [
    { file: "containers-startup.svg", svg: barChart({ title: "Start-up to the first line of output", axis: "ms (lower is better)",
      series: [CONTAINER, VM, ...(qemu ? [qemuBars] : [])],
      groups: [{ label: "process start → first line", values: [median(c.startup.container), median(c.startup.vm), ...(qemu ? [median(c.startup.qemu)] : [])] }] }) },
    { file: "containers-memory.svg", svg: barChart({ title: `Host memory per instance, ${d.instances} idle at once`, axis: "MiB (lower is better)",
      series: [CONTAINER, VM], groups: [{ label: "per instance", values: [d.container_mib, d.vm_mib] }] }) },
    { file: "containers-density.svg", svg: barChart({ title: `${d.instances} instances started at once: until all have printed`, axis: "seconds (lower is better)",
      series: [CONTAINER, VM], groups: [{ label: `${d.instances} at once`, values: [d.container_total_s, d.vm_total_s] }] }) },
    { file: "containers-cpu.svg", svg: barChart({ title: "BusyBox md5sum and sha256sum over the same bytes", axis: "seconds (lower is better)",
      series: [CONTAINER, INTERP, { ...VM, name: "wasmvisor, translated" }, ...(cpuQemu ? [qemuBars] : [])],
      groups: c.cpu.map((p) => ({ label: p.program, values: [median(p.container), median(p.interpreter), median(p.translated), ...(cpuQemu ? [median(p.qemu)] : [])] })) }) },
    { file: "containers-syscalls.svg", svg: barChart({ title: "System calls and the kernel's memory work (wv-bench)", axis: "µs per operation (lower is better)",
      series: [CONTAINER, VM], groups: micro.map((w) => ({ label: w.key, values: [w.container, w.vm] })) }) },
    { file: "containers-io.svg", svg: barChart({ title: "Disk and network throughput", axis: "MB/s (higher is better)",
      series: [CONTAINER, VM], groups: io.map((w) => ({ label: w.label.replace(/ \(.*\)$/, ""), values: [w.container, w.vm] })) }) },
  ];
  const rows = [
    ["start-up: process start to the first line of output", ms(c.startup.container), ms(c.startup.vm), times(median(c.startup.vm), median(c.startup.container))],
    [`memory per instance, ${d.instances} idle at once`, `${formatValue(d.container_mib)} MiB`, `${formatValue(d.vm_mib)} MiB (${d.vm_memory_mib} MiB guests)`, times(d.vm_mib, d.container_mib)],
    [`instances in ${budget} MiB at that rate`, `${Math.floor(budget / d.container_mib)}`, `${Math.floor((budget - d.vm_fixed_mib) / d.vm_mib)} (after the ${formatValue(d.vm_fixed_mib)} MiB of the process running the hypervisor, here the bench, before its first VM)`, ""],
    [`${d.instances} started at once: until all have printed`, `${formatValue(d.container_total_s)} s`, `${formatValue(d.vm_total_s)} s`, times(d.vm_total_s, d.container_total_s)],
    ...c.cpu.map((p) => [`CPU: \`${p.command.replace(/\|/g, "\\|")}\``, sec(p.container),
      `${sec(p.translated)} translated; ${sec(p.interpreter)} interpreted${p.qemu.length ? `; QEMU ${sec(p.qemu)}` : ""}`, times(median(p.translated), median(p.container))]),
    ...c.workloads.map((w) => [`${w.label} (${w.unit}${w.better === "higher" ? " ↑" : " ↓"})`, formatValue(w.container), formatValue(w.vm), times(vmCost(w), 1)]),
  ];
  return {
    markdown: "## Hypervisor against container\n\n" +
      `The same workload as a wasmvisor VM and as a container, on this machine. **VM**: the Linux guest of \`guests/linux\` (riscv64: its kernel, ` +
      "BusyBox and wv-bench), para mode. **Container**: " +
      `${c.runtime.version.replace(/^crun version/, "Debian's crun")} running an OCI bundle (\`bench/container.ts\`) whose root filesystem is the same userland built for this machine ` +
      `from the same sources: static BusyBox from the same Debian source package (${c.runtime.busybox}) and \`guests/linux/bench/wv-bench.c\`, compiled with ${c.runtime.gcc} ` +
      "(`buildHostUserland()` in `guests/linux/build.mjs`); new PID, mount, IPC, UTS and network namespaces, a read-only root, a tmpfs on /tmp, its own cgroup. " +
      "crun rather than runc or bubblewrap: it is the OCI runtime Debian packages with the least between the request and the process (a C program, no " +
      "daemon, no shim left running), and an OCI bundle is what Docker, Podman and Kubernetes hand to their runtime." +
      (c.runtime.hybrid_cgroups ? " This host mixes cgroup v1 controllers with a cgroup v2 hierarchy that has one of its own (hugetlb), which crun refuses " +
        "(\"cgroups in hybrid mode not supported\"); each crun command therefore runs in a private mount namespace without `/sys/fs/cgroup/unified`, where " +
        "crun sees plain cgroup v1 (a `unshare` and an `umount` more per command, included in the container's times)." : "") +
      `\n\nStart-up: from spawning \`crun run\` (its command: \`echo\`) or \`wasmvisor boot --mode para\` to the first line the instance prints (the VM's: its /init's \`${"wasmvisor guest ready"}\`, after the kernel's boot)` +
      `${qemu ? "; QEMU: `qemu-system-riscv64` with OpenSBI and the same kernel and initramfs" : ""}. ` +
      `Many at once: ${d.instances} containers (\`crun run --detach\`, each a shell that prints a line and sleeps) and ${d.instances} VMs of ${d.vm_memory_mib} MiB in one hypervisor with 2 pCPUs (the hypervisor suite's way); ` +
      "memory per container is its cgroup's `memory.usage_in_bytes` (its processes, page cache and kernel memory charged to it; crun itself has exited), " +
      `per VM the growth of the hypervisor process's resident set divided by ${d.instances} (guest RAM touched included). CPU: BusyBox's md5sum and sha256sum, timed by BusyBox's \`time\` ` +
      "(10 ms resolution: the container's figures have one or two digits), in the VM with the interpreter alone, with the translation tier, and on QEMU (full mode, one boot each). " +
      "Microbenchmarks and throughput: fullvspara's workloads, the same commands on both sides (the VM with `--jit on`); the container's disk is a 64 MiB file on the host's ext4 " +
      "bind-mounted as `/dev/wvdisk` (`dd` with O_DIRECT reaches the host's disk), the VM's its virtio-blk disk over a raw image file; the container's network is a " +
      "veth pair to the host (Docker's bridge without the bridge), the VM's virtio-net through user-mode networking to the same kind of server in the bench process. " +
      `The last column is how many times the VM's cost (time, memory) is the container's. Medians of the runs.` +
      (c.host_virtualized ? " This machine is itself a virtual machine (`hypervisor` in /proc/cpuinfo): its kernel, and so the containers, run under a hypervisor too." : "") + "\n\n" +
      table(["measure", `container (${c.runtime.name})`, "wasmvisor VM", "VM / container"], ["---", "---:", "---:", "---:"], rows) + "\n\n" +
      `**What each isolates**: what a process inside sees or reaches, probed from inside (\`isolationProbe()\` in \`bench/containers.ts\`) while another instance runs beside it. The host runs Linux ${c.host_kernel}.\n\n` +
      table(["a process inside…", `container (${c.runtime.name})`, "wasmvisor VM"], ["---", "---", "---"], c.isolation.map((r) => [r.what, r.container.replace(/\|/g, "\\|"), r.vm.replace(/\|/g, "\\|")])) + "\n\n" +
      "**What the figures say:** a container is a process tree of the host's kernel with a restricted view: it starts in milliseconds and costs the host its " +
      "processes' memory, and its code runs natively, so its system calls and I/O go straight to the host kernel. The VM brings its own kernel, which boots " +
      "first, its own RAM, and a riscv64 CPU emulated in WebAssembly, so compute runs an interpreter or translated code and every device access goes through " +
      "the VMM. In exchange the container shares the host kernel's whole system-call surface (here without a seccomp filter, and as root without a user " +
      "namespace), while the VM's processes only reach its own kernel; the VM's user-mode network, on the other hand, reaches services on the host's loopback, " +
      "which the container's own network namespace does not.",
    plots,
  };
}

function snapshotSection(s: SnapshotBench, qemuName: string): Section {
  const q = s.qemu;
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
  return {
    markdown: "## Snapshots\n\n" +
      `${s.guest}; median of ${s.runs}. wasmvisor: \`ctl snapshot\` of the running VM (a first pass over memory while it runs, then ` +
      "it stops for the pages written meanwhile and its devices) and `ctl restore` (RAM comes in from the snapshot on first touch). " +
      `${qemuName}: HMP \`savevm\` / \`loadvm\` into a qcow2 scratch disk (its VM state is stored inside the image).\n\n` +
      table(["measure", "wasmvisor", qemuName], ["---", "---:", "---:"], [
        ["size of the saved state", mib(s.wasmvisor.bytes), q ? mib(q.bytes) : "—"],
        ["time to save", `${formatValue(s.wasmvisor.save_ms)} ms`, q ? `${formatValue(q.savevm_ms)} ms` : "—"],
        ["the guest stopped for", `${formatValue(s.wasmvisor.paused_ms)} ms`, q ? `${formatValue(q.savevm_ms)} ms (savevm stops the VM)` : "—"],
        ["restore: request to running", `${formatValue(s.wasmvisor.restore_ms)} ms`, q ? `${formatValue(q.loadvm_ms)} ms (loadvm)` : "—"],
        ["restore: request to the first command's answer", `${formatValue(s.wasmvisor.first_answer_ms)} ms`, "—"],
      ]),
  };
}

function migrationSection(m: MigrationBench, qemuName: string): Section {
  const row = (label: string, w: MigrationRun, q: MigrationRun | null) => [label,
    `${formatValue(w.total_ms)} ms`, q ? `${formatValue(q.total_ms)} ms` : "—",
    `${(w.bytes / 2 ** 20).toFixed(1)} MiB`, q ? `${(q.bytes / 2 ** 20).toFixed(1)} MiB` : "—",
    `${formatValue(w.downtime_ms)} / ${formatValue(w.guest_gap_ms)} ms`, q ? `${formatValue(q.downtime_ms)} / ${formatValue(q.guest_gap_ms)} ms` : "—",
    `${w.rounds ?? "—"}${w.postcopy ? ` (then post-copy: ${w.postcopy.pages} pages followed, ${w.postcopy.asked} on request)` : w.converged === false ? " (did not converge: stopped anyway)" : ""}`];
  const svg = barChart({
    title: "Live migration: the longest pause the guest saw", axis: "ms (lower is better)", series: [WASMVISOR, { name: qemuName, color: COLORS.qemu }],
    groups: [{ label: "idle", values: [m.idle.wasmvisor.guest_gap_ms, m.idle.qemu?.guest_gap_ms ?? 0] },
      ...m.dirtying.map((d) => ({ label: `${d.rate_mib_s} MiB/s`, values: [d.wasmvisor.guest_gap_ms, d.qemu?.guest_gap_ms ?? 0] })),
      ...m.dirtying.filter((d) => d.wasmvisor_postcopy).map((d) => ({ label: `${d.rate_mib_s} MiB/s, post-copy`, values: [d.wasmvisor_postcopy!.guest_gap_ms, 0] }))],
  });
  return {
    markdown: "## Live migration\n\n" +
      `${m.guest}; median of ${m.runs} (the dirtying rows: fewer). wasmvisor: two hypervisors, TLS (ECDHE-PSK, ChaCha20-Poly1305) ` +
      `over 127.0.0.1, downtime limit ${m.downtime_limit_ms.wasmvisor} ms; ${qemuName}: two processes, \`migrate tcp:\`, its default ` +
      `downtime limit (${m.downtime_limit_ms.qemu} ms). The guest runs \`wv-bench gap\`, a tight loop over its monotonic clock that reports ` +
      "the longest pause it saw, across the migration: that is the downtime as the guest lives it. Without any migration the loop's " +
      `longest pause is ${formatValue(m.baseline_gap_ms.wasmvisor)} ms on wasmvisor and ${m.baseline_gap_ms.qemu === null ? "—" : `${formatValue(m.baseline_gap_ms.qemu)} ms`} on QEMU.\n\n` +
      table(["guest", "total, wasmvisor", `total, ${qemuName}`, "sent, wasmvisor", `sent, ${qemuName}`, "downtime reported / seen by the guest, wasmvisor", `… ${qemuName}`, "rounds"],
        ["---", "---:", "---:", "---:", "---:", "---:", "---:", "---:"],
        [row("idle", m.idle.wasmvisor, m.idle.qemu), ...m.dirtying.map((d) => row(`dirtying ${d.rate_mib_s} MiB/s`, d.wasmvisor, d.qemu)),
          ...m.dirtying.filter((d) => d.wasmvisor_postcopy).map((d) => row(`dirtying ${d.rate_mib_s} MiB/s, post-copy allowed (\`--postcopy\`)`, d.wasmvisor_postcopy!, null))]) +
      "\n\nWith post-copy allowed, a migration whose pre-copy does not converge moves the VM at once and sends the pages it still " +
      "needs after it, those it touches first on request: the pause the guest sees is then the switch-over's, and the pages it waits " +
      "for while it already runs at the destination.",
    plots: [{ file: "migration.svg", svg }],
  };
}

/** The report's Markdown and its plots (file name -> SVG text, linked as results/<file>). */
/** A figure both runs can have: what it is, its value, and which way is better. */
interface Headline {
  label: string;
  value: number;
  unit: string;
  better: "higher" | "lower";
}

// A run without QEMU's start-up subtracted has another QEMU figure: the two are not set side by side.
const qemuCpuLabel = (r: BenchResult) =>
  typeof r.cpu?.qemu_startup_s === "number" ? "CPU: QEMU's geometric mean, start-up subtracted (the machine)" : "CPU: QEMU's geometric mean (the machine)";

function headlines(r: BenchResult): Headline[] {
  const out: Headline[] = [];
  const add = (label: string, value: number | null | undefined, unit: string, better: Headline["better"]) => {
    if (value !== null && value !== undefined && Number.isFinite(value)) out.push({ label, value, unit, better });
  };
  add("CPU: geometric mean", r.cpu?.mips, "MIPS", "higher");
  add(qemuCpuLabel(r), r.cpu?.qemu_mips, "MIPS", "higher");
  add("CPU: QEMU's start-up (the machine)", r.cpu?.qemu_startup_s, "s", "lower");
  add("Boot to shell prompt, para", r.boot?.linux_para_s, "s", "lower");
  add("Boot to shell prompt, full (OpenSBI)", r.boot?.linux_full_s, "s", "lower");
  add("Boot to shell prompt, QEMU (the machine)", r.boot?.qemu_linux_s, "s", "lower");
  for (const row of r.exits?.rows ?? []) add(`Exit: ${row.label}`, row.mean_us, "µs", "lower");
  add("Memory: overhead per VM", r.memory?.overhead_mib, "MiB", "lower");
  add("Memory: overhead per VM, --jit on", r.memory?.translated?.overhead_mib, "MiB", "lower");
  for (const [suite, result] of [["Full vs para", r.fullvspara], ["Paging", r.paging]] as const) {
    for (const m of result?.machines ?? []) for (const w of m.workloads) add(`${suite}, ${m.mode}/${m.paging}: ${w.label}`, w.value, w.metric, w.better);
  }
  if (r.hypervisor) {
    const h = r.hypervisor;
    add("Hypervisor: weights 1:2:4, worst share error", h.fairness.worst_error * 100, "%", "lower");
    add("Hypervisor: host busy, 3 VMs on 2 pCPUs", h.balance.busy * 100, "%", "higher");
    add("Hypervisor: console echo p99, worst layout", Math.max(...h.isolation.layouts.map((l) => l.p99_ms)), "ms", "lower");
  }
  if (r.snapshot) {
    add("Snapshot: save, idle 256 MiB", r.snapshot.wasmvisor.save_ms, "ms", "lower");
    add("Snapshot: restore to running", r.snapshot.wasmvisor.restore_ms, "ms", "lower");
  }
  if (r.migration) {
    add("Migration: idle, total", r.migration.idle.wasmvisor.total_ms, "ms", "lower");
    add("Migration: idle, pause the guest saw", r.migration.idle.wasmvisor.guest_gap_ms, "ms", "lower");
  }
  if (r.containers) {
    const c = r.containers;
    add("Containers: VM start-up to its first line", median(c.startup.vm), "ms", "lower");
    add("Containers: container start-up to its first line (the machine)", median(c.startup.container), "ms", "lower");
    add("Containers: host memory per VM", c.density.vm_mib, "MiB", "lower");
    for (const w of c.workloads) add(`Containers: ${w.label}, VM`, w.vm, w.unit, w.better);
  }
  if (r.browser) {
    add("Browser: Chromium's geometric mean", r.browser.browser_mips, "MIPS", "higher");
    if (r.browser.linux) add("Browser: Linux boot in the page, from a cold load", r.browser.linux.page_cold_s, "s", "lower");
  }
  add("SMP: 2 processes on 2 vCPUs, speed-up over 1", r.smp?.wasmvisor.speedup, "×", "higher");
  return out;
}

/**
 * This run's figures beside the run it replaced (bench/results/previous.json), so a change's
 * effect is read off the report. QEMU's own figures on the same machine show how far the
 * machine itself drifted between the runs: changes within that are noise. A run on another
 * machine (the bench machine is not always the same host) is said to be one.
 */
function previousRunSection(prev: BenchResult, r: BenchResult): string {
  const before = new Map(headlines(prev).map((h) => [h.label, h]));
  const rows = headlines(r).filter((h) => before.has(h.label)).map((h) => {
    const p = before.get(h.label)!;
    const change = p.value === 0 ? 0 : (h.value - p.value) / p.value;
    const sign = change > 0 ? "+" : "";
    const worse = h.better === "higher" ? change < 0 : change > 0;
    return [h.label, `${formatValue(p.value)} ${h.unit}`, `${formatValue(h.value)} ${h.unit}`, `${sign}${(change * 100).toFixed(1)}%${worse && Math.abs(change) >= 0.05 ? " (worse)" : ""}`];
  });
  const drift = (label: string) => {
    const a = before.get(label)?.value, b = headlines(r).find((h) => h.label === label)?.value;
    return a && b ? `${(((b - a) / a) * 100).toFixed(1)}%` : null;
  };
  const qemu = [drift(qemuCpuLabel(r)) && `QEMU's CPU figure moved ${drift(qemuCpuLabel(r))}`,
    drift("Boot to shell prompt, QEMU (the machine)") && `its boot time ${drift("Boot to shell prompt, QEMU (the machine)")}`].filter(Boolean);
  return "## Against the previous run\n\n" +
    `The run this one replaced was made on ${prev.date}${prev.quick ? " (quick mode)" : ""}. ` +
    (prev.machine?.cpu && prev.machine.cpu !== r.machine.cpu ? `It ran on another machine (${prev.machine.cpu}, ${prev.machine.cores} cores): ` +
      `the changes below are mostly the machines'${qemu.length ? `, as QEMU's own show: ${qemu.join(" and ")}` : ""}. `
      : qemu.length ? `Between the two, ${qemu.join(" and ")} on the same machine: differences of that size are the machine's, not wasmvisor's. ` : "") +
    "A change of 5% or more in the wrong direction is marked.\n\n" +
    table(["figure", "previous run", "this run", "change"], ["---", "---:", "---:", "---:"], rows);
}

// Which figures an --only run kept from earlier runs, grouped by the run that measured them.
function carriedNote(carried: BenchResult["carried"]): string {
  if (!carried) return "";
  const byDate = new Map<string, string[]>();
  for (const [suite, date] of Object.entries(carried)) byDate.set(date!, [...(byDate.get(date!) ?? []), suite]);
  return " This run measured only some suites; the others are kept from earlier runs: " +
    [...byDate].map(([date, suites]) => `${suites.join(", ")} from ${date}`).join("; ") + ".";
}

// `npm run fuzz`'s figures (fuzz/results/latest.json): they come from their own run, not the benchmark's.
function fuzzSection(f: FuzzResults): Section {
  const rows = f.targets.map((t) => [t.target, `${(t.date ?? f.date).slice(0, 16).replace("T", " ")}, ${t.mode ?? f.mode}`, `${t.iterations}`, t.execsPerSecond.toFixed(0), `${t.blocks}`, `${t.corpus}`, `${t.crashes}`, `${t.hangs}`,
    t.iterations >= ITERATIONS_GOAL && t.crashes + t.hangs === 0 ? "yes" : "not yet"]);
  const found = f.targets.flatMap((t) => t.found.map((line) => `- ${t.target}: ${line.replace(/\|/g, "\\|")}`));
  return {
    markdown: "## Fuzzing\n\n" +
      `\`npm run fuzz\` (last run: ${f.mode}, seed ${f.seed}${f.coverage ? ", coverage-guided" : ", without coverage"}, ${f.date}, Node ${f.machine.node}; a run of some targets keeps the others' figures): ` +
      "each target on a worker thread of its own for the time given; blocks are the distinct blocks of `host/` code the target's inputs ran (V8 block coverage); " +
      `the corpus is the inputs kept for reaching something new. The issue asks for ${ITERATIONS_GOAL.toLocaleString("en")} iterations per target with nothing found. ` +
      "Figures: `fuzz/results/latest.json`.\n\n" +
      table(["target", "run (UTC), time asked", "iterations", "inputs/s", "blocks", "corpus", "crashes", "hangs", `≥ 10⁶, clean`], ["---", "---", "---:", "---:", "---:", "---:", "---:", "---:", "---"], rows) +
      (found.length ? `\n\nFound in this run (inputs in \`fuzz/crashes/\`):\n\n${found.join("\n")}` : "") +
      (f.coreDiff ? coreDiffParagraph(f.coreDiff) : ""),
  };
}

// The core's differential target: its own figures (programs, not coverage-guided inputs).
function coreDiffParagraph(c: CoreDiffResult): string {
  const allowed = Object.entries(c.explained).sort((a, b) => b[1] - a[1]);
  const clean = c.programs >= PROGRAMS_GOAL && c.differences === 0 ? "yes" : "not yet";
  return "\n\n### The core against QEMU (core-diff)\n\n" +
    `Random and mutated RV64GC cases, each run on ${c.qemu} (\`-cpu ${c.qemuCpu}\`) and on wasmvisor's core (${c.tiers.map((t) => (t === "off" ? "interpreted" : `\`jit: "${t}"\``)).join(", ")}), ` +
    `their final state compared. The issue asks for ${PROGRAMS_GOAL.toLocaleString("en")} programs with no unexplained difference.\n\n` +
    table(["run (UTC), time asked", "programs", "programs/s", "unexplained differences", `≥ 10⁵, clean`], ["---", "---:", "---:", "---:", "---"],
      [[`${c.date.slice(0, 16).replace("T", " ")}, ${c.mode}, seed ${c.seed}`, `${c.programs}`, c.programsPerSecond.toFixed(0), `${c.differences}`, clean]]) +
    (c.cutShort ? cutShortSentence(c) : "") +
    (allowed.length ? `\n\nCases with an allowed difference (\`fuzz/core-diff/compare.ts\` gives each reason):\n\n${allowed.map(([why, n]) => `- ${n}: ${why.replace(/\|/g, "\\|")}`).join("\n")}` : "") +
    (c.found.length ? `\n\nDifferences found (reproducers in \`fuzz/crashes/core-diff/\`):\n\n${c.found.map((l) => `- ${l.replace(/\|/g, "\\|")}`).join("\n")}` : "");
}

// How many cases an allowed difference that decides the rest of the case excused whole.
function cutShortSentence(c: CoreDiffResult): string {
  const n = Object.values(c.cutShort ?? {}).reduce((a, b) => a + b, 0);
  const features = Object.entries(c.features ?? {}).sort((a, b) => b[1] - a[1]);
  return `\n\n${n} cases (${((100 * n) / Math.max(1, c.programs)).toFixed(1)}%) were compared short of their whole record: an allowed difference that decides how the rest runs excused the rest.` +
    (features.length ? ` Cases that exercised the generator's newer features: ${features.map(([what, k]) => `${what} ${((100 * k) / Math.max(1, c.programs)).toFixed(1)}%`).join("; ")}.` : "");
}

export function renderReport(r: BenchResult, previous?: BenchResult, fuzz?: FuzzResults): { markdown: string; plots: Record<string, string> } {
  const m = r.machine;
  const sections = [
    r.cpu && cpuSection(r.cpu, r.quick, qemuSeries(m)), r.guestint && guestIntSection(r.guestint), r.boot && bootSection(r.boot, qemuSeries(m)), r.exits && exitsSection(r.exits), r.memory && memorySection(r.memory),
    r.fullvspara && fullVsParaSection(r.fullvspara), r.paging && pagingSection(r.paging), r.hypervisor && hypervisorSection(r.hypervisor),
    r.snapshot && snapshotSection(r.snapshot, qemuSeries(m).name), r.migration && migrationSection(r.migration, qemuSeries(m).name),
    r.browser && browserSection(r.browser, r.quick), r.containers && containersSection(r.containers, qemuSeries(m)), r.smp && smpSection(r.smp, qemuSeries(m)), fuzz && fuzzSection(fuzz),
  ].filter((s): s is Section => !!s);
  const plots: Record<string, string> = {};
  const body = sections.map((s) => [s.markdown, ...(s.plots ?? []).map((p) => {
    plots[p.file] = p.svg;
    return `![${p.file}](results/${p.file})`;
  })].join("\n\n"));
  const markdown = [
    "# wasmvisor benchmark report",
    `Generated by \`${r.command}\` on ${r.date}${r.quick ? " — **quick mode**: one run each, fewer iterations; indicative only" : ""}. ` +
    "Figures: `bench/results/latest.json`." +
    carriedNote(r.carried),
    "## Machine\n\n" + table(["CPU", "cores", "memory", "OS", "kernel", "Node", "QEMU"], ["---", "---:", "---:", "---", "---", "---", "---"],
      [[m.cpu, `${m.cores}`, `${m.memoryGiB} GiB`, m.os, m.kernel, m.node, m.qemu ?? "not installed"]]),
    "## Targets\n\n" + table(["target", "measured", "result"], ["---", "---:", "---"],
      checkTargets(r).map((t) => [t.target, t.measured, verdict(t.pass)])),
    ...(previous ? [previousRunSection(previous, r)] : []),
    ...body,
  ].join("\n\n") + "\n";
  return { markdown, plots };
}
