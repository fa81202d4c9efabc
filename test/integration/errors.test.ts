// Bad input ends with one clear line on stderr and a non-zero exit, never a stack trace.
import { describe, test, expect, beforeAll } from "vitest";
import { mkdtempSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer, type AddressInfo } from "node:net";
import { runCli } from "./cli";
import { asm } from "../encoder";
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
    expectOneLineError(await runCli(["boot", "--net", "user,model=e1000"]), /--net model=e1000: use ethoc or virtio/);
  });

  test("bad memory size", async () => {
    expectOneLineError(await runCli(["boot", "-m", "lots"]), /invalid memory size 'lots'/);
  });
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
