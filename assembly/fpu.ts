// IEEE 754 binary32/binary64 arithmetic with the RISC-V F/D semantics: canonical NaNs,
// tininess detected after rounding, saturating float-to-integer conversions, all five
// rounding modes and exact exception flags. Values travel as raw bit patterns.
//
// WebAssembly only rounds to nearest-even and has no flags, so there are two layers:
//
//  * Fast paths (mostly rm == RNE): the native operation gives the correctly rounded
//    result; when it is a normal number (so no overflow and no tininess question) an exact
//    check decides NX: an error-free transformation (TwoSum, TwoProduct) or an integer test
//    on the significands' odd parts. The exact error of a sum also lets RTZ/RDN/RUP adjust
//    it. Anything the fast path cannot decide falls through to the software path.
//  * The software path: an exact significand, or one truncated with a sticky bit, plus an
//    exponent, handed to roundPack(), the one rounding/packing routine for both formats.
//
// binary32 operations are evaluated in binary64, which covers every rounding mode:
//  * a product of two singles is exact in binary64 (48 bits);
//  * a sum (and the sum in fma) is made exact by its TwoSum error term;
//  * a binary64 quotient or square root of singles is within 2^-53 (relative) of the exact
//    result, while an exact result that is not itself a single is at least ~2^-48 away from
//    every binary32 rounding boundary (point or midpoint). So the rounded binary64 value sits
//    on the same side of every boundary as the exact one, and is on a boundary only when the
//    exact result is; its bits decide every rounding mode and NX. (This margin is why double
//    rounding is innocuous when the wide precision is >= 2p + 2.)

// Accumulated exception flags, RISC-V fflags encoding. Operations OR into it.
export let fpFlags: u32 = 0;

const NV: u32 = 16;
const DZ: u32 = 8;
const OF: u32 = 4;
const UF: u32 = 2;
const NX: u32 = 1;

const RNE: u32 = 0;
const RTZ: u32 = 1;
const RDN: u32 = 2;
const RUP: u32 = 3;
const RMM: u32 = 4;

const D_SIGN: u64 = 0x8000000000000000;
const D_ABS: u64 = 0x7fffffffffffffff;
const D_INF: u64 = 0x7ff0000000000000;
const D_QNAN: u64 = 0x7ff8000000000000; // the canonical NaN
const D_QUIET: u64 = 0x0008000000000000;
const D_MANT: u64 = 0x000fffffffffffff;
const D_HIDDEN: u64 = 0x0010000000000000; // also the smallest normal's bit pattern

const S_SIGN: u32 = 0x80000000;
const S_ABS: u32 = 0x7fffffff;
const S_INF: u32 = 0x7f800000;
const S_QNAN: u32 = 0x7fc00000;
const S_QUIET: u32 = 0x00400000;
const S_HIDDEN: u32 = 0x00800000;

// The native fast paths can be switched off (the tests do, to exercise the software path
// on every input); the software path alone is complete.
const FAST_PATHS: bool = true;

// ---------------------------------------------------------------------------------------
// Classification helpers

@inline function isNaN64(a: u64): bool { return (a & D_ABS) > D_INF; }
@inline function isSNaN64(a: u64): bool { return isNaN64(a) && (a & D_QUIET) == 0; }
@inline function isInf64(a: u64): bool { return (a & D_ABS) == D_INF; }
@inline function isZero64(a: u64): bool { return (a & D_ABS) == 0; }
@inline function isNaN32(a: u32): bool { return (a & S_ABS) > S_INF; }
@inline function isSNaN32(a: u32): bool { return isNaN32(a) && (a & S_QUIET) == 0; }
@inline function isInf32(a: u32): bool { return (a & S_ABS) == S_INF; }
@inline function isZero32(a: u32): bool { return (a & S_ABS) == 0; }
@inline function isFiniteF64(x: f64): bool { return (reinterpret<u64>(x) & D_INF) != D_INF; }

// |bits| in (2^emin, inf): a finite result that can be neither tiny nor overflowed. The
// smallest normal itself is excluded because a value rounded up to it may still be tiny.
@inline function isSafeNormal64(bits: u64): bool {
  return (bits & D_ABS) - (D_HIDDEN + 1) < D_INF - D_HIDDEN - 1;
}
@inline function isSafeNormal32(bits: u32): bool {
  return (bits & S_ABS) - (S_HIDDEN + 1) < S_INF - S_HIDDEN - 1;
}

@inline function bitLen(x: u64): i32 { return 64 - <i32>clz(x); }
@inline function oddPart(x: u64): u64 { return x >> ctz(x); }
// Integer significand of a finite binary64 (not normalized for subnormals).
@inline function sigBits64(a: u64): u64 {
  return (a & D_MANT) | ((a & D_INF) != 0 ? D_HIDDEN : 0);
}

@inline function sign64(neg: bool): u64 { return neg ? D_SIGN : 0; }
@inline function sign32(neg: bool): u32 { return neg ? S_SIGN : 0; }

// A NaN result is always canonical; a signaling NaN operand also raises NV.
function nan64(a: u64, b: u64): u64 {
  if (isSNaN64(a) || isSNaN64(b)) fpFlags |= NV;
  return D_QNAN;
}
function invalid64(): u64 {
  fpFlags |= NV;
  return D_QNAN;
}

