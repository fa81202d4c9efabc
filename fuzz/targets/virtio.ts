/**
 * virtio-mmio devices (blk, net, console, rng) driven as a hostile driver drives them: register
 * accesses in any order, size and alignment through the bus, queues placed anywhere, and
 * descriptor chains built from the input (any address, length, flags and next index, indirect
 * tables, rings wrapping) in the guest memory the devices DMA to. A device must never throw into
 * the host: malformed rings put it in DEVICE_NEEDS_RESET instead. Each input ends with the
 * device's state saved and restored into a new one.
 */
import { InputReader, InputWriter } from "../engine/input";
import { rejectsNothing, type Target } from "../engine/target";
import { RAM_BASE } from "../../host/machine/memory-map";
import { TokenBucket } from "../../host/devices/rate-limit";
import {
  REG_DRIVER_FEATURES, REG_DRIVER_FEATURES_SEL, REG_DEVICE_FEATURES, REG_DEVICE_FEATURES_SEL, REG_GUEST_PAGE_SIZE, REG_INTERRUPT_ACK,
  REG_INTERRUPT_STATUS, REG_QUEUE_ALIGN, REG_QUEUE_DESC_HIGH, REG_QUEUE_DESC_LOW, REG_QUEUE_DEVICE_HIGH, REG_QUEUE_DEVICE_LOW,
  REG_QUEUE_DRIVER_HIGH, REG_QUEUE_DRIVER_LOW, REG_QUEUE_NOTIFY, REG_QUEUE_NUM, REG_QUEUE_PFN, REG_QUEUE_READY, REG_QUEUE_SEL,
  REG_STATUS, REG_CONFIG, REG_QUEUE_RESET, REG_SHM_SEL, REG_CONFIG_GENERATION, STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK,
  STATUS_FEATURES_OK, VirtioMmio, type VirtioDevice,
} from "../../host/virtio/mmio";
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from "../../host/virtio/queue";
import { VirtioBlk } from "../../host/virtio/blk";
import { VirtioNet } from "../../host/virtio/net";
import { VirtioConsole } from "../../host/virtio/console";
import { VirtioRng } from "../../host/virtio/rng";
import { DeviceRig, FuzzNetBackend, RIG_BASE, busAccess, dmaAddress, dmaLength, interestingU32, saveRestore } from "./rig";

type Kind = "blk" | "net" | "console" | "rng";

/** What the transports of the current input reported as internal errors. */
const internalErrors: string[] = [];

/** Where the driver side of the harness keeps queue q's rings and its buffers (in the rig's RAM). */
const ringBase = (q: number) => RAM_BASE + 0x1_0000 + q * 0x1_0000;
const BUFFERS = RAM_BASE + 0x8_0000;
const REGS = [
  REG_STATUS, REG_DEVICE_FEATURES, REG_DEVICE_FEATURES_SEL, REG_DRIVER_FEATURES, REG_DRIVER_FEATURES_SEL, REG_GUEST_PAGE_SIZE,
  REG_QUEUE_SEL, REG_QUEUE_NUM, REG_QUEUE_ALIGN, REG_QUEUE_PFN, REG_QUEUE_READY, REG_QUEUE_NOTIFY, REG_INTERRUPT_ACK,
  REG_INTERRUPT_STATUS, REG_QUEUE_DESC_LOW, REG_QUEUE_DESC_HIGH, REG_QUEUE_DRIVER_LOW, REG_QUEUE_DRIVER_HIGH,
  REG_QUEUE_DEVICE_LOW, REG_QUEUE_DEVICE_HIGH, REG_QUEUE_RESET, REG_SHM_SEL, REG_CONFIG_GENERATION, REG_CONFIG, REG_CONFIG + 4, REG_CONFIG + 8,
];

interface Setup {
  device: VirtioDevice;
  transport: VirtioMmio;
  /** What the input can do to the device besides the driver's registers and rings. */
  event(device: VirtioDevice, input: InputReader): void;
  fresh(): VirtioMmio;
}

