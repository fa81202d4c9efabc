// Control and status registers: access checks, WARL masks and the side effects of writes.
// An access that is not allowed (unknown CSR, too little privilege, write to a read-only CSR,
// counters hidden by mcounteren/scounteren, TVM, FS off) raises illegal instruction, which is
// how firmware probes for features.

import {
  H_MSTATUS, H_MEDELEG, H_MIDELEG, H_MIE, H_MTVEC, H_MCOUNTEREN, H_MSCRATCH, H_MEPC,
  H_MCAUSE, H_MTVAL, H_MENVCFG, H_MCOUNTINHIBIT, H_STVEC, H_SCOUNTEREN, H_SSCRATCH, H_SEPC,
  H_SCAUSE, H_STVAL, H_SATP, H_SENVCFG, H_FCSR, H_STIMECMP, H_MCYCLE_OFFSET, H_MINSTRET_OFFSET,
  H_PMPCFG, H_PMPADDR, H_HARTID, H_INSTRET, H_MIP, PMP_COUNT,
} from "./layout";
import { shadowSatpChanged } from "./shadow";
import { triggerCsrRead, triggerCsrWrite } from "./trigger";
import {
  H, priv, csr64, setCsr64, refreshModes, flushTlbAll, flushTlbRegimes, PAGED_REGIMES, useTlbContext,
  effectiveMip, mtime, PRV_M, PRV_S, PRV_U, MS_SIE, MS_MIE, MS_SPIE, MS_MPIE, MS_SPP, MS_MPP,
  MS_FS, MS_MPRV, MS_SUM, MS_MXR, MS_TVM, MS_TW, MS_TSR, MS_UXL, MS_SXL, MS_SD, IRQ_SSI, IRQ_STI,
  IRQ_SEI, MENVCFG_STCE,
} from "./hart";

// Set when a write may have made an interrupt takeable: the run loop polls at once.
export let interruptCheckNeeded: bool = false;
// Set when a CSR access was not allowed (illegal instruction).
export let csrIllegal: bool = false;
// Instructions retired in the current slice but not yet added to H_INSTRET.
export let pendingInstret: u64 = 0;

export function clearInterruptCheck(): void {
  interruptCheckNeeded = false;
}
export function setPendingInstret(n: u64): void {
  pendingInstret = n;
}

export const MISA_VALUE: u64 = (<u64>2 << 62) | (1 << 0) | (1 << 2) | (1 << 3) | (1 << 5) | (1 << 8) | (1 << 12) | (1 << 18) | (1 << 20);

const MSTATUS_WRITABLE: u64 = MS_SIE | MS_MIE | MS_SPIE | MS_MPIE | MS_SPP | MS_MPP | MS_FS | MS_MPRV | MS_SUM | MS_MXR | MS_TVM | MS_TW | MS_TSR;
const SSTATUS_VISIBLE: u64 = MS_SIE | MS_SPIE | MS_SPP | MS_FS | MS_SUM | MS_MXR | MS_UXL | MS_SD;
const SSTATUS_WRITABLE: u64 = MS_SIE | MS_SPIE | MS_SPP | MS_FS | MS_SUM | MS_MXR;
// Exceptions that may be delegated: all but ecall from M (11) and the reserved 10 and 14.
const MEDELEG_WRITABLE: u64 = 0xb3ff;
const MIDELEG_WRITABLE: u64 = IRQ_SSI | IRQ_STI | IRQ_SEI;
const MIE_WRITABLE: u64 = 0xaaa;
const MENVCFG_WRITABLE: u64 = MENVCFG_STCE | 1;

export const MSTATUS_RESET: u64 = MS_UXL & (<u64>2 << 32) | MS_SXL & (<u64>2 << 34);

export function instretNow(): u64 {
  return load<u64>(H + H_INSTRET) + pendingInstret;
}

@inline function withSd(ms: u64): u64 {
  return (ms & MS_FS) == MS_FS ? ms | MS_SD : ms & ~MS_SD;
}

function illegal(): u64 {
  csrIllegal = true;
  return 0;
}

function counterAllowed(index: u32): bool {
  if (priv == PRV_M) return true;
  if (((csr64(H_MCOUNTEREN) >> index) & 1) == 0) return false;
  if (priv == PRV_U && ((csr64(H_SCOUNTEREN) >> index) & 1) == 0) return false;
  return true;
}

function fpAllowed(): bool {
  return (csr64(H_MSTATUS) & MS_FS) != 0;
}

export function markFpDirty(): void {
  setCsr64(H_MSTATUS, csr64(H_MSTATUS) | MS_FS | MS_SD);
}

