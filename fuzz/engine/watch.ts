/**
 * The runner's hang watch (fuzz/run.ts): an input hangs when the worker running it has made no
 * progress for the hang limit. Time the whole process spent stopped (SIGSTOP, Ctrl-Z, a
 * debugger) is nobody's: the watch's own timer, due every tickMs, comes late after a stop, and
 * the watch then starts its clock again instead of charging the stop to the input.
 */
export class HangWatch {
  private progress = -1;
  private since: number;
  private lastTick: number;

  /**
   * `lateMs`: a tick more than this late means the process did not run in between (the main
   * thread has nothing that could block it that long; if it did, the hang is only seen later).
   */
  constructor(
    readonly hangMs: number,
    readonly tickMs: number,
    readonly lateMs = 1000,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.since = this.lastTick = now();
  }

  /**
   * One tick, given the worker's progress count (inputs started). Returns "hang" when the input
   * has run past the limit, "stopped" when the process was stopped since the last tick (the
   * clock starts again), else null.
   */
  tick(progress: number): "hang" | "stopped" | null {
    const t = this.now();
    const late = t - this.lastTick > this.tickMs + this.lateMs;
    this.lastTick = t;
    if (late) {
      this.progress = progress;
      this.restart();
      return "stopped";
    }
    if (progress !== this.progress) {
      this.progress = progress;
      this.since = t;
      return null;
    }
    return progress > 0 && t - this.since > this.hangMs ? "hang" : null;
  }

  /** The process was stopped and has just been continued (SIGCONT): the input's time starts again. */
  restart(): void {
    this.since = this.lastTick = this.now();
  }
}
