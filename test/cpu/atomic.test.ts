// A extension: LR/SC reservations, every AMO in .w and .d, alignment and access faults.
import { describe, expect, it } from "vitest";
import { machine, RAM, CAUSE, hex, u64 } from "./harness";
import { SX32 } from "./ref";
import { enc } from "../../host/util/riscv-asm";

const DATA = RAM + 0x40000;
const RES = RAM + 0x80000;

const AMO: Record<string, (a: bigint, b: bigint, bits: number) => bigint> = {
  amoswap: (_a, b) => b,
  amoadd: (a, b) => a + b,
  amoxor: (a, b) => a ^ b,
  amoand: (a, b) => a & b,
  amoor: (a, b) => a | b,
  amomin: (a, b, n) => (BigInt.asIntN(n, a) < BigInt.asIntN(n, b) ? a : b),
  amomax: (a, b, n) => (BigInt.asIntN(n, a) > BigInt.asIntN(n, b) ? a : b),
  amominu: (a, b, n) => (BigInt.asUintN(n, a) < BigInt.asUintN(n, b) ? a : b),
  amomaxu: (a, b, n) => (BigInt.asUintN(n, a) > BigInt.asUintN(n, b) ? a : b),
};

const VALS = [0n, 1n, 0x7fffffffn, 0x80000000n, 0xffffffffn, 0x17fffffffn, 0xffffffff80000000n,
  0x8000000000000000n, 0x7fffffffffffffffn, 0xffffffffffffffffn, 0x123456789abcdef0n];

describe("AMOs return the old value and store op(old, rs2)", () => {
  for (const name of Object.keys(AMO)) {
    for (const w of ["w", "d"] as const) {
      it(`${name}.${w}`, () => {
        const bits = w === "w" ? 32 : 64;
        const size = bits / 8;
        const pairs: [bigint, bigint][] = [];
        for (const a of VALS) for (const b of VALS) pairs.push([a, b]);
        // Each memory word sits in its own 16-byte slot; the neighbouring bytes must not change.
        let src = `li s0, ${DATA}\nli s1, ${RES}\nli s2, ${RES + 0x4000}\n`;
        pairs.forEach((_, i) => {
          src += `ld a2, 0(s2)\n${name}.${w} a0, a2, (s0)\nsd a0, 0(s1)\naddi s0, s0, 16\naddi s1, s1, 8\naddi s2, s2, 8\n`;
        });
        const m = machine(src);
        pairs.forEach(([a, b], i) => {
          m.w64(DATA + 16 * i, w === "w" ? (0x5555555500000000n | BigInt.asUintN(32, a)) : a);
          m.w64(DATA + 16 * i + 8, 0xa5a5a5a5a5a5a5a5n);
          m.w64(RES + 0x4000 + 8 * i, b);
        });
        m.runDone();
        const bad: string[] = [];
        pairs.forEach(([a, b], i) => {
          const mask = (1n << BigInt(bits)) - 1n;
          const old = a & mask;
          const wantRd = w === "w" ? SX32(old) : old;
          const wantMem = AMO[name](old, b & mask, bits) & mask;
          const rd = m.r64(RES + 8 * i);
          const mem = size === 4 ? BigInt(m.r32(DATA + 16 * i)) : m.r64(DATA + 16 * i);
          if (rd !== wantRd) bad.push(`rd for ${hex(a)}, ${hex(b)}: ${hex(rd)} != ${hex(wantRd)}`);
          if (mem !== wantMem) bad.push(`mem for ${hex(a)}, ${hex(b)}: ${hex(mem)} != ${hex(wantMem)}`);
          if (size === 4 && m.r32(DATA + 16 * i + 4) !== 0x55555555) bad.push(`upper word clobbered for ${hex(a)}`);
          if (m.r64(DATA + 16 * i + 8) !== 0xa5a5a5a5a5a5a5a5n) bad.push(`next word clobbered for ${hex(a)}`);
        });
        expect(bad.slice(0, 8)).toEqual([]);
      });
    }
  }

  it("rd = x0 discards the old value but still updates memory; rd == rs2 works", () => {
    const m = machine(`
      li s0, ${DATA}
      li a1, 5
      amoadd.d zero, a1, (s0)
      li a2, 7
      amoswap.d a2, a2, (s0)    # a2 <- old (15), memory <- 7
    `);
    m.w64(DATA, 10n);
    m.runDone();
    expect(m.x("a2")).toBe(15n);
    expect(m.r64(DATA)).toBe(7n);
  });
});

