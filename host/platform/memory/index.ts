// A platform any JavaScript engine has: files are byte arrays the embedding app hands over,
// pCPUs run on the calling thread (taking turns with it through the event loop), and host
// sockets exist only if the app brings its own. Tests use it, and it is what a web page builds
// on until it wants workers and OPFS.
import type { Remote } from "comlink";
import { Pcpu } from "../../hv/pcpu";
import { MemoryFile } from "./file";
import { createDiskImage, openDiskImage, type DiskFiles } from "../../disk/open";
import { compileCore } from "../../core/core";
import type { HostSockets } from "../../net/host-sockets";
import type { HostResources, Platform, PcpuThread } from "../platform";
import { bytesSource } from "../../state/container";
import { concatBytes } from "../../util/bytes";
import { checkInDirs } from "../paths";
import { yieldTurn } from "../turn";

export interface MemoryPlatformOptions {
  /** The core: compiled, or the bytes of build/core.wasm. */
  core: WebAssembly.Module | Uint8Array;
  /**
   * Files by path, for images and disks. A disk opened for writing changes its array in place
   * (a qcow2 image that grows moves to a new array: read it back with `file(path)`).
   */
  files?: Record<string, Uint8Array>;
  /** What `bios: "default"` boots: a path among the files. */
  defaultFirmware?: string;
  hostSockets?: HostSockets;
  /** How VMs migrate to another host (e.g. a linkPair() end whose other end a second hypervisor's incoming() takes). */
  connectMigration?: Platform["connectMigration"];
  /** What VMs may use (default: 1 GiB, one pCPU, no file-descriptor limit). */
  resources?: Partial<HostResources>;
}

export interface MemoryPlatform extends Platform {
  /** A file's bytes now (disks written or created by VMs included). */
  file(path: string): Uint8Array | undefined;
  /** The paths of its files now. */
  paths(): string[];
}

export function memoryPlatform(opts: MemoryPlatformOptions): MemoryPlatform {
  const files = new Map(Object.entries(opts.files ?? {}));
  const module = opts.core instanceof WebAssembly.Module ? opts.core : compileCore(opts.core);
  const file = (path: string, what: string, dirs?: readonly string[]): Uint8Array => {
    checkInDirs(path, what, dirs);
    const bytes = files.get(path);
    if (!bytes) throw new Error(`${what} ${path}: no such file`);
    return bytes;
  };
  // Disks are opened in place; a file that grows is put back under its name.
  const diskFiles = (dirs?: readonly string[]): DiskFiles => ({
    open: (path, { readOnly, what }) => new MemoryFile(path, file(path, what, dirs), readOnly, (bytes) => files.set(path, bytes)),
    create(path, { what }) {
      checkInDirs(path, what, dirs);
      if (files.has(path)) throw new Error(`${what} ${path}: already exists; a new image needs a new file`);
      files.set(path, new Uint8Array(0));
      return new MemoryFile(path, new Uint8Array(0), false, (bytes) => files.set(path, bytes));
    },
    remove: (path) => { files.delete(path); },
  });
  const platform: MemoryPlatform = {
    coreModule: () => module,
    defaultFirmware() {
      if (!opts.defaultFirmware) throw new Error("no default firmware on this platform: pass --bios <file>, builtin or none");
      return opts.defaultFirmware;
    },
    readImage(path, { what, maxBytes, dirs }) {
      const bytes = file(path, what, dirs);
      if (bytes.length > maxBytes) throw new Error(`${what} ${path}: is ${Math.ceil(bytes.length / 2 ** 20)} MiB, more than the guest's ${maxBytes / 2 ** 20} MiB of RAM`);
      return bytes;
    },
    openDisk: (path, opts) => openDiskImage(diskFiles(opts.dirs), path, opts),
    createDiskImage: (path, opts) => createDiskImage(diskFiles(opts.dirs), path, opts),
    removeDiskImage: (path) => diskFiles().remove(path),
    file: (path) => files.get(path),
    paths: () => [...files.keys()],
    openStateFile: (path, { what, dirs }) => bytesSource(file(path, what, dirs)),
    createStateFile(path, { what, dirs, replaces }) {
      checkInDirs(path, what, dirs);
      const old = files.get(path);
      if (old && (!replaces || old.length < replaces.length || replaces.some((b, i) => old[i] !== b))) {
        throw new Error(`${what} ${path}: a file that is not a ${what} is there; it is not replaced (remove it, or choose another name)`);
      }
      const chunks: Uint8Array[] = [];
      return {
        write: (chunk) => void chunks.push(new Uint8Array(chunk)),
        commit: () => void files.set(path, concatBytes(chunks)),
        abort: () => { chunks.length = 0; },
      };
    },
    hostSockets: opts.hostSockets,
    connectMigration: opts.connectMigration,
    pcpuMayWait: false, // its pCPUs run on the calling thread
    startPcpu: async () => inThread(new Pcpu(platform)),
    yieldTurn,
    resources: () => ({ memory: 2 ** 30, cpus: 1, fileDescriptors: Infinity, ...opts.resources }),
  };
  return platform;
}

// A pCPU on this thread, called the way a worker's is (every call answers with a promise).
function inThread(pcpu: Pcpu): PcpuThread {
  const remote = new Proxy(pcpu, {
    get: (target, prop) => {
      const member = Reflect.get(target, prop) as unknown;
      return typeof member === "function" ? (...args: unknown[]) => Promise.resolve().then(() => member.apply(target, args)) : member;
    },
  }) as unknown as Remote<Pcpu>;
  return { pcpu: remote, onExit: () => {}, terminate: async () => pcpu.close() };
}
