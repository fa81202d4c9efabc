// Opening the files a VM is built from (Node): firmware, kernels, initrds and disk images name
// paths that come from users and, through the daemon, from its clients, and are opened with the
// daemon's privileges. So each is opened without blocking (a FIFO would hang the thread), checked
// to be what it claims (a regular file, or a block device for a disk) and, where the host says
// so, to lie in an allowed directory; sizes are known before anything is read; and a disk is not
// attached for writing while another program (or another VM) uses it, as QEMU's image locking
// refuses it.
import { closeSync, constants, fstatSync, openSync, readFileSync, readSync, readdirSync, readlinkSync, realpathSync, statSync } from "node:fs";
import { sep } from "node:path";
import type { Stats } from "node:fs";

export class ImageError extends Error {}

export interface OpenImageOptions {
  /** How the user named it, for messages: "--kernel", "'drives'", ... */
  what: string;
  /** Open for writing too (a disk that is not readonly=on). */
  write?: boolean;
  /** A block device will do too (disks); otherwise only a regular file. */
  blockDevice?: boolean;
  /** The directories the file must be in, checked on the file actually opened. */
  dirs?: readonly string[];
  /** Largest size accepted, with what to say when it is larger. */
  maxBytes?: { bytes: number; hint: string };
}

export interface OpenedImage {
  fd: number;
  /** The file's real path (symbolic links resolved). */
  path: string;
  size: number;
  dev: bigint;
  ino: bigint;
  mtimeMs: number;
}

function code(e: unknown): string {
  return e && typeof e === "object" && "code" in e ? String((e as { code: unknown }).code) : "";
}

const mib = (n: number) => `${(n / 2 ** 20).toFixed(n < 2 ** 20 ? 2 : 0)} MiB`;

