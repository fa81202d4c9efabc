// F and D: NaN-boxing, moves, sign injection, classification, conversions, rounding modes
// (static, dynamic, reserved), fflags accumulation, a few arithmetic corner cases.
import { describe, expect, it } from "vitest";
import { machine, Machine, RAM, CAUSE, hex } from "./harness";
import { enc } from "../../host/util/riscv-asm";

const BOX = 0xffffffff00000000n;
const box = (v: number | bigint) => BOX | BigInt(v);
const DATA = RAM + 0x40000;

const S = {
  one: 0x3f800000, two: 0x40000000, three: 0x40400000, half: 0x3f000000, m_one: 0xbf800000,
  p2_5: 0x40200000, m2_5: 0xc0200000, p3_5: 0x40600000, tiny: 0x33800000 /* 2^-24 */,
  pinf: 0x7f800000, minf: 0xff800000, qnan: 0x7fc00000, snan: 0x7f800001, max: 0x7f7fffff,
  pzero: 0, mzero: 0x80000000, minNorm: 0x00800000, minSub: 0x00000001, three_e9: 0x4f32d05e,
};
const D = {
  one: 0x3ff0000000000000n, two: 0x4000000000000000n, p2_5: 0x4004000000000000n, m2_5: 0xc004000000000000n,
  qnan: 0x7ff8000000000000n, snan: 0x7ff0000000000001n, pinf: 0x7ff0000000000000n, minf: 0xfff0000000000000n,
  mzero: 0x8000000000000000n, minNorm: 0x0010000000000000n, minSub: 1n, max: 0x7fefffffffffffffn,
};

/** Run FP code (FS = Initial) with f/x registers preset. */
function fp(src: string, f: Record<string, bigint> = {}, x: Record<string, bigint | number> = {}): Machine {
  const m = machine(src, { fp: true });
  for (const [r, v] of Object.entries(f)) m.setF(r, v);
  for (const [r, v] of Object.entries(x)) m.setX(r, v);
  m.runDone();
  return m;
}

describe("NaN-boxing", () => {
  it("flw and fmv.w.x NaN-box the single (upper 32 bits all ones)", () => {
    const m = machine(`
      li t0, ${DATA}
      flw fa0, 0(t0)
      li t1, 0x123456783f800000
      fmv.w.x fa1, t1
    `, { fp: true });
    m.w64(DATA, 0x0badf00d40000000n);
    m.setF("fa0", 0n);
    m.runDone();
    expect(hex(m.f("fa0"))).toBe(hex(box(S.two)));
    expect(hex(m.f("fa1"))).toBe(hex(box(S.one)));
  });

  it("single-precision results are NaN-boxed", () => {
    const m = fp(`fadd.s fa0, fa1, fa2`, { fa1: box(S.one), fa2: box(S.one), fa0: 0n });
    expect(hex(m.f("fa0"))).toBe(hex(box(S.two)));
  });

  it("an improperly boxed single operand reads as the canonical NaN", () => {
    const m = fp(`
      fadd.s fa0, fa1, fa2
      fadd.s fa3, fa4, fa2
      fmul.s fa5, fa2, fa1
    `, { fa1: 0x000000003f800000n, fa2: box(S.one), fa4: 0xfffffffe3f800000n });
    expect(hex(m.f("fa0"))).toBe(hex(box(S.qnan)));
    expect(hex(m.f("fa3"))).toBe(hex(box(S.qnan)));
    expect(hex(m.f("fa5"))).toBe(hex(box(S.qnan)));
  });

  it("fsgnj.s and fclass.s see an unboxed operand as the canonical NaN", () => {
    const m = fp(`
      fsgnj.s fa0, fa1, fa2
      fclass.s a0, fa1
      fsgnjx.s fa3, fa2, fa1
    `, { fa1: 0x00000000bf800000n, fa2: box(S.m_one) });
    expect(hex(m.f("fa0"))).toBe(hex(box(0xffc00000)));
    expect(m.x("a0")).toBe(1n << 9n);
    // sign of the canonical NaN (0) xor -1.0's sign -> negative -1.0
    expect(hex(m.f("fa3"))).toBe(hex(box(S.m_one)));
  });

  it("fcvt.d.s of an unboxed single gives the canonical double NaN", () => {
    const m = fp(`fcvt.d.s fa0, fa1`, { fa1: 0x3f800000n });
    expect(hex(m.f("fa0"))).toBe(hex(D.qnan));
  });

  it("fmv.x.w and fsw move the low 32 bits without checking the box", () => {
    const m = machine(`
      fmv.x.w a0, fa1
      fmv.x.w a1, fa2
      li t0, ${DATA}
      fsw fa1, 0(t0)
    `, { fp: true });
    m.setF("fa1", 0x00000000bf800000n);
    m.setF("fa2", box(0x12345678));
    m.w64(DATA, 0x5555555555555555n);
    m.runDone();
    expect(hex(m.x("a0"))).toBe(hex(0xffffffffbf800000n)); // sign-extended
    expect(hex(m.x("a1"))).toBe(hex(0x12345678n));
    expect(hex(m.r64(DATA))).toBe(hex(0x55555555bf800000n));
  });

  it("fmv.d.x / fmv.x.d / fld / fsd move all 64 bits", () => {
    const m = machine(`
      li t1, 0x0123456789abcdef
      fmv.d.x fa0, t1
      fmv.x.d a0, fa0
      li t0, ${DATA}
      fsd fa0, 8(t0)
      fld fa1, 8(t0)
    `, { fp: true });
    m.runDone();
    expect(m.x("a0")).toBe(0x0123456789abcdefn);
    expect(m.r64(DATA + 8)).toBe(0x0123456789abcdefn);
    expect(m.f("fa1")).toBe(0x0123456789abcdefn);
  });
});

