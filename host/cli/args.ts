// Command-line parsing. One table of options serves `wasmvisor boot`, `start` and `qemu`:
// wasmvisor's own flags and QEMU's (cli/qemu-options.ts), each spelled with one dash or two as
// QEMU allows, so a QEMU command line for the riscv64 virt machine carries over. The options
// are a VM definition's fields: they are gathered here and checked by the one VM configuration
// parser (config/parse.ts). The front ends differ only in their defaults (QEMU's for `qemu`).
import { resolve } from "node:path";
import { parseVmConfig, ConfigError } from "../config/parse";
import type { VmConfig } from "../config/vm-config";
import {
  QemuOptionError, REFUSED, splitProps, flag, parseEndpoint, qemuMemory, qemuSmp, checkCpu, parseMachine, checkAccel, parseGlobal,
  parseObject, checkSerial, checkDisplay, parseName, parseGdb, GDB_DEFAULT_PORT, type Endpoint,
} from "./qemu-options";

export type { Endpoint };
export class CliError extends Error {}

export type Command =
  | { kind: "help"; qemu: boolean }
  | { kind: "version"; qemu: boolean }
  | BootCommand;

export interface BootCommand {
  kind: "boot" | "start";
  config: VmConfig;
  /** Also write the generated devicetree blob here. */
  dtbOut?: string;
  /** -machine dumpdtb=: write it and exit without running the VM, as QEMU does. */
  dumpDtbOnly: boolean;
  /** Print exit statistics when the VM stops. */
  stats: boolean;
  /** Boot nothing: go on from this snapshot (its configuration is the VM's). */
  restore?: string;
  /** -S: the VM is created but does not run until the monitor's `cont`. */
  paused: boolean;
  /** -qmp: QMP servers. */
  qmp: Endpoint[];
  /** -monitor on a socket: the human monitor there. */
  monitors: Endpoint[];
  /** -s, -gdb, --gdb: where the GDB stub listens. */
  gdb?: Endpoint;
  /** -name gave the VM its name. */
  named: boolean;
  /** Ctrl-A c switches the terminal to the human monitor (-monitor none: it does not). */
  consoleMonitor: boolean;
  /** Drives (by index in config.drives) that write to a temporary overlay dropped at exit (-snapshot, snapshot=on). */
  temporary: number[];
  /** USB disks (by index in config.usb) that write to a temporary overlay dropped at exit, as `temporary`. */
  temporaryUsb: number[];
  /** -accel tcg,thread=single: every hart on one thread (default: a VM with several harts runs them on two). */
  singleThread: boolean;
}

