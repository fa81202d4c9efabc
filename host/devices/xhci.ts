/**
 * An xHCI USB host controller (eXtensible Host Controller Interface 1.2) as a platform device,
 * what Linux's xhci-plat drives for a "generic-xhci" node, with USB 2.0 root ports the USB
 * devices of host/devices/usb/ plug into.
 *
 * The window: capability registers at 0, operational registers at CAP_LENGTH (port register
 * sets at +0x400), the Supported Protocol capability at EXT_CAPS, the runtime registers
 * (interrupter 0 only) at RUNTIME and the doorbells at DOORBELLS. 32-byte contexts, 64-bit
 * addressing, no scratchpad buffers, no streams, no MSI: one interrupt line.
 *
 * Work happens when the guest rings a doorbell, or when a device has data for an IN transfer it
 * NAKed: the controller runs the command ring or the endpoint's transfer ring at once, moves the
 * data through the GuestMemory backend, and writes events to the event ring. Devices answer at
 * once, so a TD is done in one go (or waits whole for a NAKing device); bandwidth, intervals and
 * interrupt moderation are not modelled.
 *
 * Everything the guest hands over is untrusted. A ring that is not in RAM, or that loops
 * through Link TRBs, or a TD longer than MAX_TD_TRBS (or with more Link TRBs than TRBs), ends
 * the endpoint's work with a TRB Error event and halts it; a buffer outside RAM, or a TD moving
 * more than MAX_TD_BYTES, fails its TD
 * with a TRB Error event; bad contexts fail their command with the completion code the
 * specification names (Parameter Error, Context State Error, ...); the command ring or event ring
 * outside RAM is a Host System Error, which halts the controller. Work per doorbell is bounded
 * (MAX_COMMANDS, MAX_TDS, MAX_SHARE_BYTES, MAX_SHARE_TRB_READS): the rest of a long ring waits
 * for continueWork(), between steps.
 * Addresses beyond 2^53 are NOWHERE (below).
 */
import type { GuestMemory } from "./backends";
import type { DeviceState, DeviceType, IrqLine, MmioDevice } from "./device";
import { setInterrupts, setReg } from "./devicetree";
import { StateReader, wordsState } from "./state";
import { NAK, STALL, parseSetup, type UsbDevice } from "./usb/usb";

export const XHCI_WINDOW_SIZE = 0x1000;
export const XHCI_PORTS = 8;
export const XHCI_SLOTS = 32;
const ERST_MAX = 3; // up to 2^3 event ring segments
const IMOD_RESET = 4000; // 1 ms in 250 ns units (kept, not acted on: events interrupt at once)
const VERSION = 2;

// Register map.
export const CAP_LENGTH = 0x40;
export const OP = CAP_LENGTH;
export const USBCMD = OP + 0x00;
export const USBSTS = OP + 0x04;
export const PAGESIZE = OP + 0x08;
export const DNCTRL = OP + 0x14;
export const CRCR = OP + 0x18;
export const DCBAAP = OP + 0x30;
export const CONFIG = OP + 0x38;
export const PORTS = OP + 0x400;
export const EXT_CAPS = 0x500;
export const RUNTIME = 0x600;
export const IMAN = RUNTIME + 0x20;
export const IMOD = RUNTIME + 0x24;
export const ERSTSZ = RUNTIME + 0x28;
export const ERSTBA = RUNTIME + 0x30;
export const ERDP = RUNTIME + 0x38;
export const DOORBELLS = 0x800;

// USBCMD / USBSTS bits.
export const CMD_RS = 1 << 0;
export const CMD_HCRST = 1 << 1;
export const CMD_INTE = 1 << 2;
const CMD_KEPT = CMD_RS | CMD_INTE | (1 << 3) | (1 << 10) | (1 << 11); // RS, INTE, HSEE, EWE, EU3S
export const STS_HCH = 1 << 0;
export const STS_HSE = 1 << 2;
export const STS_EINT = 1 << 3;
export const STS_PCD = 1 << 4;
const STS_W1C = STS_HSE | STS_EINT | STS_PCD | (1 << 10);
// CRCR.
const CRCR_RCS = 1 << 0;
const CRCR_CS = 1 << 1;
const CRCR_CA = 1 << 2;
export const CRCR_CRR = 1 << 3;
// IMAN / ERDP.
export const IMAN_IP = 1 << 0;
export const IMAN_IE = 1 << 1;
export const ERDP_EHB = 1 << 3;

// PORTSC.
export const PORT_CCS = 1 << 0;
export const PORT_PED = 1 << 1;
export const PORT_PR = 1 << 4;
const PORT_PLS_SHIFT = 5;
const PORT_PLS = 0xf << PORT_PLS_SHIFT;
export const PORT_PP = 1 << 9;
const PORT_SPEED_SHIFT = 10;
const PORT_LWS = 1 << 16;
export const PORT_CSC = 1 << 17;
export const PORT_PEC = 1 << 18;
export const PORT_PRC = 1 << 21;
export const PORT_PLC = 1 << 22;
const PORT_CHANGES = 0x7f << 17; // CSC PEC WRC OCC PRC PLC CEC
const PORT_WAKE = 7 << 25;
const PORT_PIC = 3 << 14;
const PLS_U0 = 0;
const PLS_U3 = 3;
const PLS_RXDETECT = 5;
const PLS_POLLING = 7;
const PLS_RESUME = 15;
const SPEED = { full: 1, high: 3 } as const;

// TRB types.
export const TRB = {
  NORMAL: 1, SETUP: 2, DATA: 3, STATUS: 4, ISOCH: 5, LINK: 6, EVENT_DATA: 7, NOOP: 8,
  ENABLE_SLOT: 9, DISABLE_SLOT: 10, ADDRESS_DEVICE: 11, CONFIGURE_ENDPOINT: 12, EVALUATE_CONTEXT: 13,
  RESET_ENDPOINT: 14, STOP_ENDPOINT: 15, SET_TR_DEQUEUE: 16, RESET_DEVICE: 17, NOOP_COMMAND: 23,
  TRANSFER_EVENT: 32, COMMAND_COMPLETION: 33, PORT_STATUS_CHANGE: 34, HOST_CONTROLLER: 37,
} as const;
// TRB control bits.
const TRB_CYCLE = 1 << 0;
const TRB_TC = 1 << 1; // Link: toggle cycle
const TRB_ENT = 1 << 1;
const TRB_ISP = 1 << 2;
const TRB_CH = 1 << 4;
const TRB_IOC = 1 << 5;
const TRB_IDT = 1 << 6;
const TRB_DIR_IN = 1 << 16;
const TRB_BSR = 1 << 9; // Address Device: block SET_ADDRESS
const TRB_DC = 1 << 9; // Configure Endpoint: deconfigure
const ED = 1 << 2; // event: Event Data

/** Completion codes (xHCI 1.2, 6.4.5). */
export const CC = {
  SUCCESS: 1, DATA_BUFFER: 2, BABBLE: 3, TRANSACTION: 4, TRB: 5, STALL: 6, NO_SLOTS: 9,
  SLOT_NOT_ENABLED: 11, EP_NOT_ENABLED: 12, SHORT_PACKET: 13, PARAMETER: 17, CONTEXT_STATE: 19,
  EVENT_RING_FULL: 21, COMMAND_RING_STOPPED: 24, STOPPED: 26,
} as const;

// Slot and endpoint states (as the contexts hold them).
const SLOT_ENABLED = 0;
const SLOT_DEFAULT = 1;
const SLOT_ADDRESSED = 2;
const SLOT_CONFIGURED = 3;
export const EP_DISABLED = 0;
export const EP_RUNNING = 1;
export const EP_HALTED = 2;
export const EP_STOPPED = 3;
export const EP_ERROR = 4;
const EP_CONTROL = 4;
/** The commands this controller runs; any other TRB on the command ring is a TRB Error. */
const COMMANDS = new Set<number>([TRB.ENABLE_SLOT, TRB.DISABLE_SLOT, TRB.ADDRESS_DEVICE, TRB.CONFIGURE_ENDPOINT, TRB.EVALUATE_CONTEXT,
  TRB.RESET_ENDPOINT, TRB.STOP_ENDPOINT, TRB.SET_TR_DEQUEUE, TRB.RESET_DEVICE, TRB.NOOP_COMMAND]);
const CTX = 32; // context size (HCCPARAMS1.CSZ = 0)

