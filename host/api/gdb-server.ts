// The GDB stub on a socket (`-s`, `-gdb tcp::PORT`, `--gdb PORT`): one debugger at a time, as
// QEMU's; a second connection is closed at once. The protocol is api/gdb.ts.
import type { Server, Socket } from "node:net";
import { net } from "../platform/node/builtins";
import { GdbSession, type GdbTarget } from "./gdb";
import type { Endpoint } from "./qmp";
import type { Monitor } from "./monitor";
import type { Hypervisor } from "../hv/hypervisor";
import { EMULATION_FAILURE } from "../machine/virt";

/** The stub's view of VM `name` of a one-VM wasmvisor: stop and cont are the monitor's (so QMP sees them), the rest the hypervisor's. */
export function gdbTarget(hv: Hypervisor, monitor: Monitor, name: string, kill: () => void): GdbTarget {
  return {
    harts: hv.info(name).vcpus,
    state: () => {
      try {
        return hv.info(name).state;
      } catch {
        return "stopped"; // migrated away
      }
    },
    pause: async () => { await monitor.stop(); },
    resume: async () => { await monitor.cont(); },
    debug: (req) => hv.debug(name, req),
    onDebugStop: (listener) => hv.onDebugStop(name, listener),
    ended: hv.waitForEnd(name).then((e) => e.exitCode ?? EMULATION_FAILURE),
    kill,
  };
}

export interface GdbServer {
  /** Where it listens (host:port). */
  address: string;
  close(): void;
}

/** Serve the GDB remote protocol at `endpoint` for `target`. Rejects with a one-line error if it cannot listen. */
export async function serveGdb(endpoint: Endpoint, target: GdbTarget, onError: (message: string) => void): Promise<GdbServer> {
  let client: { sock: Socket; session: GdbSession } | null = null;
  const server: Server = net().createServer((sock) => {
    if (client) {
      sock.end();
      return;
    }
    sock.setNoDelay(true);
    sock.setEncoding("latin1");
    const session = new GdbSession(target, (bytes) => {
      if (!sock.destroyed && sock.writable) sock.write(bytes);
    });
    client = { sock, session };
    sock.on("data", (text: string) => {
      try {
        session.input(text);
      } catch (e) {
        onError(`gdb client: ${(e as Error).message}`);
        sock.destroy();
      }
    });
    sock.on("error", () => {}); // the client went away
    sock.on("close", () => {
      session.close();
      if (client?.sock === sock) client = null;
    });
  });
  server.on("error", (e) => onError(`gdb server ${endpoint.spec}: ${e.message}`));
  await new Promise<void>((resolve, reject) => {
    server.once("error", (e: NodeJS.ErrnoException) => reject(new Error(`-gdb ${endpoint.spec}: cannot listen (${e.code ?? e.message})`)));
    if (endpoint.kind === "unix") server.listen(endpoint.path, resolve);
    else server.listen(endpoint.port, endpoint.host, resolve);
  });
  const addr = server.address();
  return {
    address: typeof addr === "string" ? addr : addr ? `${addr.address}:${addr.port}` : endpoint.spec,
    close() {
      server.close();
      client?.sock.end();
    },
  };
}
