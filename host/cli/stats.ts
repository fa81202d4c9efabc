// `wasmvisor boot --stats`: where the VM's time went, printed when it stops.
import type { MachineStats } from "../machine/virt";

export interface VmStats extends MachineStats {
  /** Wall seconds since the VM started. */
  seconds: number;
}

const count = (n: number) => n.toLocaleString("en-US");

/** A plain-text table of the VM's run: instructions, exits by reason, device and SBI extension. */
export function formatStats(s: VmStats): string {
  const lines: string[] = [];
  const mips = s.seconds > 0 ? (s.instructions / s.seconds / 1e6).toFixed(1) : "-";
  lines.push(`wasmvisor: ${count(s.instructions)} instructions in ${s.seconds.toFixed(2)} s (${mips} MIPS)`);
  const exits = Object.entries(s.exits);
  const total = exits.reduce((a, [, n]) => a + n, 0);
  lines.push(`  exits: ${count(total)} (${exits.map(([k, n]) => `${k} ${count(n)}`).join(", ")})`);
  const timed = s.exitSeconds;
  const perExit = (kind: keyof NonNullable<VmStats["exitSeconds"]>) =>
    timed && s.exits[kind] > 0 ? `, ${((timed[kind] / s.exits[kind]) * 1e6).toFixed(2)} µs host time each` : "";
  const table = (title: string, kind: "mmio" | "sbi", rows: Record<string, number>) => {
    const entries = Object.entries(rows).sort((a, b) => b[1] - a[1]);
    if (!entries.length) return;
    lines.push(`  ${title}${perExit(kind)}:`);
    const width = Math.max(...entries.map(([k]) => k.length));
    for (const [k, n] of entries) lines.push(`    ${k.padEnd(width)}  ${count(n).padStart(12)}`);
  };
  table("MMIO exits by device", "mmio", s.mmio);
  table("SBI calls by extension", "sbi", s.sbi);
  const p = s.paging;
  lines.push(`  paging (${p.mode}): ${count(p.tlbMisses)} TLB misses, ${count(p.walkRefs)} walk references` +
    ` (${p.tlbMisses ? (p.walkRefs / p.tlbMisses).toFixed(1) : "0"} per miss), ${count(p.framesPopulated)} frames populated`);
  if (p.mode === "shadow") {
    lines.push(`    shadow: ${count(p.shadowFaults)} shadow faults, ${count(p.ptWriteTraps)} page-table write traps,` +
      ` ${count(p.shadowZaps)} entries zapped, ${count(p.unshadowed)} tables unshadowed, ${count(p.shadowResets)} resets,` +
      ` satp switches: ${count(p.shadowContextHits)} cached roots, ${count(p.shadowContextNew)} new`);
  }
  if (p.dirtyFaults) lines.push(`    dirty logging: ${count(p.dirtyFaults)} first-write faults`);
  const j = s.jit;
  if (j) {
    lines.push(`  translation: ${count(j.retired)} instructions retired translated (${s.instructions ? ((100 * j.retired) / s.instructions).toFixed(1) : "0"}%,` +
      ` ${j.entries ? (j.retired / j.entries).toFixed(0) : 0} an entry),` +
      ` ${count(j.translations)} pages translated in ${count(j.units)} units, ${(j.wasmBytes / 1024).toFixed(0)} KiB of WebAssembly (${count(j.live)} pages live, ${(j.liveWasmBytes / 1024).toFixed(0)} KiB; ${count(j.optimized)} units optimized, ${count(j.onThread)} made on the guest's thread),` +
      ` ${j.compileMs.toFixed(1)} ms compiling (${j.translations ? ((1000 * j.compileMs) / j.translations).toFixed(0) : 0} µs a page)` +
      (j.failures ? `; ${count(j.failures)} failed (a bug, please report it: ${j.lastFailure})` : ""));
  }
  const sp = s.spread;
  if (sp) {
    lines.push(`  parallel: hart${sp.harts.length > 1 ? "s" : ""} ${sp.harts.join(", ")} ran on pCPU ${sp.pcpu}'s thread: ${(sp.cpuMs / 1000).toFixed(2)} s of CPU` +
      (sp.jit ? `, ${count(sp.jit.retired)} instructions translated there (${count(sp.jit.translations)} pages)` : ""));
  }
  return lines.join("\n") + "\n";
}
