// The one state format: a VM saved mid-run to a stream and built again from it goes on exactly
// where it was, as often as it is restored; a stream that is truncated, corrupted, from
// another version or crafted to lie is refused with an error saying what is wrong.
import { describe, test, expect } from "vitest";
import { counterKernel } from "./counter-guest";
import type { VirtMachine } from "../../host/machine/virt";
import { runToStop } from "../board";
import { loadCoreModule } from "../../host/platform/node/core";
import { memoryPlatform } from "../../host/platform/memory";
import { DEFINITION_PARSING, parseVmConfig, vmDefinition } from "../../host/config/parse";
import { buildMachine, loadBootImages, restoreMachine } from "../../host/vm/build";
import { writeVmState, openVmState, readStateConfig, StateFormatError, StateWriter, TO_FILE, TO_LINK, writeConfig, writeMachine, writeMemory } from "../../host/state/vm-state";
import { bytesSource, HEADER_BYTES, SECTION_HEADER_BYTES, listSections, sectionHeader, streamHeader, type SectionTag } from "../../host/state/container";
import { crc32 } from "../../host/state/crc32";

const module = loadCoreModule();
const platform = memoryPlatform({ core: module, files: { "count.bin": counterKernel() } });
const config = parseVmConfig({ name: "counter", kernel: "count.bin", memory: "16M", smp: 2 }, DEFINITION_PARSING);

function io(out: { text: string }) {
  return { output: (b: Uint8Array) => { out.text += new TextDecoder("latin1").decode(b); }, input: () => -1, wake: () => {} };
}

async function started(out: { text: string }, digits: number): Promise<VirtMachine> {
  const m = await buildMachine(config, loadBootImages(config, platform), platform, io(out));
  while (out.text.length < digits) expect(m.step(50_000).state).toBe("running");
  return m;
}

function save(m: VirtMachine): Uint8Array {
  const chunks: Uint8Array[] = [];
  writeVmState((c) => chunks.push(c.slice()), config, m, Date.now());
  const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) { all.set(c, at); at += c.length; }
  return all;
}

// The sections of a stream, to rebuild it with one changed: what an attacker can do (checksums
// are not a defence against a crafted stream, only against accidents).
function sections(stream: Uint8Array) {
  return listSections(bytesSource(stream), "s").map((s) => ({ tag: s.tag, payload: stream.slice(s.offset, s.offset + s.length), crc: s.crc }));
}
function rebuild(parts: { tag: string; payload: Uint8Array; crc?: number }[]): Uint8Array {
  const pieces: Uint8Array[] = [streamHeader()];
  for (const p of parts) pieces.push(sectionHeader(p.tag as SectionTag, p.payload.length, p.crc ?? crc32(p.tag === "MEM " ? memoryIndex(p.payload) : p.payload)), p.payload);
  const end = new Uint8Array(8);
  new DataView(end.buffer).setUint32(0, parts.length, true);
  pieces.push(sectionHeader("END " as SectionTag, 8, crc32(end)), end);
  const out = new Uint8Array(pieces.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of pieces) { out.set(c, at); at += c.length; }
  return out;
}
// A memory section's checksum covers its index only.
const memoryIndex = (p: Uint8Array) => p.subarray(0, 8 + 20 * new DataView(p.buffer, p.byteOffset).getUint32(4, true));
const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const unjson = (b: Uint8Array) => JSON.parse(new TextDecoder().decode(b));

async function restore(stream: Uint8Array, out: { text: string }, opts: { name?: string; lazy?: boolean } = {}): Promise<VirtMachine> {
  return restoreMachine(openVmState(bytesSource(stream), "snapshot", { name: opts.name }), platform, io(out), { clock: { kind: "continue" }, lazy: opts.lazy });
}

