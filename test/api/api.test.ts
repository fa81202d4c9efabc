// The control API on its own, in front of a fake hypervisor: whatever a client sends, the daemon
// goes on; the socket is private from its first moment; a client that does not read its console
// cannot make the daemon buffer without bound.
import { describe, test, expect, beforeAll, afterAll } from "vitest";
import { mkdtempSync, rmSync, statSync, writeFileSync, readFileSync } from "node:fs";
import { Server as NetServer, createServer as createNetServer } from "node:net";
import type { Server } from "node:http";
import type { Duplex } from "node:stream";
import { execFileSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serveApi, ApiClient, CONSOLE_QUEUE_LIMIT } from "../../host/api/api";
import type { Control } from "../../host/hv/types";
import type { Action } from "../../host/hv/lifecycle";
import type { MigrationProgress, SnapshotProgress } from "../../host/hv/pcpu";
import { badRequest, notFound, type HostInfo, type SnapshotInfo, type UsbInfo, type UsbRequest, type VmInfo, type VmRunStats } from "../../host/hv/types";
import { exchange, statuses, watchUncaught } from "./malformed-requests";

/** One VM, "echo", whose console echoes what is typed; the test can also make it talk. */
class FakeControl implements Control {
  readonly listeners = new Set<(bytes: Uint8Array) => void>();
  /** Make console writes and detaching throw, as a Control whose VM went away might. */
  gone = false;
  readonly vm: VmInfo = { name: "echo", state: "running", pcpu: 0, memory: 16 << 20, vcpus: 1, weight: 1, restarts: 0, moves: 0, drives: [] };

  host(): HostInfo {
    return { pcpus: 1, memoryLimit: 1 << 30, memoryCommitted: this.vm.memory, maxVcpus: 64, vcpusCommitted: 1, fdLimit: 1000, fdsCommitted: 129, vms: 1 };
  }
  list(): VmInfo[] { return [this.vm]; }
  info(name: string): VmInfo {
    if (name !== this.vm.name) throw notFound(`no VM named ${name}`);
    return this.vm;
  }
  async create(): Promise<VmInfo> { throw badRequest("this host takes no new VMs"); }
  async act(name: string, _action: Action): Promise<VmInfo> { return this.info(name); }
  async move(name: string, pcpu: number): Promise<VmInfo> {
    if (pcpu !== 0) throw badRequest(`pCPU ${pcpu} does not exist`);
    return this.info(name);
  }
  async destroy(name: string): Promise<void> { this.info(name); }
  /** Snapshot and restore requests, as the API passed them on. */
  readonly saved: unknown[] = [];
  async snapshot(name: string, file: string, opts: { stop?: boolean } = {}): Promise<SnapshotInfo> {
    this.info(name);
    this.saved.push({ snapshot: name, file, ...opts });
    return { name, file, bytes: 1, pages: 1, totalMs: 1, downtimeMs: 0, state: opts.stop ? "stopped" : "running" };
  }
  async restore(file: string, opts: { name?: string; paused?: boolean } = {}): Promise<VmInfo> {
    this.saved.push({ restore: file, ...opts });
    return { ...this.vm, name: opts.name ?? this.vm.name, state: opts.paused ? "created" : "running" };
  }
  async migrate(name: string, to: string, opts: { downtimeMs?: number; maxRounds?: number; postcopy?: boolean; copyStorage?: boolean } = {}): Promise<MigrationProgress> {
    this.info(name);
    this.saved.push({ migrate: name, to, ...opts });
    return this.migration(name);
  }
  snapshotProgress(name: string): SnapshotProgress {
    this.info(name);
    return { phase: "saving", memory: 0.5, bytes: 1 << 20, elapsedMs: 20 };
  }
  migration(name: string): MigrationProgress {
    this.info(name);
    return { phase: "done", round: 1, sentBytes: 10, sentPages: 2, dirtyPages: 0, dirtyRateMBs: 0, bandwidthMBs: 1, expectedDowntimeMs: 0, elapsedMs: 3, downtimeMs: 1 };
  }
  async stats(name: string): Promise<VmRunStats> {
    this.info(name);
    return { name, instructions: 0, cpuMs: 0, stealMs: 0, wakeLatencyMs: { p50: 0, p99: 0, samples: 0 }, exits: {} };
  }
  async usb(name: string, request: UsbRequest): Promise<UsbInfo> {
    this.info(name);
    this.saved.push({ usb: name, ...request });
    return { devices: [] };
  }
  attachConsole(name: string, onOutput: (bytes: Uint8Array) => void) {
    this.info(name);
    this.listeners.add(onOutput);
    return {
      write: (bytes: Uint8Array) => {
        if (this.gone) throw new Error("echo's pCPU worker died");
        this.output(bytes);
      },
      detach: () => {
        this.listeners.delete(onOutput);
        if (this.gone) throw new Error("echo's pCPU worker died");
      },
    };
  }
  /** The guest writes to its console. */
  output(bytes: Uint8Array): void {
    for (const l of this.listeners) l(bytes);
  }
}

