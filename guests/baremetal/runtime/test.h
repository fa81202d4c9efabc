/* test.h - check helpers for self-checking bare-metal tests.
 * Expected values are literals written in the tests; a failing check prints
 * file:line, the expression, and expected/actual values. */
#ifndef WASMVISOR_TEST_H
#define WASMVISOR_TEST_H

#include <stdint.h>
#include "htif.h"
#include "riscv.h"

extern int test_checks;
extern int test_failures;
extern int test_deviations;

/* Returns 1 if actual == expected, else prints a FAIL line and returns 0. */
int test_check_eq(const char *file, int line, const char *expr, uint64_t actual, uint64_t expected);

#define CHECK_EQ(actual, expected) \
    test_check_eq(__FILE_NAME__, __LINE__, #actual, (uint64_t)(actual), (uint64_t)(expected))
#define CHECK(cond) test_check_eq(__FILE_NAME__, __LINE__, #cond, (cond) ? 1 : 0, 1)
/* Checks with extra context printed on failure. */
#define CHECK_EQ_CTX(actual, expected, ...) \
    do { if (!CHECK_EQ(actual, expected)) { printf("    context: "); printf(__VA_ARGS__); printf("\n"); } } while (0)

/* Runs `stmt` with the exception catcher installed and checks that exactly one
   exception with `cause` was taken. */
#define EXPECT_TRAP(want_cause, stmt) do { \
    trap_catch_start(); stmt; trap_catch_stop(); \
    CHECK_EQ(caught.count, 1); CHECK_EQ(caught.cause, want_cause); } while (0)
#define EXPECT_NO_TRAP(stmt) do { \
    trap_catch_start(); stmt; trap_catch_stop(); CHECK_EQ(caught.count, 0); } while (0)

/* A tolerated deviation from the specification that QEMU 7.2 (the reference the
   programs are validated on) exhibits. Printed as a line starting "DEVIATION:" so
   a stricter harness (wasmvisor's own core) can reject it; not a failure here. */
#define DEVIATION(...) do { printf("DEVIATION: "); printf(__VA_ARGS__); printf("\n"); test_deviations++; } while (0)
/* A part of the test that cannot run on this machine ("SKIP: ..." line). */
#define SKIP(...) do { printf("SKIP: "); printf(__VA_ARGS__); printf("\n"); } while (0)

/* Prints "PASS: name (N checks)" or "FAIL: name (F of N checks failed)" and
   returns the failure count (clamped to 250 so it survives an 8-bit exit status). */
int test_summary(const char *name);

/* Prevents the compiler from constant-folding a value. */
#define OPAQUE(x) ({ __typeof__(x) __o = (x); __asm__ __volatile__("" : "+r"(__o)); __o; })

#endif
