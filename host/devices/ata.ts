/**
 * An ATA (PATA) disk behind a register-programmed controller on MMIO, in PIO mode: the
 * "ata-generic" device Linux drives with pata_of_platform (libata's SFF path).
 *
 * The window holds the command block (data, error/features, sector count, LBA low/mid/high,
 * device, status/command; register i at offset i << regShift) and, at ATA_CTL_OFFSET, the
 * control block (alternate status on read, device control on write). One drive is present,
 * device 0; with device 1 selected, status reads 0 and commands are ignored, as on a cable
 * with no slave (this is how libata finds there is none).
 *
 * Commands complete at once (BSY is only seen during a software reset). Data moves through the
 * 16-bit data register (a 32-bit access moves two words), as the ATA PIO protocols say: each
 * data-in block raises INTRQ when it is ready; the first data-out block is asked for without an
 * interrupt and every block taken raises INTRQ (for the next block, or for the completion). Every guest value is checked: a bad address or count, an unknown command
 * or a read-only disk ends the command with ERR and ABRT/IDNF in the error register.
 */
import type { DiskBackend } from "./backends";
import type { DeviceState, DeviceType, IrqLine, MmioDevice } from "./device";
import { regCells, setInterrupts } from "./devicetree";
import { StateReader, bytesState } from "./state";

export const SECTOR = 512;

/** Command block register numbers (byte offset = number << regShift). */
export const REG_DATA = 0;
export const REG_ERROR = 1; // read; REG_FEATURES on write
export const REG_FEATURES = 1;
export const REG_NSECT = 2;
export const REG_LBAL = 3;
export const REG_LBAM = 4;
export const REG_LBAH = 5;
export const REG_DEVICE = 6;
export const REG_STATUS = 7; // read; REG_COMMAND on write
export const REG_COMMAND = 7;

/** Default register spacing (register i at byte i << 2: 32-bit aligned, as on most SoCs). */
export const ATA_REG_SHIFT = 2;
/** Offset of the control block (alternate status / device control) in the window. */
export const ATA_CTL_OFFSET = 0x100;
/** The device's MMIO window: one page holding both blocks. */
export const ATA_WINDOW_SIZE = 0x1000;

// Status register.
export const ST_BSY = 0x80;
export const ST_DRDY = 0x40;
export const ST_DF = 0x20;
export const ST_DSC = 0x10; // "device seek complete": set by every drive once ready
export const ST_DRQ = 0x08;
export const ST_ERR = 0x01;
// Error register.
export const ERR_UNC = 0x40;
export const ERR_IDNF = 0x10;
export const ERR_ABRT = 0x04;
/** Error register after a reset or EXECUTE DEVICE DIAGNOSTIC: device 0 passed, no device 1. */
export const DIAG_PASSED = 0x01;
// Device control register.
export const CTL_NIEN = 0x02;
export const CTL_SRST = 0x04;
export const CTL_HOB = 0x80;
// Device register.
export const DEV_LBA = 0x40;
export const DEV_DEV1 = 0x10;

/** Commands (ATA/ATAPI-6 and -7 numbering). */
export const CMD = {
  NOP: 0x00,
  READ_SECTORS: 0x20,
  READ_SECTORS_NORETRY: 0x21,
  READ_SECTORS_EXT: 0x24,
  READ_MULTIPLE_EXT: 0x29,
  WRITE_SECTORS: 0x30,
  WRITE_SECTORS_NORETRY: 0x31,
  WRITE_SECTORS_EXT: 0x34,
  WRITE_MULTIPLE_EXT: 0x39,
  READ_VERIFY: 0x40,
  READ_VERIFY_NORETRY: 0x41,
  READ_VERIFY_EXT: 0x42,
  EXECUTE_DIAGNOSTIC: 0x90,
  INIT_DEVICE_PARAMS: 0x91,
  READ_MULTIPLE: 0xc4,
  WRITE_MULTIPLE: 0xc5,
  SET_MULTIPLE: 0xc6,
  STANDBY_IMMEDIATE: 0xe0,
  IDLE_IMMEDIATE: 0xe1,
  STANDBY: 0xe2,
  IDLE: 0xe3,
  CHECK_POWER_MODE: 0xe5,
  SLEEP: 0xe6,
  FLUSH_CACHE: 0xe7,
  FLUSH_CACHE_EXT: 0xea,
  IDENTIFY: 0xec,
  SET_FEATURES: 0xef,
} as const;

