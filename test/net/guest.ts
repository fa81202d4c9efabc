/**
 * A scripted guest for UserNet tests: frames built with the packet module, delivered to the
 * backend as a NIC would, and a small TCP endpoint good enough to move megabytes through the
 * backend's TCP (in-order receive, go-back-N retransmission, window scaling, zero windows).
 */

import {
  ETHERTYPE_IPV4,
  IPPROTO_TCP,
  IPPROTO_UDP,
  TCP_ACK,
  TCP_FIN,
  TCP_RST,
  TCP_SYN,
  buildEthernet,
  buildIPv4,
  buildTcp,
  buildUdp,
  ip4,
  parseEthernet,
  parseIPv4,
  parseMac,
  parseTcp,
  type Ipv4Packet,
  type TcpSegment,
} from "../../host/net/packet";
import type { UserNet } from "../../host/net/user";
import { USER_GATEWAY_MAC, USER_GUEST } from "../../host/net/user/network";

export const GUEST_MAC = parseMac("52:54:00:12:34:56")!;
export const GW_MAC = parseMac(USER_GATEWAY_MAC)!;
export const GW = ip4(10, 0, 2, 2);
export const DNS = ip4(10, 0, 2, 3);
export const GUEST = USER_GUEST;

export function ipFrame(src: number, dst: number, protocol: number, payload: Uint8Array, dstMac = GW_MAC): Uint8Array {
  return buildEthernet(dstMac, GUEST_MAC, ETHERTYPE_IPV4, buildIPv4({ src, dst, protocol, payload }));
}

export function udpFrame(src: number, sport: number, dst: number, dport: number, payload: Uint8Array, dstMac = GW_MAC): Uint8Array {
  return ipFrame(src, dst, IPPROTO_UDP, buildUdp(src, dst, sport, dport, payload), dstMac);
}

/** Resolves when cond() holds; rejects after `ms`. Polls every few milliseconds. */
export async function waitUntil(cond: () => boolean, ms: number, what = "condition"): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: ReturnType<typeof setTimeout>;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<T>((_, reject) => {
      t = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]);
}

/** Deterministic bytes: byte i of stream `seed`. */
export function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 255;
  }
  return b;
}

export interface Received {
  frame: Uint8Array;
  ip: Ipv4Packet | null;
}

/**
 * Wires a UserNet to a fake NIC. Frames for the guest are processed in batches on
 * setImmediate, as a VM loop would, never from inside the backend's callback.
 */
export class Harness {
  readonly inbox: Uint8Array[] = [];
  /** Frames no TCP endpoint claimed, for the tests to inspect. */
  readonly frames: Received[] = [];
  readonly endpoints = new Map<string, GuestTcp>();
  readonly listeners = new Map<number, (syn: TcpSegment, ip: Ipv4Packet) => GuestTcp>();
  private scheduled = false;

  constructor(readonly net: UserNet) {
    net.attach((f) => {
      this.inbox.push(f);
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.process());
      }
    });
  }

  send(frame: Uint8Array): void {
    this.net.send(frame);
  }

  private process(): void {
    this.scheduled = false;
    const batch = this.inbox.splice(0);
    const touched = new Set<GuestTcp>();
    for (const frame of batch) {
      const eth = parseEthernet(frame);
      const ip = eth && eth.etherType === ETHERTYPE_IPV4 ? parseIPv4(eth.payload) : null;
      if (ip && ip.protocol === IPPROTO_TCP && ip.dst === GUEST) {
        const seg = parseTcp(ip.payload, ip.src, ip.dst);
        if (seg) {
          let ep = this.endpoints.get(GuestTcp.key(seg.dstPort, ip.src, seg.srcPort));
          if (!ep && seg.flags & TCP_SYN && !(seg.flags & TCP_ACK)) {
            const l = this.listeners.get(seg.dstPort);
            if (l) ep = l(seg, ip);
          }
          if (ep) {
            ep.input(seg);
            touched.add(ep);
            continue;
          }
        }
      }
      this.frames.push({ frame, ip });
    }
    for (const ep of touched) ep.flush();
  }

  /** Removes and returns the first unclaimed frame matching `pred`, waiting up to `ms`. */
  async next(pred: (r: Received) => boolean, ms = 2000, what = "a frame"): Promise<Received> {
    let found: Received | undefined;
    await waitUntil(
      () => {
        const i = this.frames.findIndex(pred);
        if (i >= 0) found = this.frames.splice(i, 1)[0];
        return found !== undefined;
      },
      ms,
      what,
    );
    return found!;
  }
}

