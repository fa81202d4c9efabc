import { describe, expect, it } from "vitest";
import { Uart16550 } from "../../host/devices/uart16550";

const RBR = 0, THR = 0, DLL = 0, IER = 1, DLM = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7;

function make() {
  const out: number[] = [];
  const irq: boolean[] = [];
  let spaceCalls = 0;
  const u = new Uart16550(
    (l) => irq.push(l),
    (b) => out.push(b),
    () => spaceCalls++,
  );
  const r = (off: number) => u.read(off, 1);
  const w = (off: number, v: number) => u.write(off, 1, v);
  const level = () => (irq.length ? irq[irq.length - 1] : false);
  return { u, out, irq, r, w, level, spaces: () => spaceCalls };
}

describe("uart16550 registers", () => {
  it("has the documented reset values", () => {
    const { r } = make();
    expect(r(IER)).toBe(0);
    expect(r(IIR)).toBe(0x01);
    expect(r(LCR)).toBe(0);
    expect(r(MCR)).toBe(0);
    expect(r(LSR)).toBe(0x60); // THRE | TEMT
    expect(r(MSR) & 0xf0).toBe(0xb0); // DCD, DSR, CTS asserted
  });

  it("switches RBR/THR and IER to the divisor latch while LCR.DLAB is set", () => {
    const { r, w, out } = make();
    w(IER, 0x05);
    w(LCR, 0x83);
    w(DLL, 0x0c);
    w(DLM, 0x01);
    expect(r(DLL)).toBe(0x0c);
    expect(r(DLM)).toBe(0x01);
    expect(out).toEqual([]); // DLL write did not transmit
    w(LCR, 0x03);
    expect(r(IER)).toBe(0x05); // IER untouched by the DLM write
    expect(r(LCR)).toBe(0x03);
    w(LCR, 0x83);
    expect(r(DLL)).toBe(0x0c); // divisor persists
  });

  it("implements only the low 4 IER bits and a scratch register", () => {
    const { r, w } = make();
    w(IER, 0xff);
    expect(r(IER)).toBe(0x0f);
    w(SCR, 0xa5);
    expect(r(SCR)).toBe(0xa5);
    w(MCR, 0xff);
    expect(r(MCR)).toBe(0x1f);
  });

  it("sends THR writes to the sink and reads zero past the 8 registers", () => {
    const { r, w, out, u } = make();
    w(THR, 0x41);
    u.write(THR, 4, 0x1242);
    expect(out).toEqual([0x41, 0x42]);
    expect(r(LSR) & 0x60).toBe(0x60);
    expect(r(0x10)).toBe(0);
  });
});

describe("uart16550 receive path and FIFO", () => {
  it("without FIFO holds one byte, reports RDA and overrun", () => {
    const { u, r, w, level } = make();
    expect(u.rxSpace()).toBe(1);
    w(IER, 0x01);
    u.receive(0x61);
    expect(u.rxSpace()).toBe(0);
    expect(level()).toBe(true);
    expect(r(IIR)).toBe(0x04); // RDA, no FIFO bits
    expect(r(LSR) & 0x01).toBe(1);
    u.receive(0x62); // caller ignored rxSpace: overrun, byte replaces the holding register
    w(IER, 0x05);
    expect(r(IIR)).toBe(0x06); // line status outranks RDA
    expect(r(LSR) & 0x02).toBe(0x02);
    expect(r(LSR) & 0x02).toBe(0); // OE cleared by the LSR read
    expect(r(IIR)).toBe(0x04);
    expect(r(RBR)).toBe(0x62);
    expect(r(LSR) & 0x01).toBe(0);
    expect(level()).toBe(false);
    expect(r(IIR)).toBe(0x01);
  });

  it("enables a 16-byte FIFO with FCR and keeps bytes in order", () => {
    const { u, r, w } = make();
    w(FCR, 0x01);
    expect(r(IIR) & 0xc0).toBe(0xc0);
    expect(u.rxSpace()).toBe(16);
    for (let i = 0; i < 16; i++) u.receive(0x30 + i);
    expect(u.rxSpace()).toBe(0);
    const got: number[] = [];
    while (r(LSR) & 1) got.push(r(RBR));
    expect(got).toEqual(Array.from({ length: 16 }, (_, i) => 0x30 + i));
    expect(u.rxSpace()).toBe(16);
  });

  it("sets OE and drops the byte when the FIFO is full", () => {
    const { u, r, w } = make();
    w(FCR, 0x01);
    for (let i = 0; i < 17; i++) u.receive(i);
    expect(r(LSR) & 0x03).toBe(0x03);
    const got: number[] = [];
    while (r(LSR) & 1) got.push(r(RBR));
    expect(got.length).toBe(16);
    expect(got[15]).toBe(15);
  });

  it("reports character timeout below the trigger level and RDA at it", () => {
    const { u, r, w, level } = make();
    w(FCR, 0x81); // FIFO on, trigger level 8
    w(IER, 0x01);
    u.receive(1);
    expect(level()).toBe(true);
    expect(r(IIR)).toBe(0xcc); // timeout, FIFO bits set
    for (let i = 0; i < 7; i++) u.receive(2);
    expect(r(IIR)).toBe(0xc4); // 8 bytes: trigger reached
    r(RBR);
    expect(r(IIR)).toBe(0xcc);
    w(FCR, 0xc1); // trigger 14
    for (let i = 0; i < 6; i++) u.receive(3);
    expect(r(IIR)).toBe(0xcc); // 13 bytes: 14 would be needed
    u.receive(3);
    expect(r(IIR)).toBe(0xc4);
  });

  it("clears the RX FIFO on FCR reset and on toggling the enable bit", () => {
    const { u, r, w, spaces } = make();
    w(FCR, 0x01);
    u.receive(1);
    u.receive(2);
    const before = spaces();
    w(FCR, 0x03);
    expect(r(LSR) & 1).toBe(0);
    expect(spaces()).toBe(before + 1); // the VM is told space appeared
    u.receive(3);
    w(FCR, 0x00); // disabling the FIFO flushes it
    expect(r(LSR) & 1).toBe(0);
    expect(u.rxSpace()).toBe(1);
  });

  it("notifies the VM when the guest reads a byte", () => {
    const { u, r, spaces } = make();
    u.receive(9);
    expect(spaces()).toBe(0);
    expect(r(RBR)).toBe(9);
    expect(spaces()).toBe(1);
  });
});

