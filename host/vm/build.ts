// The one builder: a VmConfig becomes a running machine in two halves, because a VM's thread
// is not where it is defined. The control plane checks the board and reads the boot images
// (once: every VM and worker booting the same file shares them); the VM's home thread opens its
// disks and network backends (disk I/O is synchronous there, network events arrive on its event
// loop) and builds the board.
import { VirtMachine, checkBoard, type Image, type UsbDeviceSpec } from "../machine/virt";
import { lazyMemory, loadMemory, type ClockRestore, type OpenedVmState } from "../state/vm-state";
import { createNetBackend } from "../net/backend";
import { SocketBudget } from "../net/budget";
import type { DiskBackend, NetBackend } from "../devices/backends";
import { SwappableDisk } from "../disk/swappable";
import type { Platform } from "../platform/platform";
import { usesBuiltinSbi, type UsbDeviceConfig, type VmConfig } from "../config/vm-config";

/** Firmware, kernel and initrd as the board loads them. */
export interface BootImages {
  /** null: the kernel starts in M-mode; "builtin": the host's SBI starts it in S-mode. */
  bios: Image | null | "builtin";
  kernel?: Image;
  initrd?: Image;
  /** The guest's devicetree instead of the board's (QEMU's -dtb). */
  dtb?: Image;
}

/** Where a machine's console goes, and how its network backends wake the VM's thread. */
export interface MachineIo {
  output(bytes: Uint8Array): void;
  /** The next input byte, or -1. */
  input(): number;
  /** A network backend has something for the guest. */
  wake(): void;
}

/**
 * The control plane's half: the board must have room for the devices (checked before any file
 * is opened), then the images are read. Throws an Error whose first line names the flag.
 */
export function loadBootImages(config: VmConfig, platform: Platform, dirs?: readonly string[]): BootImages {
  checkBoard(config.drives, config.nets, usesBuiltinSbi(config), config.rng);
  const read = (what: string, path: string): Image => ({ name: path, bytes: platform.readImage(path, { what, maxBytes: config.memory, dirs }) });
  const b = config.bios;
  const bios = b === "none" ? null : b === "builtin" ? "builtin" : read("--bios", b === "default" ? platform.defaultFirmware() : b.file);
  if (!config.kernel && !bios) throw new Error("--bios none needs --kernel <file> to have something to run");
  if (!config.kernel && bios === "builtin") throw new Error("--mode para (the built-in SBI) needs --kernel <file>: it starts a kernel in S-mode");
  return {
    bios,
    ...(config.kernel ? { kernel: read("--kernel", config.kernel) } : {}),
    ...(config.initrd ? { initrd: read("--initrd", config.initrd) } : {}),
    ...(config.dtb ? { dtb: read("-dtb", config.dtb) } : {}),
  };
}

export interface BuildOptions {
  /** Directories the disks must be in (a daemon's --images); anywhere if undefined. */
  dirs?: readonly string[];
  /** Go on running a VM another thread saved: its memory as it is, and its machine's state. */
  resume?: { memory?: WebAssembly.Memory; state: unknown };
}

/**
 * The VM's home thread's half: open its backends and build the board; throws (one line) if one
 * cannot be opened. Each disk is a SwappableDisk (see machineDisks).
 */
export async function buildMachine(config: VmConfig, images: BootImages, platform: Platform, io: MachineIo, opts: BuildOptions = {}): Promise<VirtMachine> {
  const disks: DiskBackend[] = [];
  const nets: NetBackend[] = [];
  const usb: UsbDeviceSpec[] = [];
  try {
    for (const d of config.usb ?? []) usb.push(openUsbDevice(d, platform, io, opts.dirs));
    for (const d of config.drives) {
      const open = () => platform.openDisk(d.file, { format: d.format, readOnly: d.readOnly, dirs: opts.dirs, what: "--drive" });
      disks.push(new SwappableDisk(d.file, open));
    }
    // One budget for all the VM's user-mode NICs: more NICs do not mean more host sockets.
    const budget = new SocketBudget(config.limits.sockets);
    for (const n of config.nets) {
      // A failure after start-up (a later socket error) is the guest's to see, not fatal.
      const backend = createNetBackend(n.netdev, {
        hostSockets: platform.hostSockets, remoteUserNet: platform.remoteUserNet?.bind(platform), budget, onWake: io.wake, onError: () => {},
      });
      nets.push(backend);
      // hostfwd listeners must be up (e.g. the port is free), a relay must have taken the NIC, before the guest starts.
      await backend.ready?.();
    }
    const { diskBytesPerSec, diskOpsPerSec, netBytesPerSec } = config.limits;
    return new VirtMachine({
      drives: disks.map((backend, i) => ({ backend, serial: config.drives[i].serial, readOnly: config.drives[i].readOnly, if: config.drives[i].if })),
      nets: nets.map((backend, i) => ({ backend, model: config.nets[i].model })),
      ...(config.usb ? { usb: { devices: usb } } : {}),
      virtioConsole: usesBuiltinSbi(config),
      virtioRng: config.rng,
      virtioLegacy: config.virtioLegacy,
      noReboot: config.noReboot,
      module: platform.coreModule(),
      memory: config.memory,
      harts: config.smp,
      paging: config.paging,
      jit: config.jit ?? platform.defaultJit?.() ?? "off",
      jitCompiler: (config.jit ?? platform.defaultJit?.()) === "on" ? platform.jitCompiler?.() : undefined,
      bios: images.bios,
      kernel: images.kernel,
      initrd: images.initrd,
      dtb: images.dtb,
      append: config.append,
      output: io.output,
      input: io.input,
      timeExits: config.timeExits,
      limits: { diskBytesPerSec, diskOpsPerSec, netBytesPerSec },
      resume: opts.resume,
    });
  } catch (e) {
    for (const d of disks) d.close();
    for (const n of nets) n.close();
    for (const u of usb) if (u.type !== "usb-kbd") u.backend.close();
    throw e;
  }
}

