// What Linux's /proc says about this process's memory, for the memory suite: resident set size,
// page tables, and which 4 KiB pages of a WebAssembly.Memory are resident (/proc/self/pagemap).
import { closeSync, openSync, readFileSync, readSync } from "node:fs";
import { randomBytes } from "node:crypto";

export const PAGE_SIZE = 4096;
const PAGEMAP_ENTRY = 8;
const PAGEMAP_PRESENT = 1n << 63n;

export interface Mapping {
  start: number;
  end: number;
  perms: string;
  /** Backing file or [heap]/[stack]...; "" for anonymous memory. */
  path: string;
}

/** Parse /proc/<pid>/maps. Addresses are below 2^47 on x86-64 and arm64, so numbers are exact. */
export function parseMaps(text: string): Mapping[] {
  const out: Mapping[] = [];
  for (const line of text.split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (m) out.push({ start: parseInt(m[1], 16), end: parseInt(m[2], 16), perms: m[3], path: m[4] });
  }
  return out;
}

/** A "Name:   1234 kB" field of /proc/<pid>/status, in bytes. */
export function statusField(text: string, name: string): number {
  const m = new RegExp(`^${name}:\\s+(\\d+) kB$`, "m").exec(text);
  if (!m) throw new Error(`/proc status has no ${name} field`);
  return Number(m[1]) * 1024;
}

/** The Rss of the mapping starting at `start` in /proc/<pid>/smaps text, in bytes. */
export function smapsRss(text: string, start: number): number {
  const at = text.search(new RegExp(`^${start.toString(16).padStart(8, "0")}-`, "m"));
  const m = at < 0 ? null : /^Rss:\s+(\d+) kB$/m.exec(text.slice(at));
  if (!m) throw new Error(`no mapping at 0x${start.toString(16)} in smaps`);
  return Number(m[1]) * 1024;
}

/** How many entries of a pagemap extract have the present bit. */
export function countPresent(pagemap: Uint8Array): number {
  const view = new DataView(pagemap.buffer, pagemap.byteOffset, pagemap.byteLength);
  let n = 0;
  for (let i = 0; i + PAGEMAP_ENTRY <= pagemap.byteLength; i += PAGEMAP_ENTRY) {
    if (view.getBigUint64(i, true) & PAGEMAP_PRESENT) n++;
  }
  return n;
}

/** 4 KiB pages holding a non-zero byte: a lower bound of the pages a guest has touched. */
export function countNonZeroPages(bytes: Uint8Array): number {
  const words = new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >> 2);
  const perPage = PAGE_SIZE >> 2;
  let n = 0;
  for (let p = 0; p < words.length; p += perPage) {
    for (let i = p; i < p + perPage; i++) {
      if (words[i] !== 0) { n++; break; }
    }
  }
  return n;
}

/** This process's resident set and page tables, in bytes. */
export function processMemory(): { rss: number; pageTables: number } {
  const status = readFileSync("/proc/self/status", "utf8");
  return { rss: statusField(status, "VmRSS"), pageTables: statusField(status, "VmPTE") };
}

/** Resident 4 KiB pages in [addr, addr + length) of this process. */
export function residentPages(addr: number, length: number): number {
  const fd = openSync("/proc/self/pagemap", "r");
  try {
    const buf = Buffer.alloc((length / PAGE_SIZE) * PAGEMAP_ENTRY);
    const got = readSync(fd, buf, 0, buf.length, (addr / PAGE_SIZE) * PAGEMAP_ENTRY);
    if (got !== buf.length) throw new Error(`short read from /proc/self/pagemap (${got} of ${buf.length} bytes)`);
    return countPresent(buf);
  } finally {
    closeSync(fd);
  }
}

/**
 * Resident bytes of a WebAssembly.Memory: below `ramStart`, and in [ramStart, ramStart + ramLength).
 * Pagemap's present bit is also set where only the shared zero page is mapped (read, never
 * written), which Rss leaves out; so the RAM figure is capped by the mapping's Rss less the pages
 * present outside RAM, and never overstates what is resident. `probeOffset` as for
 * locateWasmMemory, outside RAM.
 */
export function wasmMemoryResidency(memory: WebAssembly.Memory, ramStart: number, ramLength: number, probeOffset: number): { belowRam: number; ram: number } {
  const base = locateWasmMemory(memory, probeOffset);
  const bytes = (start: number, length: number) => residentPages(base + start, length) * PAGE_SIZE;
  const ram = bytes(ramStart, ramLength);
  const outsideRam = bytes(0, memory.buffer.byteLength) - ram;
  const rss = smapsRss(readFileSync("/proc/self/smaps", "utf8"), base);
  return { belowRam: bytes(0, ramStart), ram: Math.min(ram, rss - outsideRam) };
}

/**
 * The virtual address of `memory`'s bytes in this process. V8 maps a WebAssembly.Memory as one
 * read-write anonymous mapping of exactly its size between guard regions; when several qualify,
 * the one that holds a random marker written at `probeOffset` (a byte range the caller may
 * overwrite) is it, read back through /proc/self/mem.
 */
export function locateWasmMemory(memory: WebAssembly.Memory, probeOffset: number): number {
  const size = memory.buffer.byteLength;
  const candidates = parseMaps(readFileSync("/proc/self/maps", "utf8"))
    .filter((m) => m.end - m.start === size && m.perms.startsWith("rw") && m.path === "");
  const marker = randomBytes(16);
  new Uint8Array(memory.buffer, probeOffset, marker.length).set(marker);
  const fd = openSync("/proc/self/mem", "r");
  try {
    const found = candidates.filter((m) => {
      const seen = Buffer.alloc(marker.length);
      readSync(fd, seen, 0, seen.length, m.start + probeOffset);
      return seen.equals(marker);
    });
    if (found.length !== 1) throw new Error(`cannot locate a WebAssembly.Memory of ${size} bytes in /proc/self/maps (${found.length} matches)`);
    return found[0].start;
  } finally {
    closeSync(fd);
  }
}
