// CONTRACT (helper fills in): a file the page's server serves, read with positional reads over
// HTTP Range requests, synchronously (a pCPU worker's disk formats need the bytes at once):
// aligned chunks fetched as the guest reads them, a bounded cache of them.
import type { ByteFile } from "../../disk/byte-file";

/** Open `url` read-only; throws a one-line Error starting with `what` and the path if the server has no such file or does not take ranges. */
export function openHttpFile(url: string, what: string): ByteFile { throw new Error(`TODO ${url} ${what}`); }
