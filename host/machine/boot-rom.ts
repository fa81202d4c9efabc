// The reset vector in the boot ROM, as QEMU's virt board has it: every hart starts at
// BOOT_ROM_BASE with a0 = mhartid, a1 = the DTB address, a2 = a fw_dynamic_info block, and jumps
// to the first stage (firmware, or the kernel with --bios none). OpenSBI's fw_jump and
// fw_dynamic both accept this hand-off.
import type { Core } from "../core/core";
import { BOOT_ROM_BASE } from "./memory-map";

const FW_DYNAMIC_MAGIC = 0x4942534f; // "OSBI"
const FW_DYNAMIC_VERSION = 2;
const MODE_S = 1;

// The six instructions of the reset vector (RV64I encodings):
//   auipc t0, 0          t0 = ROM base
//   addi  a2, t0, 40     a2 = &fw_dynamic_info
//   csrr  a0, mhartid
//   ld    a1, 32(t0)     a1 = DTB address
//   ld    t0, 24(t0)     t0 = entry point
//   jr    t0
const RESET_VECTOR = [0x00000297, 0x02828613, 0xf1402573, 0x0202b583, 0x0182b283, 0x00028067];

export interface BootRomInfo {
  /** Where the first stage starts. */
  entry: number;
  /** Guest-physical address of the DTB. */
  dtb: number;
  /** Where the firmware should go next (fw_dynamic), usually the kernel. */
  nextAddr: number;
}

export function writeBootRom(core: Core, info: BootRomInfo): void {
  const rom = core.phys(BOOT_ROM_BASE, 88);
  if (!rom) throw new Error("boot ROM is not mapped");
  const v = new DataView(rom.buffer, rom.byteOffset, rom.byteLength);
  RESET_VECTOR.forEach((insn, i) => v.setUint32(i * 4, insn, true));
  v.setBigUint64(24, BigInt(info.entry), true);
  v.setBigUint64(32, BigInt(info.dtb), true);
  // struct fw_dynamic_info { magic, version, next_addr, next_mode, options, boot_hart }
  v.setBigUint64(40, BigInt(FW_DYNAMIC_MAGIC), true);
  v.setBigUint64(48, BigInt(FW_DYNAMIC_VERSION), true);
  v.setBigUint64(56, BigInt(info.nextAddr), true);
  v.setBigUint64(64, BigInt(MODE_S), true);
  v.setBigUint64(72, 0n, true);
  v.setBigUint64(80, 0n, true);
}
