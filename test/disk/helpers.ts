// Shared by the disk tests: random guest I/O checked against a plain byte array, and QEMU's
// qemu-img (Debian's qemu-utils) as the judge of the images wasmvisor writes.
import { execFileSync, spawnSync } from "node:child_process";
import { expect } from "vitest";
import type { DiskBackend } from "../../host/devices/backends";
import { prng } from "../prng";

/** Seeded bytes. */
export function randomBytes(length: number, seed: number): Uint8Array {
  const next = prng(seed);
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i += 4) {
    const v = next();
    for (let k = 0; k < 4 && i + k < length; k++) out[i + k] = v >>> (8 * k);
  }
  return out;
}

export interface RandomIoOptions {
  ops: number;
  seed: number;
  /** Largest request in bytes (a multiple of 512). */
  maxBytes: number;
  /** Called now and then with the disk and the reference; returns the disk to go on with (e.g. reopened). */
  checkpoint?: (disk: DiskBackend, reference: Uint8Array) => DiskBackend;
}

/**
 * Random sector-aligned writes (some covering whole clusters, most not), discards, flushes and
 * reads on `disk`, every read compared with `reference`, which gets the same writes. Requests
 * cluster around a few hot spots so clusters are written more than once.
 */
export function randomIo(disk: DiskBackend, reference: Uint8Array, opts: RandomIoOptions): DiskBackend {
  const next = prng(opts.seed);
  const sectors = reference.length / 512;
  const hot = [0, Math.floor(sectors / 3), Math.floor(sectors / 2), sectors - 1];
  let stamp = opts.seed * 1000;
  for (let op = 0; op < opts.ops; op++) {
    const kind = next() % 100;
    const near = next() % 4 === 0 ? next() % sectors : hot[next() % hot.length] + (next() % 64) - 32;
    const start = Math.max(0, Math.min(sectors - 1, near));
    const count = Math.max(1, Math.min(sectors - start, 1 + (next() % (opts.maxBytes / 512))));
    const offset = start * 512;
    const length = count * 512;
    if (kind < 45) {
      const data = randomBytes(length, ++stamp);
      disk.write(offset, data);
      reference.set(data, offset);
    } else if (kind < 55) {
      disk.discard(offset, length);
      reference.fill(0, offset, offset + length);
    } else if (kind < 58) {
      disk.flush();
    } else if (kind < 60 && opts.checkpoint) {
      disk = opts.checkpoint(disk, reference);
    } else {
      const got = new Uint8Array(length);
      disk.read(offset, got);
      expectSame(got, reference.subarray(offset, offset + length), `read of ${length} bytes at ${offset} (op ${op})`);
    }
  }
  return disk;
}

/** Byte arrays equal; on a difference, says where (toEqual on megabytes prints too much). */
export function expectSame(got: Uint8Array, want: Uint8Array, what: string): void {
  expect(got.length, what).toBe(want.length);
  for (let i = 0; i < got.length; i++) {
    if (got[i] !== want[i]) expect.fail(`${what}: byte ${i} is ${got[i]}, expected ${want[i]}`);
  }
}

/** The whole disk, read in pieces. */
export function readAll(disk: DiskBackend): Uint8Array {
  const out = new Uint8Array(disk.size);
  for (let at = 0; at < disk.size; at += 1 << 20) disk.read(at, out.subarray(at, Math.min(disk.size, at + (1 << 20))));
  return out;
}

export function qemuImg(...args: string[]): string {
  return execFileSync("qemu-img", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** `qemu-img check`: no errors and no leaks (it exits 0 only then). */
export function expectCleanCheck(path: string): void {
  const r = spawnSync("qemu-img", ["check", "--output=json", path], { encoding: "utf8" });
  expect(r.stderr, `qemu-img check ${path}`).toBe("");
  const report = JSON.parse(r.stdout) as { "check-errors": number; corruptions?: number; leaks?: number };
  expect({ status: r.status, errors: report["check-errors"], corruptions: report.corruptions ?? 0, leaks: report.leaks ?? 0 }, `qemu-img check ${path}: ${r.stdout}`)
    .toEqual({ status: 0, errors: 0, corruptions: 0, leaks: 0 });
}

/** `qemu-img compare`: the two images read the same (formats given, so nothing is probed). */
export function expectIdentical(a: string, aFormat: string, b: string, bFormat: string): void {
  const r = spawnSync("qemu-img", ["compare", "-f", aFormat, "-F", bFormat, a, b], { encoding: "utf8" });
  expect(`${r.status} ${r.stdout.trim()} ${r.stderr.trim()}`.trim()).toBe("0 Images are identical.");
}

export interface ImageInfo {
  "virtual-size": number;
  format: string;
  "cluster-size"?: number;
  "backing-filename"?: string;
  "full-backing-filename"?: string;
  "backing-filename-format"?: string;
  "format-specific"?: { data: { compat: string; "refcount-bits": number; corrupt: boolean } };
}

export function imageInfo(path: string): ImageInfo {
  return JSON.parse(qemuImg("info", "--output=json", path)) as ImageInfo;
}
