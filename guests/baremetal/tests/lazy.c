/* lazy - a guest for lazy memory (test/lazy-memory.test.ts): a machine is saved in the middle of
 * it and a new one goes on from a copy of its RAM with every page brought in on first touch.
 * Whatever the interruption, the output must be the same.
 *
 * 1. From S-mode through Sv39 4 KiB pages (so the walker, and shadow paging's write-protected
 *    tables, touch page tables in RAM), fill a 1 MiB buffer with a pseudo-random pattern; fill a
 *    page for DMA with its own pattern. Print "filled".
 * 2. With a virtio-blk disk: read one sector into the middle of the DMA page, check it and that
 *    the rest of the page kept its pattern (the device's write must not lose what the guest
 *    wrote before). Print "dma ok" (or "no disk").
 * 3. From S-mode, PASSES times: swap pairs of leaf PTEs (page-table writes), then sum the buffer
 *    through the window, position-dependent, so the sum depends on the mapping and the data;
 *    count passes with an AMO and with LR/SC; write into each page. Print the checksum.
 * Exits 0, or 1 on a failed check. */
#include <stddef.h>
#include "test.h"

#define PTE_V (1ul << 0)
#define PTE_R (1ul << 1)
#define PTE_W (1ul << 2)
#define PTE_X (1ul << 3)
#define PTE_A (1ul << 6)
#define PTE_D (1ul << 7)
#define PPN(pa) ((((unsigned long)(pa)) >> 12) << 10)
#define RAM 0x80000000ul
#define SATP39(root) ((SATP_MODE_SV39 << SATP_MODE_SHIFT) | ((unsigned long)(root) >> 12))

#define WINDOW 0xc0000000ul /* VA of the buffer, page by page */
#define PAGES 256
#define WORDS 512
#define PASSES 24

static uint64_t root[512] __attribute__((aligned(4096)));
static uint64_t l1[512] __attribute__((aligned(4096)));
static uint64_t l0[512] __attribute__((aligned(4096)));
static uint64_t buf[PAGES][WORDS] __attribute__((aligned(4096)));
static uint8_t dma_page[4096] __attribute__((aligned(4096)));
static uint64_t amo_passes;
static uint64_t lrsc_passes;

static inline uint64_t lcg(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 11;
}

#define window ((volatile uint64_t (*)[WORDS])WINDOW)

static long s_fill(long seed)
{
    uint64_t s = (uint64_t)seed;
    for (int p = 0; p < PAGES; p++)
        for (int w = 0; w < WORDS; w++) window[p][w] = lcg(&s);
    return 0;
}

static void lrsc_increment(uint64_t *v)
{
    uint64_t old, fail;
    do {
        __asm__ __volatile__("lr.d %0, (%2)\n\taddi %0, %0, 1\n\tsc.d %1, %0, (%2)"
                             : "=&r"(old), "=&r"(fail) : "r"(v) : "memory");
    } while (fail != 0);
}

static long s_sum(long seed)
{
    uint64_t s = (uint64_t)seed, sum = 0;
    for (int pass = 0; pass < PASSES; pass++) {
        for (int k = 0; k < PAGES / 4; k++) {
            uint64_t a = lcg(&s) % PAGES, b = lcg(&s) % PAGES;
            uint64_t t = l0[a];
            l0[a] = l0[b];
            l0[b] = t;
        }
        __asm__ __volatile__("sfence.vma" ::: "memory");
        for (int p = 0; p < PAGES; p++) {
            for (int w = 0; w < WORDS; w++) sum = (sum * 31) ^ (window[p][w] + (uint64_t)(p * WORDS + w));
            window[p][pass % WORDS] += (uint64_t)pass;
        }
        __atomic_fetch_add(&amo_passes, 1, __ATOMIC_SEQ_CST);
        lrsc_increment(&lrsc_passes);
    }
    return (long)sum;
}

/* ---- virtio-blk, polled ---- */
#define VIRTIO_BASE   0x10001000ul
#define VIRTIO_STRIDE 0x1000ul
#define R_MAGIC        0x000
#define R_VERSION      0x004
#define R_DEVICE_ID    0x008
#define R_DRV_FEAT     0x020
#define R_DRV_FEAT_SEL 0x024
#define R_QUEUE_SEL    0x030
#define R_QUEUE_NUM    0x038
#define R_QUEUE_READY  0x044
#define R_QUEUE_NOTIFY 0x050
#define R_STATUS       0x070
#define R_DESC_LO      0x080
#define R_DESC_HI      0x084
#define R_AVAIL_LO     0x090
#define R_AVAIL_HI     0x094
#define R_USED_LO      0x0a0
#define R_USED_HI      0x0a4
#define F_NEXT  1
#define F_WRITE 2
#define QSIZE 4

