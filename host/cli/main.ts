// `wasmvisor`: the command line. `boot` is a hypervisor with one pCPU and one VM, through the
// same code as `wasmvisor host`: the main thread owns the terminal and the control plane, the
// VM runs on a pCPU worker, and console bytes cross through shared-memory rings.
import { writeFileSync, existsSync, copyFileSync, mkdirSync } from "node:fs";
import { join, dirname, resolve } from "node:path";
import { parseCli, CliError, HELP, type BootCommand } from "./args";
import { DEFAULT_DEVICES, type VmConfig } from "../config/vm-config";
import { parseNic } from "../config/parse";
import { Hypervisor } from "../hv/hypervisor";
import { HvError } from "../hv/types";
import { nodePlatform } from "../platform/node";
import { EMULATION_FAILURE } from "../machine/virt";
import { formatStats } from "./stats";
import { defaultLinuxGuest, type LinuxGuest } from "./guest";
import { webCommand } from "./web";
import { hostCommand, ctlCommand } from "./hv";

const VERSION = "0.1.0";
const CTRL_A = 0x01;

function fail(message: string, code = 1): never {
  process.stderr.write(`wasmvisor: ${message}\n`);
  process.exit(code);
}

async function boot(cmd: BootCommand): Promise<number> {
  // One VM on one pCPU: no balancing, no watchdog (a guest at a terminal is its user's to judge,
  // as on QEMU), and the host's memory is not a limit (guest RAM is committed as it is touched).
  const hv = await Hypervisor.start(nodePlatform, { cpus: 1, balance: false, watchdogSeconds: 0, overcommit: Infinity, fileDescriptors: Infinity });
  let name: string;
  try {
    name = cmd.restore ? (await hv.restore(cmd.restore, { paused: true })).name : (await hv.createVm(cmd.config)).name;
  } catch (e) {
    await hv.close();
    if (e instanceof HvError) fail(e.message);
    throw e;
  }
  if (cmd.dtbOut) {
    try {
      writeFileSync(cmd.dtbOut, hv.dtb(name));
    } catch (e) {
      await hv.close();
      fail(`--dtb-out ${cmd.dtbOut}: cannot write (${(e as Error).message})`);
    }
  }
  // Output as fast as stdout takes it: when its buffer is full, the console pauses until it
  // drains (the guest then waits, as on a serial line), so a slow reader costs no memory.
  const serial = hv.attachConsole(name, (bytes) => process.stdout.write(bytes));
  process.stdout.on("drain", () => serial.resume());

  // Terminal: raw mode so every key reaches the guest; Ctrl-A x quits, Ctrl-A Ctrl-A sends Ctrl-A.
  const stdin = process.stdin;
  const tty = stdin.isTTY === true;
  if (tty) stdin.setRawMode(true);
  let escape = false;
  let quitting = false;
  const restore = () => { if (tty) stdin.setRawMode(false); stdin.pause(); };
  stdin.on("data", (chunk: Buffer) => {
    const out: number[] = [];
    for (const b of chunk) {
      if (escape) {
        escape = false;
        if (b === 0x78 /* x */) { quitting = true; break; }
        if (b === CTRL_A) out.push(CTRL_A);
        else if (b === 0x73 /* s */) void saveSnapshot(hv, name);
        else if (b === 0x68 /* h */) process.stderr.write("\r\nC-a x    exit\r\nC-a s    save a snapshot (resume it with 'wasmvisor boot --restore <file>')\r\nC-a C-a  send C-a\r\n");
        continue;
      }
      if (b === CTRL_A) { escape = true; continue; }
      out.push(b);
    }
    if (out.length) serial.write(Uint8Array.from(out));
    if (quitting) {
      process.stderr.write("\r\nwasmvisor: terminated\r\n");
      void hv.act(name, "stop").catch(() => {});
      // A VM busy inside one long step cannot answer: end it regardless after a moment.
      setTimeout(() => { restore(); process.exit(0); }, 2000).unref();
    }
  });
  stdin.on("end", () => { /* stdin closed: the guest keeps running until it stops */ });
  stdin.resume();

  const started = performance.now();
  await hv.act(name, "start");
  const end = await hv.waitForEnd(name);
  serial.resume(); // what it printed last
  await new Promise<void>((resolve) => process.stdout.write("", () => resolve()));
  let code = end.exitCode ?? EMULATION_FAILURE;
  if (quitting) code = 0;
  // A guest's own failure (a test-device code, an HTIF exit) is its exit status; the VMM's
  // failures (a trap loop, an emulation error, a dead worker) are said.
  else if (end.state === "failed" && code === EMULATION_FAILURE) process.stderr.write(`\r\nwasmvisor: ${end.reason}\r\n`);
  if (cmd.stats) {
    const stats = await hv.machineStats(name).catch(() => null);
    process.stderr.write(stats ? formatStats({ ...stats, seconds: (performance.now() - started) / 1000 }) : "wasmvisor: no statistics (the VM's worker is gone)\n");
  }
  serial.detach();
  restore();
  await hv.close();
  return code;
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
      code = argv[0] === "host" ? await hostCommand(rest) : argv[0] === "ctl" ? await ctlCommand(rest) : await webCommand(rest);
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
    if (e instanceof CliError) fail(`${e.message}\n  Try 'wasmvisor --help'.`, 2);
    throw e;
  }
  if (cmd.kind === "help") { process.stdout.write(HELP); return; }
  if (cmd.kind === "version") { process.stdout.write(`wasmvisor ${VERSION}\n`); return; }
  const code = cmd.kind === "start" ? await start(cmd) : await boot(cmd);
  process.exit(code);
}

main(process.argv.slice(2)).catch((e) => fail(`internal error: ${(e as Error).message}`, EMULATION_FAILURE));
