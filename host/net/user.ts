/**
 * User-mode networking, like QEMU's `-netdev user` (slirp): the guest's NIC is plugged into a
 * virtual network 10.0.2.0/24 whose other members this backend plays, and the guest's TCP and
 * UDP flows are carried on ordinary host sockets, so no privileges or host set-up are needed.
 *
 *   10.0.2.2   gateway and host: ARP, ping, DHCP server; TCP/UDP to it reach the host's 127.0.0.1
 *              (the ports the loopback option allows)
 *   10.0.2.3   DNS: ARP, ping, queries on UDP and TCP port 53
 *   10.0.2.15  the guest, handed out by DHCP
 *
 * Guest TCP connections end in a TCP endpoint implemented here (one per connection, the
 * guest-facing half) bridged to a host net.Socket; hostfwd rules listen on host ports and open
 * connections to the guest from 10.0.2.2. Only IPv4; IP fragments are dropped. With `restrict`
 * the guest reaches nothing beyond the virtual hosts; hostfwd still works. Every host socket the
 * guest makes the host open counts against a SocketBudget shared by the VM's NICs.
 *
 * Frames for the guest are always delivered asynchronously (in a microtask after the event that
 * produced them, never from inside send()), then onWake() is called once per batch.
 */

import * as net from "node:net";
import * as dgram from "node:dgram";
import * as nodeDns from "node:dns";
import { readFileSync } from "node:fs";
import type { NetBackend } from "../devices/backends";
import { DEFAULT_VM_SOCKETS, SocketBudget } from "./budget";
import {
  ARP_REPLY,
  ARP_REQUEST,
  BROADCAST_MAC,
  DHCPACK,
  DHCPDISCOVER,
  DHCPINFORM,
  DHCPNAK,
  DHCPOFFER,
  DHCPREQUEST,
  DHCP_CLIENT_PORT,
  DHCP_OPT_DNS,
  DHCP_OPT_LEASE_TIME,
  DHCP_OPT_MESSAGE_TYPE,
  DHCP_OPT_ROUTER,
  DHCP_OPT_SERVER_ID,
  DHCP_OPT_SUBNET_MASK,
  DHCP_SERVER_PORT,
  DNS_CLASS_IN,
  DNS_FLAG_AA,
  DNS_FLAG_QR,
  DNS_FLAG_RA,
  DNS_FLAG_RD,
  DNS_FLAG_TC,
  DNS_RCODE_FORMERR,
  DNS_RCODE_NOERROR,
  DNS_RCODE_NOTIMP,
  DNS_RCODE_NXDOMAIN,
  DNS_RCODE_REFUSED,
  DNS_RCODE_SERVFAIL,
  DNS_TYPE_A,
  DNS_TYPE_AAAA,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  ICMP_ECHO_REPLY,
  ICMP_ECHO_REQUEST,
  IPPROTO_ICMP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  TCP_ACK,
  TCP_FIN,
  TCP_PSH,
  TCP_RST,
  TCP_SYN,
  ZERO_MAC,
  buildArp,
  buildDhcp,
  buildDns,
  buildEthernet,
  buildIPv4,
  buildIcmpEcho,
  buildTcp,
  buildUdp,
  dnsOpcode,
  ip4,
  ip4ToString,
  isFragment,
  isGroupMac,
  macEquals,
  optIps,
  optU32,
  optU8,
  parseArp,
  parseDhcp,
  parseDns,
  parseEthernet,
  parseIPv4,
  parseIcmp,
  parseIp4,
  parseIp6,
  parseMac,
  parseTcp,
  parseUdp,
  type DnsMessage,
  type DnsQuestion,
  type DnsRecord,
  type Ipv4Packet,
  type Mac,
  type TcpSegment,
} from "./packet";

// ---------------------------------------------------------------------------------------------
// The virtual network

export const USER_NETWORK = ip4(10, 0, 2, 0);
export const USER_NETMASK = ip4(255, 255, 255, 0);
export const USER_GATEWAY = ip4(10, 0, 2, 2);
export const USER_DNS = ip4(10, 0, 2, 3);
export const USER_GUEST = ip4(10, 0, 2, 15);
/** The MAC the virtual hosts (10.0.2.2 and 10.0.2.3) answer with, as in QEMU. */
export const USER_GATEWAY_MAC = "52:55:0a:00:02:02";

const LIMITED_BROADCAST = 0xffffffff;
const SUBNET_BROADCAST = (USER_NETWORK | ~USER_NETMASK) >>> 0;
const HOST_LOOPBACK = "127.0.0.1";
const DHCP_LEASE_SECONDS = 86400;

// TCP tuning.
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
const UDP_IDLE_MS = 120_000;
const UDP_SWEEP_MS = 15_000;
const DNS_TIMEOUT = 3000;
const DNS_MAX_PENDING = 64;
const DNS_TTL = 60;

// ---------------------------------------------------------------------------------------------
// Options

export interface HostFwd {
  proto: "tcp";
  /** Host address to listen on; default 127.0.0.1. Use "0.0.0.0" to accept from the network. */
  hostAddr?: string;
  /** 0 picks a free port (see ready()). */
  hostPort: number;
  /** Guest address to connect to; default 10.0.2.15. */
  guestAddr?: string;
  guestPort: number;
}

export interface UserNetDnsOptions {
  /**
   * Upstream servers queries are forwarded to, raw, over UDP (and TCP for queries the guest
   * sends over TCP): "192.0.2.1", "192.0.2.1:5353", "[2001:db8::1]:53". Default: the host's
   * (node:dns getServers(), i.e. /etc/resolv.conf).
   */
  servers?: string[];
  /** Names answered locally from a hosts file before any forwarding. Default "/etc/hosts"; null: none. */
  hostsFile?: string | null;
  /**
   * Answer A and AAAA queries through a resolver instead of forwarding: "system" is the host's
   * getaddrinfo (node:dns lookup, honours nsswitch); a function gets (name, 4 | 6) and returns
   * the addresses (an error with code ENOTFOUND means no such name). Other types still go upstream.
   */
  lookup?: "system" | ((name: string, family: 4 | 6) => Promise<string[]>);
  /** Per upstream server and per lookup, in ms. Default 3000. */
  timeoutMs?: number;
}

export interface UserNetOptions {
  hostfwd?: HostFwd[];
  /** Called after frames were delivered to the guest, so the VM loop can wake a sleeping guest. */
  onWake?: () => void;
  /** MAC address of the virtual gateway/DNS host. Default 52:55:0a:00:02:02. */
  mac?: string | Uint8Array;
  /** Largest IP packet sent to the guest; default 1500. Bigger UDP replies are dropped. */
  mtu?: number;
  dns?: UserNetDnsOptions;
  /**
   * The guest reaches nothing outside the virtual network: no TCP or UDP through host sockets,
   * no forwarded DNS (names answered locally still are). DHCP, ARP, ping of 10.0.2.2/10.0.2.3
   * and hostfwd keep working. Overrides `loopback`. Default false.
   */
  restrict?: boolean;
  /** Which TCP/UDP ports of the host's 127.0.0.1 the guest may reach through 10.0.2.2. Default "all". */
  loopback?: LoopbackPolicy;
  /**
   * Host sockets this NIC's guest may make the host open (outbound TCP, accepted hostfwd
   * connections, UDP bindings); pass one budget to all of a VM's NICs. Default: a budget of
   * DEFAULT_VM_SOCKETS for this NIC alone.
   */
  sockets?: SocketBudget;
  /** Unexpected errors (a throwing receiver, a failed hostfwd listen). Default: console.error. */
  onError?: (err: unknown) => void;
}

/** "all" ports, "none", or only the listed ports (an empty list is "none"). */
export type LoopbackPolicy = "all" | "none" | number[];

/**
 * Descriptors a user NIC holds whatever its guest does, outside any SocketBudget: one listener
 * per hostfwd rule and, unless restricted, the DNS forwarder's IPv4 and IPv6 sockets.
 */
export function userNetFixedFds(options: Pick<UserNetOptions, "hostfwd" | "restrict">): number {
  return (options.hostfwd?.length ?? 0) + (options.restrict ? 0 : 2);
}

