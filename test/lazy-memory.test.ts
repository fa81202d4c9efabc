// Lazy guest memory (Core.beginLazy): RAM pages that come from a page source on first touch, by
// a hart (the P2M calls the host before mapping an absent page) or by the host itself (every
// accessor brings in the pages of its range first). A snapshot restore and post-copy migration
// rest on it: here a machine is saved mid-run and a new one goes on from a copy of its RAM.
import { describe, test, expect, beforeAll } from "vitest";
import { readFileSync } from "node:fs";
import { buildBaremetal } from "../guests/baremetal/build.mjs";
import { VirtMachine, type VirtConfig } from "../host/machine/virt";
import { parseElf } from "../host/machine/elf";
import { Core, LazyPageError, TOUCH_RECORD_PAGES, PAGING_MODES, type PageSource, type Paging } from "../host/core/core";
import { loadCoreModule } from "../host/platform/node/core";
import { MemoryDisk } from "../host/platform/memory/disk";
import { runToStop } from "./board";
import { machine, enter, PageTables, PTE, RWX, AD, RAM, PRV_S, L } from "./cpu/harness";

const PAGE = 4096;
const pageOf = (gpa: number) => Math.floor((gpa - RAM) / PAGE);

/** A page source serving `ram` (a copy of guest RAM), recording the pages it served in order. */
function servedFrom(ram: Uint8Array): { source: PageSource; served: number[] } {
  const served: number[] = [];
  const source: PageSource = (page, dst) => {
    served.push(page);
    dst.set(ram.subarray(page * PAGE, (page + 1) * PAGE));
  };
  return { source, served };
}

/**
 * Take `core`'s RAM away as a snapshot restore into a fresh memory would find it: copied out, then
 * zeroed behind the Core's back (raw, not through an accessor), then lazy mode sourcing the copy.
 */
function goLazy(core: Core): { copy: Uint8Array; served: number[] } {
  const copy = core.ram.slice();
  core.ram.fill(0);
  const { source, served } = servedFrom(copy);
  core.beginLazy(source);
  return { copy, served };
}

const lazyFlag = (core: Core) => core.view.getInt32(L.VM_LAZY, true);

