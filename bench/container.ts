// Containers for the containers suite: Debian's crun running OCI bundles whose root filesystem is
// the Linux guest's userland built for this machine from the same sources (static BusyBox from
// the same Debian source package, wv-bench: guests/linux/build.mjs buildHostUserland).
//
// crun, not runc or bubblewrap: it is the OCI runtime Debian packages that starts fastest (a C
// program with no daemon or shim; `crun run -d` leaves nothing of itself behind), and an OCI
// bundle is what Docker, Podman and Kubernetes hand their runtime. The bench installs it
// (apt-get) when it is missing and it runs as root.
//
// Hybrid cgroups: on a host with cgroup v1 controllers and a cgroup v2 hierarchy that has
// controllers of its own (this Firecracker VM: `hugetlb` on /sys/fs/cgroup/unified), crun refuses
// to start anything ("cgroups in hybrid mode not supported"), whatever its cgroup manager. Each
// crun command then runs in a private mount namespace without /sys/fs/cgroup/unified, where crun
// sees plain cgroup v1 and puts each container in v1 cgroups of its own, as on any v1 host; the
// host's mounts are untouched.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { closeSync, cpSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export const RUNTIME = "crun";

/** `crun --version`'s first line; installs Debian's crun first when it is missing. */
export function ensureCrun(log: (s: string) => void): string {
  const version = () => {
    const r = spawnSync(RUNTIME, ["--version"], { encoding: "utf8" });
    return r.status === 0 ? r.stdout.split("\n")[0].trim() : null;
  };
  let v = version();
  if (v) return v;
  const install = "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends crun";
  if (process.getuid?.() !== 0) throw new Error(`containers: crun is not installed and this is not root; as root run: apt-get update && ${install}`);
  log("  installing Debian's crun (apt-get)");
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const lock = ["-o", "DPkg::Lock::Timeout=300"];
  let r = spawnSync("apt-get", ["install", "-y", "--no-install-recommends", ...lock, "crun"], { encoding: "utf8", env });
  if (r.status !== 0) {
    spawnSync("apt-get", ["update", ...lock], { encoding: "utf8", env });
    r = spawnSync("apt-get", ["install", "-y", "--no-install-recommends", ...lock, "crun"], { encoding: "utf8", env });
  }
  v = version();
  if (!v) throw new Error(`containers: could not install crun (apt-get status ${r.status}): ${(r.stderr || r.stdout).trim().split("\n").slice(-3).join(" / ")}; run: ${install}`);
  return v;
}

/** True when crun must not see /sys/fs/cgroup/unified (see the top of this file). */
export function hybridCgroups(): boolean {
  const file = "/sys/fs/cgroup/unified/cgroup.controllers";
  return existsSync(file) && readFileSync(file, "utf8").trim() !== "";
}

/** The command line that runs `crun <args>` on this host. */
export function crunCommand(args: string[]): [string, string[]] {
  if (!hybridCgroups()) return [RUNTIME, args];
  return ["unshare", ["--mount", "--propagation", "private", "sh", "-c", 'umount /sys/fs/cgroup/unified && exec "$@"', "crun", RUNTIME, ...args]];
}

export function crun(args: string[]): string {
  const [cmd, argv] = crunCommand(args);
  const r = spawnSync(cmd, argv, { encoding: "utf8", timeout: 30_000 });
  if (r.status !== 0) throw new Error(`crun ${args.join(" ")} failed (status ${r.status}): ${r.stderr.trim()}`);
  return r.stdout;
}

/**
 * The containers' shared root filesystem in `dir`: the userland tree plus the directories a
 * container's mounts need. Read-only in every container; /tmp is a tmpfs of each.
 */
