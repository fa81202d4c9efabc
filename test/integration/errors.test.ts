// Bad input ends with one clear line on stderr and a non-zero exit, never a stack trace.
import { describe, test, expect, beforeAll } from "vitest";
import { mkdtempSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli } from "./cli";

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

  test("bad memory size", async () => {
    expectOneLineError(await runCli(["boot", "-m", "lots"]), /invalid memory size 'lots'/);
  });
});
