import { DeviceTree, type FdtNode } from "./fdt";
import {
  CLINT_BASE,
  CLINT_SIZE,
  PLIC_BASE,
  PLIC_NDEV,
  PLIC_SIZE,
  RAM_BASE,
  RTC_BASE,
  RTC_IRQ,
  RTC_SIZE,
  TEST_BASE,
  TEST_SIZE,
  UART0_BASE,
  UART0_CLOCK_HZ,
  UART0_IRQ,
  UART0_SIZE,
  VIRTIO_COUNT,
  VIRTIO_SIZE,
  virtioBase,
  virtioIrq,
  ATA_COUNT,
  ETHOC_COUNT,
  ataBase,
  ataIrq,
  ethocBase,
  ethocIrq,
} from "./memory-map";
import { IRQ } from "../devices/device";
import { ATA_CTL_OFFSET, ATA_REG_SHIFT, MAX_PIO_MODE } from "../devices/ata";
import { ETHOC_WINDOW_SIZE } from "../devices/ethoc";

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
  /** How many virtio-mmio slots to describe (0..8, default 0). */
  virtio?: number;
  /** How many ATA controllers (one disk each) to describe (0..4, default 0). */
  ata?: number;
  /** The OpenCores Ethernet MACs to describe, by MAC address (at most 4). */
  ethoc?: Uint8Array[];
  /** Optional /chosen/rng-seed bytes (early entropy for Linux). */
  rngSeed?: Uint8Array;
}

/** Most harts the board supports (the core's MAX_HARTS). */
export const VIRT_MAX_HARTS = 8;

const STDOUT_PATH = `/soc/serial@${UART0_BASE.toString(16)}`;

