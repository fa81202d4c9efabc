// Building a VM from a request: its disk and network backends (in the calling thread: disk
// I/O is synchronous there, network events arrive on its event loop) and the machine. The
// one-VM worker of `wasmvisor boot` and the hypervisor's pCPU workers both build VMs this way.
import { loadCoreModule } from "../core/load-node";
import { VirtMachine, type Image, type DriveInterface, type NicModel, type BandwidthLimits, type MachineState } from "../machine/virt";
import { NodeDisk } from "../virtio/node-disk";
import { createNetBackend } from "../net/backend";
import { nodeHostSockets } from "../platform/node/host-sockets";
import type { Paging } from "../core/core";
import { UserNet } from "../net/user";
import { SocketBudget, DEFAULT_VM_SOCKETS } from "../net/budget";
import type { DiskBackend, NetBackend } from "../devices/backends";

export interface DriveOption {
  file: string;
  readOnly: boolean;
  serial?: string;
  /** virtio-blk or ATA; the CLI fills in the mode's default. */
  if: DriveInterface;
}

export interface NetOption {
  /** QEMU-style netdev string: "user[,hostfwd=...]" or "switch=NAME". */
  netdev: string;
  /** virtio-net or ethoc; the CLI fills in the mode's default. */
  model: NicModel;
}

/** Everything that defines a VM's machine. */
export interface MachineRequest {
  memory: number;
  harts: number;
  paging?: Paging;
  bios: Image | null | "builtin";
  drives: DriveOption[];
  nets: NetOption[];
  /** Time the host's handling of exits (for --stats). */
  timeExits?: boolean;
  kernel?: Image;
  initrd?: Image;
  append?: string;
  /** Disk and network bandwidth limits (virtio devices). */
  limits?: BandwidthLimits;
  /** Directories the drives must be in (the daemon's --images); anywhere if undefined. */
  imageDirs?: readonly string[];
  /** Host sockets the VM's user-mode networking may hold, all its NICs together. */
  sockets?: number;
}

/** Where the machine's console goes, and how the network wakes the VM's thread. */
export interface MachineIo {
  output(bytes: Uint8Array): void;
  /** The next input byte, or -1. */
  input(): number;
  /** A network backend has something for the guest. */
  wake(): void;
}

/** Open the backends and build the machine; throws (one-line message) on bad images or backends. */
export async function buildMachine(req: MachineRequest, io: MachineIo, resume?: { memory: WebAssembly.Memory; state: MachineState }): Promise<VirtMachine> {
  const disks: DiskBackend[] = [];
  const nets: NetBackend[] = [];
  try {
    for (const d of req.drives) disks.push(new NodeDisk(d.file, { readOnly: d.readOnly, dirs: req.imageDirs, what: "--drive" }));
    // One budget for all the VM's user-mode NICs: more NICs do not mean more host sockets.
    const sockets = new SocketBudget(req.sockets ?? DEFAULT_VM_SOCKETS);
    for (const n of req.nets) {
      // A failure after start-up (a later socket error) is the guest's to see, not fatal.
      const backend = createNetBackend(n.netdev, { hostSockets: nodeHostSockets, budget: sockets, onWake: io.wake, onError: () => {} });
      nets.push(backend);
      // hostfwd listeners must be up (e.g. the port is free) before the guest starts.
      if (backend instanceof UserNet) await backend.ready();
    }
    return new VirtMachine({
      drives: disks.map((backend, i) => ({ backend, serial: req.drives[i].serial, readOnly: req.drives[i].readOnly, if: req.drives[i].if })),
      nets: nets.map((backend, i) => ({ backend, model: req.nets[i].model })),
      virtioConsole: req.bios === "builtin",
      module: loadCoreModule(),
      memory: req.memory,
      harts: req.harts,
      paging: req.paging,
      bios: req.bios,
      kernel: req.kernel,
      initrd: req.initrd,
      append: req.append,
      output: io.output,
      input: io.input,
      timeExits: req.timeExits,
      limits: req.limits,
      resume,
    });
  } catch (e) {
    for (const d of disks) d.close();
    for (const n of nets) n.close();
    throw e;
  }
}
