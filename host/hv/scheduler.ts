/**
 * The CPU scheduler of one physical CPU (one worker thread): it shares the pCPU among the VMs
 * homed there, by weight, with caps, in time slices.
 *
 * - Proportional share: each VM has a virtual time that advances by the CPU time it gets divided
 *   by its weight; the runnable VM with the least virtual time runs next. Over any interval in
 *   which VMs stay busy, their CPU times are in the ratio of their weights.
 * - Work-conserving: a VM that is idle (every vCPU halted) is not in the race; the others share
 *   its time. When it wakes its virtual time is brought up to just behind the others, so sleeping
 *   earns no credit to monopolize the pCPU with afterwards.
 * - Caps: a VM with a cap (a fraction of one pCPU) gets at most cap × period in each period
 *   (default 100 ms); after that it is throttled until the next period, even if the pCPU idles.
 * - Boost: a VM woken by an interrupt (a key press, a packet, a timer) runs before the others,
 *   if it has not used more than its share, so interactive guests answer quickly. It is charged
 *   for that time like any other.
 * - Accounting per VM: CPU time, steal time (runnable but waiting for the pCPU: what a guest
 *   would report as stolen), and wake-up latency (runnable until running).
 *
 * Pure logic with the clock passed in (milliseconds): the worker feeds it real time, tests feed
 * it simulated time.
 */

export interface SchedOptions {
  /** Longest run before the scheduler decides again (ms). */
  sliceMs?: number;
  /** The period caps are enforced over (ms). */
  capPeriodMs?: number;
}

export interface EntityParams {
  /** Relative CPU weight (> 0). */
  weight: number;
  /** At most this fraction of one pCPU (0 < cap ≤ 1), or undefined for no cap. */
  cap?: number;
}

export interface EntityStats {
  /** CPU time given (ms). */
  cpuMs: number;
  /** Time runnable but not running (ms). */
  stealMs: number;
  /** Wake-up latencies (ms), most recent last, at most LATENCY_SAMPLES of them. */
  wakeLatencies: number[];
  /** Times it was picked to run. */
  runs: number;
}

export type Decision =
  | { kind: "run"; id: string; sliceMs: number }
  /** Nothing may run; `untilMs` is when a throttled VM gets its budget back (or null: only a wake-up helps). */
  | { kind: "idle"; untilMs: number | null };

const LATENCY_SAMPLES = 1024;
const DEFAULT_SLICE_MS = 20;
const DEFAULT_CAP_PERIOD_MS = 100;

interface Entity extends EntityParams {
  id: string;
  vtime: number;
  runnable: boolean;
  /** When it last became runnable and waiting (ms), for steal accounting. */
  waitingSince: number | null;
  /** When an interrupt woke it, until it runs (ms). */
  wokenAt: number | null;
  boosted: boolean;
  /** Cap accounting: the period it was last charged in, and how much it used there. */
  capPeriod: number;
  capUsedMs: number;
  stats: EntityStats;
}

export class Scheduler {
  readonly sliceMs: number;
  readonly capPeriodMs: number;
  private readonly entities = new Map<string, Entity>();
  /** Boosted VMs in the order they woke. */
  private boostQueue: string[] = [];

  constructor(opts: SchedOptions = {}) {
    this.sliceMs = opts.sliceMs ?? DEFAULT_SLICE_MS;
    this.capPeriodMs = opts.capPeriodMs ?? DEFAULT_CAP_PERIOD_MS;
    if (!(this.sliceMs > 0)) throw new RangeError(`time slice must be > 0 ms, not ${opts.sliceMs}`);
    if (!(this.capPeriodMs > 0)) throw new RangeError(`cap period must be > 0 ms, not ${opts.capPeriodMs}`);
  }

  /** Add a VM (not yet runnable). */
  add(id: string, params: EntityParams): void {
    if (this.entities.has(id)) throw new Error(`scheduler: ${id} is already scheduled here`);
    checkParams(id, params);
    this.entities.set(id, {
      id, ...params, vtime: this.minVtime(), runnable: false, waitingSince: null, wokenAt: null,
      boosted: false, capPeriod: -1, capUsedMs: 0, stats: { cpuMs: 0, stealMs: 0, wakeLatencies: [], runs: 0 },
    });
  }

  remove(id: string): void {
    this.entities.delete(id);
    this.boostQueue = this.boostQueue.filter((b) => b !== id);
  }


  /**
   * The VM became runnable (some vCPU can run) or not (all halted or paused). `woken` says an
   * interrupt did it, which earns a boost.
   */
  setRunnable(id: string, runnable: boolean, now: number, woken = false): void {
    const e = this.get(id);
    if (e.runnable === runnable) return;
    e.runnable = runnable;
    if (runnable) {
      // No credit for sleeping: at most one slice behind the VMs that kept running.
      const floor = this.minVtime(e) - this.sliceMs / e.weight;
      if (e.vtime < floor) e.vtime = floor;
      e.waitingSince = now;
      e.wokenAt = now;
      if (woken) {
        // Boost only a VM within its share, so waking often cannot buy more than the share.
        if (e.vtime <= this.minVtime(e) + this.sliceMs / e.weight) {
          e.boosted = true;
          this.boostQueue.push(id);
        }
      }
    } else {
      if (e.waitingSince !== null) e.stats.stealMs += Math.max(0, now - e.waitingSince);
      e.waitingSince = null;
      e.wokenAt = null;
      this.unboost(e);
    }
  }

