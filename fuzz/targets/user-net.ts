/**
 * User-mode networking fed the frames a hostile guest sends: ARP, ICMP, DHCP, DNS, UDP and TCP
 * built from the input with valid checksums (so they get past parsing), following the
 * connection's own sequence numbers when asked, or any bytes at all. Host sockets are the
 * real ones (Node's), but every connection and datagram goes to echo servers on 127.0.0.1
 * whatever the guest asked for, and the DNS upstream is the UDP echo (the stack then parses its
 * own query as an answer), so nothing leaves the machine. UserNet must never throw out of
 * send() (it counts errors and malformed frames instead); each input waits for the host's
 * answers, then closes the stack.
 */
import { createServer, type Server } from "node:net";
import { createSocket, type Socket } from "node:dgram";
import { InputReader, InputWriter } from "../engine/input";
import { rejectsNothing, type Target } from "../engine/target";
import { UserNet } from "../../host/net/user/index";
import { USER_DNS, USER_GATEWAY, USER_GUEST } from "../../host/net/user/network";
import { nodeHostSockets } from "../../host/platform/node/host-sockets";
import type { HostSockets } from "../../host/net/host-sockets";
import {
  ARP_REQUEST, BROADCAST_MAC, DHCP_CLIENT_PORT, DHCP_SERVER_PORT, ETHERTYPE_ARP, ETHERTYPE_IPV4, ICMP_ECHO_REQUEST, IPPROTO_ICMP,
  IPPROTO_TCP, IPPROTO_UDP, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, buildArp, buildEthernet, buildIPv4, buildIcmpEcho, buildTcp,
  buildUdp, ip4, parseEthernet, parseIPv4, parseMac, parseTcp,
} from "../../host/net/packet";

const GUEST_MAC = parseMac("52:54:00:12:34:56")!;
const GW_MAC = parseMac("52:55:0a:00:02:02")!;

interface NetRig {
  sockets: HostSockets;
  /** Whether the loopback servers have answered everything the stack asked of them so far. */
  answered(): boolean;
  close(): Promise<void>;
}

/** What one host socket still waits for from the echo servers. */
interface Owed { n: number; paused: boolean }

/** Node's host sockets, with every destination replaced by the loopback echo servers. */
async function setup(): Promise<NetRig> {
  const tcp: Server = createServer((c) => { c.on("error", () => {}); c.pipe(c); });
  await new Promise<void>((r) => tcp.listen(0, "127.0.0.1", r));
  const udp: Socket = createSocket("udp4");
  udp.on("message", (m, from) => udp.send(m, from.port, from.address));
  await new Promise<void>((r) => udp.bind(0, "127.0.0.1", r));
  const tcpPort = (tcp.address() as { port: number }).port;
  const udpPort = udp.address().port;
  const echoTcp = { host: "127.0.0.1", port: tcpPort };
  const echoUdp = { host: "127.0.0.1", port: udpPort };
  // The answers each open socket is owed: its connection, the bytes it wrote (echoed back), its
  // datagrams (each echoed). A socket leaves when it closes: nothing more comes to it.
  const open = new Set<Owed>();
  const sockets: HostSockets = {
    connectTcp: (_to, handlers) => {
      const owed: Owed = { n: 1, paused: false };
      let ended = false;
      open.add(owed);
      const s = nodeHostSockets.connectTcp(echoTcp, {
        onConnect: () => { owed.n--; handlers.onConnect?.(); },
        onData: (d) => { owed.n -= d.length; handlers.onData(d); },
        onEnd: () => handlers.onEnd(),
        onDrain: () => handlers.onDrain(),
        onClose: () => { open.delete(owed); handlers.onClose(); },
      });
      return {
        get bufferedAmount() { return s.bufferedAmount; },
        write: (d) => { if (!ended) owed.n += d.length; s.write(d); },
        end: () => { ended = true; s.end(); },
        pause: () => { owed.paused = true; s.pause(); },
        resume: () => { owed.paused = false; s.resume(); },
        reset: () => { open.delete(owed); s.reset(); },
        close: () => { open.delete(owed); s.close(); },
      };
    },
    listenTcp: (_at, handlers) => { handlers.onError(new Error("no listening in the fuzz target")); return { close() {} }; },
    openUdp: (_family, handlers) => {
      const owed: Owed = { n: 0, paused: false };
      open.add(owed);
      const s = nodeHostSockets.openUdp(4, {
        onMessage: (d, from) => { owed.n--; handlers.onMessage(d, from); },
        onError: () => { open.delete(owed); handlers.onError?.(); },
      });
      return { send: (data) => { owed.n++; s.send(data, echoUdp); }, close: () => { open.delete(owed); s.close(); } };
    },
    dnsServers: () => [`127.0.0.1:${udpPort}`],
    lookup: async (name) => { if (name.length % 2) throw new Error(`${name}: not found`); return ["127.0.0.1"]; },
    readHostsFile: () => null,
  };
  return {
    sockets,
    // A paused connection gets nothing before the stack resumes it, on a later guest frame.
    answered: () => [...open].every((o) => o.n <= 0 || o.paused),
    close: async () => {
      await new Promise<void>((r) => tcp.close(() => r()));
      udp.close();
    },
  };
}

