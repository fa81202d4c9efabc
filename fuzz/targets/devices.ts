/**
 * The register-programmed devices (UART, PLIC, goldfish RTC, sifive test finisher, ATA disk,
 * ethoc MAC, xHCI USB controller) driven as a guest drives them: accesses through the bus at any offset, size and
 * alignment (mostly in the registers a driver uses), interleaved with what their other side does
 * (serial input, interrupt lines, the clock, received frames, keys typed, USB devices plugged
 * in and out) and, for ethoc and xHCI, buffers, rings and contexts in the guest memory they DMA
 * to. A device must never throw into the host. Each input ends with
 * the device's state saved and restored into a new one.
 */
import { InputReader, InputWriter } from "../engine/input";
import { rejectsNothing, type Target } from "../engine/target";
import type { MmioDevice } from "../../host/devices/device";
import { RAM_BASE } from "../../host/machine/memory-map";
import { NS16550A, Uart16550 } from "../../host/devices/uart16550";
import { Plic, PLIC_NDEV, PLIC_SIZE, PLIC_CONTEXT_BASE, PLIC_CONTEXT_STRIDE, PLIC_ENABLE_BASE, PLIC_ENABLE_STRIDE, PLIC_PENDING_BASE } from "../../host/devices/plic";
import { GOLDFISH_RTC, GoldfishRtc } from "../../host/devices/goldfish-rtc";
import { SIFIVE_TEST, SifiveTest } from "../../host/devices/sifive-test";
import { AtaDisk, ATA_REG_SHIFT, ATA_WINDOW_SIZE, CMD } from "../../host/devices/ata";
import { Ethoc, ETHOC_BD_BASE, ETHOC_BD_COUNT, ETHOC_WINDOW_SIZE } from "../../host/devices/ethoc";
import { CMD_RS, CMD_INTE, CONFIG, CRCR, DCBAAP, DOORBELLS, ERDP, ERSTBA, ERSTSZ, IMAN, OP, PORTS, RUNTIME, USBCMD, XHCI_PORTS, XHCI_WINDOW_SIZE, Xhci } from "../../host/devices/xhci";
import { UsbKeyboard } from "../../host/devices/usb/keyboard";
import { UsbStorage } from "../../host/devices/usb/storage";
import { UsbSerial } from "../../host/devices/usb/serial";
import type { CharBackend } from "../../host/devices/backends";
import { DeviceRig, FuzzNetBackend, RIG_BASE, busAccess, dmaAddress, interestingU32, saveRestore } from "./rig";

interface Rigged {
  device: MmioDevice;
  /** Where a driver's accesses go (offsets in the window), for most accesses. */
  offset(input: InputReader): number;
  /** A value a driver might write. */
  value(input: InputReader): number;
  /** What the device's other side does (to `device`: this one, or one restored from its state). */
  event(device: MmioDevice, input: InputReader): void;
  fresh(): MmioDevice;
}

interface DeviceSpec {
  name: string;
  about: string;
  /** Its MMIO window. */
  size: number;
  make(rig: DeviceRig, input: InputReader): Rigged;
  /** Seed programs: a driver's usual sequences as (offset, size, value) writes. */
  seeds: { offset: number; size: 1 | 2 | 4; value: number }[][];
}

const noEvent = (): void => {};