describe("a VM saved to a state stream and restored", () => {
  test("goes on where it was, twice from the same stream (rollback), and as the original does", async () => {
    const before = { text: "" };
    const a = await started(before, 3);
    const stream = save(a);
    const instret = a.core.totalInstret();
    const mtime = a.core.exports.mtimeNow();

    const outs = [{ text: "" }, { text: "" }, { text: "" }];
    // Twice with all of RAM loaded first, once with RAM coming in as it is touched.
    const restored = await Promise.all(outs.map((o, i) => restore(stream, o, { lazy: i === 2 })));
    const lazy = restored[2]!.core;
    expect(lazy.lazy).toBe(true);
    const absent = lazy.lazyPending();
    expect(absent).toBeGreaterThan(16);
    expect(restored[0]!.core.totalInstret()).toBe(instret);
    expect(Math.abs(restored[0]!.core.exports.mtimeNow() - mtime)).toBeLessThan(10_000_000); // within a second: the clock continues
    for (const m of restored) expect(runToStop(m, 30)).toEqual({ kind: "poweroff", code: 0 });
    // The lazy one fetched what it touched (its pattern, its code), not the pages it never used again.
    expect(lazy.touchOrder().length).toBeGreaterThan(16);
    expect(lazy.lazyPending()).toBe(absent - lazy.touchOrder().length);
    expect(runToStop(a, 30)).toEqual({ kind: "poweroff", code: 0 });
    expect(before.text).toBe("0123456789");
    for (const o of outs) expect("012" + o.text).toBe("0123456789");
  });

  test("keeps the configuration (through the definition parser), with a new name if asked", async () => {
    const a = await started({ text: "" }, 1);
    const stream = save(a);
    const opened = openVmState(bytesSource(stream), "snap", { name: "copy" });
    expect(opened.config).toEqual({ ...config, name: "copy" });
    expect(parseVmConfig(vmDefinition(config), DEFINITION_PARSING)).toEqual(config);
    // Everything a configuration can say survives being written as a definition, defaults of
    // the command line included (its user NICs reach every loopback port; a definition's none).
    const rich = parseVmConfig({
      name: "rich", mode: "full", paging: "shadow", memory: "1536M", smp: 3, bios: "/fw.bin", kernel: "/k", initrd: "/i", append: "console=ttyS0 quiet",
      drives: ["file=/a.img,format=raw,serial=abc,readonly=on", "file=/b.qcow2,if=virtio"],
      nets: ["user,hostfwd=tcp:127.0.0.1:8080-10.0.2.15:80,hostfwd=tcp::0-:22,loopback=off,loopback=5432", "user,restrict=on,model=virtio", "user", "switch=lan"],
      cpu: { weight: 3, cap: 7 }, limits: { diskBytesPerSec: 1e6, sockets: 9 }, onFailure: "restart",
    }, { naming: "flags", defaultMode: "full", defaultLoopback: "on" });
    expect(parseVmConfig(vmDefinition(rich), DEFINITION_PARSING)).toEqual(rich);
    // Zero pages are left out: 16 MiB of RAM, a few pages written.
    expect(opened.pages).toBeGreaterThan(16);
    expect(opened.pages).toBeLessThan(64);
    expect(stream.length).toBeLessThan(128 * 1024);
  });
});

describe("the harts' debug triggers", () => {
  test("the guest's are restored, a debugger's are not, and a stream from before triggers restores with none", async () => {
    const a = await started({ text: "" }, 1);
    const guest = (6n << 60n) | (1n << 6n) | 4n; // mcontrol6, M, execute
    a.core.setCsr(0, 0x7a0, 2);
    a.core.setCsr(0, 0x7a2, 0x80001234n);
    a.core.setCsr(0, 0x7a1, guest);
    a.core.setCsr(0, 0x7a0, 1);
    const debuggers = guest | (1n << 59n) | (1n << 12n); // dmode, enter debug mode
    a.core.debugSetCsr(1, 0x7a0, 3n);
    a.core.debugSetCsr(1, 0x7a2, 0x80005678n);
    a.core.debugSetCsr(1, 0x7a1, debuggers);
    a.core.debugSetCsr(1, 0x7a0, 0n);
    const stream = save(a);
    const b = (await restore(stream, { text: "" })).core;
    const trigger = (c: typeof b, hart: number, i: number) => {
      c.setCsr(hart, 0x7a0, i);
      return [c.csr(hart, 0x7a1), c.csr(hart, 0x7a2)];
    };
    expect(b.csr(0, 0x7a0)).toBe(1n); // tselect as it was
    expect(trigger(b, 0, 2)).toEqual([guest, 0x80001234n]);
    expect(trigger(a.core, 1, 3)).toEqual([debuggers, 0x80005678n]);
    expect(trigger(b, 1, 3)).toEqual([15n << 60n, 0n]); // disabled, the guest's to take
    // Without the fields (an older stream): every trigger as at reset.
    const parts = sections(stream).map((p) => {
      if (p.tag !== "CPU ") return { tag: p.tag, payload: p.payload, crc: p.crc };
      const c = unjson(p.payload);
      for (const h of c.harts) { delete h.triggers; delete h.tselect; }
      return { tag: p.tag, payload: json(c) };
    });
    const old = (await restore(rebuild(parts), { text: "" })).core;
    expect(old.csr(0, 0x7a0)).toBe(0n);
    expect(trigger(old, 0, 2)).toEqual([15n << 60n, 0n]);
  });
});

