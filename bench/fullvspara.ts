// The full-vs-para and paging suites: the Linux guest of guests/linux runs the same workloads in
// each machine mode (para: built-in SBI + virtio devices; full: Debian's OpenSBI in the guest +
// legacy devices) and paging mode (nested, shadow). Each workload runs between two gates (see
// guests/linux/bench/wv-bench.c) at which the VM's counters are read, so the exits, host time
// and paging events charged to it are those of exactly the workload (plus the gates' own few).
//   fullvspara: every workload, 2 machine modes x 2 paging modes;
//   paging:     a TLB-miss-heavy workload (random reads over buffers of growing size) and
//               page-table-update-heavy ones (forkwait, mmap/munmap churn), nested vs shadow
//               (para mode: the paging mode does not depend on the firmware or devices).
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GuestVm, probeDevices, consoleDevice, type Device, type GatedRun, type Mode, type Paging } from "./guest-vm";
import { startNetServer } from "./guest-net";
import { median } from "../host/util/stats";
import { formatValue } from "./svg";
import { PAGING_MODES } from "../host/core/core";

const MODES: readonly Mode[] = ["para", "full"];
const MEMORY_MIB = 256;
/** The host as the guest reaches it through user-mode networking. */
export const HOST = "10.0.2.2";
const BLOCK = 64 * 1024; // dd's block size, and the unit of network transfers per "operation"

/** Counter differences over one or more gated windows. */
export interface Delta {
  ops: number;
  instructions: number;
  /** Host wall time inside the windows. */
  host_seconds: number;
  /** Exits to the host by kind (MachineStats.exits). */
  exits: Record<string, number>;
  /** Host time handling exits, by the kinds that are timed (mmio, sbi, tohost). */
  exit_seconds: Record<string, number>;
  /** MMIO exits by device, SBI calls by extension. */
  mmio: Record<string, number>;
  sbi: Record<string, number>;
  /** Paging events inside the core (MachineStats.paging): not exits. */
  paging: Record<string, number>;
}

/** One workload in one machine: its figure and what it cost the VMM. */
export interface Measured {
  key: string;
  label: string;
  /** Unit of `value`, e.g. "MB/s" (MB = 10^6 bytes) or "µs per op". */
  metric: string;
  better: "higher" | "lower";
  /** Median over the runs. */
  value: number;
  runs: number[];
  /** What one operation is, for the per-operation figures. */
  op: string;
  /** Exits to the host per operation (every kind but `budget`, the VMM ending a time slice). */
  exits_per_op: number;
  /** Host µs per timed exit (MMIO, SBI, tohost); null when there was none. */
  host_us_per_exit: number | null;
  /** The paging counters per operation (ptWriteTraps: shadow page-table write traps, in-core). */
  paging_per_op: Record<string, number>;
  /** Totals over all runs. */
  delta: Delta;
}

export interface Machine {
  mode: Mode;
  paging: Paging;
  disk: Device | null;
  nic: Device | null;
  console: string;
  /** Exits in a window with nothing in it: what the gates themselves cost. */
  gate_exits: number;
  workloads: Measured[];
}

export interface GuestSuiteResult {
  memory_mib: number;
  /** Runs of each workload (in one boot per machine). */
  runs: number;
  machines: Machine[];
}

export interface Guest { kernel: string; initramfs: string; disk: string }

export interface Workload {
  key: string;
  label: string;
  metric: string;
  better: "higher" | "lower";
  op: string;
  needs?: "disk" | "nic";
  /** Shell command run once before the runs. */
  setup?: (ctx: Context) => string;
  /** The gated command. */
  command: (ctx: Context) => string;
  /** Its figure and operation count, from its console output. */
  parse: (output: string) => { value: number; ops: number };
}

/** Where a workload runs: its disk (a name under /dev), and the host's network server (bench/guest-net.ts). */
export interface Context { disk: string; host: string; port: number }

// ---- parsing the guest's output ----

