import { IRQ, type DeviceState, type DeviceType, type HartIrqPins, type IrqLine, type MmioDevice } from "./device";
import { setReg } from "./devicetree";
import { StateReader, wordsState } from "./state";

// Register layout: the SiFive layout QEMU's virt board uses.
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

const VERSION = 1;

/** The board's interrupt controller: every other device's lines go to its sources. */
export const PLIC: DeviceType = {
  kind: "plic",
  dtName: "plic",
  size: PLIC_SIZE,
  irqs: 0,
  phandle: "interrupt-controller",
  describe(node, at) {
    // Context 2h = hart h M-mode (MEI), 2h+1 = S-mode (SEI): firmware derives the context
    // numbering from the order of this list.
    const contexts = at.hartIntc.flatMap((intc) => [intc, IRQ.MEI, intc, IRQ.SEI]);
    setReg(node, at, PLIC_SIZE)
      .setU32("phandle", at.phandle)
      .setU32("riscv,ndev", PLIC_NDEV)
      .setU32("interrupts-extended", ...contexts)
      .setEmpty("interrupt-controller")
      .setStrings("compatible", ["sifive,plic-1.0.0", "riscv,plic0"])
      .setU32("#address-cells", 0)
      .setU32("#interrupt-cells", 1);
  },
};

/**
 * SiFive platform-level interrupt controller, register-compatible with QEMU's virt PLIC.
 *
 * Context 2h is hart h's M-mode (drives mip.MEIP), context 2h+1 its S-mode (mip.SEIP).
 * The gateway behaves as QEMU's: a device driving its line high makes the source pending
 * (again, if it drives it high while the source is claimed), driving it low withdraws the
 * request, a claim clears the pending bit and a completion only ends the claim. A line left
 * high through a completion therefore interrupts again only when its device drives it again
 * (devices drive their line after every event and register access that can change it). Guests
 * written against QEMU depend on this: xv6 never acknowledges the UART's THRE interrupt, and
 * a PLIC that re-sampled the line at completion would interrupt it for ever.
 */
export class Plic implements MmioDevice {
  readonly name = "plic";
  readonly size = PLIC_SIZE;
  readonly harts: number;
  readonly ndev: number;
  readonly contexts: number;

  /** 32-bit words per bit vector (bit i = source i; bit 0 is unused). */
  private readonly words: number;
  private priority: Uint32Array;
  private pending: Uint32Array;
  private claimed: Uint32Array;
  private enable: Uint32Array; // contexts * words
  private threshold: Uint32Array;
  /** Level last driven onto each context's mip bit, so pins only see changes. */
  private output: Uint8Array;

  constructor(
    private readonly pins: HartIrqPins,
    harts: number,
    ndev: number = PLIC_NDEV,
  ) {
    if (!Number.isInteger(harts) || harts < 1) throw new Error(`plic: bad hart count ${harts}`);
    const maxContexts = (PLIC_SIZE - PLIC_CONTEXT_BASE) / PLIC_CONTEXT_STRIDE;
    if (harts * 2 > maxContexts) throw new Error(`plic: too many harts (${harts})`);
    // The enable window of a context is 0x80 bytes, i.e. 1024 sources including id 0.
    if (!Number.isInteger(ndev) || ndev < 1 || ndev > 1023) throw new Error(`plic: bad source count ${ndev}`);
    this.harts = harts;
    this.ndev = ndev;
    this.contexts = harts * 2;
    this.words = (ndev + 1 + 31) >>> 5;
    this.priority = new Uint32Array(ndev + 1);
    this.pending = new Uint32Array(this.words);
    this.claimed = new Uint32Array(this.words);
    this.enable = new Uint32Array(this.contexts * this.words);
    this.threshold = new Uint32Array(this.contexts);
    this.output = new Uint8Array(this.contexts);
  }

  /** The interrupt line of source `source` (1..ndev), for a device to drive. */
  irqLine(source: number): IrqLine {
    if (!Number.isInteger(source) || source < 1 || source > this.ndev) {
      throw new Error(`plic: interrupt source ${source} out of range 1..${this.ndev}`);
    }
    return (level: boolean) => this.setLevel(source, level);
  }

