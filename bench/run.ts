// `npm run bench [-- [--quick] [--only cpu,boot,exits,memory,fullvspara,paging]]`: run the benchmark
// suites, write bench/results/latest.json, and bench/REPORT.md with its plots in bench/results/*.svg.
import { writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { cpuSuite } from "./cpu";
import { bootSuite } from "./boot";
import { exitsSuite } from "./exits";
import { memorySuite } from "./memory";
import { fullVsParaSuite, pagingSuite } from "./fullvspara";
import { describeMachine } from "./machine";
import { checkTargets, renderReport, SUITES, type BenchResult, type Suite } from "./report";
import { buildLinuxGuest } from "../guests/linux/build.mjs";
import { packageRoot } from "../host/core/load-node";
import { buildBaremetal } from "../guests/baremetal/build.mjs";

function parseArgs(argv: string[]): { quick: boolean; only: Set<Suite> } {
  let quick = false;
  let only = new Set<Suite>(SUITES);
  for (let i = 0; i < argv.length; i++) {
    const [flag, value] = argv[i].split(/=(.*)/s);
    if (flag === "--quick" && value === undefined) quick = true;
    else if (flag === "--only" && (value !== undefined || i + 1 < argv.length)) {
      const names = (value ?? argv[++i]).split(",").map((s) => s.trim()).filter(Boolean);
      const unknown = names.filter((n) => !(SUITES as readonly string[]).includes(n));
      if (unknown.length || !names.length) throw new Error(`--only: unknown suite ${unknown.join(", ") || "(none)"}; the suites are ${SUITES.join(", ")}`);
      only = new Set(names as Suite[]);
    } else throw new Error(`unknown argument ${argv[i]}; usage: npm run bench [-- [--quick] [--only ${SUITES.join(",")}]]`);
  }
  return { quick, only };
}

let args: ReturnType<typeof parseArgs>;
try {
  args = parseArgs(process.argv.slice(2));
} catch (e) {
  console.error(`bench: ${(e as Error).message}`);
  process.exit(2);
}
const { quick, only } = args;
const runs = quick ? 1 : 5;
const log = (s: string) => console.log(s);
const machine = describeMachine();
const result: BenchResult = {
  date: new Date().toISOString(),
  quick,
  command: ["npm run bench", ...(process.argv.length > 2 ? ["--", ...process.argv.slice(2)] : [])].join(" "),
  machine,
};
const linuxGuest = () => buildLinuxGuest({ log: (line: string) => console.error(line) });

if (only.has("cpu")) {
  // Iterations sized for ~0.3 G instructions per program (a few seconds on the core); --quick
  // runs a quarter of that. The guests' checksums do not depend on the count.
  const ITERS: Record<string, number> = { "bench-int": 40, "bench-mem": 4, "bench-branch": 8, "bench-fp": 20, "bench-rvc": 120 };
  const scale = quick ? 0.25 : 1;
  const defines = Object.fromEntries(Object.entries(ITERS).map(([k, n]) => [k, { ITERS: Math.max(1, Math.round(n * scale)) }]));
  const { programs } = await buildBaremetal({ log: () => {}, defines });
  log(`cpu suite (${runs} run${runs > 1 ? "s" : ""} each, median)`);
  result.cpu = cpuSuite(programs, runs, log);
}

if (only.has("boot")) {
  log("boot suite (Linux guest from guests/linux)");
  result.boot = await bootSuite(await linuxGuest(), runs, machine.qemu !== null, log);
}

if (only.has("exits")) {
  log("exits suite (benchmark.js, µs per round trip)");
  result.exits = await exitsSuite(quick, log);
}

if (only.has("memory")) {
  const vms = 4;
  log(`memory suite (${runs} process${runs > 1 ? "es" : ""} of ${vms} VMs, median)`);
  result.memory = memorySuite(await linuxGuest(), runs, vms, log);
}

if (only.has("fullvspara")) {
  log(`full-vs-para suite (para and full machines x nested and shadow paging, ${runs} run${runs > 1 ? "s" : ""} of each workload, median)`);
  result.fullvspara = await fullVsParaSuite(await linuxGuest(), quick, runs, log);
}

if (only.has("paging")) {
  log(`paging suite (nested vs shadow paging, para machine, ${runs} run${runs > 1 ? "s" : ""} of each workload, median)`);
  result.paging = await pagingSuite(await linuxGuest(), quick, runs, log);
}

const root = packageRoot();
const dir = join(root, "bench/results");
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, "latest.json"), JSON.stringify(result, null, 2) + "\n");
const { markdown, plots } = renderReport(result);
for (const [file, svg] of Object.entries(plots)) writeFileSync(join(dir, file), svg);
writeFileSync(join(root, "bench/REPORT.md"), markdown);
log("targets");
for (const t of checkTargets(result)) log(`  ${t.pass === null ? "not run" : t.pass ? "pass   " : "FAIL   "} ${t.target}: ${t.measured}`);
log(`wrote ${join(dir, "latest.json")} and ${join(root, "bench/REPORT.md")}`);
