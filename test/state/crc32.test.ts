// CRC-32 as the state format sums its sections: the portable one against known values, and the
// Node platform's (zlib's) against the portable one, on what sections hold (pieces of guest
// memory, views into shared memory, sums continued over several pieces).
import { createRequire } from "node:module";
import { describe, test, expect, vi } from "vitest";
import { crc32, portableCrc32 } from "../../host/state/crc32";
import "../../host/platform/node"; // installs zlib's CRC-32

describe("CRC-32", () => {
  test("with the Node platform loaded, zlib's sums (the first sum looks it up)", () => {
    const zlib = createRequire(import.meta.url)("node:zlib") as typeof import("node:zlib");
    const spy = vi.spyOn(zlib, "crc32");
    try {
      const bytes = Uint8Array.from({ length: 1000 }, (_, i) => i * 7);
      expect(crc32(bytes, 5)).toBe(portableCrc32(bytes, 5));
      expect(spy).toHaveBeenCalledWith(bytes, 5);
    } finally {
      spy.mockRestore();
    }
  });

  test("the portable one: the check value of the IEEE CRC-32, an empty input, a sum continued", () => {
    const ascii = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
    expect(portableCrc32(ascii("123456789"))).toBe(0xcbf43926);
    expect(portableCrc32(new Uint8Array(0))).toBe(0);
    expect(portableCrc32(ascii("56789"), portableCrc32(ascii("1234")))).toBe(0xcbf43926);
    expect(portableCrc32(ascii("The quick brown fox jumps over the lazy dog"))).toBe(0x414fa339);
  });

  test("the Node platform's agrees with it: random lengths and offsets, shared memory, continued sums", () => {
    const shared = new Uint8Array(new SharedArrayBuffer(1 << 16));
    let seed = 12345;
    const rand = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
    for (let i = 0; i < shared.length; i++) shared[i] = rand() & 0xff;
    for (let k = 0; k < 200; k++) {
      const start = rand() % shared.length, end = start + (rand() % (shared.length - start));
      const piece = shared.subarray(start, end), prior = rand();
      expect(crc32(piece, prior)).toBe(portableCrc32(piece, prior));
      const cut = start + Math.floor((end - start) / 2);
      expect(crc32(shared.subarray(cut, end), crc32(shared.subarray(start, cut)))).toBe(portableCrc32(piece));
    }
  });
});