describe("memory sections that replace one another", () => {
  test("restore, eagerly or lazily, each page as the last section to carry it has it", async () => {
    const m = await started({ text: "" }, 2);
    const { ram } = m.core;
    const PAGE = 4096;
    const chunks: Uint8Array[] = [];
    const w = new StateWriter((c) => chunks.push(c.slice()));
    writeConfig(w, config);
    writeMachine(w, m, Date.now());
    writeMemory(w, m.core, { kind: "nonzero" }, TO_FILE);
    // Then, as a migration round would: in a chunk whose other pages stay as the first section has
    // them, one page changed and one zeroed; and a page written in a chunk the first left out.
    const nonzero = Array.from({ length: ram.length / PAGE }, (_, p) => p).filter((p) => ram.subarray(p * PAGE, (p + 1) * PAGE).some((b) => b !== 0));
    const chunk = nonzero.map((p) => p >> 4).find((c) => nonzero.filter((p) => p >> 4 === c).length >= 4)!;
    const [changed, zeroed] = nonzero.filter((p) => p >> 4 === chunk); // (and at least two more kept)
    const fresh = ram.length / PAGE - 3;
    expect(nonzero.some((p) => p >> 4 === fresh >> 4)).toBe(false);
    ram.fill(0x5a, changed! * PAGE, (changed! + 1) * PAGE);
    ram.fill(0, zeroed! * PAGE, (zeroed! + 1) * PAGE);
    ram.fill(0xa5, fresh * PAGE, (fresh + 1) * PAGE);
    const bitmap = new Uint32Array(ram.length / PAGE / 32);
    for (const p of [changed!, zeroed!, fresh]) bitmap[p >>> 5]! |= 1 << (p & 31);
    writeMemory(w, m.core, { kind: "bitmap", bitmap }, TO_LINK);
    w.end();
    const stream = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    chunks.reduce((at, c) => (stream.set(c, at), at + c.length), 0);
    expect(listSections(bytesSource(stream), "s").filter((x) => x.tag === "MEM ").length).toBe(2);

    const eager = await restore(stream, { text: "" });
    const lazy = await restore(stream, { text: "" }, { lazy: true });
    // Absent: exactly the pages with something in them; the zeroed page is not fetched.
    expect(lazy.core.lazyPending()).toBe(nonzero.length); // one page less (zeroed), one more (fresh)
    expect(lazy.core.fetchAll()).toBe(nonzero.length);
    for (const r of [eager, lazy]) expect(Buffer.from(r.core.ram).equals(Buffer.from(ram))).toBe(true);
    expect(lazy.core.ram[changed! * PAGE]).toBe(0x5a);
    expect(lazy.core.ram[fresh * PAGE]).toBe(0xa5);
  });
});

