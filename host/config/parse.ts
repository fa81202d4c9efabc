// Checking what a user asked for and turning it into a VmConfig: the one parser behind the
// `boot` flags (mapped onto the same fields by cli/args.ts) and the API's JSON definitions.
// Every error names the field, the way its reader knows it: `--drive` on the command line,
// `'drives'` in a definition.
import { PAGING_MODES, type Paging } from "../core/core";
import { JIT_MODES, type JitMode } from "../jit/tier";
import { parseNetdev, isUserNetdev, netdevHasOption } from "../net/netdev";
import { userNetFixedFds, formatUserNetSpec } from "../net/user/options";
import { DEFAULT_VM_SOCKETS } from "../net/budget";
import { DISK_FORMATS, type DiskFormat } from "../disk/formats";
import { printable } from "../util/text";
import {
  DEFAULT_DEVICES, type DriveConfig, type DriveInterface, type FirmwareChoice, type Mode, type NicConfig, type NicModel,
  type OnFailure, type UsbDeviceConfig, type VmConfig, type VmDefinition,
} from "./vm-config";

/** A field of a VM's configuration is wrong; the message names it and says what it takes. */
export class ConfigError extends Error {
  constructor(
    /** The field, as in a definition: "memory", "drives", "cpu.weight". */
    readonly field: string,
    message: string,
  ) {
    // Messages quote what they were given: its control characters (a newline, a terminal's
    // escape sequences) are shown escaped, so the error stays one line and prints as text.
    super(printable(message));
  }
}

export interface ParseOptions {
  /** How messages name fields: as the `boot` flags (--memory) or as a definition's fields ('memory'). */
  naming: "flags" | "fields";
  /** The mode when none is given: full for `boot`, para for `start` and definitions. */
  defaultMode: Mode;
  /**
   * The host loopback ports user-mode networking may reach when a netdev says nothing: "on" for
   * `boot` (QEMU's behaviour), "off" for a daemon's VMs (other VMs' hostfwd ports live there).
   */
  defaultLoopback: "on" | "off";
}

/** How a definition from the control API is read. */
export const DEFINITION_PARSING: ParseOptions = { naming: "fields", defaultMode: "para", defaultLoopback: "off" };

const FIELDS = ["name", "mode", "paging", "jit", "bios", "kernel", "initrd", "append", "dtb", "memory", "smp", "drives", "nets", "usb", "rng", "virtioLegacy", "noReboot", "cpu", "limits", "onFailure"] as const;
const FLAGS: Record<string, string> = {
  drives: "--drive", nets: "--net", usb: "--usb", smp: "--smp", memory: "--memory", dtb: "-dtb", rng: "-device virtio-rng-device", virtioLegacy: "-global virtio-mmio.force-legacy", noReboot: "-no-reboot",
};
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const MAX_WEIGHT = 10_000;
const MAX_SOCKETS = 65_536;
const MAX_HARTS = 8;

/** "256M", "1G", "65536K", "512" (MiB) → bytes; throws an Error saying what is wrong. */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)([KMGT]?)(i?B)?$/i.exec(text.trim());
  if (!m) throw new Error(`invalid memory size '${text}' (use e.g. 256M or 1G)`);
  const unit = m[2].toUpperCase();
  const mult = unit === "K" ? 2 ** 10 : unit === "G" ? 2 ** 30 : unit === "T" ? 2 ** 40 : 2 ** 20;
  const bytes = Math.floor(Number(m[1]) * mult);
  if (bytes < 2 ** 20) throw new Error(`memory size '${text}' is too small (at least 1M)`);
  if (bytes % 4096 !== 0) throw new Error(`memory size '${text}' is not a multiple of 4K`);
  return bytes;
}

/**
 * Check `raw` (untrusted: JSON from a client, or the flags cli/args.ts gathered) and make a
 * VmConfig of it; throws a ConfigError naming the field.
 */
