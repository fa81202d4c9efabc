// The VMM's platform on Node: the core from build/core.wasm, images and disks from files
// (checked as image-files.ts says), host sockets from node:net and node:dgram, a worker thread
// per pCPU, and the machine's memory, cores and open-file limit to share.
import { MessageChannel, Worker, receiveMessageOnPort, workerData, type MessagePort } from "node:worker_threads";
import { closeSync, existsSync, readFileSync } from "node:fs";
import { totalmem, availableParallelism } from "node:os";
import { join } from "node:path";
import * as Comlink from "comlink";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { threadEnd, type Platform, type PcpuThread } from "../platform";
import type { Pcpu } from "../../hv/pcpu";
import { loadCoreModule, packageRoot } from "./core";
import { openImage, readOpenedImage } from "./image-files";
import { createNodeDiskImage, openNodeDisk, removeNodeDiskImage } from "./disk";
import { nodeHostSockets } from "./host-sockets";
import { createStateFile, openStateFile } from "./state-files";
import { connectMigration } from "./migration";
import { JIT_MODES, type JitMode } from "../../jit/tier";
import { compilerPerThread } from "../../jit/compiler";
import { listenCharSocket } from "./char-socket";
import { zlib } from "./builtins";
import { crc32, useFasterCrc32 } from "../../state/crc32";

/** Debian's OpenSBI (package opensbi): what QEMU's virt board boots by default too. */
export const DEFAULT_FIRMWARE = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin";
/** File descriptors the host keeps for itself (workers, images being read, API clients, logs). */
const HOST_FDS = 256;

// State files and migration streams sum each section with CRC-32: zlib's (Node 20.15 and later)
// where there is one, loaded at the first sum.
useFasterCrc32((bytes, crc) => {
  const native = zlib().crc32 as typeof import("node:zlib").crc32 | undefined;
  useFasterCrc32(typeof native === "function" ? native : null);
  return crc32(bytes, crc);
});

// Images are read into shared memory and kept while some VM holds them: a hundred VMs booting
// the same kernel share one copy, across the worker threads they are sent to too.
const images = new Map<string, WeakRef<Uint8Array>>();

/**
 * The young generation of a pCPU thread's JavaScript heap, at most (MiB; V8's default grows it to
 * 24, three times its 8 MiB semi-space, as a thread allocates fast). The threads that run VMs
 * allocate a little per exit and per step, all of it short-lived, and faster with the translation
 * tier (the same allocations in less time); the young generation V8 grew for that rate stayed
 * resident. The memory suite with the tier, 4 Linux guests on one thread: 8.2-10.2 MiB of host
 * memory per VM with V8's default, 5.27 with 6 MiB (5.29 with 3, where the boot looked slower);
 * the boot as long (docs/PERFORMANCE.md, "The boot's gap phase by phase"). bin/wasmvisor.js
 * starts the first pCPU thread with the same (test/platform/helper-threads.test.ts checks).
 */
export const PCPU_YOUNG_GENERATION_MB = 6;

