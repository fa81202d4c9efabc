// CRC-32 (the IEEE polynomial, reflected, as zlib and PNG use it), four bytes per step.
// The tables are built at the first use, not when the module loads: every command and thread
// loads it, few compute a CRC (building them took 3 ms of a pCPU thread's start).
let tables: Uint32Array | null = null;
function makeTables(): Uint32Array {
  const t = new Uint32Array(4 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    for (let k = 1; k < 4; k++) t[k * 256 + n] = (t[(k - 1) * 256 + n]! >>> 8) ^ t[t[(k - 1) * 256 + n]! & 0xff]!;
  }
  return t;
}

/** A CRC-32 function: of `bytes`, continuing from `crc` (the CRC of what came before, 0 to start). */
export type Crc32 = (bytes: Uint8Array, crc: number) => number;

let faster: Crc32 | null = null;

/**
 * Use the platform's own CRC-32 of the same definition (Node's zlib.crc32: 4.4 GB/s against this
 * file's 0.53 GB/s on the bench machine; a migration checks and sums each section on both sides),
 * or this file's again (null).
 */
export function useFasterCrc32(f: Crc32 | null): void {
  faster = f;
}

/** The CRC-32 of `bytes`, continuing from `crc` (the CRC of what came before, 0 to start). */
export function crc32(bytes: Uint8Array, crc = 0): number {
  return faster ? faster(bytes, crc) : portableCrc32(bytes, crc);
}

/** This file's CRC-32, in JavaScript: where the platform has none faster, and to check one against. */
export function portableCrc32(bytes: Uint8Array, crc = 0): number {
  const t = (tables ??= makeTables());
  let c = ~crc >>> 0;
  let i = 0;
  const n = bytes.length;
  for (; i + 4 <= n; i += 4) {
    c ^= bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24);
    c = t[768 + (c & 0xff)]! ^ t[512 + ((c >>> 8) & 0xff)]! ^ t[256 + ((c >>> 16) & 0xff)]! ^ t[c >>> 24]!;
  }
  for (; i < n; i++) c = t[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}
