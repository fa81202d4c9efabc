import { describe, expect, it } from "vitest";
import { SifiveTest, type TestEvent } from "../../host/devices/sifive-test";

function make() {
  const events: TestEvent[] = [];
  return { dev: new SifiveTest((e) => events.push(e)), events };
}

describe("sifive test finisher", () => {
  it("powers off on 0x5555", () => {
    const { dev, events } = make();
    dev.write(0, 4, 0x5555);
    expect(events).toEqual([{ kind: "poweroff", code: 0 }]);
  });

  it("fails with the code in the upper half on 0x3333", () => {
    const { dev, events } = make();
    dev.write(0, 4, 0x3333 | (42 << 16));
    dev.write(0, 4, (0xffff << 16) | 0x3333);
    expect(events).toEqual([
      { kind: "fail", code: 42 },
      { kind: "fail", code: 0xffff },
    ]);
  });

  it("resets on 0x7777, also as a 16-bit write", () => {
    const { dev, events } = make();
    dev.write(0, 2, 0x7777);
    expect(events).toEqual([{ kind: "reset", code: 0 }]);
  });

  it("ignores other values, other offsets and byte writes, and reads zero", () => {
    const { dev, events } = make();
    dev.write(0, 4, 0x1234);
    dev.write(0, 4, 0x5556);
    dev.write(4, 4, 0x5555);
    dev.write(0, 1, 0x55);
    expect(events).toEqual([]);
    expect(dev.read(0, 4)).toBe(0);
    expect(dev.size).toBe(0x1000);
  });
});
