// Physical memory protection: NAPOT, TOR, NA4, priority, locking.
import { describe, expect, it } from "vitest";
import { machine, enter, pokeSatp, PageTables, PTE, RWX, AD, RAM, CAUSE, PRV_S, PRV_U } from "./harness";

const R = 1, W = 2, X = 4, TOR = 1 << 3, NA4 = 2 << 3, NAPOT = 3 << 3, LOCK = 0x80;
const napot = (base: number, size: number) => (BigInt(base) >> 2n) | BigInt(size / 8 - 1);
const cfg = (...bytes: number[]) => bytes.reduce((v, b, i) => v | (BigInt(b) << BigInt(8 * i)), 0n);

/** Program that configures PMP from M-mode and then runs `body` in `mode`. */
function pmpProgram(entries: { addr: bigint; cfg: number }[], mode: 0 | 1, body: string): string {
  let s = "";
  entries.forEach((e, i) => (s += `li t0, ${e.addr}\ncsrw pmpaddr${i}, t0\n`));
  s += `li t0, ${cfg(...entries.map((e) => e.cfg))}\ncsrw pmpcfg0, t0\n`;
  return s + enter(mode, "body") + "\nbody:\n" + body;
}

const CODE = { addr: napot(RAM, 0x10000), cfg: NAPOT | R | W | X }; // code + footer, 64 KiB

