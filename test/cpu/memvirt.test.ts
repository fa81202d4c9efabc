// Memory virtualization: the P2M (first-touch frames, the boot ROM read-only, device space never
// mapped), the counters of nested and shadow paging, shadow coherence when the guest or the host
// changes a page table, cached shadow roots across satp switches, and dirty logging.
// (paging.test.ts runs the whole translation suite under both modes; this file checks what
// the guest cannot see: the hypervisor's own bookkeeping.)
import { describe, expect, it } from "vitest";
import {
  machine, enter, PageTables, PTE, RWX, AD, RAM, CAUSE, PRV_S, L, type Machine,
} from "./harness";
import type { PagingStats } from "../../host/core/core";

const MB = 1 << 20;
const POOL = RAM + 0x300000; // page tables
const DATA = RAM + 0x100000; // data pages the programs touch
const VA = 0x40000000;
const { V, R, W } = PTE;
const PAGINGS = ["nested", "shadow"] as const;
type Paging = (typeof PAGINGS)[number];

const L0 = POOL + 2 * 4096; // spaces() tables: the root, then level 1 and level 0 for VA
const pte = (pa: number, flags: bigint) => (BigInt(pa) >> 12n << 10n) | flags;

/** Run until pc reaches `label` (one instruction at a time: labels here are not self-loops). */
function runTo(m: Machine, label: string): void {
  m.stopAt(label);
  expect(m.run(100_000, 1).at).toBe(label);
}

/** Counter changes between two snapshots. */
function delta(before: PagingStats, after: PagingStats): PagingStats {
  const d = {} as PagingStats;
  for (const k of Object.keys(after) as (keyof PagingStats)[]) d[k] = after[k] - before[k];
  return d;
}

/**
 * An S-mode program `body` with RAM identity-mapped by a gigapage and whatever `map` adds; satp
 * is written by csrw (as a guest would).
 */
function guest(body: string, paging: Paging, map: (pt: PageTables, m: Machine) => void, mode: "sv39" | "sv48" = "sv39") {
  const m = machine(null, { ramSize: 8 * MB, paging });
  const pt = new PageTables(m, mode, POOL);
  pt.map(RAM, RAM, V | RWX | AD, 2);
  map(pt, m);
  m.load(`
    li t0, ${pt.satp()}
    csrw satp, t0
    ${enter(PRV_S, "body")}
  body:
  ${body}`);
  return { m, pt };
}

/** guest() with `pages` 4 KiB pages at VA.. mapped to DATA.., each holding its index + 1. */
function spaces(body: string, opts: { paging: Paging; mode?: "sv39" | "sv48"; pages?: number }) {
  const leaves: number[] = [];
  const { m, pt } = guest(body, opts.paging, (pt, m) => {
    for (let i = 0; i < (opts.pages ?? 8); i++) {
      leaves.push(pt.map(VA + i * 4096, DATA + i * 4096, V | R | W | AD));
      m.w64(DATA + i * 4096, i + 1);
    }
  }, opts.mode);
  return { m, pt, leaves };
}

/** Sum the first doubleword of pages [from, from + n) at VA.. into a0. */
const touch = (n: number, from = 0) => `
    li t0, ${VA + from * 4096}
    li t1, ${n}
    li a0, 0
  1:
    ld t2, 0(t0)
    add a0, a0, t2
    li t3, 4096
    add t0, t0, t3
    addi t1, t1, -1
    bnez t1, 1b
`;

