// QMP and the human monitor of `wasmvisor qemu`, driven by a real QMP client over the socket:
// the same command sequence against the real qemu-system-riscv64 and against wasmvisor gives
// replies and events of the same shapes; hostile input gets QMP's errors and the server goes
// on; the human monitor on a socket and on the terminal (Ctrl-A c); migration driven by QMP to
// a `wasmvisor host`.
import { describe, test, expect, beforeAll, afterAll } from "vitest";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, readFileSync } from "node:fs";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { asm } from "../../host/util/riscv-asm";
import { BIN, Session, freePort } from "./cli";
import { GUEST_SLOWDOWN } from "../board";
import { QmpClient, shape, type QmpReply } from "./qmp-client";
import { README_QEMU_LINES, qemuArgs } from "./qemu-lines";

let dir: string;
let loop: string;
let poweroff: string;
let reboot: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "wasmvisor-qmp-"));
  loop = join(dir, "loop.bin");
  writeFileSync(loop, asm`
  1: j 1b
  `);
  // The sifive test device: 0x5555 powers off, 0x7777 resets.
  poweroff = join(dir, "poweroff.bin");
  writeFileSync(poweroff, asm`
    li t0, 0x100000
    li t1, 0x5555
    sw t1, 0(t0)
  1: j 1b
  `);
  reboot = join(dir, "reboot.bin");
  writeFileSync(reboot, asm`
    li t0, 0x100000
    li t1, 0x7777
    sw t1, 0(t0)
  1: j 1b
  `);
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Running {
  child: ChildProcess;
  out: () => string;
  guest: () => string;
  exited: Promise<number>;
}
function run(argv: string[], env: NodeJS.ProcessEnv = process.env): Running {
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ["pipe", "pipe", "pipe"], env });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => { out += d.toString("latin1"); });
  child.stderr!.on("data", (d: Buffer) => { out += d.toString("latin1"); });
  const exited = new Promise<number>((resolve) => child.on("exit", (code, signal) => resolve(code ?? (signal ? 128 : -1))));
  // What the guest printed: the output less the lines the emulator itself writes (a temporary
  // directory's name may hold any letter).
  const guest = () => out.replace(/^(wasmvisor|qemu-system-riscv64): .*$/gm, "");
  return { child, out: () => out, guest, exited };
}
// Prints B on the UART, then loops.
const HELLO_B = asm`
  li t0, 0x10000000
  li t1, 66
  sb t1, 0(t0)
1: j 1b
`;
const wasmvisor = (args: string[], env?: NodeJS.ProcessEnv) => run([process.execPath, BIN, "qemu", ...args], env);
const realQemu = (args: string[]) => run(["qemu-system-riscv64", ...args]);

/** A reply as compared between QEMU and wasmvisor: the error's class, or the return value's shape, and the id. */
const norm = (r: QmpReply) => (r.error ? { error: r.error.class, id: r.id } : { return: shape(r.return), id: r.id });

// The sequence both servers get, each line as a client would send it.
const SEQUENCE: (string | [string, Record<string, unknown>?, unknown?])[] = [
  ["query-status"], // before negotiation
  ["qmp_capabilities", undefined, 1],
  ["qmp_capabilities", undefined, 2], // twice
  ["query-status", undefined, "a"],
  ["cont"],
  ["query-status"],
  ["stop"],
  ["stop"], // stopped already: nothing happens
  ["human-monitor-command", { "command-line": "info status" }],
  ["human-monitor-command", { "command-line": "info registers" }],
  ["nope", undefined, { nested: [1] }],
  '{"foo": 1}',
  "garbage\n",
  "[1]",
  '{"arguments": {}}',
  '{"execute": 7}',
  ["query-status", { x: 1 }],
  ["human-monitor-command", {}],
  ["query-cpus-fast"],
  ["query-version"],
  ["query-name"],
  ["query-kvm"],
  ["query-commands"],
  ["human-monitor-command", { "command-line": "bogus" }],
  ["system_reset"],
  ["system_powerdown"],
  ["query-migrate"],
  ["migrate-set-parameters", { "downtime-limit": 50 }],
  ["cont", undefined, [1, 2]],
  ["query-status"],
];

