/**
 * The OpenCores 10/100 Ethernet MAC ("opencores,ethoc"), as Linux's ethoc driver programs it,
 * with a clause-22 PHY on its MDIO bus.
 *
 * The window holds the registers (0x00-0x53) and, at ETHOC_BD_BASE, 128 buffer descriptors of
 * two words (status, buffer address). Descriptors 0..TX_BD_NUM-1 transmit, the rest receive;
 * each ring wraps at a descriptor with the WRAP bit or at its end. Buffers are DMA'd to and
 * from guest RAM: the devicetree gives no packet-memory region, so the driver allocates its
 * buffers in RAM and the descriptors hold guest-physical addresses.
 *
 * The wire is instantaneous: a descriptor marked READY is sent during the register write that
 * marks it, and a received frame lands in the next EMPTY receive descriptor as soon as there is
 * one. Frames that find no EMPTY descriptor wait in a bounded queue (the model's receive FIFO);
 * when that is full they are dropped with a BUSY interrupt. Received frames are padded to the
 * 60-byte minimum and carry their FCS (4 bytes, counted in the length), as off a real wire;
 * frames handed to the backend carry none.
 *
 * Every descriptor is untrusted: a buffer outside guest RAM or an empty frame completes the
 * descriptor with an error bit and an error interrupt (TXE/RXE); nothing reaches the host.
 * The inter-packet gap, collision and MII clock registers keep their values but mean nothing on
 * this wire.
 */
import { parseMac } from "../net/packet";
import type { GuestMemory, NetBackend } from "./backends";
import type { DeviceState, DeviceType, IrqLine, MmioDevice } from "./device";
import { setInterrupts, setReg } from "./devicetree";
import { StateReader, bytesState, wordsState } from "./state";

// Registers (byte offsets).
export const MODER = 0x00;
export const INT_SOURCE = 0x04;
export const INT_MASK = 0x08;
export const IPGT = 0x0c;
export const IPGR1 = 0x10;
export const IPGR2 = 0x14;
export const PACKETLEN = 0x18;
export const COLLCONF = 0x1c;
export const TX_BD_NUM = 0x20;
export const CTRLMODER = 0x24;
export const MIIMODER = 0x28;
export const MIICOMMAND = 0x2c;
export const MIIADDRESS = 0x30;
export const MIITX_DATA = 0x34;
export const MIIRX_DATA = 0x38;
export const MIISTATUS = 0x3c;
export const MAC_ADDR0 = 0x40;
export const MAC_ADDR1 = 0x44;
export const ETH_HASH0 = 0x48;
export const ETH_HASH1 = 0x4c;
export const ETH_TXCTRL = 0x50;
const REG_COUNT = 0x54 / 4;

/** Descriptors start here in the window; 128 of them, 8 bytes each. */
export const ETHOC_BD_BASE = 0x400;
export const ETHOC_BD_COUNT = 128;
export const ETHOC_WINDOW_SIZE = ETHOC_BD_BASE + ETHOC_BD_COUNT * 8;
const VERSION = 1;

/**
 * The MAC as the board places it. Its packet buffers are in RAM (no second reg: the driver
 * allocates them); the node carries the MAC address.
 */
export const ETHOC: DeviceType<{ mac: Uint8Array }> = {
  kind: "ethoc",
  dtName: "ethernet",
  size: ETHOC_WINDOW_SIZE,
  irqs: 1,
  describe(node, at, { mac }) {
    if (mac.length !== 6) throw new Error(`ethoc: a MAC address is 6 bytes, not ${mac.length}`);
    setInterrupts(setReg(node, at, this.size).setString("compatible", "opencores,ethoc").setBytes("local-mac-address", mac), at);
  },
};

