// The host's handle on one VM's core: the shared WebAssembly.Memory, the instantiated core,
// and typed access to the hart blocks and guest memory at the offsets of layout.ts.
import * as loader from "@assemblyscript/loader";
import * as L from "./layout";
import { popcount } from "../util/bits";

export interface CoreExports {
  run(hart: number, budget: number): number;
  hostWrite(offset: number, len: number): void;
  resetMemoryMap(): void;
  dirtyLogEnable(on: number): void;
  dirtyLogSync(): number;
  flushCode(): void;
  useCodeCache(k: number): void;
  resetHart(hart: number, hartid: number, fresh: number): void;
  flushTlb(hart: number): void;
  csrRead(hart: number, csr: number): bigint;
  csrWrite(hart: number, csr: number, value: bigint): number;
  mtimeNow(): number;
  nextTimerDeadline(hart: number): number;
  hartRunnable(hart: number): number;
  pageIsZero(offset: number): number;
  /** The slow paths of translated code (docs/TRANSLATION.md). */
  // Translated code's ways into the core: one type, (i64, i64, i64) -> i32 (assembly/cpu.ts).
  jitLoad(va: bigint, arg: bigint, unused: bigint): number;
  jitStore(va: bigint, size: bigint, v: bigint): number;
  jitExec(slot: bigint, pc: bigint, unused: bigint): number;
  jitChain(pc: bigint, unused: bigint, unused2: bigint): number;
  /** The host's debugger (assembly/trigger.ts). */
  debugCsrWrite(hart: number, csr: number, value: bigint): number;
  debugChanged(hart: number): void;
  debugTranslate(hart: number, va: bigint): bigint;
  completePendingLoad(hart: number): void;
}

/** Longest a remote TLB flush waits for the hart's thread to reach a slice boundary (ms). */
const REMOTE_FLUSH_WAIT_MS = 100;

/** Timebase of the machine: mtime counts at 10 MHz. */
export const TIMEBASE_HZ = 10_000_000;

/**
 * A fixed instant every thread agrees on. performance.now() alone counts from its thread's own
 * start where threads have their own time origin (a browser's Web Workers), and a VM's mtime
 * must not jump when it moves to another thread. Counting from here keeps the ticks well inside
 * a double's integers for decades.
 */
const CLOCK_EPOCH_MS = Date.UTC(2025, 0, 1);
/** Where this thread's performance.now() starts, counted from CLOCK_EPOCH_MS. */
const THREAD_ORIGIN_MS = performance.timeOrigin - CLOCK_EPOCH_MS;

/** The host clock in timebase ticks: monotonic, and the same in every thread of the process. */
export const hostTicks = (): number => (THREAD_ORIGIN_MS + performance.now()) * (TIMEBASE_HZ / 1000);

export interface CoreOptions {
  /** The compiled core (see loadCoreModule). */
  module: WebAssembly.Module;
  /** Guest RAM in bytes (a multiple of 4 KiB). */
  ramSize: number;
  harts?: number;
  /** Clock in timebase ticks; defaults to the host's monotonic clock. */
  clock?: () => number;
  /** An existing VM memory to attach to (another thread's VM); it is not reinitialised. */
  memory?: WebAssembly.Memory;
  /** How TLB misses compose guest and P2M translations (default nested). */
  paging?: Paging;
  /**
   * The decoded-code cache this Core runs harts from (0 to DC_CACHES - 1, default 0): each
   * thread running harts of one VM at the same time needs its own (layout.ts DC_CACHES).
   */
  codeCache?: number;
}

/**
 * Where lazy memory gets a page that is not here yet (Core.beginLazy): write the content of RAM
 * page `ramPage` (guest-physical RAM_GPA + ramPage * 4096) into `dst`, its 4096 bytes of RAM,
 * which read as zero until then (a zero page needs no write). It runs synchronously inside
 * run() or a host accessor and must not call back into the Core. Throwing fails the VM
 * (LazyPageError).
 */
export type PageSource = (ramPage: number, dst: Uint8Array) => void;

/**
 * A page source threw: the page stays absent, the error goes out of the run() or accessor that
 * needed the page, and the VM cannot run again (its harts stopped in the middle of a run).
 */
