// CSR access rules (privilege, read-only, unknown, counter enables, TVM/TSR/TW), WARL fields,
// the sstatus/sie/sip views, FS tracking and the counters.
import { describe, expect, it } from "vitest";
import { machine, enter, RAM, CAUSE, MS, mpp, PRV_M, PRV_S, PRV_U, CSR, L } from "./harness";
import { enc } from "../../host/util/riscv-asm";

/** Run `insn` in `mode` and expect an illegal-instruction trap to M with mtval = its encoding. */
function expectIllegal(mode: 0 | 1 | 3, insn: string, setup = "") {
  const m = machine(`
    ${setup}
    ${enter(mode, "code")}
  code:
    ${insn}
    j done
  `);
  const t = m.runTrap();
  expect(t.mcause, `${insn} in mode ${mode}`).toBe(CAUSE.ILLEGAL);
  expect(t.mepc).toBe(BigInt(m.label("code")));
  const word = m.r32(m.label("code"));
  expect(t.mtval).toBe(BigInt(word));
  return m;
}

/** Run `insn` in `mode` and expect it to complete (reach done). */
function expectLegal(mode: 0 | 1 | 3, insn: string, setup = "") {
  const m = machine(`
    ${setup}
    ${enter(mode, "code")}
  code:
    ${insn}
  `);
  m.runDone();
  return m;
}

describe("CSR privilege and existence checks", () => {
  it("S-mode access to M-level CSRs is illegal", () => {
    for (const c of ["mstatus", "mie", "mip", "mtvec", "mscratch", "mepc", "mhartid", "medeleg", "misa", "mcycle", "pmpcfg0"]) {
      expectIllegal(PRV_S, `csrr a0, ${c}`);
    }
  });
  it("U-mode access to S-level CSRs is illegal", () => {
    for (const c of ["sstatus", "sie", "sip", "stvec", "sscratch", "sepc", "scause", "stval", "satp"]) {
      expectIllegal(PRV_U, `csrr a0, ${c}`);
    }
  });
  it("S-mode may use its own CSRs", () => {
    const m = expectLegal(PRV_S, `
      li t1, 0x1234
      csrw sscratch, t1
      csrr a0, sscratch
      csrr a1, sstatus
    `);
    expect(m.x("a0")).toBe(0x1234n);
  });
  it("writes to read-only CSRs are illegal, even from M", () => {
    expectIllegal(PRV_M, "csrw mhartid, zero");
    expectIllegal(PRV_M, "csrw mvendorid, a0");
    expectIllegal(PRV_M, "csrw cycle, a0");
    expectIllegal(PRV_M, "csrw time, a0");
    expectIllegal(PRV_M, "csrw instret, a0");
    expectIllegal(PRV_M, "csrrwi zero, mhartid, 0");   // csrrw always writes
    expectIllegal(PRV_M, "csrrsi a0, marchid, 1");
    expectIllegal(PRV_M, "csrrc a0, mimpid, t1", "li t1, 1");
  });
  it("reading read-only CSRs with csrrs/csrrc x0 or csrrsi 0 is fine", () => {
    const m = expectLegal(PRV_M, `
      csrrs a0, mhartid, zero
      csrrc a1, mvendorid, zero
      csrrsi a2, marchid, 0
      csrrci a3, cycle, 0
    `);
    expect(m.x("a0")).toBe(0n);
  });
  it("mhartid reads the hart's id", () => {
    const m = machine(`csrr a0, mhartid`, { harts: 2 });
    // run the same program on hart 1
    m.core.setPc(1, BigInt(RAM));
    m.core.setCsr(1, CSR.mtvec, m.label("mtrap"));
    m.core.run(1, 3);
    expect(m.core.x(1, 10)).toBe(1n);
    m.runDone();
    expect(m.x("a0")).toBe(0n);
  });
  it("unknown CSRs are illegal", () => {
    expectIllegal(PRV_M, "csrr a0, 0x7c0");   // custom M-mode read/write space, not implemented
    expectIllegal(PRV_M, "csrr a0, 0x123");
    expectIllegal(PRV_M, "csrr a0, 0x3ff");
    expectIllegal(PRV_M, "csrr a0, 0x5c0");
    expectIllegal(PRV_M, "csrr a0, 0x3a1");   // pmpcfg1 does not exist on RV64
    expectIllegal(PRV_M, "csrr a0, 0x205");   // vstvec: the H extension is not implemented
    expectIllegal(PRV_M, "csrr a0, 0x600");   // hstatus: likewise
  });
});

