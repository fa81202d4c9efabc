// Address translation and every memory access that misses the TLB: the Sv39/Sv48 walk with
// A/D updates, PMP, the physical map (RAM, boot ROM, in-core CLINT, host devices, holes), and
// TLB refills. The hot paths in cpu.ts only compare a TLB tag; everything else happens here.

import {
  H_MSTATUS, H_SATP, H_PMPCFG, H_PMPADDR, PMP_COUNT, TLB_ENTRIES, VM_TOHOST, RAM_GPA, CLINT_GPA, CLINT_SIZE, MMIO_MAP, H_EXIT_ADDR,
  H_EXIT_DATA, H_EXIT_SIZE, H_EXIT_WRITE, H_MIP, H_MTIMECMP, VM_MTIME_OFFSET, VM_FLAGS,
  VMF_MTIME_FROZEN, VM_MTIME_FROZEN, VM_PAGING, PAGING_SHADOW, VM_STAT_TLB_MISS, VM_STAT_WALK_REFS,
  VM_STAT_SHADOW_FAULT, H_TRIG_ARMED, TA_DATA,
} from "./layout";
import {
  H, priv, csr64, dataRegime, fetchRegime, dataPaged, fetchPaged, tlbRead, tlbWrite, tlbFetch,
  REGIME_U, REGIME_M, REGIME_S_SUM, PRV_U, PRV_S, PRV_M, MS_MXR, hartBase, nharts, mtime,
  IRQ_MSI, noteSuperpage, noteTlbLive, kickHart, charge, noteMtimeWritten,
} from "./hart";
import { dcInvalidate, noteWriteMapping } from "./dcache";
import {
  p2mHost, p2mLeaf, p2mLeafPtr, frameToGpa, dirtyFault, noteDirty, stat, statAdd, P2M_W, P2M_LOG,
  P2M_PT, isRam,
} from "./p2m";
import { shadowLookup, shadowInstall, shadowWatchTable, shadowTableWrite, shadowEpoch } from "./shadow";
import { triggerCheck, triggerWatchesPage, TK_LOAD, TK_STORE } from "./trigger";

// Outcome of a slow-path access.
export const ACC_OK: i32 = 0;
export const ACC_EXC: i32 = 1; // exception: excCause / excTval
export const ACC_MMIO: i32 = 2; // host device access: run block filled, leave run()
export const ACC_TOHOST: i32 = 3; // HTIF tohost written: leave run() after the instruction

export let accStatus: i32 = ACC_OK;
export let excCause: u64 = 0;
export let excTval: u64 = 0;

// Access kinds (match the TLB table order).
export const ACC_READ: i32 = 0;
export const ACC_WRITE: i32 = 1;
export const ACC_FETCH: i32 = 2;

// Exception causes.
export const EXC_FETCH_ACCESS: u64 = 1;
export const EXC_ILLEGAL: u64 = 2;
export const EXC_BREAKPOINT: u64 = 3;
export const EXC_LOAD_MISALIGNED: u64 = 4;
export const EXC_LOAD_ACCESS: u64 = 5;
export const EXC_STORE_MISALIGNED: u64 = 6;
export const EXC_STORE_ACCESS: u64 = 7;
export const EXC_ECALL_U: u64 = 8;
export const EXC_FETCH_PAGE: u64 = 12;
export const EXC_LOAD_PAGE: u64 = 13;
export const EXC_STORE_PAGE: u64 = 15;

const PTE_V: u64 = 1;
const PTE_R: u64 = 2;
const PTE_W: u64 = 4;
const PTE_X: u64 = 8;
const PTE_U: u64 = 16;
const PTE_A: u64 = 64;
const PTE_D: u64 = 128;
// Bits 63:54 are reserved (Svpbmt/Svnapot are not implemented) and must be zero.
const PTE_RESERVED: u64 = 0xffc0000000000000;

// Whether the last slow-path fetch found its whole page uniformly executable (so the run loop
// may cache the page).
let lastFetchCacheable: bool = false;

export function clearAccStatus(): void {
  accStatus = ACC_OK;
}

export function raise(cause: u64, tval: u64): void {
  accStatus = ACC_EXC;
  excCause = cause;
  excTval = tval;
}

