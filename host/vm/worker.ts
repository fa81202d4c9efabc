// A VM's home thread. The main thread controls it through Comlink (boot, stop, stats) and
// moves console bytes through two shared-memory rings; while the guest sleeps in WFI the worker
// waits on the input ring with Atomics.waitAsync, so a keystroke or a timer wakes it at once
// and Comlink messages are still served.
import { parentPort } from "node:worker_threads";
import * as Comlink from "comlink";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { ByteRing } from "../util/ring";
import type { VirtMachine, StopReason, MachineStats } from "../machine/virt";
import { buildMachine, type MachineRequest } from "./build";

export type { DriveOption, NetOption, MachineRequest } from "./build";

/** A machine request plus the console rings: output (worker writes) and input (main thread writes). */
export interface BootRequest extends MachineRequest {
  consoleOut: SharedArrayBuffer;
  consoleIn: SharedArrayBuffer;
}

export interface VmStats extends MachineStats {
  /** Wall seconds since run() started. */
  seconds: number;
}

// How long the VM runs before yielding to the event loop (Comlink, timers).
const SLICE_MS = 20;

export class VmWorker {
  private machine: VirtMachine | null = null;
  private stopping = false;
  private started = 0;
  private inRing: ByteRing | null = null;
  private dtb: Uint8Array | null = null;

  /** Build the machine; throws (one-line message) on bad images or backends. Returns the DTB. */
  async create(req: BootRequest): Promise<Uint8Array> {
    const out = new ByteRing(req.consoleOut);
    const input = new ByteRing(req.consoleIn);
    this.inRing = input;
    this.machine = await buildMachine(req, {
      output: (bytes) => writeAll(out, bytes),
      input: () => input.readByte(),
      wake: () => input.kick(),
    });
    this.dtb = this.machine.dtb;
    return this.dtb;
  }

  /** Run until the guest stops (or stop() is called); resolves with why. */
  async run(): Promise<StopReason | { kind: "quit"; code: 0 }> {
    const m = this.machine;
    if (!m || !this.inRing) throw new Error("no VM: call create() first");
    this.started = performance.now();
    for (;;) {
      if (this.stopping) {
        m.close();
        return { kind: "quit", code: 0 };
      }
      const t0 = performance.now();
      let r = m.step();
      while (r.state === "running" && performance.now() - t0 < SLICE_MS && !this.stopping) r = m.step();
      if (r.state === "stopped") {
        m.close();
        return r.reason;
      }
      if (r.state === "idle") {
        const ms = Math.min(r.sleepSeconds * 1000, 1000);
        if (this.inRing.available() > 0 && m.uart.rxSpace() === 0) await sleep(Math.min(ms, 10));
        else await this.inRing.waitForData(ms);
      } else {
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
  }

  stop(): void {
    this.stopping = true;
    this.inRing?.kick();
  }

  stats(): VmStats | null {
    const m = this.machine;
    return m ? { ...m.stats(), seconds: this.started ? (performance.now() - this.started) / 1000 : 0 } : null;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Console output must not be lost: when the ring is full, wait for the reader to drain it.
function writeAll(ring: ByteRing, bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.length) {
    off += ring.write(bytes.subarray(off));
    if (off < bytes.length) ring.waitForSpace(10);
  }
}

if (parentPort) Comlink.expose(new VmWorker(), nodeEndpoint(parentPort));
