// Node's networking, crypto and zlib modules, loaded at their first use rather than when the importing
// module loads. Every command and every pCPU thread loads the whole bundle, and a worker thread
// compiles each built-in it imports anew: net, tls, crypto, dgram and dns took 8-10 ms of a pCPU
// thread's start (docs/PERFORMANCE.md), for a guest that may never open a socket or migrate.
import { createRequire } from "node:module";
import type * as Crypto from "node:crypto";
import type * as Dgram from "node:dgram";
import type * as Dns from "node:dns";
import type * as Http from "node:http";
import type * as Net from "node:net";
import type * as Tls from "node:tls";
import type * as Zlib from "node:zlib";

const load = createRequire(import.meta.url);

function lazy<T>(name: string): () => T {
  let m: T | undefined;
  return () => (m ??= load(name) as T);
}

export const crypto = lazy<typeof Crypto>("node:crypto");
export const dgram = lazy<typeof Dgram>("node:dgram");
export const dns = lazy<typeof Dns>("node:dns");
export const http = lazy<typeof Http>("node:http");
export const net = lazy<typeof Net>("node:net");
export const tls = lazy<typeof Tls>("node:tls");
export const zlib = lazy<typeof Zlib>("node:zlib");
