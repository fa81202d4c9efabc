// The disk a device holds, whose image can be replaced while the VM runs: what a snapshot needs
// to freeze a disk. The VM builder (host/vm/build.ts) gives every device one of these, so
// VirtioBlk and AtaDisk keep one backend for their life and never notice the change.
//
// For the snapshot code (on the VM's pCPU, between two steps: each request completes inside
// the guest's notification, so none is in progress then):
//
//   const disk = machineDisks(machine)[i];                          // host/vm/build.ts
//   const next = continueOnOverlay(platform, disk, "/images/vm-snap1.qcow2", { dirs });
//   config.drives[i] = { ...config.drives[i], file: next.path, format: next.format };
//
// continueOnOverlay flushes the disk, creates a qcow2 overlay whose backing file is the disk's
// image (frozen from then on: only read, through the overlay), and moves the disk onto it. The
// two steps are there on their own too: Platform.createDiskImage and SwappableDisk.swap.
//
// Block migration copies a disk while the guest writes to it: startDirtyLog() before the first
// pass over it, syncDirtyLog() for the blocks to send again each round (host/state/disk.ts),
// stopDirtyLog() once the VM has stopped and the last of them is sent.
import type { DiskBackend } from "../devices/backends";
import type { Platform } from "../platform/platform";
import type { DiskFormat } from "./formats";
import { DirtyLog, type DirtyBlocks } from "./dirty-log";

/** Where a disk's data is: its image file and format. */
export interface DiskImage {
  path: string;
  format: DiskFormat;
}

export class SwappableDisk implements DiskBackend {
  readonly size: number;
  readonly readOnly: boolean;
  private target: DiskBackend;
  private path: string;
  private reopen: () => DiskBackend;
  /** Blocks written while a migration copies the disk (null: not logging, and nothing to pay). */
  private log: DirtyLog | null = null;

  /** A disk on the image at `path`, which `open` opens (now, and again if a swap fails). */
  constructor(path: string, open: () => DiskBackend) {
    this.target = open();
    this.path = path;
    this.reopen = open;
    this.size = this.target.size;
    this.readOnly = this.target.readOnly;
  }

  /** The image the disk is on now (format "raw" for backends that are not image files). */
  get image(): DiskImage {
    return { path: this.path, format: this.target.format ?? "raw" };
  }

  get format(): DiskFormat | undefined {
    return this.target.format;
  }

  read(offset: number, dst: Uint8Array): void {
    this.target.read(offset, dst);
  }

  write(offset: number, src: Uint8Array): void {
    // Marked before the write: one that fails half-way may have changed the blocks all the same.
    this.log?.mark(offset, src.length);
    this.target.write(offset, src);
  }

  flush(): void {
    this.target.flush();
  }

  discard(offset: number, length: number): void {
    this.log?.mark(offset, length);
    this.target.discard(offset, length);
  }

  /** The range is known to read as zeros without reading it (an image's unallocated clusters); false: not known. */
  knownZero(offset: number, length: number): boolean {
    return this.target.knownZero?.(offset, length) ?? false;
  }

  /**
   * Start logging which 64 KiB blocks the guest writes (writes and discards, whatever the image
   * underneath; swap() keeps the log), with none marked yet: block migration's first round.
   */
  startDirtyLog(): void {
    this.log = new DirtyLog(this.size);
  }

  /** The blocks written since startDirtyLog() or the last sync; the log goes on, empty. */
  syncDirtyLog(): DirtyBlocks {
    if (!this.log) throw new Error("the disk's dirty log is not running (startDirtyLog first)");
    return this.log.take();
  }

  stopDirtyLog(): void {
    this.log = null;
  }

  get dirtyLogging(): boolean {
    return this.log !== null;
  }

  /**
   * Go on with the image at `path` that `open` opens; call between requests. The current image
   * is flushed and closed first, so the new one may use its file (as its backing file: a file
   * attached for writing cannot be opened again). The new image must have the same size and
   * read-only-ness; if `open` fails or it does not, the old image is opened again and the error
   * thrown (if even that fails, the disk fails every request, saying why).
   */
  swap(path: string, open: () => DiskBackend): void {
    this.target.flush();
    this.target.close();
    let next: DiskBackend | null = null;
    try {
      next = open();
      if (next.size !== this.size || next.readOnly !== this.readOnly) {
        throw new Error(`disk image ${path}: is ${next.size} bytes${next.readOnly ? ", read-only" : ""}; the disk it replaces is ${this.size} bytes${this.readOnly ? ", read-only" : ""}`);
      }
    } catch (e) {
      next?.close();
      try {
        this.target = this.reopen();
      } catch (again) {
        this.target = failingDisk(this, `its image ${this.path} could not be opened again (${(again as Error).message})`);
        throw new Error(`${(e as Error).message}; and ${this.path} could not be opened again: ${(again as Error).message}`);
      }
      throw e;
    }
    this.target = next;
    this.path = path;
    this.reopen = open;
  }

  close(): void {
    this.target.close();
  }
}

function failingDisk(like: DiskBackend, why: string): DiskBackend {
  const fail = (): never => {
    throw new Error(`disk has no image: ${why}`);
  };
  return { size: like.size, readOnly: like.readOnly, read: fail, write: fail, flush: fail, discard: fail, close: () => {} };
}

export interface OverlayOptions {
  /** Directories the overlay (and the backing file, as always) must be in; anywhere if undefined. */
  dirs?: readonly string[];
  /**
   * The backing file's name as the overlay stores it: absolute, or relative to the overlay's
   * directory. Default: the disk's image path as it was opened (absolute from a daemon's
   * definitions; from the command line it may be relative to the working directory, which is
   * right only when the overlay is in that directory).
   */
  backingName?: string;
  /** The overlay's cluster size (default 64 KiB). */
  clusterSize?: number;
}

/**
 * Freeze the disk's image and go on writing to a new qcow2 overlay at `overlayPath` (which must
 * not exist) whose backing file it is; returns the image the disk is on now, for the VM's
 * configuration. Call between requests. If the disk cannot be moved, it stays on its image and
 * the (empty) overlay file is left for the caller to remove.
 */
export function continueOnOverlay(platform: Platform, disk: SwappableDisk, overlayPath: string, opts: OverlayOptions = {}): DiskImage {
  const { path, format } = disk.image;
  disk.flush();
  platform.createDiskImage(overlayPath, {
    size: disk.size,
    backing: { path: opts.backingName ?? path, format },
    clusterSize: opts.clusterSize,
    dirs: opts.dirs,
    what: "overlay",
  });
  disk.swap(overlayPath, () => platform.openDisk(overlayPath, { format: "qcow2", readOnly: disk.readOnly, dirs: opts.dirs, what: "--drive" }));
  return disk.image;
}
