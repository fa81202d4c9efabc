/**
 * What a fuzz target is: the code it drives, how it reads an input, which errors are its
 * documented clean rejections, and its seed programs. Everything else a target throws is a crash.
 */
export interface Target<Ctx = unknown> {
  /** Its name on the command line and in fuzz/corpus/, fuzz/crashes/ and the results. */
  readonly name: string;
  /** What it drives, in one line. */
  readonly about: string;
  /** Largest input the mutator makes for it. */
  readonly maxLength: number;
  /** Made once per run and shared by every input (a compiled core, a guest memory). */
  setup(): Ctx | Promise<Ctx>;
  /** Run one input; returns a promise only where the code it drives is asynchronous. */
  run(input: Uint8Array, ctx: Ctx): void | Promise<void>;
  /** Whether an error thrown out of run() is the surface's documented way of refusing input. */
  rejects(err: unknown): boolean;
  /** Structured seed programs (committed under fuzz/corpus/<name>/). */
  seeds(): Uint8Array[];
  /** Close what setup() opened. */
  teardown?(ctx: Ctx): void | Promise<void>;
}

// The errors JavaScript throws by itself: a parser that lets one out did not check its input.
const ENGINE_ERRORS = [TypeError, RangeError, ReferenceError, SyntaxError, EvalError, URIError];

/**
 * The project's clean rejection of hostile input: an Error of its own (not one the engine threw
 * because a check was missing) with a one-line message.
 */
export function isOneLineError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (ENGINE_ERRORS.some((E) => err instanceof E) || err instanceof WebAssembly.RuntimeError) return false;
  return err.message.length > 0 && !err.message.includes("\n");
}

/** For surfaces that must never throw at all (device models: a throw reaches the host). */
export function rejectsNothing(): boolean {
  return false;
}

/** The first line of an error and the frame it came from: how crashes are told apart. */
export function crashSignature(err: unknown): string {
  if (!(err instanceof Error)) return `non-Error thrown: ${String(err).slice(0, 120)}`;
  const head = `${err.constructor.name}: ${err.message.split("\n")[0]!.replace(/0x[0-9a-f]+|\d+/gi, "N").slice(0, 160)}`;
  const frame = (err.stack ?? "").split("\n").find((l) => /^\s+at /.test(l))?.trim().replace(/:\d+:\d+\)?$/, "") ?? "";
  return `${head} ${frame}`;
}
