// The disk image formats wasmvisor reads and writes, apart from their code, so the VM
// configuration parser can name them without loading the formats.
export type DiskFormat = "raw" | "qcow2";
export const DISK_FORMATS: readonly DiskFormat[] = ["raw", "qcow2"];
