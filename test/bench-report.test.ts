// The benchmark harness's own logic: SVG bar charts, the report and its target checks, the
// memory suite's arithmetic and its reading of /proc.
import { describe, expect, it } from "vitest";
import { existsSync } from "node:fs";
import { barChart, escapeXml, formatValue, tickStep } from "../bench/svg";
import { checkTargets, renderReport, type BenchResult } from "../bench/report";
import { breakdown, type ProbeResult } from "../bench/memory";
import {
  PAGE_SIZE, countNonZeroPages, countPresent, locateWasmMemory, parseMaps, residentPages, smapsRss, statusField, wasmMemoryResidency,
} from "../bench/procfs";

/** Throws unless every tag is closed in order and text holds no raw '<' or stray '&'. */
function checkWellFormed(xml: string): void {
  const open: string[] = [];
  for (const part of xml.split(/(<[^>]*>)/)) {
    if (part.startsWith("<")) {
      const m = /^<(\/?)([\w:-]+)[^>]*?(\/?)>$/.exec(part);
      if (!m) throw new Error(`bad tag ${part}`);
      if (m[1]) {
        const top = open.pop();
        if (top !== m[2]) throw new Error(`</${m[2]}> closes <${top}>`);
      } else if (!m[3]) open.push(m[2]);
    } else if (/[<>]|&(?!(amp|lt|gt|quot|#39);)/.test(part)) throw new Error(`unescaped text ${JSON.stringify(part)}`);
  }
  if (open.length) throw new Error(`unclosed <${open.join("> <")}>`);
}

const attr = (tag: string, name: string) => Number(new RegExp(`\\b${name}="([^"]+)"`).exec(tag)![1]);

describe("SVG bar charts", () => {
  const chart = barChart({
    title: "Speed <of> A & B", axis: "MIPS",
    series: [{ name: "wasmvisor", color: "#00f" }, { name: "QEMU", color: "#f80" }],
    groups: [{ label: "int", values: [100, 400] }, { label: "fp", values: [50, null] }],
    target: { value: 200, label: "target 200" },
  });

  it("is well-formed SVG with escaped text", () => {
    expect(chart.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    checkWellFormed(chart);
    expect(chart).toContain("Speed &lt;of&gt; A &amp; B");
  });

  it("draws one bar per value, heights proportional, none for a missing value", () => {
    const bars = chart.match(/<rect class="bar"[^>]*>/g)!;
    expect(bars).toHaveLength(3);
    const [a, b, c] = bars.map((t) => attr(t, "height"));
    expect(b / a).toBeCloseTo(4, 1);
    expect(c / a).toBeCloseTo(0.5, 1);
    // every bar stands on the same baseline
    expect(new Set(bars.map((t) => Math.round(attr(t, "y") + attr(t, "height")))).size).toBe(1);
    for (const v of ["100", "400", "50.0"]) expect(chart).toContain(`>${v}</text>`);
    expect(chart).toContain("<title>QEMU, int: 400</title>");
  });

  it("puts the target line at its value", () => {
    const bars = chart.match(/<rect class="bar"[^>]*>/g)!;
    const base = attr(bars[0], "y") + attr(bars[0], "height");
    const perUnit = attr(bars[0], "height") / 100;
    const line = /<line class="target"[^>]*>/.exec(chart)![0];
    expect(base - attr(line, "y1")).toBeCloseTo(200 * perUnit, 0);
    expect(chart).toContain(">target 200</text>");
  });

  it("has round ticks and compact numbers", () => {
    expect(tickStep(450)).toBe(100);
    expect(tickStep(9)).toBe(2);
    expect(tickStep(0.7)).toBe(0.2);
    expect(tickStep(2.3)).toBe(0.5);
    expect([1234.5, 123.4, 12.34, 1.234, 0.1234].map(formatValue)).toEqual(["1235", "123", "12.3", "1.23", "0.123"]);
    expect(escapeXml(`a<b>&"'`)).toBe("a&lt;b&gt;&amp;&quot;&#39;");
  });
});

const MACHINE = { cpu: "Test CPU", cores: 2, memoryGiB: 8, os: "Debian 12", kernel: "Linux 6.1 x86_64", node: "v20.0.0", qemu: "7.2.0" };

function sample(): BenchResult {
  return {
    date: "2026-01-01T00:00:00.000Z", quick: false, command: "npm run bench", machine: MACHINE,
    cpu: {
      mips: 210, qemu_mips: 1000, ratio_vs_qemu: 0.21,
      programs: [{ program: "bench-int", instructions: 3e8, seconds: [1.4], mips: 210, qemuSeconds: 0.3, qemuMips: 1000 }],
    },
    boot: { linux_para_s: 2.5, linux_full_s: 2.6, qemu_linux_s: 0.7, runs: { para: [2.5], full: [2.6], qemu: [0.7] } },
    exits: {
      mmio_roundtrip_us: 1,
      rows: [{ key: "mmio_store", label: "MMIO store", detail: "a store", mean_us: 1, rme_percent: 2, samples: 60, guest_instructions: 3 },
        { key: "comlink_call", label: "Comlink call", detail: "a call", mean_us: 40, rme_percent: 3, samples: 50, guest_instructions: null }],
    },
  };
}

describe("report", () => {
  it("checks each target, a figure exactly at its target passing", () => {
    const t = checkTargets(sample());
    expect(t.map((x) => x.pass)).toEqual([true, true, false, null, true]);
    expect(t[2]).toEqual({ target: "Boot: Linux to shell prompt (para) ≤ 2 s", measured: "2.50 s", pass: false });
    expect(t[3].measured).toBe("not measured");
  });

  it("renders tables, targets and links to the plots it returns", () => {
    const { markdown, plots } = renderReport(sample());
    expect(Object.keys(plots).sort()).toEqual(["boot.svg", "cpu.svg", "exits.svg"]);
    for (const [file, svg] of Object.entries(plots)) {
      expect(markdown).toContain(`](results/${file})`);
      checkWellFormed(svg);
    }
    expect(markdown).toContain("| Test CPU | 2 | 8 GiB | Debian 12 | Linux 6.1 x86_64 | v20.0.0 | 7.2.0 |");
    expect(markdown).toContain("| Boot: Linux to shell prompt (para) ≤ 2 s | 2.50 s | **FAIL** |");
    expect(markdown).toContain("| Memory: overhead ≤ 8 MiB per VM | not measured | not run |");
    expect(markdown).toContain("| bench-int | 300.0 M | 210.0 | 1000.0 | 21% |");
    expect(markdown).not.toContain("## Memory");
    // The Comlink call is in the table but not in the plot.
    expect(markdown).toContain("| Comlink call | a call | 40.0 µs |");
    expect(plots["exits.svg"]).not.toContain("Comlink");
  });

  it("leaves QEMU out when it is not installed", () => {
    const r = sample();
    r.cpu = { ...r.cpu!, qemu_mips: null, ratio_vs_qemu: null, programs: [{ ...r.cpu!.programs[0], qemuMips: undefined, qemuSeconds: undefined }] };
    r.boot = { ...r.boot!, qemu_linux_s: null };
    r.machine = { ...MACHINE, qemu: null };
    const { markdown, plots } = renderReport(r);
    expect(checkTargets(r)[1].pass).toBeNull();
    expect(plots["cpu.svg"]).not.toContain("QEMU");
    expect(markdown).toContain("| program | instructions | wasmvisor MIPS |\n");
    expect(markdown).toContain("not installed");
  });
});

describe("memory suite arithmetic", () => {
  it("charges everything but touched guest RAM to the VMs, page tables included", () => {
    const MiB = 2 ** 20;
    const p: ProbeResult = {
      method: "pagemap", rss_before: 50 * MiB, rss_after: 150 * MiB, page_tables: 2 * MiB, js_heap: 4 * MiB,
      guest_ram_touched: 80 * MiB, core_region_touched: 6 * MiB,
    };
    expect(breakdown(p, 4)).toEqual({
      overhead_mib: 5.5, core_region_mib: 1.5, js_heap_mib: 1, page_tables_mib: 0.5, other_mib: 2.5, guest_ram_touched_mib: 20,
    });
  });
});

describe("/proc parsing", () => {
  const MAPS = [
    "55d0c0a00000-55d0c0a21000 rw-p 00000000 00:00 0                          [heap]",
    "7f71257b0000-7f71277c0000 rw-p 00000000 00:00 0 ",
    "7f75c7600000-7f75c7800000 r-xp 00001000 fd:01 1234                       /usr/bin/node",
  ].join("\n");

  it("reads mappings", () => {
    expect(parseMaps(MAPS)).toEqual([
      { start: 0x55d0c0a00000, end: 0x55d0c0a21000, perms: "rw-p", path: "[heap]" },
      { start: 0x7f71257b0000, end: 0x7f71277c0000, perms: "rw-p", path: "" },
      { start: 0x7f75c7600000, end: 0x7f75c7800000, perms: "r-xp", path: "/usr/bin/node" },
    ]);
  });

  it("reads status fields and a mapping's Rss from smaps", () => {
    expect(statusField("Name:\tnode\nVmRSS:\t  123456 kB\nVmPTE:\t     840 kB\n", "VmPTE")).toBe(840 * 1024);
    expect(() => statusField("VmRSS: 1 kB\n", "VmPTE")).toThrow(/VmPTE/);
    const smaps = `${MAPS.split("\n")[0]}\nSize: 132 kB\nRss: 100 kB\n${MAPS.split("\n")[1]}\nSize: 32832 kB\nKernelPageSize: 4 kB\nRss: 15000 kB\nPss: 15000 kB\n`;
    expect(smapsRss(smaps, 0x7f71257b0000)).toBe(15000 * 1024);
    expect(smapsRss(smaps, 0x55d0c0a00000)).toBe(100 * 1024);
    expect(() => smapsRss(smaps, 0x1000)).toThrow(/no mapping/);
  });

  it("counts present pagemap entries and non-zero pages", () => {
    const entries = new DataView(new ArrayBuffer(4 * 8));
    entries.setBigUint64(0, (1n << 63n) | 0x1234n, true);
    entries.setBigUint64(8, 0x1234n, true); // a PFN without the present bit
    entries.setBigUint64(24, 1n << 63n, true); // present, PFN hidden (unprivileged reader)
    expect(countPresent(new Uint8Array(entries.buffer))).toBe(2);
    const mem = new Uint8Array(5 * PAGE_SIZE);
    mem[PAGE_SIZE * 1 + 7] = 1;
    mem[PAGE_SIZE * 4 - 1] = 0x80; // last byte of page 3
    expect(countNonZeroPages(mem)).toBe(2);
  });
});

describe.skipIf(!existsSync("/proc/self/pagemap"))("a WebAssembly.Memory in this process", () => {
  it("is located, and the pages written to it are seen resident, no others", () => {
    const pages = 4; // 64 KiB wasm pages: 64 pages of 4 KiB
    const mems = [0, 1].map(() => new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true }));
    const probe = pages * 65536 - PAGE_SIZE;
    const bases = mems.map((m) => locateWasmMemory(m, probe));
    expect(bases[0]).not.toBe(bases[1]);
    const u8 = new Uint8Array(mems[1].buffer);
    for (const page of [3, 10, 11, 40]) u8[page * PAGE_SIZE + 100] = 1;
    expect(residentPages(bases[1], 64 * PAGE_SIZE)).toBe(5); // four written, and the probe's page
    expect(residentPages(bases[1], 10 * PAGE_SIZE)).toBe(1);
    expect(wasmMemoryResidency(mems[1], 8 * PAGE_SIZE, 40 * PAGE_SIZE, probe)).toEqual({ belowRam: PAGE_SIZE, ram: 3 * PAGE_SIZE });
  });

  it("does not count a page only read (the shared zero page) as resident RAM", () => {
    const mem = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
    const probe = 65536 - PAGE_SIZE;
    const base = locateWasmMemory(mem, probe);
    const u8 = new Uint8Array(mem.buffer);
    u8[2 * PAGE_SIZE] = 1;
    expect(u8[5 * PAGE_SIZE]).toBe(0); // a read maps the zero page: present in pagemap, not in Rss
    expect(residentPages(base, 8 * PAGE_SIZE)).toBe(2);
    expect(wasmMemoryResidency(mem, 0, 8 * PAGE_SIZE, probe).ram).toBe(PAGE_SIZE);
  });
});