function build(kind: Kind, rig: DeviceRig, input: InputReader): Setup {
  const limited = input.bool(); // bandwidth limits on the rig's clock
  const bucket = () => (limited ? new TokenBucket(1 + input.int(0, 1 << 20), undefined, rig.clock) : undefined);
  // The transport turns an exception inside a device into DEVICE_NEEDS_RESET ("internal error"):
  // the guest is safe from it, but it is a bug, and a crash here.
  const onError = (message: string) => { if (/internal error|reset failed/.test(message)) internalErrors.push(message); };
  const opts = { legacy: input.bool(), indirectDesc: !input.bool(), eventIdx: !input.bool(), onError };
  const irq = () => {};
  let device: VirtioDevice, event: (device: VirtioDevice, input: InputReader) => void = () => {};
  let make: () => VirtioDevice;
  switch (kind) {
    case "blk": {
      const disk = rig.disk(input, input.bool());
      const o = { serial: "fuzz", limit: limited ? { bytes: bucket(), ops: bucket() } : undefined, clock: rig.clock, discard: !input.bool() };
      make = () => new VirtioBlk(disk, o);
      break;
    }
    case "net": {
      const backend = new FuzzNetBackend();
      const o = { mergeableRx: !input.bool(), txLimit: limited ? { bytes: bucket() } : undefined, rxLimit: limited ? { bytes: bucket() } : undefined, clock: rig.clock, rxQueueFrames: input.int(0, 8) };
      make = () => new VirtioNet(backend, o);
      event = (dev, i) => {
        if (i.bool()) backend.deliver(i.blob(2048));
        else (dev as VirtioNet).setLinkUp(i.bool());
      };
      break;
    }
    case "console": {
      const o = { rxCapacity: input.int(1, 256) };
      make = () => new VirtioConsole(() => {}, o);
      event = (dev, i) => {
        if (i.bool()) (dev as VirtioConsole).receive(i.blob(512));
        else (dev as VirtioConsole).resize(i.u16(), i.u16());
      };
      break;
    }
    case "rng":
      make = () => new VirtioRng();
      break;
  }
  device = make();
  const transport = new VirtioMmio(device, rig.mem, irq, opts);
  return { device, transport, event, fresh: () => new VirtioMmio(make(), rig.mem, irq, opts) };
}