// MODER bits.
export const MODER_RXEN = 1 << 0;
export const MODER_TXEN = 1 << 1;
export const MODER_BRO = 1 << 3; // reject broadcast
export const MODER_IAM = 1 << 4; // individual addresses through the hash too
export const MODER_PRO = 1 << 5; // promiscuous
export const MODER_LOOP = 1 << 7;
export const MODER_FULLD = 1 << 10;
export const MODER_RST = 1 << 11;
export const MODER_CRC = 1 << 13;
export const MODER_HUGEN = 1 << 14;
export const MODER_PAD = 1 << 15;
export const MODER_RSM = 1 << 16; // receive frames shorter than MINFL

// Interrupt source / mask bits.
export const INT_TXB = 1 << 0;
export const INT_TXE = 1 << 1;
export const INT_RXB = 1 << 2;
export const INT_RXE = 1 << 3;
export const INT_BUSY = 1 << 4;
export const INT_TXC = 1 << 5;
export const INT_RXC = 1 << 6;

// CTRLMODER and TXCTRL bits.
export const CTRLMODER_PASSALL = 1 << 0;
export const CTRLMODER_RXFLOW = 1 << 1;
export const CTRLMODER_TXFLOW = 1 << 2;
export const TXCTRL_PAUSERQ = 1 << 16;

// MII command and status bits.
export const MIICOMMAND_SCAN = 1 << 0;
export const MIICOMMAND_READ = 1 << 1;
export const MIICOMMAND_WRITE = 1 << 2;
export const MIISTATUS_LINKFAIL = 1 << 0;

// Transmit descriptor status.
export const TX_BD_CS = 1 << 0; // carrier sense lost
export const TX_BD_UR = 1 << 8; // underrun: the buffer could not be fetched
export const TX_BD_CRC = 1 << 11;
export const TX_BD_PAD = 1 << 12;
export const TX_BD_WRAP = 1 << 13;
export const TX_BD_IRQ = 1 << 14;
export const TX_BD_READY = 1 << 15;
/** Status bits the device reports (cleared when it takes a descriptor). */
const TX_BD_STATS = 0x01ff;

// Receive descriptor status.
export const RX_BD_SF = 1 << 2; // shorter than MINFL (with MODER.RSM)
export const RX_BD_TL = 1 << 3; // longer than MAXFL: truncated
export const RX_BD_OR = 1 << 6; // overrun: the buffer could not be written
export const RX_BD_CF = 1 << 8; // control frame (with CTRLMODER.PASSALL)
export const RX_BD_WRAP = 1 << 13;
export const RX_BD_IRQ = 1 << 14;
export const RX_BD_EMPTY = 1 << 15;
const RX_BD_ERRORS = RX_BD_SF | RX_BD_TL | RX_BD_OR;

// Reset values (OpenCores Ethernet IP core specification).
const RESET: readonly number[] = (() => {
  const r = new Array<number>(REG_COUNT).fill(0);
  r[MODER / 4] = MODER_PAD | MODER_CRC;
  r[IPGT / 4] = 0x12;
  r[IPGR1 / 4] = 0x0c;
  r[IPGR2 / 4] = 0x12;
  r[PACKETLEN / 4] = 0x0040_0600; // MINFL 64, MAXFL 1536
  r[COLLCONF / 4] = 0x000f_003f;
  r[TX_BD_NUM / 4] = 0x40;
  r[MIIMODER / 4] = 0x64;
  return r;
})();

/** Writable bits of each register (INT_SOURCE is write-one-to-clear, the MII results read-only). */
const WRITABLE: readonly number[] = (() => {
  const w = new Array<number>(REG_COUNT).fill(0);
  w[MODER / 4] = 0x1_ffff;
  w[INT_MASK / 4] = 0x7f;
  w[IPGT / 4] = w[IPGR1 / 4] = w[IPGR2 / 4] = 0x7f;
  w[PACKETLEN / 4] = 0xffff_ffff;
  w[COLLCONF / 4] = 0x000f_003f;
  w[TX_BD_NUM / 4] = 0xff;
  w[CTRLMODER / 4] = 0x7;
  w[MIIMODER / 4] = 0x1ff;
  w[MIICOMMAND / 4] = 0x7;
  w[MIIADDRESS / 4] = 0x1f1f;
  w[MIITX_DATA / 4] = 0xffff;
  w[MAC_ADDR0 / 4] = 0xffff_ffff;
  w[MAC_ADDR1 / 4] = 0xffff;
  w[ETH_HASH0 / 4] = w[ETH_HASH1 / 4] = 0xffff_ffff;
  w[ETH_TXCTRL / 4] = 0x1_ffff;
  return w;
})();