describe("the configuration alone (what the control plane admits a VM by)", () => {
  test("is read from the first section only, checked as a whole state's is", async () => {
    const a = await started({ text: "" }, 1);
    const s = save(a);
    const conf = listSections(bytesSource(s), "s")[0]!;
    let furthest = 0;
    const watched = { size: s.length, read: (o: number, n: number) => { furthest = Math.max(furthest, o + n); return s.subarray(o, o + n); }, close: () => {} };
    expect(readStateConfig(watched, "snap", { name: "copy" })).toEqual({ ...config, name: "copy" });
    expect(furthest).toBe(conf.offset + conf.length);
    // What it cannot see (a later section broken) is the whole state's check, on the VM's thread.
    const later = s.slice();
    later[s.length - 20] ^= 1;
    expect(readStateConfig(bytesSource(later), "snap")).toEqual(config);
    expect(() => openVmState(bytesSource(later), "snap")).toThrow(StateFormatError);
    // What it can see, it refuses as openVmState does.
    const flipped = s.slice();
    flipped[conf.offset + 3] ^= 0x10;
    for (const bad of [s.subarray(0, 7), s.subarray(0, conf.offset + 4), flipped, new TextEncoder().encode("#!/bin/sh\necho hello\n")]) {
      const whole = (() => { try { openVmState(bytesSource(bad), "snap"); } catch (e) { return (e as Error).message; } })();
      expect(() => readStateConfig(bytesSource(bad), "snap")).toThrow(whole);
    }
    const noConfig = rebuild(sections(s).filter((p) => p.tag !== "CONF"));
    expect(() => readStateConfig(bytesSource(noConfig), "snap")).toThrow(/does not start with the VM's configuration/);
    const badDefinition = rebuild(sections(s).map((p) => (p.tag === "CONF" ? { tag: p.tag, payload: json({ ...unjson(p.payload), memory: "lots" }) } : p)));
    expect(() => readStateConfig(bytesSource(badDefinition), "snap")).toThrow(/snap: its configuration: invalid memory size 'lots'/);
  });
});

describe("a stream that is not a whole, valid state is refused", () => {
  let stream: Uint8Array;
  const get = async () => (stream ??= save(await started({ text: "" }, 2)));

  test("truncated anywhere", async () => {
    const s = await get();
    for (const cut of [0, 7, HEADER_BYTES, HEADER_BYTES + 5, HEADER_BYTES + SECTION_HEADER_BYTES + 3, s.length >> 1, s.length - 9, s.length - 1]) {
      expect(() => openVmState(bytesSource(s.subarray(0, cut)), "snap")).toThrow(StateFormatError);
    }
    expect(() => openVmState(bytesSource(s.subarray(0, s.length - 1)), "snap")).toThrow(/truncated/);
  });

  test("with a flipped bit in any section", async () => {
    const s = await get();
    for (const sec of listSections(bytesSource(s), "s")) {
      const bad = s.slice();
      bad[sec.offset + Math.min(5, sec.length - 1)] ^= 0x10;
      expect(() => openVmState(bytesSource(bad), "snap"), sec.tag).toThrow(/checksum|corrupted/);
    }
  });

  test("from another format version, not a state at all, or with bytes after its end", async () => {
    const s = await get();
    const v2 = s.slice();
    v2[8] = 2;
    expect(() => openVmState(bytesSource(v2), "snap")).toThrow(/format version 2; this build reads version 1/);
    expect(() => openVmState(bytesSource(new TextEncoder().encode("#!/bin/sh\necho hello\n")), "snap")).toThrow(/not a wasmvisor VM state/);
    const longer = new Uint8Array(s.length + 4);
    longer.set(s);
    expect(() => openVmState(bytesSource(longer), "snap")).toThrow(/after its END/);
  });

  test("crafted with valid checksums but impossible contents", async () => {
    const s = await get();
    const parts = sections(s);
    const withPart = (tag: string, change: (p: Uint8Array) => Uint8Array) =>
      rebuild(parts.map((p) => (p.tag === tag ? { tag, payload: change(p.payload) } : { tag: p.tag, payload: p.payload, crc: p.crc })));
    const cpu = (edit: (c: any) => void) => withPart("CPU ", (p) => { const c = unjson(p); edit(c); return json(c); });

    // The rebuild itself is faithful.
    await expect(restore(rebuild(parts.map((p) => ({ tag: p.tag, payload: p.payload, crc: p.crc }))), { text: "" })).resolves.toBeDefined();

    await expect(restore(cpu((c) => { c.harts[0].priv = 2; }), { text: "" })).rejects.toThrow(/priv must be 0 \(U\), 1 \(S\) or 3 \(M\)/);
    await expect(restore(cpu((c) => { c.harts[0].csr.satp = String(5n << 60n); }), { text: "" })).rejects.toThrow(/satp = 0x5000000000000000 is not a value this core holds/);
    await expect(restore(cpu((c) => { c.harts[0].csr.misa = "0"; }), { text: "" })).rejects.toThrow(/misa/);
    await expect(restore(cpu((c) => { c.harts.pop(); }), { text: "" })).rejects.toThrow(/harts/);
    await expect(restore(cpu((c) => { c.harts[1].x[3] = "-1"; }), { text: "" })).rejects.toThrow(/x\[3\]/);
    await expect(restore(cpu((c) => { c.harts[0].pendingLoad = { register: 40, kind: 0, size: 8, data: "0" }; }), { text: "" })).rejects.toThrow(/register/);
    // A debugger's trigger (dmode) cannot come in as the guest's; nor a trigger or tselect the core does not have.
    await expect(restore(cpu((c) => { c.harts[0].triggers[1][0] = String((6n << 60n) | (1n << 59n) | 4n); }), { text: "" })).rejects.toThrow(/trigger 1 \(tdata1 0x6800000000000004\) is not one this core holds/);
    await expect(restore(cpu((c) => { c.harts[0].triggers.push(["0", "0"]); }), { text: "" })).rejects.toThrow(/triggers/);
    await expect(restore(cpu((c) => { c.harts[0].tselect = "9"; }), { text: "" })).rejects.toThrow(/tselect 9 is not a trigger of this core/);
    await expect(restore(withPart("MACH", (p) => { const m = unjson(p); delete m.devices.uart0; return json(m); }), { text: "" })).rejects.toThrow(/not the same machine/);
    expect(() => openVmState(bytesSource(withPart("CONF", (p) => { const d = unjson(p); d.memory = "lots"; return json(d); })), "snap")).toThrow(/snap: its configuration: invalid memory size 'lots'/);
    await expect(restore(withPart("CONF", (p) => { const d = unjson(p); d.memory = "1T"; return json(d); }), { text: "" })).rejects.toThrow(/more than one VM can address/);
    expect(() => openVmState(bytesSource(withPart("CONF", (p) => { const d = unjson(p); d.drives = ["file=/etc/shadow"]; return json(d); })), "snap")).not.toThrow(); // a path is checked when opened, by the platform
    await expect(restore(withPart("CONF", (p) => { const d = unjson(p); d.drives = ["file=/etc/shadow"]; return json(d); }), { text: "" })).rejects.toThrow(/no such file/);
    expect(() => openVmState(bytesSource(withPart("ROM ", () => new Uint8Array(0x10000))), "snap")).toThrow(/boot ROM is 65536 bytes, more than its 61440/);

    // Memory: an index naming a chunk past RAM, or lengths that do not add up.
    const mem = parts.find((p) => p.tag === "MEM ")!.payload;
    const badChunk = mem.slice();
    new DataView(badChunk.buffer).setUint32(8, 1 << 20, true);
    expect(() => openVmState(bytesSource(withPart("MEM ", () => badChunk)), "snap")).toThrow(/chunk 1048576; this VM's RAM has 256/);
    const badLength = mem.slice();
    const dv = new DataView(badLength.buffer);
    dv.setUint32(8 + 12, dv.getUint32(8 + 12, true) + 1, true);
    expect(() => openVmState(bytesSource(withPart("MEM ", () => badLength)), "snap")).toThrow(/memory section/);
    // The data of a chunk corrupted: found when the chunk is loaded, and the restore fails.
    const badData = mem.slice();
    badData[badData.length - 3] ^= 1;
    await expect(restore(withPart("MEM ", () => badData), { text: "" })).rejects.toThrow(/memory chunk \d+ .* fails its checksum/);
    // Thousands of empty sections (memory to hold their list, for nothing).
    const empty = { tag: "MEM ", payload: Uint8Array.of(16, 0, 0, 0, 0, 0, 0, 0) };
    expect(() => openVmState(bytesSource(rebuild([...parts, ...Array.from({ length: 5000 }, () => empty)])), "snap")).toThrow(/more than 4096 sections/);
    // A section twice, or a section missing.
    expect(() => openVmState(bytesSource(rebuild([...parts, parts[1]!])), "snap")).toThrow(/2 "CPU " sections/);
    expect(() => openVmState(bytesSource(rebuild(parts.filter((p) => p.tag !== "MACH"))), "snap")).toThrow(/0 "MACH" sections/);
  });
});
