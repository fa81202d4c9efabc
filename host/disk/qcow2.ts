// A qcow2 image as a DiskBackend, over any ByteFile: guest clusters map to host clusters
// through the L1 and L2 tables; what is not allocated reads from the backing file (or as
// zeros); writes allocate clusters (copying the rest of a partly written cluster from below)
// and keep the refcounts exact, so `qemu-img check` finds neither errors nor leaks.
//
// Every table entry is untrusted: an offset is used only once it is known to be aligned, inside
// the file and clear of the image's metadata, and tables are bounded before they are read.
//
// Crash safety without a dirty bit: metadata changes wait in memory (dirty L2 tables, refcount
// blocks, L1 entries) and reach the file in dependency order, with a flush between steps:
// refcounts (and the data of new clusters) before the tables that point to them, L2 tables
// before the L1 entries that point to them, and a cluster is counted free only after the table
// that stopped using it is durable. A crash can then leak clusters but never point at one that
// is free or unwritten. The guest's flush (and close) writes everything.
import { inflateSync } from "fflate";
import type { DiskBackend } from "../devices/backends";
import { readPadded, type ByteFile } from "./byte-file";
import {
  AUTOCLEAR_BITMAPS, HDR_AUTOCLEAR, HDR_REFCOUNT_TABLE, INCOMPAT_CORRUPT, INCOMPAT_DIRTY, MAX_L1_BYTES, MAX_REFCOUNT_TABLE_BYTES,
  readQcow2Header, type Fail, type Qcow2Header,
} from "./qcow2-format";

/** What an image reads through to where it has no data: a backing file, raw or qcow2. */
export interface ImageLayer {
  readonly size: number;
  /** Fill `dst` from `offset`; [offset, offset + dst.length) lies within size. */
  read(offset: number, dst: Uint8Array): void;
  /** Optional: the range is known to read as zeros without reading it (false: not known). */
  knownZero?(offset: number, length: number): boolean;
  close(): void;
}

export interface Qcow2Options {
  /** Names the image in messages: "--drive /images/vm.qcow2". Default "disk image <name>". */
  label?: string;
  /** Opened as a backing file: never written, and its virtual size need not be a multiple of 512. */
  backing?: boolean;
  /**
   * Opens the backing file the header names (`format` from its header extension, if any).
   * Without it, an image with a backing file is refused.
   */
  openBacking?: (name: string, format: string | undefined) => ImageLayer;
  /** Bytes of L2 tables, and of refcount blocks, kept in memory (default 4 MiB each). */
  cacheBytes?: number;
}

const enum Kind { Unallocated, Zero, Data, Compressed }

interface Mapping {
  kind: Kind;
  /** Data: the host cluster. Zero: its preallocated cluster, or 0. Compressed: the first byte. */
  host: number;
  /** Compressed: bytes of compressed data from `host`. */
  bytes: number;
}

interface Table {
  data: Uint8Array;
  view: DataView;
  dirty: boolean;
}

const COPIED = 0x80000000; // bit 63, in the high word: refcount exactly one
const COMPRESSED = 0x40000000; // bit 62
const ZERO_FLAG = 1; // bit 0 of a standard cluster descriptor (version 3)
const TWO32 = 2 ** 32;
const DEFAULT_CACHE_BYTES = 4 << 20;
const MIN_CACHED_TABLES = 8;
const UNALLOCATED: Mapping = { kind: Kind.Unallocated, host: 0, bytes: 0 };

const hex = (n: number) => `0x${n.toString(16)}`;

function table(data: Uint8Array, dirty = false): Table {
  return { data, view: new DataView(data.buffer, data.byteOffset, data.byteLength), dirty };
}

/** A 64-bit big-endian table entry's offset bits 9-55 (L1, L2 and refcount table entries). */
function entryOffset(view: DataView, at: number): number {
  return (view.getUint32(at) & 0x00ffffff) * TWO32 + ((view.getUint32(at + 4) & 0xfffffe00) >>> 0);
}

function setEntry(view: DataView, at: number, offset: number, flagsHigh: number, flagsLow = 0): void {
  view.setUint32(at, (Math.floor(offset / TWO32) | flagsHigh) >>> 0);
  view.setUint32(at + 4, ((offset % TWO32) | flagsLow) >>> 0);
}

export class Qcow2Disk implements DiskBackend {
  readonly format = "qcow2" as const;
  readonly size: number;
  readonly readOnly: boolean;
  readonly header: Readonly<Qcow2Header>;
  private readonly label: string;
  private readonly fail: Fail;
  private readonly clusterSize: number;
  private readonly clusterBits: number;
  private readonly l2Entries: number;
  private readonly refcountBits: number;
  private readonly refcountsPerBlock: number;
  private readonly maxRefcount: number;
  private readonly cacheTables: number;
  private readonly backing: ImageLayer | null = null;

  private readonly l1: Table;
  private readonly l1Offset: number;
  private readonly l1End: number;
  private readonly dirtyL1 = new Set<number>();
  private readonly l2Cache = new Map<number, Table>();

  private refTable: Table;
  private refTableOffset: number;
  private refTableClusters: number;
  private refTableEntries: number;
  private readonly dirtyRefTable = new Set<number>();
  private readonly blockCache = new Map<number, Table>();

