// The machine a benchmark ran on, recorded with its figures.
import { existsSync, readFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { arch, cpus, release, totalmem, type } from "node:os";

export interface MachineInfo {
  cpu: string;
  cores: number;
  memoryGiB: number;
  os: string;
  kernel: string;
  node: string;
  /** qemu-system-riscv64's version, null when it is not installed. */
  qemu: string | null;
}

/** "7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)" from `qemu-system-riscv64 --version`, or null. */
export function qemuVersion(): string | null {
  const r = spawnSync("qemu-system-riscv64", ["--version"], { encoding: "utf8" });
  if (r.status !== 0) return null;
  return /version (.*)/.exec(r.stdout)?.[1].trim() ?? r.stdout.split("\n")[0];
}

function osName(): string {
  const file = "/etc/os-release";
  const pretty = existsSync(file) ? /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(readFileSync(file, "utf8"))?.[1] : undefined;
  return pretty ?? type();
}

export function describeMachine(): MachineInfo {
  return {
    cpu: cpus()[0]?.model ?? "unknown",
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    os: osName(),
    kernel: `${type()} ${release()} ${arch()}`,
    node: process.version,
    qemu: qemuVersion(),
  };
}
