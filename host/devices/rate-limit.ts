/**
 * Token buckets for a VM's disk and network bandwidth limits. A device asks before each
 * request; when the bucket is short it leaves the request where it is (in the virtqueue, in
 * the receive FIFO) and tells the machine when to try again, so the guest simply sees a slower
 * device and the host thread never blocks.
 */

export class TokenBucket {
  private tokens: number;
  private last: number;

  /**
   * `rate` units per second; `burst` units may go at once (default: 50 ms worth). A request
   * larger than the burst passes once the bucket is full and leaves it in debt.
   */
  constructor(readonly rate: number, readonly burst = Math.max(1, rate / 20), private readonly now: () => number = () => performance.now()) {
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
