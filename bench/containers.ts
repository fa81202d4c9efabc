// The containers suite: the same workload as a wasmvisor VM (the Linux guest of guests/linux) and
// as a container (crun from Debian, on an OCI bundle whose root filesystem is the guest's
// userland built for this machine from the same sources: bench/container.ts), on this machine,
// side by side: start-up to the first line of output, memory per instance, many at once, CPU
// speed (BusyBox md5sum and sha256sum), wv-bench's microbenchmarks, disk and network throughput,
// and what a process inside can see or reach.
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { release, tmpdir } from "node:os";
import { join } from "node:path";
import { Container, ensureCrun, hybridCgroups, makeRootfs, makeVethNetns, runToEnd, writeBundle, cgroupMemoryBytes, RUNTIME, type BundleOptions } from "./container";
import { fullVsParaWorkloads, measure, HOST, type Context, type Workload } from "./fullvspara";
import { GuestVm } from "./guest-vm";
import { startNetServer } from "./guest-net";
import { PROGRAMS, SETUP, timeInGuest, parseTime } from "./guest-int";
import { timeToPrompt, qemuTimeToPrompt, READY } from "./boot";
import { bootLinuxVms } from "./hypervisor";
import { Session } from "../test/integration/cli";
import { Hypervisor } from "../host/hv/hypervisor";
import { nodePlatform, DEFAULT_FIRMWARE } from "../host/platform/node";
import { median } from "../host/util/stats";
import { formatValue } from "./svg";
import { buildHostUserland } from "../guests/linux/build.mjs";

export interface LinuxGuestFiles { kernel: string; initramfs: string; disk: string }

/** One figure on both sides; runs are the raw values, the figure their median. */
export interface SideBySide {
  key: string;
  label: string;
  unit: string;
  better: "higher" | "lower";
  container: number;
  vm: number;
  container_runs: number[];
  vm_runs: number[];
}

export interface IsolationRow {
  what: string;
  container: string;
  vm: string;
}

export interface ContainersResult {
  runtime: { name: string; version: string; hybrid_cgroups: boolean; busybox: string; gcc: string };
  /** The host's kernel, which the containers run on. */
  host_kernel: string;
  /** The host itself runs in a virtual machine (/proc/cpuinfo's `hypervisor` flag): its containers too. */
  host_virtualized?: boolean;
  /** Start-up to the first line of output, s. */
  startup: { container: number[]; vm: number[]; qemu: number[] };
  density: {
    instances: number;
    vm_memory_mib: number;
    /** s from the first start until every instance had printed its first line. */
    container_total_s: number;
    vm_total_s: number;
    /** Host memory per instance idle after its first line, MiB: the containers' cgroups; the VMs' share of the hypervisor process's growth. */
    container_mib: number;
    vm_mib: number;
    /** The process running the hypervisor (here the bench's) before its first VM: paid once, not per VM. */
    vm_fixed_mib: number;
  };
  cpu: { program: string; command: string; container: number[]; interpreter: number[]; translated: number[]; qemu: number[] }[];
  /** wv-bench's microbenchmarks, then disk and network throughput. */
  workloads: SideBySide[];
  isolation: IsolationRow[];
}

const MiB = 2 ** 20;
const CONTAINER_NET = { host: "10.203.0.1", container: "10.203.0.2" };
/** The keys of fullvspara's workloads run on both sides: microbenchmarks, then throughput. */
const WORKLOADS = ["syscall", "pagefault", "ptmod", "forkwait", "mmap", "disk_write", "disk_read", "tcp-rx", "tcp-tx"];
/** The raw disk's name under /dev inside a container: a host file bind-mounted there. */
const CONTAINER_DISK = "wvdisk";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What the containers run on: crun and a root filesystem, in a scratch directory. */
export interface ContainerSetup {
  dir: string;
  rootfs: string;
  runtime: ContainersResult["runtime"];
  ids: number;
  /** A fresh container id and bundle directory. */
  next(): { id: string; bundle: string };
  close(): void;
}

export async function setUpContainers(log: (s: string) => void): Promise<ContainerSetup> {
  const version = ensureCrun(log);
  const userland = await buildHostUserland({ log: (s) => log(`  ${s}`) });
  const dir = mkdtempSync(join(tmpdir(), "wasmvisor-containers-"));
  const rootfs = makeRootfs(userland.root, dir);
  const prefix = `wvb${process.pid}`;
  const setup: ContainerSetup = {
    dir, rootfs, ids: 0,
    runtime: { name: RUNTIME, version, hybrid_cgroups: hybridCgroups(), busybox: userland.busyboxVersion, gcc: userland.gcc },
    next() {
      const id = `${prefix}-${++setup.ids}`;
      return { id, bundle: join(dir, "bundles", id) };
    },
    close() { rmSync(dir, { recursive: true, force: true }); },
  };
  return setup;
}

