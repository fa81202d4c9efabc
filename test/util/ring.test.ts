import { describe, expect, it } from "vitest";
import { ByteRing } from "../../host/util/ring";

const bytes = (from: number, n: number) => Uint8Array.from({ length: n }, (_, i) => (from + i) & 0xff);

describe("ByteRing", () => {
  it("carries bytes in order across its end, whatever the sizes of the writes and reads", () => {
    const ring = new ByteRing(16);
    const sent: number[] = [], got: number[] = [];
    let next = 0;
    // Writes and reads of sizes that do not divide the capacity move the ring's positions past
    // its end at every offset, and past 2^32 never (the counters wrap as int32: tested below).
    for (let round = 0; round < 200; round++) {
      const w = bytes(next, 1 + (round * 7) % 15);
      const n = ring.write(w);
      sent.push(...w.subarray(0, n));
      next += n;
      got.push(...ring.read(1 + (round * 5) % 13));
    }
    got.push(...ring.read());
    expect(got).toEqual(sent);
    expect(sent.length).toBeGreaterThan(1000);
  });

  it("takes only what fits, and nothing more until the reader frees room", () => {
    const ring = new ByteRing(8);
    expect(ring.write(bytes(0, 5))).toBe(5);
    expect(ring.write(bytes(5, 5))).toBe(3);
    expect(ring.write(bytes(8, 1))).toBe(0);
    expect(ring.available()).toBe(8);
    expect([...ring.read(3)]).toEqual([0, 1, 2]);
    expect(ring.write(bytes(8, 4))).toBe(3); // wraps: 3 bytes at the ring's start
    expect([...ring.read()]).toEqual([3, 4, 5, 6, 7, 8, 9, 10]);
    expect(ring.readByte()).toBe(-1);
  });

  it("keeps working when its int32 positions wrap", () => {
    const ring = new ByteRing(8);
    const ctl = new Int32Array(ring.buffer, 0, 2);
    ctl[0] = ctl[1] = 0x7ffffffd; // head and tail just below 2^31
    expect(ring.write(bytes(1, 6))).toBe(6);
    expect(ring.available()).toBe(6);
    expect([...ring.read(4)]).toEqual([1, 2, 3, 4]);
    expect(ring.readByte()).toBe(5);
    expect(ring.readByte()).toBe(6);
    expect(ring.readByte()).toBe(-1);
  });
});