struct desc { uint64_t addr; uint32_t len; uint16_t flags; uint16_t next; };
struct avail { uint16_t flags; uint16_t idx; uint16_t ring[QSIZE]; uint16_t used_event; };
struct used { uint16_t flags; uint16_t idx; struct { uint32_t id, len; } ring[QSIZE]; uint16_t avail_event; };
static struct desc descs[QSIZE] __attribute__((aligned(16)));
static struct avail avail __attribute__((aligned(2)));
static volatile struct used used __attribute__((aligned(4)));
static struct { uint32_t type, reserved; uint64_t sector; } req;
static volatile uint8_t blk_status;
static uintptr_t dev;

static inline uint32_t rd(uint32_t off) { return *(volatile uint32_t *)(dev + off); }
static inline void wr(uint32_t off, uint32_t v) { *(volatile uint32_t *)(dev + off) = v; }
#define wr64(lo, v) do { wr(lo, (uint32_t)(uintptr_t)(v)); wr(lo + 4, (uint32_t)((uintptr_t)(v) >> 32)); } while (0)

/* A board without virtio (QEMU spike, or no devices) faults the probe: no disk then. */
static int find_blk(void)
{
    int found = 0;
    trap_catch_start();
    for (int i = 0; i < 8 && !found; i++) {
        dev = VIRTIO_BASE + i * VIRTIO_STRIDE;
        found = rd(R_MAGIC) == 0x74726976 && caught.count == 0 && rd(R_VERSION) == 2 && rd(R_DEVICE_ID) == 2;
        if (caught.count != 0) break;
    }
    trap_catch_stop();
    return found;
}

/* Read sector `sector` into `dst` (512 bytes) and wait for it. */
static void read_sector(uint64_t sector, uint8_t *dst)
{
    wr(R_STATUS, 0);
    wr(R_STATUS, 1 | 2);
    wr(R_DRV_FEAT_SEL, 1);
    wr(R_DRV_FEAT, 1); /* VIRTIO_F_VERSION_1 */
    wr(R_STATUS, 1 | 2 | 8);
    wr(R_QUEUE_SEL, 0);
    wr(R_QUEUE_NUM, QSIZE);
    wr64(R_DESC_LO, descs);
    wr64(R_AVAIL_LO, &avail);
    wr64(R_USED_LO, &used);
    wr(R_QUEUE_READY, 1);
    wr(R_STATUS, 1 | 2 | 8 | 4);
    req.type = 0; /* VIRTIO_BLK_T_IN */
    req.sector = sector;
    blk_status = 0xff;
    descs[0] = (struct desc){ (uintptr_t)&req, sizeof req, F_NEXT, 1 };
    descs[1] = (struct desc){ (uintptr_t)dst, 512, F_NEXT | F_WRITE, 2 };
    descs[2] = (struct desc){ (uintptr_t)&blk_status, 1, F_WRITE, 0 };
    avail.ring[0] = 0;
    __asm__ __volatile__("fence w, w" ::: "memory");
    avail.idx = 1;
    __asm__ __volatile__("fence w, w" ::: "memory");
    wr(R_QUEUE_NOTIFY, 0);
    while (used.idx != 1) {}
    CHECK_EQ(blk_status, 0);
}

int main(void)
{
    root[2] = PPN(RAM) | PTE_V | PTE_R | PTE_W | PTE_X | PTE_A | PTE_D; /* identity gigapage */
    root[3] = PPN(l1) | PTE_V;
    l1[0] = PPN(l0) | PTE_V;
    for (int p = 0; p < PAGES; p++) l0[p] = PPN(buf[p]) | PTE_V | PTE_R | PTE_W | PTE_A | PTE_D;
    csr_write(satp, SATP39(root));
    __asm__ __volatile__("sfence.vma" ::: "memory");

    run_mode(PRV_S, s_fill, 12345);
    for (int i = 0; i < 4096; i++) dma_page[i] = (uint8_t)(i * 7 + 1);
    printf("filled\n");

    if (find_blk()) {
        /* The sector holds byte i = 255 - (i & 0xff) (the test's disk). */
        read_sector(1, dma_page + 1024);
        int bad = 0;
        for (int i = 0; i < 4096; i++) {
            uint8_t want = i >= 1024 && i < 1536 ? (uint8_t)(255 - ((i - 1024) & 0xff)) : (uint8_t)(i * 7 + 1);
            if (dma_page[i] != want) bad++;
        }
        CHECK_EQ(bad, 0);
        printf("dma ok\n");
    } else {
        printf("no disk\n");
    }

    uint64_t sum = (uint64_t)run_mode(PRV_S, s_sum, 777);
    for (int i = 0; i < 4096; i++) sum = sum * 31 + dma_page[i];
    CHECK_EQ(amo_passes, PASSES);
    CHECK_EQ(lrsc_passes, PASSES);
    csr_write(satp, 0);
    printf("checksum=0x%lx\n", sum);
    return test_summary("lazy");
}
