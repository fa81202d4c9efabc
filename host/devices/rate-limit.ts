/**
 * Token buckets for a VM's disk and network bandwidth limits. A device asks before each
 * request; when the bucket is short it leaves the request where it is (in the virtqueue, in
 * the receive FIFO) and tells the machine when to try again, so the guest simply sees a slower
 * device and the host thread never blocks.
 */
import { StateReader, type DeviceState } from "./state";

/** A clock in milliseconds (performance.now() unless a test simulates time). */
export type MsClock = () => number;

const hostClock: MsClock = () => performance.now();

const BUCKET_KIND = "token-bucket";
const BUCKET_VERSION = 1;

export class TokenBucket {
  private tokens: number;
  private last: number;

  /**
   * `rate` units per second; `burst` units may go at once (default: 50 ms worth). A request
   * larger than the burst passes once the bucket is full and leaves it in debt.
   */
  constructor(readonly rate: number, readonly burst = Math.max(1, rate / 20), private readonly now: MsClock = hostClock) {
    if (!(rate > 0) || !Number.isFinite(rate)) throw new RangeError(`token bucket rate must be a positive number, not ${rate}`);
    if (!(burst > 0)) throw new RangeError(`token bucket burst must be positive, not ${burst}`);
    this.tokens = burst;
    this.last = now();
  }

  private refill(): void {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) * this.rate) / 1000);
    this.last = t;
  }

  /** ms until a request of `n` units may go (0: now). */
  waitMs(n: number): number {
    this.refill();
    const need = Math.min(n, this.burst);
    return this.tokens >= need ? 0 : ((need - this.tokens) * 1000) / this.rate;
  }

  /** Take `n` units; call only when waitMs(n) is 0. */
  take(n: number): void {
    this.refill();
    this.tokens -= n;
  }

  /** The tokens in the bucket now (a debt is negative): the clock's time is not saved, only what it meant. */
  save(): DeviceState {
    this.refill();
    return { kind: BUCKET_KIND, version: BUCKET_VERSION, rate: this.rate, burst: this.burst, tokens: this.tokens };
  }

  /** `who` names the bucket in errors; the state must be for the same rate and burst. */
  restore(state: unknown, who: string): void {
    const s = StateReader.open(state, who, BUCKET_KIND, BUCKET_VERSION);
    const rate = s.number("rate", 0, Number.MAX_VALUE);
    const burst = s.number("burst", 0, Number.MAX_VALUE);
    if (rate !== this.rate || burst !== this.burst) {
      throw new Error(`${who}: state is for ${rate}/s in bursts of ${burst}, this bucket has ${this.rate}/s in bursts of ${this.burst}`);
    }
    this.tokens = s.number("tokens", -Number.MAX_SAFE_INTEGER, burst);
    this.last = this.now();
  }
}

/** A device's limits: bytes per second and/or requests per second. */
export interface RateLimit {
  bytes?: TokenBucket;
  ops?: TokenBucket;
}

/** ms until a request of `bytes` may go under `limit` (0: now; no limit: always 0). */
export function limitWaitMs(limit: RateLimit | undefined, bytes: number): number {
  if (!limit) return 0;
  return Math.max(limit.bytes?.waitMs(bytes) ?? 0, limit.ops?.waitMs(1) ?? 0);
}

/** Charge a request that limitWaitMs let through. */
export function limitTake(limit: RateLimit | undefined, bytes: number): void {
  limit?.bytes?.take(bytes);
  limit?.ops?.take(1);
}

/**
 * When work a limit held back may go on: the machine polls ms() and calls the device's retry()
 * at 0. Saved as the ms still to wait (null: nothing waits), so it means the same on the clock
 * of another thread.
 */
export class RetryTimer {
  private at = Infinity;

  constructor(private readonly now: MsClock = hostClock) {}

  /** Held back for `waitMs`. */
  set(waitMs: number): void {
    this.at = this.now() + waitMs;
  }

  /** Nothing waits any more. */
  clear(): void {
    this.at = Infinity;
  }

  /** ms until the held work is due (0: now; Infinity: nothing waits). */
  ms(): number {
    return this.at === Infinity ? Infinity : Math.max(0, this.at - this.now());
  }

  save(): number | null {
    return this.at === Infinity ? null : this.ms();
  }

  /** Check a saved timer: null or a wait in ms (throws naming `who` and `field`). */
  static read(s: StateReader, field: string): number | null {
    return s.nullable(field, (f) => s.number(f, 0, Number.MAX_SAFE_INTEGER));
  }

  restore(waitMs: number | null): void {
    if (waitMs === null) this.clear();
    else this.set(waitMs);
  }
}
