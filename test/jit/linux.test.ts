// The translation tier under Linux (docs/TRANSLATION.md): the default guest with --jit on runs
// its kernel and user programs partly translated (virtual addresses that are not physical ones,
// U and S mode, page faults, fork and exec reusing pages that held code) and computes exactly
// what the host computes.
import { describe, test, expect, beforeAll } from "vitest";
import { createHash } from "node:crypto";
import { buildLinuxGuest } from "../../guests/linux/build.mjs";
import { Session } from "../integration/cli";

let guest: { kernel: string; initramfs: string; disk: string };

beforeAll(async () => {
  guest = await buildLinuxGuest({ log: (line: string) => console.error(line) });
}, 3_600_000);

async function sh(s: Session, cmd: string, from: number, timeoutMs = 120_000): Promise<{ text: string; at: number }> {
  const id = Math.random().toString(36).slice(2, 8);
  s.send(`${cmd}; echo "__done_""${id}"\r`);
  const at = await s.expect(`__done_${id}`, timeoutMs, from);
  return { text: s.out.slice(from, at), at };
}

describe("Linux with the translation tier", () => {
  test("boots, hashes, forks and faults as the host expects, mostly translated", async () => {
    const s = new Session(["boot", "--mode", "para", "--jit", "on", "--stats", "--kernel", guest.kernel, "--initrd", guest.initramfs, "--append", "console=ttyS0"]);
    try {
      await s.expect("wasmvisor guest ready", 180_000);
      s.send("\r");
      let at = await s.expect(/# $/m, 30_000);
      // 3 MiB of a byte pattern the guest's awk makes, hashed by its sha256sum.
      const expected = createHash("sha256").update(Buffer.alloc(3 << 20, "wasmvisor\n")).digest("hex");
      let r = await sh(s, `yes wasmvisor | head -c ${3 << 20} | sha256sum`, at);
      expect(r.text).toContain(expected);
      r = await sh(s, "wv-bench forkwait 100 && wv-bench pagefault 2048 && wv-bench randaccess 16 200000 && echo ALL-OK", r.at);
      expect(r.text).toMatch(/WVB name=forkwait ops=100/);
      expect(r.text).toMatch(/WVB name=pagefault/);
      expect(r.text).toMatch(/^ALL-OK/m);
      at = r.at;
      s.send("poweroff\r");
      expect(await s.exited).toBe(0);
      // --stats: the share the translations retired, and that they were made and thrown away.
      const m = /translation: ([\d,]+) instructions retired translated \(([\d.]+)%, (\d+) an entry\), ([\d,]+) pages translated/.exec(s.err);
      expect(m, s.err).not.toBeNull();
      const n = (i: number) => Number(m![i].replace(/,/g, ""));
      expect(n(2)).toBeGreaterThan(30);
      expect(n(3)).toBeGreaterThan(10); // instructions a call into translated code runs
      expect(n(4)).toBeGreaterThan(8); // pages translated
      void at;
    } finally {
      s.kill();
    }
  }, 600_000);
});
