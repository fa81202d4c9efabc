// Loop copies (translate.ts emitLoopCopy) at their edges: a fault inside one, a store that rewrites
// the loop it runs, a call out of it. Each runs interpreted and translated: the same end.
import { describe, expect, it } from "vitest";
import { EXIT, same } from "./asm";

describe("loop copies", () => {
  it("a load faulting inside the copy traps at its own pc; the handler skips it and the loop goes on", () => {
    const t = same("fault", `
  la t0, handler
  csrw mtvec, t0
  li s1, 0          # faults seen
  li s2, 0          # sum
  li s3, 0          # last mepc
  la x16, data
  li x31, 3000
  j loop
  .align 12
loop:
  addi x31, x31, -1
  beqz x31, done
  andi t1, x31, 63
  mv t2, x16
  bnez t1, 1f
  li t2, 8          # a hole: load access fault
1:
  ld t3, 0(t2)
  add s2, s2, t3
  addi s2, s2, 1
  j loop
done:
${EXIT}
handler:
  addi s1, s1, 1
  csrr s3, mepc
  csrr t4, mepc
  addi t4, t4, 4
  csrw mepc, t4
  mret
  .align 12
data:
  .dword 5
  .space 4088
`);
    expect(t.jit!.retired).toBeGreaterThan(0);
    expect(t.regs[9]).toBe(46n); // s1: 3000 / 64 faults
  }, 120_000);

  it("a store inside the copy rewrites an instruction of the loop itself (no fence.i): the next round runs the new one", () => {
    same("smc", `
  .option norvc
  li s2, 0
  li x31, 5000
  la t5, patch
  lw t6, 0(t5)      # the original 'addi s2, s2, 1'
  la t4, newinsn
  lw t4, 0(t4)      # 'addi s2, s2, 3'
  j loop
  .align 12
loop:
  addi x31, x31, -1
  beqz x31, done
  li t1, 2500
  bne x31, t1, 1f
  sw t4, 0(t5)
1:
patch:
  addi s2, s2, 1
  j loop
done:
${EXIT}
newinsn:
  addi s2, s2, 3
`);
  }, 120_000);

  it("a call inside the loop (jal/jalr within the page)", () => {
    same("call", `
  li s2, 0
  li x31, 5000
  j loop
  .align 12
f:
  addi s2, s2, 7
  ret
loop:
  addi x31, x31, -1
  beqz x31, done
  jal ra, f
  andi t1, x31, 1
  beqz t1, loop
  addi s2, s2, 1
  j loop
done:
${EXIT}
`);
  }, 120_000);
});
