// The ATA disk driven register by register the way Linux's libata SFF code (pata_of_platform)
// drives it: device probing and SRST, IDENTIFY, PIO reads and writes (single-sector and
// MULTIPLE, 28- and 48-bit), cache flushes, SET FEATURES, nIEN, errors and snapshots.
import { describe, expect, it } from "vitest";
import {
  AtaDisk, ATA_CTL_OFFSET, CMD, CTL_HOB, CTL_NIEN, CTL_SRST, DEV_LBA, ERR_ABRT, ERR_IDNF, ERR_UNC,
  REG_COMMAND, REG_DATA, REG_DEVICE, REG_ERROR, REG_FEATURES, REG_LBAH, REG_LBAL, REG_LBAM, REG_NSECT, REG_STATUS,
  SECTOR, ST_BSY, ST_DRDY, ST_DRQ, ST_ERR,
} from "../../host/devices/ata";
import { MemoryDisk } from "../../host/platform/memory/disk";
import { bytesState } from "../../host/devices/state";

const OBS = 0xa0; // obsolete device-register bits libata always sets (ATA_DEVICE_OBS)
const DEVCTL_OBS = 0x08; // ditto for device control (ATA_DEVCTL_OBS)
const SECTORS = 2048; // a 1 MiB disk

/** Disk contents with every sector distinguishable: byte i of sector s is (s * 7 + i) & 0xff. */
function patterned(sectors = SECTORS): MemoryDisk {
  const d = new MemoryDisk(sectors * SECTOR);
  for (let s = 0; s < sectors; s++) for (let i = 0; i < SECTOR; i++) d.data[s * SECTOR + i] = (s * 7 + i) & 0xff;
  return d;
}

function make(disk: MemoryDisk = patterned(), opts: ConstructorParameters<typeof AtaDisk>[3] = {}) {
  const levels: boolean[] = [];
  const ata = new AtaDisk("ata0", disk, (l) => levels.push(l), opts);
  const shift = ata.regShift;
  const r = (reg: number) => ata.read(reg << shift, 1);
  const w = (reg: number, v: number) => ata.write(reg << shift, 1, v);
  const ctl = (v: number) => ata.write(ATA_CTL_OFFSET, 1, v);
  const alt = () => ata.read(ATA_CTL_OFFSET, 1);
  const irq = () => (levels.length ? levels[levels.length - 1]! : false);
  /** Read `n` bytes through the data register with 32-bit accesses (ata_sff_data_xfer32). */
  const readData = (n: number) => {
    const out = new Uint8Array(n);
    const dv = new DataView(out.buffer);
    for (let i = 0; i < n; i += 4) dv.setUint32(i, ata.read(REG_DATA << shift, 4), true);
    return out;
  };
  const writeData = (bytes: Uint8Array) => {
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
    for (let i = 0; i < bytes.length; i += 4) ata.write(REG_DATA << shift, 4, dv.getUint32(i, true));
  };
  /** Load a 28-bit LBA task file and issue `cmd` (ata_sff_tf_load + exec_command). */
  const cmd28 = (cmd: number, lba: number, count: number, features = 0) => {
    w(REG_FEATURES, features);
    w(REG_NSECT, count & 0xff);
    w(REG_LBAL, lba & 0xff);
    w(REG_LBAM, (lba >>> 8) & 0xff);
    w(REG_LBAH, (lba >>> 16) & 0xff);
    w(REG_DEVICE, OBS | DEV_LBA | ((lba >>> 24) & 0x0f));
    w(REG_COMMAND, cmd);
  };
  /** 48-bit: the high-order bytes first, then the low ones (libata's order). */
  const cmd48 = (cmd: number, lba: number, count: number) => {
    w(REG_NSECT, (count >>> 8) & 0xff);
    w(REG_LBAL, Math.floor(lba / 2 ** 24) & 0xff);
    w(REG_LBAM, Math.floor(lba / 2 ** 32) & 0xff);
    w(REG_LBAH, Math.floor(lba / 2 ** 40) & 0xff);
    w(REG_NSECT, count & 0xff);
    w(REG_LBAL, lba & 0xff);
    w(REG_LBAM, (lba >>> 8) & 0xff);
    w(REG_LBAH, (lba >>> 16) & 0xff);
    w(REG_DEVICE, OBS | DEV_LBA);
    w(REG_COMMAND, cmd);
  };
  return { ata, disk, levels, r, w, ctl, alt, irq, readData, writeData, cmd28, cmd48 };
}

