// The VMM's platform in a web page. The page's thread is the control plane; each pCPU is a Web
// Worker (pcpu-worker.ts) that gets the compiled core, a synchronous channel to the storage
// worker (storage.ts: the Origin Private File System, or IndexedDB), and where the server's
// network relay and migration endpoint are. Paths name where files live:
//
//   /opfs/...      a file the browser keeps for this origin (disks, overlays, saved states)
//   anything else  a file the page's server serves, fetched over HTTP (read-only: boot images,
//                  the base images copy-on-write disks are overlays of, read in chunks as used)
//
// A page cannot block its own thread, so what the control plane reads synchronously (boot images
// for loadBootImages, a state's configuration for restore) must be fetched first: load() and
// loadState() do that asynchronously.
import * as Comlink from "comlink";
import { threadEnd, type HostResources, type Platform, type PcpuThread } from "../platform";
import type { Pcpu } from "../../hv/pcpu";
import { bytesSource } from "../../state/container";
import { STORAGE_ROOT as OPFS, startStorage, storagePath, type BrowserStorage } from "./storage";
import { createDiskImage } from "../../disk/open";
import { MemoryFile } from "../memory/file";
import type { DiskFormat } from "../../disk/formats";
import { checkInDirs } from "../paths";
import type { WorkerInit } from "./pcpu-worker";

export { STORAGE_ROOT as OPFS } from "./storage";

export interface BrowserPlatformOptions {
  /** The core: its URL (fetched and compiled as it streams in), compiled, or its bytes. Default: core.wasm beside this module. */
  core?: string | URL | WebAssembly.Module | Uint8Array;
  /** Where this module's workers are (pcpu-worker.js, storage-worker.js); default: beside it. */
  workerBase?: string | URL;
  /** Paths (served over HTTP) fetched now so VMs can boot from them; more with load(). */
  images?: string[];
  /** What `bios: "default"` boots: one of the images. */
  defaultFirmware?: string;
  /** The server's WebSocket that relays user-mode networking (ws://host/net); none: NICs of kind user are refused. */
  netRelay?: string | URL;
  /** The server's WebSocket that VMs migrate over (ws://host/migrate); none: no migration. */
  migration?: string | URL;
  /** What VMs may use (default: the browser's cores, 2 GiB or what navigator.deviceMemory says). */
  resources?: Partial<HostResources>;
}

export interface BrowserPlatform extends Platform {
  /** The files the browser keeps (OPFS or IndexedDB). */
  readonly storage: BrowserStorage;
  /** Fetch a boot image (a served path) so VMs can boot from it; or take `bytes` as the image at `path` (a file the user chose). */
  load(path: string, bytes?: Uint8Array): Promise<void>;
  /** Read a saved state (a /opfs/ path) so restore() can admit it; or store `bytes` there first (a file the user chose). */
  loadState(path: string, bytes?: Uint8Array): Promise<void>;
  /**
   * Make a copy-on-write disk: a qcow2 image at `path` (under /opfs/, which must not exist) over
   * `backing`, a served image (only the blocks the guest reads are downloaded) or another /opfs/ image.
   */
  createOverlay(path: string, backing: { path: string; format?: DiskFormat }): Promise<void>;
  /** A saved state's bytes (to hand to the user as a download). */
  readState(path: string): Promise<Uint8Array>;
  close(): void;
}

// A file beside this module, or in `base` (which may be relative to the page: "/wasmvisor/").
const here = (name: string, base?: string | URL) => new URL(name, base === undefined ? import.meta.url : new URL(base, globalThis.location?.href));

