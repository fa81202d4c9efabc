/**
 * The hypervisor's control plane (the embedding API; `wasmvisor host` serves it over HTTP).
 * It owns a pool of pCPU workers, admits VMs (memory and vCPU limits), homes each on a worker,
 * drives their life cycle, keeps their consoles, and reacts to failures: a VM that crashes or
 * gets stuck is kept, restarted or destroyed as its definition says; a worker that dies fails
 * only the VMs homed on it and is replaced.
 */
import * as Comlink from "comlink";
import { vmmLayout } from "../core/core";
import { diskSectionTarget } from "../state/disk";
import { concatBytes } from "../util/bytes";
import { bitmapCount } from "../util/bits";
import { ByteRing, ringDoorbell } from "../util/ring";
import { percentile } from "../util/stats";
import type { Pcpu, VmEvent, PcpuEvent, HostedStats, HostedVmRequest, MigrationProgress, SnapshotProgress } from "./pcpu";
import { EMULATION_FAILURE, type MachineStats, type DebugStop } from "../machine/virt";
import type { DebugRequest } from "../machine/debug";
import type { Control } from "./types";
import { parseUsbDevice, parseVmConfig, vmFileDescriptors, USB_DEVICE_FDS, ConfigError, DEFINITION_PARSING } from "../config/parse";
import type { DriveConfig, UsbDeviceConfig, VmConfig } from "../config/vm-config";
import type { DiskFormat } from "../disk/formats";
import { loadBootImages, type BootImages } from "../vm/build";
import { StateStreamParser, StateWriter, StateFormatError, TAGS, bytesSource, jsonPayload, type ParsedSection } from "../state/container";
import { GO, encodeMessage, parseMigrationTarget, type ByteLink } from "../migration/link";
import { CHANNEL, PageFeed } from "../migration/page-channel";
import { PAGE, chunkPages, readPageList, sectionChunks } from "../state/memory";
import type { Platform, PcpuThread } from "../platform/platform";
import { transition, ended, type Action } from "./lifecycle";
import {
  badRequest, conflict, notFound, noRoom, HvError, type HostInfo, type SnapshotInfo, type UsbInfo, type UsbRequest, type VmInfo, type VmRunStats, type VmState,
} from "./types";
import type { CpuState } from "../state/cpu";
import { readConfig, readStateConfig } from "../state/vm-state";

export interface HypervisorOptions {
  /** pCPU workers (default: every core). */
  cpus?: number;
  /** Host memory VMs may use before overcommit (default: the platform's). */
  hostMemory?: number;
  /** Committed VM memory may reach hostMemory × this (default 1). */
  overcommit?: number;
  /** vCPUs allowed per pCPU (default 64: idle vCPUs cost nothing, busy ones share by weight). */
  vcpusPerPcpu?: number;
  /** Scheduler time slice (ms). */
  sliceMs?: number;
  /** Console bytes kept per VM for late attachers (default 64 KiB). */
  scrollback?: number;
  /** CPU seconds a VM may keep an enabled interrupt waiting without taking one before it counts as stuck (default 5; 0: never). */
  watchdogSeconds?: number;
  /** Move VMs between pCPUs to even out their load (default true). */
  balance?: boolean;
  /** Told when a VM stops or fails by itself, and what was done about it (the daemon logs it). */
  onEvent?: (message: string) => void;
  /**
   * Directories VMs' images (firmware, kernel, initrd, disks) must be in; undefined: anywhere.
   * The daemon sets it: its clients must not make it open whatever it can read.
   */
  imageDirs?: readonly string[];
  /** File descriptors VMs may hold in total (default: the process's limit less what the host needs). */
  fileDescriptors?: number;
  /** The key migrations to and from this host are authenticated and encrypted with; none: no migration. */
  migrationKey?: Uint8Array;
}

interface Home {
  index: number;
  thread: PcpuThread;
  pcpu: Comlink.Remote<Pcpu>;
  doorbell: Int32Array;
  alive: boolean;
}

interface VmRecord {
  config: VmConfig;
  /** File descriptors it may hold on the host. */
  fds: number;
  home: Home;
  state: VmState;
  reason?: string;
  exitCode?: number;
  /** Told when it ends (waitForEnd). */
  waiters: ((info: VmInfo) => void)[];
  /** Bytes of host memory the VM may use (its whole VM memory). */
  committed: number;
  out: ByteRing;
  input: ByteRing;
  scrollback: Uint8Array[];
  scrollbackBytes: number;
  /** The devicetree it was given. */
  dtb: Uint8Array;
  listeners: Set<ConsoleListener>;
  /** Told when the guest resets the machine (the monitor's RESET event). */
  resetListeners: Set<() => void>;
  debugListeners: Set<(stop: DebugStop) => void>;
  /** Listeners that asked for a pause (returned false): the console is not drained meanwhile. */
  held: Set<ConsoleListener>;
  /** Wakes the console's drain when the last pause ends. */
  unheld: (() => void) | null;
  restarts: number;
  restartTimes: number[];
  moves: number;
  /** The last migration's progress (or how it ended), or null. */
  migration: MigrationProgress | null;
  /** A migration out is under way (pause and resume do not wait for it). */
  migrating: boolean;
  /** The last snapshot's progress, while it goes and after. */
  snapshot: SnapshotProgress | null;
  /** A build, restart or move under way (other operations wait for it), or null. */
  busy: Promise<unknown> | null;
  /** CPU and steal time on pCPUs it has left (ms). */
  carried: { cpuMs: number; stealMs: number };
  /** The balancer's view: CPU + steal total at its last look, and when it may move the VM again. */
  balance: { demandTotal: number; at: number; settledUntil: number };
  /** The pCPU running the upper half of its harts (spread()), or null: all run on its home. */
  partner: Home | null;
  /** The last partner it had (its figures outlive the loan). */
  lastPartner: Home | null;
}

const CONSOLE_OUT = 1 << 16;
const CONSOLE_IN = 1 << 12;
/** At most this many automatic restarts per minute: a guest that crashes at once stays down. */
const MAX_RESTARTS_PER_MINUTE = 5;
/** How often the balancer looks at the pCPUs' load (ms). */
const BALANCE_MS = 1000;
/** A VM stays where the balancer put it at least this long (ms): no ping-pong. */
const SETTLE_MS = 5000;
/** Migrations coming in at once; a source silent this long fails (ms); the configuration's and the other sections' largest size. */
const MAX_INCOMING = 4;
const INCOMING_IDLE_MS = 30_000;
const MAX_INCOMING_CONFIG = 1 << 20;
const MAX_INCOMING_SECTION = 64 << 20;
export class Hypervisor implements Control {
  readonly pcpus: number;
  readonly memoryLimit: number;
  readonly maxVcpus: number;
  readonly fdLimit: number;
  private readonly homes: Home[] = [];
  private readonly vms = new Map<string, VmRecord>();
  private readonly scrollbackLimit: number;
  private balanceTimer: ReturnType<typeof setInterval> | null = null;
  private balancing = false;
  private closed = false;
  private incomingCount = 0;

