/*
 * wv-smp: SMP tests for the wasmvisor Linux guest (run by bench/smp.ts and
 * test/integration/smp.test.ts).
 *
 *   wv-smp torture [-t THREADS] [-n ITERS]
 *     THREADS threads (default: one per CPU, at least 2), each pinned to its own CPU when there
 *     is more than one, increment shared counters ITERS times each through every kind of
 *     synchronisation a guest kernel and libc rely on: an AMO (__atomic_fetch_add: amoadd.w/.d),
 *     a pthread mutex (futexes), a spinlock built on compare-and-swap (lr.w/sc.w) and CAS loops
 *     on a 32-bit and a 64-bit counter (lr.w/sc.w, lr.d/sc.d). Then a producer and a consumer
 *     on two CPUs pass ITERS messages through a single-producer ring with release/acquire
 *     ordering, and the consumer checks it never reads a message's data older than its index.
 *     Prints
 *       WVS torture threads=T cpus=C iters=N expect=T*N atomic=.. atomic32=.. mutex=.. spin=..
 *           cas32=.. cas64=.. cas_retries=.. interleavings=.. mp_errors=E seconds=.. ok|FAIL
 *     and exits 0 only when every counter is exactly T*N and E is 0 (else stderr names each
 *     counter that is off). cas_retries (CASes that lost
 *     a race) and interleavings (times a thread saw another's increment between two of its own)
 *     show how much the threads overlapped.
 *
 *   wv-smp spin [-p PROCS] [-s SECONDS | -n WORK]
 *     PROCS processes, process i pinned to CPU i % ncpus, each run the same fixed integer
 *     workload of WORK steps (with -s: WORK calibrated so that one process takes about SECONDS),
 *     timed from releasing all of them to the last one's end. Prints
 *       WVS spin procs=P cpus=C work=W seconds=S ops_per_s=R checksum=X
 *     where R = P*W/S: with as many CPUs as processes it grows with P.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "wv-smp: %s: %s\n", what, strerror(errno));
	exit(1);
}

static long ncpus;

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Pins the calling thread (or process) to CPU i % ncpus, so that workers really run in parallel
 * instead of wherever the scheduler first puts them. */
static void pin(long i)
{
	if (ncpus < 2)
		return;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(i % ncpus, &set);
	if (sched_setaffinity(0, sizeof set, &set))
		die("sched_setaffinity");
}

static long parse_count(const char *flag, const char *text)
{
	char *end;
	errno = 0;
	long v = strtol(text, &end, 10);
	if (errno || *end || v < 1) {
		fprintf(stderr, "wv-smp: %s needs a whole number >= 1, not '%s'\n", flag, text);
		exit(2);
	}
	return v;
}

/* ---- torture ---- */

static long threads, iters;
static pthread_barrier_t start_line;

/* Each counter on its own cache line: the test is about atomicity, not false sharing. */
#define LINE __attribute__((aligned(64)))
static uint64_t atomic64 LINE;
static uint32_t atomic32 LINE;
static long mutex_count LINE;
static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static long spin_count LINE;
static int spin_lock_word LINE;
static uint32_t cas32 LINE;
static uint64_t cas64 LINE;
static uint64_t cas_retries LINE;
static uint64_t interleavings LINE;

