/** Set bits in a 32-bit word. */
export function popcount(v: number): number {
  v >>>= 0;
  v -= (v >>> 1) & 0x55555555;
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24);
}

/** Set bits in a bitmap. */
export function bitmapCount(bitmap: ArrayLike<number>): number {
  let n = 0;
  for (let i = 0; i < bitmap.length; i++) n += popcount(bitmap[i]!);
  return n;
}
