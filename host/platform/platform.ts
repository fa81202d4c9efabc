// Everything the VMM needs from where it runs, behind one small interface: the core module,
// boot images and disks, host sockets, threads for pCPUs, a turn of the event loop, and what
// the host has to share. host/platform/node/ implements it for Node; host/platform/memory/ for
// any JavaScript engine, with files held in memory and pCPUs on the calling thread. Nothing
// else under host/ (but the CLI and the daemon's socket server) knows where it runs.
import type { Remote } from "comlink";
import type { CharBackend, DiskBackend } from "../devices/backends";
import type { CreateDiskImageOptions } from "../disk/open";
import type { DiskFormat } from "../disk/formats";
import type { HostSockets } from "../net/host-sockets";
import type { NetBackend } from "../devices/backends";
import type { UserNetOptions } from "../net/user/options";
import type { Pcpu } from "../hv/pcpu";
import type { JitMode } from "../jit/tier";
import type { JitCompiler } from "../jit/compiler";
import type { ByteSource } from "../state/container";
import type { ByteLink, MigrationTarget } from "../migration/link";

export interface ImageOptions {
  /** How the user named it, for messages: "--kernel". */
  what: string;
  /** Largest size accepted (the guest's RAM: a bigger image could not be loaded anyway). */
  maxBytes: number;
  /** Directories it must be in (a daemon's --images); anywhere if undefined. */
  dirs?: readonly string[];
}

export interface DiskOptions {
  readOnly: boolean;
  /** raw or qcow2; when absent, probed as QEMU does (qcow2's magic, else raw). */
  format?: DiskFormat;
  /** Directories it must be in, and its backing files too; anywhere if undefined. */
  dirs?: readonly string[];
  /** How the user named it, for messages: "--drive". */
  what: string;
}

export interface StateFileOptions {
  /** How the user named it, for messages: "snapshot". */
  what: string;
  /** Directories it must be in; anywhere if undefined. */
  dirs?: readonly string[];
  /**
   * Creating: a file already there is replaced only if it starts with these bytes (a snapshot
   * replaces only a snapshot, never a disk image) and nobody is writing it.
   */
  replaces?: Uint8Array;
}

/**
 * A VM state being saved to a file. Nothing appears under the file's name until commit(), and
 * then all of it at once: a save that fails, or a host that dies mid-way, leaves the file as it
 * was.
 */
export interface StateFileWriter {
  write(chunk: Uint8Array): void;
  /** Make it durable and put it in place. */
  commit(): void;
  /** Drop what was written. */
  abort(): void;
}

export interface CreateDiskOptions extends CreateDiskImageOptions {
  /** Directories the new image (and a backing file opened for its size) must be in; anywhere if undefined. */
  dirs?: readonly string[];
}

/** A pCPU running somewhere (a worker thread, or the calling thread), driven through Comlink's shape. */
export interface PcpuThread {
  readonly pcpu: Remote<Pcpu>;
  /** Called once if the thread dies (never for the calling thread). */
  onExit(listener: (why: string) => void): void;
  terminate(): Promise<void>;
}

/** What the host offers VMs. */
export interface HostResources {
  /** Bytes of memory. */
  memory: number;
  /** Threads that can run pCPUs in parallel. */
  cpus: number;
  /** File descriptors VMs may hold in all (disks, host sockets); Infinity where there are none. */
  fileDescriptors: number;
}

export interface Platform {
  /** The compiled core (compiled once per thread, then cached). */
  coreModule(): WebAssembly.Module;
  /** The translation tier's mode for VMs whose configuration names none; "off" when absent. */
  defaultJit?(): JitMode;
  /**
   * This thread's compile thread for the translation tier (started on first use, shared by the
   * thread's VMs); absent where there is none (pages are then translated on the pCPU's thread).
   */
  jitCompiler?(): JitCompiler;
  /**
   * The firmware a full-virtualization VM boots when it names none (`bios: "default"`); throws
   * an Error saying what to install or pass when there is none.
   */
  defaultFirmware(): string;
  /**
   * Firmware, a kernel or an initrd, whole. Images are shared (one copy for every VM and worker
   * that boots the same file), so the bytes must not be written. Throws a one-line Error naming
   * `what` and what to do.
   */
  readImage(path: string, opts: ImageOptions): Uint8Array;
  /**
   * Open a disk image, raw or qcow2 (host/disk/), with the backing files of a qcow2 image: opened
   * read-only and checked as the image is (allowed directories, other users). Throws a one-line
   * Error naming `what` and what to do. The only way disks are opened.
   */
  openDisk(path: string, opts: DiskOptions): DiskBackend;
  /** Open a saved VM state (a snapshot) for reading; throws a one-line Error naming `what` and what to do. */
  openStateFile(path: string, opts: StateFileOptions): ByteSource;
  /** Start saving a VM state to `path`; throws a one-line Error naming `what` and what to do. */
  createStateFile(path: string, opts: StateFileOptions): StateFileWriter;
  /** Connect to another host's migration listener with the hosts' shared key; undefined where there is no network. */
  connectMigration?(target: MigrationTarget, key: Uint8Array): Promise<ByteLink>;
  /**
   * Create a new qcow2 image at `path`, which must not exist, in `dirs` if given: an overlay on a
   * backing file (the snapshot's way to freeze an image: host/disk/swappable.ts), or with a size
   * and no backing file a standalone sparse image that reads as zeros (block migration's copy of
   * a disk: host/disk/disk-copy.ts).
   */
  createDiskImage(path: string, opts: CreateDiskOptions): void;
  /** Remove an image this host created with createDiskImage and then gave up on (nothing has it open). */
  removeDiskImage(path: string): void;
  /**
   * A character backend on a Unix socket this host listens on (a USB serial port's other end),
   * in `dirs` if given, waking the VM through `onWake` when bytes came; undefined where there
   * are no sockets.
   */
  listenCharSocket?(path: string, io: { onWake?: () => void; dirs?: readonly string[] }): CharBackend;
  /** Host sockets for user-mode networking; undefined where there are none. */
  readonly hostSockets?: HostSockets;
  /**
   * User-mode networking that runs elsewhere (a browser's server, over its relay): the backend
   * of a user netdev with these options, waking the VM through `onWake` when frames came. Where
   * present, it is used instead of a UserNet on hostSockets.
   */
  remoteUserNet?(options: UserNetOptions, io: { onWake?: () => void; onError?: (err: unknown) => void }): NetBackend;
  /**
   * Whether a pCPU may block its thread waiting for a page (Atomics.wait): post-copy migration
   * in needs it. True where pCPUs have threads of their own; a pCPU on the calling thread would
   * block the very event loop the page comes through.
   */
  readonly pcpuMayWait: boolean;
  /** Start a pCPU. */
  startPcpu(): Promise<PcpuThread>;
  /** Let the thread's event loop run (control messages, network events) before going on. */
  yieldTurn(): Promise<void>;
  resources(): HostResources;
}

/** A pCPU thread's end, told once to whoever listens (PcpuThread.onExit), whatever ends it first. */
export function threadEnd(): { end(why: string): void; onExit(listener: (why: string) => void): void } {
  const listeners: ((why: string) => void)[] = [];
  let ended = false;
  return {
    end(why) {
      if (ended) return;
      ended = true;
      for (const l of listeners) l(why);
    },
    onExit: (l) => { listeners.push(l); },
  };
}
