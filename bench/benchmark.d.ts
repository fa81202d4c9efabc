// The part of benchmark.js (npm `benchmark` 2.1) the exits suite uses; the package ships no types.
declare module "benchmark" {
  namespace Benchmark {
    interface Deferred {
      resolve(): void;
    }
    interface Options {
      /** Seconds to spend sampling (default 5). */
      maxTime?: number;
      minSamples?: number;
      defer?: boolean;
      fn?: ((deferred: Deferred) => void) | (() => void);
    }
    interface Stats {
      /** Mean seconds per call. */
      mean: number;
      /** Relative margin of error of the mean, in percent (95% confidence). */
      rme: number;
      /** Seconds per call, one per sample. */
      sample: number[];
    }
  }
  class Benchmark {
    constructor(name: string, fn: () => void, options?: Benchmark.Options);
    constructor(name: string, options: Benchmark.Options);
    readonly name: string;
    readonly hz: number;
    readonly stats: Benchmark.Stats;
    readonly error?: Error;
    readonly aborted: boolean;
    on(type: "complete" | "error", listener: () => void): this;
    run(options?: { async?: boolean }): this;
  }
  export = Benchmark;
}
