// qcow2 images through the platform seam, on the in-memory platform (what a browser gets):
// random reads, writes and discards against a plain byte array, with and without backing
// files, across closes and reopens; then QEMU's qemu-img judges the bytes.
import { describe, test, expect, beforeAll, afterAll } from "vitest";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { memoryPlatform, type MemoryPlatform } from "../../host/platform/memory";
import { compileCore } from "../../host/core/core";
import { packageRoot } from "../../host/platform/node/core";
import type { DiskBackend } from "../../host/devices/backends";
import { MemoryFile } from "../../host/platform/memory/file";
import { Qcow2Disk } from "../../host/disk/qcow2";
import { RawDisk } from "../../host/disk/raw";
import { writeNewQcow2 } from "../../host/disk/qcow2-format";
import { expectCleanCheck, expectIdentical, expectSame, randomBytes, randomIo, readAll } from "./helpers";

let core: WebAssembly.Module;
let dir: string;

beforeAll(() => {
  core = compileCore(new Uint8Array(readFileSync(join(packageRoot(), "build/core.wasm"))));
  dir = mkdtempSync(join(tmpdir(), "wasmvisor-qcow2-"));
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const MiB = 1 << 20;

function platform(files: Record<string, Uint8Array> = {}): MemoryPlatform {
  return memoryPlatform({ core, files });
}

/**
 * Hand the in-memory image to qemu-img: check it, and compare it with the reference. The
 * platform's files are copied under a directory of their own, so relative backing names work.
 */
function judge(p: MemoryPlatform, path: string, reference: Uint8Array, name: string, files: string[] = []): void {
  const root = join(dir, name);
  for (const f of [path, ...files]) {
    mkdirSync(dirname(join(root, f)), { recursive: true });
    writeFileSync(join(root, f), p.file(f)!);
  }
  const image = join(root, path);
  const raw = join(root, "reference.raw");
  writeFileSync(raw, reference);
  expectCleanCheck(image);
  expectIdentical(image, "qcow2", raw, "raw");
}

describe("random I/O against a reference, closed and reopened along the way", () => {
  const cases: { clusterSize: number; backing: "none" | "raw" | "qcow2" }[] = [];
  for (const clusterSize of [512, 4096, 65536]) for (const backing of ["none", "raw", "qcow2"] as const) cases.push({ clusterSize, backing });

  test.each(cases)("$clusterSize-byte clusters, backing file: $backing", ({ clusterSize, backing }) => {
    const size = 4 * MiB;
    const base = randomBytes(size, clusterSize);
    const p = platform({ "/img/base.raw": base.slice() });
    if (backing === "qcow2") {
      // A qcow2 base holding the same bytes (itself written through wasmvisor).
      p.createDiskImage("/img/base.qcow2", { size, clusterSize: 65536, what: "test" });
      const b = p.openDisk("/img/base.qcow2", { format: "qcow2", readOnly: false, what: "test" });
      b.write(0, base);
      b.close();
    }
    p.createDiskImage("/img/disk.qcow2", {
      size, clusterSize, what: "test",
      ...(backing === "none" ? {} : { backing: { path: `base.${backing}`, format: backing } }),
    });
    const reference = backing === "none" ? new Uint8Array(size) : base.slice();
    const open = () => p.openDisk("/img/disk.qcow2", { readOnly: false, what: "test" });
    let disk: DiskBackend = open();
    expect(disk.format).toBe("qcow2");
    disk = randomIo(disk, reference, {
      ops: 1500, seed: clusterSize + backing.length, maxBytes: 3 * clusterSize + 1024,
      checkpoint: (current, ref) => {
        current.close();
        const again = open();
        expectSame(readAll(again), ref, "the whole disk after reopening");
        return again;
      },
    });
    disk.close();
    expectSame(p.file("/img/base.raw")!, base, "the backing file"); // only read
    judge(p, "/img/disk.qcow2", reference, `random-${clusterSize}-${backing}`, backing === "none" ? [] : [`/img/base.${backing}`]);
  }, 120_000);
});

describe("allocation", () => {
  test("freed clusters are used again: rewriting and discarding the whole disk keeps the file near its virtual size", () => {
    const size = 2 * MiB;
    const p = platform();
    p.createDiskImage("/d.qcow2", { size, clusterSize: 4096, what: "test" });
    const disk = p.openDisk("/d.qcow2", { readOnly: false, what: "test" });
    const sizes: number[] = [];
    for (let round = 0; round < 6; round++) {
      // No flush between the discard and the rewrite: the freed clusters wait for the tables to sync.
      disk.write(0, randomBytes(size, round));
      disk.discard(0, size);
      sizes.push(p.file("/d.qcow2")!.length);
    }
    disk.write(0, randomBytes(size, 99));
    disk.close();
    const metadata = 64 * 4096;
    expect(Math.max(...sizes)).toBeLessThanOrEqual(size + metadata);
    expect(p.file("/d.qcow2")!.length).toBeLessThanOrEqual(size + metadata);
    judge(p, "/d.qcow2", randomBytes(size, 99), "reuse");
  });

  test("a discard reads as zeros even over a backing file, and the clusters it frees are counted free", () => {
    const base = randomBytes(MiB, 5);
    const p = platform({ "/base.raw": base.slice() });
    p.createDiskImage("/o.qcow2", { backing: { path: "base.raw", format: "raw" }, what: "test" });
    const disk = p.openDisk("/o.qcow2", { readOnly: false, what: "test" });
    expect(disk.size).toBe(MiB);
    disk.write(65536, randomBytes(131072, 6));
    disk.discard(0, 4 * 65536 + 512); // whole clusters (written and not) and a sector of the next
    const got = new Uint8Array(5 * 65536);
    disk.read(0, got);
    expect(got.subarray(0, 4 * 65536 + 512).every((b) => b === 0)).toBe(true);
    expectSame(got.subarray(4 * 65536 + 512), base.subarray(4 * 65536 + 512, 5 * 65536), "past the discard");
    disk.close();
    const reference = base.slice();
    reference.fill(0, 0, 4 * 65536 + 512);
    judge(p, "/o.qcow2", reference, "discard-over-backing", ["/base.raw"]);
  });

  test("writes of the same bytes land in place once a cluster is allocated", () => {
    const p = platform();
    p.createDiskImage("/d.qcow2", { size: MiB, what: "test" });
    const disk = p.openDisk("/d.qcow2", { readOnly: false, what: "test" });
    disk.write(0, randomBytes(4096, 1));
    disk.flush();
    const length = p.file("/d.qcow2")!.length;
    for (let i = 0; i < 16; i++) disk.write(i * 4096, randomBytes(4096, i + 2));
    disk.flush();
    expect(p.file("/d.qcow2")!.length).toBe(length);
    disk.close();
  });
});

describe("the platform seam", () => {
  test("format is probed when not given: qcow2 by its magic, raw otherwise; format=raw reads a qcow2 file as bytes", () => {
    const p = platform({ "/raw.img": randomBytes(MiB, 3) });
    p.createDiskImage("/q.img", { size: MiB, what: "test" });
    expect(p.openDisk("/raw.img", { readOnly: true, what: "test" }).format).toBe("raw");
    expect(p.openDisk("/q.img", { readOnly: true, what: "test" }).format).toBe("qcow2");
    const asRaw = p.openDisk("/q.img", { readOnly: true, format: "raw", what: "test" });
    const head = new Uint8Array(4);
    asRaw.read(0, head);
    expect(head).toEqual(Uint8Array.of(0x51, 0x46, 0x49, 0xfb));
    expect(() => p.openDisk("/raw.img", { readOnly: true, format: "qcow2", what: "--drive" })).toThrow(/^--drive \/raw\.img: not a qcow2 image/);
  });

  test("a probed raw image refuses a guest write that would make it look like qcow2; format=raw allows it", () => {
    const p = platform({ "/raw.img": new Uint8Array(MiB) });
    const header = new Uint8Array(512);
    header.set([0x51, 0x46, 0x49, 0xfb]);
    const probed = p.openDisk("/raw.img", { readOnly: false, what: "test" });
    expect(() => probed.write(0, header)).toThrow(/refused a write of a qcow2 header to the first sector of an image whose format was probed as raw/);
    probed.write(512, header); // elsewhere is fine
    probed.close();
    const named = p.openDisk("/raw.img", { readOnly: false, format: "raw", what: "test" });
    named.write(0, header);
    named.close();
    expect(p.file("/raw.img")!.subarray(0, 4)).toEqual(header.subarray(0, 4));
  });

  test("backing files are found relative to the image's directory and must be in the allowed directories", () => {
    const p = platform({ "/images/base.raw": randomBytes(MiB, 4), "/secret/key": new Uint8Array(MiB) });
    p.createDiskImage("/images/a.qcow2", { backing: { path: "base.raw", format: "raw" }, what: "test" });
    const a = p.openDisk("/images/a.qcow2", { readOnly: true, dirs: ["/images"], what: "'drives'" });
    const got = new Uint8Array(512);
    a.read(512, got);
    expect(got).toEqual(randomBytes(MiB, 4).subarray(512, 1024));
    a.close();
    p.createDiskImage("/images/b.qcow2", { size: MiB, backing: { path: "/secret/key", format: "raw" }, what: "test" });
    expect(() => p.openDisk("/images/b.qcow2", { readOnly: false, dirs: ["/images"], what: "'drives'" }))
      .toThrow(/^'drives' \/images\/b\.qcow2: backing file \/secret\/key: not in an image directory of this host/);
    p.createDiskImage("/images/c.qcow2", { size: MiB, backing: { path: "../secret/key", format: "raw" }, what: "test" });
    expect(() => p.openDisk("/images/c.qcow2", { readOnly: false, dirs: ["/images"], what: "'drives'" })).toThrow(/not in an image directory/);
  });

  test("a new image needs a new file, inside the allowed directories", () => {
    const p = platform({ "/images/x.qcow2": new Uint8Array(0) });
    expect(() => p.createDiskImage("/images/x.qcow2", { size: MiB, what: "overlay" })).toThrow(/^overlay \/images\/x\.qcow2: already exists/);
    expect(() => p.createDiskImage("/tmp/y.qcow2", { size: MiB, dirs: ["/images"], what: "overlay" })).toThrow(/not in an image directory/);
    expect(() => p.createDiskImage("/images/z.qcow2", { size: 1000, what: "overlay" })).toThrow(/^overlay \/images\/z\.qcow2: qcow2 virtual size 1000 must be a positive multiple of 512/);
    expect(p.file("/images/z.qcow2")).toBeUndefined(); // removed after the failure
  });

  test("an overlay made without sync is durable whole at its first flush, and not before", () => {
    // A file that keeps what a crash would: its bytes as of its last flush.
    class DurableFile extends MemoryFile {
      durable = new Uint8Array(0);
      override flush(): void {
        super.flush();
        this.durable = this.bytes.slice();
      }
    }
    const base = randomBytes(MiB, 7);
    const backing = () => new RawDisk(new MemoryFile("base.raw", base, true), { backing: true });
    const made = (sync?: boolean) => {
      const f = new DurableFile("o.qcow2", new Uint8Array(0), false);
      writeNewQcow2(f, { size: MiB, backing: { name: "base.raw", format: "raw" }, ...(sync === undefined ? {} : { sync }) });
      return f;
    };
    expect(made().durable).toEqual(made().bytes); // by default, durable at once
    const f = made(false);
    expect(f.durable.length).toBe(0);
    const disk = new Qcow2Disk(f, { openBacking: backing });
    const data = randomBytes(65536, 8);
    disk.write(3 * 65536, data);
    disk.flush();
    // What a crash after the flush leaves: the overlay whole, with the write, over its backing file.
    const after = new Qcow2Disk(new MemoryFile("o.qcow2", f.durable.slice(), true), { openBacking: backing });
    const got = new Uint8Array(5 * 65536);
    after.read(0, got);
    expectSame(got.subarray(3 * 65536, 4 * 65536), data, "the write");
    expectSame(got.subarray(0, 3 * 65536), base.subarray(0, 3 * 65536), "the backing file below");
    disk.close();
  });
});
