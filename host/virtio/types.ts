/**
 * The contract between the virtio-mmio transport and the device types (blk, console, rng, net),
 * plus the constants both sides share. Written from "Virtual I/O Device (VIRTIO) Version 1.2".
 *
 * Feature bits are handled as two u32 words (bits 0..31, 32..63) so that no BigInt appears on
 * any path the guest can drive.
 */
import type { GuestMemory } from "../devices/backends";
import type { DeviceState } from "../devices/device";
import type { Virtqueue } from "./queue";

/** Device status bits (spec 2.1). */
export const STATUS_ACKNOWLEDGE = 1;
export const STATUS_DRIVER = 2;
export const STATUS_DRIVER_OK = 4;
export const STATUS_FEATURES_OK = 8;
export const STATUS_DEVICE_NEEDS_RESET = 64;
export const STATUS_FAILED = 128;

/** Reserved (transport / ring) feature bits (spec 6). */
export const F_RING_INDIRECT_DESC = 28;
export const F_RING_EVENT_IDX = 29;
/** Legacy only: the device accepts any descriptor layout. */
export const F_ANY_LAYOUT = 27;
export const F_VERSION_1 = 32;

/** Device IDs (spec 5). */
export const DEVICE_ID_NET = 1;
export const DEVICE_ID_BLOCK = 2;
export const DEVICE_ID_CONSOLE = 3;
export const DEVICE_ID_ENTROPY = 4;

/** Feature bits as [bits 0..31, bits 32..63], each an unsigned 32-bit number. */
export type FeatureWords = readonly [number, number];

/** The words with only `bit` set. */
export function featureBit(bit: number): FeatureWords {
  return bit < 32 ? [(1 << bit) >>> 0, 0] : [0, (1 << (bit - 32)) >>> 0];
}

/** Union of feature bit numbers as words. */
export function featureWords(...bits: number[]): FeatureWords {
  let lo = 0;
  let hi = 0;
  for (const b of bits) {
    if (!Number.isInteger(b) || b < 0 || b > 63) throw new Error(`feature bit ${b} is out of range 0..63`);
    if (b < 32) lo |= 1 << b;
    else hi |= 1 << (b - 32);
  }
  return [lo >>> 0, hi >>> 0];
}

/** Whether `bit` is set in `words`. */
export function hasBit(words: FeatureWords, bit: number): boolean {
  return bit < 32 ? ((words[0] >>> bit) & 1) === 1 : ((words[1] >>> (bit - 32)) & 1) === 1;
}

/**
 * What a device sees of its transport. Everything here is safe to call at any time, from the
 * MMIO handler or from a backend callback (a received frame, console input).
 */
export interface VirtioHost {
  /** Guest memory for the device's own use (the rings are read through `queue()`). */
  readonly mem: GuestMemory;
  /** The transport is the legacy (version 1) interface: no VIRTIO_F_VERSION_1. */
  readonly legacy: boolean;
  /** Whether the driver accepted feature `bit` (meaningful once the driver has written them). */
  hasFeature(bit: number): boolean;
  /**
   * Queue `index` if the device may process it now (the queue is enabled, the driver is live
   * and the device is not waiting for a reset), else null.
   */
  queue(index: number): Virtqueue | null;
  /**
   * Used buffers were added to queue `index`: sends a used-buffer notification (interrupt)
   * unless the driver suppressed it (VIRTQ_AVAIL_F_NO_INTERRUPT or used_event).
   */
  usedAdded(index: number): void;
  /** The device changed its configuration space: bumps ConfigGeneration and notifies. */
  configChanged(): void;
  /**
   * The driver did something the device cannot recover from: enter DEVICE_NEEDS_RESET, send a
   * configuration change notification and process nothing until the driver resets the device.
   */
  needsReset(reason: string): void;
  /** The device is in DEVICE_NEEDS_RESET. */
  readonly broken: boolean;
}

/** A virtio device type, independent of the transport that exposes it. */
export interface VirtioDevice {
  /** Short name for diagnostics ("blk", "net"). */
  readonly name: string;
  /** Virtio device ID (spec 5): 1 net, 2 block, 3 console, 4 entropy. */
  readonly deviceId: number;
  /**
   * Device-type feature bits the device offers. The transport adds VERSION_1,
   * RING_INDIRECT_DESC and RING_EVENT_IDX itself.
   */
  readonly features: FeatureWords;
  /** Size of the device-specific configuration space in bytes. */
  readonly configSize: number;
  /** QueueNumMax of each virtqueue (each a power of two, 1..32768); the length is the queue count. */
  readonly queueMaxSizes: readonly number[];
  /** Called once by the transport's constructor. */
  attach(host: VirtioHost): void;
  /** Little-endian read of `size` bytes at `offset` of the configuration space (0 beyond its end). */
  readConfig(offset: number, size: 1 | 2 | 4): number;
  /** Little-endian write of `size` bytes at `offset` of the configuration space. */
  writeConfig(offset: number, size: 1 | 2 | 4, value: number): void;
  /** The driver notified queue `index` (also called for every enabled queue at DRIVER_OK). */
  queueNotify(index: number): void;
  /**
   * Work held back by a rate limit: ms until it may continue (Infinity: none). The machine then
   * calls retry(). Devices without limits leave both out.
   */
  retryMs?(): number;
  retry?(): void;
  /** Device reset (status 0): drop in-flight state; the transport resets the queues. */
  reset(): void;
  /** Everything the device holds, as plain JSON data (host/devices/state.ts). */
  save(): DeviceState;
  /** Restore `save()` output; validates everything first and throws a clear Error if malformed. */
  restore(state: unknown): void;
}

// ---- little-endian helpers over byte arrays (no DataView allocation on hot paths) ----

export function le16(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8);
}

export function le32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}

export function put16(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
}

export function put32(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
  b[o + 2] = (v >>> 16) & 0xff;
  b[o + 3] = (v >>> 24) & 0xff;
}

/** Read `size` bytes little-endian at `offset` of a config image; bytes past its end read 0. */
export function readConfigBytes(cfg: Uint8Array, offset: number, size: number): number {
  let v = 0;
  for (let i = size - 1; i >= 0; i--) {
    const o = offset + i;
    v = v * 256 + (o >= 0 && o < cfg.length ? cfg[o]! : 0);
  }
  return v >>> 0;
}

/** Run a device entry point that is not called by the transport (a backend callback). */
export function guarded(host: VirtioHost | null, who: string, fn: () => void): void {
  try {
    fn();
  } catch (e) {
    if (host === null) throw e;
    host.needsReset(`${who}: internal error: ${e instanceof Error ? e.message : String(e)}`);
  }
}
