// Test harness: re-exports the FPU and gives the host access to the flag accumulator.
import * as fpu from "../../assembly/fpu";
export * from "../../assembly/fpu";

export function getFlags(): u32 {
  return fpu.fpFlags;
}
export function clearFlags(): void {
  fpu.fpFlags = 0;
}
