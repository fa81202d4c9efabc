// Sv39/Sv48 translation: page sizes, every page-fault condition, SUM/MXR/MPRV, A/D updates,
// sfence.vma, satp WARL. Page tables are built by the host (harness PageTables) in guest RAM;
// code runs from an identity-mapped gigapage at 0x80000000. Every case runs under both memory
// virtualizations (nested and shadow paging), which must be indistinguishable to the guest.
import { beforeEach, describe, expect, it } from "vitest";
import {
  machine as makeMachine, type MachineOptions, enter, pokeSatp, PageTables, PTE, RWX, AD, RAM, CAUSE, PRV_M, PRV_S, PRV_U, MS, hex, Machine, L,
} from "./harness";
import { enc, encSeq } from "../../host/util/riscv-asm";

const MB = 1 << 20;
let paging: "nested" | "shadow" = "nested";
const machine = (src: string | null, opts: MachineOptions = {}) => makeMachine(src, { paging, ...opts });
const POOL = RAM + 0x300000;
const P1 = RAM + 0x100000;
const P2 = RAM + 0x101000;
const P3 = RAM + 0x102000;
const VA = 0x40000000;
const V = PTE.V;
const R = PTE.R, W = PTE.W, X = PTE.X, U = PTE.U;

interface Opts {
  mode?: "sv39" | "sv48";
  priv?: 0 | 1 | 3;
  codeU?: boolean;
  noCodeMap?: boolean;
  /** M-mode code run before entering `priv`. */
  pre?: string;
}

function paged(body: string, o: Opts = {}): { m: Machine; pt: PageTables } {
  const priv = o.priv ?? PRV_S;
  const src = `${o.pre ?? ""}\n${priv === PRV_M ? "j body" : enter(priv, "body")}\nbody:\n${body}`;
  const m = machine(src, { ramSize: 8 * MB });
  const pt = new PageTables(m, o.mode ?? "sv39", POOL);
  if (!o.noCodeMap) pt.map(RAM, RAM, V | RWX | AD | (o.codeU ? U : 0n), 2);
  pokeSatp(m, pt.satp());
  return { m, pt };
}

function expectFault(m: Machine, cause: bigint, va: bigint | number, epcLabel?: string) {
  const t = m.runTrap();
  expect(t.mcause, `mcause (mtval ${hex(t.mtval)})`).toBe(cause);
  expect(t.mtval).toBe(BigInt(va));
  if (epcLabel) expect(t.mepc).toBe(BigInt(m.label(epcLabel)));
  return t;
}

