// A debugger's view of a machine (what a GDB stub asks of it): registers by the RISC-V debug
// numbering GDB uses, memory through a hart's current translation (changing nothing the guest
// can see), breakpoints, hardware breakpoints and watchpoints on the core's debug triggers, and
// single steps. Platform-free: the pCPU that owns the machine runs these between its steps.
import type { Core } from "../core/core";
import * as L from "../core/layout";
import type { DebugStop } from "./virt";

/** GDB's RISC-V register numbers: x0-x31, then pc, f0-f31, the CSRs from 65, and the privilege. */
export const REG_PC = 32;
export const REG_F0 = 33;
export const REG_CSR0 = 65;
export const REG_PRIV = REG_CSR0 + 4096;

/** A hardware breakpoint (exec) or a watchpoint on [addr, addr + len). */
export interface Watch {
  kind: "exec" | "write" | "read" | "access";
  addr: bigint;
  len: number;
}

/** What a debugger asks of a machine (one request, one answer; see debugRequest). */
export type DebugRequest =
  | { op: "read-registers"; hart: number; regs: number[] }
  | { op: "write-register"; hart: number; reg: number; value: bigint }
  | { op: "read-memory"; hart: number; addr: bigint; len: number }
  | { op: "write-memory"; hart: number; addr: bigint; data: Uint8Array }
  | { op: "breakpoints"; pcs: bigint[] }
  | { op: "watches"; list: Watch[] }
  | { op: "step"; hart: number }
  | { op: "hold"; harts: number[] };

/** The machine as the debugger needs it. */
export interface DebuggedMachine {
  readonly core: Core;
  debugStep(hart: number): DebugStop | null;
}

// mcontrol6 fields (assembly/trigger.ts): the debugger's triggers enter debug mode, in every mode.
const TYPE6 = 6n << 60n;
const TYPE_DISABLED = 15n << 60n;
const DMODE = 1n << 59n;
const ACTION_DEBUG = 1n << 12n;
const CHAIN = 1n << 11n;
const MODES = (1n << 6n) | (1n << 4n) | (1n << 3n); // M, S, U
const MATCH_NAPOT = 1n << 7n;
const MATCH_GE = 2n << 7n;
const MATCH_LT = 3n << 7n;
const ACCESS: Record<Watch["kind"], bigint> = { exec: 4n, write: 2n, read: 1n, access: 3n };
const CSR_TSELECT = 0x7a0;
const CSR_TDATA1 = 0x7a1;
const CSR_TDATA2 = 0x7a2;
const MAX_LEN = 1 << 20;

// The trigger values (tdata1, tdata2) that watch `w`: one trigger for an address or an aligned
// power-of-two range (NAPOT), a chain of two (>= and <) for any other range.
function triggersFor(w: Watch): [bigint, bigint][] {
  const base = TYPE6 | DMODE | ACTION_DEBUG | MODES | ACCESS[w.kind];
  const len = BigInt(w.len);
  if (w.len <= 1) return [[base, w.addr]];
  if ((w.len & (w.len - 1)) === 0 && w.addr % len === 0n) return [[base | MATCH_NAPOT, w.addr | (len / 2n - 1n)]];
  return [[base | MATCH_GE | CHAIN, w.addr], [base | MATCH_LT, BigInt.asUintN(64, w.addr + len)]];
}

export class MachineDebugger {
  private breakpoints: bigint[] = [];
  /** Harts the debugger keeps stopped while the others run (GDB's vCont;c:N for one thread). */
  private readonly heldHarts = new Set<number>();
  private watches: Watch[] = [];
  /** Trigger slots the debugger holds (from the top, so a guest's own triggers keep the low ones). */
  private slots = 0;

  constructor(private readonly machine: DebuggedMachine) {}

  private get core(): Core {
    return this.machine.core;
  }

  /** Keep `harts` stopped when the VM runs (none: every hart runs). */
  hold(harts: readonly number[]): void {
    this.heldHarts.clear();
    for (const h of harts) this.heldHarts.add(h);
  }

  held(h: number): boolean {
    return this.heldHarts.size > 0 && this.heldHarts.has(h);
  }

  /** Software breakpoints: the core's breakpoint list, on every hart. */
  setBreakpoints(pcs: readonly bigint[]): boolean {
    if (pcs.length > L.DEBUG_BP_MAX) return false;
    this.breakpoints = [...pcs];
    for (let h = 0; h < this.core.harts; h++) this.core.setDebugBreakpoints(h, this.breakpoints);
    return true;
  }

  /** Hardware breakpoints and watchpoints on the triggers, on every hart; false (nothing changed) if they do not fit. */
  setWatches(list: readonly Watch[]): boolean {
    const values = list.flatMap(triggersFor);
    if (values.length > L.TRIGGER_COUNT) return false;
    this.watches = [...list];
    this.apply(values);
    return true;
  }

