// `wasmvisor host` (the hypervisor daemon: pCPU workers + the control API on a Unix socket) and
// `wasmvisor ctl` (its command-line client).
import { parseArgs } from "node:util";
import { existsSync, readFileSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { Hypervisor } from "../hv/hypervisor";
import { serveApi, ApiClient, ACTIONS } from "../api/api";
import { defaultSocketDir, defaultSocketPath, ensurePrivateDir, checkApiSocket } from "../api/api-socket";
import { loadMigrationKey, listenMigration } from "../platform/node/migration";
import { parseMigrationTarget } from "../migration/link";
import { CliError } from "./args";
import { parseSize } from "../config/parse";
import { nodePlatform } from "../platform/node";
import type { HostInfo, SnapshotInfo, UsbInfo, UsbRequest, VmInfo, VmRunStats } from "../hv/types";
import type { MigrationProgress, SnapshotProgress } from "../hv/pcpu";
import { printable } from "../util/text";

const CTRL_RIGHT_BRACKET = 0x1d;

/**
 * Where VMs' images may come from unless --images says otherwise: the guests wasmvisor builds
 * (its cache) and Debian's firmware (the default OpenSBI, U-Boot).
 */
export function defaultImageDirs(): string[] {
  const cache = join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "wasmvisor");
  return [cache, "/usr/lib/riscv64-linux-gnu/opensbi", "/usr/lib/u-boot"];
}

export const HOST_HELP = `Usage: wasmvisor host [--api <socket>] [--images <dir>]... [--cpus N] [--memory <size>] [--overcommit R]
                      [--slice <ms>] [--watchdog <s>] [--vcpus-per-pcpu N]
                      [--migrate-listen tcp:<addr>:<port>] [--migrate-key <file>]

Run the hypervisor: a worker thread per pCPU and the control API (HTTP + JSON) on a Unix socket.
Manage its VMs with 'wasmvisor ctl'. Ctrl-C (SIGINT/SIGTERM) stops every VM and exits.

  --api <socket>     Unix socket of the control API (default ${defaultSocketPath()})
  --images <dir>     a directory VMs' firmware, kernels, initrds and disks may come from
                     (repeatable; nothing outside them is opened for a client). Default:
                     ${defaultImageDirs().join(", ")}
  --cpus <n>         pCPU workers (default: every core)
  --memory <size>    host memory VMs may use, before overcommit (default: all of it)
  --overcommit <r>   VMs may commit memory × r (default 1)
  --slice <ms>       scheduler time slice (default 20)
  --vcpus-per-pcpu <n>  vCPUs the host admits per pCPU (default 64)
  --watchdog <s>     a VM that keeps an enabled interrupt waiting for this much CPU time
                     without taking any is stuck (reported failed; default 5)
  --migrate-listen tcp:<addr>:<port>
                     accept VMs migrating in (TLS with the migration key; others are refused)
  --migrate-key <file>  the key migrations to and from this host use (give both hosts the same
                     one). Default: ${join(defaultSocketDir(), "migration.key")}, made if missing,
                     shared by this user's hosts on this machine
`;

