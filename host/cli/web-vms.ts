// The server side of VMs moving between a browser tab and the Node host that served its page:
// a tab's VM migrates in over a WebSocket (/migrate), the host sends one back over another
// (/migrate-back), and the page watches and types into the console of a VM that runs here
// (/console). The sockets reach here only after the server checked their origin and the page's
// token; what comes over them is still hostile, as from any migration source.
import type { WebSocket } from "ws";
import type { Hypervisor } from "../hv/hypervisor";
import { wsLink, type WebSocketLike } from "../migration/ws-link";
import { listenMigration } from "../platform/node/migration";
import type { ByteLink } from "../migration/link";

/** A WebSocket close reason is at most 123 bytes. */
const reason = (text: string) => text.slice(0, 120);

/** A tab's VM migrating in: it is admitted, built and started here as from any source. */
export function acceptFromTab(ws: WebSocket, hv: Hypervisor, peer: string, log: (line: string) => void): void {
  const link = wsLink(ws as unknown as WebSocketLike, peer);
  hv.incoming(link).then(
    () => log(`a VM migrated in from ${peer}`),
    (e: Error) => log(`a migration from ${peer} failed: ${e.message}`),
  );
}

/**
 * Send VM `name` to the tab at the other end of `ws`, disks and all. The host's pCPU migrates
 * only over its authenticated TLS link, so it migrates to a listener here, for this one link,
 * which hands the stream on to the tab and the tab's answers back.
 */
export async function sendToTab(ws: WebSocket, hv: Hypervisor, name: string, key: Uint8Array, peer: string, log: (line: string) => void): Promise<void> {
  const tab = wsLink(ws as unknown as WebSocketLike, peer);
  let taken = false;
  const bridge = await listenMigration({ host: "127.0.0.1", port: 0 }, key, (link) => {
    if (taken) return link.close(true); // only the one this migration opens
    taken = true;
    void pipe(link, tab).catch(() => tab.close(true));
    void pipe(tab, link).catch(() => link.close(true));
  }, () => {});
  try {
    await hv.migrate(name, `tcp:127.0.0.1:${bridge.port}`, { copyStorage: true, downtimeMs: 50 });
    log(`${name} migrated to ${peer}`);
  } catch (e) {
    log(`migrating ${name} to ${peer} failed: ${(e as Error).message}`);
    ws.close(1011, reason((e as Error).message));
  } finally {
    bridge.close();
  }
}

// What one end sends goes to the other, at the pace the other takes it.
async function pipe(from: ByteLink, to: ByteLink): Promise<void> {
  for await (const chunk of from.chunks()) {
    if (!to.write(chunk)) await to.drained();
  }
  to.close();
}

/** The console of VM `name` over `ws`: its output as binary messages, keys from the page's. */
export function relayConsole(ws: WebSocket, hv: Hypervisor, name: string): void {
  let serial;
  try {
    serial = hv.attachConsole(name, (bytes) => {
      ws.send(bytes);
      return ws.bufferedAmount < 1 << 20; // a page that does not keep up holds the console back
    });
  } catch (e) {
    ws.close(1008, reason((e as Error).message));
    return;
  }
  const timer = setInterval(() => { if (ws.bufferedAmount < 1 << 19) serial.resume(); }, 50);
  ws.on("message", (data, isBinary) => {
    if (isBinary && data instanceof Buffer && data.length <= 4096) serial.write(new Uint8Array(data));
  });
  ws.on("close", () => { clearInterval(timer); serial.detach(); });
  void hv.waitForEnd(name).then((end) => ws.close(1000, reason(`${name} ${end.state}: ${end.reason ?? ""}`)), () => {});
}
