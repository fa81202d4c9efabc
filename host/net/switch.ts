/**
 * A learning Ethernet switch joining the NICs of VMs on one host. Pure logic, no Node APIs.
 *
 * Each port() is a NetBackend for one NIC: the device calls send() with the guest's frames and
 * attach()es its receive function. The switch learns which port each source MAC lives behind,
 * forwards known unicast to that port, floods broadcast, multicast and unknown unicast to every
 * other port, and never sends a frame back out of the port it came in on.
 *
 * Frames are delivered synchronously from send(). A NIC in another thread is reached through a
 * message channel: on the switch's side bridgeToChannel(sw.port(), channelEnd) relays frames
 * between the port and the channel; on the VM's side channelBackend(otherEnd) is the NetBackend
 * the device uses (see the end of this file).
 */

import type { NetBackend } from "../devices/backends";

export interface EthernetSwitchOptions {
  /** Most MAC addresses remembered at once (the oldest learnt is forgotten first). Default 4096. */
  maxMacs?: number;
  /** A MAC not seen for this long is forgotten (frames to it are flooded). Default 300 s. */
  macAgeMs?: number;
  /** Clock in milliseconds (for ageing); default Date.now. */
  now?: () => number;
}

export interface SwitchPort extends NetBackend {
  /** Unique within its switch, from 1. */
  readonly id: number;
  readonly closed: boolean;
}

export interface SwitchStats {
  ports: number;
  macs: number;
  /** Frames sent to one known port. */
  forwarded: number;
  /** Frames sent to every other port. */
  flooded: number;
  /** Frames not delivered anywhere: malformed, from a closed port, to their own port, too deep. */
  dropped: number;
  /** Frame copies handed to receivers. */
  delivered: number;
}

/** Shortest and longest frames accepted (header only; jumbo frames allowed). */
const MIN_FRAME = 14;
const MAX_FRAME = 65535 + 14;
/** Deliveries nested deeper than this (switches plugged into each other in a loop) are dropped. */
const MAX_DEPTH = 8;

class Port implements SwitchPort {
  receive: ((frame: Uint8Array) => void) | null = null;
  closed = false;
  constructor(
    readonly id: number,
    private readonly sw: EthernetSwitch,
  ) {}
  send(frame: Uint8Array): void {
    this.sw.input(this, frame);
  }
  attach(receive: (frame: Uint8Array) => void): void {
    this.receive = receive;
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.receive = null;
    this.sw.detach(this);
  }
}

interface MacEntry {
  port: Port;
  seen: number;
}

export class EthernetSwitch {
  private readonly ports = new Set<Port>();
  private readonly macs = new Map<string, MacEntry>();
  private nextId = 1;
  private depth = 0;
  private readonly maxMacs: number;
  private readonly macAgeMs: number;
  private readonly now: () => number;
  private readonly counters = { forwarded: 0, flooded: 0, dropped: 0, delivered: 0 };

  constructor(opts: EthernetSwitchOptions = {}) {
    this.maxMacs = Math.max(1, opts.maxMacs ?? 4096);
    this.macAgeMs = opts.macAgeMs ?? 300_000;
    this.now = opts.now ?? Date.now;
  }

  /** A new port; close() it when its NIC goes away. */
  port(): SwitchPort {
    const p = new Port(this.nextId++, this);
    this.ports.add(p);
    return p;
  }

  /**
   * Joins a backend to a new port, as if its far end were a NIC: frames the switch sends out
   * of the port go to backend.send(), frames the backend delivers enter the switch. Closing
   * the returned port does not close the backend.
   */
  plug(backend: NetBackend): SwitchPort {
    const p = this.port();
    p.attach((frame) => backend.send(frame));
    backend.attach((frame) => p.send(frame));
    return p;
  }

  /** The learnt table, for diagnostics. */
  macTable(): { mac: string; port: number }[] {
    return Array.from(this.macs, ([mac, e]) => ({ mac, port: e.port.id }));
  }

  stats(): SwitchStats {
    return { ports: this.ports.size, macs: this.macs.size, ...this.counters };
  }

  /** Closes every port. */
  close(): void {
    for (const p of Array.from(this.ports)) p.close();
    this.macs.clear();
  }

