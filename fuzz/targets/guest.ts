/**
 * A guest program from the input, run on a whole machine with every device the board has (virtio
 * blk, net, console, rng; an ATA disk; an ethoc NIC; the xHCI controller with a keyboard, a disk and
 * a serial port; UART, PLIC, RTC, test finisher): loads and
 * stores of every width and alignment at device registers, RAM, its end, the boot ROM and
 * unmapped space; CSR accesses to any CSR; atomics; WFI, ecall, fences; any instruction word.
 * A trap handler skips whatever faults. The machine steps a bounded budget: a step must return
 * (in time) and never throw into the host; the guest may stop it (the test finisher, a trap loop).
 */
import { InputReader, InputWriter } from "../engine/input";
import { rejectsNothing, type Target } from "../engine/target";
import { loadCoreModule } from "../../host/platform/node/core";
import { VirtMachine } from "../../host/machine/virt";
import { RAM_BASE } from "../../host/machine/memory-map";
import { MemoryDisk } from "../../host/platform/memory/disk";
import { FuzzNetBackend } from "./rig";

const MEMORY = 16 << 20;
const HANDLER = RAM_BASE + 0x1000;
const T0 = 5, T1 = 6, T2 = 7, T3 = 28;
const DEVICES = [0x100000, 0x101000, 0x2000000, 0xc000000, 0xc200000, 0x10000000, 0x10001000, 0x10008000, 0x10007000, 0x10010000, 0x10020000, 0x10020400,
  0x10030000, 0x10030440, 0x10030600, 0x10030800]; // xHCI: capabilities, ports, runtime, doorbells

const iType = (imm: number, rs1: number, f3: number, rd: number, op: number) => (((imm & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op) >>> 0;
const sType = (imm: number, rs2: number, rs1: number, f3: number) => ((((imm >> 5) & 0x7f) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | ((imm & 0x1f) << 7) | 0x23) >>> 0;
const lui = (rd: number, v: number) => (((v >>> 12) << 12) | (rd << 7) | 0x37) >>> 0;
/** rd = v (32 bits, sign-extended as lui/addi make it). */
const li = (rd: number, v: number) => {
  const lo = ((v & 0xfff) << 20) >> 20;
  return [lui(rd, (v - lo) >>> 0), iType(lo, rd, 0, rd, 0x13)];
};

function address(input: InputReader): number {
  switch (input.int(0, 4)) {
    case 0: return input.pick(DEVICES) + input.int(0, 0x1ff);
    case 1: return RAM_BASE + 0x10000 + input.int(0, 0xffff);
    case 2: return input.pick([0x1000, 0, 0x0fff_f000, RAM_BASE + MEMORY - 8, RAM_BASE - 8, 0x7fff_fff8, 0x2004000]);
    default: return input.u32() & ~0xfff | (input.int(0, 1) ? 0xffe : 0);
  }
}

function program(input: InputReader): Uint32Array {
  const words: number[] = [];
  // mtvec = HANDLER; the handler (at HANDLER) skips the instruction that trapped.
  words.push(...li(T3, HANDLER), iType(0x305, T3, 1, 0, 0x73));
  for (let n = 0; n < 48 && !input.done; n++) {
    switch (input.int(0, 9)) {
      case 0: case 1: words.push(...li(T0, address(input))); break;
      case 2: words.push(sType(input.int(-64, 64), T1, T0, input.int(0, 3))); break; // sb/sh/sw/sd
      case 3: words.push(iType(input.int(-64, 64), T0, input.pick([0, 1, 2, 3, 4, 5, 6]), T2, 0x03)); break; // loads
      case 4: words.push(...li(T1, input.u32())); break;
      case 5: words.push(iType(input.bool() ? input.int(0, 0xfff) : input.pick([0x300, 0x304, 0x305, 0x180, 0x344, 0x14d, 0x7a0, 0x3a0, 0x3b0, 0xb00, 0xc01]), T1, input.int(1, 7) & ~4 || 1, T2, 0x73)); break;
      case 6: words.push(input.u32()); break; // any word
      case 7: words.push((input.pick([0x08, 0x00, 0x02, 0x03]) << 27 | T1 << 20 | T0 << 15 | input.int(2, 3) << 12 | T2 << 7 | 0x2f) >>> 0); break; // amoswap/amoadd/lr/sc
      case 8: words.push(input.pick([0x10500073, 0x00000073, 0x00100073, 0x0ff0000f, 0x0000100f, 0x12000073, 0x30200073])); break; // wfi ecall ebreak fence fence.i sfence.vma mret
      default: words.push(...li(T1, input.u32()), iType(0x344, T1, 2, 0, 0x73)); // csrs mip
    }
  }
  words.push(0x0000006f); // j . (the budget ends the step)
  return Uint32Array.from(words);
}

function runGuest(module: WebAssembly.Module, data: Uint8Array): void {
  const input = new InputReader(data);
  const code = program(input);
  // Handler: t3 = mepc + 4; mepc = t3; mret.
  const handler = Uint32Array.from([iType(0x341, 0, 2, T3, 0x73), iType(4, T3, 0, T3, 0x13), iType(0x341, T3, 1, 0, 0x73), 0x30200073]);
  const image = new Uint8Array(0x1000 + handler.byteLength);
  image.set(new Uint8Array(code.buffer).subarray(0, 0x1000));
  image.set(new Uint8Array(handler.buffer), 0x1000);
  const m = new VirtMachine({
    module, memory: MEMORY, harts: input.int(1, 2), bios: null, kernel: { name: "fuzz-guest", bytes: image },
    drives: [{ backend: new MemoryDisk(64 * 1024) }, { backend: new MemoryDisk(64 * 1024), if: "ide" }],
    nets: [{ backend: new FuzzNetBackend() }, { backend: new FuzzNetBackend(), model: "ethoc" }],
    usb: { devices: [{ type: "usb-kbd", id: "kbd" }, { type: "usb-storage", id: "disk", backend: new MemoryDisk(64 * 1024) }, { type: "usb-serial", id: "serial", backend: { write() {}, attach() {}, close() {} } }] },
    virtioConsole: true, output: () => {}, input: () => (input.bool() ? input.u8() : -1),
  });
  try {
    for (let i = 0; i < 4; i++) if (m.step(100_000).state === "stopped") break;
  } finally {
    m.close();
  }
}

function seeds(): Uint8Array[] {
  // Print "hi" on the UART; read virtio's magic; a CSR walk; a store to the ROM.
  const w = new InputWriter();
  w.int(0, 9, 0).int(0, 4, 0).u8(5).u16(0).int(0, 9, 4).u32(0x68).int(0, 9, 2).u8(64).u8(0);
  w.int(0, 9, 0).int(0, 4, 0).u8(6).u16(0).int(0, 9, 3).u8(64).u8(2);
  w.int(0, 9, 5).bool(false).u8(0).u8(2);
  w.int(0, 9, 0).int(0, 4, 2).u8(0).int(0, 9, 2).u8(64).u8(3);
  return [w.finish()];
}

export const guestTarget: Target<WebAssembly.Module> = {
  name: "guest",
  about: "a guest program from the input on a machine with every device: MMIO at every width and alignment, CSRs, atomics, traps",
  maxLength: 1024,
  setup: () => loadCoreModule(),
  run: (data, module) => runGuest(module, data),
  rejects: rejectsNothing,
  seeds,
};
