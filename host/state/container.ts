// The container of a VM state stream: what snapshots, live migration and moves between pCPUs
// all write and read. A 16-byte header (magic, format version), then sections, each a 16-byte
// header (tag, CRC-32 of its checked bytes, length) and its payload, ending with an END section
// that counts the sections before it. A reader that meets a truncated, corrupted or foreign
// stream says so and what it expected; nothing here knows what the sections mean.
import { crc32 } from "./crc32";
import type { ByteFile } from "../disk/byte-file";

/** "WVSTATE" and a newline: a stream mangled as text (CRLF) fails the magic at once. */
export const STATE_MAGIC = new Uint8Array([0x57, 0x56, 0x53, 0x54, 0x41, 0x54, 0x45, 0x0a]);
/** The layout of the container and of every section this build writes. */
export const STATE_FORMAT_VERSION = 1;
export const HEADER_BYTES = 16;
export const SECTION_HEADER_BYTES = 16;
/** No section but memory is anywhere near this (disk sections stay well below it); a length beyond it is corruption, not data. */
const MAX_SMALL_SECTION = 64 << 20;
/** Memory sections: at most all of a 4 GiB memory, raw, with its index. */
const MAX_MEMORY_SECTION = 2 ** 32 + (64 << 20);
/**
 * Sections a stored stream may have: a snapshot writes a handful plus a memory section per
 * 256 chunks of RAM twice at most; far more is a crafted file that would only cost memory.
 */
const MAX_SECTIONS = 4096;

/** Section tags, four ASCII characters each. */
export const TAGS = {
  /** The VM's configuration, as a definition (JSON). */
  config: "CONF",
  /** Every hart's registers and CSRs by name, and the VM-wide core fields (JSON). */
  cpu: "CPU ",
  /** Devices, built-in SBI, bandwidth buckets, boot layout, DTB (JSON). */
  machine: "MACH",
  /** The boot ROM, up to its last byte that is not zero. */
  rom: "ROM ",
  /** Guest RAM pages (see memory.ts); a stream may carry several, later pages replacing earlier. */
  memory: "MEM ",
  /** Post-copy: the RAM pages still to come after the VM runs at the destination (a bitmap, see memory.ts). */
  postcopy: "PCPY",
  /** Blocks of one disk (see disk.ts): block migration; later blocks replace earlier ones. */
  disk: "DISK",
  end: "END ",
} as const;
export type SectionTag = (typeof TAGS)[keyof typeof TAGS];
const KNOWN = new Set<string>(Object.values(TAGS));

/** A stream that is not a state this build can read; the message says why and what to do. */
export class StateFormatError extends Error {}

function tagNumber(tag: string): number {
  return (tag.charCodeAt(0) | (tag.charCodeAt(1) << 8) | (tag.charCodeAt(2) << 16) | (tag.charCodeAt(3) << 24)) >>> 0;
}
function tagText(n: number): string {
  const s = String.fromCharCode(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24);
  return /^[\x20-\x7e]{4}$/.test(s) ? JSON.stringify(s) : `0x${n.toString(16)}`;
}

export function streamHeader(): Uint8Array {
  const h = new Uint8Array(HEADER_BYTES);
  h.set(STATE_MAGIC);
  new DataView(h.buffer).setUint32(8, STATE_FORMAT_VERSION, true);
  return h;
}

/** A section's header; `crc` covers the payload (memory and disk sections: their index only). */
export function sectionHeader(tag: SectionTag, length: number, crc: number): Uint8Array {
  const h = new Uint8Array(SECTION_HEADER_BYTES);
  const v = new DataView(h.buffer);
  v.setUint32(0, tagNumber(tag), true);
  v.setUint32(4, crc, true);
  v.setBigUint64(8, BigInt(length), true);
  return h;
}

/** Writes a stream to `sink` in order: sections, then end(). */
export class StateWriter {
  private sections = 0;
  /** Bytes written so far. */
  bytes = 0;

  constructor(private readonly sink: (chunk: Uint8Array) => void) {
    this.put(streamHeader());
  }

  private put(chunk: Uint8Array): void {
    this.sink(chunk);
    this.bytes += chunk.length;
  }

  /** A section whose whole payload is checked by its CRC. */
  section(tag: Exclude<SectionTag, "MEM " | "DISK" | "END ">, payload: Uint8Array): void {
    this.put(sectionHeader(tag, payload.length, crc32(payload)));
    this.put(payload);
    this.sections++;
  }

  /** A JSON section. */
  json(tag: "CONF" | "CPU " | "MACH", value: unknown): void {
    this.section(tag, new TextEncoder().encode(JSON.stringify(value)));
  }

  /** A memory section already laid out (memory.ts): its index's CRC, then index and data. */
  memory(index: Uint8Array, data: readonly Uint8Array[]): void {
    this.indexed(TAGS.memory, index, data);
  }

  /** A disk section already laid out (disk.ts): its index's CRC, then index and data. */
  disk(index: Uint8Array, data: readonly Uint8Array[]): void {
    this.indexed(TAGS.disk, index, data);
  }

