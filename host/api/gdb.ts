// The GDB remote protocol, as QEMU's gdbstub serves it for a RISC-V machine: packets with their
// checksums (and no-ack mode), the target description (64-bit x, f and CSR registers), one thread
// per hart, registers, memory through a hart's current translation, software breakpoints (the
// core's breakpoint list), hardware breakpoints and watchpoints (the debug triggers), single step,
// continue, and Ctrl-C. All-stop: a stop stops every hart (the VM pauses). The client is
// untrusted: a malformed packet gets an error reply, a bad checksum a '-', an overlong packet is
// dropped, and nothing it sends can end the process. Platform-free: gdb-server.ts puts it on a
// socket. (GDB's documentation: "Remote Protocol"; the packets are those GDB 13 sends.)
import type { DebugRequest, Watch } from "../machine/debug";
import { REG_PC, REG_F0, REG_CSR0, REG_PRIV } from "../machine/debug";
import type { DebugStop } from "../machine/virt";

/** What the stub needs of the VM it debugs. */
export interface GdbTarget {
  readonly harts: number;
  /** The VM's life-cycle state. */
  state(): "created" | "running" | "paused" | "stopped" | "failed";
  /** Stop every hart (pause the VM; nothing to do if it is not running). */
  pause(): Promise<void>;
  /** Run (start a VM created paused with -S, or resume it). */
  resume(): Promise<void>;
  /** A request on the machine, between its steps (machine/debug.ts). */
  debug(req: DebugRequest): Promise<unknown>;
  /** Calls `listener` each time a breakpoint or watchpoint stops the VM; returns the unsubscribe. */
  onDebugStop(listener: (stop: DebugStop) => void): () => void;
  /** Resolves with the guest's exit status when the VM ends. */
  ended: Promise<number>;
  /** `k`: end the VM and the emulator, as QEMU's stub does. */
  kill(): void;
}

/** The largest packet we take (and say so in qSupported): its data, in bytes. */
export const PACKET_SIZE = 0x4000;
const MAX_BREAKPOINTS = 64;
const hex2 = (n: number) => n.toString(16).padStart(2, "0");