export function parseVmConfig(raw: unknown, opts: ParseOptions): VmConfig {
  const flags = opts.naming === "flags";
  // A field's name in messages: `--smp` or `'smp'`.
  const nameOf = (field: string) => (flags ? FLAGS[field] ?? `--${field}` : `'${field}'`);
  const bad = (field: string, message: string): never => {
    throw new ConfigError(field, message);
  };
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) bad("", "a VM definition is a JSON object");
  const d = raw as Record<string, unknown>;
  for (const k of Object.keys(d)) {
    if (!(FIELDS as readonly string[]).includes(k)) bad(k, `unknown field '${k}' (fields: ${FIELDS.join(", ")})`);
  }
  const str = (k: string): string | undefined => {
    if (d[k] === undefined) return undefined;
    if (typeof d[k] !== "string") bad(k, `${nameOf(k)} must be a string`);
    return d[k] as string;
  };
  const name = str("name");
  if (!name || !NAME.test(name)) bad("name", `${nameOf("name")} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`);
  const modeText = str("mode") ?? opts.defaultMode;
  if (modeText !== "para" && modeText !== "full") bad("mode", flags ? `--mode must be para or full, not '${modeText}'` : `'mode' must be "para" or "full", not "${modeText}"`);
  const mode = modeText as Mode;
  const paging = str("paging") ?? "nested";
  if (!(PAGING_MODES as readonly string[]).includes(paging)) bad("paging", flags ? `--paging must be nested or shadow, not '${paging}'` : `'paging' must be "nested" or "shadow", not "${paging}"`);
  const jit = str("jit");
  if (jit !== undefined && !(JIT_MODES as readonly string[]).includes(jit)) bad("jit", flags ? `--jit must be off, on or all, not '${jit}'` : `'jit' must be "off", "on" or "all", not "${jit}"`);
  const smpRaw = d.smp ?? 1;
  // The command line's text and JSON's number alike.
  const smp = typeof smpRaw === "string" && /^\d+$/.test(smpRaw) ? Number(smpRaw) : smpRaw;
  if (typeof smp !== "number" || !Number.isInteger(smp) || smp < 1 || smp > MAX_HARTS) {
    bad("smp", `${nameOf("smp")} must be a whole number from 1 to ${MAX_HARTS}${flags ? `, not '${String(smpRaw)}'` : ""}`);
  }
  const memoryRaw = d.memory ?? "256M";
  if (typeof memoryRaw !== "string" && typeof memoryRaw !== "number") bad("memory", `${nameOf("memory")} must be a size like "256M" or a number of MiB`);
  let memory = 0;
  try {
    memory = parseSize(String(memoryRaw));
  } catch (e) {
    bad("memory", (e as Error).message);
  }
  const biosText = str("bios");
  const bios: FirmwareChoice = biosText === undefined ? (mode === "para" ? "builtin" : "default")
    : biosText === "none" || biosText === "builtin" ? biosText : { file: biosText };
  const list = (k: "drives" | "nets" | "usb"): string[] => {
    const v = d[k] ?? [];
    if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) bad(k, `${nameOf(k)} must be a list of strings, as the ${FLAGS[k]} flag takes`);
    return v as string[];
  };
  // Sub-option errors read "--drive if=scsi: ..." on the command line, "'drives': if=scsi: ..." in a definition.
  const within = <T>(k: "drives" | "nets" | "usb", parse: () => T): T => {
    try {
      return parse();
    } catch (e) {
      if (e instanceof ConfigError) throw e;
      const detail = (e as Error).message;
      // "if=scsi: ..." follows the name after a space, ": unknown option ..." right after it.
      const joined = detail.startsWith(":") ? detail : ` ${detail}`;
      return bad(k, flags ? `${FLAGS[k]}${joined}` : `'${k}':${joined.replace(/^:/, "")}`);
    }
  };
  const drives = list("drives").map((s) => within("drives", () => parseDrive(s, DEFAULT_DEVICES[mode].drive)));
  const nets = list("nets").map((s) => within("nets", () => parseNic(s, DEFAULT_DEVICES[mode].nic, opts.defaultLoopback)));
  const usb = d.usb === undefined ? undefined : list("usb").reduce<UsbDeviceConfig[]>((all, s) => [...all, within("usb", () => parseUsbDevice(s, all))], []);

  const cpu = object(d, "cpu", ["weight", "cap"], bad);
  const weight = cpu.weight ?? 1;
  if (typeof weight !== "number" || !(weight > 0 && weight <= MAX_WEIGHT)) bad("cpu.weight", `'cpu.weight' must be a number in (0, ${MAX_WEIGHT}]`);
  const cap = cpu.cap;
  if (cap !== undefined && (typeof cap !== "number" || !(cap > 0 && cap <= 100))) bad("cpu.cap", `'cpu.cap' must be a percentage of one pCPU in (0, 100]`);
  const { sockets = DEFAULT_VM_SOCKETS, ...limits } = object(d, "limits", ["diskBytesPerSec", "diskOpsPerSec", "netBytesPerSec", "sockets"], bad);
  for (const [k, v] of Object.entries(limits)) {
    if (typeof v !== "number" || !(v > 0) || !Number.isFinite(v)) bad(`limits.${k}`, `'limits.${k}' must be a positive number`);
  }
  if (!Number.isInteger(sockets) || sockets < 0 || sockets > MAX_SOCKETS) bad("limits.sockets", `'limits.sockets' must be a whole number from 0 to ${MAX_SOCKETS}`);
  const bool = (k: "rng" | "virtioLegacy" | "noReboot"): boolean => {
    if (d[k] !== undefined && typeof d[k] !== "boolean") bad(k, `${nameOf(k)} must be true or false`);
    return d[k] === true;
  };
  const onFailure = str("onFailure") ?? "keep";
  if (onFailure !== "keep" && onFailure !== "restart" && onFailure !== "destroy") bad("onFailure", `'onFailure' must be "keep", "restart" or "destroy"`);

  const config: VmConfig = {
    name: name!, mode, paging: paging as Paging, memory, smp: smp as number, bios, drives, nets,
    rng: bool("rng"), virtioLegacy: bool("virtioLegacy"), noReboot: bool("noReboot"),
    cpu: { weight, ...(cap !== undefined ? { cap: cap / 100 } : {}) },
    limits: { ...limits, sockets } as VmConfig["limits"],
    onFailure: onFailure as OnFailure,
  };
  if (jit !== undefined) config.jit = jit as JitMode;
  if (usb) config.usb = usb;
  for (const k of ["kernel", "initrd", "append", "dtb"] as const) {
    const v = str(k);
    if (v !== undefined) config[k] = v;
  }
  return config;
}

