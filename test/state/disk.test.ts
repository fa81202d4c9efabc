// Block migration's layer: a disk goes through the state format (DiskPass → StateWriter → a
// stream → StateStreamParser → receiveDiskSection) into a new image at the destination, round
// after round as a migration does it (all that is not zero first, with the guest writing
// between the pass's steps; then the blocks the dirty log names; a stop-and-copy), and comes out
// equal byte for byte, on raw and qcow2 images on Node and on the memory platform; the new image
// holds only what is not zero and qemu-img finds it clean. Sections that are corrupted or crafted
// are refused with a message saying what is wrong, and write nothing.
import { describe, test, expect, beforeEach, afterEach } from "vitest";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deflateSync } from "fflate";
import { loadCoreModule } from "../../host/platform/node/core";
import { memoryPlatform, type MemoryPlatform } from "../../host/platform/memory";
import { nodePlatform } from "../../host/platform/node";
import { MemoryDisk } from "../../host/platform/memory/disk";
import type { Platform } from "../../host/platform/platform";
import type { DiskBackend } from "../../host/devices/backends";
import { SwappableDisk } from "../../host/disk/swappable";
import { createDiskCopy } from "../../host/disk/disk-copy";
import type { DiskFormat } from "../../host/disk/formats";
import {
  StateFormatError, StateStreamParser, StateWriter, TAGS, bytesSource, listSections, sectionHeader, streamHeader, type ParsedSection,
} from "../../host/state/container";
import {
  DISK_BLOCK, DISK_TO_FILE, DISK_TO_LINK, DiskPass, MAX_DISK_ENTRIES, applyDiskSection, readDiskIndex, receiveDiskSection, writeDisk,
  type BlockSelection, type DiskWriting,
} from "../../host/state/disk";
import { crc32 } from "../../host/state/crc32";
import { concatBytes } from "../../host/util/bytes";
import { expectCleanCheck, expectIdentical, expectSame, imageInfo, randomBytes, readAll } from "../disk/helpers";

const core = loadCoreModule();
const B = DISK_BLOCK;
const SIZE = 48 * B + 1536; // 49 blocks, the last one of 1.5 KiB

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "wasmvisor-disk-state-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A writer whose stream goes, as it is written, through a parser to `take` (what a link does). */
function link(take: (s: ParsedSection) => void): StateWriter {
  const parser = new StateStreamParser("the link");
  return new StateWriter((c) => {
    for (const s of parser.push(c.slice())) take(s);
  });
}

/** Compressible bytes (for deflate). */
function text(length: number, seed: number): Uint8Array {
  const words = ["disk ", "block ", "migration ", "qcow2 ", "raw ", "zero "];
  const out = new Uint8Array(length);
  let k = seed;
  for (let i = 0; i < length;) for (const ch of words[(k = (k * 7 + 3) % words.length)]!) if (i < length) out[i++] = ch.charCodeAt(0);
  return out;
}

/** What the VM's disk holds before the migration starts. */
function prepare(d: DiskBackend): void {
  d.write(0, randomBytes(2 * B, 1)); // blocks 0, 1
  d.write(2 * B, new Uint8Array(B)); // block 2: written, with zeros
  d.write(5 * B + 1024, randomBytes(512, 2)); // a sector inside block 5
  d.write(10 * B, randomBytes(5 * B, 3)); // blocks 10-14
  d.write(20 * B, text(B, 4)); // block 20
  d.write(30 * B, randomBytes(B, 5)); // block 30, zero by the end
  d.write(48 * B, randomBytes(1536, 6)); // the short last block
}

/** The guest between the steps of a pre-copy pass: writes to blocks sent already and still to come. */
function during(d: DiskBackend, step: number): void {
  if (step === 3) d.write(1 * B + 4096, randomBytes(4096, 100));
  if (step === 8) d.write(40 * B, randomBytes(512, 101));
  if (step === 20) d.discard(30 * B, B);
  if (step === 30) d.write(6 * B - 512, randomBytes(1024, 102)); // straddles blocks 5 and 6
}

