// The P2M: the hypervisor's map from guest-physical pages to frames of the VM's memory, in the
// RISC-V G-stage format (Sv39x4: a 16 KiB root indexed by GPA bits 40:30, then two levels of
// 512 entries). Entries are made on first touch (populate); device space never gets one, so
// accesses there fall through to MMIO exits. RAM frames are placed 1:1 (frame = RAM_HOST + the
// page's offset in RAM), like a KVM memslot over host memory the OS commits on first touch;
// the P2M adds per-page permissions on top: the W bit is taken away to write-protect a page for
// dirty logging (P2M_LOG) or because it is a guest page table shadow paging watches (P2M_PT).
//
// Lazy memory (restoring a snapshot, post-copy migration): RAM pages may be absent, their
// content still with the host. Every guest access to RAM goes through a P2M leaf (the TLBs,
// shadow leaves and decoded code all derive from one), so making the leaf is the one place
// that must first bring the page in; the host empties the P2M when lazy mode begins.

import {
  VM_P2M_ROOT, VM_P2M_POOL, VM_P2M_POOL_END, VM_RAM_SIZE, RAM_HOST, RAM_GPA, ROM_HOST, ROM_GPA,
  ROM_SIZE, VM_DIRTY, VM_DIRTY_SYNC, VM_DIRTY_ON, VM_STAT_WALK_REFS, VM_STAT_P2M_POPULATE,
  VM_STAT_DIRTY_FAULT, VM_STAT_BASE, PAGING_STAT_COUNT, VM_LAZY, VM_ABSENT, VM_USED,
} from "./layout";
import { revokeWriteMappings, revokeAllWriteMappings } from "./dcache";
import { fillCharged } from "./hart";

export const P2M_V: u64 = 1;
export const P2M_R: u64 = 2;
export const P2M_W: u64 = 4;
export const P2M_X: u64 = 8;
const P2M_U: u64 = 16; // G-stage leaves must have U set (guest accesses count as user accesses)
const P2M_A: u64 = 64;
const P2M_D: u64 = 128;
export const P2M_PT: u64 = 1 << 8; // write-protected: a guest page table with shadows (shadow.ts)
export const P2M_LOG: u64 = 1 << 9; // write-protected: dirty logging waits for the first write

@inline export function stat(field: i32): void {
  store<u64>(field, load<u64>(field) + 1);
}
@inline export function statAdd(field: i32, n: u64): void {
  store<u64>(field, load<u64>(field) + n);
}

export function clearStats(): void {
  memory.fill(VM_STAT_BASE, 0, <usize>PAGING_STAT_COUNT * 8);
}

@inline function ramSize(): u64 {
  return load<u64>(VM_RAM_SIZE);
}

/** Whether guest-physical `gpa` is RAM. */
@inline export function isRam(gpa: u64): bool {
  return gpa - <u64>RAM_GPA < ramSize();
}

// A zeroed page for a P2M table, or 0 when the pool is exhausted (it is sized for all of RAM
// and the ROM, the only pages that get entries, so that means a bug). Harts on other threads
// may take pages at the same time: the pool's top moves by compare-and-swap (and never past
// its end). A table made for an entry another thread filled first goes back if it is still the
// top; the pool has a few pages of slack for when it is not (core.ts vmmLayout).
function allocTable(): usize {
  let p: u32;
  do {
    p = atomic.load<u32>(VM_P2M_POOL);
    if (p >= load<u32>(VM_P2M_POOL_END)) return 0;
  } while (atomic.cmpxchg<u32>(VM_P2M_POOL, p, p + 4096) != p);
  fillCharged(<usize>p, 0, 4096);
  return <usize>p;
}

/**
 * Where the leaf P2M entry of `gpa` is, or 0 when its tables do not exist (and `alloc` is false)
 * or gpa lies beyond the 41 bits Sv39x4 maps.
 */
export function p2mEntry(gpa: u64, alloc: bool): usize {
  if ((gpa >> 41) != 0) return 0;
  let e = <usize>load<u32>(VM_P2M_ROOT) + (<usize>(gpa >> 30) << 3);
  for (let shift: u64 = 21; shift >= 12; shift -= 9) {
    let pte = load<u64>(e);
    if ((pte & P2M_V) == 0) {
      if (!alloc) return 0;
      const t = allocTable();
      if (t == 0) return 0;
      // Another thread may have made this table meanwhile: then use its, and keep this one.
      const mine = ((<u64>t >> 12) << 10) | P2M_V;
      const seen = atomic.cmpxchg<u64>(e, 0, mine);
      if (seen == 0) pte = mine;
      else {
        pte = seen;
        atomic.cmpxchg<u32>(VM_P2M_POOL, <u32>t + 4096, <u32>t);
      }
    }
    e = <usize>((pte >> 10) << 12) + (<usize>((gpa >> shift) & 0x1ff) << 3);
  }
  return e;
}

