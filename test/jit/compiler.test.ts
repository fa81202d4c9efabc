// The translation tier's compile thread (host/jit/compiler.ts, Node's dist/jit-worker.js): pages
// are translated and compiled there and installed on the guest's thread, which must yield to its
// event loop to receive them, as a pCPU does between steps.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { VirtMachine } from "../../host/machine/virt";
import { nodePlatform } from "../../host/platform/node";
import { buildBaremetal } from "../../guests/baremetal/build.mjs";

const built = (await buildBaremetal({ log: () => {}, defines: { "bench-int": { ITERS: 16 } } })).programs as Record<string, string>;
// At its full length (a second translated): long enough for a compile thread's optimizing compile to come back.
const long = (await buildBaremetal({ log: () => {} })).programs as Record<string, string>;

describe("the compile thread", () => {
  it("translates the hot pages of a program that runs on, mostly translated, with the right result", async () => {
    let output = "";
    const m = new VirtMachine({
      module: nodePlatform.coreModule(), memory: 64 << 20, bios: null,
      kernel: { name: "bench-int", bytes: new Uint8Array(readFileSync(built["bench-int"])) },
      jit: "on", jitCompiler: nodePlatform.jitCompiler!(),
      output: (b) => { for (const c of b) output += String.fromCharCode(c); },
    });
    for (let i = 0; ; i++) {
      const r = m.step();
      if (r.state === "stopped") {
        expect(r.reason).toMatchObject({ kind: "htif", code: 0 });
        break;
      }
      if (i % 4 === 3) await new Promise((resolve) => setImmediate(resolve)); // replies arrive
    }
    expect(output).toMatch(/PASS: bench-int/);
    const j = m.stats().jit!;
    expect(j.translations).toBeGreaterThan(0);
    expect(j.retired / m.core.totalInstret()).toBeGreaterThan(0.5); // (interpreted while the first page compiles)
    m.close();
  }, 120_000);

  it("a translation that fails is counted with its reason, and the program runs on interpreted", async () => {
    let output = "", asked = 0;
    const failing = { compile: () => { asked++; return Promise.reject(new Error("translation: a translator bug")); } };
    const m = new VirtMachine({
      module: nodePlatform.coreModule(), memory: 64 << 20, bios: null,
      kernel: { name: "bench-int", bytes: new Uint8Array(readFileSync(built["bench-int"])) },
      jit: "on", jitCompiler: failing,
      output: (b) => { for (const c of b) output += String.fromCharCode(c); },
    });
    for (let i = 0; ; i++) {
      const r = m.step();
      if (r.state === "stopped") break;
      if (i % 4 === 3) await new Promise((resolve) => setImmediate(resolve));
    }
    expect(output).toMatch(/PASS: bench-int/);
    const j = m.stats().jit!;
    expect(j.failures).toBe(asked);
    expect(j.failures).toBeGreaterThan(0);
    expect(j.lastFailure).toBe("translation: a translator bug");
    expect(j.translations).toBe(0);
    // A page that failed is asked for again only when hot again, a few times at most.
    expect(asked).toBeLessThan(20);
    m.close();
  }, 120_000);

  it("compiles a translation again for speed once it has run hot, and installs that one", async () => {
    let output = "";
    const thread = nodePlatform.jitCompiler!();
    expect(thread.tiers).toBe(true); // Node's compile thread picks V8's tier (v8-tiers.ts)
    const asked: boolean[] = [];
    const recording = { tiers: true, compile: (...a: Parameters<typeof thread.compile>) => { asked.push(a[3] === true); return thread.compile(...a); } };
    const m = new VirtMachine({
      module: nodePlatform.coreModule(), memory: 64 << 20, bios: null,
      kernel: { name: "bench-int", bytes: new Uint8Array(readFileSync(long["bench-int"])) },
      jit: "on", jitCompiler: recording,
      output: (b) => { for (const c of b) output += String.fromCharCode(c); },
    });
    for (let i = 0; ; i++) {
      const r = m.step();
      if (r.state === "stopped") break;
      if (i % 4 === 3) await new Promise((resolve) => setImmediate(resolve));
    }
    expect(output).toMatch(/PASS: bench-int/);
    const j = m.stats().jit!;
    // Each page first with the baseline compiler; the loop's page again, optimized.
    expect(asked[0]).toBe(false);
    expect(asked.filter(Boolean).length).toBeGreaterThan(0);
    expect(j.optimized).toBeGreaterThan(0);
    expect(j.optimized).toBeLessThanOrEqual(asked.filter(Boolean).length);
    expect(j.optimized).toBeLessThan(j.translations);
    m.close();
  }, 120_000);

  it("without a compile thread that picks tiers, nothing is asked for speed", async () => {
    const thread = nodePlatform.jitCompiler!();
    const asked: boolean[] = [];
    const plain = { compile: (...a: Parameters<typeof thread.compile>) => { asked.push(a[3] === true); return thread.compile(...a); } };
    const m = new VirtMachine({
      module: nodePlatform.coreModule(), memory: 64 << 20, bios: null,
      kernel: { name: "bench-int", bytes: new Uint8Array(readFileSync(long["bench-int"])) },
      jit: "on", jitCompiler: plain, output: () => {},
    });
    for (let i = 0; ; i++) {
      if (m.step().state === "stopped") break;
      if (i % 4 === 3) await new Promise((resolve) => setImmediate(resolve));
    }
    expect(asked.length).toBeGreaterThan(0);
    expect(asked.some(Boolean)).toBe(false);
    expect(m.stats().jit!.optimized).toBe(0);
    m.close();
  }, 120_000);

  it("answers a page with nothing to translate with nothing", async () => {
    expect(await nodePlatform.jitCompiler!().compile(new Uint8Array(16384), 1024)).toBeNull();
  });
});
