/*
 * wv-bench: microbenchmarks for the wasmvisor Linux guest (run by bench/fullvspara.ts).
 *
 *   wv-bench [-g] <benchmark> [args...]
 *   wv-bench gate
 *
 * Each benchmark prints one line
 *   WVB name=<benchmark> ops=<n> ns_per_op=<x> [key=value ...]
 * timed with clock_gettime(CLOCK_MONOTONIC) around the measured part only. With -g that part
 * is gated: just before and just after it the program prints "WVB gate" and waits for a line
 * on stdin, so the host can read the VM's exit counters around exactly the workload (set-up,
 * tear-down and the result line fall outside). `wv-bench gate` is the gate alone, for
 * bracketing other programs (dd, ping) from the shell.
 *
 * Exit status 0 on success; 1 with a message on stderr when something fails, including a
 * benchmark finding memory that does not hold what it wrote (the self-test relies on that).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096

static int gated;

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("wv-bench: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static double now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static void write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			die("write: %s", strerror(errno));
		p += w;
		n -= (size_t)w;
	}
}

/* Tell the host where the measured part starts or ends, and wait until it has looked. */
static void gate(void)
{
	char line[64];
	write_all(1, "WVB gate\n", 9);
	/* A terminal in canonical mode returns one line per read. */
	if (read(0, line, sizeof line) <= 0)
		die("gate: no input");
}

static void begin(void)
{
	if (gated)
		gate();
}

static void end(void)
{
	if (gated)
		gate();
}

/* The result line: name, ops, ns per op, then extra " key=value" text. */
static void report(const char *name, long ops, double ns, const char *extra_fmt, ...)
{
	char extra[256] = "";
	if (extra_fmt) {
		va_list ap;
		va_start(ap, extra_fmt);
		vsnprintf(extra, sizeof extra, extra_fmt, ap);
		va_end(ap);
	}
	printf("WVB name=%s ops=%ld ns_per_op=%.1f%s\n", name, ops, ops > 0 ? ns / (double)ops : 0.0, extra);
	fflush(stdout);
}

static long arg_long(char **argv, int i, int argc, long def)
{
	if (i >= argc)
		return def;
	char *end;
	long v = strtol(argv[i], &end, 10);
	if (*end || v < 0)
		die("not a count: %s", argv[i]);
	return v;
}

static void *map_anon(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		die("mmap %zu bytes: %s", bytes, strerror(errno));
	return p;
}

/* ---- microbenchmarks (Adams & Agesen, ASPLOS 2006) ---- */

/* One round trip into the kernel: getppid through syscall(2), which libc cannot cache. */
static void bench_syscall(long n)
{
	begin();
	double t0 = now_ns();
	for (long i = 0; i < n; i++)
		syscall(SYS_getppid);
	double t = now_ns() - t0;
	end();
	report("syscall", n, t, NULL);
}

/* First touch of fresh anonymous pages: one page fault (and page-table update) each. */
static void bench_pagefault(long pages)
{
	volatile uint64_t *p = map_anon((size_t)pages * PAGE);
	begin();
	double t0 = now_ns();
	for (long i = 0; i < pages; i++)
		p[i * (PAGE / 8)] = (uint64_t)i;
	double t = now_ns() - t0;
	end();
	for (long i = 0; i < pages; i++)
		if (p[i * (PAGE / 8)] != (uint64_t)i)
			die("pagefault: page %ld lost its contents", i);
	munmap((void *)p, (size_t)pages * PAGE);
	report("pagefault", pages, t, NULL);
}

/* Page-table modification: one resident page made read-only and writable again (each
 * mprotect rewrites its PTE and flushes the TLB), then written through the new mapping. */
static void bench_ptmod(long n)
{
	volatile uint64_t *p = map_anon(PAGE);
	p[0] = 0;
	begin();
	double t0 = now_ns();
	for (long i = 0; i < n; i++) {
		if (mprotect((void *)p, PAGE, PROT_READ) || mprotect((void *)p, PAGE, PROT_READ | PROT_WRITE))
			die("mprotect: %s", strerror(errno));
		p[0] = (uint64_t)i;
	}
	double t = now_ns() - t0;
	end();
	if (n > 0 && p[0] != (uint64_t)(n - 1))
		die("ptmod: the page does not hold the last value written");
	munmap((void *)p, PAGE);
	report("ptmod", n, t, " mprotects=%ld", 2 * n);
}

/* fork + child _exit + waitpid: address-space copy and teardown. */
static void bench_forkwait(long n)
{
	begin();
	double t0 = now_ns();
	for (long i = 0; i < n; i++) {
		pid_t pid = fork();
		if (pid < 0)
			die("fork: %s", strerror(errno));
		if (pid == 0)
			_exit(7);
		int status;
		if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 7)
			die("forkwait: child %d did not exit with 7", pid);
	}
	double t = now_ns() - t0;
	end();
	report("forkwait", n, t, NULL);
}

