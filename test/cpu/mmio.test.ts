// Exits to the host: MMIO loads/stores on mapDevice pages (address, size, direction, data,
// sign/zero extension of the answer, pc advance), the built-in-SBI ecall exit and HTIF tohost.
import { describe, expect, it } from "vitest";
import { machine, enter, pokeSatp, PageTables, PTE, RWX, AD, RAM, CAUSE, PRV_S, PRV_U, L, hex } from "./harness";

const DEV = 0x10000000;

function dev(src: string, opts = {}) {
  const m = machine(src, opts);
  m.core.mapDevice(DEV, 0x1000);
  return m;
}

/** Run to the next exit and require it to be an MMIO exit with the given shape. */
function expectMmio(m: ReturnType<typeof dev>, addr: number, size: number, write: boolean, nextPc?: number) {
  const r = m.run();
  expect(r.reason, m.describe(r)).toBe(L.EXIT_MMIO);
  expect(hex(m.core.exitAddr(0))).toBe(hex(addr));
  expect(m.core.exitSize(0)).toBe(size);
  expect(m.core.exitIsWrite(0)).toBe(write);
  if (nextPc !== undefined) expect(hex(m.pc())).toBe(hex(nextPc));
}

describe("MMIO loads", () => {
  const LOADS: [string, number, number, bigint, bigint][] = [
    // insn, size, answer lo, answer hi -> expected rd
    ["lb", 1, 0x80, 0n, 0xffffffffffffff80n],
    ["lbu", 1, 0x80, 0n, 0x80n],
    ["lh", 2, 0x8001, 0n, 0xffffffffffff8001n],
    ["lhu", 2, 0x8001, 0n, 0x8001n],
    ["lw", 4, 0x80000001, 0n, 0xffffffff80000001n],
    ["lwu", 4, 0x80000001, 0n, 0x80000001n],
    ["ld", 8, 0x89abcdef, 0x81234567n, 0x8123456789abcdefn],
  ];
  for (const [insn, size, lo, hi, want] of LOADS) {
    it(`${insn}: exit with address/size/read, answer extended into rd, pc past the load`, () => {
      const m = dev(`
        li s0, ${DEV}
      site:
        ${insn} a0, 8(s0)
      next:
        addi a1, a0, 0
      `);
      m.setX("a0", 0x5555n);
      expectMmio(m, DEV + 8, size, false);
      expect(hex(m.pc())).toBe(hex(m.label("next")));
      // the answer may carry garbage above the access size: only `size` bytes count
      m.core.setExitData(0, size < 4 ? (lo | 0xdead0000 & ~((1 << (8 * size)) - 1)) >>> 0 : lo, size === 8 ? Number(hi) : 0xffffffff);
      m.runDone();
      expect(hex(m.x("a0"))).toBe(hex(want));
      expect(hex(m.x("a1"))).toBe(hex(want));
    });
  }

  it("a load into x0 exits but leaves x0 zero", () => {
    const m = dev(`
      li s0, ${DEV}
      lw zero, 0(s0)
      mv a0, zero
    `);
    expectMmio(m, DEV, 4, false);
    m.core.setExitData(0, 0x1234);
    m.runDone();
    expect(m.x("zero")).toBe(0n);
    expect(m.x("a0")).toBe(0n);
  });

  it("a compressed load advances pc by 2", () => {
    const m = dev(`
      li s0, ${DEV}
    site:
      c.lw a0, 4(s0)
    next:
      c.nop
    `);
    expectMmio(m, DEV + 4, 4, false);
    expect(hex(m.pc())).toBe(hex(m.label("next")));
    m.core.setExitData(0, 0xfffffffe);
    m.runDone();
    expect(m.x("a0")).toBe(0xfffffffffffffffen);
  });

  it("flw from a device is NaN-boxed; fld takes all 64 bits", () => {
    const m = dev(`
      li s0, ${DEV}
      flw fa0, 0(s0)
      fld fa1, 8(s0)
    `, { fp: true });
    expectMmio(m, DEV, 4, false);
    m.core.setExitData(0, 0x3f800000, 0x12345678);
    expectMmio(m, DEV + 8, 8, false);
    m.core.setExitData(0, 0x11223344, 0x55667788);
    m.runDone();
    expect(hex(m.f("fa0"))).toBe(hex(0xffffffff3f800000n));
    expect(hex(m.f("fa1"))).toBe(hex(0x5566778811223344n));
  });

  it("consecutive device loads each exit once, in program order", () => {
    const m = dev(`
      li s0, ${DEV}
      lbu a0, 0(s0)
      lbu a1, 1(s0)
      add a2, a0, a1
    `);
    expectMmio(m, DEV, 1, false);
    m.core.setExitData(0, 3);
    expectMmio(m, DEV + 1, 1, false);
    m.core.setExitData(0, 4);
    m.runDone();
    expect(m.x("a2")).toBe(7n);
  });
});

