/**
 * A NIC's backend as a QEMU-style string:
 *
 *   user[,hostfwd=tcp::8080-:80]...[,restrict=on][,loopback=on|off|PORT]...
 *                                      user-mode networking (UserNet)
 *   switch=NAME                        a port on the named in-process Ethernet switch
 *
 * Parsing only: this file loads no backend (a VM definition is checked without them);
 * createNetBackend (backend.ts) makes the backend a spec names.
 */

import { parseUserNetSpec, type UserNetOptions } from "./user/options";

export type NetdevSpec = { kind: "user"; options: UserNetOptions } | { kind: "switch"; name: string };

/** Whether `spec` asks for user-mode networking ("user[,...]"). */
export function isUserNetdev(spec: string): boolean {
  const s = spec.trim();
  return s === "user" || s.startsWith("user,");
}

/** Throws an Error naming what is wrong. */
export function parseNetdev(spec: string): NetdevSpec {
  const s = spec.trim();
  if (isUserNetdev(s)) return { kind: "user", options: parseUserNetSpec(s) };
  if (s.startsWith("switch=")) {
    const name = s.slice("switch=".length);
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name))
      throw new Error(`netdev '${spec}': switch name must be 1-64 letters, digits, '_', '.' or '-'`);
    return { kind: "switch", name };
  }
  throw new Error(`netdev '${spec}': expected 'user[,hostfwd=...]' or 'switch=NAME'`);
}

/**
 * Whether a netdev string names option `key` (e.g. "loopback"), so that a caller can append a
 * default only when the user gave none.
 */
export function netdevHasOption(spec: string, key: string): boolean {
  return spec.split(",").some((part) => part.startsWith(`${key}=`));
}
