/**
 * The daemon's control API: a real Hypervisor (Node's platform, one pCPU) with a VM running, served on a Unix socket, sent requests built from the input: any
 * method, a path of route words, names, dot segments, percent-escapes and bytes, headers
 * (lengths right, wrong, huge; chunked; upgrades to the console protocol and others), and
 * bodies (VM definitions with hostile fields, or bytes), sometimes cut off or followed by more.
 * A crash is an internal error (500), an exception escaping the server, or a daemon that no
 * longer answers; after each input the VM is put back if a request removed or stopped it.
 */
import { connect, type Socket } from "node:net";
import { isMainThread } from "node:worker_threads";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { InputReader, InputWriter } from "../engine/input";
import { rejectsNothing, type Target } from "../engine/target";
import { Hypervisor } from "../../host/hv/hypervisor";
import { nodePlatform } from "../../host/platform/node";
import { serveApi, CONSOLE_PROTOCOL } from "../../host/api/api";
import { assemble } from "../../host/util/riscv-asm";
import { ECHO_GUEST, watchUncaught } from "../../test/api/malformed-requests";

interface ApiRig {
  hv: Hypervisor;
  server: Server;
  socket: string;
  dir: string;
  uncaught: ReturnType<typeof watchUncaught>;
  /** Connections opened whose server side has not been accepted yet, in the order they were opened. */
  unpaired: Conn[];
}

/** One connection the target opened, seen from both ends (the server runs in this thread). */
interface Conn {
  /** The server's socket: the listener accepts connections in the order they were made. */
  server: Socket | null;
  /** The requests the server parsed on it. */
  requests: { req: IncomingMessage; res: ServerResponse }[];
  /** The server switched it to the console protocol. */
  upgraded: boolean;
}

/** Watch the server's side of the target's connections (beside the API's own listeners, which see no change). */
function watchServer(rig: ApiRig): void {
  const conns = new WeakMap<Socket, Conn>();
  rig.server.prependListener("connection", (socket: Socket) => {
    const conn = rig.unpaired.shift();
    if (!conn) return;
    conn.server = socket;
    conns.set(socket, conn);
  });
  rig.server.prependListener("request", (req: IncomingMessage, res: ServerResponse) => conns.get(req.socket as Socket)?.requests.push({ req, res }));
  rig.server.prependListener("upgrade", (_req: IncomingMessage, socket: Socket) => { const c = conns.get(socket); if (c) c.upgraded = true; });
}

let ECHO = { name: "echo", bios: "none", kernel: "echo.bin", memory: "16M" };

async function setup(): Promise<ApiRig> {
  const dir = mkdtempSync(join(tmpdir(), "wasmvisor-fuzz-api-"));
  const socket = join(dir, "api.sock");
  const kernel = join(dir, "echo.bin");
  writeFileSync(kernel, assemble(ECHO_GUEST, { origin: 0x80000000 }).bytes);
  ECHO = { ...ECHO, kernel };
  // Node's platform: the pCPU is a worker thread, so the VM runs beside the requests, as in the daemon.
  // As the daemon: images, disks and snapshots only inside its directory (here the target's own).
  const hv = await Hypervisor.start(nodePlatform, { cpus: 1, balance: false, hostMemory: 256 << 20, imageDirs: [dir] });
  const uncaught = watchUncaught();
  const server = await listenFromWorker(() => serveApi(hv, socket));
  const rig: ApiRig = { hv, server, socket, dir, uncaught, unpaired: [] };
  watchServer(rig);
  await restoreEcho(rig);
  return rig;
}

/**
 * serveApi binds its socket under umask 0177; a worker thread (where `npm run fuzz` runs each
 * target) may only read the umask, so there the socket is bound under the process's own.
 */
async function listenFromWorker<T>(listen: () => Promise<T>): Promise<T> {
  if (isMainThread) return listen();
  const umask = process.umask;
  const current = umask.call(process, undefined as unknown as number);
  process.umask = (() => current) as typeof process.umask;
  try {
    return await listen();
  } finally {
    process.umask = umask;
  }
}

/** The echo VM running, and no other. */
async function restoreEcho(rig: ApiRig): Promise<void> {
  for (const vm of rig.hv.list()) if (vm.name !== "echo") await rig.hv.destroy(vm.name).catch(() => {});
  const echo = rig.hv.list().find((v) => v.name === "echo");
  if (echo && echo.state === "running") return;
  if (echo) await rig.hv.destroy("echo").catch(() => {});
  await rig.hv.create(ECHO);
  await rig.hv.act("echo", "start");
}

