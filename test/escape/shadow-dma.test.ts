// Escape suite: DMA onto a live page table and onto running code, under shadow paging. The
// attacker runs in S-mode under Sv39 with shadow paging (where the host keeps shadow tables
// derived from the guest's, and a decoded-code cache of its pages) and has its virtio-blk disk
// read sectors, from M-mode (an ecall), onto its own leaf table, its level-1 table and its root
// while they map a page it has just loaded from and stored to (so its shadows are there, the
// leaf writable), and onto code it has run (and, under the translation tier, had translated):
// a function it calls, and the page of the M-mode code that makes the request, right after the
// request. What hardware gives once the DMA is complete (and the guest ran sfence.vma, or
// fence.i for code): the new mapping (another page, a page fault where the new PTE is invalid,
// an access fault where it points beyond RAM) and the new code; no shadow entry left from the
// old tables may let a load or a store reach the page the new ones no longer map, and no
// decoded or translated instruction may outlive the bytes it came from.
import { describe, test, expect } from "vitest";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { assemble } from "../../host/util/riscv-asm";
import { besideVictim, virtioNegotiate, toSupervisor, printResults, findVirtio, reportEnd, romChecksum, RAM, RAM_END, UART, VIRTIO } from "./rig";

// PTE bits.
const V = 1n, R = 2n, W = 4n, X = 8n, A = 64n, D = 128n;
const leaf = (pa: number): bigint => ((BigInt(pa) >> 12n) << 10n) | V | R | W | X | A | D;
const pointer = (pa: number): bigint => ((BigInt(pa) >> 12n) << 10n) | V;

// The attacker's tables: the root maps its RAM as a gigapage (where its code runs) and VA's
// gigabyte through a level-1 table and a leaf table; other tables the sectors switch to.
const ROOT = RAM + 0x20000;
const L1 = RAM + 0x21000;
const L0 = RAM + 0x22000;
const L0_C = RAM + 0x23000; // maps VA to PAGE_C
const L1_D = RAM + 0x24000; // through L0_D, maps VA to PAGE_D
const L0_D = RAM + 0x25000;
const VA = 0x4000_0000;
const PAGES = { A: RAM + 0x30000, B: RAM + 0x31000, C: RAM + 0x32000, D: RAM + 0x33000 } as const;
type Page = keyof typeof PAGES;
/** Each page's pattern, at offset 0x100 (stores go to 0x200). */
const pattern = (p: Page): bigint => 0x1111_1111_1111_1111n * BigInt(0xa + "ABCD".indexOf(p));
const FUNC = RAM + 0x40000; // a function the attacker calls: li a0, 1; ret
const RESULTS = RAM + 0x80000;
// The virtio-blk queue and request (as test/escape/dma.test.ts's).
const DESC = RAM + 0x90000;
const AVAIL = RAM + 0x90100;
const USED = RAM + 0x90200;
const HEADER = RAM + 0x90400;
const STATUS = RAM + 0x90500;

// The disk: sector by sector, what lands where.
/** The index of `va` in its table at `level`. */
const vpn = (va: number, level: number): number => Math.floor(va / 2 ** (12 + 9 * level)) & 0x1ff;
const table = (entries: [number, bigint][]): Uint8Array => {
  const t = new BigUint64Array(64); // one sector: entries 0..63
  for (const [i, pte] of entries) t[i] = pte;
  return new Uint8Array(t.buffer);
};
const code = (source: string): Uint8Array => assemble(source, { origin: 0 }).bytes;
const SECTORS = {
  leafToB: table([[vpn(VA, 0), leaf(PAGES.B)]]),
  leafInvalid: table([]),
  leafBeyondRam: table([[vpn(VA, 0), leaf(RAM_END)]]),
  leafToA: table([[vpn(VA, 0), leaf(PAGES.A)]]),
  level1ToC: table([[vpn(VA, 1), pointer(L0_C)]]),
  // The root's first sector keeps its entry for the attacker's own gigapage (index 2).
  rootToD: table([[vpn(VA, 2), pointer(L1_D)], [vpn(RAM, 2), leaf(RAM)]]),
  funcReturns2: code("li a0, 2\nret"),
  patchedReturns3: code("li a0, 3\nret"),
} as const;
type Sector = keyof typeof SECTORS;
const SECTOR_NAMES = Object.keys(SECTORS) as Sector[];
const sectorOf = (s: Sector): number => 1 + SECTOR_NAMES.indexOf(s);