// Bounds on work the guest can ask for.
/** Commands run per ring of doorbell 0 (the rest at the next continueWork()). */
export const MAX_COMMANDS = 256;
/** TDs an endpoint completes per doorbell or wake (the rest at the next continueWork()). */
export const MAX_TDS = 64;
/** TRBs in one TD (Linux's largest scatter-gather TDs have a few hundred). */
export const MAX_TD_TRBS = 1024;
/**
 * Bytes one TD may move (Linux's are far smaller: usb-storage's at most 120 KiB on a high-speed
 * device unless max_sectors is raised, cdc-acm's a few KiB): a TD of 1024 TRBs of 128 KiB would
 * have the host copy 128 MiB for one transfer. Longer TDs fail (TRB Error).
 */
export const MAX_TD_BYTES = 2 << 20;
/**
 * Bytes of TDs a doorbell, a wake or a continueWork() moves before the rest waits for the next
 * continueWork() (one TD at least): 2 MiB through usb-serial takes about 0.6 ms of host time
 * (gathered, handed to the backend), so one VM's USB transfers never hold its pCPU (and the VMs
 * sharing it) for long.
 */
export const MAX_SHARE_BYTES = MAX_TD_BYTES;
/** TRB reads (Link TRBs too) a share makes before the next TD waits (one TD at least): about 0.1 ms. */
export const MAX_SHARE_TRB_READS = 4096;
/** Link TRBs followed in a row before the ring counts as a loop. */
export const MAX_LINKS = 16;
/**
 * Events kept while the event ring is full; the last is an Event Ring Full Error (a Host
 * Controller Event) and events after it are lost until the driver makes room.
 */
const MAX_PENDING_EVENTS = 1024;

/** The controller as the board places it. */
export const XHCI: DeviceType = {
  kind: "xhci",
  dtName: "usb",
  size: XHCI_WINDOW_SIZE,
  irqs: 1,
  describe(node, at) {
    setInterrupts(setReg(node, at, XHCI_WINDOW_SIZE).setString("compatible", "generic-xhci"), at);
  },
};

interface Endpoint {
  state: number;
  type: number;
  maxPacket: number;
  /** Dequeue pointer and consumer cycle state of its transfer ring. */
  deq: number;
  dcs: boolean;
}

interface Slot {
  state: number;
  /** Root hub port (1-based), 0 before Address Device. */
  port: number;
  /** Output device context (from the DCBAA at Address Device). */
  ctx: number;
  address: number;
  /**
   * The device Address Device reached on `port` (null before, or once it was unplugged): a slot
   * talks to that device only, never to one plugged into the port later (its USB address is gone).
   */
  device: UsbDevice | null;
  /** By device context index 1..31. */
  eps: (Endpoint | null)[];
}

interface Port {
  sc: number;
  pmsc: number;
  hlpmc: number;
  device: UsbDevice | null;
}

/** A TRB as read from a ring: where it was and its four words. */
interface Trb {
  addr: number;
  w: Uint32Array;
}

/** Where a ring's consumer is. */
interface RingPos {
  deq: number;
  cycle: boolean;
}

type Fetch = { trb: Trb; next: RingPos } | "empty" | { error: number };

const type = (w: Uint32Array) => (w[3]! >>> 10) & 0x3f;
/**
 * A 64-bit guest address as a number. Numbers are exact below 2^53, and nothing up there is RAM:
 * every address beyond is NOWHERE (so DCBAAP, ERSTBA and ERDP read back 0x1fffff in their high
 * halves after such a write, and states stay exact).
 */
const NOWHERE = 2 ** 53 - 64;
const addr64 = (lo: number, hi: number) => ((hi >>> 0) >= 0x200000 ? NOWHERE : (hi >>> 0) * 0x100000000 + (lo >>> 0));
const lo32 = (v: number) => v % 0x100000000;
const hi32 = (v: number) => Math.floor(v / 0x100000000);

export class Xhci implements MmioDevice {
  readonly size = XHCI_WINDOW_SIZE;
  private usbcmd = 0;
  private usbsts = STS_HCH;
  private dnctrl = 0;
  private config = 0;
  private dcbaap = 0;
  private readonly ports: Port[] = Array.from({ length: XHCI_PORTS }, () => ({ sc: 0, pmsc: 0, hlpmc: 0, device: null }));
  private slots: (Slot | null)[] = new Array<Slot | null>(XHCI_SLOTS + 1).fill(null);
  // Command ring.
  private cmd: RingPos = { deq: 0, cycle: false };
  private crr = false;
  // Interrupter 0 and its event ring.
  private iman = 0;
  private imod = IMOD_RESET;
  private erstsz = 0;
  private erstba = 0;
  private erdp = 0;
  /** Event Handler Busy: set when the interrupter asserts, cleared by the driver through ERDP. */
  private ehb = false;
  /** Event ring segments as the ERST gave them, read once per ERSTBA/ERSTSZ write. */
  private segs = new Map<number, { base: number; count: number } | null>();
  /** Producer: segment of the ERST, TRB index in it, cycle state. */
  private evSeg = 0;
  private evIndex = 0;
  private evCycle = true;
  private pending: Uint32Array[] = [];
  private irqLevel = false;
  /** Work left over when a doorbell's share ran out: endpoints (slot * 32 + DCI) and the command ring. */
  private deferred = new Set<number>();
  private commandsDeferred = false;
  /** Bytes of TDs run, and TRBs read, in the current share (MAX_SHARE_BYTES, MAX_SHARE_TRB_READS). */
  private shareBytes = 0;
  private shareReads = 0;

  constructor(
    readonly name: string,
    private readonly mem: GuestMemory,
    private readonly irq: IrqLine,
  ) {
    this.resetPorts();
  }

  // ---- the host's side: plugging devices ----

  /** Plug `device` into a free root port (or `port`, 1-based); returns the port. */
  attach(device: UsbDevice, port?: number): number {
    if (this.ports.some((p) => p.device === device || p.device?.name === device.name)) throw new Error(`${this.name}: a device named ${device.name} is attached already`);
    if (port !== undefined && !(Number.isInteger(port) && port >= 1 && port <= XHCI_PORTS)) throw new Error(`${this.name}: there is no port ${port} (the controller has ports 1 to ${XHCI_PORTS})`);
    const index = port === undefined ? this.ports.findIndex((p) => !p.device) : port - 1;
    if (index < 0) throw new Error(`${this.name}: all ${XHCI_PORTS} ports are in use`);
    const p = this.ports[index]!;
    if (p.device) throw new Error(`${this.name}: port ${index + 1} has ${p.device.name} already`);
    p.device = device;
    device.reset();
    device.wake = (ep) => this.wakeDevice(device, ep);
    p.sc = (p.sc & ~(PORT_PLS | PORT_PED | (0xf << PORT_SPEED_SHIFT))) | PORT_CCS | (PLS_POLLING << PORT_PLS_SHIFT) | (SPEED[device.speed] << PORT_SPEED_SHIFT);
    this.portChange(index, PORT_CSC);
    return index + 1;
  }

  /** Unplug the device named `name`; returns it. */
  detach(name: string): UsbDevice {
    const index = this.ports.findIndex((p) => p.device?.name === name);
    if (index < 0) throw new Error(`${this.name}: no device named ${name} is attached`);
    const p = this.ports[index]!;
    const device = p.device!;
    device.wake = () => {};
    p.device = null;
    for (const s of this.slots) if (s?.device === device) s.device = null;
    // A disconnect disables the port; only the connect status change is reported (PEC is for errors).
    p.sc = (p.sc & ~(PORT_CCS | PORT_PED | PORT_PLS | (0xf << PORT_SPEED_SHIFT))) | (PLS_RXDETECT << PORT_PLS_SHIFT);
    this.portChange(index, PORT_CSC);
    return device;
  }

  /** The attached devices by port (1-based). */
  devices(): { port: number; device: UsbDevice }[] {
    return this.ports.flatMap((p, i) => (p.device ? [{ port: i + 1, device: p.device }] : []));
  }

  /** Power-on reset (the machine's reset): registers, slots and rings; devices stay plugged in. */
  reset(): void {
    this.hcReset();
  }

  private hcReset(): void {
    this.usbcmd = 0;
    this.usbsts = STS_HCH;
    this.dnctrl = 0;
    this.config = 0;
    this.dcbaap = 0;
    this.slots = new Array<Slot | null>(XHCI_SLOTS + 1).fill(null);
    this.cmd = { deq: 0, cycle: false };
    this.crr = false;
    this.iman = 0;
    this.imod = IMOD_RESET;
    this.erstsz = 0;
    this.erstba = 0;
    this.erdp = 0;
    this.ehb = false;
    this.segs.clear();
    this.evSeg = 0;
    this.evIndex = 0;
    this.evCycle = true;
    this.pending = [];
    this.deferred.clear();
    this.commandsDeferred = false;
    this.resetPorts();
    this.updateIrq();
  }

