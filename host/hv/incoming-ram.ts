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
  /** Pages have come that should go in now, whether the VM runs or not. */
  readonly waiting: boolean;
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

  readonly waiting = false;

  close(core: Core, done: boolean): void {
    this.src.close();
    if (done) this.saveTouched(core.touchOrder());
  }
}

/**
 * How long a VM in post-copy waits for one page before it fails (ms). While it waits its pCPU
 * does nothing else (the wait is inside the guest's instruction), so this is short.
 */
const PAGE_WAIT_MS = 10_000;
/** How long it may wait for pages in all before it fails: the most its pCPU's other VMs lose to it (ms). */
const TOTAL_WAIT_MS = 120_000;
/** A page asked for and not come after this long is asked for again (ms). */
const ASK_AGAIN_MS = 1000;

/**
 * A VM migrating in by post-copy: the pages the source had not sent when the VM stopped come
 * through a page channel (migration/page-channel.ts) that the control plane fills from the link,
 * and go straight into RAM (Core.supply). A page the guest touches before it has come is asked
 * for, and the pCPU waits for it: the thread blocks (Atomics.wait), so only a pCPU on a thread
 * of its own may do this.
 */
export class PostcopyPages implements IncomingRam {
  readonly what: string;
  private readonly tap: PageTap;
  /** Pages the guest waited for, and how long it waited in all (ms). */
  waited = { pages: 0, ms: 0 };

  constructor(channel: SharedArrayBuffer, from: string, private readonly core: Core) {
    this.tap = new PageTap(channel);
    this.what = `migrating in from ${from}`;
  }

  get waiting(): boolean {
    return this.tap.ready > 0;
  }

  /** The core's page source: the page from the channel, asked for and waited for if it has not come. */
  readonly source: PageSource = (page, dst) => {
    const start = performance.now();
    let asked = -Infinity;
    for (;;) {
      // The state before the take: pages put in before the channel closed are in the ring then.
      const state = this.tap.state;
      let found = false;
      this.tap.take((p, data) => {
        if (p !== page) this.core.supply(p, data);
        else {
          if (data) dst.set(data);
          found = true;
        }
      });
      if (found) break;
      if (state === CHANNEL.failed) throw new Error(`the page did not come: ${this.tap.reason}`);
      if (state === CHANNEL.complete) throw new Error("the source sent every page but this one");
      const now = performance.now();
      if (now - start > PAGE_WAIT_MS) throw new Error(`the page did not come within ${PAGE_WAIT_MS / 1000} s`);
      if (this.waited.ms + (now - start) > TOTAL_WAIT_MS) throw new Error(`it has waited ${TOTAL_WAIT_MS / 1000} s for pages in all, its pCPU with it`);
      if (now - asked >= ASK_AGAIN_MS) {
        this.tap.ask(page);
        asked = now;
      }
      this.tap.wait(100);
    }
    if (performance.now() - start > 0.05) {
      this.waited.pages++;
      this.waited.ms += performance.now() - start;
    }
  };

  fill(core: Core): boolean {
    const state = this.tap.state;
    this.tap.take((p, data) => core.supply(p, data));
    if (core.lazy && state === CHANNEL.failed) throw new Error(`not all of its memory came: ${this.tap.reason}`);
    if (core.lazy && state === CHANNEL.complete && this.tap.ready === 0) throw new Error(`the source sent all it had, and ${core.lazyPending()} pages were still missing`);
    return this.tap.ready > 0;
  }

  close(): void {}
}