export class LazyPageError extends Error {
  constructor(readonly ramPage: number, cause: unknown) {
    const gpa = Number(L.RAM_GPA) + ramPage * 4096;
    super(`lazy memory: RAM page ${ramPage} (guest-physical 0x${gpa.toString(16)}) could not be brought in: ` +
      `${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = "LazyPageError";
  }
}

/** How many first touches Core.touchOrder() records after beginLazy (a restore's prefetch list). */
export const TOUCH_RECORD_PAGES = 65536;

/** nested: the two-dimensional walk on a TLB miss; shadow: shadow tables kept by the VMM. */
export type Paging = "nested" | "shadow";
export const PAGING_MODES: readonly Paging[] = ["nested", "shadow"];

/** Where the memory-virtualization tables go, past RAM (host offsets; see p2m.ts, shadow.ts). */
export interface VmmLayout {
  p2mRoot: number;
  p2mPoolEnd: number;
  dirty: number;
  dirtySync: number;
  /** Lazy memory's absent-page bitmap (VM_ABSENT). */
  absent: number;
  /** Pages that may hold something other than zeros (VM_USED). */
  used: number;
  /** The shadow MMU's area and its page pool; 0 without shadow paging. */
  shadow: number;
  shadowPool: number;
  /** First byte past everything: the size of the VM's memory. */
  end: number;
}

/** Spare P2M table pages: a race between harts on two threads can leave one unused (p2m.ts). */
const P2M_POOL_SLACK = 8;

export function vmmLayout(ramSize: number, paging: Paging): VmmLayout {
  const page = 4096;
  const up = (n: number, a: number) => Math.ceil(n / a) * a;
  const ramPages = Math.ceil(ramSize / page);
  let at = up(L.RAM_HOST + ramSize, 16384); // the Sv39x4 root is 16 KiB aligned
  const p2mRoot = at;
  at += 16384;
  // Tables below the root: one per GiB and one per 2 MiB of RAM, two more for the boot ROM, and
  // slack for tables harts on other threads made at the same moment (p2m.ts allocTable).
  at += (Math.ceil(ramSize / 2 ** 30) + Math.ceil(ramSize / 2 ** 21) + 2 + P2M_POOL_SLACK) * page;
  const p2mPoolEnd = at;
  const bitmap = up(Math.ceil(ramPages / 32) * 4, page);
  const dirty = at;
  at += bitmap;
  const dirtySync = at;
  at += bitmap;
  const absent = at;
  at += bitmap;
  const used = at;
  at += bitmap;
  let shadow = 0, shadowPool = 0;
  if (paging === "shadow") {
    shadow = at;
    at += up(L.SH_RMAP + ramPages * 2, page);
    shadowPool = at;
    at += L.SH_POOL_PAGES * page;
  }
  return { p2mRoot, p2mPoolEnd, dirty, dirtySync, absent, used, shadow, shadowPool, end: at };
}

/** Entries the core's own table needs (its indirect calls); translations go after them. */
const CORE_TABLE_SIZE = 16;

// wasm32 memories stop at 4 GiB.
const MEMORY_LIMIT = 2 ** 32 - 65536;

/** Largest guest RAM one VM can have (in whole MiB), whatever its paging mode. */
export const MAX_RAM = (() => {
  let ram = MEMORY_LIMIT - L.RAM_HOST;
  ram -= ram % 2 ** 20;
  while (vmmLayout(ram, "shadow").end > MEMORY_LIMIT) ram -= 2 ** 20;
  return ram;
})();

/** The paging counters of a VM (VM_STAT_* in layout.ts). */
export interface PagingStats {
  tlbMisses: number;
  walkRefs: number;
  framesPopulated: number;
  shadowFaults: number;
  ptWriteTraps: number;
  shadowZaps: number;
  unshadowed: number;
  shadowResets: number;
  shadowContextHits: number;
  shadowContextNew: number;
  dirtyFaults: number;
}
const PAGING_STAT_FIELDS: [keyof PagingStats, number][] = [
  ["tlbMisses", L.VM_STAT_TLB_MISS], ["walkRefs", L.VM_STAT_WALK_REFS],
  ["framesPopulated", L.VM_STAT_P2M_POPULATE], ["shadowFaults", L.VM_STAT_SHADOW_FAULT],
  ["ptWriteTraps", L.VM_STAT_PT_WRITE], ["shadowZaps", L.VM_STAT_SHADOW_ZAP],
  ["unshadowed", L.VM_STAT_UNSHADOW], ["shadowResets", L.VM_STAT_SHADOW_RESET],
  ["shadowContextHits", L.VM_STAT_CTX_SWITCH], ["shadowContextNew", L.VM_STAT_CTX_NEW],
  ["dirtyFaults", L.VM_STAT_DIRTY_FAULT],
];

export class Core {
  readonly memory: WebAssembly.Memory;
  readonly exports: CoreExports;
  /**
   * The core's function table, which it imports so that translations of guest code (functions
   * of other modules on the same memory) can be added past its own entries (docs/TRANSLATION.md).
   * A thread's table: markers naming its entries must not outlive the Core.
   */
  readonly table: WebAssembly.Table;
  readonly ramSize: number;
  readonly harts: number;
  readonly paging: Paging;
  readonly vmm: VmmLayout;
  /** This Core's decoded-code cache (CoreOptions.codeCache): where its fields and slots are. */
  readonly codeCache: { index: number; meta: number; slots: number };
  /** Whole-memory views (the buffer is a SharedArrayBuffer that never grows). */
  readonly u8: Uint8Array;
  readonly i32: Int32Array;
  readonly view: DataView;
  /**
   * Guest RAM, guest-physical RAM_GPA upwards, raw: in lazy mode its absent pages do not hold
   * their content yet. Devices, loaders and copies go through phys/ramView/ramRead/physRead.
   */
  readonly ram: Uint8Array;
  /**
   * This Core made its memory (all zero then but for what the Core itself set up) rather than
   * attaching to another one's: what a restore into it does not write is zero already.
   */
  readonly freshMemory: boolean;
  /** The host clock mtime runs on (timebase ticks). */
  private readonly clock: () => number;

  // Lazy memory (beginLazy): where absent pages come from (null: lazy mode is off), how many
  // are still absent, the pages fetched on demand in order, and the error that failed the VM.
  private pageSource: PageSource | null = null;
  private absentPages = 0;
  private touched: number[] = [];
  private lazyFailure: LazyPageError | null = null;

  constructor(opts: CoreOptions) {
    const harts = opts.harts ?? 1;
    if (!Number.isInteger(harts) || harts < 1 || harts > L.MAX_HARTS) {
      throw new Error(`a VM can have 1 to ${L.MAX_HARTS} harts, not ${harts}`);
    }
    if (!Number.isInteger(opts.ramSize) || opts.ramSize < 1 << 20 || opts.ramSize % 4096 !== 0) {
      throw new Error(`guest RAM must be at least 1 MiB and a multiple of 4 KiB`);
    }
    if (opts.ramSize > MAX_RAM) {
      throw new Error(`guest RAM of ${opts.ramSize / 2 ** 20} MiB is more than one VM can address (max ${MAX_RAM / 2 ** 20} MiB)`);
    }
    const paging = opts.paging ?? "nested";
    if (!PAGING_MODES.includes(paging)) throw new Error(`paging must be nested or shadow, not '${paging}'`);
    this.ramSize = opts.ramSize;
    this.harts = harts;
    this.paging = paging;
    this.vmm = vmmLayout(opts.ramSize, paging);
    const cc = opts.codeCache ?? 0;
    if (!Number.isInteger(cc) || cc < 0 || cc >= L.DC_CACHES) throw new Error(`codeCache must be 0 to ${L.DC_CACHES - 1}, not ${cc}`);
    this.codeCache = { index: cc, meta: cc * L.DC_META_STRIDE, slots: L.DC_SLOTS + cc * L.DC_SLOTS_STRIDE };
    // (The tables past RAM also give the fetch fast path the 2 bytes it may read beyond RAM.)
    const pages = Math.ceil(this.vmm.end / 65536);
    const fresh = (this.freshMemory = !opts.memory);
    this.memory = opts.memory ?? new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
    const clock = (this.clock = opts.clock ?? hostTicks);
    const pageIn = (ramPage: number) => this.pageIn(ramPage);
    this.table = new WebAssembly.Table({ initial: CORE_TABLE_SIZE, element: "anyfunc" });
    const imports = { env: { memory: this.memory, table: this.table, hostTicks: clock, pageIn } } as loader.Imports;
    const instance = loader.instantiateSync<Record<string, unknown>>(opts.module, imports);
    this.exports = instance.exports as unknown as CoreExports;
    const buf = this.memory.buffer;
    this.u8 = new Uint8Array(buf);
    this.i32 = new Int32Array(buf);
    this.view = new DataView(buf);
    this.ram = new Uint8Array(buf, L.RAM_HOST, opts.ramSize);
    if (fresh) {
      this.view.setInt32(L.VM_NHARTS, harts, true);
      this.view.setBigUint64(L.VM_RAM_SIZE, BigInt(opts.ramSize), true);
      this.view.setInt32(L.VM_RAM_HOST_LIMIT, L.RAM_HOST + opts.ramSize, true);
      const v = this.vmm;
      this.view.setUint32(L.VM_P2M_ROOT, v.p2mRoot, true);
      this.view.setUint32(L.VM_P2M_POOL_END, v.p2mPoolEnd, true);
      this.view.setUint32(L.VM_DIRTY, v.dirty, true);
      this.view.setUint32(L.VM_DIRTY_SYNC, v.dirtySync, true);
      this.view.setUint32(L.VM_ABSENT, v.absent, true);
      this.view.setUint32(L.VM_USED, v.used, true);
      this.view.setInt32(L.VM_PAGING, paging === "shadow" ? L.PAGING_SHADOW : L.PAGING_NESTED, true);
      this.view.setUint32(L.VM_SH_BASE, v.shadow, true);
      this.view.setUint32(L.VM_SH_POOL, v.shadowPool, true);
      this.exports.resetMemoryMap();
      // mtime starts at zero, as on a machine just powered on.
      this.view.setBigInt64(L.VM_MTIME_OFFSET, BigInt(-Math.floor(clock())), true);
      for (let h = 0; h < harts; h++) this.exports.resetHart(h, h, 1);
    }
    // Attached, the cache's slots may carry OP_JIT markers naming entries of the table of the
    // Core that used it before (another thread's): the cache this Core takes starts empty.
    this.exports.useCodeCache(cc);
    if (!fresh && this.view.getInt32(L.VM_LAZY, true) !== 0) {
      // The page source is a function of the thread that began lazy mode: it cannot come along.
      throw new Error("this VM memory still has absent pages, whose source stays with the Core that began lazy mode: fetchAll() before handing it over");
    }
  }

  hartBase(hart: number): number {
    return L.HART_BASE + hart * L.HART_STRIDE;
  }

  run(hart: number, budget: number): number {
    // A page source failed in the middle of a run: the harts' state is half-way, never run it.
    if (this.lazyFailure) throw this.lazyFailure;
    return this.exports.run(hart, budget);
  }

  /** Power-on state: harts reset, no decoded code, an empty P2M (pages populate again). */
  reset(): void {
    this.exports.resetMemoryMap();
    this.exports.flushCode();
    for (let h = 0; h < this.harts; h++) this.exports.resetHart(h, h, 0);
  }

  // ---- registers ----
  x(hart: number, i: number): bigint {
    return this.view.getBigUint64(this.hartBase(hart) + L.H_X + i * 8, true);
  }
  setX(hart: number, i: number, v: bigint | number): void {
    if (i !== 0) this.view.setBigUint64(this.hartBase(hart) + L.H_X + i * 8, BigInt.asUintN(64, BigInt(v)), true);
  }
  f(hart: number, i: number): bigint {
    return this.view.getBigUint64(this.hartBase(hart) + L.H_F + i * 8, true);
  }
  setF(hart: number, i: number, v: bigint): void {
    this.view.setBigUint64(this.hartBase(hart) + L.H_F + i * 8, BigInt.asUintN(64, v), true);
  }
  pc(hart: number): bigint {
    return this.view.getBigUint64(this.hartBase(hart) + L.H_PC, true);
  }
  setPc(hart: number, v: bigint | number): void {
    this.view.setBigUint64(this.hartBase(hart) + L.H_PC, BigInt.asUintN(64, BigInt(v)), true);
  }
  priv(hart: number): number {
    return this.view.getInt32(this.hartBase(hart) + L.H_PRIV, true);
  }
  setPriv(hart: number, p: 0 | 1 | 3): void {
    this.view.setInt32(this.hartBase(hart) + L.H_PRIV, p, true);
    this.exports.flushTlb(hart);
  }
  csr(hart: number, num: number): bigint {
    return BigInt.asUintN(64, this.exports.csrRead(hart, num));
  }
  setCsr(hart: number, num: number, v: bigint | number): void {
    if (!this.exports.csrWrite(hart, num, BigInt.asUintN(64, BigInt(v)))) {
      throw new Error(`CSR 0x${num.toString(16)} cannot be written`);
    }
  }
  /** Put a hart to sleep as WFI does (true), or wake it (false). */
  setHalted(hart: number, halted: boolean): void {
    this.view.setInt32(this.hartBase(hart) + L.H_WFI, halted ? 1 : 0, true);
  }
  /** Set or clear a core-owned mip bit (SSIP for IPIs from the built-in SBI). */
  setMip(hart: number, bit: number, level: boolean): void {
    const idx = (this.hartBase(hart) + L.H_MIP) >> 2;
    if (level) {
      Atomics.or(this.i32, idx, 1 << bit);
      this.kick(hart);
    } else Atomics.and(this.i32, idx, ~(1 << bit));
  }
  halted(hart: number): boolean {
    return this.view.getInt32(this.hartBase(hart) + L.H_WFI, true) !== 0;
  }
  /** Interrupts hart `hart` has taken since reset. */
  interruptsTaken(hart: number): number {
    return Number(this.view.getBigUint64(this.hartBase(hart) + L.H_INTR_TAKEN, true));
  }
  instret(hart: number): bigint {
    return this.view.getBigUint64(this.hartBase(hart) + L.H_INSTRET, true);
  }

  // ---- run block ----
  exitAddr(hart: number): number {
    return Number(this.view.getBigUint64(this.hartBase(hart) + L.H_EXIT_ADDR, true));
  }
  exitSize(hart: number): number {
    return this.view.getInt32(this.hartBase(hart) + L.H_EXIT_SIZE, true);
  }
  exitIsWrite(hart: number): boolean {
    return this.view.getInt32(this.hartBase(hart) + L.H_EXIT_WRITE, true) !== 0;
  }
  /** Exit data as two 32-bit halves (no BigInt on the MMIO path). */
  exitDataLo(hart: number): number {
    return this.view.getUint32(this.hartBase(hart) + L.H_EXIT_DATA, true);
  }
  exitDataHi(hart: number): number {
    return this.view.getUint32(this.hartBase(hart) + L.H_EXIT_DATA + 4, true);
  }
  exitData(hart: number): bigint {
    return this.view.getBigUint64(this.hartBase(hart) + L.H_EXIT_DATA, true);
  }
  /** Answer a pending MMIO load; the core writes the register on the next run(). */
  setExitData(hart: number, lo: number, hi = 0): void {
    const p = this.hartBase(hart) + L.H_EXIT_DATA;
    this.view.setUint32(p, lo >>> 0, true);
    this.view.setUint32(p + 4, hi >>> 0, true);
  }
  /** Work the last run() did: instructions executed plus traps taken (what the budget pays for). */
  executed(hart: number): number {
    return Number(this.view.getBigInt64(this.hartBase(hart) + L.H_EXIT_EXECUTED, true));
  }
  /** Instructions the last run() retired. */
  retired(hart: number): number {
    return Number(this.view.getBigInt64(this.hartBase(hart) + L.H_EXIT_RETIRED, true));
  }

  // ---- interrupts and wake-ups ----
  /** Drive a host-owned mip bit (MEIP/SEIP) of a hart. Safe from any thread. */
  setIrq(hart: number, bit: number, level: boolean): void {
    const idx = (this.hartBase(hart) + L.H_MIP_EXT) >> 2;
    if (level) {
      Atomics.or(this.i32, idx, 1 << bit);
      this.kick(hart);
    } else Atomics.and(this.i32, idx, ~(1 << bit));
  }
  /**
   * Something may wake `hart` (an interrupt made pending, its halt ended): a thread asleep on the
   * hart's kick word (kickWord) wakes. The core kicks too, for CLINT writes to another hart.
   */
  kick(hart: number): void {
    const idx = (this.hartBase(hart) + L.H_KICK) >> 2;
    Atomics.add(this.i32, idx, 1);
    Atomics.notify(this.i32, idx);
  }
  /** The word a thread waits on (Atomics.wait or waitAsync) while `hart` sleeps: see kick(). */
  kickWord(hart: number): { i32: Int32Array; index: number } {
    return { i32: this.i32, index: (this.hartBase(hart) + L.H_KICK) >> 2 };
  }
  /**
   * Flush `hart`'s TLB for an SBI remote fence. The hart may be running on another thread: it
   * flushes itself at its next slice boundary (or next run()), and this waits only while it is
   * inside run() and has not yet (a few microseconds: a slice).
   */
  remoteFlushTlb(hart: number): void {
    this.remoteFence(hart, L.H_TLB_REQ, L.H_TLB_DONE);
  }
  /** An SBI remote fence.i on `hart`: its thread's decoded code is dropped, as remoteFlushTlb() does for the TLB. */
  remoteFenceI(hart: number): void {
    this.remoteFence(hart, L.H_FENCEI_REQ, L.H_FENCEI_DONE);
  }
  private remoteFence(hart: number, reqAt: number, doneAt: number): void {
    const base = this.hartBase(hart);
    const req = Atomics.add(this.i32, (base + reqAt) >> 2, 1) + 1;
    const deadline = performance.now() + REMOTE_FLUSH_WAIT_MS;
    while (Atomics.load(this.i32, (base + L.H_IN_RUN) >> 2) !== 0 && ((Atomics.load(this.i32, (base + doneAt) >> 2) - req) | 0) < 0) {
      // A hart stays in run() for at most a budget's worth of slices; past that something is wrong
      // with its thread, and the flush still happens at its next boundary.
      if (performance.now() > deadline) break;
    }
  }
  /** Ask a running hart to return from run() at its next slice boundary. */
  requestAttention(hart: number): void {
    Atomics.store(this.i32, (this.hartBase(hart) + L.H_ATTN) >> 2, 1);
  }
  clearAttention(hart: number): void {
    Atomics.store(this.i32, (this.hartBase(hart) + L.H_ATTN) >> 2, 0);
  }
  runnable(hart: number): boolean {
    return this.exports.hartRunnable(hart) !== 0;
  }
  /** Seconds until a halted hart's timer fires (Infinity if none is armed). */
  secondsUntilTimer(hart: number): number {
    const deadline = this.exports.nextTimerDeadline(hart);
    if (deadline === Infinity) return Infinity;
    return Math.max(0, (deadline - this.exports.mtimeNow()) / TIMEBASE_HZ);
  }

  // ---- the host's debugger (assembly/trigger.ts) ----
  /** Write a CSR in debug mode (a trigger's dmode and action 1 are writable); false if it cannot be written. */
  debugSetCsr(hart: number, num: number, v: bigint): boolean {
    return this.exports.debugCsrWrite(hart, num, BigInt.asUintN(64, v)) !== 0;
  }
  /** The host's breakpoint list of `hart`: virtual pcs it stops before (EXIT_DEBUG); at most DEBUG_BP_MAX. */
  setDebugBreakpoints(hart: number, pcs: readonly bigint[]): void {
    if (pcs.length > L.DEBUG_BP_MAX) throw new Error(`at most ${L.DEBUG_BP_MAX} breakpoints`);
    const base = this.hartBase(hart);
    pcs.forEach((pc, i) => this.view.setBigUint64(base + L.H_DEBUG_BP + i * 8, BigInt.asUintN(64, pc), true));
    this.view.setInt32(base + L.H_DEBUG_BP_COUNT, pcs.length, true);
    this.exports.debugChanged(hart);
  }
  /** Single-step mode: run(hart, 1) then runs exactly the instruction at pc (or takes its trap), untranslated, with no interrupt. */
  setDebugStep(hart: number, on: boolean): void {
    const at = this.hartBase(hart) + L.H_DEBUG;
    this.view.setInt32(at, on ? this.view.getInt32(at, true) | L.DBG_STEP : this.view.getInt32(at, true) & ~L.DBG_STEP, true);
    this.exports.debugChanged(hart);
  }
  /** What an EXIT_DEBUG matched: the address, the access (4 execute, 2 store, 1 load), the trigger (-1: a host breakpoint). */
  debugExit(hart: number): { addr: bigint; kind: number; trigger: number } {
    const base = this.hartBase(hart);
    return { addr: this.view.getBigUint64(base + L.H_EXIT_ADDR, true), kind: this.view.getInt32(base + L.H_EXIT_WRITE, true), trigger: Number(this.view.getBigInt64(base + L.H_EXIT_DATA, true)) };
  }
  /** A pending MMIO load's register filled now, so a debugger sees it. */
  completePendingLoad(hart: number): void {
    this.exports.completePendingLoad(hart);
  }
  /** The guest-physical address of virtual `va` as `hart` sees it now (nothing changes), or null. */
  debugTranslate(hart: number, va: bigint): number | null {
    const pa = this.exports.debugTranslate(hart, BigInt.asUintN(64, va));
    return pa < 0n ? null : Number(pa);
  }
  /** Read [va, va+len) through `hart`'s translation, RAM and ROM only; null if some byte is elsewhere. */
  debugRead(hart: number, va: bigint, len: number): Uint8Array | null {
    const out = new Uint8Array(len);
    for (let done = 0; done < len; ) {
      const a = BigInt.asUintN(64, va + BigInt(done));
      const n = Math.min(len - done, 4096 - Number(a & 0xfffn));
      const pa = this.debugTranslate(hart, a);
      const bytes = pa === null ? null : this.physRead(pa, n);
      if (!bytes) return null;
      out.set(bytes, done);
      done += n;
    }
    return out;
  }
  /** Write `data` at va through `hart`'s translation (RAM and ROM only, decoded code dropped); false, writing nothing, if some byte is elsewhere. */
  debugWrite(hart: number, va: bigint, data: Uint8Array): boolean {
    const pieces: { pa: number; from: number; n: number }[] = [];
    for (let from = 0; from < data.length; ) {
      const a = BigInt.asUintN(64, va + BigInt(from));
      const n = Math.min(data.length - from, 4096 - Number(a & 0xfffn));
      const pa = this.debugTranslate(hart, a);
      if (pa === null || !this.physRead(pa, n)) return false;
      pieces.push({ pa, from, n });
      from += n;
    }
    for (const { pa, from, n } of pieces) this.phys(pa, n)!.set(data.subarray(from, from + n));
    return true;
  }

  // ---- guest-physical memory ----
  // Views of guest memory may be written through, so handing one out drops the decoded code
  // of its pages (the core caches decoded instructions per page and cannot see host writes).
  // The *Read variants are for reading only: writing through them would escape the code cache,
  // dirty logging and shadow page-table coherence, so they skip that bookkeeping. In lazy mode
  // every one of them brings in the absent pages of its range first (LazyPageError if it cannot).
  /** A writable view of [gpa, gpa+len) if it lies in RAM or the boot ROM, else null. */
  phys(gpa: number, len: number): Uint8Array | null {
    const off = this.physOffset(gpa, len);
    return off < 0 ? null : this.hostView(off, len);
  }
  /** A view of [gpa, gpa+len) in RAM or the boot ROM for reading only, else null. */
  physRead(gpa: number, len: number): Uint8Array | null {
    const off = this.physOffset(gpa, len);
    return off < 0 ? null : this.readView(off, len);
  }
  /** A writable view of [gpa, gpa+len) if it lies wholly in RAM (device DMA: never the boot ROM), else null. */
  ramView(gpa: number, len: number): Uint8Array | null {
    const off = this.ramOffset(gpa, len);
    return off < 0 ? null : this.hostView(off, len);
  }
  /** A view of [gpa, gpa+len) in RAM for reading only (device DMA out of the guest), else null. */
  ramRead(gpa: number, len: number): Uint8Array | null {
    const off = this.ramOffset(gpa, len);
    return off < 0 ? null : this.readView(off, len);
  }
  /** Host offset of [gpa, gpa+len) in RAM, or -1. */
  private ramOffset(gpa: number, len: number): number {
    const off = gpa - Number(L.RAM_GPA);
    return off >= 0 && len >= 0 && off + len <= this.ramSize ? L.RAM_HOST + off : -1;
  }
  /** Host offset of [gpa, gpa+len) in RAM or the boot ROM, or -1. */
  private physOffset(gpa: number, len: number): number {
    const ram = this.ramOffset(gpa, len);
    if (ram >= 0) return ram;
    const off = gpa - L.ROM_GPA;
    return off >= 0 && len >= 0 && off + len <= L.ROM_SIZE ? L.ROM_HOST + off : -1;
  }
  private hostView(offset: number, len: number): Uint8Array {
    if (this.pageSource) this.bringInRange(offset, len);
    this.exports.hostWrite(offset, len);
    return this.u8.subarray(offset, offset + len);
  }
  private readView(offset: number, len: number): Uint8Array {
    if (this.pageSource) this.bringInRange(offset, len);
    return this.u8.subarray(offset, offset + len);
  }

  // ---- lazy memory ----
  // Restoring a snapshot (and post-copy migration) must not copy guest RAM up front: its pages
  // come in on first touch. A hart's first touch of a page makes its P2M leaf, and the core then
  // calls pageIn for a page whose bit is set in the absent-page bitmap (VM_ABSENT, past the
  // dirty bitmaps, owned here); host accessors bring in the pages of their range themselves.
  // Nothing else maps guest RAM: beginLazy empties the P2M, the shadow tables, the TLBs and the
  // decoded-code cache, so no frame is reachable without a fresh populate.

  /**
   * Enter lazy mode: every RAM page not set in `present` (bit i = RAM page i, already holding
   * its content: say, zero pages of a snapshot restored into a fresh memory) becomes absent,
   * to be brought in from `source` when first touched by a hart or through an accessor. Every
   * mapping is dropped so that each first touch is seen; the touch record starts empty. With
   * no page absent, lazy mode does not start. Not while a hart runs.
   */
  beginLazy(source: PageSource, opts: { present?: ArrayLike<number> } = {}): void {
    if (this.lazyFailure) throw this.lazyFailure;
    const pages = this.ramSize / 4096;
    const words = Math.ceil(pages / 32);
    const present = opts.present;
    if (present && present.length < words) {
      throw new Error(`present-page bitmap: ${pages} RAM pages need ${words} words, not ${present.length}`);
    }
    const base = this.vmm.absent >> 2;
    let absent = 0;
    for (let w = 0; w < words; w++) {
      const inRam = w === words - 1 && pages % 32 !== 0 ? 2 ** (pages % 32) - 1 : 0xffffffff;
      const bits = ~(present?.[w] ?? 0) & inRam;
      this.i32[base + w] = bits;
      absent += popcount(bits);
    }
    this.absentPages = absent;
    this.touched = [];
    this.exports.resetMemoryMap();
    this.exports.flushCode();
    for (let h = 0; h < this.harts; h++) this.exports.flushTlb(h);
    this.pageSource = absent > 0 ? source : null;
    this.view.setInt32(L.VM_LAZY, absent > 0 ? 1 : 0, true);
  }

  /** Whether lazy mode is on (some RAM page is still absent). */
  get lazy(): boolean {
    return this.pageSource !== null;
  }

  /** How many RAM pages are still absent. */
  lazyPending(): number {
    return this.absentPages;
  }

  /**
   * Bring in those of `pages` (RAM page indexes) that are still absent, without waiting for a
   * touch (background fill between steps); returns how many it fetched. Not while a hart runs.
   */
  prefetch(pages: Iterable<number>): number {
    const total = this.ramSize / 4096;
    let fetched = 0;
    for (const page of pages) {
      if (!this.pageSource) break;
      if (!Number.isInteger(page) || page < 0 || page >= total) throw new RangeError(`RAM page ${page} is not one of the ${total} pages of RAM`);
      if (this.pageIsAbsent(page)) {
        this.bringIn(page, false);
        fetched++;
      }
    }
    return fetched;
  }

  /** Bring in every absent page (lazy mode ends); returns how many it fetched. */
  fetchAll(): number {
    const base = this.vmm.absent >> 2;
    const words = Math.ceil(this.ramSize / 4096 / 32);
    let fetched = 0;
    for (let w = 0; w < words && this.pageSource; w++) {
      for (let bits = this.i32[base + w]; bits !== 0; bits &= bits - 1) {
        this.bringIn(w * 32 + 31 - Math.clz32(bits & -bits), false);
        fetched++;
      }
    }
    return fetched;
  }

  /**
   * RAM pages in the order they were first touched since beginLazy, by a hart or an accessor,
   * while still absent (at most TOUCH_RECORD_PAGES): what a later restore of the same snapshot
   * can prefetch first. Pages brought in by prefetch or fetchAll are not touches.
   */
  touchOrder(): number[] {
    return this.touched.slice();
  }

  /** Zero all of guest RAM (reboot): every page is then present, so lazy mode ends. */
  clearRam(): void {
    this.ram.fill(0);
    if (!this.pageSource) return;
    const base = this.vmm.absent >> 2;
    this.i32.fill(0, base, base + Math.ceil(this.ramSize / 4096 / 32));
    this.absentPages = 0;
    this.endLazy();
  }

  private pageIsAbsent(page: number): boolean {
    return (this.i32[(this.vmm.absent >> 2) + (page >>> 5)] & (1 << (page & 31))) !== 0;
  }

  // The core's import: a hart's first touch of an absent page.
  private pageIn(page: number): void {
    if (this.pageSource && this.pageIsAbsent(page)) this.bringIn(page, true);
  }

  private bringInRange(offset: number, len: number): void {
    if (offset < L.RAM_HOST || len <= 0) return; // the boot ROM is never absent
    const last = Math.floor((offset - L.RAM_HOST + len - 1) / 4096);
    for (let page = Math.floor((offset - L.RAM_HOST) / 4096); page <= last && this.pageSource; page++) {
      if (this.pageIsAbsent(page)) this.bringIn(page, true);
    }
  }

  private bringIn(page: number, touch: boolean): void {
    const at = L.RAM_HOST + page * 4096;
    const dst = this.u8.subarray(at, at + 4096);
    // Zeroed first: a zero page needs no write, and a source that writes part of a page leaves
    // zeros, never what the memory held before (a restore over a used VM).
    dst.fill(0);
    try {
      this.pageSource!(page, dst);
    } catch (e) {
      const err = new LazyPageError(page, e);
      this.lazyFailure ??= err;
      throw err;
    }
    this.arrived(page, touch);
  }

  /**
   * Put RAM page `page` in place now if it is still absent (`data` null: a zero page), as if its
   * source had given it: for a source that receives pages it was not asked for (post-copy's
   * stream), even from inside its own call for another page. Returns whether it was absent.
   */
  supply(page: number, data: Uint8Array | null): boolean {
    if (!this.pageSource || !Number.isInteger(page) || page < 0 || page >= this.ramSize / 4096 || !this.pageIsAbsent(page)) return false;
    if (data && data.length !== 4096) throw new RangeError(`a page is 4096 bytes, not ${data.length}`);
    const at = L.RAM_HOST + page * 4096;
    if (data) this.u8.set(data, at);
    else this.u8.fill(0, at, at + 4096);
    this.arrived(page, false);
    return true;
  }

  private arrived(page: number, touch: boolean): void {
    this.i32[(this.vmm.absent >> 2) + (page >>> 5)] &= ~(1 << (page & 31));
    this.markUsed(page);
    if (touch && this.touched.length < TOUCH_RECORD_PAGES) this.touched.push(page);
    if (--this.absentPages === 0) this.endLazy();
  }

  // The last page is in: populate stops looking at the bitmap, and the source can be freed.
  private endLazy(): void {
    this.view.setInt32(L.VM_LAZY, 0, true);
    this.pageSource = null;
  }

  // ---- memory virtualization ----
  pagingStats(): PagingStats {
    const out = {} as PagingStats;
    for (const [name, off] of PAGING_STAT_FIELDS) out[name] = Number(this.view.getBigUint64(off, true));
    return out;
  }
  /**
   * Dirty logging: on, every RAM page is write-protected and its first write logged (host
   * writes through phys/ramView are logged too); off, it costs nothing.
   */
  setDirtyLog(on: boolean): void {
    this.exports.dirtyLogEnable(on ? 1 : 0);
  }
  get dirtyLogging(): boolean {
    return this.view.getInt32(L.VM_DIRTY_ON, true) !== 0;
  }
  /**
   * The pages written since logging started or since the last call, as a bitmap (bit i = RAM
   * page i), taken and cleared in one step; those pages are write-protected again.
   */
  syncDirtyLog(): { pages: number; bitmap: Uint32Array } {
    const pages = this.exports.dirtyLogSync();
    const words = Math.ceil(this.ramSize / 4096 / 32);
    return { pages, bitmap: new Uint32Array(this.u8.slice(this.vmm.dirtySync, this.vmm.dirtySync + words * 4).buffer) };
  }
  /** Note that RAM page `ramPage` may hold something (written into `ram` directly: a restore, a migration coming in). */
  markUsed(ramPage: number): void {
    this.i32[(this.vmm.used >> 2) + (ramPage >>> 5)] |= 1 << (ramPage & 31);
  }
  /** The pages that may hold something other than zeros (bit i: RAM page i), live; all others are zero. */
  usedPages(): Uint32Array {
    return new Uint32Array(this.memory.buffer, this.vmm.used, Math.ceil(this.ramSize / 4096 / 32));
  }
  /** Whether RAM page `ramPage` (an index from guest-physical RAM_GPA) is all zero, as it is now (absent pages are not fetched). */
  ramPageIsZero(ramPage: number): boolean {
    return this.exports.pageIsZero(L.RAM_HOST + ramPage * 4096) !== 0;
  }
  /** Mark [gpa, gpa+size) as host device space (accesses exit instead of faulting). */
  mapDevice(gpa: number, size: number): void {
    if (gpa + size > Number(L.RAM_GPA)) throw new Error(`device window 0x${gpa.toString(16)} overlaps RAM`);
    for (let page = Math.floor(gpa / 4096); page < Math.ceil((gpa + size) / 4096); page++) {
      this.u8[L.MMIO_MAP + (page >> 3)] |= 1 << (page & 7);
    }
  }
  /** Store a doubleword in guest RAM (HTIF mailboxes); throws outside RAM. */
  writePhys64(gpa: number, value: bigint): void {
    const bytes = this.ramView(gpa, 8);
    if (!bytes) throw new Error(`guest-physical 0x${gpa.toString(16)} is not RAM`);
    new DataView(bytes.buffer, bytes.byteOffset, 8).setBigUint64(0, value, true);
  }
  fromhost(): number {
    return Number(this.view.getBigUint64(L.VM_FROMHOST, true));
  }
  setTohost(tohost: number, fromhost: number): void {
    this.view.setBigUint64(L.VM_TOHOST, BigInt(tohost), true);
    this.view.setBigUint64(L.VM_FROMHOST, BigInt(fromhost), true);
  }
  /** Set the guest's clock (mtime) to `ticks`: it runs on from there, or stays there when `frozen`. */
  setMtime(ticks: bigint, frozen = false): void {
    const flags = this.view.getInt32(L.VM_FLAGS, true);
    this.view.setInt32(L.VM_FLAGS, frozen ? flags | L.VMF_MTIME_FROZEN : flags & ~L.VMF_MTIME_FROZEN, true);
    if (frozen) this.view.setBigUint64(L.VM_MTIME_FROZEN, BigInt.asUintN(64, ticks), true);
    else this.view.setBigInt64(L.VM_MTIME_OFFSET, BigInt.asIntN(64, ticks - BigInt(Math.floor(this.clock()))), true);
  }
  setFlags(flags: number): void {
    this.view.setInt32(L.VM_FLAGS, flags, true);
  }
  totalInstret(): number {
    return Number(this.view.getBigInt64(L.VM_INSTRET_TOTAL, true));
  }
}

/** Compile the core from its bytes (build/core.wasm). */
export function compileCore(bytes: Uint8Array): WebAssembly.Module {
  return new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>);
}
