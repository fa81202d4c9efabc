/**
 * The boot loaders: a machine built around images the input makes. ELF executables whose every
 * header field, program header and symbol (the HTIF mailboxes) comes from the input (addresses
 * in RAM, across its end, overlapping each other or the devicetree; sizes up to 2^64), raw
 * images, initrds of any size, firmware or none or the built-in SBI, RAM sizes, command lines.
 * The machine is built (images placed, devicetree written) and runs a few steps. The clean
 * rejection is a one-line Error. The devicetree parser gets the machine's DTB with bytes changed.
 */
import { InputReader, InputWriter } from "../engine/input";
import { isOneLineError, type Target } from "../engine/target";
import { loadCoreModule } from "../../host/platform/node/core";
import { KERNEL_ADDR, VirtMachine, type Image } from "../../host/machine/virt";
import { RAM_BASE } from "../../host/machine/memory-map";
import { parseFdt } from "../../host/machine/fdt";

const MiB = 1 << 20;
const EM_RISCV = 243;

function address(input: InputReader, memory: number): bigint {
  switch (input.int(0, 5)) {
    case 0: return BigInt(RAM_BASE + input.int(0, memory / 4096) * 4096);
    case 1: return BigInt(KERNEL_ADDR + input.int(0, 0xffff));
    case 2: return BigInt(RAM_BASE + memory - input.int(0, 0x10000));
    case 3: return input.pick([0n, 0x1000n, 0x10000000n, BigInt(RAM_BASE) - 8n, 2n ** 64n - 8n, 2n ** 53n, 2n ** 63n]);
    default: return input.u64();
  }
}

function size(input: InputReader): bigint {
  return input.int(0, 3) === 0 ? input.pick([0n, 2n ** 64n - 1n, 2n ** 40n, 2n ** 32n, BigInt(64 * MiB), 2n ** 53n]) : BigInt(input.int(0, 0x3000));
}

/** An ELF executable from the input: header, program headers, and a symbol table naming tohost/fromhost. */
function elf(input: InputReader, memory: number): Uint8Array {
  const phnum = input.int(0, 7) === 0 ? input.u16() : input.int(1, 3);
  const phCount = Math.min(phnum, 3);
  const dataAt = 64 + 56 * phCount;
  const data = input.blob(256);
  const symAt = dataAt + data.length;
  const withSymbols = input.bool();
  const strtab = new TextEncoder().encode("\0tohost\0fromhost\0");
  const shAt = symAt + 3 * 24 + strtab.length;
  const bytes = new Uint8Array(shAt + (withSymbols ? 4 * 64 : 0));
  const dv = new DataView(bytes.buffer);
  bytes.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
  if (input.int(0, 15) === 0) bytes[input.int(4, 15)] = input.u8();
  dv.setUint16(16, input.int(0, 7) === 0 ? input.u16() : input.pick([2, 3]), true);
  dv.setUint16(18, input.int(0, 15) === 0 ? input.u16() : EM_RISCV, true);
  dv.setUint32(20, 1, true);
  dv.setBigUint64(24, input.bool() ? BigInt(KERNEL_ADDR) : address(input, memory), true);
  dv.setBigUint64(32, input.int(0, 7) === 0 ? input.u64() : 64n, true);
  dv.setBigUint64(40, withSymbols ? BigInt(shAt) : input.int(0, 7) === 0 ? input.u64() : 0n, true);
  dv.setUint16(52, 64, true);
  dv.setUint16(54, input.int(0, 15) === 0 ? input.u16() : 56, true);
  dv.setUint16(56, phnum, true);
  dv.setUint16(58, input.int(0, 15) === 0 ? input.u16() : 64, true);
  dv.setUint16(60, withSymbols ? 4 : input.int(0, 7) === 0 ? input.u16() : 0, true);
  dv.setUint16(62, withSymbols ? 3 : 0, true);
  for (let i = 0; i < phCount; i++) {
    const p = 64 + 56 * i;
    const paddr = i === 0 && input.bool() ? BigInt(KERNEL_ADDR) : address(input, memory);
    const filesz = input.bool() ? BigInt(data.length) : size(input);
    dv.setUint32(p, input.int(0, 7) === 0 ? input.u32() : 1, true); // PT_LOAD
    dv.setUint32(p + 4, input.int(0, 7), true);
    dv.setBigUint64(p + 8, input.int(0, 7) === 0 ? input.u64() : BigInt(dataAt), true);
    dv.setBigUint64(p + 16, paddr, true);
    dv.setBigUint64(p + 24, paddr, true);
    dv.setBigUint64(p + 32, filesz, true);
    dv.setBigUint64(p + 40, input.bool() ? filesz : size(input), true);
    dv.setBigUint64(p + 48, 4096n, true);
  }
  bytes.set(data, dataAt);
  if (withSymbols) {
    // Symbols: null, tohost, fromhost; sections: null, .symtab, .strtab, .shstrtab (= .strtab).
    for (const [i, name] of [[1, 1], [2, 8]] as const) {
      const s = symAt + 24 * i;
      dv.setUint32(s, name, true);
      bytes[s + 4] = 0x11; // global object
      dv.setUint16(s + 6, 1, true);
      dv.setBigUint64(s + 8, input.bool() ? BigInt(RAM_BASE + 0x1000 + 8 * i) : address(input, memory), true);
    }
    bytes.set(strtab, symAt + 72);
    const section = (i: number, type: number, at: number, len: number, link: number, entsize: number) => {
      const s = shAt + 64 * i;
      dv.setUint32(s + 4, type, true);
      dv.setBigUint64(s + 24, input.int(0, 15) === 0 ? input.u64() : BigInt(at), true);
      dv.setBigUint64(s + 32, input.int(0, 15) === 0 ? input.u64() : BigInt(len), true);
      dv.setUint32(s + 40, link, true);
      dv.setBigUint64(s + 56, BigInt(entsize), true);
    };
    section(1, 2, symAt, 72, 2, 24);
    section(2, 3, symAt + 72, strtab.length, 0, 0);
    section(3, 3, symAt + 72, strtab.length, 0, 0);
  }
  return bytes;
}

