// Validates the project's own bare-metal test programs and benchmark guests on QEMU:
// each must exit with status 0 (HTIF exit code) and print its PASS line. The same
// ELFs later run on wasmvisor's core; this proves the programs themselves are right.
//
// HTIF flavour:  qemu-system-riscv64 -M spike -bios none -nographic -kernel prog.elf
// virt flavour:  qemu-system-riscv64 -M virt  -bios none -nographic -kernel virt/prog.elf
//   (UART + SiFive test finisher; QEMU's spike board has no `time` CSR / Sstc, so the
//    parts of priv and irq that need them only run there.)
import { spawn } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildBaremetal, PROGRAM_NAMES, HARNESS_PROGRAMS, type BaremetalBuild } from "../guests/baremetal/build.mjs";

const QEMU = "qemu-system-riscv64";

let build: BaremetalBuild;
const work = mkdtempSync(join(tmpdir(), "wasmvisor-qemu-"));
let outCounter = 0;
afterAll(() => rmSync(work, { recursive: true, force: true }));

beforeAll(async () => {
  build = await buildBaremetal();
}, 180_000);

interface QemuResult {
  status: number | null;
  stdout: string;
  stderr: string;
  seconds: number;
  timedOut: boolean;
}

// QEMU's HTIF console writes each character with a non-blocking 1-byte write and
// silently drops it on EAGAIN. Node's default stdio 'pipe' is a Unix socketpair, which
// fills after a few hundred 1-byte writes if the reader lags (it does under load), so
// guest output would go missing. A regular file never refuses a write: capture there.
function runQemu(machine: "spike" | "virt", elf: string, timeoutMs: number): Promise<QemuResult> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const outFile = join(work, `${machine}-${basename(elf)}-${process.pid}-${outCounter++}.out`);
    const outFd = openSync(outFile, "w");
    let child;
    try {
      child = spawn(QEMU, ["-M", machine, "-bios", "none", "-nographic", "-kernel", elf], {
        stdio: ["ignore", outFd, "pipe"],
      });
    } finally {
      closeSync(outFd);
    }
    let stderr = "";
    let timedOut = false;
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.on("error", (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(err.code === "ENOENT" ? new Error(`${QEMU} not found: install qemu-system-misc`) : err);
    });
    child.on("close", (status) => {
      clearTimeout(timer);
      const stdout = readFileSync(outFile, "utf8");
      resolve({ status, stdout, stderr, seconds: (performance.now() - start) / 1000, timedOut });
    });
  });
}

const isBench = (name: string) => name.startsWith("bench-");
// Programs with their own harness (virtio_bad, hostile) run on our machine only: QEMU
// answers some malformed descriptors differently (see test/virtio-guest.test.ts).
const tests = PROGRAM_NAMES.filter((n) => !isBench(n) && !HARNESS_PROGRAMS.includes(n));
const benches = PROGRAM_NAMES.filter(isBench);

function expectPass(name: string, r: QemuResult): void {
  const summary = `${name}: status ${r.status}${r.timedOut ? " (timed out)" : ""}\n${r.stdout}${r.stderr}`;
  expect(r.timedOut, summary).toBe(false);
  expect(r.status, summary).toBe(0);
  expect(r.stdout, summary).toMatch(new RegExp(`^PASS: ${name}\\b`, "m"));
  expect(r.stdout, summary).not.toMatch(/^FAIL/m);
}

describe("bare-metal test programs on QEMU -M spike (HTIF)", () => {
  it.each(tests)("%s", async (name) => {
    const r = await runQemu("spike", build.programs[name], 30_000);
    expectPass(name, r);
  }, 40_000);
});

describe("bare-metal test programs on QEMU -M virt (UART flavour)", () => {
  it.each(tests)("%s", async (name) => {
    const r = await runQemu("virt", build.virtPrograms[name], 30_000);
    expectPass(name, r);
    // virt has the time CSR and Sstc: nothing may be skipped there
    expect(r.stdout).not.toMatch(/^SKIP:/m);
  }, 40_000);
});

describe("benchmark guests on QEMU -M spike", () => {
  it.each(benches)("%s", async (name) => {
    const r = await runQemu("spike", build.programs[name], 60_000);
    expectPass(name, r);
    const m = /^BENCH name=(\S+) iters=(\d+) instret=(\d+) ticks=(\d+) checksum=0x([0-9a-f]{16})$/m.exec(r.stdout);
    expect(m, r.stdout).not.toBeNull();
    expect(`bench-${m![1]}`).toBe(name);
    console.log(
      `${name}: ${r.seconds.toFixed(2)} s wall, ${(Number(m![4]) / 1e7).toFixed(2)} s mtime, iters=${m![2]}` +
        ` (QEMU's minstret counts host ticks unless -icount is used)`,
    );
  }, 70_000);
});