describe("counter enables", () => {
  it("S reading cycle/time/instret with mcounteren = 0 is illegal", () => {
    for (const c of ["cycle", "time", "instret", "hpmcounter3"]) expectIllegal(PRV_S, `csrr a0, ${c}`);
  });
  it("S may read each counter whose mcounteren bit is set", () => {
    expectLegal(PRV_S, "csrr a0, cycle", "csrwi mcounteren, 1");
    expectLegal(PRV_S, "csrr a0, time", "csrwi mcounteren, 2");
    expectLegal(PRV_S, "csrr a0, instret", "csrwi mcounteren, 4");
    expectIllegal(PRV_S, "csrr a0, cycle", "csrwi mcounteren, 6");
    expectIllegal(PRV_S, "csrr a0, time", "csrwi mcounteren, 5");
  });
  it("U needs both mcounteren and scounteren", () => {
    expectIllegal(PRV_U, "csrr a0, cycle", "csrwi mcounteren, 7");
    expectIllegal(PRV_U, "csrr a0, time", "csrwi scounteren, 7");
    expectLegal(PRV_U, "csrr a0, time", "csrwi mcounteren, 2; csrwi scounteren, 2");
    expectIllegal(PRV_U, "csrr a0, instret", "csrwi mcounteren, 7; csrwi scounteren, 3");
  });
});

describe("TVM, TSR, TW and WFI", () => {
  const TVM = "li t1, 1 << 20; csrs mstatus, t1";
  it("satp access and sfence.vma in S with TVM = 1 are illegal", () => {
    expectIllegal(PRV_S, "csrr a0, satp", TVM);
    expectIllegal(PRV_S, "csrw satp, zero", TVM);
    expectIllegal(PRV_S, "sfence.vma", TVM);
    expectLegal(PRV_S, "csrr a0, satp; sfence.vma");
    expectLegal(PRV_M, "csrr a0, satp; sfence.vma", TVM);
  });
  it("sret in S with TSR = 1 is illegal; legal in M", () => {
    expectIllegal(PRV_S, "sret", "li t1, 1 << 22; csrs mstatus, t1");
    const m = machine(`
      li t1, (1 << 22) | (1 << 8)
      csrs mstatus, t1
      la t0, back
      csrw sepc, t0
      sret
    back:
      j back
    `);
    m.stopAt("back");
    expect(m.run().at).toBe("back");
  });
  it("wfi in S with TW = 1 is illegal (nothing pending)", () => {
    expectIllegal(PRV_S, "wfi", "li t1, 1 << 21; csrs mstatus, t1");
  });
  it("wfi in U is illegal (S-mode exists)", () => {
    expectIllegal(PRV_U, "wfi");
  });
  it("sfence.vma in U is illegal", () => {
    expectIllegal(PRV_U, "sfence.vma");
  });
  it("wfi in M with TW = 1 is legal: halts until an interrupt is pending", () => {
    const m = machine(`
      li t1, 1 << 21
      csrs mstatus, t1
    site:
      wfi
      li a0, 1
    `);
    const r = m.run();
    expect(r.reason).toBe(L.EXIT_HALT);
    expect(m.csr("mcause")).toBe(0n);
  });
});

