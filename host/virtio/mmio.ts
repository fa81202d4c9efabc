/**
 * The virtio-mmio transport (spec 4.2), version 2, or the legacy version 1 interface
 * (GuestPageSize / QueuePFN / QueueAlign) when constructed with `{ legacy: true }`.
 *
 * The transport owns the feature negotiation, the device status, the virtqueues and the
 * interrupt; the device type (blk, net, ...) only sees a `VirtioHost`. Nothing the guest writes
 * can make an MMIO access throw: malformed rings or requests put the device into
 * DEVICE_NEEDS_RESET (status bit 64) with a configuration-change interrupt, and the device
 * processes nothing more until the driver writes 0 to Status.
 */
import type { GuestMemory } from "../devices/backends";
import type { DeviceState, DeviceType, IrqLine, MmioDevice } from "../devices/device";
import { setInterrupts, setReg } from "../devices/devicetree";
import { StateReader } from "../devices/state";
import { Virtqueue, type QueueOwner, type QueueState } from "./queue";
import {
  F_ANY_LAYOUT,
  F_RING_EVENT_IDX,
  F_RING_INDIRECT_DESC,
  F_VERSION_1,
  STATUS_DEVICE_NEEDS_RESET,
  STATUS_DRIVER_OK,
  STATUS_FEATURES_OK,
  type FeatureWords,
  type VirtioDevice,
  type VirtioHost,
} from "./types";

export * from "./types";

// Register offsets (spec 4.2.2 and 4.2.4).
export const REG_MAGIC = 0x000;
export const REG_VERSION = 0x004;
export const REG_DEVICE_ID = 0x008;
export const REG_VENDOR_ID = 0x00c;
export const REG_DEVICE_FEATURES = 0x010;
export const REG_DEVICE_FEATURES_SEL = 0x014;
export const REG_DRIVER_FEATURES = 0x020;
export const REG_DRIVER_FEATURES_SEL = 0x024;
export const REG_GUEST_PAGE_SIZE = 0x028; // legacy
export const REG_QUEUE_SEL = 0x030;
export const REG_QUEUE_NUM_MAX = 0x034;
export const REG_QUEUE_NUM = 0x038;
export const REG_QUEUE_ALIGN = 0x03c; // legacy
export const REG_QUEUE_PFN = 0x040; // legacy
export const REG_QUEUE_READY = 0x044;
export const REG_QUEUE_NOTIFY = 0x050;
export const REG_INTERRUPT_STATUS = 0x060;
export const REG_INTERRUPT_ACK = 0x064;
export const REG_STATUS = 0x070;
export const REG_QUEUE_DESC_LOW = 0x080;
export const REG_QUEUE_DESC_HIGH = 0x084;
export const REG_QUEUE_DRIVER_LOW = 0x090;
export const REG_QUEUE_DRIVER_HIGH = 0x094;
export const REG_QUEUE_DEVICE_LOW = 0x0a0;
export const REG_QUEUE_DEVICE_HIGH = 0x0a4;
export const REG_SHM_SEL = 0x0ac;
export const REG_SHM_LEN_LOW = 0x0b0;
export const REG_SHM_LEN_HIGH = 0x0b4;
export const REG_SHM_BASE_LOW = 0x0b8;
export const REG_SHM_BASE_HIGH = 0x0bc;
export const REG_QUEUE_RESET = 0x0c0;
export const REG_CONFIG_GENERATION = 0x0fc;
export const REG_CONFIG = 0x100;

export const VIRTIO_MMIO_MAGIC = 0x74726976; // "virt"
/**
 * VendorID: QEMU's ("QEMU" little-endian), as on the board we are compatible with. Linux ignores
 * it, but guests written for QEMU's virt check it (xv6 finds no disk otherwise).
 */
export const VIRTIO_MMIO_VENDOR = 0x554d4551;

/** InterruptStatus bits. */
export const INT_USED_BUFFER = 1;
export const INT_CONFIG_CHANGE = 2;

