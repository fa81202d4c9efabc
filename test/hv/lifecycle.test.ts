// One life cycle for every VM: the transitions both the control plane and the pCPU follow,
// a VM's end told with its exit status, and everything it printed delivered before that.
import { describe, test, expect } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { transition, ACTIONS } from "../../host/hv/lifecycle";
import { HvError } from "../../host/hv/types";
import { Hypervisor } from "../../host/hv/hypervisor";
import { memoryPlatform } from "../../host/platform/memory";
import { parseVmConfig, DEFINITION_PARSING } from "../../host/config/parse";
import { packageRoot } from "../../host/platform/node/core";
import { asm } from "../encoder";

describe("the life cycle's transitions", () => {
  test("each action from the states that allow it, a 409 naming what it needs otherwise", () => {
    expect(transition("a", "created", "start")).toBe("running");
    expect(transition("a", "running", "pause")).toBe("paused");
    expect(transition("a", "paused", "resume")).toBe("running");
    for (const from of ["created", "running", "paused"] as const) expect(transition("a", from, "stop")).toBe("stopped");
    for (const action of ACTIONS) {
      let e: unknown;
      try { transition("a", "failed", action, "it crashed"); } catch (err) { e = err; }
      expect(e).toBeInstanceOf(HvError);
      expect((e as HvError).status).toBe(409);
      expect((e as Error).message).toMatch(new RegExp(`^cannot ${action} a: it is failed \\(it crashed\\); ${action} needs it `));
    }
    expect(() => transition("a", "running", "start")).toThrow("cannot start a: it is running; start needs it created");
  });
});

const core = () => new Uint8Array(readFileSync(join(packageRoot(), "build/core.wasm")));
const UART = 0x10000000;

describe("a VM's end", () => {
  test("comes after every byte it printed, with its exit status", async () => {
    // 300 KiB on the UART, far more than the console ring holds, then poweroff through the test device.
    const bytes = 300 * 1024;
    const program = asm`
      li t0, ${UART}
      li t1, ${bytes}
      li t2, 0
    1:
      andi t3, t2, 15
      addi t3, t3, 97
      sb t3, 0(t0)
      addi t2, t2, 1
      bne t2, t1, 1b
      li t0, 0x100000
      li t1, 0x5555
      sw t1, 0(t0)
    2: j 2b
    `;
    const hv = await Hypervisor.start(memoryPlatform({ core: core(), files: { "/print": program } }), { balance: false });
    try {
      await hv.createVm(parseVmConfig({ name: "p", mode: "full", bios: "none", kernel: "/print", memory: "16M" }, DEFINITION_PARSING));
      let got = 0, ordered = true;
      hv.attachConsole("p", (chunk) => {
        for (const b of chunk) { if (b !== 97 + (got & 15)) ordered = false; got++; }
      });
      await hv.act("p", "start");
      const end = await hv.waitForEnd("p");
      expect({ got, ordered }).toEqual({ got: bytes, ordered: true });
      expect(end).toMatchObject({ state: "stopped", reason: "powered off", exitCode: 0 });
      expect(await hv.waitForEnd("p")).toEqual(end); // at once, once it has ended
      await expect(hv.act("p", "start")).rejects.toThrow(/cannot start p: it is stopped/);
    } finally {
      await hv.close();
    }
  }, 60_000);

  test("a stop by the host ends it with status 0, and a destroyed VM's waiters hear of it", async () => {
    const spin = asm`1: j 1b`;
    const hv = await Hypervisor.start(memoryPlatform({ core: core(), files: { "/spin": spin } }), { balance: false });
    try {
      for (const name of ["a", "b"]) {
        await hv.createVm(parseVmConfig({ name, mode: "full", bios: "none", kernel: "/spin", memory: "16M" }, DEFINITION_PARSING));
        await hv.act(name, "start");
      }
      const a = hv.waitForEnd("a"), b = hv.waitForEnd("b");
      await hv.act("a", "stop");
      expect(await a).toMatchObject({ state: "stopped", reason: "stopped by the host", exitCode: 0 });
      await hv.destroy("b");
      expect(await b).toMatchObject({ state: "stopped", reason: "destroyed" });
    } finally {
      await hv.close();
    }
  }, 60_000);
});
