// wasmvisor's embedding API, the same for web pages and Node apps: a host (the hypervisor) on a
// platform, VMs described by a VmConfig or a JSON definition, and their consoles and counters.
//
//   const host = await createHost(memoryPlatform({ core, files: { "/fw.elf": bytes } }));
//   await host.createVm(parseVmConfig({ name: "vm", bios: "none", kernel: "/fw.elf" }));
//   host.attachConsole("vm", (bytes) => term.write(bytes));
//   await host.act("vm", "start");
//   const { exitCode } = await host.waitForEnd("vm");
//
// Nothing here imports a Node module. The package's builds add a platform: node.ts (nodePlatform)
// for Node, browser.ts (browserPlatform) for pages; docs/EMBEDDING.md shows both.
import { Hypervisor, type HypervisorOptions } from "./hv/hypervisor";
import type { Platform } from "./platform/platform";
import { parseVmConfig as parseWith, DEFINITION_PARSING } from "./config/parse";
import type { VmConfig } from "./config/vm-config";

export { Hypervisor, type HypervisorOptions } from "./hv/hypervisor";
export { memoryPlatform, type MemoryPlatform, type MemoryPlatformOptions } from "./platform/memory";
export type { Platform, PcpuThread, HostResources, ImageOptions, DiskOptions, CreateDiskOptions, StateFileOptions, StateFileWriter } from "./platform/platform";
export { linkPair, parseMigrationTarget, type ByteLink, type MigrationTarget } from "./migration/link";
export type { MigrationProgress, SnapshotResult } from "./hv/pcpu";
export { StateFormatError, type ByteSource } from "./state/container";
export { ConfigError, parseSize } from "./config/parse";
export type { VmConfig, VmDefinition, DriveConfig, NicConfig, Mode, Paging, FirmwareChoice } from "./config/vm-config";
export { HvError, type VmInfo, type VmRunStats, type HostInfo, type Control, type SnapshotInfo } from "./hv/types";
export { ACTIONS, type Action, type VmState } from "./hv/lifecycle";
export type { MachineStats } from "./machine/virt";
export type { DiskBackend, NetBackend } from "./devices/backends";
export type { HostSockets } from "./net/host-sockets";

/** Start a host (its pCPUs) on `platform`. */
export function createHost(platform: Platform, opts: HypervisorOptions = {}): Promise<Hypervisor> {
  return Hypervisor.start(platform, opts);
}

/** Check a VM definition (the fields of the `boot` flags, as JSON) and make a VmConfig of it; throws a ConfigError naming the field. */
export function parseVmConfig(definition: unknown): VmConfig {
  return parseWith(definition, DEFINITION_PARSING);
}
