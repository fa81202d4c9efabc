/**
 * Run as its own Node process by exit.test.ts: puts a UserNet through every kind of pending
 * work (connections with data and timers outstanding, a half-open hostfwd connection, a UDP
 * binding, a DNS query nobody answers), then closes everything it opened. The process must
 * then exit by itself: nothing of UserNet's may keep the event loop alive.
 */
import * as net from "node:net";
import * as dgram from "node:dgram";
import { UserNet } from "../../host/net/user";
import { nodeHostSockets } from "../../host/platform/node/host-sockets";
import { DNS, GUEST, GW, GuestTcp, Harness, pattern, udpFrame, waitUntil } from "./guest";
import { DNS_CLASS_IN, DNS_TYPE_A, buildDns } from "../../host/net/packet";

async function main(): Promise<void> {
  const hostSockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    hostSockets.add(s);
    s.on("error", () => {});
    s.write(pattern(3 * 1024 * 1024, 1));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  const silent = dgram.createSocket("udp4");
  await new Promise<void>((r) => silent.bind(0, "127.0.0.1", () => r()));

  const un = new UserNet({
    hostSockets: nodeHostSockets,
    hostfwd: [{ proto: "tcp", hostPort: 0, guestPort: 80 }],
    dns: { servers: [`127.0.0.1:${silent.address().port}`], hostsFile: null, timeoutMs: 60_000 },
  });
  const h = new Harness(un);
  const [fwd] = await un.ready();

  // A guest that stops reading (zero window: persist timer) and one that never acknowledges
  // (retransmission timer).
  const full = new GuestTcp(h, { localPort: 41000, remoteIp: GW, remotePort: port, rcvBuf: 8192, autoRead: false });
  const deaf = new GuestTcp(h, { localPort: 41001, remoteIp: GW, remotePort: port, drop: () => true });
  full.connect();
  deaf.connect();
  await waitUntil(() => full.state === "established" && deaf.state === "established" && deaf.dropped > 2, 5000, "the connections");

  h.send(udpFrame(GUEST, 5000, GW, silent.address().port, new Uint8Array([1])));
  const q = buildDns({ id: 1, flags: 0x100, questions: [{ name: "nobody.test", type: DNS_TYPE_A, class: DNS_CLASS_IN }], answers: [], authorities: [], additionals: [] });
  h.send(udpFrame(GUEST, 5001, DNS, 53, q));

  // A host client on the forwarded port whose SYN the guest never answers.
  const client = net.connect(fwd.hostPort, "127.0.0.1");
  client.on("error", () => {});
  await waitUntil(() => un.stats().tcp.active === 3 && un.stats().dns.pending === 1 && un.stats().udp.bindings === 1, 5000, "everything pending");

  un.close();
  full.close();
  deaf.close();
  client.destroy();
  for (const s of hostSockets) s.destroy();
  server.close();
  silent.close();
  console.log("closed");
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
