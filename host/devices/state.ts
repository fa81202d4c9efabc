/**
 * Saved state, in one shape for every device (and the virtqueues, the bandwidth buckets, the
 * built-in SBI and the machine): plain JSON data, so that a state survives JSON.stringify and
 * JSON.parse, or a postMessage to another thread, unchanged. No bigint (u64 values are decimal
 * strings), no typed arrays (bytes are base64 strings, words arrays of numbers), no undefined
 * (what is absent is null), no absolute times (times are "ms from now"). A device's state names
 * its type (`kind`) and the `version` of its layout; restore() opens it with StateReader, which
 * checks both and then every field as it is read, so a device checks everything before it
 * changes anything and a malformed state fails with an Error naming the device and the field.
 */

export type StateValue = null | boolean | number | string | readonly StateValue[] | StateFields;
export type StateFields = { readonly [field: string]: StateValue };

/** A saved device (or SBI, bucket, machine) state. */
export type DeviceState = { readonly kind: string; readonly version: number } & StateFields;

// Strict base64: whole groups of four, padding only at the end (atob would take more).
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const U64 = /^(?:0|[1-9][0-9]{0,19})$/;
const U64_MAX = (1n << 64n) - 1n;

/** Bytes as state: base64. */
export function bytesState(bytes: Uint8Array): string {
  let text = "";
  // In pieces: String.fromCharCode takes its bytes as arguments.
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

/** Words (a Uint32Array, a Uint16Array...) as state: an array of numbers. */
export function wordsState(words: ArrayLike<number>): number[] {
  return Array.from(words);
}

/** A u64 as state: its decimal digits. */
export function u64State(value: bigint): string {
  return BigInt.asUintN(64, value).toString();
}

function show(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v);
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (ArrayBuffer.isView(v)) return `a ${v.constructor.name}`; // a state from before states were JSON
  if (typeof v === "object" && v !== null) return "an object";
  if (typeof v === "bigint") return `${v}n`;
  return String(v);
}

/**
 * Reads a saved state (an object, or a list inside one) field by field, checking each: every
 * method returns the field's value or throws `<who>: state.<field> must be ..., got ...`.
 */
export class StateReader {
  private readonly fields: { readonly [field: string]: unknown };

  /** Open a device's state: an object of type `kind` and layout `version`; `who` names the device. */
  static open(state: unknown, who: string, kind: string, version: number): StateReader {
    const r = new StateReader(state, who, "state", false);
    const k = r.fields.kind;
    if (k !== kind) throw new Error(`${who}: not a state of kind ${kind} (its kind is ${show(k)})`);
    const v = r.fields.version;
    if (v !== version) throw new Error(`${who}: ${kind} state version ${show(v)} is not ${version}, the one this build reads`);
    return r;
  }

  private constructor(value: unknown, readonly who: string, private readonly path: string, list: boolean) {
    const ok = value !== null && typeof value === "object" && Array.isArray(value) === list && !ArrayBuffer.isView(value);
    if (!ok) throw new Error(`${who}: ${path} must be ${list ? "an array" : "an object"}, got ${show(value)}`);
    this.fields = value as { readonly [field: string]: unknown };
  }

  /** Items of a list, as many as it has. */
  get length(): number {
    return (this.fields as unknown as unknown[]).length;
  }

  private where(field: string | number): string {
    return typeof field === "number" ? `${this.path}[${field}]` : `${this.path}.${field}`;
  }

  /** Throw for a field that failed a check of the device's own ("a power of two"). */
  reject(field: string | number, what: string): never {
    throw new Error(`${this.who}: ${this.where(field)} must be ${what}, got ${show(this.fields[field])}`);
  }

  /** Whether the field is there at all (one added to a format later is absent from older streams). */
  has(field: string | number): boolean {
    return this.fields[field] !== undefined;
  }

  /** Whether the field is null (an optional value that is absent). */
  isNull(field: string | number): boolean {
    return this.fields[field] === null;
  }