/** The guest between rounds. */
const rounds: ((d: DiskBackend) => void)[] = [
  (d) => {
    d.discard(10 * B, B); // block 10 becomes zero
    d.write(11 * B, new Uint8Array(B)); // block 11 becomes zero, written with zeros
    d.write(13 * B - 512, randomBytes(1024, 103)); // straddles blocks 12 and 13
    d.write(48 * B + 1024, randomBytes(512, 104)); // in the short last block
  },
  (d) => {
    d.discard(14 * B, B / 2); // half of block 14
    d.write(47 * B, randomBytes(B, 105)); // a block that was zero
    d.write(10 * B + 512, text(512, 106)); // block 10 again, not zero any more
  },
];

interface Migrated {
  passes: DiskPass[];
  /** Payload sizes of the disk sections, as they arrived. */
  sections: number[];
  /** Entries each arriving section carried. */
  applied: number;
}

/**
 * Migrate `src` onto `dst` as a migration does: the dirty log starts, a pass over what is not
 * zero (the guest writing between its steps), the rounds (each: the guest writes, then a pass
 * over the blocks the log names), and a stop-and-copy of what is left.
 */
function migrate(src: SwappableDisk, dst: DiskBackend, how: DiskWriting, opts: { during?: typeof during; rounds?: typeof rounds } = {}): Migrated {
  const out: Migrated = { passes: [], sections: [], applied: 0 };
  const w = link((s) => {
    if (s.tag !== TAGS.disk) return;
    out.sections.push(s.payload.length);
    const r = receiveDiskSection([dst], s.payload, s.crc, "test");
    expect(r.drive).toBe(0);
    out.applied += r.blocks;
  });
  let step = 0;
  src.startDirtyLog();
  const pass = (select: BlockSelection, live: boolean) => {
    const p = new DiskPass(w, 0, src, select, how);
    while (p.next()) if (live) opts.during?.(src, step++);
    out.passes.push(p);
  };
  pass({ kind: "nonzero" }, true);
  for (const round of opts.rounds ?? []) {
    round(src);
    pass({ kind: "bitmap", bitmap: src.syncDirtyLog().bitmap }, true);
  }
  pass({ kind: "bitmap", bitmap: src.syncDirtyLog().bitmap }, false); // stop-and-copy
  src.stopDirtyLog();
  w.end();
  return out;
}

/** Blocks of `disk` that are all zero. */
function zeroBlocks(disk: DiskBackend): number[] {
  const all = readAll(disk);
  const out: number[] = [];
  for (let b = 0; b * B < disk.size; b++) if (all.subarray(b * B, Math.min(disk.size, (b + 1) * B)).every((x) => x === 0)) out.push(b);
  return out;
}

type Source = { platform: Platform; path: string; format: DiskFormat; dirs: string[] };

/** The source's image in `root`: a raw file, a qcow2 image, or a snapshot's overlay over a raw base with data of its own. */
function sourceOn(kind: "raw" | "qcow2" | "overlay", root: string, platformWith: (files: Record<string, Uint8Array>) => Platform): Source {
  if (kind === "raw") return { platform: platformWith({ [`${root}/src.raw`]: new Uint8Array(SIZE) }), path: `${root}/src.raw`, format: "raw", dirs: [root] };
  const base = new Uint8Array(SIZE);
  base.set(randomBytes(3 * B, 7), 20 * B);
  base.set(randomBytes(B, 8), 44 * B);
  const platform = platformWith(kind === "overlay" ? { [`${root}/base.raw`]: base } : {});
  const backing = kind === "overlay" ? { backing: { path: `${root}/base.raw`, format: "raw" as const } } : { size: SIZE };
  platform.createDiskImage(`${root}/src.qcow2`, { ...backing, what: "test" });
  return { platform, path: `${root}/src.qcow2`, format: "qcow2", dirs: [root] };
}

/** A disk that counts its reads (by offset). */
function counting(d: DiskBackend, reads: number[]): DiskBackend {
  return {
    size: d.size, readOnly: d.readOnly, format: d.format,
    read: (o, dst) => { reads.push(o); d.read(o, dst); },
    write: (o, src) => d.write(o, src),
    discard: (o, n) => d.discard(o, n),
    knownZero: (o, n) => d.knownZero!(o, n),
    flush: () => d.flush(),
    close: () => d.close(),
  };
}