describe("FP loads and stores", () => {
  it("misaligned fld/fsd/flw/fsw inside a page", () => {
    const m = machine(`
      li t0, ${DATA}
      fld fa0, 3(t0)
      fsd fa0, 21(t0)
      flw fa1, 1(t0)
      fsw fa1, 41(t0)
    `, { fp: true });
    for (let i = 0; i < 16; i++) m.w8(DATA + i, 0x10 + i);
    m.runDone();
    expect(hex(m.f("fa0"))).toBe(hex(0x1a19181716151413n));
    expect(hex(m.r64(DATA + 21))).toBe(hex(0x1a19181716151413n));
    expect(hex(m.f("fa1"))).toBe(hex(box(0x14131211)));
    expect(m.r32(DATA + 41)).toBe(0x14131211);
  });

  it("FP CSRs are accessible from U-mode when FS != Off", () => {
    const m = machine(`
      li t0, 0x1800
      csrc mstatus, t0
      la t0, u
      csrw mepc, t0
      mret
    u:
      csrwi frm, 3
      csrr a0, fcsr
    `, { fp: true });
    m.runDone();
    expect(m.x("a0")).toBe(0x60n);
  });
});

describe("sign injection", () => {
  it("single", () => {
    const m = fp(`
      fsgnj.s fa0, fa1, fa2
      fsgnjn.s fa3, fa1, fa2
      fsgnjx.s fa4, fa2, fa2
      fneg.s fa5, fa1
      fabs.s fa6, fa2
    `, { fa1: box(S.one), fa2: box(S.m2_5) });
    expect(hex(m.f("fa0"))).toBe(hex(box(S.m_one)));
    expect(hex(m.f("fa3"))).toBe(hex(box(S.one)));
    expect(hex(m.f("fa4"))).toBe(hex(box(S.p2_5)));
    expect(hex(m.f("fa5"))).toBe(hex(box(S.m_one)));
    expect(hex(m.f("fa6"))).toBe(hex(box(S.p2_5)));
  });
  it("double (NaN payloads pass through untouched)", () => {
    const m = fp(`
      fsgnj.d fa0, fa1, fa2
      fsgnjn.d fa3, fa1, fa1
      fsgnjx.d fa4, fa1, fa2
      fsgnjn.d fa5, fa6, fa6
    `, { fa1: D.one, fa2: D.m2_5, fa6: D.snan });
    expect(hex(m.f("fa0"))).toBe(hex(D.one | D.mzero));
    expect(hex(m.f("fa3"))).toBe(hex(D.one | D.mzero));
    expect(hex(m.f("fa4"))).toBe(hex(D.one | D.mzero));
    expect(hex(m.f("fa5"))).toBe(hex(D.snan | D.mzero));
    expect(m.csr("fflags")).toBe(0n);
  });
});

