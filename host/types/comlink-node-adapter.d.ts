// comlink ships its Node adapter without a declaration for the .mjs path we import.
declare module "comlink/dist/esm/node-adapter.mjs" {
  import type { Endpoint } from "comlink";
  // A worker_threads Worker or MessagePort.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  export default function nodeEndpoint(nep: any): Endpoint;
}