describe("MMIO stores", () => {
  const STORES: [string, number, bigint][] = [["sb", 1, 0xa5n], ["sh", 2, 0xa5a5n], ["sw", 4, 0xa5a5a5a5n], ["sd", 8, 0xa5a5a5a5a5a5a5a5n]];
  for (const [insn, size, want] of STORES) {
    it(`${insn}: exit with address/size/write and the data; pc past the store`, () => {
      const m = dev(`
        li s0, ${DEV}
        li a0, 0xa5a5a5a5a5a5a5a5
      site:
        ${insn} a0, 16(s0)
      next:
        li a1, 1
      `);
      expectMmio(m, DEV + 16, size, true);
      expect(hex(m.pc())).toBe(hex(m.label("next")));
      const mask = (1n << BigInt(8 * size)) - 1n;
      expect(hex(m.core.exitData(0) & mask)).toBe(hex(want));
      m.runDone();
      expect(m.x("a1")).toBe(1n);
    });
  }

  it("fsd to a device carries the FP register", () => {
    const m = dev(`
      li s0, ${DEV}
      fsd fa0, 0(s0)
    `, { fp: true });
    m.setF("fa0", 0x0123456789abcdefn);
    expectMmio(m, DEV, 8, true);
    expect(hex(m.core.exitData(0))).toBe(hex(0x0123456789abcdefn));
  });
});

describe("MMIO through translation and outside device windows", () => {
  it("an S-mode load through a page mapping a device page exits with the physical address", () => {
    const m = dev(`
      ${enter(PRV_S, "body")}
    body:
      li t0, 0x40000000
      lw a0, 0x10(t0)
    `, { ramSize: 8 << 20 });
    const pt = new PageTables(m, "sv39", RAM + 0x300000);
    pt.map(RAM, RAM, PTE.V | RWX | AD, 2);
    pt.map(0x40000000, DEV, PTE.V | PTE.R | PTE.W | AD);
    pokeSatp(m, pt.satp());
    expectMmio(m, DEV + 0x10, 4, false);
    m.core.setExitData(0, 7);
    m.runDone();
    expect(m.x("a0")).toBe(7n);
  });

  it("an address next to a device window (not mapped) raises access fault instead of exiting", () => {
    const m = dev(`
      li s0, ${DEV + 0x1000}
      lw a0, 0(s0)
    `);
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.LOAD_ACCESS);
    expect(t.mtval).toBe(BigInt(DEV + 0x1000));
  });
});

describe("SBI and HTIF exits", () => {
  it("with VMF_SBI_IN_HOST an S-mode ecall exits with a0-a7 and pc past the ecall", () => {
    const m = machine(`
      ${enter(PRV_S, "s")}
    s:
      li a7, 0x10
      li a6, 3
      li a0, 42
    site:
      ecall
    next:
      mv s2, a0
    `);
    m.core.setFlags(L.VMF_SBI_IN_HOST);
    const r = m.run();
    expect(r.reason).toBe(L.EXIT_SBI);
    expect(m.x("a7")).toBe(0x10n);
    expect(m.x("a6")).toBe(3n);
    expect(m.x("a0")).toBe(42n);
    expect(hex(m.pc())).toBe(hex(m.label("next")));
    m.setX("a0", 0n);
    m.runDone();
    expect(m.x("s2")).toBe(0n);
    expect(m.core.priv(0)).toBe(PRV_S);
  });

  it("with VMF_SBI_IN_HOST, ecalls from U and M still trap", () => {
    const m = machine(`
      ${enter(PRV_U, "u")}
    u:
      ecall
    `);
    m.core.setFlags(L.VMF_SBI_IN_HOST);
    expect(m.runTrap().mcause).toBe(CAUSE.ECALL_U);
    const m2 = machine(`ecall`);
    m2.core.setFlags(L.VMF_SBI_IN_HOST);
    expect(m2.runTrap().mcause).toBe(CAUSE.ECALL_M);
  });

  it("a nonzero store to HTIF tohost exits with the value", () => {
    const TOHOST = RAM + 0x1000;
    const m = machine(`
      li t0, ${TOHOST}
      sd zero, 0(t0)
      li t1, 0x101
      sd t1, 0(t0)
    next:
      nop
    `);
    m.core.setTohost(TOHOST, TOHOST + 8);
    const r = m.run();
    expect(r.reason).toBe(L.EXIT_TOHOST);
    expect(m.core.exitData(0)).toBe(0x101n);
    expect(hex(m.pc())).toBe(hex(m.label("next")));
  });
});
