// A file the page's server serves, read with positional reads over HTTP Range requests,
// synchronously (a pCPU worker's disk formats need the bytes at once; synchronous XMLHttpRequest
// is allowed in dedicated workers): aligned chunks fetched as the guest reads them, a bounded
// cache of them. A copy-on-write disk (a qcow2 overlay in /opfs/ over a served image) so
// downloads only what the guest reads.
import type { ByteFile } from "../../disk/byte-file";

/** Bytes fetched at a time: reads are widened to whole chunks. */
export const HTTP_CHUNK = 64 << 10;
/** Chunks kept, the least recently used dropped first (16 MiB). */
const CACHE_CHUNKS = 256;
/** How long one request may take. */
const REQUEST_TIMEOUT_MS = 30_000;
/** A read of more missing chunks in a row than this takes several requests; also the most read ahead. */
const MAX_RUN = 64;

/** Open `url` read-only; throws a one-line Error starting with `what` and the path if the server has no such file or does not take ranges. */
export function openHttpFile(url: string, what: string): ByteFile {
  return new HttpFile(url, what);
}

class HttpFile implements ByteFile {
  readonly identity: string;
  readonly readOnly = true;
  private readonly length: number;
  private readonly cache = new Map<number, Uint8Array>();
  private closed = false;
  /**
   * Reads that go on where the last one ended (a guest reading a file, a disk copied for a
   * migration) fetch chunks ahead as well, twice as many each time, up to MAX_RUN: a request
   * costs more than its bytes. A read elsewhere starts over.
   */
  private ahead = 0;
  private next = -1;
  /** What the server called this version of the file when it was opened (its ETag), if it said. */
  private etag: string | null = null;

  constructor(readonly name: string, private readonly what: string) {
    this.identity = `http:${new URL(name, location.href).href}`;
    const head = this.request("HEAD");
    const etag = head?.getResponseHeader("ETag") ?? null;
    this.etag = etag && !etag.startsWith("W/") ? etag : null; // a weak one does not promise the same bytes
    const sizeText = head?.getResponseHeader("Content-Length") ?? null;
    if (/^\s*none\s*$/i.test(head?.getResponseHeader("Accept-Ranges") ?? "")) throw this.noRanges();
    if (sizeText !== null && /^\d+$/.test(sizeText.trim())) {
      this.length = Number(sizeText);
    } else {
      // No HEAD, or no length in its answer (a compressed or chunked one): ask for one byte.
      this.length = -1;
      this.length = this.fetchRange(0, 1).total;
    }
  }

  private fail(why: string): Error {
    return new Error(`${this.what} ${this.name}: ${why}`);
  }

  private noRanges(): Error {
    return this.fail("the server does not take Range requests, and it must (a disk is read in parts as the guest uses it); serve it with a server that supports ranges");
  }

  /** The server's answer; undefined for a HEAD the server does not do (405, 501). */
  private request(method: "HEAD", range?: string): XMLHttpRequest | undefined;
  private request(method: "GET", range?: string): XMLHttpRequest;
  private request(method: "HEAD" | "GET", range?: string): XMLHttpRequest | undefined {
    const xhr = new XMLHttpRequest();
    try {
      xhr.open(method, this.name, false);
      if (method === "GET") xhr.responseType = "arraybuffer";
      if (range) xhr.setRequestHeader("Range", range);
      // Parts of one version of the file only: a server whose file changed sends it whole instead.
      if (range && this.etag) xhr.setRequestHeader("If-Range", this.etag);
      xhr.timeout = REQUEST_TIMEOUT_MS; // a server that stalls must not hang the pCPU for good
      xhr.send();
    } catch (e) {
      throw this.fail(`could not be fetched (${(e as Error).message}); is the server up?`);
    }
    if (method === "HEAD" && (xhr.status === 405 || xhr.status === 501)) return undefined;
    if (xhr.status === 404 || xhr.status === 410) throw this.fail(`the server has no such file (${xhr.status})`);
    if (xhr.status === 416) throw this.fail("the server refused a range inside the file (416): has the file changed on the server?");
    if (xhr.status < 200 || xhr.status > 299) throw this.fail(`the server answered ${xhr.status} ${xhr.statusText}`);
    return xhr;
  }

