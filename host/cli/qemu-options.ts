// QEMU's options for the riscv64 `virt` machine, as `wasmvisor boot` and `wasmvisor qemu` read
// them: each either maps onto a VM definition's fields (what cli/args.ts gathers for the one
// configuration parser) or is refused with the reason. QEMU's split of a disk into -drive and
// -device (and of a NIC into -netdev and -device) is joined here into wasmvisor's --drive and
// --net specs, so the rest of wasmvisor sees one kind of disk and NIC.
import { net } from "../platform/node/builtins";
import { HART_ISA } from "../machine/virt";
import type { Endpoint } from "../api/qmp";

export type { Endpoint };

export class QemuOptionError extends Error {}

/** A QEMU property list: "driver,key=value,key" (",," is a comma inside a value). */
export function splitProps(text: string): { head: string; props: Map<string, string> } {
  const parts: string[] = [];
  let cur = "";
  for (let i = 0; i < text.length; i++) {
    if (text[i] === "," && text[i + 1] === ",") { cur += ","; i++; }
    else if (text[i] === ",") { parts.push(cur); cur = ""; }
    else cur += text[i];
  }
  parts.push(cur);
  const props = new Map<string, string>();
  let head = "";
  parts.forEach((p, i) => {
    const eq = p.indexOf("=");
    if (i === 0 && eq < 0) head = p;
    else props.set(eq < 0 ? p : p.slice(0, eq), eq < 0 ? "on" : p.slice(eq + 1));
  });
  return { head, props };
}

const ON = new Set(["on", "true", "yes", "y"]);
const OFF = new Set(["off", "false", "no", "n"]);
/** A QEMU boolean property: on/off (or true/false, yes/no, y/n), anything else an error. */
export function flag(option: string, key: string, value: string): boolean {
  if (ON.has(value)) return true;
  if (OFF.has(value)) return false;
  throw new QemuOptionError(`${option} ${key}=${value}: use on or off`);
}

/** Keys of `props` not in `known` are an error naming the first. */
function onlyKnown(option: string, props: Map<string, string>, known: readonly string[], hint = ""): void {
  for (const k of props.keys()) {
    if (!known.includes(k)) throw new QemuOptionError(`${option}: wasmvisor does not support the property '${k}'${hint || ` (it takes ${known.join(", ") || "none"})`}`);
  }
}

