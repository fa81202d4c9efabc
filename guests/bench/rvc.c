/* bench-rvc: compressed-instruction-heavy code (built with -Os -march=rv64gc):
   text generation, tokenizing and word counting in a small hash table with
   string compares, and run-length encoding/decoding with an Adler-32. */
#include "bench.h"

#ifndef ITERS
#define ITERS 700
#endif
#define EXPECTED 0xbc1d5932b237a6dfull
#define TEXT_LEN 32768
#define WALK_LEN 32768
#define TABLE 64

static const char *const words[16] = {
    "risc", "five", "hart", "trap", "page", "table", "vector", "fence",
    "load", "store", "atomic", "csr", "timer", "wasm", "core", "bus",
};

static char text[TEXT_LEN + 16];
static uint8_t walk[WALK_LEN];
static uint8_t rle[2 * WALK_LEN];
static uint8_t back[WALK_LEN];

struct entry {
    uint32_t hash;
    uint32_t count;
    const char *word;
    uint32_t len;
};
static struct entry table[TABLE];

static uint32_t rng(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*s >> 33);
}

static unsigned gen_text(uint64_t *s)
{
    unsigned n = 0;
    while (n < TEXT_LEN) {
        const char *w = words[rng(s) & 15];
        while (*w)
            text[n++] = *w++;
        text[n++] = ' ';
    }
    return n;
}

static uint32_t djb2(const char *p, unsigned len)
{
    uint32_t h = 5381;
    while (len--)
        h = h * 33 + (uint8_t)*p++;
    return h;
}

static int same(const char *a, const char *b, unsigned len)
{
    while (len--)
        if (*a++ != *b++)
            return 0;
    return 1;
}

static uint64_t count_words(unsigned n)
{
    for (unsigned i = 0; i < TABLE; i++)
        table[i].count = 0;
    unsigned i = 0;
    while (i < n) {
        unsigned start = i;
        while (text[i] != ' ')
            i++;
        unsigned len = i - start;
        i++;
        uint32_t h = djb2(&text[start], len);
        unsigned slot = h & (TABLE - 1);
        for (;;) {
            struct entry *e = &table[slot];
            if (e->count == 0) {
                e->hash = h;
                e->count = 1;
                e->word = &text[start];
                e->len = len;
                break;
            }
            if (e->hash == h && e->len == len && same(e->word, &text[start], len)) {
                e->count++;
                break;
            }
            slot = (slot + 1) & (TABLE - 1);
        }
    }
    uint64_t sum = 0;
    for (unsigned k = 0; k < TABLE; k++)
        sum += (uint64_t)table[k].count * table[k].hash;
    return sum;
}

static unsigned rle_encode(const uint8_t *in, unsigned n, uint8_t *out)
{
    unsigned o = 0, i = 0;
    while (i < n) {
        uint8_t b = in[i];
        unsigned run = 1;
        while (i + run < n && in[i + run] == b && run < 255)
            run++;
        out[o++] = b;
        out[o++] = (uint8_t)run;
        i += run;
    }
    return o;
}

static unsigned rle_decode(const uint8_t *in, unsigned n, uint8_t *out)
{
    unsigned o = 0;
    for (unsigned i = 0; i < n; i += 2)
        for (unsigned r = 0; r < in[i + 1]; r++)
            out[o++] = in[i];
    return o;
}

static uint32_t adler32(const uint8_t *p, unsigned n)
{
    uint32_t a = 1, b = 0;
    while (n--) {
        a = (a + *p++) % 65521;
        b = (b + a) % 65521;
    }
    return (b << 16) | a;
}

static uint64_t bench_iteration(uint64_t seed)
{
    uint64_t s = seed;
    unsigned n = gen_text(&s);
    uint64_t wsum = count_words(n);
    uint8_t v = 128;
    for (unsigned i = 0; i < WALK_LEN; i++) {
        uint32_t r = rng(&s);
        if ((r & 7) == 0)
            v += (r & 8) ? 1 : -1;
        walk[i] = v;
    }
    unsigned m = rle_encode(walk, WALK_LEN, rle);
    unsigned d = rle_decode(rle, m, back);
    uint64_t bad = d != WALK_LEN || !same((const char *)walk, (const char *)back, WALK_LEN);
    return wsum ^ ((uint64_t)adler32(rle, m) << 32) ^ ((uint64_t)m << 8) ^ (bad << 63) ^ n;
}

int main(void)
{
    return bench_main("rvc", ITERS, EXPECTED);
}
