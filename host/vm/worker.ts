// A VM's home thread. The main thread controls it through Comlink (boot, stop, stats) and
// moves console bytes through two shared-memory rings; while the guest sleeps in WFI the worker
// waits on the input ring with Atomics.waitAsync, so a keystroke or a timer wakes it at once
// and Comlink messages are still served.
import { parentPort } from "node:worker_threads";
import * as Comlink from "comlink";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { loadCoreModule } from "../core/load-node";
import { ByteRing } from "../util/ring";
import { VirtMachine, type Image, type StopReason, type MachineStats, type DriveInterface, type NicModel } from "../machine/virt";
import { NodeDisk } from "../virtio/node-disk";
import { createNetBackend } from "../net/netdev";
import type { Paging } from "../core/core";
import { UserNet } from "../net/user";
import type { DiskBackend, NetBackend } from "../devices/backends";

export interface DriveOption {
  file: string;
  readOnly: boolean;
  serial?: string;
  /** virtio-blk or ATA; the CLI fills in the mode's default. */
  if: DriveInterface;
}

export interface NetOption {
  /** QEMU-style netdev string: "user[,hostfwd=...]" or "switch=NAME". */
  netdev: string;
  /** virtio-net or ethoc; the CLI fills in the mode's default. */
  model: NicModel;
}

export interface BootRequest {
  memory: number;
  harts: number;
  paging?: Paging;
  bios: Image | null | "builtin";
  drives: DriveOption[];
  nets: NetOption[];
  /** Time the host's handling of exits (for --stats). */
  timeExits?: boolean;
  kernel?: Image;
  initrd?: Image;
  append?: string;
  /** Console output ring (worker writes) and input ring (main thread writes). */
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
    // Backends live in this thread: disk I/O is synchronous here, network events arrive on this
    // event loop and wake the VM through the input ring.
    const disks: DiskBackend[] = [];
    const nets: NetBackend[] = [];
    try {
      for (const d of req.drives) disks.push(new NodeDisk(d.file, { readOnly: d.readOnly }));
      for (const n of req.nets) {
        // A failure after start-up (a later socket error) is the guest's to see, not fatal.
        const backend = createNetBackend(n.netdev, { onWake: () => input.kick(), onError: () => {} });
        nets.push(backend);
        // hostfwd listeners must be up (e.g. the port is free) before the guest starts.
        if (backend instanceof UserNet) await backend.ready();
      }
    } catch (e) {
      for (const d of disks) d.close();
      for (const n of nets) n.close();
      throw e;
    }
    this.machine = new VirtMachine({
      drives: disks.map((backend, i) => ({ backend, serial: req.drives[i].serial, readOnly: req.drives[i].readOnly, if: req.drives[i].if })),
      nets: nets.map((backend, i) => ({ backend, model: req.nets[i].model })),
      virtioConsole: req.bios === "builtin",
      module: loadCoreModule(),
      memory: req.memory,
      harts: req.harts,
      paging: req.paging,
      bios: req.bios,
      kernel: req.kernel,
      initrd: req.initrd,
      append: req.append,
      output: (bytes) => writeAll(out, bytes),
      input: () => input.readByte(),
      timeExits: req.timeExits,
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