  /** Whether a doorbell left work for continueWork(). */
  get hasDeferredWork(): boolean {
    return this.commandsDeferred || this.deferred.size > 0;
  }

  /**
   * Go on with what a doorbell left (the machine calls this between steps): another share of
   * commands and of each endpoint's TDs, so that one MMIO write never does unbounded work and a
   * long ring is still done whole.
   */
  continueWork(): void {
    this.shareBytes = this.shareReads = 0;
    if (this.commandsDeferred) {
      this.commandsDeferred = false;
      if (this.crr && this.running()) this.runCommands();
    }
    const endpoints = [...this.deferred];
    this.deferred.clear();
    for (const key of endpoints) {
      const slot = this.slots[key >> 5];
      if (slot && this.running()) this.runEndpoint(key >> 5, key & 31);
    }
  }

  private resetPorts(): void {
    for (const p of this.ports) {
      p.pmsc = 0;
      p.hlpmc = 0;
      p.device?.reset();
      p.sc = PORT_PP | (p.device
        ? PORT_CCS | PORT_CSC | (PLS_POLLING << PORT_PLS_SHIFT) | (SPEED[p.device.speed] << PORT_SPEED_SHIFT)
        : PLS_RXDETECT << PORT_PLS_SHIFT);
    }
  }

  // ---- registers ----

  read(offset: number, size: 1 | 2 | 4): number {
    const value = this.readWord(offset & ~3);
    if (size === 4) return value >>> 0;
    return (value >>> ((offset & 3) * 8)) & (size === 1 ? 0xff : 0xffff);
  }

  private readWord(off: number): number {
    switch (off) {
      case 0x00: return CAP_LENGTH | (0x0110 << 16); // CAPLENGTH, HCIVERSION 1.1
      case 0x04: return XHCI_SLOTS | (1 << 8) | (XHCI_PORTS << 24); // HCSPARAMS1: slots, interrupters, ports
      case 0x08: return ERST_MAX << 4; // HCSPARAMS2: ERST max, no scratchpads
      case 0x0c: return 0; // HCSPARAMS3: exit latencies
      case 0x10: return 1 | ((EXT_CAPS >> 2) << 16); // HCCPARAMS1: 64-bit addressing, xECP
      case 0x14: return DOORBELLS; // DBOFF
      case 0x18: return RUNTIME; // RTSOFF
      case 0x1c: return 0; // HCCPARAMS2
      case USBCMD: return this.usbcmd;
      case USBSTS: return this.usbsts;
      case PAGESIZE: return 1; // 4 KiB
      case DNCTRL: return this.dnctrl;
      case CRCR: return this.crr ? CRCR_CRR : 0; // the pointer reads as zero
      case CRCR + 4: return 0;
      case DCBAAP: return lo32(this.dcbaap);
      case DCBAAP + 4: return hi32(this.dcbaap);
      case CONFIG: return this.config;
      // Supported Protocol capability: USB 2.0 on ports 1..XHCI_PORTS.
      case EXT_CAPS: return 2 | (0x0200 << 16);
      case EXT_CAPS + 4: return 0x20425355; // "USB "
      case EXT_CAPS + 8: return 1 | (XHCI_PORTS << 8);
      case EXT_CAPS + 12: return 0;
      case RUNTIME: return 0; // MFINDEX: no frames are counted
      case IMAN: return this.iman;
      case IMOD: return this.imod;
      case ERSTSZ: return this.erstsz;
      case ERSTBA: return lo32(this.erstba);
      case ERSTBA + 4: return hi32(this.erstba);
      case ERDP: return lo32(this.erdp) | (this.ehb ? ERDP_EHB : 0);
      case ERDP + 4: return hi32(this.erdp);
    }
    if (off >= PORTS && off < PORTS + XHCI_PORTS * 16) {
      const p = this.ports[(off - PORTS) >> 4]!;
      switch (off & 0xc) {
        case 0x0: return p.sc;
        case 0x4: return p.pmsc;
        case 0x8: return 0;
        default: return p.hlpmc;
      }
    }
    return 0;
  }

  write(offset: number, size: 1 | 2 | 4, value: number): void {
    const word = offset & ~3;
    const shift = (offset & 3) * 8;
    if (size !== 4) {
      // Narrow writes merge into the register as it reads, its write-1-to-clear bits as zero.
      const lanes = ((size === 1 ? 0xff : 0xffff) << shift) >>> 0;
      const portsc = word >= PORTS && word < PORTS + XHCI_PORTS * 16 && (word & 0xc) === 0;
      const w1c = word === USBSTS ? STS_W1C : portsc ? PORT_CHANGES | PORT_PED : word === IMAN ? IMAN_IP : word === ERDP ? ERDP_EHB : 0;
      const current = this.readWord(word) & ~w1c;
      value = ((current & ~lanes) | ((value << shift) & lanes)) >>> 0;
    }
    this.writeWord(word, value >>> 0);
  }

  private writeWord(off: number, v: number): void {
    switch (off) {
      case USBCMD: return this.writeUsbcmd(v);
      case USBSTS:
        this.usbsts &= ~(v & STS_W1C);
        this.updateIrq();
        return;
      case DNCTRL: this.dnctrl = v & 0xffff; return;
      case CRCR: case CRCR + 4: return this.writeCrcr(off, v);
      case DCBAAP: this.dcbaap = addr64(v & ~0x3f, hi32(this.dcbaap)); return;
      case DCBAAP + 4: this.dcbaap = addr64(lo32(this.dcbaap), v); return;
      case CONFIG: this.config = Math.min(v & 0xff, XHCI_SLOTS) | (v & 0x300); return;
      case IMAN:
        if (v & IMAN_IP) this.iman &= ~IMAN_IP;
        this.iman = (this.iman & IMAN_IP) | (v & IMAN_IE);
        this.updateIrq();
        return;
      case IMOD: this.imod = v; return;
      case ERSTSZ: this.erstsz = v & 0xffff; this.segs.clear(); return;
      case ERSTBA: this.erstba = addr64(v & ~0x3f, hi32(this.erstba)); this.startEventRing(); return;
      case ERSTBA + 4: this.erstba = addr64(lo32(this.erstba), v); this.startEventRing(); return;
      case ERDP: case ERDP + 4: return this.writeErdp(off, v);
    }
    if (off >= PORTS && off < PORTS + XHCI_PORTS * 16) return this.writePort((off - PORTS) >> 4, off & 0xc, v);
    if (off >= DOORBELLS && off <= DOORBELLS + 4 * XHCI_SLOTS) return this.doorbell((off - DOORBELLS) >> 2, v);
  }

  private writeUsbcmd(v: number): void {
    if (v & CMD_HCRST) {
      this.hcReset();
      return;
    }
    const was = this.usbcmd;
    this.usbcmd = v & CMD_KEPT;
    if (this.usbcmd & CMD_RS && !(was & CMD_RS) && !(this.usbsts & STS_HSE)) this.usbsts &= ~STS_HCH;
    if (!(this.usbcmd & CMD_RS)) {
      this.usbsts |= STS_HCH;
      this.crr = false;
    }
    // Save and restore state (CSS, CRS) complete at once; there is nothing internal to save.
    this.updateIrq();
  }

  // The pointer is taken only while the ring is stopped (the low half brings the cycle state);
  // stop and abort while it runs stop it at once: commands here never wait.
  private writeCrcr(off: number, v: number): void {
    if (this.crr) {
      if (off === CRCR && v & (CRCR_CS | CRCR_CA)) {
        this.crr = false;
        this.postEvent(Uint32Array.of(lo32(this.cmd.deq), hi32(this.cmd.deq), CC.COMMAND_RING_STOPPED << 24, TRB.COMMAND_COMPLETION << 10));
      }
      return;
    }
    if (off === CRCR) this.cmd = { deq: addr64(v & ~0x3f, hi32(this.cmd.deq)), cycle: (v & CRCR_RCS) !== 0 };
    else this.cmd = { deq: addr64(lo32(this.cmd.deq), v), cycle: this.cmd.cycle };
  }