// Sign of an exact zero sum: the addends' common sign, otherwise -0 only when rounding down.
@inline function zeroSumNeg(na: bool, nb: bool, rm: u32): bool {
  return na == nb ? na : rm == RDN;
}

// ---------------------------------------------------------------------------------------
// Rounding and packing (one routine for both formats)

// What to add below the last kept place so that truncation then rounds per rm.
@inline function roundIncrement(sig: u64, rbits: i32, neg: bool, rm: u32): u64 {
  const half = <u64>1 << <u64>(rbits - 1);
  if (rm == RNE) return half - 1 + ((sig >> <u64>rbits) & 1); // a tie goes up only from an odd place
  if (rm == RMM) return half;
  const away = rm == RDN ? neg : rm == RUP ? !neg : false;
  return away ? (half << 1) - 1 : 0;
}

// sig >> n (n >= 1), ORing whatever is shifted out into bit 0.
@inline function shiftRightJam(sig: u64, n: i32): u64 {
  if (n >= 64) return <u64>(sig != 0);
  return (sig >> <u64>n) | <u64>((sig << <u64>(64 - n)) != 0);
}

// An overflowed result is infinite unless the rounding direction points back toward zero,
// in which case it is the largest finite number.
function overflow(neg: bool, rm: u32, dbl: bool): u64 {
  fpFlags |= OF | NX;
  const toInf = rm == RNE || rm == RMM || (rm == RDN && neg) || (rm == RUP && !neg);
  const inf: u64 = dbl ? D_INF : <u64>S_INF;
  const sign: u64 = neg ? (dbl ? D_SIGN : <u64>S_SIGN) : 0;
  return (toInf ? inf : inf - 1) | sign; // inf - 1 is the largest finite pattern
}

// Rounds (-1)^neg * sig * 2^exp (sig != 0) to binary64 (dbl) or binary32 (in the low 32
// bits), raising NX, UF and OF. Bit 0 of sig may be a sticky bit standing for nonzero bits
// cut off below it; that is sound when sig has at least two bits more than the target
// precision, so the cut-off part can never straddle a rounding boundary. All callers keep
// at least 55 significant bits in that case.
function roundPack(neg: bool, exp: i32, sig: u64, rm: u32, dbl: bool): u64 {
  const mbits = dbl ? 52 : 23;
  const bias = dbl ? 1023 : 127;
  const expMax = dbl ? 2047 : 255; // all-ones exponent field
  // Leading one to bit 62: bit 63 is left free for the carry of a round-up.
  const lz = <i32>clz(sig);
  if (lz == 0) {
    sig = (sig >> 1) | (sig & 1);
    exp += 1;
  } else {
    sig <<= <u64>(lz - 1);
    exp -= lz - 1;
  }
  const rbits = 62 - mbits; // bits below the result's last place
  let e = exp + 62 + bias; // biased exponent of the leading one
  if (e >= expMax) return overflow(neg, rm, dbl);
  let tiny = false;
  if (e <= 0) {
    // RISC-V detects tininess after rounding: a value just below 2^emin is not tiny if
    // rounding it to full precision with an unbounded exponent already reaches 2^emin.
    tiny = e < 0 || ((sig + roundIncrement(sig, rbits, neg, rm)) >> 63) == 0;
    sig = shiftRightJam(sig, 1 - e);
    e = 1; // subnormal: exponent field 0 after the "- 1" below
  }
  if ((sig & ((<u64>1 << <u64>rbits) - 1)) != 0) fpFlags |= tiny ? NX | UF : NX;
  // The significand's leading one (if still at bit 62) lands on the exponent field's lowest
  // bit, so (e - 1) plus it gives e; a carry out of the significand bumps the exponent.
  const abs = (<u64>(e - 1) << <u64>mbits) + ((sig + roundIncrement(sig, rbits, neg, rm)) >> <u64>rbits);
  if (abs >= <u64>expMax << <u64>mbits) return overflow(neg, rm, dbl);
  return abs | (neg ? <u64>1 << <u64>(dbl ? 63 : 31) : 0);
}

// ---------------------------------------------------------------------------------------
// Multi-word helpers for the binary64 software path. Results go to module globals because a
// function cannot return two values without allocating.

let uSig: u64 = 0; // unpack64: normalized significand, leading one at bit 52
let uExp: i32 = 0; //           value = uSig * 2^uExp
let wHi: u64 = 0; // a 128-bit significand
let wLo: u64 = 0;

// Finite nonzero binary64 to (uSig, uExp), normalizing subnormals.
function unpack64(a: u64): void {
  const e = <i32>((a >> 52) & 0x7ff);
  const m = a & D_MANT;
  if (e == 0) {
    const s = <i32>clz(m) - 11;
    uSig = m << <u64>s;
    uExp = -1074 - s;
  } else {
    uSig = m | D_HIDDEN;
    uExp = e - 1075;
  }
}

// wHi:wLo = a * b, from 32-bit halves.
function mul128(a: u64, b: u64): void {
  const a0 = a & 0xffffffff, a1 = a >> 32, b0 = b & 0xffffffff, b1 = b >> 32;
  const p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0;
  const mid = (p00 >> 32) + (p01 & 0xffffffff) + (p10 & 0xffffffff);
  wLo = (mid << 32) | (p00 & 0xffffffff);
  wHi = a1 * b1 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
}

