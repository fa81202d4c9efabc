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
/** The eight virtio-mmio slots, 0x1000 apart. */
export const VIRTIO = 0x10001000;

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

/**
 * Assembly that points s0 at the first virtio-mmio slot whose magic, version (2) and device ID
 * say it is device `id`, and jumps to `found`; with none, it goes on after itself. Uses t0, t1, t3.
 */
export const findVirtio = (id: number, found: string): string => `
    li s0, ${VIRTIO}
    li t3, ${VIRTIO + 8 * 0x1000}
  find:
    lw t0, 0(s0)
    li t1, 0x74726976
    bne t0, t1, 1f
    lw t0, 4(s0)
    li t1, 2
    bne t0, t1, 1f
    lw t0, 8(s0)
    li t1, ${id}
    beq t0, t1, ${found}
  1:
    li t0, 0x1000
    add s0, s0, t0
    bltu s0, t3, find
`;

/** Assembly that prints the bytes from `from` up to the address in register `end` on the UART. Uses t0-t2. */
export const printResults = (from: number, end: string): string => `
    li t0, ${UART}
    li t1, ${from}
  2:
    bgeu t1, ${end}, 3f
    lbu t2, 0(t1)
    sb t2, 0(t0)
    addi t1, t1, 1
    j 2b
  3:
`;

/**
 * Assembly that resets the virtio-mmio device at s0 and takes it, as a driver does, to
 * FEATURES_OK with VIRTIO_F_VERSION_1 alone, queue 0 selected with 8 entries. Uses t0.
 */
export const virtioNegotiate = `
    sw zero, 0x70(s0)
    li t0, 1
    sw t0, 0x70(s0)     # ACKNOWLEDGE
    li t0, 3
    sw t0, 0x70(s0)     # DRIVER
    li t0, 1
    sw t0, 0x24(s0)
    sw t0, 0x20(s0)     # feature bit 32
    sw zero, 0x24(s0)
    sw zero, 0x20(s0)
    li t0, 11
    sw t0, 0x70(s0)     # FEATURES_OK
    sw zero, 0x30(s0)
    li t0, 8
    sw t0, 0x38(s0)
`;

/**
 * Assembly that sets satp to `satp` and mepc to `label` with MPP = S: the `mret` after it goes
 * on in S-mode at `label`, translated. Uses t0.
 */
export const toSupervisor = (satp: bigint | number, label: string): string => `
    li t0, ${satp}
    csrw satp, t0
    sfence.vma zero, zero
    li t0, 0x1800
    csrc mstatus, t0
    li t0, 0x800        # MPP = S
    csrs mstatus, t0
    la t0, ${label}
    csrw mepc, t0
`;

/**
 * The end of an attacker's report on the UART: "/", then "r" if the boot ROM's checksum is still
 * the one in `start` (taken with romChecksum when the attacker began) or "X" if not, a newline,
 * and a loop that never yields (the scene's victim must still get its share). Uses t0-t2 and s8.
 */
export const reportEnd = (start: string): string => `
    li t0, ${UART}
    li t2, 47           # '/'
    sb t2, 0(t0)
${romChecksum("s8")}
    li t0, ${UART}
    li t2, 114          # 'r': the boot ROM reads as it did
    beq s8, ${start}, 9f
    li t2, 88           # 'X'
  9:
    sb t2, 0(t0)
    li t2, 10
    sb t2, 0(t0)
  forever:
    j forever
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
 * Runs `play` with the attacker started and the victim (`victimWait`: its busy wait between
 * digits, in iterations or, for a victim that must run a given time under either tier, in
 * milliseconds of guest time) made but not started, on a host of `cpus` pCPUs (the attacker is
 * placed on the first, the victim on the second); closes everything afterwards.
 */
export async function besideVictim(attacker: Attacker, play: (scene: Scene) => Promise<void>, victimWait: number | { waitMs: number } = 30_000, cpus = 1): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "wasmvisor-escape-"));
  const hv = await Hypervisor.start(nodePlatform, { cpus, balance: false, hostMemory: 512 << 20 });
  try {
    writeFileSync(join(dir, "attacker.bin"), attacker.program);
    writeFileSync(join(dir, "victim.bin"), counterKernel(victimWait));
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
