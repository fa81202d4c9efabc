#!/usr/bin/env node
// Builds the project's bare-metal test programs (guests/baremetal/tests) and
// benchmark guests (guests/bench) with riscv64-unknown-elf-gcc.
//
// Output goes to a cache directory outside the repository:
//   ${XDG_CACHE_HOME:-~/.cache}/wasmvisor/baremetal/<hash>/
// where <hash> covers every source file, this script (flags live here) and the
// compiler's version, so a second run with nothing changed only hashes files.
//
// Every program exists in two flavours built from the same sources:
//   <name>.elf       HTIF console + exit (tohost/fromhost). This is the product:
//                    QEMU `-M spike -bios none` and wasmvisor run these.
//   virt/<name>.elf  ns16550 UART at 0x10000000 + SiFive test finisher at
//                    0x100000 (-DCONSOLE_VIRT). Only used to cross-check on
//                    QEMU `-M virt`, which (unlike QEMU spike) has the `time`
//                    CSR and Sstc.
//
// Usage as a module:  const { dir, programs } = await buildBaremetal({ log: console.log })
// Usage as a CLI:     node guests/baremetal/build.mjs [--verbose]   (prints the directory)
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { cpus, homedir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url)); // guests/baremetal
const GUESTS = resolve(HERE, '..'); // guests
const RUNTIME_DIR = join(HERE, 'runtime');
const CC = 'riscv64-unknown-elf-gcc';
const OBJDUMP = 'riscv64-unknown-elf-objdump';

const RUNTIME_SOURCES = ['crt.S', 'htif.c', 'trap.c', 'test.c', 'lib.c'].map((f) => join(RUNTIME_DIR, f));

const MARCH = 'rv64gc';
const COMMON_FLAGS = [
  '-mabi=lp64d',
  '-mcmodel=medany',
  '-ffreestanding',
  '-fno-tree-loop-distribute-patterns', // keep GCC from turning lib.c's loops into calls to themselves
  '-nostdlib',
  '-nostartfiles',
  '-static',
  '-g',
  '-Wall',
  '-Wextra',
  '-Wno-unused-parameter',
  '-Werror',
  `-I${RUNTIME_DIR}`,
  '-T',
  join(RUNTIME_DIR, 'link.ld'),
  '-Wl,--no-warn-rwx-segments',
];

/**
 * The programs. `sources` are relative to guests/. `opt` defaults to -O2,
 * `march` to rv64gc; `cflags` are extra compiler flags. Benchmarks take their
 * iteration count from -DITERS (default in each source; see `defines` below).
 */
const PROGRAMS = [
  { name: 'rv64i', sources: ['baremetal/tests/rv64i.c', 'baremetal/tests/rv64i_asm.S'] },
  { name: 'rv64m', sources: ['baremetal/tests/rv64m.c'] },
  { name: 'rv64a', sources: ['baremetal/tests/rv64a.c'] },
  { name: 'rv64c', sources: ['baremetal/tests/rv64c.c', 'baremetal/tests/rv64c_asm.S'] },
  { name: 'rv64fd', sources: ['baremetal/tests/rv64fd.c'] },
  { name: 'zb', sources: ['baremetal/tests/zb.c'], march: 'rv64gc_zba_zbb_zbs' },
  { name: 'priv', sources: ['baremetal/tests/priv.c', 'baremetal/tests/priv_asm.S'] },
  { name: 'vm', sources: ['baremetal/tests/vm.c'] },
  { name: 'irq', sources: ['baremetal/tests/irq.c'] },
  { name: 'trigger', sources: ['baremetal/tests/trigger.c', 'baremetal/tests/trigger_asm.S'] },
  // test/lazy-memory.test.ts saves it mid-run and resumes it from lazily supplied RAM; with a
  // virtio-blk disk it also checks a DMA into a page it wrote before.
  { name: 'lazy', sources: ['baremetal/tests/lazy.c'] },
  // test/integration/gdb.test.ts debugs it (it spins until the debugger releases it).
  { name: 'gdb', sources: ['baremetal/tests/gdb.c'], opt: '-O1' },
  // Needs a virtio-blk disk whose first sector starts with "WVBLK-OK" (see HARNESS_PROGRAMS).
  { name: 'virtio_bad', sources: ['baremetal/tests/virtio_bad.c'] },
  // Never ends by itself: test/hostile-guest.test.ts picks its attack and bounds its run.
  { name: 'hostile', sources: ['baremetal/tests/hostile.c'] },
  { name: 'bench-int', sources: ['bench/int.c'], bench: true },
  { name: 'bench-mem', sources: ['bench/mem.c'], bench: true },
  { name: 'bench-branch', sources: ['bench/branch.c'], bench: true },
  { name: 'bench-fp', sources: ['bench/fp.c'], bench: true, cflags: ['-ffp-contract=off'] },
  { name: 'bench-rvc', sources: ['bench/rvc.c'], bench: true, opt: '-Os' },
  { name: 'bench-calls', sources: ['bench/calls.c'], bench: true },
  // Exits at once: bench/cpu.ts times QEMU's start-up with it.
  { name: 'empty', sources: ['bench/empty.c'] },
];

