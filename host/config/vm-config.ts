// What a VM is. The `boot` flags and the API's JSON definitions both map onto one VmConfig,
// checked in config/parse.ts and nowhere else; the builder (vm/build.ts) turns it into a
// machine. Plain JSON-safe data: it crosses to worker threads as it is, and snapshots keep it.
import type { Paging } from "../core/core";
import type { NetdevSpec } from "../net/netdev";
import type { BandwidthLimits, DriveInterface, NicModel } from "../machine/virt";
import type { DiskFormat } from "../disk/formats";
import type { JitMode } from "../jit/tier";

export type { Paging, JitMode, BandwidthLimits, DriveInterface, NicModel, DiskFormat };
export type Mode = "para" | "full";
export type OnFailure = "keep" | "restart" | "destroy";

/**
 * M-mode firmware: a file; "none" (the kernel starts in M-mode, QEMU's -bios none); "builtin"
 * (the host's SBI starts the kernel in S-mode: paravirtualized); "default" (the platform's
 * default firmware: Debian's OpenSBI on Node).
 */
export type FirmwareChoice = "none" | "builtin" | "default" | { file: string };

export interface DriveConfig {
  file: string;
  /** raw or qcow2; absent: probed when opened (qcow2's magic, else raw), as QEMU does. */
  format?: DiskFormat;
  readOnly: boolean;
  /** Serial number the guest sees (at most 20 characters). */
  serial?: string;
  if: DriveInterface;
}

export interface NicConfig {
  model: NicModel;
  /** The backend: user-mode networking with its options, or a port on a named switch. */
  netdev: NetdevSpec;
}

/** A USB device on the VM's xHCI controller; `port` is the root port it is on (first free if absent). */
export type UsbDeviceConfig = { id: string; port?: number } & (
  | { type: "usb-kbd" }
  | { type: "usb-storage"; file: string; format?: DiskFormat; readOnly: boolean; serial?: string }
  | { type: "usb-serial"; socket: string }
);

export interface VmConfig {
  /** Unique on its host: letters, digits, '.', '_', '-', at most 64. */
  name: string;
  mode: Mode;
  paging: Paging;
  /** The translation tier (docs/TRANSLATION.md); absent: the platform's default. */
  jit?: JitMode;
  /** Guest RAM in bytes. */
  memory: number;
  /** vCPUs (harts), 1-8. */
  smp: number;
  bios: FirmwareChoice;
  kernel?: string;
  initrd?: string;
  append?: string;
  /** A devicetree blob to give the guest instead of the board's own (QEMU's -dtb); /chosen gets bootargs and the initrd. */
  dtb?: string;
  drives: DriveConfig[];
  nets: NicConfig[];
  /** An xHCI USB controller with these devices (hot-plug changes the list); absent: no controller. */
  usb?: UsbDeviceConfig[];
  /** A virtio-rng besides what the mode brings (the built-in SBI's machine has one already). */
  rng: boolean;
  /** virtio-mmio's legacy (version 1) interface instead of version 2 (QEMU's default; -global virtio-mmio.force-legacy). */
  virtioLegacy: boolean;
  /** A reboot the guest asks for ends the VM instead, as a poweroff (QEMU's -no-reboot). */
  noReboot: boolean;
  /** Share of the CPU: relative weight, and at most `cap` of one pCPU (0 < cap ≤ 1). */
  cpu: { weight: number; cap?: number };
  /** Bandwidth limits (virtio devices) and the host sockets its user-mode networking may hold. */
  limits: BandwidthLimits & { sockets: number };
  /** When the guest crashes or gets stuck: keep it for inspection, restart it, or destroy it. */
  onFailure: OnFailure;
  /** Also time the host's handling of each exit (`boot --stats`). */
  timeExits?: boolean;
}

/**
 * The devices drives and NICs get without if= / model=: the full machine has legacy devices (an
 * ATA disk, an OpenCores Ethernet MAC), the paravirtualized one virtio.
 */
export const DEFAULT_DEVICES: Record<Mode, { drive: DriveInterface; nic: NicModel }> = {
  full: { drive: "ide", nic: "ethoc" },
  para: { drive: "virtio", nic: "virtio" },
};

/** Whether the VM boots on the host's built-in SBI (no guest firmware; virtio console and RNG). */
export function usesBuiltinSbi(config: Pick<VmConfig, "bios">): boolean {
  return config.bios === "builtin";
}

/**
 * A VM definition as a client writes it (a JSON file for `wasmvisor ctl create`, a POST /vms
 * body): the fields of the `boot` flags. parseVmConfig makes a VmConfig of it.
 */
export interface VmDefinition {
  /** Unique on the host: letters, digits, '-', '_', '.', at most 64. */
  name: string;
  mode?: "para" | "full";
  paging?: "nested" | "shadow";
  /** The translation tier: "off", "on" (hot code is compiled to WebAssembly) or "all" (every page, for tests). */
  jit?: JitMode;
  /** A file, "none" or "builtin" (the default in para mode; full mode defaults to Debian's OpenSBI). */
  bios?: string;
  kernel?: string;
  initrd?: string;
  append?: string;
  /** A devicetree blob given to the guest instead of the generated one (QEMU's -dtb). */
  dtb?: string;
  /** "256M", "1G", or MiB as a number. Default 256M. */
  memory?: string | number;
  /** vCPUs (harts), 1–8. */
  smp?: number;
  /** `--drive` specs: "file=disk.img,readonly=on", "file=vm.qcow2,format=qcow2". */
  drives?: string[];
  /** `--net` specs: "user,hostfwd=tcp::8080-:80", "switch=lan". */
  nets?: string[];
  /**
   * An xHCI USB controller and `--usb` specs of its devices ([] for the controller alone):
   * "kbd", "storage,file=usb.img[,format=raw|qcow2][,readonly=on]", "serial,socket=/run/vm-serial.sock",
   * each with an optional id=NAME and port=N.
   */
  usb?: string[];
  /** A virtio-rng device (default false; para mode has one anyway). */
  rng?: boolean;
  /** virtio-mmio's legacy interface, version 1 (default false: version 2). */
  virtioLegacy?: boolean;
  /** The guest's reboot ends the VM (default false: it reboots). */
  noReboot?: boolean;
  cpu?: {
    /** Relative CPU weight (default 1). */
    weight?: number;
    /** At most this percentage of one pCPU (1–100). */
    cap?: number;
  };
  /** Bandwidth limits (token buckets; absent means unlimited), and host sockets (default 128). */
  limits?: {
    diskBytesPerSec?: number;
    diskOpsPerSec?: number;
    netBytesPerSec?: number;
    /** TCP connections and UDP bindings its user-mode networking may hold on the host at once. */
    sockets?: number;
  };
  /** What to do when the guest crashes or gets stuck: keep it for inspection (default), restart it, or destroy it. */
  onFailure?: "keep" | "restart" | "destroy";
}

