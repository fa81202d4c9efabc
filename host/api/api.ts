/**
 * The control API: HTTP/1.1 + JSON on a Unix socket, the way Firecracker and Cloud Hypervisor
 * expose theirs (the socket's file permissions are the access control).
 *
 *   GET    /host                    HostInfo
 *   GET    /vms                     VmInfo[]
 *   POST   /vms                     body: VmDefinition      → 201 VmInfo
 *   GET    /vms/{name}              VmInfo
 *   GET    /vms/{name}/stats        VmRunStats
 *   POST   /vms/{name}/{action}     action: start | pause | resume | stop   → VmInfo
 *   POST   /vms/{name}/move         body: {"pcpu": n}: move it to pCPU n   → VmInfo
 *   POST   /vms/{name}/snapshot     body: {"file": path, "stop"?: bool}    → SnapshotInfo
 *   POST   /restore                 body: {"file": path, "name"?: s, "paused"?: bool} → 201 VmInfo
 *   POST   /vms/{name}/migrate      body: {"to": "tcp:HOST:PORT", "downtimeMs"?: n, "maxRounds"?: n, "postcopy"?: bool, "copyStorage"?: bool}
 *                                   → MigrationProgress once it runs there (502 if it failed: it goes on here)
 *   GET    /vms/{name}/migration    MigrationProgress of the last (or current) migration
 *   GET    /vms/{name}/snapshot     SnapshotProgress of the last (or current) snapshot
 *   GET    /vms/{name}/usb          UsbInfo: the USB devices on its xHCI controller
 *   POST   /vms/{name}/usb          body: UsbRequest (attach a --usb spec, detach an id, type text on a keyboard,
 *                                   send console input to a keyboard)                                → UsbInfo
 *   DELETE /vms/{name}              → 204
 *   GET    /vms/{name}/console      with "Connection: Upgrade, Upgrade: wasmvisor-console":
 *                                   → 101, then the raw console both ways
 *
 * Errors are {"error": "<message>"} with 400 (malformed request or definition), 404 (no such
 * VM or route), 409 (the VM's state does not allow it), 507 (the host cannot fit it) or 500.
 */
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { http } from "../platform/node/builtins";
import type { Duplex } from "node:stream";
import { clearStaleSocket } from "./api-socket";
import { HvError, badRequest, notFound, type Control, type UsbRequest } from "../hv/types";
import { ACTIONS, type Action } from "../hv/lifecycle";

export { ACTIONS };

export const CONSOLE_PROTOCOL = "wasmvisor-console";
/** Largest request body accepted (a VM definition is small). */
const MAX_BODY = 1 << 20;
/**
 * Console output queued for one client at most: a client that does not read must not make the
 * daemon hold a chatty guest's output without bound. Past it that client's output is dropped.
 */
export const CONSOLE_QUEUE_LIMIT = 1 << 20;
export interface ApiOptions {
  /** Told about failures of the listening socket itself (the daemon logs them). */
  onError?: (message: string) => void;
}

/**
 * Listen on `socketPath`. A stale socket of this user's is replaced; anything else there is an
 * error. The socket is created with mode 0600: no one else can connect, not even for a moment.
 */
export async function serveApi(control: Control, socketPath: string, opts: ApiOptions = {}): Promise<Server> {
  await clearStaleSocket(socketPath);
  // A Unix socket has no host name: requests without a Host header are fine.
  const server = http().createServer({ requireHostHeader: false }, (req, res) => void handle(control, req, res));
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => upgrade(control, req, socket, head));
  server.on("clientError", refuseUnparsable);
  await new Promise<void>((resolve, reject) => {
    const failed = (e: Error) => reject(new Error(`cannot listen on ${socketPath} (${e.message}): pass --api <socket> in a directory of yours`));
    server.once("error", failed);
    // bind() runs inside listen(), synchronously: the umask is in effect when the socket appears.
    const umask = process.umask(0o177);
    try {
      server.listen(socketPath, () => {
        server.off("error", failed);
        resolve();
      });
    } finally {
      process.umask(umask);
    }
  });
  // Without a listener, an error on the listening socket (accept failing: out of descriptors)
  // would end the daemon and every VM.
  server.on("error", (e) => opts.onError?.(`the control API socket: ${e.message}`));
  return server;
}

