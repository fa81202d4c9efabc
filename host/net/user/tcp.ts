/**
 * TCP for user-mode networking: the guest's connections end here, in a TCP endpoint per
 * connection (the guest-facing half, with retransmission and flow control both ways) bridged to
 * a host TCP stream. Connections the guest opens go to the host through HostSockets.connectTcp;
 * hostfwd clients are accepted here and connect to the guest from 10.0.2.2. Each connection holds
 * one unit of the SocketBudget from creation to removal.
 */

import type { HostAddress, HostSockets, IncomingTcp, TcpHandlers, TcpStream } from "../host-sockets";
import type { SocketBudget } from "../budget";
import { IPPROTO_TCP, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, buildTcp, type Ipv4Packet, type TcpSegment } from "../packet";
import type { GuestLink, Sender } from "./link";
import { LIMITED_BROADCAST, SUBNET_BROADCAST, USER_GATEWAY } from "./network";
import { random32 } from "./random";
import { unrefTimer } from "./timers";

const OUR_WSCALE = 7;
/** How much guest→host data may wait in the host socket before our window closes. */
const RCV_BUF = 256 * 1024;
/** Host→guest data buffered here (unacknowledged + unsent) above which the host socket pauses. */
const SND_HIGH = 512 * 1024;
const SND_LOW = 128 * 1024;
/**
 * Most segments in flight per connection. A NIC queues a bounded number of received frames
 * (virtio-net: 256) until the guest posts buffers; bursts beyond that would only be dropped.
 */
const MAX_CWND_SEGMENTS = 128;
const INITIAL_RTO = 1000;
const MIN_RTO = 200;
const MAX_RTO = 60_000;
const MAX_PERSIST = 10_000;
/** Retransmissions of one segment before the connection is given up (reset). */
const MAX_RETRIES = 12;
const MAX_SYN_RETRIES = 5;
const CONNECT_TIMEOUT = 30_000;
/** How long a connection closed in both directions lingers to re-ACK a retransmitted FIN. */
const LINGER_MS = 2000;

/** Sequence-number comparisons modulo 2^32. */
const seqLt = (a: number, b: number) => ((a - b) | 0) < 0;
const seqLe = (a: number, b: number) => ((a - b) | 0) <= 0;
const seqGt = (a: number, b: number) => ((a - b) | 0) > 0;
const seqAdd = (a: number, n: number) => (a + n) >>> 0;
const seqDiff = (a: number, b: number) => (a - b) | 0;

/** Host→guest bytes: appended at the end, acknowledged off the front. */
class ByteQueue {
  private chunks: Uint8Array[] = [];
  private head = 0;
  length = 0;

  push(b: Uint8Array): void {
    if (b.length === 0) return;
    this.chunks.push(b);
    this.length += b.length;
  }

  consume(n: number): void {
    n = Math.min(n, this.length);
    this.length -= n;
    while (n > 0) {
      const avail = this.chunks[0].length - this.head;
      if (n < avail) {
        this.head += n;
        return;
      }
      n -= avail;
      this.chunks.shift();
      this.head = 0;
    }
  }

  /** n bytes from offset `off` (a view when they lie in one chunk). */
  peek(off: number, n: number): Uint8Array {
    let i = 0;
    let o = off + this.head;
    while (o >= this.chunks[i].length) o -= this.chunks[i++].length;
    if (o + n <= this.chunks[i].length) return this.chunks[i].subarray(o, o + n);
    const out = new Uint8Array(n);
    let pos = 0;
    while (pos < n) {
      const c = this.chunks[i++];
      const take = Math.min(c.length - o, n - pos);
      out.set(c.subarray(o, o + take), pos);
      pos += take;
      o = 0;
    }
    return out;
  }
}

type TcpState = "connecting" | "syn-sent" | "syn-rcvd" | "established" | "time-wait";
type TimerKind = "rtx" | "persist" | "connect" | "linger";

/** One connection: the guest-facing TCP endpoint and its host stream. */
class TcpConn implements Sender {
  state: TcpState;
  socket: TcpStream | null = null;
  removed = false;
  hostPaused = false;

