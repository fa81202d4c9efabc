/* empty: exits at once (status 0 through HTIF), printing nothing. The cpu bench runs it on
   QEMU to measure QEMU's own start-up and exit, which it subtracts from each benchmark's
   QEMU time. */
int main(void)
{
    return 0;
}