static void spin_lock(int *lock)
{
	for (;;) {
		int expected = 0;
		if (__atomic_compare_exchange_n(lock, &expected, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
			return;
		/* Wait with plain loads until it looks free, then try the CAS again. */
		while (__atomic_load_n(lock, __ATOMIC_RELAXED))
			;
	}
}

static void spin_unlock(int *lock)
{
	__atomic_store_n(lock, 0, __ATOMIC_RELEASE);
}

static void *counter_thread(void *arg)
{
	pin((long)arg);
	uint64_t retries = 0, switches = 0, last = UINT64_MAX - 1;
	/* All threads start together, so their loops overlap. */
	pthread_barrier_wait(&start_line);
	for (long i = 0; i < iters; i++) {
		/* Another thread's increment between two of ours: the loops really ran at once. */
		uint64_t seen = __atomic_fetch_add(&atomic64, 1, __ATOMIC_RELAXED);
		switches += seen != last + 1;
		last = seen;
		__atomic_fetch_add(&atomic32, 1, __ATOMIC_RELAXED);

		pthread_mutex_lock(&mutex);
		mutex_count++;
		pthread_mutex_unlock(&mutex);

		spin_lock(&spin_lock_word);
		spin_count++;
		spin_unlock(&spin_lock_word);

		uint32_t old32 = __atomic_load_n(&cas32, __ATOMIC_RELAXED);
		while (!__atomic_compare_exchange_n(&cas32, &old32, old32 + 1, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
			retries++;
		uint64_t old64 = __atomic_load_n(&cas64, __ATOMIC_RELAXED);
		while (!__atomic_compare_exchange_n(&cas64, &old64, old64 + 1, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
			retries++;
	}
	/* Failed CASes show the threads really raced (none on a single CPU without preemption). */
	__atomic_fetch_add(&cas_retries, retries, __ATOMIC_RELAXED);
	__atomic_fetch_add(&interleavings, switches - 1, __ATOMIC_RELAXED);
	return NULL;
}

/* Message passing: a ring of RING slots, each message MSG_WORDS words derived from its index.
 * The producer fills a slot, then publishes it by a release store of `head`; the consumer's
 * acquire load of `head` must make the whole slot visible. `tail` hands slots back the same way,
 * so the producer never overwrites a slot the consumer is still reading. */
#define RING 64
#define MSG_WORDS 4
static uint64_t ring[RING][MSG_WORDS];
static uint64_t head LINE, tail LINE;
static long mp_errors;

static uint64_t word(uint64_t seq, int w)
{
	return seq * 0x9e3779b97f4a7c15ull + (uint64_t)w;
}

static void *producer(void *arg)
{
	pin((long)arg);
	pthread_barrier_wait(&start_line);
	for (uint64_t seq = 0; seq < (uint64_t)iters; seq++) {
		while (seq - __atomic_load_n(&tail, __ATOMIC_ACQUIRE) >= RING)
			;
		for (int w = 0; w < MSG_WORDS; w++)
			__atomic_store_n(&ring[seq % RING][w], word(seq, w), __ATOMIC_RELAXED);
		__atomic_store_n(&head, seq + 1, __ATOMIC_RELEASE);
	}
	return NULL;
}

static void *consumer(void *arg)
{
	pin((long)arg);
	pthread_barrier_wait(&start_line);
	for (uint64_t seq = 0; seq < (uint64_t)iters; seq++) {
		while (__atomic_load_n(&head, __ATOMIC_ACQUIRE) <= seq)
			;
		for (int w = 0; w < MSG_WORDS; w++) {
			uint64_t got = __atomic_load_n(&ring[seq % RING][w], __ATOMIC_RELAXED);
			if (got != word(seq, w)) {
				if (mp_errors++ < 5)
					fprintf(stderr, "wv-smp: message %llu word %d: read %#llx, expected %#llx\n",
						(unsigned long long)seq, w, (unsigned long long)got,
						(unsigned long long)word(seq, w));
			}
		}
		__atomic_store_n(&tail, seq + 1, __ATOMIC_RELEASE);
	}
	return NULL;
}

static void run_threads(long n, void *(*fn[])(void *))
{
	pthread_t t[n];
	if (pthread_barrier_init(&start_line, NULL, (unsigned)n))
		die("pthread_barrier_init");
	for (long i = 0; i < n; i++) {
		errno = pthread_create(&t[i], NULL, fn[i], (void *)i);
		if (errno)
			die("pthread_create");
	}
	for (long i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&start_line);
}

static int torture(void)
{
	if (threads > 256 || (uint64_t)threads * (uint64_t)iters > UINT32_MAX) {
		fprintf(stderr, "wv-smp: torture: THREADS (at most 256) x ITERS must fit in 32 bits\n");
		return 2;
	}
	double t0 = now_s();
	void *(*counters[threads])(void *);
	for (long i = 0; i < threads; i++)
		counters[i] = counter_thread;
	run_threads(threads, counters);
	void *(*pair[2])(void *) = { producer, consumer };
	run_threads(2, pair);
	double seconds = now_s() - t0;

	uint64_t want = (uint64_t)threads * (uint64_t)iters;
	const struct {
		const char *name;
		uint64_t value;
	} counts[] = { { "atomic", atomic64 }, { "atomic32", atomic32 },   { "mutex", (uint64_t)mutex_count },
		       { "spin", (uint64_t)spin_count }, { "cas32", cas32 }, { "cas64", cas64 } };
	int ok = mp_errors == 0;
	for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
		if (counts[i].value != want) {
			ok = 0;
			fprintf(stderr, "wv-smp: torture: %s counted %llu, expected %llu (lost %lld updates)\n", counts[i].name,
				(unsigned long long)counts[i].value, (unsigned long long)want,
				(long long)(want - counts[i].value));
		}
	}
	if (mp_errors)
		fprintf(stderr, "wv-smp: torture: %ld stale message words read\n", mp_errors);
	printf("WVS torture threads=%ld cpus=%ld iters=%ld expect=%llu atomic=%llu atomic32=%u mutex=%ld spin=%ld "
	       "cas32=%u cas64=%llu cas_retries=%llu interleavings=%llu mp_errors=%ld seconds=%.3f %s\n",
	       threads, ncpus, iters, (unsigned long long)want, (unsigned long long)atomic64, atomic32, mutex_count,
	       spin_count, cas32, (unsigned long long)cas64, (unsigned long long)cas_retries, (unsigned long long)interleavings, mp_errors, seconds,
	       ok ? "ok" : "FAIL");
	return ok ? 0 : 1;
}

/* ---- spin ---- */

/* A fixed chain of dependent integer operations (an LCG feeding a mixer): no memory traffic, so
 * processes on different CPUs do not slow each other down, and every step depends on the last,
 * so the compiler can neither vectorise nor drop it (the result is checked). */
static uint64_t workload(long steps)
{
	uint64_t x = 1, h = 0;
	for (long i = 0; i < steps; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		h ^= x >> 29;
		h = (h << 7 | h >> 57) + (uint64_t)i;
	}
	return h;
}

/* WORK steps that take one process about `seconds` on this CPU. */
static long calibrate(double seconds)
{
	long steps = 1 << 16;
	for (;;) {
		double t0 = now_s();
		volatile uint64_t sink = workload(steps);
		(void)sink;
		double t = now_s() - t0;
		if (t >= 0.2 || steps > (1L << 40))
			return (long)((double)steps * seconds / (t > 0 ? t : 1e-9));
		steps *= 4;
	}
}

static int spin(long procs, double seconds, long work)
{
	if (procs > 256) {
		fprintf(stderr, "wv-smp: spin: at most 256 processes\n");
		return 2;
	}
	if (work == 0)
		work = calibrate(seconds);
	int go[2], results[2];
	if (pipe(go) || pipe(results))
		die("pipe");
	for (long i = 0; i < procs; i++) {
		pid_t pid = fork();
		if (pid < 0)
			die("fork");
		if (pid == 0) {
			pin(i);
			close(go[1]);
			char c;
			/* Wait at the start line: the parent's close of go[1] releases all at once. */
			if (read(go[0], &c, 1) != 0)
				_exit(3);
			uint64_t h = workload(work);
			if (write(results[1], &h, sizeof h) != sizeof h)
				_exit(4);
			_exit(0);
		}
	}
	close(go[0]);
	close(results[1]);
	double t0 = now_s();
	close(go[1]);
	int failed = 0;
	for (long i = 0; i < procs; i++) {
		int status;
		if (wait(&status) < 0)
			die("wait");
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			failed = 1;
	}
	double t = now_s() - t0;

	/* Every process computed the same function of the same input: one answer, read back. */
	uint64_t first = 0, h;
	long answers = 0;
	while (read(results[0], &h, sizeof h) == sizeof h) {
		if (answers++ == 0)
			first = h;
		else if (h != first)
			failed = 1;
	}
	if (failed || answers != procs) {
		fprintf(stderr, "wv-smp: spin: %ld of %ld processes answered, %s\n", answers, procs,
			failed ? "not all alike or not all exited 0" : "all alike");
		return 1;
	}
	printf("WVS spin procs=%ld cpus=%ld work=%ld seconds=%.3f ops_per_s=%.0f checksum=%016llx\n", procs, ncpus,
	       work, t, (double)procs * (double)work / t, (unsigned long long)first);
	return 0;
}

static int usage(void)
{
	fprintf(stderr, "usage: wv-smp torture [-t THREADS] [-n ITERS]\n"
			"       wv-smp spin [-p PROCS] [-s SECONDS | -n WORK]\n");
	return 2;
}

int main(int argc, char **argv)
{
	ncpus = sysconf(_SC_NPROCESSORS_ONLN);
	if (ncpus < 1)
		ncpus = 1;
	if (argc < 2)
		return usage();
	const char *cmd = argv[1];
	/* The flags each subcommand takes ("-n" is ITERS for torture, WORK for spin). */
	const char *allowed = !strcmp(cmd, "torture") ? "-t -n" : !strcmp(cmd, "spin") ? "-p -s -n" : NULL;
	if (!allowed)
		return usage();
	long procs = 1, count = 0;
	double seconds = 2;
	threads = ncpus > 2 ? ncpus : 2;
	iters = 100000;
	for (int i = 2; i < argc; i++) {
		if (i + 1 >= argc)
			return usage();
		const char *flag = argv[i], *val = argv[++i];
		if (strlen(flag) != 2 || !strstr(allowed, flag))
			return usage();
		if (!strcmp(flag, "-t"))
			threads = parse_count(flag, val);
		else if (!strcmp(flag, "-p"))
			procs = parse_count(flag, val);
		else if (!strcmp(flag, "-n"))
			count = parse_count(flag, val);
		else if (!strcmp(flag, "-s"))
			seconds = (double)parse_count(flag, val);
		else
			return usage();
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(cmd, "torture")) {
		if (count)
			iters = count;
		return torture();
	}
	return spin(procs, seconds, count);
}
