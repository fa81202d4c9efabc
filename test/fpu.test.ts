// Tests assembly/fpu.ts against an independent oracle: exact rational arithmetic on BigInt
// (values m * 2^e, quotients as fractions, square roots compared through their squares),
// rounded by locating the exact value between consecutive representable numbers. Results
// and fflags must match bit for bit, in all five rounding modes.
import { describe, it, expect, beforeAll } from "vitest";
import asc from "assemblyscript/asc";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { prng } from "./prng";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const FPU_SOURCE = path.join(ROOT, "assembly", "fpu.ts");

const RNE = 0, RTZ = 1, RDN = 2, RUP = 3, RMM = 4;
const RMS = [RNE, RTZ, RDN, RUP, RMM];
const RM_NAME = ["RNE", "RTZ", "RDN", "RUP", "RMM"];
const NV = 16, DZ = 8, OF = 4, UF = 2, NX = 1;

// ---------------------------------------------------------------------------------------
// Harness compilation

type Fn = (...args: any[]) => any;
type Fpu = Record<string, Fn> & { getFlags: () => number; clearFlags: () => void };

// Compiles test/wasm/fpu-harness.ts in memory. `mutate` may rewrite fpu.ts first (used to
// check that deliberately broken rounding is caught).
async function compileHarness(mutate?: (src: string) => string, optimize = "-O3"): Promise<Fpu> {
  let binary: Uint8Array | null = null;
  const log: string[] = [];
  const sink = { write: (s: any) => { log.push(String(s)); } };
  const { error } = await asc.main(
    ["test/wasm/fpu-harness.ts", "--outFile", "fpu.wasm", "--runtime", "stub", optimize, "--noAssert",
      "--baseDir", ROOT, "--disable", "simd"],
    {
      readFile: async (name: string, baseDir: string) => {
        const file = path.resolve(baseDir, name);
        // The project's asconfig.json imports a shared memory; the harness owns its memory.
        if (path.basename(file) === "asconfig.json") return null;
        try {
          const text = await readFile(file, "utf8");
          return mutate && file === FPU_SOURCE ? mutate(text) : text;
        } catch {
          return null;
        }
      },
      writeFile: (name: string, contents: Uint8Array | string) => {
        if (name.endsWith(".wasm")) binary = contents as Uint8Array;
      },
      listFiles: () => [],
      stdout: sink as any,
      stderr: sink as any,
    },
  );
  if (error || !binary) throw new Error(`asc failed: ${error}\n${log.join("")}`);
  const module = await WebAssembly.compile(new Uint8Array(binary as Uint8Array));
  const instance = await WebAssembly.instantiate(module, {
    env: { abort: () => { throw new Error("abort"); } },
  });
  return instance.exports as unknown as Fpu;
}

// ---------------------------------------------------------------------------------------
// Formats and decoding

interface Fmt {
  name: "f32" | "f64";
  width: number;
  p: number; // precision including the hidden bit
  mbits: number;
  ebits: number;
  bias: number;
  emin: number;
  emax: number;
}
const F32: Fmt = { name: "f32", width: 32, p: 24, mbits: 23, ebits: 8, bias: 127, emin: -126, emax: 127 };
const F64: Fmt = { name: "f64", width: 64, p: 53, mbits: 52, ebits: 11, bias: 1023, emin: -1022, emax: 1023 };
const B = (n: number) => BigInt(n);

const signBit = (f: Fmt) => 1n << B(f.width - 1);
const infBits = (f: Fmt) => ((1n << B(f.ebits)) - 1n) << B(f.mbits);
const qnanBits = (f: Fmt) => infBits(f) | (1n << B(f.mbits - 1));
const maxBits = (f: Fmt) => infBits(f) - 1n;

type Kind = "zero" | "finite" | "inf" | "qnan" | "snan";
interface Dec { kind: Kind; neg: boolean; m: bigint; e: number; sub: boolean } // |x| = m * 2^e

function decode(bits: bigint, f: Fmt): Dec {
  const neg = ((bits >> B(f.width - 1)) & 1n) === 1n;
  const E = Number((bits >> B(f.mbits)) & ((1n << B(f.ebits)) - 1n));
  const M = bits & ((1n << B(f.mbits)) - 1n);
  if (E === (1 << f.ebits) - 1) {
    if (M === 0n) return { kind: "inf", neg, m: 0n, e: 0, sub: false };
    return { kind: (M >> B(f.mbits - 1)) & 1n ? "qnan" : "snan", neg, m: 0n, e: 0, sub: false };
  }
  if (E === 0) return { kind: M === 0n ? "zero" : "finite", neg, m: M, e: f.emin - f.mbits, sub: M !== 0n };
  return { kind: "finite", neg, m: M | (1n << B(f.mbits)), e: E - f.bias - f.mbits, sub: false };
}
const isNaN_ = (d: Dec) => d.kind === "qnan" || d.kind === "snan";

// Packs the representable value (-1)^neg * n * 2^q.
function encode(neg: boolean, n: bigint, q: number, f: Fmt): bigint {
  const s = neg ? signBit(f) : 0n;
  if (n === 0n) return s;
  const P = B(f.p);
  while (n >= 1n << P) {
    if (n & 1n) throw new Error("encode: not representable");
    n >>= 1n;
    q++;
  }
  const qmin = f.emin - (f.p - 1);
  while (n < 1n << (P - 1n) && q > qmin) {
    n <<= 1n;
    q--;
  }
  if (q < qmin) throw new Error("encode: below subnormal range");
  if (n < 1n << (P - 1n)) return s | n; // subnormal
  const E = q + (f.p - 1) + f.bias;
  if (E >= (1 << f.ebits) - 1) throw new Error("encode: overflow");
  return s | (B(E) << B(f.mbits)) | (n - (1n << (P - 1n)));
}

// ---------------------------------------------------------------------------------------
// Exact reals and rounding

function bitlen(x: bigint): number {
  if (x === 0n) return 0;
  const h = x.toString(16);
  return (h.length - 1) * 4 + (32 - Math.clz32(parseInt(h[0], 16)));
}
function isqrt(n: bigint): bigint {
  if (n < 2n) return n;
  let x = 1n << B((bitlen(n) + 1) >> 1); // >= sqrt(n); Newton then decreases to the floor
  for (;;) {
    const y = (x + n / x) >> 1n;
    if (y >= x) return x;
    x = y;
  }
}