  private constructor(private readonly platform: Platform, private readonly opts: HypervisorOptions) {
    const host = platform.resources();
    this.pcpus = opts.cpus ?? host.cpus;
    if (!Number.isInteger(this.pcpus) || this.pcpus < 1) throw new RangeError(`cpus must be a whole number ≥ 1, not ${opts.cpus}`);
    const overcommit = opts.overcommit ?? 1;
    if (!(overcommit > 0)) throw new RangeError(`overcommit must be > 0, not ${opts.overcommit}`);
    this.memoryLimit = Math.floor((opts.hostMemory ?? host.memory) * overcommit);
    const perPcpu = opts.vcpusPerPcpu ?? 64;
    if (!Number.isInteger(perPcpu) || perPcpu < 1) throw new RangeError(`vcpusPerPcpu must be a whole number ≥ 1, not ${opts.vcpusPerPcpu}`);
    this.maxVcpus = this.pcpus * perPcpu;
    this.fdLimit = opts.fileDescriptors ?? host.fileDescriptors;
    this.scrollbackLimit = opts.scrollback ?? 64 * 1024;
    if (opts.balance ?? true) {
      const timer = setInterval(() => this.background("balancing the pCPUs", this.balance()), BALANCE_MS);
      (timer as { unref?: () => void }).unref?.(); // a timer alone does not keep a process alive
      this.balanceTimer = timer;
    }
  }

  /** Start the pCPUs on `platform`. */
  static async start(platform: Platform, opts: HypervisorOptions = {}): Promise<Hypervisor> {
    const hv = new Hypervisor(platform, opts);
    try {
      await Promise.all(Array.from({ length: hv.pcpus }, (_, i) => hv.spawn(i)));
    } catch (e) {
      await hv.close(); // the pCPUs that did start
      throw e;
    }
    return hv;
  }

  private async spawn(index: number): Promise<Home> {
    const thread = await this.platform.startPcpu();
    const doorbell = new SharedArrayBuffer(4);
    const home: Home = { index, thread, pcpu: thread.pcpu, doorbell: new Int32Array(doorbell), alive: true };
    this.homes[index] = home;
    thread.onExit(() => this.workerDied(home));
    await home.pcpu.init(doorbell, this.opts.sliceMs, Comlink.proxy((e: PcpuEvent) => this.onVmEvent(e)));
    return home;
  }

  // A pCPU's thread is gone: its VMs fail (nothing else does), and a fresh one takes its place.
  private workerDied(home: Home): void {
    if (!home.alive) return;
    home.alive = false;
    for (const [name, vm] of this.vms) {
      if (vm.partner === home) {
        vm.partner = null;
        if (vm.home.alive && !ended(vm.state)) this.background(`taking ${name}'s harts back`, vm.home.pcpu.reclaim(name));
      }
      if (vm.home !== home || ended(vm.state)) continue;
      // Its harts on another pCPU stop there (nothing hands them work any more).
      if (vm.partner?.alive) this.background(`stopping ${name}'s harts on pCPU ${vm.partner.index}`, vm.partner.pcpu.abandon(name));
      this.markEnded(vm, "failed", `its pCPU worker ${home.index} died`, EMULATION_FAILURE);
      this.opts.onEvent?.(`${name} failed: ${vm.reason}`);
    }
    if (!this.closed) void this.spawn(home.index).catch(() => {});
  }

  // ---- Control ----

  host(): HostInfo {
    let memoryCommitted = 0, vcpusCommitted = 0, fdsCommitted = 0;
    for (const vm of this.vms.values()) {
      memoryCommitted += vm.committed;
      vcpusCommitted += vm.config.smp;
      fdsCommitted += vm.fds;
    }
    return {
      pcpus: this.pcpus, memoryLimit: this.memoryLimit, memoryCommitted, maxVcpus: this.maxVcpus, vcpusCommitted,
      fdLimit: this.fdLimit, fdsCommitted, vms: this.vms.size,
    };
  }

  list(): VmInfo[] {
    return [...this.vms.keys()].map((name) => this.info(name));
  }

  info(name: string): VmInfo {
    return this.infoOf(this.get(name));
  }

  private infoOf(vm: VmRecord): VmInfo {
    const c = vm.config;
    return {
      name: c.name, state: vm.state, ...(vm.reason ? { reason: vm.reason } : {}), pcpu: vm.home.index,
      memory: c.memory, vcpus: c.smp, weight: c.cpu.weight,
      ...(c.cpu.cap !== undefined ? { cap: c.cpu.cap * 100 } : {}), restarts: vm.restarts, moves: vm.moves,
      ...(vm.exitCode !== undefined ? { exitCode: vm.exitCode } : {}),
      drives: c.drives.map((d) => d.file),
    };
  }

  /** Create a VM from a definition (untrusted JSON: checked field by field, a 400 naming the field). */
  async create(definition: unknown): Promise<VmInfo> {
    let config: VmConfig;
    try {
      config = parseVmConfig(definition, DEFINITION_PARSING);
    } catch (e) {
      if (e instanceof ConfigError) throw badRequest(e.message);
      throw e;
    }
    return this.createVm(config);
  }

  /**
   * Admit and build a VM (not running yet: start it with act()). Refused with 409 if the name is
   * taken, 507 if the host cannot fit it, 400 if its images or backends cannot be opened; a
   * refusal leaves nothing behind.
   */
  async createVm(config: VmConfig, from?: { snapshot: string; start?: boolean }): Promise<VmInfo> {
    for (const d of config.usb ?? []) if (d.type === "usb-serial") this.socketFree(d.socket);
    const vm = this.admit(config);
    // Reserve the name and the resources while the pCPU builds it; undo everything on failure.
    // A destroy (or anything else) meanwhile waits for the build, so nothing is left unaccounted.
    await this.exclusive(vm, async () => {
      try {
        await this.build(vm, from);
      } catch (e) {
        this.vms.delete(config.name);
        throw e;
      }
    });
    this.background(`draining ${config.name}'s console`, this.drainConsole(vm));
    return this.info(config.name);
  }