export const CTL_HELP = `Usage: wasmvisor ctl [--api <socket>] <command>

  host                       pCPUs, memory and vCPUs committed of the limit
  list                       the VMs: name, state, pCPU, memory, vCPUs, weight, cap
  create <file.json>         define a VM (fields as the boot flags: name, mode, paging, bios,
                             kernel, initrd, append, dtb, memory, smp, drives, nets, rng,
                             virtioLegacy, noReboot, cpu: {weight, cap}, limits, onFailure) and
                             build it
  start|pause|resume|stop <name>
  reset <name>               back to power-on (its images reloaded), running or paused as it was
  destroy <name>             stop it and free its resources
  move <name> <pcpu>         move it to another pCPU (the balancer also does this by itself)
  migrate <name> tcp:<host>:<port> [--downtime <ms>] [--max-rounds <n>] [--postcopy] [--copy-storage]
                             move it live to the host listening there (wasmvisor host
                             --migrate-listen); shows rounds, bytes, dirty rate, expected downtime.
                             --postcopy: if pre-copy does not converge, it runs there at once and
                             its last pages follow (lost if the link fails before they all come);
                             --copy-storage: its disks are copied too (else: shared storage)
  snapshot <name> <file> [--stop]
                             save its whole state to <file> (in an --images directory of the
                             host); it keeps running, or with --stop ends once saved
  restore <file> [--name <new>] [--paused]
                             a new VM from a snapshot, running (or created, with --paused);
                             restoring one snapshot twice gives two VMs from the same instant
  stats <name>               CPU and steal time, wake-up latency, instructions, exits
  console <name>             attach to the console (Ctrl-] detaches)
  usb attach <name> <spec>   plug a USB device into its xHCI controller (--usb specs: kbd[,id=K],
                             storage,file=<img>[,format=..][,readonly=on], serial,socket=<path>;
                             [,port=N])
  usb detach <name> <id>     unplug it
  usb list <name>            its USB devices: id, type, port
  usb type <name> <id> <text>  type <text> on the USB keyboard <id> (\\r is Enter)
  usb console <name> <id>|off  the console's input goes to the USB keyboard <id> (off: back to the console)
`;

