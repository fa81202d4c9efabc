// The regions of a VM's memory (assembly/layout.ts) must not overlap: a hart's block sitting on
// the device map once let hart 7 rewrite which pages are devices.
import { test, expect } from "vitest";
import * as L from "../host/core/layout";

test("memory layout regions do not overlap and fit below guest RAM", () => {
  const hartEnd = L.H_TLB + L.TLB_REGIMES * 3 * L.TLB_TABLE_BYTES;
  expect(hartEnd).toBeLessThanOrEqual(L.HART_STRIDE);
  expect(L.TLB_TABLE_BYTES).toBe(L.TLB_ENTRIES * L.TLB_ENTRY_BYTES);
  expect(L.DC_PAGE_BYTES).toBe((4096 / 2) * 8); // one 8-byte slot per halfword
  const regions: [string, number, number][] = [
    ["VM block", L.VM_BASE, L.VM_BASE + 0x1000],
    ["boot ROM", L.ROM_HOST, L.ROM_HOST + L.ROM_SIZE],
    ["harts", L.HART_BASE, L.HART_BASE + L.MAX_HARTS * L.HART_STRIDE],
    ["write-mapped page bits", L.WRITE_MAPPED, L.WRITE_MAPPED + 2 ** 32 / 4096 / 8],
    ["device map", L.MMIO_MAP, L.MMIO_MAP + Number(L.RAM_GPA) / 4096 / 8],
    ["TLB contexts", L.TLB_CTX_AREA, L.TLB_CTX_AREA + L.MAX_HARTS * L.TLB_CTX_HART_STRIDE],
  ];
  expect(L.TLB_CTX_BYTES).toBe(3 * 3 * L.TLB_TABLE_BYTES); // the paged regimes' read, write and fetch tables
  expect(L.TLB_CTX_HART_STRIDE).toBe((L.TLB_CTXS - 1) * L.TLB_CTX_BYTES);
  expect(L.TLB_CTXS * 4).toBeLessThanOrEqual(31); // H_TLB_LIVE has a bit per context and regime
  // The TLB context fields fit in the hart block's first page (cleared at reset) and overlap no other field.
  expect(L.H_TLB_CTX_USE + 4 * L.TLB_CTXS).toBeLessThanOrEqual(L.H_TLB_CTX_INIT);
  expect(L.H_TLB_CTX_SATP + 8 * L.TLB_CTXS).toBeLessThanOrEqual(L.H_TLB_CTX_USE);
  // Each thread's decoded-code cache: its fields within its stride, its slots.
  for (let k = 0; k < L.DC_CACHES; k++) {
    const m = k * L.DC_META_STRIDE;
    const fields: [string, number, number][] = [
      [`decoded-code tags ${k}`, m + L.DC_TAGS, m + L.DC_TAGS + L.DC_PAGES * 4],
      [`decoded-code scratch slot ${k}`, m + L.DC_SCRATCH, m + L.DC_SCRATCH + 8],
      [`translation slot ${k}`, m + L.JIT_SLOT, m + L.JIT_SLOT + 8],
      [`decoded-code clock hands ${k}`, m + L.DC_HAND, m + L.DC_HAND + L.DC_PAGES / L.DC_WAYS],
      [`decoded-code used bits ${k}`, m + L.DC_USED, m + L.DC_USED + L.DC_PAGES],
      [`decoded-code generations ${k}`, m + L.DC_GEN, m + L.DC_GEN + L.DC_PAGES * 4],
      [`decoded-code heat ${k}`, m + L.DC_HEAT, m + L.DC_HEAT + L.DC_PAGES],
      [`decoded-code counts ${k}`, m + L.DC_DECODED, m + L.DC_DECODED + L.DC_PAGES * 2],
      [`decoded-code interpreted counts ${k}`, m + L.DC_INTERP, m + L.DC_INTERP + L.DC_PAGES * 2],
      [`decoded-code samples ${k}`, m + L.DC_SAMPLED, m + L.DC_SAMPLED + L.DC_PAGES * 16],
    ];
    for (const f of fields) expect(f[2], f[0]).toBeLessThanOrEqual(L.DC_TAGS + m + L.DC_META_STRIDE);
    regions.push(...fields);
    const slots = L.DC_SLOTS + k * L.DC_SLOTS_STRIDE;
    regions.push([`decoded-code slots ${k}`, slots, slots + L.DC_PAGES * L.DC_PAGE_BYTES]);
  }
  for (const [name, start, end] of regions) {
    expect(end, name).toBeLessThanOrEqual(L.RAM_HOST);
    for (const [other, s2, e2] of regions) {
      if (other !== name) expect(start < e2 && end > s2, `${name} overlaps ${other}`).toBe(false);
    }
  }
  // Every VM-wide field lies in the VM block.
  for (const [k, v] of Object.entries(L)) {
    if (k.startsWith("VM_") && k !== "VM_BASE" && typeof v === "number") {
      expect(v >= L.VM_BASE && v + 8 <= L.VM_BASE + 0x1000, k).toBe(true);
    }
  }
});