  // Admission: the name is free and everything the VM may touch fits the host, now; the VM is
  // then recorded (created) on the pCPU with the least weight, to be built there.
  private admit(config: VmConfig): VmRecord {
    if (this.closed) throw conflict("the host is shutting down");
    const name = config.name;
    if (this.vms.has(name)) throw conflict(`a VM named ${name} exists already`);
    const committed = vmmLayout(config.memory, config.paging).end;
    const fds = vmFileDescriptors(config);
    const h = this.host();
    if (h.memoryCommitted + committed > this.memoryLimit) {
      throw noRoom(`${name} needs ${mib(committed)} MiB of host memory (guest RAM and the VMM's tables); ` +
        `${mib(this.memoryLimit - h.memoryCommitted)} MiB of the host's ${mib(this.memoryLimit)} MiB are free. ` +
        `Give it less memory, destroy a VM, or raise --overcommit.`);
    }
    if (h.vcpusCommitted + config.smp > this.maxVcpus) {
      throw noRoom(`${name} needs ${config.smp} vCPU(s); ${this.maxVcpus - h.vcpusCommitted} of the host's ${this.maxVcpus} are free`);
    }
    // Disks and host sockets are file descriptors: one VM must not be able to take them all.
    if (h.fdsCommitted + fds > this.fdLimit) {
      throw noRoom(`${name} needs ${fds} file descriptors (disks, host sockets: 'limits.sockets' is ${config.limits.sockets}); ` +
        `${this.fdLimit - h.fdsCommitted} of the host's ${this.fdLimit} are free. Lower 'limits.sockets', destroy a VM, or raise the host's open-file limit (ulimit -n).`);
    }
    const vm: VmRecord = {
      config, fds, home: this.place(), state: "created", waiters: [], committed,
      out: new ByteRing(CONSOLE_OUT), input: new ByteRing(CONSOLE_IN),
      scrollback: [], scrollbackBytes: 0, listeners: new Set(), resetListeners: new Set(), debugListeners: new Set(), held: new Set(), unheld: null, restarts: 0, restartTimes: [], dtb: new Uint8Array(0),
      moves: 0, busy: null, carried: { cpuMs: 0, stealMs: 0 }, balance: { demandTotal: 0, at: performance.now(), settledUntil: 0 }, migration: null, migrating: false, snapshot: null, partner: null, lastPartner: null,
    };
    this.vms.set(name, vm);
    return vm;
  }

  private request(vm: VmRecord, images: BootImages): HostedVmRequest {
    return {
      config: vm.config, images, dirs: this.opts.imageDirs,
      consoleOut: vm.out.buffer, consoleIn: vm.input.buffer,
      watchdogMs: this.opts.watchdogSeconds === undefined ? undefined : this.opts.watchdogSeconds * 1000,
    };
  }

  // Built on its pCPU: from its images, or from a snapshot (which holds them in guest memory),
  // then started there if asked.
  private async build(vm: VmRecord, from?: { snapshot: string; start?: boolean }): Promise<void> {
    let images;
    try {
      images = from ? { bios: null } : loadBootImages(vm.config, this.platform, this.opts.imageDirs);
    } catch (e) {
      throw badRequest((e as Error).message);
    }
    const req = this.request(vm, images);
    try {
      if (from) {
        if (from.start) vm.state = "running"; // before it runs: what it sends then must find it running (as in act)
        const r = await vm.home.pcpu.restore(req, from.snapshot, { start: from.start });
        vm.dtb = r.dtb;
        vm.config = r.config; // its disks are overlays on the snapshot's
      } else vm.dtb = await vm.home.pcpu.create(req);
    } catch (e) {
      throw badRequest((e as Error).message);
    }
  }

  /**
   * A new VM from a snapshot file: the snapshot's configuration (renamed to `name` if given),
   * admitted like any new VM, built from the saved state and started unless `paused`. A
   * snapshot that is truncated, corrupted, of another version or hostile is refused (400) with
   * nothing created.
   */
  async restore(file: string, opts: { name?: string; paused?: boolean } = {}): Promise<VmInfo> {
    checkStatePath(file);
    let config: VmConfig;
    let src;
    try {
      src = this.platform.openStateFile(file, { what: "snapshot", dirs: this.opts.imageDirs });
      // Its configuration, to admit it by; its pCPU reads and checks the rest before building it.
      config = readStateConfig(src, `snapshot ${file}`, { name: opts.name });
    } catch (e) {
      throw badRequest((e as Error).message);
    } finally {
      src?.close();
    }
    // Started by its pCPU once built: one message less on the way to running than a start after.
    return this.createVm(config, { snapshot: file, start: !opts.paused });
  }

  /**
   * Save a VM's whole state to `file` (one state format: host/state/). The VM keeps running
   * (it stops only for the pages it wrote during the save, its core and devices), or with
   * `stop` ends once its state is in the file.
   */
  async snapshot(name: string, file: string, opts: { stop?: boolean } = {}): Promise<SnapshotInfo> {
    checkStatePath(file);
    const vm = this.get(name);
    return this.exclusive(vm, async () => {
      this.present(vm);
      if (ended(vm.state)) throw conflict(`cannot snapshot ${name}: it is ${vm.state}`);
      this.alive(vm);
      let r;
      // Progress comes on its own port: one that comes after the answer is old news.
      let answered = false;
      const t0 = performance.now();
      try {
        vm.snapshot = { phase: "saving", memory: 0, bytes: 0, elapsedMs: 0 };
        r = await vm.home.pcpu.snapshot(name, file, { stop: opts.stop, dirs: this.opts.imageDirs }, Comlink.proxy((p: SnapshotProgress) => { if (!answered) vm.snapshot = p; }));
        answered = true;
        vm.snapshot = { phase: "done", memory: 1, bytes: r.bytes, elapsedMs: r.totalMs };
      } catch (e) {
        answered = true;
        vm.snapshot = { ...vm.snapshot!, phase: "failed", elapsedMs: performance.now() - t0 };
        const msg = (e as Error).message;
        throw /^cannot snapshot|ended while/.test(msg) ? conflict(msg) : badRequest(msg);
      } finally {
        // Its disks may have moved to overlays (the snapshot keeps the images they were on).
        if (!ended(vm.state) && vm.home.alive) vm.config = await vm.home.pcpu.config(name).catch(() => vm.config);
      }
      if (opts.stop) this.markEnded(vm, "stopped", `saved to ${file}`, 0);
      return { name, file, bytes: r.bytes, pages: r.pages, totalMs: r.totalMs, downtimeMs: r.downtimeMs, state: vm.state };
    });
  }

  /**
   * A running VM with several harts runs the upper half of them on another pCPU, the one with
   * the least weight on it (its home lends them: host/machine/remote-harts.ts), so its vCPUs run
   * in parallel. The loan lasts until the VM ends or leaves its home (a move, a migration).
   */
  private async spread(vm: VmRecord): Promise<void> {
    await this.exclusive(vm, async () => {
      const name = vm.config.name;
      if (this.vms.get(name) !== vm || vm.state !== "running" || !vm.home.alive) return;
      // The home knows whether it lends already (lend() answers null then): a loan ended with a
      // move, a failed migration's return or a borrower's death is offered again.
      const partner = this.leastLoaded(vm.home);
      if (!partner) return;
      const loan = await vm.home.pcpu.lend(name);
      if (!loan) return;
      try {
        await partner.pcpu.borrow(loan);
        vm.partner = vm.lastPartner = partner;
      } catch (e) {
        await vm.home.pcpu.unlend(name).catch(() => {});
        throw e;
      }
    });
  }

