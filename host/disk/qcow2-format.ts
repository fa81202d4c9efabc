// The qcow2 header: reading it (every field checked, since an image is untrusted input) and
// writing a new image. Written from QEMU's format description (docs/interop/qcow2.txt); the
// tables it points to are handled in qcow2.ts.
import { readPadded, type ByteFile } from "./byte-file";
import { firstControl } from "../util/text";

/** "QFI\xfb": what makes a file qcow2 when its format is probed. */
export const QCOW2_MAGIC = Uint8Array.of(0x51, 0x46, 0x49, 0xfb);

export const MIN_CLUSTER_BITS = 9; // 512 B
export const MAX_CLUSTER_BITS = 21; // 2 MiB, QEMU's limit too
export const DEFAULT_CLUSTER_SIZE = 65536;
/** QEMU's limits: larger tables are refused, so a header cannot make us allocate gigabytes. */
export const MAX_L1_BYTES = 32 << 20;
export const MAX_REFCOUNT_TABLE_BYTES = 8 << 20;
export const MAX_BACKING_NAME = 1023;
const MAX_BACKING_FORMAT = 15;
const MAX_SNAPSHOTS = 65536;

const V2_HEADER_LENGTH = 72;
const V3_MIN_HEADER_LENGTH = 104;
/** What we write: v3 with the compression type field (zlib) and its padding, as QEMU does. */
const V3_HEADER_LENGTH = 112;

export const EXT_END = 0;
export const EXT_BACKING_FORMAT = 0xe2792aca;
export const EXT_FEATURE_NAMES = 0x6803f857;

export const INCOMPAT_DIRTY = 1n << 0n;
export const INCOMPAT_CORRUPT = 1n << 1n;
export const INCOMPAT_DATA_FILE = 1n << 2n;
export const INCOMPAT_COMPRESSION = 1n << 3n;
export const INCOMPAT_EXTENDED_L2 = 1n << 4n;
export const AUTOCLEAR_BITMAPS = 1n << 0n;
const KNOWN_INCOMPAT = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTENDED_L2;

/** Byte offsets of the header fields we rewrite in place. */
export const HDR_REFCOUNT_TABLE = 48; // offset (8) then clusters (4)
export const HDR_AUTOCLEAR = 88;

export interface Qcow2Header {
  version: 2 | 3;
  clusterBits: number;
  /** Virtual disk size in bytes. */
  size: number;
  l1Size: number;
  l1Offset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  snapshots: number;
  snapshotsOffset: number;
  incompatible: bigint;
  autoclear: bigint;
  /** log2 of the refcount width in bits (4: 16-bit). */
  refcountOrder: number;
  /** Where the header and its extensions end (the backing file name may follow). */
  headerLength: number;
  backingFile?: string;
  backingFormat?: string;
}

/** Fails with the image's label and the problem. */
export type Fail = (problem: string) => never;

const hex = (n: number | bigint) => `0x${n.toString(16)}`;

function u64(view: DataView, at: number, field: string, fail: Fail): number {
  const v = view.getBigUint64(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`${field} ${hex(v)} is out of range`);
  return Number(v);
}

/**
 * Read and check the header of a qcow2 image: every field an implementation must not trust
 * (sizes, offsets, feature bits) is checked here or where its table is read (qcow2.ts).
 */
