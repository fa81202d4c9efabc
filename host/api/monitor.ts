// The monitor of a one-VM wasmvisor (`boot`, `qemu`): QEMU's QMP commands and their human
// (HMP) forms, on the hypervisor's control plane: stop is a pause, cont a start or resume,
// system_reset a reset, migrate a live migration, each through Hypervisor like the control API's
// routes. QMP's wire protocol is api/qmp.ts; the terminal's Ctrl-A c monitor and -monitor
// sockets read lines and call human(). Events (STOP, RESUME, RESET, POWERDOWN, SHUTDOWN, the
// migration's) go to every listener with QMP's timestamp.
import type { Hypervisor } from "../hv/hypervisor";
import type { MigrationProgress } from "../hv/pcpu";
import { GUEST_RESET_END, type UsbInfo, type UsbRequest, type VmInfo } from "../hv/types";

/** A QMP error: its class, as QEMU names them, and a description. */
export class QmpError extends Error {
  constructor(
    readonly errorClass: "GenericError" | "CommandNotFound" | "DeviceNotActive" | "DeviceNotFound",
    message: string,
  ) {
    super(message);
  }
}

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp: { seconds: number; microseconds: number };
}

export interface MonitorOptions {
  /** The version QMP's greeting and query-version report (QEMU's whose protocol this follows) and the package. */
  version: { major: number; minor: number; micro: number; package: string };
  /** The VM was named (-name): query-name answers with it (QEMU's answers {} otherwise). */
  named: boolean;
  /** The host thread id query-cpus-fast reports for each hart. */
  threadId: number;
  /** The VM's harts. */
  harts: number;
  /** -no-reboot: system_reset ends the VM, as QEMU does. */
  noReboot: boolean;
  /** End the process (the VM is stopped first): quit. */
  quit(): void;
}

type ArgType = "string" | "number" | "boolean" | "object" | "array";
interface CommandSpec {
  args?: Record<string, { type: ArgType; optional?: boolean }>;
  run(m: Monitor, args: Record<string, unknown>): Promise<unknown> | unknown;
}

// QEMU's migration parameters wasmvisor's migration has: the downtime limit, and its capabilities.
const DEFAULT_DOWNTIME_MS = 300; // QEMU's default downtime-limit

const COMMANDS: Record<string, CommandSpec> = {
  "query-status": { run: (m) => m.status() },
  stop: { run: (m) => m.stop() },
  cont: { run: (m) => m.cont() },
  system_reset: { run: (m) => m.reset() },
  system_powerdown: { run: (m) => { m.emit("POWERDOWN"); return {}; } }, // the virt machine has no power button its guests watch, as on QEMU
  quit: { run: (m) => m.quit() },
  "query-cpus-fast": { run: (m) => m.cpus() },
  "query-version": { run: (m) => m.versionInfo() },
  "query-name": { run: (m) => m.queryName() },
  "query-kvm": { run: () => ({ enabled: false, present: false }) },
  "query-commands": { run: () => [...Object.keys(COMMANDS), "qmp_capabilities"].map((name) => ({ name })) },
  "query-block": { run: (m) => m.block() },
  "human-monitor-command": {
    args: { "command-line": { type: "string" }, "cpu-index": { type: "number", optional: true } },
    run: (m, a) => m.human(a["command-line"] as string, a["cpu-index"] as number | undefined),
  },
  migrate: {
    args: { uri: { type: "string" }, blk: { type: "boolean", optional: true }, inc: { type: "boolean", optional: true }, detach: { type: "boolean", optional: true }, resume: { type: "boolean", optional: true } },
    run: (m, a) => m.migrate(a.uri as string, a.blk === true),
  },
  "query-migrate": { run: (m) => m.queryMigrate() },
  "migrate-set-parameters": {
    args: { "downtime-limit": { type: "number", optional: true }, "max-bandwidth": { type: "number", optional: true } },
    run: (m, a) => m.setMigrateParameters(a),
  },
  "query-migrate-parameters": { run: (m) => ({ "downtime-limit": m.downtimeMs }) },
  "migrate-set-capabilities": { args: { capabilities: { type: "array" } }, run: (m, a) => m.setCapabilities(a.capabilities as unknown[]) },
  "query-migrate-capabilities": { run: (m) => [...MIGRATE_CAPABILITIES].map((c) => ({ capability: c, state: m.capabilities.has(c) })) },
  migrate_cancel: { run: () => { throw new QmpError("GenericError", "wasmvisor cannot cancel a migration: it ends by itself (a failure leaves the VM running here)"); } },
  // USB hot-plug as QEMU's: a keyboard plugged in (a disk or serial port needs a block node or a
  // chardev QMP cannot make here: 'wasmvisor ctl usb attach' plugs those), any USB device out.
  device_add: {
    args: { driver: { type: "string" }, id: { type: "string", optional: true }, bus: { type: "string", optional: true } },
    run: (m, a) => m.deviceAdd(a.driver as string, a.id as string | undefined),
  },
  device_del: { args: { id: { type: "string" } }, run: (m, a) => m.deviceDel(a.id as string) },
};

