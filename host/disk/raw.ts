// A raw image: the disk's bytes as they are, over any ByteFile.
import type { DiskBackend } from "../devices/backends";
import type { ByteFile } from "./byte-file";
import { QCOW2_MAGIC } from "./qcow2-format";

export const SECTOR = 512;
const DISCARD_CHUNK = 1 << 20;
const DISCARD_BLOCK = 4096;

export interface RawDiskOptions {
  /** How the user named the image, for messages: "--drive". */
  what?: string;
  /**
   * The format was guessed (no format=raw): the guest may not write an image header into the
   * first sector, or the next probe would take the disk for that format and follow a backing
   * file the guest chose (QEMU restricts probed raw images the same way).
   */
  probed?: boolean;
  /** A backing file: any length (reads past its end are the overlay's business), never written. */
  backing?: boolean;
}

export class RawDisk implements DiskBackend {
  readonly format = "raw" as const;
  readonly size: number;
  readonly readOnly: boolean;
  private readonly probed: boolean;
  private scratch: Uint8Array | null = null;
  private closed = false;

  constructor(
    readonly file: ByteFile,
    opts: RawDiskOptions = {},
  ) {
    this.size = file.size();
    this.readOnly = file.readOnly || opts.backing === true;
    this.probed = opts.probed ?? false;
    if (!opts.backing && this.size % SECTOR !== 0) {
      throw new Error(`${opts.what ?? "disk image"} ${file.name}: is ${this.size} bytes, not a multiple of 512 (as a raw image; give format=qcow2 if it is one)`);
    }
  }

  private check(offset: number, length: number, write: boolean): void {
    if (this.closed) throw new Error(`disk image ${this.file.name} is closed`);
    if (write && this.readOnly) throw new Error(`disk image ${this.file.name} is read-only`);
    if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new RangeError(`disk image ${this.file.name}: access [${offset}, +${length}) beyond its ${this.size} bytes`);
    }
  }

  read(offset: number, dst: Uint8Array): void {
    this.check(offset, dst.length, false);
    const n = this.file.read(offset, dst);
    if (n < dst.length) throw new Error(`disk image ${this.file.name}: unexpected end of file at ${offset + n} (did it shrink?)`);
  }

  write(offset: number, src: Uint8Array): void {
    this.check(offset, src.length, true);
    if (this.probed && offset < QCOW2_MAGIC.length && src.length > 0) this.refuseMagic(offset, src);
    this.file.write(offset, src);
  }

  private refuseMagic(offset: number, src: Uint8Array): void {
    const head = new Uint8Array(QCOW2_MAGIC.length);
    this.file.read(0, head);
    head.set(src.subarray(0, head.length - offset), offset);
    if (head.every((b, i) => b === QCOW2_MAGIC[i])) {
      throw new Error(`disk image ${this.file.name}: refused a write of a qcow2 header to the first sector of an image ` +
        `whose format was probed as raw (the next probe would read it as qcow2); attach it with format=raw to allow it`);
    }
  }

  flush(): void {
    if (this.closed) throw new Error(`disk image ${this.file.name} is closed`);
    if (!this.readOnly) this.file.flush();
  }

  /**
   * Make the range read as zeros. Files have no portable hole punching, so the range is read and
   * only the 4 KiB blocks that are not already zero are overwritten: holes of a sparse image stay
   * holes and discarding an unused area costs reads only.
   */
  discard(offset: number, length: number): void {
    this.check(offset, length, true);
    this.scratch ??= new Uint8Array(DISCARD_CHUNK);
    const buf = this.scratch;
    const words = new Uint32Array(buf.buffer, 0, DISCARD_CHUNK / 4);
    for (let pos = 0; pos < length; pos += DISCARD_CHUNK) {
      const len = Math.min(DISCARD_CHUNK, length - pos);
      this.read(offset + pos, buf.subarray(0, len));
      // Zero the partial last word so the word scan below only sees this request's bytes.
      for (let i = len; i < Math.ceil(len / 4) * 4; i++) buf[i] = 0;
      let runStart = -1;
      const zeroRun = (from: number, to: number): void => {
        buf.fill(0, from, to);
        this.file.write(offset + pos + from, buf.subarray(from, to));
      };
      for (let b = 0; b < len; b += DISCARD_BLOCK) {
        const end = Math.ceil(Math.min(b + DISCARD_BLOCK, len) / 4);
        let dirty = false;
        for (let w = b / 4; w < end; w++) {
          if (words[w] !== 0) {
            dirty = true;
            break;
          }
        }
        if (dirty) {
          if (runStart < 0) runStart = b;
        } else if (runStart >= 0) {
          zeroRun(runStart, b);
          runStart = -1;
        }
      }
      if (runStart >= 0) zeroRun(runStart, len);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.file.close();
  }
}
