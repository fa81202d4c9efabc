// The memory layout of one VM's WebAssembly.Memory: the single source of truth shared by the
// core and the host. build.js turns every `export const NAME: T = value;` line below into
// host/core/layout.ts, so keep each constant on one line with a literal or simple expression
// of earlier constants.
//
//   0x0000_0000  AssemblyScript data (the core allocates nothing at run time)
//   VM_BASE      VM-wide fields (hart count, RAM geometry, HTIF, clock)
//   ROM_HOST     the boot ROM (guest physical ROM_GPA), written by the host at reset
//   DC_TAGS      tags of the decoded-code cache
//   MMIO_MAP     which guest-physical pages below RAM belong to host devices
//   HART_BASE    one HART_STRIDE block per hart: registers, CSRs, run block, TLBs
//   DC_SLOTS     decoded instructions, one slot per halfword of cached code pages
//   TLB_CTX_AREA the harts' further TLB contexts, touched as used
//   RAM_HOST     guest RAM (guest physical RAM_GPA ...), touched lazily
// test/layout.test.ts checks that these regions do not overlap.

// ---- VM-wide block ----
export const VM_BASE: i32 = 0x10000;
export const VM_NHARTS: i32 = 0x10000; // i32: number of harts
export const VM_FLAGS: i32 = 0x10004; // i32: VMF_* bits
export const VM_RAM_SIZE: i32 = 0x10008; // i64: guest RAM bytes
export const VM_TOHOST: i32 = 0x10010; // i64: guest-physical address of HTIF tohost, 0 = none
export const VM_FROMHOST: i32 = 0x10018; // i64: guest-physical address of HTIF fromhost
export const VM_MTIME_OFFSET: i32 = 0x10020; // i64: mtime = host ticks + this (keeps time across restore)
export const VM_MTIME_FROZEN: i32 = 0x10028; // i64: when VMF_MTIME_FROZEN, mtime reads this value
export const VM_INSTRET_TOTAL: i32 = 0x10030; // i64: instructions retired by all harts (statistics)
export const VM_RAM_HOST_LIMIT: i32 = 0x10038; // i32: RAM_HOST + RAM size (first byte past RAM)

