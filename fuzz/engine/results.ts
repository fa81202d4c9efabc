/** What `npm run fuzz` writes to fuzz/results/latest.json (and the bench report shows). */
export interface TargetResult {
  target: string;
  iterations: number;
  seconds: number;
  execsPerSecond: number;
  /** Distinct blocks of host/ code run (on the fuzzing thread: not the pCPU worker the api target's VM runs on). */
  blocks: number;
  /** Block × hit-count features seen. */
  features: number;
  corpus: number;
  crashes: number;
  hangs: number;
  /** One line per distinct crash or hang. */
  found: string[];
}

export interface FuzzResults {
  date: string;
  mode: string;
  seed: number;
  coverage: boolean;
  machine: { cpus: number; memoryGiB: number; node: string };
  targets: TargetResult[];
}

/** Iterations each target must have run, with nothing found, for the fuzzing issue to be done. */
export const ITERATIONS_GOAL = 1_000_000;
