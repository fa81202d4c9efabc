// `wasmvisor web`: an HTTP server for the page that boots the Linux guest in the browser. It
// serves the page, the browser build (dist/web/), the core and the guest's files (with ranges:
// disks are read in chunks), every response cross-origin isolated (COOP/COEP: SharedArrayBuffer
// needs it), and WebSockets routed by path (/net: user-mode networking for the page's VMs).
// Only the files named here are served; a WebSocket must come from this server's own page (its
// Origin) with this server start's session token.
import type { IncomingMessage, ServerResponse } from "node:http";
import { createReadStream, existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { crypto, http, net } from "../platform/node/builtins";
import { hostname, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import type { Duplex } from "node:stream";
import { WebSocketServer, type WebSocket, type RawData } from "ws";
import { CliError } from "./args";
import { defaultLinuxGuest } from "./guest";
import { Hypervisor } from "../hv/hypervisor";
import { DEFAULT_FIRMWARE, nodePlatform } from "../platform/node";
import { packageRoot } from "../platform/node/core";
import { nodeHostSockets } from "../platform/node/host-sockets";
import { UserNet } from "../net/user";
import { DEFAULT_VM_SOCKETS, SocketBudget } from "../net/budget";
import { checkRelayedOptions, MAX_RELAY_FRAME, RELAY_ACCEPTED } from "../net/relay";
import { MAX_MESSAGE, wsLink, type WebSocketLike } from "../migration/ws-link";
import { acceptFromTab, closeWith, relayConsole, sendToTab } from "./web-vms";

/** The guest's files, as /guest/<name>; fw_jump.bin may come from Debian's OpenSBI. */
const GUEST_FILES = ["Image", "initramfs.cpio.gz", "disk.ext4", "fw_jump.bin"] as const;
/** Network relays open at once (each holds host sockets). */
const MAX_RELAYS = 16;
/** Migrations from pages at once (each may hold a section in memory before the hypervisor admits it). */
const MAX_MIGRATIONS_IN = 2;
/** A relay's client must say its options this soon (ms). */
const RELAY_HELLO_MS = 10_000;
/** Bytes a relay may have waiting for its client before frames for the guest are dropped. */
const MAX_RELAY_BUFFERED = 1 << 20;

export const WEB_HELP = `Usage: wasmvisor web [--port <port>] [--host <addr>] [--guest <dir>]

Serve a page that boots the Linux guest in the browser: its harts in WebAssembly on Web Workers,
its data disk a copy-on-write overlay kept by the browser (OPFS), its network through this
server (user-mode networking, as 'wasmvisor start' gives it). Open the URL it prints. The page
can live-migrate its VM to this machine (it runs here on, its console in the page) and back.

  --port <port>   TCP port (default 8080; 0: any free port, printed)
  --host <addr>   address to listen on (default 127.0.0.1). Anyone who can open the page can use
                  this server's network through it, and run VMs here by migrating them: listen
                  beyond this machine only on purpose. Guests then cannot reach its 127.0.0.1.
  --guest <dir>   serve the guest from <dir> (Image, initramfs.cpio.gz, disk.ext4, and
                  fw_jump.bin if there, else ${DEFAULT_FIRMWARE}).
                  Default: the Linux guest 'wasmvisor start' boots (built on first use)
`;

/** A WebSocket path's handler; the server has checked its Origin and token before. */
export interface UpgradeRoute {
  /** Largest message taken (bytes); a larger one closes the socket. */
  maxPayload: number;
  accept(ws: WebSocket, req: IncomingMessage): void;
}

export interface WebServerOptions {
  port: number;
  host: string;
  /** The files served under /guest/, by name. */
  guest: Partial<Record<(typeof GUEST_FILES)[number], string>>;
}

export interface WebServer {
  /** Where the page is (with the port really bound). */
  readonly url: string;
  readonly port: number;
  /** Authenticates WebSockets: new at every start, given to the page by /config.json. */
  readonly token: string;
  /** The key VMs migrating through this server are authenticated with: new at every start. */
  readonly migrationKey: Uint8Array;
  /** WebSocket handlers by path (/net, /migrate, /migrate-back, /console); add more before pages use them. */
  readonly upgrades: Map<string, UpgradeRoute>;
  /** The hypervisor on this machine (started on first use). */
  hypervisor(): Promise<Hypervisor>;
  close(): Promise<void>;
}

export async function webCommand(argv: string[]): Promise<number> {
  let v;
  try {
    v = parseArgs({
      args: argv, strict: true, allowPositionals: false,
      options: { port: { type: "string" }, host: { type: "string" }, guest: { type: "string" }, help: { type: "boolean", short: "h" } },
    }).values;
  } catch (e) {
    throw new CliError((e as Error).message.split(". ")[0].replace(/^Unknown option/, "unknown option"));
  }
  if (v.help) { process.stdout.write(WEB_HELP); return 0; }
  const port = v.port === undefined ? 8080 : Number(v.port);
  if (!/^\d{1,5}$/.test(v.port ?? "8080") || port > 65535) throw new CliError(`--port must be a port number from 0 to 65535, not '${v.port}'`);
  const host = v.host ?? "127.0.0.1";
  for (const [file, what] of [["dist/web/page.js", "the page"], ["build/core.wasm", "the core"]]) {
    if (!existsSync(join(packageRoot(), file))) throw new Error(`${what} (${file}) is not built: run 'node build.js' first`);
  }
  const server = await startWebServer({ port, host, guest: await guestFiles(v.guest) });
  process.stderr.write(`wasmvisor web: serving ${server.url} (Ctrl-C stops)\n`);
  await new Promise<void>((done) => {
    process.once("SIGINT", done);
    process.once("SIGTERM", done);
  });
  await server.close();
  return 0;
}

/** The guest's files: those in `dir`, or the default guest's (built if need be). */
async function guestFiles(dir: string | undefined): Promise<WebServerOptions["guest"]> {
  const files: WebServerOptions["guest"] = {};
  if (dir === undefined) {
    const g = await defaultLinuxGuest();
    Object.assign(files, { Image: g.kernel, "initramfs.cpio.gz": g.initramfs, "disk.ext4": g.disk });
  } else {
    for (const name of ["Image", "initramfs.cpio.gz", "disk.ext4"] as const) {
      const p = resolve(dir, name);
      if (!existsSync(p)) throw new CliError(`--guest ${dir}: has no ${name} (it needs Image, initramfs.cpio.gz and disk.ext4)`);
      files[name] = p;
    }
    if (existsSync(resolve(dir, "fw_jump.bin"))) files["fw_jump.bin"] = resolve(dir, "fw_jump.bin");
  }
  if (!files["fw_jump.bin"]) {
    if (!existsSync(DEFAULT_FIRMWARE)) throw new Error(`no firmware: ${DEFAULT_FIRMWARE} is missing; install Debian's opensbi package (apt-get install opensbi) or put a fw_jump.bin in --guest's directory`);
    files["fw_jump.bin"] = DEFAULT_FIRMWARE;
  }
  return files;
}

export async function startWebServer(opts: WebServerOptions): Promise<WebServer> {
  const root = packageRoot();
  const token = crypto().randomBytes(24).toString("base64url");
  const migrationKey = new Uint8Array(crypto().randomBytes(32));
  const upgrades = new Map<string, UpgradeRoute>();
  // A server reached from other machines must not hand them its own loopback through a guest.
  const loopback = isLoopback(opts.host);
  const sockets = new Map<UpgradeRoute, WebSocketServer>();
  let port = opts.port;

  // Names a request may give as its Host: a page reached under another name (DNS rebinding: a
  // foreign site whose name points here) would be same-origin with this server for its browser.
  const names = new Set(["localhost", hostname().toLowerCase(), opts.host.toLowerCase()]);
  const hostOk = (host: string | undefined) => {
    const m = host ? /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(host) : null;
    if (!m || Number(m[2] ?? 80) !== port) return false;
    const name = m[1].toLowerCase();
    return names.has(name) || net().isIP(name.replace(/^\[|\]$/g, "")) !== 0;
  };
  const tokenOk = (given: string | null) => {
    const a = Buffer.from(given ?? ""), b = Buffer.from(token);
    return a.length === b.length && crypto().timingSafeEqual(a, b);
  };

  const staticFile = (path: string): string | undefined => {
    if (path === "/" || path === "/index.html") return join(root, "web/index.html");
    if (path === "/style.css") return join(root, "web/style.css");
    if (path === "/core.wasm") return join(root, "build/core.wasm");
    const built = /^\/([a-z][a-z0-9-]*\.(?:js|css)(?:\.map)?)$/.exec(path);
    if (built) return join(root, "dist/web", built[1]);
    const guest = /^\/guest\/([^/]+)$/.exec(path);
    if (guest && Object.hasOwn(opts.guest, guest[1])) return (opts.guest as Record<string, string | undefined>)[guest[1]];
    return undefined;
  };

  const config = (req: IncomingMessage) => {
    const guest: Record<string, { path: string; size: number }> = {};
    for (const [name, file] of Object.entries(opts.guest)) {
      try {
        if (file) guest[name] = { path: `/guest/${name}`, size: statSync(file).size };
      } catch {
        /* gone since the start: the page says the server serves no such file */
      }
    }
    const ws = (path: string) => `ws://${req.headers.host}${path}`;
    return {
      guest,
      token,
      loopback,
      websockets: Object.fromEntries([...upgrades.keys()].map((path) => [path.slice(1), ws(path)])),
    };
  };

  const server = http().createServer((req, res) => {
    for (const [k, v] of Object.entries(ISOLATION)) res.setHeader(k, v);
    res.setHeader("X-Content-Type-Options", "nosniff");
    const say = (status: number, text: string) => {
      res.writeHead(status, { "Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store" });
      res.end(req.method === "HEAD" ? undefined : `${text}\n`);
    };
    if (!hostOk(req.headers.host)) return say(421, `this server answers to its own address only: open http://127.0.0.1:${port}/ (or the address it listens on)`);
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("Allow", "GET, HEAD");
      return say(405, "only GET and HEAD");
    }
    const raw = req.url ?? "/";
    const path = raw.split("?")[0];
    if (!path.startsWith("/") || path.includes("..") || path.includes("\\")) return say(404, "no such file");
    if (path === "/config.json" || path === "/vms.json") {
      // /vms.json?vm=NAME: whether that VM runs here (a page whose VM migrated here finds it after a
      // reload). Only by name: a VM's name is what lets a page reach it, so none is listed.
      const body = path === "/config.json" ? config(req) : hvList(new URLSearchParams(raw.split("?")[1] ?? "").get("vm") ?? "");
      res.writeHead(200, { "Content-Type": "application/json", "Cache-Control": "no-store" });
      return res.end(req.method === "HEAD" ? undefined : JSON.stringify(body));
    }
    const file = staticFile(path);
    if (!file) return say(404, "no such file");
    serveFile(req, res, file, say);
  });

  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on("error", () => {});
    const refuse = (status: number, why: string) => {
      socket.end(`HTTP/1.1 ${status} ${http().STATUS_CODES[status]}\r\nContent-Type: text/plain\r\nConnection: close\r\n` +
        `Content-Length: ${Buffer.byteLength(why) + 1}\r\n\r\n${why}\n`);
    };
    let url: URL;
    try {
      url = new URL(req.url ?? "/", "http://server");
    } catch {
      return refuse(400, "not a path");
    }
    const route = upgrades.get(url.pathname);
    if (!route) return refuse(404, "no such WebSocket");
    if (!hostOk(req.headers.host)) return refuse(421, "this server answers to its own address only");
    if (req.headers.origin !== `http://${req.headers.host}`) return refuse(403, "a WebSocket from another origin is refused: use this server's own page");
    if (!tokenOk(url.searchParams.get("token"))) return refuse(403, "the session token is missing or wrong: reload the page (the server was restarted?)");
    let wss = sockets.get(route);
    if (!wss) sockets.set(route, wss = new WebSocketServer({ noServer: true, maxPayload: route.maxPayload }));
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on("error", () => {}); // a bad frame from the client ends its socket, not the server
      route.accept(ws, req);
    });
  });

  upgrades.set("/net", netRelayRoute(loopback));
  // VMs between the page and this machine: in (/migrate), back (/migrate-back?vm=NAME), and the
  // console of one that runs here (/console?vm=NAME). Their disks come along, into a directory of
  // this server's own, removed when it stops.
  let hv: Promise<Hypervisor> | null = null;
  let started: Hypervisor | null = null;
  let copies: string | null = null;
  const hypervisor = () => (hv ??= (async () => {
    copies ??= mkdtempSync(join(tmpdir(), "wasmvisor-web-"));
    return started = await Hypervisor.start(nodePlatform, { migrationKey, imageDirs: [copies], onEvent: log });
  })().catch((e: Error) => {
    hv = null; // the next page tries again
    throw e;
  }));
  const hvList = (name: string) => (started?.list() ?? []).filter((v) => v.name === name).map((v) => ({ name: v.name, state: v.state }));
  // A disk copy a VM from a page left here, once it is gone.
  const removeCopy = (file: string) => {
    if (copies && file.startsWith(`${copies}/`)) rmSync(file, { force: true });
  };
  const log = (line: string) => process.stderr.write(`wasmvisor web: ${line}\n`);
  const peer = (req: IncomingMessage) => `the page at ${req.socket.remoteAddress}`;
  const vmName = (req: IncomingMessage) => new URL(req.url ?? "/", "http://server").searchParams.get("vm") ?? "";
  let migrationsIn = 0;
  upgrades.set("/migrate", {
    maxPayload: MAX_MESSAGE,
    accept(ws, req) {
      if (migrationsIn >= MAX_MIGRATIONS_IN) return closeWith(ws, 1013, `${MAX_MIGRATIONS_IN} migrations are coming in already: try again later`);
      migrationsIn++;
      ws.on("close", () => { migrationsIn--; });
      const link = wsLink(ws as unknown as WebSocketLike, peer(req)); // at once: the VM's stream starts now
      hypervisor().then((h) => acceptFromTab(link, h, loopback, removeCopy), (e: Error) => closeWith(ws, 1011, e.message)).catch((e: Error) => log(`a migration from ${peer(req)}: ${e.message}`));
    },
  });
  upgrades.set("/migrate-back", {
    maxPayload: 1 << 16, // the tab sends only its answers
    accept: (ws, req) => void hypervisor().then((h) => sendToTab(ws, h, vmName(req), migrationKey, peer(req), log), (e: Error) => closeWith(ws, 1011, e.message)).catch(() => {}),
  });
  upgrades.set("/console", {
    maxPayload: 4096,
    accept: (ws, req) => void hypervisor().then((h) => relayConsole(ws, h, vmName(req)), (e: Error) => closeWith(ws, 1011, e.message)).catch(() => {}),
  });

  await new Promise<void>((done, fail) => {
    server.once("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "EADDRINUSE") fail(new Error(`port ${opts.port} on ${opts.host} is in use: pass --port <another port> (or --port 0 for any free one)`));
      else if (e.code === "EADDRNOTAVAIL") fail(new Error(`--host ${opts.host}: not an address of this machine`));
      else fail(new Error(`cannot listen on ${opts.host}:${opts.port}: ${e.message}`));
    });
    server.listen(opts.port, opts.host, () => done());
  });
  // Later errors (accept failing: out of file descriptors) are said and survived.
  server.on("error", (e) => log(`the server: ${e.message}`));
  const addr = server.address();
  port = typeof addr === "object" && addr ? addr.port : opts.port;
  const shown = net().isIP(opts.host) === 6 ? `[${opts.host}]` : opts.host;

  return {
    url: `http://${shown}:${port}/`,
    port,
    token,
    migrationKey,
    upgrades,
    hypervisor,
    async close() {
      for (const wss of sockets.values()) {
        for (const ws of wss.clients) ws.terminate();
        wss.close();
      }
      server.closeAllConnections();
      await new Promise<void>((done) => server.close(() => done()));
      if (started) await started.close();
      if (copies) rmSync(copies, { recursive: true, force: true });
    },
  };
}

