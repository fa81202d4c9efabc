/* bench.h - shared harness for the CPU-bound benchmark guests.
 *
 * A benchmark defines ITERS (overridable with -DITERS=n), EXPECTED (the checksum
 * of one iteration, derived independently of this code) and
 *   static uint64_t bench_iteration(uint64_t seed);
 * Every iteration does identical work from the same seed, so the checksum does
 * not depend on ITERS. The timed region contains no output; afterwards one line
 *   BENCH name=<name> iters=<n> instret=<minstret delta> ticks=<mtime delta @10 MHz> checksum=0x<..>
 * is printed, then PASS/FAIL. Exit status 0 only if every iteration matched.
 */
#ifndef WASMVISOR_BENCH_H
#define WASMVISOR_BENCH_H

#include "test.h"

static uint64_t bench_iteration(uint64_t seed);

static volatile uint64_t bench_seed = 0x9e3779b97f4a7c15ull;

static int bench_main(const char *name, unsigned long iters, uint64_t expected)
{
    unsigned long bad = 0;
    uint64_t sum = 0;
    uint64_t t0 = rdmtime();
    uint64_t i0 = csr_read(minstret);
    for (unsigned long i = 0; i < iters; i++) {
        sum = bench_iteration(bench_seed);
        bad += sum != expected;
    }
    uint64_t i1 = csr_read(minstret);
    uint64_t t1 = rdmtime();
    printf("BENCH name=%s iters=%lu instret=%lu ticks=%lu checksum=0x%016lx\n",
           name, iters, i1 - i0, t1 - t0, sum);
    if (bad) {
        printf("FAIL: bench-%s (%lu of %lu iterations: checksum != expected 0x%016lx)\n",
               name, bad, iters, expected);
        return bad > 250 ? 250 : (int)bad;
    }
    printf("PASS: bench-%s\n", name);
    return 0;
}

#endif
