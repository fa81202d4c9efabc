// A small xHCI driver for the tests: it programs the controller as Linux's xhci-hcd does
// (halt, reset, DCBAA, command ring, one-segment event ring, interrupter 0, run), enumerates
// devices through Enable Slot / Address Device / control transfers, and queues TDs on
// transfer rings. Guest RAM is a plain array the tests can also corrupt.
import type { GuestMemory } from "../../host/devices/backends";
import {
  CMD_HCRST, CMD_INTE, CMD_RS, CONFIG, CRCR, DCBAAP, DOORBELLS, ERDP, ERDP_EHB, ERSTBA, ERSTSZ, IMAN, IMAN_IE, PORTS, PORT_PR,
  TRB, USBCMD, Xhci,
} from "../../host/devices/xhci";

export const RAM_BASE = 0x8000_0000;
export const RAM_SIZE = 1 << 21;
export const DCBAA = RAM_BASE + 0x1000;
export const CMD_RING = RAM_BASE + 0x2000;
export const ERST = RAM_BASE + 0x3000;
export const EVENT_RING = RAM_BASE + 0x4000;
export const EVENT_TRBS = 64;
const CMD_TRBS = 16;
const XFER_TRBS = 64;
export const inputCtx = (slot: number) => RAM_BASE + 0x10000 + slot * 0x1000;
export const outputCtx = (slot: number) => RAM_BASE + 0x40000 + slot * 0x1000;
export const xferRing = (slot: number, dci: number) => RAM_BASE + 0x80000 + (slot * 32 + dci) * 0x400;
export const DATA = RAM_BASE + 0x180000;

export interface Event {
  type: number;
  code: number;
  slot: number;
  dci: number;
  ptr: number;
  len: number;
  ed: boolean;
  port: number;
}

export interface TrbSpec {
  type: number;
  ptr?: number;
  lo?: number;
  hi?: number;
  len?: number;
  flags?: number;
}

export const IOC = 1 << 5;
export const ISP = 1 << 2;
export const CH = 1 << 4;
export const IDT = 1 << 6;
export const DIR_IN = 1 << 16;

export class Driver {
  readonly ram = new Uint8Array(RAM_SIZE);
  readonly dv = new DataView(this.ram.buffer);
  readonly mem: GuestMemory;
  readonly levels: boolean[] = [];
  readonly hc: Xhci;
  private cmdEnq = 0;
  private cmdCycle = 1;
  private evDeq = 0;
  private evCycle = 1;
  private readonly rings = new Map<string, { enq: number; cycle: number }>();

  constructor(hc?: (mem: GuestMemory, irq: (l: boolean) => void) => Xhci) {
    const view = (gpa: number, len: number) =>
      gpa >= RAM_BASE && len >= 0 && gpa - RAM_BASE + len <= RAM_SIZE ? this.ram.subarray(gpa - RAM_BASE, gpa - RAM_BASE + len) : null;
    // read() hands out a copy: a controller writing through a read view fails its test.
    this.mem = { view, read: (gpa, len) => view(gpa, len)?.slice() ?? null };
    const irq = (l: boolean) => this.levels.push(l);
    this.hc = hc ? hc(this.mem, irq) : new Xhci("xhci0", this.mem, irq);
  }

  get irq(): boolean {
    return this.levels.length ? this.levels[this.levels.length - 1]! : false;
  }

  r(off: number): number {
    return this.hc.read(off, 4);
  }

  w(off: number, v: number): void {
    this.hc.write(off, 4, v >>> 0);
  }

  /** A 64-bit register written as the bus splits it: low half, then high half. */
  w64(off: number, v: number): void {
    this.w(off, v % 0x100000000);
    this.w(off + 4, Math.floor(v / 0x100000000));
  }

  u32(gpa: number): number {
    return this.dv.getUint32(gpa - RAM_BASE, true);
  }

  set32(gpa: number, v: number): void {
    this.dv.setUint32(gpa - RAM_BASE, v >>> 0, true);
  }

  set64(gpa: number, v: number): void {
    this.set32(gpa, v % 0x100000000);
    this.set32(gpa + 4, Math.floor(v / 0x100000000));
  }

  bytes(gpa: number, len: number): Uint8Array {
    return this.ram.subarray(gpa - RAM_BASE, gpa - RAM_BASE + len);
  }

