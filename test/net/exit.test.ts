import { describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

describe("UserNet.close()", () => {
  it("leaves nothing that keeps the process alive", async () => {
    const dir = mkdtempSync(join(tmpdir(), "usernet-exit-"));
    try {
      const out = join(dir, "child.mjs");
      await build({
        entryPoints: [fileURLToPath(new URL("./exit-child.ts", import.meta.url))],
        bundle: true,
        platform: "node",
        format: "esm",
        target: "node20",
        outfile: out,
        logLevel: "silent",
      });
      const child = spawn(process.execPath, [out], { stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      let closedAt = 0;
      child.stdout.on("data", (d) => {
        stdout += d;
        if (!closedAt && stdout.includes("closed")) closedAt = Date.now();
      });
      child.stderr.on("data", (d) => (stderr += d));
      const killer = setTimeout(() => child.kill("SIGKILL"), 15000);
      const code = await new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
      clearTimeout(killer);
      expect(stderr).toBe("");
      expect(code).toBe(0);
      expect(closedAt).toBeGreaterThan(0);
      expect(Date.now() - closedAt).toBeLessThan(2000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30000);
});
