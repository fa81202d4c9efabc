// Snapshots through the hypervisor (the in-memory platform: files are byte arrays): a running VM
// is saved without stopping, restored lazily (pages come in on first touch, the rest between
// steps), and a restore leaves the pages it touched first beside the snapshot, for the next one.
import { describe, test, expect } from "vitest";
import { counterKernel } from "./counter-guest";
import { loadCoreModule } from "../../host/platform/node/core";
import { memoryPlatform } from "../../host/platform/memory";
import { Hypervisor } from "../../host/hv/hypervisor";
import { listSections, bytesSource } from "../../host/state/container";

const core = loadCoreModule();

async function host() {
  const files: Record<string, Uint8Array> = { "/img/count.bin": counterKernel(10_000_000) };
  const platform = memoryPlatform({ core, files });
  const hv = await Hypervisor.start(platform, { balance: false, imageDirs: ["/img"] });
  // The platform's own copy of a file (a view: changing it changes the file).
  const file = (path: string) => {
    const src = platform.openStateFile(path, { what: "test" });
    return src.read(0, src.size);
  };
  return { hv, file, platform };
}

function console(hv: Hypervisor, name: string): { text: string } {
  const out = { text: "" };
  hv.attachConsole(name, (b) => { out.text += new TextDecoder("latin1").decode(b); });
  return out;
}

describe("snapshots through the hypervisor", () => {
  test("a running VM is saved without stopping; each restore goes on from that instant, RAM coming in lazily", async () => {
    const { hv, file, platform } = await host();
    try {
      await hv.create({ name: "counter", kernel: "/img/count.bin", memory: "16M" });
      const before = console(hv, "counter");
      await hv.act("counter", "start");
      while ((await hv.stats("counter")).instructions < 40_000_000) await new Promise((r) => setImmediate(r));
      const r = await hv.snapshot("counter", "/img/c.wvs");
      expect(r).toMatchObject({ name: "counter", state: "running" });
      expect(r.downtimeMs).toBeLessThan(r.totalMs);
      expect(hv.info("counter").state).toBe("running");
      // Two memory sections: the first pass, and the pages written meanwhile.
      expect(listSections(bytesSource(file("/img/c.wvs")), "c").filter((s) => s.tag === "MEM ").length).toBeGreaterThanOrEqual(2);
      expect((await hv.waitForEnd("counter")).exitCode).toBe(0);
      expect(before.text).toBe("0123456789");

      const restored = await hv.restore("/img/c.wvs", { name: "again" });
      expect(restored.state).toBe("running");
      const after = console(hv, "again");
      expect((await hv.waitForEnd("again")).exitCode).toBe(0);
      // It went on from where the snapshot was taken, not from the start, and not past it.
      expect(after.text.length).toBeGreaterThan(0);
      expect(after.text.length).toBeLessThan(10);
      expect("0123456789".endsWith(after.text)).toBe(true);
      // Its first touches are beside the snapshot now, for the next restore to fetch first.
      const touched = JSON.parse(new TextDecoder().decode(file("/img/c.wvs.touched"))) as number[];
      expect(touched.length).toBeGreaterThan(0); // (what the fill between steps brought first is not a touch)
      expect(touched.every((p) => Number.isInteger(p) && p >= 0 && p < 4096)).toBe(true);
      // The record is read once the VM runs (by its first fill), not on the way there.
      const reads: string[] = [];
      const open = platform.openStateFile;
      platform.openStateFile = (path, opts) => { reads.push(path); return open.call(platform, path, opts); };
      const third = await hv.restore("/img/c.wvs", { name: "third", paused: true });
      expect(third.state).toBe("created");
      expect(reads).toEqual(["/img/c.wvs", "/img/c.wvs"]); // the control plane's, its pCPU's
      const out3 = console(hv, "third");
      await hv.act("third", "start");
      expect((await hv.waitForEnd("third")).exitCode).toBe(0);
      expect(reads.slice(2)).toEqual(["/img/c.wvs.touched"]);
      platform.openStateFile = open;
      expect(out3.text).toBe(after.text);
      // The touch record is only a hint: nonsense in it (a hostile file) costs nothing but the hint.
      for (const [i, junk] of ["[-1, 1e12, \"x\", 3.5, null, 7]", "[[[[", "[" + "9,".repeat(200_000) + "9]"].entries()) {
        const f = platform.createStateFile("/img/c.wvs.touched", { what: "test", replaces: new TextEncoder().encode("[") });
        f.write(new TextEncoder().encode(junk));
        f.commit();
        await hv.restore("/img/c.wvs", { name: `junk${i}` });
        const o = console(hv, `junk${i}`);
        expect((await hv.waitForEnd(`junk${i}`)).exitCode).toBe(0);
        expect(o.text).toBe(after.text);
      }
    } finally {
      await hv.close();
    }
  }, 30_000); // a guest that counts across a save and two restores: seconds on a loaded machine

  test("a snapshot outside the image directories is refused, and a restore of a corrupted one fails that VM only", async () => {
    const { hv, file } = await host();
    try {
      await hv.create({ name: "counter", kernel: "/img/count.bin", memory: "16M" });
      await expect(hv.snapshot("counter", "/etc/c.wvs")).rejects.toMatchObject({ status: 400, message: expect.stringMatching(/not in an image directory/) });
      await expect(hv.restore("/etc/passwd")).rejects.toMatchObject({ status: 400 });
      // Not over a file that is not a snapshot (a disk, a kernel), nor with a comma in its name.
      await expect(hv.snapshot("counter", "/img/count.bin")).rejects.toMatchObject({ status: 400, message: expect.stringMatching(/a file that is not a snapshot is there/) });
      expect(file("/img/count.bin").length).toBeGreaterThan(100);
      await expect(hv.snapshot("counter", "/img/a,b.wvs")).rejects.toMatchObject({ status: 400, message: expect.stringMatching(/may not contain ','/) });
      await hv.snapshot("counter", "/img/c.wvs", { stop: true });
      expect(hv.info("counter")).toMatchObject({ state: "stopped", reason: "saved to /img/c.wvs" });
      // A section past the configuration corrupted (the control plane reads only that): its
      // pCPU refuses it before building anything, and nothing is left.
      const good = file("/img/c.wvs").slice();
      const cpu = listSections(bytesSource(good), "c").find((x) => x.tag === "CPU ")!;
      file("/img/c.wvs")[cpu.offset + 5] ^= 0x10;
      const committed = hv.host().memoryCommitted;
      await expect(hv.restore("/img/c.wvs", { name: "broken" })).rejects.toMatchObject({ status: 400, message: expect.stringMatching(/section "CPU " at byte \d+ fails its checksum/) });
      expect(hv.list().map((v) => v.name)).toEqual(["counter"]);
      expect(hv.host().memoryCommitted).toBe(committed);
      file("/img/c.wvs").set(good);
      // A page's data corrupted: the restore reads only the index, so it starts; the page is
      // found bad when it comes in (touched, or filled between steps), and that VM fails.
      const s = file("/img/c.wvs");
      const mem = listSections(bytesSource(s), "c").find((x) => x.tag === "MEM ")!;
      s[mem.offset + mem.length - 1] ^= 0x55;
      await hv.restore("/img/c.wvs", { name: "bad" });
      expect(await hv.waitForEnd("bad")).toMatchObject({ state: "failed", reason: expect.stringMatching(/memory chunk \d+ .* fails its checksum/) });
      await expect(hv.restore("/img/c.wvs", { name: "counter" })).rejects.toMatchObject({ status: 409 }); // the name is taken
    } finally {
      await hv.close();
    }
  });
});