  private writeErdp(off: number, v: number): void {
    if (off === ERDP) {
      this.erdp = addr64(v & ~0xf, hi32(this.erdp));
      if (v & ERDP_EHB) this.ehb = false;
    } else {
      this.erdp = addr64(lo32(this.erdp), v);
    }
    // The handler made room: events that waited go in; any left unread interrupt again.
    this.flushPending();
    if (!this.ehb && this.eventsUnread()) this.interrupt();
  }

  private writePort(i: number, reg: number, v: number): void {
    const p = this.ports[i]!;
    if (reg === 0x4) {
      p.pmsc = v;
      return;
    }
    if (reg === 0xc) {
      p.hlpmc = v;
      return;
    }
    if (reg !== 0x0) return;
    let sc = p.sc & ~(v & PORT_CHANGES); // write 1 to clear
    sc = (sc & ~(PORT_WAKE | PORT_PIC)) | (v & (PORT_WAKE | PORT_PIC));
    if (v & PORT_PED) sc &= ~PORT_PED; // writing PED disables the port
    p.sc = sc;
    if (v & PORT_PR) {
      // Port reset (USB2: the hub driver's SetPortFeature(PORT_RESET)) completes at once.
      if (p.device) {
        p.device.reset();
        p.sc = (p.sc & ~PORT_PLS) | PORT_PED | (PLS_U0 << PORT_PLS_SHIFT);
      }
      this.portChange(i, PORT_PRC);
      return;
    }
    if (v & PORT_LWS && p.device && p.sc & PORT_PED) {
      const pls = (v & PORT_PLS) >>> PORT_PLS_SHIFT;
      const old = (p.sc & PORT_PLS) >>> PORT_PLS_SHIFT;
      if (pls === PLS_U0 || pls === PLS_U3 || pls === PLS_RESUME) {
        p.sc = (p.sc & ~PORT_PLS) | (pls << PORT_PLS_SHIFT);
        // Resume completes: the link is back in U0.
        if (pls === PLS_U0 && (old === PLS_U3 || old === PLS_RESUME)) this.portChange(i, PORT_PLC);
      }
    }
  }

  /** Set change bits on port i; a new change is reported with a Port Status Change Event. */
  private portChange(i: number, bits: number): void {
    const p = this.ports[i]!;
    const fresh = bits & ~p.sc;
    p.sc |= bits;
    if (!fresh || !(this.usbcmd & CMD_RS)) return;
    this.usbsts |= STS_PCD;
    this.postEvent(Uint32Array.of(((i + 1) << 24) >>> 0, 0, CC.SUCCESS << 24, TRB.PORT_STATUS_CHANGE << 10));
  }

  private running(): boolean {
    return (this.usbcmd & CMD_RS) !== 0 && !(this.usbsts & (STS_HCH | STS_HSE));
  }

  /** A Host System Error: the controller stops (xHCI 4.24.1). */
  private systemError(): void {
    this.usbsts |= STS_HSE | STS_HCH;
    this.usbcmd &= ~CMD_RS;
    this.crr = false;
    this.updateIrq();
  }

  // ---- interrupts and the event ring ----

  private updateIrq(): void {
    const level = (this.iman & (IMAN_IP | IMAN_IE)) === (IMAN_IP | IMAN_IE) && (this.usbcmd & CMD_INTE) !== 0;
    if (level !== this.irqLevel) {
      this.irqLevel = level;
      this.irq(level);
    }
  }

  private interrupt(): void {
    this.iman |= IMAN_IP;
    this.usbsts |= STS_EINT;
    this.ehb = true;
    this.updateIrq();
  }

  private startEventRing(): void {
    this.segs.clear();
    this.evSeg = 0;
    this.evIndex = 0;
    this.evCycle = true;
    this.pending = [];
  }

  /** ERST entry `i`: its segment's base and TRB count, or null if the table or segment is bad. */
  private segment(i: number): { base: number; count: number } | null {
    const known = this.segs.get(i);
    if (known !== undefined) return known;
    let seg: { base: number; count: number } | null = null;
    const e = this.erstsz >= 1 && this.erstsz <= 1 << ERST_MAX && i < this.erstsz ? this.mem.read(this.erstba + 16 * i, 16) : null;
    if (e) {
      const w = new DataView(e.buffer, e.byteOffset, 16);
      const base = addr64(w.getUint32(0, true), w.getUint32(4, true));
      const count = w.getUint32(8, true) & 0xffff;
      if (base % 64 === 0 && count >= 16 && count <= 4096 && this.mem.read(base, count * 16)) seg = { base, count };
    }
    this.segs.set(i, seg);
    return seg;
  }

  private eventsUnread(): boolean {
    const seg = this.segment(this.evSeg);
    return seg !== null && seg.base + 16 * this.evIndex !== this.erdp;
  }

  private postEvent(ev: Uint32Array): void {
    if (this.usbsts & STS_HSE) return;
    if (this.pending.length) {
      if (this.pending.length < MAX_PENDING_EVENTS - 1) this.pending.push(ev);
      else if (this.pending.length === MAX_PENDING_EVENTS - 1) this.pending.push(Uint32Array.of(0, 0, CC.EVENT_RING_FULL << 24, TRB.HOST_CONTROLLER << 10));
      return;
    }
    const r = this.writeEvent(ev);
    if (r === "full") this.pending.push(ev);
  }

  private flushPending(): void {
    while (this.pending.length && this.writeEvent(this.pending[0]!) === "written") this.pending.shift();
  }

  /** Write one event at the enqueue pointer, unless the ring is full (one TRB is always left free). */
  private writeEvent(ev: Uint32Array): "written" | "full" | "error" {
    const seg = this.segment(this.evSeg);
    if (!seg) {
      this.systemError();
      return "error";
    }
    let nextSeg = this.evSeg;
    let nextIndex = this.evIndex + 1;
    let next = seg;
    if (nextIndex >= seg.count) {
      nextSeg = (this.evSeg + 1) % this.erstsz;
      nextIndex = 0;
      const s = this.segment(nextSeg);
      if (!s) {
        this.systemError();
        return "error";
      }
      next = s;
    }
    if (next.base + 16 * nextIndex === this.erdp) return "full";
    const dst = this.mem.view(seg.base + 16 * this.evIndex, 16);
    if (!dst) {
      this.systemError();
      return "error";
    }
    const w = new DataView(dst.buffer, dst.byteOffset, 16);
    w.setUint32(0, ev[0]!, true);
    w.setUint32(4, ev[1]!, true);
    w.setUint32(8, ev[2]!, true);
    w.setUint32(12, ((ev[3]! & ~TRB_CYCLE) | (this.evCycle ? TRB_CYCLE : 0)) >>> 0, true);
    if (nextSeg === 0 && nextIndex === 0) this.evCycle = !this.evCycle;
    this.evSeg = nextSeg;
    this.evIndex = nextIndex;
    if (!this.ehb) this.interrupt();
    return "written";
  }

  // ---- rings ----

  /** The next TRB the consumer at `pos` owns, following Link TRBs (which `pos` passes). */
  private fetch(pos: RingPos): Fetch {
    let { deq, cycle } = pos;
    for (let links = 0; links <= MAX_LINKS; links++) {
      this.shareReads++;
      const b = this.mem.read(deq, 16);
      if (!b || deq % 16 !== 0) return { error: deq };
      const w = new Uint32Array(4);
      const v = new DataView(b.buffer, b.byteOffset, 16);
      for (let i = 0; i < 4; i++) w[i] = v.getUint32(4 * i, true);
      if (((w[3]! & TRB_CYCLE) !== 0) !== cycle) return "empty";
      if (type(w) !== TRB.LINK) return { trb: { addr: deq, w }, next: { deq: deq + 16, cycle } };
      if (w[3]! & TRB_TC) cycle = !cycle;
      deq = addr64(w[0]! & ~0xf, w[1]!);
    }
    return { error: deq }; // Link TRBs pointing at Link TRBs: a loop
  }

  private doorbell(target: number, v: number): void {
    if (!this.running()) return;
    if (target === 0) {
      if ((v & 0xff) === 0) this.runCommands();
      return;
    }
    const slot = this.slots[target];
    const dci = v & 0xff;
    const ep = slot && dci >= 1 && dci <= 31 ? slot.eps[dci] : null;
    if (!slot || !ep) return;
    // A doorbell restarts a stopped endpoint; a halted one waits for Reset Endpoint.
    if (ep.state === EP_STOPPED) ep.state = EP_RUNNING;
    this.shareBytes = this.shareReads = 0;
    this.runEndpoint(target, dci);
  }

  // ---- commands ----

