// The core's state in a state stream: every hart's registers and CSRs by architectural name and
// the VM-wide fields (the guest's clock, HTIF mailboxes), never a byte range of a hart block,
// so a stream outlives any layout of the core's memory. TLBs, the decoded-code cache, the P2M's
// entries and the shadow tables are caches: a restored VM starts with them empty and they fill
// again as it runs. An LR reservation is dropped (its SC fails and the guest retries, which the
// ISA allows at any time).
import { TIMEBASE_HZ, type Core } from "../core/core";
import * as L from "../core/layout";
import { StateReader, u64State, type DeviceState } from "../devices/state";

const KIND = "cpu";
const VERSION = 1;

/** CSRs restored through the core's own CSR write (as M-mode would write them, so WARL applies), in this order. */
const CSRS: readonly (readonly [string, number])[] = [
  // misa first: it is fixed, and a stream from a core with another ISA is refused.
  ["misa", 0x301],
  ["mstatus", 0x300], ["medeleg", 0x302], ["mideleg", 0x303], ["mie", 0x304], ["mtvec", 0x305],
  ["mcounteren", 0x306], ["menvcfg", 0x30a], ["mcountinhibit", 0x320], ["mscratch", 0x340], ["mepc", 0x341],
  ["mcause", 0x342], ["mtval", 0x343], ["stvec", 0x105], ["scounteren", 0x106], ["senvcfg", 0x10a],
  ["sscratch", 0x140], ["sepc", 0x141], ["scause", 0x142], ["stval", 0x143], ["satp", 0x180], ["stimecmp", 0x14d],
  // Addresses before configurations: a locked entry would refuse its address afterwards.
  ...Array.from({ length: L.PMP_COUNT }, (_, i) => [`pmpaddr${i}`, 0x3b0 + i] as const),
  ["pmpcfg0", 0x3a0], ["pmpcfg2", 0x3a2],
];
const CSR_TSELECT = 0x7a0;
const CSR_TDATA1 = 0x7a1;
const CSR_TDATA2 = 0x7a2;
/** A trigger with dmode set is a debugger's, not the guest's: it is saved as this (disabled). */
const TRIGGER_DISABLED = 15n << 60n;
const CSR_MCYCLE = 0xb00;
const CSR_MINSTRET = 0xb02;
const INHIBIT_CY = 1n;
const INHIBIT_IR = 4n;
/** mip bits the core owns (SSIP, MSIP, STIP, SEIP written by software); the PLIC's lines are the devices' state. */
const CORE_MIP = (1 << 1) | (1 << 3) | (1 << 5) | (1 << 9);
const LOAD_KINDS = [L.LOAD_SIGNED, L.LOAD_UNSIGNED, L.LOAD_FLOAT];

export type CpuState = DeviceState;

function get64(core: Core, at: number): bigint {
  return core.view.getBigUint64(at, true);
}
function set64(core: Core, at: number, v: bigint): void {
  core.view.setBigUint64(at, BigInt.asUintN(64, v), true);
}

