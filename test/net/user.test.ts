import { afterEach, describe, expect, it, vi } from "vitest";
import * as net from "node:net";
import * as dgram from "node:dgram";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  ARP_REPLY,
  ARP_REQUEST,
  BROADCAST_MAC,
  DHCPACK,
  DHCPDISCOVER,
  DHCPNAK,
  DHCPOFFER,
  DHCPREQUEST,
  DHCP_OPT_MESSAGE_TYPE,
  DHCP_OPT_PARAM_REQUEST,
  DHCP_OPT_REQUESTED_IP,
  DHCP_OPT_SERVER_ID,
  DNS_CLASS_IN,
  DNS_FLAG_QR,
  DNS_FLAG_RD,
  DNS_FLAG_TC,
  DNS_RCODE_NOERROR,
  DNS_RCODE_NXDOMAIN,
  DNS_RCODE_REFUSED,
  DNS_RCODE_SERVFAIL,
  DNS_TYPE_A,
  DNS_TYPE_AAAA,
  DNS_TYPE_MX,
  ETHERTYPE_ARP,
  ICMP_ECHO_REPLY,
  ICMP_ECHO_REQUEST,
  IPPROTO_ICMP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  TCP_ACK,
  TCP_RST,
  TCP_SYN,
  ZERO_MAC,
  buildArp,
  buildDhcp,
  buildDns,
  buildEthernet,
  buildIcmpEcho,
  buildTcp,
  dnsRcode,
  ip4,
  ip4ToString,
  macEquals,
  optU32,
  optU8,
  parseArp,
  parseDhcp,
  parseDns,
  parseEthernet,
  parseIcmp,
  parseTcp,
  parseUdp,
  type DnsMessage,
  type TcpSegment,
} from "../../host/net/packet";
import { UserNet } from "../../host/net/user";
import { parseHostFwd, parseUserNetSpec, userNetFixedFds, type UserNetOptions } from "../../host/net/user/options";
import { nodeHostSockets } from "../../host/platform/node/host-sockets";
import { SocketBudget } from "../../host/net/budget";
import { netdevHasOption, parseNetdev } from "../../host/net/netdev";
import { DNS, GUEST, GUEST_MAC, GW, GW_MAC, GuestTcp, Harness, ipFrame, pattern, udpFrame, waitUntil, withTimeout } from "./guest";

// Everything a test opens is closed by afterEach, even when the test fails.
const cleanups: (() => void | Promise<void>)[] = [];
/** Errors UserNet reported through onError: none are expected. */
const reported: unknown[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  expect(reported.splice(0)).toEqual([]);
});

/** A client of a hostfwd port on 127.0.0.1, with how it ended. */
function hostfwdClient(port: number): { closed: boolean; error: string } {
  const client = net.connect(port, "127.0.0.1");
  cleanups.push(() => void client.destroy());
  const seen = { closed: false, error: "" };
  client.on("error", (e: NodeJS.ErrnoException) => (seen.error = e.code ?? "error"));
  client.on("close", () => (seen.closed = true));
  return seen;
}

function makeNet(opts: UserNetOptions = {}): { un: UserNet; h: Harness } {
  const un = new UserNet({ hostSockets: nodeHostSockets, onError: (e) => reported.push(e), ...opts, dns: { hostsFile: null, servers: [], ...opts.dns } });
  cleanups.push(() => un.close());
  const h = new Harness(un);
  return { un, h };
}

/** A TCP server on 127.0.0.1:0; `onConn` gets each accepted socket. */
async function tcpServer(onConn: (s: net.Socket) => void, allowHalfOpen = false): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer({ allowHalfOpen }, onConn);
  const sockets = new Set<net.Socket>();
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return { server, port: (server.address() as net.AddressInfo).port };
}

/** A port nothing listens on (bound then released). */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function collect(s: net.Socket): { data: () => Buffer; ended: Promise<void> } {
  const parts: Buffer[] = [];
  s.on("data", (d: Buffer) => parts.push(d));
  const ended = new Promise<void>((resolve) => s.once("end", resolve));
  return { data: () => Buffer.concat(parts), ended };
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b.buffer, b.byteOffset, b.length)) === 0;
}