export function readQcow2Header(file: ByteFile, fail: Fail): Qcow2Header {
  const fileSize = file.size();
  if (fileSize < V2_HEADER_LENGTH) fail(`truncated: ${fileSize} bytes, shorter than a qcow2 header`);
  const first = new Uint8Array(V2_HEADER_LENGTH);
  readPadded(file, 0, first);
  if (!QCOW2_MAGIC.every((b, i) => first[i] === b)) fail("not a qcow2 image (no QFI\\xfb magic)");
  const fixed = new DataView(first.buffer);
  const version = fixed.getUint32(4);
  if (version !== 2 && version !== 3) fail(`qcow2 version ${version} is not supported (2 and 3 are)`);
  const clusterBits = fixed.getUint32(20);
  if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
    fail(`cluster_bits ${clusterBits} is out of range: clusters must be 512 B to 2 MiB (cluster_bits ${MIN_CLUSTER_BITS} to ${MAX_CLUSTER_BITS})`);
  }
  const clusterSize = 2 ** clusterBits;
  // The header, its extensions and the backing file name all live in the first cluster.
  const cluster = new Uint8Array(clusterSize);
  readPadded(file, 0, cluster);
  const view = new DataView(cluster.buffer);

  let headerLength = V2_HEADER_LENGTH;
  let incompatible = 0n;
  let autoclear = 0n;
  let refcountOrder = 4;
  let compressionType = 0;
  if (version === 3) {
    if (fileSize < V3_MIN_HEADER_LENGTH) fail(`truncated: ${fileSize} bytes, shorter than a version 3 header`);
    headerLength = view.getUint32(100);
    if (headerLength < V3_MIN_HEADER_LENGTH || headerLength % 8 !== 0 || headerLength > clusterSize) {
      fail(`header_length ${headerLength} is invalid (a multiple of 8 from ${V3_MIN_HEADER_LENGTH} to the cluster size)`);
    }
    incompatible = view.getBigUint64(72);
    autoclear = view.getBigUint64(88);
    refcountOrder = view.getUint32(96);
    if (refcountOrder > 6) fail(`refcount_order ${refcountOrder} is out of range (0 to 6: 1- to 64-bit refcounts)`);
    if (headerLength > 104) compressionType = cluster[104];
  }

  // Extensions follow the header, up to the backing file name or the end of the cluster.
  const backingOffset = u64(view, 8, "backing_file_offset", fail);
  const backingSize = view.getUint32(16);
  const extEnd = Math.min(clusterSize, backingOffset > 0 ? backingOffset : clusterSize, fileSize);
  const featureNames = new Map<number, string>();
  let backingFormat: string | undefined;
  const seen = new Set<number>();
  for (let at = headerLength; at + 8 <= extEnd;) {
    const type = view.getUint32(at);
    const len = view.getUint32(at + 4);
    if (type === EXT_END) break;
    const data = at + 8;
    if (len > extEnd - data) fail(`header extension ${hex(type)} of ${len} bytes runs past the header area (${extEnd} bytes)`);
    if (type === EXT_BACKING_FORMAT || type === EXT_FEATURE_NAMES) {
      if (seen.has(type)) fail(`header extension ${hex(type)} appears twice`);
      seen.add(type);
    }
    if (type === EXT_BACKING_FORMAT) {
      if (len > MAX_BACKING_FORMAT) fail(`the backing format name is ${len} bytes long (at most ${MAX_BACKING_FORMAT})`);
      backingFormat = text(cluster.subarray(data, data + len), "backing format name", fail);
    } else if (type === EXT_FEATURE_NAMES) {
      for (let e = data; e + 48 <= data + len; e += 48) {
        if (cluster[e] !== 0) continue; // only incompatible features' names are ever shown
        const raw = cluster.subarray(e + 2, e + 48);
        const end = raw.indexOf(0);
        featureNames.set(cluster[e + 1], new TextDecoder().decode(end < 0 ? raw : raw.subarray(0, end)));
      }
    }
    // Padded to a multiple of 8.
    at = data + Math.ceil(len / 8) * 8;
  }

  const unknown = incompatible & ~KNOWN_INCOMPAT;
  if (unknown !== 0n) {
    const bits = [...Array(64).keys()].filter((b) => (unknown >> BigInt(b)) & 1n);
    const named = bits.map((b) => (featureNames.has(b) ? `${b} (${featureNames.get(b)})` : `${b}`));
    fail(`uses incompatible feature bit${bits.length > 1 ? "s" : ""} ${named.join(", ")} that wasmvisor does not know; it cannot be opened safely`);
  }
  if (incompatible & INCOMPAT_DATA_FILE) fail("keeps its data in an external data file, which wasmvisor does not support; convert it with qemu-img convert -O qcow2");
  if (incompatible & INCOMPAT_EXTENDED_L2) fail("uses extended L2 entries (subclusters), which wasmvisor does not support; convert it with qemu-img convert -O qcow2");
  if (incompatible & INCOMPAT_COMPRESSION) {
    if (compressionType === 0) fail("has the compression type bit set but names no compression type");
    fail(`compresses with ${compressionType === 1 ? "zstd" : `compression type ${compressionType}`}; wasmvisor reads only zlib (deflate) compressed clusters: convert it with qemu-img convert -O qcow2`);
  } else if (compressionType !== 0) {
    fail(`names compression type ${compressionType} without the compression type feature bit`);
  }
  const cryptMethod = view.getUint32(32);
  if (cryptMethod !== 0) {
    fail(`is encrypted (${cryptMethod === 1 ? "AES" : cryptMethod === 2 ? "LUKS" : `method ${cryptMethod}`}); wasmvisor does not open encrypted images: decrypt it with qemu-img convert`);
  }

  const header: Qcow2Header = {
    version,
    clusterBits,
    size: u64(view, 24, "virtual size", fail),
    l1Size: view.getUint32(36),
    l1Offset: u64(view, 40, "l1_table_offset", fail),
    refcountTableOffset: u64(view, 48, "refcount_table_offset", fail),
    refcountTableClusters: view.getUint32(56),
    snapshots: view.getUint32(60),
    snapshotsOffset: u64(view, 64, "snapshots_offset", fail),
    incompatible,
    autoclear,
    refcountOrder,
    headerLength,
    ...(backingFormat !== undefined ? { backingFormat } : {}),
  };
  if (header.snapshots > MAX_SNAPSHOTS) fail(`claims ${header.snapshots} internal snapshots (at most ${MAX_SNAPSHOTS})`);
  if (backingOffset > 0) {
    if (backingSize === 0) fail("names a backing file of length 0");
    if (backingSize > MAX_BACKING_NAME) fail(`backing file name is ${backingSize} bytes long (at most ${MAX_BACKING_NAME})`);
    if (backingOffset < headerLength || backingOffset + backingSize > clusterSize || backingOffset + backingSize > fileSize) {
      fail(`backing file name at ${backingOffset} (${backingSize} bytes) lies outside the header cluster`);
    }
    header.backingFile = text(cluster.subarray(backingOffset, backingOffset + backingSize), "backing file name", fail);
  }
  return header;
}