// A positive real: num/den, or sqrt(num/den) when sqrt is set.
interface Real { num: bigint; den: bigint; sqrt: boolean }
const dyadic = (m: bigint, e: number): Real =>
  e >= 0 ? { num: m << B(e), den: 1n, sqrt: false } : { num: m, den: 1n << B(-e), sqrt: false };

// X / 2^k as a fraction (for a square root: its square).
function scaled(X: Real, k: number): [bigint, bigint] {
  const s = X.sqrt ? 2 * k : k;
  return s >= 0 ? [X.num, X.den << B(s)] : [X.num << B(-s), X.den];
}
function floorScaled(X: Real, k: number): bigint {
  const [n, d] = scaled(X, k);
  return X.sqrt ? isqrt(n / d) : n / d;
}
// sign(X / 2^k - a / b) for a >= 0, b > 0.
function cmpScaled(X: Real, k: number, a: bigint, b: bigint): number {
  const [n, d] = scaled(X, k);
  const l = X.sqrt ? n * b * b : n * b;
  const r = X.sqrt ? a * a * d : a * d;
  return l > r ? 1 : l < r ? -1 : 0;
}
function floorLog2(X: Real): number {
  let e = bitlen(X.num) - bitlen(X.den);
  if (X.sqrt) e = Math.floor(e / 2);
  for (;;) {
    const fl = floorScaled(X, e);
    if (fl === 0n) e--;
    else if (fl >= 2n) e++;
    else return e;
  }
}
// sign(n * 2^q - 2^k)
function cmpPow2(n: bigint, q: number, k: number): number {
  const l = q >= k ? n << B(q - k) : n;
  const r = q >= k ? 1n : 1n << B(k - q);
  return l > r ? 1 : l < r ? -1 : 0;
}

interface Res { bits: bigint; flags: number }

// Rounds (-1)^neg * X to the format as IEEE 754 / RISC-V specify.
function roundReal(neg: boolean, X: Real, f: Fmt, rm: number): Res {
  const e = floorLog2(X);
  // Nearest multiples of 2^q around X, and the one rm picks.
  const pick = (q: number) => {
    const lo = floorScaled(X, q);
    const exact = cmpScaled(X, q, lo, 1n) === 0;
    const vsHalf = cmpScaled(X, q, 2n * lo + 1n, 2n);
    let up = false;
    if (rm === RNE) up = vsHalf > 0 || (vsHalf === 0 && (lo & 1n) === 1n);
    else if (rm === RMM) up = vsHalf >= 0;
    else if (rm === RDN) up = neg && !exact;
    else if (rm === RUP) up = !neg && !exact;
    return { n: up ? lo + 1n : lo, exact };
  };
  // Rounded to p bits with an unbounded exponent range: decides overflow and tininess.
  const qU = e - (f.p - 1);
  const u = pick(qU);
  if (cmpPow2(u.n, qU, f.emax + 1) >= 0) {
    const toInf = rm === RNE || rm === RMM || (rm === RDN && neg) || (rm === RUP && !neg);
    const mag = toInf ? infBits(f) : maxBits(f);
    return { bits: (neg ? signBit(f) : 0n) | mag, flags: OF | NX };
  }
  const tiny = cmpPow2(u.n, qU, f.emin) < 0;
  const q = Math.max(e, f.emin) - (f.p - 1);
  const r = pick(q);
  const flags = r.exact ? 0 : tiny ? NX | UF : NX;
  return { bits: encode(neg, r.n, q, f), flags };
}

// ---------------------------------------------------------------------------------------
// Oracle operations

const NAN = (f: Fmt, flags = 0): Res => ({ bits: qnanBits(f), flags });
const INF = (f: Fmt, neg: boolean, flags = 0): Res => ({ bits: infBits(f) | (neg ? signBit(f) : 0n), flags });
const ZERO = (f: Fmt, neg: boolean): Res => ({ bits: neg ? signBit(f) : 0n, flags: 0 });

// Signed exact value of a finite operand as n * 2^e.
const signedM = (d: Dec) => (d.neg ? -d.m : d.m);

// Rounds the exact sum n1 * 2^e1 + n2 * 2^e2 whose addends have signs s1, s2 (for zeros).
function roundSum(n1: bigint, e1: number, s1: boolean, n2: bigint, e2: number, s2: boolean, f: Fmt, rm: number): Res {
  const e = Math.min(e1, e2);
  const S = (n1 << B(e1 - e)) + (n2 << B(e2 - e));
  if (S === 0n) return ZERO(f, s1 === s2 ? s1 : rm === RDN);
  return roundReal(S < 0n, dyadic(S < 0n ? -S : S, e), f, rm);
}

function oAdd(a: bigint, b: bigint, f: Fmt, rm: number): Res {
  const x = decode(a, f), y = decode(b, f);
  if (isNaN_(x) || isNaN_(y)) return NAN(f, x.kind === "snan" || y.kind === "snan" ? NV : 0);
  if (x.kind === "inf" && y.kind === "inf") return x.neg === y.neg ? INF(f, x.neg) : NAN(f, NV);
  if (x.kind === "inf") return INF(f, x.neg);
  if (y.kind === "inf") return INF(f, y.neg);
  return roundSum(signedM(x), x.e, x.neg, signedM(y), y.e, y.neg, f, rm);
}
const oSub = (a: bigint, b: bigint, f: Fmt, rm: number) => oAdd(a, b ^ signBit(f), f, rm);

function oMul(a: bigint, b: bigint, f: Fmt, rm: number): Res {
  const x = decode(a, f), y = decode(b, f);
  const neg = x.neg !== y.neg;
  if (isNaN_(x) || isNaN_(y)) return NAN(f, x.kind === "snan" || y.kind === "snan" ? NV : 0);
  if (x.kind === "inf" || y.kind === "inf") {
    return x.kind === "zero" || y.kind === "zero" ? NAN(f, NV) : INF(f, neg);
  }
  if (x.kind === "zero" || y.kind === "zero") return ZERO(f, neg);
  return roundReal(neg, dyadic(x.m * y.m, x.e + y.e), f, rm);
}