// The VMM area (p2m.ts, shadow.ts): tables the host places past RAM when it creates the VM
// (host/core/core.ts vmmLayout), as host offsets.
export const VM_P2M_ROOT: i32 = 0x10040; // u32: the P2M root table (16 KiB, Sv39x4)
export const VM_P2M_POOL: i32 = 0x10044; // u32: next free page for P2M tables
export const VM_P2M_POOL_END: i32 = 0x10048; // u32: end of the P2M table pool
export const VM_DIRTY: i32 = 0x1004c; // u32: dirty bitmap, one bit per RAM page
export const VM_DIRTY_SYNC: i32 = 0x10050; // u32: where dirtyLogSync() leaves the bits it took
export const VM_DIRTY_ON: i32 = 0x10054; // i32: dirty logging is enabled
export const VM_PAGING: i32 = 0x10058; // i32: PAGING_*
export const VM_SH_BASE: i32 = 0x1005c; // u32: the shadow MMU's area (0 without shadow paging)
export const VM_SH_POOL: i32 = 0x10060; // u32: its pool of SH_POOL_PAGES shadow table pages
// Lazy memory (Core.beginLazy): while VM_LAZY is set, a RAM page whose bit is set in the
// VM_ABSENT bitmap has no content yet, and the P2M asks the host for it (pageIn) before its
// first touch maps it. The host owns the bitmap and clears VM_LAZY when no page is absent.
export const VM_LAZY: i32 = 0x10064; // i32: some RAM page may still be absent
export const VM_ABSENT: i32 = 0x10068; // u32: the absent-page bitmap, one bit per RAM page
// Pages that may hold something other than zeros: set when a page is first mapped (the P2M's
// populate) and on host writes; never cleared. Saving memory looks only at these (a scan of
// untouched RAM costs a page fault per page), the rest is zero as the VM memory started.
export const VM_USED: i32 = 0x1006c; // u32: the used-page bitmap, one bit per RAM page
// Set for good once a thread other than the first runs harts of this VM from a code cache of its
// own (DC_CACHES): from then on fence.i empties the thread's cache (dcache.ts dcFenceI).
export const VM_CODE_SHARED: i32 = 0x10070; // i32
export const PAGING_NESTED: i32 = 0; // TLB misses walk the guest tables through the P2M
export const PAGING_SHADOW: i32 = 1; // TLB misses walk shadow tables (guest virtual to frame)
// Paging counters (u64 each), for the benchmarks: see MachineStats.paging in host/machine/virt.ts.
export const VM_STAT_BASE: i32 = 0x10080;
export const VM_STAT_TLB_MISS: i32 = 0x10080; // accesses that missed the software TLB
export const VM_STAT_WALK_REFS: i32 = 0x10088; // memory references by walks (guest PTEs, P2M, shadow)
export const VM_STAT_P2M_POPULATE: i32 = 0x10090; // RAM frames mapped on first touch
export const VM_STAT_SHADOW_FAULT: i32 = 0x10098; // shadow misses filled by a guest walk
export const VM_STAT_PT_WRITE: i32 = 0x100a0; // guest writes to write-protected page tables (emulated)
export const VM_STAT_SHADOW_ZAP: i32 = 0x100a8; // shadow entries dropped by those writes
export const VM_STAT_UNSHADOW: i32 = 0x100b0; // page tables unprotected after a flood of writes
export const VM_STAT_SHADOW_RESET: i32 = 0x100b8; // whole-shadow resets (pool or records full)
export const VM_STAT_CTX_SWITCH: i32 = 0x100c0; // satp switches that found a cached shadow root
export const VM_STAT_CTX_NEW: i32 = 0x100c8; // satp switches that needed a new shadow root
export const VM_STAT_DIRTY_FAULT: i32 = 0x100d0; // first writes to pages write-protected for dirty logging
// Per hart, each on a cache line of its own (harts on different threads write them at every
// call into translated code): at VM_STAT_JIT + hart * JIT_STAT_STRIDE, u64 instructions retired
// by translated code (docs/TRANSLATION.md), then u64 calls into it from the run loop.
export const VM_STAT_JIT: i32 = 0x10200;
export const JIT_STAT_STRIDE: i32 = 64;
export const PAGING_STAT_COUNT: i32 = 11;

export const VMF_SBI_IN_HOST: i32 = 1; // ecall from S-mode exits to the host (built-in SBI)
export const VMF_MTIME_FROZEN: i32 = 2; // mtime is VM_MTIME_FROZEN (deterministic tests)

// ---- Boot ROM ----
export const ROM_HOST: i32 = 0x20000;
export const ROM_GPA: i32 = 0x1000;
export const ROM_SIZE: i32 = 0xf000;

// ---- Harts ----
export const HART_BASE: i32 = 0x200000;
export const HART_STRIDE: i32 = 0x40000;
export const MAX_HARTS: i32 = 8;

// Offsets inside one hart block.
export const H_X: i32 = 0x000; // 32 x i64 integer registers
export const H_F: i32 = 0x100; // 32 x i64 floating-point registers (NaN-boxed singles)
export const H_PC: i32 = 0x200; // i64
export const H_PRIV: i32 = 0x208; // i32: 0 = U, 1 = S, 3 = M
export const H_WFI: i32 = 0x20c; // i32: 1 while halted in WFI
export const H_MIP: i32 = 0x210; // i32: pending bits owned by the core (SSIP, STIP without Sstc, SEIP by software, MSIP)
export const H_ATTN: i32 = 0x214; // i32: host asks the hart to return from run() (and wake word)
export const H_HARTID: i32 = 0x218; // i32
export const H_RESV_VALID: i32 = 0x21c; // i32: LR reservation held
export const H_RESV_ADDR: i32 = 0x220; // i64: host offset of the reservation
export const H_RESV_VALUE: i32 = 0x228; // i64: value loaded by LR
export const H_INSTRET: i32 = 0x230; // i64: retired instructions (mcycle counts the same)
export const H_MIP_EXT: i32 = 0x238; // i32: pending bits driven by the host (PLIC: MEIP, SEIP), set atomically

