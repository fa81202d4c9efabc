// The storage test's page: the browser's storage as the page has it, and a worker that uses it
// as a pCPU does (storage-test-worker.ts); the test drives both through window.storageTest.
import { startStorage, type BrowserStorage, type StorageChannel } from "../../host/platform/browser/storage";

let storage: BrowserStorage | undefined;
let worker: Worker | undefined;
let channel: StorageChannel | undefined;

function ask(op: string, args: unknown = {}, transfer: Transferable[] = []): Promise<unknown> {
  return new Promise((resolve, reject) => {
    worker!.onmessage = (e) => (e.data.error !== undefined ? reject(new Error(e.data.error)) : resolve(e.data.result));
    worker!.onerror = (e) => reject(new Error(`the test worker failed: ${e.message}`));
    worker!.postMessage({ op, args }, transfer);
  });
}

(window as unknown as { storageTest: unknown }).storageTest = {
  async start(forceIndexedDB: boolean, answerTimeoutMs?: number) {
    storage = await startStorage("/storage-worker.js", { forceIndexedDB });
    channel = await storage.connect();
    worker = new Worker("/test/storage-test-worker.js", { type: "module" });
    await ask("init", { channel: { ...channel, answerTimeoutMs } }, [channel.port]);
    return storage.kind;
  },
  worker: (op: string, args?: unknown) => ask(op, args),
  storage: (op: "readFile" | "writeFile" | "remove" | "list", path: string, bytes?: number[]) =>
    op === "writeFile" ? storage!.writeFile(path, new Uint8Array(bytes!)) :
    op === "readFile" ? storage!.readFile(path).then((b) => b && [...b.subarray(0, 16), b.length]) :
    storage![op](path),
  closeStorage: () => storage!.close(),
  /** End the worker without closing its files, as a crashed pCPU would, and release what it left open. */
  async endWorker() {
    worker!.terminate();
    await storage!.release(channel!);
  },
};
