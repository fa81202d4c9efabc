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

/* Function a*64 + b*8 + c (digits 0-7), 512 bytes apart: eight to a page. */
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
#define FN8(a, b) FN(a, b, 0) FN(a, b, 1) FN(a, b, 2) FN(a, b, 3) FN(a, b, 4) FN(a, b, 5) FN(a, b, 6) FN(a, b, 7)
#define FN64(a) FN8(a, 0) FN8(a, 1) FN8(a, 2) FN8(a, 3) FN8(a, 4) FN8(a, 5) FN8(a, 6) FN8(a, 7)
FN64(0) FN64(1) FN64(2) FN64(3) FN64(4) FN64(5) FN64(6) FN64(7)

#define T(a, b, c) f_##a##b##c,
#define T8(a, b) T(a, b, 0) T(a, b, 1) T(a, b, 2) T(a, b, 3) T(a, b, 4) T(a, b, 5) T(a, b, 6) T(a, b, 7)
#define T64(a) T8(a, 0) T8(a, 1) T8(a, 2) T8(a, 3) T8(a, 4) T8(a, 5) T8(a, 6) T8(a, 7)
static uint64_t (*const table[512])(uint64_t) = { T64(0) T64(1) T64(2) T64(3) T64(4) T64(5) T64(6) T64(7) };

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