  // Send side (towards the guest). buf holds the bytes from sequence number bufSeq on.
  iss = random32();
  sndUna = this.iss;
  sndNxt = seqAdd(this.iss, 1);
  sndMax = seqAdd(this.iss, 1);
  sndWnd = 0;
  sndWl1 = 0;
  sndWl2 = 0;
  sndShift = 0;
  rcvShift = 0;
  mss = 536;
  buf = new ByteQueue();
  bufSeq = seqAdd(this.iss, 1);
  /** The host closed its sending side: a FIN follows the buffered data. */
  finQueued = false;
  cwnd = 0;
  ssthresh = 1 << 30;
  dupAcks = 0;
  /** In fast recovery until sndUna reaches `recover` (NewReno, RFC 6582). */
  inRecovery = false;
  recover = 0;
  srtt = 0;
  rttvar = 0;
  rto = INITIAL_RTO;
  rttSeq = -1;
  rttStart = 0;
  retries = 0;
  persistMs = 0;

  // Receive side (from the guest).
  irs = 0;
  rcvNxt = 0;
  /** The right edge of the window last advertised: never moved left. */
  rcvEdge = 0;
  finRcvd = false;
  ackNow = false;

  private timer: ReturnType<typeof setTimeout> | null = null;
  private timerAt = 0;
  private timerKind: TimerKind | null = null;
  private deadline = 0;

  private readonly link: GuestLink;

  constructor(
    private readonly relay: TcpRelay,
    readonly key: string,
    readonly guestIp: number,
    readonly guestPort: number,
    readonly peerIp: number,
    readonly peerPort: number,
    state: TcpState,
  ) {
    this.link = relay.link;
    this.state = state;
  }

  // --- timers ---------------------------------------------------------------------------

  arm(kind: TimerKind, ms: number): void {
    this.timerKind = kind;
    this.deadline = performance.now() + ms;
    if (this.timer && this.timerAt <= this.deadline + 1) return; // fires first, re-arms itself
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = this.deadline;
    this.timer = setTimeout(this.onTimer, ms);
    unrefTimer(this.timer);
  }

  disarm(kind?: TimerKind): void {
    if (kind === undefined || this.timerKind === kind) this.timerKind = null;
  }

  private readonly onTimer = (): void => {
    this.timer = null;
    if (this.removed || this.timerKind === null) return;
    const left = this.deadline - performance.now();
    if (left > 1) {
      this.timerAt = this.deadline;
      this.timer = setTimeout(this.onTimer, left);
      unrefTimer(this.timer);
      return;
    }
    const kind = this.timerKind;
    this.timerKind = null;
    try {
      this.expire(kind);
    } catch (e) {
      this.link.report(e);
    }
  };

  private expire(kind: TimerKind): void {
    switch (kind) {
      case "connect":
        if (this.state === "connecting") this.refuse();
        return;
      case "linger":
        this.remove();
        return;
      case "persist":
        if (this.state !== "established") return;
        // A zero-window probe: an old sequence number makes the guest answer with its window.
        this.segment(TCP_ACK, seqAdd(this.sndUna, -1));
        this.persistMs = Math.min(this.persistMs * 2, MAX_PERSIST);
        this.arm("persist", this.persistMs);
        this.link.flushSoon();
        return;
      case "rtx":
        this.retransmitTimeout();
        return;
    }
  }

  private retransmitTimeout(): void {
    this.rto = Math.min(this.rto * 2, MAX_RTO);
    if (this.state === "syn-rcvd" || this.state === "syn-sent") {
      if (++this.retries > MAX_SYN_RETRIES) {
        this.abort(this.state === "syn-rcvd");
        return;
      }
      this.link.counters.tcpRetransmits++;
      this.sendSyn();
      this.arm("rtx", this.rto);
      this.link.flushSoon();
      return;
    }
    if (this.state !== "established" || this.sndUna === this.sndMax) return;
    if (++this.retries > MAX_RETRIES) {
      this.abort(true);
      return;
    }
    this.link.counters.tcpRetransmits++;
    const flight = seqDiff(this.sndMax, this.sndUna);
    this.ssthresh = Math.max(flight >> 1, 2 * this.mss);
    this.cwnd = this.mss;
    this.sndNxt = this.sndUna; // go back: resend from the first unacknowledged byte
    this.rttSeq = -1;
    this.dupAcks = 0;
    this.inRecovery = false;
    this.output();
    this.arm("rtx", this.rto);
    this.link.flushSoon();
  }

