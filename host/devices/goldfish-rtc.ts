import type { DeviceState, DeviceType, IrqLine, MmioDevice } from "./device";
import { setInterrupts, setReg } from "./devicetree";
import { StateReader, u64State } from "./state";

const TIME_LOW = 0x00;
const TIME_HIGH = 0x04;
const ALARM_LOW = 0x08;
const ALARM_HIGH = 0x0c;
const IRQ_ENABLED = 0x10;
const CLEAR_ALARM = 0x14;
const ALARM_STATUS = 0x18;
const CLEAR_INTERRUPT = 0x1c;

const MASK32 = 0xffffffffn;
const VERSION = 1;

export const GOLDFISH_RTC: DeviceType = {
  kind: "goldfish-rtc",
  dtName: "rtc",
  size: 0x1000,
  irqs: 1,
  describe(node, at) {
    setInterrupts(setReg(node, at, this.size).setString("compatible", "google,goldfish-rtc"), at);
  },
};

/** Host clock in nanoseconds since the Unix epoch. */
export type NsClock = () => bigint | number;

const defaultClock: NsClock = () => BigInt(Date.now()) * 1_000_000n;

/**
 * Google goldfish RTC, as QEMU's virt board has it and Linux's rtc-goldfish drives it.
 *
 * Guest time = host clock + offset (mod 2^64): setting the time only changes the offset, so
 * the RTC keeps running with the host. Reading TIME_LOW latches the high half so that the
 * following TIME_HIGH read belongs to the same instant. The device has no timer of its own:
 * the VM calls `poll()` (at `nextDeadline()`, or just periodically) to fire a due alarm;
 * register accesses also check it, so the guest never sees a stale alarm status.
 */
export class GoldfishRtc implements MmioDevice {
  readonly name = "rtc";
  readonly size = GOLDFISH_RTC.size;

  private offset = 0n;
  private timeHighLatch = 0;
  private alarmNext = 0n;
  private alarmRunning = false;
  private irqEnabled = false;
  private irqPending = false;
  private irqLevel = false;

  constructor(
    private readonly irq: IrqLine,
    private readonly clock: NsClock = defaultClock,
  ) {}

  /** Guest-visible time in nanoseconds. */
  now(): bigint {
    return BigInt.asUintN(64, this.hostNow() + this.offset);
  }

  /**
   * Fire the alarm if it is due at host time `hostNowNs` (default: the clock now).
   * Returns true if this call fired it.
   */
  poll(hostNowNs?: bigint | number): boolean {
    if (!this.alarmRunning) return false;
    const host = hostNowNs === undefined ? this.hostNow() : BigInt(hostNowNs);
    if (this.alarmNext > BigInt.asUintN(64, host + this.offset)) return false;
    this.fire();
    return true;
  }

  /** Host-clock time (ns, same scale as the clock) at which the armed alarm is due; null if none. */
  nextDeadline(): bigint | null {
    return this.alarmRunning ? this.alarmNext - this.offset : null;
  }

  /** Power-on state: alarm and interrupt off. The time of day is kept, as on real hardware. */
  reset(): void {
    this.alarmNext = 0n;
    this.alarmRunning = false;
    this.irqEnabled = false;
    this.irqPending = false;
    this.timeHighLatch = 0;
    this.updateIrq();
  }

  read(offset: number, size: 1 | 2 | 4): number {
    if (size !== 4) return 0; // the driver only uses 32-bit accesses
    this.poll();
    switch (offset) {
      case TIME_LOW: {
        const t = this.now();
        this.timeHighLatch = Number(t >> 32n);
        return Number(t & MASK32);
      }
      case TIME_HIGH:
        return this.timeHighLatch;
      case ALARM_LOW:
        return Number(this.alarmNext & MASK32);
      case ALARM_HIGH:
        return Number(this.alarmNext >> 32n);
      case IRQ_ENABLED:
        return this.irqEnabled ? 1 : 0;
      case ALARM_STATUS:
        return this.alarmRunning ? 1 : 0;
      default:
        return 0;
    }
  }

  write(offset: number, size: 1 | 2 | 4, value: number): void {
    if (size !== 4) return;
    const v = BigInt(value >>> 0);
    switch (offset) {
      case TIME_LOW:
      case TIME_HIGH: {
        // Replace one half of the current time; Linux writes HIGH then LOW.
        const cur = this.now();
        const next = offset === TIME_LOW ? ((cur >> 32n) << 32n) | v : (cur & MASK32) | (v << 32n);
        this.offset = BigInt.asUintN(64, this.offset + next - cur);
        break;
      }
      case ALARM_HIGH:
        this.alarmNext = (this.alarmNext & MASK32) | (v << 32n);
        break;
      case ALARM_LOW:
        // Writing the low half arms the alarm; one already due fires at once.
        this.alarmNext = ((this.alarmNext >> 32n) << 32n) | v;
        this.alarmRunning = true;
        this.poll();
        break;
      case IRQ_ENABLED:
        this.irqEnabled = (value & 1) !== 0;
        this.updateIrq();
        break;
      case CLEAR_ALARM:
        this.alarmRunning = false;
        break;
      case CLEAR_INTERRUPT:
        this.irqPending = false;
        this.updateIrq();
        break;
      default:
        break;
    }
  }

  // The offset is from the host's wall clock (Unix time), which every thread shares.
  save(): DeviceState {
    return {
      kind: GOLDFISH_RTC.kind,
      version: VERSION,
      offset: u64State(this.offset),
      timeHighLatch: this.timeHighLatch,
      alarmNext: u64State(this.alarmNext),
      alarmRunning: this.alarmRunning,
      irqEnabled: this.irqEnabled,
      irqPending: this.irqPending,
    };
  }

  restore(state: unknown): void {
    const s = StateReader.open(state, this.name, GOLDFISH_RTC.kind, VERSION);
    const offset = s.u64("offset");
    const timeHighLatch = s.int("timeHighLatch", 0, 0xffffffff);
    const alarmNext = s.u64("alarmNext");
    const alarmRunning = s.bool("alarmRunning");
    const irqEnabled = s.bool("irqEnabled");
    const irqPending = s.bool("irqPending");
    this.offset = offset;
    this.timeHighLatch = timeHighLatch;
    this.alarmNext = alarmNext;
    this.alarmRunning = alarmRunning;
    this.irqEnabled = irqEnabled;
    this.irqPending = irqPending;
    this.irqLevel = irqEnabled && irqPending;
    this.irq(this.irqLevel); // re-drive: the controller may have been restored separately
  }

  private hostNow(): bigint {
    const t = this.clock();
    return typeof t === "bigint" ? t : BigInt(Math.trunc(t));
  }

  private fire(): void {
    this.alarmRunning = false;
    this.irqPending = true;
    this.updateIrq();
  }

  // Driven even when it stays high: the PLIC takes a line driven high again as a new request
  // (as QEMU's).
  private updateIrq(): void {
    const level = this.irqEnabled && this.irqPending;
    if (level || this.irqLevel) this.irq(level);
    this.irqLevel = level;
  }
}
