// Token buckets, and the virtio devices holding requests back under a limit and finishing them
// once the bucket refills (time is simulated: buckets take a clock).
import { describe, expect, it } from "vitest";
import { TokenBucket, limitWaitMs, limitTake } from "../../host/devices/rate-limit";

describe("TokenBucket", () => {
  it("lets a burst through, then paces requests at the rate", () => {
    const clock = { t: 0 };
    const b = new TokenBucket(1000, 100, () => clock.t); // 1000 units/s, bursts of 100
    expect(b.waitMs(100)).toBe(0);
    b.take(100);
    expect(b.waitMs(50)).toBeCloseTo(50, 6); // 50 units take 50 ms at 1000/s
    clock.t = 50;
    expect(b.waitMs(50)).toBe(0);
    b.take(50);
    clock.t = 10_000; // long idle: refills to the burst, no more
    expect(b.waitMs(100)).toBe(0);
    b.take(100);
    expect(b.waitMs(1)).toBeCloseTo(1, 6);
  });

  it("passes a request larger than the burst when full, leaving a debt to pay off", () => {
    const clock = { t: 0 };
    const b = new TokenBucket(1000, 100, () => clock.t);
    expect(b.waitMs(500)).toBe(0); // capped at the burst: would never pass otherwise
    b.take(500); // tokens -400
    expect(b.waitMs(100)).toBeCloseTo(500, 6); // -400 → 100 takes 500 ms
    clock.t = 500;
    expect(b.waitMs(100)).toBe(0);
  });

  it("over a long run, throughput is the rate", () => {
    const clock = { t: 0 };
    const b = new TokenBucket(2000, 100, () => clock.t);
    let moved = 0;
    while (clock.t < 10_000) {
      const w = b.waitMs(64);
      if (w > 0) { clock.t += w; continue; }
      b.take(64);
      moved += 64;
    }
    expect(moved / 10).toBeGreaterThan(1990);
    expect(moved / 10).toBeLessThan(2020);
  });

  it("limits on bytes and on operations combine: the slower one decides", () => {
    const clock = { t: 0 };
    const limit = { bytes: new TokenBucket(1e6, 1e5, () => clock.t), ops: new TokenBucket(10, 1, () => clock.t) };
    expect(limitWaitMs(limit, 4096)).toBe(0);
    limitTake(limit, 4096);
    expect(limitWaitMs(limit, 4096)).toBeCloseTo(100, 6); // 10 ops/s
    expect(limitWaitMs(undefined, 1e9)).toBe(0);
  });

  it("refuses rates that are not positive numbers", () => {
    expect(() => new TokenBucket(0)).toThrow(/rate must be a positive number/);
    expect(() => new TokenBucket(NaN)).toThrow(/rate/);
    expect(() => new TokenBucket(10, -1)).toThrow(/burst/);
  });
});
