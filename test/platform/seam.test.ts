// The platform seam holds: only the Node platform, the CLI and the daemon's socket server know
// they run on Node, and nothing outside the CLI depends on it.
import { test, expect } from "vitest";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { packageRoot } from "../../host/platform/node/core";

const root = packageRoot();
const NODE_ALLOWED = ["host/platform/node/", "host/cli/", "host/api/"];

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? sources(p) : e.name.endsWith(".ts") ? [relative(root, p)] : [];
  });
}

const files = sources(join(root, "host")).map((f) => ({ f, text: readFileSync(join(root, f), "utf8") }));
const code = (text: string) => text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");

test("no file outside platform/node, cli and api imports a Node module or uses Node's globals", () => {
  const offenders = files
    .filter(({ f }) => !NODE_ALLOWED.some((d) => f.startsWith(d)))
    .filter(({ text }) => /from\s+"node:|\bsetImmediate\b|\bprocess\.|\bBuffer\b|\bNodeJS\.|\brequire\(/.test(code(text)))
    .map(({ f }) => f);
  expect(offenders).toEqual([]);
  // The guard itself sees what it looks for.
  expect(files.some(({ f, text }) => f.startsWith("host/platform/node/") && /from "node:/.test(text))).toBe(true);
});

test("no file outside host/cli imports from it", () => {
  const offenders = files.filter(({ f, text }) => !f.startsWith("host/cli/") && /from\s+"[./]*\/cli\//.test(text)).map(({ f }) => f);
  expect(offenders).toEqual([]);
});