describe.each(PAGING_MODES)("a hart's first touch (%s paging)", (paging) => {
  test("brings each page in once, in the order touched; untouched pages never come", () => {
    const m = machine(`
      li t0, ${RAM + 5 * PAGE}
      ld a0, 8(t0)
      li t1, ${RAM + 1 * PAGE}
      sd a0, 16(t1)
      ld a1, 16(t1)
      li t2, ${RAM + 3 * PAGE}
      li t3, 5
      amoadd.d a2, t3, (t2)
      ld a3, 0(t2)
      lr.d a4, (t1)
      addi a4, a4, 1
      sc.d a5, a4, (t1)
      ld a6, 0(t1)
      j done
    `, { ramSize: 1 << 20, paging });
    m.w64(RAM + 5 * PAGE + 8, 0x1234_5678_9abc_def0n);
    m.w64(RAM + 3 * PAGE, 100);
    m.w64(RAM + 1 * PAGE, 7);
    const { served } = goLazy(m.core);
    expect(m.core.lazy).toBe(true);
    expect(lazyFlag(m.core)).toBe(1);
    expect(m.core.lazyPending()).toBe(256);

    m.runDone();
    expect(m.x("a0")).toBe(0x1234_5678_9abc_def0n);
    expect(m.x("a1")).toBe(0x1234_5678_9abc_def0n);
    expect(m.x("a2")).toBe(100n); // the AMO saw the page's content
    expect(m.x("a3")).toBe(105n);
    expect(m.x("a5")).toBe(0n); // the SC succeeded on the page the LR brought in
    expect(m.x("a6")).toBe(8n);
    expect(served).toEqual([0, 5, 1, 3]); // the code page, then the data in program order
    expect(m.core.touchOrder()).toEqual([0, 5, 1, 3]);
    expect(m.core.lazyPending()).toBe(252);
    expect(m.core.lazy).toBe(true);
  });

  test("ends lazy mode when it brings in the last absent page: the flag clears", () => {
    const m = machine(`
      li t0, ${RAM + 2 * PAGE}
      ld a0, 0(t0)
      j done
    `, { ramSize: 1 << 20, paging });
    m.w64(RAM + 2 * PAGE, 5);
    const copy = m.core.ram.slice();
    const present = new Uint32Array(8).fill(0xffff_ffff);
    present[0] = ~0b101; // the code page and the data page are absent
    const { source, served } = servedFrom(copy);
    m.core.beginLazy(source, { present });
    expect(lazyFlag(m.core)).toBe(1);
    m.runDone();
    expect(m.x("a0")).toBe(5n);
    expect(served).toEqual([0, 2]);
    expect(m.core.lazy).toBe(false);
    expect(lazyFlag(m.core)).toBe(0);
  });

  test("brings in the guest's page tables for the walker, and shadow paging protects them after", () => {
    // S-mode reads through 4 KiB pages, writes a leaf PTE (a protected table under shadow
    // paging), reads through the new mapping, and stores through a leaf without A/D (the
    // walker's own write to a table page).
    const POOL = RAM + 0x40000, DATA = RAM + 0x20000, VA = 0x4000_0000;
    const m = machine(null, { ramSize: 1 << 20, paging });
    const pt = new PageTables(m, "sv39", POOL);
    pt.map(RAM, RAM, PTE.V | RWX | AD, 2);
    for (let i = 0; i < 4; i++) {
      pt.map(VA + i * PAGE, DATA + i * PAGE, PTE.V | PTE.R | PTE.W | (i === 3 ? 0n : AD));
      m.w64(DATA + i * PAGE, 0x100 + i);
    }
    const leaf1 = pt.pteAddr(VA + PAGE);
    m.load(`
      li t0, ${pt.satp()}
      csrw satp, t0
      ${enter(PRV_S, "body")}
    body:
      li t0, ${VA}
      ld a0, 0(t0)
      li t5, ${VA + PAGE}
      ld a1, 0(t5)
      li t1, ${leaf1}
      li t2, ${(BigInt(DATA + 2 * PAGE) >> 12n << 10n) | PTE.V | PTE.R | PTE.W | AD}
      sd t2, 0(t1)
      sfence.vma
      ld a2, 0(t5)
      li t3, ${VA + 3 * PAGE}
      li t4, 77
      sd t4, 8(t3)
      j done
    `);
    const { served } = goLazy(m.core);
    const before = m.core.pagingStats();
    m.runDone();
    expect([m.x("a0"), m.x("a1"), m.x("a2")]).toEqual([0x100n, 0x101n, 0x102n]);
    expect(m.r64(DATA + 3 * PAGE + 8)).toBe(77n);
    expect(m.r64(pt.pteAddr(VA + 3 * PAGE)) & AD).toBe(AD); // the walker's A/D update landed
    // Code, the three table pages, and the data pages reached (the one remapped away is not).
    const tables = [0, 1, 2].map((i) => pageOf(POOL) + i);
    expect(new Set(served)).toEqual(new Set([0, ...tables, ...[0, 1, 2, 3].map((i) => pageOf(DATA) + i)]));
    expect(served.indexOf(tables[0]!)).toBeLessThan(served.indexOf(pageOf(DATA))); // the walk came first
    if (paging === "shadow") expect(m.core.pagingStats().ptWriteTraps - before.ptWriteTraps).toBeGreaterThan(0);
  });

  test("a restore over a VM that ran: no mapping made before beginLazy reaches an absent page", () => {
    // The first run leaves TLB entries, P2M leaves, decoded code and (shadow paging) shadow
    // leaves for every page it used; after beginLazy each must come from the source again.
    const POOL = RAM + 0x40000, DATA = RAM + 0x20000, VA = 0x4000_0000;
    const m = machine(null, { ramSize: 1 << 20, paging });
    const pt = new PageTables(m, "sv39", POOL);
    pt.map(RAM, RAM, PTE.V | RWX | AD, 2);
    pt.map(VA, DATA, PTE.V | PTE.R | PTE.W | AD);
    m.w64(DATA, 0x100);
    m.load(`
      li t0, ${pt.satp()}
      csrw satp, t0
      ${enter(PRV_S, "body")}
    body:
      li t0, ${VA}
      ld a0, 0(t0)
      sd a0, 8(t0)
    imm:
      addi a1, zero, 1
      j done
    `);
    m.runDone();
    expect([m.x("a0"), m.x("a1")]).toEqual([0x100n, 1n]);
    // What the snapshot says: other data, and other code (decoded code must not survive).
    const copy = m.core.ram.slice();
    const snap = new DataView(copy.buffer);
    snap.setBigUint64(DATA - RAM, 0x200n, true);
    const addi = (imm: number) => (imm << 20) | (11 << 7) | 0x13; // addi a1, zero, imm
    expect(snap.getUint32(m.label("imm") - RAM, true)).toBe(addi(1));
    snap.setUint32(m.label("imm") - RAM, addi(2), true);
    m.core.ram.fill(0);
    const { source, served } = servedFrom(copy);
    m.core.beginLazy(source);
    m.core.setPc(0, m.label("body"));
    m.runDone();
    expect([m.x("a0"), m.x("a1")]).toEqual([0x200n, 2n]);
    expect(m.r64(DATA + 8)).toBe(0x200n);
    expect(new Set(served)).toEqual(new Set([0, 0x40, 0x41, 0x42, 0x20]));
  });

  test("a source that throws fails the run with the page named, and the VM cannot run again", () => {
    const m = machine(`
      li t0, ${RAM + 9 * PAGE}
      li a0, 1
      ld a0, 0(t0)
      j done
    `, { ramSize: 1 << 20, paging });
    m.w64(RAM + 9 * PAGE, 42);
    const copy = m.core.ram.slice();
    m.core.ram.fill(0);
    // A failure the first time only: even so, the run it broke cannot be taken up again.
    const corrupt = new Error("page 9 of the snapshot fails its checksum");
    let failed = false;
    const served: number[] = [];
    m.core.beginLazy((page, dst) => {
      if (page === 9 && !failed) {
        failed = true;
        throw corrupt;
      }
      served.push(page);
      dst.set(copy.subarray(page * PAGE, (page + 1) * PAGE));
    });
    let err: unknown;
    try {
      m.core.run(0, 1000);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LazyPageError);
    expect((err as LazyPageError).ramPage).toBe(9);
    expect((err as LazyPageError).cause).toBe(corrupt);
    expect((err as Error).message).toBe(`lazy memory: RAM page 9 (guest-physical 0x80009000) could not be brought in: ${corrupt.message}`);
    expect(served).toEqual([0]);
    expect(m.core.lazyPending()).toBe(255); // page 9 is still absent
    expect(m.x("a0")).toBe(1n); // the load never completed
    const again = (f: () => void) => {
      try {
        f();
      } catch (e) {
        return e;
      }
      return null;
    };
    expect(again(() => m.core.run(0, 1000))).toBe(err); // the harts stopped half-way: never again
    expect(again(() => m.core.beginLazy(() => {}))).toBe(err);
    expect(served).toEqual([0]);
    // The host can still read the VM's memory (a failed VM is kept for inspection): the page
    // that failed is asked for again.
    expect(m.core.ramRead(RAM + 9 * PAGE, 8)).toEqual(copy.subarray(9 * PAGE, 9 * PAGE + 8));
    expect(served).toEqual([0, 9]);
    expect(m.core.lazyPending()).toBe(254);
  });
});

