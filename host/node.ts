// wasmvisor's Node build (the package's "node" export): the embedding API of index.ts and the
// Node platform (pCPUs on worker threads, images and disks from files, host sockets).
export * from "./index";
export { nodePlatform } from "./platform/node";