function regCells(base: number, size: number): number[] {
  const hi = (v: number) => Math.floor(v / 0x100000000);
  const lo = (v: number) => v % 0x100000000;
  return [hi(base), lo(base), hi(size), lo(size)];
}

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
  const virtio = cfg.virtio ?? 0;
  if (!Number.isInteger(virtio) || virtio < 0 || virtio > VIRTIO_COUNT) bad(`virtio must be 0..${VIRTIO_COUNT}, got ${virtio}`);
  const ata = cfg.ata ?? 0;
  if (!Number.isInteger(ata) || ata < 0 || ata > ATA_COUNT) bad(`ata must be 0..${ATA_COUNT}, got ${ata}`);
  const ethoc = cfg.ethoc ?? [];
  if (ethoc.length > ETHOC_COUNT) bad(`at most ${ETHOC_COUNT} ethoc NICs, got ${ethoc.length}`);
  for (const mac of ethoc) if (mac.length !== 6) bad(`an ethoc MAC address must be 6 bytes, got ${mac.length}`);
  if (cfg.initrd) {
    const { start, end } = cfg.initrd;
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
      bad(`initrd range [${start}, ${end}) is invalid`);
    }
  }
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

  // Phandles are fixed numbers handed out in creation order, so output is reproducible.
  let nextPhandle = 1;
  const cpuPh: number[] = [];
  const intcPh: number[] = [];
  for (let h = 0; h < cfg.harts; h++) {
    cpuPh.push(nextPhandle++);
    intcPh.push(nextPhandle++);
  }
  const plicPh = nextPhandle++;
  const testPh = nextPhandle++;

  root
    .setU32("#address-cells", 2)
    .setU32("#size-cells", 2)
    .setString("compatible", "riscv-virtio")
    .setString("model", "riscv-virtio,wasmvisor");

  // /chosen
  const chosen = root.addNode("chosen");
  if (cfg.bootargs !== undefined) chosen.setString("bootargs", cfg.bootargs);
  chosen.setString("stdout-path", STDOUT_PATH);
  if (cfg.initrd) {
    // 64-bit values, as QEMU writes them; Linux accepts 1 or 2 cells.
    chosen.setU64("linux,initrd-start", cfg.initrd.start);
    chosen.setU64("linux,initrd-end", cfg.initrd.end);
  }
  if (cfg.rngSeed) chosen.setBytes("rng-seed", cfg.rngSeed);

  // Power-off and reboot through the test device, as Linux's syscon drivers expect.
  root
    .addNode("poweroff")
    .setStrings("compatible", ["syscon-poweroff"])
    .setU32("regmap", testPh)
    .setU32("offset", 0)
    .setU32("value", 0x5555);
  root
    .addNode("reboot")
    .setStrings("compatible", ["syscon-reboot"])
    .setU32("regmap", testPh)
    .setU32("offset", 0)
    .setU32("value", 0x7777);

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

  // /soc
  const soc = root
    .addNode("soc")
    .setU32("#address-cells", 2)
    .setU32("#size-cells", 2)
    .setString("compatible", "simple-bus")
    .setEmpty("ranges");
  const device = (name: string, base: number, size: number): FdtNode => soc.addNode(`${name}@${base.toString(16)}`).setU32("reg", ...regCells(base, size));
  const plicIrq = (n: FdtNode, irq: number) => n.setU32("interrupt-parent", plicPh).setU32("interrupts", irq);

  plicIrq(device("rtc", RTC_BASE, RTC_SIZE).setString("compatible", "google,goldfish-rtc"), RTC_IRQ);
  plicIrq(
    device("serial", UART0_BASE, UART0_SIZE).setString("compatible", "ns16550a").setU32("clock-frequency", UART0_CLOCK_HZ),
    UART0_IRQ,
  );
  device("test", TEST_BASE, TEST_SIZE)
    .setStrings("compatible", ["sifive,test1", "sifive,test0", "syscon"])
    .setU32("phandle", testPh);
  // Legacy devices (full virtualization): PATA disks for pata_of_platform (command block with
  // its register spacing, then the control block) and OpenCores MACs for ethoc, whose packet
  // buffers are in RAM (no second reg: the driver allocates them).
  for (let i = 0; i < (cfg.ata ?? 0); i++) {
    const base = ataBase(i);
    plicIrq(
      soc.addNode(`ata@${base.toString(16)}`)
        .setString("compatible", "ata-generic")
        .setU32("reg", ...regCells(base, 8 << ATA_REG_SHIFT), ...regCells(base + ATA_CTL_OFFSET, 4))
        .setU32("reg-shift", ATA_REG_SHIFT)
        .setU32("pio-mode", MAX_PIO_MODE),
      ataIrq(i),
    );
  }
  (cfg.ethoc ?? []).forEach((mac, i) => {
    plicIrq(
      device("ethernet", ethocBase(i), ETHOC_WINDOW_SIZE).setString("compatible", "opencores,ethoc").setBytes("local-mac-address", mac),
      ethocIrq(i),
    );
  });
  // QEMU lists the virtio slots from the highest address down and Linux probes them in
  // that order; QEMU fills slots from the top so its first device is probed first.
  for (let i = (cfg.virtio ?? 0) - 1; i >= 0; i--) {
    plicIrq(device("virtio_mmio", virtioBase(i), VIRTIO_SIZE).setString("compatible", "virtio,mmio"), virtioIrq(i));
  }
  // Context 2h = hart h M-mode (MEI), 2h+1 = S-mode (SEI): firmware derives the context
  // numbering from the order of this list.
  const plicExt: number[] = [];
  const clintExt: number[] = [];
  for (let h = 0; h < cfg.harts; h++) {
    plicExt.push(intcPh[h]!, IRQ.MEI, intcPh[h]!, IRQ.SEI);
    clintExt.push(intcPh[h]!, IRQ.MSI, intcPh[h]!, IRQ.MTI);
  }
  device("plic", PLIC_BASE, PLIC_SIZE)
    .setU32("phandle", plicPh)
    .setU32("riscv,ndev", PLIC_NDEV)
    .setU32("interrupts-extended", ...plicExt)
    .setEmpty("interrupt-controller")
    .setStrings("compatible", ["sifive,plic-1.0.0", "riscv,plic0"])
    .setU32("#address-cells", 0)
    .setU32("#interrupt-cells", 1);
  device("clint", CLINT_BASE, CLINT_SIZE)
    .setStrings("compatible", ["sifive,clint0", "riscv,clint0"])
    .setU32("interrupts-extended", ...clintExt);

  return dt;
}

/** The board's DTB, ready to be placed in guest memory. */
export function buildVirtDtb(cfg: VirtDtConfig): Uint8Array {
  return buildVirtTree(cfg).toBlob();
}
