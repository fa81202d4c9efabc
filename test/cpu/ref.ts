// Reference semantics of the integer instructions, written from the unprivileged ISA spec
// (20191213: RV64I, M) and the bit-manipulation spec (Zba/Zbb/Zbs 1.0.0), on BigInts.
// Values are unsigned 64-bit BigInts in and out.

const MASK64 = (1n << 64n) - 1n;
export const U = (v: bigint) => BigInt.asUintN(64, v);
export const S = (v: bigint) => BigInt.asIntN(64, v);
/** Sign-extend the low 32 bits to 64 (the result of every *W instruction). */
export const SX32 = (v: bigint) => U(BigInt.asIntN(32, v));
const S32 = (v: bigint) => BigInt.asIntN(32, v);
const U32 = (v: bigint) => BigInt.asUintN(32, v);

function popcount(v: bigint): bigint {
  let n = 0n;
  for (; v; v >>= 1n) n += v & 1n;
  return n;
}
function clzN(v: bigint, bits: number): bigint {
  for (let i = bits - 1; i >= 0; i--) if ((v >> BigInt(i)) & 1n) return BigInt(bits - 1 - i);
  return BigInt(bits);
}
function ctzN(v: bigint, bits: number): bigint {
  for (let i = 0; i < bits; i++) if ((v >> BigInt(i)) & 1n) return BigInt(i);
  return BigInt(bits);
}
function rotl(v: bigint, n: bigint, bits: bigint): bigint {
  const m = (1n << bits) - 1n;
  n %= bits;
  return ((v << n) | (v >> ((bits - n) % bits))) & m;
}
function rotr(v: bigint, n: bigint, bits: bigint): bigint {
  const m = (1n << bits) - 1n;
  n %= bits;
  return ((v >> n) | (v << ((bits - n) % bits))) & m;
}

export type BinOp = (a: bigint, b: bigint) => bigint;

/** Register-register operations: rd = op(rs1, rs2). */
export const RR: Record<string, BinOp> = {
  add: (a, b) => U(a + b),
  sub: (a, b) => U(a - b),
  sll: (a, b) => U(a << (b & 63n)),
  slt: (a, b) => (S(a) < S(b) ? 1n : 0n),
  sltu: (a, b) => (a < b ? 1n : 0n),
  xor: (a, b) => a ^ b,
  srl: (a, b) => a >> (b & 63n),
  sra: (a, b) => U(S(a) >> (b & 63n)),
  or: (a, b) => a | b,
  and: (a, b) => a & b,
  addw: (a, b) => SX32(a + b),
  subw: (a, b) => SX32(a - b),
  sllw: (a, b) => SX32(a << (b & 31n)),
  srlw: (a, b) => SX32(U32(a) >> (b & 31n)),
  sraw: (a, b) => SX32(U(S32(a) >> (b & 31n))),
  // M
  mul: (a, b) => U(a * b),
  mulh: (a, b) => U((S(a) * S(b)) >> 64n),
  mulhsu: (a, b) => U((S(a) * b) >> 64n),
  mulhu: (a, b) => U((a * b) >> 64n),
  div: (a, b) => (b === 0n ? MASK64 : S(a) === -(1n << 63n) && S(b) === -1n ? a : U(S(a) / S(b))),
  divu: (a, b) => (b === 0n ? MASK64 : a / b),
  rem: (a, b) => (b === 0n ? a : S(a) === -(1n << 63n) && S(b) === -1n ? 0n : U(S(a) % S(b))),
  remu: (a, b) => (b === 0n ? a : a % b),
  mulw: (a, b) => SX32(a * b),
  divw: (a, b) => {
    const x = S32(a), y = S32(b);
    if (y === 0n) return MASK64;
    if (x === -(1n << 31n) && y === -1n) return SX32(x);
    return SX32(x / y);
  },
  divuw: (a, b) => (U32(b) === 0n ? MASK64 : SX32(U32(a) / U32(b))),
  remw: (a, b) => {
    const x = S32(a), y = S32(b);
    if (y === 0n) return SX32(x);
    if (x === -(1n << 31n) && y === -1n) return 0n;
    return SX32(x % y);
  },
  remuw: (a, b) => (U32(b) === 0n ? SX32(a) : SX32(U32(a) % U32(b))),
  // Zba
  "add.uw": (a, b) => U(U32(a) + b),
  sh1add: (a, b) => U((a << 1n) + b),
  sh2add: (a, b) => U((a << 2n) + b),
  sh3add: (a, b) => U((a << 3n) + b),
  "sh1add.uw": (a, b) => U((U32(a) << 1n) + b),
  "sh2add.uw": (a, b) => U((U32(a) << 2n) + b),
  "sh3add.uw": (a, b) => U((U32(a) << 3n) + b),
  // Zbb
  andn: (a, b) => a & (~b & MASK64),
  orn: (a, b) => U(a | ~b),
  xnor: (a, b) => U(~(a ^ b)),
  max: (a, b) => (S(a) > S(b) ? a : b),
  maxu: (a, b) => (a > b ? a : b),
  min: (a, b) => (S(a) < S(b) ? a : b),
  minu: (a, b) => (a < b ? a : b),
  rol: (a, b) => rotl(a, b & 63n, 64n),
  ror: (a, b) => rotr(a, b & 63n, 64n),
  rolw: (a, b) => SX32(rotl(U32(a), b & 31n, 32n)),
  rorw: (a, b) => SX32(rotr(U32(a), b & 31n, 32n)),
  // Zbs
  bclr: (a, b) => a & ~(1n << (b & 63n)) & MASK64,
  bext: (a, b) => (a >> (b & 63n)) & 1n,
  binv: (a, b) => a ^ (1n << (b & 63n)),
  bset: (a, b) => a | (1n << (b & 63n)),
};

