import { describe, expect, it } from "vitest";
import { GoldfishRtc } from "../../host/devices/goldfish-rtc";

const TIME_LOW = 0x00, TIME_HIGH = 0x04, ALARM_LOW = 0x08, ALARM_HIGH = 0x0c;
const IRQ_ENABLED = 0x10, CLEAR_ALARM = 0x14, ALARM_STATUS = 0x18, CLEAR_INTERRUPT = 0x1c;

function make(start = 1_700_000_000_123_456_789n) {
  let host = start;
  const irq: boolean[] = [];
  const rtc = new GoldfishRtc((l) => irq.push(l), () => host);
  const r = (off: number) => rtc.read(off, 4);
  const w = (off: number, v: number) => rtc.write(off, 4, v);
  const time = () => {
    const lo = r(TIME_LOW);
    return (BigInt(r(TIME_HIGH)) << 32n) | BigInt(lo);
  };
  const setAlarm = (ns: bigint) => {
    w(ALARM_HIGH, Number(ns >> 32n));
    w(ALARM_LOW, Number(ns & 0xffffffffn));
  };
  return {
    rtc, irq, r, w, time, setAlarm,
    advance: (ns: bigint) => { host += ns; },
    level: () => (irq.length ? irq[irq.length - 1] : false),
  };
}

describe("goldfish rtc", () => {
  it("reads the injected clock as 64-bit nanoseconds", () => {
    const t = make();
    expect(t.time()).toBe(1_700_000_000_123_456_789n);
    t.advance(5n);
    expect(t.time()).toBe(1_700_000_000_123_456_794n);
  });

  it("latches the high half when the low half is read", () => {
    const t = make(0x1_ffff_fff0n);
    expect(t.r(TIME_LOW)).toBe(0xfffffff0);
    t.advance(0x20n); // carry into the high half after the low read
    expect(t.r(TIME_HIGH)).toBe(1); // still the latched value
    expect(t.r(TIME_LOW)).toBe(0x10);
    expect(t.r(TIME_HIGH)).toBe(2);
  });

  it("accepts a number clock and the default clock tracks Date.now()", () => {
    const a = new GoldfishRtc(() => {}, () => 1234);
    expect(a.now()).toBe(1234n);
    const b = new GoldfishRtc(() => {});
    const expected = BigInt(Date.now()) * 1_000_000n;
    const got = b.now();
    expect(got >= expected - 1_000_000_000n && got <= expected + 1_000_000_000n).toBe(true);
  });

  it("sets the time the way Linux does (HIGH then LOW) and keeps running from it", () => {
    const t = make();
    const target = 0x0000_0123_4567_89abn;
    t.w(TIME_HIGH, Number(target >> 32n));
    t.w(TIME_LOW, Number(target & 0xffffffffn));
    expect(t.time()).toBe(target);
    t.advance(1000n);
    expect(t.time()).toBe(target + 1000n);
  });

  it("fires an alarm when polled at its deadline, only if IRQ_ENABLED", () => {
    const t = make(1_000_000n);
    t.setAlarm(1_500_000n);
    expect(t.r(ALARM_STATUS)).toBe(1);
    expect(t.r(ALARM_LOW)).toBe(1_500_000);
    expect(t.r(ALARM_HIGH)).toBe(0);
    expect(t.rtc.nextDeadline()).toBe(1_500_000n);
    expect(t.rtc.poll()).toBe(false);
    t.advance(499_999n);
    expect(t.rtc.poll()).toBe(false);
    t.advance(1n);
    expect(t.rtc.poll()).toBe(true);
    expect(t.irq).toEqual([]); // pending, but IRQ_ENABLED is 0
    expect(t.r(ALARM_STATUS)).toBe(0);
    expect(t.rtc.nextDeadline()).toBe(null);
    t.w(IRQ_ENABLED, 1);
    expect(t.r(IRQ_ENABLED)).toBe(1);
    expect(t.level()).toBe(true);
    t.w(CLEAR_INTERRUPT, 1);
    expect(t.level()).toBe(false);
  });

  it("fires immediately for an alarm in the past and accepts an explicit poll time", () => {
    const t = make(10_000n);
    t.w(IRQ_ENABLED, 1);
    t.setAlarm(5_000n);
    expect(t.level()).toBe(true);
    t.w(CLEAR_INTERRUPT, 1);
    t.setAlarm(20_000n);
    expect(t.level()).toBe(false);
    expect(t.rtc.poll(19_999n)).toBe(false);
    expect(t.rtc.poll(20_000n)).toBe(true);
    expect(t.level()).toBe(true);
  });

  it("cancels with CLEAR_ALARM", () => {
    const t = make(0n);
    t.w(IRQ_ENABLED, 1);
    t.setAlarm(100n);
    t.w(CLEAR_ALARM, 1);
    expect(t.r(ALARM_STATUS)).toBe(0);
    t.advance(1000n);
    expect(t.rtc.poll()).toBe(false);
    expect(t.level()).toBe(false);
  });

  it("expresses deadlines in host time after the guest moved its clock", () => {
    const t = make(1_000n);
    t.w(TIME_HIGH, 0);
    t.w(TIME_LOW, 1_000_000); // guest is 999_000 ns ahead of the host clock
    t.setAlarm(1_000_500n);
    expect(t.rtc.nextDeadline()).toBe(1_500n);
    t.advance(499n);
    expect(t.r(ALARM_STATUS)).toBe(1);
    t.advance(1n);
    expect(t.r(ALARM_STATUS)).toBe(0); // register reads check the alarm too
  });

  it("round-trips its state through JSON and re-drives the line", () => {
    const a = make(0n);
    a.w(TIME_LOW, 5000);
    a.w(IRQ_ENABLED, 1);
    a.setAlarm(1n);
    const state = JSON.parse(JSON.stringify(a.rtc.save()));
    const b = make(0n);
    b.rtc.restore(state);
    expect(b.irq).toEqual([true]);
    expect(b.time()).toBe(5000n);
    expect(() => b.rtc.restore({ ...state, offset: 12 })).toThrow(/rtc: state.offset must be a u64 in decimal digits, got 12/);
  });
});
