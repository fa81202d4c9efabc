// The disk's dirty log, what block migration's later rounds send: a write, discard or
// write-zeroes the guest makes through a virtio-blk device marks exactly the 64 KiB blocks it
// touches (part of a block marks it), reads and flushes mark nothing, a sync hands the marks
// over and starts again empty, and the log goes on across a move of the disk onto an overlay.
import { describe, test, expect } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { DISK_BLOCK, DirtyLog } from "../../host/disk/dirty-log";
import { popcount } from "../../host/util/bits";
import { SwappableDisk, continueOnOverlay } from "../../host/disk/swappable";
import { memoryPlatform } from "../../host/platform/memory";
import { MemoryDisk } from "../../host/platform/memory/disk";
import { compileCore } from "../../host/core/core";
import { packageRoot } from "../../host/platform/node/core";
import {
  VirtioBlk, VIRTIO_BLK_S_OK, VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_WRITE_ZEROES,
} from "../../host/virtio/blk";
import { TestDriver, blkHeader, type Buf } from "../virtio/helpers";
import { prng } from "../prng";
import { randomBytes } from "./helpers";

const core = compileCore(new Uint8Array(readFileSync(join(packageRoot(), "build/core.wasm"))));
const MiB = 1 << 20;
const SECTOR = 512;

/** The blocks a bitmap names, in order. */
function blocksOf(bitmap: Uint32Array): number[] {
  const out: number[] = [];
  bitmap.forEach((w, i) => {
    for (let b = 0; b < 32; b++) if ((w >>> b) & 1) out.push(i * 32 + b);
  });
  return out;
}

/** A guest driving a virtio-blk device over `disk`. */
function guest(disk: SwappableDisk) {
  const d = new TestDriver(new VirtioBlk(disk));
  expect(d.init()).toBe(true);
  const q = d.q(0);
  const req = (type: number, sector: number, middle: Buf[]) => {
    const c = q.post([{ data: blkHeader(type, sector) }, ...middle, { writable: 1 }]);
    expect(q.takeUsed()).toHaveLength(1);
    expect(d.ram.u8(c.addrs[c.addrs.length - 1]!)).toBe(VIRTIO_BLK_S_OK);
  };
  const seg = (sector: number, num: number, flags = 0) => {
    const s = new Uint8Array(16);
    const v = new DataView(s.buffer);
    v.setBigUint64(0, BigInt(sector), true);
    v.setUint32(8, num, true);
    v.setUint32(12, flags, true);
    return s;
  };
  return {
    write: (sector: number, data: Uint8Array) => req(VIRTIO_BLK_T_OUT, sector, [{ data }]),
    read: (sector: number, bytes: number) => req(VIRTIO_BLK_T_IN, sector, [{ writable: bytes }]),
    flush: () => req(VIRTIO_BLK_T_FLUSH, 0, []),
    discard: (sector: number, num: number) => req(VIRTIO_BLK_T_DISCARD, 0, [{ data: seg(sector, num) }]),
    writeZeroes: (sector: number, num: number, unmap = false) => req(VIRTIO_BLK_T_WRITE_ZEROES, 0, [{ data: seg(sector, num, unmap ? 1 : 0) }]),
  };
}

const PER_BLOCK = DISK_BLOCK / SECTOR; // 128 sectors

describe("DirtyLog", () => {
  test("marks every block a range touches, no other, counting each once, whatever the range's size", () => {
    const size = 300 * DISK_BLOCK + 3 * SECTOR; // a last block of 1.5 KiB
    const log = new DirtyLog(size);
    expect(log.blocks).toBe(301);
    const next = prng(7);
    for (let round = 0; round < 20; round++) {
      const want = new Set<number>();
      for (let i = 0; i < 30; i++) {
        // Small writes, ones over a few blocks, and big discards (the whole-word path).
        const kind = next() % 3;
        const offset = (next() % (size / SECTOR)) * SECTOR;
        const length = Math.min(size - offset, SECTOR * (kind === 0 ? 1 + (next() % 8) : kind === 1 ? 1 + (next() % 400) : 1 + (next() % 20000)));
        log.mark(offset, length);
        for (let b = Math.floor(offset / DISK_BLOCK); b <= Math.floor((offset + length - 1) / DISK_BLOCK); b++) want.add(b);
      }
      const got = log.take();
      expect(blocksOf(got.bitmap)).toEqual([...want].sort((a, b) => a - b));
      expect(got.blocks).toBe(want.size);
      expect(got.bitmap.reduce((n, w) => n + popcount(w), 0)).toBe(want.size);
    }
    expect(log.take().blocks).toBe(0);
  });

  test("ranges of no bytes or outside the disk mark nothing; one running past the end marks up to the last block", () => {
    const log = new DirtyLog(4 * DISK_BLOCK);
    log.mark(DISK_BLOCK, 0);
    log.mark(4 * DISK_BLOCK, 512);
    log.mark(-512, 0);
    expect(log.take()).toEqual({ bitmap: new Uint32Array(1), blocks: 0 });
    log.mark(3 * DISK_BLOCK + 512, 10 * DISK_BLOCK);
    expect(blocksOf(log.take().bitmap)).toEqual([3]);
  });
});

