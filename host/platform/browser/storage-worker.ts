// The storage worker (see storage.ts): it owns the origin's files. Where OPFS gives synchronous
// access handles they hold the files ("/opfs/a/b.qcow2" is the file b.qcow2 in OPFS's directory
// a); elsewhere IndexedDB does, each open file kept in memory here and its changed blocks
// written back when it is flushed or closed. Every request, from the page or a pCPU's channel,
// runs in turn, so no two see a file half-changed; each file is opened once, shared by all who
// open it, and closed when the last of them does.
import {
  CHANNEL_DATA, DATA_AT, LENGTH, SEQ, STATUS, STATUS_ERROR, STATUS_OK, STORAGE_ROOT, VALUE_AT, storagePath,
  type ChannelRequest, type PageRequest,
} from "./storage";

/** One file's bytes, wherever they are kept. */
interface Contents {
  size(): number;
  /** Fill `dst` from `at`; the bytes read (fewer at the end). */
  read(dst: Uint8Array, at: number): number;
  write(src: Uint8Array, at: number): void;
  truncate(size: number): void;
  flush(): Promise<void> | void;
  /** Flush and let go. */
  close(): Promise<void> | void;
}

/** Where the files are kept. `parts` come from storagePath. */
interface Store {
  readonly kind: "opfs" | "indexeddb";
  /** "existing": undefined when there is none; "new": it must not exist; "any": made when missing. */
  open(parts: string[], mode: "existing" | "new" | "any", label: string): Promise<Contents | undefined>;
  exists(parts: string[], label: string): Promise<boolean>;
  /** A file, or a directory and all under it; nothing there is no error. */
  remove(parts: string[], label: string): Promise<void>;
  /** Replace `to` with `from`. */
  rename(from: string[], to: string[], label: string): Promise<void>;
  /** Paths (without the root) of the files under a directory. */
  list(parts: string[], label: string): Promise<string[]>;
}

// --- OPFS ----------------------------------------------------------------------------------------

// Not in TypeScript's DOM library (they exist in workers only).
interface SyncAccessHandle {
  read(buffer: Uint8Array, opts: { at: number }): number;
  write(buffer: Uint8Array, opts: { at: number }): number;
  truncate(size: number): void;
  getSize(): number;
  flush(): void;
  close(): void;
}
type SyncFileHandle = FileSystemFileHandle & {
  createSyncAccessHandle(): Promise<SyncAccessHandle>;
  move?(dir: FileSystemDirectoryHandle, name: string): Promise<void>;
};
type IterableDirectory = FileSystemDirectoryHandle & { entries(): AsyncIterable<[string, FileSystemHandle]> };

const domError = (e: unknown) => (e instanceof DOMException ? e.name : "");
/** The browser's own message, after ours. */
const failed = (label: string, e: unknown) => new Error(`${label}: ${(e as Error).message}`);

class OpfsStore implements Store {
  readonly kind = "opfs";
  constructor(private readonly root: FileSystemDirectoryHandle) {}

  /** The directory `parts` names; undefined when missing and not `create`. */
  private async dir(parts: string[], create: boolean, label: string): Promise<FileSystemDirectoryHandle | undefined> {
    let dir = this.root;
    for (const name of parts) {
      try {
        dir = await dir.getDirectoryHandle(name, { create });
      } catch (e) {
        if (domError(e) === "NotFoundError") return undefined;
        if (domError(e) === "TypeMismatchError") throw new Error(`${label}: ${name} in it is a file, not a directory`);
        throw failed(label, e);
      }
    }
    return dir;
  }

  private async file(parts: string[], create: boolean, label: string): Promise<SyncFileHandle | undefined> {
    const dir = await this.dir(parts.slice(0, -1), create, label);
    if (!dir) return undefined;
    try {
      return await dir.getFileHandle(parts[parts.length - 1], { create }) as SyncFileHandle;
    } catch (e) {
      if (domError(e) === "NotFoundError") return undefined;
      if (domError(e) === "TypeMismatchError") throw new Error(`${label}: is a directory`);
      throw failed(label, e);
    }
  }

