/** The network backend a netdev spec names (netdev.ts parses them). */

import type { NetBackend } from "../devices/backends";
import { parseNetdev, type NetdevSpec } from "./netdev";
import { getSwitch } from "./switch";
import { UserNet } from "./user";
import type { UserNetOptions } from "./user/options";
import type { Platform } from "../platform/platform";

/** What a backend gets from where it runs rather than from its spec. */
export type NetBackendOptions = Pick<UserNetOptions, "hostSockets" | "budget" | "onWake" | "onError"> & Pick<Platform, "remoteUserNet">;

/** Throws an Error naming what is wrong, e.g. a user netdev where there are no host sockets. */
export function createNetBackend(spec: NetdevSpec | string, opts: NetBackendOptions = {}): NetBackend {
  const d = typeof spec === "string" ? parseNetdev(spec) : spec;
  const { remoteUserNet, ...here } = opts;
  if (d.kind === "user" && remoteUserNet) return remoteUserNet(d.options, { onWake: opts.onWake, onError: opts.onError });
  if (d.kind === "user") return new UserNet({ ...d.options, ...here });
  return getSwitch(d.name).port();
}