/** Whether `host` (what the server listens on) is reached only from this machine. */
function isLoopback(host: string): boolean {
  return host === "localhost" || /^127\./.test(host) || host === "::1";
}

const ISOLATION = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
  "Cross-Origin-Resource-Policy": "same-origin",
};

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json",
  ".wasm": "application/wasm",
};

/** A file, whole or one byte range of it, revalidated by ETag or date. */
function serveFile(req: IncomingMessage, res: ServerResponse, file: string, say: (status: number, text: string) => void): void {
  let st;
  try {
    st = statSync(file);
  } catch {
    return say(404, "no such file");
  }
  if (!st.isFile()) return say(404, "no such file");
  const etag = `"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`;
  const modified = new Date(Math.floor(st.mtimeMs / 1000) * 1000);
  const ext = /\.[a-z]+$/.exec(file)?.[0] ?? "";
  res.setHeader("Content-Type", TYPES[ext] ?? "application/octet-stream");
  res.setHeader("ETag", etag);
  res.setHeader("Last-Modified", modified.toUTCString());
  res.setHeader("Accept-Ranges", "bytes");
  res.setHeader("Cache-Control", "no-cache"); // revalidated each time: a rebuild or a new guest shows at once
  const inm = req.headers["if-none-match"];
  const ims = req.headers["if-modified-since"];
  if (inm !== undefined ? inm.split(",").some((t) => t.trim() === etag || t.trim() === "*") : ims !== undefined && Date.parse(ims) >= modified.getTime()) {
    res.writeHead(304);
    return void res.end();
  }
  let start = 0, end = st.size - 1;
  const range = req.headers.range;
  const ifRange = req.headers["if-range"];
  if (range !== undefined && (ifRange === undefined || ifRange === etag || ifRange === modified.toUTCString())) {
    const r = parseRange(range, st.size);
    if (r === "unsatisfiable") {
      res.setHeader("Content-Range", `bytes */${st.size}`);
      return say(416, `the range ${range.slice(0, 60)} is not within the file's ${st.size} bytes`);
    }
    if (r) {
      ({ start, end } = r);
      res.statusCode = 206;
      res.setHeader("Content-Range", `bytes ${start}-${end}/${st.size}`);
    }
  }
  res.setHeader("Content-Length", String(Math.max(0, end - start + 1)));
  if (req.method === "HEAD" || end < start) return void res.end();
  const stream = createReadStream(file, { start, end });
  stream.on("error", () => res.destroy());
  stream.pipe(res);
}

