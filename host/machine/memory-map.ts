/**
 * The board: QEMU's riscv `virt` machine (hw/riscv/virt.c), so that firmware and kernels built
 * for that board run unchanged, as a table of slots. A slot holds a type of device (whose file
 * declares its window, its interrupt lines and its devicetree node) at a fixed address, or a
 * family of them a stride apart, with the PLIC sources they drive. VirtMachine attaches devices
 * to slots, checkBoard() counts against them, and the devicetree lists the attached devices in
 * table order (QEMU's: its virtio slots highest first).
 */
import * as L from "../core/layout";
import type { DeviceType } from "../devices/device";
import { SIFIVE_TEST } from "../devices/sifive-test";
import { GOLDFISH_RTC } from "../devices/goldfish-rtc";
import { NS16550A } from "../devices/uart16550";
import { ATA } from "../devices/ata";
import { ETHOC } from "../devices/ethoc";
import { XHCI } from "../devices/xhci";
import { PLIC } from "../devices/plic";
import { CLINT } from "../devices/clint";
import { VIRTIO_MMIO } from "../virtio/mmio";

/** The boot ROM (the reset vector is at its start; QEMU's "mrom") and RAM: the core's layout. */
export const BOOT_ROM_BASE = L.ROM_GPA;
export const RAM_BASE = L.RAM_GPA;

export interface Slot<Options = void> {
  readonly type: DeviceType<Options>;
  /** Guest-physical base of the (first) device. */
  readonly base: number;
  /** PLIC source of its first line (0: none); each device of a family takes the next ones. */
  readonly irq: number;
  /** How many devices fit: 1 for a fixed device. */
  readonly count: number;
  /** Bytes from one device of a family to the next. */
  readonly stride: number;
  /** Device i of n goes to slot n-1-i, so the devicetree's first is the family's first (QEMU's virtio). */
  readonly fromTop: boolean;
  /** For checkBoard's errors: what the family holds and what it has ("ATA disks", "controllers"). */
  readonly holds: string;
  readonly has: string;
}

function fixed<O>(type: DeviceType<O>, base: number, irq = 0): Slot<O> {
  return { type, base, irq, count: 1, stride: 0, fromTop: false, holds: type.kind, has: "" };
}

function family<O>(type: DeviceType<O>, f: { base: number; stride: number; count: number; irq: number; fromTop?: boolean; holds: string; has: string }): Slot<O> {
  return { type, fromTop: false, ...f };
}

/** The slots, in devicetree order. */
export const BOARD = {
  rtc: fixed(GOLDFISH_RTC, 0x101000, 11),
  uart: fixed(NS16550A, 0x10000000, 10),
  test: fixed(SIFIVE_TEST, 0x100000),
  // Legacy devices of the full-virtualization machine (QEMU's virt board has none there).
  ata: family(ATA, { base: 0x10010000, stride: 0x1000, count: 4, irq: 12, holds: "ATA disks", has: "controllers" }),
  ethoc: family(ETHOC, { base: 0x10020000, stride: 0x1000, count: 4, irq: 16, holds: "ethoc NICs", has: "" }),
  // The USB controller (QEMU's riscv virt has none on its system bus; its qemu-xhci is on PCI).
  xhci: fixed(XHCI, 0x10030000, 20),
  virtio: family(VIRTIO_MMIO, { base: 0x10001000, stride: 0x1000, count: 8, irq: 1, fromTop: true, holds: "virtio devices", has: "slots" }),
  plic: fixed(PLIC, 0xc000000),
  clint: fixed(CLINT, L.CLINT_GPA),
} as const;

const SLOTS: readonly Slot<unknown>[] = Object.values(BOARD);

/** Where a device of a slot goes: its window and its PLIC sources. */
export interface Placement<Options = unknown> {
  readonly slot: Slot<Options>;
  readonly base: number;
  readonly irqs: readonly number[];
}

/** A device in its place, with what its devicetree node needs of it (the ethoc MAC). */
export interface Attached<Options = unknown> extends Placement<Options> {
  readonly options: Options;
}

/** Device `index` of a slot (0 for a fixed device). */
export function place<O>(slot: Slot<O>, index = 0): Placement<O> {
  if (!Number.isInteger(index) || index < 0 || index >= slot.count) throw new Error(`${slot.type.kind}: there is no slot ${index} (the board has ${slot.count})`);
  const irqs = Array.from({ length: slot.type.irqs }, (_, line) => slot.irq + index * slot.type.irqs + line);
  return { slot, base: slot.base + index * slot.stride, irqs };
}

/** Places for `n` devices of a family, in the order they come. */
export function placeFamily<O>(slot: Slot<O>, n: number): Placement<O>[] {
  checkRoom(slot, n);
  return Array.from({ length: n }, (_, i) => place(slot, slot.fromTop ? n - 1 - i : i));
}

/** Throws unless `n` devices fit in the slot; `note` explains the count. */
export function checkRoom(slot: Slot<unknown>, n: number, note = ""): void {
  if (n > slot.count) throw new Error(`too many ${slot.holds} (${n}${note}); the board has ${slot.count}${slot.has ? ` ${slot.has}` : ""}`);
}

/** Devices in devicetree order: by slot as the table has them, a family's in the order they came. */
export function inTableOrder(devices: readonly Attached[]): Attached[] {
  return SLOTS.flatMap((slot) => devices.filter((d) => d.slot === slot));
}
