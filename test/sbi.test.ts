// The built-in SBI answering a kernel's ecalls (the kernel here is a small S-mode program).
import { describe, test, expect } from "vitest";
import { assemble } from "../host/util/riscv-asm";
import { VirtMachine, KERNEL_ADDR } from "../host/machine/virt";
import { runToStop } from "./board";
import { loadCoreModule } from "../host/platform/node/core";
import { EXT, SPEC_VERSION, IMPL_ID, SBI_ERR_NOT_SUPPORTED, SBI_ERR_INVALID_PARAM, SBI_ERR_INVALID_ADDRESS, HART_STOPPED, HART_STARTED, HART_SUSPENDED } from "../host/sbi/sbi";

const RESULTS = KERNEL_ADDR + 0x10000; // the program stores what it saw here

function boot(source: string, harts = 1) {
  const prog = assemble(source, { origin: KERNEL_ADDR });
  let out = "";
  const m = new VirtMachine({
    module: loadCoreModule(), memory: 64 << 20, harts, bios: "builtin",
    kernel: { name: "sbi-test", bytes: prog.bytes },
    output: (b) => { out += Buffer.from(b).toString("latin1"); },
  });
  return { m, labels: prog.labels, output: () => out };
}

function results(m: VirtMachine, n: number): bigint[] {
  const v = m.core.phys(RESULTS, n * 8)!;
  const dv = new DataView(v.buffer, v.byteOffset, n * 8);
  return Array.from({ length: n }, (_, i) => BigInt.asIntN(64, dv.getBigUint64(i * 8, true)));
}

// sbi EID, FID, args...: leaves a0/a1 and stores both at RESULTS + 16*slot
function call(slot: number, eid: number, fid: number, args: (number | bigint | string)[] = []): string {
  const set = args.map((v, i) => (typeof v === "string" ? `mv a${i}, ${v}` : `li a${i}, ${v}`)).join("\n");
  return `${set}
  li a7, ${eid}
  li a6, ${fid}
  ecall
  li t6, ${RESULTS + 16 * slot}
  sd a0, 0(t6)
  sd a1, 8(t6)
`;
}

const SHUTDOWN = `
  li a0, 0
  li a1, 0
  li a7, ${EXT.SRST}
  li a6, 0
  ecall
1: j 1b`;