describe("PMP", () => {
  it("NAPOT: S-mode accesses inside are allowed, a load outside -> load access fault (mtval = address)", () => {
    const m = machine(pmpProgram([CODE], PRV_S, `
      li s0, ${RAM + 0x8000}
      ld a0, 0(s0)
      sd a0, 8(s0)
      li s1, ${RAM + 0x20000}
    site:
      lw a1, 0(s1)
    `));
    m.w64(RAM + 0x8000, 0x1234n);
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.LOAD_ACCESS);
    expect(t.mtval).toBe(BigInt(RAM + 0x20000));
    expect(t.mepc).toBe(BigInt(m.label("site")));
    expect(m.x("a0")).toBe(0x1234n);
    expect(m.r64(RAM + 0x8008)).toBe(0x1234n);
  });

  it("NAPOT: a store outside -> store access fault; memory unchanged", () => {
    const m = machine(pmpProgram([CODE], PRV_S, `
      li s1, ${RAM + 0x20000}
      li a0, -1
      sd a0, 0(s1)
    `));
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.STORE_ACCESS);
    expect(t.mtval).toBe(BigInt(RAM + 0x20000));
    expect(m.r64(RAM + 0x20000)).toBe(0n);
  });

  it("NAPOT: a fetch outside -> instruction access fault", () => {
    const m = machine(pmpProgram([CODE], PRV_U, `
      li s1, ${RAM + 0x20000}
      jr s1
    `));
    m.w32(RAM + 0x20000, 0x00000013); // a nop, so only PMP can refuse it
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.FETCH_ACCESS);
    expect(t.mepc).toBe(BigInt(RAM + 0x20000));
  });

  it("permissions: an R-only region refuses stores and fetches from S", () => {
    const data = { addr: napot(RAM + 0x30000, 0x1000), cfg: NAPOT | R };
    const m = machine(pmpProgram([CODE, data], PRV_S, `
      li s1, ${RAM + 0x30000}
      ld a0, 0(s1)
      sd a0, 0(s1)
    `));
    m.w64(RAM + 0x30000, 77n);
    const t = m.runTrap();
    expect(m.x("a0")).toBe(77n);
    expect(t.mcause).toBe(CAUSE.STORE_ACCESS);
    const m2 = machine(pmpProgram([CODE, data], PRV_S, `
      li s1, ${RAM + 0x30000}
      jr s1
    `));
    m2.w32(RAM + 0x30000, 0x00000013);
    expect(m2.runTrap().mcause).toBe(CAUSE.FETCH_ACCESS);
  });

  it("TOR: [pmpaddr(i-1), pmpaddr(i)) ; the top address is excluded", () => {
    const entries = [
      { addr: BigInt(RAM) >> 2n, cfg: 0 },                                 // OFF, only the base
      { addr: BigInt(RAM + 0x31000) >> 2n, cfg: TOR | R | W | X },        // [RAM, RAM+0x31000)
    ];
    const m = machine(pmpProgram(entries, PRV_S, `
      li s1, ${RAM + 0x30ff8}
      ld a0, 0(s1)               # last doubleword inside
      li s2, ${RAM + 0x31000}
      ld a1, 0(s2)               # first byte outside
    `));
    m.w64(RAM + 0x30ff8, 5n);
    const t = m.runTrap();
    expect(m.x("a0")).toBe(5n);
    expect(t.mcause).toBe(CAUSE.LOAD_ACCESS);
    expect(t.mtval).toBe(BigInt(RAM + 0x31000));
  });

  it("TOR in entry 0 starts at address 0", () => {
    const entries = [{ addr: BigInt(RAM + 0x31000) >> 2n, cfg: TOR | R | W | X }];
    const m = machine(pmpProgram(entries, PRV_S, `
      li s1, ${RAM + 0x30000}
      ld a0, 0(s1)
      li s2, ${RAM + 0x31008}
      ld a1, 0(s2)
    `));
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.LOAD_ACCESS);
    expect(t.mtval).toBe(BigInt(RAM + 0x31008));
  });

  it("NA4: exactly four bytes; a wider access that does not fit is refused", () => {
    const entries = [{ addr: BigInt(RAM + 0x30000) >> 2n, cfg: NA4 | R }, CODE];
    const m = machine(pmpProgram(entries, PRV_S, `
      li s1, ${RAM + 0x30000}
      lw a0, 0(s1)
      lbu a1, 3(s1)
    site:
      ld a2, 0(s1)                # 8 bytes: only half inside the NA4 region
    `));
    m.w64(RAM + 0x30000, 0x1122334455667788n);
    const t = m.runTrap();
    expect(m.x("a0")).toBe(0x55667788n);
    expect(m.x("a1")).toBe(0x55n);
    expect(t.mcause).toBe(CAUSE.LOAD_ACCESS);
    expect(t.mepc).toBe(BigInt(m.label("site")));
  });

  it("NA4: the next word is outside", () => {
    const entries = [{ addr: BigInt(RAM + 0x30000) >> 2n, cfg: NA4 | R | W }, CODE];
    const m = machine(pmpProgram(entries, PRV_S, `
      li s1, ${RAM + 0x30000}
      sw zero, 0(s1)
      sw zero, 4(s1)
    `));
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.STORE_ACCESS);
    expect(t.mtval).toBe(BigInt(RAM + 0x30004));
  });

  it("the lowest-numbered matching entry decides", () => {
    const deny = { addr: napot(RAM + 0x30000, 0x1000), cfg: NAPOT };          // no permissions
    const all = { addr: napot(RAM, 0x100000), cfg: NAPOT | R | W | X };     // all of RAM
    const m = machine(pmpProgram([deny, all], PRV_S, `
      li s1, ${RAM + 0x31000}
      ld a0, 0(s1)               # only entry 1 matches: allowed
      li s2, ${RAM + 0x30800}
      ld a1, 0(s2)               # entry 0 matches first: refused
    `));
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.LOAD_ACCESS);
    expect(t.mtval).toBe(BigInt(RAM + 0x30800));
  });

  it("an unlocked entry does not restrict M-mode", () => {
    const m = machine(`
      li t0, ${napot(RAM + 0x30000, 0x1000)}
      csrw pmpaddr0, t0
      li t0, ${NAPOT}             # no permissions, not locked
      csrw pmpcfg0, t0
      li s1, ${RAM + 0x30000}
      li a0, 9
      sd a0, 0(s1)
      ld a1, 0(s1)
    `);
    m.runDone();
    expect(m.x("a1")).toBe(9n);
  });

  it("a locked entry applies to M-mode; its cfg and addr can no longer be written", () => {
    const m = machine(`
      li t0, ${napot(RAM + 0x30000, 0x1000)}
      csrw pmpaddr0, t0
      li t0, ${NAPOT | R | LOCK}
      csrw pmpcfg0, t0
      csrw pmpcfg0, zero          # ignored for the locked byte
      csrw pmpaddr0, zero         # ignored
      csrr a2, pmpcfg0
      csrr a3, pmpaddr0
      li s1, ${RAM + 0x30000}
      ld a0, 0(s1)                # R: allowed
      li s2, ${RAM + 0x40000}
      sd a0, 0(s2)                # no entry matches: M is allowed
    site:
      sd a0, 0(s1)                # W not granted, and the lock applies to M
    `);
    m.w64(RAM + 0x30000, 42n);
    const t = m.runTrap();
    expect(m.x("a2") & 0xffn).toBe(BigInt(NAPOT | R | LOCK));
    expect(m.x("a3")).toBe(napot(RAM + 0x30000, 0x1000));
    expect(m.x("a0")).toBe(42n);
    expect(m.r64(RAM + 0x40000)).toBe(42n);
    expect(t.mcause).toBe(CAUSE.STORE_ACCESS);
    expect(t.mepc).toBe(BigInt(m.label("site")));
    expect(m.r64(RAM + 0x30000)).toBe(42n);
  });

  it("a locked TOR entry also locks the pmpaddr below it", () => {
    const m = machine(`
      li t0, ${BigInt(RAM) >> 2n}
      csrw pmpaddr0, t0
      li t0, ${BigInt(RAM + 0x1000) >> 2n}
      csrw pmpaddr1, t0
      li t0, ${cfg(0, TOR | R | W | X | LOCK)}
      csrw pmpcfg0, t0
      csrw pmpaddr0, zero
      csrr a0, pmpaddr0
    `);
    m.runDone();
    expect(m.x("a0")).toBe(BigInt(RAM) >> 2n);
  });

  it("U-mode is checked the same way as S-mode", () => {
    const m = machine(pmpProgram([CODE], PRV_U, `
      li s1, ${RAM + 0x20000}
      lb a1, 0(s1)
    `));
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.LOAD_ACCESS);
    expect(t.mtval).toBe(BigInt(RAM + 0x20000));
  });

  it("page-table walks are checked by PMP (as S-mode accesses): a walk outside every entry faults", () => {
    // Only code/data at RAM..RAM+64K is covered; the page tables live at RAM+0x300000, so the
    // very first S-mode fetch (through the identity gigapage) cannot read its PTE.
    const m = machine(pmpProgram([CODE], PRV_S, `nop`), { ramSize: 8 << 20 });
    const pt = new PageTables(m, "sv39", RAM + 0x300000);
    pt.map(RAM, RAM, PTE.V | RWX | AD, 2);
    pokeSatp(m, pt.satp());
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.FETCH_ACCESS);
    expect(t.mepc).toBe(BigInt(m.label("body")));
  });
});
