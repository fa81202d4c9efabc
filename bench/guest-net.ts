// The host end of wv-bench's network benchmarks: a TCP server on 127.0.0.1 (the guest reaches it
// as 10.0.2.2 through user-mode networking). Each connection starts with one request line:
//   rx <n>   the server sends n bytes, then closes       (host -> guest throughput)
//   tx <n>   the server reads n bytes, then answers "ok\n" (guest -> host throughput)
import { createServer, type Server, type Socket } from "node:net";
import type { AddressInfo } from "node:net";

export interface NetServer {
  port: number;
  close(): Promise<void>;
}

const CHUNK = Buffer.alloc(64 * 1024, "r");

function serve(sock: Socket): void {
  sock.setNoDelay(true);
  let head = Buffer.alloc(0);
  let mode: "rx" | "tx" | null = null;
  let left = 0;
  let acked = false;
  const fail = (): void => void sock.destroy();
  const onData = (d: Buffer): void => {
    if (mode === null) {
      head = Buffer.concat([head, d]);
      const nl = head.indexOf(10);
      if (nl < 0) {
        if (head.length > 64) fail();
        return;
      }
      const m = /^(rx|tx) (\d+)$/.exec(head.subarray(0, nl).toString("latin1"));
      if (!m) return fail();
      mode = m[1] as "rx" | "tx";
      left = Number(m[2]);
      d = head.subarray(nl + 1);
      if (mode === "rx") return void sendBytes(sock, left);
    }
    if (mode === "rx" || acked) return; // nothing more is expected
    left -= d.length;
    if (left <= 0) {
      acked = true;
      sock.end("ok\n");
    }
  };
  sock.on("data", onData);
  sock.on("error", () => {});
}

/** Write n bytes, respecting back-pressure, then close. */
function sendBytes(sock: Socket, n: number): void {
  const pump = (): void => {
    while (n > 0) {
      const k = Math.min(n, CHUNK.length);
      n -= k;
      if (!sock.write(CHUNK.subarray(0, k))) return void sock.once("drain", pump);
    }
    sock.end();
  };
  pump();
}

/** The server, listening on `host` (the loopback by default: user-mode networking reaches it). */
export async function startNetServer(host = "127.0.0.1"): Promise<NetServer> {
  const open = new Set<Socket>();
  const server: Server = createServer((sock) => {
    open.add(sock);
    sock.on("close", () => open.delete(sock));
    serve(sock);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, resolve);
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const s of open) s.destroy();
    }),
  };
}