const SPECS: DeviceSpec[] = [
  {
    name: "uart",
    size: NS16550A.size,
    about: "ns16550a UART: registers, FIFOs, loopback, interrupts, serial input",
    make(rig, input) {
      const make = () => new Uart16550(() => {}, () => {});
      const uart = make();
      return {
        device: uart, fresh: make,
        offset: (i) => i.int(0, 7),
        value: (i) => (i.bool() ? i.u8() : interestingU32(i)),
        event: (dev, i) => { for (const b of i.blob(32)) (dev as Uart16550).receive(b); },
      };
    },
    seeds: [[{ offset: 3, size: 1, value: 0x80 }, { offset: 0, size: 1, value: 1 }, { offset: 3, size: 1, value: 3 }, { offset: 2, size: 1, value: 7 }, { offset: 1, size: 1, value: 0xf }, { offset: 4, size: 1, value: 0x1b }, { offset: 0, size: 1, value: 0x41 }]],
  },
  {
    name: "plic",
    size: PLIC_SIZE,
    about: "PLIC: priorities, pending, enables, thresholds and claim/complete of 4 harts, lines driven by the input",
    make(rig, input) {
      const harts = input.int(1, 4);
      const make = () => new Plic({ set: () => {} }, harts);
      const plic = make();
      return {
        device: plic, fresh: make,
        offset: (i) => {
          const ctx = i.int(0, 2 * harts);
          switch (i.int(0, 4)) {
            case 0: return 4 * i.int(0, 127); // priorities
            case 1: return PLIC_PENDING_BASE + 4 * i.int(0, 31);
            case 2: return PLIC_ENABLE_BASE + ctx * PLIC_ENABLE_STRIDE + 4 * i.int(0, 31);
            default: return PLIC_CONTEXT_BASE + ctx * PLIC_CONTEXT_STRIDE + 4 * i.int(0, 2);
          }
        },
        value: (i) => (i.bool() ? i.int(0, 130) : interestingU32(i)),
        event: (dev, i) => (dev as Plic).irqLine(i.int(1, PLIC_NDEV))(i.bool()), // as the board wires devices: sources 1..ndev
      };
    },
    seeds: [[{ offset: 40, size: 4, value: 1 }, { offset: PLIC_ENABLE_BASE + PLIC_ENABLE_STRIDE, size: 4, value: 1 << 10 }, { offset: PLIC_CONTEXT_BASE + PLIC_CONTEXT_STRIDE, size: 4, value: 0 }, { offset: PLIC_CONTEXT_BASE + PLIC_CONTEXT_STRIDE + 4, size: 4, value: 0 }, { offset: PLIC_CONTEXT_BASE + PLIC_CONTEXT_STRIDE + 4, size: 4, value: 10 }]],
  },
  {
    name: "rtc",
    size: GOLDFISH_RTC.size,
    about: "goldfish RTC: time latch, setting the time, alarms, interrupts, the host clock moving",
    make(rig, input) {
      let ns = BigInt(input.u32()) * 1_000_000_000n;
      const make = () => new GoldfishRtc(() => {}, () => ns);
      const rtc = make();
      return {
        device: rtc, fresh: make,
        offset: (i) => 4 * i.int(0, 8),
        value: interestingU32,
        event: (dev, i) => { ns += BigInt(i.u32()) * BigInt(i.int(1, 1_000_000)); (dev as GoldfishRtc).poll(); },
      };
    },
    seeds: [[{ offset: 0, size: 4, value: 0 }, { offset: 4, size: 4, value: 0 }, { offset: 0xc, size: 4, value: 5 }, { offset: 8, size: 4, value: 1000 }, { offset: 0x10, size: 4, value: 1 }, { offset: 0x1c, size: 4, value: 1 }]],
  },
  {
    name: "test-finisher",
    size: SIFIVE_TEST.size,
    about: "sifive test finisher: pass, fail with codes, reset, everything else",
    make() {
      const make = () => new SifiveTest(() => {});
      return { device: make(), fresh: make, offset: (i) => i.int(0, 7), value: (i) => (i.bool() ? i.pick([0x3333, 0x5555, 0x7777]) | (i.u16() << 16) : interestingU32(i)), event: noEvent };
    },
    seeds: [[{ offset: 0, size: 4, value: 0x5555 }, { offset: 0, size: 4, value: 0x13333 }, { offset: 0, size: 4, value: 0x7777 }]],
  },
  {
    name: "ata",
    size: ATA_WINDOW_SIZE,
    about: "ATA disk in PIO mode: task file, every command, 28/48-bit LBAs, multiple mode, the data register at every width",
    make(rig, input) {
      const disk = rig.disk(input, input.int(0, 3) === 0);
      const make = () => new AtaDisk("ata0", disk, () => {}, { serial: "FUZZ" });
      const ata = make();
      const cmds = Object.values(CMD) as number[];
      return {
        device: ata, fresh: make,
        offset: (i) => (i.int(0, 7) === 0 ? 0x100 + (i.int(0, 1) << ATA_REG_SHIFT) : i.int(0, 7) << ATA_REG_SHIFT),
        value: (i) => (i.bool() ? i.pick(cmds) : i.bool() ? i.u8() : interestingU32(i)),
        event: noEvent,
      };
    },
    // IDENTIFY and read its data; READ SECTORS of 2 at LBA 1; WRITE SECTORS of 1 with data.
    seeds: [
      [{ offset: 6 << 2, size: 1, value: 0xe0 }, { offset: 7 << 2, size: 1, value: 0xec }, ...Array.from({ length: 8 }, () => ({ offset: 0, size: 2 as const, value: 0 }))],
      [{ offset: 2 << 2, size: 1, value: 2 }, { offset: 3 << 2, size: 1, value: 1 }, { offset: 6 << 2, size: 1, value: 0xe0 }, { offset: 7 << 2, size: 1, value: 0x20 }],
      [{ offset: 2 << 2, size: 1, value: 1 }, { offset: 3 << 2, size: 1, value: 0 }, { offset: 6 << 2, size: 1, value: 0xe0 }, { offset: 7 << 2, size: 1, value: 0x30 }, ...Array.from({ length: 8 }, (_, k) => ({ offset: 0, size: 4 as const, value: 0x01020304 * k }))],
    ],
  },
  {
    name: "ethoc",
    size: ETHOC_WINDOW_SIZE,
    about: "OpenCores ethoc MAC: registers, MDIO/PHY, buffer descriptors pointing anywhere, DMA of frames both ways",
    make(rig, input) {
      const backend = new FuzzNetBackend();
      const make = () => new Ethoc("ethoc0", backend, rig.mem, () => {}, {});
      const nic = make();
      return {
        device: nic, fresh: make,
        offset: (i) => (i.bool() ? 4 * i.int(0, 0x15) : ETHOC_BD_BASE + 4 * i.int(0, 2 * ETHOC_BD_COUNT - 1)),
        value: (i) => { switch (i.int(0, 3)) { case 0: return dmaAddress(i) >>> 0; case 1: return i.u16() << 16 | i.pick([0x8000, 0xc000, 0xe000, 0xa000, 0]); default: return interestingU32(i); } },
        // The backend delivers to the device it was last attached to: a restored one attaches anew.
        event: (_dev, i) => { if (i.bool()) backend.deliver(i.blob(1600)); else rig.ramWrite(RAM_BASE + i.int(0, 0xffff), i.blob(256)); },
      };
    },
    // Transmit: a frame in RAM, TX BD 0 (length 60, READY|IRQ|WRAP|PAD|CRC) pointing at it, TX enabled.
    seeds: [[{ offset: 0x08, size: 4, value: 0x7f }, { offset: ETHOC_BD_BASE + 4, size: 4, value: RAM_BASE + 0x1000 }, { offset: ETHOC_BD_BASE, size: 4, value: (60 << 16) | 0xf800 }, { offset: ETHOC_BD_BASE + 0x200 + 4, size: 4, value: RAM_BASE + 0x2000 }, { offset: ETHOC_BD_BASE + 0x200, size: 4, value: 0xe000 }, { offset: 0, size: 4, value: 0x0000a403 }]],
  },
  {
    name: "xhci",
    size: XHCI_WINDOW_SIZE,
    about: "xHCI USB controller with a keyboard, a disk and a CDC-ACM port: registers, doorbells, command, event and transfer rings, contexts and TRBs anywhere in (or out of) RAM, keys, serial input, hot-plug",
    make(rig, input) {
      const disk = rig.disk(input, input.int(0, 3) === 0);
      let toGuest: ((b: Uint8Array) => void) | null = null;
      const serial: CharBackend = { write() {}, attach(r) { toGuest = r; }, close() {} };
      const device = (name: string) => (name === "kbd" ? new UsbKeyboard(name) : name === "disk" ? new UsbStorage(name, disk) : new UsbSerial(name, serial));
      // What is plugged in where: a restored controller must have the same devices on the same ports.
      const plugged = new Map<string, number>([["kbd", 1], ["disk", 2], ["serial", 3]]);
      const make = () => {
        const hc = new Xhci("xhci0", rig.mem, () => {});
        for (const [name, port] of plugged) hc.attach(device(name), port);
        return hc;
      };
      const regs = [
        (i: InputReader) => 4 * i.int(0, 8), // capabilities
        (i: InputReader) => OP + 4 * i.int(0, 15), // operational
        (i: InputReader) => PORTS + 4 * i.int(0, 4 * XHCI_PORTS - 1),
        (i: InputReader) => RUNTIME + 4 * i.int(0, 15),
        (i: InputReader) => DOORBELLS + 4 * i.int(0, 8),
      ];
      return {
        device: make(), fresh: make,
        offset: (i) => regs[i.int(0, regs.length - 1)]!(i),
        value: (i) => { switch (i.int(0, 3)) { case 0: return dmaAddress(i) >>> 0; case 1: return i.int(0, 31); case 2: return i.u8() | (i.u8() << 16); default: return interestingU32(i); } },
        event: (dev, i) => {
          const hc = dev as Xhci;
          switch (i.int(0, 4)) {
            case 0: {
              const k = hc.devices().find((d) => d.device instanceof UsbKeyboard)?.device as UsbKeyboard | undefined;
              k?.type(i.blob(16));
              break;
            }
            case 1: toGuest?.(i.blob(600)); break;
            case 2: {
              // Unplug a device, or plug it in again (on the port the input picks, if free).
              const name = i.pick(["kbd", "disk", "serial"]);
              const port = i.int(1, XHCI_PORTS);
              if (plugged.has(name)) {
                hc.detach(name);
                plugged.delete(name);
              } else if (![...plugged.values()].includes(port)) {
                hc.attach(device(name), port);
                plugged.set(name, port);
              }
              break;
            }
            default: {
              // A TRB, a context or a table entry somewhere a driver would have put one.
              const at = RAM_BASE + 16 * i.int(0, 4095);
              const w = new Uint8Array(16);
              const v = new DataView(w.buffer);
              const ptr = i.bool() ? RAM_BASE + 16 * i.int(0, 4095) : dmaAddress(i);
              v.setUint32(0, ptr % 2 ** 32, true);
              v.setUint32(4, Math.floor(ptr / 2 ** 32) >>> 0, true);
              v.setUint32(8, i.bool() ? i.int(0, 0x20000) : i.u32(), true);
              v.setUint32(12, ((i.int(1, 40) << 10) | (i.u16() & 0x3fe) | (i.u8() << 16) | (i.int(0, 32) << 24) | (i.bool() ? 1 : 0)) >>> 0, true);
              rig.ramWrite(at, w);
            }
          }
        },
      };
    },
    // A driver's start: slots, DCBAA, command ring, one event segment (its ERST entry in RAM at
    // offset 0x3000 is what a later TRB write puts there), interrupter on, run; then doorbells.
    seeds: [[
      { offset: USBCMD, size: 4, value: 2 }, { offset: CONFIG, size: 4, value: 8 }, { offset: DCBAAP, size: 4, value: RAM_BASE + 0x1000 },
      { offset: CRCR, size: 4, value: RAM_BASE + 0x2001 }, { offset: ERSTSZ, size: 4, value: 1 }, { offset: ERDP, size: 4, value: RAM_BASE + 0x4000 },
      { offset: ERSTBA, size: 4, value: RAM_BASE + 0x3000 }, { offset: IMAN, size: 4, value: 2 }, { offset: USBCMD, size: 4, value: CMD_RS | CMD_INTE },
      { offset: PORTS, size: 4, value: 0x210 }, { offset: DOORBELLS, size: 4, value: 0 }, { offset: DOORBELLS + 4, size: 4, value: 1 },
    ]],
  },
];

