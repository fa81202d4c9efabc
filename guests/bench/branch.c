/* bench-branch: branchy code. A small bytecode interpreter (switch dispatch)
   runs a program computing Collatz trajectory lengths (data-dependent
   odd/even branches), then a pass of unpredictable compare-and-branch over
   pseudo-random bytes. */
#include "bench.h"

#ifndef ITERS
#define ITERS 32
#endif
#define EXPECTED 0x00d862d3040f39b3ull
#define LIMIT 3000
#define NBYTES 65536

enum { OP_LOADI, OP_MOV, OP_ADD, OP_ADDI, OP_SHR1, OP_MUL3P1, OP_JODD, OP_JEQ, OP_JNE, OP_JMP,
       OP_ACC, OP_MAX, OP_HALT };

struct insn { uint8_t op, a, b, c; int32_t imm; };

/* r0 = n, r1 = x, r2 = steps, r3 = 1, r4 = limit, r5 = total, r6 = max */
static const struct insn program[] = {
    /* 0 */ { OP_LOADI, 0, 0, 0, 1 },
    /* 1 */ { OP_LOADI, 3, 0, 0, 1 },
    /* 2 */ { OP_LOADI, 4, 0, 0, LIMIT },
    /* 3 */ { OP_LOADI, 5, 0, 0, 0 },
    /* 4 */ { OP_LOADI, 6, 0, 0, 0 },
    /* 5 loop: */ { OP_MOV, 1, 0, 0, 0 },
    /* 6 */ { OP_LOADI, 2, 0, 0, 0 },
    /* 7 inner: */ { OP_JEQ, 1, 3, 0, 13 },
    /* 8 */ { OP_JODD, 1, 0, 0, 11 },
    /* 9 */ { OP_SHR1, 1, 0, 0, 0 },
    /* 10 */ { OP_JMP, 0, 0, 0, 12 },
    /* 11 odd: */ { OP_MUL3P1, 1, 0, 0, 0 },
    /* 12 */ { OP_ADDI, 2, 2, 0, 1 },  /* falls into the jump below */
    /* 13 */ { OP_JNE, 1, 3, 0, 7 },
    /* 14 */ { OP_ACC, 5, 2, 0, 0 },
    /* 15 */ { OP_MAX, 6, 2, 0, 0 },
    /* 16 */ { OP_ADDI, 0, 0, 0, 1 },
    /* 17 */ { OP_JNE, 0, 4, 0, 5 },
    /* 18 */ { OP_HALT, 0, 0, 0, 0 },
};

static uint64_t interpret(const struct insn *code, uint64_t *r)
{
    uint64_t executed = 0;
    unsigned pc = 0;
    for (;;) {
        const struct insn *i = &code[pc++];
        executed++;
        switch (i->op) {
        case OP_LOADI: r[i->a] = (uint64_t)(int64_t)i->imm; break;
        case OP_MOV: r[i->a] = r[i->b]; break;
        case OP_ADD: r[i->a] = r[i->b] + r[i->c]; break;
        case OP_ADDI: r[i->a] = r[i->b] + (uint64_t)(int64_t)i->imm; break;
        case OP_SHR1: r[i->a] >>= 1; break;
        case OP_MUL3P1: r[i->a] = r[i->a] * 3 + 1; break;
        case OP_JODD: if (r[i->a] & 1) pc = (unsigned)i->imm; break;
        case OP_JEQ: if (r[i->a] == r[i->b]) pc = (unsigned)i->imm; break;
        case OP_JNE: if (r[i->a] != r[i->b]) pc = (unsigned)i->imm; break;
        case OP_JMP: pc = (unsigned)i->imm; break;
        case OP_ACC: r[i->a] += r[i->b]; break;
        case OP_MAX: if (r[i->b] > r[i->a]) r[i->a] = r[i->b]; break;
        case OP_HALT: return executed;
        default: return ~0ull;
        }
    }
}

static uint8_t bytes[NBYTES];

static uint64_t bench_iteration(uint64_t seed)
{
    uint64_t r[8] = { 0 };
    uint64_t executed = interpret(program, r);

    uint64_t s = seed;
    for (unsigned i = 0; i < NBYTES; i++) {
        s ^= s << 7;
        s ^= s >> 9;
        bytes[i] = (uint8_t)s;
    }
    uint64_t lo = 0, mid = 0, hi = 0, runs = 0;
    uint8_t prev = 0;
    for (unsigned i = 0; i < NBYTES; i++) {
        uint8_t b = bytes[i];
        if (b < 64)
            lo += b;
        else if (b < 160)
            mid ^= (uint64_t)b << (i & 31);
        else
            hi++;
        if ((b & 1) != (prev & 1))
            runs++;
        prev = b;
    }
    return executed ^ (r[5] << 20) ^ (r[6] << 48) ^ lo ^ (mid << 3) ^ (hi << 32) ^ (runs << 16);
}

int main(void)
{
    return bench_main("branch", ITERS, EXPECTED);
}