export interface HostFwdStatus {
  proto: "tcp";
  hostAddr: string;
  /** The bound port once listening (the requested one before). */
  hostPort: number;
  guestAddr: string;
  guestPort: number;
  listening: boolean;
}

export interface UserNetStats {
  framesFromGuest: number;
  bytesFromGuest: number;
  framesToGuest: number;
  bytesToGuest: number;
  /** Guest frames that failed to parse (bad lengths, checksums, ...). */
  malformed: number;
  /** Well-formed guest frames nothing handles (other protocols, addresses, fragments). */
  ignored: number;
  /** Frames for the guest dropped: no receiver attached, or larger than the MTU. */
  undelivered: number;
  errors: number;
  arpReplies: number;
  icmpEchoReplies: number;
  dhcp: { offers: number; acks: number; naks: number };
  dns: { queries: number; local: number; forwarded: number; failed: number; pending: number };
  tcp: {
    /** Connections open in at least one direction (or still being set up). */
    active: number;
    /** Closed connections lingering briefly to re-acknowledge a retransmitted FIN. */
    closing: number;
    /** Connections opened by the guest (to the host or beyond). */
    outbound: number;
    /** Connections accepted on hostfwd ports. */
    inbound: number;
    refused: number;
    resets: number;
    retransmits: number;
    /** Connections whose host socket is paused because the guest is not keeping up. */
    hostPaused: number;
  };
  udp: { bindings: number; datagramsOut: number; datagramsIn: number };
  hostfwd: HostFwdStatus[];
}

// ---------------------------------------------------------------------------------------------
// The option string

/**
 * Parses a QEMU-style netdev string (also accepted without the leading `user`; `id=...` is
 * ignored):
 *
 *   user[,hostfwd=[tcp]:[hostaddr]:hostport-[guestaddr]:guestport]...[,restrict=on|off]
 *       [,loopback=on|off|PORT]...
 *
 * loopback= may repeat: each PORT adds an allowed port, so "off" followed by ports (a default
 * appended before or after the user's ports) means just those ports. Throws an Error saying what
 * is wrong, contradictions included.
 */
export function parseUserNetSpec(spec: string): UserNetOptions {
  const parts = spec.split(",");
  let i = 0;
  if (parts[0] === "user") i = 1;
  else if (!parts[0].includes("=")) throw new Error(`netdev '${spec}': expected 'user[,hostfwd=...]'`);
  const hostfwd: HostFwd[] = [];
  const restrict = new Set<boolean>();
  const loopback: string[] = [];
  for (; i < parts.length; i++) {
    const p = parts[i];
    if (p === "") throw new Error(`user netdev '${spec}': empty option (two commas?)`);
    const eq = p.indexOf("=");
    if (eq < 0) throw new Error(`user netdev: option '${p}' needs a value (key=value)`);
    const key = p.slice(0, eq);
    const value = p.slice(eq + 1);
    if (key === "hostfwd") hostfwd.push(parseHostFwd(value));
    else if (key === "restrict") restrict.add(parseOnOff(key, value));
    else if (key === "loopback") loopback.push(value);
    else if (key === "id") continue;
    else throw new Error(`user netdev: unknown option '${key}' (supported: hostfwd, restrict, loopback, id)`);
  }
  if (restrict.size > 1) throw new Error("user netdev: restrict=on and restrict=off contradict each other");
  const options: UserNetOptions = {};
  if (hostfwd.length) options.hostfwd = hostfwd;
  if (restrict.size) options.restrict = restrict.has(true);
  if (loopback.length) {
    options.loopback = parseLoopback(loopback);
    if (options.restrict && options.loopback !== "none")
      throw new Error("user netdev: restrict=on lets the guest reach no loopback port; drop loopback=on or the ports");
  }
  return options;
}

function parseOnOff(key: string, value: string): boolean {
  if (value === "on" || value === "yes") return true;
  if (value === "off" || value === "no") return false;
  throw new Error(`user netdev: ${key}=${value}: use on or off`);
}

/** Every loopback= value of one netdev combined: "on" is all ports, ports add up, "off" alone none. */
function parseLoopback(values: string[]): LoopbackPolicy {
  let on = false;
  let off = false;
  const ports = new Set<number>();
  for (const v of values) {
    if (v === "on") on = true;
    else if (v === "off") off = true;
    else if (/^\d{1,5}$/.test(v) && Number(v) >= 1 && Number(v) <= 65535) ports.add(Number(v));
    else throw new Error(`user netdev: loopback=${v}: expected on, off or a port 1-65535`);
  }
  if (on && off) throw new Error("user netdev: loopback=on and loopback=off contradict each other");
  if (on && ports.size) throw new Error("user netdev: loopback=on already allows every port; drop it or the ports");
  if (on) return "all";
  return ports.size ? [...ports].sort((a, b) => a - b) : "none";
}

/** One `[tcp]:[hostaddr]:hostport-[guestaddr]:guestport` rule. */
export function parseHostFwd(rule: string): HostFwd {
  const format = "expected [tcp]:[hostaddr]:hostport-[guestaddr]:guestport, e.g. tcp::8080-:80";
  const dash = rule.indexOf("-");
  if (dash < 0) throw new Error(`hostfwd '${rule}': missing '-' between host and guest sides (${format})`);
  const left = rule.slice(0, dash).split(":");
  const right = rule.slice(dash + 1).split(":");
  if (left.length !== 3) throw new Error(`hostfwd '${rule}': host side must be proto:addr:port (${format})`);
  if (right.length !== 2) throw new Error(`hostfwd '${rule}': guest side must be addr:port (${format})`);
  const [proto, hostAddr, hostPortS] = left;
  const [guestAddr, guestPortS] = right;
  if (proto === "udp") throw new Error(`hostfwd '${rule}': udp forwarding is not supported (only tcp)`);
  if (proto !== "" && proto !== "tcp") throw new Error(`hostfwd '${rule}': unknown protocol '${proto}' (only tcp)`);
  if (hostAddr !== "" && parseIp4(hostAddr) === null)
    throw new Error(`hostfwd '${rule}': host address '${hostAddr}' is not an IPv4 address`);
  const port = (s: string, what: string, min: number) => {
    if (!/^\d{1,5}$/.test(s) || Number(s) > 65535 || Number(s) < min)
      throw new Error(`hostfwd '${rule}': ${what} port '${s}' is not a number in ${min}-65535`);
    return Number(s);
  };
  const hostPort = port(hostPortS, "host", 0);
  const guestPort = port(guestPortS, "guest", 1);
  if (guestAddr !== "") checkGuestAddr(guestAddr, `hostfwd '${rule}'`);
  const fwd: HostFwd = { proto: "tcp", hostPort, guestPort };
  if (hostAddr !== "") fwd.hostAddr = hostAddr;
  if (guestAddr !== "") fwd.guestAddr = guestAddr;
  return fwd;
}

function checkGuestAddr(addr: string, where: string): number {
  const ip = parseIp4(addr);
  if (ip === null) throw new Error(`${where}: guest address '${addr}' is not an IPv4 address`);
  if ((ip & USER_NETMASK) >>> 0 !== USER_NETWORK || ip === USER_GATEWAY || ip === USER_DNS || ip === USER_NETWORK || ip === SUBNET_BROADCAST)
    throw new Error(`${where}: guest address '${addr}' is not a guest address in 10.0.2.0/24`);
  return ip;
}

// ---------------------------------------------------------------------------------------------
// Helpers

/** Sequence-number comparisons modulo 2^32. */
const seqLt = (a: number, b: number) => ((a - b) | 0) < 0;
const seqLe = (a: number, b: number) => ((a - b) | 0) <= 0;
const seqGt = (a: number, b: number) => ((a - b) | 0) > 0;
const seqAdd = (a: number, n: number) => (a + n) >>> 0;
const seqDiff = (a: number, b: number) => (a - b) | 0;

function random32(): number {
  return globalThis.crypto.getRandomValues(new Uint32Array(1))[0];
}