/** QEMU's capabilities that wasmvisor's migration has: post-copy, and block migration (the disks copied). */
const MIGRATE_CAPABILITIES = new Set(["postcopy-ram", "block"]);

/** QMP's names for the life-cycle states. */
const RUN_STATE = { created: "prelaunch", running: "running", paused: "paused", stopped: "shutdown", failed: "internal-error" } as const;

export class Monitor {
  private readonly listeners = new Set<(e: QmpEvent) => void>();
  downtimeMs = DEFAULT_DOWNTIME_MS;
  readonly capabilities = new Set<string>();
  /** The last migration: running, done (the VM is gone from here) or failed. */
  private migration: { status: "active" | "completed" | "failed"; progress?: MigrationProgress; error?: string; started: number } | null = null;
  private ended = false;

  constructor(
    private readonly hv: Hypervisor,
    readonly name: string,
    private readonly opts: MonitorOptions,
  ) {
    hv.onGuestReset(name, () => this.emit("RESET", { guest: true, reason: "guest-reset" }));
    hv.onDebugStop(name, () => this.emit("STOP")); // a debugger's breakpoint paused it
  }

  /** Events go to `listener` until the function returned is called. */
  onEvent(listener: (e: QmpEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(event: string, data?: Record<string, unknown>): void {
    const now = Date.now();
    const e: QmpEvent = { timestamp: { seconds: Math.floor(now / 1000), microseconds: (now % 1000) * 1000 }, event, ...(data ? { data } : {}) };
    for (const l of this.listeners) l(e);
  }

  /** The VM ended by itself (the guest powered off, reset with -no-reboot, or failed): QEMU's SHUTDOWN. */
  vmEnded(info: VmInfo): void {
    if (this.ended) return;
    this.ended = true;
    const reason = info.state !== "stopped" ? "host-error" : info.reason === GUEST_RESET_END ? "guest-reset" : "guest-shutdown";
    this.emit("SHUTDOWN", { guest: info.state === "stopped", reason });
  }

  /** What the human monitor says first, as QEMU's does. */
  banner(): string {
    const { major, minor, micro } = this.opts.version;
    return `QEMU ${major}.${minor}.${micro} monitor (wasmvisor) - type 'help' for more information\r\n`;
  }

  commandNames(): string[] {
    return Object.keys(COMMANDS);
  }

  /** Run a QMP command with its arguments (untrusted: checked against the command's). */
  async execute(command: string, args: Record<string, unknown>): Promise<unknown> {
    const spec = Object.hasOwn(COMMANDS, command) ? COMMANDS[command]! : undefined;
    if (!spec) throw new QmpError("CommandNotFound", `The command ${command} has not been found`);
    const known = spec.args ?? {};
    for (const [k, v] of Object.entries(args)) {
      const a = Object.hasOwn(known, k) ? known[k]! : undefined;
      if (!a) throw new QmpError("GenericError", `Parameter '${k}' is unexpected`);
      const type = Array.isArray(v) ? "array" : v === null ? "null" : typeof v;
      if (type !== a.type) throw new QmpError("GenericError", `Invalid parameter type for '${k}', expected: ${a.type}`);
    }
    for (const [k, a] of Object.entries(known)) if (!a.optional && !(k in args)) throw new QmpError("GenericError", `Parameter '${k}' is missing`);
    return spec.run(this, args);
  }

  private info(): VmInfo | null {
    try {
      return this.hv.info(this.name);
    } catch {
      return null; // migrated away: gone from this host
    }
  }

  queryName(): object {
    return this.opts.named ? { name: this.name } : {};
  }

  status(): { status: string; singlestep: boolean; running: boolean } {
    const vm = this.info();
    const status = vm ? RUN_STATE[vm.state] : "postmigrate";
    return { status, singlestep: false, running: status === "running" };
  }

  private async act(action: "start" | "pause" | "resume" | "stop" | "reset"): Promise<void> {
    try {
      await this.hv.act(this.name, action);
    } catch (e) {
      throw new QmpError("GenericError", (e as Error).message);
    }
  }

  private live(what: string): VmInfo {
    const vm = this.info();
    if (!vm) throw new QmpError("GenericError", `cannot ${what}: the VM has migrated to another host`);
    if (vm.state === "stopped" || vm.state === "failed") throw new QmpError("GenericError", `cannot ${what}: the VM has ${vm.state === "failed" ? "failed" : "stopped"} (${vm.reason ?? "ended"})`);
    return vm;
  }

  async stop(): Promise<object> {
    const vm = this.live("stop");
    if (vm.state === "running") {
      await this.act("pause");
      this.emit("STOP");
    }
    return {};
  }

  async cont(): Promise<object> {
    const vm = this.live("cont");
    if (vm.state === "running") return {};
    await this.act(vm.state === "created" ? "start" : "resume");
    this.emit("RESUME");
    return {};
  }

  async reset(): Promise<object> {
    const vm = this.live("system_reset");
    if (this.opts.noReboot) {
      // -no-reboot: a reset ends the VM, as QEMU's does.
      this.ended = true;
      this.emit("SHUTDOWN", { guest: false, reason: "host-qmp-system-reset" });
      await this.act("stop");
      return {};
    }
    if (vm.state !== "created") await this.act("reset"); // not started yet: it is at power-on already
    this.emit("RESET", { guest: false, reason: "host-qmp-system-reset" });
    return {};
  }

  async deviceAdd(driver: string, id?: string): Promise<object> {
    this.live("device_add");
    if (driver !== "usb-kbd") {
      throw new QmpError("GenericError", `device_add ${driver}: wasmvisor plugs in usb-kbd here (a usb-storage or usb-serial with 'wasmvisor ctl usb attach', or from the command line)`);
    }
    // QEMU's identifiers: a letter, then letters, digits, '-', '.', '_' (nothing that would end the spec below).
    if (id !== undefined && !/^[A-Za-z][A-Za-z0-9._-]*$/.test(id)) throw new QmpError("GenericError", "Parameter 'id' expects an identifier");
    if (id !== undefined && (await this.usb({ op: "list" })).devices.some((d) => d.id === id)) throw new QmpError("GenericError", `Duplicate device ID '${id}'`);
    await this.usb({ op: "attach", spec: `kbd${id !== undefined ? `,id=${id}` : ""}` });
    return {};
  }

  async deviceDel(id: string): Promise<object> {
    this.live("device_del");
    if (!(await this.usb({ op: "list" })).devices.some((d) => d.id === id)) throw new QmpError("DeviceNotFound", `Device '${id}' not found`);
    await this.usb({ op: "detach", id });
    this.emit("DEVICE_DELETED", { device: id, path: `/machine/peripheral/${id}` });
    return {};
  }

  private async usb(request: UsbRequest): Promise<UsbInfo> {
    try {
      return await this.hv.usb(this.name, request);
    } catch (e) {
      throw new QmpError("GenericError", (e as Error).message.replace(/^xhci0: /, ""));
    }
  }

  quit(): object {
    this.ended = true;
    this.emit("SHUTDOWN", { guest: false, reason: "host-qmp-quit" });
    // After the reply has gone out.
    setTimeout(() => this.opts.quit(), 10);
    return {};
  }

  cpus(): object[] {
    return Array.from({ length: this.opts.harts }, (_, i) => ({
      "cpu-index": i, "qom-path": `/machine/soc0/harts[${i}]`, "thread-id": this.opts.threadId, props: { "core-id": i }, target: "riscv64",
    }));
  }

  versionInfo(): object {
    const { major, minor, micro, package: pkg } = this.opts.version;
    return { qemu: { major, minor, micro }, package: pkg };
  }

  /** The VM's disks as they are now, with the format each was opened as (a qcow2 may be named .img). */
  private async drives(): Promise<{ device: string; file: string; format: string; readOnly: boolean }[]> {
    if (!this.info()) return []; // migrated away: nothing here
    let drives;
    try {
      drives = await this.hv.drives(this.name);
    } catch (e) {
      throw new QmpError("GenericError", (e as Error).message);
    }
    return drives.map((d, i) => ({ device: `drive${i}`, file: d.file, format: d.format, readOnly: d.readOnly }));
  }

  async block(): Promise<object[]> {
    return (await this.drives()).map((d) => ({ device: d.device, locked: false, removable: false, type: "unknown", inserted: { file: d.file, ro: d.readOnly, drv: d.format } }));
  }

  async migrate(uri: string, copyStorage: boolean): Promise<object> {
    this.live("migrate");
    if (this.migration?.status === "active") throw new QmpError("GenericError", "There's a migration process in progress");
    if (!uri.startsWith("tcp:")) throw new QmpError("GenericError", `migrate ${uri}: wasmvisor migrates to a 'wasmvisor host --migrate-listen tcp:ADDR:PORT': give uri tcp:HOST:PORT`);
    const m: NonNullable<Monitor["migration"]> = { status: "active", started: Date.now() };
    this.migration = m;
    const postcopy = this.capabilities.has("postcopy-ram");
    const watch = setInterval(() => {
      try {
        m.progress = this.hv.migration(this.name);
      } catch { /* not started yet */ }
    }, 100);
    // QEMU's migrate returns at once; query-migrate and the MIGRATION events follow it.
    this.emit("MIGRATION", { status: "setup" });
    void this.hv.migrate(this.name, uri, { downtimeMs: this.downtimeMs, postcopy, copyStorage: copyStorage || this.capabilities.has("block") }).then((r) => {
      m.progress = r;
      m.status = "completed";
      this.ended = true;
      this.emit("MIGRATION", { status: "completed" });
    }, (e: Error) => {
      m.status = "failed";
      m.error = e.message;
      this.emit("MIGRATION", { status: "failed" });
    }).finally(() => clearInterval(watch));
    return {};
  }

  queryMigrate(): object {
    const m = this.migration;
    if (!m) return {};
    const p = m.progress;
    const out: Record<string, unknown> = { status: m.status, "total-time": p?.elapsedMs !== undefined ? Math.round(p.elapsedMs) : Date.now() - m.started };
    if (p) {
      out.ram = {
        transferred: p.sentBytes, normal: p.sentPages, "normal-bytes": p.sentPages * 4096, "dirty-pages-rate": Math.round((p.dirtyRateMBs * 1e6) / 4096),
        mbps: p.bandwidthMBs * 8, "dirty-sync-count": p.round + 1, remaining: p.dirtyPages * 4096,
      };
      if (m.status === "active") out["expected-downtime"] = Math.round(p.expectedDowntimeMs);
      if (p.downtimeMs !== undefined) out.downtime = Math.round(p.downtimeMs);
    }
    if (m.error) out["error-desc"] = m.error;
    return out;
  }

  setMigrateParameters(a: Record<string, unknown>): object {
    if (a["downtime-limit"] !== undefined) {
      const ms = a["downtime-limit"] as number;
      if (!(Number.isInteger(ms) && ms > 0 && ms <= 60_000)) throw new QmpError("GenericError", "Parameter 'downtime-limit' expects an integer in the range of 1 to 60000 milliseconds");
      this.downtimeMs = ms;
    }
    if (a["max-bandwidth"] !== undefined) throw new QmpError("GenericError", "wasmvisor's migration has no bandwidth limit: leave max-bandwidth out");
    return {};
  }

  setCapabilities(list: unknown[]): object {
    const parsed = list.map((c) => {
      const o = c as { capability?: unknown; state?: unknown };
      if (typeof o !== "object" || o === null || typeof o.capability !== "string" || typeof o.state !== "boolean" || Object.keys(o).length !== 2) {
        throw new QmpError("GenericError", "Invalid parameter type for 'capabilities', expected: [{capability: str, state: bool}]");
      }
      if (!MIGRATE_CAPABILITIES.has(o.capability)) {
        throw new QmpError("GenericError", `wasmvisor's migration does not have the capability '${o.capability}' (it has ${[...MIGRATE_CAPABILITIES].join(", ")})`);
      }
      return [o.capability, o.state] as const;
    });
    for (const [c, on] of parsed) on ? this.capabilities.add(c) : this.capabilities.delete(c);
    return {};
  }

  /** One line of the human monitor (HMP); its output, lines ending in CR LF as QEMU's do. */
  async human(line: string, cpuIndex = 0): Promise<string> {
    const words = line.trim().split(/\s+/).filter(Boolean);
    if (!words.length) return "";
    const [cmd, ...rest] = words;
    const lines = (...l: string[]) => l.map((x) => `${x}\r\n`).join("");
    const run = async (f: () => Promise<unknown> | unknown): Promise<string> => {
      try {
        await f();
        return "";
      } catch (e) {
        return lines((e as Error).message);
      }
    };
    switch (cmd) {
      case "help": case "?":
        return lines(...HMP_HELP);
      case "info":
        // The monitor's current hart (QMP's cpu-index), or with -a all of them, as QEMU's.
        if (rest[0] === "registers") return this.registers(rest[1] === "-a" ? null : cpuIndex);
        if (rest[0] === "usb") {
          try {
            return lines(...(await this.usb({ op: "list" })).devices.map((d) => `  Device 0.${d.port}, Port ${d.port}, Speed ${d.type === "usb-kbd" ? "12" : "480"} Mb/s, Product ${d.type}, ID: ${d.id}`));
          } catch (e) {
            return lines((e as Error).message);
          }
        }
        if (rest[0] === "block") {
          try {
            return lines(...(await this.drives()).map((d) => `${d.device}: ${d.file} (${d.format}${d.readOnly ? ", read-only" : ""})`));
          } catch (e) {
            return lines((e as Error).message);
          }
        }
        return this.humanInfo(rest[0] ?? "");
      case "stop": return run(() => this.stop());
      case "cont": case "c": return run(() => this.cont());
      case "system_reset": return run(() => this.reset());
      case "device_add": {
        const [driver = "", ...props] = (rest[0] ?? "").split(",");
        const id = props.find((p) => p.startsWith("id="))?.slice(3);
        return run(() => this.deviceAdd(driver, id));
      }
      case "device_del": return run(() => this.deviceDel(rest[0] ?? ""));
      case "system_powerdown": return run(() => this.emit("POWERDOWN"));
      case "quit": case "q": this.quit(); return "";
      case "migrate": {
        const args = rest.filter((w) => !w.startsWith("-"));
        if (args.length !== 1) return lines("migrate [-d] [-b] URI: give one URI, tcp:HOST:PORT");
        return run(() => this.migrate(args[0]!, rest.includes("-b")));
      }
      case "migrate_set_parameter": {
        if (rest.length !== 2 || rest[0] !== "downtime-limit" || !/^\d+$/.test(rest[1]!)) return lines("migrate_set_parameter downtime-limit MS: wasmvisor's migration has that parameter only");
        return run(() => this.setMigrateParameters({ "downtime-limit": Number(rest[1]) }));
      }
      case "migrate_set_capability": {
        if (rest.length !== 2 || !["on", "off"].includes(rest[1]!)) return lines("migrate_set_capability CAPABILITY on|off");
        return run(() => this.setCapabilities([{ capability: rest[0], state: rest[1] === "on" }]));
      }
      case "migrate_cancel": return run(() => this.execute("migrate_cancel", {}));
      default:
        return lines(`unknown command: '${cmd}'`);
    }
  }

  /** info registers: each hart's pc, privilege, CSRs and x/f registers, laid out as QEMU's. */
  private async registers(only: number | null): Promise<string> {
    if (only !== null && !(Number.isInteger(only) && only >= 0 && only < this.opts.harts)) return `cpu-index ${only}: the VM has harts 0 to ${this.opts.harts - 1}\r\n`;
    let state;
    try {
      state = (await this.hv.registers(this.name)) as unknown as { harts: { pc: string; priv: number; x: string[]; f: string[]; fcsr: number; csr: Record<string, string> }[] };
    } catch (e) {
      return `${(e as Error).message}\r\n`;
    }
    const hex = (v: string | number) => BigInt(v).toString(16).padStart(16, "0");
    const out: string[] = [];
    state.harts.forEach((h, i) => {
      if (only !== null && i !== only) return;
      out.push("", `CPU#${i}`, ` V      =   0`, ` priv   = ${"USHM"[h.priv] ?? h.priv}`, ` pc       ${hex(h.pc)}`, ` mhartid  ${hex(i)}`);
      for (const name of ["mstatus", "mie", "mideleg", "medeleg", "mtvec", "stvec", "mepc", "sepc", "mcause", "scause", "mtval", "stval", "mscratch", "sscratch", "satp"]) {
        out.push(` ${name.padEnd(8)} ${hex(h.csr[name] ?? "0")}`);
      }
      for (let r = 0; r < 32; r += 4) out.push([0, 1, 2, 3].map((k) => ` x${r + k}/${X_NAMES[r + k]}`.padEnd(10) + hex(h.x[r + k]!)).join(""));
      for (let r = 0; r < 32; r += 4) out.push([0, 1, 2, 3].map((k) => ` f${r + k}/${F_NAMES[r + k]}`.padEnd(10) + hex(h.f[r + k]!)).join(""));
      out.push(` fcsr     ${hex(h.fcsr)}`);
    });
    return out.map((l) => `${l}\r\n`).join("");
  }

  private humanInfo(what: string): string {
    const lines = (...l: string[]) => l.map((x) => `${x}\r\n`).join("");
    switch (what) {
      case "status": {
        const s = this.status().status;
        return lines(`VM status: ${s === "running" ? "running" : s === "paused" ? "paused" : `paused (${s})`}`);
      }
      case "cpus":
        return lines(...Array.from({ length: this.opts.harts }, (_, i) => `${i === 0 ? "*" : " "} CPU #${i}: thread_id=${this.opts.threadId}`));
      case "version": {
        const { major, minor, micro, package: pkg } = this.opts.version;
        return lines(`${major}.${minor}.${micro} (${pkg})`);
      }
      case "name":
        return lines(this.name);
      case "kvm":
        return lines("kvm support: disabled");
      case "migrate": {
        const q = this.queryMigrate() as Record<string, unknown>;
        if (!q.status) return "";
        const ram = q.ram as Record<string, number> | undefined;
        return lines(`Migration status: ${q.status}`, `total time: ${q["total-time"]} ms`,
          ...(q.downtime !== undefined ? [`downtime: ${q.downtime} ms`] : []),
          ...(ram ? [`transferred ram: ${Math.round(ram.transferred / 1024)} kbytes`, `remaining ram: ${Math.round(ram.remaining / 1024)} kbytes`] : []),
          ...(q["error-desc"] ? [`error description: ${q["error-desc"]}`] : []));
      }
      case "migrate_parameters":
        return lines(`downtime-limit: ${this.downtimeMs} ms`);
      case "migrate_capabilities":
        return lines(...[...MIGRATE_CAPABILITIES].map((c) => `${c}: ${this.capabilities.has(c) ? "on" : "off"}`));
      default:
        return lines(`info ${what}: wasmvisor has info ${INFO.join(", ")}`);
    }
  }
}

const X_NAMES = ["zero", "ra", "sp", "gp", "tp", "t0", "t1", "t2", "s0", "s1", "a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "t3", "t4", "t5", "t6"];
const F_NAMES = ["ft0", "ft1", "ft2", "ft3", "ft4", "ft5", "ft6", "ft7", "fs0", "fs1", "fa0", "fa1", "fa2", "fa3", "fa4", "fa5", "fa6", "fa7", "fs2", "fs3", "fs4", "fs5", "fs6", "fs7", "fs8", "fs9", "fs10", "fs11", "ft8", "ft9", "ft10", "ft11"];

const INFO = ["status", "registers", "cpus", "version", "name", "kvm", "block", "usb", "migrate", "migrate_parameters", "migrate_capabilities"];

const HMP_HELP = [
  "cont|c -- resume emulation",
  "device_add usb-kbd[,id=ID] -- plug a USB keyboard in",
  "device_del id -- unplug a USB device",
  "help|? -- show this help",
  `info ${INFO.join("|")} -- show information (info registers -a: every hart)`,
  "migrate [-b] uri -- migrate to a wasmvisor host (tcp:HOST:PORT); -b copies the disks too",
  "migrate_cancel -- (not supported: a migration ends by itself)",
  "migrate_set_capability capability state -- postcopy-ram or block, on or off",
  "migrate_set_parameter downtime-limit ms -- the longest pause the migration aims for",
  "quit|q -- quit the emulator",
  "stop -- stop emulation",
  "system_powerdown -- send system power down event",
  "system_reset -- reset the system",
];
