// The board's devicetree must not change when the code that writes it does: these are the
// SHA-256 hashes of the DTBs VirtMachine built for each configuration before the board became a
// table of slots (commit 7e5363a), node order and phandles included. A DTB that differs in one
// byte is a different board to the guest.
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { describe, expect, test } from "vitest";
import { VirtMachine, type VirtConfig } from "../host/machine/virt";
import { loadCoreModule } from "../host/platform/node/core";
import { MemoryDisk } from "../host/platform/memory/disk";
import type { NetBackend } from "../host/devices/backends";

const image = (name: string, size: number) => ({ name, bytes: new Uint8Array(size).fill(0x13) }); // nops
const nic = (): NetBackend => ({ send() {}, attach() {}, close() {} });
const disk = () => new MemoryDisk(1 << 20);

const CONFIGS: Record<string, Omit<VirtConfig, "module" | "output">> = {
  "bare metal, 1 hart": { memory: 16 << 20, bios: null, kernel: image("kernel", 4096) },
  "para, 3 harts, virtio console and rng": {
    memory: 64 << 20, harts: 3, bios: "builtin", kernel: image("kernel", 4096), append: "console=hvc0", virtioConsole: true,
  },
  "para, virtio disks and NIC, initrd, bandwidth limits": {
    memory: 128 << 20, bios: "builtin", kernel: image("kernel", 8192), initrd: image("initrd", 5000),
    append: "root=/dev/vda ro quiet", drives: [{ backend: disk(), serial: "d0" }, { backend: disk(), readOnly: true }],
    nets: [{ backend: nic() }], limits: { diskBytesPerSec: 1e6, netBytesPerSec: 1e6 },
  },
  "full, 2 harts, 2 ATA + 2 ethoc + virtio drives and NIC, initrd": {
    memory: 256 << 20, harts: 2, bios: image("firmware", 4096), kernel: image("kernel", 4096), initrd: image("initrd", 100_000),
    append: "console=ttyS0 root=/dev/sda",
    drives: [{ backend: disk(), if: "ide" }, { backend: disk() }, { backend: disk(), if: "ide", serial: "second" }, { backend: disk() }],
    nets: [{ backend: nic(), model: "ethoc" }, { backend: nic() }, { backend: nic(), model: "ethoc" }],
  },
  "every slot taken, 8 harts": {
    memory: 64 << 20, harts: 8, bios: image("firmware", 4096), kernel: image("kernel", 4096), append: "",
    drives: [...Array.from({ length: 4 }, () => ({ backend: disk(), if: "ide" as const })), ...Array.from({ length: 3 }, () => ({ backend: disk() }))],
    nets: [...Array.from({ length: 4 }, () => ({ backend: nic(), model: "ethoc" as const })), { backend: nic() }, { backend: nic() }, { backend: nic() }],
    virtioConsole: true,
  },
};

const EXPECTED: Record<string, string> = {
  "bare metal, 1 hart": "5c125b7b2ca5e18ff09832d4e3cba9f5f38251676d6571e6b921a6222c042ac3",
  "para, 3 harts, virtio console and rng": "b288ffa87fb4c66cac9e7789a1e64af284590cbdb86740dfe729a18829b1b68c",
  "para, virtio disks and NIC, initrd, bandwidth limits": "13051e02be5ef92cafdda8d6814f8aa0e50447d42c0221d133a668cdd33ead39",
  "full, 2 harts, 2 ATA + 2 ethoc + virtio drives and NIC, initrd": "3f02148df2984aa57723359c5c208ad7d1b7e5cada46313b2f1d3d5b6e5abdad",
  "every slot taken, 8 harts": "7740bacbbec9a960a1a60aa38e574a009830d46525538d1eb5ec985474fe3034",
};

describe("the board's devicetree is the same as before", () => {
  for (const [name, cfg] of Object.entries(CONFIGS)) {
    test(name, () => {
      const m = new VirtMachine({ ...cfg, module: loadCoreModule(), output: () => {} });
      const hash = createHash("sha256").update(m.dtb).digest("hex");
      // WV_DUMP_DTB=<dir> writes the blobs out, for `dtc -I dtb` to show what changed.
      if (process.env.WV_DUMP_DTB) writeFileSync(`${process.env.WV_DUMP_DTB}/${name.replace(/[^a-z0-9]+/gi, "-")}.dtb`, m.dtb);
      expect(hash).toBe(EXPECTED[name]);
      // And the same bytes are in guest memory where the boot ROM says.
      expect(Buffer.from(m.core.physRead(m.layout.dtb, m.dtb.length)!)).toEqual(Buffer.from(m.dtb));
    });
  }
});

describe("the USB controller's node", () => {
  test("a machine with USB devices has a generic-xhci node at 0x10030000 on PLIC source 20, and the DTB passes dtc", () => {
    const m = new VirtMachine({
      memory: 64 << 20, bios: "builtin", kernel: image("kernel", 4096), module: loadCoreModule(), output: () => {},
      usb: { devices: [{ type: "usb-kbd", id: "kbd0" }, { type: "usb-storage", id: "disk0", backend: disk() }] },
    });
    const dts = execFileSync("dtc", ["-I", "dtb", "-O", "dts", "-q"], { input: m.dtb }).toString();
    const node = /usb@10030000 \{([^}]*)\}/.exec(dts)?.[1] ?? "";
    expect(node).toMatch(/compatible = "generic-xhci";/);
    expect(node).toMatch(/reg = <0x00 0x10030000 0x00 0x1000>;/);
    expect(node).toMatch(/interrupts = <0x14>;/);
    expect(node).toMatch(/interrupt-parent = <0x[0-9a-f]+>;/);
    expect(m.usbDevices()).toEqual([{ id: "kbd0", type: "usb-kbd", port: 1 }, { id: "disk0", type: "usb-storage", port: 2 }]);
    // A machine without USB has no node (the DTBs above are unchanged).
    const plain = new VirtMachine({ memory: 64 << 20, bios: "builtin", kernel: image("kernel", 4096), module: loadCoreModule(), output: () => {} });
    expect(execFileSync("dtc", ["-I", "dtb", "-O", "dts", "-q"], { input: plain.dtb }).toString()).not.toContain("usb@");
    expect(() => plain.usbAttach({ type: "usb-kbd", id: "k" })).toThrow(/no USB controller/);
  });
});
