// Every fuzz target runs briefly, coverage-guided, with no crash; every input a crash was once
// found with (fuzz/crashes/) runs clean now; the committed seed corpus is what the targets write.
// The long runs are `npm run fuzz` (fuzz/results/latest.json).
import { describe, test, expect, afterAll } from "vitest";
import { TARGETS } from "../../fuzz/targets/index";
import { BlockCoverage } from "../../fuzz/engine/coverage";
import { fuzz } from "../../fuzz/engine/fuzzer";
import { inputName, readInputs } from "../../fuzz/engine/corpus";

/** Inputs per target here: enough to get past the seeds into mutations, a few seconds at most. */
const ITERATIONS = 400;
const SECONDS = 4;

// One coverage session for the file, started before any target's code runs (V8 instruments
// blocks only in functions compiled after it started); each target forgets what the last one saw.
const coverage = new BlockCoverage();
const contexts = new Map<string, unknown>();
afterAll(async () => {
  for (const t of TARGETS) if (contexts.has(t.name)) await t.teardown?.(contexts.get(t.name));
  coverage.close();
});

async function ctxOf(t: (typeof TARGETS)[number]): Promise<unknown> {
  if (!contexts.has(t.name)) contexts.set(t.name, await t.setup());
  return contexts.get(t.name);
}

describe.each(TARGETS.map((t) => [t.name, t] as const))("fuzz target %s", (_name, target) => {
  test("replays its crash corpus clean, and its seed corpus is committed", async () => {
    const ctx = await ctxOf(target);
    for (const { name, input } of readInputs("crashes", target.name)) {
      try {
        await target.run(input, ctx);
      } catch (e) {
        if (!target.rejects(e)) throw new Error(`fuzz/crashes/${target.name}/${name} crashes again: ${e instanceof Error ? e.stack : String(e)}`);
      }
    }
    const committed = readInputs("corpus", target.name).map((f) => f.name).sort();
    expect(committed, "fuzz/corpus/ is out of date: npm run fuzz -- --write-seeds").toEqual(target.seeds().map((s) => `${inputName(s)}.bin`).sort());
  }, 60_000);

  test(`runs ${ITERATIONS} inputs coverage-guided without a crash`, async () => {
    const ctx = await ctxOf(target);
    coverage.forget();
    const stats = await fuzz(target, ctx, { iterations: ITERATIONS, seconds: SECONDS, seed: 7, coverage, timeLimitMs: 2000 });
    expect(stats.crashes.map((c) => `${c.kind}: ${c.signature}\n${c.message}`)).toEqual([]);
    expect(stats.iterations).toBeGreaterThan(target.seeds().length);
    // Blocks of the project's code were seen: the guidance works for this target.
    expect(stats.blocks).toBeGreaterThan(20);
  }, 60_000);
});
