/** Type declarations for build.mjs (the default Linux guest). */
export interface BuildLinuxGuestOptions {
  /** Progress messages (one line each, no trailing newline). */
  log?: (msg: string) => void;
}
export interface LinuxGuestBuild {
  /** Cache directory of this build: ${XDG_CACHE_HOME:-~/.cache}/wasmvisor/linux/<hash>. */
  dir: string;
  /** Uncompressed RISC-V Linux kernel image (arch/riscv/boot/Image), loaded at RAM base + 2 MiB (RV64). */
  kernel: string;
  /** gzip-compressed newc cpio initramfs (static BusyBox, /init). */
  initramfs: string;
  /** 64 MiB ext4 data disk image. PRISTINE: copy it before letting a guest write to it. */
  disk: string;
}
/**
 * Builds the guest into the cache (Debian packages, kernel, BusyBox,
 * initramfs, disk), or returns the cached build in a few seconds. Installs
 * missing Debian packages when running as root; otherwise rejects with the
 * apt-get command to run.
 */
export function buildLinuxGuest(options?: BuildLinuxGuestOptions): Promise<LinuxGuestBuild>;
export interface HostUserland {
  /** A root filesystem tree: bin/busybox and its applet links, usr/bin/<program> for each bench/<program>.c. */
  root: string;
  /** The Debian busybox source package version, the guest's. */
  busyboxVersion: string;
  /** `gcc --version`'s first line. */
  gcc: string;
}
/**
 * The guest's userland built for this machine from the same sources (static BusyBox from the
 * same Debian source package, the programs of bench/ with this machine's gcc), cached; the
 * container benches' root filesystem.
 */
export function buildHostUserland(options?: BuildLinuxGuestOptions): Promise<HostUserland>;