export const HELP = `Usage: wasmvisor boot [options]
       wasmvisor start [options]    build the default Linux guest if needed, then boot it
       wasmvisor qemu [QEMU options] QEMU's command line for the riscv64 virt machine, with QEMU's
                                    defaults (also installed as wasmvisor-system-riscv64)
       wasmvisor host [options]     run the hypervisor for many VMs (see 'wasmvisor host --help')
       wasmvisor ctl <command>      control a running host (see 'wasmvisor ctl --help')
       wasmvisor web [options]      serve a page that boots the Linux guest in the browser
                                    (see 'wasmvisor web --help')

Boot a RISC-V guest on a QEMU-virt-compatible machine whose harts run in WebAssembly.
The serial console is on stdin/stdout; press Ctrl-A x to quit, Ctrl-A s to save a snapshot,
Ctrl-A c for the monitor, Ctrl-A k to type on the USB keyboard, Ctrl-A h for help.

Options:
  --mode <para|full>   para: the kernel enters S-mode on the built-in SBI (hypercalls);
                       full: the guest runs its own M-mode firmware. Default: full.
  --paging <nested|shadow>
                       Memory virtualization: nested walks the guest's page tables through the
                       P2M on a TLB miss; shadow keeps shadow page tables, write-protecting the
                       guest's. Default: nested.
  --jit <off|on|all>   The translation tier: on compiles hot guest code to WebAssembly; all
                       compiles every page as soon as it ran (for tests). Default: on (off in a
                       browser), or the WASMVISOR_JIT environment variable.
  --bios <file|none|builtin|default>
                       M-mode firmware (ELF or raw, loaded at 0x80000000). Default for full:
                       Debian's OpenSBI, /usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin;
                       for para: builtin. "none" starts --kernel directly in M-mode.
  --kernel <file>      Kernel or next stage (ELF at its physical addresses, or raw at 0x80200000,
                       or at 0x80000000 with --bios none).
  --initrd <file>      Initial ramdisk (its location goes into /chosen).
  --append <string>    Kernel command line (/chosen/bootargs).
  -m, --memory <size>  Guest RAM, e.g. 256M or 1G (a plain number means MiB). Default 256M.
  --smp <n>            Number of harts (1-8). Default 1.
  --drive file=<img>[,format=raw|qcow2][,if=ide|virtio|none][,id=<id>][,readonly=on][,serial=<id>][,snapshot=on]
                       A disk on an image file (repeatable): raw, or qcow2 (with its backing
                       files, opened read-only); without format=, qcow2 if the file starts with
                       qcow2's magic, else raw. if=ide: an ATA disk in PIO mode (/dev/sda, ...);
                       if=virtio: a virtio-blk disk (/dev/vda, ...); if=none,id=X: the disk of
                       a -device virtio-blk-device,drive=X. Default: ide in full mode, virtio
                       in para mode. snapshot=on: writes go to a temporary overlay.
  --net user[,model=ethoc|virtio][,hostfwd=tcp:[<hostaddr>]:<hostport>-:<guestport>]...
           [,restrict=on][,loopback=on|off|<port>]...
                       A NIC on user-mode networking: guest 10.0.2.15 by DHCP, host reachable
                       as 10.0.2.2 (repeatable). model=ethoc: an OpenCores Ethernet MAC;
                       model=virtio: a virtio-net NIC. Default: ethoc in full mode, virtio in
                       para mode. restrict=on: the guest reaches nothing outside the virtual
                       network (hostfwd still works). loopback=: the ports of the host's
                       127.0.0.1 the guest may reach: on (all, the default), off (none), or
                       <port> (repeatable; off with ports means just those).
  --usb kbd|storage,file=<img>[,format=..][,readonly=on]|serial,socket=<path>[,id=<id>][,port=<n>]
                       A USB device on the machine's xHCI controller (repeatable; the first
                       adds the controller): a HID keyboard (typed on with 'ctl usb type', or
                       the console's input with 'ctl usb console'), a mass-storage disk
                       (/dev/sdX), a CDC-ACM serial port (/dev/ttyACM0) whose host end is a
                       Unix socket wasmvisor listens on.
  --net switch=<name>[,model=ethoc|virtio]
                       A NIC on the host's built-in switch <name>.
  --restore <file>     Go on from a snapshot (Ctrl-A s or 'wasmvisor ctl snapshot' saved it): the
                       VM is the snapshot's, so no other option describing it may be given.
  --dtb-out <file>     Also write the generated devicetree blob to <file>.
  --gdb <port|tcp:HOST:PORT>
                       Serve the GDB remote protocol there (127.0.0.1 without a host), as
                       QEMU's -gdb: gdb-multiarch -ex 'target remote :PORT'. With -S the VM
                       waits for the debugger's continue.
  --stats              When the VM stops, print its instructions and exits (by reason, MMIO
                       device and SBI extension, with the host time per exit) to stderr.
  -h, --help           Show this help.
  -V, --version        Show the version.

QEMU's options (one dash or two) work too: -machine virt, -cpu rv64, -m, -smp, -nographic,
-serial mon:stdio, -bios, -kernel, -initrd, -append, -drive ...,if=none,id=X with
-device virtio-blk-device,drive=X, -netdev user,id=N with -device virtio-net-device,netdev=N,
-nic user, -device virtio-rng-device, -object rng-random, -global virtio-mmio.force-legacy=off,
-no-reboot, -snapshot, -S, -s, -gdb, -qmp, -monitor, -display none, -name; see 'wasmvisor qemu -help'.

Exit status: the guest's (poweroff: 0; test-device or HTIF failure: its code).
`;

