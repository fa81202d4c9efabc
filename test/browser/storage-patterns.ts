// The bytes of the storage test's served image and of what it writes over it, as functions of
// the disk offset, so the page, its worker and the test agree without passing images around.
export const basePattern = (i: number) => (i * 7 + Math.floor(i / 512)) & 255;
export const writtenPattern = (i: number) => ((i * 13 + 5) & 255) ^ 0xa5;

/** The first offset where `bytes` (read at `offset`) differ from `pattern`, or -1. */
export function firstMismatch(bytes: Uint8Array, offset: number, pattern: (i: number) => number): number {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== pattern(offset + i)) return offset + i;
  return -1;
}