describe("LR/SC", () => {
  it("lr.w sign-extends; sc.w succeeds (rd = 0) and writes", () => {
    const m = machine(`
      li s0, ${DATA}
      lr.w a0, (s0)
      li a1, 0x12345678
      sc.w a2, a1, (s0)
      lr.d a3, (s0)
      li a4, -2
      sc.d a5, a4, (s0)
    `);
    m.w64(DATA, 0xcafef00d80000001n);
    m.runDone();
    expect(m.x("a0")).toBe(0xffffffff80000001n);
    expect(m.x("a2")).toBe(0n);
    expect(m.x("a3")).toBe(0xcafef00d12345678n);
    expect(m.x("a5")).toBe(0n);
    expect(m.r64(DATA)).toBe(u64(-2n));
  });

  it("sc without a preceding lr fails (rd != 0) and does not write", () => {
    const m = machine(`
      li s0, ${DATA}
      li a1, 99
      sc.d a2, a1, (s0)
    `);
    m.w64(DATA, 42n);
    m.runDone();
    expect(m.x("a2")).not.toBe(0n);
    expect(m.r64(DATA)).toBe(42n);
  });

  it("a second sc after a successful one fails (an sc ends the reservation)", () => {
    const m = machine(`
      li s0, ${DATA}
      lr.d a0, (s0)
      li a1, 1
      sc.d a2, a1, (s0)
      li a1, 2
      sc.d a3, a1, (s0)
    `);
    m.runDone();
    expect(m.x("a2")).toBe(0n);
    expect(m.x("a3")).not.toBe(0n);
    expect(m.r64(DATA)).toBe(1n);
  });

  it("a failed sc to another address also ends the reservation", () => {
    const m = machine(`
      li s0, ${DATA}
      li s1, ${DATA + 0x1000}
      lr.d a0, (s0)
      li a1, 1
      sc.d a2, a1, (s1)        # not the reserved address: must fail
      sc.d a3, a1, (s0)        # the reservation is gone (an sc intervened)
    `);
    m.w64(DATA, 7n);
    m.w64(DATA + 0x1000, 8n);
    m.runDone();
    expect(m.x("a2")).not.toBe(0n);
    expect(m.r64(DATA + 0x1000)).toBe(8n);
    expect(m.x("a3")).not.toBe(0n);
    expect(m.r64(DATA)).toBe(7n);
  });

  it("a trap between lr and sc makes the sc fail (this core clears the reservation on trap entry)", () => {
    // Privileged 1.12 only *allows* xRET/traps to clear the reservation; wasmvisor claims it
    // does so on every trap (trap.ts), which is what this checks.
    const m = machine(`
      la t0, handler
      csrw mtvec, t0
      li s0, ${DATA}
      lr.d a0, (s0)
      ecall
      li a1, 5
      sc.d a2, a1, (s0)
      j done
    handler:
      csrr t0, mepc
      addi t0, t0, 4
      csrw mepc, t0
      mret
    `);
    m.w64(DATA, 3n);
    m.runDone();
    expect(m.x("a2")).not.toBe(0n);
    expect(m.r64(DATA)).toBe(3n);
  });

  it("misaligned lr raises load address-misaligned (or access fault), mtval = address", () => {
    const m = machine(`
      li s0, ${DATA + 4}
      lr.d a0, (s0)
    `);
    const t = m.runTrap();
    expect([CAUSE.LOAD_MISALIGNED, CAUSE.LOAD_ACCESS]).toContain(t.mcause);
    expect(t.mtval).toBe(BigInt(DATA + 4));
  });

  it("misaligned sc raises store/AMO address-misaligned", () => {
    const m = machine(`
      li s0, ${DATA + 2}
      sc.w a0, a1, (s0)
    `);
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.STORE_MISALIGNED);
    expect(t.mtval).toBe(BigInt(DATA + 2));
  });
});

