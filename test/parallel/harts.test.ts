// Harts of one VM running at the same time on two threads over its one memory (issue 16's
// parallel vCPUs, the core's part): each thread has its own Core and decoded-code cache, and
// atomics, LR/SC, fences and first touches of memory must work across them. Both harts run the
// same program of four shared counters, each incremented a different way; the totals must be
// exact, interpreted and with every page translated; and the store-buffering litmus test (which
// shows tens to hundreds of times in 20,000 rounds when fences are taken out, in most runs: a
// statistical check) must never show. Each thread
// naps briefly after each run() so that the two also take turns on one shared core.
import { beforeAll, describe, expect, it } from "vitest";
import { Worker } from "node:worker_threads";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { Core } from "../../host/core/core";
import { TranslationTier, type JitMode } from "../../host/jit/tier";
import { loadCoreModule } from "../../host/platform/node/core";
import * as L from "../../host/core/layout";
import { assemble } from "../jit/asm";

const ITERATIONS = 5_000;
const ROUNDS = 20_000;
const PATCH_ROUNDS = 200;
const RAM = 16 << 20;
const SHARED = Number(L.RAM_GPA) + (1 << 20);
let worker = "";
const nap = new Int32Array(new SharedArrayBuffer(4));
/** A run() is about 50 µs of guest work; the nap after it lets the other thread in on a shared core. */
const RUN_BUDGET = 10_000, NAP_MS = 0.02;

// Counters at SHARED (a page of their own): A by amoadd; B by an LR/SC loop; C under a ticket lock
// (amoadd for the ticket, plain loads and stores inside); D under Peterson's lock, which needs
// its full fence (a store then a load of the other hart's flag) to exclude.
const PROGRAM = `
  csrr a0, mhartid
  xori a1, a0, 1         # the other hart
  li s0, ${SHARED}
  addi s2, s0, 4
  addi s3, s0, 8
  li s1, ${ITERATIONS}
loop:
  li t0, 1
  amoadd.w zero, t0, (s0)
1:
  lr.w t1, (s2)
  addi t1, t1, 1
  sc.w t2, t1, (s2)
  bnez t2, 1b
  li t0, 1
  amoadd.w t3, t0, (s3)   # my ticket
2:
  lw t4, 12(s0)           # now serving
  fence r, rw
  bne t4, t3, 2b
  ld t5, 16(s0)
  addi t5, t5, 1
  sd t5, 16(s0)
  fence rw, w
  addi t4, t4, 1
  sw t4, 12(s0)
  slli t0, a0, 2          # Peterson: flag[me] = 1, turn = other
  add t0, t0, s0
  li t1, 1
  sw t1, 32(t0)
  sw a1, 40(s0)
  fence rw, rw
3:
  slli t2, a1, 2
  add t2, t2, s0
  lw t3, 32(t2)           # flag[other]
  beqz t3, 4f
  lw t3, 40(s0)           # turn
  beq t3, a1, 3b
4:
  ld t5, 24(s0)
  addi t5, t5, 1
  sd t5, 24(s0)
  fence rw, w
  sw zero, 32(t0)         # flag[me] = 0
  addi s1, s1, -1
  bnez s1, loop
  # Store buffering, the litmus test: in round i each hart stores i to its word, fences, and
  # loads the other's; that both load the value from before round i is what the fence forbids.
  # A barrier (amoadd, then wait for both) starts each round; a byte per hart per round says
  # whether it saw the old value.
  li s1, 0
  li s4, ${SHARED + 4096}
  li s5, ${ROUNDS}
  addi s6, s0, 48          # the barrier
sb:
  li t0, 1
  amoadd.w zero, t0, (s6)
  addi t1, s1, 1
  slli t1, t1, 1           # both harts arrived at round s1
6:
  lw t2, 0(s6)
  blt t2, t1, 6b
  slli t0, a0, 3
  add t0, t0, s0
  addi t3, s1, 1
  sd t3, 56(t0)            # x[me] = round + 1 (words at 56 and 64)
  fence rw, rw
  slli t2, a1, 3
  add t2, t2, s0
  ld t4, 56(t2)            # x[other]
  sltu t4, t4, t3          # older than this round?
  slli t5, s1, 1
  add t5, t5, s4
  add t5, t5, a0
  sb t4, 0(t5)
  addi s1, s1, 1
  bne s1, s5, sb
  # Code one hart writes and the other runs: in round r hart 0 rewrites patched's addi to add r,
  # then bumps the generation; hart 1 waits for it, runs fence.i and calls patched (a2 += r), then
  # acknowledges. Hart 1's code cache and translations are its thread's own: fence.i must drop
  # them there.
  li s1, 1
  li s5, ${PATCH_ROUNDS + 1}
  la s7, patched
  li a2, 0
patch:
  bnez a0, 8f
  slli t0, s1, 20
  li t1, 0x60613          # addi a2, a2, 0
  or t0, t0, t1
  sw t0, 0(s7)
  fence rw, rw
  sw s1, 80(s0)           # the generation
7:
  lw t0, 84(s0)           # hart 1's acknowledgement
  bne t0, s1, 7b
  j 9f
8:
  lw t0, 80(s0)
  bne t0, s1, 8b
  fence.i
  call patched
  sw s1, 84(s0)
9:
  addi s1, s1, 1
  bne s1, s5, patch
5:
  wfi                     # nothing enabled: the hart halts
  j 5b
  .align 12
patched:
  .word 0x00060613        # addi a2, a2, 0 (4 bytes: the assembler would compress it)
  ret
`;

