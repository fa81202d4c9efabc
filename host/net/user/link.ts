/**
 * The wire between the virtual hosts and the guest's NIC: frames for the guest are queued and
 * delivered in a microtask after the event that produced them (never from inside the NIC's
 * send()), then onWake() is called once per batch. Every part of the stack sends through here,
 * counts here and reports its unexpected errors here.
 */

import {
  ARP_REQUEST,
  BROADCAST_MAC,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  IPPROTO_TCP,
  IPPROTO_UDP,
  TCP_ACK,
  TCP_RST,
  ZERO_MAC,
  buildArp,
  buildEthernet,
  buildIPv4,
  buildTcp,
  buildUdp,
  isGroupMac,
  macEquals,
  type Mac,
} from "../packet";
import { LIMITED_BROADCAST, USER_GATEWAY, USER_NETMASK, USER_NETWORK } from "./network";

/** What the virtual network saw and did; UserNet.stats() reports it. */
export function newCounters() {
  return {
    framesFromGuest: 0,
    bytesFromGuest: 0,
    framesToGuest: 0,
    bytesToGuest: 0,
    malformed: 0,
    ignored: 0,
    undelivered: 0,
    errors: 0,
    arpReplies: 0,
    icmpEchoReplies: 0,
    dhcpOffers: 0,
    dhcpAcks: 0,
    dhcpNaks: 0,
    dnsQueries: 0,
    dnsLocal: 0,
    dnsForwarded: 0,
    dnsFailed: 0,
    tcpOutbound: 0,
    tcpInbound: 0,
    tcpRefused: 0,
    tcpResets: 0,
    tcpRetransmits: 0,
    udpOut: 0,
    udpIn: 0,
  };
}

export type Counters = ReturnType<typeof newCounters>;

/** Something that sends once the current events are handled (a TCP connection with news). */
export interface Sender {
  output(): void;
}

export class GuestLink {
  readonly counters = newCounters();
  private receive: ((frame: Uint8Array) => void) | null = null;
  private closed = false;
  private guestMac: Mac | null = null;
  private out: Uint8Array[] = [];
  private readonly dirty = new Set<Sender>();
  private flushScheduled = false;
  private ipId = 0;
  private lastArpRequest = -Infinity;

  constructor(
    /** The virtual hosts' MAC. */
    readonly gwMac: Mac,
    /** Largest IP packet to the guest. */
    readonly mtu: number,
    private readonly onWake: (() => void) | undefined,
    private readonly onError: (err: unknown) => void,
  ) {}

  get isClosed(): boolean {
    return this.closed;
  }

  attach(receive: (frame: Uint8Array) => void): void {
    this.receive = receive;
  }

  /** Nothing more reaches the guest. */
  close(): void {
    this.closed = true;
    this.receive = null;
    this.dirty.clear();
    this.out = [];
  }

  /** Wraps a host event handler: an exception in it is reported, never thrown into the host. */
  guard<A extends unknown[]>(fn: (...args: A) => void): (...args: A) => void {
    return (...args: A) => {
      try {
        fn(...args);
      } catch (e) {
        this.report(e);
      }
    };
  }

  report(e: unknown): void {
    this.counters.errors++;
    try {
      this.onError(e);
    } catch {
      // an error handler that throws has nowhere to report to
    }
  }

  /** Remembers the guest's MAC; true the first time one is learnt (frames held for it may go). */
  learnGuestMac(mac: Mac): boolean {
    if (isGroupMac(mac) || macEquals(mac, this.gwMac) || macEquals(mac, ZERO_MAC)) return false;
    if (this.guestMac && macEquals(mac, this.guestMac)) return false;
    const first = this.guestMac === null;
    this.guestMac = new Uint8Array(mac);
    return first;
  }

  /** Queues an IPv4 packet for the guest, to `dstMac` if given, else as its address says. */
  emitIp(src: number, dst: number, protocol: number, payload: Uint8Array, dstMac?: Mac): void {
    if (this.closed) return;
    const mac = dstMac ?? (dst === LIMITED_BROADCAST ? BROADCAST_MAC : this.guestMac);
    if (!mac) {
      this.counters.undelivered++;
      this.arpForGuest(dst);
      return;
    }
    if (20 + payload.length > this.mtu) {
      this.counters.undelivered++;
      return;
    }
    const pkt = buildIPv4({ src, dst, protocol, payload, id: this.ipId++ & 0xffff, dontFragment: protocol === IPPROTO_TCP });
    this.emitFrame(buildEthernet(mac, this.gwMac, ETHERTYPE_IPV4, pkt));
  }

  sendUdp(src: number, srcPort: number, dst: number, dstPort: number, payload: Uint8Array, dstMac?: Mac): void {
    if (28 + payload.length > this.mtu) {
      this.counters.undelivered++;
      return;
    }
    this.emitIp(src, dst, IPPROTO_UDP, buildUdp(src, dst, srcPort, dstPort, payload), dstMac);
  }

  /** A reset to the guest (withAck: with the ACK flag and that acknowledgment number). */
  sendRst(src: number, srcPort: number, dst: number, dstPort: number, seq: number, ack: number, withAck: boolean): void {
    const seg = buildTcp(src, dst, {
      srcPort,
      dstPort,
      seq,
      ack: withAck ? ack : 0,
      flags: TCP_RST | (withAck ? TCP_ACK : 0),
      window: 0,
    });
    this.emitIp(src, dst, IPPROTO_TCP, seg);
    this.flushSoon();
  }

  emitFrame(f: Uint8Array): void {
    this.out.push(f);
    this.flushSoon();
  }

  /** `s` has something to send: its output() runs before the next delivery. */
  markDirty(s: Sender): void {
    this.dirty.add(s);
    this.flushSoon();
  }

  forgetDirty(s: Sender): void {
    this.dirty.delete(s);
  }

  flushSoon(): void {
    if (this.flushScheduled || this.closed) return;
    this.flushScheduled = true;
    queueMicrotask(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.closed) return;
    for (const s of this.dirty) {
      this.dirty.delete(s);
      try {
        s.output();
      } catch (e) {
        this.report(e);
      }
    }
    const frames = this.out;
    if (frames.length === 0) return;
    this.out = [];
    const r = this.receive;
    if (!r) {
      this.counters.undelivered += frames.length;
      return;
    }
    for (const f of frames) {
      this.counters.framesToGuest++;
      this.counters.bytesToGuest += f.length;
      try {
        r(f);
      } catch (e) {
        this.report(e);
      }
      if (this.closed) return;
    }
    if (this.onWake) {
      try {
        this.onWake();
      } catch (e) {
        this.report(e);
      }
    }
  }

  private arpForGuest(ip: number): void {
    if ((ip & USER_NETMASK) >>> 0 !== USER_NETWORK) return;
    const t = performance.now();
    if (t - this.lastArpRequest < 100) return;
    this.lastArpRequest = t;
    const arp = buildArp({ op: ARP_REQUEST, senderMac: this.gwMac, senderIp: USER_GATEWAY, targetMac: ZERO_MAC, targetIp: ip });
    this.emitFrame(buildEthernet(BROADCAST_MAC, this.gwMac, ETHERTYPE_ARP, arp));
  }
}
