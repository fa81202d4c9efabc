/** Random 32 bits, from the platform's CSPRNG: initial sequence numbers, DNS ids, ports. */
export function random32(): number {
  return globalThis.crypto.getRandomValues(new Uint32Array(1))[0];
}
