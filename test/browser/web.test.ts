// `wasmvisor web` end to end: the real server on the cached Linux guest, Debian's Chromium driving
// the page. The guest boots in the tab to its shell; its data disk keeps a file across a reload
// (an overlay in the browser's storage); DHCP and a TCP connection to the test's own server go
// through the network relay; a state saved to a download goes on in a fresh page. And the
// server's fences: WebSockets from another origin or without the token are refused, hostfwd is
// not taken over the relay, and nothing outside the served files is reachable.
import { describe, test, expect, beforeAll, afterAll } from "vitest";
import type { ChildProcess } from "node:child_process";
import { createServer, request, type Server } from "node:http";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { WebSocket } from "ws";
import { buildLinuxGuest } from "../../guests/linux/build.mjs";
import { packageRoot } from "../../host/platform/node/core";
import { startWebCommand } from "../integration/cli";

const ROOT = packageRoot();
const SHOTS = join(ROOT, "test-results/browser");
const PROMPT = "root@wasmvisor:~# ";

let server: ChildProcess;
let base: string;
let hostHttp: Server;
let hostPort: number;
const greeting = `hello-from-the-host-${Math.random().toString(36).slice(2, 8)}`;
let browser: Browser;
let context: BrowserContext;

beforeAll(async () => {
  const guest = await buildLinuxGuest({ log: (line: string) => console.error(line) });
  mkdirSync(SHOTS, { recursive: true });
  ({ child: server, url: base } = await startWebCommand(guest.dir, (text) => process.stderr.write(`[wasmvisor web] ${text}`)));
  hostHttp = createServer((_req, res) => res.end(`${greeting}\n`));
  await new Promise<void>((r) => hostHttp.listen(0, "127.0.0.1", r));
  hostPort = (hostHttp.address() as AddressInfo).port;
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
  context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 720 } });
}, 600_000);

afterAll(async () => {
  await browser?.close();
  server?.kill("SIGTERM");
  hostHttp?.close();
});

/** GET (or another method) with the path sent as it is (no normalization), and extra headers. */
function get(path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on("error", reject);
    req.end();
  });
}

/** Open a WebSocket; resolves with how the server answered: "open", or the refusal's status. */
function openSocket(path: string, origin: string | undefined): Promise<{ ws?: WebSocket; refused?: number }> {
  const ws = new WebSocket(new URL(path, base).href.replace(/^http/, "ws"), { headers: origin ? { Origin: origin } : {} });
  return new Promise((resolve) => {
    ws.on("open", () => resolve({ ws }));
    ws.on("unexpected-response", (_req, res) => resolve({ refused: res.statusCode }));
    ws.on("error", () => resolve({ refused: -1 }));
  });
}

