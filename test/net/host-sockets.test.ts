/**
 * UserNet over an in-memory HostSockets: no host socket is opened, which shows that the stack
 * needs nothing of its platform but the HostSockets interface. Plus the two rules that keep it
 * so: nothing under host/net/ uses Node, and parsing a netdev string loads options code only.
 */
import { afterEach, describe, expect, it } from "vitest";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import type { HostAddress, HostSockets, IncomingTcp, TcpHandlers, TcpListenHandlers, TcpStream, UdpHandlers, UdpSocket } from "../../host/net/host-sockets";
import { SocketBudget } from "../../host/net/budget";
import { UserNet } from "../../host/net/user";
import type { UserNetOptions } from "../../host/net/user/options";
import {
  ARP_REQUEST,
  BROADCAST_MAC,
  DNS_CLASS_IN,
  DNS_FLAG_QR,
  DNS_FLAG_RD,
  DNS_TYPE_A,
  DNS_TYPE_MX,
  ETHERTYPE_ARP,
  IPPROTO_UDP,
  ZERO_MAC,
  buildArp,
  buildDns,
  buildEthernet,
  ip4,
  parseDns,
  parseUdp,
  type DnsMessage,
} from "../../host/net/packet";
import { DNS, GUEST, GUEST_MAC, GW, GuestTcp, Harness, udpFrame, waitUntil } from "./guest";

const text = (b: Uint8Array) => new TextDecoder().decode(b);
const bytes = (s: string) => new TextEncoder().encode(s);

class FakeStream implements TcpStream {
  readonly written: Uint8Array[] = [];
  bufferedAmount = 0;
  ended = false;
  paused = false;
  closed = false;
  wasReset = false;

  constructor(
    readonly to: HostAddress | null,
    readonly handlers: TcpHandlers,
  ) {}

  write(data: Uint8Array): void {
    if (!this.ended && !this.closed) this.written.push(data.slice());
  }
  end(): void {
    this.ended = true;
  }
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
  }
  reset(): void {
    this.wasReset = true;
    this.close();
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    queueMicrotask(() => this.handlers.onClose());
  }
  received(): string {
    return this.written.map(text).join("");
  }
}

class FakeUdp implements UdpSocket {
  readonly sent: { data: Uint8Array; to: HostAddress }[] = [];
  closed = false;

  constructor(
    readonly family: 4 | 6,
    readonly handlers: UdpHandlers,
  ) {}

  send(data: Uint8Array, to: HostAddress): void {
    this.sent.push({ data: data.slice(), to });
  }
  close(): void {
    this.closed = true;
  }
}

/** A host whose network is the test: every socket is recorded and played by hand. */
class FakeHost implements HostSockets {
  readonly streams: FakeStream[] = [];
  readonly listeners: { at: HostAddress; handlers: TcpListenHandlers; closed: boolean }[] = [];
  readonly udp: FakeUdp[] = [];
  readonly lookups: string[] = [];

  connectTcp(to: HostAddress, handlers: TcpHandlers): TcpStream {
    const s = new FakeStream(to, handlers);
    this.streams.push(s);
    return s;
  }
  listenTcp(at: HostAddress, handlers: TcpListenHandlers) {
    const l = { at, handlers, closed: false };
    this.listeners.push(l);
    queueMicrotask(() => handlers.onListening(at.port || 34567));
    return { close: () => void (l.closed = true) };
  }
  openUdp(family: 4 | 6, handlers: UdpHandlers): UdpSocket {
    const u = new FakeUdp(family, handlers);
    this.udp.push(u);
    return u;
  }
  dnsServers(): string[] {
    return ["192.0.2.53"];
  }
  lookup(name: string, family: 4 | 6): Promise<string[]> {
    this.lookups.push(`${name}/${family}`);
    return Promise.resolve(family === 4 ? ["192.0.2.80"] : []);
  }
  readHostsFile(path: string): string | null {
    return path === "/etc/hosts" ? "10.9.8.7 build-box\n" : null;
  }

  /** A client connecting to the n-th listener; its stream once UserNet has accepted it. */
  clientConnects(n: number): { accepted: () => FakeStream | null; refused: () => boolean } {
    let stream: FakeStream | null = null;
    let refused = false;
    const incoming: IncomingTcp = {
      accept: (handlers) => {
        stream = new FakeStream(null, handlers);
        stream.paused = true; // as the interface says: paused until resume()
        return stream;
      },
      reset: () => void (refused = true),
      close: () => void (refused = true),
    };
    this.listeners[n].handlers.onConnection(incoming);
    return { accepted: () => stream, refused: () => refused };
  }
}

const cleanups: (() => void)[] = [];
const reported: unknown[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
  expect(reported.splice(0)).toEqual([]);
});

function fakeNet(opts: UserNetOptions = {}): { host: FakeHost; budget: SocketBudget; un: UserNet; h: Harness } {
  const host = new FakeHost();
  const budget = new SocketBudget(8);
  const un = new UserNet({ hostSockets: host, budget, onError: (e) => reported.push(e), ...opts });
  cleanups.push(() => un.close());
  return { host, budget, un, h: new Harness(un) };
}

