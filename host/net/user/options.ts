/**
 * What a user-mode NIC is configured with: the options, their QEMU-style string
 * ("user,hostfwd=tcp::8080-:80,restrict=on,loopback=22") and their checks. Parsing and
 * admission (userNetFixedFds) need nothing of the network stack, so this file imports none of it.
 */

import type { HostSockets } from "../host-sockets";
import type { SocketBudget } from "../budget";
import { ip4ToString, parseIp4 } from "../packet";
import { USER_GUEST, checkGuestAddr } from "./network";

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
   * (HostSockets.dnsServers(): on Node, /etc/resolv.conf's).
   */
  servers?: string[];
  /**
   * Names answered locally from a hosts file (read through HostSockets.readHostsFile) before any
   * forwarding. Default "/etc/hosts"; null: none.
   */
  hostsFile?: string | null;
  /**
   * Answer A and AAAA queries through a resolver instead of forwarding: "system" is the host's
   * resolver (HostSockets.lookup: on Node, getaddrinfo, which honours nsswitch); a function gets (name, 4 | 6) and returns
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
  budget?: SocketBudget;
  /** The host's sockets and resolver (required by UserNet; a netdev string cannot give them). */
  hostSockets?: HostSockets;
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

/**
 * The netdev string of `options` (hostfwd, restrict and loopback: what a string can say), which
 * parseUserNetSpec reads back to the same options: how a saved configuration keeps its NICs.
 */
export function formatUserNetSpec(options: Pick<UserNetOptions, "hostfwd" | "restrict" | "loopback">): string {
  const parts = ["user"];
  for (const f of options.hostfwd ?? []) parts.push(`hostfwd=tcp:${f.hostAddr ?? ""}:${f.hostPort}-${f.guestAddr ?? ""}:${f.guestPort}`);
  if (options.restrict !== undefined) parts.push(`restrict=${options.restrict ? "on" : "off"}`);
  const lo = options.loopback;
  if (lo === "all") parts.push("loopback=on");
  else if (lo === "none" || (lo && lo.length === 0)) parts.push("loopback=off");
  else if (lo) parts.push("loopback=off", ...lo.map((p) => `loopback=${p}`));
  return parts.join(",");
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

/** Checks a hostfwd rule given as an object (a string's are checked as parsed); gives its guest address. */
export function checkHostFwd(rule: HostFwd): number {
  if (rule.proto !== "tcp") throw new Error(`hostfwd: protocol ${String(rule.proto)} is not supported (only tcp)`);
  if (rule.hostAddr && parseIp4(rule.hostAddr) === null) throw new Error(`hostfwd: host address '${rule.hostAddr}' is not an IPv4 address`);
  if (!Number.isInteger(rule.hostPort) || rule.hostPort < 0 || rule.hostPort > 65535) throw new Error(`hostfwd: host port ${rule.hostPort} is not in 0-65535`);
  if (!Number.isInteger(rule.guestPort) || rule.guestPort < 1 || rule.guestPort > 65535) throw new Error(`hostfwd: guest port ${rule.guestPort} is not in 1-65535`);
  return checkGuestAddr(rule.guestAddr || ip4ToString(USER_GUEST), "hostfwd");
}

/** "all", or the allowed ports ("none" and [] being the empty set); throws on a bad port. */
export function loopbackPorts(policy: LoopbackPolicy): ReadonlySet<number> | "all" {
  if (policy === "all") return "all";
  const ports = policy === "none" ? [] : policy;
  for (const p of ports) if (!Number.isInteger(p) || p < 1 || p > 65535) throw new Error(`usernet: loopback port ${p} is not in 1-65535`);
  return new Set(ports);
}
