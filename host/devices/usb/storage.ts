/**
 * usb-storage: a high-speed mass-storage device in the Bulk-Only Transport (USB MSC BOT 1.0)
 * with one SCSI direct-access LUN over a disk image (512-byte blocks). The host sends a
 * command block wrapper (CBW) on bulk OUT, moves the data phase on bulk IN or OUT, and reads
 * the command status wrapper (CSW) on bulk IN.
 *
 * The SCSI commands are those Linux's sd and usb-storage drivers send (SPC-3 / SBC-3): TEST UNIT
 * READY, REQUEST SENSE, INQUIRY, READ CAPACITY (10, 16), READ and WRITE (6, 10, 16), MODE SENSE
 * (6, 10), SYNCHRONIZE CACHE, PREVENT ALLOW MEDIUM REMOVAL, START STOP UNIT, VERIFY. Anything
 * else fails with ILLEGAL REQUEST sense. Every CBW field is checked: a malformed CBW stalls both
 * endpoints until the host's reset recovery (BOT 6.6.1); a command whose data phase disagrees
 * with the host's ends with a phase error (BOT 6.7).
 */
import type { DiskBackend } from "../backends";
import { StateReader, bytesState, type StateFields } from "../state";
import { EP_BULK, STALL, TO_INTERFACE, UsbDevice, type InResult, type OutResult, type Setup } from "./usb";

export const BLOCK = 512;
const CBW_SIGNATURE = 0x43425355;
const CSW_SIGNATURE = 0x53425355;
const CBW_LENGTH = 31;
const CSW_LENGTH = 13;
const BOT_RESET = 0xff;
const GET_MAX_LUN = 0xfe;

const enum Phase {
  Command = 0,
  DataIn = 1,
  DataOut = 2,
  Status = 3,
  /** A malformed CBW: both endpoints stall until Bulk-Only Mass Storage Reset. */
  Stalled = 4,
}

// CSW status.
const GOOD = 0;
const FAILED = 1;
const PHASE_ERROR = 2;

// Sense keys and additional sense codes.
const NO_SENSE = 0x0;
const MEDIUM_ERROR = 0x3;
const ILLEGAL_REQUEST = 0x5;
const DATA_PROTECT = 0x7;
const ASC_INVALID_OPCODE = 0x20;
const ASC_LBA_OUT_OF_RANGE = 0x21;
const ASC_INVALID_FIELD = 0x24;
const ASC_WRITE_PROTECTED = 0x27;
const ASC_READ_ERROR = 0x11;
const ASC_WRITE_ERROR = 0x0c;

/** What a command moves in its data phase: bytes it made, or a range of the disk. */
type Data = { kind: "none" } | { kind: "bytes"; bytes: Uint8Array } | { kind: "read" | "write"; offset: number; length: number };

export class UsbStorage extends UsbDevice {
  readonly kind = "usb-storage";
  readonly speed = "high" as const;
  readonly blocks: number;
  readonly readOnly: boolean;

  private phase = Phase.Command;
  private tag = 0;
  /** Bytes the host said the data phase has (dCBWDataTransferLength), and how many moved. */
  private expected = 0;
  private moved = 0;
  private status = GOOD;
  /** The data phase's source or destination. */
  private bytes: Uint8Array = new Uint8Array(0);
  private diskOffset = 0;
  /** Bytes of the disk range still to move (at most expected - moved). */
  private diskLeft = 0;
  /** Written bytes short of a whole block, kept until the block is complete. */
  private partial: Uint8Array = new Uint8Array(0);
  private sense = { key: NO_SENSE, asc: 0 };

  constructor(name: string, readonly backend: DiskBackend, opts: { readOnly?: boolean; serial?: string } = {}) {
    super(name, {
      vendor: 0x46f4, product: 0x0001, release: 0x0100,
      manufacturer: "wasmvisor", productName: "wasmvisor USB disk", serial: opts.serial ?? "1-0000",
    }, [{
      cls: [8, 6, 0x50], // mass storage, SCSI transparent, bulk-only
      endpoints: [
        { address: 0x81, attributes: EP_BULK, maxPacket: 512, interval: 0 },
        { address: 0x02, attributes: EP_BULK, maxPacket: 512, interval: 0 },
      ],
    }], 64);
    if (backend.size % BLOCK !== 0 || backend.size === 0) throw new Error(`${name}: the disk is ${backend.size} bytes, not a positive multiple of ${BLOCK}`);
    this.blocks = backend.size / BLOCK;
    this.readOnly = backend.readOnly || (opts.readOnly ?? false);
  }

