// Escape suite: page tables that point anywhere. The attacker enters S-mode under Sv39 and then
// Sv48 tables whose entries, leaf and non-leaf, point at device windows, the boot ROM, holes,
// RAM's end and beyond, aliases of RAM above 4 GiB, 2^41 and 2^53, the top of the 56-bit physical
// space, their own table (a loop, and a writable mapping the attacker rewrites its tables
// through), misaligned superpages, and PTEs with reserved bits, N, PBMT, W without R, U, or A/D
// on a non-leaf. Through each it stores, loads, runs an AMO and jumps; then, from M-mode with
// MPRV, it stores, loads and runs an AMO under roots (satp) in the boot ROM, the UART, beyond RAM
// and at the top of the physical space. Its M-mode handler notes the cause of each trap and the
// attacker reports one character per access. What hardware
// gives (privileged spec, Sv39/Sv48 and PMAs): a page fault where the walk finds an invalid PTE,
// an access fault where the physical address has nothing (or a device refuses the access), the
// device's answer where one is. It runs under both of the host's memory virtualization modes
// (shadow paging is where a guest PTE could reach host memory), beside the counting victim, and
// the boot ROM must read back unchanged (the walker's A/D updates must not write it).
import { describe, test, expect } from "vitest";
import { assemble } from "../../host/util/riscv-asm";
import { besideVictim, toSupervisor, reportEnd, romChecksum, RAM, RAM_END, UART, CLINT, ROM } from "./rig";

// PTE bits.
const V = 1n, R = 2n, W = 4n, X = 8n, U = 16n, A = 64n, D = 128n;
const RWX = V | R | W | X | A | D;
const RESERVED = 1n << 54n;
const PBMT_NC = 1n << 61n;
const PBMT_IO = 1n << 62n;
const NAPOT = 1n << 63n;
const leaf = (pa: bigint | number, bits = RWX): bigint => ((BigInt(pa) >> 12n) << 10n) | bits;
const pointer = (pa: bigint | number, bits = V): bigint => ((BigInt(pa) >> 12n) << 10n) | bits;

// Where things are in the attacker's RAM: its code, two data pages, its tables, its report.
const DATA1 = RAM + 0x10000;
const DATA2 = RAM + 0x11000;
const TABLES = { sv39: RAM + 0x20000, sv48: RAM + 0x40000 };
const TABLE_BYTES = 0x20000;
const RESULTS = RAM + 0x100000;
const RET = 0x00008067; // jalr x0, 0(ra): a jump that lands here comes back
const PATTERN1 = 0x1111_2222_3333_4444n; // at offset 0x100 of DATA1
const PATTERN2 = 0x5555_6666_7777_8888n; // at offset 0x100 of DATA2
const HOLE = 0x4000000; // between the CLINT and the PLIC: nothing there
const ROM_WORD0 = 0x02828613_00000297n; // the reset vector's first two instructions
const LSR_IDLE = 0x60n; // the UART's line status with nothing received: THR and transmitter empty

type Mode = "sv39" | "sv48";
const satp = (mode: Mode, root: number | bigint): bigint => (BigInt(mode === "sv39" ? 8 : 9) << 60n) | (BigInt(root) >> 12n);

/** A guest's page tables as it will find them in its RAM, made in the image at `base`. */
class PageTables {
  readonly tables = new Map<number, BigUint64Array>();
  readonly root: number;
  constructor(readonly levels: number, private next: number) {
    this.root = this.table();
  }
  /** A new, empty table page. */
  table(): number {
    const pa = this.next;
    this.next += 4096;
    this.tables.set(pa, new BigUint64Array(512));
    return pa;
  }
  /** The table at `level` that maps `va`, made (with the tables above it) if missing. */
  tableFor(va: bigint, level: number): number {
    let t = this.root;
    for (let l = this.levels - 1; l > level; l--) {
      const entries = this.tables.get(t)!;
      const i = index(va, l);
      if (entries[i] === 0n) entries[i] = pointer(this.table());
      t = Number((entries[i]! >> 10n) << 12n);
      if (!this.tables.has(t)) throw new Error(`0x${va.toString(16)}: the way to level ${level} leaves the tables`);
    }
    return t;
  }
  set(va: bigint, level: number, pte: bigint): void {
    this.tables.get(this.tableFor(va, level))![index(va, level)] = pte;
  }
}
const index = (va: bigint, level: number): number => Number((va >> BigInt(12 + 9 * level)) & 0x1ffn);

