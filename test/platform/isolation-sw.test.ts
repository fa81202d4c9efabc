// web/isolation-sw.js, for sites that cannot set headers: a page served without COOP/COEP, with
// the guide's snippet, becomes cross-origin isolated after its one reload (its workers too), and
// then the browser build boots a guest in it. Chromium, over a plain HTTP server of our own.
import { describe, test, expect, beforeAll, afterAll } from "vitest";
import { createServer, type Server } from "node:http";
import { existsSync, readFileSync } from "node:fs";
import { extname, join, normalize } from "node:path";
import { chromium, type Browser } from "playwright-core";
import { buildBaremetal } from "../../guests/baremetal/build.mjs";
import { packageRoot } from "../../host/platform/node/core";
import { guideExample } from "./guide";

const root = packageRoot();
const TYPES: Record<string, string> = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm" };
let server: Server;
let origin: string;
let browser: Browser;
let program: Uint8Array;
const requests: string[] = [];

// What the page shows once isolated: itself, a module worker, and a guest booted by the browser build.
const PAGE = `<!doctype html>
<meta charset="utf-8">
${guideExample("isolation")}
<script type="module">
  if (crossOriginIsolated) {
    const worker = new Worker("worker.js", { type: "module" });
    const workerIsolated = await new Promise((resolve) => { worker.onmessage = (e) => resolve(e.data); });
    const { createHost, memoryPlatform, parseVmConfig } = await import("./wasmvisor/wasmvisor.js");
    const [core, kernel] = await Promise.all(["./wasmvisor/core.wasm", "./rv64i.elf"].map(async (u) => new Uint8Array(await (await fetch(u)).arrayBuffer())));
    const host = await createHost(memoryPlatform({ core, files: { "/rv64i.elf": kernel } }), { balance: false });
    await host.createVm(parseVmConfig({ name: "t", bios: "none", kernel: "/rv64i.elf", memory: "64M" }));
    let output = "";
    host.attachConsole("t", (bytes) => { output += new TextDecoder().decode(bytes); });
    await host.act("t", "start");
    const end = await host.waitForEnd("t");
    await host.close();
    window.result = { workerIsolated, state: end.state, exitCode: end.exitCode, passed: output.includes("PASS") };
  }
</script>
`;

/** Files by URL path: the page (its directory is the worker's scope), and one outside that scope. */
function file(path: string): Uint8Array | string | undefined {
  if (path === "/app/index.html") return PAGE;
  if (path === "/app/isolation-sw.js") return readFileSync(join(root, "web/isolation-sw.js"));
  if (path === "/app/worker.js") return "postMessage(self.crossOriginIsolated);";
  if (path === "/app/rv64i.elf") return program;
  if (path === "/elsewhere/index.html") return "<!doctype html><title>not in the scope</title>";
  if (path.startsWith("/app/wasmvisor/")) {
    const f = join(root, "dist/web", normalize(path.slice("/app/wasmvisor/".length)).replace(/^(\.\.\/)+/, ""));
    return existsSync(f) ? readFileSync(f) : undefined;
  }
  return undefined;
}

beforeAll(async () => {
  program = readFileSync((await buildBaremetal()).programs.rv64i);
  // No COOP/COEP here: as a static host that cannot set headers.
  server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    requests.push(path);
    const body = file(path);
    if (body === undefined) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "Content-Type": TYPES[extname(path)] ?? "application/octet-stream" }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  origin = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
}, 300_000);

afterAll(async () => {
  await browser?.close();
  server?.close();
});

describe("the isolation service worker", () => {
  test("isolates a page served without the headers after one reload; its workers are isolated and the browser build boots a guest", async () => {
    const page = await browser.newPage();
    try {
      await page.goto(`${origin}/app/index.html`);
      await page.waitForFunction(() => (window as { result?: unknown }).result, null, { timeout: 30_000 });
      const result = await page.evaluate(() => ({ ...(window as unknown as { result: object }).result, isolated: crossOriginIsolated, sab: typeof SharedArrayBuffer }));
      expect(result).toEqual({ isolated: true, sab: "function", workerIsolated: true, state: "stopped", exitCode: 0, passed: true });
      // Loaded twice (the reload), then not again: the flag was cleared, the worker serves it.
      expect(requests.filter((p) => p === "/app/index.html").length).toBe(2);
      await page.reload();
      await page.waitForFunction(() => (window as { result?: unknown }).result, null, { timeout: 30_000 });
      expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);
      expect(await page.evaluate(() => sessionStorage.getItem("wasmvisor-isolation"))).toBeNull();

      // Pages outside its scope are left as they are.
      await page.goto(`${origin}/elsewhere/index.html`);
      expect(await page.evaluate(() => crossOriginIsolated)).toBe(false);
    } finally {
      await page.close();
    }
  }, 120_000);

  test("without service workers the page loads once and stays as it is, rather than reloading in a loop", async () => {
    // A context that blocks service workers, as some private modes and policies do.
    const context = await browser.newContext({ serviceWorkers: "block" });
    const page = await context.newPage();
    try {
      const before = requests.length;
      await page.goto(`${origin}/app/index.html`);
      await page.waitForTimeout(1500);
      expect(await page.evaluate(() => crossOriginIsolated)).toBe(false);
      expect(requests.slice(before).filter((p) => p === "/app/index.html").length).toBeLessThanOrEqual(2);
    } finally {
      await context.close();
    }
  }, 60_000);
});