/** Addresses the guest may reach through host sockets (beyond 10.0.2.2, which is the host). */
function isRoutable(ip: number): boolean {
  const a = ip >>> 24;
  if (a === 0 || a === 127 || a >= 224) return false;
  return (ip & USER_NETMASK) >>> 0 !== USER_NETWORK;
}

/** "all", or the allowed ports ("none" and [] being the empty set); throws on a bad port. */
function loopbackPorts(policy: LoopbackPolicy): ReadonlySet<number> | "all" {
  if (policy === "all") return "all";
  const ports = policy === "none" ? [] : policy;
  for (const p of ports) if (!Number.isInteger(p) || p < 1 || p > 65535) throw new Error(`usernet: loopback port ${p} is not in 1-65535`);
  return new Set(ports);
}

/** Closes a host socket with a reset, so that its peer sees the connection fail, not end. */
function resetSocket(s: net.Socket): void {
  if (typeof s.resetAndDestroy === "function" && !s.destroyed && !s.connecting) s.resetAndDestroy();
  else s.destroy();
}

/** A guest address: in 10.0.2.0/24, not the network, broadcast or virtual hosts' address. */
function inSubnet(ip: number): boolean {
  return (ip & USER_NETMASK) >>> 0 === USER_NETWORK && ip !== USER_NETWORK && ip !== SUBNET_BROADCAST && ip !== USER_GATEWAY && ip !== USER_DNS;
}

function now(): number {
  return performance.now();
}

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

// ---------------------------------------------------------------------------------------------
// One TCP connection: the guest-facing endpoint and its host socket

class TcpConn {
  state: TcpState;
  socket: net.Socket | null = null;
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

  constructor(
    private readonly un: UserNet,
    readonly key: string,
    readonly guestIp: number,
    readonly guestPort: number,
    readonly peerIp: number,
    readonly peerPort: number,
    state: TcpState,
  ) {
    this.state = state;
  }

  // --- timers ---------------------------------------------------------------------------

  arm(kind: TimerKind, ms: number): void {
    this.timerKind = kind;
    this.deadline = now() + ms;
    if (this.timer && this.timerAt <= this.deadline + 1) return; // fires first, re-arms itself
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = this.deadline;
    this.timer = setTimeout(this.onTimer, ms);
    this.timer.unref?.();
  }

  disarm(kind?: TimerKind): void {
    if (kind === undefined || this.timerKind === kind) this.timerKind = null;
  }

  private readonly onTimer = (): void => {
    this.timer = null;
    if (this.removed || this.timerKind === null) return;
    const left = this.deadline - now();
    if (left > 1) {
      this.timerAt = this.deadline;
      this.timer = setTimeout(this.onTimer, left);
      this.timer.unref?.();
      return;
    }
    const kind = this.timerKind;
    this.timerKind = null;
    try {
      this.expire(kind);
    } catch (e) {
      this.un.report(e);
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
        this.un.flushSoon();
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
      this.un.counters.tcpRetransmits++;
      this.sendSyn();
      this.arm("rtx", this.rto);
      this.un.flushSoon();
      return;
    }
    if (this.state !== "established" || this.sndUna === this.sndMax) return;
    if (++this.retries > MAX_RETRIES) {
      this.abort(true);
      return;
    }
    this.un.counters.tcpRetransmits++;
    const flight = seqDiff(this.sndMax, this.sndUna);
    this.ssthresh = Math.max(flight >> 1, 2 * this.mss);
    this.cwnd = this.mss;
    this.sndNxt = this.sndUna; // go back: resend from the first unacknowledged byte
    this.rttSeq = -1;
    this.dupAcks = 0;
    this.inRecovery = false;
    this.output();
    this.arm("rtx", this.rto);
    this.un.flushSoon();
  }

  // --- segments to the guest --------------------------------------------------------------

