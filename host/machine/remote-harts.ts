/**
 * Harts of one VM running on several pCPU threads at once (as QEMU's multi-threaded TCG).
 *
 * The VM's home pCPU keeps its devices, its SBI and every decision about its harts; it lends
 * some harts to one other pCPU (the borrower), which runs them on a Core of its own over the
 * same VM memory, with its own decoded-code cache. Only what needs the home crosses over: an
 * exit (MMIO, SBI, HTIF, a debugger's stop) is handed back through the hart block and the home
 * handles it as if the hart had run there; the hart goes out again once it may run.
 *
 * Each lent hart's H_OWNER word says who may touch it:
 *   HOME     the home thread: it handles an exit handed back (H_OWNER_EXIT), keeps a hart that
 *            may not run (stopped or suspended by the SBI, held by a debugger), or has gathered
 *            the harts (a pause, a snapshot, a reset: every hart local again)
 *   PARKED   lent and not running: the borrower may take it (PARKED → RUNNING), the home may take
 *            it back (PARKED → HOME), each with a compare-and-swap
 *   RUNNING  the borrower is running it; it alone leaves this state
 *   REVOKED  the loan is over: the borrower lets it go
 * Whoever changes the word kicks the hart (Core.kick), which wakes a thread asleep on its
 * H_KICK word; interrupts kick it too, from any thread. What crosses is ordered by the
 * sequentially consistent atomics on H_OWNER.
 */
import type { Core, Paging } from "../core/core";
import { TranslationTier, type JitMode } from "../jit/tier";
import type { JitCompiler } from "../jit/compiler";
import * as L from "../core/layout";

export const OWNER_HOME = 0;
export const OWNER_PARKED = 1;
export const OWNER_RUNNING = 2;
export const OWNER_REVOKED = 3;
/** The exit a borrower hands back when run() threw on its thread (no EXIT_* of the core's). */
export const EXIT_REMOTE_FAILED = 100;

/** Longest gather() waits for a borrower to give a running hart back (ms): it answers within a slice. */
const GATHER_TIMEOUT_MS = 5000;
/** Work a borrowed hart runs before the next borrowed hart's turn (as VirtMachine's HART_QUANTUM). */
const QUANTUM = 50_000;
/** With jit "all", translate after every this much work (as VirtMachine's). */
const TRANSLATE_ALL_QUANTUM = 2000;

/** What a borrower needs to run some harts of a VM homed elsewhere. */
export interface HartLoan {
  vm: string;
  memory: WebAssembly.Memory;
  ramSize: number;
  /** Harts of the VM, and those lent. */
  harts: number;
  lent: number[];
  /** The harts the home runs: asked for attention when an exit is handed back, so a running one answers within a slice. */
  local: number[];
  paging: Paging;
  jit: JitMode;
  /** The VM's weight, which its harts here get too (a VM with a cap is never spread). */
  cpu: { weight: number };
}

/** Words of a hart block, as Int32Array indexes. */
function words(core: Core, h: number) {
  const base = core.hartBase(h);
  return { owner: (base + L.H_OWNER) >> 2, exit: (base + L.H_OWNER_EXIT) >> 2 };
}

/** The home's side of a loan (VirtMachine holds one while some of its harts run elsewhere). */
export class LentHarts {
  private readonly isLent: boolean[];
  /** Why every hart is home now (a pause, a snapshot, a migration, a reset...): they go out again once none is left. */
  private readonly holds = new Set<string>();
  /** service() or gather() rounds under way: an exit handled there must not start another service() round. */
  private rounds = 0;

  constructor(private readonly core: Core, readonly harts: readonly number[]) {
    this.isLent = Array.from({ length: core.harts }, (_, h) => harts.includes(h));
    for (const h of harts) {
      const w = words(core, h);
      Atomics.store(core.i32, w.exit, 0);
      Atomics.store(core.i32, w.owner, OWNER_HOME); // handed out by the first service()
    }
  }

  /** Whether hart h is lent (and not gathered): the home does not run it. */
  has(h: number): boolean {
    return this.holds.size === 0 && this.isLent[h] === true;
  }

  /** Whether service() or gather() is handling an exit now. */
  get servicing(): boolean {
    return this.rounds > 0;
  }

