// Where block migration puts a disk at the destination: a new image of the source disk's size,
// opened for writing, that the disk sections (host/state/disk.ts) fill in; once the stream is
// whole it is closed and the VM is built on it (its drive's file and format set to `image`).
//
// qcow2 rather than raw: the blocks never sent (they read as zero at the source) are never
// allocated, so the copy costs what the disk holds, not its size, on every file system and on
// the memory platform too (whose files are arrays: a raw image would be the whole size at once);
// its clusters of 64 KiB are the blocks of a disk section, so a block is written whole into a
// new cluster without reading anything first; a later zero block frees its cluster again; and
// `qemu-img check` can vet it.
import type { DiskBackend } from "../devices/backends";
import type { Platform } from "../platform/platform";
import { DISK_BLOCK } from "./dirty-log";
import type { DiskImage } from "./swappable";

export interface DiskCopyOptions {
  /** Directories the image must be in (a daemon's --images); anywhere if undefined. */
  dirs?: readonly string[];
  /** How the caller names it, for messages (default "migrated disk"). */
  what?: string;
}

/**
 * Create a standalone qcow2 image of `size` bytes at `path` (which must not exist) and open it
 * for writing. If it is created but cannot be opened, it is removed again.
 */
export function createDiskCopy(platform: Platform, path: string, size: number, opts: DiskCopyOptions = {}): { image: DiskImage; disk: DiskBackend } {
  const what = opts.what ?? "migrated disk";
  platform.createDiskImage(path, { size, clusterSize: DISK_BLOCK, dirs: opts.dirs, what });
  try {
    return { image: { path, format: "qcow2" }, disk: platform.openDisk(path, { format: "qcow2", readOnly: false, dirs: opts.dirs, what }) };
  } catch (e) {
    platform.removeDiskImage(path);
    throw e;
  }
}
