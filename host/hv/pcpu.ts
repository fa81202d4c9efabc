/**
 * A physical CPU of the hypervisor: one worker thread that is home to some VMs, owns their
 * devices and backends, and shares its time among their vCPUs with the Scheduler.
 *
 * The loop: poll halted VMs for a wake-up (an interrupt, console input, a due timer), ask the
 * scheduler who runs, run that VM in short steps until its slice ends, it halts, or a boosted VM
 * wants the pCPU, then charge it. When nothing may run, sleep on the doorbell (which the control
 * plane rings after writing console input) until the earliest timer or cap refill. The thread's
 * event loop gets a turn every few milliseconds, for Comlink calls and network events.
 *
 * Containment: a guest can only hurt itself. Console output never blocks the pCPU (a full ring
 * drops bytes and counts them); an exception from the machine (an emulation bug) fails that VM
 * only; a guest that keeps an enabled interrupt pending without taking any for `watchdogMs` of
 * CPU time (spinning with interrupts off) is reported stuck.
 */
import { Scheduler, type EntityStats } from "./scheduler";
import { buildMachine, machineDisks, machineUsbDisks, openUsbDevice, restoreMachine, type BootImages, type MachineIo } from "../vm/build";
import { parseUsbDevice } from "../config/parse";
import { continueOnOverlay } from "../disk/swappable";
import { MemoryPass, StateWriter, TO_FILE, TO_LINK, TO_LINK_POSTCOPY, applyChunkTo, openVmState, writeConfig, writeMachine, writeMemory } from "../state/vm-state";
import { PAGE, pageListPayload, sectionChunks, type PageSelection } from "../state/memory";
import { DISK_BLOCK, DISK_TO_LINK, DiskPass, diskSectionTarget, receiveDiskSection, writeDisk, type BlockSelection } from "../state/disk";
import { createDiskCopy } from "../disk/disk-copy";
import { STATE_MAGIC, StateFormatError, TAGS, bytesSource, listSections, type ByteSource } from "../state/container";
import { Core, LazyPageError } from "../core/core";
import { PostcopyPages, SnapshotPages, type IncomingRam } from "./incoming-ram";
import { DestinationReplies, GO, type MigrationTarget } from "../migration/link";
import { concatBytes } from "../util/bytes";
import { ByteRing, ringDoorbell } from "../util/ring";
import { EMULATION_FAILURE, type VirtMachine, type MachineStats, type StopReason, type DebugStop, type BorrowedStats } from "../machine/virt";
import { debugRequest, type DebugRequest } from "../machine/debug";
import type { DriveConfig, UsbDeviceConfig, VmConfig } from "../config/vm-config";
import type { DiskFormat } from "../disk/formats";
import type { Platform } from "../platform/platform";
import { saveCpu, type CpuState } from "../state/cpu";
import { transition, ended, type Action, type VmState } from "./lifecycle";
import { GUEST_RESET_END, type UsbInfo, type UsbRequest } from "./types";
import { BorrowedHarts, type HartLoan } from "../machine/remote-harts";
import { WakeWords, type SharedWord } from "../util/wake-words";

export interface HostedVmRequest {
  config: VmConfig;
  images: BootImages;
  /** Directories its disks must be in (a daemon's --images); anywhere if undefined. */
  dirs?: readonly string[];
  /** Console rings: output (this thread writes, never waiting), input (the control plane writes). */
  consoleOut: SharedArrayBuffer;
  consoleIn: SharedArrayBuffer;
  /** CPU ms with an interrupt waiting and none taken before the VM counts as stuck (default 5000; 0: never). */
  watchdogMs?: number;
}


/** What a pCPU tells the control plane of its VMs: an end (VmEvent), a reset the guest did, or a debugger's stop (the VM is paused). */
export type PcpuEvent = VmEvent | { name: string; state: "reset" } | { name: string; state: "debug"; stop: DebugStop }
  /** A VM with several harts runs and could run some on another pCPU (lend()). */
  | { name: string; state: "lendable" };

/** What the control plane hears when a VM ends by itself. */
export interface VmEvent {
  name: string;
  state: "stopped" | "failed";
  reason: string;
  /** The guest's exit status: 0 for a clean poweroff, its code for a test-device or HTIF exit, 70 for an emulation failure. */
  code: number;
}

/**
 * A VM on its way to another pCPU: its request, its state as a state stream (configuration,
 * core, machine, boot ROM: the one format snapshots and migration use), its VM memory (shared
 * between threads, so its RAM is not copied), and its accounting.
 */
export interface MovingVm {
  req: HostedVmRequest;
  stream: Uint8Array;
  memory: WebAssembly.Memory;
  state: "created" | "running" | "paused";
  /** CPU and steal time it had here (ms), for its totals. */
  cpuMs: number;
  stealMs: number;
  /** Console output the ring had no room for yet, and the bytes dropped so far. */
  backlog: Uint8Array[];
  dropped: number;
}

/** How a snapshot is going: the first pass over memory (the VM running), then its stop. */
export interface SnapshotProgress {
  phase: "saving" | "stopped" | "done" | "failed";
  /** How far the first pass has gone through RAM (0 to 1), and the bytes in the file so far. */
  memory: number;
  bytes: number;
  elapsedMs: number;
}

/** What a snapshot took. */
export interface SnapshotResult {
  path: string;
  /** Its size. */
  bytes: number;
  /** RAM pages written (a page written again during the save counts twice). */
  pages: number;
  /** From the request to the file in place (ms). */
  totalMs: number;
  /** How long the VM did not run: its last pages, core and devices saved (ms). */
  downtimeMs: number;
}

export interface MigrateOptions {
  /** The hosts' shared migration key. */
  key: Uint8Array;
  /** Longest the VM may stop for the last pages and its state (ms): pre-copy goes on until what is left fits. */
  downtimeMs: number;
  /** Pre-copy rounds before the VM is stopped anyway (a guest writing faster than the link). */
  maxRounds: number;
  /**
   * When pre-copy ends with more left than the downtime limit allows, switch to post-copy (if
   * the destination can): the VM runs there at once and the pages left follow, those it
   * touches first on demand. The VM is then lost if the link fails before the last page.
   */
  postcopy?: boolean;
  /**
   * Copy the VM's disks along with its memory (block migration): each drive goes to a new
   * image at the destination, rounds resending the blocks the guest wrote meanwhile. Without
   * it the disks must be shared storage (the same paths on both hosts).
   */
  copyStorage?: boolean;
}

/** How a migration is going (and, at the end, how it went). */
export interface MigrationProgress {
  phase: "connecting" | "pre-copy" | "stop-and-copy" | "switch-over" | "post-copy" | "done";
  /** Pre-copy rounds: 0 sends every page in use, each next one those written during the last. */
  round: number;
  sentBytes: number;
  sentPages: number;
  /** Pages written during the last round, and how fast the guest writes (MB/s). */
  dirtyPages: number;
  dirtyRateMBs: number;
  /** What the link has carried (MB/s). */
  bandwidthMBs: number;
  /** How long the VM would stop if it stopped now (ms). */
  expectedDowntimeMs: number;
  elapsedMs: number;
  /** Once done: how long the VM did not run, stop to running at the destination (ms). */
  downtimeMs?: number;
  /** Why pre-copy stopped: what was left fitted the downtime limit, the round limit, or rounds no longer shrank it. */
  stoppedBy?: "downtime" | "rounds" | "no progress";
  /** Block migration: disk blocks sent (64 KiB each; a block written again counts again), and those written during the last round. */
  disk?: { blocks: number; dirtyBlocks: number };
  /** Post-copy: the pages that were left when the VM moved, those sent since, and those the destination asked for. */
  postcopy?: { pages: number; sent: number; asked: number };
  /** Why it failed (the VM then goes on here, unless `lost`: it could not be put back either). */
  error?: string;
  lost?: boolean;
  /** A VM taken back after its release: the CPU and steal time it had had here (its totals go on). */
  carried?: { cpuMs: number; stealMs: number };
}

export interface HostedStats {
  name: string;
  state: VmState;
  machine: MachineStats;
  sched: EntityStats;
  /** Console bytes dropped because nobody drained the ring. */
  consoleDropped: number;
}

/**
 * Console output waiting for room in a full ring, per VM. The pCPU never waits for the reader:
 * a VM with this much waiting is not run until the reader has taken some (as a UART's guest waits
 * for its FIFO), so nothing is lost; only what one step prints beyond CONSOLE_BACKLOG_MAX would be.
 */
