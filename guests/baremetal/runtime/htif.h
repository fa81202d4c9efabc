/* htif.h - Spike-style HTIF console and exit for wasmvisor bare-metal guests. */
#ifndef WASMVISOR_HTIF_H
#define WASMVISOR_HTIF_H

#include <stdarg.h>
#include <stdint.h>

extern volatile uint64_t tohost;
extern volatile uint64_t fromhost;

/* Writes one character through HTIF device 1 (console), command 1 (write),
   and waits for the host's acknowledgement in fromhost. */
void htif_putchar(int ch);
void htif_puts(const char *s);          /* no newline appended */
/* printf-lite: %d %i %u %x %X %c %s %p %% with l/ll, optional '0' flag and width. */
int htif_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int htif_vprintf(const char *fmt, va_list ap);
/* tohost = (code << 1) | 1. Never returns. */
void htif_exit(long code) __attribute__((noreturn));

#define printf htif_printf
#define puts(s) (htif_puts(s), htif_putchar('\n'))
#define putchar htif_putchar
#define exit htif_exit

#endif