  /** Bytes [start, end) from the server, checked to be exactly those. */
  private fetchRange(start: number, end: number): { bytes: Uint8Array; total: number } {
    const xhr = this.request("GET", `bytes=${start}-${end - 1}`);
    if (xhr.status !== 206 && this.etag) throw this.fail("has changed on the server since it was opened (its ETag): a disk over it would mix the two versions; restart the VM (on a new overlay if the image changed for good)");
    if (xhr.status !== 206) throw this.noRanges();
    const m = /^\s*bytes\s+(\d+)-(\d+)\/(\d+)\s*$/i.exec(xhr.getResponseHeader("Content-Range") ?? "");
    const bytes = new Uint8Array(xhr.response as ArrayBuffer);
    if (!m || Number(m[1]) !== start || Number(m[2]) !== end - 1) {
      throw this.fail(`the server answered bytes ${start}-${end - 1} with Content-Range '${xhr.getResponseHeader("Content-Range") ?? ""}'; it must send the range asked for`);
    }
    const total = Number(m[3]);
    if (this.length >= 0 && total !== this.length) throw this.fail(`has changed on the server (${this.length} bytes when opened, ${total} now); reopen it`);
    if (bytes.length !== end - start) throw this.fail(`the server sent ${bytes.length} bytes for a range of ${end - start}`);
    return { bytes, total };
  }

  size(): number {
    return this.length;
  }

  read(offset: number, dst: Uint8Array): number {
    if (this.closed) throw this.fail("is closed");
    if (!Number.isSafeInteger(offset) || offset < 0) throw this.fail(`offset ${offset} is not a byte offset`);
    const end = Math.min(offset + dst.length, this.length);
    if (end <= offset) return 0;
    const first = Math.floor(offset / HTTP_CHUNK);
    const last = Math.floor((end - 1) / HTTP_CHUNK);
    const lastChunk = Math.floor((this.length - 1) / HTTP_CHUNK);
    const sequential = first === this.next || first === this.next - 1;
    this.next = last + 1;
    for (let c = first; c <= last;) {
      const cached = this.cache.get(c);
      if (cached) {
        this.cache.delete(c); // to the back of the queue: used most recently
        this.cache.set(c, cached);
        this.copy(c, cached, offset, end, dst);
        c++;
        continue;
      }
      // The missing chunks from here on come in one request, with those ahead if reads go forward.
      this.ahead = sequential ? Math.min(MAX_RUN, Math.max(1, this.ahead * 2)) : 0;
      const upTo = Math.min(lastChunk, last + this.ahead);
      let run = 1;
      while (c + run <= upTo && run < MAX_RUN && !this.cache.has(c + run)) run++;
      const start = c * HTTP_CHUNK;
      const { bytes } = this.fetchRange(start, Math.min((c + run) * HTTP_CHUNK, this.length));
      for (let i = 0; i < run; i++) {
        const chunk = bytes.subarray(i * HTTP_CHUNK, (i + 1) * HTTP_CHUNK);
        if (c + i <= last) this.copy(c + i, chunk, offset, end, dst);
        this.remember(c + i, run > 1 ? chunk.slice() : chunk); // a copy: a chunk must not hold its whole run
      }
      c += run;
    }
    return end - offset;
  }

  /** The part of chunk `c` inside [offset, end) into `dst`. */
  private copy(c: number, chunk: Uint8Array, offset: number, end: number, dst: Uint8Array): void {
    const at = c * HTTP_CHUNK;
    const from = Math.max(offset, at), to = Math.min(end, at + chunk.length);
    dst.set(chunk.subarray(from - at, to - at), from - offset);
  }

  private remember(c: number, chunk: Uint8Array): void {
    if (this.cache.size >= CACHE_CHUNKS) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(c, chunk);
  }

  private readOnlyError(): Error {
    return this.fail("is served over HTTP, so it can only be read; give the VM a copy-on-write overlay in /opfs/");
  }

  write(): void {
    throw this.readOnlyError();
  }

  truncate(): void {
    throw this.readOnlyError();
  }

  flush(): void {}

  close(): void {
    this.closed = true;
    this.cache.clear();
  }
}
