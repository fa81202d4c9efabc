// A VM's whole state as one stream (container.ts): its configuration (as a definition), its
// core (cpu.ts), its machine (devices with their queues and in-flight requests, the built-in
// SBI, bandwidth buckets, boot layout, DTB), the boot ROM and guest RAM (memory.ts). Snapshots
// write it to a file, live migration to a socket, moves between pCPUs to another thread; all
// read it back with openVmState, which checks everything it can before anything is built.
import * as L from "../core/layout";
import { popcount } from "../util/bits";
import type { Core } from "../core/core";
import type { VirtMachine } from "../machine/virt";
import type { VmConfig } from "../config/vm-config";
import { ConfigError, DEFINITION_PARSING, parseVmConfig, vmDefinition } from "../config/parse";
import {
  StateFormatError, StateWriter, TAGS, checkedPayload, firstSection, jsonPayload, listSections, type ByteSource, type SectionRef,
} from "./container";
import { saveCpu, readCpu, type ClockRestore } from "./cpu";
import { CHUNK_PAGES, MemoryEncoder, PAGE, applyChunk, chunkData, readMemoryIndex, type ChunkEntry, type PageSelection } from "./memory";

export { StateFormatError, StateWriter, type ByteSource, type ClockRestore, type PageSelection };

/** The configuration section: the definition that parses back to the VM's configuration. */
export function writeConfig(w: StateWriter, config: VmConfig): void {
  w.json(TAGS.config, vmDefinition(config));
}

/** The core, the machine and the boot ROM: everything but RAM. Between steps. */
export function writeMachine(w: StateWriter, machine: VirtMachine, wallClockMs: number): void {
  w.json(TAGS.cpu, saveCpu(machine.core, wallClockMs));
  w.json(TAGS.machine, machine.save());
  // The boot ROM is a few hundred bytes of code and data, then zeros: kept up to its last byte that is not.
  const rom = machine.core.u8.subarray(L.ROM_HOST, L.ROM_HOST + L.ROM_SIZE);
  let end = rom.length;
  while (end > 0 && rom[end - 1] === 0) end--;
  w.section(TAGS.rom, rom.slice(0, end));
}

/** How a pass over memory is written: deflate level, chunks per section, and a count of the sections written. */
export interface MemoryWriting {
  level: number;
  sectionChunks: number;
  written?: { sections: number };
}

/** Memory into a file: deflated, in sections of 16 MiB of RAM. */
export const TO_FILE: MemoryWriting = { level: 1, sectionChunks: 256 };
/** Memory over a link: raw (the link is faster than deflate), in sections of 2 MiB the other side puts in place while the next arrives. */
export const TO_LINK: MemoryWriting = { level: 0, sectionChunks: 32 };
/** Post-copy's pages over a link: small sections, so a page the VM waits for is never far behind the one before. */
export const TO_LINK_POSTCOPY: MemoryWriting = { level: 0, sectionChunks: 2 };

/**
 * One pass over `core`'s RAM writing the pages `select` picks as memory sections (at least one),
 * a chunk per next(), so that a caller may let the VM run between chunks.
 */
export class MemoryPass {
  /** Pages the pass has written. */
  pages = 0;
  private chunk = 0;
  private sections = 0;
  private readonly enc: MemoryEncoder;

  /**
   * With `consume`, a bitmap selection loses each page as the pass takes it, and is read as the
   * pass goes: post-copy sends a page once, whether the pass or a request gets to it first.
   */
  constructor(private readonly w: StateWriter, core: Core, private readonly select: PageSelection, private readonly how: MemoryWriting, private readonly consume = false) {
    // Only pages ever used can be other than zero: the rest is not even looked at; the core finds the zero ones.
    const s: PageSelection = select.kind === "nonzero" ? { kind: "nonzero", within: select.within ?? core.usedPages() } : select;
    this.enc = new MemoryEncoder(core.ram, s, how.level, (page) => core.ramPageIsZero(page));
  }

  /** Encode the next chunk, writing a section when one is full and the last one at the end; false once the pass is over. */
  next(): boolean {
    if (this.chunk < this.enc.chunks) {
      const chunk = this.chunk++;
      this.enc.add(chunk);
      if (this.consume && this.select.kind === "bitmap") {
        const first = chunk * CHUNK_PAGES;
        this.select.bitmap[first >>> 5]! &= ~(0xffff << (first & 31));
      }
      if (this.enc.pending >= this.how.sectionChunks) this.flush();
      return true;
    }
    if (this.enc.pending || this.sections === 0) this.flush();
    return false;
  }