function oDiv(a: bigint, b: bigint, f: Fmt, rm: number): Res {
  const x = decode(a, f), y = decode(b, f);
  const neg = x.neg !== y.neg;
  if (isNaN_(x) || isNaN_(y)) return NAN(f, x.kind === "snan" || y.kind === "snan" ? NV : 0);
  if (x.kind === "inf") return y.kind === "inf" ? NAN(f, NV) : INF(f, neg);
  if (y.kind === "inf") return ZERO(f, neg);
  if (y.kind === "zero") return x.kind === "zero" ? NAN(f, NV) : INF(f, neg, DZ);
  if (x.kind === "zero") return ZERO(f, neg);
  const d = x.e - y.e;
  const X: Real = { num: x.m << B(Math.max(d, 0)), den: y.m << B(Math.max(-d, 0)), sqrt: false };
  return roundReal(neg, X, f, rm);
}

function oSqrt(a: bigint, f: Fmt, rm: number): Res {
  const x = decode(a, f);
  if (isNaN_(x)) return NAN(f, x.kind === "snan" ? NV : 0);
  if (x.kind === "zero") return ZERO(f, x.neg);
  if (x.neg) return NAN(f, NV);
  if (x.kind === "inf") return INF(f, false);
  return roundReal(false, { ...dyadic(x.m, x.e), sqrt: true }, f, rm);
}

function oFma(a: bigint, b: bigint, c: bigint, f: Fmt, rm: number): Res {
  const x = decode(a, f), y = decode(b, f), z = decode(c, f);
  const pNeg = x.neg !== y.neg;
  const infZero = (x.kind === "inf" && y.kind === "zero") || (x.kind === "zero" && y.kind === "inf");
  const snan = x.kind === "snan" || y.kind === "snan" || z.kind === "snan";
  if (infZero || isNaN_(x) || isNaN_(y) || isNaN_(z)) return NAN(f, infZero || snan ? NV : 0);
  if (x.kind === "inf" || y.kind === "inf") return z.kind === "inf" && z.neg !== pNeg ? NAN(f, NV) : INF(f, pNeg);
  if (z.kind === "inf") return INF(f, z.neg);
  const pm = x.m * y.m;
  return roundSum(pNeg ? -pm : pm, x.e + y.e, pNeg, signedM(z), z.e, z.neg, f, rm);
}

// sign(x - y) for finite or zero operands; -0 == +0.
function cmpVal(x: Dec, y: Dec): number {
  const e = Math.min(x.e, y.e);
  const X = signedM(x) << B(x.e - e), Y = signedM(y) << B(y.e - e);
  return X > Y ? 1 : X < Y ? -1 : 0;
}
const toNum = (d: Dec): Dec =>
  d.kind === "inf" ? { ...d, m: 1n, e: 100000 } : d; // an infinity compares beyond every finite

function oMinMax(a: bigint, b: bigint, f: Fmt, isMin: boolean): Res {
  const x = decode(a, f), y = decode(b, f);
  const flags = x.kind === "snan" || y.kind === "snan" ? NV : 0;
  if (isNaN_(x) && isNaN_(y)) return { bits: qnanBits(f), flags };
  if (isNaN_(x)) return { bits: b, flags };
  if (isNaN_(y)) return { bits: a, flags };
  const c = cmpVal(toNum(x), toNum(y));
  if (c === 0) return { bits: x.neg === isMin ? a : b, flags }; // -0 is the smaller zero
  return { bits: (c < 0) === isMin ? a : b, flags };
}

function oCmp(a: bigint, b: bigint, f: Fmt, kind: "eq" | "lt" | "le"): Res {
  const x = decode(a, f), y = decode(b, f);
  if (isNaN_(x) || isNaN_(y)) {
    const signaling = kind !== "eq" || x.kind === "snan" || y.kind === "snan";
    return { bits: 0n, flags: signaling ? NV : 0 };
  }
  const c = cmpVal(toNum(x), toNum(y));
  const r = kind === "eq" ? c === 0 : kind === "lt" ? c < 0 : c <= 0;
  return { bits: r ? 1n : 0n, flags: 0 };
}

function oClassify(a: bigint, f: Fmt): Res {
  const x = decode(a, f);
  const order = ["inf", "normal", "sub", "zero"];
  let bit: number;
  if (x.kind === "snan") bit = 8;
  else if (x.kind === "qnan") bit = 9;
  else {
    const k = x.kind === "inf" ? "inf" : x.kind === "zero" ? "zero" : x.sub ? "sub" : "normal";
    bit = x.neg ? order.indexOf(k) : 7 - order.indexOf(k);
  }
  return { bits: B(1 << bit), flags: 0 };
}

// Float to integer of `bits` width, signed or not.
function oToInt(a: bigint, f: Fmt, width: number, signed: boolean, rm: number): Res {
  const x = decode(a, f);
  const max = signed ? (1n << B(width - 1)) - 1n : (1n << B(width)) - 1n;
  const min = signed ? -(1n << B(width - 1)) : 0n;
  if (isNaN_(x)) return { bits: max, flags: NV };
  if (x.kind === "inf") return { bits: x.neg ? min : max, flags: NV };
  let mag: bigint, exact: boolean;
  if (x.e >= 0) {
    mag = x.m << B(x.e);
    exact = true;
  } else {
    const lo = x.m >> B(-x.e), rem = x.m - (lo << B(-x.e)), half = 1n << B(-x.e - 1);
    exact = rem === 0n;
    let up = false;
    if (rm === RNE) up = rem > half || (rem === half && (lo & 1n) === 1n);
    else if (rm === RMM) up = rem >= half;
    else if (rm === RDN) up = x.neg && !exact;
    else if (rm === RUP) up = !x.neg && !exact;
    mag = up ? lo + 1n : lo;
  }
  const v = x.neg ? -mag : mag;
  if (v > max) return { bits: max, flags: NV };
  if (v < min) return { bits: min, flags: NV };
  return { bits: v, flags: exact ? 0 : NX };
}

