/**
 * The bare-metal image the core's differential fuzzing runs on both wasmvisor and QEMU
 * (`-M virt -bios none`): a fixed M-mode runtime and, per case, a descriptor (every x and f
 * register, fcsr and the CSRs, the page-table entries of its windows) and its code pages. The
 * runtime runs the cases one after the other: fills the scratch window from the case's seed,
 * writes its PTEs and CSRs (mtvec direct or vectored, the CLINT's msip), loads its registers and
 * `mret`s into its code in M, S or U mode. Every trap comes to the runtime's M-mode handler
 * (through the vector table when mtvec is vectored: the entry reached is logged), which logs it
 * (mcause, mepc, mtval, mstatus) and goes on, or ends the case. An exception in the block is
 * skipped; an AMO's or SC's fault is first given what the spec says where QEMU 7.2 departs
 * (below). A software interrupt has its source cleared and the block resumes. The case ends at
 * the block's closing ecall, an interrupt it cannot clear, a fetch fault, a trap from outside
 * the block (the S-mode stub a delegated trap runs: an ecall) or the eighth trap.
 * Ending dumps the architectural state (x, f, fcsr, CSRs, the trap log, the PTEs with their A/D
 * bits, the scratch window) to the case's result record. At the end the results go to a file
 * through semihosting (QEMU; wasmvisor's are read from its memory) and the SiFive test device
 * powers off.
 *
 * Physical layout (RAM at 0x80000000, 128 MiB):
 *   RUNTIME  code; STUB a page of ecalls (stvec's target); RT the run's fields
 *   SAVE     the handler's save area and trap log (mscratch points at it)
 *   tables   Sv39 root, L1 and L0 (VA 0x400000-0x5fffff in 4 KiB pages, 0x600000 a megapage),
 *            and Sv48 and Sv57 roots above the Sv39 one
 *   DESC     a descriptor per case; CODE three pages per case: the block's, the page it runs on
 *            into, and another the second virtual page may map instead
 *   SCRATCH  the data window (4 pages), refilled per case; RESULTS a record per case
 */
import { assemble } from "../../host/util/riscv-asm";

export const RAM_BASE = 0x8000_0000;
export const RAM_BYTES = 128 << 20;
const RUNTIME = RAM_BASE;
export const STUB = RAM_BASE + 0x3000;
const RT = RAM_BASE + 0x1_0000;
const SAVE = RAM_BASE + 0x2_0000;
export const ROOT_TABLE = RAM_BASE + 0x10_0000;
const L1_TABLE = ROOT_TABLE + 0x1000;
const L0_TABLE = ROOT_TABLE + 0x2000;
/** Sv48's root: its entry 0 points at the Sv39 root, so both modes map the same. */
export const ROOT48_TABLE = ROOT_TABLE + 0x3000;
/** Sv57's root: its entry 0 points at Sv48's. */
export const ROOT57_TABLE = ROOT_TABLE + 0x4000;
/** satp for each paging mode, ASID 0. */
export const SATP = {
  sv39: (8n << 60n) | BigInt(ROOT_TABLE >>> 12),
  sv48: (9n << 60n) | BigInt(ROOT48_TABLE >>> 12),
  sv57: (10n << 60n) | BigInt(ROOT57_TABLE >>> 12),
} as const;
const DESC = RAM_BASE + 0x20_0000;
const CODE = RAM_BASE + 0x40_0000;
/** Code pages per case: the block's, the one after it (contiguous), another for the second virtual page. */
export const CODE_PAGES = 3;
export const SCRATCH = RAM_BASE + 0x400_0000;
export const SCRATCH_BYTES = 0x4000;
const RESULTS = RAM_BASE + 0x500_0000;
/** Cases one image holds at most (their code pages must end below SCRATCH). */
export const MAX_CASES = 1024;
/** The CLINT: hart 0's msip word. */
export const CLINT_MSIP = 0x200_0000;

/** Virtual layout under paging: the block's two pages, the stub's, the data window and its megapage alias. */
export const CODE_VA = 0x40_0000;
export const STUB_VA = 0x40_3000;
export const WINDOW_VA = 0x40_4000;
export const MEGA_VA = 0x60_0000;
/** L0 slots (VA 0x400000 + slot * 4 KiB) a case sets: code, its second page, 2 unused, 3 the stub, 4-7 window, 8 an alias of window page 0. */
export const L0_SLOTS = 9;