/** Open an image as `opts` says; throws an ImageError (one line, says what to do) otherwise. */
export function openImage(path: string, opts: OpenImageOptions): OpenedImage {
  const { what } = opts;
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO or a device must not wait for a peer.
    fd = openSync(path, (opts.write ? constants.O_RDWR : constants.O_RDONLY) | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (e) {
    const c = code(e);
    if (c === "ENOENT") throw new ImageError(`${what} ${path}: no such file`);
    if (c === "EISDIR") throw new ImageError(`${what} ${path}: is a directory, not an image file`);
    if (opts.write && (c === "EACCES" || c === "EPERM" || c === "EROFS" || c === "ETXTBSY")) {
      throw new ImageError(`${what} ${path}: cannot open it for writing (${c}); use readonly=on to attach it read-only`);
    }
    throw new ImageError(`${what} ${path}: cannot open (${(e as Error).message})`);
  }
  try {
    const st = fstatSync(fd, { bigint: true });
    const real = openedPath(fd, path);
    if (opts.dirs && !opts.dirs.some((d) => inside(real, d))) {
      throw new ImageError(`${what} ${path}: not in an image directory of this host (${opts.dirs.join(", ")}); ` +
        `start the host with --images <dir> to allow another`);
    }
    let size: number;
    if (st.isFile()) size = Number(st.size);
    else if (opts.blockDevice && st.isBlockDevice()) size = blockDeviceSize(st.rdev, what, path);
    else throw new ImageError(`${what} ${path}: is ${fileKind(st)}, not ${opts.blockDevice ? "a regular file or a block device" : "a regular file"}`);
    if (opts.maxBytes && size > opts.maxBytes.bytes) {
      throw new ImageError(`${what} ${path}: is ${mib(size)}, more than ${opts.maxBytes.hint}`);
    }
    return { fd, path: real, size, dev: st.dev, ino: st.ino, mtimeMs: Number(st.mtimeMs) };
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

/** Read a whole image opened by openImage (and close it). */
export function readOpenedImage(img: OpenedImage, into: Uint8Array, what: string): void {
  try {
    let done = 0;
    while (done < img.size) {
      const n = readSync(img.fd, into, done, img.size - done, done);
      if (n === 0) throw new ImageError(`${what} ${img.path}: shorter than its ${img.size} bytes (did it change while being read?)`);
      done += n;
    }
  } finally {
    closeSync(img.fd);
  }
}

// Where the descriptor really leads (Linux: /proc/self/fd; elsewhere the resolved path, which a
// concurrent rename could change in between).
export function openedPath(fd: number, path: string): string {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return realpathSync(path);
  }
}

/** Whether `file` (a real path) lies under the directory `dir` (resolved). */
export function inside(file: string, dir: string): boolean {
  let real: string;
  try {
    real = realpathSync(dir);
  } catch {
    return false;
  }
  return file.startsWith(real.endsWith(sep) ? real : real + sep);
}

/** What a file is, for messages ("a FIFO", "a directory", ...). */
export function fileKind(st: Pick<Stats, "isSymbolicLink" | "isDirectory" | "isFile" | "isFIFO" | "isSocket" | "isCharacterDevice" | "isBlockDevice">): string {
  if (st.isSymbolicLink()) return "a symbolic link";
  if (st.isDirectory()) return "a directory";
  if (st.isFile()) return "a regular file";
  if (st.isFIFO()) return "a FIFO";
  if (st.isSocket()) return "a socket";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  return "a special file";
}

// Linux's dev_t: major in bits 8-19 and 32-63, minor in bits 0-7 and 12-31.
function majorMinor(rdev: bigint): [bigint, bigint] {
  return [((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn), (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn)];
}

function blockDeviceSize(rdev: bigint, what: string, path: string): number {
  const [major, minor] = majorMinor(rdev);
  try {
    return Number(readFileSync(`/sys/dev/block/${major}:${minor}/size`, "utf8").trim()) * 512;
  } catch {
    throw new ImageError(`${what} ${path}: cannot tell the size of block device ${major}:${minor}`);
  }
}

// ---- who else uses an image ----

/**
 * Refuse an image another program or VM uses in a way that conflicts with `write`: a writer
 * excludes every other user, a reader excludes writers (as QEMU's locking does; readonly=on on
 * every side shares). Looks at every open file this process can see (its own, other workers'
 * included, and other processes') and at the kernel's file locks (which QEMU takes), so the error
 * can name the other user. Processes of other users are seen only by root, except their locks.
 */
export function checkNotInUse(img: OpenedImage, write: boolean, what: string): void {
  const [major, minor] = majorMinor(img.dev);
  const lockId = `${major.toString(16).padStart(2, "0")}:${minor.toString(16).padStart(2, "0")}:${img.ino}`;
  if (write) {
    for (const line of readText("/proc/locks").split("\n")) {
      const f = line.trim().split(/\s+/);
      // "1: OFDLCK ADVISORY WRITE -1 fd:01:1234 100 101" (a "->" marks a waiter)
      const i = f[1] === "->" ? 1 : 0;
      if (f[5 + i] === lockId || f[5 + i]?.toLowerCase() === lockId) {
        const pid = Number(f[4 + i]);
        throw new ImageError(`${what} ${img.path}: in use: ${pid > 0 ? describeProcess(pid) : "another program"} holds a lock on it ` +
          `(QEMU does while it runs); stop it, or attach the image with readonly=on on every side`);
      }
    }
  }
  for (const pid of readDir("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    for (const fd of readDir(`/proc/${pid}/fd`)) {
      if (Number(pid) === process.pid && Number(fd) === img.fd) continue;
      const link = `/proc/${pid}/fd/${fd}`;
      let target: string;
      try {
        target = readlinkSync(link);
      } catch {
        continue;
      }
      if (!target.startsWith("/")) continue; // sockets, pipes, anonymous inodes
      let st;
      try {
        st = statSync(link, { bigint: true });
      } catch {
        continue;
      }
      if (st.dev !== img.dev || st.ino !== img.ino) continue;
      const theirWrite = openForWriting(pid, fd);
      if (!write && !theirWrite) continue;
      const who = Number(pid) === process.pid ? "another drive or VM of this process" : describeProcess(Number(pid));
      throw new ImageError(`${what} ${img.path}: in use: ${who} has it open${theirWrite ? " for writing" : ""}; ` +
        `a disk attached for writing must be its only user (readonly=on on every side shares it)`);
    }
  }
}

function openForWriting(pid: string, fd: string): boolean {
  const m = /^flags:\s*([0-7]+)/m.exec(readText(`/proc/${pid}/fdinfo/${fd}`));
  return m ? (parseInt(m[1], 8) & 3) !== 0 : true; // unknown: assume the worst
}

function describeProcess(pid: number): string {
  const comm = readText(`/proc/${pid}/comm`).trim();
  return comm ? `${comm} (pid ${pid})` : `process ${pid}`;
}

function readText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

function readDir(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}