// wHi:wLo >>= n, jamming shifted-out bits into bit 0.
function shr128Jam(n: i32): void {
  if (n <= 0) return;
  const hi = wHi, lo = wLo;
  if (n < 64) {
    wLo = (lo >> <u64>n) | (hi << <u64>(64 - n)) | <u64>((lo << <u64>(64 - n)) != 0);
    wHi = hi >> <u64>n;
  } else if (n < 128) {
    const lost = lo != 0 || (n > 64 && (hi << <u64>(128 - n)) != 0);
    wLo = (hi >> <u64>(n - 64)) | <u64>lost;
    wHi = 0;
  } else {
    wLo = <u64>((hi | lo) != 0);
    wHi = 0;
  }
}

// -1, 0, 1 as ah:al is below, equal to, above bh:bl.
@inline function cmp128(ah: u64, al: u64, bh: u64, bl: u64): i32 {
  if (ah != bh) return ah > bh ? 1 : -1;
  return al == bl ? 0 : al > bl ? 1 : -1;
}

// Rounds (-1)^neg * (wHi:wLo) * 2^exp to binary64, folding the low bits into a sticky bit.
function roundPack128(neg: bool, exp: i32, rm: u32): u64 {
  const hi = wHi, lo = wLo;
  if (hi == 0) return roundPack(neg, exp, lo, rm, true);
  const n = <i32>clz(hi);
  if (n == 0) return roundPack(neg, exp + 64, hi | <u64>(lo != 0), rm, true);
  const sig = (hi << <u64>n) | (lo >> <u64>(64 - n)) | <u64>((lo << <u64>n) != 0);
  return roundPack(neg, exp + 64 - n, sig, rm, true);
}

// Exact error of the round-to-nearest sum s = fl(x + y) (Knuth's TwoSum: no ordering
// needed, and an inexact binary sum can never be tiny, so no underflow concerns). With
// operands near the overflow threshold an intermediate can overflow, giving NaN.
@inline function twoSumErr(x: f64, y: f64, s: f64): f64 {
  const yv = s - x;
  return (x - (s - yv)) + (y - yv);
}

// 2^27 + 1: Veltkamp's constant, splitting a binary64 into two halves of at most 26 bits
// whose pairwise products are exact.
const SPLIT: f64 = 134217729.0;

// Exact error of the round-to-nearest product p = fl(x * y) (Dekker's TwoProduct). Valid
// only while nothing overflows (which then shows up as inf/NaN) and the product's low bits
// stay above the subnormal range; callers check exponents.
@inline function twoProdErr(x: f64, y: f64, p: f64): f64 {
  let t = SPLIT * x;
  const xh = t - (t - x), xl = x - xh;
  t = SPLIT * y;
  const yh = t - (t - y), yl = y - yh;
  return ((xh * yh - p) + xh * yl + xl * yh) + xl * yl;
}

// A round-to-nearest binary64 result s (normal, inexact) re-rounded for RTZ/RDN/RUP, given
// whether the exact value lies above |s| in magnitude. Those modes only need the side, which
// 4*sig +- 1 encodes as a sticky significand. (Not for RMM, which must know about exact ties.)
function redirect64(sb: u64, up: bool, rm: u32): u64 {
  const sig = ((sb & D_MANT) | D_HIDDEN) << 2;
  return roundPack((sb >> 63) != 0, <i32>((sb >> 52) & 0x7ff) - 1077, up ? sig + 1 : sig - 1, rm, true);
}

// ---------------------------------------------------------------------------------------
// binary64 arithmetic

export function f64_add(a: u64, b: u64, rm: u32): u64 {
  const x = reinterpret<f64>(a), y = reinterpret<f64>(b);
  const s = x + y;
  const sb = reinterpret<u64>(s);
  // A finite sum means finite operands and a sum that did not overflow.
  if (FAST_PATHS && (sb & D_INF) != D_INF) {
    const err = twoSumErr(x, y, s);
    if (err == 0) {
      // Exact. Only a zero depends on rm: x + (-x) is -0 when rounding down (native gives +0).
      if (s == 0 && rm == RDN) return (a | b) & D_SIGN;
      return sb;
    }
    // Inexact sums are far from the subnormal range: only the side of err matters. TwoSum
    // itself can overflow for operands near the top of the range (err is then NaN).
    if (isFiniteF64(err)) {
      if (rm == RNE) {
        fpFlags |= NX;
        return sb;
      }
      if (rm != RMM) return redirect64(sb, (err > 0) == (s > 0), rm);
    }
  }
  return add64Slow(a, b, rm);
}

export function f64_sub(a: u64, b: u64, rm: u32): u64 {
  return f64_add(a, b ^ D_SIGN, rm);
}

