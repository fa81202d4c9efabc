// CPU suite: the project's CPU-bound bare-metal guests (guests/bench), run to completion on the
// core and, when it is installed, on qemu-system-riscv64 (-M spike runs the same HTIF binaries).
// QEMU is timed as a whole process, so its start-up (timed on the `empty` guest, which exits at
// once) is subtracted from each program's QEMU time; the core's time never included its own.
// Each program runs on the translation tier (--jit on, what `mips` measures) and on the
// interpreter alone, taking turns, so the tier's gain is measured under the same conditions.
import { readFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { runBareMetal } from "../test/board";
import type { JitMode, JitStats } from "../host/jit/tier";
import { loadCoreModule } from "../host/platform/node/core";
import { geomean, median } from "../host/util/stats";
import { qemuVersion } from "./machine";

export interface CpuResult {
  program: string;
  instructions: number;
  seconds: number[]; // one per run, with the translation tier (before it, the interpreter alone)
  mips: number; // median
  /** The interpreter alone (--jit off): its runs and median MIPS; absent in results from before the tier. */
  interpreterSeconds?: number[];
  interpreterMips?: number;
  /** What the translation tier did in the last run. */
  jit?: JitStats;
  /** QEMU's median time for the whole process, start-up included. */
  qemuRawSeconds?: number;
  /** qemuRawSeconds less QEMU's start-up: the program's own time on QEMU. */
  qemuSeconds?: number;
  /** From qemuSeconds. */
  qemuMips?: number;
}

/** Run one ELF to its HTIF exit; returns instructions retired and wall seconds. */
export function runGuest(elf: string, jit: JitMode): { instructions: number; seconds: number; code: number; output: string; jit?: JitStats } {
  const r = runBareMetal(loadCoreModule(), { name: elf, bytes: new Uint8Array(readFileSync(elf)) }, { timeoutSeconds: 600, jit });
  return { instructions: r.instructions, seconds: r.seconds, code: r.reason.code, output: r.output, jit: r.machine.stats().jit };
}

export function runQemu(elf: string): number {
  const t0 = performance.now();
  const r = spawnSync("qemu-system-riscv64", ["-M", "spike", "-bios", "none", "-nographic", "-kernel", elf], { timeout: 120_000 });
  if (r.status !== 0) throw new Error(`qemu failed on ${elf}: status ${r.status}\n${r.stdout}\n${r.stderr}`);
  return (performance.now() - t0) / 1000;
}

export interface CpuSummary {
  /** Geometric means over the programs (mips: the translation tier's; interpreter_mips: without it). */
  mips: number;
  interpreter_mips?: number;
  qemu_mips: number | null;
  ratio_vs_qemu: number | null;
  /**
   * QEMU's start-up and exit: the median time of the `empty` guest, subtracted from each
   * program's QEMU time. Absent in results from before it was measured (QEMU's times include it).
   */
  qemu_startup_s?: number | null;
  qemu_startup_runs?: number[];
  programs: CpuResult[];
}

/** Runs of the empty guest for QEMU's start-up (after one uncounted run that warms the host's caches). */
const STARTUP_RUNS = 11;

function qemuStartup(emptyElf: string): { seconds: number; runs: number[] } {
  runQemu(emptyElf);
  const runs = Array.from({ length: STARTUP_RUNS }, () => runQemu(emptyElf));
  return { seconds: median(runs), runs };
}

export function cpuSuite(programs: Record<string, string>, runs: number, log: (s: string) => void): CpuSummary {
  const withQemu = qemuVersion() !== null;
  let startup: { seconds: number; runs: number[] } | null = null;
  if (withQemu) {
    if (!programs.empty) throw new Error("cpu suite: the bare-metal build has no `empty` guest to time QEMU's start-up with");
    startup = qemuStartup(programs.empty);
    log(`  qemu start-up (empty guest, median of ${STARTUP_RUNS}): ${(startup.seconds * 1000).toFixed(1)} ms, subtracted from each program's QEMU time`);
  }
  const results: CpuResult[] = [];
  for (const [name, elf] of Object.entries(programs)) {
    if (!name.startsWith("bench-")) continue;
    const seconds: number[] = [], interpreterSeconds: number[] = [];
    let instructions = 0;
    let jit: JitStats | undefined;
    for (let i = 0; i < runs; i++) {
      for (const mode of ["off", "on"] as const) {
        const r = runGuest(elf, mode);
        if (r.code !== 0) throw new Error(`${name} failed with --jit ${mode} (exit ${r.code}):\n${r.output}`);
        (mode === "on" ? seconds : interpreterSeconds).push(r.seconds);
        if (mode === "on") jit = r.jit;
        instructions = r.instructions;
      }
    }
    const res: CpuResult = {
      program: name, instructions, seconds, mips: instructions / median(seconds) / 1e6,
      interpreterSeconds, interpreterMips: instructions / median(interpreterSeconds) / 1e6, jit,
    };
    if (startup) {
      const qs: number[] = [];
      for (let i = 0; i < runs; i++) qs.push(runQemu(elf));
      res.qemuRawSeconds = median(qs);
      res.qemuSeconds = res.qemuRawSeconds - startup.seconds;
      if (res.qemuSeconds <= 0) {
        throw new Error(`${name}: QEMU ran it in ${res.qemuRawSeconds.toFixed(3)} s, no longer than its start-up (${startup.seconds.toFixed(3)} s): ` +
          "too short to time; run without --quick");
      }
      res.qemuMips = instructions / res.qemuSeconds / 1e6;
    }
    log(`  ${name.padEnd(14)} ${(instructions / 1e6).toFixed(1).padStart(8)} M instr  ${res.mips.toFixed(1).padStart(7)} MIPS` +
      ` (interpreter ${res.interpreterMips!.toFixed(1)}; ${jit!.translations} pages, ${jit!.compileMs.toFixed(1)} ms compiling, ${((100 * jit!.retired) / instructions).toFixed(0)}% translated)` +
      (res.qemuMips ? `   qemu ${res.qemuMips.toFixed(1).padStart(7)} MIPS  (${((100 * res.mips) / res.qemuMips).toFixed(0)}%)` : ""));
    results.push(res);
  }
  const mips = geomean(results.map((r) => r.mips));
  const interpreterMips = geomean(results.map((r) => r.interpreterMips!));
  const qemu = withQemu ? geomean(results.map((r) => r.qemuMips!)) : null;
  log(`  geometric mean: ${mips.toFixed(1)} MIPS` + (qemu ? `, qemu ${qemu.toFixed(1)} MIPS (${((100 * mips) / qemu).toFixed(1)}%)` : ""));
  return {
    mips, interpreter_mips: interpreterMips, qemu_mips: qemu, ratio_vs_qemu: qemu ? mips / qemu : null,
    qemu_startup_s: startup?.seconds ?? null, qemu_startup_runs: startup?.runs ?? [], programs: results,
  };
}
