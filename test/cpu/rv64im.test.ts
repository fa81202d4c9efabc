// RV64I and M: every instruction class with edge values, checked against ref.ts (the spec's
// definitions) and against hand-computed literals for the classic corner cases.
import { describe, expect, it } from "vitest";
import { machine, Machine, RAM, hex, u64, CAUSE } from "./harness";
import { RR, RI, EDGE, U } from "./ref";
import { DATA, RES, sweepRR, sweepRI, allPairs, expectSweep } from "./sweep";

const RV64I_RR = ["add", "sub", "sll", "slt", "sltu", "xor", "srl", "sra", "or", "and", "addw", "subw", "sllw", "srlw", "sraw"];
const RV64M = ["mul", "mulh", "mulhsu", "mulhu", "div", "divu", "rem", "remu", "mulw", "divw", "divuw", "remw", "remuw"];

describe("RV64I/M register-register sweeps against the spec definitions", () => {
  const pairs = allPairs(EDGE);
  const names = pairs.map(([a, b]) => `${hex(a)}, ${hex(b)}`);
  for (const op of [...RV64I_RR, ...RV64M]) {
    it(op, () => {
      expectSweep(op, sweepRR(op, pairs), pairs.map(([a, b]) => RR[op](a, b)), names);
    });
  }
});

describe("RV64I register-immediate sweeps", () => {
  const imm12 = [0n, 1n, -1n, 2047n, -2048n, 0x7ffn, -0x800n, 31n, 32n, -32n, 0x555n, -0x556n];
  const names = (imms: bigint[]) => EDGE.flatMap((v) => imms.map((i) => `${hex(v)}, ${i}`));
  for (const op of ["addi", "slti", "sltiu", "xori", "ori", "andi", "addiw"]) {
    it(op, () => {
      const want = EDGE.flatMap((v) => imm12.map((i) => RI[op](v, i)));
      expectSweep(op, sweepRI(op, EDGE, imm12), want, names(imm12));
    });
  }
  const sh64 = [0n, 1n, 7n, 31n, 32n, 33n, 62n, 63n];
  for (const op of ["slli", "srli", "srai"]) {
    it(op, () => {
      const want = EDGE.flatMap((v) => sh64.map((i) => RI[op](v, i)));
      expectSweep(op, sweepRI(op, EDGE, sh64), want, names(sh64));
    });
  }
  const sh32 = [0n, 1n, 7n, 15n, 16n, 30n, 31n];
  for (const op of ["slliw", "srliw", "sraiw"]) {
    it(op, () => {
      const want = EDGE.flatMap((v) => sh32.map((i) => RI[op](v, i)));
      expectSweep(op, sweepRI(op, EDGE, sh32), want, names(sh32));
    });
  }
});

/** Run a snippet and return named registers. */
function regs(src: string, names: string[], init: Record<string, bigint> = {}): Record<string, bigint> {
  const m = machine(src);
  for (const [r, v] of Object.entries(init)) m.setX(r, v);
  m.runDone();
  return Object.fromEntries(names.map((n) => [n, m.x(n)]));
}