function add64Slow(a: u64, b: u64, rm: u32): u64 {
  if (isNaN64(a) || isNaN64(b)) return nan64(a, b);
  if (isInf64(a)) return isInf64(b) && ((a ^ b) & D_SIGN) != 0 ? invalid64() : a;
  if (isInf64(b)) return b;
  let na = (a >> 63) != 0, nb = (b >> 63) != 0;
  if (isZero64(a)) return isZero64(b) ? sign64(zeroSumNeg(na, nb, rm)) : b;
  if (isZero64(b)) return a;
  // Leading ones at bit 61: room for a carry, and nine guard bits below the 53.
  unpack64(a);
  let sa = uSig << 9, ea = uExp;
  unpack64(b);
  let sb = uSig << 9, eb = uExp;
  if (ea < eb) {
    const ts = sa; sa = sb; sb = ts;
    const te = ea; ea = eb; eb = te;
    const tn = na; na = nb; nb = tn;
  }
  // Jamming only happens for a shift past the guard bits; the difference then keeps >= 60 bits.
  if (ea > eb) sb = shiftRightJam(sb, ea - eb);
  if (na == nb) return roundPack(na, ea - 9, sa + sb, rm, true);
  if (sa == sb) return sign64(rm == RDN);
  return sa > sb ? roundPack(na, ea - 9, sa - sb, rm, true) : roundPack(nb, ea - 9, sb - sa, rm, true);
}

export function f64_mul(a: u64, b: u64, rm: u32): u64 {
  if (FAST_PATHS && rm == RNE) {
    const pb = reinterpret<u64>(reinterpret<f64>(a) * reinterpret<f64>(b));
    if (isSafeNormal64(pb)) {
      // The product is oa * ob * 2^k for the odd parts oa, ob of the significands: exact iff
      // oa * ob fits in 53 bits (the test is overflow-free when the lengths sum to <= 54).
      const oa = oddPart(sigBits64(a)), ob = oddPart(sigBits64(b));
      if (bitLen(oa) + bitLen(ob) > 54 || oa * ob >= D_HIDDEN << 1) fpFlags |= NX;
      return pb;
    }
  }
  return mul64Slow(a, b, rm);
}

function mul64Slow(a: u64, b: u64, rm: u32): u64 {
  const neg = ((a ^ b) >> 63) != 0;
  if (isNaN64(a) || isNaN64(b)) return nan64(a, b);
  if (isInf64(a) || isInf64(b)) return isZero64(a) || isZero64(b) ? invalid64() : D_INF | sign64(neg);
  if (isZero64(a) || isZero64(b)) return sign64(neg);
  unpack64(a);
  const ma = uSig, ea = uExp;
  unpack64(b);
  mul128(ma, uSig);
  return roundPack128(neg, ea + uExp, rm);
}

export function f64_div(a: u64, b: u64, rm: u32): u64 {
  if (FAST_PATHS && rm == RNE) {
    const qb = reinterpret<u64>(reinterpret<f64>(a) / reinterpret<f64>(b));
    if (isSafeNormal64(qb)) {
      // q is exact iff q * b == a. In odd parts that is oq * ob == oa: the powers of two then
      // agree too, since q * b is within an ulp of a.
      const oq = oddPart(sigBits64(qb)), ob = oddPart(sigBits64(b)), oa = oddPart(sigBits64(a));
      if (bitLen(oq) + bitLen(ob) > 54 || oq * ob != oa) fpFlags |= NX;
      return qb;
    }
  }
  return div64Slow(a, b, rm);
}

function div64Slow(a: u64, b: u64, rm: u32): u64 {
  const neg = ((a ^ b) >> 63) != 0;
  if (isNaN64(a) || isNaN64(b)) return nan64(a, b);
  if (isInf64(a)) return isInf64(b) ? invalid64() : D_INF | sign64(neg);
  if (isInf64(b)) return sign64(neg);
  if (isZero64(b)) {
    if (isZero64(a)) return invalid64();
    fpFlags |= DZ;
    return D_INF | sign64(neg);
  }
  if (isZero64(a)) return sign64(neg);
  unpack64(a);
  const ma = uSig, ea = uExp;
  unpack64(b);
  const mb = uSig, eb = uExp;
  // Native division of the two 53-bit integers is correctly rounded: q = mq * 2^-sh lies
  // within half an ulp of ma/mb (in (1/2, 2), so sh is 52 or 53). An exact 128-bit comparison
  // of ma * 2^sh with mq * mb tells on which side the true quotient is. It is never exactly
  // halfway (that would need 54 significant bits in an exact quotient of 53-bit numbers).
  const qb = reinterpret<u64>(<f64>ma / <f64>mb);
  const mq = (qb & D_MANT) | D_HIDDEN;
  const sh = 1075 - <i32>(qb >> 52);
  mul128(mq, mb);
  const d = cmp128(ma >> <u64>(64 - sh), ma << <u64>sh, wHi, wLo);
  return roundPack(neg, ea - eb - sh - 2, (mq << 2) + <u64>d, rm, true);
}

export function f64_sqrt(a: u64, rm: u32): u64 {
  // Positive, finite, nonzero: the root is normal and can neither overflow nor be tiny.
  if (FAST_PATHS && rm == RNE && a - 1 < D_INF - 1) {
    const sb = reinterpret<u64>(sqrt<f64>(reinterpret<f64>(a)));
    // Exact iff s * s == a, i.e. os * os == oa in odd parts (same argument as division).
    const os = oddPart(sigBits64(sb)), oa = oddPart(sigBits64(a));
    if (bitLen(os) > 27 || os * os != oa) fpFlags |= NX;
    return sb;
  }
  return sqrt64Slow(a, rm);
}