  private runCommands(): void {
    this.crr = true;
    for (let n = 0; this.crr && this.running(); n++) {
      if (n === MAX_COMMANDS) {
        this.commandsDeferred = true;
        return;
      }
      const f = this.fetch(this.cmd);
      if (f === "empty") break;
      if ("error" in f) {
        this.systemError();
        return;
      }
      this.cmd = f.next;
      const { code, slot, param } = this.command(f.trb);
      this.postEvent(Uint32Array.of(lo32(f.trb.addr), hi32(f.trb.addr), ((code << 24) | param) >>> 0, ((slot << 24) | (TRB.COMMAND_COMPLETION << 10)) >>> 0));
    }
  }

  private command(trb: Trb): { code: number; slot: number; param: number } {
    const w = trb.w;
    const slotId = w[3]! >>> 24;
    const done = (code: number, slot = slotId) => ({ code, slot, param: 0 });
    if (!COMMANDS.has(type(w))) return done(CC.TRB);
    switch (type(w)) {
      case TRB.NOOP_COMMAND:
        return done(CC.SUCCESS, 0);
      case TRB.ENABLE_SLOT: {
        const max = Math.min(this.config & 0xff, XHCI_SLOTS);
        for (let id = 1; id <= max; id++) {
          if (this.slots[id]) continue;
          this.slots[id] = { state: SLOT_ENABLED, port: 0, ctx: 0, address: 0, device: null, eps: new Array<Endpoint | null>(32).fill(null) };
          return done(CC.SUCCESS, id);
        }
        return done(CC.NO_SLOTS, 0);
      }
    }
    const slot = slotId >= 1 && slotId <= Math.min(this.config & 0xff, XHCI_SLOTS) ? this.slots[slotId] : null;
    if (!slot) return done(CC.SLOT_NOT_ENABLED);
    const input = addr64(w[0]! & ~0xf, w[1]!);
    switch (type(w)) {
      case TRB.DISABLE_SLOT:
        this.slots[slotId] = null;
        return done(CC.SUCCESS);
      case TRB.ADDRESS_DEVICE: return done(this.addressDevice(slotId, slot, input, (w[3]! & TRB_BSR) !== 0));
      case TRB.CONFIGURE_ENDPOINT: return done(this.configureEndpoint(slot, input, (w[3]! & TRB_DC) !== 0));
      case TRB.EVALUATE_CONTEXT: return done(this.evaluateContext(slot, input));
      case TRB.RESET_DEVICE: {
        // Only an addressed or configured slot has something to reset (xHCI 4.6.11).
        if (slot.state === SLOT_ENABLED || slot.state === SLOT_DEFAULT) return done(CC.CONTEXT_STATE);
        for (let dci = 2; dci < 32; dci++) slot.eps[dci] = null;
        const ep0 = slot.eps[1];
        if (ep0) ep0.state = EP_RUNNING;
        slot.state = SLOT_DEFAULT;
        slot.address = 0;
        this.writeSlotState(slot);
        for (let dci = 1; dci < 32; dci++) this.writeEpState(slot, dci);
        return done(CC.SUCCESS);
      }
    }
    const dci = (w[3]! >>> 16) & 0x1f;
    const ep = dci >= 1 ? slot.eps[dci] : null;
    if (!ep) return done(CC.EP_NOT_ENABLED);
    switch (type(w)) {
      case TRB.RESET_ENDPOINT:
        if (ep.state !== EP_HALTED) return done(CC.CONTEXT_STATE);
        ep.state = EP_STOPPED;
        this.writeEpState(slot, dci);
        return done(CC.SUCCESS);
      case TRB.STOP_ENDPOINT:
        if (ep.state !== EP_RUNNING) return done(CC.CONTEXT_STATE);
        // A TD waiting on a NAKing device is where the endpoint stopped.
        this.stoppedTd(slotId, dci, ep);
        ep.state = EP_STOPPED;
        this.writeEpState(slot, dci);
        return done(CC.SUCCESS);
      case TRB.SET_TR_DEQUEUE: {
        if (ep.state !== EP_STOPPED && ep.state !== EP_ERROR) return done(CC.CONTEXT_STATE);
        if ((w[0]! & 0xe) !== 0 && (w[0]! & 0xe) !== 2) return done(CC.PARAMETER); // stream context types need streams
        ep.deq = input;
        ep.dcs = (w[0]! & 1) !== 0;
        ep.state = EP_STOPPED;
        this.writeEpState(slot, dci);
        return done(CC.SUCCESS);
      }
    }
    return done(CC.TRB);
  }

  /** Input context: its control context's drop and add flags and the context at index i. */
  private readInput(input: number): { drop: number; add: number; ctx: (i: number) => Uint32Array } | null {
    const b = this.mem.read(input, CTX * 33);
    if (!b || input % 64 !== 0) return null;
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const words = (i: number) => {
      const out = new Uint32Array(8);
      for (let k = 0; k < 8; k++) out[k] = v.getUint32(CTX * (i + 1) + 4 * k, true);
      return out;
    };
    return { drop: v.getUint32(0, true), add: v.getUint32(4, true), ctx: words };
  }

  /** An endpoint from its context, or null if the context is not one the controller can run. */
  private endpointFrom(ctx: Uint32Array, dci: number): Endpoint | null {
    const epType = (ctx[1]! >>> 3) & 7;
    const maxPacket = ctx[1]! >>> 16;
    if (epType === 0 || maxPacket === 0) return null;
    if ((dci === 1) !== (epType === EP_CONTROL)) return null;
    // Direction: OUT endpoints (types 1-3) at even indexes, IN (5-7) at odd; control at 1.
    if (epType !== EP_CONTROL && (dci & 1) !== (epType >= 5 ? 1 : 0)) return null;
    if ((ctx[0]! >>> 10) & 0x1f) return null; // streams (MaxPStreams) are not supported
    return { state: EP_RUNNING, type: epType, maxPacket, deq: addr64(ctx[2]! & ~0xf, ctx[3]!), dcs: (ctx[2]! & 1) !== 0 };
  }

  private addressDevice(slotId: number, slot: Slot, input: number, bsr: boolean): number {
    if (slot.state !== SLOT_ENABLED && (bsr || slot.state !== SLOT_DEFAULT)) return CC.CONTEXT_STATE;
    const inp = this.readInput(input);
    if (!inp) return CC.TRB;
    if ((inp.add & 3) !== 3 || inp.drop !== 0) return CC.PARAMETER;
    const slotCtx = inp.ctx(0);
    const ep0 = this.endpointFrom(inp.ctx(1), 1);
    if (!ep0) return CC.PARAMETER;
    const entry = this.mem.read(this.dcbaap + 8 * slotId, 8);
    if (!entry) return CC.TRB;
    const out = addr64(new DataView(entry.buffer, entry.byteOffset, 8).getUint32(0, true), new DataView(entry.buffer, entry.byteOffset, 8).getUint32(4, true));
    if (out % 64 !== 0 || !this.mem.view(out, CTX * 32)) return CC.TRB;
    const port = (slotCtx[1]! >>> 16) & 0xff;
    const p = port >= 1 && port <= XHCI_PORTS ? this.ports[port - 1]! : null;
    // Route string: devices are on root ports only (there are no hubs below).
    if (!p || !p.device || !(p.sc & PORT_PED) || (slotCtx[0]! & 0xfffff) !== 0) return CC.TRANSACTION;
    if (this.slots.some((s, id) => id !== slotId && s && this.slotDevice(s) === p.device)) return CC.TRANSACTION; // addressed already
    let address = 0;
    if (!bsr) {
      address = slotId; // unique per device, as the USB address must be
      const r = p.device.control({ requestType: 0, request: 5, value: address, index: 0, length: 0 }, null);
      if (r === STALL) return CC.TRANSACTION;
    }
    slot.port = port;
    slot.device = p.device;
    slot.ctx = out;
    slot.address = address;
    slot.state = bsr ? SLOT_DEFAULT : SLOT_ADDRESSED;
    slot.eps = new Array<Endpoint | null>(32).fill(null);
    slot.eps[1] = ep0;
    // The output context: the input's slot and EP0 contexts, with the controller's fields.
    const dst = this.mem.view(out, CTX * 2)!;
    const v = new DataView(dst.buffer, dst.byteOffset, CTX * 2);
    for (let k = 0; k < 8; k++) {
      v.setUint32(4 * k, slotCtx[k]!, true);
      v.setUint32(CTX + 4 * k, inp.ctx(1)[k]!, true);
    }
    this.writeSlotState(slot);
    this.writeEpState(slot, 1);
    return CC.SUCCESS;
  }