  /** How far the pass has gone through RAM (0 to 1). */
  get progress(): number {
    return this.chunk / this.enc.chunks;
  }

  /** Encode up to and including the next section written; false once the pass is over. */
  nextSection(): boolean {
    const before = this.sections;
    while (this.sections === before) if (!this.next()) return false;
    return true;
  }

  private flush(): void {
    const { index, data, pages } = this.enc.take();
    this.w.memory(index, data);
    this.pages += pages;
    this.sections++;
    if (this.how.written) this.how.written.sections++;
  }
}

/** A whole pass at once (nothing awaited: the VM does not run meanwhile); returns how many pages it wrote. */
export function writeMemory(w: StateWriter, core: Core, select: PageSelection, how: MemoryWriting): number {
  const pass = new MemoryPass(w, core, select, how);
  while (pass.next());
  return pass.pages;
}

/** A whole state in one go (a snapshot of a VM that is not running): configuration, machine, the RAM that is not zero. */
export function writeVmState(sink: (chunk: Uint8Array) => void, config: VmConfig, machine: VirtMachine, wallClockMs: number): { bytes: number; pages: number } {
  const w = new StateWriter(sink);
  writeConfig(w, config);
  writeMachine(w, machine, wallClockMs);
  const pages = writeMemory(w, machine.core, { kind: "nonzero" }, TO_FILE);
  w.end();
  return { bytes: w.bytes, pages };
}

/**
 * A configuration section's definition, checked as any definition from a client is (`name`
 * replaces the saved one); a StateFormatError names the stream and the field.
 */
export function readConfig(definition: unknown, what: string, name?: string): VmConfig {
  try {
    const d = definition !== null && typeof definition === "object" && !Array.isArray(definition) ? definition : {};
    return parseVmConfig(name !== undefined ? { ...d, name } : definition, DEFINITION_PARSING);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    throw new StateFormatError(`${what}: its configuration: ${e.message}`);
  }
}

/**
 * The configuration of a stored state alone: the stream's header and first section checked as
 * openVmState checks them, the rest not read. What the control plane admits a VM by; the VM's
 * thread then opens the whole state (openVmState), which checks all of it before anything is built.
 */
export function readStateConfig(src: ByteSource, what: string, opts: { name?: string } = {}): VmConfig {
  const s = firstSection(src, what);
  if (s.tag !== TAGS.config) throw new StateFormatError(`${what} does not start with the VM's configuration`);
  return readConfig(jsonPayload(src, s, what), what, opts.name);
}

/** A state read and checked, ready to be built into a machine (restoreMachine in vm/build.ts). */
export interface OpenedVmState {
  config: VmConfig;
  /** The machine's state (MachineState, checked when the machine takes it). */
  machineState: unknown;
  /** Put the saved core and boot ROM into a machine built from `config` and machineState. */
  applyCore(core: Core, clock: ClockRestore): void;
  /** Memory sections in stream order (later pages replace earlier ones). */
  memory: ChunkEntry[][];
  /** Pages the memory sections carry (counting a page once per section). */
  pages: number;
  src: ByteSource;
  what: string;
}

/**
 * Open a stored state: its structure, every checksum but the memory data's (each chunk is
 * checked as it is used), the configuration (as a definition from a client would be; `name`
 * replaces the saved one), the core's and machine's fields (machine: when it is built), and the
 * memory index. Throws a StateFormatError saying what is wrong.
 */
