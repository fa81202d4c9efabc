// The page `wasmvisor web` serves: the Linux guest booted in this tab (its hart in a pCPU Web
// Worker, its data disk a copy-on-write overlay in the browser's storage over the served image,
// its NIC relayed to the server's user-mode networking), its console on xterm.js, and a panel
// with its state, live figures and the buttons that act on it. Only the embedding API is used.
import "@xterm/xterm/css/xterm.css";
import "./style.css";
import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import { guestVm, PROMPT } from "./guest-vm";
import { browserPlatform, createHost, parseVmConfig, wsLink, type BrowserPlatform, type Hypervisor, type WebSocketLike } from "../host/browser";

/**
 * The VM's name: unguessable and this browser's own (kept in localStorage), because on the server
 * the name is what lets a page reach its VM (its console, bringing it back).
 */
const VM = localStorage.getItem("wasmvisor.vm") ?? (() => {
  const name = `tab-${Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0")).join("")}`;
  localStorage.setItem("wasmvisor.vm", name);
  return name;
})();
const GUEST_DIR = "/opfs/guest/";
/**
 * The guest's data disk: an overlay over the served disk.ext4, made on the first boot and after a
 * Reset disk, each time under a new name: a state saved before a reset names the old disk, and
 * must not go on with the new one.
 */
const newDisk = () => `${GUEST_DIR}disk-${Date.now().toString(36)}.qcow2`;
const STATES = "/opfs/states/";
/** Copies of disks that came back with a VM from the server. */
const VMS_DIR = "/opfs/vms/";
/** Where the disk is now: the first boot's, or where a save moved the VM (an overlay), or the copy it came back from the server on (localStorage). */
const DISK_HEAD_KEY = "wasmvisor.disk";
/** "host" while the VM runs on the server (localStorage): a reload then shows its console there. */
const WHERE_KEY = "wasmvisor.where";
const PLOT_SECONDS = 60;

