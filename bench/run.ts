// `npm run bench [-- --quick]`: run the benchmark suites and write bench/results/latest.json.
import { writeFileSync, mkdirSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { cpuSuite, geomean, qemuAvailable } from "./cpu";
import { bootSuite } from "./boot";
import { buildLinuxGuest } from "../guests/linux/build.mjs";
import { packageRoot } from "../host/core/load-node";
import { buildBaremetal } from "../guests/baremetal/build.mjs";

const quick = process.argv.includes("--quick");
const runs = quick ? 1 : 5;
const log = (s: string) => console.log(s);

// Iterations sized for ~0.3 G instructions per program (a few seconds on the core); --quick
// runs a quarter of that. The guests' checksums do not depend on the count.
const ITERS: Record<string, number> = { "bench-int": 40, "bench-mem": 4, "bench-branch": 8, "bench-fp": 20, "bench-rvc": 120 };
const scale = quick ? 0.25 : 1;
const defines = Object.fromEntries(Object.entries(ITERS).map(([k, n]) => [k, { ITERS: Math.max(1, Math.round(n * scale)) }]));
const { programs } = await buildBaremetal({ log: () => {}, defines });
log(`cpu suite (${runs} run${runs > 1 ? "s" : ""} each, median)`);
const cpu = cpuSuite(programs, runs, log);
const mips = geomean(cpu.map((r) => r.mips));
const qemu = cpu.every((r) => r.qemuMips) ? geomean(cpu.map((r) => r.qemuMips!)) : null;
log(`  geometric mean: ${mips.toFixed(1)} MIPS` + (qemu ? `, qemu ${qemu.toFixed(1)} MIPS (${((100 * mips) / qemu).toFixed(1)}%)` : ""));

log("boot suite (Linux guest from guests/linux)");
const guest = await buildLinuxGuest({ log: (line: string) => console.error(line) });
const boot = await bootSuite(guest, runs, qemuAvailable(), log);

const result = {
  date: new Date().toISOString(),
  quick,
  machine: { cpu: cpus()[0]?.model, cores: cpus().length, memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version },
  cpu: { mips, qemu_mips: qemu, ratio_vs_qemu: qemu ? mips / qemu : null, programs: cpu },
  boot,
};
const dir = join(packageRoot(), "bench/results");
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, "latest.json"), JSON.stringify(result, null, 2) + "\n");
log(`wrote ${join(dir, "latest.json")}`);
