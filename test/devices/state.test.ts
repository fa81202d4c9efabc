// Device state in one shape: every device saves plain JSON data with its kind and version, takes
// it back after a JSON round trip into a fresh device (the VM moved to another thread) and goes
// on as before, and refuses a malformed state with an Error naming the device and the field,
// changing nothing. Time is simulated: nothing here depends on the host's clock.
import { describe, expect, it } from "vitest";
import { StateReader, bytesState, u64State, wordsState, type DeviceState } from "../../host/devices/state";
import { SifiveTest } from "../../host/devices/sifive-test";
import { GoldfishRtc } from "../../host/devices/goldfish-rtc";
import { Uart16550 } from "../../host/devices/uart16550";
import { Plic } from "../../host/devices/plic";
import { AtaDisk } from "../../host/devices/ata";
import { ETHOC_BD_BASE, Ethoc, INT_MASK, MODER, MODER_RXEN, MODER_TXEN } from "../../host/devices/ethoc";
import { TokenBucket } from "../../host/devices/rate-limit";
import { VirtioBlk, VIRTIO_BLK_S_OK, VIRTIO_BLK_T_IN } from "../../host/virtio/blk";
import { VirtioNet } from "../../host/virtio/net";
import { VirtioConsole } from "../../host/virtio/console";
import { VirtioRng } from "../../host/virtio/rng";
import { MemoryDisk } from "../../host/platform/memory/disk";
import { FakeRam, LoopBackend, TestDriver, blkHeader, pattern } from "../virtio/helpers";

/** What every saved thing offers. */
interface Saves {
  save(): DeviceState;
  restore(state: unknown): void;
}

/**
 * A device family: `used()` makes one with something in every part of its state, `fresh()` one
 * as the target machine builds it, `probe()` observes behaviour (the same calls on two devices
 * in the same state give the same answers), `who` is how errors name it.
 */
interface Family<D extends Saves> {
  who: string;
  used(): D;
  fresh(): D;
  probe(d: D): unknown;
}

const clock = { ms: 1000, ns: 5_000_000_000n };
const msClock = () => clock.ms;
const broadcast = (len: number, seed: number) => {
  const f = pattern(len, seed);
  f.fill(0xff, 0, 6);
  return f;
};

function uart() {
  return new Uart16550(() => {}, () => {});
}

function plic() {
  return new Plic({ set() {} }, 2);
}

function ata(disk = new MemoryDisk(Uint8Array.from(pattern(64 * 512, 7)))) {
  return new AtaDisk("ata0", disk, () => {});
}

function ethoc() {
  return new Ethoc("ethoc0", new LoopBackend(), new FakeRam(), () => {}, { mac: "52:54:00:12:34:56" });
}

function blkDriver(disk = new MemoryDisk(128 * 512)) {
  const limit = { bytes: new TokenBucket(4096, 4096, msClock) };
  return new TestDriver(new VirtioBlk(disk, { limit, clock: msClock }), { name: "virtio0-blk" });
}

function netDriver() {
  const txLimit = { bytes: new TokenBucket(1000, 100, msClock) };
  return new TestDriver(new VirtioNet(new LoopBackend(), { txLimit, clock: msClock }), { name: "virtio1-net" });
}