/** Run a shell command in a new container to its end (stdin /dev/zero: wv-bench's gates pass at once). */
export async function containerSh(s: ContainerSetup, cmd: string, o: Omit<BundleOptions, "args"> = {}): Promise<string> {
  const { id, bundle } = s.next();
  return runToEnd(id, bundle, s.rootfs, { ...o, args: ["sh", "-c", cmd] });
}

// ---- isolation: what a process inside sees ----

/**
 * A shell script printing `probe.<name>=<value>` lines: the kernel, seccomp, the user namespace,
 * the processes it sees, a host file, a peer instance's file and process, a service on the host.
 */
export function isolationProbe(hostMarker: string, port: number): string {
  const connect = (ip: string) => `(echo 'rx 5' | nc -w 2 ${ip} ${port} 2>/dev/null | grep -q rrrrr && echo ${ip})`;
  return [
    `echo "probe.kernel=$(uname -r)"`,
    `echo "probe.seccomp=$(sed -n 's/^Seccomp:[[:space:]]*//p' /proc/self/status)"`,
    `echo "probe.uidmap=$(tr -s ' ' < /proc/self/uid_map 2>/dev/null | sed 's/^ //')"`,
    `echo "probe.procs=$(ls -d /proc/[0-9]* | wc -l)"`,
    `echo "probe.hostfile=$(cat ${hostMarker} 2>/dev/null || echo none)"`,
    `echo "probe.peerfile=$(cat /tmp/wv-peer 2>/dev/null || echo none)"`,
    `echo "probe.peerproc=$(ps | grep -c '[s]leep 4242')"`,
    `echo "probe.ifaces=$(ls /sys/class/net | tr '\\n' ' ')"`,
    `echo "probe.hostnet=$( { ${connect("127.0.0.1")}; ${connect(HOST)}; } | tr '\\n' ' ')"`,
  ].join("; ");
}

/** The peer instance: a file in its /tmp and a process, for the probed one to look for. */
export const PEER_COMMAND = "echo peer-secret > /tmp/wv-peer; sleep 4242";

export function parseProbe(out: string): Record<string, string> {
  return Object.fromEntries([...out.matchAll(/^probe\.(\w+)=(.*?)\r?$/gm)].map((m) => [m[1], m[2].trim()]));
}

/** The isolation table from both sides' probes. */
export function isolationRows(c: Record<string, string>, v: Record<string, string>, hostKernel: string, hostProcs: number): IsolationRow[] {
  const kernel = (k: string) => (k === hostKernel ? `${k}: the host's` : `${k}: its own`);
  const seccomp = (s: string) => (s === "0" ? "none: every system call of that kernel" : s === "" ? "none (its kernel has no seccomp)" : `mode ${s}`);
  const uid = (m: string) => (/^0 0 4294967295$/.test(m) ? "root inside is root of that kernel (no user namespace)" : m === "" ? "root of its own kernel" : `mapped: ${m}`);
  const seen = (x: string) => (x === "none" ? "no" : `yes (read "${x}")`);
  const reach = (x: string) => (x ? `yes, at ${x}` : "no");
  return [
    { what: "kernel its system calls go to (`uname -r`)", container: kernel(c.kernel), vm: kernel(v.kernel) },
    { what: "seccomp filter", container: seccomp(c.seccomp), vm: seccomp(v.seccomp) },
    { what: "user id 0 inside (`/proc/self/uid_map`)", container: uid(c.uidmap), vm: `${uid(v.uidmap)}; the VMM runs as a process of the host` },
    { what: `processes it sees (the host has ${hostProcs})`, container: `${c.procs}: its own`, vm: `${v.procs}: its own (its kernel's threads too)` },
    { what: "a file the bench wrote on the host", container: seen(c.hostfile), vm: seen(v.hostfile) },
    { what: "another running instance's file (in its /tmp)", container: seen(c.peerfile), vm: seen(v.peerfile) },
    { what: "another running instance's process", container: c.peerproc === "0" ? "no" : "yes", vm: v.peerproc === "0" ? "no" : "yes" },
    { what: "network interfaces", container: c.ifaces, vm: v.ifaces },
    { what: "a service on the host's loopback (127.0.0.1)", container: reach(c.hostnet), vm: reach(v.hostnet) },
  ];
}

function hostProcesses(): number {
  return readdirSync("/proc").filter((d) => /^\d+$/.test(d)).length;
}

// ---- the suite ----

