/**
 * Running one image on each side: QEMU (`qemu-system-riscv64 -M virt -bios none`, the results
 * written through semihosting to a file) and wasmvisor's core in-process (a VirtMachine, the
 * results read from its memory), interpreted or with every page translated.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VirtMachine, type MachineStats } from "../../host/machine/virt";
import type { JitMode } from "../../host/jit/tier";
import { buildImage, RAM_BYTES, RESULTS_BASE, RESULT_BYTES, type CaseImage } from "./image";

export const QEMU = "qemu-system-riscv64";
/**
 * QEMU's hart made like wasmvisor's (host/machine/virt.ts HART_ISA): no hypervisor extension, no
 * Zbc, and the ID registers wasmvisor reads as zero.
 */
export const QEMU_CPU = "rv64,h=false,zbc=false,marchid=0,mimpid=0";
/** Instructions wasmvisor may run per case before the image counts as hung. */
const BUDGET_PER_CASE = 2_000_000;

export class Workdir {
  readonly dir = mkdtempSync(join(tmpdir(), "wasmvisor-core-diff-"));
  private n = 0;
  next(): { image: string; results: string } {
    const i = this.n++;
    return { image: join(this.dir, `image-${i}.bin`), results: join(this.dir, `results-${i}.bin`) };
  }
  close(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The results of `cases` on QEMU, or null if it did not power off within `timeoutMs`. */
export async function runQemu(cases: readonly CaseImage[], work: Workdir, timeoutMs = 20_000): Promise<Uint8Array | null> {
  const files = work.next();
  writeFileSync(files.image, buildImage(cases, files.results));
  const args = ["-M", "virt", "-cpu", QEMU_CPU, "-bios", "none", "-nographic", "-m", `${RAM_BYTES >> 20}M`, "-smp", "1",
    "-semihosting-config", "enable=on,target=native", "-kernel", files.image];
  const status = await new Promise<number | null>((resolve, reject) => {
    const child = spawn(QEMU, args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(err.code === "ENOENT" ? new Error(`${QEMU} not found: install qemu-system-misc`) : err);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      if (code !== 0 && code !== null) reject(new Error(`${QEMU} failed (status ${code}): ${stderr.trim().split("\n")[0]}`));
      else resolve(code);
    });
  });
  try {
    if (status === null) return null;
    const out = new Uint8Array(readFileSync(files.results));
    return out.length === cases.length * RESULT_BYTES ? out : null;
  } finally {
    rmSync(files.image, { force: true });
    rmSync(files.results, { force: true });
  }
}

/** The translation tier's figures of the last runWasmvisor (how much ran translated). */
export let lastJit: MachineStats["jit"] | null = null;

/** The results of `cases` on wasmvisor's core, or null if it did not power off within its budget. */
export function runWasmvisor(module: WebAssembly.Module, cases: readonly CaseImage[], jit: JitMode): Uint8Array | null {
  // Translated, each case runs twice: blocks are translated once they have run, so the second
  // run is the translated code's.
  const runs = jit === "off" ? 1 : 2;
  const m = new VirtMachine({ module, memory: RAM_BYTES, bios: null, kernel: { name: "core-diff", bytes: buildImage(cases, null, runs) }, jit, output: () => {} });
  try {
    let left = BUDGET_PER_CASE * cases.length * runs + 50_000_000;
    while (left > 0) {
      const r = m.step(1_000_000);
      if (r.state === "stopped") {
        lastJit = m.stats().jit ?? null;
        return r.reason.kind === "poweroff" ? m.core.physRead(RESULTS_BASE, cases.length * RESULT_BYTES)!.slice() : null;
      }
      left -= 1_000_000;
    }
    return null;
  } finally {
    m.close();
  }
}
