/**
 * The CLINT (msip, mtimecmp, mtime): the core emulates it (assembly/mmu.ts) at the window its
 * layout fixes, so timer and software interrupts never leave it. Only its devicetree node is
 * the board's, and this is it.
 */
import { CLINT_SIZE } from "../core/layout";
import { IRQ, type DeviceType } from "./device";
import { setReg } from "./devicetree";

export const CLINT: DeviceType = {
  kind: "clint",
  dtName: "clint",
  size: CLINT_SIZE,
  irqs: 0,
  describe(node, at) {
    // Per hart its software (MSI) and timer (MTI) interrupts.
    const contexts = at.hartIntc.flatMap((intc) => [intc, IRQ.MSI, intc, IRQ.MTI]);
    setReg(node, at, CLINT_SIZE).setStrings("compatible", ["sifive,clint0", "riscv,clint0"]).setU32("interrupts-extended", ...contexts);
  },
};
