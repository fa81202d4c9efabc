// QMP, QEMU's machine protocol, and the human monitor on sockets (`-qmp`, `-monitor`): the
// greeting, capabilities negotiation, commands with their `id` echoed, errors and events in
// QMP's form (docs/interop/qmp-spec in QEMU). The commands are the Monitor's (api/monitor.ts).
// A client is untrusted: a message is at most 1 MiB and 64 levels deep, malformed JSON gets
// QMP's error and the connection goes on, and no input can end the process.
import type { Server, Socket } from "node:net";
import { net } from "../platform/node/builtins";
import { lstatSync, unlinkSync } from "node:fs";
import { Monitor, QmpError, type QmpEvent } from "./monitor";

/** A server socket in QEMU's character-device syntax: unix:PATH,server,nowait or tcp:HOST:PORT,server=on,wait=off. */
export type Endpoint = ({ kind: "unix"; path: string } | { kind: "tcp"; host: string; port: number; nodelay?: boolean }) & {
  /** wait=on (QEMU's default for a server): nothing runs until a client connects. */
  wait: boolean;
  /** As given, for messages. */
  spec: string;
};

const MAX_MESSAGE = 1 << 20;
const MAX_DEPTH = 64;
const MAX_CLIENTS = 16;
// A client that does not read its replies is not answered past this much unread output (the
// next command waits for the socket to drain), and is not read from while this many commands
// wait: what it costs the process stays bounded however much it sends.
const OUTPUT_HIGH_WATER = 1 << 20;
const MAX_PENDING = 64;
// Events go out whether the client reads or not: one that leaves this much unread is dropped.
const MAX_UNREAD = 4 << 20;

/** How a session's commands meet the client's socket: they wait for it to take what was written, and say when each is done. */
export interface SessionFlow {
  /** Resolves once the client's socket is below the high-water mark (or gone). */
  ready(): Promise<void>;
  /** A command finished: the socket may be read again. */
  settled(): void;
}

const OPEN_FLOW: SessionFlow = { ready: () => Promise.resolve(), settled: () => {} };

/** Commands of one client in order, one at a time, each once the client has read the replies before it. */
class CommandQueue {
  private items: (() => Promise<void> | void)[] = [];
  private next = 0;
  private running = false;

  constructor(private readonly flow: SessionFlow) {}

  /** Commands received and not yet done. */
  get pending(): number {
    return this.items.length - this.next + (this.running ? 1 : 0);
  }

  add(work: () => Promise<void> | void): void {
    this.items.push(work);
    if (!this.running) void this.pump();
  }

  private async pump(): Promise<void> {
    this.running = true;
    // What a client sent before it went away still runs (a script's quit), without waiting for it to read.
    while (this.next < this.items.length) {
      await this.flow.ready();
      const work = this.items[this.next++]!;
      if (this.next === this.items.length) {
        this.items = [];
        this.next = 0;
      }
      try {
        await work();
      } catch { /* a send to a client that went away */ }
      this.flow.settled();
    }
    this.running = false;
  }
}

export type JsonMessage = { json: unknown } | { error: string };

/**
 * Splits a byte stream into JSON values as QEMU's streaming parser does: objects and arrays by
 * their brackets (newlines optional), anything else up to the next whitespace or bracket is an
 * error. Bounded: a value past MAX_MESSAGE bytes or MAX_DEPTH levels is an error and skipped.
 */
export class JsonSplitter {
  private buf = "";
  private depth = 0;
  private inString = false;
  private escape = false;
  private overflow = false;
  private start = 0;
  private scan = 0;

