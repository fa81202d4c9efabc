// Where a snapshot restore's milliseconds go: boots the cached Linux guest (full mode, 256 MiB,
// as the state suite does), snapshots it idle at its prompt, then
//   A. restores it N times through the Hypervisor (pCPU in its worker): "restore to running",
//      the figure of bench/state.ts, and the paused part alone;
//   B. the same restore's pieces N times on this thread (warm: the figures of a restore that
//      runs often), with the page faults each took (a fresh page costs ~11 us on a VM host):
//      the control plane's read of the file, openVmState's parts, building the machine (core,
//      devices), the core's state, the lazy index, and the pCPU's whole restore.
// --drive gives the VM a writable raw drive (each restore makes a qcow2 overlay on it; B is
// skipped); --pause pauses the booted VM, so the pCPU's loop is not running when a restored VM
// starts.
// Build and run (dist/pcpu-worker.js must be current):
//   node build.js --quiet && npx esbuild bench/restore-probe.ts --bundle --platform=node --format=esm \
//     --outfile=dist/restore-probe.js --external:'../guests/*' \
//     --banner:js="import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" \
//   && node dist/restore-probe.js [runs] [--drive] [--pause]
import { mkdtempSync, rmSync, copyFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Hypervisor } from "../host/hv/hypervisor";
import { Pcpu } from "../host/hv/pcpu";
import { nodePlatform } from "../host/platform/node";
import { parseCli } from "../host/cli/args";
import { median } from "../host/util/stats";
import { openVmState, lazyMemory, readConfig, readStateConfig } from "../host/state/vm-state";
import { listSections, jsonPayload, checkedPayload, TAGS } from "../host/state/container";
import { readMemoryIndex, PAGE } from "../host/state/memory";
import { buildMachine, restoreMachine } from "../host/vm/build";
import { usesBuiltinSbi } from "../host/config/vm-config";
import { Core } from "../host/core/core";
import { ByteRing } from "../host/util/ring";
import { READY, PROMPT } from "./boot";
import { buildLinuxGuest } from "../guests/linux/build.mjs";

const runs = Number(process.argv.find((a) => /^\d+$/.test(a)) ?? 10);
const withDrive = process.argv.includes("--drive");
/** The booted VM is paused during the restores: the pCPU's loop is not running when a restored VM starts. */
const idlePaused = process.argv.includes("--pause");

const io = { output: () => {}, input: () => -1, wake: () => {} };

function stats(name: string, xs: number[], faults?: number[]): void {
  const s = [...xs].sort((a, b) => a - b);
  console.log(`  ${name.padEnd(34)} median ${median(xs).toFixed(3)} ms  min ${s[0]!.toFixed(3)}  max ${s[s.length - 1]!.toFixed(3)}` +
    (faults?.length ? `  page faults ${median(faults)}` : ""));
}

