// The GDB stub (-s, -gdb, --gdb) driven by the real gdb-multiarch in batch mode, as a user
// drives QEMU's: against a bare-metal program (the README's -s -S line verbatim) and against the
// Linux guest's kernel (vmlinux's symbols), and by hand over the socket with malformed and
// hostile packets, which get error replies while the stub goes on.
import { describe, test, expect, beforeAll } from "vitest";
import { spawn, execFileSync } from "node:child_process";
import { connect, type Socket } from "node:net";
import { existsSync } from "node:fs";
import { join, dirname } from "node:path";
import { buildBaremetal } from "../../guests/baremetal/build.mjs";
import { buildLinuxGuest } from "../../guests/linux/build.mjs";
import { Session, freePort } from "./cli";
import { README_QEMU_LINES, qemuArgs } from "./qemu-lines";

const GDB = "gdb-multiarch";
let elf: string;

beforeAll(async () => {
  // Debian's gdb-multiarch (the package of that name) debugs RISC-V; the plain gdb does not.
  execFileSync(GDB, ["--version"], { stdio: "ignore" });
  const { virtPrograms } = await buildBaremetal();
  elf = virtPrograms.gdb;
}, 300_000);

/** Run gdb-multiarch in batch mode with these commands; `interruptAfterMs`: send it SIGINT (Ctrl-C) then. */
function gdb(file: string, commands: string[], opts: { interruptAfterMs?: number; timeoutMs?: number } = {}): Promise<string> {
  const args = ["-batch", "-nx", "-ex", "set pagination off", "-ex", "set confirm off", "-ex", `file ${file}`, ...commands.flatMap((c) => ["-ex", c])];
  const child = spawn(GDB, args, { stdio: ["ignore", "pipe", "pipe"] });
  // Its messages after its output: interleaved, one (a source file it cannot find) could land
  // in the middle of a backtrace line.
  let out = "", err = "";
  child.stdout.on("data", (d: Buffer) => { out += d.toString(); });
  child.stderr.on("data", (d: Buffer) => { err += d.toString(); });
  let killed = false;
  const timers = [setTimeout(() => { killed = true; child.kill("SIGKILL"); }, opts.timeoutMs ?? 60_000)];
  if (opts.interruptAfterMs !== undefined) timers.push(setTimeout(() => child.kill("SIGINT"), opts.interruptAfterMs));
  return new Promise((resolve) => child.on("exit", () => {
    for (const t of timers) clearTimeout(t);
    resolve(out + err + (killed ? `\n[gdb killed: still running after ${(opts.timeoutMs ?? 60_000) / 1000} s]\n` : ""));
  }));
}

