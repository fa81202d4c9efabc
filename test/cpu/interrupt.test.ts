// Interrupts: CLINT timer and software interrupts, Sstc, host-driven external interrupts,
// delegation, global enables, priorities, prompt evaluation after CSR writes, WFI.
import { describe, expect, it } from "vitest";
import { machine, enter, Machine, RAM, CAUSE, MS, mpp, PRV_M, PRV_S, PRV_U, L, hex } from "./harness";

const CLINT = 0x2000000;
const MTIMECMP = CLINT + 0x4000;
const MTIME = CLINT + 0xbff8;

/** A machine with a frozen clock; `clock.t` sets mtime. */
function timed(src: string) {
  const clock = { t: 0 };
  const m = machine(src, { clock: () => clock.t });
  return { m, clock };
}

/** Run a while and require that the program is still spinning (no trap yet). */
function expectNoTrap(m: Machine, budget = 30_000) {
  const r = m.run(budget);
  expect(r.at, m.describe(r)).toBe(null);
  expect(r.reason).toBe(L.EXIT_BUDGET);
}

describe("machine timer (CLINT)", () => {
  it("MTI is taken once mtime >= mtimecmp; mepc is in the interrupted loop", () => {
    const { m, clock } = timed(`
      li t0, ${MTIMECMP}
      li t1, 1000
      sd t1, 0(t0)
      li t0, 1 << 7
      csrw mie, t0
      csrsi mstatus, 8
    spin:
      addi a0, a0, 1
      j spin
    `);
    clock.t = 999;
    expectNoTrap(m);
    expect(m.csr("mip") & 0x80n).toBe(0n);
    clock.t = 1000;
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.MTI);
    expect([BigInt(m.label("spin")), BigInt(m.label("spin") + 4)]).toContain(t.mepc);
    expect(m.csr("mip") & 0x80n).toBe(0x80n);
  });

  it("counts interrupts taken (the watchdog's evidence), not exceptions or masked pending ones", () => {
    const { m, clock } = timed(`
      ecall
    resume:
      li t0, ${MTIMECMP}
      li t1, 1000
      sd t1, 0(t0)
      li t0, 1 << 7
      csrw mie, t0
    masked:
      j masked
    `);
    clock.t = 5000; // MTI pending and enabled in mie, but mstatus.MIE is 0
    expect(m.runTrap().mcause).toBe(CAUSE.ECALL_M);
    expect(m.core.interruptsTaken(0)).toBe(0);
    m.core.setPc(0, BigInt(m.label("resume")));
    expectNoTrap(m);
    expect(m.core.interruptsTaken(0)).toBe(0);
    m.setCsr("mstatus", m.csr("mstatus") | MS.MIE);
    expect(m.runTrap().mcause).toBe(CAUSE.MTI);
    expect(m.core.interruptsTaken(0)).toBe(1);
  });

  it("a guest writing mtime past mtimecmp takes MTI at the next slice boundary, not when the run loop's copy of the time ages", () => {
    const { m } = timed(`
      li t0, ${MTIMECMP}
      li t1, 1000
      sd t1, 0(t0)
      li t0, 1 << 7
      csrw mie, t0
      csrsi mstatus, 8          # MIE: the slice ends, the time (0) is read, nothing is due
      li t0, ${MTIME}
      li t1, 5000
      sd t1, 0(t0)              # the guest moves mtime past mtimecmp (a CLINT store ends the slice)
    after:
      csrsi mstatus, 8
    spin:
      addi a0, a0, 1
      j spin
    `);
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.MTI);
    expect([BigInt(m.label("after")), BigInt(m.label("spin"))]).toContain(t.mepc);
    expect(m.x("a0")).toBe(0n); // not one round of the loop: the interrupt was not late
  });

  it("MTIP follows mtimecmp: writing a later mtimecmp clears it", () => {
    const { m, clock } = timed(`
      li t0, ${MTIMECMP}
      li t1, 100
      sd t1, 0(t0)
      csrr a0, mip
      li t1, 1000
      sd t1, 0(t0)
      csrr a1, mip
    `);
    clock.t = 500;
    m.runDone();
    expect(m.x("a0") & 0x80n).toBe(0x80n);
    expect(m.x("a1") & 0x80n).toBe(0n);
  });

  it("mtime and mtimecmp are readable as 64-bit and as 32-bit halves", () => {
    const { m, clock } = timed(`
      li t0, ${MTIME}
      ld a0, 0(t0)
      lw a1, 0(t0)
      lw a2, 4(t0)
      li t0, ${MTIMECMP}
      li t1, 0x11223344
      sw t1, 0(t0)
      li t1, 0x55667788
      sw t1, 4(t0)
      ld a3, 0(t0)
    `);
    clock.t = 0x123456789;
    m.runDone();
    expect(m.x("a0")).toBe(0x123456789n);
    expect(m.x("a1")).toBe(0x23456789n);
    expect(m.x("a2")).toBe(1n);
    expect(m.x("a3")).toBe(0x5566778811223344n);
  });

  it("with MIE = 0 in M-mode the timer interrupt stays pending and is not taken", () => {
    const { m, clock } = timed(`
      li t0, ${MTIMECMP}
      sd zero, 0(t0)
      li t0, 1 << 7
      csrw mie, t0
    spin:
      j spin
    `);
    clock.t = 10;
    expectNoTrap(m);
    expect(m.csr("mip") & 0x80n).toBe(0x80n);
  });
});

