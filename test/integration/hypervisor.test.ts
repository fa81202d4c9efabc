// The hypervisor as a user runs it: a real `wasmvisor host` process, driven through its control
// API (HTTP on a Unix socket) and through `wasmvisor ctl`. Guests: the default Linux guest, and
// small bare-metal programs assembled here (raw images, --bios none) that crash or hang on
// purpose.
import { describe, test, expect, beforeAll, afterAll, afterEach } from "vitest";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { connect as tlsConnect } from "node:tls";
import { connect as connectTcp } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { buildLinuxGuest } from "../../guests/linux/build.mjs";
import { ApiClient } from "../../host/api/api";
import { bytesSource, listSections } from "../../host/state/container";
import type { HostInfo, VmInfo, VmRunStats } from "../../host/hv/types";
import { assemble } from "../../host/util/riscv-asm";
import { ECHO_GUEST, consoleEchoes, malformedRequests, sendAll, statuses } from "../api/malformed-requests";
import { BIN, Session, freePort, pollUntil, runCli, startHost, stopHost } from "./cli";
import { GUEST_SLOWDOWN } from "../board";

let dir: string;
let socket: string;
let host: ChildProcess;
let hostErr = "";
let api: ApiClient;
let linux: { kernel: string; initramfs: string; disk: string };
const programs: Record<string, string> = {};

/** A raw program (M-mode at 0x80000000 with --bios none, S-mode at 0x80200000 on the built-in SBI). */
function program(name: string, src: string, origin = 0x80000000): string {
  const file = join(dir, `${name}.bin`);
  writeFileSync(file, assemble(src, { origin }).bytes);
  return file;
}

beforeAll(async () => {
  linux = await buildLinuxGuest({ log: (line: string) => console.error(line) });
  dir = mkdtempSync(join(tmpdir(), "wasmvisor-host-"));
  socket = join(dir, "api.sock");
  // Spins with a timer interrupt enabled in mie and pending, but mstatus.MIE off: stuck.
  programs.spinner = program("spinner", `
    li t0, 0x2004000
    sd zero, 0(t0)
    li t0, 0x80
    csrw mie, t0
  1:
    j 1b
  `);
  // Reports failure 7 through the test finisher, as a crashing guest's panic handler might.
  programs.crasher = program("crasher", `
    li t0, 0x100000
    li t1, (7 << 16) | 0x3333
    sw t1, 0(t0)
  1:
    j 1b
  `);
  // Busy forever with nothing pending: CPU-bound, not stuck.
  programs.busy = program("busy", `
  1:
    addi a0, a0, 1
    j 1b
  `);
  // A paravirtual guest (S-mode on the built-in SBI) that registers an STA record, then spins
  // until the host reports steal time in it, and says so on the console.
  programs.sta = program("sta", `
    li a0, 0x80300000
    li a1, 0
    li a2, 0
    li a7, 0x535441
    li a6, 0
    ecall
    li t0, 0x80300000
  1:
    ld t1, 8(t0)
    beqz t1, 1b
    li a0, 83
    li a7, 1
    ecall
  2:
    j 2b
  `, 0x80200000);
  host = await startHost(socket, ["--images", dir, "--images", dirname(linux.kernel), "--cpus", "2", "--memory", "1G", "--watchdog", "1", "--vcpus-per-pcpu", "4"], dir, (text) => { hostErr += text; });
  api = new ApiClient(socket);
}, 3_600_000);

// A test that fails leaves its VMs on the host, and the next ones expect a host without any:
// whatever a test leaves goes, so that one failure is one failed test.
afterEach(async () => {
  for (const v of await api.call<VmInfo[]>("GET", "/vms").catch(() => [] as VmInfo[])) {
    await api.call("DELETE", `/vms/${encodeURIComponent(v.name)}`).catch(() => {});
  }
});

afterAll(async () => {
  await stopHost(host);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const linuxVm = (name: string, extra: object = {}) => ({
  name, mode: "para", memory: "64M", kernel: linux.kernel, initrd: linux.initramfs, append: "console=ttyS0", ...extra,
});
const bare = (name: string, prog: string, extra: object = {}) => ({ name, bios: "none", kernel: programs[prog], memory: "16M", ...extra });

const until = <T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs?: number) =>
  pollUntil(what, probe, () => `host log:\n${hostErr}`, timeoutMs);

/** GET / from 127.0.0.1:port (a guest's web server through hostfwd), the whole reply. */
function httpGet(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connectTcp(port, "127.0.0.1", () => s.write("GET / HTTP/1.0\r\n\r\n"));
    let text = "";
    s.on("data", (d: Buffer) => { text += d.toString("latin1"); });
    s.on("end", () => resolve(text));
    s.on("error", reject);
    s.setTimeout(10_000, () => { s.destroy(); reject(new Error(`no answer on port ${port}`)); });
  });
}

/** A TCP port nobody listens on (now). */

async function status(name: string): Promise<VmInfo> {
  return api.call<VmInfo>("GET", `/vms/${name}`);
}

