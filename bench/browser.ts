// Browser suite: the same bare-metal guests timed in Node (the pCPU on a worker thread) and in
// Debian's Chromium (the pCPU on a Web Worker, through the browser platform), through the same
// embedding API; and the Linux guest's boot to its shell prompt in the page `wasmvisor web`
// serves, from a cold page load, beside `wasmvisor start` in Node.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as esbuild from "esbuild";
import { chromium, type Browser } from "playwright-core";
import { createHost } from "../host/index";
import { nodePlatform } from "../host/platform/node";
import { packageRoot } from "../host/platform/node/core";
import { geomean, median } from "../host/util/stats";
import { startStaticServer } from "../test/browser/static-server";
import { timeGuest, type GuestRun } from "./guest-run";

export const CHROMIUM = "/usr/bin/chromium";

export interface BrowserProgram {
  program: string;
  instructions: number;
  node_mips: number;
  browser_mips: number;
}

export interface BrowserBenchResult {
  chromium: string;
  /** Geometric means over the programs, and browser / Node. */
  node_mips: number;
  browser_mips: number;
  ratio: number;
  programs: BrowserProgram[];
}

const mips = (r: GuestRun) => r.instructions / r.seconds / 1e6;

export async function browserSuite(programs: Record<string, string>, runs: number, log: (s: string) => void): Promise<BrowserBenchResult> {
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
    const nodeMips = geomean(rows.map((r) => r.node_mips));
    const browserMips = geomean(rows.map((r) => r.browser_mips));
    log(`  geometric mean: node ${nodeMips.toFixed(1)} MIPS, chromium ${browserMips.toFixed(1)} MIPS (${((100 * browserMips) / nodeMips).toFixed(1)}%)`);
    return { chromium: browser.version(), node_mips: nodeMips, browser_mips: browserMips, ratio: browserMips / nodeMips, programs: rows };
  } finally {
    await browser?.close();
    await host.close();
    await server.close();
  }
}