  private indexed(tag: "MEM " | "DISK", index: Uint8Array, data: readonly Uint8Array[]): void {
    const length = index.length + data.reduce((n, d) => n + d.length, 0);
    this.put(sectionHeader(tag, length, crc32(index)));
    this.put(index);
    for (const d of data) this.put(d);
    this.sections++;
  }

  /** A section as a stream parser handed it over, unchanged. */
  copy(s: ParsedSection): void {
    this.put(sectionHeader(s.tag, s.payload.length, s.crc));
    this.put(s.payload);
    this.sections++;
  }

  end(): void {
    const payload = new Uint8Array(8);
    new DataView(payload.buffer).setUint32(0, this.sections, true);
    this.put(sectionHeader(TAGS.end, 8, crc32(payload)));
    this.put(payload);
  }
}

/** Where a section is in a stream. */
export interface SectionRef {
  tag: SectionTag;
  /** Offset of its payload. */
  offset: number;
  length: number;
  crc: number;
}

/** Random access to a stored stream (a snapshot file, or bytes in memory). */
export interface ByteSource {
  readonly size: number;
  /** Exactly `length` bytes from `offset` (the caller checked the range). */
  read(offset: number, length: number): Uint8Array;
  close(): void;
}

/** A ByteSource over a file with positional reads (a snapshot on disk); `what` names it in messages. */
export function fileSource(file: ByteFile, what: string): ByteSource {
  const size = file.size();
  return {
    size,
    read(offset, length) {
      const out = new Uint8Array(length);
      if (file.read(offset, out) < length) throw new StateFormatError(`${what} ${file.name}: shorter than its ${size} bytes (did it change while being read?)`);
      return out;
    },
    close: () => file.close(),
  };
}

/** A ByteSource over bytes in memory. */
export function bytesSource(bytes: Uint8Array): ByteSource {
  return { size: bytes.length, read: (offset, length) => bytes.subarray(offset, offset + length), close: () => {} };
}

/** Check the stream header: the magic, then the version. */
export function checkHeader(h: Uint8Array, what: string): void {
  if (h.length < HEADER_BYTES || STATE_MAGIC.some((b, i) => h[i] !== b)) {
    throw new StateFormatError(`${what} is not a wasmvisor VM state (no WVSTATE header)`);
  }
  const version = new DataView(h.buffer, h.byteOffset, HEADER_BYTES).getUint32(8, true);
  if (version !== STATE_FORMAT_VERSION) {
    throw new StateFormatError(`${what} has state format version ${version}; this build reads version ${STATE_FORMAT_VERSION} only`);
  }
}

/** Parse a section header; throws on an unknown tag or an impossible length. */
export function parseSectionHeader(h: Uint8Array, offset: number, what: string): Omit<SectionRef, "offset"> {
  const v = new DataView(h.buffer, h.byteOffset, SECTION_HEADER_BYTES);
  const n = v.getUint32(0, true);
  const tag = String.fromCharCode(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24);
  if (!KNOWN.has(tag)) throw new StateFormatError(`${what}: unknown section ${tagText(n)} at byte ${offset} (corrupted, or written by a newer wasmvisor)`);
  const length = Number(v.getBigUint64(8, true));
  const max = tag === TAGS.memory ? MAX_MEMORY_SECTION : tag === TAGS.end ? 8 : MAX_SMALL_SECTION;
  if (length > max || (tag === TAGS.end && length !== 8)) throw new StateFormatError(`${what}: section ${tagText(n)} at byte ${offset} claims ${length} bytes (corrupted)`);
  return { tag: tag as SectionTag, crc: v.getUint32(4, true), length };
}

/** The section count an END payload declares. */
export function endCount(payload: Uint8Array): number {
  return new DataView(payload.buffer, payload.byteOffset, 8).getUint32(0, true);
}

/**
 * The sections of a stored stream, found by their headers alone (payloads are not read, so a
 * large memory section costs nothing here): the stream must be whole, end with END, declare as
 * many sections as it has, and have nothing after it.
 */
export function listSections(src: ByteSource, what: string): SectionRef[] {
  const out: SectionRef[] = [];
  for (let s = firstSection(src, what); ; s = sectionAt(src, s.offset + s.length, what)) {
    if (s.tag === TAGS.end) {
      const payload = checkedPayload(src, s, what);
      if (endCount(payload) !== out.length) throw new StateFormatError(`${what}: END counts ${endCount(payload)} sections, the stream has ${out.length} (corrupted)`);
      if (s.offset + 8 !== src.size) throw new StateFormatError(`${what} has ${src.size - s.offset - 8} bytes after its END section (corrupted, or two states joined)`);
      return out;
    }
    out.push(s);
    if (out.length > MAX_SECTIONS) throw new StateFormatError(`${what} has more than ${MAX_SECTIONS} sections (corrupted, or not written by wasmvisor)`);
  }
}

/**
 * The first section of a stored stream, its header and the stream's checked as listSections
 * checks them, without looking further: what a reader needs when it wants that section alone
 * (the configuration, to admit a VM) and the whole stream is checked later.
 */