describe("host accessors in lazy mode", () => {
  function lazyCore(ramSize = 1 << 20): { core: Core; copy: Uint8Array; served: number[] } {
    const core = new Core({ module: loadCoreModule(), ramSize });
    for (let i = 0; i < ramSize; i += 8) core.ram[i] = (i >> 12) + 1; // every page its own marks
    return { core, ...goLazy(core) };
  }

  test("bring in the absent pages of their range before handing out a view", () => {
    const { core, copy, served } = lazyCore();
    expect(core.physRead(RAM + 2 * PAGE + 100, 10)).toEqual(copy.subarray(2 * PAGE + 100, 2 * PAGE + 110));
    expect(served).toEqual([2]);
    // A write that covers part of two pages: what it does not cover keeps the pages' content.
    core.ramView(RAM + 3 * PAGE + 4000, 200)!.fill(0xee);
    expect(served).toEqual([2, 3, 4]);
    expect(core.ramRead(RAM + 3 * PAGE, PAGE)!.subarray(0, 4000)).toEqual(copy.subarray(3 * PAGE, 3 * PAGE + 4000));
    expect(core.ramRead(RAM + 4 * PAGE + 104, 8)).toEqual(copy.subarray(4 * PAGE + 104, 4 * PAGE + 112));
    expect(core.ramRead(RAM + 4 * PAGE, 104)!.every((b) => b === 0xee)).toBe(true);
    core.phys(RAM + 7 * PAGE, PAGE)!.set(copy.subarray(0, PAGE));
    core.writePhys64(RAM + 8 * PAGE + 8, 5n);
    expect(core.ramRead(RAM + 8 * PAGE, 1)![0]).toBe(9); // the doubleword's page kept its marks
    expect(served).toEqual([2, 3, 4, 7, 8]);
    // The boot ROM is never absent, an empty range touches nothing, a range outside RAM is null.
    core.phys(L.ROM_GPA, 64);
    core.ramRead(RAM + 20 * PAGE, 0);
    expect(core.ramView(RAM + (1 << 20) - 8, 16)).toBeNull();
    expect(served).toEqual([2, 3, 4, 7, 8]);
    expect(core.touchOrder()).toEqual([2, 3, 4, 7, 8]);
    expect(core.lazyPending()).toBe(256 - 5);
  });

  test("a hart finds the page a host write brought in, with the write in it", () => {
    const m = machine(`
      li t0, ${RAM + 6 * PAGE}
      ld a0, 0(t0)
      ld a1, 8(t0)
      j done
    `, { ramSize: 1 << 20 });
    m.w64(RAM + 6 * PAGE + 8, 99);
    const { served } = goLazy(m.core);
    m.w64(RAM + 6 * PAGE, 11); // the host writes first (DMA)
    m.runDone();
    expect([m.x("a0"), m.x("a1")]).toEqual([11n, 99n]);
    expect(served).toEqual([6, 0]);
  });

  test("prefetch and fetchAll fill without touching; lazy mode ends with the last page, the flag cleared", () => {
    const { core, copy, served } = lazyCore();
    expect(core.prefetch([5, 5, 7])).toBe(2);
    expect(() => core.prefetch([256])).toThrow(RangeError);
    expect(core.ramRead(RAM + 5 * PAGE, 8)).toEqual(copy.subarray(5 * PAGE, 5 * PAGE + 8));
    expect(core.ramRead(RAM + 9 * PAGE, 8)).toEqual(copy.subarray(9 * PAGE, 9 * PAGE + 8));
    expect(served).toEqual([5, 7, 9]);
    expect(core.touchOrder()).toEqual([9]); // only the accessor's page was a touch
    expect(core.fetchAll()).toBe(253);
    expect(core.lazyPending()).toBe(0);
    expect(core.lazy).toBe(false);
    expect(lazyFlag(core)).toBe(0);
    expect(Buffer.compare(core.ram, copy)).toBe(0);
    expect(core.fetchAll()).toBe(0);
    core.ramRead(RAM, 256 * PAGE);
    expect(served.length).toBe(256); // each page came once
  });

  test("pages marked present never come from the source; all present means no lazy mode", () => {
    const core = new Core({ module: loadCoreModule(), ramSize: 1 << 20 });
    const present = new Uint32Array(8).fill(0xffff_ffff);
    present[0] = 0xffff_fff7; // all but page 3
    const served: number[] = [];
    core.beginLazy((page) => { served.push(page); }, { present });
    expect(core.lazyPending()).toBe(1);
    core.ramRead(RAM, 1 << 20);
    expect(served).toEqual([3]);
    expect(core.lazy).toBe(false);
    core.beginLazy(() => { throw new Error("never called"); }, { present: present.fill(0xffff_ffff) });
    expect(core.lazy).toBe(false);
    expect(lazyFlag(core)).toBe(0);
    expect(() => core.beginLazy(() => {}, { present: [0] })).toThrow("present-page bitmap: 256 RAM pages need 8 words, not 1");
  });

  test("the touch record keeps the first TOUCH_RECORD_PAGES touches", () => {
    const pages = TOUCH_RECORD_PAGES + 256;
    const core = new Core({ module: loadCoreModule(), ramSize: pages * PAGE });
    let calls = 0;
    core.beginLazy(() => { calls++; });
    core.ramRead(RAM + 100 * PAGE, (pages - 100) * PAGE);
    core.ramRead(RAM, 100 * PAGE);
    const order = core.touchOrder();
    expect(calls).toBe(pages);
    expect(order.length).toBe(TOUCH_RECORD_PAGES);
    expect(order.slice(0, 3)).toEqual([100, 101, 102]);
    expect(order.at(-1)).toBe(100 + TOUCH_RECORD_PAGES - 1);
    expect(core.lazy).toBe(false);
  });

  test("clearing RAM (reboot) ends lazy mode without asking the source", () => {
    const { core, served } = lazyCore();
    core.clearRam();
    expect(core.lazy).toBe(false);
    expect(core.lazyPending()).toBe(0);
    expect(core.ramRead(RAM, 1 << 20)!.every((b) => b === 0)).toBe(true);
    expect(served).toEqual([]);
  });

  test("a memory with absent pages cannot be attached elsewhere: its source stays behind", () => {
    const { core } = lazyCore();
    expect(() => new Core({ module: loadCoreModule(), ramSize: 1 << 20, memory: core.memory }))
      .toThrow(/absent pages.*fetchAll\(\)/);
    core.fetchAll();
    expect(() => new Core({ module: loadCoreModule(), ramSize: 1 << 20, memory: core.memory })).not.toThrow();
  });
});