/** One range of a Range header; null: serve the whole file (other units, several ranges, nonsense). */
export function parseRange(header: string, size: number): { start: number; end: number } | "unsatisfiable" | null {
  const m = /^bytes=\s*(\d*)\s*-\s*(\d*)\s*$/.exec(header);
  if (!m || (m[1] === "" && m[2] === "")) return null;
  if (m[1] === "") {
    const n = Number(m[2]);
    return n === 0 || size === 0 ? "unsatisfiable" : { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (m[2] !== "" && Number(m[2]) < start) return null; // not a valid range: ignored, as HTTP says
  return start >= size ? "unsatisfiable" : { start, end };
}

/**
 * /net: each connection is one NIC's user-mode networking, a UserNet on this machine's sockets
 * with a VM's socket budget. The first message is its options (checked: guest-side ones only),
 * then each binary message is one frame, both ways.
 */
function netRelayRoute(loopback: boolean): UpgradeRoute {
  let open = 0;
  return {
    maxPayload: MAX_RELAY_FRAME,
    accept(ws) {
      if (open >= MAX_RELAYS) return closeWith(ws, 1013, `${MAX_RELAYS} network relays are open: close another page's VM first`);
      open++;
      let net: UserNet | null = null;
      const hello = setTimeout(() => closeWith(ws, 1008, "no netdev options came"), RELAY_HELLO_MS);
      ws.on("error", () => {});
      ws.on("close", () => {
        open--;
        clearTimeout(hello);
        net?.close();
      });
      ws.on("message", (data: RawData, isBinary: boolean) => {
        const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
        if (net) {
          if (!isBinary) return closeWith(ws, 1008, "after the options, only frames (binary messages)");
          return net.send(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length));
        }
        clearTimeout(hello);
        try {
          if (isBinary) throw new Error("the first message must be the netdev options (JSON text)");
          let json: unknown;
          try {
            json = JSON.parse(bytes.toString("utf8"));
          } catch {
            throw new Error("the first message is not JSON");
          }
          const options = checkRelayedOptions(json);
          if (!loopback && options.loopback !== "none") throw new Error("this server listens beyond this machine: its loopback is not relayed; ask for loopback=none");
          net = new UserNet({ ...options, hostSockets: nodeHostSockets, budget: new SocketBudget(DEFAULT_VM_SOCKETS), onError: () => {} });
        } catch (e) {
          return closeWith(ws, 1008, (e as Error).message);
        }
        // A client that does not keep up loses frames, as a congested link would (TCP resends).
        net.attach((frame) => { if (ws.bufferedAmount < MAX_RELAY_BUFFERED) ws.send(frame, { binary: true }); });
        ws.send(RELAY_ACCEPTED);
      });
    },
  };
}
