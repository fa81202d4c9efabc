// Guest actions that once reached host state: each must stay inside the guest.
import { describe, it, expect } from "vitest";
import { machine, CAUSE } from "./harness";
import { Core } from "../../host/core/core";
import { loadCoreModule } from "../../host/platform/node/core";
import { EXIT_MMIO } from "../../host/core/layout";
import { enc } from "../../host/util/riscv-asm";

describe("isolation of host state from guest actions", () => {
  it("a jump to a low address after mret faults instead of fetching the core's own memory", () => {
    // pc = 4 after an xRET used to pass the fetch test against the "no page" sentinel and read
    // the core's static data; it is unmapped guest-physical space: instruction access fault.
    const m = machine(`
      li t0, 4
      csrw mepc, t0
      li t0, 0x1800
      csrs mstatus, t0        # MPP = M
      mret
    `);
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.FETCH_ACCESS);
    expect(t.mtval).toBe(4n);
    expect(t.mepc).toBe(4n);
  });

  it("hart 7's registers do not touch the device map of an 8-hart VM", () => {
    const core = new Core({ module: loadCoreModule(), ramSize: 1 << 20, harts: 8 });
    core.mapDevice(0x100000, 0x1000);
    for (let i = 1; i < 32; i++) core.setX(7, i, 0n); // hart 7 clears its registers
    core.exports.flushTlb(7);
    // hart 0: li t0, 0x100000; sw t0, 0(t0)
    const prog = [enc.lui(5, 0x100), enc.sw(5, 0, 5)];
    const dv = new DataView(core.ram.buffer, core.ram.byteOffset);
    prog.forEach((w, i) => dv.setUint32(i * 4, w, true));
    core.setPc(0, 0x80000000n);
    expect(core.run(0, 1000)).toBe(EXIT_MMIO);
    expect(core.exitAddr(0)).toBe(0x100000);
  });
});
