// Live migration's link on Node: TLS 1.2 with a pre-shared key (ECDHE-PSK with ChaCha20-Poly1305:
// authenticated, encrypted, forward secret), so only hosts given the same key can send each
// other VMs, and nobody on the path can read or change a VM's memory. No certificates: the key
// is the identity. A host's key is a file only its user can read; hosts of one user on one
// machine share the one in their private runtime directory, so migrating there needs no flags.
import type * as Tls from "node:tls";
import { closeSync, constants, fstatSync, openSync, readSync, writeSync } from "node:fs";
import { crypto, tls } from "./builtins";
import type { Duplex } from "node:stream";
import type { ByteLink, MigrationTarget } from "../../migration/link";

const CIPHERS = "ECDHE-PSK-CHACHA20-POLY1305";
const IDENTITY = "wasmvisor-migration";
const KEY_BYTES = 32;
/** A handshake that has not finished by then is dropped (a peer that connects and says nothing). */
const HANDSHAKE_MS = 10_000;

/**
 * The migration key in `path`: made (32 random bytes, mode 0600) if there is none. A key file
 * others can read, not a regular file, or of an odd size is refused: it would not be a secret.
 */
export function loadMigrationKey(path: string, create = true): Uint8Array {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT" || !create) throw new Error(`migration key ${path}: cannot open it (${(e as Error).message})`);
    try {
      const w = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
      writeSync(w, crypto().randomBytes(KEY_BYTES));
      closeSync(w);
    } catch (e2) {
      if ((e2 as NodeJS.ErrnoException).code !== "EEXIST") throw new Error(`migration key ${path}: cannot create it (${(e2 as Error).message})`);
    }
    return loadMigrationKey(path, false);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error(`migration key ${path}: not a regular file`);
    if ((st.mode & 0o077) !== 0) throw new Error(`migration key ${path}: other users may read it (mode 0${(st.mode & 0o777).toString(8)}); chmod 600 it, and make a new one if it may have leaked`);
    if (process.getuid && st.uid !== process.getuid()) throw new Error(`migration key ${path}: belongs to uid ${st.uid}, not to you`);
    if (st.size < 16 || st.size > 1024) throw new Error(`migration key ${path}: ${st.size} bytes; a key is 16 to 1024 bytes (e.g. head -c 32 /dev/urandom)`);
    const key = new Uint8Array(st.size);
    let done = 0;
    while (done < key.length) {
      const n = readSync(fd, key, done, key.length - done, done);
      if (n === 0) break;
      done += n;
    }
    return key.subarray(0, done);
  } finally {
    closeSync(fd);
  }
}

function byteLink(socket: Tls.TLSSocket, peer: string): ByteLink {
  return {
    peer,
    write: (chunk) => socket.write(chunk),
    drained: () => new Promise((resolve, reject) => {
      if (!socket.writableNeedDrain) return resolve();
      const done = (e?: Error) => { socket.off("drain", ok); socket.off("close", closed); if (e) reject(e); else resolve(); };
      const ok = () => done();
      const closed = () => done(new Error(`the migration link to ${peer} closed`));
      socket.on("drain", ok);
      socket.on("close", closed);
    }),
    chunks: () => socket as AsyncIterable<Uint8Array>,
    close: (now) => { if (now) socket.destroy(); else socket.end(); },
  };
}

/** Connect to a host's migration listener; rejects with a message that says what failed. */
export function connectMigration(target: MigrationTarget, key: Uint8Array): Promise<ByteLink> {
  const peer = `${target.host}:${target.port}`;
  return new Promise((resolve, reject) => {
    const socket = tls().connect({
      host: target.host, port: target.port, ciphers: CIPHERS, minVersion: "TLSv1.2", maxVersion: "TLSv1.2",
      checkServerIdentity: () => undefined, // the key is the identity: only a host that has it completes the handshake
      pskCallback: () => ({ psk: key, identity: IDENTITY }),
    });
    const timer = setTimeout(() => socket.destroy(new Error("no TLS handshake within 10 s")), HANDSHAKE_MS);
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      socket.setNoDelay(true);
      resolve(byteLink(socket, peer));
    });
    socket.once("error", (e) => {
      clearTimeout(timer);
      const bad = /BAD_RECORD_MAC|DECRYPTION_FAILED|HANDSHAKE_FAILURE|alert/i.test(`${(e as NodeJS.ErrnoException).code} ${e.message}`);
      reject(new Error(bad ? `${peer} refused the migration: the hosts' migration keys differ (give both the same --migrate-key)` : `cannot reach the migration listener at ${peer}: ${e.message}`));
    });
  });
}

/**
 * Listen for incoming migrations on `address`: each authenticated connection becomes a link for
 * `onLink`. Connections without the key end in the handshake, and are only counted.
 */
export async function listenMigration(target: MigrationTarget, key: Uint8Array, onLink: (link: ByteLink) => void, onRefused: (peer: string, why: string) => void): Promise<{ port: number; close(): void }> {
  const server = tls().createServer({
    ciphers: CIPHERS, minVersion: "TLSv1.2", maxVersion: "TLSv1.2", handshakeTimeout: HANDSHAKE_MS,
    pskCallback: (_socket: Tls.TLSSocket, identity: string) => (identity === IDENTITY ? key : null),
  }, (socket) => {
    socket.setNoDelay(true);
    socket.on("error", () => {}); // the link's reader sees the failure; the daemon must not
    onLink(byteLink(socket, `${socket.remoteAddress}:${socket.remotePort}`));
  });
  server.on("tlsClientError", (e: Error, socket: Duplex & { remoteAddress?: string; remotePort?: number }) => {
    onRefused(`${socket.remoteAddress}:${socket.remotePort}`, e.message.split("\n")[0]!.replace(/^[0-9A-F]+:error:[0-9A-F]+:SSL routines:/, ""));
  });
  server.on("error", () => {}); // accept() failing (out of descriptors) must not end the daemon
  await new Promise<void>((resolve, reject) => {
    server.once("error", (e) => reject(new Error(`cannot listen for migrations on ${target.host}:${target.port}: ${e.message}`)));
    server.listen(target.port, target.host, () => resolve());
  });
  const addr = server.address();
  return { port: typeof addr === "object" && addr ? addr.port : target.port, close: () => server.close() };
}
