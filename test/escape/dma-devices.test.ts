// Escape suite: DMA through the other devices that reach guest memory. The attacker VM has an
// OpenCores Ethernet MAC (ethoc, whose buffer descriptors hold guest-physical addresses) and an
// xHCI controller with a USB keyboard (whose rings, contexts, DCBAA, event ring segment table and
// TRB data buffers are all guest-physical pointers); ATA has none (PIO only: the AtaDisk model
// is given no guest memory at all). Driving them from M-mode, the attacker points each at the
// boot ROM, at the device's own registers, at the other device's window, at the UART, CLINT and
// PLIC, across and beyond RAM's end, at RAM's aliases above 4 GiB and 2^53, past the top of the
// 64-bit space (ethoc's 32-bit pointers: past 4 GiB), and asks for lengths that run past its
// RAM; some ask the device to write memory, some to read it.
//
// What hardware gives: ethoc completes such a descriptor with its error bit (TX: UR, the buffer
// could not be fetched; RX: OR, the frame could not be stored) and the error interrupt (TXE,
// RXE); xHCI fails a TD whose buffer or ring it cannot reach with a TRB Error transfer event
// (halting the endpoint when its ring is unreachable), a command whose context it cannot reach
// with a TRB Error completion, and stops with a Host System Error (USBSTS.HSE) when its command
// ring or event ring is unreachable (xHCI 1.1, 4.24.1). The attacker reports per request what it
// got, resets the device and gets a good transfer through it afterwards; nothing outside its
// RAM may change: the victim's pattern, the boot ROM, the other devices' registers.
import { describe, test, expect } from "vitest";
import { assemble } from "../../host/util/riscv-asm";
import { besideVictim, printResults, reportEnd, romChecksum, RAM, RAM_END, UART, CLINT, PLIC, ROM, type Scene } from "./rig";

const ETHOC = 0x10020000;
const XHCI = 0x10030000;
const MTIMECMP = CLINT + 0x4000;
const RESULTS = RAM + 0x80000;
const NEXT_4G = 2 ** 32;
const TOP = (1n << 64n);

/** Both devices on the attacker: the MAC on a restricted user-mode network (its frames loop back inside it here), a keyboard on port 1. */
const DEVICES = { nets: ["user,restrict=on,model=ethoc"], usb: ["kbd"] };

interface Case {
  name: string;
  /** Its assembly. */
  code: string;
  /** What the attacker reports for it. */
  expect: string;
}

/** `value` (a 64-bit address) in `rd`. */
const li = (rd: string, value: number | bigint): string => `    li ${rd}, ${BigInt.asUintN(64, BigInt(value))}`;

/**
 * The report and the checks shared by both attackers: the characters at RESULTS, "/", "n" if the
 * neighbours read as they did ("X" if not), "/", "r" if the boot ROM reads as it did. The UART's
 * scratch register, hart 0's msip and mtimecmp, and the other device's registers (`neighbour`:
 * assembly leaving 0 in t2 if they are as the reset left them) must not have changed.
 */
const report = (neighbour: string): string => `
  report:
${printResults(RESULTS, "s1")}
    li t2, 47           # '/'
    sb t2, 0(t0)
    li s10, 110         # 'n'
    li t0, ${UART}
    lbu t1, 7(t0)
    li t2, 0x5a
    bne t1, t2, 4f
    li t0, ${CLINT}
    lw t1, 0(t0)
    bnez t1, 4f
    li t0, ${MTIMECMP}
    ld t1, 0(t0)
    addi t1, t1, 1      # all ones, as reset left it
    bnez t1, 4f
${neighbour}
    beqz t2, 5f
  4:
    li s10, 88          # 'X'
  5:
    li t0, ${UART}
    sb s10, 0(t0)
${reportEnd("s9")}

  # No access here should trap: if one does, say so ("T") and report.
  trap:
    li t2, 84
    sb t2, 0(s1)
    addi s1, s1, 1
    j report
`;

/** The start of both attackers: a trap vector, the boot ROM's checksum, the UART's scratch register set. */
const prologue = `
    la t0, trap
    csrw mtvec, t0
${romChecksum("s9")}
    li s1, ${RESULTS}
    li t0, ${UART}
    li t1, 0x5a
    sb t1, 7(t0)
`;