/**
 * The decoded segments of a request target's path. Only the path is looked at (an absolute-form
 * target's scheme and authority are dropped, the query ignored), so no target can make this
 * throw anything but a 400.
 */
function requestPath(target: string): string[] {
  const path = target.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i, "").split(/[?#]/, 1)[0];
  try {
    return path.split("/").filter(Boolean).map(decodeURIComponent);
  } catch {
    throw badRequest(`malformed percent-encoding in the request path: encode each part with encodeURIComponent`);
  }
}

const statusOf = (e: unknown) => (e instanceof HvError ? e.status : 500);

async function handle(control: Control, req: IncomingMessage, res: ServerResponse): Promise<void> {
  try {
    const parts = requestPath(req.url ?? "/");
    const method = req.method ?? "GET";
    const route = `${method} /${parts.map((p, i) => (i === 1 ? "{name}" : p)).join("/")}`;
    switch (route) {
      case "GET /host": return send(res, 200, control.host());
      case "GET /vms": return send(res, 200, control.list());
      case "POST /vms": return send(res, 201, await control.create(await readJson(req)));
      case "GET /vms/{name}": return send(res, 200, control.info(parts[1]));
      case "GET /vms/{name}/stats": return send(res, 200, await control.stats(parts[1]));
      case "POST /restore": {
        const b = await readJson(req);
        const file = field(b, "file", "string", true);
        return send(res, 201, await control.restore(file, { name: field(b, "name", "string"), paused: field(b, "paused", "boolean") }));
      }
      case "POST /vms/{name}/snapshot": {
        const b = await readJson(req);
        return send(res, 200, await control.snapshot(parts[1], field(b, "file", "string", true), { stop: field(b, "stop", "boolean") }));
      }
      case "POST /vms/{name}/migrate": {
        const b = await readJson(req);
        return send(res, 200, await control.migrate(parts[1], field(b, "to", "string", true), { downtimeMs: field(b, "downtimeMs", "number"), maxRounds: field(b, "maxRounds", "number"), postcopy: field(b, "postcopy", "boolean"), copyStorage: field(b, "copyStorage", "boolean") }));
      }
      case "GET /vms/{name}/usb": return send(res, 200, await control.usb(parts[1], { op: "list" }));
      case "POST /vms/{name}/usb": return send(res, 200, await control.usb(parts[1], usbRequest(await readJson(req))));
      case "GET /vms/{name}/migration": return send(res, 200, control.migration(parts[1]));
      case "GET /vms/{name}/snapshot": return send(res, 200, control.snapshotProgress(parts[1]));
      case "DELETE /vms/{name}":
        await control.destroy(parts[1]);
        res.writeHead(204).end();
        return;
      case "GET /vms/{name}/console":
        throw badRequest(`the console is a stream: send "Connection: Upgrade" and "Upgrade: ${CONSOLE_PROTOCOL}"`);
    }
    if (method === "POST" && parts.length === 3 && parts[0] === "vms" && parts[2] === "move") {
      const body = await readJson(req);
      const pcpu = (body as { pcpu?: unknown })?.pcpu;
      if (typeof pcpu !== "number") throw badRequest(`move needs {"pcpu": <number>}`);
      return send(res, 200, await control.move(parts[1], pcpu));
    }
    if (method === "POST" && parts.length === 3 && parts[0] === "vms") {
      const action = parts[2];
      if (!(ACTIONS as readonly string[]).includes(action)) throw notFound(`unknown action '${action}' (actions: ${ACTIONS.join(", ")})`);
      return send(res, 200, await control.act(parts[1], action as Action));
    }
    throw notFound(`no route ${method} /${parts.join("/")}`);
  } catch (e) {
    if (res.headersSent) res.destroy(); // too late for an error reply
    else send(res, statusOf(e), { error: (e as Error).message });
  }
}

/** A USB request body: {"op": "attach", "spec": s} | {"op": "detach", "id": s} | {"op": "type", "id": s, "text": s} | {"op": "console", "id": s|null} | {"op": "list"}. */
function usbRequest(b: unknown): UsbRequest {
  const op = field(b, "op", "string", true);
  switch (op) {
    case "attach": return { op, spec: field(b, "spec", "string", true) };
    case "detach": return { op, id: field(b, "id", "string", true) };
    case "type": {
      const text = (b as { text?: unknown }).text;
      if (typeof text !== "string") throw badRequest(`'text' must be a string`);
      return { op, id: field(b, "id", "string", true), text };
    }
    case "console": return { op, id: (b as { id?: unknown }).id === null ? null : field(b, "id", "string", true) };
    case "list": return { op };
    default: throw badRequest(`'op' must be attach, detach, type, console or list`);
  }
}

/** Field `key` of a request body, checked: a 400 naming it if it is not of `type`, or is missing when `required`. */
function field(body: unknown, key: string, type: "string", required: true): string;
function field(body: unknown, key: string, type: "string"): string | undefined;
function field(body: unknown, key: string, type: "boolean"): boolean | undefined;
function field(body: unknown, key: string, type: "number"): number | undefined;
function field(body: unknown, key: string, type: "string" | "boolean" | "number", required = false): string | boolean | number | undefined {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw badRequest(`the body must be a JSON object`);
  const v = (body as Record<string, unknown>)[key];
  if (v === undefined && !required) return undefined;
  if (typeof v !== type || (type === "string" && (v as string).length === 0) || (type === "number" && !Number.isFinite(v))) {
    throw badRequest(`'${key}' must be a ${type === "string" ? "non-empty string" : type}`);
  }
  return v as string | boolean | number;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      // Past the limit the rest is read and dropped: the connection stays usable.
      if (size <= MAX_BODY) chunks.push(chunk);
      else reject(badRequest(`request body larger than ${MAX_BODY} bytes`));
    });
    req.on("error", reject);
    req.on("end", () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")));
      } catch (e) {
        reject(badRequest(`body is not JSON: ${(e as Error).message}`));
      }
    });
  });
}