/** Wait until something listens on the port (the VM's stub is up). */
async function listening(port: number, session: Session): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (session.child.exitCode !== null) throw new Error(`wasmvisor exited: ${session.out}${session.err}`);
    // Connected, then closed by both ends: the stub (one client at a time) is free again.
    const ok = await new Promise<boolean>((resolve) => {
      let connected = false;
      const s = connect(port, "127.0.0.1", () => { connected = true; s.end(); });
      s.on("error", () => {});
      s.on("close", () => resolve(connected));
    });
    if (ok) return void (await new Promise((r) => setTimeout(r, 200)));
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on ${port}`);
}

describe("gdb-multiarch against a bare-metal guest", () => {
  test(`the README's line (${README_QEMU_LINES.gdb}): breakpoints, backtrace, registers, watchpoint, stepi, memory, Ctrl-C`, async () => {
    // The line verbatim (prog.elf the test's program): -s is tcp::1234, -S waits for the debugger's continue.
    const vm = new Session(["qemu", ...qemuArgs(README_QEMU_LINES.gdb, { "prog.elf": elf })]);
    try {
      await listening(1234, vm);
      // One session, as a user types it; the last continue runs into the spin, which Ctrl-C stops.
      const out = await gdb(elf, [
        "target remote :1234",
        "info registers pc",
        "break gdb_add",
        "continue",
        "bt",
        "info registers a0 a1",
        "p $priv",
        "p/x $misa",
        "p/x $mhartid",
        "delete",
        "hbreak gdb_leaf",
        "continue",
        "delete",
        "watch gdb_watched",
        "continue",
        "delete",
        "p/x $pc",
        "stepi",
        "p/x $pc",
        "stepi",
        "p/x $pc",
        "set var $a2 = 0x1234",
        "p/x $a2",
        "continue",
        "p gdb_counter > 0",
        "p gdb_result",
        "set var gdb_release = 42",
        "x/1dg &gdb_release",
        "info threads",
        "continue",
      ], { interruptAfterMs: 6000 });
      expect(out).toMatch(/0x0*1000 in \?\? \(\)/); // -S: the reset vector, nothing ran
      expect(out).toMatch(/Breakpoint 1, gdb_add \(a=a@entry=0, b=b@entry=1\)/);
      expect(out).toMatch(/#0 +gdb_add [^\n]*\n#1 +0x[0-9a-f]+ in gdb_leaf \(x=x@entry=0\)[^\n]*\n#2 +0x[0-9a-f]+ in main \(\)/);
      expect(out).toMatch(/a0\s+0x0\s+0\na1\s+0x1\s+1\n/);
      expect(out).toMatch(/\$1 = 3\n/); // M-mode
      expect(out).toMatch(/\$2 = 0x800000000014112d\n/); // misa: RV64 IMAFDCSU
      expect(out).toMatch(/\$3 = 0x0\n/);
      expect(out).toMatch(/Hardware assisted breakpoint 2 at[^\n]*\n\nBreakpoint 2, gdb_leaf \(x=x@entry=1\)/);
      // The watchpoint reports after the store, old and new values, as on QEMU.
      expect(out).toMatch(/Hardware watchpoint 3: gdb_watched\n\nOld value = 0\nNew value = 10\n/);
      // stepi after the store: the call into gdb_add (its first instruction), then one instruction on.
      const [pc0, pc1, pc2] = [...out.matchAll(/\$[456] = (0x[0-9a-f]+)/g)].map((m) => BigInt(m[1]!));
      const gdbAdd = BigInt(/Breakpoint 1 at (0x[0-9a-f]+)/.exec(out)![1]!);
      expect(pc0).not.toBe(gdbAdd);
      expect(pc1).toBe(gdbAdd);
      expect([2n, 4n]).toContain(pc2! - pc1!);
      expect(out).toMatch(/\$7 = 0x1234\n/);
      expect(out).toMatch(/Program received signal SIGINT, Interrupt\.\n[^\n]*in main \(\)/);
      expect(out).toMatch(/\$8 = 1\n\$9 = 55\n/);
      expect(out).toMatch(/<gdb_release>:\s+42\n/);
      expect(out).toMatch(/\* 1 +Thread 1 \(hart 0\) [^\n]*main \(\)/);
      expect(out).toMatch(/\[Inferior 1 \(Remote target\) exited normally\]/);
      expect(await vm.exited).toBe(0);
      expect(vm.out).toMatch(/gdb: sum=55 release=42 spun=1/);
    } finally {
      vm.kill();
    }
  }, 90_000);
});

