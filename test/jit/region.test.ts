// "on" mode translates a page's hot region, not all it decoded (translate.ts hotRegion): the
// blocks where heat samples fell and every block on a path from one of them to one of them.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import * as L from "../../host/core/layout";
import { VirtMachine } from "../../host/machine/virt";
import { loadCoreModule } from "../../host/platform/node/core";
import { translatePage } from "../../host/jit/translate";
import { runToStop } from "../board";
import { EXIT, assemble, run } from "./asm";

// One page: code run once (200 instructions), a loop with a branch it takes one round in 1024
// (to code further on that jumps back), and the end, run once. Offsets are fixed by .org.
const PROGRAM = `
  li s1, 10000000
  .rept 200
  addi s6, s6, 1
  .endr
  j loop
  .org 0x400
loop:
  addi s1, s1, -1
  andi t0, s1, 1023
  beqz t0, rare
back:
  add s2, s2, s1
  bnez s1, loop
  j done
  .org 0x600
rare:
  addi s3, s3, 1
  xor s4, s4, s2
  j back
  .org 0x800
done:
  addi s5, s5, 1
${EXIT}`;

// The decoded-code cache's entry for the page at host offset `hostPage`, or -1.
function cacheEntry(m: VirtMachine, hostPage: number): number {
  const { meta } = m.core.codeCache;
  for (let e = 0; e < L.DC_PAGES; e++) if (m.core.view.getUint32(meta + L.DC_TAGS + e * 4, true) === hostPage) return e;
  return -1;
}

// The decoded slots of the page at guest physical 0x80000000 after running the program interpreted.
function decodedPage(bytes: Uint8Array): { view: DataView; slots: number; pages: number } {
  const m = new VirtMachine({ module: loadCoreModule(), memory: 64 << 20, bios: null, kernel: { name: "p", bytes }, jit: "off", output: () => {} });
  runToStop(m, 60);
  const e = cacheEntry(m, L.RAM_HOST);
  if (e < 0) throw new Error("the program's page is not cached");
  return { view: m.core.view, slots: m.core.codeCache.slots + e * L.DC_PAGE_BYTES, pages: m.core.memory.buffer.byteLength / 65536 };
}

// DC_SAMPLED bits for samples at these page offsets.
function sampledAt(...offsets: number[]): Uint8Array {
  const bits = new Uint8Array(16);
  for (const off of offsets) bits[off >> 8] |= 1 << ((off >> 5) & 7);
  return bits;
}

describe("translating a page's hot region", () => {
  const bytes = assemble("region", PROGRAM);
  const page = decodedPage(bytes);

  it("a sample in a loop takes the loop whole, its rare branch included, and leaves what ran once", () => {
    const t = translatePage(page.view, page.slots, page.pages, sampledAt(0x404))!;
    // Blocks: the loop's head, `back`, and `rare` (on the path from the loop back to it).
    expect(t.entries.filter((off) => off >= 0x400 && off < 0x500).length).toBeGreaterThanOrEqual(2);
    expect(t.entries).toContain(0x400);
    expect(t.entries).toContain(0x600);
    // Not the code run once before the loop, nor the end.
    expect(t.entries.filter((off) => off < 0x400 || off >= 0x800)).toEqual([]);
    expect(t.instructions).toBeLessThan(20);
  });

  it("without samples in its blocks, and in 'all' mode, the page is translated whole", () => {
    const whole = translatePage(page.view, page.slots, page.pages)!;
    expect(whole.instructions).toBeGreaterThan(200);
    expect(whole.entries).toContain(0);
    expect(whole.entries).toContain(0x800);
    expect(translatePage(page.view, page.slots, page.pages, sampledAt(0xf00))!.instructions).toBe(whole.instructions);
  });

  it("any samples at all (the guest decides where they fall): a module that validates, blocks of the page's own, every sampled block among them", () => {
    const whole = translatePage(page.view, page.slots, page.pages)!;
    fc.assert(fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (bits) => {
      const t = translatePage(page.view, page.slots, page.pages, bits)!;
      expect(WebAssembly.validate(t.wasm as Uint8Array<ArrayBuffer>)).toBe(true);
      for (const off of t.entries) expect(whole.entries).toContain(off);
      // A block whose first instruction lies in a sampled granule is translated.
      for (const off of whole.entries) if (bits[off >> 8]! & (1 << ((off >> 5) & 7))) expect(t.entries).toContain(off);
    }), { numRuns: 300 });
  });

  it("under --jit on the loop runs translated, the code run once does not, and the result is the interpreter's", () => {
    const a = run(bytes, "off"), t = run(bytes, "on");
    expect(t.reason).toEqual(a.reason);
    expect(t.regs).toEqual(a.regs);
    expect(t.instret).toBe(a.instret);
    expect(t.jit!.translations).toBeGreaterThanOrEqual(1);
    expect(t.jit!.instructions).toBeLessThan(20 * t.jit!.translations);
    // 10,000,000 rounds of 5 instructions: most of them translated (the tier compiles in the
    // background and gives up waiting for it after 50 ms of a caller that never yields).
    expect(t.jit!.retired).toBeGreaterThan(25_000_000);
  }, 60_000);
});

