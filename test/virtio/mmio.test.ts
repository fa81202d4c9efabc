import { describe, expect, it } from "vitest";
import {
  F_ANY_LAYOUT,
  F_RING_EVENT_IDX,
  F_RING_INDIRECT_DESC,
  F_VERSION_1,
  INT_CONFIG_CHANGE,
  INT_USED_BUFFER,
  REG_CONFIG_GENERATION,
  REG_DEVICE_ID,
  REG_DRIVER_FEATURES,
  REG_DRIVER_FEATURES_SEL,
  REG_INTERRUPT_STATUS,
  REG_MAGIC,
  REG_QUEUE_DESC_LOW,
  REG_QUEUE_NUM,
  REG_QUEUE_NUM_MAX,
  REG_QUEUE_PFN,
  REG_QUEUE_READY,
  REG_QUEUE_SEL,
  REG_SHM_BASE_HIGH,
  REG_SHM_BASE_LOW,
  REG_SHM_LEN_HIGH,
  REG_SHM_LEN_LOW,
  REG_SHM_SEL,
  REG_STATUS,
  REG_VENDOR_ID,
  REG_VERSION,
  STATUS_ACKNOWLEDGE,
  STATUS_DEVICE_NEEDS_RESET,
  STATUS_DRIVER,
  STATUS_DRIVER_OK,
  STATUS_FEATURES_OK,
  VIRTIO_MMIO_VENDOR,
  VirtioMmio,
} from "../../host/virtio/mmio";
import { VIRTQ_AVAIL_F_NO_INTERRUPT } from "../../host/virtio/queue";
import { VirtioRng } from "../../host/virtio/rng";
import { VirtioConsole } from "../../host/virtio/console";
import { VirtioBlk, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT } from "../../host/virtio/blk";
import { MemoryDisk } from "../../host/platform/memory/disk";
import { FakeRam, TestDriver, blkHeader, pattern } from "./helpers";

const counter = () => {
  let n = 0;
  return (b: Uint8Array) => {
    for (let i = 0; i < b.length; i++) b[i] = (n++ & 0xff);
  };
};

function rngDriver(opts: ConstructorParameters<typeof TestDriver>[1] = {}) {
  return new TestDriver(new VirtioRng({ source: counter(), queueSize: 16 }), opts);
}

