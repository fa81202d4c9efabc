// `wasmvisor`: the command line. `boot` is a hypervisor with one pCPU and one VM, through the
// same code as `wasmvisor host`: the main thread owns the terminal and the control plane, the
// VM runs on a pCPU worker, and console bytes cross through shared-memory rings.
import { writeFileSync, existsSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, openSync, readSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { parseCli, CliError, HELP, QEMU_HELP, QEMU_COMPAT_VERSION, type BootCommand } from "./args";
import { Monitor } from "../api/monitor";
import { serveMonitor, type MonitorServer } from "../api/qmp";
import { serveGdb, gdbTarget, type GdbServer } from "../api/gdb-server";
import { defaultSocketDir, ensurePrivateDir } from "../api/api-socket";
import { loadMigrationKey } from "../platform/node/migration";
import type { DiskFormat } from "../disk/formats";
import { DEFAULT_DEVICES, type VmConfig } from "../config/vm-config";
import { parseNic } from "../config/parse";
import { Hypervisor } from "../hv/hypervisor";
import { HvError } from "../hv/types";
import { nodePlatform } from "../platform/node";
import { loadBootImages, type BootImages } from "../vm/build";
import { EMULATION_FAILURE } from "../machine/virt";
import { formatStats } from "./stats";
import { defaultLinuxGuest, type LinuxGuest } from "./guest";

const VERSION = "0.1.0";
const CTRL_A = 0x01;

function fail(message: string, code = 1): never {
  process.stderr.write(`wasmvisor: ${message}\n`);
  process.exit(code);
}

async function boot(cmd: BootCommand): Promise<number> {
  const sockets = cmd.qmp.length + cmd.monitors.length > 0;
  let migrationKey: Uint8Array | undefined;
  if (sockets) {
    // A monitor can migrate the VM to a 'wasmvisor host': with the key this user's hosts share.
    try {
      ensurePrivateDir(defaultSocketDir());
      migrationKey = loadMigrationKey(join(defaultSocketDir(), "migration.key"));
    } catch (e) {
      fail((e as Error).message);
    }
  }
  const scratch = cmd.temporary.length + cmd.temporaryUsb.length ? temporaryOverlays(cmd) : null;
  // One VM: no balancing, no watchdog (a guest at a terminal is its user's to judge, as on
  // QEMU), and the host's memory is not a limit (guest RAM is committed as it is touched). Its
  // home pCPU, and a second one for the upper half of its harts if it has several (and the host
  // the cores) unless -accel tcg,thread=single.
  const harts = cmd.restore ? 2 : cmd.config.smp;
  const cpus = cmd.singleThread ? 1 : Math.max(1, Math.min(2, harts, nodePlatform.resources().cpus));
  const starting = Hypervisor.start(nodePlatform, { cpus, balance: false, watchdogSeconds: 0, overcommit: Infinity, fileDescriptors: Infinity, migrationKey });
  // While the pCPU thread starts, read the boot images rather than after: the platform hands the
  // VM's build the copies still held here. Any error is the build's to report, as without this.
  let images: BootImages | null = null;
  if (!cmd.restore) try { images = loadBootImages(cmd.config, nodePlatform); } catch { /* reported by createVm */ }
  const hv = await starting;
  const cleanUp = () => { if (scratch) rmSync(scratch, { recursive: true, force: true }); };
  let name: string;
  try {
    name = cmd.restore ? (await hv.restore(cmd.restore, { paused: true })).name : (await hv.createVm(cmd.config)).name;
    images = null; // the VM has them
  } catch (e) {
    await hv.close();
    cleanUp();
    if (e instanceof HvError) fail(e.message);
    throw e;
  }
  if (cmd.dtbOut) {
    try {
      writeFileSync(cmd.dtbOut, hv.dtb(name));
    } catch (e) {
      await hv.close();
      cleanUp();
      fail(`--dtb-out ${cmd.dtbOut}: cannot write (${(e as Error).message})`);
    }
    if (cmd.dumpDtbOnly) {
      process.stderr.write(`wasmvisor: devicetree written to ${cmd.dtbOut}; exiting (-machine dumpdtb)\n`);
      await hv.close();
      cleanUp();
      return 0;
    }
  }
  // The monitor (QMP, -monitor sockets, Ctrl-A c): quit ends the VM, and the process with it.
  let quitting = false;
  let quitAfterMigration: () => void = () => {};
  const afterMigration = new Promise<void>((resolve) => { quitAfterMigration = resolve; });
  const quit = () => {
    quitting = true;
    quitAfterMigration();
    void hv.act(name, "stop").catch(() => {});
    // A VM busy inside one long step cannot answer: end it regardless after a moment.
    setTimeout(() => { restore(); process.exit(0); }, 2000).unref();
  };
  const v = QEMU_COMPAT_VERSION.split(".").map(Number);
  const monitor = new Monitor(hv, name, {
    version: { major: v[0]!, minor: v[1]!, micro: v[2]!, package: `wasmvisor ${VERSION}` },
    named: cmd.named, threadId: process.pid, harts: hv.info(name).vcpus, noReboot: cmd.config.noReboot, quit,
  });
  const servers: MonitorServer[] = [];
  try {
    for (const e of cmd.qmp) servers.push(await serveMonitor(e, monitor, "qmp", (m) => process.stderr.write(`wasmvisor: ${m}\r\n`)));
    for (const e of cmd.monitors) servers.push(await serveMonitor(e, monitor, "hmp", (m) => process.stderr.write(`wasmvisor: ${m}\r\n`)));
  } catch (e) {
    for (const s of servers) s.close();
    await hv.close();
    cleanUp();
    fail((e as Error).message);
  }
  let gdb: GdbServer | null = null;
  if (cmd.gdb) {
    try {
      gdb = await serveGdb(cmd.gdb, gdbTarget(hv, monitor, name, quit), (m) => process.stderr.write(`wasmvisor: ${m}\r\n`));
    } catch (e) {
      for (const s of servers) s.close();
      await hv.close();
      cleanUp();
      fail((e as Error).message);
    }
  }
  // Output as fast as stdout takes it: when its buffer is full, the console pauses until it
  // drains (the guest then waits, as on a serial line), so a slow reader costs no memory.
  const serial = hv.attachConsole(name, (bytes) => process.stdout.write(bytes));
  process.stdout.on("drain", () => serial.resume());

  // Terminal: raw mode so every key reaches the guest; Ctrl-A x quits, Ctrl-A Ctrl-A sends
  // Ctrl-A, Ctrl-A c switches between the console and the monitor (QEMU's keys); Ctrl-A k sends
  // the keys to the VM's first USB keyboard instead of its console, and back.
  const stdin = process.stdin;
  const tty = stdin.isTTY === true;
  if (tty) stdin.setRawMode(true);
  let escape = false;
  let monitorLine: string | null = null; // the line being typed while the terminal is the monitor's
  const restore = () => { if (tty) stdin.setRawMode(false); stdin.pause(); };
  const monitorKey = (b: number) => {
    if (b === 0x0d || b === 0x0a) {
      const line = monitorLine!;
      monitorLine = "";
      process.stderr.write("\r\n");
      void monitor.human(line).then((out) => process.stderr.write(`${out}(qemu) `));
    } else if (b === 0x7f || b === 0x08) {
      if (monitorLine!.length) { monitorLine = monitorLine!.slice(0, -1); process.stderr.write("\b \b"); }
    } else if (b >= 0x20 && b < 0x7f && monitorLine!.length < 4096) {
      monitorLine += String.fromCharCode(b);
      process.stderr.write(String.fromCharCode(b));
    }
  };
  let keysToKeyboard = false;
  const switchKeys = async (): Promise<string> => {
    const kbd = keysToKeyboard ? null : (await hv.usb(name, { op: "list" })).devices.find((d) => d.type === "usb-kbd")?.id;
    if (kbd === undefined) throw new Error("this VM has no USB keyboard (--usb kbd, -device usb-kbd)");
    await hv.usb(name, { op: "console", id: kbd });
    keysToKeyboard = kbd !== null;
    return keysToKeyboard ? `keys go to the USB keyboard ${kbd} (C-a k: back to the console)` : "keys go to the console";
  };
  stdin.on("data", (chunk: Buffer) => {
    const out: number[] = [];
    let exit = false;
    for (const b of chunk) {
      if (escape) {
        escape = false;
        if (b === 0x78 /* x */) { exit = true; break; }
        if (b === CTRL_A) monitorLine === null ? out.push(CTRL_A) : monitorKey(b);
        else if (b === 0x73 /* s */) void saveSnapshot(hv, name);
        else if (b === 0x6b /* k */) void switchKeys().then((said) => process.stderr.write(`\r\nwasmvisor: ${said}\r\n`), (e: Error) => process.stderr.write(`\r\nwasmvisor: ${e.message}\r\n`));
        else if (b === 0x63 /* c */ && cmd.consoleMonitor) {
          monitorLine = monitorLine === null ? "" : null;
          process.stderr.write(monitorLine === null ? "\r\n" : `\r\n${monitor.banner()}(qemu) `);
        } else if (b === 0x68 /* h */) process.stderr.write(`\r\nC-a x    exit\r\nC-a s    save a snapshot (resume it with 'wasmvisor boot --restore <file>')\r\n${cmd.consoleMonitor ? "C-a c    switch between console and monitor\r\n" : ""}C-a k    keys to the USB keyboard, and back to the console\r\nC-a C-a  send C-a\r\n`);
        continue;
      }
      if (b === CTRL_A) { escape = true; continue; }
      if (monitorLine !== null) monitorKey(b);
      else out.push(b);
    }
    if (out.length) serial.write(Uint8Array.from(out));
    if (exit) {
      process.stderr.write("\r\nwasmvisor: terminated\r\n");
      quit();
    }
  });
  stdin.on("end", () => { /* stdin closed: the guest keeps running until it stops */ });
  stdin.resume();

  // A server that waits (QEMU's default, without nowait) has its client before the VM runs.
  for (let i = 0; i < servers.length; i++) {
    const e = [...cmd.qmp, ...cmd.monitors][i]!;
    if (e.wait) {
      process.stderr.write(`wasmvisor: waiting for a connection on ${e.spec}\n`);
      await servers[i]!.firstClient;
    }
  }
  const started = performance.now();
  if (!cmd.paused && !quitting) await monitor.cont(); // -S: the monitor's cont starts it
  const end = await hv.waitForEnd(name);
  serial.resume(); // what it printed last
  await new Promise<void>((resolve) => process.stdout.write("", () => resolve()));
  monitor.vmEnded(end);
  // Migrated away: as QEMU's source, the process stays for its monitor until quit.
  if (/^migrated to /.test(end.reason ?? "") && sockets && !quitting) await afterMigration;
  let code = end.exitCode ?? EMULATION_FAILURE;
  if (quitting) code = 0;
  // A guest's own failure (a test-device code, an HTIF exit) is its exit status; the VMM's
  // failures (a trap loop, an emulation error, a dead worker) are said.
  else if (end.state === "failed" && code === EMULATION_FAILURE) process.stderr.write(`\r\nwasmvisor: ${end.reason}\r\n`);
  if (cmd.stats) {
    const stats = await hv.machineStats(name).catch(() => null);
    process.stderr.write(stats ? formatStats({ ...stats, seconds: (performance.now() - started) / 1000 }) : "wasmvisor: no statistics (the VM's worker is gone)\n");
  }
  await new Promise((r) => setTimeout(r, 20)); // the last events reach the monitors' clients
  for (const s of servers) s.close();
  gdb?.close();
  serial.detach();
  restore();
  await hv.close();
  cleanUp();
  return code;
}

/**
 * -snapshot / snapshot=on: each such drive writes to a new qcow2 overlay over its image in a
 * private temporary directory, removed at exit, so the image is not changed (QEMU's way too).
 * Returns the directory.
 */
function temporaryOverlays(cmd: BootCommand): string {
  const dir = mkdtempSync(join(tmpdir(), "wasmvisor-snapshot-"));
  const overlay = (file: string, format: DiskFormat | undefined, name: string): string => {
    const path = join(dir, `${name}.qcow2`);
    try {
      nodePlatform.createDiskImage(path, { backing: { path: file, format: format ?? probeFormatOf(file) }, what: "-snapshot", sync: false });
    } catch (e) {
      rmSync(dir, { recursive: true, force: true });
      fail((e as Error).message);
    }
    return path;
  };
  for (const i of cmd.temporary) {
    const d = cmd.config.drives[i]!;
    cmd.config.drives[i] = { ...d, file: overlay(d.file, d.format, `drive${i}`), format: "qcow2" };
  }
  for (const i of cmd.temporaryUsb) {
    const u = cmd.config.usb![i]!;
    if (u.type === "usb-storage") cmd.config.usb![i] = { ...u, file: overlay(u.file, u.format, `usb${i}`), format: "qcow2" };
  }
  return dir;
}

/** qcow2 if the file starts with its magic, else raw: how an image without format= is read. */
function probeFormatOf(file: string): DiskFormat {
  try {
    const fd = openSync(file, "r");
    const head = Buffer.alloc(4);
    readSync(fd, head, 0, 4, 0);
    closeSync(fd);
    return head.toString("latin1") === "QFI\xfb" ? "qcow2" : "raw";
  } catch (e) {
    fail(`--drive ${file}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message}`);
  }
}

/** Ctrl-A s: a snapshot of the running VM in the current directory, named by the time. */
async function saveSnapshot(hv: Hypervisor, name: string): Promise<void> {
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*$/, "").replace("T", "-");
  const file = resolve(`${name}-${stamp}.wvs`);
  process.stderr.write(`\r\n[wasmvisor: saving a snapshot to ${file}...]\r\n`);
  try {
    const r = await hv.snapshot(name, file);
    process.stderr.write(`[wasmvisor: saved ${(r.bytes / 2 ** 20).toFixed(1)} MiB in ${(r.totalMs / 1000).toFixed(2)} s (the guest paused ${r.downtimeMs.toFixed(0)} ms); ` +
      `go on from it with: wasmvisor boot --restore ${file}]\r\n`);
  } catch (e) {
    process.stderr.write(`[wasmvisor: the snapshot failed: ${(e as Error).message}]\r\n`);
  }
}