const MIN_FRAME = 60; // without FCS
const FCS = 4;
/** The descriptor's length field is 16 bits: the largest frame (with FCS) it can describe. */
const MAX_BD_LEN = 0xffff;
const PAUSE_DST = Uint8Array.of(0x01, 0x80, 0xc2, 0x00, 0x00, 0x01);
const ETHERTYPE_MAC_CONTROL = 0x8808;

// ---- the PHY ----

// Clause-22 registers and bits.
const MII_BMCR = 0;
const MII_BMSR = 1;
const MII_PHYSID1 = 2;
const MII_PHYSID2 = 3;
const MII_ADVERTISE = 4;
const MII_LPA = 5;
const MII_EXPANSION = 6;
const BMCR_RESET = 0x8000;
const BMCR_ANENABLE = 0x1000;
const BMCR_PDOWN = 0x0800;
const BMCR_ANRESTART = 0x0200;
/** Loopback, speed, aneg enable, power down, isolate, duplex, collision test: kept as written. */
const BMCR_KEPT = 0x7d80;
const BMCR_DEFAULT = 0x3100; // 100 Mb/s, autonegotiation, full duplex
/** 100BASE-TX and 10BASE-T, full and half duplex; preamble suppression; aneg; extended regs. */
const BMSR_BASE = 0x7849;
const BMSR_ANEGCOMPLETE = 0x0020;
const BMSR_LSTATUS = 0x0004;
const ADVERTISE_DEFAULT = 0x01e1;
/** The link partner: acknowledges, offers 10/100 half and full duplex (selector 802.3). */
const LPA_PARTNER = 0x45e1;
const EXPANSION_LPANEGABLE = 0x0001;
/** PHY identifier (OUI-less: it claims to be no particular chip, so Linux binds its generic driver). */
export const PHY_ID1 = 0x0057;
export const PHY_ID2 = 0x4d10;

/** The PHY: a 10/100 transceiver whose link is always up unless powered down. */
class Phy {
  bmcr = BMCR_DEFAULT;
  advertise = ADVERTISE_DEFAULT;

  reset(): void {
    this.bmcr = BMCR_DEFAULT;
    this.advertise = ADVERTISE_DEFAULT;
  }

  linkUp(): boolean {
    return (this.bmcr & BMCR_PDOWN) === 0;
  }

  read(reg: number): number {
    const up = this.linkUp();
    const negotiated = up && (this.bmcr & BMCR_ANENABLE) !== 0; // autonegotiation is instant
    switch (reg) {
      case MII_BMCR:
        return this.bmcr;
      case MII_BMSR:
        return BMSR_BASE | (up ? BMSR_LSTATUS : 0) | (negotiated ? BMSR_ANEGCOMPLETE : 0);
      case MII_PHYSID1:
        return PHY_ID1;
      case MII_PHYSID2:
        return PHY_ID2;
      case MII_ADVERTISE:
        return this.advertise;
      case MII_LPA:
        return negotiated ? LPA_PARTNER : 0;
      case MII_EXPANSION:
        return negotiated ? EXPANSION_LPANEGABLE : 0;
      default:
        return 0; // unimplemented registers read as zero
    }
  }

  write(reg: number, value: number): void {
    if (reg === MII_BMCR) {
      if (value & BMCR_RESET) this.reset(); // self-clearing, like ANRESTART
      else this.bmcr = value & BMCR_KEPT;
    } else if (reg === MII_ADVERTISE) {
      this.advertise = value & 0xffff;
    }
  }
}

// ---- CRC-32 (IEEE 802.3) ----

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** The CRC register after `bytes` from all-ones, before the final inversion. */
function crcRegister(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return c >>> 0;
}