  // The live pCPU other than `except` with the least weight of VMs and lent harts on it, or null.
  private leastLoaded(except: Home): Home | null {
    const load = this.homes.map(() => 0);
    for (const vm of this.vms.values()) {
      if (vm.state !== "created" && vm.state !== "running") continue;
      load[vm.home.index] += vm.config.cpu.weight;
      if (vm.partner) load[vm.partner.index] += vm.config.cpu.weight;
    }
    let best: Home | null = null;
    for (const h of this.homes) if (h !== except && h.alive && (!best || load[h.index] < load[best.index])) best = h;
    return best;
  }

  // The pCPU with the least weight of live VMs on it.
  private place(): Home {
    const load = this.homes.map(() => 0);
    for (const vm of this.vms.values()) {
      if (vm.state === "created" || vm.state === "running") load[vm.home.index] += vm.config.cpu.weight;
    }
    let best = 0;
    for (let i = 1; i < load.length; i++) if (load[i] < load[best]) best = i;
    return this.homes[best];
  }

  async act(name: string, action: Action): Promise<VmInfo> {
    const vm = this.get(name);
    // Pause and resume go ahead during a migration out, as QEMU's stop does (pausing is how a
    // user makes it converge: a paused VM dirties nothing, so the next pre-copy round is the
    // last); the migration takes the VM in whatever state it is when it stops it.
    if ((action === "pause" || action === "resume") && vm.migrating) return this.change(vm, action);
    return this.exclusive(vm, () => this.change(vm, action));
  }

  private async change(vm: VmRecord, action: Action): Promise<VmInfo> {
    const name = vm.config.name;
    this.present(vm);
    const to = transition(name, vm.state, action, vm.reason);
    this.alive(vm);
    // The new state first: an event the VM sends once it runs (a crash) must win over it.
    const prev = { state: vm.state, reason: vm.reason };
    vm.state = to;
    if (to === "stopped") vm.reason = "stopped by the host";
    let end: VmEvent | null;
    const migrating = vm.migrating;
    try {
      end = await vm.home.pcpu.act(name, action);
    } catch (e) {
      if (vm.state === to) Object.assign(vm, prev); // unless an event (its end) came meanwhile
      // Between the migration's stop and its end the VM is on neither pCPU's list.
      if (migrating && /^no VM named /.test((e as Error).message)) throw conflict(`cannot ${action} ${name} now: its migration is handing it over to the destination`);
      // The pCPU's refusals cross the thread as plain errors: a refusal of the life cycle is still a 409.
      throw /^cannot /.test((e as Error).message) ? conflict((e as Error).message) : e;
    }
    // The VM ended by itself just before the stop reached it: that end is what happened (its
    // failure policy is not applied: the host wanted it stopped anyway).
    if (end) this.markEnded(vm, end.state, end.reason, end.code);
    else if (to === "stopped" && vm.exitCode === undefined) this.markEnded(vm, "stopped", "stopped by the host", 0);
    return this.infoOf(vm);
  }

  /** Resolves when the VM has stopped or failed (at once if it has), with how it ended. */
  waitForEnd(name: string): Promise<VmInfo> {
    const vm = this.get(name);
    if (ended(vm.state)) return Promise.resolve(this.infoOf(vm));
    return new Promise((resolve) => vm.waiters.push(resolve));
  }

  /** The devicetree the VM was given. */
  dtb(name: string): Uint8Array {
    return this.get(name).dtb;
  }

  async destroy(name: string): Promise<void> {
    const vm = this.get(name);
    await this.exclusive(vm, async () => {
      this.present(vm);
      this.vms.delete(name);
      vm.listeners.clear();
      vm.held.clear();
      if (!ended(vm.state)) this.markEnded(vm, "stopped", "destroyed", 0);
      if (vm.home.alive) await vm.home.pcpu.destroy(name).catch(() => {});
    });
  }

  async stats(name: string): Promise<VmRunStats> {
    const vm = await this.settled(name);
    this.alive(vm);
    const s: HostedStats = await vm.home.pcpu.stats(name);
    const lat = s.sched.wakeLatencies;
    const pct = (p: number) => percentile(lat, p);
    return {
      name, instructions: s.machine.instructions, cpuMs: vm.carried.cpuMs + s.sched.cpuMs, stealMs: vm.carried.stealMs + s.sched.stealMs,
      wakeLatencyMs: { p50: pct(0.5), p99: pct(0.99), samples: lat.length },
      exits: { ...s.machine.exits },
      ...(s.machine.jit ? { jit: s.machine.jit } : {}),
    };
  }

  /** `listener` is told each time the guest resets the machine (its reboot), until the function returned is called. */
  onGuestReset(name: string, listener: () => void): () => void {
    const vm = this.get(name);
    vm.resetListeners.add(listener);
    return () => vm.resetListeners.delete(listener);
  }

  /** `listener` hears each time a debugger's breakpoint or watchpoint stops the VM (it is then paused), until the function returned is called. */
  onDebugStop(name: string, listener: (stop: DebugStop) => void): () => void {
    const vm = this.get(name);
    vm.debugListeners.add(listener);
    return () => vm.debugListeners.delete(listener);
  }

  /** A debugger's request on the VM's machine, between its steps (machine/debug.ts). */
  async debug(name: string, req: DebugRequest): Promise<unknown> {
    const vm = await this.settled(name);
    this.alive(vm);
    return vm.home.pcpu.debug(name, req);
  }

  /**
   * The VM's drives as they are now, each with its format as opened (a probed one included).
   * Read during a migration too (only its handover, when the VM is on no pCPU, is refused).
   */
  async drives(name: string): Promise<(DriveConfig & { format: DiskFormat })[]> {
    const vm = this.get(name).migrating ? this.get(name) : await this.settled(name);
    this.alive(vm);
    try {
      return await vm.home.pcpu.drives(name);
    } catch (e) {
      if (vm.migrating) throw conflict(`cannot read ${name}'s drives now: its migration is handing it over to the destination`);
      throw e;
    }
  }

  /** A usb-serial's socket path must not be one another VM of this host listens on (it would take it over). */
  private socketFree(socket: string): void {
    for (const other of this.vms.values()) {
      if (other.config.usb?.some((u) => u.type === "usb-serial" && u.socket === socket)) {
        throw conflict(`socket=${socket}: ${other.config.name}'s usb-serial listens there; give another path`);
      }
    }
  }