// ---- ethoc ----

const BD = 0x400; // descriptor 0 (transmit) at BD, descriptor 1 (receive) at BD + 8
const SRC = RAM + 0x100000; // 64 KiB of a pattern: what is sent
const DST = RAM + 0x200000; // where a good frame lands
const FRAME = 64;
// MODER: receive, transmit, promiscuous, loopback, full duplex, CRC, pad; HUGEN for huge frames.
const MODER = (1 << 0) | (1 << 1) | (1 << 5) | (1 << 7) | (1 << 10) | (1 << 13) | (1 << 15);
const HUGEN = 1 << 14;

/**
 * One frame sent from `tx` (`len` bytes) into the receive descriptor's buffer at `rx`, after a
 * MODER reset. Reported: "t" sent ("U" underrun: the buffer could not be fetched, "?" still
 * READY), "r" received ("O" overrun: it could not be stored, "-" nothing came), then INT_SOURCE's
 * TXB/TXE/RXB/RXE bits as a hex digit; and, with `compare`, "=" if the frame arrived as sent.
 */
function ethocCase(name: string, o: { tx?: number; len?: number; rx?: number; huge?: boolean; compare?: boolean }, expect: string): Case {
  const rx = o.rx ?? DST;
  const code = [
    `  # ${name}`,
    o.compare ? `${li("t0", rx)}\n    sd zero, 0(t0)` : "",
    li("a1", o.tx ?? SRC), li("a2", o.len ?? FRAME), li("a3", rx), li("a4", o.huge ? HUGEN : 0),
    "    jal ra, frame",
    o.compare ? "    jal ra, compare" : "",
  ].filter(Boolean).join("\n");
  return { name, code, expect: expect + (o.compare ? "=" : "") };
}

const SENT = "tr5"; // TXB | RXB
const NOT_STORED = "tO9"; // TXB | RXE
const NOT_FETCHED = "U-2"; // TXE
const ETHOC_CASES: Case[] = [
  ethocCase("a good frame", { compare: true }, SENT),
  ethocCase("received into the boot ROM", { rx: ROM }, NOT_STORED),
  ethocCase("received into its own registers", { rx: ETHOC }, NOT_STORED),
  ethocCase("received into its own descriptors", { rx: ETHOC + BD }, NOT_STORED),
  ethocCase("received into the xHCI's registers", { rx: XHCI + 0x40 }, NOT_STORED),
  ethocCase("received into the UART", { rx: UART }, NOT_STORED),
  ethocCase("received into the CLINT", { rx: CLINT }, NOT_STORED),
  ethocCase("received into the PLIC", { rx: PLIC }, NOT_STORED),
  ethocCase("received into address 0", { rx: 0 }, NOT_STORED),
  ethocCase("received into RAM's last 64 bytes (a 60-byte frame and its FCS)", { rx: RAM_END - 64, len: 60, compare: true }, SENT),
  ethocCase("received across RAM's end", { rx: RAM_END - 32 }, NOT_STORED),
  ethocCase("received beyond RAM's end", { rx: RAM_END }, NOT_STORED),
  ethocCase("received across 4 GiB", { rx: NEXT_4G - 32 }, NOT_STORED),
  ethocCase("sent from the boot ROM", { tx: ROM }, NOT_FETCHED),
  ethocCase("sent from the UART", { tx: UART }, NOT_FETCHED),
  ethocCase("sent from its own descriptors", { tx: ETHOC + BD }, NOT_FETCHED),
  ethocCase("sent from across RAM's end", { tx: RAM_END - 32 }, NOT_FETCHED),
  ethocCase("sent from beyond RAM's end", { tx: RAM_END }, NOT_FETCHED),
  ethocCase("sent from across 4 GiB", { tx: NEXT_4G - 32 }, NOT_FETCHED),
  ethocCase("an empty frame", { len: 0 }, NOT_FETCHED),
  ethocCase("the longest frame from across RAM's end", { tx: RAM_END - 0x8000, len: 0xffff, huge: true }, NOT_FETCHED),
  ethocCase("a huge frame received across RAM's end", { len: 0xfff0, rx: RAM_END - 0x1000, huge: true }, NOT_STORED),
  ethocCase("a frame longer than MAXFL received across RAM's end", { len: 2000, rx: RAM_END - 0x100, huge: false }, NOT_STORED),
  ethocCase("a good frame after all that", { compare: true }, SENT),
];