function roundTrip(s: Source, dstPath: string, how: DiskWriting): { src: SwappableDisk; m: Migrated; dst: DiskBackend } {
  const open = () => s.platform.openDisk(s.path, { format: s.format, readOnly: false, what: "--drive" });
  const src = new SwappableDisk(s.path, open);
  prepare(src);
  const copy = createDiskCopy(s.platform, dstPath, src.size, { dirs: s.dirs });
  expect(copy.image).toEqual({ path: dstPath, format: "qcow2" });
  const m = migrate(src, copy.disk, how, { during, rounds });
  copy.disk.close();
  const dst = s.platform.openDisk(dstPath, { format: "qcow2", readOnly: true, what: "copy" });
  expectSame(readAll(dst), readAll(src), "the copy");
  return { src, m, dst };
}

function checkRounds(m: Migrated, src: DiskBackend, dst: DiskBackend): void {
  expect(m.passes).toHaveLength(4);
  expect(m.passes[0]!.zeroBlocks).toBe(0); // a first round sends no zero blocks
  expect(m.passes[1]!.zeroBlocks).toBeGreaterThanOrEqual(2); // blocks 10 and 11 became zero
  expect(m.applied).toBe(m.passes.reduce((n, p) => n + p.blocks, 0));
  // What reads as zero at the source takes no cluster in the copy: never sent, or freed again.
  for (const b of zeroBlocks(src)) expect(dst.knownZero!(b * B, Math.min(B, SIZE - b * B)), `block ${b}`).toBe(true);
}