async function main(): Promise<void> {
  const g = await buildLinuxGuest({ log: () => {} });
  const dir = mkdtempSync(join(tmpdir(), "wasmvisor-restore-probe-"));
  const hv = await Hypervisor.start(nodePlatform, { cpus: 1, balance: false, watchdogSeconds: 0, overcommit: Infinity, fileDescriptors: Infinity });
  try {
    const args = ["boot", "--mode", "full", "--memory", "256M", "--kernel", g.kernel, "--initrd", g.initramfs, "--append", "console=ttyS0"];
    if (withDrive) {
      copyFileSync(g.disk ?? join(g.dir, "disk.ext4"), join(dir, "disk.img"));
      args.push("--drive", `file=${join(dir, "disk.img")},format=raw`);
    }
    const cmd = parseCli(args);
    if (cmd.kind !== "boot") throw new Error("not a boot command");
    await hv.createVm({ ...cmd.config, name: "idle" });
    let text = "";
    const h = hv.attachConsole("idle", (b) => { text += Buffer.from(b).toString("latin1"); });
    await hv.act("idle", "start");
    const t0 = Date.now();
    while (!text.includes(READY)) {
      if (Date.now() - t0 > 300_000) throw new Error("no guest");
      await new Promise((r) => setTimeout(r, 100));
    }
    h.write(Buffer.from("\r"));
    while (!PROMPT.test(text.slice(text.indexOf(READY)))) await new Promise((r) => setTimeout(r, 100));
    h.detach();
    await new Promise((r) => setTimeout(r, 1000));
    const file = join(dir, "idle.wvs");
    const s = await hv.snapshot("idle", file);
    console.log(`snapshot: ${(s.bytes / 2 ** 20).toFixed(1)} MiB, ${s.pages} pages${withDrive ? ", one writable drive" : ""}`);
    if (idlePaused) await hv.act("idle", "pause");

    // A. Through the hypervisor, as the bench does: restore, then wait for the guest's answer
    // (its memory comes in meanwhile, and the touch record is written for the next restore).
    const toRunning: number[] = [], answer: number[] = [], toPaused: number[] = [], start: number[] = [];
    for (let i = 0; i < runs + 2; i++) {
      let t = performance.now();
      await hv.restore(file, { name: `copy${i}` });
      const run = performance.now() - t;
      let out = "";
      const c = hv.attachConsole(`copy${i}`, (b) => { out += Buffer.from(b).toString("latin1"); });
      c.write(Buffer.from(`echo answer-$((${i}+100))\r`));
      while (!out.includes(`answer-${i + 100}`)) await new Promise((r) => setTimeout(r, 1));
      const ans = performance.now() - t;
      c.detach();
      await hv.destroy(`copy${i}`);
      t = performance.now();
      await hv.restore(file, { name: `p${i}`, paused: true });
      const paused = performance.now() - t;
      t = performance.now();
      await hv.act(`p${i}`, "start");
      const st = performance.now() - t;
      await hv.destroy(`p${i}`);
      if (i < 2) continue; // warm-up
      toRunning.push(run);
      answer.push(ans);
      toPaused.push(paused);
      start.push(st);
    }
    console.log(`A. through the Hypervisor (${runs} runs; the booted VM ${idlePaused ? "paused" : "running, idle"}):`);
    stats("restore to running", toRunning);
    stats("first answer", answer);
    stats("restore paused", toPaused);
    stats("start after paused", start);

    if (withDrive) return; // B opens the snapshot's drive, which the booted VM has open for writing
    // B. The pieces, on this thread.
    const p: Record<string, number[]> = {};
    const faults: Record<string, number[]> = {};
    const minflt = () => process.resourceUsage().minorPageFault;
    const time = <T>(name: string, f: () => T): T => {
      const f0 = minflt();
      const t = performance.now();
      const r = f();
      (p[name] ??= []).push(performance.now() - t);
      (faults[name] ??= []).push(minflt() - f0);
      return r;
    };
    const timeAsync = async <T>(name: string, f: () => Promise<T>): Promise<T> => {
      const f0 = minflt();
      const t = performance.now();
      const r = await f();
      (p[name] ??= []).push(performance.now() - t);
      (faults[name] ??= []).push(minflt() - f0);
      return r;
    };
    const pcpu = new Pcpu(nodePlatform);
    pcpu.init(new SharedArrayBuffer(4), undefined, () => {});
    const ring = () => new ByteRing(1 << 16).buffer;
    for (let i = 0; i < runs + 2; i++) {
      if (i === 2) for (const k of Object.keys(p)) { p[k] = []; faults[k] = []; }
      const src = time("open file", () => nodePlatform.openStateFile(file, { what: "snapshot" }));
      time("readStateConfig (control plane)", () => readStateConfig(src, "s", { name: `b${i}` }));
      const sections = time("listSections", () => listSections(src, "s"));
      const conf = sections.find((x) => x.tag === TAGS.config)!;
      const def = time("config json", () => jsonPayload(src, conf, "s"));
      const config = time("readConfig", () => readConfig(def, "s", `b${i}`));
      time("cpu json", () => jsonPayload(src, sections.find((x) => x.tag === TAGS.cpu)!, "s"));
      time("machine json", () => jsonPayload(src, sections.find((x) => x.tag === TAGS.machine)!, "s"));
      time("rom", () => checkedPayload(src, sections.find((x) => x.tag === TAGS.rom)!, "s"));
      time("memory index", () => sections.filter((x) => x.tag === TAGS.memory).map((x) => readMemoryIndex((n) => src.read(x.offset, n), x, config.memory / PAGE, "s")));
      const saved = time("openVmState (whole)", () => openVmState(src, "s", { name: `b${i}` }));
      time("core (memory + instance)", () => new Core({ module: nodePlatform.coreModule(), ramSize: config.memory, paging: config.paging }));
      const m = await buildMachine(saved.config, { bios: usesBuiltinSbi(saved.config) ? "builtin" : null }, nodePlatform, io, { resume: { state: saved.machineState } }).then((m) => m);
      m.close();
      const machine = await timeAsync("restoreMachine (whole)", () => restoreMachine(saved, nodePlatform, io, { clock: { kind: "continue" }, lazy: true }));
      machine.close();
      const m2 = await timeAsync("  buildMachine (resume)", () => buildMachine(saved.config, { bios: usesBuiltinSbi(saved.config) ? "builtin" : null }, nodePlatform, io, { resume: { state: saved.machineState } }));
      time("  applyCore", () => saved.applyCore(m2.core, { kind: "continue" }));
      time("  lazyMemory", () => lazyMemory(saved, m2.core));
      m2.close();
      src.close();
      await timeAsync("Pcpu.restore (whole)", () => pcpu.restore({ config, images: { bios: null }, consoleOut: ring(), consoleIn: ring() }, file));
      pcpu.destroy(`b${i}`);
    }
    console.log(`B. pieces on one thread (${runs} runs):`);
    for (const [k, xs] of Object.entries(p)) stats(k, xs, faults[k]);
  } finally {
    await hv.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
