import { describe, expect, it } from "vitest";
import { MessageChannel } from "node:worker_threads";
import { ETHERTYPE_IPV4, buildEthernet, parseMac, type Mac } from "../../host/net/packet";
import { EthernetSwitch, bridgeToChannel, channelBackend, deleteSwitch, getSwitch, switchNames } from "../../host/net/switch";
import { parseNetdev } from "../../host/net/netdev";
import { createNetBackend } from "../../host/net/backend";
import { nodeHostSockets } from "../../host/platform/node/host-sockets";
import { UserNet } from "../../host/net/user";
import { waitUntil } from "./guest";

const mac = (n: number): Mac => parseMac(`52:54:00:00:00:${n.toString(16).padStart(2, "0")}`)!;
const BCAST = parseMac("ff:ff:ff:ff:ff:ff")!;
const MCAST = parseMac("01:00:5e:00:00:fb")!;

function frame(dst: Mac, src: Mac, tag: number): Uint8Array {
  return buildEthernet(dst, src, ETHERTYPE_IPV4, new Uint8Array([tag, 0, 0, 0]));
}

/** A switch with n ports, each recording the tags of the frames it receives. */
function setup(n: number, opts = {}) {
  const sw = new EthernetSwitch(opts);
  const ports = Array.from({ length: n }, () => sw.port());
  const got: number[][] = ports.map(() => []);
  ports.forEach((p, i) => p.attach((f) => got[i].push(f[14])));
  const clear = () => got.forEach((g) => (g.length = 0));
  return { sw, ports, got, clear };
}

describe("EthernetSwitch", () => {
  it("floods broadcast, multicast and unknown unicast to every port but the source", () => {
    const { ports, got, clear } = setup(4);
    ports[0].send(frame(BCAST, mac(1), 1));
    expect(got).toEqual([[], [1], [1], [1]]);
    clear();
    ports[2].send(frame(MCAST, mac(3), 2));
    expect(got).toEqual([[2], [2], [], [2]]);
    clear();
    ports[1].send(frame(mac(99), mac(2), 3)); // nobody has been seen as 99
    expect(got).toEqual([[3], [], [3], [3]]);
  });

  it("learns source addresses and forwards known unicast to one port only", () => {
    const { sw, ports, got, clear } = setup(4);
    ports[0].send(frame(BCAST, mac(1), 1)); // learn 1 on port 0
    ports[3].send(frame(BCAST, mac(4), 2)); // learn 4 on port 3
    clear();
    ports[3].send(frame(mac(1), mac(4), 3));
    expect(got).toEqual([[3], [], [], []]);
    ports[0].send(frame(mac(4), mac(1), 4));
    expect(got).toEqual([[3], [], [], [4]]);
    expect(sw.macTable()).toEqual([
      { mac: "52:54:00:00:00:01", port: ports[0].id },
      { mac: "52:54:00:00:00:04", port: ports[3].id },
    ]);
    expect(sw.stats()).toMatchObject({ ports: 4, macs: 2, forwarded: 2, flooded: 2 });
  });

  it("never sends a frame back to its source port, even when the destination lives there", () => {
    const { sw, ports, got } = setup(3);
    ports[0].send(frame(BCAST, mac(1), 1));
    ports[0].send(frame(BCAST, mac(2), 2)); // two stations behind port 0
    ports[0].send(frame(mac(2), mac(1), 3)); // local to port 0's segment
    expect(got[0]).toEqual([]);
    expect(got[1]).toEqual([1, 2]);
    expect(sw.stats().dropped).toBe(1);
  });

  it("relearns a station that moved, forgets closed ports and aged entries", () => {
    let t = 0;
    const { sw, ports, got, clear } = setup(3, { now: () => t, macAgeMs: 1000 });
    ports[0].send(frame(BCAST, mac(1), 1));
    ports[1].send(frame(BCAST, mac(1), 2)); // moved to port 1
    clear();
    ports[2].send(frame(mac(1), mac(3), 3));
    expect(got).toEqual([[], [3], []]);
    ports[1].close();
    expect(sw.macTable().map((e) => e.mac)).toEqual(["52:54:00:00:00:03"]);
    ports[1].send(frame(BCAST, mac(1), 9)); // a closed port sends nothing
    clear();
    ports[2].send(frame(mac(1), mac(3), 4));
    expect(got).toEqual([[4], [], []]); // unknown again: flooded to the remaining ports
    ports[0].send(frame(BCAST, mac(1), 5));
    t = 5000;
    clear();
    ports[2].send(frame(mac(1), mac(3), 6));
    expect(got).toEqual([[6], [], []]);
    expect(sw.stats().ports).toBe(2);
  });

  it("bounds its table and ignores runts", () => {
    const { sw, ports, got } = setup(2, { maxMacs: 3 });
    for (let i = 1; i <= 10; i++) ports[0].send(frame(BCAST, mac(i), i));
    expect(sw.stats().macs).toBe(3);
    ports[0].send(new Uint8Array(10));
    expect(got[1]).toHaveLength(10);
    expect(sw.stats().dropped).toBe(1);
  });

  it("gives each flooded receiver its own copy", () => {
    const sw = new EthernetSwitch();
    const a = sw.port();
    const b = sw.port();
    const c = sw.port();
    const seen: Uint8Array[] = [];
    b.attach((f) => {
      f[14] = 0xee; // a receiver scribbling on its copy
      seen.push(f);
    });
    c.attach((f) => seen.push(f));
    a.send(frame(BCAST, mac(1), 7));
    expect(seen[1][14]).toBe(7);
  });

  it("survives switches plugged into each other in a loop", () => {
    const s1 = new EthernetSwitch();
    const s2 = new EthernetSwitch();
    s1.plug(s2.port());
    s1.plug(s2.port()); // two links between the same switches: a loop
    const a = s1.port();
    let n = 0;
    const b = s2.port();
    b.attach(() => n++);
    expect(() => a.send(frame(BCAST, mac(1), 1))).not.toThrow();
    expect(n).toBeGreaterThan(0);
    expect(n).toBeLessThan(10000);
  });

  it("carries frames to a NIC across a message channel", async () => {
    const sw = new EthernetSwitch();
    const local = sw.port();
    const got: number[] = [];
    local.attach((f) => got.push(f[14]));
    const { port1, port2 } = new MessageChannel();
    const unbridge = bridgeToChannel(sw.port(), port1 as never);
    const remote = channelBackend(port2 as never); // what a VM in a worker would use
    const remoteGot: number[] = [];
    remote.attach((f) => remoteGot.push(f[14]));
    try {
      remote.send(frame(BCAST, mac(2), 1));
      await waitUntil(() => got.length === 1, 2000, "the frame from the channel");
      local.send(frame(mac(2), mac(1), 2)); // learnt: goes only to the channel port
      await waitUntil(() => remoteGot.length === 1, 2000, "the frame over the channel");
      expect(got).toEqual([1]);
      expect(remoteGot).toEqual([2]);
    } finally {
      remote.close();
      unbridge();
    }
  });
});

