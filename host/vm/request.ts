// From what a user asked for (boot flags, or a VM definition's same fields) to a MachineRequest:
// the firmware each mode defaults to, images read and checked, drives that exist. Errors are
// one line that names the flag and says what to do.
import { closeSync, existsSync } from "node:fs";
import { openImage, readOpenedImage } from "../util/image-files";
import { checkBoard } from "../machine/virt";
import type { BootOptions } from "../cli/args";
import type { Image } from "../machine/virt";
import type { MachineRequest } from "./build";

export const DEFAULT_BIOS = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin";

export class RequestError extends Error {}

/** Where a VM's images may come from (the daemon's --images); undefined: anywhere. */
export interface ImagePolicy {
  dirs?: readonly string[];
}

// Images are read into shared memory and kept while some VM holds them: a hundred VMs booting
// the same kernel share one copy, also across the worker threads they are sent to.
const images = new Map<string, WeakRef<Uint8Array>>();

/**
 * Read firmware, a kernel or an initrd: a regular file (never blocking on a FIFO or reading a
 * device), at most `maxBytes` (the guest's RAM: it could not be loaded anyway).
 */
export function readImage(flag: string, path: string, maxBytes: number, policy: ImagePolicy = {}): Image {
  let img;
  try {
    img = openImage(path, { what: flag, dirs: policy.dirs, maxBytes: { bytes: maxBytes, hint: `the guest's ${maxBytes / 2 ** 20} MiB of RAM: it does not fit in guest RAM; use a larger --memory` } });
  } catch (e) {
    throw new RequestError((e as Error).message);
  }
  const key = `${img.dev}:${img.ino}\0${img.size}\0${img.mtimeMs}`;
  const cached = images.get(key)?.deref();
  if (cached) {
    closeSync(img.fd);
    return { name: path, bytes: cached };
  }
  const bytes = new Uint8Array(new SharedArrayBuffer(img.size));
  try {
    readOpenedImage(img, bytes, flag);
  } catch (e) {
    throw new RequestError((e as Error).message);
  }
  images.set(key, new WeakRef(bytes));
  return { name: path, bytes };
}

/** The machine the options describe, with its images loaded; nothing is opened if it cannot be built. */
export function machineRequest(opts: BootOptions, policy: ImagePolicy = {}): MachineRequest {
  // Devices are counted before any image is opened.
  try {
    checkBoard(opts.drives, opts.nets, opts.bios === "builtin" || (opts.bios === undefined && opts.mode === "para"));
  } catch (e) {
    throw new RequestError((e as Error).message);
  }
  let bios: Image | null | "builtin";
  if (opts.bios === "none") bios = null;
  else if (opts.bios === "builtin" || (opts.bios === undefined && opts.mode === "para")) bios = "builtin";
  else if (opts.bios === undefined) {
    if (!existsSync(DEFAULT_BIOS)) {
      throw new RequestError(`no firmware: the default ${DEFAULT_BIOS} is missing.\n` +
        `  Install Debian's opensbi package (apt-get install opensbi), or pass --bios <file> or --bios none.`);
    }
    bios = readImage("--bios", DEFAULT_BIOS, opts.memory, policy);
  } else bios = readImage("--bios", opts.bios, opts.memory, policy);
  if (!opts.kernel && !bios) throw new RequestError("--bios none needs --kernel <file> to have something to run");
  if (!opts.kernel && bios === "builtin") throw new RequestError("--mode para (the built-in SBI) needs --kernel <file>: it starts a kernel in S-mode");
  return {
    memory: opts.memory, harts: opts.smp, paging: opts.paging, bios,
    kernel: opts.kernel ? readImage("--kernel", opts.kernel, opts.memory, policy) : undefined,
    initrd: opts.initrd ? readImage("--initrd", opts.initrd, opts.memory, policy) : undefined,
    append: opts.append, drives: opts.drives, nets: opts.nets, timeExits: opts.stats, imageDirs: policy.dirs,
  };
}