describe("WARL fields", () => {
  it("misa: MXL = 64, IMAFDCSU present, writes ignored", () => {
    const m = machine(`
      csrr a0, misa
      csrw misa, zero
      csrr a1, misa
    `);
    m.runDone();
    const misa = m.x("a0");
    expect(misa >> 62n).toBe(2n);
    for (const ch of "IMAFDCSU") {
      expect((misa >> BigInt(ch.charCodeAt(0) - 65)) & 1n, `misa.${ch}`).toBe(1n);
    }
    expect(m.x("a1")).toBe(misa);
  });

  it("mtvec: reserved modes 2 and 3 are not retained", () => {
    const m = machine(`
      li t0, 0x80001002
      csrw mtvec, t0
      csrr a0, mtvec
      li t0, 0x80001003
      csrw mtvec, t0
      csrr a1, mtvec
      li t0, 0x80001001
      csrw mtvec, t0
      csrr a2, mtvec
    `);
    m.runDone();
    expect(Number(m.x("a0") & 3n)).toBeLessThan(2);
    expect(Number(m.x("a1") & 3n)).toBeLessThan(2);
    expect(m.x("a2")).toBe(0x80001001n);
  });

  it("mstatus.MPP = 2 (reserved) is not stored; the old value is kept", () => {
    const m = machine(`
      li t0, 1 << 11
      csrs mstatus, t0       # MPP = S
      li t0, 3 << 11
      csrc mstatus, t0
      li t0, 2 << 11
      csrs mstatus, t0       # try MPP = 2
      csrr a0, mstatus
    `);
    m.runDone();
    // After csrc, MPP is 0 (U); writing 2 must leave a legal value (this core keeps the old one).
    expect(mpp(m.x("a0"))).not.toBe(2);
    expect(mpp(m.x("a0"))).toBe(PRV_U);
  });

  it("medeleg: bit 11 (ecall from M) is read-only zero", () => {
    const m = machine(`
      li t0, -1
      csrw medeleg, t0
      csrr a0, medeleg
    `);
    m.runDone();
    expect((m.x("a0") >> 11n) & 1n).toBe(0n);
    // the usual delegable exceptions are writable
    for (const b of [0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 13, 15]) expect((m.x("a0") >> BigInt(b)) & 1n, `bit ${b}`).toBe(1n);
  });

  it("mideleg: only SSI, STI and SEI are writable", () => {
    const m = machine(`
      li t0, -1
      csrw mideleg, t0
      csrr a0, mideleg
    `);
    m.runDone();
    expect(m.x("a0")).toBe(0x222n);
  });

  it("mie: only the six standard interrupt enables are writable", () => {
    const m = machine(`
      li t0, -1
      csrw mie, t0
      csrr a0, mie
    `);
    m.runDone();
    expect(m.x("a0")).toBe(0xaaan);
  });

  it("mip: M-mode can write SSIP, STIP (without Sstc) and SEIP but not MSIP/MTIP/MEIP", () => {
    const m = machine(`
      li t0, -1
      csrw mip, t0
      csrr a0, mip
      csrw mip, zero
      csrr a1, mip
    `);
    m.runDone();
    expect(m.x("a0")).toBe(0x222n);
    expect(m.x("a1")).toBe(0n);
  });

  it("satp: Sv39 and Sv48 values (mode, 16-bit ASID, PPN) read back as written", () => {
    const m = machine(`
      li t0, (8 << 60) | (0xabcd << 44) | 0x80400
      csrw satp, t0
      csrr a0, satp
      li t0, (9 << 60) | 0x80401
      csrw satp, t0
      csrr a1, satp
    `);
    m.runDone();
    expect(m.x("a0")).toBe((8n << 60n) | (0xabcdn << 44n) | 0x80400n);
    expect(m.x("a1")).toBe((9n << 60n) | 0x80401n);
  });

  it("satp: writing an unsupported mode (Sv57 = 10, Sv32 = 1, 15) has no effect at all", () => {
    const m = machine(`
      li t0, (8 << 60) | 0x80400
      csrw satp, t0
      csrr a0, satp
      li t1, (10 << 60) | 0x80500
      csrw satp, t1
      csrr a1, satp
      li t1, (1 << 60) | 0x80600
      csrw satp, t1
      csrr a2, satp
      li t1, -1
      csrw satp, t1
      csrr a3, satp
      csrw satp, zero
      csrr a4, satp
    `);
    m.runDone();
    expect(m.x("a1")).toBe(m.x("a0"));
    expect(m.x("a2")).toBe(m.x("a0"));
    expect(m.x("a3")).toBe(m.x("a0"));
    expect(m.x("a4")).toBe(0n);
  });
});