describe("SwappableDisk's dirty log", () => {
  test("a guest's writes, discards and write-zeroes mark exactly the blocks they touch; reads and flushes nothing", () => {
    const disk = new SwappableDisk("mem", () => new MemoryDisk(MiB + 4 * SECTOR));
    const g = guest(disk);
    expect(disk.dirtyLogging).toBe(false);
    g.write(0, randomBytes(SECTOR, 1)); // before the log: not counted
    disk.startDirtyLog();
    expect(disk.dirtyLogging).toBe(true);
    g.read(0, 8 * DISK_BLOCK);
    g.flush();
    expect(disk.syncDirtyLog()).toEqual({ bitmap: new Uint32Array(1), blocks: 0 });

    g.write(PER_BLOCK - 1, randomBytes(2 * SECTOR, 2)); // the last sector of block 0 and the first of block 1
    g.write(3 * PER_BLOCK, randomBytes(DISK_BLOCK, 3)); // exactly block 3
    g.discard(5 * PER_BLOCK + 7, 1); // one sector inside block 5
    g.writeZeroes(7 * PER_BLOCK + 127, 130); // the end of 7, all of 8, the start of 9
    g.writeZeroes(11 * PER_BLOCK, 1, true); // with unmap: a discard
    g.write(16 * PER_BLOCK + 1, randomBytes(SECTOR, 4)); // the partial last block (16: 2 KiB)
    const first = disk.syncDirtyLog();
    expect(blocksOf(first.bitmap)).toEqual([0, 1, 3, 5, 7, 8, 9, 11, 16]);
    expect(first.blocks).toBe(9);
    // A sync starts the log again empty; the same block written again is marked again.
    g.write(3 * PER_BLOCK + 5, randomBytes(SECTOR, 5));
    expect(blocksOf(disk.syncDirtyLog().bitmap)).toEqual([3]);
    expect(disk.syncDirtyLog().blocks).toBe(0);

    disk.stopDirtyLog();
    expect(disk.dirtyLogging).toBe(false);
    g.write(2 * PER_BLOCK, randomBytes(SECTOR, 6));
    expect(() => disk.syncDirtyLog()).toThrow(/dirty log is not running/);
    // Started again: nothing from before.
    disk.startDirtyLog();
    expect(disk.syncDirtyLog().blocks).toBe(0);
    disk.close();
  });

  test("goes on across a move onto an overlay, and across a swap that fails", () => {
    const p = memoryPlatform({ core, files: { "/img/vm.raw": randomBytes(2 * MiB, 9), "/img/small.raw": new Uint8Array(4096) } });
    const disk = new SwappableDisk("/img/vm.raw", () => p.openDisk("/img/vm.raw", { readOnly: false, what: "--drive" }));
    const g = guest(disk);
    disk.startDirtyLog();
    g.write(4 * PER_BLOCK, randomBytes(SECTOR, 10));
    continueOnOverlay(p, disk, "/img/snap.qcow2");
    expect(disk.image).toEqual({ path: "/img/snap.qcow2", format: "qcow2" });
    g.write(20 * PER_BLOCK + 3, randomBytes(3 * SECTOR, 11));
    g.discard(31 * PER_BLOCK, PER_BLOCK);
    expect(() => disk.swap("/img/small.raw", () => p.openDisk("/img/small.raw", { readOnly: false, what: "--drive" }))).toThrow(/is 4096 bytes/);
    g.write(9 * PER_BLOCK, randomBytes(SECTOR, 12));
    const dirty = disk.syncDirtyLog();
    expect(blocksOf(dirty.bitmap)).toEqual([4, 9, 20, 31]);
    expect(dirty.blocks).toBe(4);
    disk.close();
  });
});
