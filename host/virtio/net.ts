/**
 * virtio-net (spec 5.1) on a NetBackend: one receive queue (0) and one transmit queue (1), no
 * control queue and no offloads. Every frame carries a virtio_net_hdr: 12 bytes with VERSION_1
 * or MRG_RXBUF, 10 bytes for a legacy driver without MRG_RXBUF. The device ignores the header
 * on transmit (no checksum or segmentation offload was offered) and sends a zeroed one on
 * receive, with num_buffers filled in.
 *
 * Received frames wait in a bounded FIFO (default 256 frames, then dropped) until the guest
 * has posted enough receive buffers; they are delivered as soon as the guest notifies the
 * receive queue, or when the next frame arrives.
 */
import { parseMac } from "../net/packet";
import type { NetBackend } from "../devices/backends";
import type { DeviceState } from "../devices/device";
import { RetryTimer, limitTake, limitWaitMs, type MsClock, type RateLimit } from "../devices/rate-limit";
import { StateReader, bytesState } from "../devices/state";
import { copyFromBuffers, copyToBuffers, type Chain } from "./queue";
import {
  DEVICE_ID_NET,
  F_VERSION_1,
  featureWords,
  guarded,
  put16,
  readConfigBytes,
  type FeatureWords,
  type VirtioDevice,
  type VirtioHost,
} from "./types";

export const VIRTIO_NET_F_MAC = 5;
export const VIRTIO_NET_F_MRG_RXBUF = 15;
export const VIRTIO_NET_F_STATUS = 16;
export const VIRTIO_NET_S_LINK_UP = 1;

const RXQ = 0;
const TXQ = 1;
const CFG_STATUS = 6;
const CFG_MAX_VQ_PAIRS = 8;
const CFG_MTU = 10;
const CONFIG_SIZE = 12;
const HDR_NUM_BUFFERS = 10;
const KIND = "virtio-net";
const VERSION = 1;

/** Largest frame accepted either way: a 64 KiB IP packet plus the Ethernet header. */
export const NET_MAX_FRAME = 65550;

export interface VirtioNetOptions {
  /** MAC address, "52:54:00:12:34:56" form or 6 bytes (default 52:54:00:12:34:56). */
  mac?: string | Uint8Array;
  /** Offer VIRTIO_NET_F_MRG_RXBUF (default true). */
  mergeableRx?: boolean;
  /** QueueNumMax of both queues (power of two, default 256). */
  queueSize?: number;
  /** Received frames kept while the guest has no buffers (default 256); more are dropped. */
  rxQueueFrames?: number;
  /**
   * Bandwidth limits per direction: transmit buffers wait in their queue, received frames in
   * the receive FIFO (which drops beyond rxQueueFrames, as a full NIC does).
   */
  txLimit?: RateLimit;
  rxLimit?: RateLimit;
  /** The clock held frames wait on (default performance.now()). */
  clock?: MsClock;
}

export interface VirtioNetStats {
  txFrames: number;
  txDropped: number;
  rxFrames: number;
  rxDropped: number;
}

/** A MAC from "52:54:00:12:34:56" or 6 bytes; throws a clear Error otherwise. */
function macOption(mac: string | Uint8Array): Uint8Array {
  if (mac instanceof Uint8Array) {
    if (mac.length !== 6) throw new Error(`virtio-net: MAC must be 6 bytes, got ${mac.length}`);
    return mac.slice();
  }
  const parsed = parseMac(mac);
  if (!parsed) throw new Error(`virtio-net: MAC "${mac}" is not of the form 52:54:00:12:34:56`);
  return parsed;
}

export class VirtioNet implements VirtioDevice {
  readonly name = "net";
  readonly deviceId = DEVICE_ID_NET;
  readonly features: FeatureWords;
  readonly configSize = CONFIG_SIZE;
  readonly queueMaxSizes: readonly number[];
  readonly stats: VirtioNetStats = { txFrames: 0, txDropped: 0, rxFrames: 0, rxDropped: 0 };

  private host: VirtioHost | null = null;
  private readonly config = new Uint8Array(CONFIG_SIZE);
  private readonly initialMac: Uint8Array;
  private readonly rxLimit: number;
  private rx: Uint8Array[] = [];
  private readonly limits: { tx?: RateLimit; rx?: RateLimit };
  /** When held-back work may continue, per direction. */
  private readonly held: { tx: RetryTimer; rx: RetryTimer };
  private linkUp = true;
  private readonly hdr = new Uint8Array(12);

