// Translations going on into other pages' translations (jitChain, a tail call) rather than back to
// the run loop: the same end as interpreted, the budget still bounding each call from the loop.
import { describe, expect, it } from "vitest";
import { EXIT, assemble, run, same } from "./asm";

// A loop in one page calling a function in a second, which jumps to a third and returns from
// there: four page crossings a round, each with registers live across it.
const PING_PONG = `
  li s1, 30000
  li a0, 1
  li a1, 7
  j loop
  .align 12
loop:
  call f
  add s2, s2, a0
  addi s1, s1, -1
  bnez s1, loop
  j end
  .align 12
f:
  xor a0, a0, a1
  slli a1, a1, 1
  addi a1, a1, 3
  j g
  .align 12
g:
  add a0, a0, s1
  srli a2, a0, 5
  xor a1, a1, a2
  ret
end:
`;

describe("chaining between pages' translations", () => {
  it("calls and returns across three pages end as interpreted, and nearly every crossing chains", () => {
    const t = same("ping-pong", PING_PONG + EXIT);
    // 120,000 crossings: those taken from translation to translation never reach the run loop.
    expect(t.jit!.retired).toBeGreaterThan(350_000);
    expect(t.jit!.entries).toBeLessThan(12_000);
  }, 120_000);

  it("a timer interrupt is taken while translations chain for ever", () => {
    // Code that never leaves the three pages: only the budget each call from the run loop passes
    // along (and a chain honours) brings it back to take the interrupt.
    const t = run(assemble("chain-timer", `
  la t0, handler
  csrw mtvec, t0
  li t0, 0x200bff8
  ld t1, 0(t0)
  li t2, 1000000
  add t1, t1, t2
  li t0, 0x2004000
  sd t1, 0(t0)        # mtimecmp: 100 ms from now (translations are made and chain by then)
  li t0, 0x80
  csrs mie, t0
  csrsi mstatus, 8
  li s1, -1           # round for ever
  ${PING_PONG.replace("li s1, 30000", "")}
  j loop
  .align 2
handler:
${EXIT}`), "all", 30);
    expect(t.reason).toEqual({ kind: "poweroff", code: 0 }); // the handler ran
    expect(t.jit!.retired).toBeGreaterThan(0);
  }, 60_000);
});
