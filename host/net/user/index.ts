/**
 * User-mode networking, like QEMU's `-netdev user` (slirp): the guest's NIC is plugged into a
 * virtual network 10.0.2.0/24 whose other members this backend plays (network.ts), and the
 * guest's TCP and UDP flows are carried on the host's sockets, reached through HostSockets, so
 * no privileges or host set-up are needed. Only IPv4; IP fragments are dropped.
 *
 * UserNet is the router: it takes the guest's frames, answers ARP and ping itself and hands the
 * rest to the DHCP server (dhcp.ts), the DNS server (dns.ts), TCP (tcp.ts) or UDP (udp.ts); hostfwd
 * listeners (hostfwd.ts) open connections to the guest. What the guest may reach on the host is
 * decided in one place, hostDestination(). Every host socket the guest makes the host open
 * counts against a SocketBudget shared by the VM's NICs. Frames for the guest go through the
 * GuestLink (link.ts): always asynchronously, then onWake() once per batch.
 */

import type { NetBackend } from "../../devices/backends";
import type { HostAddress } from "../host-sockets";
import { DEFAULT_VM_SOCKETS, SocketBudget } from "../budget";
import {
  ARP_REPLY,
  ARP_REQUEST,
  DHCP_SERVER_PORT,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  ICMP_ECHO_REPLY,
  ICMP_ECHO_REQUEST,
  IPPROTO_ICMP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  buildArp,
  buildEthernet,
  buildIcmpEcho,
  ip4ToString,
  isFragment,
  isGroupMac,
  macEquals,
  parseArp,
  parseEthernet,
  parseIPv4,
  parseIcmp,
  parseMac,
  parseTcp,
  parseUdp,
  type Mac,
} from "../packet";
import { serveDhcp } from "./dhcp";
import { DnsProxy } from "./dns";
import { HostForwards, type HostFwdStatus } from "./hostfwd";
import { GuestLink } from "./link";
import { HOST_LOOPBACK, LIMITED_BROADCAST, USER_DNS, USER_GATEWAY, USER_GATEWAY_MAC, inSubnet, isRoutable } from "./network";
import { loopbackPorts, type UserNetOptions } from "./options";
import { TcpRelay } from "./tcp";
import { UdpRelay } from "./udp";

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

export class UserNet implements NetBackend {
  private readonly link: GuestLink;
  private readonly restrict: boolean;
  /** Ports of the host's 127.0.0.1 the guest may reach, or "all". */
  private readonly loopback: ReadonlySet<number> | "all";
  private readonly dns: DnsProxy;
  private readonly tcp: TcpRelay;
  private readonly udp: UdpRelay;
  private readonly forwards: HostForwards;

  constructor(opts: UserNetOptions = {}) {
    const sockets = opts.hostSockets;
    if (!sockets) throw new Error("user-mode networking needs host sockets, which this platform does not provide");
    const mac = typeof opts.mac === "string" ? parseMac(opts.mac) : (opts.mac ?? parseMac(USER_GATEWAY_MAC));
    if (!mac || mac.length !== 6 || isGroupMac(mac)) throw new Error(`usernet: invalid gateway MAC address ${String(opts.mac)}`);
    const mtu = opts.mtu ?? 1500;
    if (!(mtu >= 576 && mtu <= 65535)) throw new Error(`usernet: MTU ${opts.mtu} outside 576-65535`);
    this.restrict = opts.restrict ?? false;
    this.loopback = loopbackPorts(opts.loopback ?? "all");
    this.link = new GuestLink(new Uint8Array(mac), mtu, opts.onWake, opts.onError ?? ((e) => console.error("usernet:", e)));
    const budget = opts.budget ?? new SocketBudget(DEFAULT_VM_SOCKETS);
    const destination = (dst: number, port: number) => this.hostDestination(dst, port);
    this.dns = new DnsProxy(this.link, sockets, opts.dns ?? {}, this.restrict);
    this.tcp = new TcpRelay(this.link, sockets, budget, destination);
    this.udp = new UdpRelay(this.link, sockets, budget, destination);
    this.forwards = new HostForwards(opts.hostfwd ?? [], sockets, this.tcp, this.link);
  }

  /** Largest IP packet sent to the guest. */
  get mtu(): number {
    return this.link.mtu;
  }

  /** Resolves once every hostfwd port listens (with the bound ports); rejects if one cannot. */
  ready(): Promise<HostFwdStatus[]> {
    return this.forwards.ready;
  }

  // --- NetBackend ---------------------------------------------------------------------------

  send(frame: Uint8Array): void {
    if (this.link.isClosed) return;
    this.link.counters.framesFromGuest++;
    this.link.counters.bytesFromGuest += frame.length;
    try {
      this.input(frame);
    } catch (e) {
      this.link.report(e);
    }
  }

  attach(receive: (frame: Uint8Array) => void): void {
    this.link.attach(receive);
  }

  /** Closes every socket and listener and stops every timer; idempotent. */
  close(): void {
    if (this.link.isClosed) return;
    this.link.close();
    this.tcp.close();
    this.udp.close();
    this.dns.close();
    this.forwards.close();
  }

