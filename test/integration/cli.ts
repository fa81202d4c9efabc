// Drive the real `wasmvisor` CLI as a user would: a child process with the console on pipes.
import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { createServer, type AddressInfo } from "node:net";
import { join } from "node:path";
import { packageRoot } from "../../host/platform/node/core";
import { GUEST_SLOWDOWN } from "../board";

// Found from the package root, so this also works bundled into dist/ (the boot benchmark).
export const BIN = join(packageRoot(), "bin/wasmvisor.js");

export class Session {
  readonly child: ChildProcess;
  out = "";
  err = "";
  readonly exited: Promise<number>;

  /**
   * `wasmvisor <args>`, or with `command` another program (QEMU, to compare) with its console on
   * pipes; `env`: its environment (default: this process's).
   */
  constructor(args: string[], opts: { command?: string; env?: NodeJS.ProcessEnv } = {}) {
    const o: SpawnOptions = { stdio: ["pipe", "pipe", "pipe"], env: opts.env ?? process.env };
    this.child = opts.command ? spawn(opts.command, args, o) : spawn(process.execPath, [BIN, ...args], o);
    this.child.stdout!.on("data", (d: Buffer) => { this.out += d.toString("latin1"); });
    this.child.stderr!.on("data", (d: Buffer) => { this.err += d.toString("latin1"); });
    this.exited = new Promise((resolve) => this.child.on("exit", (code, signal) => resolve(code ?? (signal ? 128 : -1))));
  }

  /** Wait until stdout (after position `from`) contains `text`; returns the index after it. */
  async expect(text: string | RegExp, timeoutMs = 30_000 * GUEST_SLOWDOWN, from = 0): Promise<number> {
    const t0 = Date.now();
    for (;;) {
      const hay = this.out.slice(from);
      const idx = typeof text === "string" ? hay.indexOf(text) : hay.search(text);
      if (idx >= 0) return from + idx + (typeof text === "string" ? text.length : 1);
      if (Date.now() - t0 > timeoutMs) {
        throw new Error(`timed out waiting for ${String(text)}; output so far:\n${this.out.slice(-3000)}\nstderr:\n${this.err}`);
      }
      if (this.child.exitCode !== null) throw new Error(`process exited (${this.child.exitCode}) before ${String(text)}:\n${this.out.slice(-3000)}\n${this.err}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  send(text: string): void {
    this.child.stdin!.write(text);
  }

  kill(): void {
    this.child.kill("SIGKILL");
  }
}

/** Run the CLI to completion and collect its output. */
export async function runCli(args: string[], input = "", timeoutMs = 60_000): Promise<{ code: number; out: string; err: string }> {
  const s = new Session(args);
  if (input) s.send(input);
  s.child.stdin!.end();
  const timer = setTimeout(() => s.kill(), timeoutMs);
  const code = await s.exited;
  clearTimeout(timer);
  return { code, out: s.out, err: s.err };
}

/** Run `body` against a CLI session and always end the process afterwards. */
export async function withSession<T>(args: string[], body: (s: Session) => Promise<T>): Promise<T> {
  const s = new Session(args);
  try {
    return await body(s);
  } finally {
    s.kill();
  }
}

/**
 * Start the real `wasmvisor web` on a free port serving the guest in `guestDir`; resolves with
 * its process and the page's URL once it listens. Its stderr goes to `onStderr` too.
 */
export function startWebCommand(guestDir: string, onStderr: (text: string) => void = () => {}): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [BIN, "web", "--port", "0", "--guest", guestDir], { stdio: ["ignore", "ignore", "pipe"] });
  return new Promise((resolve, reject) => {
    let err = "";
    child.stderr!.on("data", (d: Buffer) => {
      onStderr(d.toString());
      err += d.toString();
      const m = /serving (http:\/\/\S+)/.exec(err);
      if (m) resolve({ child, url: m[1]! });
    });
    child.on("exit", (code) => reject(new Error(`wasmvisor web exited (${code}): ${err}`)));
  });
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Start the `wasmvisor host` daemon with its API on `socket` and its runtime directory (where the
 * default migration key goes) `runtimeDir`; resolves once its API listens. Its stderr goes to
 * `onStderr` as it comes.
 */
export async function startHost(socket: string, args: string[], runtimeDir: string, onStderr: (text: string) => void): Promise<ChildProcess> {
  const host = spawn(process.execPath, [BIN, "host", "--api", socket, ...args],
    { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, XDG_RUNTIME_DIR: runtimeDir } });
  let err = "";
  host.stderr!.on("data", (d: Buffer) => { err += d.toString(); onStderr(d.toString()); });
  const t0 = Date.now();
  while (!err.includes("API on")) {
    if (Date.now() - t0 > 20_000 || host.exitCode !== null) throw new Error(`the host did not start:\n${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return host;
}

/** Stop a daemon startHost() started (if it still runs) and wait for it to exit. */
export async function stopHost(host: ChildProcess | undefined): Promise<void> {
  if (!host || host.exitCode !== null) return;
  host.kill("SIGTERM");
  await new Promise((r) => host.once("exit", r));
}

/** Poll `probe` every 50 ms until it gives a value; on a timeout the error names `what` and adds `context()`. */
export async function pollUntil<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, context: () => string, timeoutMs = 30_000 * GUEST_SLOWDOWN): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}; ${context()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
