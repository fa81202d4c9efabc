/**
 * Flattened devicetree (DTB, format version 17): an in-memory tree, a writer and a strict
 * parser. Plain TypeScript on Uint8Array/DataView so it runs in browsers as well as Node.
 *
 * Blob layout written: header (40 bytes) | memory reservation block | structure block |
 * strings block | optional free space, the same order dtc uses.
 */

import { printable } from "../util/text";

const FDT_MAGIC = 0xd00dfeed;
const FDT_BEGIN_NODE = 1;
const FDT_END_NODE = 2;
const FDT_PROP = 3;
const FDT_NOP = 4;
const FDT_END = 9;
const HEADER_SIZE = 40;
const VERSION = 17;
const LAST_COMP_VERSION = 16;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A memory reservation entry (physical address range the OS must not use). */
export interface FdtReservation {
  address: bigint;
  size: bigint;
}

function toU64(v: number | bigint, what: string): bigint {
  if (typeof v === "number" && !Number.isSafeInteger(v)) throw new Error(`fdt: ${what} ${v} is not an exact integer`);
  const b = BigInt(v);
  if (b < 0n || b > 0xffffffffffffffffn) throw new Error(`fdt: ${what} ${String(v)} is not a u64`);
  return b;
}

function checkText(s: string, what: string): void {
  if (s.includes("\0")) throw new Error(`fdt: ${what} ${JSON.stringify(s)} contains a NUL character`);
}

/** One node: ordered properties (raw big-endian bytes) and ordered children. */
export class FdtNode {
  readonly props = new Map<string, Uint8Array>();
  readonly children: FdtNode[] = [];
  parent: FdtNode | null = null;

  constructor(readonly name: string) {}

  /** Append a child node; names must be unique among siblings. */
  addNode(name: string): FdtNode {
    checkText(name, "node name");
    if (name === "") throw new Error("fdt: only the root node may have an empty name");
    if (this.child(name)) throw new Error(`fdt: node ${this.path()} already has a child ${name}`);
    const n = new FdtNode(name);
    n.parent = this;
    this.children.push(n);
    return n;
  }

  child(name: string): FdtNode | undefined {
    return this.children.find((c) => c.name === name);
  }

  /** Absolute path, e.g. "/soc/serial@10000000". */
  path(): string {
    if (!this.parent) return "/";
    const up = this.parent.path();
    return up === "/" ? `/${this.name}` : `${up}/${this.name}`;
  }

  // ---- setters (each replaces a property of the same name, keeping its position) ----

  setBytes(name: string, value: Uint8Array): this {
    checkText(name, "property name");
    if (name === "") throw new Error("fdt: empty property name");
    this.props.set(name, value.slice());
    return this;
  }

  /** A property with no value (a flag such as "interrupt-controller"). */
  setEmpty(name: string): this {
    return this.setBytes(name, new Uint8Array(0));
  }

  /** One or more 32-bit cells. */
  setU32(name: string, ...cells: number[]): this {
    const b = new Uint8Array(cells.length * 4);
    const dv = new DataView(b.buffer);
    cells.forEach((c, i) => {
      if (!Number.isInteger(c) || c < 0 || c > 0xffffffff) throw new Error(`fdt: ${name}: cell ${c} is not a u32`);
      dv.setUint32(i * 4, c);
    });
    return this.setBytes(name, b);
  }

  /** One or more 64-bit values (each as two cells, high first). */
  setU64(name: string, ...values: (number | bigint)[]): this {
    const b = new Uint8Array(values.length * 8);
    const dv = new DataView(b.buffer);
    values.forEach((v, i) => dv.setBigUint64(i * 8, toU64(v, `${name}: value`)));
    return this.setBytes(name, b);
  }

  setString(name: string, value: string): this {
    return this.setStrings(name, [value]);
  }

  /** A string list ("a\0b\0"), as used by "compatible". */
  setStrings(name: string, values: string[]): this {
    for (const v of values) checkText(v, `${name}: string`);
    return this.setBytes(name, encoder.encode(values.map((v) => `${v}\0`).join("")));
  }

  // ---- getters (undefined when absent; throw when the value has the wrong shape) ----

  prop(name: string): Uint8Array | undefined {
    return this.props.get(name);
  }

  has(name: string): boolean {
    return this.props.has(name);
  }

