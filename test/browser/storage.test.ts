// The browser's storage in a real browser (Debian's Chromium, headless): a qcow2 overlay kept in
// OPFS (and in IndexedDB, the fallback) over a raw image served over HTTP, written and read by a
// worker that reaches the storage as a pCPU does, downloading only the chunks read, and found
// again after the page is reloaded; the page's own access; paths and servers that are refused.
import { test, expect, beforeAll, afterAll, describe } from "vitest";
import { chromium, type Browser, type Page } from "playwright-core";
import * as esbuild from "esbuild";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { startStaticServer, type StaticServer } from "./static-server";
import { basePattern } from "./storage-patterns";
import { HTTP_CHUNK } from "../../host/platform/browser/http-file";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
const web = join(root, "dist/web");
const BASE = "/images/base.raw";
const NO_RANGE = "/images/norange.raw";
const IMAGE_SIZE = 8 << 20;
const MiB = 1 << 20;

let server: StaticServer;
let browser: Browser;
let page: Page;

beforeAll(async () => {
  const bundle = await esbuild.build({
    entryPoints: {
      "storage-test-page": join(root, "test/browser/storage-test-page.ts"),
      "storage-test-worker": join(root, "test/browser/storage-test-worker.ts"),
    },
    bundle: true, write: false, format: "esm", platform: "browser", target: "chrome110", outdir: "/test", logLevel: "error",
  });
  // The storage worker built from the sources as they are now (served in place of dist/web's).
  const worker = await esbuild.build({
    entryPoints: { "storage-worker": join(root, "host/platform/browser/storage-worker.ts") },
    bundle: true, write: false, format: "esm", platform: "browser", target: "chrome110", outdir: "/", logLevel: "error",
  });
  const image = new Uint8Array(IMAGE_SIZE);
  for (let i = 0; i < image.length; i++) image[i] = basePattern(i);
  server = await startStaticServer({
    root: web,
    files: {
      "/test/index.html": '<!doctype html><meta charset="utf-8"><script type="module" src="/test/storage-test-page.js"></script>',
      ...Object.fromEntries([...bundle.outputFiles, ...worker.outputFiles].map((f) => [f.path, f.contents])),
      [BASE]: image,
      [NO_RANGE]: image.subarray(0, MiB),
    },
    ignoreRange: [NO_RANGE],
  });
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
  page = await (await browser.newContext()).newPage();
  await load();
}, 30_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
});

async function load(reload = false): Promise<void> {
  if (reload) await page.reload();
  else await page.goto(`${server.url}/test/index.html`);
  await page.waitForFunction(() => "storageTest" in window);
}

type Harness = {
  start(forceIndexedDB: boolean, answerTimeoutMs?: number): Promise<string>;
  closeStorage(): void;
  worker(op: string, args?: unknown): Promise<unknown>;
  storage(op: string, path: string, bytes?: number[]): Promise<unknown>;
  endWorker(): Promise<void>;
};
const start = (forceIndexedDB: boolean): Promise<string> =>
  page.evaluate((idb) => (window as unknown as { storageTest: Harness }).storageTest.start(idb), forceIndexedDB);
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const inWorker = (op: string, args: object = {}): Promise<any> =>
  page.evaluate(([op, args]) => (window as unknown as { storageTest: Harness }).storageTest.worker(op, args), [op, args] as const);
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const inPage = (op: string, path: string, bytes?: number[]): Promise<any> =>
  page.evaluate(([op, path, bytes]) => (window as unknown as { storageTest: Harness }).storageTest.storage(op, path, bytes), [op, path, bytes] as const);
/** The message a page-side call fails with ("" when it does not). */
const pageFailure = (op: string, path: string, bytes?: number[]): Promise<string> =>
  page.evaluate(([op, path, bytes]) => (window as unknown as { storageTest: Harness }).storageTest.storage(op, path, bytes)
    .then(() => "", (e: Error) => e.message), [op, path, bytes] as const);

/** The chunks of the served image fetched since the requests were cleared (every fetch must be a range). */
function chunksFetched(): number[] {
  const gets = server.requests.filter((r) => r.path === BASE && r.method === "GET");
  const chunks: number[] = [];
  for (const r of gets) {
    const m = /^bytes=(\d+)-(\d+)$/.exec(r.range ?? "");
    expect(m, `a GET of the whole image: ${JSON.stringify(r)}`).not.toBeNull();
    const [first, last] = [Number(m![1]), Number(m![2])];
    expect(first % HTTP_CHUNK).toBe(0);
    for (let c = first / HTTP_CHUNK; c * HTTP_CHUNK <= last; c++) chunks.push(c);
  }
  return chunks.sort((a, b) => a - b);
}