@inline function pageFault(acc: i32): u64 {
  return acc == ACC_FETCH ? EXC_FETCH_PAGE : acc == ACC_WRITE ? EXC_STORE_PAGE : EXC_LOAD_PAGE;
}
@inline function accessFault(acc: i32): u64 {
  return acc == ACC_FETCH ? EXC_FETCH_ACCESS : acc == ACC_WRITE ? EXC_STORE_ACCESS : EXC_LOAD_ACCESS;
}

@inline function regimePriv(regime: i32): i32 {
  return regime == REGIME_M ? PRV_M : regime == REGIME_U ? PRV_U : PRV_S;
}

// ---- physical map ----

@inline function isDevicePage(pa: u64): bool {
  if (pa >= <u64>RAM_GPA) return false;
  const page = <usize>(pa >> 12);
  return (load<u8>(MMIO_MAP + (page >> 3)) & (1 << <u8>(page & 7))) != 0;
}

// ---- PMP ----

// Returns 1 (allowed), 0 (denied), or -1 when [lo, hi) straddles an entry's boundary, so the
// result is not uniform over the range (only possible for ranges wider than one access).
function pmpCheck(lo: u64, hi: u64, acc: i32, p: i32): i32 {
  let anyActive = false;
  let prevTop: u64 = 0;
  for (let i = 0; i < PMP_COUNT; i++) {
    const cfg = <u32>load<u8>(H + H_PMPCFG + <usize>i);
    const addr = load<u64>(H + H_PMPADDR + (<usize>i << 3));
    const a = (cfg >> 3) & 3;
    let start: u64 = 0;
    let end: u64 = 0; // exclusive; 0 with start 0 and full = whole space
    let full = false;
    if (a == 1) { // TOR
      start = prevTop;
      end = addr << 2;
    } else if (a == 2) { // NA4
      start = addr << 2;
      end = start + 4;
    } else if (a == 3) { // NAPOT
      const t = ctz(~addr);
      if (t >= 54) { full = true; } else {
        start = (addr & ~((<u64>1 << t) - 1)) << 2;
        end = start + (<u64>1 << (t + 3));
      }
    }
    prevTop = addr << 2;
    if (a == 0) continue;
    anyActive = true;
    let inside = full || (lo >= start && hi <= end);
    if (!inside) {
      if (lo < end && hi > start) return -1; // partial overlap
      continue;
    }
    if (p == PRV_M && (cfg & 0x80) == 0) return 1;
    const perm = acc == ACC_READ ? 1 : acc == ACC_WRITE ? 2 : 4;
    return (cfg & perm) != 0 ? 1 : 0;
  }
  // No entry matched. M-mode is allowed; S/U are denied only once PMP is in use (QEMU does
  // the same, so guests that never program PMP, like S-mode kernels on the built-in SBI, run).
  if (p == PRV_M || !anyActive) return 1;
  return 0;
}

// ---- translation ----

// Whether a leaf PTE's U/R/W/X bits allow the access in `regime` (SUM, MXR as mstatus says).
function leafAllows(pte: u64, acc: i32, regime: i32): bool {
  const p = regimePriv(regime);
  const userPage = (pte & PTE_U) != 0;
  if (acc == ACC_FETCH) return (pte & PTE_X) != 0 && (userPage ? p == PRV_U : p != PRV_U);
  if (userPage ? (p == PRV_S && regime != REGIME_S_SUM) : p == PRV_U) return false;
  if (acc == ACC_WRITE) return (pte & PTE_W) != 0;
  const mxr = (csr64(H_MSTATUS) & MS_MXR) != 0;
  return (pte & PTE_R) != 0 || (mxr && (pte & PTE_X) != 0);
}