// One access through a case's mapping, at an offset from its virtual address.
type Op =
  | { kind: "store"; at: bigint; width: 1 | 8; value: bigint }
  | { kind: "load"; at: bigint; width: 1 | 8; expect?: bigint }
  | { kind: "amo"; at: bigint; width: 4 | 8 }
  | { kind: "fetch"; at: bigint }
  | { kind: "sfence" };

/**
 * A store, a load (of `expect`, if given), an AMO (naturally aligned for a byte: a word AMO on
 * its word) and a jump to `fetchAt`.
 */
function accesses(at: number, width: 1 | 8, value: bigint, expect?: bigint, fetchAt = at): Op[] {
  const b = BigInt(at);
  return [
    { kind: "store", at: b, width, value },
    { kind: "load", at: b, width, expect },
    { kind: "amo", at: width === 1 ? b & ~3n : b, width: width === 1 ? 4 : 8 },
    { kind: "fetch", at: BigInt(fetchAt) },
  ];
}
const anything = (at = 0): Op[] => accesses(at, 8, 0x12345678n);

interface Case {
  name: string;
  modes?: Mode[];
  /** Where its mapping is: a 4 KiB page pair, a 2 MiB, 1 GiB or (Sv48) 512 GiB region of its own, or a given address. */
  region: "page" | "mega" | "giga" | "tera" | { va: (mode: Mode) => bigint };
  /** Its entries, in the tables of `pt`, for its address `va`. */
  map?: (pt: PageTables, va: bigint) => void;
  ops: Op[] | ((va: bigint) => Op[]);
  /** The attacker's report, a character per access: "." done (or "!" if a load read something else), else the trap's cause in hex. */
  expect: string;
}

