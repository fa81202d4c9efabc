// Snapshot files on Node: written whole or not at all, only inside the host's directories, and
// never over a file that is not a snapshot (a disk image) or through a symbolic link.
import { test, expect, afterAll } from "vitest";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createStateFile, openStateFile } from "../../host/platform/node/state-files";
import { STATE_MAGIC } from "../../host/state/container";

const root = mkdtempSync(join(tmpdir(), "wasmvisor-state-files-"));
const images = join(root, "images");
const outside = join(root, "outside");
mkdirSync(images);
mkdirSync(outside);
afterAll(() => rmSync(root, { recursive: true, force: true }));

const snapshot = (extra: string) => Uint8Array.from([...STATE_MAGIC, ...new TextEncoder().encode(extra)]);

test("a state file appears whole on commit, nothing on abort, and reads back", () => {
  const f = createStateFile(join(images, "a.wvs"), { what: "snapshot", dirs: [images], replaces: STATE_MAGIC });
  f.write(snapshot("one"));
  expect(readdirSync(images).filter((n) => n === "a.wvs")).toEqual([]); // not before the commit
  f.commit();
  const src = openStateFile(join(images, "a.wvs"), { what: "snapshot", dirs: [images] });
  expect(new TextDecoder().decode(src.read(8, 3))).toBe("one");
  src.close();
  const g = createStateFile(join(images, "b.wvs"), { what: "snapshot", dirs: [images] });
  g.write(snapshot("two"));
  g.abort();
  expect(readdirSync(images).sort()).toEqual(["a.wvs"]); // no file, no temporary left
});

test("only inside the host's directories, by the real path", () => {
  expect(() => createStateFile(join(outside, "x.wvs"), { what: "snapshot", dirs: [images] })).toThrow(/not in an image directory/);
  symlinkSync(outside, join(images, "escape"));
  expect(() => createStateFile(join(images, "escape", "x.wvs"), { what: "snapshot", dirs: [images] })).toThrow(/not in an image directory/);
  expect(() => createStateFile(join(images, "missing", "x.wvs"), { what: "snapshot", dirs: [images] })).toThrow(/does not exist/);
});

test("replaces a snapshot, never another file (a disk image), which stays as it was", () => {
  const again = createStateFile(join(images, "a.wvs"), { what: "snapshot", dirs: [images], replaces: STATE_MAGIC });
  again.write(snapshot("new"));
  again.commit();
  expect(new TextDecoder().decode(readFileSync(join(images, "a.wvs")).subarray(8))).toBe("new");
  writeFileSync(join(images, "disk.img"), "a disk's bytes");
  expect(() => createStateFile(join(images, "disk.img"), { what: "snapshot", dirs: [images], replaces: STATE_MAGIC })).toThrow(/a file that is not a snapshot is there/);
  expect(readFileSync(join(images, "disk.img"), "utf8")).toBe("a disk's bytes");
});