const OPS = 16;
const OP_ACCESS = 9;

function runDevice(spec: DeviceSpec, rig: DeviceRig, data: Uint8Array): void {
  if (spec.name === "ethoc" || spec.name === "xhci") rig.reset(); // the ones that DMA: the others leave RAM alone
  const input = new InputReader(data);
  const d = spec.make(rig, input);
  let device = d.device;
  let bus = rig.busWith(device);
  for (let ops = 0; ops < 400 && !input.done; ops++) {
    const op = input.int(0, OPS - 1);
    if (op < 5) bus.write(RIG_BASE + d.offset(input), input.pick([1, 2, 4, 8]), d.value(input), d.value(input));
    else if (op < OP_ACCESS) bus.read(RIG_BASE + d.offset(input), input.pick([1, 2, 4, 8]));
    else if (op < 12) busAccess(bus, input, device.size, device.size, input.bool());
    else if (op < 15) d.event(device, input);
    else {
      // Saved and restored (as a snapshot or a migration would), maybe edited: go on with the restored one.
      const next = saveRestore(device, d.fresh, input);
      if (!next) return;
      device = next;
      bus = rig.busWith(device);
    }
  }
  saveRestore(device, d.fresh, input);
}

/**
 * A seed: the device made with all options 0, then the writes. Each write is op 0 with the
 * offset and value the target's pickers read back (the offset picker's raw form is target
 * specific, so seeds go through the generic access op: bus address, size, value).
 */
