// The MMIO bus: which device answers which guest-physical range. The core exits to the host
// only for pages the bus has told it about; the bus then finds the device and splits 64-bit
// accesses into two 32-bit halves, so devices deal in numbers, never BigInt.
import type { MmioDevice } from "../devices/device";
import type { Core } from "../core/core";

interface Mapping {
  base: number;
  end: number;
  device: MmioDevice;
}

export class Bus {
  private readonly maps: Mapping[] = [];
  /** Accesses per device name, for statistics. */
  readonly counts = new Map<string, number>();

  constructor(private readonly core: Core) {}

  attach(base: number, device: MmioDevice): void {
    const end = base + device.size;
    for (const m of this.maps) {
      if (base < m.end && end > m.base) throw new Error(`${device.name} at 0x${base.toString(16)} overlaps ${m.device.name}`);
    }
    this.maps.push({ base, end, device });
    this.maps.sort((a, b) => a.base - b.base);
    this.core.mapDevice(base, device.size);
  }

  /** The attached devices, by address. */
  devices(): MmioDevice[] {
    return this.maps.map((m) => m.device);
  }

  find(addr: number): Mapping | undefined {
    for (const m of this.maps) if (addr >= m.base && addr < m.end) return m;
    return undefined;
  }

  /** Read; unmapped bytes of a device page read as zero, as the access has already been allowed. */
  read(addr: number, size: number): [lo: number, hi: number] {
    const m = this.find(addr);
    if (!m) return [0, 0];
    this.counts.set(m.device.name, (this.counts.get(m.device.name) ?? 0) + 1);
    const off = addr - m.base;
    if (size === 8) return [m.device.read(off, 4) >>> 0, m.device.read(off + 4, 4) >>> 0];
    return [m.device.read(off, size as 1 | 2 | 4) >>> 0, 0];
  }

  write(addr: number, size: number, lo: number, hi: number): void {
    const m = this.find(addr);
    if (!m) return;
    this.counts.set(m.device.name, (this.counts.get(m.device.name) ?? 0) + 1);
    const off = addr - m.base;
    if (size === 8) {
      m.device.write(off, 4, lo);
      m.device.write(off + 4, 4, hi);
    } else m.device.write(off, size as 1 | 2 | 4, lo);
  }

  /** Complete an EXIT_MMIO of `hart`. */
  handleExit(hart: number): void {
    const core = this.core;
    const addr = core.exitAddr(hart);
    const size = core.exitSize(hart);
    if (core.exitIsWrite(hart)) this.write(addr, size, core.exitDataLo(hart), core.exitDataHi(hart));
    else {
      const [lo, hi] = this.read(addr, size);
      core.setExitData(hart, lo, hi);
    }
  }
}
