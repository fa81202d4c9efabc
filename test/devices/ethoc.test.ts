// The OpenCores Ethernet MAC driven the way Linux's ethoc driver drives it: ring set-up in the
// descriptor window, ethoc_reset, start_xmit, the NAPI receive loop, MDIO through MIICOMMAND,
// plus address filtering, loopback, flow control, bad descriptors and snapshots.
import { describe, expect, it } from "vitest";
import type { GuestMemory } from "../../host/devices/backends";
import { bytesState } from "../../host/devices/state";
import { LoopBackend } from "../virtio/helpers";
import {
  CTRLMODER, CTRLMODER_PASSALL, CTRLMODER_RXFLOW, CTRLMODER_TXFLOW, ETH_HASH0, ETH_HASH1, ETH_TXCTRL, ETHOC_BD_BASE,
  ETHOC_WINDOW_SIZE, Ethoc, INT_BUSY, INT_MASK, INT_RXB, INT_RXC, INT_RXE, INT_SOURCE, INT_TXB, INT_TXC, INT_TXE,
  IPGT, MAC_ADDR0, MAC_ADDR1, MIIADDRESS, MIICOMMAND, MIICOMMAND_READ, MIICOMMAND_WRITE, MIIMODER, MIIRX_DATA,
  MIISTATUS, MIISTATUS_LINKFAIL, MIITX_DATA, MODER, MODER_BRO, MODER_CRC, MODER_FULLD, MODER_HUGEN, MODER_LOOP,
  MODER_PAD, MODER_PRO, MODER_RST, MODER_RXEN, MODER_TXEN, PACKETLEN, PHY_ID1, PHY_ID2, RX_BD_CF, RX_BD_EMPTY,
  RX_BD_IRQ, RX_BD_OR, RX_BD_TL, RX_BD_WRAP, TX_BD_CRC, TX_BD_CS, TX_BD_IRQ, TX_BD_NUM, TX_BD_PAD, TX_BD_READY,
  TX_BD_UR, TX_BD_WRAP, TXCTRL_PAUSERQ, ethocHashBit,
} from "../../host/devices/ethoc";

const RAM_BASE = 0x8000_0000;
const RAM_SIZE = 1 << 20;
const BUFSIZ = 1536; // ETHOC_BUFSIZ
const BUF_BASE = RAM_BASE + 0x10000;
const NUM_TX = 8;
const NUM_RX = 13; // what the driver gets from its 32 KiB buffer: 21 descriptors
const INT_ALL = 0x7f;
const MAC = Uint8Array.of(0x52, 0x54, 0x00, 0x12, 0x34, 0x56);


/** A frame to `dst` from a peer, with a recognisable payload. */
function frameTo(dst: Uint8Array, len: number, seed: number): Uint8Array {
  const f = new Uint8Array(len);
  f.set(dst, 0);
  f.set([0x52, 0x55, 0x0a, 0x00, 0x02, 0x02], 6);
  f[12] = 0x08;
  f[13] = 0x00;
  for (let i = 14; i < len; i++) f[i] = (i * 31 + seed) & 0xff;
  return f;
}

/** FCS as IEEE 802.3 defines it, bit by bit (independent of the device's table). */
function fcs(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return ~c >>> 0;
}

/** Linux's original ether_crc() (MSB-first shift register), for the multicast hash. */
function etherCrc(bytes: Uint8Array): number {
  let crc = -1;
  for (let byte of bytes) {
    for (let bit = 0; bit < 8; bit++, byte >>= 1) {
      crc = (crc << 1) ^ ((crc < 0 ? 1 : 0) ^ (byte & 1) ? 0x04c11db7 : 0);
    }
  }
  return crc >>> 0;
}

