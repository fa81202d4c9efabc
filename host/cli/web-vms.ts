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
import type { VmConfig } from "../config/vm-config";
import { checkRelayedOptions } from "../net/relay";

/** A WebSocket close reason is at most 123 bytes. */
const reason = (text: string) => text.slice(0, 120);

/**
 * What a VM from a page may bring, beyond what the host admits: NICs on user-mode networking with
 * the options the network relay takes (no hostfwd: ports on this machine; no switch: other VMs'
 * networks), and only its own disks (the tab's, copied here by the migration: a path of this
 * machine would be opened here). `loopback`: whether its guest may reach this machine's 127.0.0.1.
 */
export function checkTabVm(config: VmConfig, loopback: boolean): void {
  for (const n of config.nets) {
    if (n.netdev.kind !== "user") throw new Error("a VM from a page may have only user-mode NICs");
    const o = checkRelayedOptions({ ...n.netdev.options });
    if (!loopback && o.loopback !== "none") throw new Error("this server listens beyond this machine, so a VM from a page may not reach its loopback: give its NICs loopback=none");
  }
  for (const d of config.drives) {
    if (!d.file.startsWith("/opfs/")) throw new Error(`a VM from a page brings its own disks, not ${d.file.slice(0, 60)}`);
  }
}

/**
 * A tab's VM migrating in over `link` (made as the socket opened: nothing it sent may be missed):
 * it is admitted (checkTabVm too), built and started here as from any source; the hypervisor's
 * onEvent says how it went.
 */
export function acceptFromTab(link: ByteLink, hv: Hypervisor, loopback = true): Promise<void> {
  return hv.incoming(link, { admit: (config) => checkTabVm(config, loopback) });
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