/** The core's state, between steps (no hart is running). */
export function saveCpu(core: Core, wallClockMs: number): CpuState {
  const harts = [];
  for (let h = 0; h < core.harts; h++) {
    const base = core.hartBase(h);
    const csr: Record<string, string> = {};
    for (const [name, num] of CSRS) csr[name] = u64State(core.csr(h, num));
    const rd = core.view.getInt32(base + L.H_EXIT_LOAD_RD, true);
    harts.push({
      pc: u64State(core.pc(h)),
      priv: core.priv(h),
      wfi: core.halted(h),
      x: Array.from({ length: 32 }, (_, i) => u64State(core.x(h, i))),
      f: Array.from({ length: 32 }, (_, i) => u64State(core.f(h, i))),
      // Read raw: as a CSR it reads zero while mstatus.FS is off, and the value must survive that.
      fcsr: core.view.getUint32(base + L.H_FCSR, true) & 0xff,
      csr,
      mip: core.view.getInt32(base + L.H_MIP, true) & CORE_MIP,
      mtimecmp: u64State(get64(core, base + L.H_MTIMECMP)),
      instret: u64State(get64(core, base + L.H_INSTRET)),
      mcycle: u64State(core.csr(h, CSR_MCYCLE)),
      minstret: u64State(core.csr(h, CSR_MINSTRET)),
      interruptsTaken: u64State(get64(core, base + L.H_INTR_TAKEN)),
      // The guest's debug triggers (Sdtrig), read raw: selecting one through tselect would change tselect.
      tselect: u64State(get64(core, base + L.H_TSELECT)),
      triggers: Array.from({ length: L.TRIGGER_COUNT }, (_, i) => {
        const at = base + L.H_TDATA + i * 24;
        const t1 = get64(core, at);
        if ((t1 >> 59n) & 1n) return [u64State(TRIGGER_DISABLED), u64State(0n)];
        // Zero (a reset hart's) reads as disabled, as the CSR does.
        return [u64State(t1 === 0n ? TRIGGER_DISABLED : t1), u64State(get64(core, at + 8))];
      }),
      // An MMIO load the host answered, which the core puts in its register on the next run.
      pendingLoad: rd < 0 ? null : {
        register: rd,
        kind: core.view.getInt32(base + L.H_EXIT_LOAD_KIND, true),
        size: core.view.getInt32(base + L.H_EXIT_SIZE, true),
        data: u64State(get64(core, base + L.H_EXIT_DATA)),
      },
    });
  }
  const flags = core.view.getInt32(L.VM_FLAGS, true);
  return {
    kind: KIND,
    version: VERSION,
    harts,
    mtime: u64State(BigInt(Math.floor(core.exports.mtimeNow()))),
    mtimeFrozen: (flags & L.VMF_MTIME_FROZEN) !== 0,
    wallClockMs,
    instretTotal: u64State(get64(core, L.VM_INSTRET_TOTAL)),
    tohost: u64State(get64(core, L.VM_TOHOST)),
    fromhost: u64State(get64(core, L.VM_FROMHOST)),
  };
}

/** How a restored guest's clock goes on: from the instant it was saved, or with the time since then counted (migration). */
export type ClockRestore = { kind: "continue" } | { kind: "wall"; nowMs: number };

/**
 * Check a saved core state against `core` (its hart count) and return what puts it in place.
 * Everything is read and checked first; applying it cannot fail on the stream's account, but
 * a CSR value the core does not hold back as saved (a hostile or foreign stream) is refused.
 */