const ETHOC_ATTACKER = assemble(`
${prologue}
    li s0, ${ETHOC}
    # What is sent: 64 KiB of counting bytes.
    li t0, ${SRC}
    li t1, ${SRC + 0x10000}
    li t2, 0x0706050403020100
    li t3, 0x0808080808080808
  1:
    sd t2, 0(t0)
    add t2, t2, t3
    addi t0, t0, 8
    bltu t0, t1, 1b
${ETHOC_CASES.map((c) => c.code).join("\n")}
    j report

  # Reset the MAC and send one frame from a1 (a2 bytes) into a receive buffer at a3, with MODER
  # bits a4 more; report as ethocCase says.
  frame:
    mv s10, a3
    li t0, 0x800
    sw t0, 0(s0)        # MODER.RST
    li t0, 0x7f
    sw t0, 4(s0)        # INT_SOURCE: clear
    sw t0, 8(s0)        # INT_MASK: all (interrupts are off in the hart)
    li t0, 1
    sw t0, 0x20(s0)     # TX_BD_NUM: descriptor 0 transmits, the rest receive
    sw a3, ${BD + 12}(s0)
    li t0, 0xe000       # EMPTY | IRQ | WRAP
    sw t0, ${BD + 8}(s0)
    sw a1, ${BD + 4}(s0)
    li t0, ${MODER}
    or t0, t0, a4
    sw t0, 0(s0)
    slli t0, a2, 16
    li t1, 0xe000       # READY | IRQ | WRAP: sent at once
    or t0, t0, t1
    sw t0, ${BD}(s0)
    lw t0, ${BD}(s0)
    li t2, 63           # '?'
    li t1, 0x8000
    and t1, t0, t1
    bnez t1, 1f
    li t2, 116          # 't'
    andi t1, t0, 0x100  # UR
    beqz t1, 1f
    li t2, 85           # 'U'
  1:
    sb t2, 0(s1)
    lw t0, ${BD + 8}(s0)
    li t2, 45           # '-'
    li t1, 0x8000
    and t1, t0, t1
    bnez t1, 2f
    li t2, 114          # 'r'
    andi t1, t0, 0x40   # OR
    beqz t1, 2f
    li t2, 79           # 'O'
  2:
    sb t2, 1(s1)
    lw t0, 4(s0)
    andi t0, t0, 0xf
    addi t2, t0, 48
    li t1, 10
    blt t0, t1, 3f
    addi t2, t0, 87
  3:
    sb t2, 2(s1)
    addi s1, s1, 3
    ret

  # Whether the frame arrived as sent.
  compare:
    ld t0, 0(s10)
    li t1, ${SRC}
    ld t1, 0(t1)
    li t2, 61           # '='
    beq t0, t1, 1f
    li t2, 33           # '!'
  1:
    sb t2, 0(s1)
    addi s1, s1, 1
    ret
${report(`
    li t0, ${XHCI}
    lw t2, 0x40(t0)     # USBCMD
    lw t1, 0x70(t0)     # DCBAAP
    or t2, t2, t1
    lw t1, 0x58(t0)     # CRCR (reads 0 while the ring is stopped)
    or t2, t2, t1`)}
`, { origin: RAM }).bytes;

// ---- xHCI ----