const families: Record<string, Family<Saves>> = {
  "sifive-test": { who: "test", used: () => new SifiveTest(() => {}), fresh: () => new SifiveTest(() => {}), probe: (d) => (d as SifiveTest).read(0, 4) },
  "goldfish-rtc": {
    who: "rtc",
    used: () => {
      const rtc = new GoldfishRtc(() => {}, () => clock.ns);
      rtc.write(0x04, 4, 7); // TIME_HIGH: the guest set the clock
      rtc.write(0x10, 4, 1); // IRQ_ENABLED
      rtc.write(0x0c, 4, 8); // ALARM_HIGH, then ALARM_LOW arms it
      rtc.write(0x08, 4, 1234);
      rtc.read(0x00, 4); // TIME_LOW latches TIME_HIGH
      return rtc;
    },
    fresh: () => new GoldfishRtc(() => {}, () => clock.ns),
    probe: (d) => [0x04, 0x08, 0x0c, 0x10, 0x18, 0x00, 0x04].map((o) => (d as GoldfishRtc).read(o, 4)),
  },
  ns16550a: {
    who: "uart0",
    used: () => {
      const u = uart();
      for (const [o, v] of [[2, 0x41], [1, 0x0f], [3, 0x83], [0, 3], [1, 1], [3, 0x03], [7, 0x5a], [4, 0x0b]]) u.write(o!, 1, v!);
      for (const b of [1, 2, 3]) u.receive(b);
      return u;
    },
    fresh: uart,
    probe: (d) => [2, 5, 6, 0, 0, 7, 4, 3, 5].map((o) => (d as Uart16550).read(o, 1)),
  },
  plic: {
    who: "plic",
    used: () => {
      const p = plic();
      p.write(4 * 5, 4, 3);
      p.write(4 * 10, 4, 7);
      p.write(0x2000 + 0x80, 4, (1 << 5) | (1 << 10)); // context 1 (hart 0, S) enables 5 and 10
      p.write(0x200000 + 0x1000, 4, 1); // its threshold
      p.setLevel(5, true);
      p.setLevel(10, true);
      p.read(0x200000 + 0x1000 + 4, 4); // claims 10
      return p;
    },
    fresh: plic,
    probe: (d) => [0x1000, 0x2080, 0x201000, 0x201004, 0x201004, 4 * 5].map((o) => (d as Plic).read(o, 4)),
  },
  ata: {
    who: "ata0",
    used: () => {
      const a = ata();
      for (const [reg, v] of [[2, 4], [3, 2], [4, 0], [5, 0], [6, 0x40], [7, 0x20]]) a.write(reg! << 2, 1, v!); // READ SECTORS 4 at 2
      for (let i = 0; i < 100; i++) a.read(0, 2);
      return a;
    },
    fresh: () => ata(),
    probe: (d) => [0x100, 0x100, ...Array.from({ length: 200 }, () => 0), 7 << 2].map((o) => (d as AtaDisk).read(o, 2)),
  },
  ethoc: {
    who: "ethoc0",
    used: () => {
      const e = ethoc();
      e.write(INT_MASK, 4, 0x7f);
      e.write(MODER, 4, MODER_RXEN | MODER_TXEN);
      e.write(ETHOC_BD_BASE + 8 * 70 + 4, 4, 0x8010_0000); // a receive buffer address, not yet EMPTY
      for (let i = 0; i < 3; i++) e.receive(broadcast(60 + i, i)); // no EMPTY descriptor: they wait
      e.receive(pattern(60, 9).fill(2, 0, 1)); // for another MAC: dropped, and counted
      return e;
    },
    fresh: ethoc,
    probe: (d) => [(d as Ethoc).pendingRx(), { ...(d as Ethoc).stats }, ...[MODER, INT_MASK, 0x04, ETHOC_BD_BASE + 8 * 70 + 4].map((o) => (d as Ethoc).read(o, 4))],
  },
  "token-bucket": {
    who: "bucket",
    used: () => {
      const b = new TokenBucket(1000, 100, msClock);
      b.take(150); // in debt
      return bucket(b);
    },
    fresh: () => bucket(new TokenBucket(1000, 100, msClock)),
    probe: (d) => (d as ReturnType<typeof bucket>).bucket.waitMs(10),
  },
  "virtio-mmio with virtio-blk": {
    who: "virtio0-blk",
    used: () => {
      const d = blkDriver();
      d.init();
      for (let i = 0; i < 2; i++) d.q(0).post([{ data: blkHeader(VIRTIO_BLK_T_IN, 0) }, { writable: 4096 }, { writable: 1 }]);
      return d.mmio; // the second read waits for its bucket
    },
    fresh: () => blkDriver().mmio,
    probe: (d) => [(d as TestDriver["mmio"]).retryMs(), ...[0x070, 0x060, 0x0fc].map((o) => (d as TestDriver["mmio"]).read(o, 4))],
  },
  "virtio-mmio with virtio-net": {
    who: "virtio1-net",
    used: () => {
      const d = netDriver();
      d.init();
      for (let i = 0; i < 2; i++) d.q(1).post([{ data: new Uint8Array(12) }, { data: broadcast(100, i) }]);
      for (let i = 0; i < 3; i++) (d.device as VirtioNet).receive(broadcast(80, i)); // no receive buffers yet
      return d.mmio;
    },
    fresh: () => netDriver().mmio,
    probe: (d) => [(d as TestDriver["mmio"]).retryMs(), ((d as TestDriver["mmio"]).device as VirtioNet).pendingRx()],
  },
  "virtio-console": {
    who: "virtio-console",
    used: () => {
      const c = new VirtioConsole(() => {}, { cols: 80, rows: 24 });
      c.receive(new TextEncoder().encode("typed ahead"));
      return c;
    },
    fresh: () => new VirtioConsole(() => {}, { cols: 80, rows: 24 }),
    probe: (d) => [(d as VirtioConsole).rxPending(), (d as VirtioConsole).readConfig(0, 4)],
  },
  "virtio-rng": { who: "virtio-rng", used: () => new VirtioRng(), fresh: () => new VirtioRng(), probe: () => null },
};