/** IDENTIFY DEVICE through the registers; returns the 256 words. */
function identify(t: ReturnType<typeof make>): Uint16Array {
  t.w(REG_DEVICE, OBS);
  t.w(REG_COMMAND, CMD.IDENTIFY);
  expect(t.irq()).toBe(true);
  expect(t.r(REG_STATUS) & (ST_BSY | ST_DRQ | ST_ERR)).toBe(ST_DRQ);
  expect(t.irq()).toBe(false); // the status read acknowledged INTRQ
  const bytes = t.readData(SECTOR);
  expect(t.alt() & ST_DRQ).toBe(0);
  return new Uint16Array(bytes.buffer);
}

const ataString = (id: Uint16Array, first: number, words: number) =>
  Array.from(id.subarray(first, first + words), (v) => String.fromCharCode(v >> 8, v & 0xff)).join("").trimEnd();

describe("ata: probing and reset", () => {
  it("powers on ready, with the ATA signature in the task file", () => {
    const { r, alt } = make();
    expect(r(REG_STATUS)).toBe(ST_DRDY | 0x10);
    expect(alt()).toBe(ST_DRDY | 0x10);
    expect(r(REG_ERROR)).toBe(0x01); // diagnostics passed, no device 1
    expect([r(REG_NSECT), r(REG_LBAL), r(REG_LBAM), r(REG_LBAH)]).toEqual([1, 1, 0, 0]);
  });

  it("is busy while SRST is asserted and returns the signature after it", () => {
    const { r, w, ctl, alt, irq } = make();
    w(REG_NSECT, 0x55);
    ctl(DEVCTL_OBS);
    ctl(DEVCTL_OBS | CTL_SRST);
    expect(alt()).toBe(ST_BSY);
    expect(r(REG_STATUS)).toBe(ST_BSY);
    w(REG_NSECT, 0x12); // the task file is not writable in reset
    ctl(DEVCTL_OBS);
    expect(alt() & (ST_BSY | ST_DRDY)).toBe(ST_DRDY);
    expect([r(REG_ERROR), r(REG_NSECT), r(REG_LBAL), r(REG_LBAM), r(REG_LBAH), r(REG_DEVICE)]).toEqual([1, 1, 1, 0, 0, 0]);
    expect(irq()).toBe(false);
  });

  it("lets libata find device 0 only (ata_devchk, then classify by status and error)", () => {
    const { r, w, alt, irq } = make();
    for (const dev of [OBS, OBS | 0x10]) {
      w(REG_DEVICE, dev);
      w(REG_NSECT, 0x55); w(REG_LBAL, 0xaa); w(REG_NSECT, 0xaa); w(REG_LBAL, 0x55); w(REG_NSECT, 0x55); w(REG_LBAL, 0xaa);
      // Both pass ata_devchk: the task file is shared, as on a real cable.
      expect([r(REG_NSECT), r(REG_LBAL)]).toEqual([0x55, 0xaa]);
    }
    // Device 1 selected: status and error read 0, so ata_sff_dev_classify says "none".
    expect(r(REG_STATUS)).toBe(0);
    expect(alt()).toBe(0);
    expect(r(REG_ERROR)).toBe(0);
    w(REG_COMMAND, CMD.IDENTIFY); // not ours
    expect(irq()).toBe(false);
    expect(r(REG_STATUS)).toBe(0);
    w(REG_DEVICE, OBS);
    expect(r(REG_STATUS) & (ST_DRDY | ST_DRQ)).toBe(ST_DRDY);
  });
});

