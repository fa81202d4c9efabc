// Which blocks of a disk were written since the last look: what block migration sends again in
// its later rounds, as the core's dirty log of RAM pages does for memory. A bit per block of
// 64 KiB; a request that touches part of a block marks the whole block. SwappableDisk keeps
// one while a migration runs (every guest write and discard goes through it) and none otherwise.
import { popcount } from "../util/bits";

/** Bytes per block of the dirty log (and of a disk section's entries: host/state/disk.ts). */
export const DISK_BLOCK = 64 << 10;

/** Blocks written since the log started or was last synced, as a bitmap (bit b of word b >>> 5). */
export interface DirtyBlocks {
  bitmap: Uint32Array;
  /** Bits set in `bitmap`. */
  blocks: number;
}

export class DirtyLog {
  /** Blocks the disk has (the last may be partial). */
  readonly blocks: number;
  private bitmap: Uint32Array;
  private marked = 0;

  constructor(readonly size: number) {
    this.blocks = Math.ceil(size / DISK_BLOCK);
    this.bitmap = new Uint32Array(Math.ceil(this.blocks / 32));
  }

  /** Mark the blocks [offset, offset + length) touches (the part inside the disk). */
  mark(offset: number, length: number): void {
    if (!(length > 0) || !(offset < this.size)) return;
    const first = Math.floor(Math.max(0, offset) / DISK_BLOCK);
    const last = Math.min(this.blocks - 1, Math.floor((offset + length - 1) / DISK_BLOCK));
    const map = this.bitmap;
    for (let b = first; b <= last;) {
      const w = b >>> 5;
      if ((b & 31) === 0 && b + 31 <= last) {
        // A whole word at once (a large discard).
        this.marked += 32 - popcount(map[w]!);
        map[w] = 0xffffffff;
        b += 32;
        continue;
      }
      const bit = 1 << (b & 31);
      if ((map[w]! & bit) === 0) {
        map[w] = map[w]! | bit;
        this.marked++;
      }
      b++;
    }
  }

  /** The blocks marked so far; the log starts again empty. */
  take(): DirtyBlocks {
    const out = { bitmap: this.bitmap, blocks: this.marked };
    this.bitmap = new Uint32Array(this.bitmap.length);
    this.marked = 0;
    return out;
  }
}