  /** Our receive window for an outgoing segment (scaled unless syn); records its right edge. */
  private window(syn: boolean): number {
    const pending = this.socket ? this.socket.writableLength : 0;
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
    this.un.emitIp(this.peerIp, this.guestIp, IPPROTO_TCP, seg);
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
        mss: this.un.mtu - 40,
        windowScale: active || this.rcvShift > 0 ? OUR_WSCALE : undefined,
      },
    });
    this.un.emitIp(this.peerIp, this.guestIp, IPPROTO_TCP, seg);
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
        this.rttStart = now();
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
    this.un.counters.tcpRetransmits++;
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
          this.un.markDirty(this);
        }
        return;
    }

    if (f & TCP_RST) {
      // Accept a reset anywhere in the window (the guest is trusted to this extent).
      const off = seqDiff(seg.seq, this.rcvNxt);
      if (off >= 0 && off <= Math.max(seqDiff(this.rcvEdge, this.rcvNxt), 0)) {
        this.un.counters.tcpResets++;
        this.resetHost();
        this.remove();
      }
      return;
    }
    if (f & TCP_SYN) {
      if (this.state === "syn-rcvd" && seg.seq === this.irs) this.sendSyn(); // our SYN-ACK was lost
      else {
        this.ackNow = true; // challenge ACK (RFC 5961)
        this.un.markDirty(this);
      }
      this.un.flushSoon();
      return;
    }
    if (!(f & TCP_ACK)) return;

    // Segments starting beyond the window are answered with an ACK and dropped.
    if (seqGt(seg.seq, this.rcvEdge) || (seg.seq !== this.rcvNxt && seqGt(seg.seq, this.rcvNxt) && this.rcvEdge === this.rcvNxt)) {
      this.ackNow = true;
      this.un.markDirty(this);
      return;
    }

    if (this.state === "syn-rcvd") {
      if (seg.ack !== seqAdd(this.iss, 1)) {
        this.un.sendRst(this.peerIp, this.peerPort, this.guestIp, this.guestPort, seg.ack, 0, false);
        return;
      }
      this.state = "established";
      this.sndUna = seg.ack;
      this.bufSeq = seg.ack;
      this.sndWnd = seg.window * 2 ** this.sndShift;
      this.sndWl1 = seg.seq;
      this.sndWl2 = seg.ack;
      if (this.retries === 0) this.rttSample(now() - this.rttStart);
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
    this.un.markDirty(this);
  }

  private inputSynSent(seg: TcpSegment): void {
    const f = seg.flags;
    const ackOk = (f & TCP_ACK) !== 0 && seg.ack === seqAdd(this.iss, 1);
    if (f & TCP_ACK && !ackOk) {
      if (!(f & TCP_RST)) this.un.sendRst(this.peerIp, this.peerPort, this.guestIp, this.guestPort, seg.ack, 0, false);
      return;
    }
    if (f & TCP_RST) {
      if (ackOk) {
        this.un.counters.tcpRefused++;
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
    if (this.retries === 0) this.rttSample(now() - this.rttStart);
    this.retries = 0;
    this.disarm("rtx");
    this.ackNow = true;
    this.un.markDirty(this);
    this.socket?.resume();
  }

  /** The guest's MSS and window scale from its SYN. */
  setPeerOptions(seg: TcpSegment): void {
    const mss = seg.options.mss ?? 536;
    this.mss = Math.max(64, Math.min(mss, this.un.mtu - 40));
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
        this.rttSample(now() - this.rttStart);
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
      const s = this.socket;
      if (s && s.writable) s.write(data);
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

  // --- the host socket --------------------------------------------------------------------

  bindSocket(s: net.Socket): void {
    this.socket = s;
    const g = this.un.guard.bind(this.un);
    s.on("data", g((chunk: Buffer) => {
      if (this.removed) return;
      this.buf.push(chunk);
      if (!this.hostPaused && this.buf.length >= SND_HIGH) {
        this.hostPaused = true;
        s.pause();
      }
      this.un.markDirty(this);
    }));
    s.on("end", g(() => {
      if (this.removed) return;
      this.finQueued = true;
      this.un.markDirty(this);
    }));
    s.on("drain", g(() => {
      if (this.removed || this.state !== "established") return;
      // Tell the guest its window opened again if it had shrunk noticeably.
      const adv = seqDiff(this.rcvEdge, this.rcvNxt);
      if (RCV_BUF - s.writableLength - adv >= Math.min(RCV_BUF / 2, 4 * this.mss)) {
        this.ackNow = true;
        this.un.markDirty(this);
      }
    }));
    s.on("error", () => {
      // 'close' follows and does the work.
    });
    s.on("close", g(() => {
      this.socket = null;
      if (this.removed) return;
      if (this.state === "connecting") this.refuse();
      else if (this.state === "time-wait") return;
      else if (!(this.finRcvd && this.finQueued)) {
        // The host connection broke (reset, error) before both sides had closed.
        this.abort(this.state !== "syn-sent" || this.sndNxt !== this.sndUna);
      }
    }));
  }

  /** The host accepted our connection: answer the guest's SYN. */
  hostConnected(): void {
    if (this.removed || this.state !== "connecting") return;
    this.state = "syn-rcvd";
    this.retries = 0;
    this.rttStart = now();
    this.sendSyn();
    this.arm("rtx", this.rto);
    this.un.flushSoon();
  }

  /** Starts an active open towards the guest (hostfwd). */
  startActive(): void {
    this.rttStart = now();
    this.sendSyn();
    this.arm("rtx", this.rto);
    this.un.flushSoon();
  }

  /** The guest's MAC became known: resend a SYN that could not go out. */
  kick(): void {
    if (this.state === "syn-sent" || this.state === "syn-rcvd") {
      this.sendSyn();
      this.un.flushSoon();
    }
  }

  private endHost(): void {
    const s = this.socket;
    if (s && !s.writableEnded) s.end();
  }

  private resetHost(): void {
    const s = this.socket;
    if (!s) return;
    this.socket = null;
    resetSocket(s);
  }

  /** The host refused (or never answered) the guest's connection: reset the guest's SYN. */
  refuse(): void {
    if (this.removed) return;
    this.un.counters.tcpRefused++;
    this.un.sendRst(this.peerIp, this.peerPort, this.guestIp, this.guestPort, 0, this.rcvNxt, true);
    this.remove();
  }

  /** Gives the connection up, resetting the guest's side if `rst` and the host's side. */
  abort(rst: boolean): void {
    if (this.removed) return;
    if (rst) {
      this.un.counters.tcpResets++;
      this.un.sendRst(this.peerIp, this.peerPort, this.guestIp, this.guestPort, this.sndNxt, this.rcvNxt, true);
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
    if (s && !s.destroyed) s.destroy();
    this.un.forget(this);
  }
}

// ---------------------------------------------------------------------------------------------
// UDP: one host socket per guest source address and port

class UdpBinding {
  lastUsed = now();
  /** host address:port pairs the guest has sent to; replies are accepted only from these. */
  readonly peers = new Set<string>();
  constructor(
    readonly key: string,
    readonly guestIp: number,
    readonly guestPort: number,
    readonly sock: dgram.Socket,
  ) {}
}

// ---------------------------------------------------------------------------------------------
// DNS

interface Upstream {
  host: string;
  port: number;
  family: 4 | 6;
}

function parseServer(s: string): Upstream | null {
  let m = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (m) return parseIp6(m[1]) ? { host: m[1], port: m[2] ? Number(m[2]) : 53, family: 6 } : null;
  m = /^(\d+\.\d+\.\d+\.\d+)(?::(\d+))?$/.exec(s);
  if (m) return parseIp4(m[1]) !== null ? { host: m[1], port: m[2] ? Number(m[2]) : 53, family: 4 } : null;
  if (parseIp6(s)) return { host: s, port: 53, family: 6 };
  return null;
}

interface PendingQuery {
  guestIp: number;
  guestPort: number;
  origId: number;
  query: Uint8Array;
  question: DnsQuestion;
  server: number;
  timer: ReturnType<typeof setTimeout> | null;
}

class DnsProxy {
  private readonly servers: Upstream[];
  private readonly hostsFile: string | null;
  private hosts: Map<string, { v4: Uint8Array[]; v6: Uint8Array[] }> | null = null;
  private readonly lookup: ((name: string, family: 4 | 6) => Promise<string[]>) | null;
  private readonly timeoutMs: number;
  private readonly pending = new Map<number, PendingQuery>();
  private lookups = 0;
  private sock4: dgram.Socket | null = null;
  private sock6: dgram.Socket | null = null;
  private closed = false;

  constructor(
    private readonly un: UserNet,
    opts: UserNetDnsOptions,
    /** No query leaves the host: neither forwarded nor resolved. */
    private readonly restricted: boolean,
  ) {
    const list = opts.servers ?? safeGetServers();
    this.servers = list.map(parseServer).filter((s): s is Upstream => s !== null && s.port > 0 && s.port < 65536);
    this.hostsFile = opts.hostsFile === undefined ? "/etc/hosts" : opts.hostsFile;
    this.timeoutMs = opts.timeoutMs ?? DNS_TIMEOUT;
    if (opts.lookup === "system") this.lookup = systemLookup;
    else this.lookup = opts.lookup ?? null;
  }

  get inFlight(): number {
    return this.pending.size + this.lookups;
  }

  /** The upstream server guest TCP connections to 10.0.2.3:53 go to. */
  tcpUpstream(): Upstream | null {
    return this.servers[0] ?? null;
  }

  query(guestIp: number, guestPort: number, payload: Uint8Array): void {
    const c = this.un.counters;
    const q = parseDns(payload);
    if (!q || q.flags & DNS_FLAG_QR) {
      c.malformed++;
      return;
    }
    c.dnsQueries++;
    const reply = (m: DnsMessage) => this.reply(guestIp, guestPort, m);
    if (dnsOpcode(q) !== 0) {
      reply(this.response(q, DNS_RCODE_NOTIMP, []));
      return;
    }
    if (q.questions.length !== 1) {
      reply(this.response(q, DNS_RCODE_FORMERR, []));
      return;
    }
    const question = q.questions[0];
    const local = this.localAnswer(question);
    if (local) {
      // Local answers need nothing outside, so they stay even when restricted.
      c.dnsLocal++;
      reply(this.response(q, local.rcode, local.answers));
      return;
    }
    if (this.restricted) {
      // REFUSED rather than silence: a stub resolver gives up on this server at once instead of
      // waiting out its timeouts and retries (glibc: 5 s times 2 attempts) on every lookup.
      c.dnsFailed++;
      reply(this.response(q, DNS_RCODE_REFUSED, [], false));
      return;
    }
    if (this.lookup && question.class === DNS_CLASS_IN && (question.type === DNS_TYPE_A || question.type === DNS_TYPE_AAAA)) {
      if (this.inFlight >= DNS_MAX_PENDING) return; // the guest will ask again
      this.resolve(q, question, reply);
      return;
    }
    this.forward(guestIp, guestPort, q, question, payload);
  }

  private response(q: DnsMessage, rcode: number, answers: DnsRecord[], authoritative = true): DnsMessage {
    return {
      id: q.id,
      flags: DNS_FLAG_QR | (q.flags & 0x7800) | (authoritative ? DNS_FLAG_AA : 0) | (q.flags & DNS_FLAG_RD) | DNS_FLAG_RA | rcode,
      questions: q.questions,
      answers,
      authorities: [],
      additionals: [],
    };
  }

  private reply(guestIp: number, guestPort: number, m: DnsMessage): void {
    let bytes: Uint8Array;
    try {
      bytes = buildDns(m);
      if (bytes.length > 512) bytes = buildDns({ ...m, flags: m.flags | DNS_FLAG_TC, answers: [] });
    } catch {
      bytes = buildDns({ ...m, flags: (m.flags & ~15) | DNS_RCODE_FORMERR, questions: [], answers: [] });
    }
    this.un.sendUdp(USER_DNS, 53, guestIp, guestPort, bytes);
  }

  /** localhost (RFC 6761), .invalid, and the hosts file. */
  private localAnswer(q: DnsQuestion): { rcode: number; answers: DnsRecord[] } | null {
    const name = q.name.toLowerCase();
    const rec = (data: Uint8Array, type: number): DnsRecord => ({ name: q.name, type, class: DNS_CLASS_IN, ttl: DNS_TTL, data });
    const pick = (v4: Uint8Array[], v6: Uint8Array[]) => {
      if (q.class !== DNS_CLASS_IN) return [];
      if (q.type === DNS_TYPE_A) return v4.slice(0, 16).map((a) => rec(a, DNS_TYPE_A));
      if (q.type === DNS_TYPE_AAAA) return v6.slice(0, 16).map((a) => rec(a, DNS_TYPE_AAAA));
      return [];
    };
    if (name === "localhost" || name.endsWith(".localhost")) {
      return { rcode: DNS_RCODE_NOERROR, answers: pick([new Uint8Array([127, 0, 0, 1])], [parseIp6("::1")!]) };
    }
    if (name === "invalid" || name.endsWith(".invalid")) return { rcode: DNS_RCODE_NXDOMAIN, answers: [] };
    const h = this.hostsTable().get(name);
    if (h) return { rcode: DNS_RCODE_NOERROR, answers: pick(h.v4, h.v6) };
    return null;
  }

  private hostsTable(): Map<string, { v4: Uint8Array[]; v6: Uint8Array[] }> {
    if (this.hosts) return this.hosts;
    const table = new Map<string, { v4: Uint8Array[]; v6: Uint8Array[] }>();
    this.hosts = table;
    if (!this.hostsFile) return table;
    let text = "";
    try {
      text = readFileSync(this.hostsFile, "utf8");
    } catch {
      return table;
    }
    for (const line of text.split("\n").slice(0, 10000)) {
      const fields = line.replace(/#.*/, "").trim().split(/\s+/);
      if (fields.length < 2) continue;
      const v4 = parseIp4(fields[0]);
      const v6 = v4 === null ? parseIp6(fields[0].replace(/%.*$/, "")) : null;
      if (v4 === null && !v6) continue;
      for (const n of fields.slice(1)) {
        const key = n.toLowerCase().replace(/\.$/, "");
        let e = table.get(key);
        if (!e) table.set(key, (e = { v4: [], v6: [] }));
        if (v4 !== null) e.v4.push(new Uint8Array([v4 >>> 24, (v4 >>> 16) & 255, (v4 >>> 8) & 255, v4 & 255]));
        else e.v6.push(v6!);
      }
    }
    return table;
  }

  private resolve(q: DnsMessage, question: DnsQuestion, reply: (m: DnsMessage) => void): void {
    const c = this.un.counters;
    const family = question.type === DNS_TYPE_A ? 4 : 6;
    const lookup = this.lookup!;
    this.lookups++;
    let done = false;
    const finish = (rcode: number, addrs: string[]) => {
      if (done) return;
      done = true;
      this.lookups--;
      clearTimeout(timer);
      if (this.closed) return;
      if (rcode === DNS_RCODE_SERVFAIL) c.dnsFailed++;
      const answers: DnsRecord[] = [];
      for (const a of addrs.slice(0, 16)) {
        const v4 = family === 4 ? parseIp4(a) : null;
        const data = v4 !== null ? new Uint8Array([v4 >>> 24, (v4 >>> 16) & 255, (v4 >>> 8) & 255, v4 & 255]) : family === 6 ? parseIp6(a) : null;
        if (data) answers.push({ name: question.name, type: question.type, class: DNS_CLASS_IN, ttl: DNS_TTL, data });
      }
      reply(this.response(q, rcode, answers, false));
    };
    const timer = setTimeout(this.un.guard(() => finish(DNS_RCODE_SERVFAIL, [])), this.timeoutMs);
    timer.unref?.();
    let name = question.name;
    if (/\\/.test(name)) {
      finish(DNS_RCODE_NXDOMAIN, []); // names with escaped bytes do not exist for the resolver
      return;
    }
    if (name.endsWith(".")) name = name.slice(0, -1);
    Promise.resolve()
      .then(() => lookup(name, family))
      .then(
        this.un.guard((addrs: string[]) => finish(DNS_RCODE_NOERROR, Array.isArray(addrs) ? addrs : [])),
        this.un.guard((err: { code?: string }) => {
          const code = err?.code;
          if (code === "ENODATA") finish(DNS_RCODE_NOERROR, []);
          else if (code === "ENOTFOUND" || code === "NXDOMAIN") finish(DNS_RCODE_NXDOMAIN, []);
          else finish(DNS_RCODE_SERVFAIL, []);
        }),
      );
  }

  private forward(guestIp: number, guestPort: number, q: DnsMessage, question: DnsQuestion, payload: Uint8Array): void {
    const c = this.un.counters;
    if (this.servers.length === 0) {
      c.dnsFailed++;
      this.reply(guestIp, guestPort, this.response(q, DNS_RCODE_SERVFAIL, [], false));
      return;
    }
    if (this.inFlight >= DNS_MAX_PENDING) return;
    let id = random32() & 0xffff;
    for (let i = 0; i < 16 && this.pending.has(id); i++) id = random32() & 0xffff;
    if (this.pending.has(id)) return;
    const query = payload.slice();
    query[0] = id >> 8;
    query[1] = id & 255;
    const p: PendingQuery = { guestIp, guestPort, origId: q.id, query, question, server: 0, timer: null };
    this.pending.set(id, p);
    c.dnsForwarded++;
    this.transmit(id, p);
  }

  private transmit(id: number, p: PendingQuery): void {
    const s = this.servers[p.server];
    const sock = this.socket(s.family);
    sock.send(p.query, s.port, s.host, () => {});
    p.timer = setTimeout(this.un.guard(() => {
      if (this.pending.get(id) !== p) return;
      if (++p.server < Math.min(this.servers.length, 3)) {
        this.transmit(id, p);
        return;
      }
      this.pending.delete(id);
      this.un.counters.dnsFailed++;
      const header = new Uint8Array(12);
      header.set(p.query.subarray(0, 12));
      const m: DnsMessage = {
        id: p.origId,
        flags: DNS_FLAG_QR | (((header[2] << 8) | header[3]) & DNS_FLAG_RD) | DNS_FLAG_RA | DNS_RCODE_SERVFAIL,
        questions: [p.question],
        answers: [],
        authorities: [],
        additionals: [],
      };
      this.reply(p.guestIp, p.guestPort, m);
    }), this.timeoutMs);
    p.timer.unref?.();
  }

  private socket(family: 4 | 6): dgram.Socket {
    const existing = family === 4 ? this.sock4 : this.sock6;
    if (existing) return existing;
    const sock = dgram.createSocket(family === 4 ? "udp4" : "udp6");
    sock.on("message", this.un.guard((msg: Buffer, rinfo: dgram.RemoteInfo) => this.upstreamReply(msg, rinfo)));
    sock.on("error", () => {});
    if (family === 4) this.sock4 = sock;
    else this.sock6 = sock;
    return sock;
  }

  private upstreamReply(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.closed || msg.length < 12) return;
    const id = (msg[0] << 8) | msg[1];
    const p = this.pending.get(id);
    if (!p) return;
    const s = this.servers[p.server];
    if (rinfo.port !== s.port || normalizeAddr(rinfo.address) !== normalizeAddr(s.host)) return;
    const m = parseDns(msg);
    if (!m || !(m.flags & DNS_FLAG_QR) || m.questions.length !== 1) return;
    const mq = m.questions[0];
    if (mq.type !== p.question.type || mq.class !== p.question.class || mq.name.toLowerCase() !== p.question.name.toLowerCase()) return;
    this.pending.delete(id);
    if (p.timer) clearTimeout(p.timer);
    let out: Uint8Array = new Uint8Array(msg);
    out[0] = p.origId >> 8;
    out[1] = p.origId & 255;
    if (out.length + 28 > this.un.mtu) {
      // Too big for one unfragmented datagram: tell the guest to retry over TCP.
      out = buildDns({ ...m, id: p.origId, flags: m.flags | DNS_FLAG_TC, answers: [], authorities: [], additionals: [] });
    }
    this.un.sendUdp(USER_DNS, 53, p.guestIp, p.guestPort, out);
  }

  close(): void {
    this.closed = true;
    for (const p of this.pending.values()) if (p.timer) clearTimeout(p.timer);
    this.pending.clear();
    this.sock4?.close();
    this.sock6?.close();
    this.sock4 = this.sock6 = null;
  }
}

function safeGetServers(): string[] {
  try {
    return nodeDns.getServers();
  } catch {
    return [];
  }
}

async function systemLookup(name: string, family: 4 | 6): Promise<string[]> {
  const r = await nodeDns.promises.lookup(name, { family, all: true });
  return r.filter((a) => a.family === family).map((a) => a.address);
}

function normalizeAddr(a: string): string {
  return a.startsWith("::ffff:") && a.includes(".") ? a.slice(7) : a.toLowerCase();
}

// ---------------------------------------------------------------------------------------------
// The backend

export class UserNet implements NetBackend {
  readonly mtu: number;
  /** @internal */
  readonly counters = {
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

  private receive: ((frame: Uint8Array) => void) | null = null;
  private closed = false;
  private readonly gwMac: Mac;
  private guestMac: Mac | null = null;
  private readonly onWake: (() => void) | undefined;
  private readonly onError: (err: unknown) => void;
  private readonly restrict: boolean;
  /** Ports of the host's 127.0.0.1 the guest may reach, or "all". */
  private readonly loopback: ReadonlySet<number> | "all";
  private readonly sockets: SocketBudget;
  private out: Uint8Array[] = [];
  private readonly dirty = new Set<TcpConn>();
  private flushScheduled = false;
  private readonly tcp = new Map<string, TcpConn>();
  private readonly udp = new Map<string, UdpBinding>();
  private udpSweep: ReturnType<typeof setInterval> | null = null;
  private readonly dns: DnsProxy;
  private readonly fwd: { rule: HostFwd; status: HostFwdStatus; server: net.Server; guestIp: number }[] = [];
  private readonly readyPromise: Promise<HostFwdStatus[]>;
  private ipId = 0;
  private nextPort = 49152 + (random32() % 16384);
  private lastArpRequest = -Infinity;

  constructor(opts: UserNetOptions = {}) {
    const mac = typeof opts.mac === "string" ? parseMac(opts.mac) : (opts.mac ?? parseMac(USER_GATEWAY_MAC));
    if (!mac || mac.length !== 6 || isGroupMac(mac)) throw new Error(`usernet: invalid gateway MAC address ${String(opts.mac)}`);
    this.gwMac = new Uint8Array(mac);
    this.mtu = opts.mtu ?? 1500;
    if (!(this.mtu >= 576 && this.mtu <= 65535)) throw new Error(`usernet: MTU ${opts.mtu} outside 576-65535`);
    this.onWake = opts.onWake;
    this.onError = opts.onError ?? ((e) => console.error("usernet:", e));
    this.restrict = opts.restrict ?? false;
    this.loopback = loopbackPorts(opts.loopback ?? "all");
    this.sockets = opts.sockets ?? new SocketBudget(DEFAULT_VM_SOCKETS);
    this.dns = new DnsProxy(this, opts.dns ?? {}, this.restrict);
    const rules = opts.hostfwd ?? [];
    for (const rule of rules) {
      // Check every rule before listening on any port, so a bad one leaks nothing.
      if (rule.proto !== "tcp") throw new Error(`hostfwd: protocol ${String(rule.proto)} is not supported (only tcp)`);
      if (rule.hostAddr && parseIp4(rule.hostAddr) === null) throw new Error(`hostfwd: host address '${rule.hostAddr}' is not an IPv4 address`);
      if (!Number.isInteger(rule.hostPort) || rule.hostPort < 0 || rule.hostPort > 65535) throw new Error(`hostfwd: host port ${rule.hostPort} is not in 0-65535`);
      if (!Number.isInteger(rule.guestPort) || rule.guestPort < 1 || rule.guestPort > 65535) throw new Error(`hostfwd: guest port ${rule.guestPort} is not in 1-65535`);
      checkGuestAddr(rule.guestAddr || ip4ToString(USER_GUEST), "hostfwd");
    }
    const listens: Promise<void>[] = [];
    for (const rule of rules) listens.push(this.listen(rule));
    this.readyPromise = Promise.all(listens).then(() => this.fwd.map((f) => ({ ...f.status })));
    this.readyPromise.catch(() => {}); // reported through onError as well
  }

  /** Resolves once every hostfwd port listens (with the bound ports); rejects if one cannot. */
  ready(): Promise<HostFwdStatus[]> {
    return this.readyPromise;
  }

  // --- NetBackend ---------------------------------------------------------------------------

  send(frame: Uint8Array): void {
    if (this.closed) return;
    this.counters.framesFromGuest++;
    this.counters.bytesFromGuest += frame.length;
    try {
      this.input(frame);
    } catch (e) {
      this.report(e);
    }
  }

  attach(receive: (frame: Uint8Array) => void): void {
    this.receive = receive;
  }

  /** Closes every socket and listener and stops every timer; idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.receive = null;
    for (const c of Array.from(this.tcp.values())) c.remove();
    this.tcp.clear();
    this.dirty.clear();
    for (const b of Array.from(this.udp.values())) this.closeUdp(b);
    if (this.udpSweep) clearInterval(this.udpSweep);
    this.udpSweep = null;
    this.dns.close();
    for (const f of this.fwd) {
      f.status.listening = false;
      if (f.server.listening) f.server.close();
    }
    this.out = [];
  }

  stats(): UserNetStats {
    const c = this.counters;
    let paused = 0;
    let closing = 0;
    for (const conn of this.tcp.values()) {
      if (conn.hostPaused) paused++;
      if (conn.state === "time-wait") closing++;
    }
    return {
      framesFromGuest: c.framesFromGuest,
      bytesFromGuest: c.bytesFromGuest,
      framesToGuest: c.framesToGuest,
      bytesToGuest: c.bytesToGuest,
      malformed: c.malformed,
      ignored: c.ignored,
      undelivered: c.undelivered,
      errors: c.errors,
      arpReplies: c.arpReplies,
      icmpEchoReplies: c.icmpEchoReplies,
      dhcp: { offers: c.dhcpOffers, acks: c.dhcpAcks, naks: c.dhcpNaks },
      dns: { queries: c.dnsQueries, local: c.dnsLocal, forwarded: c.dnsForwarded, failed: c.dnsFailed, pending: this.dns.inFlight },
      tcp: {
        active: this.tcp.size - closing,
        closing,
        outbound: c.tcpOutbound,
        inbound: c.tcpInbound,
        refused: c.tcpRefused,
        resets: c.tcpResets,
        retransmits: c.tcpRetransmits,
        hostPaused: paused,
      },
      udp: { bindings: this.udp.size, datagramsOut: c.udpOut, datagramsIn: c.udpIn },
      hostfwd: this.fwd.map((f) => ({ ...f.status })),
    };
  }

  // --- plumbing used by the connections ----------------------------------------------------

  /** @internal Wraps a host event handler: an exception in it is reported, never thrown into Node. */
  guard<A extends unknown[]>(fn: (...args: A) => void): (...args: A) => void {
    return (...args: A) => {
      try {
        fn(...args);
      } catch (e) {
        this.report(e);
      }
    };
  }

  /** @internal */
  report(e: unknown): void {
    this.counters.errors++;
    try {
      this.onError(e);
    } catch {
      // an error handler that throws has nowhere to report to
    }
  }

  /** @internal Queue an IPv4 packet for the guest. */
  emitIp(src: number, dst: number, protocol: number, payload: Uint8Array): void {
    if (this.closed) return;
    const mac = dst === LIMITED_BROADCAST ? BROADCAST_MAC : this.guestMac;
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

  /** @internal */
  sendUdp(src: number, srcPort: number, dst: number, dstPort: number, payload: Uint8Array): void {
    if (28 + payload.length > this.mtu) {
      this.counters.undelivered++;
      return;
    }
    this.emitIp(src, dst, IPPROTO_UDP, buildUdp(src, dst, srcPort, dstPort, payload));
  }

  /** @internal A reset to the guest (ack: with the ACK flag and that acknowledgment number). */
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

  /** @internal */
  markDirty(c: TcpConn): void {
    this.dirty.add(c);
    this.flushSoon();
  }

  /** @internal */
  forget(c: TcpConn): void {
    if (this.tcp.get(c.key) === c) this.tcp.delete(c.key);
    this.dirty.delete(c);
    this.sockets.release(); // every TcpConn took one when created, and is removed once
  }

  /** @internal */
  flushSoon(): void {
    if (this.flushScheduled || this.closed) return;
    this.flushScheduled = true;
    queueMicrotask(() => this.flush());
  }

  private emitFrame(f: Uint8Array): void {
    this.out.push(f);
    this.flushSoon();
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.closed) return;
    for (const c of this.dirty) {
      this.dirty.delete(c);
      try {
        c.output();
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
    const t = now();
    if (t - this.lastArpRequest < 100) return;
    this.lastArpRequest = t;
    const arp = buildArp({ op: ARP_REQUEST, senderMac: this.gwMac, senderIp: USER_GATEWAY, targetMac: ZERO_MAC, targetIp: ip });
    this.emitFrame(buildEthernet(BROADCAST_MAC, this.gwMac, ETHERTYPE_ARP, arp));
  }

  private learnGuestMac(mac: Mac): void {
    if (isGroupMac(mac) || macEquals(mac, this.gwMac) || macEquals(mac, ZERO_MAC)) return;
    if (this.guestMac && macEquals(mac, this.guestMac)) return;
    const first = this.guestMac === null;
    this.guestMac = new Uint8Array(mac);
    if (first) for (const c of this.tcp.values()) c.kick();
  }

  // --- frames from the guest ---------------------------------------------------------------

  private input(frame: Uint8Array): void {
    const eth = parseEthernet(frame);
    if (!eth) {
      this.counters.malformed++;
      return;
    }
    if (!isGroupMac(eth.dst) && !macEquals(eth.dst, this.gwMac)) {
      this.counters.ignored++; // unicast to someone else
      return;
    }
    if (eth.etherType === ETHERTYPE_ARP) this.inputArp(eth.payload);
    else if (eth.etherType === ETHERTYPE_IPV4) this.inputIp(eth.src, eth.payload);
    else this.counters.ignored++;
  }

  private inputArp(b: Uint8Array): void {
    const arp = parseArp(b);
    if (!arp) {
      this.counters.malformed++;
      return;
    }
    if (arp.senderIp !== USER_GATEWAY && arp.senderIp !== USER_DNS) this.learnGuestMac(arp.senderMac);
    if (arp.op === ARP_REQUEST && (arp.targetIp === USER_GATEWAY || arp.targetIp === USER_DNS) && !isGroupMac(arp.senderMac)) {
      const reply = buildArp({
        op: ARP_REPLY,
        senderMac: this.gwMac,
        senderIp: arp.targetIp,
        targetMac: arp.senderMac,
        targetIp: arp.senderIp,
      });
      this.counters.arpReplies++;
      this.emitFrame(buildEthernet(arp.senderMac, this.gwMac, ETHERTYPE_ARP, reply));
      return;
    }
    if (arp.op === ARP_REPLY) return;
    this.counters.ignored++;
  }

  private inputIp(srcMac: Mac, b: Uint8Array): void {
    const ip = parseIPv4(b);
    if (!ip) {
      this.counters.malformed++;
      return;
    }
    if (isFragment(ip) || ip.src === USER_GATEWAY || ip.src === USER_DNS || (ip.src >>> 24) === 127 || ip.src >>> 28 >= 14) {
      this.counters.ignored++;
      return;
    }
    if (ip.protocol === IPPROTO_UDP) {
      const udp = parseUdp(ip.payload, ip.src, ip.dst);
      if (!udp) {
        this.counters.malformed++;
        return;
      }
      this.learnGuestMac(srcMac);
      if (udp.dstPort === DHCP_SERVER_PORT && (ip.dst === LIMITED_BROADCAST || ip.dst === USER_GATEWAY)) this.inputDhcp(udp.payload);
      else if (!inSubnet(ip.src)) this.counters.ignored++;
      else if (ip.dst === USER_DNS && udp.dstPort === 53) this.dns.query(ip.src, udp.srcPort, udp.payload);
      else this.udpOut(ip, udp.srcPort, udp.dstPort, udp.payload);
      return;
    }
    if (ip.protocol === IPPROTO_TCP) {
      const seg = parseTcp(ip.payload, ip.src, ip.dst);
      if (!seg) {
        this.counters.malformed++;
        return;
      }
      this.learnGuestMac(srcMac);
      if (inSubnet(ip.src)) this.inputTcp(ip, seg);
      else this.counters.ignored++;
      return;
    }
    if (ip.protocol === IPPROTO_ICMP) {
      const icmp = parseIcmp(ip.payload);
      if (!icmp) {
        this.counters.malformed++;
        return;
      }
      this.learnGuestMac(srcMac);
      if (icmp.type === ICMP_ECHO_REQUEST && icmp.code === 0 && inSubnet(ip.src) && (ip.dst === USER_GATEWAY || ip.dst === USER_DNS)) {
        this.counters.icmpEchoReplies++;
        this.emitIp(ip.dst, ip.src, IPPROTO_ICMP, buildIcmpEcho(ICMP_ECHO_REPLY, icmp.id, icmp.seq, icmp.data));
      } else this.counters.ignored++;
      return;
    }
    this.counters.ignored++;
  }

  // --- DHCP -----------------------------------------------------------------------------

  private inputDhcp(b: Uint8Array): void {
    const m = parseDhcp(b);
    if (!m || m.op !== 1) {
      this.counters.malformed++;
      return;
    }
    let type: number;
    let yiaddr = USER_GUEST;
    switch (m.messageType) {
      case DHCPDISCOVER:
        type = DHCPOFFER;
        this.counters.dhcpOffers++;
        break;
      case DHCPREQUEST: {
        if (m.serverId !== undefined && m.serverId !== USER_GATEWAY) return; // the client chose another server
        const wanted = m.requestedIp ?? m.ciaddr;
        if (wanted === USER_GUEST) {
          type = DHCPACK;
          this.counters.dhcpAcks++;
        } else {
          type = DHCPNAK;
          yiaddr = 0;
          this.counters.dhcpNaks++;
        }
        break;
      }
      case DHCPINFORM:
        type = DHCPACK;
        yiaddr = 0;
        this.counters.dhcpAcks++;
        break;
      default:
        this.counters.ignored++; // release, decline, server messages
        return;
    }
    const options: [number, Uint8Array][] = [
      [DHCP_OPT_MESSAGE_TYPE, optU8(type)],
      [DHCP_OPT_SERVER_ID, optU32(USER_GATEWAY)],
    ];
    if (type !== DHCPNAK) {
      if (m.messageType !== DHCPINFORM) options.push([DHCP_OPT_LEASE_TIME, optU32(DHCP_LEASE_SECONDS)]);
      options.push([DHCP_OPT_SUBNET_MASK, optU32(USER_NETMASK)], [DHCP_OPT_ROUTER, optIps([USER_GATEWAY])], [DHCP_OPT_DNS, optIps([USER_DNS])]);
    }
    const reply = buildDhcp({
      op: 2,
      xid: m.xid,
      flags: m.flags & 0x8000,
      ciaddr: m.messageType === DHCPINFORM ? m.ciaddr : 0,
      yiaddr,
      siaddr: type === DHCPNAK ? 0 : USER_GATEWAY,
      giaddr: m.giaddr,
      chaddr: m.chaddr,
      options,
    });
    // RFC 2131 4.1: to ciaddr if the client has one, else broadcast (at the link layer only
    // when the client asked for it; Linux and udhcpc receive either way).
    const toCiaddr = m.ciaddr !== 0 && type !== DHCPNAK;
    const dstIp = toCiaddr ? m.ciaddr : LIMITED_BROADCAST;
    const dstMac = m.flags & 0x8000 || type === DHCPNAK ? BROADCAST_MAC : m.chaddr;
    const udp = buildUdp(USER_GATEWAY, dstIp, DHCP_SERVER_PORT, DHCP_CLIENT_PORT, reply);
    const pkt = buildIPv4({ src: USER_GATEWAY, dst: dstIp, protocol: IPPROTO_UDP, payload: udp, id: this.ipId++ & 0xffff, dontFragment: false });
    this.emitFrame(buildEthernet(dstMac, this.gwMac, ETHERTYPE_IPV4, pkt));
  }

  // --- UDP ------------------------------------------------------------------------------

  private udpOut(ip: Ipv4Packet, srcPort: number, dstPort: number, payload: Uint8Array): void {
    const dest = srcPort === 0 || dstPort === 0 ? null : this.hostDestination(ip.dst, dstPort);
    if (!dest) {
      this.counters.ignored++;
      return;
    }
    const key = `${ip.src}:${srcPort}`;
    let b = this.udp.get(key);
    if (!b) {
      if (!this.sockets.take()) {
        // The budget is spent: this NIC's binding idle the longest makes room, if it has one.
        let idlest: UdpBinding | null = null;
        for (const x of this.udp.values()) if (!idlest || x.lastUsed < idlest.lastUsed) idlest = x;
        if (idlest) this.closeUdp(idlest);
        if (!idlest || !this.sockets.take()) {
          this.counters.ignored++;
          return;
        }
      }
      const sock = dgram.createSocket("udp4");
      const nb = new UdpBinding(key, ip.src, srcPort, sock);
      sock.on("message", this.guard((msg: Buffer, rinfo: dgram.RemoteInfo) => this.udpIn(nb, msg, rinfo)));
      sock.on("error", () => this.closeUdp(nb));
      this.udp.set(key, nb);
      b = nb;
      if (!this.udpSweep) {
        this.udpSweep = setInterval(this.guard(() => this.sweepUdp()), UDP_SWEEP_MS);
        this.udpSweep.unref?.();
      }
    }
    b.lastUsed = now();
    if (b.peers.size < 1024) b.peers.add(`${dest.host}:${dest.port}`);
    this.counters.udpOut++;
    b.sock.send(payload, dest.port, dest.host, () => {});
  }

  private udpIn(b: UdpBinding, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.closed || this.udp.get(b.key) !== b) return;
    if (!b.peers.has(`${rinfo.address}:${rinfo.port}`)) {
      this.counters.ignored++;
      return;
    }
    const src = rinfo.address === HOST_LOOPBACK ? USER_GATEWAY : parseIp4(rinfo.address);
    if (src === null) return;
    b.lastUsed = now();
    this.counters.udpIn++;
    this.sendUdp(src, rinfo.port, b.guestIp, b.guestPort, new Uint8Array(msg.buffer, msg.byteOffset, msg.length));
  }

  private closeUdp(b: UdpBinding): void {
    if (this.udp.get(b.key) !== b) return;
    this.udp.delete(b.key);
    this.sockets.release();
    try {
      b.sock.close();
    } catch {
      // already closed
    }
  }

  private sweepUdp(): void {
    const t = now();
    for (const b of Array.from(this.udp.values())) if (t - b.lastUsed > UDP_IDLE_MS) this.closeUdp(b);
    if (this.udp.size === 0 && this.udpSweep) {
      clearInterval(this.udpSweep);
      this.udpSweep = null;
    }
  }

  // --- TCP ------------------------------------------------------------------------------

  private inputTcp(ip: Ipv4Packet, seg: TcpSegment): void {
    if (ip.dst === LIMITED_BROADCAST || ip.dst === SUBNET_BROADCAST || ip.dst >>> 28 === 14) {
      this.counters.ignored++;
      return;
    }
    const key = `${ip.src}:${seg.srcPort}>${ip.dst}:${seg.dstPort}`;
    let c = this.tcp.get(key);
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
    if (f & TCP_ACK) this.sendRst(ip.dst, seg.dstPort, ip.src, seg.srcPort, seg.ack, 0, false);
    else this.sendRst(ip.dst, seg.dstPort, ip.src, seg.srcPort, 0, seqAdd(seg.seq, len), true);
  }

  /**
   * Where the guest's TCP or UDP to dst:port goes on the host, or null when the guest may not go
   * there: the one place restrict, the loopback policy and the routable-address check apply.
   */
  private hostDestination(dst: number, port: number): { host: string; port: number } | null {
    if (this.restrict) return null;
    if (dst === USER_GATEWAY) return this.loopback === "all" || this.loopback.has(port) ? { host: HOST_LOOPBACK, port } : null;
    // TCP to 10.0.2.3:53 is proxied to the upstream nameserver (UDP queries never get here:
    // the DNS proxy answers them). The operator chose that server, so the loopback policy
    // does not apply to it.
    if (dst === USER_DNS) return port === 53 ? this.dns.tcpUpstream() : null;
    return isRoutable(dst) ? { host: ip4ToString(dst), port } : null;
  }

  private openOutbound(key: string, ip: Ipv4Packet, seg: TcpSegment): void {
    const dest = seg.srcPort === 0 || seg.dstPort === 0 ? null : this.hostDestination(ip.dst, seg.dstPort);
    if (!dest || !this.sockets.take()) {
      this.counters.tcpRefused++;
      this.sendRst(ip.dst, seg.dstPort, ip.src, seg.srcPort, 0, seqAdd(seg.seq, 1 + seg.payload.length), true);
      return;
    }
    const c = new TcpConn(this, key, ip.src, seg.srcPort, ip.dst, seg.dstPort, "connecting");
    c.irs = seg.seq;
    c.rcvNxt = seqAdd(seg.seq, 1);
    c.rcvEdge = c.rcvNxt;
    c.setPeerOptions(seg);
    this.tcp.set(key, c);
    this.counters.tcpOutbound++;
    const s = net.connect({ host: dest.host, port: dest.port, allowHalfOpen: true });
    s.setNoDelay(true);
    c.bindSocket(s);
    s.once("connect", this.guard(() => c.hostConnected()));
    c.arm("connect", CONNECT_TIMEOUT);
  }

  // --- hostfwd ----------------------------------------------------------------------------

  private listen(rule: HostFwd): Promise<void> {
    const hostAddr = rule.hostAddr || HOST_LOOPBACK;
    const guestIp = checkGuestAddr(rule.guestAddr || ip4ToString(USER_GUEST), "hostfwd");
    const status: HostFwdStatus = {
      proto: "tcp",
      hostAddr,
      hostPort: rule.hostPort,
      guestAddr: ip4ToString(guestIp),
      guestPort: rule.guestPort,
      listening: false,
    };
    const server = net.createServer(
      { allowHalfOpen: true, pauseOnConnect: true },
      this.guard((s: net.Socket) => this.acceptForward(s, guestIp, rule.guestPort)),
    );
    const entry = { rule, status, server, guestIp };
    this.fwd.push(entry);
    return new Promise<void>((resolve, reject) => {
      server.on("error", (err) => {
        if (status.listening) {
          this.report(err);
          return;
        }
        const e = new Error(`hostfwd tcp:${hostAddr}:${rule.hostPort}-${status.guestAddr}:${rule.guestPort}: cannot listen: ${err.message}`);
        if (!this.closed) this.report(e);
        reject(e);
      });
      server.listen({ host: hostAddr, port: rule.hostPort, exclusive: true }, () => {
        if (this.closed) {
          server.close();
          resolve();
          return;
        }
        const a = server.address();
        if (a && typeof a === "object") status.hostPort = a.port;
        status.listening = true;
        resolve();
      });
    });
  }

  private acceptForward(s: net.Socket, guestIp: number, guestPort: number): void {
    if (this.closed) {
      s.destroy();
      return;
    }
    let key = "";
    let port = 0;
    for (let i = 0; i < 16384; i++) {
      port = this.nextPort;
      this.nextPort = this.nextPort >= 65535 ? 49152 : this.nextPort + 1;
      key = `${guestIp}:${guestPort}>${USER_GATEWAY}:${port}`;
      if (!this.tcp.has(key)) break;
      key = "";
    }
    if (!key || !this.sockets.take()) {
      this.counters.tcpRefused++;
      resetSocket(s); // the client sees its connection refused, not an empty reply
      return;
    }
    s.setNoDelay(true);
    const c = new TcpConn(this, key, guestIp, guestPort, USER_GATEWAY, port, "syn-sent");
    c.mss = this.mtu - 40;
    c.rcvShift = OUR_WSCALE;
    this.tcp.set(key, c);
    this.counters.tcpInbound++;
    c.bindSocket(s);
    c.startActive();
  }
}