describe("fclass", () => {
  const cases: [string, number, bigint][] = [
    ["-inf", 0, 0n], ["-normal", 1, 0n], ["-subnormal", 2, 0n], ["-0", 3, 0n], ["+0", 4, 0n],
    ["+subnormal", 5, 0n], ["+normal", 6, 0n], ["+inf", 7, 0n], ["sNaN", 8, 0n], ["qNaN", 9, 0n],
  ];
  const singles = [S.minf, S.m_one, 0x80000001, S.mzero, S.pzero, S.minSub, S.one, S.pinf, S.snan, S.qnan];
  const doubles = [D.minf, D.one | D.mzero, D.mzero | 1n, D.mzero, 0n, D.minSub, D.two, D.pinf, D.snan, D.qnan];
  it("fclass.s and fclass.d set exactly one bit per class", () => {
    let src = "";
    for (let i = 0; i < 10; i++) src += `fclass.s a${i % 8}, f${i}\nsd a${i % 8}, ${8 * i}(s0)\nfclass.d a${i % 8}, f${10 + i}\nsd a${i % 8}, ${80 + 8 * i}(s0)\n`;
    const f: Record<string, bigint> = {};
    singles.forEach((v, i) => (f[`f${i}`] = box(v)));
    doubles.forEach((v, i) => (f[`f${10 + i}`] = v));
    const m = fp(src, f, { s0: DATA });
    cases.forEach(([name, bit], i) => {
      expect(m.r64(DATA + 8 * i), `fclass.s ${name}`).toBe(1n << BigInt(bit));
      expect(m.r64(DATA + 80 + 8 * i), `fclass.d ${name}`).toBe(1n << BigInt(bit));
    });
  });
});

// rm encodings
const RNE = 0, RTZ = 1, RDN = 2, RUP = 3, RMM = 4, DYN = 7;
const MODES = [["rne", RNE], ["rtz", RTZ], ["rdn", RDN], ["rup", RUP], ["rmm", RMM]] as const;

describe("rounding modes", () => {
  // 1 + 2^-24 is exactly halfway between 1.0 and the next single: a tie in every mode.
  const tie: Record<string, [number, number]> = {
    rne: [S.one, S.m_one], rtz: [S.one, S.m_one], rdn: [S.one, 0xbf800001],
    rup: [0x3f800001, S.m_one], rmm: [0x3f800001, 0xbf800001],
  };
  for (const [name] of MODES) {
    it(`fadd.s tie case, static rm = ${name}`, () => {
      const m = fp(`
        fadd.s fa0, fa1, fa2, ${name}
        fneg.s fa3, fa1
        fneg.s fa4, fa2
        fadd.s fa5, fa3, fa4, ${name}
        csrr a0, fflags
      `, { fa1: box(S.one), fa2: box(S.tiny) });
      expect(hex(m.f("fa0"))).toBe(hex(box(tie[name][0])));
      expect(hex(m.f("fa5"))).toBe(hex(box(tie[name][1])));
      expect(m.x("a0")).toBe(1n); // NX
    });
  }

  for (const [name, rm] of MODES) {
    it(`dynamic rm from frm = ${name}`, () => {
      const m = fp(`
        csrwi frm, ${rm}
        fadd.s fa0, fa1, fa2        # dyn
        fcvt.s.d fa3, fa4           # dyn: double 1 + 2^-24 (a tie) -> single
      `, { fa1: box(S.one), fa2: box(S.tiny), fa4: 0x3ff0000010000000n });
      expect(hex(m.f("fa0"))).toBe(hex(box(tie[name][0])));
      expect(hex(m.f("fa3"))).toBe(hex(box(tie[name][0])));
    });
  }

  const cvt: Record<string, [number, number, number]> = {
    // fcvt.w.s of 2.5, -2.5, 3.5
    rne: [2, -2, 4], rtz: [2, -2, 3], rdn: [2, -3, 3], rup: [3, -2, 4], rmm: [3, -3, 4],
  };
  for (const [name] of MODES) {
    it(`fcvt.w.s / fcvt.l.d round with rm = ${name}`, () => {
      const m = fp(`
        fcvt.w.s a0, fa1, ${name}
        fcvt.w.s a1, fa2, ${name}
        fcvt.w.s a2, fa3, ${name}
        fcvt.l.d a3, fa4, ${name}
        fcvt.l.d a4, fa5, ${name}
      `, { fa1: box(S.p2_5), fa2: box(S.m2_5), fa3: box(S.p3_5), fa4: D.p2_5, fa5: D.m2_5 });
      const [a, b, c] = cvt[name];
      expect(m.sx("a0")).toBe(BigInt(a));
      expect(m.sx("a1")).toBe(BigInt(b));
      expect(m.sx("a2")).toBe(BigInt(c));
      expect(m.sx("a3")).toBe(BigInt(a));
      expect(m.sx("a4")).toBe(BigInt(b));
    });
  }

  it("fcvt.s.w rounds a 25-bit integer per rm", () => {
    const m = fp(`
      fcvt.s.w fa0, a1, rne
      fcvt.s.w fa1, a1, rup
      fcvt.s.w fa2, a1, rdn
      fcvt.s.l fa3, a2, rne
      fcvt.d.l fa4, a3, rne
      fcvt.d.l fa5, a3, rup
      fcvt.d.lu fa6, a4, rtz
    `, {}, { a1: 16777217, a2: -1, a3: (1n << 53n) + 1n, a4: -1 });
    expect(hex(m.f("fa0"))).toBe(hex(box(0x4b800000)));
    expect(hex(m.f("fa1"))).toBe(hex(box(0x4b800001)));
    expect(hex(m.f("fa2"))).toBe(hex(box(0x4b800000)));
    expect(hex(m.f("fa3"))).toBe(hex(box(S.m_one)));
    expect(hex(m.f("fa4"))).toBe(hex(0x4340000000000000n));
    expect(hex(m.f("fa5"))).toBe(hex(0x4340000000000001n));
    expect(hex(m.f("fa6"))).toBe(hex(0x43efffffffffffffn)); // 2^64 - 1 truncated
  });

  it("fdiv.s 1/3 in RNE and RTZ", () => {
    const m = fp(`
      fdiv.s fa0, fa1, fa2, rne
      fdiv.s fa3, fa1, fa2, rtz
    `, { fa1: box(S.one), fa2: box(S.three) });
    expect(hex(m.f("fa0"))).toBe(hex(box(0x3eaaaaab)));
    expect(hex(m.f("fa3"))).toBe(hex(box(0x3eaaaaaa)));
  });
});

