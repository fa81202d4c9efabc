// The browser's files, kept by one storage worker (storage-worker.ts) that owns the Origin
// Private File System (or IndexedDB where OPFS's synchronous access handles are missing),
// reached asynchronously from the page and synchronously (Atomics.wait on shared memory) from
// pCPU workers, whose disk formats (host/disk/) need positional I/O that answers at once.
//
// One worker holds every file so that OPFS's exclusive access handles are opened once per file
// and shared (a qcow2 overlay and the code that saves a state may open the same file), and so
// that removing or replacing a file can see who has it open: a file open through any channel is
// neither removed, renamed over nor overwritten by writeFile; that fails, saying to stop the VM
// that uses it first (release() closes what a pCPU worker that was ended left open).
import type { ByteFile } from "../../disk/byte-file";

/** What a pCPU worker is given (structured-cloneable: a MessagePort to transfer, shared memory). */
export interface StorageChannel {
  port: MessagePort;
  shared: SharedArrayBuffer;
  /** Names the channel to release(). */
  id: number;
  /** How long a request waits for the storage worker before it fails (default 30 s). */
  answerTimeoutMs?: number;
}

/** The page's side. Paths are absolute ("/opfs/disk/guest.qcow2"); directories are made as needed. */
export interface BrowserStorage {
  /** What holds the files: "opfs", or "indexeddb" where OPFS cannot be written synchronously. */
  readonly kind: "opfs" | "indexeddb";
  /** A new channel for one pCPU worker (transfer its port). */
  connect(): Promise<StorageChannel>;
  /** Close every file a pCPU worker opened through `channel` (call once the worker is ended). */
  release(channel: StorageChannel): Promise<void>;
  readFile(path: string): Promise<Uint8Array | undefined>;
  /** Create or replace a file (refused while it is open). */
  writeFile(path: string, bytes: Uint8Array): Promise<void>;
  /** Remove a file, or a directory and all under it; nothing there is no error; refused while a file there is open. */
  remove(path: string): Promise<void>;
  /** The paths of the files under a directory (recursively). */
  list(dir: string): Promise<string[]>;
  /** Make what is open durable, close it, and end the storage worker. */
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

export interface StorageOptions {
  /** Keep the files in IndexedDB even where OPFS could be used (tests of the fallback). */
  forceIndexedDB?: boolean;
}

export const STORAGE_ROOT = "/opfs/";

// The channel's shared memory: a header, then the data of one request or answer.
/** Int32 slots: the number of the last request answered, its status, its data's length. */
export const SEQ = 0, STATUS = 1, LENGTH = 2;
/** Byte offset of the answer's number (a handle or a size; float64: sizes pass 2^31). */
export const VALUE_AT = 16;
export const DATA_AT = 32;
/** Reads and writes up to this many bytes take one round trip; larger ones are split. */
export const CHANNEL_DATA = 4 << 20;
export const STATUS_OK = 0, STATUS_ERROR = 1;
const ANSWER_TIMEOUT_MS = 30_000;

/** A request on a channel's port (a write's bytes are in the shared memory). */
export type ChannelRequest = { seq: number } & (
  | { op: "open"; path: string; what: string; readOnly: boolean }
  | { op: "create"; path: string; what: string }
  | { op: "exists" | "remove"; path: string; what: string }
  | { op: "rename"; path: string; to: string; what: string }
  | { op: "read" | "write"; handle: number; offset: number; length: number }
  | { op: "truncate"; handle: number; size: number }
  | { op: "size" | "flush" | "close"; handle: number }
);

/** A request from the page to the storage worker; the answer is { id, result } or { id, error }. */
export type PageRequest = { id: number } & (
  | { op: "init"; forceIndexedDB: boolean }
  | { op: "connect"; port: MessagePort; shared: SharedArrayBuffer; channel: number }
  | { op: "release"; channel: number }
  | { op: "readFile" | "remove" | "list"; path: string }
  | { op: "writeFile"; path: string; bytes: Uint8Array }
  | { op: "shutdown" }
);

/**
 * The parts of a path under the root, checked (the storage worker checks every path it is
 * given; a message starts with `what` and the path). `dir`: a directory's path, which may be
 * the root itself and may end in '/'.
 */
export function storagePath(path: string, what: string, dir = false): string[] {
  if (typeof path !== "string" || !(path.startsWith(STORAGE_ROOT) || (dir && path === STORAGE_ROOT.slice(0, -1)))) {
    throw new Error(`${what} ${String(path)}: the browser keeps files under ${STORAGE_ROOT} only`);
  }
  const parts = path.slice(STORAGE_ROOT.length).split("/");
  if (parts.includes("..")) throw new Error(`${what} ${path}: a path with '..' is not taken`);
  if (dir && parts[parts.length - 1] === "") parts.pop();
  if ((!dir && parts.length === 0) || parts.some((p) => p === "" || p === ".")) {
    throw new Error(`${what} ${path}: not a file's path (it has an empty name or '.' in it)`);
  }
  return parts;
}

/** Start the storage worker (storage-worker.js at `workerUrl`) and reach it from the page. */
export async function startStorage(workerUrl: string | URL, opts: StorageOptions = {}): Promise<BrowserStorage> {
  if (typeof SharedArrayBuffer === "undefined") {
    throw new Error("the browser's storage needs SharedArrayBuffer: serve the page cross-origin isolated " +
      "('Cross-Origin-Opener-Policy: same-origin', 'Cross-Origin-Embedder-Policy: require-corp')");
  }
  const worker = new Worker(workerUrl, { type: "module", name: "wasmvisor storage" });
  const pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  let nextId = 1;
  let nextChannel = 1;
  let ended: string | undefined;
  const end = (why: string) => {
    ended ??= why;
    for (const p of pending.values()) p.reject(new Error(ended));
    pending.clear();
  };
  worker.onmessage = (e: MessageEvent<{ id: number; result?: unknown; error?: string }>) => {
    const p = pending.get(e.data.id);
    if (!p) return;
    pending.delete(e.data.id);
    if (e.data.error !== undefined) p.reject(new Error(e.data.error));
    else p.resolve(e.data.result);
  };
  worker.onerror = (e) => {
    e.preventDefault();
    end(`the storage worker ${String(workerUrl)} failed: ${e.message || "it could not be loaded"}; reload the page`);
  };
  const request = <T>(req: Without<PageRequest, "id">, transfer: Transferable[] = []): Promise<T> => {
    if (ended) return Promise.reject(new Error(ended));
    const id = nextId++;
    return new Promise<T>((resolve, reject) => {
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      worker.postMessage({ ...req, id }, transfer);
    });
  };
  let kind: BrowserStorage["kind"];
  try {
    kind = await request<BrowserStorage["kind"]>({ op: "init", forceIndexedDB: opts.forceIndexedDB ?? false });
  } catch (e) {
    worker.terminate();
    throw e;
  }
  return {
    kind,
    async connect() {
      const { port1, port2 } = new MessageChannel();
      const shared = new SharedArrayBuffer(DATA_AT + CHANNEL_DATA);
      const id = nextChannel++;
      await request({ op: "connect", port: port2, shared, channel: id }, [port2]);
      return { port: port1, shared, id };
    },
    release: (channel) => request({ op: "release", channel: channel.id }),
    readFile: (path) => request<Uint8Array | undefined>({ op: "readFile", path }),
    writeFile: (path, bytes) => request({ op: "writeFile", path, bytes }),
    remove: (path) => request({ op: "remove", path }),
    list: (dir) => request<string[]>({ op: "list", path: dir }),
    close() {
      if (ended) return;
      // The worker ends itself once what is open is durable.
      worker.postMessage({ op: "shutdown", id: 0 });
      end("the browser's storage is closed");
    },
  };
}

/** In a pCPU worker: reach the storage worker through `channel`, synchronously. */
export function syncStorage(channel: StorageChannel): SyncStorage {
  const link = new SyncChannel(channel);
  const file = (path: string, what: string, readOnly: boolean, handle: number): ByteFile => new StoredFile(link, path, what, readOnly, handle);
  return {
    open(path, { readOnly, what }) {
      return file(path, what, readOnly, link.call({ op: "open", path, what, readOnly }, what, path).value);
    },
    create(path, { what }) {
      return file(path, what, false, link.call({ op: "create", path, what }, what, path).value);
    },
    exists: (path) => link.call({ op: "exists", path, what: "file" }, "file", path).value === 1,
    remove(path) {
      link.call({ op: "remove", path, what: "file" }, "file", path);
    },
    rename(from, to) {
      link.call({ op: "rename", path: from, to, what: "file" }, "file", from);
    },
  };
}

type Without<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
type Unsequenced<T> = Without<T, "seq">;

class SyncChannel {
  private readonly header: Int32Array;
  private readonly value: Float64Array;
  readonly data: Uint8Array;
  private seq = 0;
  private broken: string | undefined;
  /** A request that timed out: its answer must land before the next request is sent (it would land on that one's data). */
  private late = 0;