/** The CSRs the target description lists (the core's; each is register 65 + its number). */
const CSRS: [string, number][] = [
  ["sstatus", 0x100], ["sie", 0x104], ["stvec", 0x105], ["scounteren", 0x106], ["senvcfg", 0x10a], ["sscratch", 0x140],
  ["sepc", 0x141], ["scause", 0x142], ["stval", 0x143], ["sip", 0x144], ["stimecmp", 0x14d], ["satp", 0x180],
  ["mstatus", 0x300], ["misa", 0x301], ["medeleg", 0x302], ["mideleg", 0x303], ["mie", 0x304], ["mtvec", 0x305],
  ["mcounteren", 0x306], ["menvcfg", 0x30a], ["mcountinhibit", 0x320], ["mscratch", 0x340], ["mepc", 0x341],
  ["mcause", 0x342], ["mtval", 0x343], ["mip", 0x344],
  ["pmpcfg0", 0x3a0], ["pmpcfg2", 0x3a2],
  ...Array.from({ length: 16 }, (_, i) => [`pmpaddr${i}`, 0x3b0 + i] as [string, number]),
  ["tselect", 0x7a0], ["tdata1", 0x7a1], ["tdata2", 0x7a2], ["tdata3", 0x7a3], ["tinfo", 0x7a4],
  ["mcycle", 0xb00], ["minstret", 0xb02], ["cycle", 0xc00], ["time", 0xc01], ["instret", 0xc02],
  ["mvendorid", 0xf11], ["marchid", 0xf12], ["mimpid", 0xf13], ["mhartid", 0xf14],
];
const X_NAMES = ["zero", "ra", "sp", "gp", "tp", "t0", "t1", "t2", "fp", "s1", "a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "t3", "t4", "t5", "t6"];
const F_NAMES = ["ft0", "ft1", "ft2", "ft3", "ft4", "ft5", "ft6", "ft7", "fs0", "fs1", "fa0", "fa1", "fa2", "fa3", "fa4", "fa5", "fa6", "fa7", "fs2", "fs3", "fs4", "fs5", "fs6", "fs7", "fs8", "fs9", "fs10", "fs11", "ft8", "ft9", "ft10", "ft11"];
/** fflags, frm and fcsr are 32 bits wide, as GDB's own RISC-V description has them. */
const NARROW = new Set([REG_CSR0 + 1, REG_CSR0 + 2, REG_CSR0 + 3]);

/** The target description GDB reads with qXfer:features:read:target.xml. */
export const TARGET_XML = [
  `<?xml version="1.0"?>`,
  `<!DOCTYPE target SYSTEM "gdb-target.dtd">`,
  `<target version="1.0">`,
  `<architecture>riscv:rv64</architecture>`,
  `<feature name="org.gnu.gdb.riscv.cpu">`,
  ...X_NAMES.map((n, i) => `<reg name="${n}" bitsize="64" type="${i === 1 ? "code_ptr" : i === 2 || i === 8 ? "data_ptr" : "int"}" regnum="${i}"/>`),
  `<reg name="pc" bitsize="64" type="code_ptr" regnum="${REG_PC}"/>`,
  `</feature>`,
  `<feature name="org.gnu.gdb.riscv.fpu">`,
  ...F_NAMES.map((n, i) => `<reg name="${n}" bitsize="64" type="ieee_double" regnum="${REG_F0 + i}"/>`),
  `<reg name="fflags" bitsize="32" type="int" regnum="${REG_CSR0 + 1}"/>`,
  `<reg name="frm" bitsize="32" type="int" regnum="${REG_CSR0 + 2}"/>`,
  `<reg name="fcsr" bitsize="32" type="int" regnum="${REG_CSR0 + 3}"/>`,
  `</feature>`,
  `<feature name="org.gnu.gdb.riscv.csr">`,
  ...CSRS.map(([n, c]) => `<reg name="${n}" bitsize="64" type="int" regnum="${REG_CSR0 + c}"/>`),
  `</feature>`,
  `<feature name="org.gnu.gdb.riscv.virtual">`,
  `<reg name="priv" bitsize="64" type="int" regnum="${REG_PRIV}"/>`,
  `</feature>`,
  `</target>`,
].join("\n");

/** A register's value as GDB's packets carry it: little-endian hex, 4 or 8 bytes. */
function regHex(n: number, v: bigint): string {
  const bytes = NARROW.has(n) ? 4 : 8;
  let s = "";
  for (let i = 0; i < bytes; i++) s += hex2(Number((v >> BigInt(i * 8)) & 0xffn));
  return s;
}
function parseRegHex(n: number, text: string): bigint | null {
  const bytes = NARROW.has(n) ? 4 : 8;
  if (text.length !== bytes * 2 || !/^[0-9a-fA-F]+$/.test(text)) return null;
  let v = 0n;
  for (let i = bytes - 1; i >= 0; i--) v = (v << 8n) | BigInt(parseInt(text.slice(i * 2, i * 2 + 2), 16));
  return v;
}
const isReg = (n: number) => (n >= 0 && n <= REG_PC + 32) || (n >= REG_CSR0 && n <= REG_PRIV);

// A hex number of at most 16 digits (an address), or null.
function hexNum(text: string | undefined): bigint | null {
  return text !== undefined && /^[0-9a-fA-F]{1,16}$/.test(text) ? BigInt(`0x${text}`) : null;
}
function toHex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += hex2(b);
  return s;
}
function fromHex(text: string): Uint8Array | null {
  if (text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text)) return null;
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/** Packet data as bytes, latin1 (binary packets, X, carry bytes past 0x7f). */
const latin1 = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));

// Error replies, with the errno numbers QEMU's stub uses.
const E_INVAL = "E16"; // EINVAL (22)
const E_FAULT = "E0e"; // EFAULT (14)
const E_NOSPC = "E1c"; // ENOSPC (28): no more breakpoints

/**
 * One GDB connection. Feed it what the client sends (input); it writes replies through `send`.
 * Commands run one at a time; Ctrl-C (0x03) is taken at once.
 */
export class GdbSession {
  private buf = "";
  private noAck = false;
  private queue: Promise<void> = Promise.resolve();
  private closed = false;
  /** The thread (hart + 1) g/m/p/... act on (Hg) and the one s/c act on (Hc). */
  private gThread = 1;
  private cThread = 1;
  /** The last stop (hart), for '?' and the replies. */
  private lastStop: { hart: number; reply: string } | null = null;
  /** While the VM runs for a c/s: how its stop is told. */
  private waiting: ((reply: string) => void) | null = null;
  private readonly breakpoints = new Set<bigint>();
  private watches: Watch[] = [];
  private swbreak = false;
  private hwbreak = false;
  private readonly unsubscribe: () => void;
  private exitCode: number | null = null;

