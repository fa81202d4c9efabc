/* bench-int: integer ALU work: xorshift data generation, table-driven CRC-32,
   an in-place heapsort and a multiplicative hash over the sorted data. */
#include "bench.h"

#ifndef ITERS
#define ITERS 240
#endif
#define N 16384
#define EXPECTED 0xa8f4ab02aaa3e1daull

static uint32_t data[N];
static uint32_t crc_table[256];

static void make_crc_table(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc32_words(const uint32_t *p, unsigned n)
{
    uint32_t c = 0xffffffffu;
    for (unsigned i = 0; i < n; i++) {
        uint32_t w = p[i];
        for (int b = 0; b < 4; b++) {
            c = crc_table[(c ^ w) & 0xff] ^ (c >> 8);
            w >>= 8;
        }
    }
    return ~c;
}

static void sift_down(uint32_t *a, unsigned start, unsigned end)
{
    unsigned root = start;
    while (2 * root + 1 <= end) {
        unsigned child = 2 * root + 1, sw = root;
        if (a[sw] < a[child])
            sw = child;
        if (child + 1 <= end && a[sw] < a[child + 1])
            sw = child + 1;
        if (sw == root)
            return;
        uint32_t t = a[root];
        a[root] = a[sw];
        a[sw] = t;
        root = sw;
    }
}

static void heapsort(uint32_t *a, unsigned n)
{
    for (int start = (int)(n - 2) / 2; start >= 0; start--)
        sift_down(a, (unsigned)start, n - 1);
    for (unsigned end = n - 1; end > 0; end--) {
        uint32_t t = a[0];
        a[0] = a[end];
        a[end] = t;
        sift_down(a, 0, end - 1);
    }
}

static uint64_t bench_iteration(uint64_t seed)
{
    uint32_t x = (uint32_t)seed | 1;
    for (unsigned i = 0; i < N; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        data[i] = x;
    }
    make_crc_table();
    uint32_t crc = crc32_words(data, N);
    heapsort(data, N);
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned i = 0; i < N; i++) {
        h ^= data[i];
        h *= 0x100000001b3ull;
        h ^= h >> 29;
    }
    return h ^ ((uint64_t)crc << 32) ^ data[N / 2];
}

int main(void)
{
    return bench_main("int", ITERS, EXPECTED);
}