/**
 * A USB device of the configuration with its backend opened (on the VM's home thread): a disk
 * image as --drive opens one, a serial port's Unix socket. Throws (one line) if it cannot be.
 */
export function openUsbDevice(d: UsbDeviceConfig, platform: Platform, io: Pick<MachineIo, "wake">, dirs?: readonly string[]): UsbDeviceSpec {
  const at = { id: d.id, ...(d.port !== undefined ? { port: d.port } : {}) };
  switch (d.type) {
    case "usb-kbd": return { type: d.type, ...at };
    case "usb-storage": {
      // A SwappableDisk as a drive's: a snapshot moves it to an overlay (machineUsbDisks).
      const backend = new SwappableDisk(d.file, () => platform.openDisk(d.file, { format: d.format, readOnly: d.readOnly, dirs, what: "--usb storage" }));
      return { type: d.type, ...at, backend, readOnly: d.readOnly, ...(d.serial !== undefined ? { serial: d.serial } : {}) };
    }
    case "usb-serial": {
      if (!platform.listenCharSocket) throw new Error(`--usb serial,socket=${d.socket}: this platform has no sockets`);
      return { type: d.type, ...at, backend: platform.listenCharSocket(d.socket, { onWake: io.wake, dirs }) };
    }
  }
}

export interface RestoreOptions {
  /** Directories the disks must be in; anywhere if undefined. */
  dirs?: readonly string[];
  /** How the guest's clock goes on: from the saved instant (a snapshot), or counting the time since (a move, a migration). */
  clock: ClockRestore;
  /** The VM's memory as it is (a move between threads): its RAM is not in the stream. */
  memory?: WebAssembly.Memory;
  /** RAM comes in on first touch (the state's source must stay open until core.lazy is false), instead of all now. */
  lazy?: boolean;
}

/**
 * Build a VM from a saved state (a snapshot, or a migrated VM): its backends opened as for a new
 * VM, the board built around the saved machine state, then the core, the boot ROM and RAM put
 * back. Nothing is loaded from images and nothing reset. Throws (and closes what it opened) if
 * any of it is refused.
 */
export async function restoreMachine(saved: OpenedVmState, platform: Platform, io: MachineIo, opts: RestoreOptions): Promise<VirtMachine> {
  const images: BootImages = { bios: usesBuiltinSbi(saved.config) ? "builtin" : null };
  const machine = await buildMachine(saved.config, images, platform, io, { dirs: opts.dirs, resume: { state: saved.machineState, memory: opts.memory } });
  try {
    saved.applyCore(machine.core, opts.clock);
    if (opts.lazy) lazyMemory(saved, machine.core);
    else loadMemory(saved, machine.core);
  } catch (e) {
    machine.close();
    throw e;
  }
  return machine;
}

/** The USB disks plugged into a machine, by device id, each a SwappableDisk as the drives are. */
export function machineUsbDisks(machine: VirtMachine): Map<string, SwappableDisk> {
  const out = new Map<string, SwappableDisk>();
  for (const [id, d] of machine.usbDisks()) {
    if (!(d instanceof SwappableDisk)) throw new Error(`USB disk ${id} of this machine was not opened by openUsbDevice`);
    out.set(id, d);
  }
  return out;
}

/**
 * The disks of a machine buildMachine built, in the order of its configuration's drives: each can
 * be moved to another image between requests (host/disk/swappable.ts: snapshots).
 */
export function machineDisks(machine: VirtMachine): SwappableDisk[] {
  return machine.disks.map((d, i) => {
    if (!(d instanceof SwappableDisk)) throw new Error(`disk ${i} of this machine was not attached by buildMachine`);
    return d;
  });
}