describe("reserved rounding modes are illegal", () => {
  for (const rm of [5, 6]) {
    it(`static rm = ${rm}`, () => {
      const word = enc.fadd_s("fa0", "fa1", "fa2", rm);
      const m = machine(`.word ${word}`, { fp: true });
      const t = m.runTrap();
      expect(t.mcause).toBe(CAUSE.ILLEGAL);
      expect(t.mtval).toBe(BigInt(word));
    });
  }
  for (const frm of [5, 6, 7]) {
    it(`dynamic rm with frm = ${frm}`, () => {
      const m = machine(`
        csrwi frm, ${frm}
      site:
        fmul.d fa0, fa1, fa2
      `, { fp: true });
      const t = m.runTrap();
      expect(t.mcause).toBe(CAUSE.ILLEGAL);
      expect(t.mepc).toBe(BigInt(m.label("site")));
      expect(t.mtval).toBe(BigInt(enc.fmul_d("fa0", "fa1", "fa2")));
    });
  }
  it("fcvt.w.s and fmadd.d with rm = 5 are illegal too", () => {
    for (const word of [enc.fcvt_w_s("a0", "fa1", 5), enc.fmadd_d("fa0", "fa1", "fa2", "fa3", 6), enc.fsqrt_s("fa0", "fa1", 5)]) {
      const m = machine(`.word ${word}`, { fp: true });
      expect(m.runTrap().mcause, hex(word)).toBe(CAUSE.ILLEGAL);
    }
  });
  it("instructions without rounding (fsgnj, fmv.x.w) do not care about frm = 7", () => {
    const m = fp(`
      csrwi frm, 7
      fsgnj.d fa0, fa1, fa1
      fmv.x.d a0, fa0
      feq.d a1, fa0, fa0
    `, { fa1: D.one });
    expect(m.x("a0")).toBe(D.one);
    expect(m.x("a1")).toBe(1n);
  });
  it("half and quad formats, flh, and reserved rs2 fields are illegal", () => {
    const fmt = (w: number, f: number) => ((w & ~(3 << 25)) | (f << 25)) >>> 0;
    const words = [
      fmt(enc.fadd_s("fa0", "fa1", "fa2", 0), 2),           // fadd.h
      fmt(enc.fadd_s("fa0", "fa1", "fa2", 0), 3),           // fadd.q
      (enc.flw("fa0", 0, "sp") & ~(7 << 12) | (1 << 12)) >>> 0, // flh
      (enc.fsqrt_d("fa0", "fa1", 0) | (1 << 20)) >>> 0,     // fsqrt with rs2 != 0
      (enc.fmv_x_w("a0", "fa1") | (1 << 20)) >>> 0,         // fmv.x.w with rs2 != 0
      (enc.fcvt_s_d("fa0", "fa1", 0) & ~(31 << 20) | (2 << 20)) >>> 0, // fcvt.s.(q)
    ];
    for (const word of words) {
      const m = machine(`li sp, ${DATA}\n.word ${word}`, { fp: true });
      const t = m.runTrap();
      expect(t.mcause, hex(word)).toBe(CAUSE.ILLEGAL);
      expect(t.mtval).toBe(BigInt(word));
    }
  });

  it("fsgnj.s with funct3 = 3 and fmin.s with funct3 = 2 are illegal", () => {
    const a = (enc.fsgnj_s("fa0", "fa1", "fa2") & ~(7 << 12)) | (3 << 12);
    const b = (enc.fmin_s("fa0", "fa1", "fa2") & ~(7 << 12)) | (2 << 12);
    for (const word of [a >>> 0, b >>> 0]) {
      const m = machine(`.word ${word}`, { fp: true });
      expect(m.runTrap().mcause, hex(word)).toBe(CAUSE.ILLEGAL);
    }
  });
});

