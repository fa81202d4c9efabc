// qcow2 images are untrusted input: every header field and table entry that could send the
// reader past the file, over metadata, round a loop or into a huge allocation is refused with
// one line naming the image and what is wrong. Images are made valid (by wasmvisor) and then
// damaged byte by byte; a fuzzer damages them at random.
import { describe, test, expect } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { memoryPlatform, type MemoryPlatform } from "../../host/platform/memory";
import { compileCore } from "../../host/core/core";
import { packageRoot } from "../../host/platform/node/core";
import { prng } from "../prng";
import { randomBytes } from "./helpers";

const core = compileCore(new Uint8Array(readFileSync(join(packageRoot(), "build/core.wasm"))));
const MiB = 1 << 20;
const CS = 4096;
// writeNewQcow2's layout for these sizes: header, refcount table, one refcount block, L1 table.
const RT = CS;
const RB = 2 * CS;
const L1 = 3 * CS;

/** A valid image with data in guest clusters 0 and 600 (and, for 4 MiB, in both L2 tables' ranges). */
function valid(size = 4 * MiB): Uint8Array {
  const p = memoryPlatform({ core });
  p.createDiskImage("/v.qcow2", { size, clusterSize: CS, what: "test" });
  const d = p.openDisk("/v.qcow2", { readOnly: false, what: "test" });
  d.write(0, randomBytes(CS, 1));
  d.write(600 * CS, randomBytes(CS, 2));
  d.close();
  return p.file("/v.qcow2")!.slice();
}

function damaged(change: (v: DataView, bytes: Uint8Array) => void, size?: number): Uint8Array {
  const bytes = valid(size);
  change(new DataView(bytes.buffer), bytes);
  return bytes;
}

function platformWith(files: Record<string, Uint8Array>): MemoryPlatform {
  return memoryPlatform({ core, files });
}

/** Open `bytes` as /img/bad.qcow2 (format probed) and read it all; returns nothing or throws. */
function use(bytes: Uint8Array, readOnly = true, extra: Record<string, Uint8Array> = {}): void {
  const p = platformWith({ "/img/bad.qcow2": bytes, ...extra });
  const d = p.openDisk("/img/bad.qcow2", { readOnly, what: "--drive" });
  try {
    const buf = new Uint8Array(64 * 1024);
    for (let at = 0; at < d.size; at += buf.length) d.read(at, buf.subarray(0, Math.min(buf.length, d.size - at)));
    if (!readOnly) {
      d.write(0, new Uint8Array(512).fill(1));
      d.write(d.size - 512, new Uint8Array(512).fill(2));
      d.flush();
    }
  } finally {
    d.close();
  }
}

const l2Of = (v: DataView, index: number) => Number(v.getBigUint64(L1 + index * 8) & 0x00fffffffffffe00n);