describe.each(["nested", "shadow"] as const)("%s paging", (pagingMode) => {
  beforeEach(() => {
    paging = pagingMode;
  });

  describe("enabling translation", () => {
    it("csrw satp (Sv39) from M, then an S-mode load goes through the page table", () => {
      const m = machine(null, { ramSize: 8 * MB });
      const pt = new PageTables(m, "sv39", POOL);
      pt.map(RAM, RAM, V | RWX | AD, 2);
      pt.map(VA, P1, V | R | W | AD);
      m.w64(P1 + 8, 0xabcdefn);
      m.load(`
        li t0, ${pt.satp()}
        csrw satp, t0
        ${enter(PRV_S, "body")}
      body:
        li t0, ${VA}
        ld a0, 8(t0)
      `);
      m.runDone();
      expect(m.x("a0")).toBe(0xabcdefn);
    });

    it("csrw satp (Sv48) from M, then an S-mode store goes through the page table", () => {
      const m = machine(null, { ramSize: 8 * MB });
      const pt = new PageTables(m, "sv48", POOL);
      pt.map(RAM, RAM, V | RWX | AD, 2);
      pt.map(VA, P1, V | R | W | AD);
      m.load(`
        li t0, ${pt.satp()}
        csrw satp, t0
        ${enter(PRV_S, "body")}
      body:
        li t0, ${VA}
        li a0, 0x5a5a
        sd a0, 16(t0)
      `);
      m.runDone();
      expect(m.r64(P1 + 16)).toBe(0x5a5an);
    });
  });

  for (const mode of ["sv39", "sv48"] as const) {
    describe(`${mode} page sizes`, () => {
      it("4 KiB pages: loads and stores reach the mapped physical page", () => {
        const { m, pt } = paged(`
          li t0, ${VA}
          ld a0, 0(t0)
          li a1, 0x77
          sd a1, 8(t0)
          li t1, ${VA + 0x1000}
          ld a2, 0x10(t1)
        `, { mode });
        pt.map(VA, P1, V | R | W | AD);
        pt.map(VA + 0x1000, P3, V | R | AD);
        m.w64(P1, 0x1111n);
        m.w64(P3 + 0x10, 0x3333n);
        m.runDone();
        expect(m.x("a0")).toBe(0x1111n);
        expect(m.r64(P1 + 8)).toBe(0x77n);
        expect(m.x("a2")).toBe(0x3333n);
      });

      it("2 MiB megapages", () => {
        const { m, pt } = paged(`
          li t0, ${VA + 0x200000 + 0x12340}
          ld a0, 0(t0)
          li t1, ${VA + 0x200000 + 0x1ffff8}
          sd a0, 0(t1)
        `, { mode });
        pt.map(VA + 0x200000, RAM + 0x400000, V | R | W | AD, 1);
        m.w64(RAM + 0x400000 + 0x12340, 0xbeefn);
        m.runDone();
        expect(m.x("a0")).toBe(0xbeefn);
        expect(m.r64(RAM + 0x400000 + 0x1ffff8)).toBe(0xbeefn);
      });

      it("1 GiB gigapages", () => {
        const { m, pt } = paged(`
          li t0, ${0xc0000000 + 0x123450}
          ld a0, 0(t0)
        `, { mode });
        pt.map(0xc0000000, RAM, V | R | AD, 2);
        m.w64(RAM + 0x123450, 0xfacen);
        m.runDone();
        expect(m.x("a0")).toBe(0xfacen);
      });

      it("a canonical high virtual address (upper bits all ones) translates", () => {
        const hi = mode === "sv39" ? 0xffffffc000000000n : 0xffff800000000000n;
        const { m, pt } = paged(`
          li t0, ${hi + 0x5008n}
          ld a0, 0(t0)
        `, { mode });
        pt.map(hi + 0x5000n, P2, V | R | AD);
        m.w64(P2 + 8, 0x4242n);
        m.runDone();
        expect(m.x("a0")).toBe(0x4242n);
      });

      it("a non-canonical virtual address raises a page fault with stval = va (load and store)", () => {
        const bad = mode === "sv39" ? 0x0000004000000000n : 0x0000800000000000n;
        const { m } = paged(`
          li t0, ${bad}
        site:
          ld a0, 0(t0)
        `, { mode });
        expectFault(m, CAUSE.LOAD_PAGE, bad, "site");
        const { m: m2 } = paged(`
          li t0, ${bad ^ 0xfff0000000000000n}
        site:
          sd a0, 0(t0)
        `, { mode });
        expectFault(m2, CAUSE.STORE_PAGE, bad ^ 0xfff0000000000000n, "site");
      });
    });
  }

  it("sv48 512 GiB pages (level-3 leaf)", () => {
    const { m, pt } = paged(`
      li t0, ${0x8000000000n + BigInt(RAM) + 0x8000n}
      ld a0, 0(t0)
    `, { mode: "sv48" });
    pt.map(0x8000000000n, 0, V | R | AD, 3);
    m.w64(RAM + 0x8000, 0x512n);
    m.runDone();
    expect(m.x("a0")).toBe(0x512n);
  });

  describe("page faults (S-mode, not delegated: mcause/mtval/mepc)", () => {
    it("V = 0 -> load page fault", () => {
      const { m } = paged(`
        li t0, ${VA + 0x10}
      site:
        lw a0, 0(t0)
      `);
      expectFault(m, CAUSE.LOAD_PAGE, VA + 0x10, "site");
    });

    it("store to a read-only page -> store page fault", () => {
      const { m, pt } = paged(`
        li t0, ${VA + 0x18}
        ld a0, 0(t0)
      site:
        sd a0, 0(t0)
      `);
      pt.map(VA, P1, V | R | AD);
      expectFault(m, CAUSE.STORE_PAGE, VA + 0x18, "site");
    });

    it("an AMO to a page the load TLB holds read-only -> store/AMO page fault, memory untouched", () => {
      const { m, pt } = paged(`
        li t0, ${VA + 0x18}
        li t1, 5
        ld a0, 0(t0)
        lr.d a1, (t0)
      site:
        amoadd.d a2, t1, (t0)
      `);
      pt.map(VA, P1, V | R | AD);
      m.w64(P1 + 0x18, 40n);
      expectFault(m, CAUSE.STORE_PAGE, VA + 0x18, "site");
      expect(m.r64(P1 + 0x18)).toBe(40n);
    });

    it("AMOs and LR/SC hit the TLB as loads and stores do: the page is walked once, not per access", () => {
      const { m, pt } = paged(`
        li t0, ${VA + 0x40}
        li t3, ${VA + 0x48}
        li t1, 3
        li t2, 200
      again:
        amoadd.d zero, t1, (t0)
        amoadd.w zero, t1, (t3)
      retry:
        lr.d a0, (t0)
        addi a0, a0, 1
        sc.d a1, a0, (t0)
        bnez a1, retry
        addi t2, t2, -1
        bnez t2, again
        j done
      `);
      pt.map(VA, P1, V | R | W | AD);
      const before = m.core.pagingStats().tlbMisses;
      m.runDone();
      expect(m.r64(P1 + 0x40)).toBe(200n * 4n);
      expect(m.r32(P1 + 0x48)).toBe(600);
      // 800 atomic accesses: a walk each was 800 misses; the code's page and the data page take a few.
      expect(m.core.pagingStats().tlbMisses - before).toBeLessThan(20);
    });

    it("fetch from a page without X -> instruction page fault, mepc = mtval = target", () => {
      const { m, pt } = paged(`
        li t0, ${VA}
        jr t0
      `);
      pt.map(VA, P1, V | R | W | AD);
      m.w32(P1, 0x00000013);
      expectFault(m, CAUSE.FETCH_PAGE, VA);
      expect(m.csr("mepc")).toBe(BigInt(VA));
    });

    it("a 32-bit instruction whose second half is on an unmapped page: mepc = start, mtval = the second page", () => {
      const { m, pt } = paged(`
        li t0, ${VA + 0xffe}
        jr t0
      `);
      pt.map(VA, P1, V | R | X | AD);
      m.w16(P1 + 0xffe, 0x0513); // low half of addi a0, a0, 1 (0x00150513)
      const t = m.runTrap();
      expect(t.mcause).toBe(CAUSE.FETCH_PAGE);
      expect(t.mepc).toBe(BigInt(VA + 0xffe));
      expect(t.mtval).toBe(BigInt(VA + 0x1000));
    });

    it("W without R (reserved) -> page fault even for a store", () => {
      const { m, pt } = paged(`
        li t0, ${VA}
      site:
        sd zero, 0(t0)
      `);
      pt.map(VA, P1, V | W | AD);
      expectFault(m, CAUSE.STORE_PAGE, VA, "site");
      const { m: m2, pt: pt2 } = paged(`
        li t0, ${VA}
      site:
        ld a0, 0(t0)
      `);
      pt2.map(VA, P1, V | W | X | AD);
      expectFault(m2, CAUSE.LOAD_PAGE, VA, "site");
    });

    for (const [name, bits] of [["bit 60 (reserved)", 1n << 60n], ["PBMT bits (62:61)", 1n << 62n]] as const) {
      it(`reserved ${name} in a non-leaf PTE -> page fault`, () => {
        const { m, pt } = paged(`
          li t0, ${VA}
        site:
          ld a0, 0(t0)
        `);
        pt.map(VA, P1, V | R | W | AD);
        const l1 = pt.pteAddr(VA, 1, false);
        m.w64(l1, m.r64(l1) | bits);
        expectFault(m, CAUSE.LOAD_PAGE, VA, "site");
      });
    }

    for (const [name, bits] of [["bit 54 (reserved)", 1n << 54n], ["bit 60 (reserved)", 1n << 60n],
      ["PBMT (bits 62:61, Svpbmt absent)", 1n << 61n], ["N (bit 63, Svnapot absent)", 1n << 63n]] as const) {
      it(`reserved PTE ${name} -> page fault`, () => {
        const { m, pt } = paged(`
          li t0, ${VA}
        site:
          ld a0, 0(t0)
        `);
        pt.setRaw(VA, (BigInt(P1) >> 12n << 10n) | V | R | W | AD | bits);
        expectFault(m, CAUSE.LOAD_PAGE, VA, "site");
      });
    }

    it("a pointer PTE (V=1, R=W=X=0) at level 0 -> page fault", () => {
      const { m, pt } = paged(`
        li t0, ${VA + 0x40}
      site:
        ld a0, 0(t0)
      `);
      pt.setRaw(VA, (BigInt(P1) >> 12n << 10n) | V);
      expectFault(m, CAUSE.LOAD_PAGE, VA + 0x40, "site");
    });

    it("misaligned megapage (PPN[0] != 0) -> page fault", () => {
      const { m, pt } = paged(`
        li t0, ${VA + 0x400000 + 0x100}
      site:
        ld a0, 0(t0)
      `);
      pt.setRaw(VA + 0x400000, (BigInt(RAM + 0x401000) >> 12n << 10n) | V | R | W | AD, 1);
      expectFault(m, CAUSE.LOAD_PAGE, VA + 0x400000 + 0x100, "site");
    });

    it("misaligned gigapage (PPN[1] != 0) -> page fault", () => {
      const { m, pt } = paged(`
        li t0, ${0x140000000 + 0x100}
      site:
        sd zero, 0(t0)
      `);
      pt.setRaw(0x140000000, (BigInt(RAM + 0x200000) >> 12n << 10n) | V | R | W | AD, 2);
      expectFault(m, CAUSE.STORE_PAGE, 0x140000000 + 0x100, "site");
    });

    it("misaligned store across a page boundary into an unmapped page -> store page fault", () => {
      const { m, pt } = paged(`
        li t0, ${VA + 0xffc}
      site:
        sd zero, 0(t0)
      `);
      pt.map(VA, P1, V | R | W | AD);
      const t = m.runTrap();
      expect(t.mcause).toBe(CAUSE.STORE_PAGE);
      expect(t.mepc).toBe(BigInt(m.label("site")));
      // mtval: the faulting va or (as the spec suggests) the address of the portion that faulted
      expect([BigInt(VA + 0xffc), BigInt(VA + 0x1000)]).toContain(t.mtval);
    });

    it("misaligned load across a page boundary into an unmapped page -> load page fault", () => {
      const { m, pt } = paged(`
        li t0, ${VA + 0xffa}
      site:
        ld a0, 0(t0)
      `);
      pt.map(VA, P1, V | R | W | AD);
      const t = m.runTrap();
      expect(t.mcause).toBe(CAUSE.LOAD_PAGE);
      expect(t.mepc).toBe(BigInt(m.label("site")));
      expect([BigInt(VA + 0xffa), BigInt(VA + 0x1000)]).toContain(t.mtval);
    });

    it("a page fault delegated to S: scause/stval/sepc, M state untouched", () => {
      const { m } = paged(`
        li t0, ${VA + 8}
      site:
        ld a0, 0(t0)
      `, { pre: "li t0, 1 << 13; csrw medeleg, t0" });
      m.setCsr("mtval", 0);
      const t = m.runTrap("strap");
      expect(t.scause).toBe(CAUSE.LOAD_PAGE);
      expect(t.stval).toBe(BigInt(VA + 8));
      expect(t.sepc).toBe(BigInt(m.label("site")));
      expect(t.mtval).toBe(0n);
    });

    it("a page-table walk that leaves RAM -> access fault (not page fault)", () => {
      const { m, pt } = paged(`
        li t0, ${VA}
      site:
        ld a0, 0(t0)
      `);
      // level-1 pointer to a table at a physical hole
      pt.setRaw(VA, (0x40000000n >> 12n << 10n) | V, 1);
      expectFault(m, CAUSE.LOAD_ACCESS, VA, "site");
    });
  });

  describe("instruction fetch through translation", () => {
    /** Bytes of `words` (32-bit instructions), little-endian. */
    const bytesOf = (words: number[]) => {
      const b = new Uint8Array(words.length * 4);
      const dv = new DataView(b.buffer);
      words.forEach((w, i) => dv.setUint32(4 * i, w >>> 0, true));
      return b;
    };
    /** Instructions that jump to the absolute address `to` (clobbers t1). */
    const jumpTo = (to: number) => [...encSeq.li("t1", to), enc.jalr("zero", "t1", 0)];

    it("S code at a virtual address different from its physical address (entered by mret)", () => {
      const CVA = 0x50000000;
      const m = machine(null, { ramSize: 8 * MB });
      const pt = new PageTables(m, "sv39", POOL);
      pt.map(RAM, RAM, V | RWX | AD, 2);
      pt.map(CVA, P3, V | R | X | AD);
      m.load(`
        ${enter(PRV_S, "body")}
      body:
        li t0, ${CVA}
        jr t0
      `);
      m.core.phys(P3, 64)!.set(bytesOf([enc.addi("a0", "zero", 7), ...jumpTo(m.label("done"))]));
      pokeSatp(m, pt.satp());
      m.runDone();
      expect(m.x("a0")).toBe(7n);
    });

    it("a 32-bit instruction spanning two virtual pages mapped to non-adjacent physical pages", () => {
      const { m, pt } = paged(`
        li t0, ${VA + 0xffc}
        jr t0
      `);
      pt.map(VA, P3, V | R | X | AD);
      pt.map(VA + 0x1000, P1, V | R | X | AD);
      const split = enc.addi("a0", "a0", 0x123);
      m.w16(P3 + 0xffc, 0x0001);            // c.nop
      m.w16(P3 + 0xffe, split & 0xffff);    // first half of the addi
      const rest = bytesOf(jumpTo(m.label("done")));
      m.w16(P1, split >>> 16);              // second half on the next virtual page
      m.core.phys(P1 + 2, rest.length)!.set(rest);
      m.w32(P3 + 0x000, 0);                 // what P3 + 0x1000 - 0x1000 would hold if the core read P3 contiguously
      m.w16(P3 + 0x1000, 0);                // (P3 + 0x1000 is another page: keep it zero = illegal)
      m.setX("a0", 10n);
      m.runDone();
      expect(m.x("a0")).toBe(10n + 0x123n);
    });

    it("a straddling instruction run again after its second page was remapped (and sfence.vma) runs the new second half", () => {
      // Its halves come through the fetch TLB each time it runs: the fence must reach them.
      const first = enc.addi("a0", "a0", 0x123), second = enc.addi("a0", "a0", 0x456);
      expect(first & 0xffff).toBe(second & 0xffff); // the half on the first page is the same
      const m = machine(null, { ramSize: 8 * MB });
      const pt = new PageTables(m, "sv39", POOL);
      pt.map(RAM, RAM, V | RWX | AD, 2);
      pt.map(VA, P3, V | R | X | AD);
      const next = pt.map(VA + 0x1000, P1, V | R | X | AD);
      m.w16(P3 + 0xffe, first & 0xffff);
      for (const [page, insn] of [[P1, first], [P2, second]] as const) {
        m.w16(page, insn >>> 16);
        m.w16(page + 2, 0x8082); // c.jr ra
      }
      m.load(`
        ${enter(PRV_S, "body")}
      body:
        li t0, ${VA + 0xffe}
        jalr t0
        li t0, ${VA + 0xffe}
        jalr t0
        li t1, ${next}
        li t2, ${(BigInt(P2) >> 12n << 10n) | V | R | X | AD}
        sd t2, 0(t1)
        sfence.vma
        li t0, ${VA + 0xffe}
        jalr t0
      `);
      pokeSatp(m, pt.satp());
      m.setX("a0", 10n);
      m.runDone();
      expect(m.x("a0")).toBe(10n + 2n * 0x123n + 0x456n);
    });

    it("a compressed instruction in the last two bytes of a page does not touch the next (unmapped) page", () => {
      const { m, pt } = paged(`
        li t0, ${VA + 0xffe}
        la ra, back
        jr t0
      back:
        li a1, 1
      `);
      pt.map(VA, P3, V | R | X | AD);
      m.w16(P3 + 0xffe, 0x8082); // c.jr ra
      m.runDone();
      expect(m.x("a1")).toBe(1n);
    });
  });

  describe("U bit, SUM, MXR", () => {
    it("S load from a U page without SUM -> page fault", () => {
      const { m, pt } = paged(`
        li t0, ${VA}
      site:
        ld a0, 0(t0)
      `);
      pt.map(VA, P1, V | R | W | U | AD);
      expectFault(m, CAUSE.LOAD_PAGE, VA, "site");
    });

    it("S load/store to a U page with SUM = 1 works", () => {
      const { m, pt } = paged(`
        li t0, ${VA}
        ld a0, 0(t0)
        sd a0, 8(t0)
      `, { pre: "li t0, 1 << 18; csrs mstatus, t0" });
      pt.map(VA, P1, V | R | W | U | AD);
      m.w64(P1, 31n);
      m.runDone();
      expect(m.x("a0")).toBe(31n);
      expect(m.r64(P1 + 8)).toBe(31n);
    });

    it("SUM set from S through sstatus takes effect for the next access", () => {
      const { m, pt } = paged(`
        li t0, ${VA}
        li t1, 1 << 18
        csrs sstatus, t1
        ld a0, 0(t0)
        csrc sstatus, t1
      site:
        ld a1, 0(t0)
      `);
      pt.map(VA, P1, V | R | W | U | AD);
      m.w64(P1, 5n);
      expectFault(m, CAUSE.LOAD_PAGE, VA, "site");
      expect(m.x("a0")).toBe(5n);
    });

    it("S fetch from a U page faults even with SUM = 1", () => {
      const { m, pt } = paged(`
        li t0, ${VA}
        jr t0
      `, { pre: "li t0, 1 << 18; csrs mstatus, t0" });
      pt.map(VA, P1, V | R | X | U | AD);
      m.w32(P1, 0x00000013);
      expectFault(m, CAUSE.FETCH_PAGE, VA);
    });

    it("U load from an S page -> page fault", () => {
      const { m, pt } = paged(`
        li t0, ${VA}
      site:
        ld a0, 0(t0)
      `, { priv: PRV_U, codeU: true });
      pt.map(VA, P1, V | R | W | AD);
      expectFault(m, CAUSE.LOAD_PAGE, VA, "site");
    });

    it("U fetch from an S page -> instruction page fault", () => {
      const { m, pt } = paged(`
        li t0, ${VA}
        jr t0
      `, { priv: PRV_U, codeU: true });
      pt.map(VA, P1, V | R | X | AD);
      m.w32(P1, 0x00000013);
      expectFault(m, CAUSE.FETCH_PAGE, VA);
    });

    it("U access to a U page works", () => {
      const { m, pt } = paged(`
        li t0, ${VA}
        ld a0, 0(t0)
      `, { priv: PRV_U, codeU: true });
      pt.map(VA, P1, V | R | U | AD);
      m.w64(P1, 8n);
      m.runDone();
      expect(m.x("a0")).toBe(8n);
    });

    it("MXR = 0: loading from an execute-only page faults", () => {
      const { m, pt } = paged(`
        li t0, ${VA}
      site:
        ld a0, 0(t0)
      `);
      pt.map(VA, P1, V | X | AD);
      expectFault(m, CAUSE.LOAD_PAGE, VA, "site");
    });

    it("MXR = 1: loading from an execute-only page works; stores still fault", () => {
      const { m, pt } = paged(`
        li t0, ${VA}
        ld a0, 0(t0)
      site:
        sd a0, 0(t0)
      `, { pre: "li t0, 1 << 19; csrs mstatus, t0" });
      pt.map(VA, P1, V | X | AD);
      m.w64(P1, 0x99n);
      expectFault(m, CAUSE.STORE_PAGE, VA, "site");
      expect(m.x("a0")).toBe(0x99n);
    });
  });

  describe("permission changes take effect without sfence.vma", () => {
    it("clearing MXR after a load from an execute-only page makes the next load fault", () => {
      const { m, pt } = paged(`
        li t0, ${VA}
        li t1, 1 << 19
        csrs sstatus, t1
        ld a0, 0(t0)
        csrc sstatus, t1
      site:
        ld a1, 0(t0)
      `);
      pt.map(VA, P1, V | X | AD);
      m.w64(P1, 3n);
      expectFault(m, CAUSE.LOAD_PAGE, VA, "site");
      expect(m.x("a0")).toBe(3n);
    });

    it("a load in S, then the same address in U (after sret) is checked against U permissions", () => {
      const UVA = 0x50000000;
      const { m, pt } = paged(`
        li t0, ${VA}
        ld a0, 0(t0)            # S may read the S page (fills the TLB)
        li t1, ${UVA}
        csrw sepc, t1
        li t1, 1 << 8
        csrc sstatus, t1        # SPP = U
        sret
      `);
      pt.map(VA, P1, V | R | AD);
      pt.map(UVA, P3, V | R | X | U | AD);
      m.w32(P3, enc.ld("a1", 0, "t0"));
      m.w64(P1, 4n);
      const t = m.runTrap();
      expect(m.x("a0")).toBe(4n);
      expect(t.mcause).toBe(CAUSE.LOAD_PAGE);
      expect(t.mepc).toBe(BigInt(UVA));
      expect(t.mtval).toBe(BigInt(VA));
      expect(t.mstatus >> 11n & 3n).toBe(0n);
    });
  });

  describe("MPRV", () => {
    it("MPRV = 1, MPP = S: M-mode loads and stores are translated; fetches are not", () => {
      const { m, pt } = paged(`
        li t0, (1 << 17) | (1 << 11)
        csrs mstatus, t0
        li t0, ${VA}
        ld a0, 0(t0)
        sd a0, 8(t0)
        li t0, 1 << 17
        csrc mstatus, t0
      `, { priv: PRV_M, noCodeMap: true });
      pt.map(VA, P1, V | R | W | AD);
      m.w64(P1, 0x600dn);
      m.runDone();
      expect(m.x("a0")).toBe(0x600dn);
      expect(m.r64(P1 + 8)).toBe(0x600dn);
    });

    it("MPRV = 1, MPP = U: M-mode access to a supervisor page faults like U", () => {
      const { m, pt } = paged(`
        li t0, 3 << 11
        csrc mstatus, t0            # MPP = U
        li t0, 1 << 17
        csrs mstatus, t0
        li t0, ${VA}
      site:
        ld a0, 0(t0)
      `, { priv: PRV_M, noCodeMap: true });
      pt.map(VA, P1, V | R | W | AD);
      expectFault(m, CAUSE.LOAD_PAGE, VA, "site");
    });

    it("MPRV = 1, MPP = S with SUM = 0: M-mode access to a U page faults", () => {
      const { m, pt } = paged(`
        li t0, (1 << 17) | (1 << 11)
        csrs mstatus, t0
        li t0, ${VA}
      site:
        ld a0, 0(t0)
      `, { priv: PRV_M, noCodeMap: true });
      pt.map(VA, P1, V | R | W | U | AD);
      expectFault(m, CAUSE.LOAD_PAGE, VA, "site");
    });

    it("MPRV = 1, MPP = S with SUM = 1: M-mode access to a U page works", () => {
      const { m, pt } = paged(`
        li t0, (1 << 17) | (1 << 11) | (1 << 18)
        csrs mstatus, t0
        li t0, ${VA}
        ld a0, 0(t0)
      `, { priv: PRV_M, noCodeMap: true });
      pt.map(VA, P1, V | R | W | U | AD);
      m.w64(P1, 0x51n);
      m.runDone();
      expect(m.x("a0")).toBe(0x51n);
    });

    it("MPRV = 1, MPP = M: no translation", () => {
      const { m } = paged(`
        li t0, (1 << 17) | (3 << 11)
        csrs mstatus, t0
        li t0, ${P1}
        ld a0, 0(t0)
      `, { priv: PRV_M, noCodeMap: true });
      m.w64(P1, 0x33n);
      m.runDone();
      expect(m.x("a0")).toBe(0x33n);
    });
  });

  describe("A and D bits", () => {
    it("a load sets A only; a store sets D", () => {
      const { m, pt } = paged(`
        li t0, ${VA}
        ld a0, 0(t0)
        j done
      `);
      const pte = pt.map(VA, P1, V | R | W);
      m.runDone();
      expect(m.r64(pte) & AD).toBe(PTE.A);
      const { m: m2, pt: pt2 } = paged(`
        li t0, ${VA}
        ld a0, 0(t0)
        sd a0, 0(t0)
      `);
      const pte2 = pt2.map(VA, P1, V | R | W);
      m2.runDone();
      expect(m2.r64(pte2) & AD).toBe(AD);
    });

    it("a store after a load of the same page (read TLB entry already filled) still sets D", () => {
      const { m, pt } = paged(`
        li t0, ${VA}
        ld a0, 0(t0)
        ld a1, 8(t0)
        sw a0, 16(t0)
      `);
      const pte = pt.map(VA, P1, V | R | W | PTE.A);
      m.runDone();
      expect(m.r64(pte) & PTE.D).toBe(PTE.D);
    });

    it("an instruction fetch sets A", () => {
      const { m, pt } = paged(`
        li t0, ${VA}
        jalr ra, 0(t0)
      `);
      const pte = pt.map(VA, P1, V | R | X);
      m.w32(P1, 0x00008067); // ret
      m.runDone();
      expect(m.r64(pte) & AD).toBe(PTE.A);
    });

    it("a faulting access sets neither A nor D", () => {
      const { m, pt } = paged(`
        li t0, ${VA}
        sd zero, 0(t0)
      `);
      const pte = pt.map(VA, P1, V | R);
      m.runTrap();
      expect(m.r64(pte) & AD).toBe(0n);
    });
  });

  describe("address spaces (satp with ASIDs)", () => {
    // Address space i maps VA to a page of its own holding i + 1; code and data are in RAM's
    // identity-mapped gigapage in all of them. The TLB keeps a few address spaces (TLB_CTXS):
    // switching satp among them must never let one see another's mapping.
    const OUT = RAM + 0x200000, LIST = RAM + 0x1ff000;
    function spaces(m: Machine, n: number): { pts: PageTables[]; satps: bigint[]; data: number[] } {
      const pts: PageTables[] = [], satps: bigint[] = [], data: number[] = [];
      for (let i = 0; i < n; i++) {
        const pt = new PageTables(m, "sv39", POOL + i * 0x10000);
        pt.map(RAM, RAM, V | RWX | AD, 2);
        data.push(RAM + 0x400000 + i * 0x1000);
        pt.map(VA, data[i], V | R | W | AD);
        m.w64(data[i], BigInt(i + 1));
        m.w64(LIST + 8 * i, pt.satp(i + 1));
        pts.push(pt);
        satps.push(pt.satp(i + 1));
      }
      return { pts, satps, data };
    }
    const newPte = (pa: number, flags: bigint) => (BigInt(pa) >> 12n << 10n) | flags;

    it("round robin over more address spaces than the TLB keeps: each load sees its own page", () => {
      const n = L.TLB_CTXS + 2, rounds = 3;
      const m = machine(`
        ${enter(PRV_S, "body")}
      body:
        li s0, ${LIST}
        li s3, ${OUT}
        li s2, ${rounds}
      outer:
        li t3, 0
      inner:
        slli t4, t3, 3
        add t5, s0, t4
        ld t6, 0(t5)
        csrw satp, t6
        li t0, ${VA}
        ld a0, 0(t0)
        sd a0, 0(s3)
        addi s3, s3, 8
        addi t3, t3, 1
        li t4, ${n}
        blt t3, t4, inner
        addi s2, s2, -1
        bnez s2, outer
      `, { ramSize: 8 * MB });
      spaces(m, n);
      m.runDone();
      const seen = Array.from({ length: n * rounds }, (_, k) => m.r64(OUT + 8 * k));
      expect(seen).toEqual(Array.from({ length: n * rounds }, (_, k) => BigInt((k % n) + 1)));
    });

    it("back and forth between two address spaces, then sfence.vma x0, asid renews only that one", () => {
      const m = machine(`
        ${enter(PRV_S, "body")}
      body:
        li s0, ${LIST}
        li t0, ${VA}
        ld s1, 0(s0)
        ld s2, 8(s0)
        csrw satp, s1
        ld a0, 0(t0)
        csrw satp, s2
        ld a1, 0(t0)
        csrw satp, s1
        ld a2, 0(t0)
        # while B is current: A's leaf for VA now points at the page holding 3; fence A's ASID only
        csrw satp, s2
        li t1, ${OUT}
        ld t2, 0(t1)
        li t1, ${OUT + 8}
        ld t1, 0(t1)
        sd t2, 0(t1)
        li t1, 1
        sfence.vma x0, t1
        csrw satp, s1
        ld a3, 0(t0)
        csrw satp, s2
        ld a4, 0(t0)
      `, { ramSize: 8 * MB });
      const { pts } = spaces(m, 3);
      m.w64(OUT, newPte(RAM + 0x402000, V | R | W | AD)); // the page of space 2, which holds 3
      m.w64(OUT + 8, BigInt(pts[0].pteAddr(VA, 0, false)));
      m.runDone();
      expect([m.x("a0"), m.x("a1"), m.x("a2"), m.x("a3"), m.x("a4")]).toEqual([1n, 2n, 1n, 3n, 2n]);
    });

    it("sfence.vma va, x0 renews va in address spaces that are not current", () => {
      const m = machine(`
        ${enter(PRV_S, "body")}
      body:
        li s0, ${LIST}
        li t0, ${VA}
        ld s1, 0(s0)
        ld s2, 8(s0)
        csrw satp, s2
        ld a2, 0(t0)
        csrw satp, s1
        ld a0, 0(t0)
        csrw satp, s2
        li t1, ${OUT}
        ld t2, 0(t1)
        li t1, ${OUT + 8}
        ld t1, 0(t1)
        sd t2, 0(t1)
        sfence.vma t0, x0
        csrw satp, s1
        ld a1, 0(t0)
      `, { ramSize: 8 * MB });
      const { pts } = spaces(m, 3);
      m.w64(OUT, newPte(RAM + 0x402000, V | R | W | AD));
      m.w64(OUT + 8, BigInt(pts[0].pteAddr(VA, 0, false)));
      m.runDone();
      expect([m.x("a2"), m.x("a0"), m.x("a1")]).toEqual([2n, 1n, 3n]);
    });

    it("an address space in a TLB context never used before matches nothing, page 0 included", () => {
      // Its tables start as zeros, whose tags would equal those of page 0's addresses.
      for (const [insn, cause] of [["ld a0, 16(x0)", CAUSE.LOAD_PAGE], ["sd t0, 16(x0)", CAUSE.STORE_PAGE], ["jalr x0", CAUSE.FETCH_PAGE]] as const) {
        const m = machine(`
          ${enter(PRV_S, "body")}
        body:
          li s0, ${LIST}
          ld s1, 0(s0)
          ld s2, 8(s0)
          csrw satp, s1
          csrw satp, s2
          ${insn}
        `, { ramSize: 8 * MB });
        spaces(m, 2);
        expectFault(m, cause, insn === "jalr x0" ? 0 : 16);
      }
    });

    // satp with MODE = Bare is an address space of its own to the TLB (identity entries), and any
    // change of address space makes the run loop fetch its code page again.
    const XB = RAM + 0x500000; // a virtual address that is also a RAM physical address
    // XB maps to P1 (holding 0x11) in the page table and holds 0x22 itself; code is in 2 MiB pages.
    const runWithXb = (body: (satp: bigint) => string) => {
      const m = machine(null, { ramSize: 8 * MB });
      const pt = new PageTables(m, "sv39", POOL + 0x40000);
      pt.map(RAM, RAM, V | RWX | AD, 1);
      pt.map(RAM + 0x200000, RAM + 0x200000, V | RWX | AD, 1);
      pt.map(XB, P1, V | R | W | AD);
      m.w64(P1, 0x11n);
      m.w64(XB, 0x22n);
      m.load(`
        ${enter(PRV_S, "body")}
      body:
        ${body(pt.satp())}
      `);
      m.runDone();
      return m;
    };

    it("paged -> Bare -> paged: a load at a virtual address reads physical memory in between", () => {
      const m = runWithXb((satp) => `
        li t1, ${satp}
        csrw satp, t1
        li t0, ${XB}
        ld a0, 0(t0)
        csrw satp, zero
        ld a1, 0(t0)
        csrw satp, t1
        ld a2, 0(t0)`);
      expect([m.x("a0"), m.x("a1"), m.x("a2")]).toEqual([0x11n, 0x22n, 0x11n]);
    });

    it("identity entries made in Bare are not used when the earlier satp comes back", () => {
      const m = runWithXb((satp) => `
        li t1, ${satp}
        li t0, ${XB}
        csrw satp, t1
        csrw satp, zero
        ld a0, 0(t0)
        csrw satp, t1
        ld a1, 0(t0)`);
      expect([m.x("a0"), m.x("a1")]).toEqual([0x22n, 0x11n]);
    });

    // The code page at RAM + 0x3000 is mapped to RAM + 0x4000 by the page table: after the satp
    // write on it, the next instruction comes from whichever mapping is now in force.
    const switchOnPage = (first: string, second: string) => `
        ${enter(PRV_S, "body")}
      body:
        li t1, ${LIST}
        ld t3, 0(t1)
        ld t1, 8(t1)
        ${first}
        li t0, ${RAM + 0x3000}
        jr t0
        .align 12
        .space 0x2000
        ${second}
        li a0, 0x22
        li t2, done
        jr t2
        .align 12
        ${second}
        li a0, 0x11
        li t2, done
        jr t2
      `;
    const remapped = (m: Machine, root: number, asid = 0, remap = true) => {
      const pt = new PageTables(m, "sv39", root);
      for (let p = 0; p < 0x200000; p += 0x1000) pt.map(RAM + p, remap && p === 0x3000 ? RAM + 0x4000 : RAM + p, V | RWX | AD);
      return pt.satp(asid);
    };

    it("the first satp write since reset: the next instruction is fetched through the page table", () => {
      const m = machine(switchOnPage("", "csrw satp, t3"), { ramSize: 8 * MB });
      m.w64(LIST, remapped(m, POOL + 0x40000, 1));
      m.runDone();
      expect(m.x("a0")).toBe(0x11n);
    });

    it("paged -> Bare: the instruction after csrw satp, zero is fetched from its physical address", () => {
      const m = machine(switchOnPage("csrw satp, t3", "csrw satp, zero"), { ramSize: 8 * MB });
      m.w64(LIST, remapped(m, POOL + 0x40000, 1));
      m.runDone();
      expect(m.x("a0")).toBe(0x22n);
    });

    it("after 2^32 satp writes (the use clock wraps) a new address space still gets a fresh context", () => {
      const m = machine(switchOnPage("csrw satp, t3", "csrw satp, t1"), { ramSize: 8 * MB });
      m.w64(LIST, remapped(m, POOL + 0x40000, 1));
      m.w64(LIST + 8, remapped(m, POOL + 0x80000, 2, false));
      m.core.view.setUint32(m.core.hartBase(0) + L.H_TLB_CLOCK, 0xffffffff, true);
      m.runDone();
      expect(m.x("a0")).toBe(0x22n);
    });

    it("a hart reset forgets every address space: a root reused after it is walked again", () => {
      const program = `
        ${enter(PRV_S, "body")}
      body:
        li s0, ${LIST}
        li t0, ${VA}
        ld s1, 0(s0)
        ld s2, 8(s0)
        csrw satp, s2
        ld a1, 0(t0)
        csrw satp, s1
        ld a0, 0(t0)
      `;
      const m = machine(program, { ramSize: 8 * MB });
      const { pts } = spaces(m, 2);
      m.runDone();
      expect([m.x("a0"), m.x("a1")]).toEqual([1n, 2n]);
      m.core.reset();
      m.w64(pts[1].pteAddr(VA, 0, false), newPte(RAM + 0x400000, V | R | W | AD)); // space 1 now sees 1
      m.load(program);
      m.runDone();
      expect([m.x("a0"), m.x("a1")]).toEqual([1n, 1n]);
    });
  });

  describe("sfence.vma", () => {
    const newPte = (pa: number, flags: bigint) => (BigInt(pa) >> 12n << 10n) | flags;

    it("a new hart's TLBs match nothing, page 0 included (its tables are zeros but for their first entries)", () => {
      // A zero tag would equal the tag of any address in page 0: here every access kind there
      // must miss and take the fault the address deserves, in M-mode (bare) and through a page table.
      for (const [insn, cause] of [["ld a0, 0(t0)", CAUSE.LOAD_ACCESS], ["sd t0, 8(t0)", CAUSE.STORE_ACCESS], ["jalr t0", CAUSE.FETCH_ACCESS]] as const) {
        const m = machine(`li t0, 0\n${insn}`);
        expectFault(m, cause, insn === "sd t0, 8(t0)" ? 8 : 0);
      }
      const { m } = paged(`li t0, 16\nld a0, 0(t0)`);
      expectFault(m, CAUSE.LOAD_PAGE, 16);
    });

    it("a hart reset empties TLBs that hold entries: after it the changed PTE is used", () => {
      const m = machine(null, { ramSize: 8 * MB });
      const pt = new PageTables(m, "sv39", POOL);
      pt.map(RAM, RAM, V | RWX | AD, 2);
      const a = pt.map(VA, P1, V | R | W | AD);
      const program = `
        ${enter(PRV_S, "body")}
      body:
        li t0, ${VA}
        ld a0, 0(t0)
      `;
      m.load(program);
      pokeSatp(m, pt.satp());
      m.w64(P1, 1n);
      m.w64(P2, 2n);
      m.runDone();
      expect(m.x("a0")).toBe(1n);
      m.core.reset();
      m.w64(a, newPte(P2, V | R | W | AD));
      m.load(program);
      m.core.view.setBigUint64(m.core.hartBase(0) + L.H_SATP, pt.satp(), true); // no flush of its own
      m.runDone();
      expect(m.x("a0")).toBe(2n);
    });

    it("after sfence.vma x0, x0 a changed PTE is used", () => {
      const m = machine(null, { ramSize: 8 * MB });
      const pt = new PageTables(m, "sv39", POOL);
      pt.map(RAM, RAM, V | RWX | AD, 2);
      const a = pt.map(VA, P1, V | R | W | AD);
      m.load(`
        ${enter(PRV_S, "body")}
      body:
        li t0, ${VA}
        ld a0, 0(t0)
        li t1, ${a}
        li t2, ${newPte(P2, V | R | W | AD)}
        sd t2, 0(t1)
        sfence.vma
        ld a1, 0(t0)
      `);
      pokeSatp(m, pt.satp());
      m.w64(P1, 1n);
      m.w64(P2, 2n);
      m.runDone();
      expect(m.x("a0")).toBe(1n);
      expect(m.x("a1")).toBe(2n);
    });

    it("after sfence.vma va, x0 the changed PTE for va is used", () => {
      const m = machine(null, { ramSize: 8 * MB });
      const pt = new PageTables(m, "sv39", POOL);
      pt.map(RAM, RAM, V | RWX | AD, 2);
      const a = pt.map(VA, P1, V | R | W | AD);
      m.load(`
        ${enter(PRV_S, "body")}
      body:
        li t0, ${VA}
        ld a0, 0(t0)
        li t1, ${a}
        li t2, ${newPte(P2, V | R | W | AD)}
        sd t2, 0(t1)
        sfence.vma t0
        ld a1, 0(t0)
      `);
      pokeSatp(m, pt.satp());
      m.w64(P1, 1n);
      m.w64(P2, 2n);
      m.runDone();
      expect(m.x("a0")).toBe(1n);
      expect(m.x("a1")).toBe(2n);
    });

    it("after sfence.vma va for one address of a megapage, the whole megapage uses the new leaf PTE", () => {
      // The fence orders the leaf PTE that maps va; a megapage has one leaf for all its 4 KiB parts.
      const m = machine(null, { ramSize: 8 * MB });
      const pt = new PageTables(m, "sv39", POOL);
      pt.map(RAM, RAM, V | RWX | AD, 2);
      const MEGA = VA + 0x400000;
      const a = pt.map(MEGA, RAM + 0x400000, V | R | W | AD, 1);
      m.load(`
        ${enter(PRV_S, "body")}
      body:
        li t0, ${MEGA + 0x1000}
        li t3, ${MEGA + 0x2000}
        ld a0, 0(t0)
        ld a1, 0(t3)
        li t1, ${a}
        li t2, ${newPte(RAM + 0x600000, V | R | W | AD)}
        sd t2, 0(t1)
        sfence.vma t0
        ld a2, 0(t0)
        ld a3, 0(t3)
      `);
      pokeSatp(m, pt.satp());
      m.w64(RAM + 0x401000, 0x11n);
      m.w64(RAM + 0x402000, 0x12n);
      m.w64(RAM + 0x601000, 0x21n);
      m.w64(RAM + 0x602000, 0x22n);
      m.runDone();
      expect([m.x("a0"), m.x("a1")]).toEqual([0x11n, 0x12n]);
      expect(m.x("a2")).toBe(0x21n);
      expect(m.x("a3")).toBe(0x22n);
    });

    it("a PTE made valid after sfence.vma is used (earlier fault not cached)", () => {
      const m = machine(null, { ramSize: 8 * MB });
      const pt = new PageTables(m, "sv39", POOL);
      pt.map(RAM, RAM, V | RWX | AD, 2);
      const a = pt.pteAddr(VA); // creates the tables, leaf invalid
      m.load(`
        la t0, handler
        csrw stvec, t0
        li t0, 1 << 13
        csrw medeleg, t0
        ${enter(PRV_S, "body")}
      body:
        li t0, ${VA}
        li s1, 0
        ld a0, 0(t0)           # faults once, handler maps the page
        j done
      handler:
        addi s1, s1, 1
        li t1, ${a}
        li t2, ${newPte(P1, V | R | W | AD)}
        sd t2, 0(t1)
        sfence.vma
        sret
      `);
      pokeSatp(m, pt.satp());
      m.w64(P1, 0x77n);
      m.runDone();
      expect(m.x("s1")).toBe(1n);
      expect(m.x("a0")).toBe(0x77n);
    });

    it("writing satp with an unsupported mode from S does not change translation", () => {
      const { m, pt } = paged(`
        li t1, (10 << 60)
        csrw satp, t1
        li t0, ${VA}
        ld a0, 0(t0)
      `);
      pt.map(VA, P1, V | R | AD);
      m.w64(P1, 0x10n);
      m.runDone();
      expect(m.x("a0")).toBe(0x10n);
    });

    it("satp = 0 (Bare) from S turns translation off", () => {
      const { m } = paged(`
        csrw satp, zero
        li t0, ${P1}
        ld a0, 0(t0)
      `);
      m.w64(P1, 0x20n);
      m.runDone();
      expect(m.x("a0")).toBe(0x20n);
    });
  });
});