describe("virtio-mmio registers", () => {
  it("identifies itself as a version 2 device with QEMU's vendor id", () => {
    const d = rngDriver();
    expect(d.r(REG_MAGIC)).toBe(0x74726976);
    expect(d.r(REG_VERSION)).toBe(2);
    expect(d.r(REG_DEVICE_ID)).toBe(4);
    expect(d.r(REG_VENDOR_ID)).toBe(VIRTIO_MMIO_VENDOR);
    expect(VIRTIO_MMIO_VENDOR).toBe(0x554d4551); // "QEMU": guests written for QEMU's virt check it
    expect(d.mmio.size).toBe(0x1000);
    expect(d.mmio.name).toBe("virtio-rng");
  });

  it("offers VERSION_1, indirect descriptors and event idx, and only in the right word", () => {
    const d = rngDriver();
    const [lo, hi] = d.offered();
    expect(lo).toBe(((1 << F_RING_INDIRECT_DESC) | (1 << F_RING_EVENT_IDX)) >>> 0);
    expect(hi).toBe(1 << (F_VERSION_1 - 32));
    d.w(0x014, 2); // DeviceFeaturesSel beyond the 64 bits
    expect(d.r(0x010)).toBe(0);
    const bare = rngDriver({ indirectDesc: false, eventIdx: false });
    expect(bare.offered()).toEqual([0, 1]);
  });

  it("ignores narrow or misaligned accesses to control registers", () => {
    const d = rngDriver();
    expect(d.mmio.read(REG_MAGIC, 2)).toBe(0);
    expect(d.mmio.read(REG_MAGIC + 1, 4)).toBe(0);
    d.mmio.write(REG_STATUS, 1, STATUS_ACKNOWLEDGE);
    expect(d.status()).toBe(0);
  });

  it("reports no shared memory regions and a QueueNumMax of 0 for missing queues", () => {
    const d = rngDriver();
    d.w(REG_SHM_SEL, 0);
    for (const r of [REG_SHM_LEN_LOW, REG_SHM_LEN_HIGH, REG_SHM_BASE_LOW, REG_SHM_BASE_HIGH]) expect(d.r(r)).toBe(0xffffffff);
    d.w(REG_QUEUE_SEL, 0);
    expect(d.r(REG_QUEUE_NUM_MAX)).toBe(16);
    d.w(REG_QUEUE_SEL, 1);
    expect(d.r(REG_QUEUE_NUM_MAX)).toBe(0);
    d.w(REG_QUEUE_READY, 1); // nothing happens for a queue that does not exist
    expect(d.r(REG_QUEUE_READY)).toBe(0);
    expect(d.mmio.needsReset).toBe(false);
  });

  it("goes through the Linux initialisation sequence to DRIVER_OK", () => {
    const d = rngDriver();
    expect(d.init()).toBe(true);
    expect(d.status()).toBe(STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
    expect(d.mmio.driverFeatures).toEqual(d.features);
    d.w(REG_QUEUE_SEL, 0);
    expect(d.r(REG_QUEUE_READY)).toBe(1);
    expect(d.r(REG_QUEUE_DESC_LOW)).toBe(d.q(0).desc);
  });

  it("refuses FEATURES_OK for a feature it did not offer", () => {
    const d = rngDriver();
    expect(d.init({ accept: (lo, hi) => [lo | 1, hi] })).toBe(false);
    expect(d.status() & STATUS_FEATURES_OK).toBe(0);
    expect(d.mmio.needsReset).toBe(false);
  });

  it("accepts a modern driver that leaves VERSION_1 out, as QEMU does (xv6's driver), and works", () => {
    const d = rngDriver();
    expect(d.init({ accept: (lo) => [lo, 0] })).toBe(true);
    expect(d.status() & STATUS_FEATURES_OK).toBe(STATUS_FEATURES_OK);
    expect(d.mmio.driverFeatures[1]).toBe(0);
    d.q(0).post([{ writable: 8 }]);
    expect(d.q(0).takeUsed()).toEqual([{ id: 0, len: 8 }]);
  });

  it("accepts any subset, including none of the ring features", () => {
    const d = rngDriver();
    expect(d.init({ accept: (_lo, hi) => [0, hi] })).toBe(true);
    d.q(0).post([{ writable: 8 }]);
    expect(d.q(0).takeUsed()).toEqual([{ id: 0, len: 8 }]);
  });

  it("freezes the driver features at FEATURES_OK", () => {
    const d = rngDriver();
    d.init({ accept: (_lo, hi) => [0, hi] });
    d.w(REG_DRIVER_FEATURES_SEL, 0);
    d.w(REG_DRIVER_FEATURES, 1 << F_RING_EVENT_IDX);
    expect(d.mmio.driverFeatures[0]).toBe(0);
  });

  it("does not let the driver set DEVICE_NEEDS_RESET", () => {
    const d = rngDriver();
    d.w(REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DEVICE_NEEDS_RESET);
    expect(d.status()).toBe(STATUS_ACKNOWLEDGE);
  });

  it("resets on Status 0: queues disabled, interrupt cleared, features forgotten", () => {
    const d = rngDriver();
    d.init();
    d.q(0).post([{ writable: 4 }]);
    expect(d.irq).toBe(true);
    d.w(REG_STATUS, 0);
    expect(d.status()).toBe(0);
    expect(d.irq).toBe(false);
    expect(d.r(REG_INTERRUPT_STATUS)).toBe(0);
    d.w(REG_QUEUE_SEL, 0);
    expect(d.r(REG_QUEUE_READY)).toBe(0);
    expect(d.mmio.driverFeatures).toEqual([0, 0]);
    // and it comes up again
    expect(d.init()).toBe(true);
    d.q(0).post([{ writable: 4 }]);
    expect(d.q(0).takeUsed()).toHaveLength(1);
  });

  it("ignores queue layout writes while the queue is ready", () => {
    const d = rngDriver();
    d.init();
    d.w(REG_QUEUE_SEL, 0);
    d.w(REG_QUEUE_DESC_LOW, 0x1234);
    d.w(REG_QUEUE_NUM, 2);
    expect(d.r(REG_QUEUE_DESC_LOW)).toBe(d.q(0).desc);
    expect(d.r(REG_QUEUE_NUM)).toBe(16);
    d.w(REG_QUEUE_READY, 0);
    expect(d.r(REG_QUEUE_READY)).toBe(0);
    d.w(REG_QUEUE_NUM, 8);
    expect(d.r(REG_QUEUE_NUM)).toBe(8);
  });

  it("raises the interrupt for used buffers and lowers it on InterruptACK", () => {
    const d = rngDriver();
    d.init();
    expect(d.irq).toBe(false);
    d.q(0).post([{ writable: 16 }]);
    expect(d.irq).toBe(true);
    expect(d.r(REG_INTERRUPT_STATUS)).toBe(INT_USED_BUFFER);
    expect(d.ack()).toBe(INT_USED_BUFFER);
    expect(d.irq).toBe(false);
    expect(d.irqLog).toEqual([true, false]);
  });

  it("consumes nothing before DRIVER_OK, then picks up buffers posted early", () => {
    const d = rngDriver();
    d.init({ noDriverOk: true });
    d.q(0).post([{ writable: 8 }]);
    expect(d.q(0).takeUsed()).toEqual([]);
    expect(d.irq).toBe(false);
    d.driverOk();
    expect(d.q(0).takeUsed()).toEqual([{ id: 0, len: 8 }]);
    expect(d.irq).toBe(true);
  });

  it("signals configuration changes with bit 1 and a new ConfigGeneration", () => {
    const con = new VirtioConsole(() => {}, { cols: 80, rows: 25 });
    const d = new TestDriver(con);
    d.init();
    const g = d.r(REG_CONFIG_GENERATION);
    con.resize(132, 43);
    expect(d.r(REG_CONFIG_GENERATION)).not.toBe(g);
    expect(d.r(REG_INTERRUPT_STATUS)).toBe(INT_CONFIG_CHANGE);
    expect(d.irq).toBe(true);
    expect(d.cfg(0, 2)).toBe(132);
    expect(d.cfg(2, 2)).toBe(43);
    d.ack();
    expect(d.irq).toBe(false);
  });
});

describe("used buffer notification suppression", () => {
  it("honours VIRTQ_AVAIL_F_NO_INTERRUPT without event idx", () => {
    const d = rngDriver({ eventIdx: false });
    d.init();
    const q = d.q(0);
    q.setAvailFlags(VIRTQ_AVAIL_F_NO_INTERRUPT);
    q.post([{ writable: 4 }]);
    expect(q.takeUsed()).toHaveLength(1);
    expect(d.irq).toBe(false);
    q.setAvailFlags(0);
    q.post([{ writable: 4 }]);
    expect(d.irq).toBe(true);
  });

  it("interrupts only when used idx passes used_event, and ignores the flag", () => {
    const d = rngDriver();
    d.init();
    expect(d.mmio.driverFeatures[0] & (1 << F_RING_EVENT_IDX)).not.toBe(0);
    const q = d.q(0);
    q.setAvailFlags(VIRTQ_AVAIL_F_NO_INTERRUPT); // must be ignored with event idx
    q.setUsedEvent(2); // wake me when entry 2 is used (the third)
    q.post([{ writable: 4 }]);
    q.post([{ writable: 4 }]);
    expect(q.usedIdx()).toBe(2);
    expect(d.irq).toBe(false);
    q.post([{ writable: 4 }]);
    expect(d.irq).toBe(true);
    d.ack();
    // Batch: three chains made available, one notification; used_event 4 is inside the batch.
    q.setUsedEvent(4);
    q.post([{ writable: 4 }], { notify: false });
    q.post([{ writable: 4 }], { notify: false });
    q.post([{ writable: 4 }], { notify: false });
    q.notify();
    expect(q.usedIdx()).toBe(6);
    expect(d.irq).toBe(true);
    d.ack();
    q.setUsedEvent(100);
    q.post([{ writable: 4 }]);
    expect(d.irq).toBe(false);
  });

  it("publishes avail_event so the driver knows when to notify", () => {
    const d = rngDriver();
    d.init();
    const q = d.q(0);
    q.post([{ writable: 4 }]);
    q.post([{ writable: 4 }]);
    expect(q.availEvent()).toBe(2);
  });
});

describe("indirect descriptors", () => {
  it("serves a blk request described by an indirect table", () => {
    const disk = new MemoryDisk(64 * 512);
    disk.data.set(pattern(1024, 7), 512 * 3);
    const d = new TestDriver(new VirtioBlk(disk));
    d.init();
    const q = d.q(0);
    const c = q.post([{ data: blkHeader(VIRTIO_BLK_T_IN, 3) }, { writable: 512 }, { writable: 512 }, { writable: 1 }], { indirect: true });
    expect(q.takeUsed()).toEqual([{ id: c.head, len: 1025 }]);
    expect(d.ram.copy(c.addrs[1]!, 512)).toEqual(pattern(1024, 7).subarray(0, 512));
    expect(d.ram.copy(c.addrs[2]!, 512)).toEqual(pattern(1024, 7).subarray(512));
    expect(d.ram.u8(c.addrs[3]!)).toBe(0);
  });

  it("accepts direct descriptors followed by an indirect table (spec 2.7.5.3.2)", () => {
    const disk = new MemoryDisk(16 * 512);
    const d = new TestDriver(new VirtioBlk(disk));
    d.init();
    const q = d.q(0);
    const data = pattern(512, 3);
    const hdrAddr = d.ram.alloc(16);
    d.ram.write(hdrAddr, blkHeader(VIRTIO_BLK_T_OUT, 5));
    const dataAddr = d.ram.alloc(512);
    d.ram.write(dataAddr, data);
    const stAddr = d.ram.alloc(1);
    const table = d.ram.alloc(32, 16);
    q.writeDesc(table, 0, dataAddr, 512, 1, 1); // NEXT
    q.writeDesc(table, 1, stAddr, 1, 2, 0); // WRITE
    q.writeDesc(q.desc, 0, hdrAddr, 16, 1, 1); // NEXT -> 1
    q.writeDesc(q.desc, 1, table, 32, 4 | 2, 0); // INDIRECT (WRITE must be ignored)
    q.pushAvail(0);
    q.notify();
    expect(q.takeUsed()).toEqual([{ id: 0, len: 1 }]);
    expect(d.ram.u8(stAddr)).toBe(0);
    expect(disk.data.subarray(5 * 512, 6 * 512)).toEqual(data);
  });
});

describe("legacy interface", () => {
  it("presents version 1, no VERSION_1, ANY_LAYOUT, and ConfigGeneration 0", () => {
    const d = rngDriver({ legacy: true });
    expect(d.r(REG_VERSION)).toBe(1);
    const [lo, hi] = d.offered();
    expect(hi).toBe(0);
    expect(lo & (1 << F_ANY_LAYOUT)).not.toBe(0);
    expect(d.r(REG_CONFIG_GENERATION)).toBe(0);
    expect(d.r(REG_SHM_LEN_LOW)).toBe(0);
  });

  it("sets up queues with GuestPageSize, QueueAlign and QueuePFN and serves requests", () => {
    const disk = new MemoryDisk(32 * 512);
    disk.data.set(pattern(512, 9), 512);
    const d = new TestDriver(new VirtioBlk(disk), { legacy: true });
    expect(d.init()).toBe(true);
    expect(d.status() & STATUS_FEATURES_OK).toBe(0); // no FEATURES_OK in legacy
    d.w(REG_QUEUE_SEL, 0);
    expect(d.r(REG_QUEUE_PFN)).toBe(d.q(0).desc / 4096);
    expect(d.r(REG_QUEUE_READY)).toBe(0); // not a legacy register
    const q = d.q(0);
    // Legacy transitional devices must work through a single descriptor header + data layout too.
    const c = q.post([{ data: blkHeader(VIRTIO_BLK_T_IN, 1) }, { writable: 513 }]);
    expect(q.takeUsed()).toEqual([{ id: c.head, len: 513 }]);
    expect(d.ram.copy(c.addrs[1]!, 512)).toEqual(pattern(512, 9));
    expect(d.irq).toBe(true);
  });

  it("lets a legacy driver use queues before DRIVER_OK", () => {
    const d = rngDriver({ legacy: true });
    d.init({ noDriverOk: true });
    d.q(0).post([{ writable: 4 }]);
    expect(d.q(0).takeUsed()).toHaveLength(1);
  });

  it("keeps GuestPageSize across a reset and clears QueuePFN", () => {
    const d = rngDriver({ legacy: true });
    d.init();
    d.w(REG_STATUS, 0);
    d.w(REG_QUEUE_SEL, 0);
    expect(d.r(REG_QUEUE_PFN)).toBe(0);
    // re-init without rewriting GuestPageSize (Linux writes it only at probe)
    d.w(REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    const q = d.setupQueue(0);
    d.w(REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_DRIVER_OK);
    expect(d.mmio.needsReset).toBe(false);
    q.post([{ writable: 4 }]);
    expect(q.takeUsed()).toHaveLength(1);
  });

  it("drops unoffered feature bits at DRIVER_OK", () => {
    const d = rngDriver({ legacy: true });
    d.init({ accept: (lo) => [lo | 1, 1] });
    expect(d.mmio.driverFeatures).toEqual([((1 << F_RING_INDIRECT_DESC) | (1 << F_RING_EVENT_IDX) | (1 << F_ANY_LAYOUT)) >>> 0, 0]);
  });
});

describe("save and restore", () => {
  it("round-trips a live device into a fresh transport that keeps working", () => {
    const ram = new FakeRam();
    const out: string[] = [];
    const con = new VirtioConsole((b) => out.push(new TextDecoder().decode(b)));
    const d = new TestDriver(con, { ram });
    d.init();
    d.q(1).post([{ data: new TextEncoder().encode("hi") }]);
    con.receive(new TextEncoder().encode("pending")); // no RX buffer yet: stays queued
    const state = JSON.parse(JSON.stringify(d.mmio.save()));

    const con2 = new VirtioConsole(() => {});
    const irqs: boolean[] = [];
    const m2 = new VirtioMmio(con2, ram, (l) => irqs.push(l));
    m2.restore(state);
    expect(irqs).toEqual([true]); // the pending TX interrupt is re-driven
    expect(m2.read(REG_STATUS, 4)).toBe(d.status());
    expect(con2.rxPending()).toBe(7);
    // The driver's queue objects continue against the restored device.
    const q = d.q(0);
    const c = q.post([{ writable: 16 }], { notify: false });
    m2.write(0x050, 4, 0);
    const used = d.ram.u16(q.used + 2);
    expect(used).toBe(1);
    expect(new TextDecoder().decode(d.ram.copy(c.addrs[0]!, 7))).toBe("pending");
  });

  it("rejects malformed state with a clear error and changes nothing", () => {
    const d = rngDriver();
    d.init();
    const good = d.mmio.save();
    const bad = (patch: Record<string, unknown>) => ({ ...good, ...patch });
    expect(() => d.mmio.restore(null as never)).toThrow(/must be an object/);
    expect(() => d.mmio.restore(bad({ kind: "uart" }))).toThrow(/virtio-rng: not a state of kind virtio-mmio/);
    expect(() => d.mmio.restore(bad({ version: 0 }))).toThrow(/virtio-mmio state version 0 is not 1/);
    expect(() => d.mmio.restore(bad({ deviceId: 2 }))).toThrow(/device id/);
    expect(() => d.mmio.restore(bad({ status: 300 }))).toThrow(/status/);
    expect(() => d.mmio.restore(bad({ driverFeatures: [1] }))).toThrow(/driverFeatures/);
    expect(() => d.mmio.restore(bad({ interruptStatus: 4 }))).toThrow(/interruptStatus/);
    expect(() => d.mmio.restore(bad({ queues: [] }))).toThrow(/queues/);
    const q0 = (good.queues as Record<string, unknown>[])[0]!;
    expect(() => d.mmio.restore(bad({ queues: [{ ...q0, size: 3 }] }))).toThrow(/state.queues\[0\].size must be a power of two up to 16 in an enabled queue, got 3/);
    expect(() => d.mmio.restore(bad({ queues: [{ ...q0, desc: [0x10, 0] }] }))).toThrow(/not in RAM/);
    expect(() => d.mmio.restore(bad({ device: { kind: "virtio-net" } }))).toThrow(/virtio-rng/);
    expect(d.mmio.save()).toEqual(good);
    // still operational with the original state
    d.q(0).post([{ writable: 4 }]);
    expect(d.q(0).takeUsed()).toHaveLength(1);
  });

  it("restores the legacy interface from its own state", () => {
    const d = rngDriver({ legacy: true });
    d.init();
    const state = d.mmio.save();
    const m2 = new VirtioMmio(new VirtioRng(), d.ram, () => {}, { legacy: true });
    m2.restore(state);
    m2.write(REG_QUEUE_SEL, 4, 0);
    expect(m2.read(REG_QUEUE_PFN, 4)).toBe(d.q(0).desc / 4096);
    const modern = new VirtioMmio(new VirtioRng(), d.ram, () => {});
    expect(() => modern.restore(state)).toThrow(/legacy/);
  });
});

it("rejects a device whose QueueNumMax is not a power of two", () => {
  const dev = new VirtioRng();
  Object.defineProperty(dev, "queueMaxSizes", { value: [100] });
  expect(() => new VirtioMmio(dev, new FakeRam(), () => {})).toThrow(/power of two/);
});