// The causes: 1 fetch access fault, 2 illegal instruction, 5 load access fault, 6 store/AMO
// misaligned, 7 store/AMO access fault, c fetch page fault, d load page fault, f store/AMO page fault.
const NOTHING_THERE = "7571";
const PAGE_FAULTS = "fdfc";
const CASES: Case[] = [
  { name: "a page of its RAM", region: "page", map: (pt, va) => pt.set(va, 0, leaf(DATA1)),
    ops: accesses(0x100, 8, 0x0123_4567_89ab_cdefn, 0x0123_4567_89ab_cdefn, 0x800), expect: "...." },
  { name: "the UART (its scratch register)", region: "page", map: (pt, va) => pt.set(va, 0, leaf(UART)),
    ops: accesses(7, 1, 0x5an, 0x5an, 0), expect: "..71" },
  { name: "the CLINT (mtimecmp)", region: "page", map: (pt, va) => pt.set(va, 0, leaf(CLINT + 0x4000)),
    ops: accesses(0, 8, 0x7fff_0000_0000_0000n, 0x7fff_0000_0000_0000n), expect: "..71" },
  { name: "the UART, misaligned", region: "page", map: (pt, va) => pt.set(va, 0, leaf(UART)),
    ops: accesses(1, 8, 0x12345678n), expect: "7561" },
  // Stores are refused; a jump past the first two instructions reaches csrr mhartid, illegal in S-mode.
  { name: "the boot ROM", region: "page", map: (pt, va) => pt.set(va, 0, leaf(ROM)),
    ops: accesses(0, 8, 0xdeadn, ROM_WORD0, 8), expect: "7.72" },
  { name: "a hole", region: "page", map: (pt, va) => pt.set(va, 0, leaf(HOLE)), ops: anything(), expect: NOTHING_THERE },
  // RAM's last page and the one after its end, next to each other: the last doubleword works (its
  // top half the start of a 32-bit instruction whose other half is beyond RAM); one straddling
  // the end faults whole, writing nothing (the instruction's first half is still there).
  { name: "RAM's last bytes", region: "page", map: (pt, va) => { pt.set(va, 0, leaf(RAM_END - 0x1000)); pt.set(va + 0x1000n, 0, leaf(RAM_END)); },
    ops: accesses(0xff8, 8, 0x0013_5a5a_5a5a_5a5an, 0x0013_5a5a_5a5a_5a5an, 0xffe), expect: "...1" },
  { name: "RAM's end, straddled", region: "page", map: (pt, va) => { pt.set(va, 0, leaf(RAM_END - 0x1000)); pt.set(va + 0x1000n, 0, leaf(RAM_END)); },
    ops: accesses(0xffc, 8, 0n, undefined, 0xffe), expect: "7561" },
  { name: "beyond RAM's end", region: "page", map: (pt, va) => pt.set(va, 0, leaf(RAM_END)), ops: anything(), expect: NOTHING_THERE },
  { name: "RAM + 4 GiB", region: "page", map: (pt, va) => pt.set(va, 0, leaf(RAM + 2 ** 32)), ops: anything(), expect: NOTHING_THERE },
  { name: "64 GiB", region: "page", map: (pt, va) => pt.set(va, 0, leaf(2 ** 36)), ops: anything(), expect: NOTHING_THERE },
  { name: "RAM + 2^41 (beyond the P2M's reach)", region: "page", map: (pt, va) => pt.set(va, 0, leaf(BigInt(RAM) + (1n << 41n))), ops: anything(), expect: NOTHING_THERE },
  { name: "RAM + 2^53 (beyond a double's integers)", region: "page", map: (pt, va) => pt.set(va, 0, leaf(BigInt(RAM) + (1n << 53n))), ops: anything(), expect: NOTHING_THERE },
  { name: "the top of the 56-bit space", region: "page", map: (pt, va) => pt.set(va, 0, leaf((1n << 56n) - 4096n)), ops: anything(), expect: NOTHING_THERE },
  { name: "W without R", region: "page", map: (pt, va) => pt.set(va, 0, leaf(DATA1, V | W | A | D)), ops: anything(0x100), expect: PAGE_FAULTS },
  { name: "V clear", region: "page", map: (pt, va) => pt.set(va, 0, leaf(DATA1, RWX & ~V)), ops: anything(0x100), expect: PAGE_FAULTS },
  { name: "a reserved bit", region: "page", map: (pt, va) => pt.set(va, 0, leaf(DATA1) | RESERVED), ops: anything(0x100), expect: PAGE_FAULTS },
  { name: "N (no Svnapot)", region: "page", map: (pt, va) => pt.set(va, 0, leaf(DATA1) | NAPOT), ops: anything(0x100), expect: PAGE_FAULTS },
  { name: "PBMT NC (no Svpbmt)", region: "page", map: (pt, va) => pt.set(va, 0, leaf(DATA1) | PBMT_NC), ops: anything(0x100), expect: PAGE_FAULTS },
  { name: "PBMT IO (no Svpbmt)", region: "page", map: (pt, va) => pt.set(va, 0, leaf(DATA1) | PBMT_IO), ops: anything(0x100), expect: PAGE_FAULTS },
  { name: "read-only", region: "page", map: (pt, va) => pt.set(va, 0, leaf(DATA1, V | R | A | D)),
    ops: accesses(0x100, 8, 0n, 0x0123_4567_89ab_cdefn, 0x800), expect: "f.fc" },
  { name: "execute-only", region: "page", map: (pt, va) => pt.set(va, 0, leaf(DATA1, V | X | A)),
    ops: accesses(0x100, 8, 0n, undefined, 0x800), expect: "fdf." },
  { name: "a user page (S-mode, SUM clear)", region: "page", map: (pt, va) => pt.set(va, 0, leaf(DATA1, RWX | U)), ops: anything(0x100), expect: PAGE_FAULTS },
  // A and D clear: the walker sets them (in the attacker's own table, which is RAM).
  { name: "A and D clear", region: "page", map: (pt, va) => pt.set(va, 0, leaf(DATA2, V | R | W | X)),
    ops: accesses(0x200, 8, 0x99n, 0x99n, 0x800), expect: "...." },
  // Its own leaf table, mapped writable: the attacker rewrites the entry of the page after it,
  // pointing it at the UART, beyond RAM, nowhere, and back at its RAM, with sfence.vma after each.
  { name: "its own table, rewritten through a mapping", region: "page",
    map: (pt, va) => { pt.set(va, 0, leaf(pt.tableFor(va, 0))); pt.set(va + 0x1000n, 0, leaf(DATA2)); },
    ops: (va) => {
      const entry = (pte: bigint): Op[] => [{ kind: "store", at: BigInt(index(va + 0x1000n, 0) * 8), width: 8, value: pte }, { kind: "sfence" }];
      return [
        { kind: "load", at: 0x1100n, width: 8, expect: PATTERN2 },
        ...entry(leaf(UART)), { kind: "load", at: 0x1005n, width: 1, expect: LSR_IDLE },
        ...entry(leaf(RAM_END)), { kind: "load", at: 0x1000n, width: 8 },
        ...entry(0n), { kind: "load", at: 0x1000n, width: 8 },
        ...entry(leaf(DATA2)), { kind: "load", at: 0x1100n, width: 8, expect: PATTERN2 },
      ];
    },
    expect: "....5.d.." },
  // Non-leaf entries whose next table is not in RAM: the walk's read of a PTE faults.
  { name: "a table in the UART", region: "mega", map: (pt, va) => pt.set(va, 1, pointer(UART)), ops: anything(), expect: NOTHING_THERE },
  { name: "a table in a hole", region: "mega", map: (pt, va) => pt.set(va, 1, pointer(HOLE)), ops: anything(), expect: NOTHING_THERE },
  { name: "a table beyond RAM's end", region: "mega", map: (pt, va) => pt.set(va, 1, pointer(RAM_END)), ops: anything(), expect: NOTHING_THERE },
  { name: "a table at 64 GiB", region: "mega", map: (pt, va) => pt.set(va, 1, pointer(2 ** 36)), ops: anything(), expect: NOTHING_THERE },
  { name: "a table at the top of the 56-bit space", region: "mega", map: (pt, va) => pt.set(va, 1, pointer((1n << 56n) - 4096n)), ops: anything(), expect: NOTHING_THERE },
  // The boot ROM read as a table: its first doubleword has reserved bits set; its third is a
  // read-only leaf with A clear, which the walker may not set in ROM (an access fault); its
  // sixth (fw_dynamic_info's magic) a leaf with D clear, for stores, into a hole.
  { name: "a table in the boot ROM", region: "mega", map: (pt, va) => pt.set(va, 1, pointer(ROM)),
    ops: [...anything(0), ...anything(0x2000), ...anything(0x5000)], expect: PAGE_FAULTS + "f5fc" + NOTHING_THERE },
  { name: "a misaligned megapage", region: "mega", map: (pt, va) => pt.set(va, 1, leaf(RAM + 0x1000)), ops: anything(0x100), expect: PAGE_FAULTS },
  // An entry pointing at its own table, and an address whose every lower index names that entry
  // again: the walk goes round until the entry is a pointer at level 0.
  { name: "a level-1 table pointing at itself", region: "mega", map: (pt, va) => pt.set(va, 1, pointer(pt.tableFor(va, 1))),
    ops: (va) => anything(index(va, 1) << 12), expect: PAGE_FAULTS },
  { name: "a non-leaf entry with U", region: "mega", map: (pt, va) => { const t = pt.table(); pt.tables.get(t)![0] = leaf(DATA1); pt.set(va, 1, pointer(t, V | U)); },
    ops: anything(0x100), expect: PAGE_FAULTS },
  { name: "a non-leaf entry with A and D", region: "mega", map: (pt, va) => { const t = pt.table(); pt.tables.get(t)![0] = leaf(DATA1); pt.set(va, 1, pointer(t, V | A | D)); },
    ops: anything(0x100), expect: PAGE_FAULTS },
  { name: "a misaligned gigapage", region: "giga", map: (pt, va) => pt.set(va, 2, leaf(RAM + 0x200000)), ops: anything(0x100), expect: PAGE_FAULTS },
  { name: "a gigapage at 4 GiB", region: "giga", map: (pt, va) => pt.set(va, 2, leaf(2 ** 32)), ops: anything(), expect: NOTHING_THERE },
  { name: "a gigapage at the top of the 56-bit space", region: "giga", map: (pt, va) => pt.set(va, 2, leaf((1n << 56n) - (1n << 30n))), ops: anything(), expect: NOTHING_THERE },
  // The attacker's own code is in a gigapage that maps 1 GiB from RAM's start: past RAM's end it
  // has nothing, and an access straddling the end inside it faults whole.
  { name: "its own gigapage past RAM's end", region: { va: () => BigInt(RAM_END) }, ops: anything(), expect: NOTHING_THERE },
  { name: "its own gigapage across RAM's end", region: { va: () => BigInt(RAM_END) }, ops: accesses(-4, 8, 0n, undefined, -2), expect: "7561" },
  { name: "the root table pointing at itself", region: { va: (mode) => everyIndex(mode, 255n) },
    map: (pt, va) => pt.set(va, pt.levels - 1, pointer(pt.root)), ops: anything(), expect: PAGE_FAULTS },
  { name: "a misaligned terapage", modes: ["sv48"], region: "tera", map: (pt, va) => pt.set(va, 3, leaf(1n << 38n)), ops: anything(), expect: PAGE_FAULTS },
  { name: "a level-3 table in the UART", modes: ["sv48"], region: "tera", map: (pt, va) => pt.set(va, 3, pointer(UART)), ops: anything(), expect: NOTHING_THERE },
  { name: "a non-canonical address", region: { va: (mode) => mode === "sv39" ? 1n << 38n : 1n << 47n }, ops: anything(), expect: PAGE_FAULTS },
];
// Roots that are no table in RAM, used from M-mode through MPRV (loads, stores and AMOs as S-mode
// makes them, fetches not): a store, a load and an AMO at 0x4000_0100 under each, in Sv39 and Sv48.
// In the boot ROM that address's root entry is a doubleword with reserved bits set.
interface Root { name: string; satp: bigint; expect: string }
const ROOTS: Root[] = (["sv39", "sv48"] as const).flatMap((mode) => ([
  ["in the boot ROM", ROM, "fdf"],
  ["in the UART", UART, "757"],
  ["beyond RAM's end", RAM_END, "757"],
  ["at the top of the 56-bit space", (1n << 56n) - 4096n, "757"],
] as const).map(([where, root, expect]) => ({ name: `${mode}: a root ${where}`, satp: satp(mode, root), expect })));
const ROOT_VA = 0x4000_0100n;

