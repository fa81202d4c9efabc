// Live migration's protocol, between two hypervisors in this process (an in-process link in place
// of TLS): the VM goes on at the destination exactly where it was; whatever fails before the
// switch-over (a refusal, a link that dies) leaves it running at the source as if nothing had
// happened; and a destination given a stream that is garbage, truncated, corrupted or too big
// refuses it, says why, and keeps nothing.
import { describe, test, expect } from "vitest";
import { counterKernel } from "./counter-guest";
import { loadCoreModule } from "../../host/platform/node/core";
import { memoryPlatform } from "../../host/platform/memory";
import { Hypervisor } from "../../host/hv/hypervisor";
import { linkPair, type ByteLink } from "../../host/migration/link";
import { streamHeader, sectionHeader, listSections, bytesSource, type SectionTag } from "../../host/state/container";
import { crc32 } from "../../host/state/crc32";

const core = loadCoreModule();
const files = { "count.bin": counterKernel(10_000_000) }; // about 70 ms per digit
const key = new Uint8Array(32);

/** A destination, and a source whose links reach it through `wire` (which may tamper). */
async function hosts(wire: (toDest: ByteLink) => ByteLink = (l) => l, sourceFiles: Record<string, Uint8Array> = {}, destDirs?: string[]) {
  const destPlatform = memoryPlatform({ core, files });
  const dest = await Hypervisor.start(destPlatform, { balance: false, imageDirs: destDirs });
  const sent: Uint8Array[] = [];
  const sourcePlatform = memoryPlatform({
    core, files: { ...files, ...sourceFiles },
    connectMigration: async () => {
      const [a, b] = linkPair();
      void dest.incoming(b);
      const tapped: ByteLink = { ...a, write: (c) => { sent.push(c.slice()); return a.write(c); } };
      return wire(tapped);
    },
  });
  const source = await Hypervisor.start(sourcePlatform, { balance: false, migrationKey: key });
  return { source, dest, sent, sourcePlatform, destPlatform, close: async () => { await source.close(); await dest.close(); } };
}

function console(hv: Hypervisor, name: string, onText: (text: string) => void = () => {}): { text: string } {
  const out = { text: "" };
  hv.attachConsole(name, (b) => { out.text += new TextDecoder("latin1").decode(b); onText(out.text); });
  return out;
}

// A counter VM that is some way into its count. (It watches the instruction count, not the
// console: a pCPU on this thread keeps the event loop busy, and the control plane drains the
// console only when the guest pauses.)
async function runningCounter(hv: Hypervisor, name = "counter", extra: { drives?: string[] } = {}) {
  await hv.create({ name, kernel: "count.bin", memory: "16M", ...extra });
  const out = console(hv, name);
  await hv.act(name, "start");
  while ((await hv.stats(name)).instructions < 40_000_000) await new Promise((r) => setImmediate(r));
  return out;
}

