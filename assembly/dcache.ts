// The decoded-code cache: 256 pages of code in 8-way sets, keyed by where they live in the VM's
// memory (that is, by physical address), hold one decoded slot (decode.ts) per halfword, filled
// lazily the first time each instruction runs. Virtual mappings, privilege and CSRs do not enter
// the key, so the cache survives satp switches, traps and sfence.vma. A fresh (zeroed) memory is
// an empty cache.
//
// Coherence: a page is never both cached and writable through a TLB entry. Caching a page drops
// every write-TLB entry that maps it (all harts; the WRITE_MAPPED bitmap says which pages may
// have one), so the next store to it takes the slow path, which invalidates the page (mmu.ts
// resolve). Host writes (DMA, loaders) invalidate through hostWrite(). Self-modifying code
// therefore works without fence.i, and while one thread runs the VM's harts its cache is always
// what memory holds: fence.i has nothing to do (dcFenceI). Linux runs one on every hart each
// time it maps a page of code (every exec): emptying the cache then cost every translation.
//
// Threads: each thread running harts of the VM has a cache of its own (layout.ts DC_CACHES). A
// store invalidates the page in all of them; another thread's entry is only untagged, and that
// thread may run what it decoded from the page until it leaves it, finishes its run() or runs
// fence.i (which empties its own cache). Two threads caching and write-mapping one page at the
// same moment can miss each other's mark; the store then reaches the other thread's code after
// its next fence.i: what the ISA promises a hart that did not run fence.i is no more.

import {
  DC_TAGS, DC_SCRATCH, DC_HAND, DC_USED, DC_TRANSLATED, DC_KEEP_TRANSLATED, DC_WAYS, DC_GEN, DC_HEAT, DC_DECODED, DC_INTERP, DC_SAMPLED, WRITE_MAPPED, DC_PAGES, DC_PAGE_BYTES, DC_SLOTS, DC_CACHES,
  DC_META_STRIDE, DC_SLOTS_STRIDE, VM_CODE_SHARED, H_TLB_LIVE, TLB_TABLE_BYTES, TLB_CTXS, TLB_WRITE,
} from "./layout";
import { hartBase, nharts, charge, fillCharged, tlbTableOf } from "./hart";
import { decode } from "./decode";

// Entries come in DC_WAYS-way sets: a page may sit in any entry of its set. Two ways thrashed:
// Linux's text is physically contiguous, so its hot pages (system calls, faults, the scheduler)
// fall in sets together with the program's; zcat in the guest evicted 21,000 pages in a run
// (and its translations with them), 5,000 with eight ways.
const WAYS: usize = <usize>DC_WAYS;
const SETS: usize = <usize>DC_PAGES / WAYS;

// This thread's cache (see DC_CACHES): where its fields and its slots are.
export let dcMeta: usize = 0;
let dcSlots: usize = DC_SLOTS;

/** Run from cache k from now on, starting it empty (a Core taking up harts on its thread). */
export function dcSelect(k: i32): void {
  if (k != 0) atomic.store<i32>(VM_CODE_SHARED, 1); // a second thread: fence.i must empty caches from now on
  dcMeta = <usize>k * <usize>DC_META_STRIDE;
  dcSlots = <usize>DC_SLOTS + <usize>k * <usize>DC_SLOTS_STRIDE;
  dcFlush();
}

@inline function setOf(hostPage: usize): usize {
  return (hostPage >> 12) & (SETS - 1);
}

// The entry of the cache whose fields are at `meta` caching `hostPage`, or -1.
@inline function findEntry(meta: usize, hostPage: usize): isize {
  const first = setOf(hostPage) * WAYS;
  for (let e = first; e < first + WAYS; e++) if (load<u32>(meta + DC_TAGS + (e << 2)) == <u32>hostPage) return <isize>e;
  return -1;
}

/**
 * This thread's slot for an instruction run without caching it: harts on other threads decode
 * into theirs at the same time (one shared slot once had a hart run another's instruction).
 */
@inline export function dcScratch(): usize {
  return dcMeta + <usize>DC_SCRATCH;
}

