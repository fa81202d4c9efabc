// A pCPU in a Web Worker: its first message brings the compiled core and its channels; it answers
// "ready", then the control plane drives its Pcpu through Comlink, as on Node.
import * as Comlink from "comlink";
import { Pcpu } from "../../hv/pcpu";
import { workerPlatform } from "./worker-platform";
import type { StorageChannel } from "./storage";

export interface WorkerInit {
  module: WebAssembly.Module;
  storage: StorageChannel;
  netRelay?: string;
  migration?: string;
}

const scope = self as unknown as { onmessage: ((e: MessageEvent<WorkerInit>) => void) | null; postMessage(m: unknown): void } & Comlink.Endpoint;
scope.onmessage = (e: MessageEvent<WorkerInit>) => {
  scope.onmessage = null;
  try {
    Comlink.expose(new Pcpu(workerPlatform(e.data)), scope);
    scope.postMessage("ready");
  } catch (err) {
    scope.postMessage(`failed: ${(err as Error).message}`);
  }
};
