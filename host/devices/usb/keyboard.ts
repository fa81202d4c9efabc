/**
 * usb-kbd: a full-speed HID keyboard in the boot protocol (HID 1.11, appendix B.1), whose
 * report descriptor describes the boot report itself, so boot and report protocol look alike:
 * a modifier byte, a reserved byte and up to six key usages. Its keys come from a terminal as
 * characters: each becomes a press report and a release report on interrupt IN endpoint 1,
 * queued until the host polls for them.
 */
import { StateReader, bytesState, type StateFields } from "../state";
import { DIR_IN, NAK, STALL, TO_INTERFACE, UsbDevice, type InResult, type OutResult, type Setup, EP_INTERRUPT } from "./usb";

const REPORT_DESCRIPTOR = Uint8Array.from([
  0x05, 0x01, 0x09, 0x06, 0xa1, 0x01, // generic desktop, keyboard, application collection
  0x05, 0x07, 0x19, 0xe0, 0x29, 0xe7, 0x15, 0x00, 0x25, 0x01, 0x75, 0x01, 0x95, 0x08, 0x81, 0x02, // 8 modifier bits
  0x95, 0x01, 0x75, 0x08, 0x81, 0x01, // reserved byte
  0x95, 0x05, 0x75, 0x01, 0x05, 0x08, 0x19, 0x01, 0x29, 0x05, 0x91, 0x02, // 5 LEDs
  0x95, 0x01, 0x75, 0x03, 0x91, 0x01, // LED padding
  0x95, 0x06, 0x75, 0x08, 0x15, 0x00, 0x25, 0x65, 0x05, 0x07, 0x19, 0x00, 0x29, 0x65, 0x81, 0x00, // 6 key usages
  0xc0,
]);
const HID_DESCRIPTOR = [9, 0x21, 0x11, 0x01, 0, 1, 0x22, REPORT_DESCRIPTOR.length, 0];

// HID class requests.
const GET_REPORT = 0x01;
const GET_IDLE = 0x02;
const GET_PROTOCOL = 0x03;
const SET_REPORT = 0x09;
const SET_IDLE = 0x0a;
const SET_PROTOCOL = 0x0b;
const GET_DESCRIPTOR = 0x06;

const MOD_CTRL = 0x01;
const MOD_SHIFT = 0x02;
/** Reports waiting for the host; a terminal typing faster than the guest reads loses the rest. */
const MAX_QUEUED = 512;
const REPORT = 8;

// Usage IDs of the keyboard page (HID usage tables, 10) for the printable ASCII characters:
// [unshifted, shifted] characters of each key from usage 0x2d on.
const PUNCTUATION: [number, string, string][] = [
  [0x2d, "-", "_"], [0x2e, "=", "+"], [0x2f, "[", "{"], [0x30, "]", "}"], [0x31, "\\", "|"],
  [0x33, ";", ":"], [0x34, "'", "\""], [0x35, "`", "~"], [0x36, ",", "<"], [0x37, ".", ">"], [0x38, "/", "?"],
];
const SHIFTED_DIGITS = "!@#$%^&*()";

/** The key and modifiers that type character `c` on a US layout, or null for none. */
export function keyFor(c: number): { key: number; mods: number } | null {
  const ch = String.fromCharCode(c);
  if (c >= 0x61 && c <= 0x7a) return { key: 4 + c - 0x61, mods: 0 };
  if (c >= 0x41 && c <= 0x5a) return { key: 4 + c - 0x41, mods: MOD_SHIFT };
  if (c >= 0x31 && c <= 0x39) return { key: 0x1e + c - 0x31, mods: 0 };
  if (c === 0x30) return { key: 0x27, mods: 0 };
  const sd = SHIFTED_DIGITS.indexOf(ch);
  if (sd >= 0) return { key: 0x1e + sd, mods: MOD_SHIFT };
  switch (c) {
    case 0x0d: case 0x0a: return { key: 0x28, mods: 0 }; // Enter
    case 0x1b: return { key: 0x29, mods: 0 }; // Escape
    case 0x7f: case 0x08: return { key: 0x2a, mods: 0 }; // Backspace
    case 0x09: return { key: 0x2b, mods: 0 }; // Tab
    case 0x20: return { key: 0x2c, mods: 0 }; // Space
  }
  for (const [key, plain, shifted] of PUNCTUATION) {
    if (ch === plain) return { key, mods: 0 };
    if (ch === shifted) return { key, mods: MOD_SHIFT };
  }
  if (c >= 1 && c <= 26) return { key: 4 + c - 1, mods: MOD_CTRL }; // Ctrl-A .. Ctrl-Z
  return null;
}

