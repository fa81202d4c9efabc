/**
 * `npm run fuzz`: every target (or those --target names), each on a worker thread of its own
 * for --seconds (default 30; --quick: one minute for all of them), coverage-guided. The main
 * thread watches each worker's progress: an input that does not return within the hang limit
 * is a hang (the worker is stopped, the input kept, a new worker goes on). Crashing inputs go
 * to fuzz/crashes/<target>/, inputs with new coverage to fuzz/.corpus/<target>/, the figures
 * to fuzz/results/latest.json.
 *
 * The core's differential target (core-diff, fuzz/core-diff/) runs on the main thread: it runs
 * its cases on QEMU and compares (--iterations: its programs).
 *
 * The process may be stopped and continued (Ctrl-Z and fg, SIGSTOP and SIGCONT): the time it
 * was stopped counts neither towards a hang nor towards a slow input.
 *
 *   npm run fuzz -- [--quick] [--target NAME]... [--seconds N] [--iterations N] [--seed N]
 *                   [--no-coverage] [--hang-seconds N] [--no-save] [--list] [--write-seeds]
 */
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import { existsSync, mkdirSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { cpus, totalmem } from "node:os";
import { TARGETS, findTarget } from "./targets/index";
import { BlockCoverage } from "./engine/coverage";
import { fuzz, type Crash, type FuzzStats } from "./engine/fuzzer";
import { HangWatch } from "./engine/watch";
import { corpusPath, fuzzDir, inputName, readInputs, saveInput } from "./engine/corpus";
import type { CoreDiffResult, FuzzResults, TargetResult } from "./engine/results";
import { CORE_DIFF, runCoreDiff } from "./core-diff/run";
import { writeReportFiles } from "../bench/report-files";

// The buffer a worker shares with the main thread: Int32 words, then the input being run.
/** Inputs the worker has started. */
const W_PROGRESS = 0;
/** Bytes of the input being run (at W_INPUT). */
const W_LENGTH = 1;
/** Times the main thread saw the process stopped and continued. */
const W_STOPS = 2;
const W_INPUT = 16;
/** Bytes of the shared buffer a worker copies each input into before running it. */
const WATCH_BYTES = 1 << 20;
const TIME_LIMIT_MS = 1000;
/** No progress for this long (--hang-seconds): the input is a hang. */
const HANG_MS = 10_000;
/** How often the main thread looks at a worker's progress. */
const TICK_MS = 200;

interface WorkerJob {
  target: string;
  seconds: number;
  iterations: number;
  seed: number;
  coverage: boolean;
  /** Keep nothing (--no-save): no corpus, no crash files. */
  save: boolean;
  /** Crash files not to replay (a hang just seen). */
  skip: string[];
  watch: SharedArrayBuffer;
}

type WorkerMessage =
  | { kind: "crash"; crash: Crash }
  | { kind: "done"; stats: Omit<FuzzStats, "crashes"> }
  | { kind: "failed"; error: string };

async function workerMain(job: WorkerJob): Promise<void> {
  const target = findTarget(job.target);
  // Before anything runs: V8 instruments blocks only in functions compiled after coverage starts.
  const coverage = job.coverage ? new BlockCoverage() : null;
  const ctx = await target.setup();
  const watch = new Int32Array(job.watch);
  const watchBytes = new Uint8Array(job.watch, W_INPUT);
  const corpus = [
    ...target.seeds(),
    ...readInputs("corpus", target.name).map((f) => f.input),
    ...readInputs(".corpus", target.name).map((f) => f.input),
    ...readInputs("crashes", target.name).filter((f) => !job.skip.includes(f.name)).map((f) => f.input),
  ];
  const stats = await fuzz(target, ctx, {
    seconds: job.seconds, iterations: job.iterations, seed: job.seed, coverage, corpus, timeLimitMs: TIME_LIMIT_MS,
    onInput(input) {
      const n = Math.min(input.length, watchBytes.length);
      watchBytes.set(input.subarray(0, n));
      watch[W_LENGTH] = n;
      Atomics.add(watch, W_PROGRESS, 1);
    },
    // The main thread counts stops as it hears of them (SIGCONT, its own timer coming late), a
    // moment after the process continues: long enough to wait for here, only when an input was slow.
    stops: {
      read: () => Atomics.load(watch, W_STOPS),
      movedFrom: (seen) => Atomics.wait(watch, W_STOPS, seen, 4 * TICK_MS) !== "timed-out",
    },
    onNewCoverage: (input) => { if (job.save) saveInput(".corpus", target.name, input); },
    onCrash: (crash) => parentPort!.postMessage({ kind: "crash", crash } satisfies WorkerMessage),
  });
  // The figures first: the runner stops the worker once it has them, so a teardown that does not
  // end (seen with user-net's, once in a few long runs: not yet understood) cannot hold them up.
  const { crashes: _, ...rest } = stats;
  parentPort!.postMessage({ kind: "done", stats: rest } satisfies WorkerMessage);
  coverage?.close();
  await target.teardown?.(ctx);
}

/** The watch of the worker running now, told when the process is continued after a stop. */
let watching: { watch: HangWatch; counter: Int32Array } | null = null;

/** The process was stopped and is running again: neither a hang nor a slow input. */
function continued(w: { watch: HangWatch; counter: Int32Array }): void {
  w.watch.restart();
  Atomics.add(w.counter, W_STOPS, 1);
  Atomics.notify(w.counter, W_STOPS);
}

/** How long a target was run, for the results: its bound in inputs (and seconds, if those come first) or in seconds. */
function runMode(seconds: number, iterations: number): string {
  const time = seconds === Math.floor(seconds) ? `${seconds} s` : `${seconds.toFixed(1)} s`;
  return Number.isFinite(iterations) ? `${iterations} inputs (at most ${time})` : time;
}

/** Run one target for `seconds` on workers, restarting after hangs. */
async function runTarget(name: string, seconds: number, iterations: number, seed: number, coverage: boolean, hangMs: number, save: boolean): Promise<TargetResult> {
  const result: TargetResult = { target: name, date: new Date().toISOString(), mode: `${runMode(seconds, iterations)}, seed ${seed}`, iterations: 0, seconds: 0, execsPerSecond: 0, blocks: 0, features: 0, corpus: 0, crashes: 0, hangs: 0, found: [] };
  const skip: string[] = [];
  const deadline = performance.now() + seconds * 1000;
  let left = iterations;
  const record = (c: Crash) => {
    const file = save ? saveInput("crashes", name, c.input, `${c.kind}: ${c.signature}\n\n${c.message}`) : null;
    result.found.push(`${c.kind}: ${c.signature}${file ? ` (${file.slice(fuzzDir().length - 4)})` : ""}`);
    if (c.kind === "slow") result.hangs++;
    else result.crashes++;
    console.log(`  ${name}: ${c.kind}: ${c.signature}${file ? `\n    kept as ${file}` : ""}`);
  };
  while (left > 0 && performance.now() < deadline - 500) {
    const watch = new SharedArrayBuffer(W_INPUT + WATCH_BYTES);
    const counter = new Int32Array(watch);
    const job: WorkerJob = { target: name, seconds: (deadline - performance.now()) / 1000, iterations: left, seed: seed + skip.length, coverage, save, skip, watch };
    const worker = new Worker(new URL(import.meta.url), { workerData: job });
    const w = (watching = { watch: new HangWatch(hangMs, TICK_MS), counter });
    const outcome = await new Promise<{ hang: Uint8Array | null; stats: WorkerMessage & { kind: "done" } | null; error?: unknown }>((resolve) => {
      const timer = setInterval(() => {
        const seen = w.watch.tick(Atomics.load(counter, W_PROGRESS));
        if (seen === "stopped") continued(w);
        if (seen === "hang") {
          clearInterval(timer);
          const input = new Uint8Array(watch, W_INPUT, counter[W_LENGTH]!).slice();
          // Kept first: a thread stuck where V8 cannot interrupt it may never end; then it is
          // left behind (the process exits at the end all the same).
          resolve({ hang: input, stats: null });
          void worker.terminate();
        }
      }, TICK_MS);
      worker.on("message", (m: WorkerMessage) => {
        if (m.kind === "crash") record(m.crash);
        else if (m.kind === "failed") { clearInterval(timer); resolve({ hang: null, stats: null, error: new Error(m.error) }); }
        else { clearInterval(timer); resolve({ hang: null, stats: m }); }
      });
      worker.on("error", (error) => { clearInterval(timer); resolve({ hang: null, stats: null, error }); });
    });
    watching = null;
    if (outcome.stats) {
      const s = outcome.stats.stats;
      result.iterations += s.iterations;
      result.seconds += s.seconds;
      result.blocks = Math.max(result.blocks, s.blocks);
      result.features = Math.max(result.features, s.features);
      result.corpus = Math.max(result.corpus, s.corpus);
      left -= s.iterations;
      await worker.terminate();
      break;
    }
    if (outcome.error && Atomics.load(counter, 0) === 0) {
      // It died before its first input: its setup is broken, and would be each time.
      throw new Error(`${name}: the target's setup failed: ${(outcome.error as Error)?.stack ?? String(outcome.error)}`);
    }
    if (outcome.error) {
      const c: Crash = { target: name, kind: "exception", signature: `the worker died: ${String(outcome.error).split("\n")[0]}`, message: String((outcome.error as Error)?.stack ?? outcome.error), input: new Uint8Array(watch, W_INPUT, counter[W_LENGTH]!).slice() };
      record(c);
      skip.push(`${inputName(c.input)}.bin`);
      continue;
    }
    const input = outcome.hang!;
    record({ target: name, kind: "slow", signature: `hang: no return in ${hangMs / 1000} s`, message: "the input did not return", input });
    skip.push(`${inputName(input)}.bin`);
    result.iterations += Atomics.load(counter, W_PROGRESS);
  }
  result.execsPerSecond = result.seconds > 0 ? result.iterations / result.seconds : 0;
  return result;
}

function parseArgs(argv: string[]) {
  const opts = { quick: false, targets: [] as string[], seconds: 30, iterations: Infinity, seed: 1, coverage: true, hangSeconds: HANG_MS / 1000, save: true, list: false, writeSeeds: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    const number = () => {
      const v = Number(value());
      if (!Number.isFinite(v) || v <= 0) throw new Error(`${a} needs a positive number`);
      return v;
    };
    if (a === "--quick") opts.quick = true;
    else if (a === "--target") opts.targets.push(...value().split(","));
    else if (a === "--seconds") opts.seconds = number();
    else if (a === "--iterations") opts.iterations = Math.floor(number());
    else if (a === "--seed") opts.seed = Math.floor(number());
    else if (a === "--no-coverage") opts.coverage = false;
    else if (a === "--hang-seconds") opts.hangSeconds = number();
    else if (a === "--no-save") opts.save = false;
    else if (a === "--list") opts.list = true;
    else if (a === "--write-seeds") opts.writeSeeds = true;
    else throw new Error(`unknown option ${a}: use --quick, --target NAME, --seconds N, --iterations N, --seed N, --no-coverage, --hang-seconds N, --no-save, --list or --write-seeds`);
  }
  for (const t of opts.targets) if (t !== CORE_DIFF) findTarget(t);
  return opts;
}

/** Regenerate the committed seed corpus (fuzz/corpus/<target>/) from the targets' seed programs. */
function writeSeeds(): void {
  for (const t of TARGETS) {
    rmSync(corpusPath("corpus", t.name), { recursive: true, force: true });
    for (const s of t.seeds()) saveInput("corpus", t.name, s);
  }
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.list) {
    for (const t of TARGETS) console.log(`${t.name.padEnd(16)} ${t.about}`);
    console.log(`${CORE_DIFF.padEnd(16)} random and mutated RV64GC cases on wasmvisor's core (interpreted and translated) and on QEMU, compared`);
    return;
  }
  if (opts.writeSeeds) {
    writeSeeds();
    console.log(`seed corpus written to ${join(fuzzDir(), "corpus")}`);
    return;
  }
  const names = opts.targets.length ? opts.targets : [...TARGETS.map((t) => t.name), CORE_DIFF];
  if (!opts.save && names.includes(CORE_DIFF)) throw new Error(`--no-save is for the targets that run on workers: name them with --target (not ${CORE_DIFF})`);
  const seconds = opts.quick ? 60 / names.length : opts.seconds;
  const results: TargetResult[] = [];
  let coreDiff: CoreDiffResult | null = null;
  // Continued after a stop (Ctrl-Z and fg): the watch's timer may not have come round yet.
  process.on("SIGCONT", () => { if (watching) continued(watching); });
  for (const name of names) {
    console.log(`${name}: ${seconds.toFixed(1)} s`);
    if (name === CORE_DIFF) {
      coreDiff = await runCoreDiff({ seconds, programs: opts.iterations, seed: opts.seed, log: console.log });
      coreDiff.mode = opts.quick ? "quick" : coreDiff.mode;
      const short = Object.values(coreDiff.cutShort ?? {}).reduce((a, b) => a + b, 0);
      console.log(`  ${coreDiff.programs} programs, ${coreDiff.programsPerSecond.toFixed(0)}/s, ${coreDiff.differences} unexplained differences, ${Object.values(coreDiff.explained).reduce((a, b) => a + b, 0)} allowed, ${short} (${((100 * short) / Math.max(1, coreDiff.programs)).toFixed(1)}%) compared short of the whole record`);
      for (const [why, n] of Object.entries(coreDiff.cutShort ?? {}).sort((a, b) => b[1] - a[1])) console.log(`    ${n}: ${why}`);
      console.log("  cases that exercised:");
      for (const [what, n] of Object.entries(coreDiff.features ?? {}).sort((a, b) => b[1] - a[1])) console.log(`    ${n} (${((100 * n) / Math.max(1, coreDiff.programs)).toFixed(1)}%): ${what}`);
      continue;
    }
    const r = await runTarget(name, seconds, opts.iterations, opts.seed, opts.coverage, opts.hangSeconds * 1000, opts.save);
    console.log(`  ${r.iterations} inputs, ${r.execsPerSecond.toFixed(0)}/s, ${r.blocks} blocks, corpus ${r.corpus}, ${r.crashes} crashes, ${r.hangs} hangs`);
    results.push(r);
  }
  const bad = results.reduce((n, r) => n + r.crashes + r.hangs, 0) + (coreDiff?.differences ?? 0);
  if (!opts.save) process.exit(bad ? 1 : 0);
  // A run of some targets replaces their figures and keeps the others' (each carries its date).
  const file = join(fuzzDir(), "results", "latest.json");
  const last = existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as FuzzResults) : null;
  const earlier = (last?.targets ?? []).filter((t) => !names.includes(t.target)).map((t) => ({ ...t, date: t.date ?? last!.date, mode: t.mode ?? last!.mode }));
  const order = TARGETS.map((t) => t.name);
  const out: FuzzResults = {
    date: new Date().toISOString(),
    mode: opts.quick ? "quick" : `${runMode(opts.seconds, opts.iterations)} per target`,
    seed: opts.seed,
    coverage: opts.coverage,
    machine: { cpus: cpus().length, memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version },
    targets: [...earlier.filter((t) => order.includes(t.target)), ...results].sort((a, b) => order.indexOf(a.target) - order.indexOf(b.target)),
    coreDiff: coreDiff ?? last?.coreDiff,
  };
  mkdirSync(join(fuzzDir(), "results"), { recursive: true });
  writeFileSync(file, JSON.stringify(out, null, 2) + "\n");
  // The bench report's fuzzing section, where there is a benchmark run to report with.
  if (writeReportFiles()) console.log("bench/REPORT.md updated");
  console.log(`results in ${join(fuzzDir(), "results", "latest.json")}${bad ? `: ${bad} crashes, hangs and differences (fuzz/crashes/)` : ""}`);
  // A worker that never returned from a hang may still hold the process.
  process.exit(bad ? 1 : 0);
}

if (isMainThread) {
  main().catch((e) => {
    console.error(`fuzz: ${e instanceof Error ? e.message : String(e)}`);
    process.exitCode = 2;
  });
} else {
  // A failure outside an input (the target's setup) ends the worker with it, whatever handlers a target installed.
  workerMain(workerData as WorkerJob).catch((e) => parentPort!.postMessage({ kind: "failed", error: e instanceof Error ? e.stack ?? e.message : String(e) } satisfies WorkerMessage));
}