  // --- segments to the guest --------------------------------------------------------------

  /** Our receive window for an outgoing segment (scaled unless syn); records its right edge. */
  private window(syn: boolean): number {
    const pending = this.socket ? this.socket.bufferedAmount : 0;
    let wnd = Math.max(0, RCV_BUF - pending);
    const prev = seqDiff(this.rcvEdge, this.rcvNxt);
    if (prev > wnd) wnd = prev; // never shrink the window's right edge
    if (syn) {
      const field = Math.min(wnd, 0xffff);
      this.rcvEdge = seqAdd(this.rcvNxt, field);
      return field;
    }
    const field = Math.min(Math.floor(wnd / 2 ** this.rcvShift), 0xffff);
    const edge = seqAdd(this.rcvNxt, field * 2 ** this.rcvShift);
    if (seqGt(edge, this.rcvEdge)) this.rcvEdge = edge;
    return field;
  }

  segment(flags: number, seq: number, payload?: Uint8Array): void {
    const seg = buildTcp(this.peerIp, this.guestIp, {
      srcPort: this.peerPort,
      dstPort: this.guestPort,
      seq,
      ack: flags & TCP_ACK ? this.rcvNxt : 0,
      flags,
      window: this.window(false),
      payload,
    });
    this.link.emitIp(this.peerIp, this.guestIp, IPPROTO_TCP, seg);
    if (flags & TCP_ACK) this.ackNow = false;
  }

  /** SYN (active open) or SYN-ACK (passive), with our MSS and, when agreed, window scale. */
  private sendSyn(): void {
    const active = this.state === "syn-sent";
    const seg = buildTcp(this.peerIp, this.guestIp, {
      srcPort: this.peerPort,
      dstPort: this.guestPort,
      seq: this.iss,
      ack: active ? 0 : this.rcvNxt,
      flags: active ? TCP_SYN : TCP_SYN | TCP_ACK,
      window: this.window(true),
      options: {
        mss: this.link.mtu - 40,
        windowScale: active || this.rcvShift > 0 ? OUR_WSCALE : undefined,
      },
    });
    this.link.emitIp(this.peerIp, this.guestIp, IPPROTO_TCP, seg);
  }

  /** Sends whatever the windows allow, a FIN when due, and a pure ACK if one is owed. */
  output(): void {
    if (this.removed) return;
    if (this.state !== "established") {
      if (this.ackNow && this.state === "time-wait") this.segment(TCP_ACK, this.sndNxt);
      return;
    }
    const end = seqAdd(this.bufSeq, this.buf.length);
    let sent = false;
    for (let guard = 0; guard < 4096; guard++) {
      const off = seqDiff(this.sndNxt, this.bufSeq);
      const avail = this.buf.length - off;
      if (avail <= 0) break;
      // Limited transmit (RFC 3042): each of the first two duplicate ACKs lets one more
      // segment out, so that a small flight can still produce three of them.
      const extra = this.inRecovery ? 0 : Math.min(this.dupAcks, 2) * this.mss;
      const edge = seqAdd(this.sndUna, Math.min(this.sndWnd, this.cwnd + extra));
      const space = seqDiff(edge, this.sndNxt);
      if (space <= 0) break;
      const n = Math.min(avail, this.mss, space);
      // Sender silly-window avoidance: no small segment while data is in flight.
      if (n < Math.min(avail, this.mss) && this.sndNxt !== this.sndUna) break;
      const last = n === avail;
      const fin = last && this.finQueued;
      if (this.rttSeq < 0 && !seqLt(this.sndNxt, this.sndMax)) {
        this.rttSeq = seqAdd(this.sndNxt, n);
        this.rttStart = performance.now();
      }
      this.segment(TCP_ACK | (last ? TCP_PSH : 0) | (fin ? TCP_FIN : 0), this.sndNxt, this.buf.peek(off, n));
      this.sndNxt = seqAdd(this.sndNxt, n + (fin ? 1 : 0));
      if (seqGt(this.sndNxt, this.sndMax)) this.sndMax = this.sndNxt;
      sent = true;
    }
    if (this.finQueued && this.sndNxt === end) {
      this.segment(TCP_ACK | TCP_FIN, this.sndNxt);
      this.sndNxt = seqAdd(end, 1);
      if (seqGt(this.sndNxt, this.sndMax)) this.sndMax = this.sndNxt;
      sent = true;
    }
    if (this.ackNow) this.segment(TCP_ACK, this.sndNxt);

    if (this.sndNxt !== this.sndUna) {
      if (sent && this.timerKind !== "rtx") this.arm("rtx", this.rto);
    } else if (this.sndWnd === 0 && seqDiff(this.sndNxt, this.bufSeq) < this.buf.length) {
      if (this.timerKind !== "persist") {
        this.persistMs = this.rto;
        this.arm("persist", this.persistMs);
      }
    } else if (this.timerKind === "persist") {
      this.disarm("persist");
    }
  }

