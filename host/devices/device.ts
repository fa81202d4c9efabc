/**
 * The contract between the machine's bus and its device models.
 *
 * A device sees only offsets inside its own MMIO window. Accesses are at most 4 bytes wide:
 * the bus splits 8-byte guest accesses into two little-endian 4-byte halves, so device code
 * never needs BigInt. Devices never reach into the core; they raise interrupt lines and read
 * guest memory only through the objects they are given.
 */
export interface MmioDevice {
  /** Short name used in errors and statistics ("uart0", "plic"). */
  readonly name: string;
  /** Size of the MMIO window in bytes. */
  readonly size: number;
  /** Read `size` (1, 2 or 4) bytes at `offset`; returns an unsigned value. */
  read(offset: number, size: 1 | 2 | 4): number;
  /** Write the low `size` (1, 2 or 4) bytes of `value` at `offset`. */
  write(offset: number, size: 1 | 2 | 4, value: number): void;
  /** Plain-data snapshot of the device (JSON-safe, plus typed arrays). */
  save(): DeviceState;
  /** Restore from `save()` output; throws a clear Error on malformed state. */
  restore(state: DeviceState): void;
}

export type DeviceState = { [key: string]: unknown };

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
