// Traps: exception and interrupt entry with delegation, interrupt selection by the privileged
// spec's priorities, and the xRET instructions.

import {
  H_MSTATUS, H_MEDELEG, H_MIDELEG, H_MIE, H_MTVEC, H_STVEC, H_MEPC, H_SEPC, H_MCAUSE, H_SCAUSE,
  H_MTVAL, H_STVAL, H_RESV_VALID, H_INTR_TAKEN,
} from "./layout";
import {
  H, priv, setPriv, csr64, setCsr64, effectiveMip, PRV_M, PRV_S, PRV_U, MS_SIE, MS_MIE,
  MS_SPIE, MS_MPIE, MS_SPP, MS_MPP, MS_MPP_SHIFT, MS_MPRV,
} from "./hart";

const INTERRUPT: u64 = 1 << 63;

/** Enter the trap handler for `cause`; returns the handler's pc. */
export function takeTrap(cause: u64, tval: u64, epc: u64, interrupt: bool): u64 {
  const bit = <u64>1 << (cause & 63);
  const deleg = csr64(interrupt ? H_MIDELEG : H_MEDELEG);
  const code = interrupt ? cause | INTERRUPT : cause;
  // A trap ends any LR reservation, so an SC after a context switch fails as it must.
  store<i32>(H + H_RESV_VALID, 0);
  if (interrupt) store<u64>(H + H_INTR_TAKEN, load<u64>(H + H_INTR_TAKEN) + 1);
  let ms = csr64(H_MSTATUS);
  let tvec: u64;
  if (priv <= PRV_S && (deleg & bit) != 0) {
    setCsr64(H_SCAUSE, code);
    setCsr64(H_SEPC, epc);
    setCsr64(H_STVAL, tval);
    ms = (ms & ~(MS_SPIE | MS_SPP | MS_SIE)) | ((ms & MS_SIE) != 0 ? MS_SPIE : 0) | (priv == PRV_S ? MS_SPP : 0);
    setCsr64(H_MSTATUS, ms);
    setPriv(PRV_S);
    tvec = csr64(H_STVEC);
  } else {
    setCsr64(H_MCAUSE, code);
    setCsr64(H_MEPC, epc);
    setCsr64(H_MTVAL, tval);
    ms = (ms & ~(MS_MPIE | MS_MPP | MS_MIE)) | ((ms & MS_MIE) != 0 ? MS_MPIE : 0) | (<u64>priv << MS_MPP_SHIFT);
    setCsr64(H_MSTATUS, ms);
    setPriv(PRV_M);
    tvec = csr64(H_MTVEC);
  }
  const base = tvec & ~<u64>3;
  if (interrupt && (tvec & 1) != 0) return base + 4 * cause;
  return base;
}

// Highest priority first: MEI, MSI, MTI, SEI, SSI, STI.
const PRIORITY0: u32 = 11;
const PRIORITY1: u32 = 3;
const PRIORITY2: u32 = 7;
const PRIORITY3: u32 = 9;
const PRIORITY4: u32 = 1;
const PRIORITY5: u32 = 5;

@inline function highest(bits: u64): i32 {
  if ((bits >> PRIORITY0) & 1) return PRIORITY0;
  if ((bits >> PRIORITY1) & 1) return PRIORITY1;
  if ((bits >> PRIORITY2) & 1) return PRIORITY2;
  if ((bits >> PRIORITY3) & 1) return PRIORITY3;
  if ((bits >> PRIORITY4) & 1) return PRIORITY4;
  if ((bits >> PRIORITY5) & 1) return PRIORITY5;
  return -1;
}

/** The interrupt to take now, or -1. */
export function selectInterrupt(now: u64): i32 {
  const pending = effectiveMip(H, now) & csr64(H_MIE);
  if (pending == 0) return -1;
  const ms = csr64(H_MSTATUS);
  const deleg = csr64(H_MIDELEG);
  const mLevel = pending & ~deleg;
  if (mLevel != 0 && (priv < PRV_M || (ms & MS_MIE) != 0)) return highest(mLevel);
  const sLevel = pending & deleg;
  if (sLevel != 0 && (priv < PRV_S || (priv == PRV_S && (ms & MS_SIE) != 0))) return highest(sLevel);
  return -1;
}

/** mret: returns the new pc. */
export function mret(): u64 {
  let ms = csr64(H_MSTATUS);
  const mpp = <i32>((ms & MS_MPP) >> MS_MPP_SHIFT);
  ms = (ms & ~(MS_MIE | MS_MPP)) | ((ms & MS_MPIE) != 0 ? MS_MIE : 0) | MS_MPIE;
  if (mpp != PRV_M) ms &= ~MS_MPRV;
  setCsr64(H_MSTATUS, ms);
  setPriv(mpp);
  return csr64(H_MEPC);
}

/** sret: returns the new pc. */
export function sret(): u64 {
  let ms = csr64(H_MSTATUS);
  const spp = (ms & MS_SPP) != 0 ? PRV_S : PRV_U;
  ms = (ms & ~(MS_SIE | MS_SPP | MS_MPRV)) | ((ms & MS_SPIE) != 0 ? MS_SIE : 0) | MS_SPIE;
  setCsr64(H_MSTATUS, ms);
  setPriv(spp);
  return csr64(H_SEPC);
}
