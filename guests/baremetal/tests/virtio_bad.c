/* virtio_bad - a hostile driver: hands a virtio-blk device malformed descriptors and checks
 * that the device refuses each one by setting DEVICE_NEEDS_RESET (with a config-change
 * interrupt status), and that after a reset it serves a well-formed request again.
 * Needs a virtio-blk disk whose first sector begins with the bytes "WVBLK-OK". */
#include <stddef.h>
#include "test.h"

void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);

#define VIRTIO_BASE   0x10001000ul
#define VIRTIO_STRIDE 0x1000ul
#define VIRTIO_SLOTS  8

#define R_MAGIC        0x000
#define R_VERSION      0x004
#define R_DEVICE_ID    0x008
#define R_DEV_FEAT     0x010
#define R_DEV_FEAT_SEL 0x014
#define R_DRV_FEAT     0x020
#define R_DRV_FEAT_SEL 0x024
#define R_QUEUE_SEL    0x030
#define R_QUEUE_MAX    0x034
#define R_QUEUE_NUM    0x038
#define R_QUEUE_READY  0x044
#define R_QUEUE_NOTIFY 0x050
#define R_ISR          0x060
#define R_ISR_ACK      0x064
#define R_STATUS       0x070
#define R_DESC_LO      0x080
#define R_DESC_HI      0x084
#define R_AVAIL_LO     0x090
#define R_AVAIL_HI     0x094
#define R_USED_LO      0x0a0
#define R_USED_HI      0x0a4

#define S_ACK         1
#define S_DRIVER      2
#define S_DRIVER_OK   4
#define S_FEATURES_OK 8
#define S_NEEDS_RESET 64

#define F_NEXT     1
#define F_WRITE    2
#define F_INDIRECT 4

#define QSIZE 8

struct desc { uint64_t addr; uint32_t len; uint16_t flags; uint16_t next; };
struct avail { uint16_t flags; uint16_t idx; uint16_t ring[QSIZE]; uint16_t used_event; };
struct used_elem { uint32_t id; uint32_t len; };
struct used { uint16_t flags; uint16_t idx; struct used_elem ring[QSIZE]; uint16_t avail_event; };
struct blk_req { uint32_t type; uint32_t reserved; uint64_t sector; };

static struct desc descs[QSIZE] __attribute__((aligned(16)));
static struct desc indirect[4] __attribute__((aligned(16)));
static struct avail avail __attribute__((aligned(2)));
static struct used used __attribute__((aligned(4)));
static struct blk_req req;
static uint8_t data[512];
static volatile uint8_t status_byte;
static uint16_t next_avail;

static uintptr_t dev;

static inline uint32_t rd(uint32_t off) { return *(volatile uint32_t *)(dev + off); }
static inline void wr(uint32_t off, uint32_t v) { *(volatile uint32_t *)(dev + off) = v; }

static int find_blk(void)
{
    for (int i = 0; i < VIRTIO_SLOTS; i++) {
        dev = VIRTIO_BASE + i * VIRTIO_STRIDE;
        if (rd(R_MAGIC) == 0x74726976 && rd(R_VERSION) == 2 && rd(R_DEVICE_ID) == 2) return 1;
    }
    return 0;
}

