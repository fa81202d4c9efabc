/**
 * usb-serial: a high-speed CDC-ACM modem (USB CDC 1.2 and PSTN 1.2), what Linux's cdc-acm
 * makes /dev/ttyACM0 of. Interface 0 (communications) has the functional descriptors and an
 * interrupt IN endpoint for serial-state notifications (none are ever sent: the line is always
 * up); interface 1 (data) has the bulk endpoints carrying the bytes to and from a character
 * backend. Line coding and control lines are kept for the host to read back and mean nothing
 * on this wire.
 */
import type { CharBackend } from "../backends";
import { StateReader, bytesState, type StateFields } from "../state";
import { EP_BULK, EP_INTERRUPT, NAK, STALL, TO_INTERFACE, UsbDevice, type InResult, type OutResult, type Setup } from "./usb";

const SET_LINE_CODING = 0x20;
const GET_LINE_CODING = 0x21;
const SET_CONTROL_LINE_STATE = 0x22;
const SEND_BREAK = 0x23;
/** Bytes from the backend kept for the host; beyond this they are lost (an overrun). */
export const SERIAL_RX_LIMIT = 64 * 1024;
const DEFAULT_LINE_CODING = [0x00, 0xc2, 0x01, 0x00, 0, 0, 8]; // 115200 8N1

export class UsbSerial extends UsbDevice {
  readonly kind = "usb-serial";
  readonly speed = "high" as const;
  private rx: Uint8Array[] = [];
  private rxBytes = 0;
  private lineCoding: Uint8Array = Uint8Array.from(DEFAULT_LINE_CODING);
  private controlLines = 0;
  /** Bytes the backend sent that found no room. */
  overruns = 0;

  constructor(name: string, private readonly backend: CharBackend) {
    super(name, {
      vendor: 0x0525, product: 0xa4a7, release: 0x0100, cls: [2, 0, 0],
      manufacturer: "wasmvisor", productName: "wasmvisor USB serial", serial: "1",
    }, [{
      cls: [2, 2, 1], // communications, abstract control model, AT commands
      extra: [5, 0x24, 0x00, 0x10, 0x01, 5, 0x24, 0x01, 0x00, 1, 4, 0x24, 0x02, 0x02, 5, 0x24, 0x06, 0, 1],
      endpoints: [{ address: 0x81, attributes: EP_INTERRUPT, maxPacket: 16, interval: 8 }],
    }, {
      cls: [0x0a, 0, 0], // CDC data
      endpoints: [
        { address: 0x82, attributes: EP_BULK, maxPacket: 512, interval: 0 },
        { address: 0x02, attributes: EP_BULK, maxPacket: 512, interval: 0 },
      ],
    }], 64);
    backend.attach((bytes) => this.receive(bytes));
  }

  /** Data terminal ready and request to send, as the host last set them (bits 0, 1). */
  get lines(): number {
    return this.controlLines;
  }

  /** Bytes from the backend for the guest. */
  receive(bytes: Uint8Array): void {
    const take = Math.min(bytes.length, SERIAL_RX_LIMIT - this.rxBytes);
    this.overruns += bytes.length - take;
    if (take === 0) return;
    this.rx.push(bytes.slice(0, take));
    this.rxBytes += take;
    this.wake(2);
  }

  protected classControl(setup: Setup, data: Uint8Array | null): Uint8Array | typeof STALL {
    if ((setup.requestType & 0x7f) !== (0x20 | TO_INTERFACE) || setup.index !== 0) return STALL;
    switch (setup.request) {
      case SET_LINE_CODING:
        if (!data || data.length < 7) return STALL;
        this.lineCoding = data.slice(0, 7);
        return new Uint8Array(0);
      case GET_LINE_CODING:
        return this.lineCoding.slice();
      case SET_CONTROL_LINE_STATE:
        this.controlLines = setup.value & 3;
        return new Uint8Array(0);
      case SEND_BREAK:
        return new Uint8Array(0);
      default:
        return STALL;
    }
  }

  protected dataIn(ep: number, max: number): InResult {
    if (ep === 1) return NAK; // no serial-state changes to report
    if (ep !== 2) return STALL;
    if (this.rxBytes === 0) return NAK;
    const out = new Uint8Array(Math.min(max, this.rxBytes));
    let n = 0;
    while (n < out.length) {
      const head = this.rx[0]!;
      const take = Math.min(head.length, out.length - n);
      out.set(head.subarray(0, take), n);
      n += take;
      if (take === head.length) this.rx.shift();
      else this.rx[0] = head.subarray(take);
    }
    this.rxBytes -= n;
    return out;
  }

  protected dataOut(ep: number, data: Uint8Array): OutResult {
    if (ep !== 2) return STALL;
    if (data.length) this.backend.write(data.slice());
    return "ok";
  }

  protected resetClass(): void {
    this.lineCoding = Uint8Array.from(DEFAULT_LINE_CODING);
    this.controlLines = 0;
  }

  protected saveClass(): StateFields {
    const rx = new Uint8Array(this.rxBytes);
    let at = 0;
    for (const c of this.rx) {
      rx.set(c, at);
      at += c.length;
    }
    return { rx: bytesState(rx), lineCoding: bytesState(this.lineCoding), controlLines: this.controlLines };
  }

  protected restoreClass(s: StateReader): () => void {
    const rx = s.bytes("rx", 0, SERIAL_RX_LIMIT);
    const lineCoding = s.bytes("lineCoding", 7, 7);
    const controlLines = s.int("controlLines", 0, 3);
    return () => {
      this.rx = rx.length ? [rx] : [];
      this.rxBytes = rx.length;
      this.lineCoding = lineCoding;
      this.controlLines = controlLines;
    };
  }
}
