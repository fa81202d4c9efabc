/**
 * virtio-blk (spec 5.2) on a DiskBackend: one request queue, requests completed synchronously
 * in the notification that made them available.
 */
import type { DiskBackend } from "../devices/backends";
import type { DeviceState } from "../devices/device";
import { copyFromBuffers, forEachPiece, type Chain } from "./queue";
import { RetryTimer, limitTake, limitWaitMs, type MsClock, type RateLimit } from "../devices/rate-limit";
import { StateReader } from "../devices/state";
import {
  DEVICE_ID_BLOCK,
  featureWords,
  hasBit,
  le32,
  put32,
  readConfigBytes,
  type FeatureWords,
  type VirtioDevice,
  type VirtioHost,
} from "./types";

// Feature bits.
export const VIRTIO_BLK_F_SIZE_MAX = 1;
export const VIRTIO_BLK_F_SEG_MAX = 2;
export const VIRTIO_BLK_F_RO = 5;
export const VIRTIO_BLK_F_BLK_SIZE = 6;
export const VIRTIO_BLK_F_FLUSH = 9;
export const VIRTIO_BLK_F_DISCARD = 13;
export const VIRTIO_BLK_F_WRITE_ZEROES = 14;

// Request types and status values.
export const VIRTIO_BLK_T_IN = 0;
export const VIRTIO_BLK_T_OUT = 1;
export const VIRTIO_BLK_T_FLUSH = 4;
export const VIRTIO_BLK_T_GET_ID = 8;
export const VIRTIO_BLK_T_DISCARD = 11;
export const VIRTIO_BLK_T_WRITE_ZEROES = 13;
export const VIRTIO_BLK_S_OK = 0;
export const VIRTIO_BLK_S_IOERR = 1;
export const VIRTIO_BLK_S_UNSUPP = 2;

export const SECTOR = 512;
export const BLK_ID_BYTES = 20;
const HDR = 16;
const SEG = 16; // struct virtio_blk_discard_write_zeroes
const WZ_FLAG_UNMAP = 1;
const KIND = "virtio-blk";
const VERSION = 1;

/** Configuration-space layout (struct virtio_blk_config, up to write_zeroes_may_unmap). */
const CFG_CAPACITY = 0x00;
const CFG_SIZE_MAX = 0x08;
const CFG_SEG_MAX = 0x0c;
const CFG_BLK_SIZE = 0x14;
const CFG_MAX_DISCARD_SECTORS = 0x24;
const CFG_MAX_DISCARD_SEG = 0x28;
const CFG_DISCARD_ALIGN = 0x2c;
const CFG_MAX_WZ_SECTORS = 0x30;
const CFG_MAX_WZ_SEG = 0x34;
const CFG_WZ_MAY_UNMAP = 0x38;
const CONFIG_SIZE = 0x3c;

/** Largest single segment the driver may use (size_max), bytes. */
export const BLK_SIZE_MAX = 256 * 1024;
/** Sectors per discard / write-zeroes segment (32 MiB) and segments per request. */
export const BLK_MAX_DISCARD_SECTORS = 65536;
export const BLK_MAX_DISCARD_SEG = 1;

export interface VirtioBlkOptions {
  /** Serial number returned by VIRTIO_BLK_T_GET_ID (ASCII, at most 20 bytes are used). */
  serial?: string;
  /** Present the disk read-only even if the backend is writable. */
  readOnly?: boolean;
  /** QueueNumMax of the request queue (power of two, default 128). */
  queueSize?: number;
  /** Offer DISCARD and WRITE_ZEROES (default true; never on a read-only disk). */
  discard?: boolean;
  /** Bandwidth limit: requests wait in the queue until the buckets allow them. */
  limit?: RateLimit;
  /** The clock a held request waits on (default performance.now()). */
  clock?: MsClock;
}

export class VirtioBlk implements VirtioDevice {
  readonly name = "blk";
  readonly deviceId = DEVICE_ID_BLOCK;
  readonly features: FeatureWords;
  readonly configSize = CONFIG_SIZE;
  readonly queueMaxSizes: readonly number[];
  readonly readOnly: boolean;

