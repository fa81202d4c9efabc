// SMP suite: the Linux guest with two vCPUs, on wasmvisor and on qemu-system-riscv64 -smp 2
// (the same kernel and initramfs, both through OpenSBI). `wv-smp spin` (guests/linux/bench/
// wv-smp.c) runs one and then two CPU-bound processes, each pinned to its own vCPU: the speed-up
// is the two-process throughput over the one-process one (2 when the vCPUs really run at once).
// `wv-smp torture` checks AMOs, LR/SC, futex mutexes and release/acquire message passing across
// the vCPUs under each tier; its counts must be exact.
import { loadavg } from "node:os";
import { Session } from "../test/integration/cli";
import { median } from "../host/util/stats";
import { DEFAULT_FIRMWARE } from "../host/platform/node";
import { READY, PROMPT, type Guest } from "./boot";

export const VCPUS = 2;

/**
 * How `wasmvisor boot` gets a VM of VCPUS vCPUs on up to as many pCPUs. The one place to change
 * when the CLI gains its own pCPU flag: today `--smp N` makes N harts, and the host's pCPU count
 * follows it (host/cli/main.ts starts the hypervisor; with harts on one pCPU thread they take turns).
 */
export const WASMVISOR_SMP_ARGS = ["--smp", String(VCPUS)];

/** One parsed `WVS <kind> key=value ... [ok|FAIL]` line. */
export interface WvsLine {
  kind: string;
  fields: Record<string, string>;
  /** The trailing verdict word, if any. */
  verdict?: string;
}

export function parseWvs(output: string, kind: string): WvsLine {
  const line = output.split(/\r?\n/).find((l) => l.startsWith(`WVS ${kind} `));
  if (!line) throw new Error(`no 'WVS ${kind}' line in:\n${output.slice(-2000)}`);
  const fields: Record<string, string> = {};
  let verdict: string | undefined;
  for (const word of line.trim().split(/\s+/).slice(2)) {
    const eq = word.indexOf("=");
    if (eq > 0) fields[word.slice(0, eq)] = word.slice(eq + 1);
    else verdict = word;
  }
  return { kind, fields, verdict };
}

/** A booted guest at its shell prompt; `run` types a command and returns its output and exit status. */
export class SmpGuest {
  private constructor(readonly session: Session, private at: number) {}

  static async boot(session: Session): Promise<SmpGuest> {
    try {
      const ready = await session.expect(READY, 300_000);
      session.send("\r");
      return new SmpGuest(session, await session.expect(PROMPT, 60_000, ready));
    } catch (e) {
      session.kill();
      throw e;
    }
  }

  /** wasmvisor with VCPUS vCPUs, full mode (OpenSBI, as QEMU), the given tier. */
  static wasmvisor(g: Guest, jit: "off" | "on"): Promise<SmpGuest> {
    return SmpGuest.boot(new Session(["boot", "--mode", "full", "--jit", jit, ...WASMVISOR_SMP_ARGS,
      "--kernel", g.kernel, "--initrd", g.initramfs, "--append", "console=ttyS0"]));
  }

  static qemu(g: Guest): Promise<SmpGuest> {
    return SmpGuest.boot(new Session(["-M", "virt", "-smp", String(VCPUS), "-m", "256M", "-nographic", "-bios", DEFAULT_FIRMWARE,
      "-kernel", g.kernel, "-initrd", g.initramfs, "-append", "console=ttyS0"], { command: "qemu-system-riscv64" }));
  }

  async run(command: string, timeoutMs = 600_000): Promise<{ output: string; status: number }> {
    // The marker is split by quotes in the echoed command line, so only the echo's output matches it.
    this.session.send(`${command}; echo "WVS-""status=$?"\r`);
    const end = await this.session.expect(/WVS-status=\d+\r?\n/, timeoutMs, this.at);
    const output = this.session.out.slice(this.at, this.session.out.indexOf("\n", end) + 1);
    const status = Number(/WVS-status=(\d+)/.exec(output)![1]);
    this.at = await this.session.expect(PROMPT, 60_000, end);
    return { output, status };
  }

  close(): void {
    this.session.kill();
  }
}

export interface SpinRuns {
  /** Steps per process (the same for both process counts). */
  work: number;
  /** Guest-wide throughput (steps per second over all processes), per run. */
  one: number[];
  two: number[];
  /** median(two) / median(one). */
  speedup: number;
}

