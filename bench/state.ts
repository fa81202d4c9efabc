// State suite: snapshots and live migration of an idle 256 MiB Linux guest (full mode: Debian's
// OpenSBI, the same kernel and initramfs on both sides), on wasmvisor and on qemu-system-riscv64
// in the same run.
//
//   snapshot   wasmvisor: `ctl snapshot` of the running VM (size, time to save, how long the VM
//              paused) and `ctl restore` (request to running, and to the first command's answer);
//              QEMU: HMP savevm / loadvm into a qcow2 scratch disk.
//   migration  to another host over loopback (wasmvisor: TLS between two hypervisors; QEMU:
//              -incoming tcp): total time, bytes, downtime as each reports it and as the guest
//              measures it (wv-bench gap: the longest pause a tight clock loop saw), idle and
//              while the guest dirties memory at a steady rate.
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { connect } from "node:net";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { Hypervisor } from "../host/hv/hypervisor";
import { DEFAULT_FIRMWARE, nodePlatform } from "../host/platform/node";
import { listenMigration } from "../host/platform/node/migration";
import { parseCli } from "../host/cli/args";
import type { MigrationProgress } from "../host/hv/pcpu";
import { median } from "../host/util/stats";
import { READY, PROMPT, type Guest } from "./boot";

const MEMORY = "256M";

export interface SnapshotBench {
  guest: string;
  wasmvisor: { save_ms: number; paused_ms: number; bytes: number; restore_ms: number; first_answer_ms: number };
  qemu: { savevm_ms: number; loadvm_ms: number; bytes: number } | null;
  runs: number;
}

export interface MigrationRun {
  total_ms: number;
  bytes: number;
  /** Downtime as the hypervisor reports it. */
  downtime_ms: number;
  /** The longest pause the guest's own clock loop saw across the migration. */
  guest_gap_ms: number;
  rounds?: number;
  /** Pre-copy converged below the downtime limit (false: it stopped because rounds no longer paid, or at the round limit). */
  converged?: boolean;
  /** Post-copy: the pages that followed the VM after it ran at the destination, and how many of them it asked for. */
  postcopy?: { pages: number; asked: number };
}

export interface MigrationBench {
  guest: string;
  /** The longest pause the clock loop sees without any migration (the scheduler's own). */
  baseline_gap_ms: { wasmvisor: number; qemu: number | null };
  idle: { wasmvisor: MigrationRun; qemu: MigrationRun | null };
  /** While the guest writes `rate_mib_s` MiB/s over a 64 MiB buffer. */
  dirtying: { rate_mib_s: number; wasmvisor: MigrationRun; qemu: MigrationRun | null; wasmvisor_postcopy?: MigrationRun }[];
  runs: number;
  downtime_limit_ms: { wasmvisor: number; qemu: number };
}

// ---- a guest on wasmvisor, driven through its console ----

class Console {
  text = "";
  private waiters = new Set<() => void>();
  feed(s: string): void {
    this.text += s;
    for (const w of [...this.waiters]) w();
  }
  async expect(re: RegExp, from: number, timeoutMs: number): Promise<{ end: number; m: RegExpExecArray }> {
    const t0 = Date.now();
    for (;;) {
      const m = re.exec(this.text.slice(from));
      if (m) return { end: from + m.index + m[0].length, m };
      if (Date.now() - t0 > timeoutMs) throw new Error(`bench: timed out waiting for ${re}; console:\n${this.text.slice(-2000)}`);
      await new Promise<void>((resolve) => {
        const w = () => { this.waiters.delete(w); clearTimeout(t); resolve(); };
        const t = setTimeout(w, 200);
        this.waiters.add(w);
      });
    }
  }
}

function attach(hv: Hypervisor, name: string): { con: Console; send(s: string): void; detach(): void } {
  const con = new Console();
  const h = hv.attachConsole(name, (b) => con.feed(Buffer.from(b).toString("latin1")));
  return { con, send: (s) => h.write(Buffer.from(s, "latin1")), detach: () => h.detach() };
}

