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
import { DEFAULT_VM_SOCKETS } from "../net/budget";

/**
 * Close `ws` saying why. A close reason is at most 123 bytes of UTF-8 (`ws` throws on a longer
 * one, and a reason may quote what a client sent); a socket already closing is left as it is.
 */
export function closeWith(ws: { close(code: number, reason: string): void }, code: number, why: string): void {
  let reason = why.slice(0, 123); // no more characters than bytes
  while (new TextEncoder().encode(reason).length > 123) reason = reason.slice(0, -1);
  try {
    ws.close(code, reason);
  } catch {
    /* closed already */
  }
}

/** How a page names its VM: unguessable, so that the name is what lets a page reach its VM here. */
export const TAB_VM_NAME = /^tab-[0-9a-f]{16}$/;
/** What a VM from a page may ask of this machine, and how many may run here at once. */
export const TAB_VM_LIMITS = { memory: 1 << 30, smp: 2, sockets: DEFAULT_VM_SOCKETS, diskBytes: 4 * 2 ** 30, vms: 4 };

/**
 * What a VM from a page may bring, beyond what the host admits: NICs on user-mode networking with
 * the options the network relay takes (no hostfwd: ports on this machine; no switch: other VMs'
 * networks), and only its own disks (the tab's, copied here by the migration: a path of this
 * machine would be opened here), and of USB devices only keyboards. `loopback`: whether its guest may reach this machine's 127.0.0.1.
 */
export function checkTabVm(config: VmConfig, loopback: boolean): void {
  if (!TAB_VM_NAME.test(config.name)) throw new Error("a VM from a page is named tab-<16 hex digits>");
  if (config.memory > TAB_VM_LIMITS.memory || config.smp > TAB_VM_LIMITS.smp || config.limits.sockets > TAB_VM_LIMITS.sockets) {
    throw new Error(`a VM from a page may have at most ${TAB_VM_LIMITS.memory >> 20} MiB, ${TAB_VM_LIMITS.smp} harts and ${TAB_VM_LIMITS.sockets} host sockets here`);
  }
  for (const n of config.nets) {
    if (n.netdev.kind !== "user") throw new Error("a VM from a page may have only user-mode NICs");
    const o = checkRelayedOptions({ ...n.netdev.options });
    if (!loopback && o.loopback !== "none") throw new Error("this server listens beyond this machine, so a VM from a page may not reach its loopback: give its NICs loopback=none");
  }
  for (const d of config.drives) {
    if (!d.file.startsWith("/opfs/") || d.file.split("/").includes("..")) throw new Error(`a VM from a page brings its own disks, not ${d.file.slice(0, 60)}`);
  }
  // A USB disk or serial port would be a file or socket of this machine: keyboards only.
  for (const u of config.usb ?? []) {
    if (u.type !== "usb-kbd") throw new Error(`a VM from a page may bring USB keyboards only, not ${u.type} ${u.id}`);
  }
}

/**
 * A tab's VM migrating in over `link` (made as the socket opened: nothing it sent may be missed):
 * it is admitted (checkTabVm too), built and started here as from any source; the hypervisor's
 * onEvent says how it went. Once it is gone from here (back to its page, or ended), so are it and
 * the copies of its disks (`remove`).
 */
export async function acceptFromTab(link: ByteLink, hv: Hypervisor, loopback: boolean, remove: (file: string) => void): Promise<void> {
  let name = "";
  await hv.incoming(link, {
    admit(config) {
      checkTabVm(config, loopback);
      // (the hypervisor refuses a name it has too, but this one must not follow that VM then)
      if (hv.list().some((v) => v.name === config.name)) throw new Error(`${config.name} runs here already`);
      if (hv.list().length >= TAB_VM_LIMITS.vms) throw new Error(`${TAB_VM_LIMITS.vms} VMs from pages run here already: try again later`);
      name = config.name;
    },
    admitDisk(bytes) {
      if (bytes > TAB_VM_LIMITS.diskBytes) throw new Error(`a VM from a page may bring disks of at most ${TAB_VM_LIMITS.diskBytes / 2 ** 30} GiB here`);
    },
  });
  if (!name || !hv.list().some((v) => v.name === name)) return; // refused: incoming removed what it made
  const drives = hv.info(name).drives;
  await hv.waitForEnd(name).catch(() => {});
  if (hv.list().some((v) => v.name === name)) await hv.destroy(name).catch(() => {});
  for (const d of drives) remove(d);
}

/**
 * Send VM `name` to the tab at the other end of `ws`, disks and all. The host's pCPU migrates
 * only over its authenticated TLS link, so it migrates to a listener here, for this one link,
 * which hands the stream on to the tab and the tab's answers back.
 */
export async function sendToTab(ws: WebSocket, hv: Hypervisor, name: string, key: Uint8Array, peer: string, log: (line: string) => void): Promise<void> {
  if (!hv.list().some((v) => v.name === name)) return closeWith(ws, 1008, "no such VM runs here");
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
    closeWith(ws, 1011, (e as Error).message);
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
    closeWith(ws, 1008, (e as Error).message);
    return;
  }
  const timer = setInterval(() => { if (ws.bufferedAmount < 1 << 19) serial.resume(); }, 50);
  ws.on("message", (data, isBinary) => {
    if (isBinary && data instanceof Buffer && data.length <= 4096) serial.write(new Uint8Array(data));
  });
  ws.on("close", () => { clearInterval(timer); serial.detach(); });
  void hv.waitForEnd(name).then((end) => closeWith(ws, 1000, `${end.state}: ${end.reason ?? ""}`), () => {});
}
