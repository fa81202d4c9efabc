/* hostile - a guest that tries to keep the host's run() from returning, or to make each
 * instruction cost the host as much as it can: trap storms (a trap vector that itself traps,
 * in M and in S mode), interrupt storms, flush storms (sfence.vma, fence.i, satp), self-
 * modifying code, pathological page tables, address-space churn for shadow paging, and MMIO
 * storms. It never ends by itself: the harness (test/hostile-guest.test.ts) writes the attack's
 * number to `hostile_attack` before the first instruction, runs the VM for a while and checks
 * that every step() returned after a bounded amount of work and wall time. */
#include <stdint.h>
#include "htif.h"
#include "riscv.h"

/* Set by the harness before the guest starts (.data, so the start-up code does not clear it). */
volatile unsigned long hostile_attack = ~0ul;

#define PAGE 4096ul
#define UART_LSR ((volatile uint8_t *)0x10000005ul)
#define PLIC_CLAIM_M ((volatile uint32_t *)0x0c200004ul)
#define PTE_V 1ul
#define PTE_R 2ul
#define PTE_W 4ul
#define PTE_X 8ul
#define PTE_A 64ul
#define PTE_D 128ul
#define PTE_LEAF (PTE_V | PTE_R | PTE_W | PTE_X | PTE_A | PTE_D)

typedef void (*attack_fn)(void);

/* Leave M-mode for S-mode at `pc` with the given satp; never returns. */
static void __attribute__((noreturn)) enter_s(unsigned long pc, unsigned long satp) {
    csr_write(satp, satp);
    __asm__ __volatile__("sfence.vma" ::: "memory");
    csr_write(mepc, pc);
    csr_write(mstatus, (csr_read(mstatus) & ~MSTATUS_MPP) | (1ul << 11));
    __asm__ __volatile__("mret");
    __builtin_unreachable();
}

/* ---- trap storms: the trap vector itself traps, so no instruction ever retires ---- */

/* Trap vectors that trap. */
static void __attribute__((naked, aligned(4))) vector_illegal(void) {
    __asm__ __volatile__(".word 0");
}
static void __attribute__((naked, aligned(4))) vector_ecall(void) {
    __asm__ __volatile__("ecall");
}
/* Retires one instruction per trap before faulting on a hole in the physical map. */
static void __attribute__((naked, aligned(4))) vector_load(void) {
    __asm__ __volatile__("li t1, 0x40000000\n ld t2, 0(t1)");
}

static void trap_through(unsigned long vector) {
    csr_write(mtvec, vector);
    __asm__ __volatile__(".word 0"); /* the first trap */
}

static void trap_illegal(void) { trap_through((unsigned long)vector_illegal); }
static void trap_fetch(void) { trap_through(0); } /* nothing at 0: every fetch faults */
static void trap_ecall(void) { trap_through((unsigned long)vector_ecall); }
static void trap_load(void) { trap_through((unsigned long)vector_load); }

/* xv6's hang: every exception delegated to S-mode, stvec 0, and S-mode started nowhere. */
static void trap_smode(void) {
    csr_write(medeleg, 0xffff);
    csr_write(stvec, 0);
    enter_s(0, 0);
}

/* ---- interrupt storms: an interrupt that stays pending, with a handler that only returns ---- */

static void __attribute__((naked, aligned(4))) mret_handler(void) {
    __asm__ __volatile__("mret");
}

static void irq_timer(void) {
    csr_write(mtvec, (unsigned long)mret_handler);
    *CLINT_MTIMECMP = 0;
    csr_write(mie, MIP_MTIP);
    csr_set(mstatus, MSTATUS_MIE);
    for (;;) __asm__ __volatile__("nop");
}

static void irq_software(void) {
    csr_write(mtvec, (unsigned long)mret_handler);
    *CLINT_MSIP = 1;
    csr_write(mie, MIP_MSIP);
    csr_set(mstatus, MSTATUS_MIE);
    for (;;) __asm__ __volatile__("nop");
}

/* Writes that may unmask an interrupt end the core's slice at once. */
static void csr_storm(void) {
    for (;;) {
        csr_write(mie, 0);
        csr_set(mstatus, MSTATUS_MIE);
        csr_clear(mstatus, MSTATUS_MIE);
    }
}

/* ---- flush storms ---- */

static void sfence_storm(void) {
    for (;;) __asm__ __volatile__("sfence.vma" ::: "memory");
}

static void fence_i_storm(void) {
    for (;;) __asm__ __volatile__("fence.i" ::: "memory");
}

/* Page tables: an Sv39 root mapping the first GiB of RAM (code, data) with a gigapage. */
static uint64_t roots[64][512] __attribute__((aligned(4096)));

static void map_ram(uint64_t *root) {
    root[2] = ((0x80000000ul >> 12) << 10) | PTE_LEAF;
}