export interface VirtioMmioOptions {
  /** MmioDevice name (default "virtio-<device name>"). */
  name?: string;
  /** Expose the legacy (version 1) register interface instead of version 2. */
  legacy?: boolean;
  /** VendorID register (default VIRTIO_MMIO_VENDOR). */
  vendorId?: number;
  /** Offer VIRTIO_F_RING_INDIRECT_DESC (default true). */
  indirectDesc?: boolean;
  /** Offer VIRTIO_F_RING_EVENT_IDX (default true). */
  eventIdx?: boolean;
  /** Called once each time the device enters DEVICE_NEEDS_RESET, with the reason. */
  onError?: (message: string) => void;
}

const VERSION = 1;

/** A virtio-mmio transport as the board places it (whatever device is behind it). */
export const VIRTIO_MMIO: DeviceType = {
  kind: "virtio-mmio",
  dtName: "virtio_mmio",
  size: 0x1000,
  irqs: 1,
  describe(node, at) {
    setInterrupts(setReg(node, at, this.size).setString("compatible", "virtio,mmio"), at);
  },
};

/**
 * A virtio device on the MMIO bus. `irq` is the device's level-triggered interrupt line: high
 * while InterruptStatus is non-zero.
 */
export class VirtioMmio implements MmioDevice {
  readonly name: string;
  readonly size = VIRTIO_MMIO.size;
  readonly legacy: boolean;

  private readonly vendorId: number;
  private readonly offered: [number, number];
  private readonly queues: Virtqueue[];
  private readonly host: VirtioHost;

  private statusReg = 0;
  private broken = false;
  private error: string | null = null;
  private devFeatSel = 0;
  private drvFeatSel = 0;
  private drvFeat: [number, number] = [0, 0];
  private queueSel = 0;
  private intStatus = 0;
  private irqLevel = false;
  private generation = 0;
  private guestPageSize = 4096;
  private shmSel = 0;

  constructor(
    readonly device: VirtioDevice,
    private readonly mem: GuestMemory,
    private readonly irq: IrqLine,
    private readonly opts: VirtioMmioOptions = {},
  ) {
    this.name = opts.name ?? `virtio-${device.name}`;
    this.legacy = opts.legacy ?? false;
    this.vendorId = (opts.vendorId ?? VIRTIO_MMIO_VENDOR) >>> 0;
    const [lo, hi] = device.features;
    // Device-type bits are 0..23 and 50..63 (spec 6); transport bits are ours to add.
    let offLo = (lo & 0x00ffffff) >>> 0;
    let offHi = (hi & 0xfffc0000) >>> 0;
    if (opts.indirectDesc ?? true) offLo |= 1 << F_RING_INDIRECT_DESC;
    if (opts.eventIdx ?? true) offLo |= 1 << F_RING_EVENT_IDX;
    if (this.legacy) offLo |= 1 << F_ANY_LAYOUT; // our devices never assume a layout
    else offHi |= 1 << (F_VERSION_1 - 32);
    this.offered = [offLo >>> 0, offHi >>> 0];

    const self = this;
    const owner: QueueOwner = {
      mem,
      fail: (reason) => this.fail(reason),
      get broken() {
        return self.broken;
      },
    };
    this.queues = device.queueMaxSizes.map((max, i) => new Virtqueue(i, max, owner));

    const host: VirtioHost = {
      mem,
      legacy: this.legacy,
      hasFeature: (bit) => this.negotiated(bit),
      queue: (i) => this.usableQueue(i),
      usedAdded: (i) => this.usedAdded(i),
      configChanged: () => this.configChanged(),
      needsReset: (reason) => this.fail(reason),
      get broken() {
        return self.broken;
      },
    };
    this.host = host;
    device.attach(host);
  }

  // ---- state visible to the VM integrator and tests ----

  /** Device status register as the driver reads it. */
  get status(): number {
    return this.statusReg | (this.broken ? STATUS_DEVICE_NEEDS_RESET : 0);
  }

  /** Whether the device waits for a reset after a driver error. */
  get needsReset(): boolean {
    return this.broken;
  }

