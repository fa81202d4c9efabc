// The runner's hang watch: an input that makes no progress for the hang limit is a hang, but
// time the whole process spent stopped (SIGSTOP, Ctrl-Z) is not: neither a hang nor a slow input.
import { describe, test, expect } from "vitest";
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { join } from "node:path";
import { HangWatch } from "../../fuzz/engine/watch";
import { hostCode } from "../../fuzz/engine/coverage";
import { packageRoot } from "../../host/platform/node/core";

describe("the hang watch", () => {
  // A clock the test moves; the watch ticks every 200 ms, with a hang limit of 1 s.
  const watch = () => {
    const clock = { t: 0 };
    return { clock, w: new HangWatch(1000, 200, 1000, () => clock.t) };
  };

  test("a worker that stops making progress for the limit is hung; one that moves on is not", () => {
    const { clock, w } = watch();
    clock.t += 200;
    expect(w.tick(0)).toBe(null); // still setting up: no input yet
    let progress = 0;
    for (let i = 0; i < 20; i++) {
      clock.t += 200;
      expect(w.tick(++progress)).toBe(null);
    }
    const seen: (string | null)[] = [];
    for (let i = 0; i < 6; i++) {
      clock.t += 200;
      seen.push(w.tick(progress)); // the input it started last never returns
    }
    expect(seen).toEqual([null, null, null, null, null, "hang"]); // past 1 s without progress
  });

  test("a tick that comes late means the process was stopped: the input's time starts again", () => {
    const { clock, w } = watch();
    clock.t += 200;
    expect(w.tick(5)).toBe(null);
    clock.t += 600;
    expect(w.tick(5)).toBe(null);
    clock.t += 30_000; // stopped for half a minute in the middle of the input
    expect(w.tick(5)).toBe("stopped");
    for (let i = 0; i < 5; i++) {
      clock.t += 200;
      expect(w.tick(5)).toBe(null); // 1 s of its own time since
    }
    clock.t += 200;
    expect(w.tick(5)).toBe("hang"); // and then it is hung after all
  });

  test("a continue (SIGCONT) starts the input's time again", () => {
    const { clock, w } = watch();
    clock.t += 200;
    w.tick(3);
    clock.t += 900;
    w.tick(3);
    w.restart();
    clock.t += 200;
    expect(w.tick(3)).toBe(null);
  });
});

describe("npm run fuzz, stopped and continued", () => {
  test("a stop longer than the hang limit and the slow-input limit is neither", async () => {
    const fuzzJs = join(packageRoot(), "dist/fuzz.js");
    expect(existsSync(fuzzJs), `${fuzzJs} is missing: node build.js`).toBe(true);
    const child = spawn(process.execPath, [fuzzJs, "--target", "uart", "--seconds", "5", "--hang-seconds", "1", "--no-save"], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => { out += d.toString(); });
    child.stderr.on("data", (d: Buffer) => { out += d.toString(); });
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    while (!out.includes("uart:")) await sleep(20);
    await sleep(1500); // the worker is up and running inputs
    child.kill("SIGSTOP");
    await sleep(2500); // more than the 1 s hang limit and the 1 s limit of one input
    child.kill("SIGCONT");
    const code = await exited;
    expect(out).toMatch(/\d+ inputs, .* 0 crashes, 0 hangs/);
    expect(code).toBe(0);
  }, 30_000);
});

describe("the fuzzer's bundle", () => {
  test("its host/ code is found by esbuild's module comments, a dependency's is not (a minified bundle has none)", () => {
    const fuzzJs = join(packageRoot(), "dist/fuzz.js");
    expect(existsSync(fuzzJs), `${fuzzJs} is missing: node build.js`).toBe(true);
    const text = readFileSync(fuzzJs, "utf8");
    const filter = hostCode(pathToFileURL(fuzzJs).href);
    expect(typeof filter).toBe("function");
    const after = (comment: RegExp) => {
      const at = text.search(comment);
      expect(at, `no ${comment} in ${fuzzJs}`).toBeGreaterThanOrEqual(0);
      return text.indexOf("\n", at) + 1; // the module's first line
    };
    const inHost = after(/^\/\/ host\/state\/crc32\.ts$/m);
    const inDependency = after(/^\/\/ node_modules\/fflate\//m);
    expect((filter as (offset: number) => boolean)(inHost)).toBe(true);
    expect((filter as (offset: number) => boolean)(inDependency)).toBe(false);
  });
});