export async function hostCommand(argv: string[]): Promise<number> {
  let v;
  try {
    v = parseArgs({
      args: argv, strict: true, allowPositionals: false,
      options: {
        api: { type: "string" }, images: { type: "string", multiple: true }, cpus: { type: "string" }, memory: { type: "string" }, overcommit: { type: "string" },
        slice: { type: "string" }, watchdog: { type: "string" }, "vcpus-per-pcpu": { type: "string" }, "migrate-listen": { type: "string" }, "migrate-key": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }).values;
  } catch (e) {
    throw new CliError((e as Error).message.split(". ")[0]);
  }
  if (v.help) { process.stdout.write(HOST_HELP); return 0; }
  const num = (flag: string, text: string | undefined, ok: (n: number) => boolean, what: string) => {
    if (text === undefined) return undefined;
    const n = Number(text);
    if (!ok(n)) throw new CliError(`--${flag} must be ${what}, not '${text}'`);
    return n;
  };
  const cpus = num("cpus", v.cpus, (n) => Number.isInteger(n) && n >= 1 && n <= 256, "a whole number from 1 to 256");
  const overcommit = num("overcommit", v.overcommit, (n) => n > 0 && n <= 100, "a ratio in (0, 100]");
  const sliceMs = num("slice", v.slice, (n) => n >= 1 && n <= 1000, "a number of ms from 1 to 1000");
  const vcpusPerPcpu = num("vcpus-per-pcpu", v["vcpus-per-pcpu"], (n) => Number.isInteger(n) && n >= 1 && n <= 1024, "a whole number from 1 to 1024");
  const watchdogSeconds = num("watchdog", v.watchdog, (n) => n > 0 && n <= 3600, "a number of seconds in (0, 3600]");
  let hostMemory: number | undefined;
  try {
    hostMemory = v.memory === undefined ? undefined : parseSize(v.memory);
  } catch (e) {
    throw new CliError(`--memory: ${(e as Error).message}`);
  }
  const socket = v.api ?? defaultSocketPath();
  // The default socket's directory must be private (--api's is the user's choice; the socket
  // itself is 0600 either way). Checked before any worker starts.
  if (v.api === undefined) ensurePrivateDir(dirname(socket));
  // A refused peer's reason may quote what the peer sent.
  const log = (message: string) => process.stderr.write(`wasmvisor host: ${printable(message)}\n`);
  const imageDirs = (v.images ?? defaultImageDirs()).map((d) => resolve(d));
  for (const d of v.images ?? []) {
    if (!existsSync(d) || !statSync(d).isDirectory()) throw new CliError(`--images ${d}: not a directory`);
  }
  let listen;
  try {
    listen = v["migrate-listen"] === undefined ? undefined : parseMigrationTarget(v["migrate-listen"]);
  } catch (e) {
    throw new CliError(`--migrate-listen: ${(e as Error).message}`);
  }
  let migrationKey: Uint8Array;
  if (v["migrate-key"] !== undefined) migrationKey = loadMigrationKey(v["migrate-key"], false);
  else {
    ensurePrivateDir(defaultSocketDir());
    migrationKey = loadMigrationKey(join(defaultSocketDir(), "migration.key"));
  }
  const hv = await Hypervisor.start(nodePlatform, { cpus, overcommit, sliceMs, hostMemory, watchdogSeconds, vcpusPerPcpu, imageDirs, migrationKey, onEvent: log });
  let migrations: { port: number; close(): void } | undefined;
  if (listen) {
    try {
      migrations = await listenMigration(listen, migrationKey, (link) => void hv.incoming(link), (peer, why) => log(`refused a migration connection from ${peer}: ${why}`));
    } catch (e) {
      await hv.close();
      throw e;
    }
  }
  let server;
  try {
    server = await serveApi(hv, socket, { onError: log });
  } catch (e) {
    await hv.close();
    throw e; // it says what to do about the path
  }
  const info = hv.host();
  log(`${info.pcpus} pCPU(s), ${Math.round(info.memoryLimit / 2 ** 20)} MiB and ${info.fdLimit} file descriptors for VMs, API on ${socket}`);
  log(`images from ${imageDirs.join(", ")}`);
  if (listen) log(`accepting migrations on ${listen.host}:${migrations!.port}`);
  await new Promise<void>((resolve) => {
    const quit = () => resolve();
    process.once("SIGINT", quit);
    process.once("SIGTERM", quit);
  });
  process.stderr.write("wasmvisor host: stopping every VM\n");
  server.close();
  migrations?.close();
  await hv.close();
  return 0;
}

export async function ctlCommand(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv, strict: true, allowPositionals: true,
      options: {
        api: { type: "string" }, help: { type: "boolean", short: "h" }, stop: { type: "boolean" }, name: { type: "string" }, paused: { type: "boolean" },
        downtime: { type: "string" }, "max-rounds": { type: "string" }, postcopy: { type: "boolean" }, "copy-storage": { type: "boolean" },
      },
    });
  } catch (e) {
    throw new CliError((e as Error).message.split(". ")[0]);
  }
  const [cmd, arg, ...extra] = parsed.positionals;
  const { stop, name: newName, paused } = parsed.values;
  if (stop !== undefined && cmd !== "snapshot") throw new CliError("--stop goes with ctl snapshot");
  if ((newName !== undefined || paused !== undefined) && cmd !== "restore") throw new CliError("--name and --paused go with ctl restore");
  if ((parsed.values.downtime !== undefined || parsed.values["max-rounds"] !== undefined || parsed.values.postcopy !== undefined || parsed.values["copy-storage"] !== undefined) && cmd !== "migrate") {
    throw new CliError("--downtime, --max-rounds, --postcopy and --copy-storage go with ctl migrate");
  }
  if (parsed.values.help || !cmd) { process.stdout.write(CTL_HELP); return cmd ? 0 : 2; }
  const socket = parsed.values.api ?? defaultSocketPath();
  checkApiSocket(socket);
  const api = new ApiClient(socket);
  const needName = () => {
    if (!arg || extra.length) throw new CliError(`ctl ${cmd} takes one VM name`);
    return encodeURIComponent(arg);
  };
  const print = (s: string) => process.stdout.write(s.endsWith("\n") ? s : s + "\n");
  switch (cmd) {
    case "host": print(formatHost(await api.call<HostInfo>("GET", "/host"))); return 0;
    case "list": print(formatList(await api.call<VmInfo[]>("GET", "/vms"))); return 0;
    case "create": {
      if (!arg || extra.length) throw new CliError("ctl create takes one definition file (JSON)");
      let def: unknown;
      try {
        def = JSON.parse(readFileSync(arg, "utf8"));
      } catch (e) {
        throw new CliError(`${arg}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : `not a JSON VM definition (${(e as Error).message})`}`);
      }
      const vm = await api.call<VmInfo>("POST", "/vms", def);
      print(`created ${vm.name} on pCPU ${vm.pcpu}`);
      return 0;
    }
    case "destroy": await api.call("DELETE", `/vms/${needName()}`); print(`destroyed ${arg}`); return 0;
    case "stats": print(formatStats(await api.call<VmRunStats>("GET", `/vms/${needName()}/stats`))); return 0;
    case "console": return attach(api, arg ?? "");
    case "migrate": {
      if (!arg || extra.length !== 1) throw new CliError("ctl migrate takes a VM name and where to: tcp:HOST:PORT");
      const num = (flag: string, text: string | undefined) => {
        if (text === undefined) return undefined;
        if (!/^\d+(\.\d+)?$/.test(text)) throw new CliError(`--${flag} must be a number, not '${text}'`);
        return Number(text);
      };
      return migrate(api, arg, extra[0], { downtimeMs: num("downtime", parsed.values.downtime), maxRounds: num("max-rounds", parsed.values["max-rounds"]), postcopy: parsed.values.postcopy, copyStorage: parsed.values["copy-storage"] });
    }
    case "snapshot": {
      if (!arg || extra.length !== 1) throw new CliError("ctl snapshot takes a VM name and a file");
      // The file as this shell names it: the host may run elsewhere in the file system.
      const r = await withProgress(api, `/vms/${encodeURIComponent(arg)}/snapshot`,
        (p: SnapshotProgress) => (p.phase === "saving" ? `${arg}: saving, ${(p.memory * 100).toFixed(0)}% of memory looked at, ${(p.bytes / 2 ** 20).toFixed(1)} MiB written` : null),
        () => api.call<SnapshotInfo>("POST", `/vms/${encodeURIComponent(arg)}/snapshot`, { file: resolve(extra[0]), ...(stop ? { stop } : {}) }));
      print(`${r.name}: saved to ${r.file}: ${(r.bytes / 2 ** 20).toFixed(1)} MiB (${r.pages} pages) in ${(r.totalMs / 1000).toFixed(2)} s, ` +
        `paused ${r.downtimeMs.toFixed(1)} ms; ${r.state}`);
      return 0;
    }
    case "restore": {
      if (!arg || extra.length) throw new CliError("ctl restore takes one snapshot file");
      const vm = await api.call<VmInfo>("POST", "/restore", { file: resolve(arg), ...(newName !== undefined ? { name: newName } : {}), ...(paused ? { paused } : {}) });
      print(`${vm.name}: restored from ${resolve(arg)} on pCPU ${vm.pcpu}; ${vm.state}`);
      return 0;
    }
    case "usb": return usbCommand(api, arg, extra, print);
    case "move": {
      const pcpu = Number(extra[0]);
      if (!arg || extra.length !== 1 || !Number.isInteger(pcpu)) throw new CliError("ctl move takes a VM name and a pCPU number");
      const vm = await api.call<VmInfo>("POST", `/vms/${encodeURIComponent(arg)}/move`, { pcpu });
      print(`${vm.name}: on pCPU ${vm.pcpu}`);
      return 0;
    }
  }
  if ((ACTIONS as readonly string[]).includes(cmd)) {
    const vm = await api.call<VmInfo>("POST", `/vms/${needName()}/${cmd}`);
    print(`${vm.name}: ${vm.state}`);
    return 0;
  }
  throw new CliError(`unknown ctl command '${cmd}' (see 'wasmvisor ctl --help')`);
}

