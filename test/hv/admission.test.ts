// What a VM definition may name and claim on the host: images only from the host's image
// directories, only regular files (or block devices for disks), never a disk another VM writes;
// file descriptors (disks, host sockets) admitted against the host's limit like memory; and no
// way to the host's loopback unless the definition names the ports.
import { describe, test, expect, beforeAll, afterAll } from "vitest";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Hypervisor } from "../../host/hv/hypervisor";
import { Monitor } from "../../host/api/monitor";
import { nodePlatform } from "../../host/platform/node";
import { parseVmConfig, DEFINITION_PARSING } from "../../host/config/parse";
import { DEFAULT_VM_SOCKETS } from "../../host/net/budget";
import { createNodeDiskImage } from "../../host/platform/node/disk";
import { BUSY_LOOP } from "../busy-loop";

const dir = mkdtempSync(join(tmpdir(), "wasmvisor-admit-"));
const images = join(dir, "images");
const outside = join(dir, "outside");
mkdirSync(images);
mkdirSync(outside);
const busy = join(images, "busy.bin");
writeFileSync(busy, BUSY_LOOP);
const disk = join(images, "disk.img");
writeFileSync(disk, new Uint8Array(1 << 20));
writeFileSync(join(outside, "secret.bin"), "not for the guest");
symlinkSync(join(outside, "secret.bin"), join(images, "link.bin"));
execFileSync("mkfifo", [join(images, "fifo")]);

let hv: Hypervisor;
beforeAll(async () => {
  hv = await Hypervisor.start(nodePlatform, { cpus: 1, balance: false, imageDirs: [images], fileDescriptors: 400 });
});
afterAll(async () => {
  await hv.close();
  rmSync(dir, { recursive: true, force: true });
});

const vm = (name: string, extra: object = {}) => ({ name, bios: "none", kernel: busy, memory: "16M", ...extra });
const refusal = (p: Promise<unknown>) => p.then(() => { throw new Error("accepted"); }, (e: Error & { status?: number }) => e);

