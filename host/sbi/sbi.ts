// The built-in SBI: the firmware of paravirtualized guests, in the host. An ecall from S-mode
// leaves the core as EXIT_SBI (one exit per call, no trip through guest M-mode firmware) and is
// answered here: a0 = error, a1 = value, per the SBI specification v2.0.
import type { Core } from "../core/core";
import { StateReader, u64State, type DeviceState } from "../devices/state";

export const SBI_SUCCESS = 0;
export const SBI_ERR_FAILED = -1;
export const SBI_ERR_NOT_SUPPORTED = -2;
export const SBI_ERR_INVALID_PARAM = -3;
export const SBI_ERR_INVALID_ADDRESS = -5;
export const SBI_ERR_ALREADY_AVAILABLE = -6;
export const SBI_ERR_ALREADY_STARTED = -7;
export const SBI_ERR_ALREADY_STOPPED = -8;

export const EXT = {
  BASE: 0x10,
  TIME: 0x54494d45,
  IPI: 0x735049,
  RFENCE: 0x52464e43,
  HSM: 0x48534d,
  SRST: 0x53525354,
  DBCN: 0x4442434e,
  STA: 0x535441,
} as const;

// Legacy (v0.1) extensions: one function each, result in a0 only.
const LEGACY_SET_TIMER = 0x00;
const LEGACY_CONSOLE_PUTCHAR = 0x01;
const LEGACY_CONSOLE_GETCHAR = 0x02;
const LEGACY_CLEAR_IPI = 0x03;
const LEGACY_SEND_IPI = 0x04;
const LEGACY_REMOTE_FENCE_I = 0x05;
const LEGACY_REMOTE_SFENCE_VMA = 0x06;
const LEGACY_REMOTE_SFENCE_VMA_ASID = 0x07;
const LEGACY_SHUTDOWN = 0x08;

export const SPEC_VERSION = 2 << 24; // v2.0
/** Our implementation ID (not in the SBI registry; chosen far from the assigned ones). */
export const IMPL_ID = 0x5756; // "WV"
export const IMPL_VERSION = 0x000100;

// HSM hart states.
export const HART_STARTED = 0;
export const HART_STOPPED = 1;
export const HART_SUSPENDED = 4;

const CSR_STIMECMP = 0x14d;
const DBCN_MAX = 4096;
const IRQ_SSI = 1;
const SUSPEND_RETENTIVE = 0x00000000;
const SUSPEND_NON_RETENTIVE = 0x80000000;
/** struct sbi_sta_struct: sequence (le32), flags (le32), steal (le64, ns), preempted (u8), padding. */
const STA_BYTES = 64;
const ALL_ONES = (1n << 64n) - 1n;
const KIND = "sbi";
const VERSION = 1;
/** What calls are counted under: the extensions, the legacy ones together, and the rest. */
const CALL_NAMES = [...Object.keys(EXT), "legacy", "unknown"];

/** What the SBI needs from the machine around it. */
export interface SbiPlatform {
  /** Console output (legacy putchar, DBCN). */
  consoleWrite(bytes: Uint8Array): void;
  /** Next console input byte, or -1. */
  consoleRead(): number;
  /** System reset: "shutdown" with a failure flag, or "reboot". */
  reset(kind: "shutdown" | "reboot", failure: boolean): void;
  /** Whether harts a and b run on one thread, with one decoded-code cache (default: all do). */
  sameThread?(a: number, b: number): boolean;
}

interface PendingResume {
  addr: bigint;
  opaque: bigint;
}

export class BuiltinSbi {
  /** HSM state per hart. */
  readonly state: number[];
  private readonly resume: (PendingResume | null)[];
  /** Calls per extension name, for statistics. */
  readonly calls = new Map<string, number>();
  /** STA: where each hart's steal-time record is (guest-physical), or null. */
  private readonly sta: (number | null)[];

  constructor(private readonly core: Core, private readonly platform: SbiPlatform) {
    this.state = Array.from({ length: core.harts }, (_, h) => (h === 0 ? HART_STARTED : HART_STOPPED));
    this.resume = Array.from({ length: core.harts }, () => null);
    this.sta = Array.from({ length: core.harts }, () => null);
  }