function make(opts: ConstructorParameters<typeof Ethoc>[4] = {}) {
  const ram = new Uint8Array(RAM_SIZE);
  const view = (gpa: number, len: number) =>
    gpa >= RAM_BASE && len >= 0 && gpa - RAM_BASE + len <= RAM_SIZE ? ram.subarray(gpa - RAM_BASE, gpa - RAM_BASE + len) : null;
  // read() hands out a copy, so a device writing through a read-only view fails its test.
  const mem: GuestMemory = { view, read: (gpa, len) => view(gpa, len)?.slice() ?? null };
  const be = new LoopBackend();
  const levels: boolean[] = [];
  const dev = new Ethoc("ethoc0", be, mem, (l) => levels.push(l), opts);
  const r = (off: number) => dev.read(off, 4);
  const w = (off: number, v: number) => dev.write(off, 4, v >>> 0);
  const bd = (i: number) => ({ stat: r(ETHOC_BD_BASE + 8 * i), addr: r(ETHOC_BD_BASE + 8 * i + 4) });
  /** Status then address, as ethoc_write_bd does (the device acts on the status word). */
  const writeBd = (i: number, stat: number, addr: number) => {
    w(ETHOC_BD_BASE + 8 * i, stat);
    w(ETHOC_BD_BASE + 8 * i + 4, addr);
  };
  /** Address first, then the status that hands the descriptor over: for a new address. */
  const armBd = (i: number, stat: number, addr: number) => {
    w(ETHOC_BD_BASE + 8 * i + 4, addr);
    w(ETHOC_BD_BASE + 8 * i, stat);
  };
  const irq = () => (levels.length ? levels[levels.length - 1]! : false);
  const buf = (i: number) => BUF_BASE + i * BUFSIZ;
  const at = (gpa: number, len: number) => ram.subarray(gpa - RAM_BASE, gpa - RAM_BASE + len);
  let curTx = 0;
  let dtyTx = 0;
  let curRx = 0;
  const drv = {
    /** ethoc_init_ring + ethoc_reset (ethoc_open). */
    open(numTx = NUM_TX, numRx = NUM_RX) {
      curTx = dtyTx = curRx = 0;
      w(TX_BD_NUM, numTx);
      for (let i = 0; i < numTx; i++) writeBd(i, TX_BD_IRQ | TX_BD_CRC | (i === numTx - 1 ? TX_BD_WRAP : 0), buf(i));
      for (let i = 0; i < numRx; i++) writeBd(numTx + i, RX_BD_EMPTY | RX_BD_IRQ | (i === numRx - 1 ? RX_BD_WRAP : 0), buf(numTx + i));
      w(MODER, r(MODER) & ~(MODER_RXEN | MODER_TXEN));
      w(MODER, r(MODER) | MODER_CRC | MODER_PAD);
      w(MODER, r(MODER) | MODER_FULLD);
      w(IPGT, 0x15);
      w(INT_SOURCE, INT_ALL);
      w(INT_MASK, r(INT_MASK) | INT_ALL);
      w(MODER, r(MODER) | MODER_RXEN | MODER_TXEN);
    },
    /** ethoc_start_xmit. */
    xmit(frame: Uint8Array, numTx = NUM_TX) {
      const entry = curTx % numTx;
      curTx++;
      let { stat } = bd(entry);
      const { addr } = bd(entry);
      stat = frame.length < 64 ? stat | TX_BD_PAD : stat & ~TX_BD_PAD;
      at(addr, frame.length).set(frame);
      stat = (stat & ~(0x1ff | 0xffff0000)) | (frame.length << 16);
      writeBd(entry, stat, addr);
      writeBd(entry, stat | TX_BD_READY, addr);
    },
    /** ethoc_tx's reclaim loop: how many descriptors the device has finished. */
    reclaim(numTx = NUM_TX): number[] {
      const stats: number[] = [];
      while (dtyTx !== curTx) {
        const { stat } = bd(dtyTx & (numTx - 1));
        if (stat & TX_BD_READY) break;
        stats.push(stat);
        dtyTx++;
      }
      return stats;
    },
    /** ethoc_rx: frames (without FCS) and their descriptor status, giving the descriptors back. */
    rx(numTx = NUM_TX, numRx = NUM_RX): { frame: Uint8Array; stat: number; wire: Uint8Array }[] {
      const out = [];
      for (;;) {
        const entry = numTx + curRx;
        const { stat, addr } = bd(entry);
        if (stat & RX_BD_EMPTY) break;
        const len = stat >>> 16;
        out.push({ frame: at(addr, Math.max(0, len - 4)).slice(), stat, wire: at(addr, len).slice() });
        writeBd(entry, (stat & ~0xff) | RX_BD_EMPTY, addr);
        curRx = (curRx + 1) % numRx;
      }
      return out;
    },
    ack() {
      const pending = r(INT_SOURCE) & r(INT_MASK);
      w(INT_SOURCE, pending);
      return pending;
    },
    mdioRead(phy: number, reg: number): number {
      w(MIIADDRESS, phy | (reg << 8));
      w(MIICOMMAND, MIICOMMAND_READ);
      expect(r(MIISTATUS) & 2).toBe(0); // never busy
      const v = r(MIIRX_DATA);
      w(MIICOMMAND, 0);
      return v;
    },
    mdioWrite(phy: number, reg: number, v: number) {
      w(MIIADDRESS, phy | (reg << 8));
      w(MIITX_DATA, v);
      w(MIICOMMAND, MIICOMMAND_WRITE);
      w(MIICOMMAND, 0);
    },
  };
  return { dev, be, ram, r, w, bd, writeBd, armBd, irq, buf, at, drv, levels };
}

