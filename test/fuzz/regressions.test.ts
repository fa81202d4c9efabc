// What the fuzzers found, each kept as a test of the behaviour that was wrong (the inputs
// themselves are in fuzz/crashes/ and replayed by targets.test.ts).
import { describe, test, expect } from "vitest";
import { VirtioRng } from "../../host/virtio/rng";
import { REG_GUEST_PAGE_SIZE, REG_QUEUE_NUM, REG_QUEUE_SEL } from "../../host/virtio/mmio";
import { StateStreamParser, TAGS, sectionHeader, streamHeader } from "../../host/state/container";
import { crc32 } from "../../host/state/crc32";
import { TestDriver } from "../virtio/helpers";
import { DEFINITION_PARSING, parseVmConfig } from "../../host/config/parse";

const json = (v: unknown) => JSON.parse(JSON.stringify(v));

describe("virtio state a guest can put a device in is saved and restored (fuzz/crashes/virtio-blk/)", () => {
  test("a queue the driver wrote any QueueNum to, but did not enable", () => {
    const d = new TestDriver(new VirtioRng()); // reset: no queue enabled
    d.w(REG_QUEUE_SEL, 0);
    d.mmio.write(REG_QUEUE_NUM, 4, 0); // 0 and 3 are not sizes a queue can be enabled with
    d.moveTo(new VirtioRng(), json(d.mmio.save()));
    d.mmio.write(REG_QUEUE_NUM, 4, 3);
    d.moveTo(new VirtioRng(), json(d.mmio.save()));
    expect(d.mmio.read(REG_QUEUE_NUM, 4)).toBe(3);
  });

  test("a legacy queue keeps the page size it was enabled with when the driver writes GuestPageSize again", () => {
    const d = new TestDriver(new VirtioRng(), { legacy: true });
    d.init();
    const q = d.q(0);
    d.w(REG_GUEST_PAGE_SIZE, 3); // not a power of two: no queue could be enabled with it
    d.moveTo(new VirtioRng(), json(d.mmio.save()), { legacy: true });
    d.w(REG_GUEST_PAGE_SIZE, 8192); // a valid one that would put the rings elsewhere
    d.moveTo(new VirtioRng(), json(d.mmio.save()), { legacy: true });
    // The restored queue is where the driver put it: a buffer posted there is filled.
    const c = q.post([{ writable: 16 }]);
    expect(q.takeUsed()).toEqual([{ id: c.head, len: 16 }]);
  });
});

describe("the migration stream parser (fuzz/crashes/state/)", () => {
  test("takes an empty section that ends what has arrived", () => {
    const empty = new Uint8Array(0);
    const end = new Uint8Array(8);
    new DataView(end.buffer).setUint32(0, 1, true);
    const p = new StateStreamParser("test stream");
    // Header and the empty section's header in one piece, then END: nothing is pending between them.
    const head = new Uint8Array([...streamHeader(), ...sectionHeader(TAGS.rom, 0, crc32(empty))]);
    expect(p.push(head).map((s) => [s.tag, s.payload.length])).toEqual([[TAGS.rom, 0]]);
    expect(p.push(new Uint8Array([...sectionHeader(TAGS.end, 8, crc32(end)), ...end])).map((s) => s.tag)).toEqual([TAGS.end]);
    expect(p.ended).toBe(true);
  });
});

describe("configuration errors quoting a client's value (fuzz/crashes/state/)", () => {
  test("stay one line, its control characters escaped", () => {
    expect(() => parseVmConfig({ name: "x", kernel: "k", paging: "a\nb\u001b[2J" }, DEFINITION_PARSING))
      .toThrow(/^'paging' must be "nested" or "shadow", not "a\\x0ab\\x1b\[2J"$/);
  });
});
