// QEMU's command line for the riscv64 virt machine: how each option maps onto the one VM
// configuration or is refused, and the README's QEMU lines run verbatim (the program name
// replaced by wasmvisor's) with real guests, some of them on the real qemu-system-riscv64 too.
import { describe, test, expect, beforeAll, afterAll } from "vitest";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { execFileSync, spawn } from "node:child_process";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseCli, CliError, type BootCommand } from "../../host/cli/args";
import { buildBaremetal } from "../../guests/baremetal/build.mjs";
import { buildLinuxGuest } from "../../guests/linux/build.mjs";
import { BIN, Session, freePort, runCli } from "./cli";
import { README_QEMU_LINES, qemuArgs, qemuLinesOf } from "./qemu-lines";

const UBOOT_M = "/usr/lib/u-boot/qemu-riscv64/u-boot.bin";
const UBOOT_S = "/usr/lib/u-boot/qemu-riscv64_smode/uboot.elf";
/** xv6-riscv's Makefile line (QEMUOPTS with CPUS=3), as `make qemu` runs it. */
const XV6_LINE = qemuArgs(README_QEMU_LINES.xv6).join(" ");

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "wasmvisor-qemu-cli-"));
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const qemu = (line: string | string[]) => parseCli(["qemu", ...(typeof line === "string" ? line.split(" ") : line)]) as BootCommand;
function refused(args: string[], message: RegExp): void {
  let error: unknown;
  try {
    parseCli(["qemu", ...args]);
  } catch (e) {
    error = e;
  }
  expect(error, args.join(" ")).toBeInstanceOf(CliError);
  expect((error as Error).message).toMatch(message);
  expect((error as Error).message).not.toContain("\n");
}

