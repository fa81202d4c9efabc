import type { DeviceState, MmioDevice } from "./device";
import { TEST_SIZE } from "../machine/memory-map";

/** What the guest asked the board to do through the finisher. */
export interface TestEvent {
  kind: "poweroff" | "reset" | "fail";
  /** Exit code: 0 for poweroff/reset, the guest-supplied code for fail. */
  code: number;
}

const FINISHER_FAIL = 0x3333;
const FINISHER_PASS = 0x5555;
const FINISHER_RESET = 0x7777;

/**
 * The "sifive,test0" finisher. One write-only register at offset 0: the low 16 bits
 * select the action, the high 16 bits carry the failure code. OpenSBI's reset driver and
 * Linux's syscon-poweroff / syscon-reboot (value 0x5555 / 0x7777) write it.
 */
export class SifiveTest implements MmioDevice {
  readonly name = "test";
  readonly size = TEST_SIZE;

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
    return {}; // stateless
  }

  restore(state: DeviceState): void {
    if (state === null || typeof state !== "object") throw new Error("sifive-test: state must be an object");
  }
}
