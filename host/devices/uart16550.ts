import type { DeviceState, DeviceType, IrqLine, MmioDevice } from "./device";
import { setInterrupts, setReg } from "./devicetree";
import { StateReader, bytesState } from "./state";

// Register offsets (reg-shift 0, byte-wide registers).
const RBR_THR_DLL = 0;
const IER_DLM = 1;
const IIR_FCR = 2;
const LCR = 3;
const MCR = 4;
const LSR = 5;
const MSR = 6;
const SCR = 7;

// IER bits.
const IER_ERBFI = 0x01; // received data available
const IER_ETBEI = 0x02; // transmitter holding register empty
const IER_ELSI = 0x04; // receiver line status
const IER_EDSSI = 0x08; // modem status

// IIR interrupt identification values, highest priority first.
export const IIR_NO_INT = 0x01;
export const IIR_RLS = 0x06;
export const IIR_RDA = 0x04;
export const IIR_TIMEOUT = 0x0c;
export const IIR_THRE = 0x02;
export const IIR_MSI = 0x00;
const IIR_FIFO_ENABLED = 0xc0;

// FCR bits.
const FCR_FE = 0x01;
const FCR_RFR = 0x02;
const FCR_XFR = 0x04;
const FCR_KEEP = 0xc9; // enable, DMA mode, trigger level: the bits that persist

// LCR / MCR bits.
const LCR_DLAB = 0x80;
const MCR_LOOP = 0x10;

// LSR bits.
export const LSR_DR = 0x01;
export const LSR_OE = 0x02;
export const LSR_THRE = 0x20;
export const LSR_TEMT = 0x40;

// MSR bits: deltas in the low nibble, line states in the high nibble.
const MSR_DCTS = 0x01;
const MSR_DDSR = 0x02;
const MSR_TERI = 0x04;
const MSR_DDCD = 0x08;
const MSR_CTS = 0x10;
const MSR_DSR = 0x20;
const MSR_RI = 0x40;
const MSR_DCD = 0x80;
/** Lines seen when not in loopback: a console that is always there (QEMU reports the same). */
const MSR_EXTERNAL = MSR_DCD | MSR_DSR | MSR_CTS;

const FIFO_SIZE = 16;
const TRIGGER_LEVELS = [1, 4, 8, 14] as const;

/** Input clock the devicetree advertises (QEMU's); divisor = clock / (16 * baud). */
export const UART_CLOCK_HZ = 3686400;
const VERSION = 1;

export const NS16550A: DeviceType = {
  kind: "ns16550a",
  dtName: "serial",
  size: 0x100,
  irqs: 1,
  describe(node, at) {
    setInterrupts(setReg(node, at, this.size).setString("compatible", "ns16550a").setU32("clock-frequency", UART_CLOCK_HZ), at);
  },
};

/**
 * ns16550a UART as on QEMU's virt board.
 *
 * Transmission is instantaneous: a THR write hands the byte to the sink at once, so the
 * TX FIFO is always empty and LSR.THRE/TEMT always read 1. The THRE interrupt still
 * behaves like the chip's: it becomes pending after each THR write and when IER.ETBEI
 * goes 0 -> 1 while the THR is empty, and is cleared by an IIR read that reports it or by
 * clearing ETBEI.
 *
 * Reception: the VM calls `receive()` only while `rxSpace()` > 0, so input waits in the
 * VM instead of overrunning. The character-timeout interrupt is modelled as already
 * elapsed (input arrives in bursts between guest time slices): data below the FIFO
 * trigger level is reported at once as IIR 0xC, data at or above it as IIR 0x4.
 */
export class Uart16550 implements MmioDevice {
  readonly name = "uart0";
  readonly size = NS16550A.size;

  private rx = new Uint8Array(FIFO_SIZE);
  private rxHead = 0;
  private rxCount = 0;
  private ier = 0;
  private fcr = 0;
  private lcr = 0;
  private mcr = 0;
  private scr = 0;
  private dll = 0;
  private dlm = 0;
  /** Latched LSR error bits (OE), cleared by reading LSR. */
  private lsrErr = 0;
  private thrIpending = false;
  /** MSR delta bits, cleared by reading MSR. */
  private msrDelta = 0;
  /** Modem line states last seen, to detect changes for the delta bits. */
  private msrLines = MSR_EXTERNAL;
  private irqLevel = false;

  /**
   * @param irq level-triggered interrupt line (PLIC source 10 on the virt board)
   * @param sink receives every transmitted byte (not called in loopback mode)
   * @param onRxSpace optional: called when the guest frees RX space (reads RBR, resets the
   *   FIFO, leaves loopback), so an event-driven VM can feed more input without polling
   */
  constructor(
    private readonly irq: IrqLine,
    private readonly sink: (byte: number) => void,
    private readonly onRxSpace?: () => void,
  ) {}

  /** How many bytes `receive()` can take now without overrunning (0 in loopback mode). */
  rxSpace(): number {
    if (this.mcr & MCR_LOOP) return 0; // the serial input is disconnected in loopback
    return this.rxCapacity() - this.rxCount;
  }