/** The address whose index at every level of `mode`'s tables is `i`. */
function everyIndex(mode: Mode, i: bigint): bigint {
  let va = 0n;
  for (let level = 0; level < (mode === "sv39" ? 3 : 4); level++) va |= i << BigInt(12 + 9 * level);
  return va;
}

/** Each case's address in `mode`. */
function addressOf(c: Case, k: number, mode: Mode): bigint {
  const r = c.region;
  if (typeof r === "object") return r.va(mode);
  if (r === "page") return 0x4000_0000n + BigInt(k) * 0x2000n; // one leaf table for all
  if (r === "mega") return 0x4020_0000n + BigInt(k) * 0x20_0000n;
  if (r === "giga") return BigInt(3 + k) << 30n;
  return BigInt(1 + k) << 39n;
}

/** The attacker's S-mode accesses of every case of `mode` (label `label`), with its tables. */
function casesFor(mode: Mode, label: string): { code: string; pt: PageTables; cases: Case[] } {
  const pt = new PageTables(mode === "sv39" ? 3 : 4, TABLES[mode]);
  // Its code and data: a gigapage from RAM's start (RAM, then nothing), supervisor-only.
  pt.set(BigInt(RAM), 2, leaf(RAM));
  const cases = CASES.filter((c) => !c.modes || c.modes.includes(mode));
  const seen = new Map<string, number>();
  const lines = [`${label}:`];
  for (const c of cases) {
    const key = typeof c.region === "object" ? "own" : c.region;
    const k = seen.get(key) ?? 0;
    seen.set(key, k + 1);
    const va = addressOf(c, k, mode);
    c.map?.(pt, va);
    const ops = typeof c.ops === "function" ? c.ops(va) : c.ops;
    lines.push(`  # ${mode}: ${c.name}`, ...ops.map((op) => access(op, va)));
  }
  lines.push("    ecall");
  return { code: lines.join("\n"), pt, cases };
}