  /** Resends the first unacknowledged segment (fast retransmit). */
  private retransmitFirst(): void {
    const off = seqDiff(this.sndUna, this.bufSeq);
    const n = Math.min(this.mss, this.buf.length - off);
    if (n > 0) {
      const fin = this.finQueued && n === this.buf.length - off && seqGt(this.sndMax, seqAdd(this.sndUna, n));
      this.segment(TCP_ACK | (fin ? TCP_FIN : 0), this.sndUna, this.buf.peek(off, n));
    } else if (this.finQueued) {
      this.segment(TCP_ACK | TCP_FIN, this.sndUna);
    }
    this.link.counters.tcpRetransmits++;
    this.rttSeq = -1;
  }

  // --- segments from the guest ------------------------------------------------------------

  input(seg: TcpSegment): void {
    const f = seg.flags;
    switch (this.state) {
      case "connecting":
        if (f & TCP_RST) this.remove(); // the guest gave up; so do we
        return; // retransmitted SYNs wait for the host connection
      case "syn-sent":
        this.inputSynSent(seg);
        return;
      case "time-wait":
        if (f & TCP_RST) this.remove();
        else if (f & TCP_FIN) {
          this.ackNow = true;
          this.link.markDirty(this);
        }
        return;
    }

    if (f & TCP_RST) {
      // Accept a reset anywhere in the window (the guest is trusted to this extent).
      const off = seqDiff(seg.seq, this.rcvNxt);
      if (off >= 0 && off <= Math.max(seqDiff(this.rcvEdge, this.rcvNxt), 0)) {
        this.link.counters.tcpResets++;
        this.resetHost();
        this.remove();
      }
      return;
    }
    if (f & TCP_SYN) {
      if (this.state === "syn-rcvd" && seg.seq === this.irs) this.sendSyn(); // our SYN-ACK was lost
      else {
        this.ackNow = true; // challenge ACK (RFC 5961)
        this.link.markDirty(this);
      }
      this.link.flushSoon();
      return;
    }
    if (!(f & TCP_ACK)) return;

    // Segments starting beyond the window are answered with an ACK and dropped.
    if (seqGt(seg.seq, this.rcvEdge) || (seg.seq !== this.rcvNxt && seqGt(seg.seq, this.rcvNxt) && this.rcvEdge === this.rcvNxt)) {
      this.ackNow = true;
      this.link.markDirty(this);
      return;
    }

    if (this.state === "syn-rcvd") {
      if (seg.ack !== seqAdd(this.iss, 1)) {
        this.link.sendRst(this.peerIp, this.peerPort, this.guestIp, this.guestPort, seg.ack, 0, false);
        return;
      }
      this.state = "established";
      this.sndUna = seg.ack;
      this.bufSeq = seg.ack;
      this.sndWnd = seg.window * 2 ** this.sndShift;
      this.sndWl1 = seg.seq;
      this.sndWl2 = seg.ack;
      if (this.retries === 0) this.rttSample(performance.now() - this.rttStart);
      this.retries = 0;
      this.disarm("rtx");
    } else {
      this.processAck(seg);
      if (this.removed) return;
    }

    const finBefore = this.finRcvd;
    this.processData(seg);
    if (this.finRcvd && this.finQueued && this.sndUna === seqAdd(this.bufSeq, this.buf.length + 1)) {
      // Both directions are closed and our FIN is acknowledged.
      this.endHost();
      if (finBefore) {
        // The guest closed first and has now acknowledged our FIN: it holds TIME-WAIT.
        this.remove();
        return;
      }
      // We closed first: linger to acknowledge the guest's FIN again should our ACK be lost.
      this.state = "time-wait";
      this.arm("linger", LINGER_MS);
    }
    this.link.markDirty(this);
  }