  /** Why the device last entered DEVICE_NEEDS_RESET (null if it has not since the last reset). */
  get lastError(): string | null {
    return this.error;
  }

  /** Current InterruptStatus. */
  get interruptStatus(): number {
    return this.intStatus;
  }

  /** Features offered to the driver, as [bits 0..31, bits 32..63]. */
  get offeredFeatures(): FeatureWords {
    return this.offered;
  }

  /** Features the driver accepted, as [bits 0..31, bits 32..63]. */
  get driverFeatures(): FeatureWords {
    return this.drvFeat;
  }

  // ---- MmioDevice ----

  read(offset: number, size: 1 | 2 | 4): number {
    if (offset >= REG_CONFIG) {
      const off = offset - REG_CONFIG;
      if (off + size > this.device.configSize) return 0;
      try {
        return this.device.readConfig(off, size) >>> 0;
      } catch (e) {
        this.fail(`config read: ${errText(e)}`);
        return 0;
      }
    }
    // Control registers are 32-bit wide and aligned only (spec 4.2.2.2); anything else reads 0.
    if (size !== 4 || offset & 3) return 0;
    const q = this.queueSel < this.queues.length ? this.queues[this.queueSel]! : null;
    switch (offset) {
      case REG_MAGIC:
        return VIRTIO_MMIO_MAGIC;
      case REG_VERSION:
        return this.legacy ? 1 : 2;
      case REG_DEVICE_ID:
        return this.device.deviceId;
      case REG_VENDOR_ID:
        return this.vendorId;
      case REG_DEVICE_FEATURES:
        return this.devFeatSel < 2 ? this.offered[this.devFeatSel]! : 0;
      case REG_QUEUE_NUM_MAX:
        return q ? q.maxSize : 0;
      case REG_QUEUE_NUM:
        return q ? q.size : 0;
      case REG_QUEUE_PFN:
        return this.legacy && q ? q.pfn : 0;
      case REG_QUEUE_READY:
        return !this.legacy && q && q.ready ? 1 : 0;
      case REG_INTERRUPT_STATUS:
        return this.intStatus;
      case REG_STATUS:
        return this.status;
      case REG_QUEUE_DESC_LOW:
        return !this.legacy && q ? q.descLo : 0;
      case REG_QUEUE_DESC_HIGH:
        return !this.legacy && q ? q.descHi : 0;
      case REG_QUEUE_DRIVER_LOW:
        return !this.legacy && q ? q.driverLo : 0;
      case REG_QUEUE_DRIVER_HIGH:
        return !this.legacy && q ? q.driverHi : 0;
      case REG_QUEUE_DEVICE_LOW:
        return !this.legacy && q ? q.deviceLo : 0;
      case REG_QUEUE_DEVICE_HIGH:
        return !this.legacy && q ? q.deviceHi : 0;
      case REG_SHM_LEN_LOW:
      case REG_SHM_LEN_HIGH:
      case REG_SHM_BASE_LOW:
      case REG_SHM_BASE_HIGH:
        // No shared memory regions: every SHMSel reads length and base -1.
        return this.legacy ? 0 : 0xffffffff;
      case REG_CONFIG_GENERATION:
        return this.legacy ? 0 : this.generation;
      default:
        return 0; // write-only and reserved registers
    }
  }

