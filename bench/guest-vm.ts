// A Linux guest driven from the bench process: the VM runs on a one-pCPU host (a worker
// thread), its console comes through the host's console path, and this thread's event loop
// stays free for the host side of network benchmarks. Commands are typed at the guest's shell;
// a gated command (wv-bench -g, or `wv-bench gate` around another program) lets the host read
// the VM's statistics just before and just after the measured part.
//
// The machine is configured the way `wasmvisor boot --mode <mode>` configures it (the CLI's
// parser) and run the way `boot` runs it, so each mode gets the CLI's default devices: para the
// built-in SBI and virtio, full Debian's OpenSBI and the legacy devices. The suites find the
// disk and NIC in the guest (probeDevices) rather than assume them from the mode.
import { parseCli } from "../host/cli/args";
import type { VmStats } from "../host/cli/stats";
import type { Mode, Paging, VmConfig } from "../host/config/vm-config";
import type { JitMode } from "../host/jit/tier";
import { Hypervisor } from "../host/hv/hypervisor";
import { nodePlatform } from "../host/platform/node";
import { READY, PROMPT } from "./boot";

export type { Mode, Paging, VmStats };

export interface MachineSpec {
  mode: Mode;
  paging: Paging;
  memoryMiB: number;
  kernel: string;
  initrd: string;
  /** Raw disk image, the machine's one disk (the guest writes to it). */
  disk: string;
  /** The translation tier (the CLI's default when absent). */
  jit?: JitMode;
}

/** Each mode's own console: the virtio-console in para mode, the 16550 in full mode. */
export const consoleDevice = (mode: Mode) => (mode === "para" ? "hvc0" : "ttyS0");

/** The VM `spec` describes, as `wasmvisor boot --stats` with one disk and user networking. */
export function bootConfig(spec: MachineSpec): VmConfig {
  const cmd = parseCli(["boot", "--mode", spec.mode, "--paging", spec.paging, "--memory", `${spec.memoryMiB}M`,
    "--kernel", spec.kernel, "--initrd", spec.initrd, "--append", `console=${consoleDevice(spec.mode)}`,
    "--drive", `file=${spec.disk}`, "--net", "user", "--stats", ...(spec.jit ? ["--jit", spec.jit] : [])]);
  if (cmd.kind !== "boot") throw new Error(`bench: not a boot command: ${cmd.kind}`);
  return cmd.config;
}

export interface Device {
  /** Name in the guest: vda, sda, eth0. */
  name: string;
  /** Its driver, from sysfs: virtio_blk, sd, virtio_net, ethoc... */
  driver: string;
}

/**
 * The first disk (vda or sda) and eth0 as the guest sees them, or null when it has none; the
 * NIC only counts when it has an address (the network workloads need one).
 */
export async function probeDevices(vm: GuestVm): Promise<{ disk: Device | null; nic: Device | null }> {
  const driver = (sys: string) => `$(basename "$(readlink ${sys}/device/driver)")`;
  const out = await vm.sh(`for d in vda sda; do [ -b /dev/$d ] && { echo "disk=$d ${driver("/sys/block/$d")}"; break; }; done; ` +
    `ifconfig eth0 2>/dev/null | grep -q 'inet addr' && echo "nic=eth0 ${driver("/sys/class/net/eth0")}"; true`);
  const find = (what: string): Device | null => {
    const m = new RegExp(`^${what}=(\\w+) (\\S+)\\r?$`, "m").exec(out);
    return m ? { name: m[1], driver: m[2] } : null;
  };
  return { disk: find("disk"), nic: find("nic") };
}

export interface Match {
  /** Where the match starts and ends in the console text. */
  index: number;
  end: number;
  groups: string[];
  /** performance.now() when the bytes that completed the match were read from the ring. */
  at: number;
}

export interface GatedRun {
  /** Console text from the command line to its end. */
  output: string;
  before: VmStats;
  after: VmStats;
  /** Host wall time from releasing the first gate to seeing the second. */
  hostSeconds: number;
}

const GATE = /^WVB gate\r?$/m;

export class GuestVm {
  /** Everything the console printed (latin1). */
  text = "";
  private stopped: Error | null = null;
  private waiters = new Set<() => void>();
  private ids = 0;
  private started = performance.now();
  private console: { write(bytes: Uint8Array): void; detach(): void } | null = null;

  private constructor(private readonly hv: Hypervisor, private readonly name: string) {}