describe("conversions: saturation and flags", () => {
  it("fcvt.w.s / fcvt.wu.s / fcvt.l.d out of range and NaN", () => {
    const m = fp(`
      fcvt.w.s a0, fa1, rtz      # NaN -> 2^31 - 1, NV
      csrr s2, fflags
      csrwi fflags, 0
      fcvt.w.s a1, fa2, rtz      # -inf -> -2^31
      fcvt.w.s a2, fa3, rtz      # 3e9 -> 2^31 - 1
      fcvt.wu.s a3, fa3, rtz     # 3e9 fits: result sign-extended from bit 31
      csrr s3, fflags            # only NV from the two saturations
      csrwi fflags, 0
      fcvt.wu.s a4, fa4, rtz     # -1.0 -> 0, NV
      fcvt.lu.d a5, fa5, rtz     # -0.5 -> 0, NX only
      csrr s4, fflags
      fcvt.l.d a6, fa6, rtz      # 2^63 -> 2^63 - 1
      fcvt.l.d a7, fa7, rtz      # -2^63 exact
    `, {
      fa1: box(S.qnan), fa2: box(S.minf), fa3: box(S.three_e9), fa4: box(S.m_one),
      fa5: 0xbfe0000000000000n, fa6: 0x43e0000000000000n, fa7: 0xc3e0000000000000n,
    });
    expect(m.x("a0")).toBe(0x7fffffffn);
    expect(m.x("s2")).toBe(0x10n);
    expect(m.x("a1")).toBe(0xffffffff80000000n);
    expect(m.x("a2")).toBe(0x7fffffffn);
    expect(m.x("a3")).toBe(0xffffffffb2d05e00n);
    expect(m.x("s3")).toBe(0x10n);
    expect(m.x("a4")).toBe(0n);
    expect(m.x("a5")).toBe(0n);
    expect(m.x("s4")).toBe(0x11n);
    expect(m.x("a6")).toBe(0x7fffffffffffffffn);
    expect(m.x("a7")).toBe(0x8000000000000000n);
  });

  it("fcvt.d.s is exact; fcvt.s.d rounds and overflows to infinity", () => {
    const m = fp(`
      fcvt.d.s fa0, fa1
      fcvt.s.d fa2, fa3, rne
      csrr a0, fflags
    `, { fa1: box(0x3fc00000), fa3: D.max });
    expect(hex(m.f("fa0"))).toBe(hex(0x3ff8000000000000n));
    expect(hex(m.f("fa2"))).toBe(hex(box(S.pinf)));
    expect(m.x("a0")).toBe(0x05n); // OF | NX
  });
});

