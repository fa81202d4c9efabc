// A raw RISC-V image that runs until it is stopped, `1: addi a0, a0, 1; j 1b` (boot it with
// --bios none, or `bios: "none"`): a guest that is always busy, in one page.
export const BUSY_LOOP = new Uint8Array(Uint32Array.of(0x00150513, 0xffdff06f).buffer);