/** -qmp / -monitor / -serial character devices that are servers wasmvisor can be. */
export function parseEndpoint(option: string, spec: string): Endpoint {
  const colon = spec.indexOf(":");
  const kind = colon < 0 ? spec : spec.slice(0, colon);
  const { head, props } = splitProps(colon < 0 ? "" : spec.slice(colon + 1));
  if (kind !== "unix" && kind !== "tcp") {
    throw new QemuOptionError(`${option} ${spec}: wasmvisor serves it on unix:PATH,server=on,wait=off or tcp:HOST:PORT,server=on,wait=off only`);
  }
  const server = props.has("server") ? flag(option, "server", props.get("server")!) : false;
  if (!server) throw new QemuOptionError(`${option} ${spec}: wasmvisor listens, it does not connect: add ,server=on,wait=off`);
  // nowait is wait=off; QEMU's default for a server is to wait for its first client. QEMU takes
  // one of the two, not both.
  if (props.has("nowait") && props.has("wait")) throw new QemuOptionError(`${option} ${spec}: give wait= or nowait, not both (QEMU refuses both too)`);
  const wait = props.has("nowait") ? !flag(option, "nowait", props.get("nowait")!) : props.has("wait") ? flag(option, "wait", props.get("wait")!) : true;
  props.delete("server");
  props.delete("nowait");
  props.delete("wait");
  if (kind === "unix") {
    onlyKnown(option, props, [], " (a unix socket takes server, wait/nowait)");
    if (!head) throw new QemuOptionError(`${option} ${spec}: give the socket's path, unix:PATH,server=on,wait=off`);
    return { kind, path: head, wait, spec };
  }
  onlyKnown(option, props, ["ipv4", "ipv6", "nodelay"], " (a tcp socket takes server, wait/nowait, ipv4, ipv6, nodelay)");
  const m = /^(.*):(\d+)$/.exec(head);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new QemuOptionError(`${option} ${spec}: give tcp:HOST:PORT (HOST may be empty: 127.0.0.1)`);
  const given = m[1].replace(/^\[(.*)\]$/, "$1");
  // ipv4=/ipv6= choose the address family, as QEMU's: on for one alone means only it, off means not it.
  const ipv4 = props.has("ipv4") ? flag(option, "ipv4", props.get("ipv4")!) : undefined;
  const ipv6 = props.has("ipv6") ? flag(option, "ipv6", props.get("ipv6")!) : undefined;
  const allows = (family: 4 | 6): boolean => {
    const self = family === 4 ? ipv4 : ipv6, other = family === 4 ? ipv6 : ipv4;
    return self !== false && !(other === true && self !== true);
  };
  if (!allows(4) && !allows(6)) throw new QemuOptionError(`${option} ${spec}: ipv4 and ipv6 are both off: leave one on`);
  // No host: the loopback address of the family asked for.
  const host = given || (allows(4) ? "127.0.0.1" : "::1");
  const family = net().isIP(host);
  if (family === 0 && (ipv4 !== undefined || ipv6 !== undefined)) throw new QemuOptionError(`${option} ${spec}: with ipv4= or ipv6= give HOST as an address (e.g. 127.0.0.1 or [::1])`);
  if (family !== 0 && !allows(family as 4 | 6)) throw new QemuOptionError(`${option} ${spec}: ${host} is an IPv${family} address and the options exclude IPv${family}`);
  const nodelay = props.has("nodelay") ? flag(option, "nodelay", props.get("nodelay")!) : false;
  return { kind, host, port, wait, spec, ...(nodelay ? { nodelay } : {}) };
}

/** The port -s listens on, as QEMU's. */
export const GDB_DEFAULT_PORT = 1234;

/**
 * -gdb DEV (QEMU: tcp::PORT, tcp:HOST:PORT, unix:PATH, none; always a server that does not wait)
 * and wasmvisor's --gdb PORT. Without a host, the loopback address (QEMU binds every address).
 */
export function parseGdb(option: string, spec: string): Endpoint | null {
  if (spec === "none") return null;
  if (/^\d+$/.test(spec)) return parseGdb(option, `tcp::${spec}`);
  if (!/^(tcp|unix):/.test(spec)) throw new QemuOptionError(`${option} ${spec}: wasmvisor's GDB stub listens on tcp::PORT, tcp:HOST:PORT or unix:PATH (or give none)`);
  const { props } = splitProps(spec.slice(spec.indexOf(":") + 1));
  const server = props.has("server") || props.has("nowait") || props.has("wait") ? spec : `${spec},server=on,wait=off`;
  try {
    return { ...parseEndpoint(option, server), wait: false, spec };
  } catch (e) {
    throw new QemuOptionError((e as Error).message.replace(server, spec)); // as the user wrote it
  }
}

/** QEMU's -m: "128", "128M", "1G", "size=2G" (no hot-plug: slots and maxmem are refused). */
export function qemuMemory(text: string): string {
  const { head, props } = splitProps(text);
  const size = props.get("size") ?? head;
  props.delete("size");
  onlyKnown("-m", props, [], " (wasmvisor has no memory hot-plug: give -m SIZE)");
  if (!size) throw new QemuOptionError("-m: give a size, e.g. -m 128M");
  return size;
}

/**
 * QEMU's -smp: "3", "cpus=3", "sockets=1,cores=2,threads=2": the missing values computed and the
 * topology checked as QEMU 7.2 does (cores are preferred over sockets; the product of the
 * hierarchy must be maxcpus). maxcpus must equal cpus: wasmvisor has no CPU hot-plug.
 */
