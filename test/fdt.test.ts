import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { DeviceTree, parseFdt, type FdtNode } from "../host/machine/fdt";
import { buildVirtDtb, buildVirtTree, type VirtDtConfig } from "../host/machine/virt-dt";
import { BOARD, place, placeFamily, type Attached } from "../host/machine/memory-map";

// ---- dtc helpers (dtc is a hard requirement of this suite: no silent skipping) ----

const work = mkdtempSync(join(tmpdir(), "wasmvisor-fdt-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function dtc(args: string[], inputName: string, input: Uint8Array | string): { stdout: string; stderr: string; status: number } {
  const inPath = join(work, inputName);
  writeFileSync(inPath, input);
  const res = spawnSync("dtc", [...args, inPath], { encoding: "utf8" });
  if (res.error && (res.error as NodeJS.ErrnoException).code === "ENOENT") {
    throw new Error("dtc not found: install device-tree-compiler (e.g. apt-get install device-tree-compiler)");
  }
  if (res.error) throw res.error;
  return { stdout: res.stdout, stderr: res.stderr, status: res.status ?? -1 };
}

function decompile(blob: Uint8Array): { dts: string; stderr: string } {
  const r = dtc(["-I", "dtb", "-O", "dts"], "in.dtb", blob);
  expect(r.status, `dtc failed: ${r.stderr}`).toBe(0);
  return { dts: r.stdout, stderr: r.stderr };
}

function compile(dts: string): Uint8Array {
  const out = join(work, "out.dtb");
  const r = dtc(["-I", "dts", "-O", "dtb", "-o", out], "in.dts", dts);
  expect(r.status, `dtc failed: ${r.stderr}`).toBe(0);
  return new Uint8Array(readFileSync(out));
}

// ---- blob surgery helpers ----

const be32 = (b: Uint8Array, off: number) => new DataView(b.buffer, b.byteOffset).getUint32(off);
const setBe32 = (b: Uint8Array, off: number, v: number) => new DataView(b.buffer, b.byteOffset).setUint32(off, v);
const H = { magic: 0, totalsize: 4, offStruct: 8, offStrings: 12, offRsv: 16, version: 20, lastComp: 24, boot: 28, sizeStrings: 32, sizeStruct: 36 };

function sampleTree(): DeviceTree {
  const dt = new DeviceTree();
  dt.bootCpuidPhys = 1;
  dt.addReservation(0x80000000, 0x80000);
  dt.addReservation(0x1_0000_0000n, 0x1000);
  dt.root.setU32("#address-cells", 2).setU32("#size-cells", 2).setString("model", "sample");
  const a = dt.root.addNode("a@1000");
  a.setStrings("compatible", ["vendor,a", "generic"])
    .setU32("reg", 0, 0x1000, 0, 0x100)
    .setU64("big", 0x1234_5678_9abc_def0n, 7)
    .setBytes("blob", new Uint8Array([1, 2, 3]))
    .setEmpty("flag")
    .setString("empty-string", "");
  const b = dt.root.addNode("b");
  b.setStrings("compatible", ["vendor,b"]);
  b.addNode("c").setU32("ref", dt.phandle(a));
  return dt;
}

function sameTree(x: FdtNode, y: FdtNode): void {
  expect(y.name).toBe(x.name);
  expect([...y.props.keys()]).toEqual([...x.props.keys()]);
  for (const [k, v] of x.props) expect(Array.from(y.props.get(k)!), `${x.path()}:${k}`).toEqual(Array.from(v));
  expect(y.children.map((c) => c.name)).toEqual(x.children.map((c) => c.name));
  x.children.forEach((c, i) => sameTree(c, y.children[i]!));
}

describe("fdt writer and parser", () => {
  it("round-trips every property kind, reservations and the boot cpu", () => {
    const dt = sampleTree();
    const back = parseFdt(dt.toBlob());
    sameTree(dt.root, back.root);
    expect(back.reservations).toEqual([
      { address: 0x80000000n, size: 0x80000n },
      { address: 0x1_0000_0000n, size: 0x1000n },
    ]);
    expect(back.bootCpuidPhys).toBe(1);
    const a = back.find("/a@1000")!;
    expect(a.getStrings("compatible")).toEqual(["vendor,a", "generic"]);
    expect(a.getU32s("reg")).toEqual([0, 0x1000, 0, 0x100]);
    expect(Array.from(a.prop("big")!)).toEqual([0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0, 0, 0, 0, 0, 0, 0, 7]);
    expect(a.prop("flag")!.length).toBe(0);
    expect(a.getString("empty-string")).toBe("");
    expect(back.byPhandle(back.find("/b/c")!.getU32("ref")!)?.path()).toBe("/a@1000");
  });

  it("writes a v17 header with aligned blocks and deduplicated property names", () => {
    const blob = sampleTree().toBlob({ padding: 64 });
    expect(be32(blob, H.magic)).toBe(0xd00dfeed);
    expect(be32(blob, H.version)).toBe(17);
    expect(be32(blob, H.lastComp)).toBe(16);
    expect(be32(blob, H.totalsize)).toBe(blob.length);
    expect(be32(blob, H.offRsv) % 8).toBe(0);
    expect(be32(blob, H.offStruct) % 4).toBe(0);
    const names = new Set(["#address-cells", "#size-cells", "model", "compatible", "reg", "big", "blob", "flag", "empty-string", "phandle", "ref"]);
    const expected = [...names].reduce((n, s) => n + s.length + 1, 0);
    expect(be32(blob, H.sizeStrings)).toBe(expected); // "compatible" is stored once
    expect(be32(blob, H.offStrings) + expected + 64).toBe(blob.length);
  });

  it("produces blobs dtc decompiles to the same tree", () => {
    const { dts, stderr } = decompile(sampleTree().toBlob());
    expect(stderr).toBe("");
    expect(dts).toContain("/memreserve/\t0x0000000080000000 0x0000000000080000;");
    expect(dts).toContain('compatible = "vendor,a\\0generic";');
    expect(dts).toContain("reg = <0x00 0x1000 0x00 0x100>;");
    expect(dts).toContain("big = <0x12345678 0x9abcdef0 0x00 0x07>;");
    expect(dts).toContain("blob = [01 02 03];");
    expect(dts).toMatch(/\bflag;/);
    expect(dts).toContain("ref = <0x01>;");
  });

  it("parses blobs dtc compiled", () => {
    const dt = parseFdt(
      compile(`/dts-v1/;
/memreserve/ 0x10000 0x2000;
/ {
  #address-cells = <1>;
  n1: node@10 { reg = <0x10>; names = "x", "yy"; bytes = [de ad]; };
  other { target = <&n1>; wide = /bits/ 64 <0x100000000>; };
};`),
    );
    expect(dt.reservations).toEqual([{ address: 0x10000n, size: 0x2000n }]);
    expect(dt.find("/node@10")!.getStrings("names")).toEqual(["x", "yy"]);
    expect(Array.from(dt.find("/node@10")!.prop("bytes")!)).toEqual([0xde, 0xad]);
    expect(dt.find("/other")!.getU64("wide")).toBe(0x100000000n);
    expect(dt.byPhandle(dt.find("/other")!.getU32("target")!)!.name).toBe("node@10");
  });

  it("replaces properties in place and rejects bad names and values", () => {
    const dt = new DeviceTree();
    const n = dt.root.addNode("n").setU32("a", 1).setU32("b", 2).setU32("a", 3);
    expect([...n.props.keys()]).toEqual(["a", "b"]);
    expect(n.getU32("a")).toBe(3);
    expect(() => dt.root.addNode("n")).toThrow(/already has a child n/);
    expect(() => n.setString("s", "a\0b")).toThrow(/NUL/);
    expect(() => n.setU32("c", -1)).toThrow(/not a u32/);
    expect(() => n.setU64("c", 2 ** 60)).toThrow(/exact integer/);
    expect(() => n.getU32("nope")).not.toThrow();
    n.setU32("two", 1, 2);
    expect(() => n.getU32("two")).toThrow(/2 cells, expected 1/);
    expect(dt.phandle(n)).toBe(1);
    expect(dt.phandle(n)).toBe(1);
    expect(dt.phandle(dt.root.addNode("m"))).toBe(2);
  });

  it("accepts a version 16 header", () => {
    const blob = sampleTree().toBlob();
    setBe32(blob, H.version, 16);
    expect(parseFdt(blob).find("/b/c")).toBeDefined();
  });
});

describe("fdt parser rejects malformed blobs", () => {
  const good = () => sampleTree().toBlob();
  const offStruct = be32(good(), H.offStruct);

  const cases: [string, (b: Uint8Array) => Uint8Array, RegExp][] = [
    ["short header", (b) => b.slice(0, 20), /truncated: 20 bytes, the header alone needs 40/],
    ["truncated body", (b) => b.slice(0, b.length - 10), /truncated: totalsize \d+ exceeds the \d+ bytes given/],
    ["bad magic", (b) => (setBe32(b, H.magic, 0xdeadbeef), b), /bad magic 0xdeadbeef \(expected 0xd00dfeed\)/],
    ["old version", (b) => (setBe32(b, H.version, 3), b), /unsupported version 3/],
    ["future format", (b) => (setBe32(b, H.lastComp, 18), b), /last compatible version 18/],
    ["struct offset out of range", (b) => (setBe32(b, H.offStruct, 0x100000), b), /structure block \(offset 0x100000, size \d+\) lies outside the blob/],
    ["struct size out of range", (b) => (setBe32(b, H.sizeStruct, 0xfffffff0), b), /structure block .* lies outside the blob/],
    ["strings block out of range", (b) => (setBe32(b, H.sizeStrings, b.length), b), /strings block .* lies outside the blob/],
    ["struct offset inside header", (b) => (setBe32(b, H.offStruct, 8), b), /structure block \(offset 0x8/],
    ["misaligned struct", (b) => (setBe32(b, H.offStruct, offStruct + 2), setBe32(b, H.sizeStruct, 8), b), /not 4-byte aligned/],
    ["misaligned reservations", (b) => (setBe32(b, H.offRsv, 44), b), /not 8-byte aligned/],
    ["bad token", (b) => (setBe32(b, offStruct, 7), b), /bad token 0x7 at struct offset 0x0/],
    ["bad token inside", (b) => (setBe32(b, offStruct + 8, 0x10), b), /bad token 0x10 at struct offset 0x8/],
    ["no FDT_END", (b) => (setBe32(b, H.sizeStruct, be32(b, H.sizeStruct) - 4), b), /structure block ends inside a token \(no FDT_END\)/],
    ["END_NODE without node", (b) => (setBe32(b, offStruct, 2), b), /FDT_END_NODE without an open node at struct offset 0x0/],
    ["FDT_END inside a node", (b) => (setBe32(b, offStruct + 8, 9), b), /FDT_END inside node \//],
    ["unterminated string", (b) => (setBe32(b, H.sizeStrings, be32(b, H.sizeStrings) - 1), b), /unterminated string at strings offset \d+/],
    ["name offset out of range", (b) => (setBe32(b, offStruct + 16, 0x7fff), b), /property name offset 32767 is outside the strings block/],
    ["property too long", (b) => (setBe32(b, offStruct + 12, 0x10000), b), /property value \(65536 bytes\) runs past the structure block/],
  ];

  for (const [what, corrupt, msg] of cases) {
    it(what, () => {
      const bad = corrupt(good());
      expect(() => parseFdt(bad)).toThrow(Error);
      try {
        parseFdt(bad);
      } catch (e) {
        const m = (e as Error).message;
        expect(m).toMatch(/^invalid DTB: /);
        expect(m).toMatch(msg);
        expect(m).not.toContain("\n");
      }
    });
  }

  it("reports an unterminated node name", () => {
    // A tree whose only node name runs to the end of the structure block.
    const dt = new DeviceTree();
    dt.root.addNode("abcdefg");
    const b = dt.toBlob();
    const os = be32(b, H.offStruct);
    // Root: token(4) + name "" padded (4); child token at +8, name "abcdefg\0" at +12..+19.
    b[os + 19] = 0x41; // overwrite the terminator
    setBe32(b, H.sizeStruct, 20);
    expect(() => parseFdt(b)).toThrow(/^invalid DTB: unterminated node name at struct offset 0xc$/);
  });

  it("reports duplicate nodes, a second root and properties after subnodes", () => {
    const dt = new DeviceTree();
    dt.root.addNode("x").setU32("p", 1);
    dt.root.addNode("y").setU32("q", 2);
    const b = dt.toBlob();
    const os = be32(b, H.offStruct);
    // Struct layout: 0 BEGIN / | 4 "" | 8 BEGIN x | 12 "x" | 16 PROP p (len 20, nameoff 24, value 28)
    // | 32 END | 36 BEGIN y | 40 "y" | 44 PROP q ... | 60 END | 64 END | 68 FDT_END
    expect(be32(b, os + 36)).toBe(1);
    expect(be32(b, os + 68)).toBe(9);
    const dup = b.slice();
    dup[os + 40] = "x".charCodeAt(0);
    expect(() => parseFdt(dup)).toThrow(/^invalid DTB: duplicate node x under \/$/);
    const second = b.slice();
    setBe32(second, os + 36, 2); // close the root after x...
    setBe32(second, os + 40, 1); // ...and open another node at top level
    expect(() => parseFdt(second)).toThrow(/^invalid DTB: second root node at struct offset 0x28$/);
    const after = b.slice();
    setBe32(after, os + 36, 4); // y's BEGIN_NODE and name become NOPs: q now belongs to the root,
    setBe32(after, os + 40, 4); // after its subnode x
    expect(() => parseFdt(after)).toThrow(/^invalid DTB: property q follows a subnode in \/$/);
  });

  it("writes the blob's control characters in its messages as \\xNN: one line, nothing for a terminal to act on", () => {
    // A node named "a\n\x1b[2J" with a child whose name is empty (found by the loaders fuzz target).
    const dt = new DeviceTree();
    dt.root.addNode("abcdefg").addNode("h");
    const b = dt.toBlob();
    const os = be32(b, H.offStruct);
    // 0 BEGIN / | 4 "" | 8 BEGIN abcdefg | 12 "abcdefg\0" | 20 BEGIN h | 24 "h\0" padded | 28 END ...
    b.set([0x61, 0x0a, 0x1b, 0x5b, 0x32, 0x4a, 0x7f], os + 12);
    b[os + 24] = 0; // h's name becomes empty
    expect(() => parseFdt(b)).toThrow("invalid DTB: empty node name under /a\\x0a\\x1b[2J\\x7f at struct offset 0x14");
  });

  it("never fails with anything but a clear Error on corrupted input", () => {
    const b = sampleTree().toBlob();
    for (let len = 0; len < b.length; len++) {
      expect(() => parseFdt(b.subarray(0, len))).toThrow(/^invalid DTB: /);
    }
    let ok = 0;
    for (let i = 0; i < b.length; i++) {
      for (const mask of [0x01, 0x10, 0x80, 0xff]) {
        const c = b.slice();
        c[i]! ^= mask;
        try {
          parseFdt(c);
          ok++;
        } catch (e) {
          expect(e).toBeInstanceOf(Error);
          expect((e as Error).message).toMatch(/^invalid DTB: [^\n]+$/);
        }
      }
    }
    expect(ok).toBeGreaterThan(0); // value bytes may change freely
  });
});

// ---- the board's devicetree ----

const ISA = "rv64imafdc_zicntr_zicsr_zifencei_zihpm_zba_zbb_zbs_sstc";

/** The board's fixed devices and, in their families' slots, `virtio` transports, `ata` disks and ethoc NICs with these MACs. */
function board(n: { virtio?: number; ata?: number; ethoc?: Uint8Array[] } = {}): Attached[] {
  const fixed = [BOARD.rtc, BOARD.uart, BOARD.test, BOARD.plic, BOARD.clint].map((slot) => ({ ...place(slot), options: undefined }));
  const macs = n.ethoc ?? [];
  return [
    ...fixed,
    ...placeFamily(BOARD.virtio, n.virtio ?? 0).map((at) => ({ ...at, options: undefined })),
    ...placeFamily(BOARD.ata, n.ata ?? 0).map((at) => ({ ...at, options: { regShift: 2 } })),
    ...placeFamily(BOARD.ethoc, macs.length).map((at, i) => ({ ...at, options: { mac: macs[i]! } })),
  ];
}

const base: VirtDtConfig = { harts: 2, ramSize: 256 * 1024 * 1024, isa: ISA, mmuType: "riscv,sv48", timebaseHz: 10_000_000, devices: board() };
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

describe("virt board devicetree", () => {
  const cfg: VirtDtConfig = {
    ...base,
    bootargs: "console=ttyS0 earlycon=sbi",
    initrd: { start: 0x1_8800_0000, end: 0x1_8840_0000 },
    devices: board({ virtio: 3 }),
    rngSeed: new Uint8Array(32).fill(0xab),
  };
  const blob = buildVirtDtb(cfg);
  const macs = [Uint8Array.of(0x52, 0x54, 0, 0x12, 0x34, 0x56), Uint8Array.of(0x52, 0x54, 0, 0x12, 0x34, 0x57)];

  it("is byte for byte what the board wrote before its devices wrote their own nodes", () => {
    // SHA-256 of what buildVirtDtb made at commit 7e5363a from the same configurations.
    expect(sha256(blob)).toBe("69c78b091957d44043ed7913d110b458a1b8fda99471f16a67f20279b6da7dfa");
    expect(sha256(buildVirtDtb(base))).toBe("fe7b37cc60e02924ab42cdb81d1d26b9a3c7f0338d26edabe8d6b2094b8ce309");
    expect(sha256(buildVirtDtb({ ...base, devices: board({ ata: 2, ethoc: macs }) }))).toBe("7d2b46eb7aeb7183d15642bcd385944d29141229696360d11cef351a558dfb81");
  });

  it("lists the devices in table order, whichever slot was filled first", () => {
    const familiesFirst = [...cfg.devices.slice(5), ...cfg.devices.slice(0, 5).reverse()]; // board() puts the 5 fixed ones first
    expect(buildVirtDtb({ ...cfg, devices: familiesFirst })).toEqual(blob);
  });
  const dt = parseFdt(blob);
  const must = (path: string): FdtNode => {
    const n = dt.find(path);
    if (!n) throw new Error(`missing node ${path}`);
    return n;
  };

  it("decompiles with dtc, warning only where QEMU's own tree does", () => {
    const { dts, stderr } = decompile(blob);
    const warnings = stderr.split("\n").filter((l) => l.trim() !== "");
    for (const w of warnings) {
      // QEMU's virt DTB draws exactly this warning for each cpu interrupt controller.
      expect(w).toMatch(/interrupt_provider\): \/cpus\/cpu@\d\/interrupt-controller: Missing #address-cells/);
    }
    expect(dts).toContain('model = "riscv-virtio,wasmvisor";');
    expect(dts).toContain(`riscv,isa = "${ISA}";`);
    expect(dts).toContain('stdout-path = "/soc/serial@10000000";');
    expect(dts).toContain("reg = <0x00 0xc000000 0x00 0x600000>;");
    expect(dts).toContain("riscv,ndev = <0x5f>;");
    expect(dts).toContain('compatible = "sifive,test1\\0sifive,test0\\0syscon";');
    for (const node of ["chosen {", "poweroff {", "reboot {", "memory@80000000 {", "cpu-map {", "rtc@101000 {", "serial@10000000 {", "test@100000 {", "plic@c000000 {", "clint@2000000 {", "virtio_mmio@10003000 {"]) {
      expect(dts).toContain(node);
    }
    expect(dts).not.toContain("virtio_mmio@10004000");
  });

  it("describes root, memory and chosen", () => {
    expect(dt.root.getU32("#address-cells")).toBe(2);
    expect(dt.root.getU32("#size-cells")).toBe(2);
    expect(dt.root.getString("compatible")).toBe("riscv-virtio");
    const mem = must("/memory@80000000");
    expect(mem.getString("device_type")).toBe("memory");
    expect(mem.getU32s("reg")).toEqual([0, 0x80000000, 0, 0x10000000]);
    const chosen = must("/chosen");
    expect(chosen.getString("bootargs")).toBe("console=ttyS0 earlycon=sbi");
    expect(chosen.prop("linux,initrd-start")!.length).toBe(8);
    expect(chosen.getU32s("linux,initrd-start")).toEqual([1, 0x88000000]);
    expect(chosen.getU64("linux,initrd-end")).toBe(0x1_8840_0000n);
    expect(chosen.prop("rng-seed")!.length).toBe(32);
    expect(dt.find(chosen.getString("stdout-path")!)!.getString("compatible")).toBe("ns16550a");
  });

  it("describes each cpu with a resolvable interrupt controller and cpu-map", () => {
    const cpus = must("/cpus");
    expect(cpus.getU32("timebase-frequency")).toBe(10_000_000);
    expect(cpus.getU32("#address-cells")).toBe(1);
    expect(cpus.getU32("#size-cells")).toBe(0);
    for (let h = 0; h < 2; h++) {
      const cpu = must(`/cpus/cpu@${h}`);
      expect(cpu.getString("device_type")).toBe("cpu");
      expect(cpu.getU32("reg")).toBe(h);
      expect(cpu.getString("status")).toBe("okay");
      expect(cpu.getString("compatible")).toBe("riscv");
      expect(cpu.getString("riscv,isa")).toBe(ISA);
      expect(cpu.getString("mmu-type")).toBe("riscv,sv48");
      const intc = cpu.child("interrupt-controller")!;
      expect(intc.getString("compatible")).toBe("riscv,cpu-intc");
      expect(intc.getU32("#interrupt-cells")).toBe(1);
      expect(intc.has("interrupt-controller")).toBe(true);
      expect(dt.byPhandle(intc.getU32("phandle")!)).toBe(intc);
      expect(dt.byPhandle(must(`/cpus/cpu-map/cluster0/core${h}`).getU32("cpu")!)).toBe(cpu);
    }
  });

  it("wires the PLIC and CLINT contexts to the harts' interrupt controllers", () => {
    const plic = must("/soc/plic@c000000");
    expect(plic.getStrings("compatible")).toEqual(["sifive,plic-1.0.0", "riscv,plic0"]);
    expect(plic.getU32("riscv,ndev")).toBe(95);
    expect(plic.getU32("#interrupt-cells")).toBe(1);
    expect(plic.getU32("#address-cells")).toBe(0);
    expect(plic.has("interrupt-controller")).toBe(true);
    const intc = (h: number) => must(`/cpus/cpu@${h}/interrupt-controller`).getU32("phandle")!;
    expect(plic.getU32s("interrupts-extended")).toEqual([intc(0), 11, intc(0), 9, intc(1), 11, intc(1), 9]);
    const clint = must("/soc/clint@2000000");
    expect(clint.getStrings("compatible")).toEqual(["sifive,clint0", "riscv,clint0"]);
    expect(clint.getU32s("reg")).toEqual([0, 0x2000000, 0, 0x10000]);
    expect(clint.getU32s("interrupts-extended")).toEqual([intc(0), 3, intc(0), 7, intc(1), 3, intc(1), 7]);
    // Every phandle in an interrupts-extended list resolves to a cpu interrupt controller.
    for (const n of [plic, clint]) {
      const cells = n.getU32s("interrupts-extended")!;
      for (let i = 0; i < cells.length; i += 2) expect(dt.byPhandle(cells[i]!)!.getString("compatible")).toBe("riscv,cpu-intc");
    }
  });

  it("places the devices at QEMU's addresses with PLIC interrupts", () => {
    const plicPh = must("/soc/plic@c000000").getU32("phandle")!;
    const soc = must("/soc");
    expect(soc.getString("compatible")).toBe("simple-bus");
    expect(soc.prop("ranges")!.length).toBe(0);
    const dev = (path: string, reg: number[], irq?: number) => {
      const n = must(path);
      expect(n.getU32s("reg"), path).toEqual(reg);
      if (irq !== undefined) {
        expect(n.getU32("interrupts"), path).toBe(irq);
        expect(n.getU32("interrupt-parent"), path).toBe(plicPh);
      }
      return n;
    };
    const uart = dev("/soc/serial@10000000", [0, 0x10000000, 0, 0x100], 10);
    expect(uart.getU32("clock-frequency")).toBe(3686400);
    dev("/soc/rtc@101000", [0, 0x101000, 0, 0x1000], 11);
    const test = dev("/soc/test@100000", [0, 0x100000, 0, 0x1000]);
    for (let i = 0; i < 3; i++) {
      const v = dev(`/soc/virtio_mmio@${(0x10001000 + i * 0x1000).toString(16)}`, [0, 0x10001000 + i * 0x1000, 0, 0x1000], 1 + i);
      expect(v.getString("compatible")).toBe("virtio,mmio");
    }
    // QEMU's order: highest virtio slot first.
    const names = soc.children.map((c) => c.name);
    expect(names).toEqual(["rtc@101000", "serial@10000000", "test@100000", "virtio_mmio@10003000", "virtio_mmio@10002000", "virtio_mmio@10001000", "plic@c000000", "clint@2000000"]);
    for (const [name, value] of [["poweroff", 0x5555], ["reboot", 0x7777]] as const) {
      const n = must(`/${name}`);
      expect(n.getString("compatible")).toBe(`syscon-${name}`);
      expect(dt.byPhandle(n.getU32("regmap")!)).toBe(test);
      expect(n.getU32("offset")).toBe(0);
      expect(n.getU32("value")).toBe(value);
    }
  });

  it("scales with harts and virtio slots, and omits optional chosen entries", () => {
    const t = parseFdt(buildVirtDtb({ ...base, harts: 8, ramSize: 0x2_0000_0000, devices: board({ virtio: 8 }) }));
    expect(t.find("/cpus/cpu@7")).toBeDefined();
    expect(t.find("/cpus/cpu@8")).toBeUndefined();
    expect(t.find("/soc/plic@c000000")!.getU32s("interrupts-extended")!.length).toBe(32);
    expect(t.find("/memory@80000000")!.getU32s("reg")).toEqual([0, 0x80000000, 2, 0]);
    expect(t.find("/soc/virtio_mmio@10008000")!.getU32("interrupts")).toBe(8);
    const chosen = t.find("/chosen")!;
    expect([...chosen.props.keys()]).toEqual(["stdout-path"]);
    const none = buildVirtTree(base);
    expect(none.find("/soc")!.children.some((c) => c.name.startsWith("virtio_mmio"))).toBe(false);
  });

  it("describes the full machine's legacy devices: ata-generic disks and OpenCores MACs", () => {
    const blob = buildVirtDtb({ ...base, devices: board({ ata: 2, ethoc: macs }) });
    const { dts, stderr } = decompile(blob);
    for (const w of stderr.split("\n").filter((l) => l.trim() !== "")) expect(w).toMatch(/interrupt_provider\)/);
    expect(dts).toContain("ata@10010000 {");
    expect(dts).toContain("ethernet@10021000 {");
    const t = parseFdt(blob);
    const plicPh = t.find("/soc/plic@c000000")!.getU32("phandle");
    for (let i = 0; i < 2; i++) {
      const base = 0x10010000 + i * 0x1000;
      const ata = t.find(`/soc/ata@${base.toString(16)}`)!;
      expect(ata.getString("compatible")).toBe("ata-generic");
      // Command block (8 registers 4 bytes apart), then the control block: pata_of_platform's two regs.
      expect(ata.getU32s("reg")).toEqual([0, base, 0, 0x20, 0, base + 0x100, 0, 4]);
      expect(ata.getU32("reg-shift")).toBe(2);
      expect(ata.getU32("pio-mode")).toBe(4);
      expect(ata.getU32("interrupts")).toBe(12 + i);
      expect(ata.getU32("interrupt-parent")).toBe(plicPh);
      const eth = t.find(`/soc/ethernet@${(0x10020000 + i * 0x1000).toString(16)}`)!;
      expect(eth.getString("compatible")).toBe("opencores,ethoc");
      expect(eth.getU32s("reg")).toEqual([0, 0x10020000 + i * 0x1000, 0, 0x800]);
      expect(eth.getU32("interrupts")).toBe(16 + i);
      expect(eth.getU32("interrupt-parent")).toBe(plicPh);
      expect(eth.prop("local-mac-address")).toEqual(macs[i]);
    }
    // None of them unless asked for.
    expect(parseFdt(buildVirtDtb(base)).find("/soc")!.children.some((c) => /^(ata|ethernet)@/.test(c.name))).toBe(false);
  });

  it("rejects impossible configurations", () => {
    expect(() => board({ ata: 5 })).toThrow(/too many ATA disks \(5\); the board has 4 controllers/);
    expect(() => buildVirtDtb({ ...base, devices: board({ ethoc: [new Uint8Array(5)] }) })).toThrow(/6 bytes/);
    expect(() => board({ ethoc: Array.from({ length: 5 }, () => new Uint8Array(6)) })).toThrow(/too many ethoc NICs \(5\); the board has 4$/);
    expect(() => buildVirtDtb({ ...base, harts: 0 })).toThrow(/harts must be 1..8/);
    expect(() => buildVirtDtb({ ...base, harts: 9 })).toThrow(/harts must be 1..8/);
    expect(() => board({ virtio: 9 })).toThrow(/too many virtio devices \(9\); the board has 8 slots/);
    expect(() => place(BOARD.virtio, 8)).toThrow(/no slot 8/);
    expect(() => buildVirtDtb({ ...base, ramSize: 1000 })).toThrow(/ramSize/);
    expect(() => buildVirtDtb({ ...base, isa: "rv32ima" })).toThrow(/isa/);
    expect(() => buildVirtDtb({ ...base, initrd: { start: 10, end: 5 } })).toThrow(/initrd/);
  });
});
