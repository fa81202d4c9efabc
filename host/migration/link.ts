// The link a live migration runs over, whatever carries it (TLS on Node: platform/node/
// migration.ts). The source sends the VM's state stream (host/state/), then, once the
// destination says the VM is built ({"ready": name}), GO: the commit point, after which only the
// destination may run the VM. The destination answers with one-line JSON messages:
// {"accepted": name} once it has admitted the VM, {"applied": n} as it puts the n-th memory
// section in place (so the source knows how far behind it is), {"ready": name} once it has built it,
// {"running": name} once it runs, or {"error": message} when it gives up. Either side treats
// everything the other sends as hostile: lines are bounded, unknown messages are errors.
//
// Post-copy (for a guest that writes memory faster than the link carries it): the source stops
// the VM without its last dirty pages and sends, instead, a PCPY section listing them; after GO
// the VM runs at the destination while those pages follow as memory sections, the ones it
// touches first on demand ({"need": page}, a RAM page index), then END. The destination answers
// {"received": name} once every page has come. A destination that can wait for pages says
// {"accepted": name, "postcopy": true}.
import { printable } from "../util/text";

/** A byte stream to the other host. */
export interface ByteLink {
  /** Who is at the other end (for messages). */
  readonly peer: string;
  /** Queue bytes; false when the link is full: wait for drained() before writing more. */
  write(chunk: Uint8Array): boolean;
  drained(): Promise<void>;
  /** What the other side sends, until it closes; throws if the link fails. */
  chunks(): AsyncIterable<Uint8Array>;
  /** End the link (whatever is queued is sent first, unless `now`). */
  close(now?: boolean): void;
}

/** Where a VM migrates to. */
export interface MigrationTarget {
  host: string;
  port: number;
}

/** "tcp:HOST:PORT" (as QEMU's -incoming and migrate take it; an IPv6 host in brackets). */
export function parseMigrationTarget(text: string): MigrationTarget {
  const m = /^tcp:(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || port < 1 || port > 65535) throw new Error(`'${text}' is not a migration address: use tcp:HOST:PORT, e.g. tcp:127.0.0.1:4444`);
  return { host: m[1]!.replace(/^\[|\]$/g, ""), port };
}

export type DestinationMessage =
  | { accepted: string; postcopy?: boolean }
  | { applied: number }
  | { need: number }
  | { ready: string }
  | { running: string }
  | { received: string }
  | { error: string };

/** What the source sends after the stream's END once the destination is ready: run it. */
export const GO = new TextEncoder().encode("GO\n");

const MAX_LINE = 64 * 1024;

export function encodeMessage(m: DestinationMessage): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(m) + "\n");
}

/**
 * The destination's messages, read in the background as they come: next() waits for one;
 * `failure` is set as soon as the destination reports an error or the link ends, so a source
 * busy sending learns of it at its next look.
 */
export class DestinationReplies {
  failure: Error | null = null;
  /** Memory sections the destination has put in place. */
  applied = 0;
  /** When each kind of message last came (performance.now()). */
  readonly seenAt = new Map<string, number>();
  /** Pages the destination asked for during post-copy, not yet taken (a page at most once). */
  private needs = new Set<number>();
  private queue: DestinationMessage[] = [];
  private waiter: (() => void) | null = null;

  constructor(link: ByteLink) {
    void this.read(link);
  }

  private async read(link: ByteLink): Promise<void> {
    let text = "";
    const decoder = new TextDecoder();
    try {
      for await (const chunk of link.chunks()) {
        text += decoder.decode(chunk, { stream: true });
        let nl;
        while ((nl = text.indexOf("\n")) >= 0) {
          this.accept(text.slice(0, nl));
          text = text.slice(nl + 1);
        }
        if (text.length > MAX_LINE) throw new Error(`${link.peer} sent a line of more than ${MAX_LINE} bytes`);
      }
      this.fail(new Error(`${link.peer} closed the migration link`));
    } catch (e) {
      this.fail(e instanceof Error ? e : new Error(String(e)));
    }
  }

  private accept(line: string): void {
    let m: unknown;
    try {
      m = JSON.parse(line);
    } catch {
      throw new Error(`the destination sent something that is not a message: ${JSON.stringify(line.slice(0, 80))}`);
    }
    const o = m as Record<string, unknown>;
    const keys = m && typeof m === "object" && !Array.isArray(m) ? Object.keys(o) : [];
    if (keys.length === 1 && keys[0] === "applied" && Number.isSafeInteger(o.applied) && (o.applied as number) > this.applied) {
      this.applied = o.applied as number;
      this.waiter?.();
      return;
    }
    if (keys.length === 1 && keys[0] === "need" && Number.isSafeInteger(o.need) && (o.need as number) >= 0) {
      if (this.needs.size < 1 << 20) this.needs.add(o.need as number);
      this.waiter?.();
      return;
    }
    // {"accepted": name} may say whether the destination takes post-copy.
    const postcopyFlag = keys.length === 2 && keys[0] === "accepted" && keys[1] === "postcopy" && typeof o.postcopy === "boolean";
    if ((keys.length !== 1 && !postcopyFlag) || !["accepted", "ready", "running", "received", "error"].includes(keys[0]!) || typeof o[keys[0]!] !== "string") {
      throw new Error(`the destination sent an unknown message: ${JSON.stringify(line.slice(0, 80))}`);
    }
    if ("error" in o) return this.fail(new Error(`the destination refused the VM: ${printable((o.error as string).slice(0, 500))}`));
    this.seenAt.set(keys[0]!, performance.now());
    this.queue.push(o as DestinationMessage);
    this.waiter?.();
  }