export function makeRootfs(userland: string, dir: string): string {
  const rootfs = join(dir, "rootfs");
  cpSync(userland, rootfs, { recursive: true, verbatimSymlinks: true });
  for (const d of ["proc", "sys", "dev", "tmp", "etc", "mnt", "root", "data"]) mkdirSync(join(rootfs, d), { recursive: true });
  writeFileSync(join(rootfs, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
  writeFileSync(join(rootfs, "etc/group"), "root:x:0:\n");
  return rootfs;
}

export interface BundleOptions {
  args: string[];
  /** A network namespace to join (a path under /run/netns); default: a new one with loopback only. */
  netns?: string;
  /** Host directories bind-mounted read-write, host path -> path in the container. */
  binds?: Record<string, string>;
  /** A memory limit for the container's cgroup. */
  memoryBytes?: number;
}

/**
 * An OCI bundle in `dir` (config.json) running `args` on `rootfs`: new PID, mount, IPC, UTS and
 * network namespaces; no user namespace, so root inside is root outside with the default
 * capability set of Docker's, no seccomp filter (crun's own `crun spec` has none either).
 */
export function writeBundle(dir: string, rootfs: string, o: BundleOptions): string {
  mkdirSync(dir, { recursive: true });
  const caps = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID",
    "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"];
  const binds = Object.entries(o.binds ?? {}).map(([source, destination]) => ({ destination, type: "bind", source, options: ["rbind", "rw"] }));
  const config = {
    ociVersion: "1.0.2",
    process: {
      terminal: false, user: { uid: 0, gid: 0 }, args: o.args, cwd: "/",
      env: ["PATH=/bin:/sbin:/usr/bin:/usr/sbin", "HOME=/root"],
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      rlimits: [{ type: "RLIMIT_NOFILE", hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: rootfs, readonly: true },
    hostname: "container",
    mounts: [
      { destination: "/proc", type: "proc", source: "proc" },
      { destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"] },
      { destination: "/dev/pts", type: "devpts", source: "devpts", options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] },
      { destination: "/dev/shm", type: "tmpfs", source: "shm", options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
      { destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"] },
      { destination: "/tmp", type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev", "mode=1777"] },
      ...binds,
    ],
    linux: {
      namespaces: [{ type: "pid" }, { type: "ipc" }, { type: "uts" }, { type: "mount" }, o.netns ? { type: "network", path: o.netns } : { type: "network" }],
      resources: { devices: [{ allow: false, access: "rwm" }], ...(o.memoryBytes ? { memory: { limit: o.memoryBytes } } : {}) },
      maskedPaths: ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
      readonlyPaths: ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
    },
  };
  writeFileSync(join(dir, "config.json"), JSON.stringify(config, null, 2));
  return dir;
}

/** A container started with `crun run`, its stdout and stderr read as they come. */
export class Container {
  out = "";
  private waiters = new Set<() => void>();
  private exited: number | null = null;
  private closed = false;
  readonly child: ChildProcess;
  /** performance.now() when `crun run` was spawned. */
  readonly spawnedAt = performance.now();

  /** `detach`: crun returns once the container runs (its output still reaches this process). `stdin`: a file descriptor, or none. */
  constructor(readonly id: string, bundle: string, detach = false, stdin: number | "ignore" = "ignore") {
    const [cmd, argv] = crunCommand(["run", ...(detach ? ["--detach"] : []), "--bundle", bundle, id]);
    this.child = spawn(cmd, argv, { stdio: [stdin, "pipe", "pipe"] });
    const take = (d: Buffer) => { this.out += d.toString("latin1"); this.wake(); };
    this.child.stdout!.on("data", take);
    this.child.stderr!.on("data", take);
    // Detached, crun's end is its exit (the container keeps the pipes open); else the end of its output.
    this.child.on(detach ? "exit" : "close", (code) => { this.exited = code ?? -1; this.wake(); });
    this.child.on("close", () => { this.closed = true; this.wake(); });
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Wait until the output matches `re`: the match and the time its bytes arrived. */
  expect(re: RegExp, timeoutMs = 60_000): Promise<{ groups: string[]; at: number }> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const m = re.exec(this.out);
        if (m) { done(); resolve({ groups: [...m], at: performance.now() }); }
        else if (this.closed) { done(); reject(new Error(`container ${this.id} ended (status ${this.exited}) before ${re}:\n${this.out.slice(-2000)}`)); }
      };
      const timer = setTimeout(() => { done(); reject(new Error(`container ${this.id}: timed out waiting for ${re}:\n${this.out.slice(-2000)}`)); }, timeoutMs);
      const done = () => { clearTimeout(timer); this.waiters.delete(check); };
      this.waiters.add(check);
      check();
    });
  }

  /** Wait for `crun run` to end (with the container's process, unless detached); its status. */
  wait(timeoutMs = 600_000): Promise<number> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.exited !== null) { done(); resolve(this.exited); }
      };
      const timer = setTimeout(() => { done(); reject(new Error(`container ${this.id}: crun run did not end:\n${this.out.slice(-2000)}`)); }, timeoutMs);
      const done = () => { clearTimeout(timer); this.waiters.delete(check); };
      this.waiters.add(check);
      check();
    });
  }

  /** The container's init process on the host, from crun's state. */
  pid(): number {
    return (JSON.parse(crun(["state", this.id])) as { pid: number }).pid;
  }

  /** Kill the container and remove crun's state of it. */
  remove(): void {
    const [cmd, argv] = crunCommand(["delete", "--force", this.id]);
    spawnSync(cmd, argv, { encoding: "utf8", timeout: 30_000 });
    this.child.kill("SIGKILL");
  }
}

