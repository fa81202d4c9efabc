// The translation tier (docs/TRANSLATION.md): every bare-metal test program, and the integer
// bench programs, run with every cached page translated as soon as it has run (jit "all") must
// pass as they do interpreted, retiring the same instructions, with most of them retired by
// translated code.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { runBareMetal } from "../board";
import { loadCoreModule } from "../../host/platform/node/core";
import { buildBaremetal, PROGRAM_NAMES, HARNESS_PROGRAMS } from "../../guests/baremetal/build.mjs";
import type { JitMode } from "../../host/jit/tier";

const BENCH = ["bench-int", "bench-rvc", "bench-branch", "bench-mem", "bench-calls"];
const built = (await buildBaremetal({ log: () => {}, defines: Object.fromEntries(BENCH.map((b) => [b, { ITERS: 1 }])) })).programs as Record<string, string>;
/** Programs that wait for the timer: how many instructions they retire depends on the host's speed. */
const WALL_CLOCK = new Set(["irq"]);
const TESTS = PROGRAM_NAMES.filter((n: string) => !n.startsWith("bench-") && !HARNESS_PROGRAMS.includes(n));

function run(name: string, jit: JitMode) {
  const r = runBareMetal(loadCoreModule(), { name, bytes: new Uint8Array(readFileSync(built[name])) }, { jit });
  return { ...r, jit: r.machine.stats().jit };
}

describe("translated code runs as interpreted code", () => {
  for (const name of [...TESTS, ...BENCH]) {
    it(name, () => {
      const interpreted = run(name, "off");
      const translated = run(name, "all");
      expect(interpreted.output).toMatch(/PASS/);
      expect(translated.output).toMatch(/PASS/);
      if (!name.startsWith("bench-")) expect(translated.output).toBe(interpreted.output); // the bench's print times
      expect(translated.reason).toEqual(interpreted.reason);
      // The bench programs print their timed ticks, whose formatting costs a varying count:
      // compare the timed region's count there, the whole run's elsewhere.
      const timed = (o: string) => /instret=(\d+)/.exec(o)?.[1];
      if (timed(interpreted.output)) expect(timed(translated.output)).toBe(timed(interpreted.output));
      else if (!WALL_CLOCK.has(name)) expect(translated.instructions).toBe(interpreted.instructions);
      expect(translated.jit!.translations).toBeGreaterThan(0);
      // One iteration of a bench program is short beside its set-up (printing, checking), part
      // of which runs only once, interpreted; still, translated code retires much of it.
      if (name.startsWith("bench-")) expect(translated.jit!.retired / translated.instructions).toBeGreaterThan(0.35);
    }, 120_000);
  }
});
