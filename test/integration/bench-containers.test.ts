// The containers suite's pieces, for real and quickly (the suite itself is `node dist/bench.js
// --only containers`): crun is there or gets installed (as root; otherwise the test fails and says
// what to run), the OCI bundle of the guest's userland built for this machine starts, wv-bench
// inside prints the result lines the guest's does and the suite's gated commands pass their gates,
// the disk and network set-up of the throughput runs works, and the isolation probes give the
// answers the report's table is made of, in a container and in the VM.
import { describe, test, expect, beforeAll, afterAll } from "vitest";
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { release, tmpdir } from "node:os";
import { join } from "node:path";
import { buildLinuxGuest } from "../../guests/linux/build.mjs";
import { Container, cgroupMemoryBytes, makeVethNetns, writeBundle } from "../../bench/container";
import { containerSh, isolationProbe, isolationRows, parseProbe, PEER_COMMAND, setUpContainers, type ContainerSetup } from "../../bench/containers";
import { fullVsParaWorkloads, parseWvb, parseDd, HOST } from "../../bench/fullvspara";
import { GuestVm } from "../../bench/guest-vm";
import { startNetServer } from "../../bench/guest-net";

let s: ContainerSetup;
let guest: { kernel: string; initramfs: string; disk: string };
let dir: string;

beforeAll(async () => {
  // Installs crun (apt-get) and builds BusyBox for this machine when they are missing: minutes, once.
  s = await setUpContainers((line) => console.error(line));
  guest = await buildLinuxGuest({ log: (line: string) => console.error(line) });
  dir = mkdtempSync(join(tmpdir(), "wasmvisor-bench-containers-"));
}, 3_600_000);

afterAll(() => {
  s?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("a container of the guest's userland built for this machine", () => {
  test("runs this machine's BusyBox and wv-bench, whose result lines parse as the guest's do", async () => {
    const out = await containerSh(s, "uname -m; busybox | head -1; wv-bench syscall 20000");
    expect(out).toMatch(/^x86_64$/m);
    expect(out).toMatch(/^BusyBox v1\.35\.0/m);
    const r = parseWvb(out, "syscall");
    expect(r.ops).toBe(20000);
    expect(r.nsPerOp).toBeGreaterThan(10); // a real system call: tens of ns at least
    expect(r.nsPerOp).toBeLessThan(100_000);
  }, 60_000);

  test("the suite's gated commands pass their gates; dd reaches the bind-mounted disk with O_DIRECT", async () => {
    const byKey = new Map(fullVsParaWorkloads(true).map((w) => [w.key, w]));
    const disk = join(dir, "disk.img");
    writeFileSync(disk, Buffer.alloc(8 << 20));
    const ctx = { disk: "wvdisk", host: "", port: 0 };
    const binds = { binds: { [disk]: "/dev/wvdisk" } };
    const fork = byKey.get("forkwait")!;
    const out = await containerSh(s, fork.command(ctx), binds);
    expect(out.match(/^WVB gate$/gm)).toHaveLength(2);
    expect(fork.parse(out).ops).toBeGreaterThan(0);
    const write = byKey.get("disk_write")!;
    const w = parseDd(await containerSh(s, write.command(ctx), binds));
    expect(w.bytes).toBeGreaterThanOrEqual(4 << 20);
  }, 60_000);

  test("a container in the veth namespace reaches the host's server there, and its cgroup is charged", async () => {
    const netns = makeVethNetns(`wvt${process.pid}`, "10.204.0.1", "10.204.0.2");
    const server = await startNetServer("10.204.0.1");
    try {
      const out = await containerSh(s, `wv-bench tcp-rx 10.204.0.1 ${server.port} 1048576`, { netns: netns.path });
      expect(parseWvb(out, "tcp-rx").ops).toBe(1048576);
      const { id, bundle } = s.next();
      const c = new Container(id, writeBundle(bundle, s.rootfs, { args: ["sh", "-c", "echo up; exec sleep 60"] }), true);
      try {
        await c.expect(/^up$/m);
        const bytes = cgroupMemoryBytes(c.pid());
        expect(bytes).toBeGreaterThan(64 * 1024);
        expect(bytes).toBeLessThan(64 << 20);
      } finally {
        c.remove();
      }
    } finally {
      await server.close();
      netns.remove();
    }
  }, 60_000);
});

describe("the isolation probes", () => {
  test("in a container and in a VM, each beside a running peer, give the table's answers", async () => {
    const marker = join(dir, "host-marker");
    writeFileSync(marker, "host-secret\n");
    const server = await startNetServer();
    try {
      const probe = isolationProbe(marker, server.port);
      const { id, bundle } = s.next();
      const peer = new Container(id, writeBundle(bundle, s.rootfs, { args: ["sh", "-c", PEER_COMMAND] }), true);
      let c: Record<string, string>;
      try {
        await peer.wait(30_000);
        c = parseProbe(await containerSh(s, probe));
      } finally {
        peer.remove();
      }
      expect(c.kernel).toBe(release());
      expect(c.seccomp).toMatch(/^\d$/);
      expect(c.hostfile).toBe("none");
      expect(c.peerfile).toBe("none");
      expect(c.peerproc).toBe("0");
      expect(c.ifaces).toBe("lo");
      expect(c.hostnet).toBe("");
      expect(Number(c.procs)).toBeLessThan(10);

      const disks = ["a", "b"].map((n) => { const f = join(dir, `${n}.img`); copyFileSync(guest.disk, f); return f; });
      const vm = await GuestVm.boot({ mode: "para", paging: "nested", memoryMiB: 128, kernel: guest.kernel, initrd: guest.initramfs, disk: disks[0] }, 180_000);
      let v: Record<string, string>;
      try {
        const peerVm = await GuestVm.boot({ mode: "para", paging: "nested", memoryMiB: 64, kernel: guest.kernel, initrd: guest.initramfs, disk: disks[1] }, 180_000);
        try {
          await peerVm.sh(`(${PEER_COMMAND}) & true`);
          expect(await peerVm.sh("cat /tmp/wv-peer")).toContain("peer-secret");
          v = parseProbe(await vm.sh(probe));
        } finally {
          await peerVm.close();
        }
      } finally {
        await vm.close();
      }
      expect(v.kernel).not.toBe(release());
      expect(v.kernel).toMatch(/^6\.1\./);
      expect(v.hostfile).toBe("none");
      expect(v.peerfile).toBe("none");
      expect(v.peerproc).toBe("0");
      expect(v.ifaces.split(" ")).toContain("eth0");
      expect(v.hostnet).toBe(HOST); // user-mode networking forwards 10.0.2.2 to the host's loopback

      const rows = isolationRows(c, v, release(), 200);
      expect(rows.find((r) => r.what.startsWith("kernel"))!.container).toContain("the host's");
      expect(rows.find((r) => r.what.startsWith("kernel"))!.vm).toContain("its own");
      expect(rows.find((r) => r.what.includes("loopback"))).toEqual(expect.objectContaining({ container: "no", vm: `yes, at ${HOST}` }));
    } finally {
      await server.close();
    }
  }, 300_000);
});
