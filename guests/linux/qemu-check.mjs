#!/usr/bin/env node
// Reference boot of the default Linux guest on QEMU (not wasmvisor): boots
// build.mjs's output on `qemu-system-riscv64 -M virt` with OpenSBI fw_jump,
// a copy of the data disk on virtio-blk and user networking on virtio-net,
// then drives the console like a user and checks the answers:
//   prompt, uname -a, 2 harts in /proc/cpuinfo, /dev/vda, eth0 = 10.0.2.15
//   (DHCP), /mnt/README.txt, job control, and `poweroff` ending QEMU with 0.
//
// Usage: node guests/linux/qemu-check.mjs [--console ttyS0|hvc0|none] [--smp N] [--timeout S] [--quiet]
// Needs qemu-system-misc and opensbi (apt-get install qemu-system-misc opensbi).
// Exit status 0 when every check passed.
import { spawn } from 'node:child_process';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildLinuxGuest } from './build.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const consoleDev = opt('console', 'ttyS0');
const smp = Number(opt('smp', '2'));
const timeoutS = Number(opt('timeout', '120'));
const quiet = args.includes('--quiet');
const FIRMWARE = '/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin';

const guest = await buildLinuxGuest({ log: (m) => process.stderr.write(`[build] ${m}\n`) });
const tmp = await mkdtemp(join(tmpdir(), 'wasmvisor-qemu-'));
const disk = join(tmp, 'disk.ext4');
await copyFile(guest.disk, disk);

const qemuArgs = [
  '-M', 'virt', '-m', '256M', '-smp', String(smp), '-nographic',
  '-bios', FIRMWARE,
  '-kernel', guest.kernel,
  '-initrd', guest.initramfs,
  '-append', consoleDev === 'none' ? '' : `console=${consoleDev}`,
  '-drive', `file=${disk},format=raw,if=none,id=d0`,
  '-device', 'virtio-blk-device,drive=d0',
  '-netdev', 'user,id=n0',
  '-device', 'virtio-net-device,netdev=n0',
];
process.stderr.write(`qemu-system-riscv64 ${qemuArgs.join(' ')}\n`);
const t0 = Date.now();
const stamp = () => `${((Date.now() - t0) / 1000).toFixed(2)}s`;
const qemu = spawn('qemu-system-riscv64', qemuArgs, { stdio: ['pipe', 'pipe', 'inherit'] });
let out = '';
qemu.stdout.on('data', (d) => {
  out += d.toString('latin1').replace(/\r/g, ''); // OpenSBI's console adds \r before \n too
  if (!quiet) process.stdout.write(d);
});
const exited = new Promise((r) => qemu.on('exit', (code, signal) => r({ code, signal })));
const deadline = setTimeout(() => {
  process.stderr.write(`\nqemu-check: timeout after ${timeoutS}s\n`);
  qemu.kill('SIGKILL');
}, timeoutS * 1000);

let mark = 0; // output before `mark` has been consumed by earlier waits
async function waitFor(re, what) {
  for (;;) {
    const m = re.exec(out.slice(mark));
    if (m) {
      const text = out.slice(mark, mark + m.index + m[0].length);
      mark += m.index + m[0].length;
      return text;
    }
    if (qemu.exitCode !== null || qemu.signalCode !== null) throw new Error(`QEMU exited while waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
const PROMPT = /root@wasmvisor:[^\n]*# $/;
async function command(cmd) {
  qemu.stdin.write(`${cmd}\n`);
  return waitFor(PROMPT, `prompt after '${cmd}'`);
}

const results = [];
const check = (name, ok, detail = '') => {
  results.push({ name, ok, detail });
};
let status = 1;
try {
  await waitFor(/wasmvisor guest ready/, 'banner');
  const tBanner = stamp();
  await waitFor(PROMPT, 'first prompt');
  const tPrompt = stamp();
  check('banner', true, `at ${tBanner}`);
  check('prompt', true, `at ${tPrompt}`);
  const uname = await command('uname -a');
  check('uname', /Linux wasmvisor 6\.1\.\S+ .* riscv64/.test(uname), uname.split('\n')[1]?.trim());
  const harts = await command("grep -c '^processor' /proc/cpuinfo");
  check(`${smp} harts`, new RegExp(`\\n${smp}\\r?\\n`).test(harts));
  await command('cat /proc/cpuinfo');
  const vda = await command('ls -l /dev/vda; test -b /dev/vda && echo vda-is-a-block-device');
  check('/dev/vda', /\nvda-is-a-block-device/.test(vda));
  const eth = await command('ifconfig eth0');
  check('eth0 10.0.2.15 (DHCP)', /inet addr:10\.0\.2\.15/.test(eth));
  const route = await command('route -n; cat /etc/resolv.conf');
  check('default route + DNS', /0\.0\.0\.0\s+10\.0\.2\.2/.test(route) && /nameserver 10\.0\.2\.3/.test(route));
  const mnt = await command('grep /mnt /proc/mounts; cat /mnt/README.txt');
  check('/mnt ext4 + README.txt', /\/dev\/vda \/mnt ext4/.test(mnt) && /wasmvisor data disk/.test(mnt));
  const jobs = await command('sleep 30 & jobs; kill %1');
  check('job control', /\[1\]\+?\s+Running\s+sleep 30/.test(jobs), jobs.split('\n').find((l) => /sleep/.test(l) && /\[1\]/.test(l))?.trim());
  const tty = await command('tty');
  const expectTty = consoleDev === 'none' ? 'ttyS0' : consoleDev; // none: DT stdout-path = UART
  check(`shell on ${expectTty}`, new RegExp(`/dev/${expectTty}`).test(tty));
  await command('echo hello > /mnt/written.txt && sync && cat /mnt/written.txt');
  qemu.stdin.write('poweroff\n');
  const { code, signal } = await exited;
  check('poweroff -> QEMU exit 0', code === 0, `code ${code}${signal ? ` signal ${signal}` : ''} at ${stamp()}`);
  status = results.every((r) => r.ok) ? 0 : 1;
} catch (err) {
  check('run', false, err.message);
  qemu.kill('SIGKILL');
  await exited;
} finally {
  clearTimeout(deadline);
  await rm(tmp, { recursive: true, force: true });
}
process.stderr.write('\n');
for (const r of results) process.stderr.write(`${r.ok ? 'PASS' : 'FAIL'} ${r.name}${r.detail ? `: ${r.detail}` : ''}\n`);
process.exit(status);