describe("ata: IDENTIFY DEVICE", () => {
  it("describes an LBA48 PIO4 disk with READ/WRITE MULTIPLE, write cache and FLUSH CACHE EXT", () => {
    const t = make(patterned(), { serial: "SN-1234", model: "TEST DISK" });
    const id = identify(t);
    expect(id[0]! & 0x8080).toBe(0); // ATA, not removable
    expect(ataString(id, 10, 10)).toBe("SN-1234");
    expect(ataString(id, 27, 20)).toBe("TEST DISK");
    // libata's tests, word by word (include/linux/ata.h):
    expect(id[49]! & (1 << 9)).not.toBe(0); // ata_id_has_lba
    expect(id[49]! & (1 << 11)).not.toBe(0); // IORDY
    expect(id[47]! >> 8).toBe(0x80); // multi count valid ...
    expect(id[47]! & 0xff).toBe(16); // ... up to 16 ...
    expect(id[59]!).toBe(0x100 | 16); // ... and currently 16
    expect(id[53]! & 0x2).not.toBe(0); // words 64-70 valid
    expect(id[64]! & 0x3).toBe(0x3); // PIO 3 and 4
    expect((id[83]! & 0xc000) === 0x4000 && (id[83]! & (1 << 10)) !== 0).toBe(true); // ata_id_has_lba48
    expect(id[83]! & (1 << 13)).not.toBe(0); // FLUSH CACHE EXT
    expect(id[85]! & (1 << 5)).not.toBe(0); // write cache enabled
    expect(id[60]! | (id[61]! << 16)).toBe(SECTORS);
    expect(id[100]! + id[101]! * 0x10000 + id[102]! * 2 ** 32 + id[103]! * 2 ** 48).toBe(SECTORS);
    expect(id[93]).not.toBe(0); // not taken for SATA (ata_id_is_sata)
    expect(id[80]! & 0x40).not.toBe(0); // ATA-6
    // Integrity word: signature and a checksum that makes the sector sum to 0.
    const bytes = new Uint8Array(id.buffer);
    expect(bytes[510]).toBe(0xa5);
    expect(bytes.reduce((a, b) => a + b, 0) & 0xff).toBe(0);
  });

  it("reports large disks through words 100-103 and caps the 28-bit count", () => {
    const disk = { size: 2 ** 29 * SECTOR, readOnly: true, read() {}, write() {}, flush() {}, discard() {}, close() {} };
    const t = make(disk as unknown as MemoryDisk);
    const id = identify(t);
    expect(id[60]! | (id[61]! << 16)).toBe(0x0fffffff);
    expect(id[100]! + id[101]! * 0x10000).toBe(2 ** 29);
  });
});

