// The run loop: each instruction is a decoded slot (decode.ts) from the decoded-code cache
// (dcache.ts), found through the page the loop is executing from; it is dispatched with one
// dense switch, and memory is touched through the TLB with a single tag compare. Interrupts,
// the host's attention flag and the clock are looked at only at slice boundaries (every SLICE
// instructions, or at once after a write that can unmask an interrupt).

import {
  H_PC, H_WFI, H_ATTN, H_INSTRET, H_EXIT_REASON, H_EXIT_LOAD_RD, H_EXIT_LOAD_KIND, H_EXIT_DATA,
  H_EXIT_SIZE, H_EXIT_EXECUTED, H_EXIT_RETIRED, H_JIT_RETIRED, H_JIT_STATUS, H_FENCE, H_IN_RUN, H_TLB_REQ, H_TLB_DONE, H_FENCEI_REQ, H_FENCEI_DONE, H_MSTATUS, H_RESV_VALID, H_RESV_ADDR, H_RESV_VALUE, H_F,
  VM_FLAGS, VMF_SBI_IN_HOST, VM_INSTRET_TOTAL, VM_STAT_JIT, JIT_STAT_STRIDE, EXIT_BUDGET, EXIT_MMIO, EXIT_HALT,
  EXIT_TOHOST, EXIT_SBI, EXIT_ATTENTION, EXIT_DEBUG, H_TRIG_ARMED, TA_EXEC, TA_STEP, LOAD_SIGNED, LOAD_UNSIGNED, LOAD_FLOAT, TLB_ENTRIES, JIT_SLOT, DC_TAGS, DC_PAGES, DC_SLOTS, DC_PAGE_BYTES,
} from "./layout";
import {
  H, priv, selectHart, setXreg, setFreg, csr64, tlbRead, tlbWrite, tlbFetch, mtime, takeMtimeWritten,
  wakeupPending, flushTlbRegimes, flushTlbPage, flushTlbAsid, tlbFlushed, clearTlbFlushed, PAGED_REGIMES, PRV_M, PRV_S, PRV_U, MS_TSR, MS_TW,
  charged, takeCharged,
  MS_TVM, MS_FS,
} from "./hart";
import {
  accStatus, excCause, excTval, ACC_OK, ACC_EXC, ACC_MMIO, ACC_READ, ACC_WRITE, loadSlow, storeSlow,
  fetchSlow, fetchPage, resolveAtomic, raise, EXC_ILLEGAL, EXC_BREAKPOINT, EXC_ECALL_U, clearAccStatus,
} from "./mmu";
import { takeTrap, selectInterrupt, mret, sret } from "./trap";
import { csrAccess, csrIllegal, interruptCheckNeeded, clearInterruptCheck, setPendingInstret, markFpDirty } from "./csr";
import { execFp, fpIllegal, arithD } from "./fp";
import { decode } from "./decode";
import * as D from "./decode";
import { dcPage, dcCached, decodeSlot, dcFlush, dcFenceI, dcSampleWhere, dcCountInterpreted, dcMeta, dcScratch } from "./dcache";
import { triggerCheck, triggerWatchesPage, TK_EXEC, CAUSE_DEBUG } from "./trigger";

// Instructions between polls of interrupts, clock and host attention.
const SLICE: i32 = 4096;
// What the budget pays, in instructions' worth of host time, beyond the instructions: a slice
// boundary (the clock is a host call) and a trap. Bulk work is charged where it happens (hart.ts).
const SLICE_WORK: i32 = 16;
const TRAP_WORK: i32 = 8;
const PAGE_MASK: u64 = ~<u64>0xfff;
const TLB_INDEX_MASK: u64 = <u64>(TLB_ENTRIES - 1);

@inline function tlbEntry(table: usize, va: u64): usize {
  return table + (<usize>((va >> 12) & TLB_INDEX_MASK) << 4);
}

// Upper 64 bits of the unsigned 128-bit product.
@inline function mulhu(a: u64, b: u64): u64 {
  const al = a & 0xffffffff, ah = a >> 32, bl = b & 0xffffffff, bh = b >> 32;
  const ll = al * bl, hl = ah * bl, lh = al * bh, hh = ah * bh;
  const mid = (ll >> 32) + (hl & 0xffffffff) + lh;
  return hh + (hl >> 32) + (mid >> 32);
}
@inline function mulh(a: u64, b: u64): u64 {
  let r = mulhu(a, b);
  if (<i64>a < 0) r -= b;
  if (<i64>b < 0) r -= a;
  return r;
}
@inline function mulhsu(a: u64, b: u64): u64 {
  let r = mulhu(a, b);
  if (<i64>a < 0) r -= b;
  return r;
}
@inline function sx32(v: u64): u64 {
  return <u64><i64><i32>v;
}
@inline function orcb(v: u64): u64 {
  let r: u64 = 0;
  for (let i: u64 = 0; i < 64; i += 8) if (((v >> i) & 0xff) != 0) r |= <u64>0xff << i;
  return r;
}

// One AMO on a naturally aligned word (T = i32) or doubleword (T = i64); returns the old value.
// fn is funct5: swap 01, add 00, xor 04, and 0c, or 08, min 10, max 14, minu 18, maxu 1c.
@inline function amo<T>(p: usize, fn: u32, b: T): T {
  switch (fn) {
    case 0x01: return atomic.xchg<T>(p, b);
    case 0x00: return atomic.add<T>(p, b);
    case 0x04: return atomic.xor<T>(p, b);
    case 0x0c: return atomic.and<T>(p, b);
    case 0x08: return atomic.or<T>(p, b);
  }
  // min/max: compare-and-swap until no other hart got in between. Flipping the sign bit turns
  // an unsigned comparison into a signed one.
  const flip: T = fn >= 0x18 ? <T>1 << <T>(sizeof<T>() * 8 - 1) : <T>0;
  const wantMax = (fn & 4) != 0;
  let o: T;
  do {
    o = atomic.load<T>(p);
  } while (atomic.cmpxchg<T>(p, o, ((o ^ flip) > (b ^ flip)) == wantMax ? o : b) != o);
  return o;
}

// Harts on other threads asked this hart for an SBI remote fence: its TLB flushed (sfence.vma),
// its thread's decoded code dropped (fence.i). Each says up to which request it has done.
// Returns whether it did one.
function catchUpRemoteFences(h: usize): bool {
  let did = false;
  const tlb = atomic.load<i32>(h + H_TLB_REQ);
  if (tlb != load<i32>(h + H_TLB_DONE)) {
    flushTlbRegimes(PAGED_REGIMES);
    atomic.store<i32>(h + H_TLB_DONE, tlb);
    did = true;
  }
  const code = atomic.load<i32>(h + H_FENCEI_REQ);
  if (code != load<i32>(h + H_FENCEI_DONE)) {
    dcFlush();
    atomic.store<i32>(h + H_FENCEI_DONE, code);
    did = true;
  }
  return did;
}

