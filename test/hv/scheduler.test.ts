// The pCPU scheduler on simulated time: shares by weight, caps, no credit for sleeping, boosts
// for woken VMs, steal time. (bench/hypervisor measures the same with real VMs.)
import { describe, expect, it } from "vitest";
import { Scheduler, type EntityParams } from "../../host/hv/scheduler";
import { percentile } from "../../host/util/stats";

/** A simulated VM: busy all the time, or waking every `periodMs` for `burstMs` of work. */
interface SimVm extends EntityParams {
  id: string;
  periodMs?: number;
  burstMs?: number;
}

/**
 * Run the scheduler for `durationMs`, in steps of `stepMs` (the worker's preemption check
 * granularity). Returns CPU ms per VM and the scheduler for its stats.
 */
function simulate(vms: SimVm[], durationMs: number, opts: { stepMs?: number; boost?: boolean; sliceMs?: number } = {}) {
  const s = new Scheduler({ sliceMs: opts.sliceMs });
  const step = opts.stepMs ?? 1;
  const left = new Map<string, number>(); // work left in the current burst (interactive VMs)
  const nextWake = new Map<string, number>();
  for (const vm of vms) {
    s.add(vm.id, { weight: vm.weight, cap: vm.cap });
    if (vm.periodMs) nextWake.set(vm.id, vm.periodMs);
    else s.setRunnable(vm.id, true, 0);
  }
  let now = 0;
  const wakeDue = () => {
    for (const vm of vms) {
      const at = nextWake.get(vm.id);
      if (at === undefined || at > now) continue;
      nextWake.set(vm.id, at + vm.periodMs!);
      left.set(vm.id, (left.get(vm.id) ?? 0) + vm.burstMs!);
      s.setRunnable(vm.id, true, at, opts.boost ?? true);
    }
  };
  while (now < durationMs) {
    wakeDue();
    const d = s.pick(now);
    if (d.kind === "idle") {
      const wakes = [...nextWake.values()];
      now = Math.min(d.untilMs ?? Infinity, ...wakes, durationMs);
      continue;
    }
    let ran = 0;
    while (ran < d.sliceMs && now < durationMs) {
      const burst = left.get(d.id);
      const dt = Math.min(step, d.sliceMs - ran, burst ?? Infinity);
      now += dt;
      ran += dt;
      if (burst !== undefined) {
        left.set(d.id, burst - dt);
        if (burst - dt <= 1e-9) break;
      }
      wakeDue();
      if (s.preempts(d.id)) break;
    }
    s.charge(d.id, ran, now);
    if (left.has(d.id) && left.get(d.id)! <= 1e-9) {
      left.set(d.id, 0);
      s.setRunnable(d.id, false, now);
    }
  }
  const cpu = Object.fromEntries(vms.map((vm) => [vm.id, s.stats(vm.id, now).cpuMs]));
  return { s, cpu, now };
}

const jain = (xs: number[]) => xs.reduce((a, b) => a + b) ** 2 / (xs.length * xs.reduce((a, b) => a + b * b, 0));

describe("proportional share", () => {
  it("gives three busy VMs with weights 1:2:4 shares within 5% of 1/7, 2/7, 4/7 over 10 s", () => {
    const { cpu } = simulate([{ id: "a", weight: 1 }, { id: "b", weight: 2 }, { id: "c", weight: 4 }], 10_000);
    const total = cpu.a + cpu.b + cpu.c;
    expect(total).toBeCloseTo(10_000, 0);
    for (const [id, w] of [["a", 1], ["b", 2], ["c", 4]] as const) {
      expect(Math.abs(cpu[id] / total - w / 7) / (w / 7)).toBeLessThan(0.05);
    }
  });

  it("is fair among equal weights (Jain's index ≥ 0.99)", () => {
    const { cpu } = simulate(["a", "b", "c", "d", "e"].map((id) => ({ id, weight: 3 })), 5_000);
    expect(jain(Object.values(cpu))).toBeGreaterThanOrEqual(0.99);
  });

  it("gives an idle VM's time to the others, and no credit for the sleep afterwards", () => {
    const s = new Scheduler();
    s.add("a", { weight: 1 });
    s.add("b", { weight: 1 });
    s.setRunnable("a", true, 0);
    let now = 0;
    const runFor = (ms: number) => {
      const end = now + ms;
      while (now < end) {
        const d = s.pick(now);
        if (d.kind !== "run") throw new Error("idle with a busy VM");
        now += d.sliceMs;
        s.charge(d.id, d.sliceMs, now);
      }
    };
    runFor(5_000); // a alone: it gets everything
    expect(s.stats("a", now).cpuMs).toBe(5_000);
    s.setRunnable("b", true, now);
    runFor(1_000); // then both: b must not make up for the 5 s it slept
    expect(s.stats("b", now).cpuMs).toBeGreaterThanOrEqual(480);
    expect(s.stats("b", now).cpuMs).toBeLessThanOrEqual(540);
  });

  it("charges steal time while a VM waits for the pCPU", () => {
    const { s, now } = simulate([{ id: "a", weight: 1 }, { id: "b", weight: 1 }], 1_000);
    for (const id of ["a", "b"]) {
      const st = s.stats(id, now);
      expect(st.cpuMs + st.stealMs).toBeCloseTo(1_000, 0);
      expect(st.stealMs).toBeGreaterThan(450);
    }
  });
});

