// The compile thread's warm-up program (host/jit/warm-up.ts): it must run as written, through
// the paths a guest's boot takes (M-mode on physical addresses, then S-mode under Sv39, traps,
// atomics, CSRs, compressed code), interpreted and then translated, or it warms up the wrong code.
import { describe, expect, it } from "vitest";
import * as L from "../../host/core/layout";
import { loadCoreModule } from "../../host/platform/node/core";
import { warmUp } from "../../host/jit/warm-up";

describe("the compile thread's warm-up", () => {
  it("runs its loop in M-mode, then in S-mode with paging, interpreted and then translated", () => {
    const w = warmUp(loadCoreModule(), { interpretMs: 30, translateMs: 30 });
    const { core } = w;
    expect(core.x(0, 9)).toBe(256n); // s1: the M-mode loop ran its 256 times, then the switch
    expect([1, 3]).toContain(core.priv(0)); // S-mode, or its ecall's handler in M-mode
    expect(core.csr(0, 0x180) >> 60n).toBe(8n); // satp: Sv39
    expect(core.csr(0, 0x342)).toBe(9n); // mcause: its last trap, an ecall from S-mode
    // The body's counter (a0, counted twice a call) went round both loops: more than 256 calls.
    expect(core.x(0, 10)).toBeGreaterThan(2n * 256n + 2n);
    // Its pc is in the program's code page (the loop or the trap handler), never anywhere else.
    const pc = Number(core.pc(0));
    expect(pc >= L.RAM_GPA && pc < L.RAM_GPA + 4096).toBe(true);
    expect(w.interpreted).toBeGreaterThan(100_000);
    expect(w.translations).toBeGreaterThan(0);
    // Translated, much of it ran in its page's translation: the CSR accesses, the ecall and its
    // handler, and what follows each of them up to the next block, are the interpreter's (about half).
    const retired = Number(core.view.getBigUint64(L.VM_STAT_JIT, true));
    expect(retired).toBeGreaterThan(w.translated / 4);
  });
});
