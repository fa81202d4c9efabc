/**
 * The device side of USB, as a host controller (host/devices/xhci.ts) talks to it: transfers,
 * not packets. A control transfer is a setup packet and its data stage at once; a bulk or
 * interrupt transfer asks an IN endpoint for up to n bytes (the device answers with fewer for a
 * short packet, NAK when it has nothing yet, or STALL) or hands an OUT endpoint its bytes.
 * A device with new data for an IN endpoint it NAKed calls `wake` so the controller retries.
 *
 * UsbDevice answers the standard requests of chapter 9 of the USB 2.0 specification from the
 * descriptors a device type declares; the types add their class requests and endpoints.
 */
import type { DeviceState } from "../device";
import { StateReader, type StateFields } from "../state";

export type UsbSpeed = "full" | "high";

export const NAK = "nak";
export const STALL = "stall";
export type InResult = Uint8Array | typeof NAK | typeof STALL;
export type OutResult = "ok" | typeof NAK | typeof STALL;

/** A setup packet's fields (USB 2.0, 9.3). */
export interface Setup {
  requestType: number;
  request: number;
  value: number;
  index: number;
  length: number;
}

export function parseSetup(b: Uint8Array): Setup {
  return { requestType: b[0]!, request: b[1]!, value: b[2]! | (b[3]! << 8), index: b[4]! | (b[5]! << 8), length: b[6]! | (b[7]! << 8) };
}

// bmRequestType.
export const DIR_IN = 0x80;
const TYPE_MASK = 0x60;
export const TYPE_STANDARD = 0x00;
export const TYPE_CLASS = 0x20;
const RECIPIENT_MASK = 0x1f;
export const TO_DEVICE = 0;
export const TO_INTERFACE = 1;
export const TO_ENDPOINT = 2;

// Standard requests.
const GET_STATUS = 0;
const CLEAR_FEATURE = 1;
const SET_FEATURE = 3;
const SET_ADDRESS = 5;
const GET_DESCRIPTOR = 6;
const GET_CONFIGURATION = 8;
const SET_CONFIGURATION = 9;
const GET_INTERFACE = 10;
const SET_INTERFACE = 11;

// Descriptor types.
export const DESC_DEVICE = 1;
export const DESC_CONFIG = 2;
export const DESC_STRING = 3;
export const DESC_INTERFACE = 4;
export const DESC_ENDPOINT = 5;
export const DESC_QUALIFIER = 6;

export const EP_BULK = 2;
export const EP_INTERRUPT = 3;

const u16 = (v: number) => [v & 0xff, (v >> 8) & 0xff];

export interface DeviceIds {
  vendor: number;
  product: number;
  /** bcdDevice. */
  release: number;
  /** Device class, subclass and protocol (0: per interface). */
  cls?: [number, number, number];
  manufacturer: string;
  productName: string;
  serial: string;
}

/** An interface and its endpoints, as a configuration descriptor lists them. */
export interface InterfaceDesc {
  cls: [number, number, number];
  /** Class-specific descriptors between the interface and its endpoints (HID, CDC). */
  extra?: number[];
  endpoints: { address: number; attributes: number; maxPacket: number; interval: number }[];
}

export function endpointDescriptor(address: number, attributes: number, maxPacket: number, interval: number): number[] {
  return [7, DESC_ENDPOINT, address, attributes, ...u16(maxPacket), interval];
}

function stringDescriptor(s: string): Uint8Array {
  const out = new Uint8Array(2 + 2 * s.length);
  out[0] = out.length;
  out[1] = DESC_STRING;
  for (let i = 0; i < s.length; i++) {
    out[2 + 2 * i] = s.charCodeAt(i) & 0xff;
    out[3 + 2 * i] = s.charCodeAt(i) >> 8;
  }
  return out;
}

export abstract class UsbDevice {
  /** The type's name ("usb-kbd"), also the kind of its saved state. */
  abstract readonly kind: string;
  abstract readonly speed: UsbSpeed;
  /** Set by the controller the device is plugged into: data arrived for IN endpoint `ep`. */
  wake: (ep: number) => void = () => {};

  /** The address SET_ADDRESS gave (the xHC sends it during Address Device). */
  address = 0;
  /** bConfigurationValue, 0 while unconfigured. */
  configuration = 0;
  /** Endpoints the host halted with SET_FEATURE(ENDPOINT_HALT), by address. */
  private halted = new Set<number>();

  private readonly device: Uint8Array;
  private readonly config: Uint8Array;
  private readonly strings: Uint8Array[];
  /** Endpoint addresses (with the IN bit) of configuration 1. */
  readonly endpoints: number[];

  constructor(readonly name: string, ids: DeviceIds, interfaces: InterfaceDesc[], ep0MaxPacket: number, private readonly maxPowerMa = 100) {
    const [cls, sub, proto] = ids.cls ?? [0, 0, 0];
    this.device = Uint8Array.from([18, DESC_DEVICE, ...u16(0x0200), cls, sub, proto, ep0MaxPacket, ...u16(ids.vendor), ...u16(ids.product), ...u16(ids.release), 1, 2, 3, 1]);
    const body: number[] = [];
    interfaces.forEach((intf, n) => {
      body.push(9, DESC_INTERFACE, n, 0, intf.endpoints.length, ...intf.cls, 0, ...(intf.extra ?? []));
      for (const e of intf.endpoints) body.push(...endpointDescriptor(e.address, e.attributes, e.maxPacket, e.interval));
    });
    const total = 9 + body.length;
    this.config = Uint8Array.from([9, DESC_CONFIG, ...u16(total), interfaces.length, 1, 0, 0xa0 /* bus powered, remote wakeup */, maxPowerMa / 2, ...body]);
    this.strings = [Uint8Array.from([4, DESC_STRING, 0x09, 0x04]), stringDescriptor(ids.manufacturer), stringDescriptor(ids.productName), stringDescriptor(ids.serial)];
    this.endpoints = interfaces.flatMap((i) => i.endpoints.map((e) => e.address));
  }