// SET FEATURES subcommands (features register).
export const SF_ENABLE_WRITE_CACHE = 0x02;
export const SF_SET_TRANSFER_MODE = 0x03;
export const SF_DISABLE_READ_LOOKAHEAD = 0x55;
export const SF_DISABLE_WRITE_CACHE = 0x82;
export const SF_ENABLE_READ_LOOKAHEAD = 0xaa;

/** Most sectors per DRQ block of READ/WRITE MULTIPLE; also the power-on setting. */
export const MAX_MULTIPLE = 16;
/** Highest PIO mode (with IORDY) the drive reports. */
export const MAX_PIO_MODE = 4;
/** The largest address a 28-bit command can name, plus one. */
const LBA28_LIMIT = 0x1000_0000;
/** Default CHS translation: 16 heads, 63 sectors per track, at most 16383 cylinders. */
const DEFAULT_HEADS = 16;
const DEFAULT_SPT = 63;
const MAX_CYLINDERS = 16383;
const VERSION = 1;

/**
 * A disk's controller as the board places it: for pata_of_platform, the command block (with its
 * register spacing) and then the control block.
 */
export const ATA: DeviceType<{ regShift: number }> = {
  kind: "ata",
  dtName: "ata",
  size: ATA_WINDOW_SIZE,
  irqs: 1,
  describe(node, at, { regShift }) {
    node
      .setString("compatible", "ata-generic")
      .setU32("reg", ...regCells(at.base, 8 << regShift), ...regCells(at.base + ATA_CTL_OFFSET, 4))
      .setU32("reg-shift", regShift)
      .setU32("pio-mode", MAX_PIO_MODE);
    setInterrupts(node, at);
  },
};

export interface AtaDiskOptions {
  /** Serial number for IDENTIFY (ASCII, at most 20 characters). */
  serial?: string;
  /** Model for IDENTIFY (ASCII, at most 40 characters). */
  model?: string;
  /** Present the disk read-only even if the backend is writable: writes end with ABRT. */
  readOnly?: boolean;
  /** Register spacing: register i is at byte i << regShift (the DT's reg-shift; default 2). */
  regShift?: number;
}

const enum Xfer {
  None = 0,
  In = 1,
  Out = 2,
}

/** What a data transfer is for: where its blocks come from or go. */
const enum Op {
  None = 0,
  Identify = 1,
  Read = 2,
  Write = 3,
}

const enum Power {
  Active = 0,
  Standby = 1,
  Sleep = 2,
}

export class AtaDisk implements MmioDevice {
  readonly size = ATA_WINDOW_SIZE;
  readonly sectors: number;
  readonly readOnly: boolean;
  readonly regShift: number;

  // Task file. Each of features, count and LBA keeps the value written before the last one:
  // the high-order byte of 48-bit commands, read back with HOB.
  private features = 0;
  private featuresPrev = 0;
  private nsect = 0;
  private nsectPrev = 0;
  private lbal = 0;
  private lbalPrev = 0;
  private lbam = 0;
  private lbamPrev = 0;
  private lbah = 0;
  private lbahPrev = 0;
  private device = 0;
  private status = 0;
  private error = 0;
  private control = 0;
  /** INTRQ pending: set at the points the protocols name, cleared by reading Status. */
  private intrq = false;
  private irqLevel = false;

  // Settings the host can change.
  private multiple = MAX_MULTIPLE; // 0 = READ/WRITE MULTIPLE disabled
  private writeCache = true;
  private readLookahead = true;
  private heads = DEFAULT_HEADS;
  private spt = DEFAULT_SPT;
  private power = Power.Active;

  // The data transfer in progress.
  private xfer = Xfer.None;
  private op = Op.None;
  private readonly buf = new Uint8Array(MAX_MULTIPLE * SECTOR);
  private pos = 0;
  private len = 0;
  /** Next sector to read (In) or where the buffered block goes (Out). */
  private lba = 0;
  /** Sectors of the command not yet buffered. */
  private left = 0;
  /** Sectors per DRQ block. */
  private perBlock = 1;