describe("fflags", () => {
  it("accumulate across instructions until cleared", () => {
    const m = fp(`
      csrwi fflags, 0
      fdiv.s fa0, fa1, fa2      # 1/0: DZ
      csrr a0, fflags
      fadd.s fa0, fa1, fa3      # 1 + 2^-24: NX
      csrr a1, fflags
      fmul.s fa0, fa4, fa5      # max * 2: OF | NX
      csrr a2, fflags
      fmul.s fa0, fa2, fa6      # 0 * inf: NV
      csrr a3, fflags
      fmul.s fa0, fa7, fs0      # tiny and inexact: UF | NX
      csrr a4, fflags
      fadd.s fa0, fa1, fa1      # exact: nothing new
      csrr a5, fflags
      csrrw a6, fflags, zero
      csrr a7, fflags
    `, {
      fa1: box(S.one), fa2: box(S.pzero), fa3: box(S.tiny), fa4: box(S.max), fa5: box(S.two),
      fa6: box(S.pinf), fa7: box(0x00800001), fs0: box(S.half),
    });
    expect(m.x("a0")).toBe(0x08n);
    expect(m.x("a1")).toBe(0x09n);
    expect(m.x("a2")).toBe(0x0dn);
    expect(m.x("a3")).toBe(0x1dn);
    expect(m.x("a4")).toBe(0x1fn);
    expect(m.x("a5")).toBe(0x1fn);
    expect(m.x("a6")).toBe(0x1fn);
    expect(m.x("a7")).toBe(0n);
  });

  it("0 * inf gives the canonical NaN", () => {
    const m = fp(`fmul.s fa0, fa1, fa2\nfmul.d fa3, fa4, fa5`, { fa1: box(S.mzero), fa2: box(S.minf), fa4: D.mzero, fa5: D.pinf });
    expect(hex(m.f("fa0"))).toBe(hex(box(S.qnan)));
    expect(hex(m.f("fa3"))).toBe(hex(D.qnan));
  });

  it("comparisons: feq is quiet on qNaN, flt/fle signal on any NaN, -0 == +0", () => {
    const m = fp(`
      feq.s a0, fa1, fa2
      csrr a1, fflags
      flt.s a2, fa1, fa2
      csrr a3, fflags
      csrwi fflags, 0
      feq.s a4, fa3, fa4      # -0 == +0
      fle.d a5, fa5, fa6      # 1.0 <= 2.0
      flt.d a6, fa6, fa5
      feq.d a7, fa7, fa7      # sNaN: NV
      csrr s2, fflags
    `, { fa1: box(S.qnan), fa2: box(S.one), fa3: box(S.mzero), fa4: box(S.pzero), fa5: D.one, fa6: D.two, fa7: D.snan });
    expect(m.x("a0")).toBe(0n);
    expect(m.x("a1")).toBe(0n);
    expect(m.x("a2")).toBe(0n);
    expect(m.x("a3")).toBe(0x10n);
    expect(m.x("a4")).toBe(1n);
    expect(m.x("a5")).toBe(1n);
    expect(m.x("a6")).toBe(0n);
    expect(m.x("a7")).toBe(0n);
    expect(m.x("s2")).toBe(0x10n);
  });

  it("fmin/fmax: -0 < +0, a single NaN operand is ignored, two NaNs give the canonical NaN", () => {
    const m = fp(`
      fmin.s fa0, fa1, fa2
      fmax.s fa3, fa1, fa2
      fmin.s fa4, fa5, fa6
      fmax.d fa7, fs0, fs1
      csrr a0, fflags
    `, { fa1: box(S.pzero), fa2: box(S.mzero), fa5: box(S.qnan), fa6: box(S.one), fs0: D.snan, fs1: D.qnan });
    expect(hex(m.f("fa0"))).toBe(hex(box(S.mzero)));
    expect(hex(m.f("fa3"))).toBe(hex(box(S.pzero)));
    expect(hex(m.f("fa4"))).toBe(hex(box(S.one)));
    expect(hex(m.f("fa7"))).toBe(hex(D.qnan));
    expect(m.x("a0")).toBe(0x10n); // the sNaN signals
  });
});

