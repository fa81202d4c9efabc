// Where the RAM of a VM that already runs is still coming from (its core is in lazy mode,
// Core.beginLazy): a snapshot it was restored from, or the host it is migrating from
// (post-copy). Pages come in when the guest first touches one, and the pCPU fills the rest
// between steps (fill).
import { PAGE } from "../state/memory";
import { CHANNEL, PageTap } from "../migration/page-channel";
import type { ByteSource } from "../state/container";
import type { Core, PageSource } from "../core/core";

export interface IncomingRam {
  /** What the pages come from, for a failure's message ("restoring from …"). */
  readonly what: string;
  /** Bring in pages for about `ms`; returns whether more are ready now. Throws if RAM cannot come in (the VM fails). */
  fill(core: Core, ms: number): boolean;
  /** Every page is in (`done`), or the VM ended: let go of the source. */
  close(core: Core, done: boolean): void;
}

/** Pages a snapshot's fill brings in per batch. */
const FILL_BATCH = 64;

/**
 * A restored VM's RAM from its snapshot: the pages the guest touched first after the last
 * restore of it (`readTouched`, read at the first fill), then the rest in order; once all is
 * in, `saveTouched` gets this restore's touch record.
 */
export class SnapshotPages implements IncomingRam {
  readonly what: string;
  private cursor = 0;
  private prefetch: number[] | null = null;

  constructor(
    private readonly src: ByteSource,
    path: string,
    private readonly readTouched: () => number[],
    private readonly saveTouched: (pages: number[]) => void,
  ) {
    this.what = `restoring from ${path}`;
  }

  fill(core: Core, ms: number): boolean {
    const t0 = performance.now();
    const ramPages = core.ramSize / PAGE;
    this.prefetch ??= this.readTouched();
    while (core.lazy && performance.now() - t0 < ms) {
      if (this.prefetch.length) core.prefetch(this.prefetch.splice(0, FILL_BATCH));
      else {
        const from = this.cursor;
        this.cursor = Math.min(ramPages, from + FILL_BATCH * 4);
        core.prefetch(Array.from({ length: this.cursor - from }, (_, i) => from + i));
      }
    }
    return core.lazy;
  }

  close(core: Core, done: boolean): void {
    this.src.close();
    if (done) this.saveTouched(core.touchOrder());
  }
}

/** How long a VM in post-copy waits for one page before it fails (ms). */
const PAGE_WAIT_MS = 30_000;
/** A page asked for and not come after this long is asked for again (ms). */
const ASK_AGAIN_MS = 1000;

/**
 * A VM migrating in by post-copy: the pages the source had not sent when the VM stopped come
 * through a page channel (migration/page-channel.ts) that the control plane fills from the link.
 * A page the guest touches before it has come is asked for, and the pCPU waits for it: the
 * thread blocks (Atomics.wait), so only a pCPU on a thread of its own may do this.
 */
export class PostcopyPages implements IncomingRam {
  readonly what: string;
  /** Pages taken off the channel, not yet put in place (null: a zero page). */
  private readonly arrived = new Map<number, Uint8Array | null>();
  private readonly tap: PageTap;
  /** Pages the guest waited for, and how long it waited in all (ms). */
  waited = { pages: 0, ms: 0 };

  constructor(channel: SharedArrayBuffer, from: string) {
    this.tap = new PageTap(channel);
    this.what = `migrating in from ${from}`;
  }

  /** The core's page source: a page that came, or one asked for and waited for. */
  readonly source: PageSource = (page, dst) => {
    if (!this.arrived.has(page)) this.tap.take(this.arrived);
    if (!this.arrived.has(page)) this.waitFor(page);
    const data = this.arrived.get(page)!;
    if (data) dst.set(data);
    this.arrived.delete(page);
  };

  private waitFor(page: number): void {
    const start = performance.now();
    let asked = -Infinity;
    for (;;) {
      this.tap.take(this.arrived);
      if (this.arrived.has(page)) break;
      if (this.tap.state === CHANNEL.failed) throw new Error(`the page did not come: ${this.tap.reason}`);
      if (this.tap.state === CHANNEL.complete) throw new Error("the source sent every page but this one");
      const now = performance.now();
      if (now - start > PAGE_WAIT_MS) throw new Error(`the page did not come within ${PAGE_WAIT_MS / 1000} s`);
      if (now - asked >= ASK_AGAIN_MS) {
        this.tap.ask(page);
        asked = now;
      }
      this.tap.wait(100);
    }
    this.waited.pages++;
    this.waited.ms += performance.now() - start;
  }

  fill(core: Core): boolean {
    this.tap.take(this.arrived);
    if (this.arrived.size) core.prefetch([...this.arrived.keys()]);
    // What is left was for pages already in (a page sent twice): the guest's own writes win.
    for (const page of this.arrived.keys()) if (!core.pageIsAbsent(page)) this.arrived.delete(page);
    if (core.lazy && this.tap.state === CHANNEL.failed) throw new Error(`not all of its memory came: ${this.tap.reason}`);
    return this.tap.ready > 0;
  }

  close(): void {
    this.arrived.clear();
  }
}