function sqrt64Slow(a: u64, rm: u32): u64 {
  if (isNaN64(a)) return nan64(a, a);
  if (isZero64(a)) return a; // sqrt(-0) = -0
  if ((a >> 63) != 0) return invalid64();
  if (isInf64(a)) return a;
  unpack64(a);
  let m = uSig, e = uExp;
  if ((e & 1) != 0) { // make the exponent even: sqrt(m * 2^e) = sqrt(m) * 2^(e/2)
    m <<= 1;
    e -= 1;
  }
  // m < 2^54 with at most 53 significant bits converts exactly; the native root is correctly
  // rounded, s = ms * 2^-sh/2 in [2^26, 2^27], and comparing m * 2^sh with ms^2 exactly gives
  // the side of the true root. (Never a tie: a 54-bit midpoint squared has too many bits.)
  const sb = reinterpret<u64>(sqrt<f64>(<f64>m));
  const ms = (sb & D_MANT) | D_HIDDEN;
  const es = <i32>(sb >> 52) - 1075;
  const sh = -2 * es;
  mul128(ms, ms);
  const d = cmp128(m >> <u64>(64 - sh), m << <u64>sh, wHi, wLo);
  return roundPack(false, (e >> 1) + es - 2, (ms << 2) + <u64>d, rm, true);
}

export function f64_fma(a: u64, b: u64, c: u64, rm: u32): u64 {
  const ea = (a >> 52) & 0x7ff, eb = (b >> 52) & 0x7ff, ec = (c >> 52) & 0x7ff;
  // Fast path: Boldo & Melquiond's emulation of FMA with rounding to odd (IEEE TC 2008):
  // a*b = uh + ul and c + uh = th + tl exactly, v = tl + ul rounded to odd, and then
  // fl(th + v) is the correctly rounded a*b + c. It needs ul exact: normal a and b with
  // 2^-946 <= |a*b| (~100 bits above the subnormal range). |a*b| < 2^1000 and |c| < 2^999
  // keep the error-free transforms clear of overflow; splitting a huge factor can still
  // overflow, which reaches r as NaN and falls back.
  if (FAST_PATHS && rm == RNE && ea - 1 < 0x7fe && eb - 1 < 0x7fe && ea + eb >= 1100 && ea + eb <= 3044 && ec < 2022) {
    const x = reinterpret<f64>(a), y = reinterpret<f64>(b), z = reinterpret<f64>(c);
    const uh = x * y;
    const ul = twoProdErr(x, y, uh);
    const th = z + uh;
    const tl = twoSumErr(z, uh, th);
    let v = tl + ul;
    const ev = twoSumErr(tl, ul, v);
    // Round to odd: an inexact v with an even last bit moves one ulp toward the exact sum.
    // (Not when v is inf from a spurious overflow: stepping down would hide it.)
    const vb = reinterpret<u64>(v);
    if (ev != 0 && (vb & 1) == 0 && (vb & D_INF) != D_INF) {
      v = reinterpret<f64>((ev > 0) == (v > 0) ? vb + 1 : vb - 1);
    }
    const r = th + v;
    const rb = reinterpret<u64>(r);
    if (isSafeNormal64(rb)) {
      // a*b + c - r = (th + v - r) + (tl + ul - v). An inexact v means the exact result needs
      // more than 53 bits; otherwise only the last addition's error is left.
      if (ev != 0 || twoSumErr(th, v, r) != 0) fpFlags |= NX;
      return rb;
    }
  }
  return fma64Slow(a, b, c, rm);
}

function fma64Slow(a: u64, b: u64, c: u64, rm: u32): u64 {
  const pNeg = ((a ^ b) >> 63) != 0, cNeg = (c >> 63) != 0;
  // RISC-V: inf * 0 is invalid even when the addend is a quiet NaN.
  const infTimesZero = (isInf64(a) && isZero64(b)) || (isZero64(a) && isInf64(b));
  if (infTimesZero || isNaN64(a) || isNaN64(b) || isNaN64(c)) {
    if (infTimesZero || isSNaN64(a) || isSNaN64(b) || isSNaN64(c)) fpFlags |= NV;
    return D_QNAN;
  }
  if (isInf64(a) || isInf64(b)) return isInf64(c) && cNeg != pNeg ? invalid64() : D_INF | sign64(pNeg);
  if (isInf64(c)) return c;
  if (isZero64(a) || isZero64(b)) return isZero64(c) ? sign64(zeroSumNeg(pNeg, cNeg, rm)) : c;
  unpack64(a);
  const ma = uSig, ea = uExp;
  unpack64(b);
  mul128(ma, uSig); // leading one at bit 104 or 105
  let ep = ea + uExp;
  if (isZero64(c)) return roundPack128(pNeg, ep, rm);
  // Product and addend as 128-bit significands with leading ones at bits 124-125, so the
  // sum cannot carry out and the smaller one has >= 20 zero bits below before any jamming.
  let pHi = (wHi << 20) | (wLo >> 44), pLo = wLo << 20;
  ep -= 20;
  unpack64(c);
  let cHi = uSig << 9, cLo: u64 = 0;
  const ec = uExp - 73;
  let e = ep;
  if (ep >= ec) {
    wHi = cHi; wLo = cLo;
    shr128Jam(ep - ec);
    cHi = wHi; cLo = wLo;
  } else {
    wHi = pHi; wLo = pLo;
    shr128Jam(ec - ep);
    pHi = wHi; pLo = wLo;
    e = ec;
  }
  let neg = pNeg;
  if (pNeg == cNeg) {
    wLo = pLo + cLo;
    wHi = pHi + cHi + <u64>(wLo < pLo);
  } else {
    const d = cmp128(pHi, pLo, cHi, cLo);
    if (d == 0) return sign64(rm == RDN); // exact cancellation
    if (d < 0) { // |c| larger: swap so that we subtract the smaller magnitude
      const th = pHi, tl = pLo;
      pHi = cHi; pLo = cLo; cHi = th; cLo = tl;
      neg = cNeg;
    }
    wLo = pLo - cLo;
    wHi = pHi - cHi - <u64>(pLo < cLo);
  }
  return roundPack128(neg, e, rm);
}

