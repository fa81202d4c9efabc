// A character device's host end on a Unix socket wasmvisor listens on (QEMU's -chardev
// socket,path=P,server=on,wait=off): one client at a time; what the guest sends while none is
// connected is dropped, as on a serial line with nothing plugged in.
import type { Server, Socket } from "node:net";
import { net } from "./builtins";
import { existsSync, lstatSync, realpathSync, unlinkSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import type { CharBackend } from "../../devices/backends";
import { inside } from "./image-files";

/** Guest output queued for a slow client; past it, output is dropped. */
const MAX_QUEUED = 1 << 20;
/** Paths this process listens on: one VM's socket is never taken over by another VM of the same host. */
const listening = new Map<string, object>();

/**
 * Listen on `path`, which must be in one of `dirs` (a daemon's image directories; anywhere if
 * undefined): a client of the daemon cannot make it replace a socket elsewhere.
 */
export function listenCharSocket(path: string, io: { onWake?: () => void; dirs?: readonly string[] }): CharBackend {
  if (io.dirs) {
    let real: string;
    try {
      real = join(realpathSync(dirname(path)), basename(path));
    } catch {
      throw new Error(`socket=${path}: its directory does not exist`);
    }
    if (basename(path) === ".." || !io.dirs.some((d) => inside(real, d))) throw new Error(`socket=${path}: not in an image directory of this host (${io.dirs.join(", ")})`);
  }
  const key = resolve(path);
  if (listening.has(key)) throw new Error(`${path}: another character device of this process (a usb-serial of a VM) listens there: give socket= a free path`);
  // A socket file another process left (QEMU 7.2 replaces one too) is replaced; anything else is not.
  if (existsSync(path)) {
    if (!lstatSync(path).isSocket()) throw new Error(`${path}: exists and is not a socket: give socket= a free path`);
    unlinkSync(path);
  }
  let client: Socket | null = null;
  let receive: ((bytes: Uint8Array) => void) | null = null;
  const server: Server = net().createServer((s) => {
    if (client) {
      s.end(); // one client at a time
      return;
    }
    client = s;
    s.on("data", (b: Buffer) => {
      receive?.(new Uint8Array(b.buffer, b.byteOffset, b.length));
      io.onWake?.();
    });
    s.on("error", () => {});
    s.on("close", () => { if (client === s) client = null; });
  });
  server.on("error", () => {});
  server.listen(path);
  server.unref();
  const mine = {};
  listening.set(key, mine);
  return {
    write(bytes) {
      if (client && client.writableLength < MAX_QUEUED) client.write(bytes);
    },
    attach(r) {
      receive = r;
    },
    close() {
      client?.destroy();
      server.close();
      if (listening.get(key) !== mine) return; // closed before (the path may be another's now)
      listening.delete(key);
      try { unlinkSync(path); } catch { /* gone already */ }
    },
  };
}
