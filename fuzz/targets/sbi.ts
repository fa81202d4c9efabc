/**
 * The built-in SBI answering ecalls from any of four harts with any extension, function and
 * arguments (addresses in RAM, across its end, anywhere in 64 bits; hart masks and bases; the
 * legacy calls), interleaved with what the machine does between calls (scheduling, steal-time
 * reports, console input). Never throws; an SBI v0.2+ call always answers with one of the
 * spec's error codes; its state survives a save and restore.
 */
import { InputReader, InputWriter } from "../engine/input";
import { rejectsNothing, type Target } from "../engine/target";
import { Core } from "../../host/core/core";
import { RAM_BASE } from "../../host/machine/memory-map";
import { loadCoreModule } from "../../host/platform/node/core";
import { BuiltinSbi, EXT } from "../../host/sbi/sbi";
import { RIG_RAM, zeroRam } from "./rig";

const HARTS = 4;
const EIDS = [...Object.values(EXT), 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0x0a000000, 0x09000000];

function argument(input: InputReader): bigint {
  switch (input.int(0, 7)) {
    case 0: return BigInt(RAM_BASE + input.int(0, RIG_RAM - 1)); // in RAM
    case 1: return BigInt(RAM_BASE + RIG_RAM - input.int(0, 128)); // across its end
    case 2: return BigInt(input.int(0, 8)); // hart ids, small counts
    case 3: return input.pick([0n, -1n & 0xffffffffffffffffn, 1n << 63n, 0x80000000n, 2n ** 53n, 2n ** 53n - 1n, 0xffffffffn, 64n, 4096n]);
    case 4: return BigInt(input.u32());
    default: return input.u64();
  }
}

interface SbiRig {
  core: Core;
  input: InputReader | null;
}

function runSbi(rig: SbiRig, data: Uint8Array): void {
  const { core } = rig;
  core.reset();
  zeroRam(core);
  const input = new InputReader(data);
  const platform = {
    consoleWrite: () => {},
    consoleRead: () => (input.bool() ? input.u8() : -1),
    reset: () => {},
  };
  const sbi = new BuiltinSbi(core, platform);
  sbi.bootHart(0, RAM_BASE, RAM_BASE + RIG_RAM - 4096);
  for (let ops = 0; ops < 100 && !input.done; ops++) {
    const op = input.int(0, 7);
    if (op <= 4) {
      const hart = input.int(0, HARTS - 1);
      const eid = input.int(0, 3) === 0 ? Number(input.u32()) : input.pick(EIDS);
      const fid = input.bool() ? input.int(0, 7) : input.u32();
      core.setX(hart, 17, eid);
      core.setX(hart, 16, fid);
      for (let i = 0; i < 6; i++) core.setX(hart, 10 + i, input.bool() ? argument(input) : 0n);
      sbi.handle(hart);
      if (eid > 8) {
        const err = BigInt.asIntN(64, core.x(hart, 10));
        if (err > 0n || err < -10n) throw new Error(`SBI call ${eid.toString(16)}/${fid} answered error ${err}, not an SBI error code`);
      }
    } else if (op === 5) {
      sbi.runnable(input.int(0, HARTS - 1));
    } else if (op === 6) {
      sbi.reportSteal(input.u64());
    } else {
      core.setMip(input.int(0, HARTS - 1), input.pick([1, 5, 9]), input.bool());
    }
  }
  new BuiltinSbi(core, platform).restore(JSON.parse(JSON.stringify(sbi.save())));
}

/** Seeds: the calls Linux makes at boot (probe, start the other harts, set a timer, print). */
function seeds(): Uint8Array[] {
  const call = (w: InputWriter, hart: number, eid: number, fid: number, args: bigint[]) => {
    w.int(0, 7, 0).int(0, HARTS - 1, hart).int(0, 3, 1).int(0, EIDS.length - 1, EIDS.indexOf(eid)).bool(true).int(0, 7, fid);
    for (let i = 0; i < 6; i++) {
      if (i >= args.length) { w.bool(false); continue; }
      w.bool(true).int(0, 7, 7).u64(args[i]!);
    }
  };
  const w = new InputWriter();
  call(w, 0, EXT.BASE, 3, [BigInt(EXT.HSM)]);
  call(w, 0, EXT.HSM, 0, [1n, BigInt(RAM_BASE + 0x1000), 42n]);
  call(w, 1, EXT.HSM, 2, [0n]);
  call(w, 0, EXT.TIME, 0, [100000n]);
  call(w, 0, EXT.IPI, 0, [3n, 0n]);
  call(w, 1, EXT.HSM, 3, [0x80000000n, BigInt(RAM_BASE), 7n]);
  call(w, 0, EXT.DBCN, 0, [16n, BigInt(RAM_BASE + 0x100), 0n]);
  call(w, 2, EXT.STA, 0, [BigInt(RAM_BASE + 0x2000), 0n, 0n]);
  w.int(0, 7, 6).u64(123456n);
  call(w, 0, 1, 0, [0x41n]);
  return [w.finish()];
}

export const sbiTarget: Target<SbiRig> = {
  name: "sbi",
  about: "the built-in SBI: any extension, function and arguments from four harts, legacy calls, steal-time records",
  maxLength: 4096,
  setup: () => ({ core: new Core({ module: loadCoreModule(), ramSize: RIG_RAM, harts: HARTS }), input: null }),
  run: (data, rig) => runSbi(rig, data),
  rejects: rejectsNothing,
  seeds,
};
