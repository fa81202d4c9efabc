/**
 * Sleeping on several shared words at once: a thread's doorbell and the kick words of the harts
 * it runs (host/machine/remote-harts.ts). Atomics.waitAsync waits on one word; this races one
 * wait per word, and keeps a wait that is still pending on an unchanged word for the next sleep
 * instead of piling up new ones.
 */
export interface SharedWord {
  i32: Int32Array;
  index: number;
}

/** How long a kept wait lasts before it is made again (ms). */
const KEPT_WAIT_MS = 10_000;

export class WakeWords {
  private readonly kept = new Map<Int32Array, Map<number, { value: number; done: boolean; promise: Promise<unknown> }>>();

  /** The words' values now: take them before the last look at what the words guard, then wait(). */
  sample(words: readonly SharedWord[]): number[] {
    return words.map((w) => Atomics.load(w.i32, w.index));
  }

  /**
   * Wait until a word no longer holds its sampled value (it was notified), or `ms` pass. Resolves
   * at once if one already differs.
   */
  async wait(words: readonly SharedWord[], values: readonly number[], ms: number): Promise<void> {
    const waits: Promise<unknown>[] = [];
    for (let i = 0; i < words.length; i++) {
      const { i32, index } = words[i]!;
      const value = values[i]!;
      let byIndex = this.kept.get(i32);
      if (!byIndex) this.kept.set(i32, (byIndex = new Map()));
      let k = byIndex.get(index);
      if (!k || k.done || k.value !== value) {
        const w = Atomics.waitAsync(i32, index, value, KEPT_WAIT_MS);
        if (!w.async) return; // it changed already
        const entry: { value: number; done: boolean; promise: Promise<unknown> } = { value, done: false, promise: w.value };
        entry.promise = w.value.then(() => { entry.done = true; });
        byIndex.set(index, (k = entry));
      }
      waits.push(k.promise);
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<void>((resolve) => { timer = setTimeout(resolve, ms); });
    try {
      await Promise.race([...waits, timeout]);
    } finally {
      clearTimeout(timer);
    }
    // Words no longer waited on (a VM gone) are forgotten once their wait ends.
    for (const [i32, byIndex] of this.kept) {
      for (const [index, k] of byIndex) if (k.done) byIndex.delete(index);
      if (!byIndex.size) this.kept.delete(i32);
    }
  }
}
