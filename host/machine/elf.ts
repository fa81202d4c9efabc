/**
 * ELF64 loader for RISC-V executables (little-endian, EM_RISCV).
 *
 * Pure data parsing: takes the file contents as a Uint8Array, uses no Node APIs.
 * Loadable segments are reported with their physical addresses (p_paddr), which is
 * where a bare-metal or firmware image must be placed in guest RAM. Symbols come
 * from .symtab (falling back to .dynsym for stripped images), which is how the
 * HTIF mailbox (`tohost` / `fromhost`) of test programs is found.
 *
 * Every malformed input raises an Error with a one-line message saying what is wrong.
 */

export interface ElfSegment {
  /** Physical load address (p_paddr). */
  paddr: bigint;
  /** Virtual address (p_vaddr). */
  vaddr: bigint;
  /** The p_filesz bytes of the segment (a view into the input, not a copy). */
  data: Uint8Array;
  /** Size in memory; bytes past data.length are zero-filled (BSS). */
  memsz: bigint;
  /** p_flags: PF_X = 1, PF_W = 2, PF_R = 4. */
  flags: number;
}

export interface ElfImage {
  entry: bigint;
  /** PT_LOAD segments in program-header order (empty segments are skipped). */
  segments: ElfSegment[];
  /** Symbol name -> value (st_value). */
  symbols: Map<string, bigint>;
}

export const PF_X = 1;
export const PF_W = 2;
export const PF_R = 4;

const EM_RISCV = 243;
const ET_EXEC = 2;
const ET_DYN = 3;
const PT_LOAD = 1;
const SHT_SYMTAB = 2;
const SHT_DYNSYM = 11;
const SHT_NOBITS = 8;
const PN_XNUM = 0xffff;
const EHDR_SIZE = 64;
const PHDR_SIZE = 56;
const SHDR_SIZE = 64;
const SYM_SIZE = 24;
/** Segments larger than this (1 TiB) cannot be meant for a guest. */
const MAX_SEGMENT_SIZE = 1n << 40n;
const ADDR_LIMIT = 1n << 64n;

const MACHINES: Record<number, string> = {
  0: 'no machine',
  2: 'SPARC',
  3: 'x86 (i386)',
  8: 'MIPS',
  20: 'PowerPC',
  21: 'PowerPC64',
  22: 'S/390',
  40: 'ARM',
  42: 'SuperH',
  43: 'SPARC V9',
  50: 'IA-64',
  62: 'x86-64',
  183: 'AArch64',
  243: 'RISC-V',
  247: 'BPF',
  258: 'LoongArch',
};

const TYPES: Record<number, string> = {
  0: 'ET_NONE (no file type)',
  1: 'ET_REL (relocatable object)',
  2: 'ET_EXEC (executable)',
  3: 'ET_DYN (shared object / PIE)',
  4: 'ET_CORE (core dump)',
};

function hex(v: bigint | number): string {
  return '0x' + v.toString(16);
}

/** True if `bytes` starts with the ELF magic number. */
export function isElf(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x7f && bytes[1] === 0x45 && bytes[2] === 0x4c && bytes[3] === 0x46;
}

/** Converts a 64-bit file offset/size to a number after checking it lies within `limit`. */
function within(offset: bigint, size: bigint, limit: number): boolean {
  return offset >= 0n && size >= 0n && offset + size <= BigInt(limit);
}

function cString(bytes: Uint8Array, start: number, end: number, decoder: TextDecoder): string {
  let i = start;
  while (i < end && bytes[i] !== 0) i++;
  return decoder.decode(bytes.subarray(start, i));
}

interface SectionHeader {
  index: number;
  type: number;
  offset: bigint;
  size: bigint;
  link: number;
  info: number;
  entsize: bigint;
}

