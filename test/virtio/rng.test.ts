import { describe, expect, it } from "vitest";
import { VirtioRng } from "../../host/virtio/rng";
import { TestDriver } from "./helpers";

describe("virtio-rng", () => {
  it("fills the guest's buffers from the injected source", () => {
    let n = 0;
    const d = new TestDriver(new VirtioRng({ source: (b) => { for (let i = 0; i < b.length; i++) b[i] = n++ & 0xff; } }));
    expect(d.r(0x008)).toBe(4);
    d.init();
    const q = d.q(0);
    const c = q.post([{ writable: 3 }, { writable: 5 }]);
    expect(q.takeUsed()).toEqual([{ id: c.head, len: 8 }]);
    expect([...d.ram.copy(c.addrs[0]!, 3), ...d.ram.copy(c.addrs[1]!, 5)]).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(d.irq).toBe(true);
  });

  it("asks the source for at most 65536 bytes at a time", () => {
    const sizes: number[] = [];
    const d = new TestDriver(new VirtioRng({ source: (b) => { sizes.push(b.length); b.fill(sizes.length); }, maxPerRequest: 1 << 20 }));
    d.init();
    const q = d.q(0);
    const c = q.post([{ writable: 150000 }]);
    expect(q.takeUsed()[0]!.len).toBe(150000);
    expect(sizes).toEqual([65536, 65536, 150000 - 131072]);
    expect(d.ram.u8(c.addrs[0]! + 65536)).toBe(2);
    expect(d.ram.u8(c.addrs[0]! + 149999)).toBe(3);
  });

  it("gives at most maxPerRequest bytes and reports that length", () => {
    const d = new TestDriver(new VirtioRng({ source: (b) => b.fill(0xee), maxPerRequest: 100 }));
    d.init();
    const c = d.q(0).post([{ writable: 300 }]);
    expect(d.q(0).takeUsed()[0]!.len).toBe(100);
    expect(d.ram.u8(c.addrs[0]! + 99)).toBe(0xee);
    expect(d.ram.u8(c.addrs[0]! + 100)).toBe(0);
  });

  it("uses crypto.getRandomValues by default, also on shared guest memory", () => {
    const d = new TestDriver(new VirtioRng());
    expect(d.ram.bytes.buffer).toBeInstanceOf(SharedArrayBuffer);
    d.init();
    const a = d.q(0).post([{ writable: 64 }]);
    const b = d.q(0).post([{ writable: 64 }]);
    const x = d.ram.copy(a.addrs[0]!, 64), y = d.ram.copy(b.addrs[0]!, 64);
    expect(x).not.toEqual(y);
    expect(x.some((v) => v !== 0)).toBe(true);
  });

  it("completes a chain without writable buffers with length 0", () => {
    const d = new TestDriver(new VirtioRng({ source: (b) => b.fill(1) }));
    d.init();
    const c = d.q(0).post([{ data: new Uint8Array(4) }]);
    expect(d.q(0).takeUsed()).toEqual([{ id: c.head, len: 0 }]);
    expect(d.ram.u8(c.addrs[0]!)).toBe(0);
  });
});