// Physical address of va for an access of kind acc in `regime`, or 0 with the exception raised:
// the guest's walk, every page-table read going through the P2M (the nested walk). lastLeafLevel
// and lastLeafPte tell the leaf found (level 0 = 4 KiB page). With `watch` (a shadow fault) the
// tables walked are handed to the shadow MMU to protect.
export let lastLeafLevel: i32 = 0;
export let lastLeafPte: u64 = 0;
// With `probe` (a debugger's look at memory) nothing changes: no A/D updates, no statistics,
// and permissions are not checked.
export function translate(va: u64, acc: i32, regime: i32, paged: bool, watch: bool = false, probe: bool = false): u64 {
  lastLeafLevel = 0;
  if (!paged) return va;
  const satp = csr64(H_SATP);
  const mode = <u32>(satp >> 60);
  const levels: i32 = mode == 9 ? 4 : 3;
  const vaBits: u64 = <u64>(12 + 9 * levels);
  // The upper bits must all equal the top bit of the virtual address.
  const top = <i64>va >> (vaBits - 1);
  if (top != 0 && top != -1) { raise(pageFault(acc), va); return 0; }
  let a: u64 = (satp & 0xfffffffffff) << 12;
  for (let level = levels - 1; level >= 0; level--) {
    const vpn = (va >> (12 + 9 * <u64>level)) & 0x1ff;
    const pteAddr = a + (vpn << 3);
    const host = p2mHost(pteAddr);
    if (host < 0 || pmpCheck(pteAddr, pteAddr + 8, ACC_READ, PRV_S) != 1) { raise(accessFault(acc), va); return 0; }
    // After p2mHost: a table page touched for the first time only now has a P2M entry to protect.
    if (watch) shadowWatchTable(a, level, va & ~((<u64>1 << (21 + 9 * <u64>level)) - 1) & ((<u64>1 << vaBits) - 1));
    if (!probe) stat(VM_STAT_WALK_REFS);
    let pte = atomic.load<u64>(<usize>host);
    if ((pte & PTE_V) == 0 || ((pte & PTE_R) == 0 && (pte & PTE_W) != 0) || (pte & PTE_RESERVED) != 0) {
      raise(pageFault(acc), va); return 0;
    }
    if ((pte & (PTE_R | PTE_X)) == 0) {
      // Pointer to the next level. A/D/U must be zero on non-leaf PTEs.
      if ((pte & (PTE_A | PTE_D | PTE_U)) != 0 || level == 0) { raise(pageFault(acc), va); return 0; }
      a = ((pte >> 10) & 0xfffffffffff) << 12;
      continue;
    }
    if (!probe && !leafAllows(pte, acc, regime)) { raise(pageFault(acc), va); return 0; }
    const ppn = (pte >> 10) & 0xfffffffffff;
    const lowBits = 9 * <u64>level;
    // A superpage's physical page number must be aligned to its size.
    if (lowBits != 0 && (ppn & ((<u64>1 << lowBits) - 1)) != 0) { raise(pageFault(acc), va); return 0; }
    // Hardware A/D update, atomically so a concurrent change by the guest is not lost.
    const need = PTE_A | (acc == ACC_WRITE ? PTE_D : 0);
    if ((pte & need) != need && !probe) {
      // The update is a store to the PTE: where that would fail (PMP, or a table in the boot
      // ROM, which takes no stores), the access faults as the spec says, and the ROM stays as it is.
      if (pmpCheck(pteAddr, pteAddr + 8, ACC_WRITE, PRV_S) != 1 || !isRam(pteAddr)) { raise(accessFault(acc), va); return 0; }
      // The walker's own write: no trap even on a protected table (its shadows only lack A/D,
      // which is safe), but dirty logging must see it.
      dcInvalidate(<usize>host & ~<usize>0xfff);
      noteDirty(pteAddr);
      const seen = atomic.cmpxchg<u64>(<usize>host, pte, pte | need);
      if (seen != pte) return translate(va, acc, regime, paged, watch); // the PTE changed: walk again
      pte |= need;
    }
    const mask = (<u64>1 << (12 + lowBits)) - 1;
    lastLeafLevel = level;
    lastLeafPte = pte;
    return ((ppn << 12) & ~mask) | (va & mask);
  }
  raise(pageFault(acc), va);
  return 0;
}

// ---- TLB refill ----

// A TLB entry whose tag has this bit caches a device page's translation: no fast path ever
// matches it (access tags have bits 11:3 clear), and its second word is the guest-physical page.
const DEVICE_TAG: u64 = 0x800;

@inline function tlbEntry(table: usize, va: u64): usize {
  return table + (<usize>((va >> 12) & <u64>(TLB_ENTRIES - 1)) << 4);
}

function tlbFill(table: usize, va: u64, hostPage: u64): void {
  const page = va & ~<u64>0xfff;
  const e = tlbEntry(table, va);
  store<u64>(e, page);
  store<u64>(e + 8, hostPage - page);
  noteTlbLive(table);
}