// ---------------------------------------------------------------------------------------
// binary32 arithmetic, evaluated in binary64 (see the header)

@inline function widen(a: u32): f64 { return <f64>reinterpret<f32>(a); }

// Rounds a finite nonzero binary64 v to binary32. err is (exact result - v) when v was itself
// rounded, or 0 when v is exact or its bits alone decide every binary32 rounding.
function round32(v: f64, err: f64, rm: u32): u32 {
  if (FAST_PATHS && rm == RNE && err == 0) {
    // Native demotion rounds to nearest-even; use it where it cannot overflow or be tiny.
    const r = <f32>v;
    const rb = reinterpret<u32>(r);
    if (isSafeNormal32(rb)) {
      if (<f64>r != v) fpFlags |= NX;
      return rb;
    }
  }
  const vb = reinterpret<u64>(v);
  const neg = (vb >> 63) != 0;
  const e = <i32>((vb >> 52) & 0x7ff);
  let sig = sigBits64(vb) << 2;
  // A nonzero err puts the exact value strictly between v and its neighbour; +-1 below v's
  // last bit records on which side, as a sticky bit.
  if (err != 0) sig = (err > 0) != neg ? sig + 1 : sig - 1;
  return <u32>roundPack(neg, (e != 0 ? e : 1) - 1077, sig, rm, false);
}

// The result of a binary32 operation whose binary64 evaluation r is inf or NaN, which only
// inf/NaN operands (or division by zero) produce. Infinities are exact; a NaN is invalid
// unless some operand was a quiet NaN.
function nonFinite32(r: f64, a: u32, b: u32): u32 {
  if (r != r) {
    if (isSNaN32(a) || isSNaN32(b) || !(isNaN32(a) || isNaN32(b))) fpFlags |= NV;
    return S_QNAN;
  }
  return reinterpret<u32>(<f32>r);
}

export function f32_add(a: u32, b: u32, rm: u32): u32 {
  const x = widen(a), y = widen(b);
  const s = x + y;
  if (!isFiniteF64(s)) return nonFinite32(s, a, b);
  if (s == 0) return sign32(zeroSumNeg((a >> 31) != 0, (b >> 31) != 0, rm));
  return round32(s, twoSumErr(x, y, s), rm);
}

export function f32_sub(a: u32, b: u32, rm: u32): u32 {
  return f32_add(a, b ^ S_SIGN, rm);
}

export function f32_mul(a: u32, b: u32, rm: u32): u32 {
  const p = widen(a) * widen(b); // exact
  if (!isFiniteF64(p)) return nonFinite32(p, a, b);
  if (p == 0) return sign32(((a ^ b) >> 31) != 0);
  return round32(p, 0, rm);
}

export function f32_div(a: u32, b: u32, rm: u32): u32 {
  const q = widen(a) / widen(b);
  if (!isFiniteF64(q)) {
    if (isZero32(b) && (a & S_ABS) < S_INF && !isZero32(a)) fpFlags |= DZ;
    return nonFinite32(q, a, b);
  }
  if (q == 0) return sign32(((a ^ b) >> 31) != 0);
  return round32(q, 0, rm);
}

export function f32_sqrt(a: u32, rm: u32): u32 {
  const s = sqrt<f64>(widen(a));
  if (!isFiniteF64(s)) return nonFinite32(s, a, a);
  if (s == 0) return a; // sqrt(-0) = -0
  return round32(s, 0, rm);
}

export function f32_fma(a: u32, b: u32, c: u32, rm: u32): u32 {
  const z = widen(c);
  const p = widen(a) * widen(b); // exact
  const s = p + z;
  if (!isFiniteF64(s)) {
    if (s != s) {
      // RISC-V: inf * 0 is invalid even when the addend is a quiet NaN.
      const infTimesZero = (isInf32(a) && isZero32(b)) || (isZero32(a) && isInf32(b));
      const anyNaN = isNaN32(a) || isNaN32(b) || isNaN32(c);
      if (infTimesZero || !anyNaN || isSNaN32(a) || isSNaN32(b) || isSNaN32(c)) fpFlags |= NV;
      return S_QNAN;
    }
    return reinterpret<u32>(<f32>s);
  }
  if (s == 0) return sign32(zeroSumNeg(((a ^ b) >> 31) != 0, (c >> 31) != 0, rm));
  return round32(s, twoSumErr(p, z, s), rm);
}

