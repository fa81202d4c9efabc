// USB in the Linux guest, through a real `wasmvisor host` and `wasmvisor ctl`: the xHCI
// controller with a keyboard, a mass-storage disk and a CDC-ACM serial port, driven by Linux's
// own xhci-hcd, usbhid, usb-storage and cdc-acm. The guest lists them in sysfs, a key typed on
// the keyboard reaches /dev/input/event0, an ext4 file system on the USB disk is written and
// read back (and the image holds the bytes), the serial port carries data both ways, and the
// disk and the keyboard are unplugged and plugged in again while the guest runs.
import { describe, test, expect, beforeAll, afterAll } from "vitest";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { execFileSync, type ChildProcess } from "node:child_process";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { Duplex } from "node:stream";
import { buildLinuxGuest } from "../../guests/linux/build.mjs";
import { ApiClient } from "../../host/api/api";
import type { VmInfo } from "../../host/hv/types";
import { Session, pollUntil, runCli, startHost, stopHost } from "./cli";
import { QmpClient } from "./qmp-client";

let dir: string;
let socket: string;
let host: ChildProcess;
let hostErr = "";
let api: ApiClient;
let linux: { kernel: string; initramfs: string; disk: string };

beforeAll(async () => {
  linux = await buildLinuxGuest({ log: (line: string) => console.error(line) });
  dir = mkdtempSync(join(tmpdir(), "wasmvisor-usb-"));
  socket = join(dir, "api.sock");
  host = await startHost(socket, ["--images", dir, "--images", dirname(linux.kernel), "--cpus", "2", "--memory", "512M"], dir, (text) => { hostErr += text; });
  api = new ApiClient(socket);
}, 3_600_000);