export async function containersSuite(g: LinuxGuestFiles, quick: boolean, runs: number, withQemu: boolean, log: (s: string) => void): Promise<ContainersResult> {
  const s = await setUpContainers(log);
  log(`  ${s.runtime.version}${s.runtime.hybrid_cgroups ? " (hybrid cgroups: each crun command runs without /sys/fs/cgroup/unified)" : ""}; ` +
    `BusyBox ${s.runtime.busybox} and wv-bench built with ${s.runtime.gcc}`);
  const server = await startNetServer();
  const netns = makeVethNetns(`wvb${process.pid}`, CONTAINER_NET.host, CONTAINER_NET.container);
  const containerServer = await startNetServer(CONTAINER_NET.host);
  try {
    // ---- start-up to the first line of output ----
    const startup: ContainersResult["startup"] = { container: [], vm: [], qemu: [] };
    const para = ["boot", "--mode", "para", "--kernel", g.kernel, "--initrd", g.initramfs, "--append", "console=ttyS0"];
    for (let i = 0; i < Math.max(runs, 3); i++) {
      const { id, bundle } = s.next();
      const c = new Container(id, writeBundle(bundle, s.rootfs, { args: ["echo", READY] }));
      try {
        startup.container.push((await c.expect(new RegExp(READY))).at - c.spawnedAt);
        await c.wait();
      } finally {
        c.remove();
      }
    }
    for (let i = 0; i < runs; i++) {
      startup.vm.push(await timeToPrompt(para, "ready") * 1000);
      if (withQemu) startup.qemu.push(await qemuTimeToPrompt(g, "ready") * 1000);
    }
    log(`  start-up to the first line: container ${formatValue(median(startup.container))} ms, VM ${formatValue(median(startup.vm))} ms` +
      (withQemu ? `, QEMU ${formatValue(median(startup.qemu))} ms` : ""));

    // ---- many at once: time until all have printed their first line, memory per instance ----
    const n = quick ? 8 : 24;
    const vmMemoryMiB = 32;
    const held: Container[] = [];
    let containerTotal: number, containerBytes = 0;
    try {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        const { id, bundle } = s.next();
        held.push(new Container(id, writeBundle(bundle, s.rootfs, { args: ["sh", "-c", `echo ${READY}; exec sleep 600`] }), true));
      }
      await Promise.all(held.map((c) => c.expect(new RegExp(READY))));
      containerTotal = (performance.now() - t0) / 1000;
      await Promise.all(held.map((c) => c.wait(60_000)));
      await sleep(500);
      for (const c of held) {
        const bytes = cgroupMemoryBytes(c.pid());
        if (bytes === null) throw new Error(`containers: no memory cgroup for container ${c.id}`);
        containerBytes += bytes;
      }
    } finally {
      for (const c of held) c.remove();
    }
    const rss = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"))![1]) * 1024;
    const hv = await Hypervisor.start(nodePlatform, { cpus: 2, balance: false });
    let vmTotal: number, vmBytes: number;
    global.gc?.();
    const rss0 = rss();
    try {
      vmTotal = (await bootLinuxVms(hv, g, n, vmMemoryMiB)).total_s;
      await sleep(1000);
      global.gc?.();
      vmBytes = rss() - rss0;
    } finally {
      await hv.close();
    }
    const density: ContainersResult["density"] = {
      instances: n, vm_memory_mib: vmMemoryMiB, container_total_s: containerTotal, vm_total_s: vmTotal,
      container_mib: containerBytes / n / MiB, vm_mib: vmBytes / n / MiB, vm_fixed_mib: rss0 / MiB,
    };
    log(`  ${n} at once: containers all up in ${formatValue(containerTotal)} s, ${formatValue(density.container_mib)} MiB each; ` +
      `VMs (${vmMemoryMiB} MiB) all up in ${formatValue(vmTotal)} s, ${formatValue(density.vm_mib)} MiB each (the process before its first VM: ${formatValue(density.vm_fixed_mib)} MiB)`);

    // ---- CPU: the guest-integer suite's BusyBox programs over the same bytes ----
    // Each command runs in a container of its own: the files gzip and zcat read are made first
    // in it, as in the guest (untimed).
    const cpuRuns = quick ? 1 : 3;
    const container: number[][] = PROGRAMS.map(() => []);
    for (const [i, p] of PROGRAMS.entries()) {
      for (let k = 0; k < cpuRuns; k++) container[i].push(parseTime(await containerSh(s, `${SETUP} > /dev/null && time sh -c '${p.command}' 2>&1`)));
    }
    const wasmvisor = (jit: "off" | "on") => new Session(["boot", "--mode", "full", "--jit", jit, "--kernel", g.kernel, "--initrd", g.initramfs, "--append", "console=ttyS0"]);
    const interpreter = await timeInGuest(wasmvisor("off"), cpuRuns);
    const translated = await timeInGuest(wasmvisor("on"), cpuRuns);
    const qemu = withQemu ? await timeInGuest(new Session(["-M", "virt", "-m", "256M", "-nographic", "-bios", DEFAULT_FIRMWARE, "-kernel", g.kernel,
      "-initrd", g.initramfs, "-append", "console=ttyS0"], { command: "qemu-system-riscv64" }), cpuRuns) : null;
    const cpu = PROGRAMS.map((p, i) => ({ ...p, container: container[i], interpreter: interpreter[i], translated: translated[i], qemu: qemu?.[i] ?? [] }));
    for (const p of cpu) {
      log(`  ${p.program.padEnd(10)} container ${median(p.container).toFixed(2)} s, VM interpreter ${median(p.interpreter).toFixed(2)} s, ` +
        `translated ${median(p.translated).toFixed(2)} s${qemu ? `, QEMU ${median(p.qemu).toFixed(2)} s` : ""}`);
    }

    // ---- the isolation probes, and wv-bench's workloads ----
    const marker = join(s.dir, "host-marker");
    writeFileSync(marker, "host-secret\n");
    const probe = isolationProbe(marker, server.port);
    const workloads = fullVsParaWorkloads(quick).filter((w) => WORKLOADS.includes(w.key));
    workloads.sort((a, b) => WORKLOADS.indexOf(a.key) - WORKLOADS.indexOf(b.key));

    const { id: peerId, bundle: peerBundle } = s.next();
    const peer = new Container(peerId, writeBundle(peerBundle, s.rootfs, { args: ["sh", "-c", PEER_COMMAND] }), true);
    let containerProbe: Record<string, string>;
    try {
      await peer.wait(30_000);
      containerProbe = parseProbe(await containerSh(s, probe));
    } finally {
      peer.remove();
    }
    const disk = join(s.dir, "disk.img");
    copyFileSync(g.disk, disk);
    const containerRuns = new Map<string, number[]>();
    const ctx: Context = { disk: CONTAINER_DISK, host: CONTAINER_NET.host, port: containerServer.port };
    const bundleOpts = { netns: netns.path, binds: { [disk]: `/dev/${CONTAINER_DISK}` } };
    for (const w of workloads) containerRuns.set(w.key, await measureInContainer(s, w, ctx, runs, bundleOpts));

    const vmDir = mkdtempSync(join(tmpdir(), "wasmvisor-containers-vm-"));
    const vmDisk = join(vmDir, "disk.img"), peerDisk = join(vmDir, "peer.img");
    copyFileSync(g.disk, vmDisk);
    copyFileSync(g.disk, peerDisk);
    const results: SideBySide[] = [];
    let vmProbe: Record<string, string>;
    const vm = await GuestVm.boot({ mode: "para", paging: "nested", jit: "on", memoryMiB: 256, kernel: g.kernel, initrd: g.initramfs, disk: vmDisk });
    try {
      const peerVm = await GuestVm.boot({ mode: "para", paging: "nested", memoryMiB: 64, kernel: g.kernel, initrd: g.initramfs, disk: peerDisk });
      try {
        await peerVm.sh(`(${PEER_COMMAND}) & true`);
        vmProbe = parseProbe(await vm.sh(probe));
      } finally {
        await peerVm.close();
      }
      const vmCtx: Context = { disk: "vda", host: HOST, port: server.port };
      for (const w of workloads) {
        const m = await measure(vm, w, vmCtx, runs);
        const c = containerRuns.get(w.key)!;
        results.push({ key: w.key, label: w.label, unit: w.metric, better: w.better, container: median(c), vm: m.value, container_runs: c, vm_runs: m.runs });
        log(`  ${w.label.padEnd(40)} container ${formatValue(median(c)).padStart(9)}, VM ${formatValue(m.value).padStart(9)} ${w.metric}`);
      }
    } finally {
      await vm.close();
      rmSync(vmDir, { recursive: true, force: true });
    }
    const isolation = isolationRows(containerProbe, vmProbe, release(), hostProcesses());
    const host_virtualized = /^flags\s*:.*\bhypervisor\b/m.test(readFileSync("/proc/cpuinfo", "utf8"));
    return { runtime: s.runtime, host_kernel: release(), host_virtualized, startup, density, cpu, workloads: results, isolation };
  } finally {
    await containerServer.close();
    netns.remove();
    await server.close();
    s.close();
  }
}

/** A workload's figure in containers: its gated command as the VM runs it (the gates read /dev/zero and pass at once). */
async function measureInContainer(s: ContainerSetup, w: Workload, ctx: Context, runs: number, o: Omit<BundleOptions, "args">): Promise<number[]> {
  if (w.setup) await containerSh(s, w.setup(ctx), o);
  const values: number[] = [];
  // Run -1 warms up, as on the VM, and is not counted.
  for (let i = -1; i < runs; i++) {
    const { value, ops } = w.parse(await containerSh(s, w.command(ctx), o));
    if (!(value > 0 && ops > 0)) throw new Error(`${w.key}: implausible result in a container (value ${value}, ${ops} ops)`);
    if (i >= 0) values.push(value);
  }
  return values;
}