static unsigned long satp_of(uint64_t *root) {
    return (SATP_MODE_SV39 << SATP_MODE_SHIFT) | ((unsigned long)root >> 12);
}

static void __attribute__((noreturn)) satp_churn_s(void) {
    /* 64 address spaces, more than the shadow MMU caches, each written and used in turn. */
    for (unsigned long i = 0;; i = (i + 1) & 63) {
        csr_write(satp, satp_of(roots[i]));
        roots[i][3] = roots[i][3] + PAGE; /* a write to a live page table */
        (void)*(volatile uint64_t *)0x80000000ul;
    }
}

static void satp_storm(void) {
    for (int i = 0; i < 64; i++) map_ram(roots[i]);
    enter_s((unsigned long)satp_churn_s, satp_of(roots[0]));
}

/* ---- self-modifying code ---- */

/* A loop that rewrites its own page each time round. */
static void smc_same_page(void) {
    __asm__ __volatile__(
        ".option push\n.option norvc\n"
        "j 1f\n .balign 4096\n"
        "1: la t0, 2f\n lw t1, 0(t0)\n sw t1, 0(t0)\n"
        "2: nop\n j 1b\n"
        ".option pop\n" ::: "t0", "t1", "memory");
}

/* 64 pages of code, each rewritten and then run: the decoded-code cache never keeps one. */
static uint32_t code_pages[64][1024] __attribute__((aligned(4096)));

static void smc_many_pages(void) {
    for (;;) {
        for (int i = 0; i < 64; i++) {
            code_pages[i][i] = 0x00008067; /* ret */
            ((void (*)(void))&code_pages[i][i])();
        }
    }
}

/* ---- pathological page tables ---- */

/* A root whose every entry points back at itself (an infinite tree), plus the RAM gigapage:
 * S-mode walks addresses through the loop, each a TLB miss that goes all the way down. */
static uint64_t loop_root[512] __attribute__((aligned(4096)));

static void __attribute__((noreturn, naked)) pt_walk_s(void) {
    /* Addresses 2 MiB apart through the loop: each walk ends on a table entry that is not a
     * leaf, a page fault the S-mode handler skips (the load is 4 bytes: no compressed code). */
    __asm__ __volatile__(
        ".option push\n.option norvc\n"
        "li t0, 0\n li t1, 0x200000\n"
        "1: ld t2, 0(t0)\n add t0, t0, t1\n j 1b\n"
        ".option pop\n");
}

static void __attribute__((naked, aligned(4))) skip_handler(void) {
    __asm__ __volatile__(
        "csrrw t6, sscratch, t6\n"
        "csrr t6, sepc\n addi t6, t6, 4\n csrw sepc, t6\n"
        "csrrw t6, sscratch, t6\n sret\n");
}

static void page_table_loop(void) {
    for (int i = 0; i < 512; i++) loop_root[i] = (((unsigned long)loop_root >> 12) << 10) | PTE_V;
    map_ram(loop_root);
    csr_write(medeleg, 0xffff);
    csr_write(stvec, (unsigned long)skip_handler);
    enter_s((unsigned long)pt_walk_s, satp_of(loop_root));
}

/* ---- MMIO storms: every instruction an exit to a host device ---- */

static void mmio_storm(void) {
    for (;;) (void)*UART_LSR;
}

static void plic_storm(void) {
    for (;;) (void)*PLIC_CLAIM_M;
}

/* ---- no attack: ordinary code, what the others are measured against ---- */

static void ordinary(void) {
    volatile unsigned long sum = 0;
    for (unsigned long i = 0;; i++) sum += i * i;
}

static const struct { const char *name; attack_fn fn; } attacks[] = {
    {"trap-illegal", trap_illegal},
    {"trap-fetch", trap_fetch},
    {"trap-ecall", trap_ecall},
    {"trap-load", trap_load},
    {"trap-smode", trap_smode},
    {"irq-timer", irq_timer},
    {"irq-software", irq_software},
    {"csr-storm", csr_storm},
    {"sfence-storm", sfence_storm},
    {"fence-i-storm", fence_i_storm},
    {"satp-storm", satp_storm},
    {"smc-same-page", smc_same_page},
    {"smc-many-pages", smc_many_pages},
    {"page-table-loop", page_table_loop},
    {"mmio-storm", mmio_storm},
    {"plic-storm", plic_storm},
    {"ordinary", ordinary},
};
#define NATTACKS (sizeof attacks / sizeof attacks[0])

int main(void) {
    unsigned long n = hostile_attack;
    if (n >= NATTACKS) {
        printf("hostile: attacks 0-%d:", (int)NATTACKS - 1);
        for (unsigned long i = 0; i < NATTACKS; i++) printf(" %s", attacks[i].name);
        printf("\n");
        return 1;
    }
    printf("hostile: %s\n", attacks[n].name);
    attacks[n].fn();
    for (;;) {}
}
