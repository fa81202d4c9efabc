// Guest RAM in a state stream. A memory section is an index and the data it points into:
//
//   u32 pages per chunk (16) | u32 entries | entries × 20 bytes | data
//   entry: u32 chunk | u16 pages in it | u16 of those, all-zero | u32 encoding | u32 length | u32 CRC-32
//
// RAM is cut into chunks of 16 pages (64 KiB). An entry carries some pages of one chunk: the
// ones its `pages` bits name, the all-zero ones without data, the others deflated together (or
// raw, when deflating does not pay). A snapshot leaves out the pages that are all zero (a
// restored VM starts with zeroed RAM); a migration round sends the pages that changed, zero or
// not, and later sections replace what earlier ones said. The section's CRC covers its index;
// each entry's CRC its data, checked when the data is used, so a restore need not read the
// whole memory before the VM runs.
import { deflateSync, inflateSync } from "fflate";
import { crc32 } from "./crc32";
import { popcount } from "../util/bits";
import { allZero } from "../util/bytes";
import { StateFormatError, bytesSource, type ByteSource, type SectionRef } from "./container";

export const PAGE = 4096;
export const CHUNK_PAGES = 16;
const CHUNK_BYTES = PAGE * CHUNK_PAGES;
const INDEX_HEADER = 8;
const ENTRY_BYTES = 20;
const RAW = 0;
const DEFLATE = 1;

/** One entry of a memory section's index, with where its data is in the stream. */
export interface ChunkEntry {
  chunk: number;
  /** Bit i: page i of the chunk is carried. */
  pages: number;
  /** Bit i: carried page i is all zero (no data). */
  zeros: number;
  encoding: number;
  /** Offset and length of the data in the stream. */
  offset: number;
  length: number;
  crc: number;
}

/**
 * Which pages to write: those that are not all zero (a snapshot; `within`: only these can be, the
 * others are known to be zero), or those a bitmap names (a migration round).
 */
export type PageSelection = { kind: "nonzero"; within?: Uint32Array } | { kind: "bitmap"; bitmap: Uint32Array };


/**
 * Lays out memory sections of `ram` (guest RAM, from guest-physical 0x80000000) chunk by chunk,
 * so a caller can let the VM run between chunks; take() gives a section's index and data for
 * StateWriter.memory() and starts the next. `level` is deflate's (1 is fast, 0 stores raw).
 */
export class MemoryEncoder {
  readonly chunks: number;
  private readonly words: Uint32Array;
  private readonly isZero: (page: number) => boolean;
  private readonly totalPages: number;
  private entries: Omit<ChunkEntry, "offset">[] = [];
  private data: Uint8Array[] = [];
  private carried = 0;
  /** Bytes of data in the section being laid out. */
  dataBytes = 0;
  private readonly scratch = new Uint8Array(CHUNK_BYTES);

  /**
   * `isZero` tells whether a RAM page is all zero (Core.ramPageIsZero: the core's scan is much
   * faster than JavaScript's over shared memory); by default the encoder looks itself.
   */
  constructor(private readonly ram: Uint8Array, private readonly select: PageSelection, private readonly level = 1, isZero?: (page: number) => boolean) {
    if (ram.byteOffset % 4 !== 0 || ram.length % PAGE !== 0) throw new Error("guest RAM must be whole, aligned pages");
    this.words = new Uint32Array(ram.buffer, ram.byteOffset, ram.length / 4);
    this.isZero = isZero ?? ((page) => allZero(this.words, page * (PAGE / 4), PAGE / 4));
    this.totalPages = ram.length / PAGE;
    this.chunks = Math.ceil(this.totalPages / CHUNK_PAGES);
  }

  /** Entries in the section being laid out. */
  get pending(): number {
    return this.entries.length;
  }