export function qemuSmp(text: string): string {
  const { head, props } = splitProps(text);
  onlyKnown("-smp", props, ["cpus", "maxcpus", "sockets", "dies", "clusters", "cores", "threads"]);
  // A leading number is cpus=; a cpus= after it wins, as in QEMU (the last value given counts).
  if (head && !props.has("cpus")) props.set("cpus", head);
  const num = (k: string): number => {
    const v = props.get(k);
    if (v === undefined) return 0; // not given: computed, as QEMU's 0
    if (!/^\d+$/.test(v) || Number(v) === 0) throw new QemuOptionError(`-smp ${k}=${v}: give a whole number from 1 (or leave ${k} out)`);
    return Number(v);
  };
  let [cpus, maxcpus, sockets, cores, threads] = ["cpus", "maxcpus", "sockets", "cores", "threads"].map(num) as [number, number, number, number, number];
  // The riscv virt machine has no dies or clusters: QEMU takes them only as 1.
  for (const k of ["dies", "clusters"]) {
    if (num(k) > 1) throw new QemuOptionError(`-smp ${k}=${props.get(k)}: the virt machine's CPU topology has no ${k} (QEMU refuses it too): leave ${k} out`);
  }
  if (cpus === 0 && maxcpus === 0) {
    sockets ||= 1;
    cores ||= 1;
    threads ||= 1;
  } else {
    maxcpus ||= cpus;
    if (cores === 0) {
      sockets ||= 1;
      threads ||= 1;
      cores = Math.floor(maxcpus / (sockets * threads));
    } else if (sockets === 0) {
      threads ||= 1;
      sockets = Math.floor(maxcpus / (cores * threads));
    }
    if (threads === 0) threads = Math.floor(maxcpus / (sockets * cores));
  }
  maxcpus ||= sockets * cores * threads;
  cpus ||= maxcpus;
  if (sockets * cores * threads !== maxcpus) {
    throw new QemuOptionError(`-smp ${text}: sockets (${sockets}) * cores (${cores}) * threads (${threads}) is not maxcpus (${maxcpus}): make the topology's product the number of harts`);
  }
  if (maxcpus !== cpus) throw new QemuOptionError(`-smp maxcpus=${maxcpus}: wasmvisor has no CPU hot-plug; maxcpus must equal cpus (${cpus})`);
  return String(cpus);
}

// What -cpu properties mean for the core: the extensions it has (asking for them is a no-op;
// turning one off is refused, the core cannot) and those it lacks (asking is refused).
const HAS = new Set([...HART_ISA.replace(/^rv64/, "").split("_")[0]!.split(""), ...HART_ISA.split("_").slice(1), "g", "sv39", "sv48", "mmu", "pmp", "zicntr", "zihpm", "counters"]);
const CPU_MODELS = ["rv64", "max", "any"];

/** -cpu rv64[,ext=on|off...]: the core is one CPU model; extension properties are checked against it. */
export function checkCpu(text: string): void {
  const { head, props } = splitProps(text);
  if (!CPU_MODELS.includes(head)) throw new QemuOptionError(`-cpu ${head}: wasmvisor's harts are one model, ${HART_ISA} with Sv39/Sv48: use -cpu rv64`);
  for (const [k, v] of props) {
    const want = flag("-cpu", k, v);
    const ext = k.toLowerCase();
    if (HAS.has(ext)) {
      if (!want) throw new QemuOptionError(`-cpu ${k}=${v}: wasmvisor's harts always have ${k} (${HART_ISA}); drop it`);
    } else if (want) {
      throw new QemuOptionError(`-cpu ${k}=${v}: wasmvisor's harts do not have ${k} (they are ${HART_ISA} with Sv39/Sv48); drop it`);
    } // off for what the core lacks anyway: as asked
  }
}