export function parseElf(bytes: Uint8Array): ElfImage {
  if (!isElf(bytes)) {
    throw new Error(`not an ELF file: bad magic number (expected 7f 45 4c 46, input is ${bytes.length} bytes)`);
  }
  if (bytes.length < 16) throw new Error(`truncated: ELF identification needs 16 bytes, file has ${bytes.length}`);
  const cls = bytes[4];
  if (cls === 1) throw new Error('32-bit ELF (ELFCLASS32) is not supported: need a 64-bit (ELFCLASS64) RISC-V executable');
  if (cls !== 2) throw new Error(`invalid ELF class ${cls} in e_ident[EI_CLASS]`);
  const dataEnc = bytes[5];
  if (dataEnc === 2) throw new Error('big-endian ELF (ELFDATA2MSB) is not supported: need little-endian');
  if (dataEnc !== 1) throw new Error(`invalid ELF data encoding ${dataEnc} in e_ident[EI_DATA]`);
  if (bytes[6] !== 1) throw new Error(`unsupported ELF version ${bytes[6]} in e_ident[EI_VERSION]`);
  if (bytes.length < EHDR_SIZE) {
    throw new Error(`truncated: ELF64 header needs ${EHDR_SIZE} bytes, file has ${bytes.length}`);
  }

  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u16 = (o: number) => dv.getUint16(o, true);
  const u32 = (o: number) => dv.getUint32(o, true);
  const u64 = (o: number) => dv.getBigUint64(o, true);

  const type = u16(16);
  const machine = u16(18);
  if (machine !== EM_RISCV) {
    const name = MACHINES[machine] ?? `unknown machine ${machine}`;
    throw new Error(`ELF for machine ${name} (e_machine ${machine}), not RISC-V (e_machine ${EM_RISCV})`);
  }
  if (type !== ET_EXEC && type !== ET_DYN) {
    throw new Error(`not an executable: ELF type is ${TYPES[type] ?? `unknown (${type})`}`);
  }
  const entry = u64(24);
  const phoff = u64(32);
  const shoff = u64(40);
  const phentsize = u16(54);
  let phnum = u16(56);
  const shentsize = u16(58);
  let shnum = u16(60);

  // Section header 0 carries extended counts (PN_XNUM / shnum = 0).
  const haveSections = shoff !== 0n;
  if (haveSections && (phnum === PN_XNUM || shnum === 0)) {
    if (shentsize !== SHDR_SIZE) throw new Error(`bad section header entry size ${shentsize} (expected ${SHDR_SIZE})`);
    if (!within(shoff, BigInt(SHDR_SIZE), bytes.length)) {
      throw new Error(`truncated: section header table (offset ${hex(shoff)}) beyond end of file (size ${hex(bytes.length)})`);
    }
    const s0 = Number(shoff);
    if (phnum === PN_XNUM) phnum = u32(s0 + 44);
    if (shnum === 0) {
      const n = u64(s0 + 32);
      if (n > 0xffffffn) throw new Error(`absurd section count ${n}`);
      shnum = Number(n);
    }
  }

  // ---- program headers
  if (phnum === 0) throw new Error('no program headers: nothing to load');
  if (phentsize !== PHDR_SIZE) throw new Error(`bad program header entry size ${phentsize} (expected ${PHDR_SIZE})`);
  const phTableSize = BigInt(phnum) * BigInt(PHDR_SIZE);
  if (!within(phoff, phTableSize, bytes.length)) {
    throw new Error(
      `truncated: program header table (offset ${hex(phoff)}, ${phnum} entries of ${PHDR_SIZE} bytes) beyond end of file (size ${hex(bytes.length)})`,
    );
  }
  const segments: ElfSegment[] = [];
  const ranges: { index: number; start: bigint; end: bigint }[] = [];
  for (let i = 0; i < phnum; i++) {
    const p = Number(phoff) + i * PHDR_SIZE;
    if (u32(p) !== PT_LOAD) continue;
    const flags = u32(p + 4);
    const offset = u64(p + 8);
    const vaddr = u64(p + 16);
    const paddr = u64(p + 24);
    const filesz = u64(p + 32);
    const memsz = u64(p + 40);
    if (filesz > memsz) throw new Error(`segment ${i}: filesz ${hex(filesz)} > memsz ${hex(memsz)}`);
    if (memsz > MAX_SEGMENT_SIZE) throw new Error(`segment ${i}: absurd memsz ${hex(memsz)} (more than 1 TiB)`);
    if (paddr + memsz > ADDR_LIMIT || vaddr + memsz > ADDR_LIMIT) {
      throw new Error(`segment ${i}: address range ${hex(paddr)} + ${hex(memsz)} wraps past 2^64`);
    }
    if (filesz > 0n && !within(offset, filesz, bytes.length)) {
      throw new Error(
        `segment ${i} data outside the file: offset ${hex(offset)} + filesz ${hex(filesz)} > file size ${hex(bytes.length)}`,
      );
    }
    if (memsz === 0n) continue;
    for (const r of ranges) {
      if (paddr < r.end && r.start < paddr + memsz) {
        throw new Error(
          `segments ${r.index} and ${i} overlap in physical memory: ${hex(r.start)}-${hex(r.end - 1n)} and ${hex(paddr)}-${hex(paddr + memsz - 1n)}`,
        );
      }
    }
    ranges.push({ index: i, start: paddr, end: paddr + memsz });
    const start = filesz > 0n ? Number(offset) : 0;
    segments.push({ paddr, vaddr, data: bytes.subarray(start, start + Number(filesz)), memsz, flags });
  }
  if (segments.length === 0) throw new Error('no loadable (PT_LOAD) segments');

  // ---- section headers and symbols (optional: stripped images have none)
  const symbols = new Map<string, bigint>();
  if (haveSections && shnum > 0) {
    if (shentsize !== SHDR_SIZE) throw new Error(`bad section header entry size ${shentsize} (expected ${SHDR_SIZE})`);
    if (!within(shoff, BigInt(shnum) * BigInt(SHDR_SIZE), bytes.length)) {
      throw new Error(
        `truncated: section header table (offset ${hex(shoff)}, ${shnum} entries) beyond end of file (size ${hex(bytes.length)})`,
      );
    }
    const sections: SectionHeader[] = [];
    for (let i = 0; i < shnum; i++) {
      const s = Number(shoff) + i * SHDR_SIZE;
      sections.push({
        index: i,
        type: u32(s + 4),
        offset: u64(s + 24),
        size: u64(s + 32),
        link: u32(s + 40),
        info: u32(s + 44),
        entsize: u64(s + 56),
      });
    }
    const symtab = sections.find((s) => s.type === SHT_SYMTAB) ?? sections.find((s) => s.type === SHT_DYNSYM);
    if (symtab) readSymbols(bytes, dv, sections, symtab, symbols);
  }

  return { entry, segments, symbols };
}

