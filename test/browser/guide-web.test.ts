// The embedding guide's web page (docs/EMBEDDING.md), as written, in Debian's Chromium: it boots
// the Linux guest on the browser platform (its pCPU on a Web Worker), gets an answer on the
// console, saves a snapshot to the browser's storage and offers it as a download. Its VM runs
// with the translation tier on.
import { test, expect } from "vitest";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { buildLinuxGuest } from "../../guests/linux/build.mjs";
import { packageRoot } from "../../host/platform/node/core";
import { STATE_MAGIC } from "../../host/state/container";
import { guideExample } from "../platform/guide";
import { startStaticServer } from "./static-server";

test("the guide's web example boots Linux in Chromium, answers, and hands over a snapshot", async () => {
  const guest = await buildLinuxGuest({ log: () => {} });
  // The page imports the build from /wasmvisor/: dist/web/ is served there.
  const web = join(packageRoot(), "dist/web");
  const server = await startStaticServer({
    files: {
      ...Object.fromEntries(readdirSync(web).map((f) => [`/wasmvisor/${f}`, new Uint8Array(readFileSync(join(web, f)))])),
      "/index.html": guideExample("web"),
      "/guest/Image": new Uint8Array(readFileSync(guest.kernel)),
      "/guest/initramfs.cpio.gz": new Uint8Array(readFileSync(guest.initramfs)),
    },
  });
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
  try {
    const page = await browser.newPage({ acceptDownloads: true });
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${server.url}/index.html`);
    const link = page.locator("a[download]");
    await link.waitFor({ timeout: 180_000 });
    expect(errors).toEqual([]);
    expect(await page.locator("#screen").textContent()).toContain("the answer is 42");
    // jit "on": hot code was translated on the pCPU worker's compile worker, started on first use.
    expect(server.requests.map((r) => r.path)).toContain("/wasmvisor/jit-worker.js");
    const [download] = await Promise.all([page.waitForEvent("download"), link.click()]);
    const saved = new Uint8Array(readFileSync(await download.path()));
    expect(download.suggestedFilename()).toBe("demo.wvs");
    expect(saved.length).toBeGreaterThan(1 << 20);
    expect([...saved.subarray(0, STATE_MAGIC.length)]).toEqual([...STATE_MAGIC]);
  } finally {
    await browser.close();
    await server.close();
  }
}, 240_000);