/** -machine virt[,props]: the only machine; properties that change nothing here are accepted, dumpdtb= is --dtb-out. */
export function parseMachine(text: string): { dtbOut?: string } {
  const { head, props } = splitProps(text);
  const type = props.get("type") ?? head;
  props.delete("type");
  if (type !== "virt") throw new QemuOptionError(`-machine ${type || text}: wasmvisor is QEMU's riscv64 'virt' machine only: use -machine virt`);
  const out: { dtbOut?: string } = {};
  for (const [k, v] of props) {
    if (k === "dumpdtb") {
      if (!v) throw new QemuOptionError("-machine virt,dumpdtb=: give the file to write the devicetree to, dumpdtb=FILE");
      out.dtbOut = v;
    }
    else if (k === "accel") checkAccel(v);
    // Settings QEMU's virt has that describe what wasmvisor's board is anyway.
    else if ((k === "aclint" || k === "acpi") && !flag("-machine", k, v)) continue;
    else if (k === "aia" && v === "none") continue;
    else throw new QemuOptionError(`-machine virt,${k}=${v}: wasmvisor's virt machine does not have that (it has the CLINT and PLIC, no ACLINT, AIA, ACPI or PCI)`);
  }
  return out;
}

/**
 * -accel tcg[,thread=single|multi]: the harts of a VM run on one thread (single) or on up to two
 * at once (multi, the default as QEMU's on a multi-core host). Returns the thread setting given.
 */
export function checkAccel(text: string): "single" | "multi" | undefined {
  const { head, props } = splitProps(text);
  if (head !== "tcg") throw new QemuOptionError(`-accel ${head}: wasmvisor's harts run in WebAssembly, its accelerator is its own: use -accel tcg or leave it out`);
  let thread: "single" | "multi" | undefined;
  for (const [k, v] of props) {
    if (k === "thread" && (v === "single" || v === "multi")) thread = v;
    else if (k === "thread") throw new QemuOptionError(`-accel tcg,thread=${v}: thread is single or multi`);
    else throw new QemuOptionError(`-accel tcg,${k}=${v}: wasmvisor's accelerator takes thread=single|multi only`);
  }
  return thread;
}

/** -global: only virtio-mmio.force-legacy, which chooses the virtio-mmio interface version. */
export function parseGlobal(text: string): { virtioLegacy: boolean } {
  const m = /^([^.=]+)\.([^=]+)=(.*)$/.exec(text);
  if (!m || m[1] !== "virtio-mmio" || m[2] !== "force-legacy") {
    throw new QemuOptionError(`-global ${text}: wasmvisor supports -global virtio-mmio.force-legacy=on|off only`);
  }
  return { virtioLegacy: flag("-global", "virtio-mmio.force-legacy", m[3]!) };
}

/** -object: rng-random and rng-builtin, which a virtio-rng-device names; the RNG is the host's either way. */
export function parseObject(text: string): { id: string } {
  const { head, props } = splitProps(text);
  const type = props.get("qom-type") ?? head;
  props.delete("qom-type");
  if (type !== "rng-random" && type !== "rng-builtin") {
    throw new QemuOptionError(`-object ${type}: wasmvisor supports -object rng-random and rng-builtin only (for -device virtio-rng-device,rng=ID)`);
  }
  const id = props.get("id");
  if (!id) throw new QemuOptionError(`-object ${type}: give it an id=`);
  props.delete("id");
  const file = props.get("filename");
  props.delete("filename");
  // The device reads the host's cryptographic RNG (crypto.getRandomValues), which is what these files are.
  if (file !== undefined && file !== "/dev/urandom" && file !== "/dev/random") {
    throw new QemuOptionError(`-object rng-random,filename=${file}: wasmvisor's virtio-rng reads the host's cryptographic RNG: use /dev/urandom or leave filename out`);
  }
  onlyKnown(`-object ${type}`, props, [], " (it takes id, filename)");
  return { id };
}