const CONSOLE_BACKLOG = 1 << 20;
const CONSOLE_BACKLOG_MAX = 4 * CONSOLE_BACKLOG;

/** How long one step of guest execution aims to take (ms): the preemption granularity. */
const STEP_MS = 1;
/** Longest the thread runs guests before its event loop gets a turn (ms). */
const YIELD_MS = 10;
const DEFAULT_WATCHDOG_MS = 5000;
/** How soon a VM's console backlog is tried again while nothing runs (ms). */
const BACKLOG_RETRY_MS = 10;
/**
 * A pass over memory while a VM runs (a migration's pre-copy, a live snapshot) lets the VMs here
 * run at least this often (ms), and they run this long at most before the pass goes on: the two
 * take equal turns. With the VMs' own 20 ms slices a busy guest left a pass a sixth of the thread
 * (an idle 256 MiB Linux migrated in 272 ms with the guest busy, 70-100 ms with it idle).
 */
const SAVE_TURN_MS = 4;

interface Hosted {
  req: HostedVmRequest;
  name: string;
  machine: VirtMachine;
  out: ByteRing;
  /** Output the ring had no room for yet (at most CONSOLE_BACKLOG bytes). */
  backlog: Uint8Array[];
  backlogBytes: number;
  input: ByteRing;
  state: VmState;
  reason?: string;
  /** When a halted VM's timer fires (performance.now() ms), Infinity if none. */
  wakeAt: number;
  /** Work units per ms (VirtMachine.step), measured: sizes the steps. */
  workPerMs: number;
  dropped: number;
  watchdog: { interrupts: number; cpuMs: number };
  /** How it ended, told once its console backlog is in the ring (so the output comes first). */
  endEvent: VmEvent | null;
  /** Where RAM still comes in from (a snapshot, a migration's post-copy), or null. */
  lazy: IncomingRam | null;
}

/** Harts of a VM homed on another pCPU, run here (remote-harts.ts): one scheduler entity. */
interface Borrowed {
  /** The scheduler's id: the VM's name and BORROWED_SUFFIX. */
  id: string;
  harts: BorrowedHarts;
  workPerMs: number;
  wakeAt: number;
}

/** A borrowed entity's scheduler id is its VM's name and this (no VM name holds a '/'). */
const BORROWED_SUFFIX = "/harts";
/** Ended loans whose figures a pCPU keeps. */
const LAST_LOANS = 64;

/** The largest disk a migration in may have copied here (bytes). */
const MAX_COPIED_DISK = 16 * 2 ** 40;

/** A migration whose link takes nothing for this long fails (ms). */
const LINK_STALL_MS = 30_000;

/** Time a VM's background fill may take after each of its slices, and when nothing runs (ms). */
const FILL_SLICE_MS = 1;
const FILL_IDLE_MS = 5;
/** Beside a snapshot: the pages the guest touched first after it was restored (JSON). */
const TOUCHED_SUFFIX = ".touched";

export class Pcpu {
  private readonly vms = new Map<string, Hosted>();
  /** Harts of VMs homed elsewhere run here, by scheduler id. */
  private readonly borrowed = new Map<string, Borrowed>();
  private readonly wakeWords = new WakeWords();
  private sched = new Scheduler();
  private doorbell = new Int32Array(new SharedArrayBuffer(4));
  private onEvent: (e: PcpuEvent) => void = () => {};
  private looping = false;
  private closed = false;

  constructor(private readonly platform: Platform) {}

  /**
   * Set up before the first VM (a separate call, so a worker can expose a Pcpu as it is):
   * the doorbell the control plane rings, the time slice, and where VM events go.
   */
  init(doorbell: SharedArrayBuffer, sliceMs: number | undefined, onEvent: (e: PcpuEvent) => void): void {
    if (this.vms.size) throw new Error("pCPU already has VMs: init() comes first");
    this.doorbell = new Int32Array(doorbell, 0, 1);
    this.sched = new Scheduler({ sliceMs });
    this.onEvent = (e) => void onEvent(e);
  }

  /** Build a VM here (not running yet); returns its devicetree. Throws a one-line message if it cannot be built. */
  async create(req: HostedVmRequest): Promise<Uint8Array> {
    return (await this.host(req)).machine.dtb;
  }

  /**
   * Hand a VM over for a move: it stops here between steps, its backends close (disks flushed;
   * user-mode network connections end), and what another pCPU needs to resume it comes back.
   */
  release(name: string): MovingVm {
    const vm = this.get(name);
    if (ended(vm.state)) throw new Error(`${name} is ${vm.state}: nothing to move`);
    vm.machine.unlend(); // every hart here, between two instructions, before its state is written
    this.flushConsole(vm);
    vm.machine.core.fetchAll(); // RAM goes as it is: pages still in a snapshot come in first
    const chunks: Uint8Array[] = [];
    const w = new StateWriter((c) => chunks.push(c));
    writeConfig(w, vm.req.config);
    writeMachine(w, vm.machine, Date.now());
    w.end();
    this.dropLazy(vm);
    const moving: MovingVm = {
      req: vm.req, stream: concatBytes(chunks), memory: vm.machine.core.memory, state: vm.state as MovingVm["state"],
      cpuMs: this.sched.cpuMs(name), stealMs: this.sched.stealMs(name, performance.now()),
      backlog: vm.backlog, dropped: vm.dropped,
    };
    vm.machine.close();
    this.vms.delete(name);
    this.sched.remove(name);
    return moving;
  }

  /** Resume a released VM here, in the state it had; its clock counts the time the move took. */
  async adopt(m: MovingVm): Promise<void> {
    const saved = openVmState(bytesSource(m.stream), `${m.req.config.name}'s moved state`, { name: m.req.config.name });
    const vm = await this.host(m.req, (io) => restoreMachine(saved, this.platform, io, { dirs: m.req.dirs, clock: { kind: "wall", nowMs: Date.now() }, memory: m.memory }));
    vm.backlog = m.backlog;
    vm.backlogBytes = m.backlog.reduce((n, b) => n + b.length, 0);
    vm.dropped = m.dropped;
    if (m.state !== "created") this.setState(vm, m.state);
  }

  /**
   * Build a VM here from a saved state (a snapshot file), not running yet unless `start`;
   * returns its devicetree. The state is checked whole before the VM exists (memory chunk by
   * chunk as it is loaded); a refusal leaves nothing behind.
   */
  async restore(req: HostedVmRequest, path: string, opts: { start?: boolean } = {}): Promise<{ dtb: Uint8Array; config: VmConfig }> {
    const src = this.platform.openStateFile(path, { what: "snapshot", dirs: req.dirs });
    let vm: Hosted;
    try {
      const saved = openVmState(src, `snapshot ${path}`, { name: req.config.name });
      // The control plane admitted what it read; a file changed since would be another VM.
      if (JSON.stringify(saved.config) !== JSON.stringify(req.config)) throw new Error(`snapshot ${path} changed while it was being restored: restore it again`);
      // Its disks stay as the snapshot has them: the VM writes to new overlays over them. An
      // overlay is made durable by its first flush (nothing in it is promised before), not here.
      const stamp = Date.now().toString(36);
      saved.config.drives = saved.config.drives.map((d, i) => {
        if (d.readOnly) return d;
        const overlay = `${path}.${saved.config.name}-${stamp}.disk${i}.qcow2`;
        this.platform.createDiskImage(overlay, { backing: { path: d.file, format: d.format ?? "raw" }, dirs: req.dirs, what: "overlay", sync: false });
        return { ...d, file: overlay, format: "qcow2" as const };
      });
      saved.config.usb = saved.config.usb?.map((d) => {
        if (d.type !== "usb-storage" || d.readOnly) return d;
        const overlay = `${path}.${saved.config.name}-${stamp}.usb-${d.id}.qcow2`;
        this.platform.createDiskImage(overlay, { backing: { path: d.file, format: d.format ?? "raw" }, dirs: req.dirs, what: "overlay", sync: false });
        return { ...d, file: overlay, format: "qcow2" as const };
      });
      if (saved.config.usb === undefined) delete saved.config.usb;
      req = { ...req, config: saved.config };
      vm = await this.host(req, (io) => restoreMachine(saved, this.platform, io, { dirs: req.dirs, clock: { kind: "continue" }, lazy: true }));
    } catch (e) {
      src.close();
      throw e;
    }
    if (!vm.machine.core.lazy) src.close();
    // The touch record is read by the first fill, once the VM runs (a hint: not on the way to running).
    else vm.lazy = new SnapshotPages(src, path, () => this.readTouched(path, req, vm.machine.core.ramSize / PAGE), (pages) => this.saveTouched(path, req, pages));
    if (opts.start) this.setState(vm, "running");
    return { dtb: vm.machine.dtb, config: req.config };
  }