afterAll(async () => {
  await stopHost(host);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const until = <T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs?: number) =>
  pollUntil(what, probe, () => `host log:\n${hostErr}`, timeoutMs);

/** A console on the API: run shell commands and get their output. */
class Shell {
  out = "";
  constructor(readonly con: Duplex) {
    con.on("data", (d: Buffer) => { this.out += d.toString("latin1"); });
  }
  /** Run `cmd`; the terminal's text from the command on, up to the end marker. */
  async sh(cmd: string, timeoutMs = 60_000): Promise<string> {
    const id = Math.random().toString(36).slice(2, 8);
    const from = this.out.length;
    this.con.write(`${cmd}; echo "__done_""${id}"\r`);
    const end = await until(`'${cmd}'`, () => {
      const i = this.out.indexOf(`__done_${id}`, from);
      return i >= 0 ? i : undefined;
    }, timeoutMs);
    return this.out.slice(from, end);
  }
}

const ctl = (...args: string[]) => runCli(["ctl", "--api", socket, ...args]);

// The guest waits for what it expects rather than for a fixed time (a guest run under
// WASMVISOR_JIT=all, every page translated as it first runs, is many times slower):
// `capture F D` copies device D into file F in the background, once cat has D open; `seen F HEX...`
// waits until F holds each byte string, stops the capture and prints F in hex; `gone P` waits
// until path P is no more.
const HELPERS = [
  'capture() { cat "$2" > "$1" & echo $! > "$1.pid"; for i in $(seq 1 120); do ls -l /proc/$(cat "$1.pid")/fd 2>/dev/null | grep -q "$2" && return; sleep 1; done; }',
  'seen() { f=$1; shift; for i in $(seq 1 120); do h=$(od -An -tx1 -v "$f" | tr -d \' \\n\'); m=1; for p in "$@"; do case "$h" in *"$p"*) ;; *) m=0 ;; esac; done; [ $m = 1 ] && break; sleep 1; done; kill $(cat "$f.pid") 2>/dev/null; od -An -tx1 -v "$f"; }',
  'gone() { for i in $(seq 1 120); do [ -e "$1" ] || return 0; sleep 1; done; }',
].join("; ");
const WAIT_MS = 150_000;
const hex = (text: string) => Buffer.from(text, "latin1").toString("hex");
// The USB devices sysfs lists, as `LIST_DEVICES` printed them: a line of their own, the last such
// (the kernel's messages about a device going come on the same console, and the terminal may
// wrap the command's echo anywhere).
const LIST_DEVICES = `echo "devices: $(ls /sys/bus/usb/devices | tr '\\n' ' ')"`;
const devices = (text: string) => ([...text.matchAll(/^devices: (.*)$/gm)].pop()?.[1] ?? "").trim().split(/\s+/);

describe("USB devices on the xHCI controller, in Linux", () => {
  test("sysfs lists them; keys reach evdev; the disk is written and read back; the serial port carries data both ways; unplug and plug again", async () => {
    const image = join(dir, "usb.img");
    execFileSync("truncate", ["-s", "16M", image]);
    execFileSync("mkfs.ext4", ["-q", "-F", image]);
    const serialPath = join(dir, "acm.sock");
    const vm = await api.call<VmInfo>("POST", "/vms", {
      name: "usb", mode: "para", memory: "128M", kernel: linux.kernel, initrd: linux.initramfs, append: "console=ttyS0",
      usb: ["kbd", `storage,file=${image},format=raw`, `serial,socket=${serialPath}`],
    });
    expect(vm.state).toBe("created");
    await api.call("POST", "/vms/usb/start");
    const s = new Shell(await api.console("usb"));
    await until("the guest's prompt", () => (s.out.includes("wasmvisor guest ready") ? true : undefined), 180_000);
    s.con.write("\r");
    await s.sh(HELPERS);

    // The controller and each device, as lsusb would list them.
    const listing = await s.sh("for i in $(seq 1 120); do [ -b /dev/sda ] && [ -e /dev/ttyACM0 ] && break; sleep 1; done; ls /sys/bus/usb/devices; cat /sys/bus/usb/devices/*/product; lsusb");
    expect(listing).toMatch(/usb1/);
    for (const port of ["1-1", "1-2", "1-3"]) expect(listing).toContain(port);
    expect(listing).toContain("xHCI Host Controller");
    expect(listing).toContain("wasmvisor USB keyboard");
    expect(listing).toContain("wasmvisor USB disk");
    expect(listing).toContain("wasmvisor USB serial");
    expect(listing).toMatch(/ID 0627:0001/);
    expect((await ctl("usb", "list", "usb")).out).toMatch(/port 1: kbd0 \(usb-kbd\)[\s\S]*port 2: storage0 \(usb-storage\)[\s\S]*port 3: serial0 \(usb-serial\)/);

    // A key typed on the USB keyboard reaches the input layer: EV_KEY, KEY_A (30), pressed.
    await s.sh("cat /sys/class/input/event0/device/name; capture /tmp/ev /dev/input/event0", WAIT_MS);
    const typed = await ctl("usb", "type", "usb", "kbd0", "a");
    expect(typed.code).toBe(0);
    const ev = await s.sh("seen /tmp/ev 01001e0001000000 01001e0000000000", WAIT_MS);
    expect(ev.replace(/\s+/g, "")).toContain("01001e0001000000");
    expect(ev.replace(/\s+/g, "")).toContain("01001e0000000000"); // and released

    // The USB disk: mounted (init may have mounted it already), written, read back.
    let r = await s.sh("grep -q '^/dev/sda ' /proc/mounts || mount -t ext4 /dev/sda /mnt; echo usb-bytes-$((6*7)) > /mnt/usb.txt; sync; cat /mnt/usb.txt; umount /mnt && echo 'un''mounted'");
    expect(r).toMatch(/^usb-bytes-42\s*$/m);
    expect(r).toContain("unmounted");

    // The serial port, both ways (raw, so the tty echoes nothing back).
    const peer: Socket = connect(serialPath);
    let fromGuest = "";
    peer.on("data", (d: Buffer) => { fromGuest += d.toString("latin1"); });
    await new Promise((res, rej) => { peer.once("connect", res); peer.once("error", rej); });
    await s.sh("stty -F /dev/ttyACM0 raw -echo; capture /tmp/acm /dev/ttyACM0", WAIT_MS);
    peer.write("from-host-123\n");
    r = await s.sh(`seen /tmp/acm ${hex("from-host-123\n")} > /dev/null; cat /tmp/acm; echo from-guest-$((400+56)) > /dev/ttyACM0`, WAIT_MS);
    expect(r).toMatch(/^from-host-123\s*$/m);
    await until("the guest's bytes on the socket", () => (fromGuest.includes("from-guest-456") ? true : undefined));
    peer.destroy();

    // Unplug the disk: the guest sees it go, and the image has what was written.
    let c = await ctl("usb", "detach", "usb", "storage0");
    expect(c.out).toContain("storage0 unplugged");
    r = await s.sh(`gone /sys/bus/usb/devices/1-"2"; gone /dev/sda; ${LIST_DEVICES}; [ -b /dev/sda ] || echo "no-""sda"`, WAIT_MS);
    expect(devices(r)).toContain("usb1");
    expect(devices(r)).not.toContain("1-2");
    expect(r).toContain("no-sda");
    expect(execFileSync("debugfs", ["-R", "cat /usb.txt", image], { stdio: ["ignore", "pipe", "ignore"] }).toString()).toBe("usb-bytes-42\n");
    // ... and plug it in again: it comes back, with the file.
    c = await ctl("usb", "attach", "usb", `storage,file=${image},id=disk1`);
    expect(c.out).toContain("USB device on port 2");
    r = await s.sh("for i in $(seq 1 120); do [ -b /dev/sda ] && break; sleep 1; done; ls /sys/bus/usb/devices; mount -t ext4 /dev/sda /mnt && cat /mnt/usb.txt; umount /mnt");
    expect(r).toContain("1-2");
    expect(r).toMatch(/^usb-bytes-42\s*$/m);

    // The keyboard too: unplugged, gone; plugged in again, its keys arrive once more.
    await ctl("usb", "detach", "usb", "kbd0");
    r = await s.sh(`gone /sys/bus/usb/devices/1-"1"; ${LIST_DEVICES}`, WAIT_MS);
    expect(devices(r)).toContain("usb1");
    expect(devices(r)).not.toContain("1-1");
    await ctl("usb", "attach", "usb", "kbd,id=kbd1");
    r = await s.sh("for i in $(seq 1 120); do [ -e /dev/input/event0 ] && break; sleep 1; done; capture /tmp/ev2 /dev/input/event0", WAIT_MS);
    await ctl("usb", "type", "usb", "kbd1", "b");
    r = await s.sh("seen /tmp/ev2 0100300001000000", WAIT_MS);
    expect(r.replace(/\s+/g, "")).toContain("0100300001000000"); // KEY_B (48)

    // The console's input goes to the keyboard when it is selected, and back to the shell after.
    await s.sh("capture /tmp/ev3 /dev/input/event0", WAIT_MS);
    expect((await ctl("usb", "console", "usb", "kbd1")).code).toBe(0);
    s.con.write("c");
    await new Promise((res) => setTimeout(res, 2000));
    expect((await ctl("usb", "console", "usb", "off")).code).toBe(0);
    r = await s.sh("seen /tmp/ev3 01002e0001000000", WAIT_MS);
    expect(r.replace(/\s+/g, "")).toContain("01002e0001000000"); // KEY_C (46)

    // Errors a user can make are refused with the reason.
    c = await ctl("usb", "detach", "usb", "nothing");
    expect(c.code).not.toBe(0);
    expect(c.err).toMatch(/no device named nothing/);
    c = await ctl("usb", "attach", "usb", "kbd,id=kbd1");
    expect(c.err).toMatch(/two USB devices with that id|attached already/);
    // A daemon's client names disk images and sockets in its image directories only.
    c = await ctl("usb", "attach", "usb", `serial,socket=${join(tmpdir(), "elsewhere.sock")}`);
    expect(c.err).toMatch(/not in an image directory of this host/);
    c = await ctl("usb", "attach", "usb", "storage,file=/etc/passwd");
    expect(c.err).toMatch(/not in an image directory/);

    // A snapshot with the USB disk plugged in: its image is frozen under an overlay the running
    // VM writes to from then on; the controller's, the keyboard's and the disk's state go into
    // the snapshot, and the restored guest's xhci-hcd goes on with them.
    const snap = join(dir, "usb.snap");
    c = await ctl("snapshot", "usb", snap);
    expect(c.code).toBe(0);
    r = await s.sh("mount -t ext4 /dev/sda /mnt && echo after-snap > /mnt/usb.txt; sync; cat /mnt/usb.txt; umount /mnt");
    expect(r).toMatch(/^after-snap\s*$/m);
    expect(execFileSync("debugfs", ["-R", "cat /usb.txt", image], { stdio: ["ignore", "pipe", "ignore"] }).toString()).toBe("usb-bytes-42\n");
    s.con.destroy();
    await api.call("POST", "/vms/usb/stop");
    await api.call("DELETE", "/vms/usb");
    c = await ctl("restore", snap);
    expect(c.err + c.out).toMatch(/usb: restored .* running/);
    const s2 = new Shell(await api.console("usb"));
    s2.con.write("\r");
    r = await s2.sh("ls /sys/bus/usb/devices; mount -t ext4 /dev/sda /mnt && cat /mnt/usb.txt; umount /mnt; capture /tmp/ev4 /dev/input/event0", WAIT_MS);
    for (const port of ["1-1", "1-2", "1-3"]) expect(r).toContain(port);
    expect(r).toMatch(/^usb-bytes-42\s*$/m); // the disk as it was at the snapshot
    await ctl("usb", "type", "usb", "kbd1", "d");
    r = await s2.sh("seen /tmp/ev4 0100200001000000", WAIT_MS);
    expect(r.replace(/\s+/g, "")).toContain("0100200001000000"); // KEY_D (32)

    // Moved to the other pCPU (its backends closed here and opened there), the keyboard still types.
    const from = (await api.call<VmInfo>("GET", "/vms/usb")).pcpu;
    c = await ctl("move", "usb", String(1 - from));
    expect(c.out).toContain(`on pCPU ${1 - from}`);
    r = await s2.sh("capture /tmp/ev5 /dev/input/event0", WAIT_MS);
    await ctl("usb", "type", "usb", "kbd1", "e");
    r = await s2.sh("seen /tmp/ev5 0100120001000000; ls /sys/bus/usb/devices", WAIT_MS);
    expect(r.replace(/\s+/g, "")).toContain("0100120001000000"); // KEY_E (18)

    s2.con.destroy();
    await api.call("POST", "/vms/usb/stop");
    await api.call("DELETE", "/vms/usb");
  }, 600_000);

  test("QEMU's flags: -device qemu-xhci, usb-kbd, usb-storage,drive=, usb-serial,chardev= on wasmvisor boot", async () => {
    const image = join(dir, "qemu-usb.img");
    execFileSync("truncate", ["-s", "8M", image]);
    const acm = join(dir, "qemu-acm.sock");
    const qmpPath = join(dir, "qmp.sock");
    const s = new Session(["boot", "--mode", "para", "-kernel", linux.kernel, "-initrd", linux.initramfs, "-append", "console=ttyS0", "-qmp", `unix:${qmpPath},server=on,wait=off`,
      "-device", "qemu-xhci", "-device", "usb-kbd", "-drive", `file=${image},if=none,id=u0,format=raw,snapshot=on`, "-device", "usb-storage,drive=u0",
      "-chardev", `socket,id=c0,path=${acm},server=on,wait=off`, "-device", "usb-serial,chardev=c0"]);
    try {
      await s.expect("wasmvisor guest ready", 180_000);
      s.send("\r");
      const at = await s.expect(/# $/m, 30_000);
      s.send(`${HELPERS}; for i in $(seq 1 120); do [ -b /dev/sda ] && [ -e /dev/ttyACM0 ] && break; sleep 1; done; cat /sys/bus/usb/devices/*/product; cat /sys/block/sda/size; echo '__do''ne'\r`);
      const end = await s.expect("__done", WAIT_MS, at);
      const text = s.out.slice(at, end);
      for (const p of ["xHCI Host Controller", "wasmvisor USB keyboard", "wasmvisor USB disk", "wasmvisor USB serial"]) expect(text).toContain(p);
      expect(text).toMatch(/^16384\s*$/m); // 8 MiB in 512-byte sectors
      // snapshot=on: the guest's writes reach the disk it sees, not the image (checked at exit).
      s.send("echo usbsnap | dd of=/dev/sda bs=512 conv=sync,fsync 2>/dev/null; echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/sda bs=7 count=1 2>/dev/null; echo; echo '__wro''te'\r");
      const wrote = await s.expect("__wrote", 60_000, end);
      expect(s.out.slice(end, wrote)).toMatch(/^usbsnap\s*$/m);
      // Ctrl-A k: the terminal's keys go to the USB keyboard (KEY_A reaches evdev), Ctrl-A k again: back.
      s.send("capture /tmp/ev /dev/input/event0; echo '__wa''it'\r");
      let mark = await s.expect("__wait", WAIT_MS, end);
      s.send("\x01k");
      await until("the switch", () => (s.err.includes("keys go to the USB keyboard kbd0") ? true : undefined));
      s.send("a");
      await new Promise((res) => setTimeout(res, 1000));
      s.send("\x01k");
      await until("the switch back", () => (s.err.includes("keys go to the console") ? true : undefined));
      s.send("seen /tmp/ev 01001e0001000000; echo '__ke''ys'\r");
      mark = await s.expect("__keys", WAIT_MS, mark);
      expect(s.out.slice(0, mark).replace(/\s+/g, "")).toContain("01001e0001000000");
      // QMP's device_add / device_del, answered as QEMU answers them (checked against qemu-xhci on QEMU 7.2).
      const qmp = await QmpClient.connect(qmpPath);
      await qmp.execute("qmp_capabilities");
      expect(await qmp.execute("device_add", { driver: "usb-kbd", id: "k2" })).toEqual({ return: {} });
      expect((await qmp.execute("device_add", { driver: "usb-kbd", id: "k2" })).error).toEqual({ class: "GenericError", desc: "Duplicate device ID 'k2'" });
      expect((await qmp.execute("device_add", { driver: "usb-storage", id: "d2" })).error?.class).toBe("GenericError");
      s.send("for i in $(seq 1 120); do [ -e /sys/bus/usb/devices/1-4 ] && break; sleep 1; done; cat /sys/bus/usb/devices/1-4/product; echo '__plu''gged'\r");
      mark = await s.expect("__plugged", WAIT_MS, mark);
      expect(s.out.slice(mark - 200, mark)).toContain("wasmvisor USB keyboard");
      expect((await qmp.execute("human-monitor-command", { "command-line": "info usb" })).return).toMatch(/Port 4, .*ID: k2/);
      expect(await qmp.execute("device_del", { id: "k2" })).toEqual({ return: {} });
      expect((await qmp.waitForEvent("DEVICE_DELETED")).data).toEqual({ device: "k2", path: "/machine/peripheral/k2" });
      expect((await qmp.execute("device_del", { id: "k9" })).error).toEqual({ class: "DeviceNotFound", desc: "Device 'k9' not found" });
      // A reboot resets the controller under the devices; the next kernel finds them again.
      s.send("reboot\r");
      const again = await s.expect("wasmvisor guest ready", 180_000, end);
      s.send("\r");
      const at2 = await s.expect(/# $/m, 30_000, again);
      s.send("for i in $(seq 1 120); do [ -b /dev/sda ] && [ -e /dev/ttyACM0 ] && break; sleep 1; done; ls /sys/bus/usb/devices; echo '__do''ne'\r");
      const end2 = await s.expect("__done", WAIT_MS, at2);
      for (const port of ["1-1", "1-2", "1-3"]) expect(s.out.slice(at2, end2)).toContain(port);
      s.send("poweroff\r");
      expect(await s.exited).toBe(0);
      expect(readFileSync(image).every((b) => b === 0)).toBe(true); // the overlay took the writes
    } finally {
      s.kill();
    }
  }, 300_000);
});