beforeAll(async () => {
  worker = join(mkdtempSync(join(tmpdir(), "wasmvisor-harts-")), "hart-worker.mjs");
  await build({
    entryPoints: [fileURLToPath(new URL("./hart-worker.ts", import.meta.url))],
    bundle: true, platform: "node", format: "esm", target: "node20", outfile: worker, logLevel: "silent",
  });
}, 60_000);

// Hart 0 on this thread, hart 1 on a worker with its own Core, both from RAM_GPA, until both halt.
async function runPair(name: string, program: string, jit: JitMode, setUp?: (core: Core) => void) {
  const module = loadCoreModule();
  const core = new Core({ module, ramSize: RAM, harts: 2 });
  core.ram.set(assemble(name, program), 0);
  for (let h = 0; h < 2; h++) core.setPc(h, L.RAM_GPA);
  setUp?.(core);
  const w = new Worker(worker, { workerData: { module, memory: core.memory, ramSize: RAM, harts: 2, hart: 1, jit, budget: RUN_BUDGET, napMs: NAP_MS } });
  const done = new Promise<{ ms: number; instret: number; translated: number; a2: number }>((resolve, reject) => {
    w.on("message", (m) => { if (!m.ready) resolve(m); });
    w.on("error", reject);
  });
  await new Promise((resolve) => w.once("message", resolve)); // attached: start together
  // A Core taking a second code cache marks the VM: fence.i empties caches from now on (dcache.ts).
  expect(core.view.getInt32(L.VM_CODE_SHARED, true)).toBe(1);
  const tier = jit === "off" ? null : new TranslationTier(core, jit);
  const t0 = performance.now();
  for (;;) {
    // This loop never yields: a guest gone wrong must still end the test (with where it was).
    if (performance.now() - t0 > 60_000) throw new Error(`hart 0 did not halt: pc 0x${core.pc(0).toString(16)}, hart 1 at 0x${core.pc(1).toString(16)}`);
    const exit = core.run(0, RUN_BUDGET);
    tier?.update();
    Atomics.wait(nap, 0, 0, NAP_MS);
    if (exit === L.EXIT_HALT) break;
    expect(exit).toBe(L.EXIT_BUDGET);
  }
  const other = await done;
  await w.terminate();
  return { core, other, translated: tier?.stats().retired ?? 0 /* the VM's: both harts' */ };
}

async function runBoth(jit: JitMode) {
  const { core, other, translated } = await runPair(`harts-${jit}`, PROGRAM, jit);
  const shared = L.RAM_HOST + (1 << 20);
  const v = core.view;
  return {
    // rounds where both harts loaded the other's old value
    reordered: Array.from({ length: ROUNDS }, (_, i) => core.u8[shared + 4096 + 2 * i] & core.u8[shared + 4096 + 2 * i + 1]).reduce((a, b) => a + b, 0),
    counters: [v.getUint32(shared, true), v.getUint32(shared + 4, true), Number(v.getBigUint64(shared + 16, true)), Number(v.getBigUint64(shared + 24, true))],
    instret: [Number(core.instret(0)), other.instret],
    patchedSum: other.a2,
    translated,
  };
}

