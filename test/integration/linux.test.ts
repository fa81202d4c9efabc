// The default Linux guest (Debian's linux-source-6.1 + BusyBox, built by guests/linux) through
// the real CLI: shell, disk persistence, networking, SMP, both SBI paths, the full machine's
// legacy devices (ATA disks, the OpenCores Ethernet MAC), and a qcow2 overlay as the disk.
import { describe, test, expect, beforeAll, afterAll } from "vitest";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createHash, randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import { execFileSync, spawnSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import { buildLinuxGuest } from "../../guests/linux/build.mjs";
import { Session } from "./cli";
import { createNodeDiskImage } from "../../host/platform/node/disk";

let guest: { kernel: string; initramfs: string; disk: string };
let dir: string;

beforeAll(async () => {
  // The first run builds the kernel and BusyBox from Debian's sources (many minutes); later
  // runs find them in the cache.
  guest = await buildLinuxGuest({ log: (line: string) => console.error(line) });
  dir = mkdtempSync(join(tmpdir(), "wasmvisor-linux-"));
}, 3_600_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function freshDisk(name: string): string {
  const f = join(dir, name);
  copyFileSync(guest.disk, f);
  return f;
}

const PROMPT = /# $/m;

/** Boot and wait for the shell; returns the session and the output index after the prompt. */
async function bootLinux(extra: string[], mode: "para" | "full" = "para"): Promise<{ s: Session; at: number }> {
  const s = new Session(["boot", "--mode", mode, "--kernel", guest.kernel, "--initrd", guest.initramfs, ...extra]);
  await s.expect("wasmvisor guest ready", 180_000);
  s.send("\r");
  const at = await s.expect(PROMPT, 30_000);
  return { s, at };
}

/**
 * Run a shell command; returns what the terminal showed from `from` up to the end marker (the
 * echoed command line, possibly wrapped, and its output) and the index after the marker. The
 * marker is quoted in two pieces, so only the command's output contains it whole.
 */
async function sh(s: Session, cmd: string, from: number, timeoutMs = 60_000): Promise<{ text: string; at: number }> {
  const id = Math.random().toString(36).slice(2, 8);
  s.send(`${cmd}; echo "__done_""${id}"\r`);
  const at = await s.expect(`__done_${id}`, timeoutMs, from);
  return { text: s.out.slice(from, at), at };
}

async function poweroff(s: Session, at: number): Promise<number> {
  s.send("poweroff\r");
  void at;
  return s.exited;
}

describe("Linux on the built-in SBI (para mode)", () => {
  test("shell: uname, cpuinfo, /dev/vda, poweroff ends with 0", async () => {
    const disk = freshDisk("para.img");
    const { s, at } = await bootLinux(["--append", "console=ttyS0", "--drive", `file=${disk}`, "--net", "user"]);
    try {
      let r = await sh(s, "uname -a", at);
      expect(r.text).toMatch(/Linux wasmvisor 6\.1\.\d+.* riscv64/);
      r = await sh(s, "cat /proc/cpuinfo", r.at);
      expect(r.text).toMatch(/processor\s*: 0/);
      expect(r.text).toMatch(/isa\s*: rv64imafdc/);
      expect(r.text).toMatch(/mmu\s*: sv48/);
      r = await sh(s, "ls -l /dev/vda", r.at);
      expect(r.text).toMatch(/^b.* \/dev\/vda\s*$/m);
      r = await sh(s, "cat /sys/class/misc/hw_random/rng_current", r.at);
      expect(r.text).toMatch(/virtio_rng/);
      expect(await poweroff(s, r.at)).toBe(0);
    } finally {
      s.kill();
    }
  }, 300_000);

  test("disk: a file written, synced and powered off is there on the next boot and in the image", async () => {
    const disk = freshDisk("persist.img");
    const text = `written-by-the-guest-${Date.now()}`;
    {
      const { s, at } = await bootLinux(["--append", "console=ttyS0", "--drive", `file=${disk}`]);
      try {
        let r = await sh(s, `echo ${text} > /mnt/hello.txt && sync`, at);
        r = await sh(s, "cat /mnt/hello.txt", r.at);
        expect(r.text).toMatch(new RegExp(`^${text}\\s*$`, "m"));
        expect(await poweroff(s, r.at)).toBe(0);
      } finally {
        s.kill();
      }
    }
    // The host reads the same bytes from the image (debugfs reads ext4 without mounting).
    const host = execFileSync("debugfs", ["-R", "cat /hello.txt", disk], { stdio: ["ignore", "pipe", "ignore"] }).toString();
    expect(host.trim()).toBe(text);
    {
      const { s, at } = await bootLinux(["--append", "console=ttyS0", "--drive", `file=${disk}`]);
      try {
        const r = await sh(s, "cat /mnt/hello.txt", at);
        expect(r.text).toContain(text);
        expect(await poweroff(s, r.at)).toBe(0);
      } finally {
        s.kill();
      }
    }
  }, 600_000);

  test("network: DHCP address, wget from the host through 10.0.2.2, httpd reached through hostfwd", async () => {
    const page = `hello from the host ${Date.now()}`;
    const server: Server = createServer((_req, res) => res.end(page));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    const fwdServer = createServer();
    await new Promise<void>((resolve) => fwdServer.listen(0, "127.0.0.1", resolve));
    const fwdPort = (fwdServer.address() as AddressInfo).port;
    await new Promise<void>((resolve) => fwdServer.close(() => resolve())); // a free port for hostfwd
    const { s, at } = await bootLinux(["--append", "console=ttyS0", "--net", `user,hostfwd=tcp::${fwdPort}-:80`]);
    try {
      let r = await sh(s, "ifconfig eth0", at);
      expect(r.text).toMatch(/inet addr:10\.0\.2\.15/);
      r = await sh(s, `wget -q -O - http://10.0.2.2:${port}/`, r.at);
      expect(r.text).toContain(page);
      r = await sh(s, "mkdir -p /www && echo served-by-the-guest > /www/index.html && httpd -p 80 -h /www", r.at);
      const res = await fetch(`http://127.0.0.1:${fwdPort}/index.html`);
      expect(await res.text()).toBe("served-by-the-guest\n");
      expect(await poweroff(s, r.at)).toBe(0);
    } finally {
      s.kill();
      server.close();
    }
  }, 300_000);

  test("console on hvc0 (virtio-console): input and output", async () => {
    const { s, at } = await bootLinux(["--append", "console=hvc0"]);
    try {
      const r = await sh(s, "tty", at);
      expect(r.text).toContain("/dev/hvc0");
      expect(await poweroff(s, r.at)).toBe(0);
    } finally {
      s.kill();
    }
  }, 300_000);

  test("--smp 2: two harts in /proc/cpuinfo", async () => {
    const { s, at } = await bootLinux(["--append", "console=ttyS0", "--smp", "2"]);
    try {
      const r = await sh(s, "grep -c ^processor /proc/cpuinfo", at);
      expect(r.text.trim().split(/\s+/)).toContain("2");
      expect(await poweroff(s, r.at)).toBe(0);
    } finally {
      s.kill();
    }
  }, 300_000);
});

describe("the same kernel through Debian's OpenSBI (full mode)", () => {
  test("boots to the shell and powers off", async () => {
    const { s, at } = await bootLinux(["--append", "console=ttyS0"], "full");
    try {
      expect(s.out).toContain("OpenSBI v1.1");
      const r = await sh(s, "uname -r", at);
      expect(r.text).toMatch(/6\.1\.\d+/);
      expect(await poweroff(s, r.at)).toBe(0);
    } finally {
      s.kill();
    }
  }, 300_000);
});

describe("the full machine's legacy devices: ATA disks and the OpenCores Ethernet MAC", () => {
  const md5 = (b: Uint8Array) => createHash("md5").update(b).digest("hex");

  test("by default in full mode: ext4 on /dev/sda, raw PIO reads and writes on /dev/sdb, DHCP, ping and wget over ethoc", async () => {
    const disk = freshDisk("full-ata.img");
    // A raw second disk with known contents, to check the bytes PIO moves both ways.
    const raw = join(dir, "raw.img");
    const rawBytes = randomBytes(4 << 20);
    writeFileSync(raw, rawBytes);
    const body = randomBytes(300_000);
    const server: Server = createServer((_req, res) => res.end(body));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    const text = `written-over-ata-${Date.now()}`;
    let written = "";
    const { s, at } = await bootLinux(["--append", "console=ttyS0", "--drive", `file=${disk}`, "--drive", `file=${raw}`, "--net", "user"], "full");
    try {
      let r = await sh(s, "dmesg | grep -E 'pata_of_platform|ata[12].00: ATA|ethoc'", at);
      expect(r.text).toMatch(/ata1\.00: ATA-6: WASMVISOR HARDDISK/);
      expect(r.text).toMatch(/ata2\.00: ATA-6: WASMVISOR HARDDISK/);
      expect(r.text).toMatch(/ethoc 10020000\.ethernet eth0: Link is Up - 100Mbps\/Full/);
      r = await sh(s, "grep /mnt /proc/mounts; ls /dev/vda 2>&1; readlink /sys/class/net/eth0/device/driver", r.at);
      expect(r.text).toMatch(/^\/dev\/sda \/mnt ext4 rw/m);
      expect(r.text).toMatch(/\/dev\/vda: No such file or directory/);
      expect(r.text).toMatch(/drivers\/ethoc\s*$/m);
      // Reads through the page cache and with O_DIRECT see the host's bytes.
      r = await sh(s, "dd if=/dev/sdb bs=64k iflag=direct 2>/dev/null | md5sum; dd if=/dev/sdb bs=1M count=1 skip=3 2>/dev/null | md5sum", r.at);
      expect(r.text).toContain(md5(rawBytes));
      expect(r.text).toContain(md5(rawBytes.subarray(3 << 20)));
      // A write of 200 KiB at a 128 KiB offset, straight to the disk.
      r = await sh(s, "dd if=/dev/urandom of=/tmp/r bs=4k count=50 2>/dev/null; dd if=/tmp/r of=/dev/sdb bs=4k seek=32 oflag=direct conv=fsync 2>&1 | grep copied; md5sum /tmp/r", r.at);
      expect(r.text).toMatch(/204800 bytes .* copied/);
      written = /^([0-9a-f]{32})\s+\/tmp\/r/m.exec(r.text)![1]!;
      r = await sh(s, "dd if=/dev/sda of=/dev/null bs=64k count=100 iflag=direct 2>&1 | grep copied", r.at);
      expect(r.text).toMatch(/6553600 bytes \(6\.3MB\) copied/);
      r = await sh(s, `echo ${text} > /mnt/ata.txt && sync && cat /mnt/ata.txt`, r.at);
      expect(r.text).toMatch(new RegExp(`^${text}\\s*$`, "m"));
      // The network through ethoc.
      r = await sh(s, "ifconfig eth0; ping -c 2 10.0.2.2", r.at);
      expect(r.text).toMatch(/inet addr:10\.0\.2\.15/);
      expect(r.text).toMatch(/HWaddr 52:54:00:12:34:56/);
      expect(r.text).toMatch(/2 packets transmitted, 2 packets received/);
      r = await sh(s, `wget -q -O - http://10.0.2.2:${port}/ | md5sum`, r.at);
      expect(r.text).toContain(md5(body));
      expect(await poweroff(s, r.at)).toBe(0);
    } finally {
      s.kill();
      server.close();
    }
    // On the host: the raw write landed exactly there, the rest is untouched; the file is in the image.
    const after = readFileSync(raw);
    expect(md5(after.subarray(128 << 10, (128 << 10) + 204800))).toBe(written);
    expect(after.subarray(0, 128 << 10).equals(rawBytes.subarray(0, 128 << 10))).toBe(true);
    expect(after.subarray((128 << 10) + 204800).equals(rawBytes.subarray((128 << 10) + 204800))).toBe(true);
    const host = execFileSync("debugfs", ["-R", "cat /ata.txt", disk], { stdio: ["ignore", "pipe", "ignore"] }).toString();
    expect(host.trim()).toBe(text);
  }, 300_000);

  test("either machine takes either family: para with if=ide,model=ethoc; full with if=virtio,model=virtio", async () => {
    const disk = freshDisk("cross.img");
    const check = "grep /mnt /proc/mounts; readlink /sys/class/net/eth0/device/driver; ifconfig eth0 | grep 'inet addr'";
    {
      const { s, at } = await bootLinux(["--append", "console=ttyS0", "--drive", `file=${disk},if=ide`, "--net", "user,model=ethoc"], "para");
      try {
        const r = await sh(s, check, at);
        expect(r.text).toMatch(/^\/dev\/sda \/mnt ext4/m);
        expect(r.text).toMatch(/drivers\/ethoc\s*$/m);
        expect(r.text).toMatch(/inet addr:10\.0\.2\.15/);
        expect(await poweroff(s, r.at)).toBe(0);
      } finally {
        s.kill();
      }
    }
    {
      const { s, at } = await bootLinux(["--append", "console=ttyS0", "--drive", `file=${disk},if=virtio`, "--net", "user,model=virtio"], "full");
      try {
        const r = await sh(s, check, at);
        expect(r.text).toMatch(/^\/dev\/vda \/mnt ext4/m);
        expect(r.text).toMatch(/drivers\/virtio_net\s*$/m);
        expect(r.text).toMatch(/inet addr:10\.0\.2\.15/);
        expect(await poweroff(s, r.at)).toBe(0);
      } finally {
        s.kill();
      }
    }
  }, 300_000);
});

describe("a qcow2 disk", () => {
  test("the data disk as a qcow2 overlay over the cached raw image: the guest writes, the base is unchanged, qemu-img check is clean", async () => {
    const md5 = (b: Uint8Array) => createHash("md5").update(b).digest("hex");
    const before = md5(readFileSync(guest.disk));
    const readmeLine = execFileSync("debugfs", ["-R", "cat /README.txt", guest.disk], { stdio: ["ignore", "pipe", "ignore"] }).toString().split("\n")[0]!;
    expect(readmeLine.length).toBeGreaterThan(0);
    const overlay = join(dir, "overlay.qcow2");
    createNodeDiskImage(overlay, { backing: { path: guest.disk, format: "raw" }, what: "test" });
    const text = `written-to-the-overlay-${Date.now()}`;
    let written = "";
    // No format=: the CLI probes it, as QEMU does.
    const { s, at } = await bootLinux(["--append", "console=ttyS0", "--drive", `file=${overlay}`]);
    try {
      // The base's files read through the overlay.
      let r = await sh(s, "head -n 1 /mnt/README.txt", at);
      expect(r.text).toContain(readmeLine);
      r = await sh(s, `echo ${text} > /mnt/hello.txt && dd if=/dev/urandom of=/mnt/big bs=64k count=48 2>/dev/null && sync && md5sum /mnt/big`, r.at);
      written = /^([0-9a-f]{32})\s+\/mnt\/big/m.exec(r.text)![1]!;
      expect(await poweroff(s, r.at)).toBe(0);
    } finally {
      s.kill();
    }
    expect(md5(readFileSync(guest.disk))).toBe(before);
    const check = spawnSync("qemu-img", ["check", "--output=json", overlay], { encoding: "utf8" });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    expect(JSON.parse(check.stdout)).toMatchObject({ "check-errors": 0 });
    expect(JSON.parse(check.stdout).leaks ?? 0).toBe(0);
    // QEMU reads the guest's files out of the chain.
    const flat = join(dir, "flat.img");
    execFileSync("qemu-img", ["convert", "-f", "qcow2", "-O", "raw", overlay, flat]);
    const debugfs = (cmd: string) => execFileSync("debugfs", ["-R", cmd, flat], { stdio: ["ignore", "pipe", "ignore"], maxBuffer: 64 << 20 });
    expect(debugfs("cat /hello.txt").toString().trim()).toBe(text);
    expect(md5(debugfs("cat /big"))).toBe(written);
  }, 300_000);
});
