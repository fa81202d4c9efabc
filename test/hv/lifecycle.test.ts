// One life cycle for every VM: the transitions both the control plane and the pCPU follow,
// a VM's end told with its exit status, and everything it printed delivered before that.
import { describe, test, expect } from "vitest";
import { transition, ACTIONS } from "../../host/hv/lifecycle";
import { HvError } from "../../host/hv/types";
import { Hypervisor } from "../../host/hv/hypervisor";
import { memoryPlatform } from "../../host/platform/memory";
import { parseVmConfig, DEFINITION_PARSING } from "../../host/config/parse";
import { loadCoreModule } from "../../host/platform/node/core";
import { asm } from "../../host/util/riscv-asm";
import { Pcpu } from "../../host/hv/pcpu";
import { loadBootImages } from "../../host/vm/build";
import { ByteRing } from "../../host/util/ring";

describe("the life cycle's transitions", () => {
  test("each action from the states that allow it, a 409 naming what it needs otherwise", () => {
    expect(transition("a", "created", "start")).toBe("running");
    expect(transition("a", "running", "pause")).toBe("paused");
    expect(transition("a", "paused", "resume")).toBe("running");
    for (const from of ["created", "running", "paused"] as const) expect(transition("a", from, "stop")).toBe("stopped");
    // reset: back to power-on, in the state it was in; a VM not started yet is at power-on already.
    for (const from of ["running", "paused"] as const) expect(transition("a", from, "reset")).toBe(from);
    expect(() => transition("a", "created", "reset")).toThrow("cannot reset a: it is created; reset needs it running or paused");
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

const core = loadCoreModule;
const UART = 0x10000000;

/** `n` bytes on the UART ('a' + i % 16), then the test device: poweroff, or FAIL with `failCode`. */
function printer(n: number, failCode?: number): Uint8Array {
  return asm`
    li t0, ${UART}
    li t1, ${n}
    li t2, 0
  1:
    andi t3, t2, 15
    addi t3, t3, 97
    sb t3, 0(t0)
    addi t2, t2, 1
    bne t2, t1, 1b
    li t0, 0x100000
    li t1, ${failCode === undefined ? 0x5555 : (failCode << 16) | 0x3333}
    sw t1, 0(t0)
  2: j 2b
  `;
}

/** Reads printer()'s output: how many bytes, whether in order; `more()` is what it answers (false: hold on). */
function reader(more = () => true) {
  const r = {
    got: 0,
    ordered: true,
    listen: (chunk: Uint8Array) => {
      for (const b of chunk) { if (b !== 97 + (r.got & 15)) r.ordered = false; r.got++; }
      return more();
    },
  };
  return r;
}

describe("a VM's end", () => {
  test("comes after every byte it printed, with its exit status", async () => {
    // 300 KiB on the UART, far more than the console ring holds, then poweroff through the test device.
    const bytes = 300 * 1024;
    const hv = await Hypervisor.start(memoryPlatform({ core: core(), files: { "/print": printer(bytes) } }), { balance: false });
    try {
      await hv.createVm(parseVmConfig({ name: "p", mode: "full", bios: "none", kernel: "/print", memory: "16M" }, DEFINITION_PARSING));
      const r = reader();
      hv.attachConsole("p", r.listen);
      await hv.act("p", "start");
      const end = await hv.waitForEnd("p");
      expect({ got: r.got, ordered: r.ordered }).toEqual({ got: bytes, ordered: true });
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

describe("a start", () => {
  test("is answered before its pCPU runs the VM: the pCPU's loop begins on its thread's next turn", async () => {
    // (Through Comlink the answer is a message: it would wait for a loop that runs the guests
    // for a turn first, some 10 ms, and a restore counts to the VM running.)
    const platform = memoryPlatform({ core: core(), files: { "/spin": asm`1: j 1b` } });
    const config = parseVmConfig({ name: "s", mode: "full", bios: "none", kernel: "/spin", memory: "16M" }, DEFINITION_PARSING);
    const pcpu = new Pcpu(platform);
    pcpu.init(new SharedArrayBuffer(4), undefined, () => {});
    await pcpu.create({ config, images: loadBootImages(config, platform), consoleOut: new ByteRing(1 << 16).buffer, consoleIn: new ByteRing(1 << 12).buffer });
    try {
      expect(pcpu.act("s", "start")).toBeNull();
      expect(pcpu.stats("s")).toMatchObject({ state: "running", machine: { instructions: 0 } });
      await new Promise((r) => setTimeout(r, 50));
      expect(pcpu.stats("s").machine.instructions).toBeGreaterThan(0);
    } finally {
      pcpu.close();
    }
  });
});

const settle = async (hv: Hypervisor, name: string) => {
  // Until the guest has stopped retiring instructions (it ended, or waits for its console).
  for (let last = -1; ;) {
    await new Promise((r) => setTimeout(r, 50));
    const now = (await hv.machineStats(name)).instructions;
    if (now === last) return;
    last = now;
  }
};

describe("a console that is not read", () => {
  test("makes the VM wait, not lose output or grow the host: it goes on when the reader resumes", async () => {
    const bytes = 3 << 20;
    const hv = await Hypervisor.start(memoryPlatform({ core: core(), files: { "/print": printer(bytes) } }), { balance: false });
    try {
      await hv.createVm(parseVmConfig({ name: "p", mode: "full", bios: "none", kernel: "/print", memory: "16M" }, DEFINITION_PARSING));
      let paused = true;
      const r = reader(() => !paused);
      const serial = hv.attachConsole("p", r.listen);
      await hv.act("p", "start");
      await settle(hv, "p");
      // Held after its first chunk: the ring (64 KiB) and the pCPU's megabyte are full, the guest waits.
      expect(hv.info("p").state).toBe("running");
      expect(r.got).toBeLessThan(bytes / 2);
      paused = false;
      serial.resume();
      const end = await hv.waitForEnd("p");
      expect({ got: r.got, ordered: r.ordered }).toEqual({ got: bytes, ordered: true });
      expect(end).toMatchObject({ state: "stopped", exitCode: 0 });
    } finally {
      await hv.close();
    }
  }, 60_000);
});

describe("races in a VM's life", () => {
  test("a stop that finds the VM failed by itself records the failure and restarts nothing", async () => {
    const hv = await Hypervisor.start(memoryPlatform({ core: core(), files: { "/fail": printer(600 << 10, 3) } }), { balance: false });
    try {
      await hv.createVm(parseVmConfig({ name: "f", mode: "full", bios: "none", kernel: "/fail", memory: "16M", onFailure: "restart" }, DEFINITION_PARSING));
      let paused = true;
      const serial = hv.attachConsole("f", () => !paused); // its last output waits in the pCPU, and with it the news of its end
      await hv.act("f", "start");
      await settle(hv, "f");
      expect(hv.info("f").state).toBe("running"); // not told yet
      const info = await hv.act("f", "stop");
      expect(info).toMatchObject({ state: "failed", reason: "failed with code 3", exitCode: 3, restarts: 0 });
      paused = false;
      serial.resume();
      await new Promise((r) => setTimeout(r, 300));
      expect(hv.info("f")).toMatchObject({ state: "failed", exitCode: 3, restarts: 0 });
    } finally {
      await hv.close();
    }
  }, 60_000);

  test("a destroy during the build, or during an automatic restart, leaves nothing behind", async () => {
    const hv = await Hypervisor.start(memoryPlatform({ core: core(), files: { "/fail": printer(1, 3), "/disk": new Uint8Array(1 << 20) } }), { balance: false });
    try {
      const config = parseVmConfig({ name: "x", mode: "full", bios: "none", kernel: "/fail", memory: "16M", drives: ["file=/disk"], onFailure: "restart" }, DEFINITION_PARSING);
      const creating = hv.createVm(config);
      await hv.destroy("x"); // waits for the build, then destroys what was built
      await creating;
      expect(hv.list()).toEqual([]);
      expect(hv.host()).toMatchObject({ vms: 0, memoryCommitted: 0, fdsCommitted: 0 });
      // Fails at once and is restarted: a destroy meanwhile must not leave a restarted VM nobody owns.
      await hv.createVm(config);
      await hv.act("x", "start");
      for (let i = 0; i < 100 && hv.info("x").state !== "failed"; i++) await new Promise((r) => setTimeout(r, 5));
      await hv.destroy("x");
      await new Promise((r) => setTimeout(r, 200));
      expect(hv.list()).toEqual([]);
      // The pCPU holds no VM of that name either: it can be made again.
      await hv.createVm(config);
      expect(hv.info("x").state).toBe("created");
    } finally {
      await hv.close();
    }
  }, 60_000);
});
