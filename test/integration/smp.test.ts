// The Linux guest with two vCPUs on each tier: `wv-smp torture` (guests/linux/bench/wv-smp.c)
// hammers shared counters from threads pinned to both vCPUs through AMOs, LR/SC, futex mutexes
// and CAS loops, and passes messages with release/acquire ordering; every count must be exact.
// `wv-smp spin` computes the same checksum in every process as this file computes here. Speed is
// the smp bench suite's (bench/smp.ts), not asserted here.
import { describe, test, expect, beforeAll } from "vitest";
import { buildLinuxGuest } from "../../guests/linux/build.mjs";
import { SmpGuest, parseWvs, VCPUS } from "../../bench/smp";

let guest: { kernel: string; initramfs: string };

beforeAll(async () => {
  guest = await buildLinuxGuest({ log: (line: string) => console.error(line) });
}, 3_600_000);

/** wv-smp.c's workload(), in BigInt: the checksum a correct CPU computes. */
function workload(steps: number): string {
  const M = (1n << 64n) - 1n;
  let x = 1n, h = 0n;
  for (let i = 0n; i < BigInt(steps); i++) {
    x = (x * 6364136223846793005n + 1442695040888963407n) & M;
    h ^= x >> 29n;
    h = ((((h << 7n) | (h >> 57n)) & M) + i) & M;
  }
  return h.toString(16).padStart(16, "0");
}

const COUNTERS = ["atomic", "atomic32", "mutex", "spin", "cas32", "cas64"];

describe.each(["off", "on"] as const)("two vCPUs with --jit %s", (jit) => {
  test("torture: every counter exact, no stale message, the threads interleaved; spin's checksum right", async () => {
    const vm = await SmpGuest.wasmvisor(guest, jit);
    try {
      // Threads pinned one per vCPU, then twice as many threads as vCPUs (the guest preempts lock holders).
      for (const [threads, iters] of [[VCPUS, 200_000], [2 * VCPUS, 50_000]]) {
        const { output, status } = await vm.run(`wv-smp torture -t ${threads} -n ${iters}`, 120_000);
        const r = parseWvs(output, "torture");
        expect(r.fields.cpus, output).toBe(String(VCPUS));
        for (const c of COUNTERS) expect(r.fields[c], `${c} in\n${output}`).toBe(String(threads * iters));
        expect(r.fields.mp_errors, output).toBe("0");
        expect(r.verdict, output).toBe("ok");
        expect(status, output).toBe(0);
        // Another thread's increments landed between one thread's own: they ran at the same time.
        expect(Number(r.fields.interleavings), output).toBeGreaterThan(0);
      }
      const steps = 300_000;
      const want = workload(steps);
      for (const procs of [1, 2]) {
        const { output, status } = await vm.run(`wv-smp spin -p ${procs} -n ${steps}`, 120_000);
        const r = parseWvs(output, "spin");
        expect(status, output).toBe(0);
        expect(r.fields.procs).toBe(String(procs));
        expect(r.fields.checksum, output).toBe(want);
        expect(Number(r.fields.ops_per_s)).toBeGreaterThan(0);
      }
      // Counts its 32-bit counters could not hold are refused before any result line.
      const refused = await vm.run("wv-smp torture -t 70000 -n 70000");
      expect(refused.status).toBe(2);
      expect(refused.output).toMatch(/must fit in 32 bits/);
      expect(refused.output).not.toMatch(/^WVS torture /m);
    } finally {
      vm.close();
    }
  }, 180_000);
});