  private inputSynSent(seg: TcpSegment): void {
    const f = seg.flags;
    const ackOk = (f & TCP_ACK) !== 0 && seg.ack === seqAdd(this.iss, 1);
    if (f & TCP_ACK && !ackOk) {
      if (!(f & TCP_RST)) this.link.sendRst(this.peerIp, this.peerPort, this.guestIp, this.guestPort, seg.ack, 0, false);
      return;
    }
    if (f & TCP_RST) {
      if (ackOk) {
        this.link.counters.tcpRefused++;
        this.resetHost(); // nothing listens on the guest port
        this.remove();
      }
      return;
    }
    if (!(f & TCP_SYN) || !ackOk) return; // simultaneous open is not supported
    this.irs = seg.seq;
    this.rcvNxt = seqAdd(seg.seq, 1);
    this.rcvEdge = this.rcvNxt;
    this.setPeerOptions(seg);
    if (seg.options.windowScale === undefined) this.rcvShift = 0;
    this.sndUna = seg.ack;
    this.bufSeq = seg.ack;
    this.sndWnd = seg.window; // never scaled in a SYN
    this.sndWl1 = seg.seq;
    this.sndWl2 = seg.ack;
    this.state = "established";
    if (this.retries === 0) this.rttSample(performance.now() - this.rttStart);
    this.retries = 0;
    this.disarm("rtx");
    this.ackNow = true;
    this.link.markDirty(this);
    this.socket?.resume();
  }

  /** The guest's MSS and window scale from its SYN. */
  setPeerOptions(seg: TcpSegment): void {
    const mss = seg.options.mss ?? 536;
    this.mss = Math.max(64, Math.min(mss, this.link.mtu - 40));
    this.cwnd = 10 * this.mss;
    if (seg.options.windowScale !== undefined) {
      this.sndShift = seg.options.windowScale;
      this.rcvShift = OUR_WSCALE;
    } else {
      this.sndShift = 0;
      this.rcvShift = 0;
    }
  }