/** The usual driver start: status bits, the offered features (some dropped), every queue placed and ready. */
function initialize(t: VirtioMmio, input: InputReader, nums: number[]): void {
  const w = (reg: number, v: number) => t.write(reg, 4, v);
  w(REG_STATUS, 0);
  w(REG_STATUS, STATUS_ACKNOWLEDGE);
  w(REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
  for (let sel = 0; sel < 2; sel++) {
    w(REG_DEVICE_FEATURES_SEL, sel);
    const offered = t.read(REG_DEVICE_FEATURES, 4);
    w(REG_DRIVER_FEATURES_SEL, sel);
    w(REG_DRIVER_FEATURES, (offered & ~(input.bool() ? input.u32() : 0)) >>> 0);
  }
  w(REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
  for (let q = 0; q < t.device.queueMaxSizes.length; q++) {
    w(REG_QUEUE_SEL, q);
    const num = input.bool() ? 1 << input.int(0, 4) : input.int(0, 0xffff);
    w(REG_QUEUE_NUM, num);
    nums[q] = num;
    const base = ringBase(q);
    if (t.legacy) {
      w(REG_GUEST_PAGE_SIZE, 4096);
      w(REG_QUEUE_ALIGN, 4096);
      w(REG_QUEUE_PFN, base / 4096);
    } else {
      w(REG_QUEUE_DESC_LOW, base);
      w(REG_QUEUE_DESC_HIGH, 0);
      w(REG_QUEUE_DRIVER_LOW, base + 0x4000);
      w(REG_QUEUE_DRIVER_HIGH, 0);
      w(REG_QUEUE_DEVICE_LOW, base + 0x8000);
      w(REG_QUEUE_DEVICE_HIGH, 0);
      w(REG_QUEUE_READY, 1);
    }
  }
  w(REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
}

/**
 * Put a chain in queue q's descriptor table (where initialize() placed it; the legacy layout
 * puts the available ring right after the table) and make it available.
 */
function postChain(rig: DeviceRig, t: VirtioMmio, q: number, num: number, input: InputReader): void {
  const size = Math.max(1, Math.min(num, 1024)); // the descriptors of a larger queue would run into its available ring
  const base = ringBase(q);
  const avail = t.legacy ? base + 16 * num : base + 0x4000;
  const n = input.int(1, 6);
  const head = input.int(0, size - 1);
  const indirect = input.int(0, 3) === 0;
  const table = indirect ? BUFFERS + 0x7_0000 : base;
  const desc = new DataView(new ArrayBuffer(16));
  for (let i = 0; i < n; i++) {
    const index = indirect ? i : (head + i) % size;
    const own = input.bool(); // a buffer the harness owns, filled from the input, or a hostile one
    const addr = own ? BUFFERS + input.int(0, 0x6_0000) : dmaAddress(input);
    const len = own ? input.int(0, 4096) : dmaLength(input);
    let flags = i < n - 1 ? VIRTQ_DESC_F_NEXT : 0;
    if (input.bool()) flags |= VIRTQ_DESC_F_WRITE;
    if (input.int(0, 7) === 0) flags ^= input.pick([VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_INDIRECT, 0xffff]);
    const next = input.int(0, 7) === 0 ? input.u16() : indirect ? i + 1 : (head + i + 1) % size;
    desc.setBigUint64(0, BigInt(Math.min(addr, 2 ** 64 - 1)) & 0xffffffffffffffffn, true);
    desc.setUint32(8, len >>> 0, true);
    desc.setUint16(12, flags, true);
    desc.setUint16(14, next, true);
    rig.ramWrite(table + 16 * index, new Uint8Array(desc.buffer));
    if (own && !(flags & VIRTQ_DESC_F_WRITE)) rig.ramWrite(addr, input.take(Math.min(len, input.int(0, 64))));
  }
  if (indirect) {
    desc.setBigUint64(0, BigInt(table), true);
    desc.setUint32(8, input.int(0, 7) === 0 ? dmaLength(input) : 16 * n, true);
    desc.setUint16(12, VIRTQ_DESC_F_INDIRECT, true);
    desc.setUint16(14, 0, true);
    rig.ramWrite(base + 16 * head, new Uint8Array(desc.buffer));
  }
  // Available ring: flags, idx, ring[]; the idx the driver last published is in guest memory.
  const ring = rig.mem.view(avail, 4 + 2 * size);
  if (!ring) return;
  const idx = ring[2]! | (ring[3]! << 8);
  ring[4 + 2 * (idx % size)] = head & 0xff;
  ring[5 + 2 * (idx % size)] = head >> 8;
  const bump = input.int(0, 15) === 0 ? input.u16() : 1; // a driver may also lie about how many it added
  ring[2] = (idx + bump) & 0xff;
  ring[3] = ((idx + bump) >> 8) & 0xff;
}

function runVirtio(kind: Kind, rig: DeviceRig, data: Uint8Array): void {
  rig.reset();
  internalErrors.length = 0;
  try {
    driveVirtio(kind, rig, data);
  } finally {
    if (internalErrors.length) throw new Error(`an exception inside the device: ${internalErrors[0]}`);
  }
}

function driveVirtio(kind: Kind, rig: DeviceRig, data: Uint8Array): void {
  const input = new InputReader(data);
  const s = build(kind, rig, input);
  let t = s.transport;
  let bus = rig.busWith(t);
  const queues = t.device.queueMaxSizes.length;
  const nums = t.device.queueMaxSizes.map(() => 16); // queue sizes the driver wrote, for postChain
  for (let ops = 0; ops < 200 && !input.done; ops++) {
    switch (input.int(0, 12)) {
      case 0: initialize(t, input, nums); break;
      case 1: case 2: { const q = input.int(0, queues - 1); postChain(rig, t, q, nums[q]!, input); break; }
      case 3: t.write(REG_QUEUE_NOTIFY, 4, input.int(0, 3) === 0 ? interestingU32(input) : input.int(0, queues - 1)); break;
      case 4: bus.write(RIG_BASE + input.pick(REGS), 4, interestingU32(input), 0); break;
      case 5: busAccess(bus, input, t.size, 0x200, true); break;
      case 6: busAccess(bus, input, t.size, 0x200, false); break;
      case 7: rig.ramWrite(input.bool() ? ringBase(input.int(0, queues - 1)) + input.int(0, 0xffff) : dmaAddress(input), input.blob(64)); break;
      case 8: s.event(t.device, input); break;
      case 9: t.write(REG_INTERRUPT_ACK, 4, t.read(REG_INTERRUPT_STATUS, 4)); break;
      case 10: rig.ms += input.int(0, 2000); if (t.retryMs() === 0) t.retry(); break;
      case 11: t.write(REG_STATUS, 4, input.bool() ? 0 : input.u8()); break;
      default: {
        // Saved and restored (a snapshot, a migration), maybe edited: the driver goes on with the restored device.
        const next = saveRestore(t, s.fresh, input);
        if (!next) return;
        t = next;
        bus = rig.busWith(t);
      }
    }
  }
  saveRestore(t, s.fresh, input);
}

/** Seeds: a device started properly and given a few well-formed chains of each kind, then notified. */
function seeds(kind: Kind): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const legacy of [false, true]) {
    const w = new InputWriter();
    // build(): unlimited, legacy or not, indirect and event-idx offered, device options 0.
    w.bool(false).bool(legacy).bool(false).bool(false);
    if (kind === "blk") w.bool(false).int(0, 3, 1).int(1, 64, 16).bool(false);
    if (kind === "net") w.bool(false).int(0, 8, 4);
    if (kind === "console") w.int(1, 256, 64);
    // initialize(): keep all features (both words), queues of 8.
    w.int(0, 12, 0).bool(false).bool(false);
    const queues = kind === "rng" ? 1 : kind === "blk" ? 1 : 2;
    for (let q = 0; q < queues; q++) w.bool(true).int(0, 4, 3);
    for (let c = 0; c < 3; c++) {
      const q = c % queues;
      w.int(0, 12, 1).int(0, queues - 1, q);
      // three descriptors: a 16-byte header the device reads (a blk read of sector c), a
      // 512-byte buffer, a 1-byte status (the last two written by the device).
      w.int(1, 6, 3).int(0, 15, c).int(0, 3, 1);
      const hdr = [0, 0, 0, 0, 0, 0, 0, 0, c, 0, 0, 0, 0, 0, 0, 0];
      const parts = [{ len: 16, write: false, data: hdr }, { len: 512, write: true }, { len: 1, write: true }];
      parts.forEach((p, i) => {
        w.bool(true).int(0, 0x6_0000, 0x1000 * (c * 4 + i)).int(0, 4096, p.len).bool(p.write).int(0, 7, 1).int(0, 7, 1);
        if (!p.write) w.int(0, 64, p.data!.length).bytes(p.data!);
      });
      w.int(0, 15, 1);
      w.int(0, 12, 3).int(0, 3, 1).int(0, queues - 1, q);
    }
    if (kind === "net" || kind === "console") w.int(0, 12, 8).bool(true).blob(kind === "net" ? 2048 : 512, Array.from({ length: 60 }, (_, i) => i));
    out.push(w.finish());
  }
  return out;
}

function virtioTarget(kind: Kind): Target<DeviceRig> {
  return {
    name: `virtio-${kind}`,
    about: `virtio-${kind} behind virtio-mmio: registers through the bus, hostile descriptor chains, DMA into a real core's RAM`,
    maxLength: 4096,
    setup: () => new DeviceRig(),
    run: (data, rig) => runVirtio(kind, rig, data),
    rejects: rejectsNothing,
    seeds: () => seeds(kind),
  };
}

export const virtioBlk = virtioTarget("blk");
export const virtioNet = virtioTarget("net");
export const virtioConsole = virtioTarget("console");
export const virtioRng = virtioTarget("rng");