// What Node's HTTP parser cannot parse (bad request line, headers, chunk sizes, oversized
// headers) ends here instead of in a request handler. The reply can only be the connection's
// first bytes: after an earlier response it could be taken for part of it.
function refuseUnparsable(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (socket.writable && (socket as Duplex & { bytesWritten?: number }).bytesWritten === 0) {
    refuse(socket, 400, `malformed HTTP/1.1 request: ${err.message}${err.code ? ` (${err.code})` : ""}`);
  } else socket.destroy();
}

// An error reply on a raw socket (no ServerResponse: parse errors and upgrades), then close.
function refuse(socket: Duplex, status: number, message: string): void {
  const body = JSON.stringify({ error: message });
  socket.end(`HTTP/1.1 ${status} ${status === 400 ? "Bad Request" : "Error"}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    () => socket.destroy());
}

function upgrade(control: Control, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  // Node takes its own error handler off an upgraded socket: without this one, a client that
  // resets the connection would end the daemon.
  socket.on("error", () => socket.destroy());
  let name: string;
  try {
    const parts = requestPath(req.url ?? "/");
    if (req.method !== "GET" || req.headers.upgrade !== CONSOLE_PROTOCOL || parts.length !== 3 || parts[0] !== "vms" || parts[2] !== "console") {
      throw notFound(`only GET /vms/{name}/console upgrades, to ${CONSOLE_PROTOCOL}`);
    }
    name = parts[1];
    control.info(name);
  } catch (e) {
    return refuse(socket, statusOf(e), (e as Error).message);
  }
  // The 101 first: attaching replays the scrollback at once.
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: ${CONSOLE_PROTOCOL}\r\n\r\n`);
  let attachment: ReturnType<Control["attachConsole"]>;
  try {
    attachment = control.attachConsole(name, boundedOutput(socket));
  } catch (e) {
    socket.end(`\r\n[wasmvisor: ${(e as Error).message}]\r\n`);
    return;
  }
  const toGuest = (bytes: Buffer) => {
    try {
      attachment.write(new Uint8Array(bytes));
    } catch (e) {
      socket.off("data", toGuest);
      socket.end(`\r\n[wasmvisor: ${(e as Error).message}]\r\n`);
    }
  };
  if (head.length) toGuest(head);
  socket.on("data", toGuest);
  socket.on("close", () => {
    try {
      attachment.detach();
    } catch {
      // The client is gone: there is no one to tell.
    }
  });
}

