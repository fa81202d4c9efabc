// The hypervisor suite: many VMs on one host, through the embedding API (the Hypervisor that
// `wasmvisor host` serves). Fairness by weight, caps, Jain's index, utilisation and balancing
// with 2 pCPUs, isolation (console echo latency next to a spinning and a disk-flooding VM), and
// density (many small Linux VMs at once: host memory per VM and start latency).
import { mkdtempSync, rmSync, writeFileSync, copyFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Hypervisor } from "../host/hv/hypervisor";
import { nodePlatform } from "../host/platform/node";
import { percentile } from "../host/util/stats";

export interface HypervisorResult {
  fairness: { weights: number[]; shares: number[]; expected: number[]; worst_error: number; seconds: number };
  equal: { shares: number[]; jain: number };
  cap: { cap: number; share: number; competitor_share: number };
  balance: { pcpus: number; vms: number; busy: number; moves: number; spread: boolean; seconds: number; reaction_s: number };
  isolation: { layouts: { with: string; p50_ms: number; p99_ms: number; samples: number }[] };
  density: { vms: number; memory_mib: number; running: number; overhead_mib_per_vm: number; guest_touched_mib_per_vm: number;
    create_ms: { p50: number; max: number }; ready_s: { p50: number; max: number }; total_s: number;
    /** Host CPU (fraction of one core, all threads) while every VM idles at its prompt. */
    idle_cpu: number };
}

interface LinuxGuest { kernel: string; initramfs: string; disk: string }

// A busy guest: `1: addi a0, a0, 1; j 1b` (two RV64 instructions, raw, at 0x80000000, M-mode).
const BUSY = Uint32Array.of(0x00150513, 0xffdff06f);
// A stuck guest: timer interrupt enabled in mie and pending (mtimecmp = 0), mstatus.MIE off,
// then the same loop: li t0,0x2004000; sd zero,0(t0); li t0,0x80; csrw mie,t0; 1: j 1b.
const SPINNER = Uint32Array.of(0x020042b7, 0x0002b023, 0x08000293, 0x30429073, 0x0000006f);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** CPU shares of `names` over `ms` of wall time, from the scheduler's accounting. */
async function shares(hv: Hypervisor, names: string[], ms: number): Promise<number[]> {
  const before = await Promise.all(names.map((n) => hv.stats(n)));
  await sleep(ms);
  const after = await Promise.all(names.map((n) => hv.stats(n)));
  const cpu = after.map((a, i) => a.cpuMs - before[i].cpuMs);
  const total = cpu.reduce((a, b) => a + b, 0);
  return cpu.map((c) => c / total);
}

