// Synchronous traps, delegation, xRET state transitions, trap vectors.
import { describe, expect, it } from "vitest";
import { machine, enter, RAM, CAUSE, MS, mpp, PRV_M, PRV_S, PRV_U, CSR } from "./harness";

describe("ecall and ebreak", () => {
  for (const [mode, cause, name] of [[PRV_U, CAUSE.ECALL_U, "U"], [PRV_S, CAUSE.ECALL_S, "S"], [PRV_M, CAUSE.ECALL_M, "M"]] as const) {
    it(`ecall from ${name} -> mcause ${cause}, mepc = the ecall, mtval = 0, MPP = ${mode}`, () => {
      const m = machine(`
        ${enter(mode, "code")}
      code:
        nop
      site:
        ecall
      `);
      m.setCsr("mtval", 0x1234);
      const t = m.runTrap();
      expect(t.mcause).toBe(cause);
      expect(t.mepc).toBe(BigInt(m.label("site")));
      expect(t.mtval).toBe(0n);
      expect(mpp(t.mstatus)).toBe(mode);
      expect(t.priv).toBe(PRV_M);
    });
  }

  it("ebreak -> breakpoint, mtval = mepc = pc", () => {
    const m = machine(`
      nop
    site:
      ebreak
    `);
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.BREAKPOINT);
    expect(t.mepc).toBe(BigInt(m.label("site")));
    expect(t.mtval).toBe(BigInt(m.label("site")));
  });

  it("trap entry: MPIE <- MIE, MIE <- 0", () => {
    const m = machine(`
      csrsi mstatus, 8     # MIE = 1 (nothing enabled in mie)
      ecall
    `);
    const t = m.runTrap();
    expect(t.mstatus & MS.MIE).toBe(0n);
    expect(t.mstatus & MS.MPIE).toBe(MS.MPIE);
  });

  it("illegal instruction from S: mtval holds the instruction bits", () => {
    const m = machine(`
      ${enter(PRV_S, "code")}
    code:
    site:
      csrr a0, mstatus       # S may not read mstatus
    `);
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.ILLEGAL);
    expect(t.mepc).toBe(BigInt(m.label("site")));
    expect(t.mtval).toBe(0x30002573n);
    expect(mpp(t.mstatus)).toBe(PRV_S);
  });

  it("unimp (csrrw x0, cycle, x0) is illegal", () => {
    const m = machine(`unimp`);
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.ILLEGAL);
    expect(t.mtval).toBe(0xc0001073n);
  });

  it("instruction fetch from a hole -> instruction access fault, mtval = mepc = target", () => {
    const m = machine(`
      li t0, 0x40000000
      jr t0
    `);
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.FETCH_ACCESS);
    expect(t.mepc).toBe(0x40000000n);
    expect(t.mtval).toBe(0x40000000n);
  });
});

describe("delegation through medeleg", () => {
  it("ecall from U delegated to S: scause/sepc/stval, SPP = U, SPIE <- SIE, SIE <- 0, mcause untouched", () => {
    const m = machine(`
      li t0, 1 << 8
      csrw medeleg, t0
      csrsi sstatus, 2        # SIE = 1
      ${enter(PRV_U, "code")}
    code:
      nop
    site:
      ecall
    `);
    m.setCsr("mcause", 0x77);
    m.setCsr("stval", 0x55);
    const t = m.runTrap("strap");
    expect(t.scause).toBe(CAUSE.ECALL_U);
    expect(t.sepc).toBe(BigInt(m.label("site")));
    expect(t.stval).toBe(0n);
    expect(t.priv).toBe(PRV_S);
    expect(t.mstatus & MS.SPP).toBe(0n);
    expect(t.mstatus & MS.SPIE).toBe(MS.SPIE);
    expect(t.mstatus & MS.SIE).toBe(0n);
    expect(t.mcause).toBe(0x77n);
  });

  it("ecall from S delegated to S: SPP = S, SPIE = old SIE (0)", () => {
    const m = machine(`
      li t0, 1 << 9
      csrw medeleg, t0
      csrci sstatus, 2
      ${enter(PRV_S, "code")}
    code:
    site:
      ecall
    `);
    const t = m.runTrap("strap");
    expect(t.scause).toBe(CAUSE.ECALL_S);
    expect(t.sepc).toBe(BigInt(m.label("site")));
    expect(t.mstatus & MS.SPP).toBe(MS.SPP);
    expect(t.mstatus & MS.SPIE).toBe(0n);
  });

  it("delegated illegal instruction: stval = instruction bits", () => {
    const m = machine(`
      li t0, 1 << 2
      csrw medeleg, t0
      ${enter(PRV_U, "code")}
    code:
    site:
      .word 0xffffffff
    `);
    const t = m.runTrap("strap");
    expect(t.scause).toBe(CAUSE.ILLEGAL);
    expect(t.sepc).toBe(BigInt(m.label("site")));
    expect(t.stval).toBe(0xffffffffn);
  });

  it("delegated breakpoint: stval = pc", () => {
    const m = machine(`
      li t0, 1 << 3
      csrw medeleg, t0
      ${enter(PRV_S, "code")}
    code:
      nop
    site:
      ebreak
    `);
    const t = m.runTrap("strap");
    expect(t.scause).toBe(CAUSE.BREAKPOINT);
    expect(t.stval).toBe(BigInt(m.label("site")));
  });

  it("a trap taken in M-mode is never delegated", () => {
    const m = machine(`
      li t0, -1
      csrw medeleg, t0
    site:
      ebreak
    `);
    const t = m.runTrap("mtrap");
    expect(t.mcause).toBe(CAUSE.BREAKPOINT);
    expect(t.mepc).toBe(BigInt(m.label("site")));
  });

  it("an exception not delegated goes to M even from U", () => {
    const m = machine(`
      li t0, 1 << 8          # only U ecalls are delegated
      csrw medeleg, t0
      ${enter(PRV_U, "code")}
    code:
      ebreak
    `);
    const t = m.runTrap("mtrap");
    expect(t.mcause).toBe(CAUSE.BREAKPOINT);
    expect(mpp(t.mstatus)).toBe(PRV_U);
  });
});