  private configureEndpoint(slot: Slot, input: number, deconfigure: boolean): number {
    if (slot.state !== SLOT_ADDRESSED && slot.state !== SLOT_CONFIGURED) return CC.CONTEXT_STATE;
    if (deconfigure) {
      for (let dci = 2; dci < 32; dci++) slot.eps[dci] = null;
      slot.state = SLOT_ADDRESSED;
      this.writeSlotState(slot);
      for (let dci = 2; dci < 32; dci++) this.writeEpState(slot, dci);
      return CC.SUCCESS;
    }
    const inp = this.readInput(input);
    if (!inp) return CC.TRB;
    if (inp.drop & 3 || inp.add & 2) return CC.PARAMETER;
    // Check every added context before changing anything.
    const added = new Map<number, { ep: Endpoint; ctx: Uint32Array }>();
    for (let dci = 2; dci < 32; dci++) {
      if (!(inp.add & (1 << dci))) continue;
      const ctx = inp.ctx(dci);
      const ep = this.endpointFrom(ctx, dci);
      if (!ep) return CC.PARAMETER;
      added.set(dci, { ep, ctx });
    }
    const dst = this.mem.view(slot.ctx, CTX * 32);
    if (!dst) return CC.TRB;
    const v = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
    for (let dci = 2; dci < 32; dci++) {
      if (inp.drop & (1 << dci)) slot.eps[dci] = null;
      const a = added.get(dci);
      if (a) {
        slot.eps[dci] = a.ep;
        for (let k = 0; k < 8; k++) v.setUint32(CTX * dci + 4 * k, a.ctx[k]!, true);
      }
      this.writeEpState(slot, dci);
    }
    if (inp.add & 1) {
      // Context Entries and the rest of the slot context as the driver gave them.
      const s = inp.ctx(0);
      v.setUint32(0, (v.getUint32(0, true) & 0x07ffffff) | (s[0]! & 0xf8000000), true);
    }
    slot.state = slot.eps.some((e, dci) => dci >= 2 && e) ? SLOT_CONFIGURED : SLOT_ADDRESSED;
    this.writeSlotState(slot);
    return CC.SUCCESS;
  }

  private evaluateContext(slot: Slot, input: number): number {
    if (slot.state === SLOT_ENABLED) return CC.CONTEXT_STATE;
    const inp = this.readInput(input);
    if (!inp) return CC.TRB;
    const dst = this.mem.view(slot.ctx, CTX * 2);
    if (!dst) return CC.TRB;
    const v = new DataView(dst.buffer, dst.byteOffset, CTX * 2);
    if (inp.add & 2) {
      const maxPacket = inp.ctx(1)[1]! >>> 16;
      if (maxPacket === 0) return CC.PARAMETER;
      slot.eps[1]!.maxPacket = maxPacket;
      v.setUint32(CTX + 4, (v.getUint32(CTX + 4, true) & 0xffff) | (maxPacket << 16), true);
    }
    if (inp.add & 1) {
      // Max exit latency and interrupter target.
      const s = inp.ctx(0);
      v.setUint32(4, (v.getUint32(4, true) & ~0xffff) | (s[1]! & 0xffff), true);
      v.setUint32(8, (v.getUint32(8, true) & 0x3fffff) | (s[2]! & ~0x3fffff), true);
    }
    return CC.SUCCESS;
  }

  /** The slot context's address and state in the output context. */
  private writeSlotState(slot: Slot): void {
    const dst = this.mem.view(slot.ctx + 12, 4);
    if (!dst) return;
    new DataView(dst.buffer, dst.byteOffset, 4).setUint32(0, ((slot.state << 27) | slot.address) >>> 0, true);
  }

  /** An endpoint context's state and dequeue pointer in the output context (disabled if gone). */
  private writeEpState(slot: Slot, dci: number): void {
    const dst = this.mem.view(slot.ctx + CTX * dci, 16);
    if (!dst) return;
    const v = new DataView(dst.buffer, dst.byteOffset, 16);
    const ep = slot.eps[dci];
    v.setUint32(0, (v.getUint32(0, true) & ~7) | (ep ? ep.state : EP_DISABLED), true);
    if (!ep) return;
    v.setUint32(8, ((ep.deq % 0x100000000) | (ep.dcs ? 1 : 0)) >>> 0, true);
    v.setUint32(12, hi32(ep.deq), true);
  }

  // ---- transfers ----

  private wakeDevice(device: UsbDevice, ep: number): void {
    if (!this.running() || ep < 1 || ep > 15) return;
    const id = this.slots.findIndex((s) => s && this.slotDevice(s) === device);
    if (id <= 0) return;
    this.shareBytes = this.shareReads = 0;
    this.runEndpoint(id, 2 * ep + 1);
  }

  /** The device a slot reaches: the one it addressed, if that is still on its port. */
  private slotDevice(slot: Slot): UsbDevice | null {
    const here = slot.port >= 1 ? this.ports[slot.port - 1]!.device : null;
    return slot.device && here === slot.device ? here : null;
  }

  private transferEvent(slotId: number, dci: number, trbAddr: number, code: number, residual: number, flags = 0): void {
    this.postEvent(Uint32Array.of(lo32(trbAddr), hi32(trbAddr), ((code << 24) | (residual & 0xffffff)) >>> 0, ((slotId << 24) | (dci << 16) | (TRB.TRANSFER_EVENT << 10) | flags) >>> 0));
  }

  /** The TD at the endpoint's dequeue pointer: its TRBs and where the ring goes on after it. */
  private gatherTd(ep: Endpoint): { trbs: Trb[]; next: RingPos } | "empty" | { error: number } {
    const trbs: Trb[] = [];
    let pos: RingPos = { deq: ep.deq, cycle: ep.dcs };
    const control = ep.type === EP_CONTROL;
    // Rings have a Link TRB per segment, not one per TRB: a TD reads at most twice its TRBs.
    const readsAtStart = this.shareReads;
    while (trbs.length < MAX_TD_TRBS && this.shareReads - readsAtStart < 2 * MAX_TD_TRBS) {
      const f = this.fetch(pos);
      if (f === "empty") return "empty"; // the rest of the TD is not there yet
      if ("error" in f) return f;
      trbs.push(f.trb);
      pos = f.next;
      const t = type(f.trb.w);
      // A control transfer ends with its Status stage (a No-op alone is a TD too); other TDs
      // end at the first TRB without the chain bit.
      const last = control ? t === TRB.STATUS || t === TRB.NOOP || (trbs.length === 1 && t !== TRB.SETUP) : !(f.trb.w[3]! & TRB_CH);
      if (last) return { trbs, next: pos };
    }
    return { error: trbs[0]!.addr };
  }

  private runEndpoint(slotId: number, dci: number): void {
    const slot = this.slots[slotId]!;
    for (let n = 0; ; n++) {
      const ep = slot.eps[dci];
      if (!ep || ep.state !== EP_RUNNING || !this.running()) return;
      if (n === MAX_TDS || (n > 0 && this.shareReads >= MAX_SHARE_TRB_READS)) {
        this.deferred.add(slotId * 32 + dci);
        return;
      }
      const td = this.gatherTd(ep);
      if (td === "empty") return;
      if ("error" in td) {
        // The ring is not in RAM, loops, or a TD never ends: the endpoint cannot go on.
        this.transferEvent(slotId, dci, td.error, CC.TRB, 0);
        ep.state = EP_HALTED;
        this.writeEpState(slot, dci);
        return;
      }
      // The share's bytes are spent: this TD waits for the next share (TRB reads are cheap).
      const bytes = Math.min(this.tdBytes(td.trbs), MAX_TD_BYTES);
      if (this.shareBytes > 0 && this.shareBytes + bytes > MAX_SHARE_BYTES) {
        this.deferred.add(slotId * 32 + dci);
        return;
      }
      this.shareBytes += bytes;
      const device = this.slotDevice(slot);
      const r = ep.type === EP_CONTROL ? this.controlTd(slotId, dci, device, td.trbs) : this.dataTd(slotId, dci, ep, device, td.trbs);
      if (r === "wait") return; // the device NAKed: the TD stays where it is
      if (r === "halt") {
        ep.state = EP_HALTED;
        this.writeEpState(slot, dci);
        return;
      }
      ep.deq = td.next.deq;
      ep.dcs = td.next.cycle;
      this.writeEpState(slot, dci);
    }
  }