// Console output to one client: a client that falls CONSOLE_QUEUE_LIMIT behind loses output
// until its socket drains, and is then told how much it lost.
function boundedOutput(socket: Duplex): (bytes: Uint8Array) => void {
  let dropped = 0;
  socket.on("drain", () => {
    if (dropped === 0) return;
    socket.write(`\r\n[wasmvisor: ${dropped} bytes of console output dropped: this client did not keep up]\r\n`);
    dropped = 0;
  });
  return (bytes) => {
    if (!socket.writable) return;
    if (dropped > 0 || socket.writableLength >= CONSOLE_QUEUE_LIMIT) dropped += bytes.length;
    else socket.write(bytes);
  };
}

// ---- the client (wasmvisor ctl, tests) ----

export class ApiClient {
  constructor(readonly socketPath: string) {}

  /** One request; resolves with the decoded body, rejects with the API's error message. */
  call<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
    const text = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = http().request({
        socketPath: this.socketPath, method, path,
        headers: text === undefined ? {} : { "content-type": "application/json", "content-length": Buffer.byteLength(text) },
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const raw = Buffer.concat(chunks).toString("utf8");
          let parsed: unknown = undefined;
          try {
            parsed = raw ? JSON.parse(raw) : undefined;
          } catch {
            return reject(new Error(`bad reply from the host (${res.statusCode}): ${raw.slice(0, 200)}`));
          }
          if ((res.statusCode ?? 500) >= 400) {
            const err = new Error((parsed as { error?: string })?.error ?? `HTTP ${res.statusCode}`) as Error & { status?: number };
            err.status = res.statusCode;
            return reject(err);
          }
          resolve(parsed as T);
        });
      });
      req.on("error", (e: NodeJS.ErrnoException) => {
        if (e.code === "ENOENT" || e.code === "ECONNREFUSED") {
          reject(new Error(`no wasmvisor host at ${this.socketPath}: start one with 'wasmvisor host --api ${this.socketPath}'`));
        } else reject(e);
      });
      req.end(text);
    });
  }

  /** Attach to a VM's console: a raw duplex stream. */
  console(name: string): Promise<Duplex> {
    return new Promise((resolve, reject) => {
      const req = http().request({
        socketPath: this.socketPath, method: "GET", path: `/vms/${encodeURIComponent(name)}/console`,
        headers: { connection: "Upgrade", upgrade: CONSOLE_PROTOCOL },
      });
      req.on("upgrade", (_res, socket, head) => {
        if (head.length) socket.unshift(head);
        resolve(socket);
      });
      req.on("response", (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          let msg = `HTTP ${res.statusCode}`;
          try { msg = JSON.parse(Buffer.concat(chunks).toString("utf8")).error ?? msg; } catch { /* keep the status */ }
          reject(new Error(msg));
        });
      });
      req.on("error", reject);
      req.end();
    });
  }
}
