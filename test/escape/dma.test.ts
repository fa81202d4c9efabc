// Escape suite: DMA through a real device. The attacker drives its virtio-blk disk (virtio-mmio,
// version 2) from M-mode with requests whose buffers point at the boot ROM, the device's own
// registers, other devices' windows (the UART, the CLINT, the PLIC), across RAM's end, beyond it,
// at aliases of RAM above 4 GiB and 2^53, at the top of the 64-bit space, with lengths that
// overflow, and with rings outside RAM; some ask the device to write guest memory (reads from the
// disk), some to read it (writes to the disk, which would carry what lies beside RAM out). The
// virtio spec lets a device answer a request it cannot do with an error status or by setting
// DEVICE_NEEDS_RESET (with a configuration-change notification); the attacker reports which, per
// request, and after a reset the device serves a good request again. Nothing outside the
// attacker's RAM may change: the victim's pattern, the boot ROM (read back by the attacker), the
// disk (read back by the test).
import { describe, test, expect } from "vitest";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { assemble } from "../../host/util/riscv-asm";
import { besideVictim, virtioNegotiate, printResults, findVirtio, reportEnd, romChecksum, RAM, RAM_END, UART, CLINT, PLIC, ROM, VIRTIO } from "./rig";

// Where the attacker keeps its queue and its request.
const DESC = RAM + 0x10000;
const AVAIL = RAM + 0x10100;
const USED = RAM + 0x10200;
const HEADER = RAM + 0x10400;
const STATUS = RAM + 0x10500;
const DATA = RAM + 0x11000;
const RESULTS = RAM + 0x20000;
const SIGNATURE = "WVBLK-OK"; // the disk's first bytes
const SIGNATURE_WORD = new DataView(new TextEncoder().encode(SIGNATURE).buffer).getBigUint64(0, true);

const NEXT = 1, WRITE = 2; // descriptor flags: device-writable
const IN = 0, OUT = 1; // request types: read from the disk (the device writes memory), write to it (the device reads memory)

/** A descriptor: its buffer's address ("device": the blk device's own registers), length, flags. */
interface Desc { addr: number | bigint | "device"; len: number; flags: number }
interface Request {
  name: string;
  type?: number;
  sector?: bigint;
  /** The chain from descriptor 0, each linked to the next. */
  chain: Desc[];
  /** Ring addresses other than the attacker's own. */
  rings?: { desc?: number; avail?: number; used?: number };
  /** What the attacker reports: "N" DEVICE_NEEDS_RESET with a configuration-change notification
   * ("n" without it), a digit the request's status (0 OK, 1 IOERR), "?" no answer at all; then,
   * for a good read, "=" if the data is the disk's. */
  expect: string;
}

const header: Desc = { addr: HEADER, len: 16, flags: 0 };
const status: Desc = { addr: STATUS, len: 1, flags: WRITE };
/** A read of 512 bytes into `addr`. */
const readInto = (addr: Desc["addr"], len = 512): Desc[] => [header, { addr, len, flags: WRITE }, status];
/** A write to the disk of the bytes at `addr`. */
const writeFrom = (addr: Desc["addr"]): Desc[] => [header, { addr, len: 512, flags: 0 }, status];

