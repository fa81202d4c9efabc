// bin/wasmvisor.js starts a booting VM's pCPU thread and its compile thread together, before the
// CLI loads, and hands the pCPU thread the compile thread's port (workerData.compileThread): the
// Node platform's jitCompiler() takes that port once, instead of starting a thread of its own.
import { MessageChannel, Worker, type MessagePort } from "node:worker_threads";
import { pathToFileURL } from "node:url";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { packageRoot } from "../../host/platform/node/core";

// A pCPU-like thread: the platform bundle, asked for two translations of an empty page, the
// second after the first failed or came back; it reports each answer.
const THREAD = `
const { parentPort } = require("node:worker_threads");
setInterval(() => {}, 1000); // alive, as a pCPU thread's Comlink port keeps it (the compile thread's port does not)
import(${JSON.stringify(pathToFileURL(join(packageRoot(), "dist/node.js")).href)}).then(({ nodePlatform }) => {
  const ask = (n) => nodePlatform.jitCompiler().compile({ pages: [{ slots: new Uint8Array(16384) }], memoryPages: 1024 }, (page, err) => {
    parentPort.postMessage({ n, answer: err ? err.message : page });
    if (n === 1) ask(2);
  });
  ask(1);
});
`;

const next = (port: MessagePort | Worker) => new Promise<Record<string, unknown>>((resolve) => port.once("message", resolve));

describe("the compile thread started with the pCPU thread", () => {
  it("is the one the pCPU thread asks; when it ends, the pCPU thread starts its own", async () => {
    const { port1, port2: given } = new MessageChannel();
    const pcpu = new Worker(THREAD, { eval: true, workerData: { compileThread: port1 }, transferList: [port1] });
    try {
      // The first request arrives on the port given (no thread answers: this test is the thread).
      const request = await next(given);
      expect(request).toMatchObject({ id: 1, memoryPages: 1024 });
      // That thread ends without answering: the request fails, and the next goes to a thread the
      // platform starts (a real one, which answers: nothing to translate on an empty page).
      given.close();
      expect(await next(pcpu)).toMatchObject({ n: 1, answer: expect.stringMatching(/compile thread ended/) });
      expect(await next(pcpu)).toEqual({ n: 2, answer: null });
    } finally {
      await pcpu.terminate();
    }
  }, 30_000);
});