describe("ata: PIO data transfers", () => {
  it("READ SECTORS: one DRQ block per sector, each announced by INTRQ, none after the last", () => {
    const t = make();
    t.cmd28(CMD.READ_SECTORS, 100, 2);
    for (let s = 0; s < 2; s++) {
      expect(t.irq()).toBe(true);
      expect(t.r(REG_STATUS) & (ST_BSY | ST_DRQ | ST_ERR)).toBe(ST_DRQ);
      expect(t.readData(SECTOR)).toEqual(t.disk.data.subarray((100 + s) * SECTOR, (101 + s) * SECTOR));
    }
    expect(t.irq()).toBe(false);
    expect(t.alt()).toBe(ST_DRDY | 0x10);
  });

  it("READ MULTIPLE EXT: blocks of the multiple count (16, then the 4 left), 48-bit address", () => {
    const t = make();
    const lba = 1000;
    t.cmd48(CMD.READ_MULTIPLE_EXT, lba, 20);
    for (const n of [16, 4]) {
      expect(t.irq()).toBe(true);
      expect(t.r(REG_STATUS) & ST_DRQ).toBe(ST_DRQ);
      const got = t.readData(n * SECTOR);
      const at = lba + (n === 16 ? 0 : 16);
      expect(got).toEqual(t.disk.data.subarray(at * SECTOR, (at + n) * SECTOR));
    }
    expect(t.alt() & ST_DRQ).toBe(0);
  });

  it("16-bit data accesses work too (ata-generic,use16bit)", () => {
    const t = make();
    t.cmd28(CMD.READ_SECTORS, 3, 1);
    t.r(REG_STATUS);
    const words = new Uint16Array(SECTOR / 2);
    for (let i = 0; i < words.length; i++) words[i] = t.ata.read(REG_DATA, 2);
    expect(new Uint8Array(words.buffer)).toEqual(t.disk.data.subarray(3 * SECTOR, 4 * SECTOR));
  });

  it("WRITE SECTORS EXT: first block without INTRQ, then INTRQ after every block; the data lands", () => {
    const t = make();
    const data = new Uint8Array(3 * SECTOR).map((_, i) => (i * 13 + 5) & 0xff);
    t.cmd48(CMD.WRITE_SECTORS_EXT, 500, 3);
    expect(t.irq()).toBe(false); // ATA PIO data-out: the host polls for the first DRQ
    for (let s = 0; s < 3; s++) {
      expect(t.alt() & (ST_BSY | ST_DRQ)).toBe(ST_DRQ);
      t.writeData(data.subarray(s * SECTOR, (s + 1) * SECTOR));
      expect(t.irq()).toBe(true);
      const st = t.r(REG_STATUS);
      expect(st & ST_DRQ).toBe(s < 2 ? ST_DRQ : 0);
    }
    expect(t.disk.data.subarray(500 * SECTOR, 503 * SECTOR)).toEqual(data);
    expect(t.disk.data[499 * SECTOR]).toBe((499 * 7) & 0xff); // neighbours untouched
    expect(t.disk.data[503 * SECTOR]).toBe((503 * 7) & 0xff);
  });

  it("WRITE MULTIPLE then READ MULTIPLE round-trips 40 sectors across the 28-bit/48-bit forms", () => {
    const t = make();
    const data = new Uint8Array(40 * SECTOR).map((_, i) => (i ^ (i >>> 9)) & 0xff);
    t.cmd28(CMD.WRITE_MULTIPLE, 1500, 40);
    for (let at = 0; at < 40; ) {
      const n = Math.min(16, 40 - at);
      t.writeData(data.subarray(at * SECTOR, (at + n) * SECTOR));
      at += n;
      expect(t.irq()).toBe(true);
      t.r(REG_STATUS);
    }
    t.cmd48(CMD.READ_MULTIPLE_EXT, 1500, 40);
    const back = new Uint8Array(40 * SECTOR);
    for (let at = 0; at < 40; ) {
      const n = Math.min(16, 40 - at);
      expect(t.r(REG_STATUS) & ST_DRQ).toBe(ST_DRQ);
      back.set(t.readData(n * SECTOR), at * SECTOR);
      at += n;
    }
    expect(back).toEqual(data);
  });

  it("a count of 0 means 256 sectors (28-bit) and the last sector of the disk is reachable", () => {
    const t = make();
    t.cmd28(CMD.READ_MULTIPLE, SECTORS - 256, 0);
    let total = 0;
    while (t.r(REG_STATUS) & ST_DRQ) total += t.readData(16 * SECTOR).length;
    expect(total).toBe(256 * SECTOR);
    expect(t.r(REG_STATUS) & ST_ERR).toBe(0);
  });

  it("addresses CHS sectors when the LBA bit is clear (default 16 heads x 63 sectors)", () => {
    const t = make();
    // cylinder 1, head 2, sector 5 = (1 * 16 + 2) * 63 + 4
    t.w(REG_NSECT, 1); t.w(REG_LBAL, 5); t.w(REG_LBAM, 1); t.w(REG_LBAH, 0); t.w(REG_DEVICE, OBS | 2);
    t.w(REG_COMMAND, CMD.READ_SECTORS);
    t.r(REG_STATUS);
    const lba = (1 * 16 + 2) * 63 + 4;
    expect(t.readData(SECTOR)).toEqual(t.disk.data.subarray(lba * SECTOR, (lba + 1) * SECTOR));
  });
});