  /** Plug, unplug, list or type on the VM's USB devices; the VM's configuration follows its devices. */
  async usb(name: string, request: UsbRequest): Promise<UsbInfo> {
    const vm = await this.settled(name);
    this.alive(vm);
    if (ended(vm.state)) throw conflict(`cannot reach ${name}'s USB devices: it is ${vm.state}`);
    // A device plugged in holds file descriptors as one there at creation does (its backend):
    // admitted against the host's limit, held from now so a concurrent admission sees them.
    if (request.op === "attach") {
      let d: UsbDeviceConfig;
      try {
        d = parseUsbDevice(request.spec, vm.config.usb ?? []);
      } catch (e) {
        throw badRequest((e as Error).message);
      }
      if (d.type === "usb-serial") this.socketFree(d.socket);
    }
    const more = request.op === "attach" ? USB_DEVICE_FDS : 0;
    if (more) {
      const h = this.host();
      if (h.fdsCommitted + more > this.fdLimit) {
        throw noRoom(`${name}: a USB device needs ${more} file descriptors; ${this.fdLimit - h.fdsCommitted} of the host's ${this.fdLimit} are free. Unplug a device, destroy a VM, or raise the host's open-file limit (ulimit -n).`);
      }
      vm.fds += more;
    }
    try {
      const info = await vm.home.pcpu.usb(name, request);
      if (request.op === "attach" || request.op === "detach") {
        vm.config = await vm.home.pcpu.config(name);
        vm.fds = vmFileDescriptors(vm.config);
      }
      return info;
    } catch (e) {
      vm.fds -= more;
      throw e instanceof HvError ? e : badRequest((e as Error).message);
    }
  }

  /** Every hart's registers and CSRs by name (state/cpu.ts's form), read between the VM's steps. */
  async registers(name: string): Promise<CpuState> {
    const vm = await this.settled(name);
    this.alive(vm);
    return vm.home.pcpu.registers(name);
  }

  /** The VM's machine counters (exits by device, paging, instructions). */
  async machineStats(name: string): Promise<MachineStats> {
    const vm = await this.settled(name);
    this.alive(vm);
    const machine = (await vm.home.pcpu.stats(name)).machine;
    const partner = vm.partner ?? vm.lastPartner;
    const spread = partner?.alive ? await partner.pcpu.borrowedStats(name, partner.index).catch(() => null) : null;
    return spread ? { ...machine, spread: { ...spread, pcpu: partner!.index } } : machine;
  }

  /**
   * Console output goes to onOutput until detach(); write() sends keys to the guest. A listener
   * that cannot take more for now (a terminal whose writes back up) returns false: the console
   * is not drained until it calls resume(), so the VM's output waits in the ring and then in
   * its pCPU, and past a megabyte the VM itself waits (as on a real serial line); nothing is lost.
   */
  attachConsole(name: string, onOutput: ConsoleListener): ConsoleHandle {
    const vm = this.get(name);
    for (const chunk of vm.scrollback) onOutput(chunk);
    vm.listeners.add(onOutput);
    return {
      write: (bytes) => {
        let off = 0;
        while (off < bytes.length) {
          const n = vm.input.write(bytes.subarray(off));
          if (n === 0) break; // the guest is not reading: drop rather than block the host
          off += n;
        }
        ringDoorbell(vm.home.doorbell);
      },
      resume: () => this.unhold(vm, onOutput),
      detach: () => {
        vm.listeners.delete(onOutput);
        this.unhold(vm, onOutput);
      },
    };
  }

  /**
   * Move a VM to pCPU `to`: it pauses between steps on its pCPU, its memory and machine state go
   * across (the memory is shared, so nothing is copied), and it resumes there in the same state.
   * Its disks are reopened there; user-mode network connections end, as if the NIC was reset.
   */
  async move(name: string, to: number): Promise<VmInfo> {
    if (!Number.isInteger(to) || to < 0 || to >= this.pcpus) throw badRequest(`pCPU ${to} does not exist (the host has ${this.pcpus}: 0 to ${this.pcpus - 1})`);
    const vm = this.get(name);
    return this.exclusive(vm, async () => {
      this.present(vm);
      if (ended(vm.state)) throw conflict(`cannot move ${name}: it is ${vm.state}`);
      if (vm.home.index === to) return this.infoOf(vm);
      const from = vm.home, target = this.homes[to];
      this.alive(vm);
      if (!target.alive) throw new HvError(500, `pCPU ${to}'s worker is not running`);
      const m = await from.pcpu.release(name);
      vm.partner = null; // the release took its harts back
      try {
        await target.pcpu.adopt(m);
      } catch (e) {
        await from.pcpu.adopt(m); // it goes back where it was
        throw new HvError(500, `moving ${name} to pCPU ${to} failed (${(e as Error).message}); it stays on pCPU ${from.index}`);
      }
      vm.carried.cpuMs += m.cpuMs;
      vm.carried.stealMs += m.stealMs;
      vm.home = target;
      vm.moves++;
      return this.infoOf(vm);
    });
  }

  /**
   * Migrate a VM live to the host listening at `to` ("tcp:HOST:PORT"): pre-copy while it runs,
   * then a stop of at most about `downtimeMs` (default 5) for the rest, its core and devices.
   * Resolves once it runs there; it is then gone from here. If the link or the destination fails
   * first, the VM goes on here as if nothing had happened, and this rejects saying why.
   */
  async migrate(name: string, to: string, opts: { downtimeMs?: number; maxRounds?: number; postcopy?: boolean; copyStorage?: boolean } = {}): Promise<MigrationProgress> {
    let target;
    try {
      target = parseMigrationTarget(to);
    } catch (e) {
      throw badRequest((e as Error).message);
    }
    const downtimeMs = opts.downtimeMs ?? 5;
    const maxRounds = opts.maxRounds ?? 30;
    if (!(downtimeMs > 0 && downtimeMs <= 60_000)) throw badRequest(`the downtime limit must be in (0, 60000] ms, not ${downtimeMs}`);
    if (!Number.isInteger(maxRounds) || maxRounds < 0 || maxRounds > 1000) throw badRequest(`the round limit must be a whole number from 0 to 1000, not ${maxRounds}`);
    const key = this.opts.migrationKey;
    if (!key) throw badRequest("this host has no migration key: start it with --migrate-key <file> (wasmvisor host makes one by default)");
    const vm = this.get(name);
    return this.exclusive(vm, async () => {
      this.present(vm);
      if (ended(vm.state)) throw conflict(`cannot migrate ${name}: it is ${vm.state}`);
      this.alive(vm);
      let r: MigrationProgress;
      vm.migrating = true;
      try {
        r = await vm.home.pcpu.migrateOut(name, target, { key, downtimeMs, maxRounds, postcopy: opts.postcopy === true, copyStorage: opts.copyStorage === true }, Comlink.proxy((p: MigrationProgress) => { vm.migration = p; }));
      } catch (e) {
        throw new HvError(502, (e as Error).message); // it could not even start: the VM was not touched
      } finally {
        vm.migrating = false;
      }
      vm.migration = r;
      if (r.carried) {
        vm.carried.cpuMs += r.carried.cpuMs;
        vm.carried.stealMs += r.carried.stealMs;
      }
      if (r.error) {
        if (r.lost) this.markEnded(vm, "failed", `migration to ${to} failed and it could not go on here: ${r.error}`, EMULATION_FAILURE);
        if (r.lost) throw new HvError(502, `migrating ${name} to ${to} failed: ${r.error}`);
        throw new HvError(502, `migrating ${name} to ${to} failed: ${r.error}; it goes on here`);
      }
      // It runs there now: here it ends, and is gone.
      this.markEnded(vm, "stopped", `migrated to ${to}`, 0);
      this.vms.delete(name);
      vm.listeners.clear();
      return r;
    });
  }

