// A Linux guest driven from the bench process: the VM runs in its worker (dist/vm-worker.js,
// Comlink), its console comes and goes through shared-memory rings, and this thread's event loop
// stays free for the host side of network benchmarks. Commands are typed at the guest's shell;
// a gated command (wv-bench -g, or `wv-bench gate` around another program) lets the host read
// the VM's statistics just before and just after the measured part.
//
// The machine is built the way `wasmvisor boot --mode <mode>` builds it (the CLI's parser and
// request builder), so each mode gets the CLI's default devices: para the built-in SBI and
// virtio, full Debian's OpenSBI and the legacy devices. The suites find the disk and NIC in
// the guest (probeDevices) rather than assume them from the mode.
import { Worker } from "node:worker_threads";
import { join } from "node:path";
import * as Comlink from "comlink";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { ByteRing } from "../host/util/ring";
import { packageRoot } from "../host/core/load-node";
import { parseCli, type Mode } from "../host/cli/args";
import { machineRequest } from "../host/vm/request";
import type { Paging } from "../host/core/core";
import type { BootRequest, VmWorker, VmStats } from "../host/vm/worker";
import { READY, PROMPT } from "./boot";

export type { Mode, Paging };

export interface MachineSpec {
  mode: Mode;
  paging: Paging;
  memoryMiB: number;
  kernel: string;
  initrd: string;
  /** Raw disk image, the machine's one disk (the guest writes to it). */
  disk: string;
}

/** Each mode's own console: the virtio-console in para mode, the 16550 in full mode. */
export const consoleDevice = (mode: Mode) => (mode === "para" ? "hvc0" : "ttyS0");

/** The worker's request for `spec`, as `wasmvisor boot --stats` with one disk and user networking. */
export function bootRequest(spec: MachineSpec, rings: { consoleOut: SharedArrayBuffer; consoleIn: SharedArrayBuffer }): BootRequest {
  const cmd = parseCli(["boot", "--mode", spec.mode, "--paging", spec.paging, "--memory", `${spec.memoryMiB}M`,
    "--kernel", spec.kernel, "--initrd", spec.initrd, "--append", `console=${consoleDevice(spec.mode)}`,
    "--drive", `file=${spec.disk}`, "--net", "user", "--stats"]);
  if (cmd.kind !== "boot") throw new Error(`bench: not a boot command: ${cmd.kind}`);
  return { ...machineRequest(cmd.options), ...rings };
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
  private readonly out = new ByteRing(1 << 16);
  private readonly in = new ByteRing(1 << 12);
  private readonly worker: Worker;
  private readonly vm: Comlink.Remote<VmWorker>;
  private running = true;
  private stopped: Error | null = null;
  private waiters = new Set<() => void>();
  private readonly drained: Promise<void>;
  /** Settles when the worker's run() does. */
  private ran: Promise<unknown> = Promise.resolve();
  private ids = 0;

  private constructor() {
    this.worker = new Worker(join(packageRoot(), "dist/vm-worker.js"));
    this.vm = Comlink.wrap<VmWorker>(nodeEndpoint(this.worker));
    this.drained = this.drain();
  }

  /** Boot a guest and wait for its shell prompt. */
  static async boot(spec: MachineSpec, timeoutMs = 300_000): Promise<GuestVm> {
    const g = new GuestVm();
    try {
      await g.vm.create(bootRequest(spec, { consoleOut: g.out.buffer, consoleIn: g.in.buffer }));
      const ended = (why: string) => { g.stopped = new Error(`the VM stopped: ${why}`); g.wake(); };
      g.worker.on("error", (e) => ended(e.message));
      g.worker.on("exit", (c) => ended(`its worker exited (${c})`));
      g.ran = g.vm.run().then((r) => ended(JSON.stringify(r)), (e: Error) => ended(e.message));
      const ready = await g.expect(new RegExp(READY), 0, timeoutMs);
      g.send("\r");
      await g.expect(PROMPT, ready.end, 60_000);
      return g;
    } catch (e) {
      await g.close();
      throw e;
    }
  }

  private async drain(): Promise<void> {
    while (this.running) {
      await this.out.waitForData(50);
      const bytes = this.out.read();
      if (bytes.length) {
        this.text += Buffer.from(bytes).toString("latin1");
        this.wake();
      }
    }
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  send(text: string): void {
    const bytes = Buffer.from(text, "latin1");
    let off = 0;
    // The input ring is small; the guest drains it as it reads.
    const push = () => { off += this.in.write(bytes.subarray(off)); };
    push();
    if (off < bytes.length) throw new Error(`console input ring full (${bytes.length - off} bytes not sent)`);
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
    const s = await this.vm.stats();
    if (!s) throw new Error("the VM has no statistics (not created)");
    return s;
  }

  async close(): Promise<void> {
    if (!this.stopped) await this.vm.stop().catch(() => {});
    await Promise.race([this.ran, new Promise((r) => setTimeout(r, 2000))]);
    this.running = false;
    this.out.kick();
    await this.drained;
    this.vm[Comlink.releaseProxy]();
    await this.worker.terminate();
  }
}