  /** Add chunk `chunk`'s selected pages, as they are now. */
  add(chunk: number): void {
    const { select, scratch, ram } = this;
    const first = chunk * CHUNK_PAGES;
    const n = Math.min(CHUNK_PAGES, this.totalPages - first);
    // A chunk is half a bitmap word: none of its pages picked, nothing to look at.
    const bits = select.kind === "bitmap" ? select.bitmap : select.within;
    if (bits && ((bits[first >>> 5]! >>> (first & 31)) & 0xffff) === 0) return;
    let pages = 0, zeros = 0, bytes = 0;
    for (let i = 0; i < n; i++) {
      const page = first + i;
      if (bits && ((bits[page >>> 5]! >>> (page & 31)) & 1) === 0) continue;
      const zero = this.isZero(page);
      if (zero && select.kind === "nonzero") continue;
      pages |= 1 << i;
      if (zero) {
        zeros |= 1 << i;
        continue;
      }
      scratch.set(ram.subarray(page * PAGE, (page + 1) * PAGE), bytes);
      bytes += PAGE;
    }
    if (pages === 0) return;
    this.carried += popcount(pages);
    let encoding = RAW;
    let out = scratch.slice(0, bytes);
    if (bytes > 0 && this.level > 0) {
      const packed = deflateSync(out, { level: this.level as 1 });
      if (packed.length < bytes) {
        encoding = DEFLATE;
        out = packed;
      }
    }
    this.entries.push({ chunk, pages, zeros, encoding, length: out.length, crc: crc32(out) });
    if (out.length) this.data.push(out);
    this.dataBytes += out.length;
  }

  /** The section laid out so far (its index and data), and how many pages it carries. */
  take(): { index: Uint8Array; data: Uint8Array[]; pages: number } {
    const { entries } = this;
    const index = new Uint8Array(INDEX_HEADER + entries.length * ENTRY_BYTES);
    const v = new DataView(index.buffer);
    v.setUint32(0, CHUNK_PAGES, true);
    v.setUint32(4, entries.length, true);
    entries.forEach((e, i) => {
      const at = INDEX_HEADER + i * ENTRY_BYTES;
      v.setUint32(at, e.chunk, true);
      v.setUint16(at + 4, e.pages, true);
      v.setUint16(at + 6, e.zeros, true);
      v.setUint32(at + 8, e.encoding, true);
      v.setUint32(at + 12, e.length, true);
      v.setUint32(at + 16, e.crc, true);
    });
    const out = { index, data: this.data, pages: this.carried };
    this.entries = [];
    this.data = [];
    this.carried = 0;
    this.dataBytes = 0;
    return out;
  }
}

/**
 * The index of a memory section, checked against a RAM of `ramPages` pages: the chunks exist,
 * the pages are inside RAM, the lengths add up to the section exactly and fit what they hold.
 */
export function readMemoryIndex(head: (length: number) => Uint8Array, section: Pick<SectionRef, "offset" | "length" | "crc">, ramPages: number, what: string): ChunkEntry[] {
  const bad = (msg: string): never => {
    throw new StateFormatError(`${what}: memory section at byte ${section.offset}: ${msg}`);
  };
  if (section.length < INDEX_HEADER) bad("too short for its index");
  const top = head(INDEX_HEADER);
  const tv = new DataView(top.buffer, top.byteOffset, INDEX_HEADER);
  if (tv.getUint32(0, true) !== CHUNK_PAGES) bad(`chunks of ${tv.getUint32(0, true)} pages; this build reads ${CHUNK_PAGES}`);
  const count = tv.getUint32(4, true);
  const chunks = Math.ceil(ramPages / CHUNK_PAGES);
  if (count > chunks) bad(`an index of ${count} entries for a RAM of ${chunks} chunks (corrupted)`);
  const indexBytes = INDEX_HEADER + count * ENTRY_BYTES;
  if (indexBytes > section.length) bad(`an index of ${count} entries does not fit in ${section.length} bytes (corrupted)`);
  const index = head(indexBytes);
  if (crc32(index) !== section.crc) bad("its index fails its checksum (corrupted)");
  const v = new DataView(index.buffer, index.byteOffset, indexBytes);
  const entries: ChunkEntry[] = [];
  let offset = section.offset + indexBytes;
  let lastChunk = -1;
  for (let i = 0; i < count; i++) {
    const at = INDEX_HEADER + i * ENTRY_BYTES;
    const e: ChunkEntry = {
      chunk: v.getUint32(at, true), pages: v.getUint16(at + 4, true), zeros: v.getUint16(at + 6, true),
      encoding: v.getUint32(at + 8, true), length: v.getUint32(at + 12, true), crc: v.getUint32(at + 16, true), offset,
    };
    if (e.chunk >= chunks) bad(`entry ${i} is for chunk ${e.chunk}; this VM's RAM has ${chunks}`);
    if (e.chunk <= lastChunk) bad(`entry ${i}: chunks out of order`);
    lastChunk = e.chunk;
    const inRam = Math.min(CHUNK_PAGES, ramPages - e.chunk * CHUNK_PAGES);
    if (e.pages === 0 || e.pages >>> inRam !== 0) bad(`entry ${i} names pages outside RAM or none`);
    if ((e.zeros & ~e.pages) !== 0) bad(`entry ${i} has zero pages it does not carry`);
    const dataBytes = popcount(e.pages & ~e.zeros) * PAGE;
    if (e.encoding === RAW ? e.length !== dataBytes : e.encoding !== DEFLATE || dataBytes === 0 || e.length === 0 || e.length >= dataBytes) {
      bad(`entry ${i}: ${e.length} bytes of encoding ${e.encoding} cannot hold ${dataBytes / PAGE} pages`);
    }
    offset += e.length;
    entries.push(e);
  }
  if (offset !== section.offset + section.length) bad(`its entries hold ${offset - section.offset} bytes, the section ${section.length}`);
  return entries;
}

