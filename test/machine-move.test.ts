// A VM moving between threads: one machine saves everything outside the VM memory, another
// (here in the same thread) resumes from that memory and state, and the guest cannot tell.
import { describe, test, expect } from "vitest";
import { assemble } from "../host/util/riscv-asm";
import { VirtMachine, KERNEL_ADDR, type VirtConfig } from "../host/machine/virt";
import { runToStop } from "./board";
import { loadCoreModule } from "../host/platform/node/core";
import { EXT } from "../host/sbi/sbi";
import { MemoryDisk } from "../host/platform/memory/disk";
import type { NetBackend } from "../host/devices/backends";

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
    const state = JSON.parse(JSON.stringify(a.save())); // plain data: it could cross any channel
    expect(Object.keys(state.devices)).toContain("uart0");

    const after = { text: "" };
    const b = new VirtMachine(config(after, { resume: { memory: a.core.memory, state } }));
    expect(b.stats().instructions).toBe(instructions); // the counters live on
    expect(b.stats().sbi).toEqual(a.stats().sbi);
    b.sbi!.reportSteal(42n); // the STA record registered on the first machine is known here
    expect(new DataView(b.core.physRead(KERNEL_ADDR + 0x10000, 64)!.slice().buffer).getBigUint64(8, true)).toBe(42n);
    expect(runToStop(b, 20)).toEqual({ kind: "poweroff", code: 0 });
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

describe("a machine's saved state", () => {
  const nic = (): NetBackend => ({ send() {}, attach() {}, close() {} });
  const devices = (): Partial<VirtConfig> => ({
    drives: [{ backend: new MemoryDisk(1 << 20) }], nets: [{ backend: nic() }], virtioConsole: true, timeExits: true,
    limits: { diskBytesPerSec: 1 << 20, diskOpsPerSec: 100, netBytesPerSec: 1 << 20 },
  });

  test("is plain JSON data, and a machine resumed from it saves the same", () => {
    const out = { text: "" };
    const a = new VirtMachine(config(out, devices()));
    while (out.text.length < 2) a.step(50_000);
    const state = a.save();
    expect(JSON.parse(JSON.stringify(state))).toStrictEqual(state);
    expect(Object.keys(state.buckets).sort()).toEqual(["disk-bytes", "disk-ops", "net-rx-bytes", "net-tx-bytes"]);
    const b = new VirtMachine(config(out, { ...devices(), resume: { memory: a.core.memory, state: JSON.parse(JSON.stringify(state)) } }));
    expect(b.save()).toStrictEqual(state);
    expect(b.dtb).toEqual(a.dtb);
    expect(b.layout).toEqual(a.layout);
    expect(b.work).toBe(a.work);
  });

  test("is refused when malformed, with an error naming what and where", () => {
    const out = { text: "" };
    const a = new VirtMachine(config(out, devices()));
    a.step(10_000);
    const good = JSON.parse(JSON.stringify(a.save()));
    const resume = (state: unknown) => () => new VirtMachine(config(out, { ...devices(), resume: { memory: a.core.memory, state: state as never } }));
    expect(resume({ ...good, kind: "vm" })).toThrow(/^machine: not a state of kind virt-machine/);
    expect(resume({ ...good, version: 2 })).toThrow(/^machine: virt-machine state version 2 is not 1/);
    for (const field of Object.keys(good).filter((k) => k !== "kind" && k !== "version")) {
      const { [field]: _, ...missing } = good;
      expect(resume(missing), field).toThrow(new RegExp(`^machine: state\\.${field}\\b`));
    }
    expect(resume({ ...good, dtb: "%%%" })).toThrow(/^machine: state.dtb must be 1..1048576 bytes in base64/);
    expect(resume({ ...good, layout: { ...good.layout, tohost: 12 } })).toThrow(/^machine: state.layout.tohost must be an integer in/);
    expect(resume({ ...good, stopReason: { kind: "crash", code: 1 } })).toThrow(/^machine: state.stopReason.kind must be poweroff, fail, htif or error/);
    expect(resume({ ...good, mmio: { ...good.mmio, nosuch: 1 } })).toThrow(/^machine: state.mmio.nosuch must be the access count of one of this machine's devices/);
    expect(resume({ ...good, devices: { ...good.devices, uart0: { ...good.devices.uart0, ier: 0x10 } } })).toThrow(/^uart0: state.ier must be/);
    const hart = { ...good.sbi.harts[0], hsm: 3 };
    expect(resume({ ...good, sbi: { ...good.sbi, harts: [hart] } })).toThrow(/^sbi: state.harts\[0\].hsm must be an HSM state/);
    expect(resume({ ...good, sbi: { ...good.sbi, calls: { nosuch: 1 } } })).toThrow(/^sbi: state.calls.nosuch must be the count of a known extension/);
    const { "disk-ops": _ops, ...fewer } = good.buckets;
    expect(resume({ ...good, buckets: fewer })).toThrow(/saved machine has bandwidth buckets \[disk-bytes, net-rx-bytes, net-tx-bytes\], this one \[disk-bytes, disk-ops, net-rx-bytes, net-tx-bytes\]/);
    expect(resume({ ...good, buckets: { ...good.buckets, "disk-ops": { ...good.buckets["disk-ops"], tokens: "x" } } })).toThrow(/^bandwidth bucket disk-ops: state.tokens must be a number/);
  });
});
