// Post-copy's pages on their way into a VM that already runs at the destination. The control
// plane reads them off the migration link and puts them here (PageFeed); the VM's pCPU takes
// them between steps, or, when the guest touches a page that has not come yet, asks for it and
// waits here (PageTap). Shared memory rather than messages: a pCPU waiting for a page inside
// the guest's instruction cannot take a message, but it can sleep on a word (Atomics.wait).
//
// The ring holds SLOTS records of [page index, flags, 4096 bytes]; WRITTEN and READ count
// records (the difference is what waits), ASKED counts requests and WANTED is the last page
// asked for (a pCPU waits for one page at a time), STATE says whether more will come.
const PAGE = 4096;
const RECORD = 8 + PAGE;
/** Records in flight: 1 MiB of pages. */
const SLOTS = 256;
const WRITTEN = 0, READ = 1, ASKED = 2, WANTED = 3, STATE = 4, REASON_BYTES = 5;
const HEADER_WORDS = 8;
/** Why the channel failed (UTF-8, cut to fit), after the header. */
const REASON_AT = HEADER_WORDS * 4, REASON_MAX = 256;
const RECORDS_AT = REASON_AT + REASON_MAX;
const ZERO = 1;

/** Whether more pages will come: yes, no (all came), or never (the link failed). */
export const CHANNEL = { open: 0, complete: 1, failed: 2 } as const;
export type ChannelState = (typeof CHANNEL)[keyof typeof CHANNEL];

/** Bytes of a channel's shared buffer. */
export const PAGE_CHANNEL_BYTES = RECORDS_AT + SLOTS * RECORD;

/** The control plane's end: puts pages in (queued while the ring is full), hears requests. */
export class PageFeed {
  readonly buffer = new SharedArrayBuffer(PAGE_CHANNEL_BYTES);
  private readonly i32 = new Int32Array(this.buffer, 0, HEADER_WORDS);
  private readonly u8 = new Uint8Array(this.buffer);
  private readonly view = new DataView(this.buffer);
  private readonly queue: { page: number; data: Uint8Array | null }[] = [];
  private head = 0;
  private closed = false;
  private pumping = false;

  /** `wake` rings the pCPU's doorbell, so a pCPU with nothing to run comes for the pages. */
  constructor(private readonly wake: () => void) {}

  /** Pages put in but not yet in the ring (the caller reads less from the link while there are many). */
  get queued(): number {
    return this.queue.length - this.head;
  }

  /** A page's content (null: all zero). */
  put(page: number, data: Uint8Array | null): void {
    this.queue.push({ page, data: data && new Uint8Array(data) });
    this.pump();
    if (this.queued) void this.keepPumping();
  }