export interface GuestTcpOptions {
  localPort: number;
  remoteIp: number;
  remotePort: number;
  /** Receive buffer: the window is this minus bytes not yet read by the "application". */
  rcvBuf?: number;
  /** Our window scale shift, or null to offer none. Default 7. */
  wscale?: number | null;
  mss?: number;
  /** The application reads everything at once (default) or only when read() is called. */
  autoRead?: boolean;
  /** Drop the n-th incoming data segment when this returns true (to exercise retransmission). */
  drop?: (n: number) => boolean;
}

/** The guest's TCP endpoint. */
export class GuestTcp {
  state: "closed" | "syn-sent" | "syn-rcvd" | "established" | "reset" = "closed";
  readonly iss = 0xfffff000; // wraps around 2^32 during a megabyte
  sndUna = this.iss;
  sndNxt = this.iss;
  peerWnd = 0;
  peerShift = 0;
  peerMss = 536;
  myShift: number;
  rcvNxt = 0;
  readonly rcvBuf: number;
  unread = 0;
  readonly chunks: Uint8Array[] = [];
  receivedLen = 0;
  finRcvd = false;
  finSent = false;
  /** Windows we advertised, for the tests. */
  minPeerWnd = Infinity;
  dataSegments = 0;
  dropped = 0;
  retransmits = 0;
  private readonly ooo = new Map<number, Uint8Array>();
  private out = new Uint8Array(0);
  private outBase = 0; // sequence number of out[0]
  private finWanted = false;
  private ackOwed = false;
  private lastProgress = Date.now();
  private timer: ReturnType<typeof setInterval>;

  static key(localPort: number, remoteIp: number, remotePort: number): string {
    return `${localPort}>${remoteIp}:${remotePort}`;
  }

  constructor(
    private readonly h: Harness,
    readonly o: GuestTcpOptions,
  ) {
    this.rcvBuf = o.rcvBuf ?? 65536;
    this.myShift = o.wscale === undefined ? 7 : (o.wscale ?? 0);
    h.endpoints.set(GuestTcp.key(o.localPort, o.remoteIp, o.remotePort), this);
    this.timer = setInterval(() => this.tick(), 20);
    this.timer.unref();
  }

  get acked(): number {
    return (this.sndUna - this.outBase) | 0;
  }

  close(): void {
    clearInterval(this.timer);
    this.h.endpoints.delete(GuestTcp.key(this.o.localPort, this.o.remoteIp, this.o.remotePort));
  }

  data(): Uint8Array {
    const all = new Uint8Array(this.receivedLen);
    let o = 0;
    for (const c of this.chunks) {
      all.set(c, o);
      o += c.length;
    }
    return all;
  }

  connect(): void {
    this.state = "syn-sent";
    this.raw(TCP_SYN, this.iss, 0, undefined, true);
    this.sndNxt = (this.iss + 1) >>> 0;
    this.outBase = this.sndNxt;
    this.sndUna = this.iss;
  }

  /** Answer a SYN (we are the listening side). */
  accept(syn: TcpSegment): void {
    this.rcvNxt = (syn.seq + 1) >>> 0;
    this.peerOptions(syn);
    this.peerWnd = syn.window;
    this.state = "syn-rcvd";
    this.raw(TCP_SYN | TCP_ACK, this.iss, this.rcvNxt, undefined, true);
    this.sndNxt = (this.iss + 1) >>> 0;
    this.outBase = this.sndNxt;
  }

