import { describe, expect, it } from "vitest";
import type { NetBackend } from "../../host/devices/backends";
import { VirtioNet, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_STATUS } from "../../host/virtio/net";
import { F_VERSION_1, INT_CONFIG_CHANGE, REG_CONFIG, REG_INTERRUPT_STATUS, REG_STATUS } from "../../host/virtio/mmio";
import { LoopBackend, TestDriver, pattern } from "./helpers";


const bit = (w: readonly [number, number], b: number) => (b < 32 ? (w[0] >>> b) & 1 : (w[1] >>> (b - 32)) & 1) === 1;

function make(opts: ConstructorParameters<typeof VirtioNet>[1] = {}, mmio: { legacy?: boolean } = {}) {
  const be = new LoopBackend();
  const net = new VirtioNet(be, opts);
  const d = new TestDriver(net, mmio);
  return { be, net, d };
}

describe("virtio-net configuration", () => {
  it("offers MAC, STATUS and MRG_RXBUF with the MAC and link state in config space", () => {
    const { d } = make();
    const f = d.offered();
    for (const b of [VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS, VIRTIO_NET_F_MRG_RXBUF, F_VERSION_1]) expect(bit(f, b), `bit ${b}`).toBe(true);
    expect(bit(f, 0)).toBe(false); // no CSUM
    expect(bit(f, 17)).toBe(false); // no control queue
    expect([0, 1, 2, 3, 4, 5].map((i) => d.cfg(i, 1))).toEqual([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    expect(d.cfg(6, 2)).toBe(1); // LINK_UP
    expect(d.r(0x008)).toBe(1);
  });

  it("takes the MAC from the options", () => {
    const { d, net } = make({ mac: "02:00:00:aa:bb:cc" });
    expect([0, 1, 2, 3, 4, 5].map((i) => d.cfg(i, 1))).toEqual([2, 0, 0, 0xaa, 0xbb, 0xcc]);
    expect(net.mac).toEqual(Uint8Array.of(2, 0, 0, 0xaa, 0xbb, 0xcc));
    expect(() => make({ mac: "02:00:00:aa:bb" })).toThrow(/not of the form/);
    expect(() => make({ mac: Uint8Array.of(1, 2, 3) })).toThrow(/must be 6 bytes/);
    expect(make({ mac: Uint8Array.of(1, 2, 3, 4, 5, 6) }).net.mac).toEqual(Uint8Array.of(1, 2, 3, 4, 5, 6));
  });

  it("reports link changes with a configuration interrupt", () => {
    const { d, net, be } = make();
    d.init();
    net.setLinkUp(false);
    expect(d.cfg(6, 2)).toBe(0);
    expect(d.r(REG_INTERRUPT_STATUS)).toBe(INT_CONFIG_CHANGE);
    be.deliver(new Uint8Array(60));
    expect(net.pendingRx()).toBe(0); // dropped while the link is down
    d.ack();
    net.setLinkUp(true);
    expect(d.cfg(6, 2)).toBe(1);
    expect(d.irq).toBe(true);
  });
});

describe("virtio-net transmit", () => {
  it("strips the 12-byte header and passes the frame to the backend", () => {
    const { d, be, net } = make();
    d.init();
    const tx = d.q(1);
    const frame = pattern(60, 4);
    const c = tx.post([{ data: new Uint8Array(12) }, { data: frame.subarray(0, 20) }, { data: frame.subarray(20) }]);
    expect(tx.takeUsed()).toEqual([{ id: c.head, len: 0 }]);
    expect(be.sent).toEqual([frame]);
    // Header and frame in a single buffer (VERSION_1 any layout).
    tx.post([{ data: new Uint8Array([...new Uint8Array(12), ...frame]) }]);
    expect(be.sent[1]).toEqual(frame);
    expect(net.stats.txFrames).toBe(2);
    expect(d.irq).toBe(true);
  });

  it("drops empty frames but completes their buffers", () => {
    const { d, be, net } = make();
    d.init();
    d.q(1).post([{ data: new Uint8Array(12) }]);
    expect(d.q(1).takeUsed()).toHaveLength(1);
    expect(be.sent).toHaveLength(0);
    expect(net.stats.txDropped).toBe(1);
  });
});

describe("virtio-net receive", () => {
  it("queues frames until the guest posts buffers, then delivers on notify (MRG_RXBUF)", () => {
    const { d, be, net } = make();
    d.init();
    const f1 = pattern(60, 1), f2 = pattern(100, 2);
    be.deliver(f1);
    be.deliver(f2);
    expect(net.pendingRx()).toBe(2);
    const rx = d.q(0);
    const a = rx.post([{ writable: 2048 }], { notify: false });
    const b = rx.post([{ writable: 2048 }], { notify: false });
    expect(net.pendingRx()).toBe(2);
    rx.notify();
    expect(net.pendingRx()).toBe(0);
    expect(rx.takeUsed()).toEqual([{ id: a.head, len: 72 }, { id: b.head, len: 112 }]);
    const h = d.ram.copy(a.addrs[0]!, 12);
    expect([...h.subarray(0, 10)].every((x) => x === 0)).toBe(true);
    expect(h[10] | (h[11]! << 8)).toBe(1); // num_buffers
    expect(d.ram.copy(a.addrs[0]! + 12, 60)).toEqual(f1);
    expect(d.ram.copy(b.addrs[0]! + 12, 100)).toEqual(f2);
    expect(d.irq).toBe(true);
  });

  it("spreads a large frame over several mergeable buffers with num_buffers set", () => {
    const { d, be } = make();
    d.init();
    const rx = d.q(0);
    const bufs = [0, 1, 2].map(() => rx.post([{ writable: 600 }]));
    const frame = pattern(1514, 9);
    be.deliver(frame);
    const used = rx.takeUsed();
    expect(used.map((u) => u.len)).toEqual([600, 600, 326]);
    expect(d.ram.u16(bufs[0]!.addrs[0]! + 10)).toBe(3);
    const got = new Uint8Array([
      ...d.ram.copy(bufs[0]!.addrs[0]! + 12, 588),
      ...d.ram.copy(bufs[1]!.addrs[0]!, 600),
      ...d.ram.copy(bufs[2]!.addrs[0]!, 326),
    ]);
    expect(got).toEqual(frame);
  });

  it("waits with a frame that does not fit yet, without consuming buffers", () => {
    const { d, be, net } = make();
    d.init();
    const rx = d.q(0);
    rx.post([{ writable: 600 }]);
    be.deliver(pattern(1000, 3));
    expect(net.pendingRx()).toBe(1);
    expect(rx.takeUsed()).toEqual([]);
    rx.post([{ writable: 600 }]);
    expect(net.pendingRx()).toBe(0);
    expect(rx.takeUsed().map((u) => u.len)).toEqual([600, 412]);
  });

  it("delivers one frame per buffer without MRG_RXBUF, num_buffers 1, drops frames too big", () => {
    const { d, be, net } = make();
    d.init({ accept: (lo, hi) => [lo & ~(1 << VIRTIO_NET_F_MRG_RXBUF), hi] });
    const rx = d.q(0);
    const a = rx.post([{ writable: 12 }, { writable: 1514 }]);
    be.deliver(pattern(60, 5));
    expect(rx.takeUsed()).toEqual([{ id: a.head, len: 72 }]);
    expect(d.ram.u16(a.addrs[0]! + 10)).toBe(1);
    expect(d.ram.copy(a.addrs[1]!, 60)).toEqual(pattern(60, 5));
    const small = rx.post([{ writable: 100 }]);
    be.deliver(pattern(200, 6)); // does not fit: dropped, buffer kept
    expect(net.stats.rxDropped).toBe(1);
    expect(rx.takeUsed()).toEqual([]);
    be.deliver(pattern(50, 7));
    expect(rx.takeUsed()).toEqual([{ id: small.head, len: 62 }]);
  });

  it("keeps at most 256 frames while the guest has no buffers", () => {
    const { d, be, net } = make();
    d.init();
    for (let i = 0; i < 300; i++) be.deliver(Uint8Array.of(i & 0xff, 1, 2, 3));
    expect(net.pendingRx()).toBe(256);
    expect(net.stats.rxDropped).toBe(44);
    const rx = d.q(0);
    const c = rx.post([{ writable: 64 }]);
    expect(d.ram.u8(c.addrs[0]! + 12)).toBe(0); // the first frame, not a later one
    expect(net.pendingRx()).toBe(255);
  });

  it("queues frames that arrive before DRIVER_OK and drops them on reset", () => {
    const { d, be, net } = make();
    d.init({ noDriverOk: true }); // the driver's reset happened; it is still setting up
    be.deliver(pattern(60));
    expect(net.pendingRx()).toBe(1);
    const c = d.q(0).post([{ writable: 2048 }]);
    expect(d.q(0).takeUsed()).toEqual([]);
    d.driverOk();
    expect(d.q(0).takeUsed()).toEqual([{ id: c.head, len: 72 }]);
    be.deliver(pattern(60));
    be.deliver(pattern(60));
    expect(net.pendingRx()).toBe(2); // no buffer left: both wait
    d.w(REG_STATUS, 0);
    expect(net.pendingRx()).toBe(0); // stale for the next driver instance
  });

  it("saves and restores pending frames, MAC and link state", () => {
    const { be, net } = make();
    be.deliver(pattern(70, 1));
    net.setLinkUp(false);
    const s = net.save();
    const other = make().net;
    other.restore(s);
    expect(other.pendingRx()).toBe(1);
    expect(other.readConfig(6, 2)).toBe(0);
    expect(() => other.restore({ ...s, rx: [new Uint8Array(0)] })).toThrow(/rx\[0\]/);
    expect(() => other.restore({ ...s, mac: new Uint8Array(5) })).toThrow(/mac/);
  });
});

describe("virtio-net legacy", () => {
  it("uses the 10-byte header without MRG_RXBUF and lets the driver write the MAC", () => {
    const { d, be } = make({}, { legacy: true });
    d.init({ accept: (lo) => [lo & ~(1 << VIRTIO_NET_F_MRG_RXBUF), 0] });
    const frame = pattern(64, 8);
    d.q(1).post([{ data: new Uint8Array([...new Uint8Array(10), ...frame]) }]);
    expect(be.sent).toEqual([frame]);
    const c = d.q(0).post([{ writable: 10 }, { writable: 1514 }]);
    be.deliver(frame);
    expect(d.q(0).takeUsed()[0]!.len).toBe(74);
    expect(d.ram.copy(c.addrs[1]!, 64)).toEqual(frame);
    d.mmio.write(REG_CONFIG + 0, 4, 0x44332211);
    expect(d.cfg(0, 4)).toBe(0x44332211);
  });

  it("uses the 12-byte header with MRG_RXBUF on a legacy driver", () => {
    const { d, be } = make({}, { legacy: true });
    d.init();
    const c = d.q(0).post([{ writable: 2048 }]);
    be.deliver(pattern(60, 1));
    expect(d.q(0).takeUsed()[0]!.len).toBe(72);
    expect(d.ram.u16(c.addrs[0]! + 10)).toBe(1);
  });

  it("ignores MAC writes from a modern driver", () => {
    const { d } = make();
    d.init();
    d.mmio.write(REG_CONFIG + 0, 4, 0x44332211);
    expect(d.cfg(0, 1)).toBe(0x52);
  });
});

