/**
 * Parsing and building of the packets user-mode networking speaks: Ethernet II, ARP, IPv4, ICMP
 * echo, UDP, TCP, DHCP and DNS messages. Pure logic, no Node APIs, so it runs in a browser too.
 *
 * Everything that comes from a guest is untrusted: every parser checks lengths (and checksums
 * where the protocol has them) and returns null on malformed input; none of them throws.
 * Parsed payloads are subarrays of the input (no copies); builders return fresh arrays.
 *
 * IPv4 addresses are unsigned 32-bit numbers (10.0.2.15 is 0x0a00020f); MAC addresses are
 * 6-byte Uint8Arrays.
 */

// ---------------------------------------------------------------------------------------------
// Addresses

export type Mac = Uint8Array;

export const BROADCAST_MAC: Mac = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
export const ZERO_MAC: Mac = new Uint8Array(6);

/** a.b.c.d as an unsigned 32-bit number. */
export function ip4(a: number, b: number, c: number, d: number): number {
  return (((a & 255) << 24) | ((b & 255) << 16) | ((c & 255) << 8) | (d & 255)) >>> 0;
}

export function ip4ToString(ip: number): string {
  return `${(ip >>> 24) & 255}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;
}

/** Strict dotted quad ("10.0.2.15"), else null. */
export function parseIp4(s: string): number | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return null;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) return null;
  return ip4(parts[0], parts[1], parts[2], parts[3]);
}

export function macToString(mac: Mac): string {
  return Array.from(mac, (b) => b.toString(16).padStart(2, "0")).join(":");
}

/** "52:54:00:12:34:56" (or with dashes), else null. */
export function parseMac(s: string): Mac | null {
  const m = /^([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})$/i.exec(s);
  if (!m) return null;
  return new Uint8Array(m.slice(1).map((h) => parseInt(h, 16)));
}

export function macEquals(a: Mac, b: Mac): boolean {
  for (let i = 0; i < 6; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Broadcast and multicast addresses have the group bit set. */
export function isGroupMac(mac: Mac): boolean {
  return (mac[0] & 1) !== 0;
}

// ---------------------------------------------------------------------------------------------
// Byte helpers

function rd16(b: Uint8Array, o: number): number {
  return (b[o] << 8) | b[o + 1];
}
function rd32(b: Uint8Array, o: number): number {
  return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
}
function wr16(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 8) & 255;
  b[o + 1] = v & 255;
}
function wr32(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 24) & 255;
  b[o + 1] = (v >>> 16) & 255;
  b[o + 2] = (v >>> 8) & 255;
  b[o + 3] = v & 255;
}

// ---------------------------------------------------------------------------------------------
// The Internet checksum (RFC 1071)

/** Adds the big-endian 16-bit words of b[start, end) to acc (an odd last byte is padded). */
export function checksumAdd(acc: number, b: Uint8Array, start = 0, end = b.length): number {
  let i = start;
  for (; i + 1 < end; i += 2) acc += (b[i] << 8) | b[i + 1];
  if (i < end) acc += b[i] << 8;
  return acc;
}

/** Folds a running sum to 16 bits and complements it. */
export function checksumFinish(acc: number): number {
  while (acc > 0xffff) acc = (acc % 0x10000) + Math.floor(acc / 0x10000);
  return ~acc & 0xffff;
}

export function internetChecksum(b: Uint8Array, start = 0, end = b.length): number {
  return checksumFinish(checksumAdd(0, b, start, end));
}

function pseudoHeaderSum(src: number, dst: number, protocol: number, length: number): number {
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + protocol + length;
}

// ---------------------------------------------------------------------------------------------
// Ethernet II

export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const ETH_HEADER = 14;

export interface EthernetFrame {
  dst: Mac;
  src: Mac;
  etherType: number;
  payload: Uint8Array;
}

/** Frames shorter than the header, or with an 802.3 length instead of a type, give null. */
export function parseEthernet(frame: Uint8Array): EthernetFrame | null {
  if (frame.length < ETH_HEADER) return null;
  const etherType = rd16(frame, 12);
  if (etherType < 0x0600) return null; // 802.3 length field, not Ethernet II
  return {
    dst: frame.subarray(0, 6),
    src: frame.subarray(6, 12),
    etherType,
    payload: frame.subarray(ETH_HEADER),
  };
}

export function buildEthernet(dst: Mac, src: Mac, etherType: number, payload: Uint8Array): Uint8Array {
  const f = new Uint8Array(ETH_HEADER + payload.length);
  f.set(dst.subarray(0, 6), 0);
  f.set(src.subarray(0, 6), 6);
  wr16(f, 12, etherType);
  f.set(payload, ETH_HEADER);
  return f;
}

// ---------------------------------------------------------------------------------------------
// ARP (RFC 826), Ethernet/IPv4 only

export const ARP_REQUEST = 1;
export const ARP_REPLY = 2;

export interface ArpPacket {
  op: number;
  senderMac: Mac;
  senderIp: number;
  targetMac: Mac;
  targetIp: number;
}

export function parseArp(b: Uint8Array): ArpPacket | null {
  if (b.length < 28) return null;
  if (rd16(b, 0) !== 1 || rd16(b, 2) !== ETHERTYPE_IPV4 || b[4] !== 6 || b[5] !== 4) return null;
  const op = rd16(b, 6);
  if (op !== ARP_REQUEST && op !== ARP_REPLY) return null;
  return {
    op,
    senderMac: b.subarray(8, 14),
    senderIp: rd32(b, 14),
    targetMac: b.subarray(18, 24),
    targetIp: rd32(b, 24),
  };
}

export function buildArp(p: ArpPacket): Uint8Array {
  const b = new Uint8Array(28);
  wr16(b, 0, 1);
  wr16(b, 2, ETHERTYPE_IPV4);
  b[4] = 6;
  b[5] = 4;
  wr16(b, 6, p.op);
  b.set(p.senderMac.subarray(0, 6), 8);
  wr32(b, 14, p.senderIp);
  b.set(p.targetMac.subarray(0, 6), 18);
  wr32(b, 24, p.targetIp);
  return b;
}

// ---------------------------------------------------------------------------------------------
// IPv4 (RFC 791)

export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

export interface Ipv4Packet {
  src: number;
  dst: number;
  protocol: number;
  ttl: number;
  tos: number;
  id: number;
  dontFragment: boolean;
  moreFragments: boolean;
  /** In bytes. A packet with moreFragments or a non-zero offset is a fragment. */
  fragmentOffset: number;
  headerLength: number;
  /** Exactly total length − header length bytes (link-layer padding is cut off). */
  payload: Uint8Array;
}

/** Checks version, header length, total length and the header checksum. */
export function parseIPv4(b: Uint8Array): Ipv4Packet | null {
  if (b.length < 20) return null;
  if (b[0] >> 4 !== 4) return null;
  const ihl = (b[0] & 15) * 4;
  if (ihl < 20 || ihl > b.length) return null;
  const total = rd16(b, 2);
  if (total < ihl || total > b.length) return null;
  if (internetChecksum(b, 0, ihl) !== 0) return null;
  const frag = rd16(b, 6);
  if (frag & 0x8000) return null; // the reserved bit must be zero
  return {
    src: rd32(b, 12),
    dst: rd32(b, 16),
    protocol: b[9],
    ttl: b[8],
    tos: b[1],
    id: rd16(b, 4),
    dontFragment: (frag & 0x4000) !== 0,
    moreFragments: (frag & 0x2000) !== 0,
    fragmentOffset: (frag & 0x1fff) * 8,
    headerLength: ihl,
    payload: b.subarray(ihl, total),
  };
}

export function isFragment(p: Ipv4Packet): boolean {
  return p.moreFragments || p.fragmentOffset !== 0;
}

export interface Ipv4Build {
  src: number;
  dst: number;
  protocol: number;
  payload: Uint8Array;
  ttl?: number;
  tos?: number;
  id?: number;
  /** Default true. */
  dontFragment?: boolean;
}

export function buildIPv4(p: Ipv4Build): Uint8Array {
  const total = 20 + p.payload.length;
  if (total > 0xffff) throw new RangeError("IPv4 packet longer than 65535 bytes");
  const b = new Uint8Array(total);
  b[0] = 0x45;
  b[1] = p.tos ?? 0;
  wr16(b, 2, total);
  wr16(b, 4, p.id ?? 0);
  wr16(b, 6, p.dontFragment === false ? 0 : 0x4000);
  b[8] = p.ttl ?? 64;
  b[9] = p.protocol;
  wr32(b, 12, p.src);
  wr32(b, 16, p.dst);
  wr16(b, 10, internetChecksum(b, 0, 20));
  b.set(p.payload, 20);
  return b;
}

// ---------------------------------------------------------------------------------------------
// ICMP (RFC 792)

export const ICMP_ECHO_REPLY = 0;
export const ICMP_DEST_UNREACHABLE = 3;
export const ICMP_ECHO_REQUEST = 8;

export interface IcmpMessage {
  type: number;
  code: number;
  /** The 4 bytes after the checksum; for echo messages id = rest >>> 16, seq = rest & 0xffff. */
  rest: number;
  id: number;
  seq: number;
  data: Uint8Array;
}

export function parseIcmp(b: Uint8Array): IcmpMessage | null {
  if (b.length < 8) return null;
  if (internetChecksum(b) !== 0) return null;
  const rest = rd32(b, 4);
  return { type: b[0], code: b[1], rest, id: rest >>> 16, seq: rest & 0xffff, data: b.subarray(8) };
}

export function buildIcmp(type: number, code: number, rest: number, data: Uint8Array): Uint8Array {
  const b = new Uint8Array(8 + data.length);
  b[0] = type;
  b[1] = code;
  wr32(b, 4, rest);
  b.set(data, 8);
  wr16(b, 2, internetChecksum(b));
  return b;
}

export function buildIcmpEcho(type: number, id: number, seq: number, data: Uint8Array): Uint8Array {
  return buildIcmp(type, 0, (((id & 0xffff) << 16) | (seq & 0xffff)) >>> 0, data);
}

// ---------------------------------------------------------------------------------------------
// UDP (RFC 768)

export interface UdpDatagram {
  srcPort: number;
  dstPort: number;
  payload: Uint8Array;
}

/**
 * Checks the length field against the IP payload and, unless it is zero (no checksum), the
 * checksum over the pseudo-header. Bytes after the UDP length are ignored.
 */
export function parseUdp(b: Uint8Array, srcIp: number, dstIp: number): UdpDatagram | null {
  if (b.length < 8) return null;
  const len = rd16(b, 4);
  if (len < 8 || len > b.length) return null;
  if (rd16(b, 6) !== 0) {
    const sum = checksumAdd(pseudoHeaderSum(srcIp, dstIp, IPPROTO_UDP, len), b, 0, len);
    if (checksumFinish(sum) !== 0) return null;
  }
  return { srcPort: rd16(b, 0), dstPort: rd16(b, 2), payload: b.subarray(8, len) };
}

export function buildUdp(srcIp: number, dstIp: number, srcPort: number, dstPort: number, payload: Uint8Array): Uint8Array {
  const len = 8 + payload.length;
  if (len > 0xffff) throw new RangeError("UDP datagram longer than 65535 bytes");
  const b = new Uint8Array(len);
  wr16(b, 0, srcPort);
  wr16(b, 2, dstPort);
  wr16(b, 4, len);
  b.set(payload, 8);
  const c = checksumFinish(checksumAdd(pseudoHeaderSum(srcIp, dstIp, IPPROTO_UDP, len), b));
  wr16(b, 6, c === 0 ? 0xffff : c);
  return b;
}

// ---------------------------------------------------------------------------------------------
// TCP (RFC 9293)

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;
export const TCP_URG = 0x20;

export interface TcpOptions {
  mss?: number;
  /** Window scale shift (RFC 7323), clamped to 14. */
  windowScale?: number;
  sackPermitted?: boolean;
  timestamp?: { value: number; echo: number };
}

export interface TcpSegment {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  /** TCP_FIN | TCP_SYN | ... (the low 8 bits of the flags field). */
  flags: number;
  window: number;
  urgent: number;
  options: TcpOptions;
  payload: Uint8Array;
}

/**
 * Checks the data offset and the checksum over the pseudo-header. Options are read as far as
 * they are well-formed; a malformed option list ends the reading (as Linux does) rather than
 * rejecting the segment.
 */
export function parseTcp(b: Uint8Array, srcIp: number, dstIp: number): TcpSegment | null {
  if (b.length < 20) return null;
  const off = (b[12] >> 4) * 4;
  if (off < 20 || off > b.length) return null;
  const sum = checksumAdd(pseudoHeaderSum(srcIp, dstIp, IPPROTO_TCP, b.length), b);
  if (checksumFinish(sum) !== 0) return null;
  return {
    srcPort: rd16(b, 0),
    dstPort: rd16(b, 2),
    seq: rd32(b, 4),
    ack: rd32(b, 8),
    flags: b[13],
    window: rd16(b, 14),
    urgent: rd16(b, 18),
    options: parseTcpOptions(b, 20, off),
    payload: b.subarray(off),
  };
}

function parseTcpOptions(b: Uint8Array, start: number, end: number): TcpOptions {
  const o: TcpOptions = {};
  let i = start;
  while (i < end) {
    const kind = b[i];
    if (kind === 0) break; // end of list
    if (kind === 1) {
      i++; // no-op
      continue;
    }
    if (i + 1 >= end) break;
    const len = b[i + 1];
    if (len < 2 || i + len > end) break;
    if (kind === 2 && len === 4) o.mss = rd16(b, i + 2);
    else if (kind === 3 && len === 3) o.windowScale = Math.min(b[i + 2], 14);
    else if (kind === 4 && len === 2) o.sackPermitted = true;
    else if (kind === 8 && len === 10) o.timestamp = { value: rd32(b, i + 2), echo: rd32(b, i + 6) };
    i += len;
  }
  return o;
}

export interface TcpBuild {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
  urgent?: number;
  /** Only mss and windowScale are written. */
  options?: TcpOptions;
  payload?: Uint8Array;
}

export function buildTcp(srcIp: number, dstIp: number, s: TcpBuild): Uint8Array {
  let optLen = 0;
  if (s.options?.mss !== undefined) optLen += 4;
  if (s.options?.windowScale !== undefined) optLen += 4; // NOP + 3 bytes
  const payload = s.payload ?? new Uint8Array(0);
  const hdr = 20 + optLen;
  const b = new Uint8Array(hdr + payload.length);
  wr16(b, 0, s.srcPort);
  wr16(b, 2, s.dstPort);
  wr32(b, 4, s.seq >>> 0);
  wr32(b, 8, s.ack >>> 0);
  b[12] = (hdr / 4) << 4;
  b[13] = s.flags & 0xff;
  wr16(b, 14, s.window);
  wr16(b, 18, s.urgent ?? 0);
  let i = 20;
  if (s.options?.mss !== undefined) {
    b[i] = 2;
    b[i + 1] = 4;
    wr16(b, i + 2, s.options.mss);
    i += 4;
  }
  if (s.options?.windowScale !== undefined) {
    b[i] = 1;
    b[i + 1] = 3;
    b[i + 2] = 3;
    b[i + 3] = s.options.windowScale;
    i += 4;
  }
  b.set(payload, hdr);
  wr16(b, 16, checksumFinish(checksumAdd(pseudoHeaderSum(srcIp, dstIp, IPPROTO_TCP, b.length), b)));
  return b;
}

// ---------------------------------------------------------------------------------------------
// DHCP (RFC 2131, 2132)

export const DHCP_SERVER_PORT = 67;
export const DHCP_CLIENT_PORT = 68;

export const DHCPDISCOVER = 1;
export const DHCPOFFER = 2;
export const DHCPREQUEST = 3;
export const DHCPDECLINE = 4;
export const DHCPACK = 5;
export const DHCPNAK = 6;
export const DHCPRELEASE = 7;
export const DHCPINFORM = 8;

export const DHCP_OPT_SUBNET_MASK = 1;
export const DHCP_OPT_ROUTER = 3;
export const DHCP_OPT_DNS = 6;
export const DHCP_OPT_REQUESTED_IP = 50;
export const DHCP_OPT_LEASE_TIME = 51;
export const DHCP_OPT_MESSAGE_TYPE = 53;
export const DHCP_OPT_SERVER_ID = 54;
export const DHCP_OPT_PARAM_REQUEST = 55;

const DHCP_MAGIC = 0x63825363;
const BOOTP_FIXED = 236;

export interface DhcpMessage {
  /** 1 BOOTREQUEST, 2 BOOTREPLY. */
  op: number;
  xid: number;
  secs: number;
  /** 0x8000 is the broadcast flag. */
  flags: number;
  ciaddr: number;
  yiaddr: number;
  siaddr: number;
  giaddr: number;
  chaddr: Mac;
  /** Every option by code (the last occurrence wins); pad and end are not included. */
  options: Map<number, Uint8Array>;
  messageType?: number;
  requestedIp?: number;
  serverId?: number;
  paramRequestList?: number[];
  subnetMask?: number;
  routers?: number[];
  dnsServers?: number[];
  leaseTime?: number;
}

/** Ethernet (htype 1, hlen 6) messages with the magic cookie and a well-formed option list. */
export function parseDhcp(b: Uint8Array): DhcpMessage | null {
  if (b.length < BOOTP_FIXED + 4) return null;
  const op = b[0];
  if ((op !== 1 && op !== 2) || b[1] !== 1 || b[2] !== 6) return null;
  if (rd32(b, BOOTP_FIXED) !== DHCP_MAGIC) return null;
  const options = new Map<number, Uint8Array>();
  let i = BOOTP_FIXED + 4;
  let ended = false;
  while (i < b.length) {
    const code = b[i];
    if (code === 0) {
      i++;
      continue;
    }
    if (code === 255) {
      ended = true;
      break;
    }
    if (i + 1 >= b.length) return null;
    const len = b[i + 1];
    if (i + 2 + len > b.length) return null;
    options.set(code, b.subarray(i + 2, i + 2 + len));
    i += 2 + len;
  }
  if (!ended) return null;
  const m: DhcpMessage = {
    op,
    xid: rd32(b, 4),
    secs: rd16(b, 8),
    flags: rd16(b, 10),
    ciaddr: rd32(b, 12),
    yiaddr: rd32(b, 16),
    siaddr: rd32(b, 20),
    giaddr: rd32(b, 24),
    chaddr: b.subarray(28, 34),
    options,
  };
  const u8 = (code: number) => {
    const v = options.get(code);
    return v && v.length === 1 ? v[0] : undefined;
  };
  const u32 = (code: number) => {
    const v = options.get(code);
    return v && v.length === 4 ? rd32(v, 0) : undefined;
  };
  const list = (code: number) => {
    const v = options.get(code);
    if (!v || v.length === 0 || v.length % 4 !== 0) return undefined;
    const out: number[] = [];
    for (let j = 0; j < v.length; j += 4) out.push(rd32(v, j));
    return out;
  };
  m.messageType = u8(DHCP_OPT_MESSAGE_TYPE);
  m.requestedIp = u32(DHCP_OPT_REQUESTED_IP);
  m.serverId = u32(DHCP_OPT_SERVER_ID);
  m.subnetMask = u32(DHCP_OPT_SUBNET_MASK);
  m.leaseTime = u32(DHCP_OPT_LEASE_TIME);
  m.routers = list(DHCP_OPT_ROUTER);
  m.dnsServers = list(DHCP_OPT_DNS);
  const prl = options.get(DHCP_OPT_PARAM_REQUEST);
  if (prl) m.paramRequestList = Array.from(prl);
  return m;
}

export interface DhcpBuild {
  op: number;
  xid: number;
  secs?: number;
  flags?: number;
  ciaddr?: number;
  yiaddr?: number;
  siaddr?: number;
  giaddr?: number;
  chaddr: Mac;
  /** Written in this order, each as code, length, value; then the end option. */
  options: [code: number, value: Uint8Array][];
}

/** Padded to the 300 bytes BOOTP clients expect at least. */
export function buildDhcp(m: DhcpBuild): Uint8Array {
  let optLen = 1;
  for (const [, v] of m.options) {
    if (v.length > 255) throw new RangeError("DHCP option longer than 255 bytes");
    optLen += 2 + v.length;
  }
  const b = new Uint8Array(Math.max(300, BOOTP_FIXED + 4 + optLen));
  b[0] = m.op;
  b[1] = 1;
  b[2] = 6;
  wr32(b, 4, m.xid);
  wr16(b, 8, m.secs ?? 0);
  wr16(b, 10, m.flags ?? 0);
  wr32(b, 12, m.ciaddr ?? 0);
  wr32(b, 16, m.yiaddr ?? 0);
  wr32(b, 20, m.siaddr ?? 0);
  wr32(b, 24, m.giaddr ?? 0);
  b.set(m.chaddr.subarray(0, 6), 28);
  wr32(b, BOOTP_FIXED, DHCP_MAGIC);
  let i = BOOTP_FIXED + 4;
  for (const [code, v] of m.options) {
    b[i] = code;
    b[i + 1] = v.length;
    b.set(v, i + 2);
    i += 2 + v.length;
  }
  b[i] = 255;
  return b;
}

/** Option value helpers. */
export function optU8(v: number): Uint8Array {
  return new Uint8Array([v & 255]);
}
export function optU32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  wr32(b, 0, v);
  return b;
}
export function optIps(ips: number[]): Uint8Array {
  const b = new Uint8Array(4 * ips.length);
  ips.forEach((ip, i) => wr32(b, 4 * i, ip));
  return b;
}

// ---------------------------------------------------------------------------------------------
// DNS messages (RFC 1035)

export const DNS_TYPE_A = 1;
export const DNS_TYPE_NS = 2;
export const DNS_TYPE_CNAME = 5;
export const DNS_TYPE_PTR = 12;
export const DNS_TYPE_MX = 15;
export const DNS_TYPE_TXT = 16;
export const DNS_TYPE_AAAA = 28;
export const DNS_TYPE_OPT = 41;
export const DNS_CLASS_IN = 1;

export const DNS_RCODE_NOERROR = 0;
export const DNS_RCODE_FORMERR = 1;
export const DNS_RCODE_SERVFAIL = 2;
export const DNS_RCODE_NXDOMAIN = 3;
export const DNS_RCODE_NOTIMP = 4;
export const DNS_RCODE_REFUSED = 5;

/** Header flag bits (the 16-bit field after the id). */
export const DNS_FLAG_QR = 0x8000;
export const DNS_FLAG_AA = 0x0400;
export const DNS_FLAG_TC = 0x0200;
export const DNS_FLAG_RD = 0x0100;
export const DNS_FLAG_RA = 0x0080;

export interface DnsQuestion {
  /** Presentation form without the final dot; bytes outside 0x21–0x7e, '.' and '\' are \DDD. */
  name: string;
  type: number;
  class: number;
}

export interface DnsRecord {
  name: string;
  type: number;
  class: number;
  ttl: number;
  /** Raw RDATA (names inside it are left compressed as received). */
  data: Uint8Array;
}

export interface DnsMessage {
  id: number;
  /** The whole flags field; opcode = (flags >> 11) & 15, rcode = flags & 15. */
  flags: number;
  questions: DnsQuestion[];
  answers: DnsRecord[];
  authorities: DnsRecord[];
  additionals: DnsRecord[];
}

export function dnsOpcode(m: DnsMessage): number {
  return (m.flags >> 11) & 15;
}
export function dnsRcode(m: DnsMessage): number {
  return m.flags & 15;
}

const MAX_DNS_RECORDS = 256;

/** Reads a possibly compressed name at `off`: [name, offset after it] or null. */
function readDnsName(b: Uint8Array, off: number): [string, number] | null {
  const labels: string[] = [];
  let end = -1;
  let jumps = 0;
  let total = 0;
  let i = off;
  for (;;) {
    if (i >= b.length) return null;
    const len = b[i];
    if ((len & 0xc0) === 0xc0) {
      if (i + 1 >= b.length) return null;
      if (end < 0) end = i + 2;
      const target = ((len & 0x3f) << 8) | b[i + 1];
      if (++jumps > 64 || target >= b.length) return null;
      i = target;
      continue;
    }
    if (len & 0xc0) return null; // extended label types are not supported
    if (len === 0) {
      if (end < 0) end = i + 1;
      break;
    }
    if (i + 1 + len > b.length) return null;
    total += len + 1;
    if (total > 254) return null;
    let s = "";
    for (let j = i + 1; j <= i + len; j++) {
      const c = b[j];
      if (c > 0x20 && c < 0x7f && c !== 0x2e && c !== 0x5c) s += String.fromCharCode(c);
      else s += "\\" + c.toString().padStart(3, "0");
    }
    labels.push(s);
    i += 1 + len;
  }
  return [labels.join("."), end];
}

/** Wire form of a presentation name (see DnsQuestion.name), or null if it is not valid. */
export function encodeDnsName(name: string): Uint8Array | null {
  if (name === "" || name === ".") return new Uint8Array([0]);
  if (name.endsWith(".") && !name.endsWith("\\.")) name = name.slice(0, -1);
  const out: number[] = [];
  let label: number[] = [];
  const flush = () => {
    if (label.length === 0 || label.length > 63) return false;
    out.push(label.length, ...label);
    label = [];
    return true;
  };
  for (let i = 0; i < name.length; i++) {
    const ch = name.charCodeAt(i);
    if (ch === 0x2e) {
      if (!flush()) return null;
    } else if (ch === 0x5c) {
      const d = /^\d{3}/.exec(name.slice(i + 1, i + 4));
      if (d) {
        const v = Number(d[0]);
        if (v > 255) return null;
        label.push(v);
        i += 3;
      } else {
        if (i + 1 >= name.length) return null;
        const c = name.charCodeAt(++i);
        if (c > 255) return null;
        label.push(c);
      }
    } else {
      if (ch > 255) return null;
      label.push(ch);
    }
  }
  if (!flush()) return null;
  out.push(0);
  if (out.length > 255) return null;
  return new Uint8Array(out);
}

/** Checks every count against the records actually present; trailing bytes are ignored. */
export function parseDns(b: Uint8Array): DnsMessage | null {
  if (b.length < 12) return null;
  const counts = [rd16(b, 4), rd16(b, 6), rd16(b, 8), rd16(b, 10)];
  if (counts[0] + counts[1] + counts[2] + counts[3] > MAX_DNS_RECORDS) return null;
  let off = 12;
  const questions: DnsQuestion[] = [];
  for (let q = 0; q < counts[0]; q++) {
    const n = readDnsName(b, off);
    if (!n || n[1] + 4 > b.length) return null;
    questions.push({ name: n[0], type: rd16(b, n[1]), class: rd16(b, n[1] + 2) });
    off = n[1] + 4;
  }
  const sections: DnsRecord[][] = [[], [], []];
  for (let s = 0; s < 3; s++) {
    for (let r = 0; r < counts[s + 1]; r++) {
      const n = readDnsName(b, off);
      if (!n || n[1] + 10 > b.length) return null;
      const p = n[1];
      const rdlen = rd16(b, p + 8);
      if (p + 10 + rdlen > b.length) return null;
      sections[s].push({
        name: n[0],
        type: rd16(b, p),
        class: rd16(b, p + 2),
        ttl: rd32(b, p + 4),
        data: b.subarray(p + 10, p + 10 + rdlen),
      });
      off = p + 10 + rdlen;
    }
  }
  return {
    id: rd16(b, 0),
    flags: rd16(b, 2),
    questions,
    answers: sections[0],
    authorities: sections[1],
    additionals: sections[2],
  };
}

/** Names are written uncompressed. Throws RangeError on a name that cannot be encoded. */
export function buildDns(m: DnsMessage): Uint8Array {
  const parts: Uint8Array[] = [];
  const header = new Uint8Array(12);
  wr16(header, 0, m.id);
  wr16(header, 2, m.flags);
  wr16(header, 4, m.questions.length);
  wr16(header, 6, m.answers.length);
  wr16(header, 8, m.authorities.length);
  wr16(header, 10, m.additionals.length);
  parts.push(header);
  const name = (s: string) => {
    const n = encodeDnsName(s);
    if (!n) throw new RangeError(`invalid DNS name: ${s}`);
    return n;
  };
  for (const q of m.questions) {
    parts.push(name(q.name));
    const t = new Uint8Array(4);
    wr16(t, 0, q.type);
    wr16(t, 2, q.class);
    parts.push(t);
  }
  for (const sec of [m.answers, m.authorities, m.additionals]) {
    for (const r of sec) {
      parts.push(name(r.name));
      const t = new Uint8Array(10);
      wr16(t, 0, r.type);
      wr16(t, 2, r.class);
      wr32(t, 4, r.ttl);
      wr16(t, 8, r.data.length);
      parts.push(t, r.data);
    }
  }
  let len = 0;
  for (const p of parts) len += p.length;
  const out = new Uint8Array(len);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** The 16 bytes of an IPv6 address in textual form (with "::" and embedded IPv4), or null. */
export function parseIp6(s: string): Uint8Array | null {
  let str = s;
  let v4: number | null = null;
  if (str.includes(".")) {
    const cut = str.lastIndexOf(":");
    if (cut < 0) return null;
    v4 = parseIp4(str.slice(cut + 1));
    if (v4 === null) return null;
    str = str.slice(0, cut + 1) + "0:0";
  }
  const dbl = str.indexOf("::");
  if (dbl !== str.lastIndexOf("::")) return null;
  const groups = (h: string) => (h === "" ? [] : h.split(":"));
  const head = dbl >= 0 ? groups(str.slice(0, dbl)) : groups(str);
  const tail = dbl >= 0 ? groups(str.slice(dbl + 2)) : [];
  const n = head.length + tail.length;
  if (dbl >= 0 ? n > 7 : n !== 8) return null;
  const all = [...head, ...new Array<string>(8 - n).fill("0"), ...tail];
  if (all.some((g) => !/^[0-9a-f]{1,4}$/i.test(g))) return null;
  const b = new Uint8Array(16);
  all.forEach((g, i) => wr16(b, 2 * i, parseInt(g, 16)));
  if (v4 !== null) wr32(b, 12, v4);
  return b;
}