  async open(parts: string[], mode: "existing" | "new" | "any", label: string): Promise<Contents | undefined> {
    if (mode === "new" && await this.file(parts, false, label)) throw new Error(`${label}: already exists; a new file needs a new name`);
    const file = await this.file(parts, mode !== "existing", label);
    if (!file) return undefined;
    let handle: SyncAccessHandle;
    try {
      handle = await file.createSyncAccessHandle();
    } catch (e) {
      if (domError(e) === "NoModificationAllowedError") throw new Error(`${label}: is in use in another tab or window of this site; close it there`);
      throw failed(label, e);
    }
    // The browser's errors (a full quota above all) said with the file's name.
    const io = <T>(work: () => T): T => {
      try {
        return work();
      } catch (e) {
        if (domError(e) === "QuotaExceededError") throw new Error(`${label}: the browser's storage quota for this site is used up; remove disks or states it no longer needs`);
        throw failed(label, e);
      }
    };
    return {
      size: () => io(() => handle.getSize()),
      read: (dst, at) => io(() => handle.read(dst, { at })),
      write(src, at) {
        if (io(() => handle.write(src, { at })) !== src.length) throw new Error(`${label}: a write was cut short (is the browser's storage quota used up?)`);
      },
      truncate: (size) => io(() => handle.truncate(size)),
      flush: () => io(() => handle.flush()),
      close: () => io(() => { handle.flush(); handle.close(); }),
    };
  }

  async exists(parts: string[], label: string): Promise<boolean> {
    return (await this.file(parts, false, label)) !== undefined;
  }

  async remove(parts: string[], label: string): Promise<void> {
    const dir = await this.dir(parts.slice(0, -1), false, label);
    if (!dir) return;
    if (parts.length === 0) {
      for await (const [name] of (this.root as IterableDirectory).entries()) await this.root.removeEntry(name, { recursive: true });
      return;
    }
    try {
      await dir.removeEntry(parts[parts.length - 1], { recursive: true });
    } catch (e) {
      if (domError(e) !== "NotFoundError") throw failed(label, e);
    }
  }

  async rename(from: string[], to: string[], label: string): Promise<void> {
    const file = await this.file(from, false, label);
    if (!file) throw new Error(`${label}: no such file`);
    const dir = (await this.dir(to.slice(0, -1), true, label))!;
    const name = to[to.length - 1];
    if (file.move) {
      try {
        await file.move(dir, name); // replaces the target at once where the browser does (Chromium)
      } catch {
        await this.remove(to, label);
        await file.move(dir, name).catch((e: unknown) => { throw failed(label, e); });
      }
      return;
    }
    const src = (await this.open(from, "existing", label))!;
    try {
      const dst = (await this.open(to, "any", label))!;
      try {
        const bytes = new Uint8Array(src.size());
        src.read(bytes, 0);
        dst.truncate(0);
        dst.write(bytes, 0);
      } finally {
        await dst.close();
      }
    } finally {
      await src.close();
    }
    await this.remove(from, label);
  }

  async list(parts: string[], label: string): Promise<string[]> {
    const out: string[] = [];
    const walk = async (dir: FileSystemDirectoryHandle, prefix: string) => {
      for await (const [name, entry] of (dir as IterableDirectory).entries()) {
        if (entry.kind === "file") out.push(prefix + name);
        else await walk(entry as FileSystemDirectoryHandle, `${prefix}${name}/`);
      }
    };
    const dir = await this.dir(parts, false, label);
    if (dir) await walk(dir, parts.map((p) => `${p}/`).join(""));
    return out.sort();
  }
}

// --- IndexedDB -----------------------------------------------------------------------------------

// Files are { id, size } by path; their bytes are blocks keyed [id, index], so renaming a file
// rewrites one record and replaces the target in one transaction.
const BLOCK = 64 << 10;
const FILES = "files", BLOCKS = "blocks";
interface FileRecord { id: string; size: number }