// The host fills RAM page `ramPage` (its index in RAM) with its content and marks it present,
// or throws (the run ends with the error; the page stays absent).
// @ts-ignore: decorator
@external("env", "pageIn")
declare function pageIn(ramPage: u32): void;

@inline function pageAbsent(ramPage: u32): bool {
  const word = load<u32>(<usize>load<u32>(VM_ABSENT) + (<usize>(ramPage >> 5) << 2));
  return (word & (<u32>1 << (ramPage & 31))) != 0;
}

/** RAM page `ramPage` may hold something now (VM_USED). */
@inline export function markUsed(ramPage: u32): void {
  const word = <usize>load<u32>(VM_USED) + (<usize>(ramPage >> 5) << 2);
  if ((load<u32>(word) & (<u32>1 << (ramPage & 31))) == 0) atomic.or<u32>(word, <u32>1 << (ramPage & 31));
}

// The leaf made for a page on first touch: RAM is read/write/execute (write-protected while
// dirty logging waits for its first write), the boot ROM read/execute, anything else has none.
function populate(gpa: u64, e: usize): u64 {
  const page = gpa & ~<u64>0xfff;
  let frame: u64;
  let perms: u64 = P2M_R | P2M_X;
  if (isRam(page)) {
    const ramPage = <u32>((page - <u64>RAM_GPA) >> 12);
    if (load<i32>(VM_LAZY) != 0 && pageAbsent(ramPage)) pageIn(ramPage);
    markUsed(ramPage);
    frame = <u64>RAM_HOST + (page - <u64>RAM_GPA);
    perms |= load<i32>(VM_DIRTY_ON) != 0 ? P2M_LOG : P2M_W;
    stat(VM_STAT_P2M_POPULATE);
  } else if (page - <u64>ROM_GPA < <u64>ROM_SIZE) {
    frame = <u64>ROM_HOST + (page - <u64>ROM_GPA);
  } else {
    return 0;
  }
  const leaf = ((frame >> 12) << 10) | perms | P2M_V | P2M_U | P2M_A | P2M_D;
  // A hart on another thread may have populated it first: its leaf stands.
  const seen = atomic.cmpxchg<u64>(e, 0, leaf);
  return seen == 0 ? leaf : seen;
}

// The leaf entry p2mHost looked at last (its permissions tell callers about write protection).
export let p2mLeaf: u64 = 0;
export let p2mLeafPtr: usize = 0;

/**
 * The frame (host offset) holding `gpa`, or -1 if no RAM or ROM is there (device space or a
 * hole). Makes the entry on first touch. Permissions are the caller's business (p2mLeaf).
 */
export function p2mHost(gpa: u64): i64 {
  statAdd(VM_STAT_WALK_REFS, 3);
  // Only RAM and the ROM get tables: the pool is sized for them, and a guest touching device
  // windows or holes must not use up tables its RAM needs.
  if (!isRam(gpa) && gpa - <u64>ROM_GPA >= <u64>ROM_SIZE) return -1;
  const e = p2mEntry(gpa, true);
  if (e == 0) return -1;
  let leaf = load<u64>(e);
  if ((leaf & P2M_V) == 0) {
    leaf = populate(gpa, e);
    if (leaf == 0) return -1;
  }
  p2mLeaf = leaf;
  p2mLeafPtr = e;
  return <i64>(((leaf >> 10) << 12) | (gpa & 0xfff));
}

/** The guest-physical address of frame offset `host` (the inverse of the 1:1 placement). */
export function frameToGpa(host: usize): u64 {
  if (host >= <usize>RAM_HOST) return <u64>RAM_GPA + <u64>(host - <usize>RAM_HOST);
  return <u64>ROM_GPA + <u64>(host - <usize>ROM_HOST);
}

// ---- write protection ----

/** Take W away from the leaf at `e` for `why` (P2M_PT or P2M_LOG) and drop write TLB entries. */
export function p2mProtect(e: usize, why: u64): void {
  const leaf = load<u64>(e);
  store<u64>(e, (leaf & ~P2M_W) | why);
  if ((leaf & P2M_W) != 0) revokeWriteMappings(<usize>((leaf >> 10) << 12));
}

