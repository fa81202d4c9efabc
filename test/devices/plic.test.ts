import { describe, expect, it } from "vitest";
import { Plic } from "../../host/devices/plic";
import type { HartIrqPins } from "../../host/devices/device";

const PRIO = (src: number) => 4 * src;
const PENDING = 0x1000;
const ENABLE = (ctx: number) => 0x2000 + 0x80 * ctx;
const THRESHOLD = (ctx: number) => 0x200000 + 0x1000 * ctx;
const CLAIM = (ctx: number) => 0x200004 + 0x1000 * ctx;

/** Records every pin change and tracks the current mip bits per hart. */
class FakePins implements HartIrqPins {
  log: string[] = [];
  mip = new Map<number, number>();
  set(hart: number, bit: number, level: boolean): void {
    this.log.push(`${hart}:${bit}:${level ? 1 : 0}`);
    const m = this.mip.get(hart) ?? 0;
    this.mip.set(hart, level ? m | (1 << bit) : m & ~(1 << bit));
  }
  bit(hart: number, bit: number): boolean {
    return ((this.mip.get(hart) ?? 0) >> bit & 1) === 1;
  }
}

function make(harts = 2) {
  const pins = new FakePins();
  const plic = new Plic(pins, harts);
  const r = (off: number) => plic.read(off, 4);
  const w = (off: number, v: number) => plic.write(off, 4, v);
  return { pins, plic, r, w };
}

