// qcow2 images between wasmvisor and QEMU, on Node's platform: images qemu-img makes (cluster
// sizes, refcount widths, version 2, compressed clusters, backing files of both formats) are
// written and read by wasmvisor and then `qemu-img check` is clean and `qemu-img compare`
// finds them equal to a raw reference given the same writes; images wasmvisor makes are what
// `qemu-img info` expects. Needs qemu-img (Debian's qemu-utils, installed by build.js --deps).
import { describe, test, expect, beforeEach, afterEach } from "vitest";
import { closeSync, copyFileSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createNodeDiskImage, openNodeDisk } from "../../host/platform/node/disk";
import type { DiskBackend } from "../../host/devices/backends";
import type { DiskFormat } from "../../host/disk/formats";
import { expectCleanCheck, expectIdentical, expectSame, imageInfo, qemuImg, randomBytes, randomIo, readAll } from "./helpers";

const MiB = 1 << 20;
let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "wasmvisor-qcow2-qemu-"));
});

afterEach(() => rmSync(dir, { recursive: true, force: true }));

const at = (name: string) => join(dir, name);
const open = (path: string, opts: { readOnly?: boolean; format?: DiskFormat; dirs?: string[] } = {}): DiskBackend =>
  openNodeDisk(path, { readOnly: opts.readOnly ?? false, format: opts.format, dirs: opts.dirs, what: "--drive" });

/** Random I/O on the image at `path` (reopened twice on the way), then qemu-img's verdict against the reference. */
function exercise(path: string, reference: Uint8Array, seed: number, clusterSize: number, ops = 1200): void {
  let disk = open(path);
  disk = randomIo(disk, reference, {
    ops, seed, maxBytes: Math.min(3 * clusterSize + 1024, 256 * 1024),
    checkpoint: (current) => {
      current.close();
      return open(path);
    },
  });
  disk.close();
  expectCleanCheck(path);
  writeFileSync(at("reference.raw"), reference);
  expectIdentical(path, "qcow2", at("reference.raw"), "raw");
}

describe("images made by qemu-img, written by wasmvisor", () => {
  test.each([512, 4096, 65536, 2 * MiB])("cluster size %i", (clusterSize) => {
    qemuImg("create", "-q", "-f", "qcow2", "-o", `cluster_size=${clusterSize}`, at("d.qcow2"), "8M");
    exercise(at("d.qcow2"), new Uint8Array(8 * MiB), clusterSize, clusterSize);
  }, 120_000);

  test.each([1, 8, 64])("%i-bit refcounts", (bits) => {
    qemuImg("create", "-q", "-f", "qcow2", "-o", `cluster_size=4096,refcount_bits=${bits}`, at("d.qcow2"), "4M");
    exercise(at("d.qcow2"), new Uint8Array(4 * MiB), bits, 4096);
  }, 120_000);

  test.each(["metadata", "full"])("preallocation=%s: clusters allocated before the guest writes them", (mode) => {
    qemuImg("create", "-q", "-f", "qcow2", "-o", `preallocation=${mode},cluster_size=4096`, at("pre.qcow2"), "4M");
    exercise(at("pre.qcow2"), new Uint8Array(4 * MiB), 24, 4096);
  }, 120_000);

  test("lazy refcounts allowed (lazy_refcounts=on): wasmvisor keeps them exact anyway, never leaving the image dirty", () => {
    qemuImg("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", at("lazy.qcow2"), "4M");
    exercise(at("lazy.qcow2"), new Uint8Array(4 * MiB), 21, 65536);
    expect(readFileSync(at("lazy.qcow2"))[79] & 1).toBe(0); // the dirty bit
  }, 120_000);

  test("version 2 (compat=0.10): no zero clusters, so discards over a backing file write zeros", () => {
    const base = randomBytes(4 * MiB, 2);
    writeFileSync(at("base.raw"), base);
    qemuImg("create", "-q", "-f", "qcow2", "-o", "compat=0.10,cluster_size=4096", "-b", "base.raw", "-F", "raw", at("v2.qcow2"));
    exercise(at("v2.qcow2"), base.slice(), 22, 4096);
    qemuImg("create", "-q", "-f", "qcow2", "-o", "compat=0.10", at("v2-alone.qcow2"), "4M");
    exercise(at("v2-alone.qcow2"), new Uint8Array(4 * MiB), 23, 65536);
    expect(imageInfo(at("v2.qcow2"))["format-specific"]?.data.compat).toBe("0.10");
  }, 120_000);

  test("the refcount table grows when the file outgrows it (512-byte clusters, 64-bit refcounts)", () => {
    // One 512-byte refcount table cluster covers 64 blocks of 64 clusters: 2 MiB of file.
    qemuImg("create", "-q", "-f", "qcow2", "-o", "cluster_size=512,refcount_bits=64", at("g.qcow2"), "6M");
    const tableAt = () => new DataView(readFileSync(at("g.qcow2")).buffer).getBigUint64(48);
    const before = tableAt();
    const data = randomBytes(6 * MiB, 31);
    const disk = open(at("g.qcow2"));
    disk.write(0, data);
    disk.close();
    expect(tableAt()).not.toBe(before);
    expectCleanCheck(at("g.qcow2"));
    writeFileSync(at("reference.raw"), data);
    expectIdentical(at("g.qcow2"), "qcow2", at("reference.raw"), "raw");
  }, 120_000);

  test("compressed clusters (qemu-img convert -c) read, and rewritten cluster by cluster without leaks", () => {
    // Compressible but not uniform: text-like bytes.
    const source = randomBytes(4 * MiB, 9).map((b) => 0x41 + (b & 3));
    writeFileSync(at("src.raw"), source);
    qemuImg("convert", "-q", "-c", "-O", "qcow2", "-f", "raw", at("src.raw"), at("c.qcow2"));
    expect(readFileSync(at("c.qcow2")).length).toBeLessThan(2 * MiB); // compressed indeed
    const ro = open(at("c.qcow2"), { readOnly: true });
    expectSame(readAll(ro), source, "the compressed image");
    ro.close();
    exercise(at("c.qcow2"), source.slice(), 10, 65536);
  }, 120_000);
});