// Values held across an exit: the pending MMIO load is completed on the next run().
export function completeMmioLoad(): void {
  const rd = load<i32>(H + H_EXIT_LOAD_RD);
  if (rd < 0) return;
  store<i32>(H + H_EXIT_LOAD_RD, -1);
  const kind = load<i32>(H + H_EXIT_LOAD_KIND);
  const size = load<u32>(H + H_EXIT_SIZE);
  let v = load<u64>(H + H_EXIT_DATA);
  const bits = <u64>size << 3;
  if (bits < 64) {
    v &= (<u64>1 << bits) - 1;
    if (kind == LOAD_SIGNED) v = <u64>((<i64>(v << (64 - bits))) >> (64 - bits));
  }
  if (kind == LOAD_FLOAT) {
    setFreg(rd, size == 4 ? v | 0xffffffff00000000 : v);
    markFpDirty();
  } else if (rd != 0) setXreg(rd, v);
}


// What a case leaves for the common code after the switch (0: it has set pc itself).
const ST_NEXT: i32 = 1; // finished on a slow path: continue at the next instruction
const ST_ILLEGAL: i32 = 2; // illegal instruction: trap at pc
const ST_FAULT: i32 = 3; // memory exception (excCause/excTval): trap at pc
const ST_MMIO: i32 = 4; // host device access: leave run(), continue at the next instruction
const ST_TOHOST: i32 = 5; // HTIF request: likewise

// Register file access by byte offset (decoded slots hold register number * 8).
@inline function rx(h: usize, off: u32): u64 {
  return load<u64>(h + <usize>off);
}
@inline function wx(h: usize, off: u32, v: u64): void {
  store<u64>(h + <usize>off, v);
}

// A load that missed the TLB. f3 as in the LOAD encoding (width 1 << (f3 & 3), 4+ unsigned);
// the value goes to the register at byte offset regOff (of f[] for FP loads).
function loadMiss(va: u64, f3: u32, regOff: u32, fp: bool): i32 {
  const size: u64 = <u64>1 << (f3 & 3);
  let v = loadSlow(va, size);
  if (accStatus != ACC_OK) {
    if (accStatus == ACC_EXC) return ST_FAULT;
    clearAccStatus();
    const rd = <i32>(regOff >> 3);
    store<i32>(H + H_EXIT_LOAD_RD, fp ? rd : rd == 0 ? -1 : rd);
    store<i32>(H + H_EXIT_LOAD_KIND, fp ? LOAD_FLOAT : f3 >= 4 ? LOAD_UNSIGNED : LOAD_SIGNED);
    return ST_MMIO;
  }
  if (fp) {
    store<u64>(H + H_F + <usize>regOff, size == 4 ? v | 0xffffffff00000000 : v);
    markFpDirty();
    return ST_NEXT;
  }
  if (f3 == 0) v = <u64><i64><i8>v;
  else if (f3 == 1) v = <u64><i64><i16>v;
  else if (f3 == 2) v = <u64><i64><i32>v;
  store<u64>(H + <usize>regOff, v);
  return ST_NEXT;
}

function storeMiss(va: u64, size: u64, v: u64): i32 {
  storeSlow(va, size, v);
  if (accStatus == ACC_OK) return ST_NEXT;
  if (accStatus == ACC_EXC) return ST_FAULT;
  const st = accStatus == ACC_MMIO ? ST_MMIO : ST_TOHOST;
  clearAccStatus();
  return st;
}

// ---- the slow paths of translated code (docs/TRANSLATION.md) ----
// A translation calls these when its inline TLB compare misses. They return ST_NEXT (go on),
// JIT_LEAVE (done, but leave the translation: the access did bulk work, perhaps dropping decoded
// code, so the run loop must look again), or ST_FAULT / ST_MMIO / ST_TOHOST as the loop's cases.
const JIT_LEAVE: i32 = 6;

/**
 * Translated code leaving its unit for pc: the table index of the translation to go on in
 * without returning here (its marker at pc, in a page cached and mapped for fetching as things
 * are now), with the unit's page in the top byte, or -1: the run loop goes on, as it does
 * whenever it must look at each fetch (triggers, a single step) or something wants the hart.
 */
export function jitChain(pc: u64, _b: u64, _c: u64): i32 {
  if (load<i32>(H + H_TRIG_ARMED) != 0 || atomic.load<i32>(H + H_ATTN) != 0) return -1;
  const e = tlbEntry(tlbFetch, pc);
  if (load<u64>(e) != (pc & PAGE_MASK)) return -1;
  const slots = dcCached(<usize>(load<u64>(e + 8) + (pc & PAGE_MASK)));
  if (slots == 0) return -1;
  const sp = slots + (<usize>(pc & 0xfff) << 2);
  return load<u8>(sp) == D.OP_JIT ? <i32>fInst(sp) | (<i32>load<u8>(sp + 1) << 24) : -1;
}

// Translated code's four ways into the core share one type, (i64, i64, i64) -> i32 (unused
// arguments are zeros): an engine compiles a wrapper for each distinct type a module imports
// functions of, whatever it is given at instantiation (V8 11: ~0.2 ms each, per module).

/** A load that missed the TLB, from translated code: `arg` is f3 | regOff << 8 (as loadMiss takes them). */
export function jitLoad(va: u64, arg: u64, _c: u64): i32 {
  return jitStatus(loadMiss(va, <u32>arg & 0xff, <u32>(arg >> 8), false));
}

/** A store that missed the TLB, from translated code. */
export function jitStore(va: u64, size: u64, v: u64): i32 {
  return jitStatus(storeMiss(va, size, v));
}

// What a slow path tells translated code. x0 is re-zeroed, as the run loop does after every
// instruction: a load or FP instruction may have written it, and later ones read the hart block.
function jitStatus(st: i32): i32 {
  store<u64>(H, 0);
  return st == ST_NEXT && charged != 0 ? JIT_LEAVE : st;
}

/** An atomic (LR, SC, AMO*): its decoded slot at sp. Returns ST_NEXT or ST_FAULT. */
function execAmo(h: usize, sp: usize): i32 {
  // Read the slot before resolving: a write to this instruction's own page drops the page's
  // slots (and zeroes them under sp).
  const inst = fInst(sp);
  const rd = fRd(sp);
  const b = rx(h, fRs2(sp));
  const fn = inst >> 27;
  const va = rx(h, fRs1(sp));
  const size: u64 = (inst & 0x1000) != 0 ? 8 : 4;
  if (fn == 2) { // LR
    const host = resolveAtomic(va, size, ACC_READ);
    if (host < 0) return ST_FAULT;
    // Wasm atomic loads only zero-extend: sign-extend the word explicitly.
    let v: u64;
    if (size == 4) {
      const w: i32 = atomic.load<i32>(<usize>host);
      v = <u64><i64>w;
    } else v = atomic.load<u64>(<usize>host);
    store<i32>(h + H_RESV_VALID, 1);
    store<u64>(h + H_RESV_ADDR, <u64>host);
    store<u64>(h + H_RESV_VALUE, v);
    wx(h, rd, v);
    return ST_NEXT;
  }
  const host = resolveAtomic(va, size, ACC_WRITE);
  if (host < 0) return ST_FAULT;
  const p = <usize>host;
  if (fn == 3) { // SC: succeeds only if the reservation holds and memory still has the LR value
    let ok = load<i32>(h + H_RESV_VALID) != 0 && load<u64>(h + H_RESV_ADDR) == <u64>host;
    if (ok) {
      const expect = load<u64>(h + H_RESV_VALUE);
      if (size == 4) ok = atomic.cmpxchg<i32>(p, <i32>expect, <i32>b) == <i32>expect;
      else ok = atomic.cmpxchg<u64>(p, expect, b) == expect;
    }
    store<i32>(h + H_RESV_VALID, 0);
    wx(h, rd, ok ? 0 : 1);
    return ST_NEXT;
  }
  wx(h, rd, size == 4 ? <u64><i64>amo<i32>(p, fn, <i32>b) : <u64>amo<i64>(p, fn, <i64>b));
  return ST_NEXT;
}