describe.each(PAGINGS)("the P2M (%s paging)", (paging) => {
  it("gives a RAM page its frame on first touch, once", () => {
    const m = machine(`
      nop
    go:
      li t0, ${RAM + 0x200000}
      li t1, 16
    1:
      sd t1, 0(t0)
      sd t1, 8(t0)
      li t2, 4096
      add t0, t0, t2
      addi t1, t1, -1
      bnez t1, 1b
      j done
    `, { ramSize: 8 * MB, paging });
    runTo(m, "go"); // the code page is in
    const before = m.core.pagingStats();
    m.runDone();
    expect(delta(before, m.core.pagingStats()).framesPopulated).toBe(16);
    expect(m.r64(RAM + 0x200000 + 15 * 4096)).toBe(1n);
  });

  it("maps the boot ROM read/execute: loads work, a store is an access fault", () => {
    const rom = (m0: Machine) => m0.core.physRead(L.ROM_GPA, 8)!;
    const m = machine(`
      li t0, ${L.ROM_GPA}
      ld a0, 0(t0)
    site:
      sd a0, 0(t0)
      j done
    `, { paging });
    const expected = new DataView(rom(m).slice().buffer).getBigUint64(0, true);
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.STORE_ACCESS);
    expect(t.mtval).toBe(BigInt(L.ROM_GPA));
    expect(t.mepc).toBe(BigInt(m.label("site")));
    expect(m.x("a0")).toBe(expected);
    expect(new DataView(rom(m).slice().buffer).getBigUint64(0, true)).toBe(expected);
  });

  it("never maps device space: an access to a device window exits to the host", () => {
    const m = machine(`
      nop
    go:
      li t0, 0x10000000
      lw a0, 4(t0)
      j done
    `, { paging });
    m.core.mapDevice(0x10000000, 0x1000);
    runTo(m, "go");
    const before = m.core.pagingStats();
    const r = m.run();
    expect(r.reason).toBe(L.EXIT_MMIO);
    expect(m.core.exitAddr(0)).toBe(0x10000004);
    expect(delta(before, m.core.pagingStats()).framesPopulated).toBe(0);
  });

  it("makes no P2M tables for holes or device space: after probing 256 of them, all of RAM still works", () => {
    // The table pool is sized for RAM and the ROM. xv6 once lost the top of its RAM (stores
    // there faulted) because touching device windows had used up tables its RAM needed.
    const m = machine(`
      la t0, skip
      csrw mtvec, t0
      li t0, 0x40000000
      li t1, 256
      li a1, 0
    1:
      ld a0, 0(t0)
      li t2, 0x200000
      add t0, t0, t2
      addi t1, t1, -1
      bnez t1, 1b
      li t0, ${RAM + 8 * MB - 8}
      li a0, 0x5a5a
      sd a0, 0(t0)
      j done
      .balign 4
    skip:
      addi a1, a1, 1
      csrr t6, mepc
      addi t6, t6, 4
      csrw mepc, t6
      mret
    `, { ramSize: 8 * MB, paging });
    m.runDone();
    expect(m.x("a1")).toBe(256n); // every probe faulted, the last store did not
    expect(m.r64(RAM + 8 * MB - 8)).toBe(0x5a5an);
  });

  it("faults an access to a hole (neither RAM, ROM nor a device)", () => {
    const m = machine(`
      li t0, 0x70000000
    site:
      ld a0, 0(t0)
      j done
    `, { paging });
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.LOAD_ACCESS);
    expect(t.mtval).toBe(0x70000000n);
  });
});

describe("nested paging: the two-dimensional walk", () => {
  // Each guest PTE read goes through the P2M (1 + 3 references), then the data page's
  // guest-physical address does (3).
  for (const [mode, refs] of [["sv39", 3 * 4 + 3], ["sv48", 4 * 4 + 3]] as const) {
    it(`costs ${refs} memory references per TLB miss on a 4 KiB ${mode} page`, () => {
      const { m } = spaces(`${touch(1)}\nwarm:\n${touch(7, 1)}`, { paging: "nested", mode });
      runTo(m, "warm");
      const before = m.core.pagingStats();
      m.runDone();
      const d = delta(before, m.core.pagingStats());
      expect(m.x("a0")).toBe(2n + 3n + 4n + 5n + 6n + 7n + 8n);
      expect(d.tlbMisses).toBe(7);
      expect(d.walkRefs).toBe(7 * refs);
      expect(d.shadowFaults).toBe(0);
    });
  }
});