/** Register-immediate operations: rd = op(rs1, imm) with the immediate as encoded (signed 12 bits or shamt). */
export const RI: Record<string, BinOp> = {
  addi: (a, i) => U(a + i),
  slti: (a, i) => (S(a) < i ? 1n : 0n),
  sltiu: (a, i) => (a < U(i) ? 1n : 0n),
  xori: (a, i) => a ^ U(i),
  ori: (a, i) => a | U(i),
  andi: (a, i) => a & U(i),
  slli: (a, i) => U(a << i),
  srli: (a, i) => a >> i,
  srai: (a, i) => U(S(a) >> i),
  addiw: (a, i) => SX32(a + i),
  slliw: (a, i) => SX32(a << i),
  srliw: (a, i) => SX32(U32(a) >> i),
  sraiw: (a, i) => SX32(U(S32(a) >> i)),
  "slli.uw": (a, i) => U(U32(a) << i),
  rori: (a, i) => rotr(a, i, 64n),
  roriw: (a, i) => SX32(rotr(U32(a), i, 32n)),
  bclri: (a, i) => a & ~(1n << i) & MASK64,
  bexti: (a, i) => (a >> i) & 1n,
  binvi: (a, i) => a ^ (1n << i),
  bseti: (a, i) => a | (1n << i),
};

/** Unary operations (Zbb). */
export const UN: Record<string, (a: bigint) => bigint> = {
  clz: (a) => clzN(a, 64),
  ctz: (a) => ctzN(a, 64),
  cpop: (a) => popcount(a),
  clzw: (a) => clzN(U32(a), 32),
  ctzw: (a) => ctzN(U32(a), 32),
  cpopw: (a) => popcount(U32(a)),
  "sext.b": (a) => U(BigInt.asIntN(8, a)),
  "sext.h": (a) => U(BigInt.asIntN(16, a)),
  "zext.h": (a) => a & 0xffffn,
  "orc.b": (a) => {
    let r = 0n;
    for (let i = 0n; i < 64n; i += 8n) if ((a >> i) & 0xffn) r |= 0xffn << i;
    return r;
  },
  rev8: (a) => {
    let r = 0n;
    for (let i = 0n; i < 8n; i++) r |= ((a >> (8n * i)) & 0xffn) << (8n * (7n - i));
    return r;
  },
};

/** Edge values for operand sweeps. */
export const EDGE: bigint[] = [
  0n, 1n, 2n, 3n, 7n, 31n, 32n, 33n, 63n, 64n,
  0x7fn, 0x80n, 0xffn, 0x7fffn, 0x8000n, 0xffffn,
  0x7fffffffn, 0x80000000n, 0xffffffffn, 0x100000000n,
  0xffffffff80000000n, 0xffffffff7fffffffn, 0x00000000fffffffen,
  0x7fffffffffffffffn, 0x8000000000000000n, 0x8000000000000001n,
  0xfffffffffffffffen, 0xffffffffffffffffn,
  0x123456789abcdef0n, 0xfedcba9876543210n, 0x00ff00ff00ff00ffn, 0x0000800000000001n,
];
