/* test.c - check bookkeeping for bare-metal tests. */
#include "test.h"

int test_checks;
int test_failures;
int test_deviations;

int test_check_eq(const char *file, int line, const char *expr, uint64_t actual, uint64_t expected)
{
    test_checks++;
    if (actual == expected)
        return 1;
    test_failures++;
    printf("FAIL %s:%d: %s\n    expected 0x%016lx (%ld)\n    actual   0x%016lx (%ld)\n",
           file, line, expr, expected, (long)expected, actual, (long)actual);
    return 0;
}

int test_summary(const char *name)
{
    if (test_failures == 0 && test_deviations)
        printf("PASS: %s (%d checks, %d tolerated deviations)\n", name, test_checks, test_deviations);
    else if (test_failures == 0)
        printf("PASS: %s (%d checks)\n", name, test_checks);
    else
        printf("FAIL: %s (%d of %d checks failed)\n", name, test_failures, test_checks);
    return test_failures > 250 ? 250 : test_failures;
}