const WORDS = ["vms", "echo", "host", "restore", "snapshot", "migrate", "migration", "console", "move", "start", "stop", "restart", "pause", "resume", "destroy", "stats", "x", "..", ".", "%2e%2e", "%00", "%", "%zz", "echo%2fx", "", "a".repeat(300)];
const METHODS = ["GET", "POST", "DELETE", "PUT", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE", "G\u00e9T", "get"];
const LOOPBACK_PEERS = ["127.0.0.1:1", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1", "[::1]:9", "127.0.0.1:-1", ""];
const FIELDS = ["name", "memory", "kernel", "initrd", "bios", "append", "smp", "mode", "paging", "drives", "nets", "limits", "cpuShare", "onFailure", "pcpu", "path", "to", "key", "file", "postcopy", "copyStorage", "__proto__", "constructor"];

function jsonValue(input: InputReader, depth = 0): unknown {
  switch (input.int(0, depth > 2 ? 5 : 8)) {
    case 0: return null;
    case 1: return input.pick([0, -1, 1, 1e309 > 0 ? 2 ** 64 : 0, 0.5, 65536, 2 ** 31, 4096]);
    case 2: return input.pick(["", "16M", "1T", "-1", "echo", "echo.bin", "/etc/passwd", "../../x", "none", "builtin", "para", "full", "a".repeat(2000), "\u0000"]);
    case 3: return input.bool();
    case 4: return new TextDecoder().decode(input.blob(24));
    case 5: return input.u32();
    case 6: return Array.from({ length: input.int(0, 4) }, () => jsonValue(input, depth + 1));
    default: return Object.fromEntries(Array.from({ length: input.int(0, 6) }, () => {
      const field = input.pick(FIELDS);
      // Where a migration goes: loopback only (nothing leaves this machine, no name is looked up).
      return [field, field === "to" ? input.pick(LOOPBACK_PEERS) : jsonValue(input, depth + 1)];
    }));
  }
}

function request(input: InputReader): string[] {
  const method = input.int(0, 7) === 0 ? new TextDecoder("latin1").decode(input.blob(8)) : input.pick(METHODS);
  let path = "/" + Array.from({ length: input.int(0, 4) }, () => (input.int(0, 7) === 0 ? encodeURI(new TextDecoder().decode(input.blob(12))) : input.pick(WORDS))).join("/");
  if (input.int(0, 7) === 0) path = input.pick(["*", "http://x" + path, path + "?a=1#f", "//" + path, path + "/"]);
  let body = "";
  switch (input.int(0, 3)) {
    case 0: body = JSON.stringify(input.bool() ? { ...ECHO, name: `v${input.u8()}`, ...(jsonValue(input) as object) } : jsonValue(input)) ?? ""; break;
    case 1: body = new TextDecoder("latin1").decode(input.blob(64)); break;
    default: break;
  }
  const headers: string[] = [];
  switch (input.int(0, 5)) {
    case 0: headers.push(`Content-Length: ${input.pick([0, 1, body.length + 10, 2 ** 31, -1, 1 << 21])}`); break;
    case 1: headers.push("Transfer-Encoding: chunked"); body = `${body.length.toString(16)}\r\n${body}\r\n${input.bool() ? "0\r\n\r\n" : ""}`; break;
    case 2: headers.push("Connection: Upgrade", `Upgrade: ${input.bool() ? CONSOLE_PROTOCOL : input.pick(["websocket", "h2c", "", "x".repeat(100)])}`); break;
    case 3: break;
    default: if (body) headers.push(`Content-Length: ${Buffer.byteLength(body, "latin1")}`);
  }
  if (input.bool()) headers.push(`Content-Type: ${input.pick(["application/json", "text/plain", "", "application/json; charset=utf-16"])}`);
  if (input.int(0, 7) === 0) headers.push(new TextDecoder("latin1").decode(input.blob(40)));
  const head = `${method} ${path} HTTP/1.${input.int(0, 7) === 0 ? input.u8() : 1}\r\n${headers.map((h) => h + "\r\n").join("")}\r\n`;
  const writes = [head, body];
  if (input.int(0, 3) === 0) writes.push(new TextDecoder("latin1").decode(input.blob(64))); // more: a pipelined request, or console bytes after an upgrade
  return writes;
}

/**
 * Send the writes on one connection; the statuses of the responses that came within `ms`, or
 * before the connection went quiet: when the server has taken every byte sent and the client
 * every byte the server wrote, no request is being answered (a handler reading a body that
 * cannot complete waits for bytes that will never come), and on a console the guest echoed
 * what was typed, nothing more can happen on it: the rest of `ms` would be idle.
 */
function exchange(rig: ApiRig, writes: string[], ms: number): Promise<number[]> {
  return new Promise((resolve) => {
    const conn: Conn = { server: null, requests: [], upgraded: false };
    rig.unpaired.push(conn);
    const s = connect(rig.socket);
    let reply = "", connected = false;
    const done = () => {
      clearTimeout(timer);
      clearInterval(poll);
      // Never connected: the server will not accept it, so it gets no server side.
      const at = connected ? -1 : rig.unpaired.indexOf(conn);
      if (at >= 0) rig.unpaired.splice(at, 1);
      s.destroy();
      resolve([...reply.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1])));
    };
    const timer = setTimeout(done, ms);
    const poll = setInterval(() => { if (quiet(conn, s, reply, writes)) done(); }, 1);
    s.on("error", done);
    s.on("close", done);
    s.on("data", (d: Buffer) => {
      reply += d.toString("latin1");
      // A whole response with its body (each of ours has a Content-Length or none): enough.
      const m = /\r\n\r\n/.exec(reply);
      const len = /content-length: (\d+)/i.exec(reply);
      if (m && (!len || reply.length >= m.index + 4 + Number(len[1])) && !/ 101 /.test(reply)) done();
      else if (quiet(conn, s, reply, writes)) done();
    });
    s.on("connect", () => { connected = true; for (const w of writes) s.write(w, "latin1"); });
  });
}