  private processAck(seg: TcpSegment): void {
    const ack = seg.ack;
    if (seqGt(ack, this.sndMax)) {
      this.ackNow = true; // acknowledges something never sent
      return;
    }
    const wnd = seg.window * 2 ** this.sndShift;
    if (seqGt(ack, this.sndUna)) {
      const acked = seqDiff(ack, this.sndUna);
      const dataEnd = seqAdd(this.bufSeq, this.buf.length);
      const dataAcked = seqDiff(seqLt(ack, dataEnd) ? ack : dataEnd, this.bufSeq);
      if (dataAcked > 0) {
        this.buf.consume(dataAcked);
        this.bufSeq = seqAdd(this.bufSeq, dataAcked);
      }
      this.sndUna = ack;
      if (seqLt(this.sndNxt, ack)) this.sndNxt = ack;
      if (this.rttSeq >= 0 && seqLe(this.rttSeq, ack)) {
        this.rttSample(performance.now() - this.rttStart);
        this.rttSeq = -1;
      }
      if (this.inRecovery) {
        if (seqLt(ack, this.recover)) this.retransmitFirst(); // a partial ACK: the next hole
        else {
          this.inRecovery = false;
          this.cwnd = this.ssthresh;
        }
      } else if (this.cwnd < this.ssthresh) this.cwnd += Math.min(acked, this.mss);
      else this.cwnd += Math.max(1, Math.floor((this.mss * this.mss) / this.cwnd));
      this.cwnd = Math.min(this.cwnd, MAX_CWND_SEGMENTS * this.mss);
      this.dupAcks = 0;
      this.retries = 0;
      if (this.sndUna === this.sndMax) this.disarm("rtx");
      else this.arm("rtx", this.rto);
      if (this.hostPaused && this.buf.length <= SND_LOW) {
        this.hostPaused = false;
        this.socket?.resume();
      }
    } else if (
      ack === this.sndUna &&
      seg.payload.length === 0 &&
      !(seg.flags & TCP_FIN) &&
      wnd === this.sndWnd &&
      this.sndMax !== this.sndUna
    ) {
      this.dupAcks++;
      // Early retransmit (RFC 5827): with fewer than four segments out and nothing new to
      // send, fewer duplicate ACKs can ever come.
      const flightSegs = Math.ceil(seqDiff(this.sndMax, this.sndUna) / this.mss);
      const unsent = this.buf.length - seqDiff(this.sndMax, this.bufSeq) > 0 && this.sndWnd > seqDiff(this.sndMax, this.sndUna);
      const thresh = !unsent && flightSegs < 4 ? Math.max(1, flightSegs - 1) : 3;
      if (this.dupAcks === thresh && !this.inRecovery) {
        this.ssthresh = Math.max(seqDiff(this.sndMax, this.sndUna) >> 1, 2 * this.mss);
        this.cwnd = this.ssthresh;
        this.inRecovery = true;
        this.recover = this.sndMax;
        this.retransmitFirst();
      }
    }
    if (seqLt(this.sndWl1, seg.seq) || (this.sndWl1 === seg.seq && seqLe(this.sndWl2, ack))) {
      this.sndWnd = wnd;
      this.sndWl1 = seg.seq;
      this.sndWl2 = ack;
    }
  }

  private processData(seg: TcpSegment): void {
    let data = seg.payload;
    const fin = (seg.flags & TCP_FIN) !== 0;
    if (data.length === 0 && !fin) {
      if (seqLt(seg.seq, this.rcvNxt)) this.ackNow = true; // a keepalive or window probe
      return;
    }
    if (this.finRcvd) {
      this.ackNow = true; // a retransmission after the guest's FIN
      return;
    }
    let seq = seg.seq;
    if (seqLt(seq, this.rcvNxt)) {
      const skip = seqDiff(this.rcvNxt, seq);
      if (skip > data.length) {
        this.ackNow = true; // entirely old
        return;
      }
      data = data.subarray(skip);
      seq = this.rcvNxt;
    }
    this.ackNow = true;
    if (seq !== this.rcvNxt) return; // out of order: dropped, the duplicate ACK asks again
    const room = Math.max(0, seqDiff(this.rcvEdge, this.rcvNxt));
    let whole = true;
    if (data.length > room) {
      data = data.subarray(0, room);
      whole = false;
    }
    if (data.length > 0) {
      this.rcvNxt = seqAdd(this.rcvNxt, data.length);
      this.socket?.write(data);
    }
    if (fin && whole) {
      this.rcvNxt = seqAdd(this.rcvNxt, 1);
      this.finRcvd = true;
      this.endHost();
    }
  }

