import { afterEach, beforeEach, describe, expect, it } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { execFileSync, spawn } from "node:child_process";
import { openNodeDisk } from "../../host/platform/node/disk";
import type { DiskBackend } from "../../host/devices/backends";
import { VirtioBlk, VIRTIO_BLK_F_RO, VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT } from "../../host/virtio/blk";
import { TestDriver, blkHeader, pattern } from "../virtio/helpers";

let dir: string;
let img: string;
const opened: DiskBackend[] = [];
const open = (p: string, readOnly = false) => {
  const d = openNodeDisk(p, { readOnly, what: "disk image" });
  opened.push(d);
  return d;
};

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "wasmvisor-disk-"));
  img = path.join(dir, "disk.img");
  fs.writeFileSync(img, new Uint8Array(1 << 20));
});

afterEach(() => {
  for (const d of opened.splice(0)) d.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe("raw disk images on Node", () => {
  it("writes, flushes, and reads the data back after reopening", () => {
    const disk = open(img);
    expect(disk.size).toBe(1 << 20);
    expect(disk.readOnly).toBe(false);
    const data = pattern(4096, 12);
    disk.write(8192, data);
    disk.flush();
    disk.close();
    expect(fs.readFileSync(img).subarray(8192, 8192 + 4096)).toEqual(Buffer.from(data));
    const again = open(img, true);
    const back = new Uint8Array(4096);
    again.read(8192, back);
    expect(back).toEqual(data);
  });

  it("reads into shared (guest) memory", () => {
    fs.writeFileSync(img, Buffer.from(pattern(1 << 20, 3)));
    const disk = open(img);
    const dst = new Uint8Array(new SharedArrayBuffer(1024));
    disk.read(512, dst);
    expect(dst).toEqual(pattern(1 << 20, 3).subarray(512, 1536));
  });

  it("refuses writes and discards when read-only, and leaves the file alone", () => {
    const disk = open(img, true);
    expect(disk.readOnly).toBe(true);
    expect(() => disk.write(0, new Uint8Array(512).fill(1))).toThrow(/read-only/);
    expect(() => disk.discard(0, 512)).toThrow(/read-only/);
    expect(() => disk.flush()).not.toThrow();
    expect(fs.readFileSync(img).every((b) => b === 0)).toBe(true);
  });

  it("discards to zeros, keeping the rest", () => {
    fs.writeFileSync(img, Buffer.alloc(1 << 20, 0x5a));
    const disk = open(img);
    disk.discard(4096 + 512, 51200); // sector aligned, not 4 KiB aligned
    const f = fs.readFileSync(img);
    expect(f[4096 + 511]).toBe(0x5a);
    expect(f.subarray(4096 + 512, 4096 + 512 + 51200).every((b) => b === 0)).toBe(true);
    expect(f[4096 + 512 + 51200]).toBe(0x5a);
    // A range crossing the 1 MiB chunk boundary and partly zero already.
    const d2 = new Uint8Array(8192).fill(7);
    disk.write((1 << 20) - 8192, d2);
    disk.discard((1 << 20) - 16384, 16384);
    const g = fs.readFileSync(img);
    expect(g.subarray((1 << 20) - 16384).every((b) => b === 0)).toBe(true);
    expect(g[(1 << 20) - 16385]).toBe(0x5a);
  });

  it("rejects accesses beyond the end of the image", () => {
    const disk = open(img);
    expect(() => disk.read((1 << 20) - 256, new Uint8Array(512))).toThrow(RangeError);
    expect(() => disk.write(-512, new Uint8Array(512))).toThrow(RangeError);
    expect(() => disk.discard(1 << 20, 512)).toThrow(RangeError);
  });

  it("explains what is wrong with an image it cannot use", () => {
    expect(() => open(path.join(dir, "missing.img"))).toThrow(/^disk image .*missing\.img: no such file$/);
    const odd = path.join(dir, "odd.img");
    fs.writeFileSync(odd, new Uint8Array(1000));
    expect(() => open(odd)).toThrow(/is 1000 bytes, not a multiple of 512/);
    expect(() => open(dir)).toThrow(/is a directory|not a regular file/);
  });

  it("suggests readonly=on when the image cannot be opened for writing", () => {
    // Root may write a 0444 file, so as root use a read-only sysfs attribute (4096 bytes, and
    // writable by nobody) as the image that cannot be opened for writing.
    let target = img;
    if (process.getuid?.() === 0) target = "/sys/kernel/uevent_seqnum";
    else fs.chmodSync(img, 0o444);
    expect(() => open(target)).toThrow(/^disk image .*: cannot open it for writing \(EACCES\); use readonly=on/);
    expect(() => open(target, true)).not.toThrow();
  });

  it("refuses special files at once: a FIFO does not block, a character device is not a disk", async () => {
    const fifo = path.join(dir, "fifo");
    execFileSync("mkfifo", [fifo]);
    // A writer arrives after 2 s: an open that waited for it (as a read-only open of a FIFO
    // does) would only fail then.
    const writer = spawn("sh", ["-c", `sleep 2; exec 3>${fifo}`]);
    try {
      const t0 = performance.now();
      expect(() => open(fifo, true)).toThrow(/fifo: is a FIFO, not a regular file or a block device/);
      expect(() => open(fifo)).toThrow(/is a FIFO, not a regular file or a block device/);
      expect(performance.now() - t0).toBeLessThan(1000);
    } finally {
      writer.kill();
    }
    expect(() => open("/dev/zero", true)).toThrow(/\/dev\/zero: is a character device, not a regular file or a block device/);
  });

  it("refuses an image another user has open for writing, as QEMU's locking does", () => {
    const a = open(img);
    expect(() => open(img)).toThrow(/in use: another drive or VM of this process has it open for writing; .*readonly=on on every side shares it/);
    expect(() => open(img, true)).toThrow(/in use: another drive or VM of this process has it open for writing/);
    a.close();
    const r1 = open(img, true);
    expect(() => open(img, true)).not.toThrow(); // readers share
    expect(() => open(img)).toThrow(/in use: another drive or VM of this process has it open;/); // not a writer beside readers
    r1.close();
  });

  it("names another process that has the image open or locked", async () => {
    const holder = spawn("sh", ["-c", `exec 3<>${img}; echo ready; exec sleep 30`], { stdio: ["ignore", "pipe", "ignore"] });
    try {
      await new Promise((resolve) => holder.stdout!.once("data", resolve));
      expect(() => open(img)).toThrow(new RegExp(`in use: (sh|sleep) \\(pid ${holder.pid}\\) has it open for writing`));
      expect(() => open(img, true)).toThrow(/has it open for writing/);
    } finally {
      holder.kill();
    }
    // A lock (QEMU keeps its images locked) by a process whose descriptor we do not look at.
    const locker = spawn("python3", ["-c", `import fcntl,sys,time
f=open(sys.argv[1],"rb+"); fcntl.lockf(f, fcntl.LOCK_SH, 1, 100); print("ready", flush=True); time.sleep(30)`, img], { stdio: ["ignore", "pipe", "ignore"] });
    try {
      await new Promise((resolve) => locker.stdout!.once("data", resolve));
      expect(() => open(img)).toThrow(new RegExp(`in use: python3 \\(pid ${locker.pid}\\) holds a lock on it`));
    } finally {
      locker.kill();
    }
  });

  it("opens only images inside the allowed directories, following links to where they lead", () => {
    const allowed = path.join(dir, "images");
    fs.mkdirSync(allowed);
    const inside = path.join(allowed, "ok.img");
    fs.writeFileSync(inside, new Uint8Array(4096));
    const openIn = (p: string, what = "disk image") => openNodeDisk(p, { readOnly: false, dirs: [allowed], what });
    openIn(inside, "'drives'").close();
    expect(() => openIn(img, "'drives'")).toThrow(/^'drives' .*disk\.img: not in an image directory of this host \(.*images\); start the host with --images <dir>/);
    fs.symlinkSync(img, path.join(allowed, "escape.img"));
    expect(() => openIn(path.join(allowed, "escape.img"))).toThrow(/not in an image directory/);
    fs.symlinkSync(allowed, path.join(dir, "alias"));
    expect(() => openIn(path.join(dir, "alias", "ok.img")).close()).not.toThrow();
  });

  it("throws after close", () => {
    const disk = open(img);
    disk.close();
    expect(() => disk.read(0, new Uint8Array(512))).toThrow(/closed/);
    expect(() => disk.close()).not.toThrow();
  });
});

describe("virtio-blk over a raw image file", () => {
  it("serves guest reads, writes, flushes and discards from the file", () => {
    const disk = open(img);
    const d = new TestDriver(new VirtioBlk(disk));
    d.init();
    const q = d.q(0);
    const data = pattern(1024, 21);
    q.post([{ data: blkHeader(VIRTIO_BLK_T_OUT, 100) }, { data }, { writable: 1 }]);
    q.post([{ data: blkHeader(VIRTIO_BLK_T_FLUSH, 0) }, { writable: 1 }]);
    expect(q.takeUsed()).toHaveLength(2);
    expect(fs.readFileSync(img).subarray(100 * 512, 102 * 512)).toEqual(Buffer.from(data));
    const c = q.post([{ data: blkHeader(VIRTIO_BLK_T_IN, 100) }, { writable: 1024 }, { writable: 1 }]);
    expect(d.ram.copy(c.addrs[1]!, 1024)).toEqual(data);
    const seg = new Uint8Array(16);
    new DataView(seg.buffer).setUint32(0, 100, true);
    new DataView(seg.buffer).setUint32(8, 1, true);
    const dc = q.post([{ data: blkHeader(VIRTIO_BLK_T_DISCARD, 0) }, { data: seg }, { writable: 1 }]);
    expect(d.ram.u8(dc.addrs[2]!)).toBe(0);
    const f = fs.readFileSync(img);
    expect(f.subarray(100 * 512, 101 * 512).every((b) => b === 0)).toBe(true);
    expect(f.subarray(101 * 512, 102 * 512)).toEqual(Buffer.from(data.subarray(512)));
  });

  it("presents a read-only image as VIRTIO_BLK_F_RO", () => {
    const d = new TestDriver(new VirtioBlk(open(img, true)));
    expect((d.offered()[0] >>> VIRTIO_BLK_F_RO) & 1).toBe(1);
  });
});
