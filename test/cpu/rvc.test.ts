// C extension: each compressed instruction must behave exactly like its 32-bit expansion
// (same registers, same memory), control transfers link pc+2, and reserved encodings raise
// illegal instruction with mtval = the 16-bit encoding.
import { describe, expect, it } from "vitest";
import { machine, Machine, RAM, CAUSE, hex } from "./harness";

const DATA = RAM + 0x40000;

function initState(m: Machine) {
  for (let i = 1; i < 32; i++) {
    m.setX(i, BigInt.asUintN(64, 0x0123456789abcdefn * BigInt(i) ^ (BigInt(i) << 56n)));
    m.setF(i, BigInt.asUintN(64, 0x3ff0000000000000n + BigInt(i) * 0x0001000000000123n));
  }
  m.setX("sp", DATA + 0x400);
  m.setX("s0", DATA + 0x100);
  m.setX("s1", DATA + 0x200);
  m.setX("a0", 0x7fffffffn);           // for addiw/addw overflow
  m.setX("a1", 0xffffffff80000000n);
  for (let i = 0; i < 0x1000; i += 8) m.w64(DATA + i, 0x0f1e2d3c4b5a6978n ^ BigInt(i * 0x1010101));
}

function snapshot(src: string, fp = false) {
  const m = machine(src, { fp });
  initState(m);
  m.runDone();
  const x = Array.from({ length: 32 }, (_, i) => hex(m.x(i)));
  const f = Array.from({ length: 32 }, (_, i) => hex(m.f(i)));
  const mem = Array.from(m.core.phys(DATA, 0x1000)!);
  return { x, f, mem };
}

const PAIRS: [string, string][] = [
  ["c.addi4spn a0, sp, 4", "addi a0, sp, 4"],
  ["c.addi4spn s1, sp, 1020", "addi s1, sp, 1020"],
  ["c.lw a2, 0(s1)", "lw a2, 0(s1)"],
  ["c.lw a3, 124(s0)", "lw a3, 124(s0)"],
  ["c.ld a4, 8(s1)", "ld a4, 8(s1)"],
  ["c.ld a5, 248(s0)", "ld a5, 248(s0)"],
  ["c.sw a1, 64(s0)", "sw a1, 64(s0)"],
  ["c.sw a5, 124(s1)", "sw a5, 124(s1)"],
  ["c.sd a2, 0(s1)", "sd a2, 0(s1)"],
  ["c.sd a3, 248(s0)", "sd a3, 248(s0)"],
  ["c.nop", "addi zero, zero, 0"],
  ["c.addi t0, -32", "addi t0, t0, -32"],
  ["c.addi s11, 31", "addi s11, s11, 31"],
  ["c.addiw a0, 1", "addiw a0, a0, 1"],
  ["c.addiw a1, -1", "addiw a1, a1, -1"],
  ["c.addiw t6, 0", "addiw t6, t6, 0"],
  ["c.li a5, -32", "addi a5, zero, -32"],
  ["c.li ra, 31", "addi ra, zero, 31"],
  ["c.lui t1, 1", "lui t1, 1"],
  ["c.lui a4, 31", "lui a4, 31"],
  ["c.lui s2, 0xfffe0", "lui s2, 0xfffe0"],
  ["c.lui gp, 0xfffff", "lui gp, 0xfffff"],
  ["c.addi16sp sp, -512", "addi sp, sp, -512"],
  ["c.addi16sp sp, 496", "addi sp, sp, 496"],
  ["c.addi16sp sp, 16", "addi sp, sp, 16"],
  ["c.srli s0, 1", "srli s0, s0, 1"],
  ["c.srli a1, 63", "srli a1, a1, 63"],
  ["c.srli a2, 32", "srli a2, a2, 32"],
  ["c.srai a1, 1", "srai a1, a1, 1"],
  ["c.srai a3, 63", "srai a3, a3, 63"],
  ["c.srai a4, 33", "srai a4, a4, 33"],
  ["c.andi a5, -1", "andi a5, a5, -1"],
  ["c.andi a2, -32", "andi a2, a2, -32"],
  ["c.andi s1, 17", "andi s1, s1, 17"],
  ["c.sub a0, a1", "sub a0, a0, a1"],
  ["c.xor a2, a3", "xor a2, a2, a3"],
  ["c.or a4, a5", "or a4, a4, a5"],
  ["c.and s0, s1", "and s0, s0, s1"],
  ["c.subw a1, a0", "subw a1, a1, a0"],
  ["c.addw a0, a0", "addw a0, a0, a0"],
  ["c.addw a3, a4", "addw a3, a3, a4"],
  ["c.slli t2, 1", "slli t2, t2, 1"],
  ["c.slli s10, 63", "slli s10, s10, 63"],
  ["c.slli a0, 32", "slli a0, a0, 32"],
  ["c.lwsp a0, 0(sp)", "lw a0, 0(sp)"],
  ["c.lwsp t5, 252(sp)", "lw t5, 252(sp)"],
  ["c.ldsp ra, 8(sp)", "ld ra, 8(sp)"],
  ["c.ldsp s11, 504(sp)", "ld s11, 504(sp)"],
  ["c.swsp a1, 252(sp)", "sw a1, 252(sp)"],
  ["c.swsp t6, 4(sp)", "sw t6, 4(sp)"],
  ["c.sdsp a1, 504(sp)", "sd a1, 504(sp)"],
  ["c.sdsp ra, 0(sp)", "sd ra, 0(sp)"],
  ["c.mv a0, t6", "add a0, zero, t6"],
  ["c.mv s3, sp", "add s3, zero, sp"],
  ["c.add s11, a5", "add s11, s11, a5"],
  ["c.add a1, a1", "add a1, a1, a1"],
];