describe("read-only mstatus fields", () => {
  it("UXL and SXL stay 2 (64-bit) whatever is written", () => {
    const m = machine(`
      csrw mstatus, zero
      csrr a0, mstatus
      li t0, -1
      csrw mstatus, t0
      csrr a1, mstatus
    `);
    m.runDone();
    for (const r of ["a0", "a1"]) {
      expect((m.x(r) >> 32n) & 3n, `${r} UXL`).toBe(2n);
      expect((m.x(r) >> 34n) & 3n, `${r} SXL`).toBe(2n);
    }
  });
});

describe("sstatus, sie and sip are views of the M registers", () => {
  it("sstatus shows only the S fields of mstatus", () => {
    const m = machine(`
      li t0, -1
      csrw mstatus, t0
      csrr a0, mstatus
      csrr a1, sstatus
    `);
    m.runDone();
    const ms = m.x("a0");
    const ss = m.x("a1");
    const SMASK = MS.SIE | MS.SPIE | MS.SPP | MS.FS | MS.SUM | MS.MXR | (3n << 32n) | MS.SD | (3n << 15n) /* XS */ | (1n << 6n) /* UBE */ | (1n << 23n) /* VS */;
    // every bit of sstatus is the same bit of mstatus, and nothing outside the S mask shows
    expect(ss & ~SMASK).toBe(0n);
    expect(ss).toBe(ms & SMASK);
    expect(ss & (MS.SIE | MS.SPIE | MS.SPP | MS.SUM | MS.MXR)).toBe(MS.SIE | MS.SPIE | MS.SPP | MS.SUM | MS.MXR);
    expect((ss >> 32n) & 3n).toBe(2n); // UXL = 64
  });

  it("writing sstatus cannot change M-only fields", () => {
    const m = machine(`
      csrw mstatus, zero
      li t0, -1
      csrw sstatus, t0
      csrr a0, mstatus
      csrw sstatus, zero
      csrr a1, mstatus
    `);
    m.runDone();
    const ms = m.x("a0");
    expect(ms & (MS.MIE | MS.MPIE | MS.MPP | MS.MPRV | MS.TVM | MS.TW | MS.TSR)).toBe(0n);
    expect(ms & (MS.SIE | MS.SPIE | MS.SPP | MS.SUM | MS.MXR)).toBe(MS.SIE | MS.SPIE | MS.SPP | MS.SUM | MS.MXR);
    expect(m.x("a1") & (MS.SIE | MS.SPIE | MS.SPP | MS.SUM | MS.MXR)).toBe(0n);
  });

  it("sie/sip show and write only delegated bits", () => {
    const m = machine(`
      li t0, 0xaaa
      csrw mie, t0
      csrr a0, sie            # nothing delegated -> 0
      li t0, 0x222
      csrw mideleg, t0
      csrr a1, sie            # 0x222
      csrw sie, zero
      csrr a2, mie            # M bits untouched: 0x888
      li t0, 2
      csrs sip, t0            # SSIP via sip
      csrr a3, mip
      li t0, 0x20
      csrs sip, t0            # STIP is read-only in sip
      csrr a4, mip
    `);
    m.runDone();
    expect(m.x("a0")).toBe(0n);
    expect(m.x("a1")).toBe(0x222n);
    expect(m.x("a2")).toBe(0x888n);
    expect(m.x("a3") & 0x2n).toBe(2n);
    expect(m.x("a4") & 0x20n).toBe(0n);
  });

  it("S cannot set SSIP through sip when SSI is not delegated", () => {
    const m = machine(`
      csrw mideleg, zero
      ${enter(PRV_S, "s")}
    s:
      csrsi sip, 2
      csrr a0, sip
    `);
    m.runDone();
    expect(m.x("a0")).toBe(0n);
    expect(m.csr("mip") & 2n).toBe(0n);
  });

  it("csrrc of mip uses only the software-written SEIP bit, not the external SEIP signal", () => {
    // Privileged 1.12, 3.1.9: the read-modify-write of csrrs/csrrc on mip sees only the
    // software-writable SEIP bit; a csrc of another bit must not latch the external level.
    const m = machine(`
      csrr a0, mip            # external SEIP visible: 0x200
      csrci mip, 2            # clear SSIP: rmw must not copy the external SEIP into the SW bit
    `);
    m.core.setIrq(0, 9, true);
    m.runDone();
    expect(m.x("a0") & 0x200n).toBe(0x200n);
    m.core.setIrq(0, 9, false);
    expect(m.csr("mip") & 0x200n).toBe(0n);
  });
});

