// The xHCI controller driven through its registers and rings as Linux's xhci-hcd drives it, with
// the three USB devices behind it (keyboard, mass storage over BOT/SCSI, CDC-ACM serial), and
// with hostile values: rings and buffers outside RAM, Link TRB loops, endless TDs, bad
// contexts and slot numbers, a full event ring. Snapshots and hot-plug too.
import { describe, expect, it } from "vitest";
import type { CharBackend, DiskBackend } from "../../host/devices/backends";
import {
  CC, CRCR, CRCR_CRR, DOORBELLS, EP_HALTED, EP_RUNNING, EP_STOPPED, ERSTBA, ERSTSZ, EXT_CAPS, MAX_SHARE_BYTES, MAX_SHARE_TRB_READS, MAX_TDS, MAX_TD_BYTES, MAX_TD_TRBS, PORTS, PORT_CCS, PORT_CSC,
  PORT_PED, PORT_PRC, STS_HCH, STS_HSE, TRB, USBCMD, USBSTS, XHCI_PORTS, Xhci,
} from "../../host/devices/xhci";
import { UsbKeyboard, keyFor } from "../../host/devices/usb/keyboard";
import { UsbStorage } from "../../host/devices/usb/storage";
import { UsbSerial } from "../../host/devices/usb/serial";
import { CH, DATA, Driver, ERST, EVENT_TRBS, IOC, ISP, RAM_BASE, RAM_SIZE, outputCtx, xferRing } from "./xhci-driver";

class MemDisk implements DiskBackend {
  readonly bytes: Uint8Array;
  flushes = 0;
  constructor(readonly size: number, readonly readOnly = false) {
    this.bytes = new Uint8Array(size);
  }
  read(offset: number, dst: Uint8Array): void {
    dst.set(this.bytes.subarray(offset, offset + dst.length));
  }
  write(offset: number, src: Uint8Array): void {
    if (this.readOnly) throw new Error("read-only");
    this.bytes.set(src, offset);
  }
  flush(): void {
    this.flushes++;
  }
  discard(): void {}
  close(): void {}
}

class Pipe implements CharBackend {
  written: number[] = [];
  rx: ((b: Uint8Array) => void) | null = null;
  write(bytes: Uint8Array): void {
    this.written.push(...bytes);
  }
  attach(receive: (b: Uint8Array) => void): void {
    this.rx = receive;
  }
  close(): void {}
}

const GET_DESCRIPTOR = (type: number, len: number) => [0x80, 6, type << 8, 0, len];
const SET_CONFIGURATION = [0, 9, 1, 0, 0];

/** A keyboard on port 1, enumerated and configured: its interrupt IN endpoint is DCI 3. */
function keyboardSetup() {
  const d = new Driver();
  const kbd = new UsbKeyboard("kbd");
  d.hc.attach(kbd);
  d.start();
  const slot = d.enumerate(1, 8);
  d.control(slot, SET_CONFIGURATION);
  expect(d.configure(slot, [{ dci: 3, type: 7, maxPacket: 8 }]).code).toBe(CC.SUCCESS);
  return { d, kbd, slot };
}

/** A CDC-ACM serial port on `backend` on port 1 of `d`, enumerated and configured: its bulk OUT endpoint is DCI 4. Returns its slot. */
function serialSetup(d: Driver, backend: ConstructorParameters<typeof UsbSerial>[1]): number {
  d.hc.attach(new UsbSerial("ser", backend));
  d.start();
  const slot = d.enumerate(1);
  d.control(slot, SET_CONFIGURATION);
  expect(d.configure(slot, [{ dci: 4, type: 2, maxPacket: 512 }]).code).toBe(CC.SUCCESS);
  d.events();
  return slot;
}

function storageSetup(blocks = 64, readOnly = false) {
  const d = new Driver();
  const disk = new MemDisk(blocks * 512, readOnly);
  const dev = new UsbStorage("disk", disk);
  d.hc.attach(dev);
  d.start();
  const slot = d.enumerate(1);
  d.control(slot, SET_CONFIGURATION);
  // Bulk IN endpoint 1 (DCI 3), bulk OUT endpoint 2 (DCI 4).
  expect(d.configure(slot, [{ dci: 3, type: 6, maxPacket: 512 }, { dci: 4, type: 2, maxPacket: 512 }]).code).toBe(CC.SUCCESS);
  let tag = 1;
  /** One BOT command: CBW out, data phase, CSW in. */
  const scsi = (cdb: number[], dataIn: number, dataOut?: Uint8Array) => {
    const cbw = new Uint8Array(31);
    const v = new DataView(cbw.buffer);
    v.setUint32(0, 0x43425355, true);
    v.setUint32(4, tag, true);
    v.setUint32(8, dataOut ? dataOut.length : dataIn, true);
    cbw[12] = dataOut ? 0 : 0x80;
    cbw[14] = cdb.length;
    cbw.set(cdb, 15);
    d.bytes(DATA, 31).set(cbw);
    d.queue(slot, 4, [{ type: TRB.NORMAL, ptr: DATA, len: 31, flags: IOC }]);
    d.ring(slot, 4);
    const events = d.events();
    const buf = DATA + 0x1000;
    let data = new Uint8Array(0);
    if (dataOut) {
      d.bytes(buf, dataOut.length).set(dataOut);
      d.queue(slot, 4, [{ type: TRB.NORMAL, ptr: buf, len: dataOut.length, flags: IOC }]);
      d.ring(slot, 4);
      events.push(...d.events());
    } else if (dataIn) {
      d.bytes(buf, dataIn).fill(0xaa);
      d.queue(slot, 3, [{ type: TRB.NORMAL, ptr: buf, len: dataIn, flags: IOC | ISP }]);
      d.ring(slot, 3);
      const ev = d.events();
      events.push(...ev);
      const got = dataIn - (ev[0]?.len ?? 0);
      data = d.bytes(buf, got).slice();
    }
    const cswAt = DATA + 0x800;
    d.queue(slot, 3, [{ type: TRB.NORMAL, ptr: cswAt, len: 13, flags: IOC | ISP }]);
    d.ring(slot, 3);
    events.push(...d.events());
    const csw = d.bytes(cswAt, 13);
    const cv = new DataView(csw.buffer, csw.byteOffset, 13);
    expect(cv.getUint32(0, true)).toBe(0x53425355);
    expect(cv.getUint32(4, true)).toBe(tag);
    tag++;
    return { data, status: csw[12]!, residue: cv.getUint32(8, true), events };
  };
  return { d, disk, dev, slot, scsi };
}