  private readonly serial: string;
  private readonly model: string;

  constructor(
    readonly name: string,
    readonly backend: DiskBackend,
    private readonly irq: IrqLine,
    opts: AtaDiskOptions = {},
  ) {
    if (backend.size % SECTOR !== 0) throw new Error(`${name}: disk size ${backend.size} is not a multiple of 512`);
    if (backend.size === 0) throw new Error(`${name}: the disk is empty`);
    const shift = opts.regShift ?? ATA_REG_SHIFT;
    if (!Number.isInteger(shift) || shift < 0 || shift > 4) throw new Error(`${name}: regShift ${shift} must be 0..4`);
    this.regShift = shift;
    this.sectors = backend.size / SECTOR;
    this.readOnly = backend.readOnly || (opts.readOnly ?? false);
    this.serial = checkAscii(name, "serial", opts.serial ?? "WV-ATA-0", 20);
    this.model = checkAscii(name, "model", opts.model ?? "WASMVISOR HARDDISK", 40);
    this.powerOn();
  }

  /** Hardware reset: settings back to their power-on values, then the reset signature. */
  reset(): void {
    this.powerOn();
  }

  private powerOn(): void {
    this.multiple = MAX_MULTIPLE;
    this.writeCache = true;
    this.readLookahead = true;
    this.heads = DEFAULT_HEADS;
    this.spt = DEFAULT_SPT;
    this.control = 0;
    this.completeReset();
  }

  /** The end of any reset: device 0 selected, its signature in the task file, ready. */
  private completeReset(): void {
    this.stopTransfer();
    this.features = this.featuresPrev = 0;
    this.nsect = this.nsectPrev = 1;
    this.lbal = this.lbalPrev = 1;
    this.lbam = this.lbamPrev = 0;
    this.lbah = this.lbahPrev = 0;
    this.device = 0;
    this.error = DIAG_PASSED;
    this.status = ST_DRDY | ST_DSC;
    this.power = Power.Active;
    this.intrq = false;
    this.updateIrq();
  }

  // ---- register access ----

  read(offset: number, size: 1 | 2 | 4): number {
    if (offset >= ATA_CTL_OFFSET) {
      // Alternate status: the status without clearing INTRQ.
      return offset === ATA_CTL_OFFSET ? this.statusValue() : 0;
    }
    const reg = offset >> this.regShift;
    if (reg > REG_STATUS || offset !== reg << this.regShift) return 0;
    switch (reg) {
      case REG_DATA:
        return this.readData(size);
      case REG_ERROR:
        return this.dev1() ? 0 : this.error;
      case REG_NSECT:
        return this.hob() ? this.nsectPrev : this.nsect;
      case REG_LBAL:
        return this.hob() ? this.lbalPrev : this.lbal;
      case REG_LBAM:
        return this.hob() ? this.lbamPrev : this.lbam;
      case REG_LBAH:
        return this.hob() ? this.lbahPrev : this.lbah;
      case REG_DEVICE:
        return this.device;
      default: {
        const st = this.statusValue();
        if (!this.dev1() && this.intrq) {
          this.intrq = false;
          this.updateIrq();
        }
        return st;
      }
    }
  }

  write(offset: number, size: 1 | 2 | 4, value: number): void {
    if (offset >= ATA_CTL_OFFSET) {
      if (offset === ATA_CTL_OFFSET) this.writeControl(value & 0xff);
      return;
    }
    const reg = offset >> this.regShift;
    if (reg > REG_COMMAND || offset !== reg << this.regShift) return;
    if (reg === REG_DATA) {
      this.writeData(size, value);
      return;
    }
    if (this.status & ST_BSY) return; // in reset: the task file is not writable
    const v = value & 0xff;
    this.control &= ~CTL_HOB; // any command block write clears HOB
    switch (reg) {
      case REG_FEATURES:
        this.featuresPrev = this.features;
        this.features = v;
        break;
      case REG_NSECT:
        this.nsectPrev = this.nsect;
        this.nsect = v;
        break;
      case REG_LBAL:
        this.lbalPrev = this.lbal;
        this.lbal = v;
        break;
      case REG_LBAM:
        this.lbamPrev = this.lbam;
        this.lbam = v;
        break;
      case REG_LBAH:
        this.lbahPrev = this.lbah;
        this.lbah = v;
        break;
      case REG_DEVICE:
        this.device = v;
        this.updateIrq(); // only the selected device drives INTRQ
        break;
      default:
        this.command(v);
        break;
    }
  }