export const QEMU_HELP = `Usage: wasmvisor qemu [options]     (or: wasmvisor-system-riscv64 [options])

QEMU's command line for the riscv64 'virt' machine, run by wasmvisor: the options below mean what
they mean to qemu-system-riscv64, with QEMU's defaults (128M of RAM, virtio-mmio's legacy
interface unless -global virtio-mmio.force-legacy=false, Debian's OpenSBI as -bios default).
Any other option is refused with the reason. wasmvisor's own options (--mode, --paging, --jit, --stats,
--dtb-out, --restore, ...) are accepted too: see 'wasmvisor --help'.

-machine virt[,dumpdtb=FILE][,aclint=off][,aia=none][,acpi=off][,accel=tcg]
                    (dumpdtb: write the devicetree to FILE and exit)
-M virt,...         the machine (the only one)
-cpu rv64[,EXT=on|off...]
                    the harts' model; extension properties are checked against what they have
-accel tcg[,thread=single|multi]
                    the harts run in WebAssembly; a VM with several harts runs them on two
                    threads at once (multi, the default) or on one (single)
-m [size=]SIZE      guest RAM (128 = 128M; 1G)
-smp [cpus=]N[,sockets=,cores=,threads=,maxcpus=N]
                    harts, 1-8
-bios FILE|none|default
                    M-mode firmware; none: -kernel runs in M-mode at its ELF entry or 0x80000000
-kernel FILE        -initrd FILE      -append CMDLINE
-dtb FILE           the guest's devicetree instead of the board's (/chosen gets -append and -initrd)
-drive file=IMG[,if=none|virtio][,id=ID][,format=raw|qcow2][,readonly=on][,snapshot=on][,media=disk]
-device virtio-blk-device,drive=ID[,bus=virtio-mmio-bus.N]
-netdev user,id=ID[,hostfwd=tcp:[ADDR]:HOSTPORT-:GUESTPORT][,restrict=on]
-device virtio-net-device,netdev=ID[,bus=virtio-mmio-bus.N]
-nic user[,model=virtio-net-device][,hostfwd=...]   -nic none
-object rng-random,id=ID[,filename=/dev/urandom]    -object rng-builtin,id=ID
-device virtio-rng-device[,rng=ID][,bus=virtio-mmio-bus.N]
-global virtio-mmio.force-legacy=on|off
-device qemu-xhci   -device usb-kbd[,id=ID]   -device usb-storage,drive=ID
-chardev socket,id=ID,path=PATH,server=on,wait=off  -device usb-serial,chardev=ID (CDC-ACM)
-nographic          -display none      -serial mon:stdio|stdio
-monitor stdio|none|unix:PATH,server=on,wait=off|tcp:HOST:PORT,server=on,wait=off
-qmp unix:PATH,server=on,wait=off|tcp:HOST:PORT,server=on,wait=off
-S                  do not start the harts until the monitor's 'cont'
-gdb tcp::PORT|tcp:HOST:PORT|none
                    the GDB stub (127.0.0.1 without a host); -s is -gdb tcp::1234
-no-reboot          a reboot the guest asks for ends the VM
-snapshot           writes to the disks go to temporary overlays, dropped at exit
-name NAME          the VM's name (in QMP and the monitor)
-version, -help
`;

/** The QEMU version whose command line, QMP and monitor `wasmvisor qemu` follows (xv6's Makefile checks it). */
export const QEMU_COMPAT_VERSION = "7.2.0";

type Frontend = "boot" | "start" | "qemu";

/** What the options gather before the configuration parser sees it. */
interface Gathered {
  /** A VM definition's fields (config/vm-config.ts VmDefinition), as the flags give them. */
  fields: Record<string, unknown>;
  /** In the order the disks and NICs appear; QEMU's -drive if=none wait here for their -device. */
  drives: { spec: string; id?: string; claimed: boolean; temporary: boolean; bus?: number; option: string }[];
  nets: { spec: string; id?: string; claimed: boolean; bus?: number; option: string }[];
  rngIds: Set<string>;
  rng?: { bus?: number; option: string };
  /** USB devices (--usb specs) on an xHCI controller; undefined: no controller. */
  usb?: string[];
  /** Indexes in `usb` of usb-storage devices on a drive with snapshot=on. */
  usbTemporary: Set<number>;
  /** -chardev socket,id=ID,path=PATH,server=on: the Unix socket paths by id (for -device usb-serial). */
  chardevs: Map<string, string>;
  /** Devices in command-line order, for the bus= check. */
  devices: { kind: "blk" | "net"; index: number }[];
  dtbOut?: string;
  dumpDtbOnly: boolean;
  restore?: string;
  stats: boolean;
  help: boolean;
  version: boolean;
  paused: boolean;
  snapshotAll: boolean;
  qmp: Endpoint[];
  monitors: Endpoint[];
  consoleMonitor: boolean;
  /** Options given, as typed: --restore names them. */
  given: string[];
  gdb?: Endpoint;
  singleThread: boolean;
}

interface OptionSpec {
  /** Takes a value (the next argument, or after '=' when spelled with two dashes). */
  value: boolean;
  /** The value may be empty (-append ""); for the others an empty one is an error, not a path to the current directory. */
  emptyOk?: boolean;
  /** Describes the VM (refused with --restore). */
  describes?: boolean;
  apply(g: Gathered, value: string, front: Frontend, option: string): void;
}

const field = (name: string): OptionSpec => ({ value: true, describes: true, apply: (g, v) => { g.fields[name] = v; } });
const flagOnly = (apply: (g: Gathered) => void, describes = false): OptionSpec => ({ value: false, describes, apply: (g) => apply(g) });

