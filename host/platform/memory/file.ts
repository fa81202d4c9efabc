// A ByteFile held in memory: the embedding app's byte array, used in place until the file
// grows past it (a qcow2 image allocating clusters); then the bytes move to a larger buffer
// and `onResize` hands the new array to whoever keeps the files.
import type { ByteFile } from "../../disk/byte-file";

export class MemoryFile implements ByteFile {
  private buffer: Uint8Array;
  private length: number;
  private closed = false;

  constructor(
    readonly name: string,
    bytes: Uint8Array,
    readonly readOnly: boolean,
    private readonly onResize?: (bytes: Uint8Array) => void,
    readonly identity: string = name,
  ) {
    this.buffer = bytes;
    this.length = bytes.length;
  }

  /** The file's bytes now (live until the file next grows). */
  get bytes(): Uint8Array {
    return this.buffer.subarray(0, this.length);
  }

  private check(write: boolean): void {
    if (this.closed) throw new Error(`disk image ${this.name} is closed`);
    if (write && this.readOnly) throw new Error(`disk image ${this.name} is read-only`);
  }

  size(): number {
    return this.length;
  }

  read(offset: number, dst: Uint8Array): number {
    this.check(false);
    const n = Math.max(0, Math.min(dst.length, this.length - offset));
    dst.set(this.buffer.subarray(offset, offset + n));
    return n;
  }

  write(offset: number, src: Uint8Array): void {
    this.check(true);
    if (offset + src.length > this.length) this.resize(offset + src.length);
    this.buffer.set(src, offset);
  }

  truncate(size: number): void {
    this.check(true);
    this.resize(size);
  }

  private resize(size: number): void {
    if (size > this.buffer.length) {
      // Doubling keeps a growing image's copies to O(size) in all.
      const grown = new Uint8Array(Math.max(size, this.buffer.length * 2));
      grown.set(this.buffer.subarray(0, this.length));
      this.buffer = grown;
    } else if (size > this.length) {
      this.buffer.fill(0, this.length, size); // what a shrink left behind reads as zeros again
    }
    this.length = size;
    this.onResize?.(this.bytes);
  }

  flush(): void {
    this.check(false);
  }

  close(): void {
    this.closed = true;
  }
}