interface ServerConfig {
  guest: Record<string, { path: string; size: number }>;
  token: string;
  /** Whether guests may reach the server's 127.0.0.1 (only when it listens on its loopback). */
  loopback: boolean;
  websockets: Record<string, string>;
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const message = $<HTMLParagraphElement>("message");
function say(text: string, error = false): void {
  message.textContent = text;
  message.classList.toggle("error", error);
}
const failed = (what: string) => (e: unknown) => say(`${what}: ${e instanceof Error ? e.message : String(e)}`, true);
window.addEventListener("error", (e) => say(`error: ${e.message}`, true));
window.addEventListener("unhandledrejection", (e) => failed("error")(e.reason));

// ---- the terminal -----------------------------------------------------------------------------

const term = new Terminal({ convertEol: false, scrollback: 5000, fontSize: 14, lineHeight: 1.1, theme: { background: "#111111" } });
const fit = new FitAddon();
term.loadAddon(fit);
term.open($("terminal"));
fit.fit();
window.addEventListener("resize", () => fit.fit());

/** The terminal's text, a line per line the guest wrote (rows it wrapped joined again): what tests read. */
function screen(): string {
  const b = term.buffer.active;
  let text = "";
  for (let i = 0; i < b.length; i++) {
    const line = b.getLine(i);
    if (!line) continue;
    text += (i > 0 && !line.isWrapped ? "\n" : "") + line.translateToString(true);
  }
  return text;
}

// ---- the VM -------------------------------------------------------------------------------------

let platform: BrowserPlatform;
let host: Hypervisor;
let config: ServerConfig;
/** Bumped whenever the VM is replaced: what an old VM's end or console does is then ignored. */
let generation = 0;
let detach: (() => void) | null = null;
let bootStarted = 0;
/** What the host last said by itself (a refused migration says why there). */
let lastEvent = "";
let bootMs: number | undefined;
const encoder = new TextEncoder();

const exported = {
  get host() { return host; },
  get platform() { return platform; },
  vm: VM,
  term,
  screen,
  /** Milliseconds from start to the first shell prompt of the last boot. */
  get bootMs() { return bootMs; },
  /** Resolves when the page has booted (or restored) its VM; rejects with why not. */
  ready: Promise.resolve() as Promise<void>,
};
(window as unknown as { wasmvisor: typeof exported }).wasmvisor = exported;

async function start(): Promise<void> {
  const r = await fetch("config.json");
  if (!r.ok) throw new Error(`config.json: the server answered ${r.status}`);
  config = await r.json() as ServerConfig;
  const g = (name: string) => {
    const f = config.guest[name];
    if (!f) throw new Error(`the server serves no ${name}: restart 'wasmvisor web' with a complete --guest directory`);
    return f.path;
  };
  const token = `?token=${encodeURIComponent(config.token)}`;
  platform = await browserPlatform({
    images: [g("fw_jump.bin"), g("Image"), g("initramfs.cpio.gz")],
    defaultFirmware: g("fw_jump.bin"),
    netRelay: config.websockets.net ? config.websockets.net + token : undefined,
    migration: config.websockets.migrate,
  });
  $("storage").textContent = platform.storage.kind === "opfs" ? "Origin Private File System" : "IndexedDB";
  host = await createHost(platform, {
    cpus: 1, balance: false, watchdogSeconds: 0, overcommit: Infinity,
    onEvent: (line) => { lastEvent = line; },
    // Migrations to and from the server are authenticated by the page's session token.
    migrationKey: encoder.encode(config.token),
    // Disk copies of a VM that comes back from the server go to the first.
    imageDirs: [VMS_DIR, GUEST_DIR, STATES, "/guest/"],
  });
  if (localStorage.getItem(WHERE_KEY) === "host") {
    const there = await fetch(`vms.json?vm=${VM}`).then((r) => r.json() as Promise<{ name: string; state: string }[]>, () => []);
    if (there.some((v) => v.name === VM && v.state === "running")) return watchOnServer();
    localStorage.removeItem(WHERE_KEY);
  }
  await boot();
}

/** A WebSocket to the server's `path` with the session token (and `query`). */
function serverSocket(path: string, query = ""): WebSocket {
  const url = config.websockets[path];
  if (!url) throw new Error(`the server offers no ${path}: update it`);
  const ws = new WebSocket(`${url}?token=${encodeURIComponent(config.token)}${query}`);
  ws.binaryType = "arraybuffer";
  return ws;
}

/** The disk the VM boots with: where it is now, or a new overlay. */
async function guestDisk(): Promise<string> {
  const head = localStorage.getItem(DISK_HEAD_KEY);
  if (head && await exists(head)) return head;
  const disk = newDisk();
  await platform.createOverlay(disk, { path: config.guest["disk.ext4"].path, format: "raw" });
  localStorage.setItem(DISK_HEAD_KEY, disk);
  return disk;
}

async function exists(path: string): Promise<boolean> {
  return (await platform.storage.list(path.slice(0, path.lastIndexOf("/") + 1))).includes(path);
}

async function boot(): Promise<void> {
  const disk = await guestDisk();
  const vmConfig = parseVmConfig(guestVm(VM, {
    firmware: config.guest["fw_jump.bin"].path,
    kernel: config.guest.Image.path,
    initrd: config.guest["initramfs.cpio.gz"].path,
    disk,
    // The server's 127.0.0.1 is the guest's 10.0.2.2, as with `wasmvisor start`, when it is only this machine's.
    loopback: config.loopback,
  }));
  say("booting…");
  await host.createVm(vmConfig);
  attach();
  bootStarted = performance.now();
  await host.act(VM, "start");
  say("running");
}

/** The console on the terminal, and what happens when the VM ends. */
function attach(fresh = true): void {
  const mine = ++generation;
  setPlace("tab");
  showKeys(false); // a machine built here starts with the keys on its console
  if (fresh) {
    bootMs = undefined;
    $("boot").textContent = "-";
    term.reset();
  } else if (bootMs === undefined) {
    bootMs = 0; // no boot to time: it came back from the server running
    $("boot").textContent = "came back";
  }
  let pending = 0;
  let held = false;
  let tail = "";
  const decoder = new TextDecoder();
  const serial = host.attachConsole(VM, (bytes) => {
    pending += bytes.length;
    term.write(bytes, () => {
      pending -= bytes.length;
      if (held && pending < 1 << 16) {
        held = false;
        serial.resume();
      }
    });
    if (bootMs === undefined) {
      tail = (tail + decoder.decode(bytes, { stream: true })).slice(-64);
      if (tail.includes(PROMPT)) {
        bootMs = performance.now() - bootStarted;
        $("boot").textContent = `${(bootMs / 1000).toFixed(1)} s`;
      }
    }
    // A terminal that falls behind holds the console back (the guest waits, nothing is lost).
    held = pending >= 1 << 20;
    return !held;
  });
  const keys = term.onData((s) => serial.write(encoder.encode(s)));
  detach = () => { keys.dispose(); serial.detach(); };
  void host.waitForEnd(VM).then((end) => {
    if (mine !== generation || end.reason?.startsWith("migrated to")) return;
    say(`the VM ${end.state}${end.reason ? `: ${end.reason}` : ""}; Reset boots it again`, end.state === "failed");
  }, () => {});
}

/**
 * After a save or a restore the disk the state names is the state's: the VM goes on in an
 * overlay made beside the state file; after a migration back, on a copy. That is then the disk
 * the next boot uses too.
 */
function followDisk(): void {
  const disk = host.info(VM).drives[0];
  if (disk) localStorage.setItem(DISK_HEAD_KEY, disk);
}

/** The VM runs on the server: its console over a WebSocket, until it leaves. */
function watchOnServer(): void {
  const mine = ++generation;
  localStorage.setItem(WHERE_KEY, "host");
  $("state").textContent = "running on the server";
  for (const id of ["mips", "cpu"]) $(id).textContent = "-";
  setPlace("host");
  const ws = serverSocket("console", `&vm=${VM}`);
  // Keys in pieces the server takes (a paste may be long).
  const keys = term.onData((s) => {
    const bytes = encoder.encode(s);
    for (let at = 0; at < bytes.length && ws.readyState === WebSocket.OPEN; at += 4096) ws.send(bytes.subarray(at, at + 4096));
  });
  ws.onmessage = (e) => term.write(new Uint8Array(e.data as ArrayBuffer));
  ws.onclose = (e) => {
    keys.dispose();
    if (mine !== generation) return;
    if (e.code === 1000 && !/migrated to/.test(e.reason)) {
      // It ended there (a poweroff in its console): this tab is its place again, with the disk it had.
      localStorage.removeItem(WHERE_KEY);
      setPlace("tab");
      say(`the VM ended on the server (${e.reason}); Reset boots it again in this tab, on the disk it had before it left`);
      return;
    }
    say(`the server's console closed${e.reason ? `: ${e.reason}` : ""}`, e.code !== 1000);
  };
  detach = () => { keys.dispose(); ws.close(); };
  say("running on the server: its console is here; Bring back returns it to this tab");
}

/** Which buttons make sense: those for a VM here, or Bring back for one on the server. */
function setPlace(where: "tab" | "host"): void {
  document.body.dataset.place = where;
}

async function discard(): Promise<void> {
  if (document.body.dataset.place === "host") throw new Error("the VM runs on the server: bring it back first");
  generation++;
  detach?.();
  detach = null;
  if (host.list().some((v) => v.name === VM)) await host.destroy(VM);
}

// ---- buttons ------------------------------------------------------------------------------------

const buttons = Array.from(document.querySelectorAll<HTMLButtonElement | HTMLInputElement>("#buttons button, #load"));
for (const b of buttons) b.disabled = true; // until the page has started
/** One action at a time; its failure is said. */
function action(id: string, what: string, run: () => Promise<void>, event: "click" | "change" = "click"): void {
  $(id).addEventListener(event, () => {
    for (const b of buttons) b.disabled = true;
    run().catch(failed(what)).finally(() => { for (const b of buttons) b.disabled = false; });
  });
}

action("pause", "pause", async () => { await host.act(VM, "pause"); say("paused"); });
/** Whether the terminal's keys go to the guest's USB keyboard rather than its console. */
let keysToKeyboard = false;
function showKeys(toKeyboard: boolean): void {
  keysToKeyboard = toKeyboard;
  $("keys").textContent = toKeyboard ? "Keys to console" : "Keys to USB keyboard";
}
action("keys", "switch where the keys go", async () => {
  await host.usb(VM, { op: "console", id: keysToKeyboard ? null : "kbd0" });
  showKeys(!keysToKeyboard);
  say(keysToKeyboard ? "keys go to the USB keyboard (/dev/input/event0)" : "keys go to the console");
});
action("resume", "resume", async () => { await host.act(VM, "resume"); say("running"); });
action("reset", "reset", async () => { await discard(); await boot(); });
action("reset-disk", "reset the disk", async () => {
  await discard();
  // Everything made over the old disk goes with it: overlays of saved states, copies from the server.
  for (const dir of [GUEST_DIR, STATES, VMS_DIR]) await platform.storage.remove(dir);
  localStorage.removeItem(DISK_HEAD_KEY);
  await boot();
});
action("save", "save the state", async () => {
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*$/, "").replace("T", "-");
  const path = `${STATES}${VM}-${stamp}.wvs`;
  say("saving the state…");
  const r = await host.snapshot(VM, path);
  followDisk();
  const bytes = await platform.readState(path);
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([bytes as Uint8Array<ArrayBuffer>], { type: "application/octet-stream" }));
  a.download = `wasmvisor-linux-${stamp}.wvs`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 60_000);
  say(`saved ${(r.bytes / 2 ** 20).toFixed(1)} MiB in ${(r.totalMs / 1000).toFixed(2)} s (the guest paused ${r.downtimeMs.toFixed(0)} ms)`);
});
action("load", "load the state", async () => {
  const input = $<HTMLInputElement>("load");
  const file = input.files?.[0];
  input.value = "";
  if (!file) return;
  const path = `${STATES}loaded-${Date.now().toString(36)}.wvs`;
  say(`loading ${file.name}…`);
  await platform.loadState(path, new Uint8Array(await file.arrayBuffer()));
  await discard();
  const info = await host.restore(path, { name: VM, paused: true });
  followDisk();
  attach();
  bootMs = 0; // no boot: it goes on where it was saved
  $("boot").textContent = "restored";
  await host.act(info.name, "start");
  say(`running from ${file.name}`);
}, "change");

