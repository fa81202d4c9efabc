// The current hart: where its state block is, and the values derived from its CSRs that the
// hot paths need (translation regimes and TLB table addresses). Everything architectural lives
// in the hart block at the offsets of layout.ts, so a hart can be saved, restored or moved by
// copying memory; the globals here are caches rebuilt by selectHart() and refreshModes().

import {
  HART_BASE, HART_STRIDE, H_X, H_F, H_PRIV, H_MSTATUS, H_SATP, H_TLB, H_TLB_LIVE, TLB_TABLE_BYTES,
  H_TLB_CTX, H_TLB_CLOCK, H_TLB_CTX_SATP, H_TLB_CTX_USE, H_TLB_CTX_INIT, TLB_CTXS, TLB_CTX_AREA, TLB_CTX_HART_STRIDE, TLB_CTX_BYTES,
  TLB_ENTRIES, TLB_REGIMES, TLB_FETCH, TLB_WRITE, VM_NHARTS, VM_MTIME_OFFSET, VM_FLAGS,
  VMF_MTIME_FROZEN, VM_MTIME_FROZEN, H_MIP, H_MIP_EXT, H_TLB_SUPER_LO, H_TLB_SUPER_HI, H_MTIMECMP, H_STIMECMP, H_MENVCFG, H_MIE, H_KICK,
} from "./layout";

// Privilege levels.
export const PRV_U: i32 = 0;
export const PRV_S: i32 = 1;
export const PRV_M: i32 = 3;

// mstatus fields.
export const MS_SIE: u64 = 1 << 1;
export const MS_MIE: u64 = 1 << 3;
export const MS_SPIE: u64 = 1 << 5;
export const MS_MPIE: u64 = 1 << 7;
export const MS_SPP: u64 = 1 << 8;
export const MS_MPP_SHIFT: u64 = 11;
export const MS_MPP: u64 = 3 << 11;
export const MS_FS: u64 = 3 << 13;
export const MS_MPRV: u64 = 1 << 17;
export const MS_SUM: u64 = 1 << 18;
export const MS_MXR: u64 = 1 << 19;
export const MS_TVM: u64 = 1 << 20;
export const MS_TW: u64 = 1 << 21;
export const MS_TSR: u64 = 1 << 22;
export const MS_UXL: u64 = 3 << 32;
export const MS_SXL: u64 = 3 << 34;
export const MS_SD: u64 = 1 << 63;

// Interrupt bits (mip/mie).
export const IRQ_SSI: u64 = 1 << 1;
export const IRQ_MSI: u64 = 1 << 3;
export const IRQ_STI: u64 = 1 << 5;
export const IRQ_MTI: u64 = 1 << 7;
export const IRQ_SEI: u64 = 1 << 9;
export const IRQ_MEI: u64 = 1 << 11;

export const MENVCFG_STCE: u64 = 1 << 63;

// ---- work ----

// Work done beyond the instructions themselves, in instructions' worth of host time: bulk
// operations (TLB flushes, decoded-code invalidation, shadow-table upkeep) charge what they
// cost, so a guest that makes every instruction expensive spends its run() budget as fast as
// it spends the host's time. run() adds it to the work its budget pays for.
export let charged: i32 = 0;
@inline export function charge(units: i32): void {
  charged += units;
}
export function takeCharged(): i32 {
  const c = charged;
  charged = 0;
  return c;
}
/** memory.fill, charged one unit per 64 bytes. */
@inline export function fillCharged(dst: usize, value: u8, bytes: usize): void {
  memory.fill(dst, value, bytes);
  charged += <i32>(bytes >> 6);
}

// Translation regimes (TLB table sets).
export const REGIME_U: i32 = 0;
export const REGIME_S: i32 = 1;
export const REGIME_S_SUM: i32 = 2;
export const REGIME_M: i32 = 3;

// Base address of the current hart's block.
export let H: usize = HART_BASE;
export let hartIndex: i32 = 0;
// Current privilege (copy of H_PRIV).
export let priv: i32 = PRV_M;
// Regime of data accesses (honours MPRV) and of instruction fetch.
export let dataRegime: i32 = REGIME_M;
export let fetchRegime: i32 = REGIME_M;
// Addresses of the TLB tables in use.
export let tlbRead: usize = 0;
export let tlbWrite: usize = 0;
export let tlbFetch: usize = 0;
// satp translation is on for the data regime / fetch regime.
export let dataPaged: bool = false;
export let fetchPaged: bool = false;

