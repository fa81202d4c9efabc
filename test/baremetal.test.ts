// The project's bare-metal test programs (guests/baremetal), run through HTIF on our core.
// Each is self-checking: it prints PASS and exits 0, or lists each failed check.
import { describe, test, expect, beforeAll } from "vitest";
import { readFileSync } from "node:fs";
import { buildBaremetal, PROGRAM_NAMES, HARNESS_PROGRAMS } from "../guests/baremetal/build.mjs";
import { runBareMetal } from "./board";
import { loadCoreModule } from "../host/platform/node/core";

let programs: Record<string, string>;

beforeAll(async () => {
  ({ programs } = await buildBaremetal());
}, 300_000);

function runProgram(elf: string): { code: number; output: string } {
  const r = runBareMetal(loadCoreModule(), { name: elf, bytes: new Uint8Array(readFileSync(elf)) });
  return { code: r.reason.code, output: r.output };
}

describe("bare-metal test programs on the core", () => {
  for (const name of PROGRAM_NAMES.filter((n) => !n.startsWith("bench-") && !HARNESS_PROGRAMS.includes(n))) {
    test(name, () => {
      const { code, output } = runProgram(programs[name]);
      // Our core implements everything these programs probe for: nothing may be skipped, and
      // none of the QEMU deviations the programs tolerate may show up.
      expect(output).not.toMatch(/^(FAIL|SKIP|DEVIATION)/m);
      expect(output).toMatch(/PASS/);
      expect(code, output).toBe(0);
    }, 120_000);
  }
});
