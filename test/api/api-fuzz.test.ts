// The control API in front of a real Hypervisor with a running VM, fed a few hundred malformed
// requests (test/hv/malformed-requests.ts): afterwards nothing has ended the daemon, no request
// got a 500 (an internal error), the API answers as before, and the VM still runs and echoes on its console.
import { describe, test, expect, beforeAll, afterAll } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Hypervisor } from "../../host/hv/hypervisor";
import { nodePlatform } from "../../host/platform/node";
import { serveApi, ApiClient } from "../../host/api/api";
import type { HostInfo, VmInfo, VmRunStats } from "../../host/hv/types";
import { assemble } from "../../host/util/riscv-asm";
import { ECHO_GUEST, consoleEchoes, malformedRequests, sendAll, statuses, watchUncaught } from "./malformed-requests";

let dir: string;
let socket: string;
let hv: Hypervisor;
let server: Server;
let api: ApiClient;
let uncaught: ReturnType<typeof watchUncaught>;

beforeAll(async () => {
  uncaught = watchUncaught();
  dir = mkdtempSync(join(tmpdir(), "wasmvisor-fuzz-"));
  socket = join(dir, "api.sock");
  const kernel = join(dir, "echo.bin");
  writeFileSync(kernel, assemble(ECHO_GUEST, { origin: 0x80000000 }).bytes);
  hv = await Hypervisor.start(nodePlatform, { cpus: 1, balance: false, hostMemory: 256 << 20 });
  await hv.create({ name: "echo", bios: "none", kernel, memory: "16M" });
  await hv.act("echo", "start");
  server = await serveApi(hv, socket);
  api = new ApiClient(socket);
});

afterAll(async () => {
  uncaught?.stop();
  server?.close();
  await hv?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("the control API under malformed requests", () => {
  test("survives a few hundred of them with its VM running", async () => {
    await consoleEchoes(api, "echo", "before");
    const before = await api.call<HostInfo>("GET", "/host");
    const results = await sendAll(socket, malformedRequests(400, 0x5eed, "echo"));
    expect(results).toHaveLength(400);
    expect(uncaught.errors).toEqual([]);
    const serverErrors = results.filter((r) => statuses(r.reply).includes(500)).map((r) => `${r.probe.label} → ${r.reply.slice(0, 200)}`);
    expect(serverErrors).toEqual([]);
    expect(await api.call<HostInfo>("GET", "/host")).toEqual(before);
    expect(await api.call<VmInfo[]>("GET", "/vms")).toMatchObject([{ name: "echo", state: "running" }]);
    const i1 = (await api.call<VmRunStats>("GET", "/vms/echo/stats")).instructions;
    await new Promise((r) => setTimeout(r, 100));
    expect((await api.call<VmRunStats>("GET", "/vms/echo/stats")).instructions).toBeGreaterThan(i1);
    await consoleEchoes(api, "echo", "still-here-42");
  }, 120_000);
});