const done = (req: IDBRequest) => new Promise<unknown>((resolve, reject) => {
  req.onsuccess = () => resolve(req.result);
  req.onerror = () => reject(req.error ?? new Error("IndexedDB failed"));
});
const committed = (tx: IDBTransaction) => new Promise<void>((resolve, reject) => {
  tx.oncomplete = () => resolve();
  tx.onerror = tx.onabort = () => reject(tx.error ?? new Error("an IndexedDB transaction was aborted"));
});
const blocksOf = (id: string, from = 0) => IDBKeyRange.bound([id, from], [id, Infinity]);

class IdbStore implements Store {
  readonly kind = "indexeddb";
  constructor(private readonly db: IDBDatabase) {}

  static async open(): Promise<IdbStore> {
    const req = indexedDB.open("wasmvisor-storage", 1);
    req.onupgradeneeded = () => {
      req.result.createObjectStore(FILES);
      req.result.createObjectStore(BLOCKS);
    };
    return new IdbStore(await done(req) as IDBDatabase);
  }

  private tx(write: boolean, durable = false): IDBTransaction {
    return this.db.transaction([FILES, BLOCKS], write ? "readwrite" : "readonly", { durability: durable ? "strict" : "default" });
  }

  private record(path: string): Promise<FileRecord | undefined> {
    return done(this.tx(false).objectStore(FILES).get(path)) as Promise<FileRecord | undefined>;
  }

  async open(parts: string[], mode: "existing" | "new" | "any", label: string): Promise<Contents | undefined> {
    const path = parts.join("/");
    let record = await this.record(path);
    if (record && mode === "new") throw new Error(`${label}: already exists; a new file needs a new name`);
    if (!record) {
      if (mode === "existing") return undefined;
      record = { id: crypto.randomUUID(), size: 0 };
      const tx = this.tx(true, true);
      tx.objectStore(FILES).put(record, path);
      await committed(tx);
    }
    const tx = this.tx(false);
    const [keys, values] = await Promise.all([
      done(tx.objectStore(BLOCKS).getAllKeys(blocksOf(record.id))),
      done(tx.objectStore(BLOCKS).getAll(blocksOf(record.id))),
    ]) as [[string, number][], Uint8Array[]];
    const file = new IdbFile(this.db, path, record, label);
    keys.forEach(([, index], i) => file.load(index, values[i]));
    return file;
  }

  async exists(parts: string[], _label: string): Promise<boolean> {
    return (await this.record(parts.join("/"))) !== undefined;
  }

  /** Paths under `parts` (a file, or a directory's files). */
  private async under(parts: string[]): Promise<string[]> {
    const path = parts.join("/");
    const all = await done(this.tx(false).objectStore(FILES).getAllKeys()) as string[];
    return all.filter((p) => path === "" || p === path || p.startsWith(`${path}/`));
  }

  async remove(parts: string[], _label: string): Promise<void> {
    const paths = await this.under(parts);
    const tx = this.tx(true, true);
    for (const p of paths) {
      const req = tx.objectStore(FILES).get(p);
      req.onsuccess = () => {
        const record = req.result as FileRecord | undefined;
        if (!record) return;
        tx.objectStore(BLOCKS).delete(blocksOf(record.id));
        tx.objectStore(FILES).delete(p);
      };
    }
    await committed(tx);
  }

  async rename(from: string[], to: string[], label: string): Promise<void> {
    const [src, dst] = [from.join("/"), to.join("/")];
    const tx = this.tx(true, true);
    const files = tx.objectStore(FILES);
    const [record, old] = await Promise.all([done(files.get(src)), done(files.get(dst))]) as (FileRecord | undefined)[];
    if (!record) {
      tx.abort();
      throw new Error(`${label}: no such file`);
    }
    if (old) tx.objectStore(BLOCKS).delete(blocksOf(old.id));
    files.put(record, dst);
    files.delete(src);
    await committed(tx);
  }

  async list(parts: string[], _label: string): Promise<string[]> {
    return (await this.under(parts)).filter((p) => p !== parts.join("/") || parts.length === 0).sort();
  }
}

/** A file held in memory; flush() writes the blocks changed since to IndexedDB. */
class IdbFile implements Contents {
  private bytes: Uint8Array;
  private length: number;
  private readonly dirty = new Set<number>();
  /** Blocks from here on were cut off by a truncate and must go from the store. */
  private cutFrom = Infinity;

