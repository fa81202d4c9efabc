// The `virt` board: one VM's core, bus and devices, the boot images in guest memory, and the
// exit handling loop. It runs wherever its caller runs (a worker in the CLI, the test process,
// a browser) and knows nothing about threads or terminals: console bytes go to a sink and come
// from a source, and step() says how long the board may sleep.
import { Core, type Paging, type PagingStats } from "../core/core";
import * as L from "../core/layout";
import { Bus } from "./bus";
import { writeBootRom } from "./boot-rom";
import { buildVirtDtb } from "./virt-dt";
import { parseFdt } from "./fdt";
import { isElf, parseElf } from "./elf";
import { BOARD, RAM_BASE, checkRoom, place, placeFamily, type Attached, type Placement } from "./memory-map";
import { Uart16550 } from "../devices/uart16550";
import { Plic } from "../devices/plic";
import { SifiveTest } from "../devices/sifive-test";
import { GoldfishRtc } from "../devices/goldfish-rtc";
import { BuiltinSbi } from "../sbi/sbi";
import { VirtioMmio, VirtioBlk, VirtioNet, VirtioConsole, VirtioRng, type VirtioDevice } from "../virtio";
import { AtaDisk } from "../devices/ata";
import { Ethoc } from "../devices/ethoc";
import { Xhci } from "../devices/xhci";
import type { UsbDevice } from "../devices/usb/usb";
import { UsbKeyboard } from "../devices/usb/keyboard";
import { UsbStorage } from "../devices/usb/storage";
import { UsbSerial } from "../devices/usb/serial";
import { TokenBucket, type RateLimit } from "../devices/rate-limit";
import { StateReader, bytesState, type DeviceState } from "../devices/state";
import type { CharBackend, DiskBackend, GuestMemory, NetBackend } from "../devices/backends";
import type { IrqLine, MmioDevice } from "../devices/device";
import { parseMac } from "../net/packet";
import { TranslationTier, type JitMode, type JitStats } from "../jit/tier";
import type { JitCompiler } from "../jit/compiler";
import { MachineDebugger } from "./debug";
import { EXIT_REMOTE_FAILED, LentHarts } from "./remote-harts";

/** The ISA every hart advertises in the devicetree. */
export const HART_ISA = "rv64imafdc_zicntr_zicsr_zifencei_zihpm_zba_zbb_zbs_sstc";
export const MMU_TYPE = "riscv,sv48";
/** Where a kernel goes when firmware runs first (OpenSBI's fw_jump expects it here). */
export const KERNEL_ADDR = RAM_BASE + 0x200000;

/** How a disk is attached: virtio-blk (/dev/vdX) or an ATA controller (/dev/sdX). */
export type DriveInterface = "virtio" | "ide";
/** Which NIC a network backend gets: virtio-net or an OpenCores Ethernet MAC (ethoc). */
export type NicModel = "virtio" | "ethoc";

/** A USB device on the xHCI controller: a keyboard, a disk (bulk-only mass storage) or a CDC-ACM serial port. */
export type UsbDeviceSpec =
  | { type: "usb-kbd"; id: string; port?: number }
  | { type: "usb-storage"; id: string; port?: number; backend: DiskBackend; readOnly?: boolean; serial?: string }
  | { type: "usb-serial"; id: string; port?: number; backend: CharBackend };

export interface Image {
  /** Shown in errors. */
  name: string;
  bytes: Uint8Array;
}

export interface VirtConfig {
  module: WebAssembly.Module;
  /** Guest RAM in bytes. */
  memory: number;
  harts?: number;
  /** Memory virtualization: nested (default) or shadow paging. */
  paging?: Paging;
  /** The translation tier (docs/TRANSLATION.md): off (the default), on (hot code), all (every cached page). */
  jit?: JitMode;
  /** Where "on" compiles its translations (Platform.jitCompiler); absent: on this thread, in the background. */
  jitCompiler?: JitCompiler;
  /**
   * M-mode firmware; null starts the kernel directly in M-mode (QEMU's -bios none); "builtin"
   * starts it in S-mode with the host's SBI (paravirtualized).
   */
  bios: Image | null | "builtin";
  kernel?: Image;
  initrd?: Image;
  append?: string;
  /** The guest's devicetree instead of the board's (QEMU's -dtb): /chosen gets bootargs and the initrd, as QEMU sets them. */
  dtb?: Image;
  /**
   * Disks, in order: virtio-blk (the default; the first is /dev/vda) or ATA (the first on
   * controller 0, /dev/sda).
   */
  drives?: { backend: DiskBackend; serial?: string; readOnly?: boolean; if?: DriveInterface }[];
  /** NICs, in order: virtio-net (the default) or ethoc. NIC i has MAC 52:54:00:12:34:(56 + i). */
  nets?: { backend: NetBackend; model?: NicModel }[];
  /** An xHCI USB controller with these devices (in port order, or on the ports they name); absent: none. */
  usb?: { devices: UsbDeviceSpec[] };
  /** Add a virtio-console (hvc0) and a virtio-rng. */
  virtioConsole?: boolean;
  /** Add a virtio-rng (QEMU's -device virtio-rng-device); the console above brings one already. */
  virtioRng?: boolean;
  /** virtio-mmio's legacy (version 1) interface instead of version 2: QEMU's default, -global virtio-mmio.force-legacy=true. */
  virtioLegacy?: boolean;
  /** A reboot the guest asks for ends the VM as a poweroff does (QEMU's -no-reboot). */
  noReboot?: boolean;
  /** Receives console output. */
  output: (bytes: Uint8Array) => void;
  /** Supplies console input: returns the next byte or -1. */
  input?: () => number;
  clock?: () => number;
  /** Also time the host's handling of each exit (costs two clock reads per exit). */
  timeExits?: boolean;
  /** Bandwidth limits for the whole VM (virtio devices; each network direction separately). */
  limits?: BandwidthLimits;
  /**
   * Resume a VM built elsewhere: the state its machine saved, and its VM memory as it is (moved
   * from another thread) or none (a fresh one the restorer fills: host/state/). Nothing is
   * loaded or reset; the devices take their saved state.
   */
  resume?: { memory?: WebAssembly.Memory; state: unknown };
}

/**
 * A machine's state outside the VM memory, as plain JSON data (host/devices/state.ts): its
 * devices by bus name, the bandwidth buckets, the built-in SBI, counters, the boot layout and
 * the DTB.
 */
export type MachineState = DeviceState & {
  devices: { [name: string]: DeviceState };
  buckets: { [name: string]: DeviceState };
  sbi: DeviceState | null;
  resetRequested: boolean;
  stopReason: StopReason | null;
  exits: VirtMachine["exits"];
  exitSeconds: { mmio: number; sbi: number; tohost: number };
  work: number;
  trapWork: number[];
  mmio: { [device: string]: number };
  layout: {
    entry: number;
    dtb: number;
    kernel: { start: number; end: number; entry: number } | null;
    initrd: { start: number; end: number } | null;
    tohost: number | null;
  };
  /** Base64. */
  dtb: string;
};

export interface BandwidthLimits {
  diskBytesPerSec?: number;
  diskOpsPerSec?: number;
  netBytesPerSec?: number;
}