  /** Per hart its HSM state, pending resume and STA record; the call counts. */
  save(): DeviceState {
    const resume = (r: PendingResume | null) => (r ? { addr: u64State(r.addr), opaque: u64State(r.opaque) } : null);
    return {
      kind: KIND,
      version: VERSION,
      harts: this.state.map((hsm, h) => ({ hsm, resume: resume(this.resume[h] ?? null), sta: this.sta[h] ?? null })),
      calls: Object.fromEntries(this.calls),
    };
  }

  restore(state: unknown): void {
    const s = StateReader.open(state, "sbi", KIND, VERSION);
    const n = this.state.length;
    const list = s.list("harts", n, n);
    const harts = list.map((h) => {
      const hart = list.object(h);
      const hsm = hart.int("hsm", 0, HART_SUSPENDED);
      if (hsm !== HART_STARTED && hsm !== HART_STOPPED && hsm !== HART_SUSPENDED) hart.reject("hsm", "an HSM state (started, stopped, suspended)");
      const resume = hart.nullable("resume", (f) => {
        const r = hart.object(f);
        const at = { addr: r.u64("addr"), opaque: r.u64("opaque") };
        if (at.addr >= 2n ** 53n || !this.core.ramRead(Number(at.addr), 4)) r.reject("addr", "an address in RAM");
        return at;
      });
      const sta = hart.nullable("sta", (f) => {
        const at = hart.int(f, 0, Number.MAX_SAFE_INTEGER);
        if (at % 64 !== 0 || !this.core.ramRead(at, STA_BYTES)) hart.reject(f, "a 64-byte aligned record in RAM");
        return at;
      });
      return { hsm, resume, sta };
    });
    const counted = s.object("calls");
    const calls = counted.keys().map((name) => {
      if (!CALL_NAMES.includes(name)) counted.reject(name, `the count of a known extension (${CALL_NAMES.join(", ")})`);
      return [name, counted.int(name, 0, Number.MAX_SAFE_INTEGER)] as const;
    });
    harts.forEach((hart, h) => {
      this.state[h] = hart.hsm;
      this.resume[h] = hart.resume;
      this.sta[h] = hart.sta;
    });
    this.calls.clear();
    for (const [name, count] of calls) this.calls.set(name, count);
  }

  /** Back to power-on: only hart 0 runs. */
  reset(): void {
    for (let h = 0; h < this.state.length; h++) {
      this.state[h] = h === 0 ? HART_STARTED : HART_STOPPED;
      this.resume[h] = null;
      this.sta[h] = null;
    }
  }

  /** Prepare hart 0 to enter `entry` in S-mode with a0 = hartid, a1 = the DTB, as firmware would. */
  bootHart(hart: number, entry: number, dtb: number): void {
    this.setupHart(hart);
    this.enterSupervisor(hart, BigInt(entry), BigInt(dtb));
  }

  /** The M-mode state firmware leaves behind: delegation, counters, Sstc. */
  private setupHart(hart: number): void {
    const c = this.core;
    // Every exception S-mode can handle goes to S: misaligned, access and page faults,
    // illegal instruction, breakpoint, ecall from U. (Ecall from S comes to us.)
    c.setCsr(hart, 0x302, 0xb1ff);
    c.setCsr(hart, 0x303, 0x222); // mideleg: SSI, STI, SEI
    c.setCsr(hart, 0x306, 0xffffffff); // mcounteren: cycle, time, instret, hpm
    // scounteren: user code reads cycle, time and instret (the vDSO's clock_gettime uses rdtime);
    // firmware sets this, as OpenSBI does.
    c.setCsr(hart, 0x106, 7);
    c.setCsr(hart, 0x30a, 1n << 63n); // menvcfg.STCE: the guest programs stimecmp itself
    c.setCsr(hart, 0x14d, -1n); // stimecmp: no timer until the guest sets one
  }

  private enterSupervisor(hart: number, pc: bigint, a1: bigint): void {
    const c = this.core;
    c.setCsr(hart, 0x180, 0); // satp: translation off
    const mstatus = c.csr(hart, 0x300);
    c.setCsr(hart, 0x300, mstatus & ~0x2n); // SIE off
    c.setPriv(hart, 1);
    c.setPc(hart, pc);
    c.setX(hart, 10, BigInt(hart));
    c.setX(hart, 11, a1);
    c.setHalted(hart, false);
  }

  private sameThread(a: number, b: number): boolean {
    return this.platform.sameThread?.(a, b) ?? true;
  }

