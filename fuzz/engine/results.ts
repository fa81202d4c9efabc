/** What `npm run fuzz` writes to fuzz/results/latest.json (and the bench report shows). */
export interface TargetResult {
  target: string;
  /** When it ran, and for how long it was asked to (runs of some targets keep the others' figures). */
  date: string;
  mode: string;
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
  /** The last run's date and how it was asked to run. */
  date: string;
  mode: string;
  seed: number;
  coverage: boolean;
  machine: { cpus: number; memoryGiB: number; node: string };
  targets: TargetResult[];
}

/** Iterations each target must have run, with nothing found, for the fuzzing issue to be done. */
export const ITERATIONS_GOAL = 1_000_000;
