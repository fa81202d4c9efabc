// The package as an app gets it: `npm pack` of this repository installed into a fresh project,
// then imported from there. Node gets the Node build (it boots guests, the embedding guide's
// example runs as written), a bundler for browsers gets the browser build, and TypeScript finds
// the declarations of each.
import { describe, test, expect, beforeAll, afterAll } from "vitest";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as esbuild from "esbuild";
import { buildBaremetal } from "../../guests/baremetal/build.mjs";
import { buildLinuxGuest } from "../../guests/linux/build.mjs";
import { packageRoot } from "../../host/platform/node/core";
import { STATE_MAGIC } from "../../host/state/container";
import { guideExample } from "./guide";

const run = promisify(execFile);
const root = packageRoot();
const tsc = join(root, "node_modules/typescript/bin/tsc");
let dir: string;
let app: string; // the fresh project
let packed: string[]; // the tarball's files
let programs: Record<string, string>;
let linux: { kernel: string; initramfs: string };

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "wasmvisor-package-"));
  // `npm pack` runs prepack (the build, with the type declarations) as it does for a release.
  const [packOut] = await Promise.all([
    run("npm", ["pack", "--json", "--pack-destination", dir], { cwd: root }),
    buildBaremetal().then((r) => { programs = r.programs; }),
    buildLinuxGuest({ log: () => {} }).then((r) => { linux = r; }),
  ]);
  const [info] = JSON.parse(packOut.stdout) as { filename: string; files: { path: string }[] }[];
  packed = info.files.map((f) => f.path);
  const tarball = join(dir, info.filename);

  app = join(dir, "app");
  mkdirSync(app);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
  try {
    await run("npm", ["install", "--prefer-offline", "--no-package-lock", "--no-audit", "--no-fund", tarball], { cwd: app });
  } catch {
    // No registry to reach: unpack it as npm would and take its dependencies from this repository.
    const pkg = join(app, "node_modules/wasmvisor");
    mkdirSync(pkg, { recursive: true });
    execFileSync("tar", ["-xzf", tarball, "-C", pkg, "--strip-components=1"]);
    const deps = Object.keys(JSON.parse(readFileSync(join(root, "package.json"), "utf8")).dependencies);
    for (const d of deps) {
      mkdirSync(join(app, "node_modules", d, ".."), { recursive: true });
      symlinkSync(join(root, "node_modules", d), join(app, "node_modules", d));
    }
  }
  // TypeScript apps on Node have Node's types.
  mkdirSync(join(app, "node_modules/@types"), { recursive: true });
  symlinkSync(join(root, "node_modules/@types/node"), join(app, "node_modules/@types/node"));
}, 600_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("the npm package", () => {
  test("holds the builds, the core and the CLI's guest scripts, not the tests, benchmarks or sources", () => {
    for (const f of ["package.json", "README.md", "bin/wasmvisor.js", "build/core.wasm", "dist/cli.js", "dist/node.js", "dist/pcpu-worker.js", "dist/jit-worker.js",
      "dist/web/wasmvisor.js", "dist/web/pcpu-worker.js", "dist/web/storage-worker.js", "dist/web/core.wasm",
      "dist/types/node.d.ts", "dist/types/browser.d.ts", "guests/linux/build.mjs", "guests/linux/init", "web/index.html", "web/style.css", "web/isolation-sw.js", "docs/EMBEDDING.md"]) {
      expect(packed).toContain(f);
    }
    expect(packed.filter((f) => /^(test|bench|host|assembly|guests\/baremetal|guests\/bench)\/|^dist\/bench/.test(f))).toEqual([]);
    // The browser build's core is the core.
    const pkg = join(app, "node_modules/wasmvisor");
    expect(readFileSync(join(pkg, "dist/web/core.wasm")).equals(readFileSync(join(pkg, "build/core.wasm")))).toBe(true);
  });

  test("in Node, `import { createHost, nodePlatform, parseVmConfig } from \"wasmvisor\"` boots a guest to its exit code", async () => {
    writeFileSync(join(app, "baremetal.mjs"), `
      import { createHost, nodePlatform, parseVmConfig } from "wasmvisor";
      const host = await createHost(nodePlatform, { cpus: 1 });
      try {
        await host.createVm(parseVmConfig({ name: "t", bios: "none", kernel: process.argv[2], memory: "64M" }));
        let output = "";
        host.attachConsole("t", (bytes) => { output += new TextDecoder().decode(bytes); });
        await host.act("t", "start");
        const end = await host.waitForEnd("t");
        console.log(JSON.stringify({ state: end.state, exitCode: end.exitCode, output }));
      } finally {
        await host.close();
      }
    `);
    const { stdout } = await run(process.execPath, ["baremetal.mjs", programs.rv64i], { cwd: app });
    const r = JSON.parse(stdout);
    expect(r).toMatchObject({ state: "stopped", exitCode: 0 });
    expect(r.output).toMatch(/PASS/);
  }, 120_000);

  test("the embedding guide's Node example runs as written: Linux answers on its console, a snapshot is saved, the VM stops", async () => {
    writeFileSync(join(app, "boot.mjs"), guideExample("node"));
    const { stdout } = await run(process.execPath, ["boot.mjs", linux.kernel, linux.initramfs], { cwd: app });
    expect(stdout).toMatch(/^the guest said: the answer is 42\nsaved demo\.wvs: [\d.]+ MiB, the guest paused \d+ ms\nthe VM is stopped\n$/);
    const state = readFileSync(join(app, "demo.wvs"));
    expect(state.subarray(0, STATE_MAGIC.length).equals(STATE_MAGIC)).toBe(true);
  }, 180_000);

  test("its command line runs from the install: `npx wasmvisor boot` and `wasmvisor-system-riscv64` exit with the guest's code", async () => {
    const { stdout } = await run(join(app, "node_modules/.bin/wasmvisor"), ["boot", "--bios", "none", "--kernel", programs.rv64i, "-m", "64M"], { cwd: app });
    expect(stdout).toMatch(/PASS/);
    // QEMU's command line under its second name, as a Makefile's QEMU variable names it.
    const q = await run(join(app, "node_modules/.bin/wasmvisor-system-riscv64"), ["-machine", "virt", "-bios", "none", "-kernel", programs.rv64i, "-m", "64M", "-nographic"], { cwd: app });
    expect(q.stdout).toMatch(/PASS/);
  }, 60_000);

  test("wasmvisor/platform/node is the Node build too", async () => {
    const { stdout } = await run(process.execPath, ["--input-type=module", "-e", `
      import * as a from "wasmvisor";
      import * as b from "wasmvisor/platform/node";
      console.log(a.nodePlatform === b.nodePlatform, typeof a.browserPlatform);
    `], { cwd: app });
    expect(stdout.trim()).toBe("true undefined");
  });

  test("a bundler for browsers resolves \"wasmvisor\" to the browser build, with no Node module in it", async () => {
    writeFileSync(join(app, "page.js"), `import { browserPlatform, createHost } from "wasmvisor";\nexport { browserPlatform, createHost };\n`);
    const out = await esbuild.build({
      entryPoints: [join(app, "page.js")], absWorkingDir: app, bundle: true, platform: "browser", format: "esm",
      write: false, metafile: true, logLevel: "silent",
    });
    expect(Object.keys(out.metafile.inputs)).toContain("node_modules/wasmvisor/dist/web/wasmvisor.js");
    expect(out.outputFiles[0].text).not.toMatch(/\bfrom\s*["']node:|\brequire\(["']/);
    // And for Node, the Node build.
    const forNode = await esbuild.build({
      entryPoints: [join(app, "boot.mjs")], absWorkingDir: app, bundle: true, platform: "node", format: "esm",
      write: false, metafile: true, logLevel: "silent",
    });
    expect(Object.keys(forNode.metafile.inputs)).toContain("node_modules/wasmvisor/dist/node.js");
  });

  test("TypeScript finds each build's declarations: a Node app (nodenext), a page (bundler, browser) and the guide's page type-check", async () => {
    // The declarations must be real types, not any: each misuse below must be an error.
    writeFileSync(join(app, "node-app.ts"), `
      import { createHost, nodePlatform, parseVmConfig, type VmInfo } from "wasmvisor";
      const host = await createHost(nodePlatform);
      const info: VmInfo = await host.createVm(parseVmConfig({ name: "vm", bios: "none", kernel: "k" }));
      const state: "created" | "running" | "paused" | "stopped" | "failed" = info.state;
      // @ts-expect-error: there is no such action
      await host.act("vm", "explode");
      export { state };
    `);
    writeFileSync(join(app, "page.ts"), `
      import { browserPlatform, createHost, type BrowserPlatform } from "wasmvisor";
      const platform: BrowserPlatform = await browserPlatform({ workerBase: "/wasmvisor/" });
      const host = await createHost(platform);
      // @ts-expect-error: snapshot takes a VM's name and a path
      await host.snapshot(42);
      export { host };
    `);
    // The guide's web page, its module script as a bundler would see it.
    const web = /<script type="module">\n([\s\S]*?)<\/script>/.exec(guideExample("web"))![1];
    writeFileSync(join(app, "web-example.js"), web.replace('"/wasmvisor/wasmvisor.js"', '"wasmvisor"'));
    const common = { strict: true, target: "ES2022", module: "ESNext", noEmit: true, skipLibCheck: false };
    writeFileSync(join(app, "tsconfig.node.json"), JSON.stringify({
      compilerOptions: { ...common, module: "NodeNext", moduleResolution: "NodeNext", types: ["node"] }, files: ["node-app.ts"],
    }));
    writeFileSync(join(app, "tsconfig.page.json"), JSON.stringify({
      compilerOptions: { ...common, strict: false, allowJs: true, checkJs: true, moduleResolution: "Bundler", customConditions: ["browser"], lib: ["ES2022", "DOM"], types: [] },
      files: ["page.ts", "web-example.js"],
    }));
    const check = (project: string) => run(process.execPath, [tsc, "-p", project], { cwd: app }).then(() => "", (e) => e.stdout as string);
    expect(await Promise.all([check("tsconfig.node.json"), check("tsconfig.page.json")])).toEqual(["", ""]);
  }, 60_000);
});