/** The slots of the code page at host offset `hostPage` if it is cached (marked used), else 0. */
export function dcCached(hostPage: usize): usize {
  const e = findEntry(dcMeta, hostPage);
  if (e < 0) return 0;
  markUsed(dcMeta, <usize>e);
  return dcSlots + <usize>e * <usize>DC_PAGE_BYTES;
}

/** The slots of the code page at host offset `hostPage`, allocating (empty) on a miss. */
export function dcPage(hostPage: usize): usize {
  const set = setOf(hostPage);
  const meta = dcMeta;
  let e = findEntry(meta, hostPage);
  if (e >= 0) {
    markUsed(meta, <usize>e);
    return dcSlots + <usize>e * <usize>DC_PAGE_BYTES;
  }
  e = <isize>victim(meta, set);
  store<u8>(meta + DC_USED + <usize>e, 0); // a page run through once goes first: one entered again stays
  const slots = dcSlots + <usize>e * <usize>DC_PAGE_BYTES;
  fillCharged(slots, 0, <usize>DC_PAGE_BYTES);
  renew(meta, <usize>e);
  store<u32>(meta + DC_TAGS + (<usize>e << 2), <u32>hostPage);
  revokeWriteMappings(hostPage);
  return slots;
}

// An entry was used: the hand passes it once before it may go, or, translated, up to
// DC_KEEP_TRANSLATED times (counted up by each use). A translation costs milliseconds of compiling
// and then the heat to earn it again, while a page's decoded slots come back as it runs: a Linux
// boot's initramfs unpacking, paused while the console printed, saw the clock evict inflate's
// page and its translation, and interpreted it until it was translated again (docs/PERFORMANCE.md).
@inline function markUsed(meta: usize, e: usize): void {
  const at = meta + DC_USED + e;
  const used = <u32>load<u8>(at);
  if ((used & DC_TRANSLATED) == 0) store<u8>(at, 1);
  else if ((used & ~DC_TRANSLATED) < <u32>DC_KEEP_TRANSLATED) store<u8>(at, <u8>(used + 1));
}

// The entry of `set` to replace: a free one, else the first the clock hand finds unused since it
// last passed (counting down the uses it passes), so the pages in use stay. It stops within
// DC_KEEP_TRANSLATED + 1 turns and a way: after those every count is 0.
function victim(meta: usize, set: usize): usize {
  const first = set * WAYS;
  for (let e = first; e < first + WAYS; e++) if (load<u32>(meta + DC_TAGS + (e << 2)) == 0) return e;
  let way = <usize>load<u8>(meta + DC_HAND + set) & (WAYS - 1); // whatever memory held (a restored core region)
  while (true) {
    const e = first + way;
    way = (way + 1) & (WAYS - 1);
    const used = <u32>load<u8>(meta + DC_USED + e);
    if ((used & ~DC_TRANSLATED) == 0) {
      store<u8>(meta + DC_HAND + set, <u8>way);
      return e;
    }
    store<u8>(meta + DC_USED + e, <u8>(used - 1));
  }
}

/**
 * Stores to `hostPage` must take the slow path from now on (its code is cached, or the P2M
 * write-protects it): drop every write-TLB entry that may map it.
 */
export function revokeWriteMappings(hostPage: usize): void {
  const byte = writeMappedByte(hostPage), bit = writeMappedBit(hostPage);
  if ((load<u8>(byte) & bit) != 0) {
    dropWriteMappings(hostPage);
    store<u8>(byte, load<u8>(byte) & ~bit);
  }
}

// Where `hostPage`'s bit lies in the WRITE_MAPPED bitmap.
@inline function writeMappedByte(hostPage: usize): usize {
  return WRITE_MAPPED + (hostPage >> 15);
}
@inline function writeMappedBit(hostPage: usize): u8 {
  return <u8>1 << <u8>((hostPage >> 12) & 7);
}

/** A write-TLB entry for host page `hostPage` is being made (see WRITE_MAPPED). */
export function noteWriteMapping(hostPage: usize): void {
  const byte = writeMappedByte(hostPage);
  store<u8>(byte, load<u8>(byte) | writeMappedBit(hostPage));
}