/**
 * The definition parseVmConfig reads back to `config` (with DEFINITION_PARSING): how a snapshot
 * keeps a VM's configuration, so that restoring one checks it like any other definition.
 * Everything is spelled out, defaults included, so the defaults of the reader do not matter.
 */
export function vmDefinition(config: VmConfig): VmDefinition {
  const { bios } = config;
  const memory = config.memory % 2 ** 20 === 0 ? `${config.memory / 2 ** 20}M` : `${config.memory / 1024}K`;
  const d: VmDefinition = {
    name: config.name, mode: config.mode, paging: config.paging, ...(config.jit ? { jit: config.jit } : {}), memory, smp: config.smp,
    // "default" is what full mode means when it names no firmware.
    ...(bios === "default" ? {} : { bios: typeof bios === "string" ? bios : bios.file }),
    ...(config.kernel !== undefined ? { kernel: config.kernel } : {}),
    ...(config.initrd !== undefined ? { initrd: config.initrd } : {}),
    ...(config.append !== undefined ? { append: config.append } : {}),
    ...(config.dtb !== undefined ? { dtb: config.dtb } : {}),
    drives: config.drives.map((dr) => [
      `file=${dr.file}`, ...(dr.format ? [`format=${dr.format}`] : []), `if=${dr.if}`, `readonly=${dr.readOnly ? "on" : "off"}`,
      ...(dr.serial !== undefined ? [`serial=${dr.serial}`] : []),
    ].join(",")),
    nets: config.nets.map((n) => `${n.netdev.kind === "user" ? formatUserNetSpec(n.netdev.options) : `switch=${n.netdev.name}`},model=${n.model}`),
    ...(config.usb ? { usb: config.usb.map(usbSpec) } : {}),
    rng: config.rng, virtioLegacy: config.virtioLegacy, noReboot: config.noReboot,
    cpu: { weight: config.cpu.weight, ...(config.cpu.cap !== undefined ? { cap: Math.round(config.cpu.cap * 1e8) / 1e6 } : {}) },
    limits: { ...config.limits },
    onFailure: config.onFailure,
  };
  return d;
}