export function readCpu(core: Core, state: unknown, what: string): (clock: ClockRestore) => void {
  const s = StateReader.open(state, what, KIND, VERSION);
  const list = s.list("harts", core.harts, core.harts);
  const harts = list.map((i) => {
    const h = list.object(i);
    const regs = (field: string) => {
      const r = h.list(field, 32, 32);
      return r.map((j) => r.u64(j));
    };
    const csr = h.object("csr");
    const priv = h.int("priv", 0, 3);
    if (priv === 2) h.reject("priv", "0 (U), 1 (S) or 3 (M)");
    const pending = h.nullable("pendingLoad", (f) => {
      const p = h.object(f);
      const kind = p.int("kind", 0, 2);
      const size = p.int("size", 1, 8);
      if (![1, 2, 4, 8].includes(size) || (kind === L.LOAD_FLOAT && size < 4)) p.reject("size", "1, 2, 4 or 8 (4 or 8 for a float load)");
      if (!LOAD_KINDS.includes(kind)) p.reject("kind", "a load kind");
      return { register: p.int("register", 0, 31), kind, size, data: p.u64("data") };
    });
    return {
      pc: h.u64("pc"), priv: priv as 0 | 1 | 3, wfi: h.bool("wfi"), x: regs("x"), f: regs("f"), fcsr: h.int("fcsr", 0, 0xff),
      csr: CSRS.map(([name, num]) => [name, num, csr.u64(name)] as const),
      mip: h.bits("mip", CORE_MIP), mtimecmp: h.u64("mtimecmp"), instret: h.u64("instret"),
      mcycle: h.u64("mcycle"), minstret: h.u64("minstret"), interruptsTaken: h.u64("interruptsTaken"), pending,
      // Streams from before the triggers have none (every trigger disabled, tselect 0).
      triggers: h.has("triggers") ? readTriggers(h.list("triggers", L.TRIGGER_COUNT, L.TRIGGER_COUNT)) : null,
      tselect: h.has("tselect") ? h.u64("tselect") : 0n,
    };
  });
  const mtime = s.u64("mtime");
  const frozen = s.bool("mtimeFrozen");
  const wallClockMs = s.number("wallClockMs", 0, Number.MAX_SAFE_INTEGER);
  const instretTotal = s.u64("instretTotal");
  const tohost = s.u64("tohost");
  const fromhost = s.u64("fromhost");

  return (clock) => {
    harts.forEach((h, hart) => {
      const base = core.hartBase(hart);
      set64(core, base + L.H_INSTRET, h.instret);
      for (const [name, num, value] of h.csr) {
        core.setCsr(hart, num, value);
        const back = core.csr(hart, num);
        if (back !== value) throw new Error(`${what}: hart ${hart}'s ${name} = 0x${value.toString(16)} is not a value this core holds (it keeps 0x${back.toString(16)})`);
      }
      // The counters' offsets from instret, as the core keeps them (frozen values while inhibited).
      const inhibit = core.csr(hart, 0x320);
      set64(core, base + L.H_MCYCLE_OFFSET, inhibit & INHIBIT_CY ? h.mcycle : h.mcycle - h.instret);
      set64(core, base + L.H_MINSTRET_OFFSET, inhibit & INHIBIT_IR ? h.minstret : h.minstret - h.instret);
      core.view.setUint32(base + L.H_FCSR, h.fcsr, true);
      for (let i = 1; i < 32; i++) core.setX(hart, i, h.x[i]!);
      for (let i = 0; i < 32; i++) core.setF(hart, i, h.f[i]!);
      core.view.setInt32(base + L.H_MIP, h.mip, true);
      set64(core, base + L.H_MTIMECMP, h.mtimecmp);
      set64(core, base + L.H_INTR_TAKEN, h.interruptsTaken);
      // Through the CSRs as M-mode writes them (WARL applies): a value the core does not keep back is refused.
      (h.triggers ?? []).forEach(([t1, t2], i) => {
        if (t1 === TRIGGER_DISABLED && t2 === 0n) return; // as at reset (most harts: triggers are rare)
        core.setCsr(hart, CSR_TSELECT, i);
        core.setCsr(hart, CSR_TDATA2, t2);
        core.setCsr(hart, CSR_TDATA1, t1);
        if (core.csr(hart, CSR_TDATA1) !== t1 || core.csr(hart, CSR_TDATA2) !== t2) {
          throw new Error(`${what}: hart ${hart}'s trigger ${i} (tdata1 0x${t1.toString(16)}) is not one this core holds`);
        }
      });
      core.setCsr(hart, CSR_TSELECT, h.tselect);
      if (core.csr(hart, CSR_TSELECT) !== h.tselect) throw new Error(`${what}: hart ${hart}'s tselect ${h.tselect} is not a trigger of this core`);
      core.setPc(hart, h.pc);
      core.setHalted(hart, h.wfi);
      core.view.setInt32(base + L.H_RESV_VALID, 0, true);
      if (h.pending) {
        core.view.setInt32(base + L.H_EXIT_LOAD_RD, h.pending.register, true);
        core.view.setInt32(base + L.H_EXIT_LOAD_KIND, h.pending.kind, true);
        core.view.setInt32(base + L.H_EXIT_SIZE, h.pending.size, true);
        set64(core, base + L.H_EXIT_DATA, h.pending.data);
      } else core.view.setInt32(base + L.H_EXIT_LOAD_RD, -1, true);
      core.setPriv(hart, h.priv); // flushes the hart's TLBs too
    });
    set64(core, L.VM_INSTRET_TOTAL, instretTotal);
    set64(core, L.VM_TOHOST, tohost);
    set64(core, L.VM_FROMHOST, fromhost);
    // A frozen clock (deterministic tests) stays where it was.
    const elapsedTicks = clock.kind === "wall" && !frozen ? BigInt(Math.max(0, Math.round(((clock.nowMs - wallClockMs) * TIMEBASE_HZ) / 1000))) : 0n;
    core.setMtime(mtime + elapsedTicks, frozen);
    core.exports.flushCode();
  };
}

// The triggers of a saved hart: TRIGGER_COUNT pairs of tdata1, tdata2.
function readTriggers(list: StateReader): [bigint, bigint][] {
  return Array.from({ length: L.TRIGGER_COUNT }, (_, i) => i).map((i) => {
    const pair = list.list(i, 2, 2);
    return [pair.u64(0), pair.u64(1)];
  });
}