  /** A Stop Endpoint found a TD waiting: it ends as Stopped, nothing moved. */
  private stoppedTd(slotId: number, dci: number, ep: Endpoint): void {
    const f = this.fetch({ deq: ep.deq, cycle: ep.dcs });
    if (typeof f === "object" && "trb" in f) this.transferEvent(slotId, dci, f.trb.addr, CC.STOPPED, f.trb.w[2]! & 0x1ffff);
  }

  /** The buffer of a data TRB, checked: immediate data, a range of RAM, or null if outside. */
  private buffer(trb: Trb, write: boolean): Uint8Array | null {
    const len = trb.w[2]! & 0x1ffff;
    if (trb.w[3]! & TRB_IDT) {
      if (write || len > 8) return null;
      const b = new Uint8Array(8);
      new DataView(b.buffer).setUint32(0, trb.w[0]!, true);
      new DataView(b.buffer).setUint32(4, trb.w[1]!, true);
      return b.subarray(0, len);
    }
    if (len === 0) return new Uint8Array(0);
    const at = addr64(trb.w[0]!, trb.w[1]!);
    return write ? this.mem.view(at, len) : this.mem.read(at, len);
  }

  /**
   * Data TRBs (Normal, or a control Data stage and its Normal TRBs) moving `data` in, or
   * gathering data out; events for IOC, and for a short packet on ISP. Buffers are checked.
   */
  private scatter(slotId: number, dci: number, trbs: Trb[], data: Uint8Array): void {
    let at = 0;
    for (let i = 0; i < trbs.length; i++) {
      const t = trbs[i]!;
      const kind = type(t.w);
      if (kind === TRB.EVENT_DATA) {
        if (t.w[3]! & TRB_IOC) this.eventData(slotId, dci, t, at);
        continue;
      }
      if (kind === TRB.NOOP) {
        if (t.w[3]! & TRB_IOC) this.transferEvent(slotId, dci, t.addr, CC.SUCCESS, 0);
        continue;
      }
      if (kind !== TRB.NORMAL && kind !== TRB.DATA) continue;
      const len = t.w[2]! & 0x1ffff;
      const got = Math.min(len, data.length - at);
      if (got > 0) this.buffer(t, true)!.set(data.subarray(at, at + got));
      at += got;
      if (got < len) {
        // A short packet ends the TD here.
        if (t.w[3]! & (TRB_ISP | TRB_IOC)) this.transferEvent(slotId, dci, t.addr, CC.SHORT_PACKET, len - got);
        else {
          // No ISP here: the event goes to the TD's IOC TRB, if it has one.
          const ioc = trbs.slice(i + 1).find((x) => x.w[3]! & TRB_IOC && type(x.w) !== TRB.STATUS);
          if (ioc) this.transferEvent(slotId, dci, ioc.addr, CC.SHORT_PACKET, ioc.w[2]! & 0x1ffff);
        }
        return;
      }
      if (t.w[3]! & TRB_IOC) this.transferEvent(slotId, dci, t.addr, CC.SUCCESS, 0);
    }
  }

  private eventData(slotId: number, dci: number, t: Trb, moved: number): void {
    this.postEvent(Uint32Array.of(t.w[0]!, t.w[1]!, ((CC.SUCCESS << 24) | (moved & 0xffffff)) >>> 0, ((slotId << 24) | (dci << 16) | (TRB.TRANSFER_EVENT << 10) | ED) >>> 0));
  }

  /** Check a TD's data TRBs: their buffers in RAM, their types allowed; else the bad TRB. */
  private checkData(trbs: Trb[], write: boolean, allowed: number[]): Trb | null {
    for (const t of trbs) {
      const kind = type(t.w);
      if (kind === TRB.EVENT_DATA || kind === TRB.NOOP) continue;
      if (!allowed.includes(kind) || !this.buffer(t, write)) return t;
    }
    return null;
  }

  /** Bytes a TD's data TRBs hold. */
  private tdBytes(trbs: Trb[]): number {
    let total = 0;
    for (const t of trbs) if (type(t.w) === TRB.NORMAL || type(t.w) === TRB.DATA) total += t.w[2]! & 0x1ffff;
    return total;
  }

  /** The TRB past which a TD moves more than MAX_TD_BYTES, or null. */
  private tooLong(trbs: Trb[]): Trb | null {
    let total = 0;
    for (const t of trbs) {
      if (type(t.w) === TRB.NORMAL || type(t.w) === TRB.DATA) total += t.w[2]! & 0x1ffff;
      if (total > MAX_TD_BYTES) return t;
    }
    return null;
  }

  private gatherOut(trbs: Trb[], limit: number): Uint8Array {
    const parts = trbs.filter((t) => type(t.w) === TRB.NORMAL || type(t.w) === TRB.DATA).map((t) => this.buffer(t, false)!);
    const total = Math.min(limit, parts.reduce((n, p) => n + p.length, 0));
    const out = new Uint8Array(total);
    let at = 0;
    for (const p of parts) {
      const take = Math.min(p.length, total - at);
      out.set(p.subarray(0, take), at);
      at += take;
    }
    return out;
  }

  private dataTd(slotId: number, dci: number, ep: Endpoint, device: UsbDevice | null, trbs: Trb[]): "done" | "wait" | "halt" {
    const isIn = ep.type >= 5;
    const bad = this.checkData(trbs, isIn, [TRB.NORMAL]) ?? this.tooLong(trbs);
    if (bad) {
      this.transferEvent(slotId, dci, bad.addr, CC.TRB, bad.w[2]! & 0x1ffff);
      return "done";
    }
    const first = trbs[0]!;
    if (!trbs.some((t) => type(t.w) === TRB.NORMAL)) {
      // No Op and Event Data TRBs only (a cancelled TD the driver turned into No Ops): nothing
      // goes on the bus; their IOC events are all there is.
      for (const t of trbs) {
        if (!(t.w[3]! & TRB_IOC)) continue;
        if (type(t.w) === TRB.EVENT_DATA) this.eventData(slotId, dci, t, 0);
        else this.transferEvent(slotId, dci, t.addr, CC.SUCCESS, 0);
      }
      return "done";
    }
    if (!device) {
      this.transferEvent(slotId, dci, first.addr, CC.TRANSACTION, first.w[2]! & 0x1ffff);
      return "halt";
    }
    const epNum = dci >> 1;
    const total = trbs.reduce((n, t) => n + (type(t.w) === TRB.NORMAL ? t.w[2]! & 0x1ffff : 0), 0);
    if (isIn) {
      const r = device.transferIn(epNum, total);
      if (r === NAK) return "wait";
      if (r === STALL) {
        this.transferEvent(slotId, dci, first.addr, CC.STALL, first.w[2]! & 0x1ffff);
        return "halt";
      }
      this.scatter(slotId, dci, trbs, r);
      return "done";
    }
    const r = device.transferOut(epNum, this.gatherOut(trbs, total));
    if (r === NAK) return "wait";
    if (r === STALL) {
      this.transferEvent(slotId, dci, first.addr, CC.STALL, first.w[2]! & 0x1ffff);
      return "halt";
    }
    for (const t of trbs) {
      if (!(t.w[3]! & TRB_IOC)) continue;
      if (type(t.w) === TRB.EVENT_DATA) this.eventData(slotId, dci, t, total);
      else this.transferEvent(slotId, dci, t.addr, CC.SUCCESS, 0);
    }
    return "done";
  }