  write(offset: number, size: 1 | 2 | 4, value: number): void {
    value >>>= 0;
    if (offset >= REG_CONFIG) {
      const off = offset - REG_CONFIG;
      if (off + size > this.device.configSize) return;
      try {
        this.device.writeConfig(off, size, value);
      } catch (e) {
        this.fail(`config write: ${errText(e)}`);
      }
      return;
    }
    if (size !== 4 || offset & 3) return;
    const q = this.queueSel < this.queues.length ? this.queues[this.queueSel]! : null;
    // Queue layout registers are frozen while the queue is live (spec 4.2.2.2).
    const qIdle = q !== null && !q.ready;
    switch (offset) {
      case REG_DEVICE_FEATURES_SEL:
        this.devFeatSel = value;
        break;
      case REG_DRIVER_FEATURES:
        // No new features after FEATURES_OK (or, legacy, after DRIVER_OK).
        if (this.drvFeatSel < 2 && !(this.statusReg & (STATUS_FEATURES_OK | STATUS_DRIVER_OK))) {
          this.drvFeat[this.drvFeatSel] = value;
          this.syncQueueFeatures();
        }
        break;
      case REG_DRIVER_FEATURES_SEL:
        this.drvFeatSel = value;
        break;
      case REG_GUEST_PAGE_SIZE:
        if (this.legacy) this.guestPageSize = value;
        break;
      case REG_QUEUE_SEL:
        this.queueSel = value;
        break;
      case REG_QUEUE_NUM:
        if (qIdle) q.size = value;
        break;
      case REG_QUEUE_ALIGN:
        if (this.legacy && qIdle) q.align = value;
        break;
      case REG_QUEUE_PFN:
        if (this.legacy && q) this.writePfn(q, value);
        break;
      case REG_QUEUE_READY:
        if (!this.legacy && q) this.writeReady(q, value);
        break;
      case REG_QUEUE_NOTIFY:
        this.notify(value & 0xffff);
        break;
      case REG_INTERRUPT_ACK:
        this.intStatus &= ~value;
        this.updateIrq();
        break;
      case REG_STATUS:
        this.writeStatus(value & 0xff);
        break;
      case REG_QUEUE_DESC_LOW:
        if (!this.legacy && qIdle) q.descLo = value;
        break;
      case REG_QUEUE_DESC_HIGH:
        if (!this.legacy && qIdle) q.descHi = value;
        break;
      case REG_QUEUE_DRIVER_LOW:
        if (!this.legacy && qIdle) q.driverLo = value;
        break;
      case REG_QUEUE_DRIVER_HIGH:
        if (!this.legacy && qIdle) q.driverHi = value;
        break;
      case REG_QUEUE_DEVICE_LOW:
        if (!this.legacy && qIdle) q.deviceLo = value;
        break;
      case REG_QUEUE_DEVICE_HIGH:
        if (!this.legacy && qIdle) q.deviceHi = value;
        break;
      case REG_SHM_SEL:
        this.shmSel = value;
        break;
      default:
        break; // read-only, reserved, and QueueReset (VIRTIO_F_RING_RESET is not offered)
    }
  }

  // ---- status, features, queues ----

  private negotiated(bit: number): boolean {
    const w = this.drvFeat;
    return bit < 32 ? ((w[0] >>> bit) & 1) === 1 : bit < 64 ? ((w[1] >>> (bit - 32)) & 1) === 1 : false;
  }

  private syncQueueFeatures(): void {
    const ev = this.negotiated(F_RING_EVENT_IDX);
    const ind = this.negotiated(F_RING_INDIRECT_DESC);
    for (const q of this.queues) {
      q.eventIdx = ev;
      q.indirect = ind;
    }
  }

  private writeStatus(value: number): void {
    if (value === 0) {
      this.reset();
      return;
    }
    const old = this.statusReg;
    // DEVICE_NEEDS_RESET belongs to the device; the driver cannot set or clear it.
    let v = value & ~STATUS_DEVICE_NEEDS_RESET;
    if (v & STATUS_FEATURES_OK && !(old & STATUS_FEATURES_OK)) {
      const [lo, hi] = this.drvFeat;
      // A driver that leaves VERSION_1 out (xv6's) is served as QEMU serves it: the device
      // keeps to what was negotiated (virtio-net's header is then 10 bytes).
      const subset = (lo & ~this.offered[0]) === 0 && (hi & ~this.offered[1]) === 0;
      if (!subset) v &= ~STATUS_FEATURES_OK; // the driver reads it back and gives up
    }
    if (this.legacy && v & STATUS_DRIVER_OK && !(old & STATUS_DRIVER_OK)) {
      // Legacy has no FEATURES_OK: features are final now; drop any we did not offer.
      this.drvFeat[0] = (this.drvFeat[0] & this.offered[0]) >>> 0;
      this.drvFeat[1] = (this.drvFeat[1] & this.offered[1]) >>> 0;
      this.syncQueueFeatures();
    }
    this.statusReg = v;
    if (v & STATUS_DRIVER_OK && !(old & STATUS_DRIVER_OK)) {
      // Buffers may have been posted before DRIVER_OK (and input may be waiting): look now.
      for (const q of this.queues) if (q.ready) this.notify(q.index);
    }
  }