// Names from the image go into paths and messages: no control characters (a newline or an escape
// sequence would break a message's line or drive the terminal it is printed on).
function text(bytes: Uint8Array, what: string, fail: Fail): string {
  if (bytes.includes(0)) fail(`${what} contains a NUL byte`);
  let s: string;
  try {
    s = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return fail(`${what} is not valid UTF-8`);
  }
  const c = firstControl(s);
  if (c) fail(`${what} contains the control character ${c}`);
  return s;
}

export interface Qcow2CreateOptions {
  /** Virtual size in bytes: a positive multiple of 512. */
  size: number;
  /** A power of two from 512 B to 2 MiB; default 64 KiB. */
  clusterSize?: number;
  /**
   * The image reads through to this file where it has no data. `name` is stored as given: a
   * relative name is found relative to the new image's directory (as QEMU does).
   */
  backing?: { name: string; format: "raw" | "qcow2" };
  /** Make the new image durable before returning (default). See CreateDiskImageOptions.sync for when it need not be. */
  sync?: boolean;
}

/**
 * Lay out a new, empty version 3 image (16-bit refcounts) in `file`, which must be empty: the
 * header cluster (with the backing file's format and name), the refcount table and blocks
 * covering the metadata, and an L1 table large enough for the virtual size.
 */