  protected classControl(setup: Setup, _data: Uint8Array | null): Uint8Array | typeof STALL {
    if ((setup.requestType & 0x7f) !== (0x20 | TO_INTERFACE) || setup.index !== 0) return STALL;
    if (setup.request === GET_MAX_LUN && setup.requestType & 0x80) return Uint8Array.of(0);
    if (setup.request === BOT_RESET && !(setup.requestType & 0x80)) {
      this.resetClass();
      return new Uint8Array(0);
    }
    return STALL;
  }

  protected dataOut(ep: number, data: Uint8Array): OutResult {
    if (ep !== 2) return STALL;
    if (this.phase === Phase.Command) return this.command(data);
    if (this.phase !== Phase.DataOut) return STALL;
    const take = data.subarray(0, this.expected - this.moved);
    this.moved += take.length;
    const toDisk = take.subarray(0, this.diskLeft);
    this.diskLeft -= toDisk.length;
    if (toDisk.length) this.writeDisk(toDisk);
    if (this.moved >= this.expected || data.length < 512 || data.length % 512 !== 0) this.endData();
    return "ok";
  }

  protected dataIn(ep: number, max: number): InResult {
    if (ep !== 1) return STALL;
    if (this.phase === Phase.Status) {
      if (max < CSW_LENGTH) return STALL;
      const csw = new Uint8Array(CSW_LENGTH);
      const v = new DataView(csw.buffer);
      v.setUint32(0, CSW_SIGNATURE, true);
      v.setUint32(4, this.tag, true);
      v.setUint32(8, this.expected - this.moved, true);
      csw[12] = this.status;
      this.phase = Phase.Command;
      return csw;
    }
    if (this.phase !== Phase.DataIn) return STALL;
    const room = Math.min(max, this.expected - this.moved);
    let out: Uint8Array;
    if (this.diskLeft > 0) {
      out = new Uint8Array(Math.min(room, this.diskLeft));
      try {
        this.backend.read(this.diskOffset, out);
      } catch {
        this.fail(MEDIUM_ERROR, ASC_READ_ERROR);
        this.diskLeft = 0;
        this.endData();
        return new Uint8Array(0);
      }
      this.diskOffset += out.length;
      this.diskLeft -= out.length;
    } else {
      out = this.bytes.slice(0, room);
      this.bytes = this.bytes.subarray(out.length);
    }
    this.moved += out.length;
    // The phase ends when the host has all it asked for or the device has no more (a short packet).
    if (this.moved >= this.expected || out.length < max || (this.diskLeft === 0 && this.bytes.length === 0)) this.endData();
    return out;
  }

  private endData(): void {
    if (this.partial.length) {
      this.partial = new Uint8Array(0); // a write short of a block: the rest never came
      if (this.status === GOOD) this.status = PHASE_ERROR;
    }
    this.phase = Phase.Status;
  }

  private command(cbw: Uint8Array): OutResult {
    const v = new DataView(cbw.buffer, cbw.byteOffset, cbw.byteLength);
    const cbLength = cbw.length === CBW_LENGTH ? cbw[14]! & 0x1f : 0;
    if (cbw.length !== CBW_LENGTH || v.getUint32(0, true) !== CBW_SIGNATURE || (cbw[13]! & 0xf) !== 0 || cbLength < 1 || cbLength > 16) {
      this.phase = Phase.Stalled; // not a meaningful CBW (BOT 6.2): reset recovery
      return STALL;
    }
    this.tag = v.getUint32(4, true);
    this.expected = v.getUint32(8, true);
    this.moved = 0;
    this.status = GOOD;
    this.bytes = new Uint8Array(0);
    this.diskLeft = 0;
    this.partial = new Uint8Array(0);
    const hostIn = (cbw[12]! & 0x80) !== 0;
    const cdb = cbw.slice(15, 15 + cbLength);
    const data = this.scsi(cdb);
    const length = data.kind === "none" ? 0 : data.kind === "bytes" ? data.bytes.length : data.length;
    const deviceIn = data.kind === "bytes" || data.kind === "read";
    if (this.expected === 0) {
      // Hn: the host moves nothing; a command that wanted data is a phase error (cases 2, 3).
      if (length > 0) this.status = PHASE_ERROR;
      this.phase = Phase.Status;
      return "ok";
    }
    if (length > 0 && (deviceIn !== hostIn || (data.kind !== "bytes" && length > this.expected))) {
      // The directions disagree, or the host offers less than the disk range (cases 7, 8, 10, 13).
      this.status = PHASE_ERROR;
      this.phase = hostIn ? Phase.DataIn : Phase.DataOut;
      return "ok";
    }
    if (data.kind === "bytes") this.bytes = data.bytes.subarray(0, this.expected);
    if (data.kind === "read" || data.kind === "write") {
      this.diskOffset = data.offset;
      this.diskLeft = data.length;
    }
    this.phase = hostIn ? Phase.DataIn : Phase.DataOut;
    return "ok";
  }