/** QEMU's -serial and -monitor device names that mean the terminal. */
export function checkSerial(text: string): void {
  if (text !== "mon:stdio" && text !== "stdio") {
    throw new QemuOptionError(`-serial ${text}: wasmvisor's serial console is the terminal: use -serial mon:stdio (or stdio, or leave it out)`);
  }
}

export function checkDisplay(text: string): void {
  const { head } = splitProps(text);
  if (head !== "none") throw new QemuOptionError(`-display ${head}: wasmvisor has no graphical display: use -display none or -nographic`);
}

/** -name NAME or -name guest=NAME[,debug-threads=on]: the VM's name. */
export function parseName(text: string): string {
  const { head, props } = splitProps(text);
  const name = props.get("guest") ?? head;
  props.delete("guest");
  props.delete("debug-threads"); // about host thread names: wasmvisor's are its workers'
  props.delete("process");
  onlyKnown("-name", props, [], " (it takes guest, process, debug-threads)");
  return name;
}

// Options QEMU has that wasmvisor refuses, each with why and what to do instead.
export const REFUSED: Record<string, string> = {
  d: "wasmvisor has no QEMU-style -d logging; --stats prints the VM's exits by reason and device when it stops",
  D: "wasmvisor has no QEMU-style log file: leave -D out",
  net: "the legacy -net syntax is not supported: use -netdev user,id=n0 -device virtio-net-device,netdev=n0 (or -nic user,model=virtio-net-device)",
  hda: "use -drive file=IMG,if=none,id=d0 -device virtio-blk-device,drive=d0",
  cdrom: "the virt machine has no CD-ROM: use -drive file=IMG,if=none,id=d0 -device virtio-blk-device,drive=d0",
  pflash: "wasmvisor's virt machine has no flash: load firmware with -bios",
  "enable-kvm": "wasmvisor's harts run in WebAssembly, there is no KVM: leave -enable-kvm out",
  "no-shutdown": "wasmvisor ends when the guest powers off: leave -no-shutdown out",
  incoming: "a wasmvisor VM migrates in to 'wasmvisor host --migrate-listen tcp:ADDR:PORT': start one of those instead",
  loadvm: "wasmvisor's snapshots are files: use 'wasmvisor boot --restore FILE'",
  chardev: "wasmvisor has no separate character devices: give -qmp/-monitor a unix: or tcp: server directly",
  mon: "give -qmp/-monitor a unix: or tcp: server directly (-chardev is not supported)",
  nodefaults: "wasmvisor's virt machine has no default devices but its serial console: leave -nodefaults out",
  vga: "wasmvisor has no display: leave -vga out",
  vnc: "wasmvisor has no display: leave -vnc out",
  usb: "the virt machine here has no USB: leave -usb out",
  boot: "wasmvisor boots what -bios and -kernel give: leave -boot out",
  icount: "wasmvisor's clock is the host's: leave -icount out",
  semihosting: "wasmvisor has no semihosting: use the sifive test device or HTIF to exit",
  "semihosting-config": "wasmvisor has no semihosting: use the sifive test device or HTIF to exit",
  rtc: "the goldfish RTC reads the host's clock (UTC): leave -rtc out",
  daemonize: "run wasmvisor in the background with your shell instead",
  pidfile: "wasmvisor writes no pid file: your shell has $!",
  fsdev: "wasmvisor has no 9p file sharing: use a disk image",
  virtfs: "wasmvisor has no 9p file sharing: use a disk image",
  L: "wasmvisor finds its firmware itself: give -bios FILE",
  trace: "wasmvisor has no QEMU trace events: --stats shows its exits",
  numa: "wasmvisor's virt machine has one memory node",
  "mem-path": "guest RAM is WebAssembly memory: leave -mem-path out",
  "mem-prealloc": "guest RAM is committed as it is touched: leave -mem-prealloc out",
  plugin: "wasmvisor has no TCG plugins",
  readconfig: "give the options on the command line",
  "no-user-config": "wasmvisor reads no QEMU configuration files: leave it out",
};