function tlbTableFor(acc: i32): usize {
  return acc == ACC_READ ? tlbRead : acc == ACC_WRITE ? tlbWrite : tlbFetch;
}

/**
 * Translate and check one access that lies inside a single page. Returns the host offset for
 * RAM/ROM (and refills the TLB when the whole page is uniformly accessible), -1 with accStatus
 * set (exception), or -2 for device space. `physAddr` holds the physical address.
 */
export let physAddr: u64 = 0;

export function resolve(va: u64, size: u64, acc: i32): i64 {
  const regime = acc == ACC_FETCH ? fetchRegime : dataRegime;
  const paged = acc == ACC_FETCH ? fetchPaged : dataPaged;
  if (paged) {
    // A device page the TLB remembers: its guest-physical page without a walk.
    const e = tlbEntry(tlbTableFor(acc), va);
    if (load<u64>(e) == ((va & ~<u64>0xfff) | DEVICE_TAG)) {
      physAddr = load<u64>(e + 8) | (va & 0xfff);
      return -2;
    }
  }
  stat(VM_STAT_TLB_MISS);
  let pa: u64;
  let host: i64 = -1;
  if (paged && load<i32>(VM_PAGING) == PAGING_SHADOW) {
    pa = shadowTranslate(va, acc, regime);
    host = shadowHost;
  } else {
    pa = translate(va, acc, regime, paged);
  }
  if (accStatus != ACC_OK) return -1;
  physAddr = pa;
  const p = regimePriv(regime);
  const pageOk = pmpCheck(pa & ~<u64>0xfff, (pa & ~<u64>0xfff) + 4096, acc, p);
  if (pageOk == 0 || (pageOk < 0 && pmpCheck(pa, pa + size, acc, p) != 1)) {
    raise(accessFault(acc), va);
    return -1;
  }
  // The P2M: where the page is, and whether it may be written. A shadow hit already knows the
  // frame, and only a write needs the P2M's permission.
  if (host < 0 || acc == ACC_WRITE) {
    host = p2mHost(pa);
    if (host < 0) {
      // Device space (or a hole): every access exits, but the translation can be cached, as a
      // hardware TLB caches guest translations of MMIO pages under EPT or the G-stage.
      if (paged && pageOk == 1 && acc != ACC_FETCH) {
        if (lastLeafLevel != 0) noteSuperpage(va, lastLeafLevel);
        const e = tlbEntry(tlbTableFor(acc), va);
        store<u64>(e, (va & ~<u64>0xfff) | DEVICE_TAG);
        store<u64>(e + 8, pa & ~<u64>0xfff);
        noteTlbLive(tlbTableFor(acc));
      }
      return -2;
    }
    if (acc == ACC_WRITE && (p2mLeaf & P2M_W) == 0) {
      if ((p2mLeaf & (P2M_LOG | P2M_PT)) == 0) return -2; // the boot ROM: not writable
      // Write-protected: this store is the trap, emulated here (the caller does the store).
      if ((p2mLeaf & P2M_LOG) != 0) dirtyFault(pa, p2mLeafPtr);
      if ((p2mLeaf & P2M_PT) != 0) shadowTableWrite(pa, size);
    }
  }
  const tohost = load<u64>(VM_TOHOST);
  const watched = acc == ACC_WRITE && tohost != 0 && (pa >> 12) == (tohost >> 12);
  const writable = acc != ACC_WRITE || (load<u64>(p2mLeafPtr) & P2M_W) != 0;
  // A page a load or store trigger could match gets no TLB entry: its accesses come to loadSlow/storeSlow, which check.
  const triggered = acc != ACC_FETCH && (load<i32>(H + H_TRIG_ARMED) & TA_DATA) != 0 &&
    triggerWatchesPage(acc == ACC_WRITE ? TK_STORE : TK_LOAD, va & ~<u64>0xfff);
  if (pageOk == 1 && !watched && writable && !triggered) {
    if (lastLeafLevel != 0) noteSuperpage(va, lastLeafLevel);
    if (acc == ACC_WRITE) noteWriteMapping(<usize>host & ~<usize>0xfff);
    tlbFill(tlbTableFor(acc), va, <u64>host - (pa & 0xfff));
    if (acc == ACC_FETCH) lastFetchCacheable = true;
  }
  // A store to a page of cached code drops the decoded copy before the page changes.
  if (acc == ACC_WRITE) dcInvalidate(<usize>host & ~<usize>0xfff);
  return host;
}

