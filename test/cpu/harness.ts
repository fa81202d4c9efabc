// Shared harness for the instruction-level CPU tests: build a core, assemble a program at the
// start of guest RAM (0x80000000), run it until it reaches a stop label, and inspect the result.
//
// Every program gets a footer (unless `footer: false`):
//
//   done:  j done     -- programs end by falling through into / jumping to `done`
//   mtrap: j mtrap    -- mtvec points here (direct mode), so an M-mode trap stops the run
//   strap: j strap    -- stvec points here, so a trap delegated to S stops the run
//
// run() executes in chunks until pc is on one of the stop labels (or the core exits for another
// reason: MMIO, WFI halt, SBI...), with a total instruction budget so a hang fails fast.
import { Core } from "../../host/core/core";
import { loadCoreModule } from "../../host/platform/node/core";
import * as L from "../../host/core/layout";
import { assemble, reg, freg, CSR } from "../../host/util/riscv-asm";

export { L, CSR };
export const RAM = 0x80000000;
export const PRV_U = 0;
export const PRV_S = 1;
export const PRV_M = 3;

// mcause values
export const INTR = 1n << 63n;
export const CAUSE = {
  FETCH_MISALIGNED: 0n, FETCH_ACCESS: 1n, ILLEGAL: 2n, BREAKPOINT: 3n, LOAD_MISALIGNED: 4n,
  LOAD_ACCESS: 5n, STORE_MISALIGNED: 6n, STORE_ACCESS: 7n, ECALL_U: 8n, ECALL_S: 9n, ECALL_M: 11n,
  FETCH_PAGE: 12n, LOAD_PAGE: 13n, STORE_PAGE: 15n,
  SSI: INTR | 1n, MSI: INTR | 3n, STI: INTR | 5n, MTI: INTR | 7n, SEI: INTR | 9n, MEI: INTR | 11n,
} as const;

// mstatus bits
export const MS = {
  SIE: 1n << 1n, MIE: 1n << 3n, SPIE: 1n << 5n, MPIE: 1n << 7n, SPP: 1n << 8n,
  MPP: 3n << 11n, FS: 3n << 13n, MPRV: 1n << 17n, SUM: 1n << 18n, MXR: 1n << 19n,
  TVM: 1n << 20n, TW: 1n << 21n, TSR: 1n << 22n, SD: 1n << 63n,
} as const;
export const mpp = (ms: bigint) => Number((ms >> 11n) & 3n);

export const u64 = (v: bigint | number) => BigInt.asUintN(64, BigInt(v));
export const s64 = (v: bigint | number) => BigInt.asIntN(64, BigInt(v));
export const hex = (v: bigint | number) => "0x" + u64(v).toString(16);

export interface MachineOptions {
  ramSize?: number;
  harts?: number;
  /** Frozen/controlled clock (timebase ticks). */
  clock?: () => number;
  /** Append the done/mtrap/strap footer (default true). */
  footer?: boolean;
  /** Start privilege (default M). */
  priv?: 0 | 1 | 3;
  /** Start label (default: the first byte, 0x80000000). */
  start?: string;
  /** Memory virtualization (default nested). */
  paging?: "nested" | "shadow";
  /** Set mstatus.FS = Initial so FP instructions are usable (default false). */
  fp?: boolean;
}

export interface RunResult {
  reason: number;
  /** Name of the stop label pc is on, or null. */
  at: string | null;
  pc: bigint;
  executed: number;
}

const FOOTER = `
  .balign 4
done:
  j done
  .balign 64
mtrap:
  j mtrap
  .balign 64
strap:
  j strap
`;

const EXIT_NAMES = ["BUDGET", "MMIO", "HALT", "TOHOST", "SBI", "ATTENTION"];

export class Machine {
  readonly core: Core;
  labels: Record<string, number> = {};
  private stops = new Map<bigint, string>();

  constructor(src: string | null, readonly opts: MachineOptions = {}) {
    this.core = new Core({
      module: loadCoreModule(),
      ramSize: opts.ramSize ?? 1 << 20,
      harts: opts.harts,
      clock: opts.clock,
      paging: opts.paging,
    });
    if (src !== null) this.load(src);
  }

  /** Assemble and load a program (with footer), point pc at it, mtvec/stvec at the footer. */
  load(src: string): this {
    const footer = this.opts.footer ?? true;
    const res = assemble(footer ? src + "\n" + FOOTER : src, { origin: RAM });
    this.core.phys(RAM, res.bytes.length)!.set(res.bytes);
    this.labels = res.labels;
    this.stops.clear();
    for (const name of ["done", "mtrap", "strap"]) {
      if (name in res.labels) this.stops.set(BigInt(res.labels[name]), name);
    }
    const c = this.core;
    c.setPc(0, BigInt(this.opts.start ? this.label(this.opts.start) : RAM));
    if ("mtrap" in res.labels) c.setCsr(0, CSR.mtvec, res.labels.mtrap);
    if ("strap" in res.labels) c.setCsr(0, CSR.stvec, res.labels.strap);
    if (this.opts.fp) c.setCsr(0, CSR.mstatus, c.csr(0, CSR.mstatus) | (1n << 13n));
    if (this.opts.priv !== undefined) c.setPriv(0, this.opts.priv);
    return this;
  }