export const PROGRAM_NAMES = PROGRAMS.map((p) => p.name);
/** Programs that run only under their own harness (a disk attached, an attack chosen, a start-up timed): generic runners skip them. */
export const HARNESS_PROGRAMS = ['virtio_bad', 'hostile', 'empty', 'gdb'];

function run(cmd, args, opts = {}) {
  return new Promise((resolvePromise, reject) => {
    let child;
    try {
      child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    } catch (err) {
      reject(err);
      return;
    }
    const out = [];
    const errOut = [];
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', (d) => errOut.push(d));
    child.on('error', reject);
    child.on('close', (code) => {
      resolvePromise({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(errOut).toString() });
    });
  });
}

async function compilerVersion() {
  let res;
  try {
    res = await run(CC, ['--version']);
  } catch (err) {
    if (err && err.code === 'ENOENT') {
      throw new Error(
        `${CC} not found: install gcc-riscv64-unknown-elf (apt-get install gcc-riscv64-unknown-elf; the project's test command does this)`,
      );
    }
    throw err;
  }
  if (res.code !== 0) throw new Error(`${CC} --version failed: ${res.stderr.trim()}`);
  return res.stdout.split('\n')[0].trim();
}

async function listFiles(dir) {
  const out = [];
  if (!existsSync(dir)) return out;
  for (const ent of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, ent.name);
    if (ent.isDirectory()) out.push(...(await listFiles(p)));
    else if (/\.(c|h|S|s|ld)$/.test(ent.name)) out.push(p);
  }
  return out.sort();
}

function defineFlags(defs) {
  return Object.entries(defs ?? {}).map(([k, v]) => (v === true || v === undefined ? `-D${k}` : `-D${k}=${v}`));
}

function compileArgs(prog, variant, extraDefines, output) {
  return [
    `-march=${prog.march ?? MARCH}`,
    prog.opt ?? '-O2',
    ...COMMON_FLAGS,
    ...(prog.cflags ?? []),
    ...(variant === 'virt' ? ['-DCONSOLE_VIRT'] : []),
    `-DPROGRAM_NAME="${prog.name}"`,
    ...defineFlags({ ...(prog.defines ?? {}), ...(extraDefines?.[prog.name] ?? {}) }),
    ...RUNTIME_SOURCES,
    ...prog.sources.map((s) => join(GUESTS, s)),
    '-lgcc',
    '-o',
    output,
  ];
}

function cacheRoot() {
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'wasmvisor', 'baremetal');
}

async function pool(items, limit, fn) {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next++];
      await fn(item);
    }
  });
  await Promise.all(workers);
}