/** A UDP socket on 127.0.0.1:0 recording what arrives; `reply` makes it answer each datagram. */
async function udpServer(reply?: (msg: Buffer) => Uint8Array): Promise<{ port: number; received: { msg: Buffer; rinfo: dgram.RemoteInfo }[]; sock: dgram.Socket }> {
  const sock = dgram.createSocket("udp4");
  cleanups.push(() => new Promise<void>((r) => sock.close(() => r())));
  const received: { msg: Buffer; rinfo: dgram.RemoteInfo }[] = [];
  sock.on("message", (msg, rinfo) => {
    received.push({ msg, rinfo });
    if (reply) sock.send(reply(msg), rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => sock.bind(0, "127.0.0.1", () => r()));
  return { port: sock.address().port, received, sock };
}

/** The guest opens a TCP connection from `localPort`; closed by afterEach. */
function guestConnect(h: Harness, remoteIp: number, remotePort: number, localPort: number): GuestTcp {
  const g = new GuestTcp(h, { localPort, remoteIp, remotePort });
  cleanups.push(() => g.close());
  g.connect();
  return g;
}

/** Sends a bare SYN and returns the segment that answers it. */
async function answerToSyn(h: Harness, dst: number, dstPort: number, srcPort: number): Promise<TcpSegment> {
  h.send(ipFrame(GUEST, dst, IPPROTO_TCP, buildTcp(GUEST, dst, { srcPort, dstPort, seq: 1000, ack: 0, flags: TCP_SYN, window: 1000 })));
  const r = await h.next((r) => r.ip?.protocol === IPPROTO_TCP && parseTcp(r.ip.payload, r.ip.src, r.ip.dst)?.dstPort === srcPort, 3000, `the answer to a SYN for port ${dstPort}`);
  return parseTcp(r.ip!.payload, r.ip!.src, r.ip!.dst)!;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------

describe("option strings", () => {
  it("parses QEMU-style hostfwd rules", () => {
    expect(parseUserNetSpec("user")).toEqual({});
    expect(parseUserNetSpec("user,hostfwd=tcp::8080-:80,hostfwd=tcp:127.0.0.1:2222-:22")).toEqual({
      hostfwd: [
        { proto: "tcp", hostPort: 8080, guestPort: 80 },
        { proto: "tcp", hostAddr: "127.0.0.1", hostPort: 2222, guestPort: 22 },
      ],
    });
    expect(parseHostFwd("::5555-10.0.2.16:23")).toEqual({ proto: "tcp", hostPort: 5555, guestAddr: "10.0.2.16", guestPort: 23 });
    expect(parseUserNetSpec("user,id=n0")).toEqual({});
  });

  it("rejects bad ones with a message saying why", () => {
    const bad: [string, RegExp][] = [
      ["user,hostfwd=udp::53-:53", /udp forwarding is not supported/],
      ["user,hostfwd=sctp::1-:1", /unknown protocol 'sctp'/],
      ["user,hostfwd=tcp::8080:80", /missing '-'/],
      ["user,hostfwd=tcp:8080-:80", /host side must be proto:addr:port/],
      ["user,hostfwd=tcp::8080-80", /guest side must be addr:port/],
      ["user,hostfwd=tcp::99999-:80", /host port '99999'/],
      ["user,hostfwd=tcp::80-:0", /guest port '0'/],
      ["user,hostfwd=tcp:localhost:80-:80", /host address 'localhost' is not an IPv4/],
      ["user,hostfwd=tcp::80-192.168.1.1:80", /not a guest address in 10.0.2.0\/24/],
      ["user,hostfwd=tcp::80-10.0.2.2:80", /not a guest address/],
      ["user,tftp=/srv", /unknown option 'tftp' \(supported: hostfwd, restrict, loopback, id\)/],
      ["user,restrict=maybe", /restrict=maybe: use on or off/],
      ["user,restrict=on,restrict=off", /restrict=on and restrict=off contradict/],
      ["user,loopback=on,loopback=22", /loopback=on already allows every port/],
      ["user,loopback=22,loopback=on", /loopback=on already allows every port/],
      ["user,loopback=off,loopback=on", /loopback=on and loopback=off contradict/],
      ["user,loopback=0", /loopback=0: expected on, off or a port 1-65535/],
      ["user,loopback=65536", /loopback=65536: expected/],
      ["user,loopback=yes", /loopback=yes: expected/],
      ["user,loopback=", /loopback=: expected/],
      ["user,restrict=on,loopback=22", /restrict=on lets the guest reach no loopback port/],
      ["user,loopback=on,restrict=yes", /restrict=on lets the guest reach no loopback port/],
      ["user,hostfwd", /needs a value/],
      ["user,,hostfwd=tcp::1-:1", /empty option/],
      ["tap", /expected 'user/],
    ];
    for (const [spec, re] of bad) expect(() => parseUserNetSpec(spec), spec).toThrow(re);
  });

  it("validates rules given to the constructor before listening", () => {
    expect(() => new UserNet({ hostSockets: nodeHostSockets, hostfwd: [{ proto: "tcp", hostPort: 0, guestPort: 0 }] })).toThrow(/guest port/);
    expect(() => new UserNet({ hostSockets: nodeHostSockets, hostfwd: [{ proto: "tcp", hostAddr: "::1", hostPort: 0, guestPort: 80 }] })).toThrow(/host address/);
    expect(() => new UserNet({ hostSockets: nodeHostSockets, mac: "01:00:5e:00:00:01" })).toThrow(/MAC/);
    expect(() => new UserNet({ hostSockets: nodeHostSockets, loopback: [80, 0] })).toThrow(/loopback port 0/);
  });

  it("parses restrict= and loopback=, combining repeated loopback options", () => {
    expect(parseUserNetSpec("user,restrict=on")).toEqual({ restrict: true });
    expect(parseUserNetSpec("user,restrict=yes")).toEqual({ restrict: true });
    expect(parseUserNetSpec("user,restrict=no,restrict=off")).toEqual({ restrict: false });
    expect(parseUserNetSpec("user,loopback=on,loopback=on")).toEqual({ loopback: "all" });
    expect(parseUserNetSpec("user,loopback=off")).toEqual({ loopback: "none" });
    expect(parseUserNetSpec("user,loopback=8080")).toEqual({ loopback: [8080] });
    // A default "off" appended after (or written before) the user's ports leaves just those.
    expect(parseUserNetSpec("user,loopback=8080,loopback=53,loopback=8080,loopback=off")).toEqual({ loopback: [53, 8080] });
    expect(parseUserNetSpec("user,loopback=off,loopback=53")).toEqual({ loopback: [53] });
    expect(parseUserNetSpec("user,hostfwd=tcp::2222-:22,restrict=on,loopback=off")).toEqual({
      hostfwd: [{ proto: "tcp", hostPort: 2222, guestPort: 22 }],
      restrict: true,
      loopback: "none",
    });
  });

  it("tells whether a netdev names an option, so a default is appended only when it does not", () => {
    const withDefault = (spec: string) => (netdevHasOption(spec, "loopback") ? spec : `${spec},loopback=off`);
    expect(netdevHasOption("user,hostfwd=tcp::1-:1,loopback=22", "loopback")).toBe(true);
    expect(netdevHasOption("user,hostfwd=tcp::1-:1", "loopback")).toBe(false);
    expect(netdevHasOption("user", "loopback")).toBe(false);
    expect(netdevHasOption("user,loopbackish=1", "loopback")).toBe(false);
    expect(parseNetdev(withDefault("user,loopback=8080"))).toEqual({ kind: "user", options: { loopback: [8080] } });
    expect(parseNetdev(withDefault("user,restrict=on"))).toEqual({ kind: "user", options: { restrict: true, loopback: "none" } });
    expect(parseNetdev(withDefault("user,loopback=on"))).toEqual({ kind: "user", options: { loopback: "all" } });
  });

  it("counts the descriptors a user NIC holds outside the socket budget", () => {
    const fwd = parseUserNetSpec("user,hostfwd=tcp::1-:1,hostfwd=tcp::2-:2");
    expect(userNetFixedFds({})).toBe(2); // the DNS forwarder's IPv4 and IPv6 sockets
    expect(userNetFixedFds(fwd)).toBe(4);
    expect(userNetFixedFds({ ...fwd, restrict: true })).toBe(2); // a restricted NIC forwards no DNS
  });
});

describe("ARP", () => {
  it("answers for 10.0.2.2 and 10.0.2.3, not for the guest's own address", async () => {
    const { un, h } = makeNet();
    const ask = (target: number) =>
      h.send(
        buildEthernet(
          BROADCAST_MAC,
          GUEST_MAC,
          ETHERTYPE_ARP,
          buildArp({ op: ARP_REQUEST, senderMac: GUEST_MAC, senderIp: GUEST, targetMac: ZERO_MAC, targetIp: target }),
        ),
      );
    for (const target of [GW, DNS]) {
      ask(target);
      const r = await h.next((r) => parseEthernet(r.frame)?.etherType === ETHERTYPE_ARP);
      const eth = parseEthernet(r.frame)!;
      expect(macEquals(eth.dst, GUEST_MAC)).toBe(true);
      expect(macEquals(eth.src, GW_MAC)).toBe(true);
      const arp = parseArp(eth.payload)!;
      expect(arp.op).toBe(ARP_REPLY);
      expect(arp.senderIp).toBe(target);
      expect(macEquals(arp.senderMac, GW_MAC)).toBe(true);
      expect(arp.targetIp).toBe(GUEST);
      expect(macEquals(arp.targetMac, GUEST_MAC)).toBe(true);
    }
    ask(GUEST); // duplicate address detection must see no answer
    ask(ip4(10, 0, 2, 99));
    await new Promise((r) => setTimeout(r, 30));
    expect(h.frames).toHaveLength(0);
    expect(un.stats().arpReplies).toBe(2);
  });

  it("calls onWake after delivering, never from inside send()", async () => {
    let wakes = 0;
    let inSend = false;
    let wokeInSend = false;
    const { h } = makeNet({
      onWake: () => {
        wakes++;
        if (inSend) wokeInSend = true;
      },
    });
    inSend = true;
    h.send(buildEthernet(BROADCAST_MAC, GUEST_MAC, ETHERTYPE_ARP, buildArp({ op: ARP_REQUEST, senderMac: GUEST_MAC, senderIp: GUEST, targetMac: ZERO_MAC, targetIp: GW })));
    inSend = false;
    expect(h.inbox).toHaveLength(0);
    await h.next(() => true);
    expect(wakes).toBe(1);
    expect(wokeInSend).toBe(false);
  });
});

describe("DHCP", () => {
  const xid = 0x12345678;
  const dhcp = (type: number, extra: [number, Uint8Array][] = []) =>
    udpFrame(
      0,
      68,
      0xffffffff,
      67,
      buildDhcp({
        op: 1,
        xid,
        chaddr: GUEST_MAC,
        options: [[DHCP_OPT_MESSAGE_TYPE, optU8(type)], [DHCP_OPT_PARAM_REQUEST, new Uint8Array([1, 3, 6, 12, 15, 28, 42])], ...extra],
      }),
      BROADCAST_MAC,
    );
  const reply = async (h: Harness) => {
    const r = await h.next((r) => r.ip?.protocol === IPPROTO_UDP);
    expect(r.ip!.src).toBe(GW);
    const udp = parseUdp(r.ip!.payload, r.ip!.src, r.ip!.dst)!;
    expect([udp.srcPort, udp.dstPort]).toEqual([67, 68]);
    expect(macEquals(parseEthernet(r.frame)!.dst, GUEST_MAC)).toBe(true);
    return parseDhcp(udp.payload)!;
  };

  it("offers 10.0.2.15 with router, DNS, netmask and lease, then acknowledges the request", async () => {
    const { un, h } = makeNet();
    h.send(dhcp(DHCPDISCOVER));
    const offer = await reply(h);
    expect(offer.op).toBe(2);
    expect(offer.xid).toBe(xid);
    expect(offer.messageType).toBe(DHCPOFFER);
    expect(ip4ToString(offer.yiaddr)).toBe("10.0.2.15");
    expect(macEquals(offer.chaddr, GUEST_MAC)).toBe(true);
    expect(offer.serverId).toBe(GW);
    expect(ip4ToString(offer.subnetMask!)).toBe("255.255.255.0");
    expect(offer.routers).toEqual([GW]);
    expect(offer.dnsServers).toEqual([DNS]);
    expect(offer.leaseTime).toBeGreaterThan(0);

    h.send(dhcp(DHCPREQUEST, [[DHCP_OPT_REQUESTED_IP, optU32(offer.yiaddr)], [DHCP_OPT_SERVER_ID, optU32(GW)]]));
    const ack = await reply(h);
    expect(ack.messageType).toBe(DHCPACK);
    expect(ack.yiaddr).toBe(GUEST);
    expect(ack.routers).toEqual([GW]);
    expect(ack.dnsServers).toEqual([DNS]);
    expect(ack.subnetMask).toBe(ip4(255, 255, 255, 0));
    expect(ack.leaseTime).toBe(offer.leaseTime);
    expect(un.stats().dhcp).toEqual({ offers: 1, acks: 1, naks: 0 });
  });

  it("refuses a request for another address and ignores one for another server", async () => {
    const { un, h } = makeNet();
    h.send(dhcp(DHCPREQUEST, [[DHCP_OPT_REQUESTED_IP, optU32(ip4(10, 0, 2, 77))]]));
    const r = await h.next((r) => r.ip?.protocol === IPPROTO_UDP);
    const nak = parseDhcp(parseUdp(r.ip!.payload, r.ip!.src, r.ip!.dst)!.payload)!;
    expect(nak.messageType).toBe(DHCPNAK);
    expect(nak.yiaddr).toBe(0);
    h.send(dhcp(DHCPREQUEST, [[DHCP_OPT_REQUESTED_IP, optU32(GUEST)], [DHCP_OPT_SERVER_ID, optU32(ip4(10, 0, 2, 9))]]));
    await new Promise((r) => setTimeout(r, 30));
    expect(h.frames).toHaveLength(0);
    expect(un.stats().dhcp.naks).toBe(1);
  });
});

describe("ICMP", () => {
  it("answers pings to 10.0.2.2 and 10.0.2.3 with the same id, sequence and payload", async () => {
    const { h } = makeNet();
    const payload = pattern(56, 7);
    for (const [dst, seq] of [[GW, 1], [DNS, 2]]) {
      h.send(ipFrame(GUEST, dst, IPPROTO_ICMP, buildIcmpEcho(ICMP_ECHO_REQUEST, 0x4242, seq, payload)));
      const r = await h.next((r) => r.ip?.protocol === IPPROTO_ICMP);
      expect(r.ip!.src).toBe(dst);
      expect(r.ip!.dst).toBe(GUEST);
      const icmp = parseIcmp(r.ip!.payload)!;
      expect(icmp.type).toBe(ICMP_ECHO_REPLY);
      expect(icmp.id).toBe(0x4242);
      expect(icmp.seq).toBe(seq);
      expect(equalBytes(icmp.data, payload)).toBe(true);
    }
  });
});

describe("DNS", () => {
  const query = (id: number, name: string, type: number, rd = true): Uint8Array =>
    buildDns({ id, flags: rd ? DNS_FLAG_RD : 0, questions: [{ name, type, class: DNS_CLASS_IN }], answers: [], authorities: [], additionals: [] });
  const ask = async (h: Harness, id: number, name: string, type: number, sport = 40000): Promise<DnsMessage> => {
    h.send(udpFrame(GUEST, sport, DNS, 53, query(id, name, type)));
    const r = await h.next((r) => r.ip?.protocol === IPPROTO_UDP, 3000, `DNS answer for ${name}`);
    expect(r.ip!.src).toBe(DNS);
    const udp = parseUdp(r.ip!.payload, r.ip!.src, r.ip!.dst)!;
    expect(udp.srcPort).toBe(53);
    expect(udp.dstPort).toBe(sport);
    return parseDns(udp.payload)!;
  };

  it("answers localhost offline with the default configuration", async () => {
    // Defaults: /etc/hosts and the host's resolv.conf servers. localhost never leaves.
    const un = new UserNet({ hostSockets: nodeHostSockets });
    cleanups.push(() => un.close());
    const h = new Harness(un);
    const a = await ask(h, 0x1111, "localhost", DNS_TYPE_A);
    expect(a.id).toBe(0x1111);
    expect(a.flags & DNS_FLAG_QR).toBeTruthy();
    expect(dnsRcode(a)).toBe(DNS_RCODE_NOERROR);
    expect(a.questions).toEqual([{ name: "localhost", type: DNS_TYPE_A, class: DNS_CLASS_IN }]);
    expect(a.answers).toHaveLength(1);
    expect(a.answers[0].type).toBe(DNS_TYPE_A);
    expect(Array.from(a.answers[0].data)).toEqual([127, 0, 0, 1]);
    const aaaa = await ask(h, 0x2222, "LocalHost", DNS_TYPE_AAAA);
    expect(aaaa.answers[0].name).toBe("LocalHost");
    expect(Array.from(aaaa.answers[0].data)).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    expect(un.stats().dns).toMatchObject({ queries: 2, local: 2, forwarded: 0 });
  });

  it("answers from a hosts file and says NXDOMAIN for .invalid", async () => {
    const dir = mkdtempSync(join(tmpdir(), "usernet-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, "hosts"), "# comment\n127.0.0.1 localhost\n10.9.8.7 build-box build # trailing\n::1 ip6-localhost\nbogus line\n");
    const { h } = makeNet({ dns: { hostsFile: join(dir, "hosts") } });
    const a = await ask(h, 1, "Build", DNS_TYPE_A);
    expect(Array.from(a.answers[0].data)).toEqual([10, 9, 8, 7]);
    const none = await ask(h, 2, "build-box", DNS_TYPE_AAAA);
    expect(dnsRcode(none)).toBe(DNS_RCODE_NOERROR);
    expect(none.answers).toHaveLength(0);
    const inv = await ask(h, 3, "nothing.invalid", DNS_TYPE_A);
    expect(dnsRcode(inv)).toBe(DNS_RCODE_NXDOMAIN);
  });

  it("forwards other queries raw to the upstream server and restores the id", async () => {
    const upstream = dgram.createSocket("udp4");
    cleanups.push(() => new Promise<void>((r) => upstream.close(() => r())));
    const seen: DnsMessage[] = [];
    upstream.on("message", (msg, rinfo) => {
      const q = parseDns(msg)!;
      seen.push(q);
      const big = q.questions[0].name === "big.test";
      const answer = buildDns({
        id: q.id,
        flags: DNS_FLAG_QR | DNS_FLAG_RD | 0x80,
        questions: q.questions,
        answers: Array.from({ length: big ? 40 : 1 }, (_, i) => ({
          name: q.questions[0].name,
          type: DNS_TYPE_MX,
          class: DNS_CLASS_IN,
          ttl: 300,
          data: new Uint8Array([0, 10, 30, ...pattern(30, i + 1).map((b) => 97 + (b % 26)), 0]),
        })),
        authorities: [],
        additionals: [],
      });
      upstream.send(answer, rinfo.port, rinfo.address);
    });
    await new Promise<void>((r) => upstream.bind(0, "127.0.0.1", () => r()));
    const port = upstream.address().port;
    const { un, h } = makeNet({ dns: { servers: [`127.0.0.1:${port}`] } });
    const r = await ask(h, 0xbeef, "example.test", DNS_TYPE_MX, 41000);
    expect(r.id).toBe(0xbeef);
    expect(r.answers[0].type).toBe(DNS_TYPE_MX);
    expect(r.answers[0].ttl).toBe(300);
    expect(seen).toHaveLength(1);
    expect(seen[0].questions[0].name).toBe("example.test");
    // An answer too big for one datagram to the guest comes back truncated (TC): retry on TCP.
    const big = await ask(h, 0x1234, "big.test", DNS_TYPE_MX, 41001);
    expect(big.id).toBe(0x1234);
    expect(big.flags & DNS_FLAG_TC).toBeTruthy();
    expect(big.answers).toHaveLength(0);
    expect(un.stats().dns.forwarded).toBe(2);
  });

  it("answers SERVFAIL when the upstream server does not answer", async () => {
    const silent = dgram.createSocket("udp4");
    cleanups.push(() => new Promise<void>((r) => silent.close(() => r())));
    await new Promise<void>((r) => silent.bind(0, "127.0.0.1", () => r()));
    const { un, h } = makeNet({ dns: { servers: [`127.0.0.1:${silent.address().port}`], timeoutMs: 50 } });
    const r = await ask(h, 7, "slow.test", DNS_TYPE_A);
    expect(dnsRcode(r)).toBe(DNS_RCODE_SERVFAIL);
    expect(un.stats().dns.failed).toBe(1);
  });

  it("can answer A/AAAA through a lookup function", async () => {
    const asked: string[] = [];
    const { h } = makeNet({
      dns: {
        lookup: async (name, family) => {
          asked.push(`${name}/${family}`);
          if (name === "gone.test") throw Object.assign(new Error("nope"), { code: "ENOTFOUND" });
          return family === 4 ? ["192.0.2.1", "192.0.2.2"] : ["2001:db8::1"];
        },
      },
    });
    const a = await ask(h, 1, "svc.test", DNS_TYPE_A);
    expect(a.answers.map((x) => Array.from(x.data).join("."))).toEqual(["192.0.2.1", "192.0.2.2"]);
    const aaaa = await ask(h, 2, "svc.test", DNS_TYPE_AAAA);
    expect(aaaa.answers[0].data[0]).toBe(0x20);
    const gone = await ask(h, 3, "gone.test", DNS_TYPE_A);
    expect(dnsRcode(gone)).toBe(DNS_RCODE_NXDOMAIN);
    const local = await ask(h, 4, "localhost", DNS_TYPE_A);
    expect(Array.from(local.answers[0].data)).toEqual([127, 0, 0, 1]);
    expect(asked).toEqual(["svc.test/4", "svc.test/6", "gone.test/4"]);
  });

  it("drops malformed queries quietly", async () => {
    const { un, h } = makeNet();
    h.send(udpFrame(GUEST, 40000, DNS, 53, new Uint8Array([1, 2, 3])));
    h.send(udpFrame(GUEST, 40000, DNS, 53, new Uint8Array([0, 1, 0x81, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1])));
    await new Promise((r) => setTimeout(r, 30));
    expect(h.frames).toHaveLength(0);
    expect(un.stats().malformed).toBe(2);
  });
});

describe("UDP", () => {
  it("relays datagrams to a host service on 127.0.0.1 via 10.0.2.2 and the replies back", async () => {
    const server = dgram.createSocket("udp4");
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    server.on("message", (msg, rinfo) => server.send(Buffer.concat([Buffer.from("echo:"), msg]), rinfo.port, rinfo.address));
    await new Promise<void>((r) => server.bind(0, "127.0.0.1", () => r()));
    const port = server.address().port;
    const { un, h } = makeNet();
    for (let i = 0; i < 3; i++) {
      h.send(udpFrame(GUEST, 5000, GW, port, new TextEncoder().encode(`hello ${i}`)));
      const r = await h.next((r) => r.ip?.protocol === IPPROTO_UDP, 2000, "the echo");
      expect(r.ip!.src).toBe(GW);
      expect(r.ip!.dst).toBe(GUEST);
      const udp = parseUdp(r.ip!.payload, r.ip!.src, r.ip!.dst)!;
      expect(udp.srcPort).toBe(port);
      expect(udp.dstPort).toBe(5000);
      expect(new TextDecoder().decode(udp.payload)).toBe(`echo:hello ${i}`);
    }
    expect(un.stats().udp).toEqual({ bindings: 1, datagramsOut: 3, datagramsIn: 3 });
  });

  it("drops replies that would not fit the MTU unfragmented", async () => {
    const server = dgram.createSocket("udp4");
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    server.on("message", (msg, rinfo) => server.send(new Uint8Array(msg[0] === 1 ? 1472 : 1473), rinfo.port, rinfo.address));
    await new Promise<void>((r) => server.bind(0, "127.0.0.1", () => r()));
    const { un, h } = makeNet();
    h.send(udpFrame(GUEST, 5003, GW, server.address().port, new Uint8Array([1])));
    const r = await h.next((r) => r.ip?.protocol === IPPROTO_UDP, 2000, "the 1472-byte reply");
    expect(r.ip!.payload.length).toBe(1480);
    h.send(udpFrame(GUEST, 5003, GW, server.address().port, new Uint8Array([2])));
    await waitUntil(() => un.stats().undelivered === 1, 2000, "the oversized reply to be dropped");
    expect(h.frames).toHaveLength(0);
  });

  it("drops replies from addresses the guest never sent to", async () => {
    const server = dgram.createSocket("udp4");
    const stranger = dgram.createSocket("udp4");
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    cleanups.push(() => new Promise<void>((r) => stranger.close(() => r())));
    let guestAddr: dgram.RemoteInfo | null = null;
    server.on("message", (_m, rinfo) => (guestAddr = rinfo));
    await new Promise<void>((r) => server.bind(0, "127.0.0.1", () => r()));
    await new Promise<void>((r) => stranger.bind(0, "127.0.0.1", () => r()));
    const { un, h } = makeNet();
    h.send(udpFrame(GUEST, 5001, GW, server.address().port, new Uint8Array([1])));
    await waitUntil(() => guestAddr !== null, 2000, "the datagram");
    stranger.send(new Uint8Array([9]), guestAddr!.port, "127.0.0.1");
    await waitUntil(() => un.stats().ignored > 0, 2000, "the stranger's datagram");
    expect(h.frames).toHaveLength(0);
  });
});

// ---------------------------------------------------------------------------------------------

describe("TCP from the guest", () => {
  const MiB = 1024 * 1024;

  it("carries 1 MiB each way through a host server, with FIN from the guest first", async () => {
    const up = pattern(MiB, 1);
    const down = pattern(MiB, 2);
    let hostGot: Buffer | null = null;
    let peer = "";
    const { port } = await tcpServer((s) => {
      peer = s.remoteAddress ?? "";
      const c = collect(s);
      s.write(down);
      c.ended.then(() => {
        hostGot = c.data();
        s.end();
      });
    }, true);
    const { un, h } = makeNet();
    const g = new GuestTcp(h, { localPort: 40001, remoteIp: GW, remotePort: port, rcvBuf: 64 * 1024 });
    cleanups.push(() => g.close());
    g.connect();
    await waitUntil(() => g.state === "established", 3000, "the handshake");
    expect(un.stats().tcp.active).toBe(1);
    expect(g.peerMss).toBe(1460);
    expect(g.peerShift).toBe(7);
    g.write(up);
    g.end();
    await waitUntil(() => g.finRcvd && hostGot !== null, 15000, "both transfers");
    expect(peer).toBe("127.0.0.1");
    expect(hostGot!.length).toBe(MiB);
    expect(equalBytes(hostGot!, up)).toBe(true);
    expect(g.receivedLen).toBe(MiB);
    expect(equalBytes(g.data(), down)).toBe(true);
    await waitUntil(() => g.sndUna === g.sndNxt, 2000, "our FIN acknowledged");
    await waitUntil(() => un.stats().tcp.active === 0, 5000, "the connection to be forgotten");
  }, 30000);

  it("retransmits segments the guest lost and keeps every byte", async () => {
    const down = pattern(256 * 1024, 3);
    const { port } = await tcpServer((s) => s.end(down));
    const { un, h } = makeNet();
    // Drop about one data segment in 25, and a burst early on.
    const g = new GuestTcp(h, { localPort: 40002, remoteIp: GW, remotePort: port, drop: (n) => n % 25 === 0 || (n >= 5 && n <= 8) });
    cleanups.push(() => g.close());
    g.connect();
    await waitUntil(() => g.finRcvd, 20000, "the download");
    expect(g.dropped).toBeGreaterThan(10);
    expect(equalBytes(g.data(), down)).toBe(true);
    expect(un.stats().tcp.retransmits).toBeGreaterThan(0);
    g.end();
    await waitUntil(() => un.stats().tcp.active === 0, 5000, "the close");
  }, 30000);

  it("works without window scaling and with a small MSS", async () => {
    const up = pattern(200 * 1024, 4);
    let got: Buffer | null = null;
    const { port } = await tcpServer((s) => {
      const c = collect(s);
      c.ended.then(() => {
        got = c.data();
        s.end("bye");
      });
    }, true);
    const { h } = makeNet();
    const g = new GuestTcp(h, { localPort: 40003, remoteIp: GW, remotePort: port, wscale: null, mss: 536, rcvBuf: 8192 });
    cleanups.push(() => g.close());
    g.connect();
    await waitUntil(() => g.state === "established", 3000, "the handshake");
    expect(g.peerShift).toBe(0);
    expect(g.peerMss).toBe(536);
    g.write(up);
    g.end();
    await waitUntil(() => got !== null && g.finRcvd, 15000, "the transfer");
    expect(equalBytes(got!, up)).toBe(true);
    expect(new TextDecoder().decode(g.data())).toBe("bye");
  }, 30000);

  it("closes from the host side first", async () => {
    const { port } = await tcpServer((s) => {
      s.end("server says goodbye");
    }, true);
    const { un, h } = makeNet();
    const g = new GuestTcp(h, { localPort: 40004, remoteIp: GW, remotePort: port });
    cleanups.push(() => g.close());
    g.connect();
    await waitUntil(() => g.finRcvd, 3000, "the host's FIN");
    expect(new TextDecoder().decode(g.data())).toBe("server says goodbye");
    expect(un.stats().tcp.active).toBe(1); // half-closed: the guest may still send
    g.write(new TextEncoder().encode("late data"));
    g.end();
    await waitUntil(() => un.stats().tcp.active === 0, 5000, "the close");
    // UserNet closed first, so it lingers and acknowledges a retransmitted FIN again.
    expect(un.stats().tcp.closing).toBe(1);
    const before = g.segmentsIn;
    g.resendFin();
    await waitUntil(() => g.segmentsIn > before, 2000, "the ACK of the repeated FIN");
    expect(g.state).toBe("established");
  });

  it("lets the guest send after the host half-closed", async () => {
    let got: Buffer | null = null;
    const { port } = await tcpServer((s) => {
      const c = collect(s);
      s.end();
      c.ended.then(() => (got = c.data()));
    }, true);
    const { h } = makeNet();
    const g = new GuestTcp(h, { localPort: 40005, remoteIp: GW, remotePort: port });
    cleanups.push(() => g.close());
    g.connect();
    await waitUntil(() => g.finRcvd, 3000, "the host's FIN");
    g.write(pattern(100000, 5));
    g.end();
    await waitUntil(() => got !== null, 5000, "the data");
    expect(equalBytes(got!, pattern(100000, 5))).toBe(true);
  });

  it("resets a connection the host refuses", async () => {
    const port = await closedPort();
    const { un, h } = makeNet();
    const g = new GuestTcp(h, { localPort: 40006, remoteIp: GW, remotePort: port });
    cleanups.push(() => g.close());
    g.connect();
    await waitUntil(() => g.state === "reset", 3000, "the RST");
    expect(un.stats().tcp).toMatchObject({ refused: 1, active: 0 });
  });

  it("resets connections to virtual addresses with nothing behind them", async () => {
    const { un, h } = makeNet();
    for (const [dst, port] of [[DNS, 80], [ip4(10, 0, 2, 50), 22]]) {
      h.send(ipFrame(GUEST, dst, IPPROTO_TCP, buildTcp(GUEST, dst, { srcPort: 40100, dstPort: port, seq: 1000, ack: 0, flags: TCP_SYN, window: 1000 })));
      const r = await h.next((r) => r.ip?.protocol === IPPROTO_TCP);
      const seg = parseTcp(r.ip!.payload, r.ip!.src, r.ip!.dst)!;
      expect(seg.flags & TCP_RST).toBeTruthy();
      expect(seg.ack).toBe(1001);
    }
    // A stray ACK for no connection gets a reset with its ack as sequence number.
    h.send(ipFrame(GUEST, GW, IPPROTO_TCP, buildTcp(GUEST, GW, { srcPort: 40101, dstPort: 9, seq: 5, ack: 777, flags: TCP_ACK, window: 1000 })));
    const r = await h.next((r) => r.ip?.protocol === IPPROTO_TCP);
    const seg = parseTcp(r.ip!.payload, r.ip!.src, r.ip!.dst)!;
    expect(seg.flags).toBe(TCP_RST);
    expect(seg.seq).toBe(777);
    expect(un.stats().tcp.active).toBe(0);
  });

  it("passes a reset from the guest to the host socket", async () => {
    let closed = false;
    let errored = "";
    const { port } = await tcpServer((s) => {
      s.on("error", (e: NodeJS.ErrnoException) => (errored = e.code ?? "error"));
      s.on("close", () => (closed = true));
    });
    const { un, h } = makeNet();
    const g = new GuestTcp(h, { localPort: 40007, remoteIp: GW, remotePort: port });
    cleanups.push(() => g.close());
    g.connect();
    await waitUntil(() => g.state === "established", 3000, "the handshake");
    g.rst();
    await waitUntil(() => closed, 3000, "the host socket to close");
    expect(errored).toBe("ECONNRESET");
    expect(un.stats().tcp.active).toBe(0);
  });

  it("passes a reset from the host to the guest", async () => {
    const { port } = await tcpServer((s) => {
      s.once("data", () => s.resetAndDestroy());
    });
    const { h } = makeNet();
    const g = new GuestTcp(h, { localPort: 40008, remoteIp: GW, remotePort: port });
    cleanups.push(() => g.close());
    g.connect();
    await waitUntil(() => g.state === "established", 3000, "the handshake");
    g.write(new Uint8Array([1, 2, 3]));
    await waitUntil(() => g.state === "reset", 3000, "the RST");
  });

  it("pauses the host socket while the guest's window is closed, then delivers everything", async () => {
    const down = pattern(4 * MiB, 6);
    let serverDone = false;
    const { port } = await tcpServer((s) => {
      s.end(down, () => (serverDone = true));
    });
    const { un, h } = makeNet();
    const g = new GuestTcp(h, { localPort: 40009, remoteIp: GW, remotePort: port, rcvBuf: 32 * 1024, autoRead: false });
    cleanups.push(() => g.close());
    g.connect();
    await waitUntil(() => un.stats().tcp.hostPaused === 1, 5000, "the host socket to pause");
    await waitUntil(() => g.window() < 128, 3000, "the guest's window to fill");
    // One window (less what rounding to the 128-byte scale unit leaves), then nothing.
    const first = g.receivedLen;
    expect(first).toBeGreaterThan(32 * 1024 - 128);
    expect(first).toBeLessThanOrEqual(32 * 1024);
    await new Promise((r) => setTimeout(r, 100));
    expect(g.receivedLen).toBe(first);
    // The application reads slowly, then all at once.
    for (let i = 0; i < 5; i++) {
      g.read(8192);
      await new Promise((r) => setTimeout(r, 10));
    }
    const slow = setInterval(() => g.read(), 1);
    cleanups.push(() => clearInterval(slow));
    await waitUntil(() => g.finRcvd, 20000, "the whole download");
    expect(equalBytes(g.data(), down)).toBe(true);
    expect(serverDone).toBe(true);
    expect(un.stats().tcp.hostPaused).toBe(0);
  }, 30000);

  it("probes a zero window when the guest's window update is lost", async () => {
    const down = pattern(200 * 1024, 11);
    const { port } = await tcpServer((s) => s.end(down));
    const { h } = makeNet();
    const g = new GuestTcp(h, { localPort: 40012, remoteIp: GW, remotePort: port, rcvBuf: 16 * 1024, autoRead: false });
    cleanups.push(() => g.close());
    g.connect();
    await waitUntil(() => g.window() < 128, 3000, "the guest's window to fill");
    const first = g.receivedLen;
    g.read(undefined, false); // the window opens but the guest says nothing
    await waitUntil(() => g.receivedLen > first, 3000, "a probe to find the open window");
    expect(g.probesIn).toBeGreaterThan(0);
    const reader = setInterval(() => g.read(), 1);
    cleanups.push(() => clearInterval(reader));
    await waitUntil(() => g.finRcvd, 10000, "the rest");
    expect(equalBytes(g.data(), down)).toBe(true);
  }, 20000);

  it("carries DNS over TCP from 10.0.2.3:53 to the upstream server", async () => {
    let got = "";
    const { port } = await tcpServer((s) => {
      s.on("data", (d) => {
        got += d.toString();
        s.end("answer");
      });
    });
    const { h } = makeNet({ dns: { servers: [`127.0.0.1:${port}`] } });
    const g = new GuestTcp(h, { localPort: 40013, remoteIp: DNS, remotePort: 53 });
    cleanups.push(() => g.close());
    g.connect();
    await waitUntil(() => g.state === "established", 3000, "the handshake");
    g.write(new TextEncoder().encode("query"));
    await waitUntil(() => g.finRcvd, 3000, "the answer");
    expect(got).toBe("query");
    expect(new TextDecoder().decode(g.data())).toBe("answer");
  });

  it("shrinks its window when the host application does not read", async () => {
    const big = pattern(24 * MiB, 8);
    let server: net.Socket | null = null;
    let got = 0;
    let ok = true;
    const { port } = await tcpServer((s) => {
      server = s;
      s.pause();
      s.on("data", (d: Buffer) => {
        if (ok && !equalBytes(d, big.subarray(got, got + d.length))) ok = false;
        got += d.length;
      });
    });
    const { h } = makeNet();
    const g = new GuestTcp(h, { localPort: 40010, remoteIp: GW, remotePort: port });
    cleanups.push(() => g.close());
    g.connect();
    await waitUntil(() => g.state === "established", 3000, "the handshake");
    const initial = g.peerWnd;
    g.write(big);
    // The kernel's socket buffers fill first; then UserNet's window closes.
    await waitUntil(() => g.peerWnd === 0, 20000, "a zero window");
    expect(initial).toBeGreaterThan(0);
    const stalledAt = g.acked;
    expect(stalledAt).toBeLessThan(big.length);
    server!.resume();
    await waitUntil(() => got === big.length, 20000, "everything to arrive");
    expect(ok).toBe(true);
  }, 60000);
});

// ---------------------------------------------------------------------------------------------

describe("hostfwd", () => {
  it("connects a host client to a server on the guest side", async () => {
    const { un, h } = makeNet({ hostfwd: [{ proto: "tcp", hostPort: 0, guestPort: 80 }] });
    const [fwd] = await withTimeout(un.ready(), 2000, "listening");
    expect(fwd).toMatchObject({ hostAddr: "127.0.0.1", guestAddr: "10.0.2.15", guestPort: 80, listening: true });
    expect(fwd.hostPort).toBeGreaterThan(0);

    // The guest side: say who we are (as Linux does with its first frames), then serve.
    h.send(buildEthernet(BROADCAST_MAC, GUEST_MAC, ETHERTYPE_ARP, buildArp({ op: ARP_REQUEST, senderMac: GUEST_MAC, senderIp: GUEST, targetMac: ZERO_MAC, targetIp: GW })));
    await h.next(() => true);
    const request = pattern(300000, 9);
    let server: GuestTcp | null = null;
    h.listeners.set(80, (syn, ip) => {
      expect(ip.src).toBe(GW);
      expect(syn.options.mss).toBe(1460);
      const g = new GuestTcp(h, { localPort: 80, remoteIp: ip.src, remotePort: syn.srcPort });
      g.accept(syn);
      server = g;
      cleanups.push(() => g.close());
      return g;
    });

    const client = net.connect(fwd.hostPort, "127.0.0.1");
    cleanups.push(() => void client.destroy());
    const c = collect(client);
    client.write(request);
    client.end();
    await waitUntil(() => server !== null && server.finRcvd, 10000, "the request at the guest");
    expect(equalBytes(server!.data(), request)).toBe(true);
    const response = pattern(500000, 10);
    server!.write(response);
    server!.end();
    await withTimeout(c.ended, 10000, "the response");
    expect(equalBytes(c.data(), response)).toBe(true);
    await waitUntil(() => un.stats().tcp.active === 0, 5000, "the close");
    expect(un.stats().tcp.inbound).toBe(1);
  }, 30000);

  it("ARPs for the guest when it has not spoken yet, and resets the client if nothing listens", async () => {
    const { un, h } = makeNet({ hostfwd: [{ proto: "tcp", hostPort: 0, guestPort: 22 }] });
    const [fwd] = await un.ready();
    const client = hostfwdClient(fwd.hostPort);
    const arpReq = await h.next((r) => parseEthernet(r.frame)?.etherType === ETHERTYPE_ARP, 3000, "an ARP request");
    const arp = parseArp(parseEthernet(arpReq.frame)!.payload)!;
    expect(arp.op).toBe(ARP_REQUEST);
    expect(arp.targetIp).toBe(GUEST);
    expect(arp.senderIp).toBe(GW);
    h.send(buildEthernet(GW_MAC, GUEST_MAC, ETHERTYPE_ARP, buildArp({ op: ARP_REPLY, senderMac: GUEST_MAC, senderIp: GUEST, targetMac: GW_MAC, targetIp: GW })));
    const synFrame = await h.next((r) => r.ip?.protocol === IPPROTO_TCP, 3000, "the SYN");
    const syn = parseTcp(synFrame.ip!.payload, synFrame.ip!.src, synFrame.ip!.dst)!;
    expect(syn.flags).toBe(TCP_SYN);
    expect(syn.dstPort).toBe(22);
    // Nothing listens on port 22 in this guest: the kernel answers RST/ACK.
    h.send(ipFrame(GUEST, GW, IPPROTO_TCP, buildTcp(GUEST, GW, { srcPort: 22, dstPort: syn.srcPort, seq: 0, ack: (syn.seq + 1) >>> 0, flags: TCP_RST | TCP_ACK, window: 0 })));
    await waitUntil(() => client.closed, 3000, "the client to be closed");
    expect(client.error).toBe("ECONNRESET");
    expect(un.stats().tcp).toMatchObject({ refused: 1, active: 0 });
  });

  it("reports a port it cannot listen on", async () => {
    const { port } = await tcpServer(() => {});
    const errors: unknown[] = [];
    const un = new UserNet({ hostSockets: nodeHostSockets, hostfwd: [{ proto: "tcp", hostAddr: "127.0.0.1", hostPort: port, guestPort: 80 }], onError: (e) => errors.push(e), dns: { servers: [] } });
    cleanups.push(() => un.close());
    await expect(un.ready()).rejects.toThrow(/cannot listen.*EADDRINUSE/);
    expect(errors).toHaveLength(1);
  });

  it("close() stops listening and drops every connection", async () => {
    const un = new UserNet({ hostSockets: nodeHostSockets, hostfwd: [{ proto: "tcp", hostPort: 0, guestPort: 80 }], dns: { servers: [] } });
    const h = new Harness(un);
    const [fwd] = await un.ready();
    let hostClosed = false;
    const { port } = await tcpServer((s) => s.on("close", () => (hostClosed = true)));
    const g = new GuestTcp(h, { localPort: 40011, remoteIp: GW, remotePort: port });
    cleanups.push(() => g.close());
    g.connect();
    await waitUntil(() => g.state === "established", 3000, "the handshake");
    h.send(udpFrame(GUEST, 5002, GW, port, new Uint8Array([1])));
    un.close();
    un.close(); // idempotent
    await waitUntil(() => hostClosed, 3000, "the host socket to close");
    const refused = await new Promise<string>((resolve) => {
      const c = net.connect(fwd.hostPort, "127.0.0.1");
      c.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
      c.on("connect", () => {
        c.destroy();
        resolve("connected");
      });
    });
    expect(refused).toBe("ECONNREFUSED");
    expect(un.stats()).toMatchObject({ tcp: { active: 0 }, udp: { bindings: 0 } });
    const before = un.stats().framesFromGuest;
    h.send(udpFrame(GUEST, 5002, GW, port, new Uint8Array([1])));
    expect(un.stats().framesFromGuest).toBe(before);
  });
});

// ---------------------------------------------------------------------------------------------

describe("loopback policy", () => {
  it("lets the guest reach any port of the host's 127.0.0.1 through 10.0.2.2 by default", async () => {
    let accepted = 0;
    const { port } = await tcpServer(() => accepted++);
    const { h } = makeNet();
    const g = guestConnect(h, GW, port, 40200);
    await waitUntil(() => g.state === "established" && accepted === 1, 3000, "the connection");
  });

  it("with loopback=off resets the SYN and the host service sees nothing", async () => {
    let accepted = 0;
    const { port } = await tcpServer(() => accepted++);
    const { un, h } = makeNet(parseUserNetSpec("user,loopback=off"));
    const seg = await answerToSyn(h, GW, port, 40201);
    expect(seg.flags).toBe(TCP_RST | TCP_ACK);
    expect(seg.ack).toBe(1001);
    await sleep(50);
    expect(accepted).toBe(0);
    expect(un.stats().tcp).toMatchObject({ refused: 1, outbound: 0, active: 0 });
  });

  it("with loopback=PORT reaches that port only", async () => {
    let allowedAccepted = 0;
    let otherAccepted = 0;
    const allowed = await tcpServer(() => allowedAccepted++);
    const other = await tcpServer(() => otherAccepted++);
    const { un, h } = makeNet(parseUserNetSpec(`user,loopback=off,loopback=${allowed.port}`));
    const refused = guestConnect(h, GW, other.port, 40202);
    await waitUntil(() => refused.state === "reset", 3000, "the RST");
    const g = guestConnect(h, GW, allowed.port, 40203);
    await waitUntil(() => g.state === "established" && allowedAccepted === 1, 3000, "the allowed connection");
    expect(otherAccepted).toBe(0);
    expect(un.stats().tcp).toMatchObject({ refused: 1, outbound: 1 });
  });

  it("applies the same ports to UDP", async () => {
    const allowed = await udpServer((m) => m);
    const other = await udpServer((m) => m);
    const { un, h } = makeNet({ loopback: [allowed.port] });
    h.send(udpFrame(GUEST, 5010, GW, other.port, new Uint8Array([1])));
    h.send(udpFrame(GUEST, 5011, GW, allowed.port, new Uint8Array([2])));
    const r = await h.next((r) => r.ip?.protocol === IPPROTO_UDP, 2000, "the allowed port's echo");
    expect(parseUdp(r.ip!.payload, r.ip!.src, r.ip!.dst)!.dstPort).toBe(5011);
    await sleep(30);
    expect(other.received).toHaveLength(0);
    expect(un.stats()).toMatchObject({ ignored: 1, udp: { bindings: 1, datagramsOut: 1 } });
  });
});

describe("restrict=on", () => {
  it("refuses guest TCP to the host and beyond before any socket is opened", async () => {
    let accepted = 0;
    const { port } = await tcpServer(() => accepted++);
    // A spent budget: even a broken restrict could open nothing, but it would ask for a socket.
    const budget = new SocketBudget(0);
    const take = vi.spyOn(budget, "take");
    const { un, h } = makeNet({ ...parseUserNetSpec("user,restrict=on"), budget });
    // The host's loopback first: should restrict not work, this fails before the next SYN.
    for (const [dst, dstPort, srcPort] of [[GW, port, 40210], [ip4(192, 0, 2, 1), 80, 40211]]) {
      const seg = await answerToSyn(h, dst, dstPort, srcPort);
      expect(seg.flags).toBe(TCP_RST | TCP_ACK);
      expect(take).not.toHaveBeenCalled();
    }
    expect(accepted).toBe(0);
    expect(un.stats().tcp).toMatchObject({ refused: 2, outbound: 0, active: 0 });
  });

  it("sends no UDP anywhere", async () => {
    const server = await udpServer((m) => m);
    const budget = new SocketBudget(0);
    const take = vi.spyOn(budget, "take");
    const { un, h } = makeNet({ restrict: true, budget });
    h.send(udpFrame(GUEST, 5020, GW, server.port, new Uint8Array([1])));
    await sleep(30);
    expect(server.received).toHaveLength(0); // checked before a datagram could be sent beyond
    h.send(udpFrame(GUEST, 5021, ip4(192, 0, 2, 1), 9, new Uint8Array([2])));
    expect(take).not.toHaveBeenCalled();
    expect(un.stats()).toMatchObject({ ignored: 2, udp: { bindings: 0, datagramsOut: 0 } });
  });

  it("answers REFUSED instead of forwarding DNS, but still answers local names", async () => {
    const upstream = await udpServer();
    const asked: string[] = [];
    const lookup = async (name: string) => {
      asked.push(name);
      return ["192.0.2.1"];
    };
    const { un, h } = makeNet({ restrict: true, dns: { servers: [`127.0.0.1:${upstream.port}`], lookup } });
    const ask = async (id: number, name: string, type: number) => {
      h.send(udpFrame(GUEST, 40300 + id, DNS, 53, buildDns({ id, flags: DNS_FLAG_RD, questions: [{ name, type, class: DNS_CLASS_IN }], answers: [], authorities: [], additionals: [] })));
      const r = await h.next((r) => r.ip?.protocol === IPPROTO_UDP, 2000, `the answer for ${name}`);
      return parseDns(parseUdp(r.ip!.payload, r.ip!.src, r.ip!.dst)!.payload)!;
    };
    const forwarded = await ask(1, "example.test", DNS_TYPE_MX);
    expect(forwarded.id).toBe(1);
    expect(dnsRcode(forwarded)).toBe(DNS_RCODE_REFUSED);
    expect(dnsRcode(await ask(2, "svc.test", DNS_TYPE_A))).toBe(DNS_RCODE_REFUSED);
    const local = await ask(3, "localhost", DNS_TYPE_A);
    expect(Array.from(local.answers[0].data)).toEqual([127, 0, 0, 1]);
    await sleep(30);
    expect(upstream.received).toHaveLength(0);
    expect(asked).toEqual([]);
    expect(un.stats().dns).toMatchObject({ queries: 3, local: 1, forwarded: 0 });
  });

  it("does not carry DNS over TCP to the upstream server", async () => {
    let accepted = 0;
    const { port } = await tcpServer(() => accepted++);
    const { un, h } = makeNet({ restrict: true, dns: { servers: [`127.0.0.1:${port}`] } });
    const g = guestConnect(h, DNS, 53, 40212);
    await waitUntil(() => g.state === "reset", 3000, "the RST");
    await sleep(30);
    expect(accepted).toBe(0);
    expect(un.stats().tcp).toMatchObject({ refused: 1, outbound: 0 });
  });

  it("keeps DHCP, ARP, ping of the virtual hosts and hostfwd working", async () => {
    const { un, h } = makeNet({ restrict: true, hostfwd: [{ proto: "tcp", hostPort: 0, guestPort: 80 }] });
    const [fwd] = await withTimeout(un.ready(), 2000, "listening");

    h.send(udpFrame(0, 68, 0xffffffff, 67, buildDhcp({ op: 1, xid: 7, chaddr: GUEST_MAC, options: [[DHCP_OPT_MESSAGE_TYPE, optU8(DHCPDISCOVER)]] }), BROADCAST_MAC));
    const offer = await h.next((r) => r.ip?.protocol === IPPROTO_UDP, 2000, "the DHCP offer");
    expect(parseDhcp(parseUdp(offer.ip!.payload, offer.ip!.src, offer.ip!.dst)!.payload)!.messageType).toBe(DHCPOFFER);

    h.send(buildEthernet(BROADCAST_MAC, GUEST_MAC, ETHERTYPE_ARP, buildArp({ op: ARP_REQUEST, senderMac: GUEST_MAC, senderIp: GUEST, targetMac: ZERO_MAC, targetIp: GW })));
    const arp = await h.next((r) => parseEthernet(r.frame)?.etherType === ETHERTYPE_ARP, 2000, "the ARP reply");
    expect(parseArp(parseEthernet(arp.frame)!.payload)!.op).toBe(ARP_REPLY);

    for (const dst of [GW, DNS]) {
      h.send(ipFrame(GUEST, dst, IPPROTO_ICMP, buildIcmpEcho(ICMP_ECHO_REQUEST, 1, 1, new Uint8Array(8))));
      const r = await h.next((r) => r.ip?.protocol === IPPROTO_ICMP, 2000, "the echo reply");
      expect(r.ip!.src).toBe(dst);
      expect(parseIcmp(r.ip!.payload)!.type).toBe(ICMP_ECHO_REPLY);
    }

    h.listeners.set(80, (syn, ip) => {
      const g = new GuestTcp(h, { localPort: 80, remoteIp: ip.src, remotePort: syn.srcPort });
      cleanups.push(() => g.close());
      g.accept(syn);
      g.write(new TextEncoder().encode("hello from the guest"));
      g.end();
      return g;
    });
    const client = net.connect(fwd.hostPort, "127.0.0.1");
    cleanups.push(() => void client.destroy());
    const c = collect(client);
    await withTimeout(c.ended, 5000, "the guest's answer");
    expect(c.data().toString()).toBe("hello from the guest");
    expect(un.stats().tcp.inbound).toBe(1);
  });
});

describe("socket budget", () => {
  it("counts sockets taken and given back", () => {
    const b = new SocketBudget(2);
    expect([b.take(), b.take(), b.take()]).toEqual([true, true, false]);
    expect(b.used).toBe(2);
    b.release();
    expect(b.take()).toBe(true);
    b.release();
    b.release();
    expect(b.used).toBe(0);
    expect(() => b.release()).toThrow(/released more often than taken/);
    expect(() => new SocketBudget(-1)).toThrow(/socket budget/);
    expect(() => new SocketBudget(1.5)).toThrow(/socket budget/);
  });

  it("refuses the connection beyond a budget shared by two NICs, and admits one once another ends", async () => {
    let accepted = 0;
    const { port } = await tcpServer((s) => {
      accepted++;
      s.on("error", () => {}); // the guest's reset reaches it as ECONNRESET
    });
    const budget = new SocketBudget(2);
    const a = makeNet({ budget });
    const b = makeNet({ budget });
    const g1 = guestConnect(a.h, GW, port, 40220);
    const g2 = guestConnect(b.h, GW, port, 40221);
    await waitUntil(() => g1.state === "established" && g2.state === "established", 3000, "two connections");
    expect(budget.used).toBe(2);
    const g3 = guestConnect(a.h, GW, port, 40222);
    await waitUntil(() => g3.state === "reset", 3000, "the RST");
    expect(a.un.stats().tcp).toMatchObject({ refused: 1, outbound: 1 });
    g1.rst();
    await waitUntil(() => budget.used === 1, 3000, "the reset connection's socket to be given back");
    const g4 = guestConnect(a.h, GW, port, 40223);
    await waitUntil(() => g4.state === "established", 3000, "a new connection");
    expect(accepted).toBe(3);
    expect(budget.used).toBe(2);
  });

  it("resets a hostfwd client when the budget is spent", async () => {
    const { un } = makeNet({ hostfwd: [{ proto: "tcp", hostPort: 0, guestPort: 80 }], budget: new SocketBudget(0) });
    const [fwd] = await un.ready();
    const client = hostfwdClient(fwd.hostPort);
    await waitUntil(() => client.closed, 3000, "the client to be closed");
    expect(client.error).toBe("ECONNRESET");
    expect(un.stats().tcp).toMatchObject({ refused: 1, inbound: 0, active: 0 });
  });

  it("evicts the NIC's longest-idle UDP binding when the budget is spent", async () => {
    const server = await udpServer((m) => m);
    const budget = new SocketBudget(2);
    const { un, h } = makeNet({ budget });
    const hostPortOf = (tag: number) => server.received.find((x) => x.msg[0] === tag)!.rinfo.port;
    const roundTrip = async (guestPort: number, tag: number) => {
      h.send(udpFrame(GUEST, guestPort, GW, server.port, new Uint8Array([tag])));
      await h.next((r) => r.ip?.protocol === IPPROTO_UDP, 2000, `the echo of ${tag}`);
      await sleep(5); // distinct last-use times
    };
    await roundTrip(5030, 1);
    await roundTrip(5031, 2);
    await roundTrip(5030, 3); // 5031 is now the idlest
    await roundTrip(5032, 4);
    expect(un.stats().udp).toEqual({ bindings: 2, datagramsOut: 4, datagramsIn: 4 });
    expect(budget.used).toBe(2);
    // 5031's host socket is gone; 5030's still carries replies.
    server.sock.send(new Uint8Array([5]), hostPortOf(2), "127.0.0.1");
    server.sock.send(new Uint8Array([6]), hostPortOf(1), "127.0.0.1");
    const r = await h.next((r) => r.ip?.protocol === IPPROTO_UDP, 2000, "the reply to 5030");
    expect(parseUdp(r.ip!.payload, r.ip!.src, r.ip!.dst)!.dstPort).toBe(5030);
    await sleep(30);
    expect(h.frames).toHaveLength(0);
    expect(un.stats().udp.datagramsIn).toBe(5);
  });

  it("drops a datagram when the budget is spent and the NIC has no binding to give up", async () => {
    let accepted = 0;
    const { port } = await tcpServer(() => accepted++);
    const server = await udpServer();
    const budget = new SocketBudget(1);
    const a = makeNet({ budget });
    const b = makeNet({ budget });
    const g = guestConnect(a.h, GW, port, 40230);
    await waitUntil(() => g.state === "established", 3000, "the connection");
    b.h.send(udpFrame(GUEST, 5040, GW, server.port, new Uint8Array([1])));
    await sleep(30);
    expect(server.received).toHaveLength(0);
    expect(b.un.stats()).toMatchObject({ ignored: 1, udp: { bindings: 0, datagramsOut: 0 } });
    expect(a.un.stats().tcp.active).toBe(1);
  });

  it("gives everything back on close()", async () => {
    const { port } = await tcpServer(() => {});
    const server = await udpServer();
    const budget = new SocketBudget(8);
    const a = makeNet({ budget });
    const b = makeNet({ budget });
    const g = guestConnect(a.h, GW, port, 40240);
    await waitUntil(() => g.state === "established", 3000, "the connection");
    a.h.send(udpFrame(GUEST, 5050, GW, server.port, new Uint8Array([1])));
    b.h.send(udpFrame(GUEST, 5051, GW, server.port, new Uint8Array([2])));
    await waitUntil(() => server.received.length === 2, 2000, "both datagrams");
    expect(budget.used).toBe(3);
    a.un.close();
    expect(budget.used).toBe(1);
    b.un.close();
    expect(budget.used).toBe(0);
  });
});