const OPTIONS: Record<string, OptionSpec> = {
  // wasmvisor's options, which QEMU shares where the names meet (-bios, -kernel, -m, ...).
  mode: field("mode"),
  paging: field("paging"),
  jit: field("jit"),
  bios: field("bios"),
  kernel: field("kernel"),
  initrd: field("initrd"),
  append: { ...field("append"), emptyOk: true },
  dtb: field("dtb"),
  memory: { value: true, describes: true, apply: (g, v) => { g.fields.memory = qemuMemory(v); } },
  m: { value: true, describes: true, apply: (g, v) => { g.fields.memory = qemuMemory(v); } },
  smp: { value: true, describes: true, apply: (g, v) => { g.fields.smp = qemuSmp(v); } },
  drive: { value: true, describes: true, apply: addDrive },
  // wasmvisor's --net; QEMU's legacy -net is refused (below) for -netdev/-nic.
  net: { value: true, describes: true, apply: (g, v, _f, option) => {
    if (option !== "--net") throw new QemuOptionError(`-net: ${REFUSED.net}`);
    g.nets.push({ spec: v, claimed: true, option });
    g.devices.push({ kind: "net", index: g.nets.length - 1 });
  } },
  "dtb-out": { value: true, apply: (g, v) => { g.dtbOut = v; } },
  restore: { value: true, apply: (g, v) => { g.restore = v; } },
  stats: flagOnly((g) => { g.stats = true; }),
  help: flagOnly((g) => { g.help = true; }),
  h: flagOnly((g) => { g.help = true; }),
  version: flagOnly((g) => { g.version = true; }),
  V: flagOnly((g) => { g.version = true; }),
  // QEMU's.
  machine: { value: true, apply: (g, v) => machine(g, v) },
  M: { value: true, apply: (g, v) => machine(g, v) },
  cpu: { value: true, apply: (_g, v) => checkCpu(v) },
  accel: { value: true, apply: (g, v) => { if (checkAccel(v) === "single") g.singleThread = true; } },
  nographic: flagOnly(() => {}), // the serial console is the terminal anyway
  display: { value: true, apply: (_g, v) => checkDisplay(v) },
  serial: { value: true, apply: (_g, v) => checkSerial(v) },
  monitor: { value: true, apply: (g, v) => {
    if (v === "none") g.consoleMonitor = false;
    else if (v === "stdio" || v === "mon:stdio") g.consoleMonitor = true; // on the terminal with the console: Ctrl-A c
    else g.monitors.push(parseEndpoint("-monitor", v));
  } },
  qmp: { value: true, apply: (g, v) => { g.qmp.push(parseEndpoint("-qmp", v)); } },
  S: flagOnly((g) => { g.paused = true; }),
  // QEMU's -gdb DEV and -s, and wasmvisor's --gdb PORT: one option.
  gdb: { value: true, apply: (g, v, _f, option) => { g.gdb = parseGdb(option, v) ?? undefined; } },
  s: flagOnly((g) => { g.gdb = parseGdb("-s", `tcp::${GDB_DEFAULT_PORT}`)!; }),
  device: { value: true, describes: true, apply: addDevice },
  usb: { value: true, describes: true, apply: (g, v) => { (g.usb ??= []).push(v); } },
  chardev: { value: true, describes: true, apply: addChardev },
  netdev: { value: true, describes: true, apply: addNetdev },
  nic: { value: true, describes: true, apply: addNic },
  object: { value: true, describes: true, apply: (g, v) => { g.rngIds.add(parseObject(v).id); } },
  global: { value: true, describes: true, apply: (g, v) => { g.fields.virtioLegacy = parseGlobal(v).virtioLegacy; } },
  "no-reboot": flagOnly((g) => { g.fields.noReboot = true; }, true),
  snapshot: flagOnly((g) => { g.snapshotAll = true; }, true),
  name: { value: true, describes: true, apply: (g, v) => { g.fields.name = parseName(v); } },
};

// -machine virt,dumpdtb=FILE writes the devicetree and exits, as QEMU's does.
function machine(g: Gathered, value: string): void {
  const m = parseMachine(value);
  if (m.dtbOut !== undefined) {
    g.dtbOut = m.dtbOut;
    g.dumpDtbOnly = true;
  }
}

/** "virtio-mmio-bus.N" → N. */
function busIndex(option: string, bus: string): number {
  const m = /^virtio-mmio-bus\.(\d)$/.exec(bus);
  if (!m) throw new QemuOptionError(`${option}: bus=${bus}: the virt machine's virtio devices go on virtio-mmio-bus.0 to virtio-mmio-bus.7`);
  return Number(m[1]);
}