/** Run `args` in a new container to its end, stdin /dev/zero; its output. Throws when it exits non-zero. */
export async function runToEnd(id: string, bundleDir: string, rootfs: string, o: BundleOptions, timeoutMs = 600_000): Promise<string> {
  const zero = openSync("/dev/zero", "r");
  const c = new Container(id, writeBundle(bundleDir, rootfs, o), false, zero);
  try {
    const status = await c.wait(timeoutMs);
    if (status !== 0) throw new Error(`container ${id} (${o.args.join(" ")}) exited with status ${status}:\n${c.out.slice(-2000)}`);
    return c.out;
  } finally {
    closeSync(zero);
    c.remove();
  }
}

/** Memory charged to a container's cgroup (v1 memory controller: its processes' pages, page cache and kernel memory). */
export function cgroupMemoryBytes(pid: number): number | null {
  const line = readFileSync(`/proc/${pid}/cgroup`, "utf8").split("\n").find((l) => /^\d+:memory:/.test(l));
  if (line) {
    const file = join("/sys/fs/cgroup/memory", line.replace(/^\d+:memory:/, ""), "memory.usage_in_bytes");
    if (existsSync(file)) return Number(readFileSync(file, "utf8"));
  }
  const v2 = readFileSync(`/proc/${pid}/cgroup`, "utf8").split("\n").find((l) => l.startsWith("0::"));
  const file = v2 && join("/sys/fs/cgroup", v2.slice(3), "memory.current");
  return file && existsSync(file) ? Number(readFileSync(file, "utf8")) : null;
}

/**
 * A network namespace with a veth pair to the host (host side `hostIp`/24, `eth0` at
 * `containerIp` inside), as Docker's bridge network gives a container (without the bridge and
 * NAT): the containers that join it reach a server the bench listens with on `hostIp`.
 */
export function makeVethNetns(name: string, hostIp: string, containerIp: string): { path: string; remove(): void } {
  const hostIf = `${name.slice(0, 10)}h`;
  const ip = (...args: string[]) => {
    const r = spawnSync("ip", args, { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`ip ${args.join(" ")} failed: ${r.stderr.trim()}`);
  };
  const remove = () => {
    spawnSync("ip", ["link", "del", hostIf]);
    spawnSync("ip", ["netns", "del", name]);
  };
  remove();
  ip("netns", "add", name);
  try {
    ip("link", "add", hostIf, "type", "veth", "peer", "name", "eth0", "netns", name);
    ip("addr", "add", `${hostIp}/24`, "dev", hostIf);
    ip("link", "set", hostIf, "up");
    ip("netns", "exec", name, "ip", "addr", "add", `${containerIp}/24`, "dev", "eth0");
    ip("netns", "exec", name, "ip", "link", "set", "eth0", "up");
    ip("netns", "exec", name, "ip", "link", "set", "lo", "up");
  } catch (e) {
    remove();
    throw e;
  }
  return { path: `/run/netns/${name}`, remove };
}
