// Zba, Zbb, Zbs (bit-manipulation 1.0.0): sweeps against ref.ts plus hand-checked literals.
import { describe, expect, it } from "vitest";
import { machine, RAM, CAUSE } from "./harness";
import { RR, RI, UN, EDGE } from "./ref";
import { sweepRR, sweepRI, sweepUnary, allPairs, expectSweep } from "./sweep";
import { hex } from "./harness";

const pairs = allPairs(EDGE);
const pairNames = pairs.map(([a, b]) => `${hex(a)}, ${hex(b)}`);

describe("Zba", () => {
  for (const op of ["add.uw", "sh1add", "sh2add", "sh3add", "sh1add.uw", "sh2add.uw", "sh3add.uw"]) {
    it(op, () => expectSweep(op, sweepRR(op, pairs), pairs.map(([a, b]) => RR[op](a, b)), pairNames));
  }
  it("slli.uw", () => {
    const sh = [0n, 1n, 2n, 3n, 31n, 32n, 33n, 63n];
    expectSweep("slli.uw", sweepRI("slli.uw", EDGE, sh), EDGE.flatMap((v) => sh.map((i) => RI["slli.uw"](v, i))),
      EDGE.flatMap((v) => sh.map((i) => `${hex(v)}, ${i}`)));
  });
  it("literals: zext.w, sh3add.uw", () => {
    const m = machine(`
      li a1, 0xffffffff80000001
      zext.w a2, a1            # add.uw rd, rs, zero
      li a3, 0x100
      sh3add.uw a4, a1, a3     # (0x80000001 << 3) + 0x100
      slli.uw a5, a1, 4
    `);
    m.runDone();
    expect(m.x("a2")).toBe(0x80000001n);
    expect(m.x("a4")).toBe(0x400000108n);
    expect(m.x("a5")).toBe(0x800000010n);
  });
});

describe("Zbb", () => {
  for (const op of ["andn", "orn", "xnor", "max", "maxu", "min", "minu", "rol", "ror", "rolw", "rorw"]) {
    it(op, () => expectSweep(op, sweepRR(op, pairs), pairs.map(([a, b]) => RR[op](a, b)), pairNames));
  }
  for (const op of ["clz", "ctz", "cpop", "clzw", "ctzw", "cpopw", "sext.b", "sext.h", "zext.h", "orc.b", "rev8"]) {
    it(op, () => expectSweep(op, sweepUnary(op, EDGE), EDGE.map((v) => UN[op](v)), EDGE.map((v) => hex(v))));
  }
  it("rori", () => {
    const sh = [0n, 1n, 8n, 31n, 32n, 63n];
    expectSweep("rori", sweepRI("rori", EDGE, sh), EDGE.flatMap((v) => sh.map((i) => RI.rori(v, i))),
      EDGE.flatMap((v) => sh.map((i) => `${hex(v)}, ${i}`)));
  });
  it("roriw", () => {
    const sh = [0n, 1n, 8n, 16n, 31n];
    expectSweep("roriw", sweepRI("roriw", EDGE, sh), EDGE.flatMap((v) => sh.map((i) => RI.roriw(v, i))),
      EDGE.flatMap((v) => sh.map((i) => `${hex(v)}, ${i}`)));
  });
  it("literals", () => {
    const m = machine(`
      li a1, 0
      clz s2, a1
      ctz s3, a1
      clzw s4, a1
      ctzw s5, a1
      li a2, 0x0000000100000000
      clzw s6, a2              # only the low word counts -> 32
      ctz s7, a2
      li a3, 0x0100ff0000000080
      orc.b s8, a3
      rev8 s9, a3
      li a4, 0x1234567880000001
      rorw s10, a4, zero       # rotate by 0 still sign-extends
      roriw s11, a4, 1
      li a5, -1
      cpopw t3, a5
      min t4, a5, zero
      minu t5, a5, zero
    `);
    m.runDone();
    expect(m.x("s2")).toBe(64n);
    expect(m.x("s3")).toBe(64n);
    expect(m.x("s4")).toBe(32n);
    expect(m.x("s5")).toBe(32n);
    expect(m.x("s6")).toBe(32n);
    expect(m.x("s7")).toBe(32n);
    expect(m.x("s8")).toBe(0xff00ff00000000ffn);
    expect(m.x("s9")).toBe(0x8000000000ff0001n);
    expect(m.x("s10")).toBe(0xffffffff80000001n);
    expect(m.x("s11")).toBe(0xffffffffc0000000n);
    expect(m.x("t3")).toBe(32n);
    expect(m.x("t4")).toBe(0xffffffffffffffffn);
    expect(m.x("t5")).toBe(0n);
  });
});

describe("Zbs", () => {
  for (const op of ["bclr", "bext", "binv", "bset"]) {
    it(op, () => expectSweep(op, sweepRR(op, pairs), pairs.map(([a, b]) => RR[op](a, b)), pairNames));
  }
  for (const op of ["bclri", "bexti", "binvi", "bseti"]) {
    it(op, () => {
      const sh = [0n, 1n, 31n, 32n, 62n, 63n];
      expectSweep(op, sweepRI(op, EDGE, sh), EDGE.flatMap((v) => sh.map((i) => RI[op](v, i))),
        EDGE.flatMap((v) => sh.map((i) => `${hex(v)}, ${i}`)));
    });
  }
  it("literals", () => {
    const m = machine(`
      li a1, 0x8000000000000000
      bexti s2, a1, 63
      bclri s3, a1, 63
      li a2, 64 + 3            # index taken mod 64
      bset s4, zero, a2
      binvi s5, zero, 40
    `);
    m.runDone();
    expect(m.x("s2")).toBe(1n);
    expect(m.x("s3")).toBe(0n);
    expect(m.x("s4")).toBe(8n);
    expect(m.x("s5")).toBe(1n << 40n);
  });
});

describe("reserved bit-manipulation encodings are illegal", () => {
  const cases: [string, number][] = [
    // clz family with rs2 = 3 (unassigned) : imm12 = 0x603
    ["OP-IMM imm 0x603", (0x603 << 20) | (1 << 12) | (10 << 7) | (11 << 15) | 0x13],
    // zext.h with rs2 != 0
    ["zext.h with rs2=1", (0x04 << 25) | (1 << 20) | (11 << 15) | (4 << 12) | (10 << 7) | 0x3b],
    // roriw with shamt[5] set (funct7 0x31)
    ["roriw shamt 32", (0x31 << 25) | (11 << 15) | (5 << 12) | (10 << 7) | 0x1b],
    // rev8 with the RV32 encoding (0x698) is reserved on RV64
    ["rev8 RV32 encoding", (0x698 << 20) | (11 << 15) | (5 << 12) | (10 << 7) | 0x13],
  ];
  for (const [name, word] of cases) {
    it(name, () => {
      const m = machine(`.word ${word >>> 0}`);
      const t = m.runTrap();
      expect(t.mcause).toBe(CAUSE.ILLEGAL);
      expect(t.mtval).toBe(BigInt(word >>> 0));
      expect(t.mepc).toBe(BigInt(RAM));
    });
  }
});