// -drive / --drive: wasmvisor's disk spec, plus QEMU's id= and if=none (the disk of a -device),
// snapshot= and media=disk. The rest is the configuration parser's to check.
function addDrive(g: Gathered, value: string, front: Frontend, option: string): void {
  const { head, props } = splitProps(value);
  const rest: string[] = head ? [`file=${head}`] : []; // a bare path is file=, as QEMU reads it
  let id: string | undefined;
  let ifNone = front === "qemu"; // QEMU's riscv virt attaches a -drive without if= to nothing: a -device must take it
  let temporary = false;
  for (const [k, v] of props) {
    if (k === "id") id = v;
    else if (k === "if" && v === "none") ifNone = true;
    else if (k === "if") { ifNone = false; rest.push(`if=${v}`); }
    else if (k === "snapshot") temporary = flag(option, k, v);
    else if (k === "media") { if (v !== "disk") throw new QemuOptionError(`${option} media=${v}: the virt machine has no CD-ROM: use media=disk`); }
    else rest.push(`${k}=${v}`);
  }
  if (ifNone && !id) throw new QemuOptionError(`${option} ${value}: a drive with if=none needs an id=, for -device virtio-blk-device,drive=ID`);
  if (id !== undefined && g.drives.some((d) => d.id === id)) throw new QemuOptionError(`${option}: two drives with id=${id}`);
  g.drives.push({ spec: rest.join(","), id, claimed: !ifNone, temporary, option: `${option} ${value}` });
  if (!ifNone) g.devices.push({ kind: "blk", index: g.drives.length - 1 });
}

// -netdev user,id=N,...: a user-mode network for a -device virtio-net-device,netdev=N.
function addNetdev(g: Gathered, value: string, _front: Frontend, option: string): void {
  const { head, props } = splitProps(value);
  const type = props.get("type") ?? head;
  if (type !== "user") throw new QemuOptionError(`-netdev ${type}: wasmvisor's networking is user-mode only: use -netdev user,id=ID[,hostfwd=...]`);
  const id = props.get("id");
  if (!id) throw new QemuOptionError(`-netdev ${value}: give it an id=, for -device virtio-net-device,netdev=ID`);
  if (g.nets.some((n) => n.id === id)) throw new QemuOptionError(`-netdev: two netdevs with id=${id}`);
  props.delete("type");
  props.delete("id");
  g.nets.push({ spec: ["user", ...[...props].map(([k, v]) => `${k}=${v}`)].join(","), id, claimed: false, option: `${option} ${value}` });
}

// -nic user[,model=virtio-net-device][,hostfwd=...]: netdev and device in one.
function addNic(g: Gathered, value: string, _front: Frontend, option: string): void {
  const { head, props } = splitProps(value);
  if (head === "none") return; // QEMU's "no default NIC": there is none here anyway
  if (head !== "user") throw new QemuOptionError(`-nic ${head}: wasmvisor's networking is user-mode only: use -nic user[,hostfwd=...]`);
  const model = props.get("model");
  props.delete("model");
  props.delete("id");
  // QEMU's riscv virt makes a virtio-net-pci; this machine has no PCI, so it is virtio-mmio's.
  if (model !== undefined && !["virtio-net-device", "virtio", "virtio-net-pci", "virtio-net"].includes(model)) {
    throw new QemuOptionError(`-nic user,model=${model}: wasmvisor's virt machine has virtio-net NICs: use model=virtio-net-device or leave it out`);
  }
  g.nets.push({ spec: ["user", ...[...props].map(([k, v]) => `${k}=${v}`), "model=virtio"].join(","), claimed: true, option: `${option} ${value}` });
  g.devices.push({ kind: "net", index: g.nets.length - 1 });
}