/** Descriptor fields (8 bytes each). */
export const D = {
  x: 0, f: 32, fcsr: 64, mstatus: 65, entry: 66, end: 67, delta: 68, satp: 69, medeleg: 70, mideleg: 71,
  mie: 72, stvec: 73, sscratch: 74, sepc: 75, scause: 76, stval: 77, mcause: 79, mtval: 80,
  mcounteren: 81, scounteren: 82, menvcfg: 83, senvcfg: 84, seed: 85, pte: 86, mega: 95, mip: 96,
  /** mtvec's mode (0 direct, 1 vectored); the CLINT's msip as the case starts. */
  mtvecMode: 97, msip: 98,
  /** Runs of the case at least (each from the same state), and the second code page's PTE in all runs but the last. */
  runs: 99, pteFirst: 100,
} as const;
const DESC_BYTES = 1024;

/** Result record fields (8 bytes each); the scratch window follows the header. */
export const R = {
  done: 0, x: 0, f: 32, fcsr: 64, mstatus: 65, mepc: 66, mcause: 67, mtval: 68, scause: 69, stval: 70, sepc: 71,
  sscratch: 72, mip: 73, mie: 74, satp: 75, menvcfg: 76, senvcfg: 77, mcounteren: 78, scounteren: 79,
  medeleg: 80, mideleg: 81, stvec: 82, traps: 83, log: 84, pte: 212,
} as const;
/** Trap log entries; a case ends when it is full, or after TRAP_LIMIT traps but SC faults and the runtime's delegations. */
export const TRAP_LOG = 16;
export const TRAP_LIMIT = 8;
/**
 * A trap log entry's words: mcause, mepc, mtval, mstatus as the trap left them; the vector-table
 * entry it came through (-1: mtvec direct); what the handler changed (FIX_*); the SC's rd as
 * the trap found it (FIX_SC_RD).
 */
export const LOG = { cause: 0, epc: 1, tval: 2, status: 3, via: 4, fix: 5, rd: 6 } as const;
export const LOG_WORDS = 8;
/** The handler gave an AMO's or SC's load fault (QEMU 7.2) the store/AMO cause (mcause rewritten). */
export const FIX_STORE_CAUSE = 1n;
/** The handler wrote 1 to a faulting SC's rd: the case goes on as after a failed SC. */
export const FIX_SC_RD = 2n;
/** The handler delegated the trap to S-mode, as medeleg has it for the store/AMO cause (with FIX_STORE_CAUSE). */
export const FIX_DELEGATED = 4n;
/**
 * The handler moved a trap that went to S-mode to M-mode (an AMO's load fault QEMU 7.2 delegated
 * where its store/AMO cause is not, or any SC fault): the entry is that trap's.
 */
export const FIX_UNDELEGATED = 32n;
/** The handler zeroed an EBREAK's mtval (the spec allows zero or its address). */
export const FIX_TVAL = 8n;
/** The handler zeroed an interrupt's mcause as it resumed the block. */
export const FIX_CAUSE = 16n;
export const RESULT_HEADER = 2048;
export const RESULT_BYTES = RESULT_HEADER + SCRATCH_BYTES;
export const DONE = 0x600d_cafen;

const CSR_DUMP: [number, string][] = [
  [R.mepc, "mepc"], [R.mcause, "mcause"], [R.mtval, "mtval"], [R.scause, "scause"], [R.stval, "stval"], [R.sepc, "sepc"],
  [R.sscratch, "sscratch"], [R.mip, "mip"], [R.mie, "mie"], [R.satp, "satp"], [R.menvcfg, "menvcfg"], [R.senvcfg, "senvcfg"],
  [R.mcounteren, "mcounteren"], [R.scounteren, "scounteren"], [R.medeleg, "medeleg"], [R.mideleg, "mideleg"], [R.stvec, "stvec"],
];
const CSR_LOAD: [number, string][] = [
  [D.satp, "satp"], [D.medeleg, "medeleg"], [D.mideleg, "mideleg"], [D.mie, "mie"], [D.stvec, "stvec"], [D.sscratch, "sscratch"],
  [D.sepc, "sepc"], [D.scause, "scause"], [D.stval, "stval"], [D.mcause, "mcause"], [D.mtval, "mtval"],
  [D.mcounteren, "mcounteren"], [D.scounteren, "scounteren"], [D.menvcfg, "menvcfg"], [D.senvcfg, "senvcfg"], [D.entry, "mepc"],
];
const XNAME = (i: number) => `x${i}`;
const lines = (n: number, f: (i: number) => string) => Array.from({ length: n }, (_, i) => f(i)).join("\n");
/** The handler's copy of register x`i` (t0-t3 are in the save area, t6 in mscratch). */
const SAVED: Record<number, number> = { 5: 0, 6: 8, 7: 16, 28: 24 };