function address(input: InputReader): number {
  switch (input.int(0, 6)) {
    case 0: return USER_DNS;
    case 1: return ip4(10, 0, 2, input.u8());
    case 2: return input.pick([0xffffffff, 0, ip4(127, 0, 0, 1), ip4(224, 0, 0, 1), ip4(8, 8, 8, 8)]);
    case 3: return input.u32();
    default: return USER_GATEWAY;
  }
}

/** What the stack said last on a TCP connection: the guest's next segment may acknowledge it. */
interface Peer { seq: number; ack: number }

function frame(input: InputReader, peer: Peer): Uint8Array {
  const src = input.int(0, 7) === 0 ? address(input) : USER_GUEST;
  const ipFrame = (protocol: number, dst: number, payload: Uint8Array) =>
    buildEthernet(input.int(0, 7) === 0 ? BROADCAST_MAC : GW_MAC, GUEST_MAC, ETHERTYPE_IPV4, buildIPv4({ src, dst, protocol, payload, dontFragment: input.int(0, 7) !== 0, ttl: input.u8() }));
  switch (input.int(0, 7)) {
    case 0: return buildEthernet(BROADCAST_MAC, GUEST_MAC, ETHERTYPE_ARP, buildArp({ op: input.bool() ? ARP_REQUEST : input.u16(), senderMac: GUEST_MAC, senderIp: src, targetMac: new Uint8Array(6), targetIp: address(input) }));
    case 1: { const dst = address(input); return ipFrame(IPPROTO_ICMP, dst, buildIcmpEcho(input.bool() ? ICMP_ECHO_REQUEST : input.u8(), input.u16(), input.u16(), input.blob(64))); }
    case 2: { // DHCP: a BOOTP request with the input's options
      const b = new Uint8Array(240 + 64);
      b[0] = 1; b[1] = 1; b[2] = 6;
      b.set(GUEST_MAC, 28);
      b.set([99, 130, 83, 99], 236);
      b.set(input.blob(64), 240);
      return ipFrame(IPPROTO_UDP, input.bool() ? 0xffffffff : USER_GATEWAY, buildUdp(src, input.bool() ? 0xffffffff : USER_GATEWAY, DHCP_CLIENT_PORT, DHCP_SERVER_PORT, b));
    }
    case 3: { // DNS: a query for a name from the input (or any bytes)
      const q = input.bool() ? dnsQuery(input) : input.blob(128);
      return ipFrame(IPPROTO_UDP, USER_DNS, buildUdp(src, USER_DNS, input.u16(), input.bool() ? 53 : input.u16(), q));
    }
    case 4: { const dst = address(input); return ipFrame(IPPROTO_UDP, dst, buildUdp(src, dst, input.u16(), input.u16(), input.blob(256))); }
    case 5: case 6: { // TCP, on connection 0..3 to the gateway or elsewhere
      const dst = input.bool() ? USER_GATEWAY : address(input);
      const conn = input.int(0, 3);
      const follow = input.bool();
      const flags = input.pick([TCP_SYN, TCP_ACK, TCP_ACK | TCP_PSH, TCP_FIN | TCP_ACK, TCP_RST, TCP_SYN | TCP_ACK, input.u8()]);
      const seg = buildTcp(src, dst, {
        srcPort: 40000 + conn, dstPort: input.bool() ? 7 : input.u16(),
        seq: follow ? peer.ack : input.u32(), ack: follow ? peer.seq : input.u32(), flags, window: input.u16(),
        options: input.bool() ? { mss: input.u16(), windowScale: input.int(0, 15) } : undefined,
        payload: input.blob(512),
      });
      if (follow) peer.ack = (peer.ack + seg.length - 20 + (flags & (TCP_SYN | TCP_FIN) ? 1 : 0)) >>> 0;
      return ipFrame(IPPROTO_TCP, dst, seg);
    }
    default: return input.blob(1600); // anything
  }
}