describe("ata: errors end the command, never the host", () => {
  const expectError = (t: ReturnType<typeof make>, err: number) => {
    expect(t.irq()).toBe(true);
    const st = t.r(REG_STATUS);
    expect(st & (ST_ERR | ST_DRQ | ST_BSY)).toBe(ST_ERR);
    expect(t.r(REG_ERROR)).toBe(err);
  };

  it("IDNF for sectors beyond the disk (28-bit, 48-bit, CHS sector 0)", () => {
    let t = make();
    t.cmd28(CMD.READ_SECTORS, SECTORS - 1, 2);
    expectError(t, ERR_IDNF);
    t = make();
    t.cmd48(CMD.WRITE_SECTORS_EXT, 2 ** 40, 1);
    expectError(t, ERR_IDNF);
    t = make();
    t.cmd48(CMD.READ_SECTORS_EXT, 0, 65535); // 65535 sectors > the disk
    expectError(t, ERR_IDNF);
    t = make();
    t.w(REG_NSECT, 1); t.w(REG_LBAL, 0); t.w(REG_DEVICE, OBS); t.w(REG_COMMAND, CMD.READ_SECTORS);
    expectError(t, ERR_IDNF);
  });

  it("ABRT for unknown and unsupported commands (DMA, ATAPI, NOP)", () => {
    for (const c of [0xc8 /* READ DMA */, 0xca /* WRITE DMA */, 0xa1 /* IDENTIFY PACKET */, 0xa0 /* PACKET */, CMD.NOP, 0xff]) {
      const t = make();
      t.cmd28(c, 0, 1);
      expectError(t, ERR_ABRT);
      expect(t.ata.read(REG_DATA << t.ata.regShift, 4)).toBe(0); // no data phase
    }
  });

  it("ABRT for writes to a read-only disk, which stays untouched", () => {
    const disk = patterned();
    const before = disk.data.slice();
    const t = make(disk, { readOnly: true });
    t.cmd28(CMD.WRITE_SECTORS, 10, 1);
    expectError(t, ERR_ABRT);
    t.writeData(new Uint8Array(SECTOR).fill(0xee)); // nowhere to go
    // Compared as buffers: toEqual on half a megabyte takes seconds.
    expect(Buffer.from(disk.data).equals(Buffer.from(before))).toBe(true);
    t.cmd28(CMD.READ_SECTORS, 10, 1); // reads still work
    expect(t.r(REG_STATUS) & ST_DRQ).toBe(ST_DRQ);
  });

  it("UNC with the failing sector in the task file when the backend cannot read", () => {
    const disk = patterned();
    const failing = Object.assign(Object.create(disk) as MemoryDisk, {
      read(offset: number, dst: Uint8Array) {
        if (offset >= 300 * SECTOR) throw new Error("I/O error");
        disk.read(offset, dst);
      },
    });
    const t = make(failing);
    t.cmd28(CMD.READ_SECTORS, 299, 2);
    t.r(REG_STATUS);
    t.readData(SECTOR); // sector 299 is fine, 300 fails
    expectError(t, ERR_UNC);
    expect([t.r(REG_LBAL), t.r(REG_LBAM), t.r(REG_LBAH)]).toEqual([300 & 0xff, 300 >> 8, 0]);
  });

  it("SET MULTIPLE takes powers of two up to 16; 0 turns MULTIPLE commands off (ABRT)", () => {
    const t = make();
    t.cmd28(CMD.SET_MULTIPLE, 0, 3);
    expectError(t, ERR_ABRT);
    t.cmd28(CMD.SET_MULTIPLE, 0, 32);
    expectError(t, ERR_ABRT);
    t.cmd28(CMD.SET_MULTIPLE, 0, 4);
    expect(t.r(REG_STATUS) & ST_ERR).toBe(0);
    expect(identify(t)[59]).toBe(0x100 | 4);
    t.cmd28(CMD.READ_MULTIPLE, 0, 8);
    t.r(REG_STATUS);
    t.readData(4 * SECTOR);
    expect(t.irq()).toBe(true); // the second block of 4
    t.cmd28(CMD.SET_MULTIPLE, 0, 0);
    t.r(REG_STATUS);
    t.cmd28(CMD.READ_MULTIPLE, 0, 1);
    expectError(t, ERR_ABRT);
  });

  it("a data-register access against the transfer direction aborts the command", () => {
    const t = make();
    t.cmd28(CMD.WRITE_SECTORS, 0, 1);
    t.ata.read(REG_DATA, 4);
    expectError(t, ERR_ABRT);
    const before = t.disk.data.slice(0, SECTOR);
    t.writeData(new Uint8Array(SECTOR).fill(1));
    expect(t.disk.data.subarray(0, SECTOR)).toEqual(before);
  });

  it("survives any register traffic (random reads and writes over the whole window)", () => {
    const t = make();
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8);
    for (let i = 0; i < 200_000; i++) {
      const off = rnd() % 0x1000;
      const size = ([1, 2, 4] as const)[rnd() % 3]!;
      if (rnd() & 1) t.ata.write(off, size, rnd());
      else t.ata.read(off, size);
    }
    // Still a working disk after a reset.
    t.ctl(CTL_SRST); t.ctl(0);
    t.cmd28(CMD.READ_SECTORS, 7, 1);
    t.r(REG_STATUS);
    expect(t.readData(SECTOR)).toEqual(t.disk.data.subarray(7 * SECTOR, 8 * SECTOR));
  });
});

