// The CLI lowers the threads V8 started with the process (its background compilers, the GC's
// helpers) below the threads that run vCPUs (bin/wasmvisor.js): seen from outside, in /proc.
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { buildBaremetal } from "../../guests/baremetal/build.mjs";
import { BUSY_LOOP } from "../busy-loop";
import { PCPU_YOUNG_GENERATION_MB } from "../../host/platform/node";

const built = (await buildBaremetal({ log: () => {} })).programs as Record<string, string>;

/** Each thread of process `pid`: its nice value and the CPU it has used (clock ticks). */
function threads(pid: number): { tid: number; nice: number; cpu: number }[] {
  return readdirSync(`/proc/${pid}/task`).map((t) => {
    const stat = readFileSync(`/proc/${pid}/task/${t}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // fields from the third on
    return { tid: Number(t), nice: Number(f[16]), cpu: Number(f[11]) + Number(f[12]) };
  });
}

/** The threads of `wasmvisor boot <args>` once its guest has run a second. */
async function bootThreads(args: string[]) {
  const child = spawn(process.execPath, ["bin/wasmvisor.js", "boot", ...args], { stdio: ["ignore", "pipe", "inherit"] });
  try {
    await new Promise((resolve) => setTimeout(resolve, 1500));
    return threads(child.pid!);
  } finally {
    child.kill("SIGKILL");
  }
}

describe("the CLI's threads", () => {
  it("the launcher's pCPU thread gets the young generation the platform gives the others", () => {
    // The launcher starts the first one before any of the platform's code is loaded.
    const launcher = readFileSync("bin/wasmvisor.js", "utf8");
    expect(launcher.match(/maxYoungGenerationSizeMb: (\d+)/g)).toEqual([`maxYoungGenerationSizeMb: ${PCPU_YOUNG_GENERATION_MB}`]);
  });

  it("a compile thread for the translation tier with --jit on (started by the launcher), none with --jit off", async () => {
    const dir = mkdtempSync(join(tmpdir(), "wasmvisor-threads-"));
    const busy = join(dir, "busy.bin");
    writeFileSync(busy, BUSY_LOOP);
    const guest = ["--bios", "none", "--kernel", busy];
    const on = await bootThreads([...guest, "--jit", "on"]);
    const off = await bootThreads([...guest, "--jit", "off"]);
    rmSync(dir, { recursive: true, force: true });
    expect(off.length).toBeGreaterThan(3); // main, V8's helpers, the pCPU: the process was there
    expect(on.length - off.length).toBe(1);
  }, 60_000);


  it("V8's helper threads run at nice 10; the main thread and the pCPU running the guest at 0", async () => {
    const child = spawn(process.execPath, ["bin/wasmvisor.js", "boot", "--bios", "none", "--kernel", built["bench-int"]!, "--jit", "off"], { stdio: ["ignore", "pipe", "inherit"] });
    try {
      let out = "";
      child.stdout!.on("data", (d: Buffer) => { out += d.toString(); });
      // Running for a while: the pCPU thread has used the most CPU by far.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      expect(out).not.toMatch(/PASS|FAIL/); // still running
      const ts = threads(child.pid!);
      const main = ts.find((t) => t.tid === child.pid)!;
      const busiest = ts.filter((t) => t !== main).sort((a, b) => b.cpu - a.cpu)[0]!;
      expect(main.nice).toBe(0);
      expect(busiest.nice).toBe(0);
      expect(busiest.cpu).toBeGreaterThan(50); // ticks of 10 ms: the guest ran there
      expect(ts.filter((t) => t.nice === 10).length).toBeGreaterThanOrEqual(2); // V8's pool
      expect(ts.every((t) => t.nice === 0 || t.nice === 10)).toBe(true);
    } finally {
      child.kill("SIGKILL");
    }
  }, 60_000);
});