async function bootWasmvisor(hv: Hypervisor, g: Guest, name: string) {
  const cmd = parseCli(["boot", "--mode", "full", "--memory", MEMORY, "--kernel", g.kernel, "--initrd", g.initramfs, "--append", "console=ttyS0"]);
  if (cmd.kind !== "boot") throw new Error("bench: not a boot command");
  await hv.createVm({ ...cmd.config, name });
  const c = attach(hv, name);
  await hv.act(name, "start");
  const ready = await c.con.expect(new RegExp(READY), 0, 300_000);
  c.send("\r");
  await c.con.expect(PROMPT, ready.end, 60_000);
  return c;
}

const GAP = /WVB name=gap ops=\d+ ns_per_op=[\d.]+ max_gap_us=(\d+) dirtied_mib=([\d.]+)/;

// ---- QEMU, driven through its serial console and HMP monitor ----

class Qemu {
  readonly con = new Console();
  private constructor(readonly child: ChildProcess, readonly monitor: string) {}

  static async start(g: Guest, dir: string, name: string, extra: string[] = []): Promise<Qemu> {
    const monitor = join(dir, `${name}.mon`);
    const child = spawn("qemu-system-riscv64", ["-M", "virt", "-m", MEMORY, "-nographic", "-bios", DEFAULT_FIRMWARE, "-kernel", g.kernel, "-initrd", g.initramfs,
      "-append", "console=ttyS0", "-monitor", `unix:${monitor},server,nowait`, ...extra], { stdio: ["pipe", "pipe", "ignore"] });
    const q = new Qemu(child, monitor);
    child.stdout!.on("data", (d: Buffer) => q.con.feed(d.toString("latin1")));
    for (let i = 0; i < 100; i++) {
      try { statSync(monitor); break; } catch { await new Promise((r) => setTimeout(r, 50)); }
    }
    return q;
  }

  async prompt(): Promise<void> {
    const ready = await this.con.expect(new RegExp(READY), 0, 300_000);
    this.send("\r");
    await this.con.expect(PROMPT, ready.end, 60_000);
  }

  send(s: string): void {
    this.child.stdin!.write(s);
  }

  /** An HMP command; resolves with its output once the monitor prompts again. */
  hmp(command: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const s = connect(this.monitor);
      let out = "";
      let sent = false;
      s.on("data", (d) => {
        out += d.toString("latin1");
        if (!sent && out.includes("(qemu) ")) {
          sent = true;
          out = "";
          s.write(command + "\n");
        } else if (sent && out.lastIndexOf("(qemu) ") > out.indexOf(command) && out.endsWith("(qemu) ")) {
          s.destroy();
          resolve(out.slice(out.indexOf(command) + command.length).replace(/\(qemu\) $/, "").replace(/\x1b\[[\d;]*[A-Za-z]/g, ""));
        }
      });
      s.on("error", reject);
    });
  }

  kill(): void {
    this.child.kill("SIGKILL");
  }
}

// ---- snapshots ----