describe("uart16550 THRE interrupt", () => {
  it("asserts when ETBEI is enabled with an empty THR and clears on the IIR read", () => {
    const { r, w, level } = make();
    w(IER, 0x02);
    expect(level()).toBe(true);
    expect(r(IIR)).toBe(0x02);
    expect(level()).toBe(false);
    expect(r(IIR)).toBe(0x01);
  });

  it("re-asserts on toggling ETBEI (Linux's THRE test) and after each THR write", () => {
    const { r, w, level, out } = make();
    w(IER, 0x02);
    expect(r(IIR)).toBe(0x02);
    w(IER, 0x00);
    w(IER, 0x02);
    expect(r(IIR)).toBe(0x02); // a UART without this edge would be flagged UART_BUG_THRE
    expect(level()).toBe(false);
    w(THR, 0x55);
    expect(out).toEqual([0x55]);
    expect(level()).toBe(true); // transmitted at once, THR empty again
    expect(r(IIR)).toBe(0x02);
  });

  it("does not re-assert when IER is rewritten with ETBEI unchanged", () => {
    const { r, w, level } = make();
    w(IER, 0x02);
    r(IIR);
    w(IER, 0x03);
    expect(level()).toBe(false);
    expect(r(IIR)).toBe(0x01);
  });

  it("clears when ETBEI is cleared", () => {
    const { w, level } = make();
    w(IER, 0x02);
    expect(level()).toBe(true);
    w(IER, 0x00);
    expect(level()).toBe(false);
  });

  it("is reported below RDA and not acknowledged by an IIR read that reports RDA", () => {
    const { u, r, w } = make();
    w(IER, 0x03);
    u.receive(0x10);
    expect(r(IIR)).toBe(0x04);
    r(RBR);
    expect(r(IIR)).toBe(0x02); // still pending after the RDA was serviced
    expect(r(IIR)).toBe(0x01);
  });
});

describe("uart16550 loopback and modem status", () => {
  it("maps MCR outputs to MSR inputs in loopback (Linux probe sees 0x90)", () => {
    const { r, w } = make();
    w(MCR, 0x1a); // LOOP | OUT2 | RTS
    expect(r(MSR) & 0xf0).toBe(0x90); // DCD | CTS
    w(MCR, 0x15); // LOOP | OUT1 | DTR
    expect(r(MSR) & 0xf0).toBe(0x60); // RI | DSR
  });

  it("routes transmitted bytes back to the receiver and not to the sink", () => {
    const { u, r, w, out, level } = make();
    w(MCR, 0x10);
    expect(u.rxSpace()).toBe(0); // external input is disconnected
    w(IER, 0x01);
    w(THR, 0x5a);
    expect(out).toEqual([]);
    expect(level()).toBe(true);
    expect(r(LSR) & 1).toBe(1);
    expect(r(RBR)).toBe(0x5a);
    u.receive(0x11); // ignored while looped back
    expect(r(LSR) & 1).toBe(0);
    w(MCR, 0x00);
    expect(u.rxSpace()).toBe(1);
    w(THR, 0x33);
    expect(out).toEqual([0x33]);
  });

  it("raises modem status interrupts on line changes and clears them on MSR read", () => {
    const { r, w, level } = make();
    w(IER, 0x08);
    w(MCR, 0x1f); // loopback with all outputs: CTS and DSR stay, RI rises, DCD stays
    expect(level()).toBe(false); // no delta for lines that stayed asserted, RI rising is not TERI
    w(MCR, 0x1b); // OUT1 off: RI falls -> TERI
    expect(level()).toBe(true);
    expect(r(IIR)).toBe(0x00);
    const msr = r(MSR);
    expect(msr & 0x0f).toBe(0x04);
    expect(level()).toBe(false);
    w(MCR, 0x19); // RTS off: CTS falls -> DCTS
    expect(r(MSR) & 0x0f).toBe(0x01);
  });
});

describe("uart16550 snapshot", () => {
  it("round-trips state and re-drives the interrupt line", () => {
    const a = make();
    a.w(FCR, 0x41);
    a.w(IER, 0x01);
    a.w(LCR, 0x83);
    a.w(DLL, 3);
    a.w(LCR, 0x03);
    a.u.receive(7);
    a.u.receive(8);
    const state = JSON.parse(JSON.stringify(a.u.save()));
    const b = make();
    b.u.restore(state);
    expect(b.irq).toEqual([true]);
    expect(b.r(IIR)).toBe(0xcc);
    expect(b.r(RBR)).toBe(7);
    expect(b.r(RBR)).toBe(8);
    b.w(LCR, 0x83);
    expect(b.r(DLL)).toBe(3);
    expect(() => b.u.restore({ ...state, ier: 300 })).toThrow(/uart0: state.ier must be an integer with only bits 0xf, got 300/);
    expect(() => b.u.restore({ ...state, rx: [1] })).toThrow(/uart0: state.rx must be 0..16 bytes in base64/);
  });
});