describe("wasmvisor host: the control API", () => {
  test("a Linux VM's life: create, start, console, stats, pause (no progress), resume, stop, destroy", async () => {
    const before = await api.call<HostInfo>("GET", "/host");
    expect(before.pcpus).toBe(2);
    const vm = await api.call<VmInfo>("POST", "/vms", linuxVm("life", { cpu: { weight: 3, cap: 80 } }));
    expect(vm).toMatchObject({ name: "life", state: "created", vcpus: 1, memory: 64 << 20, weight: 3, cap: 80 });
    expect((await api.call<HostInfo>("GET", "/host")).memoryCommitted).toBeGreaterThan(before.memoryCommitted + (64 << 20));
    expect((await api.call<VmInfo>("POST", "/vms/life/start")).state).toBe("running");

    const con = await api.console("life");
    let out = "";
    con.on("data", (d: Buffer) => { out += d.toString("latin1"); });
    await until("the guest's prompt", () => (out.includes("wasmvisor guest ready") ? true : undefined), 120_000 * GUEST_SLOWDOWN);
    con.write("\recho sum-$((20+22))\r");
    await until("the echo", () => (out.includes("sum-42") ? true : undefined));
    con.destroy();

    const s1 = await api.call<VmRunStats>("GET", "/vms/life/stats");
    expect(s1.instructions).toBeGreaterThan(10_000_000);
    expect(s1.cpuMs).toBeGreaterThan(0);
    expect(s1.exits.sbi).toBeGreaterThan(0);

    expect((await api.call<VmInfo>("POST", "/vms/life/pause")).state).toBe("paused");
    const p1 = (await api.call<VmRunStats>("GET", "/vms/life/stats")).instructions;
    await new Promise((r) => setTimeout(r, 300));
    expect((await api.call<VmRunStats>("GET", "/vms/life/stats")).instructions).toBe(p1);
    await expect(api.call("POST", "/vms/life/pause")).rejects.toMatchObject({ status: 409, message: expect.stringMatching(/it is paused/) });
    expect((await api.call<VmInfo>("POST", "/vms/life/resume")).state).toBe("running");
    expect((await api.call<VmInfo>("POST", "/vms/life/stop")).state).toBe("stopped");
    await api.call("DELETE", "/vms/life");
    await expect(status("life")).rejects.toMatchObject({ status: 404 });
    expect((await api.call<HostInfo>("GET", "/host")).memoryCommitted).toBe(before.memoryCommitted);
  }, 180_000 * GUEST_SLOWDOWN);

  test("a disk bandwidth limit holds: direct reads run at most at the limit", async () => {
    const disk = join(dir, "limited.img");
    copyFileSync(linux.disk, disk);
    await api.call("POST", "/vms", linuxVm("limited", { drives: [`file=${disk}`], limits: { diskBytesPerSec: 2_000_000 } }));
    await api.call("POST", "/vms/limited/start");
    const con = await api.console("limited");
    let out = "";
    con.on("data", (d: Buffer) => { out += d.toString("latin1"); });
    await until("the prompt", () => (out.includes("wasmvisor guest ready") ? true : undefined), 120_000 * GUEST_SLOWDOWN);
    con.write("\rdd if=/dev/vda of=/dev/null bs=64k count=64 iflag=direct\r");
    const rate = await until("dd", () => {
      const m = /4194304 bytes \([\d.]+MB\) copied, ([\d.]+) seconds/.exec(out);
      return m ? 4194304 / Number(m[1]) : undefined;
    });
    con.destroy();
    expect(rate).toBeLessThan(2_000_000 * 1.1); // the burst lets a little more through at first
    expect(rate).toBeGreaterThan(2_000_000 * 0.5);
    await api.call("DELETE", "/vms/limited");
  }, 180_000 * GUEST_SLOWDOWN);

  test("paravirtual guests sharing a pCPU learn their steal time through SBI STA", async () => {
    const names = ["sta0", "sta1", "sta2", "sta3"]; // two per pCPU
    for (const name of names) {
      await api.call("POST", "/vms", { name, mode: "para", kernel: programs.sta, memory: "16M" });
      await api.call("POST", `/vms/${name}/start`);
    }
    for (const name of names) {
      const con = await api.console(name);
      let out = "";
      con.on("data", (d: Buffer) => { out += d.toString("latin1"); });
      await until(`${name} to see steal time`, () => (out.includes("S") ? true : undefined));
      con.destroy();
      expect((await api.call<VmRunStats>("GET", `/vms/${name}/stats`)).stealMs).toBeGreaterThan(0);
      await api.call("DELETE", `/vms/${name}`);
    }
  });

  test("a running Linux VM moves to the other pCPU and goes on, console and counters included", async () => {
    const vm = await api.call<VmInfo>("POST", "/vms", linuxVm("mover"));
    await api.call("POST", "/vms/mover/start");
    const con = await api.console("mover");
    let out = "";
    con.on("data", (d: Buffer) => { out += d.toString("latin1"); });
    await until("the prompt", () => (out.includes("wasmvisor guest ready") ? true : undefined), 120_000 * GUEST_SLOWDOWN);
    con.write("\rx=before-move\r");
    const s1 = await api.call<VmRunStats>("GET", "/vms/mover/stats");
    const to = 1 - vm.pcpu;
    const moved = await api.call<VmInfo>("POST", "/vms/mover/move", { pcpu: to });
    expect(moved).toMatchObject({ pcpu: to, state: "running", moves: 1 });
    // The shell's variable survived: same memory, same process, on the other worker.
    con.write("echo $x-$((3*4))\r");
    await until("the echo after the move", () => (out.includes("before-move-12") ? true : undefined));
    con.destroy();
    const s2 = await api.call<VmRunStats>("GET", "/vms/mover/stats");
    expect(s2.instructions).toBeGreaterThan(s1.instructions);
    expect(s2.cpuMs).toBeGreaterThanOrEqual(s1.cpuMs);
    await expect(api.call("POST", "/vms/mover/move", { pcpu: 7 })).rejects.toMatchObject({ status: 400, message: expect.stringMatching(/pCPU 7 does not exist/) });
    await api.call("POST", "/vms/mover/pause");
    expect(await api.call<VmInfo>("POST", "/vms/mover/move", { pcpu: vm.pcpu })).toMatchObject({ pcpu: vm.pcpu, state: "paused", moves: 2 });
    await api.call("DELETE", "/vms/mover");
  }, 180_000 * GUEST_SLOWDOWN);

  test("a Linux VM counting is snapshotted, destroyed and restored twice: each copy counts on from where it was, its disk as it was then", async () => {
    const ctl = (...args: string[]) => runCli(["ctl", "--api", socket, ...args]);
    const disk = join(dir, "counter.img");
    copyFileSync(linux.disk, disk);
    await api.call("POST", "/vms", linuxVm("counter", { drives: [`file=${disk}`] }));
    await api.call("POST", "/vms/counter/start");
    const con = await api.console("counter");
    let before = "";
    con.on("data", (d: Buffer) => { before += d.toString("latin1"); });
    await until("the prompt", () => (before.includes("wasmvisor guest ready") ? true : undefined), 120_000 * GUEST_SLOWDOWN);
    con.write("\recho written-before > /mnt/a.txt && sync && echo a-$((1+1))\r");
    await until("the first file", () => (before.includes("a-2") ? true : undefined));
    con.write("(i=0; while true; do i=$((i+1)); echo n=$i; sleep 0.1; done) &\r");
    await until("the counter", () => (/n=8\r?\n/.test(before) ? true : undefined));
    // Saved while it runs: the VM goes on, writing to an overlay; the image stays as saved.
    const live = await ctl("snapshot", "counter", join(dir, "live.wvs"));
    expect(live).toMatchObject({ code: 0, out: expect.stringMatching(/^counter: saved to .*live\.wvs: [\d.]+ MiB \(\d+ pages\) in [\d.]+ s, paused [\d.]+ ms; running\n$/) });
    const imageAtSnapshot = readFileSync(disk);
    con.write("echo written-after > /mnt/b.txt && sync && echo b-$((2+2))\r");
    await until("the second file", () => (before.includes("b-4") ? true : undefined));
    await until("counting after the live snapshot", () => (/n=14\r?\n/.test(before) ? true : undefined));
    const file = join(dir, "counter.wvs");
    const saved = await ctl("snapshot", "counter", file, "--stop");
    expect(saved).toMatchObject({ code: 0, out: expect.stringMatching(/; stopped\n$/) });
    con.destroy();
    await api.call("DELETE", "/vms/counter");
    expect(readFileSync(disk).equals(imageAtSnapshot)).toBe(true);
    expect(execFileSync("qemu-img", ["check", join(dir, readdirSync(dir).find((f) => /^live\.wvs\.\w+\.disk0\.qcow2$/.test(f))!)]).toString()).toMatch(/No errors were found/);

    const r = await ctl("restore", file, "--name", "copy1");
    expect(r).toMatchObject({ code: 0, out: expect.stringMatching(/^copy1: restored from .*counter\.wvs on pCPU [01]; running\n$/) });
    expect((await api.call<VmInfo>("POST", "/restore", { file, name: "copy2" })).state).toBe("running");
    const numbers = (text: string) => [...text.matchAll(/n=(\d+)\r?\n/g)].map((m) => Number(m[1]));
    const last = Math.max(...numbers(before));
    for (const name of ["copy1", "copy2"]) {
      const c = await api.console(name);
      let after = "";
      c.on("data", (d: Buffer) => { after += d.toString("latin1"); });
      await until(`${name} counting on`, () => (numbers(before + after).includes(last + 5) ? true : undefined));
      // Every number once, in order, across the snapshot: nothing repeated, nothing lost.
      const seq = numbers(before + after);
      expect(seq.slice(0, last + 5)).toEqual(Array.from({ length: last + 5 }, (_, i) => i + 1));
      c.write("cat /mnt/a.txt /mnt/b.txt | tr '\\n' +; echo\r");
      await until(`${name}'s files`, () => (after.includes("written-before+written-after+") ? true : undefined));
      c.destroy();
      await api.call("DELETE", `/vms/${name}`);
    }
    // Back to the live snapshot: the second file was not written yet, on disk as in memory.
    await ctl("restore", join(dir, "live.wvs"), "--name", "past");
    const p = await api.console("past");
    let past = "";
    p.on("data", (d: Buffer) => { past += d.toString("latin1"); });
    p.write("\rls /mnt/a.txt /mnt/b.txt 2>&1 | tr '\\n' +; echo\r");
    await pollUntil("the past's files", () => (/\/mnt\/a\.txt\+ls: \/mnt\/b\.txt: No such file or directory\+|No such file or directory\+\/mnt\/a\.txt\+/.test(past) ? true : undefined),
      () => `its console:\n${past.slice(-3000)}\nhost log:\n${hostErr}`);
    p.destroy();
    await api.call("DELETE", "/vms/past");
    expect(readFileSync(disk).equals(imageAtSnapshot)).toBe(true);

    // A snapshot whose header is damaged is refused and creates nothing; one with a damaged
    // page starts (a restore reads only the index) and fails that VM once the page comes in.
    const bytes = readFileSync(file);
    const header = Buffer.from(bytes);
    header[40] ^= 0xff;
    writeFileSync(join(dir, "bad-header.wvs"), header);
    const bad = await ctl("restore", join(dir, "bad-header.wvs"));
    expect(bad).toMatchObject({ code: 1, err: expect.stringMatching(/snapshot .*bad-header\.wvs.*(checksum|corrupted)/) });
    expect((await api.call<VmInfo[]>("GET", "/vms")).map((v) => v.name)).not.toContain("counter");
    const mem = listSections(bytesSource(bytes), "counter.wvs").find((x) => x.tag === "MEM ")!;
    bytes[mem.offset + mem.length - 1] ^= 0xff; // in a memory section's data
    writeFileSync(join(dir, "bad-page.wvs"), bytes);
    expect(await ctl("restore", join(dir, "bad-page.wvs"))).toMatchObject({ code: 0, err: "" });
    const failed = await until("the damaged page to be found", async () => {
      const v = await status("counter");
      return v.state === "failed" ? v : undefined;
    });
    expect(failed.reason).toMatch(/memory chunk \d+ .*fails its checksum/);
    await api.call("DELETE", "/vms/counter");
  }, 300_000 * GUEST_SLOWDOWN);

  test("a Linux VM counting and writing to its disk migrates live to another host with its disk (block migration) and counts on, its clock running; failures leave it here", async () => {
    const ctl = (...args: string[]) => runCli(["ctl", "--api", socket, ...args]);
    const port = await freePort();
    const bSocket = join(dir, "b.sock");
    // B's own image directory: the disk's copy is made there (the source's stays where it was).
    const dirB = join(dir, "host-b");
    mkdirSync(dirB);
    const disk = join(dir, "traveler.img");
    copyFileSync(linux.disk, disk);
    let bErr = "";
    const b = spawn(process.execPath, [BIN, "host", "--api", bSocket, "--images", dirB, "--images", dirname(linux.kernel), "--cpus", "1", "--memory", "512M", "--migrate-listen", `tcp:127.0.0.1:${port}`],
      { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, XDG_RUNTIME_DIR: dir } });
    b.stderr!.on("data", (d: Buffer) => { bErr += d.toString(); });
    try {
      await until("host B", () => (bErr.includes("accepting migrations on 127.0.0.1:") ? true : undefined));
      const apiB = new ApiClient(bSocket);
      const fwd = await freePort();
      await api.call("POST", "/vms", linuxVm("traveler", { nets: [`user,hostfwd=tcp::${fwd}-:80`], drives: [`file=${disk}`] }));
      await api.call("POST", "/vms/traveler/start");
      const con = await api.console("traveler");
      let out = "";
      con.on("data", (d: Buffer) => { out += d.toString("latin1"); });
      await until("the prompt", () => (out.includes("wasmvisor guest ready") ? true : undefined), 120_000 * GUEST_SLOWDOWN);
      con.write("\rmkdir -p /www && echo served-by-the-traveler > /www/index.html && httpd -h /www && echo httpd-$((6*7))\r");
      await until("httpd", () => (out.includes("httpd-42") ? true : undefined));
      expect(await httpGet(fwd)).toContain("served-by-the-traveler");
      con.write("echo before-the-move > /mnt/a.txt && sync && echo a-$((3+4))\r");
      await until("the file", () => (out.includes("a-7") ? true : undefined));
      // It counts, and writes each number to its disk while it migrates.
      con.write("i=0; while true; do i=$((i+1)); echo n=$i u=$(cut -d' ' -f1 /proc/uptime); echo $i > /mnt/n.txt; sync; sleep 0.1; done\r");
      await until("the counter", () => (/n=5 /.test(out) ? true : undefined));

      // Nobody listening: refused at once, the VM untouched.
      const nowhere = await ctl("migrate", "traveler", `tcp:127.0.0.1:${await freePort()}`);
      expect(nowhere).toMatchObject({ code: 1, err: expect.stringMatching(/cannot reach the migration listener/) });
      expect((await status("traveler")).state).toBe("running");
      // A client without the key gets nothing from B: the handshake fails, and B says so.
      await new Promise<void>((resolve) => {
        const c = tlsConnect({ host: "127.0.0.1", port, ciphers: "ECDHE-PSK-CHACHA20-POLY1305", maxVersion: "TLSv1.2", checkServerIdentity: () => undefined,
          pskCallback: () => ({ psk: Buffer.alloc(32, 7), identity: "wasmvisor-migration" }) });
        c.on("secureConnect", () => { c.destroy(); resolve(); });
        c.on("error", () => resolve());
      });
      await until("B's refusal", () => (/refused a migration connection from 127\.0\.0\.1/.test(bErr) ? true : undefined));

      const wall0 = Date.now();
      const moved = await ctl("migrate", "traveler", `tcp:127.0.0.1:${port}`, "--copy-storage");
      expect(moved.err.replace(/^traveler: (connecting|pre-copy|switch-over|stop-and-copy).*\n/gm, "")).toBe("");
      expect(moved, JSON.stringify(moved)).toMatchObject({ code: 0, out: expect.stringMatching(/^traveler: migrated to tcp:127\.0\.0\.1:\d+ in [\d.]+ s, \d+ round\(s\), [\d.]+ MiB sent \(disks: \d+ blocks of 64 KiB\), downtime [\d.]+ ms( \(pre-copy [^)]*\))?\n$/) }); // (on a loaded machine pre-copy may stop short)
      await expect(status("traveler")).rejects.toMatchObject({ status: 404 });
      expect((await apiB.call<VmInfo>("GET", "/vms/traveler")).state).toBe("running");
      const conB = await apiB.console("traveler");
      let after = "";
      conB.on("data", (d: Buffer) => { after += d.toString("latin1"); });
      const lines = (text: string) => [...text.matchAll(/n=(\d+) u=([\d.]+)\r?\n/g)].map((m) => ({ n: Number(m[1]), u: Number(m[2]) }));
      const last = lines(out).at(-1)!;
      await until("the count on B", () => (lines(after).some((l) => l.n >= last.n + 10) ? true : undefined));
      const wall1 = Date.now();
      // Its hostfwd port followed it: the same host port reaches its web server, now on B.
      expect(await httpGet(fwd)).toContain("served-by-the-traveler");
      conB.destroy();
      con.destroy();
      // Every number once, in order, across the move; the guest's clock ran on through it.
      const seq = lines(out + after);
      expect(seq.map((l) => l.n).slice(0, last.n + 10)).toEqual(Array.from({ length: last.n + 10 }, (_, i) => i + 1));
      const end = seq.find((l) => l.n === last.n + 10)!;
      expect(end.u - last.u).toBeGreaterThan(0.9);
      expect(end.u - last.u).toBeLessThan((wall1 - wall0) / 1000 + 1);
      const info = await apiB.call<{ phase: string }>("GET", "/vms/traveler/migration").catch((e) => e);
      expect(info).toMatchObject({ status: 404 }); // B's VM was not migrated out (A's record went with it)
      // Its disk is a copy in B's directory, with what it wrote before and during the move.
      const copies = readdirSync(dirB).filter((f) => /^traveler\.\w+\.disk0\.qcow2$/.test(f));
      expect(copies).toHaveLength(1);
      const conB2 = await apiB.console("traveler");
      let tail = "";
      conB2.on("data", (d: Buffer) => { tail += d.toString("latin1"); });
      // (The page cache dropped first: what it reads comes from the copy.)
      conB2.write("\x03\rsync; echo 3 > /proc/sys/vm/drop_caches; echo \"[$(cat /mnt/a.txt) $(cat /mnt/n.txt)]\"\r");
      const [, text, n] = await until("the files on B", () => /\[(\S+) (\d+)\]/.exec(tail) ?? undefined);
      expect(text).toBe("before-the-move");
      expect(Number(n)).toBeGreaterThanOrEqual(last.n + 10); // B's own writes went on on the copy
      conB2.destroy();
      await apiB.call("DELETE", "/vms/traveler");
      expect(execFileSync("qemu-img", ["check", join(dirB, copies[0]!)]).toString()).toMatch(/No errors were found/);
      execFileSync("qemu-img", ["convert", "-O", "raw", join(dirB, copies[0]!), join(dir, "copy.raw")]);
      expect(readFileSync(join(dir, "copy.raw")).includes("before-the-move\n")).toBe(true);
      rmSync(join(dir, "copy.raw"));
    } finally {
      b.kill("SIGTERM");
      await new Promise((r) => b.once("exit", r));
    }
  }, 300_000 * GUEST_SLOWDOWN);

  test("a destination killed in the middle of a migration leaves the VM running at the source", async () => {
    const ctl = (...args: string[]) => runCli(["ctl", "--api", socket, ...args]);
    const port = await freePort();
    let cErr = "";
    const c = spawn(process.execPath, [BIN, "host", "--api", join(dir, "c.sock"), "--images", dir, "--images", dirname(linux.kernel), "--cpus", "1", "--memory", "512M", "--migrate-listen", `tcp:127.0.0.1:${port}`],
      { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, XDG_RUNTIME_DIR: dir } });
    c.stderr!.on("data", (d: Buffer) => { cErr += d.toString(); });
    try {
      await until("host C", () => (cErr.includes("accepting migrations on") ? true : undefined));
      await api.call("POST", "/vms", linuxVm("survivor"));
      await api.call("POST", "/vms/survivor/start");
      const con = await api.console("survivor");
      let out = "";
      con.on("data", (d: Buffer) => { out += d.toString("latin1"); });
      await until("the prompt", () => (out.includes("wasmvisor guest ready") ? true : undefined), 120_000 * GUEST_SLOWDOWN);
      // A guest writing memory all the time keeps pre-copy busy for a while; a counter shows it lives.
      con.write("\rwv-bench gap 600000 64 24 >/dev/null & (i=0; while true; do i=$((i+1)); echo n=$i; sleep 0.2; done) &\r");
      await until("the counter", () => (/n=3\r?\n/.test(out) ? true : undefined));
      const migrating = ctl("migrate", "survivor", `tcp:127.0.0.1:${port}`, "--max-rounds", "1000");
      await until("pre-copy under way", async () => {
        const m = await api.call<{ phase: string; round: number }>("GET", "/vms/survivor/migration").catch(() => null);
        return m && m.phase === "pre-copy" && m.round >= 1 ? true : undefined;
      });
      c.kill("SIGKILL");
      const r = await migrating;
      expect(r).toMatchObject({ code: 1, err: expect.stringMatching(/migrating survivor to tcp:127\.0\.0\.1:\d+ failed: .*; it goes on here/) });
      expect((await status("survivor")).state).toBe("running");
      const numbers = () => [...out.matchAll(/n=(\d+)\r?\n/g)].map((m) => Number(m[1]));
      const at = Math.max(...numbers());
      await until("the counter going on", () => (Math.max(...numbers()) >= at + 3 ? true : undefined));
      con.destroy();
      await api.call("DELETE", "/vms/survivor");
    } finally {
      c.kill("SIGKILL");
    }
  }, 300_000 * GUEST_SLOWDOWN);

  test("the balancer spreads busy VMs that ended up on one pCPU", async () => {
    // Four busy VMs land two per pCPU; when both on one pCPU go, the other pCPU has two busy
    // VMs and nothing runs on the first: the balancer moves one over.
    for (const n of [0, 1, 2, 3]) {
      await api.call("POST", "/vms", bare(`bal${n}`, "busy"));
      await api.call("POST", `/vms/bal${n}/start`);
    }
    const vms = await api.call<VmInfo[]>("GET", "/vms");
    const onZero = vms.filter((v) => v.pcpu === 0).map((v) => v.name);
    expect(onZero).toHaveLength(2);
    for (const name of onZero) await api.call("DELETE", `/vms/${name}`);
    const spread = await until("the balancer", async () => {
      const left = await api.call<VmInfo[]>("GET", "/vms");
      return new Set(left.map((v) => v.pcpu)).size === 2 ? left : undefined;
    }, 15_000 * GUEST_SLOWDOWN);
    expect(spread.reduce((n, v) => n + v.moves, 0)).toBe(1);
    for (const v of spread) await api.call("DELETE", `/vms/${v.name}`);
  }, 60_000 * GUEST_SLOWDOWN);

  test("refuses bad definitions with 400 and says which field", async () => {
    const cases: [unknown, RegExp][] = [
      [[], /JSON object/],
      [{ name: "x y" }, /'name' must be/],
      [{ name: "a", mode: "hvm" }, /'mode' must be "para" or "full"/],
      [{ name: "a", jit: "fast" }, /'jit' must be "off", "on" or "all"/],
      [{ name: "a", smp: 9 }, /'smp' must be a whole number from 1 to 8/],
      [{ name: "a", cpu: { weight: -1 } }, /'cpu.weight'/],
      [{ name: "a", cpu: { cap: 150 } }, /'cpu.cap'/],
      [{ name: "a", drives: ["file=x.img,if=scsi"] }, /'drives': if=scsi: use ide or virtio/],
      [{ name: "a", colour: "red" }, /unknown field 'colour'/],
      [{ name: "a", limits: { diskBytesPerSec: -5 } }, /'limits.diskBytesPerSec' must be a positive number/],
      [{ name: "a", kernel: join(dir, "missing") }, /--kernel .*missing: no such file/],
    ];
    for (const [def, msg] of cases) {
      await expect(api.call("POST", "/vms", def), JSON.stringify(def)).rejects.toMatchObject({ status: 400, message: expect.stringMatching(msg) });
    }
    expect(await api.call<VmInfo[]>("GET", "/vms")).toEqual([]);
  });

  test("admission control refuses what does not fit (507) and leaves nothing behind", async () => {
    const before = await api.call<HostInfo>("GET", "/host");
    await expect(api.call("POST", "/vms", bare("huge", "busy", { memory: "2G" }))).rejects.toMatchObject({
      status: 507, message: expect.stringMatching(/needs \d+ MiB of host memory .* MiB are free/),
    });
    await api.call("POST", "/vms", bare("fits", "busy", { memory: "600M" }));
    await expect(api.call("POST", "/vms", bare("second", "busy", { memory: "600M" }))).rejects.toMatchObject({ status: 507 });
    // 8 vCPUs on top of the one "fits" has: more than 2 pCPUs x 4 allow.
    await expect(api.call("POST", "/vms", bare("wide", "busy", { smp: 8 }))).rejects.toMatchObject({
      status: 507, message: "wide needs 8 vCPU(s); 7 of the host's 8 are free",
    });
    await expect(api.call("POST", "/vms", bare("fits", "busy"))).rejects.toMatchObject({ status: 409, message: expect.stringMatching(/exists already/) });
    expect((await api.call<VmInfo[]>("GET", "/vms")).map((v) => v.name)).toEqual(["fits"]);
    await api.call("DELETE", "/vms/fits");
    expect(await api.call<HostInfo>("GET", "/host")).toEqual(before);
  });

  test("a guest that spins with interrupts off is reported stuck; the others keep running", async () => {
    await api.call("POST", "/vms", bare("spinner", "spinner"));
    await api.call("POST", "/vms", bare("neighbour", "busy"));
    await api.call("POST", "/vms/spinner/start");
    await api.call("POST", "/vms/neighbour/start");
    const failed = await until("the watchdog", async () => {
      const v = await status("spinner");
      return v.state === "failed" ? v : undefined;
    });
    expect(failed.reason).toMatch(/stuck: an interrupt waited .* none was taken/);
    // The daemon's log says so too (its stderr may reach us after the API's answer).
    await until("the log line", () => (/wasmvisor host: spinner failed: stuck: an interrupt waited/.test(hostErr) ? true : undefined));
    const n1 = (await api.call<VmRunStats>("GET", "/vms/neighbour/stats")).instructions;
    await new Promise((r) => setTimeout(r, 200));
    expect((await status("neighbour")).state).toBe("running");
    expect((await api.call<VmRunStats>("GET", "/vms/neighbour/stats")).instructions).toBeGreaterThan(n1);
    await api.call("DELETE", "/vms/spinner");
    await api.call("DELETE", "/vms/neighbour");
  });

  test("a crashing guest fails; with onFailure=restart it is restarted, with destroy it goes away", async () => {
    await api.call("POST", "/vms", bare("crash-keep", "crasher"));
    await api.call("POST", "/vms/crash-keep/start");
    const kept = await until("the crash", async () => {
      const v = await status("crash-keep");
      return v.state === "failed" ? v : undefined;
    });
    expect(kept.reason).toBe("failed with code 7");
    await until("the log line", () => (hostErr.includes("wasmvisor host: crash-keep failed: failed with code 7\n") ? true : undefined));
    await api.call("POST", "/vms", bare("crash-restart", "crasher", { onFailure: "restart" }));
    await api.call("POST", "/vms/crash-restart/start");
    // It crashes at once every time: restarted a few times, then left down with the reason.
    const gaveUp = await until("the restart limit", async () => {
      const v = await status("crash-restart");
      return v.state === "failed" && /not restarted/.test(v.reason ?? "") ? v : undefined;
    });
    expect(gaveUp.restarts).toBe(5);
    await until("the log line", () => (hostErr.includes("wasmvisor host: crash-restart failed: failed with code 7 (restarting it)\n") ? true : undefined));
    await api.call("POST", "/vms", bare("crash-destroy", "crasher", { onFailure: "destroy" }));
    await api.call("POST", "/vms/crash-destroy/start");
    await until("the destroy", async () => (await status("crash-destroy").catch(() => null)) === null ? true : undefined);
    await api.call("DELETE", "/vms/crash-keep");
    await api.call("DELETE", "/vms/crash-restart");
  }, 60_000 * GUEST_SLOWDOWN);
});

