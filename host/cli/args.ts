// Command-line parsing: QEMU's spellings are accepted too (-bios, -kernel, -m 256M, -smp 2),
// so people can carry their command lines over. The flags are a VM definition's fields: they
// are gathered here and checked by the one VM configuration parser (config/parse.ts).
import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { parseVmConfig, ConfigError } from "../config/parse";
import type { VmConfig } from "../config/vm-config";

export class CliError extends Error {}

export type Command =
  | { kind: "help" }
  | { kind: "version" }
  | BootCommand;

export interface BootCommand {
  kind: "boot" | "start";
  config: VmConfig;
  /** Also write the generated devicetree blob here. */
  dtbOut?: string;
  /** Print exit statistics when the VM stops. */
  stats: boolean;
  /** Boot nothing: go on from this snapshot (its configuration is the VM's). */
  restore?: string;
}

export const HELP = `Usage: wasmvisor boot [options]
       wasmvisor start [options]    build the default Linux guest if needed, then boot it
       wasmvisor host [options]     run the hypervisor for many VMs (see 'wasmvisor host --help')
       wasmvisor ctl <command>      control a running host (see 'wasmvisor ctl --help')
       wasmvisor web [options]      serve a page that boots the Linux guest in the browser
                                    (see 'wasmvisor web --help')

Boot a RISC-V guest on a QEMU-virt-compatible machine whose harts run in WebAssembly.
The serial console is on stdin/stdout; press Ctrl-A x to quit, Ctrl-A s to save a snapshot,
Ctrl-A h for help.

Options:
  --mode <para|full>   para: the kernel enters S-mode on the built-in SBI (hypercalls);
                       full: the guest runs its own M-mode firmware. Default: full.
  --paging <nested|shadow>
                       Memory virtualization: nested walks the guest's page tables through the
                       P2M on a TLB miss; shadow keeps shadow page tables, write-protecting the
                       guest's. Default: nested.
  --jit <off|on|all>   The translation tier: on compiles hot guest code to WebAssembly; all
                       compiles every page as soon as it ran (for tests). Default: off, or the
                       WASMVISOR_JIT environment variable.
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
  --drive file=<img>[,format=raw|qcow2][,if=ide|virtio][,readonly=on][,serial=<id>]
                       A disk on an image file (repeatable): raw, or qcow2 (with its backing
                       files, opened read-only); without format=, qcow2 if the file starts with
                       qcow2's magic, else raw. if=ide: an ATA disk in PIO mode (/dev/sda, ...);
                       if=virtio: a virtio-blk disk (/dev/vda, ...). Default: ide in full mode,
                       virtio in para mode.
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
  --restore <file>     Go on from a snapshot (Ctrl-A s or 'wasmvisor ctl snapshot' saved it): the
                       VM is the snapshot's, so no other option describing it may be given.
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

export function parseCli(argv: string[]): Command {
  const args = argv.map((a) => QEMU_SPELLINGS[a] ?? a);
  if (args.length === 0) return { kind: "help" };
  if (args[0] === "--help" || args[0] === "-h" || args[0] === "help") return { kind: "help" };
  if (args[0] === "--version" || args[0] === "-V") return { kind: "version" };
  if (args[0] !== "boot" && args[0] !== "start") throw new CliError(`unknown command '${args[0]}' (expected boot, start, host, ctl or web)`);
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
        restore: { type: "string" },
        stats: { type: "boolean" },
        mode: { type: "string" },
        paging: { type: "string" },
        jit: { type: "string" },
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
  const { drive, net, stats, help: _help, "dtb-out": dtbOut, restore, ...fields } = v;
  if (restore !== undefined) {
    const given = [...Object.keys(fields).map((k) => `--${k}`), ...(drive ? ["--drive"] : []), ...(net ? ["--net"] : [])];
    if (given.length) throw new CliError(`--restore takes the VM from the snapshot, its configuration too: drop ${given.join(", ")}`);
    if (args[0] !== "boot") throw new CliError("--restore goes with 'wasmvisor boot'");
  }
  let config: VmConfig;
  try {
    config = parseVmConfig({ name: "vm", ...fields, drives: drive, nets: net }, {
      naming: "flags", defaultMode: args[0] === "start" ? "para" : "full", defaultLoopback: "on",
    });
  } catch (e) {
    if (e instanceof ConfigError) throw new CliError(e.message);
    throw e;
  }
  if (stats) config.timeExits = true;
  // Files by absolute path: a snapshot keeps them, and a qcow2 overlay names its backing file.
  for (const d of config.drives) d.file = resolve(d.file);
  for (const k of ["kernel", "initrd"] as const) if (config[k] !== undefined) config[k] = resolve(config[k]!);
  if (typeof config.bios === "object") config.bios = { file: resolve(config.bios.file) };
  return { kind: args[0] === "start" ? "start" : "boot", config, dtbOut, stats: stats === true, ...(restore !== undefined ? { restore } : {}) };
}
