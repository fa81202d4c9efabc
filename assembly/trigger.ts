// Debug triggers (Sdtrig 1.0): tselect, tdata1-3 and tinfo, with TRIGGER_COUNT address triggers
// of type 2 (mcontrol) and 6 (mcontrol6) on execute, load and store, matching equal (0), NAPOT
// (1), >= (2) and < (3), chained, with the M/S/U bits. Action 0 raises a breakpoint exception
// (mtval = the address); action 1 (enter debug mode) is for the host's debugger, which owns the
// triggers whose dmode is 1: the hart leaves run() with EXIT_DEBUG. The host also has a list of
// breakpoint addresses (H_DEBUG_BP) and a single-step flag (H_DEBUG).
//
// Nothing here is on the hot path. What is armed is summed up in H_TRIG_ARMED, and the fast paths
// never see a watched page: the TLB is not filled for a page a load or store trigger could match
// (mmu.ts resolve), so every access there comes to loadSlow/storeSlow, which check; and the run
// loop does not keep a page with an execute trigger or a host breakpoint as its current code page
// (cpu.ts fetchDecode), so every fetch there comes through the check, and translations of the page
// (OP_JIT slots) are not entered. Any change of the triggers flushes the hart's TLB, which also
// makes the run loop look up its code page again.

import {
  H_TSELECT, H_TDATA, TRIGGER_COUNT, H_DEBUG, H_TRIG_ARMED, H_DEBUG_BP_COUNT, H_DEBUG_BP, DEBUG_BP_MAX,
  H_MSTATUS, H_EXIT_ADDR, H_EXIT_DATA, H_EXIT_WRITE, DBG_STEP, TA_EXEC, TA_DATA, TA_STEP,
} from "./layout";
import { H, priv, csr64, flushTlbAll, PRV_M, PRV_S, MS_MIE } from "./hart";

// Access kinds, as the tdata1 bits that select them.
export const TK_LOAD: u64 = 1;
export const TK_STORE: u64 = 2;
export const TK_EXEC: u64 = 4;

// The exception cause a debug-mode trigger raises inside the core: the run loop turns it into EXIT_DEBUG.
export const CAUSE_DEBUG: u64 = 0x7fff;

const TYPE_MCONTROL: u64 = 2;
const TYPE_MCONTROL6: u64 = 6;
const TYPE_DISABLED: u64 = 15;
const DMODE: u64 = <u64>1 << 59;
const CHAIN: u64 = 1 << 11;
const BIT_U: u64 = 1 << 3;
const BIT_S: u64 = 1 << 4;
const BIT_M: u64 = 1 << 6;
// The fields both types keep as written: action, chain, match, m, s, u, execute, store, load.
const KEPT: u64 = 0xffdf;

// Set while the host's debugger accesses the CSRs (debug mode): dmode and action 1 are writable.
let debugAccess: bool = false;
export function setDebugAccess(on: bool): void {
  debugAccess = on;
}

@inline function tdataPtr(i: i32, n: i32): usize {
  return H + H_TDATA + <usize>(i * 24 + n * 8);
}
@inline function tdata1(i: i32): u64 {
  return load<u64>(tdataPtr(i, 0));
}
@inline function tdata2(i: i32): u64 {
  return load<u64>(tdataPtr(i, 1));
}
@inline function isAddressTrigger(t1: u64): bool {
  const type = t1 >> 60;
  return type == TYPE_MCONTROL || type == TYPE_MCONTROL6;
}

/** A trigger CSR (0x7a0-0x7a4) as the current hart reads it; -1 (as u64) when it does not exist. */
export function triggerCsrRead(num: u32): u64 {
  const sel = <i32>load<u64>(H + H_TSELECT);
  switch (num) {
    case 0x7a0: return <u64>sel;
    case 0x7a1: {
      const t = tdata1(sel);
      return t == 0 ? TYPE_DISABLED << 60 : t; // a reset hart's (zeroed) triggers exist, disabled
    }
    case 0x7a2: return tdata2(sel);
    case 0x7a3: return 0; // no textra conditions
    case 0x7a4: return (<u64>1 << 24) | (1 << TYPE_MCONTROL) | (1 << TYPE_MCONTROL6) | (1 << TYPE_DISABLED); // version 1
  }
  return u64.MAX_VALUE;
}