  write(data: Uint8Array): void {
    const all = new Uint8Array(this.out.length + data.length);
    all.set(this.out);
    all.set(data, this.out.length);
    this.out = all;
    this.pump();
  }

  end(): void {
    this.finWanted = true;
    this.pump();
  }

  rst(): void {
    this.raw(TCP_RST | TCP_ACK, this.sndNxt, this.rcvNxt);
    this.state = "reset";
  }

  /** The application consumes n bytes (all if omitted): the window opens. */
  read(n = this.unread, announce = true): void {
    const before = this.window();
    this.unread -= Math.min(n, this.unread);
    if (announce && this.window() > before) this.raw(TCP_ACK, this.sndNxt, this.rcvNxt);
  }

  window(): number {
    return Math.max(0, this.rcvBuf - this.unread);
  }

  private peerOptions(seg: TcpSegment): void {
    this.peerMss = seg.options.mss ?? 536;
    if (this.o.mss) this.peerMss = Math.min(this.peerMss, this.o.mss);
    if (seg.options.windowScale !== undefined && this.myShift > 0) this.peerShift = seg.options.windowScale;
    else {
      this.peerShift = 0;
      this.myShift = 0;
    }
  }

  private raw(flags: number, seq: number, ack: number, payload?: Uint8Array, syn = false): void {
    const field = syn ? Math.min(this.window(), 65535) : Math.min(Math.floor(this.window() / 2 ** this.myShift), 65535);
    const seg = buildTcp(GUEST, this.o.remoteIp, {
      srcPort: this.o.localPort,
      dstPort: this.o.remotePort,
      seq,
      ack: flags & TCP_ACK ? ack : 0,
      flags,
      window: field,
      options: syn ? { mss: this.o.mss ?? 1460, windowScale: this.myShift > 0 ? this.myShift : undefined } : undefined,
      payload,
    });
    if (flags & TCP_ACK) this.ackOwed = false;
    this.h.send(ipFrame(GUEST, this.o.remoteIp, IPPROTO_TCP, seg));
  }

  /** Segments received, and zero-window probes among them, for the tests. */
  segmentsIn = 0;
  probesIn = 0;

  /** Sends our FIN again, as if the ACK for it had been lost. */
  resendFin(): void {
    this.raw(TCP_FIN | TCP_ACK, (this.sndNxt - 1) >>> 0, this.rcvNxt);
  }

