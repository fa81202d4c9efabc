// The core's exports: what a VMM needs to drive harts (like the KVM vCPU ioctls). All state is
// in the VM's memory at layout.ts offsets; these functions only act on it.

import {
  H_PRIV, H_PC, H_MISA, H_MSTATUS, H_HARTID, H_EXIT_LOAD_RD, H_MTIMECMP, H_STIMECMP, H_MENVCFG,
  H_MIE, H_WFI, ROM_GPA, RAM_HOST, H_TLB, H_TLB_LIVE, TLB_REGIMES, TLB_TABLE_BYTES,
} from "./layout";
import { selectHart, actAsMachine, hartBase, flushTlbAll, H, mtime, wakeupPending, MENVCFG_STCE, IRQ_MTI, IRQ_STI, PRV_M } from "./hart";
import { csrAccess, csrIllegal, MISA_VALUE, MSTATUS_RESET, CSR_RW } from "./csr";
import { dcFlushAll, dcInvalidate, dcSelect } from "./dcache";
import { p2mReset, noteDirty, frameToGpa, markUsed } from "./p2m";
import { shadowInit, shadowHostWrite } from "./shadow";
import { setDebugAccess, debugChanged as triggersDebugChanged } from "./trigger";
import { debugTranslate as translateForDebugger } from "./mmu";
import { completeMmioLoad } from "./cpu";
export { run, jitLoad, jitStore, jitExec, jitChain } from "./cpu";
export { dirtyLogEnable, dirtyLogSync } from "./p2m";

/**
 * The host is about to write [offset, offset + len) of the VM's memory (DMA, image loading):
 * drop decoded code of those pages, log them as dirty, and stop shadowing page tables there.
 */
export function hostWrite(offset: usize, len: usize): void {
  if (len == 0) return;
  for (let p = offset & ~<usize>0xfff; p < offset + len; p += 4096) {
    dcInvalidate(p);
    if (p < <usize>RAM_HOST) continue;
    const gpa = frameToGpa(p);
    markUsed(<u32>((p - <usize>RAM_HOST) >> 12));
    noteDirty(gpa);
    shadowHostWrite(gpa);
  }
}

/** Empty the P2M and the shadow MMU (creation, reboot): every page is populated anew. */
export function resetMemoryMap(): void {
  p2mReset();
  shadowInit();
}

/** Drop all decoded code, every thread's (reset, restore: no hart runs). */
export function flushCode(): void {
  dcFlushAll();
}

/**
 * This thread runs harts from decoded-code cache k (layout.ts DC_CACHES), emptied now: its
 * markers may name the table of a Core that used it before.
 */
export function useCodeCache(k: i32): void {
  dcSelect(k);
}

/**
 * Put hart `hart` in its reset state: M-mode at the boot ROM, everything else zero. `fresh`:
 * the hart's block is still all zeros (a new memory), so only the first entry of each TLB table
 * needs emptying: a zero tag can only equal the tag of an address in page 0, which indexes
 * entry 0. The rest of the tables' pages stay untouched until used (each page touched is a
 * page fault for the host, on the way to a VM that runs).
 */
export function resetHart(hart: i32, hartid: i32, fresh: bool): void {
  const base = hartBase(hart);
  memory.fill(base, 0, 0x1000);
  if (fresh) {
    for (let t = 0; t < TLB_REGIMES * 3; t++) store<i64>(base + H_TLB + <usize>t * TLB_TABLE_BYTES, -1);
  } else store<i32>(base + H_TLB_LIVE, (1 << TLB_REGIMES) - 1); // the whole tables, below
  store<i32>(base + H_PRIV, PRV_M);
  store<u64>(base + H_PC, <u64>ROM_GPA);
  store<u64>(base + H_MISA, MISA_VALUE);
  store<u64>(base + H_MSTATUS, MSTATUS_RESET);
  store<i32>(base + H_HARTID, hartid);
  store<i32>(base + H_EXIT_LOAD_RD, -1);
  store<i64>(base + H_MTIMECMP, -1);
  store<i64>(base + H_STIMECMP, -1);
  selectHart(hart);
  flushTlbAll();
}

