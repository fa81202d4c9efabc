// Raw DEFLATE (fflate) for snapshots, migration streams and qcow2's compressed clusters. fflate
// builds its code tables as it loads (10-15 ms of the start of every thread that bundles it):
// loaded at its first use instead, which a boot without snapshots never makes.
import type * as Fflate from "fflate";

let lib: typeof Fflate | null = null;
// A bundled require(): esbuild initializes the module when this first runs.
const fflate = (): typeof Fflate => (lib ??= require("fflate") as typeof Fflate);

export function deflateSync(data: Uint8Array, opts: Fflate.DeflateOptions): Uint8Array<ArrayBuffer> {
  return fflate().deflateSync(data, opts);
}

/** Inflate `data` into `opts.out` (its length the most expected): the bytes written, a view of it. */
export function inflateSync(data: Uint8Array, opts: { out: Uint8Array }): Uint8Array {
  return fflate().inflateSync(data, opts);
}
