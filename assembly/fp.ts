// F and D instruction decoding: operand NaN-boxing, rounding-mode resolution, fflags
// accumulation and FS tracking. The arithmetic itself is in fpu.ts.

import { H_FCSR, H_F } from "./layout";
import { H, xreg, setXreg, freg, setFreg } from "./hart";
import { markFpDirty } from "./csr";
import * as fpu from "./fpu";

export let fpIllegal: bool = false;

const BOX: u64 = 0xffffffff00000000;
const CANONICAL_NAN32: u32 = 0x7fc00000;

// A single is valid only when NaN-boxed; anything else reads as the canonical NaN.
@inline function single(i: u32): u32 {
  const v = freg(i);
  return (v >> 32) == 0xffffffff ? <u32>v : CANONICAL_NAN32;
}
@inline function setSingle(i: u32, v: u32): void {
  setFreg(i, BOX | <u64>v);
}
@inline function sx32(v: u64): u64 {
  return <u64><i64><i32>v;
}

export function execFp(inst: u32): void {
  fpIllegal = true;
  const rd = (inst >> 7) & 31;
  const rs1 = (inst >> 15) & 31;
  const rs2 = (inst >> 20) & 31;
  const f3 = (inst >> 12) & 7;
  const fmt = (inst >> 25) & 3;
  if (fmt > 1) return; // only S and D
  const fcsr = load<u32>(H + H_FCSR);
  const rm = f3 == 7 ? (fcsr >> 5) & 7 : f3;
  const rmValid = rm <= 4;
  const dbl = fmt == 1;
  fpu.fpFlags = 0;
  const major = (inst >> 2) & 31;

  if (major != 0x14) {
    // Fused multiply-add family: rs3 in bits 31:27.
    if (!rmValid) return;
    const rs3 = inst >> 27;
    const negProduct = major == 0x12 || major == 0x13; // fnmsub, fnmadd
    const negAddend = major == 0x11 || major == 0x13; // fmsub, fnmadd
    if (dbl) {
      const sign: u64 = 0x8000000000000000;
      const a = freg(rs1) ^ (negProduct ? sign : 0);
      const c = freg(rs3) ^ (negAddend ? sign : 0);
      setFreg(rd, fpu.f64_fma(a, freg(rs2), c, rm));
    } else {
      const sign: u32 = 0x80000000;
      const a = single(rs1) ^ (negProduct ? sign : 0);
      const c = single(rs3) ^ (negAddend ? sign : 0);
      setSingle(rd, fpu.f32_fma(a, single(rs2), c, rm));
    }
    return finish(fcsr);
  }

  const f7 = inst >> 25;
  switch (f7 >> 2) {
    case 0x00: case 0x01: case 0x02: case 0x03: { // add, sub, mul, div
      const op = f7 >> 2;
      if (dbl) { // (the run loop decodes these to arithD directly)
        fpIllegal = !arithD(op, rd << 3, rs1 << 3, rs2 << 3, inst);
        return;
      }
      if (!rmValid) return;
      const a = single(rs1), b = single(rs2);
      setSingle(rd, op == 0 ? fpu.f32_add(a, b, rm) : op == 1 ? fpu.f32_sub(a, b, rm) : op == 2 ? fpu.f32_mul(a, b, rm) : fpu.f32_div(a, b, rm));
      return finish(fcsr);
    }
    case 0x0b: { // sqrt
      if (!rmValid || rs2 != 0) return;
      if (dbl) setFreg(rd, fpu.f64_sqrt(freg(rs1), rm));
      else setSingle(rd, fpu.f32_sqrt(single(rs1), rm));
      return finish(fcsr);
    }
    case 0x04: { // sign injection
      if (f3 > 2) return;
      if (dbl) {
        const a = freg(rs1), b = freg(rs2);
        const sign: u64 = 0x8000000000000000;
        const s = f3 == 0 ? b & sign : f3 == 1 ? ~b & sign : (a ^ b) & sign;
        setFreg(rd, (a & ~sign) | s);
      } else {
        const a = single(rs1), b = single(rs2);
        const sign: u32 = 0x80000000;
        const s = f3 == 0 ? b & sign : f3 == 1 ? ~b & sign : (a ^ b) & sign;
        setSingle(rd, (a & ~sign) | s);
      }
      return finish(fcsr);
    }
    case 0x05: { // min, max
      if (f3 > 1) return;
      if (dbl) setFreg(rd, f3 == 0 ? fpu.f64_min(freg(rs1), freg(rs2)) : fpu.f64_max(freg(rs1), freg(rs2)));
      else setSingle(rd, f3 == 0 ? fpu.f32_min(single(rs1), single(rs2)) : fpu.f32_max(single(rs1), single(rs2)));
      return finish(fcsr);
    }
    case 0x08: { // fcvt.s.d / fcvt.d.s
      if (!rmValid) return;
      if (dbl) {
        if (rs2 != 0) return;
        setFreg(rd, fpu.f32_to_f64(single(rs1)));
      } else {
        if (rs2 != 1) return;
        setSingle(rd, fpu.f64_to_f32(freg(rs1), rm));
      }
      return finish(fcsr);
    }
    case 0x14: { // compare
      let r: bool;
      if (dbl) {
        const a = freg(rs1), b = freg(rs2);
        if (f3 == 2) r = fpu.f64_eq(a, b); else if (f3 == 1) r = fpu.f64_lt(a, b); else if (f3 == 0) r = fpu.f64_le(a, b); else return;
      } else {
        const a = single(rs1), b = single(rs2);
        if (f3 == 2) r = fpu.f32_eq(a, b); else if (f3 == 1) r = fpu.f32_lt(a, b); else if (f3 == 0) r = fpu.f32_le(a, b); else return;
      }
      setXreg(rd, r ? 1 : 0);
      return finishInt(fcsr);
    }
    case 0x18: { // fcvt to integer
      if (!rmValid || rs2 > 3) return;
      let v: u64;
      if (dbl) {
        const a = freg(rs1);
        v = rs2 == 0 ? sx32(<u64>fpu.f64_to_i32(a, rm)) : rs2 == 1 ? sx32(<u64>fpu.f64_to_u32(a, rm)) : rs2 == 2 ? <u64>fpu.f64_to_i64(a, rm) : fpu.f64_to_u64(a, rm);
      } else {
        const a = single(rs1);
        v = rs2 == 0 ? sx32(<u64>fpu.f32_to_i32(a, rm)) : rs2 == 1 ? sx32(<u64>fpu.f32_to_u32(a, rm)) : rs2 == 2 ? <u64>fpu.f32_to_i64(a, rm) : fpu.f32_to_u64(a, rm);
      }
      setXreg(rd, v);
      return finishInt(fcsr);
    }
    case 0x1a: { // fcvt from integer
      if (!rmValid || rs2 > 3) return;
      const x = xreg(rs1);
      if (dbl) {
        setFreg(rd, rs2 == 0 ? fpu.i32_to_f64(<i32>x, rm) : rs2 == 1 ? fpu.u32_to_f64(<u32>x, rm) : rs2 == 2 ? fpu.i64_to_f64(<i64>x, rm) : fpu.u64_to_f64(x, rm));
      } else {
        setSingle(rd, rs2 == 0 ? fpu.i32_to_f32(<i32>x, rm) : rs2 == 1 ? fpu.u32_to_f32(<u32>x, rm) : rs2 == 2 ? fpu.i64_to_f32(<i64>x, rm) : fpu.u64_to_f32(x, rm));
      }
      return finish(fcsr);
    }
    case 0x1c: { // fmv.x.* / fclass
      if (rs2 != 0) return;
      if (f3 == 0) setXreg(rd, dbl ? freg(rs1) : sx32(freg(rs1)));
      else if (f3 == 1) setXreg(rd, <u64>(dbl ? fpu.f64_classify(freg(rs1)) : fpu.f32_classify(single(rs1))));
      else return;
      fpIllegal = false;
      return;
    }
    case 0x1e: { // fmv.*.x
      if (rs2 != 0 || f3 != 0) return;
      if (dbl) setFreg(rd, xreg(rs1)); else setSingle(rd, <u32>xreg(rs1));
      fpIllegal = false;
      markFpDirty();
      return;
    }
  }
}

