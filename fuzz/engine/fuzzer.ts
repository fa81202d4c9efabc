/**
 * The fuzzing loop: run the seeds and the corpus, then mutations of corpus inputs chosen at
 * random, keeping those that reach new coverage; an exception that is not the target's clean
 * rejection, or an input that runs longer than the time limit, is a crash (kept once per
 * signature). Runs wherever it is called: the runner puts it on a worker thread so that a hang
 * that never returns can be seen and stopped from outside (fuzz/run.ts).
 */
import { prng } from "../../test/prng";
import type { BlockCoverage } from "./coverage";
import { mutate } from "./mutate";
import { crashSignature, type Target } from "./target";

/** Most inputs run between two takes of coverage. */
const MAX_BATCH = 256;

export interface Crash {
  target: string;
  kind: "exception" | "slow";
  signature: string;
  message: string;
  input: Uint8Array;
}

export interface FuzzOptions {
  /** Stop after this many inputs (seeds and corpus included) ... */
  iterations?: number;
  /** ... or after this many seconds, whichever comes first. */
  seconds?: number;
  seed?: number;
  /** Coverage guidance; without it, mutations of the seeds only (blind). */
  coverage?: BlockCoverage | null;
  /** Stop at the first crash. */
  untilCrash?: boolean;
  /** An input running longer than this is a crash (kind "slow"). */
  timeLimitMs?: number;
  /** Where the runner tells whether the process was stopped meanwhile (an input's time then is not its own). */
  stops?: StopCount;
  /** Inputs run first, then mutated: the seeds, a saved corpus, crashes to replay. */
  corpus?: Uint8Array[];
  /** Told each input before it runs (the runner's hang watchdog keeps it). */
  onInput?(input: Uint8Array): void;
  /** Told each input that reached new coverage (the runner saves it). */
  onNewCoverage?(input: Uint8Array): void;
  /** Told each new crash. */
  onCrash?(crash: Crash): void;
}

/**
 * How many times the process has been stopped and continued (SIGSTOP, Ctrl-Z), as the thread
 * that hears of it counts them.
 */
export interface StopCount {
  read(): number;
  /**
   * Whether the count is past `seen` now or becomes so within a short wait: word of a stop that
   * has just ended may come a little after the input that it held up.
   */
  movedFrom(seen: number): boolean;
}

export interface FuzzStats {
  target: string;
  iterations: number;
  seconds: number;
  execsPerSecond: number;
  /** Distinct blocks of host/ code run (0 without coverage). */
  blocks: number;
  /** Block × hit-count features seen. */
  features: number;
  corpus: number;
  crashes: Crash[];
}

