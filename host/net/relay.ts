/**
 * User-mode networking that runs on a server: the NIC's frames cross a WebSocket (one binary
 * message per Ethernet frame, both ways) to a UserNet there (`wasmvisor web`'s /net). A browser
 * cannot open TCP or UDP sockets, so a VM in a page reaches the network this way.
 *
 * The protocol: the client's first message is its netdev's options as JSON; the server answers
 * "ok" (a text message) and then frames flow, or closes the socket with the reason it refused
 * them. Both sides drop frames larger than an Ethernet frame (with some slack): the other side
 * may be hostile.
 */

import type { NetBackend } from "../devices/backends";
import type { UserNetOptions } from "./user/options";
import { loopbackPorts } from "./user/options";

/** Largest frame relayed: 1514 bytes (MTU 1500) with room for VLAN tags. */
export const MAX_RELAY_FRAME = 1536;
/** The server's answer to acceptable options. */
export const RELAY_ACCEPTED = "ok";
/** Frames held while the socket opens; beyond them the guest's frames are dropped (it retransmits). */
const MAX_QUEUED_FRAMES = 256;
/** Bytes the socket may have waiting to go out before the guest's frames are dropped. */
const MAX_BUFFERED = 1 << 20;

/** The options a relay's server takes from its client: what concerns the guest's side only. */
export type RelayedOptions = Pick<UserNetOptions, "restrict" | "loopback">;

/**
 * The options a relay client asked for (untrusted JSON), checked: only restrict and loopback are
 * taken. Throws a one-line Error saying what to change.
 */
export function checkRelayedOptions(json: unknown): RelayedOptions {
  if (typeof json !== "object" || json === null || Array.isArray(json)) throw new Error("the first message must be the netdev options as a JSON object");
  const o = json as Record<string, unknown>;
  const opts: RelayedOptions = {};
  for (const key of Object.keys(o)) {
    if (o[key] === undefined) continue;
    if (key === "hostfwd") {
      if (Array.isArray(o.hostfwd) && o.hostfwd.length === 0) continue;
      throw new Error("hostfwd is not taken over the relay: it would open ports on the server; drop it from the NIC");
    }
    if (key === "restrict") {
      if (typeof o.restrict !== "boolean") throw new Error("restrict must be true or false");
      opts.restrict = o.restrict;
    } else if (key === "loopback") {
      const lo = o.loopback;
      if (lo !== "all" && lo !== "none" && !(Array.isArray(lo) && lo.length <= 64 && lo.every((p) => typeof p === "number"))) {
        throw new Error("loopback must be \"all\", \"none\" or a list of at most 64 ports");
      }
      loopbackPorts(lo as "all" | "none" | number[]); // throws on a bad port
      opts.loopback = lo as RelayedOptions["loopback"];
    } else {
      throw new Error(`the relay takes only restrict and loopback, not ${JSON.stringify(key).slice(0, 40)} (the server decides the rest)`);
    }
  }
  return opts;
}

export interface RelayStats {
  framesOut: number;
  framesIn: number;
  /** Frames dropped: too large, or the socket not keeping up. */
  dropped: number;
}

/** A NIC's backend whose UserNet is on the server behind `url` (ws://host/net?token=...). */
export class RelayedUserNet implements NetBackend {
  readonly stats: RelayStats = { framesOut: 0, framesIn: 0, dropped: 0 };
  private readonly socket: WebSocket;
  private receive: ((frame: Uint8Array) => void) | null = null;
  private queued: Uint8Array[] = [];
  private accepted = false;
  private closed = false;
  private wakeScheduled = false;
  private readonly accepting: Promise<void>;

  constructor(url: string, options: UserNetOptions, private readonly io: { onWake?: () => void; onError?: (err: unknown) => void } = {}) {
    const { restrict, loopback, hostfwd } = options;
    this.socket = new WebSocket(url);
    this.socket.binaryType = "arraybuffer";
    let accepted = () => {};
    this.accepting = new Promise<void>((resolve, reject) => {
      accepted = resolve;
      this.socket.onopen = () => this.socket.send(JSON.stringify({ restrict, loopback, hostfwd }));
      this.socket.onclose = (e) => {
        const why = e.reason || (e.code === 1006 ? "the connection failed or was refused" : `closed (${e.code})`);
        if (!this.accepted) reject(new Error(`user-mode networking: the server's relay ${url.replace(/\?.*/, "")} refused the NIC: ${why}`));
        else if (!this.closed) this.io.onError?.(new Error(`user-mode networking: the relay closed: ${why}`));
        this.closed = true;
        this.queued = [];
      };
    });
    this.accepting.catch(() => {}); // a NIC nobody waits for must not be an unhandled rejection
    this.socket.onmessage = (e: MessageEvent) => {
      if (!this.accepted) {
        if (e.data === RELAY_ACCEPTED) {
          this.accepted = true;
          for (const f of this.queued) this.transmit(f);
          this.queued = [];
          accepted();
        }
        return;
      }
      if (!(e.data instanceof ArrayBuffer) || e.data.byteLength > MAX_RELAY_FRAME || !this.receive) {
        this.stats.dropped++;
        return;
      }
      this.stats.framesIn++;
      this.receive(new Uint8Array(e.data));
      // One wake per batch of messages, as UserNet's link does.
      if (!this.wakeScheduled) {
        this.wakeScheduled = true;
        queueMicrotask(() => {
          this.wakeScheduled = false;
          this.io.onWake?.();
        });
      }
    };
  }

  ready(): Promise<void> {
    return this.accepting;
  }

  send(frame: Uint8Array): void {
    if (this.closed) return;
    if (frame.length > MAX_RELAY_FRAME) {
      this.stats.dropped++;
      return;
    }
    if (this.accepted) this.transmit(frame);
    else if (this.queued.length < MAX_QUEUED_FRAMES) this.queued.push(frame);
    else this.stats.dropped++;
  }

  private transmit(frame: Uint8Array): void {
    if (this.socket.readyState !== WebSocket.OPEN || this.socket.bufferedAmount > MAX_BUFFERED) {
      this.stats.dropped++;
      return;
    }
    this.stats.framesOut++;
    // A WebSocket sends no view of shared memory.
    this.socket.send(frame.buffer instanceof ArrayBuffer ? frame : frame.slice());
  }

  attach(receive: (frame: Uint8Array) => void): void {
    this.receive = receive;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.receive = null;
    this.queued = [];
    this.socket.close(1000, "the NIC was closed");
  }
}
