/**
 * UDP for user-mode networking: one host socket per guest source address and port, carrying
 * its datagrams to wherever the guest sends them and the replies of those peers (only) back.
 * Each binding holds one unit of the SocketBudget and is closed after two idle minutes.
 */

import type { HostAddress, HostSockets, UdpSocket } from "../host-sockets";
import type { SocketBudget } from "../budget";
import { parseIp4, type Ipv4Packet } from "../packet";
import type { GuestLink } from "./link";
import { HOST_LOOPBACK, USER_GATEWAY } from "./network";
import { unrefTimer } from "./timers";

const UDP_IDLE_MS = 120_000;
const UDP_SWEEP_MS = 15_000;

class UdpBinding {
  lastUsed = performance.now();
  /** host address:port pairs the guest has sent to; replies are accepted only from these. */
  readonly peers = new Set<string>();
  constructor(
    readonly key: string,
    readonly guestIp: number,
    readonly guestPort: number,
    readonly sock: UdpSocket,
  ) {}
}

export class UdpRelay {
  private readonly bindings = new Map<string, UdpBinding>();
  private sweep: ReturnType<typeof setInterval> | null = null;

  constructor(
    private readonly link: GuestLink,
    private readonly sockets: HostSockets,
    private readonly budget: SocketBudget,
    /** Where on the host the guest's UDP to dst:port goes; null when it may not. */
    private readonly destination: (dst: number, port: number) => HostAddress | null,
  ) {}

  get size(): number {
    return this.bindings.size;
  }

  /** A datagram from the guest (its source checked to be a guest address). */
  output(ip: Ipv4Packet, srcPort: number, dstPort: number, payload: Uint8Array): void {
    const dest = srcPort === 0 || dstPort === 0 ? null : this.destination(ip.dst, dstPort);
    if (!dest) {
      this.link.counters.ignored++;
      return;
    }
    const key = `${ip.src}:${srcPort}`;
    let b = this.bindings.get(key);
    if (!b) {
      if (!this.budget.take()) {
        // The budget is spent: this NIC's binding idle the longest makes room, if it has one.
        let idlest: UdpBinding | null = null;
        for (const x of this.bindings.values()) if (!idlest || x.lastUsed < idlest.lastUsed) idlest = x;
        if (idlest) this.closeBinding(idlest);
        if (!idlest || !this.budget.take()) {
          this.link.counters.ignored++;
          return;
        }
      }
      const nb: UdpBinding = new UdpBinding(
        key,
        ip.src,
        srcPort,
        this.sockets.openUdp(4, {
          onMessage: this.link.guard((data: Uint8Array, from: HostAddress) => this.input(nb, data, from)),
          onError: () => this.closeBinding(nb),
        }),
      );
      this.bindings.set(key, nb);
      b = nb;
      if (!this.sweep) {
        this.sweep = setInterval(this.link.guard(() => this.sweepIdle()), UDP_SWEEP_MS);
        unrefTimer(this.sweep);
      }
    }
    b.lastUsed = performance.now();
    if (b.peers.size < 1024) b.peers.add(`${dest.host}:${dest.port}`);
    this.link.counters.udpOut++;
    b.sock.send(payload, dest);
  }

  private input(b: UdpBinding, data: Uint8Array, from: HostAddress): void {
    if (this.bindings.get(b.key) !== b) return;
    if (!b.peers.has(`${from.host}:${from.port}`)) {
      this.link.counters.ignored++;
      return;
    }
    const src = from.host === HOST_LOOPBACK ? USER_GATEWAY : parseIp4(from.host);
    if (src === null) return;
    b.lastUsed = performance.now();
    this.link.counters.udpIn++;
    this.link.sendUdp(src, from.port, b.guestIp, b.guestPort, data);
  }

  private closeBinding(b: UdpBinding): void {
    if (this.bindings.get(b.key) !== b) return;
    this.bindings.delete(b.key);
    this.budget.release();
    b.sock.close();
  }

  private sweepIdle(): void {
    const t = performance.now();
    for (const b of Array.from(this.bindings.values())) if (t - b.lastUsed > UDP_IDLE_MS) this.closeBinding(b);
    if (this.bindings.size === 0 && this.sweep) {
      clearInterval(this.sweep);
      this.sweep = null;
    }
  }

  close(): void {
    for (const b of Array.from(this.bindings.values())) this.closeBinding(b);
    if (this.sweep) clearInterval(this.sweep);
    this.sweep = null;
  }
}
