// The platform a pCPU worker sees in a browser: disks, overlays and saved states in the browser's
// storage (reached synchronously), base images over HTTP, user-mode networking relayed to the
// server, migration over a WebSocket.
import type { Platform, StateFileWriter } from "../platform";
import { yieldTurn } from "../turn";
import { createDiskImage, openDiskImage, type DiskFiles } from "../../disk/open";
import { fileSource } from "../../state/container";
import { STORAGE_ROOT as OPFS, storagePath, syncStorage, type SyncStorage } from "./storage";
import { openHttpFile } from "./http-file";
import { checkInDirs } from "../paths";
import { RelayedUserNet } from "../../net/relay";
import type { WorkerInit } from "./pcpu-worker";
import { openWsLink } from "../../migration/ws-link";
import type { ByteLink, MigrationTarget } from "../../migration/link";
import { compilerPerThread } from "../../jit/compiler";

// This pCPU worker's compile thread for the translation tier, beside it.
const jitCompiler = compilerPerThread(({ onReply, onEnd }) => {
  const worker = new Worker(new URL("./jit-worker.js", import.meta.url), { type: "module", name: "wasmvisor translation" });
  worker.onmessage = (e) => onReply(e.data);
  worker.onerror = (e) => onEnd(e.message || "it failed to start");
  return { postMessage: (m, transfer) => worker.postMessage(m, transfer ?? []) };
});


export function workerPlatform(init: WorkerInit): Platform {
  const storage = syncStorage(init.storage);
  // Disks and their backing files, overlays and states: in the host's directories, when it has some.
  const files = (dirs?: readonly string[]): DiskFiles => {
    const all = diskFiles(storage);
    return {
      open: (path, o) => { checkInDirs(path, o.what, dirs); return all.open(path, o); },
      create: (path, o) => { checkInDirs(path, o.what, dirs); return all.create(path, o); },
      remove: all.remove,
    };
  };
  return {
    coreModule: () => init.module,
    jitCompiler,
    defaultFirmware: () => { throw new Error("the default firmware is chosen by the page"); },
    readImage: (path, { what }) => { throw new Error(`${what} ${path}: boot images are read by the page`); },
    openDisk: (path, opts) => openDiskImage(files(opts.dirs), path, opts),
    createDiskImage: (path, opts) => createDiskImage(files(opts.dirs), path, opts),
    removeDiskImage: (path) => { if (path.startsWith(OPFS)) storage.remove(path); },
    openStateFile(path, { what, dirs }) {
      return fileSource(files(dirs).open(path, { readOnly: true, what }), what);
    },
    createStateFile(path, opts) {
      checkInDirs(path, opts.what, opts.dirs);
      return stateFile(storage, path, opts.what, opts.replaces);
    },
    connectMigration: init.migration ? (target, key) => connectMigration(init.migration!, target, key) : undefined,
    remoteUserNet: init.netRelay ? (options, io) => new RelayedUserNet(init.netRelay!, options, io) : undefined,
    pcpuMayWait: true,
    startPcpu: () => Promise.reject(new Error("a pCPU worker starts no pCPUs")),
    yieldTurn,
    resources: () => ({ memory: 2 ** 31, cpus: navigator.hardwareConcurrency || 1, fileDescriptors: Infinity }),
  };
}

// A tab migrates to the server its page came from, over the server's WebSocket; the key is the
// page's session token, which the server checks (with the page's origin) before it takes the link.
function connectMigration(endpoint: string, target: MigrationTarget, key: Uint8Array): Promise<ByteLink> {
  const url = new URL(endpoint);
  const port = Number(url.port || (url.protocol === "wss:" ? 443 : 80));
  if (target.host !== url.hostname || target.port !== port) {
    return Promise.reject(new Error(`this page migrates VMs only to the server it came from (tcp:${url.hostname}:${port}), not tcp:${target.host}:${target.port}`));
  }
  url.searchParams.set("token", new TextDecoder().decode(key));
  return openWsLink(() => new WebSocket(url), `the server at ${url.host}`);
}

/** Disk images' files: under /opfs/ in the browser's storage, anything else served over HTTP (read-only). */
export function diskFiles(storage: SyncStorage): DiskFiles {
  const local = (path: string, what: string) => {
    if (path.split("/").includes("..")) throw new Error(`${what} ${path}: a path with '..' is not taken`);
    return path.startsWith(OPFS);
  };
  return {
    open(path, { readOnly, what }) {
      if (local(path, what)) return storage.open(path, { readOnly, what });
      if (!readOnly) throw new Error(`${what} ${path}: is served over HTTP, so it can only be read; give the VM a copy-on-write overlay in ${OPFS}`);
      return openHttpFile(path, what);
    },
    create(path, { what }) {
      if (!local(path, what)) throw new Error(`${what} ${path}: new files go under ${OPFS}`);
      return storage.create(path, { what });
    },
    remove: (path) => { if (path.startsWith(OPFS)) storage.remove(path); },
  };
}

// A save goes to a file beside its target and takes its name when whole.
function stateFile(storage: SyncStorage, path: string, what: string, replaces?: Uint8Array): StateFileWriter {
  storagePath(path, what);
  if (storage.exists(path)) {
    const old = storage.open(path, { readOnly: true, what });
    try {
      const head = new Uint8Array(replaces?.length ?? 0);
      if (!replaces || old.read(0, head) < head.length || replaces.some((b, i) => head[i] !== b)) {
        throw new Error(`${what} ${path}: a file that is not a ${what} is there; it is not replaced (remove it, or choose another name)`);
      }
    } finally {
      old.close();
    }
  }
  const partial = `${path}.partial`;
  if (storage.exists(partial)) storage.remove(partial);
  const file = storage.create(partial, { what });
  let at = 0;
  return {
    write(chunk) {
      file.write(at, chunk);
      at += chunk.length;
    },
    commit() {
      file.flush();
      file.close();
      storage.rename(partial, path);
    },
    abort() {
      file.close();
      storage.remove(partial);
    },
  };
}