describe("xhci: registers and initialisation", () => {
  it("capability registers, the Supported Protocol capability, and a reset that leaves it halted", () => {
    const d = new Driver();
    expect(d.r(0) & 0xff).toBe(0x40);
    expect(d.r(0) >>> 16).toBe(0x0110);
    expect(d.r(4) >>> 24).toBe(XHCI_PORTS);
    expect((d.r(0x10) >>> 16) * 4).toBe(EXT_CAPS);
    expect(d.r(EXT_CAPS) & 0xff).toBe(2);
    expect(d.r(EXT_CAPS) >>> 24).toBe(2); // USB 2
    expect(d.r(EXT_CAPS + 4)).toBe(0x20425355);
    expect(d.r(EXT_CAPS + 8)).toBe(1 | (XHCI_PORTS << 8));
    expect(d.r(USBSTS) & STS_HCH).toBe(STS_HCH);
    d.start();
    expect(d.r(USBSTS) & STS_HCH).toBe(0);
    expect(d.command({ type: TRB.NOOP_COMMAND }).code).toBe(CC.SUCCESS);
  });

  it("a port with a device shows it connected; a reset enables it and reports the change", () => {
    const d = new Driver();
    d.hc.attach(new UsbKeyboard("kbd"), 3);
    d.start();
    const sc = d.r(PORTS + 32);
    expect(sc & PORT_CCS).toBe(PORT_CCS);
    expect(sc & PORT_CSC).toBe(PORT_CSC);
    expect((sc >>> 10) & 0xf).toBe(1); // full speed
    expect(d.r(PORTS) & PORT_CCS).toBe(0);
    d.w(PORTS + 32, (1 << 9) | (1 << 4));
    const ev = d.events();
    expect(ev).toEqual([expect.objectContaining({ type: TRB.PORT_STATUS_CHANGE, port: 3 })]);
    expect(d.r(PORTS + 32) & (PORT_PED | PORT_PRC)).toBe(PORT_PED | PORT_PRC);
    d.w(PORTS + 32, (1 << 9) | PORT_PRC | PORT_CSC); // write 1 to clear
    expect(d.r(PORTS + 32) & (PORT_PRC | PORT_CSC)).toBe(0);
    expect(d.r(PORTS + 32) & PORT_PED).toBe(PORT_PED);
  });

  it("interrupts: an event raises the line while IMAN.IE and USBCMD.INTE are set; the driver's acknowledgement lowers it", () => {
    const d = new Driver();
    d.start();
    d.w(PORTS, 0x200 | (1 << 4)); // a reset on an empty port still reports PRC
    expect(d.irq).toBe(true);
    d.w(USBSTS, 1 << 3); // EINT
    d.w(0x620, 3); // IMAN: IP (write 1 to clear) | IE
    expect(d.irq).toBe(false);
    d.events();
  });
});