  // An open file is neither renamed nor removed, so its path stays its own while open.
  constructor(private readonly db: IDBDatabase, private readonly path: string, private readonly record: FileRecord, private readonly label: string) {
    this.length = record.size;
    this.bytes = new Uint8Array(record.size);
  }

  load(index: number, block: Uint8Array): void {
    const at = index * BLOCK;
    if (at < this.length) this.bytes.set(block.subarray(0, this.length - at), at);
  }

  size(): number {
    return this.length;
  }

  read(dst: Uint8Array, at: number): number {
    const n = Math.max(0, Math.min(dst.length, this.length - at));
    dst.set(this.bytes.subarray(at, at + n));
    return n;
  }

  write(src: Uint8Array, at: number): void {
    if (at + src.length > this.length) this.resize(at + src.length);
    this.bytes.set(src, at);
    this.mark(at, at + src.length);
  }

  truncate(size: number): void {
    if (size < this.length) this.cutFrom = Math.min(this.cutFrom, Math.ceil(size / BLOCK));
    const old = this.length;
    this.resize(size);
    this.mark(Math.min(old, size), Math.max(old, size));
  }

  private mark(from: number, to: number): void {
    for (let b = Math.floor(from / BLOCK); b * BLOCK < to; b++) this.dirty.add(b);
  }

  private resize(size: number): void {
    if (size > this.bytes.length) {
      // Doubling keeps a growing image's copies to O(size) in all.
      const grown = new Uint8Array(Math.max(size, Math.min(this.bytes.length * 2, size + (256 << 20))));
      grown.set(this.bytes.subarray(0, this.length));
      this.bytes = grown;
    } else if (size > this.length) {
      this.bytes.fill(0, this.length, size);
    }
    this.length = size;
  }

  async flush(): Promise<void> {
    const tx = this.db.transaction([FILES, BLOCKS], "readwrite", { durability: "strict" });
    const blocks = tx.objectStore(BLOCKS);
    if (this.cutFrom !== Infinity) blocks.delete(blocksOf(this.record.id, this.cutFrom));
    for (const b of this.dirty) {
      const at = b * BLOCK;
      if (at < this.length) blocks.put(this.bytes.slice(at, Math.min(at + BLOCK, this.length)), [this.record.id, b]);
    }
    tx.objectStore(FILES).put({ id: this.record.id, size: this.length }, this.path);
    const dirty = [...this.dirty];
    this.dirty.clear();
    const cut = this.cutFrom;
    this.cutFrom = Infinity;
    try {
      await committed(tx);
    } catch (e) {
      for (const b of dirty) this.dirty.add(b);
      this.cutFrom = Math.min(this.cutFrom, cut);
      throw new Error(`${this.label}: could not be written to IndexedDB (${(e as Error).message})`);
    }
  }

  close(): Promise<void> {
    return this.flush();
  }
}

// --- Open files and requests ---------------------------------------------------------------------

interface OpenFile { path: string; contents: Contents; refs: number }
interface Handle { file: OpenFile; readOnly: boolean; channel: number; label: string }

let store: Store | undefined;
const openFiles = new Map<string, OpenFile>();
const handles = new Map<number, Handle>();
let nextHandle = 1;

// Requests run one at a time, in the order they came.
let tail: Promise<unknown> = Promise.resolve();
function inTurn<T>(work: () => Promise<T> | T): Promise<T> {
  const run = tail.then(work);
  tail = run.catch(() => {});
  return run;
}

function ready(): Store {
  if (!store) throw new Error("the storage worker was not started");
  return store;
}

async function pickStore(forceIndexedDB: boolean): Promise<Store> {
  const syncHandles = typeof FileSystemFileHandle !== "undefined" && "createSyncAccessHandle" in FileSystemFileHandle.prototype;
  if (!forceIndexedDB && syncHandles && navigator.storage?.getDirectory) {
    try {
      return new OpfsStore(await navigator.storage.getDirectory());
    } catch {
      // OPFS refused (a private window in some browsers): IndexedDB then.
    }
  }
  if (typeof indexedDB === "undefined") throw new Error("this browser gives the page neither OPFS nor IndexedDB to keep files in");
  return IdbStore.open();
}