async function drive(c: QmpClient): Promise<QmpReply[]> {
  const replies: QmpReply[] = [];
  let started = false;
  for (const step of SEQUENCE) {
    replies.push(typeof step === "string" ? await c.raw(step) : await c.execute(step[0], step[1], step[2]));
    if (!started && Array.isArray(step) && step[0] === "cont") {
      // Let the hart leave the boot ROM for the program's loop before the `stop` whose registers are compared.
      started = true;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  return replies;
}

describe("QMP: the same sequence against qemu-system-riscv64 and wasmvisor", () => {
  test("greeting, negotiation, commands, errors and events have the same shapes", async () => {
    // The README's QMP line, with a program that loops and a socket of the test's.
    const args = (sock: string) => qemuArgs(README_QEMU_LINES.qmp, { "prog.bin": loop, "/tmp/qmp.sock": sock });
    const results = [];
    for (const [who, start] of [["qemu", realQemu], ["wasmvisor", wasmvisor]] as const) {
      const sock = join(dir, `${who}.sock`);
      const p = start(args(sock));
      try {
        const c = await QmpClient.connect(sock);
        const replies = await drive(c);
        const quit = await c.execute("quit");
        await c.waitClosed();
        expect(await p.exited).toBe(0);
        results.push({ who, greeting: c.greeting, replies, quit, events: c.events, received: c.received });
      } finally {
        p.child.kill("SIGKILL");
      }
    }
    const [q, w] = results as [(typeof results)[0], (typeof results)[0]];
    // The greeting: QEMU's version object; wasmvisor offers no out-of-band capability.
    expect(shape((w.greeting as { QMP: { version: unknown } }).QMP.version)).toEqual(shape((q.greeting as { QMP: { version: unknown } }).QMP.version));
    expect((w.greeting as { QMP: { capabilities: unknown } }).QMP.capabilities).toEqual([]);
    // Every reply: same error class or same return shape, same id echoed.
    SEQUENCE.forEach((step, i) => {
      const what = typeof step === "string" ? step : step[0];
      if (what === "query-commands") {
        // QEMU has hundreds; wasmvisor's are among them, in the same shape.
        const names = (r: QmpReply) => (r.return as { name: string }[]).map((x) => x.name);
        expect(shape(w.replies[i]!.return)).toEqual(shape(q.replies[i]!.return));
        for (const n of names(w.replies[i]!)) expect(names(q.replies[i]!), n).toContain(n);
        return;
      }
      expect(norm(w.replies[i]!), `${i}: ${JSON.stringify(step)}`).toEqual(norm(q.replies[i]!));
    });
    // The human monitor's text, where it says the same thing.
    const infoStatus = SEQUENCE.findIndex((s) => Array.isArray(s) && s[0] === "human-monitor-command" && s[1]?.["command-line"] === "info status");
    expect(w.replies[infoStatus]!.return).toBe("VM status: paused\r\n");
    expect(w.replies[infoStatus]!.return).toBe(q.replies[infoStatus]!.return);
    const bogus = SEQUENCE.findIndex((s) => Array.isArray(s) && s[1]?.["command-line"] === "bogus");
    expect(w.replies[bogus]!.return).toBe(q.replies[bogus]!.return);
    // info registers, stopped in the loop: the same pc, hart id and mstatus (QEMU lists more CSRs).
    const regs = SEQUENCE.findIndex((s) => Array.isArray(s) && s[1]?.["command-line"] === "info registers");
    const pick = (r: QmpReply) => String(r.return).split("\r\n").filter((l) => /^ (pc|mhartid|mstatus|x0\/zero) /.test(l));
    expect(pick(w.replies[regs]!)).toEqual(pick(q.replies[regs]!));
    expect(pick(w.replies[regs]!)).toContain(" pc       0000000080000000");
    expect(pick(w.replies[regs]!)).toHaveLength(4);
    const status = (r: { replies: QmpReply[] }, i: number) => (r.replies[i]!.return as { status: string }).status;
    for (const i of [3, 5, SEQUENCE.length - 1]) expect(status(w, i)).toBe(status(q, i)); // prelaunch, running, running
    // query-cpus-fast: one entry per hart.
    const cpus = SEQUENCE.findIndex((s) => Array.isArray(s) && s[0] === "query-cpus-fast");
    expect((w.replies[cpus]!.return as unknown[]).length).toBe(2);
    // Events: the same ones in the same order, with the same data and timestamps' shape.
    const events = (r: typeof q) => r.events.map((e) => ({ event: e.event, data: e.data, timestamp: shape(e.timestamp) }));
    expect(events(w)).toEqual(events(q));
    expect(events(w).map((e) => e.event)).toEqual(["RESUME", "STOP", "RESET", "POWERDOWN", "RESUME", "SHUTDOWN"]);
    expect(w.events.at(-1)!.data).toEqual({ guest: false, reason: "host-qmp-quit" });
    // Each event came before the reply to the command that caused it, as on QEMU.
    const order = (r: typeof q) => r.received.map((m) => ("event" in m ? String(m.event) : "reply"));
    expect(order(w)).toEqual(order(q));
  }, 120_000);

  test("query-block and info block report each disk's real format, whatever its name, as QEMU's", async () => {
    // A qcow2 image named .img (probed) and a raw one named .qcow2, read-only.
    const qcow2 = join(dir, "disk.img");
    execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", qcow2, "1M"]);
    const raw = join(dir, "raw.qcow2");
    writeFileSync(raw, new Uint8Array(1 << 20));
    const disks = ["-drive", `file=${qcow2},if=none,id=d0`, "-device", "virtio-blk-device,drive=d0", "-drive", `file=${raw},if=none,id=d1,format=raw,readonly=on`, "-device", "virtio-blk-device,drive=d1"];
    const seen = [];
    for (const [who, start] of [["qemu", realQemu], ["wasmvisor", wasmvisor]] as const) {
      const sock = join(dir, `block-${who}.sock`);
      const p = start(["-M", "virt", "-bios", "none", "-kernel", loop, "-nographic", "-S", ...disks, "-qmp", `unix:${sock},server=on,wait=off`]);
      try {
        const c = await QmpClient.connect(sock);
        await c.execute("qmp_capabilities");
        // (QEMU also lists its empty floppy and SD slots.)
        const blocks = ((await c.execute("query-block")).return as { inserted?: { file: string; drv: string; ro: boolean } }[]).flatMap((b) => (b.inserted ? [b.inserted] : []));
        const info = String((await c.execute("human-monitor-command", { "command-line": "info block" })).return);
        seen.push({ blocks: blocks.map((b) => [b.file, b.drv, b.ro]), info: info.match(/\((qcow2|raw)[^)]*\)/g) });
        await c.execute("quit");
        expect(await p.exited).toBe(0);
      } finally {
        p.child.kill("SIGKILL");
      }
    }
    expect(seen[1]).toEqual({ blocks: [[qcow2, "qcow2", false], [raw, "raw", true]], info: ["(qcow2)", "(raw, read-only)"] });
    expect(seen[1]!.blocks).toEqual(seen[0]!.blocks);
  }, 60_000);

  test("a guest that powers off: SHUTDOWN from the guest, and the process ends with 0", async () => {
    // (QEMU 7.2's sifive test device exits the process at once, before any event goes out.)
    const sock = join(dir, "off.sock");
    const p = wasmvisor(["-M", "virt", "-bios", "none", "-kernel", poweroff, "-nographic", "-S", "-qmp", `unix:${sock},server=on,wait=off`]);
    try {
      const c = await QmpClient.connect(sock);
      await c.execute("qmp_capabilities");
      expect(await c.execute("cont")).toEqual({ return: {} });
      expect((await c.waitForEvent("SHUTDOWN")).data).toEqual({ guest: true, reason: "guest-shutdown" });
      expect(await p.exited).toBe(0);
      await c.waitClosed();
    } finally {
      p.child.kill("SIGKILL");
    }
  }, 60_000);

  test("system_reset reboots the machine: the guest starts again from its reset vector", async () => {
    const hello = join(dir, "hello.bin");
    writeFileSync(hello, HELLO_B);
    const sock = join(dir, "reset.sock");
    const p = wasmvisor(["-M", "virt", "-bios", "none", "-kernel", hello, "-nographic", "-qmp", `unix:${sock},server=on,wait=off`]);
    const count = () => (p.guest().match(/B/g) ?? []).length;
    try {
      const c = await QmpClient.connect(sock);
      await c.execute("qmp_capabilities");
      const until = async (n: number) => {
        const t0 = Date.now();
        while (count() < n) {
          if (Date.now() - t0 > 20_000) throw new Error(`${count()} boots, not ${n}: ${p.out()}`);
          await new Promise((r) => setTimeout(r, 20));
        }
      };
      await until(1);
      expect(await c.execute("system_reset")).toEqual({ return: {} });
      await until(2);
      // Paused, it resets and stays paused until cont.
      await c.execute("stop");
      await c.execute("system_reset");
      await new Promise((r) => setTimeout(r, 300));
      expect(count()).toBe(2);
      expect((await c.execute("query-status")).return).toMatchObject({ status: "paused" });
      await c.execute("cont");
      await until(3);
      await c.execute("quit");
      expect(await p.exited).toBe(0);
    } finally {
      p.child.kill("SIGKILL");
    }
  }, 60_000);

  test("the guest's own reset: RESET from the guest, and the VM goes on, as on QEMU", async () => {
    // Counts its boots in RAM past its image (RAM keeps what it held across a reset), resets
    // itself twice, then prints R and loops.
    const resetter = join(dir, "resetter.bin");
    writeFileSync(resetter, asm`
      li t0, 0x80100000
      ld t1, 0(t0)
      addi t1, t1, 1
      sd t1, 0(t0)
      li t2, 3
      beq t1, t2, 2f
      li t0, 0x100000
      li t1, 0x7777
      sw t1, 0(t0)
    1: j 1b
    2:
      li t0, 0x10000000
      li t1, 82
      sb t1, 0(t0)
    3: j 3b
    `);
    const seen = [];
    for (const start of [realQemu, wasmvisor]) {
      const sock = join(dir, `guest-reset-${seen.length}.sock`);
      const p = start(["-M", "virt", "-bios", "none", "-kernel", resetter, "-nographic", "-S", "-qmp", `unix:${sock},server=on,wait=off`]);
      try {
        const c = await QmpClient.connect(sock);
        await c.execute("qmp_capabilities");
        await c.execute("cont");
        const t0 = Date.now();
        while (!p.guest().includes("R")) {
          if (Date.now() - t0 > 20_000) throw new Error(p.out());
          await new Promise((r) => setTimeout(r, 20));
        }
        await new Promise((r) => setTimeout(r, 100));
        seen.push(c.events.filter((e) => e.event === "RESET").map((e) => e.data));
        expect((await c.execute("query-status")).return).toMatchObject({ status: "running" });
        await c.execute("quit");
        expect(await p.exited).toBe(0);
      } finally {
        p.child.kill("SIGKILL");
      }
    }
    expect(seen[1]).toEqual([{ guest: true, reason: "guest-reset" }, { guest: true, reason: "guest-reset" }]);
    expect(seen[1]).toEqual(seen[0]); // as QEMU's
  }, 60_000);

  test("a QMP server that waits (no nowait, QEMU's default): the VM runs once the first client has come", async () => {
    const hello = join(dir, "hello-wait.bin");
    writeFileSync(hello, HELLO_B);
    const sock = join(dir, "wait.sock");
    const p = wasmvisor(["-M", "virt", "-bios", "none", "-kernel", hello, "-nographic", "-qmp", `unix:${sock},server`]);
    try {
      const t0 = Date.now();
      while (!/waiting for a connection on unix:/.test(p.out())) {
        if (Date.now() - t0 > 20_000) throw new Error(p.out());
        await new Promise((r) => setTimeout(r, 20));
      }
      await new Promise((r) => setTimeout(r, 500));
      expect(p.guest()).not.toContain("B");
      const c = await QmpClient.connect(sock);
      while (!p.guest().includes("B")) {
        if (Date.now() - t0 > 20_000) throw new Error(p.out());
        await new Promise((r) => setTimeout(r, 20));
      }
      await c.execute("qmp_capabilities");
      expect((await c.execute("query-status")).return).toMatchObject({ status: "running" });
      await c.execute("quit");
      expect(await p.exited).toBe(0);
    } finally {
      p.child.kill("SIGKILL");
    }
  }, 60_000);

  test("QMP on TCP (tcp:HOST:PORT,server,nowait)", async () => {
    const port = await freePort();
    const p = wasmvisor(["-M", "virt", "-bios", "none", "-kernel", loop, "-nographic", "-qmp", `tcp:127.0.0.1:${port},server,nowait`]);
    try {
      const c = await QmpClient.connect({ host: "127.0.0.1", port });
      expect(await c.execute("qmp_capabilities", undefined, "t")).toEqual({ return: {}, id: "t" });
      expect((await c.execute("query-status")).return).toMatchObject({ status: "running", running: true });
      await c.execute("quit");
      expect(await p.exited).toBe(0);
    } finally {
      p.child.kill("SIGKILL");
    }
  }, 60_000);

  test("-no-reboot: the guest's reset ends the VM, SHUTDOWN saying guest-reset as QEMU's; system_reset ends it too", async () => {
    const guest = wasmvisor(["-M", "virt", "-bios", "none", "-kernel", reboot, "-nographic", "-no-reboot"]);
    expect(await guest.exited).toBe(0);
    const shutdowns = [];
    for (const start of [realQemu, wasmvisor]) {
      const sock = join(dir, `noreboot-guest-${shutdowns.length}.sock`);
      const p = start(["-M", "virt", "-bios", "none", "-kernel", reboot, "-nographic", "-no-reboot", "-S", "-qmp", `unix:${sock},server=on,wait=off`]);
      try {
        const c = await QmpClient.connect(sock);
        await c.execute("qmp_capabilities");
        await c.execute("cont");
        shutdowns.push((await c.waitForEvent("SHUTDOWN")).data);
        expect(await p.exited).toBe(0);
      } finally {
        p.child.kill("SIGKILL");
      }
    }
    expect(shutdowns[1]).toEqual({ guest: true, reason: "guest-reset" });
    expect(shutdowns[1]).toEqual(shutdowns[0]);
    const sock = join(dir, "noreboot.sock");
    const p = wasmvisor(["-M", "virt", "-bios", "none", "-kernel", loop, "-nographic", "-no-reboot", "-qmp", `unix:${sock},server=on,wait=off`]);
    try {
      const c = await QmpClient.connect(sock);
      await c.execute("qmp_capabilities");
      expect(await c.execute("system_reset")).toEqual({ return: {} });
      expect((await c.waitForEvent("SHUTDOWN")).data).toEqual({ guest: false, reason: "host-qmp-system-reset" });
      expect(await p.exited).toBe(0);
    } finally {
      p.child.kill("SIGKILL");
    }
  }, 60_000);
});

describe("QMP: hostile input", () => {
  test("oversized, deeply nested, split, glued, binary and unterminated messages: QMP errors, and the server goes on", async () => {
    const sock = join(dir, "hostile.sock");
    const p = wasmvisor(["-M", "virt", "-bios", "none", "-kernel", loop, "-nographic", "-qmp", `unix:${sock},server=on,wait=off`]);
    try {
      const c = await QmpClient.connect(sock);
      await c.execute("qmp_capabilities");
      // More than 1 MiB in one message: an error, then what is left of it is garbage until the next value.
      const big = await c.raw(`{"execute": "query-status", "arguments": {"x": "${"a".repeat(1_100_000)}"}}\n`);
      expect(big.error).toEqual({ class: "GenericError", desc: expect.stringMatching(/at most 1048576 bytes/) });
      const sync = async (id: string) => {
        let r = await c.execute("query-status", undefined, id);
        while (r.id !== id) r = await c.next();
        expect(r.return).toEqual({ status: "running", singlestep: false, running: true });
      };
      await sync("after-big");
      // 100 000 levels of nesting.
      const deep = await c.raw(`${"[".repeat(100_000)}${"]".repeat(100_000)}\n`);
      expect(deep.error?.desc).toMatch(/too many nested levels/);
      await sync("after-deep");
      // A command a byte at a time, and three glued together without newlines.
      const text = '{"execute": "query-status", "id": "split"}';
      const split = c.next();
      for (const ch of text) await new Promise<void>((r) => connectWrite(c, ch, r));
      expect((await split).id).toBe("split");
      const glued = [c.raw('{"execute":"query-name","id":1}{"execute":"query-kvm","id":2}   {"execute":"query-version","id":3}'), c.next(), c.next()];
      expect((await Promise.all(glued)).map((r) => r.id)).toEqual([1, 2, 3]);
      // Strings holding brackets and escaped quotes do not confuse the splitter.
      expect((await c.execute("human-monitor-command", { "command-line": 'info status "}]{[\\' })).return).toBe("VM status: running\r\n");
      // Invalid UTF-8 and control bytes, JSON with trailing junk, wrong types.
      const binary = [c.raw(Uint8Array.from([0xff, 0xfe, 0x00, 0x7b, 0x7d, 0x0a])), c.next()];
      expect((await Promise.all(binary)).map((r) => r.error?.desc)).toEqual([expect.stringMatching(/invalid keyword/), "QMP input lacks member 'execute'"]);
      expect((await c.raw('{"execute": "query-status",}\n')).error?.desc).toMatch(/JSON parse error/);
      expect((await c.execute("migrate-set-parameters", { "downtime-limit": "5" })).error?.desc).toMatch(/Invalid parameter type for 'downtime-limit'/);
      expect((await c.execute("migrate-set-parameters", { "downtime-limit": -1 })).error?.desc).toMatch(/downtime-limit/);
      expect((await c.execute("migrate", {})).error?.desc).toBe("Parameter 'uri' is missing");
      expect((await c.execute("migrate", { uri: "exec:rm -rf /" })).error?.desc).toMatch(/give uri tcp:HOST:PORT/);
      expect((await c.execute("migrate-set-capabilities", { capabilities: [{ capability: "x-colo", state: true }] })).error?.class).toBe("GenericError");
      expect((await c.execute("__proto__")).error?.class).toBe("CommandNotFound");
      expect((await c.raw('{"execute": "query-status", "arguments": {"__proto__": 1}}')).error?.desc).toBe("Parameter '__proto__' is unexpected");
      expect((await c.execute("constructor")).error?.class).toBe("CommandNotFound");
      // Many clients at once, then one that leaves mid-message: the server still answers.
      const many = await Promise.all(Array.from({ length: 12 }, () => QmpClient.connect(sock)));
      for (const m of many) m.close();
      const half = await QmpClient.connect(sock);
      half.raw('{"execute": "qmp_capabil').catch(() => {});
      half.close();
      expect((await c.execute("query-status")).return).toEqual({ status: "running", singlestep: false, running: true });
      await c.execute("quit");
      expect(await p.exited).toBe(0);
    } finally {
      p.child.kill("SIGKILL");
    }
  }, 120_000);
});

describe("QMP and the human monitor: clients that do not read", () => {
  const MiB = 2 ** 20;
  /** The resident memory of a process (Linux). */
  const rss = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) * 1024;
  const rawClient = (sock: string) => new Promise<Socket>((resolve, reject) => {
    const s = connect(sock);
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
  /** The most the process's memory grew above `base` while `ms` went by. */
  const growthOver = async (pid: number, base: number, ms: number) => {
    let peak = base;
    for (const t0 = Date.now(); Date.now() - t0 < ms;) {
      peak = Math.max(peak, rss(pid));
      await new Promise((r) => setTimeout(r, 50));
    }
    return peak - base;
  };

  test("a client that floods commands without reading: the server stops reading it, its memory stays bounded, others are answered", async () => {
    const qmpSock = join(dir, "flood.sock");
    const hmpSock = join(dir, "flood-hmp.sock");
    const p = wasmvisor(["-M", "virt", "-bios", "none", "-kernel", loop, "-m", "64M", "-nographic", "-qmp", `unix:${qmpSock},server=on,wait=off`, "-monitor", `unix:${hmpSock},server=on,wait=off`]);
    try {
      const c = await QmpClient.connect(qmpSock);
      await c.execute("qmp_capabilities");
      const pid = p.child.pid!;
      const base = rss(pid);
      // 40 MiB of [] on QMP (each an error reply 40 times its size) and 16 MiB of unknown
      // commands on the human monitor, neither client reading a byte.
      const flooders = [await rawClient(qmpSock), await rawClient(hmpSock)];
      for (const f of flooders) f.pause();
      const piece = "[]".repeat(MiB / 2);
      for (let i = 0; i < 40; i++) flooders[0]!.write(piece);
      const lines = "x\n".repeat(MiB / 2);
      for (let i = 0; i < 16; i++) flooders[1]!.write(lines);
      const growth = await growthOver(pid, base, 6000);
      expect(growth, `the server grew by ${(growth / MiB).toFixed(0)} MiB`).toBeLessThan(100 * MiB);
      // It took a little of each and stopped: the rest waits on the clients' side.
      expect(flooders[0]!.writableLength).toBeGreaterThan(30 * MiB);
      expect(flooders[1]!.writableLength).toBeGreaterThan(8 * MiB);
      // The well-behaved client is answered meanwhile, and after the flooders leave.
      expect((await c.execute("query-status")).return).toEqual({ status: "running", singlestep: false, running: true });
      for (const f of flooders) f.destroy();
      const d = await QmpClient.connect(qmpSock);
      expect((await d.execute("qmp_capabilities")).return).toEqual({});
      await c.execute("quit");
      expect(await p.exited).toBe(0);
    } finally {
      p.child.kill("SIGKILL");
    }
  }, 60_000);

  test("a client that never reads its events (a guest that resets in a loop): dropped past a bound, others go on", async () => {
    const sock = join(dir, "events.sock");
    const p = wasmvisor(["-M", "virt", "-bios", "none", "-kernel", reboot, "-m", "64M", "-nographic", "-qmp", `unix:${sock},server=on,wait=off`]);
    try {
      const idle = await QmpClient.connect(sock);
      await idle.execute("qmp_capabilities");
      (idle as unknown as { sock: Socket }).sock.pause(); // reads nothing more
      const c = await QmpClient.connect(sock);
      await c.execute("qmp_capabilities");
      const pid = p.child.pid!;
      const base = rss(pid);
      // RESET after RESET: the one that reads sees them; the one that does not is dropped.
      await c.waitForEvent("RESET");
      const t0 = Date.now();
      let growth = 0;
      while (!/qmp client dropped: it left \d+ bytes of replies and events unread/.test(p.out())) {
        if (Date.now() - t0 > 50_000 * GUEST_SLOWDOWN) throw new Error(`the client that does not read was not dropped (${c.events.length} events, ${p.out()})`);
        growth = Math.max(growth, rss(pid) - base);
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(growth, `the server grew by ${(growth / MiB).toFixed(0)} MiB`).toBeLessThan(100 * MiB);
      expect((await c.execute("query-status")).return).toMatchObject({ status: "running" });
      expect(c.events.filter((e) => e.event === "RESET").length).toBeGreaterThan(1000);
      c.events.length = 0; // what it read is its own
      await c.execute("quit");
      expect(await p.exited).toBe(0);
    } finally {
      p.child.kill("SIGKILL");
    }
  }, 90_000 * GUEST_SLOWDOWN);
});

/** Write one piece to the client's socket and wait for it to go out (for the byte-at-a-time case). */
function connectWrite(c: QmpClient, text: string, done: () => void): void {
  (c as unknown as { sock: { write(t: string, cb: () => void): void } }).sock.write(text, done);
}

describe("the human monitor", () => {
  test("on a socket (-monitor unix:...): QEMU's banner and prompt, info, stop, cont, quit", async () => {
    const sock = join(dir, "hmp.sock");
    const p = wasmvisor(["-M", "virt", "-bios", "none", "-kernel", loop, "-nographic", "-smp", "2", "-monitor", `unix:${sock},server=on,wait=off`]);
    try {
      const s = await new Promise<import("node:net").Socket>((resolve, reject) => {
        const t0 = Date.now();
        const attempt = () => {
          const x = connect(sock);
          x.once("connect", () => resolve(x));
          x.once("error", (e) => (Date.now() - t0 > 20_000 ? reject(e) : setTimeout(attempt, 100)));
        };
        attempt();
      });
      let out = "";
      s.on("data", (d: Buffer) => { out += d.toString(); });
      const until = async (text: string) => {
        const t0 = Date.now();
        while (!out.includes(text)) {
          if (Date.now() - t0 > 20_000) throw new Error(`no '${text}' in ${JSON.stringify(out)}`);
          await new Promise((r) => setTimeout(r, 20));
        }
        const at = out.indexOf(text) + text.length;
        const seen = out.slice(0, at);
        out = out.slice(at);
        return seen;
      };
      expect(await until("(qemu) ")).toMatch(/^QEMU 7\.2\.\d+ monitor .*type 'help' for more information\r\n\(qemu\) $/);
      s.write("info status\n");
      expect(await until("(qemu) ")).toBe("VM status: running\r\n(qemu) ");
      s.write("stop\r\ninfo status\n");
      await until("(qemu) ");
      expect(await until("(qemu) ")).toBe("VM status: paused\r\n(qemu) ");
      s.write("info cpus\n");
      expect(await until("(qemu) ")).toMatch(/^\* CPU #0: thread_id=\d+\r\n  CPU #1: thread_id=\d+\r\n\(qemu\) $/);
      s.write("c\ninfo status\n");
      await until("(qemu) ");
      expect(await until("(qemu) ")).toBe("VM status: running\r\n(qemu) ");
      s.write("info registers -a\n");
      const regs = await until("(qemu) ");
      expect(regs.match(/^CPU#\d$/gm)).toEqual(["CPU#0", "CPU#1"]);
      expect(regs).toMatch(/^ pc       0000000080000000\r$/m); // in the loop at the kernel's entry
      s.write("info nonsense\n");
      expect(await until("(qemu) ")).toMatch(/^info nonsense: wasmvisor has info status, registers, cpus/);
      s.write(`${"x".repeat(5000)}\n`);
      expect(await until("(qemu) ")).toMatch(/line too long/);
      s.write("q\n");
      expect(await p.exited).toBe(0);
    } finally {
      p.child.kill("SIGKILL");
    }
  }, 60_000);

  test("on the terminal: Ctrl-A c switches to the monitor and back", async () => {
    const s = new Session(["qemu", "-M", "virt", "-bios", "none", "-kernel", loop, "-nographic"]);
    try {
      await new Promise((r) => setTimeout(r, 1500));
      s.send("\x01c");
      s.send("info status\r");
      const t0 = Date.now();
      while (!/VM status: running\r\n\(qemu\) /.test(s.err)) {
        if (Date.now() - t0 > 20_000) throw new Error(`no monitor output: ${JSON.stringify(s.err)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(s.err).toMatch(/QEMU 7\.2\.\d+ monitor/);
      s.send("stop\rinfo status\r");
      while (!/VM status: paused/.test(s.err)) await new Promise((r) => setTimeout(r, 20));
      s.send("\x01cquit-is-now-guest-input\x01x");
      expect(await s.exited).toBe(0);
    } finally {
      s.kill();
    }
  }, 60_000);
});

describe("migration driven by QMP", () => {
  /** A `wasmvisor host` accepting migrations; the VM's side finds the same migration key in `env`'s runtime directory. */
  async function migrationHost() {
    const runtime = mkdtempSync(join(dir, "run-"));
    const images = join(dir, "images");
    mkdirSync(images, { recursive: true });
    const env = { ...process.env, XDG_RUNTIME_DIR: runtime };
    const api = join(runtime, "api.sock");
    const port = await freePort();
    const host = run([process.execPath, BIN, "host", "--cpus", "1", "--api", api, "--images", images, "--migrate-listen", `tcp:127.0.0.1:${port}`], env);
    const t0 = Date.now();
    while (!/accepting migrations on [\d.]+:(\d+)/.test(host.out())) {
      if (Date.now() - t0 > 20_000) throw new Error(`the host did not start: ${host.out()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return { images, env, api, port, host };
  }
  const until = async (c: QmpClient, done: (q: Record<string, unknown>) => boolean) => {
    let q: Record<string, unknown> = {};
    for (let i = 0; i < 600; i++) {
      q = (await c.execute("query-migrate")).return as Record<string, unknown>;
      if (done(q)) return q;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`query-migrate stayed ${JSON.stringify(q)}`);
  };

  test("migrate to a wasmvisor host: query-migrate goes to completed, the VM runs there, this side is postmigrate until quit", async () => {
    const { images, env, api, port, host } = await migrationHost();
    const kernel = join(images, "loop.bin");
    writeFileSync(kernel, asm`
    1: j 1b
    `);
    const sock = join(dir, "mig.sock");
    let p: Running | undefined;
    try {
      p = wasmvisor(["-M", "virt", "-bios", "none", "-kernel", kernel, "-m", "32M", "-nographic", "-name", "moving", "-qmp", `unix:${sock},server=on,wait=off`], env);
      const c = await QmpClient.connect(sock);
      await c.execute("qmp_capabilities");
      expect(await c.execute("migrate-set-parameters", { "downtime-limit": 100 })).toEqual({ return: {} });
      expect(await c.execute("migrate", { uri: `tcp:127.0.0.1:${port}` }, "m")).toEqual({ return: {}, id: "m" });
      const q = await until(c, (x) => x.status !== "active");
      expect(q.status, JSON.stringify(q)).toBe("completed");
      expect((q.ram as { transferred: number }).transferred).toBeGreaterThan(0);
      expect(q.downtime).toBeGreaterThanOrEqual(0);
      expect(c.events.filter((e) => e.event === "MIGRATION").map((e) => e.data?.status)).toEqual(["setup", "completed"]);
      expect((await c.execute("query-status")).return).toEqual({ status: "postmigrate", singlestep: false, running: false });
      expect((await c.execute("cont")).error?.desc).toMatch(/migrated to another host/);
      // It runs on the host now.
      const list = run([process.execPath, BIN, "ctl", "--api", api, "list"], env);
      expect(await list.exited).toBe(0);
      expect(list.out()).toMatch(/^moving\s+running/m);
      await c.execute("quit");
      expect(await p.exited).toBe(0);
    } finally {
      p?.child.kill("SIGKILL");
      host.child.kill("SIGTERM");
      await host.exited;
    }
  }, 120_000);

  test("stop and cont during a migration answer at once (query-migrate still active); stopped, the VM converges", async () => {
    const { images, env, api, port, host } = await migrationHost();
    // Writes to each page of 48 MiB over and over: while it runs, pre-copy never catches up.
    const kernel = join(images, "dirty.bin");
    writeFileSync(kernel, asm`
      li t0, 0x80100000
      li t1, 0x83100000
      li t2, 1
    1:
      mv t3, t0
    2:
      sd t2, 0(t3)
      li t4, 4096
      add t3, t3, t4
      bltu t3, t1, 2b
      addi t2, t2, 1
      j 1b
    `);
    const sock = join(dir, "mig-stop.sock");
    let p: Running | undefined;
    try {
      p = wasmvisor(["-M", "virt", "-bios", "none", "-kernel", kernel, "-m", "64M", "-nographic", "-name", "dirty", "-qmp", `unix:${sock},server=on,wait=off`], env);
      const c = await QmpClient.connect(sock);
      await c.execute("qmp_capabilities");
      expect(await c.execute("migrate-set-parameters", { "downtime-limit": 1 })).toEqual({ return: {} });
      expect(await c.execute("migrate", { uri: `tcp:127.0.0.1:${port}` })).toEqual({ return: {} });
      await until(c, (q) => q.status === "active" && ((q.ram as { transferred?: number } | undefined)?.transferred ?? 0) > 0);
      // QEMU's way to make a migration converge: stop the VM. The reply does not wait for the end.
      expect(await c.execute("cont")).toEqual({ return: {} }); // running already: nothing to do
      expect(await c.execute("stop")).toEqual({ return: {} });
      const during = (await c.execute("query-migrate")).return as Record<string, unknown>;
      expect((await c.execute("query-status")).return).toMatchObject({ status: "paused" });
      expect(during.status).toBe("active");
      const q = await until(c, (x) => x.status !== "active");
      expect(q.status, JSON.stringify(q)).toBe("completed");
      const order = c.events.map((e) => (e.event === "MIGRATION" ? `MIGRATION ${e.data?.status}` : e.event));
      expect(order).toEqual(["MIGRATION setup", "STOP", "MIGRATION completed"]);
      const list = run([process.execPath, BIN, "ctl", "--api", api, "list"], env);
      expect(await list.exited).toBe(0);
      expect(list.out()).toMatch(/^dirty\s+running/m); // wasmvisor's destination runs what it takes in
      await c.execute("quit");
      expect(await p.exited).toBe(0);
    } finally {
      p?.child.kill("SIGKILL");
      host.child.kill("SIGTERM");
      await host.exited;
    }
  }, 120_000);
});