  getU32s(name: string): number[] | undefined {
    const b = this.props.get(name);
    if (!b) return undefined;
    if (b.length % 4 !== 0) throw new Error(`fdt: ${this.path()}:${name} is ${b.length} bytes, not whole cells`);
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const out: number[] = [];
    for (let i = 0; i < b.length; i += 4) out.push(dv.getUint32(i));
    return out;
  }

  getU32(name: string): number | undefined {
    const cells = this.getU32s(name);
    if (!cells) return undefined;
    if (cells.length !== 1) throw new Error(`fdt: ${this.path()}:${name} has ${cells.length} cells, expected 1`);
    return cells[0];
  }

  getU64(name: string): bigint | undefined {
    const b = this.props.get(name);
    if (!b) return undefined;
    if (b.length !== 8) throw new Error(`fdt: ${this.path()}:${name} is ${b.length} bytes, expected 8`);
    return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0);
  }

  getStrings(name: string): string[] | undefined {
    const b = this.props.get(name);
    if (!b) return undefined;
    if (b.length === 0 || b[b.length - 1] !== 0) {
      throw new Error(`fdt: ${this.path()}:${name} is not a NUL-terminated string list`);
    }
    return decoder.decode(b.subarray(0, b.length - 1)).split("\0");
  }

  getString(name: string): string | undefined {
    const list = this.getStrings(name);
    if (!list) return undefined;
    if (list.length !== 1) throw new Error(`fdt: ${this.path()}:${name} holds ${list.length} strings, expected 1`);
    return list[0];
  }
}

/** A whole devicetree: the root node, memory reservations and the boot CPU id. */
export class DeviceTree {
  readonly root = new FdtNode("");
  readonly reservations: FdtReservation[] = [];
  bootCpuidPhys = 0;

  /** Node at an absolute path ("/", "/cpus/cpu@0"); undefined if missing. */
  find(path: string): FdtNode | undefined {
    if (!path.startsWith("/")) throw new Error(`fdt: path ${JSON.stringify(path)} is not absolute`);
    let node: FdtNode | undefined = this.root;
    for (const part of path.split("/")) {
      if (part === "") continue;
      node = node.child(part);
      if (!node) return undefined;
    }
    return node;
  }

  /** The node's phandle, giving it the next free one first if it has none. */
  phandle(node: FdtNode): number {
    const existing = node.getU32("phandle");
    if (existing !== undefined) return existing;
    let max = 0;
    this.walk((n) => {
      const p = n.getU32("phandle");
      if (p !== undefined && p > max) max = p;
    });
    const ph = max + 1;
    node.setU32("phandle", ph);
    return ph;
  }

  /** The node whose "phandle" (or legacy "linux,phandle") is `ph`. */
  byPhandle(ph: number): FdtNode | undefined {
    let hit: FdtNode | undefined;
    this.walk((n) => {
      if (!hit && (n.getU32("phandle") === ph || (!n.has("phandle") && n.getU32("linux,phandle") === ph))) hit = n;
    });
    return hit;
  }

  /** Visit every node, parents before children, in blob order. */
  walk(visit: (node: FdtNode) => void): void {
    const stack: FdtNode[] = [this.root];
    while (stack.length) {
      const n = stack.pop()!;
      visit(n);
      for (let i = n.children.length - 1; i >= 0; i--) stack.push(n.children[i]!);
    }
  }

  addReservation(address: number | bigint, size: number | bigint): void {
    this.reservations.push({ address: toU64(address, "reservation address"), size: toU64(size, "reservation size") });
  }