function oFromInt(v: bigint, f: Fmt, rm: number): Res {
  if (v === 0n) return ZERO(f, false);
  return roundReal(v < 0n, { num: v < 0n ? -v : v, den: 1n, sqrt: false }, f, rm);
}

function oConvert(a: bigint, from: Fmt, to: Fmt, rm: number): Res {
  const x = decode(a, from);
  if (isNaN_(x)) return NAN(to, x.kind === "snan" ? NV : 0);
  if (x.kind === "inf") return INF(to, x.neg);
  if (x.kind === "zero") return ZERO(to, x.neg);
  return roundReal(x.neg, dyadic(x.m, x.e), to, rm);
}

// ---------------------------------------------------------------------------------------
// Inputs

function pack(neg: boolean, E: number, M: bigint, f: Fmt): bigint {
  return (neg ? signBit(f) : 0n) | (B(E) << B(f.mbits)) | (M & ((1n << B(f.mbits)) - 1n));
}

function edgeValues(f: Fmt): bigint[] {
  const one = B(f.bias) << B(f.mbits);
  const Emax = (1 << f.ebits) - 2;
  const mAll = (1n << B(f.mbits)) - 1n;
  const pos = [
    0n, 1n, mAll, 1n << B(f.mbits), (1n << B(f.mbits)) + 1n, // zero, subnormal extremes, min normal (+ulp)
    1n << B(f.mbits - 1), // largest-exponent subnormal power of two
    one, one + 1n, one - 1n, one + (1n << B(f.mbits - 1)), // 1, 1+ulp, 1-ulp/2, 1.5
    one - (1n << B(f.mbits)), // 0.5
    pack(false, f.bias + 1, 1n << B(f.mbits - 1), f), // 3
    pack(false, f.bias + f.p - 1, 1n, f), // 2^(p-1) + 1 (odd integer at the precision limit)
    pack(false, f.bias + 31, 0n, f), pack(false, f.bias + 30, mAll, f), // 2^31, just below
    pack(false, f.bias + 63, 0n, f), pack(false, f.bias + 64, 0n, f), // 2^63, 2^64
    maxBits(f), maxBits(f) - 1n, pack(false, Emax, 0n, f), // max finite, below it, 2^emax
    infBits(f),
  ];
  const out: bigint[] = [];
  for (const v of pos) out.push(v, v | signBit(f));
  out.push(qnanBits(f), qnanBits(f) | signBit(f) | 5n, infBits(f) | 1n, infBits(f) | mAll >> 1n | signBit(f));
  return out;
}

// Random operand biased toward the interesting places: exponent extremes, all-ones or
// sparse significands, and occasional special values.
function randomValue(r: () => number, f: Fmt, edges: bigint[]): bigint {
  const k = r() % 100;
  if (k < 4) return edges[r() % edges.length];
  const Emax = (1 << f.ebits) - 2;
  let E: number;
  const ek = r() % 10;
  if (ek < 2) E = r() % (f.p + 3); // subnormal and barely normal
  else if (ek < 3) E = Emax - (r() % (f.p + 3)); // near overflow
  else if (ek < 6) E = f.bias - 40 + (r() % 81);
  else E = r() % (Emax + 1);
  let M: bigint;
  const mk = r() % 10;
  const rand = () => (B(r()) << 32n | B(r())) & ((1n << B(f.mbits)) - 1n);
  if (mk === 0) M = (1n << B(f.mbits)) - 1n;
  else if (mk === 1) M = 0n;
  else if (mk === 2) M = (1n << B(r() % f.mbits)) | (1n << B(r() % f.mbits));
  else if (mk === 3) M = rand() & ~((1n << B(r() % f.mbits)) - 1n); // trailing zeros: exact cases
  else M = rand();
  if (E === 0 && M === 0n && r() % 2) M = 1n;
  return pack(r() % 2 === 1, E, M, f);
}

const exponentOf = (v: bigint, f: Fmt) => Number((v >> B(f.mbits)) & ((1n << B(f.ebits)) - 1n));
function setExponent(v: bigint, E: number, f: Fmt): bigint {
  const Emask = (1n << B(f.ebits)) - 1n;
  return (v & ~(Emask << B(f.mbits))) | (B(E) << B(f.mbits));
}
// A random-signed value with exponent field E and at most three significand bits set.
function sparseValue(r: () => number, f: Fmt, E: number): bigint {
  let M = 0n;
  for (let i = r() % 4; i > 0; i--) M |= 1n << B(r() % f.mbits);
  return pack(r() % 2 === 1, E, M, f);
}

// Replaces b's exponent so that a op b lands near the subnormal or overflow threshold.
function steerExponent(r: () => number, a: bigint, b: bigint, f: Fmt, op: "mul" | "div"): bigint {
  const Ea = exponentOf(a, f);
  const Emax = (1 << f.ebits) - 2;
  const target = r() % 2 ? 1 + (r() % 5) - 2 : Emax + (r() % 5) - 2; // result exponent field
  const Eb = op === "mul" ? target - Ea + f.bias : Ea - target + f.bias;
  return setExponent(b, Math.max(0, Math.min(Emax, Eb)), f);
}

// ---------------------------------------------------------------------------------------
// Calling the wasm side

const u32 = (v: number) => BigInt(v >>> 0);
const u64 = (v: bigint) => BigInt.asUintN(64, v);

interface Case { args: bigint[]; rm: number }

// Runs `cases`, returns the mismatches as printable lines.
function runCases(
  fpu: Fpu,
  name: string,
  cases: Case[],
  call: (c: Case) => bigint,
  oracle: (c: Case) => Res,
  hex: (v: bigint) => string,
  flagCounts?: number[],
): string[] {
  const bad: string[] = [];
  for (const c of cases) {
    fpu.clearFlags();
    const got = call(c);
    const flags = fpu.getFlags();
    const want = oracle(c);
    if (flagCounts) for (let i = 0; i < 6; i++) if (i === 5 ? want.flags === 0 : want.flags & (1 << i)) flagCounts[i]++;
    if (got !== want.bits || flags !== want.flags) {
      bad.push(
        `${name}(${c.args.map(hex).join(", ")}) ${RM_NAME[c.rm]}: got ${hex(got)} flags ${flags}, ` +
          `want ${hex(want.bits)} flags ${want.flags}`,
      );
    }
  }
  return bad;
}
const hexOf = (f: Fmt) => (v: bigint) => "0x" + BigInt.asUintN(f.width, v).toString(16);

