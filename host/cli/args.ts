// Command-line parsing: QEMU's spellings are accepted too (-bios, -kernel, -m 256M, -smp 2),
// so people can carry their command lines over.
import { parseArgs } from "node:util";

export class CliError extends Error {}

import type { DriveOption, NetOption } from "../vm/worker";
import type { DriveInterface, NicModel } from "../machine/virt";
import { parseNetdev } from "../net/netdev";

export type Mode = "para" | "full";
import { PAGING_MODES, type Paging } from "../core/core";

/**
 * The devices --drive and --net get without if= / model=: the full machine has legacy devices
 * (an ATA disk, an OpenCores Ethernet MAC), the paravirtualized one virtio.
 */
export const DEFAULT_DEVICES: Record<Mode, { drive: DriveInterface; nic: NicModel }> = {
  full: { drive: "ide", nic: "ethoc" },
  para: { drive: "virtio", nic: "virtio" },
};

export interface BootOptions {
  /** A file, "none", "builtin", or undefined for the mode's default. */
  bios?: string;
  mode: Mode;
  paging: Paging;
  drives: DriveOption[];
  /** NICs: a validated netdev string ("user,hostfwd=tcp::8080-:80", "switch=lan") and a model. */
  nets: NetOption[];
  kernel?: string;
  initrd?: string;
  append?: string;
  memory: number; // bytes
  smp: number;
  dtbOut?: string;
  /** Print exit statistics when the VM stops. */
  stats: boolean;
}

export type Command =
  | { kind: "help" }
  | { kind: "version" }
  | { kind: "boot"; options: BootOptions }
  | { kind: "start"; options: BootOptions };

export const HELP = `Usage: wasmvisor boot [options]
       wasmvisor start [options]    build the default Linux guest if needed, then boot it
       wasmvisor host [options]     run the hypervisor for many VMs (see 'wasmvisor host --help')
       wasmvisor ctl <command>      control a running host (see 'wasmvisor ctl --help')

Boot a RISC-V guest on a QEMU-virt-compatible machine whose harts run in WebAssembly.
The serial console is on stdin/stdout; press Ctrl-A x to quit.

Options:
  --mode <para|full>   para: the kernel enters S-mode on the built-in SBI (hypercalls);
                       full: the guest runs its own M-mode firmware. Default: full.
  --paging <nested|shadow>
                       Memory virtualization: nested walks the guest's page tables through the
                       P2M on a TLB miss; shadow keeps shadow page tables, write-protecting the
                       guest's. Default: nested.
  --bios <file|none|builtin>
                       M-mode firmware (ELF or raw, loaded at 0x80000000). Default for full:
                       Debian's OpenSBI, /usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin;
                       for para: builtin. "none" starts --kernel directly in M-mode.
  --kernel <file>      Kernel or next stage (ELF at its physical addresses, or raw at 0x80200000,
                       or at 0x80000000 with --bios none).
  --initrd <file>      Initial ramdisk (its location goes into /chosen).
  --append <string>    Kernel command line (/chosen/bootargs).
  -m, --memory <size>  Guest RAM, e.g. 256M or 1G (a plain number means MiB). Default 256M.
  --smp <n>            Number of harts (1-8). Default 1.
  --drive file=<img>[,if=ide|virtio][,readonly=on][,serial=<id>]
                       A disk on a raw image file (repeatable). if=ide: an ATA disk in PIO mode
                       (/dev/sda, ...); if=virtio: a virtio-blk disk (/dev/vda, ...). Default:
                       ide in full mode, virtio in para mode.
  --net user[,model=ethoc|virtio][,hostfwd=tcp:[<hostaddr>]:<hostport>-:<guestport>]...
           [,restrict=on][,loopback=on|off|<port>]...
                       A NIC on user-mode networking: guest 10.0.2.15 by DHCP, host reachable
                       as 10.0.2.2 (repeatable). model=ethoc: an OpenCores Ethernet MAC;
                       model=virtio: a virtio-net NIC. Default: ethoc in full mode, virtio in
                       para mode. restrict=on: the guest reaches nothing outside the virtual
                       network (hostfwd still works). loopback=: the ports of the host's
                       127.0.0.1 the guest may reach: on (all, the default), off (none), or
                       <port> (repeatable; off with ports means just those).
  --net switch=<name>[,model=ethoc|virtio]
                       A NIC on the host's built-in switch <name>.
  --dtb-out <file>     Also write the generated devicetree blob to <file>.
  --stats              When the VM stops, print its instructions and exits (by reason, MMIO
                       device and SBI extension, with the host time per exit) to stderr.
  -h, --help           Show this help.
  -V, --version        Show the version.

Exit status: the guest's (poweroff: 0; test-device or HTIF failure: its code).
`;

const QEMU_SPELLINGS: Record<string, string> = {
  "-bios": "--bios", "-kernel": "--kernel", "-initrd": "--initrd", "-append": "--append",
  "-smp": "--smp", "-dtb-out": "--dtb-out", "-memory": "--memory", "-drive": "--drive",
};

