// A running VM's disk moves onto a qcow2 overlay of its own image (what snapshots do), between
// two requests of a virtio-blk device that never notices: the old image is frozen, the overlay
// takes the writes and reads through to it.
import { describe, test, expect, afterEach } from "vitest";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { memoryPlatform } from "../../host/platform/memory";
import { nodePlatform } from "../../host/platform/node";
import { compileCore } from "../../host/core/core";
import { packageRoot } from "../../host/platform/node/core";
import { SwappableDisk, continueOnOverlay } from "../../host/disk/swappable";
import { buildMachine, loadBootImages, machineDisks } from "../../host/vm/build";
import { parseVmConfig, DEFINITION_PARSING } from "../../host/config/parse";
import { VirtioBlk, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT } from "../../host/virtio/blk";
import { TestDriver, blkHeader } from "../virtio/helpers";
import { expectCleanCheck, expectSame, imageInfo, randomBytes } from "./helpers";

const core = compileCore(new Uint8Array(readFileSync(join(packageRoot(), "build/core.wasm"))));
const MiB = 1 << 20;
let dir: string | null = null;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = null;
});

/** A virtio-blk driver over `disk`: write and read sectors as a guest does. */
function guest(disk: SwappableDisk) {
  const d = new TestDriver(new VirtioBlk(disk));
  expect(d.init()).toBe(true);
  const q = d.q(0);
  const status = (c: { addrs: number[] }) => d.ram.u8(c.addrs[c.addrs.length - 1]!);
  return {
    write(sector: number, data: Uint8Array) {
      const c = q.post([{ data: blkHeader(VIRTIO_BLK_T_OUT, sector) }, { data }, { writable: 1 }]);
      expect(q.takeUsed()).toHaveLength(1);
      expect(status(c)).toBe(0);
    },
    read(sector: number, bytes: number): Uint8Array {
      const c = q.post([{ data: blkHeader(VIRTIO_BLK_T_IN, sector) }, { writable: bytes }, { writable: 1 }]);
      expect(q.takeUsed()).toHaveLength(1);
      expect(status(c)).toBe(0);
      return d.ram.copy(c.addrs[1]!, bytes);
    },
    flush() {
      const c = q.post([{ data: blkHeader(VIRTIO_BLK_T_FLUSH, 0) }, { writable: 1 }]);
      expect(q.takeUsed()).toHaveLength(1);
      expect(status(c)).toBe(0);
    },
  };
}

describe("continueOnOverlay", () => {
  test("in memory: two snapshots in a row, each image frozen as it was, the device none the wiser", () => {
    const base = randomBytes(MiB, 1);
    const p = memoryPlatform({ core, files: { "/img/vm.raw": base.slice() } });
    const open = () => p.openDisk("/img/vm.raw", { readOnly: false, what: "--drive" });
    const disk = new SwappableDisk("/img/vm.raw", open);
    const g = guest(disk);
    g.write(8, randomBytes(4096, 2));
    const atFirst = p.file("/img/vm.raw")!.slice();

    expect(continueOnOverlay(p, disk, "/img/snap1.qcow2")).toEqual({ path: "/img/snap1.qcow2", format: "qcow2" });
    g.write(16, randomBytes(4096, 3));
    const reference = base.slice();
    reference.set(randomBytes(4096, 2), 8 * 512);
    reference.set(randomBytes(4096, 3), 16 * 512);
    expectSame(g.read(0, 64 * 512), reference.subarray(0, 64 * 512), "through the overlay");
    expectSame(p.file("/img/vm.raw")!, atFirst, "the frozen image");

    continueOnOverlay(p, disk, "/img/snap2.qcow2", { clusterSize: 4096 });
    const atSecond = p.file("/img/snap1.qcow2")!.slice();
    g.write(8, randomBytes(512, 4));
    g.flush();
    reference.set(randomBytes(512, 4), 8 * 512);
    expectSame(g.read(0, 64 * 512), reference.subarray(0, 64 * 512), "through two overlays");
    expectSame(p.file("/img/snap1.qcow2")!, atSecond, "the first overlay, frozen");
    expectSame(p.file("/img/vm.raw")!, atFirst, "the image below it");
    expect(disk.image).toEqual({ path: "/img/snap2.qcow2", format: "qcow2" });
    disk.close();
  });

  test("on Node: the overlay names the image it froze, and qemu-img finds it clean", () => {
    dir = mkdtempSync(join(tmpdir(), "wasmvisor-swap-"));
    const img = join(dir, "vm.raw");
    writeFileSync(img, randomBytes(2 * MiB, 5));
    const disk = new SwappableDisk(img, () => nodePlatform.openDisk(img, { format: "raw", readOnly: false, what: "--drive" }));
    const g = guest(disk);
    g.write(0, randomBytes(512, 6));
    const snap = join(dir, "vm-1.qcow2");
    continueOnOverlay(nodePlatform, disk, snap, { dirs: [dir] });
    const frozen = readFileSync(img);
    g.write(0, randomBytes(65536 + 512, 7));
    g.flush();
    expect(imageInfo(snap)).toMatchObject({ "virtual-size": 2 * MiB, "backing-filename": img, "backing-filename-format": "raw" });
    expectCleanCheck(snap);
    expect(readFileSync(img).equals(frozen)).toBe(true);
    disk.close();
  });
});

describe("SwappableDisk.swap", () => {
  test("a swap that fails leaves the disk on its image, working", () => {
    const p = memoryPlatform({ core, files: { "/a.raw": randomBytes(MiB, 8), "/small.raw": new Uint8Array(4096) } });
    const disk = new SwappableDisk("/a.raw", () => p.openDisk("/a.raw", { readOnly: false, what: "--drive" }));
    expect(() => disk.swap("/missing.qcow2", () => p.openDisk("/missing.qcow2", { readOnly: false, what: "--drive" }))).toThrow(/^--drive \/missing\.qcow2: no such file$/);
    expect(() => disk.swap("/small.raw", () => p.openDisk("/small.raw", { readOnly: false, what: "--drive" })))
      .toThrow(/^disk image \/small\.raw: is 4096 bytes; the disk it replaces is 1048576 bytes$/);
    disk.write(0, new Uint8Array(512).fill(9));
    expect(p.file("/a.raw")![0]).toBe(9);
    expect(disk.image).toEqual({ path: "/a.raw", format: "raw" });
    disk.close();
  });

  test("the builder attaches every disk as one, in the order of the drives", async () => {
    const p = memoryPlatform({ core, files: { "/k": new Uint8Array(4096), "/a.raw": new Uint8Array(MiB), "/b.raw": new Uint8Array(2 * MiB) } });
    const config = parseVmConfig({ name: "x", bios: "none", kernel: "/k", memory: "16M", drives: ["file=/a.raw,if=virtio", "file=/b.raw,if=ide,format=raw"] }, { ...DEFINITION_PARSING, defaultMode: "full" });
    expect(config.drives.map((d) => d.format)).toEqual([undefined, "raw"]);
    const machine = await buildMachine(config, loadBootImages(config, p), p, { output: () => {}, input: () => -1, wake: () => {} });
    const disks = machineDisks(machine);
    expect(disks.map((d) => [d.image.path, d.size])).toEqual([["/a.raw", MiB], ["/b.raw", 2 * MiB]]);
    continueOnOverlay(p, disks[1], "/b-1.qcow2");
    expect(machine.ata[0].backend === disks[1]).toBe(true); // the ATA disk still holds the same backend
    machine.close();
  });
});