  stats(): UserNetStats {
    const c = this.link.counters;
    const tcp = this.tcp.counts();
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
        active: tcp.active,
        closing: tcp.closing,
        outbound: c.tcpOutbound,
        inbound: c.tcpInbound,
        refused: c.tcpRefused,
        resets: c.tcpResets,
        retransmits: c.tcpRetransmits,
        hostPaused: tcp.hostPaused,
      },
      udp: { bindings: this.udp.size, datagramsOut: c.udpOut, datagramsIn: c.udpIn },
      hostfwd: this.forwards.statuses(),
    };
  }

  /**
   * Where the guest's TCP or UDP to dst:port goes on the host, or null when the guest may not go
   * there: the one place restrict, the loopback policy and the routable-address check apply.
   */
  private hostDestination(dst: number, port: number): HostAddress | null {
    if (this.restrict) return null;
    if (dst === USER_GATEWAY) return this.loopback === "all" || this.loopback.has(port) ? { host: HOST_LOOPBACK, port } : null;
    // TCP to 10.0.2.3:53 is proxied to the upstream nameserver (UDP queries never get here:
    // the DNS proxy answers them). The operator chose that server, so the loopback policy
    // does not apply to it.
    if (dst === USER_DNS) return port === 53 ? this.dns.tcpUpstream() : null;
    return isRoutable(dst) ? { host: ip4ToString(dst), port } : null;
  }

  // --- frames from the guest ---------------------------------------------------------------

  private input(frame: Uint8Array): void {
    const eth = parseEthernet(frame);
    if (!eth) {
      this.link.counters.malformed++;
      return;
    }
    if (!isGroupMac(eth.dst) && !macEquals(eth.dst, this.link.gwMac)) {
      this.link.counters.ignored++; // unicast to someone else
      return;
    }
    if (eth.etherType === ETHERTYPE_ARP) this.inputArp(eth.payload);
    else if (eth.etherType === ETHERTYPE_IPV4) this.inputIp(eth.src, eth.payload);
    else this.link.counters.ignored++;
  }

  private inputArp(b: Uint8Array): void {
    const arp = parseArp(b);
    if (!arp) {
      this.link.counters.malformed++;
      return;
    }
    if (arp.senderIp !== USER_GATEWAY && arp.senderIp !== USER_DNS) this.learnGuestMac(arp.senderMac);
    if (arp.op === ARP_REQUEST && (arp.targetIp === USER_GATEWAY || arp.targetIp === USER_DNS) && !isGroupMac(arp.senderMac)) {
      const reply = buildArp({
        op: ARP_REPLY,
        senderMac: this.link.gwMac,
        senderIp: arp.targetIp,
        targetMac: arp.senderMac,
        targetIp: arp.senderIp,
      });
      this.link.counters.arpReplies++;
      this.link.emitFrame(buildEthernet(arp.senderMac, this.link.gwMac, ETHERTYPE_ARP, reply));
      return;
    }
    if (arp.op === ARP_REPLY) return;
    this.link.counters.ignored++;
  }

  private inputIp(srcMac: Mac, b: Uint8Array): void {
    const ip = parseIPv4(b);
    if (!ip) {
      this.link.counters.malformed++;
      return;
    }
    if (isFragment(ip) || ip.src === USER_GATEWAY || ip.src === USER_DNS || (ip.src >>> 24) === 127 || ip.src >>> 28 >= 14) {
      this.link.counters.ignored++;
      return;
    }
    if (ip.protocol === IPPROTO_UDP) {
      const udp = parseUdp(ip.payload, ip.src, ip.dst);
      if (!udp) {
        this.link.counters.malformed++;
        return;
      }
      this.learnGuestMac(srcMac);
      if (udp.dstPort === DHCP_SERVER_PORT && (ip.dst === LIMITED_BROADCAST || ip.dst === USER_GATEWAY)) serveDhcp(this.link, udp.payload);
      else if (!inSubnet(ip.src)) this.link.counters.ignored++;
      else if (ip.dst === USER_DNS && udp.dstPort === 53) this.dns.query(ip.src, udp.srcPort, udp.payload);
      else this.udp.output(ip, udp.srcPort, udp.dstPort, udp.payload);
      return;
    }
    if (ip.protocol === IPPROTO_TCP) {
      const seg = parseTcp(ip.payload, ip.src, ip.dst);
      if (!seg) {
        this.link.counters.malformed++;
        return;
      }
      this.learnGuestMac(srcMac);
      if (inSubnet(ip.src)) this.tcp.input(ip, seg);
      else this.link.counters.ignored++;
      return;
    }
    if (ip.protocol === IPPROTO_ICMP) {
      const icmp = parseIcmp(ip.payload);
      if (!icmp) {
        this.link.counters.malformed++;
        return;
      }
      this.learnGuestMac(srcMac);
      if (icmp.type === ICMP_ECHO_REQUEST && icmp.code === 0 && inSubnet(ip.src) && (ip.dst === USER_GATEWAY || ip.dst === USER_DNS)) {
        this.link.counters.icmpEchoReplies++;
        this.link.emitIp(ip.dst, ip.src, IPPROTO_ICMP, buildIcmpEcho(ICMP_ECHO_REPLY, icmp.id, icmp.seq, icmp.data));
      } else this.link.counters.ignored++;
      return;
    }
    this.link.counters.ignored++;
  }

  private learnGuestMac(mac: Mac): void {
    if (this.link.learnGuestMac(mac)) this.tcp.guestMacKnown();
  }
}