// -device: the virtio-mmio devices wasmvisor has.
function addDevice(g: Gathered, value: string, _front: Frontend, option: string): void {
  const { head, props } = splitProps(value);
  const driver = props.get("driver") ?? head;
  props.delete("driver");
  const what = `${option} ${value}`;
  const bus = props.has("bus") ? busIndex(what, props.get("bus")!) : undefined;
  props.delete("bus");
  const take = (key: string): string => {
    const v = props.get(key);
    if (!v) throw new QemuOptionError(`${what}: give ${key}=ID`);
    props.delete(key);
    return v;
  };
  if (driver === "virtio-blk-device") {
    const id = take("drive");
    const serial = props.get("serial");
    props.delete("serial");
    onlyProps(what, props, "drive, bus, serial");
    const i = g.drives.findIndex((d) => d.id === id);
    if (i < 0) throw new QemuOptionError(`${what}: no -drive has id=${id} (give -drive file=IMG,if=none,id=${id} before it)`);
    const d = g.drives[i]!;
    if (d.claimed) throw new QemuOptionError(`${what}: drive ${id} is already attached to a device`);
    d.claimed = true;
    d.spec = [d.spec, "if=virtio", ...(serial !== undefined ? [`serial=${serial}`] : [])].filter(Boolean).join(",");
    d.bus = bus;
    d.option = what;
    g.devices.push({ kind: "blk", index: i });
  } else if (driver === "virtio-net-device") {
    const id = take("netdev");
    const mac = props.get("mac");
    props.delete("mac");
    onlyProps(what, props, "netdev, bus, mac");
    const i = g.nets.findIndex((n) => n.id === id);
    if (i < 0) throw new QemuOptionError(`${what}: no -netdev has id=${id} (give -netdev user,id=${id} before it)`);
    const n = g.nets[i]!;
    if (n.claimed) throw new QemuOptionError(`${what}: netdev ${id} is already attached to a device`);
    const expected = `52:54:00:12:34:${(0x56 + g.devices.filter((x) => x.kind === "net").length).toString(16)}`;
    if (mac !== undefined && mac.toLowerCase() !== expected) throw new QemuOptionError(`${what}: wasmvisor gives NIC i the MAC 52:54:00:12:34:(56+i), as QEMU does (this one ${expected}): drop mac=`);
    n.claimed = true;
    n.spec += ",model=virtio";
    n.bus = bus;
    n.option = what;
    g.devices.push({ kind: "net", index: i });
  } else if (driver === "virtio-rng-device") {
    const rng = props.get("rng");
    props.delete("rng");
    onlyProps(what, props, "rng, bus");
    if (rng !== undefined && !g.rngIds.has(rng)) throw new QemuOptionError(`${what}: no -object rng-random has id=${rng} (give -object rng-random,id=${rng},filename=/dev/urandom before it)`);
    if (g.rng) throw new QemuOptionError(`${what}: wasmvisor's machine has at most one virtio-rng`);
    g.rng = { bus, option: what };
    g.fields.rng = true;
  } else if (driver === "qemu-xhci" || driver === "nec-usb-xhci") {
    props.delete("id");
    onlyProps(what, props, "id");
    if (g.usb) throw new QemuOptionError(`${what}: wasmvisor's machine has one USB controller`);
    g.usb = [];
  } else if (driver === "usb-kbd" || driver === "usb-storage" || driver === "usb-serial") {
    addUsbDevice(g, driver, props, what);
  } else if (/^virtio-.*-pci$/.test(driver)) {
    throw new QemuOptionError(`${what}: wasmvisor's virt machine has no PCI bus: use ${driver.replace(/-pci$/, "-device")} (virtio-mmio)`);
  } else {
    throw new QemuOptionError(`${what}: wasmvisor has no device '${driver}' (it has virtio-blk-device, virtio-net-device, virtio-rng-device, qemu-xhci, usb-kbd, usb-storage and usb-serial)`);
  }
}

// -chardev socket,id=ID,path=PATH,server=on[,wait=off]: the host end of a usb-serial, a Unix
// socket wasmvisor listens on (it does not connect out, or wait for a client before the guest runs).
function addChardev(g: Gathered, value: string, _front: Frontend, option: string): void {
  const { head, props } = splitProps(value);
  const what = `${option} ${value}`;
  if (head !== "socket") throw new QemuOptionError(`${what}: wasmvisor's character devices are Unix sockets it listens on: -chardev socket,id=ID,path=PATH,server=on,wait=off (for -device usb-serial,chardev=ID)`);
  const id = props.get("id");
  const path = props.get("path");
  if (!id || !path) throw new QemuOptionError(`${what}: give id=ID and path=PATH`);
  if (!props.has("server") || !flag(option, "server", props.get("server")!)) throw new QemuOptionError(`${what}: wasmvisor listens, it does not connect: add server=on,wait=off`);
  if (g.chardevs.has(id)) throw new QemuOptionError(`${what}: two character devices with id=${id}`);
  for (const k of props.keys()) if (!["id", "path", "server", "wait", "nowait"].includes(k)) throw new QemuOptionError(`${what}: wasmvisor does not support the property '${k}' (it takes id, path, server, wait)`);
  g.chardevs.set(id, path);
}

