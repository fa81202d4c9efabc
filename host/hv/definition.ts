// A VM definition (JSON from a file or the API) checked field by field and turned into the same
// BootOptions the `boot` flags give, so both paths build machines identically.
import { parseSize, parseDrive, parseNet, DEFAULT_DEVICES, CliError, type BootOptions, type Mode } from "../cli/args";
import { PAGING_MODES, type Paging } from "../core/core";
import { badRequest, type VmDefinition } from "./types";
import type { BandwidthLimits } from "../machine/virt";
import { isUserNetdev, netdevHasOption, parseNetdev } from "../net/netdev";
import { DEFAULT_VM_SOCKETS } from "../net/budget";
import { userNetFixedFds } from "../net/user";

export interface ParsedDefinition {
  definition: VmDefinition;
  options: BootOptions;
  weight: number;
  /** Fraction of one pCPU. */
  cap?: number;
  limits: BandwidthLimits;
  /** Host sockets its user-mode networking may hold. */
  sockets: number;
  /** File descriptors the VM may hold on the host: disks, sockets, DNS and hostfwd listeners. */
  fds: number;
  onFailure: "keep" | "restart" | "destroy";
}

const FIELDS = ["name", "mode", "paging", "bios", "kernel", "initrd", "append", "memory", "smp", "drives", "nets", "cpu", "limits", "onFailure"];
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const MAX_WEIGHT = 10_000;
const MAX_SOCKETS = 65_536;

/** Check `raw` (untrusted JSON) and turn it into boot options; throws a 400 HvError naming the field. */
export function parseDefinition(raw: unknown): ParsedDefinition {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw badRequest("a VM definition is a JSON object");
  const d = raw as Record<string, unknown>;
  for (const k of Object.keys(d)) if (!FIELDS.includes(k)) throw badRequest(`unknown field '${k}' (fields: ${FIELDS.join(", ")})`);
  const str = (k: string): string | undefined => {
    if (d[k] === undefined) return undefined;
    if (typeof d[k] !== "string") throw badRequest(`'${k}' must be a string`);
    return d[k] as string;
  };
  const name = str("name");
  if (!name || !NAME.test(name)) throw badRequest(`'name' must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`);
  const mode = (str("mode") ?? "para") as Mode;
  if (mode !== "para" && mode !== "full") throw badRequest(`'mode' must be "para" or "full", not "${mode}"`);
  const paging = (str("paging") ?? "nested") as Paging;
  if (!PAGING_MODES.includes(paging)) throw badRequest(`'paging' must be "nested" or "shadow", not "${paging}"`);
  const list = (k: string): string[] => {
    const v = d[k] ?? [];
    if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) throw badRequest(`'${k}' must be a list of strings, as the --${k.slice(0, -1)} flag takes`);
    return v as string[];
  };
  const smp = d.smp ?? 1;
  if (!Number.isInteger(smp) || (smp as number) < 1 || (smp as number) > 8) throw badRequest(`'smp' must be a whole number from 1 to 8`);
  const cpu = object(d, "cpu", ["weight", "cap"]);
  const weight = cpu.weight ?? 1;
  if (typeof weight !== "number" || !(weight > 0 && weight <= MAX_WEIGHT)) throw badRequest(`'cpu.weight' must be a number in (0, ${MAX_WEIGHT}]`);
  const cap = cpu.cap;
  if (cap !== undefined && (typeof cap !== "number" || !(cap > 0 && cap <= 100))) throw badRequest(`'cpu.cap' must be a percentage of one pCPU in (0, 100]`);
  const { sockets = DEFAULT_VM_SOCKETS, ...limits } = object(d, "limits", ["diskBytesPerSec", "diskOpsPerSec", "netBytesPerSec", "sockets"]);
  for (const [k, v] of Object.entries(limits)) {
    if (typeof v !== "number" || !(v > 0) || !Number.isFinite(v)) throw badRequest(`'limits.${k}' must be a positive number`);
  }
  if (!Number.isInteger(sockets) || sockets < 0 || sockets > MAX_SOCKETS) throw badRequest(`'limits.sockets' must be a whole number from 0 to ${MAX_SOCKETS}`);

  const onFailure = str("onFailure") ?? "keep";
  if (onFailure !== "keep" && onFailure !== "restart" && onFailure !== "destroy") throw badRequest(`'onFailure' must be "keep", "restart" or "destroy"`);
  let options: BootOptions;
  try {
    const memory = d.memory ?? "256M";
    if (typeof memory !== "string" && typeof memory !== "number") throw new CliError("'memory' must be a size like \"256M\" or a number of MiB");
    options = {
      bios: str("bios"), mode, paging,
      kernel: str("kernel"), initrd: str("initrd"), append: str("append"),
      memory: parseSize(String(memory)),
      smp: smp as number,
      drives: list("drives").map((s) => parseDrive(s, DEFAULT_DEVICES[mode].drive)),
      // A VM made through the host reaches the host's loopback only on ports its definition
      // names (loopback=PORT), never by default: other VMs' hostfwd ports and local services
      // live there.
      nets: list("nets").map((s) => parseNet(isUserNetdev(s) && !netdevHasOption(s, "loopback") ? `${s},loopback=off` : s, DEFAULT_DEVICES[mode].nic)),
      stats: false,
    };
  } catch (e) {
    if (e instanceof CliError) throw badRequest(e.message.replace(/^--(drive|net)\b:?/, "'$1s':"));
    throw e;
  }
  let fds = options.drives.length + sockets;
  for (const n of options.nets) {
    const spec = parseNetdev(n.netdev);
    if (spec.kind === "user") fds += userNetFixedFds(spec.options);
  }
  return {
    definition: d as unknown as VmDefinition,
    options,
    weight,
    cap: cap === undefined ? undefined : cap / 100,
    limits: limits as BandwidthLimits,
    sockets: sockets as number,
    fds,
    onFailure,
  };
}

function object(d: Record<string, unknown>, key: string, fields: string[]): Record<string, number | undefined> {
  const v = d[key];
  if (v === undefined) return {};
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw badRequest(`'${key}' must be an object`);
  for (const k of Object.keys(v)) if (!fields.includes(k)) throw badRequest(`unknown field '${key}.${k}' (fields: ${fields.join(", ")})`);
  return v as Record<string, number | undefined>;
}
