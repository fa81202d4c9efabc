// Disk image files on Node: each opened without blocking and checked as image-files.ts says
// (an allowed directory, on the file actually opened; a regular file or a block device; no
// conflicting user), then read and written with synchronous positional I/O on its descriptor:
// a device completes each request inside the guest's notification, so there is nothing to
// overlap with. host/disk/ makes raw and qcow2 images of these files.
import * as fs from "node:fs";
import type { ByteFile } from "../../disk/byte-file";
import { createDiskImage, openDiskImage, type CreateDiskImageOptions, type DiskFiles } from "../../disk/open";
import type { DiskBackend } from "../../devices/backends";
import type { DiskOptions } from "../platform";
import { ImageError, checkNotInUse, openImage, openedPath, inside, type OpenedImage } from "./image-files";

export class NodeFile implements ByteFile {
  readonly identity: string;
  private fd: number | null;
  private length: number;

  constructor(
    readonly name: string,
    img: OpenedImage,
    readonly readOnly: boolean,
  ) {
    this.fd = img.fd;
    this.length = img.size;
    this.identity = `${img.dev}:${img.ino}`;
  }

  private open(): number {
    if (this.fd === null) throw new Error(`disk image ${this.name} is closed`);
    return this.fd;
  }

  size(): number {
    return this.length;
  }

  read(offset: number, dst: Uint8Array): number {
    const fd = this.open();
    let done = 0;
    while (done < dst.length) {
      const n = fs.readSync(fd, dst, done, dst.length - done, offset + done);
      if (n === 0) break;
      done += n;
    }
    return done;
  }

  write(offset: number, src: Uint8Array): void {
    const fd = this.open();
    if (this.readOnly) throw new Error(`disk image ${this.name} is read-only`);
    let done = 0;
    while (done < src.length) done += fs.writeSync(fd, src, done, src.length - done, offset + done);
    this.length = Math.max(this.length, offset + src.length);
  }

  truncate(size: number): void {
    const fd = this.open();
    if (this.readOnly) throw new Error(`disk image ${this.name} is read-only`);
    fs.ftruncateSync(fd, size);
    this.length = size;
  }

  flush(): void {
    const fd = this.open();
    if (!this.readOnly) fs.fsyncSync(fd);
  }

  close(): void {
    if (this.fd === null) return;
    const fd = this.fd;
    this.fd = null;
    fs.closeSync(fd);
  }
}

/** The files of disk images, opened as a host with these allowed directories may open them. */
export function nodeDiskFiles(dirs: readonly string[] | undefined): DiskFiles {
  return {
    open(path, { readOnly, what }) {
      const img = openImage(path, { what, write: !readOnly, blockDevice: true, dirs });
      try {
        checkNotInUse(img, !readOnly, what);
      } catch (e) {
        fs.closeSync(img.fd);
        throw e;
      }
      return new NodeFile(path, img, readOnly);
    },
    create(path, { what }) {
      let fd: number;
      try {
        // O_EXCL: never an existing file, nor through a symbolic link at the path.
        fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOCTTY, 0o600);
      } catch (e) {
        const code = (e as { code?: string }).code;
        if (code === "EEXIST") throw new ImageError(`${what} ${path}: already exists; a new image needs a new file`);
        if (code === "ENOENT") throw new ImageError(`${what} ${path}: its directory does not exist`);
        throw new ImageError(`${what} ${path}: cannot create (${(e as Error).message})`);
      }
      const st = fs.fstatSync(fd, { bigint: true });
      const real = openedPath(fd, path);
      if (dirs && !dirs.some((d) => inside(real, d))) {
        fs.closeSync(fd);
        fs.rmSync(path, { force: true });
        throw new ImageError(`${what} ${path}: not in an image directory of this host (${dirs.join(", ")})`);
      }
      return new NodeFile(path, { fd, path: real, size: 0, dev: st.dev, ino: st.ino, mtimeMs: Number(st.mtimeMs) }, false);
    },
    remove(path) {
      fs.rmSync(path, { force: true });
    },
  };
}

/** Open a disk image (raw or qcow2, with its backing files); throws a one-line Error naming `what`. */
export function openNodeDisk(path: string, opts: DiskOptions): DiskBackend {
  return openDiskImage(nodeDiskFiles(opts.dirs), path, opts);
}

/** Remove an image createNodeDiskImage made and nobody uses. */
export function removeNodeDiskImage(path: string): void {
  nodeDiskFiles(undefined).remove(path);
}

/** Create a qcow2 image (an overlay when it has a backing file) at `path`, which must not exist. */
export function createNodeDiskImage(path: string, opts: CreateDiskImageOptions & { dirs?: readonly string[] }): void {
  createDiskImage(nodeDiskFiles(opts.dirs), path, opts);
}
