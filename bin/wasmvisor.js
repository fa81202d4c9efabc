#!/usr/bin/env node
// Entry point: the bundled CLI lives in dist/ (built by `npm run build`).
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const cli = new URL("../dist/cli.js", import.meta.url);
if (!existsSync(fileURLToPath(cli))) {
  process.stderr.write("wasmvisor: not built yet: run 'npm run build' in the wasmvisor directory\n");
  process.exit(1);
}
await import(cli.href);
