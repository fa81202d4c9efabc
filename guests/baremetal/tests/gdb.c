/* gdb - the program test/integration/gdb.test.ts debugs with gdb-multiarch: calls three deep
   (gdb_add <- gdb_leaf <- main) for breakpoints and backtraces, a global written in each call
   for a watchpoint, then a spin until the debugger writes gdb_release (memory writes, Ctrl-C).
   It never ends without a debugger (a harness program). Built -O1 so the frames are real. */
#include "test.h"

volatile long gdb_watched;
volatile long gdb_counter;
volatile long gdb_release;
volatile long gdb_result;

__attribute__((noinline)) long gdb_add(long a, long b)
{
    return a + b;
}

__attribute__((noinline)) long gdb_leaf(long x)
{
    gdb_watched = x * 10;
    return gdb_add(x, 1);
}

int main(void)
{
    long sum = 0;
    for (long i = 0; i < 10; i++) sum += gdb_leaf(i);
    gdb_result = sum;
    while (gdb_release == 0) gdb_counter++;
    printf("gdb: sum=%ld release=%ld spun=%d\n", sum, gdb_release, gdb_counter > 0);
    return gdb_release == 42 ? 0 : 1;
}
