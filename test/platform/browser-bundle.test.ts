// The embedding API (host/index.ts) bundles for browsers without any Node module, and that
// bundle boots guests on the in-memory platform: files handed over as bytes, the pCPU on the
// calling thread. What a web page gets, run here without a browser.
import { describe, test, expect, beforeAll } from "vitest";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import * as esbuild from "esbuild";
import { buildBaremetal } from "../../guests/baremetal/build.mjs";
import { packageRoot } from "../../host/platform/node/core";
import { asm } from "../../host/util/riscv-asm";
import type * as Embedding from "../../host/index";

const root = packageRoot();
let api: typeof Embedding;
let bundle: string;
let programs: Record<string, string>;

beforeAll(async () => {
  const out = await esbuild.build({
    entryPoints: [join(root, "host/index.ts")],
    bundle: true, platform: "browser", format: "esm", write: false, logLevel: "silent",
  });
  bundle = out.outputFiles[0].text;
  const file = join(mkdtempSync(join(tmpdir(), "wasmvisor-bundle-")), "wasmvisor.mjs");
  writeFileSync(file, bundle);
  api = await import(pathToFileURL(file).href);
  ({ programs } = await buildBaremetal());
}, 300_000);

const core = () => new Uint8Array(readFileSync(join(root, "build/core.wasm")));

/** Boot `kernel` (with --bios none) to its end on a host of the bundle; its exit code and console. */
async function run(kernel: Uint8Array, files: Record<string, Uint8Array> = {}): Promise<{ exitCode?: number; state: string; output: string }> {
  const host = await api.createHost(api.memoryPlatform({ core: core(), files: { "/guest/kernel": kernel, ...files } }), { balance: false });
  try {
    await host.createVm(api.parseVmConfig({ name: "t", bios: "none", kernel: "/guest/kernel", memory: "64M" }));
    let output = "";
    host.attachConsole("t", (bytes) => { for (const b of bytes) output += String.fromCharCode(b); });
    await host.act("t", "start");
    const end = await host.waitForEnd("t");
    return { exitCode: end.exitCode, state: end.state, output };
  } finally {
    await host.close();
  }
}

describe("the browser bundle of host/index.ts", () => {
  test("has no Node module in it", () => {
    // esbuild fails on a node: import for platform "browser"; nor may anything reach for Node's require or globals.
    expect(bundle).not.toMatch(/\bfrom\s*["']node:|\brequire\(["']|\bsetImmediate\(|\bprocess\.(env|umask|getuid|stdout)/);
  });

  test("boots a bare-metal program to its HTIF exit code on the in-memory platform", async () => {
    const r = await run(new Uint8Array(readFileSync(programs.rv64i)));
    expect(r.output).toMatch(/PASS/);
    expect(r).toMatchObject({ exitCode: 0, state: "stopped" });
  }, 120_000);

  test("a guest's failure code comes back as its exit code", async () => {
    // The test device's FAIL with code 42, as `wasmvisor boot` would exit with.
    const r = await run(asm`
      li t0, 0x100000
      li t1, ${(42 << 16) | 0x3333}
      sw t1, 0(t0)
    1: j 1b
    `);
    expect(r).toMatchObject({ exitCode: 42, state: "failed" });
  }, 60_000);

  test("qcow2 disks in memory: compressed clusters inflate without Node's zlib, an overlay takes the writes", () => {
    const raw = new Uint8Array(1 << 20).map((_, i) => 0x61 + ((i * 7) % 13));
    const tmp = mkdtempSync(join(tmpdir(), "wasmvisor-bundle-qcow2-"));
    writeFileSync(join(tmp, "src.raw"), raw);
    execFileSync("qemu-img", ["convert", "-q", "-c", "-f", "raw", "-O", "qcow2", join(tmp, "src.raw"), join(tmp, "c.qcow2")]);
    const p = api.memoryPlatform({ core: core(), files: { "/img/c.qcow2": new Uint8Array(readFileSync(join(tmp, "c.qcow2"))) } });
    p.createDiskImage("/img/top.qcow2", { backing: { path: "c.qcow2", format: "qcow2" }, what: "test" });
    const disk = p.openDisk("/img/top.qcow2", { readOnly: false, what: "--drive" });
    disk.write(4096, new Uint8Array(512).fill(0xee));
    const got = new Uint8Array(1 << 20);
    disk.read(0, got);
    disk.close();
    const want = raw.slice();
    want.fill(0xee, 4096, 4608);
    expect(Buffer.from(got).equals(Buffer.from(want))).toBe(true);
    rmSync(tmp, { recursive: true, force: true });
  });

  test("a file the platform does not have is a clear error, not a crash", async () => {
    const host = await api.createHost(api.memoryPlatform({ core: core() }), { balance: false });
    try {
      await expect(host.createVm(api.parseVmConfig({ name: "t", bios: "none", kernel: "/nope" }))).rejects.toThrow("--kernel /nope: no such file");
      expect(() => api.parseVmConfig({ name: "t", smp: 9 })).toThrow(/'smp' must be a whole number from 1 to 8/);
      expect(host.list()).toEqual([]);
    } finally {
      await host.close();
    }
  });
});