  private fail(e: Error): void {
    this.failure ??= e;
    this.waiter?.();
  }

  /** The pages the destination asked for since the last call (its own bounds are the caller's to check). */
  takeNeeds(): number[] {
    const pages = [...this.needs];
    this.needs.clear();
    return pages;
  }

  /** Once the destination has put `sections` memory sections in place (it fails, or `timeoutMs` pass, first). */
  async caughtUp(sections: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.applied < sections) {
      if (this.failure) throw this.failure;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`the destination put in place ${this.applied} of ${sections} memory sections within ${Math.round(timeoutMs / 1000)} s`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => { clearTimeout(t); resolve(); };
      });
      this.waiter = null;
    }
  }

  /** `work`, unless the destination fails first or `timeoutMs` pass. */
  async within<T>(work: Promise<T>, timeoutMs: number, what: string): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let poll: ReturnType<typeof setInterval> | undefined;
    try {
      return await Promise.race([
        work,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`the destination took nothing for ${Math.round(timeoutMs / 1000)} s (waiting for ${what})`)), timeoutMs);
          poll = setInterval(() => { if (this.failure) reject(this.failure); }, 50);
          if (this.failure) reject(this.failure);
        }),
      ]);
    } finally {
      clearTimeout(timer);
      clearInterval(poll);
    }
  }

  /** The next message; rejects on failure, or after `timeoutMs`. */
  async next(timeoutMs: number, what: string): Promise<DestinationMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.queue.length) return this.queue.shift()!;
      if (this.failure) throw this.failure;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`the destination did not answer within ${Math.round(timeoutMs / 1000)} s (waiting for ${what})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => { clearTimeout(t); resolve(); };
      });
      this.waiter = null;
    }
  }
}

/**
 * Two ends of a link within one process (two hypervisors in one page or test): what one writes
 * the other reads, with the same backpressure a socket has. close(true) resets it, as a
 * connection that dies does.
 */
export function linkPair(highWater = 1 << 20): [ByteLink, ByteLink] {
  interface End {
    queue: Uint8Array[];
    queued: number;
    ended: boolean;
    failed: Error | null;
    wake: (() => void) | null;
    drainWaiters: (() => void)[];
  }
  const make = (): End => ({ queue: [], queued: 0, ended: false, failed: null, wake: null, drainWaiters: [] });
  const ends = [make(), make()] as const; // ends[i]: what side i reads
  const side = (i: 0 | 1): ByteLink => {
    const mine = ends[i], theirs = ends[1 - i]!;
    return {
      peer: `in-process link end ${1 - i}`,
      write(chunk) {
        if (theirs.ended || theirs.failed || mine.failed) throw new Error("the link is closed");
        theirs.queue.push(new Uint8Array(chunk)); // a copy (a Buffer's slice() would not be)
        theirs.queued += chunk.length;
        theirs.wake?.();
        return theirs.queued < highWater;
      },
      drained: () => new Promise((resolve, reject) => {
        if (theirs.failed) return reject(theirs.failed);
        if (theirs.queued < highWater || theirs.ended) return resolve();
        theirs.drainWaiters.push(() => (theirs.failed ? reject(theirs.failed) : resolve()));
      }),
      chunks: () => ({
        [Symbol.asyncIterator]: () => ({
          async next(): Promise<IteratorResult<Uint8Array>> {
            for (;;) {
              if (mine.failed) throw mine.failed;
              const c = mine.queue.shift();
              if (c) {
                mine.queued -= c.length;
                if (mine.queued < highWater) for (const w of mine.drainWaiters.splice(0)) w();
                return { value: c, done: false };
              }
              if (mine.ended) return { value: undefined, done: true };
              await new Promise<void>((resolve) => { mine.wake = resolve; });
              mine.wake = null;
            }
          },
        }),
      }),
      // Graceful: the other side reads to the end of what was sent (and may still answer, as
      // with a socket's half-close). Now: both sides fail, as when a connection is reset.
      close(now) {
        for (const e of now ? [mine, theirs] : [theirs]) {
          if (now) e.failed ??= new Error("the link was reset");
          else e.ended = true;
          e.wake?.();
          for (const w of e.drainWaiters.splice(0)) w();
        }
      },
    };
  };
  return [side(0), side(1)];
}