// A loop alone on its page (entered from the page before, left for the page after): its
// translation covers all that the page has decoded.
const LOOP_PAGE = `
  li s1, 100000000
  j loop
  .org 0x1000
loop:
  addi s1, s1, -1
  add s2, s2, s1
  bnez s1, loop
  j done
  .org 0x2000
done:
${EXIT}`;

describe("heat on a page whose translation covers it all", () => {
  it("is a neighbour's (a slice is sampled where it ends): the page is not translated again, the same", () => {
    const m = new VirtMachine({ module: loadCoreModule(), memory: 64 << 20, bios: null, kernel: { name: "loop-page", bytes: assemble("loop-page", LOOP_PAGE) }, jit: "on", output: () => {} });
    const { meta } = m.core.codeCache;
    // Until the loop's page is translated (its compile given up on, then made on this thread: this loop never yields).
    const end = performance.now() + 20_000;
    while (m.stats().jit!.translations === 0 && performance.now() < end) m.step();
    const e = cacheEntry(m, L.RAM_HOST + 0x1000);
    expect(e).toBeGreaterThanOrEqual(0);
    const translations = m.stats().jit!.translations;
    expect(translations).toBe(1);
    // Translated, the page is one the decoded-code cache keeps longer (dcache.ts markUsed).
    expect(m.core.view.getUint8(meta + L.DC_USED + e) & L.DC_TRANSLATED).toBe(L.DC_TRANSLATED);
    for (let i = 0; i < 6; i++) {
      m.core.view.setUint8(meta + L.DC_HEAT + e, 255); // as hot as a page gets
      m.step();
    }
    expect(m.stats().jit!.translations).toBe(translations);
    expect(m.stats().jit!.retired).toBeGreaterThan(0);
    m.close();
  }, 60_000);
});

// A translation's module imports the core's slow paths (a load or store that missed the TLB, an
// instruction the core runs, the next unit's lookup) as functions of one type: an engine compiles
// a wrapper per distinct type of imported function in every module it compiles, whatever it is
// given at instantiation (V8 11: ~0.2 ms each, most of a small translation's compile).
describe("a translation's imports", () => {
  it("are functions of two types: the core's slow paths share one, the tail call through the table has its own", () => {
    const page = decodedPage(assemble("region", PROGRAM));
    const wasm = translatePage(page.view, page.slots, page.pages)!.wasm;
    const imports = functionImports(wasm);
    expect(imports.map((i) => i.name)).toEqual(["jitLoad", "jitStore", "jitExec", "jitChain", "jitGo"]);
    expect(new Set(imports.slice(0, 4).map((i) => i.type)).size).toBe(1);
    expect(imports[4].type).not.toBe(imports[0].type);
    expect(new Set(imports.map((i) => i.type)).size).toBe(2);
  });
});

// The functions a module imports, with their type's index (read from its import section).
function functionImports(wasm: Uint8Array): { name: string; type: number }[] {
  let p = 8;
  const u32 = () => {
    let v = 0, shift = 0, b: number;
    do { b = wasm[p++]; v |= (b & 0x7f) << shift; shift += 7; } while (b & 0x80);
    return v >>> 0;
  };
  const name = () => { const n = u32(); const s = new TextDecoder().decode(wasm.subarray(p, p + n)); p += n; return s; };
  while (p < wasm.length) {
    const id = wasm[p++], size = u32(), end = p + size;
    if (id === 2) {
      const out: { name: string; type: number }[] = [];
      for (let n = u32(); n > 0; n--) {
        name();
        const field = name(), kind = wasm[p++];
        if (kind === 0x00) out.push({ name: field, type: u32() });
        else if (kind === 0x02) { const flags = wasm[p++]; u32(); if (flags & 1) u32(); } // a memory's limits
        else throw new Error(`an import of kind ${kind}`);
      }
      return out;
    }
    p = end;
  }
  return [];
}