  /**
   * Serialize to a DTB. `padding` adds free space at the end (counted in totalsize) for
   * firmware that edits the tree in place.
   */
  toBlob(opts: { padding?: number } = {}): Uint8Array {
    const padding = opts.padding ?? 0;
    if (!Number.isInteger(padding) || padding < 0) throw new Error(`fdt: bad padding ${padding}`);

    // Strings block: each property name once.
    const strOffsets = new Map<string, number>();
    const strParts: Uint8Array[] = [];
    let strSize = 0;
    const nameOffset = (name: string): number => {
      let off = strOffsets.get(name);
      if (off === undefined) {
        off = strSize;
        const bytes = encoder.encode(`${name}\0`);
        strParts.push(bytes);
        strSize += bytes.length;
        strOffsets.set(name, off);
      }
      return off;
    };

    // Structure block.
    const st = new ByteSink();
    const emit = (node: FdtNode): void => {
      st.u32(FDT_BEGIN_NODE);
      st.bytes(encoder.encode(`${node.name}\0`));
      st.align4();
      for (const [name, value] of node.props) {
        st.u32(FDT_PROP);
        st.u32(value.length);
        st.u32(nameOffset(name));
        st.bytes(value);
        st.align4();
      }
      for (const c of node.children) emit(c);
      st.u32(FDT_END_NODE);
    };
    emit(this.root);
    st.u32(FDT_END);
    const struct = st.finish();

    const offRsv = HEADER_SIZE; // 8-aligned, as the spec requires
    const rsvSize = (this.reservations.length + 1) * 16;
    const offStruct = offRsv + rsvSize;
    const offStrings = offStruct + struct.length;
    const total = offStrings + strSize + padding;

    const out = new Uint8Array(total);
    const dv = new DataView(out.buffer);
    const header = [FDT_MAGIC, total, offStruct, offStrings, offRsv, VERSION, LAST_COMP_VERSION, this.bootCpuidPhys >>> 0, strSize, struct.length];
    header.forEach((v, i) => dv.setUint32(i * 4, v));
    this.reservations.forEach((r, i) => {
      dv.setBigUint64(offRsv + i * 16, r.address);
      dv.setBigUint64(offRsv + i * 16 + 8, r.size);
    });
    out.set(struct, offStruct);
    let p = offStrings;
    for (const part of strParts) {
      out.set(part, p);
      p += part.length;
    }
    return out;
  }
}

/** Growable big-endian byte buffer for the structure block. */
class ByteSink {
  private buf = new Uint8Array(1024);
  private len = 0;

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  u32(v: number): void {
    this.reserve(4);
    new DataView(this.buf.buffer).setUint32(this.len, v >>> 0);
    this.len += 4;
  }