// CSRs (i64 each)
export const H_MSTATUS: i32 = 0x240;
export const H_MISA: i32 = 0x248;
export const H_MEDELEG: i32 = 0x250;
export const H_MIDELEG: i32 = 0x258;
export const H_MIE: i32 = 0x260;
export const H_MTVEC: i32 = 0x268;
export const H_MCOUNTEREN: i32 = 0x270;
export const H_MSCRATCH: i32 = 0x278;
export const H_MEPC: i32 = 0x280;
export const H_MCAUSE: i32 = 0x288;
export const H_MTVAL: i32 = 0x290;
export const H_MENVCFG: i32 = 0x298;
export const H_MCOUNTINHIBIT: i32 = 0x2a0;
export const H_STVEC: i32 = 0x2a8;
export const H_SCOUNTEREN: i32 = 0x2b0;
export const H_SSCRATCH: i32 = 0x2b8;
export const H_SEPC: i32 = 0x2c0;
export const H_SCAUSE: i32 = 0x2c8;
export const H_STVAL: i32 = 0x2d0;
export const H_SATP: i32 = 0x2d8;
export const H_SENVCFG: i32 = 0x2e0;
export const H_FCSR: i32 = 0x2e8; // i32 view: frm << 5 | fflags
export const H_MTIMECMP: i32 = 0x2f0; // CLINT mtimecmp of this hart
export const H_STIMECMP: i32 = 0x2f8; // Sstc
export const H_MCYCLE_OFFSET: i32 = 0x300; // mcycle = H_CYCLE + this (writes to mcycle)
export const H_MINSTRET_OFFSET: i32 = 0x308;
export const H_PMPCFG: i32 = 0x310; // 16 x u8 (pmpcfg0 and pmpcfg2 on RV64)
export const H_PMPADDR: i32 = 0x320; // 16 x i64
export const PMP_COUNT: i32 = 16;
// Virtual range [lo, hi] (inclusive) covering every superpage the paged TLBs may hold pages of;
// empty when lo > hi. An address sfence.vma inside it must flush everything (entries are per
// 4 KiB page, so the superpage's other pages may be cached too); outside it, one page.
export const H_TLB_SUPER_LO: i32 = 0x3a0; // u64
export const H_TLB_SUPER_HI: i32 = 0x3a8; // u64
// Shadow paging: the shadow context this hart translates with (-1 = look it up from satp on the
// next TLB miss) and its root table (host offset).
export const H_SH_CTX: i32 = 0x3b0; // i32
export const H_SH_ROOT: i32 = 0x3b4; // u32
// Interrupts this hart has taken (the hypervisor's watchdog: a guest that leaves an enabled
// interrupt pending and takes none is stuck with interrupts off).
export const H_INTR_TAKEN: i32 = 0x3b8; // u64
// Bit c * 4 + REGIME_*: the tables of regime r in TLB context c (below) that may hold an entry;
// a flush writes only those.
export const H_TLB_LIVE: i32 = 0x3c0; // i32

// The run block: why run() returned, and what the host must do about it.
export const H_EXIT_REASON: i32 = 0x400; // i32: EXIT_*
export const H_EXIT_ADDR: i32 = 0x408; // i64: MMIO guest-physical address
export const H_EXIT_DATA: i32 = 0x410; // i64: MMIO store data or tohost value; the host puts MMIO load results here
export const H_EXIT_SIZE: i32 = 0x418; // i32: MMIO access size in bytes
export const H_EXIT_WRITE: i32 = 0x41c; // i32: 1 = store
export const H_EXIT_LOAD_RD: i32 = 0x420; // i32: register the pending MMIO load fills, -1 = none
export const H_EXIT_LOAD_KIND: i32 = 0x424; // i32: LOAD_* of the pending MMIO load
export const H_EXIT_EXECUTED: i32 = 0x428; // i64: work done by the last run(): instructions executed plus traps taken
export const H_EXIT_RETIRED: i32 = 0x430; // i64: of those, instructions that retired
// A translation (docs/TRANSLATION.md) leaves here what the run loop needs besides the next pc.
export const H_JIT_RETIRED: i32 = 0x438; // i32: instructions the translation retired
export const H_JIT_STATUS: i32 = 0x43c; // i32: 0, or ST_FAULT/ST_MMIO/ST_TOHOST as the run loop's cases