/** A bucket with the restore() of every other device (buckets are named by their owner). */
function bucket(b: TokenBucket) {
  return { bucket: b, save: () => b.save(), restore: (s: unknown) => b.restore(s, "bucket") };
}

/** The same value of another JSON type: what a corrupted or foreign state holds. */
function illTyped(v: unknown): unknown {
  if (v === null) return {};
  if (Array.isArray(v)) return {};
  if (typeof v === "object") return [];
  if (typeof v === "number") return String(v);
  if (typeof v === "string") return 1;
  return 0;
}

describe.each(Object.entries(families))("%s state", (_, f) => {
  it("is plain JSON data with a kind and a version", () => {
    const s = f.used().save();
    expect(typeof s.kind).toBe("string");
    expect(s.version).toBe(1);
    expect(JSON.parse(JSON.stringify(s))).toStrictEqual(s); // no bigint, typed array, undefined
    expect(structuredClone(s)).toStrictEqual(s);
  });

  it("round-trips through JSON into a fresh device that behaves the same", () => {
    const a = f.used();
    const state = JSON.parse(JSON.stringify(a.save()));
    const b = f.fresh();
    b.restore(state);
    expect(b.save()).toStrictEqual(state);
    expect(f.probe(b)).toEqual(f.probe(a));
    expect(b.save()).toStrictEqual(a.save());
  });

  it("refuses a state of another kind or version, naming the device, and changes nothing", () => {
    const d = f.used();
    const good = d.save();
    expect(() => d.restore({ ...good, kind: "other" })).toThrow(new RegExp(`^${f.who}: not a state of kind ${good.kind} \\(its kind is "other"\\)`));
    expect(() => d.restore({ ...good, version: 2 })).toThrow(new RegExp(`^${f.who}: ${good.kind} state version 2 is not 1`));
    expect(() => d.restore([good])).toThrow(new RegExp(`^${f.who}: state must be an object`));
    expect(() => d.restore(null)).toThrow(new RegExp(`^${f.who}: state must be an object`));
    expect(d.save()).toStrictEqual(good);
  });

  it("refuses a missing or ill-typed field, naming the device and the field, and changes nothing", () => {
    const d = f.used();
    const good = d.save();
    for (const field of Object.keys(good).filter((k) => k !== "kind" && k !== "version")) {
      const { [field]: value, ...missing } = good;
      for (const bad of [missing, { ...good, [field]: illTyped(value) }]) {
        expect(() => d.restore(bad), field).toThrow(new RegExp(`^${f.who}: state\\.${field}\\b`));
        expect(d.save(), field).toStrictEqual(good);
      }
    }
  });
});

describe("the devices behind a virtio transport", () => {
  // Their states are part of the transport's; they name themselves by their type.
  const devices: [string, () => Saves][] = [
    ["virtio-blk", () => new VirtioBlk(new MemoryDisk(4096), { clock: msClock })],
    ["virtio-net", () => new VirtioNet(new LoopBackend(), { clock: msClock })],
  ];
  it.each(devices)("%s refuses a malformed field by name", (who, make) => {
    const d = make();
    const good = d.save();
    for (const field of Object.keys(good).filter((k) => k !== "kind" && k !== "version")) {
      expect(() => d.restore({ ...good, [field]: illTyped(good[field]) }), field).toThrow(new RegExp(`^${who}: state\\.${field}\\b`));
    }
    expect(d.save()).toStrictEqual(good);
  });
});