describe.each(PAGINGS)("device pages under translation (%s paging)", (paging) => {
  it("caches a device page's translation: later accesses exit without a walk, until sfence.vma", () => {
    const DEV_VA = VA + 0x200000;
    const { m } = guest(`
      li t0, ${DEV_VA}
      lw a0, 4(t0)
      lw a0, 8(t0)
      sw a0, 12(t0)
      sw a0, 16(t0)
      sfence.vma
      lw a0, 20(t0)
    `, paging, (pt) => pt.map(DEV_VA, 0x10000000, V | R | W | AD));
    m.core.mapDevice(0x10000000, 0x1000);
    const exits: { addr: number; write: boolean; misses: number }[] = [];
    for (let i = 0; i < 5; i++) {
      const r = m.run();
      expect(r.reason).toBe(L.EXIT_MMIO);
      exits.push({ addr: m.core.exitAddr(0), write: m.core.exitIsWrite(0), misses: m.core.pagingStats().tlbMisses });
    }
    expect(exits.map((e) => [e.addr - 0x10000000, e.write])).toEqual([[4, false], [8, false], [12, true], [16, true], [20, false]]);
    const misses = exits.map((e, i) => (i ? e.misses - exits[i - 1].misses : 0)).slice(1);
    // The second load and the second store hit the cached translation; the first store walks
    // (its own table), and after the fence the load walks again (as does the code fetch).
    expect(misses).toEqual([0, 1, 0, 2]);
  });

  it("a device page's cached translation goes at sfence.vma when it is all its regime's TLB holds", () => {
    // With SUM set, S-mode data accesses have TLBs of their own (not those of its code fetches):
    // here they hold one device entry, and nothing else, when the page is mapped to RAM instead.
    const DEV_VA = VA + 0x200000;
    let leaf = 0;
    const { m } = guest(`
      li t1, 1 << 18
      csrs sstatus, t1
      li t0, ${DEV_VA}
      lw a0, 0(t0)
    remapped:
      sfence.vma
      lw a0, 0(t0)
    `, paging, (pt) => { leaf = pt.map(DEV_VA, 0x10000000, V | R | W | AD); });
    m.core.mapDevice(0x10000000, 0x1000);
    expect(m.run().reason).toBe(L.EXIT_MMIO);
    m.w64(leaf, pte(DATA, V | R | W | AD));
    m.w64(DATA, 77n);
    m.core.setPc(0, BigInt(m.label("remapped")));
    m.runDone();
    expect(m.x("a0")).toBe(77n);
  });
});