// Debug triggers (Sdtrig, trigger.ts): tselect and TRIGGER_COUNT x { tdata1, tdata2, tdata3 }.
export const H_TSELECT: i32 = 0x440; // u64
export const H_TDATA: i32 = 0x448; // TRIGGER_COUNT x 3 x u64
export const TRIGGER_COUNT: i32 = 4;
// The host's debugger (a GDB stub): its flags (DBG_*), what is armed (TA_*, derived from the triggers,
// the breakpoint list and the flags by debugChanged()), and its breakpoint list: virtual pcs that stop
// the hart before executing there (EXIT_DEBUG), in any mode, besides the triggers.
export const H_DEBUG: i32 = 0x4a8; // i32: DBG_* bits
export const H_TRIG_ARMED: i32 = 0x4ac; // i32: TA_* bits
export const H_DEBUG_BP_COUNT: i32 = 0x4b0; // i32
export const H_DEBUG_BP: i32 = 0x4b8; // DEBUG_BP_MAX x u64
export const DEBUG_BP_MAX: i32 = 64;
// i32 the hart's full fences do a locked add of zero to: a full barrier on the host (Binaryen
// refuses atomic.fence here), on a line of its own hart's.
export const H_FENCE: i32 = 0x6c0; // past H_DEBUG_BP's DEBUG_BP_MAX entries
// Harts of one VM running on several threads (host/machine/remote-harts.ts): who may touch the
// hart now, the exit a thread hands to the VM's home, the word a sleeping hart's thread waits on,
// and remote TLB flushes (a request count the hart catches up with itself, at its next run() or
// slice boundary; the requester waits only while the hart is inside run()).
export const H_OWNER: i32 = 0x700; // i32: OWNER_*
export const H_OWNER_EXIT: i32 = 0x704; // i32: EXIT_* handed to the home thread, 0 none
export const H_KICK: i32 = 0x708; // i32: bumped and notified when something may wake the hart
export const H_IN_RUN: i32 = 0x70c; // i32: 1 while a thread runs the hart (inside run())
export const H_TLB_REQ: i32 = 0x710; // i32: TLB flushes requested by other harts
export const H_TLB_DONE: i32 = 0x714; // i32: requests the hart has flushed for
export const H_FENCEI_REQ: i32 = 0x718; // i32: remote fence.i requested by other harts (the hart empties its thread's code cache)
export const H_FENCEI_DONE: i32 = 0x71c; // i32: requests the hart has done
// TLB contexts (see TLB_CTXS): which one is in use, the address space (satp) each caches (0:
// none), and when each was last switched to (the least recent is replaced).
export const H_TLB_CTX: i32 = 0x740; // i32
export const H_TLB_CLOCK: i32 = 0x744; // u32
export const H_TLB_CTX_SATP: i32 = 0x748; // TLB_CTXS x u64
export const H_TLB_CTX_USE: i32 = 0x768; // TLB_CTXS x u32
export const H_TLB_CTX_INIT: i32 = 0x778; // i32: bit c: context c emptied since the hart's reset
export const DBG_STEP: i32 = 1; // single step: every fetch takes the checked path (no translation), no interrupts at slice boundaries
export const TA_EXEC: i32 = 1; // an execute trigger or a host breakpoint is armed
export const TA_DATA: i32 = 2; // a load or store trigger is armed
export const TA_STEP: i32 = 4; // DBG_STEP is set

export const LOAD_SIGNED: i32 = 0; // sign-extend into x[rd]
export const LOAD_UNSIGNED: i32 = 1; // zero-extend into x[rd]
export const LOAD_FLOAT: i32 = 2; // into f[rd] (NaN-boxed when 4 bytes)

