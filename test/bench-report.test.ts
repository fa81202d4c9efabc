// The benchmark harness's own logic: SVG bar charts, the report and its target checks, the
// memory suite's arithmetic and its reading of /proc.
import { describe, expect, it } from "vitest";
import { existsSync, readFileSync } from "node:fs";
import { barChart, escapeXml, formatValue, tickStep } from "../bench/svg";
import { checkTargets, renderReport, type BenchResult } from "../bench/report";
import type { HypervisorResult } from "../bench/hypervisor";
import type { ContainersResult } from "../bench/containers";
import { breakdown, type ProbeResult } from "../bench/memory";
import {
  addDeltas, guestExits, hostUsPerExit, parseDd, parsePing, parseWvb, summarize, windowDelta, type Delta, type GuestSuiteResult, type Machine,
} from "../bench/fullvspara";
import type { GatedRun } from "../bench/guest-vm";
import type { VmStats } from "../host/cli/stats";
import {
  PAGE_SIZE, countNonZeroPages, countPresent, locateWasmMemory, parseMaps, residentPages, smapsRss, statusField, wasmMemoryResidency,
} from "../bench/procfs";

/** Throws unless every tag is closed in order and text holds no raw '<' or stray '&'. */
function checkWellFormed(xml: string): void {
  const open: string[] = [];
  for (const part of xml.split(/(<[^>]*>)/)) {
    if (part.startsWith("<")) {
      const m = /^<(\/?)([\w:-]+)[^>]*?(\/?)>$/.exec(part);
      if (!m) throw new Error(`bad tag ${part}`);
      if (m[1]) {
        const top = open.pop();
        if (top !== m[2]) throw new Error(`</${m[2]}> closes <${top}>`);
      } else if (!m[3]) open.push(m[2]);
    } else if (/[<>]|&(?!(amp|lt|gt|quot|#39);)/.test(part)) throw new Error(`unescaped text ${JSON.stringify(part)}`);
  }
  if (open.length) throw new Error(`unclosed <${open.join("> <")}>`);
}

const attr = (tag: string, name: string) => Number(new RegExp(`\\b${name}="([^"]+)"`).exec(tag)![1]);

describe("SVG bar charts", () => {
  const chart = barChart({
    title: "Speed <of> A & B", axis: "MIPS",
    series: [{ name: "wasmvisor", color: "#00f" }, { name: "QEMU", color: "#f80" }],
    groups: [{ label: "int", values: [100, 400] }, { label: "fp", values: [50, null] }],
    target: { value: 200, label: "target 200" },
  });

  it("is well-formed SVG with escaped text", () => {
    expect(chart.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    checkWellFormed(chart);
    expect(chart).toContain("Speed &lt;of&gt; A &amp; B");
  });

  it("draws one bar per value, heights proportional, none for a missing value", () => {
    const bars = chart.match(/<rect class="bar"[^>]*>/g)!;
    expect(bars).toHaveLength(3);
    const [a, b, c] = bars.map((t) => attr(t, "height"));
    expect(b / a).toBeCloseTo(4, 1);
    expect(c / a).toBeCloseTo(0.5, 1);
    // every bar stands on the same baseline
    expect(new Set(bars.map((t) => Math.round(attr(t, "y") + attr(t, "height")))).size).toBe(1);
    for (const v of ["100", "400", "50.0"]) expect(chart).toContain(`>${v}</text>`);
    expect(chart).toContain("<title>QEMU, int: 400</title>");
  });

  it("puts the target line at its value", () => {
    const bars = chart.match(/<rect class="bar"[^>]*>/g)!;
    const base = attr(bars[0], "y") + attr(bars[0], "height");
    const perUnit = attr(bars[0], "height") / 100;
    const line = /<line class="target"[^>]*>/.exec(chart)![0];
    expect(base - attr(line, "y1")).toBeCloseTo(200 * perUnit, 0);
    expect(chart).toContain(">target 200</text>");
  });

  it("has round ticks and compact numbers", () => {
    expect(tickStep(450)).toBe(100);
    expect(tickStep(9)).toBe(2);
    expect(tickStep(0.7)).toBe(0.2);
    expect(tickStep(2.3)).toBe(0.5);
    expect([1234.5, 123.4, 12.34, 1.234, 0.1234].map(formatValue)).toEqual(["1235", "123", "12.3", "1.23", "0.123"]);
    expect(escapeXml(`a<b>&"'`)).toBe("a&lt;b&gt;&amp;&quot;&#39;");
  });
});

const MACHINE = { cpu: "Test CPU", cores: 2, memoryGiB: 8, os: "Debian 12", kernel: "Linux 6.1 x86_64", node: "v20.0.0", qemu: "7.2.0" };

function sample(): BenchResult {
  return {
    date: "2026-01-01T00:00:00.000Z", quick: false, command: "npm run bench", machine: MACHINE,
    cpu: {
      mips: 210, qemu_mips: 1000, ratio_vs_qemu: 0.21, qemu_startup_s: 0.05, qemu_startup_runs: [0.05, 0.06, 0.04],
      programs: [{ program: "bench-int", instructions: 3e8, seconds: [1.4], mips: 210, qemuRawSeconds: 0.35, qemuSeconds: 0.3, qemuMips: 1000 }],
    },
    boot: { linux_para_s: 2.5, linux_full_s: 2.6, qemu_linux_s: 0.7, runs: { para: [2.5], full: [2.6], qemu: [0.7] } },
    exits: {
      mmio_roundtrip_us: 1,
      rows: [{ key: "mmio_store", label: "MMIO store", detail: "a store", mean_us: 1, rme_percent: 2, samples: 60, guest_instructions: 3 },
        { key: "comlink_call", label: "Comlink call", detail: "a call", mean_us: 40, rme_percent: 3, samples: 50, guest_instructions: null }],
    },
  };
}

describe("report", () => {
  /** The one target whose name starts with `prefix`. */
  const target = (t: ReturnType<typeof checkTargets>, prefix: string) => {
    const found = t.filter((x) => x.target.startsWith(prefix));
    expect(found.map((x) => x.target), prefix).toHaveLength(1);
    return found[0]!;
  };

  it("checks each target, a figure exactly at its target passing", () => {
    const t = checkTargets(sample());
    expect(new Set(t.map((x) => x.target)).size).toBe(t.length);
    expect(target(t, "CPU: geometric mean ≥ 200 MIPS")).toMatchObject({ pass: true, measured: "210.0 MIPS" });
    expect(target(t, "CPU: geometric mean ≥ 15% of QEMU")).toMatchObject({ pass: true, measured: "21.0%" });
    expect(target(t, "Boot: Linux to shell prompt (para)")).toEqual({ target: "Boot: Linux to shell prompt (para) ≤ 2 s", measured: "2.50 s", pass: false });
    expect(target(t, "Memory: overhead")).toMatchObject({ pass: null, measured: "not measured" });
    expect(target(t, "Memory with the translation tier")).toMatchObject({ pass: null, measured: "not measured" });
    expect(target(t, "Exits")).toMatchObject({ pass: true, measured: "1.000 µs" });
    for (const x of t.filter((x) => /^(Snapshot|Migration|Browser)/.test(x.target))) expect(x).toMatchObject({ pass: null, measured: "not measured" });
  });

  it("checks the translation tier's bars against QEMU's times less its start-up, a figure exactly at its bar passing", () => {
    const program = (name: string, mips: number) => ({ program: name, instructions: 3e8, seconds: [1], mips, qemuRawSeconds: 0.35, qemuSeconds: 0.3, qemuMips: 1000 });
    const r = sample();
    r.cpu = { ...r.cpu!, mips: 447.2, ratio_vs_qemu: 0.7, programs: [program("bench-int", 500), program("bench-fp", 400)] };
    r.boot = { ...r.boot!, linux_full_s: 0.7 };
    let t = checkTargets(r);
    expect(target(t, "CPU: every program ≥ 50% of QEMU")).toMatchObject({ pass: false, measured: "worst bench-fp 40.0%" });
    expect(target(t, "CPU: geometric mean ≥ 70% of QEMU")).toMatchObject({ pass: true, measured: "70.0%" });
    // The first bar stays beside the translation tier's.
    expect(target(t, "CPU: geometric mean ≥ 15% of QEMU").target).toContain("kept until the 70% one is met");
    expect(target(t, "Boot: Linux to shell prompt (full, OpenSBI) no slower than QEMU"))
      .toMatchObject({ pass: true, measured: "0.70 s against 0.70 s (100% of QEMU's time); para 2.50 s" });

    r.cpu.programs[1] = program("bench-fp", 500);
    r.cpu.ratio_vs_qemu = 0.69;
    r.boot.linux_full_s = 0.84;
    t = checkTargets(r);
    expect(target(t, "CPU: every program ≥ 50% of QEMU")).toMatchObject({ pass: true, measured: "worst bench-int 50.0%" });
    expect(target(t, "CPU: geometric mean ≥ 70% of QEMU").pass).toBe(false);
    expect(target(t, "Boot: Linux to shell prompt (full, OpenSBI) no slower than QEMU")).toMatchObject({ pass: false, measured: "0.84 s against 0.70 s (120% of QEMU's time); para 2.50 s" });

    // Several boots each: each of ours over the QEMU boot of its round, beside the medians' ratio.
    r.boot = { ...r.boot, linux_full_s: 1.18, qemu_linux_s: 1.24, runs: { para: [1.3, 1.3, 1.3], full: [1.18, 1.31, 1.16], qemu: [1.32, 1.24, 0.88] } };
    expect(target(checkTargets(r), "Boot: Linux to shell prompt (full, OpenSBI) no slower than QEMU"))
      .toMatchObject({ pass: true, measured: "1.18 s against 1.24 s (95% of QEMU's time; boot by boot 89-132%, median 106%); para 2.50 s" });

    // Results from before QEMU's start-up was timed: the new bars are not judged on whole-process times.
    const { qemu_startup_s: _s, qemu_startup_runs: _r, ...old } = sample().cpu!;
    t = checkTargets({ ...sample(), cpu: old });
    for (const prefix of ["CPU: every program", "CPU: geometric mean ≥ 70%"]) {
      expect(target(t, prefix)).toMatchObject({ pass: null, measured: "not measured (QEMU's start-up was not subtracted in that run)" });
    }
    expect(target(t, "CPU: geometric mean ≥ 15% of QEMU").pass).toBe(true);
    const md = renderReport({ ...sample(), cpu: old }).markdown;
    expect(md).toContain("(same binaries; QEMU's time includes its start-up)");
    expect(md).toContain("| bench-int | 300.0 M | 210.0 | 1000.0 | 21% |");
  });

  it("checks the snapshot and migration targets against their figures and QEMU's", () => {
    const run = (total: number, gap: number) => ({ total_ms: total, bytes: 17e6, downtime_ms: 3, guest_gap_ms: gap, rounds: 3, converged: true });
    const r: BenchResult = {
      ...sample(),
      snapshot: { guest: "Linux", runs: 3, wasmvisor: { save_ms: 900, paused_ms: 4, bytes: 30e6, restore_ms: 5, first_answer_ms: 40 }, qemu: { savevm_ms: 800, loadvm_ms: 300, bytes: 20e6 } },
      migration: {
        guest: "Linux", runs: 3, baseline_gap_ms: { wasmvisor: 1, qemu: 1 }, downtime_limit_ms: { wasmvisor: 5, qemu: 300 },
        idle: { wasmvisor: run(120, 5.5), qemu: run(108, 30) },
        dirtying: [{ rate_mib_s: 16, wasmvisor: run(300, 6), qemu: run(200, 40) }],
      },
    };
    const t = checkTargets(r).filter((x) => /^(Snapshot|Migration)/.test(x.target));
    expect(t.map((x) => x.pass)).toEqual([true, false, false]);
    expect(t[2]!.measured).toBe("120 ms against 108 ms (111%)");
    const { markdown, plots } = renderReport({ ...r, carried: { cpu: "2026-01-01T00:00:00.000Z", boot: "2026-01-01T00:00:00.000Z", exits: "2025-12-31T00:00:00.000Z" } });
    expect(markdown).toContain("the others are kept from earlier runs: cpu, boot from 2026-01-01T00:00:00.000Z; exits from 2025-12-31T00:00:00.000Z.");
    expect(markdown).toContain("## Snapshots");
    expect(markdown).toMatch(/\| restore: request to running \| 5\.00 ms \| 300 ms \(loadvm\) \|/);
    expect(markdown).toContain("## Live migration");
    expect(Object.keys(plots)).toContain("migration.svg");
  });

  it("checks the browser's targets: its MIPS and its Linux boot against Node's, 90% passing", () => {
    const program = (node: number, browser: number) => ({ program: "bench-int", instructions: 3e8, node_mips: node, browser_mips: browser });
    const r: BenchResult = {
      ...sample(),
      browser: {
        chromium: "131.0.6778.85", node_mips: 300, browser_mips: 270, ratio: 0.9, programs: [program(300, 270)],
        linux: { node_s: 0.9, browser_s: 1.2, node_cold_s: 1.4, page_cold_s: 2.8, runs: { node: [0.9], browser: [1.2], node_cold: [1.4], page_cold: [2.8] } },
      },
    };
    const t = checkTargets(r).filter((x) => x.target.startsWith("Browser"));
    expect(t.map((x) => x.pass)).toEqual([true, false]);
    expect(t[0]!.measured).toBe("270.0 against 300.0 MIPS (90.0%)");
    expect(t[1]!.measured).toBe("1.20 s against 0.90 s (75.0%)");
    const { markdown, plots } = renderReport(r);
    expect(markdown).toContain("## Browser");
    expect(markdown).toMatch(/\| from nothing \(process start; cold page load\) \| 1\.40 s \| 2\.80 s \| 50% \|/);
    expect(Object.keys(plots)).toEqual(expect.arrayContaining(["browser.svg", "browser-boot.svg"]));
    for (const f of ["browser.svg", "browser-boot.svg"]) checkWellFormed(plots[f]!);
  });

  it("adds the fuzzing figures of npm run fuzz, with what was found and which targets reached 10^6 clean", () => {
    const target = (name: string, iterations: number, crashes: number, found: string[] = []) =>
      ({ target: name, date: "2026-12-06T01:02:03.000Z", mode: "100 s", iterations, seconds: 100, execsPerSecond: iterations / 100, blocks: 321, features: 900, corpus: 55, crashes, hangs: 0, found });
    const fuzz = {
      date: "2026-12-06T00:00:00.000Z", mode: "600 s per target", seed: 1, coverage: true, machine: { cpus: 2, memoryGiB: 8, node: "v20.0.0" },
      targets: [target("virtio-blk", 1_200_000, 0), target("api", 50_000, 1, ["exception: Error: a | b (fuzz/crashes/api/x.bin)"])],
    };
    const md = renderReport(sample(), undefined, fuzz).markdown;
    expect(md).toContain("## Fuzzing");
    expect(md).toContain("| virtio-blk | 2026-12-06 01:02, 100 s | 1200000 | 12000 | 321 | 55 | 0 | 0 | yes |");
    expect(md).toContain("| api | 2026-12-06 01:02, 100 s | 50000 | 500 | 321 | 55 | 1 | 0 | not yet |");
    expect(md).toContain("- api: exception: Error: a \\| b (fuzz/crashes/api/x.bin)");
    expect(renderReport(sample()).markdown).not.toContain("## Fuzzing");
    const coreDiff = {
      target: "core-diff", date: "2026-12-06T02:00:00.000Z", mode: "600 s", seed: 3, qemu: "7.2.22", qemuCpu: "rv64,h=false", tiers: ["off", "all"],
      programs: 120_000, batches: 300, seconds: 600, programsPerSecond: 200, differences: 0, explained: { "tval on EBREAK": 9, "a | b": 2 }, found: [],
    };
    const withDiff = renderReport(sample(), undefined, { ...fuzz, coreDiff }).markdown;
    expect(withDiff).toContain("### The core against QEMU (core-diff)");
    expect(withDiff).toContain("| 2026-12-06 02:00, 600 s, seed 3 | 120000 | 200 | 0 | yes |");
    expect(withDiff).toContain("- 9: tval on EBREAK\n- 2: a \\| b");
    expect(renderReport(sample(), undefined, { ...fuzz, coreDiff: { ...coreDiff, differences: 1, found: ["tier off: x1"] } }).markdown).toMatch(/\| 1 \| not yet \|[\s\S]*- tier off: x1/);
  });

  it("renders tables, targets and links to the plots it returns", () => {
    const { markdown, plots } = renderReport(sample());
    expect(Object.keys(plots).sort()).toEqual(["boot.svg", "cpu.svg", "exits.svg"]);
    for (const [file, svg] of Object.entries(plots)) {
      expect(markdown).toContain(`](results/${file})`);
      checkWellFormed(svg);
    }
    expect(markdown).toContain("| Test CPU | 2 | 8 GiB | Debian 12 | Linux 6.1 x86_64 | v20.0.0 | 7.2.0 |");
    expect(markdown).toContain("| Boot: Linux to shell prompt (para) ≤ 2 s | 2.50 s | **FAIL** |");
    expect(markdown).toContain("| Memory: overhead ≤ 8 MiB per VM | not measured | not run |");
    expect(markdown).toContain("| program | instructions | wasmvisor MIPS | QEMU time: whole − start-up | QEMU MIPS | ratio |");
    expect(markdown).toContain("| bench-int | 300.0 M | 210.0 | 0.350 − 0.050 = 0.300 s | 1000.0 | 21% |");
    expect(markdown).toContain("median of 3 runs in this run: 50.0 ms; runs 50, 60, 40 ms), is subtracted from each program's QEMU time");
    expect(markdown).toContain("| CPU: every program ≥ 50% of QEMU (translation tier's bar) | worst bench-int 21.0% | **FAIL** |");
    expect(markdown).toContain("| Boot: Linux to shell prompt (full, OpenSBI) no slower than QEMU | 2.60 s against 0.70 s (371% of QEMU's time); para 2.50 s | **FAIL** |");
    expect(markdown).not.toContain("## Memory");
    // The Comlink call is in the table but not in the plot.
    expect(markdown).toContain("| Comlink call | a call | 40.0 µs |");
    expect(plots["exits.svg"]).not.toContain("Comlink");
  });

  it("sets this run beside the one it replaced, with QEMU's drift and worse figures marked", () => {
    const prev = sample();
    const r = sample();
    r.date = "2026-02-01T00:00:00.000Z";
    r.cpu = { ...r.cpu!, mips: 220, qemu_mips: 1100 }; // +4.8%, as the machine (QEMU +10%)
    r.boot = { ...r.boot!, linux_para_s: 2.75, qemu_linux_s: 0.7 }; // +10%: worse
    r.exits = { ...r.exits!, rows: r.exits!.rows.slice(0, 1) }; // a figure only the old run has is left out
    const md = renderReport(r, prev).markdown;
    expect(md).toContain("## Against the previous run");
    expect(md).toContain("The run this one replaced was made on 2026-01-01T00:00:00.000Z. Between the two, QEMU's CPU figure moved 10.0% and its boot time 0.0% on the same machine");
    expect(md).toContain("| CPU: geometric mean | 210 MIPS | 220 MIPS | +4.8% |");
    expect(md).toContain("| Boot to shell prompt, para | 2.50 s | 2.75 s | +10.0% (worse) |");
    expect(md).toContain("| Exit: MMIO store | 1.00 µs | 1.00 µs | 0.0% |");
    expect(md).not.toContain("Exit: Comlink call");
    // QEMU's figure from a run that did not subtract its start-up is another figure: not set beside this one.
    const { qemu_startup_s: _s, qemu_startup_runs: _r, ...oldCpu } = prev.cpu!;
    const beside = renderReport(r, { ...prev, cpu: oldCpu }).markdown;
    expect(beside).not.toContain("QEMU's CPU figure moved");
    expect(beside).not.toContain("| CPU: QEMU's geometric mean");
    expect(md).toContain("| CPU: QEMU's geometric mean, start-up subtracted (the machine) | 1000 MIPS | 1100 MIPS | +10.0% |");
    // A run on another host says so, rather than "the same machine".
    const elsewhere = renderReport({ ...r, machine: { ...MACHINE, cpu: "AMD EPYC" } }, prev).markdown;
    expect(elsewhere).toContain(`It ran on another machine (${MACHINE.cpu}, ${MACHINE.cores} cores): the changes below are mostly the machines', as QEMU's own show: QEMU's CPU figure moved 10.0% and its boot time 0.0%.`);
    expect(elsewhere).not.toContain("on the same machine");
    // Without a previous run there is no such section.
    expect(renderReport(r).markdown).not.toContain("Against the previous run");
  });

  it("leaves QEMU out when it is not installed", () => {
    const r = sample();
    r.cpu = { ...r.cpu!, qemu_mips: null, ratio_vs_qemu: null, qemu_startup_s: null, qemu_startup_runs: [],
      programs: [{ ...r.cpu!.programs[0], qemuMips: undefined, qemuSeconds: undefined, qemuRawSeconds: undefined }] };
    r.boot = { ...r.boot!, qemu_linux_s: null };
    r.machine = { ...MACHINE, qemu: null };
    const { markdown, plots } = renderReport(r);
    for (const t of checkTargets(r).filter((x) => /QEMU/.test(x.target))) expect(t).toMatchObject({ pass: null, measured: "not measured" });
    expect(plots["cpu.svg"]).not.toContain("QEMU");
    expect(markdown).toContain("| program | instructions | wasmvisor MIPS |\n");
    expect(markdown).toContain("not installed");
  });
});

describe("memory suite arithmetic", () => {
  it("charges everything but touched guest RAM to the VMs, page tables included", () => {
    const MiB = 2 ** 20;
    const p: ProbeResult = {
      method: "pagemap", rss_before: 50 * MiB, rss_after: 150 * MiB, page_tables: 2 * MiB, js_heap: 4 * MiB, js_heap_reserved: 2 * MiB,
      guest_ram_touched: 80 * MiB, core_region_touched: 6 * MiB,
    };
    expect(breakdown(p, 4)).toEqual({
      overhead_mib: 5.5, core_region_mib: 1.5, js_heap_mib: 1, js_heap_reserve_mib: 0.5, page_tables_mib: 0.5, other_mib: 2, guest_ram_touched_mib: 20,
    });
    // Runs from before V8's growth was measured apart: all of it in "other".
    const { js_heap_reserved: _, ...old } = p;
    expect(breakdown(old, 4)).toMatchObject({ js_heap_reserve_mib: 0, other_mib: 2.5 });
  });
});

describe("memory suite report", () => {
  const MiB = 2 ** 20;
  const run = (overheadMiB: number, translations?: ProbeResult["translations"]): ProbeResult => ({
    method: "pagemap", rss_before: 0, rss_after: (overheadMiB * 4 + 80) * MiB, page_tables: 0, js_heap: 0, js_heap_reserved: 0,
    guest_ram_touched: 80 * MiB, core_region_touched: 16 * MiB, ...(translations ? { translations } : {}),
  });
  const result = (r: ProbeResult, jit: "off" | "on") => ({
    jit, overhead_mib: breakdown(r, 4).overhead_mib, vms_per_run: 4, guest_ram_mib: 256, method: "pagemap" as const, per_vm: breakdown(r, 4), runs: [r],
    ...(r.translations ? { translations: r.translations } : {}),
  });

  it("checks both tiers against the per-VM target and tables them side by side, with the translations alive", () => {
    const translated = run(8.25, { pages: 120, wasm_bytes: 4 * 500 * 1024 });
    const r: BenchResult = { ...sample(), memory: { ...result(run(6), "off"), translated: result(translated, "on") } };
    const t = checkTargets(r);
    expect(t.find((x) => x.target.startsWith("Memory: overhead"))).toMatchObject({ pass: true, measured: "6.00 MiB" });
    expect(t.find((x) => x.target.startsWith("Memory with the translation tier"))).toMatchObject({ pass: false, measured: "8.25 MiB" });
    const { markdown, plots } = renderReport(r);
    expect(markdown).toContain("| per VM | interpreted | `--jit on` |");
    expect(markdown).toContain("| **overhead per VM** | 6.00 MiB | 8.25 MiB |");
    expect(markdown).toContain("| translations alive per VM at the prompt (their WebAssembly) |  | 30 (500 KiB) |");
    checkWellFormed(plots["memory.svg"]!);
    expect(plots["memory.svg"]).toContain("--jit on");
  });

  it("renders a run from before the tier was measured as one column", () => {
    const { markdown } = renderReport({ ...sample(), memory: result(run(6), "off") });
    expect(markdown).toContain("| per VM | MiB |");
    expect(markdown).toContain("| **overhead per VM** | 6.00 MiB |");
  });
});

describe("/proc parsing", () => {
  const MAPS = [
    "55d0c0a00000-55d0c0a21000 rw-p 00000000 00:00 0                          [heap]",
    "7f71257b0000-7f71277c0000 rw-p 00000000 00:00 0 ",
    "7f75c7600000-7f75c7800000 r-xp 00001000 fd:01 1234                       /usr/bin/node",
  ].join("\n");

  it("reads mappings", () => {
    expect(parseMaps(MAPS)).toEqual([
      { start: 0x55d0c0a00000, end: 0x55d0c0a21000, perms: "rw-p", path: "[heap]" },
      { start: 0x7f71257b0000, end: 0x7f71277c0000, perms: "rw-p", path: "" },
      { start: 0x7f75c7600000, end: 0x7f75c7800000, perms: "r-xp", path: "/usr/bin/node" },
    ]);
  });

  it("reads status fields and a mapping's Rss from smaps", () => {
    expect(statusField("Name:\tnode\nVmRSS:\t  123456 kB\nVmPTE:\t     840 kB\n", "VmPTE")).toBe(840 * 1024);
    expect(() => statusField("VmRSS: 1 kB\n", "VmPTE")).toThrow(/VmPTE/);
    const smaps = `${MAPS.split("\n")[0]}\nSize: 132 kB\nRss: 100 kB\n${MAPS.split("\n")[1]}\nSize: 32832 kB\nKernelPageSize: 4 kB\nRss: 15000 kB\nPss: 15000 kB\n`;
    expect(smapsRss(smaps, 0x7f71257b0000)).toBe(15000 * 1024);
    expect(smapsRss(smaps, 0x55d0c0a00000)).toBe(100 * 1024);
    expect(() => smapsRss(smaps, 0x1000)).toThrow(/no mapping/);
  });

  it("counts present pagemap entries and non-zero pages", () => {
    const entries = new DataView(new ArrayBuffer(4 * 8));
    entries.setBigUint64(0, (1n << 63n) | 0x1234n, true);
    entries.setBigUint64(8, 0x1234n, true); // a PFN without the present bit
    entries.setBigUint64(24, 1n << 63n, true); // present, PFN hidden (unprivileged reader)
    expect(countPresent(new Uint8Array(entries.buffer))).toBe(2);
    const mem = new Uint8Array(5 * PAGE_SIZE);
    mem[PAGE_SIZE * 1 + 7] = 1;
    mem[PAGE_SIZE * 4 - 1] = 0x80; // last byte of page 3
    expect(countNonZeroPages(mem)).toBe(2);
  });
});

describe.skipIf(!existsSync("/proc/self/pagemap"))("a WebAssembly.Memory in this process", () => {
  it("is located, and the pages written to it are seen resident, no others", () => {
    const pages = 4; // 64 KiB wasm pages: 64 pages of 4 KiB
    const mems = [0, 1].map(() => new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true }));
    const probe = pages * 65536 - PAGE_SIZE;
    const bases = mems.map((m) => locateWasmMemory(m, probe));
    expect(bases[0]).not.toBe(bases[1]);
    const u8 = new Uint8Array(mems[1].buffer);
    for (const page of [3, 10, 11, 40]) u8[page * PAGE_SIZE + 100] = 1;
    expect(residentPages(bases[1], 64 * PAGE_SIZE)).toBe(5); // four written, and the probe's page
    expect(residentPages(bases[1], 10 * PAGE_SIZE)).toBe(1);
    expect(wasmMemoryResidency(mems[1], 8 * PAGE_SIZE, 40 * PAGE_SIZE, probe)).toEqual({ belowRam: PAGE_SIZE, ram: 3 * PAGE_SIZE });
  });

  it("counts a page only read as resident RAM only when the kernel gave it a page of its own", () => {
    // Most kernels map the shared zero page on a read (present in pagemap, not in Rss); some
    // (e.g. a VM kernel booted with pvm_no_zero_page=1) allocate a page: then it is RAM.
    const other = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
    const otherBase = locateWasmMemory(other, 65536 - PAGE_SIZE);
    expect(new Uint8Array(other.buffer)[0]).toBe(0); // read one page
    const readCosts = smapsRss(readFileSync("/proc/self/smaps", "utf8"), otherBase) - PAGE_SIZE; // less the probe's page
    expect([0, PAGE_SIZE]).toContain(readCosts);

    const mem = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
    const probe = 65536 - PAGE_SIZE;
    const base = locateWasmMemory(mem, probe);
    const u8 = new Uint8Array(mem.buffer);
    u8[2 * PAGE_SIZE] = 1;
    expect(u8[5 * PAGE_SIZE]).toBe(0); // a read: present in pagemap, in Rss only if a page was allocated
    expect(residentPages(base, 8 * PAGE_SIZE)).toBe(2);
    expect(wasmMemoryResidency(mem, 0, 8 * PAGE_SIZE, probe).ram).toBe(PAGE_SIZE + readCosts);
  });
});

describe("full-vs-para and paging suites: parsing the guest's output", () => {
  it("reads wv-bench's result line and its extra fields", () => {
    const out = "wv-bench -g tcp-rx 10.0.2.2 4242 1048576\r\nWVB gate\r\n\r\nWVB gate\r\n\r\nWVB name=tcp-rx ops=1048576 ns_per_op=48.1 bytes_per_s=20799560\r\n";
    expect(parseWvb(out, "tcp-rx")).toEqual({ ops: 1048576, nsPerOp: 48.1, extra: { bytes_per_s: "20799560" } });
    expect(parseWvb("WVB name=syscall ops=20000 ns_per_op=1481.6\n", "syscall")).toEqual({ ops: 20000, nsPerOp: 1481.6, extra: {} });
    // The echoed command line is not a result, nor is another benchmark's line.
    expect(() => parseWvb("wv-bench -g syscall 20000\r\nWVB name=forkwait ops=2 ns_per_op=1.0\r\n", "syscall")).toThrow(/no wv-bench result line for syscall/);
  });

  it("reads BusyBox dd's and ping's summaries", () => {
    const dd = "128+0 records in\r\n128+0 records out\r\n8388608 bytes (8.0MB) copied, 0.056314 seconds, 142.1MB/s\r\n";
    expect(parseDd(dd)).toEqual({ bytes: 8388608, seconds: 0.056314 });
    expect(() => parseDd("dd: can't open '/dev/vda': No such file\r\n")).toThrow(/no dd summary/);
    const ping = "--- 10.0.2.2 ping statistics ---\r\n20 packets transmitted, 20 packets received, 0% packet loss\r\n" +
      "round-trip min/avg/max = 0.479/0.669/2.252 ms\r\n";
    expect(parsePing(ping)).toEqual({ sent: 20, avgMs: 0.669 });
    expect(() => parsePing(ping.replace("20 packets received", "19 packets received"))).toThrow(/lost packets/);
  });
});

/** Stats as the worker reports them, with every counter of `exits` etc. at the given values. */
function stats(o: { instructions: number; exits: Partial<VmStats["exits"]>; exitSeconds: VmStats["exitSeconds"]; mmio: Record<string, number>; tlbMisses: number; ptWriteTraps: number }): VmStats {
  const zero = { tlbMisses: 0, walkRefs: 0, framesPopulated: 0, shadowFaults: 0, ptWriteTraps: 0, shadowZaps: 0, unshadowed: 0, shadowResets: 0, shadowContextHits: 0, shadowContextNew: 0, dirtyFaults: 0 };
  return {
    instructions: o.instructions, seconds: 1, mmio: o.mmio, sbi: { BASE: 1 }, exitSeconds: o.exitSeconds,
    exits: { mmio: 0, sbi: 0, tohost: 0, halt: 0, budget: 0, attention: 0, ...o.exits },
    paging: { mode: "shadow", ...zero, tlbMisses: o.tlbMisses, ptWriteTraps: o.ptWriteTraps },
  };
}

describe("full-vs-para and paging suites: accounting", () => {
  const run: GatedRun = {
    output: "",
    hostSeconds: 0.5,
    before: stats({ instructions: 1000, exits: { mmio: 10, halt: 1, budget: 3 }, exitSeconds: { mmio: 1, sbi: 0, tohost: 0 }, mmio: { uart0: 10 }, tlbMisses: 50, ptWriteTraps: 7 }),
    after: stats({ instructions: 5000, exits: { mmio: 410, sbi: 100, halt: 3, budget: 13 }, exitSeconds: { mmio: 1.0008, sbi: 0.0002, tohost: 0 }, mmio: { uart0: 10, ata0: 400 }, tlbMisses: 250, ptWriteTraps: 47 }),
  };

  it("charges a gated window with the counters' differences", () => {
    const d = windowDelta(run, 100);
    expect(d.instructions).toBe(4000);
    expect(d.exits).toEqual({ mmio: 400, sbi: 100, tohost: 0, halt: 2, budget: 10, attention: 0 });
    expect(d.mmio).toEqual({ uart0: 0, ata0: 400 });
    expect(d.sbi).toEqual({ BASE: 0 });
    expect(d.paging.tlbMisses).toBe(200);
    expect(d.paging.ptWriteTraps).toBe(40);
    expect(d.paging).not.toHaveProperty("mode");
    expect(d.exit_seconds.mmio).toBeCloseTo(0.0008, 12);
  });

  it("counts the guest's exits (not the VMM's time-slice ends) and host time per timed exit", () => {
    const d = windowDelta(run, 100);
    expect(guestExits(d)).toBe(502); // 400 MMIO + 100 SBI + 2 halts; the 10 budget exits are not the guest's
    // 1 ms over the 500 timed exits (MMIO and SBI; halts are not timed)
    expect(hostUsPerExit(d)).toBeCloseTo(2, 9);
    expect(hostUsPerExit({ ...d, exits: { ...d.exits, mmio: 0, sbi: 0 } })).toBeNull();
  });

  it("sums runs and reports medians and per-operation figures", () => {
    const a = windowDelta(run, 100);
    const b: Delta = { ...a, ops: 300, exits: { ...a.exits, mmio: 1200 } };
    const total = addDeltas(a, b);
    expect(total.ops).toBe(400);
    expect(total.exits.mmio).toBe(1600);
    expect(total.instructions).toBe(8000);
    const m = summarize({ key: "disk_read", label: "disk read", metric: "MB/s", better: "higher", op: "64 KiB block" }, [5, 1, 3], total);
    expect(m.value).toBe(3);
    expect(m.exits_per_op).toBeCloseTo((1600 + 200 + 4) / 400, 12);
    expect(m.paging_per_op.ptWriteTraps).toBeCloseTo(80 / 400, 12);
    // 2 ms over the 1600 MMIO and 200 SBI exits of the two runs
    expect(m.host_us_per_exit).toBeCloseTo((2 * 0.001 / 1800) * 1e6, 9);
  });
});

/** A workload's figures as the suite records them (through the suite's own summarize()). */
function measured(key: string, label: string, metric: string, better: "higher" | "lower", value: number, ops: number,
  counts: { exits: number; seconds?: number; mmio?: Record<string, number>; tlbMisses?: number; walkRefs?: number; ptWriteTraps?: number; shadowFaults?: number }) {
  const delta: Delta = {
    ops, instructions: 1e6, host_seconds: 1,
    exits: { mmio: counts.exits, sbi: 0, tohost: 0, halt: 0, budget: 5, attention: 0 },
    exit_seconds: { mmio: counts.seconds ?? 0, sbi: 0, tohost: 0 }, mmio: counts.mmio ?? {}, sbi: {},
    paging: { tlbMisses: counts.tlbMisses ?? 0, walkRefs: counts.walkRefs ?? 0, ptWriteTraps: counts.ptWriteTraps ?? 0, shadowFaults: counts.shadowFaults ?? 0 },
  };
  return summarize({ key, label, metric, better, op: "op" }, [value], delta);
}

/** A machine whose disk reads cost `disk` times, and forks `fork` times, a reference machine's. */
function machine(mode: "para" | "full", paging: "nested" | "shadow", disk: number, fork: number): Machine {
  const found = mode === "para" ? { name: "vda", driver: "virtio_blk" } : { name: "sda", driver: "sd" };
  const traps = paging === "shadow" ? 62 : 0;
  return {
    mode, paging, disk: found, nic: { name: "eth0", driver: mode === "para" ? "virtio_net" : "ethoc" }, console: mode === "para" ? "hvc0" : "ttyS0",
    gate_exits: mode === "para" ? 28 : 53,
    workloads: [
      measured("disk_read", "disk read", "MB/s", "higher", 200 / disk, 100,
        { exits: 100 * disk, seconds: 1e-4 * disk, mmio: { plic: 1e6, [mode === "para" ? "virtio0-blk" : "ata0"]: 50 * disk } }),
      measured("forkwait", "forkwait", "µs per op", "lower", 1000 * fork, 10, { exits: 6, seconds: 6e-6, tlbMisses: 15000, walkRefs: 150000, ptWriteTraps: traps * 10 }),
    ],
  };
}

describe("report: full vs para and paging sections", () => {
  const fullvspara: GuestSuiteResult = {
    memory_mib: 256, runs: 5,
    machines: [machine("para", "nested", 1, 1), machine("para", "shadow", 1, 1), machine("full", "nested", 4, 2), machine("full", "shadow", 4, 2)],
  };
  const paging: GuestSuiteResult = { memory_mib: 256, runs: 5, machines: [machine("para", "nested", 1, 1), machine("para", "shadow", 0.8, 0.5)] };
  const { markdown, plots } = renderReport({ ...sample(), fullvspara, paging });

  it("renders the sections and links their plots, well-formed", () => {
    expect(markdown).toContain("## Full vs para virtualization");
    expect(markdown).toContain("## Paging: nested vs shadow");
    for (const file of ["fullvspara-throughput.svg", "fullvspara-relative.svg", "paging.svg"]) {
      expect(markdown).toContain(`](results/${file})`);
      checkWellFormed(plots[file]);
    }
    expect(markdown).toContain("5 times each in one boot (median), after one uncounted warm-up run");
  });

  it("names the devices the guest found and the device model that served them", () => {
    expect(markdown).toContain("| para · nested | vda (virtio_blk; MMIO: virtio0-blk) | eth0 (virtio_net) | hvc0 | 28 |");
    expect(markdown).toContain("| full · shadow | sda (sd; MMIO: ata0) | eth0 (ethoc) | ttyS0 | 53 |");
  });

  it("tabulates each figure per machine, with exits per operation and host time per exit", () => {
    expect(markdown).toContain("| disk read | MB/s ↑ | 200 | 200 | 50.0 | 50.0 |");
    expect(markdown).toContain("| forkwait | µs per op ↓ | 1000 | 1000 | 2000 | 2000 |");
    // 100 exits over 100 ops (budget exits left out), 1e-4 s over 100 MMIO exits = 1 µs
    expect(markdown).toContain("| disk read | op | 1.00 · 1.00 µs | 1.00 · 1.00 µs | 4.00 · 1.00 µs | 4.00 · 1.00 µs |");
    // Page-table write traps only for the shadow machines, as in-core events.
    expect(markdown).toContain("| workload | per | para · shadow | full · shadow |");
    expect(markdown).toContain("| forkwait | op | 62.0 | 62.0 |");
  });

  it("plots throughput as measured and the rest relative to para · nested", () => {
    const heights = (svg: string) => svg.match(/<rect class="bar"[^>]*>/g)!.map((t) => attr(t, "height"));
    const tp = heights(plots["fullvspara-throughput.svg"]); // disk read only: 200, 200, 50, 50
    expect(tp).toHaveLength(4);
    expect(tp[0] / tp[2]).toBeCloseTo(4, 1);
    const rel = heights(plots["fullvspara-relative.svg"]); // forkwait only: 1, 1, 2, 2
    expect(rel).toHaveLength(4);
    expect(rel[2] / rel[0]).toBeCloseTo(2, 1);
    expect(plots["fullvspara-relative.svg"]).not.toContain("disk_read");
  });

  it("compares nested and shadow paging per workload, from the counters", () => {
    // shadow: 0.8 of the disk read cost (250 MB/s), half the time per fork
    expect(markdown).toContain("| disk read | MB/s | 200 | 250 | 0.800× | 0.000 · 0.000 | — · — | 0.000 | 0.000 | 1.00 · 0.800 |");
    expect(markdown).toContain("| forkwait | µs per op | 1000 | 500 | 0.500× | 1500 · 1500 | 10.0 · 10.0 | 0.000 | 62.0 | 0.600 · 0.600 |");
    const bars = plots["paging.svg"].match(/<rect class="bar"[^>]*>/g)!.map((t) => attr(t, "height"));
    expect(bars).toHaveLength(4); // nested, shadow for each workload
    expect(bars[1] / bars[0]).toBeCloseTo(0.8, 1);
    expect(bars[3] / bars[2]).toBeCloseTo(0.5, 1);
  });

  it("explains each result from this run's figures: the comparison and the exits behind it", () => {
    // Disk: para 4x faster, with each machine's exits per block and device model named.
    expect(markdown).toContain("- **disk read**: para is 4.00× faster than full (200 vs 50.0 MB/s).");
    expect(markdown).toContain("Para's virtio0-blk takes a whole request per notification");
    expect(markdown).toContain("Full's ata0 moves data through its data register one access at a time: 4.00 exits per op, 4.00× as many.");
    // forkwait is a microbenchmark: the comparison goes the way the figures go (para 2x faster).
    expect(markdown).toMatch(/- \*\*Microbenchmarks\*\* \(forkwait: para 2\.00× faster than full\)\. They stay inside the guest: forkwait 0\.600 · 0\.600 exits/);
    // Paging: shadow half the cost per fork, with its traps per fork.
    expect(markdown).toContain("- **forkwait** (page-table-update-heavy): shadow is 2.00× faster than nested, with 62.0 page-table write traps and 0.000 shadow faults per op.");
  });

  it("says when the exits do not explain a gap, instead of inventing a reason", () => {
    const odd: GuestSuiteResult = { memory_mib: 256, runs: 5, machines: [machine("para", "nested", 1, 2), machine("full", "nested", 4, 1)] };
    const md = renderReport({ ...sample(), fullvspara: odd }).markdown;
    expect(md).toContain("forkwait: para 2.00× slower than full");
    expect(md).toContain("Para is nevertheless slower on forkwait with fewer exits, so the exits do not explain the gap; the cause is not established.");
    expect(markdown).not.toContain("the exits do not explain");
  });

  it("says 'slower' when the figures go the other way", () => {
    const flipped: GuestSuiteResult = { memory_mib: 256, runs: 5, machines: [machine("para", "nested", 1, 1), machine("para", "shadow", 1, 3)] };
    const md = renderReport({ ...sample(), paging: flipped }).markdown;
    expect(md).toContain("- **forkwait** (page-table-update-heavy): shadow is 3.00× slower than nested");
  });
});

describe("report: the hypervisor section and its targets", () => {
  const hypervisor: HypervisorResult = {
    fairness: { weights: [1, 2, 4], shares: [0.15, 0.28, 0.57], expected: [1 / 7, 2 / 7, 4 / 7], worst_error: 0.05, seconds: 10 },
    equal: { shares: [0.25, 0.25, 0.25, 0.25], jain: 0.9999 },
    cap: { cap: 0.25, share: 0.265, competitor_share: 0.72 },
    balance: { pcpus: 2, vms: 3, busy: 0.97, moves: 1, spread: true, seconds: 10, reaction_s: 1.2 },
    isolation: { layouts: [{ with: "a VM spinning with interrupts off", p50_ms: 2, p99_ms: 4.5, samples: 200 }, { with: "a VM flooding its disk", p50_ms: 2, p99_ms: 60, samples: 200 }] },
    density: { vms: 100, memory_mib: 32, running: 100, overhead_mib_per_vm: 7.1, guest_touched_mib_per_vm: 10, create_ms: { p50: 16, max: 40 }, ready_s: { p50: 20, max: 30 }, total_s: 35, idle_cpu: 0.04 },
  };
  const r = { ...sample(), hypervisor };
  const targets = checkTargets(r).filter((t) => t.target.startsWith("Hypervisor"));

  it("checks each of the issue's bars against the figures, including failures", () => {
    const by = (prefix: string) => targets.find((t) => t.target.includes(prefix))!;
    expect(by("weights 1:2:4")).toMatchObject({ pass: true, measured: "worst 5.0% off" });
    expect(by("25% cap")).toMatchObject({ pass: true, measured: "26.5% (1.5 points off)" });
    expect(by("Jain")).toMatchObject({ pass: true });
    expect(by("busy")).toMatchObject({ pass: true, measured: "97.0% busy, spread (1 move(s))" });
    expect(by("echo p99")).toMatchObject({ pass: false, measured: "60.0 ms (worst layout)" }); // the disk flood layout
    expect(by("100 VMs")).toMatchObject({ pass: true, measured: "100 running" });
  });

  it("does not count a quick run's smaller density test as a failure", () => {
    const quick = { ...r, hypervisor: { ...hypervisor, density: { ...hypervisor.density, vms: 20, running: 20 } } };
    expect(checkTargets(quick).find((t) => t.target.includes("100 VMs"))).toMatchObject({ pass: null, measured: "not measured (quick run: 20 VMs)" });
  });

  it("renders the table and the shares plot", () => {
    const { markdown, plots } = renderReport(r);
    expect(markdown).toContain("## The hypervisor: many VMs on one host");
    expect(markdown).toContain("| weights 1:2:4 on one pCPU | 15.0% · 28.0% · 57.0% | expected 14.3% · 28.6% · 57.1%; worst 5.0% off |");
    expect(markdown).toContain("| console echo, sharing a pCPU with a VM flooding its disk | p99 60.0 ms | p50 2.00 ms over 200 keys |");
    expect(markdown).toContain("| 100 Linux VMs of 32 MiB at once | 100 running |");
    expect(markdown).toContain("| the host while all 100 idle at their prompts | 4.00% of one core |");
    checkWellFormed(plots["hypervisor.svg"]);
  });
});

describe("report: hypervisor against container", () => {
  const containers: ContainersResult = {
    runtime: { name: "crun", version: "crun version 1.8.1", hybrid_cgroups: true, busybox: "1:1.35.0-4+deb12u1", gcc: "gcc 12.2.0" },
    host_kernel: "6.18.44", host_virtualized: false,
    startup: { container: [60, 50, 70], vm: [1500, 1600, 1400], qemu: [900] },
    density: { instances: 8, vm_memory_mib: 32, container_total_s: 0.4, vm_total_s: 6, container_mib: 0.25, vm_mib: 20, vm_fixed_mib: 224 },
    cpu: [{ program: "md5sum", command: "dd if=/dev/zero bs=64k count=512 2>/dev/null | md5sum", container: [0.1], interpreter: [4], translated: [2], qemu: [1.5] }],
    workloads: [
      { key: "syscall", label: "syscall (getppid)", unit: "µs per op", better: "lower", container: 1, vm: 1.5, container_runs: [1], vm_runs: [1.5] },
      { key: "tcp-rx", label: "network host → guest (TCP)", unit: "MB/s", better: "higher", container: 1000, vm: 20, container_runs: [1000], vm_runs: [20] },
    ],
    isolation: [{ what: "kernel its system calls go to (`uname -r`)", container: "6.18.44: the host's", vm: "6.1.192: its own" }],
  };

  it("sets each figure side by side with the VM's cost in times the container's, and plots each", () => {
    const { markdown, plots } = renderReport({ ...sample(), containers });
    expect(markdown).toContain("## Hypervisor against container");
    expect(markdown).toContain("| start-up: process start to the first line of output | 60.0 ms | 1500 ms | 25.0× |");
    expect(markdown).toContain("| memory per instance, 8 idle at once | 0.250 MiB | 20.0 MiB (32 MiB guests) | 80.0× |");
    expect(markdown).toContain("| instances in 1024 MiB at that rate | 4096 | 40 ");
    expect(markdown).toContain("| syscall (getppid) (µs per op ↓) | 1.00 | 1.50 | 1.50× |");
    expect(markdown).toContain("| network host → guest (TCP) (MB/s ↑) | 1000 | 20.0 | 50.0× |");
    expect(markdown).toContain("md5sum` | 0.100 s | 2.00 s translated; 4.00 s interpreted; QEMU 1.50 s | 20.0× |");
    expect(markdown).toContain("| kernel its system calls go to (`uname -r`) | 6.18.44: the host's | 6.1.192: its own |");
    expect(markdown).toContain("hybrid mode not supported");
    expect(markdown).not.toContain("This machine is itself a virtual machine");
    const files = ["containers-startup.svg", "containers-memory.svg", "containers-density.svg", "containers-cpu.svg", "containers-syscalls.svg", "containers-io.svg"];
    for (const f of files) {
      expect(markdown).toContain(`![${f}](results/${f})`);
      checkWellFormed(plots[f]);
      expect(plots[f]).toContain("container (crun)");
    }
    expect(plots["containers-cpu.svg"]).toContain("QEMU");
  });
});

describe("report: SMP", () => {
  const spinRuns = (one: number, two: number) => ({ work: 1e9, one: [one, one * 1.1, one * 0.9], two: [two, two * 1.1, two * 0.9], speedup: two / one });
  const torture = (jit: "off" | "on" | undefined, ok: boolean) => ({
    ...(jit ? { jit } : {}), ok, line: `WVS torture threads=2 ... ${ok ? "ok" : "FAIL"}`, seconds: 1.5, casRetries: 12, interleavings: 300,
  });
  const smp = (speedup: number, tortureOk: [boolean, boolean]) => ({
    vcpus: 2, wasmvisor_args: ["--smp", "2"], seconds_per_run: 3, host_load: 0.2, torture_iters: 100000,
    wasmvisor: spinRuns(4e8, 4e8 * speedup), qemu: spinRuns(7e8, 1.4e9), torture: [torture("off", tortureOk[0]), torture("on", tortureOk[1])],
    qemu_torture: torture(undefined, true),
  });
  const target = (r: BenchResult, start: string) => checkTargets(r).find((t) => t.target.startsWith(start))!;

  it("passes the speed-up at 1.8× and the torture only when both tiers are exact", () => {
    expect(target(sample(), "SMP: 2 CPU-bound").pass).toBeNull();
    expect(target({ ...sample(), smp: smp(1.0, [true, true]) }, "SMP: 2 CPU-bound")).toMatchObject({ pass: false, measured: "1.00× (QEMU 2.00×)" });
    expect(target({ ...sample(), smp: smp(1.85, [true, true]) }, "SMP: 2 CPU-bound").pass).toBe(true);
    expect(target({ ...sample(), smp: smp(1.0, [true, true]) }, "SMP: atomic-counter")).toMatchObject({ pass: true, measured: "--jit off exact, --jit on exact" });
    expect(target({ ...sample(), smp: smp(1.0, [true, false]) }, "SMP: atomic-counter")).toMatchObject({ pass: false, measured: "--jit off exact, --jit on WRONG" });
  });

  it("tables the throughputs and the torture runs, and plots the speed-ups against the target", () => {
    const { markdown, plots } = renderReport({ ...sample(), smp: smp(1.0, [true, false]) });
    expect(markdown).toContain("## SMP");
    expect(markdown).toContain("| wasmvisor, translation tier (`--jit on`) | 1000 M | 400.0 M/s | 400.0 M/s | **1.00×** |");
    expect(markdown).toContain("| qemu-system-riscv64 | 1000 M | 700.0 M/s | 1400.0 M/s | **2.00×** |");
    expect(markdown).toContain("| wasmvisor, `--jit on` | **WRONG** | 1.50 s | 12 | 300 |");
    expect(markdown).toContain("| qemu-system-riscv64 | exact | 1.50 s | 12 | 300 |");
    expect(markdown).toContain("load average before the runs: 0.20");
    checkWellFormed(plots["smp.svg"]);
    expect(plots["smp.svg"]).toContain("target 1.8×");
  });
});