function seedInputs(spec: DeviceSpec): Uint8Array[] {
  return spec.seeds.map((writes) => {
    const w = new InputWriter();
    if (spec.name === "plic") w.int(1, 4, 2);
    if (spec.name === "rtc") w.u32(1_700_000_000);
    if (spec.name === "ata") w.int(0, 3, 1).int(0, 3, 1).int(1, 64, 32);
    if (spec.name === "xhci") w.int(0, 3, 1).int(0, 3, 1).int(1, 64, 32);
    for (const x of writes) {
      // busAccess(write): in-registers flag, offset in [0, size), size, value (case 3 of interestingU32), high word.
      const sizeIndex = [1, 2, 4, 8].indexOf(x.size);
      w.int(0, OPS - 1, OP_ACCESS).bool(true).bool(true);
      w.int(0, spec.size - 1, x.offset).u8(sizeIndex).int(0, 3, 3).u32(x.value).int(0, 3, 1).u8(0);
    }
    return w.finish();
  });
}

export const DEVICE_TARGETS: Target<DeviceRig>[] = SPECS.map((spec) => ({
  name: spec.name,
  about: spec.about,
  maxLength: 4096,
  setup: () => new DeviceRig(),
  run: (data, rig) => runDevice(spec, rig, data),
  rejects: rejectsNothing,
  seeds: () => seedInputs(spec),
}));