export const nodePlatform: Platform = {
  coreModule: loadCoreModule,

  // The translation tier is on unless a VM's configuration says otherwise (docs/TRANSLATION.md,
  // "The default"); WASMVISOR_JIT picks the mode for every VM that names none, the whole test
  // suite's too.
  defaultJit() {
    const v = process.env.WASMVISOR_JIT ?? "on";
    if (!(JIT_MODES as readonly string[]).includes(v)) throw new Error(`WASMVISOR_JIT must be off, on or all, not '${v}'`);
    return v as JitMode;
  },

  defaultFirmware(): string {
    if (!existsSync(DEFAULT_FIRMWARE)) {
      throw new Error(`no firmware: the default ${DEFAULT_FIRMWARE} is missing.\n` +
        `  Install Debian's opensbi package (apt-get install opensbi), or pass --bios <file> or --bios none.`);
    }
    return DEFAULT_FIRMWARE;
  },

  readImage(path, { what, maxBytes, dirs }) {
    const img = openImage(path, {
      what, dirs,
      maxBytes: { bytes: maxBytes, hint: `the guest's ${maxBytes / 2 ** 20} MiB of RAM: it does not fit in guest RAM; use a larger --memory` },
    });
    const key = `${img.dev}:${img.ino}\0${img.size}\0${img.mtimeMs}`;
    const cached = images.get(key)?.deref();
    if (cached) {
      closeSync(img.fd);
      return cached;
    }
    const bytes = new Uint8Array(new SharedArrayBuffer(img.size));
    readOpenedImage(img, bytes, what);
    images.set(key, new WeakRef(bytes));
    return bytes;
  },

  // This thread's compile thread for the translation tier.
  // Its replies come on a port of their own, which the tier polls after each step
  // (receiveMessageOnPort) rather than waiting for the event loop's next turn.
  jitCompiler: compilerPerThread(({ onReply, onEnd }) => {
    // The one the launcher started with this thread (its port closing ends it), or a new one.
    const early = takeEarlyCompileThread();
    early?.on("close", () => onEnd("its port closed"));
    const port = early ?? startCompileThread(onEnd);
    port.on("message", onReply);
    port.unref();
    return {
      postMessage: (m, transfer) => port.postMessage(m, transfer),
      poll: () => {
        for (let m = receiveMessageOnPort(port); m; m = receiveMessageOnPort(port)) onReply(m.message);
      },
    };
  }, true), // it picks V8's tier for each translation (v8-tiers.ts)

  openDisk: openNodeDisk,
  createDiskImage: createNodeDiskImage,
  removeDiskImage: removeNodeDiskImage,

  openStateFile,
  createStateFile,
  connectMigration,

  hostSockets: nodeHostSockets,
  listenCharSocket,

  pcpuMayWait: true, // each pCPU is a worker thread
  async startPcpu(): Promise<PcpuThread> {
    const worker = takeEarlyPcpu() ?? new Worker(join(packageRoot(), "dist/pcpu-worker.js"), { resourceLimits: { maxYoungGenerationSizeMb: PCPU_YOUNG_GENERATION_MB } });
    const { end, onExit } = threadEnd();
    worker.on("error", (e) => end(e.message));
    worker.on("exit", (code) => end(`exited with code ${code}`));
    return {
      pcpu: Comlink.wrap<Pcpu>(nodeEndpoint(worker)),
      onExit,
      terminate: async () => { await worker.terminate(); },
    };
  },

  yieldTurn: () => new Promise<void>((resolve) => setImmediate(resolve)),

  resources: () => ({ memory: totalmem(), cpus: availableParallelism(), fileDescriptors: Math.max(0, openFileLimit() - HOST_FDS) }),
};

/**
 * The pCPU thread bin/wasmvisor.js started before loading the CLI (boot and start), once, if it
 * is still well: it started in parallel with this thread's own start, about 40 ms sooner.
 */
function takeEarlyPcpu(): Worker | null {
  const key = Symbol.for("wasmvisor.earlyPcpu");
  const g = globalThis as unknown as Record<symbol, { worker: Worker; failed: boolean } | undefined>;
  const early = g[key];
  delete g[key];
  if (!early) return null;
  if (early.failed) {
    void early.worker.terminate();
    return null;
  }
  early.worker.ref();
  return early.worker;
}

/** A new compile thread for this thread, and the port to it; `onEnd` hears if it fails or exits. */
function startCompileThread(onEnd: (why: string) => void): MessagePort {
  const channel = new MessageChannel();
  const worker = new Worker(join(packageRoot(), "dist/jit-worker.js"), { workerData: { port: channel.port2 }, transferList: [channel.port2] });
  worker.unref(); // it never keeps the process alive
  worker.on("error", (e) => onEnd(e.message));
  worker.on("exit", (code) => onEnd(`exited with code ${code}`));
  return channel.port1;
}

/**
 * The port of the compile thread bin/wasmvisor.js started with this (the early) pCPU thread, once:
 * the thread started while the CLI loaded, rather than when the first VM was built.
 */
function takeEarlyCompileThread(): MessagePort | null {
  const given = workerData as { compileThread?: MessagePort } | null;
  const port = given?.compileThread ?? null;
  if (given) delete given.compileThread;
  return port;
}

/** The process's soft limit on open files (Node raises it to the hard limit at start). */
function openFileLimit(): number {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync("/proc/self/limits", "utf8"));
    if (m) return m[1] === "unlimited" ? 1 << 20 : Number(m[1]);
  } catch {
    // not Linux
  }
  return 1024;
}