// Operand lists per arity: all edge combinations plus seeded random ones.
function buildCases(f: Fmt, op: string, nRandom: number, seed: number): Case[] {
  const edges = edgeValues(f);
  const r = prng(seed);
  const tuples: bigint[][] = [];
  const arity = op === "sqrt" ? 1 : op === "fma" ? 3 : 2;
  if (arity === 1) for (const a of edges) tuples.push([a]);
  else if (arity === 2) for (const a of edges) for (const b of edges) tuples.push([a, b]);
  else {
    const few = edges.filter((_, i) => i % 3 === 0);
    for (const a of few) for (const b of few) for (const c of few) tuples.push([a, b, c]);
  }
  tuples.push(...handPicked(f, op));
  for (let i = 0; i < nRandom; i++) {
    let a = randomValue(r, f, edges), b = randomValue(r, f, edges), c = randomValue(r, f, edges);
    const k = r() % 10;
    if ((op === "add" || op === "sub") && k < 4) {
      // nearby exponents: cancellation, carries, ties
      b = setExponent(b, Math.max(0, Math.min((1 << f.ebits) - 2, exponentOf(a, f) + (r() % 5) - 2)), f);
    } else if ((op === "mul" || op === "div") && k < 4) {
      b = steerExponent(r, a, b, f, op);
    } else if (op === "div" && k < 6) {
      a = oMul(b, c, f, RNE).bits; // often an exact quotient
    } else if (op === "sqrt" && k < 3) {
      const s = c & ~((1n << B(f.mbits >> 1)) - 1n); // short significand: exact squares
      a = oMul(s, s, f, RNE).bits & ~signBit(f);
    } else if (op === "fma" && k < 4) {
      // c close to -(a*b): massive cancellation
      const p = oMul(a, b, f, [RNE, RTZ, RUP][r() % 3]).bits;
      c = BigInt.asUintN(f.width, (p ^ signBit(f)) + B((r() % 5) - 2));
    } else if (op === "fma" && k < 6) {
      b = steerExponent(r, a, b, f, "mul");
    } else if (op === "fma" && k < 8) {
      // sparse product against an addend up to ~2p bits away: sticky bits matter
      a = sparseValue(r, f, f.bias - 20 + (r() % 41));
      b = sparseValue(r, f, f.bias - 20 + (r() % 41));
      const Ep = exponentOf(a, f) + exponentOf(b, f) - f.bias;
      const Ec = Math.max(0, Math.min((1 << f.ebits) - 2, Ep + (r() % (4 * f.p + 1)) - 2 * f.p));
      c = r() % 2 ? sparseValue(r, f, Ec) : setExponent(c, Ec, f);
    } else if ((op === "add" || op === "sub" || op === "mul") && k < 6) {
      // sparse operands; for sums about p bits apart, where only the sticky bit decides
      const Ea = exponentOf(a, f);
      a = sparseValue(r, f, Ea);
      const Eb = op === "mul" ? exponentOf(b, f) : Math.max(0, Ea - f.p + 6 - (r() % 20));
      b = r() % 2 ? sparseValue(r, f, Eb) : setExponent(b, Eb, f);
    }
    tuples.push([a, b, c].slice(0, arity));
  }
  const cases: Case[] = [];
  for (const args of tuples) for (const rm of RMS) cases.push({ args, rm });
  return cases;
}