/**
 * Remove every write-TLB entry of every hart (each TLB context and regime), and with them every
 * page's WRITE_MAPPED bit: what revokeWriteMappings does for one page, for all at once. Taking
 * write access from thousands of pages one by one (dirty logging turned on, a migration round
 * protecting what was written again) scanned every write table once per page: an idle Linux
 * with 64 MiB of recently written memory paused 60-70 ms as a migration began.
 */
export function revokeAllWriteMappings(): void {
  const n = nharts();
  for (let h = 0; h < n; h++) {
    const live = load<i32>(hartBase(h) + H_TLB_LIVE);
    for (let bit = 0; bit < TLB_CTXS * 4; bit++) { // bit = context * 4 + regime
      if ((live & (1 << bit)) == 0) continue;
      fillCharged(tlbTableOf(h, hartBase(h), bit >> 2, bit & 3, TLB_WRITE), 0xff, <usize>TLB_TABLE_BYTES); // tags all ones: empty
    }
  }
  // Bits exist only for pages of this memory: a bit a page, a byte per 32 KiB.
  memory.fill(<usize>WRITE_MAPPED, 0, <usize>memory.size() << 1);
}

// Remove every write-TLB entry, of every hart, TLB context and regime, that maps host page `hostPage`.
function dropWriteMappings(hostPage: usize): void {
  const n = nharts();
  for (let h = 0; h < n; h++) {
    const live = load<i32>(hartBase(h) + H_TLB_LIVE);
    for (let bit = 0; bit < TLB_CTXS * 4; bit++) { // bit = context * 4 + regime
      if ((live & (1 << bit)) == 0) continue; // no entry since its last flush
      charge(TLB_TABLE_BYTES >> 8); // a unit per 16 entries looked at
      const table = tlbTableOf(h, hartBase(h), bit >> 2, bit & 3, TLB_WRITE);
      for (let e = table, end = table + <usize>TLB_TABLE_BYTES; e < end; e += 16) {
        const tag = load<u64>(e);
        if (tag != u64.MAX_VALUE && <usize>(tag + load<u64>(e + 8)) == hostPage) store<u64>(e, u64.MAX_VALUE);
      }
    }
  }
}

// Entry e's slots are dropped: a translation of them is dead (the host sees the generation
// change), and the entry starts cold.
function renew(meta: usize, e: usize): void {
  atomic.add<u32>(meta + DC_GEN + (e << 2), 1); // another thread's dcInvalidate may add too
  store<u8>(meta + DC_HEAT + e, 0);
  store<u16>(meta + DC_DECODED + (e << 1), 0);
  store<u16>(meta + DC_INTERP + (e << 1), 0);
  store<u64>(meta + DC_SAMPLED + (e << 4), 0);
  store<u64>(meta + DC_SAMPLED + (e << 4) + 8, 0);
}

// The entry of this thread's cache whose slots start at `slots` (the run loop's page), or DC_PAGES
// when `slots` is none of them (the scratch slot, or nothing yet).
@inline function entryOfSlots(slots: usize): usize {
  return slots < dcSlots ? <usize>DC_PAGES : min((slots - dcSlots) / <usize>DC_PAGE_BYTES, <usize>DC_PAGES);
}

/**
 * The run loop interpreted `n` more instructions in entry `slots`' page (it counts as it leaves
 * the page, and at the end of each slice): a unit of heat (DC_HEAT) per 4096 of them. Counted,
 * not sampled: code called now and then from everywhere (memcpy, the kernel's RNG) runs in short
 * visits, and slices seldom end there.
 */
export function dcCountInterpreted(slots: usize, n: i32): void {
  const e = entryOfSlots(slots);
  if (e == <usize>DC_PAGES || n <= 0) return;
  const at = dcMeta + DC_INTERP + (e << 1);
  const total = <u32>load<u16>(at) + <u32>n;
  store<u16>(at, <u16>(total & 4095));
  if (total < 4096) return;
  const heat = dcMeta + DC_HEAT + e;
  const h = <u32>load<u8>(heat) + (total >> 12);
  store<u8>(heat, <u8>(h > 255 ? 255 : h));
}

