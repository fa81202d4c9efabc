// Writing bench/REPORT.md and its plots from bench/results/latest.json (and previous.json), with
// the fuzzing figures of fuzz/results/latest.json: after a benchmark run, `--render`, and `npm run fuzz`.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { renderReport, type BenchResult } from "./report";
import type { FuzzResults } from "../fuzz/engine/results";
import { packageRoot } from "../host/platform/node/core";

const readJson = <T>(file: string): T | undefined => (existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as T) : undefined);

/** Write the report from `result` (default: the last run's); false when there is no benchmark run to report. */
export function writeReportFiles(result?: BenchResult): boolean {
  const root = packageRoot();
  const dir = join(root, "bench/results");
  const r = result ?? readJson<BenchResult>(join(dir, "latest.json"));
  if (!r) return false;
  const { markdown, plots } = renderReport(r, readJson<BenchResult>(join(dir, "previous.json")), readJson<FuzzResults>(join(root, "fuzz/results/latest.json")));
  for (const [file, svg] of Object.entries(plots)) writeFileSync(join(dir, file), svg);
  writeFileSync(join(root, "bench/REPORT.md"), markdown);
  return true;
}
