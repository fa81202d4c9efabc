// A migration link over a WebSocket: how a VM moves between a browser tab and the Node host that
// served its page (a tab has no other socket). One binary message per write; the same code runs
// over a browser's WebSocket and over the `ws` package's on Node, both of which have this shape.
import type { ByteLink } from "./link";
import { printable } from "../util/text";

/** What of a WebSocket this needs (the WHATWG interface, which `ws` implements too). */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  readonly bufferedAmount: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: "message", listener: (e: { data: unknown }) => void): void;
  addEventListener(type: "close", listener: (e: { code: number; reason: string }) => void): void;
  addEventListener(type: "error", listener: (e: unknown) => void): void;
  /** `ws` on Node: stop reading the socket (a reader that falls behind holds the sender back). */
  pause?(): void;
  resume?(): void;
}

const OPEN = 1;
/** Bytes queued on the socket before write() says wait. */
const HIGH_WATER = 4 << 20;
/** What a sender may have sent that the reader has not taken yet, where reading cannot be paused. */
const MAX_UNREAD = 256 << 20;
/** A message larger than a memory section and its index could be is not the migration stream. */
export const MAX_MESSAGE = 80 << 20;

/** A link over an open WebSocket; `peer` names the other end in messages. */
export function wsLink(ws: WebSocketLike, peer: string): ByteLink {
  ws.binaryType = "arraybuffer";
  const queue: Uint8Array[] = [];
  let unread = 0;
  let ended = false;
  let failure: Error | null = null;
  let wake: (() => void) | null = null;
  const signal = () => { const w = wake; wake = null; w?.(); };
  ws.addEventListener("message", (e) => {
    if (ended) return;
    if (!(e.data instanceof ArrayBuffer)) {
      failure ??= new Error(`${peer} sent a text message on the migration link`);
    } else if (e.data.byteLength > MAX_MESSAGE) {
      failure ??= new Error(`${peer} sent a message of ${e.data.byteLength} bytes on the migration link`);
    } else {
      queue.push(new Uint8Array(e.data));
      unread += e.data.byteLength;
      if (ws.pause && unread > HIGH_WATER) ws.pause();
      else if (unread > MAX_UNREAD) failure ??= new Error(`${peer} sent more than ${MAX_UNREAD >> 20} MiB that was not read yet`);
    }
    if (failure) ws.close(1008, "bad migration stream");
    signal();
  });
  ws.addEventListener("close", (e) => {
    if (!ended && e.code !== 1000) failure ??= new Error(`the link to ${peer} closed (${e.code}${e.reason ? `: ${printable(e.reason)}` : ""})`);
    ended = true;
    signal();
  });
  ws.addEventListener("error", () => {
    failure ??= new Error(`the link to ${peer} failed`);
    signal();
  });
  return {
    peer,
    write(chunk) {
      if (ws.readyState !== OPEN) return true; // the reader side sees the close
      ws.send(chunk);
      return ws.bufferedAmount < HIGH_WATER;
    },
    // Neither side says when its send buffer drained: look, as often as a link can empty it.
    async drained() {
      while (ws.readyState === OPEN && ws.bufferedAmount >= HIGH_WATER / 2) await new Promise((r) => setTimeout(r, 2));
      if (ws.readyState !== OPEN) throw failure ?? new Error(`the link to ${peer} closed`);
    },
    async *chunks() {
      for (;;) {
        if (queue.length) {
          const c = queue.shift()!;
          unread -= c.length;
          if (ws.pause && unread <= HIGH_WATER / 2) ws.resume?.();
          yield c;
          continue;
        }
        if (failure) throw failure;
        if (ended) return;
        await new Promise<void>((resolve) => { wake = resolve; });
      }
    },
    close(now = false) {
      if (ws.readyState !== OPEN) return;
      if (now) {
        ended = true;
        ws.close(4000, "reset");
        return;
      }
      // Whatever is queued goes first: close once the socket has sent it.
      void (async () => {
        while (ws.readyState === OPEN && ws.bufferedAmount > 0) await new Promise((r) => setTimeout(r, 5));
        ws.close(1000);
      })();
    },
  };
}

/** Open a WebSocket (the environment's: a browser's, or on Node one given) and make it a link. */
export function openWsLink(make: () => WebSocketLike, peer: string, timeoutMs = 10_000): Promise<ByteLink> {
  return new Promise((resolve, reject) => {
    const ws = make();
    const timer = setTimeout(() => { ws.close(); reject(new Error(`cannot reach ${peer}: no answer within ${timeoutMs / 1000} s`)); }, timeoutMs);
    let opened = false;
    (ws as WebSocketLike & { addEventListener(t: "open", l: () => void): void }).addEventListener("open", () => {
      opened = true;
      clearTimeout(timer);
      resolve(wsLink(ws, peer));
    });
    ws.addEventListener("error", () => { /* the close that follows says it */ });
    ws.addEventListener("close", (e) => {
      clearTimeout(timer);
      if (!opened) reject(new Error(`cannot reach ${peer}: ${e.code === 1006 ? "refused (wrong address, or the page's token was not accepted)" : `closed (${e.code} ${printable(e.reason)})`}`));
    });
  });
}
