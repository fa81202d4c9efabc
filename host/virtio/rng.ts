/**
 * virtio-rng, the entropy device (spec 5.4): fills each device-writable buffer of the request
 * queue from a random source.
 */
import type { DeviceState } from "../devices/device";
import { copyToBuffers } from "./queue";
import { StateReader } from "../devices/state";
import { DEVICE_ID_ENTROPY, type FeatureWords, type VirtioDevice, type VirtioHost } from "./types";

/** Fills `buf` with random bytes. Called with at most 65536 bytes (the Web Crypto limit). */
export type RandomSource = (buf: Uint8Array) => void;

const CHUNK = 65536;
const KIND = "virtio-rng";
const VERSION = 1;

const defaultSource: RandomSource = (buf) => {
  globalThis.crypto.getRandomValues(buf);
};

export interface VirtioRngOptions {
  /** Random source (default `globalThis.crypto.getRandomValues`). */
  source?: RandomSource;
  /** QueueNumMax (power of two, default 64). */
  queueSize?: number;
  /** Most bytes given per request; the driver reads the used length (default 65536). */
  maxPerRequest?: number;
}

export class VirtioRng implements VirtioDevice {
  readonly name = "rng";
  readonly deviceId = DEVICE_ID_ENTROPY;
  readonly features: FeatureWords = [0, 0];
  readonly configSize = 0;
  readonly queueMaxSizes: readonly number[];

  private host: VirtioHost | null = null;
  private readonly source: RandomSource;
  private readonly maxPerRequest: number;
  /** Not guest memory: guest RAM may be a SharedArrayBuffer, which getRandomValues refuses. */
  private readonly scratch = new Uint8Array(CHUNK);

  constructor(opts: VirtioRngOptions = {}) {
    this.source = opts.source ?? defaultSource;
    const qs = opts.queueSize ?? 64;
    if (!Number.isInteger(qs) || qs < 1 || qs > 32768 || (qs & (qs - 1)) !== 0) {
      throw new Error(`virtio-rng: queueSize ${qs} must be a power of two up to 32768`);
    }
    this.queueMaxSizes = [qs];
    const max = opts.maxPerRequest ?? CHUNK;
    if (!Number.isInteger(max) || max < 1) throw new Error(`virtio-rng: maxPerRequest ${max} must be a positive integer`);
    this.maxPerRequest = max;
  }

  attach(host: VirtioHost): void {
    this.host = host;
  }

  readConfig(): number {
    return 0;
  }

  writeConfig(): void {}

  reset(): void {}

  queueNotify(index: number): void {
    const host = this.host;
    const q = index === 0 ? host?.queue(0) : null;
    if (!host || !q) return;
    let done = 0;
    for (let c = q.pop(); c !== null; c = q.pop()) {
      const total = Math.min(c.writableBytes, this.maxPerRequest);
      for (let at = 0; at < total; at += CHUNK) {
        const piece = this.scratch.subarray(0, Math.min(CHUNK, total - at));
        this.source(piece);
        copyToBuffers(c.writable, at, piece);
      }
      q.push(c.head, total);
      done++;
    }
    if (done > 0) host.usedAdded(0);
  }

  save(): DeviceState {
    return { kind: KIND, version: VERSION }; // nothing else: requests complete as they come
  }

  restore(state: unknown): void {
    StateReader.open(state, KIND, KIND, VERSION);
  }
}