describe("QEMU's options map onto the VM configuration", () => {
  test("xv6's line: M-mode kernel, 128M, 3 harts, its disk a modern virtio-blk on bus 0", () => {
    const c = qemu(XV6_LINE).config;
    expect(c.bios).toBe("none");
    expect(c.kernel).toMatch(/\/kernel\/kernel$/);
    expect(c.memory).toBe(128 * 2 ** 20);
    expect(c.smp).toBe(3);
    expect(c.mode).toBe("full");
    expect(c.virtioLegacy).toBe(false);
    expect(c.drives).toEqual([{ file: expect.stringMatching(/\/fs\.img$/), format: "raw", readOnly: false, if: "virtio" }]);
  });

  test("QEMU's defaults under `qemu`: 128M, legacy virtio-mmio, OpenSBI; `boot` keeps wasmvisor's", () => {
    const q = qemu(["-kernel", UBOOT_S]).config;
    expect([q.memory, q.virtioLegacy, q.bios, q.mode]).toEqual([128 * 2 ** 20, true, "default", "full"]);
    const b = (parseCli(["boot", "-kernel", UBOOT_S]) as BootCommand).config;
    expect([b.memory, b.virtioLegacy]).toEqual([256 * 2 ** 20, false]);
    // A -drive without if= is wasmvisor's own disk under boot (ATA in full mode), nothing's under qemu.
    expect((parseCli(["boot", "-drive", "file=/tmp/x.img"]) as BootCommand).config.drives[0]!.if).toBe("ide");
    refused(["-drive", "file=/tmp/x.img"], /needs an id=/);
  });

  test("-m and -smp in QEMU's syntax", () => {
    expect(qemu("-m size=64M").config.memory).toBe(64 * 2 ** 20);
    expect(qemu("-m 1G").config.memory).toBe(2 ** 30);
    expect(qemu("-m 96").config.memory).toBe(96 * 2 ** 20);
    expect(qemu("-smp cpus=2").config.smp).toBe(2);
    expect(qemu("-smp sockets=1,cores=2,threads=2").config.smp).toBe(4);
    expect(qemu("-smp 2,maxcpus=2").config.smp).toBe(2);
    expect(qemu("--smp 3").config.smp).toBe(3); // QEMU takes two dashes too
    expect(qemu(["--kernel=/tmp/k"]).config.kernel).toBe("/tmp/k");
  });

  test("-smp's topology: the harts QEMU 7.2 makes, or a refusal where it refuses", () => {
    const dtb = join(dir, "smp.dtb");
    for (const spec of ["3", "2,cpus=4", "cpus=4,cpus=2", "sockets=2,cores=2", "4,threads=2", "cores=2,maxcpus=4", "4,sockets=2,cores=2", "2,dies=1",
      "2,sockets=2,cores=2", "sockets=2,cores=2,cpus=3", "3,sockets=2", "2,dies=2", "2,clusters=2"]) {
      // QEMU: the devicetree it would give the guest, or its refusal.
      let qemuHarts: number | "refused";
      try {
        execFileSync("qemu-system-riscv64", ["-M", `virt,dumpdtb=${dtb}`, "-smp", spec, "-display", "none"], { stdio: "ignore" });
        qemuHarts = (execFileSync("dtc", ["-I", "dtb", "-O", "dts", dtb], { stdio: ["ignore", "pipe", "ignore"] }).toString().match(/\bcpu@\d+ \{/g) ?? []).length;
      } catch {
        qemuHarts = "refused";
      }
      let ours: number | "refused";
      try {
        ours = qemu(["-smp", spec]).config.smp;
      } catch (e) {
        expect(e, spec).toBeInstanceOf(CliError);
        expect((e as Error).message).toMatch(/^-smp /);
        ours = "refused";
      }
      expect(ours, `-smp ${spec}`).toBe(qemuHarts);
    }
    // Hot-plug slots QEMU has and wasmvisor does not: refused, saying so.
    refused(["-smp", "2,maxcpus=4"], /-smp maxcpus=4: .*no CPU hot-plug/);
    refused(["-smp", "2,sockets=2,cores=2"], /sockets \(2\) \* cores \(2\) \* threads \(0\) is not maxcpus \(2\)/);
  }, 60_000); // QEMU starts once per line

  test("values QEMU refuses or reads differently are not taken silently", () => {
    refused(["-machine", "virt,dumpdtb="], /-machine virt,dumpdtb=: give the file/);
    refused(["-qmp", "unix:/tmp/q.sock,server=on,wait=off,nowait=off"], /give wait= or nowait, not both/);
    refused(["-qmp", "unix:/tmp/q.sock,server=on,wait="], /-qmp wait=: use on or off/);
    refused(["--kernel="], /^option '--kernel' needs a value, not an empty one$/);
    refused(["--bios="], /^option '--bios' needs a value, not an empty one$/);
    refused(["-initrd", ""], /^option '-initrd' needs a value, not an empty one$/);
    expect(qemu(["-append", ""]).config.append).toBe(""); // an empty command line is one
    refused(["-drive", "file=/tmp/a,if=none,id=a,snapshot=maybe", "-device", "virtio-blk-device,drive=a"], /-drive snapshot=maybe: use on or off/);
    expect(qemu(["-drive", "file=/tmp/a,if=none,id=a,snapshot=y", "-device", "virtio-blk-device,drive=a"]).temporary).toEqual([0]);
    // ipv4=/ipv6= choose the address family, as on QEMU: where they exclude the address's family, refused.
    const tcp = (props: string) => qemu(["-qmp", `tcp:${props}`]).qmp[0];
    expect(tcp("127.0.0.1:4444,server=on,wait=off,ipv4=on")).toMatchObject({ host: "127.0.0.1", port: 4444 });
    expect(tcp("127.0.0.1:4444,server=on,wait=off,ipv4=on,ipv6=on")).toMatchObject({ host: "127.0.0.1" });
    expect(tcp(":4444,server=on,wait=off,ipv6=on")).toMatchObject({ host: "::1" });
    expect(tcp("[::1]:4444,server=on,wait=off,ipv6=on,nodelay=on")).toMatchObject({ host: "::1", nodelay: true });
    refused(["-qmp", "tcp:127.0.0.1:4444,server=on,wait=off,ipv6=on"], /127\.0\.0\.1 is an IPv4 address and the options exclude IPv4/);
    refused(["-monitor", "tcp:127.0.0.1:4444,server=on,wait=off,ipv4=off"], /^-monitor .*exclude IPv4/);
    refused(["-qmp", "tcp:[::1]:4444,server=on,wait=off,ipv4=on"], /::1 is an IPv6 address/);
    refused(["-qmp", "tcp:127.0.0.1:4444,server=on,wait=off,ipv4="], /-qmp ipv4=: use on or off/);
    refused(["-qmp", "tcp:localhost:4444,server=on,wait=off,ipv4=on"], /give HOST as an address/);
  });

  test("networks, the RNG, -no-reboot, -snapshot, -name, -S and the monitors", () => {
    const c = qemu([
      "-netdev", "user,id=n0,hostfwd=tcp::2222-:22", "-device", "virtio-net-device,netdev=n0", "-nic", "user,model=virtio-net-device",
      "-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-device,rng=rng0", "-no-reboot", "-name", "guest=web",
      "-drive", "file=/tmp/a.img,if=none,id=d0,format=qcow2", "-device", "virtio-blk-device,drive=d0", "-snapshot", "-S",
      "-qmp", "unix:/tmp/q.sock,server,nowait", "-monitor", "tcp:127.0.0.1:4444,server=on,wait=off", "-machine", "virt,dumpdtb=/tmp/v.dtb",
      "-cpu", "rv64,zba=on,sv48=on,h=off", "-display", "none", "-serial", "mon:stdio", "-accel", "tcg",
    ]);
    expect(c.config.nets.map((n) => [n.model, n.netdev.kind === "user" ? n.netdev.options.hostfwd?.length ?? 0 : -1])).toEqual([["virtio", 1], ["virtio", 0]]);
    expect([c.config.rng, c.config.noReboot, c.config.name]).toEqual([true, true, "web"]);
    expect(c.temporary).toEqual([0]);
    expect(c.paused).toBe(true);
    expect(c.qmp).toEqual([{ kind: "unix", path: "/tmp/q.sock", wait: false, spec: "unix:/tmp/q.sock,server,nowait" }]);
    expect(c.monitors).toEqual([{ kind: "tcp", host: "127.0.0.1", port: 4444, wait: false, spec: "tcp:127.0.0.1:4444,server=on,wait=off" }]);
    expect([c.dtbOut, c.dumpDtbOnly]).toEqual(["/tmp/v.dtb", true]);
    expect(qemu("-monitor none").consoleMonitor).toBe(false);
    // The GDB stub: -s is QEMU's -gdb tcp::1234; -gdb tcp:HOST:PORT; wasmvisor's --gdb PORT; never waiting.
    expect(qemu("-s").gdb).toEqual({ kind: "tcp", host: "127.0.0.1", port: 1234, wait: false, spec: "tcp::1234" });
    expect(qemu("-gdb tcp:127.0.0.1:26000").gdb).toMatchObject({ kind: "tcp", host: "127.0.0.1", port: 26000, wait: false });
    expect(qemu("--gdb 26001").gdb).toMatchObject({ kind: "tcp", host: "127.0.0.1", port: 26001, wait: false });
    expect(qemu("-gdb none").gdb).toBeUndefined();
    // -accel tcg,thread=: a VM's harts on up to two threads (multi, the default) or on one.
    expect([c.singleThread, qemu("-accel tcg,thread=multi").singleThread, qemu("-accel tcg,thread=single").singleThread]).toEqual([false, false, true]);
  });

  test("USB: -device qemu-xhci, usb-kbd, usb-storage,drive=, usb-serial,chardev= with -chardev socket; --usb", () => {
    const c = qemu([
      "-device", "qemu-xhci", "-device", "usb-kbd,id=k", "-drive", "file=/tmp/u.img,if=none,id=u0,format=raw,readonly=on", "-device", "usb-storage,drive=u0",
      "-chardev", "socket,id=c0,path=/tmp/acm.sock,server=on,wait=off", "-device", "usb-serial,chardev=c0",
    ]);
    expect(c.config.usb).toEqual([
      { type: "usb-kbd", id: "k" },
      { type: "usb-storage", id: "storage0", file: "/tmp/u.img", format: "raw", readOnly: true },
      { type: "usb-serial", id: "serial0", socket: "/tmp/acm.sock" },
    ]);
    expect(c.config.drives).toEqual([]); // the USB disk is not also a virtio or ATA disk
    expect(c.temporaryUsb).toEqual([]);
    // -snapshot and snapshot=on: a USB disk writes to a temporary overlay too (not a read-only one).
    const usbDisk = (drive: string, ...more: string[]) => qemu(["-device", "qemu-xhci", "-drive", `file=/tmp/u.img,if=none,id=u,${drive}`, "-device", "usb-kbd", "-device", "usb-storage,drive=u", ...more]);
    expect(usbDisk("snapshot=on")).toMatchObject({ temporary: [], temporaryUsb: [1] });
    expect(usbDisk("format=raw", "-snapshot")).toMatchObject({ temporary: [], temporaryUsb: [1] });
    expect(usbDisk("snapshot=off").temporaryUsb).toEqual([]);
    expect(usbDisk("readonly=on", "-snapshot").temporaryUsb).toEqual([]);
    expect((parseCli(["boot", "--usb", "storage,file=u.img", "-snapshot"]) as BootCommand).temporaryUsb).toEqual([0]);
    expect(qemu("-device qemu-xhci").config.usb).toEqual([]);
    expect(qemu("-m 64M").config.usb).toBeUndefined();
    const b = parseCli(["boot", "--usb", "kbd", "--usb", "storage,file=u.img,port=5", "--usb", "serial,socket=s.sock,id=tty"]) as BootCommand;
    expect(b.config.usb).toEqual([
      { type: "usb-kbd", id: "kbd0" },
      { type: "usb-storage", id: "storage0", port: 5, file: resolve("u.img"), readOnly: false },
      { type: "usb-serial", id: "tty", socket: resolve("s.sock") },
    ]);
    refused(["-device", "usb-kbd"], /no USB bus: give -device qemu-xhci first/);
    refused(["-device", "qemu-xhci", "-device", "qemu-xhci"], /one USB controller/);
    refused(["-device", "qemu-xhci", "-device", "usb-storage,drive=nope"], /give drive=ID of a -drive/);
    refused(["-device", "qemu-xhci", "-device", "usb-serial,chardev=c9"], /give chardev=ID of a -chardev socket/);
    refused(["-chardev", "socket,id=c0,path=/tmp/x"], /add server=on,wait=off/);
    refused(["-chardev", "pty,id=c0"], /Unix sockets it listens on/);
    refused(["-usb"], /legacy USB option is not supported/);
    const boot = (...a: string[]) => () => parseCli(["boot", ...a]);
    expect(boot("--usb", "mouse")).toThrow(/the USB devices are kbd, storage and serial/);
    expect(boot("--usb", "kbd,id=a", "--usb", "kbd,id=a")).toThrow(/two USB devices with that id/);
    expect(boot("--usb", "kbd,port=9")).toThrow(/port=9: a root port from 1 to 8/);
    expect(boot("--usb", "kbd,port=2", "--usb", "kbd,port=2")).toThrow(/two USB devices on that port/);
    expect(boot("--usb", "storage")).toThrow(/give the image as file=/);
    expect(boot("--usb", "serial")).toThrow(/give the host's end as socket=PATH/);
    expect(boot("--usb", "kbd,file=x")).toThrow(/unknown option 'file'/);
    expect(boot(...Array.from({ length: 9 }, (_, i) => ["--usb", `kbd,id=k${i}`]).flat())).toThrow(/has 8 ports/);
  });

  test("what wasmvisor does not have is refused, naming the option, in one line", () => {
    refused(["-gdb", "pty"], /^-gdb pty: wasmvisor's GDB stub listens on tcp::PORT, tcp:HOST:PORT or unix:PATH/);
    refused(["-gdb", "tcp::99999"], /^-gdb tcp::99999: give tcp:HOST:PORT/);
    refused(["-d", "guest_errors"], /^-d: wasmvisor has no QEMU-style -d logging/);
    refused(["-net", "nic"], /^-net: .*-netdev user,id=n0/);
    refused(["-enable-kvm"], /^-enable-kvm: .*no KVM/);
    refused(["-frobnicate"], /unknown option '-frobnicate'/);
    refused(["disk.img"], /unexpected argument 'disk\.img'/);
    refused(["-machine", "sifive_u"], /-machine sifive_u: .*'virt' machine only/);
    refused(["-machine", "virt,aia=aplic-imsic"], /-machine virt,aia=aplic-imsic: .*does not have that/);
    refused(["-cpu", "sifive-u54"], /-cpu sifive-u54: .*use -cpu rv64/);
    refused(["-accel", "tcg,thread=many"], /-accel tcg,thread=many: thread is single or multi/);
    refused(["-accel", "tcg,tb-size=64"], /-accel tcg,tb-size=64: .*thread=single\|multi only/);
    refused(["-cpu", "rv64,v=true"], /-cpu v=true: wasmvisor's harts do not have v/);
    refused(["-cpu", "rv64,c=off"], /-cpu c=off: wasmvisor's harts always have c/);
    refused(["-smp", "2,maxcpus=4"], /-smp maxcpus=4: .*no CPU hot-plug/);
    refused(["-m", "1G,slots=2,maxmem=4G"], /-m: .*property 'slots'.*no memory hot-plug/);
    refused(["-netdev", "tap,id=n0"], /-netdev tap: .*user-mode only/);
    refused(["-netdev", "user,id=n0"], /-netdev user,id=n0: no -device takes it/);
    refused(["-device", "virtio-net-pci,netdev=n0"], /no PCI bus: use virtio-net-device/);
    refused(["-device", "e1000"], /no device 'e1000'/);
    refused(["-device", "virtio-blk-device,drive=nope"], /no -drive has id=nope/);
    refused(["-drive", "file=/tmp/a,if=none,id=a", "-device", "virtio-blk-device,drive=a,num-queues=4"], /property 'num-queues'/);
    refused(["-drive", "file=/tmp/a,if=none,id=a", "-device", "virtio-blk-device,drive=a,bus=virtio-mmio-bus.3"], /this one is on virtio-mmio-bus\.0/);
    refused(["-drive", "file=/tmp/a,if=none,id=a", "-drive", "file=/tmp/b,if=none,id=b", "-device", "virtio-blk-device,drive=a,bus=virtio-mmio-bus.0", "-device", "virtio-blk-device,drive=b"], /this one is on virtio-mmio-bus\.1/);
    refused(["-drive", "file=/tmp/a,if=none,id=a,cache=none", "-device", "virtio-blk-device,drive=a"], /--drive: unknown option 'cache'/);
    refused(["-object", "memory-backend-ram,id=m0,size=1G"], /-object memory-backend-ram: .*rng-random/);
    refused(["-global", "virtio-blk-device.num-queues=2"], /-global virtio-blk-device\.num-queues=2: .*force-legacy/);
    refused(["-serial", "pty"], /-serial pty: .*terminal/);
    refused(["-display", "gtk"], /-display gtk: .*no graphical display/);
    refused(["-qmp", "unix:/tmp/q.sock"], /-qmp unix:\/tmp\/q\.sock: wasmvisor listens.*server=on/);
    refused(["-qmp", "stdio"], /-qmp stdio: .*unix:PATH,server=on,wait=off/);
    refused(["-name", "bad name!"], /--name must be 1-64 letters/);
    refused(["-nic", "user,model=e1000"], /model=e1000: .*virtio-net/);
  });

  test("through the real CLI: one line on stderr, exit status 2, the help named", async () => {
    const r = await runCli(["qemu", "-machine", "virt", "-d", "guest_errors"]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^wasmvisor: -d: wasmvisor has no QEMU-style -d logging.*\n  Try 'wasmvisor qemu -help'\.\n$/);
  });

  test("-machine virt,dumpdtb= writes the devicetree and exits; -dtb gives the guest another (U-Boot shows its model, as on QEMU)", async () => {
    const dumped = join(dir, "virt.dtb");
    const r = await runCli(["qemu", "-M", `virt,dumpdtb=${dumped}`, "-bios", "none", "-kernel", UBOOT_M, "-append", "console=ttyS0 x=1"]);
    expect(r.code).toBe(0);
    expect(r.out).toBe(""); // nothing ran
    const dts = execFileSync("dtc", ["-I", "dtb", "-O", "dts", dumped], { stdio: ["ignore", "pipe", "ignore"] }).toString();
    expect(dts).toMatch(/bootargs = "console=ttyS0 x=1";/);
    const mine = join(dir, "mine.dtb");
    execFileSync("dtc", ["-I", "dts", "-O", "dtb", "-o", mine], { input: dts.replace('model = "riscv-virtio,wasmvisor"', 'model = "my-own-board"'), stdio: ["pipe", "ignore", "ignore"] });
    const args = ["-M", "virt", "-nographic", "-bios", "none", "-kernel", UBOOT_M, "-dtb", mine];
    await untilOutput(["qemu-system-riscv64"], args, "Model: my-own-board");
    await untilOutput(WASMVISOR_QEMU, args, "Model: my-own-board");
    // /chosen gets -append, as QEMU sets it.
    const given = join(dir, "given.dtb");
    expect((await runCli(["qemu", "-M", `virt,dumpdtb=${given}`, "-bios", "none", "-kernel", UBOOT_M, "-dtb", mine, "-append", "from=append"])).code).toBe(0);
    expect(execFileSync("dtc", ["-I", "dtb", "-O", "dts", given], { stdio: ["ignore", "pipe", "ignore"] }).toString()).toMatch(/model = "my-own-board";[\s\S]*bootargs = "from=append";/);
    const junk = join(dir, "junk.dtb");
    writeFileSync(junk, "not a devicetree");
    const bad = await runCli(["qemu", "-M", "virt", "-bios", "none", "-kernel", UBOOT_M, "-dtb", junk]);
    expect(bad.code).not.toBe(0);
    expect(bad.err).toMatch(/^wasmvisor: -dtb .*junk\.dtb: not a devicetree blob \(.*\); make one with dtc, or leave -dtb out\n$/);
  }, 120_000);

  test("-version answers as QEMU's first line does (xv6's Makefile checks it), -help lists -gdb", async () => {
    const v = await runCli(["qemu", "--version"]);
    expect(v.out.split("\n")[0]).toMatch(/^QEMU emulator version 7\.2\.\d+ \(wasmvisor /);
    const h = await runCli(["qemu", "-help"]);
    expect(h.out).toMatch(/^-gdb /m);
  });
});

/** Run `args` (a QEMU line's arguments) with the given program in `cwd` until `text` shows, then end it. */
async function untilOutput(argv0: string[], args: string[], text: string | RegExp, cwd?: string, timeoutMs = 60_000): Promise<string> {
  const child = spawn(argv0[0]!, [...argv0.slice(1), ...args], { cwd, stdio: ["pipe", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (d: Buffer) => { out += d.toString("latin1"); });
  child.stderr.on("data", (d: Buffer) => { out += d.toString("latin1"); });
  try {
    const t0 = Date.now();
    while (typeof text === "string" ? !out.includes(text) : !text.test(out)) {
      if (child.exitCode !== null || Date.now() - t0 > timeoutMs) throw new Error(`no ${String(text)} from ${argv0.join(" ")}; output:\n${out.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return out;
  } finally {
    child.kill("SIGKILL");
  }
}

const WASMVISOR_QEMU = [process.execPath, BIN.replace(/wasmvisor\.js$/, "wasmvisor-system-riscv64.js")];

describe("the README's QEMU lines, verbatim", () => {
  test("the README shows these lines and no others", () => {
    const readme = readFileSync(join(__dirname, "../../README.md"), "utf8");
    expect(qemuLinesOf(readme).sort()).toEqual(Object.values(README_QEMU_LINES).sort());
  });

  // Real QEMU lines: each runs on qemu-system-riscv64 too, which reaches the same prompt.
  for (const line of [README_QEMU_LINES.ubootM, README_QEMU_LINES.ubootS]) {
    test(`U-Boot's prompt: ${line}`, async () => {
      await untilOutput(["qemu-system-riscv64"], qemuArgs(line), "=> ");
      const out = await untilOutput(WASMVISOR_QEMU, qemuArgs(line), "=> ");
      expect(out).toMatch(/U-Boot 2023\.01/);
    }, 120_000);
  }

  test(`xv6-riscv's 'make qemu' line (a bare-metal program standing in for its kernel): ${README_QEMU_LINES.xv6}`, async () => {
    const { programs } = await buildBaremetal();
    const cwd = join(dir, "xv6");
    mkdirSync(join(cwd, "kernel"), { recursive: true });
    copyFileSync(programs.rv64i, join(cwd, "kernel/kernel"));
    writeFileSync(join(cwd, "fs.img"), new Uint8Array(1 << 20));
    const child = spawn(WASMVISOR_QEMU[0]!, [...WASMVISOR_QEMU.slice(1), ...qemuArgs(README_QEMU_LINES.xv6)], { cwd, stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => { out += d.toString(); });
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    expect(out).toMatch(/PASS: rv64i/);
    expect(code).toBe(0);
  }, 120_000);

  test("Linux with a disk, a NIC with hostfwd, an RNG, -snapshot: the guest sees them; the image is not written", async () => {
    const guest = await buildLinuxGuest({ log: () => {} });
    const disk = join(dir, "disk.img");
    copyFileSync(guest.disk, disk);
    const before = readFileSync(disk);
    const port = await freePort();
    // The README's line, with the cached guest's files and a free port.
    const line = qemuArgs(README_QEMU_LINES.linux, {
      "initramfs.cpio.gz": guest.initramfs, Image: guest.kernel, "file=disk.img": `file=${disk}`, "tcp::8080-": `tcp::${port}-`,
    });
    const s = new Session(["qemu", ...line]);
    try {
      await s.expect("wasmvisor guest ready", 180_000);
      s.send("\r");
      let at = await s.expect(/# $/m, 30_000);
      s.send("cat /sys/bus/virtio/devices/*/device; cat /sys/class/misc/hw_random/rng_current; mkdir -p /www && echo from-the-guest > /www/index.html && httpd -p 80 -h /www; dd if=/dev/zero of=/dev/vda bs=4096 count=16; sync; echo __do''ne\r");
      at = await s.expect("__done", 60_000, at);
      const text = s.out.slice(0, at);
      expect(text).toMatch(/0x0002\s+0x0001\s+0x0004/); // virtio-blk, -net, -rng: QEMU's device ids
      expect(text).toMatch(/virtio_rng\.0/);
      expect(text).toMatch(/16\+0 records out/);
      // hostfwd: the host's port reaches the guest's.
      const res = await fetch(`http://127.0.0.1:${port}/index.html`);
      expect(await res.text()).toContain("from-the-guest");
      s.send("poweroff\r");
      expect(await s.exited).toBe(0);
    } finally {
      s.kill();
    }
    expect(Buffer.compare(readFileSync(disk), before)).toBe(0); // -snapshot: the writes went to the overlay
  }, 300_000);
});