  // While pages wait in the queue, move them into the ring as the pCPU takes pages out of it (a
  // page the VM waits for may be among them).
  private async keepPumping(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.queued && !this.closed) {
        const read = Atomics.load(this.i32, READ);
        this.pump();
        if (!this.queued) break;
        const w = Atomics.waitAsync(this.i32, READ, read, 1000);
        if (w.async) await w.value;
      }
    } finally {
      this.pumping = false;
    }
  }

  /** Move what fits from the queue into the ring, and tell the pCPU. */
  private pump(): void {
    const written = Atomics.load(this.i32, WRITTEN);
    const free = SLOTS - ((written - Atomics.load(this.i32, READ)) | 0);
    let n = 0;
    for (; n < free && this.head < this.queue.length; n++) {
      const { page, data } = this.queue[this.head++]!;
      const at = RECORDS_AT + (((written + n) >>> 0) % SLOTS) * RECORD;
      this.view.setUint32(at, page, true);
      this.view.setUint32(at + 4, data ? 0 : ZERO, true);
      if (data) this.u8.set(data, at + 8);
    }
    // What went into the ring is let go of (the queue may never empty while the pCPU is behind).
    if (this.head === this.queue.length || this.head >= 4096) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    if (!n) return;
    Atomics.store(this.i32, WRITTEN, (written + n) | 0);
    Atomics.notify(this.i32, WRITTEN);
    this.wake();
  }

  /**
   * Once the queue is down to `most` pages (the pCPU took the rest into the ring), or `gone()`
   * (the VM ended: nobody takes them); rejects if the pCPU takes nothing for `timeoutMs`.
   */
  async room(most: number, timeoutMs: number, gone: () => boolean): Promise<void> {
    let deadline = Date.now() + timeoutMs;
    let read = Atomics.load(this.i32, READ);
    while (this.queued > most && !this.closed && !gone()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`the VM took no memory for ${Math.round(timeoutMs / 1000)} s`);
      const w = Atomics.waitAsync(this.i32, READ, read, Math.min(left, 1000));
      if (w.async) await w.value;
      await Promise.resolve(); // the pump's turn first
      const now = Atomics.load(this.i32, READ);
      if (now !== read) deadline = Date.now() + timeoutMs; // it took some: the wait starts again
      read = now;
    }
  }

  /** Call `need` with each page the pCPU asks for, until the channel closes. */
  async requests(need: (page: number) => void): Promise<void> {
    let seen = Atomics.load(this.i32, ASKED);
    while (!this.closed) {
      const w = Atomics.waitAsync(this.i32, ASKED, seen, 1000);
      if (w.async) await w.value;
      const asked = Atomics.load(this.i32, ASKED);
      if (asked === seen || this.closed) continue;
      seen = asked;
      need(Atomics.load(this.i32, WANTED) >>> 0);
    }
  }

  /** No more pages: all of them came, or the migration failed, `why` (the VM then fails when it needs one). */
  close(state: typeof CHANNEL.complete | typeof CHANNEL.failed, why = ""): void {
    if (this.closed) return;
    this.closed = true;
    const reason = new TextEncoder().encode(why).subarray(0, REASON_MAX);
    this.u8.set(reason, REASON_AT);
    Atomics.store(this.i32, REASON_BYTES, reason.length);
    Atomics.store(this.i32, STATE, state);
    Atomics.notify(this.i32, WRITTEN);
    Atomics.notify(this.i32, ASKED);
    this.wake();
  }
}

/** The pCPU's end: takes pages, asks for one and waits. */
export class PageTap {
  private readonly i32: Int32Array;
  private readonly u8: Uint8Array;
  private readonly view: DataView;

  constructor(buffer: SharedArrayBuffer) {
    if (!(buffer instanceof SharedArrayBuffer) || buffer.byteLength !== PAGE_CHANNEL_BYTES) throw new Error("not a page channel");
    this.i32 = new Int32Array(buffer, 0, HEADER_WORDS);
    this.u8 = new Uint8Array(buffer);
    this.view = new DataView(buffer);
  }

  get state(): ChannelState {
    return Atomics.load(this.i32, STATE) as ChannelState;
  }

  /** Why a failed channel failed. */
  get reason(): string {
    const n = Math.min(REASON_MAX, Atomics.load(this.i32, REASON_BYTES));
    return new TextDecoder().decode(this.u8.slice(REASON_AT, REASON_AT + n)) || "the migration link failed";
  }

  /** Records in the ring. */
  get ready(): number {
    return (Atomics.load(this.i32, WRITTEN) - Atomics.load(this.i32, READ)) | 0;
  }

  /** Take every page in the ring: `each` gets its content (null: a zero page), a view valid only during the call. */
  take(each: (page: number, data: Uint8Array | null) => void): number {
    const written = Atomics.load(this.i32, WRITTEN);
    let read = Atomics.load(this.i32, READ);
    const n = (written - read) | 0;
    for (let i = 0; i < n; i++, read = (read + 1) | 0) {
      const at = RECORDS_AT + ((read >>> 0) % SLOTS) * RECORD;
      const page = this.view.getUint32(at, true);
      const zero = (this.view.getUint32(at + 4, true) & ZERO) !== 0;
      each(page, zero ? null : this.u8.subarray(at + 8, at + 8 + PAGE));
    }
    if (n) {
      Atomics.store(this.i32, READ, read);
      Atomics.notify(this.i32, READ);
    }
    return n;
  }

  /** Ask for `page` (the control plane passes it on to the source). */
  ask(page: number): void {
    Atomics.store(this.i32, WANTED, page | 0);
    Atomics.add(this.i32, ASKED, 1);
    Atomics.notify(this.i32, ASKED);
  }

  /** Sleep until pages come or the channel closes (at most `ms`). */
  wait(ms: number): void {
    const written = Atomics.load(this.i32, WRITTEN);
    if (this.ready > 0 || this.state !== CHANNEL.open) return;
    Atomics.wait(this.i32, WRITTEN, written, ms);
  }
}
