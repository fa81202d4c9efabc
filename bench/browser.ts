// Browser suite: the same bare-metal guests timed in Node (the pCPU on a worker thread) and in
// Debian's Chromium (the pCPU on a Web Worker, through the browser platform), through the same
// embedding API; and the Linux guest's boot to its shell prompt in the page `wasmvisor web`
// serves (the same VM booted in Node beside it), from the VM's start and from a cold page load.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as esbuild from "esbuild";
import { chromium, type Browser } from "playwright-core";
import { createHost, parseVmConfig, type Hypervisor } from "../host/index";
import { DEFAULT_FIRMWARE, nodePlatform } from "../host/platform/node";
import { packageRoot } from "../host/platform/node/core";
import { geomean, median } from "../host/util/stats";
import { startStaticServer } from "../test/browser/static-server";
import { timeGuest, type GuestRun } from "./guest-run";
import { BASELINE_SIZES, baselineModule, runBaseline, type Baseline } from "./browser-baseline";
import { Session, startWebCommand } from "../test/integration/cli";
import { guestVm, PROMPT } from "../web/guest-vm";


export const CHROMIUM = "/usr/bin/chromium";

export interface BrowserProgram {
  program: string;
  instructions: number;
  node_mips: number;
  browser_mips: number;
}

/** The Linux guest to its shell prompt (s), medians. */
export interface BrowserBoot {
  /**
   * From the VM's start, the core's code at the engine's top tier in both: in Node (embedding
   * API, pCPU on a worker thread, a host that has booted before), and in the page as it measures
   * it (the page's second boot, its Reset).
   */
  node_s: number;
  browser_s: number;
  /** From nothing: `wasmvisor boot` with the same VM (process start), and a cold page load (a new browser profile: no cache, no storage; the core compiled, the images fetched, the disk made). */
  node_cold_s: number;
  page_cold_s: number;
  runs: { node: number[]; browser: number[]; node_cold: number[]; page_cold: number[] };
}

export interface BrowserBenchResult {
  chromium: string;
  /** Geometric means over the programs, and browser / Node. */
  node_mips: number;
  browser_mips: number;
  ratio: number;
  programs: BrowserProgram[];
  linux?: BrowserBoot;
  /** Chromium's own WebAssembly speed against Node's on this machine, apart from wasmvisor (bench/browser-baseline.ts), medians. */
  baseline?: { node: Baseline; browser: Baseline };
}

const mips = (r: GuestRun) => r.instructions / r.seconds / 1e6;

export interface LinuxGuest { dir: string; kernel: string; initramfs: string; disk: string }

export async function browserSuite(programs: Record<string, string>, guest: LinuxGuest | null, runs: number, log: (s: string) => void): Promise<BrowserBenchResult> {
  const root = packageRoot();
  const names = Object.keys(programs).filter((n) => n.startsWith("bench-"));
  const bundle = await esbuild.build({
    entryPoints: [join(root, "bench/browser-page.ts")], bundle: true, platform: "browser", format: "esm",
    target: "chrome110", write: false, outdir: "/", logLevel: "error",
  });
  const server = await startStaticServer({
    root: join(root, "dist/web"),
    files: {
      "/bench.html": '<!doctype html><meta charset="utf-8"><script type="module" src="/browser-page.js"></script>',
      "/core.wasm": new Uint8Array(readFileSync(join(root, "build/core.wasm"))),
      ...Object.fromEntries(bundle.outputFiles.map((f) => [f.path, f.contents])),
      ...Object.fromEntries(names.map((n) => [`/guest/${n}.elf`, new Uint8Array(readFileSync(programs[n]!))])),
    },
  });
  let browser: Browser | null = null;
  const host = await createHost(nodePlatform, { cpus: 1, balance: false, watchdogSeconds: 0 });
  try {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
    const page = await (await browser.newContext()).newPage();
    await page.goto(`${server.url}/bench.html`);
    await page.waitForFunction(() => "benchGuests" in window);
    const node: GuestRun[][] = names.map(() => []);
    const web: GuestRun[][] = names.map(() => []);
    // Taken in turns, so that a machine busy with something else for a while weighs on both.
    for (let i = 0; i < runs; i++) {
      for (const [j, n] of names.entries()) node[j]!.push(await timeGuest(host, n, programs[n]!));
      const inPage = await page.evaluate((paths) => (window as unknown as { benchGuests(p: string[]): Promise<GuestRun[]> }).benchGuests(paths), names.map((n) => `/guest/${n}.elf`));
      inPage.forEach((r, j) => web[j]!.push(r));
    }
    const rows = names.map((n, j): BrowserProgram => {
      for (const r of [...node[j]!, ...web[j]!]) if (r.exitCode !== 0) throw new Error(`${n} failed (exit ${r.exitCode})`);
      return { program: n, instructions: node[j]![0]!.instructions, node_mips: median(node[j]!.map(mips)), browser_mips: median(web[j]!.map(mips)) };
    });
    for (const r of rows) log(`  ${r.program.padEnd(14)} node ${r.node_mips.toFixed(1).padStart(7)} MIPS   chromium ${r.browser_mips.toFixed(1).padStart(7)} MIPS  (${((100 * r.browser_mips) / r.node_mips).toFixed(0)}%)`);
    // The engines themselves, apart from wasmvisor.
    const wasm = await baselineModule();
    const base = { node: [] as Baseline[], browser: [] as Baseline[] };
    for (let i = 0; i < runs; i++) {
      base.node.push(await runBaseline(wasm, BASELINE_SIZES.mix, BASELINE_SIZES.touch));
      base.browser.push(await page.evaluate(async ([src, bytes, mix, touch]) => (0, eval)(`(${src})`)(new Uint8Array(bytes), mix, touch) as Promise<Baseline>,
        [runBaseline.toString(), [...wasm], BASELINE_SIZES.mix, BASELINE_SIZES.touch] as const));
    }
    const med = (xs: Baseline[]): Baseline => ({ mix_ms: median(xs.map((x) => x.mix_ms)), touch_ms: median(xs.map((x) => x.touch_ms)) });
    const baseline = { node: med(base.node), browser: med(base.browser) };
    log(`  the engines alone: an arithmetic loop node ${baseline.node.mix_ms.toFixed(0)} ms, chromium ${baseline.browser.mix_ms.toFixed(0)} ms; ` +
      `a first touch of 64 MiB node ${baseline.node.touch_ms.toFixed(0)} ms, chromium ${baseline.browser.touch_ms.toFixed(0)} ms`);
    const nodeMips = geomean(rows.map((r) => r.node_mips));
    const browserMips = geomean(rows.map((r) => r.browser_mips));
    log(`  geometric mean: node ${nodeMips.toFixed(1)} MIPS, chromium ${browserMips.toFixed(1)} MIPS (${((100 * browserMips) / nodeMips).toFixed(1)}%)`);
    const linux = guest ? await linuxBoot(guest, host, browser, runs) : undefined;
    if (linux) {
      log(`  Linux to its prompt from the VM's start: node ${linux.node_s.toFixed(2)} s, chromium ${linux.browser_s.toFixed(2)} s (${((100 * linux.node_s) / linux.browser_s).toFixed(0)}% of Node's speed)`);
      log(`  from nothing: wasmvisor boot ${linux.node_cold_s.toFixed(2)} s, a cold page load ${linux.page_cold_s.toFixed(2)} s`);
    }
    return { chromium: browser.version(), node_mips: nodeMips, browser_mips: browserMips, ratio: browserMips / nodeMips, programs: rows, baseline, ...(linux ? { linux } : {}) };
  } finally {
    await browser?.close();
    await host.close();
    await server.close();
  }
}

