// Shadow paging: the hypervisor keeps, per guest address space (satp: root and ASID), shadow
// tables that map guest virtual pages straight to frames, so a TLB miss walks one table instead
// of the two-dimensional guest-and-P2M walk. They are built on demand: a miss in the shadow
// (a shadow fault) walks the guest's tables through the P2M and installs the 4 KiB result.
//
// Coherence: every guest page-table page the walk goes through is write-protected in the P2M
// (P2M_PT) and gets a record of where it sits in which contexts (level and virtual base), so a
// guest write to it traps (mmu.ts resolve), is emulated, and drops exactly the shadow entries
// derived from the entries it wrote. A table written many times in a row without being walked
// is probably no longer a page table: it loses its protection and its shadows (unshadowTable).
// Shadow tables mirror the guest's virtual indexing level by level, but every shadow leaf is a
// 4 KiB page (guest superpages are split), since P2M permissions are per 4 KiB frame.
//
// Shadow leaves use the guest PTE bits (V R W X U A), W only when the guest PTE is dirty, and
// keep the guest leaf's level in bits 9:8 (address sfence.vma needs the superpage's range).

import {
  VM_SH_BASE, VM_SH_POOL, VM_RAM_SIZE, RAM_GPA, H_SATP, H_SH_CTX, H_SH_ROOT, SH_CTX_MAX,
  SH_CTX_BYTES, SH_CTX, SH_CLOCK, SH_FREE_TOP, SH_REC_FREE_TOP, SH_POOL_PAGES, SH_FREE, SH_RECS,
  SH_REC_BYTES, SH_REC_PARENTS, SH_REC_FREE, SH_RECORDS, SH_RMAP, VM_STAT_WALK_REFS,
  VM_STAT_SHADOW_ZAP, VM_STAT_UNSHADOW, VM_STAT_SHADOW_RESET, VM_STAT_CTX_SWITCH,
  VM_STAT_CTX_NEW, VM_STAT_PT_WRITE,
} from "./layout";
import { H, csr64, hartBase, nharts, charge, fillCharged } from "./hart";
import { p2mEntry, p2mProtect, p2mUnprotect, P2M_PT, P2M_V, isRam, stat, statAdd } from "./p2m";

const PTE_V: u64 = 1;
const PTE_PERMS: u64 = 2 | 8 | 16 | 64; // R X U A carried over from the guest leaf
const PTE_W: u64 = 4;
const PTE_D: u64 = 128;

// Writes to one protected table, with no walk through it in between, after which it is taken
// for data and unprotected (as KVM's write-flooding detection).
const FLOOD_WRITES: u8 = 4;

// Record layout (SH_REC_BYTES each).
const REC_GPN: usize = 0; // u32: guest-physical page number (0 = free record)
const REC_WRITES: usize = 4; // u8
const REC_NPARENTS: usize = 5; // u8
const REC_WILD: usize = 6; // u8: more places than the record holds: any write resets all shadows
const REC_PARENTS: usize = 8; // SH_REC_PARENTS x { vaBase: u64, ctxMask: u32, level: u32 }

// Bumped by shadowReset(): a fault that saw it change must not install what it walked.
export let shadowEpoch: u32 = 0;

@inline function base(): usize {
  return <usize>load<u32>(VM_SH_BASE);
}
@inline function ctxEntry(i: i32): usize {
  return base() + <usize>SH_CTX + <usize>i * <usize>SH_CTX_BYTES;
}
@inline function levelsOf(satp: u64): i32 {
  return (satp >> 60) == 9 ? 4 : 3;
}
@inline function idx(va: u64, level: i32): usize {
  return <usize>((va >> (12 + 9 * <u64>level)) & 0x1ff) << 3;
}
@inline function child(pte: u64): usize {
  return <usize>((pte >> 10) << 12);
}
@inline function record(r: u32): usize {
  return base() + <usize>SH_RECORDS + <usize>r * <usize>SH_REC_BYTES;
}
@inline function rmapSlot(gpa: u64): usize {
  return base() + <usize>SH_RMAP + (<usize>((gpa - <u64>RAM_GPA) >> 12) << 1);
}

