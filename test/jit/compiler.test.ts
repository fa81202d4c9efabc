// The translation tier's compile thread (host/jit/compiler.ts, Node's dist/jit-worker.js): pages
// are translated and compiled there and installed on the guest's thread, which takes them after
// a step (JitCompiler.poll) or when it yields to its event loop.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { VirtMachine } from "../../host/machine/virt";
import { nodePlatform } from "../../host/platform/node";
import { buildBaremetal } from "../../guests/baremetal/build.mjs";
import type { JitCompiler } from "../../host/jit/compiler";

const built = (await buildBaremetal({ log: () => {}, defines: { "bench-int": { ITERS: 16 } } })).programs as Record<string, string>;
// At its full length (a second translated): long enough for a compile thread's optimizing compile to come back.
const long = (await buildBaremetal({ log: () => {} })).programs as Record<string, string>;

/**
 * Run bench-int (`program`: its path) to its end with `jitCompiler`, yielding to the event loop
 * every few steps so that the compile thread's replies arrive, as a pCPU does between steps.
 */
async function runBenchInt(program: string, jitCompiler: JitCompiler, yields = true) {
  let output = "";
  const m = new VirtMachine({
    module: nodePlatform.coreModule(), memory: 64 << 20, bios: null,
    kernel: { name: "bench-int", bytes: new Uint8Array(readFileSync(program)) },
    jit: "on", jitCompiler,
    output: (b) => { for (const c of b) output += String.fromCharCode(c); },
  });
  for (let i = 0; ; i++) {
    const r = m.step();
    if (r.state === "stopped") {
      expect(r.reason).toMatchObject({ kind: "htif", code: 0 });
      break;
    }
    if (yields && i % 4 === 3) await new Promise((resolve) => setImmediate(resolve));
  }
  expect(output).toMatch(/PASS: bench-int/);
  const jit = m.stats().jit!, instret = m.core.totalInstret();
  m.close();
  return { jit, instret };
}

/** A compile thread whose asks are recorded: whether each asked for speed. */
function recording(thread: JitCompiler, tiers: boolean) {
  const optimize: boolean[] = [];
  const compiler: JitCompiler = { tiers, compile: (request, done) => { optimize.push(request.optimize === true); thread.compile(request, done); }, poll: () => thread.poll?.() };
  return { optimize, compiler };
}

describe("the compile thread", () => {
  it("translates the hot pages of a program that runs on, mostly translated, with the right result", async () => {
    const { jit, instret } = await runBenchInt(built["bench-int"]!, nodePlatform.jitCompiler!());
    expect(jit.translations).toBeGreaterThan(0);
    expect(jit.retired / instret).toBeGreaterThan(0.5); // (interpreted while the first page compiles)
  }, 120_000);

  it("a translation that fails is counted with its reason, and the program runs on interpreted", async () => {
    // Its answers come from poll(), as the Node compile thread's do: a compiler answering only on
    // the event loop is given up on when the loop has not turned for 50 ms (tier.ts), which a
    // loaded machine made happen between two of this loop's turns, and the failure went uncounted.
    let asked = 0;
    const answers: ((page: null, error: Error) => void)[] = [];
    const failing: JitCompiler = {
      compile: (_request, done) => { asked++; answers.push(done); },
      poll: () => { for (const done of answers.splice(0)) done(null, new Error("translation: a translator bug")); },
    };
    const { jit } = await runBenchInt(built["bench-int"]!, failing);
    expect(jit.failures).toBe(asked);
    expect(jit.failures).toBeGreaterThan(0);
    expect(jit.lastFailure).toBe("translation: a translator bug");
    expect(jit.translations).toBe(0);
    // A page that failed is asked for again only when hot again, a few times at most.
    expect(asked).toBeLessThan(20);
  }, 120_000);

  it("compiles a translation again for speed once it has run hot, and installs that one", async () => {
    const thread = nodePlatform.jitCompiler!();
    expect(thread.tiers).toBe(true); // Node's compile thread picks V8's tier (v8-tiers.ts)
    const r = recording(thread, true);
    const { jit } = await runBenchInt(long["bench-int"]!, r.compiler);
    // Each page first with the baseline compiler; the loop's page again, optimized.
    expect(r.optimize[0]).toBe(false);
    expect(r.optimize.filter(Boolean).length).toBeGreaterThan(0);
    expect(jit.optimized).toBeGreaterThan(0);
    expect(jit.optimized).toBeLessThanOrEqual(r.optimize.filter(Boolean).length);
    expect(jit.optimized).toBeLessThan(jit.translations);
  }, 120_000);

  it("without a compile thread that picks tiers, nothing is asked for speed", async () => {
    const r = recording(nodePlatform.jitCompiler!(), false);
    const { jit } = await runBenchInt(long["bench-int"]!, r.compiler);
    expect(r.optimize.length).toBeGreaterThan(0);
    expect(r.optimize.some(Boolean)).toBe(false);
    expect(jit.optimized).toBe(0);
  }, 120_000);

  it("hands an answer over from poll(), the event loop never turning (a pCPU turns it every 10 ms)", () => {
    const thread = nodePlatform.jitCompiler!();
    let answer: unknown = "none yet";
    thread.compile({ pages: [{ slots: new Uint8Array(16384) }], memoryPages: 1024 }, (page, err) => { answer = err ?? page; });
    const end = performance.now() + 20_000; // the thread may be starting
    while (answer === "none yet" && performance.now() < end) thread.poll!();
    expect(answer).toBeNull(); // nothing to translate, said at once
  });

  it("a caller that never yields still gets its translations from a compile thread it can poll, however long they take", async () => {
    // Every answer held back 100 ms and handed over by poll(): a tier that gave up on its compile
    // thread after 50 ms without a turn of the event loop (as it must with one it cannot poll)
    // translated on the guest's thread from then on, without asking.
    const thread = nodePlatform.jitCompiler!();
    const held: { due: number; hand: () => void }[] = [];
    let asked = 0, pages = 0;
    const slow: JitCompiler = {
      compile: (request, done) => {
        asked++;
        thread.compile(request, (page, err) => held.push({ due: performance.now() + 100, hand: () => { if (page) pages++; done(page, err); } }));
      },
      poll: () => {
        thread.poll!();
        const now = performance.now();
        for (let i = 0; i < held.length; i++) if (held[i]!.due <= now) held.splice(i--, 1)[0]!.hand();
      },
    };
    const { jit, instret } = await runBenchInt(long["bench-int"]!, slow, false);
    expect(asked).toBeGreaterThan(1);
    expect(jit.translations).toBe(pages); // every one from the compile thread
    expect(jit.retired / instret).toBeGreaterThan(0.5);
  }, 120_000);

  it("answers a page with nothing to translate with nothing", async () => {
    const page = await new Promise((resolve, reject) => nodePlatform.jitCompiler!().compile({ pages: [{ slots: new Uint8Array(16384) }], memoryPages: 1024 }, (p, err) => err ? reject(err) : resolve(p)));
    expect(page).toBeNull();
  });
});