export async function hypervisorSuite(guest: LinuxGuest, quick: boolean, log: (s: string) => void): Promise<HypervisorResult> {
  const dir = mkdtempSync(join(tmpdir(), "wasmvisor-bench-hv-"));
  const file = (name: string, words: Uint32Array) => {
    const f = join(dir, name);
    writeFileSync(f, new Uint8Array(words.buffer));
    return f;
  };
  const busy = file("busy.bin", BUSY);
  const spinner = file("spinner.bin", SPINNER);
  const bare = (name: string, kernel: string, extra: object = {}) => ({ name, bios: "none", kernel, memory: "16M", ...extra });
  const window = quick ? 3000 : 10_000;
  try {
    // ---- fairness, caps, Jain: one pCPU ----
    let hv = await Hypervisor.start(nodePlatform, { cpus: 1, balance: false });
    const weights = [1, 2, 4];
    for (const [i, w] of weights.entries()) {
      await hv.create(bare(`w${w}`, busy, { cpu: { weight: w } }));
      await hv.act(`w${w}`, "start");
      void i;
    }
    await sleep(500);
    const got = await shares(hv, weights.map((w) => `w${w}`), window);
    const expected = weights.map((w) => w / weights.reduce((a, b) => a + b, 0));
    const fairness = { weights, shares: got, expected, worst_error: Math.max(...got.map((s, i) => Math.abs(s - expected[i]) / expected[i])), seconds: window / 1000 };
    log(`  weights ${weights.join(":")} on one pCPU: shares ${got.map((s) => (s * 100).toFixed(1) + "%").join(", ")} (worst ${(fairness.worst_error * 100).toFixed(1)}% off)`);
    for (const w of weights) await hv.destroy(`w${w}`);

    const eq = ["e0", "e1", "e2", "e3"];
    for (const n of eq) { await hv.create(bare(n, busy)); await hv.act(n, "start"); }
    await sleep(500);
    const eqShares = await shares(hv, eq, window);
    const jain = eqShares.reduce((a, b) => a + b, 0) ** 2 / (eqShares.length * eqShares.reduce((a, b) => a + b * b, 0));
    log(`  4 equal weights: Jain's index ${jain.toFixed(4)}`);
    for (const n of eq) await hv.destroy(n);

    await hv.create(bare("capped", busy, { cpu: { weight: 4, cap: 25 } }));
    await hv.create(bare("other", busy));
    for (const n of ["capped", "other"]) await hv.act(n, "start");
    await sleep(500);
    const before = await Promise.all(["capped", "other"].map((n) => hv.stats(n)));
    const t0 = performance.now();
    await sleep(window);
    const after = await Promise.all(["capped", "other"].map((n) => hv.stats(n)));
    const wall = performance.now() - t0;
    const cap = { cap: 0.25, share: (after[0].cpuMs - before[0].cpuMs) / wall, competitor_share: (after[1].cpuMs - before[1].cpuMs) / wall };
    log(`  cap 25%: ${(cap.share * 100).toFixed(1)}% of the pCPU (the other VM ${(cap.competitor_share * 100).toFixed(1)}%)`);
    await hv.close();

    // ---- utilisation and balancing: two pCPUs ----
    hv = await Hypervisor.start(nodePlatform, { cpus: 2 });
    const four = ["b0", "b1", "b2", "b3"];
    for (const n of four) { await hv.create(bare(n, busy)); await hv.act(n, "start"); }
    const leaving = hv.list().filter((v) => v.pcpu === 0).map((v) => v.name);
    await hv.destroy(leaving[0]); // three busy VMs left, two of them on pCPU 1
    await hv.destroy(leaving[1]);
    const three = hv.list().map((v) => v.name);
    // How long the balancer takes to notice and move one; then the host's utilisation.
    const tr = performance.now();
    while (new Set(hv.list().map((v) => v.pcpu)).size < 2 && performance.now() - tr < 15_000) await sleep(50);
    const reaction = (performance.now() - tr) / 1000;
    const b0 = await Promise.all(three.map((n) => hv.stats(n)));
    const tb = performance.now();
    await sleep(window);
    const b1 = await Promise.all(three.map((n) => hv.stats(n)));
    const wallB = performance.now() - tb;
    const used = b1.reduce((a, s, i) => a + s.cpuMs - b0[i].cpuMs, 0);
    const placed = hv.list();
    const balance = {
      pcpus: 2, vms: 3, busy: used / (2 * wallB), moves: placed.reduce((a, v) => a + v.moves, 0),
      spread: new Set(placed.map((v) => v.pcpu)).size === 2, seconds: window / 1000, reaction_s: reaction,
    };
    log(`  3 busy VMs on 2 pCPUs (two started on one): balanced after ${reaction.toFixed(1)} s, then host ${(balance.busy * 100).toFixed(1)}% busy, ${balance.moves} move(s), spread: ${balance.spread}`);
    await hv.close();

    // ---- isolation: console echo latency next to a spinner and a disk flood ----
    const isolation = { layouts: [] as HypervisorResult["isolation"]["layouts"] };
    for (const neighbour of ["spinner", "flooder"] as const) {
      hv = await Hypervisor.start(nodePlatform, { cpus: 2, balance: false, watchdogSeconds: 3600 });
      const disk = join(dir, "flood.img");
      copyFileSync(guest.disk, disk);
      const linux = (name: string, extra: object = {}) => ({ name, mode: "para", memory: "64M", kernel: guest.kernel, initrd: guest.initramfs, append: "console=ttyS0", ...extra });
      await hv.create(linux("shell"));
      await hv.create(bare("spinner", spinner));
      await hv.create(linux("flooder", { drives: [`file=${disk}`] }));
      // The shell shares its pCPU with the neighbour under test; the other one gets the other pCPU.
      const home = hv.info("shell").pcpu;
      await hv.move(neighbour, home);
      await hv.move(neighbour === "spinner" ? "flooder" : "spinner", 1 - home);
      let out = "";
      const shell = hv.attachConsole("shell", (b) => { out += Buffer.from(b).toString("latin1"); });
      let flood = "";
      const flooder = hv.attachConsole("flooder", (b) => { flood += Buffer.from(b).toString("latin1"); });
      for (const n of ["shell", "spinner", "flooder"]) await hv.act(n, "start");
      const t = performance.now();
      while (!(out.includes("guest ready") && flood.includes("guest ready"))) {
        if (performance.now() - t > 120_000) throw new Error("isolation: the Linux guests did not boot");
        await sleep(50);
      }
      flooder.write(new TextEncoder().encode("\rumount /mnt; while true; do dd if=/dev/vda of=/dev/null bs=64k iflag=direct 2>/dev/null; done &\r"));
      shell.write(new TextEncoder().encode("\r"));
      await sleep(1000);
      const lat: number[] = [];
      for (let i = 0; i < (quick ? 40 : 200); i++) {
        const mark = out.length;
        const t1 = performance.now();
        shell.write(new TextEncoder().encode("x"));
        while (!out.slice(mark).includes("x")) {
          if (performance.now() - t1 > 5000) throw new Error("isolation: the shell stopped echoing");
          await sleep(1);
        }
        lat.push(performance.now() - t1);
        if (i % 20 === 19) shell.write(new TextEncoder().encode("\x15")); // Ctrl-U: keep the line short
        await sleep(10);
      }
      const row = { with: neighbour === "spinner" ? "a VM spinning with interrupts off" : "a VM flooding its disk", p50_ms: percentile(lat, 0.5), p99_ms: percentile(lat, 0.99), samples: lat.length };
      log(`  echo latency sharing a pCPU with ${row.with}: p50 ${row.p50_ms.toFixed(1)} ms, p99 ${row.p99_ms.toFixed(1)} ms`);
      isolation.layouts.push(row);
      shell.detach();
      flooder.detach();
      await hv.close();
    }

    // ---- density: many small Linux VMs at once ----
    const n = quick ? 20 : 100;
    const rss = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"))![1]) * 1024;
    hv = await Hypervisor.start(nodePlatform, { cpus: 2, balance: false });
    global.gc?.();
    const rss0 = rss();
    const { names, create, ready, total_s: total } = await bootLinuxVms(hv, guest, n, 32);
    await sleep(1000);
    // What idle VMs cost the host: halted vCPUs should cost (almost) nothing.
    const c0 = process.cpuUsage();
    const ti = performance.now();
    await sleep(quick ? 2000 : 5000);
    const c1 = process.cpuUsage(c0);
    const idleCpu = (c1.user + c1.system) / 1000 / (performance.now() - ti);
    let touchedBytes = 0;
    for (const name of names) touchedBytes += (await pagingOf(hv, name)) * 4096;
    const rss1 = rss();
    const density = {
      vms: n, memory_mib: 32, running: hv.list().filter((v) => v.state === "running").length,
      overhead_mib_per_vm: (rss1 - rss0 - touchedBytes) / n / 2 ** 20, guest_touched_mib_per_vm: touchedBytes / n / 2 ** 20,
      create_ms: { p50: percentile(create, 0.5), max: Math.max(...create) }, ready_s: { p50: percentile(ready, 0.5), max: Math.max(...ready) }, total_s: total,
      idle_cpu: idleCpu,
    };
    log(`  ${n} Linux VMs of 32 MiB: all at their prompts in ${total.toFixed(1)} s; ${density.overhead_mib_per_vm.toFixed(2)} MiB host memory per VM beyond the ` +
      `${density.guest_touched_mib_per_vm.toFixed(1)} MiB of guest RAM each touched; create ${density.create_ms.p50.toFixed(0)} ms (p50), boot to prompt ${density.ready_s.p50.toFixed(2)} s (p50); all idle: ${(idleCpu * 100).toFixed(1)}% of one core`);
    await hv.close();
    return { fairness, equal: { shares: eqShares, jain }, cap, balance, isolation, density };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface LinuxVmsBooted {
  names: string[];
  /** ms per create (building the machine). */
  create: number[];
  /** s from each VM's start to its first line of userland output (/init's "wasmvisor guest ready"). */
  ready: number[];
  /** s from the first create until every VM had printed that line. */
  total_s: number;
}

/** Create and start `n` Linux VMs (para mode, `memoryMiB` each) one after the other, and wait until every one is ready. */
export async function bootLinuxVms(hv: Hypervisor, guest: { kernel: string; initramfs: string }, n: number, memoryMiB: number): Promise<LinuxVmsBooted> {
  const create: number[] = [];
  const started: number[] = [];
  const ready: number[] = [];
  const outputs = new Map<string, string>();
  const td = performance.now();
  for (let i = 0; i < n; i++) {
    const name = `d${i}`;
    const t1 = performance.now();
    await hv.create({ name, mode: "para", memory: `${memoryMiB}M`, kernel: guest.kernel, initrd: guest.initramfs, append: "console=ttyS0" });
    create.push(performance.now() - t1);
    outputs.set(name, "");
    hv.attachConsole(name, (b) => { outputs.set(name, outputs.get(name)! + Buffer.from(b).toString("latin1").slice(-64)); });
    await hv.act(name, "start");
    started.push(performance.now());
  }
  const pending = new Set(outputs.keys());
  while (pending.size) {
    if (performance.now() - td > 600_000) throw new Error(`density: ${pending.size} VMs did not boot`);
    for (const name of pending) {
      if (outputs.get(name)!.includes("guest ready")) {
        ready.push((performance.now() - started[Number(name.slice(1))]) / 1000);
        pending.delete(name);
      }
    }
    await sleep(50);
  }
  return { names: [...outputs.keys()], create, ready, total_s: (performance.now() - td) / 1000 };
}

/** Frames the VM's P2M populated: the guest RAM it touched, in pages. */
async function pagingOf(hv: Hypervisor, name: string): Promise<number> {
  return (await hv.machineStats(name)).paging.framesPopulated;
}