  /** Whether hart h is lent and with the borrower now (its timer is the borrower's to watch). */
  isAway(h: number): boolean {
    return this.has(h) && Atomics.load(this.core.i32, words(this.core, h).owner) !== OWNER_HOME;
  }

  /**
   * Handle the exits handed back (`handle` as VirtMachine.handleExit) and hand out again every
   * lent hart the home has that `canRun`. Returns whether an exit was handled.
   */
  service(handle: (h: number, reason: number) => boolean, canRun: (h: number) => boolean): boolean {
    if (this.holds.size || this.rounds) return false;
    const i32 = this.core.i32;
    let handled = false;
    this.rounds++;
    try {
      for (const h of this.harts) {
        const w = words(this.core, h);
        if (Atomics.load(i32, w.owner) !== OWNER_HOME) continue;
        const reason = Atomics.exchange(i32, w.exit, 0);
        if (reason !== 0) {
          handle(h, reason);
          handled = true;
        }
        if (this.holds.size === 0 && canRun(h) && Atomics.compareExchange(i32, w.owner, OWNER_HOME, OWNER_PARKED) === OWNER_HOME) this.core.kick(h);
      }
    } finally {
      this.rounds--;
    }
    return handled;
  }

  /** Whether service() has something to do: an exit handed back, or a hart to hand out. */
  pending(canRun: (h: number) => boolean): boolean {
    if (this.holds.size) return false;
    const i32 = this.core.i32;
    for (const h of this.harts) {
      const w = words(this.core, h);
      if (Atomics.load(i32, w.owner) === OWNER_HOME && (Atomics.load(i32, w.exit) !== 0 || canRun(h))) return true;
    }
    return false;
  }

  /**
   * Take every lent hart home and run them here until scatter(): a running one is asked to
   * stop at its next slice boundary and waited for; exits handed back are handled, so each hart
   * is between two instructions, as a local one is between steps.
   */
  gather(why: string, handle: (h: number, reason: number) => boolean): void {
    const first = this.holds.size === 0;
    this.holds.add(why);
    if (!first) return; // home already
    const i32 = this.core.i32;
    this.rounds++;
    try {
      for (const h of this.harts) {
        const w = words(this.core, h);
        const deadline = performance.now() + GATHER_TIMEOUT_MS;
        for (;;) {
          const st = Atomics.load(i32, w.owner);
          if (st === OWNER_HOME || st === OWNER_REVOKED) break;
          if (st === OWNER_PARKED) {
            if (Atomics.compareExchange(i32, w.owner, OWNER_PARKED, OWNER_HOME) === OWNER_PARKED) break;
            continue;
          }
          this.core.requestAttention(h);
          if (performance.now() > deadline) throw new Error(`hart ${h} runs on another pCPU whose thread does not answer`);
          Atomics.wait(i32, w.owner, OWNER_RUNNING, 1);
        }
        this.core.clearAttention(h); // asked for above, or by an earlier gather the hart parked before seeing
        const reason = Atomics.exchange(i32, w.exit, 0);
        if (reason !== 0) handle(h, reason);
      }
    } catch (e) {
      // Not all home: the harts that are go out again as they can, the others were never taken.
      this.holds.delete(why);
      throw e;
    } finally {
      this.rounds--;
    }
  }

  /** One reason to keep the harts home is gone: with none left, they go out again (as they can run). */
  scatter(why: string): void {
    this.holds.delete(why);
  }

  get isGathered(): boolean {
    return this.holds.size > 0;
  }

  /** End the loan: harts gathered for good, the borrower told to let them go. */
  revoke(handle: (h: number, reason: number) => boolean): void {
    this.gather("revoked", handle);
    for (const h of this.harts) {
      Atomics.store(this.core.i32, words(this.core, h).owner, OWNER_REVOKED);
      this.core.kick(h);
    }
  }

  /**
   * The borrower's thread died: whatever it held comes back as it is, exits it had handed back
   * handled; false if a hart was in the middle of a run (half-way: it must not run again).
   */
  reclaim(handle: (h: number, reason: number) => boolean): boolean {
    let clean = true;
    this.holds.add("reclaimed");
    for (const h of this.harts) {
      const w = words(this.core, h);
      const was = Atomics.exchange(this.core.i32, w.owner, OWNER_REVOKED);
      const reason = Atomics.exchange(this.core.i32, w.exit, 0);
      if (was === OWNER_RUNNING) clean = false;
      else if (reason !== 0) handle(h, reason);
    }
    return clean;
  }
}