  /** null for null, else what `read` makes of the field. */
  nullable<T>(field: string | number, read: (field: string | number) => T): T | null {
    return this.isNull(field) ? null : read(field);
  }

  int(field: string | number, min: number, max: number): number {
    const v = this.fields[field];
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) this.reject(field, `an integer in ${min}..${max}`);
    return v;
  }

  /** An integer with no bits set outside `mask`. */
  bits(field: string | number, mask: number): number {
    const v = this.fields[field];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 0xffffffff || (v & ~mask) !== 0) {
      this.reject(field, `an integer with only bits 0x${(mask >>> 0).toString(16)}`);
    }
    return v;
  }

  /** A finite number in [min, max]. */
  number(field: string | number, min: number, max: number): number {
    const v = this.fields[field];
    if (typeof v !== "number" || !Number.isFinite(v) || v < min || v > max) this.reject(field, `a number in ${min}..${max}`);
    return v;
  }

  bool(field: string | number): boolean {
    const v = this.fields[field];
    if (typeof v !== "boolean") this.reject(field, "a boolean");
    return v;
  }

  string(field: string | number, maxLength = 4096): string {
    const v = this.fields[field];
    if (typeof v !== "string" || v.length > maxLength) this.reject(field, `a string of at most ${maxLength} characters`);
    return v;
  }

  /** A u64 saved by u64State. */
  u64(field: string | number): bigint {
    const v = this.fields[field];
    if (typeof v !== "string" || !U64.test(v) || BigInt(v) > U64_MAX) this.reject(field, "a u64 in decimal digits");
    return BigInt(v);
  }

  /** Bytes saved by bytesState: minLength..maxLength of them. */
  bytes(field: string | number, minLength: number, maxLength: number): Uint8Array {
    const v = this.fields[field];
    const what = `${minLength === maxLength ? maxLength : `${minLength}..${maxLength}`} bytes in base64`;
    if (typeof v !== "string" || !BASE64.test(v)) this.reject(field, what);
    const length = (v.length / 4) * 3 - (v.endsWith("==") ? 2 : v.endsWith("=") ? 1 : 0);
    if (length < minLength || length > maxLength) this.reject(field, what);
    const text = atob(v);
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) out[i] = text.charCodeAt(i);
    return out;
  }

  /** Exactly `length` u32 words saved by wordsState. */
  words(field: string | number, length: number): Uint32Array {
    const list = this.list(field, length, length);
    const out = new Uint32Array(length);
    for (let i = 0; i < length; i++) out[i] = list.int(i, 0, 0xffffffff);
    return out;
  }

  /** A nested object (a queue of a transport, the device behind it). */
  object(field: string | number): StateReader {
    return new StateReader(this.fields[field], this.who, this.where(field), false);
  }

  /** Counters (non-negative integers) with the names `like` has: a copy of it with their values. */
  counters<T extends object>(field: string | number, like: T): T {
    const r = this.object(field);
    const out: { [name: string]: number } = {};
    for (const name of Object.keys(like)) out[name] = r.int(name, 0, Number.MAX_SAFE_INTEGER);
    return out as T;
  }

  /** A nested state, for another restore() to read (the device behind a transport). */
  state(field: string | number): unknown {
    return this.object(field).fields;
  }

  /** A list of minLength..maxLength items, read with the same methods by index. */
  list(field: string | number, minLength: number, maxLength: number): StateReader {
    const r = new StateReader(this.fields[field], this.who, this.where(field), true);
    if (r.length < minLength || r.length > maxLength) this.reject(field, `an array of ${minLength}..${maxLength} items`);
    return r;
  }

  /** `read(i)` for each item of a list. */
  map<T>(read: (index: number) => T): T[] {
    return Array.from({ length: this.length }, (_, i) => read(i));
  }

  /** The field names of an object (a map of counters, of device states). */
  keys(): string[] {
    return Object.keys(this.fields);
  }
}
