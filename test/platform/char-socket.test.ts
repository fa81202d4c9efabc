// The Unix socket a usb-serial's host end listens on: bytes from its client; a path another VM
// of this process listens on is refused (its socket is never taken over); a file is not replaced.
import { afterAll, expect, test } from "vitest";
import { mkdtempSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { listenCharSocket } from "../../host/platform/node/char-socket";

const dir = mkdtempSync(join(tmpdir(), "wasmvisor-chardev-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("one listener per path in this process; closing twice leaves a later listener alone; a file is not replaced", async () => {
  const path = join(dir, "acm.sock");
  const a = listenCharSocket(path, {});
  const got: number[] = [];
  a.attach((b) => got.push(...b));
  expect(() => listenCharSocket(path, {})).toThrow(/another character device of this process .* listens there/);
  const c = connect(path);
  await new Promise<void>((res) => c.once("connect", () => res()));
  c.write(Uint8Array.of(1, 2, 3));
  await new Promise((res) => setTimeout(res, 100));
  expect(got).toEqual([1, 2, 3]);
  c.destroy();
  a.close();
  a.close(); // twice: harmless
  expect(existsSync(path)).toBe(false);
  // The path is free again; a second close() of the first listener does not remove the new one's socket.
  const b = listenCharSocket(path, {});
  await new Promise((res) => setTimeout(res, 50));
  a.close();
  expect(existsSync(path)).toBe(true);
  b.close();
  const file = join(dir, "plain");
  writeFileSync(file, "data");
  expect(() => listenCharSocket(file, {})).toThrow(/exists and is not a socket/);
});
