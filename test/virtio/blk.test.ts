import { describe, expect, it } from "vitest";
import {
  BLK_MAX_DISCARD_SECTORS,
  BLK_SIZE_MAX,
  VirtioBlk,
  VIRTIO_BLK_F_BLK_SIZE,
  VIRTIO_BLK_F_DISCARD,
  VIRTIO_BLK_F_FLUSH,
  VIRTIO_BLK_F_RO,
  VIRTIO_BLK_F_SEG_MAX,
  VIRTIO_BLK_F_SIZE_MAX,
  VIRTIO_BLK_F_WRITE_ZEROES,
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_UNSUPP,
  VIRTIO_BLK_T_DISCARD,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VIRTIO_BLK_T_WRITE_ZEROES,
} from "../../host/virtio/blk";
import { MemoryDisk } from "../../host/platform/memory/disk";
import { TokenBucket } from "../../host/devices/rate-limit";
import type { DiskBackend } from "../../host/devices/backends";
import { STATUS_DEVICE_NEEDS_RESET } from "../../host/virtio/mmio";
import { TestDriver, blkHeader, pattern, type Buf } from "./helpers";

const SECTORS = 128;

function make(opts: ConstructorParameters<typeof VirtioBlk>[1] = {}, disk: DiskBackend = new MemoryDisk(SECTORS * 512)) {
  const blk = new VirtioBlk(disk, opts);
  const d = new TestDriver(blk);
  expect(d.init()).toBe(true);
  const q = d.q(0);
  /** Post a request; returns its status byte, used length, and the guest addresses. */
  const req = (type: number, sector: number, middle: Buf[], opt: { indirect?: boolean } = {}) => {
    const c = q.post([{ data: blkHeader(type, sector) }, ...middle, { writable: 1 }], opt);
    const used = q.takeUsed();
    expect(used).toHaveLength(1);
    expect(used[0]!.id).toBe(c.head);
    return { status: d.ram.u8(c.addrs[c.addrs.length - 1]!), len: used[0]!.len, addrs: c.addrs };
  };
  const seg = (sector: number, num: number, flags = 0) => {
    const s = new Uint8Array(16);
    const dv = new DataView(s.buffer);
    dv.setBigUint64(0, BigInt(sector), true);
    dv.setUint32(8, num, true);
    dv.setUint32(12, flags, true);
    return s;
  };
  return { blk, d, q, req, seg, disk: disk as MemoryDisk };
}

const bit = (words: readonly [number, number], b: number) => ((words[0] >>> b) & 1) === 1;

describe("virtio-blk configuration", () => {
  it("offers the expected features and describes the disk", () => {
    const { d } = make({}, new MemoryDisk(SECTORS * 512));
    const f = d.offered();
    for (const b of [VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_WRITE_ZEROES]) {
      expect(bit(f, b), `feature ${b}`).toBe(true);
    }
    expect(bit(f, VIRTIO_BLK_F_RO)).toBe(false);
    expect(d.cfg(0, 4)).toBe(SECTORS); // capacity low
    expect(d.cfg(4, 4)).toBe(0); // capacity high
    expect(d.cfg(0x08, 4)).toBe(BLK_SIZE_MAX);
    expect(d.cfg(0x0c, 4)).toBe(126); // seg_max = queue size - 2
    expect(d.cfg(0x14, 4)).toBe(512);
    expect(d.cfg(0x24, 4)).toBe(BLK_MAX_DISCARD_SECTORS);
    expect(d.cfg(0x28, 4)).toBe(1);
    expect(d.cfg(0x30, 4)).toBe(BLK_MAX_DISCARD_SECTORS);
    expect(d.cfg(0x34, 4)).toBe(1);
    expect(d.cfg(0x38, 1)).toBe(1); // write_zeroes_may_unmap
    expect(d.cfg(0x100, 4)).toBe(0); // beyond the config space
    // Byte-wise reads, as a legacy driver does them, assemble the same value.
    let cap = 0;
    for (let i = 3; i >= 0; i--) cap = cap * 256 + d.cfg(i, 1);
    expect(cap).toBe(SECTORS);
  });

  it("reports a capacity above 2^32 sectors in both halves", () => {
    const size = 2 ** 33 * 512 + 1024;
    const fake: DiskBackend = { size, readOnly: true, read() {}, write() {}, flush() {}, discard() {}, close() {} };
    const { d } = make({}, fake);
    expect(d.cfg(0, 4)).toBe(2);
    expect(d.cfg(4, 4)).toBe(2);
  });

  it("rejects a disk whose size is not whole sectors", () => {
    const fake: DiskBackend = { size: 1000, readOnly: false, read() {}, write() {}, flush() {}, discard() {}, close() {} };
    expect(() => new VirtioBlk(fake)).toThrow(/multiple of 512/);
  });
});