  constructor(
    readonly backend: NetBackend,
    opts: VirtioNetOptions = {},
  ) {
    this.initialMac = macOption(opts.mac ?? "52:54:00:12:34:56");
    const qs = opts.queueSize ?? 256;
    if (!Number.isInteger(qs) || qs < 2 || qs > 32768 || (qs & (qs - 1)) !== 0) {
      throw new Error(`virtio-net: queueSize ${qs} must be a power of two in 2..32768`);
    }
    this.queueMaxSizes = [qs, qs];
    const limit = opts.rxQueueFrames ?? 256;
    if (!Number.isInteger(limit) || limit < 0) throw new Error(`virtio-net: rxQueueFrames ${limit} must be a non-negative integer`);
    this.rxLimit = limit;
    this.limits = { tx: opts.txLimit, rx: opts.rxLimit };
    this.held = { tx: new RetryTimer(opts.clock), rx: new RetryTimer(opts.clock) };
    const bits = [VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS];
    if (opts.mergeableRx ?? true) bits.push(VIRTIO_NET_F_MRG_RXBUF);
    this.features = featureWords(...bits);
    this.config.set(this.initialMac, 0);
    put16(this.config, CFG_STATUS, VIRTIO_NET_S_LINK_UP);
    put16(this.config, CFG_MAX_VQ_PAIRS, 1);
    put16(this.config, CFG_MTU, 1500);
    backend.attach((frame) => this.receive(frame));
  }

  attach(host: VirtioHost): void {
    this.host = host;
  }

  /** The MAC address the guest currently has (a legacy driver may change it). */
  get mac(): Uint8Array {
    return this.config.slice(0, 6);
  }

  /** Received frames waiting for guest buffers. */
  pendingRx(): number {
    return this.rx.length;
  }

  /** Set the link state (VIRTIO_NET_S_LINK_UP) and notify the driver. */
  setLinkUp(up: boolean): void {
    if (up === this.linkUp) return;
    this.linkUp = up;
    put16(this.config, CFG_STATUS, up ? VIRTIO_NET_S_LINK_UP : 0);
    this.host?.configChanged();
  }

  /** A frame from the backend for the guest (copied; dropped if the FIFO is full). */
  receive(frame: Uint8Array): void {
    if (!this.linkUp || frame.length === 0 || frame.length > NET_MAX_FRAME || this.rx.length >= this.rxLimit) {
      this.stats.rxDropped++;
      return;
    }
    this.rx.push(frame.slice());
    guarded(this.host, "net", () => this.deliver());
  }

  readConfig(offset: number, size: 1 | 2 | 4): number {
    return readConfigBytes(this.config, offset, size);
  }

  writeConfig(offset: number, size: 1 | 2 | 4, value: number): void {
    // Legacy drivers may set the MAC by writing it (spec 5.1.4.2); all else is read-only.
    if (!this.host?.legacy) return;
    for (let i = 0; i < size; i++) {
      const o = offset + i;
      if (o < 6) this.config[o] = (value >>> (8 * i)) & 0xff;
    }
  }

  queueNotify(index: number): void {
    if (index === TXQ) this.transmit();
    else if (index === RXQ) this.deliver();
  }

  retryMs(): number {
    return Math.min(this.held.tx.ms(), this.held.rx.ms());
  }

  retry(): void {
    const txDue = this.held.tx.ms() === 0;
    const rxDue = this.held.rx.ms() === 0;
    if (txDue) this.transmit();
    if (rxDue) this.deliver();
  }

  reset(): void {
    this.held.tx.clear();
    this.held.rx.clear();
    this.rx = []; // frames for the previous driver instance are stale
    this.config.set(this.initialMac, 0);
  }

  private hdrLen(host: VirtioHost): number {
    return host.hasFeature(F_VERSION_1) || host.hasFeature(VIRTIO_NET_F_MRG_RXBUF) ? 12 : 10;
  }