  /** Whether `hart` is started (running, or waiting in WFI): neither stopped nor suspended. */
  started(hart: number): boolean {
    return this.state[hart] === HART_STARTED;
  }

  /** Whether the scheduler may run `hart` (started, or suspended and woken). */
  runnable(hart: number): boolean {
    const s = this.state[hart];
    if (s === HART_STARTED) return this.core.runnable(hart); // not while it waits in WFI
    if (s !== HART_SUSPENDED || !this.core.runnable(hart)) return false;
    // An interrupt woke a suspended hart.
    this.state[hart] = HART_STARTED;
    const r = this.resume[hart];
    if (r) {
      this.resume[hart] = null;
      this.enterSupervisor(hart, r.addr, r.opaque);
    }
    return true;
  }

  /** Answer the EXIT_SBI of `hart`. The core has already advanced pc past the ecall. */
  handle(hart: number): void {
    const c = this.core;
    const eid = Number(c.x(hart, 17));
    const fid = Number(c.x(hart, 16));
    const a = (i: number) => c.x(hart, 10 + i);
    let err = SBI_SUCCESS;
    let value = 0n;
    const ret = (e: number, v: bigint | number = 0n) => { err = e; value = BigInt(v); };
    this.count(eid);

    if (eid <= LEGACY_SHUTDOWN) {
      c.setX(hart, 10, BigInt(this.legacy(hart, eid, a)));
      return;
    }
    switch (eid) {
      case EXT.BASE:
        switch (fid) {
          case 0: ret(SBI_SUCCESS, SPEC_VERSION); break;
          case 1: ret(SBI_SUCCESS, IMPL_ID); break;
          case 2: ret(SBI_SUCCESS, IMPL_VERSION); break;
          case 3: ret(SBI_SUCCESS, this.probe(Number(BigInt.asIntN(64, a(0))))); break;
          case 4: case 5: case 6: ret(SBI_SUCCESS, c.csr(hart, 0xf11 + (fid - 4))); break;
          default: ret(SBI_ERR_NOT_SUPPORTED);
        }
        break;
      case EXT.TIME:
        if (fid === 0) { c.setCsr(hart, CSR_STIMECMP, a(0)); ret(SBI_SUCCESS); } else ret(SBI_ERR_NOT_SUPPORTED);
        break;
      case EXT.IPI:
        if (fid === 0) ret(this.forHarts(a(0), a(1), (h) => c.setMip(h, IRQ_SSI, true)));
        else ret(SBI_ERR_NOT_SUPPORTED);
        break;
      case EXT.RFENCE:
        // fence.i drops the decoded code of the target harts' threads, sfence.vma their TLBs
        // (whole, which is always allowed), each hart itself if it runs on another thread
        // (Core.remoteFenceI, remoteFlushTlb).
        // (A hart on the caller's thread shares its cache, which is what memory holds or, once
        // the VM's harts have run on two threads, what the caller's own fence.i emptied.)
        if (fid === 0) ret(this.forHarts(a(0), a(1), (h) => { if (!this.sameThread(hart, h)) c.remoteFenceI(h); }));
        else if (fid === 1 || fid === 2) ret(this.forHarts(a(0), a(1), (h) => c.remoteFlushTlb(h)));
        else ret(SBI_ERR_NOT_SUPPORTED);
        break;
      case EXT.HSM:
        this.hsm(hart, fid, a, ret);
        break;
      case EXT.SRST:
        if (fid !== 0) { ret(SBI_ERR_NOT_SUPPORTED); break; }
        {
          const type = Number(a(0) & 0xffffffffn);
          const reason = Number(a(1) & 0xffffffffn);
          if (type > 2 || reason > 1) { ret(SBI_ERR_INVALID_PARAM); break; }
          this.platform.reset(type === 0 ? "shutdown" : "reboot", reason === 1);
          ret(SBI_SUCCESS);
        }
        break;
      case EXT.DBCN:
        this.dbcn(fid, a, ret);
        break;
      case EXT.STA:
        this.staSetShmem(hart, fid, a, ret);
        break;
      default:
        ret(SBI_ERR_NOT_SUPPORTED);
    }
    c.setX(hart, 10, BigInt(err));
    c.setX(hart, 11, value);
  }