// Host offset of the frame a shadow hit found (-1 after a shadow fault: the P2M decides).
let shadowHost: i64 = -1;

// Shadow paging's translation: the shadow leaf if it allows the access, else a shadow fault:
// the guest walk (protecting the tables it reads), then the result goes into the shadow.
function shadowTranslate(va: u64, acc: i32, regime: i32): u64 {
  shadowHost = -1;
  const satp = csr64(H_SATP);
  const vaBits: u64 = (satp >> 60) == 9 ? 48 : 39;
  const top = <i64>va >> (vaBits - 1);
  if (top == 0 || top == -1) {
    const leaf = shadowLookup(va);
    if ((leaf & PTE_V) != 0 && leafAllows(leaf, acc, regime)) {
      lastLeafLevel = <i32>((leaf >> 8) & 3);
      const frame = <usize>((leaf >> 10) << 12);
      shadowHost = <i64>(frame | <usize>(va & 0xfff));
      return frameToGpa(frame) | (va & 0xfff);
    }
  }
  stat(VM_STAT_SHADOW_FAULT);
  const epoch = shadowEpoch;
  const pa = translate(va, acc, regime, true, true);
  if (accStatus != ACC_OK) return 0;
  const level = lastLeafLevel;
  const frame = p2mHost(pa & ~<u64>0xfff);
  if (frame >= 0 && epoch == shadowEpoch) shadowInstall(va, <usize>frame, lastLeafPte, level);
  lastLeafLevel = level;
  return pa;
}
// ---- loads and stores that missed the TLB ----

@inline function hostLoad(host: usize, size: u64): u64 {
  if (size == 8) return load<u64>(host);
  if (size == 4) return <u64>load<u32>(host);
  if (size == 2) return <u64>load<u16>(host);
  return <u64>load<u8>(host);
}
@inline function hostStore(host: usize, size: u64, v: u64): void {
  if (size == 8) store<u64>(host, v);
  else if (size == 4) store<u32>(host, <u32>v);
  else if (size == 2) store<u16>(host, <u16>v);
  else store<u8>(host, <u8>v);
}

/** Load `size` bytes at va; returns the zero-extended value. Check accStatus afterwards. */
// A load or store trigger (trigger.ts) that fires for this access raises its exception: false.
function dataTriggerFires(kind: u64, va: u64, size: u64): bool {
  if ((load<i32>(H + H_TRIG_ARMED) & TA_DATA) == 0) return false;
  const cause = triggerCheck(kind, va, size);
  if (cause == 0) return false;
  raise(cause, va);
  return true;
}

export function loadSlow(va: u64, size: u64): u64 {
  if (dataTriggerFires(TK_LOAD, va, size)) return 0;
  if (((va & 0xfff) + size) > 4096) {
    // Crosses a page: assemble it byte by byte (each byte may fault on its own page).
    let v: u64 = 0;
    for (let i: u64 = 0; i < size; i++) {
      const b = loadSlow(va + i, 1);
      if (accStatus != ACC_OK) {
        if (accStatus == ACC_MMIO) raise(EXC_LOAD_ACCESS, va);
        return 0;
      }
      v |= b << (i << 3);
    }
    return v;
  }
  const host = resolve(va, size, ACC_READ);
  if (host >= 0) return hostLoad(<usize>host, size);
  if (host == -1) return 0;
  return deviceAccess(va, physAddr, size, false, 0, ACC_READ);
}

