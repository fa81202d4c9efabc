// How fast Chromium runs WebAssembly on this machine against Node, apart from wasmvisor: two small
// loops timed the same way in both. A mix of integer arithmetic (what an interpreter's dispatch
// is made of), and a first touch of 64 MiB of shared memory (what a guest booting pays for each
// page of its RAM it uses: the host's page faults). The browser suite reports it beside its
// figures, as the report sets QEMU's drift beside a run's changes.
import * as asc from "assemblyscript/asc";

const SOURCE = `
export function mix(n: i32): i64 {
  let s: i64 = 0;
  for (let i: i64 = 0; i < <i64>n; i++) s = (s ^ i) * 0x9E3779B97F4A7C15 + (s >>> 7);
  return s;
}
export function touch(bytes: i32): void {
  for (let p: usize = 0; p < <usize>bytes; p += 4096) store<u8>(p, 1);
}
`;
const MIX = 100_000_000;
const TOUCH = 64 << 20;

export interface Baseline {
  /** ms for the arithmetic loop, and for the first touch of 64 MiB. */
  mix_ms: number;
  touch_ms: number;
}

export async function baselineModule(): Promise<Uint8Array> {
  const r = await asc.compileString(SOURCE, { optimizeLevel: 3, runtime: "stub", importMemory: true, sharedMemory: true, initialMemory: 1025, maximumMemory: 2048, enable: ["threads"] });
  if (r.error || !r.binary) throw new Error(`the baseline module did not compile: ${r.error?.message}\n${r.stderr.toString()}`);
  return r.binary;
}

/** Time the two loops (runs in Node or, serialised, in a page: it uses nothing else). */
export async function runBaseline(bytes: Uint8Array, mix: number, touch: number): Promise<Baseline> {
  const memory = new WebAssembly.Memory({ initial: 1025, maximum: 2048, shared: true });
  const { instance } = await WebAssembly.instantiate(bytes as Uint8Array<ArrayBuffer>, { env: { memory, abort() {} } });
  const e = instance.exports as { mix(n: number): bigint; touch(n: number): void };
  e.mix(mix / 10); // compiled and tiered up
  let t = performance.now();
  e.mix(mix);
  const mixMs = performance.now() - t;
  t = performance.now();
  e.touch(touch);
  return { mix_ms: mixMs, touch_ms: performance.now() - t };
}

export const BASELINE_SIZES = { mix: MIX, touch: TOUCH };
