/**
 * Split virtqueues (spec 2.7): the descriptor table, the available (driver) ring and the used
 * (device) ring, with indirect descriptors and event-index notification suppression.
 *
 * Everything in guest memory is untrusted: every field is read once into a local and checked
 * before use. A malformed ring or chain never throws; it reports the problem through
 * `QueueOwner.fail()` (the transport then enters DEVICE_NEEDS_RESET) and the operation returns
 * null. Views are fetched from GuestMemory on each operation and never kept, so a memory that is
 * replaced or grown between calls cannot leave a stale view behind.
 */
import type { GuestMemory } from "../devices/backends";
import type { StateReader } from "../devices/state";
import { le16, le32, put16, put32 } from "./types";

export const VIRTQ_DESC_F_NEXT = 1;
export const VIRTQ_DESC_F_WRITE = 2;
export const VIRTQ_DESC_F_INDIRECT = 4;
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
export const VIRTQ_USED_F_NO_NOTIFY = 1;

/** Largest queue size the split ring allows (spec 2.7). */
export const MAX_QUEUE_SIZE = 32768;
/** Largest total length of one chain we accept (readable + writable bytes). */
export const MAX_CHAIN_BYTES = 64 * 1024 * 1024;
const DESC_SIZE = 16;

/** One descriptor chain, as the device sees it. */
export interface Chain {
  /** Head descriptor index: the id to put in the used ring. */
  readonly head: number;
  /** Device-readable buffers, in chain order (live views of guest memory). */
  readonly readable: Uint8Array[];
  /** Device-writable buffers, in chain order (live views of guest memory). */
  readonly writable: Uint8Array[];
  readonly readableBytes: number;
  readonly writableBytes: number;
}

/** What a queue needs from its transport. */
export interface QueueOwner {
  readonly mem: GuestMemory;
  /** Enter DEVICE_NEEDS_RESET because of `reason`. */
  fail(reason: string): void;
  /** The device is in DEVICE_NEEDS_RESET: touch no ring. */
  readonly broken: boolean;
}

/** One queue's state, part of its transport's (a type, not an interface: it is plain JSON data). */
export type QueueState = {
  size: number;
  ready: boolean;
  desc: [number, number];
  driver: [number, number];
  device: [number, number];
  align: number;
  pfn: number;
  lastAvail: number;
  usedIdx: number;
  signalledUsed: number;
  /**
   * Legacy: the GuestPageSize the queue was enabled with (its PFN's unit), 0 if none. A driver
   * may write GuestPageSize again later; the queue keeps its addresses. Absent from older states.
   */
  pageSize?: number;
};

/** Two u32 halves as an address, or -1 if it does not fit a JS number exactly (beyond 2^53). */
function addr64(lo: number, hi: number): number {
  if (hi >= 0x200000) return -1;
  return hi * 0x1_0000_0000 + lo;
}