describe("the server", () => {
  test("serves the page cross-origin isolated, files with ranges, and nothing else", async () => {
    const page = await get("/");
    expect(page.status).toBe(200);
    expect(page.headers["cross-origin-opener-policy"]).toBe("same-origin");
    expect(page.headers["cross-origin-embedder-policy"]).toBe("require-corp");
    expect(page.headers["cross-origin-resource-policy"]).toBe("same-origin");
    const wasm = await get("/core.wasm");
    expect(wasm.headers["content-type"]).toBe("application/wasm");
    expect(wasm.body.subarray(0, 4)).toEqual(Buffer.from([0, 0x61, 0x73, 0x6d]));
    // A disk's blocks by range; a range past its end is refused; a known ETag is not sent again.
    const r = await get("/guest/disk.ext4", { Range: "bytes=1024-1099" });
    expect(r.status).toBe(206);
    expect(r.body.length).toBe(76);
    expect(r.body.readUInt16LE(56)).toBe(0xef53); // ext4's superblock magic, 1024 + 56 into the image
    expect(r.headers["content-range"]).toBe("bytes 1024-1099/67108864");
    expect((await get("/guest/disk.ext4", { Range: "bytes=67108864-" })).status).toBe(416);
    expect((await get("/guest/disk.ext4", { "If-None-Match": String(r.headers.etag) })).status).toBe(304);
    expect((await get("/guest/Image", { "If-None-Match": String(r.headers.etag) })).status).toBe(200);
    const config = JSON.parse((await get("/config.json")).body.toString());
    expect(config.guest["disk.ext4"]).toEqual({ path: "/guest/disk.ext4", size: 67108864 });
    expect(config.token).toMatch(/^[\w-]{24,}$/);
    // No traversal, no listings, nothing but the named files; another Host name (DNS rebinding) is refused.
    for (const path of ["/../package.json", "/guest/../../package.json", "/%2e%2e/package.json", "/guest/%2e%2e/%2e%2e/package.json",
      "/guest/", "/guest", "/dist/web/page.js", "/web/page.ts", "/package.json", "/build/core.wasm", "/..%2fpackage.json", "/guest/vmlinux"]) {
      expect([path, (await get(path)).status]).toEqual([path, 404]);
    }
    expect((await get("/config.json", { Host: `evil.example:${new URL(base).port}` })).status).toBe(421);
  });

  test("a WebSocket from another origin, or without the token, is refused; hostfwd is not taken", async () => {
    const { token } = JSON.parse((await get("/config.json")).body.toString());
    const own = new URL(base).origin;
    expect((await openSocket(`/net?token=${token}`, "http://evil.example")).refused).toBe(403);
    expect((await openSocket(`/net?token=${token}`, undefined)).refused).toBe(403);
    expect((await openSocket("/net", own)).refused).toBe(403);
    expect((await openSocket("/net?token=x", own)).refused).toBe(403);
    const { ws } = await openSocket(`/net?token=${token}`, own);
    const closed = new Promise<{ code: number; reason: string }>((r) => ws!.on("close", (code, reason) => r({ code, reason: reason.toString() })));
    ws!.send(JSON.stringify({ hostfwd: [{ proto: "tcp", hostPort: 2222, guestPort: 22 }] }));
    const c = await closed;
    expect(c.code).toBe(1008);
    expect(c.reason).toMatch(/hostfwd .*open ports on the server/);
  });

  test("what a client sends cannot end the server: a bad path, an oversize frame, a reason in other characters", async () => {
    const { token } = JSON.parse((await get("/config.json")).body.toString());
    const own = new URL(base).origin;
    const upgrade = { Connection: "Upgrade", Upgrade: "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", Origin: own };
    expect((await get("//a:b", upgrade)).status).toBe(400);
    // A frame over the relay's limit (an Ethernet frame) ends that socket only.
    const big = await openSocket(`/net?token=${token}`, own);
    const accepted = new Promise<string>((r) => big.ws!.once("message", (d: Buffer) => r(d.toString())));
    big.ws!.send(JSON.stringify({}));
    expect(await accepted).toBe("ok");
    const bigClosed = new Promise<number>((r) => big.ws!.on("close", (code) => r(code)));
    big.ws!.send(new Uint8Array(64 << 10));
    expect(await bigClosed).toBe(1009);
    // A console or a VM asked for by a name that runs nowhere, however long the name.
    for (const path of ["console", "migrate-back"]) {
      const s = await openSocket(`/${path}?token=${token}&vm=${"x".repeat(16_000)}`, own);
      const why = await new Promise<{ code: number; reason: string }>((r) => s.ws!.on("close", (code, reason) => r({ code, reason: reason.toString() })));
      expect(why.code).toBe(1008);
      expect(Buffer.byteLength(why.reason)).toBeLessThanOrEqual(123);
    }
    // Options the relay refuses, named in a reason longer than a close frame carries.
    const { ws } = await openSocket(`/net?token=${token}`, own);
    const closed = new Promise<{ code: number; reason: string }>((r) => ws!.on("close", (code, reason) => r({ code, reason: reason.toString() })));
    ws!.send(JSON.stringify({ ["€".repeat(60)]: 1 }));
    const c = await closed;
    expect(c.code).toBe(1008);
    expect(Buffer.byteLength(c.reason)).toBeLessThanOrEqual(123);
    expect(c.reason).toMatch(/^the relay takes only restrict and loopback/);
    // A VM is found only by its name.
    expect(JSON.parse((await get("/vms.json")).body.toString())).toEqual([]);
    expect((await get("/config.json")).status).toBe(200); // still serving
  });
});

// ---- the page ---------------------------------------------------------------------------------