describe("caps", () => {
  it("holds a 25% cap within 2 points even when the pCPU would otherwise idle", () => {
    const { cpu, now } = simulate([{ id: "a", weight: 1, cap: 0.25 }], 10_000);
    expect(Math.abs(cpu.a / now - 0.25)).toBeLessThan(0.02);
  });

  it("holds the cap against a competitor, which gets the rest (work-conserving)", () => {
    const { cpu, now } = simulate([{ id: "a", weight: 4, cap: 0.25 }, { id: "b", weight: 1 }], 10_000);
    expect(Math.abs(cpu.a / now - 0.25)).toBeLessThan(0.02);
    expect(cpu.b / now).toBeGreaterThan(0.73);
  });

  it("says when a throttled VM may run again", () => {
    const s = new Scheduler({ capPeriodMs: 100 });
    s.add("a", { weight: 1, cap: 0.5 });
    s.setRunnable("a", true, 0);
    const d1 = s.pick(0);
    expect(d1).toEqual({ kind: "run", id: "a", sliceMs: 20 });
    s.charge("a", 50, 50);
    expect(s.pick(50)).toEqual({ kind: "idle", untilMs: 100 });
    expect(s.pick(100)).toMatchObject({ kind: "run", id: "a" });
  });
});

describe("boost", () => {
  // An interactive VM wakes every 50 ms for 1 ms of work, against two CPU hogs.
  const vms: SimVm[] = [
    { id: "hog1", weight: 1 }, { id: "hog2", weight: 1 },
    { id: "shell", weight: 1, periodMs: 50, burstMs: 1 },
  ];
  const p99 = (xs: number[]) => percentile(xs, 0.99);

  it("runs a VM woken by an interrupt within a step, not after the others' slices", () => {
    const { s } = simulate(vms, 5_000, { boost: true });
    const lat = s.stats("shell", 5_000).wakeLatencies;
    expect(lat.length).toBeGreaterThan(90);
    expect(p99(lat)).toBeLessThanOrEqual(1);
  });

  it("without the boost the same VM waits for slices to end", () => {
    const { s } = simulate(vms, 5_000, { boost: false });
    expect(p99(s.stats("shell", 5_000).wakeLatencies)).toBeGreaterThan(10);
  });

  it("does not let waking often buy more than the weight's share", () => {
    // A VM that wakes every ms for 5 ms of work is nearly CPU-bound: it gets half, not more.
    const { cpu, now } = simulate([{ id: "hog", weight: 1 }, { id: "chatty", weight: 1, periodMs: 1, burstMs: 5 }], 5_000);
    expect(cpu.chatty / now).toBeLessThan(0.56);
    expect(cpu.hog / now).toBeGreaterThan(0.44);
  });
});

describe("bad parameters", () => {
  it("refuses non-positive weights, caps outside (0, 1] and unknown or duplicate VMs", () => {
    const s = new Scheduler();
    expect(() => s.add("a", { weight: 0 })).toThrow(/weight must be a positive number/);
    expect(() => s.add("a", { weight: 1, cap: 1.5 })).toThrow(/cap must be in \(0, 1\]/);
    s.add("a", { weight: 1 });
    expect(() => s.add("a", { weight: 1 })).toThrow(/already scheduled/);
    expect(() => s.setRunnable("zz", true, 0)).toThrow(/no VM zz/);
    expect(() => new Scheduler({ sliceMs: 0 })).toThrow(/time slice/);
  });
});