/**
 * Builds (or finds in the cache) every bare-metal program.
 * @param {{ log?: (msg: string) => void, defines?: Record<string, Record<string, string|number|boolean>> }} [options]
 *   `defines`: extra -D values per program name, e.g. { 'bench-int': { ITERS: 10 } }.
 * @returns {Promise<{ dir: string, programs: Record<string, string>, virtPrograms: Record<string, string> }>}
 */
export async function buildBaremetal(options = {}) {
  const log = options.log ?? (() => {});
  const extraDefines = options.defines ?? {};
  const version = await compilerVersion();

  const hash = createHash('sha256');
  hash.update(`compiler:${version}\n`);
  hash.update(`flags:${JSON.stringify({ MARCH, COMMON_FLAGS, PROGRAMS, extraDefines }).replaceAll(GUESTS, '<guests>')}\n`);
  hash.update(await readFile(fileURLToPath(import.meta.url)));
  const files = [...(await listFiles(HERE)), ...(await listFiles(join(GUESTS, 'bench')))];
  for (const f of files) {
    hash.update(`file:${relative(GUESTS, f)}\n`);
    hash.update(await readFile(f));
  }
  const digest = hash.digest('hex').slice(0, 16);

  const root = cacheRoot();
  const dir = join(root, digest);
  const result = (d) => ({
    dir: d,
    programs: Object.fromEntries(PROGRAMS.map((p) => [p.name, join(d, `${p.name}.elf`)])),
    virtPrograms: Object.fromEntries(PROGRAMS.map((p) => [p.name, join(d, 'virt', `${p.name}.elf`)])),
  });
  if (existsSync(join(dir, 'manifest.json'))) {
    log(`baremetal: up to date in ${dir}`);
    return result(dir);
  }

  await mkdir(root, { recursive: true });
  const tmp = join(root, `${digest}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  await mkdir(join(tmp, 'virt'), { recursive: true });
  log(`baremetal: building ${PROGRAMS.length} programs with ${version}`);
  const jobs = PROGRAMS.flatMap((p) => [
    { prog: p, variant: 'htif' },
    { prog: p, variant: 'virt' },
  ]);
  const failures = [];
  try {
    await pool(jobs, Math.max(2, cpus().length), async ({ prog, variant }) => {
      const out = variant === 'virt' ? join(tmp, 'virt', `${prog.name}.elf`) : join(tmp, `${prog.name}.elf`);
      const res = await run(CC, compileArgs(prog, variant, extraDefines, out));
      if (res.code !== 0) {
        failures.push(`${prog.name} (${variant}):\n${res.stderr}`);
        return;
      }
      if (variant === 'htif') {
        const dis = await run(OBJDUMP, ['-d', '-M', 'no-aliases', out]).catch(() => null);
        if (dis && dis.code === 0) await writeFile(out.replace(/\.elf$/, '.dis'), dis.stdout);
      }
      log(`baremetal: built ${prog.name}${variant === 'virt' ? ' (virt)' : ''}`);
    });
    if (failures.length) throw new Error(`bare-metal build failed:\n${failures.join('\n')}`);
    const manifest = {
      hash: digest,
      compiler: version,
      programs: Object.fromEntries(PROGRAMS.map((p) => [p.name, `${p.name}.elf`])),
      virtPrograms: Object.fromEntries(PROGRAMS.map((p) => [p.name, `virt/${p.name}.elf`])),
    };
    await writeFile(join(tmp, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
    try {
      await rename(tmp, dir);
    } catch (err) {
      // Another process finished the same build first: use theirs.
      if (!existsSync(join(dir, 'manifest.json'))) throw err;
      await rm(tmp, { recursive: true, force: true });
    }
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
  log(`baremetal: done in ${dir}`);
  return result(dir);
}

const isMain = process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href;
if (isMain) {
  const verbose = process.argv.includes('--verbose') || process.argv.includes('-v');
  buildBaremetal({ log: verbose ? (m) => console.error(m) : undefined }).then(
    ({ dir }) => console.log(dir),
    (err) => {
      console.error(err instanceof Error ? err.message : err);
      process.exit(1);
    },
  );
}
