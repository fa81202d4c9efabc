/* bench-fp: double-precision floating point: a 5-body gravitational simulation
   (with sqrt and divide) and a 48x48 matrix multiply. Built with
   -ffp-contract=off so the result is the exact sequence of IEEE operations the
   independent reference computation performs. */
#include "bench.h"

#ifndef ITERS
#define ITERS 20
#endif
#define EXPECTED 0xd1b8a4c335071356ull
#define NB 5
#define STEPS 20000
#define MN 48

static double px[NB], py[NB], pz[NB], vx[NB], vy[NB], vz[NB], mass[NB];
static double ma[MN][MN], mb[MN][MN], mc[MN][MN];

static inline double fsqrt(double x)
{
    double r;
    __asm__("fsqrt.d %0, %1, rne" : "=f"(r) : "f"(x));
    return r;
}

static uint64_t bits(double d)
{
    uint64_t u;
    __builtin_memcpy(&u, &d, 8);
    return u;
}

static double nbody(void)
{
    const double dt = 0.01;
    for (int i = 0; i < NB; i++) {
        px[i] = (double)(i * 3 - 5);
        py[i] = (double)(i * i) * 0.5 - 2.0;
        pz[i] = (double)(i % 2) * 0.25;
        vx[i] = (double)(2 - i) * 0.125;
        vy[i] = (double)(i - 1) * 0.0625;
        vz[i] = 0.03125 * (double)i;
        mass[i] = 1.0 + (double)i * 0.5;
    }
    for (int s = 0; s < STEPS; s++) {
        for (int i = 0; i < NB; i++) {
            for (int j = i + 1; j < NB; j++) {
                double dx = px[i] - px[j], dy = py[i] - py[j], dz = pz[i] - pz[j];
                double d2 = dx * dx + dy * dy + dz * dz + 0.01;
                double mag = dt / (d2 * fsqrt(d2));
                vx[i] -= dx * mass[j] * mag;
                vy[i] -= dy * mass[j] * mag;
                vz[i] -= dz * mass[j] * mag;
                vx[j] += dx * mass[i] * mag;
                vy[j] += dy * mass[i] * mag;
                vz[j] += dz * mass[i] * mag;
            }
        }
        for (int i = 0; i < NB; i++) {
            px[i] += dt * vx[i];
            py[i] += dt * vy[i];
            pz[i] += dt * vz[i];
        }
    }
    double e = 0.0;
    for (int i = 0; i < NB; i++) {
        e += 0.5 * mass[i] * (vx[i] * vx[i] + vy[i] * vy[i] + vz[i] * vz[i]);
        for (int j = i + 1; j < NB; j++) {
            double dx = px[i] - px[j], dy = py[i] - py[j], dz = pz[i] - pz[j];
            e -= mass[i] * mass[j] / fsqrt(dx * dx + dy * dy + dz * dz + 0.01);
        }
    }
    return e;
}

static double matmul(uint64_t seed)
{
    uint64_t s = seed;
    for (int i = 0; i < MN; i++)
        for (int j = 0; j < MN; j++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            ma[i][j] = (double)(int64_t)(s >> 44) / 1048576.0 - 0.5;     /* 20-bit values */
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            mb[i][j] = (double)(int64_t)(s >> 44) / 524288.0 - 1.0;
        }
    for (int i = 0; i < MN; i++)
        for (int j = 0; j < MN; j++) {
            double acc = 0.0;
            for (int k = 0; k < MN; k++)
                acc += ma[i][k] * mb[k][j];
            mc[i][j] = acc / 3.0;
        }
    double sum = 0.0;
    for (int i = 0; i < MN; i++)
        for (int j = 0; j < MN; j++)
            sum += mc[i][j] * (double)(i - j);
    return sum;
}

static uint64_t bench_iteration(uint64_t seed)
{
    double e = nbody();
    double m = matmul(seed);
    uint64_t b = bits(m);
    return bits(e) ^ (b << 17 | b >> 47);
}

int main(void)
{
    return bench_main("fp", ITERS, EXPECTED);
}