describe("compressed instructions execute like their expansions", () => {
  for (const [c, full] of PAIRS) {
    it(`${c}  ==  ${full}`, () => {
      const a = snapshot(c);
      const b = snapshot(full);
      expect(a.x).toEqual(b.x);
      expect(a.mem).toEqual(b.mem);
    });
  }

  const FP_PAIRS: [string, string][] = [
    ["c.fld fa0, 8(s1)", "fld fa0, 8(s1)"],
    ["c.fld fs1, 248(s0)", "fld fs1, 248(s0)"],
    ["c.fsd fa5, 16(s0)", "fsd fa5, 16(s0)"],
    ["c.fsd fs0, 248(s1)", "fsd fs0, 248(s1)"],
    ["c.fldsp ft3, 504(sp)", "fld ft3, 504(sp)"],
    ["c.fldsp fa7, 0(sp)", "fld fa7, 0(sp)"],
    ["c.fsdsp ft11, 504(sp)", "fsd ft11, 504(sp)"],
    ["c.fsdsp fs2, 8(sp)", "fsd fs2, 8(sp)"],
  ];
  for (const [c, full] of FP_PAIRS) {
    it(`${c}  ==  ${full}`, () => {
      const a = snapshot(c, true);
      const b = snapshot(full, true);
      expect(a.f).toEqual(b.f);
      expect(a.mem).toEqual(b.mem);
    });
  }

  it("literal results: c.lui sign-extends, c.addiw sign-extends, c.srai is arithmetic", () => {
    const m = machine(`
      c.lui a0, 0xfffe0         # -32 << 12
      c.li a1, -1
      c.srli a1, 60             # logical: 0xf
      c.li a2, -16
      c.srai a2, 2              # arithmetic: -4
      li a3, 0x7fffffff
      c.addiw a3, 1             # -> 0xffffffff80000000
      c.li a4, 1
      c.slli a4, 63
    `);
    m.runDone();
    expect(m.x("a0")).toBe(0xfffffffffffe0000n);
    expect(m.x("a1")).toBe(0xfn);
    expect(m.x("a2")).toBe(0xfffffffffffffffcn);
    expect(m.x("a3")).toBe(0xffffffff80000000n);
    expect(m.x("a4")).toBe(0x8000000000000000n);
  });
});