describe("software interrupts", () => {
  it("MSI via the CLINT msip register; msip reads back; clearing it clears MSIP", () => {
    const m = machine(`
      li t0, ${CLINT}
      li t1, 1
      sw t1, 0(t0)
      lw a0, 0(t0)
      csrr a1, mip
      li t1, 1 << 3
      csrw mie, t1
      csrsi mstatus, 8
    spin:
      j spin
    `);
    const t = m.runTrap();
    expect(m.x("a0")).toBe(1n);
    expect(m.x("a1") & 8n).toBe(8n);
    expect(t.mcause).toBe(CAUSE.MSI);
    // clear from the host side of the program: store 0 and check mip
    const m2 = machine(`
      li t0, ${CLINT}
      li t1, 1
      sw t1, 0(t0)
      sw zero, 0(t0)
      csrr a0, mip
    `);
    m2.runDone();
    expect(m2.x("a0") & 8n).toBe(0n);
  });

  it("an enabled MSI raised by a store to the hart's own msip is taken before the next instruction", () => {
    // As after a CSR write: the store ends the slice, the run loop looks at interrupts at once
    // (it took up to a slice, 4096 instructions, before).
    const m = machine(`
      li t1, 1 << 3
      csrw mie, t1
      csrsi mstatus, 8
      li a0, 0
      li t0, ${CLINT}
      li t1, 1
      sw t1, 0(t0)
      ${"addi a0, a0, 1\n".repeat(64)}
    spin:
      j spin
    `);
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.MSI);
    expect(m.x("a0")).toBe(0n);
  });

  it("SSI written by S through sip is taken in S when delegated", () => {
    const m = machine(`
      li t0, 1 << 1
      csrw mideleg, t0
      csrw mie, t0
      ${enter(PRV_S, "s")}
    s:
      csrsi sstatus, 2
      csrsi sip, 2
    spin:
      j spin
    `);
    const t = m.runTrap("strap");
    expect(t.scause).toBe(CAUSE.SSI);
    expect(t.priv).toBe(PRV_S);
    expect(t.mstatus & MS.SPP).toBe(MS.SPP);
  });

  it("SSI set by M in mip and not delegated traps to M (mcause = interrupt 1)", () => {
    const m = machine(`
      li t0, 1 << 1
      csrw mie, t0
      csrs mip, t0
      csrsi mstatus, 8
    spin:
      j spin
    `);
    expect(m.runTrap().mcause).toBe(CAUSE.SSI);
  });
});

describe("CLINT with two harts", () => {
  it("msip[1] and mtimecmp[1] reach hart 1 only", () => {
    const clock = { t: 0 };
    const m = machine(`
      li t0, ${CLINT}
      li t1, 1
      sw t1, 4(t0)              # msip of hart 1
      li t0, ${MTIMECMP + 8}
      li t1, 10
      sd t1, 0(t0)              # mtimecmp of hart 1 (mtime = 50 >= 10)
      li t0, ${MTIMECMP}
      li t1, 1000
      sd t1, 0(t0)              # mtimecmp of hart 0 in the future
    `, { harts: 2, clock: () => clock.t });
    clock.t = 50; // mtime counts from the core's creation
    m.runDone();
    expect(m.core.csr(1, 0x344) & 0x88n).toBe(0x88n);
    expect(m.csr("mip") & 0x88n).toBe(0n);
  });
});