/**
 * A slice boundary found the run loop in entry `slots`' page, about to run byte `off` of it (or,
 * past 4095, the next page's code): mark the place (DC_SAMPLED), for the tier's hot region.
 */
export function dcSampleWhere(slots: usize, off: u64): void {
  const e = entryOfSlots(slots);
  if (e == <usize>DC_PAGES || off > 0xfff) return;
  const granule = <u32>off >> 5;
  const byte = dcMeta + DC_SAMPLED + (e << 4) + <usize>(granule >> 3);
  store<u8>(byte, load<u8>(byte) | <u8>(<u32>1 << (granule & 7)));
}

/** The page at `hostPage` is about to change: forget what was decoded from it, in every cache. */
export function dcInvalidate(hostPage: usize): void {
  for (let k = 0; k < DC_CACHES; k++) {
    const meta = <usize>k * <usize>DC_META_STRIDE;
    const e = findEntry(meta, hostPage);
    if (e < 0) continue;
    if (meta == dcMeta) drop(k, <usize>e);
    else if (atomic.cmpxchg<u32>(meta + DC_TAGS + (<usize>e << 2), <u32>hostPage, 0) == <u32>hostPage) {
      // Another thread's cache: only untag the entry (and kill its translation). Its thread may
      // be running from the slots, which must not change under it (an instruction's fields are
      // read one by one); it runs what it decoded until it leaves the page or the run ends, as
      // the ISA allows a hart that has not run fence.i, and clears the slots when it takes the
      // entry again (dcPage).
      atomic.add<u32>(meta + DC_GEN + (<usize>e << 2), 1);
    }
  }
}

// Empty entry e of cache k (this thread's, or any when no hart runs).
function drop(k: i32, e: usize): void {
  const meta = <usize>k * <usize>DC_META_STRIDE;
  store<u32>(meta + DC_TAGS + (e << 2), 0);
  renew(meta, e);
  // Clear the slots too: the run loop may still hold a pointer to them (it re-checks the tag
  // before decoding into a cleared slot, see decodeSlot).
  fillCharged(<usize>DC_SLOTS + <usize>k * <usize>DC_SLOTS_STRIDE + e * <usize>DC_PAGE_BYTES, 0, <usize>DC_PAGE_BYTES);
}

/**
 * fence.i: only when harts of the VM run on other threads too (VM_CODE_SHARED) can this cache
 * hold code older than memory (see "Threads" above), and then it is emptied.
 */
export function dcFenceI(): void {
  if (atomic.load<i32>(VM_CODE_SHARED) != 0) dcFlush();
}

/** Forget everything this thread's cache holds. */
export function dcFlush(): void {
  flushCache(<i32>(dcMeta / <usize>DC_META_STRIDE));
}

/** Forget all decoded code, of every thread (reset, restore: no hart runs). */
export function dcFlushAll(): void {
  for (let k = 0; k < DC_CACHES; k++) flushCache(k);
}

function flushCache(k: i32): void {
  charge(DC_PAGES >> 3);
  const meta = <usize>k * <usize>DC_META_STRIDE;
  for (let i = 0; i < DC_PAGES; i++) {
    if (load<u32>(meta + DC_TAGS + (<usize>i << 2)) != 0) drop(k, <usize>i);
  }
}

/**
 * Decode the instruction at host offset `host` (in page `hostPage`) into the slot at `slotPtr`.
 * Returns false, leaving the slot alone, if the page has been invalidated since the caller looked
 * it up (then the decoded value is in dcScratch()).
 */
export function decodeSlot(slotPtr: usize, hostPage: usize, host: usize): bool {
  const d = decode(<u32>load<u16>(host) | (<u32>load<u16>(host + 2) << 16));
  const e = (slotPtr - dcSlots) / <usize>DC_PAGE_BYTES;
  const meta = dcMeta;
  if (load<u32>(meta + DC_TAGS + (e << 2)) == <u32>hostPage) {
    store<u64>(slotPtr, d);
    store<u16>(meta + DC_DECODED + (e << 1), load<u16>(meta + DC_DECODED + (e << 1)) + 1);
    return true;
  }
  store<u64>(dcScratch(), d);
  return false;
}
