// One way of timing a bare-metal guest through the embedding API, the same on every platform:
// the browser suite runs it in Node (pCPU on a worker thread) and in Chromium (pCPU on a Web
// Worker), so the two figures differ only by where they ran.
import type { Hypervisor } from "../host/index";

export interface GuestRun {
  instructions: number;
  seconds: number;
  exitCode: number | undefined;
}

/** Boot `kernel` (a path the host's platform can read) with no firmware, to its end. */
export async function timeGuest(host: Hypervisor, name: string, kernel: string): Promise<GuestRun> {
  // The interpreter on both sides (a browser's default; Node's is the translation tier): the
  // browser suite compares the engines on the same code.
  await host.create({ name, kernel, bios: "none", memory: "64M", jit: "off" });
  try {
    const t0 = performance.now();
    await host.act(name, "start");
    const end = await host.waitForEnd(name);
    const seconds = (performance.now() - t0) / 1000;
    const { instructions } = await host.stats(name);
    return { instructions, seconds, exitCode: end.exitCode };
  } finally {
    await host.destroy(name);
  }
}