describe("supervisor timer", () => {
  it("Sstc: with menvcfg.STCE, stimecmp raises STI, delegated to S", () => {
    const { m, clock } = timed(`
      li t0, 1
      slli t0, t0, 63
      csrw menvcfg, t0
      csrwi mcounteren, 2       # TM: S may access stimecmp
      li t0, 1 << 5
      csrw mideleg, t0
      csrw mie, t0
      ${enter(PRV_S, "s")}
    s:
      li t1, 2000
      csrw 0x14d, t1            # stimecmp
      csrsi sstatus, 2
    spin:
      j spin
    `);
    clock.t = 1999;
    expectNoTrap(m);
    clock.t = 2000;
    const t = m.runTrap("strap");
    expect(t.scause).toBe(CAUSE.STI);
    expect(m.csr("sip") & 0x20n).toBe(0x20n);
  });

  it("Sstc: STIP is read-only in mip while STCE = 1 and follows stimecmp", () => {
    const { m, clock } = timed(`
      li t0, 1
      slli t0, t0, 63
      csrw menvcfg, t0
      li t1, 1000
      csrw 0x14d, t1
      li t0, 1 << 5
      csrs mip, t0              # ignored: STIP comes from stimecmp
      csrr a0, mip
      li t1, 10
      csrw 0x14d, t1
      csrr a1, mip
      csrc mip, t0              # ignored too
      csrr a2, mip
    `);
    clock.t = 100;
    m.runDone();
    expect(m.x("a0") & 0x20n).toBe(0n);
    expect(m.x("a1") & 0x20n).toBe(0x20n);
    expect(m.x("a2") & 0x20n).toBe(0x20n);
  });

  it("with STCE = 0, stimecmp does not drive STIP", () => {
    const { m, clock } = timed(`
      csrw menvcfg, zero
      csrw 0x14d, zero          # stimecmp = 0 (in the past), M-mode access
      csrr a0, mip
    `);
    clock.t = 100;
    m.runDone();
    expect(m.x("a0") & 0x20n).toBe(0n);
  });

  it("Sstc: stimecmp is illegal from S when STCE = 0 or mcounteren.TM = 0", () => {
    for (const setup of ["csrwi mcounteren, 2", "li t0, 1; slli t0, t0, 63; csrw menvcfg, t0"]) {
      const m = machine(`
        ${setup}
        ${enter(PRV_S, "s")}
      s:
        csrr a0, 0x14d
      `);
      const t = m.runTrap();
      expect(t.mcause, setup).toBe(CAUSE.ILLEGAL);
    }
  });

  it("without Sstc, M-mode writes mip.STIP and S takes the delegated STI", () => {
    const m = machine(`
      li t0, 1 << 5
      csrw mideleg, t0
      csrw mie, t0
      csrs mip, t0
      csrsi sstatus, 2
      ${enter(PRV_S, "spin")}
    spin:
      j spin
    `);
    const t = m.runTrap("strap");
    expect(t.scause).toBe(CAUSE.STI);
  });
});

describe("external interrupts driven by the host", () => {
  it("MEI via setIrq(11)", () => {
    const m = machine(`
      li t0, 1 << 11
      csrw mie, t0
      csrsi mstatus, 8
    spin:
      j spin
    `);
    expectNoTrap(m);
    m.core.setIrq(0, 11, true);
    expect(m.runTrap().mcause).toBe(CAUSE.MEI);
    expect(m.csr("mip") & 0x800n).toBe(0x800n);
    m.core.setIrq(0, 11, false);
    expect(m.csr("mip") & 0x800n).toBe(0n);
  });

  it("SEI via setIrq(9), delegated, taken in S", () => {
    const m = machine(`
      li t0, 1 << 9
      csrw mideleg, t0
      csrw mie, t0
      csrsi sstatus, 2
      ${enter(PRV_S, "spin")}
    spin:
      j spin
    `);
    expectNoTrap(m);
    m.core.setIrq(0, 9, true);
    const t = m.runTrap("strap");
    expect(t.scause).toBe(CAUSE.SEI);
    expect(m.csr("sip") & 0x200n).toBe(0x200n);
  });

  it("SEI not delegated goes to M (mcause = interrupt 9)", () => {
    const m = machine(`
      li t0, 1 << 9
      csrw mie, t0
      csrsi mstatus, 8
    spin:
      j spin
    `);
    m.core.setIrq(0, 9, true);
    expect(m.runTrap().mcause).toBe(CAUSE.SEI);
  });

  it("mip.SEIP reads as the OR of the software bit and the external signal", () => {
    const m = machine(`
      li t0, 1 << 9
      csrs mip, t0
      csrr a0, mip
      csrc mip, t0
      csrr a1, mip
    `);
    m.core.setIrq(0, 9, true);
    m.runDone();
    expect(m.x("a0") & 0x200n).toBe(0x200n);
    expect(m.x("a1") & 0x200n).toBe(0x200n); // still pending from the external signal
    m.core.setIrq(0, 9, false);
    expect(m.csr("mip") & 0x200n).toBe(0n);
  });
});

