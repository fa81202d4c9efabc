/**
 * HostSockets on Node: user-mode networking's TCP and UDP through node:net and node:dgram,
 * names through node:dns and the hosts file through node:fs.
 */

import type * as Net from "node:net";
import { dgram, dns, net } from "./builtins";
import { readFileSync } from "node:fs";
import type { HostAddress, HostSockets, IncomingTcp, TcpHandlers, TcpListenHandlers, TcpListener, TcpStream, UdpHandlers, UdpSocket } from "../../net/host-sockets";

/** The stack sees plain Uint8Arrays, not Buffers (a view: nothing is copied). */
function bytes(b: Buffer): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.length);
}

/** Closes a socket with a reset, so that its peer sees the connection fail, not end. */
function resetSocket(s: Net.Socket): void {
  if (typeof s.resetAndDestroy === "function" && !s.destroyed && !s.connecting) s.resetAndDestroy();
  else s.destroy();
}

/** A socket made or accepted here: its errors end in 'close', which says all the stack needs. */
function quiet(s: Net.Socket): Net.Socket {
  s.on("error", () => {});
  return s;
}

function stream(s: Net.Socket, h: TcpHandlers): TcpStream {
  s.setNoDelay(true);
  s.on("data", (chunk: Buffer) => h.onData(bytes(chunk)));
  s.on("end", () => h.onEnd());
  s.on("drain", () => h.onDrain());
  s.on("close", () => h.onClose());
  if (h.onConnect) s.once("connect", () => h.onConnect!());
  return {
    get bufferedAmount() {
      return s.writableLength;
    },
    write: (data) => {
      if (s.writable) s.write(data);
    },
    end: () => {
      if (!s.writableEnded) s.end();
    },
    pause: () => void s.pause(),
    resume: () => void s.resume(),
    reset: () => resetSocket(s),
    close: () => {
      if (!s.destroyed) s.destroy();
    },
  };
}

function incoming(s: Net.Socket): IncomingTcp {
  return {
    accept: (h) => stream(s, h),
    reset: () => resetSocket(s),
    close: () => void s.destroy(),
  };
}

function listenTcp(at: HostAddress, h: TcpListenHandlers): TcpListener {
  let closed = false;
  // Paused so that nothing is read before the guest has accepted the connection.
  const server = net().createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) => h.onConnection(incoming(quiet(s))));
  server.on("error", (err) => h.onError(err));
  server.listen({ host: at.host, port: at.port, exclusive: true }, () => {
    if (closed) server.close();
    const a = server.address();
    h.onListening(a && typeof a === "object" ? a.port : at.port);
  });
  return {
    close: () => {
      closed = true;
      if (server.listening) server.close();
    },
  };
}

function openUdp(family: 4 | 6, h: UdpHandlers): UdpSocket {
  const sock = dgram().createSocket(family === 4 ? "udp4" : "udp6");
  sock.on("message", (msg, rinfo) => h.onMessage(bytes(msg), { host: rinfo.address, port: rinfo.port }));
  sock.on("error", () => h.onError?.());
  return {
    send: (data, to) => sock.send(data, to.port, to.host, () => {}),
    close: () => {
      try {
        sock.close();
      } catch {
        // already closed
      }
    },
  };
}

export const nodeHostSockets: HostSockets = {
  connectTcp: (to, h) => stream(quiet(net().connect({ host: to.host, port: to.port, allowHalfOpen: true })), h),
  listenTcp,
  openUdp,
  dnsServers: () => {
    try {
      return dns().getServers();
    } catch {
      return [];
    }
  },
  lookup: async (name, family) => {
    const found = await dns().promises.lookup(name, { family, all: true });
    return found.filter((a) => a.family === family).map((a) => a.address);
  },
  readHostsFile: (path) => {
    try {
      return readFileSync(path, "utf8");
    } catch {
      return null;
    }
  },
};