describe("the header", () => {
  test.each<[string, (v: DataView, b: Uint8Array) => void, RegExp]>([
    ["cluster_bits 8", (v) => v.setUint32(20, 8), /cluster_bits 8 is out of range: clusters must be 512 B to 2 MiB/],
    ["cluster_bits 30", (v) => v.setUint32(20, 30), /cluster_bits 30 is out of range/],
    ["version 4", (v) => v.setUint32(4, 4), /qcow2 version 4 is not supported \(2 and 3 are\)/],
    ["an L1 table past the end of the file", (v) => v.setBigUint64(40, 0x100000n), /the L1 table at 0x100000 \(16 bytes\) lies past the end of the file/],
    ["an L1 table not aligned to a cluster", (v) => v.setBigUint64(40, BigInt(L1 + 8)), /the L1 table at 0x3008 is not aligned to a cluster/],
    ["a huge L1 table", (v) => v.setUint32(36, 0x10000000), /L1 table of 268435456 entries is larger than 32 MiB/],
    ["an L1 table too small for the size", (v) => v.setBigUint64(24, 1n << 40n), /L1 table of 2 entries is too small for the virtual size of 1099511627776 bytes/],
    ["a refcount table overlapping the header", (v) => v.setBigUint64(48, 0n), /the refcount table \(at 0x0\) overlaps the header/],
    ["an L1 table overlapping the refcount table", (v) => v.setBigUint64(40, BigInt(RT)), /the refcount table \(at 0x1000\) overlaps the L1 table/],
    ["a huge refcount table", (v) => v.setUint32(56, 0x1000000), /refcount table of 16777216 clusters is larger than 8 MiB/],
    ["no refcount table", (v) => v.setUint32(56, 0), /has no refcount table/],
    ["an unknown incompatible feature", (v) => v.setBigUint64(72, 1n << 5n), /uses incompatible feature bit 5 that wasmvisor does not know; it cannot be opened safely/],
    ["an external data file", (v) => v.setBigUint64(72, 1n << 2n), /keeps its data in an external data file, which wasmvisor does not support/],
    ["extended L2 entries", (v) => v.setBigUint64(72, 1n << 4n), /uses extended L2 entries \(subclusters\), which wasmvisor does not support/],
    ["zstd compression", (v, b) => { v.setBigUint64(72, 1n << 3n); b[104] = 1; }, /compresses with zstd; wasmvisor reads only zlib \(deflate\) compressed clusters/],
    ["LUKS encryption", (v) => v.setUint32(32, 2), /is encrypted \(LUKS\); wasmvisor does not open encrypted images/],
    ["refcount_order 7", (v) => v.setUint32(96, 7), /refcount_order 7 is out of range/],
    ["a header length that is no multiple of 8", (v) => v.setUint32(100, 105), /header_length 105 is invalid/],
    ["a backing file name that is too long", (v) => { v.setBigUint64(8, 512n); v.setUint32(16, 2000); }, /backing file name is 2000 bytes long \(at most 1023\)/],
    ["a backing file name with an escape sequence in it", (v, b) => { v.setBigUint64(8, 512n); v.setUint32(16, 6); b.set([0x61, 0x1b, 0x5b, 0x32, 0x4a, 0x0a], 512); }, /backing file name contains the control character \\x1b/],
    ["a backing file name past the header cluster", (v) => { v.setBigUint64(8, BigInt(CS - 4)); v.setUint32(16, 100); }, /backing file name at 4092 \(100 bytes\) lies outside the header cluster/],
    ["a header extension running past the header area", (v) => { v.setUint32(112, 0x12345678); v.setUint32(116, 0x7fffffff); }, /header extension 0x12345678 of 2147483647 bytes runs past the header area/],
    ["a virtual size of 2^63", (v) => v.setBigUint64(24, 1n << 63n), /virtual size 0x8000000000000000 is out of range/],
  ])("%s", (_what, change, error) => {
    const bytes = damaged(change);
    expect(() => use(bytes)).toThrow(new RegExp(`^--drive /img/bad\\.qcow2: ${error.source}`));
  });

  test("a truncated file", () => {
    expect(() => use(valid().subarray(0, 50))).toThrow(/^--drive \/img\/bad\.qcow2: truncated: 50 bytes, shorter than a qcow2 header$/);
    expect(() => use(valid().subarray(0, 3 * CS))).toThrow(/the L1 table at 0x3000 \(16 bytes\) lies past the end of the file \(12288 bytes\)/);
  });

  test("an unknown incompatible feature is named from the image's feature name table", () => {
    const bytes = damaged((v, b) => {
      v.setBigUint64(72, 1n << 9n);
      // A feature name table extension right after the header: type 0 (incompatible), bit 9.
      v.setUint32(112, 0x6803f857);
      v.setUint32(116, 48);
      b[120] = 0;
      b[121] = 9;
      b.set(new TextEncoder().encode("time travel"), 122);
    });
    expect(() => use(bytes)).toThrow(/incompatible feature bit 9 \(time travel\) that wasmvisor does not know/);
  });

  test("dirty and corrupt images are read, never written", () => {
    for (const [bit, why] of [[0n, /was not closed cleanly/], [1n, /is marked corrupt; repair it with qemu-img check -r all/]] as const) {
      const bytes = damaged((v) => v.setBigUint64(72, 1n << bit));
      const before = bytes.slice();
      expect(() => use(bytes, false)).toThrow(why);
      use(bytes, true);
      expect(bytes).toEqual(before);
    }
  });
});