// Host clock, in timebase ticks (10 MHz), supplied by the host.
// @ts-ignore: decorator
@external("env", "hostTicks")
declare function hostTicks(): f64;

@inline export function xreg(i: u32): u64 {
  return load<u64>(H + H_X + (<usize>i << 3));
}
@inline export function setXreg(i: u32, v: u64): void {
  store<u64>(H + H_X + (<usize>i << 3), v);
}
@inline export function freg(i: u32): u64 {
  return load<u64>(H + H_F + (<usize>i << 3));
}
@inline export function setFreg(i: u32, v: u64): void {
  store<u64>(H + H_F + (<usize>i << 3), v);
}
@inline export function csr64(off: i32): u64 {
  return load<u64>(H + <usize>off);
}
@inline export function setCsr64(off: i32, v: u64): void {
  store<u64>(H + <usize>off, v);
}

export function hartBase(hart: i32): usize {
  return HART_BASE + <usize>hart * HART_STRIDE;
}

export function nharts(): i32 {
  return load<i32>(VM_NHARTS);
}

/** Make `hart` current and rebuild the caches from its block. */
export function selectHart(hart: i32): void {
  hartIndex = hart;
  H = hartBase(hart);
  priv = load<i32>(H + H_PRIV);
  tlbCtx = load<i32>(H + H_TLB_CTX);
  refreshModes();
}

/** Act as M-mode for a host access to the selected hart's CSRs, its block unchanged (selectHart() ends it). */
export function actAsMachine(): void {
  priv = PRV_M;
  refreshModes();
}

export function setPriv(p: i32): void {
  priv = p;
  store<i32>(H + H_PRIV, p);
  refreshModes();
}

/** Recompute the translation regimes after a change of privilege, mstatus or satp. */
export function refreshModes(): void {
  const ms = csr64(H_MSTATUS);
  const satpOn = (csr64(H_SATP) >> 60) != 0;
  let dp = priv;
  if (priv == PRV_M && (ms & MS_MPRV) != 0) dp = <i32>((ms & MS_MPP) >> MS_MPP_SHIFT);
  dataRegime = regimeOf(dp, (ms & MS_SUM) != 0);
  fetchRegime = regimeOf(priv, false);
  dataPaged = dp != PRV_M && satpOn;
  fetchPaged = priv != PRV_M && satpOn;
  tlbRead = tlbTable(dataRegime, 0);
  tlbWrite = tlbTable(dataRegime, TLB_WRITE);
  tlbFetch = tlbTable(fetchRegime, TLB_FETCH);
}

@inline function regimeOf(p: i32, sum: bool): i32 {
  if (p == PRV_M) return REGIME_M;
  if (p == PRV_U) return REGIME_U;
  return sum ? REGIME_S_SUM : REGIME_S;
}

// ---- TLB contexts (layout.ts TLB_CTXS) ----

// The current hart's TLB context (a copy of H_TLB_CTX).
export let tlbCtx: i32 = 0;

/** Table `acc` of `regime` in TLB context `ctx` of hart `hart` (block at `base`). */
@inline export function tlbTableOf(hart: i32, base: usize, ctx: i32, regime: i32, acc: i32): usize {
  if (ctx == 0 || regime == REGIME_M) return base + H_TLB + <usize>(regime * 3 + acc) * TLB_TABLE_BYTES;
  return <usize>TLB_CTX_AREA + <usize>hart * TLB_CTX_HART_STRIDE + <usize>(ctx - 1) * TLB_CTX_BYTES + <usize>(regime * 3 + acc) * TLB_TABLE_BYTES;
}

@inline export function tlbTable(regime: i32, acc: i32): usize {
  return tlbTableOf(hartIndex, H, tlbCtx, regime, acc);
}

// The key of "no translation" (satp.MODE = Bare, whatever its other fields): S and U accesses
// still go through their regimes' tables, which then hold identity entries. satp never holds a
// MODE of 15, so no address space has this key.
const BARE_KEY: u64 = <u64>15 << 60;

/**
 * satp was written: translate through the TLB context that caches its address space, or through
 * the least recently used one, emptied. Nothing else is flushed: as with a TLB tagged by ASID,
 * the guest fences when it changes the tables of an address space.
 */
