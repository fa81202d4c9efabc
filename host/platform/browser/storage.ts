// CONTRACT (helper fills in): the browser's files, kept by one storage worker that owns the Origin
// Private File System (or IndexedDB where OPFS's synchronous access handles are missing), reached
// asynchronously from the page and synchronously (Atomics.wait on shared memory) from pCPU workers,
// whose disk formats (host/disk/) need positional I/O that answers at once.
import type { ByteFile } from "../../disk/byte-file";

/** What a pCPU worker is given (structured-cloneable: a MessagePort to transfer, shared memory). */
export interface StorageChannel {
  port: MessagePort;
  shared: SharedArrayBuffer;
}

/** The page's side. Paths are absolute ("/opfs/disk/guest.qcow2"); directories are made as needed. */
export interface BrowserStorage {
  /** What holds the files: "opfs", or "indexeddb" where OPFS cannot be written synchronously. */
  readonly kind: "opfs" | "indexeddb";
  /** A new channel for one pCPU worker (transfer its port). */
  connect(): Promise<StorageChannel>;
  readFile(path: string): Promise<Uint8Array | undefined>;
  writeFile(path: string, bytes: Uint8Array): Promise<void>;
  /** Remove a file, or a directory and all under it; nothing there is no error. */
  remove(path: string): Promise<void>;
  /** The paths of the files under a directory (recursively). */
  list(dir: string): Promise<string[]>;
  close(): void;
}

/** In a pCPU worker: synchronous access through a channel. Errors are one line and start with `what` and the path. */
export interface SyncStorage {
  open(path: string, opts: { readOnly: boolean; what: string }): ByteFile;
  /** Create `path`, which must not exist, empty and open for writing. */
  create(path: string, opts: { what: string }): ByteFile;
  exists(path: string): boolean;
  remove(path: string): void;
  /** Replace `to` with `from` (a save put in place whole). */
  rename(from: string, to: string): void;
}

export function startStorage(workerUrl: string | URL): Promise<BrowserStorage> { throw new Error(`TODO ${String(workerUrl)}`); }
export function syncStorage(channel: StorageChannel): SyncStorage { throw new Error(`TODO ${String(channel)}`); }