const screen = (page: Page) => page.evaluate(() => (window as unknown as { wasmvisor: { screen(): string } }).wasmvisor.screen());

async function until(page: Page, what: string, ok: (text: string) => boolean, timeoutMs: number): Promise<string> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const text = await screen(page).catch(() => "");
    if (ok(text)) return text;
    if (Date.now() > end) {
      const message = await page.locator("#message").textContent().catch(() => "");
      throw new Error(`${what}: not seen in ${timeoutMs} ms (page says: ${message})\n${text.slice(-2000)}`);
    }
    await page.waitForTimeout(250);
  }
}

/** Open the page and wait for the guest's shell; returns ms to the prompt (as the page measured it). */
async function openPage(name: string): Promise<{ page: Page; bootMs: number }> {
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`${name}: ${e.message}`));
  await page.goto(base);
  await until(page, "the shell prompt", (t) => t.trimEnd().endsWith(PROMPT.trimEnd()), 180_000);
  await page.screenshot({ path: join(SHOTS, `${name}.png`) });
  return { page, bootMs: await page.evaluate(() => (window as unknown as { wasmvisor: { bootMs: number } }).wasmvisor.bootMs) };
}

/** Wait for the page's message to match `re`; a timeout says what the page said instead. */
async function saying(page: Page, re: RegExp, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  let said = "";
  while (Date.now() < end) {
    said = await page.locator("#message").textContent() ?? "";
    if (re.test(said)) return;
    await page.waitForTimeout(200);
  }
  throw new Error(`the page did not say ${re} within ${timeoutMs} ms; it says: ${said}`);
}

/** Type a command into the terminal; returns its output (between markers it prints before and after it). */
async function sh(page: Page, cmd: string, timeoutMs = 60_000): Promise<string> {
  const id = Math.random().toString(36).slice(2, 8);
  await page.locator("#terminal").click();
  // Quoted in two pieces: only the output has a marker whole (the shell may wrap the echoed line anywhere).
  await page.keyboard.type(`echo "__begin_""${id}"; ${cmd}; echo "__done_""${id}"`);
  await page.keyboard.press("Enter");
  const text = await until(page, cmd, (t) => t.includes(`\n__done_${id}`), timeoutMs);
  const begin = `\n__begin_${id}\n`;
  return text.slice(text.lastIndexOf(begin) + begin.length, text.lastIndexOf(`\n__done_${id}`)).trim();
}