  constructor(private readonly target: GdbTarget, private readonly send: (bytes: Uint8Array) => void) {
    this.unsubscribe = target.onDebugStop((stop) => this.stopped(this.stopReply(stop), stop.hart));
    void target.ended.then((code) => {
      this.exitCode = code;
      this.stopped(`W${hex2(code & 0xff)}`, 0);
    });
    // As QEMU's: a debugger connecting stops the machine.
    this.enqueue(async () => {
      if (this.target.state() === "running") await this.target.pause();
    });
  }

  /** Bytes from the client (latin1 text: the protocol is 8-bit). */
  input(text: string): void {
    for (const ch of text) {
      if (this.buf.length === 0) {
        if (ch === "\x03") { this.interrupt(); continue; }
        if (ch !== "$") continue; // acks ('+', '-') and noise between packets
      }
      this.buf += ch;
      const hash = this.buf.length - 3;
      if (hash > 0 && this.buf[hash] === "#") {
        const packet = this.buf;
        this.buf = "";
        this.packet(packet);
      } else if (this.buf.length > PACKET_SIZE * 2 + 4) {
        this.buf = ""; // overlong: dropped, and GDB asked to send again
        if (!this.noAck) this.send(latin1("-"));
      }
    }
  }

  /** The client went away: its breakpoints go, and the VM runs on (as QEMU's stub does). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe();
    this.enqueue(() => this.release());
  }

  private async release(): Promise<void> {
    this.breakpoints.clear();
    this.watches = [];
    const s = this.target.state();
    if (s === "stopped" || s === "failed") return;
    await this.target.debug({ op: "breakpoints", pcs: [] });
    await this.target.debug({ op: "watches", list: [] });
    await this.target.debug({ op: "hold", harts: [] });
    if (s === "paused") await this.target.resume();
  }

  private packet(raw: string): void {
    const data = raw.slice(1, -3);
    const sum = parseInt(raw.slice(-2), 16);
    let mine = 0;
    for (let i = 0; i < data.length; i++) mine = (mine + data.charCodeAt(i)) & 0xff;
    if (!this.noAck) {
      if (Number.isNaN(sum) || sum !== mine) {
        this.send(latin1("-"));
        return;
      }
      this.send(latin1("+"));
    } else if (Number.isNaN(sum) || sum !== mine) return; // no-ack mode: a corrupt packet is dropped
    this.enqueue(() => this.command(data));
  }

  private enqueue(work: () => Promise<void> | void): void {
    // A request the VM could not answer (it ended meanwhile): the client hears an error.
    this.queue = this.queue.then(work).catch(() => this.reply("E01"));
  }

  private reply(data: string): void {
    if (this.closed) return;
    let sum = 0;
    let out = "";
    for (const ch of data) {
      // '$', '#' and '}' are escaped in replies ('*' too: it would read as run-length encoding).
      const bytes = ch === "$" || ch === "#" || ch === "}" || ch === "*" ? `}${String.fromCharCode(ch.charCodeAt(0) ^ 0x20)}` : ch;
      for (const b of bytes) sum = (sum + b.charCodeAt(0)) & 0xff;
      out += bytes;
    }
    this.send(latin1(`$${out}#${hex2(sum)}`));
  }

  // ---- stops ----

  private stopReply(stop: DebugStop): string {
    const thread = `thread:${hex2(stop.hart + 1)};`;
    if (stop.kind === 4) {
      if (stop.trigger < 0) return `T05${this.swbreak ? "swbreak:;" : ""}${thread}`;
      return `T05${this.hwbreak ? "hwbreak:;" : ""}${thread}`;
    }
    // The watchpoint that covers the address, by the kind GDB set.
    const w = this.watches.find((x) => x.kind !== "exec" && stop.addr >= x.addr && stop.addr < x.addr + BigInt(Math.max(1, x.len)));
    const what = w?.kind === "read" ? "rwatch" : w?.kind === "access" ? "awatch" : "watch";
    return `T05${what}:${stop.addr.toString(16)};${thread}`;
  }

  // The VM stopped (a breakpoint, Ctrl-C, its end): tell a client waiting for it.
  private stopped(reply: string, hart: number): void {
    if (!reply.startsWith("W")) {
      this.lastStop = { hart, reply };
      this.gThread = this.cThread = hart + 1;
    }
    const w = this.waiting;
    this.waiting = null;
    w?.(reply);
  }

  private interrupt(): void {
    if (!this.waiting) return;
    void this.target.pause().then(
      () => this.stopped(`T02thread:${hex2(this.cThread)};`, this.cThread - 1),
      () => { /* it ended: ended tells */ },
    );
  }

  // Run the VM (the harts in `only`, the others held stopped; all when null) until it stops; the stop reply is sent then.
  private async resume(only: Set<number> | null = null): Promise<void> {
    if (this.exitCode !== null) return this.reply(`W${hex2(this.exitCode & 0xff)}`);
    const held = only ? Array.from({ length: this.target.harts }, (_, h) => h).filter((h) => !only.has(h)) : [];
    await this.target.debug({ op: "hold", harts: held });
    const stop = new Promise<string>((resolve) => { this.waiting = resolve; });
    await this.target.resume();
    this.reply(await stop);
  }

  private async step(hart: number): Promise<void> {
    if (this.exitCode !== null) return this.reply(`W${hex2(this.exitCode & 0xff)}`);
    const stop = (await this.target.debug({ op: "step", hart })) as DebugStop | null;
    const s = this.target.state();
    if (s === "stopped" || s === "failed") {
      this.exitCode = await this.target.ended;
      return this.reply(`W${hex2(this.exitCode & 0xff)}`);
    }
    const reply = stop ? this.stopReply(stop) : `T05thread:${hex2(hart + 1)};`;
    this.lastStop = { hart, reply };
    this.gThread = this.cThread = hart + 1;
    this.reply(reply);
  }

  // ---- commands ----

  private hart(thread: number): number {
    return thread - 1;
  }

  private async command(p: string): Promise<void> {
    if (this.closed) return;
    const c = p[0];
    switch (c) {
      case "?":
        if (this.exitCode !== null) return this.reply(`W${hex2(this.exitCode & 0xff)}`);
        return this.reply(this.lastStop?.reply ?? `T05thread:${hex2(this.cThread)};`);
      case "g": return this.readAll();
      case "G": return this.writeAll(p.slice(1));
      case "p": return this.readOne(p.slice(1));
      case "P": return this.writeOne(p.slice(1));
      case "m": return this.readMemory(p.slice(1));
      case "M": return this.writeMemory(p.slice(1), false);
      case "X": return this.writeMemory(p.slice(1), true);
      case "Z": case "z": return this.breakpoint(c === "Z", p.slice(1));
      case "c": case "C": return this.resume();
      case "s": case "S": return this.step(this.hart(this.cThread));
      case "H": return this.setThread(p.slice(1));
      case "T": {
        const t = hexNum(p.slice(1));
        return this.reply(t !== null && t >= 1n && t <= BigInt(this.target.harts) ? "OK" : "E01");
      }
      case "k":
        this.target.kill();
        return;
      case "D":
        await this.detach();
        return;
      case "q": case "Q": return this.query(p);
      case "v": return this.vPacket(p);
      default:
        return this.reply(""); // not supported
    }
  }

  private async readRegs(regs: number[]): Promise<(bigint | null)[]> {
    return (await this.target.debug({ op: "read-registers", hart: this.hart(this.gThread), regs })) as (bigint | null)[];
  }

  private async readAll(): Promise<void> {
    const regs = Array.from({ length: REG_PC + 1 }, (_, i) => i);
    const values = await this.readRegs(regs);
    this.reply(values.map((v, i) => regHex(i, v ?? 0n)).join(""));
  }

  private async writeAll(text: string): Promise<void> {
    if (text.length !== (REG_PC + 1) * 16) return this.reply(E_INVAL);
    const values = Array.from({ length: REG_PC + 1 }, (_, i) => parseRegHex(i, text.slice(i * 16, i * 16 + 16)));
    if (values.some((v) => v === null)) return this.reply(E_INVAL);
    for (let i = 1; i <= REG_PC; i++) {
      await this.target.debug({ op: "write-register", hart: this.hart(this.gThread), reg: i, value: values[i]! });
    }
    this.reply("OK");
  }

  private async readOne(arg: string): Promise<void> {
    const n = hexNum(arg);
    if (n === null || n > BigInt(REG_PRIV) || !isReg(Number(n))) return this.reply(E_INVAL);
    const [v] = await this.readRegs([Number(n)]);
    this.reply(v === null || v === undefined ? E_INVAL : regHex(Number(n), v));
  }

  private async writeOne(arg: string): Promise<void> {
    const eq = arg.indexOf("=");
    const n = hexNum(arg.slice(0, eq));
    if (eq < 0 || n === null || n > BigInt(REG_PRIV) || !isReg(Number(n))) return this.reply(E_INVAL);
    const v = parseRegHex(Number(n), arg.slice(eq + 1));
    if (v === null) return this.reply(E_INVAL);
    const ok = await this.target.debug({ op: "write-register", hart: this.hart(this.gThread), reg: Number(n), value: v });
    this.reply(ok ? "OK" : E_INVAL);
  }

  // "ADDR,LEN" (the length at most what a reply can carry).
  private addrLen(text: string, maxLen: number): { addr: bigint; len: number } | null {
    const [a, l, extra] = text.split(",");
    const addr = hexNum(a);
    const len = hexNum(l);
    if (extra !== undefined || addr === null || len === null || len > BigInt(maxLen)) return null;
    return { addr, len: Number(len) };
  }

  private async readMemory(arg: string): Promise<void> {
    const r = this.addrLen(arg, PACKET_SIZE / 2);
    if (!r) return this.reply(E_INVAL);
    const bytes = (await this.target.debug({ op: "read-memory", hart: this.hart(this.gThread), addr: r.addr, len: r.len })) as Uint8Array | null;
    this.reply(bytes ? toHex(bytes) : E_FAULT);
  }

  private async writeMemory(arg: string, binary: boolean): Promise<void> {
    const colon = arg.indexOf(":");
    const r = colon < 0 ? null : this.addrLen(arg.slice(0, colon), PACKET_SIZE);
    if (!r) return this.reply(E_INVAL);
    const body = arg.slice(colon + 1);
    let data: Uint8Array | null;
    if (binary) {
      // X: '}' escapes the next byte (xor 0x20).
      const out: number[] = [];
      for (let i = 0; i < body.length; i++) {
        let b = body.charCodeAt(i);
        if (b === 0x7d) {
          if (++i >= body.length) return this.reply(E_INVAL);
          b = body.charCodeAt(i) ^ 0x20;
        }
        if (b > 0xff) return this.reply(E_INVAL);
        out.push(b);
      }
      data = Uint8Array.from(out);
    } else data = fromHex(body);
    if (!data || data.length !== r.len) return this.reply(E_INVAL);
    if (r.len === 0) return this.reply("OK"); // GDB's probe for X
    const ok = await this.target.debug({ op: "write-memory", hart: this.hart(this.gThread), addr: r.addr, data });
    this.reply(ok ? "OK" : E_FAULT);
  }

  // Z/z TYPE,ADDR,KIND: 0 software breakpoint, 1 hardware breakpoint, 2 write, 3 read, 4 access watchpoint.
  private async breakpoint(insert: boolean, arg: string): Promise<void> {
    const [t, a, k, ...rest] = arg.split(",");
    const addr = hexNum(a);
    const kind = hexNum(k?.split(";")[0]);
    if (rest.length || addr === null || kind === null || kind > 0x100000n || !/^[0-4]$/.test(t ?? "")) return this.reply(E_INVAL);
    const type = Number(t);
    if (type === 0) {
      if (insert) {
        if (!this.breakpoints.has(addr) && this.breakpoints.size >= MAX_BREAKPOINTS) return this.reply(E_NOSPC);
        this.breakpoints.add(addr);
      } else this.breakpoints.delete(addr);
      await this.target.debug({ op: "breakpoints", pcs: [...this.breakpoints] });
      return this.reply("OK");
    }
    const w: Watch = { kind: (["exec", "write", "read", "access"] as const)[type - 1]!, addr, len: type === 1 ? 1 : Number(kind) };
    const same = (x: Watch) => x.kind === w.kind && x.addr === w.addr && x.len === w.len;
    const next = insert ? [...this.watches, w] : this.watches.filter((x) => !same(x));
    if (!insert && next.length === this.watches.length) return this.reply("OK");
    const ok = (await this.target.debug({ op: "watches", list: next })) as boolean;
    if (!ok) return this.reply(E_NOSPC); // GDB falls back (software watchpoints) or says so
    this.watches = next;
    this.reply("OK");
  }

  private setThread(arg: string): void {
    const op = arg[0];
    const id = arg.slice(1);
    const t = id === "-1" ? -1 : hexNum(id);
    if ((op !== "g" && op !== "c") || t === null) return this.reply(E_INVAL);
    const n = Number(t);
    if (n > this.target.harts) return this.reply(E_INVAL);
    // 0 (any) and -1 (all) keep the thread we have.
    if (n >= 1) {
      if (op === "g") this.gThread = n;
      else this.cThread = n;
    }
    this.reply("OK");
  }

  // D: the breakpoints go and the VM runs on.
  private async detach(): Promise<void> {
    this.reply("OK");
    await this.release();
  }

  private query(p: string): void {
    const [name, ...args] = p.split(":");
    const rest = args.join(":");
    switch (name) {
      case "qSupported": {
        const features = rest.split(";");
        this.swbreak = features.includes("swbreak+");
        this.hwbreak = features.includes("hwbreak+");
        return this.reply(`PacketSize=${PACKET_SIZE.toString(16)};qXfer:features:read+;QStartNoAckMode+;vContSupported+;swbreak+;hwbreak+`);
      }
      case "QStartNoAckMode":
        this.reply("OK");
        this.noAck = true;
        return;
      case "qXfer": {
        const [object, op, annex, range] = args;
        if (object !== "features" || op !== "read") return this.reply("");
        if (annex !== "target.xml") return this.reply(E_INVAL);
        const [o, l] = (range ?? "").split(",");
        const off = hexNum(o), len = hexNum(l);
        if (off === null || len === null) return this.reply(E_INVAL);
        const chunk = TARGET_XML.slice(Number(off), Number(off) + Math.min(Number(len), PACKET_SIZE - 16));
        return this.reply(`${Number(off) + chunk.length >= TARGET_XML.length ? "l" : "m"}${chunk}`);
      }
      case "qfThreadInfo":
        return this.reply(`m${Array.from({ length: this.target.harts }, (_, i) => (i + 1).toString(16)).join(",")}`);
      case "qsThreadInfo":
        return this.reply("l");
      case "qC":
        return this.reply(`QC${this.cThread.toString(16)}`);
      case "qAttached":
        return this.reply("1");
      case "qOffsets":
        return this.reply("Text=0;Data=0;Bss=0");
      case "qSymbol":
        return this.reply("OK");
      default:
        if (p.startsWith("qThreadExtraInfo,")) {
          const t = hexNum(p.slice("qThreadExtraInfo,".length));
          if (t === null || t < 1n || t > BigInt(this.target.harts)) return this.reply(E_INVAL);
          return this.reply(toHex(latin1(`hart ${Number(t) - 1}`)));
        }
        return this.reply("");
    }
  }

  private async vPacket(p: string): Promise<void> {
    if (p === "vCont?") return this.reply("vCont;c;C;s;S;t");
    if (p.startsWith("vCont;")) {
      // All-stop: a step for some thread steps that hart (the others stay stopped); otherwise the
      // threads with a continue run (GDB's software single step continues one thread alone).
      let stepHart: number | null = null;
      let all = false;
      const some = new Set<number>();
      for (const action of p.slice(6).split(";")) {
        const [what, thread] = action.split(":");
        const t = thread === undefined || thread === "-1" || thread === "0" ? -1 : hexNum(thread);
        if (t === null || Number(t) > this.target.harts || !what) return this.reply(E_INVAL);
        const a = what[0];
        if (a === "s" || a === "S") {
          if (stepHart === null) stepHart = Number(t) >= 1 ? Number(t) - 1 : this.hart(this.cThread);
        } else if (a === "c" || a === "C") {
          if (t === -1) all = true;
          else some.add(Number(t) - 1);
        } else if (a !== "t") return this.reply(E_INVAL);
      }
      if (stepHart !== null) return this.step(stepHart);
      if (all || some.size) return this.resume(all ? null : some);
      // vCont;t: stop (already stopped in all-stop).
      return this.reply(`T00thread:${hex2(this.cThread)};`);
    }
    if (p.startsWith("vKill")) {
      this.reply("OK");
      this.target.kill();
      return;
    }
    this.reply(""); // vMustReplyEmpty and the rest
  }
}
