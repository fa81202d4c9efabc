// Saved VM states as files (Node). A snapshot is read with positional reads, so a restore reads
// only what it uses; it is opened as images are (image-files.ts: no FIFO, only inside the
// host's directories). A save goes to a private temporary file beside its target and is renamed
// over it when whole, so a failed save, or a host that dies mid-way, never leaves a torn file
// under the snapshot's name, and a symbolic link there is replaced, not followed.
import { closeSync, constants, fsyncSync, lstatSync, openSync, readSync, realpathSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { crypto } from "./builtins";
import { fileSource, type ByteSource } from "../../state/container";
import { NodeFile } from "./disk";
import type { StateFileOptions, StateFileWriter } from "../platform";
import { ImageError, checkNotInUse, inside, openImage } from "./image-files";

// What is at `target` may be replaced only if it is a file of the same kind that nobody writes.
function checkReplaceable(target: string, path: string, what: string, dirs: readonly string[] | undefined, replaces: Uint8Array | undefined): void {
  try {
    lstatSync(target);
  } catch {
    return; // nothing there
  }
  const img = openImage(target, { what, dirs });
  try {
    const head = new Uint8Array(replaces?.length ?? 0);
    const n = head.length ? readSync(img.fd, head, 0, head.length, 0) : 0;
    if (!replaces || n < head.length || replaces.some((b, i) => head[i] !== b)) {
      throw new ImageError(`${what} ${path}: a file that is not a ${what} is there; wasmvisor will not replace it (remove it, or choose another name)`);
    }
    checkNotInUse(img, false, what);
  } finally {
    closeSync(img.fd);
  }
}

export function openStateFile(path: string, { what, dirs }: StateFileOptions): ByteSource {
  return fileSource(new NodeFile(path, openImage(path, { what, dirs }), true), what);
}

export function createStateFile(path: string, { what, dirs, replaces }: StateFileOptions): StateFileWriter {
  const target = resolve(path);
  checkReplaceable(target, path, what, dirs, replaces);
  let dir: string;
  try {
    dir = realpathSync(dirname(target));
  } catch {
    throw new ImageError(`${what} ${path}: its directory ${dirname(target)} does not exist`);
  }
  if (dirs && !dirs.some((d) => inside(join(dir, basename(target)), d))) {
    throw new ImageError(`${what} ${path}: not in an image directory of this host (${dirs.join(", ")}); start the host with --images <dir> to allow another`);
  }
  const temp = join(dir, `.${basename(target)}.${crypto().randomBytes(6).toString("hex")}.partial`);
  let fd: number | null;
  try {
    fd = openSync(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  } catch (e) {
    throw new ImageError(`${what} ${path}: cannot create a file in ${dir} (${(e as Error).message})`);
  }
  const drop = () => {
    if (fd !== null) closeSync(fd);
    fd = null;
    try { unlinkSync(temp); } catch { /* already gone */ }
  };
  return {
    write(chunk) {
      if (fd === null) throw new Error(`${what} ${path}: already finished`);
      for (let done = 0; done < chunk.length;) done += writeSync(fd, chunk, done, chunk.length - done);
    },
    commit() {
      if (fd === null) throw new Error(`${what} ${path}: already finished`);
      try {
        fsyncSync(fd);
        closeSync(fd);
        fd = null;
        renameSync(temp, join(dir, basename(target)));
      } catch (e) {
        drop();
        throw new ImageError(`${what} ${path}: cannot save it (${(e as Error).message})`);
      }
    },
    abort: drop,
  };
}