describe("the page", () => {
  test("boots Linux in the tab: shell, network through the relay, a disk that persists, a state that goes on elsewhere", async () => {
    let { page, bootMs } = await openPage("boot");
    console.error(`boot to prompt in the page: ${(bootMs / 1000).toFixed(1)} s`);
    expect(await sh(page, "uname -m")).toBe("riscv64");
    // DHCP (the guest's /init runs udhcpc) and TCP to the test's server on 127.0.0.1, as 10.0.2.2.
    expect(await sh(page, "ip -4 addr show eth0")).toMatch(/inet 10\.0\.2\.15\//);
    expect(await sh(page, "cat /etc/resolv.conf")).toMatch(/nameserver 10\.0\.2\.3/);
    expect(await sh(page, `wget -q -O- http://10.0.2.2:${hostPort}/`)).toContain(greeting);

    // The terminal's keys go to the guest's USB keyboard when the page says so: KEY_A pressed
    // reaches /dev/input/event0; and back to the console.
    await sh(page, "(timeout 12 cat /dev/input/event0 > /tmp/ev &); sleep 1");
    await page.locator("#keys").click();
    await saying(page, /USB keyboard/, 10_000);
    await page.locator("#terminal").click();
    await page.keyboard.type("a");
    await page.waitForTimeout(1000);
    await page.locator("#keys").click();
    await saying(page, /go to the console/, 10_000);
    expect(await sh(page, "sleep 12; od -An -tx1 -v /tmp/ev | tr -d ' \\n'; echo")).toContain("01001e0001000000");

    // The data disk keeps what was written across a reload of the page.
    const written = await sh(page, "echo hello-$RANDOM > /mnt/t.txt; sync; cat /mnt/t.txt");
    expect(written).toMatch(/^hello-\d+$/);
    await page.reload();
    await until(page, "the shell prompt after a reload", (t) => t.trimEnd().endsWith(PROMPT.trimEnd()), 180_000);
    expect(await sh(page, "cat /mnt/t.txt")).toBe(written);
    await page.screenshot({ path: join(SHOTS, "reloaded.png") });

    // A state saved to a download goes on in a fresh page: the shell's variable is still there.
    const mark = `mark-${Math.random().toString(36).slice(2, 8)}`;
    await sh(page, `export MARK=${mark}`);
    const downloading = page.waitForEvent("download");
    await page.locator("#save").click();
    const download = await downloading;
    const file = join(SHOTS, "state.wvs");
    await download.saveAs(file);
    await page.screenshot({ path: join(SHOTS, "saved.png") });
    await page.close(); // one VM on the disk at a time
    ({ page } = await openPage("fresh"));
    expect(await sh(page, "echo ${MARK:-unset}")).toBe("unset");
    await page.locator("#load").setInputFiles(file);
    await saying(page, /^running from/, 60_000);
    expect(await sh(page, "echo $MARK $((6*7))")).toBe(`${mark} 42`);
    expect(await sh(page, "cat /mnt/t.txt")).toBe(written);
    await page.screenshot({ path: join(SHOTS, "restored.png") });

    // Live-migrated to the server, disk and all: its console goes on in the page, from there.
    await page.locator("#migrate").click();
    await saying(page, /it runs on the server$/, 120_000);
    const vm = await page.evaluate(() => (window as unknown as { wasmvisor: { vm: string } }).wasmvisor.vm);
    expect(vm).toMatch(/^tab-[0-9a-f]{16}$/);
    expect(JSON.parse((await get(`/vms.json?vm=${vm}`)).body.toString())).toEqual([{ name: vm, state: "running" }]);
    expect(await sh(page, "echo $MARK $((6*7)) on the server")).toBe(`${mark} 42 on the server`);
    expect(await sh(page, "cat /mnt/t.txt")).toBe(written);
    expect(await sh(page, `wget -q -O- http://10.0.2.2:${hostPort}/`)).toContain(greeting);
    await page.screenshot({ path: join(SHOTS, "on-the-server.png") });
    // A reload finds it there.
    await page.reload();
    await saying(page, /console is here/, 60_000);
    expect(await sh(page, "echo $MARK still")).toBe(`${mark} still`);
    const onServer = await sh(page, "echo moved-$RANDOM > /mnt/moved.txt; sync; cat /mnt/moved.txt");

    // And back into the tab, on a copy of the disk as the server had it.
    await page.locator("#bring-back").click();
    await saying(page, /^running in this tab again/, 120_000);
    expect(JSON.parse((await get(`/vms.json?vm=${vm}`)).body.toString())).toEqual([]);
    expect(await sh(page, "echo $MARK back")).toBe(`${mark} back`);
    expect(await sh(page, "cat /mnt/moved.txt")).toBe(onServer);
    await page.screenshot({ path: join(SHOTS, "back-in-the-tab.png") });
    // The next boot of the page uses that disk.
    await page.reload();
    await until(page, "the shell prompt after coming back", (t) => t.trimEnd().endsWith(PROMPT.trimEnd()), 180_000);
    expect(await sh(page, "cat /mnt/moved.txt /mnt/t.txt")).toBe(`${onServer}\n${written}`);

    // Reset disk: a fresh disk, and the state saved over the old one cannot go on with it.
    await page.locator("#reset-disk").click();
    await page.waitForFunction(() => (window as unknown as { wasmvisor: { bootMs?: number } }).wasmvisor.bootMs === undefined, undefined, { timeout: 60_000, polling: 20 });
    await page.waitForFunction(() => (window as unknown as { wasmvisor: { bootMs?: number } }).wasmvisor.bootMs !== undefined, undefined, { timeout: 180_000 });
    expect(await sh(page, "cat /mnt/t.txt 2>&1 | head -1")).toMatch(/No such file/);
    await page.locator("#load").setInputFiles(file);
    await saying(page, /^load the state: .*no such file/i, 60_000);
    await page.close();
  }, 600_000);
});
