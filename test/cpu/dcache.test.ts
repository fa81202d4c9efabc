// The decoded-code cache must never run stale instructions: code changed by a store (same page,
// another page, another hart, a page-crossing instruction) or by the host runs as changed.
import { describe, it, expect } from "vitest";
import { machine, L, type Machine } from "./harness";
import { enc } from "../../host/util/riscv-asm";

const ADD_100 = enc.addi("a0", "a0", 100);
const C_ADDI_7 = enc["c.addi"]("a0", 7);

// Runs a program whose `addi a0, a0, 1` leaves a0 = 1 at `done`, lets the host replace that
// instruction with `addi a0, a0, 100`, and runs again from `again`: the new one must run.
function rerunAfterHostPatch(m: Machine, patch: () => void): void {
  m.runDone();
  expect(m.x("a0")).toBe(1n);
  patch();
  m.core.setPc(0, BigInt(m.label("again")));
  m.runDone();
  expect(m.x("a0")).toBe(101n);
}

describe("decoded-code cache coherence", () => {
  // Runs `addi a0, a0, 1`, then overwrites it with `word` from the same page and runs it again.
  const patchedTwice = (word: number) => machine(`
      li a0, 0
      li s1, 2
      la s0, patch
      li t0, ${word}
    loop:
    patch:
      addi a0, a0, 1
      sw t0, 0(s0)
      addi s1, s1, -1
      bnez s1, loop
    `);

  it("a store to the page being executed changes the next execution, without fence.i", () => {
    const m = patchedTwice(ADD_100);
    m.runDone();
    expect(m.x("a0")).toBe(101n); // 1 from the original, 100 from the patched instruction
  });

  it("a store from code on another page changes a cached function", () => {
    const m = machine(`
      li a0, 0
      la s0, func
      jalr s0
      li t0, ${ADD_100}
      sw t0, 0(s0)
      jalr s0
      j done
      .balign 4096
    func:
      addi a0, a0, 1
      ret
    `);
    m.runDone();
    expect(m.x("a0")).toBe(101n);
  });

  it("a compressed instruction patched over a 32-bit one runs as the new 16-bit form", () => {
    const m = patchedTwice(C_ADDI_7 | (enc["c.nop"]() << 16));
    m.runDone();
    expect(m.x("a0")).toBe(8n); // 1, then c.addi a0, 7 (and a c.nop)
  });

  it("a 32-bit instruction across a page boundary sees a change to its upper half", () => {
    // addi a0, a0, imm keeps its immediate in the upper half, which lies on the next page.
    const m = machine(`
      li a0, 0
      li s1, 2
      la s0, cross
      li t0, ${ADD_100 >>> 16}
    loop:
      jal ra, cross
      sh t0, 2(s0)
      addi s1, s1, -1
      bnez s1, loop
      j done
      .balign 4096
      .space 4094
    cross:
      addi a0, a0, 1
      ret
    `);
    expect(m.label("cross") % 4096).toBe(4094);
    m.runDone();
    expect(m.x("a0")).toBe(101n);
  });

  it("host writes through phys() drop decoded code", () => {
    const m = machine(`
      li a0, 0
    again:
    patch:
      addi a0, a0, 1
      j done
    `);
    rerunAfterHostPatch(m, () => m.w32(m.label("patch"), ADD_100));
  });

  it("a store by another hart reaches code the first hart has cached", () => {
    const m = machine(`
      li a0, 0
      la s0, func
    loop:
      jalr s0
      j loop
    h1a:
      lw t0, 0(s0)
      sw t0, 0(s0)
    h1a_done:
      j h1a_done
    h1b:
      li t0, ${ADD_100}
      sw t0, 0(s0)
    h1b_done:
      j h1b_done
      .balign 4096
    func:
      addi a0, a0, 1
      ret
    `, { harts: 2 });
    const c = m.core;
    c.setX(1, 8, m.label("func")); // s0
    // Hart 1 stores the unchanged instruction first, so its write TLB maps the page...
    c.setPc(1, m.label("h1a"));
    c.run(1, 1000); // ends spinning at h1a_done (the budget counts work: caching a page costs)
    expect(c.pc(1)).toBe(BigInt(m.label("h1a_done")));
    // ...then hart 0 runs the function (caching the page: hart 1's mapping must go)...
    c.run(0, 2000);
    const a0 = m.x("a0");
    expect(a0).toBeGreaterThan(0n);
    // ...and hart 1's patch must reach hart 0.
    c.setPc(1, m.label("h1b"));
    c.run(1, 1000);
    expect(c.pc(1)).toBe(BigInt(m.label("h1b_done")));
    c.run(0, 2000); // several calls, each adding 100 now
    const gained = m.x("a0") - a0;
    expect(gained).toBeGreaterThanOrEqual(100n);
    expect(gained % 100n).toBe(0n);
  });

  it("an AMO or SC to its own page still uses its operands (the write drops the page's slots)", () => {
    const m = machine(`
      la s0, data
      li a1, 5
      li a0, 99
      amoadd.d a0, a1, (s0)
      lr.d a2, (s0)
      li a3, 7
      sc.d a4, a3, (s0)
      j done
      .balign 8
    data:
      .dword 10
    `);
    m.runDone();
    expect(m.x("a0")).toBe(10n); // the old value
    expect(m.x("a2")).toBe(15n);
    expect(m.x("a4")).toBe(0n); // the SC succeeded...
    expect(m.r64(m.label("data"))).toBe(7n); // ...and stored a3
  });

  it("host writes above 2 GiB of the VM's memory drop decoded code too", () => {
    // Guest RAM reaches host offsets past 2^31 (tags that read back negative as int32).
    const high = 0xff001000; // its cache entry differs from the low code's
    const m = machine(`
      li a0, 0
      li t0, ${high}
    again:
      jalr t0
      j done
    `, { ramSize: 0xff000000 - 0x80000000 + (1 << 20) });
    const write = (words: number[]) => words.forEach((w, i) => m.w32(high + 4 * i, w));
    write([enc.addi("a0", "a0", 1), enc.jalr("zero", "ra", 0)]);
    rerunAfterHostPatch(m, () => write([ADD_100]));
  });

  it("fence.i: execution goes on correctly", () => {
    const m = machine(`
      li a0, 0
      li s1, 3
    loop:
      addi a0, a0, 2
      fence.i
      addi s1, s1, -1
      bnez s1, loop
    `);
    m.runDone();
    expect(m.x("a0")).toBe(6n);
  });

  it("fence.i keeps the decoded code while one thread runs the VM, and empties it once another thread has run its harts", () => {
    // Each entry's generation (DC_GEN) counts the times its slots were dropped (and taken).
    const generations = (fence: string, shared: boolean) => {
      const m = machine(`
        li s1, 50
      loop:
        ${fence}
        addi s1, s1, -1
        bnez s1, loop
      `);
      if (shared) m.core.view.setInt32(L.VM_CODE_SHARED, 1, true); // as a Core with code cache 1 does
      m.runDone();
      let sum = 0;
      for (let e = 0; e < L.DC_PAGES; e++) sum += m.core.view.getUint32(L.DC_GEN + 4 * e, true);
      return sum;
    };
    // One thread: its cache is what memory holds (stores and DMA drop what they change), so
    // fence.i has nothing to drop: it is a nop to the cache.
    expect(generations("fence.i", false)).toBe(generations("nop", false));
    // Once harts ran on another thread, a store there may reach code this thread decoded
    // before its mark: fence.i empties the cache, each time.
    expect(generations("fence.i", true)).toBeGreaterThan(generations("nop", true) + 50);
  });

  it("a page entered again and again stays cached while more pages than its set holds stream through it", () => {
    // The loop's page calls, round after round, 3 x DC_WAYS pages that fall in its set (one set
    // every DC_PAGES / DC_WAYS pages): they evict each other, and never it. Two ways, or a clock
    // that keeps what was cached once, evicted it about once a round.
    const stride = (L.DC_PAGES / L.DC_WAYS) * 4096;
    const cold = 3 * L.DC_WAYS;
    let src = `
      li s1, 4              # rounds
    round:
      li s2, ${cold}
      la s0, cold0
    call:
      jalr s0
      li t0, ${stride}
      add s0, s0, t0
      addi s2, s2, -1
      bnez s2, call
      addi s1, s1, -1
      bnez s1, round
      la t0, done
      jr t0
    `;
    src += ".balign 65536\n.space 65536\n"; // cold0 at one stride from the loop's page (the code above is short)
    for (let i = 0; i < cold; i++) src += `cold${i}:\n addi a0, a0, 1\n ret\n .space ${(i + 1 < cold ? stride : 4096) - 8}\n`; // \`done\` in another set
    const m = machine(src, { ramSize: (cold + 2) * stride });
    m.runDone(100_000);
    expect(m.x("a0")).toBe(BigInt(4 * cold));
    const entryOf = (gpa: number) => {
      for (let e = 0; e < L.DC_PAGES; e++) if (m.core.view.getUint32(L.DC_TAGS + 4 * e, true) === L.RAM_HOST + gpa - L.RAM_GPA) return e;
      return -1;
    };
    const loopEntry = entryOf(L.RAM_GPA);
    expect(loopEntry).toBeGreaterThanOrEqual(0);
    expect(m.core.view.getUint32(L.DC_GEN + 4 * loopEntry, true), "the loop's page was evicted").toBe(1); // cached once, when it first ran
    let coldRenewals = 0;
    const set = Math.floor(loopEntry / L.DC_WAYS) * L.DC_WAYS;
    for (let e = set; e < set + L.DC_WAYS; e++) if (e !== loopEntry) coldRenewals += m.core.view.getUint32(L.DC_GEN + 4 * e, true);
    expect(coldRenewals).toBe(4 * cold); // every call missed: they took turns in the other ways
  });

  it("a translated page used often outlasts a stream of pages through its set that evicts an untranslated one", () => {
    // The page of \`pfunc\` (set 1) runs once; then, flagged translated as the tier flags its pages
    // or not, it is called 20 times, and 3 x DC_WAYS pages of its set stream through once each.
    const stride = (L.DC_PAGES / L.DC_WAYS) * 4096;
    const cold = 3 * L.DC_WAYS;
    let src = `
      la s0, pfunc
      jalr s0
      la t0, done
      jr t0
    again:
      li s1, 20
    often:
      la s0, pfunc
      jalr s0
      addi s1, s1, -1
      bnez s1, often
      li s2, ${cold}
      la s0, cold0
    stream:
      jalr s0
      li t0, ${stride}
      add s0, s0, t0
      addi s2, s2, -1
      bnez s2, stream
      la t0, done
      jr t0
      .balign 4096
    pfunc:
      addi a0, a0, 1
      ret
      .space ${stride - 8}
    `;
    for (let i = 0; i < cold; i++) src += `cold${i}:\n addi a1, a1, 1\n ret\n .space ${(i + 1 < cold ? stride : 4096) - 8}\n`;
    const pfuncStays = (translated: boolean): boolean => {
      const m = machine(src, { ramSize: (cold + 3) * stride });
      const view = m.core.view;
      const tagOf = (e: number) => view.getUint32(L.DC_TAGS + 4 * e, true);
      const pfuncTag = L.RAM_HOST + 4096;
      m.runDone(100_000);
      const e = Array.from({ length: L.DC_PAGES }, (_, i) => i).find((i) => tagOf(i) === pfuncTag)!;
      expect(e, "pfunc's page is cached").toBeDefined();
      if (translated) view.setUint8(L.DC_USED + e, view.getUint8(L.DC_USED + e) | L.DC_TRANSLATED);
      m.core.setPc(0, BigInt(m.label("again")));
      m.runDone(100_000);
      expect([m.x("a0"), m.x("a1")]).toEqual([21n, BigInt(cold)]);
      return tagOf(e) === pfuncTag && view.getUint32(L.DC_GEN + 4 * e, true) === 1;
    };
    expect(pfuncStays(false), "an untranslated page entered often goes after two turns of the hand").toBe(false);
    expect(pfuncStays(true), "the translated one stays").toBe(true);
  });

  it("heat counts the instructions interpreted in a page, even where every slice is cut short", () => {
    // Each round writes mstatus (which may unmask an interrupt: the slice ends there), so no slice
    // runs long enough to be sampled; 10,000 rounds of 34 instructions interpret 340,000 in the
    // page: 83 units of heat (one per 4096), as the translation tier reads DC_HEAT.
    const m = machine(`
      li s1, 10000
      li t1, 8
    loop:
      csrs mstatus, t1
      ${Array.from({ length: 31 }, () => "addi a0, a0, 1").join("\n      ")}
      addi s1, s1, -1
      bnez s1, loop
      la t0, done
      jr t0
      .balign 4096
    `);
    m.runDone(1_000_000);
    expect(m.x("a0")).toBe(310_000n);
    const e = Array.from({ length: L.DC_PAGES }, (_, i) => i).find((i) => m.core.view.getUint32(L.DC_TAGS + 4 * i, true) === L.RAM_HOST)!;
    const heat = m.core.view.getUint8(L.DC_HEAT + e);
    expect(heat).toBeGreaterThanOrEqual(80);
    expect(heat).toBeLessThanOrEqual(84);
  });

  it("more code pages than the cache holds still run correctly (entries are evicted)", () => {
    // A chain of jumps through DC_PAGES + 8 pages that all map to cache entries in turn.
    const pages = L.DC_PAGES + 8;
    let src = "li a0, 0\n j p0\n .balign 4096\n";
    for (let i = 0; i < pages; i++) src += `p${i}:\n addi a0, a0, 1\n j ${i + 1 < pages ? `p${i + 1}` : "back"}\n .balign 4096\n`;
    src += "back:\n addi s1, s1, 1\n li t0, 2\n bge s1, t0, fin\n la t1, p0\n jr t1\nfin:\n j done\n";
    const m = machine(src, { ramSize: (pages + 16) * 4096 });
    m.runDone(100_000);
    expect(m.x("a0")).toBe(BigInt(2 * pages));
  });
});