/** Empty the shadow MMU: no contexts, every pool page and record free (creation, reset). */
export function shadowInit(): void {
  const b = base();
  if (b == 0) return;
  fillCharged(b + <usize>SH_CTX, 0, <usize>SH_CTX_MAX * <usize>SH_CTX_BYTES);
  const pool = <usize>load<u32>(VM_SH_POOL);
  for (let i = 0; i < SH_POOL_PAGES; i++) store<u32>(b + <usize>SH_FREE + (<usize>i << 2), <u32>(pool + (<usize>i << 12)));
  store<u32>(b + <usize>SH_FREE_TOP, <u32>SH_POOL_PAGES);
  // Record 0 means "none"; records 1.. are free.
  for (let r = 1; r < SH_RECS; r++) {
    store<u16>(b + <usize>SH_REC_FREE + (<usize>(r - 1) << 1), <u16>r);
    store<u32>(record(<u32>r) + REC_GPN, 0);
  }
  store<u32>(b + <usize>SH_REC_FREE_TOP, <u32>(SH_RECS - 1));
  fillCharged(b + <usize>SH_RMAP, 0, <usize>(load<u64>(VM_RAM_SIZE) >> 12) << 1);
  charge((SH_POOL_PAGES + SH_RECS) >> 3); // the free lists just written
  for (let h = 0; h < nharts(); h++) {
    store<i32>(hartBase(h) + H_SH_CTX, -1);
    store<u32>(hartBase(h) + H_SH_ROOT, 0);
  }
}

/**
 * Drop every shadow and lift every page-table protection: when the pool or the records run
 * out, or a table sits in more places than its record holds. Cached TLB entries stay valid
 * (the shadows agreed with the guest's tables up to now).
 */
export function shadowReset(): void {
  stat(VM_STAT_SHADOW_RESET);
  shadowEpoch++;
  charge(SH_RECS >> 3);
  for (let r = 1; r < SH_RECS; r++) {
    const gpn = load<u32>(record(<u32>r) + REC_GPN);
    if (gpn != 0) unprotectPage(<u64>gpn << 12);
  }
  shadowInit();
}

// ---- pool ----

function allocPage(): usize {
  const b = base();
  const top = load<u32>(b + <usize>SH_FREE_TOP);
  if (top == 0) return 0;
  store<u32>(b + <usize>SH_FREE_TOP, top - 1);
  const p = <usize>load<u32>(b + <usize>SH_FREE + (<usize>(top - 1) << 2));
  fillCharged(p, 0, 4096);
  return p;
}

function freePage(p: usize): void {
  const b = base();
  const top = load<u32>(b + <usize>SH_FREE_TOP);
  store<u32>(b + <usize>SH_FREE + (<usize>top << 2), <u32>p);
  store<u32>(b + <usize>SH_FREE_TOP, top + 1);
}

// Free the entries of a table at `level` (and everything below them), leaving it empty.
function clearTable(table: usize, level: i32): void {
  charge(32);
  for (let e = table; e < table + 4096; e += 8) {
    const pte = load<u64>(e);
    if ((pte & PTE_V) == 0) continue;
    if (level > 0) freeTree(child(pte), level - 1);
    store<u64>(e, 0);
  }
}

function freeTree(table: usize, level: i32): void {
  if (level > 0) clearTable(table, level);
  freePage(table);
}

// ---- contexts ----

/** satp changed on this hart: pick the shadow context on the next TLB miss. */
export function shadowSatpChanged(): void {
  store<u32>(H + H_SH_ROOT, 0);
}

function ctxInUse(i: i32): bool {
  for (let h = 0; h < nharts(); h++) {
    const hb = hartBase(h);
    if (load<u32>(hb + H_SH_ROOT) != 0 && load<i32>(hb + H_SH_CTX) == i) return true;
  }
  return false;
}

// The shadow root of the current hart's satp: a cached context if there is one, else a new
// one (evicting the least recently used context no hart is on).
function currentRoot(): usize {
  const root = <usize>load<u32>(H + H_SH_ROOT);
  if (root != 0) return root;
  const satp = csr64(H_SATP);
  const clockPtr = base() + <usize>SH_CLOCK;
  const now = load<u32>(clockPtr) + 1;
  store<u32>(clockPtr, now);
  let victim = -1;
  let oldest: u32 = u32.MAX_VALUE;
  for (let i = 0; i < SH_CTX_MAX; i++) {
    const e = ctxEntry(i);
    const r = <usize>load<u32>(e + 8);
    if (r != 0 && load<u64>(e) == satp) {
      stat(VM_STAT_CTX_SWITCH);
      return useCtx(i, r, now);
    }
    const age: u32 = r == 0 ? 0 : load<u32>(e + 12);
    if (age < oldest && (r == 0 || !ctxInUse(i))) { oldest = age; victim = i; }
  }
  stat(VM_STAT_CTX_NEW);
  if (victim < 0) { shadowReset(); victim = 0; } // more harts than contexts: cannot happen
  const e = ctxEntry(victim);
  const old = <usize>load<u32>(e + 8);
  if (old != 0) freeTree(old, levelsOf(load<u64>(e)) - 1);
  store<u32>(e + 8, 0);
  let r = allocPage();
  if (r == 0) {
    shadowReset();
    r = allocPage();
  }
  const e2 = ctxEntry(victim);
  store<u64>(e2, satp);
  store<u32>(e2 + 8, <u32>r);
  return useCtx(victim, r, now);
}