// The runtime's fields at RT: case index, case count, semihosting on, SYS_OPEN's and SYS_WRITE's
// argument blocks, which run of the case this is and how many each gets, a doubleword the
// prologue's SC clears any reservation with, the results file's name.
const RT_CASE = 0, RT_COUNT = 8, RT_SEMI = 16, RT_OPEN = 24, RT_WRITE = 48, RT_RUN = 72, RT_RUNS = 80, RT_SC = 88, RT_NAME = 0x100, NAME_MAX = 0xf00;
// SAVE: t0-t3, trap count, block start, end, PA - VA of the block, the result record, the
// current log entry, the traps not counted towards TRAP_LIMIT, the trap log.
const S_TRAPS = 32, S_LO = 40, S_END = 48, S_DELTA = 56, S_RESULT = 64, S_ENTRY = 72, S_UNCOUNTED = 80, S_LOG = 128;
const L = (w: number) => S_LOG + w * 8;
/** Assembly that records the trap's mcause, mepc, mtval and mstatus in the log entry at `entry`, through `tmp`. */
const logTrapCsrs = (entry: string, tmp: string) => `
  csrr ${tmp}, mcause
  sd ${tmp}, ${L(LOG.cause)}(${entry})
  csrr ${tmp}, mepc
  sd ${tmp}, ${L(LOG.epc)}(${entry})
  csrr ${tmp}, mtval
  sd ${tmp}, ${L(LOG.tval)}(${entry})
  csrr ${tmp}, mstatus
  sd ${tmp}, ${L(LOG.status)}(${entry})`;

/**
 * A faulting SC's rd set to 1, its value before kept in t2: one 16-byte entry per register
 * (the handler's own registers through their saved copies).
 */
const RD_TABLE = lines(32, (i) => {
  if (i === 0) return "  li t2, 0\n  j rd_done\n  nop\n  nop";
  if (i === 31) return "  csrr t2, mscratch\n  li t1, 1\n  csrw mscratch, t1\n  j rd_done";
  if (i in SAVED) return `  ld t2, ${SAVED[i]}(t6)\n  li t1, 1\n  sd t1, ${SAVED[i]}(t6)\n  j rd_done`;
  return `  mv t2, x${i}\n  li x${i}, 1\n  j rd_done\n  nop`;
});