export function firstSection(src: ByteSource, what: string): SectionRef {
  if (src.size < HEADER_BYTES) throw new StateFormatError(`${what} is ${src.size} bytes: too short to be a VM state`);
  checkHeader(src.read(0, HEADER_BYTES), what);
  return sectionAt(src, HEADER_BYTES, what);
}

// The section whose header is at byte `at`, all of it inside the stream.
function sectionAt(src: ByteSource, at: number, what: string): SectionRef {
  if (at + SECTION_HEADER_BYTES > src.size) throw new StateFormatError(`${what} is truncated at byte ${src.size} (no END section): the save did not finish`);
  const h = parseSectionHeader(src.read(at, SECTION_HEADER_BYTES), at, what);
  const offset = at + SECTION_HEADER_BYTES;
  if (offset + h.length > src.size) throw new StateFormatError(`${what} is truncated: section ${JSON.stringify(h.tag)} needs ${h.length} bytes from byte ${offset}, the stream ends at ${src.size}`);
  return { ...h, offset };
}

/** A section's payload, its CRC checked. */
export function checkedPayload(src: ByteSource, s: SectionRef, what: string): Uint8Array {
  const payload = src.read(s.offset, s.length);
  if (crc32(payload) !== s.crc) throw new StateFormatError(`${what}: section ${JSON.stringify(s.tag)} at byte ${s.offset} fails its checksum (corrupted)`);
  return payload;
}

/** A JSON section's value, checksum verified. */
export function jsonPayload(src: ByteSource, s: SectionRef, what: string): unknown {
  const payload = checkedPayload(src, s, what);
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(payload));
  } catch {
    throw new StateFormatError(`${what}: section ${JSON.stringify(s.tag)} is not valid JSON`);
  }
}

/** A section as a stream parser hands it over (payload whole; its CRC checked unless it is memory or disk, whose CRC covers their index). */
export interface ParsedSection {
  tag: SectionTag;
  payload: Uint8Array;
  crc: number;
}

/**
 * Reads a state stream as it arrives (a migration): push() what came, get back the sections
 * completed, each checked as listSections and checkedPayload check a stored one. A section may
 * be at most `maxSection` bytes (a peer must not make this side buffer without bound), and
 * nothing may follow END.
 */
export class StateStreamParser {
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private started = false;
  private sections = 0;
  private offset = 0;
  ended = false;

  constructor(private readonly what: string, public maxSection = 64 << 20) {}

  push(chunk: Uint8Array): ParsedSection[] {
    if (this.ended && chunk.length) throw new StateFormatError(`${this.what}: data after the END section`);
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    const out: ParsedSection[] = [];
    for (;;) {
      if (!this.started) {
        if (this.pendingBytes < HEADER_BYTES) return out;
        checkHeader(this.take(HEADER_BYTES), this.what);
        this.started = true;
        continue;
      }
      if (this.ended || this.pendingBytes < SECTION_HEADER_BYTES) {
        if (this.ended && this.pendingBytes) throw new StateFormatError(`${this.what}: data after the END section`);
        return out;
      }
      const head = this.peek(SECTION_HEADER_BYTES);
      const h = parseSectionHeader(head, this.offset, this.what);
      if (h.length > this.maxSection) throw new StateFormatError(`${this.what}: section ${JSON.stringify(h.tag)} of ${h.length} bytes is larger than the ${this.maxSection} a stream may send at once`);
      if (this.pendingBytes < SECTION_HEADER_BYTES + h.length) return out;
      this.take(SECTION_HEADER_BYTES);
      const payload = this.take(h.length);
      if (h.tag !== TAGS.memory && h.tag !== TAGS.disk) checkedPayload(bytesSource(payload), { ...h, offset: 0 }, this.what);
      if (h.tag === TAGS.end) {
        if (endCount(payload) !== this.sections) throw new StateFormatError(`${this.what}: END counts ${endCount(payload)} sections, the stream had ${this.sections} (corrupted)`);
        this.ended = true;
      } else this.sections++;
      out.push({ tag: h.tag, payload, crc: h.crc });
    }
  }

  private peek(n: number): Uint8Array {
    if (this.pending[0]!.length >= n) return this.pending[0]!.subarray(0, n);
    return this.gather(n, false);
  }

  private take(n: number): Uint8Array {
    if (n === 0) return new Uint8Array(0); // an empty section's payload (nothing may be pending)
    this.offset += n;
    this.pendingBytes -= n;
    const first = this.pending[0]!;
    if (first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.pending.shift();
      else this.pending[0] = first.subarray(n);
      return out;
    }
    return this.gather(n, true);
  }

  private gather(n: number, consume: boolean): Uint8Array {
    const out = new Uint8Array(n);
    let at = 0, i = 0;
    while (at < n) {
      const c = this.pending[i]!;
      const m = Math.min(c.length, n - at);
      out.set(c.subarray(0, m), at);
      at += m;
      if (consume) {
        if (m === c.length) this.pending.shift();
        else this.pending[0] = c.subarray(m);
      } else i++;
    }
    return out;
  }
}