export const CSR_RW: u32 = 1;
export const CSR_RS: u32 = 2;
export const CSR_RC: u32 = 3;

/**
 * CSR instruction semantics as the current privilege: returns the old value and, when `write`,
 * stores old op operand (op = CSR_RW/RS/RC). On refusal sets csrIllegal and changes nothing.
 */
export function csrAccess(num: u32, op: u32, operand: u64, write: bool): u64 {
  csrIllegal = false;
  if (<i32>((num >> 8) & 3) > priv) return illegal();
  if (write && (num >> 10) == 3) return illegal();
  const old = csrRead(num);
  if (csrIllegal || !write) return old;
  // Only the software-written SEIP takes part in a read-modify-write of mip, not the PLIC's.
  const base = num == 0x344 ? (old & ~IRQ_SEI) | (<u64>atomic.load<u32>(H + H_MIP) & IRQ_SEI) : old;
  const v = op == CSR_RW ? operand : op == CSR_RS ? base | operand : base & ~operand;
  csrWrite(num, v);
  return old;
}

function csrRead(num: u32): u64 {
  if (num >= 0xc00 && num <= 0xc1f) {
    if (!counterAllowed(num - 0xc00)) return illegal();
    if (num == 0xc00) return counterValue(H_MCYCLE_OFFSET, INHIBIT_CY);
    if (num == 0xc01) return mtime();
    if (num == 0xc02) return counterValue(H_MINSTRET_OFFSET, INHIBIT_IR);
    return 0; // hpmcounter3..31 count nothing
  }
  if (num >= 0xb03 && num <= 0xb1f) return 0; // mhpmcounter3..31
  if (num >= 0x323 && num <= 0x33f) return 0; // mhpmevent3..31
  if (num >= 0x3a0 && num <= 0x3ef) return pmpRead(num);
  if (num >= 0x7a0 && num <= 0x7a4) return triggerCsrRead(num);
  switch (num) {
    case 0x001: return fpAllowed() ? <u64>(load<u32>(H + H_FCSR) & 0x1f) : illegal();
    case 0x002: return fpAllowed() ? <u64>((load<u32>(H + H_FCSR) >> 5) & 7) : illegal();
    case 0x003: return fpAllowed() ? <u64>(load<u32>(H + H_FCSR) & 0xff) : illegal();
    case 0x100: return withSd(csr64(H_MSTATUS)) & SSTATUS_VISIBLE;
    case 0x104: return csr64(H_MIE) & csr64(H_MIDELEG);
    case 0x105: return csr64(H_STVEC);
    case 0x106: return csr64(H_SCOUNTEREN);
    case 0x10a: return csr64(H_SENVCFG);
    case 0x140: return csr64(H_SSCRATCH);
    case 0x141: return csr64(H_SEPC);
    case 0x142: return csr64(H_SCAUSE);
    case 0x143: return csr64(H_STVAL);
    case 0x144: return effectiveMip(H, mtime()) & csr64(H_MIDELEG);
    case 0x14d:
      if (priv < PRV_M && ((csr64(H_MENVCFG) & MENVCFG_STCE) == 0 || (csr64(H_MCOUNTEREN) & 2) == 0)) return illegal();
      return csr64(H_STIMECMP);
    case 0x180:
      if (priv == PRV_S && (csr64(H_MSTATUS) & MS_TVM) != 0) return illegal();
      return csr64(H_SATP);
    case 0xf11: case 0xf12: case 0xf13: case 0xf15: return 0;
    case 0xf14: return <u64>load<u32>(H + H_HARTID);
    case 0x300: return withSd(csr64(H_MSTATUS));
    case 0x301: return MISA_VALUE;
    case 0x302: return csr64(H_MEDELEG);
    case 0x303: return csr64(H_MIDELEG);
    case 0x304: return csr64(H_MIE);
    case 0x305: return csr64(H_MTVEC);
    case 0x306: return csr64(H_MCOUNTEREN);
    case 0x30a: return csr64(H_MENVCFG);
    case 0x320: return csr64(H_MCOUNTINHIBIT);
    case 0x340: return csr64(H_MSCRATCH);
    case 0x341: return csr64(H_MEPC);
    case 0x342: return csr64(H_MCAUSE);
    case 0x343: return csr64(H_MTVAL);
    case 0x344: return effectiveMip(H, mtime());
    case 0xb00: return counterValue(H_MCYCLE_OFFSET, INHIBIT_CY);
    case 0xb02: return counterValue(H_MINSTRET_OFFSET, INHIBIT_IR);
  }
  return illegal();
}

