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
  /** The last run of the core's differential target (not a coverage-guided target: its own figures). */
  coreDiff?: CoreDiffResult;
}

/** Iterations each target must have run, with nothing found, for the fuzzing issue to be done. */
export const ITERATIONS_GOAL = 1_000_000;

/** The core's differential target (fuzz/core-diff/): cases run on QEMU and on wasmvisor's core, compared. */
export interface CoreDiffResult {
  target: string;
  date: string;
  mode: string;
  seed: number;
  /** QEMU's version and -cpu line (the reference). */
  qemu: string;
  qemuCpu: string;
  /** The translation tier's modes each case ran in (off: interpreted; all: every page translated). */
  tiers: string[];
  /** Cases (programs) run, each on QEMU and on every tier. */
  programs: number;
  batches: number;
  seconds: number;
  programsPerSecond: number;
  /** Cases and tiers with a difference the allow list does not explain. */
  differences: number;
  /** Cases with an allowed difference, by the allow list's reason. */
  explained: Record<string, number>;
  /**
   * Cases whose comparison stopped short of the whole record (an allowed difference that
   * decides how the rest runs excused the rest), by reason. Absent in runs before it was counted.
   */
  cutShort?: Record<string, number>;
  /** Cases that exercised each of the generator's newer features (as QEMU ran them). Absent in runs before it was counted. */
  features?: Record<string, number>;
  /** One line per distinct difference, shrunk (reproducers in fuzz/crashes/core-diff/). */
  found: string[];
}

/** Programs the core's differential target must have run, with no unexplained difference. */
export const PROGRAMS_GOAL = 100_000;