/** Store `size` bytes at va. Check accStatus afterwards. */
export function storeSlow(va: u64, size: u64, v: u64): void {
  if (dataTriggerFires(TK_STORE, va, size)) return;
  if (((va & 0xfff) + size) > 4096) {
    // Check both pages before writing anything, so a fault leaves memory untouched.
    // A fault on the second page reports that page's first byte. A store straddling into
    // device space or a hole (resolve's -2) is an access fault as a whole: the part in RAM
    // must not be written first.
    let host = resolve(va, 1, ACC_WRITE);
    if (accStatus == ACC_OK && host != -2) host = resolve((va + size - 1) & ~<u64>0xfff, 1, ACC_WRITE);
    if (accStatus == ACC_OK && host == -2) raise(EXC_STORE_ACCESS, va);
    if (accStatus != ACC_OK) return;
    for (let i: u64 = 0; i < size; i++) {
      storeSlow(va + i, 1, v >> (i << 3));
      if (accStatus != ACC_OK) {
        if (accStatus == ACC_MMIO) raise(EXC_STORE_ACCESS, va);
        return;
      }
    }
    return;
  }
  const host = resolve(va, size, ACC_WRITE);
  if (host >= 0) {
    hostStore(<usize>host, size, v);
    const tohost = load<u64>(VM_TOHOST);
    if (tohost != 0 && physAddr < tohost + 8 && physAddr + size > tohost) checkTohost(tohost);
    return;
  }
  if (host == -1) return;
  deviceAccess(va, physAddr, size, true, v, ACC_WRITE);
}

// HTIF: a nonzero tohost is a request to the host (Spike's protocol); leave run() for it.
function checkTohost(tohost: u64): void {
  const host = p2mHost(tohost);
  if (host < 0) return; // the host only sets tohost inside RAM; never read outside it
  const value = load<u64>(<usize>host);
  if (value == 0) return;
  store<u64>(H + H_EXIT_DATA, value);
  accStatus = ACC_TOHOST;
}

/**
 * Find the code page of pc for the decoded-code cache: its host offset if the whole page may be
 * cached, -2 if it may not (a PMP boundary inside it), -1 with the exception raised.
 */
export function fetchPage(pc: u64): i64 {
  lastFetchCacheable = false;
  const host = fetchHost(pc);
  if (host < 0) return -1;
  return lastFetchCacheable ? host & ~<i64>0xfff : -2;
}

/** Instruction fetch without the decoded-code cache. Returns the (possibly 16-bit) instruction. */
export function fetchSlow(pc: u64): u32 {
  const lo = fetchHalf(pc);
  if (accStatus != ACC_OK) return 0;
  if ((lo & 3) != 3) return lo;
  const hi = fetchHalf(pc + 2);
  if (accStatus != ACC_OK) return 0;
  return lo | (hi << 16);
}

function fetchHalf(va: u64): u32 {
  const host = fetchHost(va);
  return host >= 0 ? <u32>load<u16>(<usize>host) : 0;
}

// The host address of `va` if `table` maps its page (the TLB's hit for an access the caller has
// checked for alignment), else -1 (host addresses are never negative).
@inline function tlbHost(table: usize, va: u64): i64 {
  const e = tlbEntry(table, va);
  return load<u64>(e) == (va & ~<u64>0xfff) ? <i64>(load<u64>(e + 8) + va) : -1;
}

function fetchHost(va: u64): i64 {
  // The fetch TLB first: an instruction that straddles two pages is fetched here every time it runs.
  const hit = tlbHost(tlbFetch, va);
  if (hit >= 0) return hit;
  const host = resolve(va, 2, ACC_FETCH);
  if (host == -2) raise(EXC_FETCH_ACCESS, va);
  return host < 0 ? -1 : host;
}

// ---- devices: the in-core CLINT, host devices, holes ----

function deviceAccess(va: u64, pa: u64, size: u64, write: bool, v: u64, acc: i32): u64 {
  if (pa - <u64>CLINT_GPA < <u64>CLINT_SIZE) return clintAccess(va, pa - <u64>CLINT_GPA, size, write, v);
  if (!isDevicePage(pa) || (pa & (size - 1)) != 0) {
    raise(accessFault(acc), va);
    return 0;
  }
  store<u64>(H + H_EXIT_ADDR, pa);
  store<u32>(H + H_EXIT_SIZE, <u32>size);
  store<u32>(H + H_EXIT_WRITE, write ? 1 : 0);
  store<u64>(H + H_EXIT_DATA, write ? v : 0);
  accStatus = ACC_MMIO;
  return 0;
}

