// The translation spike's measurement (docs/TRANSLATION.md): a bare-metal program run to its end
// on the interpreter and with host/jit/translate.ts, in turns; checks both print PASS.
//   npx vite-node bench/jit-spike.ts -- [--iters N] [--runs N] [--programs bench-int,bench-rvc]
//     [--step N]   work per VirtMachine.step() (the translator scans the code cache after each)
import { readFileSync } from "node:fs";
import { VirtMachine } from "../host/machine/virt";
import { loadCoreModule } from "../host/platform/node/core";
import { PageTranslator } from "../host/jit/translate";
import { median } from "../host/util/stats";
import { buildBaremetal } from "../guests/baremetal/build.mjs";

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const iters = Number(opt("iters", "10"));
const runs = Number(opt("runs", "3"));
const step = Number(opt("step", "2000000"));
const programs = opt("programs", "bench-int,bench-rvc,bench-branch,bench-mem").split(",");

const defines = Object.fromEntries(programs.map((p) => [p, { ITERS: iters }]));
const built = (await buildBaremetal({ log: () => {}, defines })).programs as Record<string, string>;
const module = loadCoreModule();

function runOnce(elf: string, jit: boolean) {
  let output = "";
  const m = new VirtMachine({
    module, memory: 64 << 20, bios: null,
    kernel: { name: elf, bytes: new Uint8Array(readFileSync(elf)) },
    output: (b) => { for (const c of b) output += String.fromCharCode(c); },
  });
  const tr = jit ? new PageTranslator(m.core) : null;
  const t0 = performance.now();
  for (;;) {
    const r = m.step(step);
    if (r.state === "stopped") break;
    if (performance.now() - t0 > 120_000) throw new Error(`${elf} (${jit ? "jit" : "interpreter"}) still runs after 120 s, pc 0x${m.core.pc(0).toString(16)}:\n${output}`);
    tr?.scan();
  }
  const seconds = (performance.now() - t0) / 1000;
  if (!output.includes("PASS")) throw new Error(`${elf} (${jit ? "jit" : "interpreter"}) failed:\n${output}`);
  return { seconds, instructions: m.core.totalInstret(), stats: tr?.stats, output };
}

for (const p of programs) {
  const elf = built[p];
  const interp: number[] = [], jit: number[] = [];
  let instr = 0;
  let stats;
  for (let i = 0; i < runs; i++) {
    const a = runOnce(elf, false);
    const b = runOnce(elf, true);
    // The timed region's count (the whole run's differs with the ticks printf prints).
    const timed = (o: string) => /instret=(\d+)/.exec(o)?.[1];
    if (timed(a.output) !== timed(b.output)) throw new Error(`${p}: ${a.instructions} instructions interpreted, ${b.instructions} with translation\n${a.output}\n${b.output}`);
    interp.push(a.seconds);
    jit.push(b.seconds);
    instr = a.instructions;
    stats = b.stats;
  }
  const mi = instr / median(interp) / 1e6, mj = instr / median(jit) / 1e6;
  console.log(`${p.padEnd(13)} ${(instr / 1e6).toFixed(1)} M instr  interpreter ${mi.toFixed(0)} MIPS  translated ${mj.toFixed(0)} MIPS  ×${(mj / mi).toFixed(2)}` +
    `   (${stats!.pages} pages, ${stats!.blocks} blocks, ${stats!.instructions} instr, ${(stats!.wasmBytes / 1024).toFixed(1)} KiB wasm, ${stats!.compileMs.toFixed(1)} ms compile)`);
}