  /** The class's requests (and anything standard the base does not answer); STALL if unknown. */
  protected abstract classControl(setup: Setup, data: Uint8Array | null): Uint8Array | typeof STALL;
  /** An IN transfer on endpoint `ep` (1..15) of up to `max` bytes. */
  protected abstract dataIn(ep: number, max: number): InResult;
  /** An OUT transfer on endpoint `ep` (1..15). */
  protected abstract dataOut(ep: number, data: Uint8Array): OutResult;
  /** The class's state back to power-on (a bus reset). */
  protected abstract resetClass(): void;
  protected abstract saveClass(): StateFields;
  /** Check the class's state; returns what takes it (nothing changes before that is called). */
  protected abstract restoreClass(s: StateReader): () => void;

  /** A bus reset (the port was reset): unaddressed and unconfigured. */
  reset(): void {
    this.address = 0;
    this.configuration = 0;
    this.halted.clear();
    this.resetClass();
  }

  /**
   * A control transfer on endpoint 0: for a request with an IN data stage the bytes (at most
   * wLength), else an empty array; STALL for a request the device refuses.
   */
  control(setup: Setup, data: Uint8Array | null): Uint8Array | typeof STALL {
    const out = this.controlAnswer(setup, data);
    return out === STALL ? STALL : out.subarray(0, setup.length);
  }

  private controlAnswer(setup: Setup, data: Uint8Array | null): Uint8Array | typeof STALL {
    const none = new Uint8Array(0);
    if ((setup.requestType & TYPE_MASK) !== TYPE_STANDARD) return this.classControl(setup, data);
    const recipient = setup.requestType & RECIPIENT_MASK;
    switch (setup.request) {
      case GET_DESCRIPTOR:
        if (recipient !== TO_DEVICE) return this.classControl(setup, data); // HID's report descriptor
        switch (setup.value >> 8) {
          case DESC_DEVICE: return this.device;
          case DESC_CONFIG: return this.config;
          case DESC_STRING: return this.strings[setup.value & 0xff] ?? STALL;
          case DESC_QUALIFIER:
            // Only a high-speed device has one: what it would be at the other speed.
            if (this.speed !== "high") return STALL;
            return Uint8Array.from([10, DESC_QUALIFIER, ...this.device.subarray(2, 8), 1, 0]);
          default: return STALL;
        }
      case SET_ADDRESS:
        if (setup.value > 127) return STALL;
        this.address = setup.value;
        return none;
      case GET_CONFIGURATION:
        return Uint8Array.of(this.configuration);
      case SET_CONFIGURATION:
        if (setup.value > 1) return STALL;
        this.configuration = setup.value;
        this.halted.clear();
        return none;
      case GET_INTERFACE:
        return this.configuration ? Uint8Array.of(0) : STALL;
      case SET_INTERFACE:
        return this.configuration && setup.value === 0 ? none : STALL;
      case GET_STATUS:
        if (recipient === TO_ENDPOINT) return Uint8Array.of(this.halted.has(setup.index & 0x8f) ? 1 : 0, 0);
        return Uint8Array.of(0, 0);
      case CLEAR_FEATURE:
      case SET_FEATURE:
        if (recipient === TO_ENDPOINT && setup.value === 0) {
          const ep = setup.index & 0x8f;
          if (!this.endpoints.includes(ep)) return (ep & 0xf) === 0 ? none : STALL;
          if (setup.request === SET_FEATURE) this.halted.add(ep);
          else this.halted.delete(ep);
          return none;
        }
        return none; // remote wakeup, test mode: nothing to do
      default:
        return this.classControl(setup, data);
    }
  }

  /** An IN transfer on endpoint `ep` of up to `max` bytes. */
  transferIn(ep: number, max: number): InResult {
    if (!this.configuration || !this.endpoints.includes(0x80 | ep) || this.halted.has(0x80 | ep)) return STALL;
    const r = this.dataIn(ep, max);
    return typeof r === "string" || r.length <= max ? r : r.subarray(0, max);
  }

  /** An OUT transfer on endpoint `ep`. */
  transferOut(ep: number, data: Uint8Array): OutResult {
    if (!this.configuration || !this.endpoints.includes(ep) || this.halted.has(ep)) return STALL;
    return this.dataOut(ep, data);
  }

  save(): DeviceState {
    return { kind: this.kind, version: 1, address: this.address, configuration: this.configuration, halted: [...this.halted], cls: this.saveClass() };
  }

  restore(state: unknown): void {
    this.checkState(state)();
  }

  /**
   * Check a saved state whole, changing nothing; returns what takes it. A controller restoring
   * several devices checks every one before any changes.
   */
  checkState(state: unknown): () => void {
    const s = StateReader.open(state, this.name, this.kind, 1);
    const address = s.int("address", 0, 127);
    const configuration = s.int("configuration", 0, 1);
    const list = s.list("halted", 0, this.endpoints.length);
    const halted = list.map((i) => list.int(i, 0, 0xff));
    if (halted.some((e) => !this.endpoints.includes(e))) s.reject("halted", "endpoints of the device");
    const takeClass = this.restoreClass(s.object("cls"));
    return () => {
      takeClass();
      this.address = address;
      this.configuration = configuration;
      this.halted = new Set(halted);
    };
  }
}
