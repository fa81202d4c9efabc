// A live migration over a WebSocket (the link between a browser tab and its server), here with
// the `ws` package at both ends: the VM goes on at the destination where it was; a peer that
// sends text, or a message bigger than any section, fails the link instead of the host.
import { describe, test, expect } from "vitest";
import { WebSocketServer, WebSocket } from "ws";
import type { AddressInfo } from "node:net";
import { counterKernel } from "../state/counter-guest";
import { loadCoreModule } from "../../host/platform/node/core";
import { memoryPlatform } from "../../host/platform/memory";
import { Hypervisor } from "../../host/hv/hypervisor";
import { openWsLink, wsLink, MAX_MESSAGE, type WebSocketLike } from "../../host/migration/ws-link";
import type { ByteLink } from "../../host/migration/link";

const core = loadCoreModule();
const files = { "count.bin": counterKernel(10_000_000) };

async function server(onLink: (link: ByteLink) => void): Promise<{ url: string; close(): Promise<void> }> {
  const wss = new WebSocketServer({ port: 0, host: "127.0.0.1", maxPayload: MAX_MESSAGE + 1024 });
  wss.on("connection", (ws) => onLink(wsLink(ws as unknown as WebSocketLike, "the source")));
  await new Promise((r) => wss.once("listening", r));
  return { url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/`, close: () => new Promise((r) => wss.close(() => r())) };
}

describe("a migration link over a WebSocket", () => {
  test("carries a running VM, which goes on at the destination where it was", async () => {
    const dest = await Hypervisor.start(memoryPlatform({ core, files }), { balance: false });
    const srv = await server((link) => void dest.incoming(link));
    const source = await Hypervisor.start(memoryPlatform({
      core, files,
      connectMigration: () => openWsLink(() => new WebSocket(srv.url) as unknown as WebSocketLike, "the destination"),
    }), { balance: false, migrationKey: new Uint8Array(32) });
    try {
      await source.create({ name: "counter", kernel: "count.bin", memory: "16M" });
      let before = "";
      source.attachConsole("counter", (b) => { before += new TextDecoder().decode(b); });
      await source.act("counter", "start");
      while ((await source.stats("counter")).instructions < 40_000_000) await new Promise((r) => setImmediate(r));
      const r = await source.migrate("counter", "tcp:dest:1", { downtimeMs: 50 });
      expect(r.phase).toBe("done");
      expect(r.sentBytes).toBeGreaterThan(64 * 1024); // the pattern at least
      let after = "";
      dest.attachConsole("counter", (b) => { after += new TextDecoder().decode(b); });
      expect((await dest.waitForEnd("counter")).exitCode).toBe(0);
      expect(before + after).toBe("0123456789");
    } finally {
      await source.close();
      await dest.close();
      await srv.close();
    }
  }, 60_000);

  test("a text message, or one too big to be a section, fails the link with a reason", async () => {
    for (const [send, reason] of [
      [(ws: WebSocket) => ws.send("hello"), /text message/],
      [(ws: WebSocket) => ws.send(new Uint8Array(MAX_MESSAGE + 1)), /message of \d+ bytes/],
    ] as const) {
      const got: { link?: ByteLink } = {};
      const srv = await server((l) => { got.link = l; });
      const ws = new WebSocket(srv.url);
      await new Promise((r) => ws.once("open", r));
      while (!got.link) await new Promise((r) => setTimeout(r, 5));
      send(ws);
      await expect((async () => { for await (const _ of got.link!.chunks()) { /* nothing */ } })()).rejects.toThrow(reason);
      ws.close();
      await srv.close();
    }
  });

  test("an unreachable server is said as such", async () => {
    await expect(openWsLink(() => new WebSocket("ws://127.0.0.1:1/") as unknown as WebSocketLike, "the server")).rejects.toThrow(/cannot reach the server/);
  });
});
