// The web server's side of moving VMs between a tab and the host (host/cli/web-vms.ts), with an
// in-process hypervisor standing in for the tab (test/browser/web.test.ts does it with Chromium):
// a VM goes from the "tab" to the server's Node host over a WebSocket, disk and all, runs there
// with its console relayed over another WebSocket, and comes back the same way, through the
// host's authenticated TLS link and the one-shot bridge.
import { test, expect } from "vitest";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
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
import { acceptFromTab, checkTabVm, closeWith, relayConsole, sendToTab } from "../../host/cli/web-vms";
import { parseVmConfig, DEFINITION_PARSING } from "../../host/config/parse";
import { pollUntil } from "../integration/cli";
import { withTimeout } from "../net/guest";

const core = loadCoreModule();

const VM = "tab-0123456789abcdef";

/** The web server's side on Node (its hypervisor, its WebSocket routes) and a "tab": a hypervisor on the in-memory platform with `files`. */
async function rig(files: Record<string, Uint8Array>) {
  const dir = mkdtempSync(join(tmpdir(), "wasmvisor-tab-host-"));
  const key = randomBytes(32);
  const log: string[] = [];
  const server = await Hypervisor.start(nodePlatform, { cpus: 1, balance: false, imageDirs: [dir], migrationKey: key, onEvent: (l) => log.push(l) });
  const tabPlatform = memoryPlatform({
    core, files: { "/guest/count.bin": counterKernel({ waitMs: 500 }), ...files }, // 5 s of guest time, whichever tier runs it
    connectMigration: () => openWsLink(() => new WebSocket(`${r.url}/migrate`) as unknown as WebSocketLike, "the server"),
  });
  const tab = await Hypervisor.start(tabPlatform, { balance: false, imageDirs: ["/opfs/vms", "/opfs/guest", "/guest"], migrationKey: key });
  const wss = new WebSocketServer({ port: 0, host: "127.0.0.1" });
  const r = {
    dir, key, log, server, tab, tabPlatform, url: "", removed: [] as string[], served: Promise.resolve(),
    close: async () => {
      await tab.close();
      await server.close();
      await new Promise((done) => wss.close(done));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  wss.on("connection", (ws, req) => {
    const u = new URL(req.url!, "http://x");
    if (u.pathname === "/migrate") r.served = acceptFromTab(wsLink(ws as unknown as WebSocketLike, "the tab"), server, true, (f) => { r.removed.push(f); rmSync(f); });
    else if (u.pathname === "/console") relayConsole(ws, server, u.searchParams.get("vm")!);
    else if (u.pathname === "/migrate-back") void sendToTab(ws, server, u.searchParams.get("vm")!, key, "the tab", (l) => log.push(l));
  });
  await new Promise((done) => wss.once("listening", done));
  r.url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
  return r;
}

test("a VM goes from a tab to the host and back over WebSockets, on copies of its disk, its console following", async () => {
  const disk = new Uint8Array(1 << 20).map((_, i) => (i * 13) & 0xff);
  const r = await rig({ "/opfs/guest/disk.img": disk.slice() });
  const { dir, key, log, server, tab, tabPlatform, url, removed } = r;
  let text = "";
  // (It waited out the test's timeout once in a full run: each wait below has its own, which says
  // which wait it was and where the VM and its console were.)
  const where = () => `the console: ${JSON.stringify(text)}; the tab's VMs: ${JSON.stringify(tab.list())}; the server's: ${JSON.stringify(server.list())}; the log: ${JSON.stringify(log)}`;
  const within = <T>(what: string, p: Promise<T>): Promise<T> =>
    withTimeout(p, 30_000, what).catch((e: Error) => { throw new Error(`${e.message}; ${where()}`); });
  const until = (what: string, ready: () => boolean | Promise<boolean>) => pollUntil(what, async () => (await ready()) || undefined, where);
  try {
    await tab.create({ name: VM, kernel: "/guest/count.bin", memory: "16M", drives: ["file=/opfs/guest/disk.img"] });
    tab.attachConsole(VM, (b) => { text += new TextDecoder().decode(b); });
    await tab.act(VM, "start");
    // Counting (its first digit out), with most of its time to go: a count of instructions would
    // depend on the machine's speed (on a loaded one the guest once ended before it got there).
    await until("the VM counting in the tab", () => text.length >= 1);

    // To the host: it runs there on a copy of its disk in the server's directory.
    const out = await within("the migration to the host", tab.migrate(VM, "tcp:server:1", { copyStorage: true, downtimeMs: 50 }));
    expect(out.phase).toBe("done");
    expect(server.info(VM).state).toBe("running");
    expect(server.info(VM).drives[0]!.startsWith(`${dir}/`)).toBe(true);
    // Its console, from the host, over a WebSocket (the scrollback first), until it leaves.
    const consoleWs = new WebSocket(`${url}/console?vm=${VM}`);
    consoleWs.on("message", (d: Buffer) => { text += d.toString(); });
    const consoleClosed = new Promise<string>((r) => consoleWs.once("close", (_code, why) => r(why.toString())));
    await within("the console's WebSocket opening", new Promise((r) => consoleWs.once("open", r)));
    const atHost = text.length;
    await until("two digits printed at the host", () => text.length >= atHost + 2);

    // And back: the tab takes it in over the WebSocket it opens.
    const back = new WebSocket(`${url}/migrate-back?vm=${VM}`);
    await within("the way back's WebSocket opening", new Promise((r) => back.once("open", r)));
    await within("the migration back to the tab", tab.incoming(wsLink(back as unknown as WebSocketLike, "the server")));
    // The host lets it go once it hears the tab runs it.
    for (let i = 0; i < 100 && server.list().length; i++) await new Promise((r) => setTimeout(r, 20));
    expect(() => server.info(VM)).toThrow(/no VM named/);
    expect(tab.info(VM).state).toBe("running");
    expect(await within("the host's console closing", consoleClosed)).toMatch(/^stopped: migrated to tcp:127\.0\.0\.1:\d+/);
    const copy = tab.info(VM).drives[0]!;
    expect(copy).toMatch(/^\/opfs\/vms\/tab-0123456789abcdef\.\w+\.disk0\.qcow2$/);
    // Gone from the server, so is its copy of the disk.
    await within("the server's side of the first migration ending", r.served);
    expect(removed).toHaveLength(1);
    expect(readdirSync(dir)).toEqual([]);
    tab.attachConsole(VM, (b) => { text += new TextDecoder().decode(b); });
    expect((await within("the VM's end in the tab", tab.waitForEnd(VM))).exitCode).toBe(0);
    // Every digit once, in order, wherever it was printed.
    expect(text).toBe("0123456789");
    // The disk came back byte for byte.
    const d = tabPlatform.openDisk(copy, { format: "qcow2", readOnly: true, what: "the copy" });
    const got = new Uint8Array(d.size);
    d.read(0, got);
    d.close();
    expect(Buffer.compare(got, disk)).toBe(0);
    expect(log).toEqual([`${VM} migrated in from the tab`, `${VM} migrated to the tab`]);
  } finally {
    await r.close();
  }
}, 120_000);

test("a VM from a page with a disk over the server's limit is refused, leaves nothing there, and goes on in the tab", async () => {
  const r = await rig({});
  try {
    r.tabPlatform.createDiskImage("/opfs/guest/big.qcow2", { size: 5 * 2 ** 30, what: "disk" });
    await r.tab.create({ name: VM, kernel: "/guest/count.bin", memory: "16M", drives: ["file=/opfs/guest/big.qcow2"] });
    await r.tab.act(VM, "start");
    await expect(r.tab.migrate(VM, "tcp:server:1", { copyStorage: true })).rejects.toThrow(/disks of at most 4 GiB.*it goes on here/);
    expect(r.tab.info(VM).state).toBe("running");
    for (let i = 0; i < 50 && r.server.list().length; i++) await new Promise((done) => setTimeout(done, 10));
    expect(r.server.list()).toEqual([]);
    expect(readdirSync(r.dir)).toEqual([]);
  } finally {
    await r.close();
  }
}, 60_000);

test("a VM from a page brings only user-mode NICs with the relay's options, its own disks, and USB keyboards", () => {
  const vm = (extra: object) => parseVmConfig({ name: VM, kernel: "/guest/k", ...extra }, DEFINITION_PARSING);
  expect(() => checkTabVm(vm({ nets: ["user,loopback=off"], drives: ["file=/opfs/guest/disk.qcow2"] }), false)).not.toThrow();
  expect(() => checkTabVm(vm({ nets: ["user,loopback=on"] }), true)).not.toThrow();
  expect(() => checkTabVm(vm({ nets: ["user,loopback=on"] }), false)).toThrow(/may not reach its loopback/);
  expect(() => checkTabVm(vm({ nets: ["user,loopback=off,loopback=22"] }), false)).toThrow(/may not reach its loopback/);
  expect(() => checkTabVm(vm({ nets: ["user,hostfwd=tcp::2222-:22"] }), true)).toThrow(/hostfwd is not taken/);
  expect(() => checkTabVm(vm({ nets: ["switch=lab"] }), true)).toThrow(/only user-mode NICs/);
  expect(() => checkTabVm(vm({ drives: ["file=/etc/passwd"] }), true)).toThrow(/brings its own disks, not \/etc\/passwd/);
  expect(() => checkTabVm(vm({ drives: ["file=/opfs/../etc/passwd"] }), true)).toThrow(/brings its own disks/);
  expect(() => checkTabVm(vm({ name: "linux" }), true)).toThrow(/named tab-<16 hex digits>/);
  expect(() => checkTabVm(vm({ memory: "2G" }), true)).toThrow(/at most 1024 MiB, 2 harts and 128 host sockets/);
  expect(() => checkTabVm(vm({ smp: 4 }), true)).toThrow(/at most 1024 MiB, 2 harts and 128 host sockets/);
  expect(() => checkTabVm(vm({ limits: { sockets: 1000 } }), true)).toThrow(/at most 1024 MiB, 2 harts and 128 host sockets/);
  // USB: a keyboard is the page's; a disk or a serial port would be this machine's file or socket.
  expect(() => checkTabVm(vm({ usb: ["kbd"] }), true)).not.toThrow();
  expect(() => checkTabVm(vm({ usb: ["storage,file=/etc/passwd"] }), true)).toThrow(/USB keyboards only, not usb-storage storage0/);
  expect(() => checkTabVm(vm({ usb: ["serial,socket=/run/x.sock"] }), true)).toThrow(/USB keyboards only, not usb-serial serial0/);
});

test("a close reason is cut to the 123 bytes a WebSocket takes, whatever its characters", () => {
  const got: string[] = [];
  closeWith({ close: (_c, r) => { got.push(r); } }, 1008, "€".repeat(100));
  closeWith({ close: () => { throw new Error("closed already"); } }, 1000, "fine");
  expect(new TextEncoder().encode(got[0]).length).toBeLessThanOrEqual(123);
  expect(got[0]).toBe("€".repeat(41));
});