/** The 6-bit hash of a destination address: the top bits of Linux's ether_crc(). */
export function ethocHashBit(mac: Uint8Array): number {
  const c = crcRegister(mac.subarray(0, 6));
  // ether_crc() is the bit-reversed register: its top 6 bits are the register's low 6, reversed.
  let bit = 0;
  for (let i = 0; i < 6; i++) bit |= ((c >>> i) & 1) << (5 - i);
  return bit;
}

// ---- the MAC ----

export interface EthocOptions {
  /** MAC address ("52:54:00:12:34:56" or 6 bytes), the value MAC_ADDR0/1 reset to. */
  mac?: string | Uint8Array;
  /** MDIO address of the PHY (0..31, default 1); other addresses read as 0xffff (no device). */
  phyAddress?: number;
  /** Received frames kept while no receive descriptor is EMPTY (default 256); more are dropped. */
  rxQueueFrames?: number;
}

export interface EthocStats {
  txFrames: number;
  txErrors: number;
  rxFrames: number;
  rxErrors: number;
  /** Frames the guest never sees: filtered, link down, receiver off or queue full. */
  rxDropped: number;
}

export class Ethoc implements MmioDevice {
  readonly size = ETHOC_WINDOW_SIZE;
  readonly stats: EthocStats = { txFrames: 0, txErrors: 0, rxFrames: 0, rxErrors: 0, rxDropped: 0 };
  readonly mac: Uint8Array;
  readonly phyAddress: number;

  private readonly regs = new Uint32Array(REG_COUNT);
  private readonly bds = new Uint32Array(ETHOC_BD_COUNT * 2);
  private readonly phy = new Phy();
  private readonly rxLimit: number;
  private rxQueue: Uint8Array[] = [];
  /** Next transmit descriptor the device looks at. */
  private txIndex = 0;
  /** Next receive descriptor (TX_BD_NUM..127). */
  private rxIndex = RESET[TX_BD_NUM / 4]!;
  private irqLevel = false;

  constructor(
    readonly name: string,
    readonly backend: NetBackend,
    private readonly mem: GuestMemory,
    private readonly irq: IrqLine,
    opts: EthocOptions = {},
  ) {
    const mac = opts.mac ?? "52:54:00:12:34:56";
    const parsed = typeof mac === "string" ? parseMac(mac) : mac.length === 6 ? mac.slice() : null;
    if (!parsed) throw new Error(`${name}: MAC ${String(mac)} is not 6 bytes like 52:54:00:12:34:56`);
    this.mac = parsed;
    const phy = opts.phyAddress ?? 1;
    if (!Number.isInteger(phy) || phy < 0 || phy > 31) throw new Error(`${name}: phyAddress ${phy} must be 0..31`);
    this.phyAddress = phy;
    const limit = opts.rxQueueFrames ?? 256;
    if (!Number.isInteger(limit) || limit < 0) throw new Error(`${name}: rxQueueFrames ${limit} must be a non-negative integer`);
    this.rxLimit = limit;
    this.resetRegisters();
    backend.attach((frame) => this.receive(frame));
  }

  /** Power-on: registers, PHY, descriptors and queued frames. */
  reset(): void {
    this.bds.fill(0);
    this.phy.reset();
    this.resetRegisters();
  }

  /** MODER.RST and power-on: registers back to their reset values, MAC address to ours. */
  private resetRegisters(): void {
    this.regs.set(RESET);
    this.regs[MAC_ADDR0 / 4] = ((this.mac[2]! << 24) | (this.mac[3]! << 16) | (this.mac[4]! << 8) | this.mac[5]!) >>> 0;
    this.regs[MAC_ADDR1 / 4] = (this.mac[0]! << 8) | this.mac[1]!;
    this.txIndex = 0;
    this.rxIndex = this.txBdNum();
    this.rxQueue = [];
    this.updateIrq();
  }

  /** Received frames waiting for an EMPTY descriptor. */
  pendingRx(): number {
    return this.rxQueue.length;
  }