/** A write to a trigger CSR (0x7a0-0x7a4), WARL as Sdtrig says. */
export function triggerCsrWrite(num: u32, v: u64): void {
  if (num == 0x7a0) {
    // Out of range: keep the old value, so software enumerating triggers reads back a different one.
    if (v < <u64>TRIGGER_COUNT) store<u64>(H + H_TSELECT, v);
    return;
  }
  const sel = <i32>load<u64>(H + H_TSELECT);
  // A trigger in dmode belongs to the debugger: outside debug mode its registers ignore writes.
  if ((tdata1(sel) & DMODE) != 0 && !debugAccess) return;
  if (num == 0x7a1) store<u64>(tdataPtr(sel, 0), legalTdata1(sel, v));
  else if (num == 0x7a2) store<u64>(tdataPtr(sel, 1), v);
  else return; // tdata3 (no textra conditions) and tinfo are read-only here
  triggersChanged();
}

function legalTdata1(sel: i32, v: u64): u64 {
  const type = v >> 60;
  const dmode = debugAccess ? v & DMODE : 0;
  if (type != TYPE_MCONTROL && type != TYPE_MCONTROL6) return (TYPE_DISABLED << 60) | dmode;
  let t = (type << 60) | dmode | (v & KEPT);
  // Action 1 (enter debug mode) only for the debugger's triggers; others (2-4: trace) are not implemented.
  const action = (t >> 12) & 0xf;
  if (action != 0 && !(action == 1 && dmode != 0)) t &= ~(<u64>0xf << 12);
  if (((t >> 7) & 0xf) > 3) t &= ~(<u64>0xf << 7); // only equal, NAPOT, >= and <
  // No chain past the last trigger, nor from a guest's trigger into the debugger's.
  if (sel == TRIGGER_COUNT - 1 || (dmode == 0 && (tdata1(sel + 1) & DMODE) != 0)) t &= ~CHAIN;
  // The debugger taking a trigger breaks a guest chain into it.
  if (dmode != 0 && sel > 0 && (tdata1(sel - 1) & DMODE) == 0) store<u64>(tdataPtr(sel - 1, 0), tdata1(sel - 1) & ~CHAIN);
  return t;
}

/**
 * Recompute H_TRIG_ARMED after the triggers, the breakpoint list or H_DEBUG changed, and flush the
 * hart's TLB: a watched page must lose its entries, and the run loop must look its code page up again.
 */
export function triggersChanged(): void {
  let armed: i32 = 0;
  for (let i = 0; i < TRIGGER_COUNT; i++) {
    const t1 = tdata1(i);
    if (!isAddressTrigger(t1)) continue;
    if ((t1 & TK_EXEC) != 0) armed |= TA_EXEC;
    if ((t1 & (TK_LOAD | TK_STORE)) != 0) armed |= TA_DATA;
  }
  if (load<i32>(H + H_DEBUG_BP_COUNT) > 0) armed |= TA_EXEC;
  if ((load<i32>(H + H_DEBUG) & DBG_STEP) != 0) armed |= TA_STEP;
  store<i32>(H + H_TRIG_ARMED, armed);
  flushTlbAll();
}

@inline function modeBit(): u64 {
  return priv == PRV_M ? BIT_M : priv == PRV_S ? BIT_S : BIT_U;
}

// NAPOT: tdata2's trailing ones give the size (2^(ones + 1) bytes); the mask of the offset bits.
@inline function napotMask(t2: u64): u64 {
  const ones = ctz(~t2);
  return ones >= 63 ? u64.MAX_VALUE : (<u64>1 << (ones + 1)) - 1;
}

// Whether trigger i, alone, matches an access of `kind` to [addr, addr + size) in the current mode.
function matchOne(i: i32, kind: u64, addr: u64, size: u64): bool {
  const t1 = tdata1(i);
  if (!isAddressTrigger(t1) || (t1 & kind) == 0 || (t1 & modeBit()) == 0) return false;
  const t2 = tdata2(i);
  const last = addr + size - 1;
  const m = (t1 >> 7) & 0xf;
  if (m == 0) return t2 >= addr && t2 <= last;
  if (m == 1) {
    const mask = napotMask(t2);
    return addr <= (t2 | mask) && last >= (t2 & ~mask);
  }
  if (m == 2) return last >= t2;
  return addr < t2;
}

