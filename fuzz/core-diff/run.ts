/**
 * The core's differential fuzzing (`npm run fuzz -- --target core-diff`): batches of random and
 * mutated cases on QEMU and on wasmvisor (interpreted and translated), compared case by case.
 * A case that differs in a way compare.ts does not explain is shrunk and kept in
 * fuzz/crashes/core-diff/ (the case as JSON, and a text reproducer next to it). QEMU's run of a
 * batch overlaps wasmvisor's run of the one before.
 */
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadCoreModule } from "../../host/platform/node/core";
import type { JitMode } from "../../host/jit/tier";
import { fuzzDir } from "../engine/corpus";
import type { CoreDiffResult } from "../engine/results";
import { caseImage, mutateCase, random, randomCase, type CaseSpec } from "./generate";
import { D, LOG, LOG_WORDS, R, RESULT_BYTES, RESULT_HEADER, TRAP_LOG, type CaseImage } from "./image";
import { BatchFailure, describe, minimize, runBatch, specToJson, TIERS } from "./diff";
import { QEMU, QEMU_CPU, runQemu, Workdir } from "./machines";

export const CORE_DIFF = "core-diff";
/** Cases per QEMU run: its start (~50-80 ms) is paid once per batch. */
export const BATCH = 400;
/** Differences shrunk per run at most (shrinking costs a QEMU run per round). */
const MAX_MINIMIZED = 8;

export interface CoreDiffOptions {
  seconds: number;
  programs: number;
  seed: number;
  batch?: number;
  tiers?: readonly JitMode[];
  /** Keep reproducers under fuzz/crashes/core-diff/ (off for tests). */
  save?: boolean;
  log?: (line: string) => void;
}

/** The cases of batch `n` of a run with `seed`: fresh random ones, and mutants of earlier ones that trapped. */
export function batchSpecs(seed: number, n: number, size: number, pool: readonly CaseSpec[]): CaseSpec[] {
  const r = random((seed * 1_000_003 + n) >>> 0);
  return Array.from({ length: size }, () => {
    if (pool.length > 1 && r.chance(0.4)) return mutateCase(r, r.pick(pool), r.pick(pool));
    return randomCase(r);
  });
}

interface Outcome {
  specs: CaseSpec[];
  differing: { spec: CaseSpec; tier: JitMode; fields: string[] }[];
  explained: string[];
  cutShort: string[];
  /** What the generator's features came to, case by case (featuresOf). */
  features: string[];
  trapped: CaseSpec[];
}

const INTERRUPT = 1n << 63n;
/**
 * The features of a case that ran, as QEMU ran it: the generator's newer ones (mtvec vectored,
 * interrupts, Sv57, satp writes, an instruction across the page boundary), to tell how often
 * each is exercised.
 */
function featuresOf(spec: CaseSpec, c: CaseImage, q: BigUint64Array): string[] {
  const out: string[] = [];
  const log = Array.from({ length: Math.min(Number(q[R.traps]), TRAP_LOG) }, (_, k) => ({
    cause: q[R.log + k * LOG_WORDS + LOG.cause]!, epc: q[R.log + k * LOG_WORDS + LOG.epc]!, tval: q[R.log + k * LOG_WORDS + LOG.tval]!, via: q[R.log + k * LOG_WORDS + LOG.via]!,
  }));
  if (spec.mtvecVectored) out.push("mtvec vectored");
  const interrupts = log.filter((t) => t.cause & INTERRUPT);
  if (interrupts.length) out.push("an interrupt taken (M-mode's handler)");
  if (interrupts.some((t) => t.via === (t.cause & 63n))) out.push("an interrupt through mtvec's vector table");
  if (interrupts.some((t) => t.cause === (INTERRUPT | 3n))) out.push("a machine software interrupt (msip)");
  if (interrupts.some((t, n) => n > 0 && interrupts[n - 1]!.epc === t.epc)) out.push("interrupts taken one after the other at one point");
  const stub = c.desc[D.stvec]! & ~3n, end = log[log.length - 1];
  if (q[R.scause]! & INTERRUPT && end?.cause === 9n && end.epc >= stub && end.epc < stub + 0x1000n) out.push("an interrupt delegated to S-mode");
  if (spec.paged && spec.sv === 57) out.push("Sv57 (the case's satp)");
  if (spec.items.some((it) => it.k === "satp")) out.push("satp written by the block");
  if (spec.items.some((it) => it.k === "msip")) out.push("msip cleared by the block");
  const start = Number(c.desc[D.entry]! & 0xfffn);
  if (start) {
    out.push("an instruction across the page boundary");
    if (c.desc[D.runs]! > 1n) out.push("an instruction across the page boundary, its second page remapped between runs");
    const at = (c.desc[D.entry]! | 0xfffn) - 1n;
    if (log.some((t) => (t.cause === 1n || t.cause === 12n) && t.epc === at && t.tval === at + 2n)) out.push("a fetch fault on an instruction's second page");
  }
  return out;
}

/** A batch QEMU did not finish: the case that does not end (a generator bug: every case must). */
class HungBatch extends Error {
  constructor(readonly spec: CaseSpec) {
    super("a case did not end on QEMU");
  }
}

/** The case of `specs` QEMU does not finish, by halving the batch. */
async function hungCase(specs: CaseSpec[], work: Workdir): Promise<CaseSpec> {
  let left = specs;
  while (left.length > 1) {
    const half = left.slice(0, left.length >> 1);
    left = (await runQemu(half.map((s, i) => caseImage(s, i)), work, 10_000)) ? left.slice(half.length) : half;
  }
  return left[0]!;
}