/** The default guest: Linux + BusyBox built from Debian's sources (built on first use). */
async function start(cmd: BootCommand): Promise<number> {
  let guest: LinuxGuest;
  try {
    guest = await defaultLinuxGuest();
  } catch (e) {
    fail((e as Error).message);
  }
  // The guest's disk persists across boots: a working copy of the pristine image.
  const disk = join(dirname(guest.dir), "disk.img");
  if (!existsSync(disk)) {
    mkdirSync(dirname(disk), { recursive: true });
    copyFileSync(guest.disk, disk);
  }
  const c = cmd.config;
  const config: VmConfig = {
    ...c,
    kernel: c.kernel ?? guest.kernel,
    initrd: c.initrd ?? guest.initramfs,
    append: c.append ?? "console=ttyS0",
    drives: c.drives.length ? c.drives : [{ file: disk, readOnly: false, if: DEFAULT_DEVICES[c.mode].drive }],
    nets: c.nets.length ? c.nets : [parseNic("user", DEFAULT_DEVICES[c.mode].nic, "on")],
  };
  return boot({ ...cmd, config });
}

export async function main(argv: string[]): Promise<void> {
  if (argv[0] === "host" || argv[0] === "ctl" || argv[0] === "web") {
    let code: number;
    try {
      const rest = argv.slice(1);
      // Loaded for these commands only: the web server's WebSocket library loads Node's http,
      // https, tls, crypto and zlib (7-8 ms of a boot's start).
      if (argv[0] === "web") code = await (await import("./web")).webCommand(rest);
      else {
        const { hostCommand, ctlCommand } = await import("./hv");
        code = argv[0] === "host" ? await hostCommand(rest) : await ctlCommand(rest);
      }
    } catch (e) {
      if (e instanceof CliError) fail(`${e.message}\n  Try 'wasmvisor ${argv[0]} --help'.`, 2);
      fail((e as Error).message); // the API's errors say what to do
    }
    process.exit(code);
  }
  let cmd;
  try {
    cmd = parseCli(argv);
  } catch (e) {
    if (e instanceof CliError) fail(`${e.message}\n  Try 'wasmvisor ${argv[0] === "qemu" ? "qemu -help" : "--help"}'.`, 2);
    throw e;
  }
  if (cmd.kind === "help") { process.stdout.write(cmd.qemu ? QEMU_HELP : HELP); return; }
  // `wasmvisor qemu -version` answers as QEMU's first line does: scripts (xv6's Makefile) check it.
  if (cmd.kind === "version") { process.stdout.write(cmd.qemu ? `QEMU emulator version ${QEMU_COMPAT_VERSION} (wasmvisor ${VERSION})\n` : `wasmvisor ${VERSION}\n`); return; }
  const code = cmd.kind === "start" ? await start(cmd) : await boot(cmd);
  process.exit(code);
}

main(process.argv.slice(2)).catch((e) => fail(`internal error: ${(e as Error).message}`, EMULATION_FAILURE));