const REQUESTS: Request[] = [
  { name: "a good read", chain: readInto(DATA), expect: "0=" },
  { name: "into the boot ROM", chain: readInto(ROM), expect: "N" },
  { name: "into its own registers", chain: readInto("device"), expect: "N" },
  { name: "into the UART", chain: readInto(UART), expect: "N" },
  { name: "into the CLINT", chain: readInto(CLINT), expect: "N" },
  { name: "into the PLIC", chain: readInto(PLIC), expect: "N" },
  { name: "into RAM's last 512 bytes", chain: readInto(RAM_END - 512), expect: "0" },
  { name: "across RAM's end", chain: readInto(RAM_END - 256), expect: "N" },
  { name: "beyond RAM's end", chain: readInto(RAM_END), expect: "N" },
  { name: "at RAM + 4 GiB", chain: readInto(BigInt(RAM) + (1n << 32n)), expect: "N" },
  { name: "at RAM + 2^53", chain: readInto(BigInt(RAM) + (1n << 53n)), expect: "N" },
  { name: "wrapping around the top of the 64-bit space", chain: readInto((1n << 64n) - 256n), expect: "N" },
  { name: "a length of 4 GiB - 1", chain: readInto(DATA, 0xffffffff), expect: "N" },
  { name: "two lengths adding up to 4 GiB", chain: [header, { addr: DATA, len: 0x80000000, flags: WRITE }, { addr: DATA, len: 0x80000000, flags: WRITE }, status], expect: "N" },
  { name: "the status byte in the boot ROM", chain: [header, { addr: DATA, len: 512, flags: WRITE }, { addr: ROM, len: 1, flags: WRITE }], expect: "N" },
  { name: "the header in the UART", chain: [{ addr: UART, len: 16, flags: 0 }, { addr: DATA, len: 512, flags: WRITE }, status], expect: "N" },
  { name: "a write from beyond RAM's end", type: OUT, sector: 1n, chain: writeFrom(RAM_END), expect: "N" },
  { name: "a write from across RAM's end", type: OUT, sector: 1n, chain: writeFrom(RAM_END - 256), expect: "N" },
  { name: "a write from the boot ROM", type: OUT, sector: 1n, chain: writeFrom(ROM), expect: "N" },
  { name: "a write from the PLIC", type: OUT, sector: 1n, chain: writeFrom(PLIC), expect: "N" },
  { name: "a sector beyond the disk", sector: 1n << 40n, chain: readInto(DATA), expect: "1" },
  { name: "the used ring in the boot ROM", rings: { used: ROM }, chain: readInto(DATA), expect: "N" },
  { name: "the descriptor table across RAM's end", rings: { desc: RAM_END - 64 }, chain: readInto(DATA), expect: "N" },
  { name: "the available ring in the UART", rings: { avail: UART }, chain: readInto(DATA), expect: "N" },
  { name: "a good read after all that", chain: readInto(DATA), expect: "0=" },
];

/** Put `value` in t1 ("device": the blk device's base, in s0). */
const load = (value: Desc["addr"]): string => value === "device" ? "    mv t1, s0" : `    li t1, ${BigInt.asUintN(64, BigInt(value))}`;

function request(r: Request): string {
  const rings = { desc: DESC, avail: AVAIL, used: USED, ...r.rings };
  const lines = [
    `  # ${r.name}`,
    `    li a1, ${rings.desc}`,
    `    li a2, ${rings.avail}`,
    `    li a3, ${rings.used}`,
    "    jal ra, init",
    `    li t0, ${STATUS}`,
    "    li t1, 0xff",
    "    sb t1, 0(t0)",
    `    li t0, ${DATA}`,
    "    sd zero, 0(t0)",
    `    li t0, ${HEADER}`,
    `    li t1, ${r.type ?? IN}`,
    "    sd t1, 0(t0)",
    `    li t1, ${r.sector ?? 0n}`,
    "    sd t1, 8(t0)",
  ];
  r.chain.forEach((d, i) => {
    const last = i === r.chain.length - 1;
    lines.push(
      `    li t0, ${DESC + 16 * i}`,
      load(d.addr), "    sd t1, 0(t0)",
      `    li t1, ${d.len}`, "    sw t1, 8(t0)",
      `    li t1, ${d.flags | (last ? 0 : NEXT)}`, "    sh t1, 12(t0)",
      `    li t1, ${last ? 0 : i + 1}`, "    sh t1, 14(t0)",
    );
  });
  lines.push("    jal ra, post", "    jal ra, check");
  if (r.expect.endsWith("=")) lines.push("    jal ra, compare");
  return lines.join("\n");
}