describe("plic", () => {
  it("keeps priorities per source, 3 bits wide, source 0 and out of range hardwired to 0", () => {
    const { r, w } = make();
    w(PRIO(1), 5);
    w(PRIO(95), 0xffffffff);
    w(PRIO(0), 3);
    w(PRIO(96), 3);
    expect(r(PRIO(1))).toBe(5);
    expect(r(PRIO(95))).toBe(7);
    expect(r(PRIO(0))).toBe(0);
    expect(r(PRIO(96))).toBe(0);
  });

  it("shows pending bits read-only", () => {
    const { plic, r, w } = make();
    plic.irqLine(10)(true);
    plic.irqLine(33)(true);
    expect(r(PENDING)).toBe(1 << 10);
    expect(r(PENDING + 4)).toBe(1 << 1);
    w(PENDING, 0);
    expect(r(PENDING)).toBe(1 << 10);
    plic.irqLine(10)(false); // dropping the line withdraws an unclaimed request
    expect(r(PENDING)).toBe(0);
  });

  it("masks enable bits to real sources", () => {
    const { r, w } = make();
    w(ENABLE(1), 0xffffffff);
    w(ENABLE(1) + 8, 0xffffffff);
    w(ENABLE(1) + 12, 0xffffffff);
    expect(r(ENABLE(1))).toBe(0xfffffffe); // source 0 does not exist
    expect(r(ENABLE(1) + 8)).toBe(0xffffffff); // sources 64..95
    expect(r(ENABLE(1) + 12)).toBe(0);
    expect(r(ENABLE(0))).toBe(0); // other contexts untouched
    expect(r(ENABLE(4))).toBe(0); // context 4 does not exist with 2 harts
    w(ENABLE(4), 0xffffffff);
    expect(r(ENABLE(4))).toBe(0);
  });

  it("drives MEIP for even and SEIP for odd contexts of the right hart", () => {
    const { plic, pins, w } = make();
    w(PRIO(10), 1);
    w(ENABLE(3), 1 << 10); // hart 1 S-mode
    expect(pins.log).toEqual([]);
    plic.irqLine(10)(true);
    expect(pins.log).toEqual(["1:9:1"]);
    w(ENABLE(0), 1 << 10); // hart 0 M-mode
    expect(pins.log).toEqual(["1:9:1", "0:11:1"]);
    plic.irqLine(10)(false);
    expect(pins.bit(0, 11)).toBe(false);
    expect(pins.bit(1, 9)).toBe(false);
  });

  it("never interrupts for priority 0 or priority <= threshold", () => {
    const { plic, pins, r, w } = make();
    w(ENABLE(1), 1 << 5);
    plic.irqLine(5)(true);
    expect(pins.bit(0, 9)).toBe(false); // priority 0
    expect(r(CLAIM(1))).toBe(0);
    w(PRIO(5), 3);
    expect(pins.bit(0, 9)).toBe(true);
    w(THRESHOLD(1), 3);
    expect(r(THRESHOLD(1))).toBe(3);
    expect(pins.bit(0, 9)).toBe(false);
    expect(r(CLAIM(1))).toBe(0);
    w(THRESHOLD(1), 2);
    expect(pins.bit(0, 9)).toBe(true);
  });

  it("claims the highest priority, ties to the lowest id, and holds a new request until complete", () => {
    const { plic, pins, r, w } = make();
    for (const s of [3, 7, 40]) {
      w(PRIO(s), s === 40 ? 6 : 2);
      plic.irqLine(s)(true);
    }
    w(ENABLE(1), (1 << 3) | (1 << 7));
    w(ENABLE(1) + 4, 1 << 8); // source 40
    expect(r(CLAIM(1))).toBe(40);
    expect(r(PENDING + 4)).toBe(0); // claimed: no longer pending although the line is high
    expect(r(CLAIM(1))).toBe(3); // equal priority: lowest id
    expect(r(CLAIM(1))).toBe(7);
    expect(pins.bit(0, 9)).toBe(false);
    expect(r(CLAIM(1))).toBe(0);
    plic.irqLine(3)(true); // the device drives its line again while 3 is claimed: a new request...
    expect(pins.bit(0, 9)).toBe(false); // ...held until the completion
    w(CLAIM(1), 3);
    expect(pins.bit(0, 9)).toBe(true);
    expect(r(PENDING) & (1 << 3)).toBe(1 << 3);
    plic.irqLine(7)(false);
    w(CLAIM(1), 7); // complete after the line dropped: stays idle
    expect(r(PENDING) & (1 << 7)).toBe(0);
    expect(r(CLAIM(1))).toBe(3);
  });

  it("does not interrupt again for a line left high through the completion (QEMU's gateway)", () => {
    // xv6 never acknowledges the UART's THRE interrupt: its line stays high after the handler.
    const { plic, pins, r, w } = make();
    w(PRIO(10), 1);
    w(ENABLE(1), 1 << 10);
    plic.irqLine(10)(true);
    expect(r(CLAIM(1))).toBe(10);
    w(CLAIM(1), 10);
    expect(pins.bit(0, 9)).toBe(false);
    expect(r(PENDING)).toBe(0);
    expect(r(CLAIM(1))).toBe(0);
    plic.irqLine(10)(true); // until the device drives it again
    expect(pins.bit(0, 9)).toBe(true);
    expect(r(CLAIM(1))).toBe(10);
  });

  it("keeps claims global: another context cannot claim the same source", () => {
    const { plic, pins, r, w } = make();
    w(PRIO(10), 1);
    w(ENABLE(0), 1 << 10);
    w(ENABLE(3), 1 << 10);
    plic.irqLine(10)(true);
    expect(pins.bit(0, 11) && pins.bit(1, 9)).toBe(true);
    expect(r(CLAIM(3))).toBe(10);
    expect(pins.bit(0, 11)).toBe(false);
    expect(r(CLAIM(0))).toBe(0);
    plic.irqLine(10)(true);
    w(CLAIM(3), 10);
    expect(pins.bit(0, 11)).toBe(true);
  });

  it("ignores completions of unclaimed or out-of-range sources", () => {
    const { plic, r, w } = make();
    w(PRIO(2), 1);
    w(ENABLE(1), 1 << 2);
    plic.irqLine(2)(true);
    expect(r(CLAIM(1))).toBe(2);
    w(CLAIM(1), 0);
    w(CLAIM(1), 96);
    w(CLAIM(1), 5);
    expect(r(CLAIM(1))).toBe(0); // 2 is still claimed
    plic.irqLine(2)(true);
    expect(r(CLAIM(1))).toBe(0);
    w(CLAIM(1), 2);
    expect(r(CLAIM(1))).toBe(2);
  });

  it("ignores narrow accesses and unmapped registers", () => {
    const { plic, r, w } = make();
    plic.write(PRIO(1), 1, 5);
    expect(r(PRIO(1))).toBe(0);
    w(0x1f0000, 1);
    expect(r(0x1f0000)).toBe(0);
    expect(r(THRESHOLD(4))).toBe(0); // context beyond the harts
    w(THRESHOLD(0) + 8, 1);
    expect(r(THRESHOLD(0) + 8)).toBe(0);
  });

  it("rejects bad source numbers for irqLine", () => {
    const { plic } = make();
    expect(() => plic.irqLine(0)).toThrow(/out of range/);
    expect(() => plic.irqLine(96)).toThrow(/out of range/);
  });

  it("snapshots and restores, re-driving every output", () => {
    const a = make();
    a.w(PRIO(10), 4);
    a.w(ENABLE(1), 1 << 10);
    a.w(THRESHOLD(1), 1);
    a.plic.irqLine(10)(true);
    const b = make();
    b.plic.restore(a.plic.save());
    expect(b.pins.log).toEqual(["0:11:0", "0:9:1", "1:11:0", "1:9:0"]);
    expect(b.r(PRIO(10))).toBe(4);
    expect(b.r(THRESHOLD(1))).toBe(1);
    expect(b.r(CLAIM(1))).toBe(10);
    expect(() => make(1).plic.restore(a.plic.save())).toThrow(/plic: state is for 2 harts/);
    expect(() => b.plic.restore({ ...a.plic.save(), enable: [] })).toThrow(/state.enable/);
  });
});
