// A compile worker for the translation tier (docs/TRANSLATION.md): the tier hands it copies of a
// unit's decoded slots, and it translates them and compiles the module on its own thread, so the
// pCPU's thread only instantiates the module and marks the pages' blocks. Modules cross threads
// by postMessage. Platform-free: the platform starts the thread (Platform.startJitCompiler) and
// gives the two ends of its message port.
import { translateUnit, type UnitTranslation } from "./translate";

/** A translated and compiled unit: what the tier installs. */
export interface CompiledUnit {
  module: WebAssembly.Module;
  /** For each of its pages, the page offsets (bytes) of the blocks' first instructions. */
  pages: { entries: number[]; instructions: number }[];
  /** Size of the generated module. */
  bytes: number;
}

/** A unit's translation with its compiled module, as the tier installs it. */
export function compiledUnit(t: UnitTranslation, module: WebAssembly.Module): CompiledUnit {
  return { module, pages: t.pages, bytes: t.wasm.length };
}

/**
 * How a compile thread makes a translation's module. `optimize`: with the engine's optimizing
 * compiler at once; otherwise with its baseline compiler, for good (docs/TRANSLATION.md, "Two
 * tiers"). Where the platform cannot choose (a browser), the engine tiers up by itself.
 */
export type CompileModule = (wasm: Uint8Array, optimize: boolean) => WebAssembly.Module;
/** The engine's own way: its baseline compiler, then its optimizing one as it sees fit. */
export const engineTiers: CompileModule = (wasm) => new WebAssembly.Module(wasm as Uint8Array<ArrayBuffer>);

/**
 * The pCPU's side: a unit's slots in, its compiled translation out (null: nothing worth
 * translating). With `sampled` (a page's DC_SAMPLED bits), only its hot region is translated.
 */
export interface JitCompiler {
  /** Whether `optimize` is heard: the compile thread picks the engine's tier for each module. */
  readonly tiers?: boolean;
  /** Ask for a unit's translation: `done` gets it, or why it failed, on this thread (from poll() or the event loop). */
  compile(request: JitRequest, done: (unit: CompiledUnit | null, error?: Error) => void): void;
  /**
   * Hand over now the answers that have arrived, without waiting for the event loop (which a
   * pCPU turns only every few milliseconds); absent where the platform cannot (a browser).
   */
  poll?(): void;
}

/** A unit's pages: each one's slots (DC_PAGE_BYTES) and, in a unit of several, where it is (translate.ts UnitPage). */
export interface JitRequest {
  pages: { slots: Uint8Array; sampled?: Uint8Array | null; host?: number; live?: number }[];
  memoryPages: number;
  optimize?: boolean;
}
interface Request extends JitRequest { id: number }
type Reply = { id: number; unit: CompiledUnit | null } | { id: number; error: string };

/** The pCPU's side over a message port to a thread running serveJitCompiles. */
export function jitCompilerClient(port: {
  postMessage(m: unknown, transfer?: ArrayBuffer[]): void;
  onReply(handler: (m: unknown) => void): void;
  /** The thread ended: what it had not answered fails (the pages are translated again when hot). */
  onEnd(handler: (why: string) => void): void;
  /** Deliver to onReply's handler, now, the replies that have arrived (see JitCompiler.poll). */
  poll?(): void;
}, tiers = false): JitCompiler {
  let next = 0;
  const waiting = new Map<number, (unit: CompiledUnit | null, error?: Error) => void>();
  port.onEnd((why) => {
    const ended = [...waiting.values()];
    waiting.clear();
    for (const done of ended) done(null, new Error(`translation: the compile thread ended (${why})`));
  });
  port.onReply((m) => {
    const r = m as Reply;
    const done = waiting.get(r.id);
    if (!done) return;
    waiting.delete(r.id);
    if ("error" in r) done(null, new Error(`translation: ${r.error}`));
    else done(r.unit);
  });
  return {
    tiers,
    compile({ pages, memoryPages, optimize }, done) {
      const id = ++next;
      // The caller's bytes stay its own: the copies move.
      const copies = pages.map((p) => ({ ...p, slots: p.slots.slice() }));
      waiting.set(id, done);
      port.postMessage({ id, pages: copies, memoryPages, optimize } satisfies Request, copies.map((p) => p.slots.buffer));
    },
    ...(port.poll ? { poll: port.poll } : {}),
  };
}

/**
 * A thread's one compile thread, started on first use and again after it ended: `start` starts
 * it, delivers its messages to `onReply` and tells `onEnd` when it ends, and returns how to post
 * to it (and, where it can, to take its replies at once: `poll`). `tiers`: the thread serves
 * with a CompileModule that hears `optimize`.
 */
export function compilerPerThread(start: (io: { onReply(m: unknown): void; onEnd(why: string): void }) => {
  postMessage(m: unknown, transfer?: ArrayBuffer[]): void;
  poll?(): void;
}, tiers = false): () => JitCompiler {
  let compiler: JitCompiler | null = null;
  return () => {
    if (compiler) return compiler;
    let reply: (m: unknown) => void = () => {};
    let ended: ((why: string) => void) | null = null;
    const port = start({
      onReply: (m) => reply(m),
      onEnd: (why) => { compiler = null; ended?.(why); ended = null; },
    });
    return (compiler = jitCompilerClient({
      postMessage: (m, transfer) => port.postMessage(m, transfer),
      onReply: (h) => { reply = h; },
      onEnd: (h) => { ended = h; },
      ...(port.poll ? { poll: () => port.poll!() } : {}),
    }, tiers));
  };
}

/** The compile thread's side: answer each request with its unit's module. */
export function serveJitCompiles(port: { postMessage(m: unknown): void; onRequest(handler: (m: unknown) => void): void }, compile: CompileModule = engineTiers): void {
  port.onRequest((m) => {
    const { id, pages, memoryPages, optimize } = m as Request;
    try {
      const t = translateUnit(pages.map(({ slots, sampled, host, live }) =>
        ({ view: new DataView(slots.buffer, slots.byteOffset, slots.byteLength), slots: 0, sampled, host, live })), memoryPages);
      const unit = t && compiledUnit(t, compile(t.wasm, optimize === true));
      port.postMessage({ id, unit } satisfies Reply);
    } catch (e) {
      port.postMessage({ id, error: e instanceof Error ? e.message : String(e) } satisfies Reply);
    }
  });
}