/* mmap/munmap churn: map 16 pages, touch each, unmap. */
#define CHURN_PAGES 16
static void bench_mmap(long n)
{
	begin();
	double t0 = now_ns();
	for (long i = 0; i < n; i++) {
		volatile uint64_t *p = map_anon(CHURN_PAGES * PAGE);
		for (int j = 0; j < CHURN_PAGES; j++)
			p[j * (PAGE / 8)] = (uint64_t)(i + j);
		for (int j = 0; j < CHURN_PAGES; j++)
			if (p[j * (PAGE / 8)] != (uint64_t)(i + j))
				die("mmap: page %d of mapping %ld lost its contents", j, i);
		munmap((void *)p, CHURN_PAGES * PAGE);
	}
	double t = now_ns() - t0;
	end();
	report("mmap", n, t, " pages_per_op=%d", CHURN_PAGES);
}

/* Random 8-byte reads over a resident buffer of `mib` MiB (a power of two): with more pages
 * than the TLB holds, most reads miss it. */
static void bench_randaccess(long mib, long n)
{
	if (mib <= 0 || (mib & (mib - 1)))
		die("randaccess: size %ld MiB is not a power of two", mib);
	size_t words = (size_t)mib << 17;
	uint64_t *a = map_anon(words * 8);
	for (size_t i = 0; i < words; i++)
		a[i] = i;
	uint64_t x = 0x9e3779b97f4a7c15ull, sum = 0, mask = words - 1;
	begin();
	double t0 = now_ns();
	for (long i = 0; i < n; i++) {
		/* xorshift64 */
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		sum += a[x & mask];
	}
	double t = now_ns() - t0;
	end();
	munmap(a, words * 8);
	report("randaccess", n, t, " mib=%ld sum=%llu", mib, (unsigned long long)sum);
}

/* Many short sleeps: how long each really takes against what was asked. */
static void bench_timer(long n, long usec)
{
	struct timespec req = { usec / 1000000, (usec % 1000000) * 1000 };
	begin();
	double t0 = now_ns();
	for (long i = 0; i < n; i++) {
		struct timespec left = req; /* an interrupted sleep goes on for what is left of this one */
		while (nanosleep(&left, &left) && errno == EINTR)
			;
	}
	double t = now_ns() - t0;
	end();
	report("timer", n, t, " requested_ns=%ld", usec * 1000);
}

/* Console output: `bytes` bytes of 64-byte lines written to stdout (the console), timed until
 * the terminal has sent them all (tcdrain), not just until they are in its buffer. */
static void bench_console(long bytes)
{
	static char buf[PAGE];
	for (int i = 0; i < PAGE; i++)
		buf[i] = (i % 64 == 63) ? '\n' : (char)('a' + i % 26);
	begin();
	double t0 = now_ns();
	for (long left = bytes; left > 0; left -= PAGE)
		write_all(1, buf, left < PAGE ? (size_t)left : PAGE);
	tcdrain(1); /* fails harmlessly when stdout is not a terminal */
	double t = now_ns() - t0;
	end();
	report("console", bytes, t, " bytes_per_s=%.0f", t > 0 ? bytes * 1e9 / t : 0.0);
}

/* ---- network, against bench/guest-net.ts's server (one request line per connection) ---- */