function image(name: string, input: InputReader, memory: number): Image {
  switch (input.int(0, 3)) {
    case 0: return { name, bytes: input.blob(512) }; // raw (or anything)
    case 1: return { name, bytes: new Uint8Array(input.int(0, 3) === 0 ? input.int(0, memory + MiB) : input.int(0, 4096)) };
    default: return { name, bytes: elf(input, memory) };
  }
}

function runLoaders(module: WebAssembly.Module, data: Uint8Array): void {
  const input = new InputReader(data);
  const memory = input.pick([2, 4, 8, 16, 64]) * MiB;
  const firmware = input.int(0, 2);
  const bios = firmware === 0 ? null : firmware === 1 ? "builtin" as const : image("fw.bin", input, memory);
  const kernel = input.int(0, 3) !== 0 ? image("kernel", input, memory) : undefined;
  const initrd = input.bool() ? { name: "initrd", bytes: new Uint8Array(input.int(0, 3) === 0 ? input.u32() % (memory + MiB) : input.int(1, 4096)) } : undefined;
  const append = input.bool() ? new TextDecoder().decode(input.blob(300)) : undefined;
  const m = new VirtMachine({ module, memory, harts: input.int(1, 4), bios, kernel, initrd, append, output: () => {} });
  for (let i = 0; i < 2; i++) m.step(2000);
  // The devicetree parser, on this machine's DTB with bytes changed.
  const dtb = m.dtb.slice();
  for (let edits = input.int(0, 8); edits > 0; edits--) {
    const at = input.int(0, dtb.length - 1);
    const v = input.u32();
    for (let k = 0; k < input.int(1, 4) && at + k < dtb.length; k++) dtb[at + k] = (v >>> (8 * k)) & 0xff;
  }
  try {
    parseFdt(dtb.subarray(0, input.int(0, 7) === 0 ? input.int(0, dtb.length) : dtb.length));
  } catch (e) {
    if (!isOneLineError(e)) throw e;
  }
}

function seeds(): Uint8Array[] {
  // A raw kernel on the built-in SBI; an ELF kernel with HTIF symbols on none; an initrd too.
  const raw = new InputWriter().u8(3).int(0, 2, 1).int(0, 3, 1).int(0, 3, 0).blob(512, [0x6f, 0, 0, 0]).bool(false).bool(true).blob(300, [...new TextEncoder().encode("console=hvc0")]).int(1, 4, 1).int(0, 8, 0).int(0, 7, 1);
  const elfSeed = new InputWriter().u8(3).int(0, 2, 0).int(0, 3, 1).int(0, 3, 2)
    .int(0, 7, 1).int(1, 3, 1).blob(256, [0x6f, 0, 0, 0]).bool(true).int(0, 15, 1).int(0, 7, 1).int(0, 15, 1).bool(true).int(0, 7, 1).int(0, 15, 1).int(0, 15, 1)
    .bool(true).bool(true).int(0, 7, 1).int(0, 7, 5).int(0, 7, 1).bool(true)
    .bool(true).bool(true)
    .int(0, 15, 1).int(0, 15, 1).int(0, 15, 1).int(0, 15, 1).int(0, 15, 1).int(0, 15, 1)
    .bool(true).int(0, 3, 1).int(1, 4096, 100).bool(false).int(1, 4, 2).int(0, 8, 2).u16(40).u32(0xffffffff).int(1, 4, 4).u16(2).u32(0).int(1, 4, 1).int(0, 7, 1);
  return [raw.finish(), elfSeed.finish()];
}

export const loadersTarget: Target<WebAssembly.Module> = {
  name: "loaders",
  about: "boot images: ELF headers/segments/symbols from the input, raw images, initrd placement, RAM sizes; the devicetree parser",
  maxLength: 2048,
  setup: () => loadCoreModule(),
  run: (data, module) => runLoaders(module, data),
  rejects: isOneLineError,
  seeds,
};