export async function snapshotSuite(g: Guest, runs: number, withQemu: boolean, log: (s: string) => void): Promise<SnapshotBench> {
  const dir = mkdtempSync(join(tmpdir(), "wasmvisor-bench-state-"));
  const hv = await Hypervisor.start(nodePlatform, { cpus: 1, balance: false, watchdogSeconds: 0, overcommit: Infinity, fileDescriptors: Infinity });
  try {
    const save: number[] = [], paused: number[] = [], bytes: number[] = [], restore: number[] = [], answer: number[] = [];
    await bootWasmvisor(hv, g, "idle");
    await new Promise((r) => setTimeout(r, 1000)); // idle at its prompt
    for (let i = 0; i < runs; i++) {
      const file = join(dir, `idle-${i}.wvs`);
      const s = await hv.snapshot("idle", file);
      save.push(s.totalMs);
      paused.push(s.downtimeMs);
      bytes.push(s.bytes);
      const t0 = performance.now();
      await hv.restore(file, { name: `copy${i}` });
      restore.push(performance.now() - t0);
      const c = attach(hv, `copy${i}`);
      c.send(`echo answer-$((${i}+100))\r`);
      await c.con.expect(new RegExp(`answer-${i + 100}`), 0, 60_000);
      answer.push(performance.now() - t0);
      c.detach();
      await hv.destroy(`copy${i}`);
    }
    const wasmvisor = { save_ms: median(save), paused_ms: median(paused), bytes: median(bytes), restore_ms: median(restore), first_answer_ms: median(answer) };
    log(`  wasmvisor: save ${wasmvisor.save_ms.toFixed(0)} ms (paused ${wasmvisor.paused_ms.toFixed(1)} ms), ${(wasmvisor.bytes / 2 ** 20).toFixed(1)} MiB; ` +
      `restore to running ${wasmvisor.restore_ms.toFixed(1)} ms, first answer ${wasmvisor.first_answer_ms.toFixed(0)} ms`);
    let qemu: SnapshotBench["qemu"] = null;
    if (withQemu) {
      const scratch = join(dir, "scratch.qcow2");
      execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", scratch, "64M"]);
      const q = await Qemu.start(g, dir, "snap", ["-drive", `file=${scratch},if=none,id=scratch,format=qcow2`]);
      try {
        await q.prompt();
        await new Promise((r) => setTimeout(r, 1000));
        const sv: number[] = [], lv: number[] = [], sizes: number[] = [];
        for (let i = 0; i < runs; i++) {
          let t0 = performance.now();
          await q.hmp(`savevm s${i}`);
          sv.push(performance.now() - t0);
          t0 = performance.now();
          await q.hmp(`loadvm s${i}`);
          lv.push(performance.now() - t0);
          const info = await q.hmp("info snapshots");
          const row = new RegExp(`\\bs${i}\\s+([\\d.]+) ([KMG])iB`).exec(info);
          if (row) sizes.push(Number(row[1]) * (row[2] === "K" ? 2 ** 10 : row[2] === "M" ? 2 ** 20 : 2 ** 30));
        }
        qemu = { savevm_ms: median(sv), loadvm_ms: median(lv), bytes: sizes.length ? median(sizes) : 0 };
        log(`  qemu: savevm ${qemu.savevm_ms.toFixed(0)} ms, loadvm ${qemu.loadvm_ms.toFixed(0)} ms, ${(qemu.bytes / 2 ** 20).toFixed(1)} MiB`);
      } finally {
        q.kill();
      }
    }
    return { guest: `Linux 6.1, ${MEMORY}, full mode (Debian's OpenSBI), idle at its prompt`, wasmvisor, qemu, runs };
  } finally {
    await hv.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- live migration ----

/** Long enough that the migration ends well before the guest's clock loop does (its result is read at the destination). */
const GAP_MS = 20_000;
const DIRTY_BUF_MIB = 64;

export async function migrationSuite(g: Guest, runs: number, withQemu: boolean, log: (s: string) => void): Promise<MigrationBench> {
  const dir = mkdtempSync(join(tmpdir(), "wasmvisor-bench-mig-"));
  const key = randomBytes(32);
  const hosts = [
    await Hypervisor.start(nodePlatform, { cpus: 1, balance: false, watchdogSeconds: 0, overcommit: Infinity, fileDescriptors: Infinity, migrationKey: key }),
    await Hypervisor.start(nodePlatform, { cpus: 1, balance: false, watchdogSeconds: 0, overcommit: Infinity, fileDescriptors: Infinity, migrationKey: key }),
  ];
  const listeners = await Promise.all(hosts.map((hv) => listenMigration({ host: "127.0.0.1", port: 0 }, key, (link) => void hv.incoming(link), () => {})));
  try {
    await bootWasmvisor(hosts[0]!, g, "mover");
    let at = 0; // the host the VM is on
    // One migration with the guest's clock loop running across it; the VM comes back for the next.
    const wasmvisorRun = async (rate: number, postcopy = false): Promise<MigrationRun> => {
      const c = attach(hosts[at]!, "mover");
      c.send(`wv-bench gap ${GAP_MS} ${rate} ${rate ? DIRTY_BUF_MIB : 0}\r`);
      await c.con.expect(/WVB gap-start/, 0, 60_000);
      c.detach();
      await new Promise((r) => setTimeout(r, 1500));
      const to = 1 - at;
      const r: MigrationProgress = await hosts[at]!.migrate("mover", `tcp:127.0.0.1:${listeners[to]!.port}`, { maxRounds: 30, postcopy });
      at = to;
      const d = attach(hosts[at]!, "mover");
      const gap = await d.con.expect(GAP, 0, GAP_MS + 60_000).catch((e: Error) => {
        throw new Error(`${e.message}\n(the VM: ${JSON.stringify(hosts[at]!.info("mover"))}; the migration: ${JSON.stringify(r)})`);
      });
      d.detach();
      const run = { total_ms: r.elapsedMs, bytes: r.sentBytes, downtime_ms: r.downtimeMs ?? 0, guest_gap_ms: Number(gap.m[1]) / 1000, rounds: r.round + 1, converged: r.stoppedBy === "downtime",
        ...(r.postcopy ? { postcopy: { pages: r.postcopy.pages, asked: r.postcopy.asked } } : {}) };
      log(`    ${rate ? `dirtying ${rate} MiB/s` : "idle"}${postcopy ? ", post-copy allowed" : ""}: ${JSON.stringify(run)}`);
      return run;
    };
    const wasmvisorBaseline = async (): Promise<number> => {
      const c = attach(hosts[at]!, "mover");
      c.send(`wv-bench gap 2000 0 0\r`);
      const gap = await c.con.expect(GAP, 0, 60_000);
      c.detach();
      return Number(gap.m[1]) / 1000;
    };
    const medianRun = (rs: MigrationRun[]): MigrationRun => ({
      total_ms: median(rs.map((r) => r.total_ms)), bytes: median(rs.map((r) => r.bytes)), downtime_ms: median(rs.map((r) => r.downtime_ms)),
      guest_gap_ms: median(rs.map((r) => r.guest_gap_ms)),
      ...(rs[0]!.rounds !== undefined ? { rounds: median(rs.map((r) => r.rounds!)), converged: rs.every((r) => r.converged) } : {}),
      ...(rs.every((r) => r.postcopy) ? { postcopy: { pages: median(rs.map((r) => r.postcopy!.pages)), asked: median(rs.map((r) => r.postcopy!.asked)) } } : {}),
    });
    const baselineW = await wasmvisorBaseline();
    const idleW: MigrationRun[] = [];
    for (let i = 0; i < runs; i++) idleW.push(await wasmvisorRun(0));
    const rates = [8, 32, 128];
    const dirtyW: MigrationRun[][] = [];
    for (const rate of rates) {
      const rs: MigrationRun[] = [];
      for (let i = 0; i < Math.max(1, Math.ceil(runs / 2)); i++) rs.push(await wasmvisorRun(rate));
      dirtyW.push(rs);
    }
    // The same, with post-copy allowed: a VM whose pre-copy does not converge runs at the destination at once.
    const postW: MigrationRun[][] = [];
    for (const rate of rates) {
      const rs: MigrationRun[] = [];
      for (let i = 0; i < Math.max(1, Math.ceil(runs / 2)); i++) rs.push(await wasmvisorRun(rate, true));
      postW.push(rs);
    }
    const show = (who: string, r: MigrationRun) => log(`  ${who}: total ${r.total_ms.toFixed(0)} ms, ${(r.bytes / 2 ** 20).toFixed(1)} MiB, downtime ${r.downtime_ms.toFixed(1)} ms` +
      ` (the guest saw ${r.guest_gap_ms.toFixed(1)} ms)${r.rounds !== undefined ? `, ${r.rounds} round(s)${r.converged ? "" : ", did not converge (stopped anyway)"}` : ""}`);
    log(`  wasmvisor baseline gap ${baselineW.toFixed(1)} ms`);
    show("wasmvisor idle", medianRun(idleW));
    rates.forEach((rate, i) => show(`wasmvisor dirtying ${rate} MiB/s`, medianRun(dirtyW[i]!)));
    rates.forEach((rate, i) => show(`wasmvisor dirtying ${rate} MiB/s, post-copy allowed`, medianRun(postW[i]!)));

    let baselineQ: number | null = null;
    let idleQ: MigrationRun | null = null;
    const dirtyQ: (MigrationRun | null)[] = rates.map(() => null);
    if (withQemu) {
      const qemuRun = async (rate: number): Promise<MigrationRun> => {
        const port = 47000 + Math.floor(Math.random() * 10000);
        const src = await Qemu.start(g, dir, "src");
        const dst = await Qemu.start(g, dir, "dst", ["-incoming", `tcp:127.0.0.1:${port}`]);
        try {
          await src.prompt();
          src.send(`wv-bench gap ${GAP_MS} ${rate} ${rate ? DIRTY_BUF_MIB : 0}\r`);
          await src.con.expect(/WVB gap-start/, 0, 60_000);
          await new Promise((r) => setTimeout(r, 1500));
          await src.hmp(`migrate -d tcp:127.0.0.1:${port}`);
          let info = "";
          for (let i = 0; i < 1200; i++) {
            info = await src.hmp("info migrate");
            if (/Migration status: (completed|failed|cancelled)/.test(info)) break;
            await new Promise((r) => setTimeout(r, 50));
          }
          if (!/Migration status: completed/.test(info)) throw new Error(`bench: QEMU's migration did not complete:\n${info}`);
          // Its figures can come a moment after the status does.
          for (let i = 0; i < 20 && !/total time: \d+ ms/.test(info); i++) {
            await new Promise((r) => setTimeout(r, 50));
            info = await src.hmp("info migrate");
          }
          const num = (re: RegExp) => {
            const m = re.exec(info);
            if (!m) throw new Error(`bench: no ${re} in QEMU's info migrate:\n${info}`);
            return Number(m[1]);
          };
          const gap = await dst.con.expect(GAP, 0, GAP_MS + 60_000);
          return {
            total_ms: num(/total time: (\d+) ms/), bytes: num(/transferred ram: (\d+) kbytes/) * 1024,
            downtime_ms: num(/downtime: (\d+) ms/), guest_gap_ms: Number(gap.m[1]) / 1000,
          };
        } finally {
          src.kill();
          dst.kill();
        }
      };
      const q = await Qemu.start(g, dir, "base");
      try {
        await q.prompt();
        q.send("wv-bench gap 2000 0 0\r");
        baselineQ = Number((await q.con.expect(GAP, 0, 60_000)).m[1]) / 1000;
      } finally {
        q.kill();
      }
      // A QEMU run that goes wrong (its console or monitor misbehaving) is left out and said, not fatal.
      const tryQemu = async (rate: number): Promise<MigrationRun[]> => {
        try {
          return [await qemuRun(rate)];
        } catch (e) {
          log(`    qemu run at ${rate} MiB/s left out: ${(e as Error).message.split("\n")[0]}`);
          return [];
        }
      };
      const iq: MigrationRun[] = [];
      for (let i = 0; i < runs; i++) iq.push(...(await tryQemu(0)));
      idleQ = iq.length ? medianRun(iq) : null;
      for (let i = 0; i < rates.length; i++) {
        const rs = await tryQemu(rates[i]!);
        dirtyQ[i] = rs.length ? medianRun(rs) : null;
      }
      log(`  qemu baseline gap ${baselineQ.toFixed(1)} ms`);
      if (idleQ) show("qemu idle", idleQ);
      rates.forEach((rate, i) => { if (dirtyQ[i]) show(`qemu dirtying ${rate} MiB/s`, dirtyQ[i]!); });
    }
    return {
      guest: `Linux 6.1, ${MEMORY}, full mode (Debian's OpenSBI), over loopback`,
      baseline_gap_ms: { wasmvisor: baselineW, qemu: baselineQ },
      idle: { wasmvisor: medianRun(idleW), qemu: idleQ },
      dirtying: rates.map((rate, i) => ({ rate_mib_s: rate, wasmvisor: medianRun(dirtyW[i]!), qemu: dirtyQ[i]!, wasmvisor_postcopy: medianRun(postW[i]!) })),
      runs,
      downtime_limit_ms: { wasmvisor: 5, qemu: 300 },
    };
  } finally {
    for (const l of listeners) l.close();
    for (const hv of hosts) await hv.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
