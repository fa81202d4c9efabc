// A disk's blocks in a state stream: block migration, for hosts that do not share the disk's
// storage. A disk section carries blocks of one drive, an index and the data it points into:
//
//   u32 drive | u32 block size (65536) | u64 the disk's size in bytes | u32 entries | u32 0
//   entries × 16 bytes, by increasing block | data
//   entry: u32 block | u16 flags (bit 0: all zero, no data) | u16 encoding | u32 length | u32 CRC-32
//
// The disk is cut into blocks of 64 KiB (the last may be shorter), the dirty log's blocks
// (host/disk/dirty-log.ts). A block's data is raw, or deflated when that pays (files; a link is
// faster than deflate). A first round leaves out what reads as zero (the destination's new image
// reads as zeros already); later rounds send the blocks the dirty log names, a block that is
// zero now as an entry without data, and later sections replace what earlier ones said. The
// section's CRC covers its header and index, each entry's CRC its data. A section is put in
// place whole or not at all: everything in it is checked before the first block is written.
import { deflateSync, inflateSync } from "fflate";
import type { DiskBackend } from "../devices/backends";
import { DISK_BLOCK } from "../disk/dirty-log";
import { crc32 } from "./crc32";
import { allZero } from "../util/bytes";
import { StateFormatError, bytesSource, type ByteSource, type SectionRef, type StateWriter } from "./container";

export { DISK_BLOCK };
const HEADER_BYTES = 24;
const ENTRY_BYTES = 16;
const ZERO = 1;
const RAW = 0;
const DEFLATE = 1;
/** Entries a section may have (an index of 1 MiB); a writer starts a new section before. */
export const MAX_DISK_ENTRIES = 65536;
/** Largest section budget a pass accepts: sections stay far below the container's 64 MiB. */
const MAX_SECTION_BUDGET = 32 << 20;
/** Blocks a next() may look at without reading one (bitmap bits that are clear, ranges known zero). */
const LOOKS_PER_STEP = 256;

/**
 * Which blocks a pass sends: those that do not read as zero (a first round, or a disk saved
 * whole), or those a bitmap names (the dirty log's: later rounds and the stop-and-copy), a
 * block that reads as zero then as a zero entry.
 */
export type BlockSelection = { kind: "nonzero" } | { kind: "bitmap"; bitmap: Uint32Array };

/** How a pass is written: deflate level (0: raw), bytes per section (index and data), and a count of the sections written. */
export interface DiskWriting {
  level: number;
  sectionBytes: number;
  written?: { sections: number };
}

/** Over a link: raw, in sections of about 2 MiB (as TO_LINK's 32 chunks of memory). */
export const DISK_TO_LINK: DiskWriting = { level: 0, sectionBytes: 2 << 20 };
/** Into a file: deflated, in sections of about 16 MiB. */
export const DISK_TO_FILE: DiskWriting = { level: 1, sectionBytes: 16 << 20 };

interface EntryOut {
  block: number;
  flags: number;
  encoding: number;
  length: number;
  crc: number;
}


/**
 * One pass over drive `drive` (`disk`, as the source's VM has it) writing the blocks `select`
 * picks as disk sections (at least one, so the other side learns of the drive even when nothing
 * in it is to be sent). Each next() does a bounded amount of work (reads at most one block, or
 * looks at a few hundred it need not read), so the caller can let the VM run between calls.
 */
export class DiskPass {
  /** Entries written (blocks with data, and zero ones). */
  blocks = 0;
  /** Of those, zero entries. */
  zeroBlocks = 0;
  /** Bytes of block data written (as encoded). */
  bytes = 0;
  /** Blocks in the disk. */
  readonly total: number;
  private block = 0;
  private sections = 0;
  private entries: EntryOut[] = [];
  private data: Uint8Array[] = [];
  private dataBytes = 0;
  private readonly scratch = new Uint8Array(DISK_BLOCK);

