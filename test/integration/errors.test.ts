// Bad input ends with one clear line on stderr and a non-zero exit, never a stack trace.
import { describe, test, expect, beforeAll } from "vitest";
import { mkdtempSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer, type AddressInfo } from "node:net";
import { execFileSync } from "node:child_process";
import { runCli } from "./cli";
import { asm } from "../../host/util/riscv-asm";
import { buildBaremetal } from "../../guests/baremetal/build.mjs";

const UBOOT_ELF = "/usr/lib/u-boot/qemu-riscv64_smode/uboot.elf";
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "wasmvisor-errors-"));
});

function expectOneLineError(r: { code: number; err: string; out: string }, pattern: RegExp): void {
  expect(r.code).not.toBe(0);
  const lines = r.err.trim().split("\n");
  expect(lines[0]).toMatch(/^wasmvisor: /);
  expect(lines[0]).toMatch(pattern);
  expect(r.err).not.toMatch(/^\s+at /m); // no stack trace
  expect(lines.length).toBeLessThanOrEqual(2); // the error, and at most one hint line
}

describe("malformed input", () => {
  test("truncated ELF", async () => {
    const f = join(dir, "truncated.elf");
    writeFileSync(f, readFileSync(UBOOT_ELF).subarray(0, 200));
    expectOneLineError(await runCli(["boot", "--bios", "none", "--kernel", f]), /truncated|outside the file|beyond/i);
  });

  test("ELF for another machine", async () => {
    expectOneLineError(await runCli(["boot", "--bios", "none", "--kernel", "/bin/true"]), /x86-64|not RISC-V/i);
  });

  test("image larger than RAM", async () => {
    const f = join(dir, "big.bin");
    writeFileSync(f, new Uint8Array(3 << 20));
    expectOneLineError(await runCli(["boot", "--bios", "none", "--kernel", f, "--memory", "2M"]), /does not fit in guest RAM.*--memory/);
  });

  test("unknown flag", async () => {
    const r = await runCli(["boot", "--frobnicate"]);
    expectOneLineError(r, /unknown option '--frobnicate'/);
    expect(r.code).toBe(2);
  });

  test("missing file", async () => {
    expectOneLineError(await runCli(["boot", "--kernel", join(dir, "nope.elf")]), /--kernel .*nope\.elf: no such file/);
  });

  test("hostfwd on a host port that is taken", async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      const r = await runCli(["boot", "--mode", "para", "--kernel", UBOOT_ELF, "--net", `user,hostfwd=tcp::${port}-:80`]);
      expectOneLineError(r, new RegExp(`hostfwd .*${port}.*EADDRINUSE`));
    } finally {
      server.close();
    }
  });

  test("bad --net and --drive options", async () => {
    expectOneLineError(await runCli(["boot", "--net", "tap0"]), /--net .*expected 'user/);
    expectOneLineError(await runCli(["boot", "--drive", "file=/tmp/x.img,cache=none"]), /--drive: unknown option 'cache'/);
    expectOneLineError(await runCli(["boot", "--drive", "file=/tmp/x.img,if=scsi"]), /--drive if=scsi: use ide or virtio/);
    expectOneLineError(await runCli(["boot", "--drive", "file=/tmp/x.img,format=vmdk"]), /--drive format=vmdk: use raw or qcow2/);
    expectOneLineError(await runCli(["boot", "--net", "user,model=e1000"]), /--net model=e1000: use ethoc or virtio/);
  });

  test("the same image attached for writing twice", async () => {
    const img = join(dir, "twice.img");
    writeFileSync(img, new Uint8Array(1 << 20));
    const r = await runCli(["boot", "--bios", "none", "--kernel", UBOOT_ELF, "--drive", `file=${img}`, "--drive", `file=${img},if=ide`]);
    expectOneLineError(r, /--drive .*twice\.img: in use: another drive or VM of this process has it open for writing; .*readonly=on on every side shares it/);
  });

  test("a damaged qcow2 image, and one whose backing file is missing", async () => {
    const img = join(dir, "bad.qcow2");
    const header = new Uint8Array(65536);
    header.set([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3]);
    new DataView(header.buffer).setUint32(20, 30); // cluster_bits 30: 1 GiB clusters
    writeFileSync(img, header);
    expectOneLineError(await runCli(["boot", "--bios", "none", "--kernel", UBOOT_ELF, "--drive", `file=${img}`]), /--drive .*bad\.qcow2: cluster_bits 30 is out of range: clusters must be 512 B to 2 MiB/);
    const over = join(dir, "over.qcow2");
    execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", "-u", "-b", "gone.raw", "-F", "raw", over, "1M"]);
    expectOneLineError(await runCli(["boot", "--bios", "none", "--kernel", UBOOT_ELF, "--drive", `file=${over}`]), /--drive .*over\.qcow2: backing file .*gone\.raw: no such file$/);
  });

  test("a FIFO as kernel or disk is refused at once, /dev/zero is not read", async () => {
    const fifo = join(dir, "fifo");
    execFileSync("mkfifo", [fifo]);
    expectOneLineError(await runCli(["boot", "--bios", "none", "--kernel", fifo]), /--kernel .*fifo: is a FIFO, not a regular file$/);
    expectOneLineError(await runCli(["boot", "--bios", "/dev/zero", "--kernel", UBOOT_ELF]), /--bios \/dev\/zero: is a character device, not a regular file$/);
    expectOneLineError(await runCli(["boot", "--bios", "none", "--kernel", UBOOT_ELF, "--drive", `file=${fifo},readonly=on`]), /--drive .*fifo: is a FIFO, not a regular file or a block device$/);
  });

  test("bad memory size", async () => {
    expectOneLineError(await runCli(["boot", "-m", "lots"]), /invalid memory size 'lots'/);
  });

  test("more memory than a VM can address: the message names the size asked for", async () => {
    // Sizes past 2 GiB once came out of a 32-bit shift (5G said 1024 MiB, 100G said 0 MiB).
    expectOneLineError(await runCli(["boot", "--bios", "none", "--kernel", UBOOT_ELF, "-m", "5G"]), /guest RAM of 5120 MiB is more than one VM can address \(max \d+ MiB\)/);
    expectOneLineError(await runCli(["boot", "--bios", "none", "--kernel", UBOOT_ELF, "-m", "100G"]), /guest RAM of 102400 MiB is more than/);
  });

  test("an ELF whose entry point is outside RAM is refused, not run", async () => {
    // Before, the hart faulted at the entry point for ever, at 100% CPU and without a word.
    const { programs } = await buildBaremetal();
    const bytes = readFileSync(programs.rv64i);
    for (const entry of [0x40000000n, 0x1000n, 0x1_0000_0000_0000n]) {
      const f = join(dir, `entry-${entry.toString(16)}.elf`);
      const patched = Buffer.from(bytes);
      patched.writeBigUInt64LE(entry, 24); // e_entry
      writeFileSync(f, patched);
      expectOneLineError(await runCli(["boot", "--bios", "none", "--kernel", f]), new RegExp(`entry point 0x${entry.toString(16)} is outside guest RAM 0x80000000-0x8fffffff`));
    }
  }, 120_000);

  test("a guest whose trap vector cannot run stops with what it was doing", async () => {
    // csrw mtvec, zero; then an illegal instruction: every trap faults on fetching mtvec.
    const f = join(dir, "trap-loop.bin");
    writeFileSync(f, asm`
      csrw mtvec, zero
      .word 0
    `);
    const r = await runCli(["boot", "--bios", "none", "--kernel", f]);
    expectOneLineError(r, /hart 0 is stuck in a trap loop: every instruction traps, its trap handler's too \(pc 0x0, mcause 0x1, mtval 0x0\)/);
    expect(r.code).toBe(70);
  }, 120_000);
});

describe("exit status comes from the guest", () => {
  test("a test-device failure code becomes the process exit status", async () => {
    // li t0, 0x100000; li t1, (42 << 16) | 0x3333; sw t1, 0(t0); j .
    const f = join(dir, "fail42.bin");
    writeFileSync(f, asm`
      li t0, 0x100000
      li t1, ${(42 << 16) | 0x3333}
      sw t1, 0(t0)
    1: j 1b
    `);
    const r = await runCli(["boot", "--bios", "none", "--kernel", f]);
    expect(r.code).toBe(42);
  });

  test("an HTIF program's exit code and console output (bare-metal rv64i test)", async () => {
    const { programs } = await buildBaremetal();
    const r = await runCli(["boot", "--bios", "none", "--kernel", programs.rv64i]);
    expect(r.out).toMatch(/PASS: rv64i/);
    expect(r.code).toBe(0);
  }, 120_000);
});