function guestTcp(h: Harness, remoteIp: number, remotePort: number, localPort: number): GuestTcp {
  const g = new GuestTcp(h, { localPort, remoteIp, remotePort });
  cleanups.push(() => g.close());
  return g;
}

describe("UserNet over an in-memory HostSockets", () => {
  it("carries a guest connection to 10.0.2.2:port to the host's loopback, both ways, with half-close", async () => {
    const { host, budget, un, h } = fakeNet();
    const g = guestTcp(h, GW, 8080, 40000);
    g.connect();
    await waitUntil(() => host.streams.length === 1, 2000, "the host connection");
    const s = host.streams[0];
    expect(s.to).toEqual({ host: "127.0.0.1", port: 8080 });
    expect(budget.used).toBe(1);
    expect(g.state).toBe("syn-sent"); // the guest's SYN is answered only once the host connected

    s.handlers.onConnect!();
    await waitUntil(() => g.state === "established", 2000, "the handshake");
    g.write(bytes("ping"));
    await waitUntil(() => s.received() === "ping", 2000, "the guest's bytes at the host");
    s.handlers.onData(bytes("pong"));
    s.handlers.onEnd();
    await waitUntil(() => g.finRcvd, 2000, "the host's bytes and FIN at the guest");
    expect(text(g.data())).toBe("pong");
    expect(s.ended).toBe(false); // half-closed: the guest may still send
    g.write(bytes(" and more"));
    g.end();
    await waitUntil(() => s.ended, 2000, "the guest's FIN at the host");
    expect(s.received()).toBe("ping and more");
    un.close();
    expect(s.closed).toBe(true);
    expect(budget.used).toBe(0);
  });

  it("resets the guest when the host stream fails, and the host stream when the guest resets", async () => {
    const { host, budget, h } = fakeNet();
    const refused = guestTcp(h, ip4(192, 0, 2, 7), 443, 40001);
    refused.connect();
    await waitUntil(() => host.streams.length === 1, 2000, "the host connection");
    expect(host.streams[0].to).toEqual({ host: "192.0.2.7", port: 443 });
    host.streams[0].handlers.onClose(); // refused
    await waitUntil(() => refused.state === "reset", 2000, "the RST");

    const g = guestTcp(h, GW, 8080, 40002);
    g.connect();
    await waitUntil(() => host.streams.length === 2, 2000, "the second host connection");
    const s = host.streams[1];
    s.handlers.onConnect!();
    await waitUntil(() => g.state === "established", 2000, "the handshake");
    g.rst();
    await waitUntil(() => s.wasReset, 2000, "the host stream's reset");
    expect(budget.used).toBe(0);
  });

  it("refuses the guest's connection, and gives its socket back, when the platform cannot even start one", async () => {
    const { host, budget, h } = fakeNet();
    host.connectTcp = () => { throw new Error("no sockets on this platform today"); };
    const g = guestTcp(h, ip4(192, 0, 2, 7), 443, 40003);
    g.connect();
    await waitUntil(() => g.state === "reset", 2000, "the RST");
    expect(budget.used).toBe(0);
    expect(reported.splice(0).map((e) => (e as Error).message)).toEqual(["no sockets on this platform today"]);
  });

  it("pauses the host stream while the guest is not reading", async () => {
    const { host, un, h } = fakeNet();
    const g = new GuestTcp(h, { localPort: 40003, remoteIp: GW, remotePort: 8080, rcvBuf: 16 * 1024, autoRead: false });
    cleanups.push(() => g.close());
    g.connect();
    await waitUntil(() => host.streams.length === 1, 2000, "the host connection");
    const s = host.streams[0];
    s.handlers.onConnect!();
    await waitUntil(() => g.state === "established", 2000, "the handshake");
    for (let i = 0; i < 64 && !s.paused; i++) s.handlers.onData(new Uint8Array(16 * 1024));
    expect(s.paused).toBe(true);
    expect(un.stats().tcp.hostPaused).toBe(1);
    const reader = setInterval(() => g.read(), 1);
    cleanups.push(() => clearInterval(reader));
    await waitUntil(() => !s.paused, 5000, "the host stream to resume");
  });

  it("relays UDP through the fake and takes replies only from the peer sent to", async () => {
    const { host, un, h } = fakeNet();
    h.send(udpFrame(GUEST, 5000, ip4(192, 0, 2, 9), 9, bytes("hello")));
    expect(host.udp).toHaveLength(1);
    const u = host.udp[0];
    expect(u.sent.map((x) => [text(x.data), x.to])).toEqual([["hello", { host: "192.0.2.9", port: 9 }]]);
    u.handlers.onMessage(bytes("stranger"), { host: "192.0.2.10", port: 9 });
    u.handlers.onMessage(bytes("reply"), { host: "192.0.2.9", port: 9 });
    const r = await h.next((r) => r.ip?.protocol === IPPROTO_UDP, 2000, "the reply");
    const udp = parseUdp(r.ip!.payload, r.ip!.src, r.ip!.dst)!;
    expect([r.ip!.src, udp.srcPort, udp.dstPort, text(udp.payload)]).toEqual([ip4(192, 0, 2, 9), 9, 5000, "reply"]);
    expect(un.stats()).toMatchObject({ ignored: 1, udp: { bindings: 1, datagramsOut: 1, datagramsIn: 1 } });
    un.close();
    expect(u.closed).toBe(true);
  });

  it("answers DNS through the fake's resolver, hosts file and nameservers", async () => {
    const { host, h } = fakeNet({ dns: { lookup: "system" } });
    const ask = async (id: number, name: string, type: number): Promise<DnsMessage> => {
      const query = buildDns({ id, flags: DNS_FLAG_RD, questions: [{ name, type, class: DNS_CLASS_IN }], answers: [], authorities: [], additionals: [] });
      h.send(udpFrame(GUEST, 41000 + id, DNS, 53, query));
      const r = await h.next((r) => r.ip?.protocol === IPPROTO_UDP, 2000, `the answer for ${name}`);
      return parseDns(parseUdp(r.ip!.payload, r.ip!.src, r.ip!.dst)!.payload)!;
    };
    const a = await ask(1, "svc.test", DNS_TYPE_A);
    expect(a.answers.map((x) => Array.from(x.data).join("."))).toEqual(["192.0.2.80"]);
    expect(host.lookups).toEqual(["svc.test/4"]);
    const local = await ask(2, "build-box", DNS_TYPE_A);
    expect(Array.from(local.answers[0].data)).toEqual([10, 9, 8, 7]);

    // Other types go to the host's nameserver, over the fake's UDP.
    const answer = ask(3, "mail.test", DNS_TYPE_MX);
    await waitUntil(() => host.udp.length === 1 && host.udp[0].sent.length === 1, 2000, "the forwarded query");
    const { data, to } = host.udp[0].sent[0];
    expect(to).toMatchObject({ host: "192.0.2.53", port: 53 });
    const q = parseDns(data)!;
    expect(q.questions[0].name).toBe("mail.test");
    const mx = { name: "mail.test", type: DNS_TYPE_MX, class: DNS_CLASS_IN, ttl: 300, data: new Uint8Array([0, 10, 0]) };
    host.udp[0].handlers.onMessage(buildDns({ ...q, flags: DNS_FLAG_QR | DNS_FLAG_RD, answers: [mx] }), to);
    const m = await answer;
    expect(m.id).toBe(3);
    expect(m.answers[0].ttl).toBe(300);
  });

  it("forwards a host port to the guest through the fake's listener", async () => {
    const { host, budget, un, h } = fakeNet({ hostfwd: [{ proto: "tcp", hostPort: 0, guestPort: 80 }] });
    const [fwd] = await un.ready();
    expect(host.listeners[0].at).toEqual({ host: "127.0.0.1", port: 0 });
    expect(fwd).toMatchObject({ hostPort: 34567, listening: true });
    h.send(buildEthernet(BROADCAST_MAC, GUEST_MAC, ETHERTYPE_ARP, buildArp({ op: ARP_REQUEST, senderMac: GUEST_MAC, senderIp: GUEST, targetMac: ZERO_MAC, targetIp: GW })));
    await h.next(() => true);
    let server: GuestTcp | null = null;
    h.listeners.set(80, (syn, ip) => {
      server = guestTcp(h, ip.src, syn.srcPort, 80);
      server.accept(syn);
      return server;
    });
    const client = host.clientConnects(0);
    const s = client.accepted()!;
    expect(s.paused).toBe(true);
    await waitUntil(() => server?.state === "established" && !s.paused, 2000, "the guest to accept");
    s.handlers.onData(bytes("GET /"));
    await waitUntil(() => text(server!.data()) === "GET /", 2000, "the request at the guest");
    server!.write(bytes("200 OK"));
    await waitUntil(() => s.received() === "200 OK", 2000, "the response at the client");
    expect(budget.used).toBe(1);
    un.close();
    expect(host.listeners[0].closed).toBe(true);
    expect(budget.used).toBe(0);
  });

  it("refuses to start without host sockets", () => {
    expect(() => new UserNet({})).toThrow("user-mode networking needs host sockets, which this platform does not provide");
  });
});

describe("the platform seam", () => {
  const netDir = fileURLToPath(new URL("../../host/net", import.meta.url));

  it("keeps Node out of host/net", () => {
    const files = readdirSync(netDir, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".ts"));
    expect(files.length).toBeGreaterThan(10);
    const nodeOnly = /from\s+["']node:|require\(|\bBuffer\b|\bprocess\.|\bsetImmediate\b|\bNodeJS\./;
    for (const f of files) expect(readFileSync(join(netDir, f), "utf8"), f).not.toMatch(nodeOnly);
  });

  it("parses a netdev string with options code only", async () => {
    const result = await build({
      entryPoints: [join(netDir, "netdev.ts")],
      bundle: true,
      write: false,
      metafile: true,
      format: "esm",
      logLevel: "silent",
    });
    const loaded = Object.keys(result.metafile.inputs).map((p) => relative(netDir, p)).sort();
    expect(loaded).toEqual(["netdev.ts", "packet.ts", "user/network.ts", "user/options.ts"]);
  });
});