  // ---- register access ----

  read(offset: number, size: 1 | 2 | 4): number {
    const word = offset & ~3;
    const value = this.readWord(word);
    if (size === 4) return value >>> 0;
    const shift = (offset & 3) * 8;
    return (value >>> shift) & (size === 1 ? 0xff : 0xffff);
  }

  write(offset: number, size: 1 | 2 | 4, value: number): void {
    const word = offset & ~3;
    const shift = (offset & 3) * 8;
    const lanes = size === 4 ? 0xffffffff : ((size === 1 ? 0xff : 0xffff) << shift) >>> 0;
    const v = ((value << shift) & lanes) >>> 0;
    if (word >= ETHOC_BD_BASE) {
      if (word >= ETHOC_WINDOW_SIZE) return;
      const i = (word - ETHOC_BD_BASE) >> 2;
      this.bds[i] = ((this.bds[i]! & ~lanes) | v) >>> 0;
      // A descriptor handed to the device (READY / EMPTY) is taken at once.
      this.kickTx();
      this.deliver();
      return;
    }
    if (word >= REG_COUNT * 4) return;
    if (word === INT_SOURCE) {
      this.regs[INT_SOURCE / 4] &= ~v; // write one to clear, only in the lanes written
      this.updateIrq();
      return;
    }
    const old = this.regs[word / 4]!;
    this.writeReg(word, ((old & ~lanes) | v) >>> 0, old);
  }

  private readWord(word: number): number {
    if (word >= ETHOC_BD_BASE) return word < ETHOC_WINDOW_SIZE ? this.bds[(word - ETHOC_BD_BASE) >> 2]! : 0;
    if (word >= REG_COUNT * 4) return 0;
    switch (word) {
      case MIIRX_DATA:
        // While scanning, the data register follows the PHY register continuously.
        if (this.regs[MIICOMMAND / 4]! & MIICOMMAND_SCAN) this.miiRead();
        return this.regs[MIIRX_DATA / 4]!;
      case MIISTATUS:
        // Never busy (MDIO transactions complete at once) and never invalid.
        return this.phy.linkUp() ? 0 : MIISTATUS_LINKFAIL;
      default:
        return this.regs[word / 4]!;
    }
  }

  private writeReg(word: number, merged: number, old: number): void {
    const idx = word / 4;
    const value = (merged & WRITABLE[idx]!) | (old & ~WRITABLE[idx]!);
    switch (word) {
      case MODER:
        if (value & MODER_RST) {
          this.resetRegisters();
          return;
        }
        this.regs[idx] = value;
        // Enabling a direction restarts it at the first descriptor of its ring.
        if (value & MODER_TXEN && !(old & MODER_TXEN)) this.txIndex = 0;
        if (value & MODER_RXEN && !(old & MODER_RXEN)) this.rxIndex = this.txBdNum();
        if (!(value & MODER_RXEN)) this.rxQueue = []; // a stopped receiver loses its FIFO
        this.kickTx();
        this.deliver();
        return;
      case TX_BD_NUM: {
        if ((value & 0xff) > ETHOC_BD_COUNT) return; // the hardware ignores larger values
        this.regs[idx] = value & 0xff;
        const n = this.txBdNum();
        if (this.txIndex >= n) this.txIndex = 0;
        if (this.rxIndex < n || this.rxIndex >= ETHOC_BD_COUNT) this.rxIndex = n; // keep it in the receive ring
        this.deliver();
        return;
      }
      case INT_MASK:
        this.regs[idx] = value;
        this.updateIrq();
        return;
      case MIICOMMAND:
        this.regs[idx] = value;
        // READ and WRITE act when set; the driver clears the register between transactions.
        if (value & MIICOMMAND_READ && !(old & MIICOMMAND_READ)) this.miiRead();
        if (value & MIICOMMAND_WRITE && !(old & MIICOMMAND_WRITE)) this.miiWrite();
        if (value & MIICOMMAND_SCAN) this.miiRead();
        return;
      case ETH_TXCTRL:
        // TXPAUSERQ asks for one PAUSE frame; it clears itself when sent.
        this.regs[idx] = value & ~TXCTRL_PAUSERQ;
        if (value & TXCTRL_PAUSERQ && this.regs[CTRLMODER / 4]! & CTRLMODER_TXFLOW) this.sendPause(value & 0xffff);
        return;
      default:
        this.regs[idx] = value;
    }
  }

