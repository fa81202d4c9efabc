import type { DeviceState, DeviceType, MmioDevice } from "./device";
import { setReg } from "./devicetree";
import { StateReader } from "./state";

/** What the guest asked the board to do through the finisher. */
export interface TestEvent {
  kind: "poweroff" | "reset" | "fail";
  /** Exit code: 0 for poweroff/reset, the guest-supplied code for fail. */
  code: number;
}

const FINISHER_FAIL = 0x3333;
const FINISHER_PASS = 0x5555;
const FINISHER_RESET = 0x7777;
const VERSION = 1;

/**
 * The finisher as the board places it. It is also the syscon Linux powers off and reboots
 * through: the syscon-poweroff and syscon-reboot nodes name it and the commands to write.
 */
export const SIFIVE_TEST: DeviceType = {
  kind: "sifive-test",
  dtName: "test",
  size: 0x1000,
  irqs: 0,
  phandle: "referenced",
  rootNodes(root, at) {
    for (const [name, value] of [["poweroff", FINISHER_PASS], ["reboot", FINISHER_RESET]] as const) {
      root.addNode(name).setStrings("compatible", [`syscon-${name}`]).setU32("regmap", at.phandle).setU32("offset", 0).setU32("value", value);
    }
  },
  describe(node, at) {
    setReg(node, at, this.size).setStrings("compatible", ["sifive,test1", "sifive,test0", "syscon"]).setU32("phandle", at.phandle);
  },
};

/**
 * The "sifive,test0" finisher. One write-only register at offset 0: the low 16 bits
 * select the action, the high 16 bits carry the failure code. OpenSBI's reset driver and
 * Linux's syscon-poweroff / syscon-reboot (value 0x5555 / 0x7777) write it.
 */
export class SifiveTest implements MmioDevice {
  readonly name = "test";
  readonly size = SIFIVE_TEST.size;

  constructor(private readonly onEvent: (event: TestEvent) => void) {}

  read(_offset: number, _size: 1 | 2 | 4): number {
    return 0; // the register reads as zero on QEMU too
  }

  write(offset: number, size: 1 | 2 | 4, value: number): void {
    // A byte write cannot hold a whole command; QEMU likewise only acts on offset 0.
    if (offset !== 0 || size === 1) return;
    const status = value & 0xffff;
    const code = size === 4 ? (value >>> 16) & 0xffff : 0;
    switch (status) {
      case FINISHER_PASS:
        this.onEvent({ kind: "poweroff", code: 0 });
        break;
      case FINISHER_FAIL:
        this.onEvent({ kind: "fail", code });
        break;
      case FINISHER_RESET:
        this.onEvent({ kind: "reset", code: 0 });
        break;
      default:
        break; // unknown commands are ignored
    }
  }

  save(): DeviceState {
    return { kind: SIFIVE_TEST.kind, version: VERSION }; // nothing else: it has no state
  }

  restore(state: unknown): void {
    StateReader.open(state, this.name, SIFIVE_TEST.kind, VERSION);
  }
}