/**
 * A floating-point instruction (loads and stores included): its decoded slot at sp. Returns
 * ST_NEXT, ST_ILLEGAL (FS off, a reserved rounding mode), or a load's or store's slow-path status.
 */
function execFpSlot(h: usize, sp: usize): i32 {
  if ((csr64(H_MSTATUS) & MS_FS) == 0) return ST_ILLEGAL;
  const op = <u32>load<u8>(sp) & 0x7f;
  if (op == D.OP_FLW || op == D.OP_FLD) {
    const dbl = op == D.OP_FLD;
    const va = rx(h, fRs1(sp)) + fImm(sp);
    const e = tlbEntry(tlbRead, va);
    if (load<u64>(e) != (va & (PAGE_MASK | (dbl ? 7 : 3)))) return loadMiss(va, dbl ? 3 : 2, fRd(sp), true);
    const p = <usize>(va + load<u64>(e + 8));
    wx(h + H_F, fRd(sp), dbl ? load<u64>(p) : <u64>load<u32>(p) | 0xffffffff00000000);
    markFpDirty();
    return ST_NEXT;
  }
  if (op == D.OP_FSW || op == D.OP_FSD) {
    const dbl = op == D.OP_FSD;
    const va = rx(h, fRs1(sp)) + fImm(sp);
    const v = rx(h + H_F, fRs2(sp));
    const e = tlbEntry(tlbWrite, va);
    if (load<u64>(e) != (va & (PAGE_MASK | (dbl ? 7 : 3)))) return storeMiss(va, dbl ? 8 : 4, v);
    const p = <usize>(va + load<u64>(e + 8));
    if (dbl) store<u64>(p, v); else store<u32>(p, <u32>v);
    return ST_NEXT;
  }
  if (op == D.OP_FP) {
    execFp(fInst(sp));
    return fpIllegal ? ST_ILLEGAL : ST_NEXT;
  }
  return arithD(op - D.OP_FADD_D, fRd(sp), fRs1(sp), fRs2(sp), fInst(sp)) ? ST_NEXT : ST_ILLEGAL;
}

/**
 * An instruction translated code has the core run (F and D, atomics; its decoded slot, at pc),
 * as the interpreter runs it, on the registers in the hart block. The slot comes as a value: in
 * the cache, a block's first slot is its OP_JIT marker. An illegal instruction is raised here, so
 * the translation sees ST_FAULT.
 */
export function jitExec(slot: u64, pc: u64, _c: u64): i32 {
  const sp = JIT_SLOT + dcMeta; // this thread's
  store<u64>(sp, slot);
  const st = (<u32>slot & 0x7f) == D.OP_AMO ? execAmo(H, sp) : execFpSlot(H, sp);
  if (st == ST_ILLEGAL) {
    raise(EXC_ILLEGAL, rawInstruction(pc, <u32>slot & 0xff));
    return ST_FAULT;
  }
  return jitStatus(st);
}

// The page the run loop executes from: its virtual address (1 = none: pc is even, so pc - 1
// never passes the in-page test), host offset and decoded slots.
let pageVa: u64 = 1;
let pageHost: usize = 0;
let pageSlots: usize = 0;

/**
 * The decoded slot for pc when the loop has none at hand: pc left the current page, or its slot
 * is empty. Looks the page up (and caches it) as needed. Returns the slot's address (dcScratch()
 * for an instruction that is not cached), or 0 with accStatus set if the fetch faults.
 */
// A translation returned to the run loop since fetchDecode last ran; page changes it caused.
let leftTranslation = false;
let crossings: u32 = 0;
const CROSS_SAMPLE: u32 = 256; // a power of two

function fetchDecode(pc: u64): usize {
  const fromTranslation = leftTranslation;
  leftTranslation = false;
  // Execute triggers and host breakpoints (trigger.ts), before the instruction runs.
  const armed = load<i32>(H + H_TRIG_ARMED);
  if ((armed & TA_EXEC) != 0) {
    const cause = triggerCheck(TK_EXEC, pc, 1);
    if (cause != 0) {
      raise(cause, pc);
      return 0;
    }
  }
  let off = pc - pageVa;
  if (rotr<u64>(off, 1) > 0x7ff) {
    pageVa = 1;
    let host: i64;
    const e = tlbEntry(tlbFetch, pc);
    if (load<u64>(e) == (pc & PAGE_MASK)) host = <i64>(load<u64>(e + 8) + (pc & PAGE_MASK));
    else {
      host = fetchPage(pc);
      if (host == -1) return 0;
      if (host == -2) return decodeUncached(pc); // a PMP boundary splits the page
    }
    pageHost = <usize>host;
    pageSlots = dcPage(pageHost);
    // A loop across a page boundary runs mostly in one page's translation, and slices that end
    // there are not sampled: where it starts in this page is known from the jumps into it that
    // translations make. One in CROSS_SAMPLE of those marks its place.
    if (fromTranslation && (++crossings & (CROSS_SAMPLE - 1)) == 0) dcSampleWhere(pageSlots, pc & 0xfff);
    pageVa = pc & PAGE_MASK;
    off = pc & 0xfff;
  }
  const slot = pageSlots + (<usize>off << 2);
  // A page with an execute trigger or a host breakpoint, or any page in a single step: every fetch
  // comes here (the loop does not keep the page), and a translation (an OP_JIT slot) is not entered.
  if ((armed & (TA_EXEC | TA_STEP)) != 0 && ((armed & TA_STEP) != 0 || triggerWatchesPage(TK_EXEC, pageVa))) {
    pageVa = 1;
    const host = pageHost + <usize>off;
    if (off == 0xffe && (load<u16>(host) & 3) == 3) return decodeUncached(pc);
    const op = load<u8>(slot);
    if (op != 0 && op != D.OP_JIT) return slot;
    const sp = dcScratch();
    store<u64>(sp, decode(<u32>load<u16>(host) | (<u32>load<u16>(host + 2) << 16)));
    return sp;
  }
  if (load<u8>(slot) != 0) return slot;
  const host = pageHost + <usize>off;
  // A 32-bit instruction in the last halfword continues on the next page, which may map
  // anywhere (or fault): fetch it through translation every time.
  if (off == 0xffe && (load<u16>(host) & 3) == 3) return decodeUncached(pc);
  if (decodeSlot(slot, pageHost, host)) return slot;
  // The page was invalidated under the loop: run this one from scratch, look the page up again.
  pageVa = 1;
  return dcScratch();
}

