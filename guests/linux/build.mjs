#!/usr/bin/env node
// Builds the default Linux guest of wasmvisor from Debian packages:
//
//   Image              Linux 6.1 (linux-source-6.1), ARCH=riscv, uncompressed,
//                      small config: allnoconfig + guests/linux/kernel.config
//   initramfs.cpio.gz  static BusyBox (Debian's busybox source package) +
//                      guests/linux/init + guests/linux/rootfs/ + the guest-side
//                      benchmark and test programs of guests/linux/bench/
//                      (/usr/bin/wv-bench, compiled here; /usr/bin/wv-selftest)
//   disk.ext4          64 MiB ext4 data disk (PRISTINE copy: callers copy it
//                      before letting a guest write to it)
//
// Everything is built outside the repository, in
//   ${XDG_CACHE_HOME:-~/.cache}/wasmvisor/linux/<hash>/
// where <hash> covers this script, kernel.config, init, rootfs/, bench/ and the
// versions of linux-source-6.1, the busybox source package and the cross
// compiler. A finished directory is complete by construction (built in a
// temporary directory, then renamed), so a second run only hashes and returns.
//
// The two expensive parts are also cached on their own, under parts/, keyed by
// just their own inputs, so that editing init or rootfs/ does not rebuild the
// kernel (kernel-<h>: kernel.config, kernel builder, kernel source, compiler)
// or BusyBox (busybox-<h>: BusyBox builder, BusyBox source, compiler). The
// programs of bench/ are small and compiled with every initramfs.
//
// Usage as a module:  const { dir, kernel, initramfs, disk } = await buildLinuxGuest({ log })
// Usage as a CLI:     node guests/linux/build.mjs   (progress on stderr, JSON result on stdout)
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync } from 'node:fs';
import {
  appendFile,
  chmod,
  copyFile,
  cp,
  lstat,
  mkdir,
  readdir,
  readFile,
  readlink,
  rename,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import { cpus, homedir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';

const HERE = dirname(fileURLToPath(import.meta.url)); // guests/linux
const KERNEL_FRAGMENT = join(HERE, 'kernel.config');
const INIT_SCRIPT = join(HERE, 'init');
const ROOTFS_OVERLAY = join(HERE, 'rootfs');
const GUEST_PROGRAMS = join(HERE, 'bench');

const CROSS = 'riscv64-linux-gnu-';
/** BusyBox's make variables for the guest (riscv64); this machine's are none. */
const GUEST_TARGET = { CROSS_COMPILE: CROSS, ARCH: 'riscv' };
const KERNEL_TARBALL = '/usr/src/linux-source-6.1.tar.xz';
const DISK_SIZE = '64M';

/** Debian packages the build needs (binary packages; BusyBox comes as a source package). */
const PACKAGES = [
  'linux-source-6.1',
  'gcc-riscv64-linux-gnu',
  'libc6-dev-riscv64-cross',
  'build-essential',
  'bc',
  'bison',
  'flex',
  'libssl-dev',
  'libelf-dev',
  'cpio',
  'e2fsprogs',
  'dpkg-dev',
  'xz-utils',
];

/** Changes to BusyBox's `make defconfig` (value null = "is not set"). */
const BUSYBOX_CONFIG = {
  // Everything else of defconfig builds statically against bookworm's
  // riscv64 glibc (glibc only warns about getpwnam & co. in static binaries).
  CONFIG_STATIC: 'y',
};

// ---------------------------------------------------------------------------
// helpers

function cacheRoot() {
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'wasmvisor', 'linux');
}

function sha256(...parts) {
  const h = createHash('sha256');
  for (const p of parts) {
    h.update(typeof p === 'string' || Buffer.isBuffer(p) ? p : JSON.stringify(p));
    h.update('\0');
  }
  return h.digest('hex');
}

function fmtTime(ms) {
  const s = Math.round(ms / 1000);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

/** Runs a command, capturing its output. Never rejects on a non-zero exit. */
function capture(cmd, args, opts = {}) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    const out = [];
    const err = [];
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', (d) => err.push(d));
    child.on('error', reject);
    child.on('close', (code) =>
      resolvePromise({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }),
    );
  });
}

/** Commands running for this process (the CLI stops them on SIGINT/SIGTERM). */
const liveChildren = new Set();

/**
 * The build log: every command's output goes to one file; `run` rejects with
 * an error carrying the log's last lines when a command fails.
 */
class BuildLog {
  constructor(path) {
    this.path = path;
  }

  async open() {
    await mkdir(dirname(this.path), { recursive: true });
    await writeFile(this.path, `# wasmvisor linux guest build, ${new Date().toISOString()}\n`);
  }

  note(line) {
    return appendFile(this.path, `\n### ${line}\n`);
  }

