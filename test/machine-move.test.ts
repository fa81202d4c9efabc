// A VM moving between threads: one machine saves everything outside the VM memory, another
// (here in the same thread) resumes from that memory and state, and the guest cannot tell.
import { describe, test, expect } from "vitest";
import { assemble } from "./encoder";
import { VirtMachine, KERNEL_ADDR, type VirtConfig } from "../host/machine/virt";
import { loadCoreModule } from "../host/platform/node/core";
import { EXT } from "../host/sbi/sbi";
import { MemoryDisk } from "../host/virtio/memory-disk";

// An S-mode kernel on the built-in SBI: prints 0..9 through the UART with a busy wait between
// digits, registers an STA record, then shuts down through SRST.
const UART = 0x10000000;
const KERNEL = assemble(`
    li a0, ${KERNEL_ADDR + 0x10000}
    li a1, 0
    li a2, 0
    li a7, ${EXT.STA}
    li a6, 0
    ecall
    li s0, ${UART}
    li s1, 48
    li s2, 58
  next:
    sb s1, 0(s0)
    li t0, 200000
  wait:
    addi t0, t0, -1
    bnez t0, wait
    addi s1, s1, 1
    bne s1, s2, next
    li a0, 0
    li a1, 0
    li a7, ${EXT.SRST}
    li a6, 0
    ecall
  1: j 1b
`, { origin: KERNEL_ADDR }).bytes;

function config(out: { text: string }, extra: Partial<VirtConfig> = {}): VirtConfig {
  return {
    module: loadCoreModule(), memory: 16 << 20, bios: "builtin", kernel: { name: "count", bytes: KERNEL },
    output: (b) => { out.text += Buffer.from(b).toString("latin1"); }, ...extra,
  };
}

describe("moving a VM: save, resume elsewhere", () => {
  test("the guest goes on where it was: same output, same counters, same SBI state", () => {
    const before = { text: "" };
    const a = new VirtMachine(config(before));
    while (before.text.length < 3) expect(a.step(50_000).state).toBe("running");
    const instructions = a.stats().instructions;
    const state = a.save();
    expect(Object.keys(state.devices)).toContain("uart0");

    const after = { text: "" };
    const b = new VirtMachine(config(after, { resume: { memory: a.core.memory, state } }));
    expect(b.stats().instructions).toBe(instructions); // the counters live on
    expect(b.stats().sbi).toEqual(a.stats().sbi);
    b.sbi!.reportSteal(42n); // the STA record registered on the first machine is known here
    expect(new DataView(b.core.physRead(KERNEL_ADDR + 0x10000, 64)!.slice().buffer).getBigUint64(8, true)).toBe(42n);
    expect(b.runToStop(20)).toEqual({ kind: "poweroff", code: 0 });
    expect(before.text + after.text).toBe("0123456789");
  });

  test("refuses a state from a different machine, saying what differs", () => {
    const out = { text: "" };
    const a = new VirtMachine(config(out));
    a.step(10_000);
    const state = a.save();
    const disk = new MemoryDisk(1 << 20);
    expect(() => new VirtMachine(config(out, { drives: [{ backend: disk }], resume: { memory: a.core.memory, state } })))
      .toThrow(/saved machine has devices \[.*\], this one \[.*virtio0-blk.*\]: not the same machine/);
    const noSbi = { ...state, sbi: null };
    expect(() => new VirtMachine(config(out, { resume: { memory: a.core.memory, state: noSbi } }))).toThrow(/disagree about the built-in SBI/);
  });
});
