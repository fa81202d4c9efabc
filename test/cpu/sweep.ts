// Table-driven sweeps: run one instruction over many operand values inside a guest loop.
import { expect } from "vitest";
import { machine, RAM, hex } from "./harness";

export const DATA = RAM + 0x40000;
export const RES = RAM + 0x80000;


/** Run `op rd, rs1, rs2` over every pair of values; returns the results in order. */
export function sweepRR(op: string, pairs: [bigint, bigint][]): bigint[] {
  const m = machine(`
    li s0, ${DATA}
    li s1, ${RES}
    li s2, ${pairs.length}
  1:
    ld a1, 0(s0)
    ld a2, 8(s0)
    ${op} a0, a1, a2
    sd a0, 0(s1)
    addi s0, s0, 16
    addi s1, s1, 8
    addi s2, s2, -1
    bnez s2, 1b
  `);
  pairs.forEach(([a, b], i) => {
    m.w64(DATA + 16 * i, a);
    m.w64(DATA + 16 * i + 8, b);
  });
  m.runDone();
  return pairs.map((_, i) => m.r64(RES + 8 * i));
}

/** Run `op rd, rs1, imm` for every value and immediate (unrolled: the immediate is encoded). */
export function sweepRI(op: string, values: bigint[], imms: bigint[]): bigint[] {
  let src = `li s0, ${DATA}\nli s1, ${RES}\n`;
  for (let i = 0; i < values.length; i++) {
    for (const imm of imms) src += `ld a1, ${8 * i}(s0)\n${op} a0, a1, ${imm}\nsd a0, 0(s1)\naddi s1, s1, 8\n`;
  }
  const m = machine(src);
  values.forEach((v, i) => m.w64(DATA + 8 * i, v));
  m.runDone();
  const out: bigint[] = [];
  for (let i = 0; i < values.length * imms.length; i++) out.push(m.r64(RES + 8 * i));
  return out;
}

export function allPairs(vals: bigint[]): [bigint, bigint][] {
  const p: [bigint, bigint][] = [];
  for (const a of vals) for (const b of vals) p.push([a, b]);
  return p;
}

export function expectSweep(op: string, got: bigint[], want: bigint[], inputs: string[]): void {
  const bad: string[] = [];
  got.forEach((g, i) => {
    if (g !== want[i]) bad.push(`${op}(${inputs[i]}) = ${hex(g)}, expected ${hex(want[i])}`);
  });
  expect(bad.slice(0, 8), `${bad.length} mismatches`).toEqual([]);
}


/** Run the unary `op rd, rs1` over every value. */
export function sweepUnary(op: string, values: bigint[]): bigint[] {
  let src = `li s0, ${DATA}\nli s1, ${RES}\n`;
  values.forEach((_, i) => (src += `ld a1, ${8 * i}(s0)\n${op} a0, a1\nsd a0, ${8 * i}(s1)\n`));
  const m = machine(src);
  values.forEach((v, i) => m.w64(DATA + 8 * i, v));
  m.runDone();
  return values.map((_, i) => m.r64(RES + 8 * i));
}