describe("priorities", () => {
  it("M-mode: MEI > MSI > MTI > SEI > SSI > STI", () => {
    const clock = { t: 0 };
    const m = machine(`
      li t0, ${MTIMECMP}
      sd zero, 0(t0)            # MTIP (mtime 100 >= 0)
      li t0, ${CLINT}
      li t1, 1
      sw t1, 0(t0)              # MSIP
      li t0, (1 << 1) | (1 << 5)
      csrs mip, t0              # SSIP, STIP
      li t0, 0xaaa
      csrw mie, t0
    spin:
      j spin
    `, { clock: () => clock.t });
    clock.t = 100; // mtime = 100 (counted from the core's creation)
    m.core.setIrq(0, 11, true);
    m.core.setIrq(0, 9, true);
    m.stopAt("spin");
    expect(m.run().at).toBe("spin");
    const order: bigint[] = [];
    for (let i = 0; i < 6; i++) {
      m.setCsr("mstatus", m.csr("mstatus") | MS.MIE);
      m.core.setPc(0, BigInt(m.label("spin")));
      const t = m.runTrap();
      order.push(t.mcause & 0xffn);
      m.setCsr("mie", m.csr("mie") & ~(1n << (t.mcause & 0xffn)));
    }
    expect(order).toEqual([11n, 3n, 7n, 9n, 1n, 5n]);
  });

  it("S-mode, all delegated: SEI > SSI > STI", () => {
    const m = machine(`
      li t0, 0x222
      csrw mideleg, t0
      csrw mie, t0
      li t0, (1 << 1) | (1 << 5)
      csrs mip, t0
      ${enter(PRV_S, "spin")}
    spin:
      j spin
    `);
    m.core.setIrq(0, 9, true);
    m.stopAt("spin");
    expect(m.run().at).toBe("spin");
    const order: bigint[] = [];
    for (let i = 0; i < 3; i++) {
      m.setCsr("mstatus", m.csr("mstatus") | MS.SIE);
      m.core.setPriv(0, PRV_S);
      m.core.setPc(0, BigInt(m.label("spin")));
      const t = m.runTrap("strap");
      order.push(t.scause & 0xffn);
      m.setCsr("mie", m.csr("mie") & ~(1n << (t.scause & 0xffn)));
    }
    expect(order).toEqual([9n, 1n, 5n]);
  });

  it("an M-level interrupt beats a higher-numbered delegated one (MTI over delegated SEI in S)", () => {
    const clock = { t: 0 };
    const m = machine(`
      li t0, ${MTIMECMP}
      sd zero, 0(t0)
      li t0, 1 << 9
      csrw mideleg, t0
      li t0, (1 << 9) | (1 << 7)
      csrw mie, t0
      csrsi sstatus, 2
      ${enter(PRV_S, "spin")}
    spin:
      j spin
    `, { clock: () => clock.t });
    clock.t = 10;
    m.core.setIrq(0, 9, true);
    const t = m.runTrap("mtrap");
    expect(t.mcause).toBe(CAUSE.MTI);
  });
});