  // The touch record of an earlier restore of `path`, if there is a sound one (it is only a hint).
  private readTouched(path: string, req: HostedVmRequest, ramPages: number): number[] {
    let src: ByteSource | null = null;
    try {
      src = this.platform.openStateFile(path + TOUCHED_SUFFIX, { what: "touch record", dirs: req.dirs });
      if (src.size > 1 << 20) return [];
      const pages = JSON.parse(new TextDecoder().decode(src.read(0, src.size))) as unknown;
      return Array.isArray(pages) ? pages.filter((p): p is number => Number.isInteger(p) && p >= 0 && p < ramPages).slice(0, 65536) : [];
    } catch {
      return [];
    } finally {
      src?.close();
    }
  }

  // A restore's touch record, beside the snapshot: only a hint for the next restore, so a
  // directory we may not write to costs speed, nothing else.
  private saveTouched(path: string, req: HostedVmRequest, pages: number[]): void {
    try {
      const file = this.platform.createStateFile(path + TOUCHED_SUFFIX, { what: "touch record", dirs: req.dirs, replaces: new TextEncoder().encode("[") });
      file.write(new TextEncoder().encode(JSON.stringify(pages)));
      file.commit();
    } catch {
      /* the next restore goes without */
    }
  }

  // Bring a lazy VM's RAM in between its steps (IncomingRam); returns whether more is ready now.
  // A source that fails fails the VM; once all is in, the source is let go.
  private fillLazy(vm: Hosted, ms: number): boolean {
    const l = vm.lazy;
    if (!l) return false;
    const core = vm.machine.core;
    let more = false;
    try {
      more = l.fill(core, ms);
    } catch (e) {
      this.end(vm, "failed", `${l.what}: ${(e as Error).message}`, true, EMULATION_FAILURE);
      return false;
    }
    if (core.lazy) return more;
    vm.lazy = null;
    l.close(core, true);
    if (vm.state === "running") this.offerHarts(vm);
    return false;
  }

  /**
   * Save a VM's whole state to `path` (the one state format, host/state/). A running VM goes on
   * running: its memory is written in a first pass with dirty logging on, between which this
   * pCPU's VMs get their turns, then the VM stops for the pages written meanwhile and its core
   * and devices, all between two steps (nothing awaited, so nothing runs). With `stop`, the VM
   * ends once the state is saved: the file is where it goes on. The file appears whole or not
   * at all.
   */
  async snapshot(name: string, path: string, opts: { stop?: boolean; dirs?: readonly string[] } = {}, progress: (p: SnapshotProgress) => void = () => {}): Promise<SnapshotResult> {
    const t0 = performance.now();
    let told = t0;
    const vm = this.get(name);
    if (ended(vm.state)) throw new Error(`cannot snapshot ${name}: it is ${vm.state}`);
    const file = this.platform.createStateFile(path, { what: "snapshot", dirs: opts.dirs, replaces: STATE_MAGIC });
    const core = vm.machine.core;
    try {
      // Its harts all run here while it is saved: dirty logging and the final stop see every one.
      vm.machine.gatherHarts("snapshot");
      core.fetchAll(); // a restored VM's pages still in its snapshot: the encoder reads RAM as it is
      const w = new StateWriter((chunk) => file.write(chunk));
      writeConfig(w, withDiskFormats(vm));
      // The first pass, with the VM running (if it is) and the others here taking their turns.
      core.setDirtyLog(true);
      const first = new MemoryPass(w, core, { kind: "nonzero" }, TO_FILE);
      await this.writeLive(first, () => {
        if (this.vms.get(name) !== vm || ended(vm.state)) throw new Error(`${name} ended while it was being saved`);
        if (performance.now() - told >= 100) {
          told = performance.now();
          progress({ phase: "saving", memory: first.progress, bytes: w.bytes, elapsedMs: told - t0 });
        }
      });
      progress({ phase: "stopped", memory: 1, bytes: w.bytes, elapsedMs: performance.now() - t0 });
      let pages = first.pages;
      // The VM stops here: nothing below awaits.
      const stopAt = performance.now();
      pages += writeMemory(w, core, { kind: "bitmap", bitmap: core.syncDirtyLog().bitmap }, TO_FILE);
      writeMachine(w, vm.machine, Date.now());
      w.end();
      core.setDirtyLog(false);
      vm.machine.flushDisks();
      // The disks as they are now belong to the snapshot: a VM that goes on writes to overlays.
      if (!opts.stop) this.continueDisks(vm, path, opts.dirs);
      file.commit();
      const downtimeMs = performance.now() - stopAt; // the file made durable (fsync) included: the VM waits for it
      if (opts.stop) this.end(vm, "stopped", `saved to ${path}`, false);
      return { path, bytes: w.bytes, pages, totalMs: performance.now() - t0, downtimeMs };
    } catch (e) {
      file.abort();
      if (this.vms.get(name) === vm && core.dirtyLogging) core.setDirtyLog(false);
      throw e;
    } finally {
      vm.machine.scatterHarts("snapshot");
    }
  }

  // ---- live migration ----

