// The worker thread of one pCPU: the control plane (Hypervisor) drives its Pcpu through Comlink.
import { parentPort } from "node:worker_threads";
import * as Comlink from "comlink";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { Pcpu } from "../../hv/pcpu";
import { nodePlatform } from "./index";

if (parentPort) Comlink.expose(new Pcpu(nodePlatform), nodeEndpoint(parentPort));