export function useTlbContext(satp: u64): void {
  const key = (satp >> 60) == 0 ? BARE_KEY : satp;
  if (load<u64>(H + H_TLB_CTX_SATP + (<usize>tlbCtx << 3)) == key) return; // the same address space
  const clock = load<u32>(H + H_TLB_CLOCK) + 1;
  store<u32>(H + H_TLB_CLOCK, clock);
  let c = 0;
  while (c < TLB_CTXS && load<u64>(H + H_TLB_CTX_SATP + (<usize>c << 3)) != key) c++;
  if (c == TLB_CTXS) {
    // The one switched to longest ago (ages in wrapping arithmetic: the clock wraps).
    c = 0;
    for (let k = 1; k < TLB_CTXS; k++) {
      if (clock - load<u32>(H + H_TLB_CTX_USE + (<usize>k << 2)) > clock - load<u32>(H + H_TLB_CTX_USE + (<usize>c << 2))) c = k;
    }
    emptyTlbContext(c);
    store<u64>(H + H_TLB_CTX_SATP + (<usize>c << 3), key);
  }
  store<u32>(H + H_TLB_CTX_USE + (<usize>c << 2), clock);
  tlbCtx = c;
  store<i32>(H + H_TLB_CTX, c);
  tlbFlushed = true; // another address space: the run loop must look its code page up again
}

// Empty context c's tables for a new address space. A context not used since the hart's reset
// may hold anything (memory from before the reset, or zeros, which match page 0): all of it.
function emptyTlbContext(c: i32): void {
  const init = load<i32>(H + H_TLB_CTX_INIT);
  if (c != 0 && (init & (1 << c)) == 0) { // context 0's tables are emptied at reset (resetHart)
    fillCharged(tlbTableOf(hartIndex, H, c, 0, 0), 0xff, <usize>9 * TLB_TABLE_BYTES);
    store<i32>(H + H_TLB_CTX_INIT, init | (1 << c));
    store<i32>(H + H_TLB_LIVE, load<i32>(H + H_TLB_LIVE) & ~(PAGED_REGIMES << (c * 4)));
  } else {
    store<i32>(H + H_TLB_LIVE, flushContext(c, PAGED_REGIMES, load<i32>(H + H_TLB_LIVE)));
  }
}

// Empty the tables of the regimes in `mask` that context c may hold entries in; returns `live`
// (H_TLB_LIVE) without them.
function flushContext(c: i32, mask: i32, live: i32): i32 {
  for (let r = 0; r < TLB_REGIMES; r++) {
    const bit = 1 << (c * 4 + r);
    if ((mask & (1 << r)) != 0 && (live & bit) != 0) {
      // A tag of -1 never equals a page-aligned address, so 0xff bytes mean "empty".
      fillCharged(tlbTableOf(hartIndex, H, c, r, 0), 0xff, <usize>3 * TLB_TABLE_BYTES);
      live &= ~bit;
    }
  }
  return live;
}

/** sfence.vma x0, asid: drop the address spaces with that ASID. */
export function flushTlbAsid(asid: u64): void {
  tlbFlushed = true;
  let live = load<i32>(H + H_TLB_LIVE);
  for (let c = 0; c < TLB_CTXS; c++) {
    const satp = load<u64>(H + H_TLB_CTX_SATP + (<usize>c << 3));
    if (satp != 0 && ((satp >> 44) & 0xffff) == (asid & 0xffff)) live = flushContext(c, PAGED_REGIMES, live);
  }
  store<i32>(H + H_TLB_LIVE, live);
}

/** Note that the paged TLBs may now hold pages of the superpage of `va` at `level` (1 = 2 MiB). */
export function noteSuperpage(va: u64, level: i32): void {
  const mask = (<u64>1 << (12 + 9 * <u64>level)) - 1;
  const lo = va & ~mask, hi = va | mask;
  if (lo < load<u64>(H + H_TLB_SUPER_LO)) store<u64>(H + H_TLB_SUPER_LO, lo);
  if (hi > load<u64>(H + H_TLB_SUPER_HI)) store<u64>(H + H_TLB_SUPER_HI, hi);
}

// Set by every flush: the run loop must translate its current code page again.
export let tlbFlushed: bool = false;
export function clearTlbFlushed(): void {
  tlbFlushed = false;
}