describe("live migration between two hypervisors", () => {
  test("the VM goes on at the destination where it was, and is gone from the source", async () => {
    const h = await hosts();
    try {
      const before = await runningCounter(h.source);
      const r = await h.source.migrate("counter", "tcp:dest:1", { downtimeMs: 50 });
      expect(r).toMatchObject({ phase: "done" });
      expect(r.sentPages).toBeGreaterThan(16); // the pattern, the kernel, the DTB...
      expect(r.downtimeMs).toBeGreaterThan(0);
      expect(() => h.source.info("counter")).toThrow(/no VM named counter/);
      expect(h.dest.info("counter").state).toBe("running");
      const after = console(h.dest, "counter");
      expect((await h.dest.waitForEnd("counter")).exitCode).toBe(0);
      expect(before.text + after.text).toBe("0123456789");
      // What crossed: a state stream like any other (configuration first, END last).
      const stream = streamOf(h.sent);
      const tags = listSections(bytesSource(stream), "sent").map((s) => s.tag);
      expect(tags[0]).toBe("CONF");
      expect(tags.filter((t) => t === "MEM ").length).toBeGreaterThanOrEqual(1); // round 0 (and the last pages, if any were written)
    } finally {
      await h.close();
    }
  }, 60_000); // two hypervisors and a migration: seconds on a loaded machine

  test("a destination that refuses the VM leaves it running at the source", async () => {
    const h = await hosts();
    try {
      await h.dest.create({ name: "counter", kernel: "count.bin", memory: "16M" }); // the name is taken there
      const before = await runningCounter(h.source);
      await expect(h.source.migrate("counter", "tcp:dest:1")).rejects.toThrow(/refused the VM: a VM named counter exists already.*it goes on here/);
      expect(h.source.info("counter").state).toBe("running");
      expect((await h.source.waitForEnd("counter")).exitCode).toBe(0);
      expect(before.text).toBe("0123456789");
      expect(h.dest.list().map((v) => v.name)).toEqual(["counter"]); // only its own
    } finally {
      await h.close();
    }
  }, 60_000); // two hypervisors and a migration: seconds on a loaded machine

  test("a link that dies mid-way leaves the VM running at the source, and nothing at the destination", async () => {
    // How long a whole migration's stream is, to cut it early, half-way, and in its last bytes
    // (after the source has stopped the VM and closed its backends: it must take it back).
    const whole = await hosts();
    await runningCounter(whole.source);
    await whole.source.migrate("counter", "tcp:dest:1", { downtimeMs: 50 });
    await whole.close();
    const total = streamOf(whole.sent).length;
    expect(total).toBeGreaterThan(50_000);
    // The last cut is on the END section's payload itself, not at a byte count: this run's stream
    // may be shorter than the measured one (fewer pages dirtied), and a count past its end never cuts.
    const endTag = sectionHeader("END ", 8, 0).subarray(0, 4);
    for (const cutAt of [100, total >> 1, "END"] as const) {
      let bytes = 0;
      let afterEndHeader = false;
      const h = await hosts((l) => ({
        ...l,
        write(c) {
          bytes += c.length;
          const cut = cutAt === "END" ? afterEndHeader : bytes > cutAt;
          afterEndHeader = c.length === 16 && endTag.every((b, i) => c[i] === b);
          if (cut) { l.close(true); throw new Error("connection reset by peer"); }
          return l.write(c);
        },
      }));
      try {
        const before = await runningCounter(h.source);
        const err = await h.source.migrate("counter", "tcp:dest:1").then(() => null, (e: Error) => e.message);
        expect(err, `cut at ${cutAt} of ${total}`).toMatch(/failed: .*(reset|closed).*; it goes on here$/);
        expect(h.source.info("counter").state).toBe("running");
        expect((await h.source.waitForEnd("counter")).exitCode).toBe(0);
        expect(before.text).toBe("0123456789");
        for (let i = 0; i < 50 && h.dest.list().length; i++) await new Promise((r) => setTimeout(r, 10));
        expect(h.dest.list()).toEqual([]);
      } finally {
        await h.close();
      }
    }
  }, 60_000); // two hypervisors and a migration: seconds on a loaded machine
});

describe("block migration (--copy-storage)", () => {
  // A disk of 3 MiB: a pattern, zeros, and a last block that is not whole (3 MiB + 4 KiB).
  const disk = new Uint8Array((3 << 20) + 4096);
  for (let i = 0; i < (1 << 20); i++) disk[i] = (i * 7 + (i >>> 12)) & 0xff;
  disk.fill(0x5a, disk.length - 4096);
  const copiesAt = (p: { paths(): string[] }) => p.paths().filter((f) => /^\/copies\/counter\.\w+\.disk0\.qcow2$/.test(f));

  test("the VM goes on at the destination on a copy of its disk, byte for byte", async () => {
    const h = await hosts(undefined, { "disk.img": disk.slice() }, ["/copies"]);
    try {
      const before = await runningCounter(h.source, "counter", { drives: ["file=disk.img"] });
      const r = await h.source.migrate("counter", "tcp:dest:1", { downtimeMs: 50, copyStorage: true });
      expect(r.disk!.blocks).toBeGreaterThanOrEqual(17); // the 16 blocks of the pattern and the last one; zeros cost nothing
      const [copy] = copiesAt(h.destPlatform);
      expect(copy).toBeDefined();
      expect(h.dest.info("counter").state).toBe("running");
      const after = console(h.dest, "counter");
      expect((await h.dest.waitForEnd("counter")).exitCode).toBe(0);
      expect(before.text + after.text).toBe("0123456789");
      const d = h.destPlatform.openDisk(copy!, { format: "qcow2", readOnly: true, what: "the copy" });
      const got = new Uint8Array(d.size);
      d.read(0, got);
      d.close();
      expect(got.length).toBe(disk.length);
      expect(Buffer.compare(got, disk)).toBe(0);
      expect(Buffer.compare(h.sourcePlatform.file("disk.img")!, disk)).toBe(0); // the source's own is as it was
    } finally {
      await h.close();
    }
  }, 60_000); // two hypervisors and a migration: seconds on a loaded machine

  test("a link that dies mid-way leaves no copy behind at the destination", async () => {
    // Cut at the second disk section's header: the first one made the copy there.
    let diskSections = 0;
    const h = await hosts((l) => ({
      ...l,
      write(c) {
        if (c.length === 16 && new TextDecoder().decode(c.subarray(0, 4)) === "DISK" && ++diskSections === 2) {
          l.close(true);
          throw new Error("connection reset by peer");
        }
        return l.write(c);
      },
    }), { "disk.img": disk.slice() }, ["/copies"]);
    const made: string[] = [];
    const create = h.destPlatform.createDiskImage;
    h.destPlatform.createDiskImage = (path, opts) => { made.push(path); create(path, opts); };
    try {
      await runningCounter(h.source, "counter", { drives: ["file=disk.img"] });
      await expect(h.source.migrate("counter", "tcp:dest:1", { copyStorage: true })).rejects.toThrow(/it goes on here/);
      expect(made).toHaveLength(1); // the copy was made, then removed
      expect(h.source.info("counter").state).toBe("running");
      for (let i = 0; i < 50 && (h.dest.list().length || copiesAt(h.destPlatform).length); i++) await new Promise((r) => setTimeout(r, 10));
      expect(h.dest.list()).toEqual([]);
      expect(diskSections).toBe(2);
      expect(copiesAt(h.destPlatform)).toEqual([]);
    } finally {
      await h.close();
    }
  }, 60_000); // two hypervisors and a migration: seconds on a loaded machine
});