const AREA = RAM + 0x100000; // the controller's structures, zeroed by every init
const DCBAA = AREA;
const CMD_RING = AREA + 0x1000; // 256 TRBs: commands since the last init never reach its end
const ERST = AREA + 0x2000;
const EVENT_RING = AREA + 0x3000;
const EVENT_TRBS = 64;
const INPUT = AREA + 0x4000;
const OUTPUT = AREA + 0x5000;
const XFER = AREA + 0x6000; // EP0's transfer ring: 256 TRBs
const AREA_END = AREA + 0x7000;
const DATA = AREA + 0x8000;
const OP = 0x40; // operational registers
const DOORBELLS = 0x800;
// TRB types.
const T = { LINK: 6, ENABLE_SLOT: 9, DISABLE_SLOT: 10, ADDRESS_DEVICE: 11, CONFIGURE_ENDPOINT: 12, EVALUATE_CONTEXT: 13, RESET_ENDPOINT: 14, STOP_ENDPOINT: 15, SET_TR_DEQUEUE: 16, NOOP: 23 };
const GET_DEVICE_DESCRIPTOR = 0x01000680; // bmRequestType 0x80, GET_DESCRIPTOR, wValue: the device descriptor
const SET_REPORT = 0x02000921; // bmRequestType 0x21 (class, interface), SET_REPORT, wValue: an output report
const DEVICE_DESCRIPTOR_WORD = 0x02000112; // bLength 18, DEVICE, bcdUSB 2.00

// Completion codes as the attacker reports them (a digit or letter, base 32).
const SUCCESS = "1";
const TRB_ERROR = "5";
const HSE = "H"; // USBSTS.HSE: the controller stopped
const TRANSACTION = "4";

type Step = { code: string; expect: string };
/** (Re)start the controller: HCRST, its structures zeroed, then the pointers given (default: the attacker's own). */
const init = (o: { dcbaa?: number | bigint; crcr?: number | bigint; erstba?: number | bigint; segment?: number | bigint; segmentSize?: number } = {}): Step => ({
  code: [li("a1", o.dcbaa ?? DCBAA), li("a2", o.crcr ?? CMD_RING), li("a3", o.erstba ?? ERST), li("a4", o.segment ?? EVENT_RING), li("a5", o.segmentSize ?? EVENT_TRBS), "    jal ra, init"].join("\n"),
  expect: "",
});
/** A command TRB (the slot from Enable Slot, endpoint 1 where it names one) and its completion code. */
const command = (type: number, pointer: number | bigint, expect: string): Step => ({
  code: [li("a1", pointer), `    li a3, ${(type << 10) | (1 << 16)}`, "    jal ra, command", "    jal ra, rec"].join("\n"),
  expect,
});
const enable: Step = { code: "    jal ra, enable\n    jal ra, rec", expect: SUCCESS };
/** Address Device with the DCBAA entry `output` and the input context at `input`. */
const address = (expect: string, o: { output?: number | bigint; input?: number | bigint } = {}): Step => ({
  code: [li("a1", o.output ?? OUTPUT), li("a2", o.input ?? INPUT), "    jal ra, address", "    jal ra, rec"].join("\n"),
  expect,
});
/** A control transfer on EP0 with its data stage at `buffer` (`length` bytes): IN (the device writes memory) or OUT. */
const control = (setup: number, buffer: number | bigint, length: number, dirIn: boolean, expect: string, wLength = length): Step => ({
  code: [li("a1", buffer), `    li a2, ${length}`, `    li a3, ${setup}`, `    li a4, ${(wLength & 0xffff) << 16}`, `    li a5, ${dirIn ? 1 : 0}`, "    jal ra, control", "    jal ra, rec"].join("\n"),
  expect,
});
const getDescriptor = (buffer: number | bigint, expect: string, length = 18): Step => control(GET_DEVICE_DESCRIPTOR, buffer, length, true, expect, 18);
/** Whether DATA holds the device descriptor's first word. */
const descriptorArrived: Step = { code: "    jal ra, compare", expect: "=" };
/** A Link TRB on EP0's ring to `target` ("self": to itself). */
const link = (target: number | bigint | "self"): Step => ({
  code: [target === "self" ? "    mv t0, s5" : li("t0", target), "    sd t0, 0(s5)", "    sw zero, 8(s5)", `    li t0, ${(T.LINK << 10) | 1}`, "    sw t0, 12(s5)", "    addi s5, s5, 16"].join("\n"),
  expect: "",
});
/** A halted EP0 reset, and its ring going on where the attacker writes next. */
const recover: Step[] = [
  command(T.RESET_ENDPOINT, 0, SUCCESS),
  { code: ["    ori a1, s5, 1", `    li a3, ${(T.SET_TR_DEQUEUE << 10) | (1 << 16)}`, "    jal ra, command", "    jal ra, rec"].join("\n"), expect: SUCCESS },
];
/** Doorbell 0 with nothing written to the command ring (it is not in RAM), then its answer. */
const ringCommands: Step = { code: "    jal ra, ring\n    jal ra, rec", expect: HSE };
/** A good GET_DESCRIPTOR through a fresh slot on a controller brought up anew. */
const fresh: Step[] = [init(), enable, address(SUCCESS), getDescriptor(DATA, SUCCESS), descriptorArrived];
const xhciCase = (name: string, steps: Step[]): Case => ({ name, code: [`  # ${name}`, ...steps.map((s) => s.code)].join("\n"), expect: steps.map((s) => s.expect).join("") });