export interface TortureRun {
  /** wasmvisor's tier; absent on QEMU. */
  jit?: "off" | "on";
  ok: boolean;
  /** The guest's result line, as printed. */
  line: string;
  seconds: number;
  /** CAS attempts that lost a race: greater than 0 shows the threads overlapped. */
  casRetries: number;
  /** Times a thread saw another's increment between two of its own. */
  interleavings: number;
}

export interface SmpResult {
  vcpus: number;
  /** The wasmvisor flags the runs used for their vCPUs (and pCPUs). */
  wasmvisor_args: string[];
  seconds_per_run: number;
  /** The host's 1-minute load average before the runs: two vCPUs only speed up on two idle host cores. */
  host_load: number;
  torture_iters: number;
  wasmvisor: SpinRuns;
  qemu: SpinRuns | null;
  torture: TortureRun[];
  qemu_torture: TortureRun | null;
}

async function spin(guest: SmpGuest, procs: number, work: number): Promise<number> {
  const { output, status } = await guest.run(`wv-smp spin -p ${procs} -n ${work}`);
  const r = parseWvs(output, "spin");
  if (status !== 0) throw new Error(`wv-smp spin -p ${procs} failed (status ${status}):\n${output}`);
  return Number(r.fields.ops_per_s);
}

/** One-process steps that take about `seconds`, then alternating runs of one and two processes. */
export async function spinRuns(guest: SmpGuest, seconds: number, runs: number): Promise<SpinRuns> {
  const calibration = parseWvs((await guest.run(`wv-smp spin -p 1 -s ${seconds}`)).output, "spin");
  const work = Number(calibration.fields.work);
  const one: number[] = [], two: number[] = [];
  for (let i = 0; i < runs; i++) {
    one.push(await spin(guest, 1, work));
    two.push(await spin(guest, 2, work));
  }
  return { work, one, two, speedup: median(two) / median(one) };
}

export async function torture(guest: SmpGuest, iters: number, jit?: "off" | "on"): Promise<TortureRun> {
  const { output, status } = await guest.run(`wv-smp torture -t ${VCPUS} -n ${iters}`);
  const r = parseWvs(output, "torture");
  const line = output.split(/\r?\n/).find((l) => l.startsWith("WVS torture "))!.trim();
  return { ...(jit ? { jit } : {}), ok: status === 0 && r.verdict === "ok", line, seconds: Number(r.fields.seconds),
    casRetries: Number(r.fields.cas_retries), interleavings: Number(r.fields.interleavings) };
}

export async function smpSuite(g: Guest, quick: boolean, withQemu: boolean, log: (s: string) => void): Promise<SmpResult> {
  const seconds = quick ? 1 : 3;
  const runs = quick ? 1 : 3;
  const iters = quick ? 20_000 : 100_000;
  const hostLoad = loadavg()[0];
  const tortures: TortureRun[] = [];
  let wasmvisor: SpinRuns | undefined;
  for (const jit of ["off", "on"] as const) {
    const guest = await SmpGuest.wasmvisor(g, jit);
    try {
      const t = await torture(guest, iters, jit);
      tortures.push(t);
      log(`  torture, --jit ${jit}: ${t.ok ? "exact" : "WRONG"} in ${t.seconds.toFixed(2)} s (${t.casRetries} lost CAS races, ${t.interleavings} interleavings)`);
      // Throughput on the translation tier, the one a CPU-bound guest runs on.
      if (jit === "on") wasmvisor = await spinRuns(guest, seconds, runs);
    } finally {
      guest.close();
    }
  }
  log(`  spin on wasmvisor: 1 process ${mops(median(wasmvisor!.one))}, 2 processes ${mops(median(wasmvisor!.two))}: ${wasmvisor!.speedup.toFixed(2)}x`);
  let qemu: SpinRuns | null = null;
  let qemuTorture: TortureRun | null = null;
  if (withQemu) {
    const guest = await SmpGuest.qemu(g);
    try {
      qemuTorture = await torture(guest, iters);
      qemu = await spinRuns(guest, seconds, runs);
    } finally {
      guest.close();
    }
    log(`  spin on QEMU: 1 process ${mops(median(qemu.one))}, 2 processes ${mops(median(qemu.two))}: ${qemu.speedup.toFixed(2)}x; torture ${qemuTorture.ok ? "exact" : "WRONG"}`);
  }
  return { vcpus: VCPUS, wasmvisor_args: WASMVISOR_SMP_ARGS, seconds_per_run: seconds, host_load: hostLoad, torture_iters: iters, wasmvisor: wasmvisor!, qemu, torture: tortures, qemu_torture: qemuTorture };
}

const mops = (opsPerS: number) => `${(opsPerS / 1e6).toFixed(1)} M steps/s`;