describe("ethoc: registers and PHY", () => {
  it("has the reset values of the OpenCores core and our MAC in MAC_ADDR0/1", () => {
    const { r } = make();
    expect(r(MODER)).toBe(0xa000);
    expect(r(TX_BD_NUM)).toBe(0x40);
    expect(r(PACKETLEN)).toBe(0x00400600);
    expect(r(MIIMODER)).toBe(0x64);
    expect(r(INT_MASK)).toBe(0);
    // As ethoc_get_mac_address reads it.
    expect(r(MAC_ADDR0)).toBe(0x00123456);
    expect(r(MAC_ADDR1)).toBe(0x5254);
    expect([r(MAC_ADDR1) >> 8, r(MAC_ADDR1) & 0xff, r(MAC_ADDR0) >>> 24, (r(MAC_ADDR0) >> 16) & 0xff, (r(MAC_ADDR0) >> 8) & 0xff, r(MAC_ADDR0) & 0xff]).toEqual([...MAC]);
  });

  it("answers MDIO at one address with a PHY whose link and autonegotiation are up", () => {
    const { drv, r } = make();
    const found: number[] = [];
    for (let a = 0; a < 32; a++) {
      const id = (drv.mdioRead(a, 2) << 16) | drv.mdioRead(a, 3);
      if ((id & 0x1fffffff) !== 0x1fffffff) found.push(a); // get_phy_c22_id's test
    }
    expect(found).toEqual([1]);
    expect(drv.mdioRead(1, 2)).toBe(PHY_ID1);
    expect(drv.mdioRead(1, 3)).toBe(PHY_ID2);
    const bmsr = drv.mdioRead(1, 1);
    expect(bmsr & 0x0004).toBe(0x0004); // link
    expect(bmsr & 0x0020).toBe(0x0020); // aneg complete
    expect(bmsr & 0x6000).toBe(0x6000); // 100BASE-TX full and half duplex
    expect(drv.mdioRead(1, 5) & 0x0100).toBe(0x0100); // partner does 100 full duplex
    expect(r(MIISTATUS) & MIISTATUS_LINKFAIL).toBe(0);
    drv.mdioWrite(1, 4, 0x0061); // advertise 10 Mb/s only
    expect(drv.mdioRead(1, 4)).toBe(0x0061);
    drv.mdioWrite(1, 0, 0x8000); // reset: self-clearing, back to the defaults
    expect(drv.mdioRead(1, 0)).toBe(0x3100);
    expect(drv.mdioRead(1, 4)).toBe(0x01e1);
    drv.mdioWrite(1, 0, 0x1000 | 0x0200); // restart aneg: done at once, bit clears
    expect(drv.mdioRead(1, 0)).toBe(0x1000);
    drv.mdioWrite(1, 0, 0x0000); // forced mode: no aneg results
    expect(drv.mdioRead(1, 1) & 0x0020).toBe(0);
    expect(drv.mdioRead(1, 5)).toBe(0);
  });

  it("ignores TX_BD_NUM values above 128; MODER.RST puts every register back", () => {
    const { r, w } = make();
    w(TX_BD_NUM, 0x81);
    expect(r(TX_BD_NUM)).toBe(0x40);
    w(TX_BD_NUM, 0x80);
    expect(r(TX_BD_NUM)).toBe(0x80);
    w(INT_MASK, 0xff);
    expect(r(INT_MASK)).toBe(0x7f);
    w(MAC_ADDR1, 0xffffffff);
    expect(r(MAC_ADDR1)).toBe(0xffff);
    w(MODER, MODER_RST);
    expect([r(MODER), r(TX_BD_NUM), r(INT_MASK), r(MAC_ADDR1)]).toEqual([0xa000, 0x40, 0, 0x5254]);
  });

  it("reads and writes registers and descriptors with byte and halfword accesses; INT_SOURCE clears per lane", () => {
    const { dev, r, w } = make();
    w(PACKETLEN, 0x11223344);
    expect(dev.read(PACKETLEN + 1, 1)).toBe(0x33);
    expect(dev.read(PACKETLEN + 2, 2)).toBe(0x1122);
    dev.write(PACKETLEN + 3, 1, 0xaa);
    expect(r(PACKETLEN)).toBe(0xaa223344);
    dev.write(ETHOC_BD_BASE + 6, 2, 0xbeef);
    expect(r(ETHOC_BD_BASE + 4)).toBe(0xbeef0000);
    expect(r(ETHOC_WINDOW_SIZE)).toBe(0); // past the descriptors
    // No receive descriptors are EMPTY and the queue holds none: BUSY comes from a full queue.
    const small = make({ rxQueueFrames: 0 });
    small.w(MODER, small.r(MODER) | MODER_RXEN | MODER_PRO);
    small.be.deliver(frameTo(MAC, 60, 0));
    expect(small.r(INT_SOURCE)).toBe(INT_BUSY);
    small.dev.write(INT_SOURCE + 1, 1, 0xff); // another lane: nothing cleared
    expect(small.r(INT_SOURCE)).toBe(INT_BUSY);
    small.dev.write(INT_SOURCE, 1, INT_BUSY);
    expect(small.r(INT_SOURCE)).toBe(0);
  });
});

