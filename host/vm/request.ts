// From what a user asked for (boot flags, or a VM definition's same fields) to a MachineRequest:
// the firmware each mode defaults to, images read and checked, drives that exist. Errors are
// one line that names the flag and says what to do.
import { readFileSync, existsSync, statSync } from "node:fs";
import type { BootOptions } from "../cli/args";
import type { Image } from "../machine/virt";
import type { MachineRequest } from "./build";

export const DEFAULT_BIOS = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin";

export class RequestError extends Error {}

// Images are read into shared memory and kept while some VM holds them: a hundred VMs booting
// the same kernel share one copy, also across the worker threads they are sent to.
const images = new Map<string, WeakRef<Uint8Array>>();

export function readImage(flag: string, path: string): Image {
  if (!existsSync(path)) throw new RequestError(`${flag} ${path}: no such file`);
  const st = statSync(path);
  if (st.isDirectory()) throw new RequestError(`${flag} ${path}: is a directory, not an image file`);
  const key = `${path}\0${st.size}\0${st.mtimeMs}`;
  const cached = images.get(key)?.deref();
  if (cached) return { name: path, bytes: cached };
  try {
    const data = readFileSync(path);
    const bytes = new Uint8Array(new SharedArrayBuffer(data.length));
    bytes.set(data);
    images.set(key, new WeakRef(bytes));
    return { name: path, bytes };
  } catch (e) {
    throw new RequestError(`${flag} ${path}: cannot read (${(e as Error).message})`);
  }
}

/** The machine the options describe, with its images loaded. */
export function machineRequest(opts: BootOptions): MachineRequest {
  let bios: Image | null | "builtin";
  if (opts.bios === "none") bios = null;
  else if (opts.bios === "builtin" || (opts.bios === undefined && opts.mode === "para")) bios = "builtin";
  else if (opts.bios === undefined) {
    if (!existsSync(DEFAULT_BIOS)) {
      throw new RequestError(`no firmware: the default ${DEFAULT_BIOS} is missing.\n` +
        `  Install Debian's opensbi package (apt-get install opensbi), or pass --bios <file> or --bios none.`);
    }
    bios = readImage("--bios", DEFAULT_BIOS);
  } else bios = readImage("--bios", opts.bios);
  if (!opts.kernel && !bios) throw new RequestError("--bios none needs --kernel <file> to have something to run");
  if (!opts.kernel && bios === "builtin") throw new RequestError("--mode para (the built-in SBI) needs --kernel <file>: it starts a kernel in S-mode");
  for (const d of opts.drives) {
    if (!existsSync(d.file)) throw new RequestError(`--drive ${d.file}: no such file`);
  }
  return {
    memory: opts.memory, harts: opts.smp, paging: opts.paging, bios,
    kernel: opts.kernel ? readImage("--kernel", opts.kernel) : undefined,
    initrd: opts.initrd ? readImage("--initrd", opts.initrd) : undefined,
    append: opts.append, drives: opts.drives, nets: opts.nets, timeExits: opts.stats,
  };
}