describe("ata: control block, cache and features", () => {
  it("nIEN masks INTRQ; the pending interrupt shows when nIEN clears, a status read acknowledges it", () => {
    const t = make();
    t.ctl(DEVCTL_OBS | CTL_NIEN);
    t.cmd28(CMD.FLUSH_CACHE, 0, 0);
    expect(t.irq()).toBe(false);
    t.ctl(DEVCTL_OBS);
    expect(t.irq()).toBe(true);
    expect(t.alt() & ST_ERR).toBe(0); // alternate status leaves it pending
    expect(t.irq()).toBe(true);
    t.r(REG_STATUS);
    expect(t.irq()).toBe(false);
  });

  it("a new command drops an unacknowledged INTRQ before its data-out phase", () => {
    const t = make();
    t.cmd28(CMD.FLUSH_CACHE, 0, 0);
    expect(t.irq()).toBe(true);
    t.cmd28(CMD.WRITE_SECTORS, 0, 1);
    expect(t.irq()).toBe(false);
  });

  it("HOB reads back the high-order bytes of a 48-bit task file; a register write clears HOB", () => {
    const t = make();
    t.w(REG_NSECT, 0x12); t.w(REG_LBAL, 0x34); t.w(REG_LBAM, 0x56); t.w(REG_LBAH, 0x78);
    t.w(REG_NSECT, 0x9a); t.w(REG_LBAL, 0xbc); t.w(REG_LBAM, 0xde); t.w(REG_LBAH, 0xf0);
    t.ctl(DEVCTL_OBS | CTL_HOB);
    expect([t.r(REG_NSECT), t.r(REG_LBAL), t.r(REG_LBAM), t.r(REG_LBAH)]).toEqual([0x12, 0x34, 0x56, 0x78]);
    t.w(REG_FEATURES, 0);
    expect(t.r(REG_NSECT)).toBe(0x9a);
  });

  it("FLUSH CACHE (EXT) reaches the backend; disabling the write cache flushes and writes through", () => {
    const t = make();
    t.cmd28(CMD.FLUSH_CACHE_EXT, 0, 0);
    t.r(REG_STATUS);
    expect(t.disk.flushes).toBe(1);
    t.cmd28(CMD.SET_FEATURES, 0, 0, 0x82);
    expect(t.r(REG_STATUS) & ST_ERR).toBe(0);
    expect(t.disk.flushes).toBe(2);
    expect(identify(t)[85]! & (1 << 5)).toBe(0);
    t.cmd28(CMD.WRITE_SECTORS, 0, 1);
    t.writeData(new Uint8Array(SECTOR));
    expect(t.disk.flushes).toBe(3); // write-through: flushed before completion
    t.cmd28(CMD.SET_FEATURES, 0, 0, 0x02);
    t.r(REG_STATUS);
    expect(identify(t)[85]! & (1 << 5)).not.toBe(0);
  });

  it("SET FEATURES transfer mode: PIO modes up to 4 accepted, DMA modes and unknown subcommands aborted", () => {
    const t = make();
    for (const [mode, ok] of [[0x00, true], [0x0c, true], [0x0d, false], [0x22, false], [0x45, false]] as const) {
      t.cmd28(CMD.SET_FEATURES, 0, mode, 0x03);
      expect(t.r(REG_STATUS) & ST_ERR, `mode 0x${mode.toString(16)}`).toBe(ok ? 0 : ST_ERR);
    }
    t.cmd28(CMD.SET_FEATURES, 0, 0, 0x77);
    expect(t.r(REG_STATUS) & ST_ERR).toBe(ST_ERR);
    expect(t.r(REG_ERROR)).toBe(ERR_ABRT);
  });

  it("CHECK POWER MODE follows STANDBY / IDLE; a sleeping drive ignores commands until a reset", () => {
    const t = make();
    t.cmd28(CMD.STANDBY_IMMEDIATE, 0, 0);
    t.cmd28(CMD.CHECK_POWER_MODE, 0, 0);
    expect(t.r(REG_NSECT)).toBe(0x00);
    t.cmd28(CMD.IDLE_IMMEDIATE, 0, 0);
    t.cmd28(CMD.CHECK_POWER_MODE, 0, 0);
    expect(t.r(REG_NSECT)).toBe(0xff);
    t.cmd28(CMD.SLEEP, 0, 0);
    t.r(REG_STATUS);
    t.cmd28(CMD.IDENTIFY, 0, 0);
    expect(t.irq()).toBe(false);
    t.ctl(CTL_SRST); t.ctl(0);
    identify(t);
  });
});

