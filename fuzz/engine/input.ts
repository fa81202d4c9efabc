/**
 * A fuzz input is bytes; a target reads them as a structured program through an InputReader,
 * so any byte string is a valid input (mutations never need to know the structure) and a corpus
 * or crash file replays exactly. Reads past the end give zeros: a truncated program ends in
 * no-ops rather than being rejected.
 */
export class InputReader {
  private pos = 0;

  constructor(readonly bytes: Uint8Array) {}

  get remaining(): number {
    return this.bytes.length - this.pos;
  }

  get done(): boolean {
    return this.pos >= this.bytes.length;
  }

  u8(): number {
    return this.pos < this.bytes.length ? this.bytes[this.pos++]! : 0;
  }

  u16(): number {
    return this.u8() | (this.u8() << 8);
  }

  u32(): number {
    return (this.u16() | (this.u16() << 16)) >>> 0;
  }

  /** A 64-bit value as a bigint. */
  u64(): bigint {
    const lo = this.u32();
    return (BigInt(this.u32()) << 32n) | BigInt(lo);
  }

  bool(): boolean {
    return (this.u8() & 1) === 1;
  }

  /** An integer in [lo, hi] (inclusive), from as few bytes as the range needs. */
  int(lo: number, hi: number): number {
    const span = hi - lo + 1;
    const raw = span <= 0x100 ? this.u8() : span <= 0x10000 ? this.u16() : this.u32();
    return lo + (raw % span);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)]!;
  }

  /** `n` bytes (fewer at the end of the input). */
  take(n: number): Uint8Array {
    const out = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += out.length;
    return out;
  }

  /** A length-prefixed byte string of at most `max` bytes. */
  blob(max: number): Uint8Array {
    return this.take(this.int(0, max));
  }

  /** Everything left. */
  rest(): Uint8Array {
    return this.take(this.remaining);
  }
}

/** Builds inputs for an InputReader: how targets write their seed programs. */
export class InputWriter {
  private readonly out: number[] = [];

  u8(v: number): this {
    this.out.push(v & 0xff);
    return this;
  }

  u16(v: number): this {
    return this.u8(v).u8(v >>> 8);
  }

  u32(v: number): this {
    return this.u16(v & 0xffff).u16(v >>> 16);
  }

  u64(v: bigint): this {
    return this.u32(Number(v & 0xffffffffn)).u32(Number((v >> 32n) & 0xffffffffn));
  }

  /** The encoding InputReader.int(lo, hi) reads back as `v`. */
  int(lo: number, hi: number, v: number): this {
    const span = hi - lo + 1;
    const raw = v - lo;
    return span <= 0x100 ? this.u8(raw) : span <= 0x10000 ? this.u16(raw) : this.u32(raw);
  }

  bool(v: boolean): this {
    return this.u8(v ? 1 : 0);
  }

  bytes(b: ArrayLike<number>): this {
    for (let i = 0; i < b.length; i++) this.out.push(b[i]! & 0xff);
    return this;
  }

  blob(max: number, b: ArrayLike<number>): this {
    return this.int(0, max, b.length).bytes(b);
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.out);
  }
}