describe("block migration's copies", () => {
  const disk = new Uint8Array(1 << 20).fill(7);

  test("are made only in an image directory of the destination: one without refuses, and the VM goes on at the source", async () => {
    const h = await hosts(undefined, { "disk.img": disk.slice() });
    try {
      await runningCounter(h.source, "counter", { drives: ["file=disk.img"] });
      await expect(h.source.migrate("counter", "tcp:dest:1", { copyStorage: true })).rejects.toThrow(/takes copied disks only into an image directory.*it goes on here/);
      expect(h.source.info("counter").state).toBe("running");
      expect(h.destPlatform.paths().filter((f) => f.endsWith(".qcow2"))).toEqual([]);
    } finally {
      await h.close();
    }
  }, 60_000); // two hypervisors and a migration: seconds on a loaded machine

  test("are removed when the source goes away after the destination built the VM, before GO", async () => {
    const h = await hosts((l) => ({
      ...l,
      write(c) {
        if (c.length === 3 && new TextDecoder().decode(c) === "GO\n") {
          l.close(true);
          throw new Error("connection reset by peer");
        }
        return l.write(c);
      },
    }), { "disk.img": disk.slice() }, ["/copies"]);
    try {
      await runningCounter(h.source, "counter", { drives: ["file=disk.img"] });
      // (The source had committed: it does not run its copy either. A source that vanishes here is hostile or broken.)
      await expect(h.source.migrate("counter", "tcp:dest:1", { copyStorage: true })).rejects.toThrow(/it was told to run there/);
      for (let i = 0; i < 100 && (h.dest.list().length || h.destPlatform.paths().some((f) => f.startsWith("/copies/"))); i++) await new Promise((r) => setTimeout(r, 10));
      expect(h.dest.list()).toEqual([]);
      expect(h.destPlatform.paths().filter((f) => f.startsWith("/copies/"))).toEqual([]);
    } finally {
      await h.close();
    }
  }, 60_000); // two hypervisors and a migration: seconds on a loaded machine
});

describe("a destination that fails at the switch-over", () => {
  test("gets the VM back to the source, which goes on in the state it had", async () => {
    // The core's state is corrupted on the way: the destination finds it only once the VM has
    // stopped at the source and its backends are closed.
    const h = await hosts((l) => ({
      ...l,
      write(c) {
        if (new TextDecoder().decode(c.subarray(0, 13)) === '{"kind":"cpu"') {
          c = c.slice();
          c[20] ^= 1;
        }
        return l.write(c);
      },
    }));
    try {
      const before = await runningCounter(h.source);
      await expect(h.source.migrate("counter", "tcp:dest:1")).rejects.toThrow(/refused the VM: .*"CPU " .*checksum.*; it goes on here/);
      expect(h.source.info("counter").state).toBe("running");
      expect((await h.source.waitForEnd("counter")).exitCode).toBe(0);
      expect(before.text).toBe("0123456789");
      expect(h.dest.list()).toEqual([]);
    } finally {
      await h.close();
    }
  }, 60_000); // two hypervisors and a migration: seconds on a loaded machine
});