describe("gdb-multiarch against the Linux guest", () => {
  let linux: { kernel: string; initramfs: string };
  beforeAll(async () => {
    linux = await buildLinuxGuest({ log: (line: string) => console.error(line) });
  }, 3_600_000);

  test("-S, break at start_kernel, a watchpoint on jiffies, a syscall's backtrace, two harts as threads, kill", async () => {
    const vmlinux = join(dirname(linux.kernel), "vmlinux");
    expect(existsSync(vmlinux)).toBe(true);
    const port = await freePort();
    const vm = new Session(["qemu", "-machine", "virt", "-m", "256M", "-smp", "2", "-nographic", "-kernel", linux.kernel, "-initrd", linux.initramfs,
      "-append", "console=ttyS0", "-gdb", `tcp::${port}`, "-S"]);
    try {
      await listening(port, vm);
      const out = await gdb(vmlinux, [
        `target remote :${port}`,
        "break start_kernel",
        "continue",
        "p $priv",
        "p/x $satp",
        "x/2i $pc",
        "stepi",
        "p/x $pc",
        "delete",
        "watch *(long *)&jiffies",
        "continue",
        "bt 2",
        "delete",
        "break do_sys_openat2",
        "continue",
        "bt 3",
        "stepi",
        "x/i $pc",
        "info threads",
        "kill",
      ]);
      expect(out).toMatch(/Breakpoint 1, 0xffffffff[0-9a-f]+ in start_kernel \(\)/);
      expect(out).toMatch(/\$1 = 1\n/); // S-mode
      expect(out).toMatch(/\$2 = 0x[89][0-9a-f]{15}\n/); // Sv39 or Sv48 on
      expect(out).toMatch(/=> 0xffffffff[0-9a-f]+ <start_kernel>:/);
      expect(out).toMatch(/\$3 = 0xffffffff[0-9a-f]+\n/);
      expect(out).toMatch(/Hardware watchpoint 2: \*\(long \*\)&jiffies\n\nOld value = (\d+)\nNew value = \d+/);
      const [, oldV, newV] = /Old value = (\d+)\nNew value = (\d+)/.exec(out)!;
      expect(BigInt(newV!) - BigInt(oldV!)).toBe(1n); // a tick
      // (It hung once in a full run, 60 s waiting for this breakpoint: all of gdb's output and the
      // guest's console's end, to see where, should it again.)
      expect(out, `gdb:\n${out}\nthe guest's console, its end:\n${vm.out.slice(-2000)}`)
        .toMatch(/Breakpoint 3, 0xffffffff[0-9a-f]+ in do_sys_openat2 \(\)\n#0 [^\n]*do_sys_openat2 \(\)\n#1 [^\n]*in do_sys_open/);
      // GDB steps a RISC-V hart by a breakpoint on the next instruction and a continue of that
      // thread alone (vCont;c:N): the other hart stays stopped.
      const [, hitThread, bp] = /Thread (\d) hit Breakpoint 3, (0x[0-9a-f]+) in do_sys_openat2/.exec(out)!;
      const [, stepped] = /=> (0xffffffff[0-9a-f]+) <(do_sys_openat2\+\d+|build_open_flags)>:/.exec(out)!;
      expect(BigInt(stepped!)).not.toBe(BigInt(bp!));
      expect(out).toMatch(new RegExp(`\\* ${hitThread} +Thread ${hitThread} \\(hart ${Number(hitThread) - 1}\\)`));
      expect(out).toMatch(/Thread 1 \(hart 0\)[\s\S]*Thread 2 \(hart 1\)/);
      expect(out).toMatch(/\[Inferior 1 \(Remote target\) killed\]/);
      expect(await vm.exited).toBe(0); // k ends the emulator, as QEMU's
    } finally {
      vm.kill();
    }
  }, 120_000);
});

/** A raw client of the remote protocol, for what gdb itself never sends. */
class RawClient {
  private data = "";
  private constructor(readonly sock: Socket) {
    sock.setEncoding("latin1");
    sock.on("data", (d: string) => { this.data += d; });
  }
  static open(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = connect(port, "127.0.0.1", () => resolve(new RawClient(s)));
      s.on("error", reject);
    });
  }
  write(bytes: string): void {
    this.sock.write(Buffer.from(bytes, "latin1"));
  }
  packet(body: string): void {
    let sum = 0;
    for (const c of Buffer.from(body, "latin1")) sum = (sum + c) & 0xff;
    this.write(`$${body}#${sum.toString(16).padStart(2, "0")}`);
  }
  /** The next reply packet's body (acks before it are dropped), within `ms`. */
  async reply(ms = 10_000): Promise<string> {
    const t0 = Date.now();
    for (;;) {
      const m = /^[+-]*\$([^#]*)#([0-9a-f]{2})/.exec(this.data);
      if (m) {
        this.data = this.data.slice(m[0].length);
        return m[1]!;
      }
      if (Date.now() - t0 > ms) throw new Error(`no reply; have ${JSON.stringify(this.data.slice(0, 200))}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  /** The acks ('+', '-') that arrived, once there are `count` (or after a moment, for none). */
  async acks(count: number): Promise<string> {
    const t0 = Date.now();
    while (Date.now() - t0 < (count ? 10_000 : 300) && /^[+-]*/.exec(this.data)![0].length < Math.max(count, 1)) {
      await new Promise((r) => setTimeout(r, 10));
    }
    const m = /^[+-]*/.exec(this.data)![0];
    this.data = this.data.slice(m.length);
    return m;
  }
  async ask(body: string): Promise<string> {
    this.packet(body);
    return this.reply();
  }
}

describe("breakpoints and watchpoints in translated code", () => {
  test("--jit all: a breakpoint inside a hot translated block, a watchpoint on what it stores and a read watchpoint on what it loads stop the hart there", async () => {
    const nm = execFileSync("riscv64-unknown-elf-nm", [elf]).toString();
    const counter = /^([0-9a-f]+) [BbDdSs] gdb_counter$/m.exec(nm)![1]!;
    const port = await freePort();
    const vm = new Session(["qemu", "--jit", "all", "-machine", "virt", "-bios", "none", "-kernel", elf, "-m", "64M", "-nographic", "-gdb", `tcp::${port}`, "-S"]);
    try {
      await listening(port, vm);
      const c = await RawClient.open(port);
      const pcOf = async () => BigInt(`0x${(await c.ask("p20")).match(/../g)!.reverse().join("")}`);
      // Run into the spin (translated by now), stop it.
      c.packet("c");
      await new Promise((r) => setTimeout(r, 1500));
      c.write("\x03");
      expect(await c.reply()).toBe("T02thread:01;");
      // A breakpoint on the instruction after where it stopped (a block's first instruction):
      // inside the translated block, so the translation must not run through it.
      const stopped = await pcOf();
      const pc = stopped + ((parseInt((await c.ask(`m${stopped.toString(16)},1`)), 16) & 3) === 3 ? 4n : 2n);
      expect(await c.ask(`Z0,${pc.toString(16)},2`)).toBe("OK");
      expect(await c.ask("c")).toMatch(/^T05(swbreak:;)?thread:01;$/);
      expect(await pcOf()).toBe(pc);
      expect(await c.ask(`z0,${pc.toString(16)},2`)).toBe("OK");
      // A write watchpoint on the counter: reported after the store, its new value in memory.
      const before = BigInt(`0x${(await c.ask(`m${counter},8`)).match(/../g)!.reverse().join("")}`);
      expect(await c.ask(`Z2,${counter},8`)).toBe("OK");
      expect(await c.ask("c")).toBe(`T05watch:${BigInt(`0x${counter}`).toString(16)};thread:01;`);
      const after = BigInt(`0x${(await c.ask(`m${counter},8`)).match(/../g)!.reverse().join("")}`);
      expect(after).toBe(before + 1n);
      expect(await c.ask(`z2,${counter},8`)).toBe("OK");
      // A read watchpoint on the counter, which each turn loads after gdb_release on the same
      // page: that first load must not make the page's loads fast again.
      const release = /^([0-9a-f]+) [BbDdSs] gdb_release$/m.exec(nm)![1]!;
      expect(BigInt(`0x${release}`) >> 12n).toBe(BigInt(`0x${counter}`) >> 12n);
      expect(await c.ask(`Z3,${counter},8`)).toBe("OK");
      expect(await c.ask("c")).toBe(`T05rwatch:${BigInt(`0x${counter}`).toString(16)};thread:01;`);
      c.packet("k");
      expect(await vm.exited).toBe(0);
    } finally {
      vm.kill();
    }
  }, 60_000);
});

describe("threads", () => {
  test("vCont;c:N runs that hart alone (the others held where they stopped); vCont;c runs them all", async () => {
    const port = await freePort();
    const vm = new Session(["qemu", "-machine", "virt", "-bios", "none", "-kernel", elf, "-m", "64M", "-smp", "2", "-nographic", "-gdb", `tcp::${port}`, "-S"]);
    try {
      await listening(port, vm);
      const c = await RawClient.open(port);
      const pcOf = async (thread: number) => {
        expect(await c.ask(`Hg${thread}`)).toBe("OK");
        return BigInt(`0x${(await c.ask("p20")).match(/../g)!.reverse().join("")}`);
      };
      expect(await c.ask("qfThreadInfo")).toBe("m1,2");
      expect(await c.ask("T2")).toBe("OK");
      expect(await c.ask("qThreadExtraInfo,2")).toBe(Buffer.from("hart 1").toString("hex"));
      // Only hart 1 runs (it parks in WFI); hart 0 stays at the reset vector.
      c.packet("vCont;c:2");
      await new Promise((r) => setTimeout(r, 1000));
      c.write("\x03");
      expect(await c.reply()).toMatch(/^T02thread:0[12];$/);
      expect(await pcOf(1)).toBe(0x1000n);
      expect(await pcOf(2)).not.toBe(0x1000n);
      // Now all run: hart 0 goes into the program.
      c.packet("vCont;c");
      await new Promise((r) => setTimeout(r, 1000));
      c.write("\x03");
      expect(await c.reply()).toMatch(/^T02thread:0[12];$/);
      expect((await pcOf(1)) >= 0x80000000n).toBe(true);
      c.packet("k");
      expect(await vm.exited).toBe(0);
    } finally {
      vm.kill();
    }
  }, 60_000);
});

describe("the stub by hand: the protocol, malformed and hostile packets", () => {
  test("checksums and acks, no-ack mode, the target description, errors for bad arguments, binary writes, Ctrl-C; the stub survives junk", async () => {
    const port = await freePort();
    const vm = new Session(["qemu", "-machine", "virt", "-bios", "none", "-kernel", elf, "-m", "64M", "-nographic", "-gdb", `tcp::${port}`, "-S"]);
    try {
      await listening(port, vm);
      const c = await RawClient.open(port);
      // A bad checksum: '-', nothing done; a good one '+' and the reply.
      c.write("$?#00");
      expect(await c.acks(1)).toBe("-");
      expect(await c.ask("?")).toBe("T05thread:01;");
      const features = await c.ask("qSupported:multiprocess+;swbreak+;hwbreak+;xmlRegisters=i386");
      expect(features).toMatch(/^PacketSize=4000;qXfer:features:read\+;QStartNoAckMode\+/);
      // The target description, in pieces as GDB reads it.
      let xml = "";
      for (let off = 0; ; ) {
        const r = await c.ask(`qXfer:features:read:target.xml:${off.toString(16)},200`);
        xml += r.slice(1);
        off += r.length - 1;
        if (r[0] === "l") break;
        expect(r[0]).toBe("m");
      }
      expect(xml).toMatch(/^<\?xml[\s\S]*<architecture>riscv:rv64<\/architecture>[\s\S]*org\.gnu\.gdb\.riscv\.cpu[\s\S]*org\.gnu\.gdb\.riscv\.fpu[\s\S]*org\.gnu\.gdb\.riscv\.csr[\s\S]*<\/target>$/);
      expect(await c.ask("qXfer:features:read:other.xml:0,100")).toBe("E16");
      // Registers: g is x0-x31 and pc, 16 hex digits each; pc at the reset vector.
      const g = await c.ask("g");
      expect(g.length).toBe(33 * 16);
      expect(g.slice(32 * 16)).toBe("0010000000000000");
      expect(await c.ask("p20")).toBe("0010000000000000");
      expect(await c.ask("p1041")).toBe("0300000000000000"); // priv (4161): M
      expect(await c.ask("p2000")).toBe("E16"); // no register 0x2000
      expect(await c.ask("pzz")).toBe("E16");
      expect(await c.ask("G00")).toBe("E16");
      expect(await c.ask("P5=12")).toBe("E16"); // too short a value
      expect(await c.ask("P5=efbeadde00000000")).toBe("OK");
      expect(await c.ask("p5")).toBe("efbeadde00000000");
      // Memory: RAM read and written (binary X with escapes); an unmapped address is EFAULT.
      const ram = 0x80100000;
      expect(await c.ask(`X${ram.toString(16)},4:\x7d\x5d\x00`)).toBe("E16"); // 2 bytes for 4
      expect(await c.ask(`X${ram.toString(16)},4:\x7d\x5d\x7d\x03\x7d\x04\x00`)).toBe("OK");
      expect(await c.ask(`m${ram.toString(16)},4`)).toBe("7d232400");
      expect(await c.ask(`M${ram.toString(16)},2:abcd`)).toBe("OK");
      expect(await c.ask(`m${ram.toString(16)},4`)).toBe("abcd2400");
      expect(await c.ask("m40000000,4")).toBe("E0e");
      expect(await c.ask("mffffffffffffffff,10")).toBe("E0e");
      expect(await c.ask("m80000000,ffffffff")).toBe("E16"); // more than a packet holds
      expect(await c.ask("m80000000")).toBe("E16");
      expect(await c.ask("M80000000,2:zz")).toBe("E16");
      // Breakpoints: a bad type or address, and more watchpoints than triggers.
      expect(await c.ask("Z9,80000000,4")).toBe("E16");
      expect(await c.ask("Z0,xyz,4")).toBe("E16");
      expect(await c.ask("Z2,80100000,8")).toBe("OK");
      expect(await c.ask("Z2,80100010,8")).toBe("OK");
      expect(await c.ask("Z2,80100020,8")).toBe("OK");
      expect(await c.ask("Z2,80100030,8")).toBe("OK");
      expect(await c.ask("Z2,80100040,8")).toBe("E1c"); // 4 triggers
      for (const a of ["80100000", "80100010", "80100020", "80100030"]) expect(await c.ask(`z2,${a},8`)).toBe("OK");
      // Threads: one per hart.
      expect(await c.ask("qfThreadInfo")).toBe("m1");
      expect(await c.ask("qsThreadInfo")).toBe("l");
      expect(await c.ask("Hg2")).toBe("E16");
      expect(await c.ask("Hg1")).toBe("OK");
      expect(await c.ask("T2")).toBe("E01");
      expect(await c.ask("vCont?")).toBe("vCont;c;C;s;S;t");
      expect(await c.ask("vCont;x")).toBe("E16");
      expect(await c.ask("vMustReplyEmpty")).toBe("");
      expect(await c.ask("Qfoo")).toBe("");
      // A packet longer than PacketSize is dropped with '-', and the stub goes on.
      c.write(`$m${"0".repeat(0x9000)}`);
      expect(await c.acks(1)).toBe("-");
      c.write("#00");
      // Junk between packets, and random bytes, are ignored.
      c.write("garbage+++---\x00\xff}}}##");
      for (let i = 0; i < 200; i++) c.write(String.fromCharCode(...Array.from({ length: 64 }, (_, k) => (i * 131 + k * 71) & 0xff)).replace(/[$\x03]/g, ""));
      expect(await c.acks(0)).toBe("");
      // No-ack mode: replies come without '+'.
      expect(await c.ask("QStartNoAckMode")).toBe("OK");
      c.packet("?");
      await new Promise((r) => setTimeout(r, 100));
      expect(await c.reply()).toBe("T05thread:01;");
      // Continue, then Ctrl-C: the VM stops with SIGINT and its pc is the program's.
      c.packet("vCont;c");
      await new Promise((r) => setTimeout(r, 1000));
      c.write("\x03");
      expect(await c.reply()).toBe("T02thread:01;");
      const pc = BigInt(`0x${(await c.ask("p20")).match(/../g)!.reverse().join("")}`);
      expect(pc >= 0x80000000n && pc < 0x80100000n).toBe(true);
      // A single step moves pc by one instruction.
      expect(await c.ask("vCont;s:1")).toBe("T05thread:01;");
      const pc2 = BigInt(`0x${(await c.ask("p20")).match(/../g)!.reverse().join("")}`);
      expect(pc2).not.toBe(pc);
      // A second client is refused while the first holds the stub.
      const other = await RawClient.open(port);
      await new Promise<void>((resolve) => other.sock.on("close", () => resolve()));
      // Detach: the VM runs on (it spins); the emulator is still there for the next client.
      expect(await c.ask("D")).toBe("OK");
      c.sock.end();
      await new Promise<void>((resolve) => c.sock.on("close", () => resolve()));
      await new Promise((r) => setTimeout(r, 200));
      const again = await RawClient.open(port);
      expect(await again.ask("?")).toMatch(/^T0[25]thread:01;$/);
      again.write("+");
      again.packet("k");
      expect(await vm.exited).toBe(0);
    } finally {
      vm.kill();
    }
  }, 90_000);
});