// ---------------------------------------------------------------------------------------
// fmin/fmax (IEEE 754-2019 minimumNumber/maximumNumber, -0 < +0), comparisons, fclass

export function f64_min(a: u64, b: u64): u64 { return minMax64(a, b, true); }
export function f64_max(a: u64, b: u64): u64 { return minMax64(a, b, false); }

function minMax64(a: u64, b: u64, isMin: bool): u64 {
  const an = isNaN64(a), bn = isNaN64(b);
  if (an || bn) {
    if (isSNaN64(a) || isSNaN64(b)) fpFlags |= NV;
    return an && bn ? D_QNAN : an ? b : a;
  }
  const x = reinterpret<f64>(a), y = reinterpret<f64>(b);
  // Equal means identical bits or +0/-0; OR picks -0 for min, AND picks +0 for max.
  if (x == y) return isMin ? a | b : a & b;
  return (x < y) == isMin ? a : b;
}

export function f32_min(a: u32, b: u32): u32 { return minMax32(a, b, true); }
export function f32_max(a: u32, b: u32): u32 { return minMax32(a, b, false); }

function minMax32(a: u32, b: u32, isMin: bool): u32 {
  const an = isNaN32(a), bn = isNaN32(b);
  if (an || bn) {
    if (isSNaN32(a) || isSNaN32(b)) fpFlags |= NV;
    return an && bn ? S_QNAN : an ? b : a;
  }
  const x = reinterpret<f32>(a), y = reinterpret<f32>(b);
  if (x == y) return isMin ? a | b : a & b;
  return (x < y) == isMin ? a : b;
}

// feq is a quiet comparison (NV only for signaling NaNs); flt/fle signal on any NaN.
export function f64_eq(a: u64, b: u64): bool {
  if (isSNaN64(a) || isSNaN64(b)) fpFlags |= NV;
  return reinterpret<f64>(a) == reinterpret<f64>(b);
}
export function f64_lt(a: u64, b: u64): bool {
  if (isNaN64(a) || isNaN64(b)) { fpFlags |= NV; return false; }
  return reinterpret<f64>(a) < reinterpret<f64>(b);
}
export function f64_le(a: u64, b: u64): bool {
  if (isNaN64(a) || isNaN64(b)) { fpFlags |= NV; return false; }
  return reinterpret<f64>(a) <= reinterpret<f64>(b);
}
export function f32_eq(a: u32, b: u32): bool {
  if (isSNaN32(a) || isSNaN32(b)) fpFlags |= NV;
  return reinterpret<f32>(a) == reinterpret<f32>(b);
}
export function f32_lt(a: u32, b: u32): bool {
  if (isNaN32(a) || isNaN32(b)) { fpFlags |= NV; return false; }
  return reinterpret<f32>(a) < reinterpret<f32>(b);
}
export function f32_le(a: u32, b: u32): bool {
  if (isNaN32(a) || isNaN32(b)) { fpFlags |= NV; return false; }
  return reinterpret<f32>(a) <= reinterpret<f32>(b);
}

// fclass bits: 0 -inf, 1 -normal, 2 -subnormal, 3 -0, 4 +0, 5 +subnormal, 6 +normal,
// 7 +inf, 8 signaling NaN, 9 quiet NaN. k = 0 zero, 1 subnormal, 2 normal, 3 inf mirrors
// around the middle.
@inline function classBit(neg: bool, k: u32): u32 {
  return neg ? 1 << (3 - k) : 1 << (4 + k);
}
export function f64_classify(a: u64): u32 {
  const abs = a & D_ABS;
  if (abs > D_INF) return (a & D_QUIET) != 0 ? 512 : 256;
  const k: u32 = abs == D_INF ? 3 : abs >= D_HIDDEN ? 2 : abs != 0 ? 1 : 0;
  return classBit((a >> 63) != 0, k);
}
export function f32_classify(a: u32): u32 {
  const abs = a & S_ABS;
  if (abs > S_INF) return (a & S_QUIET) != 0 ? 512 : 256;
  const k: u32 = abs == S_INF ? 3 : abs >= S_HIDDEN ? 2 : abs != 0 ? 1 : 0;
  return classBit((a >> 31) != 0, k);
}

// ---------------------------------------------------------------------------------------
// Conversions between formats

export function f32_to_f64(a: u32): u64 {
  if (isNaN32(a)) {
    if (isSNaN32(a)) fpFlags |= NV;
    return D_QNAN;
  }
  return reinterpret<u64>(widen(a)); // exact
}

export function f64_to_f32(a: u64, rm: u32): u32 {
  if (isNaN64(a)) {
    if (isSNaN64(a)) fpFlags |= NV;
    return S_QNAN;
  }
  const x = reinterpret<f64>(a);
  if (isInf64(a) || x == 0) return reinterpret<u32>(<f32>x); // exact
  return round32(x, 0, rm);
}

// ---------------------------------------------------------------------------------------
// Float to integer. Every binary32 is exact in binary64, so both formats share one path:
// round to an integral value natively (exact operations), then range-check. Out-of-range and
// NaN inputs saturate and raise NV only.