/** Where a VM's time went: exits by reason, MMIO by device, SBI calls by extension. */
export interface MachineStats {
  instructions: number;
  exits: { mmio: number; sbi: number; tohost: number; halt: number; budget: number; attention: number };
  /** MMIO exits per device (bus name). */
  mmio: Record<string, number>;
  /** SBI calls per extension (para mode). */
  sbi: Record<string, number>;
  /** Host seconds spent handling each kind of exit; only with timeExits. */
  exitSeconds?: { mmio: number; sbi: number; tohost: number };
  /**
   * Memory virtualization: the paging mode and its counters. Page-table write traps (shadow
   * paging) and dirty-logging faults are handled inside the core, so they are counted here
   * rather than among the exits to the host.
   */
  paging: { mode: Paging } & PagingStats;
  /** The translation tier's figures, when it is on (this thread's: a borrower's are in `spread`). */
  jit?: JitStats;
  /** Harts that ran on another pCPU's thread (remote-harts.ts): which, where, its CPU time and translations there. */
  spread?: BorrowedStats;
}

/** What a pCPU that borrowed harts of a VM did with them. */
export interface BorrowedStats {
  harts: number[];
  pcpu: number;
  cpuMs: number;
  jit?: JitStats;
}

/** The exit status of a VM that failed in the VMM rather than by the guest's own doing (sysexits' EX_SOFTWARE). */
export const EMULATION_FAILURE = 70;

export type StopReason =
  | { kind: "poweroff"; code: 0 }
  /** The guest asked for a reset and the machine was told not to reboot (-no-reboot). */
  | { kind: "reset"; code: 0 }
  | { kind: "fail"; code: number }
  | { kind: "htif"; code: number }
  | { kind: "error"; code: number; message: string };

/** A debugger's trigger or breakpoint stopped a hart (EXIT_DEBUG): what it matched. */
export interface DebugStop {
  hart: number;
  /** The pc for a breakpoint, the data address for a watchpoint. */
  addr: bigint;
  /** 4 execute, 2 store, 1 load. */
  kind: number;
  /** The trigger that fired, -1 for the host's breakpoint list. */
  trigger: number;
}

/** What step() found. */
export type StepResult =
  /** reset: the guest reset the machine during the step (it is at power-on again). */
  | { state: "running"; reset?: true }
  /** A debugger's breakpoint or watchpoint stopped a hart (a watchpoint after its access, as QEMU's). */
  | { state: "debug"; stop: DebugStop }
  | { state: "idle"; sleepSeconds: number }
  | { state: "stopped"; reason: StopReason };

export interface BootLayout {
  entry: number;
  dtb: number;
  kernel?: { start: number; end: number; entry: number };
  initrd?: { start: number; end: number };
  tohost?: number;
}

const BUDGET_PER_STEP = 2_000_000;
/** With jit "all", the translator runs after every this much work (see runHart). */
const TRANSLATE_ALL_QUANTUM = 2000;
const CSR_MIE = 0x304;
const CSR_MIP = 0x344;
const CSR_MCAUSE = 0x342;
const CSR_MTVAL = 0x343;
const CSR_SCAUSE = 0x142;
const CSR_STVAL = 0x143;
/** Work a hart of a multi-hart VM runs before the next one's turn (see step()). */
const HART_QUANTUM = 50_000;
/** Work an exit to the host costs beyond the instruction (a device model, an SBI call). */
const EXIT_WORK = 64;
/** Work spent on traps alone, with no instruction retired, after which a hart is stuck (seconds). */
const TRAP_LOOP_WORK = 1_000_000_000;
const OUTPUT_FLUSH_BYTES = 64 * 1024;
const HTIF_DEV_SYSCALL = 0;
const HTIF_DEV_CONSOLE = 1;
const STATE_KIND = "virt-machine";
const STATE_VERSION = 1;
/** Largest DTB a saved machine may carry (ours are a few KiB). */
const MAX_DTB = 1 << 20;

export class VirtMachine {
  readonly core: Core;
  private readonly jit: TranslationTier | null;
  readonly bus: Bus;
  readonly uart: Uart16550;
  readonly plic: Plic;
  readonly rtc: GoldfishRtc;
  readonly dtb: Uint8Array;
  readonly layout: BootLayout;
  /** The built-in SBI, when the VM boots without guest firmware. */
  readonly sbi: BuiltinSbi | null = null;
  private stopReason: StopReason | null = null;
  /** A debugger's breakpoint or watchpoint that stopped a hart in this step. */
  private debugStopped: DebugStop | null = null;
  /** The debugger's breakpoints and watchpoints on this machine's harts (a GDB stub's). */
  readonly debugger: MachineDebugger = new MachineDebugger(this);
  private resetRequested = false;
  // Console output waiting for the sink: single bytes (UART, HTIF) and whole buffers (virtio,
  // SBI). Flushed at the end of each step, or as soon as OUTPUT_FLUSH_BYTES accumulate, so a
  // guest printing without pause cannot grow host memory.
  private outBytes: number[] = [];
  private outChunks: Uint8Array[] = [];
  private outSize = 0;
  private readonly input: () => number;
  /** The virtio devices, in slot order of creation (first = highest slot, probed first). */
  readonly virtio: VirtioMmio[] = [];
  /** ATA disks, by controller. */
  readonly ata: AtaDisk[] = [];
  /** OpenCores Ethernet MACs, in order. */
  readonly ethoc: Ethoc[] = [];
  readonly virtioConsole: VirtioConsole | null = null;
  /** The USB controller, if the machine has one. */
  readonly xhci: Xhci | null = null;
  /** The backends of the USB devices plugged in, by device id (closed when unplugged). */
  private readonly usbBackends = new Map<string, DiskBackend | CharBackend>();
  /** The USB keyboard console input goes to instead of the console (usbConsole()), or null. */
  private consoleKeyboard: UsbKeyboard | null = null;
  /** The kernel command line names hvc0 as its console: console input goes there. */
  private readonly inputToHvc: boolean;
  /** Exits by kind, for statistics. */
  readonly exits = { mmio: 0, sbi: 0, tohost: 0, halt: 0, budget: 0, attention: 0 };
  /** Work units all harts have done (see step()): what a scheduler sizes budgets by. */
  work = 0;
  /** Bytes devices have mapped for DMA since the last exit was charged. */
  private dmaBytes = 0;
  /** Whether the last runHart() ended because its budget was spent. */
  private budgetSpent = false;
  /** Per hart, what is left of the current step's budget. */
  private readonly hartBudgets: Float64Array;
  /** Per hart, work spent on traps alone since it last retired an instruction (checkTrapLoop). */
  private readonly trapWork: number[];
  private readonly exitSeconds = { mmio: 0, sbi: 0, tohost: 0 };
  /** The devices in their slots, for the devicetree. */
  private readonly attached: Attached[] = [];
  /** The VM's bandwidth buckets by name ("disk-bytes"), shared by its devices. */
  private readonly buckets = new Map<string, TokenBucket>();
  /** Harts lent to another pCPU's thread (remote-harts.ts), or null: every hart runs here. */
  private lent: LentHarts | null = null;
  // An exit a lent hart handed back costs this VM's step what it costs a local hart's.
  private readonly handleLentExit = (h: number, reason: number): boolean => {
    this.dmaBytes = 0;
    const on = this.handleExit(h, reason);
    this.work += EXIT_WORK + Math.floor(this.dmaBytes / 64);
    this.dmaBytes = 0;
    return on;
  };
  // A lent hart goes out whenever it may run, asleep in WFI or not (the borrower sleeps it until
  // an interrupt or its timer); it stays here while stopped or suspended by the SBI, held by a
  // debugger, or the machine stops.
  private readonly lentCanRun = (h: number) => !this.stopReason && !this.resetRequested && !this.debugStopped && !this.debugger.held(h) && (this.sbi ? this.sbi.started(h) || this.sbi.runnable(h) : true);

