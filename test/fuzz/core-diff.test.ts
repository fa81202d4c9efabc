// The core's differential target (fuzz/core-diff/): a short run of random and mutated cases
// on QEMU and on wasmvisor's core, interpreted and translated, with no unexplained difference;
// the comparison catches a difference the allow list does not name; the allow list's entries
// are real (QEMU 7.2 does differ there) and wasmvisor's side of each is what the ISA says.
// The long runs are `npm run fuzz -- --target core-diff` (fuzz/results/latest.json).
import { readdirSync, existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { runCoreDiff } from "../../fuzz/core-diff/run";
import { runBatch, specFromJson } from "../../fuzz/core-diff/diff";
import { compareCase, CUT, PARTING } from "../../fuzz/core-diff/compare";
import { caseImage, random, randomCase, type CaseSpec, type Item, type SecondPage } from "../../fuzz/core-diff/generate";
import { D, FIX_DELEGATED, FIX_SC_RD, FIX_STORE_CAUSE, FIX_UNDELEGATED, LOG, LOG_WORDS, R, RESULT_BYTES, RESULT_HEADER, SATP } from "../../fuzz/core-diff/image";
import { asm, toWords } from "../../host/util/riscv-asm";
import { runQemu, runWasmvisor, Workdir } from "../../fuzz/core-diff/machines";
import { fuzzDir } from "../../fuzz/engine/corpus";
import { loadCoreModule } from "../../host/platform/node/core";

const module = loadCoreModule();
const work = new Workdir();
afterAll(() => work.close());

/** A case in `priv` (bare, all of its state random but for the block) running `words`. */
function caseOf(priv: 0 | 1 | 3, words: number[], edit: (s: CaseSpec) => void = () => {}): CaseSpec {
  const s = randomCase(random(5));
  s.priv = priv;
  s.paged = false;
  s.mstatus = 3n << 13n; // FS dirty, nothing else
  s.medeleg = s.mideleg = s.mie = s.mip = 0n;
  s.msip = s.mtvecVectored = false;
  s.items = words.map((w): Item => ({ k: "w", n: 4, w }));
  edit(s);
  return s;
}

async function both(spec: CaseSpec) {
  const c = caseImage(spec, 0);
  const q = (await runQemu([c], work))!;
  const w = runWasmvisor(module, [c], "off")!;
  const field = (r: Uint8Array, f: number) => new BigUint64Array(r.buffer, r.byteOffset, RESULT_BYTES / 8)[f]!;
  return { q, w, c, qf: (f: number) => field(q, f), wf: (f: number) => field(w, f) };
}

describe("differential fuzzing of the core against QEMU", () => {
  test("a short run: random and mutated cases, interpreted and translated, no unexplained difference", async () => {
    const r = await runCoreDiff({ seconds: 60, programs: 300, seed: 17, batch: 150, save: false });
    expect(r.found).toEqual([]);
    expect(r.differences).toBe(0);
    expect(r.programs).toBe(300);
    expect(r.tiers).toEqual(["off", "all"]);
  }, 120_000);

  test("a difference the allow list does not name is reported, field by field", async () => {
    const spec = caseOf(3, [0x02a00513]); // li a0, 42
    const { q, w, c } = await both(spec);
    expect(compareCase(q, w, 0, c).differences).toEqual([]);
    const changed = w.slice();
    new DataView(changed.buffer).setBigUint64((R.x + 10) * 8, 41n, true);
    changed[RESULT_BYTES - 1]! ^= 1; // the window's last byte
    expect(compareCase(q, changed, 0, c).differences.map((d) => d.field)).toEqual(["x10", "window+0x3ff8"]);
  }, 30_000);

  test("the allow list's entries are real differences, and wasmvisor's side is the ISA's", async () => {
    // A misaligned AMO: store/AMO address misaligned (6); QEMU 7.2 raises 4.
    let r = await both(caseOf(3, [0x0084a02f], (s) => (s.ptr[2] = 0x1002))); // amoadd.w zero, s0, (s1), s1 2 bytes past a word
    expect(r.wf(R.log)).toBe(6n);
    expect(r.qf(R.log)).toBe(4n);
    expect(compareCase(r.q, r.w, 0, r.c)).toEqual({ differences: [], explained: [expect.stringContaining("AMO or SC fault")] });
    // EBREAK: wasmvisor's mtval is its address, QEMU's zero (both allowed). The handler zeroes
    // it, so what the block computes from it after is the same.
    r = await both(caseOf(3, toWords(asm`
      ebreak
      csrr a4, mtval
      sh3add a2, a4, s0
    `)));
    expect(r.wf(R.log)).toBe(3n);
    expect(r.wf(R.log + 2)).toBe(r.wf(R.log + 1));
    expect(r.qf(R.log + 2)).toBe(0n);
    expect([r.qf(R.x + 14), r.wf(R.x + 14)]).toEqual([0n, 0n]);
    const ebreak = compareCase(r.q, r.w, 0, r.c);
    expect([ebreak.differences, ebreak.cutShort]).toEqual([[], undefined]);
    // ctzw of a value whose low word is zero is 32; QEMU 7.2 gives 35 here.
    r = await both(caseOf(3, [0x601b1f9b], (s) => (s.x[22] = 0x1234567800000000n))); // ctzw t6, s6
    expect(r.wf(R.x + 31)).toBe(32n);
    expect(r.qf(R.x + 31)).toBe(35n);
    expect(compareCase(r.q, r.w, 0, r.c).differences).toEqual([]);
    // mcounteren is a 32-bit register: csrw mcounteren, -1 reads back 0xffffffff.
    r = await both(caseOf(3, [0xfff00293, 0x30629073])); // li t0, -1; csrw mcounteren, t0
    expect(r.wf(R.mcounteren)).toBe(0xffffffffn);
    expect(r.qf(R.mcounteren)).toBe(0xffffffffffffffffn);
    // sepc's bit 0 is always zero.
    r = await both(caseOf(3, [0x00100293, 0x14129073])); // li t0, 1; csrw sepc, t0
    expect(r.wf(R.sepc)).toBe(0n);
    expect(r.qf(R.sepc)).toBe(1n);
  }, 60_000);

  test("an SC wasmvisor faults on where QEMU fails it is probed on QEMU: the same fault there explains it", async () => {
    // U-mode, Sv39, sp on a read-only user page; a jump over an LR, then an SC through sp.
    const spec = caseOf(0, [], (s) => {
      s.paged = true;
      s.perm = [0x59n, 0xd7n, 0xd3n, 0xd7n, 0xd7n, 0xd7n, 0xd7n]; // code: V X U A; window page 1: V R U A D
      s.ptr[0] = 0x1000;
      s.items = [{ k: "jal", rd: 0, skip: 1 }, { k: "w", n: 4, w: 0x1001252f }, { k: "w", n: 4, w: 0x18c125af }]; // lr.w a0, (sp); sc.w a1, a2, (sp)
    });
    const { q, w, c, qf, wf } = await both(spec);
    expect(wf(R.log)).toBe(15n); // store/AMO page fault at the SC
    expect(qf(R.log)).toBe(8n); // QEMU: the SC failed, the closing ecall is the first trap
    const o = compareCase(q, w, 0, c);
    expect(o.differences.length).toBeGreaterThan(0);
    expect(o.scProbe).toEqual({ at: 8, cause: 15n });
    const [r] = await runBatch(module, [spec], work, ["off"]);
    expect(r!.differences.get("off")).toEqual([]);
    expect(r!.explained).toContain(PARTING.scProbed);
  }, 30_000);

  test("past a parting the allow list names, the case is compared on: the runtime makes what follows the same on both", async () => {
    const logWord = (k: number, n: number) => R.log + k * LOG_WORDS + n;
    /** A copy of wasmvisor's record with x`reg` changed: what a bug after the parting would leave. */
    const tamper = (w: Uint8Array, reg: number) => {
      const out = w.slice();
      new DataView(out.buffer).setBigUint64((R.x + reg) * 8, 0x5a5an, true);
      return out;
    };
    // M-mode: a misaligned AMO (QEMU 4, the spec 6), then mcause read and computed with.
    let r = await both(caseOf(3, toWords(asm`
      amoadd.w zero, s0, (s1)
      csrr a1, mcause
      addi a2, a1, 1
    `), (s) => (s.ptr[2] = 0x1002)));
    expect([r.qf(logWord(0, LOG.cause)), r.qf(logWord(0, LOG.fix))]).toEqual([4n, FIX_STORE_CAUSE]);
    expect([r.wf(logWord(0, LOG.cause)), r.wf(logWord(0, LOG.fix))]).toEqual([6n, 0n]);
    expect([r.qf(R.x + 12), r.wf(R.x + 12)]).toEqual([7n, 7n]);
    let o = compareCase(r.q, r.w, 0, r.c);
    expect([o.differences, o.cutShort]).toEqual([[], undefined]);
    expect(o.explained).toContain(PARTING.amoCause);
    expect(compareCase(r.q, tamper(r.w, 12), 0, r.c).differences.map((d) => d.field)).toEqual(["x12"]);
    // wasmvisor giving the load cause, as QEMU does, is reported: the spec's is checked on its own.
    expect(compareCase(r.q, r.q, 0, r.c).differences.map((d) => d.field)).toEqual(["trap0.mcause (wasmvisor: a load cause at an AMO or SC)"]);
    // U-mode, medeleg sending store/AMO misaligned (6) to S and not load misaligned (4): QEMU's
    // trap comes to M-mode, whose handler delegates it as the spec's would have been.
    r = await both(caseOf(0, toWords(asm`amoswap.d a0, s0, (s1)`), (s) => {
      s.ptr[2] = 0x1004;
      s.medeleg = 1n << 6n;
    }));
    expect(Number(r.qf(R.traps))).toBe(2);
    expect(r.qf(logWord(0, LOG.fix))).toBe(FIX_STORE_CAUSE | FIX_DELEGATED);
    expect(Number(r.wf(R.traps))).toBe(1);
    expect([r.qf(R.scause), r.wf(R.scause)]).toEqual([6n, 6n]);
    expect(r.qf(R.mstatus)).toBe(r.wf(R.mstatus));
    o = compareCase(r.q, r.w, 0, r.c);
    expect([o.differences, o.cutShort]).toEqual([[], undefined]);
    // The other way round: load misaligned (4) delegated, store/AMO misaligned (6) not. QEMU's
    // trap goes to S-mode's stub; the handler moves it to M-mode (S-mode's CSRs put back) and
    // the block goes on, as on wasmvisor.
    r = await both(caseOf(0, toWords(asm`
      amoswap.d a0, s0, (s1)
      li a1, 7
    `), (s) => {
      s.ptr[2] = 0x1004;
      s.medeleg = 1n << 4n;
      s.mstatus |= 1n << 5n; // SPIE
    }));
    expect([r.qf(logWord(0, LOG.cause)), r.qf(logWord(0, LOG.fix))]).toEqual([4n, FIX_UNDELEGATED | FIX_STORE_CAUSE]);
    expect([r.wf(logWord(0, LOG.cause)), r.wf(logWord(0, LOG.fix))]).toEqual([6n, 0n]);
    expect(r.qf(logWord(0, LOG.status))).toBe(r.wf(logWord(0, LOG.status)));
    expect([r.qf(R.x + 11), r.wf(R.x + 11), r.qf(R.scause), r.qf(R.sepc)]).toEqual([7n, 7n, r.wf(R.scause), r.wf(R.sepc)]);
    o = compareCase(r.q, r.w, 0, r.c);
    expect([o.differences, o.cutShort]).toEqual([[], undefined]);
    // U-mode: a misaligned SC with no LR. QEMU fails it (no trap); wasmvisor raises 6, and the
    // handler fails it (rd 1); what is computed from rd after is compared.
    r = await both(caseOf(0, toWords(asm`
      sc.d a1, a2, (s1)
      addi a3, a1, 5
    `), (s) => (s.ptr[2] = 0x1004)));
    expect([r.wf(logWord(0, LOG.cause)), r.wf(logWord(0, LOG.fix))]).toEqual([6n, FIX_SC_RD]);
    expect(r.qf(logWord(0, LOG.cause))).toBe(8n);
    expect([r.qf(R.x + 13), r.wf(R.x + 13)]).toEqual([6n, 6n]);
    o = compareCase(r.q, r.w, 0, r.c);
    expect([o.differences, o.cutShort]).toEqual([[], undefined]);
    expect(o.explained).toContain(PARTING.scFailed);
    expect(compareCase(r.q, tamper(r.w, 13), 0, r.c).differences.map((d) => d.field)).toEqual(["x13"]);
    // The same SC with store/AMO misaligned delegated: wasmvisor's trap goes to S-mode's stub,
    // and the handler moves it back to M-mode, where it is failed as above.
    const delegated = await both(caseOf(0, toWords(asm`
      sc.d a1, a2, (s1)
      addi a3, a1, 5
    `), (s) => {
      s.ptr[2] = 0x1004;
      s.medeleg = 1n << 6n;
    }));
    expect([delegated.wf(logWord(0, LOG.cause)), delegated.wf(logWord(0, LOG.fix))]).toEqual([6n, FIX_UNDELEGATED | FIX_SC_RD]);
    expect([delegated.qf(R.x + 13), delegated.wf(R.x + 13), delegated.wf(R.scause)]).toEqual([6n, 6n, delegated.qf(R.scause)]);
    o = compareCase(delegated.q, delegated.w, 0, delegated.c);
    expect([o.differences, o.cutShort]).toEqual([[], undefined]);
  }, 30_000);

  test("software interrupts: taken through mtvec's vector table, cleared by the handler, the block resumed; several at once paired by cause", async () => {
    const logWord = (k: number, n: number) => R.log + k * LOG_WORDS + n;
    const INTERRUPT = 1n << 63n;
    // M-mode with MIE, MSIE enabled, msip set as the case starts: MSI at the block's first
    // instruction, through vector 3; the closing ecall through vector 0.
    let r = await both(caseOf(3, toWords(asm`
      li a0, 1
      addi a0, a0, 2
    `), (s) => {
      s.mstatus |= 1n << 7n; // MPIE: MIE once the case starts
      s.mie = 8n;
      s.msip = true;
      s.mtvecVectored = true;
    }));
    for (const f of [r.qf, r.wf]) {
      expect([0, 1].map((k) => [f(logWord(k, LOG.cause)), f(logWord(k, LOG.epc)) - r.c.desc[D.entry]!, f(logWord(k, LOG.via))])).toEqual([[INTERRUPT | 3n, 0n, 3n], [11n, 8n, 0n]]);
      expect(f(R.x + 10)).toBe(3n);
      expect(f(R.mip) & 8n).toBe(0n);
    }
    let o = compareCase(r.q, r.w, 0, r.c);
    expect([o.differences, o.cutShort]).toEqual([[], undefined]);
    // M-mode with MIE, SSIP and SEIP pending and enabled, not delegated: QEMU 7.2 takes SSI
    // first, the spec SEI; both take the two, then run the block, which reads mcause (the
    // handler zeroed it: the last interrupt each took differs) and computes with it.
    r = await both(caseOf(3, toWords(asm`
      csrr a1, mcause
      addi a2, a1, 5
    `), (s) => {
      s.mstatus |= 1n << 7n;
      s.mip = 0x202n;
      s.mie = 0x202n;
    }));
    expect([0, 1, 2].map((k) => r.qf(logWord(k, LOG.cause)))).toEqual([INTERRUPT | 1n, INTERRUPT | 9n, 11n]);
    expect([0, 1, 2].map((k) => r.wf(logWord(k, LOG.cause)))).toEqual([INTERRUPT | 9n, INTERRUPT | 1n, 11n]);
    expect([r.qf(R.x + 12), r.wf(R.x + 12)]).toEqual([5n, 5n]);
    o = compareCase(r.q, r.w, 0, r.c);
    expect([o.differences, o.cutShort]).toEqual([[], undefined]);
    expect(o.explained).toContain(PARTING.interrupts);
    // wasmvisor's order is checked against the spec's on its own: taking SSI first, as QEMU does, is reported.
    const swapped = r.w.slice();
    const sv = new DataView(swapped.buffer);
    sv.setBigUint64(logWord(0, LOG.cause) * 8, INTERRUPT | 1n, true);
    sv.setBigUint64(logWord(1, LOG.cause) * 8, INTERRUPT | 9n, true);
    expect(compareCase(r.q, r.w, 0, r.c).differences).toEqual([]);
    expect(compareCase(r.q, swapped, 0, r.c).differences).not.toEqual([]);
  }, 30_000);

  test("Sv57: QEMU 7.2 takes it, wasmvisor (without Sv57) leaves satp as it was, as the spec says for a mode not supported", async () => {
    // S-mode, the case's satp Sv57 (the runtime writes Sv48 first); a satp write of mode 5 (no
    // hart supports it) changes nothing on either; satp read into a0 and a1.
    const spec = caseOf(1, [], (s) => {
      s.paged = true;
      s.sv = 57;
      s.perm = [0x4bn, 0xc7n, 0xc7n, 0xc7n, 0xc7n, 0xc7n, 0xc7n]; // code: V R X A; the window: V R W A D
      s.items = [{ k: "w", n: 4, w: toWords(asm`csrr a0, satp`)[0]! }, { k: "satp", tmp: 5, rd: 11, value: (5n << 60n) | (SATP.sv39 & 0xfffffffffffn) }];
    });
    const r = await both(spec);
    expect([r.qf(R.satp), r.wf(R.satp)]).toEqual([SATP.sv57, SATP.sv48]);
    expect([r.qf(R.x + 10), r.wf(R.x + 10), r.qf(R.x + 11), r.wf(R.x + 11)]).toEqual([SATP.sv57, SATP.sv48, SATP.sv57, SATP.sv48]);
    expect(Number(r.qf(R.traps))).toBe(1); // the closing ecall: the block ran through in both modes
    const o = compareCase(r.q, r.w, 0, r.c);
    expect([o.differences, o.cutShort]).toEqual([[], undefined]);
    expect(o.explained.some((x) => x.includes("Sv57"))).toBe(true);
    // wasmvisor taking the write (or keeping another value) would be reported.
    const other = r.w.slice();
    new DataView(other.buffer).setBigUint64(R.satp * 8, SATP.sv39, true);
    expect(compareCase(r.q, other, 0, r.c).differences.map((d) => d.field)).toEqual(["satp"]);
  }, 30_000);

  test("an instruction across the page boundary: its upper half from the page the last run maps (another before it), a fetch fault there at the page's address", async () => {
    const addi = toWords(asm`addi a0, a0, 1`)[0]!;
    const X = 0x4bn | 0x80n; // V R X A D
    const straddle = (first: SecondPage, last: SecondPage) => caseOf(1, [0x13, 0x13, addi, 0x13], (s) => {
      s.paged = true;
      s.sv = 39;
      s.x[10] = 100n;
      s.perm = [X, 0xc7n, 0xc7n, 0xc7n, 0xc7n, 0xc7n, 0xc7n];
      s.cross = { at: 2, upper: 0x7ff0 | (10 >> 1), first, last }; // the other page's half: addi a0, a0, 0x7ff
    });
    const cases = [
      straddle({ alt: false, perm: X }, { alt: false, perm: X }), // the next page: a0 + 1
      straddle({ alt: false, perm: X }, { alt: true, perm: X }), // the other page in the last run: a0 + 0x7ff
      straddle({ alt: true, perm: X }, { alt: false, perm: 0xc7n }), // not executable in the last run: a fetch fault
    ];
    const images = cases.map((s, i) => caseImage(s, i));
    expect(images.map((c) => Number(c.desc[D.entry]! & 0xfffn))).toEqual([0xff6, 0xff6, 0xff6]);
    const q = (await runQemu(images, work))!;
    const field = (r: Uint8Array, i: number, f: number) => new BigUint64Array(r.buffer, r.byteOffset + i * RESULT_BYTES, RESULT_HEADER / 8)[f]!;
    for (const tier of ["off", "all"] as const) {
      const w = runWasmvisor(module, images, tier)!;
      for (const r of [q, w]) {
        expect([0, 1].map((i) => field(r, i, R.x + 10))).toEqual([101n, 100n + 0x7ffn]);
        // The fault: at the instruction (0x400ffe), tval the second page's first byte.
        expect([field(r, 2, R.log + LOG.cause), field(r, 2, R.log + LOG.epc), field(r, 2, R.log + LOG.tval)]).toEqual([12n, 0x400ffen, 0x401000n]);
        expect(field(r, 2, R.x + 10)).toBe(100n);
      }
      images.forEach((c, i) => {
        const o = compareCase(q, w, i, c);
        expect([o.differences, o.cutShort]).toEqual([[], undefined]);
      });
    }
  }, 30_000);

  test("an EBREAK before an instruction whose second half's fetch faults: QEMU 7.2 raises the fault at the EBREAK (its semihosting check reads past it), the spec the breakpoint first", async () => {
    // S-mode: ebreak at 0x400ffa, then a store across into a user page (S-mode cannot fetch it).
    const spec = caseOf(1, [0x00100073, toWords(asm`fsd ft3, 8(s0)`)[0]!], (s) => {
      s.paged = true;
      s.sv = 39;
      s.perm = [0xcbn, 0xc7n, 0xc7n, 0xc7n, 0xc7n, 0xc7n, 0xc7n];
      s.cross = { at: 1, upper: toWords(asm`fsd ft3, 8(s0)`)[0]! >>> 16, first: { alt: false, perm: 0xd9n }, last: { alt: false, perm: 0xd9n } };
    });
    const { q, w, c, qf, wf } = await both(spec);
    expect([qf(R.traps), qf(R.log + LOG.cause), qf(R.log + LOG.epc), qf(R.log + LOG.tval)]).toEqual([1n, 12n, 0x400ffan, 0x401000n]);
    expect([wf(R.traps), wf(R.log + LOG.cause), wf(R.log + LOG.epc)]).toEqual([2n, 3n, 0x400ffan]);
    expect([wf(R.log + LOG_WORDS + LOG.cause), wf(R.log + LOG_WORDS + LOG.epc), wf(R.log + LOG_WORDS + LOG.tval)]).toEqual([12n, 0x400ffen, 0x401000n]);
    const o = compareCase(q, w, 0, c);
    expect([o.differences, o.cutShort]).toEqual([[], undefined]);
    expect(o.explained).toContain(PARTING.ebreakPeek);
    // An instruction before the EBREAK, in the same translation block: QEMU's fault comes at the
    // block's start, before it (x15 unwritten), where wasmvisor ran it: compared short.
    const before = await both({ ...spec, items: [{ k: "w", n: 4, w: toWords(asm`addi a5, s9, 645`)[0]! }, ...spec.items], cross: { ...spec.cross!, at: 2 } });
    expect([before.qf(R.log + LOG.cause), before.qf(R.log + LOG.epc)]).toEqual([12n, 0x400ff6n]);
    expect(before.qf(R.x + 15)).not.toBe(before.wf(R.x + 15));
    expect(compareCase(before.q, before.w, 0, before.c)).toMatchObject({ differences: [], cutShort: CUT.ebreakPeek });
  }, 30_000);

  // Differences found in wasmvisor's core and fixed: each kept case runs the same on both now.
  const dir = join(fuzzDir(), "crashes", "core-diff");
  const kept = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(".json")) : [];
  if (kept.length) {
    test(`the ${kept.length} cases kept in fuzz/crashes/core-diff/ run the same on both`, async () => {
      const specs = kept.map((f) => specFromJson(readFileSync(join(dir, f), "utf8")));
      const results = await runBatch(module, specs, work);
      expect(results.flatMap((x, i) => [...x.differences].filter(([, d]) => d.length).map(([tier, d]) => `${kept[i]} (${tier}): ${d.map((e) => e.field).join(", ")}`))).toEqual([]);
    }, 120_000);
  }
});