/**
 * Invalidate every entry of the given regimes (bit mask of 1 << REGIME_*). The tables of a
 * regime with no entry since its last flush (H_TLB_LIVE) are not written again.
 */
export function flushTlbRegimes(mask: i32): void {
  tlbFlushed = true;
  let live = load<i32>(H + H_TLB_LIVE);
  for (let c = 0; c < TLB_CTXS; c++) live = flushContext(c, mask, live);
  store<i32>(H + H_TLB_LIVE, live);
  if ((mask & PAGED_REGIMES) == PAGED_REGIMES) {
    store<u64>(H + H_TLB_SUPER_LO, u64.MAX_VALUE);
    store<u64>(H + H_TLB_SUPER_HI, 0);
  }
}

export const PAGED_REGIMES: i32 = (1 << REGIME_U) | (1 << REGIME_S) | (1 << REGIME_S_SUM);

export function flushTlbAll(): void {
  flushTlbRegimes(0xf);
}

/** sfence.vma with an address: drop that page from the paged regimes. */
export function flushTlbPage(va: u64): void {
  tlbFlushed = true;
  if (va >= load<u64>(H + H_TLB_SUPER_LO) && va <= load<u64>(H + H_TLB_SUPER_HI)) {
    flushTlbRegimes(PAGED_REGIMES);
    return;
  }
  const idx = <usize>((va >> 12) & <u64>(TLB_ENTRIES - 1)) << 4;
  const live = load<i32>(H + H_TLB_LIVE);
  for (let c = 0; c < TLB_CTXS; c++) {
    for (let r = 0; r < 3; r++) {
      if ((live & (1 << (c * 4 + r))) == 0) continue;
      for (let a = 0; a < 3; a++) store<i64>(tlbTableOf(hartIndex, H, c, r, a) + idx, -1);
    }
  }
}

/** Something may wake the hart (an interrupt made pending, a new deadline): a thread asleep until it can run wakes. */
export function kickHart(base: usize): void {
  atomic.add<i32>(base + H_KICK, 1);
  atomic.notify(base + H_KICK, -1);
}

/** A TLB entry is going into `table`, one of the current hart's: its regime's tables may hold entries now. */
@inline export function noteTlbLive(table: usize): void {
  const m = tlbTableOf(hartIndex, H, 0, REGIME_M, 0);
  const bit = table >= m && table < m + <usize>3 * TLB_TABLE_BYTES ? REGIME_M
    : tlbCtx * 4 + <i32>((table - tlbTableOf(hartIndex, H, tlbCtx, 0, 0)) / (<usize>3 * TLB_TABLE_BYTES));
  store<i32>(H + H_TLB_LIVE, load<i32>(H + H_TLB_LIVE) | (1 << bit));
}

// ---- time ----

// The guest wrote mtime since the run loop last asked: its copy of the time is stale.
let mtimeWritten = false;
export function noteMtimeWritten(): void {
  mtimeWritten = true;
}
export function takeMtimeWritten(): bool {
  const w = mtimeWritten;
  mtimeWritten = false;
  return w;
}

/** mtime in timebase ticks. */
export function mtime(): u64 {
  if ((load<i32>(VM_FLAGS) & VMF_MTIME_FROZEN) != 0) return load<u64>(VM_MTIME_FROZEN);
  return <u64>(<i64>hostTicks() + load<i64>(VM_MTIME_OFFSET));
}

// ---- pending interrupts ----

/** mip as software sees it: core bits | host-driven bits | timer comparisons. */
export function effectiveMip(base: usize, now: u64): u64 {
  let p = <u64>atomic.load<u32>(base + H_MIP) | <u64>atomic.load<u32>(base + H_MIP_EXT);
  if (now >= load<u64>(base + H_MTIMECMP)) p |= IRQ_MTI;
  if ((load<u64>(base + H_MENVCFG) & MENVCFG_STCE) != 0) {
    p &= ~IRQ_STI;
    if (now >= load<u64>(base + H_STIMECMP)) p |= IRQ_STI;
  }
  return p;
}

/** Pending and enabled (ignoring the global enables): what wakes a WFI. */
export function wakeupPending(base: usize, now: u64): bool {
  return (effectiveMip(base, now) & load<u64>(base + H_MIE)) != 0;
}