/** Host file descriptors a USB device is counted for (its disk image, or its socket and client). */
export const USB_DEVICE_FDS = 2;

/** Host file descriptors the VM may hold: its disks, host sockets, DNS and hostfwd listeners, USB devices. */
export function vmFileDescriptors(config: VmConfig): number {
  let fds = config.drives.length + config.limits.sockets + (config.usb?.length ?? 0) * USB_DEVICE_FDS;
  for (const n of config.nets) if (n.netdev.kind === "user") fds += userNetFixedFds(n.netdev.options);
  return fds;
}

/**
 * "file=disk.img,format=qcow2,if=ide,readonly=on,serial=abc" (QEMU's key=value list; a bare
 * path means file=); `defaultIf` when if= is not given, the format probed when it is not.
 */
function parseDrive(spec: string, defaultIf: DriveInterface): DriveConfig {
  const out: DriveConfig = { file: "", readOnly: false, if: defaultIf };
  for (const part of spec.split(",")) {
    const eq = part.indexOf("=");
    const key = eq < 0 ? "file" : part.slice(0, eq);
    const value = eq < 0 ? part : part.slice(eq + 1);
    if (key === "file") out.file = value;
    else if (key === "readonly") {
      if (!["on", "off", "true", "false"].includes(value)) throw new Error(`readonly=${value}: use on or off`);
      out.readOnly = value === "on" || value === "true";
    } else if (key === "serial") {
      if (value.length > 20) throw new Error(`serial=${value}: at most 20 characters`);
      out.serial = value;
    } else if (key === "if") {
      if (value !== "ide" && value !== "virtio") throw new Error(`if=${value}: use ide or virtio`);
      out.if = value;
    } else if (key === "format") {
      if (!(DISK_FORMATS as readonly string[]).includes(value)) throw new Error(`format=${value}: use ${DISK_FORMATS.join(" or ")}`);
      out.format = value as DiskFormat;
    } else throw new Error(`: unknown option '${key}' (known: file, format, if, readonly, serial)`);
  }
  if (!out.file) throw new Error(`${spec}: give the image as file=<path>`);
  return out;
}

/**
 * "user[,hostfwd=...]" or "switch=NAME", each with an optional model=ethoc|virtio (`defaultModel`
 * otherwise). A user netdev that names no loopback= gets `defaultLoopback`.
 */
export function parseNic(spec: string, defaultModel: NicModel, defaultLoopback: "on" | "off"): NicConfig {
  let model = defaultModel;
  const rest: string[] = [];
  for (const part of spec.split(",")) {
    if (!part.startsWith("model=")) {
      rest.push(part);
      continue;
    }
    const value = part.slice("model=".length);
    if (value !== "ethoc" && value !== "virtio") throw new Error(`model=${value}: use ethoc or virtio`);
    model = value;
  }
  let netdev = rest.join(",");
  // "on" is user-mode networking's own default (and restrict=on overrides it).
  if (defaultLoopback === "off" && isUserNetdev(netdev) && !netdevHasOption(netdev, "loopback")) netdev += ",loopback=off";
  try {
    const parsed = parseNetdev(netdev);
    // The loopback policy is always stated, so that a configuration written out (a snapshot)
    // reads back the same whatever the reader's default.
    if (parsed.kind === "user") parsed.options.loopback ??= parsed.options.restrict ? "none" : "all";
    return { model, netdev: parsed };
  } catch (e) {
    throw new Error((e as Error).message.replace(/^netdev /, ""));
  }
}

