/** Type declarations for build.mjs (bare-metal test programs and benchmarks). */
export interface BuildBaremetalOptions {
  /** Progress messages. */
  log?: (msg: string) => void;
  /** Extra -D values per program name, e.g. { 'bench-int': { ITERS: 10 } }. */
  defines?: Record<string, Record<string, string | number | boolean>>;
}
export interface BaremetalBuild {
  /** Cache directory holding the ELFs (and .dis disassemblies). */
  dir: string;
  /** Program name -> path of its HTIF ELF. */
  programs: Record<string, string>;
  /** Program name -> path of the QEMU -M virt validation flavour (UART + test finisher). */
  virtPrograms: Record<string, string>;
}
export const PROGRAM_NAMES: string[];
export const HARNESS_PROGRAMS: string[];
export function buildBaremetal(options?: BuildBaremetalOptions): Promise<BaremetalBuild>;