/** "256M", "1G", "65536K", "512" (MiB) → bytes. */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)([KMGT]?)(i?B)?$/i.exec(text.trim());
  if (!m) throw new CliError(`invalid memory size '${text}' (use e.g. 256M or 1G)`);
  const unit = m[2].toUpperCase();
  const mult = unit === "K" ? 2 ** 10 : unit === "G" ? 2 ** 30 : unit === "T" ? 2 ** 40 : 2 ** 20;
  const bytes = Math.floor(Number(m[1]) * mult);
  if (bytes < 2 ** 20) throw new CliError(`memory size '${text}' is too small (at least 1M)`);
  if (bytes % 4096 !== 0) throw new CliError(`memory size '${text}' is not a multiple of 4K`);
  return bytes;
}

export function parseCli(argv: string[]): Command {
  const args = argv.map((a) => QEMU_SPELLINGS[a] ?? a);
  if (args.length === 0) return { kind: "help" };
  if (args[0] === "--help" || args[0] === "-h" || args[0] === "help") return { kind: "help" };
  if (args[0] === "--version" || args[0] === "-V") return { kind: "version" };
  if (args[0] !== "boot" && args[0] !== "start") throw new CliError(`unknown command '${args[0]}' (expected boot, start, host or ctl)`);
  let parsed;
  try {
    parsed = parseArgs({
      args: args.slice(1),
      strict: true,
      allowPositionals: false,
      options: {
        bios: { type: "string" },
        kernel: { type: "string" },
        initrd: { type: "string" },
        append: { type: "string" },
        memory: { type: "string", short: "m" },
        smp: { type: "string" },
        "dtb-out": { type: "string" },
        stats: { type: "boolean" },
        mode: { type: "string" },
        paging: { type: "string" },
        drive: { type: "string", multiple: true },
        net: { type: "string", multiple: true },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    // Node's messages are long; keep the part that names the flag.
    const msg = (e as Error).message.split(". ")[0].replace(/^Unknown option/, "unknown option");
    throw new CliError(msg);
  }
  const v = parsed.values;
  if (v.help) return { kind: "help" };
  const smp = v.smp === undefined ? 1 : Number(v.smp);
  if (!Number.isInteger(smp) || smp < 1 || smp > 8) throw new CliError(`--smp must be a whole number from 1 to 8, not '${v.smp}'`);
  const mode = v.mode ?? (args[0] === "start" ? "para" : "full");
  if (mode !== "para" && mode !== "full") throw new CliError(`--mode must be para or full, not '${mode}'`);
  const paging = v.paging ?? "nested";
  if (!(PAGING_MODES as readonly string[]).includes(paging)) throw new CliError(`--paging must be nested or shadow, not '${paging}'`);
  return {
    kind: args[0] === "start" ? "start" : "boot",
    options: {
      bios: v.bios,
      mode,
      paging: paging as Paging,
      drives: (v.drive ?? []).map((d) => parseDrive(d, DEFAULT_DEVICES[mode].drive)),
      nets: (v.net ?? []).map((n) => parseNet(n, DEFAULT_DEVICES[mode].nic)),
      kernel: v.kernel,
      initrd: v.initrd,
      append: v.append,
      memory: parseSize(v.memory ?? "256M"),
      smp,
      dtbOut: v["dtb-out"],
      stats: v.stats === true,
    },
  };
}

/**
 * "file=disk.img,if=ide,readonly=on,serial=abc" (QEMU's key=value list; a bare path means
 * file=); `defaultIf` when if= is not given.
 */
export function parseDrive(spec: string, defaultIf: DriveInterface): DriveOption {
  const out: DriveOption = { file: "", readOnly: false, if: defaultIf };
  for (const part of spec.split(",")) {
    const eq = part.indexOf("=");
    const key = eq < 0 ? "file" : part.slice(0, eq);
    const value = eq < 0 ? part : part.slice(eq + 1);
    if (key === "file") out.file = value;
    else if (key === "readonly") {
      if (!["on", "off", "true", "false"].includes(value)) throw new CliError(`--drive readonly=${value}: use on or off`);
      out.readOnly = value === "on" || value === "true";
    } else if (key === "serial") {
      if (value.length > 20) throw new CliError(`--drive serial=${value}: at most 20 characters`);
      out.serial = value;
    } else if (key === "if") {
      if (value !== "ide" && value !== "virtio") throw new CliError(`--drive if=${value}: use ide or virtio`);
      out.if = value;
    } else if (key === "format" && value === "raw") continue;
    else throw new CliError(`--drive: unknown option '${key}' (known: file, if, readonly, serial, format=raw)`);
  }
  if (!out.file) throw new CliError(`--drive ${spec}: give the image as file=<path>`);
  return out;
}

/**
 * "user[,hostfwd=...]" or "switch=NAME", each with an optional model=ethoc|virtio (`defaultModel`
 * otherwise): checked here so mistakes are CLI errors.
 */
export function parseNet(spec: string, defaultModel: NicModel): NetOption {
  let model = defaultModel;
  const rest: string[] = [];
  for (const part of spec.split(",")) {
    if (!part.startsWith("model=")) {
      rest.push(part);
      continue;
    }
    const value = part.slice("model=".length);
    if (value !== "ethoc" && value !== "virtio") throw new CliError(`--net model=${value}: use ethoc or virtio`);
    model = value;
  }
  const netdev = rest.join(",");
  try {
    parseNetdev(netdev);
  } catch (e) {
    throw new CliError(`--net ${(e as Error).message.replace(/^netdev /, "")}`);
  }
  return { netdev, model };
}