  /** xhci_halt, xhci_reset, xhci_init's ring set-up, xhci_run. */
  start(slots = 32): void {
    this.w(USBCMD, 0);
    this.w(USBCMD, CMD_HCRST);
    this.w(CONFIG, slots);
    this.w64(DCBAAP, DCBAA);
    this.cmdEnq = 0;
    this.cmdCycle = 1;
    this.makeRing(CMD_RING, CMD_TRBS);
    this.w64(CRCR, CMD_RING + 1);
    this.set64(ERST, EVENT_RING);
    this.set32(ERST + 8, EVENT_TRBS);
    this.w(ERSTSZ, 1);
    this.evDeq = 0;
    this.evCycle = 1;
    this.w64(ERDP, EVENT_RING);
    this.w64(ERSTBA, ERST);
    this.w(IMAN, IMAN_IE);
    this.w(USBCMD, CMD_RS | CMD_INTE);
  }

  /** A ring of n TRBs, zeroed, whose last is a Link back to the start with Toggle Cycle. */
  makeRing(base: number, n: number): void {
    this.bytes(base, n * 16).fill(0);
    this.set64(base + (n - 1) * 16, base);
    this.set32(base + (n - 1) * 16 + 12, (TRB.LINK << 10) | 2);
  }

  private put(base: number, n: number, st: { enq: number; cycle: number }, t: TrbSpec): number {
    const at = base + st.enq * 16;
    const ptr = t.ptr ?? 0;
    this.set32(at, t.lo ?? ptr % 0x100000000);
    this.set32(at + 4, t.hi ?? Math.floor(ptr / 0x100000000));
    this.set32(at + 8, t.len ?? 0);
    this.set32(at + 12, (t.type << 10) | (t.flags ?? 0) | st.cycle);
    st.enq++;
    if (st.enq === n - 1) {
      // Hand the link over with the current cycle, then toggle.
      const link = base + (n - 1) * 16;
      this.set32(link + 12, (this.u32(link + 12) & ~1) | st.cycle);
      st.enq = 0;
      st.cycle ^= 1;
    }
    return at;
  }

  /** Post a command and ring doorbell 0; returns its completion event. */
  command(t: TrbSpec): Event {
    const st = { enq: this.cmdEnq, cycle: this.cmdCycle };
    const at = this.put(CMD_RING, CMD_TRBS, st, t);
    this.cmdEnq = st.enq;
    this.cmdCycle = st.cycle;
    this.w(DOORBELLS, 0);
    const ev = this.events().filter((e) => e.type === TRB.COMMAND_COMPLETION);
    const mine = ev.find((e) => e.ptr === at);
    if (!mine) throw new Error(`no completion for the command at 0x${at.toString(16)} (events: ${JSON.stringify(ev)})`);
    return mine;
  }

  /** Every new event on the event ring; the dequeue pointer is handed back (EHB cleared). */
  events(): Event[] {
    const out: Event[] = [];
    for (;;) {
      const at = EVENT_RING + this.evDeq * 16;
      const c = this.u32(at + 12);
      if ((c & 1) !== this.evCycle) break;
      const w2 = this.u32(at + 8);
      out.push({
        type: (c >>> 10) & 0x3f, code: w2 >>> 24, len: w2 & 0xffffff, slot: c >>> 24, dci: (c >>> 16) & 0x1f,
        ptr: this.u32(at) + this.u32(at + 4) * 0x100000000, ed: (c & 4) !== 0, port: this.u32(at) >>> 24,
      });
      this.evDeq++;
      if (this.evDeq === EVENT_TRBS) {
        this.evDeq = 0;
        this.evCycle ^= 1;
      }
    }
    this.w64(ERDP, (EVENT_RING + this.evDeq * 16) + ERDP_EHB);
    return out;
  }

  /** Queue TRBs on a transfer ring (made on first use); returns their addresses. */
  queue(slot: number, dci: number, trbs: TrbSpec[]): number[] {
    const key = `${slot}/${dci}`;
    let st = this.rings.get(key);
    if (!st) {
      this.makeRing(xferRing(slot, dci), XFER_TRBS);
      st = { enq: 0, cycle: 1 };
      this.rings.set(key, st);
    }
    return trbs.map((t) => this.put(xferRing(slot, dci), XFER_TRBS, st, t));
  }

  ring(slot: number, dci: number): void {
    this.w(DOORBELLS + 4 * slot, dci);
  }