// Cases built by hand around the hard spots; expected values come from the oracle (and
// some are pinned in the "oracle sanity" test below).
function handPicked(f: Fmt, op: string): bigint[][] {
  const P = f.p;
  const one = B(f.bias) << B(f.mbits);
  const val = (E: number, M: bigint, neg = false) => pack(neg, E, M, f);
  // 2^k, subnormal when k < emin
  const pow2 = (k: number) => (k >= f.emin ? val(k + f.bias, 0n) : 1n << B(k - f.emin + f.mbits));
  const minNormal = 1n << B(f.mbits);
  const out: bigint[][] = [];
  if (op === "add" || op === "sub") {
    out.push([one, pow2(-P)]); // 1 + half ulp: a tie
    out.push([one + 1n, pow2(-P)]); // tie from an odd significand
    out.push([maxBits(f), val(f.emax - P + f.bias, 0n)]); // max + half ulp: overflow only in some modes
    out.push([maxBits(f), val(f.emax - P - 1 + f.bias, 0n)]); // max + quarter ulp
    out.push([one, one | signBit(f)]); // exact zero
    // huge operands of opposite signs: an intermediate of TwoSum overflows
    out.push([0x7fd1d224195c860fn >> B(64 - f.width), maxBits(f) | signBit(f)]);
    out.push([pow2(f.emax - 1) + 12345n, maxBits(f) | signBit(f)]);
    out.push([minNormal, 1n | signBit(f)]); // result subnormal, exact
  }
  if (op === "mul") {
    out.push([one - 1n, minNormal]); // (1 - 2^-p) * 2^emin: rounds to 2^emin yet tiny
    out.push([val(f.bias, (1n << B(f.mbits)) - 1n), pow2(-1)]); // (2 - ulp) * 0.5
    out.push([val(f.bias - 1, (1n << B(f.mbits)) - 1n), val(1, 0n)]); // just below 2^emin
    out.push([pow2(f.emax - 1), val(f.bias + 1, 1n)]); // overflow
    out.push([minNormal, pow2(-1)]); // exact subnormal
    out.push([minNormal, val(f.bias - 1, 1n)]); // tie in the subnormal range
  }
  if (op === "fma") {
    // 2^emin - 2^(emin - p - 7): with an unbounded exponent it rounds to 2^emin (not tiny)
    // in RNE, but to a subnormal in RTZ/RDN.
    const k = (P + 7) >> 1;
    out.push([pow2(-k), pow2(f.emin - P - 7 + k) | signBit(f), minNormal]);
    out.push([one, pow2(-P), one]); // tie made by the product
    out.push([maxBits(f), one, maxBits(f)]); // overflow from a sum
    out.push([pow2(f.emax - 1), pow2(2), pow2(f.emax) | signBit(f)]); // big product cancelled by c
    out.push([one, one, one | signBit(f)]); // exact zero: sign depends on rm
    // a*b is exactly the largest finite number, cancelled by c; splitting a overflows
    out.push([maxBits(f) - (B(f.p + 10) << B(f.mbits)), pow2(f.p + 10), maxBits(f) | signBit(f)]);
    out.push([maxBits(f) - (B(f.p + 10) << B(f.mbits)), pow2(f.p + 10), maxBits(f) - 1n | signBit(f)]);
  }
  if (op === "div") {
    out.push([one, val(f.bias + 1, 1n << B(f.mbits - 1))]); // 1/3
    out.push([minNormal, val(f.bias + 1, 0n)]); // 2^emin / 2: exact subnormal
    out.push([minNormal | 1n, val(f.bias + 1, 0n)]); // tie in the subnormal range
    out.push([maxBits(f), val(f.bias - 1, 0n)]); // overflow
  }
  if (op === "sqrt") {
    out.push([val(f.bias + 1, 0n)], [1n], [maxBits(f)], [minNormal], [val(f.bias, 1n)]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------

// Random cases per operation and format, each run in all five rounding modes. FPU_TEST_RANDOM
// and FPU_TEST_SEED allow longer soak runs with other inputs.
const N_RANDOM = Number(process.env.FPU_TEST_RANDOM ?? 2000);
const SEED = Number(process.env.FPU_TEST_SEED ?? 1);

const ARITH: Record<string, { arity: number; oracle: (args: bigint[], f: Fmt, rm: number) => Res }> = {
  add: { arity: 2, oracle: ([a, b], f, rm) => oAdd(a, b, f, rm) },
  sub: { arity: 2, oracle: ([a, b], f, rm) => oSub(a, b, f, rm) },
  mul: { arity: 2, oracle: ([a, b], f, rm) => oMul(a, b, f, rm) },
  div: { arity: 2, oracle: ([a, b], f, rm) => oDiv(a, b, f, rm) },
  sqrt: { arity: 1, oracle: ([a], f, rm) => oSqrt(a, f, rm) },
  fma: { arity: 3, oracle: ([a, b, c], f, rm) => oFma(a, b, c, f, rm) },
};

function callArith(fpu: Fpu, f: Fmt, op: string) {
  const fn = fpu[`${f.name}_${op}`];
  return f.name === "f32"
    ? (c: Case) => u32(fn(...c.args.map(Number), c.rm))
    : (c: Case) => u64(fn(...c.args, c.rm));
}

// flagCounts[i] counts expected results raising flag bit i (NX, UF, OF, DZ, NV); [5] exact ones.
function arithMismatches(fpu: Fpu, f: Fmt, op: string, nRandom: number, seed: number, flagCounts?: number[]): string[] {
  const cases = buildCases(f, op, nRandom, seed);
  return runCases(fpu, `${f.name}_${op}`, cases, callArith(fpu, f, op),
    (c) => ARITH[op].oracle(c.args, f, c.rm), hexOf(f), flagCounts);
}

// The fast paths are switched off by rewriting this line of fpu.ts.
const FAST_ON = "const FAST_PATHS: bool = true;";
const softOnly = (src: string) => {
  if (!src.includes(FAST_ON)) throw new Error("FAST_PATHS switch not found in fpu.ts");
  return src.replace(FAST_ON, "const FAST_PATHS: bool = false;");
};

let fpu: Fpu; // as shipped
let soft: Fpu; // software path only
beforeAll(async () => {
  [fpu, soft] = await Promise.all([compileHarness(), compileHarness(softOnly)]);
}, 60_000);

describe("oracle sanity (hand-computed expectations)", () => {
  it("rounds ties, overflow and tininess as specified", () => {
    // 1 + 2^-53 in binary64: a tie between 1 and 1 + 2^-52.
    const one = 0x3ff0000000000000n, half = 0x3ca0000000000000n;
    expect(oAdd(one, half, F64, RNE)).toEqual({ bits: one, flags: NX });
    expect(oAdd(one, half, F64, RMM)).toEqual({ bits: one + 1n, flags: NX });
    expect(oAdd(one, half, F64, RUP)).toEqual({ bits: one + 1n, flags: NX });
    expect(oAdd(one, half | signBit(F64), F64, RDN)).toEqual({ bits: one - 1n, flags: 0 }); // 1 - 2^-53 is exact
    expect(oAdd(one, 0x3c90000000000000n | signBit(F64), F64, RDN)).toEqual({ bits: one - 1n, flags: NX });
    expect(oAdd(one, 0x3c90000000000000n | signBit(F64), F64, RNE)).toEqual({ bits: one, flags: NX });
    // max + half ulp overflows to inf in RNE; in RTZ it rounds to max, which is no overflow.
    const max = 0x7fefffffffffffffn, halfUlpMax = 0x7c90000000000000n;
    expect(oAdd(max, halfUlpMax, F64, RNE)).toEqual({ bits: 0x7ff0000000000000n, flags: OF | NX });
    expect(oAdd(max, halfUlpMax, F64, RUP)).toEqual({ bits: 0x7ff0000000000000n, flags: OF | NX });
    expect(oAdd(max, halfUlpMax, F64, RTZ)).toEqual({ bits: max, flags: NX });
    // max + max overflows in every mode; RTZ and RDN give max.
    expect(oAdd(max, max, F64, RTZ)).toEqual({ bits: max, flags: OF | NX });
    expect(oAdd(max | signBit(F64), max | signBit(F64), F64, RUP))
      .toEqual({ bits: max | signBit(F64), flags: OF | NX });
    expect(oAdd(max | signBit(F64), max | signBit(F64), F64, RDN))
      .toEqual({ bits: 0xfff0000000000000n, flags: OF | NX });
    // (1 - 2^-53) * 2^-1022 rounds to 2^-1022 but is tiny after rounding: UF.
    expect(oMul(0x3fefffffffffffffn, 0x0010000000000000n, F64, RNE))
      .toEqual({ bits: 0x0010000000000000n, flags: UF | NX });
    // binary32 1/3
    expect(oDiv(0x3f800000n, 0x40400000n, F32, RNE)).toEqual({ bits: 0x3eaaaaabn, flags: NX });
    expect(oDiv(0x3f800000n, 0x40400000n, F32, RTZ)).toEqual({ bits: 0x3eaaaaaan, flags: NX });
    expect(oSqrt(0x40000000n, F32, RNE)).toEqual({ bits: 0x3fb504f3n, flags: NX });
    // x + (-x) is -0 only when rounding down.
    expect(oAdd(one, one | signBit(F64), F64, RDN)).toEqual({ bits: signBit(F64), flags: 0 });
    expect(oAdd(one, one | signBit(F64), F64, RUP)).toEqual({ bits: 0n, flags: 0 });
  });

  it("agrees with native arithmetic in round-to-nearest on plain values", () => {
    const r = prng(7);
    const buf = new DataView(new ArrayBuffer(8));
    for (let i = 0; i < 300; i++) {
      const x = (r() / 2 ** 32 - 0.5) * 2 ** ((r() % 200) - 100);
      const y = (r() / 2 ** 32 - 0.5) * 2 ** ((r() % 200) - 100);
      const bits = (v: number) => (buf.setFloat64(0, v), buf.getBigUint64(0));
      expect(oAdd(bits(x), bits(y), F64, RNE).bits).toBe(bits(x + y));
      expect(oMul(bits(x), bits(y), F64, RNE).bits).toBe(bits(x * y));
      expect(oDiv(bits(x), bits(y), F64, RNE).bits).toBe(bits(x / y));
      expect(oSqrt(bits(Math.abs(x)), F64, RNE).bits).toBe(bits(Math.sqrt(Math.abs(x))));
    }
  });
});

describe("arithmetic vs oracle, all rounding modes", () => {
  // Which flags the inputs must provoke, so that a generator change cannot quietly make the
  // test weaker (add/sub results are never tiny and inexact; sqrt never overflows or is tiny).
  const mustRaise: Record<string, number[]> = {
    add: [NX, OF, NV], sub: [NX, OF, NV], mul: [NX, UF, OF, NV], div: [NX, UF, OF, DZ, NV],
    sqrt: [NX, NV], fma: [NX, UF, OF, NV],
  };
  for (const f of [F32, F64]) {
    for (const op of Object.keys(ARITH)) {
      const seed = SEED * 7919 + op.length * 17 + f.width;
      it(`${f.name}_${op}`, () => {
        const counts = [0, 0, 0, 0, 0, 0];
        const bad = arithMismatches(fpu, f, op, N_RANDOM, seed, counts);
        expect(bad.slice(0, 10), `${bad.length} mismatches`).toEqual([]);
        const minimum = Math.min(20, N_RANDOM / 20);
        for (const flag of [...mustRaise[op], 32]) {
          expect(counts[31 - Math.clz32(flag)], `cases raising ${flag === 32 ? "nothing" : flag}`)
            .toBeGreaterThanOrEqual(minimum);
        }
      });
      it(`${f.name}_${op} (software path only)`, () => {
        const bad = arithMismatches(soft, f, op, N_RANDOM, seed + 1);
        expect(bad.slice(0, 10), `${bad.length} mismatches`).toEqual([]);
      });
    }
  }
});

describe("conversions vs oracle", () => {
  for (const f of [F32, F64]) {
    const edges = edgeValues(f);
    const r = prng(SEED * 99 + f.width);
    // Values around the integer limits, fractions, and exact halves (ties).
    const halfBits = f.name === "f32" ? 0x3f000000n : 0x3fe0000000000000n;
    const inputs = [...edges];
    for (let i = 0; i < N_RANDOM; i++) {
      const k = r() % 4;
      if (k === 0) {
        // exponents 2^-2 .. 2^65
        inputs.push(setExponent(randomValue(r, f, edges), f.bias - 2 + (r() % 68), f));
      } else if (k === 1) {
        const n = BigInt(r() % 64) - 32n; // (2n + 1) / 2
        inputs.push(oMul(oFromInt(2n * n + 1n, f, RNE).bits, halfBits, f, RNE).bits);
      } else inputs.push(randomValue(r, f, edges));
    }

    for (const [to, width, signed] of [["i32", 32, true], ["u32", 32, false], ["i64", 64, true], ["u64", 64, false]] as const) {
      it(`${f.name}_to_${to}`, () => {
        const fn = fpu[`${f.name}_to_${to}`];
        const cases = inputs.flatMap((a) => RMS.map((rm) => ({ args: [a], rm })));
        const norm = (v: any) =>
          width === 32 ? (signed ? BigInt(v | 0) : u32(v)) : signed ? BigInt.asIntN(64, v) : u64(v);
        const bad = runCases(fpu, `${f.name}_to_${to}`, cases,
          (c) => norm(fn(f.name === "f32" ? Number(c.args[0]) : c.args[0], c.rm)),
          (c) => oToInt(c.args[0], f, width, signed, c.rm), (v) => v.toString());
        expect(bad.slice(0, 10), `${bad.length} mismatches`).toEqual([]);
      });
    }

    for (const [from, width, signed] of [["i32", 32, true], ["u32", 32, false], ["i64", 64, true], ["u64", 64, false]] as const) {
      it(`${from}_to_${f.name}`, () => {
        const fn = fpu[`${from}_to_${f.name}`];
        const ints: bigint[] = [0n, 1n, -1n, (1n << B(width - 1)) - 1n, -(1n << B(width - 1)), (1n << B(width)) - 1n];
        for (let i = 0; i < N_RANDOM; i++) {
          const bits = r() % width + 1;
          let v = ((B(r()) << 32n) | B(r())) & ((1n << B(bits)) - 1n);
          if (r() % 3 === 0) v |= 1n << B(bits - 1); // full length: needs rounding
          if (r() % 4 === 0) v &= ~((1n << B(r() % bits)) - 1n); // trailing zeros: ties, exact
          ints.push(v);
        }
        const vals = ints.map((v) => (signed ? BigInt.asIntN(width, v) : BigInt.asUintN(width, v)));
        const cases = vals.flatMap((v) => RMS.map((rm) => ({ args: [v], rm })));
        const bad = runCases(fpu, `${from}_to_${f.name}`, cases,
          (c) => {
            const arg = width === 32 ? Number(c.args[0]) : c.args[0];
            const out = fn(arg, c.rm);
            return f.name === "f32" ? u32(out) : u64(out);
          },
          (c) => oFromInt(c.args[0], f, c.rm), (v) => v.toString());
        expect(bad.slice(0, 10), `${bad.length} mismatches`).toEqual([]);
      });
    }
  }

  it("f32_to_f64 and f64_to_f32", () => {
    const r = prng(SEED * 4242);
    const e32 = edgeValues(F32), e64 = edgeValues(F64);
    const in32 = [...e32], in64 = [...e64];
    for (let i = 0; i < 2 * N_RANDOM; i++) {
      in32.push(randomValue(r, F32, e32));
      // binary64 values around the binary32 range (overflow, subnormal, tininess boundaries)
      const v = randomValue(r, F64, e64);
      in64.push(r() % 4 === 0 ? v : setExponent(v, 1023 - 155 + (r() % 290), F64));
    }
    const up = runCases(fpu, "f32_to_f64", in32.map((a) => ({ args: [a], rm: RNE })),
      (c) => u64(fpu.f32_to_f64(Number(c.args[0]))), (c) => oConvert(c.args[0], F32, F64, RNE), hexOf(F64));
    const down = runCases(fpu, "f64_to_f32", in64.flatMap((a) => RMS.map((rm) => ({ args: [a], rm }))),
      (c) => u32(fpu.f64_to_f32(c.args[0], c.rm)), (c) => oConvert(c.args[0], F64, F32, c.rm), hexOf(F64));
    const bad = [...up, ...down];
    expect(bad.slice(0, 10), `${bad.length} mismatches`).toEqual([]);
  });
});

describe("min/max, comparisons, classify vs oracle", () => {
  for (const f of [F32, F64]) {
    it(f.name, () => {
      const edges = edgeValues(f);
      const r = prng(SEED * 31 + f.width);
      const pairs: bigint[][] = [];
      for (const a of edges) for (const b of edges) pairs.push([a, b]);
      for (let i = 0; i < N_RANDOM; i++) {
        const a = randomValue(r, f, edges);
        pairs.push([a, r() % 4 === 0 ? a ^ B(r() % 2) : randomValue(r, f, edges)]);
      }
      const arg = (v: bigint) => (f.name === "f32" ? Number(v) : v);
      const bits = (v: any) => (f.name === "f32" ? u32(v) : u64(v));
      const cases = pairs.map((args) => ({ args, rm: RNE }));
      const bad: string[] = [];
      for (const [op, isMin] of [["min", true], ["max", false]] as const) {
        bad.push(...runCases(fpu, `${f.name}_${op}`, cases,
          (c) => bits(fpu[`${f.name}_${op}`](arg(c.args[0]), arg(c.args[1]))),
          (c) => oMinMax(c.args[0], c.args[1], f, isMin), hexOf(f)));
      }
      for (const op of ["eq", "lt", "le"] as const) {
        bad.push(...runCases(fpu, `${f.name}_${op}`, cases,
          (c) => BigInt(fpu[`${f.name}_${op}`](arg(c.args[0]), arg(c.args[1]))),
          (c) => oCmp(c.args[0], c.args[1], f, op), hexOf(f)));
      }
      bad.push(...runCases(fpu, `${f.name}_classify`, pairs.map(([a]) => ({ args: [a], rm: RNE })),
        (c) => BigInt(fpu[`${f.name}_classify`](arg(c.args[0]))), (c) => oClassify(c.args[0], f), hexOf(f)));
      expect(bad.slice(0, 10), `${bad.length} mismatches`).toEqual([]);
    });
  }
});

describe("the tests can fail", () => {
  // Each mutant breaks one rounding rule in fpu.ts; a reduced run of the same checks must
  // notice. Compiled unoptimized to keep this quick.
  // [what, original text, replacement, check the software-only build]
  const mutants: [string, string, string, boolean?][] = [
    ["ties away instead of to even",
      "if (rm == RNE) return half - 1 + ((sig >> <u64>rbits) & 1);", "if (rm == RNE) return half;"],
    ["tininess before rounding",
      "tiny = e < 0 || ((sig + roundIncrement(sig, rbits, neg, rm)) >> 63) == 0;", "tiny = true;"],
    ["RTZ overflow to infinity",
      "const toInf = rm == RNE ||", "const toInf = rm != 99 ||"],
    ["fast-path exactness test",
      "if (bitLen(oa) + bitLen(ob) > 54 || oa * ob >= D_HIDDEN << 1) fpFlags |= NX;", ""],
    ["fma without rounding to odd", "if (ev != 0 && (vb & 1) == 0 && (vb & D_INF) != D_INF) {", "if (false) {"],
    ["lost sticky bit folding a 128-bit product", "| <u64>((lo << <u64>n) != 0);", ";", true],
    ["lost sticky bit in alignment", "return (sig >> <u64>n) | <u64>((sig << <u64>(64 - n)) != 0);",
      "return sig >> <u64>n;", true],
    ["overflowing TwoSum trusted", "if (isFiniteF64(err)) {", "if (true) {"],
    ["exact zero sum sign", "if (sa == sb) return sign64(rm == RDN);", "if (sa == sb) return 0;", true],
  ];
  for (const [what, from, to, softToo] of mutants) {
    it(`catches: ${what}`, async () => {
      let hit = false;
      const broken = await compileHarness((src) => {
        hit = src.includes(from);
        src = src.replace(from, to);
        return softToo ? softOnly(src) : src;
      }, "-O0");
      expect(hit, "mutation point not found in fpu.ts").toBe(true);
      let bad = 0;
      for (const f of [F32, F64]) {
        for (const op of Object.keys(ARITH)) bad += arithMismatches(broken, f, op, 200, 5).length;
      }
      expect(bad).toBeGreaterThan(0);
    }, 30_000);
  }
});
