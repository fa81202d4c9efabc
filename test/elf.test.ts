import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildBaremetal } from "../guests/baremetal/build.mjs";
import { isElf, parseElf, PF_R, PF_W, PF_X, type ElfImage } from "../host/machine/elf";

const FW_JUMP = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.elf";
const UBOOT = "/usr/lib/u-boot/qemu-riscv64_smode/uboot.elf";
const READELF = "riscv64-unknown-elf-readelf";

let programElf = "";
let program: Uint8Array;
const work = mkdtempSync(join(tmpdir(), "wasmvisor-elf-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

beforeAll(async () => {
  const { programs } = await buildBaremetal();
  programElf = programs.rv64i;
  program = new Uint8Array(readFileSync(programElf));
}, 180_000);

function read(path: string): Uint8Array {
  return new Uint8Array(readFileSync(path));
}

// ---- readelf as an independent reference --------------------------------------

interface RefLoad {
  offset: bigint;
  vaddr: bigint;
  paddr: bigint;
  filesz: bigint;
  memsz: bigint;
  flags: number;
}

function readelf(args: string[], path: string): string {
  const r = spawnSync(READELF, [...args, path], { encoding: "utf8" });
  if (r.error && (r.error as NodeJS.ErrnoException).code === "ENOENT") {
    throw new Error(`${READELF} not found: install binutils-riscv64-unknown-elf (comes with gcc-riscv64-unknown-elf)`);
  }
  expect(r.status, r.stderr).toBe(0);
  return r.stdout;
}

function refLoads(path: string): { entry: bigint; loads: RefLoad[] } {
  const out = readelf(["-hlW"], path);
  const entry = BigInt(/Entry point address:\s+(0x[0-9a-f]+)/.exec(out)![1]);
  const loads: RefLoad[] = [];
  const re = /^\s*LOAD\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+([RWE ]{3})\s+0x[0-9a-f]+\s*$/gm;
  for (const m of out.matchAll(re)) {
    const f = m[6];
    loads.push({
      offset: BigInt(m[1]),
      vaddr: BigInt(m[2]),
      paddr: BigInt(m[3]),
      filesz: BigInt(m[4]),
      memsz: BigInt(m[5]),
      flags: (f.includes("R") ? PF_R : 0) | (f.includes("W") ? PF_W : 0) | (f.includes("E") ? PF_X : 0),
    });
  }
  return { entry, loads };
}

function refSymbol(path: string, name: string): bigint | undefined {
  const out = readelf(["-sW"], path);
  const re = new RegExp(`^\\s*\\d+:\\s+([0-9a-f]+)\\s+\\d+\\s+\\w+\\s+GLOBAL\\s+\\w+\\s+\\S+\\s+${name}$`, "m");
  const m = re.exec(out);
  return m ? BigInt("0x" + m[1]) : undefined;
}

function expectMatchesReadelf(path: string, bytes: Uint8Array, img: ElfImage): void {
  const ref = refLoads(path);
  expect(img.entry).toBe(ref.entry);
  const nonEmpty = ref.loads.filter((l) => l.memsz > 0n);
  expect(img.segments.length).toBe(nonEmpty.length);
  img.segments.forEach((s, i) => {
    const r = nonEmpty[i];
    expect(s.paddr).toBe(r.paddr);
    expect(s.vaddr).toBe(r.vaddr);
    expect(BigInt(s.data.length)).toBe(r.filesz);
    expect(s.memsz).toBe(r.memsz);
    expect(s.flags).toBe(r.flags);
    const o = Number(r.offset);
    expect(Buffer.from(s.data).equals(Buffer.from(bytes.subarray(o, o + Number(r.filesz))))).toBe(true);
  });
}

// ---- real binaries ----------------------------------------------------------------

describe("parseElf on real binaries", () => {
  it("parses OpenSBI fw_jump.elf (Debian opensbi)", () => {
    const bytes = read(FW_JUMP);
    expect(isElf(bytes)).toBe(true);
    const img = parseElf(bytes);
    expect(img.entry).toBe(0x80000000n);
    expect(img.segments.length).toBe(1);
    expect(img.segments[0].paddr).toBe(0x80000000n);
    expect(img.segments[0].flags).toBe(PF_R | PF_W | PF_X);
    expect(img.segments[0].memsz).toBeGreaterThan(BigInt(img.segments[0].data.length));
    expectMatchesReadelf(FW_JUMP, bytes, img);
  });

  it("parses U-Boot uboot.elf (Debian u-boot-qemu, S-mode)", () => {
    const bytes = read(UBOOT);
    const img = parseElf(bytes);
    expect(img.entry).toBe(0x80200000n);
    expect(img.segments[0].paddr).toBe(0x80200000n);
    expectMatchesReadelf(UBOOT, bytes, img);
    // stripped of .symtab: symbols come from .dynsym
    expect(img.symbols.get("_start")).toBe(0x80200000n);
  });

  it("parses a project bare-metal program and finds tohost/fromhost", () => {
    const img = parseElf(program);
    expect(img.entry).toBe(0x80000000n);
    expectMatchesReadelf(programElf, program, img);
    const text = img.segments.find((s) => s.paddr === 0x80000000n)!;
    expect(text.flags & PF_X).toBe(PF_X);
    const tohost = img.symbols.get("tohost");
    const fromhost = img.symbols.get("fromhost");
    expect(tohost).toBeDefined();
    expect(tohost).toBe(refSymbol(programElf, "tohost"));
    expect(fromhost).toBe(refSymbol(programElf, "fromhost"));
    expect(tohost! % 0x1000n).toBe(0n); // alone in its own page
    expect(fromhost).toBe(tohost! + 8n);
    const seg = img.segments.find((s) => s.paddr <= tohost! && tohost! < s.paddr + s.memsz);
    expect(seg, "tohost lies in a loadable segment").toBeDefined();
    expect(img.symbols.get("main")).toBe(refSymbol(programElf, "main"));
  });
});

// ---- malformed inputs ---------------------------------------------------------------

function patched(edit: (dv: DataView, bytes: Uint8Array) => void, base: Uint8Array = program): Uint8Array {
  const copy = new Uint8Array(base);
  edit(new DataView(copy.buffer), copy);
  return copy;
}

interface Phdr {
  index: number;
  at: number;
  type: number;
  offset: bigint;
  paddr: bigint;
  filesz: bigint;
  memsz: bigint;
}

function phdrs(bytes: Uint8Array): Phdr[] {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const phoff = Number(dv.getBigUint64(32, true));
  const n = dv.getUint16(56, true);
  return Array.from({ length: n }, (_, i) => {
    const at = phoff + i * 56;
    return {
      index: i,
      at,
      type: dv.getUint32(at, true),
      offset: dv.getBigUint64(at + 8, true),
      paddr: dv.getBigUint64(at + 24, true),
      filesz: dv.getBigUint64(at + 32, true),
      memsz: dv.getBigUint64(at + 40, true),
    };
  });
}

function expectError(bytes: Uint8Array, pattern: RegExp): void {
  let err: unknown;
  try {
    parseElf(bytes);
  } catch (e) {
    err = e;
  }
  expect(err, `expected an error matching ${pattern}`).toBeInstanceOf(Error);
  const msg = (err as Error).message;
  expect(msg).toMatch(pattern);
  expect(msg).not.toContain("\n");
}

describe("parseElf rejects malformed input with a clear message", () => {
  it("not an ELF file", () => {
    expectError(new TextEncoder().encode("#!/bin/sh\necho hello\n"), /^not an ELF file/);
    expectError(new Uint8Array(0), /^not an ELF file/);
    expect(isElf(new Uint8Array([0x7f, 0x45, 0x4c]))).toBe(false);
  });

  it("32-bit ELF", () => {
    expectError(patched((_, b) => (b[4] = 1)), /^32-bit ELF/);
  });

  it("big-endian ELF", () => {
    expectError(patched((_, b) => (b[5] = 2)), /^big-endian ELF/);
  });

  it("ELF for another machine (the host's /bin/true)", () => {
    const host = ({ x64: "x86-64", arm64: "AArch64" } as Record<string, string>)[process.arch];
    if (process.arch !== "riscv64") {
      expectError(read("/bin/true"), new RegExp(`^ELF for machine ${host ?? ".+"} \\(e_machine \\d+\\), not RISC-V`));
    }
    expectError(patched((dv) => dv.setUint16(18, 62, true)), /^ELF for machine x86-64 \(e_machine 62\), not RISC-V/);
  });

  it("not an executable", () => {
    expectError(patched((dv) => dv.setUint16(16, 1, true)), /^not an executable: ELF type is ET_REL/);
    expectError(patched((dv) => dv.setUint16(16, 4, true)), /^not an executable: ELF type is ET_CORE/);
    // a real relocatable object
    const obj = join(work, "crt.o");
    const r = spawnSync("riscv64-unknown-elf-gcc", ["-c", "-o", obj, fileURLToPath(new URL("../guests/baremetal/runtime/crt.S", import.meta.url))], {
      encoding: "utf8",
    });
    expect(r.status, r.stderr).toBe(0);
    expectError(read(obj), /^not an executable: ELF type is ET_REL \(relocatable object\)/);
  });

  it("truncated header and program header table", () => {
    expectError(program.subarray(0, 40), /^truncated: ELF64 header needs 64 bytes, file has 40/);
    const phoff = Number(new DataView(program.buffer, program.byteOffset).getBigUint64(32, true));
    expectError(program.subarray(0, phoff + 60), /^truncated: program header table .* beyond end of file/);
    expectError(patched((dv) => dv.setBigUint64(32, 0xffffffffff00n, true)), /^truncated: program header table/);
    expectError(patched((dv) => dv.setUint16(54, 32, true)), /^bad program header entry size 32/);
  });

  it("segment data outside the file", () => {
    const load = phdrs(program).find((p) => p.type === 1 && p.filesz > 0n)!;
    expectError(
      patched((dv) => dv.setBigUint64(load.at + 8, BigInt(program.length), true)),
      new RegExp(`^segment ${load.index} data outside the file`),
    );
    // truncating the file cuts the last segment's data
    const last = phdrs(program).filter((p) => p.type === 1 && p.filesz > 0n).pop()!;
    expectError(
      program.subarray(0, Number(last.offset + last.filesz) - 1),
      new RegExp(`^segment ${last.index} data outside the file`),
    );
  });

  it("filesz > memsz", () => {
    const load = phdrs(program).find((p) => p.type === 1 && p.filesz > 0n)!;
    expectError(
      patched((dv) => dv.setBigUint64(load.at + 32, load.memsz + 1n, true)),
      new RegExp(`^segment ${load.index}: filesz 0x[0-9a-f]+ > memsz 0x[0-9a-f]+`),
    );
  });

  it("overlapping segments", () => {
    const loads = phdrs(program).filter((p) => p.type === 1);
    expect(loads.length).toBeGreaterThanOrEqual(2);
    expectError(
      patched((dv) => dv.setBigUint64(loads[1].at + 24, loads[0].paddr + 0x10n, true)),
      new RegExp(`^segments ${loads[0].index} and ${loads[1].index} overlap in physical memory`),
    );
  });

  it("absurd sizes and wrapping address ranges", () => {
    const load = phdrs(program).find((p) => p.type === 1)!;
    expectError(
      patched((dv) => dv.setBigUint64(load.at + 40, 0xffffffffffff0000n, true)),
      new RegExp(`^segment ${load.index}: absurd memsz`),
    );
    expectError(
      patched((dv) => dv.setBigUint64(load.at + 24, 0xfffffffffffff000n, true)),
      new RegExp(`^segment ${load.index}: address range .* wraps past 2\\^64`),
    );
  });

  it("no loadable segments", () => {
    expectError(
      patched((dv) => {
        for (const p of phdrs(program)) if (p.type === 1) dv.setUint32(p.at, 0, true);
      }),
      /^no loadable \(PT_LOAD\) segments/,
    );
  });

  it("symbol table outside the file", () => {
    const dv0 = new DataView(program.buffer, program.byteOffset);
    const shoff = Number(dv0.getBigUint64(40, true));
    const shnum = dv0.getUint16(60, true);
    let symAt = -1;
    for (let i = 0; i < shnum; i++) if (dv0.getUint32(shoff + i * 64 + 4, true) === 2) symAt = shoff + i * 64;
    expect(symAt).toBeGreaterThan(0);
    expectError(
      patched((dv) => dv.setBigUint64(symAt + 24, BigInt(program.length), true)),
      /^symbol table \(section \d+\) outside the file/,
    );
    expectError(
      patched((dv) => dv.setBigUint64(40, BigInt(program.length - 100), true)),
      /^truncated: section header table/,
    );
  });
});