@inline function useCtx(i: i32, root: usize, now: u32): usize {
  store<u32>(ctxEntry(i) + 12, now);
  store<i32>(H + H_SH_CTX, i);
  store<u32>(H + H_SH_ROOT, <u32>root);
  return root;
}

// ---- lookup and install ----

/** The shadow leaf for `va` in the current context (V clear if there is none). */
export function shadowLookup(va: u64): u64 {
  const levels = levelsOf(csr64(H_SATP));
  let t = currentRoot();
  statAdd(VM_STAT_WALK_REFS, <u64>levels);
  for (let level = levels - 1; level > 0; level--) {
    const pte = load<u64>(t + idx(va, level));
    if ((pte & PTE_V) == 0) return 0;
    t = child(pte);
  }
  return load<u64>(t + idx(va, 0));
}

/** Map `va` to the frame at host offset `frame` after a guest walk found `guestPte` at `guestLevel`. */
export function shadowInstall(va: u64, frame: usize, guestPte: u64, guestLevel: i32): void {
  const epoch = shadowEpoch;
  const levels = levelsOf(csr64(H_SATP));
  let t = currentRoot();
  for (let level = levels - 1; level > 0; level--) {
    const e = t + idx(va, level);
    let pte = load<u64>(e);
    if ((pte & PTE_V) == 0) {
      const c = allocPage();
      if (c == 0) { shadowReset(); return; }
      pte = ((<u64>c >> 12) << 10) | PTE_V;
      store<u64>(e, pte);
    }
    t = child(pte);
  }
  if (epoch != shadowEpoch) return;
  let leaf = ((<u64>frame >> 12) << 10) | (guestPte & PTE_PERMS) | PTE_V | (<u64>guestLevel << 8);
  if ((guestPte & (PTE_W | PTE_D)) == (PTE_W | PTE_D)) leaf |= PTE_W;
  store<u64>(t + idx(va, 0), leaf);
}

// ---- guest page tables ----

/**
 * The guest walk for a shadow fault reads the table at guest-physical `table` (level `level`,
 * covering virtual addresses from `vaBase`): protect it and remember where it sits.
 */
export function shadowWatchTable(table: u64, level: i32, vaBase: u64): void {
  // No context: a reset interrupted this walk (the fault will not install anything).
  if (!isRam(table) || load<u32>(H + H_SH_ROOT) == 0) return;
  const slot = rmapSlot(table);
  let r = <u32>load<u16>(slot);
  if (r == 0) {
    const b = base();
    const top = load<u32>(b + <usize>SH_REC_FREE_TOP);
    if (top == 0) { shadowReset(); return; }
    store<u32>(b + <usize>SH_REC_FREE_TOP, top - 1);
    r = <u32>load<u16>(b + <usize>SH_REC_FREE + (<usize>(top - 1) << 1));
    const rec = record(r);
    memory.fill(rec, 0, <usize>SH_REC_BYTES);
    store<u32>(rec + REC_GPN, <u32>(table >> 12));
    store<u16>(slot, <u16>r);
    const e = p2mEntry(table, true);
    if (e != 0 && (load<u64>(e) & P2M_V) != 0) p2mProtect(e, P2M_PT);
  }
  const rec = record(r);
  store<u8>(rec + REC_WRITES, 0);
  const bit: u32 = <u32>1 << <u32>load<i32>(H + H_SH_CTX);
  const n = <usize>load<u8>(rec + REC_NPARENTS);
  for (let i: usize = 0; i < n; i++) {
    const p = rec + REC_PARENTS + (i << 4);
    if (load<u64>(p) == vaBase && load<i32>(p + 12) == level) {
      store<u32>(p + 8, load<u32>(p + 8) | bit);
      return;
    }
  }
  if (n == <usize>SH_REC_PARENTS) { store<u8>(rec + REC_WILD, 1); return; }
  const p = rec + REC_PARENTS + (n << 4);
  store<u64>(p, vaBase);
  store<u32>(p + 8, bit);
  store<i32>(p + 12, level);
  store<u8>(rec + REC_NPARENTS, <u8>(n + 1));
}

