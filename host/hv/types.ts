// What the hypervisor's control plane answers: VM and host information, and the errors every
// front end (embedding API, HTTP API, `wasmvisor ctl`) reports the same way.

import type { Action, VmState } from "./lifecycle";
import type { JitStats } from "../jit/tier";
import type { MigrationProgress, SnapshotProgress } from "./pcpu";

export type { VmState };

/** Why a VM ended when its guest reset the machine and it was not to reboot (QEMU's -no-reboot). */
export const GUEST_RESET_END = "the guest reset the machine (-no-reboot)";

export interface VmInfo {
  /** The VM's name: how every API call refers to it. */
  name: string;
  state: VmState;
  /** Why it stopped or failed (poweroff, exit code, crash, stuck, worker died). */
  reason?: string;
  /** The pCPU (worker) it is homed on. */
  pcpu: number;
  memory: number;
  vcpus: number;
  weight: number;
  /** Percent of one pCPU, if capped. */
  cap?: number;
  /** Times it was restarted after a failure. */
  restarts: number;
  /** Times it moved to another pCPU (load balancing or a move request). */
  moves: number;
  /** Once it has ended: the guest's exit status (0 for a clean poweroff; 70 when it failed in the host). */
  exitCode?: number;
  /** The images its drives are on now (a live snapshot moves them to overlays, a migration with its disks to copies). */
  drives: string[];
}

export interface VmRunStats {
  name: string;
  /** Guest instructions retired. */
  instructions: number;
  /** CPU time given by the scheduler, and time runnable but waiting (ms). */
  cpuMs: number;
  stealMs: number;
  /** Wake-up latency percentiles (ms) over recent wake-ups. */
  wakeLatencyMs: { p50: number; p99: number; samples: number };
  /** Exits to the host by reason. */
  exits: Record<string, number>;
  /** The translation tier's figures for the VM's harts on its home pCPU, when it has the tier on. */
  jit?: JitStats;
}

export interface HostInfo {
  pcpus: number;
  /** Bytes VMs may commit in total (host memory × overcommit ratio). */
  memoryLimit: number;
  memoryCommitted: number;
  maxVcpus: number;
  vcpusCommitted: number;
  /** File descriptors VMs may hold in total (disks, host sockets), and those committed. */
  fdLimit: number;
  fdsCommitted: number;
  vms: number;
}

/** What a snapshot took. */
export interface SnapshotInfo {
  name: string;
  /** The file, as the request named it. */
  file: string;
  bytes: number;
  /** RAM pages written. */
  pages: number;
  /** From the request to the file in place, and how long the VM did not run (ms). */
  totalMs: number;
  downtimeMs: number;
  /** The VM's state afterwards (stopped with --stop). */
  state: VmState;
}

/** A control-plane error with the HTTP status that describes it. */
export class HvError extends Error {
  constructor(
    readonly status: 400 | 404 | 409 | 500 | 502 | 507,
    message: string,
  ) {
    super(message);
  }
}

export const badRequest = (msg: string) => new HvError(400, msg);
export const notFound = (msg: string) => new HvError(404, msg);
/** The VM is not in a state that allows the operation. */
export const conflict = (msg: string) => new HvError(409, msg);
/** The host cannot fit the request (admission control). */
export const noRoom = (msg: string) => new HvError(507, msg);

/** What a front end (the HTTP API, an embedding app) needs from the hypervisor. */
export interface Control {
  host(): HostInfo;
  list(): VmInfo[];
  info(name: string): VmInfo;
  /** Validates the definition (it comes from outside) and admits or refuses it. */
  create(definition: unknown): Promise<VmInfo>;
  act(name: string, action: Action): Promise<VmInfo>;
  /** Move a VM to another pCPU. */
  move(name: string, pcpu: number): Promise<VmInfo>;
  destroy(name: string): Promise<void>;
  /** Save the VM's whole state to a file (it keeps running unless `stop`). */
  snapshot(name: string, file: string, opts?: { stop?: boolean }): Promise<SnapshotInfo>;
  /** A new VM from a snapshot file, running unless `paused`; `name` replaces the saved name. */
  restore(file: string, opts?: { name?: string; paused?: boolean }): Promise<VmInfo>;
  /** Migrate a VM live to the host at `to` ("tcp:HOST:PORT"); resolves once it runs there. */
  migrate(name: string, to: string, opts?: { downtimeMs?: number; maxRounds?: number; postcopy?: boolean; copyStorage?: boolean }): Promise<MigrationProgress>;
  /** The VM's last snapshot, as it goes or as it went. */
  snapshotProgress(name: string): SnapshotProgress;
  /** The VM's last migration, as it goes or as it went. */
  migration(name: string): MigrationProgress;
  stats(name: string): Promise<VmRunStats>;
  /** Plug, unplug, list or type on the VM's USB devices (its xHCI controller). */
  usb(name: string, request: UsbRequest): Promise<UsbInfo>;
  /** Console output goes to onOutput until detach(); write() sends keys to the guest. */
  attachConsole(name: string, onOutput: (bytes: Uint8Array) => void): { write(bytes: Uint8Array): void; detach(): void };
}

/**
 * What can be done with a VM's USB devices: plug one in (a --usb spec: "kbd,id=k1",
 * "storage,file=usb.img", "serial,socket=PATH"), unplug one by id, list them, type text on a
 * keyboard, or send the console's input to a keyboard (id) or back to the console (null).
 */
export type UsbRequest =
  | { op: "attach"; spec: string }
  | { op: "detach"; id: string }
  | { op: "list" }
  | { op: "type"; id: string; text: string }
  | { op: "console"; id: string | null };

/** The VM's USB devices after the request, and the port a device was plugged into. */
export interface UsbInfo {
  devices: { id: string; type: string; port: number }[];
  port?: number;
}
