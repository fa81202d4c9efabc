/**
 * qcow2 images: valid images made by wasmvisor (with data, and an overlay on a raw backing
 * file) damaged by the input where it hurts (header fields, header extensions, L1, L2 and
 * refcount entries set to offsets in and beyond the file with any flag bits; any bytes), then
 * opened (format probed or named, read-only or not) and used as a device uses a disk: reads,
 * writes, discards, flushes, zero queries at sector granularity. The clean rejection is a
 * one-line Error naming the image; nothing may throw anything else, hang or grow without bound.
 */
import { InputReader, InputWriter } from "../engine/input";
import { isOneLineError, type Target } from "../engine/target";
import { loadCoreModule } from "../../host/platform/node/core";
import { memoryPlatform } from "../../host/platform/memory";

const CS = 4096;
const SIZE = 4 << 20;
// writeNewQcow2's layout at this cluster size: header, refcount table, one refcount block, L1 table.
const REFCOUNT_TABLE = CS, REFCOUNT_BLOCK = 2 * CS, L1 = 3 * CS;

interface Images { plain: Uint8Array; overlay: Uint8Array; base: Uint8Array; module: WebAssembly.Module }

/** Header fields: offset and width (big-endian). */
const FIELDS: [number, number][] = [
  [4, 4], [8, 8], [16, 4], [20, 4], [24, 8], [32, 4], [36, 4], [40, 8], [48, 8], [56, 4], [60, 4], [64, 8],
  [72, 8], [80, 8], [88, 8], [96, 4], [100, 4], [104, 1], [112, 4], [116, 4],
];

function pattern(n: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed * 7) & 0xff);
}

function setup(): Images {
  const module = loadCoreModule();
  const p = memoryPlatform({ core: module, files: { "/base.raw": pattern(SIZE, 9) } });
  p.createDiskImage("/plain.qcow2", { size: SIZE, clusterSize: CS, what: "fuzz" });
  const d = p.openDisk("/plain.qcow2", { readOnly: false, what: "fuzz" });
  d.write(0, pattern(CS, 1));
  d.write(600 * CS, pattern(2 * CS, 2));
  d.discard(600 * CS, CS);
  d.close();
  p.createDiskImage("/overlay.qcow2", { backing: { path: "base.raw", format: "raw" }, clusterSize: CS, what: "fuzz" });
  const o = p.openDisk("/overlay.qcow2", { readOnly: false, what: "fuzz" });
  o.write(CS + 512, pattern(512, 3));
  o.close();
  return { plain: p.file("/plain.qcow2")!.slice(), overlay: p.file("/overlay.qcow2")!.slice(), base: p.file("/base.raw")!, module };
}

function value(input: InputReader, width: number): bigint {
  switch (input.int(0, 5)) {
    case 0: return BigInt(input.int(0, 16) * CS) | (input.bool() ? 1n << 63n : 0n); // a cluster, maybe COPIED
    case 1: return input.pick([0n, 1n, 2n ** 62n, 2n ** 63n, 2n ** 64n - 1n, 9n, 12n, 21n, 22n, 30n, 64n, 0x100000000n, BigInt(SIZE), 2n ** 53n]);
    case 2: return BigInt(input.u32()) << BigInt(8 * Math.max(0, width - 4));
    case 3: return (1n << 62n) | BigInt(input.u32()) * 512n; // compressed descriptor
    case 4: return BigInt(input.int(0, 64) * CS) | 1n; // zero flag
    default: return input.u64();
  }
}

function putBE(bytes: Uint8Array, at: number, width: number, v: bigint): void {
  for (let i = width - 1; i >= 0; i--) {
    if (at + i < bytes.length) bytes[at + i] = Number(v & 0xffn);
    v >>= 8n;
  }
}

function runQcow2(images: Images, data: Uint8Array): void {
  const input = new InputReader(data);
  const overlay = input.bool();
  const bytes = (overlay ? images.overlay : images.plain).slice();
  for (let edits = input.int(0, 6); edits > 0; edits--) {
    switch (input.int(0, 4)) {
      case 0: { const [at, w] = input.pick(FIELDS); putBE(bytes, at, w, value(input, w)); break; }
      case 1: putBE(bytes, input.pick([L1, REFCOUNT_TABLE, REFCOUNT_BLOCK, 4 * CS, 5 * CS]) + 8 * input.int(0, 15), 8, value(input, 8)); break;
      case 2: putBE(bytes, REFCOUNT_BLOCK + 2 * input.int(0, 63), 2, BigInt(input.u16())); break; // 16-bit refcounts
      case 3: bytes.set(input.blob(16).subarray(0, Math.max(0, bytes.length - 120)), Math.min(input.int(0, 511), bytes.length)); break;
      default: { const at = input.int(0, bytes.length - 1); bytes.set(input.blob(8).subarray(0, bytes.length - at), at); }
    }
  }
  const p = memoryPlatform({ core: images.module, files: { "/d.qcow2": bytes, "/base.raw": images.base } });
  const readOnly = input.bool();
  const disk = p.openDisk("/d.qcow2", { readOnly, what: "--drive", format: input.int(0, 3) === 0 ? "qcow2" : undefined });
  try {
    const sectors = disk.size / 512;
    for (let ops = 0; ops < 24 && !input.done; ops++) {
      const at = input.int(0, Math.max(0, sectors - 1));
      const n = Math.min(input.int(1, 24), sectors - at);
      switch (input.int(0, 5)) {
        case 0: case 1: disk.read(at * 512, new Uint8Array(n * 512)); break;
        case 2: if (!disk.readOnly) disk.write(at * 512, pattern(n * 512, at)); break;
        case 3: if (!disk.readOnly) disk.discard(at * 512, n * 512); break;
        case 4: disk.knownZero?.(at * 512, n * 512); break;
        default: if (!disk.readOnly) disk.flush();
      }
    }
  } finally {
    disk.close();
  }
  const grown = p.file("/d.qcow2")!.length;
  if (grown > SIZE * 2 + (1 << 20)) throw new Error(`the image grew to ${grown} bytes for a ${SIZE}-byte disk`);
}

function seeds(): Uint8Array[] {
  // Each image unchanged, read, written, discarded and flushed, read-write.
  return [false, true].map((overlay) => {
    const w = new InputWriter().bool(overlay).int(0, 6, 0).bool(false).int(0, 3, 1);
    for (const [op, at] of [[0, 0], [2, 8], [0, 4800], [3, 16], [5, 0], [4, 0], [0, 8]] as const) w.u16(at).int(1, 24, 8).int(0, 5, op);
    return w.finish();
  });
}

export const qcow2Target: Target<Images> = {
  name: "qcow2",
  about: "qcow2 images with damaged headers, extensions, L1/L2/refcount entries, opened and read, written, discarded, flushed",
  maxLength: 1024,
  setup,
  run: (data, images) => runQcow2(images, data),
  rejects: isOneLineError,
  seeds,
};