const ATTACKER = assemble(`
    la t0, trap
    csrw mtvec, t0
${romChecksum("s9")}
    li s1, ${RESULTS}
    # The blk device: the slot whose magic, version and device ID say so.
${findVirtio(2, "found")}
    li t2, 63           # '?': no disk
    sb t2, 0(s1)
    addi s1, s1, 1
    j report
  found:
${REQUESTS.map(request).join("\n")}
  report:
${printResults(RESULTS, "s1")}
${reportEnd("s9")}

  # No access here should trap: if one does, say so ("T") and report.
  trap:
    li t2, 84
    sb t2, 0(s1)
    addi s1, s1, 1
    j report

  # Reset the device and bring it up with one queue of 8 at a1 (descriptors), a2 (available
  # ring), a3 (used ring), both rings empty, as a driver does (VIRTIO_F_VERSION_1 only).
  init:
${virtioNegotiate}
    sw a1, 0x80(s0)
    srli t0, a1, 32
    sw t0, 0x84(s0)
    sw a2, 0x90(s0)
    srli t0, a2, 32
    sw t0, 0x94(s0)
    sw a3, 0xa0(s0)
    srli t0, a3, 32
    sw t0, 0xa4(s0)
    li t0, ${AVAIL}
    sd zero, 0(t0)
    li t0, ${USED}
    sd zero, 0(t0)
    li t0, 1
    sw t0, 0x44(s0)     # QueueReady
    li t0, 15
    sw t0, 0x70(s0)     # DRIVER_OK
    li s2, 0
    ret

  # Make the chain at descriptor 0 available and notify.
  post:
    li t0, ${AVAIL}
    andi t1, s2, 7
    slli t1, t1, 1
    add t1, t1, t0
    sh zero, 4(t1)
    fence w, w
    addi s2, s2, 1
    sh s2, 2(t0)
    fence w, w
    sw zero, 0x50(s0)
    ret

  # What the device made of it.
  check:
    lw t0, 0x70(s0)
    lw t1, 0x60(s0)
    sw t1, 0x64(s0)     # acknowledge what it signalled
    andi t0, t0, 64     # DEVICE_NEEDS_RESET
    beqz t0, 1f
    andi t1, t1, 2      # with a configuration change
    li t2, 78           # 'N'
    bnez t1, 3f
    li t2, 110          # 'n'
    j 3f
  1:
    li t0, ${USED}
    lhu t1, 2(t0)
    li t2, 63           # '?'
    bne t1, s2, 3f
    li t0, ${STATUS}
    lbu t2, 0(t0)
    addi t2, t2, 48
  3:
    sb t2, 0(s1)
    addi s1, s1, 1
    ret

  # Whether a read brought the disk's first bytes.
  compare:
    li t0, ${DATA}
    ld t0, 0(t0)
    li t1, ${SIGNATURE_WORD}
    li t2, 61           # '='
    beq t0, t1, 1f
    li t2, 33           # '!'
  1:
    sb t2, 0(s1)
    addi s1, s1, 1
    ret
`, { origin: RAM }).bytes;

describe("DMA through a real device", () => {
  test("virtio-blk refuses every buffer and ring outside the attacker's RAM, and nothing outside it changes", async () => {
    const disk = new Uint8Array(64 << 10);
    disk.set(new TextEncoder().encode(SIGNATURE));
    await besideVictim({ program: ATTACKER, definition: (dir) => {
      writeFileSync(join(dir, "disk.img"), disk);
      return { drives: [`file=${join(dir, "disk.img")},format=raw`] };
    } }, async (scene) => {
      await scene.startVictim();
      const [report, rom] = (await scene.attackerSays(/\n/)).trim().split("/");
      let at = 0;
      const got = Object.fromEntries(REQUESTS.map((r) => [r.name, report!.slice(at, at += r.expect.length)]));
      expect(got).toEqual(Object.fromEntries(REQUESTS.map((r) => [r.name, r.expect])));
      expect(report!.slice(at)).toBe("");
      expect(rom).toBe("r");
      // No write reached the disk: every one came from outside RAM.
      expect(readFileSync(join(scene.dir, "disk.img"))).toEqual(Buffer.from(disk));
      await scene.victimFinishes();
      await scene.attackerStillRuns();
    });
  }, 60_000);
});
