// A host's VMs have their hot pages translated on their pCPU's compile thread (which a Node pCPU
// worker starts as it starts), never on the guest's own thread, and the hypervisor's VM stats say
// so (VmRunStats.jit). Real workers.
import { afterAll, describe, expect, test } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Hypervisor } from "../../host/hv/hypervisor";
import { nodePlatform } from "../../host/platform/node";
import { BUSY_LOOP } from "../busy-loop";

const dir = mkdtempSync(join(tmpdir(), "wasmvisor-ct-"));
const busy = join(dir, "busy.bin");
writeFileSync(busy, BUSY_LOOP);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("a host's compile thread", () => {
  test("translates a VM's hot page, none on the guest's thread, and the VM's stats say so", async () => {
    const hv = await Hypervisor.start(nodePlatform, { cpus: 1, balance: false });
    try {
      await new Promise((r) => setTimeout(r, 1500)); // a worker starts in well under a second
      await hv.create({ name: "loop", bios: "none", kernel: busy, memory: "16M", jit: "on" });
      await hv.act("loop", "start");
      let jit = (await hv.stats("loop")).jit;
      for (let i = 0; i < 200 && !(jit && jit.translations > 0); i++) {
        await new Promise((r) => setTimeout(r, 25));
        jit = (await hv.stats("loop")).jit;
      }
      expect(jit?.translations).toBeGreaterThan(0);
      expect(jit?.onThread).toBe(0);
      expect(jit?.retired).toBeGreaterThan(0);
    } finally {
      await hv.close();
    }
  }, 30_000);
});