  /** Boot a guest and wait for its shell prompt. */
  static async boot(spec: MachineSpec, timeoutMs = 300_000): Promise<GuestVm> {
    // As `wasmvisor boot` runs its VM: one pCPU, no balancing, no watchdog, no memory limit.
    const hv = await Hypervisor.start(nodePlatform, { cpus: 1, balance: false, watchdogSeconds: 0, overcommit: Infinity, fileDescriptors: Infinity });
    const config = bootConfig(spec);
    const g = new GuestVm(hv, config.name);
    try {
      await hv.createVm(config);
      g.console = hv.attachConsole(g.name, (bytes) => {
        g.text += Buffer.from(bytes).toString("latin1");
        g.wake();
      });
      await hv.act(g.name, "start");
      g.started = performance.now();
      void hv.waitForEnd(g.name).then((info) => {
        g.stopped = new Error(`the VM stopped: ${info.state} (${info.reason})`);
        g.wake();
      });
      const ready = await g.expect(new RegExp(READY), 0, timeoutMs);
      g.send("\r");
      await g.expect(PROMPT, ready.end, 60_000);
      return g;
    } catch (e) {
      await g.close();
      throw e;
    }
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  send(text: string): void {
    this.console!.write(Buffer.from(text, "latin1"));
  }

  /** Wait until the console text after `from` matches `re`. */
  expect(re: RegExp, from: number, timeoutMs: number): Promise<Match> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const m = re.exec(this.text.slice(from));
        if (m) {
          done();
          resolve({ index: from + m.index, end: from + m.index + m[0].length, groups: [...m], at: performance.now() });
        } else if (this.stopped) {
          done();
          reject(new Error(`${this.stopped.message} before ${re}; console:\n${this.text.slice(-3000)}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${re}; console:\n${this.text.slice(-3000)}`));
      }, timeoutMs);
      const done = () => { clearTimeout(timer); this.waiters.delete(check); };
      this.waiters.add(check);
      check();
    });
  }

  /**
   * Type a command at the shell and wait for it to finish; returns its console text. Throws
   * when its exit status is not 0.
   */
  async sh(cmd: string, timeoutMs = 120_000): Promise<string> {
    const { from, done } = this.start(cmd);
    const end = await this.expect(done, from, timeoutMs);
    const output = this.text.slice(from, end.index);
    if (end.groups[1] !== "0") throw new Error(`guest command failed (status ${end.groups[1]}): ${cmd}\n${output.slice(-2000)}`);
    return output;
  }

  /** Run a command with two gates (see wv-bench.c), taking stats() at each. */
  async gated(cmd: string, timeoutMs = 300_000): Promise<GatedRun> {
    const { from, done } = this.start(cmd);
    const either = new RegExp(`${GATE.source}|${done.source}`, "m");
    const gate = async (after: number): Promise<Match> => {
      const m = await this.expect(either, after, timeoutMs);
      if (!m.groups[0].startsWith("WVB gate")) {
        throw new Error(`guest command ended (status ${m.groups[1]}) without passing its gates: ${cmd}\n${this.text.slice(from).slice(-2000)}`);
      }
      return m;
    };
    const first = await gate(from);
    const before = await this.stats();
    const released = performance.now();
    this.send("\r");
    const second = await gate(first.end);
    const after = await this.stats();
    this.send("\r");
    const end = await this.expect(done, second.end, 60_000);
    const output = this.text.slice(from, end.index);
    if (end.groups[1] !== "0") throw new Error(`guest command failed (status ${end.groups[1]}): ${cmd}\n${output.slice(-2000)}`);
    return { output, before, after, hostSeconds: (second.at - released) / 1000 };
  }

  /** Send `cmd` followed by an end marker carrying its status; the marker is quoted in two
   * pieces so only the command's output, not the echoed line, contains it whole. */
  private start(cmd: string): { from: number; done: RegExp } {
    const id = `${++this.ids}${Math.random().toString(36).slice(2, 6)}`;
    const from = this.text.length;
    this.send(`${cmd}; echo "__done_""${id} $?"\r`);
    return { from, done: new RegExp(`__done_${id} (\\d+)`) };
  }

  async stats(): Promise<VmStats> {
    return { ...(await this.hv.machineStats(this.name)), seconds: (performance.now() - this.started) / 1000 };
  }

  async close(): Promise<void> {
    this.console?.detach();
    await this.hv.close();
  }
}
