/**
 * What device targets share: a real core's guest memory (devices DMA through Core.ramView and
 * ramRead, as in VirtMachine), a real bus to reach them through (so accesses arrive as a guest's
 * would: any address of the device's pages, 1, 2, 4 or 8 bytes, 8 split in two halves), a clock
 * the input moves, and the address choices a hostile guest makes.
 */
import { Core } from "../../host/core/core";
import { Bus } from "../../host/machine/bus";
import type { DiskBackend, GuestMemory, NetBackend } from "../../host/devices/backends";
import { memoryPlatform } from "../../host/platform/memory";
import { MemoryDisk } from "../../host/platform/memory/disk";
import type { MmioDevice } from "../../host/devices/device";
import { RAM_BASE } from "../../host/machine/memory-map";
import { loadCoreModule } from "../../host/platform/node/core";
import type { InputReader } from "../engine/input";
import { isOneLineError } from "../engine/target";
import { editJson } from "./json-edit";

/** Guest RAM of the rig: small, so clearing it between inputs is cheap. */
export const RIG_RAM = 1 << 20;
/** Where a device sits on the rig's bus (any device page below RAM would do). */
export const RIG_BASE = 0x1000_0000;

export class DeviceRig {
  readonly core: Core;
  readonly mem: GuestMemory;
  /** The rig's clock in ms, moved only by inputs. */
  ms = 0;
  readonly clock = (): number => this.ms;

  private qcow2: Uint8Array | null = null;
  private readonly module = loadCoreModule();

  constructor() {
    this.core = new Core({ module: this.module, ramSize: RIG_RAM, harts: 1 });
    this.mem = {
      view: (gpa, len) => this.core.ramView(gpa, len),
      read: (gpa, len) => this.core.ramRead(gpa, len),
    };
  }

  /** Before each input: RAM zeroed (as a new rig's), the clock back at 0. */
  reset(): void {
    zeroRam(this.core);
    this.ms = 0;
  }

  /** A bus with `device` at RIG_BASE. */
  busWith(device: MmioDevice): Bus {
    const bus = new Bus(this.core);
    bus.attach(RIG_BASE, device);
    return bus;
  }

  /**
   * A disk for a block device: mostly in memory, sometimes a qcow2 image (real, with data in its
   * first clusters) whose tables the input damaged, so that reads and writes fail inside the
   * device's requests as a corrupted image's do.
   */
  disk(input: InputReader, readOnly: boolean): DiskBackend {
    if (input.int(0, 3) !== 0) return new MemoryDisk(512 * input.int(1, 64), { readOnly });
    const module = this.module;
    if (!this.qcow2) {
      const p = memoryPlatform({ core: module });
      p.createDiskImage("/d.qcow2", { size: 64 * 1024, clusterSize: 512, what: "fuzz" });
      const d = p.openDisk("/d.qcow2", { readOnly: false, what: "fuzz" });
      for (let i = 0; i < 8; i++) d.write(i * 4096, new Uint8Array(512).fill(i + 1));
      d.close();
      this.qcow2 = p.file("/d.qcow2")!.slice();
    }
    const bytes = this.qcow2.slice();
    // Damage past the header (refcounts, L1, L2 tables and data): what is checked only when used.
    for (let n = input.int(1, 4); n > 0; n--) {
      const at = 512 + input.int(0, bytes.length - 513);
      bytes.set(input.blob(8).subarray(0, bytes.length - at), at);
    }
    try {
      return memoryPlatform({ core: module, files: { "/d.qcow2": bytes } }).openDisk("/d.qcow2", { readOnly, what: "fuzz" });
    } catch {
      return new MemoryDisk(4096, { readOnly }); // refused when opened: no device gets it
    }
  }

  ramWrite(gpa: number, bytes: Uint8Array): void {
    this.core.ramView(gpa, bytes.length)?.set(bytes);
  }
}

/** zeroRam() checks the whole of RAM once in this many calls. */
const ZERO_CHECK_EVERY = 64;
const zeroChecks = new WeakMap<Core, { calls: number; ram64: Float64Array; ram32: Int32Array }>();

/**
 * Make a core's RAM all zero again, between inputs. Only the pages its used-page bitmap marks can
 * hold anything but zeros (a hart's first touch of a page marks it, and so does every write
 * through phys/ramView: snapshots skip the others as zero), so only those are zeroed, and
 * unmarked: as in a new core. (V8 fills shared memory through a Float64Array several times
 * faster than through a Uint8Array.) Once in ZERO_CHECK_EVERY calls the rest of RAM is checked: a byte
 * written there escaped the bitmap, a host bug (a snapshot would lose it) that would also leak
 * into later inputs, so it is an error. Only for a core whose harts have not run since its
 * creation or reset(): a hart writing through a page mapping made before would not mark the
 * page again.
 */
