// The one thing disk formats need from where they run: a file of bytes with positional I/O.
// Raw and qcow2 images are written over it, so they run the same on Node (a file descriptor,
// host/platform/node/file.ts), in memory (host/platform/memory/file.ts) and in a browser.

export interface ByteFile {
  /** The path it was opened as, for messages. */
  readonly name: string;
  /**
   * Tells two opened files apart even when named differently (Node: device and inode), so a
   * chain of backing files that comes back to one of its images is noticed.
   */
  readonly identity: string;
  /** Opened read-only: write, truncate and flush never change the file. */
  readonly readOnly: boolean;
  /** Its length in bytes now. */
  size(): number;
  /**
   * Fill `dst` from `offset`; returns the bytes read, fewer only at the end of the file (the
   * rest of `dst` is left as it was).
   */
  read(offset: number, dst: Uint8Array): number;
  /** Write `src` at `offset`, growing the file when it ends beyond it. */
  write(offset: number, src: Uint8Array): void;
  /** Set the file's length. */
  truncate(size: number): void;
  /** Make every completed write durable (fsync). */
  flush(): void;
  close(): void;
}

/** Read exactly `dst.length` bytes at `offset`; bytes past the end of the file read as zeros. */
export function readPadded(file: ByteFile, offset: number, dst: Uint8Array): void {
  const n = file.read(offset, dst);
  if (n < dst.length) dst.fill(0, n);
}