const WRITES = [{ offset: MiB, length: 64 << 10 }, { offset: 5 * MiB + 512, length: 4096 }];

async function overlayRoundTrip(forceIndexedDB: boolean, overlay: string): Promise<void> {
  expect(await start(forceIndexedDB)).toBe(forceIndexedDB ? "indexeddb" : "opfs");
  server.requests.length = 0;
  await inWorker("createOverlay", { overlay, base: BASE });
  expect(await inWorker("openOverlay", { overlay })).toEqual({ size: IMAGE_SIZE, format: "qcow2" });
  for (const w of WRITES) await inWorker("write", w);
  for (const w of WRITES) expect(await inWorker("check", { ...w, written: true })).toBe(-1);
  // Around the small write, the rest of its cluster came from the image (copy on write).
  expect(await inWorker("check", { offset: 5 * MiB, length: 512, written: false })).toBe(-1);
  expect(await inWorker("check", { offset: 5 * MiB + 4608, length: (64 << 10) - 4608, written: false })).toBe(-1);
  expect(await inWorker("check", { offset: 3 * MiB, length: 100 << 10, written: false })).toBe(-1);
  await inWorker("flushOverlay"); // not closed: the reload ends the workers as they are
  // Only the chunks read: 3 MiB's two (100 KiB) and the small write's cluster at 5 MiB.
  expect([...new Set(chunksFetched())]).toEqual([48, 49, 80]);

  await load(true);
  expect(await start(forceIndexedDB)).toBe(forceIndexedDB ? "indexeddb" : "opfs");
  server.requests.length = 0;
  await inWorker("openOverlay", { overlay });
  for (const w of WRITES) expect(await inWorker("check", { ...w, written: true })).toBe(-1);
  expect(await inWorker("check", { offset: 5 * MiB, length: 512, written: false })).toBe(-1);
  expect(chunksFetched()).toEqual([]); // all of it was in the overlay
  expect(await inWorker("check", { offset: 7 * MiB, length: 512, written: false })).toBe(-1);
  expect(chunksFetched()).toEqual([112]);
  await inWorker("closeOverlay");
  expect(await inPage("list", "/opfs/")).toContain(overlay);
}

test("a qcow2 overlay in OPFS over a served image downloads only the chunks read, and is there after a reload", async () => {
  await overlayRoundTrip(false, "/opfs/vm/disk.qcow2");
}, 20_000);

test("the IndexedDB fallback keeps the overlay the same way", async () => {
  await overlayRoundTrip(true, "/opfs/vm-idb/disk.qcow2");
  // IndexedDB's files are its own.
  expect(await inPage("list", "/opfs/")).not.toContain("/opfs/vm/disk.qcow2");
}, 20_000);

describe.each([["opfs", false], ["indexeddb", true]] as const)("files in %s", (kind, forceIndexedDB) => {
  test("opens of one file share it; big writes, reads, rename over a file, past the end", async () => {
    expect(await start(forceIndexedDB)).toBe(kind);
    const dir = `/opfs/files-${kind}`;
    await inPage("remove", dir);
    const life = await inWorker("fileLife", { dir });
    expect(life).toMatchObject({ n: 9 << 20, same: true, size: 9 << 20, partialExists: false, doneExists: true });
    expect(life.head).toEqual(life.expectHead);
    expect(life.createAgain).toBe(`state ${dir}/state.partial: already exists; a new file needs a new name`);
    expect(life.afterClose).toBe(`state ${dir}/state: is closed`);

    const shared = await inWorker("sharedOpens", { path: `${dir}/state` });
    expect(shared).toMatchObject({ same: true, n: 4, seen: [1, 2, 3, 4], sizeAfter: 9 << 20, sizeBefore: 9 << 20 });
    expect(shared.writeReadOnly).toBe(`state ${dir}/state: is open read-only`);

    const end = await inWorker("pastTheEnd", { path: `${dir}/short`, served: BASE });
    expect(end).toEqual({
      straddle: 50, tail: [7, 0xee], beyond: 0, negative: `disk ${dir}/short: offset -1 is not a byte offset`,
      hStraddle: 10, hBeyond: 0,
      hWrite: `disk ${BASE}: is served over HTTP, so it can only be read; give the VM a copy-on-write overlay in /opfs/`,
    });

    // The page's side, and a file a worker left open.
    await inPage("writeFile", `${dir}/page.bin`, [1, 2, 3]);
    expect(await inPage("readFile", `${dir}/page.bin`)).toEqual([1, 2, 3, 3]);
    expect(await inPage("readFile", `${dir}/none`)).toBeUndefined();
    expect(await inPage("list", dir)).toEqual([`${dir}/page.bin`, `${dir}/state`]);
    await inWorker("leaveOpen", { path: `${dir}/state` });
    expect(await pageFailure("remove", dir)).toBe(
      `storage ${dir}: cannot be removed while ${dir}/state is open (a VM's disk or a save in progress); stop the VM that uses it first`);
    expect(await pageFailure("writeFile", `${dir}/state`, [0])).toMatch(/cannot be replaced while .* is open/);
    await page.evaluate(() => (window as unknown as { storageTest: Harness }).storageTest.endWorker());
    await inPage("remove", dir);
    expect(await inPage("list", dir)).toEqual([]);
    await load(true);
  }, 20_000);
});