describe("a disk through the state format into a new image", () => {
  for (const kind of ["raw", "qcow2", "overlay"] as const) {
    test(`Node, source ${kind}: equal byte for byte, qemu-img finds the copy clean and equal`, () => {
      const s = sourceOn(kind, dir, (files) => {
        for (const [path, bytes] of Object.entries(files)) writeFileSync(path, bytes);
        return nodePlatform;
      });
      const dstPath = join(dir, "copy.qcow2");
      const { src, m, dst } = roundTrip(s, dstPath, DISK_TO_LINK);
      checkRounds(m, src, dst);
      dst.close();
      src.close();
      expectCleanCheck(dstPath);
      const info = imageInfo(dstPath);
      expect(info).toMatchObject({ format: "qcow2", "virtual-size": SIZE, "cluster-size": B });
      expect(info["backing-filename"]).toBeUndefined();
      expectIdentical(dstPath, "qcow2", s.path, s.format);
    });
  }

  for (const kind of ["raw", "qcow2", "overlay"] as const) {
    test(`memory platform, source ${kind}, deflated: equal byte for byte`, () => {
      let p: MemoryPlatform | undefined;
      const s = sourceOn(kind, "/img", (files) => (p = memoryPlatform({ core, files })));
      const { src, m, dst } = roundTrip(s, "/img/copy.qcow2", DISK_TO_FILE);
      checkRounds(m, src, dst);
      // Deflate paid for the text block. The copy holds a cluster per block that is not zero, its
      // metadata (5 clusters), and at most a cluster freed (a qcow2 file does not shrink) per
      // block that became zero after the first round; no more.
      expect(m.passes.reduce((n, x) => n + x.bytes, 0)).toBeLessThan(m.passes.reduce((n, x) => n + (x.blocks - x.zeroBlocks), 0) * B);
      const nonzero = Math.ceil(SIZE / B) - zeroBlocks(src).length;
      expect(p!.file("/img/copy.qcow2")!.length).toBeLessThanOrEqual((nonzero + 5 + m.passes.slice(1).reduce((n, x) => n + x.zeroBlocks, 0)) * B);
      dst.close();
      src.close();
    });
  }

  test("a first pass over qcow2 reads only the clusters that are allocated, a block per step at most, in bounded sections", () => {
    const p = memoryPlatform({ core });
    const size = 1024 * B; // 64 MiB
    p.createDiskImage("/a.qcow2", { size, what: "test" });
    const reads: number[] = [];
    const src = new SwappableDisk("/a.qcow2", () => counting(p.openDisk("/a.qcow2", { format: "qcow2", readOnly: false, what: "test" }), reads));
    for (const b of [3, 500, 501, 1023]) src.write(b * B, randomBytes(B, b));
    src.write(700 * B, new Uint8Array(B)); // allocated, zero: read, then left out
    const sections: number[] = [];
    const w = new StateWriter(() => {});
    const how = { level: 0, sectionBytes: 2 * B, written: { sections: 0 } };
    const origDisk = w.disk.bind(w);
    w.disk = (index, data) => { sections.push(index.length + data.reduce((n, d) => n + d.length, 0)); origDisk(index, data); };
    const pass = new DiskPass(w, 0, src, { kind: "nonzero" }, how);
    let steps = 0;
    for (let before = reads.length; pass.next(); before = reads.length) {
      steps++;
      expect(reads.length - before).toBeLessThanOrEqual(1);
    }
    expect(reads.map((o) => o / B)).toEqual([3, 500, 501, 700, 1023]);
    expect(steps).toBeGreaterThanOrEqual(1024 / 256); // bounded work per step, even over unallocated clusters
    expect({ blocks: pass.blocks, zero: pass.zeroBlocks, bytes: pass.bytes }).toEqual({ blocks: 4, zero: 0, bytes: 4 * B });
    expect(sections).toEqual([24 + 2 * 16 + 2 * B, 24 + 2 * 16 + 2 * B]);
    expect(how.written.sections).toBe(2);

    // A later round: the blocks the bitmap names, those that read as zero as zero entries (known ones not even read).
    reads.length = 0;
    const bitmap = new Uint32Array(32);
    for (const b of [3, 4, 700]) bitmap[b >>> 5]! |= 1 << (b & 31);
    const later = writeDisk(w, 0, src, { kind: "bitmap", bitmap }, DISK_TO_LINK);
    expect({ blocks: later.blocks, zero: later.zeroBlocks }).toEqual({ blocks: 3, zero: 2 });
    expect(reads.map((o) => o / B)).toEqual([3, 700]);
    src.close();
  });

  test("a pass with nothing to send still writes one section, naming the drive and its size", () => {
    const got: ParsedSection[] = [];
    const w = link((s) => got.push(s));
    const src = new MemoryDisk(4 * B);
    const written = { sections: 0 };
    expect(writeDisk(w, 2, src, { kind: "nonzero" }, { ...DISK_TO_LINK, written }).blocks).toBe(0);
    expect(written.sections).toBe(1);
    w.end();
    expect(got.map((s) => s.tag)).toEqual([TAGS.disk, TAGS.end]);
    const dst = new MemoryDisk(4 * B);
    expect(receiveDiskSection([null, null, dst], got[0]!.payload, got[0]!.crc, "t")).toEqual({ drive: 2, blocks: 0, bytes: 0 });
    expect(() => receiveDiskSection([null, null, new MemoryDisk(8 * B)], got[0]!.payload, got[0]!.crc, "t"))
      .toThrow(/drive 2 is 262144 bytes at the source, 524288 bytes here/);
  });

  test("sections stored in a stream (a file) are read back by their place: index first, then each block's data checked", () => {
    const src = new MemoryDisk(SIZE);
    prepare(src);
    const chunks: Uint8Array[] = [];
    const w = new StateWriter((c) => chunks.push(c.slice()));
    writeDisk(w, 0, src, { kind: "nonzero" }, { ...DISK_TO_FILE, sectionBytes: 3 * B });
    w.end();
    const stream = bytesSource(concatBytes(chunks));
    const sections = listSections(stream, "file").filter((s) => s.tag === TAGS.disk);
    expect(sections.length).toBeGreaterThan(1);
    const dst = new MemoryDisk(SIZE);
    const encodings = new Set<number>();
    for (const s of sections) {
      const idx = readDiskIndex((n) => stream.read(s.offset, n), s, [dst], "file");
      for (const e of idx.entries) encodings.add(e.encoding);
      applyDiskSection(dst, idx, stream, "file");
    }
    expect([...encodings].sort()).toEqual([0, 1]); // random blocks stay raw, the text block is deflated
    expectSame(dst.data, src.data, "the copy");
  });
});

