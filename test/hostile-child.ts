// Runs one attack of the hostile guest (guests/baremetal/tests/hostile.c) in a process of its
// own, so a step that never returns cannot hang the test runner: the parent
// (test/hostile-guest.test.ts) kills it when a step takes too long. Prints one JSON line per
// step, then one when the VM stops or the steps are done.
import { readFileSync } from "node:fs";
import { VirtMachine } from "../host/machine/virt";
import { compileCore, type Paging } from "../host/core/core";
import { parseElf } from "../host/machine/elf";

const [wasm, elfPath, attackText, paging, budgetText, stepsText] = process.argv.slice(2);
const elf = new Uint8Array(readFileSync(elfPath));
const attackAddr = Number(parseElf(elf).symbols.get("hostile_attack"));
let output = "";
const m = new VirtMachine({
  module: compileCore(readFileSync(wasm)), memory: 64 << 20, bios: null, paging: paging as Paging,
  kernel: { name: "hostile", bytes: elf },
  output: (b) => { output += Buffer.from(b).toString("latin1"); },
});
const slot = m.core.phys(attackAddr, 8)!;
new DataView(slot.buffer, slot.byteOffset, 8).setBigUint64(0, BigInt(attackText), true);
const budget = Number(budgetText);
const say = (o: object) => process.stdout.write(JSON.stringify(o) + "\n");
for (let i = 0; i < Number(stepsText); i++) {
  const w0 = m.work, r0 = m.core.totalInstret(), t0 = performance.now();
  const r = m.step(budget);
  say({ ms: performance.now() - t0, work: m.work - w0, retired: m.core.totalInstret() - r0, interrupts: m.core.interruptsTaken(0) });
  if (r.state === "stopped") {
    say({ stopped: r.reason, output });
    process.exit(0);
  }
}
say({ done: true, output });
