// The VM the page boots, as a definition (the fields of the boot flags): the Linux guest on the
// full machine (Debian's OpenSBI), its data disk and NIC on virtio, and a USB keyboard the page's
// terminal can type on instead of the console. The browser suite boots the
// same definition in Node, so the two boot times differ only by where they ran.

export interface GuestFiles {
  firmware: string;
  kernel: string;
  initrd: string;
  /** The data disk: a qcow2 image (the page's overlay over the served disk.ext4). */
  disk: string;
  /** Whether the guest may reach the server's 127.0.0.1 (as 10.0.2.2). */
  loopback: boolean;
}

export function guestVm(name: string, f: GuestFiles): Record<string, unknown> {
  return {
    name,
    mode: "full",
    bios: f.firmware,
    kernel: f.kernel,
    initrd: f.initrd,
    append: "console=ttyS0",
    memory: "256M",
    drives: [`file=${f.disk},format=qcow2,if=virtio`],
    nets: [`user,model=virtio,loopback=${f.loopback ? "on" : "off"}`],
    usb: ["kbd"],
  };
}

/** The guest's shell prompt: the end of its boot. */
export const PROMPT = "root@wasmvisor:~# ";
