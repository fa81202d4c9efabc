// Where the control API's socket lives and who may have put what there: the default socket is
// in a private directory, `host` refuses a directory or path another user controls, and `ctl`
// will not talk to a socket another (non-root) user owns.
import { describe, test, expect, beforeEach, afterEach, vi } from "vitest";
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defaultSocketPath, ensurePrivateDir, clearStaleSocket, checkApiSocket, currentUid } from "../../host/api/api-socket";
import { hostCommand, ctlCommand } from "../../host/cli/hv";

let dir: string;
let savedRuntimeDir: string | undefined;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "wasmvisor-sock-"));
  savedRuntimeDir = process.env.XDG_RUNTIME_DIR;
});
afterEach(() => {
  if (savedRuntimeDir === undefined) delete process.env.XDG_RUNTIME_DIR;
  else process.env.XDG_RUNTIME_DIR = savedRuntimeDir;
  rmSync(dir, { recursive: true, force: true });
});

/** A socket file nobody listens on (what a host that exited without closing leaves). */
function staleSocket(path: string): void {
  execFileSync(process.execPath, ["-e", `require("node:net").createServer().listen(${JSON.stringify(path)}, () => process.exit(0))`]);
}

/** Make `path` belong to a user other than `uid` and root, as seen by the checks for `uid`; returns that uid. */
function ownedByAnotherUser(path: string): number {
  if (currentUid() === 0) {
    chownSync(path, 65534, 65534); // nobody
    return 0;
  }
  return currentUid() + 1; // a check on behalf of someone else sees our file as foreign
}

describe("the default socket", () => {
  test("is api.sock in $XDG_RUNTIME_DIR/wasmvisor, /run/wasmvisor for root, else /tmp/wasmvisor-<uid>", () => {
    expect(defaultSocketPath({ XDG_RUNTIME_DIR: "/run/user/1000" }, 1000)).toBe("/run/user/1000/wasmvisor/api.sock");
    expect(defaultSocketPath({}, 0)).toBe("/run/wasmvisor/api.sock");
    expect(defaultSocketPath({}, 1000)).toBe("/tmp/wasmvisor-1000/api.sock");
  });

  test("wasmvisor host makes its directory 0700 and the socket 0600 in it; ctl finds it there", async () => {
    process.env.XDG_RUNTIME_DIR = dir;
    const socket = join(dir, "wasmvisor", "api.sock");
    const stderr = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    const stdout = vi.spyOn(process.stdout, "write").mockImplementation(() => true);
    try {
      const host = hostCommand(["--cpus", "1", "--memory", "64M"]);
      for (let i = 0; i < 200 && !existsSync(socket); i++) await new Promise((r) => setTimeout(r, 50));
      expect((statSync(join(dir, "wasmvisor")).mode & 0o777).toString(8)).toBe("700");
      expect((statSync(socket).mode & 0o777).toString(8)).toBe("600");
      expect(await ctlCommand(["host"])).toBe(0);
      expect(stdout).toHaveBeenCalledWith(expect.stringMatching(/^pCPUs 1; /));
      process.emit("SIGTERM"); // hostCommand's own listener: it stops every VM and returns
      expect(await host).toBe(0);
    } finally {
      stderr.mockRestore();
      stdout.mockRestore();
    }
  }, 30_000);

  test("wasmvisor host refuses a directory someone put there first, before starting anything", async () => {
    process.env.XDG_RUNTIME_DIR = dir;
    const elsewhere = join(dir, "elsewhere");
    mkdirSync(elsewhere, { mode: 0o700 });
    symlinkSync(elsewhere, join(dir, "wasmvisor"));
    await expect(hostCommand(["--cpus", "1"])).rejects.toThrow(
      `${join(dir, "wasmvisor")} is a symbolic link, not a directory, so it cannot hold the API socket privately: remove it`);
  });
});

describe("the socket's directory", () => {
  test("is created 0700 whatever the umask, and found again", () => {
    const d = join(dir, "wasmvisor");
    const umask = process.umask(0);
    try {
      ensurePrivateDir(d);
    } finally {
      process.umask(umask);
    }
    expect((lstatSync(d).mode & 0o777).toString(8)).toBe("700");
    ensurePrivateDir(d);
  });

  test("must be a real directory of the user's, with no access for others; the error says what to do", () => {
    const d = join(dir, "wasmvisor");
    writeFileSync(d, "");
    expect(() => ensurePrivateDir(d)).toThrow(`${d} is a regular file, not a directory, so it cannot hold the API socket privately: remove it (rm -r ${d}, as its owner or root) or pass --api <socket>`);
    rmSync(d);
    mkdirSync(d, { mode: 0o700 });
    chmodSync(d, 0o755);
    expect(() => ensurePrivateDir(d)).toThrow(`${d} has mode 0755: other users could take over the API socket in it; make it private (chmod 700 ${d}) or pass --api <socket>`);
    chmodSync(d, 0o700);
    const uid = ownedByAnotherUser(d);
    expect(() => ensurePrivateDir(d, uid)).toThrow(new RegExp(`^${d} belongs to uid \\d+, not to you \\(uid ${uid}\\): another user could take over the API socket in it; remove it`));
  });
});

describe("what is already at the socket path", () => {
  test("wasmvisor host replaces a stale socket only if it is the user's", async () => {
    const path = join(dir, "api.sock");
    staleSocket(path);
    const uid = ownedByAnotherUser(path);
    await expect(clearStaleSocket(path, uid)).rejects.toThrow(new RegExp(`is a socket of uid \\d+, not yours \\(uid ${uid}\\): wasmvisor host will not replace it; pass another --api path`));
    expect(lstatSync(path).isSocket()).toBe(true);
  });

  test("wasmvisor ctl talks only to a socket of the user's or root's", async () => {
    const path = join(dir, "api.sock");
    staleSocket(path);
    checkApiSocket(path); // the user's own
    if (currentUid() === 0) checkApiSocket(path, 4242); // root's serving another user
    const uid = ownedByAnotherUser(path);
    expect(() => checkApiSocket(path, uid)).toThrow(new RegExp(`^${path} belongs to uid \\d+, not to you \\(uid ${uid}\\) or root: whoever listens there would see what you send, so ctl will not connect`));
  });

  test("wasmvisor ctl checks before it connects", async () => {
    const file = join(dir, "notes.txt");
    writeFileSync(file, "precious");
    await expect(ctlCommand(["--api", file, "list"])).rejects.toThrow(`${file} is a regular file, not the socket of a wasmvisor host: pass --api <socket> of a running host`);
    expect(readFileSync(file, "utf8")).toBe("precious");
  });

  test.runIf(currentUid() === 0)("wasmvisor ctl refuses another user's socket (as root: one chowned to nobody)", async () => {
    const path = join(dir, "api.sock");
    staleSocket(path);
    chownSync(path, 65534, 65534);
    await expect(ctlCommand(["--api", path, "list"])).rejects.toThrow(/belongs to uid 65534, not to you \(uid 0\) or root/);
  });
});
