/**
 * What a device needs to write its own devicetree node: the node (host/machine/fdt.ts's FdtNode
 * is one), where the board placed it, and the phandles it refers to.
 */

/** A devicetree node being written. */
export interface DtNode {
  addNode(name: string): DtNode;
  setU32(name: string, ...cells: number[]): DtNode;
  setString(name: string, value: string): DtNode;
  setStrings(name: string, values: string[]): DtNode;
  setBytes(name: string, value: Uint8Array): DtNode;
  setEmpty(name: string): DtNode;
}

/** Where the board put a device, and the phandles its node may name. */
export interface DtPlacement {
  /** Guest-physical base of its window. */
  readonly base: number;
  /** The PLIC sources of its interrupt lines. */
  readonly irqs: readonly number[];
  /** Its own phandle, if its type asked for one (else 0). */
  readonly phandle: number;
  /** The interrupt controller's phandle: the interrupt-parent of every line. */
  readonly interruptParent: number;
  /** Per hart, its cpu interrupt controller's phandle (the PLIC's and CLINT's contexts). */
  readonly hartIntc: readonly number[];
}

/** A reg entry with 2 address and 2 size cells, as /soc has them. */
export function regCells(base: number, size: number): number[] {
  const hi = (v: number) => Math.floor(v / 0x100000000);
  const lo = (v: number) => v % 0x100000000;
  return [hi(base), lo(base), hi(size), lo(size)];
}

/** reg: the device's window. */
export function setReg(node: DtNode, at: DtPlacement, size: number): DtNode {
  return node.setU32("reg", ...regCells(at.base, size));
}

/** interrupt-parent and interrupts: the device's lines into the board's interrupt controller. */
export function setInterrupts(node: DtNode, at: DtPlacement): DtNode {
  return node.setU32("interrupt-parent", at.interruptParent).setU32("interrupts", ...at.irqs);
}