describe("backing files", () => {
  test.each(["raw", "qcow2"] as const)("a qemu-img overlay (-b, -F %s) on a base of random bytes", (format) => {
    const base = randomBytes(4 * MiB, 3);
    writeFileSync(at("base.raw"), base);
    if (format === "qcow2") qemuImg("convert", "-q", "-O", "qcow2", "-f", "raw", at("base.raw"), at("base.qcow2"));
    const baseBytes = readFileSync(at(`base.${format}`));
    qemuImg("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", "-b", `base.${format}`, "-F", format, at("over.qcow2"));
    exercise(at("over.qcow2"), base.slice(), 4, 4096);
    expect(readFileSync(at(`base.${format}`)).equals(baseBytes)).toBe(true);
  }, 120_000);

  test("a chain of three: raw ← compressed qcow2 ← qcow2 ← the overlay written, the backing smaller than the overlay", () => {
    const base = randomBytes(2 * MiB, 5).map((b) => b & 0x0f);
    writeFileSync(at("base.raw"), base);
    qemuImg("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", at("mid.qcow2"));
    // The middle layer gets some data of its own, compressed.
    const midData = randomBytes(256 * 1024, 6).map((b) => b & 0x07);
    const mid = open(at("mid.qcow2"));
    mid.write(MiB, midData);
    mid.close();
    qemuImg("convert", "-q", "-c", "-O", "qcow2", "-B", "base.raw", "-F", "raw", at("mid.qcow2"), at("midc.qcow2"));
    qemuImg("create", "-q", "-f", "qcow2", "-b", "midc.qcow2", "-F", "qcow2", at("top.qcow2"), "3M");
    const reference = new Uint8Array(3 * MiB);
    reference.set(base);
    reference.set(midData, MiB);
    const ro = open(at("top.qcow2"), { readOnly: true });
    expectSame(readAll(ro), reference, "the chain read through");
    ro.close();
    exercise(at("top.qcow2"), reference, 7, 65536);
  }, 120_000);

  test("a backing file attached for writing elsewhere is refused, as the base of a VM would be", () => {
    writeFileSync(at("base.raw"), new Uint8Array(MiB));
    qemuImg("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", at("over.qcow2"));
    const writer = open(at("base.raw"));
    try {
      expect(() => open(at("over.qcow2"))).toThrow(/^--drive .*over\.qcow2: backing file .*base\.raw: in use: another drive or VM of this process has it open for writing/);
    } finally {
      writer.close();
    }
    const reader = open(at("base.raw"), { readOnly: true });
    open(at("over.qcow2")).close(); // readers share
    reader.close();
  });

  test("backing files outside the allowed directories are refused, by name, by relative path and through a symbolic link", () => {
    const images = at("images");
    mkdirSync(images);
    writeFileSync(at("secret.raw"), randomBytes(MiB, 8));
    const overlay = (name: string, backing: string) => {
      qemuImg("create", "-q", "-f", "qcow2", "-u", "-b", backing, "-F", "raw", join(images, name), "1M");
      return join(images, name);
    };
    const refused = /^'drives' .*: backing file .*: not in an image directory of this host/;
    const openIn = (p: string) => openNodeDisk(p, { readOnly: false, dirs: [images], what: "'drives'" });
    expect(() => openIn(overlay("abs.qcow2", at("secret.raw")))).toThrow(refused);
    expect(() => openIn(overlay("rel.qcow2", "../secret.raw"))).toThrow(refused);
    expect(() => openIn(overlay("shadow.qcow2", "/etc/shadow"))).toThrow(refused);
    symlinkSync(at("secret.raw"), join(images, "link.raw"));
    expect(() => openIn(overlay("link.qcow2", "link.raw"))).toThrow(refused);
    // Inside is fine.
    copyFileSync(at("secret.raw"), join(images, "ok.raw"));
    openIn(overlay("ok.qcow2", "ok.raw")).close();
  });
});