describe("ethoc: transmit", () => {
  it("sends a READY descriptor's buffer, clears READY and raises TXB (masked until INT_MASK allows)", () => {
    const t = make();
    t.drv.open();
    const f = frameTo(Uint8Array.of(0x52, 0x55, 0x0a, 0, 2, 2), 100, 1);
    t.w(INT_MASK, 0);
    t.drv.xmit(f);
    expect(t.be.sent).toEqual([f]);
    const { stat } = t.bd(0);
    expect(stat & TX_BD_READY).toBe(0);
    expect(stat & 0x1ff).toBe(0); // no error bits
    expect(stat >>> 16).toBe(100);
    expect(t.r(INT_SOURCE)).toBe(INT_TXB); // recorded even while masked ...
    expect(t.irq()).toBe(false);
    t.w(INT_MASK, INT_ALL); // ... and seen once unmasked
    expect(t.irq()).toBe(true);
    expect(t.drv.ack()).toBe(INT_TXB);
    expect(t.irq()).toBe(false);
    expect(t.dev.stats.txFrames).toBe(1);
  });

  it("pads short frames to 60 bytes; the driver's 64-byte minimum goes out as is", () => {
    const t = make();
    t.drv.open();
    const dst = Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
    // Bypass the driver's own padding: a 42-byte ARP-sized frame with TX_BD_PAD.
    const f = frameTo(dst, 42, 2);
    t.at(t.buf(0), 42).set(f);
    t.writeBd(0, TX_BD_IRQ | TX_BD_CRC | TX_BD_PAD | TX_BD_READY | (42 << 16), t.buf(0));
    expect(t.be.sent[0]!.length).toBe(60);
    expect(t.be.sent[0]!.subarray(0, 42)).toEqual(f);
    expect(t.be.sent[0]!.subarray(42).every((b) => b === 0)).toBe(true);
  });

  it("walks the ring in order and wraps after the WRAP descriptor (40 frames through 8 descriptors)", () => {
    const t = make();
    t.drv.open();
    const frames = Array.from({ length: 40 }, (_, i) => frameTo(Uint8Array.of(2, 0, 0, 0, 0, i), 64 + i * 30, i));
    let reclaimed = 0;
    for (const f of frames) {
      t.drv.xmit(f);
      if (t.irq()) {
        t.drv.ack();
        reclaimed += t.drv.reclaim().length;
      }
    }
    expect(reclaimed).toBe(40);
    expect(t.be.sent).toEqual(frames);
    // Each descriptor was used five times and still has its WRAP/IRQ bits.
    expect(t.bd(NUM_TX - 1).stat & TX_BD_WRAP).toBe(TX_BD_WRAP);
    expect(t.bd(0).stat >>> 16).toBe(64 + 32 * 30);
  });

  it("sends nothing before TXEN, then everything READY when TXEN rises (from descriptor 0)", () => {
    const t = make();
    t.drv.open();
    t.w(MODER, t.r(MODER) & ~MODER_TXEN);
    t.drv.xmit(frameTo(MAC, 64, 1));
    t.drv.xmit(frameTo(MAC, 64, 2));
    expect(t.be.sent).toEqual([]);
    t.w(MODER, t.r(MODER) | MODER_TXEN);
    expect(t.be.sent.map((f) => f[20])).toEqual([frameTo(MAC, 64, 1)[20], frameTo(MAC, 64, 2)[20]]);
  });

  it("bad descriptors complete with an error and a TXE interrupt: buffer outside RAM, length 0", () => {
    const t = make();
    t.drv.open();
    t.armBd(0, TX_BD_IRQ | TX_BD_CRC | TX_BD_READY | (100 << 16), 0x1000); // not RAM
    expect(t.bd(0).stat & (TX_BD_READY | TX_BD_UR)).toBe(TX_BD_UR);
    expect(t.r(INT_SOURCE)).toBe(INT_TXE);
    t.armBd(1, TX_BD_IRQ | TX_BD_CRC | TX_BD_READY | (100 << 16), RAM_BASE + RAM_SIZE - 50); // runs off the end
    expect(t.bd(1).stat & TX_BD_UR).toBe(TX_BD_UR);
    t.armBd(2, TX_BD_IRQ | TX_BD_CRC | TX_BD_READY, t.buf(2)); // length 0
    expect(t.bd(2).stat & TX_BD_UR).toBe(TX_BD_UR);
    t.armBd(3, TX_BD_IRQ | TX_BD_CRC | TX_BD_READY | (0xffff << 16), 0xffffffff); // everything at its maximum
    expect(t.bd(3).stat & TX_BD_UR).toBe(TX_BD_UR);
    expect(t.be.sent).toEqual([]);
    expect(t.dev.stats.txErrors).toBe(4);
    // The ring goes on from descriptor 4, and wraps to 0 after 7.
    t.at(t.buf(0), 64).set(frameTo(MAC, 64, 0));
    for (const i of [4, 5, 6, 7, 0]) t.armBd(i, TX_BD_IRQ | TX_BD_CRC | (i === NUM_TX - 1 ? TX_BD_WRAP : 0) | TX_BD_READY | (64 << 16), t.buf(0));
    expect(t.be.sent.length).toBe(5);
    expect(t.bd(0).stat & (TX_BD_READY | TX_BD_UR)).toBe(0);
  });

  it("without CRC generation the buffer's own FCS is not passed on", () => {
    const t = make();
    t.drv.open();
    t.w(MODER, t.r(MODER) & ~MODER_CRC);
    const f = frameTo(MAC, 68, 3);
    t.at(t.buf(0), 68).set(f);
    t.writeBd(0, TX_BD_IRQ | TX_BD_READY | (68 << 16), t.buf(0));
    expect(t.be.sent).toEqual([f.subarray(0, 64)]);
  });

  it("a powered-down PHY has no carrier: frames complete with CS and go nowhere; received ones are dropped", () => {
    const t = make();
    t.drv.open();
    t.drv.mdioWrite(1, 0, 0x0800);
    expect(t.r(MIISTATUS) & MIISTATUS_LINKFAIL).toBe(MIISTATUS_LINKFAIL);
    expect(t.drv.mdioRead(1, 1) & 0x0004).toBe(0);
    t.drv.xmit(frameTo(MAC, 64, 0));
    expect(t.bd(0).stat & TX_BD_CS).toBe(TX_BD_CS);
    expect(t.r(INT_SOURCE) & INT_TXE).toBe(INT_TXE);
    t.be.deliver(frameTo(MAC, 64, 0));
    expect(t.drv.rx()).toEqual([]);
    expect(t.be.sent).toEqual([]);
  });
});

