/**
 * Every way a guest can hand the device garbage: the device must enter DEVICE_NEEDS_RESET,
 * raise a configuration-change interrupt, stop processing, never throw out of an MMIO access,
 * and work again after the driver resets it.
 */
import { describe, expect, it } from "vitest";
import {
  INT_CONFIG_CHANGE,
  REG_GUEST_PAGE_SIZE,
  REG_INTERRUPT_STATUS,
  REG_QUEUE_DESC_HIGH,
  REG_QUEUE_DESC_LOW,
  REG_QUEUE_DEVICE_LOW,
  REG_QUEUE_DRIVER_LOW,
  REG_QUEUE_NUM,
  REG_QUEUE_PFN,
  REG_QUEUE_READY,
  REG_QUEUE_SEL,
  REG_STATUS,
  STATUS_ACKNOWLEDGE,
  STATUS_DEVICE_NEEDS_RESET,
  STATUS_DRIVER,
  STATUS_DRIVER_OK,
  STATUS_FEATURES_OK,
} from "../../host/virtio/mmio";
import { MAX_CHAIN_BYTES, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from "../../host/virtio/queue";
import { VirtioRng } from "../../host/virtio/rng";
import { VirtioBlk, VIRTIO_BLK_T_IN } from "../../host/virtio/blk";
import { VirtioNet } from "../../host/virtio/net";
import { MemoryDisk } from "../../host/platform/memory/disk";
import type { NetBackend } from "../../host/devices/backends";
import { FakeRam, TestDriver, blkHeader, type DriverQueue } from "./helpers";

const N = 8; // queue size used by these tests
const NEXT = VIRTQ_DESC_F_NEXT, WRITE = VIRTQ_DESC_F_WRITE, INDIRECT = VIRTQ_DESC_F_INDIRECT;

function rng(opts: { indirectDesc?: boolean; ramSize?: number } = {}) {
  const errors: string[] = [];
  const ram = new FakeRam(undefined, opts.ramSize);
  const d = new TestDriver(new VirtioRng({ source: (b) => b.fill(0xab), queueSize: N }), { ...opts, ram, onError: (m) => errors.push(m) });
  d.init();
  return { d, q: d.q(0), errors };
}

/** The device is broken in the documented way, and recovers after a reset. */
function expectNeedsResetThenRecover(d: TestDriver, errors: string[], match: RegExp) {
  expect(d.status() & STATUS_DEVICE_NEEDS_RESET).toBe(STATUS_DEVICE_NEEDS_RESET);
  expect(d.r(REG_INTERRUPT_STATUS) & INT_CONFIG_CHANGE).toBe(INT_CONFIG_CHANGE);
  expect(d.irq).toBe(true);
  expect(errors).toHaveLength(1);
  expect(errors[0]).toMatch(match);
  expect(d.mmio.lastError).toMatch(match);
  // Stopped: a well-formed request is not processed while broken.
  const q = d.queues[0];
  if (q) {
    const before = q.usedIdx();
    expect(() => q.post([{ writable: 4 }])).not.toThrow();
    expect(q.usedIdx()).toBe(before);
  }
  // Reset and re-initialise: works again.
  d.w(REG_STATUS, 0);
  expect(d.status()).toBe(0);
  expect(d.irq).toBe(false);
  expect(d.mmio.lastError).toBeNull();
  expect(d.init()).toBe(true);
  return d;
}

function rngWorks(d: TestDriver) {
  const q = d.q(0);
  const c = q.post([{ writable: 8 }]);
  expect(q.takeUsed()).toEqual([{ id: c.head, len: 8 }]);
  expect(d.status() & STATUS_DEVICE_NEEDS_RESET).toBe(0);
}

function kick(q: DriverQueue, head: number) {
  q.pushAvail(head);
  q.notify();
}

describe("malformed descriptor chains", () => {
  const cases: [string, (d: TestDriver, q: DriverQueue) => void, RegExp, { indirectDesc?: boolean; ramSize?: number }?][] = [
    ["a buffer outside RAM", (_d, q) => {
      q.writeDesc(q.desc, 0, 0x1000, 64, WRITE, 0);
      kick(q, 0);
    }, /not in RAM/],
    ["a buffer that runs off the end of RAM", (d, q) => {
      q.writeDesc(q.desc, 0, d.ram.base + d.ram.size - 4, 64, WRITE, 0);
      kick(q, 0);
    }, /not in RAM/],
    ["a buffer address beyond 2^53", (d, q) => {
      q.writeDesc(q.desc, 0, d.ram.base, 64, WRITE, 0);
      d.ram.set32(q.desc + 4, 0xffffffff);
      kick(q, 0);
    }, /not in RAM/],
    ["a descriptor cycle", (d, q) => {
      const b = d.ram.alloc(8);
      q.writeDesc(q.desc, 0, b, 8, WRITE | NEXT, 1);
      q.writeDesc(q.desc, 1, b, 8, WRITE | NEXT, 2);
      q.writeDesc(q.desc, 2, b, 8, WRITE | NEXT, 0);
      kick(q, 0);
    }, /loops/],
    ["a descriptor pointing at itself", (d, q) => {
      q.writeDesc(q.desc, 3, d.ram.alloc(8), 8, WRITE | NEXT, 3);
      kick(q, 3);
    }, /loops/],
    ["a chain longer than the queue (direct + indirect)", (d, q) => {
      const b = d.ram.alloc(8);
      const table = d.ram.alloc(16 * N, 16);
      for (let i = 0; i < N; i++) q.writeDesc(table, i, b, 8, WRITE | (i + 1 < N ? NEXT : 0), i + 1);
      q.writeDesc(q.desc, 0, b, 8, WRITE | NEXT, 1);
      q.writeDesc(q.desc, 1, table, 16 * N, INDIRECT, 0);
      kick(q, 0);
    }, /longer than the queue size/],
    ["an indirect table larger than the queue", (d, q) => {
      const table = d.ram.alloc(16 * (N + 1), 16);
      q.writeDesc(q.desc, 0, table, 16 * (N + 1), INDIRECT, 0);
      kick(q, 0);
    }, /longer than the queue size/],
    ["a loop inside an indirect table", (d, q) => {
      const b = d.ram.alloc(8);
      const table = d.ram.alloc(32, 16);
      q.writeDesc(table, 0, b, 8, WRITE | NEXT, 1);
      q.writeDesc(table, 1, b, 8, WRITE | NEXT, 0);
      q.writeDesc(q.desc, 0, table, 32, INDIRECT, 0);
      kick(q, 0);
    }, /loops/],
    ["an indirect table length that is not a multiple of 16", (d, q) => {
      q.writeDesc(q.desc, 0, d.ram.alloc(24, 16), 24, INDIRECT, 0);
      kick(q, 0);
    }, /multiple of 16/],
    ["an empty indirect table", (d, q) => {
      q.writeDesc(q.desc, 0, d.ram.alloc(16, 16), 0, INDIRECT, 0);
      kick(q, 0);
    }, /multiple of 16/],
    ["an indirect table outside RAM", (_d, q) => {
      q.writeDesc(q.desc, 0, 0x2000, 32, INDIRECT, 0);
      kick(q, 0);
    }, /indirect table .* not in RAM/],
    ["a nested indirect table", (d, q) => {
      const inner = d.ram.alloc(16, 16);
      q.writeDesc(inner, 0, d.ram.alloc(8), 8, WRITE, 0);
      const outer = d.ram.alloc(16, 16);
      q.writeDesc(outer, 0, inner, 16, INDIRECT, 0);
      q.writeDesc(q.desc, 0, outer, 16, INDIRECT, 0);
      kick(q, 0);
    }, /nested indirect/],
    ["an indirect descriptor with NEXT", (d, q) => {
      const table = d.ram.alloc(16, 16);
      q.writeDesc(table, 0, d.ram.alloc(8), 8, WRITE, 0);
      q.writeDesc(q.desc, 0, table, 16, INDIRECT | NEXT, 1);
      q.writeDesc(q.desc, 1, d.ram.alloc(8), 8, WRITE, 0);
      kick(q, 0);
    }, /also has NEXT/],
    ["an indirect descriptor that was not negotiated", (d, q) => {
      const table = d.ram.alloc(16, 16);
      q.writeDesc(table, 0, d.ram.alloc(8), 8, WRITE, 0);
      q.writeDesc(q.desc, 0, table, 16, INDIRECT, 0);
      kick(q, 0);
    }, /without VIRTIO_F_RING_INDIRECT_DESC/, { indirectDesc: false }],
    ["a readable descriptor after a writable one", (d, q) => {
      q.writeDesc(q.desc, 0, d.ram.alloc(8), 8, WRITE | NEXT, 1);
      q.writeDesc(q.desc, 1, d.ram.alloc(8), 8, 0, 0);
      kick(q, 0);
    }, /readable descriptor after a device-writable/],
    ["a huge descriptor length", (d, q) => {
      q.writeDesc(q.desc, 0, d.ram.base, 0xffffffff, WRITE, 0);
      kick(q, 0);
    }, /larger than/],
    ["lengths whose sum exceeds the cap", (d, q) => {
      // Each part is in RAM on its own; only the sum is too large.
      const half = MAX_CHAIN_BYTES / 2 + 1;
      q.writeDesc(q.desc, 0, d.ram.base, half, 0 | NEXT, 1);
      q.writeDesc(q.desc, 1, d.ram.base, half, WRITE, 0);
      kick(q, 0);
    }, /larger than/, { ramSize: MAX_CHAIN_BYTES / 2 + 4096 }],
    ["a next index outside the table", (d, q) => {
      q.writeDesc(q.desc, 0, d.ram.alloc(8), 8, WRITE | NEXT, N);
      kick(q, 0);
    }, /outside its table/],
    ["a head index outside the queue", (_d, q) => {
      kick(q, N);
    }, /head descriptor 8 is outside/],
    ["an available idx more than a queue ahead", (d, q) => {
      q.writeDesc(q.desc, 0, d.ram.alloc(8), 8, WRITE, 0);
      d.ram.set16(q.avail + 2, N + 1);
      q.notify();
    }, /more than the queue size/],
    ["an available idx that went backwards", (d, q) => {
      q.post([{ writable: 4 }]);
      d.ram.set16(q.avail + 2, 0xffff);
      q.notify();
    }, /more than the queue size/],
  ];

  for (const [what, make, match, opts] of cases) {
    it(`enters DEVICE_NEEDS_RESET on ${what}`, () => {
      const { d, q, errors } = rng(opts);
      expect(() => make(d, q)).not.toThrow();
      expect(q.usedIdx()).toBe(what.includes("backwards") ? 1 : 0);
      expectNeedsResetThenRecover(d, errors, match);
      rngWorks(d);
    });
  }

  it("reports only the first fault until the reset", () => {
    const { d, q, errors } = rng();
    q.writeDesc(q.desc, 0, 0x1000, 8, WRITE, 0);
    kick(q, 0);
    kick(q, 0);
    d.w(REG_QUEUE_SEL, 0);
    expect(errors).toHaveLength(1);
  });

  it("does not notify a driver that is not live, but still sets the bit", () => {
    // Broken before DRIVER_OK (bad ring at QueueReady): the bit and the interrupt are raised.
    const errors: string[] = [];
    const d = new TestDriver(new VirtioRng({ queueSize: N }), { onError: (m) => errors.push(m) });
    d.w(REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    d.w(REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
    d.w(REG_QUEUE_SEL, 0);
    d.w(REG_QUEUE_READY, 1); // all addresses 0: not RAM
    expect(d.status() & STATUS_DEVICE_NEEDS_RESET).toBe(STATUS_DEVICE_NEEDS_RESET);
    expect(d.irq).toBe(true);
    expect(errors[0]).toMatch(/descriptor table at 0x0 is not in RAM/);
  });
});

describe("malformed queue setup", () => {
  function setup(mutate: (d: TestDriver) => void, match: RegExp) {
    const errors: string[] = [];
    const d = new TestDriver(new VirtioRng({ queueSize: N }), { onError: (m) => errors.push(m) });
    d.w(REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    const [lo, hi] = d.offered();
    d.w(0x024, 1);
    d.w(0x020, hi);
    d.w(0x024, 0);
    d.w(0x020, lo);
    d.w(REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
    d.w(REG_QUEUE_SEL, 0);
    const desc = d.ram.alloc(16 * N, 16), avail = d.ram.alloc(6 + 2 * N, 2), used = d.ram.alloc(6 + 8 * N, 4);
    d.w(REG_QUEUE_NUM, N);
    d.w(REG_QUEUE_DESC_LOW, desc);
    d.w(REG_QUEUE_DRIVER_LOW, avail);
    d.w(REG_QUEUE_DEVICE_LOW, used);
    mutate(d);
    expect(() => d.w(REG_QUEUE_READY, 1)).not.toThrow();
    d.w(REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
    expect(d.r(REG_QUEUE_READY)).toBe(0);
    d.queues = [];
    expectNeedsResetThenRecover(d, errors, match);
    rngWorks(d);
  }

  it("rejects a queue size that is not a power of two", () => setup((d) => d.w(REG_QUEUE_NUM, 6), /size 6 is not a power of two/));
  it("rejects a queue size of zero", () => setup((d) => d.w(REG_QUEUE_NUM, 0), /size 0 /));
  it("rejects a queue size above QueueNumMax", () => setup((d) => d.w(REG_QUEUE_NUM, 2 * N), /size 16 /));
  it("rejects a descriptor table outside RAM", () => setup((d) => d.w(REG_QUEUE_DESC_LOW, 0x4000), /descriptor table .* not in RAM/));
  it("rejects an available ring outside RAM", () => setup((d) => d.w(REG_QUEUE_DRIVER_LOW, 0x4000), /available ring .* not in RAM/));
  it("rejects a used ring running past the end of RAM", () => setup((d) => d.w(REG_QUEUE_DEVICE_LOW, d.ram.base + d.ram.size - 8), /used ring .* not in RAM/));
  it("rejects a ring address beyond 2^53", () => setup((d) => d.w(REG_QUEUE_DESC_HIGH, 0x00400000), /beyond 2\^53/));
  it("rejects a misaligned descriptor table", () => setup((d) => d.w(REG_QUEUE_DESC_LOW, d.ram.alloc(16 * N + 8, 16) + 8), /misaligned/));

  it("rejects a legacy queue with a GuestPageSize that is not a power of two", () => {
    const errors: string[] = [];
    const d = new TestDriver(new VirtioRng({ queueSize: N }), { legacy: true, onError: (m) => errors.push(m) });
    d.w(REG_GUEST_PAGE_SIZE, 3000);
    d.w(REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    d.w(REG_QUEUE_SEL, 0);
    d.w(REG_QUEUE_NUM, N);
    expect(() => d.w(REG_QUEUE_PFN, (d.ram.alloc(0x2000, 4096)) / 4096)).not.toThrow();
    expect(d.status() & STATUS_DEVICE_NEEDS_RESET).toBe(STATUS_DEVICE_NEEDS_RESET);
    expect(errors[0]).toMatch(/GuestPageSize 3000/);
    d.w(REG_STATUS, 0);
    d.w(REG_GUEST_PAGE_SIZE, 4096);
    expect(d.init()).toBe(true);
    rngWorks(d);
  });

  it("rejects a legacy queue page outside RAM", () => {
    const errors: string[] = [];
    const d = new TestDriver(new VirtioRng({ queueSize: N }), { legacy: true, onError: (m) => errors.push(m) });
    d.w(REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    d.w(REG_QUEUE_SEL, 0);
    d.w(REG_QUEUE_PFN, 0xfffff);
    expect(errors[0]).toMatch(/not in RAM/);
    expect(d.irq).toBe(true);
  });
});

describe("malformed device requests", () => {
  function blk() {
    const errors: string[] = [];
    const d = new TestDriver(new VirtioBlk(new MemoryDisk(64 * 512)), { onError: (m) => errors.push(m) });
    d.init();
    return { d, q: d.q(0), errors };
  }

  function blkWorks(d: TestDriver) {
    const c = d.q(0).post([{ data: blkHeader(VIRTIO_BLK_T_IN, 0) }, { writable: 512 }, { writable: 1 }]);
    expect(d.q(0).takeUsed()).toEqual([{ id: c.head, len: 513 }]);
  }

  it("blk: a header shorter than 16 bytes", () => {
    const { d, q, errors } = blk();
    q.post([{ data: blkHeader(VIRTIO_BLK_T_IN, 0).subarray(0, 12) }, { writable: 1 }]);
    expect(q.takeUsed()).toEqual([]);
    expectNeedsResetThenRecover(d, errors, /header is 12 bytes/);
    blkWorks(d);
  });

  it("blk: no status byte", () => {
    const { d, q, errors } = blk();
    q.post([{ data: blkHeader(VIRTIO_BLK_T_IN, 0) }]);
    expectNeedsResetThenRecover(d, errors, /no status byte/);
    blkWorks(d);
  });

  it("blk: stops at the bad request but keeps the good ones before it", () => {
    const { d, q, errors } = blk();
    q.post([{ data: blkHeader(VIRTIO_BLK_T_IN, 0) }, { writable: 1 }], { notify: false });
    q.post([{ data: blkHeader(VIRTIO_BLK_T_IN, 0) }], { notify: false });
    q.post([{ data: blkHeader(VIRTIO_BLK_T_IN, 0) }, { writable: 1 }], { notify: false });
    q.notify();
    expect(q.takeUsed()).toHaveLength(1);
    expect(errors).toHaveLength(1);
  });

  it("net: a transmit buffer shorter than the header", () => {
    const sent: Uint8Array[] = [];
    const backend: NetBackend = { send: (f) => sent.push(f), attach: () => {}, close: () => {} };
    const errors: string[] = [];
    const d = new TestDriver(new VirtioNet(backend), { onError: (m) => errors.push(m) });
    d.init();
    d.q(1).post([{ data: new Uint8Array(11) }]);
    expect(sent).toHaveLength(0);
    expectNeedsResetThenRecover(d, errors, /shorter than the 12-byte header/);
    d.q(1).post([{ data: new Uint8Array(12 + 60) }]);
    expect(sent).toHaveLength(1);
  });

  it("turns an exception inside a device into DEVICE_NEEDS_RESET instead of throwing", () => {
    const dev = new VirtioRng({ source: () => { throw new Error("entropy pool on fire"); }, queueSize: N });
    const errors: string[] = [];
    const d = new TestDriver(dev, { onError: (m) => errors.push(m) });
    d.init();
    expect(() => d.q(0).post([{ writable: 4 }])).not.toThrow();
    expect(d.status() & STATUS_DEVICE_NEEDS_RESET).toBe(STATUS_DEVICE_NEEDS_RESET);
    expect(errors[0]).toMatch(/entropy pool on fire/);
  });
});