function csrWrite(num: u32, v: u64): void {
  if (num >= 0x3a0 && num <= 0x3ef) { pmpWrite(num, v); return; }
  if (num >= 0x7a0 && num <= 0x7a4) { triggerCsrWrite(num, v); return; }
  switch (num) {
    case 0x001: setFcsr((load<u32>(H + H_FCSR) & ~0x1f) | (<u32>v & 0x1f)); return;
    case 0x002: setFcsr((load<u32>(H + H_FCSR) & 0x1f) | ((<u32>v & 7) << 5)); return;
    case 0x003: setFcsr(<u32>v & 0xff); return;
    case 0x100: writeMstatus((csr64(H_MSTATUS) & ~SSTATUS_WRITABLE) | (v & SSTATUS_WRITABLE)); return;
    case 0x104: {
      const d = csr64(H_MIDELEG);
      setCsr64(H_MIE, (csr64(H_MIE) & ~d) | (v & d & MIE_WRITABLE));
      interruptCheckNeeded = true;
      return;
    }
    case 0x105: setCsr64(H_STVEC, legalTvec(v)); return;
    case 0x106: setCsr64(H_SCOUNTEREN, v & 0xffffffff); return;
    case 0x10a: setCsr64(H_SENVCFG, v & 1); return;
    case 0x140: setCsr64(H_SSCRATCH, v); return;
    case 0x141: setCsr64(H_SEPC, v & ~<u64>1); return;
    case 0x142: setCsr64(H_SCAUSE, v); return;
    case 0x143: setCsr64(H_STVAL, v); return;
    case 0x144:
      // Only SSIP is writable through sip, and only when delegated.
      if ((csr64(H_MIDELEG) & IRQ_SSI) != 0) writeMipBits(IRQ_SSI, v);
      return;
    case 0x14d: setCsr64(H_STIMECMP, v); interruptCheckNeeded = true; return;
    case 0x180: writeSatp(v); return;
    case 0x300: writeMstatus((csr64(H_MSTATUS) & ~MSTATUS_WRITABLE) | (v & MSTATUS_WRITABLE)); return;
    case 0x301: return; // misa is read-only here (WARL)
    case 0x302: setCsr64(H_MEDELEG, v & MEDELEG_WRITABLE); return;
    case 0x303: setCsr64(H_MIDELEG, v & MIDELEG_WRITABLE); interruptCheckNeeded = true; return;
    case 0x304: setCsr64(H_MIE, v & MIE_WRITABLE); interruptCheckNeeded = true; return;
    case 0x305: setCsr64(H_MTVEC, legalTvec(v)); return;
    case 0x306: setCsr64(H_MCOUNTEREN, v & 0xffffffff); return;
    case 0x30a: setCsr64(H_MENVCFG, v & MENVCFG_WRITABLE); interruptCheckNeeded = true; return;
    case 0x320: writeCountInhibit(v & 0xfffffffd); return;
    case 0x340: setCsr64(H_MSCRATCH, v); return;
    case 0x341: setCsr64(H_MEPC, v & ~<u64>1); return;
    case 0x342: setCsr64(H_MCAUSE, v); return;
    case 0x343: setCsr64(H_MTVAL, v); return;
    case 0x344: {
      let mask = IRQ_SSI | IRQ_SEI;
      if ((csr64(H_MENVCFG) & MENVCFG_STCE) == 0) mask |= IRQ_STI;
      writeMipBits(mask, v);
      return;
    }
    case 0xb00: writeCounter(H_MCYCLE_OFFSET, INHIBIT_CY, v); return;
    case 0xb02: writeCounter(H_MINSTRET_OFFSET, INHIBIT_IR, v); return;
  }
  // Everything else that reads (mhpm*, read-only zeros) ignores writes.
}

// mcycle and minstret both count retired instructions. Each keeps an offset from the hart's
// instruction count; while inhibited (mcountinhibit) the field holds the frozen value instead.
const INHIBIT_CY: u64 = 1;
const INHIBIT_IR: u64 = 4;

function counterValue(off: i32, inhibit: u64): u64 {
  if ((csr64(H_MCOUNTINHIBIT) & inhibit) != 0) return csr64(off);
  return instretNow() + csr64(off);
}

// A written value is what the next instruction reads: the writing instruction does not count.
function writeCounter(off: i32, inhibit: u64, v: u64): void {
  if ((csr64(H_MCOUNTINHIBIT) & inhibit) != 0) setCsr64(off, v);
  else setCsr64(off, v - instretNow() - 1);
}