describe("xhci: the keyboard", () => {
  it("enumerates: the device descriptor arrives with a short packet, the slot is addressed", () => {
    const d = new Driver();
    d.hc.attach(new UsbKeyboard("kbd"));
    d.start();
    const slot = d.enumerate(1, 8);
    expect(d.slotState(slot)).toEqual({ state: 2, address: slot });
    const r = d.control(slot, GET_DESCRIPTOR(1, 64), 64);
    expect(r.events.map((e) => e.code)).toEqual([CC.SHORT_PACKET, CC.SUCCESS]);
    expect(r.events[0]!.len).toBe(64 - 18);
    expect([...r.data.subarray(0, 4)]).toEqual([18, 1, 0x00, 0x02]);
    const cfg = d.control(slot, GET_DESCRIPTOR(2, 255), 255);
    expect(cfg.data[1]).toBe(2);
    expect(cfg.data[9 + 5]).toBe(3); // interface class HID
  });

  it("keys typed reach the interrupt IN endpoint as boot reports: press, release", () => {
    const { d, kbd, slot } = keyboardSetup();
    d.queue(slot, 3, [{ type: TRB.NORMAL, ptr: DATA, len: 8, flags: IOC | ISP }]);
    d.ring(slot, 3);
    expect(d.events()).toEqual([]); // nothing typed: the TD waits
    kbd.type(Uint8Array.from([0x41])); // 'A'
    const ev = d.events();
    expect(ev).toEqual([expect.objectContaining({ type: TRB.TRANSFER_EVENT, code: CC.SUCCESS, slot, dci: 3, len: 0 })]);
    expect([...d.bytes(DATA, 8)]).toEqual([0x02, 0, 0x04, 0, 0, 0, 0, 0]); // shift + a
    d.queue(slot, 3, [{ type: TRB.NORMAL, ptr: DATA + 8, len: 8, flags: IOC | ISP }]);
    d.ring(slot, 3);
    expect(d.events()[0]!.code).toBe(CC.SUCCESS);
    expect([...d.bytes(DATA + 8, 8)]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    expect(keyFor(0x0d)).toEqual({ key: 0x28, mods: 0 });
    expect(keyFor(0x03)).toEqual({ key: 0x06, mods: 1 }); // Ctrl-C
  });

  it("Stop Endpoint on a waiting TD: a Stopped event, then the completion; the context says stopped; a doorbell restarts it", () => {
    const { d, kbd, slot } = keyboardSetup();
    const [td] = d.queue(slot, 3, [{ type: TRB.NORMAL, ptr: DATA, len: 8, flags: IOC | ISP }]);
    d.ring(slot, 3);
    d.w(DOORBELLS, 0);
    const st = { type: TRB.STOP_ENDPOINT, flags: (slot << 24) | (3 << 16) };
    const done = d.command(st);
    expect(done.code).toBe(CC.SUCCESS);
    expect(d.epState(slot, 3)).toEqual({ state: EP_STOPPED, deq: td, dcs: 1 });
    expect(d.command(st).code).toBe(CC.CONTEXT_STATE);
    kbd.type(Uint8Array.of(0x62));
    expect(d.events()).toEqual([]); // stopped: no transfer
    d.ring(slot, 3);
    expect(d.events()[0]!.code).toBe(CC.SUCCESS);
    expect(d.epState(slot, 3).state).toBe(EP_RUNNING);
  });
});

describe("xhci: mass storage (bulk-only transport, SCSI)", () => {
  it("INQUIRY, READ CAPACITY, WRITE(10) then READ(10): the bytes land in the image and come back", () => {
    const { disk, scsi } = storageSetup(64);
    const inq = scsi([0x12, 0, 0, 0, 36, 0], 36);
    expect(inq.status).toBe(0);
    expect(new TextDecoder().decode(inq.data.subarray(16, 24))).toBe("USB disk");
    const cap = scsi([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8);
    expect(new DataView(cap.data.buffer).getUint32(0)).toBe(63);
    expect(new DataView(cap.data.buffer).getUint32(4)).toBe(512);
    const payload = Uint8Array.from({ length: 1024 }, (_, i) => (i * 7 + 3) & 0xff);
    const wr = scsi([0x2a, 0, 0, 0, 0, 5, 0, 0, 2, 0], 0, payload);
    expect(wr.status).toBe(0);
    expect([...disk.bytes.subarray(5 * 512, 7 * 512)]).toEqual([...payload]);
    const rd = scsi([0x28, 0, 0, 0, 0, 5, 0, 0, 2, 0], 1024);
    expect(rd.status).toBe(0);
    expect([...rd.data]).toEqual([...payload]);
    expect(scsi([0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0).status).toBe(0);
    expect(disk.flushes).toBe(1);
  });

  it("a read past the end fails with ILLEGAL REQUEST / LBA out of range in REQUEST SENSE; a short INQUIRY reports its residue", () => {
    const { scsi } = storageSetup(16);
    const bad = scsi([0x28, 0, 0, 0, 0, 15, 0, 0, 2, 0], 1024);
    expect(bad.status).toBe(1);
    const sense = scsi([0x03, 0, 0, 0, 18, 0], 18);
    expect(sense.data[2]).toBe(5);
    expect(sense.data[12]).toBe(0x21);
    const inq = scsi([0x12, 0, 0, 0, 96, 0], 96);
    expect(inq.data.length).toBe(36);
    expect(inq.residue).toBe(60);
    expect(inq.events.find((e) => e.code === CC.SHORT_PACKET)?.len).toBe(60);
  });

  it("a malformed CBW stalls the endpoint; Reset Endpoint, Set TR Dequeue and the BOT reset recover", () => {
    const { d, slot, scsi } = storageSetup(16);
    d.bytes(DATA, 31).fill(0x55);
    const [bad] = d.queue(slot, 4, [{ type: TRB.NORMAL, ptr: DATA, len: 31, flags: IOC }]);
    d.ring(slot, 4);
    expect(d.events()).toEqual([expect.objectContaining({ code: CC.STALL, ptr: bad, dci: 4 })]);
    expect(d.epState(slot, 4).state).toBe(EP_HALTED);
    expect(d.command({ type: TRB.SET_TR_DEQUEUE, ptr: bad + 16 + 1, flags: (slot << 24) | (4 << 16) }).code).toBe(CC.CONTEXT_STATE);
    expect(d.command({ type: TRB.RESET_ENDPOINT, flags: (slot << 24) | (4 << 16) }).code).toBe(CC.SUCCESS);
    expect(d.command({ type: TRB.SET_TR_DEQUEUE, ptr: bad + 16 + 1, flags: (slot << 24) | (4 << 16) }).code).toBe(CC.SUCCESS);
    d.control(slot, [0x21, 0xff, 0, 0, 0]); // Bulk-Only Mass Storage Reset
    d.control(slot, [0x02, 1, 0, 0x02, 0]); // CLEAR_FEATURE(ENDPOINT_HALT)
    expect(scsi([0x00, 0, 0, 0, 0, 0], 0).status).toBe(0);
  });

  it("a read-only disk refuses WRITE with DATA PROTECT and says so in MODE SENSE", () => {
    const { scsi } = storageSetup(16, true);
    const ms = scsi([0x1a, 0, 0x3f, 0, 192, 0], 192);
    expect(ms.data[2]! & 0x80).toBe(0x80);
    expect(scsi([0x2a, 0, 0, 0, 0, 1, 0, 0, 1, 0], 0, new Uint8Array(512)).status).toBe(1);
    expect(scsi([0x03, 0, 0, 0, 18, 0], 18).data[2]).toBe(7);
  });
});

describe("xhci: usb-storage snapshots", () => {
  /** A usb-storage state in the middle of a WRITE's data phase, with these fields. */
  const writing = (disk: MemDisk, fields: { diskOffset: number; diskLeft: number; partial: number; expected?: number }) => {
    const dev = new UsbStorage("disk", disk);
    const s = JSON.parse(JSON.stringify(dev.save()));
    s.configuration = 1;
    Object.assign(s.cls, { phase: 2, expected: fields.expected ?? 1 << 20, moved: 0, diskOffset: fields.diskOffset, diskLeft: fields.diskLeft });
    s.cls.partial = Buffer.from(new Uint8Array(fields.partial)).toString("base64");
    return { dev, s };
  };

  it("restore() refuses a write whose partial block and disk range go past the image's end or off block boundaries", () => {
    const size = 64 * 512;
    const disk = new MemDisk(size);
    const bad = [
      { diskOffset: size - 1, diskLeft: 1, partial: 511 }, // the reviewer's: 511 + 1 bytes at the last byte
      { diskOffset: size - 512, diskLeft: 512, partial: 511 }, // 1023 bytes into the last block
      { diskOffset: size - 1024, diskLeft: 100, partial: 0 }, // not whole blocks
      { diskOffset: 0, diskLeft: 1024, partial: 0, expected: 512 }, // more than the host said it sends
    ];
    for (const f of bad) {
      const { dev, s } = writing(disk, f);
      const before = JSON.stringify(dev.save());
      expect(() => dev.restore(s), JSON.stringify(f)).toThrow(/diskLeft/);
      expect(JSON.stringify(dev.save())).toBe(before);
    }
    // A consistent state (a write half-way through a block) is taken, and ends inside the image.
    const { dev, s } = writing(disk, { diskOffset: size - 1024, diskLeft: 1024 - 100, partial: 100 });
    dev.restore(s);
    expect(dev.transferOut(2, new Uint8Array(1024 - 100).fill(7))).toBe("ok");
    expect(disk.bytes.subarray(size - 1024 + 100).every((b) => b === 7)).toBe(true);
  });
});

describe("xhci: CDC-ACM serial", () => {
  it("bytes go out to the backend on bulk OUT and come in from it on bulk IN", () => {
    const d = new Driver();
    const pipe = new Pipe();
    const dev = new UsbSerial("ser", pipe);
    d.hc.attach(dev);
    d.start();
    const slot = d.enumerate(1);
    d.control(slot, SET_CONFIGURATION);
    d.control(slot, [0x21, 0x20, 0, 0, 7], Uint8Array.of(0x80, 0x25, 0, 0, 0, 0, 8)); // 9600 8N1
    expect([...d.control(slot, [0xa1, 0x21, 0, 0, 7], 7).data]).toEqual([0x80, 0x25, 0, 0, 0, 0, 8]);
    d.control(slot, [0x21, 0x22, 3, 0, 0]);
    expect(dev.lines).toBe(3);
    // Interrupt IN 1 (DCI 3), bulk IN 2 (DCI 5), bulk OUT 2 (DCI 4).
    expect(d.configure(slot, [{ dci: 3, type: 7, maxPacket: 16 }, { dci: 4, type: 2, maxPacket: 512 }, { dci: 5, type: 6, maxPacket: 512 }]).code).toBe(CC.SUCCESS);
    d.bytes(DATA, 5).set(new TextEncoder().encode("hello"));
    d.queue(slot, 4, [{ type: TRB.NORMAL, ptr: DATA, len: 5, flags: IOC }]);
    d.ring(slot, 4);
    expect(d.events()[0]!.code).toBe(CC.SUCCESS);
    expect(String.fromCharCode(...pipe.written)).toBe("hello");
    d.queue(slot, 5, [{ type: TRB.NORMAL, ptr: DATA + 0x100, len: 512, flags: IOC | ISP }]);
    d.ring(slot, 5);
    expect(d.events()).toEqual([]);
    pipe.rx!(new TextEncoder().encode("world"));
    const ev = d.events();
    expect(ev[0]).toEqual(expect.objectContaining({ code: CC.SHORT_PACKET, len: 507 }));
    expect(new TextDecoder().decode(d.bytes(DATA + 0x100, 5))).toBe("world");
  });
});

describe("xhci: hostile guests", () => {
  it("a command ring outside RAM is a Host System Error: the controller halts and stays quiet", () => {
    const d = new Driver();
    d.start();
    d.w64(CRCR, RAM_BASE + RAM_SIZE + 0x1000 + 1);
    d.w(DOORBELLS, 0);
    expect(d.r(USBSTS) & (STS_HSE | STS_HCH)).toBe(STS_HSE | STS_HCH);
    d.w(DOORBELLS, 0);
    expect(d.r(CRCR) & CRCR_CRR).toBe(0);
  });

  it("an event ring whose segment is too small or outside RAM is a Host System Error when the first event comes", () => {
    const d = new Driver();
    d.start();
    d.set32(ERST + 8, 4); // a segment of 4 TRBs: less than 16
    d.w64(ERSTBA, ERST);
    d.w(PORTS, (1 << 9) | (1 << 4)); // an event is due
    expect(d.r(USBSTS) & (STS_HSE | STS_HCH)).toBe(STS_HSE | STS_HCH);
    d.start();
    expect(d.r(USBSTS) & STS_HSE).toBe(0); // a reset clears it
    d.set64(ERST, RAM_BASE + RAM_SIZE); // the segment outside RAM
    d.w64(ERSTBA, ERST);
    d.w(PORTS, (1 << 9) | (1 << 4));
    expect(d.r(USBSTS) & STS_HSE).toBe(STS_HSE);
  });

  it("Link TRBs that loop, and a TD that never ends, halt the endpoint with a TRB Error; nothing spins", () => {
    const { d, slot } = keyboardSetup();
    // A Link TRB pointing at itself, with the cycle bit the endpoint expects.
    const ring = xferRing(slot, 3);
    d.set64(ring, ring);
    d.set32(ring + 12, (TRB.LINK << 10) | 1);
    d.ring(slot, 3);
    expect(d.events()).toEqual([expect.objectContaining({ code: CC.TRB, dci: 3 })]);
    expect(d.epState(slot, 3).state).toBe(EP_HALTED);
    // The ring full of chained Normal TRBs whose Link goes back to the start without a toggle.
    expect(d.command({ type: TRB.RESET_ENDPOINT, flags: (slot << 24) | (3 << 16) }).code).toBe(CC.SUCCESS);
    for (let i = 0; i < 63; i++) {
      d.set64(ring + 16 * i, DATA);
      d.set32(ring + 16 * i + 8, 8);
      d.set32(ring + 16 * i + 12, (TRB.NORMAL << 10) | CH | 1);
    }
    d.set64(ring + 63 * 16, ring);
    d.set32(ring + 63 * 16 + 12, (TRB.LINK << 10) | CH | 1);
    expect(d.command({ type: TRB.SET_TR_DEQUEUE, ptr: ring + 1, flags: (slot << 24) | (3 << 16) }).code).toBe(CC.SUCCESS);
    d.ring(slot, 3);
    expect(d.events()).toEqual([expect.objectContaining({ code: CC.TRB, dci: 3 })]);
    expect(MAX_TD_TRBS).toBeGreaterThan(63);
  });

  it("buffers outside RAM and immediate data on IN fail their TD with a TRB Error; the ring goes on", () => {
    const { d, kbd, slot } = keyboardSetup();
    kbd.type(Uint8Array.of(0x61));
    const [a, b] = d.queue(slot, 3, [
      { type: TRB.NORMAL, ptr: RAM_BASE + RAM_SIZE - 4, len: 8, flags: IOC | ISP },
      { type: TRB.NORMAL, ptr: 0xffff_ffff_0000, len: 8, flags: IOC | ISP },
      { type: TRB.NORMAL, lo: 1, hi: 2, len: 8, flags: IOC | ISP | (1 << 6) },
      { type: TRB.NORMAL, ptr: DATA, len: 8, flags: IOC | ISP },
    ]);
    d.ring(slot, 3);
    const ev = d.events();
    expect(ev.map((e) => e.code)).toEqual([CC.TRB, CC.TRB, CC.TRB, CC.SUCCESS]);
    expect(ev[0]!.ptr).toBe(a);
    expect(ev[1]!.ptr).toBe(b);
    expect(d.bytes(DATA, 8)[2]).toBe(0x04); // the key was not lost to the bad TDs
  });

  it("a ring longer than a doorbell's share is done whole, a share at a time (continueWork), and survives a snapshot", () => {
    // 100 bulk OUT TDs of one byte each to the serial port, on a ring of their own.
    const ring = DATA + 0x10000;
    const s = new Driver();
    const pipe = new Pipe();
    s.hc.attach(new UsbSerial("ser", pipe));
    s.start();
    const id = s.enumerate(1);
    s.control(id, SET_CONFIGURATION);
    expect(s.configure(id, [{ dci: 4, type: 2, maxPacket: 512 }]).code).toBe(CC.SUCCESS);
    for (let i = 0; i < 100; i++) {
      s.set64(ring + 16 * i, DATA + 0x8000 + i);
      s.set32(ring + 16 * i + 8, 1);
      s.set32(ring + 16 * i + 12, (TRB.NORMAL << 10) | (i % 10 === 9 ? IOC : 0) | 1);
    }
    s.bytes(DATA + 0x8000, 100).set(Uint8Array.from({ length: 100 }, (_, i) => i));
    expect(s.command({ type: TRB.STOP_ENDPOINT, flags: (id << 24) | (4 << 16) }).code).toBe(CC.SUCCESS);
    expect(s.command({ type: TRB.SET_TR_DEQUEUE, ptr: ring + 1, flags: (id << 24) | (4 << 16) }).code).toBe(CC.SUCCESS);
    s.ring(id, 4);
    expect(pipe.written.length).toBe(MAX_TDS);
    expect(s.hc.hasDeferredWork).toBe(true);
    // A snapshot here keeps the work to do: the restored controller finishes the ring.
    const pipe2 = new Pipe();
    const again = new Xhci("xhci0", s.mem, () => {});
    again.attach(new UsbSerial("ser", pipe2));
    again.restore(JSON.parse(JSON.stringify(s.hc.save())));
    expect(again.hasDeferredWork).toBe(true);
    again.continueWork();
    expect(again.hasDeferredWork).toBe(false);
    expect([...pipe.written, ...pipe2.written]).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });

  it("No Op TDs (Linux's cancelled URBs) complete without reaching the device; a No Op's IOC inside an IN TD gives its event", () => {
    // Bulk OUT of usb-storage: a lone No Op is not an empty CBW (which would stall).
    const { d, slot, scsi } = storageSetup();
    d.events();
    const [noop] = d.queue(slot, 4, [{ type: TRB.NOOP, flags: IOC }]);
    d.ring(slot, 4);
    expect(d.events()).toEqual([expect.objectContaining({ code: CC.SUCCESS, ptr: noop, len: 0, dci: 4 })]);
    expect(d.epState(slot, 4).state).toBe(EP_RUNNING);
    expect(scsi([0, 0, 0, 0, 0, 0], 0).status).toBe(0); // TEST UNIT READY: the device saw nothing odd
    // Interrupt IN of the keyboard: a No Op does not wait for a key, nor take one.
    const k = keyboardSetup();
    k.d.events();
    const [n1, n2] = k.d.queue(k.slot, 3, [{ type: TRB.NOOP, flags: CH }, { type: TRB.NOOP, flags: IOC }]);
    k.d.ring(k.slot, 3);
    expect(k.d.events()).toEqual([expect.objectContaining({ code: CC.SUCCESS, ptr: n2, len: 0 })]);
    expect(n1).toBeLessThan(n2!);
    k.kbd.type(Uint8Array.of(0x61));
    expect(k.d.events()).toEqual([]);
    expect(k.d.epState(k.slot, 3).state).toBe(EP_RUNNING);
    // An IN TD with a No Op (IOC) in the middle: its event comes, then the data's.
    const [, mid, last] = k.d.queue(k.slot, 3, [
      { type: TRB.NORMAL, ptr: DATA, len: 4, flags: CH },
      { type: TRB.NOOP, flags: CH | IOC },
      { type: TRB.NORMAL, ptr: DATA + 4, len: 4, flags: IOC },
    ]);
    k.d.ring(k.slot, 3);
    expect(k.d.events().map((e) => [e.ptr, e.code])).toEqual([[mid, CC.SUCCESS], [last, CC.SUCCESS]]);
    expect(k.d.bytes(DATA, 8)[2]).toBe(0x04); // 'a' pressed
  });

  it("a doorbell, and each continueWork(), moves at most MAX_SHARE_BYTES of TDs: 64 TDs of 2 MiB over one buffer go out a share at a time", () => {
    // GuestMemory as the machine's: read() a view, no copy.
    const d = new Driver((mem, irq) => new Xhci("xhci0", { view: mem.view, read: mem.view }, irq));
    const sizes: number[] = [];
    let out = 0;
    const slot = serialSetup(d, { write: (b) => { out += b.length; sizes.push(b.length); }, attach() {}, close() {} });
    // 64 TDs of 16 TRBs of 128 KiB - 1 (just under MAX_TD_BYTES each), all over the same buffer.
    const ring = RAM_BASE + 0x100000;
    const tds = 64;
    const perTd = 16;
    for (let i = 0; i < tds * perTd; i++) {
      d.set64(ring + 16 * i, DATA);
      d.set32(ring + 16 * i + 8, 0x1ffff);
      d.set32(ring + 16 * i + 12, (TRB.NORMAL << 10) | (i % perTd === perTd - 1 ? IOC : CH) | 1);
    }
    const tdBytes = perTd * 0x1ffff;
    expect(tdBytes).toBeLessThanOrEqual(MAX_TD_BYTES);
    expect(d.command({ type: TRB.STOP_ENDPOINT, flags: (slot << 24) | (4 << 16) }).code).toBe(CC.SUCCESS);
    expect(d.command({ type: TRB.SET_TR_DEQUEUE, ptr: ring + 1, flags: (slot << 24) | (4 << 16) }).code).toBe(CC.SUCCESS);
    d.ring(slot, 4);
    expect(out).toBeGreaterThan(0);
    expect(out).toBeLessThanOrEqual(MAX_SHARE_BYTES);
    let shares = 1;
    let events = d.events().length;
    while (d.hc.hasDeferredWork) {
      const before = out;
      d.hc.continueWork();
      expect(out - before).toBeGreaterThan(0);
      expect(out - before).toBeLessThanOrEqual(MAX_SHARE_BYTES);
      events += d.events().length;
      shares++;
    }
    // Everything went out, once, in order, each TD whole.
    expect(out).toBe(tds * tdBytes);
    expect(sizes.every((n) => n === tdBytes)).toBe(true);
    expect(events).toBe(tds);
    expect(shares).toBeGreaterThanOrEqual(tds * tdBytes / MAX_SHARE_BYTES);
  });

  it("a TD with a Link TRB before every TRB fails after twice MAX_TD_TRBS ring reads", () => {
    let reads = 0;
    const d = new Driver((mem, irq) => new Xhci("xhci0", { view: mem.view, read: (gpa, len) => { if (len === 16) reads++; return mem.read(gpa, len); } }, irq));
    const slot = serialSetup(d, new Pipe());
    // Blocks of 16 Links, each to the next, then a chained zero-length Normal TRB; 1024 blocks.
    const base = RAM_BASE + 0x100000;
    const blocks = 1024;
    for (let b = 0; b < blocks; b++) {
      const blk = base + 17 * 16 * b;
      for (let k = 0; k < 16; k++) {
        d.set64(blk + 16 * k, blk + 16 * (k + 1));
        d.set32(blk + 16 * k + 12, (TRB.LINK << 10) | 1);
      }
      d.set64(blk + 256, DATA);
      d.set32(blk + 256 + 12, (TRB.NORMAL << 10) | CH | 1);
    }
    expect(d.command({ type: TRB.STOP_ENDPOINT, flags: (slot << 24) | (4 << 16) }).code).toBe(CC.SUCCESS);
    expect(d.command({ type: TRB.SET_TR_DEQUEUE, ptr: base + 1, flags: (slot << 24) | (4 << 16) }).code).toBe(CC.SUCCESS);
    reads = 0;
    d.ring(slot, 4);
    expect(reads).toBeLessThanOrEqual(2 * MAX_TD_TRBS + 17);
    expect(d.events()).toEqual([expect.objectContaining({ code: CC.TRB, dci: 4 })]);
    expect(d.epState(slot, 4).state).toBe(EP_HALTED);
  });

  it("a doorbell reads at most about MAX_SHARE_TRB_READS TRBs: the TDs beyond wait for continueWork()", () => {
    const d = new Driver();
    const slot = serialSetup(d, new Pipe());
    // 60 TDs of 100 chained zero-length Normal TRBs: 6000 TRBs, fewer than MAX_TDS TDs.
    const ring = RAM_BASE + 0x100000;
    const tds = 60;
    for (let i = 0; i < tds * 100; i++) {
      d.set64(ring + 16 * i, DATA);
      d.set32(ring + 16 * i + 12, (TRB.NORMAL << 10) | (i % 100 === 99 ? IOC : CH) | 1);
    }
    expect(tds * 100).toBeGreaterThan(MAX_SHARE_TRB_READS);
    expect(d.command({ type: TRB.STOP_ENDPOINT, flags: (slot << 24) | (4 << 16) }).code).toBe(CC.SUCCESS);
    expect(d.command({ type: TRB.SET_TR_DEQUEUE, ptr: ring + 1, flags: (slot << 24) | (4 << 16) }).code).toBe(CC.SUCCESS);
    d.ring(slot, 4);
    const first = d.events().length;
    expect(first).toBe(Math.ceil(MAX_SHARE_TRB_READS / 100));
    expect(d.hc.hasDeferredWork).toBe(true);
    d.hc.continueWork();
    expect(first + d.events().length).toBe(tds);
    expect(d.hc.hasDeferredWork).toBe(false);
  });

  it("a TD of more than MAX_TD_BYTES fails with a TRB Error instead of being copied", () => {
    const { d, slot, disk } = storageSetup(16);
    // 200 chained TRBs of 128 KiB - 1, all over the same RAM: 25 MiB for one bulk OUT transfer,
    // on a ring of its own (the endpoint stopped and moved there).
    const ring = DATA + 0x10000;
    for (let i = 0; i < 200; i++) {
      d.set64(ring + 16 * i, RAM_BASE);
      d.set32(ring + 16 * i + 8, 0x1ffff);
      d.set32(ring + 16 * i + 12, (TRB.NORMAL << 10) | (i === 199 ? IOC : CH) | 1);
    }
    expect(d.command({ type: TRB.STOP_ENDPOINT, flags: (slot << 24) | (4 << 16) }).code).toBe(CC.SUCCESS);
    expect(d.command({ type: TRB.SET_TR_DEQUEUE, ptr: ring + 1, flags: (slot << 24) | (4 << 16) }).code).toBe(CC.SUCCESS);
    d.ring(slot, 4);
    const ev = d.events();
    expect(ev).toEqual([expect.objectContaining({ code: CC.TRB, dci: 4, ptr: ring + 16 * Math.floor(MAX_TD_BYTES / 0x1ffff) })]);
    expect(MAX_TD_BYTES).toBeLessThan(200 * 0x1ffff);
    expect(disk.bytes.every((b) => b === 0)).toBe(true);
  });

  it("bad slots, endpoints and contexts get the completion codes of the specification", () => {
    const d = new Driver();
    d.hc.attach(new UsbKeyboard("kbd"));
    d.start(2);
    expect(d.command({ type: TRB.ADDRESS_DEVICE, ptr: RAM_BASE, flags: 9 << 24 }).code).toBe(CC.SLOT_NOT_ENABLED);
    expect(d.command({ type: TRB.ADDRESS_DEVICE, ptr: RAM_BASE, flags: 255 << 24 }).code).toBe(CC.SLOT_NOT_ENABLED);
    const s1 = d.command({ type: TRB.ENABLE_SLOT }).slot;
    const s2 = d.command({ type: TRB.ENABLE_SLOT }).slot;
    expect([s1, s2]).toEqual([1, 2]);
    expect(d.command({ type: TRB.ENABLE_SLOT }).code).toBe(CC.NO_SLOTS);
    // Input context outside RAM, unaligned, or without the add flags.
    expect(d.command({ type: TRB.ADDRESS_DEVICE, ptr: 0x1000, flags: s1 << 24 }).code).toBe(CC.TRB);
    expect(d.command({ type: TRB.ADDRESS_DEVICE, ptr: RAM_BASE + RAM_SIZE - 64, flags: s1 << 24 }).code).toBe(CC.TRB);
    d.bytes(RAM_BASE + 0x10000, 0x440).fill(0);
    expect(d.command({ type: TRB.ADDRESS_DEVICE, ptr: RAM_BASE + 0x10000, flags: s1 << 24 }).code).toBe(CC.PARAMETER);
    // A port with no device behind it (port 2), or not reset (port 1).
    d.set32(RAM_BASE + 0x10004, 3);
    d.set32(RAM_BASE + 0x10000 + 32 + 4, 2 << 16);
    d.set32(RAM_BASE + 0x10000 + 64 + 4, (4 << 3) | (8 << 16));
    d.set64(0x8000_1000 + 8 * s1, outputCtx(s1));
    expect(d.command({ type: TRB.ADDRESS_DEVICE, ptr: RAM_BASE + 0x10000, flags: s1 << 24 }).code).toBe(CC.TRANSACTION);
    d.set32(RAM_BASE + 0x10000 + 32 + 4, 1 << 16);
    expect(d.command({ type: TRB.ADDRESS_DEVICE, ptr: RAM_BASE + 0x10000, flags: s1 << 24 }).code).toBe(CC.TRANSACTION);
    // EP0 not a control endpoint.
    d.w(PORTS, (1 << 9) | (1 << 4));
    d.set32(RAM_BASE + 0x10000 + 64 + 4, (2 << 3) | (8 << 16));
    expect(d.command({ type: TRB.ADDRESS_DEVICE, ptr: RAM_BASE + 0x10000, flags: s1 << 24 }).code).toBe(CC.PARAMETER);
    // Endpoint commands on an endpoint never enabled; unknown command types.
    expect(d.command({ type: TRB.RESET_ENDPOINT, flags: (s1 << 24) | (5 << 16) }).code).toBe(CC.EP_NOT_ENABLED);
    expect(d.command({ type: TRB.CONFIGURE_ENDPOINT, ptr: RAM_BASE + 0x10000, flags: s1 << 24 }).code).toBe(CC.CONTEXT_STATE);
    expect(d.command({ type: 22, flags: s1 << 24 }).code).toBe(CC.TRB);
    expect(d.command({ type: TRB.DISABLE_SLOT, flags: s2 << 24 }).code).toBe(CC.SUCCESS);
    expect(d.command({ type: TRB.DISABLE_SLOT, flags: s2 << 24 }).code).toBe(CC.SLOT_NOT_ENABLED);
  });

  it("Configure Endpoint with a context for the wrong direction or without a max packet size changes nothing", () => {
    const { d, slot } = keyboardSetup();
    expect(d.configure(slot, [{ dci: 4, type: 7, maxPacket: 8 }]).code).toBe(CC.PARAMETER); // IN type at an OUT index
    expect(d.configure(slot, [{ dci: 5, type: 7, maxPacket: 0 }]).code).toBe(CC.PARAMETER);
    expect(d.epState(slot, 3).state).toBe(EP_RUNNING);
  });

  it("a full event ring keeps events until the driver frees room, then delivers them in order", () => {
    const d = new Driver();
    d.start();
    // Post more no-op commands than the ring holds without reading events.
    const n = EVENT_TRBS + 10;
    const addrs: number[] = [];
    for (let i = 0; i < n; i++) {
      // Write directly: command() would consume events.
      const at = 0x8000_2000 + (i % 15) * 16;
      d.set32(at, 0); d.set32(at + 4, 0); d.set32(at + 8, 0);
      const cycle = Math.floor(i / 15) % 2 === 0 ? 1 : 0;
      d.set32(at + 12, (TRB.NOOP_COMMAND << 10) | cycle);
      if (i % 15 === 14) d.set32(0x8000_2000 + 15 * 16 + 12, (TRB.LINK << 10) | 2 | cycle);
      addrs.push(at);
      d.w(DOORBELLS, 0);
    }
    const first = d.events();
    expect(first.length).toBe(EVENT_TRBS - 1); // one TRB stays free
    const rest = d.events();
    expect(first.length + rest.length).toBe(n);
    expect([...first, ...rest].map((e) => e.ptr)).toEqual(addrs);
  });

  it("events beyond what the controller keeps for a full event ring end in an Event Ring Full Error, not silence", () => {
    const d = new Driver();
    d.start();
    // 63 events fit in the ring, 1024 wait (the last of them the error); 20 more are lost.
    const n = EVENT_TRBS - 1 + 1024 + 20;
    for (let i = 0; i < n; i++) {
      const at = 0x8000_2000 + (i % 15) * 16;
      const cycle = Math.floor(i / 15) % 2 === 0 ? 1 : 0;
      d.set32(at, 0); d.set32(at + 4, 0); d.set32(at + 8, 0);
      d.set32(at + 12, (TRB.NOOP_COMMAND << 10) | cycle);
      if (i % 15 === 14) d.set32(0x8000_2000 + 15 * 16 + 12, (TRB.LINK << 10) | 2 | cycle);
      d.w(DOORBELLS, 0);
    }
    const all = [];
    for (let ev = d.events(); ev.length; ev = d.events()) all.push(...ev);
    expect(all.length).toBe(EVENT_TRBS - 1 + 1024);
    expect(all.slice(0, -1).every((e) => e.type === TRB.COMMAND_COMPLETION && e.code === CC.SUCCESS)).toBe(true);
    expect(all[all.length - 1]).toMatchObject({ type: TRB.HOST_CONTROLLER, code: CC.EVENT_RING_FULL });
  });

  it("Reset Device on a slot in the Default state is a Context State Error", () => {
    const { d, slot } = keyboardSetup();
    expect(d.command({ type: TRB.RESET_DEVICE, flags: slot << 24 }).code).toBe(CC.SUCCESS);
    expect(d.slotState(slot).state).toBe(1); // Default
    expect(d.command({ type: TRB.RESET_DEVICE, flags: slot << 24 }).code).toBe(CC.CONTEXT_STATE);
  });

  it("odd register accesses: narrow reads and writes, unknown offsets, ERSTSZ beyond the maximum", () => {
    const d = new Driver();
    expect(d.hc.read(2, 2)).toBe(0x0110);
    expect(d.hc.read(0x7fc, 4)).toBe(0);
    d.hc.write(0x7fc, 4, 0xffffffff);
    d.hc.write(USBCMD + 1, 1, 0xff);
    d.w(ERSTSZ, 0xffff);
    d.start();
    // A byte written into PORTSC's high half keeps the low half (PED stays), and clears CSC.
    d.hc.attach(new UsbKeyboard("kbd"));
    d.w(PORTS, (1 << 9) | (1 << 4));
    d.events();
    d.hc.write(PORTS + 2, 1, PORT_CSC >>> 16);
    expect(d.r(PORTS) & (PORT_PED | PORT_CSC | PORT_CCS)).toBe(PORT_PED | PORT_CCS);
    d.w(PORTS, (1 << 9) | PORT_PRC);
    d.w(ERSTSZ, 100); // more segments than ERST Max allows: the next event is a system error
    d.w(PORTS, (1 << 9) | (1 << 4));
    expect(d.r(USBSTS) & STS_HSE).toBe(STS_HSE);
  });
});

describe("xhci: hot-plug and snapshots", () => {
  it("unplugging reports a disconnect; transfers to the gone device fail; plugging in again enumerates", () => {
    const { d, slot } = keyboardSetup();
    d.events();
    const kbd = d.hc.detach("kbd");
    expect(d.events()).toEqual([expect.objectContaining({ type: TRB.PORT_STATUS_CHANGE, port: 1 })]);
    expect(d.r(PORTS) & (PORT_CCS | PORT_PED | PORT_CSC)).toBe(PORT_CSC);
    d.queue(slot, 3, [{ type: TRB.NORMAL, ptr: DATA, len: 8, flags: IOC | ISP }]);
    d.ring(slot, 3);
    expect(d.events()[0]!.code).toBe(CC.TRANSACTION);
    expect(d.command({ type: TRB.DISABLE_SLOT, flags: slot << 24 }).code).toBe(CC.SUCCESS);
    expect(() => d.hc.detach("kbd")).toThrow(/no device named kbd/);
    d.w(PORTS, (1 << 9) | PORT_CSC); // the hub driver acknowledges the change
    expect(d.hc.attach(kbd)).toBe(1);
    expect(d.events()[0]!.type).toBe(TRB.PORT_STATUS_CHANGE);
    const again = d.enumerate(1, 8);
    expect(d.control(again, GET_DESCRIPTOR(1, 18), 18).data[0]).toBe(18);
    expect(() => d.hc.attach(new UsbKeyboard("kbd"))).toThrow(/attached already/);
  });

  it("a slot of an unplugged device does not reach the device plugged into its port next: Transaction Error, no wake", () => {
    const { d, slot } = keyboardSetup();
    d.queue(slot, 3, [{ type: TRB.NORMAL, ptr: DATA, len: 8, flags: IOC | ISP }]);
    d.ring(slot, 3); // waits for a key
    d.events();
    d.hc.detach("kbd");
    const kbd2 = new UsbKeyboard("kbd2");
    d.hc.attach(kbd2, 1);
    d.events();
    // The driver has not disabled the old slot yet: the new keyboard's keys are not its data ...
    kbd2.type(Uint8Array.of(0x61));
    expect(d.events()).toEqual([]);
    d.hc.detach("kbd2");
    d.hc.attach(new UsbStorage("disk", new MemDisk(64 * 512)), 1);
    d.events();
    // ... and a control transfer on it is not answered by the disk now on port 1.
    const r = d.control(slot, GET_DESCRIPTOR(1, 18), 18);
    expect(r.events.map((e) => e.code)).toEqual([CC.TRANSACTION]);
    expect(r.data.every((b) => b === 0xee)).toBe(true);
    // Once the old slot is disabled, the new device enumerates as usual.
    expect(d.command({ type: TRB.DISABLE_SLOT, flags: slot << 24 }).code).toBe(CC.SUCCESS);
    const again = d.enumerate(1);
    expect(new DataView(d.control(again, GET_DESCRIPTOR(1, 18), 18).data.buffer).getUint16(8, true)).toBe(0x46f4);
  });

  it("restore() refuses slots that break the commands' invariants, naming the field, and changes nothing", () => {
    const { d, kbd, slot } = keyboardSetup();
    d.events();
    const saved = JSON.parse(JSON.stringify(d.hc.save()));
    const broken = (change: (s: any) => void) => {
      const s = JSON.parse(JSON.stringify(saved));
      change(s);
      return s;
    };
    const cases: [(s: any) => void, RegExp][] = [
      [(s) => { s.slots[slot].eps[1] = null; }, new RegExp(`slots\\[${slot}\\]\\.eps\\[1\\] must be EP0`)],
      [(s) => { s.slots[slot].eps[1][1] = 2; }, /eps\[1\]\[1\] must be 4 \(control\)/],
      [(s) => { s.slots[slot].eps[3][1] = 2; }, /eps\[3\]\[1\] must be an IN/],
      [(s) => { s.slots[slot].eps[0] = s.slots[slot].eps[1]; }, /eps\[0\] must be null/],
      [(s) => { s.slots[slot].port = 0; }, /port must be an integer in 1\.\.8/],
      [(s) => { s.slots[slot].state = 2; }, /eps\[3\] must be null unless the slot is Configured/],
      [(s) => { s.slots[slot].eps[3] = null; }, /eps must be a list with an endpoint beyond EP0/],
      [(s) => { s.slots[slot].bound = true; s.slots[slot].port = 2; }, /bound must be false \(port 2 has no device\)/],
      [(s) => { s.slots[slot + 1] = { ...s.slots[slot], eps: s.slots[slot].eps }; }, /bound must be false \(slot 1 is bound to kbd\)/],
      [(s) => { s.slots[slot + 1] = { state: 0, port: 0, ctx: 0, address: 0, bound: false, eps: s.slots[slot].eps }; }, /eps\[1\] must be null in the Enabled state/],
    ];
    kbd.type(Uint8Array.of(0x61)); // the keyboard's queue, which a refused restore must keep
    const before = JSON.stringify(d.hc.save());
    for (const [change, message] of cases) expect(() => d.hc.restore(broken(change))).toThrow(message);
    expect(JSON.stringify(d.hc.save())).toBe(before);
    // Evaluate Context on the slot still works (it used to throw into the host after such a restore).
    expect(() => d.hc.restore(broken((s) => { s.slots[slot].eps[1] = null; }))).toThrow();
    const inp = RAM_BASE + 0x10000 + slot * 0x1000;
    d.bytes(inp, 0x440).fill(0);
    d.set32(inp + 4, 2);
    d.set32(inp + 64 + 4, 64 << 16);
    expect(d.command({ type: TRB.EVALUATE_CONTEXT, ptr: inp, flags: slot << 24 }).code).toBe(CC.SUCCESS);
  });

  it("restore() of several devices is all or nothing: a later device's bad state leaves the earlier ones as they were", () => {
    const d = new Driver();
    const kbd = new UsbKeyboard("kbd");
    const pipe = new Pipe();
    const ser = new UsbSerial("ser", pipe);
    d.hc.attach(kbd);
    d.hc.attach(ser);
    d.start();
    const saved = JSON.parse(JSON.stringify(d.hc.save()));
    kbd.type(Uint8Array.of(0x61));
    pipe.rx!(Uint8Array.of(1, 2, 3));
    const before = JSON.stringify(d.hc.save());
    const bad = JSON.parse(JSON.stringify(saved));
    bad.ports[1].state.cls.controlLines = 9;
    expect(() => d.hc.restore(bad)).toThrow(/ports\[1\]|controlLines/);
    expect(JSON.stringify(d.hc.save())).toBe(before); // the keyboard kept its keys
  });

  it("save() and restore() carry a waiting TD, the device's queue and the rings through JSON", () => {
    const { d, kbd, slot } = keyboardSetup();
    d.queue(slot, 3, [{ type: TRB.NORMAL, ptr: DATA, len: 8, flags: IOC | ISP }]);
    d.ring(slot, 3);
    d.events();
    const saved = JSON.parse(JSON.stringify(d.hc.save()));
    // A second controller over the same RAM, with a keyboard of the same name.
    const kbd2 = new UsbKeyboard("kbd");
    let hc2!: Xhci;
    const levels: boolean[] = [];
    hc2 = new Xhci("xhci0", d.mem, (l) => levels.push(l));
    hc2.attach(kbd2);
    hc2.restore(saved);
    expect(JSON.stringify(hc2.save())).toBe(JSON.stringify(saved));
    kbd2.type(Uint8Array.of(0x7a));
    expect(d.bytes(DATA, 8)[2]).toBe(0x1d); // 'z'
    expect(levels[levels.length - 1]).toBe(true);
    void kbd;
    // A state naming another device, or a malformed one, is refused and changes nothing.
    const other = new Xhci("xhci1", d.mem, () => {});
    other.attach(new UsbKeyboard("other"));
    expect(() => other.restore(saved)).toThrow(/device/);
    const bad = JSON.parse(JSON.stringify(saved));
    bad.slots[slot].eps[3][0] = 9;
    expect(() => hc2.restore(bad)).toThrow(/eps/);
  });
});
