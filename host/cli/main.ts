// `wasmvisor`: the command line. The main thread owns the terminal and the VM's worker; console
// bytes cross through shared-memory rings and control goes through Comlink.
import { Worker } from "node:worker_threads";
import { writeFileSync, existsSync, copyFileSync, mkdirSync } from "node:fs";
import { join, dirname } from "node:path";
import { pathToFileURL } from "node:url";
import * as Comlink from "comlink";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { ByteRing } from "../util/ring";
import { parseCli, CliError, HELP, DEFAULT_DEVICES, type BootOptions } from "./args";
import type { VmWorker, BootRequest } from "../vm/worker";
import type { MachineRequest } from "../vm/build";
import { machineRequest, RequestError } from "../vm/request";
import { packageRoot } from "../core/load-node";
import { formatStats } from "./stats";
import { hostCommand, ctlCommand } from "./hv";

const VERSION = "0.1.0";
const CTRL_A = 0x01;

function fail(message: string, code = 1): never {
  process.stderr.write(`wasmvisor: ${message}\n`);
  process.exit(code);
}

async function boot(opts: BootOptions): Promise<number> {
  let machine: MachineRequest;
  try {
    machine = machineRequest(opts);
  } catch (e) {
    if (e instanceof RequestError) fail(e.message);
    throw e;
  }

  const consoleOut = new ByteRing(1 << 16);
  const consoleIn = new ByteRing(1 << 12);
  const worker = new Worker(new URL("./vm-worker.js", import.meta.url));
  const vm = Comlink.wrap<VmWorker>(nodeEndpoint(worker));
  const req: BootRequest = { ...machine, consoleOut: consoleOut.buffer, consoleIn: consoleIn.buffer };
  let dtb: Uint8Array;
  try {
    dtb = await vm.create(req);
  } catch (e) {
    await worker.terminate();
    fail((e as Error).message.split("\n")[0]);
  }
  if (opts.dtbOut) {
    try {
      writeFileSync(opts.dtbOut, dtb);
    } catch (e) {
      await worker.terminate();
      fail(`--dtb-out ${opts.dtbOut}: cannot write (${(e as Error).message})`);
    }
  }

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
        else if (b === 0x68 /* h */) process.stderr.write("\r\nC-a x    exit\r\nC-a C-a  send C-a\r\n");
        continue;
      }
      if (b === CTRL_A) { escape = true; continue; }
      out.push(b);
    }
    if (out.length) {
      const bytes = Uint8Array.from(out);
      let off = 0;
      while (off < bytes.length) {
        const n = consoleIn.write(bytes.subarray(off));
        if (n === 0) break; // the guest is not reading; drop rather than block the terminal
        off += n;
      }
    }
    if (quitting) {
      process.stderr.write("\r\nwasmvisor: terminated\r\n");
      void vm.stop();
      // A VM busy inside one long step cannot answer: end it regardless after a moment.
      setTimeout(() => { restore(); process.exit(0); }, 2000).unref();
    }
  });
  stdin.on("end", () => { /* stdin closed: the guest keeps running until it stops */ });
  stdin.resume();

  // Drain console output as it comes.
  let running = true;
  const drain = (async () => {
    while (running || consoleOut.available() > 0) {
      await consoleOut.waitForData(50);
      const bytes = consoleOut.read();
      if (bytes.length) await new Promise<void>((resolve) => process.stdout.write(bytes, () => resolve()));
    }
  })();

  // If the worker dies, run() would never settle: turn its death into an error.
  const died = new Promise<never>((_, reject) => {
    worker.on("error", (e) => reject(e));
    worker.on("exit", (c) => reject(new Error(`the VM's worker exited (code ${c})`)));
  });
  died.catch(() => {});
  let code: number;
  try {
    const reason = await Promise.race([vm.run(), died]);
    code = reason.code;
    if (reason.kind === "error") process.stderr.write(`\r\nwasmvisor: ${(reason as { message: string }).message}\r\n`);
  } catch (e) {
    process.stderr.write(`\r\nwasmvisor: the VM failed: ${(e as Error).message}\r\n`);
    code = 70;
  }
  running = false;
  consoleOut.kick();
  await drain;
  if (opts.stats) {
    const stats = await Promise.race([vm.stats(), died]).catch(() => null);
    process.stderr.write(stats ? formatStats(stats) : "wasmvisor: no statistics (the VM's worker is gone)\n");
  }
  restore();
  vm[Comlink.releaseProxy]();
  await worker.terminate();
  return code;
}

/** The default guest: Linux + BusyBox built from Debian's sources (built on first use). */
async function start(opts: BootOptions): Promise<number> {
  const script = join(packageRoot(), "guests/linux/build.mjs");
  const { buildLinuxGuest } = await import(pathToFileURL(script).href);
  let guest: { dir: string; kernel: string; initramfs: string; disk: string };
  try {
    guest = await buildLinuxGuest({ log: (line: string) => process.stderr.write(`${line}\n`) });
  } catch (e) {
    fail(`building the Linux guest failed: ${(e as Error).message.split("\n")[0]}`);
  }
  // The guest's disk persists across boots: a working copy of the pristine image.
  const disk = join(dirname(guest.dir), "disk.img");
  if (!existsSync(disk)) {
    mkdirSync(dirname(disk), { recursive: true });
    copyFileSync(guest.disk, disk);
  }
  return boot({
    ...opts,
    kernel: opts.kernel ?? guest.kernel,
    initrd: opts.initrd ?? guest.initramfs,
    append: opts.append ?? "console=ttyS0",
    drives: opts.drives.length ? opts.drives : [{ file: disk, readOnly: false, if: DEFAULT_DEVICES[opts.mode].drive }],
    nets: opts.nets.length ? opts.nets : [{ netdev: "user", model: DEFAULT_DEVICES[opts.mode].nic }],
  });
}

export async function main(argv: string[]): Promise<void> {
  if (argv[0] === "host" || argv[0] === "ctl") {
    let code: number;
    try {
      code = argv[0] === "host" ? await hostCommand(argv.slice(1)) : await ctlCommand(argv.slice(1));
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
  const code = cmd.kind === "start" ? await start(cmd.options) : await boot(cmd.options);
  process.exit(code);
}

main(process.argv.slice(2)).catch((e) => fail(`internal error: ${(e as Error).message}`, 70));