const pathOf = (parts: string[]) => STORAGE_ROOT + parts.join("/");

function openUnder(parts: string[]): OpenFile | undefined {
  const path = pathOf(parts);
  for (const f of openFiles.values()) if (f.path === path || f.path.startsWith(`${path}/`) || parts.length === 0) return f;
  return undefined;
}

function refuseOpen(parts: string[], label: string, doing: string): void {
  const open = openUnder(parts);
  if (open) throw new Error(`${label}: cannot be ${doing} while ${open.path} is open (a VM's disk or a save in progress); stop the VM that uses it first`);
}

async function acquire(parts: string[], mode: "existing" | "new" | "any", label: string): Promise<OpenFile | undefined> {
  const path = pathOf(parts);
  let file = openFiles.get(path);
  if (file) {
    if (mode === "new") throw new Error(`${label}: already exists; a new file needs a new name`);
  } else {
    const contents = await ready().open(parts, mode, label);
    if (!contents) return undefined;
    file = { path, contents, refs: 0 };
    openFiles.set(path, file);
  }
  file.refs++;
  return file;
}

async function releaseFile(file: OpenFile): Promise<void> {
  if (--file.refs > 0) return;
  openFiles.delete(file.path);
  await file.contents.close();
}

function handleOf(id: number): Handle {
  const h = handles.get(id);
  if (!h) throw new Error(`storage: no open file has handle ${id}`);
  return h;
}

function checkRange(h: Handle, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0 || length > CHANNEL_DATA) {
    throw new Error(`${h.label}: a request for ${length} bytes at ${offset} is out of range`);
  }
}

/** One channel request; its answer's number (a handle, a size, 1/0) and how many bytes of data it left. */
async function channelRequest(req: ChannelRequest, channel: number, data: Uint8Array): Promise<{ value: number; length: number }> {
  const none = { value: 0, length: 0 };
  switch (req.op) {
    case "open":
    case "create": {
      const label = `${req.what} ${req.path}`;
      const parts = storagePath(req.path, req.what);
      const file = await acquire(parts, req.op === "create" ? "new" : "existing", label);
      if (!file) throw new Error(`${label}: no such file`);
      const id = nextHandle++;
      handles.set(id, { file, readOnly: req.op === "open" && req.readOnly, channel, label });
      return { value: id, length: 0 };
    }
    case "exists":
      return { value: (await ready().exists(storagePath(req.path, req.what), `${req.what} ${req.path}`)) ? 1 : 0, length: 0 };
    case "remove": {
      const parts = storagePath(req.path, req.what);
      refuseOpen(parts, `${req.what} ${req.path}`, "removed");
      await ready().remove(parts, `${req.what} ${req.path}`);
      return none;
    }
    case "rename": {
      const from = storagePath(req.path, req.what);
      const to = storagePath(req.to, req.what);
      refuseOpen(from, `${req.what} ${req.path}`, "renamed");
      refuseOpen(to, `${req.what} ${req.to}`, "replaced");
      await ready().rename(from, to, `${req.what} ${req.path}`);
      return none;
    }
    case "read": {
      const h = handleOf(req.handle);
      checkRange(h, req.offset, req.length);
      return { value: 0, length: h.file.contents.read(data.subarray(0, req.length), req.offset) };
    }
    case "write": {
      const h = handleOf(req.handle);
      checkRange(h, req.offset, req.length);
      if (h.readOnly) throw new Error(`${h.label}: is open read-only`);
      h.file.contents.write(data.subarray(0, req.length), req.offset);
      return none;
    }
    case "truncate": {
      const h = handleOf(req.handle);
      checkRange(h, req.size, 0);
      if (h.readOnly) throw new Error(`${h.label}: is open read-only`);
      h.file.contents.truncate(req.size);
      return none;
    }
    case "size":
      return { value: handleOf(req.handle).file.contents.size(), length: 0 };
    case "flush":
      await handleOf(req.handle).file.contents.flush();
      return none;
    case "close": {
      const h = handleOf(req.handle);
      handles.delete(req.handle);
      await releaseFile(h.file);
      return none;
    }
    default:
      throw new Error(`storage: unknown request ${JSON.stringify((req as { op: unknown }).op)}`);
  }
}