describe("LR/SC across harts", () => {
  function twoHarts(h1body: string) {
    const FLAG = DATA + 0x100;
    const m = machine(`
      li s0, ${DATA}
      li s1, ${FLAG}
      lr.d a0, (s0)
    1:
      ld t0, 0(s1)
      beqz t0, 1b
      li a1, 99
      sc.d a2, a1, (s0)
      j done
    h1:
      li s0, ${DATA}
      li s1, ${FLAG}
      ${h1body}
      li t2, 1
      sd t2, 0(s1)
    h1done:
      j h1done
    `, { harts: 2 });
    m.w64(DATA, 5n);
    // hart 0 takes the reservation and waits for the flag
    expect(m.run(2000).at).toBe(null);
    // hart 1 runs its part
    m.core.setPc(1, BigInt(m.label("h1")));
    m.core.setCsr(1, 0x305, m.label("mtrap"));
    m.core.run(1, 1000);
    expect(m.core.pc(1)).toBe(BigInt(m.label("h1done")));
    m.runDone();
    return m;
  }

  it("a store by another hart to the reserved address makes the sc fail", () => {
    const m = twoHarts(`li t1, 6\n      sd t1, 0(s0)`);
    expect(m.x("a2")).not.toBe(0n);
    expect(m.r64(DATA)).toBe(6n);
  });

  it("a store by another hart of the same value still makes the sc fail (no ABA)", () => {
    // "An SC may succeed only if no store from another hart to the reservation set can be
    // observed to have occurred between the LR and the SC" -- even if it stored the old value.
    const m = twoHarts(`ld t1, 0(s0)\n      sd t1, 0(s0)`);
    expect(m.x("a2")).not.toBe(0n);
    expect(m.r64(DATA)).toBe(5n);
  });

  it("an AMO by another hart to the reserved address makes the sc fail", () => {
    const m = twoHarts(`amoadd.d zero, zero, (s0)`);
    expect(m.x("a2")).not.toBe(0n);
    expect(m.r64(DATA)).toBe(5n);
  });

  // The core gives up a hart's reservation whenever another hart ran since its LR (harts of a
  // VM share one thread; the spec allows an SC to fail for other reasons). What must hold is
  // forward progress: an LR/SC retry loop completes even when the other hart keeps running.
  it("another hart running between LR and SC: the SC may fail, but an LR/SC retry loop completes", () => {
    const m = machine(`
      li s0, ${DATA}
    retry:
      lr.d a0, (s0)
      addi a0, a0, 1
      sc.d a2, a0, (s0)
      bnez a2, retry
      j done
    h1:
      li s0, ${DATA + 0x7f8}
    h1loop:
      sd zero, 0(s0)
      j h1loop
    `, { harts: 2 });
    m.w64(DATA, 5n);
    m.core.setPc(1, BigInt(m.label("h1")));
    // Alternate the harts with short slices, as a scheduler would.
    for (let i = 0; i < 50 && m.core.pc(0) !== BigInt(m.label("done")); i++) {
      m.core.run(0, 3);
      m.core.run(1, 3);
    }
    expect(m.core.pc(0)).toBe(BigInt(m.label("done")));
    expect(m.r64(DATA)).toBe(6n);
  });
});

describe("AMO faults", () => {
  for (const [insn, addr] of [["amoadd.w", DATA + 2], ["amoswap.d", DATA + 4], ["amomaxu.d", DATA + 1], ["amoor.w", DATA + 0xfff]] as const) {
    it(`misaligned ${insn} -> store/AMO address-misaligned (cause 6), memory untouched`, () => {
      const m = machine(`
        li s0, ${addr}
        li a1, -1
      site:
        ${insn} a0, a1, (s0)
      `);
      m.w64(DATA, 0x1122334455667788n);
      const t = m.runTrap();
      expect(t.mcause).toBe(CAUSE.STORE_MISALIGNED);
      expect(t.mtval).toBe(BigInt(addr));
      expect(t.mepc).toBe(BigInt(m.label("site")));
      expect(m.r64(DATA)).toBe(0x1122334455667788n);
    });
  }

  it("AMO to an unmapped address -> store/AMO access fault (cause 7), mtval = address", () => {
    const m = machine(`
      li s0, 0x40000000
      li a1, 1
    site:
      amoadd.d a0, a1, (s0)
    `);
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.STORE_ACCESS);
    expect(t.mtval).toBe(0x40000000n);
    expect(t.mepc).toBe(BigInt(m.label("site")));
  });

  it("AMO past the end of RAM -> store/AMO access fault", () => {
    const m = machine(`
      li s0, ${RAM + (1 << 20)}
      amoswap.w a0, a1, (s0)
    `);
    expect(m.runTrap().mcause).toBe(CAUSE.STORE_ACCESS);
  });

  it("lr to an unmapped address -> load access fault (cause 5)", () => {
    const m = machine(`
      li s0, 0x40000000
      lr.w a0, (s0)
    `);
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.LOAD_ACCESS);
    expect(t.mtval).toBe(0x40000000n);
  });

  it("AMO to the read-only boot ROM -> store/AMO access fault", () => {
    const m = machine(`
      li s0, 0x1000
      amoor.w a0, zero, (s0)
    `);
    expect(m.runTrap().mcause).toBe(CAUSE.STORE_ACCESS);
  });

  it("lr with rs2 != 0 and AMOs of other widths (funct3 = 0, 4) are illegal", () => {
    const lr = enc.lr_d("a0", "s0");
    for (const word of [(lr | (5 << 20)) >>> 0, (enc.amoadd_w("a0", "a1", "s0") & ~(7 << 12)) >>> 0,
      ((enc.amoadd_w("a0", "a1", "s0") & ~(7 << 12)) | (4 << 12)) >>> 0]) {
      const m = machine(`li s0, ${DATA}\n.word ${word}`);
      const t = m.runTrap();
      expect(t.mcause, hex(word)).toBe(CAUSE.ILLEGAL);
      expect(t.mtval).toBe(BigInt(word));
    }
  });

  it("an AMO with a reserved funct5 is illegal", () => {
    // funct5 0x1f is not assigned in A
    const word = (0x1f << 27) | (11 << 20) | (8 << 15) | (3 << 12) | (10 << 7) | 0x2f;
    const m = machine(`
      li s0, ${DATA}
      .word ${word >>> 0}
    `);
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.ILLEGAL);
    expect(t.mtval).toBe(BigInt(word >>> 0));
  });
});