describe("global interrupt enables", () => {
  it("M-level interrupts are taken in S even with MIE = 0", () => {
    const m = machine(`
      csrci mstatus, 8
      li t0, 1 << 3
      csrw mie, t0
      li t0, ${CLINT}
      li t1, 1
      sw t1, 0(t0)
      ${enter(PRV_S, "spin")}
    spin:
      j spin
    `);
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.MSI);
    expect(mpp(t.mstatus)).toBe(PRV_S);
  });

  it("M-level interrupts are taken in U even with MIE = 0", () => {
    const m = machine(`
      li t0, 1 << 11
      csrw mie, t0
      ${enter(PRV_U, "spin")}
    spin:
      j spin
    `);
    m.core.setIrq(0, 11, true);
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.MEI);
    expect(mpp(t.mstatus)).toBe(PRV_U);
  });

  it("a non-delegated SSI (an M-level interrupt) is taken in S with MIE = 0", () => {
    const m = machine(`
      li t0, 1 << 1
      csrw mie, t0
      csrs mip, t0
      ${enter(PRV_S, "spin")}
    spin:
      j spin
    `);
    expect(m.runTrap("mtrap").mcause).toBe(CAUSE.SSI);
  });

  it("S-level (delegated) interrupts are never taken in M, whatever MIE/SIE say", () => {
    const m = machine(`
      li t0, 1 << 1
      csrw mideleg, t0
      csrw mie, t0
      csrs mip, t0
      csrsi mstatus, 8 | 2
    spin:
      j spin
    `);
    expectNoTrap(m);
    expect(m.core.priv(0)).toBe(PRV_M);
  });

  it("delegated interrupts are masked in S by SIE = 0 but taken in U regardless of SIE", () => {
    const m = machine(`
      li t0, 1 << 1
      csrw mideleg, t0
      csrw mie, t0
      csrs mip, t0
      csrci sstatus, 2
      ${enter(PRV_S, "spin")}
    spin:
      j spin
    `);
    expectNoTrap(m);
    const m2 = machine(`
      li t0, 1 << 1
      csrw mideleg, t0
      csrw mie, t0
      csrs mip, t0
      csrci sstatus, 2
      ${enter(PRV_U, "spin")}
    spin:
      j spin
    `);
    const t = m2.runTrap("strap");
    expect(t.scause).toBe(CAUSE.SSI);
    expect(t.mstatus & MS.SPP).toBe(0n);
  });

  it("interrupts disabled in mie are not taken", () => {
    const m = machine(`
      li t0, 1 << 1
      csrs mip, t0
      csrw mie, zero
      csrsi mstatus, 8
    spin:
      j spin
    `);
    expectNoTrap(m);
  });
});

describe("interrupt conditions are re-evaluated right after CSR writes and xRET", () => {
  // Privileged 1.12, 3.1.9: the trap conditions "must also be evaluated immediately following
  // the execution of an xRET instruction or an explicit write to a CSR on which these interrupt
  // trap conditions expressly depend (including mip, mie, mstatus, and mideleg)".
  it("setting mstatus.MIE with an interrupt already pending traps before the next instruction", () => {
    const m = machine(`
      li t0, 1 << 1
      csrs mip, t0
      csrw mie, t0
      csrsi mstatus, 8
    next:
      li a0, 1
    spin:
      j spin
    `);
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.SSI);
    expect(t.mepc).toBe(BigInt(m.label("next")));
    expect(m.x("a0")).toBe(0n);
  });

  it("writing mie", () => {
    const m = machine(`
      li t0, 1 << 1
      csrs mip, t0
      csrsi mstatus, 8
      csrw mie, t0
    next:
      li a0, 1
    spin:
      j spin
    `);
    const t = m.runTrap();
    expect(t.mepc).toBe(BigInt(m.label("next")));
  });

  it("writing mip", () => {
    const m = machine(`
      li t0, 1 << 1
      csrw mie, t0
      csrsi mstatus, 8
      csrs mip, t0
    next:
      li a0, 1
    spin:
      j spin
    `);
    const t = m.runTrap();
    expect(t.mepc).toBe(BigInt(m.label("next")));
  });

  it("mret into S with a delegated interrupt pending and SIE = 1", () => {
    const m = machine(`
      li t0, 1 << 1
      csrw mideleg, t0
      csrw mie, t0
      csrs mip, t0
      csrsi sstatus, 2
      ${enter(PRV_S, "s")}
    s:
      li a0, 1
    spin:
      j spin
    `);
    const t = m.runTrap("strap");
    expect(t.scause).toBe(CAUSE.SSI);
    expect(t.sepc).toBe(BigInt(m.label("s")));
    expect(m.x("a0")).toBe(0n);
  });

  it("mret into U with an M-level interrupt pending (MIE = 0 does not mask it in U)", () => {
    const m = machine(`
      li t0, 1 << 1
      csrw mie, t0
      csrs mip, t0              # SSIP, not delegated: an M-level interrupt
      ${enter(PRV_U, "u")}
    u:
      li a0, 1
    spin:
      j spin
    `);
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.SSI);
    expect(t.mepc).toBe(BigInt(m.label("u")));
    expect(mpp(t.mstatus)).toBe(PRV_U);
    expect(m.x("a0")).toBe(0n);
  });

  it("writing mideleg (undelegating a pending, enabled interrupt while in M with MIE = 1)", () => {
    const m = machine(`
      li t0, 1 << 1
      csrw mideleg, t0
      csrw mie, t0
      csrs mip, t0              # delegated: an S-level interrupt, never taken in M
      csrsi mstatus, 8
      nop
      nop
      csrw mideleg, zero        # now an M-level interrupt with MIE = 1
    next:
      li a0, 1
    spin:
      j spin
    `);
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.SSI);
    expect(t.mepc).toBe(BigInt(m.label("next")));
    expect(m.x("a0")).toBe(0n);
  });

  it("writing stimecmp to a past time (Sstc)", () => {
    const { m, clock } = timed(`
      li t0, 1
      slli t0, t0, 63
      csrw menvcfg, t0
      li t0, 1 << 5
      csrw mie, t0
      csrsi mstatus, 8
      li t1, 5
      csrw 0x14d, t1
    next:
      li a0, 1
    spin:
      j spin
    `);
    clock.t = 100;
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.STI);
    expect(t.mepc).toBe(BigInt(m.label("next")));
  });
});