let dir: string;
let socket: string;
let control: FakeControl;
let server: Server;
let api: ApiClient;
/** The daemon's side of each console connection (to look at what it has queued). */
const consoleSockets: Duplex[] = [];
let uncaught: ReturnType<typeof watchUncaught>;

beforeAll(async () => {
  uncaught = watchUncaught();
  dir = mkdtempSync(join(tmpdir(), "wasmvisor-api-"));
  socket = join(dir, "api.sock");
  control = new FakeControl();
  server = await serveApi(control, socket);
  server.on("upgrade", (_req, s: Duplex) => consoleSockets.push(s));
  api = new ApiClient(socket);
});

afterAll(() => {
  uncaught?.stop();
  server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Nothing would have ended the daemon, and the API still answers, correctly. */
async function stillServing(): Promise<void> {
  expect(uncaught.errors).toEqual([]);
  expect(await api.call<HostInfo>("GET", "/host")).toEqual(control.host());
  expect(await api.call<VmInfo[]>("GET", "/vms")).toEqual([control.vm]);
}

const upgradeTo = (target: string, extra = "") =>
  `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: wasmvisor-console\r\n\r\n${extra}`;
const get = (target: string) => `GET ${target} HTTP/1.1\r\nHost: x\r\n\r\n`;
const errorOf = (reply: string) => JSON.parse(reply.slice(reply.indexOf("\r\n\r\n") + 4)).error as string;

describe("the control API: malformed requests", () => {
  test("a malformed path is a 400, in a console upgrade as in any request; odd but valid targets route or 404", async () => {
    // The request: it used to end the daemon on a URIError.
    let reply = await exchange(socket, [upgradeTo("/vms/%/console")]);
    expect(statuses(reply)).toEqual([400]);
    expect(errorOf(reply)).toMatch(/malformed percent-encoding in the request path/);
    // "//" used to end it on a TypeError (new URL took it for a host).
    expect(statuses(await exchange(socket, [upgradeTo("//")]))).toEqual([404]);
    expect(statuses(await exchange(socket, [upgradeTo("http://x/vms/%zz/console")]))).toEqual([400]);
    for (const target of ["/vms/%zz", "/vms/%e0%80", "/%", "/vms/echo/%/x"]) {
      reply = await exchange(socket, [get(target)]);
      expect(statuses(reply), target).toEqual([400]); // was 500
      expect(errorOf(reply)).toMatch(/malformed percent-encoding .*encodeURIComponent/);
    }
    expect(statuses(await exchange(socket, [get("http://wasmvisor/host")]))).toEqual([200]); // absolute form
    expect(statuses(await exchange(socket, [get("*")]))).toEqual([404]);
    expect(statuses(await exchange(socket, [get("/vms/echo?x=%zz")]))).toEqual([200]); // the query is not looked at
    // A bad request does not spoil the connection: pipelined requests after it are answered.
    expect(statuses(await exchange(socket, [get("/vms/%zz") + get("/host")]))).toEqual([400, 200]);
    await stillServing();
  });

  test("what the HTTP parser rejects gets a JSON 400 that says so, and the connection closes", async () => {
    for (const text of ["BREW /host HTTP/1.1\r\n\r\n", "GET /host HTTP/1.1\r\nContent-Length: x\r\n\r\n",
      "POST /vms HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", `GET /host HTTP/1.1\r\nX: ${"b".repeat(70_000)}\r\n\r\n`]) {
      const reply = await exchange(socket, [text], "read", 2000);
      expect(statuses(reply), text.slice(0, 30)).toEqual([400]);
      expect(reply).toMatch(/content-type: application\/json/);
      expect(errorOf(reply)).toMatch(/^malformed HTTP\/1\.1 request: .*\(HPE_/);
    }
    await stillServing();
  });

  test("a body over the limit is a 400 with the reason, and the connection goes on", async () => {
    const body = "x".repeat(1.5 * 2 ** 20);
    const reply = await exchange(socket, [`POST /vms HTTP/1.1\r\nContent-Length: ${body.length}\r\n\r\n${body}` + get("/host")], "read", 1000);
    expect(statuses(reply)).toEqual([400, 200]);
    expect(errorOf(reply.slice(0, reply.indexOf("HTTP/1.1 200")))).toBe("request body larger than 1048576 bytes");
    expect(statuses(await exchange(socket, ["POST /vms HTTP/1.1\r\nContent-Length: 8\r\n\r\nnot json"]))).toEqual([400]);
    await stillServing();
  });

  test("console clients that drop their connection, refused or attached, do not end the daemon", async () => {
    // An upgraded socket has no error handler of Node's: a closed peer while the daemon writes to it
    // (its refusal, the 101, the scrollback) must meet one of ours.
    for (let i = 0; i < 100; i++) {
      await exchange(socket, [upgradeTo(["/vms/ghost/console", "/vms/%/console", "/vms/echo/console"][i % 3], "typed ahead")], "destroy");
    }
    // Output to a client that has just gone.
    const con = await api.console("echo");
    con.destroy();
    control.output(new Uint8Array(1000));
    await new Promise((r) => setTimeout(r, 50));
    control.output(new Uint8Array(1000));
    expect(control.listeners.size).toBe(0); // every client detached
    await stillServing();
  });

  test("a console write or detach that throws (the VM or its worker gone) ends that session with the reason, not the daemon", async () => {
    const con = await api.console("echo");
    let seen = "";
    con.on("data", (d: Buffer) => { seen += d.toString("latin1"); });
    con.write("hi");
    await until(() => seen === "hi");
    control.gone = true;
    try {
      con.write("more");
      await new Promise((r) => con.once("end", r));
      expect(seen).toBe("hi\r\n[wasmvisor: echo's pCPU worker died]\r\n");
      con.destroy(); // the daemon detaches, which throws too
      await until(() => control.listeners.size === 0);
      await new Promise((r) => setTimeout(r, 50));
    } finally {
      control.gone = false;
    }
    await stillServing();
  });
});

describe("the control API: snapshots and migration", () => {
  test("snapshot, restore and migrate pass their fields on; a missing or mistyped field is a 400 naming it", async () => {
    control.saved.length = 0;
    expect(await api.call<SnapshotInfo>("POST", "/vms/echo/snapshot", { file: "/tmp/s.wvs", stop: true })).toMatchObject({ file: "/tmp/s.wvs", state: "stopped" });
    expect(await api.call<VmInfo>("POST", "/restore", { file: "/tmp/s.wvs", name: "copy", paused: true })).toMatchObject({ name: "copy", state: "created" });
    expect(control.saved).toEqual([{ snapshot: "echo", file: "/tmp/s.wvs", stop: true }, { restore: "/tmp/s.wvs", name: "copy", paused: true }]);
    await expect(api.call("POST", "/vms/echo/snapshot", {})).rejects.toThrow(/'file' must be a non-empty string/);
    await expect(api.call("POST", "/vms/echo/snapshot", { file: "x", stop: "yes" })).rejects.toThrow(/'stop' must be a boolean/);
    await expect(api.call("POST", "/restore", [])).rejects.toThrow(/body must be a JSON object/);
    await expect(api.call("POST", "/restore", { file: 7 })).rejects.toThrow(/'file' must be a non-empty string/);
    await expect(api.call("POST", "/vms/nope/snapshot", { file: "x" })).rejects.toThrow(/no VM named nope/);
    expect(control.saved).toHaveLength(2);
    expect(await api.call<MigrationProgress>("POST", "/vms/echo/migrate", { to: "tcp:h:1", downtimeMs: 20 })).toMatchObject({ phase: "done" });
    expect(control.saved[2]).toEqual({ migrate: "echo", to: "tcp:h:1", downtimeMs: 20, maxRounds: undefined, postcopy: undefined, copyStorage: undefined });
    await api.call("POST", "/vms/echo/migrate", { to: "tcp:h:1", postcopy: true, copyStorage: true });
    expect(control.saved[3]).toMatchObject({ postcopy: true, copyStorage: true });
    await expect(api.call("POST", "/vms/echo/migrate", { to: "tcp:h:1", copyStorage: 1 })).rejects.toThrow(/'copyStorage' must be a boolean/);
    expect(await api.call<SnapshotProgress>("GET", "/vms/echo/snapshot")).toEqual({ phase: "saving", memory: 0.5, bytes: 1 << 20, elapsedMs: 20 });
    await expect(api.call("POST", "/vms/echo/migrate", { to: "tcp:h:1", downtimeMs: "5" })).rejects.toThrow(/'downtimeMs' must be a number/);
    expect((await api.call<MigrationProgress>("GET", "/vms/echo/migration")).phase).toBe("done");
    await stillServing();
  });
});

describe("the control API: a console client that does not read", () => {
  test("has at most the limit queued in the daemon; once it reads again it is told how much it lost", async () => {
    const con = await api.console("echo");
    await until(() => control.listeners.size === 1);
    const daemonSide = consoleSockets[consoleSockets.length - 1];
    // The client reads nothing while the guest writes 32 MiB.
    const chunk = new Uint8Array(64 * 1024).fill(0x2e);
    const total = 32 * 2 ** 20;
    let peak = 0;
    for (let sent = 0; sent < total; sent += chunk.length) {
      control.output(chunk);
      peak = Math.max(peak, daemonSide.writableLength);
    }
    expect(peak).toBeLessThanOrEqual(CONSOLE_QUEUE_LIMIT + chunk.length);
    // It reads again: what was queued, then the notice; then new output as it comes.
    let seen = "";
    con.on("data", (d: Buffer) => { seen += d.toString("latin1"); });
    const notice = /\r\n\[wasmvisor: (\d+) bytes of console output dropped: this client did not keep up\]\r\n/;
    await until(() => notice.test(seen));
    control.output(Buffer.from("after"));
    await until(() => seen.endsWith("after"));
    const dropped = Number(notice.exec(seen)![1]);
    const [before, after] = seen.split(notice.exec(seen)![0]);
    expect(before).toMatch(/^\.+$/);
    expect(after).toBe("after");
    expect(before.length + dropped).toBe(total);
    expect(dropped).toBeGreaterThan(total / 2);
    con.destroy();
  });
});

describe("the control API's socket", () => {
  test("is 0600 from the moment it exists, even under umask 0", async () => {
    // Look at it from the 'listening' event, before anything serveApi might do afterwards.
    const path = join(dir, "umask.sock");
    const listen = NetServer.prototype.listen;
    let modeWhenListening = -1;
    NetServer.prototype.listen = function (this: NetServer, ...args: unknown[]) {
      this.once("listening", () => { modeWhenListening = statSync(path).mode & 0o777; });
      return (listen as (...a: unknown[]) => NetServer).apply(this, args);
    } as typeof listen;
    const umask = process.umask(0);
    let s: Server | undefined;
    try {
      s = await serveApi(control, path);
    } finally {
      NetServer.prototype.listen = listen;
      process.umask(umask);
    }
    s.close();
    expect(modeWhenListening.toString(8)).toBe("600");
    expect(process.umask()).toBe(umask); // put back
  });

  test("a regular file where the socket should go is an error, and it is left alone", async () => {
    const path = join(dir, "notes.txt");
    writeFileSync(path, "precious");
    await expect(serveApi(control, path)).rejects.toThrow(`${path} exists and is a regular file, not a socket: wasmvisor host will not replace it`);
    expect(readFileSync(path, "utf8")).toBe("precious");
  });

  test("a stale socket of ours is replaced; one with a host behind it is not", async () => {
    const path = join(dir, "stale.sock");
    const other = createNetServer();
    await new Promise<void>((r) => other.listen(path, r));
    await expect(serveApi(control, path)).rejects.toThrow(/another wasmvisor host is listening there/);
    await new Promise((r) => other.close(r));
    // A host that exited without closing its server leaves its socket file behind.
    execFileSync(process.execPath, ["-e", `require("node:net").createServer().listen(${JSON.stringify(path)}, () => process.exit(0))`]);
    expect(statSync(path).isSocket()).toBe(true);
    const s = await serveApi(control, path);
    expect(await new ApiClient(path).call("GET", "/host")).toEqual(control.host());
    s.close();
  });
});

async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 10));
  }
}
