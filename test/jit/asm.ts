// Hand-written RISC-V programs for the translation tier's tests: assembled with the cross
// compiler, run interpreted and under `--jit all`, compared register by register.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect } from "vitest";
import { VirtMachine } from "../../host/machine/virt";
import { loadCoreModule } from "../../host/platform/node/core";
import { runToStop } from "../board";
import type { JitMode } from "../../host/jit/tier";

const dir = mkdtempSync(join(tmpdir(), "wasmvisor-jit-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// Ends the program through the test device (pass).
export const EXIT = `
  li t0, 0x100000
  li t1, 0x5555
  sw t1, 0(t0)
1: j 1b
`;

export function assemble(name: string, source: string): Uint8Array {
  const src = join(dir, `${name}.S`), elf = join(dir, `${name}.elf`), bin = join(dir, `${name}.bin`);
  writeFileSync(src, `  .globl _start\n_start:\n${source}`);
  execFileSync("riscv64-unknown-elf-gcc", ["-nostdlib", "-march=rv64gc_zba_zbb_zbs", "-mabi=lp64d", "-Wl,-N", "-Wl,-Ttext=0x80000000", "-Wl,--no-relax", "-o", elf, src]);
  execFileSync("riscv64-unknown-elf-objcopy", ["-O", "binary", elf, bin]);
  return new Uint8Array(readFileSync(bin));
}

export function run(bytes: Uint8Array, jit: JitMode, timeoutSeconds = 60) {
  const m = new VirtMachine({ module: loadCoreModule(), memory: 64 << 20, bios: null, kernel: { name: "p", bytes }, jit, output: () => {} });
  const reason = runToStop(m, timeoutSeconds);
  const regs = Array.from({ length: 32 }, (_, i) => m.core.x(0, i));
  const fregs = Array.from({ length: 32 }, (_, i) => m.core.f(0, i));
  return { reason, regs, fregs, fcsr: m.core.csr(0, 0x003), instret: m.core.totalInstret(), jit: m.stats().jit };
}

/** Run interpreted and with every page translated: the same end, registers (x, f, fcsr) and retired count. */
export function same(name: string, source: string): ReturnType<typeof run> {
  const bytes = assemble(name, source);
  const a = run(bytes, "off"), t = run(bytes, "all");
  expect(t.reason).toEqual(a.reason);
  expect(t.regs.map((v, i) => `x${i}=${v.toString(16)}`)).toEqual(a.regs.map((v, i) => `x${i}=${v.toString(16)}`));
  expect(t.fregs.map((v, i) => `f${i}=${v.toString(16)}`)).toEqual(a.fregs.map((v, i) => `f${i}=${v.toString(16)}`));
  expect(t.fcsr.toString(16)).toBe(a.fcsr.toString(16));
  expect(t.instret).toBe(a.instret);
  return t;
}

