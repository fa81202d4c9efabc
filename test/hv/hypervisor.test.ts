// The Hypervisor's containment of a dead pCPU worker: only the VMs homed on it fail, with the
// reason, and a fresh worker takes its place. (Real workers; the test kills one from outside,
// as a crash of its thread would.)
import { describe, test, expect, afterAll } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Hypervisor } from "../../host/hv/hypervisor";
import { nodePlatform } from "../../host/platform/node";
import { asm } from "../../host/util/riscv-asm";
import { BUSY_LOOP } from "../busy-loop";

const dir = mkdtempSync(join(tmpdir(), "wasmvisor-hv-"));
const busy = join(dir, "busy.bin");
writeFileSync(busy, BUSY_LOOP);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("a pCPU worker that dies", () => {
  test("fails only its VMs, says why, and is replaced", async () => {
    const hv = await Hypervisor.start(nodePlatform, { cpus: 2, balance: false });
    try {
      for (const name of ["a", "b", "c", "d"]) {
        await hv.create({ name, bios: "none", kernel: busy, memory: "16M" });
        await hv.act(name, "start");
      }
      const onZero = hv.list().filter((v) => v.pcpu === 0).map((v) => v.name);
      const onOne = hv.list().filter((v) => v.pcpu === 1).map((v) => v.name);
      expect(onZero.length).toBe(2);
      // White-box: the worker thread of pCPU 0, as a crash would end it.
      await (hv as unknown as { homes: { thread: { terminate(): Promise<void> } }[] }).homes[0].thread.terminate();
      for (let i = 0; i < 100 && hv.info(onZero[0]).state !== "failed"; i++) await new Promise((r) => setTimeout(r, 20));
      for (const name of onZero) expect(hv.info(name)).toMatchObject({ state: "failed", reason: "its pCPU worker 0 died" });
      for (const name of onOne) {
        const before = (await hv.stats(name)).instructions;
        await new Promise((r) => setTimeout(r, 100));
        expect(hv.info(name).state).toBe("running");
        expect((await hv.stats(name)).instructions).toBeGreaterThan(before);
      }
      // pCPU 0 is back: a new VM can live there.
      for (const name of onZero) await hv.destroy(name);
      let placed = -1;
      for (let i = 0; i < 100 && placed !== 0; i++) {
        await new Promise((r) => setTimeout(r, 20));
        const v = await hv.create({ name: `new${i}`, bios: "none", kernel: busy, memory: "16M" }).catch(() => null);
        if (v) {
          placed = v.pcpu;
          if (placed !== 0) await hv.destroy(v.name);
          else await hv.act(v.name, "start");
        }
      }
      expect(placed).toBe(0);
    } finally {
      await hv.close();
    }
  });
});

describe("the guest's clock", () => {
  test("does not go back when the VM moves to a pCPU whose thread started later", async () => {
    // The guest reads mtime without end; should it ever see it go back, it fails with code 3.
    const watch = join(dir, "clock-watch.bin");
    writeFileSync(watch, asm`
      rdtime t0
    1:
      rdtime t1
      bltu t1, t0, 2f
      mv t0, t1
      j 1b
    2:
      li t2, 0x100000
      li t3, ${(3 << 16) | 0x3333}
      sw t3, 0(t2)
      j 2b
    `);
    const hv = await Hypervisor.start(nodePlatform, { cpus: 2, balance: false });
    try {
      // A pCPU thread replaced a second from now has a clock of its own that starts later.
      await new Promise((r) => setTimeout(r, 1000));
      const homes = (hv as unknown as { homes: { alive: boolean; thread: { terminate(): Promise<void> } }[] }).homes;
      await homes[1].thread.terminate();
      for (let i = 0; i < 200 && !homes[1].alive; i++) await new Promise((r) => setTimeout(r, 20));
      expect(homes[1].alive).toBe(true);
      await hv.create({ name: "clock", bios: "none", kernel: watch, memory: "16M", onFailure: "keep" });
      expect(hv.info("clock").pcpu).toBe(0);
      await hv.act("clock", "start");
      await new Promise((r) => setTimeout(r, 200));
      await hv.move("clock", 1);
      await new Promise((r) => setTimeout(r, 300));
      expect(hv.info("clock")).toMatchObject({ pcpu: 1, state: "running" });
    } finally {
      await hv.close();
    }
  }, 30_000);
});