describe("ethoc: receive", () => {
  it("writes frames with padding and FCS into EMPTY descriptors and raises RXB", () => {
    const t = make();
    t.drv.open();
    const big = frameTo(MAC, 1514, 7);
    const small = frameTo(MAC, 42, 8);
    t.be.deliver(big);
    t.be.deliver(small);
    expect(t.irq()).toBe(true);
    expect(t.drv.ack()).toBe(INT_RXB);
    const got = t.drv.rx();
    expect(got.length).toBe(2);
    expect(got[0]!.stat >>> 16).toBe(1518);
    expect(got[0]!.frame).toEqual(big);
    expect(got[1]!.stat >>> 16).toBe(64);
    expect(got[1]!.frame.subarray(0, 42)).toEqual(small);
    expect(got[1]!.frame.subarray(42).every((b) => b === 0)).toBe(true);
    for (const g of got) {
      const body = g.wire.subarray(0, g.wire.length - 4);
      const f = new DataView(g.wire.buffer).getUint32(g.wire.length - 4, true);
      expect(f).toBe(fcs(body));
      expect(g.stat & (RX_BD_EMPTY | 0xff)).toBe(0);
      expect(g.stat & RX_BD_IRQ).toBe(RX_BD_IRQ);
    }
    expect(t.dev.stats.rxFrames).toBe(2);
  });

  it("queues frames while no descriptor is EMPTY and wraps the ring (50 frames through 13)", () => {
    const t = make();
    t.drv.open();
    const frames = Array.from({ length: 50 }, (_, i) => frameTo(MAC, 60 + i * 20, i));
    for (const f of frames) t.be.deliver(f);
    expect(t.dev.pendingRx()).toBe(50 - NUM_RX);
    const got: Uint8Array[] = [];
    while (got.length < 50) {
      const batch = t.drv.rx();
      expect(batch.length).toBeGreaterThan(0);
      got.push(...batch.map((b) => b.frame));
    }
    expect(got).toEqual(frames);
    expect(t.dev.pendingRx()).toBe(0);
    expect(t.bd(NUM_TX + NUM_RX - 1).stat & RX_BD_WRAP).toBe(RX_BD_WRAP);
  });

  it("drops frames past the queue with a BUSY interrupt", () => {
    const t = make({ rxQueueFrames: 2 });
    t.drv.open();
    for (let i = 0; i < NUM_RX + 3; i++) t.be.deliver(frameTo(MAC, 64, i));
    expect(t.dev.pendingRx()).toBe(2);
    expect(t.r(INT_SOURCE) & INT_BUSY).toBe(INT_BUSY);
    expect(t.dev.stats.rxDropped).toBe(1);
  });

  it("filters by address: ours, broadcast (unless BRO), multicast by hash, anything when promiscuous", () => {
    const t = make();
    t.drv.open();
    const other = Uint8Array.of(0x52, 0x54, 0x00, 0x12, 0x34, 0x99);
    const bcast = new Uint8Array(6).fill(0xff);
    const mcast = Uint8Array.of(0x01, 0x00, 0x5e, 0x00, 0x00, 0x01);
    t.be.deliver(frameTo(other, 64, 1));
    t.be.deliver(frameTo(bcast, 64, 2));
    t.be.deliver(frameTo(mcast, 64, 3));
    expect(t.drv.rx().map((g) => g.frame[5])).toEqual([0xff]);
    // ethoc_set_multicast_list's hash: bit (ether_crc >> 26) of HASH0/HASH1.
    const bit = (etherCrc(mcast) >>> 26) & 0x3f;
    expect(ethocHashBit(mcast)).toBe(bit);
    t.w(bit < 32 ? ETH_HASH0 : ETH_HASH1, 1 << (bit & 31));
    t.be.deliver(frameTo(mcast, 64, 4));
    t.w(MODER, t.r(MODER) | MODER_BRO);
    t.be.deliver(frameTo(bcast, 64, 5));
    expect(t.drv.rx().map((g) => g.frame[0])).toEqual([0x01]);
    t.w(MODER, t.r(MODER) | MODER_PRO);
    t.be.deliver(frameTo(other, 64, 6));
    expect(t.drv.rx().map((g) => g.frame[5])).toEqual([0x99]);
    // A changed station address is what the filter checks.
    t.w(MODER, t.r(MODER) & ~MODER_PRO);
    t.w(MAC_ADDR0, 0x00123499);
    t.be.deliver(frameTo(other, 64, 7));
    expect(t.drv.rx().length).toBe(1);
  });

  it("truncates frames longer than MAXFL with TL unless HUGEN is set", () => {
    const t = make();
    t.drv.open();
    t.w(PACKETLEN, (64 << 16) | 1000);
    t.be.deliver(frameTo(MAC, 1200, 1));
    let g = t.drv.rx();
    expect(g[0]!.stat >>> 16).toBe(1000);
    expect(g[0]!.stat & RX_BD_TL).toBe(RX_BD_TL);
    expect(t.r(INT_SOURCE) & INT_RXE).toBe(INT_RXE);
    t.w(MODER, t.r(MODER) | MODER_HUGEN);
    t.be.deliver(frameTo(MAC, 1200, 2));
    g = t.drv.rx();
    expect(g[0]!.stat >>> 16).toBe(1204);
    expect(g[0]!.stat & RX_BD_TL).toBe(0);
  });

  it("a receive buffer outside RAM completes the descriptor with OR, length 0 and RXE", () => {
    const t = make();
    t.drv.open();
    t.armBd(NUM_TX, RX_BD_EMPTY | RX_BD_IRQ, RAM_BASE + RAM_SIZE - 100);
    t.be.deliver(frameTo(MAC, 200, 1));
    const { stat } = t.bd(NUM_TX);
    expect(stat & (RX_BD_EMPTY | RX_BD_OR)).toBe(RX_BD_OR);
    expect(stat >>> 16).toBe(0);
    expect(t.r(INT_SOURCE) & INT_RXE).toBe(INT_RXE);
    expect(t.dev.stats.rxErrors).toBe(1);
    // The next descriptor is fine and gets the next frame.
    t.be.deliver(frameTo(MAC, 200, 2));
    expect(t.bd(NUM_TX + 1).stat >>> 16).toBe(204);
  });

  it("with every descriptor transmitting (TX_BD_NUM 128) frames have nowhere to go and stay queued", () => {
    const t = make();
    t.drv.open();
    t.w(TX_BD_NUM, 128);
    t.be.deliver(frameTo(MAC, 64, 1));
    expect(t.dev.pendingRx()).toBe(1);
    t.w(TX_BD_NUM, NUM_TX); // back: the receive ring starts right after
    t.w(ETHOC_BD_BASE + 8 * NUM_TX, RX_BD_EMPTY | RX_BD_IRQ); // the driver hands a descriptor back
    expect(t.dev.pendingRx()).toBe(0);
  });

  it("drops everything while RXEN is clear, and a stopped receiver forgets its queue", () => {
    const t = make();
    t.be.deliver(frameTo(MAC, 64, 1)); // before ethoc_open
    expect(t.dev.stats.rxDropped).toBe(1);
    t.drv.open();
    for (let i = 0; i < NUM_RX + 5; i++) t.be.deliver(frameTo(MAC, 64, i));
    expect(t.dev.pendingRx()).toBe(5);
    t.w(MODER, t.r(MODER) & ~MODER_RXEN);
    expect(t.dev.pendingRx()).toBe(0);
  });
});