action("migrate", "migrate to the server", async () => {
  const url = new URL(config.websockets.migrate);
  say("migrating to the server…");
  const r = await host.migrate(VM, `tcp:${url.hostname}:${url.port || 80}`, { copyStorage: true, downtimeMs: 50 });
  detach?.();
  detach = null;
  term.write("\r\n\x1b[2m[wasmvisor: the VM now runs on the server]\x1b[0m\r\n");
  watchOnServer();
  say(`migrated in ${(r.elapsedMs / 1000).toFixed(2)} s (the guest paused ${r.downtimeMs?.toFixed(0)} ms); it runs on the server`);
});
action("bring-back", "bring the VM back", async () => {
  say("bringing the VM back…");
  lastEvent = "";
  const ws = serverSocket("migrate-back", `&vm=${VM}`);
  await new Promise<void>((resolve, reject) => {
    ws.onopen = () => resolve();
    ws.onerror = () => reject(new Error("the server refused the WebSocket"));
  });
  const closed = new Promise<string>((resolve) => ws.addEventListener("close", (e) => resolve(e.reason)));
  // A refusal (of this page, or the server's) is said by the host's event, or the server's close.
  await host.incoming(wsLink(ws as unknown as WebSocketLike, "the server"));
  if (!host.list().some((v) => v.name === VM)) throw new Error(`it did not come: ${lastEvent || await closed || "the server closed the link"}`);
  detach?.();
  localStorage.removeItem(WHERE_KEY);
  setPlace("tab");
  followDisk();
  term.write("\r\n\x1b[2m[wasmvisor: the VM is back in this tab]\x1b[0m\r\n");
  attach(false);
  say("running in this tab again");
});

