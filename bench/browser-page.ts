// The browser suite's page: the same guest runs as in Node (bench/guest-run.ts), on the browser
// platform, its pCPU on a Web Worker. The suite calls window.benchGuests through playwright. One
// host serves every call, as one does in Node: the core is compiled once, and its code gets to
// the engine's top tier once.
import { browserPlatform, createHost, type BrowserPlatform, type Hypervisor } from "../host/browser";
import { timeGuest, type GuestRun } from "./guest-run";

let host: Promise<{ platform: BrowserPlatform; host: Hypervisor }> | null = null;
let n = 0;
(window as unknown as { benchGuests: (paths: string[]) => Promise<GuestRun[]> }).benchGuests = async (paths) => {
  host ??= browserPlatform().then(async (platform) => ({ platform, host: await createHost(platform, { cpus: 1, balance: false, watchdogSeconds: 0 }) }));
  const h = await host;
  const runs: GuestRun[] = [];
  for (const path of paths) {
    await h.platform.load(path);
    runs.push(await timeGuest(h.host, `bench${n++}`, path));
  }
  return runs;
};