describe("the tables", () => {
  test.each<[string, (v: DataView, b: Uint8Array) => void, RegExp]>([
    ["an L1 entry pointing at the refcount table", (v) => v.setBigUint64(L1, BigInt(RT) | (1n << 63n)), /the L2 table of L1 entry 0 at 0x1000 overlaps the refcount table/],
    ["two L1 entries sharing an L2 table", (v) => v.setBigUint64(L1 + 8, v.getBigUint64(L1)), /the L2 table of L1 entry 1 at 0x[0-9a-f]+ overlaps an L2 table/],
    ["an L1 entry past the end of the file", (v) => v.setBigUint64(L1, (1n << 40n) | (1n << 63n)), /the L2 table of L1 entry 0 at 0x10000000000 \(4096 bytes\) lies past the end of the file/],
    ["an L1 entry with reserved bits", (v) => v.setBigUint64(L1, v.getBigUint64(L1) | 2n), /L1 entry 0 has reserved bits set/],
    ["a refcount table entry pointing at the L1 table", (v) => v.setBigUint64(RT, BigInt(L1)), /refcount block 0 at 0x3000 overlaps the L1 table/],
  ])("%s", (_what, change, error) => {
    expect(() => use(damaged(change))).toThrow(new RegExp(`^--drive /img/bad\\.qcow2: ${error.source}`));
  });

  test.each<[string, bigint, RegExp]>([
    ["past the end of the file", (1n << 40n) | (1n << 63n), /the L2 entry for guest offset 0x0 points at 0x10000000000, past the end of the file/],
    ["not aligned to a cluster", BigInt(5 * CS + 512) | (1n << 63n), /the L2 entry for guest offset 0x0 points at 0x5200, not aligned to a cluster/],
    ["into the L1 table", BigInt(L1) | (1n << 63n), /the L2 entry for guest offset 0x0 points into the L1 table \(at 0x3000\)/],
    ["into the header", BigInt(0) | (1n << 63n), /the L2 entry for guest offset 0x0 points at offset 0 \(the header\)/],
    ["with reserved bits", BigInt(5 * CS) | (1n << 63n) | 4n, /the L2 entry for guest offset 0x0 has reserved bits set/],
    ["compressed, past the end of the file", (1n << 62n) | 0x7000000n, /the compressed cluster for guest offset 0x0 starts at 0x7000000, past the end of the file/],
  ])("an L2 entry %s fails the read that meets it", (_what, entry, error) => {
    const bytes = damaged((v) => v.setBigUint64(l2Of(v, 0), entry));
    const p = platformWith({ "/img/bad.qcow2": bytes });
    const d = p.openDisk("/img/bad.qcow2", { readOnly: true, what: "--drive" });
    const buf = new Uint8Array(512);
    d.read(CS, buf); // other clusters read fine
    expect(() => d.read(0, buf)).toThrow(new RegExp(`^--drive /img/bad\\.qcow2: ${error.source}`));
    d.close();
  });

  test("a compressed cluster that does not inflate", () => {
    // Compressed at the data cluster of guest cluster 600, whose bytes are random: not deflate.
    const bytes = damaged((v) => {
      const l2 = l2Of(v, 1);
      const data = v.getBigUint64(l2 + (600 - 512) * 8) & 0x00fffffffffffe00n;
      v.setBigUint64(l2Of(v, 0), (1n << 62n) | (7n << 58n) | data);
    });
    expect(() => use(bytes)).toThrow(/^--drive \/img\/bad\.qcow2: the compressed cluster for guest offset 0x0 (is corrupt|inflates to)/);
  });

  test("metadata without a refcount is read but not written", () => {
    const bytes = damaged((_v, b) => b.fill(0, RB, RB + CS));
    const before = bytes.slice();
    expect(() => use(bytes, false)).toThrow(/^--drive \/img\/bad\.qcow2: the header at 0x0 has refcount 0; the image is inconsistent: repair it with qemu-img check -r all$/);
    use(bytes, true);
    expect(bytes).toEqual(before);
  });

  test("a data cluster whose refcount is 0 is not written", () => {
    const bytes = damaged((v) => {
      const host = Number(v.getBigUint64(l2Of(v, 0)) & 0x00fffffffffffe00n);
      v.setUint16(RB + (host / CS) * 2, 0);
    });
    expect(() => use(bytes, false)).toThrow(/the data cluster of guest offset 0x0 \(at 0x[0-9a-f]+\) has refcount 0; repair the image with qemu-img check -r all/);
  });

  test("allocation stops at the bound of virtual size and metadata, even when every refcount says used", () => {
    // 64 KiB of 512-byte clusters; the one refcount block counts all its 256 clusters as used.
    const p = memoryPlatform({ core });
    p.createDiskImage("/full.qcow2", { size: 65536, clusterSize: 512, what: "test" });
    const bytes = p.file("/full.qcow2")!.slice();
    const v = new DataView(bytes.buffer);
    const block = Number(v.getBigUint64(Number(v.getBigUint64(48))));
    for (let i = 0; i < 256; i++) v.setUint16(block + i * 2, 0xffff);
    expect(() => use(bytes, false)).toThrow(/^--drive \/img\/bad\.qcow2: cannot allocate a cluster: the image would grow past \d+ bytes \(its virtual size and metadata\)/);
  });
});