  push(text: string): JsonMessage[] {
    const out: JsonMessage[] = [];
    this.buf += text;
    for (; this.scan < this.buf.length; this.scan++) {
      const c = this.buf[this.scan]!;
      if (this.depth > 0 && this.scan - this.start >= MAX_MESSAGE) {
        // Too long: dropped; what is left of it is read as whatever it looks like.
        out.push({ error: `JSON parse error, a message is at most ${MAX_MESSAGE} bytes` });
        this.depth = 0;
        this.inString = false;
        this.escape = false;
        this.overflow = false;
        this.start = this.scan;
      }
      if (this.depth === 0 && !this.inString) {
        if (/\s/.test(c)) { this.start = this.scan + 1; continue; }
        if (c !== "{" && c !== "[") {
          // A bare token: up to whitespace or a bracket.
          let end = this.scan;
          while (end < this.buf.length && !/[\s{[]/.test(this.buf[end]!)) end++;
          if (end === this.buf.length && end - this.scan < 256) break; // may go on in the next chunk
          out.push({ error: `JSON parse error, invalid keyword '${this.buf.slice(this.scan, Math.min(end, this.scan + 64))}'` });
          this.scan = end - 1;
          this.start = end;
          continue;
        }
      }
      if (this.inString) {
        if (this.escape) this.escape = false;
        else if (c === "\\") this.escape = true;
        else if (c === '"') this.inString = false;
        continue;
      }
      if (c === '"') this.inString = true;
      else if (c === "{" || c === "[") {
        if (++this.depth > MAX_DEPTH) this.overflow = true;
      } else if (c === "}" || c === "]") {
        if (--this.depth === 0) {
          const text = this.buf.slice(this.start, this.scan + 1);
          if (this.overflow) out.push({ error: `JSON parse error, too many nested levels (at most ${MAX_DEPTH})` });
          else {
            try {
              out.push({ json: JSON.parse(text) });
            } catch (e) {
              out.push({ error: `JSON parse error, ${(e as Error).message}` });
            }
          }
          this.overflow = false;
          this.start = this.scan + 1;
        } else if (this.depth < 0) {
          out.push({ error: "JSON parse error, unexpected closing bracket" });
          this.depth = 0;
          this.start = this.scan + 1;
        }
      }
    }
    // Keep only the value being read.
    if (this.start > 0) {
      this.buf = this.buf.slice(this.start);
      this.scan -= this.start;
      this.start = 0;
    }
    return out;
  }
}

/** One QMP client: negotiation first, then commands one at a time in order, and events. */
export class QmpSession {
  private negotiated = false;
  private readonly splitter = new JsonSplitter();
  private readonly queue: CommandQueue;
  private unsubscribe: (() => void) | null = null;

  constructor(
    private readonly monitor: Monitor,
    private readonly send: (message: object) => void,
    flow: SessionFlow = OPEN_FLOW,
  ) {
    this.queue = new CommandQueue(flow);
    const { qemu, package: pkg } = monitor.versionInfo() as { qemu: object; package: string };
    send({ QMP: { version: { qemu, package: pkg }, capabilities: [] } });
  }

  /** Bytes from the client. */
  input(text: string): void {
    for (const m of this.splitter.push(text)) this.queue.add(() => this.handle(m));
  }

  /** Commands received and not answered yet. */
  get pending(): number {
    return this.queue.pending;
  }

  close(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
  }

  private async handle(m: JsonMessage): Promise<void> {
    if ("error" in m) return this.send({ error: { class: "GenericError", desc: m.error } });
    const msg = m.json;
    if (typeof msg !== "object" || msg === null || Array.isArray(msg)) return this.send({ error: { class: "GenericError", desc: "QMP input must be a JSON object" } });
    const o = msg as Record<string, unknown>;
    const id = o.id;
    const reply = (r: object) => this.send(id === undefined ? r : { ...r, id });
    const fail = (cls: string, desc: string) => reply({ error: { class: cls, desc } });
    for (const k of Object.keys(o)) {
      if (k !== "execute" && k !== "arguments" && k !== "id") return fail("GenericError", `QMP input member '${k}' is unexpected`);
    }
    if (!("execute" in o)) return fail("GenericError", "QMP input lacks member 'execute'");
    if (typeof o.execute !== "string") return fail("GenericError", "QMP input member 'execute' must be a string");
    const args = o.arguments ?? {};
    if (typeof args !== "object" || args === null || Array.isArray(args)) return fail("GenericError", "QMP input member 'arguments' must be an object");
    const command = o.execute;
    if (command === "qmp_capabilities") {
      if (this.negotiated) return fail("CommandNotFound", "Capabilities negotiation is already complete, command ignored");
      const enable = (args as { enable?: unknown }).enable;
      for (const k of Object.keys(args)) if (k !== "enable") return fail("GenericError", `Parameter '${k}' is unexpected`);
      if (enable !== undefined && (!Array.isArray(enable) || enable.length > 0)) return fail("GenericError", "Capability 'oob' not available: wasmvisor's QMP has no out-of-band commands");
      this.negotiated = true;
      this.unsubscribe = this.monitor.onEvent((e: QmpEvent) => this.send(e));
      return reply({ return: {} });
    }
    if (!this.negotiated) return fail("CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'");
    try {
      const r = await this.monitor.execute(command, args as Record<string, unknown>);
      reply({ return: r ?? {} });
    } catch (e) {
      if (e instanceof QmpError) fail(e.errorClass, e.message);
      else fail("GenericError", (e as Error).message);
    }
  }
}

const MAX_LINE = 4096;
const TOO_LONG = `line too long (at most ${MAX_LINE} characters)\r\n(qemu) `;

/** The human monitor on a socket: QEMU's banner and "(qemu) " prompt, a command per line. */
class HmpSession {
  private buf = "";
  private readonly queue: CommandQueue;

  constructor(
    private readonly monitor: Monitor,
    private readonly write: (text: string) => void,
    flow: SessionFlow,
  ) {
    this.queue = new CommandQueue(flow);
    write(`${monitor.banner()}(qemu) `);
  }

  get pending(): number {
    return this.queue.pending;
  }

  input(text: string): void {
    this.buf += text;
    let nl;
    while ((nl = this.buf.search(/\r?\n|\r/)) >= 0) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + (this.buf[nl] === "\r" && this.buf[nl + 1] === "\n" ? 2 : 1));
      if (line.length > MAX_LINE) this.queue.add(() => this.write(TOO_LONG));
      else this.queue.add(async () => this.write(`${await this.monitor.human(line)}(qemu) `));
    }
    if (this.buf.length > MAX_LINE) {
      this.buf = "";
      this.queue.add(() => this.write(TOO_LONG));
    }
  }
}