  /** Host offsets of every L2 table and refcount block, so no data cluster can be one. */
  private readonly l2Tables = new Set<number>();
  private readonly refBlocks = new Set<number>();
  /** Host clusters to count down once the tables that stopped using them are durable: index → times. */
  private readonly pendingFrees = new Map<number, number>();
  /** No free cluster lies below this index. */
  private freeHint = 0;
  /** Bytes the file holds, counting what this image wrote. */
  private fileEnd: number;
  /** The file never grows past this many clusters: everything the virtual size can need, plus what it held. */
  private readonly maxClusters: number;

  private cow: Uint8Array | null = null;
  private zeros: Uint8Array | null = null;
  private inflated: { host: number; data: Uint8Array } | null = null;
  private syncing = false;
  private closed = false;

  constructor(
    readonly file: ByteFile,
    opts: Qcow2Options = {},
  ) {
    this.label = opts.label ?? `disk image ${file.name}`;
    this.fail = (problem: string): never => {
      throw new Error(`${this.label}: ${problem}`);
    };
    const fail: Fail = this.fail;
    const h = readQcow2Header(file, fail);
    this.header = h;
    this.readOnly = file.readOnly || opts.backing === true;
    if (!this.readOnly) {
      if (h.incompatible & INCOMPAT_DIRTY) fail("was not closed cleanly (dirty bit: its refcounts may be wrong); repair it with qemu-img check -r all, or attach it with readonly=on");
      if (h.incompatible & INCOMPAT_CORRUPT) fail("is marked corrupt; repair it with qemu-img check -r all, or attach it with readonly=on");
      if (h.snapshots > 0) fail(`has ${h.snapshots} internal snapshot(s), and wasmvisor writes only images without: attach it with readonly=on, or delete them with qemu-img snapshot -d`);
    }
    if (!opts.backing && h.size % 512 !== 0) fail(`virtual size ${h.size} is not a multiple of 512`);
    this.size = h.size;
    this.clusterBits = h.clusterBits;
    const cs = (this.clusterSize = 2 ** h.clusterBits);
    this.l2Entries = cs / 8;
    this.refcountBits = 2 ** h.refcountOrder;
    this.refcountsPerBlock = (cs * 8) / this.refcountBits;
    this.maxRefcount = this.refcountBits >= 53 ? Number.MAX_SAFE_INTEGER : 2 ** this.refcountBits - 1;
    this.cacheTables = Math.max(MIN_CACHED_TABLES, Math.floor((opts.cacheBytes ?? DEFAULT_CACHE_BYTES) / cs));
    this.fileEnd = file.size();

    // The L1 table: large enough for the virtual size, bounded, aligned, inside the file.
    const dataClusters = Math.ceil(h.size / cs);
    const needL1 = Math.ceil(dataClusters / this.l2Entries);
    if (h.l1Size * 8 > MAX_L1_BYTES) fail(`L1 table of ${h.l1Size} entries is larger than ${MAX_L1_BYTES >> 20} MiB`);
    if (h.l1Size < needL1) fail(`L1 table of ${h.l1Size} entries is too small for the virtual size of ${h.size} bytes (needs ${needL1})`);
    this.l1Offset = h.l1Offset;
    this.l1End = h.l1Offset + Math.ceil((h.l1Size * 8) / cs) * cs;
    if (h.l1Size > 0) this.checkRange(h.l1Offset, h.l1Size * 8, "the L1 table");
    // The refcount table: present, bounded, aligned, inside the file.
    if (h.refcountTableClusters === 0) fail("has no refcount table");
    if (h.refcountTableClusters * cs > MAX_REFCOUNT_TABLE_BYTES) fail(`refcount table of ${h.refcountTableClusters} clusters is larger than ${MAX_REFCOUNT_TABLE_BYTES >> 20} MiB`);
    this.refTableOffset = h.refcountTableOffset;
    this.refTableClusters = h.refcountTableClusters;
    this.refTableEntries = (h.refcountTableClusters * cs) / 8;
    this.checkRange(h.refcountTableOffset, h.refcountTableClusters * cs, "the refcount table");
    if (h.snapshots > 0) this.checkRange(h.snapshotsOffset, 1, "the snapshot table");
    // The header cluster, the L1 table and the refcount table must not overlap.
    const regions: [string, number, number][] = [
      ["the header", 0, cs],
      ["the L1 table", this.l1Offset, h.l1Size > 0 ? this.l1End : this.l1Offset],
      ["the refcount table", this.refTableOffset, this.refTableOffset + this.refTableClusters * cs],
    ];
    for (let i = 0; i < regions.length; i++) {
      for (let j = i + 1; j < regions.length; j++) {
        const [a, aStart, aEnd] = regions[i];
        const [b, bStart, bEnd] = regions[j];
        if (aStart < bEnd && bStart < aEnd) fail(`${b} (at ${hex(bStart)}) overlaps ${a}`);
      }
    }

    this.l1 = table(new Uint8Array(h.l1Size * 8));
    this.readExactly(this.l1Offset, this.l1.data, "the L1 table");
    this.refTable = table(new Uint8Array(this.refTableEntries * 8));
    this.readExactly(this.refTableOffset, this.refTable.data, "the refcount table");
    for (let i = 0; i < this.refTableEntries; i++) {
      if (this.refTable.view.getUint32(i * 8 + 4) & 0x1ff) fail(`refcount table entry ${i} has reserved bits set`);
      const block = this.refTableEntry(i);
      if (block === 0) continue;
      this.checkTableCluster(block, `refcount block ${i}`);
      this.refBlocks.add(block);
    }
    for (let i = 0; i < h.l1Size; i++) {
      const hi = this.l1.view.getUint32(i * 8);
      if (hi & 0x7f000000 || this.l1.view.getUint32(i * 8 + 4) & 0x1ff) fail(`L1 entry ${i} has reserved bits set`);
      const l2 = entryOffset(this.l1.view, i * 8);
      if (l2 === 0) continue;
      this.checkTableCluster(l2, `the L2 table of L1 entry ${i}`);
      this.l2Tables.add(l2);
    }

    const fileClusters = Math.ceil(this.fileEnd / cs);
    const grown = fileClusters + dataClusters + needL1 + 1;
    const blocks = Math.ceil(grown / this.refcountsPerBlock) + 1;
    this.maxClusters = grown + blocks + 2 * Math.ceil((blocks * 8) / cs) + this.refTableClusters + 16;

    if (h.backingFile !== undefined) {
      if (!opts.openBacking) fail(`has a backing file (${h.backingFile}) and none can be opened here`);
      this.backing = opts.openBacking(h.backingFile, h.backingFormat);
    }
    try {
      if (!this.readOnly) this.prepareForWriting();
    } catch (e) {
      this.backing?.close();
      throw e;
    }
  }