describe("images wasmvisor creates", () => {
  test("an empty image: qemu-img info sees its size and format, check is clean, and QEMU reads what wasmvisor wrote", () => {
    createNodeDiskImage(at("new.qcow2"), { size: 10 * MiB, what: "test" });
    const info = imageInfo(at("new.qcow2"));
    expect(info).toMatchObject({ "virtual-size": 10 * MiB, format: "qcow2", "cluster-size": 65536 });
    expect(info["format-specific"]?.data).toMatchObject({ compat: "1.1", "refcount-bits": 16, corrupt: false });
    expect(info["backing-filename"]).toBeUndefined();
    expectCleanCheck(at("new.qcow2"));
    exercise(at("new.qcow2"), new Uint8Array(10 * MiB), 11, 65536, 600);
  });

  test.each([512, 2 * MiB])("%i-byte clusters, a size needing several refcount blocks for its own metadata", (clusterSize) => {
    // 512-byte clusters: 1 GiB needs 2 MiB of L1 table, 4096 clusters, more than one refcount block covers.
    createNodeDiskImage(at("big.qcow2"), { size: 1024 * MiB, clusterSize, what: "test" });
    expect(imageInfo(at("big.qcow2"))).toMatchObject({ "virtual-size": 1024 * MiB, "cluster-size": clusterSize });
    expectCleanCheck(at("big.qcow2"));
    const disk = open(at("big.qcow2"));
    const data = randomBytes(64 * 1024, 12);
    disk.write(1000 * MiB, data);
    disk.close();
    expectCleanCheck(at("big.qcow2"));
    // A sparse raw reference with the same bytes.
    writeFileSync(at("reference.raw"), "");
    truncateSync(at("reference.raw"), 1024 * MiB);
    const fd = openSync(at("reference.raw"), "r+");
    writeSync(fd, data, 0, data.length, 1000 * MiB);
    closeSync(fd);
    expectIdentical(at("big.qcow2"), "qcow2", at("reference.raw"), "raw");
  }, 120_000);

  test.each([
    ["a relative name, found next to the overlay", "base.raw", "raw"],
    ["an absolute name", "", "raw"],
    ["a qcow2 backing file", "base.qcow2", "qcow2"],
  ] as const)("an overlay with %s", (_what, name, format) => {
    const base = randomBytes(2 * MiB, 13);
    writeFileSync(at("base.raw"), base);
    if (format === "qcow2") qemuImg("convert", "-q", "-O", "qcow2", "-f", "raw", at("base.raw"), at("base.qcow2"));
    const stored = name || at("base.raw");
    createNodeDiskImage(at("over.qcow2"), { backing: { path: stored, format }, what: "test" });
    const info = imageInfo(at("over.qcow2"));
    expect(info).toMatchObject({
      "virtual-size": 2 * MiB, format: "qcow2", "backing-filename": stored,
      "full-backing-filename": name ? at(name) : stored, "backing-filename-format": format,
    });
    expectCleanCheck(at("over.qcow2"));
    exercise(at("over.qcow2"), base.slice(), 14, 65536, 600);
  });

  test("creating never replaces a file, and a size comes from the backing file when not given", () => {
    writeFileSync(at("taken.qcow2"), "x");
    expect(() => createNodeDiskImage(at("taken.qcow2"), { size: MiB, what: "overlay" })).toThrow(/^overlay .*taken\.qcow2: already exists/);
    symlinkSync(at("elsewhere.img"), at("link.qcow2"));
    expect(() => createNodeDiskImage(at("link.qcow2"), { size: MiB, what: "overlay" })).toThrow(/already exists/);
    expect(() => createNodeDiskImage(at("over.qcow2"), { backing: { path: "missing.raw", format: "raw" }, what: "overlay" }))
      .toThrow(/^overlay .*over\.qcow2: backing file .*missing\.raw: no such file/);
    const images = at("images");
    mkdirSync(images);
    expect(() => createNodeDiskImage(at("outside.qcow2"), { size: MiB, dirs: [images], what: "overlay" })).toThrow(/not in an image directory/);
    expect(() => readFileSync(at("outside.qcow2"))).toThrow(/ENOENT/);
  });
});