describe("shadow paging", () => {
  it("builds shadow entries on first touch and walks only the shadow afterwards", () => {
    const { m } = spaces(`
      ${touch(8)}
    again:
      sfence.vma
      ${touch(8)}
    `, { paging: "shadow" });
    runTo(m, "again");
    const first = m.core.pagingStats();
    expect(first.shadowFaults).toBeGreaterThanOrEqual(8);
    expect(first.shadowContextNew).toBe(1);
    m.runDone();
    const d = delta(first, m.core.pagingStats());
    expect(m.x("a0")).toBe(36n);
    // The fence emptied the TLB, not the shadow: the misses (code page and 8 data pages) hit it,
    // each one reference per shadow level, with no guest walk.
    expect(d.shadowFaults).toBe(0);
    expect(d.tlbMisses).toBe(9);
    expect(d.walkRefs).toBe(9 * 3);
  });

  it("traps a guest store to a page table, emulates it, and drops the shadow it covers", () => {
    const { m, leaves } = spaces(`
      ${touch(1)}
      mv s0, a0
      li t1, ${L0}
      li t2, ${pte(DATA + 0x7000, V | R | W | AD)}
      sd t2, 0(t1)
      sfence.vma
      ${touch(1)}
    `, { paging: "shadow" });
    expect(leaves[0]).toBe(L0);
    const before = m.core.pagingStats();
    m.runDone();
    const d = delta(before, m.core.pagingStats());
    expect(m.x("s0")).toBe(1n);
    expect(m.x("a0")).toBe(8n); // page 7's marker, through the rewritten PTE
    expect(m.r64(leaves[0])).toBe(pte(DATA + 0x7000, V | R | W | AD)); // the store was done
    expect(d.ptWriteTraps).toBe(1);
    expect(d.shadowZaps).toBe(1);
  });

  it("faults once the guest invalidates a PTE (the shadow leaf is gone too)", () => {
    const { m, leaves } = spaces(`
      ${touch(1)}
      li t1, ${L0}
      sd zero, 0(t1)
      sfence.vma
      li t0, ${VA}
    site:
      ld a1, 0(t0)
    `, { paging: "shadow" });
    expect(leaves[0]).toBe(L0);
    const t = m.runTrap();
    expect(t.mcause).toBe(CAUSE.LOAD_PAGE);
    expect(t.mtval).toBe(BigInt(VA));
    expect(m.x("a0")).toBe(1n);
  });

  it("sees a page table the host rewrote (DMA into a shadowed table unshadows it)", () => {
    const { m, leaves } = spaces(`
      ${touch(1)}
      mv s0, a0
    host:
      sfence.vma
      ${touch(1)}
    `, { paging: "shadow" });
    runTo(m, "host");
    const before = m.core.pagingStats();
    m.w64(leaves[0], pte(DATA + 0x5000, V | R | W | AD));
    m.runDone();
    expect(m.x("s0")).toBe(1n);
    expect(m.x("a0")).toBe(6n);
    expect(delta(before, m.core.pagingStats()).unshadowed).toBeGreaterThanOrEqual(1);
  });

  it("unshadows a table the guest keeps writing without walking it, and stays coherent", () => {
    // Six stores to the level-0 table (more than the flood limit of 4) with no walk in between:
    // the table loses its protection. The next miss walks it again and protects it anew, so
    // the PTE rewrite after that is trapped as usual.
    const { m } = spaces(`
      ${touch(1)}
      mv s0, a0
      li t1, ${L0 + 8 * 100}
      li t2, 6
    1:
      sd zero, 0(t1)
      addi t1, t1, 8
      addi t2, t2, -1
      bnez t2, 1b
      sfence.vma
      ${touch(2)}
      mv s1, a0
      li t1, ${L0}
      li t2, ${pte(DATA + 0x3000, V | R | W | AD)}
      sd t2, 0(t1)
      sfence.vma
      ${touch(1)}
    `, { paging: "shadow" });
    const before = m.core.pagingStats();
    m.runDone();
    const d = delta(before, m.core.pagingStats());
    expect([m.x("s0"), m.x("s1"), m.x("a0")]).toEqual([1n, 3n, 4n]);
    expect(d.unshadowed).toBe(1);
    expect(d.ptWriteTraps).toBe(5 + 1); // 4 trapped + the 5th that unshadows, then the rewrite
  });

  it("keeps a shadow root per address space: satp switches back reuse it", () => {
    // Two address spaces map VA to different pages; the program switches A, B, then through as
    // many others as the TLB keeps address spaces (so A's and B's entries leave the TLB), A, B.
    const m = machine(null, { ramSize: 8 * MB, paging: "shadow" });
    const a = new PageTables(m, "sv39", POOL);
    const b = new PageTables(m, "sv39", POOL + 0x10000);
    for (const [pt, page] of [[a, DATA], [b, DATA + 4096]] as const) {
      pt.map(RAM, RAM, V | RWX | AD, 2);
      pt.map(VA, page, V | R | W | AD);
    }
    const others = Array.from({ length: L.TLB_CTXS }, (_, i) => {
      const pt = new PageTables(m, "sv39", POOL + 0x20000 + i * 0x10000);
      pt.map(RAM, RAM, V | RWX | AD, 2);
      return pt.satp();
    });
    m.w64(DATA, 0xaan);
    m.w64(DATA + 4096, 0xbbn);
    const sw = (satp: bigint, reg: string) => `
      li t0, ${satp}
      csrw satp, t0
      li t0, ${VA}
      ld ${reg}, 0(t0)`;
    m.load(`
      ${enter(PRV_S, "body")}
    body:
      ${sw(a.satp(), "s0")}
      ${sw(b.satp(), "s1")}
      ${others.map((satp) => `li t0, ${satp}\n      csrw satp, t0`).join("\n      ")}
      nop
    second:
      ${sw(a.satp(), "s2")}
      ${sw(b.satp(), "s3")}
    `);
    runTo(m, "second");
    const first = m.core.pagingStats();
    m.runDone();
    const d = delta(first, m.core.pagingStats());
    expect([m.x("s0"), m.x("s1"), m.x("s2"), m.x("s3")]).toEqual([0xaan, 0xbbn, 0xaan, 0xbbn]);
    expect(first.shadowContextNew).toBe(2 + L.TLB_CTXS);
    expect(d.shadowContextNew).toBe(0);
    expect(d.shadowContextHits).toBe(2);
    expect(d.shadowFaults).toBe(0);
  });

  it("keys shadow roots by ASID as well as root", () => {
    const { m, pt } = spaces(`
      ${touch(1)}
      li t0, ${(8n << 60n) | (5n << 44n) | BigInt(POOL >>> 12)}
      csrw satp, t0
      ${touch(1)}
    `, { paging: "shadow" });
    expect(pt.root).toBe(POOL);
    m.runDone();
    expect(m.x("a0")).toBe(1n);
    expect(m.core.pagingStats().shadowContextNew).toBe(2);
  });
});