describe("createDiskCopy", () => {
  test("makes a standalone sparse qcow2 where the host allows, never over a file", () => {
    const p = memoryPlatform({ core, files: { "/img/there.raw": new Uint8Array(512) } });
    const { disk } = createDiskCopy(p, "/img/new.qcow2", 1 << 30, { dirs: ["/img"] });
    expect(disk.size).toBe(1 << 30);
    expect(disk.knownZero!(0, 1 << 30)).toBe(true);
    expect(p.file("/img/new.qcow2")!.length).toBeLessThan(1 << 20); // 1 GiB that costs nothing yet
    disk.close();
    expect(() => createDiskCopy(p, "/elsewhere/new.qcow2", 1 << 20, { dirs: ["/img"] })).toThrow(/^migrated disk \/elsewhere\/new\.qcow2: not in an image directory/);
    expect(() => createDiskCopy(p, "/img/there.raw", 1 << 20, { dirs: ["/img"] })).toThrow(/already exists/);
    expect(p.file("/img/there.raw")!.length).toBe(512);

    const outside = mkdtempSync(join(tmpdir(), "wasmvisor-disk-outside-"));
    try {
      expect(() => createDiskCopy(nodePlatform, join(outside, "x.qcow2"), 1 << 20, { dirs: [dir] })).toThrow(/not in an image directory/);
      expect(existsSync(join(outside, "x.qcow2"))).toBe(false);
    } finally {
      rmSync(outside, { recursive: true, force: true });
    }
    const made = createDiskCopy(nodePlatform, join(dir, "y.qcow2"), 3 << 20, { dirs: [dir] });
    made.disk.close();
    expectCleanCheck(join(dir, "y.qcow2"));
    expect(imageInfo(join(dir, "y.qcow2"))).toMatchObject({ format: "qcow2", "virtual-size": 3 << 20, "cluster-size": B });
  });
});

// ---- hostile sections ----

const HOSTILE_SIZE = 4 * B + 512; // blocks 0-3, and block 4 of one sector

/** A valid section: 0 data, 1 zero, 2 data, 3 zero, 4 data (512 bytes). */
function validSection(): { payload: Uint8Array; crc: number } {
  const src = new MemoryDisk(HOSTILE_SIZE);
  src.write(0, randomBytes(B, 1));
  src.write(2 * B, randomBytes(B, 2));
  src.write(4 * B, randomBytes(512, 3));
  const got: ParsedSection[] = [];
  writeDisk(link((s) => got.push(s)), 0, src, { kind: "bitmap", bitmap: new Uint32Array([0b11111]) }, DISK_TO_LINK);
  expect(got).toHaveLength(1);
  return { payload: got[0]!.payload.slice(), crc: got[0]!.crc };
}

const ENTRY = (i: number) => 24 + 16 * i;

/** A changed copy of `payload`, its index's CRC made to match again unless `keepCrc`. */
function edit(base: { payload: Uint8Array; crc: number }, change: (v: DataView, p: Uint8Array) => void, keepCrc = false) {
  const payload = base.payload.slice();
  const v = new DataView(payload.buffer);
  change(v, payload);
  const count = Math.min(v.getUint32(16, true), (payload.length - 24) >>> 4);
  return { payload, crc: keepCrc ? base.crc : crc32(payload.subarray(0, 24 + 16 * count)) };
}

/** A section made by hand: entries with their data. */
function handmade(size: number, entries: { block: number; flags?: number; encoding?: number; data: Uint8Array }[]) {
  const index = new Uint8Array(24 + 16 * entries.length);
  const v = new DataView(index.buffer);
  v.setUint32(4, B, true);
  v.setBigUint64(8, BigInt(size), true);
  v.setUint32(16, entries.length, true);
  entries.forEach((e, i) => {
    v.setUint32(ENTRY(i), e.block, true);
    v.setUint16(ENTRY(i) + 4, e.flags ?? 0, true);
    v.setUint16(ENTRY(i) + 6, e.encoding ?? 0, true);
    v.setUint32(ENTRY(i) + 8, e.data.length, true);
    v.setUint32(ENTRY(i) + 12, crc32(e.data), true);
  });
  return { payload: concatBytes([index, ...entries.map((e) => e.data)]), crc: crc32(index) };
}

/** A destination disk that records every change. */
function recorder() {
  const disk = new MemoryDisk(HOSTILE_SIZE);
  disk.data.fill(0xa5);
  const changes: string[] = [];
  const d: DiskBackend = {
    size: disk.size, readOnly: false,
    read: (o, dst) => disk.read(o, dst),
    write: (o, src) => { changes.push(`write ${o}`); disk.write(o, src); },
    discard: (o, n) => { changes.push(`discard ${o}`); disk.discard(o, n); },
    flush: () => disk.flush(),
    close: () => disk.close(),
  };
  return { d, changes, disk };
}