async function runOne(module: WebAssembly.Module, specs: CaseSpec[], qemuRun: Promise<Uint8Array | null>, tiers: readonly JitMode[], work: Workdir): Promise<Outcome> {
  let results: Awaited<ReturnType<typeof runBatch>>;
  try {
    results = await runBatch(module, specs, work, tiers, qemuRun);
  } catch (e) {
    if (e instanceof BatchFailure) throw new HungBatch(await hungCase(specs, work));
    throw e;
  }
  const out: Outcome = { specs, differing: [], explained: [], cutShort: [], features: [], trapped: [] };
  const qemu = new DataView(results.qemu.buffer, results.qemu.byteOffset);
  results.forEach((r, i) => {
    if (qemu.getBigUint64(i * RESULT_BYTES + R.traps * 8, true) > 1n) out.trapped.push(specs[i]!);
    out.explained.push(...r.explained);
    if (r.cutShort) out.cutShort.push(r.cutShort);
    out.features.push(...featuresOf(specs[i]!, results.cases[i]!, new BigUint64Array(results.qemu.buffer.slice(results.qemu.byteOffset + i * RESULT_BYTES, results.qemu.byteOffset + i * RESULT_BYTES + RESULT_HEADER))));
    for (const [tier, d] of r.differences) if (d.length) out.differing.push({ spec: specs[i]!, tier, fields: d.map((x) => x.field.replace(/\d+/g, "N")) });
  });
  return out;
}

/** Run the differential target; its figures for fuzz/results/latest.json. */
export async function runCoreDiff(opts: CoreDiffOptions): Promise<CoreDiffResult> {
  const log = opts.log ?? (() => {});
  const tiers = opts.tiers ?? TIERS;
  const size = opts.batch ?? BATCH;
  const module = loadCoreModule();
  const work = new Workdir();
  const started = performance.now();
  const deadline = started + opts.seconds * 1000;
  const result: CoreDiffResult = {
    target: CORE_DIFF, date: new Date().toISOString(), mode: `${opts.seconds} s`, seed: opts.seed, qemu: qemuVersion(), qemuCpu: QEMU_CPU,
    tiers: [...tiers], programs: 0, batches: 0, seconds: 0, programsPerSecond: 0, differences: 0, explained: {}, cutShort: {}, features: {}, found: [],
  };
  const pool: CaseSpec[] = [];
  const seen = new Set<string>();
  let minimized = 0;
  try {
    let n = 0;
    let next = batchSpecs(opts.seed, n, size, pool);
    let qemuNext = runQemu(next.map((s, i) => caseImage(s, i)), work);
    while (result.programs < opts.programs) {
      const specs = next, qemuRun = qemuNext;
      n++;
      const more = result.programs + specs.length < opts.programs && performance.now() < deadline;
      if (more) {
        next = batchSpecs(opts.seed, n, size, pool);
        qemuNext = runQemu(next.map((s, i) => caseImage(s, i)), work);
      }
      let o: Outcome;
      try {
        o = await runOne(module, specs, qemuRun, tiers, work);
      } catch (e) {
        if (!(e instanceof HungBatch)) throw e;
        // Kept like a difference: the batch's other cases are not counted.
        result.differences++;
        const where = opts.save !== false ? ` (${keep(e.spec, "QEMU did not end this case")})` : "";
        result.found.push(`a case that does not end on QEMU${where}`);
        log(`  a case did not end on QEMU${where}`);
        if (!more) break;
        continue;
      }
      result.programs += specs.length;
      result.batches++;
      for (const why of o.explained) result.explained[why] = (result.explained[why] ?? 0) + 1;
      for (const why of o.cutShort) result.cutShort![why] = (result.cutShort![why] ?? 0) + 1;
      for (const f of o.features) result.features![f] = (result.features![f] ?? 0) + 1;
      for (const s of o.trapped) pool.push(s);
      if (pool.length > 2000) pool.splice(0, pool.length - 2000);
      for (const d of o.differing) {
        result.differences++;
        const signature = `${d.tier}: ${[...new Set(d.fields)].sort().join(",")}`;
        if (seen.has(signature) || minimized >= MAX_MINIMIZED) continue;
        seen.add(signature);
        minimized++;
        const m = await minimize(module, d.spec, d.tier, work);
        const text = describe(m.spec, m.differences, d.tier, work);
        const where = opts.save !== false ? ` (${keep(m.spec, text)})` : "";
        result.found.push(`${text.split("\n")[0]}${where}`);
        log(`  difference, shrunk to ${m.spec.items.length} instructions:\n${text.split("\n").map((l) => `    ${l}`).join("\n")}`);
      }
      if (!more) break;
    }
  } finally {
    work.close();
  }
  result.seconds = (performance.now() - started) / 1000;
  result.programsPerSecond = result.programs / result.seconds;
  return result;
}

/** Keep a case in fuzz/crashes/core-diff/ (JSON, and its reproducer as text); its path. */
function keep(spec: CaseSpec, text: string): string {
  const dir = join(fuzzDir(), "crashes", CORE_DIFF);
  mkdirSync(dir, { recursive: true });
  const name = createHash("sha256").update(specToJson(spec)).digest("hex").slice(0, 16);
  writeFileSync(join(dir, `${name}.json`), specToJson(spec) + "\n");
  writeFileSync(join(dir, `${name}.txt`), text + "\n");
  return `fuzz/crashes/${CORE_DIFF}/${name}.json`;
}

function qemuVersion(): string {
  try {
    return execFileSync(QEMU, ["--version"], { encoding: "utf8" }).split("\n")[0]!.replace(/^QEMU emulator version /, "");
  } catch {
    throw new Error(`${QEMU} not found: install qemu-system-misc (the differential target runs every case on it)`);
  }
}
