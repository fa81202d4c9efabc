// A QMP client written from QEMU's protocol specification (docs/interop/qmp-spec): it reads the
// greeting, sends commands (with an id when asked), and keeps events apart from replies. Python's
// qemu.qmp is not in Debian 12 (it is on PyPI), so the tests drive the socket themselves.
import { connect, type Socket } from "node:net";

export interface QmpReply {
  return?: unknown;
  error?: { class: string; desc: string };
  id?: unknown;
}
export interface QmpEventMessage {
  event: string;
  data?: Record<string, unknown>;
  timestamp: { seconds: number; microseconds: number };
}

export class QmpClient {
  greeting: unknown;
  readonly events: QmpEventMessage[] = [];
  /** Everything received, in order (replies and events). */
  readonly received: Record<string, unknown>[] = [];
  private buf = "";
  private waiting: ((m: QmpReply) => void)[] = [];
  private replies: QmpReply[] = [];
  private closed = false;

  private constructor(private readonly sock: Socket) {
    sock.setEncoding("utf8");
    sock.on("data", (d: string) => {
      this.buf += d;
      let nl;
      while ((nl = this.buf.indexOf("\n")) >= 0) {
        const line = this.buf.slice(0, nl).trim();
        this.buf = this.buf.slice(nl + 1);
        if (line) this.message(JSON.parse(line));
      }
    });
    sock.on("close", () => { this.closed = true; });
    sock.on("error", () => {});
  }

  private message(m: Record<string, unknown>): void {
    this.received.push(m);
    if ("QMP" in m) this.greeting = m;
    else if ("event" in m) this.events.push(m as unknown as QmpEventMessage);
    else {
      const w = this.waiting.shift();
      if (w) w(m as QmpReply);
      else this.replies.push(m as QmpReply);
    }
  }

  /** Connect (retrying while the server is not up yet) and read the greeting. */
  static async connect(where: string | { host: string; port: number }, timeoutMs = 20_000): Promise<QmpClient> {
    const t0 = Date.now();
    for (;;) {
      try {
        const sock = await new Promise<Socket>((resolve, reject) => {
          const s = typeof where === "string" ? connect(where) : connect(where.port, where.host);
          s.once("connect", () => resolve(s));
          s.once("error", reject);
        });
        const c = new QmpClient(sock);
        while (!c.greeting) {
          if (c.closed) throw new Error("closed before the greeting");
          await new Promise((r) => setTimeout(r, 10));
        }
        return c;
      } catch (e) {
        if (Date.now() - t0 > timeoutMs) throw e;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  /** Send raw text; resolves with the next reply (not an event). */
  raw(text: string | Uint8Array): Promise<QmpReply> {
    const p = this.next();
    this.sock.write(text);
    return p;
  }

  next(timeoutMs = 30_000): Promise<QmpReply> {
    const r = this.replies.shift();
    if (r) return Promise.resolve(r);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no QMP reply within ${timeoutMs} ms`)), timeoutMs);
      this.waiting.push((m) => { clearTimeout(t); resolve(m); });
    });
  }

  execute(command: string, args?: Record<string, unknown>, id?: unknown): Promise<QmpReply> {
    return this.raw(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), ...(id !== undefined ? { id } : {}) })}\n`);
  }

  async waitForEvent(name: string, timeoutMs = 60_000): Promise<QmpEventMessage> {
    const t0 = Date.now();
    for (;;) {
      const e = this.events.find((x) => x.event === name);
      if (e) return e;
      if (Date.now() - t0 > timeoutMs) throw new Error(`no ${name} event within ${timeoutMs} ms (events: ${this.events.map((x) => x.event).join(", ")})`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async waitClosed(timeoutMs = 10_000): Promise<void> {
    const t0 = Date.now();
    while (!this.closed) {
      if (Date.now() - t0 > timeoutMs) throw new Error("the QMP connection stayed open");
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  close(): void {
    this.sock.destroy();
  }
}

/** A reply's shape: its keys and the types of their values, recursively (an array by its first element). */
export function shape(v: unknown): unknown {
  if (Array.isArray(v)) return v.length ? [shape(v[0])] : [];
  if (v !== null && typeof v === "object") {
    return Object.fromEntries(Object.keys(v).sort().map((k) => [k, shape((v as Record<string, unknown>)[k])]));
  }
  return v === null ? "null" : typeof v;
}
