/**
 * Byte-level mutations of a corpus input. Targets read inputs as structured programs
 * (InputReader), so flipping an opcode byte or a length field changes the program's structure:
 * these stay generic and the structure lives in each target's reader.
 */
export type Rng = () => number;

const INTERESTING_8 = [0, 1, 2, 0x7f, 0x80, 0xff, 0x10, 0x40];
const INTERESTING_32 = [0, 1, 0xffffffff, 0x7fffffff, 0x80000000, 0x1000, 0xfff, 0x80000000, 0x8000_1000, 0x10001000, 0xffff, 0x10000];

const below = (rng: Rng, n: number) => (n <= 0 ? 0 : rng() % n);

/** One to several stacked mutations of `input`, optionally splicing in part of `other`; at most `max` bytes. */
export function mutate(input: Uint8Array, rng: Rng, max: number, other?: Uint8Array): Uint8Array {
  let b = Array.from(input);
  const rounds = 1 + below(rng, 4);
  for (let r = 0; r < rounds; r++) {
    const at = below(rng, b.length);
    switch (below(rng, 11)) {
      case 0: // flip a bit
        if (b.length) b[at] = b[at]! ^ (1 << below(rng, 8));
        break;
      case 1: // a random byte
        if (b.length) b[at] = below(rng, 256);
        break;
      case 2: // an interesting byte
        if (b.length) b[at] = INTERESTING_8[below(rng, INTERESTING_8.length)]!;
        break;
      case 3: { // an interesting little-endian word
        const v = INTERESTING_32[below(rng, INTERESTING_32.length)]!;
        for (let i = 0; i < 4 && at + i < b.length; i++) b[at + i] = (v >>> (8 * i)) & 0xff;
        break;
      }
      case 4: // add or subtract a little
        if (b.length) b[at] = (b[at]! + (below(rng, 2) ? 1 : -1) * (1 + below(rng, 16))) & 0xff;
        break;
      case 5: { // insert random bytes
        const n = 1 + below(rng, 16);
        b.splice(at, 0, ...Array.from({ length: n }, () => below(rng, 256)));
        break;
      }
      case 6: // delete a run
        b.splice(at, 1 + below(rng, 16));
        break;
      case 7: { // duplicate a run (programs are sequences of ops: repeating one is often useful)
        const n = 1 + below(rng, 32);
        b.splice(below(rng, b.length + 1), 0, ...b.slice(at, at + n));
        break;
      }
      case 8: { // copy a run over another place
        const n = 1 + below(rng, 16);
        const run = b.slice(at, at + n);
        const to = below(rng, b.length);
        for (let i = 0; i < run.length && to + i < b.length; i++) b[to + i] = run[i]!;
        break;
      }
      case 9: // splice: the start of this input and the tail of another
        if (other && other.length) b = b.slice(0, at).concat(Array.from(other.subarray(below(rng, other.length))));
        break;
      default: // append random bytes (more program)
        for (let n = 1 + below(rng, 32); n > 0; n--) b.push(below(rng, 256));
    }
  }
  if (b.length > max) b.length = max;
  return Uint8Array.from(b);
}