  /**
   * Writing relies on the refcounts: every metadata cluster must be counted, and an L2 table
   * exactly once (more would mean it is shared with a snapshot).
   */
  private prepareForWriting(): void {
    const h = this.header;
    const cs = this.clusterSize;
    const counted = (offset: number, what: string, exact: boolean) => {
      const n = this.refcount(offset / cs);
      if (n === 0 || (exact && n !== 1)) this.fail(`${what} at ${hex(offset)} has refcount ${n}; the image is inconsistent: repair it with qemu-img check -r all`);
    };
    counted(0, "the header", false);
    for (let o = this.l1Offset; h.l1Size > 0 && o < this.l1End; o += cs) counted(o, "the L1 table", false);
    for (let i = 0; i < this.refTableClusters; i++) counted(this.refTableOffset + i * cs, "the refcount table", false);
    for (const b of this.refBlocks) counted(b, "a refcount block", false);
    for (const t of this.l2Tables) counted(t, "an L2 table", true);
    // Persistent dirty bitmaps would be invalidated (and, to QEMU, their clusters leaked) by
    // writes that do not update them: better said now than found later.
    if (h.autoclear & AUTOCLEAR_BITMAPS) {
      this.fail("has persistent dirty bitmaps, which wasmvisor does not keep up to date: remove them (qemu-img bitmap --remove) or attach the image with readonly=on");
    }
    // Other auto-clear features describe data we will change without updating it: the format
    // asks a writer that does not know them to clear their bits first.
    if (h.autoclear !== 0n) {
      this.file.write(HDR_AUTOCLEAR, new Uint8Array(8));
      this.file.flush();
    }
  }

  // ---- checks ----

  private checkRange(offset: number, length: number, what: string): void {
    if (offset % this.clusterSize !== 0) this.fail(`${what} at ${hex(offset)} is not aligned to a cluster (${this.clusterSize} bytes)`);
    if (offset + length > this.fileEnd) this.fail(`${what} at ${hex(offset)} (${length} bytes) lies past the end of the file (${this.fileEnd} bytes)`);
  }

  /** An L2 table or refcount block named by a table: a whole cluster of the file that is no other metadata. */
  private checkTableCluster(offset: number, what: string): void {
    this.checkRange(offset, this.clusterSize, what);
    const clash = this.metadataAt(offset);
    if (clash) this.fail(`${what} at ${hex(offset)} overlaps ${clash}`);
  }

  /** Which metadata the host cluster at `offset` holds, if any. */
  private metadataAt(offset: number): string | null {
    if (offset < this.clusterSize) return "the header";
    if (offset >= this.l1Offset && offset < this.l1End) return "the L1 table";
    if (offset >= this.refTableOffset && offset < this.refTableOffset + this.refTableClusters * this.clusterSize) return "the refcount table";
    if (this.l2Tables.has(offset)) return "an L2 table";
    if (this.refBlocks.has(offset)) return "a refcount block";
    return null;
  }

  private readExactly(offset: number, dst: Uint8Array, what: string): void {
    if (this.file.read(offset, dst) !== dst.length) this.fail(`${what} at ${hex(offset)} is cut short by the end of the file`);
  }