describe("wasmvisor ctl", () => {
  const ctl = (...args: string[]) => runCli(["ctl", "--api", socket, ...args]);

  test("create, start, list, stats, pause, resume, stop, destroy, host", async () => {
    const def = join(dir, "ctl.json");
    writeFileSync(def, JSON.stringify(bare("ctl-vm", "busy", { cpu: { weight: 2 } })));
    let r = await ctl("create", def);
    expect(r).toMatchObject({ code: 0, out: expect.stringMatching(/^created ctl-vm on pCPU [01]\n$/) });
    expect((await ctl("start", "ctl-vm")).out).toBe("ctl-vm: running\n");
    r = await ctl("list");
    expect(r.out).toMatch(/^NAME\s+STATE\s+PCPU\s+MEMORY\s+VCPUS\s+WEIGHT\s+CAP/);
    expect(r.out).toMatch(/ctl-vm\s+running\s+[01]\s+16 MiB\s+1\s+2\s+-/);
    await new Promise((res) => setTimeout(res, 300));
    r = await ctl("stats", "ctl-vm");
    expect(r.out).toMatch(/ctl-vm: [\d,]+ instructions\n\s+CPU \d+\.\d\d s, steal \d+\.\d\d s/);
    expect((await ctl("pause", "ctl-vm")).out).toBe("ctl-vm: paused\n");
    r = await ctl("pause", "ctl-vm");
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/cannot pause ctl-vm: it is paused/);
    expect((await ctl("resume", "ctl-vm")).out).toBe("ctl-vm: running\n");
    const at = (await api.call<VmInfo>("GET", "/vms/ctl-vm")).pcpu;
    expect((await ctl("move", "ctl-vm", String(1 - at))).out).toBe(`ctl-vm: on pCPU ${1 - at}\n`);
    r = await ctl("move", "ctl-vm", "9");
    expect(r).toMatchObject({ code: 1, err: expect.stringMatching(/pCPU 9 does not exist/) });
    expect((await ctl("stop", "ctl-vm")).out).toBe("ctl-vm: stopped\n");
    expect((await ctl("host")).out).toMatch(/^pCPUs 2; memory \d+ MiB of 1024 MiB committed; vCPUs 1 of 8; file descriptors \d+ of \d+; 1 VM\(s\)\n$/);
    expect((await ctl("destroy", "ctl-vm")).out).toBe("destroyed ctl-vm\n");
    r = await ctl("stats", "ctl-vm");
    expect(r).toMatchObject({ code: 1, err: expect.stringMatching(/no VM named ctl-vm/) });
  }, 30_000 * GUEST_SLOWDOWN); // 15 CLI runs: about 4 s, more when the machine is busy

  test("console: attach, type, see the echo; Ctrl-] detaches, as does the end of piped input", async () => {
    await api.call("POST", "/vms", linuxVm("ctl-con"));
    await api.call("POST", "/vms/ctl-con/start");
    const con = await api.console("ctl-con");
    let seen = "";
    con.on("data", (d: Buffer) => { seen += d.toString("latin1"); });
    await until("the prompt", () => (seen.includes("wasmvisor guest ready") ? true : undefined), 120_000 * GUEST_SLOWDOWN);
    con.destroy();
    // Typed, its answer seen; then the end of the piped input detaches (once the guest has been
    // quiet for a second). The input ends after the answer, not at once: a guest under a slow
    // tier (WASMVISOR_JIT=all) may take longer than that second to answer.
    const typed = async (input: string, answer: RegExp) => {
      const s = new Session(["ctl", "--api", socket, "console", "ctl-con"]);
      try {
        s.send(input);
        await s.expect(answer);
        s.child.stdin!.end();
        return { code: await s.exited, out: s.out, err: s.err };
      } finally {
        s.kill();
      }
    };
    let r = await typed("\recho ctl-$((6*7))\r", /ctl-42/);
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/attached to ctl-con; Ctrl-\] detaches/);
    // Ctrl-] ends the session at once; what came before it still reaches the guest.
    r = await runCli(["ctl", "--api", socket, "console", "ctl-con"], "touch /tmp/ctl-mark\r\x1dnot-sent\r", 20_000);
    expect(r.code).toBe(0);
    r = await typed("ls /tmp/ctl-mark && echo mark-$((1+1))\r", /mark-2/);
    expect(r.code).toBe(0);
    expect(r.out).not.toMatch(/not-sent/);
  }, 180_000 * GUEST_SLOWDOWN);

  test("errors say what to do: no host at the socket, unknown command, bad file", async () => {
    let r = await runCli(["ctl", "--api", join(dir, "nothing.sock"), "list"]);
    expect(r).toMatchObject({ code: 1, err: expect.stringMatching(/no wasmvisor host at .*nothing\.sock: start one with 'wasmvisor host --api/) });
    r = await ctl("frobnicate");
    expect(r).toMatchObject({ code: 2, err: expect.stringMatching(/unknown ctl command 'frobnicate'/) });
    r = await ctl("create", join(dir, "none.json"));
    expect(r).toMatchObject({ code: 2, err: expect.stringMatching(/none\.json: no such file/) });
  });
});

describe("wasmvisor host: malformed requests", () => {
  test("the daemon survives them (malformed URLs, headers, upgrades, bodies) with its VM running and echoing", async () => {
    await api.call("POST", "/vms", { name: "fuzz-echo", bios: "none", kernel: program("echo", ECHO_GUEST), memory: "16M" });
    await api.call("POST", "/vms/fuzz-echo/start");
    await consoleEchoes(api, "fuzz-echo", "before");
    const results = await sendAll(socket, malformedRequests(200, 0xd43, "fuzz-echo"));
    expect(host.exitCode, hostErr).toBeNull();
    expect(results.filter((r) => statuses(r.reply).includes(500)).map((r) => r.probe.label)).toEqual([]);
    expect(await api.call<HostInfo>("GET", "/host")).toMatchObject({ pcpus: 2, vms: 1 });
    expect(await api.call<VmInfo[]>("GET", "/vms")).toMatchObject([{ name: "fuzz-echo", state: "running" }]);
    await consoleEchoes(api, "fuzz-echo", "after-42");
    await api.call("DELETE", "/vms/fuzz-echo");
  }, 60_000 * GUEST_SLOWDOWN);

  test("--api on a regular file: an error that says what it is, and the file stays", async () => {
    const file = join(dir, "notes.txt");
    writeFileSync(file, "precious");
    const r = await runCli(["host", "--api", file, "--cpus", "1"]);
    expect(r).toMatchObject({ code: 1, err: expect.stringContaining(`${file} exists and is a regular file, not a socket: wasmvisor host will not replace it`) });
    expect(readFileSync(file, "utf8")).toBe("precious");
  });
});
