/**
 * The contract between the machine's bus and its device models.
 *
 * A device sees only offsets inside its own MMIO window. Accesses are at most 4 bytes wide:
 * the bus splits 8-byte guest accesses into two little-endian 4-byte halves, so device code
 * never needs BigInt. Devices never reach into the core; they raise interrupt lines and read
 * guest memory only through the objects they are given.
 */
import type { DtNode, DtPlacement } from "./devicetree";
import type { DeviceState } from "./state";

export type { DeviceState } from "./state";

export interface MmioDevice {
  /** Short name used in errors and statistics ("uart0", "plic"). */
  readonly name: string;
  /** Size of the MMIO window in bytes. */
  readonly size: number;
  /** Read `size` (1, 2 or 4) bytes at `offset`; returns an unsigned value. */
  read(offset: number, size: 1 | 2 | 4): number;
  /** Write the low `size` (1, 2 or 4) bytes of `value` at `offset`. */
  write(offset: number, size: 1 | 2 | 4, value: number): void;
  /** Everything the device holds, as plain JSON data (host/devices/state.ts). */
  save(): DeviceState;
  /**
   * Take a state save() made (possibly on another thread, after a JSON round trip). Checks its
   * kind, version and every field first: a malformed state throws a clear Error and changes
   * nothing.
   */
  restore(state: unknown): void;
}

/**
 * A type of device as a board places it, declared in the device's own file: the board only
 * picks the address and the interrupt sources (host/machine/memory-map.ts).
 */
export interface DeviceType<Options = void> {
  /** The type's name, also the `kind` of its saved state ("ns16550a", "virtio-mmio"). */
  readonly kind: string;
  /** Devicetree node name: the board names the node `<dtName>@<base in hex>`. */
  readonly dtName: string;
  /** Size of its MMIO window in bytes. */
  readonly size: number;
  /** How many interrupt lines it drives (each to a PLIC source of its slot). */
  readonly irqs: number;
  /**
   * Whether other nodes name it by phandle: the interrupt controller every line goes to (its
   * phandle comes first, after the harts'), or a device other nodes refer to.
   */
  readonly phandle?: "interrupt-controller" | "referenced";
  /** Nodes it adds at the top of the tree, before /memory (the test device's syscon nodes). */
  rootNodes?(root: DtNode, at: DtPlacement, options: Options): void;
  /** Write its node's properties (the board has made the node under /soc). */
  describe(node: DtNode, at: DtPlacement, options: Options): void;
}

/** A level-triggered interrupt line into an interrupt controller. */
export type IrqLine = (level: boolean) => void;

/** Interrupt-pending bits of a hart's mip, as an interrupt controller drives them. */
export interface HartIrqPins {
  /** Set or clear `mip` bit `bit` (e.g. 9 = SEIP, 11 = MEIP) of hart `hart`. */
  set(hart: number, bit: number, level: boolean): void;
}

/** mip bit numbers (privileged spec, table 3.6). */
export const IRQ = {
  SSI: 1, MSI: 3, STI: 5, MTI: 7, SEI: 9, MEI: 11,
} as const;