export async function fuzz<Ctx>(target: Target<Ctx>, ctx: Ctx, opts: FuzzOptions = {}): Promise<FuzzStats> {
  const rng = prng(opts.seed ?? 1);
  const cov = opts.coverage ?? null;
  const limitMs = opts.timeLimitMs ?? 1000;
  const maxIterations = opts.iterations ?? Infinity;
  const deadline = performance.now() + (opts.seconds ?? Infinity) * 1000;
  const corpus: Uint8Array[] = [];
  const crashes = new Map<string, Crash>();
  let iterations = 0;
  const t0 = performance.now();

  // Run one input, keeping it if it crashed.
  const exec = async (input: Uint8Array): Promise<void> => {
    opts.onInput?.(input);
    iterations++;
    const stops = opts.stops?.read() ?? 0;
    const start = performance.now();
    let failure: { kind: Crash["kind"]; err: unknown } | null = null;
    try {
      const r = target.run(input, ctx);
      if (r) await r;
    } catch (err) {
      if (!target.rejects(err)) failure = { kind: "exception", err };
    }
    const ms = performance.now() - start;
    if (!failure && ms > limitMs && !opts.stops?.movedFrom(stops)) failure = { kind: "slow", err: new Error(`one input took ${ms.toFixed(0)} ms (limit ${limitMs} ms)`) };
    if (failure) {
      const signature = failure.kind === "slow" ? "slow input" : crashSignature(failure.err);
      if (!crashes.has(signature)) {
        const e = failure.err;
        const crash: Crash = {
          target: target.name, kind: failure.kind, signature,
          message: e instanceof Error ? (e.stack ?? e.message) : String(e), input,
        };
        crashes.set(signature, crash);
        opts.onCrash?.(crash);
      }
    }
  };
  // Taking coverage costs milliseconds (V8 reports every function), much more than most inputs,
  // so mutated inputs run in batches with one take each. A batch that ran a block never seen
  // before is split in halves, each run again with a take of its own, down to the single inputs
  // that did (a few takes where one per input of the batch would be many); a single input's own
  // features decide whether it joins the corpus. Batches grow by a quarter while nothing is found
  // and halve when something is, so about one batch in four finds something: larger batches
  // would spend more on running found ones again than they save in takes.
  let batchSize = 1;
  const batch: Uint8Array[] = [];
  const runAll = async (inputs: Uint8Array[]): Promise<number[]> => {
    for (const input of inputs) await exec(input);
    return cov!.take();
  };
  // `group` reached a new block when it last ran (`features`: what that run gave, needed only for
  // a single input; null: not run on its own, it is what is left of a group whose other half
  // reached nothing new).
  const bisect = async (group: Uint8Array[], features: number[] | null): Promise<void> => {
    if (group.length === 1) {
      if (cov!.add(features ?? (await runAll(group))) > 0) {
        corpus.push(group[0]!);
        opts.onNewCoverage?.(group[0]!);
      }
      return;
    }
    const half = group.length >> 1;
    const first = group.slice(0, half), second = group.slice(half);
    const f = await runAll(first);
    const firstFound = cov!.hasNewBlock(f);
    if (firstFound) await bisect(first, f);
    // Inputs run the same way each time, so if the first half reached nothing new the second
    // did: it is split without a run of its own (if it did not after all, its singles say so).
    if (!firstFound) return bisect(second, null);
    const g = second.length === 1 ? null : await runAll(second);
    if (g === null || cov!.hasNewBlock(g)) await bisect(second, g);
  };
  const runBatch = async (): Promise<void> => {
    const features = cov ? cov.take() : null;
    const found = features !== null && cov!.hasNewBlock(features);
    if (found) await bisect(batch.slice(), batch.length === 1 ? features : null);
    batch.length = 0;
    batchSize = found ? Math.max(1, batchSize >> 1) : Math.min(MAX_BATCH, batchSize + Math.max(1, batchSize >> 2));
  };
  const more = () => iterations < maxIterations && performance.now() < deadline && !(opts.untilCrash && crashes.size > 0);

  if (cov) cov.take(); // whatever ran before (setup) is not this target's input
  // The starting corpus all stays (seeds are the shapes mutations start from; a saved corpus was
  // kept for what it found), so its coverage is taken per batch too: a saved corpus is large.
  for (const input of opts.corpus ?? target.seeds()) {
    if (!more()) break;
    await exec(input);
    corpus.push(input);
    if (cov && corpus.length % MAX_BATCH === 0) cov.add(cov.take());
  }
  if (cov) cov.add(cov.take());
  if (corpus.length === 0) corpus.push(new Uint8Array(0));
  while (more()) {
    // Newer entries (which found something) are picked more often than old ones.
    const i = rng() % 3 === 0 ? corpus.length - 1 - (rng() % Math.min(corpus.length, 8)) : rng() % corpus.length;
    const other = corpus[rng() % corpus.length];
    const input = mutate(corpus[i]!, rng, target.maxLength, other);
    await exec(input);
    batch.push(input);
    if (batch.length >= batchSize) await runBatch();
  }
  if (batch.length) await runBatch();
  const seconds = (performance.now() - t0) / 1000;
  return {
    target: target.name, iterations, seconds, execsPerSecond: iterations / seconds,
    blocks: cov?.blocks ?? 0, features: cov?.features ?? 0, corpus: corpus.length, crashes: [...crashes.values()],
  };
}