  private txBdNum(): number {
    return this.regs[TX_BD_NUM / 4]!;
  }

  private raise(bits: number): void {
    this.regs[INT_SOURCE / 4] |= bits;
    this.updateIrq();
  }

  // Driven even when it stays high: the PLIC takes a line driven high again as a new request
  // (as QEMU's).
  private updateIrq(): void {
    const level = (this.regs[INT_SOURCE / 4]! & this.regs[INT_MASK / 4]!) !== 0;
    if (level || this.irqLevel) this.irq(level);
    this.irqLevel = level;
  }

  // ---- MDIO ----

  private miiTarget(): { phy: number; reg: number } {
    const a = this.regs[MIIADDRESS / 4]!;
    return { phy: a & 0x1f, reg: (a >>> 8) & 0x1f };
  }

  private miiRead(): void {
    const { phy, reg } = this.miiTarget();
    // Nothing drives MDIO at an empty address: the pull-up reads as all ones.
    this.regs[MIIRX_DATA / 4] = phy === this.phyAddress ? this.phy.read(reg) : 0xffff;
  }

  private miiWrite(): void {
    const { phy, reg } = this.miiTarget();
    if (phy !== this.phyAddress) return;
    const wasUp = this.phy.linkUp();
    this.phy.write(reg, this.regs[MIITX_DATA / 4]!);
    if (wasUp && !this.phy.linkUp()) this.rxQueue = []; // frames on a dead link are gone
  }

  // ---- transmit ----

  /** Send every READY descriptor from the current one on (at most one pass over the ring). */
  private kickTx(): void {
    const n = this.txBdNum();
    if (!(this.regs[MODER / 4]! & MODER_TXEN)) return;
    for (let done = 0; done < n; done++) {
      const i = this.txIndex;
      const stat = this.bds[2 * i]!;
      if (!(stat & TX_BD_READY)) return;
      const result = this.transmit(stat, this.bds[2 * i + 1]!);
      this.bds[2 * i] = ((stat & ~(TX_BD_READY | TX_BD_STATS)) | result) >>> 0;
      if (result) this.stats.txErrors++;
      if (stat & TX_BD_IRQ) this.raise(result ? INT_TXE : INT_TXB);
      this.txIndex = stat & TX_BD_WRAP || i + 1 >= n ? 0 : i + 1;
    }
  }

  /** One descriptor's frame onto the wire; returns its error status bits (0 = sent). */
  private transmit(stat: number, addr: number): number {
    const len = stat >>> 16;
    if (len === 0) return TX_BD_UR;
    const buf = this.mem.read(addr, len);
    if (!buf) return TX_BD_UR; // the buffer is not guest RAM: nothing could be fetched
    if (!this.phy.linkUp()) return TX_BD_CS;
    // Without CRC generation the buffer carries its own FCS; the backend takes frames without.
    const ownFcs = !(stat & TX_BD_CRC) && !(this.regs[MODER / 4]! & MODER_CRC);
    const body = ownFcs ? buf.subarray(0, Math.max(0, len - FCS)) : buf;
    const pad = (stat & TX_BD_PAD || this.regs[MODER / 4]! & MODER_PAD) && body.length < MIN_FRAME;
    const frame = new Uint8Array(pad ? MIN_FRAME : body.length);
    frame.set(body);
    if (frame.length === 0) return TX_BD_UR;
    this.stats.txFrames++;
    this.toWire(frame);
    return 0;
  }