  /** @internal A frame entering through `from`. */
  input(from: Port, frame: Uint8Array): void {
    if (from.closed || frame.length < MIN_FRAME || frame.length > MAX_FRAME || this.depth >= MAX_DEPTH) {
      this.counters.dropped++;
      return;
    }
    const now = this.now();
    const src = macKey(frame, 6);
    if ((frame[6] & 1) === 0) this.learn(src, from, now);

    let out: Port | null = null;
    if ((frame[0] & 1) === 0) {
      const e = this.macs.get(macKey(frame, 0));
      if (e) {
        if (now - e.seen > this.macAgeMs) this.macs.delete(macKey(frame, 0));
        else out = e.port;
      }
    }
    this.depth++;
    try {
      if (out) {
        if (out === from) {
          this.counters.dropped++; // the destination is on the segment it came from
          return;
        }
        this.counters.forwarded++;
        this.deliver(out, frame);
      } else {
        this.counters.flooded++;
        const targets = Array.from(this.ports).filter((p) => p !== from);
        let error: unknown = null;
        targets.forEach((p, i) => {
          // Each receiver gets its own copy; the last gets the sender's. A receiver that
          // throws does not keep the frame from the others.
          try {
            this.deliver(p, i === targets.length - 1 ? frame : frame.slice());
          } catch (e) {
            error ??= e;
          }
        });
        if (error !== null) throw error;
      }
    } finally {
      this.depth--;
    }
  }

  /** @internal */
  detach(p: Port): void {
    this.ports.delete(p);
    for (const [mac, e] of this.macs) if (e.port === p) this.macs.delete(mac);
  }

  private learn(mac: string, port: Port, now: number): void {
    const e = this.macs.get(mac);
    if (e) {
      e.port = port; // a station that moved is relearnt at once
      e.seen = now;
      return;
    }
    if (this.macs.size >= this.maxMacs) {
      const oldest = this.macs.keys().next();
      if (!oldest.done) this.macs.delete(oldest.value);
    }
    this.macs.set(mac, { port, seen: now });
  }

  private deliver(p: Port, frame: Uint8Array): void {
    const r = p.receive;
    if (!r) return; // no NIC attached yet: the frame is lost, as on a real unplugged cable
    this.counters.delivered++;
    r(frame);
  }
}

function macKey(b: Uint8Array, o: number): string {
  let s = "";
  for (let i = o; i < o + 6; i++) s += (b[i] < 16 ? "0" : "") + b[i].toString(16) + (i < o + 5 ? ":" : "");
  return s;
}

// ---------------------------------------------------------------------------------------------
// Named switches (`-netdev switch=NAME`)

const registry = new Map<string, EthernetSwitch>();

/** The switch called `name`, created on first use; every VM naming it joins the same one. */
export function getSwitch(name: string): EthernetSwitch {
  let sw = registry.get(name);
  if (!sw) {
    sw = new EthernetSwitch();
    registry.set(name, sw);
  }
  return sw;
}

/** Closes the named switch (all its ports) and forgets it. */
export function deleteSwitch(name: string): boolean {
  const sw = registry.get(name);
  if (!sw) return false;
  sw.close();
  return registry.delete(name);
}

export function switchNames(): string[] {
  return Array.from(registry.keys());
}

// ---------------------------------------------------------------------------------------------
// Ports across threads

/**
 * The part of a MessagePort (browser or node:worker_threads) that frames need. Frames travel
 * as Uint8Array messages.
 */
export interface FrameChannel {
  postMessage(message: unknown): void;
  onmessage: ((ev: { data: unknown }) => void) | null;
  close?(): void;
}

function asFrame(data: unknown): Uint8Array | null {
  return data instanceof Uint8Array ? data : null;
}

/**
 * Relays between a backend (typically a switch port) and one end of a channel: what the
 * backend delivers is posted, what arrives on the channel is sent into the backend. Returns a
 * function undoing it (closing the channel end, not the backend).
 */
export function bridgeToChannel(backend: NetBackend, channel: FrameChannel): () => void {
  let open = true;
  backend.attach((frame) => {
    if (open) channel.postMessage(frame);
  });
  channel.onmessage = (ev) => {
    const f = asFrame(ev.data);
    if (open && f) backend.send(f);
  };
  return () => {
    if (!open) return;
    open = false;
    channel.onmessage = null;
    channel.close?.();
  };
}

/** A NetBackend for a NIC whose link is a channel end (the other end bridged to a port). */
export function channelBackend(channel: FrameChannel): NetBackend {
  let receive: ((frame: Uint8Array) => void) | null = null;
  let open = true;
  channel.onmessage = (ev) => {
    const f = asFrame(ev.data);
    if (open && f && receive) receive(f);
  };
  return {
    send(frame) {
      if (open) channel.postMessage(frame);
    },
    attach(r) {
      receive = r;
    },
    close() {
      if (!open) return;
      open = false;
      receive = null;
      channel.onmessage = null;
      channel.close?.();
    },
  };
}