  constructor(
    private readonly w: StateWriter,
    readonly drive: number,
    private readonly disk: DiskBackend,
    private readonly select: BlockSelection,
    private readonly how: DiskWriting,
  ) {
    if (!Number.isInteger(drive) || drive < 0 || drive > 0xffffffff) throw new RangeError(`drive index ${drive}`);
    if (!(how.sectionBytes > 0 && how.sectionBytes <= MAX_SECTION_BUDGET)) throw new RangeError(`disk sections of ${how.sectionBytes} bytes: 1 to ${MAX_SECTION_BUDGET}`);
    if (disk.size % 512 !== 0 || Math.ceil(disk.size / DISK_BLOCK) > 0xffffffff) throw new RangeError(`a disk of ${disk.size} bytes cannot be sent in blocks`);
    this.total = Math.ceil(disk.size / DISK_BLOCK);
  }

  /** Look at the next blocks, writing a section when one is full and the last at the end; false once the pass is over. */
  next(): boolean {
    if (this.block >= this.total) {
      if (this.entries.length || this.sections === 0) this.flush();
      return false;
    }
    const { select } = this;
    for (let looks = 0; looks < LOOKS_PER_STEP && this.block < this.total; looks++) {
      const b = this.block;
      if (select.kind === "bitmap") {
        const rest = (select.bitmap[b >>> 5] ?? 0) >>> (b & 31);
        if (rest === 0) {
          this.block = (b | 31) + 1; // nothing more in this word
          continue;
        }
        if ((rest & 1) === 0) {
          this.block++;
          continue;
        }
      }
      this.block++;
      const read = this.add(b);
      if (this.full()) this.flush();
      if (read) break;
    }
    return true;
  }

  /** Add block `b` if the selection wants it; true if it was read. */
  private add(b: number): boolean {
    const offset = b * DISK_BLOCK;
    const length = Math.min(DISK_BLOCK, this.disk.size - offset);
    const all = this.select.kind === "bitmap";
    if (this.disk.knownZero?.(offset, length)) {
      if (all) this.push({ block: b, flags: ZERO, encoding: RAW, length: 0, crc: 0 }, null);
      return false;
    }
    const buf = this.scratch.subarray(0, length);
    this.disk.read(offset, buf);
    // Disk blocks are whole sectors: whole words, from offset 0 of a scratch buffer.
    if (allZero(new Uint32Array(buf.buffer, buf.byteOffset, buf.length >>> 2), 0, buf.length >>> 2)) {
      if (all) this.push({ block: b, flags: ZERO, encoding: RAW, length: 0, crc: 0 }, null);
      return true;
    }
    let out: Uint8Array | null = null;
    let encoding = RAW;
    if (this.how.level > 0) {
      const packed = deflateSync(buf, { level: this.how.level as 1 });
      if (packed.length < buf.length) {
        out = packed;
        encoding = DEFLATE;
      }
    }
    out ??= buf.slice(); // the scratch buffer is the next block's
    this.push({ block: b, flags: 0, encoding, length: out.length, crc: crc32(out) }, out);
    return true;
  }

  private push(e: EntryOut, data: Uint8Array | null): void {
    this.entries.push(e);
    if (data) {
      this.data.push(data);
      this.dataBytes += data.length;
    }
  }

  private full(): boolean {
    return this.entries.length >= MAX_DISK_ENTRIES || HEADER_BYTES + this.entries.length * ENTRY_BYTES + this.dataBytes >= this.how.sectionBytes;
  }

  private flush(): void {
    const { entries } = this;
    const index = new Uint8Array(HEADER_BYTES + entries.length * ENTRY_BYTES);
    const v = new DataView(index.buffer);
    v.setUint32(0, this.drive, true);
    v.setUint32(4, DISK_BLOCK, true);
    v.setBigUint64(8, BigInt(this.disk.size), true);
    v.setUint32(16, entries.length, true);
    entries.forEach((e, i) => {
      const at = HEADER_BYTES + i * ENTRY_BYTES;
      v.setUint32(at, e.block, true);
      v.setUint16(at + 4, e.flags, true);
      v.setUint16(at + 6, e.encoding, true);
      v.setUint32(at + 8, e.length, true);
      v.setUint32(at + 12, e.crc, true);
      this.blocks++;
      if (e.flags & ZERO) this.zeroBlocks++;
    });
    this.w.disk(index, this.data);
    this.bytes += this.dataBytes;
    this.entries = [];
    this.data = [];
    this.dataBytes = 0;
    this.sections++;
    if (this.how.written) this.how.written.sections++;
  }
}

