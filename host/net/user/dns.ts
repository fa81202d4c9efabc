/**
 * The DNS server at 10.0.2.3: localhost, .invalid and hosts-file names are answered here; other
 * queries are forwarded raw over UDP to the host's nameservers or, with `lookup`, A and AAAA go
 * through a resolver. At most DNS_MAX_PENDING queries wait at a time; with `restrict` nothing
 * leaves (REFUSED).
 */

import type { HostAddress, HostSockets, UdpSocket } from "../host-sockets";
import {
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
  buildDns,
  dnsOpcode,
  parseDns,
  parseIp4,
  parseIp6,
  type DnsMessage,
  type DnsQuestion,
  type DnsRecord,
} from "../packet";
import type { GuestLink } from "./link";
import { USER_DNS } from "./network";
import type { UserNetDnsOptions } from "./options";
import { random32 } from "./random";
import { unrefTimer } from "./timers";

const DNS_TIMEOUT = 3000;
const DNS_MAX_PENDING = 64;
const DNS_TTL = 60;

interface Upstream extends HostAddress {
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

export class DnsProxy {
  private readonly servers: Upstream[];
  private readonly hostsFile: string | null;
  private hosts: Map<string, { v4: Uint8Array[]; v6: Uint8Array[] }> | null = null;
  private readonly lookup: ((name: string, family: 4 | 6) => Promise<string[]>) | null;
  private readonly timeoutMs: number;
  private readonly pending = new Map<number, PendingQuery>();
  private lookups = 0;
  private sock4: UdpSocket | null = null;
  private sock6: UdpSocket | null = null;
  private closed = false;

  constructor(
    private readonly link: GuestLink,
    private readonly sockets: HostSockets,
    opts: UserNetDnsOptions,
    /** No query leaves the host: neither forwarded nor resolved. */
    private readonly restricted: boolean,
  ) {
    const list = opts.servers ?? sockets.dnsServers();
    this.servers = list.map(parseServer).filter((s): s is Upstream => s !== null && s.port > 0 && s.port < 65536);
    this.hostsFile = opts.hostsFile === undefined ? "/etc/hosts" : opts.hostsFile;
    this.timeoutMs = opts.timeoutMs ?? DNS_TIMEOUT;
    if (opts.lookup === "system") this.lookup = (name, family) => sockets.lookup(name, family);
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
    const c = this.link.counters;
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
    this.link.sendUdp(USER_DNS, 53, guestIp, guestPort, bytes);
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
    const text = this.sockets.readHostsFile(this.hostsFile);
    if (text === null) return table;
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
        if (v4 !== null) e.v4.push(ip4Bytes(v4));
        else e.v6.push(v6!);
      }
    }
    return table;
  }

  private resolve(q: DnsMessage, question: DnsQuestion, reply: (m: DnsMessage) => void): void {
    const c = this.link.counters;
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
        const data = v4 !== null ? ip4Bytes(v4) : family === 6 ? parseIp6(a) : null;
        if (data) answers.push({ name: question.name, type: question.type, class: DNS_CLASS_IN, ttl: DNS_TTL, data });
      }
      reply(this.response(q, rcode, answers, false));
    };
    const timer = setTimeout(this.link.guard(() => finish(DNS_RCODE_SERVFAIL, [])), this.timeoutMs);
    unrefTimer(timer);
    let name = question.name;
    if (/\\/.test(name)) {
      finish(DNS_RCODE_NXDOMAIN, []); // names with escaped bytes do not exist for the resolver
      return;
    }
    if (name.endsWith(".")) name = name.slice(0, -1);
    Promise.resolve()
      .then(() => lookup(name, family))
      .then(
        this.link.guard((addrs: string[]) => finish(DNS_RCODE_NOERROR, Array.isArray(addrs) ? addrs : [])),
        this.link.guard((err: { code?: string }) => {
          const code = err?.code;
          if (code === "ENODATA") finish(DNS_RCODE_NOERROR, []);
          else if (code === "ENOTFOUND" || code === "NXDOMAIN") finish(DNS_RCODE_NXDOMAIN, []);
          else finish(DNS_RCODE_SERVFAIL, []);
        }),
      );
  }

  private forward(guestIp: number, guestPort: number, q: DnsMessage, question: DnsQuestion, payload: Uint8Array): void {
    const c = this.link.counters;
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
    sock.send(p.query, s);
    p.timer = setTimeout(this.link.guard(() => {
      if (this.pending.get(id) !== p) return;
      if (++p.server < Math.min(this.servers.length, 3)) {
        this.transmit(id, p);
        return;
      }
      this.pending.delete(id);
      this.link.counters.dnsFailed++;
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
    unrefTimer(p.timer);
  }

  private socket(family: 4 | 6): UdpSocket {
    const existing = family === 4 ? this.sock4 : this.sock6;
    if (existing) return existing;
    const sock = this.sockets.openUdp(family, {
      onMessage: this.link.guard((msg: Uint8Array, from: HostAddress) => this.upstreamReply(msg, from)),
    });
    if (family === 4) this.sock4 = sock;
    else this.sock6 = sock;
    return sock;
  }

  private upstreamReply(msg: Uint8Array, from: HostAddress): void {
    if (this.closed || msg.length < 12) return;
    const id = (msg[0] << 8) | msg[1];
    const p = this.pending.get(id);
    if (!p) return;
    const s = this.servers[p.server];
    if (from.port !== s.port || normalizeAddr(from.host) !== normalizeAddr(s.host)) return;
    const m = parseDns(msg);
    if (!m || !(m.flags & DNS_FLAG_QR) || m.questions.length !== 1) return;
    const mq = m.questions[0];
    if (mq.type !== p.question.type || mq.class !== p.question.class || mq.name.toLowerCase() !== p.question.name.toLowerCase()) return;
    this.pending.delete(id);
    if (p.timer) clearTimeout(p.timer);
    let out: Uint8Array = new Uint8Array(msg);
    out[0] = p.origId >> 8;
    out[1] = p.origId & 255;
    if (out.length + 28 > this.link.mtu) {
      // Too big for one unfragmented datagram: tell the guest to retry over TCP.
      out = buildDns({ ...m, id: p.origId, flags: m.flags | DNS_FLAG_TC, answers: [], authorities: [], additionals: [] });
    }
    this.link.sendUdp(USER_DNS, 53, p.guestIp, p.guestPort, out);
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

function ip4Bytes(ip: number): Uint8Array {
  return new Uint8Array([ip >>> 24, (ip >>> 16) & 255, (ip >>> 8) & 255, ip & 255]);
}

function normalizeAddr(a: string): string {
  return a.startsWith("::ffff:") && a.includes(".") ? a.slice(7) : a.toLowerCase();
}