// Drop, in context `c`, the shadow entry at `level` that covers `va` (and what hangs below it).
function zapAt(c: i32, va: u64, level: i32): void {
  const e = ctxEntry(c);
  const root = <usize>load<u32>(e + 8);
  if (root == 0) return;
  const levels = levelsOf(load<u64>(e));
  if (level >= levels) { clearTable(root, levels - 1); stat(VM_STAT_SHADOW_ZAP); return; }
  let t = root;
  for (let l = levels - 1; l > level; l--) {
    const pte = load<u64>(t + idx(va, l));
    if ((pte & PTE_V) == 0) return;
    t = child(pte);
  }
  const p = t + idx(va, level);
  const pte = load<u64>(p);
  if ((pte & PTE_V) == 0) return;
  if (level > 0) freeTree(child(pte), level - 1);
  store<u64>(p, 0);
  stat(VM_STAT_SHADOW_ZAP);
}

// Apply zapAt for every context of every place the record's table sits, at the entries
// [first, last] of the table (or, with whole, for the entry pointing at the table itself).
function zapDerived(rec: usize, first: u64, last: u64, whole: bool): void {
  const n = <usize>load<u8>(rec + REC_NPARENTS);
  for (let i: usize = 0; i < n; i++) {
    const p = rec + REC_PARENTS + (i << 4);
    const vaBase = load<u64>(p);
    const level = load<i32>(p + 12);
    for (let mask = load<u32>(p + 8); mask != 0; mask &= mask - 1) {
      const c = <i32>ctz(mask);
      if (whole) zapAt(c, vaBase, level + 1);
      else for (let k = first; k <= last; k++) zapAt(c, vaBase + (k << (12 + 9 * <u64>level)), level);
    }
  }
}

function unprotectPage(gpa: u64): void {
  const slot = rmapSlot(gpa);
  const r = <u32>load<u16>(slot);
  if (r != 0) {
    store<u32>(record(r) + REC_GPN, 0);
    store<u16>(slot, 0);
    const b = base();
    const top = load<u32>(b + <usize>SH_REC_FREE_TOP);
    store<u16>(b + <usize>SH_REC_FREE + (<usize>top << 1), <u16>r);
    store<u32>(b + <usize>SH_REC_FREE_TOP, top + 1);
  }
  const e = p2mEntry(gpa, false);
  if (e != 0) p2mUnprotect(e, P2M_PT);
}

// The table at `gpa` stops being shadowed: its shadows go, and so does its protection.
function unshadowTable(gpa: u64): void {
  const r = <u32>load<u16>(rmapSlot(gpa));
  if (r != 0) {
    const rec = record(r);
    if (load<u8>(rec + REC_WILD) != 0) { shadowReset(); return; }
    zapDerived(rec, 0, 0, true);
  }
  stat(VM_STAT_UNSHADOW);
  unprotectPage(gpa);
}

/**
 * A guest store of `size` bytes at `gpa` hit a protected page table (before the store is done):
 * drop the shadows of the entries it writes.
 */
export function shadowTableWrite(gpa: u64, size: u64): void {
  stat(VM_STAT_PT_WRITE);
  const r = <u32>load<u16>(rmapSlot(gpa));
  if (r == 0) { unprotectPage(gpa); return; }
  const rec = record(r);
  if (load<u8>(rec + REC_WILD) != 0) { shadowReset(); return; }
  const writes = load<u8>(rec + REC_WRITES) + 1;
  store<u8>(rec + REC_WRITES, writes);
  if (writes > FLOOD_WRITES) { unshadowTable(gpa & ~<u64>0xfff); return; }
  zapDerived(rec, (gpa & 0xfff) >> 3, ((gpa + size - 1) & 0xfff) >> 3, false);
}

/** The host wrote to RAM page `gpa` (DMA): a table there is shadowed no more. */
export function shadowHostWrite(gpa: u64): void {
  if (base() != 0 && load<u16>(rmapSlot(gpa)) != 0) unshadowTable(gpa);
}