const SOURCE = `
_start:
  # PMP entry 0: all of memory (NAPOT over the 54 address bits pmpaddr holds: QEMU keeps more)
  li t0, 0x3fffffffffffff
  csrw pmpaddr0, t0
  li t0, 0x1f
  csrw pmpcfg0, t0
  # no timer interrupt, ever: mtimecmp and stimecmp at their maximum
  li t0, 0x2004000
  li t1, -1
  sd t1, 0(t0)
  li t0, 1
  slli t0, t0, 63
  csrw menvcfg, t0
  csrw 0x14d, t1
  csrw menvcfg, zero
  la t0, handler
  csrw mtvec, t0
  li t0, ${SAVE}
  csrw mscratch, t0
next_case:
  li s0, ${RT}
  ld s1, ${RT_CASE}(s0)
  ld s2, ${RT_COUNT}(s0)
  bltu s1, s2, 1f
  j finish
1:
  slli t0, s1, 10
  li s3, ${DESC}
  add s3, s3, t0
  li t0, ${RESULT_BYTES}
  mul t0, t0, s1
  li s4, ${RESULTS}
  add s4, s4, t0
  li s5, ${SAVE}
  sd s4, ${S_RESULT}(s5)
  # s6: this case's runs
  ld s6, ${RT_RUNS}(s0)
  ld t0, ${D.runs * 8}(s3)
  bgeu s6, t0, 1f
  mv s6, t0
1:
  # the window: xorshift64 from the seed
  ld t0, ${D.seed * 8}(s3)
  li t1, ${SCRATCH}
  li t2, ${SCRATCH + SCRATCH_BYTES}
1:
  slli t3, t0, 13
  xor t0, t0, t3
  srli t3, t0, 7
  xor t0, t0, t3
  slli t3, t0, 17
  xor t0, t0, t3
  sd t0, 0(t1)
  addi t1, t1, 8
  bltu t1, t2, 1b
  li t1, ${L0_TABLE}
${lines(L0_SLOTS, (i) => `  ld t0, ${(D.pte + i) * 8}(s3)\n  sd t0, ${i * 8}(t1)`)}
  # the second code page: mapped as pteFirst says in all runs but the last
  ld t0, ${RT_RUN}(s0)
  addi t0, t0, 1
  bgeu t0, s6, 1f
  ld t0, ${D.pteFirst * 8}(s3)
  sd t0, 8(t1)
1:
  li t1, ${L1_TABLE}
  ld t0, ${D.mega * 8}(s3)
  sd t0, 24(t1)
  # no reservation left from an earlier case
  addi t0, s0, ${RT_SC}
  sc.d zero, zero, (t0)
  sd zero, ${S_TRAPS}(s5)
  sd zero, ${S_UNCOUNTED}(s5)
  ld t0, ${D.entry * 8}(s3)
  sd t0, ${S_LO}(s5)
  ld t0, ${D.end * 8}(s3)
  sd t0, ${S_END}(s5)
  ld t0, ${D.delta * 8}(s3)
  sd t0, ${S_DELTA}(s5)
${lines(TRAP_LOG * LOG_WORDS, (i) => `  sd zero, ${S_LOG + i * 8}(s5)`)}
  # Sv48 first: a satp write of a mode the hart lacks (Sv57 on wasmvisor) leaves this, which maps the same
  li t0, ${SATP.sv48}
  csrw satp, t0
${CSR_LOAD.map(([f, c]) => `  ld t0, ${f * 8}(s3)\n  csrw ${c}, t0`).join("\n")}
  ld t0, ${D.mtvecMode * 8}(s3)
  la t1, handler
  beqz t0, 1f
  la t1, vectors
  ori t1, t1, 1
1:
  csrw mtvec, t1
  csrw mip, zero
  ld t0, ${D.mip * 8}(s3)
  csrs mip, t0
  ld t0, ${D.msip * 8}(s3)
  li t1, ${CLINT_MSIP}
  sw t0, 0(t1)
  sfence.vma
  li t0, 0x6000
  csrs mstatus, t0
${lines(32, (i) => `  fld f${i}, ${(D.f + i) * 8}(s3)`)}
  ld t0, ${D.fcsr * 8}(s3)
  csrw fcsr, t0
  ld t0, ${D.mstatus * 8}(s3)
  csrw mstatus, t0
  mv t6, s3
${lines(30, (i) => `  ld x${i + 1}, ${(D.x + i + 1) * 8}(t6)`)}
  ld t6, ${31 * 8}(t6)
  mret

  # mtvec vectored: entry n (cause n's interrupt; 0 also every exception) logs n
  .balign 256
vectors:
${lines(16, (i) => `  j vector${i}`)}
${lines(16, (i) => `vector${i}:\n  csrrw t6, mscratch, t6\n  sd t0, 0(t6)\n  li t0, ${i}\n  j trap`)}

  .balign 4
handler:
  csrrw t6, mscratch, t6
  sd t0, 0(t6)
  li t0, -1
trap:
  sd t1, 8(t6)
  sd t2, 16(t6)
  sd t3, 24(t6)
  ld t3, ${S_TRAPS}(t6)
  slli t1, t3, ${Math.log2(LOG_WORDS * 8)}
  add t1, t1, t6
  sd t1, ${S_ENTRY}(t6)
  sd t0, ${L(LOG.via)}(t1)
${logTrapCsrs("t1", "t0")}
  addi t3, t3, 1
  sd t3, ${S_TRAPS}(t6)
  csrr t0, mcause
  bgez t0, exception
  # A software interrupt: its source cleared (the CLINT's msip, or mip's SSIP, STIP, SEIP), the
  # block resumed where it was. Timer and external interrupts never come (mtimecmp and
  # stimecmp are at their maximum, nothing drives the PLIC): any other ends the case.
  slli t0, t0, 1
  srli t0, t0, 1
  li t1, 3
  beq t0, t1, 1f
  li t1, 0x222
  srl t1, t1, t0
  andi t1, t1, 1
  beqz t1, end_case
  li t1, 1
  sll t1, t1, t0
  csrc mip, t1
  j 2f
1:
  li t1, ${CLINT_MSIP}
  sw zero, 0(t1)
2:
  # Interrupts pending together are taken in each machine's order (QEMU 7.2's is not the
  # spec's), so mcause after them is the last each took: zero from here on, for a block that reads it
  csrw mcause, zero
  ld t2, ${S_ENTRY}(t6)
  li t1, ${FIX_CAUSE}
  sd t1, ${L(LOG.fix)}(t2)
  j resume

exception:
  # The stub's ecall after a fault of an AMO or SC in the block that went to S-mode: an AMO's
  # load fault QEMU 7.2 delegated where the spec's store/AMO cause is not delegated, or any SC
  # fault (a faulting SC goes on as a failed one, below, wherever its trap went). The trap is
  # moved to M-mode (its mcause, mepc, mtval, mstatus logged in the stub's entry), the S-mode
  # CSRs it wrote put back as the case started them, and it is handled as one in the block.
  li t1, 9
  bne t0, t1, 5f
  csrr t1, mepc
  csrr t2, stvec
  andi t2, t2, -4
  sub t1, t1, t2
  li t2, 0x1000
  bgeu t1, t2, 5f
  csrr t1, sepc
  ld t2, ${S_END}(t6)
  bgeu t1, t2, 5f
  ld t2, ${S_LO}(t6)
  bltu t1, t2, 5f
  ld t2, ${S_DELTA}(t6)
  add t2, t2, t1
  lhu t3, 0(t2)
  andi t3, t3, 0x7f
  li t1, 0x2f
  bne t3, t1, 5f
  lhu t3, 2(t2)
  srli t3, t3, 11
  li t1, 2
  beq t3, t1, 5f
  csrr t1, scause
  li t2, 3
  bne t3, t2, 7f
  # an SC: misaligned, access or page fault, load or store cause
  li t2, 4
  bltu t1, t2, 5f
  li t2, 8
  bltu t1, t2, 8f
  li t2, 13
  beq t1, t2, 8f
  li t2, 15
  beq t1, t2, 8f
  j 5f
7:
  # an AMO: a load cause, its store/AMO cause not delegated
  li t2, 4
  beq t1, t2, 6f
  li t2, 5
  beq t1, t2, 6f
  li t2, 13
  bne t1, t2, 5f
6:
  addi t2, t1, 2
  csrr t3, medeleg
  srl t3, t3, t2
  andi t3, t3, 1
  bnez t3, 5f
8:
  csrr t1, scause
  csrw mcause, t1
  csrr t1, sepc
  csrw mepc, t1
  csrr t1, stval
  csrw mtval, t1
  # MPP the mode trapped from (SPP), SIE back from SPIE; SPP and SPIE as the case started
  csrr t1, mstatus
  li t2, 0x1922
  csrc mstatus, t2
  andi t2, t1, 0x100
  slli t2, t2, 3
  csrs mstatus, t2
  andi t2, t1, 0x20
  srli t2, t2, 4
  csrs mstatus, t2
  li t2, ${RT}
  ld t1, ${RT_CASE}(t2)
  slli t1, t1, 10
  li t2, ${DESC}
  add t2, t2, t1
  ld t1, ${D.mstatus * 8}(t2)
  andi t1, t1, 0x120
  csrs mstatus, t1
  ld t1, ${D.scause * 8}(t2)
  csrw scause, t1
  ld t1, ${D.sepc * 8}(t2)
  csrw sepc, t1
  ld t1, ${D.stval * 8}(t2)
  csrw stval, t1
  ld t2, ${S_ENTRY}(t6)
${logTrapCsrs("t2", "t1")}
  li t1, ${FIX_UNDELEGATED}
  sd t1, ${L(LOG.fix)}(t2)
  csrr t0, mcause
5:
  # Not a fetch fault, in the block: normalized if an AMO or SC, then skipped
  li t1, 1
  bleu t0, t1, end_case
  li t1, 12
  beq t0, t1, end_case
  csrr t1, mepc
  ld t2, ${S_END}(t6)
  bgeu t1, t2, end_case
  ld t2, ${S_LO}(t6)
  bltu t1, t2, end_case
  # EBREAK: mtval may be zero (QEMU) or its address (wasmvisor); zero from here on, for a block that reads it
  li t1, 3
  bne t0, t1, 1f
  csrw mtval, zero
  ld t2, ${S_ENTRY}(t6)
  li t1, ${FIX_TVAL}
  sd t1, ${L(LOG.fix)}(t2)
  j skip
1:
  csrr t1, mepc
  ld t2, ${S_DELTA}(t6)
  add t2, t2, t1
  lhu t0, 0(t2)
  andi t1, t0, 0x7f
  li t3, 0x2f
  bne t1, t3, skip
  # An AMO or SC (not an LR): QEMU 7.2 raises the load causes (4, 5, 13) where the spec has the
  # store/AMO ones (6, 7, 15). Given those, the handler and whatever reads mcause go on as the
  # spec's trap would have them; where medeleg delegates the store/AMO cause (and not the load
  # one), the trap is delegated as the spec's would have been.
  lhu t3, 2(t2)
  srli t3, t3, 11
  li t1, 2
  beq t3, t1, skip
  csrr t1, mcause
  li t2, 4
  beq t1, t2, 1f
  li t2, 5
  beq t1, t2, 1f
  li t2, 13
  bne t1, t2, 2f
1:
  addi t1, t1, 2
  csrw mcause, t1
  ld t2, ${S_ENTRY}(t6)
  ld t0, ${L(LOG.fix)}(t2)
  ori t0, t0, ${FIX_STORE_CAUSE}
  sd t0, ${L(LOG.fix)}(t2)
  li t2, 3
  beq t3, t2, 2f
  csrr t2, medeleg
  srl t2, t2, t1
  andi t2, t2, 1
  beqz t2, 2f
  csrr t2, mstatus
  srli t0, t2, 11
  andi t0, t0, 3
  li t3, 3
  beq t0, t3, 2f
  # delegated: scause, sepc, stval; SPP the mode trapped from, SPIE = SIE, SIE = 0; then S-mode at stvec's base
  csrw scause, t1
  csrr t3, mepc
  csrw sepc, t3
  csrr t3, mtval
  csrw stval, t3
  li t3, 0x122
  csrc mstatus, t3
  andi t3, t2, 2
  slli t3, t3, 4
  csrs mstatus, t3
  slli t0, t0, 8
  csrs mstatus, t0
  li t3, 0x1000
  csrc mstatus, t3
  li t3, 0x800
  csrs mstatus, t3
  csrr t3, stvec
  andi t3, t3, -4
  csrw mepc, t3
  ld t2, ${S_ENTRY}(t6)
  li t0, ${FIX_STORE_CAUSE | FIX_DELEGATED}
  sd t0, ${L(LOG.fix)}(t2)
  j uncounted
2:
  # A faulting SC goes on as a failed one (rd = 1), its rd as the fault found it logged: QEMU
  # 7.2 fails an SC without a reservation, without the access, where wasmvisor faults.
  csrr t1, mepc
  ld t2, ${S_DELTA}(t6)
  add t2, t2, t1
  lhu t0, 0(t2)
  lhu t3, 2(t2)
  srli t3, t3, 11
  li t1, 3
  bne t3, t1, skip
  csrr t1, mcause
  li t2, 6
  beq t1, t2, 3f
  li t2, 7
  beq t1, t2, 3f
  li t2, 15
  bne t1, t2, skip
3:
  srli t0, t0, 7
  andi t0, t0, 31
  slli t0, t0, 4
  la t1, rd_table
  add t1, t1, t0
  jr t1
rd_table:
${RD_TABLE}
rd_done:
  ld t1, ${S_ENTRY}(t6)
  sd t2, ${L(LOG.rd)}(t1)
  ld t0, ${L(LOG.fix)}(t1)
  ori t0, t0, ${FIX_SC_RD}
  sd t0, ${L(LOG.fix)}(t1)
  # SC faults and the runtime's delegations are not counted: one side may have them and not the other
  ld t0, ${S_UNCOUNTED}(t6)
  addi t0, t0, 1
  sd t0, ${S_UNCOUNTED}(t6)
skip:
  jal t0, limit
  csrr t1, mepc
  ld t2, ${S_DELTA}(t6)
  add t2, t2, t1
  lhu t2, 0(t2)
  andi t2, t2, 3
  li t0, 3
  addi t1, t1, 2
  bne t2, t0, 2f
  addi t1, t1, 2
2:
  csrw mepc, t1
  j 3f
uncounted:
  ld t0, ${S_UNCOUNTED}(t6)
  addi t0, t0, 1
  sd t0, ${S_UNCOUNTED}(t6)
resume:
  jal t0, limit
3:
  ld t0, 0(t6)
  ld t1, 8(t6)
  ld t2, 16(t6)
  ld t3, 24(t6)
  csrrw t6, mscratch, t6
  mret

  # The case ends after TRAP_LIMIT counted traps, or when the log is full. Returns to t0.
limit:
  ld t3, ${S_TRAPS}(t6)
  li t1, ${TRAP_LOG}
  bgeu t3, t1, end_case
  ld t1, ${S_UNCOUNTED}(t6)
  sub t3, t3, t1
  li t1, ${TRAP_LIMIT}
  bgeu t3, t1, end_case
  jr t0

end_case:
  ld t0, ${S_RESULT}(t6)
${[1, 2, 3, 4, ...lines(20, (i) => String(i + 8)).split("\n").map(Number), 29, 30].map((i) => `  sd ${XNAME(i)}, ${(R.x + i) * 8}(t0)`).join("\n")}
${[5, 6, 7, 28].map((r, i) => `  ld t1, ${i * 8}(t6)\n  sd t1, ${(R.x + r) * 8}(t0)`).join("\n")}
  csrr t1, mscratch
  sd t1, ${31 * 8}(t0)
  csrw mscratch, t6
  csrr t1, mstatus
  sd t1, ${R.mstatus * 8}(t0)
  li t1, 0x6000
  csrs mstatus, t1
${lines(32, (i) => `  fsd f${i}, ${(R.f + i) * 8}(t0)`)}
  csrr t1, fcsr
  sd t1, ${R.fcsr * 8}(t0)
${CSR_DUMP.map(([f, c]) => `  csrr t1, ${c}\n  sd t1, ${f * 8}(t0)`).join("\n")}
  # msip back to 0 for the next case (mip, with MSIP, is dumped above)
  li t1, ${CLINT_MSIP}
  sw zero, 0(t1)
  ld t1, ${S_TRAPS}(t6)
  sd t1, ${R.traps * 8}(t0)
${lines(TRAP_LOG * LOG_WORDS, (i) => `  ld t1, ${S_LOG + i * 8}(t6)\n  sd t1, ${(R.log + i) * 8}(t0)`)}
  li t2, ${L0_TABLE}
${lines(L0_SLOTS, (i) => `  ld t1, ${i * 8}(t2)\n  sd t1, ${(R.pte + i) * 8}(t0)`)}
  li t2, ${L1_TABLE}
  ld t1, 24(t2)
  sd t1, ${(R.pte + L0_SLOTS) * 8}(t0)
  li t1, ${SCRATCH}
  li t2, ${SCRATCH + SCRATCH_BYTES}
  li t3, ${RESULT_HEADER}
  add t3, t3, t0
3:
  ld t4, 0(t1)
  sd t4, 0(t3)
  addi t1, t1, 8
  addi t3, t3, 8
  bltu t1, t2, 3b
  li t1, ${DONE}
  sd t1, ${R.done * 8}(t0)
  # the case again (its runs, at least the image's), or the next
  li s0, ${RT}
  ld t1, ${RT_CASE}(s0)
  slli t1, t1, 10
  li t2, ${DESC}
  add t2, t2, t1
  ld t3, ${D.runs * 8}(t2)
  ld t2, ${RT_RUNS}(s0)
  bgeu t2, t3, 4f
  mv t2, t3
4:
  ld t1, ${RT_RUN}(s0)
  addi t1, t1, 1
  sd t1, ${RT_RUN}(s0)
  bgeu t1, t2, 4f
  j next_case
4:
  sd zero, ${RT_RUN}(s0)
  ld t1, ${RT_CASE}(s0)
  addi t1, t1, 1
  sd t1, ${RT_CASE}(s0)
  j next_case

finish:
  li s0, ${RT}
  ld t0, ${RT_SEMI}(s0)
  beqz t0, poweroff
  li a0, 1
  addi a1, s0, ${RT_OPEN}
  call semihost
  sd a0, ${RT_WRITE}(s0)
  li a0, 5
  addi a1, s0, ${RT_WRITE}
  call semihost
  li a0, 2
  addi a1, s0, ${RT_WRITE}
  call semihost
poweroff:
  li t0, 0x100000
  li t1, 0x5555
  sw t1, 0(t0)
4:
  j 4b

  .balign 16
semihost:
  slli zero, zero, 0x1f
  ebreak
  srai zero, zero, 7
  ret
`;

