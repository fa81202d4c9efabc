import { DeviceTree } from "./fdt";
import { BOARD, RAM_BASE, inTableOrder, type Attached } from "./memory-map";
import { regCells, type DtPlacement } from "../devices/devicetree";

/** What the generated devicetree describes. */
export interface VirtDtConfig {
  /** Number of harts (1..8; the PLIC and CLINT get one M and one S context each). */
  harts: number;
  /** RAM size in bytes, mapped at RAM_BASE. */
  ramSize: number;
  /** riscv,isa of every cpu node, e.g. "rv64imafdc_zicntr_zicsr_zifencei_zihpm_zba_zbb_zbs_sstc". */
  isa: string;
  /** mmu-type, e.g. "riscv,sv48". */
  mmuType: string;
  /** mtime frequency in Hz (10 MHz on QEMU virt). */
  timebaseHz: number;
  /** Kernel command line for /chosen/bootargs. */
  bootargs?: string;
  /** Initrd location in guest-physical memory ([start, end)). */
  initrd?: { start: number; end: number };
  /** The devices attached to the board's slots (memory-map.ts), each of which writes its node. */
  devices: readonly Attached[];
  /** Optional /chosen/rng-seed bytes (early entropy for Linux). */
  rngSeed?: Uint8Array;
}

/** Most harts the board supports (the core's MAX_HARTS). */
export const VIRT_MAX_HARTS = 8;

function checkConfig(cfg: VirtDtConfig): void {
  const bad = (msg: string): never => {
    throw new Error(`virt-dt: ${msg}`);
  };
  if (!Number.isInteger(cfg.harts) || cfg.harts < 1 || cfg.harts > VIRT_MAX_HARTS) {
    bad(`harts must be 1..${VIRT_MAX_HARTS}, got ${cfg.harts}`);
  }
  if (!Number.isSafeInteger(cfg.ramSize) || cfg.ramSize <= 0 || cfg.ramSize % 4096 !== 0) {
    bad(`ramSize must be a positive multiple of 4096, got ${cfg.ramSize}`);
  }
  if (!/^rv64[a-z0-9_]*$/.test(cfg.isa)) bad(`isa ${JSON.stringify(cfg.isa)} is not an rv64 ISA string`);
  if (cfg.mmuType === "") bad("mmuType is empty");
  if (!Number.isInteger(cfg.timebaseHz) || cfg.timebaseHz <= 0 || cfg.timebaseHz > 0xffffffff) {
    bad(`timebaseHz must be a positive u32, got ${cfg.timebaseHz}`);
  }
  if (cfg.initrd) {
    const { start, end } = cfg.initrd;
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
      bad(`initrd range [${start}, ${end}) is invalid`);
    }
  }
}

/** The devicetree node name of a device: `<name>@<base in hex>`. */
function nodeName(d: Attached): string {
  return `${d.slot.type.dtName}@${d.base.toString(16)}`;
}

/**
 * The board's devicetree as a tree (for callers that want to adjust it before
 * serializing). Node names, order and contents follow QEMU's virt board, minus PCI, flash,
 * fw-cfg and the platform bus, which this machine does not have.
 */
export function buildVirtTree(cfg: VirtDtConfig): DeviceTree {
  checkConfig(cfg);
  const dt = new DeviceTree();
  const root = dt.root;
  const devices = inTableOrder(cfg.devices);

  // Phandles are fixed numbers handed out in creation order, so output is reproducible: the
  // harts', the interrupt controller's, then those of devices other nodes name.
  let nextPhandle = 1;
  const cpuPh: number[] = [];
  const intcPh: number[] = [];
  for (let h = 0; h < cfg.harts; h++) {
    cpuPh.push(nextPhandle++);
    intcPh.push(nextPhandle++);
  }
  const phandles = new Map<Attached, number>();
  for (const kind of ["interrupt-controller", "referenced"] as const) {
    for (const d of devices) if (d.slot.type.phandle === kind) phandles.set(d, nextPhandle++);
  }
  const controller = devices.find((d) => d.slot.type.phandle === "interrupt-controller");
  const interruptParent = controller ? phandles.get(controller)! : 0;
  const placement = (d: Attached): DtPlacement => ({ base: d.base, irqs: d.irqs, phandle: phandles.get(d) ?? 0, interruptParent, hartIntc: intcPh });

  root
    .setU32("#address-cells", 2)
    .setU32("#size-cells", 2)
    .setString("compatible", "riscv-virtio")
    .setString("model", "riscv-virtio,wasmvisor");

  // /chosen
  const chosen = root.addNode("chosen");
  if (cfg.bootargs !== undefined) chosen.setString("bootargs", cfg.bootargs);
  const stdout = devices.find((d) => d.slot === BOARD.uart);
  if (stdout) chosen.setString("stdout-path", `/soc/${nodeName(stdout)}`);
  if (cfg.initrd) {
    // 64-bit values, as QEMU writes them; Linux accepts 1 or 2 cells.
    chosen.setU64("linux,initrd-start", cfg.initrd.start);
    chosen.setU64("linux,initrd-end", cfg.initrd.end);
  }
  if (cfg.rngSeed) chosen.setBytes("rng-seed", cfg.rngSeed);

  for (const d of devices) d.slot.type.rootNodes?.(root, placement(d), d.options);

  root
    .addNode(`memory@${RAM_BASE.toString(16)}`)
    .setString("device_type", "memory")
    .setU32("reg", ...regCells(RAM_BASE, cfg.ramSize));

  // /cpus
  const cpus = root.addNode("cpus").setU32("#address-cells", 1).setU32("#size-cells", 0).setU32("timebase-frequency", cfg.timebaseHz);
  for (let h = 0; h < cfg.harts; h++) {
    const cpu = cpus
      .addNode(`cpu@${h.toString(16)}`)
      .setU32("phandle", cpuPh[h]!)
      .setString("device_type", "cpu")
      .setU32("reg", h)
      .setString("status", "okay")
      .setString("compatible", "riscv")
      .setString("riscv,isa", cfg.isa)
      .setString("mmu-type", cfg.mmuType);
    cpu
      .addNode("interrupt-controller")
      .setU32("#interrupt-cells", 1)
      .setEmpty("interrupt-controller")
      .setString("compatible", "riscv,cpu-intc")
      .setU32("phandle", intcPh[h]!);
  }
  const cluster = cpus.addNode("cpu-map").addNode("cluster0");
  for (let h = 0; h < cfg.harts; h++) cluster.addNode(`core${h}`).setU32("cpu", cpuPh[h]!);

  // /soc: each device writes its own node.
  const soc = root
    .addNode("soc")
    .setU32("#address-cells", 2)
    .setU32("#size-cells", 2)
    .setString("compatible", "simple-bus")
    .setEmpty("ranges");
  for (const d of devices) d.slot.type.describe(soc.addNode(nodeName(d)), placement(d), d.options);

  return dt;
}

/** The board's DTB, ready to be placed in guest memory. */
export function buildVirtDtb(cfg: VirtDtConfig): Uint8Array {
  return buildVirtTree(cfg).toBlob();
}
