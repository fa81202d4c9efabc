// The QEMU command lines the README shows, as the README shows them (one string per line, as a
// shell would join its continuation lines). The tests run each with the program name replaced
// by wasmvisor's and the example file names by real files; qemu-cli.test.ts checks that the
// README shows exactly these.
export const README_QEMU_LINES = {
  ubootS: `qemu-system-riscv64 -machine virt -nographic -kernel /usr/lib/u-boot/qemu-riscv64_smode/uboot.elf`,
  ubootM: `qemu-system-riscv64 -M virt -nographic -bios none -kernel /usr/lib/u-boot/qemu-riscv64/u-boot.bin`,
  linux: `qemu-system-riscv64 -machine virt -m 256M -nographic -kernel Image -initrd initramfs.cpio.gz -append "console=ttyS0" ` +
    `-drive file=disk.img,format=raw,if=none,id=hd0 -device virtio-blk-device,drive=hd0 ` +
    `-netdev user,id=net0,hostfwd=tcp::8080-:80 -device virtio-net-device,netdev=net0 -device virtio-rng-device -snapshot`,
  xv6: `qemu-system-riscv64 -machine virt -bios none -kernel kernel/kernel -m 128M -smp 3 -nographic -global virtio-mmio.force-legacy=false -drive file=fs.img,if=none,format=raw,id=x0 -device virtio-blk-device,drive=x0,bus=virtio-mmio-bus.0`,
  qmp: `qemu-system-riscv64 -M virt -bios none -kernel prog.bin -m 64M -smp 2 -nographic -S -qmp unix:/tmp/qmp.sock,server=on,wait=off`,
  gdb: `qemu-system-riscv64 -machine virt -bios none -kernel prog.elf -m 64M -nographic -s -S`,
};

/** A README line's arguments (after the program name), each `from` word part replaced by `to`; double quotes grouped as a shell does. */
export function qemuArgs(line: string, replace: Record<string, string> = {}): string[] {
  const words = line.match(/"[^"]*"|\S+/g)!.slice(1).map((w) => w.replace(/^"(.*)"$/, "$1"));
  return words.map((w) => Object.entries(replace).reduce((acc, [from, to]) => acc.split(from).join(to), w));
}

/** The QEMU lines of a README text: those starting with qemu-system-riscv64, continuation lines joined. */
export function qemuLinesOf(readme: string): string[] {
  const joined = readme.replace(/ *\\\n\s*/g, " ");
  return joined.split("\n").filter((l) => l.startsWith("qemu-system-riscv64 ")).map((l) => l.trim());
}