  constructor(private readonly cfg: VirtConfig) {
    const harts = cfg.harts ?? 1;
    checkBoard((cfg.drives ?? []).map((d) => ({ if: d.if ?? "virtio" })), (cfg.nets ?? []).map((n) => ({ model: n.model ?? "virtio" })), cfg.virtioConsole === true, cfg.virtioRng === true);
    this.trapWork = new Array<number>(harts).fill(0);
    this.hartBudgets = new Float64Array(harts);
    this.core = new Core({ module: cfg.module, ramSize: cfg.memory, harts, clock: cfg.clock, paging: cfg.paging, memory: cfg.resume?.memory });
    this.jit = cfg.jit && cfg.jit !== "off" ? new TranslationTier(this.core, cfg.jit, cfg.jit === "on" ? cfg.jitCompiler : undefined) : null;
    this.input = cfg.input ?? (() => -1);
    this.inputToHvc = /(^|\s)console=hvc0/.test(cfg.append ?? "");
    this.bus = new Bus(this.core);
    this.plic = this.attach(place(BOARD.plic), new Plic({ set: (hart, bit, level) => this.core.setIrq(hart, bit, level) }, harts));
    const uart = place(BOARD.uart);
    this.uart = this.attach(uart, new Uart16550(this.line(uart), (b) => this.emitByte(b)));
    const rtc = place(BOARD.rtc);
    this.rtc = this.attach(rtc, new GoldfishRtc(this.line(rtc)));
    this.attach(place(BOARD.test), new SifiveTest((ev) => {
      if (ev.kind === "reset") this.resetRequested = true;
      else if (ev.kind === "poweroff") this.stop({ kind: "poweroff", code: 0 });
      else this.stop({ kind: "fail", code: ev.code });
    }));
    this.attached.push({ ...place(BOARD.clint), options: undefined }); // in the core: only its devicetree node is ours
    // DMA is charged to the guest's step as work (step()).
    const mem: GuestMemory = {
      view: (gpa, len) => { this.dmaBytes += len; return this.core.ramView(gpa, len); },
      read: (gpa, len) => { this.dmaBytes += len; return this.core.ramRead(gpa, len); },
    };
    this.attachVirtio(mem);
    this.attachLegacy(mem);
    if (cfg.usb) {
      const at = place(BOARD.xhci);
      (this as { xhci: Xhci | null }).xhci = this.attach(at, new Xhci("xhci0", mem, this.line(at)));
      for (const d of cfg.usb.devices) this.usbAttach(d);
    }
    if (cfg.bios === "builtin") {
      this.sbi = new BuiltinSbi(this.core, {
        consoleWrite: (bytes) => this.emit(bytes),
        consoleRead: () => this.input(),
        reset: (kind, failure) => {
          if (kind === "reboot") this.resetRequested = true;
          else this.stop(failure ? { kind: "fail", code: 1 } : { kind: "poweroff", code: 0 });
        },
        sameThread: (a, b) => (this.lent?.has(a) ?? false) === (this.lent?.has(b) ?? false),
      });
      this.core.setFlags(L.VMF_SBI_IN_HOST);
    }
    if (cfg.resume) {
      ({ layout: this.layout, dtb: this.dtb } = this.restore(cfg.resume.state));
    } else {
      const { layout, dtb } = this.loadImages();
      this.layout = layout;
      this.dtb = dtb;
    }
  }

  /** Put `device` in its place: on the bus, and in the devicetree with `options`. */
  private attach<D extends MmioDevice, O>(at: Placement<O>, device: D, options: O): D;
  private attach<D extends MmioDevice>(at: Placement<void>, device: D): D;
  private attach<D extends MmioDevice, O>(at: Placement<O>, device: D, options?: O): D {
    this.bus.attach(at.base, device);
    this.attached.push({ ...at, options });
    return device;
  }

  /** The interrupt line of a placed device (its first PLIC source). */
  private line(at: Placement<unknown>): IrqLine {
    return this.plic.irqLine(at.irqs[0]!);
  }

  /**
   * Everything outside the VM memory, as plain data: with the memory, what another thread needs
   * to go on running this VM (VirtConfig.resume). Call between steps. A memory in lazy mode is
   * completed first: its page source cannot leave this thread.
   */
  save(): MachineState {
    this.flushOutput();
    this.core.fetchAll();
    const { kernel, initrd, tohost } = this.layout;
    return {
      kind: STATE_KIND,
      version: STATE_VERSION,
      devices: Object.fromEntries(this.bus.devices().map((d) => [d.name, d.save()])),
      buckets: Object.fromEntries([...this.buckets].map(([name, b]) => [name, b.save()])),
      sbi: this.sbi?.save() ?? null,
      resetRequested: this.resetRequested,
      stopReason: this.stopReason,
      exits: { ...this.exits },
      exitSeconds: { ...this.exitSeconds },
      work: this.work,
      trapWork: [...this.trapWork],
      mmio: Object.fromEntries(this.bus.counts),
      layout: { entry: this.layout.entry, dtb: this.layout.dtb, kernel: kernel ?? null, initrd: initrd ?? null, tohost: tohost ?? null },
      dtb: bytesState(this.dtb),
    };
  }

  // The other half of save(): the same devices must be here, each takes its state. The
  // machine's own fields are checked first, then each device checks its state as it takes it,
  // and the machine's fields change last (a failure leaves a machine still being built).
  private restore(state: unknown): { layout: BootLayout; dtb: Uint8Array } {
    const s = StateReader.open(state, "machine", STATE_KIND, STATE_VERSION);
    const devices = this.bus.devices();
    const savedDevices = s.object("devices");
    sameNames("devices", savedDevices.keys(), devices.map((d) => d.name));
    if (s.isNull("sbi") === !!this.sbi) throw new Error("saved machine and this one disagree about the built-in SBI");
    const savedBuckets = s.object("buckets");
    sameNames("bandwidth buckets", savedBuckets.keys(), [...this.buckets.keys()]);
    const resetRequested = s.bool("resetRequested");
    const stopReason = s.nullable("stopReason", (f) => readStopReason(s.object(f)));
    const exits = s.counters("exits", this.exits);
    const timing = s.object("exitSeconds");
    const seconds = (kind: string) => timing.number(kind, 0, Number.MAX_VALUE);
    const exitSeconds = { mmio: seconds("mmio"), sbi: seconds("sbi"), tohost: seconds("tohost") };
    const work = s.number("work", 0, Number.MAX_VALUE);
    const traps = s.list("trapWork", this.core.harts, this.core.harts);
    const trapWork = traps.map((h) => traps.number(h, 0, Number.MAX_VALUE));
    const mmio = s.object("mmio");
    const counts = mmio.keys().map((name) => {
      if (!devices.some((d) => d.name === name)) mmio.reject(name, "the access count of one of this machine's devices");
      return [name, mmio.int(name, 0, Number.MAX_SAFE_INTEGER)] as const;
    });
    const layout = this.readLayout(s.object("layout"));
    const dtb = s.bytes("dtb", 1, MAX_DTB);

    for (const d of devices) d.restore(savedDevices.state(d.name));
    for (const [name, b] of this.buckets) b.restore(savedBuckets.state(name), `bandwidth bucket ${name}`);
    this.sbi?.restore(s.state("sbi"));
    this.resetRequested = resetRequested;
    this.stopReason = stopReason;
    Object.assign(this.exits, exits);
    Object.assign(this.exitSeconds, exitSeconds);
    this.work = work;
    trapWork.forEach((w, h) => { this.trapWork[h] = w; });
    for (const [name, count] of counts) this.bus.counts.set(name, count);
    return { layout, dtb };
  }

