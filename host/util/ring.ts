// A single-producer, single-consumer byte ring in a SharedArrayBuffer: how console bytes cross
// between the main thread and a VM's worker without a message per byte. The consumer can sleep
// on the tail word (Atomics.wait / waitAsync) and the producer wakes it.

/** Wake whoever sleeps on a doorbell word (Atomics.wait/waitAsync on index 0) and count the ring. */
export function ringDoorbell(word: Int32Array): void {
  Atomics.add(word, 0, 1);
  Atomics.notify(word, 0);
}

const HEAD = 0; // next byte to read (written by the consumer)
const TAIL = 1; // next byte to write (written by the producer)
const HEADER_BYTES = 8;

export class ByteRing {
  readonly buffer: SharedArrayBuffer;
  private readonly ctl: Int32Array;
  private readonly data: Uint8Array;
  private readonly mask: number;

  /** A new ring of `capacity` bytes (a power of two), or a view of an existing one's buffer. */
  constructor(capacityOrBuffer: number | SharedArrayBuffer) {
    this.buffer = typeof capacityOrBuffer === "number"
      ? new SharedArrayBuffer(HEADER_BYTES + capacityOrBuffer)
      : capacityOrBuffer;
    const capacity = this.buffer.byteLength - HEADER_BYTES;
    if (capacity <= 0 || (capacity & (capacity - 1)) !== 0) throw new Error(`ring capacity ${capacity} is not a power of two`);
    this.ctl = new Int32Array(this.buffer, 0, 2);
    this.data = new Uint8Array(this.buffer, HEADER_BYTES);
    this.mask = capacity - 1;
  }

  get capacity(): number {
    return this.mask + 1;
  }

  /** Bytes waiting to be read. */
  available(): number {
    return (Atomics.load(this.ctl, TAIL) - Atomics.load(this.ctl, HEAD)) | 0;
  }

  /** Append as much of `bytes` as fits; returns how many were written. Wakes a waiting reader. */
  write(bytes: Uint8Array): number {
    const head = Atomics.load(this.ctl, HEAD);
    const tail = Atomics.load(this.ctl, TAIL);
    const free = this.capacity - ((tail - head) | 0);
    const n = Math.min(free, bytes.length);
    this.copyIn(bytes, n, tail);
    if (n > 0) {
      Atomics.store(this.ctl, TAIL, (tail + n) | 0);
      Atomics.notify(this.ctl, TAIL);
    }
    return n;
  }

  // The first n of `bytes` into the ring from position `tail`, in at most two pieces (it wraps).
  private copyIn(bytes: Uint8Array, n: number, tail: number): void {
    const at = tail & this.mask, first = Math.min(n, this.mask + 1 - at);
    this.data.set(bytes.subarray(0, first), at);
    this.data.set(bytes.subarray(first, n), 0);
  }

  /** Remove and return up to `max` bytes. */
  read(max = this.capacity): Uint8Array {
    const head = Atomics.load(this.ctl, HEAD);
    const n = Math.min(max, (Atomics.load(this.ctl, TAIL) - head) | 0);
    const out = new Uint8Array(n);
    const at = head & this.mask, first = Math.min(n, this.mask + 1 - at);
    out.set(this.data.subarray(at, at + first));
    out.set(this.data.subarray(0, n - first), first);
    if (n > 0) {
      Atomics.store(this.ctl, HEAD, (head + n) | 0);
      Atomics.notify(this.ctl, HEAD);
    }
    return out;
  }

  /** Remove and return one byte, or -1 when empty. */
  readByte(): number {
    const head = Atomics.load(this.ctl, HEAD);
    if (head === Atomics.load(this.ctl, TAIL)) return -1;
    const b = this.data[head & this.mask];
    Atomics.store(this.ctl, HEAD, (head + 1) | 0);
    return b;
  }

  /** Resolve when data may be available (or after `timeoutMs`), without blocking the thread. */
  async waitForData(timeoutMs: number): Promise<void> {
    const tail = Atomics.load(this.ctl, TAIL);
    if (tail !== Atomics.load(this.ctl, HEAD)) return;
    const r = Atomics.waitAsync(this.ctl, TAIL, tail, timeoutMs);
    if (r.async) await r.value;
  }

  /** Block (worker threads only) until the reader frees space or `timeoutMs` passes. */
  waitForSpace(timeoutMs: number): void {
    const head = Atomics.load(this.ctl, HEAD);
    if (this.available() < this.capacity) return;
    Atomics.wait(this.ctl, HEAD, head, timeoutMs);
  }

  /** Wake anyone waiting on this ring (used to interrupt a sleeping VM loop). */
  kick(): void {
    Atomics.notify(this.ctl, TAIL);
  }
}