/**
 * Check an access of `kind` to [addr, addr + size) against the triggers (and, for execute, the host's
 * breakpoints), before it happens. Returns 0 (go on), or the exception the access raises instead:
 * 3, a breakpoint (action 0), or CAUSE_DEBUG, the hart stops for the debugger (details in the run block).
 */
export function triggerCheck(kind: u64, addr: u64, size: u64): u64 {
  if (kind == TK_EXEC) {
    const n = load<i32>(H + H_DEBUG_BP_COUNT);
    for (let b = 0; b < n; b++) {
      if (load<u64>(H + H_DEBUG_BP + (<usize>b << 3)) == addr) return debugStop(kind, addr, -1);
    }
  }
  let i = 0;
  while (i < TRIGGER_COUNT) {
    // A chain: every trigger in it must match; the last one's action is taken.
    let all = true;
    while (true) {
      if (!matchOne(i, kind, addr, size)) all = false;
      if ((tdata1(i) & CHAIN) == 0 || i == TRIGGER_COUNT - 1) break;
      i++;
    }
    const last = i++;
    if (!all) continue;
    const t1 = tdata1(last);
    if (((t1 >> 12) & 0xf) == 1) return debugStop(kind, addr, last);
    // Without tcontrol, an action 0 trigger does not fire in M-mode while MIE is 0 (the trap
    // handler would trigger it again for ever).
    if (priv == PRV_M && (csr64(H_MSTATUS) & MS_MIE) == 0) continue;
    return 3; // EXC_BREAKPOINT
  }
  return 0;
}

function debugStop(kind: u64, addr: u64, index: i32): u64 {
  store<u64>(H + H_EXIT_ADDR, addr);
  store<u32>(H + H_EXIT_WRITE, <u32>kind);
  store<i64>(H + H_EXIT_DATA, index);
  return CAUSE_DEBUG;
}

/**
 * Whether an access of `kind` somewhere in the 4 KiB page at `page` could fire a trigger (or, for
 * execute, hit a host breakpoint): such a page keeps off the fast paths. Conservative: the mode bits
 * are not looked at, and an access may start up to 7 bytes before what it matches.
 */
export function triggerWatchesPage(kind: u64, page: u64): bool {
  const end = page + 4095;
  if (kind == TK_EXEC) {
    const n = load<i32>(H + H_DEBUG_BP_COUNT);
    for (let b = 0; b < n; b++) {
      const a = load<u64>(H + H_DEBUG_BP + (<usize>b << 3));
      if (a >= page && a <= end) return true;
    }
  }
  let i = 0;
  while (i < TRIGGER_COUNT) {
    let lo: u64 = 0, hi: u64 = u64.MAX_VALUE;
    let possible = true;
    while (true) {
      const t1 = tdata1(i);
      if (!isAddressTrigger(t1) || (t1 & kind) == 0) possible = false;
      else {
        const t2 = tdata2(i);
        const m = (t1 >> 7) & 0xf;
        let l: u64 = 0, h: u64 = u64.MAX_VALUE;
        if (m == 0) { l = t2; h = t2; }
        else if (m == 1) { const mask = napotMask(t2); l = t2 & ~mask; h = t2 | mask; }
        else if (m == 2) l = t2;
        else if (t2 == 0) possible = false;
        else h = t2 - 1;
        l = l < 7 ? 0 : l - 7;
        if (l > lo) lo = l;
        if (h < hi) hi = h;
      }
      if ((tdata1(i) & CHAIN) == 0 || i == TRIGGER_COUNT - 1) break;
      i++;
    }
    i++;
    if (possible && lo <= hi && lo <= end && hi >= page) return true;
  }
  return false;
}

/** The host's debugger changed its breakpoint list or H_DEBUG. */
export function debugChanged(): void {
  const n = load<i32>(H + H_DEBUG_BP_COUNT);
  if (n < 0 || n > DEBUG_BP_MAX) store<i32>(H + H_DEBUG_BP_COUNT, 0);
  triggersChanged();
}
