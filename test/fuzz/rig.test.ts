// The device rig's RAM reset between inputs: it zeroes only the pages the core marks used, so an
// input starts from all-zero RAM whatever the one before wrote, and a write that escaped the
// used-page bitmap (which that reset, and snapshots, rely on) is an error, not a leak.
import { describe, test, expect } from "vitest";
import { DeviceRig, RIG_RAM, zeroRam } from "../../fuzz/targets/rig";
import { RAM_BASE } from "../../host/machine/memory-map";
import { prng } from "../prng";

const allZero = (rig: DeviceRig) => rig.core.ram.every((b) => b === 0);

describe("the device rig's RAM reset", () => {
  test("zeroes whatever was written through ramView, anywhere in RAM, and unmarks it", () => {
    const rig = new DeviceRig();
    const rng = prng(11);
    for (let round = 0; round < 20; round++) {
      for (let w = 0; w < 1 + (rng() % 8); w++) {
        const len = 1 + (rng() % 9000); // across page boundaries too
        const at = RAM_BASE + (rng() % (RIG_RAM - len));
        rig.ramWrite(at, new Uint8Array(len).fill(1 + (rng() % 255)));
      }
      rig.ramWrite(RAM_BASE + RIG_RAM - 3, Uint8Array.of(7, 7, 7)); // the last page
      expect(allZero(rig)).toBe(false);
      rig.reset();
      expect(allZero(rig)).toBe(true);
      expect(rig.core.usedPages().every((w) => w === 0)).toBe(true);
    }
  });

  test("a write that did not mark its page used is caught within 64 resets", () => {
    const rig = new DeviceRig();
    rig.core.ram[5 * 4096 + 17] = 0x5a; // as a device writing through a read-only view would
    let error: unknown = null;
    for (let i = 0; i < 64 && !error; i++) {
      try {
        zeroRam(rig.core);
      } catch (e) {
        error = e;
      }
    }
    expect(String(error)).toMatch(/guest RAM at 0x80005010 was written without being marked used/);
    expect(allZero(rig)).toBe(true); // and it is gone for the inputs after
  });
});
