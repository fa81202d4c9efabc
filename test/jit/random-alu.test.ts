// Random integer programs (every ALU instruction the translator covers, with edge-case operands),
// looped so that their page is translated, must end with the same registers translated as
// interpreted. fast-check makes the programs and shrinks a failing one.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { EXIT, same } from "./asm";

const R = ["add", "sub", "sll", "srl", "sra", "slt", "sltu", "xor", "or", "and", "mul", "mulh", "mulhu", "mulhsu", "div", "divu", "rem", "remu",
  "addw", "subw", "sllw", "srlw", "sraw", "mulw", "divw", "divuw", "remw", "remuw", "add.uw", "sh1add", "sh2add", "sh3add", "sh1add.uw",
  "sh2add.uw", "sh3add.uw", "andn", "orn", "xnor", "min", "max", "minu", "maxu", "rol", "ror", "rolw", "rorw", "bclr", "bset", "binv", "bext"];
const I = ["addi", "slti", "sltiu", "xori", "ori", "andi", "addiw"];
const SH = ["slli", "srli", "srai", "rori", "slli.uw", "bclri", "bseti", "binvi", "bexti"];
const SHW = ["slliw", "srliw", "sraiw", "roriw"];
const U = ["clz", "ctz", "cpop", "clzw", "ctzw", "cpopw", "sext.b", "sext.h", "zext.h", "orc.b", "rev8"];
const VALUES = ["0", "1", "-1", "0x7fffffff", "0x80000000", "-0x80000000", "0x8000000000000000", "0x7fffffffffffffff", "63", "64", "31", "32", "0xffffffff", "-2"];

const reg = fc.integer({ min: 1, max: 15 }).map((r) => `x${r}`);
const insn = fc.oneof(
  fc.tuple(fc.constantFrom(...R), reg, reg, reg).map(([o, d, a, b]) => `${o} ${d}, ${a}, ${b}`),
  fc.tuple(fc.constantFrom(...I), reg, reg, fc.integer({ min: -2048, max: 2047 })).map(([o, d, a, i]) => `${o} ${d}, ${a}, ${i}`),
  fc.tuple(fc.constantFrom(...SH), reg, reg, fc.integer({ min: 0, max: 63 })).map(([o, d, a, i]) => `${o} ${d}, ${a}, ${i}`),
  fc.tuple(fc.constantFrom(...SHW), reg, reg, fc.integer({ min: 0, max: 31 })).map(([o, d, a, i]) => `${o} ${d}, ${a}, ${i}`),
  fc.tuple(fc.constantFrom(...U), reg, reg).map(([o, d, a]) => `${o} ${d}, ${a}`),
  fc.tuple(reg, fc.integer({ min: 0, max: (1 << 20) - 1 })).map(([d, i]) => `lui ${d}, ${i}`),
);
const init = fc.array(fc.oneof(fc.constantFrom(...VALUES), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map((v) => `0x${v.toString(16)}`)), { minLength: 15, maxLength: 15 });

describe("random integer programs", () => {
  it("end with the same registers translated as interpreted", () => {
    let n = 0;
    fc.assert(fc.property(init, fc.array(insn, { minLength: 10, maxLength: 40 }), (values, body) => {
      const source = values.map((v, i) => `  li x${i + 1}, ${v}\n`).join("") +
        "  li x31, 300\n  .align 12\nloop:\n" + body.map((l) => `  ${l}\n`).join("") + "  addi x31, x31, -1\n  bnez x31, loop\n" + EXIT;
      const t = same(`random${n++}`, source);
      expect(t.jit!.retired).toBeGreaterThan(0);
    }), { numRuns: 25, seed: 20261206 });
  }, 300_000);
});