  bytes(b: Uint8Array): void {
    this.reserve(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }

  align4(): void {
    const pad = (4 - (this.len & 3)) & 3;
    this.reserve(pad);
    this.buf.fill(0, this.len, this.len + pad);
    this.len += pad;
  }

  finish(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

// Node and property names in the messages come from the blob.
function fail(msg: string): never {
  throw new Error(`invalid DTB: ${printable(msg)}`);
}

function hex(v: number): string {
  return `0x${v.toString(16)}`;
}

/**
 * Parse and validate a DTB (versions 16 and 17). Every offset and length is checked against
 * the blob before use; anything malformed throws an Error whose one-line message starts
 * with "invalid DTB:".
 */
export function parseFdt(blob: Uint8Array): DeviceTree {
  if (blob.length < HEADER_SIZE) fail(`truncated: ${blob.length} bytes, the header alone needs ${HEADER_SIZE}`);
  const dv = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  const magic = dv.getUint32(0);
  if (magic !== FDT_MAGIC) fail(`bad magic ${hex(magic)} (expected ${hex(FDT_MAGIC)})`);
  const totalsize = dv.getUint32(4);
  const offStruct = dv.getUint32(8);
  const offStrings = dv.getUint32(12);
  const offRsv = dv.getUint32(16);
  const version = dv.getUint32(20);
  const lastComp = dv.getUint32(24);
  const bootCpuid = dv.getUint32(28);
  const sizeStrings = dv.getUint32(32);
  if (version < 16) fail(`unsupported version ${version} (need 16 or later)`);
  if (lastComp > VERSION) fail(`last compatible version ${lastComp} is newer than ${VERSION}`);
  if (totalsize < HEADER_SIZE) fail(`totalsize ${totalsize} is smaller than the header`);
  if (totalsize > blob.length) fail(`truncated: totalsize ${totalsize} exceeds the ${blob.length} bytes given`);
  // Version 16 headers lack size_dt_struct: the block may then extend to the end.
  const sizeStruct = version >= 17 ? dv.getUint32(36) : totalsize - Math.min(offStruct, totalsize);

  const inside = (what: string, off: number, size: number): void => {
    if (off < HEADER_SIZE || off > totalsize || size > totalsize - off) {
      fail(`${what} (offset ${hex(off)}, size ${size}) lies outside the blob (totalsize ${totalsize})`);
    }
  };
  inside("structure block", offStruct, sizeStruct);
  inside("strings block", offStrings, sizeStrings);
  inside("memory reservation block", offRsv, 16);
  if (offStruct % 4 !== 0) fail(`structure block offset ${hex(offStruct)} is not 4-byte aligned`);
  if (offRsv % 8 !== 0) fail(`memory reservation block offset ${hex(offRsv)} is not 8-byte aligned`);
  if (version >= 17 && offStruct < offStrings + sizeStrings && offStrings < offStruct + sizeStruct) {
    fail("structure and strings blocks overlap");
  }

  const tree = new DeviceTree();
  tree.bootCpuidPhys = bootCpuid;

  // Memory reservations: 16-byte entries up to an all-zero terminator.
  for (let p = offRsv; ; p += 16) {
    if (p + 16 > totalsize) fail("memory reservation block has no terminating entry");
    const address = dv.getBigUint64(p);
    const size = dv.getBigUint64(p + 8);
    if (address === 0n && size === 0n) break;
    tree.reservations.push({ address, size });
  }

  const stringAt = (nameoff: number): string => {
    if (nameoff >= sizeStrings) fail(`property name offset ${nameoff} is outside the strings block (size ${sizeStrings})`);
    const start = offStrings + nameoff;
    const end = blob.indexOf(0, start);
    if (end < 0 || end >= offStrings + sizeStrings) fail(`unterminated string at strings offset ${nameoff}`);
    return decoder.decode(blob.subarray(start, end));
  };

  // Structure block: a token stream, walked iteratively with an explicit stack.
  const end = offStruct + sizeStruct;
  const stack: FdtNode[] = [];
  const hadChild: boolean[] = [];
  let rootDone = false;
  let p = offStruct;
  const rel = (q: number): string => hex(q - offStruct);
  const u32At = (q: number, what: string): number => {
    if (q + 4 > end) fail(`structure block ends inside ${what} at struct offset ${rel(q)}`);
    return dv.getUint32(q);
  };

  for (;;) {
    const tokPos = p;
    const tok = u32At(p, "a token (no FDT_END)");
    p += 4;
    switch (tok) {
      case FDT_BEGIN_NODE: {
        const nul = blob.indexOf(0, p);
        if (nul < 0 || nul >= end) fail(`unterminated node name at struct offset ${rel(p)}`);
        const name = decoder.decode(blob.subarray(p, nul));
        p = (nul + 4) & ~3;
        if (p > end) fail(`node name padding runs past the structure block at struct offset ${rel(nul)}`);
        let node: FdtNode;
        if (stack.length === 0) {
          if (rootDone) fail(`second root node at struct offset ${rel(tokPos)}`);
          if (name !== "") fail(`root node has name ${JSON.stringify(name)}, expected an empty name`);
          node = tree.root;
        } else {
          const parent = stack[stack.length - 1]!;
          if (name === "") fail(`empty node name under ${parent.path()} at struct offset ${rel(tokPos)}`);
          if (parent.child(name)) fail(`duplicate node ${name} under ${parent.path()}`);
          node = parent.addNode(name);
          hadChild[hadChild.length - 1] = true;
        }
        stack.push(node);
        hadChild.push(false);
        break;
      }
      case FDT_END_NODE:
        if (stack.length === 0) fail(`FDT_END_NODE without an open node at struct offset ${rel(tokPos)}`);
        stack.pop();
        hadChild.pop();
        if (stack.length === 0) rootDone = true;
        break;
      case FDT_PROP: {
        const len = u32At(p, "a property header");
        const nameoff = u32At(p + 4, "a property header");
        p += 8;
        if (stack.length === 0) fail(`property outside any node at struct offset ${rel(tokPos)}`);
        if (len > end - p) fail(`property value (${len} bytes) runs past the structure block at struct offset ${rel(tokPos)}`);
        const node = stack[stack.length - 1]!;
        const name = stringAt(nameoff);
        if (name === "") fail(`empty property name in ${node.path()}`);
        if (hadChild[hadChild.length - 1]) fail(`property ${name} follows a subnode in ${node.path()}`);
        if (node.has(name)) fail(`duplicate property ${name} in ${node.path()}`);
        node.props.set(name, blob.slice(p, p + len));
        p = (p + len + 3) & ~3;
        if (p > end) fail(`property padding runs past the structure block in ${node.path()}`);
        break;
      }
      case FDT_NOP:
        break;
      case FDT_END:
        if (stack.length !== 0) fail(`FDT_END inside node ${stack[stack.length - 1]!.path()}`);
        if (!rootDone) fail("structure block has no root node");
        return tree;
      default:
        fail(`bad token ${hex(tok)} at struct offset ${rel(tokPos)}`);
    }
  }
}
