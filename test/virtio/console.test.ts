import { describe, expect, it } from "vitest";
import { VirtioConsole, VIRTIO_CONSOLE_F_EMERG_WRITE, VIRTIO_CONSOLE_F_MULTIPORT, VIRTIO_CONSOLE_F_SIZE } from "../../host/virtio/console";
import { REG_CONFIG, REG_STATUS, INT_CONFIG_CHANGE, REG_INTERRUPT_STATUS } from "../../host/virtio/mmio";
import { TestDriver } from "./helpers";
import { bytesState } from "../../host/devices/state";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

function make(opts: ConstructorParameters<typeof VirtioConsole>[1] = {}) {
  const out: Uint8Array[] = [];
  let spaceCalls = 0;
  const con = new VirtioConsole((b) => out.push(b), { ...opts, onRxSpace: () => spaceCalls++ });
  const d = new TestDriver(con);
  return { con, d, out, text: () => out.map(dec).join(""), spaces: () => spaceCalls };
}

describe("virtio-console output", () => {
  it("hands each transmit buffer to the sink and returns it with length 0", () => {
    const { d, out, text } = make();
    d.init();
    const tx = d.q(1);
    const c = tx.post([{ data: enc("hello, ") }, { data: enc("world\n") }]);
    expect(tx.takeUsed()).toEqual([{ id: c.head, len: 0 }]);
    expect(out).toHaveLength(1);
    expect(text()).toBe("hello, world\n");
    // The sink gets a copy: the guest reusing its buffer does not change what was sent.
    d.ram.write(c.addrs[0]!, enc("XXXXXXX"));
    expect(text()).toBe("hello, world\n");
  });

  it("writes emergency characters at any time, even before the driver is loaded", () => {
    const { d, text } = make();
    expect((d.offered()[0] >>> VIRTIO_CONSOLE_F_EMERG_WRITE) & 1).toBe(1);
    d.mmio.write(REG_CONFIG + 8, 4, 0x4121); // low byte only
    expect(text()).toBe("!");
    expect(d.cfg(8, 4)).toBe(0);
  });
});

describe("virtio-console input", () => {
  it("keeps input that arrives before the driver and delivers it to the first buffers", () => {
    const { con, d, spaces } = make({ rxCapacity: 64 });
    expect(con.receive(enc("early"))).toBe(5);
    expect(con.rxSpace()).toBe(59);
    d.init({ noDriverOk: true });
    const rx = d.q(0);
    const c = rx.post([{ writable: 16 }]);
    expect(rx.takeUsed()).toEqual([]); // not before DRIVER_OK
    d.driverOk();
    expect(rx.takeUsed()).toEqual([{ id: c.head, len: 5 }]);
    expect(dec(d.ram.copy(c.addrs[0]!, 5))).toBe("early");
    expect(con.rxSpace()).toBe(64);
    expect(spaces()).toBe(1);
    expect(d.irq).toBe(true);
  });

  it("delivers at once when buffers are posted, splitting input over them", () => {
    const { con, d } = make();
    d.init();
    const rx = d.q(0);
    const a = rx.post([{ writable: 4 }]);
    const b = rx.post([{ writable: 2 }, { writable: 8 }]);
    expect(con.receive(enc("abcdefghij"))).toBe(10);
    expect(rx.takeUsed()).toEqual([{ id: a.head, len: 4 }, { id: b.head, len: 6 }]);
    expect(dec(d.ram.copy(a.addrs[0]!, 4))).toBe("abcd");
    expect(dec(d.ram.copy(b.addrs[0]!, 2)) + dec(d.ram.copy(b.addrs[1]!, 4))).toBe("efghij");
  });

  it("applies backpressure: takes only rxSpace() bytes and frees space as the guest reads", () => {
    const { con, d, spaces } = make({ rxCapacity: 8 });
    d.init();
    expect(con.receive(enc("0123456789ABCDEF"))).toBe(8);
    expect(con.rxSpace()).toBe(0);
    expect(con.receive(enc("x"))).toBe(0);
    const rx = d.q(0);
    const c1 = rx.post([{ writable: 3 }]);
    expect(dec(d.ram.copy(c1.addrs[0]!, 3))).toBe("012");
    expect(con.rxSpace()).toBe(3);
    expect(spaces()).toBe(1);
    // The FIFO wraps around.
    expect(con.receive(enc("89A"))).toBe(3);
    const c2 = rx.post([{ writable: 32 }]);
    expect(rx.takeUsed().map((u) => u.len)).toEqual([3, 8]);
    expect(dec(d.ram.copy(c2.addrs[0]!, 8))).toBe("3456789A");
    expect(con.rxPending()).toBe(0);
  });

  it("keeps buffered input across a device reset, and in save/restore", () => {
    const { con, d } = make();
    d.init();
    con.receive(enc("typed during probe"));
    d.w(REG_STATUS, 0);
    expect(con.rxPending()).toBe(18);
    const state = con.save();
    const con2 = new VirtioConsole(() => {});
    con2.restore(state);
    expect(con2.rxPending()).toBe(18);
    d.init();
    const c = d.q(0).post([{ writable: 32 }]);
    expect(dec(d.ram.copy(c.addrs[0]!, 18))).toBe("typed during probe");
    expect(() => con2.restore({ ...state, rx: bytesState(new Uint8Array(5000)) })).toThrow(/virtio-console: state.rx must be 0..4096 bytes/);
    expect(() => con2.restore({ ...state, rx: [1, 2] })).toThrow(/state.rx must be 0..4096 bytes in base64, got an array of 2/);
  });
});

describe("virtio-console configuration", () => {
  it("offers SIZE only when a size is given, never MULTIPORT", () => {
    const plain = make();
    const f0 = plain.d.offered()[0];
    expect((f0 >>> VIRTIO_CONSOLE_F_SIZE) & 1).toBe(0);
    expect((f0 >>> VIRTIO_CONSOLE_F_MULTIPORT) & 1).toBe(0);
    const sized = make({ cols: 80, rows: 24 });
    expect((sized.d.offered()[0] >>> VIRTIO_CONSOLE_F_SIZE) & 1).toBe(1);
    expect(sized.d.cfg(0, 2)).toBe(80);
    expect(sized.d.cfg(2, 2)).toBe(24);
    expect(sized.d.cfg(4, 4)).toBe(1); // max_nr_ports
  });

  it("notifies a size change only with SIZE offered", () => {
    const plain = make();
    plain.d.init();
    plain.con.resize(100, 50);
    expect(plain.d.r(REG_INTERRUPT_STATUS)).toBe(0);
    const sized = make({ cols: 80, rows: 24 });
    sized.d.init();
    sized.con.resize(100, 50);
    expect(sized.d.r(REG_INTERRUPT_STATUS)).toBe(INT_CONFIG_CHANGE);
    expect(() => sized.con.resize(70000, 1)).toThrow(/0..65535/);
  });
});