/**
 * One access in S-mode (or, with `mprv`, from M-mode as S-mode's): s7 is 0 unless the M-mode
 * handler saw a trap (then its cause + 1); rec reports it.
 */
function access(op: Op, va: bigint, mprv = false): string {
  if (op.kind === "sfence") return "    sfence.vma zero, zero";
  const at = BigInt.asUintN(64, va + op.at);
  const code = [`    li s1, ${at}`, "    li s7, 0", "    li a0, 0"];
  if (op.kind === "store") code.push(`    li s2, ${op.value}`, `    ${op.width === 1 ? "sb" : "sd"} s2, 0(s1)`);
  if (op.kind === "load") {
    code.push(`    ${op.width === 1 ? "lbu" : "ld"} s3, 0(s1)`);
    if (op.expect !== undefined) code.push(`    li s2, ${op.expect}`, "    sub a0, s3, s2");
  }
  if (op.kind === "amo") code.push(`    amoor.${op.width === 4 ? "w" : "d"} s3, zero, (s1)`);
  if (op.kind === "fetch") code.push("    jalr ra, 0(s1)");
  // MPRV with MPP = S for the access alone (a trap's mret leaves MPP at U): rec's store is M-mode's.
  if (mprv) code.splice(-1, 0, "    li t0, 0x1800", "    csrc mstatus, t0", "    li t0, 0x20800", "    csrs mstatus, t0");
  if (mprv) code.push("    li t0, 0x20000", "    csrc mstatus, t0");
  code.push("    jal ra, rec");
  return code.join("\n");
}

