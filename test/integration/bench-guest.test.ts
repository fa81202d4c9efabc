// The guest side of the full-vs-para and paging benchmarks, in the Linux guest driven as the
// suites drive it (bench/guest-vm.ts): wv-selftest passes on both machines, wv-bench prints
// result lines that parse and make sense, and a gated run brackets its workload.
import { describe, test, expect, beforeAll, afterAll } from "vitest";
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildLinuxGuest } from "../../guests/linux/build.mjs";
import { GuestVm, probeDevices, type Mode } from "../../bench/guest-vm";
import { startNetServer, type NetServer } from "../../bench/guest-net";
import { guestExits, parseWvb, windowDelta } from "../../bench/fullvspara";

let guest: { kernel: string; initramfs: string; disk: string };
let dir: string;

beforeAll(async () => {
  guest = await buildLinuxGuest({ log: (line: string) => console.error(line) });
  dir = mkdtempSync(join(tmpdir(), "wasmvisor-bench-guest-"));
}, 3_600_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function boot(mode: Mode, paging: "nested" | "shadow" = "nested"): Promise<GuestVm> {
  const disk = join(dir, `${mode}-${paging}.img`);
  copyFileSync(guest.disk, disk);
  return GuestVm.boot({ mode, paging, memoryMiB: 256, kernel: guest.kernel, initrd: guest.initramfs, disk }, 180_000);
}

const CHECKS = ["disk", "network", "timers", "rtc", "process", "memory"];

// The bar: the guest suite passes in all four combinations of machine and paging.
describe.each([
  ["para", "nested"], ["para", "shadow"], ["full", "nested"], ["full", "shadow"],
] as const)("wv-selftest on the %s machine with %s paging", (mode, paging) => {
  test("passes every check, on the disk and NIC the guest found", async () => {
    const vm = await boot(mode, paging);
    try {
      const devices = await probeDevices(vm);
      expect(devices.disk?.name).toMatch(/^(vda|sda)$/);
      expect(devices.nic?.name).toBe("eth0");
      const out = await vm.sh("wv-selftest", 120_000);
      for (const check of CHECKS) expect(out).toMatch(new RegExp(`^selftest: ok   ${check}\\b`, "m"));
      expect(out).toContain(`/dev/${devices.disk!.name} mounted on /mnt`);
      expect(out).toMatch(/^SELFTEST PASS\r?$/m);
      // The machine really ran in that mode: legacy devices in full, virtio in para; shadow
      // paging kept shadow tables and trapped page-table writes, nested walked the P2M.
      expect(devices.disk!.name).toBe(mode === "full" ? "sda" : "vda");
      const p = (await vm.stats()).paging;
      expect(p.mode).toBe(paging);
      if (paging === "shadow") {
        expect(p.shadowFaults).toBeGreaterThan(1000);
        expect(p.ptWriteTraps).toBeGreaterThan(100);
      } else {
        expect(p.shadowFaults).toBe(0);
        expect(p.walkRefs / p.tlbMisses).toBeGreaterThan(12); // two-dimensional: 15 (Sv39) to 19 (Sv48) on 4 KiB pages
      }
    } finally {
      await vm.close();
    }
  }, 300_000);
});

describe("wv-bench in the para guest", () => {
  let vm: GuestVm;
  let server: NetServer;

  beforeAll(async () => {
    vm = await boot("para");
    server = await startNetServer();
  }, 300_000);

  afterAll(async () => {
    await server?.close();
    await vm?.close();
  });

  test("each microbenchmark prints one parseable line with the operations asked for", async () => {
    const runs: [string, string, number][] = [
      ["syscall", "5000", 5000], ["pagefault", "512", 512], ["ptmod", "200", 200], ["forkwait", "10", 10],
      ["mmap", "50", 50], ["randaccess", "4 20000", 20000], ["timer", "5 2000", 5], ["console", "8192", 8192],
    ];
    for (const [name, args, ops] of runs) {
      const r = parseWvb(await vm.sh(`wv-bench ${name} ${args}`), name);
      expect(r.ops, name).toBe(ops);
      expect(r.nsPerOp, name).toBeGreaterThan(0);
    }
    // nanosleep never returns early; a syscall is faster than a fork.
    const timer = parseWvb(await vm.sh("wv-bench timer 5 2000"), "timer");
    expect(timer.nsPerOp).toBeGreaterThanOrEqual(2e6);
    expect(timer.extra.requested_ns).toBe("2000000");
    const syscall = parseWvb(await vm.sh("wv-bench syscall 5000"), "syscall");
    const fork = parseWvb(await vm.sh("wv-bench forkwait 10"), "forkwait");
    expect(fork.nsPerOp).toBeGreaterThan(10 * syscall.nsPerOp);
    // The console line's rate is its bytes over its time.
    const con = parseWvb(await vm.sh("wv-bench console 8192"), "console");
    expect(Number(con.extra.bytes_per_s)).toBeCloseTo(1e9 / con.nsPerOp, -2);
  }, 300_000);

  test("network benchmarks move their bytes to and from the host server", async () => {
    for (const dir of ["tcp-rx", "tcp-tx"]) {
      const r = parseWvb(await vm.sh(`wv-bench ${dir} 10.0.2.2 ${server.port} 262144`), dir);
      expect(r.ops, dir).toBe(262144);
      expect(Number(r.extra.bytes_per_s), dir).toBeGreaterThan(0);
    }
  }, 120_000);

  test("a gated run brackets its workload: the window grows with the work, and its exits are counted", async () => {
    const empty = await vm.gated("wv-bench -g syscall 0");
    const busy = await vm.gated("wv-bench -g syscall 20000");
    const e = windowDelta(empty, 1), b = windowDelta(busy, 20000);
    expect(parseWvb(busy.output, "syscall").ops).toBe(20000);
    // Each getppid is tens of instructions; the empty window holds none of them.
    expect(b.instructions - e.instructions).toBeGreaterThan(20000 * 10);
    expect(e.instructions).toBeLessThan(b.instructions / 10);
    // The gates' own console output makes MMIO exits, timed by the host.
    expect(guestExits(e)).toBeGreaterThan(0);
    expect(e.exits.mmio).toBeGreaterThan(0);
    expect(e.exit_seconds.mmio).toBeGreaterThan(0);
    expect(busy.hostSeconds).toBeGreaterThan(0);
    // A gated shell command: the disk's MMIO exits land in the window.
    const dd = await vm.gated("wv-bench gate && dd if=/dev/vda of=/dev/null bs=65536 count=16 iflag=direct && wv-bench gate");
    expect(dd.output).toMatch(/^1048576 bytes \(.*\) copied/m);
    const blk = Object.entries(windowDelta(dd, 16).mmio).find(([device]) => device.endsWith("-blk"));
    expect(blk?.[1]).toBeGreaterThanOrEqual(16);
  }, 120_000);

  // Last: it takes the network down and up again.
  test("a failing self-test says which check failed", async () => {
    // Without eth0's default route the network check fails, and only it.
    const out = await vm.sh("ifconfig eth0 down; wv-selftest; echo status=$?; ifconfig eth0 up && udhcpc -i eth0 -s /etc/udhcpc.script -q -n >/dev/null 2>&1", 120_000);
    expect(out).toMatch(/^selftest: FAIL network\b/m);
    expect(out).toMatch(/^SELFTEST FAIL network\r?$/m);
    expect(out).toMatch(/^status=1\r?$/m);
  }, 180_000);
});