/**
 * fadd.d, fsub.d, fmul.d, fdiv.d (op 0..3) on the registers at byte offsets rd, rs1, rs2 of the
 * FP file; `inst` supplies the rounding mode. False if that mode is invalid (illegal).
 */
export function arithD(op: u32, rd: u32, rs1: u32, rs2: u32, inst: u32): bool {
  const fcsr = load<u32>(H + H_FCSR);
  const f3 = (inst >> 12) & 7;
  const rm = f3 == 7 ? (fcsr >> 5) & 7 : f3;
  if (rm > 4) return false;
  fpu.fpFlags = 0;
  const regs = H + H_F;
  const a = load<u64>(regs + <usize>rs1), b = load<u64>(regs + <usize>rs2);
  store<u64>(regs + <usize>rd, op == 0 ? fpu.f64_add(a, b, rm) : op == 1 ? fpu.f64_sub(a, b, rm) : op == 2 ? fpu.f64_mul(a, b, rm) : fpu.f64_div(a, b, rm));
  finish(fcsr);
  return true;
}

// The instruction wrote an FP register: accumulate flags, mark the state dirty.
function finish(fcsr: u32): void {
  fpIllegal = false;
  if (fpu.fpFlags != 0) store<u32>(H + H_FCSR, fcsr | fpu.fpFlags);
  markFpDirty();
}

// The instruction wrote an integer register: only the flags can dirty the FP state.
function finishInt(fcsr: u32): void {
  fpIllegal = false;
  if (fpu.fpFlags != 0) {
    store<u32>(H + H_FCSR, fcsr | fpu.fpFlags);
    markFpDirty();
  }
}
