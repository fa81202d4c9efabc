/**
 * Batches of cases run on QEMU and on wasmvisor (interpreted and translated), compared case by
 * case; a differing case shrunk to the fewest instructions that still differ, and written out as
 * a reproducer (its state and its block, disassembled).
 */
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { JitMode } from "../../host/jit/tier";
import { caseImage, itemBytes, layout, withoutItems, type CaseSpec } from "./generate";
import { compareCase, formatDifferences, type Difference } from "./compare";
import { D, LOG, LOG_WORDS, R, RESULT_BYTES, RESULT_HEADER, TRAP_LOG, type CaseImage } from "./image";
import { runQemu, runWasmvisor, Workdir } from "./machines";

export const TIERS: readonly JitMode[] = ["off", "all"];

export interface CaseResult {
  /** Per tier: the unexplained differences (empty: the same as QEMU). */
  differences: Map<JitMode, Difference[]>;
  /** Allowed differences seen, by reason. */
  explained: string[];
  /** Why the comparison (on the first tier) did not reach every field, if it did not. */
  cutShort?: string;
}

export class BatchFailure extends Error {}

/**
 * Run `specs` on QEMU (or take `qemuRun`, started earlier) and on each tier; one result per
 * case, and QEMU's records. SC faults compareCase could not decide are probed on QEMU.
 */
export async function runBatch(module: WebAssembly.Module, specs: readonly CaseSpec[], work: Workdir, tiers = TIERS, qemuRun?: Promise<Uint8Array | null>): Promise<CaseResult[] & { qemu: Uint8Array; cases: CaseImage[] }> {
  const cases = specs.map((s, i) => caseImage(s, i));
  const run = qemuRun ?? runQemu(cases, work);
  const ours = tiers.map((t) => [t, runWasmvisor(module, cases, t)] as const);
  const qemu = await run;
  if (!qemu) throw new BatchFailure(`QEMU did not finish a batch of ${specs.length} cases`);
  const out = Object.assign(specs.map((): CaseResult => ({ differences: new Map(), explained: [] })), { qemu, cases });
  const probes = new Map<number, { at: number; cause: bigint; tiers: JitMode[] }>();
  const results = new Map(ours);
  for (const [tier, result] of ours) {
    for (let i = 0; i < specs.length; i++) {
      if (!result) {
        out[i]!.differences.set(tier, [{ field: "finished", qemu: 1n, wasmvisor: 0n }]);
        continue;
      }
      const o = compareCase(qemu, result, i, cases[i]!);
      out[i]!.differences.set(tier, o.differences);
      if (tier === tiers[0]) {
        out[i]!.explained.push(...new Set(o.explained));
        out[i]!.cutShort = o.cutShort;
      }
      if (o.scProbe) {
        const p = probes.get(i) ?? { ...o.scProbe, tiers: [] };
        p.tiers.push(tier);
        probes.set(i, p);
      }
    }
  }
  if (probes.size) await probeSc(specs, cases, probes, out, qemu, results, work);
  return out;
}

/**
 * Each probed case with its SC made a plain store: where QEMU faults the same there, QEMU had no
 * reservation for the SC, and the case is compared again knowing it.
 */
async function probeSc(specs: readonly CaseSpec[], images: readonly CaseImage[], probes: Map<number, { at: number; cause: bigint; tiers: JitMode[] }>, out: CaseResult[], qemuResults: Uint8Array, ours: Map<JitMode, Uint8Array | null>, work: Workdir): Promise<void> {
  const entries = [...probes].flatMap(([i, p]) => {
    let at = 0;
    const k = specs[i]!.items.findIndex((it) => { const here = at; at += itemBytes(it); return here === p.at; });
    const it = specs[i]!.items[k];
    if (!it || it.k !== "w" || it.n !== 4) return [];
    const sc = it.w;
    const store = (((sc >> 20) & 31) << 20) | (((sc >> 15) & 31) << 15) | (((sc >> 12) & 7) << 12) | 0x23; // s{w,d} rs2, 0(rs1)
    return [{ i, p, spec: { ...specs[i]!, items: specs[i]!.items.map((x, j) => (j === k ? { k: "w" as const, n: 4 as const, w: store >>> 0 } : x)) } }];
  });
  if (!entries.length) return;
  const cases = entries.map((e, n) => caseImage(e.spec, n));
  const qemu = await runQemu(cases, work);
  if (!qemu) return;
  entries.forEach((e, n) => {
    const rec = new BigUint64Array(qemu.buffer.slice(qemu.byteOffset + n * RESULT_BYTES, qemu.byteOffset + n * RESULT_BYTES + RESULT_HEADER));
    const epc = cases[n]!.desc[D.entry]! + BigInt(e.p.at);
    const traps = Math.min(Number(rec[R.traps]), TRAP_LOG);
    const faults = Array.from({ length: traps }, (_, k) => k).some((k) => rec[R.log + k * LOG_WORDS + LOG.epc] === epc && rec[R.log + k * LOG_WORDS + LOG.cause] === e.p.cause)
      || (rec[R.sepc] === epc && rec[R.scause] === e.p.cause);
    if (!faults) return;
    for (const tier of e.p.tiers) {
      const o = compareCase(qemuResults, ours.get(tier)!, e.i, images[e.i]!, new Set([e.p.at]));
      out[e.i]!.differences.set(tier, o.differences);
      if (tier === e.p.tiers[0]) {
        out[e.i]!.explained.push(...new Set(o.explained));
        out[e.i]!.cutShort = o.cutShort;
      }
    }
  });
}