  private controlTd(slotId: number, dci: number, device: UsbDevice | null, trbs: Trb[]): "done" | "halt" {
    const setup = trbs[0]!;
    if (type(setup.w) === TRB.NOOP) {
      if (setup.w[3]! & TRB_IOC) this.transferEvent(slotId, dci, setup.addr, CC.SUCCESS, 0);
      return "done";
    }
    const status = trbs[trbs.length - 1]!;
    const data = trbs.slice(1, -1);
    const fail = (t: Trb, code: number) => this.transferEvent(slotId, dci, t.addr, code, t.w[2]! & 0x1ffff);
    if (type(setup.w) !== TRB.SETUP || !(setup.w[3]! & TRB_IDT) || (setup.w[2]! & 0x1ffff) !== 8 || type(status.w) !== TRB.STATUS) {
      fail(setup, CC.TRB);
      return "done";
    }
    if (data.length && type(data[0]!.w) !== TRB.DATA) {
      fail(data[0]!, CC.TRB);
      return "done";
    }
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setUint32(0, setup.w[0]!, true);
    new DataView(bytes.buffer).setUint32(4, setup.w[1]!, true);
    const req = parseSetup(bytes);
    const isIn = (req.requestType & 0x80) !== 0;
    if (data.length && ((data[0]!.w[3]! & TRB_DIR_IN) !== 0) !== isIn) {
      fail(data[0]!, CC.TRB);
      return "done";
    }
    const bad = this.checkData(data, isIn, [TRB.DATA, TRB.NORMAL]) ?? this.tooLong(data);
    if (bad) {
      fail(bad, CC.TRB);
      return "done";
    }
    if (setup.w[3]! & TRB_IOC) this.transferEvent(slotId, dci, setup.addr, CC.SUCCESS, 0);
    if (!device) {
      fail(data[0] ?? status, CC.TRANSACTION);
      return "halt";
    }
    const room = data.reduce((n, t) => n + (type(t.w) === TRB.EVENT_DATA ? 0 : t.w[2]! & 0x1ffff), 0);
    const r = device.control(req, isIn ? null : this.gatherOut(data, Math.min(room, req.length)));
    if (r === STALL) {
      fail(data[0] ?? status, CC.STALL);
      return "halt";
    }
    if (isIn) this.scatter(slotId, dci, data, r.subarray(0, Math.min(room, req.length)));
    else for (const t of data) if (t.w[3]! & TRB_IOC) this.transferEvent(slotId, dci, t.addr, CC.SUCCESS, 0);
    if (status.w[3]! & TRB_IOC) this.transferEvent(slotId, dci, status.addr, CC.SUCCESS, 0);
    return "done";
  }

  // ---- snapshots ----

  save(): DeviceState {
    const ep = (e: Endpoint | null) => (e ? [e.state, e.type, e.maxPacket, e.deq, e.dcs ? 1 : 0] : null);
    return {
      kind: XHCI.kind,
      version: VERSION,
      regs: wordsState([this.usbcmd, this.usbsts, this.dnctrl, this.config, this.iman, this.imod, this.erstsz]),
      ehb: this.ehb,
      dcbaap: this.dcbaap,
      erstba: this.erstba,
      erdp: this.erdp,
      cmd: [this.cmd.deq, this.cmd.cycle ? 1 : 0, this.crr ? 1 : 0],
      event: [this.evSeg, this.evIndex, this.evCycle ? 1 : 0],
      pending: this.pending.map((e) => wordsState(e)),
      ports: this.ports.map((p) => ({ sc: p.sc, pmsc: p.pmsc, hlpmc: p.hlpmc, device: p.device?.name ?? null, state: p.device?.save() ?? null })),
      slots: this.slots.map((s) => (s ? { state: s.state, port: s.port, ctx: s.ctx, address: s.address, bound: this.slotDevice(s) !== null, eps: s.eps.map(ep) } : null)),
      irqLevel: this.irqLevel,
      deferred: [...this.deferred],
      commandsDeferred: this.commandsDeferred,
    };
  }

  /**
   * A slot from its state, with the invariants the commands keep: an Enabled slot has no port,
   * device or endpoints; any later state has a root port, EP0 (a control endpoint), endpoints
   * beyond EP0 only when Configured (and then at least one), each of the direction its index
   * says; a bound slot's port has a device.
   */
  private readSlot(o: StateReader, addr: (r: StateReader, f: string | number) => number): Slot {
    const state = o.int("state", SLOT_ENABLED, SLOT_CONFIGURED);
    const enabled = state === SLOT_ENABLED;
    const port = enabled ? o.int("port", 0, 0) : o.int("port", 1, XHCI_PORTS);
    const bound = o.bool("bound");
    if (bound && enabled) o.reject("bound", "false in the Enabled state");
    const device = bound ? this.ports[port - 1]!.device ?? o.reject("bound", `false (port ${port} has no device)`) : null;
    const el = o.list("eps", 32, 32);
    const eps = el.map((d): Endpoint | null => {
      if (el.isNull(d)) {
        if (d === 1 && !enabled) el.reject(d, "EP0 (a slot past Enabled has one)");
        return null;
      }
      if (d === 0) el.reject(d, "null (there is no endpoint context 0)");
      if (enabled) el.reject(d, "null in the Enabled state");
      if (d >= 2 && state !== SLOT_CONFIGURED) el.reject(d, "null unless the slot is Configured");
      const x = el.list(d, 5, 5);
      const epType = x.int(1, 1, 7);
      const fits = d === 1 ? epType === EP_CONTROL : epType !== EP_CONTROL && (d & 1) === (epType >= 5 ? 1 : 0);
      if (!fits) x.reject(1, d === 1 ? "4 (control) at EP0" : `an ${d & 1 ? "IN (5..7)" : "OUT (1..3)"} endpoint type at index ${d}`);
      return { state: x.int(0, EP_DISABLED, EP_ERROR), type: epType, maxPacket: x.int(2, 1, 0xffff), deq: addr(x, 3), dcs: x.int(4, 0, 1) === 1 };
    });
    if (state === SLOT_CONFIGURED && !eps.some((e, d) => d >= 2 && e)) o.reject("eps", "a list with an endpoint beyond EP0 in the Configured state");
    return { state, port, ctx: addr(o, "ctx"), address: o.int("address", 0, 127), device, eps };
  }

  restore(state: unknown): void {
    const s = StateReader.open(state, this.name, XHCI.kind, VERSION);
    const regs = s.words("regs", 7);
    const addr = (r: StateReader, f: string | number) => r.int(f, 0, Number.MAX_SAFE_INTEGER);
    const dcbaap = addr(s, "dcbaap");
    const erstba = addr(s, "erstba");
    const erdp = addr(s, "erdp");
    const ehb = s.bool("ehb");
    const c = s.list("cmd", 3, 3);
    const cmd = { deq: addr(c, 0), cycle: c.int(1, 0, 1) === 1 };
    const crr = c.int(2, 0, 1) === 1;
    const e = s.list("event", 3, 3);
    const evSeg = e.int(0, 0, (1 << ERST_MAX) - 1);
    const evIndex = e.int(1, 0, 4095);
    const evCycle = e.int(2, 0, 1) === 1;
    const pl = s.list("pending", 0, MAX_PENDING_EVENTS);
    const pending = pl.map((i) => pl.words(i, 4));
    const ports = s.list("ports", XHCI_PORTS, XHCI_PORTS);
    const portStates = ports.map((i) => {
      const p = ports.object(i);
      const name = p.nullable("device", (f) => p.string(f, 64));
      const here = this.ports[i]!.device;
      if ((here?.name ?? null) !== name) p.reject("device", `the device attached here now (${here?.name ?? "none"})`);
      return { sc: p.int("sc", 0, 0xffffffff), pmsc: p.int("pmsc", 0, 0xffffffff), hlpmc: p.int("hlpmc", 0, 0xffffffff), state: name ? p.state("state") : null };
    });
    const sl = s.list("slots", XHCI_SLOTS + 1, XHCI_SLOTS + 1);
    const slots = sl.map((i): Slot | null => {
      if (sl.isNull(i)) return null;
      if (i === 0) sl.reject(i, "null (there is no slot 0)");
      return this.readSlot(sl.object(i), addr);
    });
    // A device is addressed by one slot at most (Address Device refuses a second).
    slots.forEach((x, i) => {
      if (x?.device && slots.some((y, j) => j < i && y?.device === x.device)) sl.object(i).reject("bound", `false (slot ${slots.findIndex((y) => y?.device === x.device)} is bound to ${x.device.name})`);
    });
    const irqLevel = s.bool("irqLevel");
    const dl = s.list("deferred", 0, XHCI_SLOTS * 31);
    const deferred = new Set(dl.map((i) => dl.int(i, 32 + 1, XHCI_SLOTS * 32 + 31)));
    const commandsDeferred = s.bool("commandsDeferred");
    // Every device checks its state before any device or the controller changes.
    const takes = portStates.map((p, i) => (p.state ? this.ports[i]!.device!.checkState(p.state) : () => {}));
    for (const take of takes) take();
    [this.usbcmd, this.usbsts, this.dnctrl, this.config, this.iman, this.imod, this.erstsz] = regs;
    Object.assign(this, { dcbaap, erstba, erdp, ehb, cmd, crr, evSeg, evIndex, evCycle, pending, slots, deferred, commandsDeferred });
    this.segs.clear();
    portStates.forEach((p, i) => Object.assign(this.ports[i]!, { sc: p.sc, pmsc: p.pmsc, hlpmc: p.hlpmc }));
    this.irqLevel = irqLevel;
    this.irq(irqLevel);
  }
}