// ---- a C guest saved mid-run and resumed from lazily supplied RAM ----

let lazyElf: Uint8Array;
beforeAll(async () => {
  const { programs } = await buildBaremetal();
  lazyElf = new Uint8Array(readFileSync(programs.lazy));
}, 300_000);

const MEMORY = 64 << 20;

/** A disk whose sector 1 holds byte i = 255 - (i & 0xff), as the guest expects. */
function disk(): MemoryDisk {
  const image = new Uint8Array(1 << 20);
  for (let i = 0; i < 512; i++) image[512 + i] = 255 - (i & 0xff);
  return new MemoryDisk(image);
}

function config(paging: Paging, out: { text: string }): VirtConfig {
  return {
    module: loadCoreModule(), memory: MEMORY, paging, bios: null, kernel: { name: "lazy", bytes: lazyElf },
    drives: [{ backend: disk() }], output: (b) => { out.text += Buffer.from(b).toString("latin1"); },
  };
}

/** Step `m` until its output has `text`, in small steps so it stops soon after. */
function stepUntil(m: VirtMachine, out: { text: string }, text: string, budget = 2_000): void {
  while (!out.text.includes(text)) expect(m.step(budget).state).not.toBe("stopped");
}

/**
 * Run the lazy test program until it has filled its DMA page, stopping before it starts the
 * disk request (in small steps: a step runs on past the UART's last write until its budget is
 * spent); the virtqueue's used index shows that the request has not been served.
 */