function serveChannel(port: MessagePort, shared: SharedArrayBuffer, channel: number): void {
  const header = new Int32Array(shared, 0, 4);
  const value = new Float64Array(shared, VALUE_AT, 1);
  const data = new Uint8Array(shared, DATA_AT, CHANNEL_DATA);
  port.onmessage = (e: MessageEvent<ChannelRequest>) => {
    const req = e.data;
    void inTurn(() => channelRequest(req, channel, data)).then(
      (answer) => {
        header[STATUS] = STATUS_OK;
        header[LENGTH] = answer.length;
        value[0] = answer.value;
      },
      (err: unknown) => {
        const text = new TextEncoder().encode(oneLine(err));
        const n = Math.min(text.length, CHANNEL_DATA);
        data.set(text.subarray(0, n));
        header[STATUS] = STATUS_ERROR;
        header[LENGTH] = n;
      },
    ).then(() => {
      Atomics.store(header, SEQ, req.seq);
      Atomics.notify(header, SEQ);
    });
  };
}

const oneLine = (e: unknown) => (e instanceof Error ? e.message : String(e)).replace(/\s*\n\s*/g, " ");

function readWhole(file: OpenFile): Uint8Array {
  const bytes = new Uint8Array(file.contents.size());
  file.contents.read(bytes, 0);
  return bytes;
}

async function pageRequest(req: PageRequest): Promise<unknown> {
  const what = "storage";
  switch (req.op) {
    case "init":
      store = await pickStore(req.forceIndexedDB);
      return store.kind;
    case "connect":
      serveChannel(req.port, req.shared, req.channel);
      return undefined;
    case "release":
      for (const [id, h] of handles) {
        if (h.channel !== req.channel) continue;
        handles.delete(id);
        await releaseFile(h.file);
      }
      return undefined;
    case "readFile": {
      const parts = storagePath(req.path, what);
      const file = await acquire(parts, "existing", `${what} ${req.path}`);
      if (!file) return undefined;
      try {
        return readWhole(file);
      } finally {
        await releaseFile(file);
      }
    }
    case "writeFile": {
      const parts = storagePath(req.path, what);
      const label = `${what} ${req.path}`;
      refuseOpen(parts, label, "replaced");
      if (!(req.bytes instanceof Uint8Array)) throw new Error(`${label}: the bytes to write are not a Uint8Array`);
      const file = (await acquire(parts, "any", label))!;
      try {
        file.contents.truncate(0);
        file.contents.write(req.bytes, 0);
        await file.contents.flush();
      } finally {
        await releaseFile(file);
      }
      return undefined;
    }
    case "remove": {
      const parts = storagePath(req.path, what, true);
      refuseOpen(parts, `${what} ${req.path}`, "removed");
      await ready().remove(parts, `${what} ${req.path}`);
      return undefined;
    }
    case "list":
      return (await ready().list(storagePath(req.path, what, true), `${what} ${req.path}`)).map((p) => STORAGE_ROOT + p);
    case "shutdown":
      for (const file of openFiles.values()) await Promise.resolve().then(() => file.contents.close()).catch(() => {});
      openFiles.clear();
      handles.clear();
      return undefined;
    default:
      throw new Error(`storage: unknown request ${JSON.stringify((req as { op: unknown }).op)}`);
  }
}

const scope = self as unknown as { onmessage: ((e: MessageEvent<PageRequest>) => void) | null; postMessage(m: unknown, t?: Transferable[]): void; close(): void };
scope.onmessage = (e) => {
  const req = e.data;
  void inTurn(() => pageRequest(req)).then(
    (result) => {
      if (req.op === "shutdown") return scope.close();
      scope.postMessage({ id: req.id, result }, result instanceof Uint8Array ? [result.buffer] : []);
    },
    (err: unknown) => scope.postMessage({ id: req.id, error: oneLine(err) }),
  );
};
