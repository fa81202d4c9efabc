// What a qcow2 image can say reads as zero from its tables alone, so block migration need not
// read it: unallocated clusters with nothing below, zero clusters, and ranges where the backing
// image says the same; never a cluster with data, nor a range over a raw backing file (which
// cannot tell without reading). Each answer is checked against what reading the range gives.
import { describe, test, expect } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { memoryPlatform } from "../../host/platform/memory";
import { compileCore } from "../../host/core/core";
import { packageRoot } from "../../host/platform/node/core";
import { SwappableDisk } from "../../host/disk/swappable";
import { MemoryDisk } from "../../host/platform/memory/disk";
import type { DiskBackend } from "../../host/devices/backends";
import { randomBytes } from "./helpers";

const core = compileCore(new Uint8Array(readFileSync(join(packageRoot(), "build/core.wasm"))));
const MiB = 1 << 20;
const K64 = 65536;

/** knownZero, and when it says yes, the bytes really are zero. */
function known(disk: DiskBackend, offset: number, length: number): boolean {
  const yes = disk.knownZero!(offset, length);
  if (yes) {
    const got = new Uint8Array(length);
    disk.read(offset, got);
    expect(got.every((b) => b === 0), `knownZero(${offset}, ${length}) but data is there`).toBe(true);
  }
  return yes;
}

describe("Qcow2Disk.knownZero", () => {
  test("without a backing file: unallocated and discarded clusters yes, written ones no, at any alignment", () => {
    const p = memoryPlatform({ core });
    p.createDiskImage("/a.qcow2", { size: 4 * MiB, clusterSize: 4096, what: "test" });
    const d = p.openDisk("/a.qcow2", { format: "qcow2", readOnly: false, what: "test" });
    expect(known(d, 0, 4 * MiB)).toBe(true);
    d.write(K64 + 4096 + 512, randomBytes(512, 1)); // inside the second cluster of block 1
    expect(known(d, K64, K64)).toBe(false);
    expect(known(d, K64, 4096)).toBe(true); // the cluster before it
    expect(known(d, K64 + 4096 * 2, K64 - 4096 * 2)).toBe(true); // the ones after
    expect(known(d, K64 + 4096 + 1024, 512)).toBe(false); // the same cluster, though these bytes are zero: not known without reading
    // Written with zeros: allocated, so not known (block migration then reads it and finds zeros).
    d.write(2 * K64, new Uint8Array(K64));
    expect(known(d, 2 * K64, K64)).toBe(false);
    d.discard(K64, 2 * K64);
    expect(known(d, 0, 4 * MiB)).toBe(true);
    expect(known(d, 4 * MiB, 0)).toBe(true);
    expect(() => d.knownZero!(4 * MiB - 512, 1024)).toThrow(/beyond its/);
    d.close();
  });

  test("over a backing file: asks a qcow2 one, which knows; a raw one cannot tell; zero clusters hide what is below", () => {
    const p = memoryPlatform({ core, files: { "/base.raw": new Uint8Array(2 * MiB) } });
    p.createDiskImage("/base.qcow2", { size: 2 * MiB, what: "test" });
    const base = p.openDisk("/base.qcow2", { format: "qcow2", readOnly: false, what: "test" });
    base.write(3 * K64, randomBytes(K64, 2));
    base.close();
    p.createDiskImage("/top.qcow2", { backing: { path: "/base.qcow2", format: "qcow2" }, what: "test" });
    const top = p.openDisk("/top.qcow2", { format: "qcow2", readOnly: false, what: "test" });
    expect(known(top, 0, 3 * K64)).toBe(true);
    expect(known(top, 3 * K64, K64)).toBe(false); // data in the base
    expect(known(top, 4 * K64, 2 * MiB - 4 * K64)).toBe(true);
    top.write(5 * K64, randomBytes(512, 3));
    expect(known(top, 5 * K64, K64)).toBe(false);
    // A whole-cluster discard over a backing file makes a zero cluster: known, whatever is below.
    top.discard(3 * K64, K64);
    expect(known(top, 3 * K64, K64)).toBe(true);
    top.close();

    p.createDiskImage("/over-raw.qcow2", { backing: { path: "/base.raw", format: "raw" }, what: "test" });
    const overRaw = p.openDisk("/over-raw.qcow2", { format: "qcow2", readOnly: false, what: "test" });
    expect(overRaw.knownZero!(0, K64)).toBe(false);
    overRaw.close();
  });

  test("a SwappableDisk passes the question on; a backend that cannot answer is 'not known'", () => {
    const p = memoryPlatform({ core });
    p.createDiskImage("/a.qcow2", { size: MiB, what: "test" });
    const q = new SwappableDisk("/a.qcow2", () => p.openDisk("/a.qcow2", { format: "qcow2", readOnly: false, what: "test" }));
    expect(q.knownZero(0, MiB)).toBe(true);
    q.write(0, randomBytes(512, 4));
    expect(q.knownZero(0, MiB)).toBe(false);
    expect(q.knownZero(K64, MiB - K64)).toBe(true);
    q.close();
    const raw = new SwappableDisk("mem", () => new MemoryDisk(MiB));
    expect(raw.knownZero(0, MiB)).toBe(false);
    raw.close();
  });
});
