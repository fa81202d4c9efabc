/** `chunks` as one array (a state stream gathered from its writer, a file from its pieces). */
export function concatBytes(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** Whether `count` words of `words` from `start` are all zero. */
export function allZero(words: Uint32Array, start: number, count: number): boolean {
  for (let i = start; i < start + count; i++) if (words[i] !== 0) return false;
  return true;
}
