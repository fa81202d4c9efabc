/**
 * The DHCP server at 10.0.2.2: it offers the one guest address, 10.0.2.15, with router 10.0.2.2,
 * DNS 10.0.2.3 and a lease of a day, and refuses any other.
 */

import {
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
  buildDhcp,
  optIps,
  optU32,
  optU8,
  parseDhcp,
} from "../packet";
import type { GuestLink } from "./link";
import { LIMITED_BROADCAST, USER_DNS, USER_GATEWAY, USER_GUEST, USER_NETMASK } from "./network";

const DHCP_LEASE_SECONDS = 86400;

/** Answers a DHCP message from the guest (its UDP payload to port 67). */
export function serveDhcp(link: GuestLink, payload: Uint8Array): void {
  const counters = link.counters;
  const m = parseDhcp(payload);
  if (!m || m.op !== 1) {
    counters.malformed++;
    return;
  }
  let type: number;
  let yiaddr = USER_GUEST;
  switch (m.messageType) {
    case DHCPDISCOVER:
      type = DHCPOFFER;
      counters.dhcpOffers++;
      break;
    case DHCPREQUEST: {
      if (m.serverId !== undefined && m.serverId !== USER_GATEWAY) return; // the client chose another server
      const wanted = m.requestedIp ?? m.ciaddr;
      if (wanted === USER_GUEST) {
        type = DHCPACK;
        counters.dhcpAcks++;
      } else {
        type = DHCPNAK;
        yiaddr = 0;
        counters.dhcpNaks++;
      }
      break;
    }
    case DHCPINFORM:
      type = DHCPACK;
      yiaddr = 0;
      counters.dhcpAcks++;
      break;
    default:
      counters.ignored++; // release, decline, server messages
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
  link.sendUdp(USER_GATEWAY, DHCP_SERVER_PORT, dstIp, DHCP_CLIENT_PORT, reply, dstMac);
}