  /** Drive source `source`'s line (same as calling its irqLine): high requests, low withdraws. */
  setLevel(source: number, level: boolean): void {
    const w = source >>> 5;
    const bit = 1 << (source & 31);
    const old = this.pending[w];
    const now = level ? old | bit : old & ~bit;
    if (now === old) return;
    this.pending[w] = now;
    this.update();
  }

  /** Power-on state: everything masked, unclaimed and not pending. */
  reset(): void {
    this.priority.fill(0);
    this.pending.fill(0);
    this.claimed.fill(0);
    this.enable.fill(0);
    this.threshold.fill(0);
    this.update();
  }

  read(offset: number, size: 1 | 2 | 4): number {
    // QEMU's PLIC only accepts aligned 32-bit accesses; narrower ones read as zero here.
    if (size !== 4 || (offset & 3) !== 0) return 0;
    if (offset < PLIC_PENDING_BASE) {
      const src = (offset - PLIC_PRIORITY_BASE) >>> 2;
      return src >= 1 && src <= this.ndev ? this.priority[src] : 0;
    }
    if (offset < PLIC_ENABLE_BASE) {
      const w = (offset - PLIC_PENDING_BASE) >>> 2;
      return w < this.words ? this.pendingWord(w) >>> 0 : 0;
    }
    if (offset < PLIC_CONTEXT_BASE) {
      const ctx = Math.floor((offset - PLIC_ENABLE_BASE) / PLIC_ENABLE_STRIDE);
      const w = ((offset - PLIC_ENABLE_BASE) % PLIC_ENABLE_STRIDE) >>> 2;
      if (ctx >= this.contexts || w >= this.words) return 0;
      return this.enable[ctx * this.words + w] >>> 0;
    }
    const ctx = Math.floor((offset - PLIC_CONTEXT_BASE) / PLIC_CONTEXT_STRIDE);
    if (ctx >= this.contexts) return 0;
    const reg = (offset - PLIC_CONTEXT_BASE) % PLIC_CONTEXT_STRIDE;
    if (reg === 0) return this.threshold[ctx];
    if (reg === 4) return this.claim(ctx);
    return 0;
  }

  write(offset: number, size: 1 | 2 | 4, value: number): void {
    if (size !== 4 || (offset & 3) !== 0) return;
    value >>>= 0;
    if (offset < PLIC_PENDING_BASE) {
      const src = (offset - PLIC_PRIORITY_BASE) >>> 2;
      if (src < 1 || src > this.ndev) return;
      // WARL: only the implemented priority bits stick (software may probe with all-ones).
      this.priority[src] = value & PLIC_MAX_PRIORITY;
      this.update();
      return;
    }
    if (offset < PLIC_ENABLE_BASE) return; // pending bits are read-only
    if (offset < PLIC_CONTEXT_BASE) {
      const ctx = Math.floor((offset - PLIC_ENABLE_BASE) / PLIC_ENABLE_STRIDE);
      const w = ((offset - PLIC_ENABLE_BASE) % PLIC_ENABLE_STRIDE) >>> 2;
      if (ctx >= this.contexts || w >= this.words) return;
      this.enable[ctx * this.words + w] = value & this.validMask(w);
      this.updateContext(ctx);
      return;
    }
    const ctx = Math.floor((offset - PLIC_CONTEXT_BASE) / PLIC_CONTEXT_STRIDE);
    if (ctx >= this.contexts) return;
    const reg = (offset - PLIC_CONTEXT_BASE) % PLIC_CONTEXT_STRIDE;
    if (reg === 0) {
      this.threshold[ctx] = value & PLIC_MAX_PRIORITY;
      this.updateContext(ctx);
    } else if (reg === 4) {
      this.complete(value);
    }
  }

  save(): DeviceState {
    return {
      kind: PLIC.kind,
      version: VERSION,
      harts: this.harts,
      ndev: this.ndev,
      priority: wordsState(this.priority),
      pending: wordsState(this.pending),
      claimed: wordsState(this.claimed),
      enable: wordsState(this.enable),
      threshold: wordsState(this.threshold),
    };
  }