  private apply(values: [bigint, bigint][]): void {
    const core = this.core;
    const first = L.TRIGGER_COUNT - values.length;
    for (let h = 0; h < core.harts; h++) {
      // Give back what was held (to the guest: dmode 0, disabled), then take what is needed.
      for (let i = L.TRIGGER_COUNT - this.slots; i < L.TRIGGER_COUNT; i++) {
        core.debugSetCsr(h, CSR_TSELECT, BigInt(i));
        core.debugSetCsr(h, CSR_TDATA1, TYPE_DISABLED);
        core.debugSetCsr(h, CSR_TDATA2, 0n);
      }
      values.forEach(([t1, t2], k) => {
        core.debugSetCsr(h, CSR_TSELECT, BigInt(first + k));
        core.debugSetCsr(h, CSR_TDATA1, TYPE_DISABLED | DMODE);
        core.debugSetCsr(h, CSR_TDATA2, t2);
        core.debugSetCsr(h, CSR_TDATA1, t1);
      });
      core.debugSetCsr(h, CSR_TSELECT, 0n);
    }
    this.slots = values.length;
  }

  /** A watchpoint stopped hart h before its access: run that instruction with nothing armed, then arm again. */
  runPastAccess(h: number): void {
    const bps = this.breakpoints, watches = this.watches;
    this.setBreakpoints([]);
    this.apply([]);
    try {
      this.machine.debugStep(h);
    } finally {
      this.setBreakpoints(bps);
      this.apply(watches.flatMap(triggersFor));
    }
  }

  readRegister(h: number, n: number): bigint | null {
    const core = this.core;
    if (n >= 0 && n < 32) return core.x(h, n);
    if (n === REG_PC) return core.pc(h);
    if (n >= REG_F0 && n < REG_F0 + 32) return core.f(h, n - REG_F0);
    if (n === REG_PRIV) return BigInt(core.priv(h));
    if (n >= REG_CSR0 && n < REG_CSR0 + 4096) {
      const csr = n - REG_CSR0;
      // fflags, frm and fcsr raw: as CSRs they read nothing while mstatus.FS is off.
      const fcsr = BigInt(core.view.getUint32(core.hartBase(h) + L.H_FCSR, true) & 0xff);
      if (csr === 1) return fcsr & 0x1fn;
      if (csr === 2) return fcsr >> 5n;
      if (csr === 3) return fcsr;
      return core.csr(h, csr);
    }
    return null;
  }

  writeRegister(h: number, n: number, v: bigint): boolean {
    const core = this.core;
    if (n === 0) return true; // x0 stays zero, as on the hart
    if (n > 0 && n < 32) core.setX(h, n, v);
    else if (n === REG_PC) core.setPc(h, v & ~1n);
    else if (n >= REG_F0 && n < REG_F0 + 32) core.setF(h, n - REG_F0, v);
    else if (n === REG_PRIV) {
      if (v !== 0n && v !== 1n && v !== 3n) return false;
      core.setPriv(h, Number(v) as 0 | 1 | 3);
    } else if (n >= REG_CSR0 && n < REG_CSR0 + 4096) {
      try {
        core.setCsr(h, n - REG_CSR0, v);
      } catch {
        return false;
      }
    } else return false;
    return true;
  }

  readMemory(h: number, addr: bigint, len: number): Uint8Array | null {
    if (!(len >= 0 && len <= MAX_LEN)) return null;
    return this.core.debugRead(h, addr, len);
  }

  writeMemory(h: number, addr: bigint, data: Uint8Array): boolean {
    if (data.length > MAX_LEN) return false;
    return this.core.debugWrite(h, addr, data);
  }
}

/** Carry out one request on `machine` (between its steps); what it answers. */
export function debugRequest(machine: DebuggedMachine & { readonly debugger: MachineDebugger }, req: DebugRequest): unknown {
  const d = machine.debugger;
  const harts = machine.core.harts;
  if ("hart" in req && !(Number.isInteger(req.hart) && req.hart >= 0 && req.hart < harts)) throw new Error(`no hart ${req.hart} (the VM has ${harts})`);
  switch (req.op) {
    case "read-registers":
      machine.core.completePendingLoad(req.hart);
      return req.regs.map((n) => d.readRegister(req.hart, n));
    case "write-register": return d.writeRegister(req.hart, req.reg, req.value);
    case "read-memory": return d.readMemory(req.hart, req.addr, req.len);
    case "write-memory": return d.writeMemory(req.hart, req.addr, req.data);
    case "breakpoints": return d.setBreakpoints(req.pcs);
    case "watches": return d.setWatches(req.list);
    case "step": return machine.debugStep(req.hart);
    case "hold":
      if (!req.harts.every((h) => Number.isInteger(h) && h >= 0 && h < harts)) throw new Error(`harts are 0 to ${harts - 1}`);
      return d.hold(req.harts);
  }
}