export const EXIT_BUDGET: i32 = 0; // the instruction budget is spent
export const EXIT_MMIO: i32 = 1; // an access to a host device (H_EXIT_ADDR/SIZE/WRITE/DATA)
export const EXIT_HALT: i32 = 2; // WFI with nothing pending: wait for an interrupt
export const EXIT_TOHOST: i32 = 3; // the guest wrote HTIF tohost (value in H_EXIT_DATA)
export const EXIT_SBI: i32 = 4; // ecall from S-mode with VMF_SBI_IN_HOST: a0..a7 in x10..x17
export const EXIT_ATTENTION: i32 = 5; // the host set H_ATTN
// A trigger with action 1 (enter debug mode: the host's debugger owns it) or a host breakpoint
// fired before the instruction at pc ran: H_EXIT_ADDR the address it matched (the pc, or a load's or
// store's address), H_EXIT_WRITE the access (4 execute, 2 store, 1 load), H_EXIT_DATA the trigger's
// index (-1: the host's breakpoint list).
export const EXIT_DEBUG: i32 = 6;

// Software TLB: one table per translation regime and access kind (read, write, fetch), each
// TLB_ENTRIES entries of { tag: i64, addend: i64 }; a hit maps va to host offset va + addend.
// Regimes: U, S, S with SUM set (so toggling SUM, as Linux does around every user copy, needs no
// flush), M.
export const H_TLB: i32 = 0x1000;
export const TLB_REGIMES: i32 = 4;
export const TLB_ENTRIES: i32 = 1024;
export const TLB_ENTRY_BYTES: i32 = 16;
export const TLB_TABLE_BYTES: i32 = 16384; // TLB_ENTRIES * TLB_ENTRY_BYTES
// The paged regimes' tables (U, S, S with SUM) come in TLB_CTXS contexts per hart, each caching
// one address space (one satp value: root and ASID), so a guest switching among up to TLB_CTXS
// address spaces (Linux's processes, which have ASIDs) keeps its entries, as a TLB tagged with
// ASIDs does. Context 0 is the tables at H_TLB; contexts 1.. lie in the TLB_CTX_AREA, a
// TLB_CTX_HART_STRIDE per hart. The M regime has one set of tables, at H_TLB.
export const TLB_CTXS: i32 = 4;
export const TLB_CTX_BYTES: i32 = 0x24000; // 3 regimes x 3 tables x TLB_TABLE_BYTES
export const TLB_CTX_AREA: i32 = 0xc00000;
export const TLB_CTX_HART_STRIDE: i32 = 0x6c000; // (TLB_CTXS - 1) x TLB_CTX_BYTES
export const TLB_READ: i32 = 0;
export const TLB_WRITE: i32 = 1;
export const TLB_FETCH: i32 = 2;

// ---- Device map ----
// One bit per 4 KiB page of guest-physical space below RAM_GPA: set where the host has a device.
// Accesses to other non-RAM addresses raise access faults in the core, as on real hardware.
export const MMIO_MAP: i32 = 0x100000; // 65536 bytes

