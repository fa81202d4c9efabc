// `npm run bench [-- [--quick] [--only cpu,boot,exits,memory,fullvspara,paging,containers,smp]]`: run the benchmark
// suites, write bench/results/latest.json, and bench/REPORT.md with its plots in bench/results/*.svg.
// `npm run bench -- --render` only writes the report again from latest.json.
import { writeFileSync, mkdirSync, readFileSync, existsSync, renameSync } from "node:fs";
import { join } from "node:path";
import { cpuSuite } from "./cpu";
import { guestIntSuite } from "./guest-int";
import { bootSuite } from "./boot";
import { exitsSuite } from "./exits";
import { memorySuite } from "./memory";
import { hypervisorSuite } from "./hypervisor";
import { fullVsParaSuite, pagingSuite } from "./fullvspara";
import { snapshotSuite, migrationSuite } from "./state";
import { browserSuite } from "./browser";
import { containersSuite } from "./containers";
import { smpSuite } from "./smp";
import { describeMachine } from "./machine";
import { checkTargets, SUITES, type BenchResult, type Suite } from "./report";
import { writeReportFiles } from "./report-files";
import { buildLinuxGuest } from "../guests/linux/build.mjs";
import { packageRoot } from "../host/platform/node/core";
import { buildBaremetal } from "../guests/baremetal/build.mjs";

function parseArgs(argv: string[]): { quick: boolean; only: Set<Suite>; render: boolean } {
  let quick = false;
  let render = false;
  let only = new Set<Suite>(SUITES);
  for (let i = 0; i < argv.length; i++) {
    const [flag, value] = argv[i].split(/=(.*)/s);
    if (flag === "--quick" && value === undefined) quick = true;
    else if (flag === "--render" && value === undefined) render = true;
    else if (flag === "--only" && (value !== undefined || i + 1 < argv.length)) {
      const names = (value ?? argv[++i]).split(",").map((s) => s.trim()).filter(Boolean);
      const unknown = names.filter((n) => !(SUITES as readonly string[]).includes(n));
      if (unknown.length || !names.length) throw new Error(`--only: unknown suite ${unknown.join(", ") || "(none)"}; the suites are ${SUITES.join(", ")}`);
      only = new Set(names as Suite[]);
    } else throw new Error(`unknown argument ${argv[i]}; usage: npm run bench [-- [--quick] [--only ${SUITES.join(",")}] | --render]`);
  }
  return { quick, only, render };
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
if (args.render) {
  // Only the report: REPORT.md and the plots again from latest.json (after editing the report code).
  const dir = join(packageRoot(), "bench/results");
  let saved: BenchResult;
  try {
    saved = JSON.parse(readFileSync(join(dir, "latest.json"), "utf8")) as BenchResult;
  } catch (e) {
    console.error(`bench: --render needs bench/results/latest.json from a run (${(e as Error).message})`);
    process.exit(2);
  }
  writeReport(saved);
  process.exit(0);
}
const machine = describeMachine();
const result: BenchResult = {
  date: new Date().toISOString(),
  quick,
  command: ["npm run bench", ...(process.argv.length > 2 ? ["--", ...process.argv.slice(2)] : [])].join(" "),
  machine,
};
const linuxGuest = () => buildLinuxGuest({ log: (line: string) => console.error(line) });

// The CPU-bound guest programs, with iterations sized for ~0.3 G instructions each (a few seconds
// on the core); --quick runs a quarter of that. The guests' checksums do not depend on the count.
async function benchPrograms(): Promise<Record<string, string>> {
  const ITERS: Record<string, number> = { "bench-int": 40, "bench-mem": 4, "bench-branch": 8, "bench-fp": 20, "bench-rvc": 120, "bench-calls": 700 };
  const scale = quick ? 0.25 : 1;
  const defines = Object.fromEntries(Object.entries(ITERS).map(([k, n]) => [k, { ITERS: Math.max(1, Math.round(n * scale)) }]));
  return (await buildBaremetal({ log: () => {}, defines })).programs;
}

if (only.has("cpu")) {
  log(`cpu suite (${runs} run${runs > 1 ? "s" : ""} each, median)`);
  result.cpu = cpuSuite(await benchPrograms(), runs, log);
}

if (only.has("guestint")) {
  log(`guest integer suite (BusyBox md5sum and sha256sum in the Linux guest, ${runs} run${runs > 1 ? "s" : ""} each in one boot, median; QEMU beside)`);
  result.guestint = await guestIntSuite(await linuxGuest(), runs, machine.qemu !== null, log);
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

if (only.has("hypervisor")) {
  log("hypervisor suite (fairness, caps, balancing, isolation, density)");
  result.hypervisor = await hypervisorSuite(await linuxGuest(), quick, log);
}

if (only.has("snapshot")) {
  log(`snapshot suite (idle Linux, ${runs} run${runs > 1 ? "s" : ""}, median; QEMU's savevm/loadvm beside)`);
  result.snapshot = await snapshotSuite(await linuxGuest(), runs, machine.qemu !== null, log);
}

if (only.has("migration")) {
  log(`migration suite (Linux over loopback, idle and dirtying memory; QEMU beside)`);
  result.migration = await migrationSuite(await linuxGuest(), runs, machine.qemu !== null, log);
}

if (only.has("browser")) {
  log(`browser suite (Node and Debian's Chromium, ${runs} run${runs > 1 ? "s" : ""} each in turns, median)`);
  result.browser = await browserSuite(await benchPrograms(), await linuxGuest(), runs, log);
}

if (only.has("containers")) {
  log(`containers suite (the same workload as a wasmvisor VM and as a crun container, ${runs} run${runs > 1 ? "s" : ""} each, median)`);
  result.containers = await containersSuite(await linuxGuest(), quick, runs, machine.qemu !== null, log);
}

if (only.has("smp")) {
  log(`smp suite (Linux with 2 vCPUs: 1 and 2 CPU-bound processes, ${quick ? "1 run" : "3 runs"} each, median; torture under both tiers; QEMU -smp 2 beside)`);
  result.smp = await smpSuite(await linuxGuest(), quick, machine.qemu !== null, log);
}

const resultsDir = join(packageRoot(), "bench/results");
mkdirSync(resultsDir, { recursive: true });
// --only: the suites not run keep their figures from the last run, which the report says.
if (only.size < SUITES.length && existsSync(join(resultsDir, "latest.json"))) {
  const last = JSON.parse(readFileSync(join(resultsDir, "latest.json"), "utf8")) as BenchResult;
  const kept = SUITES.filter((s) => !only.has(s) && last[s] !== undefined);
  for (const s of kept) (result as unknown as Record<string, unknown>)[s] = last[s];
  if (kept.length) result.carried = Object.fromEntries(kept.map((s) => [s, last.carried?.[s] ?? last.date]));
}
// The run this one replaces becomes previous.json: the report sets the two side by side.
if (existsSync(join(resultsDir, "latest.json"))) renameSync(join(resultsDir, "latest.json"), join(resultsDir, "previous.json"));
writeFileSync(join(resultsDir, "latest.json"), JSON.stringify(result, null, 2) + "\n");
writeReport(result);

function writeReport(r: BenchResult): void {
  writeReportFiles(r);
  log("targets");
  for (const t of checkTargets(r)) log(`  ${t.pass === null ? "not run" : t.pass ? "pass   " : "FAIL   "} ${t.target}: ${t.measured}`);
  log(`wrote ${join(packageRoot(), "bench/results/latest.json")} and ${join(packageRoot(), "bench/REPORT.md")}`);
}