  private dev1(): boolean {
    return (this.device & DEV_DEV1) !== 0;
  }

  private hob(): boolean {
    return (this.control & CTL_HOB) !== 0;
  }

  private statusValue(): number {
    if (this.status & ST_BSY) return ST_BSY;
    return this.dev1() ? 0 : this.status;
  }

  private writeControl(v: number): void {
    const was = this.control;
    this.control = v;
    if (v & CTL_SRST && !(was & CTL_SRST)) {
      // Software reset asserted: abandon everything and stay busy until it is released.
      this.stopTransfer();
      this.status = ST_BSY;
      this.intrq = false;
    } else if (!(v & CTL_SRST) && was & CTL_SRST) {
      this.completeReset();
    }
    this.updateIrq();
  }

  // Driven even when it stays high: the PLIC takes a line driven high again as a new request
  // (as QEMU's).
  private updateIrq(): void {
    const level = this.intrq && !(this.control & CTL_NIEN) && !this.dev1();
    if (level || this.irqLevel) this.irq(level);
    this.irqLevel = level;
  }

  private raise(): void {
    this.intrq = true;
    this.updateIrq();
  }

  // ---- data register ----

  private readData(size: 1 | 2 | 4): number {
    if (this.xfer !== Xfer.In) {
      // Outside a data-in transfer the register holds nothing. Reading it during a data-out
      // transfer is a protocol violation that ends the command; otherwise it reads as zero.
      if (this.xfer === Xfer.Out) this.fail(ERR_ABRT);
      return 0;
    }
    const lo = this.nextWordIn();
    if (size !== 4) return size === 1 ? lo & 0xff : lo;
    const hi = this.xfer === Xfer.In ? this.nextWordIn() : 0;
    return (lo | (hi << 16)) >>> 0;
  }

  private writeData(size: 1 | 2 | 4, value: number): void {
    if (this.xfer !== Xfer.Out) {
      if (this.xfer === Xfer.In) this.fail(ERR_ABRT); // wrong direction: end the command
      return; // no transfer: the write goes nowhere
    }
    this.nextWordOut(value & 0xffff);
    if (size === 4 && this.xfer === Xfer.Out) this.nextWordOut(value >>> 16);
  }

  private nextWordIn(): number {
    const w = this.buf[this.pos]! | (this.buf[this.pos + 1]! << 8);
    this.pos += 2;
    if (this.pos >= this.len) this.blockIn();
    return w;
  }

  private nextWordOut(w: number): void {
    this.buf[this.pos] = w & 0xff;
    this.buf[this.pos + 1] = w >>> 8;
    this.pos += 2;
    if (this.pos >= this.len) this.blockOut();
  }

  /** The host has read a whole block: on to the next, or done (no interrupt after the last). */
  private blockIn(): void {
    if (this.op === Op.Read && this.left > 0) {
      this.loadBlock();
      return;
    }
    this.stopTransfer();
    this.status = ST_DRDY | ST_DSC;
  }

  /** The host has written a whole block: store it, then ask for the next or finish. */
  private blockOut(): void {
    const n = this.len / SECTOR;
    try {
      this.backend.write(this.lba * SECTOR, this.buf.subarray(0, this.len));
    } catch {
      this.failAt(this.lba, ERR_ABRT);
      return;
    }
    this.lba += n;
    if (this.left > 0) {
      this.startBlock();
      this.raise();
      return;
    }
    if (!this.writeCache) {
      // Write-through: the data must be on stable storage before the command completes.
      try {
        this.backend.flush();
      } catch {
        this.failAt(this.lba - 1, ERR_ABRT);
        return;
      }
    }
    this.stopTransfer();
    this.status = ST_DRDY | ST_DSC;
    this.raise();
  }