/** wv-bench's result line: WVB name=<name> ops=<n> ns_per_op=<x> [key=value ...]. */
export function parseWvb(output: string, name: string): { ops: number; nsPerOp: number; extra: Record<string, string> } {
  const m = new RegExp(`^WVB name=${name} ops=(\\d+) ns_per_op=([\\d.]+)(.*?)\\r?$`, "m").exec(output);
  if (!m) throw new Error(`no wv-bench result line for ${name} in:\n${output.slice(-1000)}`);
  const extra = Object.fromEntries([...m[3].matchAll(/ (\w+)=(\S+)/g)].map((e) => [e[1], e[2]]));
  return { ops: Number(m[1]), nsPerOp: Number(m[2]), extra };
}

/** BusyBox dd's summary: bytes copied and seconds taken. */
export function parseDd(output: string): { bytes: number; seconds: number } {
  const m = /^(\d+) bytes \([^)]*\) copied, ([\d.]+) seconds/m.exec(output);
  if (!m) throw new Error(`no dd summary in:\n${output.slice(-1000)}`);
  return { bytes: Number(m[1]), seconds: Number(m[2]) };
}

/** BusyBox ping's summary: packets sent and the average round trip in ms. */
export function parsePing(output: string): { sent: number; avgMs: number } {
  const sent = /^(\d+) packets transmitted, (\d+) packets received/m.exec(output);
  const rtt = /^round-trip min\/avg\/max = [\d.]+\/([\d.]+)\/[\d.]+ ms/m.exec(output);
  if (!sent || !rtt) throw new Error(`no ping summary in:\n${output.slice(-1000)}`);
  if (sent[1] !== sent[2]) throw new Error(`ping lost packets: ${sent[0]}`);
  return { sent: Number(sent[1]), avgMs: Number(rtt[1]) };
}

// ---- the workloads ----

const GATE = "wv-bench gate";
const gatedShell = (cmd: string) => `${GATE} && ${cmd} && ${GATE}`;

/** A wv-bench microbenchmark: `value` from its ns per operation. */
function micro(key: string, label: string, op: string, args: string, metric = "µs per op", scale = 1e-3): Workload {
  return {
    key, label, op, metric, better: "lower",
    command: () => `wv-bench -g ${key} ${args}`,
    parse: (out) => {
      const r = parseWvb(out, key);
      return { value: r.nsPerOp * scale, ops: r.ops };
    },
  };
}

export function fullVsParaWorkloads(quick: boolean): Workload[] {
  const q = (quickValue: number, fullValue: number) => (quick ? quickValue : fullValue);
  const diskBlocks = q(64, 256); // 4 or 16 MiB
  const netBytes = q(4, 16) << 20;
  const pings = q(20, 100);
  const dd = (key: string, label: string, io: (dev: string) => string): Workload => ({
    key, label, metric: "MB/s", better: "higher", op: "64 KiB block", needs: "disk",
    // Raw writes must not go under a mounted filesystem: unmount it first.
    setup: ({ disk }) => `! grep -q '^/dev/${disk} ' /proc/mounts || umount /dev/${disk}`,
    command: ({ disk }) => gatedShell(`dd ${io(`/dev/${disk}`)} bs=${BLOCK} count=${diskBlocks}`),
    parse: (out) => {
      const r = parseDd(out);
      return { value: r.bytes / r.seconds / 1e6, ops: r.bytes / BLOCK };
    },
  });
  const tcp = (key: "tcp-rx" | "tcp-tx", label: string): Workload => ({
    key, label, metric: "MB/s", better: "higher", op: "64 KiB", needs: "nic",
    command: ({ host, port }) => `wv-bench -g ${key} ${host} ${port} ${netBytes}`,
    parse: (out) => {
      const r = parseWvb(out, key);
      return { value: Number(r.extra.bytes_per_s) / 1e6, ops: r.ops / BLOCK };
    },
  });
  return [
    dd("disk_write", "disk write (dd, O_DIRECT)", (dev) => `if=/dev/zero of=${dev} oflag=direct`),
    dd("disk_read", "disk read (dd, O_DIRECT)", (dev) => `if=${dev} of=/dev/null iflag=direct`),
    {
      key: "console", label: "console output", metric: "bytes/s", better: "higher", op: "byte",
      command: () => `wv-bench -g console ${q(16, 64) << 10}`,
      parse: (out) => {
        const r = parseWvb(out, "console");
        return { value: Number(r.extra.bytes_per_s), ops: r.ops };
      },
    },
    tcp("tcp-rx", "network host → guest (TCP)"),
    tcp("tcp-tx", "network guest → host (TCP)"),
    {
      key: "ping", label: "ping round trip", metric: "µs", better: "lower", op: "ping", needs: "nic",
      // -A: the next ping as soon as the reply is in, so the window holds no idle time.
      command: ({ host }) => gatedShell(`ping -q -A -c ${pings} ${host}`),
      parse: (out) => {
        const r = parsePing(out);
        return { value: r.avgMs * 1e3, ops: r.sent };
      },
    },
    micro("timer", "1 ms nanosleep", "sleep", `${q(50, 200)} 1000`, "µs per sleep"),
    micro("syscall", "syscall (getppid)", "call", `${q(20000, 100000)}`),
    micro("pagefault", "page fault (first touch)", "page", `${q(2048, 8192)}`),
    micro("ptmod", "page-table modification (2 mprotects)", "toggle", `${q(2000, 10000)}`),
    micro("forkwait", "forkwait (fork, exit, wait)", "fork", `${q(50, 200)}`),
    micro("mmap", "mmap/munmap churn (16 pages)", "mapping", `${q(200, 1000)}`),
  ];
}