  // A saved BootLayout: its addresses in this machine's RAM (tohost an aligned doubleword there).
  private readLayout(s: StateReader): BootLayout {
    const ramEnd = RAM_BASE + this.cfg.memory;
    const range = (r: StateReader) => {
      const start = r.int("start", 0, Number.MAX_SAFE_INTEGER);
      return { start, end: r.int("end", start, Number.MAX_SAFE_INTEGER) };
    };
    const layout: BootLayout = { entry: s.int("entry", 0, Number.MAX_SAFE_INTEGER), dtb: s.int("dtb", RAM_BASE, ramEnd - 1) };
    const kernel = s.nullable("kernel", (f) => {
      const k = s.object(f);
      return { ...range(k), entry: k.int("entry", 0, Number.MAX_SAFE_INTEGER) };
    });
    const initrd = s.nullable("initrd", (f) => range(s.object(f)));
    const tohost = s.nullable("tohost", (f) => s.int(f, RAM_BASE, ramEnd - 8));
    if (tohost !== null && tohost % 8 !== 0) s.reject("tohost", "an aligned doubleword in RAM");
    if (kernel) layout.kernel = kernel;
    if (initrd) layout.initrd = initrd;
    if (tohost !== null) layout.tohost = tohost;
    return layout;
  }

  // virtio-mmio devices: disks, then NICs, then console and rng. The devicetree lists slots from
  // the highest address down and Linux probes them in that order, so device i takes slot
  // n-1-i and the first drive becomes /dev/vda, the first NIC eth0.
  private attachVirtio(mem: GuestMemory): void {
    const devices: VirtioDevice[] = [];
    // One set of buckets per VM, shared by its disks and by its NICs.
    const l = this.cfg.limits ?? {};
    const bucket = (name: string, rate?: number) => {
      if (rate === undefined) return undefined;
      const b = new TokenBucket(rate);
      this.buckets.set(name, b);
      return b;
    };
    const disk: RateLimit | undefined = l.diskBytesPerSec || l.diskOpsPerSec ? { bytes: bucket("disk-bytes", l.diskBytesPerSec), ops: bucket("disk-ops", l.diskOpsPerSec) } : undefined;
    const netTx: RateLimit | undefined = l.netBytesPerSec ? { bytes: bucket("net-tx-bytes", l.netBytesPerSec) } : undefined;
    const netRx: RateLimit | undefined = l.netBytesPerSec ? { bytes: bucket("net-rx-bytes", l.netBytesPerSec) } : undefined;
    if ((disk && this.cfg.drives?.some((d) => d.if === "ide")) || (netTx && this.cfg.nets?.some((n) => n.model === "ethoc"))) {
      throw new Error("bandwidth limits apply to virtio devices only: use if=virtio / model=virtio, or leave the limits out");
    }
    for (const d of this.cfg.drives ?? []) {
      if ((d.if ?? "virtio") === "virtio") devices.push(new VirtioBlk(d.backend, { serial: d.serial, readOnly: d.readOnly, limit: disk }));
    }
    (this.cfg.nets ?? []).forEach((n, i) => {
      if ((n.model ?? "virtio") === "virtio") devices.push(new VirtioNet(n.backend, { mac: macFor(i), txLimit: netTx, rxLimit: netRx }));
    });
    if (this.cfg.virtioConsole) {
      const con = new VirtioConsole((bytes) => this.emit(bytes));
      (this as { virtioConsole: VirtioConsole | null }).virtioConsole = con;
      devices.push(con, new VirtioRng());
    } else if (this.cfg.virtioRng) devices.push(new VirtioRng());
    const places = placeFamily(BOARD.virtio, devices.length);
    devices.forEach((dev, i) => {
      const t = new VirtioMmio(dev, mem, this.line(places[i]!), { name: `virtio${i}-${dev.name}`, legacy: this.cfg.virtioLegacy === true });
      this.virtio.push(this.attach(places[i]!, t));
    });
  }

  // ATA disks (one per controller, in order: the first is /dev/sda) and ethoc NICs.
  private attachLegacy(mem: GuestMemory): void {
    const disks = (this.cfg.drives ?? []).filter((d) => d.if === "ide");
    const diskPlaces = placeFamily(BOARD.ata, disks.length);
    disks.forEach((d, i) => {
      const dev = new AtaDisk(`ata${i}`, d.backend, this.line(diskPlaces[i]!), { serial: d.serial ?? `WV-ATA-${i}`, readOnly: d.readOnly });
      this.ata.push(this.attach(diskPlaces[i]!, dev, { regShift: dev.regShift }));
    });
    const nics = (this.cfg.nets ?? []).map((n, i) => ({ ...n, mac: macFor(i) })).filter((n) => n.model === "ethoc");
    const nicPlaces = placeFamily(BOARD.ethoc, nics.length);
    nics.forEach((n, i) => {
      const dev = new Ethoc(`ethoc${i}`, n.backend, mem, this.line(nicPlaces[i]!), { mac: n.mac });
      this.ethoc.push(this.attach(nicPlaces[i]!, dev, { mac: dev.mac }));
    });
  }

  /** Make every write the guest's disks completed durable (a snapshot's disks match it). */
  flushDisks(): void {
    for (const d of this.cfg.drives ?? []) if (!d.backend.readOnly) d.backend.flush();
    for (const b of this.usbBackends.values()) if ("flush" in b && !b.readOnly) b.flush();
  }

  // ---- USB ----

