/**
 * Test scaffolding: guest RAM over a SharedArrayBuffer (as in the VM), and a small virtio
 * driver that talks to a VirtioMmio only through its registers, in the order Linux does.
 */
import type { GuestMemory, NetBackend } from "../../host/devices/backends";
import {
  REG_CONFIG,
  REG_CONFIG_GENERATION,
  REG_DEVICE_FEATURES,
  REG_DEVICE_FEATURES_SEL,
  REG_DRIVER_FEATURES,
  REG_DRIVER_FEATURES_SEL,
  REG_GUEST_PAGE_SIZE,
  REG_INTERRUPT_ACK,
  REG_INTERRUPT_STATUS,
  REG_QUEUE_ALIGN,
  REG_QUEUE_DESC_HIGH,
  REG_QUEUE_DESC_LOW,
  REG_QUEUE_DEVICE_HIGH,
  REG_QUEUE_DEVICE_LOW,
  REG_QUEUE_DRIVER_HIGH,
  REG_QUEUE_DRIVER_LOW,
  REG_QUEUE_NOTIFY,
  REG_QUEUE_NUM,
  REG_QUEUE_NUM_MAX,
  REG_QUEUE_PFN,
  REG_QUEUE_READY,
  REG_QUEUE_SEL,
  REG_STATUS,
  STATUS_ACKNOWLEDGE,
  STATUS_DRIVER,
  STATUS_DRIVER_OK,
  STATUS_FAILED,
  STATUS_FEATURES_OK,
  VirtioMmio,
  type VirtioDevice,
  type VirtioMmioOptions,
} from "../../host/virtio/mmio";
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from "../../host/virtio/queue";

export const RAM_BASE = 0x8000_0000;

/** A network backend for device tests: records what the device sends, delivers what the test gives it. */
export class LoopBackend implements NetBackend {
  sent: Uint8Array[] = [];
  rx: ((f: Uint8Array) => void) | null = null;
  send(frame: Uint8Array): void {
    this.sent.push(frame);
  }
  attach(receive: (frame: Uint8Array) => void): void {
    this.rx = receive;
  }
  close(): void {}
  deliver(frame: Uint8Array): void {
    this.rx!(frame);
  }
}


export class FakeRam implements GuestMemory {
  readonly bytes: Uint8Array;
  private next: number;

  constructor(
    readonly base = RAM_BASE,
    readonly size = 8 << 20,
  ) {
    this.bytes = new Uint8Array(new SharedArrayBuffer(size));
    this.next = base + 0x1000;
  }

  view(gpa: number, len: number): Uint8Array | null {
    if (!Number.isSafeInteger(gpa) || !Number.isSafeInteger(len) || len < 0) return null;
    const off = gpa - this.base;
    if (off < 0 || off + len > this.size) return null;
    return this.bytes.subarray(off, off + len);
  }

  /** A copy, so a device that writes through a read-only view loses the write and its test fails. */
  read(gpa: number, len: number): Uint8Array | null {
    return this.view(gpa, len)?.slice() ?? null;
  }

  /** Bump-allocate `len` bytes aligned to `align`; returns the guest-physical address. */
  alloc(len: number, align = 16): number {
    const a = Math.ceil(this.next / align) * align;
    if (a + len > this.base + this.size) throw new Error("test RAM exhausted");
    this.next = a + Math.max(len, 1);
    return a;
  }

  private off(gpa: number): number {
    return gpa - this.base;
  }