  /** Read the next block from the disk and offer it (DRQ, INTRQ), or fail on an I/O error. */
  private loadBlock(): void {
    const n = Math.min(this.perBlock, this.left);
    const bytes = this.buf.subarray(0, n * SECTOR);
    try {
      this.backend.read(this.lba * SECTOR, bytes);
    } catch {
      this.failAt(this.lba, ERR_UNC);
      return;
    }
    this.lba += n;
    this.left -= n;
    this.pos = 0;
    this.len = bytes.length;
    this.xfer = Xfer.In;
    this.status = ST_DRDY | ST_DSC | ST_DRQ;
    this.raise();
  }

  /** Make room for the next data-out block (DRQ); the caller decides about INTRQ. */
  private startBlock(): void {
    const n = Math.min(this.perBlock, this.left);
    this.left -= n;
    this.pos = 0;
    this.len = n * SECTOR;
    this.xfer = Xfer.Out;
    this.status = ST_DRDY | ST_DSC | ST_DRQ;
  }

  private stopTransfer(): void {
    this.xfer = Xfer.None;
    this.op = Op.None;
    this.pos = this.len = this.left = 0;
  }

  // ---- commands ----

  private command(cmd: number): void {
    // Commands for the absent device 1 are not ours; a sleeping drive answers only a reset.
    if (this.dev1() || this.power === Power.Sleep) return;
    this.intrq = false; // writing the command register clears a pending interrupt
    this.updateIrq(); // now: a data-out command raises nothing until its first block is taken
    this.stopTransfer();
    this.error = 0;
    switch (cmd) {
      case CMD.IDENTIFY:
        this.identify();
        return;
      case CMD.READ_SECTORS:
      case CMD.READ_SECTORS_NORETRY:
        return this.readWrite(Op.Read, false, 1);
      case CMD.READ_SECTORS_EXT:
        return this.readWrite(Op.Read, true, 1);
      case CMD.READ_MULTIPLE:
        return this.readWrite(Op.Read, false, this.multiple);
      case CMD.READ_MULTIPLE_EXT:
        return this.readWrite(Op.Read, true, this.multiple);
      case CMD.WRITE_SECTORS:
      case CMD.WRITE_SECTORS_NORETRY:
        return this.readWrite(Op.Write, false, 1);
      case CMD.WRITE_SECTORS_EXT:
        return this.readWrite(Op.Write, true, 1);
      case CMD.WRITE_MULTIPLE:
        return this.readWrite(Op.Write, false, this.multiple);
      case CMD.WRITE_MULTIPLE_EXT:
        return this.readWrite(Op.Write, true, this.multiple);
      case CMD.READ_VERIFY:
      case CMD.READ_VERIFY_NORETRY:
      case CMD.READ_VERIFY_EXT: {
        const r = this.range(cmd === CMD.READ_VERIFY_EXT);
        if (r) this.done();
        return;
      }
      case CMD.FLUSH_CACHE:
      case CMD.FLUSH_CACHE_EXT:
        return this.flush();
      case CMD.SET_FEATURES:
        return this.setFeatures();
      case CMD.SET_MULTIPLE:
        return this.setMultiple();
      case CMD.INIT_DEVICE_PARAMS:
        return this.initDeviceParams();
      case CMD.EXECUTE_DIAGNOSTIC:
        this.completeReset();
        this.raise();
        return;
      case CMD.STANDBY_IMMEDIATE:
      case CMD.STANDBY:
        this.power = Power.Standby;
        return this.done();
      case CMD.IDLE_IMMEDIATE:
      case CMD.IDLE:
        this.power = Power.Active;
        return this.done();
      case CMD.SLEEP:
        this.done();
        this.power = Power.Sleep;
        return;
      case CMD.CHECK_POWER_MODE:
        this.nsect = this.power === Power.Standby ? 0x00 : 0xff;
        return this.done();
      default:
        // NOP, IDENTIFY PACKET DEVICE (we are not ATAPI), DMA, and everything not implemented.
        return this.fail(ERR_ABRT);
    }
  }

  /** Successful end of a command without data. */
  private done(): void {
    this.status = ST_DRDY | ST_DSC;
    this.raise();
  }

  /** End the current command with an error. */
  private fail(err: number): void {
    this.stopTransfer();
    this.error = err;
    this.status = ST_DRDY | ST_DSC | ST_ERR;
    this.raise();
  }