test("a read across chunks of a served file is one request, and then comes from the cache", async () => {
  await start(false);
  server.requests.length = 0;
  const offset = 10 * HTTP_CHUNK + 1000;
  expect(await inWorker("spanningRead", { served: BASE, offset, length: 200 << 10 })).toEqual({ mismatch: -1, againMismatch: -1 });
  const gets = server.requests.filter((r) => r.path === BASE && r.method === "GET");
  expect(gets.map((r) => r.range)).toEqual([`bytes=${10 * HTTP_CHUNK}-${14 * HTTP_CHUNK - 1}`]);
});

test("reads that go forward fetch ahead, doubling up to 4 MiB a request", async () => {
  await start(false);
  server.requests.length = 0;
  expect(await inWorker("sequentialRead", { served: BASE, step: HTTP_CHUNK })).toBe(-1);
  const ranges = server.requests.filter((r) => r.path === BASE && r.method === "GET").map((r) => /^bytes=(\d+)-(\d+)$/.exec(r.range ?? "")!.slice(1).map(Number));
  // Every byte once, in order, in requests of 1, 2, 3, 5, 9, 17, 33, 64... chunks.
  expect(ranges.map(([a, b]) => (b! + 1 - a!) / HTTP_CHUNK)).toEqual([1, 2, 3, 5, 9, 17, 33, 58]);
  expect(ranges.every(([a], i) => a === (i === 0 ? 0 : ranges[i - 1]![1]! + 1))).toBe(true);
  expect(ranges.at(-1)![1]).toBe(IMAGE_SIZE - 1);
});

test("hostile paths and servers are refused with one-line messages", async () => {
  await start(false);
  const r = await inWorker("hostile", { noRange: NO_RANGE, missing: "/images/missing.raw" });
  expect(r).toEqual({
    dotdot: "disk /opfs/a/../b.qcow2: a path with '..' is not taken",
    dotdotCreate: "disk /opfs/../escape: a path with '..' is not taken",
    dotdotServed: "disk /images/../secret: a path with '..' is not taken",
    outside: "disk /elsewhere/x: the browser keeps files under /opfs/ only",
    emptyName: "disk /opfs/a//b: not a file's path (it has an empty name or '.' in it)",
    missing: "disk /opfs/no/such.qcow2: no such file",
    servedMissing: "disk /images/missing.raw: the server has no such file (404)",
    noRange: `disk ${NO_RANGE}: the server does not take Range requests, and it must (a disk is read in parts as the guest uses it); serve it with a server that supports ranges`,
    writeServed: "disk /images/base.raw: is served over HTTP, so it can only be read; give the VM a copy-on-write overlay in /opfs/",
  });
  expect(await pageFailure("readFile", "/opfs/../x")).toBe("storage /opfs/../x: a path with '..' is not taken");
});

test("a storage worker that does not answer is an error, not a hang", async () => {
  await page.evaluate(() => (window as unknown as { storageTest: Harness }).storageTest.start(false, 500));
  expect(await inWorker("exists", { path: "/opfs/x" })).toBe("");
  await page.evaluate(() => (window as unknown as { storageTest: Harness }).storageTest.closeStorage());
  const t0 = Date.now();
  expect(await inWorker("exists", { path: "/opfs/x" })).toBe("file /opfs/x: the storage worker did not answer within 0.5 s");
  expect(Date.now() - t0).toBeLessThan(5000);
  // The next request waits for that answer first; none comes, and the channel is done.
  expect(await inWorker("exists", { path: "/opfs/y" })).toBe("file /opfs/y: the storage worker has not answered for 1 s; reload the page");
  expect(await inWorker("exists", { path: "/opfs/z" })).toBe("file /opfs/z: the storage worker has not answered for 1 s; reload the page");
});