describe("the switch-over's commit point", () => {
  test("a source that never hears the VM runs at the destination does not run it too: neither copy rather than both", async () => {
    // The destination's "running" is lost on the way back (the link dies just then).
    const h = await hosts((l) => ({
      ...l,
      chunks: () => ({
        [Symbol.asyncIterator]: () => {
          const inner = l.chunks()[Symbol.asyncIterator]();
          return {
            async next(): Promise<IteratorResult<Uint8Array>> {
              const r = await inner.next();
              if (!r.done && new TextDecoder().decode(r.value).includes('"running"')) throw new Error("connection reset by peer");
              return r;
            },
          };
        },
      }),
    }));
    try {
      await runningCounter(h.source);
      await expect(h.source.migrate("counter", "tcp:dest:1")).rejects.toThrow(/it was told to run there, so it does not run here/);
      expect(h.source.info("counter").state).toBe("failed");
      expect(h.dest.info("counter").state).toBe("running");
      expect((await h.dest.waitForEnd("counter")).exitCode).toBe(0);
    } finally {
      await h.close();
    }
  }, 60_000); // two hypervisors and a migration: seconds on a loaded machine
});

describe("a destination given a hostile stream", () => {
  // Feeds `bytes` to a destination as a source would, and returns what it answered.
  async function feed(bytes: Uint8Array | Uint8Array[]): Promise<{ answer: string; dest: Hypervisor }> {
    const dest = await Hypervisor.start(memoryPlatform({ core, files }), { balance: false });
    const [src, dst] = linkPair();
    const done = dest.incoming(dst);
    for (const b of Array.isArray(bytes) ? bytes : [bytes]) src.write(b);
    src.close();
    let answer = "";
    for await (const c of src.chunks()) answer += new TextDecoder().decode(c);
    await done;
    return { answer, dest };
  }

  test("is refused with the reason, and nothing is left", async () => {
    // A real stream to take apart.
    const h = await hosts();
    await runningCounter(h.source);
    await h.source.migrate("counter", "tcp:dest:1", { downtimeMs: 50 });
    await h.close();
    const stream = streamOf(h.sent);
    const sections = listSections(bytesSource(stream), "sent");
    const mem = sections.find((s) => s.tag === "MEM ")!;

    const cases: [string, Uint8Array | Uint8Array[], RegExp][] = [
      ["garbage", new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n".repeat(4)), /not a wasmvisor VM state/],
      ["another version", (() => { const s = stream.slice(0, 64); s[8] = 9; return s; })(), /format version 9/],
      ["truncated", stream.subarray(0, mem.offset + 100), /closed the link before the VM was whole/],
      ["a corrupted page", (() => { const s = stream.slice(); s[mem.offset + mem.length - 5] ^= 1; return s; })(), /memory chunk \d+ .*fails its checksum/],
      ["a section claiming 4 GiB", [streamHeader(), sectionHeader("MEM " as SectionTag, 2 ** 32, 0)], /larger than the \d+ a stream may send at once|claims/],
      ["no configuration first", [streamHeader(), sectionHeader("ROM " as SectionTag, 1, crc32(new Uint8Array(1))), new Uint8Array(1)], /does not start with the VM's configuration/],
      ["a configuration of 2 MiB", [streamHeader(), sectionHeader("CONF" as SectionTag, 2 << 20, 0)], /larger than the 1048576 a stream may send at once/],
      ["the whole VM, then something else than GO", [stream, new TextEncoder().encode("NO\n")], /sent "NO\\n" instead of GO/],
    ];
    for (const [what, bytes, reason] of cases) {
      const { answer, dest } = await feed(bytes);
      try {
        expect(answer, what).toMatch(/^\{"(accepted|error)"/);
        expect(JSON.parse(answer.trim().split("\n").pop()!).error, what).toMatch(reason);
        expect(dest.list(), what).toEqual([]);
      } finally {
        await dest.close();
      }
    }
  }, 60_000); // two hypervisors and a migration: seconds on a loaded machine
});

/** What a source sent: the state stream, then GO once the destination was ready. */
function streamOf(sent: Uint8Array[]): Uint8Array {
  const all = concat(sent);
  expect(new TextDecoder().decode(all.subarray(-3))).toBe("GO\n");
  return all.subarray(0, -3);
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) { out.set(c, at); at += c.length; }
  return out;
}