  /** End with an error at sector `lba`, which goes into the task file for the host to see. */
  private failAt(lba: number, err: number): void {
    this.nsectPrev = this.nsect = 0;
    this.lbal = lba & 0xff;
    this.lbam = (lba >>> 8) & 0xff;
    this.lbah = (lba >>> 16) & 0xff;
    this.lbalPrev = Math.floor(lba / 2 ** 24) & 0xff;
    this.lbamPrev = Math.floor(lba / 2 ** 32) & 0xff;
    this.lbahPrev = Math.floor(lba / 2 ** 40) & 0xff;
    this.device = (this.device & ~0x0f) | ((lba >>> 24) & 0x0f);
    this.fail(err);
  }

  /**
   * The sectors a read/write/verify command names, checked against the disk: null (and the
   * command failed with IDNF) if any lies outside it or the CHS address is invalid.
   */
  private range(lba48: boolean): { lba: number; count: number } | null {
    let lba: number;
    let count: number;
    if (lba48) {
      lba = ((this.lbahPrev * 256 + this.lbamPrev) * 256 + this.lbalPrev) * 2 ** 24 +
        ((this.lbah << 16) | (this.lbam << 8) | this.lbal);
      count = ((this.nsectPrev << 8) | this.nsect) || 65536;
    } else {
      count = this.nsect || 256;
      if (this.device & DEV_LBA) {
        lba = ((this.device & 0x0f) << 24) | (this.lbah << 16) | (this.lbam << 8) | this.lbal;
      } else {
        const cyl = (this.lbah << 8) | this.lbam;
        const head = this.device & 0x0f;
        const sector = this.lbal;
        if (sector === 0 || sector > this.spt || head >= this.heads || cyl >= this.cylinders()) {
          this.fail(ERR_IDNF);
          return null;
        }
        lba = (cyl * this.heads + head) * this.spt + sector - 1;
      }
    }
    if (lba + count > this.sectors) {
      this.fail(ERR_IDNF);
      return null;
    }
    this.power = Power.Active;
    return { lba, count };
  }

  private readWrite(op: Op.Read | Op.Write, lba48: boolean, perBlock: number): void {
    if (perBlock === 0) return this.fail(ERR_ABRT); // READ/WRITE MULTIPLE before SET MULTIPLE
    if (op === Op.Write && this.readOnly) return this.fail(ERR_ABRT);
    const r = this.range(lba48);
    if (!r) return;
    this.op = op;
    this.lba = r.lba;
    this.left = r.count;
    this.perBlock = perBlock;
    if (op === Op.Read) this.loadBlock();
    else this.startBlock(); // the first data-out block is requested without an interrupt
  }

  private flush(): void {
    if (!this.readOnly) {
      try {
        this.backend.flush();
      } catch {
        return this.fail(ERR_ABRT);
      }
    }
    this.done();
  }

  private setFeatures(): void {
    switch (this.features) {
      case SF_ENABLE_WRITE_CACHE:
        this.writeCache = true;
        return this.done();
      case SF_DISABLE_WRITE_CACHE:
        // Dropping the cache makes what it held durable.
        if (this.writeCache && !this.readOnly) {
          try {
            this.backend.flush();
          } catch {
            return this.fail(ERR_ABRT);
          }
        }
        this.writeCache = false;
        return this.done();
      case SF_ENABLE_READ_LOOKAHEAD:
        this.readLookahead = true;
        return this.done();
      case SF_DISABLE_READ_LOOKAHEAD:
        this.readLookahead = false;
        return this.done();
      case SF_SET_TRANSFER_MODE: {
        // PIO default (0x00, 0x01) or PIO flow-control mode 0..MAX_PIO_MODE; there is no DMA.
        const mode = this.nsect;
        if (mode === 0x00 || mode === 0x01 || (mode >= 0x08 && mode <= 0x08 + MAX_PIO_MODE)) return this.done();
        return this.fail(ERR_ABRT);
      }
      default:
        return this.fail(ERR_ABRT);
    }
  }

  private setMultiple(): void {
    const n = this.nsect;
    // 0 turns READ/WRITE MULTIPLE off; otherwise a power of two up to the maximum.
    if (n > MAX_MULTIPLE || (n & (n - 1)) !== 0) return this.fail(ERR_ABRT);
    this.multiple = n;
    this.done();
  }

  private initDeviceParams(): void {
    const spt = this.nsect;
    if (spt === 0) return this.fail(ERR_ABRT);
    this.spt = spt;
    this.heads = (this.device & 0x0f) + 1;
    this.done();
  }