describe("FS tracking", () => {
  const FS_OFF = "li t1, 3 << 13; csrc mstatus, t1";
  it("with FS = Off, FP instructions, FP loads/stores and fcsr accesses are illegal", () => {
    for (const insn of ["fadd.s fa0, fa1, fa2", "fmv.x.d a0, fa0", "fmv.w.x fa0, zero", "flw fa0, 0(sp)", "fsd fa0, 0(sp)",
      "csrr a0, fcsr", "csrr a0, fflags", "csrw frm, zero", "fcvt.d.l fa0, a0"]) {
      expectIllegal(PRV_M, insn, FS_OFF + `; li sp, ${RAM + 0x40000}`);
    }
  });
  it("an FP register write makes FS Dirty and sets SD (in mstatus and sstatus)", () => {
    const m = machine(`
      li t1, 3 << 13
      csrc mstatus, t1
      li t1, 1 << 13          # FS = Initial
      csrs mstatus, t1
      csrr a0, mstatus
      fmv.w.x fa0, zero
      csrr a1, mstatus
      csrr a2, sstatus
    `);
    m.runDone();
    expect((m.x("a0") >> 13n) & 3n).toBe(1n);
    expect(m.x("a0") & MS.SD).toBe(0n);
    expect((m.x("a1") >> 13n) & 3n).toBe(3n);
    expect(m.x("a1") & MS.SD).toBe(MS.SD);
    expect(m.x("a2") & MS.SD).toBe(MS.SD);
    expect((m.x("a2") >> 13n) & 3n).toBe(3n);
  });
  it("writing fcsr makes FS Dirty", () => {
    const m = machine(`
      li t1, 3 << 13
      csrc mstatus, t1
      li t1, 2 << 13          # FS = Clean
      csrs mstatus, t1
      csrwi fflags, 1
      csrr a0, mstatus
    `);
    m.runDone();
    expect((m.x("a0") >> 13n) & 3n).toBe(3n);
  });
  it("fcsr = frm << 5 | fflags; fflags and frm are views", () => {
    const m = machine(`
      li t1, 0xff
      csrw fcsr, t1
      csrr a0, fflags
      csrr a1, frm
      csrwi frm, 2
      csrr a2, fcsr
      li t1, -1
      csrw fcsr, t1
      csrr a3, fcsr           # only 8 bits exist
    `, { fp: true });
    m.runDone();
    expect(m.x("a0")).toBe(0x1fn);
    expect(m.x("a1")).toBe(7n);
    expect(m.x("a2")).toBe(0x5fn);
    expect(m.x("a3")).toBe(0xffn);
  });
});