  /** Device reset: Status 0. GuestPageSize survives (Linux writes it once, at probe). */
  reset(): void {
    try {
      this.device.reset();
    } catch (e) {
      // A device that cannot reset is a host bug; report it but still reset the transport.
      this.opts.onError?.(`${this.name}: device reset failed: ${errText(e)}`);
    }
    this.statusReg = 0;
    this.broken = false;
    this.error = null;
    this.devFeatSel = this.drvFeatSel = 0;
    this.drvFeat = [0, 0];
    this.queueSel = 0;
    this.shmSel = 0;
    for (const q of this.queues) q.reset();
    this.syncQueueFeatures();
    this.intStatus = 0;
    this.updateIrq();
  }

  private writeReady(q: Virtqueue, value: number): void {
    if (value === 0) {
      q.disable();
      return;
    }
    if (q.ready) return;
    const err = q.enable();
    if (err !== null) this.fail(err);
  }

  private writePfn(q: Virtqueue, value: number): void {
    if (value === 0) {
      q.disable();
      q.pfn = 0;
      return;
    }
    if (q.ready) return;
    q.pfn = value;
    const err = q.enableLegacy(this.guestPageSize);
    if (err !== null) this.fail(err);
  }

  /** The device may touch queue `i` now. Legacy drivers may use queues before DRIVER_OK. */
  private usableQueue(i: number): Virtqueue | null {
    if (this.broken) return null;
    const q = i >= 0 && i < this.queues.length ? this.queues[i]! : null;
    if (q === null || !q.ready) return null;
    if (!this.legacy) {
      // Spec 2.1.2: no buffers are consumed before DRIVER_OK (nor without FEATURES_OK).
      const live = STATUS_DRIVER_OK | STATUS_FEATURES_OK;
      if ((this.statusReg & live) !== live) return null;
    }
    return q;
  }

  /** ms until the device's rate-limited work may continue (Infinity: nothing waits). */
  retryMs(): number {
    if (this.broken || !this.device.retryMs) return Infinity;
    return this.device.retryMs();
  }

  /** Continue rate-limited work (when retryMs() has come down to 0). */
  retry(): void {
    if (this.broken || !this.device.retry) return;
    try {
      this.device.retry();
    } catch (e) {
      this.fail(`internal error: ${errText(e)}`);
    }
  }

  private notify(i: number): void {
    if (this.usableQueue(i) === null) return;
    try {
      this.device.queueNotify(i);
    } catch (e) {
      this.fail(`queue ${i}: internal error: ${errText(e)}`);
    }
  }

  private usedAdded(i: number): void {
    const q = i >= 0 && i < this.queues.length ? this.queues[i]! : null;
    if (q === null || this.broken) return;
    if (!this.legacy && !(this.statusReg & STATUS_DRIVER_OK)) return;
    if (!q.needsInterrupt()) return;
    this.intStatus |= INT_USED_BUFFER;
    this.updateIrq();
  }

  private configChanged(): void {
    this.generation = (this.generation + 1) >>> 0;
    // Only a live driver is told; one that is still probing reads the config afterwards.
    if (this.statusReg & STATUS_DRIVER_OK) {
      this.intStatus |= INT_CONFIG_CHANGE;
      this.updateIrq();
    }
  }

  private fail(reason: string): void {
    if (this.broken) return;
    this.broken = true;
    this.error = reason;
    this.opts.onError?.(`${this.name}: ${reason}; device needs reset`);
    this.intStatus |= INT_CONFIG_CHANGE;
    this.updateIrq();
  }