/** Lift protection `why` from the leaf at `e`; W comes back once nothing else holds it. */
export function p2mUnprotect(e: usize, why: u64): void {
  let leaf = load<u64>(e) & ~why;
  if ((leaf & (P2M_PT | P2M_LOG)) == 0 && (leaf & P2M_V) != 0 && leaf != 0) leaf |= P2M_W;
  store<u64>(e, leaf);
}

// ---- dirty logging ----

@inline function markDirtyPage(ramPage: u64): void {
  const word = <usize>load<u32>(VM_DIRTY) + (<usize>(ramPage >> 5) << 2);
  atomic.or<u32>(word, <u32>1 << <u32>(ramPage & 31));
}

/** A write reached RAM page `gpa`: log it if dirty logging is on. */
@inline export function noteDirty(gpa: u64): void {
  if (load<i32>(VM_DIRTY_ON) != 0 && isRam(gpa)) markDirtyPage((gpa - <u64>RAM_GPA) >> 12);
}

/** The first write to a page waiting in P2M_LOG: log it and give the write back. */
export function dirtyFault(gpa: u64, e: usize): void {
  stat(VM_STAT_DIRTY_FAULT);
  markDirtyPage((gpa - <u64>RAM_GPA) >> 12);
  p2mUnprotect(e, P2M_LOG);
}

// Apply fn to every RAM leaf that exists.
function forEachRamLeaf(fn: (e: usize, gpa: u64) => void): void {
  const size = ramSize();
  for (let gpa: u64 = <u64>RAM_GPA; gpa < <u64>RAM_GPA + size; gpa += 4096) {
    const e = p2mEntry(gpa, false);
    if (e == 0) { gpa = (gpa | 0x1fffff) - 4095; continue; } // no table for this 2 MiB
    if ((load<u64>(e) & P2M_V) != 0) fn(e, gpa);
  }
}

/**
 * Turn dirty logging on or off. On: every RAM page is write-protected so its first write is
 * seen, and the bitmap starts empty. Off: protections lift; nothing is logged any more.
 */
export function dirtyLogEnable(on: bool): void {
  const words = <usize>((ramSize() >> 12) + 31) >> 5;
  memory.fill(<usize>load<u32>(VM_DIRTY), 0, words << 2);
  store<i32>(VM_DIRTY_ON, on ? 1 : 0);
  if (on) {
    revokeAllWriteMappings(); // once, not once a page
    forEachRamLeaf((e: usize, gpa: u64): void => { p2mProtect(e, P2M_LOG); });
  } else forEachRamLeaf((e: usize, gpa: u64): void => { p2mUnprotect(e, P2M_LOG); });
}

/** Dirty pages a sync protects again one by one; past this, every write mapping goes at once. */
const SYNC_ONE_BY_ONE = 8;

/**
 * Take the dirty bits logged so far, leaving them at VM_DIRTY_SYNC, clear the log and
 * write-protect those pages again, in one step (no hart runs meanwhile). Returns how many
 * pages were dirty.
 */
export function dirtyLogSync(): i32 {
  const words = <usize>((ramSize() >> 12) + 31) >> 5;
  const log = <usize>load<u32>(VM_DIRTY), out = <usize>load<u32>(VM_DIRTY_SYNC);
  let n = 0;
  for (let w: usize = 0; w < words; w++) {
    const bits = atomic.xchg<u32>(log + (w << 2), 0);
    store<u32>(out + (w << 2), bits);
    n += <i32>popcnt(bits);
  }
  if (n == 0 || load<i32>(VM_DIRTY_ON) == 0) return n;
  if (n > SYNC_ONE_BY_ONE) revokeAllWriteMappings();
  for (let w: usize = 0; w < words; w++) {
    for (let b: u32 = load<u32>(out + (w << 2)); b != 0; b &= b - 1) {
      const gpa = <u64>RAM_GPA + ((<u64>(w << 5) + <u64>ctz(b)) << 12);
      const e = p2mEntry(gpa, false);
      if (e != 0 && (load<u64>(e) & P2M_V) != 0) p2mProtect(e, P2M_LOG);
    }
  }
  return n;
}

/** Forget every mapping (creation, reboot): the next touches populate again. */
export function p2mReset(): void {
  const root = <usize>load<u32>(VM_P2M_ROOT);
  memory.fill(root, 0, 16384);
  store<u32>(VM_P2M_POOL, <u32>(root + 16384)); // the pool follows the root
  // With dirty logging on, a reset means every page changed (the host clears RAM).
  if (load<i32>(VM_DIRTY_ON) != 0) {
    const pages = ramSize() >> 12;
    for (let p: u64 = 0; p < pages; p++) markDirtyPage(p);
  }
}