describe("counters", () => {
  it("minstret counts retired instructions exactly", () => {
    const m = machine(`
      csrr a0, minstret
      nop
      nop
      nop
      csrr a1, minstret
    `);
    m.runDone();
    expect(m.x("a1") - m.x("a0")).toBe(4n);
  });

  it("instret (user alias) matches minstret", () => {
    const m = machine(`
      csrr a0, minstret
      csrr a1, instret
    `);
    m.runDone();
    expect(m.x("a1") - m.x("a0")).toBe(1n);
  });

  it("a value written to minstret is what the next instruction reads (the write replaces the increment)", () => {
    // Unprivileged/privileged spec: "a value written to instret by one instruction will be the
    // value read by the following instruction".
    const m = machine(`
      li t0, 1000
      csrw minstret, t0
      csrr a0, minstret
    `);
    m.runDone();
    expect(m.x("a0")).toBe(1000n);
  });

  it("a value written to mcycle is visible afterwards", () => {
    const m = machine(`
      li t0, 1 << 40
      csrw mcycle, t0
      csrr a0, mcycle
      csrr a1, cycle
    `);
    m.runDone();
    expect(m.x("a0")).toBeGreaterThanOrEqual(1n << 40n);
    expect(m.x("a0")).toBeLessThan((1n << 40n) + 16n);
    expect(m.x("a1")).toBeGreaterThanOrEqual(m.x("a0"));
  });

  it("ecall does not retire: minstret does not count it", () => {
    // "instructions that cause synchronous exceptions, including ECALL and EBREAK, are not
    // considered to retire" (unprivileged spec, Zicntr).
    const m = machine(`
      la t0, handler
      csrw mtvec, t0
      csrr a0, minstret
      ecall
    handler:
      csrr a1, minstret
    `);
    m.runDone();
    // retired between the two reads: csrr a0 only
    expect(m.x("a1") - m.x("a0")).toBe(1n);
  });

  it("ebreak does not retire", () => {
    const m = machine(`
      la t0, handler
      csrw mtvec, t0
      csrr a0, minstret
      ebreak
    handler:
      csrr a1, minstret
    `);
    m.runDone();
    expect(m.x("a1") - m.x("a0")).toBe(1n);
  });

  it("an illegal instruction does not retire", () => {
    const m = machine(`
      la t0, handler
      csrw mtvec, t0
      csrr a0, minstret
      .word 0
    handler:
      csrr a1, minstret
    `);
    m.runDone();
    expect(m.x("a1") - m.x("a0")).toBe(1n);
  });

  it("mcountinhibit.IR stops minstret", () => {
    const m = machine(`
      csrwi mcountinhibit, 4
      csrr a0, minstret
      nop
      nop
      csrr a1, minstret
      csrwi mcountinhibit, 0
    `);
    m.runDone();
    expect(m.x("a1")).toBe(m.x("a0"));
  });

  it("time reads mtime from the CLINT", () => {
    let t = 5000;
    const m = machine(`
      csrr a0, time
      li t0, 0x200bff8
      ld a1, 0(t0)
    `, { clock: () => t });
    t = 5000 + 777;
    m.runDone();
    expect(m.x("a0")).toBe(777n);
    expect(m.x("a1")).toBe(777n);
  });
});

describe("scratch and trap CSRs are full-width read/write", () => {
  it("mscratch, sscratch, mcause, mtval, scause, stval", () => {
    const m = machine(`
      li t0, 0xfedcba9876543210
      csrw mscratch, t0
      csrr a0, mscratch
      csrw sscratch, t0
      csrr a1, sscratch
      csrw mtval, t0
      csrr a2, mtval
      csrw stval, t0
      csrr a3, stval
      csrrw a4, mscratch, zero
      csrr a5, mscratch
      li t1, 0xf0
      csrrs a6, sscratch, t1
      csrrc a7, sscratch, t0
      csrr s2, sscratch
    `);
    m.runDone();
    const v = 0xfedcba9876543210n;
    expect([m.x("a0"), m.x("a1"), m.x("a2"), m.x("a3"), m.x("a4")]).toEqual([v, v, v, v, v]);
    expect(m.x("a5")).toBe(0n);
    expect(m.x("a6")).toBe(v);
    expect(m.x("a7")).toBe(v | 0xf0n);
    expect(m.x("s2")).toBe(0xf0n & ~v);
  });
});