/** Whether nothing more can happen on `conn` (exchange()). */
function quiet(conn: Conn, client: Socket, reply: string, writes: string[]): boolean {
  const server = conn.server;
  if (!server || client.connecting) return false;
  if (client.writableLength > 0 || server.bytesRead < client.bytesWritten) return false;
  if (server.writableLength > 0 || client.bytesRead < server.bytesWritten) return false;
  for (const { req, res } of conn.requests) {
    if (!res.writableFinished && !(req.readableFlowing === true && !req.complete)) return false;
  }
  if (!conn.upgraded) return true;
  // The echo guest sends back what follows the request's head; the scrollback came before it.
  const sent = writes.join("");
  const head = sent.indexOf("\r\n\r\n");
  return head >= 0 && reply.endsWith(sent.slice(head + 4));
}

async function runApi(rig: ApiRig, data: Uint8Array): Promise<void> {
  const input = new InputReader(data);
  const requests = Array.from({ length: input.int(1, 3) }, () => request(input));
  const statuses = (await Promise.all(requests.map((r) => exchange(rig, r, 150)))).flat();
  const errors = rig.uncaught.errors.splice(0);
  if (errors.length) throw errors[0] instanceof Error ? errors[0] : new Error(String(errors[0]));
  if (statuses.includes(500)) throw new Error(`the API answered 500 (an internal error) to ${JSON.stringify(requests).slice(0, 300)}`);
  // The daemon still answers, and the VM is back as it was for the next input. Asked twice: a
  // process stopped (SIGSTOP) or starved of CPU across the first wait loses it, where a daemon
  // that is really gone or stuck fails both (two such findings of a campaign on a loaded host
  // did not come back when replayed on their own).
  const ask = () => exchange(rig, ["GET /host HTTP/1.1\r\n\r\n"], 5000);
  if (!(await ask()).includes(200) && !(await ask()).includes(200)) throw new Error("the API no longer answers GET /host");
  // The server has accepted that connection, so every one before it: none is left to pair, unless
  // one was never accepted (out of descriptors), which must not pair later ones wrongly.
  rig.unpaired.length = 0;
  await restoreEcho(rig);
}

function seeds(): Uint8Array[] {
  const get = (words: number[]) => {
    const w = new InputWriter().int(1, 3, 1).int(0, 7, 1).u8(0).int(0, 4, words.length);
    for (const i of words) w.int(0, 7, 1).u8(i);
    return w.int(0, 7, 1).int(0, 3, 3).int(0, 5, 3).bool(false).int(0, 7, 1).int(0, 3, 1).finish();
  };
  return [get([2]), get([0]), get([0, 1]), get([0, 1, 22])];
}

export const apiTarget: Target<ApiRig> = {
  name: "api",
  about: "the control API: any method, path, headers, body and upgrade against a hypervisor with a running VM",
  maxLength: 2048,
  setup,
  run: (data, rig) => runApi(rig, data),
  rejects: rejectsNothing,
  seeds,
  async teardown(rig) {
    rig.uncaught.stop();
    rig.server.close();
    await rig.hv.close();
    rmSync(rig.dir, { recursive: true, force: true });
  },
};