/** The attacker's image, and the cases it runs under each mode, in the order it reports them. */
function pagingAttacker(): { program: Uint8Array; cases: Record<Mode, Case[]> } {
  const sv39 = casesFor("sv39", "s39");
  const sv48 = casesFor("sv48", "s48");
  const source = `
    la t0, mtrap
    csrw mtvec, t0
${romChecksum("s9")}
    li s0, ${RESULTS}
    li s10, 0
${toSupervisor(satp("sv39", sv39.pt.root), "s39")}
    mret

  # M-mode: a trap from an access notes its cause and goes on after it; from a jump, back where
  # the jump came from. The ecall at the end of the Sv39 cases starts the Sv48 ones; the one
  # after those, the MPRV ones in M-mode, and then the report.
  mtrap:
    csrr t3, mcause
    li t4, 9
    beq t3, t4, ecall
    addi s7, t3, 1
    csrr t4, mepc
    la t5, code_start
    bltu t4, t5, 1f
    la t5, code_end
    bgeu t4, t5, 1f
    addi t4, t4, 4
    csrw mepc, t4
    mret
  1:
    csrw mepc, ra
    mret
  ecall:
    bnez s10, 4f
    li s10, 1
    li t3, 47           # '/'
    sb t3, 0(s0)
    addi s0, s0, 1
    li t3, ${satp("sv48", sv48.pt.root)}
    csrw satp, t3
    sfence.vma zero, zero
    la t3, s48
    csrw mepc, t3
    mret
  4:
    li t3, 47
    sb t3, 0(s0)
    addi s0, s0, 1
    li t3, 0x1800       # MPP = M: on in M-mode
    csrs mstatus, t3
    la t3, mprv
    csrw mepc, t3
    mret
  report:
    li t0, ${UART}
    li t1, ${RESULTS}
  2:
    lbu t2, 0(t1)
    sb t2, 0(t0)
    addi t1, t1, 1
    bltu t1, s0, 2b
${reportEnd("s9")}

  # S-mode from here (and the MPRV accesses, whose faults are skipped alike).
  code_start:
  # Report the access: its cause in hex, or "." ("!" if a0 is not 0: a load read something else).
  rec:
    beqz s7, 1f
    addi a1, s7, -1
    li a2, 10
    blt a1, a2, 2f
    addi a1, a1, 39
  2:
    addi a1, a1, 48
    j 3f
  1:
    li a1, 46
    beqz a0, 3f
    li a1, 33
  3:
    sb a1, 0(s0)
    addi s0, s0, 1
    ret
${sv39.code}
${sv48.code}
  mprv:
${ROOTS.map((r) => [`  # ${r.name}`, `    li t0, ${r.satp}`, "    csrw satp, t0", "    sfence.vma zero, zero",
    ...accesses(0, 8, 0x12345678n).slice(0, 3).map((op) => access(op, ROOT_VA, true))].join("\n")).join("\n")}
    j report
  code_end:
