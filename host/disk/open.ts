// Opening a disk image whatever its format: raw, or qcow2 with its chain of backing files.
// Platforms open the files (with their own checks: allowed directories, other users) and this
// decides the format and walks the chain, so both platforms open images the same way.
import type { DiskBackend } from "../devices/backends";
import { readPadded, type ByteFile } from "./byte-file";
import { RawDisk } from "./raw";
import { Qcow2Disk } from "./qcow2";
import { QCOW2_MAGIC, writeNewQcow2 } from "./qcow2-format";
import { DISK_FORMATS, type DiskFormat } from "./formats";

export { DISK_FORMATS, type DiskFormat };
/** Backing files below one image, at most: each holds a file descriptor, and a chain must end. */
export const MAX_BACKING_DEPTH = 32;

/** How a platform opens the files of disk images. */
export interface DiskFiles {
  /**
   * Open `path`, checked as the platform checks disks (allowed directories, not in use in a
   * conflicting way); throws a one-line Error that starts with `what` and the path.
   */
  open(path: string, opts: { readOnly: boolean; what: string }): ByteFile;
  /** Create `path`, which must not exist, empty and open for writing (same checks, same errors). */
  create(path: string, opts: { what: string }): ByteFile;
  /** Remove a file `create` made (after a failure). */
  remove(path: string): void;
}

export interface OpenDiskImageOptions {
  /** The image's format; probed when absent (qcow2 if it starts with qcow2's magic, else raw). */
  format?: DiskFormat;
  readOnly: boolean;
  /** How the user named it, for messages: "--drive". */
  what: string;
}

/** What the first bytes say: qcow2's magic, or raw. */
export function probeFormat(file: ByteFile): DiskFormat {
  const head = new Uint8Array(QCOW2_MAGIC.length);
  readPadded(file, 0, head);
  return head.every((b, i) => b === QCOW2_MAGIC[i]) ? "qcow2" : "raw";
}

/**
 * Where a backing file named `name` in the image at `imagePath` is: an absolute name as it is,
 * a relative one relative to the image's directory (as QEMU resolves them).
 */
export function backingPath(name: string, imagePath: string): string {
  if (name.startsWith("/")) return name;
  const slash = imagePath.lastIndexOf("/");
  return slash < 0 ? name : `${imagePath.slice(0, slash + 1)}${name}`;
}

/**
 * Open the image at `path` as a DiskBackend. A qcow2 image's backing files are opened through
 * `files` too, read-only and with the same checks, to at most MAX_BACKING_DEPTH levels, and a
 * chain that comes back to one of its own images is refused. Errors name the image as `what`
 * and its path, then the backing file concerned.
 */
export function openDiskImage(files: DiskFiles, path: string, opts: OpenDiskImageOptions): DiskBackend {
  const top = `${opts.what} ${path}`;
  const topPath = path;
  const seen = new Set<string>();
  const open = (path: string, format: DiskFormat | undefined, readOnly: boolean, what: string, depth: number): DiskBackend => {
    const file = files.open(path, { readOnly, what });
    if (seen.has(file.identity)) {
      file.close();
      throw new Error(`${top}: its chain of backing files loops: ${path} is already in it`);
    }
    seen.add(file.identity);
    try {
      const backing = depth > 0;
      if ((format ?? probeFormat(file)) === "raw") return new RawDisk(file, { what, probed: format === undefined && !backing, backing });
      return new Qcow2Disk(file, {
        label: `${what} ${path}`,
        backing,
        openBacking: (name, below) => {
          if (depth + 1 > MAX_BACKING_DEPTH) {
            throw new Error(`${top}: its chain of backing files is deeper than ${MAX_BACKING_DEPTH} images (each live snapshot adds one): ` +
              `flatten it into one image with 'qemu-img convert -O qcow2 ${topPath} <new file>' while nothing uses it, and use that`);
          }
          if (below !== undefined && !(DISK_FORMATS as readonly string[]).includes(below)) {
            throw new Error(`${what} ${path}: its backing file ${name} has format '${below}', which wasmvisor does not read (${DISK_FORMATS.join(", ")})`);
          }
          return open(backingPath(name, path), below as DiskFormat | undefined, true, `${top}: backing file`, depth + 1);
        },
      });
    } catch (e) {
      file.close();
      throw e;
    }
  };
  return open(path, opts.format, opts.readOnly, opts.what, 0);
}

export interface CreateDiskImageOptions {
  /** Virtual size in bytes (a multiple of 512); default: the backing file's size. */
  size?: number;
  /**
   * The image reads through to this one where it has no data. `path` is stored as given: a
   * relative path is found relative to the new image's directory, as QEMU resolves it.
   */
  backing?: { path: string; format: DiskFormat };
  /** qcow2 cluster size (512 B to 2 MiB, a power of two); default 64 KiB. */
  clusterSize?: number;
  /** How the caller names it, for messages. */
  what: string;
  /**
   * false: return without making the new image durable. For an overlay nothing has been written
   * to yet, and that nothing relies on until its first flush: the qcow2 backend flushes the file
   * before it writes any table that points to data, and the guest's flush, a snapshot and close
   * flush it, so a crash before then can only lose an overlay that held nothing promised.
   */
  sync?: boolean;
}

/**
 * Create a new qcow2 image at `path` (which must not exist). Without a size the backing file is
 * opened read-only to learn it, so then it must not be attached for writing elsewhere.
 */
export function createDiskImage(files: DiskFiles, path: string, opts: CreateDiskImageOptions): void {
  let size = opts.size;
  if (opts.backing && !(DISK_FORMATS as readonly string[]).includes(opts.backing.format)) {
    throw new Error(`${opts.what} ${path}: backing format '${opts.backing.format}' is not one of ${DISK_FORMATS.join(", ")}`);
  }
  if (size === undefined) {
    if (!opts.backing) throw new Error(`${opts.what} ${path}: a new image needs a size or a backing file`);
    const below = openDiskImage(files, backingPath(opts.backing.path, path), { format: opts.backing.format, readOnly: true, what: `${opts.what} ${path}: backing file` });
    size = below.size;
    below.close();
  }
  const file = files.create(path, { what: opts.what });
  try {
    writeNewQcow2(file, {
      size, clusterSize: opts.clusterSize, sync: opts.sync,
      ...(opts.backing ? { backing: { name: opts.backing.path, format: opts.backing.format } } : {}),
    });
    file.close();
  } catch (e) {
    file.close();
    files.remove(path);
    throw new Error(`${opts.what} ${path}: ${(e as Error).message}`);
  }
}