  /** Port reset, Enable Slot, Address Device: the slot of the device on `port`. */
  enumerate(port: number, ep0MaxPacket = 64): number {
    this.w(PORTS + 16 * (port - 1), PORT_PR | (1 << 9));
    // The hub driver acknowledges the connect and the reset (write 1 to clear).
    this.w(PORTS + 16 * (port - 1), (1 << 9) | (1 << 17) | (1 << 21));
    const en = this.command({ type: TRB.ENABLE_SLOT });
    if (en.code !== 1) throw new Error(`Enable Slot: code ${en.code}`);
    const slot = en.slot;
    this.set64(DCBAA + 8 * slot, outputCtx(slot));
    this.bytes(outputCtx(slot), 0x400).fill(0);
    const inp = inputCtx(slot);
    this.bytes(inp, 0x440).fill(0);
    this.set32(inp + 4, 3); // add slot and EP0
    const speed = (this.r(PORTS + 16 * (port - 1)) >>> 10) & 0xf;
    this.set32(inp + 32, (1 << 27) | (speed << 20));
    this.set32(inp + 32 + 4, port << 16);
    this.rings.delete(`${slot}/1`);
    this.makeRing(xferRing(slot, 1), XFER_TRBS);
    this.rings.set(`${slot}/1`, { enq: 0, cycle: 1 });
    this.epContext(inp + 64, 4, ep0MaxPacket, xferRing(slot, 1));
    const ad = this.command({ type: TRB.ADDRESS_DEVICE, ptr: inp, flags: slot << 24 });
    if (ad.code !== 1) throw new Error(`Address Device: code ${ad.code}`);
    return slot;
  }

  epContext(at: number, epType: number, maxPacket: number, ring: number): void {
    this.set32(at + 4, (3 << 1) | (epType << 3) | (maxPacket << 16));
    this.set64(at + 8, ring + 1);
  }

  /** Configure Endpoint adding endpoints (dci, type, max packet), each with a fresh ring. */
  configure(slot: number, eps: { dci: number; type: number; maxPacket: number }[]): Event {
    const inp = inputCtx(slot);
    this.bytes(inp, 0x440).fill(0);
    let add = 1;
    let last = 1;
    for (const e of eps) {
      add |= 1 << e.dci;
      last = Math.max(last, e.dci);
      this.rings.delete(`${slot}/${e.dci}`);
      this.makeRing(xferRing(slot, e.dci), XFER_TRBS);
      this.rings.set(`${slot}/${e.dci}`, { enq: 0, cycle: 1 });
      this.epContext(inp + 32 * (e.dci + 1), e.type, e.maxPacket, xferRing(slot, e.dci));
    }
    this.set32(inp + 4, add);
    this.set32(inp + 32, last << 27);
    return this.command({ type: TRB.CONFIGURE_ENDPOINT, ptr: inp, flags: slot << 24 });
  }

  /** A control transfer on EP0: setup, optional data stage at DATA, status; its events. */
  control(slot: number, setup: number[], data?: Uint8Array | number): { events: Event[]; data: Uint8Array } {
    const [rt, req, value, index, length] = setup as [number, number, number, number, number];
    const isIn = (rt & 0x80) !== 0;
    const trbs: TrbSpec[] = [{
      type: TRB.SETUP, lo: rt | (req << 8) | (value << 16), hi: index | (length << 16), len: 8,
      flags: IDT | ((data === undefined ? 0 : isIn ? 3 : 2) << 16),
    }];
    let n = 0;
    if (data !== undefined) {
      n = typeof data === "number" ? data : data.length;
      if (typeof data !== "number") this.bytes(DATA, n).set(data);
      else this.bytes(DATA, n).fill(0xee);
      trbs.push({ type: TRB.DATA, ptr: DATA, len: n, flags: (isIn ? DIR_IN | ISP : 0) });
    }
    trbs.push({ type: TRB.STATUS, flags: IOC | (isIn && data !== undefined ? 0 : DIR_IN) });
    this.queue(slot, 1, trbs);
    this.ring(slot, 1);
    return { events: this.events(), data: this.bytes(DATA, n).slice() };
  }

  /** Output context fields: slot state and address, an endpoint's state and dequeue pointer. */
  slotState(slot: number): { state: number; address: number } {
    const w3 = this.u32(outputCtx(slot) + 12);
    return { state: w3 >>> 27, address: w3 & 0xff };
  }

  epState(slot: number, dci: number): { state: number; deq: number; dcs: number } {
    const at = outputCtx(slot) + 32 * dci;
    const lo = this.u32(at + 8);
    return { state: this.u32(at) & 7, deq: ((lo & ~0xf) >>> 0) + this.u32(at + 12) * 0x100000000, dcs: lo & 1 };
  }
}