  /** Plug a USB device into the controller (hot-plug while the guest runs); returns its port. */
  usbAttach(spec: UsbDeviceSpec): number {
    const hc = this.xhci;
    if (!hc) throw new Error("this machine has no USB controller (give it -device qemu-xhci or a --usb device when it is created)");
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(spec.id)) throw new Error(`USB device id '${spec.id}': letters, digits, '.', '_', '-', at most 64`);
    if (hc.devices().some((d) => d.device.name === spec.id)) throw new Error(`a USB device named ${spec.id} is attached already`);
    let device: UsbDevice;
    switch (spec.type) {
      case "usb-kbd": device = new UsbKeyboard(spec.id); break;
      case "usb-storage": device = new UsbStorage(spec.id, spec.backend, { readOnly: spec.readOnly, serial: spec.serial }); break;
      case "usb-serial": device = new UsbSerial(spec.id, spec.backend); break;
    }
    const port = hc.attach(device, spec.port);
    if (spec.type !== "usb-kbd") this.usbBackends.set(spec.id, spec.backend);
    return port;
  }

  /** Unplug the USB device `id`; its backend is flushed and closed. */
  usbDetach(id: string): void {
    if (!this.xhci) throw new Error("this machine has no USB controller");
    const device = this.xhci.detach(id);
    if (device === this.consoleKeyboard) this.consoleKeyboard = null;
    const b = this.usbBackends.get(id);
    this.usbBackends.delete(id);
    if (b && "flush" in b && !b.readOnly) {
      try { b.flush(); } catch { /* the guest saw its writes complete; a failing flush is the image's problem */ }
    }
    b?.close();
  }

  /** The backends of the USB disks plugged in, by device id. */
  usbDisks(): Map<string, DiskBackend> {
    const out = new Map<string, DiskBackend>();
    for (const [id, b] of this.usbBackends) if ("flush" in b) out.set(id, b);
    return out;
  }

  /** The USB devices plugged in: id, type and port. */
  usbDevices(): { id: string; type: string; port: number }[] {
    return this.xhci?.devices().map(({ port, device }) => ({ id: device.name, type: device.kind, port })) ?? [];
  }

  private usbKeyboard(id: string): UsbKeyboard {
    const d = this.xhci?.devices().find((x) => x.device.name === id)?.device;
    if (!(d instanceof UsbKeyboard)) throw new Error(`no USB keyboard named ${id} is attached`);
    return d;
  }

  /** Type `text` on the USB keyboard `id` (each character a key press and release). */
  usbType(id: string, text: Uint8Array): void {
    this.usbKeyboard(id).type(text);
  }

  /** Console input goes to the USB keyboard `id` from now on, or back to the console (null). */
  usbConsole(id: string | null): void {
    this.consoleKeyboard = id === null ? null : this.usbKeyboard(id);
  }

  /** The disks' backends, in the order of the configuration's drives. */
  get disks(): DiskBackend[] {
    return (this.cfg.drives ?? []).map((d) => d.backend);
  }

  /** Release disks (flushed) and network backends. */
  close(): void {
    this.unlend();
    this.jit?.close();
    for (const d of this.cfg.drives ?? []) {
      try { d.backend.flush(); } catch { /* read-only or already closed */ }
      d.backend.close();
    }
    for (const n of this.cfg.nets ?? []) n.backend.close();
    for (const [id, b] of this.usbBackends) {
      if ("flush" in b && !b.readOnly) {
        try { b.flush(); } catch { /* read-only or already closed */ }
      }
      b.close();
      this.usbBackends.delete(id);
    }
  }

  /** Place firmware, kernel, initrd and DTB in guest memory and write the reset vector. */
  private loadImages(): { layout: BootLayout; dtb: Uint8Array } {
    const { kernel, initrd } = this.cfg;
    const builtin = this.cfg.bios === "builtin";
    const bios = builtin ? null : (this.cfg.bios as Image | null);
    if (builtin && !kernel) throw new Error("--bios builtin needs --kernel <file>: the built-in SBI starts a kernel in S-mode");
    const ramEnd = RAM_BASE + this.cfg.memory;
    const used: { name: string; start: number; end: number }[] = [];
    const checkFits = (name: string, start: number, end: number): void => {
      if (start < RAM_BASE || end > ramEnd) {
        throw new Error(`${name} (0x${start.toString(16)}-0x${(end - 1).toString(16)}) does not fit in guest RAM ` +
          `0x${RAM_BASE.toString(16)}-0x${(ramEnd - 1).toString(16)}: use a larger --memory`);
      }
    };
    // Reserve [start, end) for `name`: inside RAM and clear of everything placed before.
    const claim = (name: string, start: number, end: number): void => {
      checkFits(name, start, end);
      for (const u of used) {
        if (start < u.end && end > u.start) throw new Error(`${name} overlaps ${u.name} in guest memory`);
      }
      used.push({ name, start, end });
    };
    const place = (img: Image, defaultAddr: number): { start: number; end: number; entry: number; symbols: Map<string, bigint> } => {
      if (isElf(img.bytes)) {
        const elf = parseElf(img.bytes);
        let start = Infinity, end = 0;
        for (const seg of elf.segments) {
          const a = Number(seg.paddr), n = Number(seg.memsz);
          if (n === 0) continue;
          checkFits(img.name, a, a + n);
          start = Math.min(start, a);
          end = Math.max(end, a + n);
        }
        if (end === 0) throw new Error(`${img.name}: ELF file has no loadable segments`);
        claim(img.name, start, end);
        for (const seg of elf.segments) {
          const dst = this.core.phys(Number(seg.paddr), Number(seg.memsz));
          if (!dst) continue;
          dst.fill(0);
          dst.set(seg.data);
        }
        // An entry point nowhere would only fault for ever.
        if (elf.entry < BigInt(RAM_BASE) || elf.entry >= BigInt(ramEnd)) {
          throw new Error(`${img.name}: entry point 0x${elf.entry.toString(16)} is outside guest RAM ` +
            `0x${RAM_BASE.toString(16)}-0x${(ramEnd - 1).toString(16)}: it is not linked for this board`);
        }
        return { start, end, entry: Number(elf.entry), symbols: elf.symbols };
      }
      if (img.bytes.length === 0) throw new Error(`${img.name}: file is empty`);
      claim(img.name, defaultAddr, defaultAddr + img.bytes.length);
      this.core.phys(defaultAddr, img.bytes.length)!.set(img.bytes);
      return { start: defaultAddr, end: defaultAddr + img.bytes.length, entry: defaultAddr, symbols: new Map() };
    };

    const layout: BootLayout = { entry: 0, dtb: 0 };
    let firstStage: ReturnType<typeof place> | undefined;
    if (bios) firstStage = place(bios, RAM_BASE);
    let kernelPlaced: ReturnType<typeof place> | undefined;
    if (kernel) {
      kernelPlaced = place(kernel, bios || builtin ? KERNEL_ADDR : RAM_BASE);
      layout.kernel = { start: kernelPlaced.start, end: kernelPlaced.end, entry: kernelPlaced.entry };
    }
    const start = firstStage ?? kernelPlaced;
    if (!start) throw new Error("nothing to boot: give --kernel (with --bios none) or firmware with --bios");
    layout.entry = start.entry;
    // Bare-metal programs with HTIF symbols get the Spike host interface.
    const tohost = start.symbols.get("tohost");
    if (tohost !== undefined) {
      const fromhost = start.symbols.get("fromhost") ?? 0n;
      // The mailboxes are doublewords the host writes: they must be aligned and in RAM.
      for (const [name, addr] of [["tohost", tohost], ["fromhost", fromhost]] as const) {
        if (name === "fromhost" && addr === 0n) continue;
        if (addr % 8n !== 0n || addr > BigInt(ramEnd) || !this.core.ramRead(Number(addr), 8)) {
          throw new Error(`${start === firstStage ? bios!.name : kernel!.name}: HTIF symbol ${name} at 0x${addr.toString(16)} is not an aligned doubleword in guest RAM`);
        }
      }
      this.core.setTohost(Number(tohost), Number(fromhost));
      layout.tohost = Number(tohost);
    }
    if (initrd) {
      // Far enough above the kernel that decompression cannot clobber it (QEMU's rule).
      const base = RAM_BASE + Math.min(this.cfg.memory / 2, 512 * 1024 * 1024);
      const startAddr = Math.ceil(base / 4096) * 4096;
      if (initrd.bytes.length === 0) throw new Error(`${initrd.name}: file is empty`);
      claim(initrd.name, startAddr, startAddr + initrd.bytes.length);
      this.core.phys(startAddr, initrd.bytes.length)!.set(initrd.bytes);
      layout.initrd = { start: startAddr, end: startAddr + initrd.bytes.length };
    }
    const dtb = this.cfg.dtb ? givenDtb(this.cfg.dtb, this.cfg.append, layout.initrd) : buildVirtDtb({
      harts: this.core.harts,
      ramSize: this.cfg.memory,
      isa: HART_ISA,
      mmuType: MMU_TYPE,
      timebaseHz: 10_000_000,
      bootargs: this.cfg.append ?? "",
      initrd: layout.initrd,
      devices: this.attached,
    });
    // The DTB goes at the top of RAM (below 3 GiB), 2 MiB aligned, as QEMU places it.
    const top = Math.min(ramEnd, 0xc0000000);
    const dtbAddr = Math.floor((top - dtb.length) / 0x200000) * 0x200000;
    claim("devicetree", dtbAddr, dtbAddr + dtb.length);
    this.core.phys(dtbAddr, dtb.length)!.set(dtb);
    layout.dtb = dtbAddr;
    writeBootRom(this.core, { entry: layout.entry, dtb: dtbAddr, nextAddr: kernelPlaced?.start ?? KERNEL_ADDR });
    // With the built-in SBI there is no M-mode stage: hart 0 enters the kernel in S-mode.
    this.sbi?.bootHart(0, layout.entry, dtbAddr);
    return { layout, dtb };
  }

  get stopped(): StopReason | null {
    return this.stopReason;
  }

  stop(reason: StopReason): void {
    if (!this.stopReason) this.stopReason = reason;
  }

  stats(): MachineStats {
    return {
      instructions: this.core.totalInstret(),
      exits: { ...this.exits },
      mmio: Object.fromEntries(this.bus.counts),
      sbi: this.sbi ? Object.fromEntries(this.sbi.calls) : {},
      paging: { mode: this.core.paging, ...this.core.pagingStats() },
      ...(this.cfg.timeExits ? { exitSeconds: { ...this.exitSeconds } } : {}),
      ...(this.jit ? { jit: this.jit.stats() } : {}),
    };
  }

  /** The host resets the machine (QMP's system_reset): a reboot, now. Call between steps. */
  reset(): void {
    this.reboot();
  }

  /** Back to power-on: harts reset, devices keep their wiring, images are reloaded. */
  private reboot(): void {
    this.resetRequested = false;
    // Every hart here while the machine is put back to power-on (a reset clears the hart blocks).
    this.lent?.gather("reset", this.handleLentExit);
    this.resetRequested = false; // a lent hart's exit may have asked again
    // Devices too: a virtio device left live would keep writing into the new kernel's memory.
    for (const v of this.virtio) v.reset();
    for (const d of this.ata) d.reset();
    for (const e of this.ethoc) e.reset();
    this.xhci?.reset();
    this.plic.reset();
    this.uart.reset();
    this.rtc.reset();
    // RAM keeps what it held, as a real machine's does (a restored VM's absent pages included:
    // they are what its RAM holds, and come in when touched as before).
    this.core.reset();
    this.sbi?.reset();
    this.loadImages();
    this.lent?.scatter("reset");
  }

  // ---- harts on another pCPU's thread (remote-harts.ts) ----

  /**
   * Lend harts `harts` to another thread, which runs them with a Core of its own over this VM's
   * memory (BorrowedHarts); they go out as they can run. Their exits come back here (step()).
   */
  lend(harts: number[]): void {
    if (this.lent) throw new Error("this VM already lends harts");
    if (this.core.harts < 2) throw new Error("a VM with one hart runs it on its home pCPU");
    if (this.core.paging !== "nested") throw new Error("only VMs with nested paging can run harts on several threads");
    if (this.core.lazy) throw new Error("a VM whose memory is still coming in cannot lend harts");
    if (!harts.length || harts.some((h) => !Number.isInteger(h) || h < 0 || h >= this.core.harts)) throw new Error(`no such harts to lend: ${harts.join(",")}`);
    this.lent = new LentHarts(this.core, harts);
  }

  /** The harts lent, or none. */
  get lentHarts(): readonly number[] {
    return this.lent?.harts ?? [];
  }

  /**
   * Every hart here, for `why` (a pause, a snapshot, a migration), until scatterHarts(why); the
   * harts go out again when no reason is left. Call between steps.
   */
  gatherHarts(why: string): void {
    this.lent?.gather(why, this.handleLentExit);
  }

  scatterHarts(why: string): void {
    this.lent?.scatter(why);
  }

  /** End the loan: every hart here for good, the borrower lets go. */
  unlend(): void {
    if (!this.lent) return;
    const lent = this.lent;
    this.lent = null;
    lent.revoke(this.handleLentExit);
  }

  /** The borrower's thread died: its harts come back; false if one was in the middle of a run (its state is half-way). */
  reclaimLent(): boolean {
    const lent = this.lent;
    this.lent = null;
    return lent ? lent.reclaim(this.handleLentExit) : true;
  }

  /** Words a thread asleep for this VM waits on: its harts' kick words (an interrupt from another thread, an exit handed back). */
  wakeWords(): { i32: Int32Array; index: number }[] {
    return this.lent ? Array.from({ length: this.core.harts }, (_, h) => this.core.kickWord(h)) : [];
  }

  /**
   * Run every runnable hart for up to `budget` units of work each, handling their exits. A unit
   * is about an ordinary instruction's worth of host time: the core counts instructions, traps
   * and its bulk work, and each exit and the device work it caused (DMA) count here, so a step
   * takes about as long whatever the guest does (a hostile guest cannot make it run away).
   */
  step(budget = BUDGET_PER_STEP): StepResult {
    const core = this.core;
    let ran = this.lent?.service(this.handleLentExit, this.lentCanRun) ?? false;
    this.dmaBytes = 0;
    if (core.harts === 1) {
      // One hart takes its step in one turn: the turn loop below costs a tiny step 50 ns.
      this.feedInput();
      if (this.hartRunnable(0)) {
        ran = true;
        this.work += this.runHart(0, budget);
      }
    } else {
      // Harts take turns in quanta: a hart spinning on a lock another holds wastes at most a
      // quantum before the holder runs again (xv6 with 3 harts spent most of its time so).
      const left = this.hartBudgets;
      left.fill(budget);
      for (let more = true; more && !this.stopReason && !this.resetRequested && !this.debugStopped; ) {
        more = false;
        for (let h = 0; h < core.harts && !this.stopReason && !this.resetRequested && !this.debugStopped; h++) {
          if (left[h] <= 0) continue;
          this.feedInput();
          if (this.lent?.has(h) || !this.hartRunnable(h)) {
            left[h] = 0;
            continue;
          }
          ran = true;
          // Turns only when several harts share this thread (the others may be lent).
          const alone = this.lent !== null && this.lent.harts.length === core.harts - 1 && !this.lent.isGathered;
          const work = this.runHart(h, alone ? left[h] : Math.min(left[h], HART_QUANTUM));
          this.work += work;
          left[h] = this.budgetSpent ? left[h] - work : 0;
          if (left[h] > 0) more = true;
        }
      }
    }
    if (this.jit?.mode === "on" && ran) this.work += this.jit.update(); // compiling is the VM's work too
    if (this.lent?.service(this.handleLentExit, this.lentCanRun)) ran = true;
    this.rtc.poll();
    this.retryDevices();
    this.flushOutput();
    if (this.resetRequested) {
      if (this.cfg.noReboot) this.stop({ kind: "reset", code: 0 });
      else {
        this.reboot();
        return { state: "running", reset: true };
      }
    }
    if (this.stopReason) return { state: "stopped", reason: this.stopReason };
    if (this.debugStopped) {
      const stop = this.debugStopped;
      this.debugStopped = null;
      return { state: "debug", stop };
    }
    if (ran) return { state: "running" };
    let sleep = Infinity;
    for (let h = 0; h < core.harts; h++) if (!this.lent?.isAway(h)) sleep = Math.min(sleep, core.secondsUntilTimer(h));
    for (const t of this.virtio) sleep = Math.min(sleep, t.retryMs() / 1000); // rate-limited I/O
    if (this.xhci?.hasDeferredWork) sleep = 0; // USB rings longer than a doorbell's share go on now
    return { state: "idle", sleepSeconds: sleep };
  }

  /**
   * Run hart `h` for up to `budget` units, handling its exits. Returns the work done; budgetSpent
   * says whether it stopped only because the budget was spent (not halted, stopped or called).
   */
  private runHart(h: number, budget: number): number {
    const core = this.core;
    let left = budget;
    const translateAll = this.jit?.mode === "all";
    while (left > 0 && !this.stopReason && !this.resetRequested) {
      const reason = core.run(h, translateAll ? Math.min(left, TRANSLATE_ALL_QUANTUM) : left);
      left -= core.executed(h);
      if (translateAll) {
        // Tests: translate what just ran at once, so that nearly all code runs translated.
        left -= this.jit!.update();
        if (reason === L.EXIT_BUDGET && left > 0) {
          this.checkTrapLoop(h);
          continue;
        }
      }
      if (reason === L.EXIT_BUDGET) {
        this.exits.budget++;
        this.checkTrapLoop(h);
        this.budgetSpent = true;
        return budget - left;
      }
      if (!this.handleExit(h, reason)) break;
      left -= EXIT_WORK + Math.floor(this.dmaBytes / 64);
      this.dmaBytes = 0;
    }
    this.budgetSpent = left <= 0;
    return budget - left;
  }

  // Hart h left run() for `reason` (not the budget): do what it needs. Returns whether the hart
  // may run on in this turn (not halted, called away, stopped for a debugger or failed).
  private handleExit(h: number, reason: number): boolean {
    const core = this.core;
    const timed = this.cfg.timeExits === true;
    const t0 = timed ? performance.now() : 0;
    if (reason !== L.EXIT_ATTENTION) this.trapWork[h] = 0; // the others retired an instruction
    if (reason === L.EXIT_MMIO) {
      this.exits.mmio++;
      this.bus.handleExit(h);
      if (timed) this.exitSeconds.mmio += (performance.now() - t0) / 1000;
    } else if (reason === L.EXIT_HALT) {
      this.exits.halt++;
      return false;
    } else if (reason === L.EXIT_TOHOST) {
      this.exits.tohost++;
      this.handleTohost(h);
      if (timed) this.exitSeconds.tohost += (performance.now() - t0) / 1000;
    } else if (reason === L.EXIT_ATTENTION) {
      this.exits.attention++;
      core.clearAttention(h);
      // A hart on another thread handed an exit back: handled now (unless this is that round's
      // own exit), and this hart runs on.
      if (this.lent) {
        if (!this.lent.servicing) this.lent.service(this.handleLentExit, this.lentCanRun);
        return !this.stopReason && !this.resetRequested && !this.debugStopped;
      }
      return false;
    } else if (reason === L.EXIT_SBI) {
      this.exits.sbi++;
      this.sbi!.handle(h);
      if (timed) this.exitSeconds.sbi += (performance.now() - t0) / 1000;
      if (core.halted(h)) return false; // hart_stop / hart_suspend
    } else if (reason === L.EXIT_DEBUG) {
      // All harts stop for the debugger (the pCPU pauses the VM, which keeps them home): home now,
      // before the watchpoint's step below touches every hart's triggers.
      this.gatherHarts("paused");
      const stop = { hart: h, ...core.debugExit(h) };
      // A watchpoint stops before the access; debuggers (GDB, as QEMU serves it) expect it done.
      if (stop.kind !== 4) this.debugger.runPastAccess(h);
      this.debugStopped = stop;
      return false;
    } else if (reason === EXIT_REMOTE_FAILED) {
      this.stop({ kind: "error", code: EMULATION_FAILURE, message: `hart ${h} failed on the pCPU it was lent to (an emulation error there)` });
      return false;
    } else {
      this.stop({ kind: "error", code: EMULATION_FAILURE, message: `core returned unknown exit ${reason}` });
    }
    return true;
  }

  /**
   * Run exactly one instruction of hart h for a debugger (or take the trap it raises), untranslated
   * and with no interrupt taken, and handle its exit. Returns the watchpoint it fired, if one did.
   */
  debugStep(h: number): DebugStop | null {
    const core = this.core;
    core.setDebugStep(h, true);
    try {
      let reason = core.run(h, 1);
      if (reason === L.EXIT_ATTENTION) {
        core.clearAttention(h);
        reason = core.run(h, 1);
      }
      if (reason !== L.EXIT_BUDGET && reason !== L.EXIT_ATTENTION) this.handleExit(h, reason);
    } finally {
      core.setDebugStep(h, false);
    }
    core.completePendingLoad(h);
    this.flushOutput();
    const stop = this.debugStopped;
    this.debugStopped = null;
    return stop;
  }

  // A hart whose every instruction traps, its trap handler's included (a vector that faults on
  // fetch, an entry point nowhere), can never run again: after TRAP_LOOP_WORK of nothing but
  // traps the VM stops with what the hart was doing, instead of spinning a host CPU for ever.
  private checkTrapLoop(h: number): void {
    if (this.core.retired(h) !== 0) {
      this.trapWork[h] = 0;
      return;
    }
    this.trapWork[h] += this.core.executed(h);
    if (this.trapWork[h] < TRAP_LOOP_WORK) return;
    const c = this.core;
    const hex = (v: bigint) => `0x${v.toString(16)}`;
    const m = c.priv(h) === 3;
    this.stop({
      kind: "error", code: EMULATION_FAILURE,
      message: `hart ${h} is stuck in a trap loop: every instruction traps, its trap handler's too ` +
        `(pc ${hex(c.pc(h))}, ${m ? "mcause" : "scause"} ${hex(c.csr(h, m ? CSR_MCAUSE : CSR_SCAUSE))}, ` +
        `${m ? "mtval" : "stval"} ${hex(c.csr(h, m ? CSR_MTVAL : CSR_STVAL))})`,
    });
  }

  /**
   * Whether some hart can run now (console input waiting is delivered first): a scheduler
   * polls this to see a halted VM wake up.
   */
  runnable(): boolean {
    this.feedInput();
    this.retryDevices();
    if (this.lent?.pending(this.lentCanRun)) return true;
    for (let h = 0; h < this.core.harts; h++) if (!this.lent?.has(h) && this.hartRunnable(h)) return true;
    return false;
  }

  /**
   * Whether a hart has had an interrupt pending that it could take (enabled in mie) for a
   * watchdog to notice: together with Core.interruptsTaken it tells a guest that spins with
   * interrupts off from one that is merely busy.
   */
  interruptWaiting(): boolean {
    for (let h = 0; h < this.core.harts; h++) {
      if (!this.core.halted(h) && (this.core.csr(h, CSR_MIP) & this.core.csr(h, CSR_MIE)) !== 0n) return true;
    }
    return false;
  }

  // Rate-limited device work whose time has come (its completion interrupts the guest).
  private retryDevices(): void {
    for (const t of this.virtio) if (t.retryMs() <= 0) t.retry();
    if (this.xhci?.hasDeferredWork) {
      // Rings longer than a doorbell's share: another share, its DMA charged as an exit's is.
      this.dmaBytes = 0;
      this.xhci.continueWork();
      this.work += Math.floor(this.dmaBytes / 64);
      this.dmaBytes = 0;
    }
  }

  private hartRunnable(h: number): boolean {
    if (this.debugger.held(h)) return false; // a debugger resumed other harts only
    return this.sbi ? this.sbi.runnable(h) : this.core.runnable(h);
  }

  // Console input goes to the console the kernel was told to use: hvc0 (virtio-console) when
  // the command line says so, else the UART.
  private feedInput(): void {
    if (this.consoleKeyboard) {
      // Typing goes to the USB keyboard; a burst at a time, so the keyboard's queue bounds it.
      const bytes: number[] = [];
      while (bytes.length < 64) {
        const b = this.input();
        if (b < 0) break;
        bytes.push(b);
      }
      if (bytes.length) this.consoleKeyboard.type(Uint8Array.from(bytes));
      return;
    }
    const con = this.inputToHvc ? this.virtioConsole : null;
    if (con) {
      // One buffer (and at most one interrupt) for everything that arrived.
      const bytes: number[] = [];
      for (let room = con.rxSpace(); bytes.length < room; ) {
        const b = this.input();
        if (b < 0) break;
        bytes.push(b);
      }
      if (bytes.length) con.receive(Uint8Array.from(bytes));
      return;
    }
    while (this.uart.rxSpace() > 0) {
      const b = this.input();
      if (b < 0) break;
      this.uart.receive(b);
    }
  }

  private emitByte(b: number): void {
    this.outBytes.push(b);
    if (++this.outSize >= OUTPUT_FLUSH_BYTES) this.flushOutput();
  }

  private emit(bytes: Uint8Array): void {
    if (this.outBytes.length) {
      this.outChunks.push(Uint8Array.from(this.outBytes));
      this.outBytes = [];
    }
    this.outChunks.push(bytes);
    this.outSize += bytes.length;
    if (this.outSize >= OUTPUT_FLUSH_BYTES) this.flushOutput();
  }

  private flushOutput(): void {
    if (this.outSize === 0) return;
    if (this.outBytes.length) this.outChunks.push(Uint8Array.from(this.outBytes));
    const chunks = this.outChunks;
    this.outBytes = [];
    this.outChunks = [];
    this.outSize = 0;
    if (chunks.length === 1) this.cfg.output(chunks[0]);
    else {
      const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
      let at = 0;
      for (const c of chunks) { all.set(c, at); at += c.length; }
      this.cfg.output(all);
    }
  }

  // Spike's host-target interface: tohost = dev << 56 | cmd << 48 | payload.
  private handleTohost(hart: number): void {
    const value = this.core.exitData(hart);
    const dev = Number(value >> 56n);
    const cmd = Number((value >> 48n) & 0xffn);
    const payload = value & 0xffffffffffffn;
    this.core.writePhys64(this.layout.tohost!, 0n);
    if (dev === HTIF_DEV_SYSCALL && (payload & 1n) === 1n) {
      this.stop({ kind: "htif", code: Number(payload >> 1n) & 0xff });
      return;
    }
    if (dev === HTIF_DEV_CONSOLE && cmd === 1) {
      this.emitByte(Number(payload & 0xffn));
      // Acknowledge the byte as Spike does, so the guest may send the next one.
      const fromhost = this.core.fromhost();
      if (fromhost) this.core.writePhys64(fromhost, (1n << 56n) | (1n << 48n) | 0x100n | (payload & 0xffn));
      return;
    }
    this.stop({ kind: "error", code: EMULATION_FAILURE, message: `unsupported HTIF request 0x${value.toString(16)} (device ${dev}, command ${cmd})` });
  }
}

