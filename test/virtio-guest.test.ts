// A hostile guest (guests/baremetal/tests/virtio_bad.c) hands virtio-blk malformed descriptors:
// addresses outside RAM, loops, huge lengths, bad indices, bad indirect tables, rings outside
// RAM. Each must leave the device in DEVICE_NEEDS_RESET and the host running; after a reset
// the device serves requests again.
import { test, expect } from "vitest";
import { readFileSync } from "node:fs";
import { buildBaremetal } from "../guests/baremetal/build.mjs";
import { runBareMetal } from "./board";
import { loadCoreModule } from "../host/platform/node/core";
import { MemoryDisk } from "../host/platform/memory/disk";

test("virtio_bad: every malformed request ends in DEVICE_NEEDS_RESET, the host survives", async () => {
  const { programs } = await buildBaremetal();
  const image = new Uint8Array(1 << 20);
  image.set(new TextEncoder().encode("WVBLK-OK"));
  const disk = new MemoryDisk(image);
  const r = runBareMetal(loadCoreModule(), { name: "virtio_bad", bytes: new Uint8Array(readFileSync(programs.virtio_bad)) }, {
    drives: [{ backend: disk }],
  });
  expect(r.output).not.toMatch(/^FAIL/m);
  expect(r.output).toMatch(/PASS: virtio_bad/);
  expect(r.reason.code).toBe(0);
}, 120_000);