  input(seg: TcpSegment): void {
    this.segmentsIn++;
    const f = seg.flags;
    if (f & TCP_RST) {
      this.state = "reset";
      return;
    }
    if (this.state === "syn-sent") {
      if (f & TCP_SYN && f & TCP_ACK && seg.ack === ((this.iss + 1) >>> 0)) {
        this.rcvNxt = (seg.seq + 1) >>> 0;
        this.peerOptions(seg);
        this.peerWnd = seg.window;
        this.sndUna = seg.ack;
        this.state = "established";
        this.ackOwed = true;
      }
      return;
    }
    if (this.state === "syn-rcvd") {
      if (f & TCP_SYN) {
        this.raw(TCP_SYN | TCP_ACK, this.iss, this.rcvNxt, undefined, true); // our SYN-ACK was lost
        return;
      }
      if (!(f & TCP_ACK) || seg.ack !== ((this.iss + 1) >>> 0)) return;
      this.state = "established";
      this.sndUna = seg.ack;
    }
    if (this.state !== "established") return;
    if (f & TCP_ACK) {
      if (((seg.ack - this.sndUna) | 0) > 0 && ((seg.ack - this.sndNxt) | 0) <= 0) {
        this.sndUna = seg.ack;
        this.lastProgress = Date.now();
      }
      this.peerWnd = seg.window * 2 ** this.peerShift;
      this.minPeerWnd = Math.min(this.minPeerWnd, this.peerWnd);
    }
    if (seg.payload.length > 0) {
      this.dataSegments++;
      if (this.o.drop?.(this.dataSegments)) {
        this.dropped++;
        return;
      }
      if (seg.seq === this.rcvNxt && seg.payload.length <= this.window()) {
        this.take(seg.payload);
        // Out-of-order segments that now fit.
        for (let more = this.ooo.get(this.rcvNxt); more; more = this.ooo.get(this.rcvNxt)) {
          this.ooo.delete(this.rcvNxt);
          this.take(more);
        }
        this.ackOwed = true;
      } else if (((seg.seq - this.rcvNxt) | 0) > 0 && ((seg.seq - this.rcvNxt) | 0) < this.window()) {
        // As Linux does: keep it, and send a duplicate ACK at once.
        this.ooo.set(seg.seq, seg.payload.slice());
        this.raw(TCP_ACK, this.sndNxt, this.rcvNxt);
      } else this.ackOwed = true;
    }
    if (f & TCP_FIN) {
      if (((seg.seq + seg.payload.length) >>> 0) === this.rcvNxt && !this.finRcvd) {
        this.rcvNxt = (this.rcvNxt + 1) >>> 0;
        this.finRcvd = true;
      }
      this.ackOwed = true;
    }
    // A keepalive / zero-window probe (old sequence number) is answered.
    if (seg.payload.length === 0 && ((seg.seq - this.rcvNxt) | 0) < 0) {
      this.probesIn++;
      this.ackOwed = true;
    }
  }

  private take(data: Uint8Array): void {
    this.chunks.push(data.slice());
    this.receivedLen += data.length;
    this.rcvNxt = (this.rcvNxt + data.length) >>> 0;
    this.unread += data.length;
    if (this.o.autoRead !== false) this.unread = 0;
  }

  /** After a batch of segments: send what the window allows, then any owed ACK. */
  flush(): void {
    this.pump();
    if (this.ackOwed) this.raw(TCP_ACK, this.sndNxt, this.rcvNxt);
  }

  private pump(): void {
    if (this.state !== "established") return;
    const end = (this.outBase + this.out.length) >>> 0;
    for (let guard = 0; guard < 10000; guard++) {
      const off = (this.sndNxt - this.outBase) | 0;
      const avail = this.out.length - off;
      const space = (this.sndUna + this.peerWnd - this.sndNxt) | 0;
      if (avail <= 0 || space <= 0) break;
      const n = Math.min(avail, this.peerMss, space);
      this.raw(TCP_ACK, this.sndNxt, this.rcvNxt, this.out.subarray(off, off + n));
      this.sndNxt = (this.sndNxt + n) >>> 0;
    }
    if (this.finWanted && this.sndNxt === end && !this.finSent) {
      this.raw(TCP_FIN | TCP_ACK, this.sndNxt, this.rcvNxt);
      this.sndNxt = (this.sndNxt + 1) >>> 0;
      this.finSent = true;
    }
  }

  private tick(): void {
    if (this.state === "syn-sent" && Date.now() - this.lastProgress > 300) {
      this.raw(TCP_SYN, this.iss, 0, undefined, true);
      this.lastProgress = Date.now();
      return;
    }
    if (this.state !== "established") return;
    if (this.sndUna !== this.sndNxt && Date.now() - this.lastProgress > 100) {
      // Go back N.
      this.retransmits++;
      this.lastProgress = Date.now();
      if (this.finSent && ((this.sndNxt - this.sndUna) | 0) > 0) this.finSent = false;
      this.sndNxt = this.sndUna;
      this.pump();
    } else if (this.peerWnd === 0 && ((this.sndNxt - this.outBase) | 0) < this.out.length && Date.now() - this.lastProgress > 100) {
      this.lastProgress = Date.now();
      this.raw(TCP_ACK, (this.sndUna - 1) >>> 0, this.rcvNxt); // window probe
    }
  }
}