// The attacker's S-mode script: each step reports a character.
type Step = { code: string; expect: string };
/** A DMA of sector `s` to `at`: the request's status ("0", OK). */
const dma = (s: Sector, at: number): Step => ({ code: `    li a0, ${sectorOf(s)}\n    li a1, ${at}\n    li a7, 0\n    ecall`, expect: "0" });
const sfence: Step = { code: "    sfence.vma zero, zero", expect: "" };
const fenceI: Step = { code: "    fence.i", expect: "" };
/** A load through VA: the page whose pattern it read (or "!"), or the trap's cause in hex. */
const loadVa = (expect: Page | string): Step => ({ code: `    li s1, ${VA + 0x100}\n    li s7, 0\n    ld s3, 0(s1)\n    jal ra, which`, expect });
/** A store of `value` through VA: "." done, or the trap's cause in hex. */
const storeVa = (value: number, expect = "."): Step => ({ code: `    li s1, ${VA + 0x200}\n    li s7, 0\n    li s2, ${value}\n    sd s2, 0(s1)\n    jal ra, done`, expect });
/** Whether page `p` holds `value` where the stores go ("=", else "!"), read through the attacker's own gigapage. */
const holds = (p: Page, value: number): Step => ({ code: `    li s1, ${PAGES[p] + 0x200}\n    ld s3, 0(s1)\n    li s2, ${value}\n    jal ra, same`, expect: "=" });
/** A call of FUNC: what it returned, as a digit. */
const callFunc: Step = { code: `    li s1, ${FUNC}\n    jalr ra, 0(s1)\n    jal ra, digit`, expect: "" };
const ran = (n: number): Step => ({ ...callFunc, expect: String(n) });
/** FUNC called often enough to be decoded (and, under the translation tier, translated) and hot. */
const warm: Step = { code: `    li s4, 20000\n  1:\n    li s1, ${FUNC}\n    jalr ra, 0(s1)\n    addi s4, s4, -1\n    bnez s4, 1b`, expect: "" };

const STEPS: { name: string; steps: Step[] }[] = [
  { name: "VA maps page A; a store makes its shadow leaf writable", steps: [loadVa("A"), storeVa(1)] },
  { name: "the leaf table rewritten to map page B", steps: [dma("leafToB", L0), sfence, loadVa("B"), storeVa(2), holds("A", 1), holds("B", 2)] },
  { name: "the leaf table rewritten with VA invalid", steps: [dma("leafInvalid", L0), sfence, loadVa("d"), storeVa(3, "f"), holds("B", 2)] },
  { name: "the leaf table rewritten to map beyond RAM's end", steps: [dma("leafBeyondRam", L0), sfence, loadVa("5"), storeVa(3, "7"), holds("B", 2)] },
  { name: "the leaf table rewritten to map page A again", steps: [dma("leafToA", L0), sfence, loadVa("A"), storeVa(4), holds("A", 4), holds("B", 2)] },
  { name: "the level-1 table rewritten to lead to page C", steps: [dma("level1ToC", L1), sfence, loadVa("C"), storeVa(5), holds("A", 4), holds("C", 5)] },
  { name: "the root rewritten to lead to page D", steps: [dma("rootToD", ROOT), sfence, loadVa("D"), storeVa(6), holds("C", 5), holds("D", 6)] },
  { name: "a function it ran, rewritten", steps: [warm, ran(1), dma("funcReturns2", FUNC), fenceI, ran(2)] },
  // M-mode: the page making the request is the page rewritten (another 512 bytes of it).
  { name: "the code making the request, rewritten", steps: [{ code: "    li a7, 1\n    ecall", expect: "103" }] },
];