function roundIntegral(x: f64, rm: u32): f64 {
  if (rm == RNE) return nearest<f64>(x);
  if (rm == RTZ) return trunc<f64>(x);
  if (rm == RDN) return floor<f64>(x);
  if (rm == RUP) return ceil<f64>(x);
  // RMM: the fraction x - trunc(x) is exact, and so is stepping away by one below 2^53.
  const t = trunc<f64>(x);
  return abs<f64>(x - t) >= 0.5 ? t + copysign<f64>(1.0, x) : t;
}

function toI32(x: f64, rm: u32): i32 {
  if (x != x) { fpFlags |= NV; return i32.MAX_VALUE; }
  const r = roundIntegral(x, rm);
  if (r < -2147483648.0) { fpFlags |= NV; return i32.MIN_VALUE; }
  if (r > 2147483647.0) { fpFlags |= NV; return i32.MAX_VALUE; }
  if (r != x) fpFlags |= NX;
  return <i32>r;
}
function toU32(x: f64, rm: u32): u32 {
  if (x != x) { fpFlags |= NV; return u32.MAX_VALUE; }
  const r = roundIntegral(x, rm);
  if (r < 0) { fpFlags |= NV; return 0; } // -0 (from a small negative) is fine
  if (r > 4294967295.0) { fpFlags |= NV; return u32.MAX_VALUE; }
  if (r != x) fpFlags |= NX;
  return <u32>r;
}
function toI64(x: f64, rm: u32): i64 {
  if (x != x) { fpFlags |= NV; return i64.MAX_VALUE; }
  const r = roundIntegral(x, rm);
  if (r < -9223372036854775808.0) { fpFlags |= NV; return i64.MIN_VALUE; }
  if (r >= 9223372036854775808.0) { fpFlags |= NV; return i64.MAX_VALUE; }
  if (r != x) fpFlags |= NX;
  return <i64>r;
}
function toU64(x: f64, rm: u32): u64 {
  if (x != x) { fpFlags |= NV; return u64.MAX_VALUE; }
  const r = roundIntegral(x, rm);
  if (r < 0) { fpFlags |= NV; return 0; }
  if (r >= 18446744073709551616.0) { fpFlags |= NV; return u64.MAX_VALUE; }
  if (r != x) fpFlags |= NX;
  return <u64>r;
}

export function f64_to_i32(a: u64, rm: u32): i32 { return toI32(reinterpret<f64>(a), rm); }
export function f64_to_u32(a: u64, rm: u32): u32 { return toU32(reinterpret<f64>(a), rm); }
export function f64_to_i64(a: u64, rm: u32): i64 { return toI64(reinterpret<f64>(a), rm); }
export function f64_to_u64(a: u64, rm: u32): u64 { return toU64(reinterpret<f64>(a), rm); }
export function f32_to_i32(a: u32, rm: u32): i32 { return toI32(widen(a), rm); }
export function f32_to_u32(a: u32, rm: u32): u32 { return toU32(widen(a), rm); }
export function f32_to_i64(a: u32, rm: u32): i64 { return toI64(widen(a), rm); }
export function f32_to_u64(a: u32, rm: u32): u64 { return toU64(widen(a), rm); }

// ---------------------------------------------------------------------------------------
// Integer to float. Native conversion when the magnitude fits the significand (exact);
// otherwise round the magnitude in software.

@inline function fitsIn(m: u64, p: i32): bool {
  return bitLen(m) - <i32>ctz(m) <= p; // also true for 0
}

export function i32_to_f64(x: i32, rm: u32): u64 { return reinterpret<u64>(<f64>x); } // always exact
export function u32_to_f64(x: u32, rm: u32): u64 { return reinterpret<u64>(<f64>x); }

export function i64_to_f64(x: i64, rm: u32): u64 {
  const m: u64 = x < 0 ? <u64>-x : <u64>x; // -i64.MIN wraps to 2^63, right as unsigned
  if (fitsIn(m, 53)) return reinterpret<u64>(<f64>x);
  return roundPack(x < 0, 0, m, rm, true);
}
export function u64_to_f64(x: u64, rm: u32): u64 {
  if (fitsIn(x, 53)) return reinterpret<u64>(<f64>x);
  return roundPack(false, 0, x, rm, true);
}

export function i32_to_f32(x: i32, rm: u32): u32 {
  const m: u64 = x < 0 ? <u64>(-<i64>x) : <u64>x;
  if (fitsIn(m, 24)) return reinterpret<u32>(<f32>x);
  return <u32>roundPack(x < 0, 0, m, rm, false);
}
export function u32_to_f32(x: u32, rm: u32): u32 {
  if (fitsIn(<u64>x, 24)) return reinterpret<u32>(<f32>x);
  return <u32>roundPack(false, 0, <u64>x, rm, false);
}
export function i64_to_f32(x: i64, rm: u32): u32 {
  const m: u64 = x < 0 ? <u64>-x : <u64>x;
  if (fitsIn(m, 24)) return reinterpret<u32>(<f32>x);
  return <u32>roundPack(x < 0, 0, m, rm, false);
}
export function u64_to_f32(x: u64, rm: u32): u32 {
  if (fitsIn(x, 24)) return reinterpret<u32>(<f32>x);
  return <u32>roundPack(false, 0, x, rm, false);
}
