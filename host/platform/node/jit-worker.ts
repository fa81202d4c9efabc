// The translation tier's compile thread on Node (host/jit/compiler.ts): one per pCPU thread.
import { parentPort } from "node:worker_threads";
import { serveJitCompiles } from "../../jit/compiler";

serveJitCompiles({ postMessage: (m) => parentPort!.postMessage(m), onRequest: (h) => parentPort!.on("message", h) });