describe("built-in SBI", () => {
  test("the kernel starts in S-mode at its entry with a0 = hartid, a1 = DTB", () => {
    const { m } = boot(`1: j 1b`);
    expect(m.core.priv(0)).toBe(1);
    expect(m.core.pc(0)).toBe(BigInt(KERNEL_ADDR));
    expect(m.core.x(0, 10)).toBe(0n);
    expect(m.core.x(0, 11)).toBe(BigInt(m.layout.dtb));
  });

  test("BASE: spec version, implementation, probe", () => {
    const { m } = boot(
      call(0, EXT.BASE, 0) + call(1, EXT.BASE, 1) + call(2, EXT.BASE, 3, [EXT.TIME]) +
      call(3, EXT.BASE, 3, [EXT.DBCN]) + call(4, EXT.BASE, 3, [0x12345]) + call(5, 0x0a000000, 0) + SHUTDOWN);
    expect(runToStop(m, 10)).toEqual({ kind: "poweroff", code: 0 });
    const r = results(m, 12);
    expect([r[0], r[1]]).toEqual([0n, BigInt(SPEC_VERSION)]);
    expect([r[2], r[3]]).toEqual([0n, BigInt(IMPL_ID)]);
    expect([r[4], r[5]]).toEqual([0n, 1n]);
    expect([r[6], r[7]]).toEqual([0n, 1n]);
    expect([r[8], r[9]]).toEqual([0n, 0n]);
    expect(r[10]).toBe(BigInt(SBI_ERR_NOT_SUPPORTED)); // unknown extension
  });

  test("DBCN write and legacy putchar reach the console", () => {
    const { m, output } = boot(`
      la t0, msg
      ${call(0, EXT.DBCN, 0, [5, "t0", 0])}
      ${call(1, EXT.DBCN, 2, [0x21])}
      li a0, 0x0a
      li a7, 1
      ecall
      ${call(2, EXT.DBCN, 0, [4, 0x30000000, 0])}
      ${SHUTDOWN}
    msg: .byte 0x68, 0x65, 0x6c, 0x6c, 0x6f
    `);
    runToStop(m, 10);
    expect(output()).toBe("hello!\n");
    const r = results(m, 6);
    expect([r[0], r[1]]).toEqual([0n, 5n]);
    expect(r[4]).toBe(BigInt(SBI_ERR_INVALID_PARAM)); // not RAM
  });

  test("TIME set_timer programs stimecmp; IPI sets SSIP", () => {
    const { m } = boot(call(0, EXT.TIME, 0, [123456789]) + call(1, EXT.IPI, 0, [1, 0]) + `
      csrr t0, sip
      li t6, ${RESULTS + 64}
      sd t0, 0(t6)
    ` + SHUTDOWN);
    runToStop(m, 10);
    expect(m.core.csr(0, 0x14d)).toBe(123456789n);
    const r = results(m, 9);
    expect(r[2]).toBe(0n);
    expect(r[8] & 2n).toBe(2n);
  });

  test("HSM: a second hart is stopped until hart_start, gets a0 = hartid and a1 = opaque", () => {
    const { m } = boot(`
      ${call(0, EXT.HSM, 2, [1])}
      la t0, second
      ${call(1, EXT.HSM, 0, [1, "t0", 0x5eed])}
      ${call(2, EXT.HSM, 0, [1, "t0", 0])}
      li t1, ${RESULTS + 0x100}
    wait:
      ld t2, 0(t1)
      beqz t2, wait
      ${call(3, EXT.HSM, 2, [1])}
      ${call(4, EXT.HSM, 2, [7])}
      ${SHUTDOWN}
    second:
      li t1, ${RESULTS + 0x100}
      sd a1, 8(t1)
      sd a0, 16(t1)
      li t2, 1
      sd t2, 0(t1)
      li a7, ${EXT.HSM}
      li a6, 1
      ecall
    `, 2);
    expect(runToStop(m, 10)).toEqual({ kind: "poweroff", code: 0 });
    const r = results(m, 10);
    expect([r[0], r[1]]).toEqual([0n, BigInt(HART_STOPPED)]);
    expect(r[2]).toBe(0n); // started
    expect(r[4]).toBe(-6n); // already available
    expect([r[6], r[7]]).toEqual([0n, BigInt(HART_STOPPED)]); // it stopped itself
    expect(r[8]).toBe(BigInt(SBI_ERR_INVALID_PARAM));
    const second = results(m, 0x100 / 8 + 3).slice(0x100 / 8);
    expect(second).toEqual([1n, 0x5eedn, 1n]);
    expect(m.sbi!.state[0]).toBe(HART_STARTED);
  });

  test("a guest printing without pause is bounded: DBCN moves at most 4 KiB a call, output flushes in chunks", () => {
    const prog = assemble(`
      li s0, 1000
      li s1, ${KERNEL_ADDR}
    loop:
      li a0, 0x100000          # asks for 1 MiB per call
      mv a1, s1
      li a2, 0
      li a7, ${EXT.DBCN}
      li a6, 0
      ecall
      li t6, ${RESULTS}
      sd a1, 0(t6)
      addi s0, s0, -1
      bnez s0, loop
      li a7, ${EXT.BASE + 0x7000000}
      ecall                    # an unknown extension
      li a7, ${EXT.BASE + 0x7000001}
      ecall                    # another one
    ` + SHUTDOWN, { origin: KERNEL_ADDR });
    const chunks: number[] = [];
    const m = new VirtMachine({
      module: loadCoreModule(), memory: 64 << 20, bios: "builtin",
      kernel: { name: "flood", bytes: prog.bytes },
      output: (b) => chunks.push(b.length),
    });
    expect(runToStop(m, 30)).toEqual({ kind: "poweroff", code: 0 });
    expect(results(m, 1)[0]).toBe(4096n);
    expect(chunks.reduce((a, b) => a + b, 0)).toBe(1000 * 4096);
    expect(Math.max(...chunks)).toBeLessThanOrEqual(64 * 1024 + 4096);
    expect(m.sbi!.calls.get("unknown")).toBe(2);
    expect(m.sbi!.calls.size).toBeLessThanOrEqual(4);
  });

  test("SRST with a failure reason ends the VM with a failure", () => {
    const { m } = boot(call(0, EXT.SRST, 0, [0, 1]));
    expect(runToStop(m, 10)).toEqual({ kind: "fail", code: 1 });
  });

  test("legacy shutdown", () => {
    const { m } = boot(`li a7, 8\necall\n1: j 1b`);
    expect(runToStop(m, 10)).toEqual({ kind: "poweroff", code: 0 });
  });
});