function stepToFilled(a: VirtMachine, out: { text: string }): void {
  stepUntil(a, out, "filled\n", 50);
  const used = Number(parseElf(lazyElf).symbols.get("used")) - RAM;
  expect(a.core.ram[used + 2] | (a.core.ram[used + 3] << 8), "the disk request was served before the snapshot").toBe(0);
}

/**
 * What a snapshot restore does: a new VM memory gets what lies below RAM (the VM block, the boot
 * ROM, the harts) and the machine's state; RAM comes from `source` page by page. The P2M, the
 * shadow MMU and the tables past RAM start empty in the new memory.
 */
function restoreLazily(a: VirtMachine, cfg: VirtConfig, source: PageSource): VirtMachine {
  const state = JSON.parse(JSON.stringify(a.save()));
  const bytes = a.core.memory.buffer.byteLength;
  const memory = new WebAssembly.Memory({ initial: bytes / 65536, maximum: bytes / 65536, shared: true });
  new Uint8Array(memory.buffer).set(new Uint8Array(a.core.memory.buffer, 0, L.RAM_HOST));
  const b = new VirtMachine({ ...cfg, resume: { memory, state } });
  b.core.beginLazy(source);
  return b;
}

/** Whether `m`'s core is inside run() now (a page brought in otherwise is the host's doing). */
function watchRuns(m: VirtMachine): () => boolean {
  let inRun = false;
  const run = m.core.run.bind(m.core);
  m.core.run = (hart, budget) => {
    inRun = true;
    try {
      return run(hart, budget);
    } finally {
      inRun = false;
    }
  };
  return () => inRun;
}

