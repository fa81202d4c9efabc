// The web server's side of moving VMs between a tab and the host (host/cli/web-vms.ts), with an
// in-process hypervisor standing in for the tab (test/browser/web.test.ts does it with Chromium):
// a VM goes from the "tab" to the server's Node host over a WebSocket, disk and all, runs there
// with its console relayed over another WebSocket, and comes back the same way, through the
// host's authenticated TLS link and the one-shot bridge.
import { test, expect } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { WebSocketServer, WebSocket } from "ws";
import type { AddressInfo } from "node:net";
import { randomBytes } from "node:crypto";
import { counterKernel } from "../state/counter-guest";
import { loadCoreModule } from "../../host/platform/node/core";
import { memoryPlatform } from "../../host/platform/memory";
import { nodePlatform } from "../../host/platform/node";
import { Hypervisor } from "../../host/hv/hypervisor";
import { openWsLink, wsLink, type WebSocketLike } from "../../host/migration/ws-link";
import { acceptFromTab, checkTabVm, relayConsole, sendToTab } from "../../host/cli/web-vms";
import { parseVmConfig, DEFINITION_PARSING } from "../../host/config/parse";

const core = loadCoreModule();

test("a VM goes from a tab to the host and back over WebSockets, on copies of its disk, its console following", async () => {
  const dir = mkdtempSync(join(tmpdir(), "wasmvisor-tab-host-"));
  const key = randomBytes(32);
  const log: string[] = [];
  const server = await Hypervisor.start(nodePlatform, { cpus: 1, balance: false, imageDirs: [dir], migrationKey: key, onEvent: (l) => log.push(l) });
  const disk = new Uint8Array(1 << 20).map((_, i) => (i * 13) & 0xff);
  const tabPlatform = memoryPlatform({
    core, files: { "/guest/count.bin": counterKernel(20_000_000), "/opfs/guest/disk.img": disk.slice() },
    connectMigration: () => openWsLink(() => new WebSocket(`${url}/migrate`) as unknown as WebSocketLike, "the server"),
  });
  const tab = await Hypervisor.start(tabPlatform, { balance: false, imageDirs: ["/opfs/vms", "/opfs/guest", "/guest"], migrationKey: key });
  const wss = new WebSocketServer({ port: 0, host: "127.0.0.1" });
  wss.on("connection", (ws, req) => {
    const u = new URL(req.url!, "http://x");
    if (u.pathname === "/migrate") void acceptFromTab(wsLink(ws as unknown as WebSocketLike, "the tab"), server);
    else if (u.pathname === "/console") relayConsole(ws, server, u.searchParams.get("vm")!);
    else if (u.pathname === "/migrate-back") void sendToTab(ws, server, u.searchParams.get("vm")!, key, "the tab", (l) => log.push(l));
  });
  await new Promise((r) => wss.once("listening", r));
  const url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
  try {
    await tab.create({ name: "vm", kernel: "/guest/count.bin", memory: "16M", drives: ["file=/opfs/guest/disk.img"] });
    let text = "";
    tab.attachConsole("vm", (b) => { text += new TextDecoder().decode(b); });
    await tab.act("vm", "start");
    while ((await tab.stats("vm")).instructions < 40_000_000) await new Promise((r) => setImmediate(r));

    // To the host: it runs there on a copy of its disk in the server's directory.
    const out = await tab.migrate("vm", "tcp:server:1", { copyStorage: true, downtimeMs: 50 });
    expect(out.phase).toBe("done");
    expect(server.info("vm").state).toBe("running");
    expect(server.info("vm").drives[0]!.startsWith(`${dir}/`)).toBe(true);
    // Its console, from the host, over a WebSocket (the scrollback first), until it leaves.
    const consoleWs = new WebSocket(`${url}/console?vm=vm`);
    consoleWs.on("message", (d: Buffer) => { text += d.toString(); });
    const consoleClosed = new Promise<string>((r) => consoleWs.once("close", (_code, why) => r(why.toString())));
    await new Promise((r) => consoleWs.once("open", r));
    const atHost = text.length;
    while (text.length < atHost + 2) await new Promise((r) => setTimeout(r, 10));

    // And back: the tab takes it in over the WebSocket it opens.
    const back = new WebSocket(`${url}/migrate-back?vm=vm`);
    await new Promise((r) => back.once("open", r));
    await tab.incoming(wsLink(back as unknown as WebSocketLike, "the server"));
    // The host lets it go once it hears the tab runs it.
    for (let i = 0; i < 100 && server.list().length; i++) await new Promise((r) => setTimeout(r, 20));
    expect(() => server.info("vm")).toThrow(/no VM named vm/);
    expect(tab.info("vm").state).toBe("running");
    expect(await consoleClosed).toMatch(/^vm stopped: migrated to tcp:127\.0\.0\.1:\d+/);
    const copy = tab.info("vm").drives[0]!;
    expect(copy).toMatch(/^\/opfs\/vms\/vm\.\w+\.disk0\.qcow2$/);
    tab.attachConsole("vm", (b) => { text += new TextDecoder().decode(b); });
    expect((await tab.waitForEnd("vm")).exitCode).toBe(0);
    // Every digit once, in order, wherever it was printed.
    expect(text).toBe("0123456789");
    // The disk came back byte for byte.
    const d = tabPlatform.openDisk(copy, { format: "qcow2", readOnly: true, what: "the copy" });
    const got = new Uint8Array(d.size);
    d.read(0, got);
    d.close();
    expect(Buffer.compare(got, disk)).toBe(0);
    expect(log).toEqual(["vm migrated in from the tab", "vm migrated to the tab"]);
  } finally {
    await tab.close();
    await server.close();
    await new Promise((r) => wss.close(r));
    rmSync(dir, { recursive: true, force: true });
  }
}, 120_000);

test("a VM from a page brings only user-mode NICs with the relay's options, and its own disks", () => {
  const vm = (extra: object) => parseVmConfig({ name: "t", kernel: "/guest/k", ...extra }, DEFINITION_PARSING);
  expect(() => checkTabVm(vm({ nets: ["user,loopback=off"], drives: ["file=/opfs/guest/disk.qcow2"] }), false)).not.toThrow();
  expect(() => checkTabVm(vm({ nets: ["user,loopback=on"] }), true)).not.toThrow();
  expect(() => checkTabVm(vm({ nets: ["user,loopback=on"] }), false)).toThrow(/may not reach its loopback/);
  expect(() => checkTabVm(vm({ nets: ["user,loopback=off,loopback=22"] }), false)).toThrow(/may not reach its loopback/);
  expect(() => checkTabVm(vm({ nets: ["user,hostfwd=tcp::2222-:22"] }), true)).toThrow(/hostfwd is not taken/);
  expect(() => checkTabVm(vm({ nets: ["switch=lab"] }), true)).toThrow(/only user-mode NICs/);
  expect(() => checkTabVm(vm({ drives: ["file=/etc/passwd"] }), true)).toThrow(/brings its own disks, not \/etc\/passwd/);
});