  /**
   * Whether the VM running now should give way before its slice ends: an interrupt woke a
   * boosted VM. The worker asks between short steps of guest execution.
   */
  preempts(runningId: string): boolean {
    return this.boostQueue.some((id) => id !== runningId);
  }

  isRunnable(id: string): boolean {
    return this.get(id).runnable;
  }

  /** Who runs next, and for how long at most. */
  pick(now: number): Decision {
    const period = Math.floor(now / this.capPeriodMs);
    let best: Entity | null = null;
    let throttled = false;
    for (const id of this.boostQueue) {
      const e = this.entities.get(id)!;
      if (this.capLeft(e, period) > 0) { best = e; break; }
      throttled = true;
    }
    if (!best) {
      for (const e of this.entities.values()) {
        if (!e.runnable) continue;
        if (this.capLeft(e, period) <= 0) { throttled = true; continue; }
        if (!best || e.vtime < best.vtime) best = e;
      }
    }
    if (!best) return { kind: "idle", untilMs: throttled ? (period + 1) * this.capPeriodMs : null };
    this.unboost(best);
    if (best.wokenAt !== null) {
      const lat = best.stats.wakeLatencies;
      lat.push(Math.max(0, now - best.wokenAt));
      if (lat.length > LATENCY_SAMPLES) lat.shift();
      best.wokenAt = null;
    }
    if (best.waitingSince !== null) best.stats.stealMs += Math.max(0, now - best.waitingSince);
    best.waitingSince = null;
    best.stats.runs++;
    // The slice ends early when the cap would run out, never later than the period end then.
    const slice = Math.min(this.sliceMs, this.capLeft(best, period));
    return { kind: "run", id: best.id, sliceMs: slice };
  }

  /**
   * `id` ran for `ranMs` (ending at `now`); it is still runnable unless setRunnable says
   * otherwise afterwards.
   */
  charge(id: string, ranMs: number, now: number): void {
    const e = this.get(id);
    const ran = Math.max(0, ranMs);
    e.vtime += ran / e.weight;
    e.stats.cpuMs += ran;
    const period = Math.floor(now / this.capPeriodMs);
    if (e.capPeriod !== period) {
      // The run may have started in the previous period: charge only what fell in this one.
      const start = period * this.capPeriodMs;
      e.capUsedMs = Math.min(ran, Math.max(0, now - start));
      e.capPeriod = period;
    } else {
      e.capUsedMs += ran;
    }
    if (e.runnable) e.waitingSince = now;
  }

  /** CPU time given so far (ms). */
  cpuMs(id: string): number {
    return this.get(id).stats.cpuMs;
  }

  /** Steal time so far (ms), including a wait under way. */
  stealMs(id: string, now: number): number {
    const e = this.get(id);
    return e.stats.stealMs + (e.waitingSince !== null ? Math.max(0, now - e.waitingSince) : 0);
  }

  stats(id: string, now: number): EntityStats {
    const e = this.get(id);
    return { ...e.stats, stealMs: this.stealMs(id, now), wakeLatencies: [...e.stats.wakeLatencies] };
  }

  private get(id: string): Entity {
    const e = this.entities.get(id);
    if (!e) throw new Error(`scheduler: no VM ${id} here`);
    return e;
  }

  private unboost(e: Entity): void {
    if (!e.boosted) return;
    e.boosted = false;
    this.boostQueue = this.boostQueue.filter((b) => b !== e.id);
  }

  // CPU time the cap still allows in `period` (Infinity without a cap).
  private capLeft(e: Entity, period: number): number {
    if (e.cap === undefined) return Infinity;
    const used = e.capPeriod === period ? e.capUsedMs : 0;
    return e.cap * this.capPeriodMs - used;
  }

  // The least virtual time among runnable VMs (other than `except`), or of all if none runs.
  private minVtime(except?: Entity): number {
    let min = Infinity;
    let any = Infinity;
    for (const e of this.entities.values()) {
      if (e === except) continue;
      if (e.runnable && e.vtime < min) min = e.vtime;
      if (e.vtime < any) any = e.vtime;
    }
    return Number.isFinite(min) ? min : Number.isFinite(any) ? any : 0;
  }
}

function checkParams(id: string, p: EntityParams): void {
  if (!(Number.isFinite(p.weight) && p.weight > 0)) throw new RangeError(`${id}: CPU weight must be a positive number, not ${p.weight}`);
  if (p.cap !== undefined && !(p.cap > 0 && p.cap <= 1)) throw new RangeError(`${id}: CPU cap must be in (0, 1] of one pCPU, not ${p.cap}`);
}