describe("read-only", () => {
  test("opened read-only, an image is never written: not for reads, not on close, not even a dirty or auto-clear bit", () => {
    qemuImg("create", "-q", "-f", "qcow2", at("ro.qcow2"), "4M");
    const disk = open(at("ro.qcow2"));
    disk.write(0, randomBytes(MiB, 15));
    disk.close();
    // Mark it dirty and give it an auto-clear bit: a writer would refuse or clear them.
    const bytes = readFileSync(at("ro.qcow2"));
    bytes[79] |= 1; // incompatible_features bit 0 (dirty)
    bytes[95] |= 1; // autoclear_features bit 0
    writeFileSync(at("ro.qcow2"), bytes);
    expect(() => open(at("ro.qcow2"))).toThrow(/was not closed cleanly \(dirty bit: its refcounts may be wrong\); repair it with qemu-img check -r all, or attach it with readonly=on/);
    const ro = open(at("ro.qcow2"), { readOnly: true });
    expect(ro.readOnly).toBe(true);
    expectSame(readAll(ro).subarray(0, MiB), randomBytes(MiB, 15), "the data");
    expect(() => ro.write(0, new Uint8Array(512))).toThrow(/read-only/);
    expect(() => ro.discard(0, 512)).toThrow(/read-only/);
    ro.flush();
    ro.close();
    expect(readFileSync(at("ro.qcow2")).equals(bytes)).toBe(true);
  });

  test("an image with persistent dirty bitmaps is read, but not written (its bitmaps would go stale)", () => {
    qemuImg("create", "-q", "-f", "qcow2", at("b.qcow2"), "1M");
    qemuImg("bitmap", "--add", at("b.qcow2"), "backup");
    const bytes = readFileSync(at("b.qcow2"));
    expect(() => open(at("b.qcow2"))).toThrow(/has persistent dirty bitmaps, which wasmvisor does not keep up to date: remove them \(qemu-img bitmap --remove\) or attach the image with readonly=on/);
    open(at("b.qcow2"), { readOnly: true }).close();
    expect(readFileSync(at("b.qcow2")).equals(bytes)).toBe(true);
    expectCleanCheck(at("b.qcow2"));
    // Any other auto-clear bit wasmvisor does not know is cleared before it writes, as the format asks.
    writeFileSync(at("b2.qcow2"), bytes);
    qemuImg("bitmap", "--remove", at("b2.qcow2"), "backup");
    const unknownBit = readFileSync(at("b2.qcow2"));
    unknownBit[95] |= 4;
    writeFileSync(at("b2.qcow2"), unknownBit);
    const disk = open(at("b2.qcow2"));
    disk.write(0, new Uint8Array(512).fill(1));
    disk.close();
    expect(readFileSync(at("b2.qcow2"))[95]).toBe(0);
    expectCleanCheck(at("b2.qcow2"));
  });

  test("an image with internal snapshots is read, but not written", () => {
    qemuImg("create", "-q", "-f", "qcow2", at("s.qcow2"), "1M");
    const disk = open(at("s.qcow2"));
    disk.write(0, randomBytes(4096, 16));
    disk.close();
    qemuImg("snapshot", "-c", "one", at("s.qcow2"));
    expect(() => open(at("s.qcow2"))).toThrow(/has 1 internal snapshot\(s\), and wasmvisor writes only images without: attach it with readonly=on, or delete them with qemu-img snapshot -d/);
    const ro = open(at("s.qcow2"), { readOnly: true });
    const got = new Uint8Array(4096);
    ro.read(0, got);
    expect(got).toEqual(randomBytes(4096, 16));
    ro.close();
  });
});