function readSymbols(
  bytes: Uint8Array,
  dv: DataView,
  sections: SectionHeader[],
  symtab: SectionHeader,
  out: Map<string, bigint>,
): void {
  const what = `symbol table (section ${symtab.index})`;
  if (symtab.entsize !== BigInt(SYM_SIZE)) throw new Error(`${what}: bad entry size ${symtab.entsize} (expected ${SYM_SIZE})`);
  if (!within(symtab.offset, symtab.size, bytes.length)) {
    throw new Error(`${what} outside the file: offset ${hex(symtab.offset)} + size ${hex(symtab.size)} > file size ${hex(bytes.length)}`);
  }
  const strtab = sections[symtab.link];
  if (!strtab || strtab.type === SHT_NOBITS) throw new Error(`${what}: bad string table link ${symtab.link}`);
  if (!within(strtab.offset, strtab.size, bytes.length)) {
    throw new Error(
      `string table (section ${strtab.index}) outside the file: offset ${hex(strtab.offset)} + size ${hex(strtab.size)} > file size ${hex(bytes.length)}`,
    );
  }
  const strStart = Number(strtab.offset);
  const strEnd = strStart + Number(strtab.size);
  const decoder = new TextDecoder();
  const count = Number(symtab.size / BigInt(SYM_SIZE));
  const globals = new Set<string>();
  for (let i = 1; i < count; i++) {
    const e = Number(symtab.offset) + i * SYM_SIZE;
    const nameOff = dv.getUint32(e, true);
    const info = bytes[e + 4];
    const symType = info & 0xf;
    const bind = info >> 4;
    if (nameOff === 0 || symType === 3 /* STT_SECTION */ || symType === 4 /* STT_FILE */) continue;
    if (nameOff >= strEnd - strStart) throw new Error(`${what}: symbol ${i} name offset ${hex(nameOff)} outside its string table`);
    const name = cString(bytes, strStart + nameOff, strEnd, decoder);
    const value = dv.getBigUint64(e + 8, true);
    const isGlobal = bind === 1 /* GLOBAL */ || bind === 2; /* WEAK */
    // A global definition wins over a local one of the same name; otherwise the first wins.
    if (!out.has(name) || (isGlobal && !globals.has(name))) {
      out.set(name, value);
      if (isGlobal) globals.add(name);
    }
  }
}