// Hart 0 counts in a loop whose page also holds a word hart 1 keeps storing to (code and data
// in one page): every store drops the page from hart 0's thread's cache while hart 0 runs from
// it. Clearing the slots under it once made it run instructions with their fields half gone
// (a count short by thousands); the loop must count exactly.
const COUNT = 1_000_000;
const SAME_PAGE = `
  csrr a0, mhartid
  li s0, ${SHARED}
  la s2, data
  bnez a0, writer
1:
  lw t0, 0(s2)            # start once hart 1 is storing
  li t1, 100
  blt t0, t1, 1b
  li s1, ${COUNT}
  li a2, 0
  .align 12
loop:
  addi a2, a2, 1
  addi s1, s1, -1
  bnez s1, loop
  li t0, 1
  sw t0, 0(s0)            # done
5:
  wfi
  j 5b
  .align 6
data: .word 0
writer:
  lw t0, 0(s0)
  bnez t0, 5b
  addi t1, t1, 1
  sw t1, 0(s2)            # into the page hart 0 is running from
  j writer
`;

// Both harts count in loops of one page with a debugger's breakpoint in it (never reached): in a
// watched page every fetch is decoded afresh into a scratch slot, which must be its thread's own.
// Both threads once shared one: a hart ran the instruction the other thread had just decoded (a
// Linux guest under gdb, -smp 2, oopsed with its stack pointer one byte off).
const WATCHED_COUNT = 500_000;
const WATCHED_PAGE = `
  csrr a0, mhartid
  li s1, ${WATCHED_COUNT}
  li a2, 0
  bnez a0, 2f
  j 1f
  .align 12
1:
  addi a2, a2, 1          # hart 0 counts in ones
  addi s1, s1, -1
  bnez s1, 1b
  j 5f
2:
  addi a2, a2, 3          # hart 1 in threes
  addi s1, s1, -1
  bnez s1, 2b
5:
  wfi
  j 5b
`;

describe("two harts of one VM on two threads", () => {
  it("a page with a debugger's breakpoint: each thread runs the instructions it decoded, not the other's", async () => {
    const page = Number(L.RAM_GPA) + 4096;
    const { core, other } = await runPair("watched", WATCHED_PAGE, "off", (c) => {
      for (let h = 0; h < 2; h++) c.setDebugBreakpoints(h, [BigInt(page + 0xff0)]);
    });
    expect(core.x(0, 12)).toBe(BigInt(WATCHED_COUNT));
    expect(other.a2).toBe(3 * WATCHED_COUNT);
  }, 120_000);

  for (const jit of ["off", "all"] as const) {
    it(`count exactly with amoadd, LR/SC, a ticket lock and Peterson's lock; fences against store buffering; code one writes and the other runs (--jit ${jit})`, async () => {
      const r = await runBoth(jit);
      expect(r.counters).toEqual([2 * ITERATIONS, 2 * ITERATIONS, 2 * ITERATIONS, 2 * ITERATIONS]);
      expect(r.reordered).toBe(0);
      expect(r.patchedSum).toBe((PATCH_ROUNDS * (PATCH_ROUNDS + 1)) / 2); // every round ran the code just written
      expect(r.instret[1]).toBeGreaterThan(ITERATIONS * 30); // hart 1 really ran its loop, on its thread
      if (jit === "all") expect(r.translated).toBeGreaterThan(ITERATIONS * 20);
    }, 120_000);
    it(`run what they decoded exactly while the other hart stores into their code page (--jit ${jit})`, async () => {
      const { core } = await runPair(`samepage-${jit}`, SAME_PAGE, jit);
      expect(core.x(0, 12)).toBe(BigInt(COUNT)); // (hart 0 starts counting once hart 1 has stored 100 times)
    }, 120_000);
  }
});