let runtime: Uint8Array | null = null;
function runtimeCode(): Uint8Array {
  if (!runtime) {
    runtime = assemble(SOURCE, { origin: RUNTIME }).bytes;
    if (runtime.length > STUB - RUNTIME) throw new Error("the runtime overlaps the stub page");
    if (RESULTS + MAX_CASES * RESULT_BYTES > RAM_BASE + RAM_BYTES || codePage(MAX_CASES) > SCRATCH) throw new Error("the layout's regions overlap");
  }
  return runtime;
}

/**
 * One case as the image holds it: its descriptor's fields, its code pages, and its block's bytes
 * as its last run fetches them (from `desc[D.entry]` on; the comparison reads them).
 */
export interface CaseImage {
  desc: BigUint64Array;
  pages: Uint8Array;
  code: Uint8Array;
  /** Values the block may write to satp. */
  satpWrites: bigint[];
}

export function newDescriptor(): BigUint64Array {
  return new BigUint64Array(DESC_BYTES / 8);
}

/** PA of case i's first code page (the others follow it). */
export const codePage = (i: number) => CODE + i * CODE_PAGES * 0x1000;

/** PTE bits. */
export const PTE = { V: 1n, R: 2n, W: 4n, X: 8n, U: 16n, G: 32n, A: 64n, D: 128n } as const;
export const pte = (pa: number, bits: bigint) => (BigInt(pa >>> 12) << 10n) | bits;