const differs = (r: CaseResult, tier: JitMode) => (r.differences.get(tier)?.length ?? 0) > 0;

/**
 * The smallest variant of `spec` (fewest items) that still differs on `tier`: each round runs, in
 * one batch, the variants with one item removed and with runs of items removed, and keeps the
 * shortest that differs.
 */
export async function minimize(module: WebAssembly.Module, spec: CaseSpec, tier: JitMode, work: Workdir): Promise<{ spec: CaseSpec; differences: Difference[] }> {
  let best = spec;
  let bestDiff = (await runBatch(module, [spec], work, [tier]))[0]!.differences.get(tier)!;
  for (let round = 0; round < 200 && best.items.length > 0; round++) {
    const n = best.items.length;
    const variants: CaseSpec[] = [];
    for (let len = n; len >= 1; len = len > 1 ? Math.ceil(len / 2) : 0) {
      for (let at = 0; at + len <= n; at += len === 1 ? 1 : Math.max(1, len >> 1)) {
        variants.push(withoutItems(best, at, len));
        if (variants.length >= 512) break;
      }
    }
    const results = await runBatch(module, variants, work, [tier]);
    let pick = -1;
    results.forEach((r, i) => {
      if (differs(r, tier) && (pick < 0 || variants[i]!.items.length < variants[pick]!.items.length)) pick = i;
    });
    if (pick < 0) break;
    best = variants[pick]!;
    bestDiff = results[pick]!.differences.get(tier)!;
  }
  return { spec: best, differences: bestDiff };
}

/** The block disassembled (GNU objdump from the cross toolchain, when there is one). */
export function disassemble(spec: CaseSpec, work: Workdir): string {
  const code = layout(spec.items);
  const file = join(work.dir, "block.bin");
  writeFileSync(file, code);
  try {
    const text = execFileSync("riscv64-unknown-elf-objdump", ["-D", "-b", "binary", "-m", "riscv:rv64", "-M", "no-aliases", file], { encoding: "utf8" });
    return text.split("\n").filter((l) => /^\s+[0-9a-f]+:/.test(l)).join("\n");
  } catch {
    return Buffer.from(code).toString("hex");
  }
}

const hex = (v: bigint | number) => `0x${v.toString(16)}`;

/** A reproducer: the case's starting state, its block and what differed. */
export function describe(spec: CaseSpec, differences: readonly Difference[], tier: JitMode, work: Workdir): string {
  const state = [
    `privilege ${["U", "S", "?", "M"][spec.priv]}, ${spec.paged ? `Sv${spec.sv}` : "bare"}, mstatus ${hex(spec.mstatus)}, fcsr ${hex(spec.fcsr)}`,
    `medeleg ${hex(spec.medeleg)} mideleg ${hex(spec.mideleg)} mie ${hex(spec.mie)} mip ${hex(spec.mip)}${spec.msip ? " msip" : ""} mtvec ${spec.mtvecVectored ? "vectored" : "direct"} stvec ${spec.stvecMode ? "vectored" : "direct"} perms ${spec.perm.map(hex).join(" ")}${spec.megaMisaligned ? " (megapage misaligned)" : ""}`,
    `x: ${spec.x.map((v, i) => `x${i}=${hex(v)}`).slice(1).join(" ")}`,
    `pointers (window offsets): ${spec.ptr.map(hex).join(" ")}`,
    ...(spec.cross ? [`item ${spec.cross.at} across the page boundary; second page ${spec.cross.last.alt ? "the other" : "the next"} (perms ${hex(spec.cross.last.perm)}), before the last run ${spec.cross.first.alt ? "the other" : "the next"} (perms ${hex(spec.cross.first.perm)}); the other's upper half ${hex(spec.cross.upper)}`] : []),
    `f: ${spec.f.map((v, i) => `f${i}=${hex(v)}`).join(" ")}`,
  ];
  return [`tier ${tier}: ${formatDifferences(differences)}`, ...state, disassemble(spec, work)].join("\n");
}

/** A spec as JSON (bigints as hex strings) and back: reproducers kept as files. */
export function specToJson(spec: CaseSpec): string {
  return JSON.stringify(spec, (_k, v) => (typeof v === "bigint" ? `0x${v.toString(16)}n` : v));
}
export function specFromJson(text: string): CaseSpec {
  return JSON.parse(text, (_k, v) => (typeof v === "string" && /^0x[0-9a-f]+n$/.test(v) ? BigInt(v.slice(0, -1)) : v)) as CaseSpec;
}
