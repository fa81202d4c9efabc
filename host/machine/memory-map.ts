/**
 * Guest-physical memory map of the board. It mirrors QEMU's riscv `virt` machine
 * (hw/riscv/virt.c) so that firmware and kernels built for that board run unchanged.
 * Sizes are in bytes; every value fits in a JS number exactly.
 */

/** Boot ROM (reset vector lives at its start; QEMU's "mrom"). */
export const BOOT_ROM_BASE = 0x1000;
export const BOOT_ROM_SIZE = 0xf000;

/** SiFive test finisher, also the syscon used by syscon-poweroff / syscon-reboot. */
export const TEST_BASE = 0x100000;
export const TEST_SIZE = 0x1000;

/** Goldfish real-time clock. */
export const RTC_BASE = 0x101000;
export const RTC_SIZE = 0x1000;
export const RTC_IRQ = 11;

/** CLINT (mtime / mtimecmp / msip). Emulated inside the core; listed here for the DT. */
export const CLINT_BASE = 0x2000000;
export const CLINT_SIZE = 0x10000;

/** PLIC register layout (the SiFive layout QEMU's virt board uses). */
export const PLIC_BASE = 0xc000000;
export const PLIC_PRIORITY_BASE = 0x0;
export const PLIC_PENDING_BASE = 0x1000;
export const PLIC_ENABLE_BASE = 0x2000;
export const PLIC_ENABLE_STRIDE = 0x80;
export const PLIC_CONTEXT_BASE = 0x200000;
export const PLIC_CONTEXT_STRIDE = 0x1000;
/** QEMU sizes the window for its maximum of 512 harts x 2 contexts, whatever -smp says. */
export const PLIC_SIZE = PLIC_CONTEXT_BASE + 512 * 2 * PLIC_CONTEXT_STRIDE; // 0x600000
/** Highest interrupt source id (riscv,ndev); sources are 1..PLIC_NDEV, 0 means "none". */
export const PLIC_NDEV = 95;
/** Priorities are 3 bits wide, as on QEMU's virt board (0 = never interrupts). */
export const PLIC_MAX_PRIORITY = 7;

/** ns16550a UART. */
export const UART0_BASE = 0x10000000;
export const UART0_SIZE = 0x100;
export const UART0_IRQ = 10;
/** Input clock the DT advertises; divisor = clock / (16 * baud). */
export const UART0_CLOCK_HZ = 3686400;

/** virtio-mmio transports: slot i is at VIRTIO_BASE + i * VIRTIO_STRIDE with irq VIRTIO_IRQ + i. */
export const VIRTIO_BASE = 0x10001000;
export const VIRTIO_STRIDE = 0x1000;
export const VIRTIO_SIZE = 0x1000;
export const VIRTIO_IRQ = 1;
export const VIRTIO_COUNT = 8;

/**
 * Legacy devices of the full-virtualization machine (QEMU's virt board has none there).
 * ATA controller i (one disk each) is at ATA_BASE + i * ATA_STRIDE with irq ATA_IRQ + i; the
 * OpenCores Ethernet MAC i at ETHOC_BASE + i * ETHOC_STRIDE with irq ETHOC_IRQ + i.
 */
export const ATA_BASE = 0x10010000;
export const ATA_STRIDE = 0x1000;
export const ATA_IRQ = 12;
export const ATA_COUNT = 4;
export const ETHOC_BASE = 0x10020000;
export const ETHOC_STRIDE = 0x1000;
export const ETHOC_IRQ = 16;
export const ETHOC_COUNT = 4;

/** Main memory starts here and extends for the configured RAM size. */
export const RAM_BASE = 0x80000000;

/** Guest-physical base of virtio-mmio slot `i` (0-based). */
export function virtioBase(i: number): number {
  return VIRTIO_BASE + i * VIRTIO_STRIDE;
}

/** PLIC source number of virtio-mmio slot `i` (0-based). */
export function virtioIrq(i: number): number {
  return VIRTIO_IRQ + i;
}

/** Guest-physical base and PLIC source of ATA controller `i` (0-based). */
export function ataBase(i: number): number {
  return ATA_BASE + i * ATA_STRIDE;
}
export function ataIrq(i: number): number {
  return ATA_IRQ + i;
}

/** Guest-physical base and PLIC source of Ethernet MAC `i` (0-based). */
export function ethocBase(i: number): number {
  return ETHOC_BASE + i * ETHOC_STRIDE;
}
export function ethocIrq(i: number): number {
  return ETHOC_IRQ + i;
}
