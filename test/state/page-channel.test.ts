// Post-copy's page channel on its own: pages go through the ring in order and whole, also past
// its wrap-around and with a queue behind it; a page asked for is heard; and pages put in just
// before the channel closes are still there to take after it has.
import { describe, test, expect } from "vitest";
import { CHANNEL, PageFeed, PageTap } from "../../host/migration/page-channel";
import { pageListPayload, readPageList } from "../../host/state/memory";

const page = (n: number) => new Uint8Array(4096).fill(n & 0xff).map((b, i) => (i < 4 ? (n >>> (8 * i)) & 0xff : b));

describe("the post-copy page channel", () => {
  test("carries 1000 pages (four times round its ring, most of them queued first) in order, zero pages as zero", async () => {
    let rung = 0;
    const feed = new PageFeed(() => { rung++; });
    const tap = new PageTap(feed.buffer);
    for (let n = 0; n < 1000; n++) feed.put(n, n % 7 === 0 ? null : page(n));
    expect(feed.queued).toBe(1000 - 256); // the ring holds 256
    expect(rung).toBeGreaterThan(0);
    const got: [number, Uint8Array | null][] = [];
    while (got.length < 1000) {
      tap.take((p, d) => got.push([p, d && d.slice()]));
      await new Promise((r) => setTimeout(r, 1)); // the feed moves the queue into the ring as it empties
    }
    expect(got.map(([p]) => p)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    for (const [p, d] of got) {
      if (p % 7 === 0) expect(d).toBeNull();
      else expect(Buffer.compare(d!, page(p))).toBe(0);
    }
    expect(feed.queued).toBe(0);
    feed.close(CHANNEL.complete);
  });

  test("hears the page the pCPU asks for; a closed channel says why, and what came before it is still taken", async () => {
    const feed = new PageFeed(() => {});
    const tap = new PageTap(feed.buffer);
    const asked: number[] = [];
    const hearing = feed.requests((p) => asked.push(p));
    tap.ask(123_456);
    for (let i = 0; i < 100 && !asked.length; i++) await new Promise((r) => setTimeout(r, 5));
    expect(asked).toEqual([123_456]);
    feed.put(5, page(5));
    feed.close(CHANNEL.failed, "the link was reset");
    await hearing;
    expect(tap.state).toBe(CHANNEL.failed);
    expect(tap.reason).toBe("the link was reset");
    const got: number[] = [];
    tap.take((p) => got.push(p));
    expect(got).toEqual([5]);
    expect(() => new PageTap(new SharedArrayBuffer(16))).toThrow(/not a page channel/);
  });
});

describe("a post-copy page list (PCPY) from a source", () => {
  test("must fit the VM's RAM exactly: a wrong length or a page past RAM is refused", () => {
    // 40 pages: two words, the second with 8 bits that may be set.
    expect(Array.from(readPageList(pageListPayload(Uint32Array.of(0xffffffff, 0xff)), 40, "x"))).toEqual([0xffffffff, 0xff]);
    expect(() => readPageList(new Uint8Array(4), 40, "the stream")).toThrow(/^the stream: the list of pages still to come is 4 bytes, not 8 for 40 pages$/);
    expect(() => readPageList(new Uint8Array(12), 40, "the stream")).toThrow(/is 12 bytes, not 8/);
    expect(() => readPageList(pageListPayload(Uint32Array.of(0, 0x100)), 40, "the stream")).toThrow(/names pages past the end of RAM/);
    expect(() => readPageList(pageListPayload(Uint32Array.of(0, 0x80000000)), 40, "the stream")).toThrow(/names pages past the end of RAM/);
  });
});