  /**
   * Migrate a VM to another host over the platform's link. Pre-copy: round 0 sends every page in
   * use while the VM runs (dirty logging on), each next round the pages written during the last,
   * until what is left would take at most `downtimeMs` on the link (or `maxRounds` have gone by).
   * Then the VM stops, the rest and its core and devices go, its backends close, and it ends here
   * once the destination says it runs there. Until that answer a failure (the link, the
   * destination's refusal or death) puts the VM back as it was: it goes on here as if nothing
   * had happened, and the result says what failed.
   */
  async migrateOut(name: string, target: MigrationTarget, opts: MigrateOptions, progress: (p: MigrationProgress) => void = () => {}): Promise<MigrationProgress> {
    const vm = this.get(name);
    if (ended(vm.state)) throw new Error(`cannot migrate ${name}: it is ${vm.state}`);
    if (opts.copyStorage) refuseUsbDisks(vm);
    if (!this.platform.connectMigration) throw new Error("this platform has no network to migrate VMs over");
    const t0 = performance.now();
    const p: MigrationProgress = { phase: "connecting", round: 0, sentBytes: 0, sentPages: 0, dirtyPages: 0, dirtyRateMBs: 0, bandwidthMBs: 0, expectedDowntimeMs: 0, elapsedMs: 0 };
    const tell = () => { p.elapsedMs = performance.now() - t0; progress({ ...p }); };
    tell();
    const link = await this.platform.connectMigration(target, opts.key);
    const core = vm.machine.core;
    vm.machine.gatherHarts("migration"); // dirty logging and the stop see every hart: all run here meanwhile
    let moving: MovingVm | null = null;
    let committed = false;
    try {
      const replies = new DestinationReplies(link);
      let destinationPostcopy = false;
      // Waiting for the link to take more, bounded: a destination that stops reading fails the migration.
      const drained = () => replies.within(link.drained(), LINK_STALL_MS, "the destination to take more of the VM");
      const expect = async (kind: "accepted" | "ready" | "running" | "received", timeoutMs: number, what: string) => {
        const m = await replies.next(timeoutMs, what);
        if ((m as Record<string, string>)[kind] !== name) throw new Error(`the destination answered ${JSON.stringify(m)} while this host waited for ${what}`);
        return m;
      };
      const w = new StateWriter((c) => { link.write(c); p.sentBytes += c.length; });
      writeConfig(w, vm.req.config);
      destinationPostcopy = (await expect("accepted", 30_000, "the destination to admit the VM") as { postcopy?: boolean }).postcopy === true;
      core.fetchAll(); // a restored VM's pages still in its snapshot: the encoder reads RAM as it is
      const alive = () => {
        if (replies.failure) throw replies.failure;
        if (this.vms.get(name) !== vm || ended(vm.state)) throw new Error(`${name} ended while migrating`);
      };
      p.phase = "pre-copy";
      const sent = { sections: 0 };
      const toLink = { ...TO_LINK, written: sent };
      const dirtyHistory: number[] = [];
      const disks = opts.copyStorage ? machineDisks(vm.machine) : [];
      if (disks.length) p.disk = { blocks: 0, dirtyBlocks: 0 };
      const diskTally = p.disk ?? { blocks: 0, dirtyBlocks: 0 };
      const toLinkDisk = { ...DISK_TO_LINK, written: sent };
      core.setDirtyLog(true);
      for (const d of disks) d.startDirtyLog();
      const sendStart = performance.now();
      let select: PageSelection = { kind: "nonzero" };
      let diskSelect: BlockSelection[] = disks.map(() => ({ kind: "nonzero" }));
      const turn = async () => {
        await drained();
        alive();
        tell();
      };
      for (;;) {
        const roundStart = performance.now();
        const pass = new MemoryPass(w, core, select, toLink);
        await this.writeLive(pass, turn);
        p.sentPages += pass.pages;
        for (const [i, d] of disks.entries()) {
          const dp = new DiskPass(w, i, d, diskSelect[i]!, toLinkDisk);
          await this.writeLive(dp, turn);
          diskTally.blocks += dp.blocks;
        }
        // What the destination has put in place, not what the link took, says how fast it goes
        // (and the VM stops only once the destination has caught up, so the stop is short).
        await replies.caughtUp(sent.sections, LINK_STALL_MS);
        alive();
        const now = performance.now();
        p.bandwidthMBs = p.sentBytes / 1e3 / Math.max(1, now - sendStart);
        const dirty = core.syncDirtyLog();
        const diskDirty = disks.map((d) => d.syncDirtyLog());
        diskTally.dirtyBlocks = diskDirty.reduce((n, x) => n + x.blocks, 0);
        const leftBytes = dirty.pages * PAGE + diskTally.dirtyBlocks * DISK_BLOCK;
        p.dirtyPages = dirty.pages;
        p.dirtyRateMBs = leftBytes / 1e3 / Math.max(1, now - roundStart);
        p.expectedDowntimeMs = leftBytes / 1e3 / Math.max(0.001, p.bandwidthMBs);
        tell();
        // Another round, unless what is left fits the downtime limit, the rounds are used up, or
        // rounds stopped paying (the guest writes about as fast as the link carries: the last
        // two did not shrink what is left by a tenth).
        dirtyHistory.push(leftBytes);
        const stalled = dirtyHistory.length >= 3 && leftBytes > 0.9 * Math.min(...dirtyHistory.slice(-3, -1));
        if (p.expectedDowntimeMs <= opts.downtimeMs) p.stoppedBy = "downtime";
        else if (p.round >= opts.maxRounds) p.stoppedBy = "rounds";
        else if (stalled) p.stoppedBy = "no progress";
        else {
          p.round++;
          select = { kind: "bitmap", bitmap: dirty.bitmap };
          diskSelect = diskDirty.map((x) => ({ kind: "bitmap", bitmap: x.bitmap }));
          continue;
        }
        // Stop-and-copy (or, in post-copy, stop and list what is left): from here to release()
        // nothing awaits, so the VM does not run again here. Its backends close (disks
        // flushed) before the destination builds it, so it finds them free.
        const postcopy = opts.postcopy === true && destinationPostcopy && p.stoppedBy !== "downtime";
        p.phase = "stop-and-copy";
        const stopAt = performance.now();
        if (!postcopy) p.sentPages += writeMemory(w, core, { kind: "bitmap", bitmap: dirty.bitmap }, toLink);
        // The disks go whole before the VM runs there (post-copy is for memory only).
        for (const [i, d] of disks.entries()) diskTally.blocks += writeDisk(w, i, d, { kind: "bitmap", bitmap: diskDirty[i]!.bitmap }, toLinkDisk).blocks;
        core.setDirtyLog(false);
        for (const d of disks) d.stopDirtyLog();
        // The released VM's own stream (its core, machine and ROM, saved once) goes on the link as it is.
        moving = this.release(name);
        for (const sec of listSections(bytesSource(moving.stream), "the released VM")) {
          if (sec.tag !== TAGS.config) w.copy({ tag: sec.tag, payload: moving.stream.subarray(sec.offset, sec.offset + sec.length), crc: sec.crc });
        }
        if (postcopy) w.section(TAGS.postcopy, pageListPayload(dirty.bitmap));
        else w.end();
        p.phase = "switch-over";
        tell();
        await drained();
        await expect("ready", 60_000, "the destination to build the VM");
        // The commit point: once told to go, the destination runs the VM, and this host must
        // never run its copy again, whatever happens to the link (neither copy running is
        // better than both).
        committed = true;
        link.write(GO);
        if (postcopy) {
          // The VM starts there at once and may need a page before it can say it runs: the pages go now.
          p.phase = "post-copy";
          p.postcopy = { pages: dirty.pages, sent: 0, asked: 0 };
          tell();
          await this.postcopyOut(w, core, dirty.bitmap, replies, drained, p.postcopy, tell);
          p.sentPages += p.postcopy.sent;
          w.end();
          await drained();
        }
        // Running, and in post-copy every page received: in either order (a VM may wait for
        // pages before its first step ends and it can say it runs).
        const waitingFor = new Set(postcopy ? ["running", "received"] : ["running"]);
        while (waitingFor.size) {
          const m = await replies.next(60_000, "the VM to run at the destination");
          const kind = Object.keys(m)[0]!;
          if (!waitingFor.delete(kind) || (m as Record<string, string>)[kind] !== name) throw new Error(`the destination answered ${JSON.stringify(m)} while this host waited for the VM to run there`);
        }
        p.downtimeMs = replies.seenAt.get("running")! - stopAt;
        break;
      }
      p.phase = "done";
      tell();
      link.close();
      return { ...p };
    } catch (e) {
      link.close(true);
      p.error = (e as Error).message;
      if (committed) {
        p.error += `; it was told to run there, so it does not run here (if it does not run there either, restore it from a snapshot)`;
        p.lost = true;
      } else if (moving) {
        try {
          await this.adopt(moving); // it goes on here, in the state it had
          p.carried = { cpuMs: moving.cpuMs, stealMs: moving.stealMs };
        } catch (e2) {
          p.error += `; and ${name} could not go on here: ${(e2 as Error).message}`;
          p.lost = true;
        }
      } else if (this.vms.get(name) === vm) {
        if (core.dirtyLogging) core.setDirtyLog(false);
        for (const d of machineDisks(vm.machine)) if (d.dirtyLogging) d.stopDirtyLog();
        vm.machine.scatterHarts("migration");
      }
      return { ...p };
    }
  }

  // Post-copy at the source: the pages `left` (a bitmap, emptied as they go) follow the VM, those
  // the destination asks for first, the rest in order in small sections between them.
  private async postcopyOut(w: StateWriter, core: Core, left: Uint32Array, replies: DestinationReplies, drained: () => Promise<void>, tally: NonNullable<MigrationProgress["postcopy"]>, tell: () => void): Promise<void> {
    const ramPages = core.ramSize / PAGE;
    const pass = new MemoryPass(w, core, { kind: "bitmap", bitmap: left }, TO_LINK_POSTCOPY, true);
    const one = new Uint32Array(left.length);
    let told = performance.now();
    for (let more = true; more;) {
      for (const page of replies.takeNeeds()) {
        const bit = 1 << (page & 31);
        // Not RAM, or gone already (on its way, or sent on an earlier request): nothing to do.
        if (page >= ramPages || !(left[page >>> 5]! & bit)) continue;
        left[page >>> 5]! &= ~bit;
        one[page >>> 5] = bit;
        writeMemory(w, core, { kind: "bitmap", bitmap: one }, TO_LINK_POSTCOPY);
        one[page >>> 5] = 0;
        tally.asked++;
      }
      more = pass.nextSection();
      await drained();
      await this.platform.yieldTurn(); // requests come in, and the VMs here run
      if (replies.failure) throw replies.failure;
      if (performance.now() - told > 100) {
        tally.sent = pass.pages + tally.asked;
        tell();
        told = performance.now();
      }
    }
    tally.sent = pass.pages + tally.asked;
  }

  // A pass over memory or a disk during which the VMs here get their turns every few ms; `turn`
  // is awaited then too (backpressure, checks that the VM is still there).
  private async writeLive(pass: { next(): boolean }, turn: () => Promise<void> | void): Promise<void> {
    this.passes++;
    try {
      let at = performance.now();
      while (pass.next()) {
        if (performance.now() - at >= SAVE_TURN_MS) {
          await this.platform.yieldTurn();
          await turn();
          at = performance.now();
        }
      }
    } finally {
      this.passes--;
    }
  }

