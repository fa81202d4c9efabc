// Text from outside shown in a message: control characters escaped, wherever it comes from.
import { describe, test, expect } from "vitest";
import { printable, firstControl } from "../../host/util/text";
import { DestinationReplies, linkPair } from "../../host/migration/link";

describe("printable", () => {
  test("escapes C0, DEL, C1 and the bidirectional overrides; leaves other text alone", () => {
    expect(printable("a\nb\x1b[2J\x7f\x9b1m")).toBe("a\\x0ab\\x1b[2J\\x7f\\x9b1m");
    expect(printable("user\u202eexe.txt\u2066")).toBe("user\\u202eexe.txt\\u2066");
    expect(printable("ünïcode ✓ 名前 /dev/vda")).toBe("ünïcode ✓ 名前 /dev/vda");
  });

  test("firstControl names the first one, or nothing", () => {
    expect(firstControl("ok\tthen\n")).toBe("\\x09");
    expect(firstControl("fine")).toBeUndefined();
    // Stateless across calls (a global regex would remember where it stopped).
    expect(firstControl("\x01")).toBe("\\x01");
    expect(firstControl("\x01")).toBe("\\x01");
  });
});

describe("a migration destination's refusal", () => {
  test("is reported one line long, its control characters escaped and its length bounded", async () => {
    const [source, dest] = linkPair();
    const replies = new DestinationReplies(source);
    const hostile = `no\n\x1b]0;owned\x07${"x".repeat(10_000)}`;
    dest.write(new TextEncoder().encode(JSON.stringify({ error: hostile }) + "\n"));
    await expect(replies.next(1000, "its answer")).rejects.toThrow(/^the destination refused the VM: no\\x0a\\x1b\]0;owned\\x07x+$/);
    expect(replies.failure!.message.length).toBeLessThan(600);
  });
});