  private rttSample(r: number): void {
    if (this.srtt === 0) {
      this.srtt = Math.max(r, 1);
      this.rttvar = r / 2;
    } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - r);
      this.srtt = 0.875 * this.srtt + 0.125 * r;
    }
    this.rto = Math.min(MAX_RTO, Math.max(MIN_RTO, this.srtt + Math.max(10, 4 * this.rttvar)));
  }

  // --- the host stream --------------------------------------------------------------------

  /** Connects to the host for a connection the guest opened; its SYN is answered once connected. */
  connectHost(sockets: HostSockets, to: HostAddress): void {
    try {
      this.socket = sockets.connectTcp(to, this.hostHandlers());
    } catch (e) {
      // A platform that cannot even start one: the guest hears a refusal, the socket goes back.
      this.link.report(e);
      this.refuse();
      return;
    }
    this.arm("connect", CONNECT_TIMEOUT);
  }

  /** Takes a hostfwd client's connection and opens one to the guest for it. */
  acceptHost(incoming: IncomingTcp): void {
    try {
      this.socket = incoming.accept(this.hostHandlers());
    } catch (e) {
      this.link.report(e);
      this.remove(); // the guest has seen nothing of it yet
      return;
    }
    this.rttStart = performance.now();
    this.sendSyn();
    this.arm("rtx", this.rto);
    this.link.flushSoon();
  }

  private hostHandlers(): TcpHandlers {
    const g = this.link.guard.bind(this.link);
    return {
      onConnect: g(() => this.hostConnected()),
      onData: g((chunk: Uint8Array) => {
        if (this.removed) return;
        this.buf.push(chunk);
        if (!this.hostPaused && this.buf.length >= SND_HIGH) {
          this.hostPaused = true;
          this.socket?.pause();
        }
        this.link.markDirty(this);
      }),
      onEnd: g(() => {
        if (this.removed) return;
        this.finQueued = true;
        this.link.markDirty(this);
      }),
      onDrain: g(() => {
        const s = this.socket;
        if (!s || this.removed || this.state !== "established") return;
        // Tell the guest its window opened again if it had shrunk noticeably.
        const adv = seqDiff(this.rcvEdge, this.rcvNxt);
        if (RCV_BUF - s.bufferedAmount - adv >= Math.min(RCV_BUF / 2, 4 * this.mss)) {
          this.ackNow = true;
          this.link.markDirty(this);
        }
      }),
      onClose: g(() => {
        this.socket = null;
        if (this.removed) return;
        if (this.state === "connecting") this.refuse();
        else if (this.state === "time-wait") return;
        else if (!(this.finRcvd && this.finQueued)) {
          // The host connection broke (reset, error) before both sides had closed.
          this.abort(this.state !== "syn-sent" || this.sndNxt !== this.sndUna);
        }
      }),
    };
  }

  /** The host accepted our connection: answer the guest's SYN. */
  private hostConnected(): void {
    if (this.removed || this.state !== "connecting") return;
    this.state = "syn-rcvd";
    this.retries = 0;
    this.rttStart = performance.now();
    this.sendSyn();
    this.arm("rtx", this.rto);
    this.link.flushSoon();
  }

  /** The guest's MAC became known: resend a SYN that could not go out. */
  kick(): void {
    if (this.state === "syn-sent" || this.state === "syn-rcvd") {
      this.sendSyn();
      this.link.flushSoon();
    }
  }

  private endHost(): void {
    this.socket?.end();
  }

  private resetHost(): void {
    const s = this.socket;
    this.socket = null;
    s?.reset();
  }

  /** The host refused (or never answered) the guest's connection: reset the guest's SYN. */
  refuse(): void {
    if (this.removed) return;
    this.link.counters.tcpRefused++;
    this.link.sendRst(this.peerIp, this.peerPort, this.guestIp, this.guestPort, 0, this.rcvNxt, true);
    this.remove();
  }

  /** Gives the connection up, resetting the guest's side if `rst` and the host's side. */
  abort(rst: boolean): void {
    if (this.removed) return;
    if (rst) {
      this.link.counters.tcpResets++;
      this.link.sendRst(this.peerIp, this.peerPort, this.guestIp, this.guestPort, this.sndNxt, this.rcvNxt, true);
    }
    this.resetHost();
    this.remove();
  }

  remove(): void {
    if (this.removed) return;
    this.removed = true;
    this.timerKind = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const s = this.socket;
    this.socket = null;
    s?.close();
    this.relay.forget(this);
  }
}

/** The guest's TCP connections, keyed by their addresses and ports. */
export class TcpRelay {
  private readonly conns = new Map<string, TcpConn>();
  /** The next 10.0.2.2 port a hostfwd connection comes from. */
  private nextPort = 49152 + (random32() % 16384);

  constructor(
    readonly link: GuestLink,
    private readonly sockets: HostSockets,
    private readonly budget: SocketBudget,
    /** Where on the host the guest's TCP to dst:port goes; null when it may not. */
    private readonly destination: (dst: number, port: number) => HostAddress | null,
  ) {}

