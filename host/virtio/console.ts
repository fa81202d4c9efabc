/**
 * virtio-console (spec 5.3) with a single port (no MULTIPORT): receiveq 0, transmitq 1. Linux
 * binds it to hvc0.
 *
 * Output: every transmit buffer is handed to the sink as one Uint8Array (a copy).
 * Input: the VM feeds bytes with `receive()` while `rxSpace()` > 0, as for the UART. Bytes wait
 * in a bounded FIFO until the guest posts receive buffers, so nothing is lost when the driver
 * is slow or not loaded yet; the FIFO survives a device reset so that input typed while the
 * guest probes the device reaches it afterwards.
 */
import type { DeviceState } from "../devices/device";
import { StateReader, bytesState } from "../devices/state";
import { copyFromBuffers, copyToBuffers } from "./queue";
import {
  DEVICE_ID_CONSOLE,
  featureWords,
  guarded,
  put16,
  put32,
  readConfigBytes,
  type FeatureWords,
  type VirtioDevice,
  type VirtioHost,
} from "./types";

export const VIRTIO_CONSOLE_F_SIZE = 0;
export const VIRTIO_CONSOLE_F_MULTIPORT = 1;
export const VIRTIO_CONSOLE_F_EMERG_WRITE = 2;

const RXQ = 0;
const TXQ = 1;
const CFG_COLS = 0;
const CFG_ROWS = 2;
const CFG_MAX_NR_PORTS = 4;
const CFG_EMERG_WR = 8;
const CONFIG_SIZE = 12;
const KIND = "virtio-console";
const VERSION = 1;

export interface VirtioConsoleOptions {
  /** Console size reported with VIRTIO_CONSOLE_F_SIZE (offered only if both are given). */
  cols?: number;
  rows?: number;
  /** Input FIFO capacity in bytes (default 4096). */
  rxCapacity?: number;
  /** QueueNumMax of both queues (power of two, default 64). */
  queueSize?: number;
  /**
   * Called when input space frees up (the guest took buffered input), so an event-driven VM
   * can feed more without polling.
   */
  onRxSpace?: () => void;
}

export class VirtioConsole implements VirtioDevice {
  readonly name = "console";
  readonly deviceId = DEVICE_ID_CONSOLE;
  readonly features: FeatureWords;
  readonly configSize = CONFIG_SIZE;
  readonly queueMaxSizes: readonly number[];

  private host: VirtioHost | null = null;
  private readonly config = new Uint8Array(CONFIG_SIZE);
  private readonly hasSize: boolean;
  private readonly fifo: Uint8Array;
  private head = 0;
  private count = 0;
  private readonly onRxSpace?: () => void;

  /** @param sink receives each transmit buffer's bytes (a copy it may keep). */
  constructor(
    private readonly sink: (bytes: Uint8Array) => void,
    opts: VirtioConsoleOptions = {},
  ) {
    const cap = opts.rxCapacity ?? 4096;
    if (!Number.isInteger(cap) || cap < 1 || cap > 1 << 24) throw new Error(`virtio-console: rxCapacity ${cap} must be 1..16M`);
    const qs = opts.queueSize ?? 64;
    if (!Number.isInteger(qs) || qs < 1 || qs > 32768 || (qs & (qs - 1)) !== 0) {
      throw new Error(`virtio-console: queueSize ${qs} must be a power of two up to 32768`);
    }
    this.fifo = new Uint8Array(cap);
    this.queueMaxSizes = [qs, qs];
    this.onRxSpace = opts.onRxSpace;
    this.hasSize = opts.cols !== undefined && opts.rows !== undefined;
    this.features = this.hasSize
      ? featureWords(VIRTIO_CONSOLE_F_SIZE, VIRTIO_CONSOLE_F_EMERG_WRITE)
      : featureWords(VIRTIO_CONSOLE_F_EMERG_WRITE);
    if (this.hasSize) this.setSize(opts.cols!, opts.rows!);
    put32(this.config, CFG_MAX_NR_PORTS, 1);
  }

  attach(host: VirtioHost): void {
    this.host = host;
  }

  /** How many bytes `receive()` accepts now. */
  rxSpace(): number {
    return this.fifo.length - this.count;
  }

  /** Bytes waiting for guest receive buffers. */
  rxPending(): number {
    return this.count;
  }