  /** How the VM's last snapshot went, or is going. */
  snapshotProgress(name: string): SnapshotProgress {
    const s = this.get(name).snapshot;
    if (!s) throw notFound(`${name} has not been snapshotted`);
    return s;
  }

  /** How the VM's last migration went, or is going. */
  migration(name: string): MigrationProgress {
    const m = this.get(name).migration;
    if (!m) throw notFound(`${name} has not been migrated`);
    return m;
  }

  /**
   * A VM migrating in over `link` (the daemon's migration listener hands each connection here):
   * its configuration first (admitted like any new VM), then its memory as it comes, then its
   * core and devices; once whole it is built and started, and the source is told. Everything the
   * source sends is checked; whatever fails, the source is told why and nothing is left here.
   */
  async incoming(link: ByteLink, opts: IncomingOptions = {}): Promise<void> {
    const what = `the migration from ${link.peer}`;
    // Until the VM is admitted a source may send only its configuration: a little.
    const parser = new StateStreamParser(what, MAX_INCOMING_CONFIG);
    const it = link.chunks()[Symbol.asyncIterator]();
    // The next piece of the stream, or null if the source closed it; a source silent for too
    // long fails (it would hold the name and the memory it was admitted with).
    const read = async (): Promise<Uint8Array | null> => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        const r = await Promise.race([it.next(), new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`${what}: nothing came for ${INCOMING_IDLE_MS / 1000} s`)), INCOMING_IDLE_MS);
        })]);
        return r.done ? null : r.value;
      } finally {
        clearTimeout(timer);
      }
    };
    const pending: ParsedSection[] = [];
    const next = async (): Promise<ParsedSection | null> => {
      while (!pending.length) {
        const chunk = await read();
        if (!chunk) return null;
        pending.push(...parser.push(chunk));
      }
      return pending.shift()!;
    };
    // GO: three bytes outside the state stream (in post-copy, the stream goes on right after them).
    const takeGo = async (): Promise<void> => {
      let got: Uint8Array = new Uint8Array(0);
      while (got.length < GO.length) {
        const c = await read();
        if (!c) throw new Error(`${what}: the source closed the link before telling the VM to run here`);
        got = concatBytes([got, c]);
      }
      if (GO.some((b, i) => got[i] !== b)) throw new Error(`${what}: the source sent ${JSON.stringify(new TextDecoder().decode(got.subarray(0, 20)))} instead of GO`);
      if (got.length > GO.length) pending.push(...parser.push(got.slice(GO.length)));
    };
    let vm: VmRecord | null = null;
    let postcopy = null as { feed: PageFeed; pages: Uint32Array } | null; // set inside exclusive(): not narrowed
    let sentConfig: VmConfig | null = null;
    let started = false;
    this.incomingCount++;
    try {
      if (this.incomingCount > MAX_INCOMING) throw new Error(`this host takes at most ${MAX_INCOMING} migrations at once`);
      const first = await next();
      if (!first) return;
      if (first.tag !== TAGS.config) throw new StateFormatError(`${what} does not start with the VM's configuration`);
      const config = readConfig(jsonPayload(bytesSource(first.payload), { ...first, offset: 0, length: first.payload.length }, what), what);
      opts.admit?.(config);
      const admitted = this.admit(config);
      vm = admitted;
      sentConfig = config;
      parser.maxSection = MAX_INCOMING_SECTION;
      const name = config.name;
      await this.exclusive(admitted, async () => {
        await admitted.home.pcpu.incomingBegin(this.request(admitted, { bios: null }));
        link.write(encodeMessage({ accepted: name, postcopy: this.platform.pcpuMayWait }));
        const kept: ParsedSection[] = [first];
        let applied = 0;
        for (;;) {
          const s = await next();
          if (!s) throw new Error(`${what}: the source closed the link before the VM was whole`);
          if (s.tag === TAGS.postcopy) {
            // Post-copy: the VM runs here before all of its memory has come.
            const pages = readPageList(s.payload, config.memory / PAGE, what);
            const feed = new PageFeed(() => ringDoorbell(admitted.home.doorbell));
            await this.buildMigrated(admitted, kept, link, takeGo, { pages, channel: feed.buffer, from: link.peer });
            postcopy = { feed, pages };
            // The pages flow before it starts: its first step may need one.
            const feeding = this.postcopyIn(admitted, feed, pages, link, next);
            feeding.catch(() => {}); // awaited below
            await this.startMigrated(admitted);
            started = true;
            link.write(encodeMessage({ running: name }));
            this.opts.onEvent?.(`${name} runs here; its last ${bitmapCount(pages)} pages follow from ${link.peer} (post-copy)`);
            await feeding;
            link.close();
            return;
          }
          if (s.tag === TAGS.memory || s.tag === TAGS.disk) {
            // A copy in its own buffer, handed over rather than copied again (the payload is a view
            // into the socket's buffers: a Buffer's slice() would be one too, and handing that over
            // would take the socket's memory away).
            const copy = new Uint8Array(s.payload);
            if (s.tag === TAGS.memory) await admitted.home.pcpu.incomingMemory(name, Comlink.transfer(copy, [copy.buffer]), s.crc);
            else {
              opts.admitDisk?.(diskSectionTarget(s.payload).size);
              await admitted.home.pcpu.incomingDisk(name, Comlink.transfer(copy, [copy.buffer]), s.crc);
            }
            link.write(encodeMessage({ applied: ++applied }));
            continue;
          }
          if (s.tag !== TAGS.end) {
            if (kept.some((k) => k.tag === s.tag)) throw new StateFormatError(`${what}: a second ${JSON.stringify(s.tag)} section`);
            kept.push(s);
            continue;
          }
          await this.buildMigrated(admitted, kept, link, takeGo);
          await this.startMigrated(admitted);
          started = true;
          link.write(encodeMessage({ running: name }));
          link.close();
          return;
        }
      });
      this.opts.onEvent?.(`${name} migrated in from ${link.peer}`);
    } catch (e) {
      const message = (e as Error).message;
      postcopy?.feed.close(CHANNEL.failed, message);
      // What it held goes first: the source may take the VM back at once, disks and ports
      // included, and the copies of its disks made here go. A VM that runs here already stays:
      // after GO the source never runs it again (in post-copy it fails by itself once it needs
      // a page that did not come).
      if (vm && this.vms.get(vm.config.name) === vm && !started) {
        this.vms.delete(vm.config.name);
        await vm.home.pcpu.incomingAbort(vm.config.name).catch(() => {});
        await vm.home.pcpu.destroy(vm.config.name).catch(() => {});
        const copies = vm.config.drives.filter((d, i) => d.file !== sentConfig?.drives[i]?.file);
        for (const d of copies) {
          try {
            this.platform.removeDiskImage(d.file);
          } catch {
            /* gone already */
          }
        }
      }
      try {
        link.write(encodeMessage({ error: message }));
        link.close();
      } catch {
        /* the link is gone already */
      }
      this.opts.onEvent?.(`refused ${what}: ${message}`);
    } finally {
      this.incomingCount--;
    }
  }

  // The switch-over of a migration in: the VM is built from what came (`kept`: configuration,
  // core, machine, ROM), the source is told it is ready, and the source's GO comes (after which
  // the source never runs it again).
  private async buildMigrated(vm: VmRecord, kept: ParsedSection[], link: ByteLink, takeGo: () => Promise<void>, postcopy?: { pages: Uint32Array; channel: SharedArrayBuffer; from: string }): Promise<void> {
    const chunks: Uint8Array[] = [];
    const w = new StateWriter((c) => chunks.push(c));
    for (const k of kept) w.copy(k);
    w.end();
    ({ dtb: vm.dtb, config: vm.config } = await vm.home.pcpu.incomingFinish(vm.config.name, concatBytes(chunks), postcopy));
    link.write(encodeMessage({ ready: vm.config.name }));
    await takeGo();
  }

  // It runs here now, and its console is read.
  private async startMigrated(vm: VmRecord): Promise<void> {
    vm.state = "running"; // before start: a crash right away must find it running
    await vm.home.pcpu.act(vm.config.name, "start");
    this.background(`draining ${vm.config.name}'s console`, this.drainConsole(vm));
  }

  // Post-copy at the destination: the VM runs; the pages still to come (`pages`) arrive as
  // memory sections and go to its pCPU through the feed, and the pages it waits for are asked
  // of the source. Each page must be one still to come, and each must come, before END.
  private async postcopyIn(vm: VmRecord, feed: PageFeed, pages: Uint32Array, link: ByteLink, next: () => Promise<ParsedSection | null>): Promise<void> {
    const what = `the migration from ${link.peer} (post-copy)`;
    const ramPages = vm.config.memory / PAGE;
    let left = bitmapCount(pages);
    const asking = feed.requests((page) => {
      try {
        link.write(encodeMessage({ need: page }));
      } catch {
        /* the link is gone: the next read says so */
      }
    });
    try {
      for (;;) {
        const s = await next();
        if (!s) throw new Error(`${what}: the source closed the link with ${left} pages still to come`);
        if (s.tag === TAGS.end) break;
        if (s.tag !== TAGS.memory) throw new StateFormatError(`${what}: a ${JSON.stringify(s.tag)} section after the VM began to run`);
        for (const [e, data] of sectionChunks(s.payload, s.crc, ramPages, what)) {
          chunkPages(e, data, (page, content) => {
            const bit = 1 << (page & 31);
            if (!(pages[page >>> 5]! & bit)) throw new StateFormatError(`${what}: RAM page ${page} again, or one that was not to come`);
            pages[page >>> 5]! &= ~bit;
            left--;
            if (!ended(vm.state)) feed.put(page, content); // (a VM that ended here takes no more)
          });
        }
        // The link waits while the pCPU is behind (what waits here is bounded).
        await feed.room(1024, INCOMING_IDLE_MS, () => ended(vm.state));
      }
      if (left) throw new StateFormatError(`${what}: the stream ended with ${left} pages still to come`);
      await feed.room(0, INCOMING_IDLE_MS, () => ended(vm.state));
      feed.close(CHANNEL.complete);
      link.write(encodeMessage({ received: vm.config.name }));
    } catch (e) {
      feed.close(CHANNEL.failed, (e as Error).message);
      throw e;
    } finally {
      await asking;
    }
  }

  // The VM, once any build, restart or move under way has finished.
  private async settled(name: string): Promise<VmRecord> {
    let vm = this.get(name);
    while (vm.busy) {
      await vm.busy.catch(() => {});
      vm = this.get(name);
    }
    return vm;
  }

  // Run `work` once every operation on the VM before it is done, and keep the ones after it
  // (and reads) waiting until it is: operations on one VM happen one at a time, in order.
  private async exclusive<T>(vm: VmRecord, work: () => Promise<T>): Promise<T> {
    const prior = vm.busy;
    const p = (async () => {
      if (prior) await prior.catch(() => {});
      return work();
    })();
    vm.busy = p;
    try {
      return await p;
    } finally {
      if (vm.busy === p) vm.busy = null;
    }
  }

  // The VM is still this host's (not destroyed while the operation waited its turn).
  private present(vm: VmRecord): void {
    if (this.vms.get(vm.config.name) !== vm) throw notFound(`no VM named ${vm.config.name}`);
  }

  /**
   * The balancer: each VM's demand is the CPU it got plus the CPU it waited for (steal) over the
   * last period; a pCPU's load is its VMs' demand. When the busiest pCPU has at least half a pCPU
   * more load than the idlest, the VM whose move best evens them out moves, if that helps by a
   * quarter of a pCPU or more. Moved VMs stay put for a while.
   */
  private async balance(): Promise<void> {
    if (this.balancing || this.closed) return;
    this.balancing = true;
    try {
      const now = performance.now();
      const load = this.homes.map(() => 0);
      const demand = new Map<string, number>();
      // One call per pCPU for all its VMs' totals.
      const totals = await Promise.all(this.homes.map((h) => (h.alive ? h.pcpu.demand().catch(() => ({})) : {}))) as Record<string, number>[];
      for (const [name, vm] of this.vms) {
        const here = totals[vm.home.index][name];
        if (vm.state !== "running" || vm.busy || here === undefined) continue;
        const total = vm.carried.cpuMs + vm.carried.stealMs + here;
        const d = Math.min(vm.config.smp, Math.max(0, (total - vm.balance.demandTotal) / Math.max(1, now - vm.balance.at)));
        vm.balance.demandTotal = total;
        vm.balance.at = now;
        demand.set(name, d);
        load[vm.home.index] += d;
      }
      let busy = 0, idle = 0;
      load.forEach((l, i) => { if (l > load[busy]) busy = i; if (l < load[idle]) idle = i; });
      if (load[busy] - load[idle] < 0.5) return;
      let best: string | null = null;
      let bestPeak = load[busy];
      for (const [name, d] of demand) {
        const vm = this.vms.get(name)!;
        if (vm.home.index !== busy || now < vm.balance.settledUntil) continue;
        const peak = Math.max(load[busy] - d, load[idle] + d);
        if (peak < bestPeak) { bestPeak = peak; best = name; }
      }
      if (!best || load[busy] - bestPeak < 0.25) return;
      const vm = this.vms.get(best)!;
      vm.balance.settledUntil = now + SETTLE_MS;
      await this.move(best, idle).catch(() => {});
    } finally {
      this.balancing = false;
    }
  }

  /** Stop every VM and the workers. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.balanceTimer) clearInterval(this.balanceTimer);
    for (const name of [...this.vms.keys()]) await this.destroy(name).catch(() => {});
    await Promise.all(this.homes.map(async (h) => {
      h.alive = false;
      await h.thread.terminate();
    }));
  }

  // ---- internals ----

  private get(name: string): VmRecord {
    const vm = this.vms.get(name);
    if (!vm) throw notFound(`no VM named ${name}`);
    return vm;
  }

  private alive(vm: VmRecord): void {
    if (!vm.home.alive) throw new HvError(500, `${vm.config.name}: its pCPU worker died`);
  }

  private onVmEvent(e: PcpuEvent): void {
    const vm = this.vms.get(e.name);
    if (e.state === "reset") {
      for (const l of vm?.resetListeners ?? []) l();
      return;
    }
    if (e.state === "lendable") {
      if (vm) this.background(`spreading ${e.name}'s harts`, this.spread(vm));
      return;
    }
    if (e.state === "debug") {
      // The pCPU paused the VM for its debugger.
      if (vm?.state === "running") vm.state = "paused";
      for (const l of vm?.debugListeners ?? []) l(e.stop);
      return;
    }
    // Nothing to do for a VM the host has ended already (a stop that won the race).
    if (!vm || (ended(vm.state) && vm.exitCode !== undefined)) return;
    this.markEnded(vm, e.state, e.reason, e.code);
    const policy = vm.config.onFailure;
    this.opts.onEvent?.(`${e.name} ${e.state}: ${e.reason}${e.state === "failed" && policy !== "keep" ? ` (${policy === "restart" ? "restarting it" : "destroying it"})` : ""}`);
    if (e.state !== "failed") return;
    if (policy === "destroy") this.background(`destroying ${e.name}`, this.destroy(e.name));
    else if (policy === "restart") this.background(`restarting ${e.name}`, this.restart(vm));
  }

  // Work nobody awaits (timers, events) must not end the daemon when it fails (a VM destroyed
  // meanwhile, a worker gone): it is logged instead.
  private background(what: string, work: Promise<unknown>): void {
    work.catch((e: unknown) => this.opts.onEvent?.(`${what} failed: ${(e as Error)?.message ?? String(e)}`));
  }

  // The VM has stopped or failed: what it printed last reaches the console first (the pCPU
  // hands its output over before it says so), then whoever waits for the end hears of it.
  private markEnded(vm: VmRecord, state: "stopped" | "failed", reason: string, code: number): void {
    this.pumpConsole(vm);
    vm.state = state;
    vm.reason = reason;
    vm.exitCode = code;
    vm.partner = null; // its machine closed, which took its harts back
    const info = this.infoOf(vm);
    for (const w of vm.waiters.splice(0)) w(info);
  }

  // Built again and started, unless it was destroyed or started otherwise meanwhile.
  private restart(vm: VmRecord): Promise<void> {
    const name = vm.config.name;
    return this.exclusive(vm, async () => {
      if (this.vms.get(name) !== vm || vm.state !== "failed") return;
      const now = Date.now();
      vm.restartTimes = vm.restartTimes.filter((t) => now - t < 60_000);
      if (vm.restartTimes.length >= MAX_RESTARTS_PER_MINUTE) {
        vm.reason = `${vm.reason}; not restarted: it failed ${MAX_RESTARTS_PER_MINUTE} times within a minute`;
        return;
      }
      vm.restartTimes.push(now);
      try {
        await vm.home.pcpu.destroy(name);
        await this.build(vm);
        vm.restarts++;
        vm.state = "running"; // before start: a crash right away must find it running
        vm.exitCode = undefined;
        vm.reason = undefined;
        await vm.home.pcpu.act(name, "start");
      } catch (e) {
        this.markEnded(vm, "failed", `restart failed: ${(e as Error).message}`, EMULATION_FAILURE);
      }
    });
  }

  // Console output, as the pCPU writes it (the ring wakes us): into the scrollback and to the
  // attached clients. Ends when the VM is destroyed.
  private async drainConsole(vm: VmRecord): Promise<void> {
    while (!this.closed && this.vms.get(vm.config.name) === vm) {
      // Held by a listener: the ring stays full until it resumes (pumpConsole runs then).
      if (vm.held.size) await new Promise<void>((resolve) => { vm.unheld = resolve; setTimeout(resolve, 1000); });
      else await vm.out.waitForData(1000);
      this.pumpConsole(vm);
    }
  }

  private unhold(vm: VmRecord, listener: ConsoleListener): void {
    if (!vm.held.delete(listener)) return;
    this.pumpConsole(vm);
    if (vm.held.size === 0) vm.unheld?.();
  }

  private pumpConsole(vm: VmRecord): void {
    if (vm.held.size === 0 && vm.out.available() > 0) {
      const bytes = vm.out.read();
      vm.scrollback.push(bytes);
      vm.scrollbackBytes += bytes.length;
      while (vm.scrollbackBytes - vm.scrollback[0].length >= this.scrollbackLimit) vm.scrollbackBytes -= vm.scrollback.shift()!.length;
      for (const l of vm.listeners) {
        try {
          if (l(bytes) === false) vm.held.add(l);
        } catch {
          vm.listeners.delete(l); // a client that cannot take output is detached, not the VM's console
        }
      }
    }
  }
}

const mib = (bytes: number) => Math.round(bytes / 2 ** 20);

// Disk overlays are named after their snapshot, and a drive's file is one field of a
// comma-separated --drive string: a comma there would split it.
function checkStatePath(file: string): void {
  if (file.includes(",")) throw badRequest(`snapshot ${file}: a snapshot's path may not contain ',' (its disks' overlays are named after it)`);
}


/** Takes a VM's console output; returning false asks for a pause until the handle's resume(). */
export type ConsoleListener = (bytes: Uint8Array) => boolean | void;

export interface IncomingOptions {
  /** What this listener takes beyond what the host admits: throws (with the reason the source is told) to refuse a VM. */
  admit?: (config: VmConfig) => void;
  /** The same for each disk the VM brings (block migration), by its size in bytes, before its copy is made. */
  admitDisk?: (bytes: number) => void;
}

export interface ConsoleHandle {
  /** Keys for the guest (dropped if it is not reading). */
  write(bytes: Uint8Array): void;
  /** The listener can take output again after returning false. */
  resume(): void;
  detach(): void;
}