/** The non-zero pages of an entry, concatenated, its CRC and size checked. */
export function chunkData(src: ByteSource, e: ChunkEntry, what: string): Uint8Array {
  const stored = src.read(e.offset, e.length);
  const fail = (msg: string): never => {
    throw new StateFormatError(`${what}: memory chunk ${e.chunk} (guest-physical 0x${(0x80000000 + e.chunk * CHUNK_BYTES).toString(16)}) ${msg}`);
  };
  if (crc32(stored) !== e.crc) fail("fails its checksum (corrupted)");
  if (e.encoding === RAW) return stored;
  const expected = popcount(e.pages & ~e.zeros) * PAGE;
  // One byte of room more than expected: a stream that inflates to more is seen, not cut short.
  let out: Uint8Array;
  try {
    out = inflateSync(stored, { out: new Uint8Array(expected + 1) });
  } catch (err) {
    return fail(`does not inflate: ${(err as Error).message}`);
  }
  if (out.length !== expected) fail(`inflates to ${out.length} bytes, not ${expected}`);
  return out;
}

/** Put an entry's pages into `ram` (RAM as a VM that has not run yet: no caches to keep coherent). */
export function applyChunk(ram: Uint8Array, e: ChunkEntry, data: Uint8Array): void {
  chunkPages(e, data, (page, content) => {
    if (content) ram.set(content, page * PAGE);
    else ram.fill(0, page * PAGE, (page + 1) * PAGE);
  });
}

/**
 * A memory section that came whole over a link: its index checked first, then each chunk's
 * entry with its data, checked (and inflated) as it is reached.
 */
export function* sectionChunks(payload: Uint8Array, crc: number, ramPages: number, what: string): Generator<[ChunkEntry, Uint8Array]> {
  const src = bytesSource(payload);
  for (const e of readMemoryIndex((n) => payload.subarray(0, n), { offset: 0, length: payload.length, crc }, ramPages, what)) yield [e, chunkData(src, e, what)];
}

/** A PCPY section's payload: a bitmap of RAM pages (bit i: RAM page i), little-endian words. */
export function pageListPayload(bitmap: Uint32Array): Uint8Array {
  const out = new Uint8Array(bitmap.length * 4);
  const v = new DataView(out.buffer);
  bitmap.forEach((w, i) => v.setUint32(i * 4, w, true));
  return out;
}

/** A PCPY section's bitmap, checked against a RAM of `ramPages` pages (no bit past its end). */
export function readPageList(payload: Uint8Array, ramPages: number, what: string): Uint32Array {
  const words = Math.ceil(ramPages / 32);
  if (payload.length !== words * 4) throw new StateFormatError(`${what}: the list of pages still to come is ${payload.length} bytes, not ${words * 4} for ${ramPages} pages`);
  const v = new DataView(payload.buffer, payload.byteOffset, payload.length);
  const bitmap = Uint32Array.from({ length: words }, (_, i) => v.getUint32(i * 4, true));
  if (ramPages % 32 && bitmap[words - 1]! >>> (ramPages % 32)) throw new StateFormatError(`${what}: the list of pages still to come names pages past the end of RAM`);
  return bitmap;
}

/** Each page a chunk carries, with its content (null: a zero page), from its checked data (chunkData). */
export function chunkPages(e: ChunkEntry, data: Uint8Array, each: (page: number, content: Uint8Array | null) => void): void {
  let at = 0;
  for (let i = 0; i < CHUNK_PAGES; i++) {
    if (!((e.pages >>> i) & 1)) continue;
    if ((e.zeros >>> i) & 1) each(e.chunk * CHUNK_PAGES + i, null);
    else {
      each(e.chunk * CHUNK_PAGES + i, data.subarray(at, at + PAGE));
      at += PAGE;
    }
  }
}