  /** Passes over memory going on here (writeLive): the VMs' turns are SAVE_TURN_MS meanwhile. */
  private passes = 0;

  /** How long the VMs here run before the event loop gets a turn (ms). */
  private get turnMs(): number {
    return this.passes > 0 ? SAVE_TURN_MS : YIELD_MS;
  }

  /** A VM's slice as the scheduler gave it, cut to SAVE_TURN_MS while a pass runs. */
  private cutSlice(sliceMs: number): number {
    return this.passes > 0 ? Math.min(sliceMs, SAVE_TURN_MS) : sliceMs;
  }

  /** VMs migrating in: their memory, filled as the sections arrive, and the copies of their disks (block migration), until incomingFinish(). */
  private readonly incomingVms = new Map<string, { req: HostedVmRequest; core: Core; disks: (ReturnType<typeof createDiskCopy> | null)[] }>();

  /** Get ready for a VM migrating in: a fresh VM memory for its pages. */
  incomingBegin(req: HostedVmRequest): void {
    const c = req.config;
    if (this.vms.has(c.name) || this.incomingVms.has(c.name)) throw new Error(`a VM named ${c.name} is already on this pCPU`);
    this.incomingVms.set(c.name, { req, core: new Core({ module: this.platform.coreModule(), ramSize: c.memory, harts: c.smp, paging: c.paging }), disks: c.drives.map(() => null) });
  }

  /**
   * A disk section of a VM migrating in (block migration), checked whole and put on the drive's
   * copy here; the first section for a drive creates its copy, a new qcow2 image in this host's
   * first image directory (or beside the source's path, on a host without), of the size it gives.
   */
  incomingDisk(name: string, payload: Uint8Array, crc: number): void {
    const vm = this.incomingVms.get(name);
    if (!vm) throw new Error(`no VM named ${name} is migrating in here`);
    const what = `${name} migrating in`;
    const { drive, size } = diskSectionTarget(payload);
    const d = vm.req.config.drives[drive];
    if (!d) throw new StateFormatError(`${what}: a disk section for drive ${drive}; the VM has ${vm.req.config.drives.length}`);
    if (!vm.disks[drive]) {
      // Where the copy goes is this host's choice, never the source's.
      if (!vm.req.dirs?.length) throw new Error(`${what}: this host takes copied disks only into an image directory (--images); it has none`);
      if (!(size > 0 && size % 512 === 0 && size <= MAX_COPIED_DISK)) throw new StateFormatError(`${what}: drive ${drive} would be ${size} bytes: not a disk size this host copies (whole sectors, at most ${MAX_COPIED_DISK / 2 ** 40} TiB)`);
      const path = `${vm.req.dirs[0]!.replace(/\/+$/, "")}/${name}.${Date.now().toString(36)}.disk${drive}.qcow2`;
      vm.disks[drive] = createDiskCopy(this.platform, path, size, { dirs: vm.req.dirs, what: `${name}'s copy of drive ${drive}` });
    }
    receiveDiskSection(vm.disks.map((c) => c?.disk), payload, crc, what);
  }

  /** A memory section of a VM migrating in (checked: its index, then each chunk as it is put in place). */
  incomingMemory(name: string, payload: Uint8Array, crc: number): void {
    const vm = this.incomingVms.get(name);
    if (!vm) throw new Error(`no VM named ${name} is migrating in here`);
    for (const [e, data] of sectionChunks(payload, crc, vm.core.ramSize / PAGE, `${name} migrating in`)) applyChunkTo(vm.core, e, data);
  }

