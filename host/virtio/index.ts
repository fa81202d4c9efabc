/** virtio devices over the MMIO transport. (node-disk.ts is Node-only and not re-exported.) */
export * from "./types";
export * from "./queue";
export * from "./mmio";
export * from "./blk";
export * from "./console";
export * from "./rng";
export * from "./net";