describe("hostile disk sections are refused and write nothing", () => {
  test("the valid section applies (so each case below breaks only what it says)", () => {
    const r = recorder();
    expect(receiveDiskSection([r.d], validSection().payload, validSection().crc, "in")).toEqual({ drive: 0, blocks: 5, bytes: 2 * B + 512 });
    expect(r.changes).toEqual([`write 0`, `discard ${B}`, `write ${2 * B}`, `discard ${3 * B}`, `write ${4 * B}`]);
  });

  const at = "in: disk section at byte 0: ";
  const cases: [string, () => { payload: Uint8Array; crc: number }, RegExp, ((d: DiskBackend) => (DiskBackend | null)[])?][] = [
    ["a drive the VM does not have", () => edit(validSection(), (v) => v.setUint32(0, 1, true)), /it is for drive 1; the VM has 1 drive$/],
    ["a drive whose storage is shared", () => validSection(), /it is for drive 0, whose disk is not being copied here \(shared storage\)$/, () => [null]],
    ["a disk of another size", () => edit(validSection(), (v) => v.setBigUint64(8, BigInt(HOSTILE_SIZE + 512), true)), /drive 0 is 263168 bytes at the source, 262656 bytes here$/],
    ["a disk size past 2^53", () => edit(validSection(), (v) => v.setBigUint64(8, 2n ** 63n, true)), /drive 0 is 9223372036854776000 bytes at the source, 262656 bytes here$/],
    ["another block size", () => edit(validSection(), (v) => v.setUint32(4, 4096, true)), /blocks of 4096 bytes; this build reads 65536$/],
    ["reserved bytes set", () => edit(validSection(), (v) => v.setUint32(20, 1, true)), /reserved header bytes are not zero/],
    ["a block past the end", () => edit(validSection(), (v) => v.setUint32(ENTRY(4), 5, true)), /entry 4 is for block 5; drive 0 has 5 blocks of 65536 bytes$/],
    ["a block number near 2^32", () => edit(validSection(), (v) => v.setUint32(ENTRY(4), 0xffffffff, true)), /entry 4 is for block 4294967295/],
    ["blocks out of order", () => edit(validSection(), (v) => v.setUint32(ENTRY(2), 0, true)), /entry 2: blocks out of order or repeated$/],
    ["unknown flags", () => edit(validSection(), (v) => v.setUint16(ENTRY(1) + 4, 3, true)), /entry 1 has unknown flags 0x3$/],
    ["a zero block with data", () => edit(validSection(), (v) => v.setUint32(ENTRY(1) + 8, 512, true)), /entry 1 \(block 1\): 512 bytes of encoding 0 for a zero block cannot hold/],
    ["a raw block of the wrong length", () => edit(validSection(), (v) => v.setUint32(ENTRY(4) + 8, 1024, true)), /entry 4 \(block 4\): 1024 bytes of encoding 0 cannot hold its 512 bytes$/],
    ["an unknown encoding", () => edit(validSection(), (v) => v.setUint16(ENTRY(0) + 6, 7, true)), /entry 0 \(block 0\): 65536 bytes of encoding 7 cannot hold/],
    ["a length of 2^32 - 1", () => edit(validSection(), (v) => v.setUint32(ENTRY(0) + 8, 0xffffffff, true)), /entry 0 \(block 0\): 4294967295 bytes of encoding 0 cannot hold/],
    ["lengths that do not add up to the section", () => edit(validSection(), (v) => { v.setUint16(ENTRY(0) + 6, 1, true); v.setUint32(ENTRY(0) + 8, B - 1, true); }), /its index and the data its entries name take 131687 bytes, the section has 131688$/],
    ["an entry count of 2^32 - 1", () => edit(validSection(), (v) => v.setUint32(16, 0xffffffff, true)), new RegExp(`an index of 4294967295 entries, more than the ${MAX_DISK_ENTRIES}`)],
    ["more entries than the section holds", () => edit(validSection(), (v) => v.setUint32(16, 60000, true)), /an index of 60000 entries does not fit in \d+ bytes/],
    ["a changed index (CRC)", () => edit(validSection(), (v) => v.setUint32(ENTRY(2), 3, true), true), /its index fails its checksum \(corrupted\)$/],
    ["a changed header (CRC)", () => edit(validSection(), (_v, p) => { p[0] = 1; }, true), /its index fails its checksum/],
    ["a changed byte in the last block's data (CRC)", () => edit(validSection(), (_v, p) => { p[p.length - 1]! ^= 1; }, true), /^in: drive 0, block 4 \(disk offset 262144\) fails its checksum \(corrupted\); nothing of its section was written$/],
    ["a changed byte in the first block's data (CRC)", () => edit(validSection(), (_v, p) => { p[ENTRY(5)]! ^= 0x80; }, true), /drive 0, block 0 .*fails its checksum/],
    ["a section cut short in its data", () => { const s = validSection(); return { payload: s.payload.subarray(0, s.payload.length - 100), crc: s.crc }; }, /entry 4 \(block 4\) ends at byte \d+, past the section's end at \d+$/],
    ["a section cut short in its index", () => { const s = validSection(); return { payload: s.payload.subarray(0, 60), crc: s.crc }; }, /an index of 5 entries does not fit in 60 bytes \(truncated or corrupted\)$/],
    ["a section cut short in its header", () => { const s = validSection(); return { payload: s.payload.subarray(0, 10), crc: s.crc }; }, /10 bytes: too short for its header$/],
    ["deflated data that inflates short", () => handmade(HOSTILE_SIZE, [{ block: 0, data: randomBytes(B, 9) }, { block: 2, encoding: 1, data: deflateSync(new Uint8Array(1000)) }]), /drive 0, block 2 .*inflates to 1000 bytes, not 65536; nothing of its section was written$/],
    ["deflated data that inflates long", () => handmade(HOSTILE_SIZE, [{ block: 0, data: randomBytes(B, 9) }, { block: 4, encoding: 1, data: deflateSync(new Uint8Array(B)) }]), /drive 0, block 4 .*inflates to 513 bytes, not 512/],
    ["data that does not inflate", () => handmade(HOSTILE_SIZE, [{ block: 0, data: randomBytes(B, 9) }, { block: 1, encoding: 1, data: new Uint8Array([0xff, 0xff, 0xff, 0xff]) }]), /drive 0, block 1 .*does not inflate/],
  ];

  test.each(cases)("%s", (_what, make, message, drives) => {
    const r = recorder();
    const { payload, crc } = make();
    let error: unknown;
    try {
      receiveDiskSection(drives ? drives(r.d) : [r.d], payload, crc, "in");
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(StateFormatError);
    const msg = (error as Error).message;
    expect(msg).toMatch(message);
    expect(msg.startsWith(at) || msg.startsWith("in: drive 0, block ")).toBe(true);
    expect(r.changes).toEqual([]);
    expect(r.disk.data.every((b) => b === 0xa5)).toBe(true);
  });

  test("a disk given for another drive's size, or read-only, is refused before anything is written", () => {
    const { payload, crc } = validSection();
    const s = readDiskIndex((n) => payload.subarray(0, n), { offset: 0, length: payload.length, crc }, [{ size: HOSTILE_SIZE }], "in");
    const small = new MemoryDisk(B);
    expect(() => applyDiskSection(small, s, bytesSource(payload), "in")).toThrow(/drive 0 is 262656 bytes at the source; the disk given for it is 65536/);
    const ro = new MemoryDisk(HOSTILE_SIZE, { readOnly: true });
    expect(() => applyDiskSection(ro, s, bytesSource(payload), "in")).toThrow(/read-only/);
    expect(small.data.every((b) => b === 0)).toBe(true);
  });

  test("a stream that claims a disk section larger than the container allows is refused at its header", () => {
    const parser = new StateStreamParser("the link");
    expect(() => parser.push(concatBytes([streamHeader(), sectionHeader(TAGS.disk, 2 ** 40, 0)]))).toThrow(/section "DISK" at byte 16 claims 1099511627776 bytes \(corrupted\)/);
    const small = new StateStreamParser("the link", 1 << 20);
    expect(() => small.push(concatBytes([streamHeader(), sectionHeader(TAGS.disk, 2 << 20, 0)]))).toThrow(/larger than the 1048576 a stream may send at once/);
  });
});
