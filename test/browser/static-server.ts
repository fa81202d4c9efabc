// A small static HTTP server for the browser tests: a directory (dist/web/) and files given in
// memory, served cross-origin isolated (COOP/COEP, so pages get SharedArrayBuffer) with single
// byte-range support, never cached, every request recorded so a test can see what was fetched.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, normalize } from "node:path";
import type { AddressInfo } from "node:net";
import { parseRange } from "../../host/cli/web";

export interface ServedRequest { method: string; path: string; range?: string }

export interface StaticServer {
  /** http://127.0.0.1:port */
  readonly url: string;
  /** Every request so far, oldest first (clear it with `requests.length = 0`). */
  readonly requests: ServedRequest[];
  close(): Promise<void>;
}

export interface StaticServerOptions {
  /** A directory served at "/". */
  root?: string;
  /** Files served from memory, by path ("/test/index.html"); they win over `root`. */
  files?: Record<string, Uint8Array | string>;
  /** Paths answered whole, their Range headers ignored (a server without range support). */
  ignoreRange?: string[];
}

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
  ".json": "application/json", ".map": "application/json", ".wasm": "application/wasm",
};

export async function startStaticServer(opts: StaticServerOptions): Promise<StaticServer> {
  const requests: ServedRequest[] = [];
  const find = async (path: string): Promise<Uint8Array | undefined> => {
    const mem = opts.files?.[path];
    if (mem !== undefined) return typeof mem === "string" ? new TextEncoder().encode(mem) : mem;
    if (!opts.root) return undefined;
    const rel = normalize(decodeURIComponent(path)).replace(/^(\.\.[/\\])+/, "");
    try {
      return await readFile(join(opts.root, rel));
    } catch {
      return undefined;
    }
  };
  const serve = async (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    const range = req.headers.range;
    requests.push({ method: req.method ?? "", path, ...(range ? { range } : {}) });
    res.setHeader("Cross-Origin-Opener-Policy", "same-origin");
    res.setHeader("Cross-Origin-Embedder-Policy", "require-corp");
    res.setHeader("Cross-Origin-Resource-Policy", "same-origin");
    res.setHeader("Cache-Control", "no-store");
    const body = await find(path);
    if (!body) {
      res.writeHead(404).end();
      return;
    }
    res.setHeader("Content-Type", TYPES[extname(path)] ?? "application/octet-stream");
    const ranged = !opts.ignoreRange?.includes(path);
    if (ranged) res.setHeader("Accept-Ranges", "bytes");
    let [start, end, status] = [0, body.length, 200];
    // The range as `wasmvisor web` reads it (one parser for both servers).
    const r = ranged && range ? parseRange(range, body.length) : null;
    if (r === "unsatisfiable") {
      res.writeHead(416, { "Content-Range": `bytes */${body.length}` }).end();
      return;
    }
    if (r) {
      [start, end, status] = [r.start, r.end + 1, 206];
      res.setHeader("Content-Range", `bytes ${start}-${end - 1}/${body.length}`);
    }
    res.setHeader("Content-Length", end - start);
    res.writeHead(status);
    res.end(req.method === "HEAD" ? undefined : body.subarray(start, end));
  };
  const server = createServer((req, res) => {
    serve(req, res).catch((e) => res.writeHead(500).end(String(e)));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