  /**
   * A byte arrives on the serial input. Call only while `rxSpace()` > 0; otherwise the chip
   * overruns (LSR.OE) like hardware, and in loopback mode the byte is lost.
   */
  receive(byte: number): void {
    if (this.mcr & MCR_LOOP) return;
    this.push(byte & 0xff);
    this.updateIrq();
  }

  /** Power-on register state (the RX FIFO is emptied). */
  reset(): void {
    this.rxHead = 0;
    this.rxCount = 0;
    this.ier = this.fcr = this.lcr = this.mcr = this.scr = this.dll = this.dlm = 0;
    this.lsrErr = 0;
    this.thrIpending = false;
    this.msrDelta = 0;
    this.msrLines = MSR_EXTERNAL;
    this.updateIrq();
    this.onRxSpace?.();
  }

  read(offset: number, _size: 1 | 2 | 4): number {
    // Wider accesses see the byte register zero-extended; the window past 8 bytes is empty.
    switch (offset) {
      case RBR_THR_DLL:
        return this.lcr & LCR_DLAB ? this.dll : this.readRbr();
      case IER_DLM:
        return this.lcr & LCR_DLAB ? this.dlm : this.ier;
      case IIR_FCR:
        return this.readIir();
      case LCR:
        return this.lcr;
      case MCR:
        return this.mcr;
      case LSR:
        return this.readLsr();
      case MSR:
        return this.readMsr();
      case SCR:
        return this.scr;
      default:
        return 0;
    }
  }

  write(offset: number, _size: 1 | 2 | 4, value: number): void {
    value &= 0xff;
    switch (offset) {
      case RBR_THR_DLL:
        if (this.lcr & LCR_DLAB) this.dll = value;
        else this.writeThr(value);
        break;
      case IER_DLM:
        if (this.lcr & LCR_DLAB) this.dlm = value;
        else this.writeIer(value);
        break;
      case IIR_FCR:
        this.writeFcr(value);
        break;
      case LCR:
        this.lcr = value;
        break;
      case MCR:
        this.writeMcr(value);
        break;
      case SCR:
        this.scr = value;
        break;
      default:
        break; // LSR and MSR are read-only
    }
  }

  save(): DeviceState {
    const rx = new Uint8Array(this.rxCount);
    for (let i = 0; i < this.rxCount; i++) rx[i] = this.rx[(this.rxHead + i) % FIFO_SIZE]!;
    return {
      kind: NS16550A.kind,
      version: VERSION,
      rx: bytesState(rx),
      ier: this.ier,
      fcr: this.fcr,
      lcr: this.lcr,
      mcr: this.mcr,
      scr: this.scr,
      dll: this.dll,
      dlm: this.dlm,
      lsrErr: this.lsrErr,
      thrIpending: this.thrIpending,
      msrDelta: this.msrDelta,
      msrLines: this.msrLines,
    };
  }

  restore(state: unknown): void {
    const s = StateReader.open(state, this.name, NS16550A.kind, VERSION);
    // Only the bits the registers keep (see the writes above).
    const fields = {
      ier: s.bits("ier", 0x0f),
      fcr: s.bits("fcr", FCR_KEEP),
      lcr: s.bits("lcr", 0xff),
      mcr: s.bits("mcr", 0x1f),
      scr: s.bits("scr", 0xff),
      dll: s.bits("dll", 0xff),
      dlm: s.bits("dlm", 0xff),
      lsrErr: s.bits("lsrErr", LSR_OE),
      msrDelta: s.bits("msrDelta", 0x0f),
      msrLines: s.bits("msrLines", 0xf0),
    };
    const rx = s.bytes("rx", 0, fields.fcr & FCR_FE ? FIFO_SIZE : 1);
    const thrIpending = s.bool("thrIpending");
    this.ier = fields.ier;
    this.fcr = fields.fcr;
    this.lcr = fields.lcr;
    this.mcr = fields.mcr;
    this.scr = fields.scr;
    this.dll = fields.dll;
    this.dlm = fields.dlm;
    this.lsrErr = fields.lsrErr;
    this.msrDelta = fields.msrDelta;
    this.msrLines = fields.msrLines;
    this.rx.fill(0);
    this.rx.set(rx);
    this.rxHead = 0;
    this.rxCount = rx.length;
    this.thrIpending = thrIpending;
    this.irqLevel = this.computeIir() !== IIR_NO_INT;
    this.irq(this.irqLevel); // re-drive: the controller may have been restored separately
  }

  // ---- internals ----

  private rxCapacity(): number {
    return this.fcr & FCR_FE ? FIFO_SIZE : 1;
  }

  /** Put a byte into the receiver, with the chip's overrun rules. */
  private push(byte: number): void {
    if (this.rxCount < this.rxCapacity()) {
      this.rx[(this.rxHead + this.rxCount) % FIFO_SIZE] = byte;
      this.rxCount++;
    } else if (this.fcr & FCR_FE) {
      this.lsrErr |= LSR_OE; // FIFO full: the new character is lost
    } else {
      this.lsrErr |= LSR_OE; // 16450 mode: the new character overwrites the holding register
      this.rx[this.rxHead] = byte;
    }
  }

