/* bench-mem: memory-bound work over a 4 MiB array: build a random cyclic
   permutation (Sattolo's algorithm), chase pointers through it, then do random
   read-modify-write updates. Most accesses miss any small cache. */
#include "bench.h"

#ifndef ITERS
#define ITERS 4
#endif
#define N (512 * 1024)            /* 512 Ki x 8 bytes = 4 MiB */
#define CHASE_STEPS (2 * N)
#define RMW_STEPS N
#define EXPECTED 0x0000007ff54caf3dull

static uint64_t next[N];

static inline uint64_t lcg(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

static uint64_t bench_iteration(uint64_t seed)
{
    uint64_t s = seed;
    for (uint64_t i = 0; i < N; i++)
        next[i] = i;
    /* Sattolo: a single cycle through all N slots */
    for (uint64_t i = N - 1; i > 0; i--) {
        uint64_t j = lcg(&s) % i;
        uint64_t t = next[i];
        next[i] = next[j];
        next[j] = t;
    }
    uint64_t p = 0, sum = 0;
    for (uint64_t k = 0; k < CHASE_STEPS; k++) {
        p = next[p];
        sum += p ^ k;
    }
    for (uint64_t k = 0; k < RMW_STEPS; k++) {
        uint64_t j = lcg(&s) & (N - 1);
        next[j] += k;
        sum ^= next[(j * 7 + 3) & (N - 1)];
    }
    return sum ^ (p << 40);
}

int main(void)
{
    return bench_main("mem", ITERS, EXPECTED);
}