describe("mret and sret", () => {
  it("mret to S: MIE <- MPIE, MPIE <- 1, MPP <- U, MPRV <- 0, pc <- mepc", () => {
    const m = machine(`
      li t0, (1 << 11) | (1 << 7) | (1 << 17)   # MPP = S, MPIE = 1, MPRV = 1
      csrs mstatus, t0
      csrci mstatus, 8                          # MIE = 0
      la t0, code
      csrw mepc, t0
      mret
      li a0, 9
    code:
      ecall
    `);
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.ECALL_S);
    expect(t.mepc).toBe(BigInt(m.label("code")));
    // Look at mstatus as mret left it: the ecall moved MIE into MPIE and S into MPP.
    expect(t.mstatus & MS.MPIE).toBe(MS.MPIE);      // was MIE = 1 after mret
    expect(t.mstatus & MS.MPRV).toBe(0n);
    expect(m.x("a0")).toBe(0n);
  });

  it("mret: state right after the return (read in S through sstatus-invisible bits via a second ecall)", () => {
    // Return to S with MPIE = 0: MIE must become 0 and MPIE 1; MPP must become U.
    const m = machine(`
      li t0, (1 << 11)
      csrs mstatus, t0
      li t0, (1 << 7) | (1 << 12)   # clear MPIE and MPP[1]
      csrc mstatus, t0
      csrsi mstatus, 8               # MIE = 1 before mret
      la t0, code
      csrw mepc, t0
      mret
    code:
      j code
    `);
    m.stopAt("code");
    const r = m.run();
    expect(r.at).toBe("code");
    const ms = m.csr("mstatus");
    expect(m.core.priv(0)).toBe(PRV_S);
    expect(ms & MS.MIE).toBe(0n);
    expect(ms & MS.MPIE).toBe(MS.MPIE);
    expect(mpp(ms)).toBe(PRV_U);
  });

  it("mret with MPP = M keeps MPRV", () => {
    const m = machine(`
      li t0, (3 << 11) | (1 << 17)
      csrs mstatus, t0
      la t0, code
      csrw mepc, t0
      mret
    code:
      csrr a0, mstatus
    `);
    m.runDone();
    expect(m.core.priv(0)).toBe(PRV_M);
    expect(m.x("a0") & MS.MPRV).toBe(MS.MPRV);
  });

  it("sret (from M): SIE <- SPIE, SPIE <- 1, SPP <- U, MPRV <- 0, priv <- SPP", () => {
    const m = machine(`
      li t0, (1 << 8) | (1 << 17) | (3 << 11)   # SPP = S, MPRV = 1, MPP = M
      csrs mstatus, t0
      li t0, (1 << 5)                           # SPIE = 0
      csrc mstatus, t0
      csrsi mstatus, 2                          # SIE = 1
      la t0, code
      csrw sepc, t0
      sret
    code:
      j code
    `);
    m.stopAt("code");
    expect(m.run().at).toBe("code");
    const ms = m.csr("mstatus");
    expect(m.core.priv(0)).toBe(PRV_S);
    expect(ms & MS.SIE).toBe(0n);
    expect(ms & MS.SPIE).toBe(MS.SPIE);
    expect(ms & MS.SPP).toBe(0n);
    expect(ms & MS.MPRV).toBe(0n);
  });

  it("sret from S to U with SPIE = 1", () => {
    const m = machine(`
      ${enter(PRV_S, "scode")}
    scode:
      csrci sstatus, 2
      li t0, (1 << 5)
      csrs sstatus, t0       # SPIE = 1
      li t0, (1 << 8)
      csrc sstatus, t0       # SPP = U
      la t0, ucode
      csrw sepc, t0
      sret
    ucode:
      j ucode
    `);
    m.stopAt("ucode");
    expect(m.run().at).toBe("ucode");
    const ms = m.csr("mstatus");
    expect(m.core.priv(0)).toBe(PRV_U);
    expect(ms & MS.SIE).toBe(MS.SIE);
    expect(ms & MS.SPIE).toBe(MS.SPIE);
    expect(ms & MS.SPP).toBe(0n);
  });

  it("mret from S and sret/mret from U are illegal", () => {
    for (const [mode, insn, word] of [[PRV_S, "mret", 0x30200073n], [PRV_U, "sret", 0x10200073n], [PRV_U, "mret", 0x30200073n]] as const) {
      const m = machine(`
        ${enter(mode, "code")}
      code:
        ${insn}
      `);
      const t = m.runTrap();
      expect(t.mcause, `${insn} in ${mode}`).toBe(CAUSE.ILLEGAL);
      expect(t.mtval).toBe(word);
      expect(t.mepc).toBe(BigInt(m.label("code")));
    }
  });

  it("mepc/sepc ignore bit 0 (IALIGN = 16)", () => {
    const m = machine(`
      li t0, 0x80001235
      csrw mepc, t0
      csrr a0, mepc
      csrw sepc, t0
      csrr a1, sepc
    `);
    m.runDone();
    expect(m.x("a0")).toBe(0x80001234n);
    expect(m.x("a1")).toBe(0x80001234n);
  });
});

