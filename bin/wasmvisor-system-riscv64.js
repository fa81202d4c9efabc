#!/usr/bin/env node
// qemu-system-riscv64's command line, run by wasmvisor: `wasmvisor qemu ...` under a name a
// Makefile's QEMU variable can hold (QEMU=wasmvisor-system-riscv64 make qemu).
process.argv.splice(2, 0, "qemu");
await import("./wasmvisor.js");