  constructor(private readonly channel: StorageChannel) {
    this.header = new Int32Array(channel.shared, 0, 4);
    this.value = new Float64Array(channel.shared, VALUE_AT, 1);
    this.data = new Uint8Array(channel.shared, DATA_AT, CHANNEL_DATA);
  }

  /** Send `req` and wait for its answer; its error, or a silent worker, becomes an Error naming `what` and `path`. */
  call(req: Unsequenced<ChannelRequest>, what: string, path: string): { value: number; length: number } {
    if (this.broken) throw new Error(`${what} ${path}: ${this.broken}`);
    const timeout = this.channel.answerTimeoutMs ?? ANSWER_TIMEOUT_MS;
    // A worker busy with something long (a large state the page writes) answers late: once it
    // has, the channel goes on; one that never does has ended it.
    if (this.late) {
      if (!this.answered(this.late, timeout)) {
        this.broken = `the storage worker has not answered for ${(2 * timeout) / 1000} s; reload the page`;
        throw new Error(`${what} ${path}: ${this.broken}`);
      }
      this.late = 0;
    }
    this.seq = this.seq >= 0x7fffffff ? 1 : this.seq + 1;
    const seq = this.seq;
    this.channel.port.postMessage({ ...req, seq });
    if (!this.answered(seq, timeout)) {
      this.late = seq;
      throw new Error(`${what} ${path}: the storage worker did not answer within ${timeout / 1000} s`);
    }
    const length = this.header[LENGTH];
    if (this.header[STATUS] !== STATUS_OK) {
      throw new Error(new TextDecoder().decode(this.data.slice(0, length)));
    }
    return { value: this.value[0], length };
  }

