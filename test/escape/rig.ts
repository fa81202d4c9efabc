// The scene of the escape suite: a Hypervisor on Node with one pCPU (or two, for attackers with
// several harts: the hypervisor then runs the upper half of them on the other pCPU, beside the
// victim), where an attacker VM (an M-mode program, no firmware) runs beside a victim VM that
// keeps a pattern in its RAM and checks it while it counts (test/state/counter-guest.ts). An
// attacker never yields; it reports what it saw on its UART, or the test watches it through the
// API; the tests judge that, the victim and the host.
import { expect } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Hypervisor } from "../../host/hv/hypervisor";
import type { BorrowedStats } from "../../host/machine/virt";
import { nodePlatform } from "../../host/platform/node";
import { counterKernel } from "../state/counter-guest";

export const RAM = 0x80000000;
export const RAM_SIZE = 16 << 20;
export const RAM_END = RAM + RAM_SIZE;
export const UART = 0x10000000;
export const CLINT = 0x2000000;
export const PLIC = 0xc000000;
export const ROM = 0x1000;

/**
 * Assembly that leaves in `rd` a checksum of the boot ROM's page (each doubleword rotated by its
 * index, so a moved or changed byte shows), read from M-mode; it uses t0-t2.
 */
export const romChecksum = (rd: string): string => `
    li ${rd}, 0
    li t0, ${ROM}
    li t1, ${ROM + 4096}
  1:
    ld t2, 0(t0)
    add ${rd}, ${rd}, t2
    slli t2, ${rd}, 7
    srli ${rd}, ${rd}, 57
    or ${rd}, ${rd}, t2
    addi t0, t0, 8
    bltu t0, t1, 1b
`;

export interface Attacker {
  program: Uint8Array;
  /** More of its VM definition (paging, drives); `dir` is a scratch directory for its files. */
  definition?: (dir: string) => Record<string, unknown>;
}

export interface Scene {
  hv: Hypervisor;
  /** A scratch directory, removed afterwards. */
  dir: string;
  /** Console output so far. */
  out: { attacker: string; victim: string };
  startVictim(): Promise<void>;
  /** Waits for the victim's end: its pattern survived every check (an X would say it changed) and it powered off. */
  victimFinishes(): Promise<void>;
  /** Waits (at most 10 s) until the attacker's output matches `until`, and returns that output. */
  attackerSays(until: RegExp): Promise<string>;
  /** The attacker still runs (spinning, never yielding), and the host answers. */
  attackerStillRuns(): Promise<void>;
  /** Waits (at most 10 s) until the hypervisor has lent the attacker's upper harts to the other pCPU; where, and what they did there. */
  attackerSpread(): Promise<BorrowedStats>;
}

/**
 * Runs `play` with the attacker started and the victim (`victimSpin`: its busy wait between
 * digits) made but not started, on a host of `cpus` pCPUs (the attacker is placed on the first,
 * the victim on the second); closes everything afterwards.
 */
export async function besideVictim(attacker: Attacker, play: (scene: Scene) => Promise<void>, victimSpin = 30_000, cpus = 1): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "wasmvisor-escape-"));
  const hv = await Hypervisor.start(nodePlatform, { cpus, balance: false, hostMemory: 512 << 20 });
  try {
    writeFileSync(join(dir, "attacker.bin"), attacker.program);
    writeFileSync(join(dir, "victim.bin"), counterKernel(victimSpin));
    const out = { attacker: "", victim: "" };
    await hv.create({ name: "attacker", bios: "none", kernel: join(dir, "attacker.bin"), memory: `${RAM_SIZE >> 20}M`, drives: [], nets: [], ...attacker.definition?.(dir) });
    await hv.create({ name: "victim", kernel: join(dir, "victim.bin"), memory: "16M" });
    for (const name of ["attacker", "victim"] as const) hv.attachConsole(name, (b) => { out[name] += new TextDecoder("latin1").decode(b); });
    await hv.act("attacker", "start");
    await play({
      hv, dir, out,
      startVictim: async () => { await hv.act("victim", "start"); },
      victimFinishes: async () => {
        const end = await hv.waitForEnd("victim");
        expect(out.victim).toBe("0123456789");
        expect(end).toMatchObject({ state: "stopped" });
      },
      attackerSays: async (until) => {
        for (let i = 0; i < 200 && !until.test(out.attacker); i++) await new Promise((r) => setTimeout(r, 50));
        expect(out.attacker).toMatch(until);
        return out.attacker;
      },
      attackerStillRuns: async () => {
        expect(hv.info("attacker").state).toBe("running");
        const a = await hv.stats("attacker");
        await new Promise((r) => setTimeout(r, 100));
        expect((await hv.stats("attacker")).instructions).toBeGreaterThan(a.instructions);
        expect(hv.list().map((v) => v.name).sort()).toEqual(["attacker", "victim"]);
      },
      attackerSpread: async () => {
        for (let i = 0; i < 200; i++) {
          const spread = (await hv.machineStats("attacker")).spread;
          if (spread && spread.pcpu >= 0) return spread;
          await new Promise((r) => setTimeout(r, 50));
        }
        throw new Error("the attacker's harts were never spread over the pCPUs");
      },
    });
  } finally {
    await hv.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