  private cylinders(): number {
    return Math.min(Math.floor(Math.min(this.sectors, LBA28_LIMIT - 1) / (this.heads * this.spt)), 65535);
  }

  private identify(): void {
    this.buf.set(this.identifyData());
    this.op = Op.Identify;
    this.pos = 0;
    this.len = SECTOR;
    this.xfer = Xfer.In;
    this.status = ST_DRDY | ST_DSC | ST_DRQ;
    this.raise();
  }

  /** The 256 words IDENTIFY DEVICE returns, for the current settings (ATA/ATAPI-6 layout). */
  identifyData(): Uint8Array {
    const w = new Uint16Array(256);
    const lba28 = Math.min(this.sectors, LBA28_LIMIT - 1);
    const defCyl = Math.min(Math.floor(lba28 / (DEFAULT_HEADS * DEFAULT_SPT)), MAX_CYLINDERS);
    w[0] = 0x0040; // ATA device, fixed (not removable)
    w[1] = defCyl;
    w[3] = DEFAULT_HEADS;
    w[6] = DEFAULT_SPT;
    putAtaString(w, 10, 10, this.serial);
    putAtaString(w, 23, 4, "0.1.0");
    putAtaString(w, 27, 20, this.model);
    w[47] = 0x8000 | MAX_MULTIPLE;
    w[49] = 0x0a00; // LBA, IORDY supported; no DMA
    w[50] = 0x4000;
    w[51] = 0x0200; // PIO mode 2 (obsolete word, kept for old hosts)
    w[53] = 0x0003; // words 54-58 and 64-70 are valid
    const cyl = this.cylinders();
    w[54] = cyl;
    w[55] = this.heads;
    w[56] = this.spt;
    const chsCapacity = cyl * this.heads * this.spt;
    w[57] = chsCapacity & 0xffff;
    w[58] = chsCapacity >>> 16;
    w[59] = this.multiple ? 0x0100 | this.multiple : 0;
    w[60] = lba28 & 0xffff;
    w[61] = lba28 >>> 16;
    w[64] = 0x0003; // PIO 3 and 4 (MAX_PIO_MODE)
    w[65] = w[66] = w[67] = w[68] = 120; // cycle times, ns (PIO 4)
    w[80] = 0x007e; // ATA-1..ATA-6
    // Command sets: power management, write cache, read look-ahead; mandatory FLUSH CACHE,
    // 48-bit addressing, FLUSH CACHE EXT (bit 14 set, bit 15 clear: the words are valid).
    w[82] = 0x0008 | 0x0020 | 0x0040;
    w[83] = 0x4000 | 0x2000 | 0x1000 | 0x0400;
    w[84] = 0x4000;
    w[85] = 0x0008 | (this.writeCache ? 0x0020 : 0) | (this.readLookahead ? 0x0040 : 0);
    w[86] = 0x2000 | 0x1000 | 0x0400;
    w[87] = 0x4000;
    // Hardware reset result: device 0, number set by jumper, passed diagnostics. Non-zero, so
    // Linux does not take the drive for a SATA one (ata_id_is_sata).
    w[93] = 0x4000 | 0x0008 | 0x0002 | 0x0001;
    const s = this.sectors;
    w[100] = s % 0x10000;
    w[101] = Math.floor(s / 0x10000) % 0x10000;
    w[102] = Math.floor(s / 0x1_0000_0000) % 0x10000;
    w[103] = 0;
    w[217] = 0x0001; // non-rotating medium
    const bytes = new Uint8Array(SECTOR);
    for (let i = 0; i < 255; i++) {
      bytes[2 * i] = w[i]! & 0xff;
      bytes[2 * i + 1] = w[i]! >>> 8;
    }
    // Integrity word: signature A5h, then a checksum making all 512 bytes sum to 0 mod 256.
    bytes[510] = 0xa5;
    let sum = 0;
    for (let i = 0; i < 511; i++) sum += bytes[i]!;
    bytes[511] = -sum & 0xff;
    return bytes;
  }

  // ---- snapshots ----