/**
 * A devicetree the user gave (QEMU's -dtb), with what QEMU sets in it too: /chosen's bootargs
 * (from --append) and the initrd's place. It is the user's to make match the board.
 */
function givenDtb(img: Image, append: string | undefined, initrd: { start: number; end: number } | undefined): Uint8Array {
  let dt;
  try {
    dt = parseFdt(img.bytes);
  } catch (e) {
    throw new Error(`-dtb ${img.name}: not a devicetree blob (${(e as Error).message}); make one with dtc, or leave -dtb out`);
  }
  const chosen = dt.find("/chosen") ?? dt.root.addNode("chosen");
  if (append !== undefined && append !== "") chosen.setString("bootargs", append);
  if (initrd) {
    chosen.setU64("linux,initrd-start", initrd.start);
    chosen.setU64("linux,initrd-end", initrd.end);
  }
  return dt.toBlob();
}

/** Locally administered MACs 52:54:00:12:34:56, :57, ... for NIC 0, 1, ... as QEMU hands them out. */
function macFor(index: number): Uint8Array {
  return parseMac(`52:54:00:12:34:${(0x56 + index).toString(16).padStart(2, "0")}`)!;
}

/**
 * Whether the board has room for these devices (virtio-mmio slots, ATA controllers, ethoc MACs);
 * throws saying what does not fit. Requests are checked with it before any image is opened.
 */