  u8(gpa: number): number {
    return this.bytes[this.off(gpa)]!;
  }
  u16(gpa: number): number {
    const o = this.off(gpa);
    return this.bytes[o]! | (this.bytes[o + 1]! << 8);
  }
  u32(gpa: number): number {
    const o = this.off(gpa);
    return (this.bytes[o]! | (this.bytes[o + 1]! << 8) | (this.bytes[o + 2]! << 16) | (this.bytes[o + 3]! << 24)) >>> 0;
  }
  set8(gpa: number, v: number): void {
    this.bytes[this.off(gpa)] = v;
  }
  set16(gpa: number, v: number): void {
    const o = this.off(gpa);
    this.bytes[o] = v & 0xff;
    this.bytes[o + 1] = (v >>> 8) & 0xff;
  }
  set32(gpa: number, v: number): void {
    const o = this.off(gpa);
    for (let i = 0; i < 4; i++) this.bytes[o + i] = (v >>> (8 * i)) & 0xff;
  }
  /** A copy of [gpa, gpa+len), for tests to inspect. */
  copy(gpa: number, len: number): Uint8Array {
    const o = this.off(gpa);
    return this.bytes.slice(o, o + len);
  }
  write(gpa: number, data: Uint8Array): void {
    this.bytes.set(data, this.off(gpa));
  }
}

/** A buffer to post: readable data, or `writable` bytes for the device to fill. */
export type Buf = { data: Uint8Array } | { writable: number };

export interface PostedChain {
  head: number;
  /** Guest address of each buffer, in order. */
  addrs: number[];
}

export interface UsedElem {
  id: number;
  len: number;
}

/** The driver's side of one split virtqueue. */
export class DriverQueue {
  private free: number[] = [];
  private owned = new Map<number, number[]>();
  availIdx = 0;
  lastUsed = 0;

  constructor(
    private readonly drv: TestDriver,
    readonly index: number,
    readonly size: number,
    readonly desc: number,
    readonly avail: number,
    readonly used: number,
  ) {
    for (let i = 0; i < size; i++) this.free.push(i);
  }

  private get ram(): FakeRam {
    return this.drv.ram;
  }

  writeDesc(table: number, i: number, addr: number, len: number, flags: number, next: number): void {
    const a = table + 16 * i;
    this.ram.set32(a, addr % 0x1_0000_0000);
    this.ram.set32(a + 4, Math.floor(addr / 0x1_0000_0000));
    this.ram.set32(a + 8, len);
    this.ram.set16(a + 12, flags);
    this.ram.set16(a + 14, next);
  }

  /** Put `head` in the next available slot and bump idx (no notification). */
  pushAvail(head: number): void {
    this.ram.set16(this.avail + 4 + 2 * (this.availIdx % this.size), head);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    this.ram.set16(this.avail + 2, this.availIdx);
  }

  takeDesc(): number {
    const d = this.free.shift();
    if (d === undefined) throw new Error("test driver: out of descriptors");
    return d;
  }

  /** Allocate RAM for `bufs`, describe them (directly or via an indirect table), make available. */
  post(bufs: Buf[], opts: { indirect?: boolean; notify?: boolean } = {}): PostedChain {
    const addrs = bufs.map((b) => {
      const len = "data" in b ? b.data.length : b.writable;
      const a = this.ram.alloc(len, 8);
      if ("data" in b) this.ram.write(a, b.data);
      return a;
    });
    let head: number;
    if (opts.indirect) {
      const table = this.ram.alloc(16 * bufs.length, 16);
      bufs.forEach((b, i) => {
        const len = "data" in b ? b.data.length : b.writable;
        const flags = ("data" in b ? 0 : VIRTQ_DESC_F_WRITE) | (i + 1 < bufs.length ? VIRTQ_DESC_F_NEXT : 0);
        this.writeDesc(table, i, addrs[i]!, len, flags, i + 1);
      });
      head = this.takeDesc();
      this.writeDesc(this.desc, head, table, 16 * bufs.length, VIRTQ_DESC_F_INDIRECT, 0);
      this.owned.set(head, [head]);
    } else {
      const ids = bufs.map(() => this.takeDesc());
      bufs.forEach((b, i) => {
        const len = "data" in b ? b.data.length : b.writable;
        const flags = ("data" in b ? 0 : VIRTQ_DESC_F_WRITE) | (i + 1 < bufs.length ? VIRTQ_DESC_F_NEXT : 0);
        this.writeDesc(this.desc, ids[i]!, addrs[i]!, len, flags, ids[i + 1] ?? 0);
      });
      head = ids[0]!;
      this.owned.set(head, ids);
    }
    this.pushAvail(head);
    if (opts.notify ?? true) this.notify();
    return { head, addrs };
  }