/**
 * The image (loaded at RAM_BASE): the runtime, the fixed tables, the cases. `resultsFile`
 * (QEMU) turns on semihosting: the results are written there before power-off. Each case runs
 * `runs` times (or its descriptor's, if more), from the same state (the prologue sets all of
 * it), the last run's state kept: a second run lets the translation tier run the block
 * translated, or runs a block whose second page was mapped otherwise before.
 */
export function buildImage(cases: readonly CaseImage[], resultsFile: string | null, runs = 1): Uint8Array {
  if (cases.length > MAX_CASES) throw new Error(`an image holds at most ${MAX_CASES} cases`);
  const end = codePage(cases.length) - RAM_BASE;
  const image = new Uint8Array(end);
  const dv = new DataView(image.buffer);
  image.set(runtimeCode(), 0);
  for (let o = STUB - RAM_BASE; o < STUB - RAM_BASE + 0x1000; o += 4) dv.setUint32(o, 0x0000_0073, true); // ecall
  const rt = RT - RAM_BASE;
  dv.setBigUint64(rt + RT_COUNT, BigInt(cases.length), true);
  dv.setBigUint64(rt + RT_RUNS, BigInt(runs), true);
  if (resultsFile !== null) {
    const name = new TextEncoder().encode(resultsFile);
    if (name.length >= NAME_MAX) throw new Error("the results file's path is too long");
    image.set(name, rt + RT_NAME);
    dv.setBigUint64(rt + RT_SEMI, 1n, true);
    dv.setBigUint64(rt + RT_OPEN, BigInt(RT + RT_NAME), true);
    dv.setBigUint64(rt + RT_OPEN + 8, 5n, true); // "wb"
    dv.setBigUint64(rt + RT_OPEN + 16, BigInt(name.length), true);
    dv.setBigUint64(rt + RT_WRITE + 8, BigInt(RESULTS), true);
    dv.setBigUint64(rt + RT_WRITE + 16, BigInt(cases.length * RESULT_BYTES), true);
  }
  // Sv39: root[0] -> L1; L1[2] -> L0 (VA 0x400000); L1[3] is each case's megapage. Sv48 and Sv57: one and two levels more.
  dv.setBigUint64(ROOT57_TABLE - RAM_BASE, pte(ROOT48_TABLE, PTE.V), true);
  dv.setBigUint64(ROOT48_TABLE - RAM_BASE, pte(ROOT_TABLE, PTE.V), true);
  dv.setBigUint64(ROOT_TABLE - RAM_BASE, pte(L1_TABLE, PTE.V), true);
  dv.setBigUint64(L1_TABLE - RAM_BASE + 16, pte(L0_TABLE, PTE.V), true);
  cases.forEach((c, i) => {
    if (c.pages.length > CODE_PAGES * 0x1000) throw new Error("a case's code is larger than its pages");
    image.set(new Uint8Array(c.desc.buffer, c.desc.byteOffset, c.desc.byteLength), DESC + i * DESC_BYTES - RAM_BASE);
    image.set(c.pages, codePage(i) - RAM_BASE);
  });
  return image;
}

export const RESULTS_BASE = RESULTS;
