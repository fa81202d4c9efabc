/**
 * The virtual network user-mode networking plays, as QEMU's slirp lays it out:
 *
 *   10.0.2.2   gateway and host: ARP, ping, DHCP server; TCP/UDP to it reach the host's 127.0.0.1
 *              (the ports the loopback option allows)
 *   10.0.2.3   DNS: ARP, ping, queries on UDP and TCP port 53
 *   10.0.2.15  the guest, handed out by DHCP
 */

import { ip4, parseIp4 } from "../packet";

export const USER_NETWORK = ip4(10, 0, 2, 0);
export const USER_NETMASK = ip4(255, 255, 255, 0);
export const USER_GATEWAY = ip4(10, 0, 2, 2);
export const USER_DNS = ip4(10, 0, 2, 3);
export const USER_GUEST = ip4(10, 0, 2, 15);
/** The MAC the virtual hosts (10.0.2.2 and 10.0.2.3) answer with, as in QEMU. */
export const USER_GATEWAY_MAC = "52:55:0a:00:02:02";

export const LIMITED_BROADCAST = 0xffffffff;
export const SUBNET_BROADCAST = (USER_NETWORK | ~USER_NETMASK) >>> 0;
/** Where 10.0.2.2 leads on the host. */
export const HOST_LOOPBACK = "127.0.0.1";

/** A guest address: in 10.0.2.0/24, not the network, broadcast or virtual hosts' address. */
export function inSubnet(ip: number): boolean {
  return (ip & USER_NETMASK) >>> 0 === USER_NETWORK && ip !== USER_NETWORK && ip !== SUBNET_BROADCAST && ip !== USER_GATEWAY && ip !== USER_DNS;
}

/** Addresses the guest may reach through host sockets (beyond 10.0.2.2, which is the host). */
export function isRoutable(ip: number): boolean {
  const a = ip >>> 24;
  if (a === 0 || a === 127 || a >= 224) return false;
  return (ip & USER_NETMASK) >>> 0 !== USER_NETWORK;
}

/** The guest address `addr` names; throws, saying `where`, unless it is one. */
export function checkGuestAddr(addr: string, where: string): number {
  const ip = parseIp4(addr);
  if (ip === null) throw new Error(`${where}: guest address '${addr}' is not an IPv4 address`);
  if (!inSubnet(ip)) throw new Error(`${where}: guest address '${addr}' is not a guest address in 10.0.2.0/24`);
  return ip;
}
