/** A DiskBackend in memory: for tests, scratch disks, and browsers without a file system. */
import type { DiskBackend } from "../../devices/backends";

export interface MemoryDiskOptions {
  readOnly?: boolean;
}

export class MemoryDisk implements DiskBackend {
  readonly size: number;
  readonly readOnly: boolean;
  /** The disk contents (live). */
  readonly data: Uint8Array;
  /** How many times flush() was called. */
  flushes = 0;
  private closed = false;

  /** A zeroed disk of `size` bytes, or one over `data` (used in place, not copied). */
  constructor(sizeOrData: number | Uint8Array, opts: MemoryDiskOptions = {}) {
    this.data = typeof sizeOrData === "number" ? new Uint8Array(sizeOrData) : sizeOrData;
    if (this.data.length % 512 !== 0) throw new Error(`memory disk size ${this.data.length} is not a multiple of 512`);
    this.size = this.data.length;
    this.readOnly = opts.readOnly ?? false;
  }

  private check(offset: number, length: number, write: boolean): void {
    if (this.closed) throw new Error("memory disk is closed");
    if (write && this.readOnly) throw new Error("memory disk is read-only");
    if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new RangeError(`memory disk: access [${offset}, +${length}) beyond its ${this.size} bytes`);
    }
  }

  read(offset: number, dst: Uint8Array): void {
    this.check(offset, dst.length, false);
    dst.set(this.data.subarray(offset, offset + dst.length));
  }

  write(offset: number, src: Uint8Array): void {
    this.check(offset, src.length, true);
    this.data.set(src, offset);
  }

  flush(): void {
    if (this.closed) throw new Error("memory disk is closed");
    this.flushes++;
  }

  discard(offset: number, length: number): void {
    this.check(offset, length, true);
    this.data.fill(0, offset, offset + length);
  }

  close(): void {
    this.closed = true;
  }
}