  notify(): void {
    this.drv.w(REG_QUEUE_NOTIFY, this.index);
  }

  usedIdx(): number {
    return this.ram.u16(this.used + 2);
  }

  /** New used elements since the last call; their descriptors return to the free list. */
  takeUsed(): UsedElem[] {
    const out: UsedElem[] = [];
    const idx = this.usedIdx();
    while (this.lastUsed !== idx) {
      const e = this.used + 4 + 8 * (this.lastUsed % this.size);
      const id = this.ram.u32(e);
      out.push({ id, len: this.ram.u32(e + 4) });
      for (const d of this.owned.get(id) ?? []) this.free.push(d);
      this.owned.delete(id);
      this.lastUsed = (this.lastUsed + 1) & 0xffff;
    }
    return out;
  }

  setAvailFlags(flags: number): void {
    this.ram.set16(this.avail, flags);
  }
  setUsedEvent(v: number): void {
    this.ram.set16(this.avail + 4 + 2 * this.size, v);
  }
  availEvent(): number {
    return this.ram.u16(this.used + 4 + 8 * this.size);
  }
}

export interface InitOptions {
  /** Choose the accepted features from the offered ones (default: accept all). */
  accept?: (lo: number, hi: number) => [number, number];
  /** Queue sizes to use (default each queue's QueueNumMax). */
  sizes?: number[];
  /** Stop before setting DRIVER_OK. */
  noDriverOk?: boolean;
}

/** Drives a VirtioMmio through its registers as Linux's virtio_mmio + virtio core do. */
export class TestDriver {
  readonly ram: FakeRam;
  mmio: VirtioMmio;
  readonly irqLog: boolean[] = [];
  irq = false;
  queues: DriverQueue[] = [];
  features: [number, number] = [0, 0];

  constructor(
    public device: VirtioDevice,
    opts: VirtioMmioOptions & { ram?: FakeRam } = {},
  ) {
    this.ram = opts.ram ?? new FakeRam();
    this.mmio = this.transport(device, opts);
  }

  private transport(device: VirtioDevice, opts: VirtioMmioOptions): VirtioMmio {
    return new VirtioMmio(device, this.ram, (l) => {
      this.irq = l;
      this.irqLog.push(l);
    }, opts);
  }

  /**
   * The VM moved: from now on this driver (its RAM, its queues) talks to `device` behind a new
   * transport that took the old one's saved `state`.
   */
  moveTo(device: VirtioDevice, state: unknown, opts: VirtioMmioOptions = {}): void {
    const mmio = this.transport(device, opts);
    mmio.restore(state);
    this.device = device;
    this.mmio = mmio;
  }

  get legacy(): boolean {
    return this.mmio.legacy;
  }

  r(off: number): number {
    return this.mmio.read(off, 4);
  }
  w(off: number, v: number): void {
    this.mmio.write(off, 4, v >>> 0);
  }
  cfg(off: number, size: 1 | 2 | 4): number {
    return this.mmio.read(REG_CONFIG + off, size);
  }
  status(): number {
    return this.r(REG_STATUS);
  }

  offered(): [number, number] {
    this.w(REG_DEVICE_FEATURES_SEL, 1);
    const hi = this.r(REG_DEVICE_FEATURES);
    this.w(REG_DEVICE_FEATURES_SEL, 0);
    return [this.r(REG_DEVICE_FEATURES), hi];
  }

