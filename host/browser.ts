// wasmvisor's browser build (the package's "browser" export): the embedding API of index.ts and
// the browser platform (pCPUs in Web Workers, disks in the Origin Private File System).
export * from "./index";
export { browserPlatform, OPFS, type BrowserPlatform, type BrowserPlatformOptions } from "./platform/browser";
export type { BrowserStorage } from "./platform/browser/storage";
export { wsLink, openWsLink, type WebSocketLike } from "./migration/ws-link";