function attacker(): Uint8Array {
  const source = `
    la t0, mtrap
    csrw mtvec, t0
${romChecksum("s9")}
    li s6, ${RESULTS}
    # The blk device: the slot whose magic, version and device ID say so.
${findVirtio(2, "found")}
    j report
  found:
    jal ra, init
${toSupervisor((8n << 60n) | (BigInt(ROOT) >> 12n), "script")}
    mret

  # S-mode: the script, then an ecall that ends it.
  script:
${STEPS.flatMap((s) => [`  # ${s.name}`, ...s.steps.map((st) => st.code)]).join("\n")}
    li a7, 2
    ecall

  # Report the page the load at VA read ("!": none of them), or its trap's cause in hex.
  which:
    bnez s7, cause
${(Object.keys(PAGES) as Page[]).map((p) => `    li t0, ${pattern(p)}\n    li a1, ${p.charCodeAt(0)}\n    beq s3, t0, put`).join("\n")}
    li a1, 33
    j put
  # "." or the trap's cause in hex.
  done:
    li a1, 46
    beqz s7, put
  cause:
    addi a1, s7, -1
    li a2, 10
    blt a1, a2, 1f
    addi a1, a1, 39
  1:
    addi a1, a1, 48
    j put
  # "=" if s3 is s2, else "!".
  same:
    li a1, 61
    beq s2, s3, put
    li a1, 33
    j put
  # a0 as a digit.
  digit:
    addi a1, a0, 48
  put:
    sb a1, 0(s6)
    addi s6, s6, 1
    ret

  # M-mode. An S-mode access that traps notes its cause (in s7) and goes on after it; an ecall
  # asks for a DMA (a7 = 0: sector a0 to a1), for the self-rewriting request (1), or ends the
  # script (2).
  mtrap:
    csrr t3, mcause
    li t4, 9
    beq t3, t4, 1f
    addi s7, t3, 1
    csrr t4, mepc
    addi t4, t4, 4
    csrw mepc, t4
    mret
  1:
    csrr t4, mepc
    addi t4, t4, 4
    csrw mepc, t4
    li t4, 2
    beq a7, t4, report
    mv s8, ra
    bnez a7, 2f
    jal ra, read
    addi a1, a0, 48
    jal ra, put
    mv ra, s8
    mret
  2:
    jal ra, rewrite_self
    mv ra, s8
    mret

  # Read sector a0 into a1 (512 bytes); a0 its status (0 OK, 1 IOERR; 9: no answer, or the
  # device needs a reset).
  read:
    li t0, ${STATUS}
    li t1, 0xff
    sb t1, 0(t0)
    li t0, ${HEADER}
    sd zero, 0(t0)      # VIRTIO_BLK_T_IN
    sd a0, 8(t0)
    li t0, ${DESC + 16}
    sd a1, 0(t0)
    mv s5, ra
    jal ra, post
    mv ra, s5
    j status

  # Make the chain at descriptor 0 available and notify.
  post:
    li t0, ${AVAIL}
    andi t1, s10, 7
    slli t1, t1, 1
    add t1, t1, t0
    sh zero, 4(t1)
    fence w, w
    addi s10, s10, 1
    sh s10, 2(t0)
    fence w, w
    sw zero, 0x50(s0)
    ret

  # What the device made of the request (in a0).
  status:
    li a0, 9
    lw t0, 0x70(s0)
    andi t0, t0, 64     # DEVICE_NEEDS_RESET
    bnez t0, 1f
    li t0, ${USED}
    lhu t1, 2(t0)
    bne t1, s10, 1f
    li t0, ${STATUS}
    lbu a0, 0(t0)
  1:
    ret

  # Bring the device up with one queue of 8, its chain (header, 512 bytes device-writable,
  # status) at descriptor 0, as a driver does (VIRTIO_F_VERSION_1 only).
  init:
${virtioNegotiate}
    li t0, ${DESC}
    sw t0, 0x80(s0)
    sw zero, 0x84(s0)
    li t0, ${AVAIL}
    sw t0, 0x90(s0)
    sw zero, 0x94(s0)
    li t0, ${USED}
    sw t0, 0xa0(s0)
    sw zero, 0xa4(s0)
    li t0, 1
    sw t0, 0x44(s0)     # QueueReady
    li t0, 15
    sw t0, 0x70(s0)     # DRIVER_OK
    li s10, 0
    li t0, ${DESC}
    li t1, ${HEADER}
    sd t1, 0(t0)
    li t1, 16
    sw t1, 8(t0)
    li t1, 1            # NEXT
    sh t1, 12(t0)
    sh t1, 14(t0)
    li t1, 512
    sw t1, 24(t0)
    li t1, 3            # NEXT | WRITE
    sh t1, 28(t0)
    li t1, 2
    sh t1, 30(t0)
    li t1, ${STATUS}
    sd t1, 32(t0)
    li t1, 1
    sw t1, 40(t0)
    li t1, 2            # WRITE
    sh t1, 44(t0)
    ret

  report:
${printResults(RESULTS, "s6")}
${reportEnd("s9")}

  # The request that rewrites the page it runs in: "patched" (in the same page, the next 512
  # bytes) returns 1, is run hot, then the disk brings a version returning 3 over it; reported:
  # 1, the request's status, what "patched" returns after fence.i.
  .balign 4096
  rewrite_self:
    mv s5, ra
    jal ra, patched
    addi a1, a0, 48
    jal ra, put
    li s4, 20000
  1:
    jal ra, patched
    addi s4, s4, -1
    bnez s4, 1b
    li t0, ${STATUS}
    li t1, 0xff
    sb t1, 0(t0)
    li t0, ${HEADER}
    sd zero, 0(t0)
    li t1, ${sectorOf("patchedReturns3")}
    sd t1, 8(t0)
    li t0, ${DESC + 16}
    la t1, patched
    sd t1, 0(t0)
    li t0, ${AVAIL}
    andi t1, s10, 7
    slli t1, t1, 1
    add t1, t1, t0
    sh zero, 4(t1)
    fence w, w
    addi s10, s10, 1
    sh s10, 2(t0)
    fence w, w
    sw zero, 0x50(s0)   # the request: the bytes from "patched" on change here
    fence.i
    jal ra, status
    addi a1, a0, 48
    jal ra, put
    jal ra, patched
    addi a1, a0, 48
    jal ra, put
    mv ra, s5
    ret
  .balign 512
  patched:
    li a0, 1
    ret
  .balign 512
  rewrite_self_end:
`;
  const bytes = assemble(source, { origin: RAM }).bytes;
  if (bytes.length > ROOT - RAM) throw new Error(`the attacker's code (${bytes.length} bytes) runs into its tables`);
  const image = new Uint8Array(FUNC - RAM + 0x1000);
  const view = new DataView(image.buffer);
  image.set(bytes);
  const setEntries = (pa: number, entries: [number, bigint][]) => { for (const [i, pte] of entries) view.setBigUint64(pa - RAM + 8 * i, pte, true); };
  setEntries(ROOT, [[vpn(VA, 2), pointer(L1)], [vpn(RAM, 2), leaf(RAM)]]);
  setEntries(L1, [[vpn(VA, 1), pointer(L0)]]);
  setEntries(L0, [[vpn(VA, 0), leaf(PAGES.A)]]);
  setEntries(L0_C, [[vpn(VA, 0), leaf(PAGES.C)]]);
  setEntries(L1_D, [[vpn(VA, 1), pointer(L0_D)]]);
  setEntries(L0_D, [[vpn(VA, 0), leaf(PAGES.D)]]);
  for (const p of Object.keys(PAGES) as Page[]) view.setBigUint64(PAGES[p] - RAM + 0x100, pattern(p), true);
  image.set(code("li a0, 1\nret"), FUNC - RAM);
  return image;
}