/** ctl usb attach|detach|list|type|console <vm> ...: the VM's USB devices, as the API's POST /vms/{name}/usb. */
async function usbCommand(api: ApiClient, sub: string | undefined, args: string[], print: (s: string) => void): Promise<number> {
  const [vm, ...rest] = args;
  const want = (n: number, usage: string) => {
    if (!vm || rest.length !== n) throw new CliError(`ctl usb ${usage}`);
  };
  let request: UsbRequest;
  switch (sub) {
    case "attach": want(1, "attach takes a VM name and a device spec (kbd, storage,file=IMG, serial,socket=PATH)"); request = { op: "attach", spec: usbFileSpec(rest[0]!) }; break;
    case "detach": want(1, "detach takes a VM name and a device id"); request = { op: "detach", id: rest[0]! }; break;
    case "list": want(0, "list takes a VM name"); request = { op: "list" }; break;
    case "type": want(2, "type takes a VM name, a keyboard id and the text"); request = { op: "type", id: rest[0]!, text: rest[1]!.replace(/\\r/g, "\r").replace(/\\n/g, "\n") }; break;
    case "console": want(1, "console takes a VM name and a keyboard id (or off)"); request = { op: "console", id: rest[0] === "off" ? null : rest[0]! }; break;
    default: throw new CliError("ctl usb takes attach, detach, list, type or console (see 'wasmvisor ctl --help')");
  }
  const info = await api.call<UsbInfo>("POST", `/vms/${encodeURIComponent(vm!)}/usb`, request);
  if (sub === "attach") print(`${vm}: USB device on port ${info.port}`);
  else if (sub === "detach") print(`${vm}: ${rest[0]} unplugged`);
  if (sub === "list" || sub === "attach" || sub === "detach") for (const d of info.devices) print(`  port ${d.port}: ${d.id} (${d.type})`);
  return 0;
}