  private host: VirtioHost | null = null;
  private readonly config = new Uint8Array(CONFIG_SIZE);
  private readonly id = new Uint8Array(BLK_ID_BYTES);
  private readonly hdr = new Uint8Array(HDR);
  private zeros: Uint8Array | null = null;
  private readonly limit: RateLimit | undefined;
  /** When a request held back by the limit may go. */
  private readonly held: RetryTimer;

  constructor(
    readonly backend: DiskBackend,
    opts: VirtioBlkOptions = {},
  ) {
    if (backend.size % SECTOR !== 0) throw new Error(`virtio-blk: disk size ${backend.size} is not a multiple of 512`);
    const queueSize = opts.queueSize ?? 128;
    if (!Number.isInteger(queueSize) || queueSize < 4 || queueSize > 32768 || (queueSize & (queueSize - 1)) !== 0) {
      throw new Error(`virtio-blk: queueSize ${queueSize} must be a power of two in 4..32768`);
    }
    this.queueMaxSizes = [queueSize];
    this.limit = opts.limit;
    this.held = new RetryTimer(opts.clock);
    this.readOnly = backend.readOnly || (opts.readOnly ?? false);
    const discard = !this.readOnly && (opts.discard ?? true);
    const bits = [VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH];
    if (this.readOnly) bits.push(VIRTIO_BLK_F_RO);
    if (discard) bits.push(VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_WRITE_ZEROES);
    this.features = featureWords(...bits);

    const serial = opts.serial ?? "";
    for (let i = 0; i < Math.min(serial.length, BLK_ID_BYTES); i++) {
      const c = serial.charCodeAt(i);
      this.id[i] = c >= 0x20 && c < 0x7f ? c : 0x3f; // printable ASCII, else '?'
    }

    const sectors = backend.size / SECTOR;
    const c = this.config;
    put32(c, CFG_CAPACITY, sectors >>> 0);
    put32(c, CFG_CAPACITY + 4, Math.floor(sectors / 0x1_0000_0000));
    put32(c, CFG_SIZE_MAX, BLK_SIZE_MAX);
    // Header and status take two descriptors; the rest may be data segments.
    put32(c, CFG_SEG_MAX, queueSize - 2);
    put32(c, CFG_BLK_SIZE, SECTOR);
    if (discard) {
      put32(c, CFG_MAX_DISCARD_SECTORS, BLK_MAX_DISCARD_SECTORS);
      put32(c, CFG_MAX_DISCARD_SEG, BLK_MAX_DISCARD_SEG);
      put32(c, CFG_DISCARD_ALIGN, 8); // 4 KiB
      put32(c, CFG_MAX_WZ_SECTORS, BLK_MAX_DISCARD_SECTORS);
      put32(c, CFG_MAX_WZ_SEG, BLK_MAX_DISCARD_SEG);
      c[CFG_WZ_MAY_UNMAP] = 1;
    }
  }

  attach(host: VirtioHost): void {
    this.host = host;
  }

  readConfig(offset: number, size: 1 | 2 | 4): number {
    return readConfigBytes(this.config, offset, size);
  }

  writeConfig(): void {
    // Every field is read-only for the driver (writeback needs CONFIG_WCE, not offered).
  }

  reset(): void {
    // Requests complete synchronously: the only in-flight state is a request the limit holds.
    this.held.clear();
  }

  // The requests themselves wait in the virtqueue (guest memory); only when to retry is ours.
  save(): DeviceState {
    return { kind: KIND, version: VERSION, size: this.backend.size, readOnly: this.readOnly, retryInMs: this.held.save() };
  }

  restore(state: unknown): void {
    const s = StateReader.open(state, KIND, KIND, VERSION);
    const size = s.int("size", 0, Number.MAX_SAFE_INTEGER);
    if (size !== this.backend.size) throw new Error(`${KIND}: state is for a disk of ${size} bytes, this disk has ${this.backend.size}`);
    if (s.bool("readOnly") !== this.readOnly) throw new Error(`${KIND}: state disagrees about read-only`);
    this.held.restore(RetryTimer.read(s, "retryInMs"));
  }