describe("images a definition may name", () => {
  test("only inside the host's image directories, wherever a link leads", async () => {
    for (const kernel of ["/etc/passwd", join(outside, "secret.bin"), join(images, "link.bin")]) {
      const e = await refusal(hv.create(vm("k", { kernel })));
      expect(e.status).toBe(400);
      expect(e.message).toMatch(/^--kernel .*: not in an image directory of this host \(.*images\); start the host with --images <dir> to allow another$/);
    }
    const e = await refusal(hv.create(vm("d", { drives: [`file=${join(outside, "secret.bin")}`] })));
    expect(e.message).toMatch(/--drive .*secret\.bin: not in an image directory/);
    expect(hv.list()).toEqual([]);
  });

  test("a qcow2 disk's backing files are held to the same directories, by name, by relative path and through links", async () => {
    const overlay = (name: string, backing: string) => {
      createNodeDiskImage(join(images, name), { size: 1 << 20, backing: { path: backing, format: "raw" }, what: "test" });
      return join(images, name);
    };
    for (const [name, backing] of [["abs.qcow2", join(outside, "secret.bin")], ["rel.qcow2", "../outside/secret.bin"], ["shadow.qcow2", "/etc/shadow"], ["link.qcow2", "link.bin"]]) {
      const e = await refusal(hv.create(vm("q", { drives: [`file=${overlay(name, backing)},format=qcow2`] })));
      expect(e.status).toBe(400);
      expect(e.message).toMatch(new RegExp(`^--drive .*${name.replace(".", "\\.")}: backing file .*: not in an image directory of this host`));
    }
    expect(hv.list()).toEqual([]);
  });

  test("a disk one VM writes cannot be the backing file of another's overlay; read-only, it can", async () => {
    const over = join(images, "over-disk.qcow2");
    createNodeDiskImage(over, { size: 1 << 20, backing: { path: "disk.img", format: "raw" }, what: "test" });
    await hv.create(vm("base-writer", { drives: [`file=${disk}`] }));
    try {
      expect((await refusal(hv.create(vm("over", { drives: [`file=${over}`] })))).message).toMatch(/--drive .*over-disk\.qcow2: backing file .*disk\.img: in use: another drive or VM of this process has it open for writing/);
    } finally {
      await hv.destroy("base-writer");
    }
    await hv.create(vm("base-reader", { drives: [`file=${disk},readonly=on`] }));
    await hv.create(vm("over", { drives: [`file=${over}`] }));
    await hv.destroy("over");
    await hv.destroy("base-reader");
  });

  test("only regular files: a FIFO does not block the host, a device is not read", async () => {
    const t0 = performance.now();
    expect((await refusal(hv.create(vm("f", { kernel: join(images, "fifo") })))).message).toMatch(/--kernel .*fifo: is a FIFO, not a regular file/);
    expect((await refusal(hv.create(vm("fd", { drives: [`file=${join(images, "fifo")},readonly=on`] })))).message).toMatch(/--drive .*fifo: is a FIFO, not a regular file or a block device/);
    expect(performance.now() - t0).toBeLessThan(2000);
    const dev = await Hypervisor.start(nodePlatform, { cpus: 1, balance: false }); // no image directories: anywhere
    try {
      expect((await refusal(dev.create({ name: "z", bios: "/dev/zero", kernel: busy, memory: "16M" }))).message).toMatch(/--bios \/dev\/zero: is a character device, not a regular file/);
      const big = join(dir, "big.bin");
      writeFileSync(big, new Uint8Array(17 << 20));
      expect((await refusal(dev.create(vm("b", { kernel: big })))).message).toMatch(/--kernel .*big\.bin: is 17 MiB, more than the guest's 16 MiB of RAM: it does not fit in guest RAM; use a larger --memory$/);
    } finally {
      await dev.close();
    }
  });

  test("a disk one VM writes is nobody else's; readonly=on shares", async () => {
    await hv.create(vm("writer", { drives: [`file=${disk}`] }));
    try {
      const e = await refusal(hv.create(vm("second", { drives: [`file=${disk}`] })));
      expect(e.message).toMatch(/--drive .*disk\.img: in use: another drive or VM of this process has it open for writing/);
      expect((await refusal(hv.create(vm("reader", { drives: [`file=${disk},readonly=on`] })))).message).toMatch(/in use/);
    } finally {
      await hv.destroy("writer");
    }
    await hv.create(vm("r1", { drives: [`file=${disk},readonly=on`] }));
    await hv.create(vm("r2", { drives: [`file=${disk},readonly=on`] }));
    expect((await refusal(hv.create(vm("twice", { drives: [`file=${disk}`, `file=${disk}`] })))).message).toMatch(/in use/);
    await hv.destroy("r1");
    await hv.destroy("r2");
  });
});

describe("file descriptors are admitted like memory", () => {
  test("a VM's sockets and disks count against the host's limit; a refusal says what is free", async () => {
    await hv.create(vm("big", { limits: { sockets: 300 }, drives: [`file=${disk}`] }));
    expect(hv.host()).toMatchObject({ fdLimit: 400, fdsCommitted: 301 });
    const e = await refusal(hv.create(vm("more", { nets: ["user"] })));
    expect(e.status).toBe(507);
    expect(e.message).toBe(`more needs ${DEFAULT_VM_SOCKETS + 2} file descriptors (disks, host sockets: 'limits.sockets' is ${DEFAULT_VM_SOCKETS}); ` +
      "99 of the host's 400 are free. Lower 'limits.sockets', destroy a VM, or raise the host's open-file limit (ulimit -n).");
    await hv.create(vm("small", { nets: ["user"], limits: { sockets: 10 } }));
    expect(hv.host().fdsCommitted).toBe(301 + 12);
    await hv.destroy("small");
    await hv.destroy("big");
    expect(hv.host().fdsCommitted).toBe(0);
  });

  test("a USB device plugged in counts against the limit as one there at creation does; unplugged, it frees them", async () => {
    await hv.create(vm("usb", { usb: ["kbd"], limits: { sockets: 392 } }));
    expect(hv.host().fdsCommitted).toBe(392 + 2);
    for (let i = 1; i <= 3; i++) await hv.usb("usb", { op: "attach", spec: `kbd,id=k${i}` });
    expect(hv.host().fdsCommitted).toBe(400);
    const e = await refusal(hv.usb("usb", { op: "attach", spec: "kbd,id=k4" }));
    expect(e.status).toBe(507);
    expect(e.message).toMatch(/a USB device needs 2 file descriptors; 0 of the host's 400 are free/);
    expect((await hv.usb("usb", { op: "list" })).devices.map((d) => d.id)).toEqual(["kbd0", "k1", "k2", "k3"]);
    await hv.usb("usb", { op: "detach", id: "k2" });
    expect(hv.host().fdsCommitted).toBe(398);
    await hv.usb("usb", { op: "attach", spec: "kbd,id=k4" });
    expect(hv.host().fdsCommitted).toBe(400);
    await hv.destroy("usb");
    expect(hv.host().fdsCommitted).toBe(0);
  });

  test("a usb-serial socket another VM listens on is refused, at creation and at hot-plug", async () => {
    const sock = join(images, "acm.sock");
    await hv.create(vm("acm1", { usb: [`serial,socket=${sock}`] }));
    const e = await refusal(hv.create(vm("acm2", { usb: [`serial,socket=${sock}`] })));
    expect(e.status).toBe(409);
    expect(e.message).toMatch(/acm1's usb-serial listens there/);
    await hv.create(vm("acm3", { usb: [] }));
    expect((await refusal(hv.usb("acm3", { op: "attach", spec: `serial,socket=${sock}` }))).message).toMatch(/acm1's usb-serial listens there/);
    expect((await hv.usb("acm3", { op: "list" })).devices).toEqual([]);
    await hv.destroy("acm1");
    await hv.usb("acm3", { op: "attach", spec: `serial,socket=${sock}` });
    expect((await hv.usb("acm3", { op: "list" })).devices.map((d) => d.type)).toEqual(["usb-serial"]);
    await hv.destroy("acm3");
  });

  test("limits.sockets is checked", () => {
    const parse = (d: object) => parseVmConfig(d, DEFINITION_PARSING);
    expect(() => parse(vm("x", { limits: { sockets: -1 } }))).toThrow(/'limits.sockets' must be a whole number from 0 to 65536/);
    expect(() => parse(vm("x", { limits: { sockets: 1.5 } }))).toThrow(/'limits.sockets'/);
    expect(parse(vm("x", { limits: { sockets: 0 } })).limits.sockets).toBe(0);
  });
});

describe("the host's loopback", () => {
  test("is closed to a VM of the host unless its definition names ports", () => {
    const nets = (list: string[]) => parseVmConfig(vm("n", { nets: list }), DEFINITION_PARSING).nets.map((n) => n.netdev);
    expect(nets(["user", "user,hostfwd=tcp::8080-:80"])).toEqual([
      { kind: "user", options: { loopback: "none" } },
      { kind: "user", options: { hostfwd: [{ proto: "tcp", hostPort: 8080, guestPort: 80 }], loopback: "none" } },
    ]);
    expect(nets(["user,loopback=5432", "user,loopback=on", "switch=lan"])).toEqual([
      { kind: "user", options: { loopback: [5432] } }, { kind: "user", options: { loopback: "all" } }, { kind: "switch", name: "lan" },
    ]);
    // The command line's default is QEMU's: every port (user-mode networking's own default),
    // stated in the configuration (a snapshot keeps it); restrict=on reaches none.
    const cli = parseVmConfig({ name: "c", nets: ["user", "user,restrict=on"] }, { naming: "flags", defaultMode: "full", defaultLoopback: "on" });
    expect(cli.nets).toEqual([{ model: "ethoc", netdev: { kind: "user", options: { loopback: "all" } } },
      { model: "ethoc", netdev: { kind: "user", options: { restrict: true, loopback: "none" } } }]);
  });
});

describe("QMP's device_add", () => {
  test("an id that is not one of QEMU's identifiers is refused as QEMU 7.2 refuses it, and plugs nothing", async () => {
    await hv.create(vm("qmp-usb", { usb: [] }));
    const m = new Monitor(hv, "qmp-usb", { version: { major: 7, minor: 2, micro: 0, package: "" }, named: false, threadId: 0, harts: 1, noReboot: false, quit: () => {} });
    for (const id of ["k,port=3", "1k", "", "k b", "k=1"]) {
      await expect(m.deviceAdd("usb-kbd", id), id).rejects.toMatchObject({ errorClass: "GenericError", message: "Parameter 'id' expects an identifier" });
    }
    expect((await hv.usb("qmp-usb", { op: "list" })).devices).toEqual([]);
    await m.deviceAdd("usb-kbd", "k-1._x");
    expect((await hv.usb("qmp-usb", { op: "list" })).devices.map((d) => d.id)).toEqual(["k-1._x"]);
    await hv.destroy("qmp-usb");
  });
});
