// A pCPU worker starts its translation tier's compile thread as it starts (Node's pcpu-worker.js),
// not with its first VM: a VM that arrives later (created, restored, migrated in) has its pages
// translated there, never on the guest's own thread (JitCompiler.meanwhile, which stalls the
// guest ~12 ms the first time). Real workers.
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
  test("is running before its first VM: that VM's hot page is translated on it, and stats say so", async () => {
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