/** Buffer sizes of the TLB-miss-heavy workload: below, at and beyond the core TLB's reach (1024 x 4 KiB). */
export const RANDOM_ACCESS_MIB = [1, 4, 16, 64];

function pagingWorkloads(quick: boolean): Workload[] {
  const reads = quick ? 500_000 : 2_000_000;
  const byKey = new Map(fullVsParaWorkloads(quick).map((w) => [w.key, w]));
  return [
    ...RANDOM_ACCESS_MIB.map((mib) => ({
      ...micro("randaccess", `random reads, ${mib} MiB buffer`, "read", `${mib} ${reads}`, "ns per read", 1),
      key: `randaccess_${mib}`,
    })),
    byKey.get("forkwait")!,
    byKey.get("mmap")!,
  ];
}

// ---- measuring ----

function diff(after: object, before: object): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) if (typeof v === "number") out[k] = v - ((before as Record<string, number>)[k] ?? 0);
  return out;
}

function sum(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = (out[k] ?? 0) + v;
  return out;
}

/** What happened between a gated run's two gates. */
export function windowDelta(r: GatedRun, ops: number): Delta {
  return {
    ops, instructions: r.after.instructions - r.before.instructions, host_seconds: r.hostSeconds,
    exits: diff(r.after.exits, r.before.exits), exit_seconds: diff(r.after.exitSeconds ?? {}, r.before.exitSeconds ?? {}),
    mmio: diff(r.after.mmio, r.before.mmio), sbi: diff(r.after.sbi, r.before.sbi), paging: diff(r.after.paging, r.before.paging),
  };
}

export function addDeltas(a: Delta, b: Delta): Delta {
  return {
    ops: a.ops + b.ops, instructions: a.instructions + b.instructions, host_seconds: a.host_seconds + b.host_seconds,
    exits: sum(a.exits, b.exits), exit_seconds: sum(a.exit_seconds, b.exit_seconds),
    mmio: sum(a.mmio, b.mmio), sbi: sum(a.sbi, b.sbi), paging: sum(a.paging, b.paging),
  };
}

/** Exits to the host the guest caused: all but `budget`, the VMM ending a time slice. */
export function guestExits(d: Delta): number {
  return Object.entries(d.exits).reduce((a, [k, n]) => (k === "budget" ? a : a + n), 0);
}

/** Host µs per exit over the kinds whose handling is timed; null when there were none. */
export function hostUsPerExit(d: Delta): number | null {
  const kinds = Object.keys(d.exit_seconds);
  const n = kinds.reduce((a, k) => a + (d.exits[k] ?? 0), 0);
  return n ? (kinds.reduce((a, k) => a + d.exit_seconds[k], 0) / n) * 1e6 : null;
}

export function summarize(w: Pick<Workload, "key" | "label" | "metric" | "better" | "op">, runs: number[], delta: Delta): Measured {
  return {
    key: w.key, label: w.label, metric: w.metric, better: w.better, op: w.op, value: median(runs), runs,
    exits_per_op: guestExits(delta) / delta.ops, host_us_per_exit: hostUsPerExit(delta),
    paging_per_op: Object.fromEntries(Object.entries(delta.paging).map(([k, n]) => [k, n / delta.ops])),
    delta,
  };
}