/** A whole pass at once (the VM does not run meanwhile: a stop-and-copy); returns the pass for its counts. */
export function writeDisk(w: StateWriter, drive: number, disk: DiskBackend, select: BlockSelection, how: DiskWriting): DiskPass {
  const pass = new DiskPass(w, drive, disk, select, how);
  while (pass.next());
  return pass;
}

/** One entry of a disk section's index, with where its data is in the stream. */
export interface DiskEntry {
  block: number;
  /** All zero: no data. */
  zero: boolean;
  encoding: number;
  /** Offset and length of the data in the stream. */
  offset: number;
  length: number;
  crc: number;
}

/** A disk section's header and index, checked. */
export interface DiskSection {
  drive: number;
  /** The disk's size in bytes (equal to the destination drive's). */
  size: number;
  entries: DiskEntry[];
}

/** Which drive a disk section is for, and the size it gives the disk: read before anything is checked (readDiskIndex checks it all). */
export function diskSectionTarget(payload: Uint8Array): { drive: number; size: number } {
  if (payload.length < HEADER_BYTES) return { drive: -1, size: 0 };
  const v = new DataView(payload.buffer, payload.byteOffset, HEADER_BYTES);
  return { drive: v.getUint32(0, true), size: Number(v.getBigUint64(8, true)) };
}

/**
 * The header and index of a disk section, checked against the destination's drives (`drives[i]`
 * null: drive i is not copied here, its storage is shared): the checksum first, then the drive
 * exists and has the disk's size, the block size is this build's, the blocks lie in the disk in
 * increasing order, and the lengths fit what each entry holds and add up to the section exactly.
 */
export function readDiskIndex(
  head: (length: number) => Uint8Array,
  section: Pick<SectionRef, "offset" | "length" | "crc">,
  drives: readonly ({ readonly size: number } | null | undefined)[],
  what: string,
): DiskSection {
  const bad = (msg: string): never => {
    throw new StateFormatError(`${what}: disk section at byte ${section.offset}: ${msg}`);
  };
  if (section.length < HEADER_BYTES) bad(`${section.length} bytes: too short for its header`);
  const top = head(HEADER_BYTES);
  const count = new DataView(top.buffer, top.byteOffset, HEADER_BYTES).getUint32(16, true);
  if (count > MAX_DISK_ENTRIES) bad(`an index of ${count} entries, more than the ${MAX_DISK_ENTRIES} a section may have (corrupted)`);
  const indexBytes = HEADER_BYTES + count * ENTRY_BYTES;
  if (indexBytes > section.length) bad(`an index of ${count} entries does not fit in ${section.length} bytes (truncated or corrupted)`);
  const index = head(indexBytes);
  if (crc32(index) !== section.crc) bad("its index fails its checksum (corrupted)");
  const v = new DataView(index.buffer, index.byteOffset, indexBytes);
  const drive = v.getUint32(0, true);
  const blockSize = v.getUint32(4, true);
  const size = Number(v.getBigUint64(8, true));
  if (v.getUint32(20, true) !== 0) bad("reserved header bytes are not zero (written by a newer wasmvisor?)");
  if (blockSize !== DISK_BLOCK) bad(`blocks of ${blockSize} bytes; this build reads ${DISK_BLOCK}`);
  if (drive >= drives.length) bad(`it is for drive ${drive}; the VM has ${drives.length} drive${drives.length === 1 ? "" : "s"}`);
  const dest = drives[drive];
  if (!dest) bad(`it is for drive ${drive}, whose disk is not being copied here (shared storage)`);
  if (size !== dest!.size) bad(`drive ${drive} is ${size} bytes at the source, ${dest!.size} bytes here`);
  const blocks = Math.ceil(size / DISK_BLOCK);
  const entries: DiskEntry[] = [];
  let offset = section.offset + indexBytes;
  const end = section.offset + section.length;
  let last = -1;
  for (let i = 0; i < count; i++) {
    const at = HEADER_BYTES + i * ENTRY_BYTES;
    const flags = v.getUint16(at + 4, true);
    const e: DiskEntry = {
      block: v.getUint32(at, true), zero: (flags & ZERO) !== 0, encoding: v.getUint16(at + 6, true),
      length: v.getUint32(at + 8, true), crc: v.getUint32(at + 12, true), offset,
    };
    if (e.block >= blocks) bad(`entry ${i} is for block ${e.block}; drive ${drive} has ${blocks} blocks of ${DISK_BLOCK} bytes`);
    if (e.block <= last) bad(`entry ${i}: blocks out of order or repeated`);
    last = e.block;
    if (flags & ~ZERO) bad(`entry ${i} has unknown flags 0x${flags.toString(16)}`);
    const bytes = Math.min(DISK_BLOCK, size - e.block * DISK_BLOCK);
    if (e.zero ? e.encoding !== RAW || e.length !== 0 : e.encoding === RAW ? e.length !== bytes : e.encoding !== DEFLATE || e.length === 0 || e.length >= bytes) {
      bad(`entry ${i} (block ${e.block}): ${e.length} bytes of encoding ${e.encoding}${e.zero ? " for a zero block" : ""} cannot hold its ${bytes} bytes`);
    }
    offset += e.length;
    if (offset > end) bad(`entry ${i} (block ${e.block}) ends at byte ${offset}, past the section's end at ${end}`);
    entries.push(e);
  }
  if (offset !== end) bad(`its index and the data its entries name take ${offset - section.offset} bytes, the section has ${section.length}`);
  return { drive, size, entries };
}

