/* htif.c - HTIF console output, printf-lite and exit. */
#include "htif.h"

#define HTIF_DEV_CONSOLE 1ull
#define HTIF_CMD_WRITE   1ull

#ifdef CONSOLE_VIRT
/* Validation-only flavour for QEMU -M virt: ns16550 UART + SiFive test finisher. */
#define UART_THR ((volatile uint8_t *)0x10000000)
#define UART_LSR ((volatile uint8_t *)0x10000005)
#define FINISHER ((volatile uint32_t *)0x100000)

void htif_putchar(int ch)
{
    while (!(*UART_LSR & 0x20))
        ;
    *UART_THR = (uint8_t)ch;
}

void htif_exit(long code)
{
    for (;;)
        *FINISHER = code == 0 ? 0x5555 : (uint32_t)((code << 16) | 0x3333);
}
#else
void htif_putchar(int ch)
{
    tohost = (HTIF_DEV_CONSOLE << 56) | (HTIF_CMD_WRITE << 48) | (uint8_t)ch;
    while (fromhost == 0)
        ;
    fromhost = 0;
}

void htif_exit(long code)
{
    for (;;)
        tohost = ((uint64_t)code << 1) | 1;
}
#endif

void htif_puts(const char *s)
{
    while (*s)
        htif_putchar(*s++);
}

static void put_padded(const char *digits, int len, int width, char pad, int neg)
{
    int total = len + neg;
    if (neg && pad == '0')
        htif_putchar('-');
    for (; total < width; total++)
        htif_putchar(pad);
    if (neg && pad != '0')
        htif_putchar('-');
    while (len--)
        htif_putchar(digits[len]);
}

static int format_unsigned(char *buf, unsigned long long v, unsigned base, int upper)
{
    const char *d = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    int n = 0;
    do {
        buf[n++] = d[v % base];
        v /= base;
    } while (v);
    return n;      /* digits in reverse order */
}

int htif_vprintf(const char *fmt, va_list ap)
{
    char buf[24];
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            htif_putchar(*fmt);
            continue;
        }
        fmt++;
        char pad = ' ';
        int width = 0, lng = 0;
        if (*fmt == '0') {
            pad = '0';
            fmt++;
        }
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l') {
            lng++;
            fmt++;
        }
        switch (*fmt) {
        case 'd':
        case 'i': {
            long long v = lng ? va_arg(ap, long long) : va_arg(ap, int);
            unsigned long long mag = v < 0 ? -(unsigned long long)v : (unsigned long long)v;
            put_padded(buf, format_unsigned(buf, mag, 10, 0), width, pad, v < 0);
            break;
        }
        case 'u':
        case 'x':
        case 'X': {
            unsigned long long v = lng ? va_arg(ap, unsigned long long) : va_arg(ap, unsigned int);
            unsigned base = *fmt == 'u' ? 10 : 16;
            put_padded(buf, format_unsigned(buf, v, base, *fmt == 'X'), width, pad, 0);
            break;
        }
        case 'p': {
            unsigned long v = (unsigned long)va_arg(ap, void *);
            htif_puts("0x");
            put_padded(buf, format_unsigned(buf, v, 16, 0), width, pad, 0);
            break;
        }
        case 'c':
            htif_putchar(va_arg(ap, int));
            break;
        case 's': {
            const char *s = va_arg(ap, const char *);
            if (!s)
                s = "(null)";
            int len = 0;
            while (s[len])
                len++;
            for (; len < width; width--)
                htif_putchar(' ');
            htif_puts(s);
            break;
        }
        case '%':
            htif_putchar('%');
            break;
        case 0:
            return 0;
        default:
            htif_putchar('%');
            htif_putchar(*fmt);
        }
    }
    return 0;
}

int htif_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    htif_vprintf(fmt, ap);
    va_end(ap);
    return 0;
}