  queueNotify(index: number): void {
    const host = this.host;
    if (host === null || index !== 0) return;
    const q = host.queue(0);
    if (q === null) return;
    let done = 0;
    this.held.clear();
    for (let chain = q.pop(); chain !== null; chain = q.pop()) {
      // The data bytes (header and status aside) count against the limit.
      const bytes = Math.max(0, chain.readableBytes + chain.writableBytes - HDR - 1);
      const wait = limitWaitMs(this.limit, bytes);
      if (wait > 0) {
        q.unpop(1);
        this.held.set(wait);
        break;
      }
      limitTake(this.limit, bytes);
      const len = this.handle(chain, host);
      if (len < 0) return; // malformed: the device now needs a reset
      q.push(chain.head, len);
      done++;
    }
    if (done > 0) host.usedAdded(0);
  }

  retryMs(): number {
    return this.held.ms();
  }

  retry(): void {
    this.queueNotify(0);
  }

  /** Execute one request; returns the used length, or -1 if it was malformed. */
  private handle(chain: Chain, host: VirtioHost): number {
    // The request starts with a 16-byte header the driver must provide.
    if (chain.readableBytes < HDR) {
      host.needsReset(`blk: request header is ${chain.readableBytes} bytes, needs ${HDR}`);
      return -1;
    }
    // The last device-writable byte is the status; without it we cannot answer at all.
    if (chain.writableBytes < 1) {
      host.needsReset("blk: request has no status byte");
      return -1;
    }
    copyFromBuffers(chain.readable, 0, this.hdr);
    const type = le32(this.hdr, 0);
    const sectorLo = le32(this.hdr, 8);
    const sectorHi = le32(this.hdr, 12);
    const dataIn = chain.writableBytes - 1; // device-writable data bytes before the status
    const dataOut = chain.readableBytes - HDR; // device-readable data bytes after the header
    let status: number;
    switch (type) {
      case VIRTIO_BLK_T_IN:
        status = this.read(chain, sectorLo, sectorHi, dataIn);
        break;
      case VIRTIO_BLK_T_OUT:
        status = this.write(chain, sectorLo, sectorHi, dataOut);
        break;
      case VIRTIO_BLK_T_FLUSH:
        status = this.flush();
        break;
      case VIRTIO_BLK_T_GET_ID:
        status = this.getId(chain, dataIn);
        break;
      case VIRTIO_BLK_T_DISCARD:
      case VIRTIO_BLK_T_WRITE_ZEROES:
        status = this.discardOrZero(chain, type, dataOut);
        break;
      default:
        status = VIRTIO_BLK_S_UNSUPP;
        break;
    }
    setLastByte(chain.writable, status);
    // As written: every device-writable byte (data, or zeros on error, and the status).
    return chain.writableBytes;
  }

  /** Byte offset of `sector`, or -1 if [sector, sector + bytes) is not inside the disk. */
  private range(sectorLo: number, sectorHi: number, bytes: number): number {
    if (sectorHi >= 0x200000) return -1; // beyond 2^53 sectors: certainly outside
    const offset = (sectorHi * 0x1_0000_0000 + sectorLo) * SECTOR;
    if (!Number.isSafeInteger(offset) || offset + bytes > this.backend.size) return -1;
    return offset;
  }

  private read(chain: Chain, lo: number, hi: number, bytes: number): number {
    const offset = bytes % SECTOR === 0 ? this.range(lo, hi, bytes) : -1;
    if (offset >= 0) {
      try {
        forEachPiece(chain.writable, 0, bytes, (piece, at) => this.backend.read(offset + at, piece));
        return VIRTIO_BLK_S_OK;
      } catch {
        // fall through: report the I/O error
      }
    }
    forEachPiece(chain.writable, 0, bytes, (piece) => piece.fill(0)); // no stale guest data as "read"
    return VIRTIO_BLK_S_IOERR;
  }