  /**
   * The rest of a VM migrating in (configuration, core, machine, ROM as a state stream): it is
   * built, not running yet. Returns its devicetree and its configuration (its disks may be the
   * copies made here), in one answer: one message fewer in the switch-over. With `postcopy`, the
   * listed pages (a PCPY bitmap) are still to come: they come in through the page channel as the
   * VM runs.
   */
  async incomingFinish(name: string, stream: Uint8Array, postcopy?: { pages: Uint32Array; channel: SharedArrayBuffer; from: string }): Promise<{ dtb: Uint8Array; config: VmConfig }> {
    const vm = this.incomingVms.get(name);
    if (!vm) throw new Error(`no VM named ${name} is migrating in here`);
    if (postcopy && !this.platform.pcpuMayWait) throw new Error("this host's pCPUs run on the calling thread, which cannot wait for pages from the network: post-copy needs pCPU threads");
    const saved = openVmState(bytesSource(stream), `${name} migrating in`, { name });
    // Copied disks: the VM goes on on its copies here (closed first: the machine opens them itself).
    if (vm.disks.some((c) => c)) {
      for (const c of vm.disks) c?.disk.close();
      const drives = saved.config.drives.map((d, i) => {
        const c = vm.disks[i];
        return c ? { ...d, file: c.image.path, format: c.image.format } : d;
      });
      saved.config = { ...saved.config, drives };
      vm.req = { ...vm.req, config: { ...vm.req.config, drives } };
    }
    // Its hostfwd ports follow it: on one machine the source has just closed them, and the
    // system may take a moment to let them go.
    for (let tries = 0; ; tries++) {
      try {
        const hosted = await this.host(vm.req, (io) => restoreMachine(saved, this.platform, io, { dirs: vm.req.dirs, clock: { kind: "wall", nowMs: Date.now() }, memory: vm.core.memory }));
        this.incomingVms.delete(name);
        if (postcopy) {
          const pages = new PostcopyPages(postcopy.channel, postcopy.from, hosted.machine.core);
          hosted.machine.core.beginLazy(pages.source, { present: postcopy.pages.map((w) => ~w) });
          hosted.lazy = pages;
        }
        return { dtb: hosted.machine.dtb, config: hosted.req.config };
      } catch (e) {
        if (tries >= 40 || !/hostfwd .*cannot listen: .*EADDRINUSE|address already in use/i.test((e as Error).message)) throw e;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  /** Forget a VM whose migration in failed (and the copies of its disks). */
  incomingAbort(name: string): void {
    const vm = this.incomingVms.get(name);
    this.incomingVms.delete(name);
    for (const c of vm?.disks ?? []) {
      if (!c) continue;
      try {
        c.disk.close();
      } catch {
        /* closed already (by incomingFinish) */
      }
      this.platform.removeDiskImage(c.image.path);
    }
  }

  // Each writable disk of the VM goes on in a new qcow2 overlay `<snapshot>.<stamp>.disk<i>.qcow2` over the
  // image it was on, which the snapshot keeps; the VM's configuration follows (config()).
  private continueDisks(vm: Hosted, snapshot: string, dirs?: readonly string[]): void {
    const disks = machineDisks(vm.machine);
    const usbDisks = machineUsbDisks(vm.machine);
    const drives = vm.req.config.drives.map((d) => ({ ...d }));
    const usb = vm.req.config.usb?.map((d) => ({ ...d }));
    try {
      drives.forEach((d, i) => {
        if (d.readOnly) return;
        const now = continueOnOverlay(this.platform, disks[i]!, `${snapshot}.${Date.now().toString(36)}.disk${i}.qcow2`, { dirs });
        drives[i] = { ...d, file: now.path, format: now.format };
      });
      // USB disks the same way, each named by its device id.
      usb?.forEach((d, i) => {
        const disk = usbDisks.get(d.id);
        if (d.type !== "usb-storage" || d.readOnly || !disk) return;
        const now = continueOnOverlay(this.platform, disk, `${snapshot}.${Date.now().toString(36)}.usb-${d.id}.qcow2`, { dirs });
        usb[i] = { ...d, file: now.path, format: now.format };
      });
    } finally {
      vm.req = { ...vm.req, config: { ...vm.req.config, drives, ...(usb ? { usb } : {}) } };
    }
  }

  /** A VM's configuration as it is now (a snapshot moves its disks to overlays). */
  config(name: string): VmConfig {
    return this.get(name).req.config;
  }

  /**
   * A USB request on a VM (hot-plug between steps): a device plugged in gets its backend opened
   * here and joins the configuration (with its port, so a snapshot rebuilds it there); one
   * unplugged leaves it.
   */
  usb(name: string, request: UsbRequest): UsbInfo {
    const vm = this.get(name);
    if (ended(vm.state)) throw new Error(`${name} is ${vm.state}`);
    const m = vm.machine;
    const config = vm.req.config;
    let port: number | undefined;
    switch (request.op) {
      case "attach": {
        if (!config.usb) throw new Error(`${name} has no USB controller: define it with a usb list (even an empty one)`);
        const d = parseUsbDevice(request.spec, config.usb);
        const spec = openUsbDevice(d, this.platform, { wake: () => this.ring() }, vm.req.dirs);
        try {
          port = m.usbAttach(spec);
        } catch (e) {
          if (spec.type !== "usb-kbd") spec.backend.close();
          throw e;
        }
        vm.req = { ...vm.req, config: { ...config, usb: pinPorts([...config.usb, d], m.usbDevices()) } };
        break;
      }
      case "detach":
        m.usbDetach(request.id);
        vm.req = { ...vm.req, config: { ...config, usb: pinPorts((config.usb ?? []).filter((d) => d.id !== request.id), m.usbDevices()) } };
        break;
      case "type": m.usbType(request.id, new TextEncoder().encode(request.text)); break;
      case "console": m.usbConsole(request.id); break;
      case "list": break;
    }
    this.ring(); // the guest may have work now
    return { devices: m.usbDevices(), ...(port !== undefined ? { port } : {}) };
  }

  /** A VM's drives as they are now, each with its format as opened (a probed one included). */
  drives(name: string): (DriveConfig & { format: DiskFormat })[] {
    return openedDrives(this.get(name));
  }

  private async host(req: HostedVmRequest, build?: (io: MachineIo) => Promise<VirtMachine>): Promise<Hosted> {
    const name = req.config.name;
    if (this.vms.has(name)) throw new Error(`a VM named ${name} is already on this pCPU`);
    const hosted = {
      req, name, out: new ByteRing(req.consoleOut), backlog: [], backlogBytes: 0, input: new ByteRing(req.consoleIn), state: "created",
      wakeAt: Infinity, workPerMs: 100_000, dropped: 0, watchdog: { interrupts: 0, cpuMs: 0 }, endEvent: null, lazy: null,
    } as Omit<Hosted, "machine">;
    const vm = hosted as Hosted;
    const io: MachineIo = {
      output: (bytes) => this.writeConsole(vm, bytes),
      input: () => vm.input.readByte(),
      wake: () => this.ring(),
    };
    vm.machine = build ? await build(io) : await buildMachine(req.config, req.images, this.platform, io, { dirs: req.dirs });
    this.vms.set(name, vm);
    this.sched.add(name, { weight: req.config.cpu.weight, cap: req.config.cpu.cap });
    return vm;
  }

  // Console output never makes the pCPU wait: what the ring has no room for waits here (and the
  // VM with it, past CONSOLE_BACKLOG); beyond CONSOLE_BACKLOG_MAX it is dropped and counted.
  private writeConsole(vm: Hosted, bytes: Uint8Array): void {
    if (vm.backlogBytes === 0) {
      const n = vm.out.write(bytes);
      if (n === bytes.length) return;
      bytes = bytes.subarray(n);
    }
    const keep = Math.min(bytes.length, CONSOLE_BACKLOG_MAX - vm.backlogBytes);
    if (keep > 0) {
      vm.backlog.push(bytes.slice(0, keep));
      vm.backlogBytes += keep;
    }
    vm.dropped += bytes.length - keep;
  }

  /** Move what waits in the backlog into the ring, as far as it has room; then tell of the VM's end, if it has ended. */
  private flushConsole(vm: Hosted): void {
    while (vm.backlog.length) {
      const chunk = vm.backlog[0];
      const n = vm.out.write(chunk);
      vm.backlogBytes -= n;
      if (n < chunk.length) {
        vm.backlog[0] = chunk.subarray(n);
        return;
      }
      vm.backlog.shift();
    }
    if (vm.endEvent) {
      const e = vm.endEvent;
      vm.endEvent = null;
      this.onEvent(e);
    }
  }

  /**
   * Start, pause, resume, stop or reset a VM, as the life cycle allows (stop: for good; its disks are
   * flushed and closed). A stop that finds the VM ended by itself answers with that end, if it
   * has not been told yet (it is then not told again).
   */
  act(name: string, action: Action): VmEvent | null {
    const vm = this.get(name);
    if (action === "stop" && ended(vm.state)) {
      const e = vm.endEvent;
      vm.endEvent = null;
      return e;
    }
    const to = transition(name, vm.state, action, vm.reason);
    if (action === "reset") vm.machine.reset();
    else if (to === "stopped") this.end(vm, "stopped", "stopped by the host", false);
    else this.setState(vm, to as "running" | "paused");
    return null;
  }

  destroy(name: string): void {
    const vm = this.get(name);
    if (!ended(vm.state)) this.end(vm, "stopped", "destroyed", false);
    this.vms.delete(name);
    this.sched.remove(name);
  }

  /** Every hart's registers and CSRs by name, as a state stream holds them (the monitor's info registers). */
  registers(name: string): CpuState {
    const m = this.get(name).machine;
    m.gatherHarts("registers"); // each hart between two instructions, none changing meanwhile
    try {
      return saveCpu(m.core, Date.now());
    } finally {
      m.scatterHarts("registers");
    }
  }

  /**
   * A debugger's request (registers, memory, breakpoints, watchpoints, a single step) on the VM's
   * machine, between its steps. A step that ends the VM (a poweroff) ends it here as a slice would.
   */
  debug(name: string, req: DebugRequest): unknown {
    const vm = this.get(name);
    if (ended(vm.state)) throw new Error(`cannot debug ${name}: it has ${vm.state === "failed" ? "failed" : "stopped"} (${vm.reason})`);
    // Every hart home while the debugger looks or changes anything (GDB may ask while it runs).
    vm.machine.gatherHarts("debugger");
    let out: unknown;
    try {
      out = debugRequest(vm.machine, req);
    } finally {
      vm.machine.scatterHarts("debugger");
    }
    const r = vm.machine.stopped;
    if (r) {
      const clean = r.kind === "poweroff" || r.kind === "reset" || (r.kind === "htif" && r.code === 0);
      this.end(vm, clean ? "stopped" : "failed", describeStop(r), true, r.code);
    }
    return out;
  }

  stats(name: string): HostedStats {
    const vm = this.get(name);
    return { name, state: vm.state, machine: vm.machine.stats(), sched: this.sched.stats(name, performance.now()), consoleDropped: vm.dropped };
  }

  // ---- harts on several pCPUs (host/machine/remote-harts.ts) ----

  /**
   * Lend the upper half of a VM's harts to another pCPU (borrow() there), or null if the VM
   * cannot run harts elsewhere now: one hart, shadow paging (its shadow tables are not made for
   * several threads), memory still coming in, ended, or lending already; or a cap (a share of
   * one pCPU, which it cannot pass on one pCPU, and could on two).
   */
  lend(name: string): HartLoan | null {
    const vm = this.get(name);
    const m = vm.machine;
    const n = m.core.harts;
    if (!this.mayLend(vm) || ended(vm.state)) return null;
    const lent = Array.from({ length: n - Math.ceil(n / 2) }, (_, i) => Math.ceil(n / 2) + i);
    m.lend(lent);
    if (vm.state !== "running") m.gatherHarts("paused");
    const c = vm.req.config;
    return {
      vm: name, memory: m.core.memory, ramSize: m.core.ramSize, harts: n, lent,
      local: Array.from({ length: Math.ceil(n / 2) }, (_, i) => i), paging: m.core.paging,
      jit: c.jit ?? this.platform.defaultJit?.() ?? "off", cpu: { weight: c.cpu.weight },
    };
  }

  // Tell the control plane a running VM could spread its harts (it decides where, and lend()s).
  private offerHarts(vm: Hosted): void {
    if (this.mayLend(vm)) this.onEvent({ name: vm.name, state: "lendable" });
  }

  // Whether the VM can run some harts on another pCPU now (lend()).
  private mayLend(vm: Hosted): boolean {
    const m = vm.machine;
    return m.core.harts >= 2 && !m.lentHarts.length && m.core.paging === "nested" && !m.core.lazy && !vm.lazy && vm.req.config.cpu.cap === undefined;
  }

  /** Take back the harts a VM lent (the borrower lets go of them). */
  unlend(name: string): void {
    this.vms.get(name)?.machine.unlend();
  }

  /**
   * The pCPU that borrowed a VM's harts is gone: they come back. A hart that was in the middle
   * of a run is half-way, and the VM fails.
   */
  reclaim(name: string): void {
    const vm = this.vms.get(name);
    if (!vm || ended(vm.state)) return;
    if (!vm.machine.reclaimLent()) this.end(vm, "failed", "the pCPU running some of its harts died in the middle of a run", true, EMULATION_FAILURE);
    else {
      this.ring();
      if (vm.state === "running") this.offerHarts(vm); // to the pCPU that replaces it, or another
    }
  }

  /** Run harts of a VM homed on another pCPU here, as the home lent them (Pcpu.lend there). */
  borrow(loan: HartLoan): void {
    const id = loan.vm + BORROWED_SUFFIX;
    if (this.borrowed.has(id)) throw new Error(`harts of ${loan.vm} already run on this pCPU`);
    const core = new Core({ module: this.platform.coreModule(), memory: loan.memory, ramSize: loan.ramSize, harts: loan.harts, paging: loan.paging, codeCache: 1 });
    const harts = new BorrowedHarts(loan, core, loan.jit === "on" ? this.platform.jitCompiler?.() : undefined);
    this.borrowed.set(id, { id, harts, workPerMs: 100_000, wakeAt: Infinity });
    this.sched.add(id, { weight: loan.cpu.weight });
    this.ensureLoop();
    this.ring();
  }

  /** The home of a VM whose harts run here is gone (its worker died): they stop here too. */
  abandon(vm: string): void {
    const b = this.borrowed.get(vm + BORROWED_SUFFIX);
    if (b) this.dropBorrowed(b);
  }

  /** What this pCPU did with the harts `vm` lent it, now or until the loan ended (the last loan's), or null. */
  borrowedStats(vm: string, pcpu: number): BorrowedStats | null {
    const b = this.borrowed.get(vm + BORROWED_SUFFIX);
    if (!b) return this.lastLoans.get(vm) ?? null;
    return { harts: b.harts.loan.lent, pcpu, cpuMs: this.sched.cpuMs(b.id), ...(b.harts.tier ? { jit: b.harts.tier.stats(b.harts.loan.lent) } : {}) };
  }

  /** Figures of loans that ended, by VM (the most recent LAST_LOANS), for a VM's stats after it stopped. */
  private readonly lastLoans = new Map<string, BorrowedStats>();

  private dropBorrowed(b: Borrowed): void {
    const vm = b.harts.loan.vm;
    this.lastLoans.delete(vm);
    this.lastLoans.set(vm, { harts: b.harts.loan.lent, pcpu: -1, cpuMs: this.sched.cpuMs(b.id), ...(b.harts.tier ? { jit: b.harts.tier.stats(b.harts.loan.lent) } : {}) });
    if (this.lastLoans.size > LAST_LOANS) this.lastLoans.delete(this.lastLoans.keys().next().value!);
    b.harts.tier?.close();
    this.borrowed.delete(b.id);
    this.sched.remove(b.id);
  }

  /** The borrowed entity running now: pollWakeups() does not drop it under runBorrowed(). */
  private runningBorrowed: Borrowed | null = null;

  // A slice of the borrowed harts: steps until the slice ends, they all sleep, or another entity preempts.
  private runBorrowed(b: Borrowed, sliceMs: number): void {
    this.runningBorrowed = b;
    try {
      this.runBorrowedSlice(b, sliceMs);
    } finally {
      this.runningBorrowed = null;
    }
  }

  private runBorrowedSlice(b: Borrowed, sliceMs: number): void {
    const t0 = performance.now();
    let t = t0;
    let work = 0;
    try {
      for (;;) {
        const did = b.harts.step(Math.max(10_000, Math.round(b.workPerMs * STEP_MS)));
        work += did;
        t = performance.now();
        if (did === 0) {
          b.wakeAt = t + b.harts.secondsUntilWake() * 1000;
          this.sched.setRunnable(b.id, false, t);
          break;
        }
        if (t - t0 >= sliceMs) break;
        this.pollWakeups(t);
        if (this.sched.preempts(b.id)) break;
      }
    } catch (e) {
      // An emulation error on a borrowed hart: the hart goes back to its home, which fails the VM.
      t = performance.now();
      b.harts.fail((e as Error).message);
    }
    const ran = t - t0;
    this.sched.charge(b.id, ran, t);
    if (ran > 0.2 && work > 0) b.workPerMs = 0.8 * b.workPerMs + 0.2 * (work / ran);
  }

  /** CPU time received plus CPU time waited for (steal), ms, per VM here: what the balancer weighs. */
  demand(): Record<string, number> {
    const now = performance.now();
    const out: Record<string, number> = {};
    for (const name of this.vms.keys()) out[name] = this.sched.cpuMs(name) + this.sched.stealMs(name, now);
    return out;
  }

  /** The control plane wrote console input (or wants the loop to look again). */
  ring(): void {
    ringDoorbell(this.doorbell);
  }

  /** Stop every VM and the loop. */
  close(): void {
    for (const vm of this.vms.values()) if (!ended(vm.state)) this.end(vm, "stopped", "host shut down", false);
    this.closed = true;
    this.ring();
  }

  private get(name: string): Hosted {
    const vm = this.vms.get(name);
    if (!vm) throw new Error(`no VM named ${name} on this pCPU`);
    return vm;
  }

  private setState(vm: Hosted, state: "running" | "paused"): void {
    // A paused VM's harts are all here (a debugger, the monitor, a save look at them).
    if (state === "paused") vm.machine.gatherHarts("paused");
    vm.state = state;
    if (state === "running") {
      vm.machine.scatterHarts("paused");
      this.offerHarts(vm);
    }
    const now = performance.now();
    this.sched.setRunnable(vm.name, state === "running", now);
    if (state === "running") {
      vm.wakeAt = Infinity;
      this.ensureLoop();
      this.ring(); // a loop asleep on the doorbell picks it up now
    }
  }

  // The VM ends: stopped (poweroff, host request) or failed (crash, stuck, emulation error).
  private end(vm: Hosted, state: "stopped" | "failed", reason: string, notify: boolean, code = 0): void {
    vm.state = state;
    vm.reason = reason;
    this.sched.setRunnable(vm.name, false, performance.now());
    this.dropLazy(vm);
    try {
      vm.machine.close();
    } catch {
      /* the backends are gone either way */
    }
    if (notify) {
      vm.endEvent = { name: vm.name, state, reason, code };
      this.flushConsole(vm);
    }
    if (vm.backlogBytes) this.ensureLoop(); // the loop hands the rest over
  }

  // Where a lazy VM's RAM was still coming from is not needed any more.
  private dropLazy(vm: Hosted): void {
    vm.lazy?.close(vm.machine.core, false);
    vm.lazy = null;
  }

  private ensureLoop(): void {
    if (this.looping || this.closed) return;
    this.looping = true;
    void this.loop().finally(() => { this.looping = false; });
  }

  private async loop(): Promise<void> {
    // Whoever started the loop (a start through Comlink) has its answer before the first slice.
    await this.platform.yieldTurn();
    let turnStart = performance.now();
    while (!this.closed) {
      const now = performance.now();
      this.pollWakeups(now);
      const d = this.sched.pick(now);
      if (d.kind === "run") {
        const b = this.borrowed.get(d.id);
        if (b) {
          this.runBorrowed(b, this.cutSlice(d.sliceMs));
          if (performance.now() - turnStart >= this.turnMs) {
            await this.platform.yieldTurn();
            turnStart = performance.now();
          }
          continue;
        }
        const vm = this.vms.get(d.id)!;
        this.runSlice(vm, this.cutSlice(d.sliceMs));
        this.fillLazy(vm, FILL_SLICE_MS);
        // Post-copy pages for a VM that does not run now go in too (the ring must keep moving).
        for (const other of this.vms.values()) if (other !== vm && other.lazy?.waiting) this.fillLazy(other, 0);
        if (performance.now() - turnStart >= this.turnMs) {
          await this.platform.yieldTurn();
          turnStart = performance.now();
        }
        continue;
      }
      // Nothing may run: sleep until a timer, a cap refill, the doorbell, or a kick of a hart
      // that runs on several threads (sampled before the last look at whether they can run).
      const words: SharedWord[] = [{ i32: this.doorbell, index: 0 }];
      for (const vm of this.vms.values()) if (vm.state === "running") words.push(...vm.machine.wakeWords());
      for (const b of this.borrowed.values()) words.push(...b.harts.wakeWords());
      const seen = this.wakeWords.sample(words);
      if (words.length > 1 && this.pollWakeups(performance.now())) continue;
      let until = d.untilMs ?? Infinity;
      let any = this.borrowed.size > 0;
      for (const b of this.borrowed.values()) until = Math.min(until, b.wakeAt);
      for (const vm of this.vms.values()) {
        if (vm.lazy && this.fillLazy(vm, FILL_IDLE_MS)) until = performance.now(); // more to fill: look again at once
        if (vm.backlogBytes) {
          this.flushConsole(vm);
          if (vm.backlogBytes) {
            any = true; // the loop stays until the control plane has it all
            until = Math.min(until, performance.now() + BACKLOG_RETRY_MS);
          }
        }
        if (vm.state !== "running") continue;
        any = true;
        until = Math.min(until, vm.wakeAt);
      }
      if (!any && d.untilMs === null) return; // nothing left to run; start() restarts the loop
      const ms = Math.max(0, Math.min(until - performance.now(), 1000));
      const changed = words.some((w, i) => Atomics.load(w.i32, w.index) !== seen[i]);
      if (!changed && ms > 0) await this.wakeWords.wait(words, seen, ms);
      // The doorbell rang, or the time had come, before the wait began: the event loop still
      // gets its turn (on the calling thread, the control plane lives there).
      else if (performance.now() - turnStart >= YIELD_MS) await this.platform.yieldTurn();
      else continue;
      turnStart = performance.now();
    }
  }

  // Halted VMs whose timer is due, or that an interrupt or console input made runnable (and
  // borrowed harts likewise). Returns whether it woke one.
  private pollWakeups(now: number): boolean {
    let woke = false;
    for (const b of this.borrowed.values()) {
      if (b.harts.revoked) {
        if (b !== this.runningBorrowed) this.dropBorrowed(b);
      }
      else if (!this.sched.isRunnable(b.id)) {
        // Asleep: its harts' timers as they are now (a kick may have brought a hart with an earlier one).
        b.wakeAt = now + b.harts.secondsUntilWake() * 1000;
        if (now >= b.wakeAt || b.harts.runnable()) {
          b.wakeAt = Infinity;
          this.sched.setRunnable(b.id, true, now, true);
          woke = true;
        }
      }
    }
    for (const vm of this.vms.values()) {
      if (vm.state !== "running" || this.sched.isRunnable(vm.name)) continue;
      if (this.consoleFull(vm)) { // it waits for its console's reader
        vm.wakeAt = Math.max(vm.wakeAt === Infinity ? 0 : vm.wakeAt, now + BACKLOG_RETRY_MS);
        continue;
      }
      if (now >= vm.wakeAt || vm.machine.runnable()) {
        vm.wakeAt = Infinity;
        this.sched.setRunnable(vm.name, true, now, true);
        woke = true;
      }
    }
    return woke;
  }

  /** Whether the VM has so much console output waiting for the reader that it must not run (after handing over what fits). */
  private consoleFull(vm: Hosted): boolean {
    if (vm.backlogBytes) this.flushConsole(vm);
    return vm.backlogBytes >= CONSOLE_BACKLOG;
  }

  private runSlice(vm: Hosted, sliceMs: number): void {
    const name = vm.name;
    const t0 = performance.now();
    if (this.consoleFull(vm)) {
      vm.wakeAt = t0 + BACKLOG_RETRY_MS;
      this.sched.setRunnable(name, false, t0);
      return;
    }
    let t = t0;
    const w0 = vm.machine.work;
    // Paravirtual guests learn their steal time (SBI STA) as they are scheduled in.
    vm.machine.sbi?.reportSteal(BigInt(Math.round(this.sched.stealMs(name, t0) * 1e6)));
    try {
      for (;;) {
        const budget = Math.max(10_000, Math.round(vm.workPerMs * STEP_MS));
        const r = vm.machine.step(budget);
        t = performance.now();
        if (r.state === "stopped") {
          this.sched.charge(name, t - t0, t);
          const clean = r.reason.kind === "poweroff" || r.reason.kind === "reset" || (r.reason.kind === "htif" && r.reason.code === 0);
          this.end(vm, clean ? "stopped" : "failed", describeStop(r.reason), true, r.reason.code);
          return;
        }
        if (r.state === "running" && r.reset) this.onEvent({ name, state: "reset" });
        if (r.state === "debug") {
          // All harts stop for the debugger, as the VM pauses (GDB's all-stop mode).
          this.setState(vm, "paused");
          this.onEvent({ name, state: "debug", stop: r.stop });
          break;
        }
        if (r.state === "idle") {
          vm.wakeAt = t + r.sleepSeconds * 1000;
          this.sched.setRunnable(name, false, t);
          break;
        }
        if (t - t0 >= sliceMs || vm.backlogBytes >= CONSOLE_BACKLOG) break;
        this.pollWakeups(t);
        if (this.sched.preempts(name)) break;
      }
    } catch (e) {
      t = performance.now();
      this.sched.charge(name, t - t0, t);
      // A page that could not come in is its source's failure (a snapshot, a migration), not the emulator's.
      const why = e instanceof LazyPageError && vm.lazy ? `${vm.lazy.what}: ${e.message}` : `emulation error: ${(e as Error).message}`;
      this.end(vm, "failed", why, true, EMULATION_FAILURE);
      return;
    }
    const ran = t - t0;
    this.sched.charge(name, ran, t);
    const work = vm.machine.work - w0;
    if (ran > 0.2 && work > 0) vm.workPerMs = 0.8 * vm.workPerMs + 0.2 * (work / ran);
    this.watch(vm, ran);
  }

  // The watchdog: CPU time during which an enabled interrupt waited and none was taken.
  private watch(vm: Hosted, ranMs: number): void {
    const core = vm.machine.core;
    let taken = 0;
    for (let h = 0; h < core.harts; h++) taken += core.interruptsTaken(h);
    if (taken !== vm.watchdog.interrupts || !vm.machine.interruptWaiting()) {
      vm.watchdog.interrupts = taken;
      vm.watchdog.cpuMs = 0;
      return;
    }
    vm.watchdog.cpuMs += ranMs;
    const limit = vm.req.watchdogMs ?? DEFAULT_WATCHDOG_MS;
    if (limit > 0 && vm.watchdog.cpuMs >= limit) {
      this.end(vm, "failed", `stuck: an interrupt waited ${(vm.watchdog.cpuMs / 1000).toFixed(1)} s of CPU time and none was taken (spinning with interrupts off?)`, true, EMULATION_FAILURE);
    }
  }
}

// The VM's configuration with each drive's format as opened (probed ones included), so that a
// snapshot names exactly what its disks are.
function withDiskFormats(vm: Hosted): VmConfig {
  return { ...vm.req.config, drives: openedDrives(vm) };
}

// The VM's drives, each with the format its image was opened as.
// After a hot-plug the configuration names every USB device's port: devices come and go out of
// port order, and a snapshot's machine must have each where the saved controller had it.
function pinPorts(devices: UsbDeviceConfig[], plugged: { id: string; port: number }[]): UsbDeviceConfig[] {
  return devices.map((d) => ({ ...d, port: plugged.find((p) => p.id === d.id)?.port ?? d.port }));
}

// Block migration copies the drives only: a USB disk would be left behind (with shared storage,
// migrating without --copy-storage, it is found there as the drives are). Unplugged first, it can go.
function refuseUsbDisks(vm: Hosted): void {
  const disk = vm.req.config.usb?.find((d) => d.type === "usb-storage" && !d.readOnly);
  if (disk) throw new Error(`cannot migrate ${vm.name} with --copy-storage: its USB disk ${disk.id} would not be copied (unplug it first: ctl usb detach ${vm.name} ${disk.id}, or migrate with shared storage)`);
}

function openedDrives(vm: Hosted): (DriveConfig & { format: DiskFormat })[] {
  const disks = machineDisks(vm.machine);
  return vm.req.config.drives.map((d, i) => ({ ...d, format: disks[i]!.image.format }));
}

function describeStop(r: StopReason): string {
  switch (r.kind) {
    case "poweroff": return "powered off";
    case "reset": return GUEST_RESET_END;
    case "fail": return `failed with code ${r.code}`;
    case "htif": return `HTIF exit ${r.code}`;
    case "error": return r.message;
  }
}