/** Drop every TLB entry of `hart` (after the host changed its memory map or state). */
export function flushTlb(hart: i32): void {
  selectHart(hart);
  flushTlbAll();
}

/** Read a CSR as M-mode would (for the host and debuggers). Returns 0 for unknown CSRs. */
export function csrRead(hart: i32, num: i32): u64 {
  // As M-mode, without writing the hart's privilege in its block: another thread may be running it.
  selectHart(hart);
  actAsMachine();
  const v = csrAccess(<u32>num, CSR_RW, 0, false);
  selectHart(hart);
  return csrIllegal ? 0 : v;
}

/** Write a CSR as M-mode would. Returns false if the CSR does not exist or is read-only. */
export function csrWrite(hart: i32, num: i32, value: u64): bool {
  selectHart(hart);
  actAsMachine();
  csrAccess(<u32>num, CSR_RW, value, true);
  selectHart(hart);
  return !csrIllegal;
}

/** Write a CSR as the host's debugger (debug mode): the trigger registers' dmode and action 1 are writable. */
export function debugCsrWrite(hart: i32, num: i32, value: u64): bool {
  setDebugAccess(true);
  const ok = csrWrite(hart, num, value);
  setDebugAccess(false);
  return ok;
}

/** The host changed `hart`'s breakpoint list (H_DEBUG_BP) or debug flags (H_DEBUG). */
export function debugChanged(hart: i32): void {
  selectHart(hart);
  triggersDebugChanged();
}

/** The guest-physical address of `va` as `hart`'s loads see it now, changing nothing; -1 if unmapped. */
export function debugTranslate(hart: i32, va: u64): i64 {
  selectHart(hart);
  return translateForDebugger(va);
}

/** Put a pending MMIO load's value in its register now (a debugger looks at the registers between runs). */
export function completePendingLoad(hart: i32): void {
  selectHart(hart);
  completeMmioLoad();
}

/**
 * Whether the 4 KiB at host offset `p` are all zero: saving memory skips such pages, and a
 * scan of guest RAM here is an order of magnitude faster than from JavaScript.
 */
export function pageIsZero(p: usize): bool {
  for (let i: usize = 0; i < 4096; i += 64) {
    const a = load<u64>(p + i) | load<u64>(p + i + 8) | load<u64>(p + i + 16) | load<u64>(p + i + 24) |
      load<u64>(p + i + 32) | load<u64>(p + i + 40) | load<u64>(p + i + 48) | load<u64>(p + i + 56);
    if (a != 0) return false;
  }
  return true;
}

/** The current mtime (timebase ticks). */
export function mtimeNow(): f64 {
  return <f64>mtime();
}

/**
 * The mtime at which a timer interrupt that could wake `hart` becomes pending, or +Infinity.
 * A halted hart can sleep until then unless the host raises something else.
 */
export function nextTimerDeadline(hart: i32): f64 {
  const base = hartBase(hart);
  const mie = load<u64>(base + H_MIE);
  let t: u64 = u64.MAX_VALUE;
  if ((mie & IRQ_MTI) != 0) t = load<u64>(base + H_MTIMECMP);
  if ((mie & IRQ_STI) != 0 && (load<u64>(base + H_MENVCFG) & MENVCFG_STCE) != 0) {
    const s = load<u64>(base + H_STIMECMP);
    if (s < t) t = s;
  }
  return t == u64.MAX_VALUE ? Infinity : <f64>t;
}

/** Whether `hart` can make progress: not halted, or halted with a wake-up pending. */
export function hartRunnable(hart: i32): bool {
  const base = hartBase(hart);
  return load<i32>(base + H_WFI) == 0 || wakeupPending(base, mtime());
}