describe("WFI", () => {
  it("with nothing pending, run() returns EXIT_HALT with pc after the wfi", () => {
    const m = machine(`
      li t0, 1 << 11
      csrw mie, t0
    site:
      wfi
      li a0, 1
    `);
    const r = m.run();
    expect(r.reason).toBe(L.EXIT_HALT);
    expect(m.core.halted(0)).toBe(true);
    // asking again without a wake-up changes nothing
    expect(m.core.run(0, 1000)).toBe(L.EXIT_HALT);
    expect(m.x("a0")).toBe(0n);
  });

  it("an enabled interrupt becoming pending resumes after the wfi even with MIE = 0 (no trap)", () => {
    const m = machine(`
      li t0, 1 << 11
      csrw mie, t0
      csrci mstatus, 8
    site:
      wfi
      li a0, 1
    `);
    expect(m.run().reason).toBe(L.EXIT_HALT);
    m.core.setIrq(0, 11, true);
    m.runDone();
    expect(m.x("a0")).toBe(1n);
    expect(m.csr("mcause")).toBe(0n);
    expect(m.core.halted(0)).toBe(false);
  });

  it("a pending interrupt not enabled in mie does not wake the hart", () => {
    const m = machine(`
      li t0, 1 << 3
      csrw mie, t0
      wfi
      li a0, 1
    `);
    expect(m.run().reason).toBe(L.EXIT_HALT);
    m.core.setIrq(0, 11, true);
    expect(m.run().reason).toBe(L.EXIT_HALT);
    expect(m.x("a0")).toBe(0n);
  });

  it("with MIE = 1 the interrupt is taken and mepc = the instruction after the wfi", () => {
    const m = machine(`
      li t0, 1 << 11
      csrw mie, t0
      csrsi mstatus, 8
    site:
      wfi
    after:
      li a0, 1
    `);
    expect(m.run().reason).toBe(L.EXIT_HALT);
    m.core.setIrq(0, 11, true);
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.MEI);
    expect(t.mepc).toBe(BigInt(m.label("after")));
    expect(m.x("a0")).toBe(0n);
  });

  it("a timer deadline wakes the hart", () => {
    const { m, clock } = timed(`
      li t0, ${MTIMECMP}
      li t1, 500
      sd t1, 0(t0)
      li t0, 1 << 7
      csrw mie, t0
      wfi
      li a0, 1
    `);
    expect(m.run().reason).toBe(L.EXIT_HALT);
    clock.t = 499;
    expect(m.run().reason).toBe(L.EXIT_HALT);
    clock.t = 500;
    m.runDone();
    expect(m.x("a0")).toBe(1n);
  });

  it("wfi with a wake-up already pending does not halt", () => {
    const m = machine(`
      li t0, 1 << 1
      csrw mie, t0
      csrs mip, t0
      wfi
      li a0, 1
    `);
    m.runDone();
    expect(m.x("a0")).toBe(1n);
  });

  it("wfi in S resumes on a delegated interrupt even with SIE = 0", () => {
    const m = machine(`
      li t0, 1 << 9
      csrw mideleg, t0
      csrw mie, t0
      csrci sstatus, 2
      ${enter(PRV_S, "s")}
    s:
      wfi
      li a0, 1
    `);
    expect(m.run().reason).toBe(L.EXIT_HALT);
    m.core.setIrq(0, 9, true);
    m.runDone();
    expect(m.x("a0")).toBe(1n);
    expect(m.core.priv(0)).toBe(PRV_S);
  });
});
