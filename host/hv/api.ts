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
 *   DELETE /vms/{name}              → 204
 *   GET    /vms/{name}/console      with "Connection: Upgrade, Upgrade: wasmvisor-console":
 *                                   → 101, then the raw console both ways
 *
 * Errors are {"error": "<message>"} with 400 (malformed request or definition), 404 (no such
 * VM or route), 409 (the VM's state does not allow it), 507 (the host cannot fit it) or 500.
 */
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { existsSync, unlinkSync, chmodSync } from "node:fs";
import { connect } from "node:net";
import { HvError, badRequest, notFound, type HostInfo, type VmInfo, type VmRunStats } from "./types";

export const CONSOLE_PROTOCOL = "wasmvisor-console";
/** Largest request body accepted (a VM definition is small). */
const MAX_BODY = 1 << 20;
export const ACTIONS = ["start", "pause", "resume", "stop"] as const;
export type Action = (typeof ACTIONS)[number];

/** What the API needs from the hypervisor. */
export interface Control {
  host(): HostInfo;
  list(): VmInfo[];
  info(name: string): VmInfo;
  /** Validates the definition (it comes from outside) and admits or refuses it. */
  create(definition: unknown): Promise<VmInfo>;
  act(name: string, action: Action): Promise<VmInfo>;
  /** Move a VM to another pCPU. */
  move(name: string, pcpu: number): Promise<VmInfo>;
  destroy(name: string): Promise<void>;
  stats(name: string): Promise<VmRunStats>;
  /** Console output goes to onOutput until detach(); write() sends keys to the guest. */
  attachConsole(name: string, onOutput: (bytes: Uint8Array) => void): { write(bytes: Uint8Array): void; detach(): void };
}

/** Listen on `socketPath` (a stale socket file is replaced, an unrelated file is not). */
export async function serveApi(control: Control, socketPath: string): Promise<Server> {
  if (existsSync(socketPath)) {
    if (await socketAnswers(socketPath)) throw new Error(`${socketPath}: another wasmvisor host is listening there`);
    unlinkSync(socketPath);
  }
  const server = createServer((req, res) => void handle(control, req, res));
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => upgrade(control, req, socket, head));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(socketPath, () => resolve());
  });
  chmodSync(socketPath, 0o600);
  return server;
}

function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once("connect", () => { s.destroy(); resolve(true); });
    s.once("error", () => resolve(false));
  });
}

async function handle(control: Control, req: IncomingMessage, res: ServerResponse): Promise<void> {
  try {
    const url = new URL(req.url ?? "/", "http://wasmvisor");
    const parts = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
    const method = req.method ?? "GET";
    const route = `${method} /${parts.map((p, i) => (i === 1 ? "{name}" : p)).join("/")}`;
    switch (route) {
      case "GET /host": return send(res, 200, control.host());
      case "GET /vms": return send(res, 200, control.list());
      case "POST /vms": return send(res, 201, await control.create(await readJson(req)));
      case "GET /vms/{name}": return send(res, 200, control.info(parts[1]));
      case "GET /vms/{name}/stats": return send(res, 200, await control.stats(parts[1]));
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
    throw notFound(`no route ${method} ${url.pathname}`);
  } catch (e) {
    const status = e instanceof HvError ? e.status : 500;
    send(res, status, { error: (e as Error).message });
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw badRequest(`request body larger than ${MAX_BODY} bytes`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  try {
    return JSON.parse(text);
  } catch (e) {
    throw badRequest(`body is not JSON: ${(e as Error).message}`);
  }
}

function upgrade(control: Control, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  const refuse = (status: number, message: string) => {
    const body = JSON.stringify({ error: message });
    socket.end(`HTTP/1.1 ${status} Error\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  };
  const parts = new URL(req.url ?? "/", "http://wasmvisor").pathname.split("/").filter(Boolean).map(decodeURIComponent);
  if (req.headers.upgrade !== CONSOLE_PROTOCOL || parts.length !== 3 || parts[0] !== "vms" || parts[2] !== "console") {
    return refuse(404, `only GET /vms/{name}/console upgrades, to ${CONSOLE_PROTOCOL}`);
  }
  let attachment: ReturnType<Control["attachConsole"]>;
  try {
    control.info(parts[1]);
  } catch (e) {
    return refuse(e instanceof HvError ? e.status : 500, (e as Error).message);
  }
  // The 101 first: attaching replays the scrollback at once.
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: ${CONSOLE_PROTOCOL}\r\n\r\n`);
  try {
    attachment = control.attachConsole(parts[1], (bytes) => socket.write(bytes));
  } catch (e) {
    socket.end(`\r\n[wasmvisor: ${(e as Error).message}]\r\n`);
    return;
  }
  if (head.length) attachment.write(new Uint8Array(head));
  socket.on("data", (chunk: Buffer) => attachment.write(new Uint8Array(chunk)));
  const done = () => attachment.detach();
  socket.on("close", done);
  socket.on("error", done);
}

// ---- the client (wasmvisor ctl, tests) ----

export class ApiClient {
  constructor(readonly socketPath: string) {}

  /** One request; resolves with the decoded body, rejects with the API's error message. */
  call<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
    const text = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = request({
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
      const req = request({
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