const XHCI_CASES: Case[] = [
  xhciCase("bring-up and a good GET_DESCRIPTOR", fresh),
  // TRB data buffers: the device writes (IN) or reads (OUT) them.
  ...([
    ["the boot ROM", ROM], ["its own registers", XHCI + OP], ["the MAC's descriptors", ETHOC + BD], ["the UART", UART], ["the CLINT", CLINT],
    ["the PLIC", PLIC], ["across RAM's end", RAM_END - 8], ["beyond RAM's end", RAM_END], ["RAM + 4 GiB", RAM + NEXT_4G],
    ["RAM + 2^53", BigInt(RAM) + (1n << 53n)], ["the top of the 64-bit space", TOP - 8n],
  ] as const).map(([where, at]) => xhciCase(`a descriptor read into ${where}`, [getDescriptor(at, TRB_ERROR)])),
  xhciCase("a descriptor read into RAM's last 18 bytes", [getDescriptor(RAM_END - 18, SUCCESS)]),
  xhciCase("a 128 KiB data stage (the most a TRB holds) across RAM's end", [getDescriptor(RAM_END - 0x100, TRB_ERROR, 0x1ffff)]),
  xhciCase("a 128 KiB data stage in RAM (the device sends 18 bytes)", [getDescriptor(DATA, SUCCESS, 0x1ffff), descriptorArrived]),
  xhciCase("a SET_REPORT from RAM", [control(SET_REPORT, DATA, 1, false, SUCCESS)]),
  xhciCase("a SET_REPORT from the boot ROM", [control(SET_REPORT, ROM, 1, false, TRB_ERROR)]),
  xhciCase("a SET_REPORT from beyond RAM's end", [control(SET_REPORT, RAM_END, 1, false, TRB_ERROR)]),
  xhciCase("a SET_REPORT from the PLIC", [control(SET_REPORT, PLIC, 1, false, TRB_ERROR)]),
  // EP0's ring leading out of RAM: the TD fails, the endpoint halts until reset.
  ...([["the boot ROM", ROM], ["the UART", UART], ["beyond RAM's end", RAM_END], ["RAM + 2^53", BigInt(RAM) + (1n << 53n)], ["itself", "self"]] as const)
    .map(([where, at]) => xhciCase(`EP0's ring linked to ${where}`, [link(at), getDescriptor(DATA, TRB_ERROR), ...recover])),
  xhciCase("EP0's dequeue pointer set into the boot ROM", [getDescriptor(DATA, SUCCESS), descriptorArrived, command(T.STOP_ENDPOINT, 0, SUCCESS), command(T.SET_TR_DEQUEUE, ROM | 1, SUCCESS), getDescriptor(DATA, TRB_ERROR), ...recover]),
  xhciCase("EP0 after that", [getDescriptor(DATA, SUCCESS), descriptorArrived]),
  // Commands whose contexts are not in RAM fail with a TRB Error; the slot stays as it was.
  xhciCase("Evaluate Context with its input in the UART", [command(T.EVALUATE_CONTEXT, UART, TRB_ERROR)]),
  xhciCase("Evaluate Context with its input in the boot ROM", [command(T.EVALUATE_CONTEXT, ROM, TRB_ERROR)]),
  xhciCase("Configure Endpoint with its input beyond RAM's end", [command(T.CONFIGURE_ENDPOINT, RAM_END, TRB_ERROR)]),
  xhciCase("Configure Endpoint with its input across RAM's end", [command(T.CONFIGURE_ENDPOINT, RAM_END - 512, TRB_ERROR)]),
  // A second slot for the same device: its output context and input context nowhere.
  xhciCase("a second slot whose output context is in the boot ROM", [enable, address(TRB_ERROR, { output: ROM })]),
  xhciCase("... in the xHCI's own registers", [address(TRB_ERROR, { output: XHCI })]),
  xhciCase("... across RAM's end", [address(TRB_ERROR, { output: RAM_END - 512 })]),
  xhciCase("... at RAM + 2^53", [address(TRB_ERROR, { output: BigInt(RAM) + (1n << 53n) })]),
  xhciCase("... with its input context in the boot ROM", [address(TRB_ERROR, { input: ROM })]),
  xhciCase("... with its input context across RAM's end", [address(TRB_ERROR, { input: RAM_END - 512 })]),
  // Both in RAM: the device has an address from slot 1 already.
  xhciCase("... with both in RAM", [address(TRANSACTION)]),
  xhciCase("... disabled", [command(T.DISABLE_SLOT, 0, SUCCESS)]),
  // The DCBAA itself nowhere: Address Device cannot read the slot's entry.
  xhciCase("the DCBAA in the boot ROM", [init({ dcbaa: ROM }), enable, address(TRB_ERROR)]),
  xhciCase("the DCBAA in the UART", [init({ dcbaa: UART }), enable, address(TRB_ERROR)]),
  xhciCase("the DCBAA at the top of the 64-bit space", [init({ dcbaa: TOP - 64n }), enable, address(TRB_ERROR)]),
  // The command ring or the event ring unreachable: a Host System Error.
  ...([["the boot ROM", ROM], ["its own registers", XHCI], ["the PLIC", PLIC], ["beyond RAM's end", RAM_END], ["RAM + 4 GiB", RAM + NEXT_4G], ["the top of the 64-bit space", TOP - 64n]] as const)
    .map(([where, at]) => xhciCase(`the command ring in ${where}`, [init({ crcr: at }), ringCommands])),
  xhciCase("the command ring linked to itself", [init(), { code: [li("t0", CMD_RING), "    sd t0, 0(t0)", `    li t1, ${(T.LINK << 10) | 1}`, "    sw t1, 12(t0)"].join("\n"), expect: "" }, ringCommands]),
  xhciCase("the command ring linked into the boot ROM", [init(), { code: [li("t0", CMD_RING), li("t1", ROM), "    sd t1, 0(t0)", `    li t1, ${(T.LINK << 10) | 1}`, "    sw t1, 12(t0)"].join("\n"), expect: "" }, ringCommands]),
  ...([
    ["its segment table in the UART", { erstba: UART }], ["its segment table beyond RAM's end", { erstba: RAM_END }],
    ["its segment in the boot ROM", { segment: ROM }], ["its segment in its own registers", { segment: XHCI }],
    ["its segment across RAM's end", { segment: RAM_END - 512 }], ["its segment at RAM + 2^53", { segment: BigInt(RAM) + (1n << 53n) }],
    ["its segment at the top of the 64-bit space", { segment: TOP - 1024n }], ["a segment of 65535 TRBs", { segmentSize: 0xffff }],
  ] as const).map(([what, o]) => xhciCase(`the event ring with ${what}`, [init(o), command(T.NOOP, 0, HSE)])),
  xhciCase("a good GET_DESCRIPTOR after all that", fresh),
];