  // STA (steal-time accounting): the guest names a 64-byte record per hart; reportSteal fills it.
  private staSetShmem(hart: number, fid: number, a: (i: number) => bigint, ret: (e: number, v?: bigint | number) => void): void {
    if (fid !== 0) return ret(SBI_ERR_NOT_SUPPORTED);
    const [lo, hi, flags] = [a(0), a(1), a(2)];
    if (flags !== 0n) return ret(SBI_ERR_INVALID_PARAM);
    if (lo === ALL_ONES && hi === ALL_ONES) {
      this.sta[hart] = null; // disable
      return ret(SBI_SUCCESS);
    }
    if (lo % 64n !== 0n) return ret(SBI_ERR_INVALID_PARAM);
    const record = hi === 0n && lo < 2n ** 53n ? this.core.ramView(Number(lo), STA_BYTES) : null;
    if (!record) return ret(SBI_ERR_INVALID_ADDRESS);
    record.fill(0);
    this.sta[hart] = Number(lo);
    ret(SBI_SUCCESS);
  }

  /**
   * The scheduler's steal time for this VM (ns), written into every registered record with the
   * sequence protocol (odd while the update is under way), so a reader never sees a torn value.
   */
  reportSteal(stealNs: bigint): void {
    for (const at of this.sta) {
      if (at === null) continue;
      const v = this.core.ramView(at, STA_BYTES);
      if (!v) continue;
      const dv = new DataView(v.buffer, v.byteOffset, STA_BYTES);
      const seq = dv.getUint32(0, true);
      dv.setUint32(0, (seq + 1) >>> 0, true);
      dv.setBigUint64(8, stealNs, true);
      dv.setUint8(16, 0); // preempted: not while it is being told
      dv.setUint32(0, (seq + 2) >>> 0, true);
    }
  }

  private probe(eid: number): number {
    return (Object.values(EXT) as number[]).includes(eid) || (eid >= 0 && eid <= LEGACY_SHUTDOWN) ? 1 : 0;
  }

  private count(eid: number): void {
    // Unknown extensions share one counter: a guest choosing a7 must not grow this map.
    const name = eid <= LEGACY_SHUTDOWN ? "legacy" : Object.entries(EXT).find(([, v]) => v === eid)?.[0] ?? "unknown";
    this.calls.set(name, (this.calls.get(name) ?? 0) + 1);
  }

  // Apply `fn` to every hart selected by (mask, base); base = -1 means all harts.
  private forHarts(mask: bigint, base: bigint, fn: (hart: number) => void): number {
    const n = this.core.harts;
    if (BigInt.asIntN(64, base) === -1n) {
      for (let h = 0; h < n; h++) fn(h);
      return SBI_SUCCESS;
    }
    const targets: number[] = [];
    for (let i = 0; i < 64; i++) {
      if (((mask >> BigInt(i)) & 1n) === 0n) continue;
      const h = Number(base) + i;
      if (!Number.isSafeInteger(h) || h >= n) return SBI_ERR_INVALID_PARAM;
      targets.push(h);
    }
    targets.forEach(fn);
    return SBI_SUCCESS;
  }

  private hsm(hart: number, fid: number, a: (i: number) => bigint, ret: (e: number, v?: bigint | number) => void): void {
    const n = this.core.harts;
    switch (fid) {
      case 0: { // hart_start(hartid, start_addr, opaque)
        const target = a(0);
        if (target >= BigInt(n)) return ret(SBI_ERR_INVALID_PARAM);
        const t = Number(target);
        if (this.state[t] !== HART_STOPPED) return ret(SBI_ERR_ALREADY_AVAILABLE);
        if (!this.core.ramRead(Number(a(1)), 4)) return ret(SBI_ERR_INVALID_ADDRESS);
        this.setupHart(t);
        this.enterSupervisor(t, a(1), a(2));
        this.state[t] = HART_STARTED;
        return ret(SBI_SUCCESS);
      }
      case 1: // hart_stop()
        this.state[hart] = HART_STOPPED;
        this.core.setHalted(hart, true);
        return ret(SBI_SUCCESS);
      case 2: { // hart_get_status(hartid)
        const target = a(0);
        if (target >= BigInt(n)) return ret(SBI_ERR_INVALID_PARAM);
        return ret(SBI_SUCCESS, this.state[Number(target)]);
      }
      case 3: { // hart_suspend(type, resume_addr, opaque)
        const type = Number(a(0) & 0xffffffffn);
        if (type !== SUSPEND_RETENTIVE && type !== SUSPEND_NON_RETENTIVE) return ret(SBI_ERR_INVALID_PARAM);
        if (type === SUSPEND_NON_RETENTIVE) {
          if (!this.core.ramRead(Number(a(1)), 4)) return ret(SBI_ERR_INVALID_ADDRESS);
          this.resume[hart] = { addr: a(1), opaque: a(2) };
        }
        // Sleep like WFI until an enabled interrupt is pending.
        this.state[hart] = HART_SUSPENDED;
        this.core.setHalted(hart, true);
        return ret(SBI_SUCCESS);
      }
      default:
        return ret(SBI_ERR_NOT_SUPPORTED);
    }
  }

