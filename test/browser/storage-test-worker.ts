// The storage test's stand-in for a pCPU worker: it reaches the storage as a pCPU does (a
// channel, synchronously) and the served image over HTTP, runs what the test asks, and answers
// with what it saw.
import { syncStorage, type StorageChannel, type SyncStorage } from "../../host/platform/browser/storage";
import { openHttpFile } from "../../host/platform/browser/http-file";
import { diskFiles } from "../../host/platform/browser/worker-platform";
import { createDiskImage, openDiskImage, type DiskFiles } from "../../host/disk/open";
import type { DiskBackend } from "../../host/devices/backends";
import { basePattern, writtenPattern, firstMismatch } from "./storage-patterns";

let storage: SyncStorage;
let files: DiskFiles;
let disk: DiskBackend | undefined;

/** The message of what `work` throws ("" when it does not). */
function thrown(work: () => unknown): string {
  try {
    work();
    return "";
  } catch (e) {
    return (e as Error).message;
  }
}

function read(offset: number, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  disk!.read(offset, bytes);
  return bytes;
}

const ops: Record<string, (args: any) => unknown> = {
  init({ channel }: { channel: StorageChannel }) {
    storage = syncStorage(channel);
    files = diskFiles(storage);
  },
  createOverlay({ overlay, base }: { overlay: string; base: string }) {
    createDiskImage(files, overlay, { backing: { path: base, format: "raw" }, what: "disk" });
  },
  openOverlay({ overlay }: { overlay: string }) {
    disk = openDiskImage(files, overlay, { readOnly: false, what: "disk" });
    return { size: disk.size, format: disk.format };
  },
  /** Write the written pattern at [offset, offset + length). */
  write({ offset, length }: { offset: number; length: number }) {
    const bytes = new Uint8Array(length);
    for (let i = 0; i < length; i++) bytes[i] = writtenPattern(offset + i);
    disk!.write(offset, bytes);
  },
  /** Where [offset, offset + length) differs from the pattern it should hold (-1: nowhere). */
  check({ offset, length, written }: { offset: number; length: number; written: boolean }) {
    return firstMismatch(read(offset, length), offset, written ? writtenPattern : basePattern);
  },
  flushOverlay() {
    disk!.flush();
  },
  closeOverlay() {
    disk!.flush();
    disk!.close();
    disk = undefined;
  },
  /** Two opens of one file share it; a write through one is read through the other. */
  sharedOpens({ path }: { path: string }) {
    const a = storage.open(path, { readOnly: false, what: "disk" });
    const b = storage.open(path, { readOnly: true, what: "state" });
    const at = a.size();
    a.write(at, new Uint8Array([1, 2, 3, 4]));
    const seen = new Uint8Array(4);
    const n = b.read(at, seen);
    const writeReadOnly = thrown(() => b.write(0, new Uint8Array(1)));
    a.truncate(at);
    const sizeAfter = b.size();
    b.close();
    a.close();
    return { same: a.identity === b.identity, n, seen: [...seen], writeReadOnly, sizeAfter, sizeBefore: at };
  },
  /** A file's life: create, big writes and reads (more than one channel's worth), rename over another. */
  fileLife({ dir }: { dir: string }) {
    const partial = `${dir}/state.partial`, done = `${dir}/state`;
    const f = storage.create(partial, { what: "state" });
    const big = new Uint8Array(9 << 20);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31 + (i >>> 16)) & 255;
    f.write(0, big);
    const back = new Uint8Array(big.length);
    const n = f.read(0, back);
    f.flush();
    f.close();
    const createAgain = thrown(() => storage.create(partial, { what: "state" }));
    const old = storage.create(done, { what: "state" });
    old.write(0, new Uint8Array([9, 9, 9]));
    old.close();
    storage.rename(partial, done);
    const g = storage.open(done, { readOnly: true, what: "state" });
    const size = g.size();
    const head = new Uint8Array(8);
    g.read(0, head);
    const afterClose = (g.close(), thrown(() => g.size()));
    return {
      n, same: back.every((b, i) => b === big[i]), createAgain, size, head: [...head], expectHead: [...big.subarray(0, 8)],
      partialExists: storage.exists(partial), doneExists: storage.exists(done), afterClose,
    };
  },
  /** Reads at and past the end of a stored file and of a served one. */
  pastTheEnd({ path, served }: { path: string; served: string }) {
    const f = storage.create(path, { what: "disk" });
    f.write(0, new Uint8Array(1000).fill(7));
    const buf = new Uint8Array(100).fill(0xee);
    const straddle = f.read(950, buf);
    const tail = [buf[49], buf[50]];
    const beyond = f.read(5000, buf);
    const negative = thrown(() => f.read(-1, buf));
    f.close();
    storage.remove(path);
    const h = openHttpFile(served, "disk");
    const size = h.size();
    const hbuf = new Uint8Array(100);
    const hStraddle = h.read(size - 10, hbuf);
    const hBeyond = h.read(size + 10, hbuf);
    const hWrite = thrown(() => h.write(0, hbuf));
    h.close();
    return { straddle, tail, beyond, negative, hStraddle, hBeyond, hWrite };
  },
  /** One read across several chunks of a served file; then the same bytes again (from the cache). */
  spanningRead({ served, offset, length }: { served: string; offset: number; length: number }) {
    const h = openHttpFile(served, "disk");
    const bytes = new Uint8Array(length);
    h.read(offset, bytes);
    const again = new Uint8Array(length);
    h.read(offset, again);
    h.close();
    return { mismatch: firstMismatch(bytes, offset, basePattern), againMismatch: firstMismatch(again, offset, basePattern) };
  },
  /** A served file read front to back in `step`-byte reads, as a disk copied for a migration is. */
  sequentialRead({ served, step }: { served: string; step: number }) {
    const h = openHttpFile(served, "disk");
    const bytes = new Uint8Array(step);
    let mismatch = -1;
    for (let at = 0; at < h.size() && mismatch < 0; at += step) {
      const n = h.read(at, bytes);
      const m = firstMismatch(bytes.subarray(0, n), at, basePattern);
      if (m >= 0) mismatch = m;
    }
    h.close();
    return mismatch;
  },
  exists: ({ path }: { path: string }) => thrown(() => storage.exists(path)),
  leaveOpen({ path }: { path: string }) {
    storage.open(path, { readOnly: false, what: "disk" });
  },
  hostile({ noRange, missing }: { noRange: string; missing: string }) {
    return {
      dotdot: thrown(() => storage.open("/opfs/a/../b.qcow2", { readOnly: true, what: "disk" })),
      dotdotCreate: thrown(() => storage.create("/opfs/../escape", { what: "disk" })),
      dotdotServed: thrown(() => files.open("/images/../secret", { readOnly: true, what: "disk" })),
      outside: thrown(() => storage.create("/elsewhere/x", { what: "disk" })),
      emptyName: thrown(() => storage.create("/opfs/a//b", { what: "disk" })),
      missing: thrown(() => storage.open("/opfs/no/such.qcow2", { readOnly: true, what: "disk" })),
      servedMissing: thrown(() => openHttpFile(missing, "disk")),
      noRange: thrown(() => openHttpFile(noRange, "disk").read(0, new Uint8Array(512))),
      writeServed: thrown(() => files.open("/images/base.raw", { readOnly: false, what: "disk" })),
    };
  },
};

const scope = self as unknown as { onmessage: ((e: MessageEvent) => void) | null; postMessage(m: unknown): void };
scope.onmessage = (e: MessageEvent<{ op: string; args: unknown }>) => {
  try {
    scope.postMessage({ result: ops[e.data.op](e.data.args) });
  } catch (err) {
    scope.postMessage({ error: (err as Error).message });
  }
};