describe("ata: snapshots", () => {
  it("restores a transfer in the middle of a block into a fresh device and finishes it", () => {
    const t = make();
    t.cmd48(CMD.READ_MULTIPLE_EXT, 64, 20);
    t.r(REG_STATUS);
    const first = t.readData(8 * SECTOR);
    const state = structuredClone(t.ata.save());
    const u = make(t.disk);
    u.ata.restore(state);
    const rest = new Uint8Array(12 * SECTOR);
    rest.set(u.readData(8 * SECTOR), 0);
    expect(u.irq()).toBe(true); // the second block's INTRQ
    u.r(REG_STATUS);
    rest.set(u.readData(4 * SECTOR), 8 * SECTOR);
    expect(first).toEqual(t.disk.data.subarray(64 * SECTOR, 72 * SECTOR));
    expect(rest).toEqual(t.disk.data.subarray(72 * SECTOR, 84 * SECTOR));
    expect(u.alt() & ST_DRQ).toBe(0);
  });

  it("re-drives a pending interrupt and keeps settings", () => {
    const t = make();
    t.cmd28(CMD.SET_MULTIPLE, 0, 8);
    const u = make(t.disk);
    u.ata.restore(t.ata.save());
    expect(u.irq()).toBe(true);
    expect(identify(u)[59]).toBe(0x100 | 8);
  });

  it("rejects malformed or foreign states with a clear error", () => {
    const t = make();
    const good = t.ata.save();
    const bad = (patch: Record<string, unknown>) => () => make(t.disk).ata.restore({ ...good, ...patch });
    expect(bad({ kind: "uart" })).toThrow(/ata0: not a state of kind ata/);
    expect(bad({ version: 2 })).toThrow(/ata0: ata state version 2 is not 1/);
    expect(bad({ sectors: 5 })).toThrow(/state is for a disk of 5 sectors/);
    expect(bad({ taskfile: [1, 2, 3] })).toThrow(/state.taskfile must be an array of 14..14 items/);
    expect(bad({ taskfile: [...good.taskfile as number[]].fill(256, 3, 4) })).toThrow(/state.taskfile\[3\] must be an integer in 0..255, got 256/);
    expect(bad({ multiple: 3 })).toThrow(/state.multiple must be a power of two/);
    expect(bad({ xfer: 1, op: 0, buf: bytesState(new Uint8Array(0)) })).toThrow(/impossible transfer/);
    expect(bad({ xfer: 2, op: 3, buf: bytesState(new Uint8Array(SECTOR)), lba: SECTORS - 1, left: 1 })).toThrow(/left must be|impossible transfer/);
    expect(bad({ buf: bytesState(new Uint8Array(100)) })).toThrow(/state.buf must be whole sectors/);
    expect(bad({ buf: "not base64!" })).toThrow(/state.buf must be 0..8192 bytes in base64/);
    expect(bad({ power: 7 })).toThrow(/power must be/);
  });
});
