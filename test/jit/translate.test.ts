// The translation spike (docs/TRANSLATION.md): bare-metal programs run with their code pages
// translated after every short step (so translated blocks run nearly all the code) must pass as
// they do interpreted, retiring the same instructions.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { VirtMachine } from "../../host/machine/virt";
import { loadCoreModule } from "../../host/platform/node/core";
import { PageTranslator } from "../../host/jit/translate";
import { buildBaremetal } from "../../guests/baremetal/build.mjs";

const built = (await buildBaremetal({ log: () => {}, defines: { "bench-int": { ITERS: 1 }, "bench-rvc": { ITERS: 1 } } })).programs as Record<string, string>;

function run(name: string, translate: boolean) {
  let output = "";
  const m = new VirtMachine({
    module: loadCoreModule(), memory: 64 << 20, bios: null,
    kernel: { name, bytes: new Uint8Array(readFileSync(built[name])) },
    output: (b) => { for (const c of b) output += String.fromCharCode(c); },
  });
  const tr = translate ? new PageTranslator(m.core) : null;
  const t0 = performance.now();
  for (;;) {
    const r = m.step(2000);
    if (r.state === "stopped") break;
    tr?.scan();
    if (performance.now() - t0 > 60_000) throw new Error(`${name} still runs after 60 s`);
  }
  return { output, instret: m.core.totalInstret(), stats: tr?.stats };
}

describe("translated code", () => {
  for (const name of ["rv64i", "rv64m", "rv64c", "bench-int", "bench-rvc"]) {
    it(`${name} passes translated as interpreted`, () => {
      const interpreted = run(name, false);
      const translated = run(name, true);
      expect(interpreted.output).toContain("PASS");
      expect(translated.output).toContain("PASS");
      // The bench programs print their timed ticks, whose formatting costs a varying count:
      // compare the timed region's instret there.
      const timed = (o: string) => /instret=(\d+)/.exec(o)?.[1];
      if (timed(interpreted.output)) expect(timed(translated.output)).toBe(timed(interpreted.output));
      else expect(translated.instret).toBe(interpreted.instret);
      expect(translated.stats!.blocks).toBeGreaterThan(10);
    }, 120_000);
  }
});