export interface MonitorServer {
  /** Where it listens (a TCP port 0 is the one picked). */
  address: string;
  /** Resolves when the first client has connected. */
  firstClient: Promise<void>;
  close(): void;
}

/** Serve QMP or the human monitor at `endpoint`. Rejects with a one-line error if it cannot listen. */
export async function serveMonitor(endpoint: Endpoint, monitor: Monitor, protocol: "qmp" | "hmp", onError: (message: string) => void): Promise<MonitorServer> {
  const clients = new Set<Socket>();
  let connected: () => void = () => {};
  const firstClient = new Promise<void>((resolve) => { connected = resolve; });
  const server: Server = net().createServer((sock) => {
    if (clients.size >= MAX_CLIENTS) {
      sock.destroy();
      return;
    }
    clients.add(sock);
    connected();
    sock.setEncoding("utf8");
    if (endpoint.kind === "tcp" && endpoint.nodelay) sock.setNoDelay(true);
    const write = (text: string) => {
      if (sock.destroyed || !sock.writable) return;
      if (sock.writableLength > MAX_UNREAD) {
        onError(`${protocol} client dropped: it left ${sock.writableLength} bytes of replies and events unread`);
        sock.destroy();
        return;
      }
      sock.write(text);
    };
    // Backpressure: commands wait while the client has not read what went before, and the
    // socket is not read while too many wait.
    const waiting: (() => void)[] = [];
    const wake = () => { for (const w of waiting.splice(0)) w(); };
    const flow: SessionFlow = {
      ready: () => (sock.destroyed || sock.writableLength <= OUTPUT_HIGH_WATER ? Promise.resolve() : new Promise<void>((r) => waiting.push(r))),
      settled: () => readMore(),
    };
    const session = protocol === "qmp" ? new QmpSession(monitor, (m) => write(`${JSON.stringify(m)}\r\n`), flow) : new HmpSession(monitor, write, flow);
    const readMore = () => {
      if (sock.destroyed) return;
      if (session.pending > MAX_PENDING) sock.pause();
      else if (sock.isPaused()) sock.resume();
    };
    sock.on("data", (text: string) => {
      try {
        session.input(text);
        readMore();
      } catch (e) {
        onError(`${protocol} client: ${(e as Error).message}`);
        sock.destroy();
      }
    });
    sock.on("drain", wake);
    sock.on("error", () => {}); // the client went away
    sock.on("close", () => {
      clients.delete(sock);
      if (session instanceof QmpSession) session.close();
      wake();
    });
  });
  server.on("error", (e) => onError(`${protocol} server ${endpoint.spec}: ${e.message}`));
  const option = protocol === "qmp" ? "-qmp" : "-monitor";
  await new Promise<void>((resolve, reject) => {
    server.once("error", (e: NodeJS.ErrnoException) => reject(new Error(`${option} ${endpoint.spec}: cannot listen (${e.code ?? e.message})`)));
    if (endpoint.kind === "unix") {
      // A socket left by an earlier run is replaced, as QEMU does; anything else at the path is not.
      try {
        if (lstatSync(endpoint.path).isSocket()) unlinkSync(endpoint.path);
      } catch { /* nothing there */ }
      server.listen(endpoint.path, resolve);
    } else server.listen(endpoint.port, endpoint.host, resolve);
  });
  const addr = server.address();
  const address = typeof addr === "string" ? addr : addr ? `${addr.address}:${addr.port}` : endpoint.spec;
  return {
    address,
    firstClient,
    close() {
      server.close();
      for (const c of clients) c.end(); // what was written still goes out
      if (endpoint.kind === "unix") {
        try { unlinkSync(endpoint.path); } catch { /* gone already */ }
      }
    },
  };
}