const XHCI_ATTACKER = assemble(`
${prologue}
    li s0, ${XHCI}
    li s7, ${XHCI + DOORBELLS}
${XHCI_CASES.map((c) => c.code).join("\n")}
    j report

  # Reset the controller, zero its structures, and start it with the DCBAA at a1 (its entry 0,
  # the scratchpad array, pointing at the boot ROM: there are no scratchpads to read), the command
  # ring at a2, the segment table at a3 (the one in RAM has one segment, at a4, of a5 TRBs),
  # after resetting port 1 (the keyboard: enabled, no event while the controller is halted).
  init:
    li t0, 2
    sw t0, ${OP}(s0)    # USBCMD.HCRST
    li t0, ${AREA}
    li t1, ${AREA_END}
  1:
    sd zero, 0(t0)
    addi t0, t0, 8
    bltu t0, t1, 1b
    li t0, ${DCBAA}
    li t1, ${ROM}
    sd t1, 0(t0)
    li t0, ${ERST}
    sd a4, 0(t0)
    sw a5, 8(t0)
    li t0, 8
    sw t0, ${OP + 0x38}(s0)  # CONFIG: 8 slots
    sw a1, ${OP + 0x30}(s0)  # DCBAAP
    srli t0, a1, 32
    sw t0, ${OP + 0x34}(s0)
    ori t0, a2, 1
    sw t0, ${OP + 0x18}(s0)  # CRCR, RCS = 1
    srli t0, a2, 32
    sw t0, ${OP + 0x1c}(s0)
    li t0, 1
    sw t0, 0x628(s0)    # ERSTSZ
    sw a4, 0x638(s0)    # ERDP
    srli t0, a4, 32
    sw t0, 0x63c(s0)
    sw a3, 0x630(s0)    # ERSTBA
    srli t0, a3, 32
    sw t0, 0x634(s0)
    li t0, 0x210        # PR | PP
    sw t0, ${OP + 0x400}(s0)
    li t0, 1
    sw t0, ${OP}(s0)    # USBCMD.RS
    mv s2, a2
    li s3, ${EVENT_RING}
    li s4, 1
    li s5, ${XFER}
    ret

  # The next event of type a0 at the event ring in RAM (others are consumed and passed over):
  # a0 its completion code, a1 its slot; -1 if the controller reports a Host System Error, -2
  # if nothing comes.
  wait:
    li t3, 2000
  1:
    lw t0, ${OP + 4}(s0)     # USBSTS
    andi t0, t0, 4           # HSE
    bnez t0, 4f
    lw t0, 12(s3)
    andi t1, t0, 1
    bne t1, s4, 3f
    srli t1, t0, 10
    andi t1, t1, 0x3f
    lw t2, 8(s3)
    srli t2, t2, 24
    srli a1, t0, 24
    addi s3, s3, 16
    li t4, ${EVENT_RING + 16 * EVENT_TRBS}
    bltu s3, t4, 2f
    li s3, ${EVENT_RING}
    xori s4, s4, 1
  2:
    ori t4, s3, 8            # ERDP, EHB cleared
    sw t4, 0x638(s0)
    sw zero, 0x63c(s0)
    bne t1, a0, 1b
    mv a0, t2
    ret
  3:
    addi t3, t3, -1
    bnez t3, 1b
    li a0, -2
    ret
  4:
    li a0, -1
    ret

  # A command: parameter a1, control a3 (with the slot in s6 and the cycle bit added); its completion.
  command:
    sd a1, 0(s2)
    sw zero, 8(s2)
    slli t0, s6, 24
    or a3, a3, t0
    ori a3, a3, 1
    sw a3, 12(s2)
    addi s2, s2, 16
  ring:
    sw zero, 0(s7)      # doorbell 0
    li a0, 33           # Command Completion Event
    j wait

  # Enable Slot: its slot in s6.
  enable:
    mv s8, ra
    li s6, 0
    li a1, 0
    li a3, ${T.ENABLE_SLOT << 10}
    jal ra, command
    mv s6, a1
    mv ra, s8
    ret

  # Address Device for slot s6: its DCBAA entry a1, its input context at a2 (the one in RAM holds
  # a slot context on root port 1 and a control EP0 context whose ring is at s5).
  address:
    mv s8, ra
    li t0, ${DCBAA}
    slli t1, s6, 3
    add t0, t0, t1
    sd a1, 0(t0)
    li t0, ${INPUT}
    li t1, 0
    sw t1, 0(t0)        # drop flags
    li t1, 3
    sw t1, 4(t0)        # add: slot and EP0
    li t1, ${1 << 27}
    sw t1, 32(t0)       # slot context: one context entry
    li t1, ${1 << 16}
    sw t1, 36(t0)       # root port 1
    li t1, ${(8 << 16) | (4 << 3) | (3 << 1)}
    sw t1, 68(t0)       # EP0: max packet 8, control, CErr 3
    ori t1, s5, 1
    sd t1, 72(t0)       # its ring, DCS 1
    mv a1, a2
    li a3, ${T.ADDRESS_DEVICE << 10}
    jal ra, command
    mv ra, s8
    ret

  # A control transfer on slot s6's EP0: setup a3/a4, data stage at a1 of a2 bytes, IN if a5;
  # its Transfer Event's completion code (the Status stage's, or the failing TRB's).
  control:
    sw a3, 0(s5)
    sw a4, 4(s5)
    li t0, 8
    sw t0, 8(s5)
    li t0, ${(2 << 10) | (1 << 6) | 1}  # SETUP, IDT
    li t1, ${2 << 16}   # TRT: an OUT data stage
    beqz a5, 1f
    li t1, ${3 << 16}   # an IN data stage
  1:
    or t0, t0, t1
    sw t0, 12(s5)
    sd a1, 16(s5)
    sw a2, 24(s5)
    li t0, ${(3 << 10) | 1}             # DATA
    slli t1, a5, 16     # DIR_IN
    or t0, t0, t1
    sw t0, 28(s5)
    sd zero, 32(s5)
    sw zero, 40(s5)
    li t0, ${(4 << 10) | (1 << 5) | 1}  # STATUS, IOC, the other direction
    xori t1, a5, 1
    slli t1, t1, 16
    or t0, t0, t1
    sw t0, 44(s5)
    addi s5, s5, 48
    slli t0, s6, 2
    add t0, t0, s7
    li t1, 1
    sw t1, 0(t0)        # doorbell s6, EP0
    li a0, 32           # Transfer Event
    j wait

  # a0 as a character: "H" (-1), "?" (-2), else the completion code in base 32.
  rec:
    li t0, 72
    li t1, -1
    beq a0, t1, 1f
    li t0, 63
    li t1, -2
    beq a0, t1, 1f
    addi t0, a0, 48
    li t1, 10
    blt a0, t1, 1f
    addi t0, a0, 87
  1:
    sb t0, 0(s1)
    addi s1, s1, 1
    ret

  # Whether DATA holds the device descriptor's first word (and clear it for the next).
  compare:
    li t0, ${DATA}
    lw t1, 0(t0)
    sw zero, 0(t0)
    li t0, ${DEVICE_DESCRIPTOR_WORD}
    li t2, 61           # '='
    beq t0, t1, 1f
    li t2, 33           # '!'
  1:
    sb t2, 0(s1)
    addi s1, s1, 1
    ret
${report(`
    li t0, ${ETHOC}
    lw t2, ${BD}(t0)
    lw t1, ${BD + 4}(t0)
    or t2, t2, t1
    lw t1, ${BD + 8}(t0)
    or t2, t2, t1
    lw t1, ${BD + 12}(t0)
    or t2, t2, t1`)}
`, { origin: RAM }).bytes;