function writeCountInhibit(v: u64): void {
  const old = csr64(H_MCOUNTINHIBIT);
  const changed = old ^ v;
  // Freeze or thaw each counter whose inhibit bit changes, keeping its value continuous.
  if ((changed & INHIBIT_CY) != 0) {
    if ((v & INHIBIT_CY) != 0) setCsr64(H_MCYCLE_OFFSET, instretNow() + 1 + csr64(H_MCYCLE_OFFSET));
    else setCsr64(H_MCYCLE_OFFSET, csr64(H_MCYCLE_OFFSET) - instretNow() - 1);
  }
  if ((changed & INHIBIT_IR) != 0) {
    if ((v & INHIBIT_IR) != 0) setCsr64(H_MINSTRET_OFFSET, instretNow() + 1 + csr64(H_MINSTRET_OFFSET));
    else setCsr64(H_MINSTRET_OFFSET, csr64(H_MINSTRET_OFFSET) - instretNow() - 1);
  }
  setCsr64(H_MCOUNTINHIBIT, v);
}

function setFcsr(v: u32): void {
  store<u32>(H + H_FCSR, v);
  markFpDirty();
}

function legalTvec(v: u64): u64 {
  // Modes 2 and 3 are reserved: fall back to direct.
  return (v & 3) >= 2 ? v & ~<u64>3 : v;
}

function writeMipBits(mask: u64, v: u64): void {
  const m = <u32>mask;
  // Another hart (a CLINT write on another thread) may change MSIP meanwhile: keep its bit.
  let cur: u32;
  do cur = atomic.load<u32>(H + H_MIP);
  while (atomic.cmpxchg<u32>(H + H_MIP, cur, (cur & ~m) | (<u32>v & m)) != cur);
  interruptCheckNeeded = true;
}

function writeMstatus(v: u64): void {
  const old = csr64(H_MSTATUS);
  // MPP = 2 is reserved: keep the previous mode.
  if ((v & MS_MPP) == (<u64>2 << 11)) v = (v & ~MS_MPP) | (old & MS_MPP);
  v = withSd(v);
  setCsr64(H_MSTATUS, v);
  if (((old ^ v) & MS_MXR) != 0) flushTlbRegimes(PAGED_REGIMES);
  if (((old ^ v) & (MS_MPRV | MS_MPP | MS_SUM)) != 0) refreshModes();
  interruptCheckNeeded = true;
}

function writeSatp(v: u64): void {
  if (priv == PRV_S && (csr64(H_MSTATUS) & MS_TVM) != 0) { illegal(); return; }
  const mode = v >> 60;
  if (mode != 0 && mode != 8 && mode != 9) return; // unsupported modes leave satp unchanged
  // 16 ASID bits. The TLB keeps a context per address space, Bare's included (useTlbContext).
  setCsr64(H_SATP, v);
  useTlbContext(v);
  shadowSatpChanged();
  refreshModes();
}

// pmpcfg0/2 hold entries 0-7 and 8-15 (odd numbers do not exist on RV64); entries past
// PMP_COUNT read as zero and ignore writes.
function pmpRead(num: u32): u64 {
  if (num < 0x3b0) {
    if ((num & 1) != 0) return illegal();
    const first = (num - 0x3a0) * 4;
    if (first >= <u32>PMP_COUNT) return 0;
    let v: u64 = 0;
    for (let i: u32 = 0; i < 8; i++) v |= <u64>load<u8>(H + H_PMPCFG + first + i) << (i * 8);
    return v;
  }
  const i = num - 0x3b0;
  return i < <u32>PMP_COUNT ? load<u64>(H + H_PMPADDR + (i << 3)) : 0;
}

function pmpWrite(num: u32, v: u64): void {
  if (num < 0x3b0) {
    const first = (num - 0x3a0) * 4;
    if (first >= <u32>PMP_COUNT) return;
    for (let i: u32 = 0; i < 8; i++) {
      const ptr = H + H_PMPCFG + first + i;
      if ((load<u8>(ptr) & 0x80) != 0) continue; // locked
      let c = <u8>(v >> (i * 8)) & 0x9f;
      if ((c & 3) == 2) c &= ~2; // W without R is reserved
      store<u8>(ptr, c);
    }
    flushTlbAll();
    return;
  }
  const i = num - 0x3b0;
  if (i >= <u32>PMP_COUNT) return;
  const locked = (load<u8>(H + H_PMPCFG + i) & 0x80) != 0;
  // A locked TOR entry also locks the address register below it.
  const nextTorLocked = i + 1 < <u32>PMP_COUNT && (load<u8>(H + H_PMPCFG + i + 1) & 0x98) == 0x88;
  if (locked || nextTorLocked) return;
  store<u64>(H + H_PMPADDR + (i << 3), v & 0x3fffffffffffff);
  flushTlbAll();
}
