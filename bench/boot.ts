// Boot suite: wall time from process start to the Linux guest's shell prompt, on wasmvisor (para
// mode on the built-in SBI; full mode through Debian's OpenSBI) and on qemu-system-riscv64 with
// the same kernel and initramfs.
import { spawn } from "node:child_process";
import { Session } from "../test/integration/cli";
import { median } from "../host/util/stats";
import { DEFAULT_FIRMWARE, nodePlatform } from "../host/platform/node";
import type { JitMode } from "../host/jit/tier";

export const READY = "wasmvisor guest ready";
export const PROMPT = /# $/m;

export interface Guest { kernel: string; initramfs: string }

export interface BootResult {
  /** The translation tier's mode of the para and full runs: the platform's default ("on" since 2026-12-07, "off" before; absent then). */
  jit?: JitMode;
  linux_para_s: number;
  linux_full_s: number;
  /** Full mode with the interpreter alone (--jit off), beside the default. */
  linux_full_interpreted_s?: number;
  qemu_linux_s: number | null;
  runs: { para: number[]; full: number[]; fullInterpreted?: number[]; qemu: number[] };
}

/** Seconds from spawning `wasmvisor <args>` to the guest's shell prompt, or to its first line of userland output (`READY`, /init's). */
export async function timeToPrompt(args: string[], upTo: "prompt" | "ready" = "prompt"): Promise<number> {
  const t0 = performance.now();
  const s = new Session(args);
  try {
    const at = await s.expect(READY, 300_000);
    if (upTo === "ready") return (performance.now() - t0) / 1000;
    s.send("\r");
    await s.expect(PROMPT, 60_000, at);
    return (performance.now() - t0) / 1000;
  } finally {
    s.kill();
  }
}

/** The same on qemu-system-riscv64 (OpenSBI, the same kernel and initramfs). */
export async function qemuTimeToPrompt(g: Guest, upTo: "prompt" | "ready" = "prompt"): Promise<number> {
  const t0 = performance.now();
  const child = spawn("qemu-system-riscv64", ["-M", "virt", "-m", "256M", "-nographic", "-bios", DEFAULT_FIRMWARE,
    "-kernel", g.kernel, "-initrd", g.initramfs, "-append", "console=ttyS0"], { stdio: ["pipe", "pipe", "ignore"] });
  let out = "";
  try {
    return await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`qemu did not reach the prompt:\n${out.slice(-2000)}`)), 300_000);
      let ready = -1;
      child.stdout!.on("data", (d: Buffer) => {
        out += d.toString("latin1");
        if (ready < 0 && out.includes(READY)) {
          ready = out.indexOf(READY);
          if (upTo === "ready") {
            clearTimeout(timer);
            return resolve((performance.now() - t0) / 1000);
          }
          child.stdin!.write("\r");
        }
        if (ready >= 0 && PROMPT.test(out.slice(ready))) {
          clearTimeout(timer);
          resolve((performance.now() - t0) / 1000);
        }
      });
    });
  } finally {
    child.kill("SIGKILL");
  }
}

export async function bootSuite(g: Guest, runs: number, withQemu: boolean, log: (s: string) => void): Promise<BootResult> {
  const base = ["boot", "--kernel", g.kernel, "--initrd", g.initramfs, "--append", "console=ttyS0"];
  // As a user boots (the default tier, named so that WASMVISOR_JIT does not change what is measured), and interpreted beside it.
  const jit = nodePlatform.defaultJit!();
  const para: number[] = [], full: number[] = [], fullInterpreted: number[] = [], qemu: number[] = [];
  for (let i = 0; i < runs; i++) {
    para.push(await timeToPrompt([...base, "--mode", "para", "--jit", jit]));
    full.push(await timeToPrompt([...base, "--mode", "full", "--jit", jit]));
    fullInterpreted.push(await timeToPrompt([...base, "--mode", "full", "--jit", "off"]));
    if (withQemu) qemu.push(await qemuTimeToPrompt(g));
  }
  const r: BootResult = {
    jit, linux_para_s: median(para), linux_full_s: median(full), linux_full_interpreted_s: median(fullInterpreted), qemu_linux_s: withQemu ? median(qemu) : null,
    runs: { para, full, fullInterpreted, qemu },
  };
  log(`  Linux to shell prompt (--jit ${jit}): para ${r.linux_para_s.toFixed(2)} s, full (OpenSBI) ${r.linux_full_s.toFixed(2)} s; interpreted (--jit off) ${r.linux_full_interpreted_s!.toFixed(2)} s` +
    (r.qemu_linux_s !== null ? `; qemu ${r.qemu_linux_s.toFixed(2)} s` : ""));
  return r;
}
