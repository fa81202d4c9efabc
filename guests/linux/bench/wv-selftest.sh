#!/bin/sh
# wv-selftest [URL [SHA256]]: checks the machine this guest runs on and prints one verdict,
#   SELFTEST PASS        or        SELFTEST FAIL <check> [<check>...]
# (exit status 0 or 1), after a line per check. Checks:
#   disk     the first disk (vda or sda) is a block device; direct reads work; data written
#            with O_DIRECT reads back the same (a file when the disk is mounted, else the first
#            256 KiB of the raw device, restored afterwards)
#   network  eth0 has a DHCP address and a default route, 10.0.2.2 answers ping; with URL,
#            the page downloads (and, with SHA256, has that digest)
#   timers   a second asleep (nanosleep) takes about a second; nanosleep never returns early
#   rtc      the clock was set from the RTC (a year after 2020)
#   process  fork/exec, exit statuses, pipes
#   memory   page faults and mmap/munmap churn keep what was written (wv-bench verifies)

failed=""
T=/tmp/wv-selftest.$$
mkdir -p "$T"
trap 'rm -rf "$T"' EXIT

check() {
	name=$1
	shift
	if out=$("$@" 2>&1); then
		echo "selftest: ok   $name${out:+: $out}"
	else
		echo "selftest: FAIL $name${out:+: $out}"
		failed="$failed $name"
	fi
}

# The first disk, whichever bus it is on.
disk_dev() {
	for d in vda sda; do
		if [ -b /dev/$d ]; then
			echo /dev/$d
			return 0
		fi
	done
	return 1
}

disk() {
	dev=$(disk_dev) || { echo "no /dev/vda or /dev/sda"; return 1; }
	dd if="$dev" of=/dev/null bs=4096 count=64 iflag=direct 2>/dev/null || { echo "$dev: direct read failed"; return 1; }
	dd if=/dev/urandom of="$T/pattern" bs=4096 count=64 2>/dev/null
	mnt=$(awk -v d="$dev" '$1 == d { print $2; exit }' /proc/mounts)
	if [ -n "$mnt" ]; then
		f="$mnt/.wv-selftest"
		dd if="$T/pattern" of="$f" bs=4096 oflag=direct 2>/dev/null &&
			dd if="$f" of="$T/back" bs=4096 iflag=direct 2>/dev/null &&
			cmp -s "$T/pattern" "$T/back" || { rm -f "$f"; echo "$dev: file on $mnt did not read back"; return 1; }
		rm -f "$f"
		echo "$dev mounted on $mnt, 256 KiB through a file"
	else
		dd if="$dev" of="$T/saved" bs=4096 count=64 iflag=direct 2>/dev/null || return 1
		ok=1
		dd if="$T/pattern" of="$dev" bs=4096 oflag=direct 2>/dev/null &&
			dd if="$dev" of="$T/back" bs=4096 count=64 iflag=direct 2>/dev/null &&
			cmp -s "$T/pattern" "$T/back" || ok=0
		dd if="$T/saved" of="$dev" bs=4096 oflag=direct 2>/dev/null || { echo "$dev: could not restore"; return 1; }
		[ $ok = 1 ] || { echo "$dev: raw blocks did not read back"; return 1; }
		echo "$dev raw, 256 KiB"
	fi
}

network() {
	[ -e /sys/class/net/eth0 ] || { echo "no eth0"; return 1; }
	ip=$(ifconfig eth0 | sed -n 's/.*inet addr:\([0-9.]*\).*/\1/p')
	[ -n "$ip" ] || { echo "eth0 has no address"; return 1; }
	route -n | grep -q '^0\.0\.0\.0 *10\.0\.2\.2 ' || { echo "no default route via 10.0.2.2"; return 1; }
	ping -c 2 -W 2 10.0.2.2 >/dev/null 2>&1 || { echo "10.0.2.2 does not answer ping"; return 1; }
	msg="eth0 $ip"
	if [ -n "$URL" ]; then
		wget -q -T 10 -O "$T/page" "$URL" || { echo "wget $URL failed"; return 1; }
		if [ -n "$SHA" ]; then
			got=$(sha256sum "$T/page" | cut -d' ' -f1)
			[ "$got" = "$SHA" ] || { echo "$URL: sha256 $got, expected $SHA"; return 1; }
		fi
		msg="$msg, fetched $(wc -c < "$T/page") bytes"
	fi
	echo "$msg"
}

# Nanoseconds a sleep took, as wv-bench timer measures N sleeps of USEC microseconds; nothing if
# it failed.
sleep_ns() {
	wv-bench timer "$1" "$2" | sed -n 's/.* ns_per_op=\([0-9]*\).*/\1/p'
}

timers() {
	# A second asleep, timed by the sleeper (nanosleep between two clock_gettime), so that
	# starting a program is not in it: under a slow tier (the tests' WASMVISOR_JIT=all) that
	# takes most of a second of uptime. It should take 1.00 to 1.50 s.
	s1=$(sleep_ns 1 1000000)
	[ -n "$s1" ] && [ "$s1" -ge 1000000000 ] && [ "$s1" -le 1500000000 ] || { echo "a second asleep took ${s1:-?} ns"; return 1; }
	ns=$(sleep_ns 20 2000)
	[ -n "$ns" ] && [ "$ns" -ge 2000000 ] || { echo "nanosleep(2 ms) returned after ${ns:-?} ns"; return 1; }
	echo "nanosleep(1 s): $((s1 / 1000000)) ms, nanosleep(2 ms): $((ns / 1000)) us"
}

rtc() {
	y=$(date +%Y)
	[ "$y" -gt 2020 ] || { echo "date says $(date)"; return 1; }
	echo "$(date)"
}

process() {
	n=0
	while [ $n -lt 20 ]; do
		/bin/true || { echo "/bin/true failed"; return 1; }
		n=$((n + 1))
	done
	sh -c 'exit 3'
	[ $? = 3 ] || { echo "exit status lost"; return 1; }
	[ "$(seq 1 2000 | sort -n | tail -n 1)" = 2000 ] || { echo "pipeline"; return 1; }
	wv-bench forkwait 20 >/dev/null || return 1
	echo "fork/exec, exit status, pipes"
}

memory() {
	wv-bench pagefault 4096 >/dev/null && wv-bench mmap 200 >/dev/null || return 1
	echo "16 MiB faulted in, 200 mmap/munmap rounds"
}

URL=$1
SHA=$2
check disk disk
check network network
check timers timers
check rtc rtc
check process process
check memory memory
if [ -z "$failed" ]; then
	echo "SELFTEST PASS"
else
	echo "SELFTEST FAIL$failed"
	exit 1
fi