describe("DMA onto a live page table and onto running code, under shadow paging", () => {
  const program = attacker();
  const disk = new Uint8Array(512 * (1 + SECTOR_NAMES.length));
  for (const s of SECTOR_NAMES) disk.set(SECTORS[s], 512 * sectorOf(s));
  for (const jit of ["off", "all"] as const) {
    test(`the guest sees the new tables and the new code at once (translation tier ${jit})`, async () => {
      await besideVictim({ program, definition: (dir) => {
        writeFileSync(join(dir, "disk.img"), disk);
        return { paging: "shadow", jit, drives: [`file=${join(dir, "disk.img")},format=raw`] };
      } }, async (scene) => {
        await scene.startVictim();
        const [report, rom] = (await scene.attackerSays(/\n/)).trim().split("/");
        let at = 0;
        const got = Object.fromEntries(STEPS.map((s) => {
          const n = s.steps.reduce((k, st) => k + st.expect.length, 0);
          return [s.name, report!.slice(at, at += n)];
        }));
        expect(got).toEqual(Object.fromEntries(STEPS.map((s) => [s.name, s.steps.map((st) => st.expect).join("")])));
        expect(report!.slice(at)).toBe("");
        expect(rom).toBe("r");
        // Shadow paging was in effect and the DMA dropped shadowed tables; the tier translated.
        const stats = await scene.hv.machineStats("attacker");
        expect(stats.paging.mode).toBe("shadow");
        expect(stats.paging.shadowFaults).toBeGreaterThan(0);
        expect(stats.paging.unshadowed).toBeGreaterThan(0);
        if (jit === "all") expect(stats.jit!.retired).toBeGreaterThan(0);
        await scene.victimFinishes();
        await scene.attackerStillRuns();
      });
    }, 60_000);
  }
});