  private dbcn(fid: number, a: (i: number) => bigint, ret: (e: number, v?: bigint | number) => void): void {
    if (fid === 2) {
      this.platform.consoleWrite(Uint8Array.of(Number(a(0) & 0xffn)));
      return ret(SBI_SUCCESS);
    }
    if (fid !== 0 && fid !== 1) return ret(SBI_ERR_NOT_SUPPORTED);
    // One call moves at most DBCN_MAX bytes (the spec lets it move fewer and say so), so a
    // guest cannot make one exit arbitrarily expensive.
    const len = Number(a(0) > BigInt(DBCN_MAX) ? BigInt(DBCN_MAX) : a(0));
    // On RV64 the address is a1 alone; base_addr_hi would be bits 64 and up.
    const addr = a(1);
    const inRam = a(2) === 0n && addr < 2n ** 53n;
    const buf = !inRam ? null : fid === 0 ? this.core.ramRead(Number(addr), len) : this.core.ramView(Number(addr), len);
    if (!buf) return ret(SBI_ERR_INVALID_PARAM);
    if (fid === 0) {
      this.platform.consoleWrite(buf.slice());
      return ret(SBI_SUCCESS, len);
    }
    let n = 0;
    while (n < len) {
      const b = this.platform.consoleRead();
      if (b < 0) break;
      buf[n++] = b;
    }
    return ret(SBI_SUCCESS, n);
  }

  private legacy(hart: number, eid: number, a: (i: number) => bigint): number {
    const c = this.core;
    // Legacy hart masks are pointers to an unsigned long in guest memory (virtual, but Linux
    // passes them with translation on; we read them as physical only when translation is off).
    const readMask = (ptr: bigint): bigint | null => {
      if (ptr === 0n) return (1n << BigInt(c.harts)) - 1n;
      const bytes = c.csr(hart, 0x180) === 0n && ptr < 2n ** 53n ? c.ramRead(Number(ptr), 8) : null;
      return bytes ? new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true) : null;
    };
    switch (eid) {
      case LEGACY_SET_TIMER:
        c.setCsr(hart, CSR_STIMECMP, a(0));
        return 0;
      case LEGACY_CONSOLE_PUTCHAR:
        this.platform.consoleWrite(Uint8Array.of(Number(a(0) & 0xffn)));
        return 0;
      case LEGACY_CONSOLE_GETCHAR:
        return this.platform.consoleRead();
      case LEGACY_CLEAR_IPI:
        c.setMip(hart, IRQ_SSI, false);
        return 0;
      case LEGACY_SEND_IPI:
      case LEGACY_REMOTE_FENCE_I:
      case LEGACY_REMOTE_SFENCE_VMA:
      case LEGACY_REMOTE_SFENCE_VMA_ASID: {
        const mask = readMask(a(0));
        if (mask === null) return SBI_ERR_INVALID_ADDRESS;
        for (let h = 0; h < c.harts; h++) {
          if (((mask >> BigInt(h)) & 1n) === 0n) continue;
          if (eid === LEGACY_SEND_IPI) c.setMip(h, IRQ_SSI, true);
          else if (eid === LEGACY_REMOTE_FENCE_I) { if (!this.sameThread(hart, h)) c.remoteFenceI(h); }
          else c.remoteFlushTlb(h);
        }
        return 0;
      }
      case LEGACY_SHUTDOWN:
        this.platform.reset("shutdown", false);
        return 0;
    }
    return SBI_ERR_NOT_SUPPORTED;
  }
}