  restore(state: unknown): void {
    const s = StateReader.open(state, this.name, PLIC.kind, VERSION);
    const harts = s.int("harts", 1, Number.MAX_SAFE_INTEGER);
    const ndev = s.int("ndev", 1, Number.MAX_SAFE_INTEGER);
    if (harts !== this.harts || ndev !== this.ndev) {
      throw new Error(`${this.name}: state is for ${harts} harts / ${ndev} sources, this PLIC has ${this.harts} / ${this.ndev}`);
    }
    const priority = s.words("priority", this.ndev + 1);
    const pending = s.words("pending", this.words);
    const claimed = s.words("claimed", this.words);
    const enable = s.words("enable", this.contexts * this.words);
    const threshold = s.words("threshold", this.contexts);
    // Values the registers cannot hold would make best() and claims misbehave.
    for (let w = 0; w < this.words; w++) {
      const valid = this.validMask(w);
      if ((pending[w]! | claimed[w]!) & ~valid) throw new Error(`${this.name}: state.pending/claimed word ${w} names sources that do not exist`);
      for (let ctx = 0; ctx < this.contexts; ctx++) {
        if (enable[ctx * this.words + w]! & ~valid) throw new Error(`${this.name}: state.enable of context ${ctx} names sources that do not exist`);
      }
    }
    if (priority.some((p, src) => p > PLIC_MAX_PRIORITY || (src === 0 && p !== 0)) || threshold.some((t) => t > PLIC_MAX_PRIORITY)) {
      throw new Error(`${this.name}: state.priority/threshold must be 0..${PLIC_MAX_PRIORITY} (source 0: 0)`);
    }
    this.priority = priority;
    this.pending = pending;
    this.claimed = claimed;
    this.enable = enable;
    this.threshold = threshold;
    // The harts' mip bits may not match the snapshot: drive every output explicitly.
    for (let ctx = 0; ctx < this.contexts; ctx++) {
      const on = this.best(ctx) !== 0;
      this.output[ctx] = on ? 1 : 0;
      this.pins.set(ctx >>> 1, ctx & 1 ? IRQ.SEI : IRQ.MEI, on);
    }
  }

  /** Bits that may be set in word `w`: sources 1..ndev only. */
  private validMask(w: number): number {
    let mask = 0xffffffff;
    if (w === 0) mask &= ~1;
    const last = this.ndev >>> 5;
    if (w === last) {
      const n = (this.ndev & 31) + 1; // bits 0..(ndev & 31) exist in the last word
      mask &= n === 32 ? 0xffffffff : (1 << n) - 1;
    } else if (w > last) {
      mask = 0;
    }
    return mask >>> 0;
  }

  private pendingWord(w: number): number {
    return this.pending[w] & ~this.claimed[w];
  }

  /** Highest-priority pending, enabled source above the context's threshold; 0 if none. */
  private best(ctx: number): number {
    const base = ctx * this.words;
    let bestId = 0;
    let bestPrio = this.threshold[ctx];
    for (let w = 0; w < this.words; w++) {
      let bits = this.pendingWord(w) & this.enable[base + w];
      while (bits !== 0) {
        const b = 31 - Math.clz32(bits & -bits); // lowest set bit first, so ties keep the lowest id
        bits &= bits - 1;
        const id = (w << 5) | b;
        const p = this.priority[id];
        if (p > bestPrio) {
          bestPrio = p;
          bestId = id;
        }
      }
    }
    return bestId;
  }

  private claim(ctx: number): number {
    const id = this.best(ctx);
    if (id !== 0) {
      this.pending[id >>> 5] &= ~(1 << (id & 31));
      this.claimed[id >>> 5] |= 1 << (id & 31);
      this.update();
    }
    return id;
  }

  private complete(id: number): void {
    // Like QEMU, a completion ends the claim whichever context sends it and whether or
    // not the source is enabled there (Linux completes masked sources); bad ids are ignored.
    if (id < 1 || id > this.ndev) return;
    const w = id >>> 5;
    const bit = 1 << (id & 31);
    if ((this.claimed[w] & bit) === 0) return;
    this.claimed[w] &= ~bit;
    this.update();
  }

  private update(): void {
    for (let ctx = 0; ctx < this.contexts; ctx++) this.updateContext(ctx);
  }

  private updateContext(ctx: number): void {
    const on = this.best(ctx) !== 0 ? 1 : 0;
    if (this.output[ctx] === on) return;
    this.output[ctx] = on;
    this.pins.set(ctx >>> 1, ctx & 1 ? IRQ.SEI : IRQ.MEI, on === 1);
  }
}