function object(d: Record<string, unknown>, key: string, fields: string[], bad: (field: string, message: string) => never): Record<string, number | undefined> {
  const v = d[key];
  if (v === undefined) return {};
  if (typeof v !== "object" || v === null || Array.isArray(v)) bad(key, `'${key}' must be an object`);
  for (const k of Object.keys(v as object)) if (!fields.includes(k)) bad(`${key}.${k}`, `unknown field '${key}.${k}' (fields: ${fields.join(", ")})`);
  return v as Record<string, number | undefined>;
}

/** Most USB devices on the controller: its root ports. */
const USB_PORTS = 8;
const USB_TYPES: Record<string, UsbDeviceConfig["type"]> = {
  kbd: "usb-kbd", "usb-kbd": "usb-kbd", storage: "usb-storage", "usb-storage": "usb-storage", serial: "usb-serial", "usb-serial": "usb-serial",
};
const USB_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * A --usb spec: "kbd", "storage,file=IMG[,format=..][,readonly=on][,serial=S]" or
 * "serial,socket=PATH", each with [,id=NAME][,port=N]; `before` are the devices already listed
 * (ids and ports must differ; the default id is the type's short name and a number).
 */
export function parseUsbDevice(spec: string, before: readonly UsbDeviceConfig[]): UsbDeviceConfig {
  const [head = "", ...parts] = spec.split(",");
  const type = USB_TYPES[head];
  if (!type) throw new Error(`${head || spec}: the USB devices are kbd, storage and serial`);
  const props = new Map<string, string>();
  for (const p of parts) {
    const eq = p.indexOf("=");
    if (eq < 0) throw new Error(`${spec}: '${p}' is not key=value`);
    props.set(p.slice(0, eq), p.slice(eq + 1));
  }
  const known = type === "usb-kbd" ? ["id", "port"] : type === "usb-storage" ? ["id", "port", "file", "format", "readonly", "serial"] : ["id", "port", "socket"];
  for (const k of props.keys()) if (!known.includes(k)) throw new Error(`${head}: unknown option '${k}' (known: ${known.join(", ")})`);
  const short = type.slice(4);
  let id = props.get("id");
  if (id === undefined) for (let n = 0; id === undefined; n++) if (!before.some((d) => d.id === `${short}${n}`)) id = `${short}${n}`;
  if (!USB_ID.test(id)) throw new Error(`id=${id}: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`);
  if (before.some((d) => d.id === id)) throw new Error(`id=${id}: two USB devices with that id`);
  if (before.length >= USB_PORTS) throw new Error(`${spec}: the USB controller has ${USB_PORTS} ports`);
  const portText = props.get("port");
  let port: number | undefined;
  if (portText !== undefined) {
    port = /^\d+$/.test(portText) ? Number(portText) : NaN;
    if (!(port >= 1 && port <= USB_PORTS)) throw new Error(`port=${portText}: a root port from 1 to ${USB_PORTS}`);
    if (before.some((d) => d.port === port)) throw new Error(`port=${portText}: two USB devices on that port`);
  }
  const at = { id, ...(port !== undefined ? { port } : {}) };
  if (type === "usb-kbd") return { type, ...at };
  if (type === "usb-serial") {
    const socket = props.get("socket");
    if (!socket) throw new Error(`${head}: give the host's end as socket=PATH (a Unix socket wasmvisor listens on)`);
    return { type, ...at, socket };
  }
  const drive = parseDrive([...props].filter(([k]) => k !== "id" && k !== "port").map(([k, v]) => `${k}=${v}`).join(","), "virtio");
  return { type, ...at, file: drive.file, readOnly: drive.readOnly, ...(drive.format ? { format: drive.format } : {}), ...(drive.serial !== undefined ? { serial: drive.serial } : {}) };
}

/** The --usb spec parseUsbDevice reads back to `d`. */
export function usbSpec(d: UsbDeviceConfig): string {
  const at = `id=${d.id}${d.port !== undefined ? `,port=${d.port}` : ""}`;
  if (d.type === "usb-kbd") return `kbd,${at}`;
  if (d.type === "usb-serial") return `serial,socket=${d.socket},${at}`;
  return `storage,file=${d.file}${d.format ? `,format=${d.format}` : ""},readonly=${d.readOnly ? "on" : "off"}${d.serial !== undefined ? `,serial=${d.serial}` : ""},${at}`;
}