export function zeroRam(core: Core): void {
  let z = zeroChecks.get(core);
  if (!z) {
    const { buffer, byteOffset, byteLength } = core.ram;
    z = { calls: 0, ram64: new Float64Array(buffer, byteOffset, byteLength / 8), ram32: new Int32Array(buffer, byteOffset, byteLength / 4) };
    zeroChecks.set(core, z);
  }
  const used = core.usedPages();
  for (let w = 0; w < used.length; w++) {
    const bits = used[w]!;
    if (bits === 0) continue;
    for (let b = 0; b < 32; b++) if ((bits >>> b) & 1) z.ram64.fill(0, (w * 32 + b) * 512, (w * 32 + b + 1) * 512);
    used[w] = 0;
  }
  if (++z.calls % ZERO_CHECK_EVERY !== 0) return;
  const ram32 = z.ram32;
  let at = 0;
  while (at < ram32.length && ram32[at] === 0) at++;
  if (at === ram32.length) return;
  z.ram64.fill(0);
  throw new Error(`guest RAM at 0x${(RAM_BASE + 4 * at).toString(16)} was written without being marked used (not through phys/ramView), by this input or one of the ${ZERO_CHECK_EVERY - 1} before it`);
}

/** Sizes a guest access can have. */
const SIZES = [1, 2, 4, 8] as const;

/**
 * One guest access to the device's window through the bus: an address in its pages (mostly
 * in the registers a driver uses, `regs` bytes), any size and alignment.
 */
export function busAccess(bus: Bus, input: InputReader, windowSize: number, regs: number, write: boolean, value?: number): void {
  const pages = Math.ceil(windowSize / 4096) * 4096;
  const off = input.bool() ? input.int(0, regs - 1) : input.int(0, pages - 1);
  const size = input.pick(SIZES);
  const addr = RIG_BASE + off;
  if (write) bus.write(addr, size, value ?? interestingU32(input), interestingU32(input));
  else bus.read(addr, size);
}

/** A 32-bit value, often one of the values that matter to registers. */
export function interestingU32(input: InputReader): number {
  switch (input.int(0, 3)) {
    case 0: return input.pick([0, 1, 0xff, 0xffff, 0xffffffff, 0x80000000, 0x7fffffff, 2, 3, 4, 8, 0x10, 0x80]);
    case 1: return input.u8();
    case 2: return 1 << input.int(0, 31) >>> 0;
    default: return input.u32();
  }
}

/**
 * A guest-physical address a hostile guest might hand a device for DMA: mostly inside the rig's
 * RAM (where the input's buffers are), sometimes across its end, below it, in device space or
 * far beyond (up to 2^64: the high word of a 64-bit address register).
 */
export function dmaAddress(input: InputReader): number {
  switch (input.int(0, 7)) {
    case 0: return RAM_BASE + RIG_RAM - input.int(0, 64); // straddles the end of RAM
    case 1: return RAM_BASE - input.int(0, 4096); // just below RAM
    case 2: return input.pick([0, 0x1000, RIG_BASE, 0x0c00_0000, 0x2000_0000]); // boot ROM, devices
    case 3: return input.u32() * 2 ** 32 + input.u32(); // anywhere in 64 bits
    default: return RAM_BASE + input.int(0, RIG_RAM - 1);
  }
}

/** A length a hostile guest might give: small, around page and buffer sizes, or huge. */
export function dmaLength(input: InputReader): number {
  switch (input.int(0, 5)) {
    case 0: return input.pick([0, 1, 0xffffffff, 0x80000000, 0x7fffffff, 4096, 65536, 65550, 1 << 20]);
    case 1: return input.u32();
    default: return input.int(0, 2048);
  }
}

/** A NIC's backend for fuzzing: keeps what the device sends (bounded), delivers what the input gives. */
export class FuzzNetBackend implements NetBackend {
  sent = 0;
  private receiver: ((frame: Uint8Array) => void) | null = null;
  send(frame: Uint8Array): void {
    this.sent += frame.length;
  }
  attach(receive: (frame: Uint8Array) => void): void {
    this.receiver = receive;
  }
  deliver(frame: Uint8Array): void {
    this.receiver?.(frame);
  }
  close(): void {}
}

/**
 * Every device's last step on each input: its state goes through JSON (as to another thread),
 * maybe with hostile edits (a crafted snapshot), into a new device of its kind. Unedited, the new
 * device must take it; edited, it may refuse with a one-line Error. Returns the new device, for
 * the input to go on driving (a restored device must be as robust as one driven there), or null.
 */
export function saveRestore<D extends MmioDevice>(device: D, fresh: () => D, input: InputReader): D | null {
  let state: unknown = JSON.parse(JSON.stringify(device.save()));
  const edits = input.int(0, 7) === 0 ? input.int(1, 3) : 0;
  for (let i = 0; i < edits; i++) state = editJson(state, input);
  const next = fresh();
  try {
    next.restore(state);
  } catch (e) {
    if (edits > 0 && isOneLineError(e)) return null;
    throw e;
  }
  return next;
}
