// The translation tier's compile thread in a browser (host/jit/compiler.ts): a module worker
// each pCPU worker starts on first use.
import { serveJitCompiles } from "../../jit/compiler";

const scope = self as unknown as { postMessage(m: unknown): void; onmessage: ((e: MessageEvent) => void) | null };
serveJitCompiles({ postMessage: (m) => scope.postMessage(m), onRequest: (h) => { scope.onmessage = (e) => h(e.data); } });