describe("idle harts", () => {
  test("a started hart waiting in WFI is not run again until something wakes it", () => {
    const { m } = boot(`
      csrw sie, zero
      wfi
      ${SHUTDOWN}`);
    expect(m.step().state).toBe("running"); // runs up to the wfi
    const idle = m.step();
    expect(idle.state).toBe("idle"); // and then costs nothing
    expect(m.exits.halt).toBe(1);
    // An IPI (SSIP) pending and enabled wakes it.
    m.core.setCsr(0, 0x104, 1n << 1n); // sie.SSIE
    m.core.setMip(0, 1, true);
    expect(m.step().state).not.toBe("idle");
  });
});

describe("exit statistics", () => {
  test("count SBI calls by extension and MMIO exits by device, and time them on request", () => {
    const prog = assemble(
      call(0, EXT.BASE, 0) + call(1, EXT.BASE, 0) + call(2, EXT.TIME, 0, [0]) +
      `li t0, 0x10000007
      sb zero, 0(t0)
      lbu t1, 0(t0)` + SHUTDOWN, { origin: KERNEL_ADDR });
    const m = new VirtMachine({
      module: loadCoreModule(), memory: 64 << 20, bios: "builtin", timeExits: true,
      kernel: { name: "stats-test", bytes: prog.bytes }, output: () => {},
    });
    expect(runToStop(m, 10)).toEqual({ kind: "poweroff", code: 0 });
    const s = m.stats();
    expect(s.sbi).toEqual({ BASE: 2, TIME: 1, SRST: 1 });
    expect(s.exits.sbi).toBe(4);
    expect(s.mmio).toEqual({ uart0: 2 }); // the store and the load of the scratch register
    expect(s.exits.mmio).toBe(2);
    expect(s.instructions).toBeGreaterThan(20);
    expect(s.exitSeconds!.sbi).toBeGreaterThan(0);
    expect(s.exitSeconds!.mmio).toBeGreaterThan(0);
  });
});