describe("compressed control transfer", () => {
  it("c.j forward and backward", () => {
    const m = machine(`
      c.li a0, 0
      c.j fwd
      c.li a0, 9
    back:
      c.addi a0, 2
      c.j out
      c.li a0, 7
    fwd:
      c.addi a0, 1
      c.j back
    out:
    `);
    m.runDone();
    expect(m.x("a0")).toBe(3n);
  });

  it("c.beqz/c.bnez taken and not taken", () => {
    const m = machine(`
      c.li s0, 0
      c.li s1, 5
      c.li a0, 0
      c.beqz s0, 1f        # taken
      c.li a0, 9
    1:
      c.bnez s0, 2f        # not taken
      c.addi a0, 1
    2:
      c.beqz s1, 3f        # not taken
      c.addi a0, 2
    3:
      c.bnez s1, 4f        # taken
      c.li a0, 0
    4:
      c.li a1, 0
    5:
      c.addi a1, 1
      c.addi s1, -1
      c.bnez s1, 5b        # backward
    `);
    m.runDone();
    expect(m.x("a0")).toBe(3n);
    expect(m.x("a1")).toBe(5n);
  });

  it("c.jalr links pc+2 into ra; c.jr does not link", () => {
    const m = machine(`
      la t0, sub
      li ra, 0
    site:
      c.jalr t0
      c.li a2, 1
      la t1, out
      c.jr t1
      c.li a3, 9
    sub:
      mv a1, ra
      c.jr ra
    out:
    `);
    m.runDone();
    expect(m.x("a1")).toBe(BigInt(m.label("site") + 2));
    expect(m.x("a2")).toBe(1n);
    expect(m.x("a3")).toBe(0n);
  });

  it("c.jalr with rs1 = ra jumps to the old ra", () => {
    const m = machine(`
      la ra, target
    site:
      c.jalr ra
      c.li a0, 9
      c.j done
    target:
      mv a1, ra
    `);
    m.runDone();
    expect(m.x("a0")).toBe(0n);
    expect(m.x("a1")).toBe(BigInt(m.label("site") + 2));
  });

  it("32-bit instructions at 2-byte aligned addresses, and a 32-bit instruction across a page boundary", () => {
    // Pad so that an addi starts 2 bytes before the end of the first 4 KiB page.
    const m = machine(`
      c.li a0, 1
      addi a0, a0, 10
      j cross
      .balign 4096
      .space 4092
      c.nop
    cross:
      addi a0, a0, 100       # at page offset 0xffe: its halves are on two pages
      c.addi a0, 1
    `);
    expect(m.label("cross") % 4096).toBe(0xffe);
    m.runDone();
    expect(m.x("a0")).toBe(112n);
  });

  it("c.ebreak raises breakpoint with mepc = mtval = its address", () => {
    const m = machine(`
      c.nop
    site:
      c.ebreak
    `);
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.BREAKPOINT);
    expect(t.mepc).toBe(BigInt(m.label("site")));
    expect(t.mtval).toBe(BigInt(m.label("site")));
  });
});

describe("reserved compressed encodings raise illegal instruction with mtval = the 16-bit encoding", () => {
  const cases: [string, number][] = [
    ["all-zero halfword (c.addi4spn with 0)", 0x0000],
    ["c.addi4spn nzuimm=0 with rd'=a0", 0x0008],
    ["c.addi16sp with 0", 0x6101],
    ["c.lui with 0 (rd=a0)", 0x6501],
    ["reserved quadrant-0 funct3=4", 0x8000],
    ["reserved quadrant-0 funct3=4 (nonzero bits)", 0x9ffc],
    ["c.lwsp rd=x0", 0x4002],
    ["c.ldsp rd=x0", 0x6002],
    ["c.jr rs1=x0", 0x8002],
    ["c.addiw rd=x0", 0x2001],
    ["reserved CA funct (bit12=1, funct2=10)", 0x9c41],
    ["reserved CA funct (bit12=1, funct2=11)", 0x9c61],
  ];
  for (const [name, half] of cases) {
    it(`${name} (${hex(half)})`, () => {
      const m = machine(`
        c.nop
      site:
        .half ${half}
        c.nop
      `);
      const t = m.runTrap();
      expect(t.mcause).toBe(CAUSE.ILLEGAL);
      expect(t.mepc).toBe(BigInt(m.label("site")));
      expect(t.mtval).toBe(BigInt(half));
    });
  }

  it("compressed FP loads with mstatus.FS = Off are illegal (mtval = 16-bit encoding)", () => {
    const m = machine(`
      li t0, 0x6000
      csrc mstatus, t0
      li s0, ${DATA}
    site:
      c.fld fa0, 0(s0)
    `);
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.ILLEGAL);
    expect(t.mepc).toBe(BigInt(m.label("site")));
    // c.fld fa0, 0(s0) = 001 000 000 00 010 00 = 0x2008
    expect(t.mtval).toBe(0x2008n);
  });
});
