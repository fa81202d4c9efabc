// Random loops (forward branches inside them, conditional jumps back to their head, inner loops,
// loads and stores whose slow paths come back in the middle), translated as interpreted: the
// same registers and the same retired count. The translator runs a loop in a copy of its blocks
// inside a wasm `loop` (translate.ts emitLoopCopy); every way into, round and out of it is here.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { EXIT, same } from "./asm";

const reg = fc.integer({ min: 1, max: 15 }).map((r) => `x${r}`);
const alu = fc.tuple(fc.constantFrom("add", "sub", "xor", "or", "and", "sll", "srl", "mul", "addw", "sltu"), reg, reg, reg)
  .map(([o, d, a, b]) => `${o} ${d}, ${a}, ${b}`);
const cond = fc.tuple(fc.constantFrom("beq", "bne", "blt", "bge", "bltu", "bgeu"), reg, reg);
const offset = fc.integer({ min: 0, max: 255 }).map((i) => i * 8);

type Segment = (label: () => string) => string[];
const segment: fc.Arbitrary<Segment> = fc.oneof(
  alu.map((a) => () => [a]),
  // a forward branch over a few instructions
  fc.tuple(cond, fc.array(alu, { minLength: 1, maxLength: 3 })).map(([[b, x, y], body]) => (label: () => string) => {
    const l = label();
    return [`${b} ${x}, ${y}, ${l}`, ...body, `${l}:`];
  }),
  // a conditional jump back to the head of the loop (a `continue`)
  cond.map(([b, x, y]) => () => [`${b} ${x}, ${y}, loop`]),
  // an inner loop
  fc.tuple(fc.integer({ min: 1, max: 5 }), fc.array(alu, { minLength: 1, maxLength: 4 })).map(([n, body]) => (label: () => string) => {
    const l = label();
    return [`li x30, ${n}`, `${l}:`, ...body, "addi x30, x30, -1", `bnez x30, ${l}`];
  }),
  // memory: the first access of a call misses the inline TLB and comes back through the dispatch
  fc.tuple(reg, offset).map(([r, o]) => () => [`sd ${r}, ${o}(x16)`]),
  fc.tuple(reg, offset).map(([r, o]) => () => [`ld ${r}, ${o}(x16)`]),
);
const init = fc.array(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), { minLength: 15, maxLength: 15 });

describe("random loops", () => {
  it("end with the same registers and retired count translated as interpreted", () => {
    let n = 0;
    fc.assert(fc.property(init, fc.array(segment, { minLength: 2, maxLength: 24 }), (values, segments) => {
      let labels = 0;
      const label = () => `L${labels++}`;
      const body = segments.flatMap((s) => s(label));
      const source = values.map((v, i) => `  li x${i + 1}, 0x${v.toString(16)}\n`).join("") +
        "  la x16, data\n  li x31, 400\n  .align 12\nloop:\n  addi x31, x31, -1\n  beqz x31, done\n" +
        body.map((l) => (l.endsWith(":") ? `${l}\n` : `  ${l}\n`)).join("") + "  j loop\ndone:\n" + EXIT +
        "  .align 12\ndata:\n  .space 4096\n";
      const t = same(`loops${n++}`, source);
      expect(t.jit!.retired).toBeGreaterThan(0);
    }), { numRuns: 30, seed: 20261206 });
  }, 300_000);
});