// A spec's file= and socket= as this shell names them: the host may run elsewhere in the file system.
function usbFileSpec(spec: string): string {
  return spec.split(",").map((p) => (/^(file|socket)=/.test(p) ? `${p.slice(0, p.indexOf("=") + 1)}${resolve(p.slice(p.indexOf("=") + 1))}` : p)).join(",");
}

// Long work (a snapshot, a migration) with its progress on stderr while it goes: GET `path`
// every 250 ms, one line per change (rewritten in place on a terminal); `line` says what to
// show, or null for nothing.
async function withProgress<P, R>(api: ApiClient, path: string, line: (p: P) => string | null, work: () => Promise<R>): Promise<R> {
  const tty = process.stderr.isTTY === true;
  let done = false;
  let shown = false;
  const watcher = (async () => {
    let last = "";
    while (!done) {
      await new Promise((r) => setTimeout(r, 250));
      const p = await api.call<P>("GET", path).catch(() => null);
      const text = p && !done ? line(p) : null;
      if (text && text !== last) {
        process.stderr.write(tty ? `\r\x1b[K${text}` : `${text}\n`);
        last = text;
        shown = true;
      }
    }
  })();
  try {
    return await work();
  } finally {
    done = true;
    await watcher;
    if (tty && shown) process.stderr.write("\n"); // past the progress line
  }
}

// A migration, with its progress on stderr while it goes.
async function migrate(api: ApiClient, name: string, to: string, opts: { downtimeMs?: number; maxRounds?: number; postcopy?: boolean; copyStorage?: boolean }): Promise<number> {
  const line = (p: MigrationProgress) => p.phase === "done" ? null : p.postcopy
    ? `${name}: post-copy (it runs there), ${p.postcopy.sent} of ${p.postcopy.pages} pages sent, ${p.postcopy.asked} on request, ${(p.sentBytes / 2 ** 20).toFixed(1)} MiB in all`
    : `${name}: ${p.phase}, round ${p.round}, ${(p.sentBytes / 2 ** 20).toFixed(1)} MiB sent (${p.sentPages} pages) at ${p.bandwidthMBs.toFixed(0)} MB/s, ` +
      `${p.dirtyPages} pages dirty (${p.dirtyRateMBs.toFixed(1)} MB/s), expected downtime ${p.expectedDowntimeMs.toFixed(1)} ms`;
  const r = await withProgress(api, `/vms/${encodeURIComponent(name)}/migration`, line,
    () => api.call<MigrationProgress>("POST", `/vms/${encodeURIComponent(name)}/migrate`, { to, ...opts }));
  const why = r.postcopy ? `; then post-copy: ${r.postcopy.pages} pages followed the VM, ${r.postcopy.asked} of them on request`
    : r.stoppedBy === "no progress" ? " (pre-copy did not converge: the guest writes about as fast as the link carries; --postcopy would let it run there sooner)"
    : r.stoppedBy === "rounds" ? " (pre-copy stopped at the round limit)" : "";
  process.stdout.write(`${name}: migrated to ${to} in ${(r.elapsedMs / 1000).toFixed(2)} s, ${r.round + 1} round(s), ` +
    `${(r.sentBytes / 2 ** 20).toFixed(1)} MiB sent${r.disk ? ` (disks: ${r.disk.blocks} blocks of 64 KiB)` : ""}, downtime ${(r.downtimeMs ?? 0).toFixed(1)} ms${why}\n`);
  return 0;
}

