// Post-copy migration: a guest that writes memory faster than the link carries it runs at the
// destination before all of its memory has come; the pages it touches first are fetched on
// demand, the rest follow, and every page ends up as the guest last wrote it. The destination
// is a Node host (its pCPU is a worker thread, which may wait for a page); the source runs on
// this thread and reaches it over an in-process link.
import { describe, test, expect } from "vitest";
import { dirtyingKernel } from "./counter-guest";
import { loadCoreModule } from "../../host/platform/node/core";
import { memoryPlatform } from "../../host/platform/memory";
import { nodePlatform } from "../../host/platform/node";
import { Hypervisor } from "../../host/hv/hypervisor";
import { GO, linkPair, type ByteLink } from "../../host/migration/link";

const core = loadCoreModule();
const files = { "dirty.bin": dirtyingKernel(3000) };

async function hosts(wire: (toDest: ByteLink) => ByteLink = (l) => l) {
  const dest = await Hypervisor.start(nodePlatform, { cpus: 1, balance: false, watchdogSeconds: 0 });
  const source = await Hypervisor.start(memoryPlatform({
    core, files,
    connectMigration: async () => {
      const [a, b] = linkPair(256 << 10);
      void dest.incoming(b);
      return wire(a);
    },
  }), { balance: false, migrationKey: new Uint8Array(32) });
  return { source, dest, close: async () => { await source.close(); await dest.close(); } };
}

function consoleText(hv: Hypervisor, name: string): { text: string } {
  const out = { text: "" };
  hv.attachConsole(name, (b) => { out.text += new TextDecoder("latin1").decode(b); });
  return out;
}

async function runningWriter(hv: Hypervisor) {
  await hv.create({ name: "writer", kernel: "dirty.bin", memory: "32M" });
  const out = consoleText(hv, "writer");
  await hv.act("writer", "start");
  while ((await hv.stats("writer")).instructions < 20_000_000) await new Promise((r) => setImmediate(r));
  return out;
}

// A link slower than the guest's writes once the VM runs at the destination: each chunk after GO
// waits a millisecond before the next may go. (An in-process link is fast: on a loaded machine every page
// could arrive before the destination's pCPU thread first ran the guest, which then asked for none.)
function slowAfterGo(l: ByteLink): ByteLink {
  let go = false;
  return {
    ...l,
    write(c) {
      if (!go && c.length === GO.length && GO.every((b, i) => c[i] === b)) go = true;
      const room = l.write(c);
      return go ? false : room;
    },
    drained: () => (go ? l.drained().then(() => new Promise((r) => setTimeout(r, 1))) : l.drained()),
  };
}

describe("post-copy migration", () => {
  test("a guest that writes faster than the link runs at the destination at once, and no page is lost or stale", async () => {
    const h = await hosts(slowAfterGo);
    try {
      const before = await runningWriter(h.source);
      const r = await h.source.migrate("writer", "tcp:dest:1", { downtimeMs: 1, maxRounds: 2, postcopy: true });
      expect(r.phase).toBe("done");
      expect(r.stoppedBy).not.toBe("downtime");
      // Its 2048 pages were all being written: most of them followed the VM.
      expect(r.postcopy!.pages).toBeGreaterThan(1000);
      expect(r.postcopy!.sent).toBe(r.postcopy!.pages);
      expect(r.postcopy!.asked).toBeGreaterThan(0); // it ran before its pages came, and asked for some
      expect(h.dest.info("writer").state).toBe("running");
      const after = consoleText(h.dest, "writer");
      expect((await h.dest.waitForEnd("writer")).exitCode).toBe(0);
      expect(before.text + after.text).toBe("0123456789");
    } finally {
      await h.close();
    }
  }, 60_000);

  test("a link that dies during post-copy fails the VM at the destination, saying why, and the source does not run it either", async () => {
    // The link is cut once the VM runs at the destination and some of its last pages are on the way.
    let cut = false;
    let sinceGo = -1;
    const h = await hosts((l) => ({
      ...l,
      write(c) {
        if (sinceGo < 0 && c.length === 3 && new TextDecoder().decode(c) === "GO\n") sinceGo = 0;
        else if (sinceGo >= 0 && (sinceGo += c.length) > 1 << 20 && !cut) {
          cut = true;
          l.close(true);
        }
        if (cut) throw new Error("connection reset by peer");
        return l.write(c);
      },
    }));
    try {
      await runningWriter(h.source);
      const err = await h.source.migrate("writer", "tcp:dest:1", { downtimeMs: 1, maxRounds: 2, postcopy: true }).then(() => null, (e: Error) => e.message);
      expect(cut).toBe(true);
      expect(err).toMatch(/reset.*it was told to run there, so it does not run here/);
      expect(h.source.info("writer")).toMatchObject({ state: "failed" });
      const end = await h.dest.waitForEnd("writer");
      expect(end.state).toBe("failed");
      expect(end.reason).toMatch(/^migrating in from .*: (lazy memory: RAM page \d+ .* could not be brought in: the page did not come|not all of its memory came): the link was reset$/);
    } finally {
      await h.close();
    }
  }, 60_000);

  test("a source that sends a post-copy page twice is refused: the VM fails at the destination, saying why", async () => {
    // The first memory section after GO goes twice (a page again: what a hostile source might do
    // to overwrite what the guest has written since).
    let afterGo = false;
    let capturing = false;
    let captured: Uint8Array[] | null = null;
    const isHeader = (c: Uint8Array, tag?: string) => c.length === 16 && /^[A-Z ]{4}$/.test(new TextDecoder().decode(c.subarray(0, 4))) &&
      (tag === undefined || new TextDecoder().decode(c.subarray(0, 4)) === tag);
    const h = await hosts((l) => ({
      ...l,
      write(c) {
        if (!afterGo && c.length === 3 && new TextDecoder().decode(c) === "GO\n") afterGo = true;
        else if (afterGo && !captured && !capturing && isHeader(c, "MEM ")) {
          capturing = true;
          captured = [];
        } else if (capturing && isHeader(c)) {
          capturing = false;
          for (const d of captured!) l.write(d);
        }
        if (capturing) captured!.push(c.slice());
        return l.write(c);
      },
    }));
    try {
      await runningWriter(h.source);
      const err = await h.source.migrate("writer", "tcp:dest:1", { downtimeMs: 1, maxRounds: 2, postcopy: true }).then(() => null, (e: Error) => e.message);
      expect(captured).not.toBeNull();
      expect(err).toMatch(/RAM page \d+ again, or one that was not to come.*it was told to run there, so it does not run here/);
      const end = await h.dest.waitForEnd("writer");
      expect(end).toMatchObject({ state: "failed", reason: expect.stringMatching(/RAM page \d+ again, or one that was not to come/) });
    } finally {
      await h.close();
    }
  }, 60_000);
});
