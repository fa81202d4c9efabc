/**
 * Coverage guidance from V8's precise block coverage (the inspector's Profiler domain, on this
 * thread, answered synchronously): after each input, the blocks of the project's host/ code
 * that ran and how often (in AFL's power-of-two buckets) are its features; an input with a
 * feature never seen before joins the corpus. Taking coverage also resets the counters.
 */
import { Session } from "node:inspector";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

interface Range { startOffset: number; endOffset: number; count: number }
interface FunctionCoverage { ranges: Range[] }
interface ScriptCoverage { scriptId: string; url: string; functions: FunctionCoverage[] }

/** Which offsets of a script are the code under test: all, none, or those a predicate accepts. */
type ScriptFilter = boolean | ((offset: number) => boolean);

const HOST_SOURCE = /\/host\/.*\.ts$/;

/**
 * Which code counts. Unbundled (vitest), each host/ source is its own script. In the esbuild
 * bundle the runner uses, modules follow each other behind a `// path` comment: the host/
 * modules' spans are found from those.
 */
export function hostCode(url: string): ScriptFilter {
  if (HOST_SOURCE.test(url.split("?")[0]!)) return true;
  if (!/\/dist\/fuzz[^/]*\.js$/.test(url)) return false;
  const text = readFileSync(fileURLToPath(url), "utf8");
  const spans: { start: number; host: boolean }[] = [];
  for (const m of text.matchAll(/^\/\/ (\S+\.[cm]?[jt]s)$/gm)) spans.push({ start: m.index!, host: m[1]!.startsWith("host/") });
  return (offset) => {
    let lo = 0, hi = spans.length - 1, found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (spans[mid]!.start <= offset) { found = mid; lo = mid + 1; } else hi = mid - 1;
    }
    return found >= 0 && spans[found]!.host;
  };
}

const bucket = (count: number) => (count >= 128 ? 7 : count >= 32 ? 6 : count >= 16 ? 5 : count >= 8 ? 4 : count >= 4 ? 3 : count);

/**
 * Start it before the code under test first runs: V8 puts block counters only into functions
 * compiled after precise block coverage started; older ones report their calls alone.
 */
export class BlockCoverage {
  private readonly session = new Session();
  private readonly filters = new Map<string, ScriptFilter>();
  /** Per script and function (its whole range), the block ranges V8 has reported, with their dense ids. */
  private readonly ids = new Map<string, Map<number, { start: number; end: number; id: number }[]>>();
  private nextId = 0;
  /** Features (block id × bucket) some input has had. */
  private readonly seen = new Set<number>();
  /** Blocks some input has run. */
  private readonly blocksRun = new Set<number>();

  constructor(private readonly include: (url: string) => ScriptFilter = hostCode) {
    this.session.connect();
    this.post("Profiler.enable");
    this.post("Profiler.startPreciseCoverage", { callCount: true, detailed: true });
    this.post("Profiler.takePreciseCoverage"); // start counting from here
  }

  private post<T>(method: string, params?: object): T {
    let result: T | undefined, error: Error | null = null;
    this.session.post(method, params, (err, res) => { error = err; result = res as T; });
    if (error) throw error;
    if (result === undefined) throw new Error(`the inspector did not answer ${method} synchronously`);
    return result;
  }

  /**
   * The features of what ran since the last call. V8 reports a function's blocks as nested
   * ranges, and only those whose count differs from the range around them: a block that ran as
   * often as its function is not reported at all. So each function keeps every range it was
   * ever reported with, and a range's count is that of the innermost range reported now that
   * holds it.
   */
  take(): number[] {
    const { result } = this.post<{ result: ScriptCoverage[] }>("Profiler.takePreciseCoverage");
    const features: number[] = [];
    for (const script of result) {
      let filter = this.filters.get(script.url);
      if (filter === undefined) this.filters.set(script.url, (filter = this.include(script.url)));
      if (filter === false) continue;
      let fns = this.ids.get(script.scriptId);
      if (!fns) this.ids.set(script.scriptId, (fns = new Map()));
      for (const fn of script.functions) {
        const ranges = fn.ranges;
        const whole = ranges[0]!;
        if (whole.count === 0) continue; // not run: its inner ranges say nothing either
        if (filter !== true && !filter(whole.startOffset)) continue;
        const fkey = whole.startOffset * 0x1000000 + whole.endOffset;
        let known = fns.get(fkey);
        if (!known) fns.set(fkey, (known = []));
        for (const r of ranges) {
          if (!known.some((k) => k.start === r.startOffset && k.end === r.endOffset)) known.push({ start: r.startOffset, end: r.endOffset, id: this.nextId++ });
        }
        for (const k of known) {
          let count = 0, span = Infinity;
          for (const r of ranges) {
            if (r.startOffset <= k.start && r.endOffset >= k.end && r.endOffset - r.startOffset < span) {
              span = r.endOffset - r.startOffset;
              count = r.count;
            }
          }
          if (count > 0) features.push(k.id * 8 + bucket(count));
        }
      }
    }
    return features;
  }

  /** Forget what was seen (the next target starts afresh); blocks keep their ids. */
  forget(): void {
    this.seen.clear();
    this.blocksRun.clear();
  }

  /** Record `features`; returns how many were new. */
  add(features: number[]): number {
    let fresh = 0;
    for (const f of features) {
      if (this.seen.has(f)) continue;
      this.seen.add(f);
      this.blocksRun.add(Math.floor(f / 8));
      fresh++;
    }
    return fresh;
  }

  /** Whether `features` include a block no input has run before (hit counts aside). */
  hasNewBlock(features: number[]): boolean {
    return features.some((f) => !this.blocksRun.has(Math.floor(f / 8)));
  }

  /** Distinct blocks of the code under test run so far. */
  get blocks(): number {
    return this.blocksRun.size;
  }

  get features(): number {
    return this.seen.size;
  }

  close(): void {
    this.post("Profiler.stopPreciseCoverage");
    this.post("Profiler.disable");
    this.session.disconnect();
  }
}