  /**
   * Runs cmd with stdout+stderr appended to the log. onLine(line) sees every
   * stdout line (for progress). Rejects on a non-zero exit.
   */
  async run(cmd, args, { cwd, env, onLine } = {}) {
    await this.note(`${cwd ? `(cd ${cwd}) ` : ''}${cmd} ${args.join(' ')}`);
    const stream = createWriteStream(this.path, { flags: 'a' });
    await new Promise((r) => stream.once('open', r));
    try {
      const code = await new Promise((resolvePromise, reject) => {
        const child = spawn(cmd, args, {
          cwd,
          env: { ...process.env, LC_ALL: 'C', ...env },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        liveChildren.add(child);
        child.on('close', () => liveChildren.delete(child));
        let partial = '';
        child.stdout.on('data', (d) => {
          stream.write(d);
          if (!onLine) return;
          const text = partial + d.toString();
          const lines = text.split('\n');
          partial = lines.pop();
          for (const l of lines) onLine(l);
        });
        child.stderr.on('data', (d) => stream.write(d));
        child.on('error', reject);
        child.on('close', resolvePromise);
      });
      if (code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with status ${code}`);
    } finally {
      await new Promise((r) => stream.end(r));
    }
  }

  async tail(n = 30) {
    try {
      const lines = (await readFile(this.path, 'utf8')).trimEnd().split('\n');
      return lines.slice(-n).join('\n');
    } catch {
      return '';
    }
  }
}

/** Calls fn every `ms` while `promise` is pending. */
async function withHeartbeat(promise, ms, fn) {
  const t = setInterval(fn, ms);
  try {
    return await promise;
  } finally {
    clearInterval(t);
  }
}

/** A problem with the machine's setup, reported as one line (no log tail). */
class SetupError extends Error {}

const isRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;

async function pidAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
}

/** Removes temporary directories (`.tmp-*-<pid>`) left behind by dead builds. */
async function removeStaleTemps(dir) {
  if (!existsSync(dir)) return;
  for (const name of await readdir(dir)) {
    const m = /^\.tmp-.*-(\d+)$/.exec(name);
    if (m && Number(m[1]) !== process.pid && !(await pidAlive(Number(m[1])))) {
      await rm(join(dir, name), { recursive: true, force: true });
    }
  }
}

/** Temporary directories of this process, removed when the build fails. */
const liveTemps = new Set();

async function makeTemp(path) {
  await rm(path, { recursive: true, force: true });
  await mkdir(join(path, 'work'), { recursive: true });
  liveTemps.add(path);
  return path;
}

/** Renames a finished temporary directory into place (another build may have won). */
async function publish(tmp, final) {
  liveTemps.delete(tmp);
  try {
    await rename(tmp, final);
  } catch (err) {
    if (existsSync(join(final, 'manifest.json'))) {
      await rm(tmp, { recursive: true, force: true });
      return;
    }
    throw err;
  }
}

async function listFilesRecursive(dir) {
  const out = [];
  if (!existsSync(dir)) return out;
  for (const ent of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, ent.name);
    if (ent.isDirectory()) out.push(...(await listFilesRecursive(p)));
    else out.push(p);
  }
  return out.sort();
}

// ---------------------------------------------------------------------------
// packages

async function missingPackages(pkgs) {
  const res = await capture('dpkg-query', ['-W', '-f=${Package} ${db:Status-Status}\n', ...pkgs]);
  const installed = new Set(
    res.stdout
      .split('\n')
      .filter((l) => l.endsWith(' installed'))
      .map((l) => l.split(' ')[0]),
  );
  return pkgs.filter((p) => !installed.has(p));
}

async function ensurePackages(log, buildLog) {
  const missing = await missingPackages(PACKAGES);
  if (missing.length === 0) return;
  const cmd = `DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing.join(' ')}`;
  if (!isRoot()) throw new SetupError(`missing Debian packages; as root run: apt-get update && ${cmd}`);
  await buildLog.open();
  log(`installing ${missing.join(' ')}`);
  const env = { DEBIAN_FRONTEND: 'noninteractive' };
  await buildLog.run('apt-get', ['update'], { env });
  await buildLog.run('apt-get', ['install', '-y', '--no-install-recommends', ...missing], { env });
  const still = await missingPackages(PACKAGES);
  if (still.length) throw new Error(`apt-get did not install: ${still.join(' ')}`);
}

async function dpkgVersion(pkg) {
  const res = await capture('dpkg-query', ['-W', '-f=${Version}', pkg]);
  return res.code === 0 ? res.stdout.trim() : null;
}

/** The newest version of a source package apt knows about, or null (no deb-src entries). */
async function sourceVersion(pkg) {
  const res = await capture('apt-cache', ['showsrc', '--only-source', pkg]);
  if (res.code !== 0) return null;
  const versions = [...res.stdout.matchAll(/^Version: (\S+)$/gm)].map((m) => m[1]);
  let best = null;
  for (const v of versions) {
    if (best === null || (await capture('dpkg', ['--compare-versions', v, 'gt', best])).code === 0) best = v;
  }
  return best;
}

/**
 * Adds deb-src entries mirroring this machine's Debian `deb` entries (both the
 * one-line sources.list format and deb822 .sources files) as
 * /etc/apt/sources.list.d/wasmvisor-src.{list,sources}, then runs apt-get update.
 */
async function addDebSrc(log, buildLog) {
  const codename = /^VERSION_CODENAME=(\S+)$/m.exec(await readFile('/etc/os-release', 'utf8').catch(() => ''))?.[1];
  const isDebianSuite = (suite) => codename && (suite === codename || suite.startsWith(`${codename}-`));
  const lists = [];
  const stanzas = [];
  const files = ['/etc/apt/sources.list'];
  if (existsSync('/etc/apt/sources.list.d')) {
    for (const f of (await readdir('/etc/apt/sources.list.d')).sort()) {
      if (f.startsWith('wasmvisor-src.')) continue;
      if (f.endsWith('.list') || f.endsWith('.sources')) files.push(join('/etc/apt/sources.list.d', f));
    }
  }
  for (const file of files) {
    if (!existsSync(file)) continue;
    const text = await readFile(file, 'utf8');
    if (file.endsWith('.sources')) {
      for (const block of text.split(/\n\s*\n/)) {
        const fields = {};
        let key = null;
        for (const line of block.split('\n')) {
          if (line.startsWith('#')) continue;
          const m = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
          if (m) {
            key = m[1];
            fields[key] = m[2];
          } else if (key && /^\s/.test(line)) fields[key] += `\n${line}`;
        }
        const types = (fields.Types || '').split(/\s+/);
        const suites = (fields.Suites || '').split(/\s+/).filter(isDebianSuite);
        if (!types.includes('deb') || suites.length === 0 || (fields.Enabled || 'yes') === 'no') continue;
        const out = { ...fields, Types: 'deb-src', Suites: suites.join(' ') };
        stanzas.push(
          Object.entries(out)
            .map(([k, v]) => `${k}: ${v}`)
            .join('\n'),
        );
      }
    } else {
      for (const raw of text.split('\n')) {
        const line = raw.trim();
        const m = /^deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)$/.exec(line);
        if (m && isDebianSuite(m[3])) lists.push(`deb-src ${m[1] || ''}${m[2]} ${m[3]} ${m[4]}`);
      }
    }
  }
  if (lists.length === 0 && stanzas.length === 0) {
    throw new Error(`no Debian '${codename}' deb entries found in /etc/apt to mirror as deb-src`);
  }
  const header = '# Added by wasmvisor guests/linux/build.mjs (apt-get source busybox).\n';
  if (stanzas.length) {
    const path = '/etc/apt/sources.list.d/wasmvisor-src.sources';
    log(`adding deb-src entries: ${path}`);
    await writeFile(path, `${header}${stanzas.join('\n\n')}\n`);
  }
  if (lists.length) {
    const path = '/etc/apt/sources.list.d/wasmvisor-src.list';
    log(`adding deb-src entries: ${path}`);
    await writeFile(path, `${header}${lists.join('\n')}\n`);
  }
  log('apt-get update');
  await buildLog.run('apt-get', ['update']);
}

/** Newest already-fetched BusyBox source under sources/, or null. */
async function fetchedBusyboxVersion(root) {
  const dir = join(root, 'sources');
  if (!existsSync(dir)) return null;
  const found = (await readdir(dir))
    .filter((n) => n.startsWith('busybox_') && existsSync(join(dir, n, '.complete')))
    .map((n) => n.slice('busybox_'.length).replace(/_/g, ':'));
  let best = null;
  for (const v of found) {
    if (best === null || (await capture('dpkg', ['--compare-versions', v, 'gt', best])).code === 0) best = v;
  }
  return best;
}

/**
 * The BusyBox source version to build: the newest apt knows about (adding
 * deb-src entries first when there are none and we are root), else the newest
 * one already fetched into the cache.
 */
async function resolveBusyboxVersion(root, log, buildLog) {
  let v = await sourceVersion('busybox');
  if (v) return v;
  v = await fetchedBusyboxVersion(root);
  if (v) return v;
  if (!isRoot()) {
    throw new SetupError(
      "no deb-src entries for Debian's busybox source package: as root add deb-src entries to /etc/apt (or run this script as root once, it adds /etc/apt/sources.list.d/wasmvisor-src.sources) and run apt-get update",
    );
  }
  await buildLog.open();
  await addDebSrc(log, buildLog);
  v = await sourceVersion('busybox');
  if (!v) throw new Error('apt-cache showsrc busybox still finds nothing after adding deb-src entries');
  return v;
}

/** `apt-get source busybox=<version>` into sources/busybox_<version>/ (once). Returns the unpacked tree. */
async function fetchBusyboxSource(root, version, log, buildLog) {
  const dir = join(root, 'sources', `busybox_${version.replace(/:/g, '_')}`);
  if (existsSync(join(dir, '.complete'))) {
    const tree = await readdir(dir).then((names) => names.find((n) => /^busybox-\d/.test(n)));
    return join(dir, tree);
  }
  log(`fetching Debian source package busybox ${version} (apt-get source)`);
  const tmp = join(root, 'sources', `.tmp-busybox-${process.pid}`);
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  liveTemps.add(tmp);
  await buildLog.run('apt-get', ['source', '--only-source', `busybox=${version}`], { cwd: tmp });
  const tree = (await readdir(tmp)).find((n) => /^busybox-\d/.test(n));
  if (!tree) throw new Error(`apt-get source busybox=${version} produced no busybox-* directory in ${tmp}`);
  await writeFile(join(tmp, '.complete'), `${version}\n`);
  await rm(dir, { recursive: true, force: true });
  await rename(tmp, dir);
  liveTemps.delete(tmp);
  return join(dir, tree);
}

// ---------------------------------------------------------------------------
// kernel

/** Parses a Kconfig fragment into [symbol, value] pairs ('n' for "is not set"). */
function parseFragment(text) {
  const out = [];
  for (const line of text.split('\n')) {
    let m = /^(CONFIG_[A-Za-z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) {
      out.push([m[1], m[2]]);
      continue;
    }
    m = /^# (CONFIG_[A-Za-z0-9_]+) is not set$/.exec(line.trim());
    if (m) out.push([m[1], 'n']);
  }
  return out;
}

function parseConfig(text) {
  const map = new Map();
  for (const [k, v] of parseFragment(text)) map.set(k, v);
  return map;
}

/**
 * Unpacks the kernel source, configures it (allnoconfig + fragment, checked),
 * builds Image, and leaves Image, vmlinux, System.map and config in `out`.
 */
async function buildKernel(out, work, { log, buildLog, jobs }) {
  const env = { ARCH: 'riscv', CROSS_COMPILE: CROSS, KBUILD_BUILD_USER: 'wasmvisor', KBUILD_BUILD_HOST: 'wasmvisor' };
  log(`unpacking ${KERNEL_TARBALL}`);
  await buildLog.run('tar', ['-xf', KERNEL_TARBALL, '-C', work]);
  const src = join(work, (await readdir(work)).find((n) => n.startsWith('linux-')));

  log('configuring kernel (allnoconfig + guests/linux/kernel.config)');
  await buildLog.run('make', ['allnoconfig'], { cwd: src, env });
  await buildLog.run('scripts/kconfig/merge_config.sh', ['-m', '.config', KERNEL_FRAGMENT], { cwd: src, env });
  await buildLog.run('make', ['olddefconfig'], { cwd: src, env });
  const config = parseConfig(await readFile(join(src, '.config'), 'utf8'));
  const wanted = parseFragment(await readFile(KERNEL_FRAGMENT, 'utf8'));
  const dropped = wanted.filter(([k, v]) => (config.get(k) ?? 'n') !== v);
  if (dropped.length) {
    const lines = dropped.map(([k, v]) => `  ${k}: wanted ${v}, got ${config.get(k) ?? 'n (not set)'}`);
    throw new Error(`Kconfig did not accept ${dropped.length} option(s) of kernel.config:\n${lines.join('\n')}`);
  }

  log(`compiling kernel (make -j${jobs} Image)`);
  const t0 = Date.now();
  let objects = 0;
  let last = '';
  await withHeartbeat(
    buildLog.run('make', [`-j${jobs}`, 'Image'], {
      cwd: src,
      env,
      onLine: (l) => {
        const m = /^\s+(CC|AS|LD|AR|OBJCOPY|HOSTCC)\s+(\S+)/.exec(l);
        if (m) {
          if (m[1] === 'CC' || m[1] === 'AS') objects++;
          last = m[2];
        }
      },
    }),
    10_000,
    () => log(`  compiling kernel: ${objects} objects, ${fmtTime(Date.now() - t0)} (${last})`),
  );
  log(`  kernel compiled: ${objects} objects in ${fmtTime(Date.now() - t0)}`);
  await copyFile(join(src, 'arch/riscv/boot/Image'), join(out, 'Image'));
  await copyFile(join(src, 'vmlinux'), join(out, 'vmlinux'));
  await copyFile(join(src, 'System.map'), join(out, 'System.map'));
  await copyFile(join(src, '.config'), join(out, 'config'));
  const release = (await capture('make', ['-s', 'kernelrelease'], { cwd: src, env: { ...process.env, ...env } })).stdout.trim();
  return { release };
}

// ---------------------------------------------------------------------------
// busybox

/**
 * Builds static BusyBox from the unpacked Debian source (copied into `work`)
 * and installs it into out/root (bin/busybox + applet symlinks). `env` picks
 * the target: the guest's cross compiler, or none for this machine.
 */
async function buildBusybox(out, work, srcTree, { log, buildLog, jobs, env }) {
  const src = join(work, 'busybox');
  log('unpacking busybox source');
  await cp(srcTree, src, { recursive: true, verbatimSymlinks: true });

  log('configuring busybox (defconfig + static)');
  await buildLog.run('make', ['defconfig'], { cwd: src, env });
  let cfg = await readFile(join(src, '.config'), 'utf8');
  for (const [k, v] of Object.entries(BUSYBOX_CONFIG)) {
    const re = new RegExp(`^(${k}=.*|# ${k} is not set)$`, 'm');
    const line = v === null ? `# ${k} is not set` : `${k}=${v}`;
    cfg = re.test(cfg) ? cfg.replace(re, line) : `${cfg}${line}\n`;
  }
  await writeFile(join(src, '.config'), cfg);
  await buildLog.run('make', ['oldconfig'], { cwd: src, env });
  const final = parseConfig(await readFile(join(src, '.config'), 'utf8'));
  for (const [k, v] of Object.entries(BUSYBOX_CONFIG)) {
    if ((final.get(k) ?? 'n') !== (v ?? 'n')) throw new Error(`busybox config: ${k} is ${final.get(k) ?? 'n'}, wanted ${v ?? 'n'}`);
  }

  log(`compiling busybox (make -j${jobs})`);
  const t0 = Date.now();
  let objects = 0;
  await withHeartbeat(
    buildLog.run('make', [`-j${jobs}`], {
      cwd: src,
      env,
      onLine: (l) => {
        if (/^\s+(CC|AS)\s/.test(l)) objects++;
      },
    }),
    10_000,
    () => log(`  compiling busybox: ${objects} objects, ${fmtTime(Date.now() - t0)}`),
  );
  log(`  busybox compiled: ${objects} objects in ${fmtTime(Date.now() - t0)}`);
  await buildLog.run('make', [`CONFIG_PREFIX=${join(out, 'root')}`, 'install'], { cwd: src, env });
  const file = await capture('file', ['-b', join(out, 'root', 'bin', 'busybox')]).catch(() => ({ stdout: '' }));
  if (file.stdout && !/statically linked/.test(file.stdout)) {
    throw new Error(`busybox is not statically linked: ${file.stdout.trim()}`);
  }
  await copyFile(join(src, '.config'), join(out, 'config'));
}

// ---------------------------------------------------------------------------
// initramfs: a newc cpio written here (no root, no mknod, reproducible)

function newcHeader({ ino, mode, nlink, size, rdevMajor = 0, rdevMinor = 0, name }) {
  const hex = (n) => n.toString(16).padStart(8, '0');
  const nameBuf = Buffer.from(`${name}\0`);
  const fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, rdevMajor, rdevMinor, nameBuf.length, 0];
  const head = Buffer.from(`070701${fields.map(hex).join('')}`, 'ascii');
  const pad = (4 - ((head.length + nameBuf.length) % 4)) % 4;
  return Buffer.concat([head, nameBuf, Buffer.alloc(pad)]);
}

function newcEntry(entry, ino) {
  const data = entry.data ?? Buffer.alloc(0);
  const parts = [
    newcHeader({
      ino,
      mode: entry.mode,
      nlink: (entry.mode & 0o170000) === 0o040000 ? 2 : 1,
      size: data.length,
      rdevMajor: entry.major,
      rdevMinor: entry.minor,
      name: entry.name,
    }),
  ];
  if (data.length) parts.push(data, Buffer.alloc((4 - (data.length % 4)) % 4));
  return Buffer.concat(parts);
}

/**
 * Collects a staging tree into cpio entries (uid/gid 0, mtime 0), adding
 * `extra` entries (device nodes). Paths in the archive have no leading slash.
 */
async function collectTree(root) {
  const entries = [];
  async function walk(dir) {
    for (const name of (await readdir(dir)).sort()) {
      const p = join(dir, name);
      const rel = relative(root, p);
      const st = await lstat(p);
      if (st.isSymbolicLink()) {
        entries.push({ name: rel, mode: 0o120777, data: Buffer.from(await readlink(p)) });
      } else if (st.isDirectory()) {
        entries.push({ name: rel, mode: 0o040000 | (st.mode & 0o7777) });
        await walk(p);
      } else if (st.isFile()) {
        entries.push({ name: rel, mode: 0o100000 | (st.mode & 0o7777), data: await readFile(p) });
      }
    }
  }
  await walk(root);
  return entries;
}

function writeCpio(entries) {
  const bufs = entries.map((e, i) => newcEntry(e, i + 1));
  bufs.push(newcEntry({ name: 'TRAILER!!!', mode: 0 }, 0));
  return Buffer.concat(bufs);
}

/** How the programs of bench/ are compiled: static, like BusyBox, so a root filesystem needs no libraries. */
const PROGRAM_CFLAGS = ['-static', '-O2', '-s', '-Wall', '-Wextra', '-Werror'];

/**
 * Installs the programs of bench/ into the staging tree's /usr/bin: each `<name>.c` compiled
 * (static, like BusyBox, so the initramfs needs no libraries) as `<name>`, each `<name>.sh`
 * copied as `<name>`.
 */
async function installGuestPrograms(stage, buildLog) {
  for (const src of await listFilesRecursive(GUEST_PROGRAMS)) {
    const m = /^([\w-]+)\.(c|sh)$/.exec(relative(GUEST_PROGRAMS, src));
    if (!m) continue;
    const dest = join(stage, 'usr/bin', m[1]);
    if (m[2] === 'c') await buildLog.run(`${CROSS}gcc`, [...PROGRAM_CFLAGS, '-o', dest, src]);
    else await copyFile(src, dest);
    await chmod(dest, 0o755);
  }
}

async function buildInitramfs(outFile, work, busyboxRoot, buildLog) {
  const stage = join(work, 'initramfs');
  await cp(busyboxRoot, stage, { recursive: true, verbatimSymlinks: true });
  for (const d of ['dev', 'proc', 'sys', 'tmp', 'mnt', 'root', 'run', 'etc', 'var', 'var/run', 'usr/bin', 'usr/sbin']) {
    await mkdir(join(stage, d), { recursive: true });
  }
  await chmod(join(stage, 'tmp'), 0o1777);
  await chmod(join(stage, 'root'), 0o700);
  if (existsSync(ROOTFS_OVERLAY)) await cp(ROOTFS_OVERLAY, stage, { recursive: true, verbatimSymlinks: true });
  await copyFile(INIT_SCRIPT, join(stage, 'init'));
  await installGuestPrograms(stage, buildLog);
  // Executables regardless of how the repository was checked out.
  await chmod(join(stage, 'init'), 0o755);
  if (existsSync(join(stage, 'etc/udhcpc.script'))) await chmod(join(stage, 'etc/udhcpc.script'), 0o755);
  // linuxrc (busybox install's init for initrd images) is not used.
  await rm(join(stage, 'linuxrc'), { force: true });

  const entries = await collectTree(stage);
  entries.push(
    { name: 'dev/console', mode: 0o020600, major: 5, minor: 1 },
    { name: 'dev/null', mode: 0o020666, major: 1, minor: 3 },
  );
  const cpio = writeCpio(entries);
  await writeFile(outFile, gzipSync(cpio, { level: 9 }));
  await rm(stage, { recursive: true, force: true });
  return { files: entries.length, cpioBytes: cpio.length };
}

// ---------------------------------------------------------------------------
// data disk

async function buildDisk(outFile, work, buildLog, info) {
  const content = join(work, 'disk');
  await mkdir(content, { recursive: true });
  await writeFile(
    join(content, 'README.txt'),
    [
      'wasmvisor data disk',
      '',
      'This is the ext4 data disk of the wasmvisor default Linux guest. The guest',
      "mounts it on /mnt at boot (it is the machine's first disk: /dev/vda on",
      'virtio-blk, /dev/sda on ATA). It is a copy of the pristine image in the',
      'build cache, so whatever you write here only lives as long as this copy.',
      '',
      `kernel: Linux ${info.kernelRelease}`,
      `busybox: Debian source package ${info.busyboxVersion}`,
      '',
    ].join('\n'),
  );
  await buildLog.run(
    'mke2fs',
    [
      '-q',
      '-F',
      '-t',
      'ext4',
      '-L',
      'wasmvisor-data',
      '-U',
      'c0ffee00-0000-4000-8000-000000000001',
      '-E',
      'root_owner=0:0,hash_seed=c0ffee00-0000-4000-8000-000000000002',
      '-m',
      '0',
      '-d',
      content,
      outFile,
      DISK_SIZE,
    ],
    { env: { E2FSPROGS_FAKE_TIME: '1700000000' } },
  );
  // mke2fs -d copies the builder's uid/gid: make the files root's (debugfs
  // edits the image file, no mount or root needed).
  const cmds = [];
  for (const f of await listFilesRecursive(content)) {
    const p = `/${relative(content, f)}`;
    cmds.push(`sif ${p} uid 0`, `sif ${p} gid 0`);
  }
  await writeFile(join(work, 'debugfs.cmds'), `${cmds.join('\n')}\n`);
  await buildLog.run('debugfs', ['-w', '-f', join(work, 'debugfs.cmds'), outFile]);
  await rm(content, { recursive: true, force: true });
}

// ---------------------------------------------------------------------------
// main

/**
 * Builds (or finds in the cache) the default Linux guest.
 * @param {{ log?: (msg: string) => void }} [options]
 * @returns {Promise<{ dir: string, kernel: string, initramfs: string, disk: string }>}
 */
export async function buildLinuxGuest({ log = () => {} } = {}) {
  const t0 = Date.now();
  const root = cacheRoot();
  await mkdir(root, { recursive: true });
  const partsDir = join(root, 'parts');
  const logsDir = join(root, 'logs');
  // The log of a build in progress lives outside its temporary directory so it
  // survives a failure.
  const buildLog = new BuildLog(join(logsDir, `build-${process.pid}.log`));

  try {
    // Fast path inputs: packages (dpkg-query), versions, file hashes.
    await ensurePackages(log, buildLog);
    const gcc = (await capture(`${CROSS}gcc`, ['--version'])).stdout.split('\n')[0].trim();
    const versions = {
      'linux-source-6.1': await dpkgVersion('linux-source-6.1'),
      'libc6-dev-riscv64-cross': await dpkgVersion('libc6-dev-riscv64-cross'),
      gcc,
      busybox: await resolveBusyboxVersion(root, log, buildLog),
    };
    const scriptText = await readFile(fileURLToPath(import.meta.url));
    const fragment = await readFile(KERNEL_FRAGMENT);
    const overlay = [];
    for (const f of [INIT_SCRIPT, ...(await listFilesRecursive(ROOTFS_OVERLAY)), ...(await listFilesRecursive(GUEST_PROGRAMS))]) {
      overlay.push(relative(HERE, f), await readFile(f));
    }
    const hash = sha256(scriptText, fragment, versions, ...overlay).slice(0, 16);
    const dir = join(root, hash);
    const result = {
      dir,
      kernel: join(dir, 'Image'),
      initramfs: join(dir, 'initramfs.cpio.gz'),
      disk: join(dir, 'disk.ext4'),
    };
    if (existsSync(join(dir, 'manifest.json'))) {
      log(`linux guest: cached in ${dir}`);
      return result;
    }

    log(`building linux guest ${hash} into ${dir}`);
    if (!existsSync(buildLog.path)) await buildLog.open();
    log(`  full log: ${buildLog.path}`);
    await buildLog.note(`versions ${JSON.stringify(versions)}`);
    await mkdir(partsDir, { recursive: true });
    await removeStaleTemps(root);
    await removeStaleTemps(partsDir);
    await removeStaleTemps(join(root, 'sources'));
    const jobs = cpus().length || 1;

    // BusyBox source first: the only step that needs the network.
    const busyboxSrc = await fetchBusyboxSource(root, versions.busybox, log, buildLog);

    // Kernel part.
    const kHash = sha256(buildKernel.toString(), fragment, versions['linux-source-6.1'], gcc).slice(0, 16);
    const kDir = join(partsDir, `kernel-${kHash}`);
    if (existsSync(join(kDir, 'manifest.json'))) {
      log(`kernel: cached (${kDir})`);
    } else {
      const tmp = await makeTemp(join(partsDir, `.tmp-kernel-${kHash}-${process.pid}`));
      const tk = Date.now();
      const info = await buildKernel(tmp, join(tmp, 'work'), { log, buildLog, jobs });
      await rm(join(tmp, 'work'), { recursive: true, force: true });
      await writeFile(join(tmp, 'manifest.json'), JSON.stringify({ ...info, seconds: (Date.now() - tk) / 1000 }, null, 2));
      await publish(tmp, kDir);
    }
    const kInfo = JSON.parse(await readFile(join(kDir, 'manifest.json'), 'utf8'));

    // BusyBox part.
    const bHash = sha256(buildBusybox.toString(), GUEST_TARGET, BUSYBOX_CONFIG, versions.busybox, gcc, versions['libc6-dev-riscv64-cross']).slice(0, 16);
    const bDir = join(partsDir, `busybox-${bHash}`);
    if (existsSync(join(bDir, 'manifest.json'))) {
      log(`busybox: cached (${bDir})`);
    } else {
      const tmp = await makeTemp(join(partsDir, `.tmp-busybox-${bHash}-${process.pid}`));
      const tb = Date.now();
      await buildBusybox(tmp, join(tmp, 'work'), busyboxSrc, { log, buildLog, jobs, env: GUEST_TARGET });
      await rm(join(tmp, 'work'), { recursive: true, force: true });
      await writeFile(join(tmp, 'manifest.json'), JSON.stringify({ version: versions.busybox, seconds: (Date.now() - tb) / 1000 }, null, 2));
      await publish(tmp, bDir);
    }

    // The guest directory.
    const tmp = await makeTemp(join(root, `.tmp-${hash}-${process.pid}`));
    for (const f of ['Image', 'vmlinux', 'System.map']) await copyFile(join(kDir, f), join(tmp, f));
    await copyFile(join(kDir, 'config'), join(tmp, 'kernel.config'));
    await copyFile(join(bDir, 'config'), join(tmp, 'busybox.config'));

    log('packing initramfs');
    const ir = await buildInitramfs(join(tmp, 'initramfs.cpio.gz'), join(tmp, 'work'), join(bDir, 'root'), buildLog);
    log('making data disk');
    await buildDisk(join(tmp, 'disk.ext4'), join(tmp, 'work'), buildLog, {
      kernelRelease: kInfo.release,
      busyboxVersion: versions.busybox,
    });
    await rm(join(tmp, 'work'), { recursive: true, force: true });

    const sizes = {};
    for (const f of ['Image', 'initramfs.cpio.gz', 'disk.ext4']) sizes[f] = (await stat(join(tmp, f))).size;
    await copyFile(buildLog.path, join(tmp, 'build.log'));
    await writeFile(
      join(tmp, 'manifest.json'),
      `${JSON.stringify(
        {
          hash,
          kernelRelease: kInfo.release,
          versions,
          sizes,
          initramfsFiles: ir.files,
          builtAt: new Date().toISOString(),
          seconds: (Date.now() - t0) / 1000,
        },
        null,
        2,
      )}\n`,
    );
    await publish(tmp, dir);
    await rm(buildLog.path, { force: true });
    const mib = (n) => `${(n / 1048576).toFixed(1)} MiB`;
    log(
      `done in ${fmtTime(Date.now() - t0)}: Image ${mib(sizes.Image)}, initramfs ${mib(sizes['initramfs.cpio.gz'])}, disk ${mib(sizes['disk.ext4'])}`,
    );
    return result;
  } catch (err) {
    // The log survives; the (possibly 1.5 GB) temporary trees do not.
    for (const t of liveTemps) await rm(t, { recursive: true, force: true }).catch(() => {});
    liveTemps.clear();
    if (!(err instanceof SetupError) && existsSync(buildLog.path)) {
      const tail = await buildLog.tail(30);
      err.message += `\n--- last 30 lines of ${buildLog.path} ---\n${tail}\n--- full log: ${buildLog.path}`;
    }
    throw err;
  }
}

/**
 * The guest's userland built for this machine instead, from the same sources: static BusyBox
 * from the same Debian source package and the programs of bench/ (wv-bench...), compiled with
 * this machine's gcc (the container benches' root filesystem: bench/container.ts). Cached in
 * parts/host-userland-<hash>/root (bin/busybox + applets, usr/bin/<program>).
 * @param {{ log?: (msg: string) => void }} [options]
 * @returns {Promise<{ root: string, busyboxVersion: string, gcc: string }>}
 */
export async function buildHostUserland({ log = () => {} } = {}) {
  const root = cacheRoot();
  const partsDir = join(root, 'parts');
  const buildLog = new BuildLog(join(root, 'logs', `host-userland-${process.pid}.log`));
  try {
    const gcc = (await capture('gcc', ['--version'])).stdout.split('\n')[0].trim();
    if (!gcc) throw new SetupError('no gcc on this machine: as root run apt-get install build-essential');
    const busyboxVersion = await resolveBusyboxVersion(root, log, buildLog);
    const programs = [];
    for (const f of await listFilesRecursive(GUEST_PROGRAMS)) programs.push(relative(HERE, f), await readFile(f));
    // This script's text, not buildBusybox.toString(): the latter differs where the module is transformed (vitest), so the test and the bench would build twice.
    const scriptText = await readFile(fileURLToPath(import.meta.url));
    const hash = sha256(scriptText, busyboxVersion, gcc, await dpkgVersion('libc6-dev'), ...programs).slice(0, 16);
    const dir = join(partsDir, `host-userland-${hash}`);
    const result = { root: join(dir, 'root'), busyboxVersion, gcc };
    if (existsSync(join(dir, 'manifest.json'))) return result;
    await buildLog.open();
    log(`building the guest's userland for this machine into ${dir} (log: ${buildLog.path})`);
    await removeStaleTemps(partsDir);
    const busyboxSrc = await fetchBusyboxSource(root, busyboxVersion, log, buildLog);
    const tmp = await makeTemp(join(partsDir, `.tmp-host-userland-${hash}-${process.pid}`));
    await buildBusybox(tmp, join(tmp, 'work'), busyboxSrc, { log, buildLog, jobs: cpus().length || 1, env: {} });
    await rm(join(tmp, 'work'), { recursive: true, force: true });
    await mkdir(join(tmp, 'root', 'usr', 'bin'), { recursive: true });
    for (const src of await listFilesRecursive(GUEST_PROGRAMS)) {
      const m = /^([\w-]+)\.c$/.exec(relative(GUEST_PROGRAMS, src));
      if (m) await buildLog.run('gcc', [...PROGRAM_CFLAGS, '-o', join(tmp, 'root', 'usr', 'bin', m[1]), src]);
    }
    await writeFile(join(tmp, 'manifest.json'), JSON.stringify({ busyboxVersion, gcc }, null, 2));
    await publish(tmp, dir);
    await rm(buildLog.path, { force: true });
    return result;
  } catch (err) {
    for (const t of liveTemps) await rm(t, { recursive: true, force: true }).catch(() => {});
    liveTemps.clear();
    if (!(err instanceof SetupError) && existsSync(buildLog.path)) err.message += `\n--- last 30 lines of ${buildLog.path} ---\n${await buildLog.tail(30)}`;
    throw err;
  }
}

// CLI
if (process.argv[1] && pathToFileURL(process.argv[1]).href === import.meta.url) {
  const t0 = Date.now();
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => {
      // make & co. get the signal too when it came from the terminal; not when
      // only this process was signalled. The next build removes the temp dirs.
      for (const c of liveChildren) c.kill('SIGTERM');
      process.stderr.write(`linux guest build interrupted (${sig})\n`);
      process.exit(130);
    });
  }
  buildLinuxGuest({ log: (m) => process.stderr.write(`[linux-guest ${fmtTime(Date.now() - t0).padStart(6)}] ${m}\n`) }).then(
    (r) => process.stdout.write(`${JSON.stringify(r, null, 2)}\n`),
    (err) => {
      process.stderr.write(`linux guest build failed: ${err.message}\n`);
      process.exit(1);
    },
  );
}