  /** Whether request `seq` is answered within `timeoutMs`. */
  private answered(seq: number, timeoutMs: number): boolean {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const answered = Atomics.load(this.header, SEQ);
      if (answered === seq) return true;
      const left = deadline - performance.now();
      if (left <= 0) return false;
      Atomics.wait(this.header, SEQ, answered, left);
    }
  }
}

class StoredFile implements ByteFile {
  readonly identity: string;
  private closed = false;

  constructor(
    private readonly link: SyncChannel,
    readonly name: string,
    private readonly what: string,
    readonly readOnly: boolean,
    private readonly handle: number,
  ) {
    this.identity = `storage:${name}`;
  }

  private call(req: Unsequenced<ChannelRequest>) {
    if (this.closed) throw new Error(`${this.what} ${this.name}: is closed`);
    return this.link.call(req, this.what, this.name);
  }

  private checkWrite(): void {
    if (this.readOnly) throw new Error(`${this.what} ${this.name}: is open read-only`);
  }

  private checkOffset(offset: number): void {
    if (!Number.isSafeInteger(offset) || offset < 0) throw new Error(`${this.what} ${this.name}: offset ${offset} is not a byte offset`);
  }

  size(): number {
    return this.call({ op: "size", handle: this.handle }).value;
  }

  read(offset: number, dst: Uint8Array): number {
    this.checkOffset(offset);
    let done = 0;
    while (done < dst.length) {
      const want = Math.min(CHANNEL_DATA, dst.length - done);
      const { length } = this.call({ op: "read", handle: this.handle, offset: offset + done, length: want });
      dst.set(this.link.data.subarray(0, length), done);
      done += length;
      if (length < want) break;
    }
    return done;
  }

  write(offset: number, src: Uint8Array): void {
    this.checkWrite();
    this.checkOffset(offset);
    let done = 0;
    do {
      const n = Math.min(CHANNEL_DATA, src.length - done);
      this.link.data.set(src.subarray(done, done + n));
      this.call({ op: "write", handle: this.handle, offset: offset + done, length: n });
      done += n;
    } while (done < src.length);
  }

  truncate(size: number): void {
    this.checkWrite();
    this.checkOffset(size);
    this.call({ op: "truncate", handle: this.handle, size });
  }

  flush(): void {
    this.call({ op: "flush", handle: this.handle });
  }

  close(): void {
    if (this.closed) return;
    this.call({ op: "close", handle: this.handle });
    this.closed = true;
  }
}