  /**
   * reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK (modern), queues, DRIVER_OK.
   * Returns false (after setting FAILED) if the device refused the features.
   */
  init(opts: InitOptions = {}): boolean {
    if (this.legacy) this.w(REG_GUEST_PAGE_SIZE, 4096); // virtio_mmio_probe, before the reset
    this.w(REG_STATUS, 0);
    if (this.status() !== 0) throw new Error("device did not reset");
    this.w(REG_STATUS, STATUS_ACKNOWLEDGE);
    this.w(REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    const [lo, hi] = this.offered();
    this.features = opts.accept ? opts.accept(lo, hi) : [lo, hi];
    this.w(REG_DRIVER_FEATURES_SEL, 1);
    this.w(REG_DRIVER_FEATURES, this.features[1]);
    this.w(REG_DRIVER_FEATURES_SEL, 0);
    this.w(REG_DRIVER_FEATURES, this.features[0]);
    let st = STATUS_ACKNOWLEDGE | STATUS_DRIVER;
    if (!this.legacy) {
      st |= STATUS_FEATURES_OK;
      this.w(REG_STATUS, st);
      if (!(this.status() & STATUS_FEATURES_OK)) {
        this.w(REG_STATUS, st | STATUS_FAILED);
        return false;
      }
    }
    this.queues = [];
    for (let i = 0; i < this.device.queueMaxSizes.length; i++) this.queues.push(this.setupQueue(i, opts.sizes?.[i]));
    if (!opts.noDriverOk) this.w(REG_STATUS, st | STATUS_DRIVER_OK);
    return true;
  }

  driverOk(): void {
    this.w(REG_STATUS, this.status() | STATUS_DRIVER_OK);
  }

  setupQueue(i: number, size?: number): DriverQueue {
    this.w(REG_QUEUE_SEL, i);
    if (this.r(this.legacy ? REG_QUEUE_PFN : REG_QUEUE_READY) !== 0) throw new Error(`queue ${i} already in use`);
    const max = this.r(REG_QUEUE_NUM_MAX);
    if (max === 0) throw new Error(`queue ${i} does not exist`);
    const n = size ?? max;
    this.w(REG_QUEUE_NUM, n);
    if (this.legacy) {
      const availEnd = 16 * n + 6 + 2 * n;
      const usedOff = Math.ceil(availEnd / 4096) * 4096;
      const base = this.ram.alloc(usedOff + 6 + 8 * n, 4096);
      this.w(REG_QUEUE_ALIGN, 4096);
      this.w(REG_QUEUE_PFN, base / 4096);
      return new DriverQueue(this, i, n, base, base + 16 * n, base + usedOff);
    }
    const desc = this.ram.alloc(16 * n, 16);
    const avail = this.ram.alloc(6 + 2 * n, 2);
    const used = this.ram.alloc(6 + 8 * n, 4);
    this.w(REG_QUEUE_DESC_LOW, desc);
    this.w(REG_QUEUE_DESC_HIGH, 0);
    this.w(REG_QUEUE_DRIVER_LOW, avail);
    this.w(REG_QUEUE_DRIVER_HIGH, 0);
    this.w(REG_QUEUE_DEVICE_LOW, used);
    this.w(REG_QUEUE_DEVICE_HIGH, 0);
    this.w(REG_QUEUE_READY, 1);
    return new DriverQueue(this, i, n, desc, avail, used);
  }

  q(i: number): DriverQueue {
    return this.queues[i]!;
  }

  /** The interrupt handler: read and acknowledge InterruptStatus; returns what was pending. */
  ack(): number {
    const s = this.r(REG_INTERRUPT_STATUS);
    this.w(REG_INTERRUPT_ACK, s);
    return s;
  }

  generation(): number {
    return this.r(REG_CONFIG_GENERATION);
  }
}

export const bytes = (...v: number[]): Uint8Array => Uint8Array.from(v);

/** Little-endian request header for virtio-blk. */
export function blkHeader(type: number, sector: number): Uint8Array {
  const h = new Uint8Array(16);
  const dv = new DataView(h.buffer);
  dv.setUint32(0, type, true);
  dv.setBigUint64(8, BigInt(sector), true);
  return h;
}

/** Deterministic test pattern. */
export function pattern(len: number, seed = 1): Uint8Array {
  const out = new Uint8Array(len);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