/** Start the browser platform: compile the core, start the storage worker, fetch `images`. */
export async function browserPlatform(opts: BrowserPlatformOptions = {}): Promise<BrowserPlatform> {
  if (!globalThis.crossOriginIsolated) {
    throw new Error("wasmvisor needs a cross-origin isolated page (SharedArrayBuffer and Atomics): serve it with " +
      "'Cross-Origin-Opener-Policy: same-origin' and 'Cross-Origin-Embedder-Policy: require-corp' (wasmvisor web does), " +
      "or register wasmvisor's isolation service worker (docs/EMBEDDING.md)");
  }
  const module = await compile(opts.core ?? here("core.wasm", opts.workerBase));
  const storage = await startStorage(here("storage-worker.js", opts.workerBase));
  const images = new Map<string, Uint8Array>();
  const states = new Map<string, Uint8Array>();
  const load = async (path: string, bytes?: Uint8Array) => {
    if (bytes) return void images.set(path, bytes);
    if (images.has(path)) return;
    const r = await fetch(path);
    if (!r.ok) throw new Error(`${path}: the server answered ${r.status} ${r.statusText}`);
    images.set(path, new Uint8Array(await r.arrayBuffer()));
  };
  await Promise.all((opts.images ?? []).map((p) => load(p)));

  const platform: BrowserPlatform = {
    storage,
    coreModule: () => module,
    defaultFirmware() {
      if (!opts.defaultFirmware) throw new Error("no default firmware in this page: pass bios with a served path, builtin or none");
      return opts.defaultFirmware;
    },
    readImage(path, { what, maxBytes, dirs }) {
      checkInDirs(path, what, dirs);
      const bytes = images.get(path);
      if (!bytes) throw new Error(`${what} ${path}: not loaded: fetch it first (platform.load(path), or the images option)`);
      if (bytes.length > maxBytes) throw new Error(`${what} ${path}: is ${Math.ceil(bytes.length / 2 ** 20)} MiB, more than the guest's ${maxBytes / 2 ** 20} MiB of RAM; use a larger memory`);
      return bytes;
    },
    openStateFile(path, { what, dirs }) {
      checkInDirs(path, what, dirs);
      const bytes = states.get(path);
      if (!bytes) throw new Error(`${what} ${path}: not loaded: read it first (platform.loadState(path))`);
      return bytesSource(bytes);
    },
    // Disks and saved states are written by the pCPU workers, which reach the storage synchronously.
    openDisk(path, { what }) {
      throw new Error(`${what} ${path}: disks are opened by the VM's pCPU worker, not the page`);
    },
    createStateFile(path, { what }) {
      throw new Error(`${what} ${path}: states are saved by the VM's pCPU worker, not the page`);
    },
    createDiskImage(path, { what }) {
      throw new Error(`${what} ${path}: images are made by the VM's pCPU worker, not the page`);
    },
    removeDiskImage(path) {
      void storage.remove(path).catch(() => {});
    },
    pcpuMayWait: true, // each pCPU is a worker
    async startPcpu(): Promise<PcpuThread> {
      const worker = new Worker(here("pcpu-worker.js", opts.workerBase), { type: "module", name: "wasmvisor pCPU" });
      const channel = await storage.connect();
      const init: WorkerInit = {
        module, storage: channel,
        netRelay: opts.netRelay ? String(opts.netRelay) : undefined,
        migration: opts.migration ? String(opts.migration) : undefined,
      };
      const { end, onExit } = threadEnd();
      // Files a pCPU had open stay locked until the storage lets them go.
      const release = () => void storage.release(channel).catch(() => {});
      // The worker says it is ready once it has its platform; Comlink's messages come after.
      try {
        await new Promise<void>((resolve, reject) => {
          worker.onmessage = (e) => (e.data === "ready" ? resolve() : reject(new Error(`a pCPU worker said ${JSON.stringify(e.data)}`)));
          worker.onerror = (e) => reject(new Error(`a pCPU worker failed to start: ${e.message}`));
          worker.postMessage(init, [channel.port]);
        });
      } catch (e) {
        worker.terminate();
        release();
        throw e;
      }
      worker.onmessage = null;
      // An uncaught error does not end a worker in a browser: this one is ended, its VMs fail, and
      // another takes its place (it must not go on running beside it).
      worker.onerror = (e) => {
        worker.terminate();
        end(e.message || "its worker failed");
        release();
      };
      return {
        pcpu: Comlink.wrap<Pcpu>(worker),
        onExit,
        terminate: async () => {
          worker.terminate();
          end("terminated");
          await storage.release(channel).catch(() => {});
        },
      };
    },
    yieldTurn: () => new Promise((resolve) => setTimeout(resolve, 0)),
    resources: () => ({
      memory: ((navigator as { deviceMemory?: number }).deviceMemory ?? 2) * 2 ** 30,
      cpus: navigator.hardwareConcurrency || 1,
      fileDescriptors: Infinity,
      ...opts.resources,
    }),
    load,
    async loadState(path, bytes) {
      storagePath(path, "state");
      if (bytes) await storage.writeFile(path, bytes);
      const b = bytes ?? await storage.readFile(path);
      if (!b) throw new Error(`state ${path}: no such file`);
      states.set(path, b);
    },
    async createOverlay(path, backing) {
      storagePath(path, "overlay");
      if ((await storage.list(path.slice(0, path.lastIndexOf("/") + 1))).includes(path)) throw new Error(`overlay ${path}: already exists`);
      const size = await sizeOf(backing.path, backing.format ?? "raw", storage);
      // The image is a header and empty tables: made in memory, then stored whole.
      let made: Uint8Array = new Uint8Array(0);
      createDiskImage({
        open: (p) => { throw new Error(`overlay: ${p} is not opened while making it`); },
        create: (p) => new MemoryFile(p, made, false, (bytes) => { made = bytes; }),
        remove: () => {},
      }, path, { size, backing: { path: backing.path, format: backing.format ?? "raw" }, what: "overlay" });
      await storage.writeFile(path, made);
    },
    async readState(path) {
      storagePath(path, "state");
      const b = await storage.readFile(path);
      if (!b) throw new Error(`state ${path}: no such file`);
      return b;
    },
    close: () => storage.close(),
  };
  return platform;
}

// A backing image's size: a stored one's bytes, or what the server says a served one has.
async function sizeOf(path: string, format: DiskFormat, storage: BrowserStorage): Promise<number> {
  if (path.startsWith(OPFS)) {
    const b = await storage.readFile(path);
    if (!b) throw new Error(`overlay: its backing file ${path} does not exist`);
    // A qcow2 image's virtual size is in its header (big-endian, at byte 24).
    return format === "qcow2" && b.length >= 32 ? Number(new DataView(b.buffer, b.byteOffset).getBigUint64(24)) : b.length;
  }
  const r = await fetch(path, { method: "HEAD" });
  const n = Number(r.headers.get("content-length"));
  if (!r.ok || !Number.isSafeInteger(n) || n <= 0) throw new Error(`overlay: its backing file ${path}: the server answered ${r.status} with no size`);
  return n;
}

async function compile(core: string | URL | WebAssembly.Module | Uint8Array): Promise<WebAssembly.Module> {
  if (core instanceof WebAssembly.Module) return core;
  if (core instanceof Uint8Array) return WebAssembly.compile(core as Uint8Array<ArrayBuffer>);
  const r = await fetch(core);
  if (!r.ok) throw new Error(`the core ${String(core)}: the server answered ${r.status} ${r.statusText}`);
  // Streaming compilation needs the server to say application/wasm.
  return r.headers.get("content-type")?.startsWith("application/wasm") ? WebAssembly.compileStreaming(r) : WebAssembly.compile(await r.arrayBuffer());
}