  private checkAccess(offset: number, length: number, write: boolean): void {
    if (this.closed) throw new Error(`${this.label} is closed`);
    if (write && this.readOnly) throw new Error(`${this.label} is read-only`);
    if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new RangeError(`${this.label}: access [${offset}, +${length}) beyond its ${this.size} bytes`);
    }
  }

  // ---- mapping guest clusters ----

  private l1Entry(index: number): number {
    return entryOffset(this.l1.view, index * 8);
  }

  /** The L2 table at `offset` (known from the L1 table), through the cache. */
  private l2Table(offset: number): Table {
    const hit = this.l2Cache.get(offset);
    if (hit) {
      this.l2Cache.delete(offset);
      this.l2Cache.set(offset, hit);
      return hit;
    }
    const t = table(new Uint8Array(this.clusterSize));
    this.readExactly(offset, t.data, "an L2 table");
    this.cache(this.l2Cache, offset, t, () => this.syncMetadata());
    return t;
  }

  /** Where guest cluster `index` is, each field checked before it is used. */
  private lookup(index: number): Mapping {
    const l2 = this.l1Entry(Math.floor(index / this.l2Entries));
    if (l2 === 0) return UNALLOCATED;
    const t = this.l2Table(l2);
    const at = (index % this.l2Entries) * 8;
    const hi = t.view.getUint32(at);
    const lo = t.view.getUint32(at + 4);
    const guest = () => hex(index * this.clusterSize);
    if (hi & COMPRESSED) return this.compressed(hi, lo, guest);
    if (hi & 0x3f000000 || lo & 0x1fe) this.fail(`the L2 entry for guest offset ${guest()} has reserved bits set`);
    const host = entryOffset(t.view, at);
    if (lo & ZERO_FLAG) return { kind: Kind.Zero, host: this.checkedHost(host, guest, true), bytes: 0 };
    if (host === 0) {
      if (hi & COPIED) this.fail(`the L2 entry for guest offset ${guest()} points at offset 0 (the header)`);
      return UNALLOCATED;
    }
    return { kind: Kind.Data, host: this.checkedHost(host, guest, false), bytes: 0 };
  }

  private checkedHost(host: number, guest: () => string, zero: boolean): number {
    if (host === 0 && zero) return 0;
    if (host % this.clusterSize !== 0) this.fail(`the L2 entry for guest offset ${guest()} points at ${hex(host)}, not aligned to a cluster`);
    if (host >= this.fileEnd) this.fail(`the L2 entry for guest offset ${guest()} points at ${hex(host)}, past the end of the file (${this.fileEnd} bytes)`);
    const clash = this.metadataAt(host);
    if (clash) this.fail(`the L2 entry for guest offset ${guest()} points into ${clash} (at ${hex(host)})`);
    return host;
  }

  private compressed(hi: number, lo: number, guest: () => string): Mapping {
    // Offset in bits 0..x-1, additional 512-byte sectors in bits x..61, x = 62 - (cluster_bits - 8).
    const x = 70 - this.clusterBits;
    const entry = (BigInt(hi & 0x3fffffff) << 32n) | BigInt(lo >>> 0);
    const host = Number(entry & ((1n << BigInt(x)) - 1n));
    const sectors = Number(entry >> BigInt(x)) + 1;
    const bytes = sectors * 512 - (host % 512);
    if (host >= this.fileEnd) this.fail(`the compressed cluster for guest offset ${guest()} starts at ${hex(host)}, past the end of the file (${this.fileEnd} bytes)`);
    for (let c = this.clusterStart(host); c < host + bytes; c += this.clusterSize) {
      const clash = this.metadataAt(c);
      if (clash) this.fail(`the compressed cluster for guest offset ${guest()} lies in ${clash} (at ${hex(c)})`);
    }
    return { kind: Kind.Compressed, host, bytes };
  }

  private clusterStart(offset: number): number {
    return offset - (offset % this.clusterSize);
  }

  // ---- reading ----

  read(offset: number, dst: Uint8Array): void {
    this.checkAccess(offset, dst.length, false);
    this.readGuest(offset, dst);
  }

  /** Guest bytes [offset, offset + dst.length), inside the virtual size. */
  private readGuest(offset: number, dst: Uint8Array): void {
    const cs = this.clusterSize;
    let done = 0;
    while (done < dst.length) {
      const at = offset + done;
      const index = Math.floor(at / cs);
      const within = at - index * cs;
      const m = this.lookup(index);
      // One access for a run of clusters that continue each other (adjacent data, zeros, holes).
      let length = Math.min(cs - within, dst.length - done);
      for (let next = index + 1; done + length < dst.length && m.kind !== Kind.Compressed; next++) {
        const n = this.lookup(next);
        if (n.kind !== m.kind || (m.kind === Kind.Data && n.host !== m.host + (next - index) * cs)) break;
        length += Math.min(cs, dst.length - done - length);
      }
      const part = dst.subarray(done, done + length);
      if (m.kind === Kind.Data) readPadded(this.file, m.host + within, part);
      else if (m.kind === Kind.Zero) part.fill(0);
      else if (m.kind === Kind.Unallocated) this.readBelow(at, part);
      else part.set(this.inflate(m, index).subarray(within, within + length));
      done += length;
    }
  }

  /**
   * Whether the range reads as zeros by the image's tables alone, no data read: every cluster it
   * touches is a zero cluster, or unallocated with nothing below it (no backing file, past its
   * end, or a backing image that knows the same of it). False when not known (data, compressed).
   */
  knownZero(offset: number, length: number): boolean {
    this.checkAccess(offset, length, false);
    const cs = this.clusterSize;
    const end = offset + length;
    for (let index = Math.floor(offset / cs); index * cs < end; index++) {
      const m = this.lookup(index);
      if (m.kind === Kind.Zero) continue;
      if (m.kind !== Kind.Unallocated) return false;
      const below = this.backing;
      if (!below) continue;
      const from = Math.max(offset, index * cs);
      const to = Math.min(end, (index + 1) * cs, below.size);
      if (from < to && !(below.knownZero?.(from, to - from) ?? false)) return false;
    }
    return true;
  }

  /** What lies under unallocated clusters: the backing file, zeros past its end or without one. */
  private readBelow(offset: number, dst: Uint8Array): void {
    const from = this.backing ? Math.max(0, Math.min(dst.length, this.backing.size - offset)) : 0;
    if (from > 0) this.backing!.read(offset, dst.subarray(0, from));
    dst.fill(0, from);
  }

  private inflate(m: Mapping, index: number): Uint8Array {
    if (this.inflated?.host === m.host) return this.inflated.data;
    const src = new Uint8Array(m.bytes);
    readPadded(this.file, m.host, src);
    let out: Uint8Array;
    try {
      out = inflateSync(src, { out: new Uint8Array(this.clusterSize) });
    } catch (e) {
      return this.fail(`the compressed cluster for guest offset ${hex(index * this.clusterSize)} is corrupt (${(e as Error).message})`);
    }
    if (out.length !== this.clusterSize) this.fail(`the compressed cluster for guest offset ${hex(index * this.clusterSize)} inflates to ${out.length} bytes, not a cluster`);
    this.inflated = { host: m.host, data: out };
    return out;
  }

  // ---- writing ----

  write(offset: number, src: Uint8Array): void {
    this.checkAccess(offset, src.length, true);
    this.writeGuest(offset, src);
  }

  private writeGuest(offset: number, src: Uint8Array): void {
    const cs = this.clusterSize;
    let done = 0;
    while (done < src.length) {
      const at = offset + done;
      const index = Math.floor(at / cs);
      const within = at - index * cs;
      const m = this.lookup(index);
      let length = Math.min(cs - within, src.length - done);
      if (m.kind === Kind.Data && this.ownedOnce(m.host, index)) {
        // Written in place, with the following clusters that continue it.
        for (let next = index + 1; done + length < src.length; next++) {
          const n = this.lookup(next);
          if (n.kind !== Kind.Data || n.host !== m.host + (next - index) * cs || !this.ownedOnce(n.host, next)) break;
          length += Math.min(cs, src.length - done - length);
        }
        this.writeFile(m.host + within, src.subarray(done, done + length));
      } else {
        this.writeNewCluster(index, within, src.subarray(done, done + length), m);
      }
      done += length;
    }
  }

  /** A data cluster only this guest cluster uses (refcount 1) may be written in place. */
  private ownedOnce(host: number, index: number): boolean {
    const n = this.refcount(host / this.clusterSize);
    if (n === 0) this.fail(`the data cluster of guest offset ${hex(index * this.clusterSize)} (at ${hex(host)}) has refcount 0; repair the image with qemu-img check -r all`);
    return n === 1;
  }

  /** Give guest cluster `index` a new host cluster holding `piece` at `within` over its old contents. */
  private writeNewCluster(index: number, within: number, piece: Uint8Array, old: Mapping): void {
    const cs = this.clusterSize;
    let data = piece;
    if (piece.length !== cs) {
      // Copy-on-write: the rest of the cluster as the guest sees it now (compressed, from the backing file, zeros).
      data = this.cow ??= new Uint8Array(cs);
      const start = index * cs;
      const visible = Math.min(cs, this.size - start);
      this.readGuest(start, data.subarray(0, visible));
      data.fill(0, visible);
      data.set(piece, within);
    }
    this.checkReleasable(old, index);
    const t = this.l2ForWrite(Math.floor(index / this.l2Entries));
    const host = this.allocateCluster();
    this.writeFile(host, data);
    setEntry(t.view, (index % this.l2Entries) * 8, host, COPIED);
    t.dirty = true;
    this.release(old);
  }

  private writeFile(offset: number, src: Uint8Array): void {
    this.file.write(offset, src);
    this.fileEnd = Math.max(this.fileEnd, offset + src.length);
  }

  /** The L2 table for L1 entry `index`, made (empty) if there is none. */
  private l2ForWrite(index: number): Table {
    const existing = this.l1Entry(index);
    if (existing !== 0) return this.l2Table(existing);
    const host = this.allocateCluster();
    const t = table(new Uint8Array(this.clusterSize), true);
    this.l2Tables.add(host);
    this.cache(this.l2Cache, host, t, () => this.syncMetadata());
    setEntry(this.l1.view, index * 8, host, COPIED);
    this.dirtyL1.add(index);
    return t;
  }

  /**
   * Make the range read as zeros. Whole clusters become zero clusters (version 3; with no
   * backing file simply unallocated) and their host clusters are freed; the ends of the range
   * are written with zeros.
   */
  discard(offset: number, length: number): void {
    this.checkAccess(offset, length, true);
    const cs = this.clusterSize;
    const end = offset + length;
    for (let at = offset; at < end;) {
      const index = Math.floor(at / cs);
      const clusterEnd = Math.min((index + 1) * cs, this.size);
      const to = Math.min(end, clusterEnd);
      const m = this.lookup(index);
      const readsZero = m.kind === Kind.Zero || (m.kind === Kind.Unallocated && !this.backing);
      if (!readsZero) {
        if (at === index * cs && to === clusterEnd && (this.header.version === 3 || !this.backing)) {
          this.checkReleasable(m, index);
          // Without a backing file an unallocated cluster reads as zeros; with one, only a zero cluster does.
          const l1Index = Math.floor(index / this.l2Entries);
          const t = this.backing ? this.l2ForWrite(l1Index) : this.l2Table(this.l1Entry(l1Index));
          setEntry(t.view, (index % this.l2Entries) * 8, 0, 0, this.backing ? ZERO_FLAG : 0);
          t.dirty = true;
          this.release(m);
        } else {
          this.zeros ??= new Uint8Array(cs);
          this.writeGuest(at, this.zeros.subarray(0, to - at));
        }
      }
      at = to;
    }
  }

  // ---- freeing ----

  /** Host clusters a mapping holds (a compressed cluster's bytes may span two and share them). */
  private heldClusters(m: Mapping): number[] {
    if (m.kind === Kind.Data || (m.kind === Kind.Zero && m.host !== 0)) return [m.host / this.clusterSize];
    if (m.kind !== Kind.Compressed) return [];
    const out: number[] = [];
    for (let c = this.clusterStart(m.host); c < m.host + m.bytes; c += this.clusterSize) out.push(c / this.clusterSize);
    return out;
  }

  /** Before a mapping is replaced: the clusters it holds are counted, so freeing them cannot go below zero. */
  private checkReleasable(m: Mapping, index: number): void {
    for (const c of this.heldClusters(m)) {
      if (this.refcount(c) <= (this.pendingFrees.get(c) ?? 0)) {
        this.fail(`the cluster at ${hex(c * this.clusterSize)} used by guest offset ${hex(index * this.clusterSize)} is not counted in the refcounts; repair the image with qemu-img check -r all`);
      }
    }
  }

  private release(m: Mapping): void {
    for (const c of this.heldClusters(m)) this.pendingFrees.set(c, (this.pendingFrees.get(c) ?? 0) + 1);
    if (m.kind === Kind.Compressed && this.inflated?.host === m.host) this.inflated = null;
  }

  // ---- refcounts ----

  /** A refcount table entry: offset bits 9-63 (a huge one fails the checks as past the end of the file). */
  private refTableEntry(index: number): number {
    return this.refTable.view.getUint32(index * 8) * TWO32 + ((this.refTable.view.getUint32(index * 8 + 4) & 0xfffffe00) >>> 0);
  }

  private refBlock(offset: number): Table {
    const hit = this.blockCache.get(offset);
    if (hit) {
      this.blockCache.delete(offset);
      this.blockCache.set(offset, hit);
      return hit;
    }
    const t = table(new Uint8Array(this.clusterSize));
    this.readExactly(offset, t.data, "a refcount block");
    this.cache(this.blockCache, offset, t, null);
    return t;
  }

  /** The refcount of host cluster `index` (0 where no block covers it). */
  private refcount(index: number): number {
    const block = Math.floor(index / this.refcountsPerBlock);
    if (block >= this.refTableEntries) return 0;
    const offset = this.refTableEntry(block);
    return offset === 0 ? 0 : this.getRefcount(this.refBlock(offset), index % this.refcountsPerBlock);
  }

  private getRefcount(t: Table, i: number): number {
    const bits = this.refcountBits;
    if (bits < 8) return (t.data[(i * bits) >> 3] >> ((i * bits) & 7)) & ((1 << bits) - 1);
    if (bits === 8) return t.data[i];
    if (bits === 16) return t.view.getUint16(i * 2);
    if (bits === 32) return t.view.getUint32(i * 4);
    const hi = t.view.getUint32(i * 8);
    return hi >= 0x200000 ? Number.MAX_SAFE_INTEGER : hi * TWO32 + t.view.getUint32(i * 8 + 4);
  }

  private putRefcount(t: Table, i: number, value: number): void {
    const bits = this.refcountBits;
    if (bits < 8) {
      const byte = (i * bits) >> 3;
      const shift = (i * bits) & 7;
      const mask = ((1 << bits) - 1) << shift;
      t.data[byte] = (t.data[byte] & ~mask) | (value << shift);
    } else if (bits === 8) t.data[i] = value;
    else if (bits === 16) t.view.setUint16(i * 2, value);
    else if (bits === 32) t.view.setUint32(i * 4, value);
    else {
      t.view.setUint32(i * 8, Math.floor(value / TWO32));
      t.view.setUint32(i * 8 + 4, value % TWO32);
    }
    t.dirty = true;
  }

  private setRefcount(index: number, value: number, reserved = index): void {
    if (value < 0) this.fail(`refcount of the cluster at ${hex(index * this.clusterSize)} would drop below 0; repair the image with qemu-img check -r all`);
    if (value > this.maxRefcount) this.fail(`refcount of the cluster at ${hex(index * this.clusterSize)} would overflow its ${this.refcountBits} bits`);
    const t = this.blockFor(Math.floor(index / this.refcountsPerBlock), reserved);
    this.putRefcount(t, index % this.refcountsPerBlock, value);
  }

  /**
   * The refcount block covering block index `block`, made if missing: placed inside the range
   * it covers (all free, as it has no block) and counting itself; `reserved` is the cluster
   * being allocated, which it must not take.
   */
  private blockFor(block: number, reserved: number): Table {
    if (block >= this.refTableEntries) this.growRefcountTable(block + 1, reserved);
    const existing = this.refTableEntry(block);
    if (existing !== 0) return this.refBlock(existing);
    const first = block * this.refcountsPerBlock;
    const at = first === reserved ? first + 1 : first;
    const t = table(new Uint8Array(this.clusterSize), true);
    this.putRefcount(t, at - first, 1);
    const offset = at * this.clusterSize;
    this.refBlocks.add(offset);
    this.cache(this.blockCache, offset, t, null);
    setEntry(this.refTable.view, block * 8, offset, 0);
    this.dirtyRefTable.add(block);
    return t;
  }

  /** A free host cluster, now counted; its offset. Freed clusters are used again before the file grows. */
  private allocateCluster(): number {
    for (let retried = false; ; retried = true) {
      const index = this.findFree();
      if (index >= 0) {
        this.freeHint = index + 1;
        this.setRefcount(index, 1);
        return index * this.clusterSize;
      }
      // Clusters waiting to be freed count once the tables are synced.
      if (retried || this.pendingFrees.size === 0) {
        this.fail(`cannot allocate a cluster: the image would grow past ${this.maxClusters * this.clusterSize} bytes ` +
          `(its virtual size and metadata); it may hold leaked clusters: repair it with qemu-img check -r leaks`);
      }
      this.syncMetadata();
    }
  }

  private findFree(): number {
    const per = this.refcountsPerBlock;
    for (let index = this.freeHint; index < this.maxClusters;) {
      const block = Math.floor(index / per);
      const offset = block < this.refTableEntries ? this.refTableEntry(block) : 0;
      if (offset === 0) return this.unusedMetadataCheck(index);
      const t = this.refBlock(offset);
      const end = Math.min((block + 1) * per, this.maxClusters);
      for (; index < end; index++) {
        if (this.getRefcount(t, index % per) === 0) return this.unusedMetadataCheck(index);
      }
    }
    return -1;
  }

  private unusedMetadataCheck(index: number): number {
    const clash = this.metadataAt(index * this.clusterSize);
    if (clash) this.fail(`${clash} at ${hex(index * this.clusterSize)} has refcount 0; repair the image with qemu-img check -r all`);
    return index;
  }

  /**
   * Move the refcount table to a larger place at the end of the file (rare: the table covers
   * clusterSize² / 16 bytes of file per cluster of it at 16-bit refcounts). Done at once and in
   * order: the new blocks and table, then the header, then the old table freed.
   */
  private growRefcountTable(minEntries: number, reserved: number): void {
    this.syncMetadata();
    const cs = this.clusterSize;
    const per = this.refcountsPerBlock;
    const perCluster = cs / 8;
    const start = Math.max(Math.ceil(this.fileEnd / cs), this.highestCounted() + 1, reserved + 1);
    let tableClusters = Math.ceil(Math.max(minEntries, this.refTableEntries * 2) / perCluster);
    let newBlocks: number[] = [];
    for (;;) {
      const end = start + tableClusters + newBlocks.length;
      const need: number[] = [];
      for (let b = Math.floor(start / per); b <= Math.floor((end - 1) / per); b++) {
        if (b >= this.refTableEntries || this.refTableEntry(b) === 0) need.push(b);
      }
      const entries = Math.max(minEntries, this.refTableEntries * 2, (need.at(-1) ?? 0) + 1);
      const clusters = Math.ceil(entries / perCluster);
      if (need.length === newBlocks.length && clusters === tableClusters) break;
      newBlocks = need;
      tableClusters = clusters;
    }
    const end = start + tableClusters + newBlocks.length;
    if (tableClusters * cs > MAX_REFCOUNT_TABLE_BYTES) this.fail(`cannot grow the refcount table past ${MAX_REFCOUNT_TABLE_BYTES >> 20} MiB: use larger clusters`);
    if (end > this.maxClusters) this.fail(`cannot grow the refcount table: the image would grow past ${this.maxClusters * cs} bytes`);
    const entries = tableClusters * perCluster;
    const newTable = table(new Uint8Array(entries * 8));
    newTable.data.set(this.refTable.data);
    const blocks = new Map<number, Table>();
    newBlocks.forEach((b, i) => {
      const offset = (start + tableClusters + i) * cs;
      blocks.set(b, table(new Uint8Array(cs)));
      setEntry(newTable.view, b * 8, offset, 0);
    });
    for (let c = start; c < end; c++) {
      const b = Math.floor(c / per);
      const t = blocks.get(b) ?? this.refBlock(this.refTableEntry(b));
      this.putRefcount(t, c % per, 1);
    }
    newBlocks.forEach((b, i) => this.writeFile((start + tableClusters + i) * cs, blocks.get(b)!.data));
    this.writeDirtyBlocks();
    this.writeFile(start * cs, newTable.data);
    this.file.flush();
    const ref = new Uint8Array(12);
    const rv = new DataView(ref.buffer);
    rv.setBigUint64(0, BigInt(start * cs));
    rv.setUint32(8, tableClusters);
    this.file.write(HDR_REFCOUNT_TABLE, ref);
    this.file.flush();

    const oldOffset = this.refTableOffset;
    const oldClusters = this.refTableClusters;
    this.refTable = newTable;
    this.refTableOffset = start * cs;
    this.refTableClusters = tableClusters;
    this.refTableEntries = entries;
    newBlocks.forEach((b, i) => {
      const offset = (start + tableClusters + i) * cs;
      this.refBlocks.add(offset);
      this.cache(this.blockCache, offset, blocks.get(b)!, null);
    });
    // The old table's clusters are free now that the header no longer names it.
    for (let i = 0; i < oldClusters; i++) {
      const c = oldOffset / cs + i;
      this.setRefcount(c, this.refcount(c) - 1);
      this.freeHint = Math.min(this.freeHint, c);
    }
  }

  /** The highest cluster index any refcount block covers with a nonzero count, or -1. */
  private highestCounted(): number {
    for (let b = this.refTableEntries - 1; b >= 0; b--) {
      const offset = this.refTableEntry(b);
      if (offset === 0) continue;
      const t = this.refBlock(offset);
      for (let i = this.refcountsPerBlock - 1; i >= 0; i--) if (this.getRefcount(t, i) !== 0) return b * this.refcountsPerBlock + i;
    }
    return -1;
  }

  // ---- caches and syncing ----

  /**
   * Keep `t` in `cache`, evicting the least recently used clean table beyond the limit. Dirty
   * refcount blocks may be written at any time (`evictDirty` null); dirty L2 tables only in
   * order, by syncing everything.
   */
  private cache(cache: Map<number, Table>, offset: number, t: Table, evictDirty: (() => void) | null): void {
    cache.set(offset, t);
    let synced = false;
    while (cache.size > this.cacheTables) {
      let victim: number | undefined;
      for (const [o, v] of cache) {
        if (!v.dirty) {
          victim = o;
          break;
        }
      }
      if (victim === undefined) {
        const [o, v] = cache.entries().next().value as [number, Table];
        if (evictDirty) {
          // Once: a sync that could not run (one is under way) leaves the cache over its limit for now.
          if (synced) return;
          evictDirty();
          synced = true;
          continue;
        }
        this.writeFile(o, v.data);
        victim = o;
      }
      cache.delete(victim);
    }
  }

  private writeDirtyBlocks(): void {
    for (const [o, t] of this.blockCache) {
      if (!t.dirty) continue;
      this.writeFile(o, t.data);
      t.dirty = false;
    }
  }

  /** Refcount blocks, then (once they are durable) the refcount table entries that point to new ones. */
  private writeRefcounts(): void {
    this.writeDirtyBlocks();
    if (this.dirtyRefTable.size === 0) return;
    this.file.flush();
    for (const i of this.dirtyRefTable) this.writeFile(this.refTableOffset + i * 8, this.refTable.data.subarray(i * 8, i * 8 + 8));
    this.dirtyRefTable.clear();
  }

  /** Write every metadata change, in the order that keeps the image consistent at each step (see the top). */
  private syncMetadata(): void {
    if (this.readOnly || this.syncing) return;
    this.syncing = true;
    try {
      this.writeRefcounts();
      const dirtyTables = [...this.l2Cache].filter(([, t]) => t.dirty);
      if (dirtyTables.length > 0 || this.dirtyL1.size > 0) {
        this.file.flush();
        for (const [o, t] of dirtyTables) {
          this.writeFile(o, t.data);
          t.dirty = false;
        }
        if (this.dirtyL1.size > 0) {
          this.file.flush();
          for (const i of this.dirtyL1) this.writeFile(this.l1Offset + i * 8, this.l1.data.subarray(i * 8, i * 8 + 8));
          this.dirtyL1.clear();
        }
      }
      if (this.pendingFrees.size > 0) {
        this.file.flush();
        const frees = [...this.pendingFrees];
        this.pendingFrees.clear();
        for (const [c, times] of frees) {
          this.setRefcount(c, this.refcount(c) - times);
          this.freeHint = Math.min(this.freeHint, c);
        }
        this.writeRefcounts();
      }
    } finally {
      this.syncing = false;
    }
  }

  flush(): void {
    if (this.closed) throw new Error(`${this.label} is closed`);
    if (this.readOnly) return;
    this.syncMetadata();
    this.file.flush();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      if (!this.readOnly) {
        this.syncMetadata();
        this.file.flush();
      }
    } finally {
      try {
        this.backing?.close();
      } finally {
        this.file.close();
      }
    }
  }
}
