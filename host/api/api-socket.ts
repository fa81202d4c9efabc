// Where the control API's Unix socket lives, and the ownership checks around it. The socket's
// permissions are the API's access control, so another local user must not be able to put a
// socket (or anything else) where `wasmvisor host` listens or `wasmvisor ctl` connects: they
// would receive VM definitions and console keystrokes.
import { lstatSync, mkdirSync, unlinkSync, type Stats } from "node:fs";
import { net } from "../platform/node/builtins";
import { join } from "node:path";
import { fileKind } from "../platform/node/image-files";

/** The current user's id (0 where the platform has none). */
export const currentUid = (): number => process.getuid?.() ?? 0;

/** The private directory the socket goes in unless --api names one. */
export function defaultSocketDir(env: NodeJS.ProcessEnv = process.env, uid = currentUid()): string {
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, "wasmvisor");
  return uid === 0 ? "/run/wasmvisor" : `/tmp/wasmvisor-${uid}`;
}

export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env, uid = currentUid()): string {
  return join(defaultSocketDir(env, uid), "api.sock");
}

/**
 * Create `dir` (mode 0700) if it is missing. Whether created now or found, it must be a real
 * directory (not a symbolic link) owned by `uid` that no one else may use.
 */
export function ensurePrivateDir(dir: string, uid = currentUid()): void {
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") {
      throw new Error(`cannot create ${dir} for the API socket (${(e as Error).message}); pass --api <socket> in a directory of yours`);
    }
  }
  const st = lstatSync(dir); // someone may have put it there first: check what was found
  const fix = `remove it (rm -r ${dir}, as its owner or root) or pass --api <socket>`;
  if (!st.isDirectory()) throw new Error(`${dir} is ${fileKind(st)}, not a directory, so it cannot hold the API socket privately: ${fix}`);
  if (st.uid !== uid) throw new Error(`${dir} belongs to uid ${st.uid}, not to you (uid ${uid}): another user could take over the API socket in it; ${fix}`);
  if ((st.mode & 0o077) !== 0) {
    throw new Error(`${dir} has mode ${modeOf(st)}: other users could take over the API socket in it; make it private (chmod 700 ${dir}) or pass --api <socket>`);
  }
}

/**
 * Make way for `wasmvisor host` to listen at `path`: nothing there, or a stale socket of this
 * user's that nobody answers on (a host that did not exit cleanly), which is removed. Anything
 * else there is an error: a file is never deleted, another user's socket never replaced.
 */
export async function clearStaleSocket(path: string, uid = currentUid()): Promise<void> {
  const st = lstatIfPresent(path);
  if (!st) return;
  if (!st.isSocket()) throw new Error(`${path} exists and is ${fileKind(st)}, not a socket: wasmvisor host will not replace it; pass another --api path, or remove it yourself`);
  if (st.uid !== uid) throw new Error(`${path} is a socket of uid ${st.uid}, not yours (uid ${uid}): wasmvisor host will not replace it; pass another --api path, or have its owner remove it`);
  if (await socketAnswers(path)) throw new Error(`${path}: another wasmvisor host is listening there; stop it first or pass another --api path`);
  unlinkSync(path);
}

/**
 * Before `wasmvisor ctl` connects: what is at `path` must be a socket of this user's or root's.
 * (Nothing there is left to the connection attempt, which says how to start a host.)
 */
export function checkApiSocket(path: string, uid = currentUid()): void {
  const st = lstatIfPresent(path);
  if (!st) return;
  if (!st.isSocket()) throw new Error(`${path} is ${fileKind(st)}, not the socket of a wasmvisor host: pass --api <socket> of a running host`);
  if (st.uid !== uid && st.uid !== 0) {
    throw new Error(`${path} belongs to uid ${st.uid}, not to you (uid ${uid}) or root: whoever listens there would see what you send, so ctl will not connect; ` +
      `remove it (as its owner or root) and restart your host, or pass --api <socket>`);
  }
}

function lstatIfPresent(path: string): Stats | null {
  try {
    return lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new Error(`cannot look at ${path} (${(e as Error).message}): pass --api <socket> in a directory of yours`);
  }
}

function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net().connect(path);
    s.once("connect", () => { s.destroy(); resolve(true); });
    s.once("error", () => resolve(false));
  });
}


const modeOf = (st: Stats) => `0${(st.mode & 0o777).toString(8)}`;
