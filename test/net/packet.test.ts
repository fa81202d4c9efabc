import { describe, expect, it } from "vitest";
import {
  ARP_REQUEST,
  BROADCAST_MAC,
  DHCPDISCOVER,
  DHCP_OPT_MESSAGE_TYPE,
  DHCP_OPT_PARAM_REQUEST,
  DHCP_OPT_ROUTER,
  DNS_CLASS_IN,
  DNS_FLAG_RD,
  DNS_TYPE_A,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  ICMP_ECHO_REQUEST,
  IPPROTO_ICMP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  TCP_ACK,
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
  encodeDnsName,
  internetChecksum,
  ip4,
  ip4ToString,
  isFragment,
  macToString,
  optIps,
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
} from "../../host/net/packet";
import { UserNet } from "../../host/net/user";
import { nodeHostSockets } from "../../host/platform/node/host-sockets";
import { SocketBudget } from "../../host/net/budget";
import { DNS, GUEST, GUEST_MAC, GW, Harness, ipFrame, pattern, udpFrame } from "./guest";

const A = ip4(10, 0, 2, 15);
const B = ip4(10, 0, 2, 2);

/** xorshift PRNG so the fuzzing is the same every run. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

describe("addresses and checksums", () => {
  it("formats and parses", () => {
    expect(ip4ToString(ip4(10, 0, 2, 15))).toBe("10.0.2.15");
    expect(parseIp4("255.255.255.0")).toBe(0xffffff00);
    for (const bad of ["1.2.3", "1.2.3.256", "a.b.c.d", "1.2.3.4 ", "01.2.3.4.5"]) expect(parseIp4(bad)).toBeNull();
    expect(macToString(parseMac("52:54:00:AB:cd:0f")!)).toBe("52:54:00:ab:cd:0f");
    expect(parseMac("52:54:00:ab:cd")).toBeNull();
    expect(Array.from(parseIp6("::1")!)).toEqual([...new Array(15).fill(0), 1]);
    expect(Array.from(parseIp6("2001:db8::8:800:200c:417a")!.subarray(0, 4))).toEqual([0x20, 0x01, 0x0d, 0xb8]);
    expect(Array.from(parseIp6("::ffff:1.2.3.4")!.subarray(10))).toEqual([0xff, 0xff, 1, 2, 3, 4]);
    for (const bad of ["1:::2", ":1:2:3:4:5:6:7", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8:9", "g::1", "::1.2.3"]) expect(parseIp6(bad), bad).toBeNull();
  });

  it("computes the RFC 1071 checksum (odd lengths included)", () => {
    // The example from RFC 1071 section 3.
    expect(internetChecksum(new Uint8Array([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]))).toBe(~0xddf2 & 0xffff);
    expect(internetChecksum(new Uint8Array([0x01]))).toBe(~0x0100 & 0xffff);
  });
});

describe("round trips", () => {
  it("Ethernet and ARP", () => {
    const arp = buildArp({ op: ARP_REQUEST, senderMac: GUEST_MAC, senderIp: A, targetMac: ZERO_MAC, targetIp: B });
    const f = buildEthernet(BROADCAST_MAC, GUEST_MAC, ETHERTYPE_ARP, arp);
    const eth = parseEthernet(f)!;
    expect(eth.etherType).toBe(ETHERTYPE_ARP);
    expect(macToString(eth.src)).toBe("52:54:00:12:34:56");
    const p = parseArp(eth.payload)!;
    expect([p.op, p.senderIp, p.targetIp]).toEqual([ARP_REQUEST, A, B]);
  });

  it("IPv4 with padding, fragments flagged", () => {
    const pkt = buildIPv4({ src: A, dst: B, protocol: IPPROTO_UDP, payload: new Uint8Array([1, 2, 3]), ttl: 17, id: 99 });
    const padded = new Uint8Array(46);
    padded.set(pkt);
    const ip = parseIPv4(padded)!;
    expect([ip.src, ip.dst, ip.protocol, ip.ttl, ip.id, ip.dontFragment]).toEqual([A, B, IPPROTO_UDP, 17, 99, true]);
    expect(Array.from(ip.payload)).toEqual([1, 2, 3]);
    expect(isFragment(ip)).toBe(false);
    const frag = buildIPv4({ src: A, dst: B, protocol: IPPROTO_UDP, payload: new Uint8Array(8), dontFragment: false });
    frag[6] = 0x20; // more fragments
    frag[10] = frag[11] = 0;
    const c = internetChecksum(frag, 0, 20);
    frag[10] = c >> 8;
    frag[11] = c & 255;
    expect(isFragment(parseIPv4(frag)!)).toBe(true);
  });

  it("ICMP, UDP and TCP with the pseudo-header", () => {
    const icmp = parseIcmp(buildIcmpEcho(ICMP_ECHO_REQUEST, 7, 8, new Uint8Array([5, 6, 7])))!;
    expect([icmp.type, icmp.id, icmp.seq, Array.from(icmp.data)]).toEqual([ICMP_ECHO_REQUEST, 7, 8, [5, 6, 7]]);
    const udp = parseUdp(buildUdp(A, B, 1234, 53, new Uint8Array([9, 9])), A, B)!;
    expect([udp.srcPort, udp.dstPort, Array.from(udp.payload)]).toEqual([1234, 53, [9, 9]]);
    // The same bytes between other addresses fail the pseudo-header check.
    expect(parseUdp(buildUdp(A, B, 1, 2, new Uint8Array([1])), A, ip4(10, 0, 2, 3))).toBeNull();
    const t = buildTcp(A, B, { srcPort: 1, dstPort: 2, seq: 0xfffffff0, ack: 5, flags: TCP_SYN | TCP_ACK, window: 999, options: { mss: 1460, windowScale: 7 }, payload: new Uint8Array([1, 2, 3]) });
    const seg = parseTcp(t, A, B)!;
    expect(seg).toMatchObject({ srcPort: 1, dstPort: 2, seq: 0xfffffff0, ack: 5, flags: TCP_SYN | TCP_ACK, window: 999, options: { mss: 1460, windowScale: 7 } });
    expect(Array.from(seg.payload)).toEqual([1, 2, 3]);
    expect(parseTcp(t, A, ip4(1, 2, 3, 4))).toBeNull();
  });

  it("reads TCP options leniently: SACK, timestamps, junk after a bad length", () => {
    const t = buildTcp(A, B, { srcPort: 1, dstPort: 2, seq: 0, ack: 0, flags: TCP_SYN, window: 0 });
    const withOpts = new Uint8Array(t.length + 20);
    withOpts.set(t.subarray(0, 20));
    withOpts[12] = (40 / 4) << 4;
    withOpts.set([4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 1, 3, 3, 20, 2, 9, 0, 0], 20); // last: bad length
    const fix = (b: Uint8Array) => {
      b[16] = b[17] = 0;
      const sum = buildTcpChecksum(b);
      b[16] = sum >> 8;
      b[17] = sum & 255;
      return b;
    };
    const seg = parseTcp(fix(withOpts), A, B)!;
    expect(seg.options).toEqual({ sackPermitted: true, timestamp: { value: 1, echo: 2 }, windowScale: 14 });
  });

  it("DHCP", () => {
    const b = buildDhcp({ op: 1, xid: 42, flags: 0x8000, chaddr: GUEST_MAC, options: [[DHCP_OPT_MESSAGE_TYPE, optU8(DHCPDISCOVER)], [DHCP_OPT_PARAM_REQUEST, new Uint8Array([1, 3, 6])], [DHCP_OPT_ROUTER, optIps([B, A])]] });
    expect(b.length).toBe(300);
    const m = parseDhcp(b)!;
    expect([m.op, m.xid, m.flags, m.messageType]).toEqual([1, 42, 0x8000, DHCPDISCOVER]);
    expect(m.paramRequestList).toEqual([1, 3, 6]);
    expect(m.routers).toEqual([B, A]);
  });

  it("DNS with compressed names; escaped bytes survive a round trip", () => {
    const q = buildDns({ id: 5, flags: DNS_FLAG_RD, questions: [{ name: "www.Example.com", type: DNS_TYPE_A, class: DNS_CLASS_IN }], answers: [], authorities: [], additionals: [] });
    // Append an answer whose name is a pointer to the question's name (offset 12).
    const answer = new Uint8Array([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2, 3, 4]);
    const msg = new Uint8Array(q.length + answer.length);
    msg.set(q);
    msg.set(answer, q.length);
    msg[7] = 1; // ancount
    const m = parseDns(msg)!;
    expect(m.questions[0].name).toBe("www.Example.com");
    expect(m.answers[0]).toMatchObject({ name: "www.Example.com", type: DNS_TYPE_A, ttl: 60 });
    expect(Array.from(m.answers[0].data)).toEqual([1, 2, 3, 4]);
    const rt = (name: string) => parseDns(buildDns({ ...m, answers: [], questions: [{ name, type: 1, class: 1 }] }))!.questions[0].name;
    expect(rt("a\\046b\\032c.\\255")).toBe("a\\046b\\032c.\\255");
    expect(rt("a\\.b")).toBe("a\\046b"); // \. is read, \046 is how it is written back
    expect(encodeDnsName("a..b")).toBeNull();
    expect(encodeDnsName("x".repeat(64))).toBeNull();
    expect(encodeDnsName(".")).toEqual(new Uint8Array([0]));
  });
});

function buildTcpChecksum(b: Uint8Array): number {
  // Checksum over the pseudo-header for A -> B plus the segment.
  const pseudo = new Uint8Array(12 + b.length);
  pseudo.set([10, 0, 2, 15, 10, 0, 2, 2, 0, IPPROTO_TCP, b.length >> 8, b.length & 255]);
  pseudo.set(b, 12);
  return internetChecksum(pseudo);
}

describe("malformed input", () => {
  const samples = (): Uint8Array[] => [
    buildEthernet(BROADCAST_MAC, GUEST_MAC, ETHERTYPE_ARP, buildArp({ op: ARP_REQUEST, senderMac: GUEST_MAC, senderIp: A, targetMac: ZERO_MAC, targetIp: B })),
    ipFrame(A, B, IPPROTO_ICMP, buildIcmpEcho(ICMP_ECHO_REQUEST, 1, 1, pattern(32, 1))),
    udpFrame(0, 68, 0xffffffff, 67, buildDhcp({ op: 1, xid: 1, chaddr: GUEST_MAC, options: [[DHCP_OPT_MESSAGE_TYPE, optU8(DHCPDISCOVER)]] }), BROADCAST_MAC),
    udpFrame(A, 4000, DNS, 53, buildDns({ id: 1, flags: DNS_FLAG_RD, questions: [{ name: "localhost", type: DNS_TYPE_A, class: DNS_CLASS_IN }], answers: [], authorities: [], additionals: [] })),
    ipFrame(A, ip4(10, 0, 2, 50), IPPROTO_TCP, buildTcp(A, ip4(10, 0, 2, 50), { srcPort: 4000, dstPort: 80, seq: 1, ack: 0, flags: TCP_SYN, window: 100, options: { mss: 1460, windowScale: 7 } })),
    ipFrame(A, GW, IPPROTO_TCP, buildTcp(A, GW, { srcPort: 4001, dstPort: 1, seq: 1, ack: 1, flags: TCP_ACK, window: 100, payload: pattern(100, 2) })),
  ];

  it("every parser returns null for every truncation, and never throws", () => {
    for (const f of samples()) {
      for (let n = 0; n < f.length; n++) {
        const t = f.subarray(0, n);
        expect(() => {
          parseEthernet(t);
          parseArp(t);
          parseIPv4(t);
          parseIcmp(t);
          parseUdp(t, A, B);
          parseTcp(t, A, B);
          parseDhcp(t);
          parseDns(t);
        }).not.toThrow();
      }
      // Truncating inside the IP packet is always caught by a length or checksum check.
      const eth = parseEthernet(f)!;
      if (eth.etherType === ETHERTYPE_IPV4) {
        const ip = parseIPv4(eth.payload)!;
        for (let n = 0; n < eth.payload.length; n++) {
          const p = parseIPv4(eth.payload.subarray(0, n));
          if (n < 20 + ip.payload.length) expect(p).toBeNull();
        }
      }
    }
  });

  it("rejects bad checksums and bogus lengths", () => {
    const ipPkt = buildIPv4({ src: A, dst: B, protocol: IPPROTO_UDP, payload: buildUdp(A, B, 1, 2, pattern(20, 3)) });
    const flip = (b: Uint8Array, i: number) => {
      const c = b.slice();
      c[i] ^= 0x40;
      return c;
    };
    expect(parseIPv4(flip(ipPkt, 12))).toBeNull(); // header checksum
    expect(parseIPv4(flip(ipPkt, 0))).toBeNull(); // version
    const long = ipPkt.slice();
    long[2] = 0xff; // total length beyond the buffer
    expect(parseIPv4(long)).toBeNull();
    const udp = buildUdp(A, B, 1, 2, pattern(20, 3));
    expect(parseUdp(flip(udp, 10), A, B)).toBeNull(); // payload bit flip
    const ulen = udp.slice();
    ulen[5] = 200; // UDP length beyond the IP payload
    expect(parseUdp(ulen, A, B)).toBeNull();
    ulen[5] = 4; // shorter than the header
    expect(parseUdp(ulen, A, B)).toBeNull();
    const tcp = buildTcp(A, B, { srcPort: 1, dstPort: 2, seq: 3, ack: 4, flags: TCP_ACK, window: 5, payload: pattern(9, 4) });
    expect(parseTcp(flip(tcp, 25), A, B)).toBeNull();
    const off = tcp.slice();
    off[12] = 0xf0; // data offset 60 > segment length
    expect(parseTcp(off, A, B)).toBeNull();
    off[12] = 0x40; // data offset 16 < 20
    expect(parseTcp(off, A, B)).toBeNull();
    expect(parseIcmp(flip(buildIcmpEcho(8, 1, 1, pattern(8, 5)), 9))).toBeNull();
    // DHCP: missing magic cookie, an option running past the end, no end option.
    const d = buildDhcp({ op: 1, xid: 1, chaddr: GUEST_MAC, options: [[DHCP_OPT_MESSAGE_TYPE, optU8(1)]] });
    expect(parseDhcp(flip(d, 236))).toBeNull();
    const over = d.slice(0, 243);
    over[242] = 200;
    expect(parseDhcp(over)).toBeNull();
    expect(parseDhcp(d.slice(0, 243))).toBeNull();
    // DNS: a pointer loop, a pointer past the end, counts larger than the message.
    expect(parseDns(new Uint8Array([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1]))).toBeNull();
    expect(parseDns(new Uint8Array([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 99, 0, 1, 0, 1]))).toBeNull();
    expect(parseDns(new Uint8Array([0, 1, 1, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0]))).toBeNull();
    expect(parseDns(new Uint8Array([0, 1, 1, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0]))).toBeNull();
  });

  it("UserNet drops malformed and fuzzed frames without throwing or answering garbage", async () => {
    const errors: unknown[] = [];
    // No sockets at all: a mutation can never make this test reach the network.
    const un = new UserNet({ hostSockets: nodeHostSockets, onError: (e) => errors.push(e), dns: { servers: [], hostsFile: null }, budget: new SocketBudget(0) });
    const h = new Harness(un);
    try {
      const base = samples();
      // Truncations: never an exception, never an answer.
      for (const f of base) for (let n = 0; n < f.length; n++) h.send(f.subarray(0, n).slice());
      // Random mutations: bytes flipped, lengths changed.
      const r = rng(1234);
      for (let i = 0; i < 4000; i++) {
        const f = base[i % base.length].slice();
        const flips = 1 + Math.floor(r() * 4);
        for (let k = 0; k < flips; k++) f[14 + Math.floor(r() * (f.length - 14))] = Math.floor(r() * 256);
        const cut = r() < 0.3 ? Math.floor(r() * f.length) : f.length;
        h.send(f.subarray(0, cut));
      }
      h.send(new Uint8Array(0));
      h.send(new Uint8Array(100000));
      await new Promise((res) => setTimeout(res, 50));
      expect(errors).toEqual([]);
      const s = un.stats();
      expect(s.malformed).toBeGreaterThan(1000);
      expect(s.tcp.outbound + s.udp.datagramsOut).toBe(0);
      // Whatever was answered must itself be well-formed (full checksums).
      for (const { frame } of h.frames) {
        const eth = parseEthernet(frame)!;
        expect(eth).not.toBeNull();
        if (eth.etherType === ETHERTYPE_IPV4) {
          const ip = parseIPv4(eth.payload)!;
          expect(ip).not.toBeNull();
          expect(ip.dst === GUEST || ip.dst === 0xffffffff || ip.dst >>> 8 === 0x0a0002).toBe(true);
          if (ip.protocol === IPPROTO_TCP) expect(parseTcp(ip.payload, ip.src, ip.dst)).not.toBeNull();
          if (ip.protocol === IPPROTO_UDP) expect(parseUdp(ip.payload, ip.src, ip.dst)).not.toBeNull();
          if (ip.protocol === IPPROTO_ICMP) expect(parseIcmp(ip.payload)).not.toBeNull();
        }
      }
    } finally {
      un.close();
    }
  });
});
