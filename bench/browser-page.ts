// The browser suite's page: the same guest runs as in Node (bench/guest-run.ts), on the browser
// platform, its pCPU on a Web Worker. The suite calls window.benchGuests through playwright.
import { browserPlatform, createHost } from "../host/browser";
import { timeGuest, type GuestRun } from "./guest-run";

(window as unknown as { benchGuests: (paths: string[]) => Promise<GuestRun[]> }).benchGuests = async (paths) => {
  const platform = await browserPlatform();
  const host = await createHost(platform, { cpus: 1, balance: false, watchdogSeconds: 0 });
  try {
    const runs: GuestRun[] = [];
    for (const [i, path] of paths.entries()) {
      await platform.load(path);
      runs.push(await timeGuest(host, `bench${i}`, path));
    }
    return runs;
  } finally {
    await host.close();
    platform.close();
  }
};