/* Reset and bring the device up with one queue, as a driver would. */
static void init_device(void)
{
    wr(R_STATUS, 0);
    CHECK_EQ(rd(R_STATUS), 0);
    wr(R_STATUS, S_ACK);
    wr(R_STATUS, S_ACK | S_DRIVER);
    wr(R_DEV_FEAT_SEL, 1);
    uint32_t hi = rd(R_DEV_FEAT);
    CHECK_EQ(hi & 1, 1); /* VIRTIO_F_VERSION_1 */
    wr(R_DRV_FEAT_SEL, 0);
    wr(R_DRV_FEAT, 0);
    wr(R_DRV_FEAT_SEL, 1);
    wr(R_DRV_FEAT, 1);
    wr(R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
    CHECK_EQ(rd(R_STATUS) & S_FEATURES_OK, S_FEATURES_OK);
    wr(R_QUEUE_SEL, 0);
    CHECK(rd(R_QUEUE_MAX) >= QSIZE);
    wr(R_QUEUE_NUM, QSIZE);
    memset(descs, 0, sizeof descs);
    memset(&avail, 0, sizeof avail);
    memset((void *)&used, 0, sizeof used);
    next_avail = 0;
    wr(R_DESC_LO, (uint32_t)(uintptr_t)descs);
    wr(R_DESC_HI, (uint32_t)((uintptr_t)descs >> 32));
    wr(R_AVAIL_LO, (uint32_t)(uintptr_t)&avail);
    wr(R_AVAIL_HI, (uint32_t)((uintptr_t)&avail >> 32));
    wr(R_USED_LO, (uint32_t)(uintptr_t)&used);
    wr(R_USED_HI, (uint32_t)((uintptr_t)&used >> 32));
    wr(R_QUEUE_READY, 1);
    wr(R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
}

static void post(uint16_t head, uint16_t idx_advance)
{
    avail.ring[next_avail % QSIZE] = head;
    __asm__ __volatile__("fence w, w" ::: "memory");
    next_avail += idx_advance;
    avail.idx = next_avail;
    __asm__ __volatile__("fence w, w" ::: "memory");
    wr(R_QUEUE_NOTIFY, 0);
}

/* A well-formed read of sector 0: header, 512-byte buffer, status byte. */
static void good_read(const char *when)
{
    req.type = 0; /* VIRTIO_BLK_T_IN */
    req.sector = 0;
    memset(data, 0, sizeof data);
    status_byte = 0xff;
    descs[0] = (struct desc){ (uintptr_t)&req, sizeof req, F_NEXT, 1 };
    descs[1] = (struct desc){ (uintptr_t)data, sizeof data, F_NEXT | F_WRITE, 2 };
    descs[2] = (struct desc){ (uintptr_t)&status_byte, 1, F_WRITE, 0 };
    uint16_t before = used.idx;
    post(0, 1);
    CHECK_EQ_CTX(*(volatile uint16_t *)&used.idx, (uint16_t)(before + 1), "%s", when);
    CHECK_EQ_CTX(status_byte, 0, "%s", when);
    CHECK_EQ_CTX(memcmp(data, "WVBLK-OK", 8), 0, "%s", when);
    CHECK_EQ_CTX(rd(R_STATUS) & S_NEEDS_RESET, 0, "%s", when);
}

/* After a malformed request: the device must say it needs a reset, and work after one. */
static void expect_needs_reset(const char *what)
{
    CHECK_EQ_CTX(rd(R_STATUS) & S_NEEDS_RESET, S_NEEDS_RESET, "%s", what);
    CHECK_EQ_CTX(rd(R_ISR) & 2, 2, "%s: config-change interrupt", what); /* config change */
    wr(R_ISR_ACK, rd(R_ISR));
    init_device();
    good_read(what);
}

int main(void)
{
    if (!find_blk()) {
        printf("FAIL: no virtio-blk device found\n");
        return 1;
    }
    init_device();
    good_read("first request");

    /* 1. A buffer outside guest RAM. */
    descs[0] = (struct desc){ (uintptr_t)&req, sizeof req, F_NEXT, 1 };
    descs[1] = (struct desc){ 0x40000000ul, 512, F_NEXT | F_WRITE, 2 };
    descs[2] = (struct desc){ (uintptr_t)&status_byte, 1, F_WRITE, 0 };
    post(0, 1);
    expect_needs_reset("address outside RAM");

    /* 1b. DMA into the boot ROM, and into the device's own registers (escape attempts: the
     * device writes only guest RAM). */
    descs[0] = (struct desc){ (uintptr_t)&req, sizeof req, F_NEXT, 1 };
    descs[1] = (struct desc){ 0x1000ul, 512, F_NEXT | F_WRITE, 2 };
    descs[2] = (struct desc){ (uintptr_t)&status_byte, 1, F_WRITE, 0 };
    post(0, 1);
    expect_needs_reset("DMA into the boot ROM");
    descs[0] = (struct desc){ (uintptr_t)&req, sizeof req, F_NEXT, 1 };
    descs[1] = (struct desc){ (uintptr_t)dev, 512, F_NEXT | F_WRITE, 2 };
    descs[2] = (struct desc){ (uintptr_t)&status_byte, 1, F_WRITE, 0 };
    post(0, 1);
    expect_needs_reset("DMA into the device's own registers");

    /* 2. A descriptor loop: 0 -> 1 -> 0 ... */
    descs[0] = (struct desc){ (uintptr_t)&req, sizeof req, F_NEXT, 1 };
    descs[1] = (struct desc){ (uintptr_t)data, sizeof data, F_NEXT | F_WRITE, 0 };
    post(0, 1);
    expect_needs_reset("descriptor loop");

    /* 3. A huge length (4 GiB - 1) that would run past RAM. */
    descs[0] = (struct desc){ (uintptr_t)&req, sizeof req, F_NEXT, 1 };
    descs[1] = (struct desc){ (uintptr_t)data, 0xffffffffu, F_NEXT | F_WRITE, 2 };
    descs[2] = (struct desc){ (uintptr_t)&status_byte, 1, F_WRITE, 0 };
    post(0, 1);
    expect_needs_reset("huge length");

    /* 4. A head index beyond the queue. */
    post(999, 1);
    expect_needs_reset("head index out of range");

    /* 5. The available index jumping more than a queue's worth ahead. */
    descs[0] = (struct desc){ (uintptr_t)&req, sizeof req, F_NEXT, 1 };
    descs[1] = (struct desc){ (uintptr_t)data, sizeof data, F_NEXT | F_WRITE, 2 };
    descs[2] = (struct desc){ (uintptr_t)&status_byte, 1, F_WRITE, 0 };
    post(0, QSIZE + 5);
    expect_needs_reset("avail idx jump");

    /* 6. A next index beyond the queue. */
    descs[0] = (struct desc){ (uintptr_t)&req, sizeof req, F_NEXT, 200 };
    post(0, 1);
    expect_needs_reset("next index out of range");

    /* 7. An indirect table whose length is not a multiple of 16. */
    indirect[0] = (struct desc){ (uintptr_t)&req, sizeof req, F_NEXT, 1 };
    indirect[1] = (struct desc){ (uintptr_t)&status_byte, 1, F_WRITE, 0 };
    descs[0] = (struct desc){ (uintptr_t)indirect, 24, F_INDIRECT, 0 };
    post(0, 1);
    expect_needs_reset("indirect table length");

    /* 8. A used ring outside RAM. */
    wr(R_STATUS, 0);
    wr(R_STATUS, S_ACK | S_DRIVER);
    wr(R_DRV_FEAT_SEL, 1);
    wr(R_DRV_FEAT, 1);
    wr(R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
    wr(R_QUEUE_SEL, 0);
    wr(R_QUEUE_NUM, QSIZE);
    wr(R_DESC_LO, (uint32_t)(uintptr_t)descs);
    wr(R_DESC_HI, 0);
    wr(R_AVAIL_LO, (uint32_t)(uintptr_t)&avail);
    wr(R_AVAIL_HI, 0);
    wr(R_USED_LO, 0x40000000u);
    wr(R_USED_HI, 0);
    wr(R_QUEUE_READY, 1);
    wr(R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
    descs[0] = (struct desc){ (uintptr_t)&req, sizeof req, F_NEXT, 1 };
    descs[1] = (struct desc){ (uintptr_t)data, sizeof data, F_NEXT | F_WRITE, 2 };
    descs[2] = (struct desc){ (uintptr_t)&status_byte, 1, F_WRITE, 0 };
    next_avail = 0;
    avail.idx = 0;
    post(0, 1);
    /* Either the device refuses the queue set-up or the request; both must say so. */
    expect_needs_reset("used ring outside RAM");

    return test_summary("virtio_bad");
}