function dnsQuery(input: InputReader): Uint8Array {
  const labels = Array.from({ length: input.int(0, 4) }, () => input.blob(12));
  const name = labels.flatMap((l) => [l.length, ...l]).concat(0);
  return Uint8Array.from([input.u8(), input.u8(), 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, ...name, 0, input.pick([1, 28, 12, 255, 15]), 0, 1]);
}

async function runNet(rig: NetRig, data: Uint8Array): Promise<void> {
  const input = new InputReader(data);
  const peer: Peer = { seq: 0, ack: input.u32() };
  let failure: unknown = null;
  const net = new UserNet({
    hostSockets: rig.sockets, restrict: input.int(0, 7) === 0, mtu: input.int(0, 3) === 0 ? input.int(576, 65535) : 1500,
    dns: { timeoutMs: 200, lookup: "system" }, onError: (e) => { failure ??= e; },
  });
  net.attach((f) => {
    const eth = parseEthernet(f);
    const ip = eth && parseIPv4(eth.payload);
    const tcp = ip && ip.protocol === IPPROTO_TCP ? parseTcp(ip.payload, ip.src, ip.dst) : null;
    if (tcp) peer.seq = (tcp.seq + tcp.payload.length + (tcp.flags & (TCP_SYN | TCP_FIN) ? 1 : 0)) >>> 0;
  });
  try {
    for (let n = 0; n < 24 && !input.done; n++) {
      net.send(frame(input, peer));
      // The stack answers asynchronously, and the host's echo after a turn of the event loop
      // (or a wait for the host's answers).
      if (input.int(0, 3) === 0) await hostAnswers(rig, input.int(0, 2));
      else await new Promise((r) => setImmediate(r));
    }
  } finally {
    net.close();
  }
  if (failure) throw failure instanceof Error ? failure : new Error(String(failure));
}

/**
 * Wait as long as setTimeout(ms) would have (at least 1 ms), or less: until the echo servers
 * have answered all the stack asked of them, and a turn more for the stack to take the last
 * answer in. What else the wait would have let happen is nothing: the stack's own timers (TCP
 * retransmission and persist, DNS) are 200 ms and more, so ending the wait once the host side
 * is done gives the next frame the same stack to meet, without the idle rest of the wait.
 */
async function hostAnswers(rig: NetRig, ms: number): Promise<void> {
  const until = performance.now() + Math.max(1, ms);
  const turn = () => new Promise((r) => setImmediate(r));
  do await turn(); while (!rig.answered() && performance.now() < until);
  await turn();
}

function seeds(): Uint8Array[] {
  // DHCP discover; ARP for the gateway; ping; a DNS query; a TCP handshake and data to 10.0.2.2:7.
  const w = new InputWriter().u32(1000).int(0, 7, 1).int(0, 3, 1);
  w.int(0, 7, 1).int(0, 7, 2).int(0, 7, 1).u8(64).blob(64, [53, 1, 1, 255]).bool(true).bool(true).int(0, 3, 1);
  w.int(0, 7, 1).int(0, 7, 0).bool(true).int(0, 6, 6).int(0, 3, 1);
  w.int(0, 7, 1).int(0, 7, 1).int(0, 6, 6).int(0, 7, 1).u8(64).bool(true).u16(1).u16(1).blob(64, [1, 2, 3]).int(0, 3, 1);
  w.int(0, 7, 1).int(0, 7, 3).int(0, 7, 1).u8(64).bool(true).u8(1).u8(2).int(0, 4, 1).blob(12, [...new TextEncoder().encode("example")]).int(0, 4, 1).u16(5353).bool(true).int(0, 3, 1);
  for (const [flags, payload] of [[0, 0], [1, 0], [2, 5]] as const) {
    w.int(0, 7, 1).int(0, 7, 5).int(0, 7, 1).u8(64).bool(true).int(0, 3, 0).bool(true).int(0, 6, flags).bool(true).u16(0xffff).bool(false).blob(512, Array(payload).fill(0x41)).int(0, 3, 0).u8(1);
  }
  return [w.finish()];
}

export const userNetTarget: Target<NetRig> = {
  name: "user-net",
  about: "user-mode networking fed guest frames (ARP, ICMP, DHCP, DNS, UDP, TCP with live sequence numbers, any bytes); host side on loopback only",
  maxLength: 4096,
  setup,
  run: (data, rig) => runNet(rig, data),
  rejects: rejectsNothing,
  seeds,
  teardown: (rig) => rig.close(),
};