describe("fused multiply-add", () => {
  it("signs of fmadd/fmsub/fnmsub/fnmadd", () => {
    const m = fp(`
      fmadd.s fa0, fa1, fa2, fa3
      fmsub.s fa4, fa1, fa2, fa3
      fnmsub.s fa5, fa1, fa2, fa3
      fnmadd.s fa6, fa1, fa2, fa3
    `, { fa1: box(S.two), fa2: box(S.three), fa3: box(S.one) });
    expect(hex(m.f("fa0"))).toBe(hex(box(0x40e00000))); // 7
    expect(hex(m.f("fa4"))).toBe(hex(box(0x40a00000))); // 5
    expect(hex(m.f("fa5"))).toBe(hex(box(0xc0a00000))); // -5
    expect(hex(m.f("fa6"))).toBe(hex(box(0xc0e00000))); // -7
  });
  it("fmadd.d rounds once (fused)", () => {
    // (1 + 2^-52)(1 - 2^-52) - 1 = -2^-104 exactly; an unfused multiply would round to 0.
    const m = fp(`fmadd.d fa0, fa1, fa2, fa3, rne`, { fa1: 0x3ff0000000000001n, fa2: 0x3feffffffffffffen, fa3: 0xbff0000000000000n });
    expect(hex(m.f("fa0"))).toBe(hex(0xb970000000000000n));
  });
});

describe("square root", () => {
  it("fsqrt.d of 2 and fsqrt.s of -1", () => {
    const m = fp(`
      fsqrt.d fa0, fa1
      fsqrt.s fa2, fa3
      csrr a0, fflags
    `, { fa1: D.two, fa3: box(S.m_one) });
    expect(hex(m.f("fa0"))).toBe(hex(0x3ff6a09e667f3bcdn));
    expect(hex(m.f("fa2"))).toBe(hex(box(S.qnan)));
    expect(m.x("a0")).toBe(0x11n); // NX from sqrt(2), NV from sqrt(-1)
  });
});

describe("double-precision directed rounding", () => {
  const cases: [string, Record<string, bigint>, Record<string, bigint>][] = [
    // op, inputs, expected per mode
    ["fdiv.d fa0, fa1, fa2", { fa1: D.one, fa2: 0x4008000000000000n /* 3 */ },
      { rne: 0x3fd5555555555555n, rtz: 0x3fd5555555555555n, rdn: 0x3fd5555555555555n, rup: 0x3fd5555555555556n, rmm: 0x3fd5555555555555n }],
    ["fadd.d fa0, fa1, fa2", { fa1: D.one, fa2: 0x3ca0000000000000n /* 2^-53: a tie */ },
      { rne: D.one, rtz: D.one, rdn: D.one, rup: 0x3ff0000000000001n, rmm: 0x3ff0000000000001n }],
    ["fsub.d fa0, fa1, fa2", { fa1: D.m2_5, fa2: 0x3cb0000000000000n /* 2^-52 */ },
      // -2.5 - 2^-52: exactly half an ulp of 2.5 (ulp 2^-51), a tie
      { rne: D.m2_5, rtz: D.m2_5, rdn: D.m2_5 + 1n, rup: D.m2_5, rmm: D.m2_5 + 1n }],
    ["fsub.d fa0, fa1, fa2", { fa1: D.m2_5, fa2: 0x3ca0000000000000n /* 2^-53: a quarter ulp */ },
      { rne: D.m2_5, rtz: D.m2_5, rdn: D.m2_5 + 1n, rup: D.m2_5, rmm: D.m2_5 }],
    ["fmul.d fa0, fa1, fa1", { fa1: 0x3ff0000000000001n },
      { rne: 0x3ff0000000000002n, rtz: 0x3ff0000000000002n, rdn: 0x3ff0000000000002n, rup: 0x3ff0000000000003n, rmm: 0x3ff0000000000002n }],
    ["fsqrt.d fa0, fa1", { fa1: D.two },
      { rne: 0x3ff6a09e667f3bcdn, rtz: 0x3ff6a09e667f3bccn, rdn: 0x3ff6a09e667f3bccn, rup: 0x3ff6a09e667f3bcdn, rmm: 0x3ff6a09e667f3bcdn }],
  ];
  for (const [op, inputs, want] of cases) {
    for (const [name] of MODES) {
      it(`${op.split(" ")[0]} ${hex(Object.values(inputs).at(-1)!)} rm = ${name}`, () => {
        const m = fp(`${op}, ${name}`, inputs);
        expect(hex(m.f("fa0"))).toBe(hex(want[name]));
      });
    }
  }

  it("fmadd.s rounds once (fused)", () => {
    // (1 + 2^-23)(1 - 2^-24) - 1 = 2^-24 - 2^-47 exactly (representable); unfused gives 0.
    const m = fp(`fmadd.s fa0, fa1, fa2, fa3, rne`, { fa1: box(0x3f800001), fa2: box(0x3f7fffff), fa3: box(S.m_one) });
    expect(hex(m.f("fa0"))).toBe(hex(box(0x337ffffe)));
  });
});