function decodeUncached(pc: u64): usize {
  const bits = fetchSlow(pc);
  if (accStatus != ACC_OK) return 0;
  const sp = dcScratch();
  store<u64>(sp, decode(bits));
  return sp;
}

// The instruction bits at pc, for mtval on an illegal-instruction trap.
function rawInstruction(pc: u64, op: u32): u64 {
  const bits = fetchSlow(pc);
  clearAccStatus();
  return <u64>((op & D.COMPRESSED) != 0 ? bits & 0xffff : bits);
}

// Fields of the decoded slot at sp (decode.ts).
@inline function fRd(sp: usize): u32 {
  return <u32>load<u8>(sp, 1);
}
@inline function fRs1(sp: usize): u32 {
  return <u32>load<u8>(sp, 2);
}
@inline function fRs2(sp: usize): u32 {
  return <u32>load<u8>(sp, 3);
}
@inline function fImm(sp: usize): u64 {
  return <u64><i64>load<i32>(sp, 4);
}
@inline function fInst(sp: usize): u32 {
  return load<u32>(sp, 4);
}

// The hart that ran last. Harts of a VM take turns on one thread, so when another hart ran
// since this one's LR, it may have stored to the reservation set: the SC must then fail (a
// value comparison alone would miss an A-B-A store). Slices are long, so LR/SC loops still
// make progress.
let lastRunHart: i32 = -1;

// Traps taken in the current slice (counted in `count` too: they did not retire). A global, not
// a local of run(): traps are rare, and one more live local in the loop costs every instruction.
let sliceTraps: i32 = 0;
/**
 * The slice boundary's interrupt check reads the clock (a call out to the host) at most once per
 * this much work, and again whenever a run starts or the guest writes mtime (mtimeWritten): in code
 * that traps or writes CSRs often, slices are a few instructions long and reading the clock at
 * each was ~4% of a Linux boot. A timer interrupt is taken at most this much work late;
 * what the guest reads (time, mtime, sip/mip) is always read fresh.
 */
const NOW_REFRESH: i32 = 1024;

/**
 * Run the hart for at most `budget` units of work (instructions, traps and bulk work: see the
 * end of the slice loop; at least one instruction or trap runs). Returns an EXIT_* reason; the
 * details are in the hart's run block. The host answers MMIO loads by writing H_EXIT_DATA before
 * the next run.
 */
