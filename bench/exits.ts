// Exits suite: what one round trip core -> host -> core costs, timed with benchmark.js. Each
// benchmarked call makes exactly one exit: core.run() until the guest's next MMIO access or
// ecall, then the host's handling of it, the same calls VirtMachine.step() makes per exit.
// The guest loops are two or three instructions long; their cost is included, not subtracted.
import Benchmark from "benchmark";
import { VirtMachine, type VirtConfig } from "../host/machine/virt";
import { BOARD } from "../host/machine/memory-map";
import { loadCoreModule } from "../host/platform/node/core";
import { nodePlatform } from "../host/platform/node";
import * as L from "../host/core/layout";
import { SPEC_VERSION } from "../host/sbi/sbi";
import { asm } from "../host/util/riscv-asm";

export interface ExitRow {
  key: string;
  label: string;
  /** What one round trip is. */
  detail: string;
  /** Mean microseconds per round trip, and benchmark.js's relative margin of error (95%). */
  mean_us: number;
  rme_percent: number;
  samples: number;
  /** Guest instructions executed per round trip (included in mean_us); null: no guest. */
  guest_instructions: number | null;
}

export interface ExitsResult {
  mmio_roundtrip_us: number;
  rows: ExitRow[];
}

const UART0_BASE = BOARD.uart.base;
const UART_SCR = 7; // the 16550's scratch register: stores and loads have no side effect
const RUN_BUDGET = 1000; // far more than one loop iteration: run() returns at the exit

// M-mode guest (started with --bios none): store a counter to the UART scratch register forever.
const MMIO_STORE_LOOP = asm`
  li t0, ${UART0_BASE}
  li t1, 0
loop:
  addi t1, t1, 1
  sb t1, ${UART_SCR}(t0)
  j loop
`;

// The same with a load of the scratch register.
const MMIO_LOAD_LOOP = asm`
  li t0, ${UART0_BASE}
loop:
  lbu t1, ${UART_SCR}(t0)
  j loop
`;

// S-mode kernel on the built-in SBI: sbi_get_spec_version (BASE extension, function 0) forever.
const SBI_LOOP = asm`
  li a7, 0x10
  li a6, 0
loop:
  ecall
  j loop
`;

function machine(bios: VirtConfig["bios"], code: Uint8Array): VirtMachine {
  return new VirtMachine({
    module: loadCoreModule(), memory: 16 << 20, bios, kernel: { name: "exit-loop", bytes: code },
    output: () => {},
  });
}

/** Run hart 0 to its next exit, which must be `want`. */
function runToExit(m: VirtMachine, want: number): void {
  const reason = m.core.run(0, RUN_BUDGET);
  if (reason !== want) throw new Error(`exits suite: expected exit ${want}, core returned ${reason} at pc 0x${m.core.pc(0).toString(16)}`);
}

function measure(name: string, options: Benchmark.Options): Promise<Benchmark> {
  return new Promise((resolve, reject) => {
    const b = new Benchmark(name, options);
    b.on("complete", () => (b.error ? reject(b.error) : resolve(b)));
    b.run({ async: true });
  });
}

function row(key: string, label: string, detail: string, b: Benchmark, guestInstructions: number | null): ExitRow {
  return { key, label, detail, mean_us: b.stats.mean * 1e6, rme_percent: b.stats.rme, samples: b.stats.sample.length, guest_instructions: guestInstructions };
}

export async function exitsSuite(quick: boolean, log: (s: string) => void): Promise<ExitsResult> {
  const timing = { maxTime: quick ? 1 : 3, minSamples: 5 }; // seconds of sampling per row
  const rows: ExitRow[] = [];
  const report = (r: ExitRow) => {
    rows.push(r);
    log(`  ${r.label.padEnd(22)} ${r.mean_us.toFixed(3).padStart(8)} µs ±${r.rme_percent.toFixed(1).padStart(4)}%  (${r.detail})`);
  };

  // MMIO store. The boot ROM and the loop's set-up run before the first exit.
  const store = machine(null, MMIO_STORE_LOOP);
  let stores = 0;
  const storeRoundTrip = () => {
    runToExit(store, L.EXIT_MMIO);
    store.bus.handleExit(0);
    stores++;
  };
  report(row("mmio_store", "MMIO store", "`sb` to the UART's scratch register: core.run, Bus.handleExit, Uart16550.write", await measure("mmio store", { ...timing, fn: storeRoundTrip }), 3));
  // The device model saw every store: its register holds the guest's counter.
  if (store.bus.read(UART0_BASE + UART_SCR, 1)[0] !== (stores & 0xff)) throw new Error("exits suite: the UART did not receive every store");

  const load = machine(null, MMIO_LOAD_LOOP);
  const loadRoundTrip = () => {
    runToExit(load, L.EXIT_MMIO);
    load.bus.handleExit(0);
  };
  report(row("mmio_load", "MMIO load", "`lbu` from the UART's scratch register, answered on the next core.run", await measure("mmio load", { ...timing, fn: loadRoundTrip }), 2));

  // The whole machine loop: step() with a budget of one loop iteration makes one exit, plus
  // its per-step work (console input, RTC poll, output flush).
  const stepped = machine(null, MMIO_STORE_LOOP);
  runToExit(stepped, L.EXIT_MMIO);
  stepped.bus.handleExit(0);
  const before = stepped.exits.mmio;
  let steps = 0;
  const stepRoundTrip = () => { stepped.step(3); steps++; };
  report(row("mmio_store_step", "MMIO store via step()", "the MMIO store through VirtMachine.step(3), with its per-step work", await measure("step", { ...timing, fn: stepRoundTrip }), 3));
  if (stepped.exits.mmio - before !== steps) throw new Error(`exits suite: step(3) made ${stepped.exits.mmio - before} MMIO exits in ${steps} calls`);

  const sbi = machine("builtin", SBI_LOOP);
  const sbiRoundTrip = () => {
    runToExit(sbi, L.EXIT_SBI);
    sbi.sbi!.handle(0);
  };
  report(row("sbi_ecall", "SBI ecall", "`ecall` from S-mode: sbi_get_spec_version on the built-in SBI (BuiltinSbi.handle)", await measure("sbi", { ...timing, fn: sbiRoundTrip }), 2));
  if (sbi.core.x(0, 11) !== BigInt(SPEC_VERSION)) throw new Error("exits suite: the SBI call did not return the spec version");

  // For scale: a Comlink call from this thread to an idle pCPU worker and back.
  const thread = await nodePlatform.startPcpu();
  try {
    const comlink = await measure("comlink", {
      ...timing, defer: true,
      fn: (d: Benchmark.Deferred) => { void thread.pcpu.demand().then(() => d.resolve()); },
    });
    report(row("comlink_call", "Comlink call", "Pcpu.demand() from this thread to an idle pCPU worker and back", comlink, null));
  } finally {
    await thread.terminate();
  }
  return { mmio_roundtrip_us: rows.find((r) => r.key === "mmio_store")!.mean_us, rows };
}