// -device usb-kbd / usb-storage,drive=D / usb-serial,chardev=C on a -device qemu-xhci: --usb specs.
function addUsbDevice(g: Gathered, driver: string, props: Map<string, string>, what: string): void {
  if (!g.usb) throw new QemuOptionError(`${what}: there is no USB bus: give -device qemu-xhci first (QEMU wants it too)`);
  const id = props.get("id");
  props.delete("id");
  const named = id !== undefined ? `,id=${id}` : "";
  if (driver === "usb-kbd") {
    onlyProps(what, props, "id");
    g.usb.push(`kbd${named}`);
  } else if (driver === "usb-storage") {
    const drive = props.get("drive");
    props.delete("drive");
    onlyProps(what, props, "drive, id");
    const d = g.drives.find((x) => x.id === drive);
    if (!drive || !d) throw new QemuOptionError(`${what}: give drive=ID of a -drive file=IMG,if=none,id=ID before it`);
    if (d.claimed) throw new QemuOptionError(`${what}: drive ${drive} is already attached to a device`);
    d.claimed = true;
    if (d.temporary) g.usbTemporary.add(g.usb.length);
    g.usb.push(`storage,${d.spec}${named}`);
  } else {
    const chardev = props.get("chardev");
    props.delete("chardev");
    onlyProps(what, props, "chardev, id");
    const path = chardev !== undefined ? g.chardevs.get(chardev) : undefined;
    if (path === undefined) throw new QemuOptionError(`${what}: give chardev=ID of a -chardev socket,id=ID,path=PATH,server=on,wait=off before it`);
    g.usb.push(`serial,socket=${path}${named}`);
  }
}

function onlyProps(what: string, props: Map<string, string>, known: string): void {
  const [k] = props.keys();
  if (k !== undefined) throw new QemuOptionError(`${what}: wasmvisor does not support the property '${k}' (it takes ${known})`);
}

/** The options of argv, one at a time: "-kernel x", "--kernel x", "--kernel=x". */
function gather(argv: string[], front: Frontend): Gathered {
  const g: Gathered = {
    fields: {}, drives: [], nets: [], rngIds: new Set(), usbTemporary: new Set(), chardevs: new Map(), devices: [], dumpDtbOnly: false, stats: false, help: false, version: false, paused: false,
    snapshotAll: false, qmp: [], monitors: [], consoleMonitor: true, given: [], singleThread: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith("-") || arg === "-" || arg === "--") {
      throw new CliError(`unexpected argument '${arg}' (options start with '-'; a disk is -drive file=${arg},if=none,id=d0 -device virtio-blk-device,drive=d0)`);
    }
    const long = arg.startsWith("--");
    let name = arg.slice(long ? 2 : 1);
    let inline: string | undefined;
    const eq = name.indexOf("=");
    if (long && eq > 0) {
      inline = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    // QEMU's -usb takes no value, wasmvisor's --usb does: the two are different options.
    if (name === "usb" && !long) throw new CliError("-usb: the legacy USB option is not supported: use -device qemu-xhci and -device usb-kbd (or --usb kbd)");
    const spec = Object.hasOwn(OPTIONS, name) ? OPTIONS[name]! : undefined;
    if (!spec) {
      if (Object.hasOwn(REFUSED, name)) throw new CliError(`${arg}: ${REFUSED[name]}`);
      throw new CliError(`unknown option '${arg}'${front === "qemu" ? " (wasmvisor does not support this QEMU option; 'wasmvisor qemu -help' lists those it does)" : ""}`);
    }
    let value = "";
    if (spec.value) {
      if (inline !== undefined) value = inline;
      else if (i + 1 < argv.length) value = argv[++i]!;
      else throw new CliError(`option '${arg}' needs a value`);
      if (value === "" && !spec.emptyOk) throw new CliError(`option '${long ? `--${name}` : `-${name}`}' needs a value, not an empty one`);
    } else if (inline !== undefined) throw new CliError(`option '${arg.slice(0, arg.indexOf("="))}' takes no value`);
    if (spec.describes) g.given.push(arg.replace(/=.*/, ""));
    try {
      spec.apply(g, value, front, long ? `--${name}` : `-${name}`);
    } catch (e) {
      if (e instanceof QemuOptionError) throw new CliError(e.message);
      throw e;
    }
  }
  return g;
}

