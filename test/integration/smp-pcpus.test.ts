// A VM's harts on two pCPU threads at once (host/machine/remote-harts.ts), through the
// hypervisor's own API: the Linux guest with 2 vCPUs on a host of 2 pCPUs runs hart 1 on the
// other pCPU, and keeps its counters exact (wv-smp torture) across what needs every hart back
// home: a pause and resume, a live snapshot and its restore (which spreads again), a reset. The
// built-in SBI is the firmware here (its IPIs and remote fences cross threads); the OpenSBI path
// is smp.test.ts's.
import { describe, test, expect, beforeAll, afterAll } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildLinuxGuest } from "../../guests/linux/build.mjs";
import { Hypervisor } from "../../host/hv/hypervisor";
import { nodePlatform } from "../../host/platform/node";
import { parseWvs } from "../../bench/smp";

let linux: { kernel: string; initramfs: string };
let hv: Hypervisor;
let dir: string;

beforeAll(async () => {
  linux = await buildLinuxGuest({ log: (line: string) => console.error(line) });
  dir = mkdtempSync(join(tmpdir(), "wasmvisor-smp-pcpus-"));
  hv = await Hypervisor.start(nodePlatform, { cpus: 2, balance: false, watchdogSeconds: 0 });
}, 3_600_000);

afterAll(async () => {
  await hv?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A VM's console: what it printed, and waiting for a pattern after a point. */
class Console {
  out = "";
  private waiters: (() => void)[] = [];
  private readonly handle;
  constructor(name: string) {
    this.handle = hv.attachConsole(name, (bytes) => {
      this.out += new TextDecoder("latin1").decode(bytes);
      for (const w of [...this.waiters]) w();
      return true;
    });
  }
  send(text: string): void {
    this.handle.write(new TextEncoder().encode(text));
  }
  expect(re: RegExp, from: number, ms = 120_000): Promise<number> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${re} within ${ms} ms; the console ends:\n${this.out.slice(-2000)}`)), ms);
      const check = () => {
        const m = re.exec(this.out.slice(from));
        if (!m) return;
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
        resolve(from + m.index + m[0].length);
      };
      this.waiters.push(check);
      check();
    });
  }
  detach(): void {
    this.handle.detach();
  }
}

const PROMPT = /# $/;

async function toPrompt(c: Console, from = 0): Promise<number> {
  const ready = await c.expect(/wasmvisor guest ready/, from, 300_000);
  c.send("\r");
  return c.expect(PROMPT, ready);
}

/** Torture on both vCPUs; asserts every counter exact. Returns where the console is after the prompt. */
async function torture(c: Console, at: number): Promise<number> {
  const n = 50_000;
  c.send(`wv-smp torture -t 2 -n ${n}\r`);
  const end = await c.expect(/WVS torture [^\n]*\n/, at, 120_000);
  const r = parseWvs(c.out.slice(at, end), "torture");
  for (const k of ["atomic", "atomic32", "mutex", "spin", "cas32", "cas64"]) expect(r.fields[k], c.out.slice(at, end)).toBe(String(2 * n));
  expect(r.fields.mp_errors).toBe("0");
  expect(r.verdict).toBe("ok");
  return c.expect(PROMPT, end);
}

/** Until the hypervisor has lent the VM's upper hart to the other pCPU (it does so once the VM runs). */
async function spreadTo(name: string): Promise<NonNullable<Awaited<ReturnType<Hypervisor["machineStats"]>>["spread"]>> {
  for (let i = 0; i < 100; i++) {
    const s = (await hv.machineStats(name)).spread;
    if (s) return s;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${name}'s harts were never spread over the pCPUs`);
}

describe("a VM's harts on two pCPUs", () => {
  test("hart 1 runs on the other pCPU; counters stay exact across pause, snapshot, restore and reset", async () => {
    await hv.create({ name: "smp", mode: "para", kernel: linux.kernel, initrd: linux.initramfs, append: "console=ttyS0", memory: "256M", smp: 2, jit: "on" });
    const c = new Console("smp");
    await hv.act("smp", "start");
    let at = await toPrompt(c);
    const spread = await spreadTo("smp");
    expect(spread.harts).toEqual([1]);
    expect(spread.pcpu).not.toBe(hv.info("smp").pcpu);
    at = await torture(c, at);
    // It ran there: CPU time on the other pCPU, and its own translations.
    const after = (await hv.machineStats("smp")).spread!;
    expect(after.cpuMs).toBeGreaterThan(0);
    expect(after.jit!.retired).toBeGreaterThan(0);

    // Pause gathers every hart home; resume sends hart 1 out again.
    await hv.act("smp", "pause");
    const paused = (await hv.registers("smp")) as unknown as { harts: unknown[] };
    expect(paused.harts.length).toBe(2);
    await hv.act("smp", "resume");
    at = await torture(c, at);

    // A live snapshot (hart 1 comes home for it), the VM running on; then its restore, spread too.
    const file = join(dir, "smp.snap");
    await hv.snapshot("smp", file);
    at = await torture(c, at);
    await hv.restore(file, { name: "smp2" });
    const c2 = new Console("smp2");
    c2.send("\r");
    let at2 = await c2.expect(PROMPT, 0);
    const spread2 = await spreadTo("smp2");
    expect(spread2.harts).toEqual([1]);
    at2 = await torture(c2, at2);

    // The same while both harts are busy (hart 1 running on the other thread, not parked in WFI):
    // a pause, a live snapshot and a look at the registers in the middle of the torture.
    const n = 400_000;
    c.send(`wv-smp torture -t 2 -n ${n}\r`);
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    await sleep(300);
    await hv.act("smp", "pause");
    await sleep(50);
    await hv.act("smp", "resume");
    await sleep(200);
    await hv.snapshot("smp", join(dir, "busy.snap"));
    await sleep(100);
    await hv.registers("smp");
    const end = await c.expect(/WVS torture [^\n]*\n/, at, 120_000);
    const busy = parseWvs(c.out.slice(at, end), "torture");
    for (const k of ["atomic", "atomic32", "mutex", "spin", "cas32", "cas64"]) expect(busy.fields[k], c.out.slice(at, end)).toBe(String(2 * n));
    expect(busy.verdict).toBe("ok");
    at = await c.expect(PROMPT, end);

    // A reset with hart 1 away and busy: the machine reboots and the guest comes up on both harts again.
    c.send("wv-smp spin -p 2 -n 3000000000\r");
    await sleep(500);
    await hv.act("smp", "reset");
    at = await toPrompt(c, at);
    c.send("grep -c ^processor /proc/cpuinfo\r");
    await c.expect(/\n2\r?\n/, at);
    at = await c.expect(PROMPT, at);
    at = await torture(c, at);
    c.detach();
    c2.detach();
    await hv.destroy("smp");
    await hv.destroy("smp2");
  }, 600_000);
});