describe.each(PAGING_MODES)("a guest resumed from lazily supplied RAM (%s paging)", (paging) => {
  let expected: string;
  let expectedRam: Uint8Array;
  beforeAll(() => {
    const out = { text: "" };
    const m = new VirtMachine(config(paging, out));
    expect(runToStop(m, 60)).toEqual({ kind: "htif", code: 0 });
    expected = out.text;
    expectedRam = m.core.ram.slice();
    expect(expected).toMatch(/^filled\ndma ok\nchecksum=0x[0-9a-f]+\nPASS: lazy/);
  }, 120_000);

  for (const [when, marker, extraSteps] of [["after it filled its buffer", "filled\n", 0], ["in the middle of its checksum", "dma ok\n", 40]] as const) {
    test(`ends as an uninterrupted run does, saved ${when}`, () => {
      const before = { text: "" };
      const cfg = config(paging, before);
      const a = new VirtMachine(cfg);
      stepUntil(a, before, marker);
      for (let i = 0; i < extraSteps; i++) a.step(50_000);
      const copy = a.core.ram.slice();
      const { source, served } = servedFrom(copy);
      const after = { text: "" };
      const b = restoreLazily(a, config(paging, after), source);
      expect(runToStop(b, 60)).toEqual({ kind: "htif", code: 0 });
      expect(before.text + after.text).toBe(expected);

      // Only what the guest touched came in, each page once, in the order recorded.
      const imageEnd = a.layout.kernel!.end;
      expect(served.length).toBeGreaterThan(0);
      expect(new Set(served).size).toBe(served.length);
      expect(Math.max(...served)).toBeLessThan(Math.ceil((imageEnd - RAM) / PAGE));
      expect(b.core.touchOrder()).toEqual(served);
      expect(b.core.lazyPending()).toBe(MEMORY / PAGE - served.length);
      expect(lazyFlag(b.core)).toBe(1);
      // Saving completes the memory (a moved VM's page source cannot follow it); lazy mode ends.
      b.save();
      expect(b.core.lazyPending()).toBe(0);
      expect(lazyFlag(b.core)).toBe(0);
      // And the memory is what an uninterrupted run leaves, byte for byte.
      expect(Buffer.compare(b.core.ram, expectedRam)).toBe(0);
    }, 120_000);
  }

  test("virtio DMA into an absent page brings it in first (the guest checks the page)", () => {
    const before = { text: "" };
    const a = new VirtMachine(config(paging, before));
    stepToFilled(a, before);
    const copy = a.core.ram.slice();
    const dmaPage = pageOf(Number(parseElf(lazyElf).symbols.get("dma_page")));
    // Which pages came in while no hart ran: the device's DMA.
    const fromHost: number[] = [];
    const { source } = servedFrom(copy);
    const after = { text: "" };
    let inRun = () => false;
    const b = restoreLazily(a, config(paging, after), (page, dst) => {
      if (!inRun()) fromHost.push(page);
      source(page, dst);
    });
    inRun = watchRuns(b);
    expect(runToStop(b, 60)).toEqual({ kind: "htif", code: 0 });
    expect(after.text).toMatch(/^dma ok\n/);
    expect(fromHost).toContain(dmaPage);
  }, 120_000);

  test("a source failing under a device's DMA fails the VM, though the device caught the error", () => {
    const before = { text: "" };
    const a = new VirtMachine(config(paging, before));
    stepToFilled(a, before);
    const copy = a.core.ram.slice();
    const dmaPage = pageOf(Number(parseElf(lazyElf).symbols.get("dma_page")));
    const { source } = servedFrom(copy);
    const after = { text: "" };
    let inRun = () => false;
    const b = restoreLazily(a, config(paging, after), (page, dst) => {
      if (page === dmaPage && !inRun()) throw new Error("snapshot stream cut");
      source(page, dst);
    });
    inRun = watchRuns(b);
    let err: unknown;
    try {
      for (let i = 0; i < 10_000; i++) b.step(2_000);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LazyPageError);
    expect((err as LazyPageError).ramPage).toBe(dmaPage);
    expect(after.text).not.toMatch(/dma ok/);
    expect(() => b.step(2_000)).toThrow(LazyPageError);
  }, 120_000);
});