  private readRbr(): number {
    if (this.rxCount === 0) return 0;
    const b = this.rx[this.rxHead]!;
    this.rxHead = (this.rxHead + 1) % FIFO_SIZE;
    this.rxCount--;
    this.updateIrq();
    if (!(this.mcr & MCR_LOOP)) this.onRxSpace?.();
    return b;
  }

  private writeThr(byte: number): void {
    // The THR empties at once, so the THRE interrupt is pending again right after the write.
    if (this.mcr & MCR_LOOP) this.push(byte);
    else this.sink(byte);
    this.thrIpending = true;
    this.updateIrq();
  }

  private writeIer(value: number): void {
    const changed = (this.ier ^ value) & 0x0f;
    this.ier = value & 0x0f; // the upper bits are not implemented (Linux's probe relies on it)
    // Enabling ETBEI with an empty THR raises THRE even if an IIR read had cleared it; the
    // 8250 driver's THRE test and its start_tx depend on this edge.
    if (changed & IER_ETBEI) this.thrIpending = (this.ier & IER_ETBEI) !== 0;
    this.updateIrq();
  }

  private writeFcr(value: number): void {
    // Toggling the FIFO enable empties both FIFOs.
    if ((value ^ this.fcr) & FCR_FE) value |= FCR_RFR | FCR_XFR;
    const freed = (value & FCR_RFR) !== 0 && this.rxCount > 0;
    if (value & FCR_RFR) {
      this.rxHead = 0;
      this.rxCount = 0;
    }
    // FCR_XFR: the TX FIFO is always empty, nothing to do.
    this.fcr = value & FCR_KEEP;
    this.updateIrq();
    if (freed && !(this.mcr & MCR_LOOP)) this.onRxSpace?.();
  }

  private writeMcr(value: number): void {
    const wasLoop = (this.mcr & MCR_LOOP) !== 0;
    this.mcr = value & 0x1f;
    this.updateModemLines();
    this.updateIrq();
    if (wasLoop && !(this.mcr & MCR_LOOP)) this.onRxSpace?.(); // input is connected again
  }

  /** Current modem input lines: outputs wired back in loopback, else the fixed console lines. */
  private modemLines(): number {
    if (!(this.mcr & MCR_LOOP)) return MSR_EXTERNAL;
    let lines = 0;
    if (this.mcr & 0x01) lines |= MSR_DSR; // DTR -> DSR
    if (this.mcr & 0x02) lines |= MSR_CTS; // RTS -> CTS
    if (this.mcr & 0x04) lines |= MSR_RI; // OUT1 -> RI
    if (this.mcr & 0x08) lines |= MSR_DCD; // OUT2 -> DCD
    return lines;
  }

  private updateModemLines(): void {
    const now = this.modemLines();
    const diff = now ^ this.msrLines;
    if (diff & MSR_CTS) this.msrDelta |= MSR_DCTS;
    if (diff & MSR_DSR) this.msrDelta |= MSR_DDSR;
    if (diff & MSR_DCD) this.msrDelta |= MSR_DDCD;
    if (diff & MSR_RI && !(now & MSR_RI)) this.msrDelta |= MSR_TERI; // trailing edge only
    this.msrLines = now;
  }

  private readLsr(): number {
    let lsr = LSR_THRE | LSR_TEMT | this.lsrErr;
    if (this.rxCount > 0) lsr |= LSR_DR;
    if (this.lsrErr) {
      this.lsrErr = 0;
      this.updateIrq();
    }
    return lsr;
  }

  private readMsr(): number {
    const msr = this.msrLines | this.msrDelta;
    if (this.msrDelta) {
      this.msrDelta = 0;
      this.updateIrq();
    }
    return msr;
  }

  private readIir(): number {
    const id = this.computeIir();
    if (id === IIR_THRE) {
      // Reading IIR acknowledges a THRE interrupt only when THRE is what it reports.
      this.thrIpending = false;
      this.updateIrq();
    }
    return id | (this.fcr & FCR_FE ? IIR_FIFO_ENABLED : 0);
  }

  /** Highest-priority pending, enabled interrupt (16550 order). */
  private computeIir(): number {
    if (this.ier & IER_ELSI && this.lsrErr) return IIR_RLS;
    if (this.ier & IER_ERBFI && this.rxCount > 0) {
      if (this.fcr & FCR_FE && this.rxCount < TRIGGER_LEVELS[this.fcr >>> 6]!) return IIR_TIMEOUT;
      return IIR_RDA;
    }
    if (this.ier & IER_ETBEI && this.thrIpending) return IIR_THRE;
    if (this.ier & IER_EDSSI && this.msrDelta) return IIR_MSI;
    return IIR_NO_INT;
  }

  // Driven after every event and register access that can change it, even when it stays high:
  // the PLIC takes a line driven high again as a new request (as QEMU's).
  private updateIrq(): void {
    const level = this.computeIir() !== IIR_NO_INT;
    if (level || this.irqLevel) this.irq(level);
    this.irqLevel = level;
  }
}