describe("a rate-limited virtio-blk request waiting for its bucket", () => {
  it("survives save and restore on another thread's clock, and completes when its time comes", () => {
    const here = { t: 0 };
    const disk = new MemoryDisk(Uint8Array.from(pattern(128 * 512, 3)));
    const limit = { bytes: new TokenBucket(4096, 4096, () => here.t) }; // one 4 KiB read per second
    const d = new TestDriver(new VirtioBlk(disk, { limit, clock: () => here.t }));
    d.init();
    const q = d.q(0);
    const read = () => q.post([{ data: blkHeader(VIRTIO_BLK_T_IN, 8) }, { writable: 4096 }, { writable: 1 }]);
    read();
    expect(q.takeUsed()).toHaveLength(1);
    here.t = 250;
    const held = read();
    expect(q.takeUsed()).toEqual([]); // its bucket is short: it waits in the queue
    expect(d.mmio.retryMs()).toBeCloseTo(750, 6);
    const state = JSON.parse(JSON.stringify({ transport: d.mmio.save(), bucket: limit.bytes.save() }));

    // Elsewhere, a clock that reads something else entirely.
    const there = { t: 9_000_000 };
    const limit2 = { bytes: new TokenBucket(4096, 4096, () => there.t) };
    d.moveTo(new VirtioBlk(disk, { limit: limit2, clock: () => there.t }), state.transport);
    limit2.bytes.restore(state.bucket, "disk-bytes");
    expect(d.mmio.retryMs()).toBeCloseTo(750, 6); // the wait left, not a time on the old clock
    there.t += 700;
    expect(d.mmio.retryMs()).toBeCloseTo(50, 6);
    d.mmio.retry(); // early: the bucket still says no, and the request keeps waiting
    expect(q.takeUsed()).toEqual([]);
    there.t += 50;
    expect(d.mmio.retryMs()).toBe(0);
    d.mmio.retry(); // what the machine does when retryMs() reaches 0
    const used = q.takeUsed();
    expect(used.map((u) => u.id)).toEqual([held.head]);
    expect(d.ram.u8(held.addrs[2]!)).toBe(VIRTIO_BLK_S_OK);
    expect(d.ram.copy(held.addrs[1]!, 4096)).toEqual(disk.data.subarray(8 * 512, 8 * 512 + 4096));
    expect(d.mmio.retryMs()).toBe(Infinity);
  });

  it("keeps its bucket's debt: a bucket restored full would let the next request through at once", () => {
    const t = { ms: 0 };
    const a = new TokenBucket(1000, 100, () => t.ms);
    a.take(300); // 200 in debt
    const b = new TokenBucket(1000, 100, () => 5e9);
    b.restore(JSON.parse(JSON.stringify(a.save())), "net-tx-bytes");
    expect(b.waitMs(100)).toBeCloseTo(300, 6);
    expect(() => b.restore({ ...a.save(), rate: 2000 }, "net-tx-bytes")).toThrow(/net-tx-bytes: state is for 2000\/s in bursts of 100, this bucket has 1000\/s/);
    expect(() => b.restore({ ...a.save(), tokens: 101 }, "net-tx-bytes")).toThrow(/net-tx-bytes: state.tokens must be a number in/);
  });
});

describe("StateReader and the state encodings", () => {
  const read = (fields: Record<string, unknown>) => StateReader.open({ kind: "k", version: 1, ...fields }, "dev", "k", 1);

  it("round-trips bytes of every length through base64, and refuses anything but strict base64", () => {
    for (const n of [0, 1, 2, 3, 4, 5, 100, 0x8000, 0x8001, 100_000]) {
      const b = pattern(n, n);
      expect(read({ b: bytesState(b) }).bytes("b", 0, n)).toEqual(b);
    }
    expect(() => read({ b: bytesState(new Uint8Array(3)) }).bytes("b", 0, 2)).toThrow(/^dev: state.b must be 0..2 bytes in base64, got "AAAA"$/);
    for (const bad of ["AAA", "AA=A", "A===", "AAAA\n", " AAAA", "AA-_", [0, 0]]) {
      expect(() => read({ b: bad }).bytes("b", 0, 10), String(bad)).toThrow(/^dev: state.b must be 0..10 bytes in base64/);
    }
  });

  it("reads u64s from decimal strings and words from arrays, checking each", () => {
    expect(read({ v: u64State(-1n) }).u64("v")).toBe(2n ** 64n - 1n);
    for (const bad of ["18446744073709551616", "-1", "01", "0x10", 5]) expect(() => read({ v: bad }).u64("v"), String(bad)).toThrow(/^dev: state.v must be a u64/);
    expect(read({ w: wordsState(Uint32Array.of(1, 0xffffffff)) }).words("w", 2)).toEqual(Uint32Array.of(1, 0xffffffff));
    expect(() => read({ w: [1, -1] }).words("w", 2)).toThrow(/^dev: state.w\[1\] must be an integer in 0..4294967295, got -1$/);
    expect(() => read({ w: [1] }).words("w", 2)).toThrow(/^dev: state.w must be an array of 2..2 items, got an array of 1$/);
  });

  it("names nested fields by their path, and takes null only where a field may be absent", () => {
    const r = read({ q: [{ a: 1 }, { a: "x" }], n: null });
    const q = r.list("q", 0, 2);
    expect(() => q.object(1).int("a", 0, 9)).toThrow(/^dev: state.q\[1\].a must be an integer in 0..9, got "x"$/);
    expect(r.nullable("n", (f) => r.int(f, 0, 1))).toBe(null);
    expect(() => r.int("n", 0, 1)).toThrow(/^dev: state.n must be an integer in 0..1, got null$/);
    expect(() => r.number("missing", 0, 1)).toThrow(/^dev: state.missing must be a number in 0..1, got undefined$/);
    expect(() => read({ x: Infinity }).number("x", 0, Infinity)).toThrow(/must be a number/);
  });
});