describe("ethoc: loopback, flow control, robustness, snapshots", () => {
  it("in loopback mode transmitted frames come back through the receiver, not the backend", () => {
    const t = make();
    t.drv.open();
    t.w(MODER, t.r(MODER) | MODER_LOOP);
    const f = frameTo(MAC, 300, 9);
    t.drv.xmit(f);
    expect(t.be.sent).toEqual([]);
    expect(t.drv.ack()).toBe(INT_TXB | INT_RXB);
    expect(t.drv.rx().map((g) => g.frame)).toEqual([f]);
  });

  it("sends a PAUSE frame on TXPAUSERQ with TXFLOW; takes received PAUSE frames with RXFLOW, passes them with PASSALL", () => {
    const t = make();
    t.drv.open();
    t.w(ETH_TXCTRL, TXCTRL_PAUSERQ | 0x1234); // TXFLOW off: nothing
    expect(t.be.sent).toEqual([]);
    t.w(CTRLMODER, CTRLMODER_TXFLOW | CTRLMODER_RXFLOW);
    t.w(ETH_TXCTRL, TXCTRL_PAUSERQ | 0x1234);
    expect(t.r(ETH_TXCTRL)).toBe(0x1234); // the request bit clears itself
    const p = t.be.sent[0]!;
    expect([...p.subarray(0, 6)]).toEqual([0x01, 0x80, 0xc2, 0x00, 0x00, 0x01]);
    expect([...p.subarray(6, 12)]).toEqual([...MAC]);
    expect([...p.subarray(12, 18)]).toEqual([0x88, 0x08, 0x00, 0x01, 0x12, 0x34]);
    expect(t.r(INT_SOURCE) & INT_TXC).toBe(INT_TXC);
    t.be.deliver(p);
    expect(t.r(INT_SOURCE) & INT_RXC).toBe(INT_RXC);
    expect(t.drv.rx()).toEqual([]); // consumed by the MAC
    t.w(CTRLMODER, CTRLMODER_PASSALL);
    t.be.deliver(p);
    const g = t.drv.rx();
    expect(g.length).toBe(1);
    expect(g[0]!.stat & RX_BD_CF).toBe(RX_BD_CF);
  });

  it("survives any register and descriptor traffic (random accesses over the window)", () => {
    const t = make();
    t.drv.open();
    let seed = 777;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8);
    for (let i = 0; i < 200_000; i++) {
      const off = rnd() % 0x1000;
      const size = ([1, 2, 4] as const)[rnd() % 3]!;
      const v = rnd() & 1 ? rnd() * 257 : ((rnd() & 0xffff) << 16) | TX_BD_READY | RX_BD_EMPTY | (rnd() & 0x7fff);
      if (rnd() & 1) t.dev.write(off, size, v >>> 0);
      else t.dev.read(off, size);
      if (i % 1000 === 0) t.be.deliver(frameTo(MAC, 64 + (i % 1400), i));
    }
    // Back to a known state, and it still works.
    t.w(MODER, MODER_RST);
    t.drv.open();
    t.be.sent = [];
    const f = frameTo(MAC, 128, 1);
    t.drv.xmit(f);
    expect(t.be.sent).toEqual([f]);
  });

  it("restores registers, descriptors, ring positions and queued frames into a fresh device", () => {
    const t = make();
    t.drv.open();
    t.drv.xmit(frameTo(MAC, 64, 0));
    t.drv.xmit(frameTo(MAC, 64, 1));
    const frames = Array.from({ length: NUM_RX + 4 }, (_, i) => frameTo(MAC, 80 + i, i));
    for (const f of frames) t.be.deliver(f);
    const state = structuredClone(t.dev.save());
    const u = make();
    u.ram.set(t.ram);
    u.dev.restore(state);
    expect(u.irq()).toBe(true); // TXB and RXB still pending
    expect(u.dev.pendingRx()).toBe(4);
    // Continue as the driver would (its ring positions carry over with the guest's memory).
    const got = [];
    for (let i = 0; i < NUM_RX; i++) {
      const { stat, addr } = u.bd(NUM_TX + i);
      got.push(u.at(addr, (stat >>> 16) - 4).slice());
      u.writeBd(NUM_TX + i, (stat & ~0xff) | RX_BD_EMPTY, addr);
    }
    for (let i = 0; i < 4; i++) got.push(u.at(u.bd(NUM_TX + i).addr, (u.bd(NUM_TX + i).stat >>> 16) - 4).slice());
    expect(got).toEqual(frames);
    // Transmission continues at descriptor 2.
    u.writeBd(2, TX_BD_IRQ | TX_BD_CRC | TX_BD_READY | (64 << 16), u.buf(2));
    expect(u.be.sent.length).toBe(1);
  });

  it("rejects malformed states with a clear error", () => {
    const t = make();
    const good = t.dev.save();
    const bad = (patch: Record<string, unknown>) => () => make().dev.restore({ ...good, ...patch });
    expect(bad({ kind: "ata" })).toThrow(/ethoc0: not a state of kind ethoc/);
    expect(bad({ regs: [1, 2, 3] })).toThrow(/state.regs must be an array of 21..21 items/);
    expect(bad({ bds: new Uint32Array(256) })).toThrow(/state.bds must be an array, got a Uint32Array/);
    expect(bad({ txIndex: 64 })).toThrow(/txIndex must be/);
    expect(bad({ rxIndex: 3 })).toThrow(/rxIndex must be/);
    expect(bad({ rx: [bytesState(new Uint8Array(5))] })).toThrow(/state.rx\[0\] must be 14..\d+ bytes/);
    expect(bad({ stats: { ...good.stats as object, rxFrames: -1 } })).toThrow(/state.stats.rxFrames must be/);
    const regs = [...good.regs as number[]];
    regs[TX_BD_NUM / 4] = 300;
    expect(bad({ regs })).toThrow(/TX_BD_NUM 300/);
  });
});