/** The attacker's report, split into its results by case, the neighbours' mark and the boot ROM's. */
async function judge(scene: Scene, cases: Case[]): Promise<void> {
  const [results, neighbours, rom] = (await scene.attackerSays(/\n/)).trim().split("/");
  let at = 0;
  const got = Object.fromEntries(cases.map((c) => [c.name, results!.slice(at, at += c.expect.length)]));
  expect(got).toEqual(Object.fromEntries(cases.map((c) => [c.name, c.expect])));
  expect(results!.slice(at)).toBe("");
  expect(neighbours).toBe("n");
  expect(rom).toBe("r");
}

describe("DMA through ethoc and xHCI", () => {
  test("ethoc completes every descriptor pointing outside the attacker's RAM with its error bit, and nothing outside it changes", async () => {
    await besideVictim({ program: ETHOC_ATTACKER, definition: () => DEVICES }, async (scene) => {
      await scene.startVictim();
      await judge(scene, ETHOC_CASES);
      await scene.victimFinishes();
      await scene.attackerStillRuns();
    });
  }, 60_000);

  test("xHCI fails every TD, command and ring outside the attacker's RAM as the specification says, and nothing outside it changes", async () => {
    await besideVictim({ program: XHCI_ATTACKER, definition: () => DEVICES }, async (scene) => {
      await scene.startVictim();
      await judge(scene, XHCI_CASES);
      await scene.victimFinishes();
      await scene.attackerStillRuns();
    });
  }, 60_000);
});