describe("hand-checked corner cases", () => {
  it("shift amounts use only the low 6 (or 5 for W) bits of rs2", () => {
    const r = regs(`
      li a1, 0x8000000000000001
      li a2, 65          # 65 & 63 = 1
      sll a3, a1, a2
      srl a4, a1, a2
      sra a5, a1, a2
      li a2, 33          # 33 & 31 = 1 for the W forms
      sllw a6, a1, a2
      li t1, 0x80000000
      srlw a7, t1, a2
      sraw s2, t1, a2
      srlw s3, t1, zero  # shift by 0 still sign-extends bit 31
    `, ["a3", "a4", "a5", "a6", "a7", "s2", "s3"]);
    expect(r.a3).toBe(2n);
    expect(r.a4).toBe(0x4000000000000000n);
    expect(r.a5).toBe(0xc000000000000000n);
    expect(r.a6).toBe(2n);
    expect(r.a7).toBe(0x40000000n);
    expect(r.s2).toBe(0xffffffffc0000000n);
    expect(r.s3).toBe(0xffffffff80000000n);
  });

  it("W operations sign-extend their 32-bit results", () => {
    const r = regs(`
      li a1, 0x7fffffff
      addiw a2, a1, 1
      addw a3, a1, a1
      li a4, 0x00000001ffffffff
      addiw a5, a4, 0     # sext.w
      li t0, 0x80000000
      subw a6, zero, t0   # -(-2^31) overflows to -2^31
      li t1, 0x10000
      mulw a7, t1, t1     # 2^32 -> 0
      li t2, 0xffff
      mulw s2, t1, t2     # 0xffff0000 -> negative
      slliw s3, a1, 1
    `, ["a2", "a3", "a5", "a6", "a7", "s2", "s3"]);
    expect(r.a2).toBe(0xffffffff80000000n);
    expect(r.a3).toBe(0xfffffffffffffffen);
    expect(r.a5).toBe(0xffffffffffffffffn);
    expect(r.a6).toBe(0xffffffff80000000n);
    expect(r.a7).toBe(0n);
    expect(r.s2).toBe(0xffffffffffff0000n);
    expect(r.s3).toBe(0xfffffffffffffffen);
  });

  it("division by zero and signed overflow follow the spec table", () => {
    const r = regs(`
      li a1, 0x8000000000000000
      li a2, -1
      div s2, a1, a2
      rem s3, a1, a2
      li t0, 1234
      div s4, t0, zero
      divu s5, t0, zero
      rem s6, t0, zero
      remu s7, t0, zero
      li t1, 0xffffffff80000000
      divw s8, t1, a2
      remw s9, t1, a2
      li t2, 0x1234567880000005
      divw s10, t2, zero
      divuw s11, t2, zero
      remw t3, t2, zero
      remuw t4, t2, zero
      li t5, -7
      li t6, 2
      div a3, t5, t6        # rounds toward zero
      rem a4, t5, t6
      divu a5, t5, t6
    `, ["s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "t3", "t4", "a3", "a4", "a5"]);
    expect(r.s2).toBe(0x8000000000000000n);
    expect(r.s3).toBe(0n);
    expect(r.s4).toBe(0xffffffffffffffffn);
    expect(r.s5).toBe(0xffffffffffffffffn);
    expect(r.s6).toBe(1234n);
    expect(r.s7).toBe(1234n);
    expect(r.s8).toBe(0xffffffff80000000n);
    expect(r.s9).toBe(0n);
    expect(r.s10).toBe(0xffffffffffffffffn);
    expect(r.s11).toBe(0xffffffffffffffffn);
    expect(r.t3).toBe(0xffffffff80000005n);
    expect(r.t4).toBe(0xffffffff80000005n);
    expect(r.a3).toBe(u64(-3n));
    expect(r.a4).toBe(u64(-1n));
    expect(r.a5).toBe(0x7ffffffffffffffcn);
  });

  it("mulh/mulhsu/mulhu treat operand signs as specified", () => {
    const r = regs(`
      li a1, -1
      mulh s2, a1, a1       # (-1)*(-1) = 1 -> high 0
      mulhsu s3, a1, a1     # (-1)*(2^64-1) -> high -1
      mulhu s4, a1, a1      # (2^64-1)^2 -> high 2^64-2
      li a2, 0x8000000000000000
      mulh s5, a2, a2       # 2^126 -> high 2^62
      mulhsu s6, a2, a2     # -2^63 * 2^63 = -2^126 -> high -2^62
      li a3, 3
      mulhsu s7, a3, a1     # 3*(2^64-1) -> high 2
      mulhsu s8, a1, a3     # -3 -> high -1
      mul s9, a2, a1
    `, ["s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9"]);
    expect(r.s2).toBe(0n);
    expect(r.s3).toBe(0xffffffffffffffffn);
    expect(r.s4).toBe(0xfffffffffffffffen);
    expect(r.s5).toBe(0x4000000000000000n);
    expect(r.s6).toBe(0xc000000000000000n);
    expect(r.s7).toBe(2n);
    expect(r.s8).toBe(0xffffffffffffffffn);
    expect(r.s9).toBe(0x8000000000000000n);
  });

  it("slt/sltu/slti/sltiu compare signed and unsigned", () => {
    const r = regs(`
      li a1, -1
      li a2, 1
      slt s2, a1, a2
      sltu s3, a1, a2
      slti s4, a1, 0
      sltiu s5, a2, -1       # immediate sign-extends to 2^64-1, then compares unsigned
      sltiu s6, a1, -1
      sltiu s7, zero, 1      # seqz
      sltu s8, zero, a2      # snez
      slt s9, a2, a2
    `, ["s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9"]);
    expect([r.s2, r.s3, r.s4, r.s5, r.s6, r.s7, r.s8, r.s9]).toEqual([1n, 0n, 1n, 1n, 0n, 1n, 1n, 0n]);
  });

  it("lui and auipc build sign-extended 32-bit upper immediates", () => {
    const m = machine(`
      lui a1, 0x80000
      lui a2, 0x7ffff
      lui a3, 0xfffff
      here:
      auipc a4, 0
      auipc a5, 0x80000      # pc - 2^31
      auipc a6, 1
    `);
    m.runDone();
    const here = BigInt(m.label("here"));
    expect(m.x("a1")).toBe(0xffffffff80000000n);
    expect(m.x("a2")).toBe(0x7ffff000n);
    expect(m.x("a3")).toBe(0xfffffffffffff000n);
    expect(m.x("a4")).toBe(here);
    expect(m.x("a5")).toBe(u64(here + 4n - 0x80000000n));
    expect(m.x("a6")).toBe(here + 8n + 0x1000n);
  });

  it("x0 stays zero whatever is written to it", () => {
    const r = regs(`
      li t0, 5
      addi zero, t0, 1
      lui zero, 0x12345
      add a1, zero, zero
      jal zero, 1f
    1:
      ld zero, 0(sp)
      mv a2, zero
    `, ["a1", "a2"], { sp: BigInt(DATA) });
    expect(r.a1).toBe(0n);
    expect(r.a2).toBe(0n);
  });
});

describe("jumps and branches", () => {
  it("jal links pc+4 and jumps forwards and backwards", () => {
    const m = machine(`
      jal ra, fwd
    back:
      li a3, 3
      j done
    fwd:
      jal a1, 1f
    1:
      li a2, 2
      j back
    `);
    m.runDone();
    expect(m.x("ra")).toBe(BigInt(RAM + 4));
    expect(m.x("a1")).toBe(BigInt(m.label("fwd") + 4));
    expect(m.x("a2")).toBe(2n);
    expect(m.x("a3")).toBe(3n);
  });

  it("jalr adds the immediate, clears bit 0, links pc+4 even when rd == rs1", () => {
    const m = machine(`
      la t0, target
      addi t0, t0, 1        # odd address: bit 0 must be cleared
    site1:
      jalr a1, 0(t0)
      li a7, 99             # skipped
    target:
      la ra, target2
      addi ra, ra, -8
    site2:
      jalr ra, 8(ra)        # rd == rs1: target uses the old value
      li a7, 98
    target2:
      la t1, target3
      addi t1, t1, 3        # +3 and imm -2 -> target3+1 -> bit 0 cleared
      jalr zero, -2(t1)
      li a7, 97
    target3:
      li a2, 1
    `);
    m.runDone();
    expect(m.x("a1")).toBe(BigInt(m.label("site1") + 4));
    expect(m.x("ra")).toBe(BigInt(m.label("site2") + 4));
    expect(m.x("a7")).toBe(0n);
    expect(m.x("a2")).toBe(1n);
  });

  const BR: [string, (a: bigint, b: bigint) => boolean][] = [
    ["beq", (a, b) => a === b], ["bne", (a, b) => a !== b],
    ["blt", (a, b) => BigInt.asIntN(64, a) < BigInt.asIntN(64, b)],
    ["bge", (a, b) => BigInt.asIntN(64, a) >= BigInt.asIntN(64, b)],
    ["bltu", (a, b) => a < b], ["bgeu", (a, b) => a >= b],
  ];
  const vals = [0n, 1n, 0xffffffffffffffffn, 0x8000000000000000n, 0x7fffffffffffffffn, 0x80000000n];
  for (const [op, f] of BR) {
    it(`${op} taken and not taken (forward and backward)`, () => {
      const pairs = allPairs(vals);
      // For each pair: a forward branch over "li a0, 1", and a backward-branch variant.
      let src = `li s1, ${RES}\n`;
      pairs.forEach(([a, b], i) => {
        src += `li a1, ${a}\nli a2, ${b}\nli a0, 0\n${op} a1, a2, 1f\nli a0, 1\n1: sd a0, ${16 * i}(s1)\n`;
        src += `li a0, 0\nj 3f\n2: li a0, 2\nj 4f\n3: ${op} a1, a2, 2b\nli a0, 1\n4: sd a0, ${16 * i + 8}(s1)\n`;
      });
      const m = machine(src);
      m.runDone();
      const bad: string[] = [];
      pairs.forEach(([a, b], i) => {
        const want = f(a, b);
        if (m.r64(RES + 16 * i) !== (want ? 0n : 1n)) bad.push(`fwd ${op} ${hex(a)}, ${hex(b)}`);
        if (m.r64(RES + 16 * i + 8) !== (want ? 2n : 1n)) bad.push(`back ${op} ${hex(a)}, ${hex(b)}`);
      });
      expect(bad).toEqual([]);
    });
  }
});

describe("loads and stores", () => {
  const PATTERN = [0xf0, 0xe1, 0xd2, 0xc3, 0xb4, 0xa5, 0x96, 0x87, 0x78, 0x69, 0x5a, 0x4b, 0x3c, 0x2d, 0x1e, 0x0f];
  const LOADS: [string, number, boolean][] = [
    ["lb", 1, true], ["lbu", 1, false], ["lh", 2, true], ["lhu", 2, false],
    ["lw", 4, true], ["lwu", 4, false], ["ld", 8, true],
  ];
  function expectedLoad(bytes: number[], off: number, size: number, signed: boolean): bigint {
    let v = 0n;
    for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[off + i]);
    return signed ? U(BigInt.asIntN(size * 8, v)) : v;
  }

  function loadAt(base: number, offsets: number[]): { m: Machine; want: bigint[]; got: bigint[]; names: string[] } {
    let src = `li s0, ${base}\nli s1, ${RES}\n`;
    const want: bigint[] = [];
    const names: string[] = [];
    for (const [op, size, signed] of LOADS) {
      for (const off of offsets) {
        src += `${op} a0, ${off}(s0)\nsd a0, 0(s1)\naddi s1, s1, 8\n`;
        want.push(expectedLoad(PATTERN, off + 4, size, signed));
        names.push(`${op} ${off}`);
      }
    }
    const m = machine(src);
    PATTERN.forEach((b, i) => m.w8(base - 4 + i, b));
    m.runDone();
    const got = want.map((_, i) => m.r64(RES + 8 * i));
    return { m, want, got, names };
  }

  it("every load width, sign- and zero-extended, aligned", () => {
    const { got, want, names } = loadAt(DATA + 4, [-4, 4]);
    expectSweep("load", got, want, names);
  });

  it("misaligned loads inside a page", () => {
    const { got, want, names } = loadAt(DATA + 0x104, [-3, -1, 1, 3]);
    expectSweep("load", got, want, names);
  });

  it("misaligned loads across a page boundary", () => {
    // base - 4 .. base + 12 straddles the page boundary at base + 1 .. base + 7
    const page = DATA + 0x1000;
    const { got, want, names } = loadAt(page - 3, [-1, -2, -3, 1]);
    expectSweep("load", got, want, names);
  });

  it("negative and positive 12-bit offsets", () => {
    const m = machine(`
      li s0, ${DATA + 0x800}
      ld a1, -2048(s0)
      ld a2, 2040(s0)
    `);
    m.w64(DATA, 0x1111111111111111n);
    m.w64(DATA + 0x800 + 2040, 0x2222222222222222n);
    m.runDone();
    expect(m.x("a1")).toBe(0x1111111111111111n);
    expect(m.x("a2")).toBe(0x2222222222222222n);
  });

  function storeTest(base: number) {
    const m = machine(`
      li s0, ${base}
      li a0, 0x0102030405060708
      sb a0, 0(s0)
      sh a0, 2(s0)
      sw a0, 5(s0)
      sd a0, 11(s0)
      sh a0, 20(s0)
      sw a0, 23(s0)
    `);
    m.fill(base - 8, 48, 0xee);
    m.runDone();
    const got = Array.from(m.core.phys(base - 8, 40)!);
    const want = new Array(40).fill(0xee);
    const put = (off: number, n: number) => {
      for (let i = 0; i < n; i++) want[8 + off + i] = [8, 7, 6, 5, 4, 3, 2, 1][i];
    };
    put(0, 1); put(2, 2); put(5, 4); put(11, 8); put(20, 2); put(23, 4);
    expect(got.map((b) => b.toString(16))).toEqual(want.map((b) => b.toString(16)));
  }

  it("stores of each width write exactly their bytes (aligned and misaligned)", () => storeTest(DATA + 0x200));
  it("misaligned stores across a page boundary", () => {
    // the sd at +11 and sw at +23 straddle the page boundary at base + 16
    storeTest(DATA + 0x2000 - 16);
    storeTest(DATA + 0x3000 - 13);
  });

  it("a load from a non-existent address raises load access fault with mtval = address", () => {
    const m = machine(`
      li s0, 0x40000000
    site:
      lw a0, 8(s0)
    `);
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.LOAD_ACCESS);
    expect(t.mepc).toBe(BigInt(m.label("site")));
    expect(t.mtval).toBe(0x40000008n);
  });

  it("a store to a non-existent address raises store access fault", () => {
    const m = machine(`
      li s0, ${RAM + (1 << 20)}   # first byte past RAM
    site:
      sd zero, 0(s0)
    `);
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.STORE_ACCESS);
    expect(t.mepc).toBe(BigInt(m.label("site")));
    expect(t.mtval).toBe(BigInt(RAM + (1 << 20)));
  });

  it("a store to the boot ROM raises store access fault (ROM is read-only)", () => {
    const m = machine(`
      li s0, 0x1000
      lw a1, 0(s0)
    site:
      sw a1, 0(s0)
    `);
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.STORE_ACCESS);
    expect(t.mepc).toBe(BigInt(m.label("site")));
  });

  it("fence and fence.i execute as no-ops; code stored then fenced runs the new instruction", () => {
    const m = machine(`
      la s0, patch
      li t0, 0x02a00513      # addi a0, zero, 42
      sw t0, 0(s0)
      fence
      fence.i
    patch:
      addi a0, zero, 1
    `);
    m.runDone();
    expect(m.x("a0")).toBe(42n);
  });
});

describe("illegal encodings in the base ISA", () => {
  const cases: [string, number][] = [
    ["load funct3=7", 0x00007003],
    ["store funct3=4", 0x00004023],
    ["branch funct3=2", 0x00002063],
    ["jalr funct3=1", 0x00001067],
    ["OP funct7=0x02", 0x04000033],
    ["OP-32 funct3=2 (no sltw)", 0x0000203b],
    ["slliw with shamt[5] set", 0x0200101b],
    ["all-ones word", 0xffffffff],
    ["reserved major opcode 0x1a", 0x0000006b],
    ["SYSTEM funct3=4", 0x00004073],
    ["ecall with rd != 0", 0x000000f3],
    ["sfence.vma with rd != 0", 0x120000f3],
  ];
  for (const [name, word] of cases) {
    it(`${name} -> illegal instruction, mtval = encoding`, () => {
      const m = machine(`
      site:
        .word ${word}
      `);
      const t = m.runTrap();
      expect(t.mcause).toBe(CAUSE.ILLEGAL);
      expect(t.mepc).toBe(BigInt(RAM));
      expect(t.mtval).toBe(BigInt(word >>> 0));
    });
  }
});