async function attach(api: ApiClient, name: string): Promise<number> {
  if (!name) throw new CliError("ctl console takes one VM name");
  const sock = await api.console(name);
  const stdin = process.stdin;
  const tty = stdin.isTTY === true;
  if (tty) stdin.setRawMode(true);
  process.stderr.write(`[attached to ${name}; Ctrl-] detaches]\r\n`);
  sock.pipe(process.stdout);
  await new Promise<void>((resolve) => {
    stdin.on("data", (chunk: Buffer) => {
      const cut = chunk.indexOf(CTRL_RIGHT_BRACKET);
      if (cut >= 0) {
        if (cut > 0) sock.write(chunk.subarray(0, cut));
        resolve();
      } else sock.write(chunk);
    });
    // Input from a pipe ended: keep showing output until the guest has been quiet for a second.
    stdin.on("end", () => {
      let quiet = setTimeout(resolve, 1000);
      sock.on("data", () => { clearTimeout(quiet); quiet = setTimeout(resolve, 1000); });
    });
    sock.on("close", () => resolve());
    sock.on("error", (e) => { // the host went away mid-session
      process.stderr.write(`\r\n[wasmvisor: the console connection failed: ${e.message}]\r\n`);
      resolve();
    });
  });
  if (tty) stdin.setRawMode(false);
  stdin.pause();
  sock.destroy();
  return 0;
}

const mib = (n: number) => `${Math.round(n / 2 ** 20)} MiB`;

function formatHost(h: HostInfo): string {
  return `pCPUs ${h.pcpus}; memory ${mib(h.memoryCommitted)} of ${mib(h.memoryLimit)} committed; vCPUs ${h.vcpusCommitted} of ${h.maxVcpus}; ` +
    `file descriptors ${h.fdsCommitted} of ${h.fdLimit}; ${h.vms} VM(s)`;
}

function formatList(vms: VmInfo[]): string {
  const rows = [["NAME", "STATE", "PCPU", "MEMORY", "VCPUS", "WEIGHT", "CAP", "REASON"]];
  for (const v of vms) rows.push([v.name, v.state, String(v.pcpu), mib(v.memory), String(v.vcpus), String(v.weight), v.cap === undefined ? "-" : `${v.cap}%`, v.reason ?? ""]);
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd()).join("\n");
}

function formatStats(s: VmRunStats): string {
  const exits = Object.entries(s.exits).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(", ");
  return [
    `${s.name}: ${s.instructions.toLocaleString("en-US")} instructions`,
    `  CPU ${(s.cpuMs / 1000).toFixed(2)} s, steal ${(s.stealMs / 1000).toFixed(2)} s`,
    `  wake-up latency p50 ${s.wakeLatencyMs.p50.toFixed(2)} ms, p99 ${s.wakeLatencyMs.p99.toFixed(2)} ms (${s.wakeLatencyMs.samples} wake-ups)`,
    `  exits: ${exits || "none"}`,
    ...(s.jit ? [`  translation: ${s.jit.retired.toLocaleString("en-US")} instructions run translated, ${s.jit.translations} pages translated in ${s.jit.units} units (${s.jit.optimized} optimized, ${s.jit.onThread} made on the guest's thread), ${s.jit.live} pages alive`] : []),
  ].join("\n");
}