export async function measure(vm: GuestVm, w: Workload, ctx: Context, runs: number): Promise<Measured> {
  if (w.setup) await vm.sh(w.setup(ctx));
  const values: number[] = [];
  let total: Delta | null = null;
  // Run -1 warms up (the VMM's code paths get optimized, the guest's caches filled) and is not counted.
  for (let i = -1; i < runs; i++) {
    const r = await vm.gated(w.command(ctx));
    const { value, ops } = w.parse(r.output);
    if (!(value > 0 && ops > 0)) throw new Error(`${w.key}: implausible result (value ${value}, ${ops} ops) from:\n${r.output.slice(-1000)}`);
    if (i < 0) continue;
    values.push(value);
    const d = windowDelta(r, ops);
    total = total ? addDeltas(total, d) : d;
  }
  return summarize(w, values, total!);
}

/** Boot one machine, run the workloads on it, power it off. */
async function runMachine(g: Guest, mode: Mode, paging: Paging, workloads: Workload[], runs: number, port: number,
  log: (s: string) => void): Promise<Machine> {
  // The guest writes to its disk: give it a copy.
  const dir = mkdtempSync(join(tmpdir(), "wasmvisor-bench-"));
  const disk = join(dir, "disk.img");
  copyFileSync(g.disk, disk);
  const vm = await GuestVm.boot({ mode, paging, memoryMiB: MEMORY_MIB, kernel: g.kernel, initrd: g.initramfs, disk });
  try {
    const devices = await probeDevices(vm);
    const found = (d: Device | null) => (d ? `${d.name} (${d.driver})` : "none");
    log(`  ${mode} / ${paging}: disk ${found(devices.disk)}, NIC ${found(devices.nic)}, console ${consoleDevice(mode)}`);
    const empty = await vm.gated("wv-bench -g syscall 0");
    const m: Machine = {
      mode, paging, disk: devices.disk, nic: devices.nic, console: consoleDevice(mode),
      gate_exits: guestExits(windowDelta(empty, 1)), workloads: [],
    };
    const ctx: Context = { disk: devices.disk?.name ?? "", host: HOST, port };
    for (const w of workloads) {
      if (w.needs && !devices[w.needs]) throw new Error(`${mode}/${paging}: ${w.key} needs a ${w.needs}, and the guest has none`);
      const r = await measure(vm, w, ctx, runs);
      m.workloads.push(r);
      log(`    ${r.label.padEnd(40)} ${formatValue(r.value).padStart(9)} ${r.metric.padEnd(12)} ` +
        `${formatValue(r.exits_per_op).padStart(8)} exits/${r.op}, ${r.host_us_per_exit === null ? "-" : formatValue(r.host_us_per_exit)} µs/exit` +
        (paging === "shadow" ? `, ${formatValue(r.paging_per_op.ptWriteTraps ?? 0)} PT write traps/${r.op}` : ""));
    }
    return m;
  } finally {
    await vm.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function runSuite(g: Guest, combos: [Mode, Paging][], workloads: Workload[], runs: number, log: (s: string) => void): Promise<GuestSuiteResult> {
  const server = await startNetServer();
  try {
    const machines: Machine[] = [];
    for (const [mode, paging] of combos) machines.push(await runMachine(g, mode, paging, workloads, runs, server.port, log));
    return { memory_mib: MEMORY_MIB, runs, machines };
  } finally {
    await server.close();
  }
}

export function fullVsParaSuite(g: Guest, quick: boolean, runs: number, log: (s: string) => void): Promise<GuestSuiteResult> {
  const combos = MODES.flatMap((mode) => PAGING_MODES.map((paging): [Mode, Paging] => [mode, paging]));
  return runSuite(g, combos, fullVsParaWorkloads(quick), runs, log);
}

export function pagingSuite(g: Guest, quick: boolean, runs: number, log: (s: string) => void): Promise<GuestSuiteResult> {
  return runSuite(g, PAGING_MODES.map((paging): [Mode, Paging] => ["para", paging]), pagingWorkloads(quick), runs, log);
}