  /**
   * Input for the guest. Takes at most `rxSpace()` bytes and returns how many it took; the rest
   * is the caller's to keep and offer again after `onRxSpace`.
   */
  receive(bytes: Uint8Array): number {
    const n = Math.min(bytes.length, this.rxSpace());
    const cap = this.fifo.length;
    for (let i = 0; i < n; i++) this.fifo[(this.head + this.count + i) % cap] = bytes[i]!;
    this.count += n;
    if (n > 0) guarded(this.host, "console", () => this.deliver());
    return n;
  }

  /** Change the reported console size (config change notification if F_SIZE is offered). */
  resize(cols: number, rows: number): void {
    if (!this.hasSize) return;
    this.setSize(cols, rows);
    this.host?.configChanged();
  }

  private setSize(cols: number, rows: number): void {
    if (!Number.isInteger(cols) || !Number.isInteger(rows) || cols < 0 || rows < 0 || cols > 0xffff || rows > 0xffff) {
      throw new Error(`virtio-console: size ${cols}x${rows} must be two integers in 0..65535`);
    }
    put16(this.config, CFG_COLS, cols);
    put16(this.config, CFG_ROWS, rows);
  }

  readConfig(offset: number, size: 1 | 2 | 4): number {
    return readConfigBytes(this.config, offset, size); // emerg_wr reads 0
  }

  writeConfig(offset: number, _size: 1 | 2 | 4, value: number): void {
    // Emergency write: the low byte goes out at once, even before the driver is set up.
    if (offset === CFG_EMERG_WR) this.sink(Uint8Array.of(value & 0xff));
  }

  queueNotify(index: number): void {
    if (index === TXQ) this.transmit();
    else if (index === RXQ) this.deliver();
  }

  reset(): void {
    // Queues are reset by the transport; buffered input is kept for the next driver.
  }

  private transmit(): void {
    const host = this.host;
    const q = host?.queue(TXQ);
    if (!host || !q) return;
    let done = 0;
    for (let c = q.pop(); c !== null; c = q.pop()) {
      if (c.readableBytes > 0) {
        const out = new Uint8Array(c.readableBytes);
        copyFromBuffers(c.readable, 0, out);
        this.sink(out);
      }
      q.push(c.head, 0); // nothing written into a transmit buffer
      done++;
    }
    if (done > 0) host.usedAdded(TXQ);
  }

  private deliver(): void {
    const host = this.host;
    if (!host || this.count === 0) return;
    const q = host.queue(RXQ);
    if (!q) return;
    let done = 0;
    const before = this.count;
    while (this.count > 0) {
      const c = q.pop();
      if (c === null) break;
      let n = 0;
      while (this.count > 0 && n < c.writableBytes) {
        // The FIFO's contiguous run from head, bounded by what the buffer still holds.
        const run = Math.min(this.count, this.fifo.length - this.head, c.writableBytes - n);
        copyToBuffers(c.writable, n, this.fifo.subarray(this.head, this.head + run));
        n += run;
        this.head = (this.head + run) % this.fifo.length;
        this.count -= run;
      }
      q.push(c.head, n);
      done++;
    }
    if (this.count === 0) this.head = 0;
    if (done > 0) host.usedAdded(RXQ);
    if (this.count < before) this.onRxSpace?.();
  }

  save(): DeviceState {
    const rx = new Uint8Array(this.count);
    for (let i = 0; i < this.count; i++) rx[i] = this.fifo[(this.head + i) % this.fifo.length]!;
    return {
      kind: KIND,
      version: VERSION,
      rx: bytesState(rx),
      cols: readConfigBytes(this.config, CFG_COLS, 2),
      rows: readConfigBytes(this.config, CFG_ROWS, 2),
    };
  }

  restore(state: unknown): void {
    const s = StateReader.open(state, KIND, KIND, VERSION);
    const rx = s.bytes("rx", 0, this.fifo.length);
    const cols = s.int("cols", 0, 0xffff);
    const rows = s.int("rows", 0, 0xffff);
    this.fifo.fill(0);
    this.fifo.set(rx);
    this.head = 0;
    this.count = rx.length;
    put16(this.config, CFG_COLS, cols);
    put16(this.config, CFG_ROWS, rows);
  }
}