  label(name: string): number {
    const a = this.labels[name];
    if (a === undefined) throw new Error(`no label '${name}'`);
    return a;
  }

  /** Also stop when pc reaches this label. */
  stopAt(name: string, addr?: number): this {
    this.stops.set(BigInt(addr ?? this.label(name)), name);
    return this;
  }

  /** Run until a stop label, a non-budget exit, or `budget` instructions. */
  run(budget = 2_000_000, chunk = 10_000, hart = 0): RunResult {
    const c = this.core;
    let total = 0;
    for (;;) {
      const here = this.stops.get(c.pc(hart));
      // A first run() from a stop label is allowed (resuming); only stop after progress.
      if (here && total > 0) return { reason: L.EXIT_BUDGET, at: here, pc: c.pc(hart), executed: total };
      if (total >= budget) return { reason: L.EXIT_BUDGET, at: null, pc: c.pc(hart), executed: total };
      const r = c.run(hart, Math.min(chunk, budget - total));
      const n = c.executed(hart);
      total += Math.max(n, 1);
      if (r !== L.EXIT_BUDGET) {
        return { reason: r, at: this.stops.get(c.pc(hart)) ?? null, pc: c.pc(hart), executed: total };
      }
      // Stopped inside the chunk on a stop label? The label is a self-loop, so pc sits there.
      const at = this.stops.get(c.pc(hart));
      if (at) return { reason: r, at, pc: c.pc(hart), executed: total };
    }
  }

  /** Run and require the program to finish at `done`; on any other stop throw with the trap state. */
  runDone(budget?: number): RunResult {
    const r = this.run(budget);
    if (r.at !== "done") throw new Error(`expected the program to reach 'done', but ${this.describe(r)}`);
    return r;
  }

  /** Run and require it to stop at `mtrap` (or `strap` if s is true); returns the trap CSRs. */
  runTrap(which: "mtrap" | "strap" = "mtrap", budget?: number): TrapInfo {
    const r = this.run(budget);
    if (r.at !== which) throw new Error(`expected a trap to '${which}', but ${this.describe(r)}`);
    return this.trap();
  }

  describe(r: RunResult): string {
    const t = this.trap();
    return `run ended with exit ${EXIT_NAMES[r.reason] ?? r.reason} at pc ${hex(r.pc)} (label ${r.at ?? "-"}), ` +
      `priv ${this.core.priv(0)}; mcause ${hex(t.mcause)} mepc ${hex(t.mepc)} mtval ${hex(t.mtval)}; ` +
      `scause ${hex(t.scause)} sepc ${hex(t.sepc)} stval ${hex(t.stval)}`;
  }

  trap(hart = 0): TrapInfo {
    const c = this.core;
    return {
      mcause: c.csr(hart, CSR.mcause), mepc: c.csr(hart, CSR.mepc), mtval: c.csr(hart, CSR.mtval),
      scause: c.csr(hart, CSR.scause), sepc: c.csr(hart, CSR.sepc), stval: c.csr(hart, CSR.stval),
      mstatus: c.csr(hart, CSR.mstatus), priv: c.priv(hart),
    };
  }

  x(r: string | number): bigint {
    return this.core.x(0, typeof r === "number" ? r : reg(r));
  }
  sx(r: string | number): bigint {
    return s64(this.x(r));
  }
  setX(r: string | number, v: bigint | number): void {
    this.core.setX(0, typeof r === "number" ? r : reg(r), v);
  }
  f(r: string | number): bigint {
    return this.core.f(0, typeof r === "number" ? r : freg(r));
  }
  setF(r: string | number, v: bigint): void {
    this.core.setF(0, typeof r === "number" ? r : freg(r), v);
  }
  csr(name: keyof typeof CSR | number): bigint {
    return this.core.csr(0, typeof name === "number" ? name : CSR[name]);
  }
  setCsr(name: keyof typeof CSR | number, v: bigint | number): void {
    this.core.setCsr(0, typeof name === "number" ? name : CSR[name], v);
  }
  pc(): bigint {
    return this.core.pc(0);
  }

