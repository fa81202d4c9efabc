// Random double-precision programs, looped so that their page is translated, must end with the
// same registers, FP registers and fcsr translated as interpreted. The translator's inline FP
// paths run only while NX is set and frm is round-to-nearest-even, so the programs start from
// every mix of the two, and the operands are the values where the fast paths must give way to
// the core: NaNs (quiet, signaling, NaN-boxed singles), infinities, zeros of both signs,
// subnormals, the edges of the normal range and of the integer conversions.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { EXIT, same } from "./asm";

const RM = ["", ", rne", ", rtz", ", rdn", ", rup", ", rmm", ", dyn"];
const F3 = ["fadd.d", "fsub.d", "fmul.d", "fdiv.d"];
const F2 = ["fsgnj.d", "fsgnjn.d", "fsgnjx.d", "fmin.d", "fmax.d"];
const CMP = ["feq.d", "flt.d", "fle.d"];
const TO_INT = ["fcvt.w.d", "fcvt.wu.d", "fcvt.l.d", "fcvt.lu.d"];
const FROM_INT = ["fcvt.d.w", "fcvt.d.wu", "fcvt.d.l", "fcvt.d.lu"];
const BITS = [
  "0x0", "0x8000000000000000", "0x3ff0000000000000", "0xbff0000000000000", "0x7ff0000000000000", "0xfff0000000000000",
  "0x7ff8000000000000", "0x7ff4000000000000", "0xffffffff7fc00000", "0x0000000000000001", "0x000fffffffffffff",
  "0x0010000000000000", "0x0010000000000001", "0x7fefffffffffffff", "0x3fe0000000000000", "0xc3e0000000000000",
  "0x43e0000000000000", "0x41dfffffffc00000", "0xc1e0000000200000", "0x41f0000000000000", "0x3ff8000000000000",
  "0x4008000000000000", "0x2000000000000000", "0x5fe0000000000000", "0xbfe8000000000000",
];

const f = fc.integer({ min: 0, max: 3 }).map((r) => `f${r}`); // few registers: special values meet often
const x = fc.integer({ min: 10, max: 15 }).map((r) => `x${r}`);
const rm = fc.oneof({ arbitrary: fc.constantFrom("", ", rtz"), weight: 3 }, { arbitrary: fc.constantFrom(...RM), weight: 1 });
const insn = fc.oneof(
  fc.tuple(fc.constantFrom(...F3), f, f, f, rm).map(([o, d, a, b, m]) => `${o} ${d}, ${a}, ${b}${m}`),
  fc.tuple(fc.constantFrom(...F2), f, f, f).map(([o, d, a, b]) => `${o} ${d}, ${a}, ${b}`),
  fc.tuple(f, f, rm).map(([d, a, m]) => `fsqrt.d ${d}, ${a}${m}`),
  fc.tuple(fc.constantFrom(...CMP), x, f, f).map(([o, d, a, b]) => `${o} ${d}, ${a}, ${b}`),
  fc.tuple(fc.constantFrom(...TO_INT), x, f, rm).map(([o, d, a, m]) => `${o} ${d}, ${a}${m}`),
  fc.tuple(fc.constantFrom(...FROM_INT), f, x, rm).map(([o, d, a, m]) => `${o} ${d}, ${a}${o.endsWith("w") || o.endsWith("wu") ? "" : m}`), // exact: no rm
  fc.tuple(f, x).map(([d, a]) => `fmv.d.x ${d}, ${a}`),
  fc.tuple(x, f).map(([d, a]) => `fmv.x.d ${d}, ${a}`),
  fc.tuple(f, fc.integer({ min: 0, max: 7 })).map(([d, k]) => `fld ${d}, ${k * 8}(x9)`),
  fc.tuple(f, fc.integer({ min: 0, max: 7 })).map(([d, k]) => `fsd ${d}, ${k * 8 + 64}(x9)`),
  fc.tuple(x, x, x).map(([d, a, b]) => `add ${d}, ${a}, ${b}`),
);
const bits = fc.oneof({ arbitrary: fc.constantFrom(...BITS), weight: 6 }, { arbitrary: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map((v) => `0x${v.toString(16)}`), weight: 1 });

function SRC(values: string[], frm: number, nx: boolean, body: string[]): string {
        // f0-f7 from the first 8 values (also the table fld reads), x10-x15 from the rest.
  return `
  li t0, 0x6000
  csrs mstatus, t0     # FS dirty
  la x9, table
${values.slice(0, 8).map((v, i) => `  li t0, ${v}\n  sd t0, ${i * 8}(x9)\n  fld f${i}, ${i * 8}(x9)\n`).join("")}
${values.slice(8).map((v, i) => `  li x${10 + i}, ${v}\n`).join("")}
  li t0, ${(frm << 5) | (nx ? 1 : 0)}
  fscsr t0
  li x31, 300
  .align 12
loop:
${body.map((l) => `  ${l}\n`).join("")}
  frflags t1
  li t2, 31            # flags raised in every round, not only at the end: x16 = x16 * 31 + flags
  mul x16, x16, t2     # (a difference in any round survives, unlike with xor)
  add x16, x16, t1
  fsflags t1, x0       # and start the next round with none but NX as at first
  ori t1, x0, ${nx ? 1 : 0}
  fsflags t1
  addi x31, x31, -1
  bnez x31, loop
${EXIT}
  .align 12
table: .zero 256
`;
}

describe("random double-precision programs", () => {
  it("end with the same registers, FP registers and flags translated as interpreted", () => {
    let n = 0;
    fc.assert(fc.property(fc.array(bits, { minLength: 14, maxLength: 14 }),
      // mostly frm = RNE with NX set: where the inline paths run
      fc.oneof({ arbitrary: fc.constant(0), weight: 5 }, { arbitrary: fc.integer({ min: 1, max: 4 }), weight: 1 }),
      fc.oneof({ arbitrary: fc.constant(true), weight: 5 }, { arbitrary: fc.constant(false), weight: 1 }),
      fc.array(insn, { minLength: 8, maxLength: 30 }), (values, frm, nx, body) => {
        const source = SRC(values, frm, nx, body);
        const t = same(`randomfp${n++}`, source);
        expect(t.jit!.retired).toBeGreaterThan(0);
      }), { numRuns: 40, seed: 20261206 });
  }, 300_000);
});