describe("virtio-blk requests", () => {
  it("writes and reads back sectors through the backend", () => {
    const { req, disk } = make();
    const data = pattern(1024, 5);
    const w = req(VIRTIO_BLK_T_OUT, 10, [{ data }]);
    expect(w).toMatchObject({ status: VIRTIO_BLK_S_OK, len: 1 });
    expect(disk.data.subarray(10 * 512, 12 * 512)).toEqual(data);
    expect(disk.data[10 * 512 - 1]).toBe(0);
    expect(disk.data[12 * 512]).toBe(0);
    const r = req(VIRTIO_BLK_T_IN, 10, [{ writable: 1024 }]);
    expect(r).toMatchObject({ status: VIRTIO_BLK_S_OK, len: 1025 });
  });

  it("scatters reads and gathers writes over many segments of odd sizes", () => {
    const { req, disk, d } = make();
    const data = pattern(2048, 11);
    req(VIRTIO_BLK_T_OUT, 3, [{ data: data.subarray(0, 100) }, { data: data.subarray(100, 1500) }, { data: data.subarray(1500) }]);
    expect(disk.data.subarray(3 * 512, 7 * 512)).toEqual(data);
    const r = req(VIRTIO_BLK_T_IN, 3, [{ writable: 7 }, { writable: 1000 }, { writable: 1041 }]);
    expect(r.status).toBe(VIRTIO_BLK_S_OK);
    const got = new Uint8Array([...d.ram.copy(r.addrs[1]!, 7), ...d.ram.copy(r.addrs[2]!, 1000), ...d.ram.copy(r.addrs[3]!, 1041)]);
    expect(got).toEqual(data);
  });

  it("handles header, data and status sharing descriptors", () => {
    const { q, d, disk } = make();
    const data = pattern(512, 2);
    // OUT: header and data in one readable buffer.
    const c = q.post([{ data: new Uint8Array([...blkHeader(VIRTIO_BLK_T_OUT, 7), ...data]) }, { writable: 1 }]);
    q.takeUsed();
    expect(d.ram.u8(c.addrs[1]!)).toBe(VIRTIO_BLK_S_OK);
    expect(disk.data.subarray(7 * 512, 8 * 512)).toEqual(data);
    // IN: data and status in one writable buffer.
    d.ram.write(c.addrs[1]!, new Uint8Array([0xee]));
    const c2 = q.post([{ data: blkHeader(VIRTIO_BLK_T_IN, 7) }, { writable: 513 }]);
    expect(q.takeUsed()[0]!.len).toBe(513);
    expect(d.ram.copy(c2.addrs[1]!, 512)).toEqual(data);
    expect(d.ram.u8(c2.addrs[1]! + 512)).toBe(VIRTIO_BLK_S_OK);
  });

  it("flushes the backend", () => {
    const { req, disk } = make();
    expect(disk.flushes).toBe(0);
    expect(req(VIRTIO_BLK_T_FLUSH, 0, []).status).toBe(VIRTIO_BLK_S_OK);
    expect(disk.flushes).toBe(1);
  });

  it("returns the serial for GET_ID, NUL padded or exactly 20 bytes", () => {
    const short = make({ serial: "disk-0" });
    const r = short.req(VIRTIO_BLK_T_GET_ID, 0, [{ writable: 20 }]);
    expect(r).toMatchObject({ status: VIRTIO_BLK_S_OK, len: 21 });
    const id = short.d.ram.copy(r.addrs[1]!, 20);
    expect(new TextDecoder().decode(id.subarray(0, 6))).toBe("disk-0");
    expect([...id.subarray(6)].every((b) => b === 0)).toBe(true);
    const long = make({ serial: "ABCDEFGHIJKLMNOPQRSTUVWXYZ" });
    const r2 = long.req(VIRTIO_BLK_T_GET_ID, 0, [{ writable: 20 }]);
    expect(new TextDecoder().decode(long.d.ram.copy(r2.addrs[1]!, 20))).toBe("ABCDEFGHIJKLMNOPQRST");
  });

  it("discards ranges to zeros and rejects the unmap flag on discard", () => {
    const { req, disk, seg } = make();
    disk.data.fill(0x55);
    expect(req(VIRTIO_BLK_T_DISCARD, 0, [{ data: seg(8, 16) }]).status).toBe(VIRTIO_BLK_S_OK);
    expect(disk.data.subarray(8 * 512, 24 * 512).every((b) => b === 0)).toBe(true);
    expect(disk.data[8 * 512 - 1]).toBe(0x55);
    expect(disk.data[24 * 512]).toBe(0x55);
    expect(req(VIRTIO_BLK_T_DISCARD, 0, [{ data: seg(30, 1, 1) }]).status).toBe(VIRTIO_BLK_S_UNSUPP);
    expect(disk.data[30 * 512]).toBe(0x55);
  });

  it("writes zeros with and without unmap, and rejects unknown flags", () => {
    const { req, disk, seg } = make();
    disk.data.fill(0x77);
    expect(req(VIRTIO_BLK_T_WRITE_ZEROES, 0, [{ data: seg(1, 2) }]).status).toBe(VIRTIO_BLK_S_OK);
    expect(req(VIRTIO_BLK_T_WRITE_ZEROES, 0, [{ data: seg(5, 1, 1) }]).status).toBe(VIRTIO_BLK_S_OK);
    expect(disk.data.subarray(512, 3 * 512).every((b) => b === 0)).toBe(true);
    expect(disk.data.subarray(5 * 512, 6 * 512).every((b) => b === 0)).toBe(true);
    expect(disk.data[3 * 512]).toBe(0x77);
    expect(req(VIRTIO_BLK_T_WRITE_ZEROES, 0, [{ data: seg(9, 1, 2) }]).status).toBe(VIRTIO_BLK_S_UNSUPP);
    expect(disk.data[9 * 512]).toBe(0x77);
  });

  it("fails discard segments that break the advertised limits or the disk end", () => {
    const { req, disk, seg } = make();
    disk.data.fill(1);
    expect(req(VIRTIO_BLK_T_DISCARD, 0, [{ data: new Uint8Array([...seg(0, 1), ...seg(2, 1)]) }]).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(req(VIRTIO_BLK_T_DISCARD, 0, [{ data: seg(SECTORS - 1, 2) }]).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(req(VIRTIO_BLK_T_DISCARD, 0, [{ data: new Uint8Array(15) }]).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(disk.data.every((b) => b === 1)).toBe(true);
  });

  it("answers UNSUPP to unknown request types and to discard when not offered", () => {
    const { req } = make();
    expect(req(0x1234, 0, [{ writable: 512 }]).status).toBe(VIRTIO_BLK_S_UNSUPP);
    const nodisc = make({ discard: false });
    expect(bit(nodisc.d.offered(), VIRTIO_BLK_F_DISCARD)).toBe(false);
    expect(nodisc.req(VIRTIO_BLK_T_DISCARD, 0, [{ data: nodisc.seg(0, 1) }]).status).toBe(VIRTIO_BLK_S_UNSUPP);
  });

  it("fails requests beyond the end of the disk with IOERR", () => {
    const { req, disk, d } = make();
    const r = req(VIRTIO_BLK_T_IN, SECTORS - 1, [{ writable: 1024 }]);
    expect(r.status).toBe(VIRTIO_BLK_S_IOERR);
    expect(req(VIRTIO_BLK_T_IN, SECTORS, [{ writable: 512 }]).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(req(VIRTIO_BLK_T_OUT, SECTORS - 1, [{ data: new Uint8Array(1024).fill(9) }]).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(disk.data[(SECTORS - 1) * 512]).toBe(0); // nothing partially written
    // A sector number far beyond 2^53 bytes must not wrap around to a valid offset.
    expect(req(VIRTIO_BLK_T_IN, 2 ** 62, [{ writable: 512 }]).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(req(VIRTIO_BLK_T_IN, 2 ** 55, [{ writable: 512 }]).status).toBe(VIRTIO_BLK_S_IOERR);
    // The last sector is fine.
    expect(req(VIRTIO_BLK_T_IN, SECTORS - 1, [{ writable: 512 }]).status).toBe(VIRTIO_BLK_S_OK);
    expect(d.mmio.needsReset).toBe(false);
  });

  it("never hands an out-of-range access to the backend", () => {
    const calls: string[] = [];
    const spy: DiskBackend = {
      size: SECTORS * 512,
      readOnly: false,
      read: (o, d) => void calls.push(`read ${o}+${d.length}`),
      write: (o, s) => void calls.push(`write ${o}+${s.length}`),
      flush: () => {},
      discard: (o, l) => void calls.push(`discard ${o}+${l}`),
      close: () => {},
    };
    const { req, seg } = make({}, spy);
    expect(req(VIRTIO_BLK_T_IN, SECTORS - 1, [{ writable: 1024 }]).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(req(VIRTIO_BLK_T_OUT, SECTORS, [{ data: new Uint8Array(512) }]).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(req(VIRTIO_BLK_T_IN, 2 ** 52, [{ writable: 512 }]).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(req(VIRTIO_BLK_T_WRITE_ZEROES, 0, [{ data: seg(SECTORS - 1, 2, 1) }]).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(calls).toEqual([]);
    expect(req(VIRTIO_BLK_T_IN, SECTORS - 2, [{ writable: 1024 }]).status).toBe(VIRTIO_BLK_S_OK);
    expect(calls).toEqual([`read ${(SECTORS - 2) * 512}+1024`]);
  });

  it("fails transfers that are not whole sectors with IOERR", () => {
    const { req, disk } = make();
    expect(req(VIRTIO_BLK_T_OUT, 0, [{ data: new Uint8Array(100).fill(3) }]).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(disk.data[0]).toBe(0);
    expect(req(VIRTIO_BLK_T_IN, 0, [{ writable: 100 }]).status).toBe(VIRTIO_BLK_S_IOERR);
  });

  it("reports backend I/O errors as IOERR without breaking the device", () => {
    const disk = new MemoryDisk(SECTORS * 512);
    const failing: DiskBackend = {
      size: disk.size,
      readOnly: false,
      read: () => { throw new Error("EIO"); },
      write: () => { throw new Error("EIO"); },
      flush: () => { throw new Error("EIO"); },
      discard: () => { throw new Error("EIO"); },
      close: () => {},
    };
    const { req, d, seg } = make({}, failing);
    const r = req(VIRTIO_BLK_T_IN, 0, [{ writable: 512 }]);
    expect(r.status).toBe(VIRTIO_BLK_S_IOERR);
    expect(req(VIRTIO_BLK_T_OUT, 0, [{ data: new Uint8Array(512) }]).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(req(VIRTIO_BLK_T_FLUSH, 0, []).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(req(VIRTIO_BLK_T_DISCARD, 0, [{ data: seg(0, 1) }]).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(d.status() & STATUS_DEVICE_NEEDS_RESET).toBe(0);
  });

  it("processes a batch of requests with one notification and one interrupt", () => {
    const { q, d, disk } = make();
    for (let i = 0; i < 3; i++) q.post([{ data: blkHeader(VIRTIO_BLK_T_OUT, i) }, { data: new Uint8Array(512).fill(i + 1) }, { writable: 1 }], { notify: false });
    q.notify();
    expect(q.takeUsed()).toHaveLength(3);
    expect(d.irqLog).toEqual([true]);
    expect([disk.data[0], disk.data[512], disk.data[1024]]).toEqual([1, 2, 3]);
  });
});

describe("virtio-blk read-only", () => {
  it("offers RO, fails writes with IOERR and leaves the disk untouched", () => {
    const disk = new MemoryDisk(SECTORS * 512, { readOnly: true });
    disk.data.fill(0x42);
    const { d, req, seg } = make({}, disk);
    const f = d.offered();
    expect(bit(f, VIRTIO_BLK_F_RO)).toBe(true);
    expect(bit(f, VIRTIO_BLK_F_DISCARD)).toBe(false);
    expect(bit(f, VIRTIO_BLK_F_WRITE_ZEROES)).toBe(false);
    expect(req(VIRTIO_BLK_T_OUT, 0, [{ data: new Uint8Array(512) }]).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(req(VIRTIO_BLK_T_DISCARD, 0, [{ data: seg(0, 1) }]).status).toBe(VIRTIO_BLK_S_UNSUPP);
    expect(req(VIRTIO_BLK_T_FLUSH, 0, []).status).toBe(VIRTIO_BLK_S_OK);
    expect(disk.data.every((b) => b === 0x42)).toBe(true);
    const r = req(VIRTIO_BLK_T_IN, 0, [{ writable: 512 }]);
    expect(r.status).toBe(VIRTIO_BLK_S_OK);
    expect(d.ram.u8(r.addrs[1]!)).toBe(0x42);
  });

  it("can present a writable backend read-only", () => {
    const { d, req, disk, blk } = make({ readOnly: true });
    expect(blk.readOnly).toBe(true);
    expect(bit(d.offered(), VIRTIO_BLK_F_RO)).toBe(true);
    expect(req(VIRTIO_BLK_T_OUT, 0, [{ data: new Uint8Array(512).fill(1) }]).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(disk.data[0]).toBe(0);
  });

  it("restores only onto the same disk geometry", () => {
    const { blk } = make();
    const s = blk.save();
    expect(() => blk.restore(s)).not.toThrow();
    expect(() => blk.restore({ ...s, size: 512 })).toThrow(/disk of 512 bytes/);
    expect(() => blk.restore({ ...s, readOnly: true })).toThrow(/read-only/);
  });
});

describe("virtio-blk under a bandwidth limit", () => {
  it("holds requests in the queue until the bucket refills, then completes them in order", () => {
    const clock = { t: 0 };
    const limit = { bytes: new TokenBucket(4096, 4096, () => clock.t) }; // one 4 KiB read per second
    const { d, q } = make({ limit });
    const read = () => q.post([{ data: blkHeader(VIRTIO_BLK_T_IN, 0) }, { writable: 4096 }, { writable: 1 }]);
    const first = read();
    expect(q.takeUsed().map((u) => u.id)).toEqual([first.head]);
    const second = read();
    const third = read();
    expect(q.takeUsed()).toEqual([]); // both wait: the bucket is empty
    expect(d.mmio.retryMs()).toBeGreaterThan(900);
    clock.t = 1000;
    d.mmio.retry();
    expect(q.takeUsed().map((u) => u.id)).toEqual([second.head]);
    clock.t = 2000;
    d.mmio.retry();
    expect(q.takeUsed().map((u) => u.id)).toEqual([third.head]);
    expect(d.mmio.retryMs()).toBe(Infinity);
  });

  it("forgets a held request at reset", () => {
    const clock = { t: 0 };
    const { d, q } = make({ limit: { ops: new TokenBucket(1, 1, () => clock.t) } });
    q.post([{ data: blkHeader(VIRTIO_BLK_T_IN, 0) }, { writable: 512 }, { writable: 1 }]);
    q.post([{ data: blkHeader(VIRTIO_BLK_T_IN, 0) }, { writable: 512 }, { writable: 1 }]);
    expect(q.takeUsed()).toHaveLength(1);
    expect(d.mmio.retryMs()).toBeLessThan(Infinity);
    d.w(0x70, 0); // status 0: reset
    expect(d.mmio.retryMs()).toBe(Infinity);
  });
});