describe("STA: steal-time accounting", () => {
  const REC = KERNEL_ADDR + 0x20000;
  test("set_shmem checks flags, alignment and address; reportSteal fills the record with the sequence protocol", () => {
    const { m } = boot(
      call(0, EXT.BASE, 3, [EXT.STA]) +
      call(1, EXT.STA, 0, [REC, 0, 1]) + // flags must be 0
      call(2, EXT.STA, 0, [REC + 8, 0, 0]) + // 64-byte alignment
      call(3, EXT.STA, 0, [0x1000, 0, 0]) + // not RAM
      call(4, EXT.STA, 0, [REC, 1, 0]) + // above 2^64 on RV64
      call(5, EXT.STA, 0, [REC, 0, 0]) +
      SHUTDOWN);
    m.core.phys(REC, 64)!.fill(0xee);
    runToStop(m, 10);
    expect(results(m, 12)).toEqual([0n, 1n, BigInt(SBI_ERR_INVALID_PARAM), 0n, BigInt(SBI_ERR_INVALID_PARAM), 0n,
      BigInt(SBI_ERR_INVALID_ADDRESS), 0n, BigInt(SBI_ERR_INVALID_ADDRESS), 0n, 0n, 0n]);
    const rec = () => new DataView(m.core.physRead(REC, 64)!.slice().buffer);
    expect(new Uint8Array(rec().buffer)).toEqual(new Uint8Array(64)); // zeroed when registered
    m.sbi!.reportSteal(1_234_567n);
    expect([rec().getUint32(0, true), rec().getBigUint64(8, true), rec().getUint8(16)]).toEqual([2, 1_234_567n, 0]);
    m.sbi!.reportSteal(2_000_000n);
    expect([rec().getUint32(0, true), rec().getBigUint64(8, true)]).toEqual([4, 2_000_000n]);
  });

  test("all-ones address disables the record", () => {
    const all = -1n;
    const { m } = boot(call(0, EXT.STA, 0, [REC, 0, 0]) + call(1, EXT.STA, 0, [all, all, 0]) + SHUTDOWN);
    runToStop(m, 10);
    expect(results(m, 4)).toEqual([0n, 0n, 0n, 0n]);
    m.sbi!.reportSteal(99n);
    expect(new DataView(m.core.physRead(REC, 64)!.slice().buffer).getBigUint64(8, true)).toBe(0n);
  });

  test("its state (HSM states, a pending resume, STA records, call counts) survives JSON into another machine, checked", () => {
    const { m, labels } = boot(`
      ${call(0, EXT.STA, 0, [RESULTS + 0x200, 0, 0])}
      la t0, second
      ${call(1, EXT.HSM, 0, [1, "t0", 0])}
    1: j 1b
    second:
      li a0, 0x80000000
      la a1, resumed
      li a2, 0x123456789abcdef0
      li a7, ${EXT.HSM}
      li a6, 3
      ecall
    resumed:
      j resumed
    `, 2);
    for (let i = 0; i < 100 && m.sbi!.state[1] !== HART_SUSPENDED; i++) m.step(10_000);
    const saved = JSON.parse(JSON.stringify(m.sbi!.save()));
    expect(saved.harts[1]).toEqual({ hsm: HART_SUSPENDED, resume: { addr: String(labels.resumed), opaque: String(0x123456789abcdef0n) }, sta: null });
    expect(saved.harts[0].sta).toBe(RESULTS + 0x200);
    const other = boot(`1: j 1b`, 2).m;
    other.sbi!.restore(saved);
    expect(other.sbi!.save()).toStrictEqual(saved);
    const hart = (h: number, patch: object) => ({ ...saved, harts: saved.harts.map((x: object, i: number) => (i === h ? { ...x, ...patch } : x)) });
    const before = other.sbi!.save();
    expect(() => other.sbi!.restore({ ...saved, harts: [saved.harts[0]] })).toThrow(/^sbi: state.harts must be an array of 2..2 items/);
    expect(() => other.sbi!.restore(hart(1, { resume: { addr: "4096", opaque: "0" } }))).toThrow(/^sbi: state.harts\[1\].resume.addr must be an address in RAM/);
    expect(() => other.sbi!.restore(hart(1, { resume: { addr: Number(labels.resumed), opaque: "0" } }))).toThrow(/^sbi: state.harts\[1\].resume.addr must be a u64/);
    expect(() => other.sbi!.restore(hart(0, { sta: RESULTS + 8 }))).toThrow(/^sbi: state.harts\[0\].sta must be a 64-byte aligned record in RAM/);
    expect(() => other.sbi!.restore(hart(0, { hsm: 2 }))).toThrow(/^sbi: state.harts\[0\].hsm must be an HSM state/);
    expect(other.sbi!.save()).toStrictEqual(before);
  });
});
