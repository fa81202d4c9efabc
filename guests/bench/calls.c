/* bench-calls: control flow as an operating system kernel has it: 512 small functions, eight to
   a 4 KiB page over 64 pages, called in a pseudo-random order through a table, each loading and
   storing a shared state and doing a little arithmetic. No page is hot by itself; every call
   and return goes from one page to another. Interpreting costs a dispatch an instruction and a
   lookup a page crossing; translating costs a translation a page and whatever crossing from one
   translation to another costs (docs/PERFORMANCE.md). */
#include "bench.h"

#ifndef ITERS
#define ITERS 60
#endif
#define CALLS 16384
#define EXPECTED 0xc543703c54290422ull

static uint64_t state[16];

/* EACH(M): M(a, b, c) for every function a*64 + b*8 + c (digits 0-7), in order. */
#define EACH8(M, a, b) M(a, b, 0) M(a, b, 1) M(a, b, 2) M(a, b, 3) M(a, b, 4) M(a, b, 5) M(a, b, 6) M(a, b, 7)
#define EACH64(M, a) EACH8(M, a, 0) EACH8(M, a, 1) EACH8(M, a, 2) EACH8(M, a, 3) EACH8(M, a, 4) EACH8(M, a, 5) EACH8(M, a, 6) EACH8(M, a, 7)
#define EACH(M) EACH64(M, 0) EACH64(M, 1) EACH64(M, 2) EACH64(M, 3) EACH64(M, 4) EACH64(M, 5) EACH64(M, 6) EACH64(M, 7)

/* Function a*64 + b*8 + c, 512 bytes apart: eight to a page. */
#define FN(a, b, c)                                                              \
    static __attribute__((noinline, aligned(512))) uint64_t f_##a##b##c(uint64_t x) \
    {                                                                            \
        enum { n = a * 64 + b * 8 + c };                                         \
        uint64_t s = state[n & 15];                                              \
        uint64_t y = (x ^ s) * (0x9e3779b97f4a7c15ull + 2 * n);                  \
        y ^= y >> (n % 29 + 3);                                                  \
        state[n & 15] = s + y + n;                                               \
        if (y & 1)                                                               \
            y += n;                                                              \
        return y;                                                                \
    }
EACH(FN)

#define ENTRY(a, b, c) f_##a##b##c,
static uint64_t (*const table[512])(uint64_t) = { EACH(ENTRY) };

static uint64_t bench_iteration(uint64_t seed)
{
    for (unsigned i = 0; i < 16; i++)
        state[i] = seed + i;
    uint64_t x = seed, s = seed;
    for (unsigned i = 0; i < CALLS; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x = table[(s >> 33) & 511](x);
    }
    uint64_t h = x;
    for (unsigned i = 0; i < 16; i++)
        h = (h ^ state[i]) * 0x100000001b3ull;
    return h;
}

int main(void)
{
    return bench_main("calls", ITERS, EXPECTED);
}
