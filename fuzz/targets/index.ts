/** Every fuzz target, most valuable first (the order `npm run fuzz` runs them in). */
import type { Target } from "../engine/target";
import { virtioBlk, virtioConsole, virtioNet, virtioRng } from "./virtio";
import { DEVICE_TARGETS } from "./devices";
import { sbiTarget } from "./sbi";
import { stateTarget } from "./state";
import { qcow2Target } from "./qcow2";
import { loadersTarget } from "./loaders";
import { userNetTarget } from "./user-net";
import { apiTarget } from "./api";
import { guestTarget } from "./guest";

export const TARGETS: readonly Target<any>[] = [virtioBlk, virtioNet, virtioConsole, virtioRng, ...DEVICE_TARGETS, sbiTarget, stateTarget, qcow2Target, loadersTarget, userNetTarget, apiTarget, guestTarget];

export function findTarget(name: string): Target<any> {
  const t = TARGETS.find((t) => t.name === name);
  if (!t) throw new Error(`no fuzz target ${name}: the targets are ${TARGETS.map((t) => t.name).join(", ")}`);
  return t;
}