/** The page's VM, booted in Node and in the page, each way `runs` times in turns. */
async function linuxBoot(guest: LinuxGuest, host: Hypervisor, browser: Browser, runs: number): Promise<BrowserBoot> {
  const dir = mkdtempSync(join(tmpdir(), "wasmvisor-bench-browser-"));
  const { child: web, url } = await startWebCommand(guest.dir);
  const r: BrowserBoot["runs"] = { node: [], browser: [], node_cold: [], page_cold: [] };
  try {
    for (let i = 0; i < runs; i++) {
      // Node: a fresh overlay over the image each time, as the page's first boot makes.
      const definition = (name: string) => {
        const disk = join(dir, `${name}.qcow2`);
        nodePlatform.createDiskImage(disk, { backing: { path: guest.disk, format: "raw" }, what: "overlay" });
        // The tier the page runs by default (off in a browser), named for Node's side too.
        return { ...guestVm(name, { firmware: DEFAULT_FIRMWARE, kernel: guest.kernel, initrd: guest.initramfs, disk, loopback: true }), jit: "off" };
      };
      await host.createVm(parseVmConfig(definition(`linux${i}`)));
      let out = "";
      let prompt: (() => void) | null = null;
      const seen = new Promise<void>((resolve) => { prompt = resolve; });
      host.attachConsole(`linux${i}`, (b) => { out = (out + new TextDecoder().decode(b)).slice(-64); if (out.includes(PROMPT)) prompt!(); });
      const t0 = performance.now();
      await host.act(`linux${i}`, "start");
      await seen;
      r.node.push((performance.now() - t0) / 1000);
      await host.destroy(`linux${i}`);

      // `wasmvisor boot`, the same VM, from the process's start.
      const cold = definition(`cold${i}`);
      const t1 = performance.now();
      const s = new Session(["boot", ...Object.entries(cold).flatMap(([k, v]) => k === "name" ? [] : (Array.isArray(v) ? v : [v]).map((x) => [`--${k === "drives" ? "drive" : k === "nets" ? "net" : k}`, String(x)]).flat())]);
      try {
        await s.expect(PROMPT, 300_000);
        r.node_cold.push((performance.now() - t1) / 1000);
      } finally {
        s.kill();
      }

      // A cold page load: a new browser profile. Then its Reset boots the VM again, on a core the
      // engine has compiled to its top tier by then, as the Node host's is.
      const context = await browser.newContext();
      try {
        const page = await context.newPage();
        const booted = () => page.waitForFunction(() => (window as unknown as { wasmvisor?: { bootMs?: number } }).wasmvisor?.bootMs !== undefined, undefined, { timeout: 300_000, polling: 20 });
        const t2 = performance.now();
        await page.goto(url);
        await booted(); // the page notes the boot's time as its console shows the prompt
        r.page_cold.push((performance.now() - t2) / 1000);
        await page.locator("#reset").click();
        await page.waitForFunction(() => (window as unknown as { wasmvisor: { bootMs?: number } }).wasmvisor.bootMs === undefined, undefined, { polling: 5 });
        await booted();
        r.browser.push(await page.evaluate(() => (window as unknown as { wasmvisor: { bootMs: number } }).wasmvisor.bootMs) / 1000);
      } finally {
        await context.close();
      }
    }
  } finally {
    web.kill("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  }
  return { node_s: median(r.node), browser_s: median(r.browser), node_cold_s: median(r.node_cold), page_cold_s: median(r.page_cold), runs: r };
}