// CLINT: msip words at 0, mtimecmp at 0x4000 + 8 * hart, mtime at 0xbff8.
function clintAccess(va: u64, off: u64, size: u64, write: bool, v: u64): u64 {
  const n = <u64>nharts();
  if ((off & (size - 1)) != 0 || size < 4) { raise(write ? EXC_STORE_ACCESS : EXC_LOAD_ACCESS, va); return 0; }
  // A write may make an interrupt pending for this hart (msip to itself, mtimecmp or mtime
  // moved past the other): the slice ends after it, so the run loop looks at once, as it does
  // after a CSR write, rather than up to a slice later.
  if (write) charge(1);
  if (off < 0x4000) {
    const hart = off >> 2;
    if (hart >= n || size != 4) return 0;
    const base = hartBase(<i32>hart);
    if (!write) return (<u64>atomic.load<u32>(base + H_MIP) >> 3) & 1;
    if ((v & 1) != 0) {
      atomic.or<u32>(base + H_MIP, <u32>IRQ_MSI);
      kickHart(base); // its thread may be asleep in WFI
    } else atomic.and<u32>(base + H_MIP, ~<u32>IRQ_MSI);
    return 0;
  }
  if (off >= 0xbff8) {
    const now = mtime();
    if (!write) return size == 8 ? now : (now >> ((off - 0xbff8) << 3)) & 0xffffffff;
    let t = now;
    if (size == 8) t = v;
    else if (off == 0xbff8) t = (now & 0xffffffff00000000) | (v & 0xffffffff);
    else t = (now & 0xffffffff) | (v << 32);
    if ((load<i32>(VM_FLAGS) & VMF_MTIME_FROZEN) != 0) store<u64>(VM_MTIME_FROZEN, t);
    else store<i64>(VM_MTIME_OFFSET, load<i64>(VM_MTIME_OFFSET) + <i64>(t - now));
    noteMtimeWritten();
    return 0;
  }
  if (off >= 0x4000 && off < 0x4000 + 8 * n) {
    const hart = (off - 0x4000) >> 3;
    const ptr = hartBase(<i32>hart) + H_MTIMECMP;
    const shift = (off & 4) << 3;
    if (!write) return size == 8 ? load<u64>(ptr) : (load<u64>(ptr) >> shift) & 0xffffffff;
    if (size == 8) store<u64>(ptr, v);
    else {
      const old = load<u64>(ptr);
      store<u64>(ptr, (old & ~(<u64>0xffffffff << shift)) | ((v & 0xffffffff) << shift));
    }
    kickHart(hartBase(<i32>hart)); // a sleeping hart's thread sleeps until its old deadline
    return 0;
  }
  return 0;
}

/** Host offset for an atomic access (aligned, RAM only), or -1 with accStatus set. */
export function resolveAtomic(va: u64, size: u64, acc: i32): i64 {
  if ((va & (size - 1)) != 0) {
    raise(acc == ACC_READ ? EXC_LOAD_MISALIGNED : EXC_STORE_MISALIGNED, va);
    return -1;
  }
  // An AMO is a load and a store; LR a load.
  if ((load<i32>(H + H_TRIG_ARMED) & TA_DATA) == 0) {
    // The TLB hit a load or store takes: a page is in the store TLB only if it may be written
    // (so read: W without R is reserved), is not watched, and holds no decoded code.
    const hit = tlbHost(acc == ACC_READ ? tlbRead : tlbWrite, va);
    if (hit >= 0) return hit;
  } else if (dataTriggerFires(acc == ACC_READ ? TK_LOAD : TK_LOAD | TK_STORE, va, size)) return -1;
  const host = resolve(va, size, acc);
  if (host == -2) {
    raise(acc == ACC_READ ? EXC_LOAD_ACCESS : EXC_STORE_ACCESS, va);
    return -1;
  }
  return host;
}

/**
 * The guest-physical address of `va` as the current hart's loads see it (its privilege, satp; MPRV
 * is not applied), for a debugger: nothing changes (see translate's probe), -1 if unmapped.
 */
export function debugTranslate(va: u64): i64 {
  const saved = accStatus, cause = excCause, tval = excTval;
  accStatus = ACC_OK;
  const paged = priv != PRV_M && (csr64(H_SATP) >> 60) != 0;
  const pa = translate(va, ACC_READ, REGIME_S_SUM, paged, false, true);
  const ok = accStatus == ACC_OK;
  accStatus = saved; excCause = cause; excTval = tval;
  return ok ? <i64>pa : -1;
}