export function openVmState(src: ByteSource, what: string, opts: { name?: string } = {}): OpenedVmState {
  const sections = listSections(src, what);
  const one = (tag: string): SectionRef => {
    const found = sections.filter((s) => s.tag === tag);
    if (found.length !== 1) throw new StateFormatError(`${what} has ${found.length} ${JSON.stringify(tag)} sections, not one (corrupted, or not a whole VM state)`);
    return found[0]!;
  };
  const config = readStateConfig(src, what, opts);
  one(TAGS.config); // and no second one
  const cpu = jsonPayload(src, one(TAGS.cpu), what);
  const machineState = jsonPayload(src, one(TAGS.machine), what);
  const rom = checkedPayload(src, one(TAGS.rom), what);
  if (rom.length > L.ROM_SIZE) throw new StateFormatError(`${what}: the boot ROM is ${rom.length} bytes, more than its ${L.ROM_SIZE}`);
  const ramPages = config.memory / PAGE;
  const memory = sections.filter((s) => s.tag === TAGS.memory).map((s) => readMemoryIndex((n) => src.read(s.offset, n), s, ramPages, what));
  const pages = memory.reduce((n, entries) => n + entries.reduce((m, e) => m + popcount(e.pages), 0), 0);
  return {
    config, machineState, memory, pages, src, what,
    applyCore(core, clock) {
      const apply = readCpu(core, cpu, `${what}: cpu`);
      apply(clock);
      // The ROM as saved, then zeros. A machine built to be restored writes no ROM, so in a
      // memory its Core made they are there already: the pages they span are left untouched
      // (each would be a page fault, on the way to a running VM).
      core.u8.set(rom, L.ROM_HOST);
      if (!core.freshMemory) core.u8.fill(0, L.ROM_HOST + rom.length, L.ROM_HOST + L.ROM_SIZE);
    },
  };
}

/** Put every memory section's pages into the RAM of a VM that has not run yet, checking each chunk. */
export function loadMemory(state: OpenedVmState, core: Core): void {
  for (const entries of state.memory) {
    for (const e of entries) applyChunkTo(core, e, chunkData(state.src, e, state.what));
  }
}

/** Put a chunk's pages into the RAM of a VM that has not run yet, noting them used. */
export function applyChunkTo(core: Core, e: ChunkEntry, data: Uint8Array): void {
  applyChunk(core.ram, e, data);
  for (let b = 0; b < CHUNK_PAGES; b++) if ((e.pages >>> b) & 1) core.markUsed(e.chunk * CHUNK_PAGES + b);
}

/**
 * Let the RAM of a VM that has not run yet come in as it is touched (Core.beginLazy): the pages
 * the state carries are read, checked and inflated on first touch, a chunk at a time; the
 * others are zero in a fresh memory already. The state's source must stay open until
 * core.lazy is false.
 *
 * The index is in proportion to the entries, not to RAM: this runs before the restored VM
 * does, and every page of a new table is one the host has to fault in.
 */
export function lazyMemory(state: OpenedVmState, core: Core): void {
  const ramPages = core.ramSize / PAGE;
  const entries = state.memory.flat();
  // Per chunk, the last entry that carries some of its pages, and per entry the one before it
  // for the same chunk (each as index + 1; 0: none): a page's content is in the first entry of
  // its chain that carries it (later sections replace earlier ones).
  const last = new Int32Array(Math.ceil(ramPages / CHUNK_PAGES));
  const before = new Int32Array(entries.length);
  // Pages that need nothing from the state: those no entry carries, and those the last entry to
  // carry them says are zero. A chunk is half a bitmap word (CHUNK_PAGES is 16).
  const present = new Uint32Array(Math.ceil(ramPages / 32)).fill(0xffffffff);
  entries.forEach((e, i) => {
    before[i] = last[e.chunk]!;
    last[e.chunk] = i + 1;
    const first = e.chunk * CHUNK_PAGES;
    const shift = first & 31;
    present[first >>> 5] = (present[first >>> 5]! & ~(e.pages << shift)) | ((e.pages & e.zeros) << shift);
  });
  let cached = -1;
  let data: Uint8Array = new Uint8Array(0);
  core.beginLazy((page, dst) => {
    const slot = page % CHUNK_PAGES;
    let i = last[(page - slot) / CHUNK_PAGES]! - 1;
    while (i >= 0 && !((entries[i]!.pages >>> slot) & 1)) i = before[i]! - 1;
    if (i < 0) throw new Error(`no memory entry carries RAM page ${page}`); // an absent page is carried by one
    const e = entries[i]!;
    if (cached !== i) {
      data = chunkData(state.src, e, state.what);
      cached = i;
    }
    const k = popcount(e.pages & ~e.zeros & ((1 << slot) - 1)); // its place among the chunk's data pages
    dst.set(data.subarray(k * PAGE, (k + 1) * PAGE));
  }, { present });
}