export function writeNewQcow2(file: ByteFile, opts: Qcow2CreateOptions): void {
  const clusterSize = opts.clusterSize ?? DEFAULT_CLUSTER_SIZE;
  const clusterBits = Math.log2(clusterSize);
  if (!Number.isInteger(clusterBits) || clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
    throw new Error(`qcow2 cluster size ${clusterSize} must be a power of two from 512 B to 2 MiB`);
  }
  if (!Number.isSafeInteger(opts.size) || opts.size <= 0 || opts.size % 512 !== 0) {
    throw new Error(`qcow2 virtual size ${opts.size} must be a positive multiple of 512`);
  }
  const backingName = opts.backing ? new TextEncoder().encode(opts.backing.name) : null;
  const backingFormat = opts.backing ? new TextEncoder().encode(opts.backing.format) : null;
  if (backingName && (backingName.length === 0 || backingName.length > MAX_BACKING_NAME || backingName.includes(0))) {
    throw new Error(`qcow2 backing file name must be 1 to ${MAX_BACKING_NAME} bytes without NUL`);
  }
  const l2Entries = clusterSize / 8;
  const l1Size = Math.ceil(Math.ceil(opts.size / clusterSize) / l2Entries);
  if (l1Size * 8 > MAX_L1_BYTES) throw new Error(`qcow2 virtual size ${opts.size} needs an L1 table over ${MAX_L1_BYTES >> 20} MiB: use larger clusters`);
  const l1Clusters = Math.max(1, Math.ceil((l1Size * 8) / clusterSize));
  const refcountsPerBlock = clusterSize / 2;
  // The refcount blocks cover every metadata cluster, themselves and the table included.
  let blocks = 1;
  let tableClusters = 1;
  for (;;) {
    const metadata = 1 + tableClusters + blocks + l1Clusters;
    const needBlocks = Math.ceil(metadata / refcountsPerBlock);
    const needTable = Math.ceil((needBlocks * 8) / clusterSize);
    if (needBlocks === blocks && needTable === tableClusters) break;
    blocks = needBlocks;
    tableClusters = needTable;
  }
  const tableAt = 1;
  const blocksAt = tableAt + tableClusters;
  const l1At = blocksAt + blocks;
  const total = l1At + l1Clusters;

  // Header cluster: header, backing format extension, end of extensions, backing file name.
  const head = new Uint8Array(clusterSize);
  const h = new DataView(head.buffer);
  head.set(QCOW2_MAGIC, 0);
  h.setUint32(4, 3);
  h.setUint32(20, clusterBits);
  h.setBigUint64(24, BigInt(opts.size));
  h.setUint32(36, l1Size);
  h.setBigUint64(40, BigInt(l1At * clusterSize));
  h.setBigUint64(48, BigInt(tableAt * clusterSize));
  h.setUint32(56, tableClusters);
  h.setUint32(96, 4);
  h.setUint32(100, V3_HEADER_LENGTH);
  let at = V3_HEADER_LENGTH;
  if (backingFormat) {
    h.setUint32(at, EXT_BACKING_FORMAT);
    h.setUint32(at + 4, backingFormat.length);
    head.set(backingFormat, at + 8);
    at += 8 + Math.ceil(backingFormat.length / 8) * 8;
  }
  at += 8; // EXT_END: type and length zero
  if (backingName) {
    if (at + backingName.length > clusterSize) throw new Error(`qcow2 backing file name of ${backingName.length} bytes does not fit in a ${clusterSize}-byte header cluster: use larger clusters`);
    h.setBigUint64(8, BigInt(at));
    h.setUint32(16, backingName.length);
    head.set(backingName, at);
  }

  const table = new Uint8Array(tableClusters * clusterSize);
  const t = new DataView(table.buffer);
  for (let b = 0; b < blocks; b++) t.setBigUint64(b * 8, BigInt((blocksAt + b) * clusterSize));
  const refcounts = new Uint8Array(blocks * clusterSize);
  const r = new DataView(refcounts.buffer);
  for (let c = 0; c < total; c++) r.setUint16(c * 2, 1);

  if (file.size() !== 0) throw new Error("a new qcow2 image needs an empty file");
  // The L1 table reads as zeros: the file only needs to reach its end.
  file.truncate(total * clusterSize);
  file.write(tableAt * clusterSize, table);
  file.write(blocksAt * clusterSize, refcounts);
  file.write(0, head);
  if (opts.sync !== false) file.flush();
}