static int tcp_connect(const char *host, long port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		die("not an IPv4 address: %s", host);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		die("socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa))
		die("connect %s:%ld: %s", host, port, strerror(errno));
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

static void read_exact(int fd, void *buf, size_t n, const char *what)
{
	char *p = buf;
	while (n > 0) {
		ssize_t r = read(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			die("%s: connection closed early", what);
		p += r;
		n -= (size_t)r;
	}
}

static void send_line(int fd, const char *fmt, long v)
{
	char line[64];
	int len = snprintf(line, sizeof line, fmt, v);
	write_all(fd, line, (size_t)len);
}

/* Host to guest: the server sends `bytes` bytes. */
static void bench_tcp_rx(const char *host, long port, long bytes)
{
	static char buf[65536];
	int fd = tcp_connect(host, port);
	begin();
	double t0 = now_ns();
	send_line(fd, "rx %ld\n", bytes);
	long got = 0;
	while (got < bytes) {
		ssize_t r = read(fd, buf, sizeof buf);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			die("tcp-rx: connection closed after %ld of %ld bytes", got, bytes);
		got += r;
	}
	double t = now_ns() - t0;
	end();
	close(fd);
	report("tcp-rx", bytes, t, " bytes_per_s=%.0f", t > 0 ? bytes * 1e9 / t : 0.0);
}

/* Guest to host: `bytes` bytes sent, timed until the server acknowledges having them all. */
static void bench_tcp_tx(const char *host, long port, long bytes)
{
	static char buf[65536];
	memset(buf, 'w', sizeof buf);
	int fd = tcp_connect(host, port);
	begin();
	double t0 = now_ns();
	send_line(fd, "tx %ld\n", bytes);
	for (long left = bytes; left > 0; left -= (long)sizeof buf)
		write_all(fd, buf, left < (long)sizeof buf ? (size_t)left : sizeof buf);
	char ok[3];
	read_exact(fd, ok, 3, "tcp-tx");
	double t = now_ns() - t0;
	end();
	if (memcmp(ok, "ok\n", 3))
		die("tcp-tx: the server did not acknowledge");
	close(fd);
	report("tcp-tx", bytes, t, " bytes_per_s=%.0f", t > 0 ? bytes * 1e9 / t : 0.0);
}

/* A VM's pauses as its guest sees them (migration, snapshot downtime): a tight loop reads the
 * clock for `ms` milliseconds and keeps the longest gap between two reads, while dirtying
 * `dirty` MiB of memory per second (a page at a time, spread over the run) to give pre-copy work.
 * Prints "WVB gap-start" once running, then the result line. */
static void bench_gap(long ms, long dirty_mib_s, long buf_mib)
{
	char *buf = buf_mib > 0 ? map_anon((size_t)buf_mib << 20) : NULL;
	size_t pages = buf ? ((size_t)buf_mib << 20) / PAGE : 0, next = 0;
	if (buf)
		memset(buf, 1, (size_t)buf_mib << 20);
	write_all(1, "WVB gap-start\n", 14);
	double t0 = now_ns(), last = t0, end_at = t0 + ms * 1e6, gap = 0, dirtied = 0;
	double ns_per_page = dirty_mib_s > 0 ? 1e9 / ((double)dirty_mib_s * 256) : 0;
	double next_dirty = t0;
	unsigned long loops = 0;
	for (;;) {
		double t = now_ns();
		if (t - last > gap)
			gap = t - last;
		last = t;
		loops++;
		if (t >= end_at)
			break;
		while (buf && ns_per_page > 0 && next_dirty <= t) {
			buf[next * PAGE] = (char)loops;
			next = (next + 1) % pages;
			next_dirty += ns_per_page;
			dirtied++;
		}
	}
	report("gap", (long)loops, last - t0, " max_gap_us=%.0f dirtied_mib=%.1f", gap / 1e3, dirtied * PAGE / 1048576.0);
}

static void usage(void)
{
	fputs("usage: wv-bench [-g] <benchmark> [args]\n"
	      "  syscall [n]              getppid round trips\n"
	      "  pagefault [pages]        first touches of fresh anonymous pages\n"
	      "  ptmod [n]                mprotect read-only / read-write toggles of one page\n"
	      "  forkwait [n]             fork + _exit + waitpid\n"
	      "  mmap [n]                 mmap 16 pages, touch, munmap\n"
	      "  randaccess [mib] [n]     random reads over a resident buffer\n"
	      "  timer [n] [usec]         nanosleep loop\n"
	      "  console [bytes]          write to stdout\n"
	      "  tcp-rx|tcp-tx <ip> <port> [bytes]\n"
	      "  gate                     print 'WVB gate', wait for a line\n"
	      "  gap [ms] [dirty_mib_s] [buf_mib]  longest pause seen by a tight clock loop\n",
	      stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	int i = 1;
	if (i < argc && !strcmp(argv[i], "-g")) {
		gated = 1;
		i++;
	}
	if (i >= argc)
		usage();
	const char *b = argv[i++];
	if (!strcmp(b, "gate"))
		gate();
	else if (!strcmp(b, "syscall"))
		bench_syscall(arg_long(argv, i, argc, 100000));
	else if (!strcmp(b, "pagefault"))
		bench_pagefault(arg_long(argv, i, argc, 4096));
	else if (!strcmp(b, "ptmod"))
		bench_ptmod(arg_long(argv, i, argc, 10000));
	else if (!strcmp(b, "forkwait"))
		bench_forkwait(arg_long(argv, i, argc, 200));
	else if (!strcmp(b, "mmap"))
		bench_mmap(arg_long(argv, i, argc, 1000));
	else if (!strcmp(b, "randaccess"))
		bench_randaccess(arg_long(argv, i, argc, 64), arg_long(argv, i + 1, argc, 1000000));
	else if (!strcmp(b, "timer"))
		bench_timer(arg_long(argv, i, argc, 100), arg_long(argv, i + 1, argc, 1000));
	else if (!strcmp(b, "gap"))
		bench_gap(arg_long(argv, i, argc, 1000), arg_long(argv, i + 1, argc, 0), arg_long(argv, i + 2, argc, 0));
	else if (!strcmp(b, "console"))
		bench_console(arg_long(argv, i, argc, 65536));
	else if (!strcmp(b, "tcp-rx") || !strcmp(b, "tcp-tx")) {
		if (i + 1 >= argc)
			usage();
		long port = arg_long(argv, i + 1, argc, 0);
		long bytes = arg_long(argv, i + 2, argc, 1 << 20);
		if (!strcmp(b, "tcp-rx"))
			bench_tcp_rx(argv[i], port, bytes);
		else
			bench_tcp_tx(argv[i], port, bytes);
	} else
		usage();
	return 0;
}