function isPow2(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

export class Virtqueue {
  /** Queue size the driver chose (QueueNum). */
  size: number;
  /** QueueReady (modern) or QueuePFN != 0 (legacy), and the layout was valid. */
  ready = false;
  descLo = 0;
  descHi = 0;
  driverLo = 0;
  driverHi = 0;
  deviceLo = 0;
  deviceHi = 0;
  /** Legacy: QueueAlign and QueuePFN. */
  align = 4096;
  pfn = 0;
  /** Legacy: the GuestPageSize the queue was enabled with (see QueueState). */
  private pageSize = 0;

  /** Negotiated VIRTIO_F_RING_EVENT_IDX / VIRTIO_F_RING_INDIRECT_DESC (set by the transport). */
  eventIdx = false;
  indirect = false;

  /** Next available-ring slot to consume (free-running u16). */
  lastAvail = 0;
  /** Our copy of the used ring's idx (free-running u16); the guest's copy is never read back. */
  usedIdx = 0;
  /** usedIdx when we last decided whether to interrupt. */
  signalledUsed = 0;

  private descAddr = 0;
  private availAddr = 0;
  private usedAddr = 0;

  constructor(
    readonly index: number,
    readonly maxSize: number,
    private readonly owner: QueueOwner,
  ) {
    if (!isPow2(maxSize) || maxSize > MAX_QUEUE_SIZE) {
      throw new Error(`virtqueue ${index}: maximum size ${maxSize} must be a power of two up to ${MAX_QUEUE_SIZE}`);
    }
    this.size = maxSize;
  }

  /** Back to the power-on state (device reset). */
  reset(): void {
    this.size = this.maxSize;
    this.ready = false;
    this.descLo = this.descHi = this.driverLo = this.driverHi = this.deviceLo = this.deviceHi = 0;
    this.align = 4096;
    this.pfn = 0;
    this.pageSize = 0;
    this.lastAvail = this.usedIdx = this.signalledUsed = 0;
    this.descAddr = this.availAddr = this.usedAddr = 0;
  }

  /**
   * The driver enabled the queue with the addresses in the Desc/Driver/Device registers.
   * Returns null, or why the layout is unusable (the queue then stays disabled).
   */
  enable(): string | null {
    this.ready = false;
    const desc = addr64(this.descLo, this.descHi);
    const avail = addr64(this.driverLo, this.driverHi);
    const used = addr64(this.deviceLo, this.deviceHi);
    return this.start(desc, avail, used, true);
  }

  /** Legacy: the driver wrote QueuePFN (non-zero) with the given GuestPageSize. */
  enableLegacy(pageSize: number): string | null {
    this.ready = false;
    // Guards the page-number arithmetic: both values come straight from the guest.
    if (!isPow2(pageSize)) return `queue ${this.index}: GuestPageSize ${pageSize} is not a power of two`;
    if (!isPow2(this.align)) return `queue ${this.index}: QueueAlign ${this.align} is not a power of two`;
    if (!this.sizeOk()) return this.sizeError();
    this.pageSize = pageSize;
    const desc = this.pfn * pageSize;
    if (!Number.isSafeInteger(desc)) return `queue ${this.index}: QueuePFN ${this.pfn} is beyond the address space`;
    const avail = desc + DESC_SIZE * this.size;
    const used = Math.ceil((avail + 6 + 2 * this.size) / this.align) * this.align;
    return this.start(desc, avail, used, false);
  }

  disable(): void {
    this.ready = false;
  }

  private sizeOk(): boolean {
    return isPow2(this.size) && this.size <= this.maxSize;
  }

  private sizeError(): string {
    return `queue ${this.index}: size ${this.size} is not a power of two in 1..${this.maxSize}`;
  }

  private start(desc: number, avail: number, used: number, checkAlign: boolean): string | null {
    const n = this.size;
    // The split ring indexes slots with `idx & (size - 1)`: the size must be a power of two
    // no larger than what the device offered.
    if (!this.sizeOk()) return this.sizeError();
    // Addresses that do not fit a JS number exactly would alias other memory.
    if (desc < 0 || avail < 0 || used < 0) return `queue ${this.index}: ring address beyond 2^53`;
    // Spec 2.7 alignment: descriptor table 16, available ring 2, used ring 4.
    if (checkAlign && (desc % 16 !== 0 || avail % 2 !== 0 || used % 4 !== 0)) {
      return `queue ${this.index}: misaligned ring (desc 0x${desc.toString(16)}, driver 0x${avail.toString(16)}, device 0x${used.toString(16)})`;
    }
    // Each part, including the event-index words, must lie entirely in guest RAM.
    const mem = this.owner.mem;
    if (mem.read(desc, DESC_SIZE * n) === null) return `queue ${this.index}: descriptor table at 0x${desc.toString(16)} is not in RAM`;
    if (mem.read(avail, 6 + 2 * n) === null) return `queue ${this.index}: available ring at 0x${avail.toString(16)} is not in RAM`;
    if (mem.read(used, 6 + 8 * n) === null) return `queue ${this.index}: used ring at 0x${used.toString(16)} is not in RAM`;
    this.descAddr = desc;
    this.availAddr = avail;
    this.usedAddr = used;
    this.lastAvail = this.usedIdx = this.signalledUsed = 0;
    this.ready = true;
    return null;
  }

  private fault(reason: string): null {
    this.owner.fail(`queue ${this.index}: ${reason}`);
    return null;
  }

  /** Whether the driver has made buffers available that we have not consumed. */
  hasAvailable(): boolean {
    if (!this.ready || this.owner.broken) return false;
    const avail = this.owner.mem.read(this.availAddr, 4);
    return avail !== null && le16(avail, 2) !== this.lastAvail;
  }

  /**
   * Take the next available chain, or null when the ring is empty or malformed (in which case
   * the owner has been told to fail).
   */
  pop(): Chain | null {
    if (!this.ready || this.owner.broken) return null;
    const n = this.size;
    const avail = this.owner.mem.read(this.availAddr, 6 + 2 * n);
    // The memory behind the ring may have changed since it was validated.
    if (avail === null) return this.fault("available ring is no longer in RAM");
    const availIdx = le16(avail, 2);
    const pending = (availIdx - this.lastAvail) & 0xffff;
    if (pending === 0) {
      this.publishAvailEvent();
      return null;
    }
    // The driver can have at most `size` chains outstanding; a larger jump means a corrupt or
    // hostile idx, and following it would make us reprocess stale ring slots.
    if (pending > n) return this.fault(`available idx ${availIdx} is ${pending} ahead of ${this.lastAvail}, more than the queue size ${n}`);
    const head = le16(avail, 4 + 2 * (this.lastAvail & (n - 1)));
    this.lastAvail = (this.lastAvail + 1) & 0xffff;
    this.publishAvailEvent();
    return this.walk(head);
  }

  /** Give back the last `count` chains taken by pop() (they will be popped again). */
  unpop(count: number): void {
    this.lastAvail = (this.lastAvail - count) & 0xffff;
  }

  /** Walk the chain starting at descriptor `head`. */
  private walk(head: number): Chain | null {
    const n = this.size;
    const mem = this.owner.mem;
    // An index into the descriptor table outside the table would read unrelated memory.
    if (head >= n) return this.fault(`head descriptor ${head} is outside the queue (size ${n})`);
    let table = mem.read(this.descAddr, DESC_SIZE * n);
    if (table === null) return this.fault("descriptor table is no longer in RAM");
    let tableLen = n;
    let inIndirect = false;
    let i = head;
    let count = 0; // buffer descriptors in the whole chain
    let inTable = 0; // descriptors visited in the current table
    let sawWritable = false;
    let readableBytes = 0;
    let writableBytes = 0;
    const readable: Uint8Array[] = [];
    const writable: Uint8Array[] = [];
    for (;;) {
      // A `next` outside the current table would read unrelated memory.
      if (i >= tableLen) return this.fault(`descriptor index ${i} is outside its table (${tableLen} entries)`);
      // Visiting more descriptors than the table holds means `next` links form a cycle.
      if (++inTable > tableLen) return this.fault(`descriptor chain from head ${head} loops`);
      const o = i * DESC_SIZE;
      const lo = le32(table, o);
      const hi = le32(table, o + 4);
      const len = le32(table, o + 8);
      const flags = le16(table, o + 12);
      const next = le16(table, o + 14);
      if (flags & VIRTQ_DESC_F_INDIRECT) {
        // Indirect tables exist only if the driver negotiated them.
        if (!this.indirect) return this.fault("indirect descriptor without VIRTIO_F_RING_INDIRECT_DESC");
        // One level only (spec 2.7.5.3.1): a table pointing to a table could recurse forever.
        if (inIndirect) return this.fault("nested indirect descriptor");
        // INDIRECT and NEXT together is forbidden: the chain would continue after the table.
        if (flags & VIRTQ_DESC_F_NEXT) return this.fault("indirect descriptor also has NEXT");
        // A table is a whole number of 16-byte descriptors, at least one.
        if (len === 0 || len % DESC_SIZE !== 0) return this.fault(`indirect table length ${len} is not a non-zero multiple of 16`);
        // Bounds the walk below: no chain may be longer than the queue size.
        if (len / DESC_SIZE > n) return this.fault(`indirect table of ${len / DESC_SIZE} descriptors is longer than the queue size ${n}`);
        const at = addr64(lo, hi);
        const t = at < 0 ? null : mem.read(at, len);
        // The table itself must be in RAM.
        if (t === null) return this.fault(`indirect table at 0x${at.toString(16)} (+${len}) is not in RAM`);
        table = t;
        tableLen = len / DESC_SIZE;
        inIndirect = true;
        inTable = 0;
        i = 0;
        continue;
      }
      // Spec 2.7.5.3.1: a chain is never longer than the queue size; this also ends any loop
      // that spans a direct chain and an indirect table.
      if (++count > n) return this.fault(`descriptor chain from head ${head} is longer than the queue size ${n}`);
      if (flags & VIRTQ_DESC_F_WRITE) {
        sawWritable = true;
        writableBytes += len;
      } else {
        // Spec 2.7.4.2: device-readable buffers come before device-writable ones; mixing them
        // would let a request's header be read from memory the device is about to write.
        if (sawWritable) return this.fault(`device-readable descriptor after a device-writable one (head ${head})`);
        readableBytes += len;
      }
      // u32 lengths can sum beyond anything sane; cap the whole request.
      if (readableBytes + writableBytes > MAX_CHAIN_BYTES) {
        return this.fault(`descriptor chain from head ${head} is larger than ${MAX_CHAIN_BYTES} bytes`);
      }
      if (len > 0) {
        const at = addr64(lo, hi);
        const writes = (flags & VIRTQ_DESC_F_WRITE) !== 0;
        const v = at < 0 ? null : writes ? mem.view(at, len) : mem.read(at, len);
        // Every buffer must lie entirely in guest RAM (not MMIO, not beyond RAM).
        if (v === null) return this.fault(`buffer 0x${lo.toString(16)}:${hi.toString(16)} (+${len}) is not in RAM`);
        (writes ? writable : readable).push(v);
      }
      if (!(flags & VIRTQ_DESC_F_NEXT)) break;
      i = next;
    }
    return { head, readable, writable, readableBytes, writableBytes };
  }

  /** Put chain `head` in the used ring with `len` bytes written, and publish the new idx. */
  push(head: number, len: number): void {
    if (!this.ready || this.owner.broken) return;
    const n = this.size;
    const used = this.owner.mem.view(this.usedAddr, 6 + 8 * n);
    if (used === null) {
      this.fault("used ring is no longer in RAM");
      return;
    }
    const o = 4 + 8 * (this.usedIdx & (n - 1));
    put32(used, o, head);
    put32(used, o + 4, len);
    // The element is complete before idx makes it visible (spec 2.7.8.2).
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
    put16(used, 2, this.usedIdx);
  }

  /** With VIRTIO_F_RING_EVENT_IDX: ask to be notified once the driver adds past what we consumed. */
  private publishAvailEvent(): void {
    if (!this.eventIdx) return;
    const used = this.owner.mem.view(this.usedAddr + 4 + 8 * this.size, 2);
    if (used !== null) put16(used, 0, this.lastAvail);
  }

  /**
   * Decide whether the used buffers added since the last decision deserve an interrupt
   * (spec 2.7.7.2): VIRTQ_AVAIL_F_NO_INTERRUPT, or used_event with event indexes.
   */
  needsInterrupt(): boolean {
    if (!this.ready || this.usedIdx === this.signalledUsed) return false;
    const old = this.signalledUsed;
    const now = this.usedIdx;
    this.signalledUsed = now;
    const avail = this.owner.mem.read(this.availAddr, 6 + 2 * this.size);
    if (avail === null) return true; // cannot read the driver's wish: interrupting is always safe
    if (this.eventIdx) {
      const usedEvent = le16(avail, 4 + 2 * this.size);
      // Interrupt iff used_event lies in [old, now): the driver asked to hear about that entry.
      return ((now - usedEvent - 1) & 0xffff) < ((now - old) & 0xffff);
    }
    return (le16(avail, 0) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
  }

  save(): QueueState {
    return {
      size: this.size,
      ready: this.ready,
      desc: [this.descLo, this.descHi],
      driver: [this.driverLo, this.driverHi],
      device: [this.deviceLo, this.deviceHi],
      align: this.align,
      pfn: this.pfn,
      lastAvail: this.lastAvail,
      usedIdx: this.usedIdx,
      signalledUsed: this.signalledUsed,
      pageSize: this.pageSize,
    };
  }

  /** Check a saved queue without applying it; throws a clear Error. */
  static check(s: StateReader, maxSize: number): QueueState {
    const pair = (field: string): [number, number] => {
      const words = s.words(field, 2);
      return [words[0]!, words[1]!];
    };
    // Whatever the driver wrote to QueueNum: only an enabled queue's size must be usable, and
    // apply() enables it again through the same checks.
    const size = s.int("size", 0, 0xffffffff);
    if (s.bool("ready") && (!isPow2(size) || size > maxSize)) s.reject("size", `a power of two up to ${maxSize} in an enabled queue`);
    return {
      size,
      ready: s.bool("ready"),
      desc: pair("desc"),
      driver: pair("driver"),
      device: pair("device"),
      align: s.int("align", 0, 0xffffffff),
      pfn: s.int("pfn", 0, 0xffffffff),
      lastAvail: s.int("lastAvail", 0, 0xffff),
      usedIdx: s.int("usedIdx", 0, 0xffff),
      signalledUsed: s.int("signalledUsed", 0, 0xffff),
      ...(s.keys().includes("pageSize") ? { pageSize: s.int("pageSize", 0, 0xffffffff) } : {}),
    };
  }

  /**
   * Apply a checked state. The ring addresses are re-derived (legacy: from the PFN); if they
   * are unusable the queue is left disabled and the reason returned.
   */
  apply(st: QueueState, legacy: boolean, pageSize: number): string | null {
    this.size = st.size;
    [this.descLo, this.descHi] = st.desc;
    [this.driverLo, this.driverHi] = st.driver;
    [this.deviceLo, this.deviceHi] = st.device;
    this.align = st.align;
    this.pfn = st.pfn;
    this.ready = false;
    let err: string | null = null;
    if (st.ready) err = legacy ? this.enableLegacy(st.pageSize || pageSize) : this.enable();
    this.lastAvail = st.lastAvail;
    this.usedIdx = st.usedIdx;
    this.signalledUsed = st.signalledUsed;
    return err;
  }
}

// ---- copying between host arrays and a chain's scattered buffers ----

/** Copy bytes starting at byte `offset` of the concatenated `bufs` into `dst`; returns the count. */
export function copyFromBuffers(bufs: readonly Uint8Array[], offset: number, dst: Uint8Array): number {
  let done = 0;
  for (const b of bufs) {
    if (done === dst.length) break;
    if (offset >= b.length) {
      offset -= b.length;
      continue;
    }
    const n = Math.min(b.length - offset, dst.length - done);
    dst.set(b.subarray(offset, offset + n), done);
    done += n;
    offset = 0;
  }
  return done;
}

/** Copy `src` to byte `offset` of the concatenated `bufs`; returns the count that fit. */
export function copyToBuffers(bufs: readonly Uint8Array[], offset: number, src: Uint8Array): number {
  let done = 0;
  for (const b of bufs) {
    if (done === src.length) break;
    if (offset >= b.length) {
      offset -= b.length;
      continue;
    }
    const n = Math.min(b.length - offset, src.length - done);
    b.set(src.subarray(done, done + n), offset);
    done += n;
    offset = 0;
  }
  return done;
}

/**
 * Call `fn(piece)` for consecutive pieces covering bytes [offset, offset + length) of the
 * concatenated `bufs` (each piece a view of one buffer); returns the bytes covered.
 */
export function forEachPiece(
  bufs: readonly Uint8Array[],
  offset: number,
  length: number,
  fn: (piece: Uint8Array, at: number) => void,
): number {
  let done = 0;
  for (const b of bufs) {
    if (done === length) break;
    if (offset >= b.length) {
      offset -= b.length;
      continue;
    }
    const n = Math.min(b.length - offset, length - done);
    fn(b.subarray(offset, offset + n), done);
    done += n;
    offset = 0;
  }
  return done;
}
