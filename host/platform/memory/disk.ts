/** A raw DiskBackend in memory: for tests, scratch disks, and browsers without a file system. */
import { RawDisk } from "../../disk/raw";
import { MemoryFile } from "./file";

export interface MemoryDiskOptions {
  readOnly?: boolean;
}

export class MemoryDisk extends RawDisk {
  /** The disk contents (live). */
  readonly data: Uint8Array;
  /** How many times flush() was called. */
  flushes = 0;

  /** A zeroed disk of `size` bytes, or one over `data` (used in place, not copied). */
  constructor(sizeOrData: number | Uint8Array, opts: MemoryDiskOptions = {}) {
    const data = typeof sizeOrData === "number" ? new Uint8Array(sizeOrData) : sizeOrData;
    super(new MemoryFile("memory disk", data, opts.readOnly ?? false), { what: "memory disk" });
    this.data = data;
  }

  override flush(): void {
    super.flush();
    this.flushes++;
  }
}