describe("backing files", () => {
  function overlay(p: MemoryPlatform, path: string, backing: string, format: "raw" | "qcow2" = "qcow2"): void {
    p.createDiskImage(path, { size: MiB, backing: { path: backing, format }, what: "test" });
  }

  test("a chain that loops, through other images or to itself", () => {
    const p = platformWith({});
    overlay(p, "/img/a.qcow2", "b.qcow2");
    overlay(p, "/img/b.qcow2", "a.qcow2");
    expect(() => p.openDisk("/img/a.qcow2", { readOnly: true, what: "--drive" })).toThrow(/^--drive \/img\/a\.qcow2: its chain of backing files loops: \/img\/a\.qcow2 is already in it$/);
    overlay(p, "/img/self.qcow2", "/img/self.qcow2");
    expect(() => p.openDisk("/img/self.qcow2", { readOnly: false, what: "--drive" })).toThrow(/loops: \/img\/self\.qcow2 is already in it/);
  });

  test("a chain deeper than 32 images", () => {
    const p = platformWith({ "/img/l0.raw": new Uint8Array(MiB) });
    for (let i = 1; i <= 33; i++) overlay(p, `/img/l${i}.qcow2`, i === 1 ? "l0.raw" : `l${i - 1}.qcow2`, i === 1 ? "raw" : "qcow2");
    p.openDisk("/img/l32.qcow2", { readOnly: false, what: "--drive" }).close();
    expect(() => p.openDisk("/img/l33.qcow2", { readOnly: false, what: "--drive" })).toThrow(/^--drive \/img\/l33\.qcow2: its chain of backing files is deeper than 32 images \(each live snapshot adds one\): flatten it into one image with 'qemu-img convert -O qcow2 \/img\/l33\.qcow2 <new file>' while nothing uses it, and use that$/);
  });

  test("a backing format wasmvisor does not read, and a missing backing file", () => {
    const vmdk = damaged((v, b) => {
      v.setUint32(112, 0xe2792aca);
      v.setUint32(116, 4);
      b.set(new TextEncoder().encode("vmdk"), 120);
      b.set(new TextEncoder().encode("x.vmdk"), 136);
      v.setBigUint64(8, 136n);
      v.setUint32(16, 6);
    });
    expect(() => use(vmdk)).toThrow(/^--drive \/img\/bad\.qcow2: its backing file x\.vmdk has format 'vmdk', which wasmvisor does not read \(raw, qcow2\)$/);
    const p = platformWith({});
    overlay(p, "/img/o.qcow2", "gone.raw", "raw");
    expect(() => p.openDisk("/img/o.qcow2", { readOnly: true, what: "--drive" })).toThrow(/^--drive \/img\/o\.qcow2: backing file \/img\/gone\.raw: no such file$/);
  });
});

describe("fuzzing", () => {
  test("random damage to the header and tables: every open, read and write works or fails with one line naming the image", () => {
    const next = prng(2024);
    const base = valid();
    let failures = 0;
    for (let round = 0; round < 1000; round++) {
      const bytes = base.slice();
      const flips = 1 + (next() % 4);
      for (let f = 0; f < flips; f++) {
        // Mostly the metadata clusters (header, refcount table and block, L1, the L2 tables).
        const region = next() % 4 === 0 ? bytes.length : 6 * CS;
        const at = next() % region;
        bytes[at] = next() % 3 === 0 ? 0xff : bytes[at] ^ (1 << (next() % 8));
      }
      for (const readOnly of [true, false]) {
        try {
          use(bytes.slice(), readOnly);
        } catch (e) {
          failures++;
          const message = (e as Error).message;
          expect(message, `round ${round}`).toMatch(/^(--drive \/img\/bad\.qcow2(: backing file \S+)?|disk image \S+)[: ]/);
          expect(message, `round ${round}`).not.toContain("\n");
          expect(e, `round ${round}: ${message}`).not.toBeInstanceOf(TypeError);
        }
      }
    }
    expect(failures).toBeGreaterThan(50);
  }, 120_000);
});