export function checkBoard(drives: readonly { if: DriveInterface }[], nets: readonly { model: NicModel }[], virtioConsole: boolean, virtioRng = false): void {
  const ide = drives.filter((d) => d.if === "ide").length;
  const ethoc = nets.filter((n) => n.model === "ethoc").length;
  const rng = virtioConsole || virtioRng ? 1 : 0;
  const virtio = drives.length - ide + nets.length - ethoc + (virtioConsole ? 1 : 0) + rng;
  checkRoom(BOARD.virtio, virtio, virtioConsole ? ", with the console and the RNG" : rng ? ", with the RNG" : "");
  checkRoom(BOARD.ata, ide);
  checkRoom(BOARD.ethoc, ethoc);
}

/** Throws unless a saved machine had the `what` this one has, by name. */
function sameNames(what: string, saved: string[], ours: string[]): void {
  const list = (names: string[]) => [...names].sort().join(", ");
  if (list(saved) !== list(ours)) throw new Error(`saved machine has ${what} [${list(saved)}], this one [${list(ours)}]: not the same machine`);
}

/** A saved StopReason, checked. */
function readStopReason(s: StateReader): StopReason {
  const kind = s.string("kind");
  const code = s.int("code", 0, 0xffff);
  switch (kind) {
    case "poweroff":
    case "reset":
      if (code !== 0) s.reject("code", `0 for a ${kind}`);
      return { kind, code: 0 };
    case "fail":
    case "htif":
      return { kind, code };
    case "error":
      return { kind, code, message: s.string("message") };
    default:
      return s.reject("kind", "poweroff, fail, htif or error");
  }
}