/** The borrower's side: runs the lent harts of a VM on this thread's Core. */
export class BorrowedHarts {
  readonly tier: TranslationTier | null;
  private readonly left: number[];

  constructor(readonly loan: HartLoan, readonly core: Core, compiler?: JitCompiler) {
    this.tier = loan.jit !== "off" ? new TranslationTier(core, loan.jit, loan.jit === "on" ? compiler : undefined) : null;
    this.left = new Array(loan.harts).fill(0);
  }

  /** Whether the home has ended the loan (every lent hart revoked). */
  get revoked(): boolean {
    return this.loan.lent.every((h) => Atomics.load(this.core.i32, words(this.core, h).owner) === OWNER_REVOKED);
  }

  /**
   * run() threw here (an emulation error): the harts go back to their home with EXIT_REMOTE_FAILED
   * (half-way through an instruction, they must not run again), which fails the VM.
   */
  fail(why: string): void {
    this.failure = why;
    for (const h of this.loan.lent) {
      const w = words(this.core, h);
      if (Atomics.load(this.core.i32, w.owner) === OWNER_RUNNING) this.handBack(h, EXIT_REMOTE_FAILED);
    }
  }

  // Hart h's exit is the home's: handed back, and the home's running harts asked to look.
  private handBack(h: number, reason: number): void {
    const w = words(this.core, h);
    Atomics.store(this.core.i32, w.exit, reason);
    Atomics.store(this.core.i32, w.owner, OWNER_HOME);
    this.core.kick(h);
    for (const l of this.loan.local) this.core.requestAttention(l);
  }

  /** What fail() was told, if it was. */
  failure: string | null = null;

  /** Whether a lent hart is here and can run. */
  runnable(): boolean {
    return this.loan.lent.some((h) => Atomics.load(this.core.i32, words(this.core, h).owner) === OWNER_PARKED && this.core.runnable(h));
  }

  /** Seconds until the timer of a hart sleeping here fires (Infinity: only a kick wakes them). */
  secondsUntilWake(): number {
    let s = Infinity;
    for (const h of this.loan.lent) {
      if (Atomics.load(this.core.i32, words(this.core, h).owner) === OWNER_PARKED) s = Math.min(s, this.core.secondsUntilTimer(h));
    }
    return s;
  }

  /** The words to sleep on: something happened to a lent hart. */
  wakeWords(): { i32: Int32Array; index: number }[] {
    return this.loan.lent.map((h) => this.core.kickWord(h));
  }

  /**
   * Run every lent hart that is here and can run for up to `budget` work each, in turns; exits
   * go home. Returns the work done.
   */
  step(budget: number): number {
    if (this.failure !== null) return 0; // this thread's Core threw: nothing more runs on it
    const { core, loan, left } = this;
    const i32 = core.i32;
    const all = this.tier?.mode === "all";
    let work = 0;
    for (const h of loan.lent) left[h] = budget;
    for (let more = true; more; ) {
      more = false;
      for (const h of loan.lent) {
        if (left[h]! <= 0) continue;
        const w = words(core, h);
        if (Atomics.compareExchange(i32, w.owner, OWNER_PARKED, OWNER_RUNNING) !== OWNER_PARKED) {
          left[h] = 0;
          continue;
        }
        let reason = L.EXIT_HALT;
        if (core.runnable(h)) {
          // Turns only when several harts share this thread: one runs its whole budget at once.
          const quantum = all ? TRANSLATE_ALL_QUANTUM : loan.lent.length > 1 ? QUANTUM : Infinity;
          reason = core.run(h, Math.min(left[h]!, quantum));
          const did = core.executed(h) + (all ? this.tier!.update() : 0);
          left[h]! -= did;
          work += did;
        }
        if (reason === L.EXIT_BUDGET || reason === L.EXIT_HALT) {
          // Its own to go on with, or asleep in WFI here until a kick or its timer.
          Atomics.store(i32, w.owner, OWNER_PARKED);
          if (reason === L.EXIT_BUDGET && left[h]! > 0) more = true;
          else left[h] = 0;
          continue;
        }
        this.handBack(h, reason);
        left[h] = 0;
      }
    }
    if (this.tier && !all) work += this.tier.update();
    return work;
  }
}