  private writeDisk(chunk: Uint8Array): void {
    let buf = chunk;
    if (this.partial.length) {
      buf = new Uint8Array(this.partial.length + chunk.length);
      buf.set(this.partial);
      buf.set(chunk, this.partial.length);
    }
    const whole = buf.length - (buf.length % BLOCK);
    this.partial = buf.slice(whole);
    if (!whole || this.status !== GOOD) return;
    try {
      this.backend.write(this.diskOffset, buf.subarray(0, whole));
    } catch {
      this.fail(MEDIUM_ERROR, ASC_WRITE_ERROR);
    }
    this.diskOffset += whole;
  }

  private fail(key: number, asc: number): Data {
    this.status = FAILED;
    this.sense = { key, asc };
    return { kind: "none" };
  }

  /** Run a SCSI command: what its data phase moves, or a failure with sense data. */
  private scsi(cdb: Uint8Array): Data {
    const v = new DataView(cdb.buffer, cdb.byteOffset, cdb.byteLength);
    const need = (n: number) => cdb.length >= n;
    const ok: Data = { kind: "none" };
    const bytes = (b: Uint8Array, allocation: number): Data => ({ kind: "bytes", bytes: b.subarray(0, allocation) });
    const op = cdb[0]!;
    if (op !== 0x03) this.sense = { key: NO_SENSE, asc: 0 }; // REQUEST SENSE reads the last one
    switch (op) {
      case 0x00: // TEST UNIT READY
      case 0x1e: // PREVENT ALLOW MEDIUM REMOVAL
      case 0x1b: // START STOP UNIT
        return ok;
      case 0x03: { // REQUEST SENSE: fixed format
        if (!need(6)) break;
        const s = new Uint8Array(18);
        s[0] = 0x70;
        s[2] = this.sense.key;
        s[7] = 10;
        s[12] = this.sense.asc;
        this.sense = { key: NO_SENSE, asc: 0 };
        return bytes(s, cdb[4]!);
      }
      case 0x12: { // INQUIRY
        if (!need(6)) break;
        const allocation = v.getUint16(3);
        if (cdb[1]! & 1) {
          // Vital product data: only the list of pages.
          if (cdb[2] !== 0) return this.fail(ILLEGAL_REQUEST, ASC_INVALID_FIELD);
          return bytes(Uint8Array.of(0, 0, 0, 1, 0), allocation);
        }
        if (cdb[2] !== 0) return this.fail(ILLEGAL_REQUEST, ASC_INVALID_FIELD);
        const d = new Uint8Array(36);
        d[1] = 0x80; // removable
        d[2] = 0x05; // SPC-3
        d[3] = 0x02; // response data format
        d[4] = 31;
        d.set(ascii("wasmvisr", 8), 8);
        d.set(ascii("USB disk", 16), 16);
        d.set(ascii("1.0", 4), 32);
        return bytes(d, allocation);
      }
      case 0x25: { // READ CAPACITY (10)
        if (!need(10)) break;
        const d = new Uint8Array(8);
        new DataView(d.buffer).setUint32(0, Math.min(this.blocks - 1, 0xffffffff));
        new DataView(d.buffer).setUint32(4, BLOCK);
        return bytes(d, 8);
      }
      case 0x9e: { // SERVICE ACTION IN (16): READ CAPACITY (16)
        if (!need(16) || (cdb[1]! & 0x1f) !== 0x10) break;
        const d = new Uint8Array(32);
        new DataView(d.buffer).setBigUint64(0, BigInt(this.blocks - 1));
        new DataView(d.buffer).setUint32(8, BLOCK);
        return bytes(d, v.getUint32(10));
      }
      case 0x1a: // MODE SENSE (6)
      case 0x5a: { // MODE SENSE (10)
        const ten = op === 0x5a;
        if (!need(ten ? 10 : 6)) break;
        const page = cdb[2]! & 0x3f;
        if (page !== 0x3f && page !== 0x08) return this.fail(ILLEGAL_REQUEST, ASC_INVALID_FIELD);
        // The caching page, with the write cache enabled (writes are flushed by SYNCHRONIZE CACHE).
        const caching = new Uint8Array(20);
        caching[0] = 0x08;
        caching[1] = 18;
        caching[2] = 0x04;
        const header = new Uint8Array(ten ? 8 : 4);
        const total = header.length + caching.length;
        if (ten) new DataView(header.buffer).setUint16(0, total - 2);
        else header[0] = total - 1;
        header[ten ? 3 : 2] = this.readOnly ? 0x80 : 0;
        const d = new Uint8Array(total);
        d.set(header);
        d.set(caching, header.length);
        return bytes(d, ten ? v.getUint16(7) : cdb[4]!);
      }
      case 0x35: // SYNCHRONIZE CACHE (10)
      case 0x91: // SYNCHRONIZE CACHE (16)
        if (!this.readOnly) {
          try {
            this.backend.flush();
          } catch {
            return this.fail(MEDIUM_ERROR, ASC_WRITE_ERROR);
          }
        }
        return ok;
      case 0x2f: { // VERIFY (10): the blocks are there
        if (!need(10)) break;
        const lba = v.getUint32(2);
        if (lba + v.getUint16(7) > this.blocks) return this.fail(ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
        return ok;
      }
      case 0x08: case 0x28: case 0x88: // READ (6, 10, 16)
      case 0x0a: case 0x2a: case 0x8a: { // WRITE (6, 10, 16)
        const write = (op & 0x0f) === 0x0a;
        const size = op < 0x20 ? 6 : op < 0x80 ? 10 : 16;
        if (!need(size)) break;
        let lba: number;
        let count: number;
        if (size === 6) {
          lba = ((cdb[1]! & 0x1f) << 16) | v.getUint16(2);
          count = cdb[4] || 256;
        } else if (size === 10) {
          lba = v.getUint32(2);
          count = v.getUint16(7);
        } else {
          const big = v.getBigUint64(2);
          lba = big > BigInt(this.blocks) ? this.blocks + 1 : Number(big);
          count = v.getUint32(10);
        }
        if (lba + count > this.blocks) return this.fail(ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
        if (write && this.readOnly) return this.fail(DATA_PROTECT, ASC_WRITE_PROTECTED);
        if (count === 0) return ok;
        return { kind: write ? "write" : "read", offset: lba * BLOCK, length: count * BLOCK };
      }
      default:
        return this.fail(ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
    }
    return this.fail(ILLEGAL_REQUEST, ASC_INVALID_FIELD); // a command block too short for its opcode
  }

  protected resetClass(): void {
    this.phase = Phase.Command;
    this.expected = this.moved = 0;
    this.bytes = new Uint8Array(0);
    this.diskLeft = 0;
    this.partial = new Uint8Array(0);
    this.status = GOOD;
  }

  override reset(): void {
    super.reset();
    this.sense = { key: NO_SENSE, asc: 0 };
  }

  protected saveClass(): StateFields {
    return {
      phase: this.phase, tag: this.tag, expected: this.expected, moved: this.moved, status: this.status,
      bytes: bytesState(this.bytes), diskOffset: this.diskOffset, diskLeft: this.diskLeft,
      partial: bytesState(this.partial), senseKey: this.sense.key, senseAsc: this.sense.asc,
    };
  }

  protected restoreClass(s: StateReader): () => void {
    const phase = s.int("phase", Phase.Command, Phase.Stalled) as Phase;
    const tag = s.int("tag", 0, 0xffffffff);
    const expected = s.int("expected", 0, 0xffffffff);
    const moved = s.int("moved", 0, expected);
    const status = s.int("status", GOOD, PHASE_ERROR);
    const bytes = s.bytes("bytes", 0, 64);
    // The disk range left, and a write's partial block, are within the image, and whole blocks
    // where writeDisk() and the reads rely on it.
    const diskOffset = s.int("diskOffset", 0, this.backend.size);
    const partial = s.bytes("partial", 0, BLOCK - 1);
    if (partial.length && phase !== Phase.DataOut) s.reject("partial", "empty outside a data-out phase");
    const diskLeft = s.int("diskLeft", 0, Math.min(this.backend.size - diskOffset - partial.length, expected - moved));
    if (diskLeft && phase !== Phase.DataIn && phase !== Phase.DataOut) s.reject("diskLeft", "0 outside a data phase");
    if (phase === Phase.DataOut && diskLeft + partial.length > 0 && (diskOffset % BLOCK !== 0 || (diskLeft + partial.length) % BLOCK !== 0)) {
      s.reject("diskLeft", `with the partial block, whole ${BLOCK}-byte blocks from a block boundary (diskOffset ${diskOffset})`);
    }
    if (phase === Phase.DataIn && diskLeft > 0 && (diskOffset + diskLeft) % BLOCK !== 0) s.reject("diskLeft", `a range ending on a ${BLOCK}-byte block boundary`);
    const key = s.int("senseKey", 0, 0xf);
    const asc = s.int("senseAsc", 0, 0xff);
    return () => Object.assign(this, { phase, tag, expected, moved, status, bytes, diskOffset, diskLeft, partial, sense: { key, asc } });
  }
}

function ascii(s: string, width: number): Uint8Array {
  const out = new Uint8Array(width).fill(0x20);
  for (let i = 0; i < Math.min(s.length, width); i++) out[i] = s.charCodeAt(i);
  return out;
}