export class UsbKeyboard extends UsbDevice {
  readonly kind = "usb-kbd";
  readonly speed = "full" as const;
  private queue: Uint8Array[] = [];
  private protocol = 1; // report protocol after reset (HID 1.11, 7.2.6)
  private idle = 0;
  private leds = 0;
  /** Characters typed that no key makes (for statistics and tests). */
  dropped = 0;

  constructor(name: string) {
    super(name, {
      vendor: 0x0627, product: 0x0001, release: 0x0100,
      manufacturer: "wasmvisor", productName: "wasmvisor USB keyboard", serial: "42",
    }, [{
      cls: [3, 1, 1], // HID, boot interface, keyboard
      extra: HID_DESCRIPTOR,
      endpoints: [{ address: 0x81, attributes: EP_INTERRUPT, maxPacket: REPORT, interval: 10 }],
    }], 8);
  }

  /** Keyboard LEDs the host last set (num, caps, scroll lock: bits 0-2). */
  get ledState(): number {
    return this.leds;
  }

  /** Reports the host has not read yet. */
  get queued(): number {
    return this.queue.length;
  }

  /** Type terminal characters: a press and a release each. */
  type(bytes: Uint8Array): void {
    let added = false;
    for (const c of bytes) {
      const k = keyFor(c);
      if (!k || this.queue.length + 2 > MAX_QUEUED) {
        this.dropped++;
        continue;
      }
      this.queue.push(Uint8Array.of(k.mods, 0, k.key, 0, 0, 0, 0, 0), new Uint8Array(REPORT));
      added = true;
    }
    if (added) this.wake(1);
  }

  protected classControl(setup: Setup, data: Uint8Array | null): Uint8Array | typeof STALL {
    if ((setup.requestType & 0x1f) !== TO_INTERFACE || setup.index !== 0) return STALL;
    if (setup.request === GET_DESCRIPTOR && setup.requestType === (DIR_IN | TO_INTERFACE)) {
      if (setup.value >> 8 === 0x22) return REPORT_DESCRIPTOR;
      if (setup.value >> 8 === 0x21) return Uint8Array.from(HID_DESCRIPTOR);
      return STALL;
    }
    if ((setup.requestType & 0x60) !== 0x20) return STALL;
    switch (setup.request) {
      case GET_REPORT: return this.queue[0] ?? new Uint8Array(REPORT);
      case GET_IDLE: return Uint8Array.of(this.idle);
      case GET_PROTOCOL: return Uint8Array.of(this.protocol);
      case SET_REPORT:
        if (data && data.length >= 1) this.leds = data[0]! & 0x1f;
        return new Uint8Array(0);
      case SET_IDLE:
        this.idle = setup.value >> 8;
        return new Uint8Array(0);
      case SET_PROTOCOL:
        if (setup.value > 1) return STALL;
        this.protocol = setup.value;
        return new Uint8Array(0);
      default: return STALL;
    }
  }

  protected dataIn(ep: number, max: number): InResult {
    if (ep !== 1) return STALL;
    if (max < REPORT && this.queue.length) return STALL; // a buffer too small for a report: babble, as near as we get
    return this.queue.shift() ?? NAK;
  }

  protected dataOut(): OutResult {
    return STALL;
  }

  protected resetClass(): void {
    this.protocol = 1;
    this.idle = 0;
    this.leds = 0;
  }

  protected saveClass(): StateFields {
    return { queue: this.queue.map(bytesState), protocol: this.protocol, idle: this.idle, leds: this.leds };
  }

  protected restoreClass(s: StateReader): () => void {
    const list = s.list("queue", 0, MAX_QUEUED);
    const queue = list.map((i) => list.bytes(i, REPORT, REPORT));
    const protocol = s.int("protocol", 0, 1);
    const idle = s.int("idle", 0, 255);
    const leds = s.int("leds", 0, 0x1f);
    return () => {
      this.queue = queue;
      this.protocol = protocol;
      this.idle = idle;
      this.leds = leds;
    };
  }
}