// ---- Decoded-code cache (dcache.ts) ----
// DC_PAGES entries in DC_WAYS-way sets, each caching one 4 KiB page of code (RAM or ROM) as one
// 8-byte decoded slot per halfword. DC_TAGS holds each entry's host page offset (0 = free);
// replacement is a clock per set: DC_HAND, per set, the way it looks at next, and DC_USED, per
// entry, set when the entry is used and cleared as the hand passes. An entry whose page the
// translation tier translated has DC_TRANSLATED set there too (the tier sets it): its use count
// goes up to DC_KEEP_TRANSLATED turns of the hand instead of one (dcache.ts victim).
export const DC_TAGS: i32 = 0xc0000; // DC_PAGES x u32
export const DC_SCRATCH: i32 = 0xc0800; // u64: a slot for an instruction run without caching it
export const JIT_SLOT: i32 = 0xc0808; // u64: the slot of an instruction translated code has the core run (jitExec)
export const DC_HAND: i32 = 0xc0c00; // DC_PAGES / DC_WAYS x u8
export const DC_USED: i32 = 0xc0d00; // DC_PAGES x u8
export const DC_TRANSLATED: i32 = 0x80; // in an entry's DC_USED byte
export const DC_KEEP_TRANSLATED: i32 = 15;
// What the translation tier (host/jit/, docs/TRANSLATION.md) reads per entry: a generation that
// changes whenever the entry's slots are dropped (so a translation of them is dead), a heat
// count (saturating: a unit per 4096 instructions interpreted in the page), and how many slots
// are decoded.
export const DC_GEN: i32 = 0xc1000; // DC_PAGES x u32
export const DC_HEAT: i32 = 0xc1400; // DC_PAGES x u8
export const DC_DECODED: i32 = 0xc1800; // DC_PAGES x u16
// Instructions interpreted in each entry's page not yet counted in DC_HEAT (one heat unit per
// 4096 of them): the run loop adds up what it interprets in a page as it leaves it.
export const DC_INTERP: i32 = 0xc1a00; // DC_PAGES x u16
// Where in each entry's page slice boundaries found the run loop interpreting: a bit per 32-byte
// granule (128 a page), so that the tier translates the hot region of a page rather than all of it.
export const DC_SAMPLED: i32 = 0xc2000; // DC_PAGES x 16 bytes
// One bit per 4 KiB page of this memory: set when some hart's write TLB may map the page, so
// caching code from a page whose bit is clear need not search the write TLBs.
export const WRITE_MAPPED: i32 = 0xe0000; // 131072 bytes (4 GiB / 4 KiB / 8)
export const DC_PAGES: i32 = 256;
export const DC_WAYS: i32 = 8;
export const DC_PAGE_BYTES: i32 = 16384; // 2048 slots x 8 bytes
export const DC_SLOTS: i32 = 0x400000; // DC_PAGES x DC_PAGE_BYTES (4 MiB, touched as used)
// Each thread running harts of the VM at once has a decoded-code cache of its own (a cache's
// OP_JIT markers name its thread's function table, and a cache is one thread's to change):
// cache k's fields above (DC_TAGS to DC_SAMPLED, the scratch slots) lie k * DC_META_STRIDE
// further, its slots k * DC_SLOTS_STRIDE further. A store invalidates the page in every cache.
export const DC_CACHES: i32 = 2;
export const DC_META_STRIDE: i32 = 0x4000;
export const DC_SLOTS_STRIDE: i32 = 0x400000;
// ---- The shadow MMU's area (shadow.ts), at VM_SH_BASE ----
// Contexts: one per guest root (satp) in use, each with its shadow root table.
export const SH_CTX_MAX: i32 = 32;
export const SH_CTX_BYTES: i32 = 16; // { satp: u64, root: u32, lastUse: u32 }
export const SH_CTX: i32 = 0; // SH_CTX_MAX x SH_CTX_BYTES
export const SH_CLOCK: i32 = 0x200; // u32: use counter for LRU
export const SH_FREE_TOP: i32 = 0x204; // u32: pages on the free stack
export const SH_REC_FREE_TOP: i32 = 0x208; // u32: records on the free stack
// Shadow table pages, from a stack of free page numbers.
export const SH_POOL_PAGES: i32 = 4096;
export const SH_FREE: i32 = 0x1000; // SH_POOL_PAGES x u32 (page host offsets)
// Records of write-protected guest page tables: which shadow entries derive from each.
export const SH_RECS: i32 = 8192;
export const SH_REC_BYTES: i32 = 80; // { gpn: u32, writes: u8, nparents: u8, wild: u8, _: u8, parents: 4 x { vaBase: u64, ctxMask: u32, level: u32 } }
export const SH_REC_PARENTS: i32 = 4;
export const SH_REC_FREE: i32 = 0x5000; // SH_RECS x u16 record numbers
export const SH_RECORDS: i32 = 0x9000; // SH_RECS x SH_REC_BYTES
export const SH_RMAP: i32 = 0xa9000; // one u16 record number per RAM page (0 = not protected)
// The pool follows the RMAP (host/core/core.ts vmmLayout places it page-aligned).
// ---- Guest RAM ----
export const RAM_HOST: i32 = 0x1000000;
export const RAM_GPA: i64 = 0x80000000;
// CLINT, emulated inside the core (timer and software interrupts never leave it).
export const CLINT_GPA: i64 = 0x2000000;
export const CLINT_SIZE: i64 = 0x10000;
