// Guest integer suite: CPU-bound integer programs inside the Linux guest — BusyBox's md5sum and
// sha256sum from its initramfs, over data dd makes in the guest, and its gzip and zcat (call-heavy
// code across many pages) over two copies of the BusyBox binary — timed by the guest's own clock
// (BusyBox's time), on wasmvisor (the interpreter alone, and with the translation tier) and on
// qemu-system-riscv64, each booting the same kernel and initramfs through OpenSBI.
import { Session } from "../test/integration/cli";
import { median } from "../host/util/stats";
import { DEFAULT_FIRMWARE } from "../host/platform/node";
import { READY, PROMPT, type Guest } from "./boot";

export interface GuestIntProgram {
  program: string;
  command: string;
  /** Seconds per run, the guest's `time` (real). */
  interpreter: number[];
  translated: number[];
  qemu: number[];
}

export interface GuestIntResult {
  programs: GuestIntProgram[];
  /** Geometric mean over the programs of QEMU's time / the translation tier's (1 = as fast). */
  ratio_vs_qemu: number | null;
}

export const PROGRAMS = [
  { program: "md5sum", command: "dd if=/dev/zero bs=64k count=512 2>/dev/null | md5sum" }, // 32 MiB
  { program: "sha256sum", command: "dd if=/dev/zero bs=64k count=128 2>/dev/null | sha256sum" }, // 8 MiB
  { program: "gzip", command: "gzip -c /tmp/z > /dev/null" }, // 2 x BusyBox, about 4.6 MB
  { program: "zcat", command: "zcat /tmp/z.gz > /dev/null" },
];
/** Run once at the prompt before the programs: gzip's and zcat's input, made in the guest's tmpfs. */
export const SETUP = "cat /bin/busybox /bin/busybox > /tmp/z && gzip -c /tmp/z > /tmp/z.gz && echo setup-$((40+2))"; // the answer, not the echoed command, says it ran

/** Seconds from BusyBox time's "real 0m 1.23s" line. */
export function parseTime(output: string): number {
  const m = /real\s+(\d+)m\s*([\d.]+)s/.exec(output);
  if (!m) throw new Error(`no time summary in:\n${output.slice(-1000)}`);
  return Number(m[1]) * 60 + Number(m[2]);
}

/** Boot to the prompt, run each program `runs` times under `time`; seconds per program. */
export async function timeInGuest(session: Session, runs: number): Promise<number[][]> {
  try {
    const ready = await session.expect(READY, 300_000);
    session.send("\r");
    let at = await session.expect(PROMPT, 60_000, ready);
    session.send(`${SETUP}\r`);
    at = await session.expect("setup-42", 120_000, at);
    at = await session.expect(PROMPT, 60_000, at);
    const out: number[][] = [];
    for (const p of PROGRAMS) {
      const times: number[] = [];
      for (let i = 0; i < runs; i++) {
        session.send(`time sh -c '${p.command}'\r`);
        const end = await session.expect(/real\s+\d+m\s*[\d.]+s/, 600_000, at);
        times.push(parseTime(session.out.slice(at, end + 40)));
        at = await session.expect(PROMPT, 60_000, end);
      }
      out.push(times);
    }
    return out;
  } finally {
    session.kill();
  }
}

export async function guestIntSuite(g: Guest, runs: number, withQemu: boolean, log: (s: string) => void): Promise<GuestIntResult> {
  const wasmvisor = (jit: "off" | "on") => new Session(["boot", "--mode", "full", "--jit", jit, "--kernel", g.kernel, "--initrd", g.initramfs, "--append", "console=ttyS0"]);
  const interpreter = await timeInGuest(wasmvisor("off"), runs);
  const translated = await timeInGuest(wasmvisor("on"), runs);
  const qemu = withQemu
    ? await timeInGuest(new Session(["-M", "virt", "-m", "256M", "-nographic", "-bios", DEFAULT_FIRMWARE, "-kernel", g.kernel, "-initrd", g.initramfs,
      "-append", "console=ttyS0"], { command: "qemu-system-riscv64" }), runs)
    : null;
  const programs = PROGRAMS.map((p, i) => ({ ...p, interpreter: interpreter[i], translated: translated[i], qemu: qemu?.[i] ?? [] }));
  for (const p of programs) {
    log(`  ${p.program.padEnd(10)} interpreter ${median(p.interpreter).toFixed(2)} s, translated ${median(p.translated).toFixed(2)} s` +
      (qemu ? `, qemu ${median(p.qemu).toFixed(2)} s (${((100 * median(p.qemu)) / median(p.translated)).toFixed(0)}% of QEMU's speed)` : ""));
  }
  const ratio = qemu ? Math.exp(programs.reduce((s, p) => s + Math.log(median(p.qemu) / median(p.translated)), 0) / programs.length) : null;
  return { programs, ratio_vs_qemu: ratio };
}