/**
 * Put a checked section's blocks on `disk` (the destination's copy of its drive): every block's
 * checksum and (deflated) size is checked before the first is written, so a corrupted section
 * writes nothing. Zero entries become discards (a new image's unallocated clusters stay so).
 * Returns the entries applied and the bytes of data written.
 */
export function applyDiskSection(disk: DiskBackend, s: DiskSection, src: ByteSource, what: string): { blocks: number; bytes: number } {
  if (disk.size !== s.size) throw new StateFormatError(`${what}: drive ${s.drive} is ${s.size} bytes at the source; the disk given for it is ${disk.size}`);
  if (disk.readOnly) throw new Error(`${what}: drive ${s.drive}: the disk given for its copy is read-only`);
  const stored: Uint8Array[] = [];
  const scratch = new Uint8Array(DISK_BLOCK + 1);
  for (const e of s.entries) {
    if (e.zero) continue;
    const data = src.read(e.offset, e.length);
    if (crc32(data) !== e.crc) blockFail(what, s, e, "fails its checksum (corrupted)");
    if (e.encoding === DEFLATE) unpack(data, scratch, what, s, e);
    stored.push(data);
  }
  let k = 0, bytes = 0;
  for (const e of s.entries) {
    const offset = e.block * DISK_BLOCK;
    if (e.zero) {
      disk.discard(offset, Math.min(DISK_BLOCK, s.size - offset));
      continue;
    }
    const data = stored[k++]!;
    const raw = e.encoding === DEFLATE ? unpack(data, scratch, what, s, e) : data;
    disk.write(offset, raw);
    bytes += raw.length;
  }
  return { blocks: s.entries.length, bytes };
}

/** A disk section that came over a link, checked and put on `disks[its drive]`: readDiskIndex, then applyDiskSection. */
export function receiveDiskSection(
  disks: readonly (DiskBackend | null | undefined)[],
  payload: Uint8Array,
  crc: number,
  what: string,
): { drive: number; blocks: number; bytes: number } {
  const s = readDiskIndex((n) => payload.subarray(0, n), { offset: 0, length: payload.length, crc }, disks, what);
  return { drive: s.drive, ...applyDiskSection(disks[s.drive]!, s, bytesSource(payload), what) };
}

function blockFail(what: string, s: DiskSection, e: DiskEntry, msg: string): never {
  throw new StateFormatError(`${what}: drive ${s.drive}, block ${e.block} (disk offset ${e.block * DISK_BLOCK}) ${msg}; nothing of its section was written`);
}

/** A deflated block, inflated into `scratch` and its size checked. */
function unpack(data: Uint8Array, scratch: Uint8Array, what: string, s: DiskSection, e: DiskEntry): Uint8Array {
  const expected = Math.min(DISK_BLOCK, s.size - e.block * DISK_BLOCK);
  // One byte of room more than expected: a stream that inflates to more is seen, not cut short.
  let out: Uint8Array;
  try {
    out = inflateSync(data, { out: scratch.subarray(0, expected + 1) });
  } catch (err) {
    return blockFail(what, s, e, `does not inflate: ${(err as Error).message}`);
  }
  if (out.length !== expected) blockFail(what, s, e, `inflates to ${out.length} bytes, not ${expected}`);
  return out;
}