  // Driven on every change of InterruptStatus, even when it stays high: the PLIC takes a line
  // driven high again as a new request (as QEMU's).
  private updateIrq(): void {
    const level = this.intStatus !== 0;
    if (level || this.irqLevel) this.irq(level);
    this.irqLevel = level;
  }

  // ---- save / restore ----

  save(): DeviceState {
    return {
      kind: VIRTIO_MMIO.kind,
      version: VERSION,
      deviceId: this.device.deviceId,
      legacy: this.legacy,
      status: this.statusReg,
      broken: this.broken,
      error: this.error,
      deviceFeaturesSel: this.devFeatSel,
      driverFeaturesSel: this.drvFeatSel,
      driverFeatures: [this.drvFeat[0], this.drvFeat[1]],
      queueSel: this.queueSel,
      interruptStatus: this.intStatus,
      configGeneration: this.generation,
      guestPageSize: this.guestPageSize,
      shmSel: this.shmSel,
      queues: this.queues.map((q) => q.save()),
      device: this.device.save(),
    };
  }

  restore(state: unknown): void {
    const who = this.name;
    const s = StateReader.open(state, who, VIRTIO_MMIO.kind, VERSION);
    const deviceId = s.int("deviceId", 0, 0xffffffff);
    if (deviceId !== this.device.deviceId) throw new Error(`${who}: state is for device id ${deviceId}, this is device id ${this.device.deviceId}`);
    const legacy = s.bool("legacy");
    if (legacy !== this.legacy) throw new Error(`${who}: state is for the ${legacy ? "legacy" : "modern"} interface`);
    const fields = {
      status: s.bits("status", 0xff & ~STATUS_DEVICE_NEEDS_RESET),
      broken: s.bool("broken"),
      error: s.nullable("error", (f) => s.string(f)),
      devFeatSel: s.int("deviceFeaturesSel", 0, 0xffffffff),
      drvFeatSel: s.int("driverFeaturesSel", 0, 0xffffffff),
      drvFeat: s.words("driverFeatures", 2),
      queueSel: s.int("queueSel", 0, 0xffffffff),
      intStatus: s.bits("interruptStatus", INT_USED_BUFFER | INT_CONFIG_CHANGE),
      generation: s.int("configGeneration", 0, 0xffffffff),
      guestPageSize: s.int("guestPageSize", 0, 0xffffffff),
      shmSel: s.int("shmSel", 0, 0xffffffff),
    };
    const queues = s.list("queues", this.queues.length, this.queues.length);
    const checked: QueueState[] = queues.map((i) => Virtqueue.check(queues.object(i), this.queues[i]!.maxSize));
    // Dry run: every enabled queue's rings must be in this machine's RAM.
    const probe: QueueOwner = { mem: this.mem, fail: () => {}, broken: false };
    checked.forEach((st, i) => {
      const err = new Virtqueue(i, this.queues[i]!.maxSize, probe).apply(st, this.legacy, fields.guestPageSize);
      if (err !== null) throw new Error(`${who}: state.queues[${i}]: ${err}`);
    });
    this.device.restore(s.state("device")); // validates before changing anything

    this.statusReg = fields.status;
    this.broken = fields.broken;
    this.error = fields.error;
    this.devFeatSel = fields.devFeatSel;
    this.drvFeatSel = fields.drvFeatSel;
    this.drvFeat = [fields.drvFeat[0]!, fields.drvFeat[1]!];
    this.queueSel = fields.queueSel;
    this.generation = fields.generation;
    this.guestPageSize = fields.guestPageSize;
    this.shmSel = fields.shmSel;
    this.syncQueueFeatures();
    checked.forEach((st, i) => this.queues[i]!.apply(st, this.legacy, this.guestPageSize));
    this.intStatus = fields.intStatus;
    this.irqLevel = this.intStatus !== 0;
    this.irq(this.irqLevel); // re-drive: the interrupt controller may have been restored separately
  }
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