  private transmit(): void {
    const host = this.host;
    const q = host?.queue(TXQ);
    if (!host || !q) return;
    const hdrLen = this.hdrLen(host);
    let done = 0;
    this.held.tx.clear();
    for (let c = q.pop(); c !== null; c = q.pop()) {
      // Every transmit buffer starts with the header; a shorter one is a broken driver.
      if (c.readableBytes < hdrLen) {
        host.needsReset(`net: transmit buffer of ${c.readableBytes} bytes is shorter than the ${hdrLen}-byte header`);
        return;
      }
      const len = c.readableBytes - hdrLen;
      const wait = limitWaitMs(this.limits.tx, len);
      if (wait > 0) {
        q.unpop(1);
        this.held.tx.set(wait);
        break;
      }
      limitTake(this.limits.tx, len);
      if (len === 0 || len > NET_MAX_FRAME || !this.linkUp) {
        this.stats.txDropped++;
      } else {
        const frame = new Uint8Array(len);
        copyFromBuffers(c.readable, hdrLen, frame);
        try {
          this.backend.send(frame);
          this.stats.txFrames++;
        } catch {
          this.stats.txDropped++; // a backend failure loses the frame, as on a real wire
        }
      }
      q.push(c.head, 0);
      done++;
    }
    if (done > 0) host.usedAdded(TXQ);
  }

  private deliver(): void {
    const host = this.host;
    if (!host || this.rx.length === 0) return;
    const q = host.queue(RXQ);
    if (!q) return;
    const hdrLen = this.hdrLen(host);
    const mergeable = host.hasFeature(VIRTIO_NET_F_MRG_RXBUF);
    let done = 0;
    let taken = 0;
    this.held.rx.clear();
    while (taken < this.rx.length) {
      const frame = this.rx[taken]!;
      const wait = limitWaitMs(this.limits.rx, frame.length);
      if (wait > 0) {
        this.held.rx.set(wait);
        break;
      }
      const need = hdrLen + frame.length;
      const chains: Chain[] = [];
      let room = 0;
      while (room < need) {
        const c = q.pop();
        if (c === null) break;
        chains.push(c);
        room += c.writableBytes;
        if (!mergeable) break; // exactly one buffer per frame
      }
      if (host.broken) return;
      if (room < need) {
        if (!mergeable && chains.length === 1) {
          // A buffer too small for this frame: drop the frame, keep the buffer for the next.
          q.unpop(1);
          this.stats.rxDropped++;
          taken++;
          continue;
        }
        q.unpop(chains.length);
        if (chains.length >= q.size) {
          // Even a full ring of these buffers cannot hold the frame: it would block all others.
          this.stats.rxDropped++;
          taken++;
          continue;
        }
        break; // wait for more buffers
      }
      this.hdr.fill(0);
      if (hdrLen === 12) put16(this.hdr, HDR_NUM_BUFFERS, chains.length);
      // Header then frame, flowing from one buffer into the next.
      let at = 0;
      for (const c of chains) {
        let n = 0;
        if (at < hdrLen) {
          n += copyToBuffers(c.writable, 0, this.hdr.subarray(at, hdrLen));
          at += n;
        }
        if (at >= hdrLen && at < need) {
          const k = copyToBuffers(c.writable, n, frame.subarray(at - hdrLen));
          n += k;
          at += k;
        }
        q.push(c.head, n);
        done++;
      }
      limitTake(this.limits.rx, frame.length);
      this.stats.rxFrames++;
      taken++;
    }
    if (taken > 0) this.rx.splice(0, taken);
    if (done > 0) host.usedAdded(RXQ);
  }

  save(): DeviceState {
    return {
      kind: KIND,
      version: VERSION,
      mac: bytesState(this.config.subarray(0, 6)),
      linkUp: this.linkUp,
      rx: this.rx.map(bytesState),
      retryTxInMs: this.held.tx.save(),
      retryRxInMs: this.held.rx.save(),
      stats: { ...this.stats },
    };
  }

  restore(state: unknown): void {
    const s = StateReader.open(state, KIND, KIND, VERSION);
    const mac = s.bytes("mac", 6, 6);
    const linkUp = s.bool("linkUp");
    const frames = s.list("rx", 0, this.rxLimit);
    const rx = frames.map((i) => frames.bytes(i, 1, NET_MAX_FRAME));
    const retryTx = RetryTimer.read(s, "retryTxInMs");
    const retryRx = RetryTimer.read(s, "retryRxInMs");
    const stats = s.counters("stats", this.stats);
    this.config.set(mac, 0);
    this.linkUp = linkUp;
    put16(this.config, CFG_STATUS, linkUp ? VIRTIO_NET_S_LINK_UP : 0);
    this.rx = rx;
    this.held.tx.restore(retryTx);
    this.held.rx.restore(retryRx);
    Object.assign(this.stats, stats);
  }
}