export function parseCli(argv: string[]): Command {
  if (argv.length === 0) return { kind: "help", qemu: false };
  const [cmd, ...rest] = argv;
  if (cmd === "--help" || cmd === "-h" || cmd === "help") return { kind: "help", qemu: false };
  if (cmd === "--version" || cmd === "-V") return { kind: "version", qemu: false };
  if (cmd !== "boot" && cmd !== "start" && cmd !== "qemu") throw new CliError(`unknown command '${cmd}' (expected boot, start, qemu, host, ctl or web)`);
  const front: Frontend = cmd;
  const g = gather(rest, front);
  if (g.help) return { kind: "help", qemu: front === "qemu" };
  if (g.version) return { kind: "version", qemu: front === "qemu" };
  for (const d of g.drives) if (!d.claimed) throw new CliError(`${d.option}: no -device takes it: add -device virtio-blk-device,drive=${d.id}`);
  for (const n of g.nets) if (!n.claimed) throw new CliError(`${n.option}: no -device takes it: add -device virtio-net-device,netdev=${n.id}`);
  if (g.restore !== undefined) {
    if (g.given.length) throw new CliError(`--restore takes the VM from the snapshot, its configuration too: drop ${[...new Set(g.given)].join(", ")}`);
    if (front === "start") throw new CliError("--restore goes with 'wasmvisor boot'");
  }
  // Disks and NICs in the order their devices came: that is the order the machine places them.
  const drives = g.devices.filter((d) => d.kind === "blk").map((d) => g.drives[d.index]!);
  const nets = g.devices.filter((d) => d.kind === "net").map((d) => g.nets[d.index]!);
  const qemuDefaults = front === "qemu" ? { memory: "128M", virtioLegacy: true } : {};
  let config: VmConfig;
  try {
    config = parseVmConfig({ name: "vm", ...qemuDefaults, ...g.fields, drives: drives.map((d) => d.spec), nets: nets.map((n) => n.spec), ...(g.usb ? { usb: g.usb } : {}) }, {
      naming: "flags", defaultMode: front === "start" ? "para" : "full", defaultLoopback: "on",
    });
  } catch (e) {
    if (e instanceof ConfigError) throw new CliError(e.message);
    throw e;
  }
  checkBuses(config, drives, nets, g.rng);
  if (g.stats) config.timeExits = true;
  // Files by absolute path: a snapshot keeps them, and a qcow2 overlay names its backing file.
  for (const d of config.drives) d.file = resolve(d.file);
  for (const u of config.usb ?? []) {
    if (u.type === "usb-storage") u.file = resolve(u.file);
    if (u.type === "usb-serial") u.socket = resolve(u.socket);
  }
  for (const k of ["kernel", "initrd", "dtb"] as const) if (config[k] !== undefined) config[k] = resolve(config[k]!);
  if (typeof config.bios === "object") config.bios = { file: resolve(config.bios.file) };
  const temporary = drives.flatMap((d, i) => ((d.temporary || g.snapshotAll) && !config.drives[i]!.readOnly ? [i] : []));
  const temporaryUsb = (config.usb ?? []).flatMap((u, i) => (u.type === "usb-storage" && !u.readOnly && (g.usbTemporary.has(i) || g.snapshotAll) ? [i] : []));
  return {
    kind: front === "start" ? "start" : "boot", config, dtbOut: g.dtbOut, dumpDtbOnly: g.dumpDtbOnly, stats: g.stats, ...(g.restore !== undefined ? { restore: g.restore } : {}),
    paused: g.paused, named: g.fields.name !== undefined, qmp: g.qmp, monitors: g.monitors, ...(g.gdb ? { gdb: g.gdb } : {}), consoleMonitor: g.consoleMonitor, temporary, temporaryUsb,
    singleThread: g.singleThread,
  };
}

// bus=virtio-mmio-bus.N is accepted where the machine puts the device anyway: virtio devices
// take the slots from the highest used one down, disks first, then NICs, then the RNG (so the
// first disk is Linux's /dev/vda); a device alone is on bus 0, as xv6 wants its disk.
function checkBuses(config: VmConfig, drives: Gathered["drives"], nets: Gathered["nets"], rng: Gathered["rng"]): void {
  const order: { bus?: number; option: string }[] = [
    ...drives.filter((_, i) => config.drives[i]!.if === "virtio"),
    ...nets.filter((_, i) => config.nets[i]!.model === "virtio"),
    ...(config.bios === "builtin" ? [{ option: "console" }, rng ?? { option: "rng" }] : rng ? [rng] : []),
  ];
  order.forEach((d, i) => {
    const slot = order.length - 1 - i;
    if (d.bus !== undefined && d.bus !== slot) {
      throw new CliError(`${d.option}: wasmvisor places virtio devices itself and this one is on virtio-mmio-bus.${slot} (disks, then NICs, then the RNG, from the highest bus down); drop bus= or give bus=virtio-mmio-bus.${slot}`);
    }
  });
}