  private write(chain: Chain, lo: number, hi: number, bytes: number): number {
    // Spec 5.2.6.2: a read-only device fails writes with IOERR and writes nothing.
    if (this.readOnly || bytes % SECTOR !== 0) return VIRTIO_BLK_S_IOERR;
    const offset = this.range(lo, hi, bytes);
    if (offset < 0) return VIRTIO_BLK_S_IOERR;
    try {
      // The header may share the first readable buffer with the data.
      forEachPiece(chain.readable, HDR, bytes, (piece, at) => this.backend.write(offset + at, piece));
      return VIRTIO_BLK_S_OK;
    } catch {
      return VIRTIO_BLK_S_IOERR;
    }
  }

  private flush(): number {
    if (this.readOnly) return VIRTIO_BLK_S_OK; // nothing can be dirty
    try {
      this.backend.flush();
      return VIRTIO_BLK_S_OK;
    } catch {
      return VIRTIO_BLK_S_IOERR;
    }
  }

  private getId(chain: Chain, bytes: number): number {
    // NUL-padded, not NUL-terminated at 20 bytes; any data bytes beyond 20 read as zero.
    forEachPiece(chain.writable, 0, bytes, (piece, at) => {
      piece.fill(0);
      if (at < BLK_ID_BYTES) piece.set(this.id.subarray(at, Math.min(BLK_ID_BYTES, at + piece.length)));
    });
    return VIRTIO_BLK_S_OK;
  }

  private discardOrZero(chain: Chain, type: number, bytes: number): number {
    const feature = type === VIRTIO_BLK_T_DISCARD ? VIRTIO_BLK_F_DISCARD : VIRTIO_BLK_F_WRITE_ZEROES;
    if (!hasBit(this.features, feature)) return VIRTIO_BLK_S_UNSUPP;
    if (this.readOnly) return VIRTIO_BLK_S_IOERR;
    const nseg = bytes / SEG;
    if (bytes === 0 || !Number.isInteger(nseg) || nseg > BLK_MAX_DISCARD_SEG) return VIRTIO_BLK_S_IOERR;
    // Check every segment before touching the disk.
    const segs: { offset: number; length: number; unmap: boolean }[] = [];
    const seg = new Uint8Array(SEG);
    for (let i = 0; i < nseg; i++) {
      copyFromBuffers(chain.readable, HDR + i * SEG, seg);
      const num = le32(seg, 8);
      const flags = le32(seg, 12);
      // Spec 5.2.6.2: unknown flags, or unmap on a discard, are UNSUPP.
      if (flags & ~WZ_FLAG_UNMAP || (type === VIRTIO_BLK_T_DISCARD && flags & WZ_FLAG_UNMAP)) return VIRTIO_BLK_S_UNSUPP;
      if (num > BLK_MAX_DISCARD_SECTORS) return VIRTIO_BLK_S_IOERR;
      const offset = this.range(le32(seg, 0), le32(seg, 4), num * SECTOR);
      if (offset < 0) return VIRTIO_BLK_S_IOERR;
      segs.push({ offset, length: num * SECTOR, unmap: (flags & WZ_FLAG_UNMAP) !== 0 });
    }
    try {
      for (const s of segs) {
        if (type === VIRTIO_BLK_T_DISCARD || s.unmap) {
          this.backend.discard(s.offset, s.length); // reads return zeros afterwards
        } else {
          this.writeZeros(s.offset, s.length);
        }
      }
      return VIRTIO_BLK_S_OK;
    } catch {
      return VIRTIO_BLK_S_IOERR;
    }
  }

  private writeZeros(offset: number, length: number): void {
    const chunk = 1 << 20;
    this.zeros ??= new Uint8Array(chunk);
    for (let done = 0; done < length; done += chunk) {
      this.backend.write(offset + done, this.zeros.subarray(0, Math.min(chunk, length - done)));
    }
  }
}

/** Set the last byte of the concatenated buffers (the request's status). */
function setLastByte(bufs: readonly Uint8Array[], value: number): void {
  for (let i = bufs.length - 1; i >= 0; i--) {
    const b = bufs[i]!;
    if (b.length > 0) {
      b[b.length - 1] = value;
      return;
    }
  }
}