  // ---- guest-physical memory ----
  // Reads take read-only views, so they neither invalidate code nor look like host writes to
  // dirty logging and shadow paging.
  private dv(pa: number, len: number, write = true): DataView {
    const b = write ? this.core.phys(pa, len) : this.core.physRead(pa, len);
    if (!b) throw new Error(`physical ${hex(pa)} is not RAM`);
    return new DataView(b.buffer, b.byteOffset, len);
  }
  r8(pa: number): number { return this.dv(pa, 1, false).getUint8(0); }
  r16(pa: number): number { return this.dv(pa, 2, false).getUint16(0, true); }
  r32(pa: number): number { return this.dv(pa, 4, false).getUint32(0, true); }
  r64(pa: number): bigint { return this.dv(pa, 8, false).getBigUint64(0, true); }
  w8(pa: number, v: number): void { this.dv(pa, 1).setUint8(0, v); }
  w16(pa: number, v: number): void { this.dv(pa, 2).setUint16(0, v, true); }
  w32(pa: number, v: number): void { this.dv(pa, 4).setUint32(0, v >>> 0, true); }
  w64(pa: number, v: bigint | number): void { this.dv(pa, 8).setBigUint64(0, u64(v), true); }
  fill(pa: number, len: number, byte: number): void {
    this.core.phys(pa, len)!.fill(byte);
  }
}

export interface TrapInfo {
  mcause: bigint; mepc: bigint; mtval: bigint;
  scause: bigint; sepc: bigint; stval: bigint;
  mstatus: bigint; priv: number;
}

export function machine(src: string | null, opts: MachineOptions = {}): Machine {
  return new Machine(src, opts);
}

/**
 * Assembly that leaves M-mode for `mode` at `label` through mret (clobbers t0).
 * extra: mstatus bits to set as well (e.g. MPIE).
 */
export function enter(mode: 0 | 1 | 3, label: string): string {
  return `
  li t0, 0x1800
  csrc mstatus, t0
  li t0, ${mode << 11}
  csrs mstatus, t0
  la t0, ${label}
  csrw mepc, t0
  mret
`;
}

// ---- page tables (built by the host in guest RAM) ----

export const PTE = { V: 1n, R: 2n, W: 4n, X: 8n, U: 16n, G: 32n, A: 64n, D: 128n } as const;
export const RWX = PTE.R | PTE.W | PTE.X;
export const AD = PTE.A | PTE.D;

export class PageTables {
  readonly levels: number;
  readonly root: number;
  private next: number;

  constructor(readonly m: Machine, readonly mode: "sv39" | "sv48", pool = 0x80300000) {
    this.levels = mode === "sv39" ? 3 : 4;
    this.next = pool;
    this.root = this.alloc();
  }

  alloc(): number {
    const p = this.next;
    this.next += 4096;
    this.m.fill(p, 4096, 0);
    return p;
  }

  satp(asid = 0): bigint {
    return ((this.mode === "sv39" ? 8n : 9n) << 60n) | (BigInt(asid) << 44n) | BigInt(this.root >>> 12);
  }

  private vpn(va: bigint, level: number): number {
    return Number((va >> BigInt(12 + 9 * level)) & 0x1ffn);
  }

  /** Address of the PTE for va at `level`, creating intermediate tables as needed. */
  pteAddr(va: bigint | number, level = 0, create = true): number {
    const v = u64(va);
    let table = this.root;
    for (let l = this.levels - 1; l > level; l--) {
      const a = table + 8 * this.vpn(v, l);
      let pte = this.m.r64(a);
      if ((pte & PTE.V) === 0n) {
        if (!create) throw new Error(`no table for ${hex(v)} at level ${l}`);
        const t = this.alloc();
        pte = (BigInt(t >>> 12) << 10n) | PTE.V;
        this.m.w64(a, pte);
      } else if ((pte & RWX) !== 0n) {
        throw new Error(`a leaf is in the way for ${hex(v)} at level ${l}`);
      }
      table = Number((pte >> 10n) & 0xfffffffffffn) * 4096;
    }
    return table + 8 * this.vpn(v, level);
  }

  /** Map va -> pa with a leaf at `level` (0 = 4 KiB, 1 = 2 MiB, 2 = 1 GiB, 3 = 512 GiB). */
  map(va: bigint | number, pa: bigint | number, flags: bigint, level = 0): number {
    const a = this.pteAddr(va, level);
    this.m.w64(a, (BigInt(pa) >> 12n << 10n) | flags);
    return a;
  }

  /** Write a raw PTE value at va's `level` slot. */
  setRaw(va: bigint | number, pte: bigint, level = 0): number {
    const a = this.pteAddr(va, level);
    this.m.w64(a, pte);
    return a;
  }

  pte(va: bigint | number, level = 0): bigint {
    return this.m.r64(this.pteAddr(va, level, false));
  }
}

/**
 * Put a value straight into the hart's satp slot (bypassing the CSR write path) and rebuild
 * the core's cached translation state. The paging tests use this so they exercise the MMU even
 * if csrw satp itself is broken; csr.test.ts and paging.test.ts check csrw satp separately.
 */
export function pokeSatp(m: Machine, v: bigint, hart = 0): void {
  m.core.view.setBigUint64(m.core.hartBase(hart) + L.H_SATP, u64(v), true);
  m.core.exports.flushTlb(hart);
}
