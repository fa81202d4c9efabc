// Boot suite: wall time from process start to the Linux guest's shell prompt, on wasmvisor (para
// mode on the built-in SBI; full mode through Debian's OpenSBI) and on qemu-system-riscv64 with
// the same kernel and initramfs.
import { spawn, spawnSync } from "node:child_process";
import { BIN, Session } from "../test/integration/cli";
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
  /**
   * Node's own start-up (`node -e 0`, median) in the environment the boots ran in, and in the
   * bench's own when that sets NODE_EXTRA_CA_CERTS (see BOOT_ENV).
   */
  node_start_s?: number;
  node_start_with_extra_ca_s?: number;
  runs: { para: number[]; full: number[]; fullInterpreted?: number[]; qemu: number[] };
}

/**
 * The environment wasmvisor boots in: the bench's, without NODE_EXTRA_CA_CERTS. Node 20 reads and
 * parses that file of certificates as the process starts, before any of wasmvisor's code (40 ms
 * for Debian's bundle on the bench machine, where the sandbox sets it); wasmvisor verifies no
 * certificate (a migration's TLS uses a pre-shared key) and a user's machine does not set it. The
 * report gives Node's start-up both ways.
 */
export const BOOT_ENV: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== "NODE_EXTRA_CA_CERTS"));

/** Node's start-up: seconds to run `node -e 0` (median of `runs`), in `env`. */
export function nodeStartSeconds(env: NodeJS.ProcessEnv, runs = 5): number {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    spawnSync(process.execPath, ["-e", "0"], { env, stdio: "ignore" });
    times.push((performance.now() - t0) / 1000);
  }
  return median(times);
}

/** Seconds from spawning `wasmvisor <args>` to the guest's shell prompt, or to its first line of userland output (`READY`, /init's). */
export async function timeToPrompt(args: string[], upTo: "prompt" | "ready" = "prompt"): Promise<number> {
  const t0 = performance.now();
  const s = new Session(args, { env: BOOT_ENV, command: BIN }); // as its shebang runs it (bin/wasmvisor.js)
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
    node_start_s: nodeStartSeconds(BOOT_ENV),
    ...(process.env.NODE_EXTRA_CA_CERTS ? { node_start_with_extra_ca_s: nodeStartSeconds(process.env) } : {}),
    runs: { para, full, fullInterpreted, qemu },
  };
  log(`  Linux to shell prompt (--jit ${jit}): para ${r.linux_para_s.toFixed(2)} s, full (OpenSBI) ${r.linux_full_s.toFixed(2)} s; interpreted (--jit off) ${r.linux_full_interpreted_s!.toFixed(2)} s` +
    (r.qemu_linux_s !== null ? `; qemu ${r.qemu_linux_s.toFixed(2)} s` : "") +
    `; Node's own start-up ${(r.node_start_s! * 1000).toFixed(0)} ms` +
    (r.node_start_with_extra_ca_s !== undefined ? ` (${(r.node_start_with_extra_ca_s * 1000).toFixed(0)} ms with this environment's NODE_EXTRA_CA_CERTS, left out of the boots)` : ""));
  return r;
}
