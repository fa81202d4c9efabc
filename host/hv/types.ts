// What the hypervisor's control plane speaks: VM definitions (JSON files, the fields of the
// `boot` flags), VM and host information, and the errors every front end (embedding API,
// HTTP API, `wasmvisor ctl`) reports the same way.

/** A VM definition, as in a JSON file given to `wasmvisor ctl create`. */
export interface VmDefinition {
  /** Unique on the host: letters, digits, '-', '_', '.', at most 64. */
  name: string;
  mode?: "para" | "full";
  paging?: "nested" | "shadow";
  /** A file, "none" or "builtin" (the default in para mode; full mode defaults to Debian's OpenSBI). */
  bios?: string;
  kernel?: string;
  initrd?: string;
  append?: string;
  /** "256M", "1G", or MiB as a number. Default 256M. */
  memory?: string | number;
  /** vCPUs (harts), 1–8. */
  smp?: number;
  /** `--drive` specs: "file=disk.img,readonly=on". */
  drives?: string[];
  /** `--net` specs: "user,hostfwd=tcp::8080-:80", "switch=lan". */
  nets?: string[];
  cpu?: {
    /** Relative CPU weight (default 1). */
    weight?: number;
    /** At most this percentage of one pCPU (1–100). */
    cap?: number;
  };
  /** Bandwidth limits (token buckets; absent means unlimited), and host sockets (default 128). */
  limits?: {
    diskBytesPerSec?: number;
    diskOpsPerSec?: number;
    netBytesPerSec?: number;
    /** TCP connections and UDP bindings its user-mode networking may hold on the host at once. */
    sockets?: number;
  };
  /** What to do when the guest crashes or gets stuck: keep it for inspection (default), restart it, or destroy it. */
  onFailure?: "keep" | "restart" | "destroy";
}

export type VmState = "created" | "running" | "paused" | "stopped" | "failed";

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

/** A control-plane error with the HTTP status that describes it. */
export class HvError extends Error {
  constructor(
    readonly status: 400 | 404 | 409 | 507 | 500,
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