export function run(hart: i32, budget: i32): i32 {
  selectHart(hart);
  const h = H;
  if (hart != lastRunHart) {
    store<i32>(h + H_RESV_VALID, 0);
    lastRunHart = hart;
  }
  // In run() before looking for flush requests: a requester that sees neither waits for nothing.
  atomic.store<i32>(h + H_IN_RUN, 1);
  catchUpRemoteFences(h);
  completeMmioLoad();
  takeCharged(); // what host calls did since the last run() is not this run's work
  let pc = load<u64>(h + H_PC);
  let exit: i32 = -1;
  let remaining: i32 = budget;
  let executed: i64 = 0; // instructions and traps
  let retired: i64 = 0;
  let fetchVa: u64 = 1; // the page being executed (see pageVa) and its slots
  let now: u64 = 0; // mtime as of the last read, and the work done since
  let nowAge: i32 = NOW_REFRESH;
  let slots: usize = 0;
  let interpreted: i32 = 0; // instructions the last slice ran without translations
  let pageFrom: i32 = 0; // the slice's interpreted instructions (count - translated) when it came to `slots`' page

  while (true) {
    // ---- slice boundary: host, halt, interrupts ----
    // Where interpreting takes time: what the translation tier compiles. How much, per page, is
    // counted (dcCountInterpreted, as the loop leaves a page and at the end of a slice); where in
    // the page is sampled: a slice that interpreted at least half a full slice's instructions
    // marks the place it ended at, one spent mostly in translated code does not, nor does one cut
    // short (bulk work, xRET, CSR writes that may unmask an interrupt).
    if (fetchVa != 1 && interpreted >= (SLICE >> 1)) dcSampleWhere(slots, pc - fetchVa);
    if (atomic.load<i32>(h + H_ATTN) != 0) { exit = EXIT_ATTENTION; break; }
    if (catchUpRemoteFences(h)) fetchVa = 1;
    if (takeMtimeWritten() || nowAge >= NOW_REFRESH) {
      now = mtime();
      nowAge = 0;
    }
    if (load<i32>(h + H_WFI) != 0) {
      if (!wakeupPending(h, now)) { exit = EXIT_HALT; break; }
      store<i32>(h + H_WFI, 0);
    }
    // A debugger's single step runs the instruction at pc, not an interrupt handler (as QEMU's).
    const irq = (load<i32>(h + H_TRIG_ARMED) & TA_STEP) != 0 ? -1 : selectInterrupt(now);
    if (irq >= 0) {
      pc = takeTrap(<u64>irq, 0, pc, true);
      fetchVa = 1;
    }
    if (remaining <= 0) { exit = EXIT_BUDGET; break; }
    let limit: i32 = remaining < SLICE ? remaining : SLICE;
    let count: i32 = 0; // instructions and traps: the work the budget pays for
    let translated: i32 = 0; // of them, instructions translated code retired
    pageFrom = 0;
    sliceTraps = 0;
    clearInterruptCheck();

    while (count < limit) {
      count++;
      // ---- fetch: the decoded slot ----
      const off = pc - fetchVa;
      let sp: usize = 0;
      let op: u32 = 0;
      if (rotr<u64>(off, 1) <= 0x7ff) {
        sp = slots + (<usize>off << 2);
        op = <u32>load<u8>(sp);
      }
      if (op == 0) {
        pageVa = fetchVa;
        sp = fetchDecode(pc);
        fetchVa = pageVa;
        if (pageSlots != slots) { // another page: what was interpreted in the one left heats it
          const done = count - 1 - translated;
          dcCountInterpreted(slots, done - pageFrom);
          pageFrom = done;
        }
        slots = pageSlots;
        if (charged != 0) limit = count; // caching the page cost: account for it now
        if (sp == 0) {
          clearAccStatus();
          sliceTraps++;
          if (excCause == CAUSE_DEBUG) { exit = EXIT_DEBUG; limit = count; continue; }
          pc = takeTrap(excCause, excTval, pc, false);
          fetchVa = 1;
          continue;
        }
        op = <u32>load<u8>(sp);
      }
      const npc = pc + 4 - ((<u64>op >> 6) & 2);
      let st: i32 = 0;

      // Cases read the slot's fields (fRd(sp), ...) before anything that can write memory: a
      // write to the instruction's own page drops the page's decoded slots.
      switch (op & 0x7f) {
        case D.OP_NOP: pc = npc; break;
        case D.OP_FENCE: atomic.add<i32>(h + H_FENCE, 0); pc = npc; break; // harts on other threads see stores before later loads
        // ---- loads and stores ----
        case D.OP_LB: {
          const va = rx(h, fRs1(sp)) + fImm(sp);
          const e = tlbEntry(tlbRead, va);
          if (load<u64>(e) == (va & PAGE_MASK)) { wx(h, fRd(sp), <u64><i64>load<i8>(<usize>(va + load<u64>(e + 8)))); pc = npc; }
          else st = loadMiss(va, 0, fRd(sp), false);
          break;
        }
        case D.OP_LH: {
          const va = rx(h, fRs1(sp)) + fImm(sp);
          const e = tlbEntry(tlbRead, va);
          if (load<u64>(e) == (va & (PAGE_MASK | 1))) { wx(h, fRd(sp), <u64><i64>load<i16>(<usize>(va + load<u64>(e + 8)))); pc = npc; }
          else st = loadMiss(va, 1, fRd(sp), false);
          break;
        }
        case D.OP_LW: {
          const va = rx(h, fRs1(sp)) + fImm(sp);
          const e = tlbEntry(tlbRead, va);
          if (load<u64>(e) == (va & (PAGE_MASK | 3))) { wx(h, fRd(sp), <u64><i64>load<i32>(<usize>(va + load<u64>(e + 8)))); pc = npc; }
          else st = loadMiss(va, 2, fRd(sp), false);
          break;
        }
        case D.OP_LD: {
          const va = rx(h, fRs1(sp)) + fImm(sp);
          const e = tlbEntry(tlbRead, va);
          if (load<u64>(e) == (va & (PAGE_MASK | 7))) { wx(h, fRd(sp), load<u64>(<usize>(va + load<u64>(e + 8)))); pc = npc; }
          else st = loadMiss(va, 3, fRd(sp), false);
          break;
        }
        case D.OP_LBU: {
          const va = rx(h, fRs1(sp)) + fImm(sp);
          const e = tlbEntry(tlbRead, va);
          if (load<u64>(e) == (va & PAGE_MASK)) { wx(h, fRd(sp), <u64>load<u8>(<usize>(va + load<u64>(e + 8)))); pc = npc; }
          else st = loadMiss(va, 4, fRd(sp), false);
          break;
        }
        case D.OP_LHU: {
          const va = rx(h, fRs1(sp)) + fImm(sp);
          const e = tlbEntry(tlbRead, va);
          if (load<u64>(e) == (va & (PAGE_MASK | 1))) { wx(h, fRd(sp), <u64>load<u16>(<usize>(va + load<u64>(e + 8)))); pc = npc; }
          else st = loadMiss(va, 5, fRd(sp), false);
          break;
        }
        case D.OP_LWU: {
          const va = rx(h, fRs1(sp)) + fImm(sp);
          const e = tlbEntry(tlbRead, va);
          if (load<u64>(e) == (va & (PAGE_MASK | 3))) { wx(h, fRd(sp), <u64>load<u32>(<usize>(va + load<u64>(e + 8)))); pc = npc; }
          else st = loadMiss(va, 6, fRd(sp), false);
          break;
        }
        case D.OP_FLW: case D.OP_FLD: case D.OP_FSW: case D.OP_FSD: case D.OP_FP:
        case D.OP_FADD_D: case D.OP_FSUB_D: case D.OP_FMUL_D: case D.OP_FDIV_D:
          st = execFpSlot(h, sp);
          break;
        case D.OP_SB: {
          const va = rx(h, fRs1(sp)) + fImm(sp);
          const e = tlbEntry(tlbWrite, va);
          if (load<u64>(e) == (va & PAGE_MASK)) { store<u8>(<usize>(va + load<u64>(e + 8)), <u8>rx(h, fRs2(sp))); pc = npc; }
          else st = storeMiss(va, 1, rx(h, fRs2(sp)));
          break;
        }
        case D.OP_SH: {
          const va = rx(h, fRs1(sp)) + fImm(sp);
          const e = tlbEntry(tlbWrite, va);
          if (load<u64>(e) == (va & (PAGE_MASK | 1))) { store<u16>(<usize>(va + load<u64>(e + 8)), <u16>rx(h, fRs2(sp))); pc = npc; }
          else st = storeMiss(va, 2, rx(h, fRs2(sp)));
          break;
        }
        case D.OP_SW: {
          const va = rx(h, fRs1(sp)) + fImm(sp);
          const e = tlbEntry(tlbWrite, va);
          if (load<u64>(e) == (va & (PAGE_MASK | 3))) { store<u32>(<usize>(va + load<u64>(e + 8)), <u32>rx(h, fRs2(sp))); pc = npc; }
          else st = storeMiss(va, 4, rx(h, fRs2(sp)));
          break;
        }
        case D.OP_SD: {
          const va = rx(h, fRs1(sp)) + fImm(sp);
          const e = tlbEntry(tlbWrite, va);
          if (load<u64>(e) == (va & (PAGE_MASK | 7))) { store<u64>(<usize>(va + load<u64>(e + 8)), rx(h, fRs2(sp))); pc = npc; }
          else st = storeMiss(va, 8, rx(h, fRs2(sp)));
          break;
        }
        // ---- register-immediate ----
        case D.OP_ADDI: wx(h, fRd(sp), rx(h, fRs1(sp)) + fImm(sp)); pc = npc; break;
        case D.OP_SLTI: wx(h, fRd(sp), <i64>rx(h, fRs1(sp)) < <i64>fImm(sp) ? 1 : 0); pc = npc; break;
        case D.OP_SLTIU: wx(h, fRd(sp), rx(h, fRs1(sp)) < fImm(sp) ? 1 : 0); pc = npc; break;
        case D.OP_XORI: wx(h, fRd(sp), rx(h, fRs1(sp)) ^ fImm(sp)); pc = npc; break;
        case D.OP_ORI: wx(h, fRd(sp), rx(h, fRs1(sp)) | fImm(sp)); pc = npc; break;
        case D.OP_ANDI: wx(h, fRd(sp), rx(h, fRs1(sp)) & fImm(sp)); pc = npc; break;
        case D.OP_SLLI: wx(h, fRd(sp), rx(h, fRs1(sp)) << fImm(sp)); pc = npc; break;
        case D.OP_SRLI: wx(h, fRd(sp), rx(h, fRs1(sp)) >> fImm(sp)); pc = npc; break;
        case D.OP_SRAI: wx(h, fRd(sp), <u64>(<i64>rx(h, fRs1(sp)) >> <i64>fImm(sp))); pc = npc; break;
        case D.OP_BCLRI: wx(h, fRd(sp), rx(h, fRs1(sp)) & ~(<u64>1 << fImm(sp))); pc = npc; break;
        case D.OP_BSETI: wx(h, fRd(sp), rx(h, fRs1(sp)) | (<u64>1 << fImm(sp))); pc = npc; break;
        case D.OP_BINVI: wx(h, fRd(sp), rx(h, fRs1(sp)) ^ (<u64>1 << fImm(sp))); pc = npc; break;
        case D.OP_BEXTI: wx(h, fRd(sp), (rx(h, fRs1(sp)) >> fImm(sp)) & 1); pc = npc; break;
        case D.OP_RORI: wx(h, fRd(sp), rotr(rx(h, fRs1(sp)), fImm(sp))); pc = npc; break;
        case D.OP_CLZ: wx(h, fRd(sp), clz(rx(h, fRs1(sp)))); pc = npc; break;
        case D.OP_CTZ: wx(h, fRd(sp), ctz(rx(h, fRs1(sp)))); pc = npc; break;
        case D.OP_CPOP: wx(h, fRd(sp), popcnt(rx(h, fRs1(sp)))); pc = npc; break;
        case D.OP_SEXTB: wx(h, fRd(sp), <u64><i64><i8>rx(h, fRs1(sp))); pc = npc; break;
        case D.OP_SEXTH: wx(h, fRd(sp), <u64><i64><i16>rx(h, fRs1(sp))); pc = npc; break;
        case D.OP_ORCB: wx(h, fRd(sp), orcb(rx(h, fRs1(sp)))); pc = npc; break;
        case D.OP_REV8: wx(h, fRd(sp), bswap(rx(h, fRs1(sp)))); pc = npc; break;
        case D.OP_ADDIW: wx(h, fRd(sp), sx32(rx(h, fRs1(sp)) + fImm(sp))); pc = npc; break;
        case D.OP_SLLIW: wx(h, fRd(sp), sx32(rx(h, fRs1(sp)) << fImm(sp))); pc = npc; break;
        case D.OP_SRLIW: wx(h, fRd(sp), sx32(<u64>(<u32>rx(h, fRs1(sp)) >> <u32>fImm(sp)))); pc = npc; break;
        case D.OP_SRAIW: wx(h, fRd(sp), sx32(<u64>(<i32>rx(h, fRs1(sp)) >> <i32>fImm(sp)))); pc = npc; break;
        case D.OP_SLLIUW: wx(h, fRd(sp), (rx(h, fRs1(sp)) & 0xffffffff) << fImm(sp)); pc = npc; break;
        case D.OP_CLZW: wx(h, fRd(sp), <u64>clz(<u32>rx(h, fRs1(sp)))); pc = npc; break;
        case D.OP_CTZW: wx(h, fRd(sp), <u64>ctz(<u32>rx(h, fRs1(sp)))); pc = npc; break;
        case D.OP_CPOPW: wx(h, fRd(sp), <u64>popcnt(<u32>rx(h, fRs1(sp)))); pc = npc; break;
        case D.OP_RORIW: wx(h, fRd(sp), sx32(<u64>rotr<u32>(<u32>rx(h, fRs1(sp)), <u32>fImm(sp)))); pc = npc; break;
        case D.OP_LUI: wx(h, fRd(sp), fImm(sp)); pc = npc; break;
        case D.OP_AUIPC: wx(h, fRd(sp), pc + fImm(sp)); pc = npc; break;
        // ---- register-register ----
        case D.OP_ADD: wx(h, fRd(sp), rx(h, fRs1(sp)) + rx(h, fRs2(sp))); pc = npc; break;
        case D.OP_SUB: wx(h, fRd(sp), rx(h, fRs1(sp)) - rx(h, fRs2(sp))); pc = npc; break;
        case D.OP_SLL: wx(h, fRd(sp), rx(h, fRs1(sp)) << (rx(h, fRs2(sp)) & 63)); pc = npc; break;
        case D.OP_SLT: wx(h, fRd(sp), <i64>rx(h, fRs1(sp)) < <i64>rx(h, fRs2(sp)) ? 1 : 0); pc = npc; break;
        case D.OP_SLTU: wx(h, fRd(sp), rx(h, fRs1(sp)) < rx(h, fRs2(sp)) ? 1 : 0); pc = npc; break;
        case D.OP_XOR: wx(h, fRd(sp), rx(h, fRs1(sp)) ^ rx(h, fRs2(sp))); pc = npc; break;
        case D.OP_SRL: wx(h, fRd(sp), rx(h, fRs1(sp)) >> (rx(h, fRs2(sp)) & 63)); pc = npc; break;
        case D.OP_SRA: wx(h, fRd(sp), <u64>(<i64>rx(h, fRs1(sp)) >> <i64>(rx(h, fRs2(sp)) & 63))); pc = npc; break;
        case D.OP_OR: wx(h, fRd(sp), rx(h, fRs1(sp)) | rx(h, fRs2(sp))); pc = npc; break;
        case D.OP_AND: wx(h, fRd(sp), rx(h, fRs1(sp)) & rx(h, fRs2(sp))); pc = npc; break;
        case D.OP_MUL: wx(h, fRd(sp), rx(h, fRs1(sp)) * rx(h, fRs2(sp))); pc = npc; break;
        case D.OP_MULH: wx(h, fRd(sp), mulh(rx(h, fRs1(sp)), rx(h, fRs2(sp)))); pc = npc; break;
        case D.OP_MULHSU: wx(h, fRd(sp), mulhsu(rx(h, fRs1(sp)), rx(h, fRs2(sp)))); pc = npc; break;
        case D.OP_MULHU: wx(h, fRd(sp), mulhu(rx(h, fRs1(sp)), rx(h, fRs2(sp)))); pc = npc; break;
        case D.OP_DIV: {
          const a = rx(h, fRs1(sp)), b = rx(h, fRs2(sp));
          wx(h, fRd(sp), b == 0 ? <u64>-1 : a == 0x8000000000000000 && b == <u64>-1 ? a : <u64>(<i64>a / <i64>b));
          pc = npc;
          break;
        }
        case D.OP_DIVU: { const a = rx(h, fRs1(sp)), b = rx(h, fRs2(sp)); wx(h, fRd(sp), b == 0 ? <u64>-1 : a / b); pc = npc; break; }
        case D.OP_REM: {
          const a = rx(h, fRs1(sp)), b = rx(h, fRs2(sp));
          wx(h, fRd(sp), b == 0 ? a : a == 0x8000000000000000 && b == <u64>-1 ? 0 : <u64>(<i64>a % <i64>b));
          pc = npc;
          break;
        }
        case D.OP_REMU: { const a = rx(h, fRs1(sp)), b = rx(h, fRs2(sp)); wx(h, fRd(sp), b == 0 ? a : a % b); pc = npc; break; }
        case D.OP_SH1ADD: wx(h, fRd(sp), (rx(h, fRs1(sp)) << 1) + rx(h, fRs2(sp))); pc = npc; break;
        case D.OP_SH2ADD: wx(h, fRd(sp), (rx(h, fRs1(sp)) << 2) + rx(h, fRs2(sp))); pc = npc; break;
        case D.OP_SH3ADD: wx(h, fRd(sp), (rx(h, fRs1(sp)) << 3) + rx(h, fRs2(sp))); pc = npc; break;
        case D.OP_ANDN: wx(h, fRd(sp), rx(h, fRs1(sp)) & ~rx(h, fRs2(sp))); pc = npc; break;
        case D.OP_ORN: wx(h, fRd(sp), rx(h, fRs1(sp)) | ~rx(h, fRs2(sp))); pc = npc; break;
        case D.OP_XNOR: wx(h, fRd(sp), ~(rx(h, fRs1(sp)) ^ rx(h, fRs2(sp)))); pc = npc; break;
        case D.OP_MIN: { const a = rx(h, fRs1(sp)), b = rx(h, fRs2(sp)); wx(h, fRd(sp), <i64>a < <i64>b ? a : b); pc = npc; break; }
        case D.OP_MINU: { const a = rx(h, fRs1(sp)), b = rx(h, fRs2(sp)); wx(h, fRd(sp), a < b ? a : b); pc = npc; break; }
        case D.OP_MAX: { const a = rx(h, fRs1(sp)), b = rx(h, fRs2(sp)); wx(h, fRd(sp), <i64>a > <i64>b ? a : b); pc = npc; break; }
        case D.OP_MAXU: { const a = rx(h, fRs1(sp)), b = rx(h, fRs2(sp)); wx(h, fRd(sp), a > b ? a : b); pc = npc; break; }
        case D.OP_ROL: wx(h, fRd(sp), rotl(rx(h, fRs1(sp)), rx(h, fRs2(sp)) & 63)); pc = npc; break;
        case D.OP_ROR: wx(h, fRd(sp), rotr(rx(h, fRs1(sp)), rx(h, fRs2(sp)) & 63)); pc = npc; break;
        case D.OP_BCLR: wx(h, fRd(sp), rx(h, fRs1(sp)) & ~(<u64>1 << (rx(h, fRs2(sp)) & 63))); pc = npc; break;
        case D.OP_BEXT: wx(h, fRd(sp), (rx(h, fRs1(sp)) >> (rx(h, fRs2(sp)) & 63)) & 1); pc = npc; break;
        case D.OP_BINV: wx(h, fRd(sp), rx(h, fRs1(sp)) ^ (<u64>1 << (rx(h, fRs2(sp)) & 63))); pc = npc; break;
        case D.OP_BSET: wx(h, fRd(sp), rx(h, fRs1(sp)) | (<u64>1 << (rx(h, fRs2(sp)) & 63))); pc = npc; break;
        case D.OP_ADDW: wx(h, fRd(sp), sx32(rx(h, fRs1(sp)) + rx(h, fRs2(sp)))); pc = npc; break;
        case D.OP_SUBW: wx(h, fRd(sp), sx32(rx(h, fRs1(sp)) - rx(h, fRs2(sp)))); pc = npc; break;
        case D.OP_SLLW: wx(h, fRd(sp), sx32(<u64>(<i32>rx(h, fRs1(sp)) << (<i32>rx(h, fRs2(sp)) & 31)))); pc = npc; break;
        case D.OP_SRLW: wx(h, fRd(sp), sx32(<u64>(<u32>rx(h, fRs1(sp)) >> (<u32>rx(h, fRs2(sp)) & 31)))); pc = npc; break;
        case D.OP_SRAW: wx(h, fRd(sp), sx32(<u64>(<i32>rx(h, fRs1(sp)) >> (<i32>rx(h, fRs2(sp)) & 31)))); pc = npc; break;
        case D.OP_MULW: wx(h, fRd(sp), sx32(<u64>(<i32>rx(h, fRs1(sp)) * <i32>rx(h, fRs2(sp))))); pc = npc; break;
        case D.OP_DIVW: {
          const a = <i32>rx(h, fRs1(sp)), b = <i32>rx(h, fRs2(sp));
          wx(h, fRd(sp), b == 0 ? <u64>-1 : a == i32.MIN_VALUE && b == -1 ? sx32(<u64>a) : sx32(<u64>(a / b)));
          pc = npc;
          break;
        }
        case D.OP_DIVUW: { const a = <u32>rx(h, fRs1(sp)), b = <u32>rx(h, fRs2(sp)); wx(h, fRd(sp), b == 0 ? <u64>-1 : sx32(<u64>(a / b))); pc = npc; break; }
        case D.OP_REMW: {
          const a = <i32>rx(h, fRs1(sp)), b = <i32>rx(h, fRs2(sp));
          wx(h, fRd(sp), b == 0 ? sx32(<u64>a) : a == i32.MIN_VALUE && b == -1 ? 0 : sx32(<u64>(a % b)));
          pc = npc;
          break;
        }
        case D.OP_REMUW: { const a = <u32>rx(h, fRs1(sp)), b = <u32>rx(h, fRs2(sp)); wx(h, fRd(sp), sx32(<u64>(b == 0 ? a : a % b))); pc = npc; break; }
        case D.OP_ADDUW: wx(h, fRd(sp), (rx(h, fRs1(sp)) & 0xffffffff) + rx(h, fRs2(sp))); pc = npc; break;
        case D.OP_ZEXTH: wx(h, fRd(sp), rx(h, fRs1(sp)) & 0xffff); pc = npc; break;
        case D.OP_SH1ADDUW: wx(h, fRd(sp), ((rx(h, fRs1(sp)) & 0xffffffff) << 1) + rx(h, fRs2(sp))); pc = npc; break;
        case D.OP_SH2ADDUW: wx(h, fRd(sp), ((rx(h, fRs1(sp)) & 0xffffffff) << 2) + rx(h, fRs2(sp))); pc = npc; break;
        case D.OP_SH3ADDUW: wx(h, fRd(sp), ((rx(h, fRs1(sp)) & 0xffffffff) << 3) + rx(h, fRs2(sp))); pc = npc; break;
        case D.OP_ROLW: wx(h, fRd(sp), sx32(<u64>rotl<u32>(<u32>rx(h, fRs1(sp)), <u32>rx(h, fRs2(sp)) & 31))); pc = npc; break;
        case D.OP_RORW: wx(h, fRd(sp), sx32(<u64>rotr<u32>(<u32>rx(h, fRs1(sp)), <u32>rx(h, fRs2(sp)) & 31))); pc = npc; break;
        // ---- control transfer ----
        case D.OP_BEQ: pc = rx(h, fRs1(sp)) == rx(h, fRs2(sp)) ? pc + fImm(sp) : npc; break;
        case D.OP_BNE: pc = rx(h, fRs1(sp)) != rx(h, fRs2(sp)) ? pc + fImm(sp) : npc; break;
        case D.OP_BLT: pc = <i64>rx(h, fRs1(sp)) < <i64>rx(h, fRs2(sp)) ? pc + fImm(sp) : npc; break;
        case D.OP_BGE: pc = <i64>rx(h, fRs1(sp)) >= <i64>rx(h, fRs2(sp)) ? pc + fImm(sp) : npc; break;
        case D.OP_BLTU: pc = rx(h, fRs1(sp)) < rx(h, fRs2(sp)) ? pc + fImm(sp) : npc; break;
        case D.OP_BGEU: pc = rx(h, fRs1(sp)) >= rx(h, fRs2(sp)) ? pc + fImm(sp) : npc; break;
        case D.OP_JAL: wx(h, fRd(sp), npc); pc += fImm(sp); break;
        case D.OP_JALR: {
          const target = (rx(h, fRs1(sp)) + fImm(sp)) & ~<u64>1;
          wx(h, fRd(sp), npc);
          pc = target;
          break;
        }
        // ---- floating point, atomics ----
        case D.OP_AMO:
          st = execAmo(h, sp);
          break;
        // ---- translated code ----
        case D.OP_JIT: {
          // A translation runs whole blocks (at least one, so a block may end the slice past its
          // limit by less than its length), chaining within its page and on into the translations
          // of others (jitChain), each adding what it retired, and returns the next pc.
          store<i32>(h + H_JIT_RETIRED, 0);
          pc = call_indirect<u64>(fInst(sp), h, fetchVa, pc, tlbRead, tlbWrite, limit - count + 1, tlbFetch, <i32>load<u8>(sp + 1));
          const js = load<i32>(h + H_JIT_STATUS);
          const jr = load<i32>(h + H_JIT_RETIRED);
          leftTranslation = true;
          const stat = <usize>VM_STAT_JIT + <usize>hart * JIT_STAT_STRIDE; // the hart's own counters
          store<u64>(stat, load<u64>(stat) + <u64>jr);
          store<u64>(stat + 8, load<u64>(stat + 8) + 1);
          // count++ above stands for the instruction that faulted, else for one that retired
          count += jr - (js == ST_FAULT ? 0 : 1);
          translated += jr;
          if (js == ST_FAULT) st = ST_FAULT; // pc is the instruction's
          else if (js >= ST_MMIO) { exit = js == ST_MMIO ? EXIT_MMIO : EXIT_TOHOST; limit = count; } // pc is the next one's
          if (charged != 0) limit = count;
          break;
        }
        // ---- system ----
        case D.OP_FENCE_I:
          dcFenceI();
          fetchVa = 1;
          pc = npc;
          limit = count; // a flush costs: account for it now
          break;
        case D.OP_ECALL:
          if (priv == PRV_S && (load<i32>(VM_FLAGS) & VMF_SBI_IN_HOST) != 0) {
            exit = EXIT_SBI; limit = count; pc = npc;
            break;
          }
          pc = takeTrap(EXC_ECALL_U + <u64>priv, 0, pc, false);
          fetchVa = 1; sliceTraps++; // ecall does not retire
          break;
        case D.OP_EBREAK:
          pc = takeTrap(EXC_BREAKPOINT, pc, pc, false);
          fetchVa = 1; sliceTraps++; // nor does ebreak
          break;
        case D.OP_MRET:
          if (priv != PRV_M) { st = ST_ILLEGAL; break; }
          pc = mret();
          fetchVa = 1; limit = count;
          break;
        case D.OP_SRET:
          if (priv == PRV_U || (priv == PRV_S && (csr64(H_MSTATUS) & MS_TSR) != 0)) { st = ST_ILLEGAL; break; }
          pc = sret();
          fetchVa = 1; limit = count;
          break;
        case D.OP_WFI:
          if (priv == PRV_U || (priv == PRV_S && (csr64(H_MSTATUS) & MS_TW) != 0)) { st = ST_ILLEGAL; break; }
          pc = npc;
          if (!wakeupPending(h, mtime())) store<i32>(h + H_WFI, 1);
          limit = count;
          break;
        case D.OP_SFENCE_VMA:
          if (priv == PRV_U || (priv == PRV_S && (csr64(H_MSTATUS) & MS_TVM) != 0)) { st = ST_ILLEGAL; break; }
          if (fRs1(sp) != 0) flushTlbPage(rx(h, fRs1(sp)));
          else if (fRs2(sp) != 0) flushTlbAsid(rx(h, fRs2(sp)));
          else flushTlbRegimes(PAGED_REGIMES);
          fetchVa = 1;
          pc = npc;
          limit = count; // a flush costs: account for it now
          break;
        case D.OP_CSR: {
          const inst = fInst(sp);
          const rd = fRd(sp);
          const f3 = (inst >> 12) & 7;
          const operand: u64 = f3 >= 5 ? <u64>(fRs1(sp) >> 3) : rx(h, fRs1(sp));
          const op = f3 & 3;
          setPendingInstret(<u64>(count - 1 - sliceTraps));
          const old = csrAccess(inst >> 20, op, operand, op == 1 || fRs1(sp) != 0);
          setPendingInstret(0);
          if (csrIllegal) { st = ST_ILLEGAL; break; }
          wx(h, rd, old);
          pc = npc;
          if (tlbFlushed) { // satp, PMP: the code page must be translated again
            clearTlbFlushed();
            fetchVa = 1;
            limit = count; // and the flush costs: account for it now
          }
          if (interruptCheckNeeded) limit = count;
          break;
        }
        default: // OP_ILLEGAL
          st = ST_ILLEGAL;
      }
      if (st != 0) {
        if (st == ST_NEXT) {
          pc = npc;
          if (charged != 0) limit = count; // a store invalidated code, or a table write was emulated
        }
        else if (st >= ST_MMIO) {
          exit = st == ST_MMIO ? EXIT_MMIO : EXIT_TOHOST;
          limit = count;
          pc = npc;
        } else {
          // The instruction did not retire: trap with pc at it.
          const tval = st == ST_ILLEGAL ? rawInstruction(pc, op) : excTval;
          const cause = st == ST_ILLEGAL ? EXC_ILLEGAL : excCause;
          clearAccStatus();
          sliceTraps++;
          if (cause == CAUSE_DEBUG) { exit = EXIT_DEBUG; limit = count; } // the debugger's: stop at pc
          else {
            pc = takeTrap(cause, tval, pc, false);
            fetchVa = 1;
          }
        }
      }
      store<u64>(h, 0); // x0
    }
    // The budget pays for work, not only retired instructions: traps, slice boundaries and bulk
    // work count too, so a guest trapping for ever (a handler that faults) or making every
    // instruction expensive (flush storms, self-modifying code) still ends the run in about the
    // time an ordinary budget takes. Only instructions that retired count in instret.
    const work = count + sliceTraps * TRAP_WORK + SLICE_WORK + takeCharged();
    interpreted = count - translated;
    dcCountInterpreted(slots, interpreted - pageFrom);
    executed += work;
    retired += count - sliceTraps;
    remaining -= work;
    nowAge += work;
    store<u64>(h + H_INSTRET, load<u64>(h + H_INSTRET) + <u64>(count - sliceTraps));
    if (exit >= 0) break;
  }
  store<u64>(h + H_PC, pc);
  store<i32>(h + H_EXIT_REASON, exit);
  store<i64>(h + H_EXIT_EXECUTED, executed);
  store<i64>(h + H_EXIT_RETIRED, retired);
  atomic.add<i64>(VM_INSTRET_TOTAL, retired); // harts of the VM may run on several threads
  atomic.store<i32>(h + H_IN_RUN, 0);
  return exit;
}
