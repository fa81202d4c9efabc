/**
 * A DiskBackend over a raw image file, for Node only (this is the one virtio file that uses
 * Node APIs). Synchronous positional I/O on one file descriptor: the device completes each
 * request inside the guest's notification, so there is nothing to overlap with.
 */
import * as fs from "node:fs";
import type { DiskBackend } from "../../devices/backends";
import { openImage, checkNotInUse } from "./image-files";

export interface NodeDiskOptions {
  /** Open the image read-only (writes then throw; virtio-blk offers VIRTIO_BLK_F_RO). */
  readOnly?: boolean;
  /** Directories the image must be in (the daemon's --images); anywhere if undefined. */
  dirs?: readonly string[];
  /** How the user named it, for messages (default "disk image"). */
  what?: string;
}

const SECTOR = 512;
const DISCARD_CHUNK = 1 << 20;
const DISCARD_BLOCK = 4096;

export class NodeDisk implements DiskBackend {
  readonly size: number;
  readonly readOnly: boolean;
  private fd: number | null;
  private scratch: Uint8Array | null = null;

  /**
   * Opens `path`: a regular file or a block device, not in use by anyone else in a conflicting
   * way (image-files.ts); throws a one-line Error saying what is wrong and what to do.
   */
  constructor(
    readonly path: string,
    opts: NodeDiskOptions = {},
  ) {
    this.readOnly = opts.readOnly ?? false;
    const what = opts.what ?? "disk image";
    const img = openImage(path, { what, write: !this.readOnly, blockDevice: true, dirs: opts.dirs });
    try {
      if (img.size % SECTOR !== 0) {
        throw new Error(`${what} ${path}: is ${img.size} bytes, not a multiple of 512 (raw images only)`);
      }
      checkNotInUse(img, !this.readOnly, what);
    } catch (e) {
      fs.closeSync(img.fd);
      throw e;
    }
    this.size = img.size;
    this.fd = img.fd;
  }

  private open(): number {
    if (this.fd === null) throw new Error(`disk image ${this.path} is closed`);
    return this.fd;
  }

  private check(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new RangeError(`disk image ${this.path}: access [${offset}, +${length}) beyond its ${this.size} bytes`);
    }
  }

  read(offset: number, dst: Uint8Array): void {
    const fd = this.open();
    this.check(offset, dst.length);
    let done = 0;
    while (done < dst.length) {
      const n = fs.readSync(fd, dst, done, dst.length - done, offset + done);
      if (n === 0) throw new Error(`disk image ${this.path}: unexpected end of file at ${offset + done}`);
      done += n;
    }
  }

  write(offset: number, src: Uint8Array): void {
    const fd = this.open();
    if (this.readOnly) throw new Error(`disk image ${this.path} is read-only`);
    this.check(offset, src.length);
    let done = 0;
    while (done < src.length) {
      done += fs.writeSync(fd, src, done, src.length - done, offset + done);
    }
  }

  flush(): void {
    const fd = this.open();
    if (!this.readOnly) fs.fsyncSync(fd);
  }

  /**
   * Make the range read as zeros. Node has no hole punching, so the range is read and only the
   * 4 KiB blocks that are not already zero are overwritten: holes of a sparse image stay holes
   * and discarding an unused area costs reads only.
   */
  discard(offset: number, length: number): void {
    this.open();
    if (this.readOnly) throw new Error(`disk image ${this.path} is read-only`);
    this.check(offset, length);
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
        this.write(offset + pos + from, buf.subarray(from, to));
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
    if (this.fd === null) return;
    const fd = this.fd;
    this.fd = null;
    fs.closeSync(fd);
  }
}