  /** A segment from the guest (its source checked to be a guest address). */
  input(ip: Ipv4Packet, seg: TcpSegment): void {
    if (ip.dst === LIMITED_BROADCAST || ip.dst === SUBNET_BROADCAST || ip.dst >>> 28 === 14) {
      this.link.counters.ignored++;
      return;
    }
    const key = `${ip.src}:${seg.srcPort}>${ip.dst}:${seg.dstPort}`;
    let c = this.conns.get(key);
    const f = seg.flags;
    if (c && c.state === "time-wait" && f & TCP_SYN && !(f & TCP_ACK)) {
      c.remove(); // a new incarnation of the same connection
      c = undefined;
    }
    if (c) {
      c.input(seg);
      return;
    }
    if (f & TCP_RST) return;
    if (f & TCP_SYN && !(f & TCP_ACK)) {
      this.openOutbound(key, ip, seg);
      return;
    }
    // No such connection: reset.
    const len = seg.payload.length + (f & TCP_SYN ? 1 : 0) + (f & TCP_FIN ? 1 : 0);
    if (f & TCP_ACK) this.link.sendRst(ip.dst, seg.dstPort, ip.src, seg.srcPort, seg.ack, 0, false);
    else this.link.sendRst(ip.dst, seg.dstPort, ip.src, seg.srcPort, 0, seqAdd(seg.seq, len), true);
  }

  private openOutbound(key: string, ip: Ipv4Packet, seg: TcpSegment): void {
    const dest = seg.srcPort === 0 || seg.dstPort === 0 ? null : this.destination(ip.dst, seg.dstPort);
    if (!dest || !this.budget.take()) {
      this.link.counters.tcpRefused++;
      this.link.sendRst(ip.dst, seg.dstPort, ip.src, seg.srcPort, 0, seqAdd(seg.seq, 1 + seg.payload.length), true);
      return;
    }
    const c = new TcpConn(this, key, ip.src, seg.srcPort, ip.dst, seg.dstPort, "connecting");
    c.irs = seg.seq;
    c.rcvNxt = seqAdd(seg.seq, 1);
    c.rcvEdge = c.rcvNxt;
    c.setPeerOptions(seg);
    this.conns.set(key, c);
    this.link.counters.tcpOutbound++;
    c.connectHost(this.sockets, dest);
  }

  /** A hostfwd client for guestIp:guestPort: connect to the guest from 10.0.2.2. */
  accept(incoming: IncomingTcp, guestIp: number, guestPort: number): void {
    if (this.link.isClosed) {
      incoming.close();
      return;
    }
    let key = "";
    let port = 0;
    for (let i = 0; i < 16384; i++) {
      port = this.nextPort;
      this.nextPort = this.nextPort >= 65535 ? 49152 : this.nextPort + 1;
      key = `${guestIp}:${guestPort}>${USER_GATEWAY}:${port}`;
      if (!this.conns.has(key)) break;
      key = "";
    }
    if (!key || !this.budget.take()) {
      this.link.counters.tcpRefused++;
      incoming.reset();
      return;
    }
    const c = new TcpConn(this, key, guestIp, guestPort, USER_GATEWAY, port, "syn-sent");
    c.mss = this.link.mtu - 40;
    c.rcvShift = OUR_WSCALE;
    this.conns.set(key, c);
    this.link.counters.tcpInbound++;
    c.acceptHost(incoming);
  }

  /** The guest's MAC became known: SYNs that could not go out go now. */
  guestMacKnown(): void {
    for (const c of this.conns.values()) c.kick();
  }

  /** @internal A connection is removed (once): its socket goes back to the budget. */
  forget(c: TcpConn): void {
    if (this.conns.get(c.key) === c) this.conns.delete(c.key);
    this.link.forgetDirty(c);
    this.budget.release(); // every TcpConn took one when created, and is removed once
  }

  /** Open connections, those lingering after both sides closed, and those whose host stream is paused. */
  counts(): { active: number; closing: number; hostPaused: number } {
    let closing = 0;
    let hostPaused = 0;
    for (const c of this.conns.values()) {
      if (c.hostPaused) hostPaused++;
      if (c.state === "time-wait") closing++;
    }
    return { active: this.conns.size - closing, closing, hostPaused };
  }

  close(): void {
    for (const c of Array.from(this.conns.values())) c.remove();
    this.conns.clear();
  }
}