describe("netdev strings and the registry", () => {
  it("joins VMs naming the same switch", () => {
    try {
      const a = createNetBackend("switch=lab");
      const b = createNetBackend(parseNetdev("switch=lab"));
      const c = createNetBackend("switch=other");
      const got: string[] = [];
      b.attach(() => got.push("b"));
      c.attach(() => got.push("c"));
      a.send(frame(BCAST, mac(1), 1));
      expect(got).toEqual(["b"]);
      expect(getSwitch("lab").stats().ports).toBe(2);
      expect(switchNames()).toEqual(expect.arrayContaining(["lab", "other"]));
    } finally {
      expect(deleteSwitch("lab")).toBe(true);
      deleteSwitch("other");
    }
    expect(switchNames()).not.toContain("lab");
  });

  it("parses user and switch specs, with clear errors", () => {
    expect(parseNetdev("user,hostfwd=tcp::2222-:22")).toEqual({ kind: "user", options: { hostfwd: [{ proto: "tcp", hostPort: 2222, guestPort: 22 }] } });
    expect(parseNetdev("switch=a-b_1")).toEqual({ kind: "switch", name: "a-b_1" });
    expect(() => parseNetdev("switch=")).toThrow(/switch name/);
    expect(() => parseNetdev("bridge=br0")).toThrow(/expected 'user/);
    const un = createNetBackend("user", { hostSockets: nodeHostSockets });
    expect(un).toBeInstanceOf(UserNet);
    un.close();
    expect(() => createNetBackend("user")).toThrow("user-mode networking needs host sockets, which this platform does not provide");
  });
});