describe.each(PAGINGS)("dirty logging (%s paging)", (paging) => {
  const page = (gpa: number) => (gpa - RAM) / 4096;
  const dirtyPages = (m: Machine) => {
    const { pages, bitmap } = m.core.syncDirtyLog();
    const list: number[] = [];
    bitmap.forEach((w, i) => { for (let b = 0; b < 32; b++) if (w & (1 << b)) list.push(i * 32 + b); });
    expect(list.length).toBe(pages);
    return list;
  };

  it("logs the pages the guest writes, once each, and sync clears the log atomically", () => {
    const { m } = spaces(`
      li t0, ${VA}
      sd zero, 8(t0)
      sd zero, 16(t0)
      li t1, ${VA + 3 * 4096}
      sw zero, 0(t1)
    mid:
      li t1, ${VA + 4096}
      ld a0, 0(t1)
      sd a0, 0(t0)
    `, { paging });
    expect(m.core.dirtyLogging).toBe(false);
    m.core.setDirtyLog(true);
    expect(m.core.dirtyLogging).toBe(true);
    expect(dirtyPages(m)).toEqual([]);
    runTo(m, "mid");
    expect(dirtyPages(m)).toEqual([page(DATA), page(DATA + 3 * 4096)]);
    // The first write to each page faulted once; the second store to DATA did not.
    expect(m.core.pagingStats().dirtyFaults).toBe(2);
    // Synced pages are protected again (the next write is seen); pages only read stay clean.
    m.runDone();
    expect(dirtyPages(m)).toEqual([page(DATA)]);
    expect(dirtyPages(m)).toEqual([]);
  });

  it("logs the first write after it starts to pages the guest was writing before, and after a sync of many pages", () => {
    // Stores to 20 pages fill the write TLB before logging starts: turning it on must take those
    // entries back (all at once), and so must a sync of more pages than it protects one by one.
    const write20 = (label: string) => `
      li t0, ${VA}
      li t1, 20
    ${label}_loop:
      sd t1, 0(t0)
      li t3, 4096
      add t0, t0, t3
      addi t1, t1, -1
      bnez t1, ${label}_loop
    ${label}:`;
    const { m } = spaces(`${write20("before")}${write20("logged")}${write20("again")}`, { paging, pages: 20 });
    const all = Array.from({ length: 20 }, (_, i) => page(DATA + i * 4096));
    runTo(m, "before");
    m.core.setDirtyLog(true);
    runTo(m, "logged");
    expect(dirtyPages(m)).toEqual(all);
    m.runDone();
    expect(dirtyPages(m)).toEqual(all);
  });

  it("logs host writes and the page-table walker's A/D updates", () => {
    let leaf = 0;
    const { m } = guest(`
      li t0, ${VA}
      ld a0, 0(t0)
    `, paging, (pt) => { leaf = pt.map(VA, DATA, V | R | W); }); // A and D clear: the walker sets them
    m.core.setDirtyLog(true);
    m.w64(RAM + 0x500000, 7n); // a host write (as DMA)
    m.runDone();
    expect(m.r64(leaf) & AD).toBe(PTE.A);
    expect(dirtyPages(m)).toEqual([page(POOL + 2 * 4096), page(RAM + 0x500000)]);
  });

  it("stops protecting and logging when turned off", () => {
    const { m } = spaces(`
      li t0, ${VA}
      sd zero, 0(t0)
    `, { paging });
    m.core.setDirtyLog(true);
    m.core.setDirtyLog(false);
    const before = m.core.pagingStats();
    m.runDone();
    expect(delta(before, m.core.pagingStats()).dirtyFaults).toBe(0);
    expect(m.core.syncDirtyLog().pages).toBe(0);
  });
});