  /** A frame leaves the MAC: back into our receiver in loopback, else to the backend. */
  private toWire(frame: Uint8Array): void {
    if (this.regs[MODER / 4]! & MODER_LOOP) {
      this.receive(frame);
      return;
    }
    try {
      this.backend.send(frame);
    } catch {
      // A backend failure loses the frame, as on a real wire; the descriptor still completes.
    }
  }

  private sendPause(quanta: number): void {
    const f = new Uint8Array(MIN_FRAME);
    f.set(PAUSE_DST, 0);
    f.set(this.currentMac(), 6);
    f[12] = ETHERTYPE_MAC_CONTROL >> 8;
    f[13] = ETHERTYPE_MAC_CONTROL & 0xff;
    f[15] = 0x01; // opcode PAUSE
    f[16] = quanta >> 8;
    f[17] = quanta & 0xff;
    if (!this.phy.linkUp()) return;
    this.toWire(f);
    this.raise(INT_TXC);
  }

  private currentMac(): Uint8Array {
    const a0 = this.regs[MAC_ADDR0 / 4]!;
    const a1 = this.regs[MAC_ADDR1 / 4]!;
    return Uint8Array.of(a1 >>> 8, a1 & 0xff, a0 >>> 24, (a0 >>> 16) & 0xff, (a0 >>> 8) & 0xff, a0 & 0xff);
  }

  // ---- receive ----

  /** A frame from the wire (copied). Filtered, then queued for the next EMPTY descriptor. */
  receive(frame: Uint8Array): void {
    const moder = this.regs[MODER / 4]!;
    const wire = Math.max(frame.length, MIN_FRAME) + FCS;
    const tooShort = wire < this.regs[PACKETLEN / 4]! >>> 16 && !(moder & MODER_RSM);
    if (!(moder & MODER_RXEN) || !this.phy.linkUp() || frame.length < 14 || wire > MAX_BD_LEN || tooShort) {
      this.stats.rxDropped++;
      return;
    }
    if (this.isControl(frame)) {
      const ctrl = this.regs[CTRLMODER / 4]!;
      if (ctrl & CTRLMODER_RXFLOW && frame[14] === 0x00 && frame[15] === 0x01) this.raise(INT_RXC); // PAUSE
      if (!(ctrl & CTRLMODER_PASSALL)) {
        this.stats.rxDropped++;
        return;
      }
    } else if (!this.accepts(frame)) {
      this.stats.rxDropped++;
      return;
    }
    if (this.rxQueue.length >= this.rxLimit) {
      this.stats.rxDropped++;
      this.raise(INT_BUSY);
      return;
    }
    this.rxQueue.push(frame.slice());
    this.deliver();
  }

  private isControl(frame: Uint8Array): boolean {
    return ((frame[12]! << 8) | frame[13]!) === ETHERTYPE_MAC_CONTROL;
  }

  /** Address recognition: promiscuous, broadcast, multicast hash, our address (or its hash). */
  private accepts(frame: Uint8Array): boolean {
    const moder = this.regs[MODER / 4]!;
    if (moder & MODER_PRO) return true;
    const dst = frame.subarray(0, 6);
    if (dst.every((b) => b === 0xff)) return !(moder & MODER_BRO);
    if (dst[0]! & 1 || moder & MODER_IAM) {
      const bit = ethocHashBit(dst);
      if ((this.regs[(bit < 32 ? ETH_HASH0 : ETH_HASH1) / 4]! >>> (bit & 31)) & 1) return true;
      if (dst[0]! & 1) return false;
    }
    const mine = this.currentMac();
    return dst.every((b, i) => b === mine[i]);
  }

  /** Move queued frames into EMPTY receive descriptors, in ring order. */
  private deliver(): void {
    const first = this.txBdNum();
    if (!(this.regs[MODER / 4]! & MODER_RXEN) || first >= ETHOC_BD_COUNT) return;
    while (this.rxQueue.length > 0) {
      const i = this.rxIndex;
      const stat = this.bds[2 * i]!;
      if (!(stat & RX_BD_EMPTY)) return;
      const frame = this.rxQueue.shift()!;
      const { len, flags } = this.store(frame, this.bds[2 * i + 1]!);
      this.bds[2 * i] = ((stat & (RX_BD_IRQ | RX_BD_WRAP)) | (len << 16) | flags) >>> 0;
      const error = (flags & RX_BD_ERRORS) !== 0;
      if (error) this.stats.rxErrors++;
      else this.stats.rxFrames++;
      if (stat & RX_BD_IRQ) this.raise(error ? INT_RXE : INT_RXB);
      this.rxIndex = stat & RX_BD_WRAP || i + 1 >= ETHOC_BD_COUNT ? first : i + 1;
    }
  }