// ---- figures ------------------------------------------------------------------------------------

interface Series { name: string; color: string; values: number[] }

/** A small line plot of the last PLOT_SECONDS samples, scaled to its largest value. */
function drawPlot(canvas: HTMLCanvasElement, title: string, series: Series[]): void {
  const ctx = canvas.getContext("2d")!;
  const { width: w, height: h } = canvas;
  const top = 16, bottom = 4;
  ctx.clearRect(0, 0, w, h);
  const max = Math.max(1e-9, ...series.flatMap((s) => s.values));
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#888";
  ctx.fillText(`${title} (max ${max < 10 ? max.toFixed(1) : Math.round(max)})`, 4, 11);
  ctx.strokeStyle = "#333";
  ctx.beginPath();
  ctx.moveTo(0, h - bottom + 0.5);
  ctx.lineTo(w, h - bottom + 0.5);
  ctx.stroke();
  let legendX = w;
  for (const s of [...series].reverse()) {
    const text = s.name;
    legendX -= ctx.measureText(text).width + 8;
    ctx.fillStyle = s.color;
    ctx.fillText(text, legendX, 11);
  }
  const step = w / (PLOT_SECONDS - 1);
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    s.values.forEach((v, i) => {
      const x = w - (s.values.length - 1 - i) * step;
      const y = h - bottom - (v / max) * (h - top - bottom);
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }
}

const COLORS = ["#e3b341", "#58a6ff", "#3fb950", "#f778ba", "#a371f7", "#ff7b72", "#79c0ff"];
const mips: Series = { name: "MIPS", color: COLORS[0], values: [] };
const exitSeries = new Map<string, Series>();
let last: { at: number; instructions: number; exits: Record<string, number>; cpuMs: number; stealMs: number } | null = null;
const push = (s: Series, v: number) => { s.values.push(v); if (s.values.length > PLOT_SECONDS) s.values.shift(); };

async function sample(): Promise<void> {
  if (!host || !host.list().some((v) => v.name === VM)) return;
  const info = host.info(VM);
  $("state").textContent = info.state + (info.reason && info.state !== "running" ? ` (${info.reason})` : "");
  if (info.state !== "running" && info.state !== "paused") {
    last = null;
    return;
  }
  const s = await host.stats(VM);
  const now = performance.now();
  if (last && s.instructions >= last.instructions) {
    const dt = (now - last.at) / 1000;
    const rate = (s.instructions - last.instructions) / dt / 1e6;
    push(mips, rate);
    $("mips").textContent = rate.toFixed(1);
    $("cpu").textContent = `${((s.cpuMs - last.cpuMs) / dt / 10).toFixed(0)} % / ${((s.stealMs - last.stealMs) / dt / 10).toFixed(0)} %`;
    for (const [reason, n] of Object.entries(s.exits)) {
      let series = exitSeries.get(reason);
      if (!series) exitSeries.set(reason, series = { name: reason, color: COLORS[1 + exitSeries.size % (COLORS.length - 1)], values: new Array(mips.values.length - 1).fill(0) });
      push(series, Math.max(0, n - (last.exits[reason] ?? 0)) / dt);
    }
  }
  last = { at: now, instructions: s.instructions, exits: { ...s.exits }, cpuMs: s.cpuMs, stealMs: s.stealMs };
  drawPlot($<HTMLCanvasElement>("mips-plot"), "MIPS, last 60 s", [mips]);
  drawPlot($<HTMLCanvasElement>("exits-plot"), "exits/s", [...exitSeries.values()].filter((x) => x.values.some((v) => v > 0)));
}
setInterval(() => { void sample().catch(() => {}); }, 1000);

exported.ready = start();
// Once started, or failed after the host exists (a bad disk: Reset disk is the way out).
const enable = () => { if (host) for (const b of buttons) b.disabled = false; };
void exported.ready.then(enable, enable);
exported.ready.catch(failed(globalThis.crossOriginIsolated ? "cannot start" : "this page is not cross-origin isolated"));
