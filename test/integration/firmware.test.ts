// Boot Debian's firmware through the real CLI, as a user would.
import { describe, test, expect } from "vitest";
import { mkdtempSync, writeFileSync, readFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseFdt } from "../../host/machine/fdt";
import { withSession, type Session } from "./cli";

const FW_JUMP = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin";
const UBOOT_S = "/usr/lib/u-boot/qemu-riscv64_smode/uboot.elf";
const UBOOT_M = "/usr/lib/u-boot/qemu-riscv64/u-boot.bin";

async function interruptAutoboot(s: Session): Promise<number> {
  await s.expect("Hit any key to stop autoboot", 60_000);
  s.send(" ");
  return s.expect("=> ", 30_000);
}

describe("Debian OpenSBI + U-Boot (S-mode)", () => {
  test("banner, prompt, version, bdinfo, Ctrl-A x", async () => {
    await withSession(["boot", "--bios", FW_JUMP, "--kernel", UBOOT_S], async (s) => {
      await s.expect("OpenSBI v1.1");
      await s.expect("Platform Name             : riscv-virtio,wasmvisor");
      await s.expect(/Boot HART Base ISA\s+: rv64imafdc/);
      await s.expect(/Boot HART ISA Extensions\s+: time,sstc/);
      await s.expect("Domain0 Next Mode         : S-mode");
      await s.expect("U-Boot 2023.01");
      await s.expect("CPU:   rv64imafdc_zicntr_zicsr_zifencei_zihpm_zba_zbb_zbs_sstc");
      await s.expect("DRAM:  256 MiB");
      let at = await interruptAutoboot(s);
      s.send("version\r");
      at = await s.expect("U-Boot 2023.01", 10_000, at);
      at = await s.expect("=> ", 10_000, at);
      s.send("bdinfo\r");
      at = await s.expect(/DRAM bank\s+= 0x0*0/, 10_000, at);
      await s.expect(/-> size\s+= 0x0*10000000/, 10_000, at);
      at = await s.expect("=> ", 10_000, at);
      s.send("\x01x");
      expect(await s.exited).toBe(0);
      expect(s.err).toContain("terminated");
    });
  }, 120_000);

  test("poweroff from U-Boot ends the process with code 0", async () => {
    await withSession(["boot", "--kernel", UBOOT_S, "-m", "128M"], async (s) => {
      await interruptAutoboot(s);
      s.send("poweroff\r");
      expect(await s.exited).toBe(0);
    });
  }, 120_000);
});

describe("M-mode U-Boot with --bios none", () => {
  test("reaches the prompt and answers version", async () => {
    await withSession(["boot", "--bios", "none", "--kernel", UBOOT_M], async (s) => {
      await s.expect("U-Boot 2023.01");
      const at = await interruptAutoboot(s);
      s.send("version\r");
      await s.expect("riscv64-linux-gnu-gcc", 10_000, at);
      s.send("\x01x");
      expect(await s.exited).toBe(0);
    });
  }, 120_000);
});

describe("--stats", () => {
  test("prints instructions and exits by reason and device when the guest powers off", async () => {
    await withSession(["boot", "--bios", "none", "--kernel", UBOOT_M, "--stats"], async (s) => {
      await interruptAutoboot(s);
      s.send("poweroff\r");
      expect(await s.exited).toBe(0);
      expect(s.err).toMatch(/^wasmvisor: [\d,]+ instructions in [\d.]+ s \([\d.]+ MIPS\)$/m);
      const mmio = /exits: [\d,]+ \(mmio ([\d,]+),/.exec(s.err);
      expect(Number(mmio![1].replace(/,/g, ""))).toBeGreaterThan(100); // U-Boot polls the UART
      expect(s.err).toMatch(/MMIO exits by device, [\d.]+ \S+ host time each:/); // µs, read as latin1
      expect(s.err).toMatch(/^ +uart0 +[\d,]+$/m);
      expect(s.err).toMatch(/^ +test +[1-9][\d,]*$/m); // poweroff goes through the test finisher
    });
  }, 120_000);
});

describe("boot variants", () => {
  test("OpenSBI fw_dynamic takes the next stage from the boot ROM's fw_dynamic_info", async () => {
    await withSession(["boot", "--bios", "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin", "--kernel", UBOOT_S], async (s) => {
      await s.expect("Domain0 Next Address      : 0x0000000080200000");
      await interruptAutoboot(s);
      s.send("\x01x");
      expect(await s.exited).toBe(0);
    });
  }, 120_000);

  test("--smp 2: OpenSBI sees two harts and U-Boot runs", async () => {
    await withSession(["boot", "--smp", "2", "--kernel", UBOOT_S], async (s) => {
      await s.expect("Platform HART Count       : 2");
      await s.expect("Domain0 HARTs             : 0*,1*");
      await interruptAutoboot(s);
      s.send("\x01x");
      expect(await s.exited).toBe(0);
    });
  }, 120_000);

  test("--dtb-out writes the devicetree with --append and --initrd in /chosen", async () => {
    const dir = mkdtempSync(join(tmpdir(), "wasmvisor-dtb-"));
    const dtbFile = join(dir, "virt.dtb");
    const initrd = join(dir, "initrd.img");
    writeFileSync(initrd, new Uint8Array(12345).fill(7));
    await withSession(["boot", "--kernel", UBOOT_S, "--initrd", initrd, "--append", "console=ttyS0 quiet", "--dtb-out", dtbFile, "-m", "512M"], async (s) => {
      await s.expect("U-Boot 2023.01");
      s.send("\x01x");
      expect(await s.exited).toBe(0);
    });
    const dt = parseFdt(new Uint8Array(readFileSync(dtbFile)));
    const chosen = dt.find("/chosen")!;
    expect(chosen.getString("bootargs")).toBe("console=ttyS0 quiet");
    // The initrd sits at half of RAM: 0x80000000 + 256 MiB.
    expect(chosen.getU64("linux,initrd-start")).toBe(0x90000000n);
    expect(chosen.getU64("linux,initrd-end")).toBe(0x90000000n + 12345n);
    const dts = execFileSync("dtc", ["-I", "dtb", "-O", "dts", dtbFile], { stdio: ["ignore", "pipe", "ignore"] }).toString();
    expect(dts).toContain('model = "riscv-virtio,wasmvisor"');
    expect(dts).toMatch(/reg = <0x00 0x80000000 0x00 0x20000000>/);
  }, 120_000);
});