`;
  const code = assemble(source, { origin: RAM }).bytes;
  if (code.length > DATA1 - RAM) throw new Error(`the attacker's code (${code.length} bytes) runs into its data`);
  const image = new Uint8Array(TABLES.sv48 + TABLE_BYTES - RAM);
  const view = new DataView(image.buffer);
  image.set(code);
  for (const [page, pattern] of [[DATA1, PATTERN1], [DATA2, PATTERN2]] as const) {
    view.setBigUint64(page - RAM + 0x100, pattern, true);
    view.setUint32(page - RAM + 0x800, RET, true);
  }
  for (const [mode, { pt }] of [["sv39", sv39], ["sv48", sv48]] as const) {
    for (const [pa, entries] of pt.tables) {
      if (pa + 4096 > TABLES[mode] + TABLE_BYTES) throw new Error(`too many ${mode} tables`);
      image.set(new Uint8Array(entries.buffer), pa - RAM);
    }
  }
  return { program: image, cases: { sv39: sv39.cases, sv48: sv48.cases } };
}

/** A report's characters by case. */
function byCase(cases: { name: string; expect: string }[], report: string): Record<string, string> {
  let at = 0;
  return Object.fromEntries(cases.map((c) => [c.name, report.slice(at, at += c.expect.length)]));
}

describe("page tables that point anywhere", () => {
  const attack = pagingAttacker();
  for (const paging of ["nested", "shadow"] as const) {
    test(`under ${paging} paging, every access through them gets what the privileged spec gives, and the boot ROM is unchanged`, async () => {
      await besideVictim({ program: attack.program, definition: () => ({ paging }) }, async (scene) => {
        await scene.startVictim();
        // Sv39's cases, Sv48's, the roots', and "r" if the boot ROM reads back unchanged.
        const [sv39, sv48, roots, rom] = (await scene.attackerSays(/\n/)).trim().split("/");
        const expected = (cases: { name: string; expect: string }[]) => Object.fromEntries(cases.map((c) => [c.name, c.expect]));
        expect({ sv39: byCase(attack.cases.sv39, sv39!), sv48: byCase(attack.cases.sv48, sv48!), roots: byCase(ROOTS, roots!) })
          .toEqual({ sv39: expected(attack.cases.sv39), sv48: expected(attack.cases.sv48), roots: expected(ROOTS) });
        expect(rom).toBe("r");
        // The mode was in effect: under shadow paging the attacker's table writes trapped (and
        // its shadows were dropped); under nested paging nothing was shadowed.
        const { paging: counters } = await scene.hv.machineStats("attacker");
        expect(counters.mode).toBe(paging);
        if (paging === "shadow") expect(counters.ptWriteTraps).toBeGreaterThan(0);
        else expect(counters.shadowFaults).toBe(0);
        await scene.victimFinishes();
        await scene.attackerStillRuns();
      });
    }, 60_000);
  }
});
