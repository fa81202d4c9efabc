// The default guest (Linux + BusyBox built from Debian's sources), built into the cache on first
// use with its progress on stderr: what `start` boots and `wasmvisor web` serves.
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { packageRoot } from "../platform/node/core";

export interface LinuxGuest {
  dir: string;
  kernel: string;
  initramfs: string;
  disk: string;
}

/** Throws a one-line Error if the build fails. */
export async function defaultLinuxGuest(): Promise<LinuxGuest> {
  const script = join(packageRoot(), "guests/linux/build.mjs");
  const { buildLinuxGuest } = await import(pathToFileURL(script).href);
  try {
    return await buildLinuxGuest({ log: (line: string) => process.stderr.write(`${line}\n`) });
  } catch (e) {
    throw new Error(`building the Linux guest failed: ${(e as Error).message.split("\n")[0]}`);
  }
}