  save(): DeviceState {
    return {
      kind: ATA.kind,
      version: VERSION,
      sectors: this.sectors,
      taskfile: [
        this.features, this.featuresPrev, this.nsect, this.nsectPrev, this.lbal, this.lbalPrev,
        this.lbam, this.lbamPrev, this.lbah, this.lbahPrev, this.device, this.status, this.error, this.control,
      ],
      intrq: this.intrq,
      multiple: this.multiple,
      writeCache: this.writeCache,
      readLookahead: this.readLookahead,
      heads: this.heads,
      spt: this.spt,
      power: this.power,
      xfer: this.xfer,
      op: this.op,
      buf: bytesState(this.buf.subarray(0, this.len)),
      pos: this.pos,
      lba: this.lba,
      left: this.left,
      perBlock: this.perBlock,
    };
  }

  restore(state: unknown): void {
    const who = this.name;
    const s = StateReader.open(state, who, ATA.kind, VERSION);
    const sectors = s.int("sectors", 0, Number.MAX_SAFE_INTEGER);
    if (sectors !== this.sectors) throw new Error(`${who}: state is for a disk of ${sectors} sectors, this one has ${this.sectors}`);
    const registers = s.list("taskfile", 14, 14);
    const taskfile = registers.map((i) => registers.int(i, 0, 0xff));
    const buf = s.bytes("buf", 0, this.buf.length);
    if (buf.length % SECTOR !== 0) s.reject("buf", "whole sectors");
    const multiple = s.int("multiple", 0, MAX_MULTIPLE);
    if ((multiple & (multiple - 1)) !== 0) s.reject("multiple", "a power of two");
    const xfer = s.int("xfer", Xfer.None, Xfer.Out) as Xfer;
    const op = s.int("op", Op.None, Op.Write) as Op;
    const pos = s.int("pos", 0, buf.length);
    const lba = s.int("lba", 0, this.sectors);
    const left = s.int("left", 0, this.sectors - lba);
    const perBlock = s.int("perBlock", 1, MAX_MULTIPLE);
    const intrq = s.bool("intrq");
    const writeCache = s.bool("writeCache");
    const readLookahead = s.bool("readLookahead");
    const heads = s.int("heads", 1, 16);
    const spt = s.int("spt", 1, 255);
    const power = s.int("power", Power.Active, Power.Sleep) as Power;
    // A transfer needs a block to move and must agree with its command.
    const consistent = xfer === Xfer.None
      ? op === Op.None && buf.length === 0
      : pos % 2 === 0 && pos < buf.length && (xfer === Xfer.Out ? op === Op.Write : op === Op.Read || op === Op.Identify) &&
        (op !== Op.Write || lba + buf.length / SECTOR + left <= this.sectors);
    if (!consistent) throw new Error(`${who}: state describes an impossible transfer`);
    [this.features, this.featuresPrev, this.nsect, this.nsectPrev, this.lbal, this.lbalPrev,
      this.lbam, this.lbamPrev, this.lbah, this.lbahPrev, this.device, this.status, this.error, this.control] = taskfile as number[];
    this.intrq = intrq;
    this.writeCache = writeCache;
    this.readLookahead = readLookahead;
    this.heads = heads;
    this.spt = spt;
    this.power = power;
    this.multiple = multiple;
    this.xfer = xfer;
    this.op = op;
    this.buf.fill(0);
    this.buf.set(buf);
    this.len = buf.length;
    this.pos = pos;
    this.lba = lba;
    this.left = left;
    this.perBlock = perBlock;
    this.irqLevel = this.intrq && !(this.control & CTL_NIEN) && !this.dev1();
    this.irq(this.irqLevel); // re-drive: the controller may have been restored separately
  }
}

/** ATA strings: two characters per word, the first in the high byte, padded with spaces. */
function putAtaString(w: Uint16Array, first: number, words: number, text: string): void {
  const s = text.padEnd(words * 2, " ");
  for (let i = 0; i < words; i++) w[first + i] = (s.charCodeAt(2 * i) << 8) | s.charCodeAt(2 * i + 1);
}

function checkAscii(name: string, what: string, text: string, max: number): string {
  if (text.length > max || !/^[\x20-\x7e]*$/.test(text)) {
    throw new Error(`${name}: ${what} ${JSON.stringify(text)} must be at most ${max} printable ASCII characters`);
  }
  return text;
}