describe("trap vectors", () => {
  const VEC = `
    .balign 256
  vec:
    j vexc
    j v1
    j v2
    j v3
    j v4
    j v5
    j v6
    j v7
    j v8
    j v9
    j v10
    j v11
  vexc: j vexc
  v1: j v1
  v2: j v2
  v3: j v3
  v4: j v4
  v5: j v5
  v6: j v6
  v7: j v7
  v8: j v8
  v9: j v9
  v10: j v10
  v11: j v11
  `;
  const stops = ["vexc", "v1", "v3", "v5", "v7", "v9", "v11"];

  it("vectored mtvec: an interrupt goes to base + 4 * cause (MSI -> base + 12)", () => {
    const m = machine(`
      la t0, vec
      ori t0, t0, 1
      csrw mtvec, t0
      li t0, 1 << 3
      csrw mie, t0
      li t1, 0x2000000
      li t2, 1
      sw t2, 0(t1)          # msip = 1
      csrsi mstatus, 8
    spin:
      j spin
      ${VEC}
    `);
    for (const s of stops) m.stopAt(s);
    const r = m.run();
    expect(r.at).toBe("v3");
    expect(m.csr("mcause")).toBe(CAUSE.MSI);
  });

  it("vectored mtvec: exceptions still go to base", () => {
    const m = machine(`
      la t0, vec
      ori t0, t0, 1
      csrw mtvec, t0
      ecall
      ${VEC}
    `);
    for (const s of stops) m.stopAt(s);
    expect(m.run().at).toBe("vexc");
    expect(m.csr("mcause")).toBe(CAUSE.ECALL_M);
  });

  it("direct mtvec: interrupts go to base", () => {
    const m = machine(`
      li t0, 1 << 3
      csrw mie, t0
      li t1, 0x2000000
      li t2, 1
      sw t2, 0(t1)
      csrsi mstatus, 8
    spin:
      j spin
    `);
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.MSI);
  });

  it("vectored stvec: a delegated supervisor software interrupt goes to base + 4", () => {
    const m = machine(`
      la t0, vec
      ori t0, t0, 1
      csrw stvec, t0
      li t0, 1 << 1
      csrw mideleg, t0
      csrw mie, t0
      csrs mip, t0          # SSIP
      csrsi sstatus, 2      # SIE
      ${enter(PRV_S, "spin")}
    spin:
      j spin
      ${VEC}
    `);
    for (const s of stops) m.stopAt(s);
    expect(m.run().at).toBe("v1");
    expect(m.csr("scause")).toBe(CAUSE.SSI);
    expect(m.core.priv(0)).toBe(PRV_S);
  });
});