  /** Write a frame, padded and with its FCS, at guest address `addr`; returns length and flags. */
  private store(frame: Uint8Array, addr: number): { len: number; flags: number } {
    const moder = this.regs[MODER / 4]!;
    const packetlen = this.regs[PACKETLEN / 4]!;
    const body = Math.max(frame.length, MIN_FRAME);
    const wire = new Uint8Array(body + FCS);
    wire.set(frame);
    const fcs = ~crcRegister(wire.subarray(0, body)) >>> 0;
    wire[body] = fcs & 0xff;
    wire[body + 1] = (fcs >>> 8) & 0xff;
    wire[body + 2] = (fcs >>> 16) & 0xff;
    wire[body + 3] = fcs >>> 24;
    let flags = this.isControl(frame) ? RX_BD_CF : 0;
    if (wire.length < packetlen >>> 16) flags |= RX_BD_SF;
    let len = wire.length;
    const max = packetlen & 0xffff;
    if (!(moder & MODER_HUGEN) && len > max) {
      len = max; // too long: the buffer gets MAXFL bytes
      flags |= RX_BD_TL;
    }
    const dst = this.mem.view(addr, len);
    if (!dst) return { len: 0, flags: flags | RX_BD_OR }; // nowhere to put it: lost
    dst.set(wire.subarray(0, len));
    return { len, flags };
  }

  // ---- snapshots ----

  save(): DeviceState {
    return {
      kind: ETHOC.kind,
      version: VERSION,
      regs: wordsState(this.regs),
      bds: wordsState(this.bds),
      txIndex: this.txIndex,
      rxIndex: this.rxIndex,
      phyBmcr: this.phy.bmcr,
      phyAdvertise: this.phy.advertise,
      rx: this.rxQueue.map(bytesState),
      stats: { ...this.stats },
    };
  }

  restore(state: unknown): void {
    const who = this.name;
    const s = StateReader.open(state, who, ETHOC.kind, VERSION);
    const regs = s.words("regs", REG_COUNT);
    const bds = s.words("bds", this.bds.length);
    const txBdNum = regs[TX_BD_NUM / 4]!;
    if (txBdNum > ETHOC_BD_COUNT) throw new Error(`${who}: state.regs TX_BD_NUM ${txBdNum} exceeds ${ETHOC_BD_COUNT}`);
    const txIndex = s.int("txIndex", 0, Math.max(0, txBdNum - 1));
    // With every descriptor transmitting, the receive index rests just past the ring.
    const rxIndex = s.int("rxIndex", txBdNum, Math.max(txBdNum, ETHOC_BD_COUNT - 1));
    const bmcr = s.bits("phyBmcr", BMCR_KEPT);
    const advertise = s.int("phyAdvertise", 0, 0xffff);
    const frames = s.list("rx", 0, this.rxLimit);
    const rx = frames.map((i) => frames.bytes(i, 14, MAX_BD_LEN - FCS));
    const stats = s.counters("stats", this.stats);
    this.regs.set(regs);
    this.bds.set(bds);
    this.txIndex = txIndex;
    this.rxIndex = rxIndex;
    this.phy.bmcr = bmcr;
    this.phy.advertise = advertise;
    this.rxQueue = rx;
    Object.assign(this.stats, stats);
    this.irqLevel = (this.regs[INT_SOURCE / 4]! & this.regs[INT_MASK / 4]!) !== 0;
    this.irq(this.irqLevel); // re-drive: the controller may have been restored separately
  }
}
