/* riscv.h - CSR access, privilege-mode switching and trap hooks for bare-metal tests. */
#ifndef WASMVISOR_RISCV_H
#define WASMVISOR_RISCV_H

#include <stdint.h>

#define STR_(x) #x
#define STR(x) STR_(x)

#define csr_read(csr) ({ unsigned long __v; \
    __asm__ __volatile__("csrr %0, " STR(csr) : "=r"(__v) : : "memory"); __v; })
#define csr_write(csr, val) ({ unsigned long __v = (unsigned long)(val); \
    __asm__ __volatile__("csrw " STR(csr) ", %0" : : "r"(__v) : "memory"); })
#define csr_swap(csr, val) ({ unsigned long __v = (unsigned long)(val); \
    __asm__ __volatile__("csrrw %0, " STR(csr) ", %1" : "=r"(__v) : "r"(__v) : "memory"); __v; })
#define csr_set(csr, val) ({ unsigned long __v = (unsigned long)(val); \
    __asm__ __volatile__("csrrs %0, " STR(csr) ", %1" : "=r"(__v) : "r"(__v) : "memory"); __v; })
#define csr_clear(csr, val) ({ unsigned long __v = (unsigned long)(val); \
    __asm__ __volatile__("csrrc %0, " STR(csr) ", %1" : "=r"(__v) : "r"(__v) : "memory"); __v; })

/* Privilege levels */
#define PRV_U 0
#define PRV_S 1
#define PRV_M 3

/* mstatus / sstatus bits */
#define MSTATUS_SIE   (1ul << 1)
#define MSTATUS_MIE   (1ul << 3)
#define MSTATUS_SPIE  (1ul << 5)
#define MSTATUS_MPIE  (1ul << 7)
#define MSTATUS_SPP   (1ul << 8)
#define MSTATUS_MPP   (3ul << 11)
#define MSTATUS_FS    (3ul << 13)
#define MSTATUS_FS_OFF     (0ul << 13)
#define MSTATUS_FS_INITIAL (1ul << 13)
#define MSTATUS_FS_CLEAN   (2ul << 13)
#define MSTATUS_FS_DIRTY   (3ul << 13)
#define MSTATUS_MPRV  (1ul << 17)
#define MSTATUS_SUM   (1ul << 18)
#define MSTATUS_MXR   (1ul << 19)
#define MSTATUS_TVM   (1ul << 20)
#define MSTATUS_TW    (1ul << 21)
#define MSTATUS_TSR   (1ul << 22)
#define MSTATUS_UXL   (3ul << 32)
#define MSTATUS_SXL   (3ul << 34)
#define MSTATUS_SD    (1ul << 63)

/* Exception causes */
#define CAUSE_MISALIGNED_FETCH    0
#define CAUSE_FETCH_ACCESS        1
#define CAUSE_ILLEGAL_INSTRUCTION 2
#define CAUSE_BREAKPOINT          3
#define CAUSE_MISALIGNED_LOAD     4
#define CAUSE_LOAD_ACCESS         5
#define CAUSE_MISALIGNED_STORE    6
#define CAUSE_STORE_ACCESS        7
#define CAUSE_USER_ECALL          8
#define CAUSE_SUPERVISOR_ECALL    9
#define CAUSE_MACHINE_ECALL       11
#define CAUSE_FETCH_PAGE_FAULT    12
#define CAUSE_LOAD_PAGE_FAULT     13
#define CAUSE_STORE_PAGE_FAULT    15

/* Interrupts (cause = INTERRUPT_BIT | n; mip/mie bit n) */
#define INTERRUPT_BIT (1ul << 63)
#define IRQ_S_SOFT  1
#define IRQ_M_SOFT  3
#define IRQ_S_TIMER 5
#define IRQ_M_TIMER 7
#define IRQ_S_EXT   9
#define IRQ_M_EXT   11
#define MIP_SSIP (1ul << IRQ_S_SOFT)
#define MIP_MSIP (1ul << IRQ_M_SOFT)
#define MIP_STIP (1ul << IRQ_S_TIMER)
#define MIP_MTIP (1ul << IRQ_M_TIMER)
#define MIP_SEIP (1ul << IRQ_S_EXT)
#define MIP_MEIP (1ul << IRQ_M_EXT)

/* satp */
#define SATP_MODE_BARE 0ul
#define SATP_MODE_SV39 8ul
#define SATP_MODE_SV48 9ul
#define SATP_MODE_SHIFT 60

/* CLINT (10 MHz mtime) */
#define CLINT_BASE      0x2000000ul
#define CLINT_MSIP      ((volatile uint32_t *)(CLINT_BASE + 0x0))
#define CLINT_MTIMECMP  ((volatile uint64_t *)(CLINT_BASE + 0x4000))
#define CLINT_MTIME     ((volatile uint64_t *)(CLINT_BASE + 0xbff8))
#define CLINT_HZ        10000000ul

/*
 * Trap frame built by m_trap_entry / s_trap_entry (crt.S). Handlers may edit any
 * field: epc and status are written back to mepc/mstatus (sepc/sstatus) on return,
 * so change mstatus through `status`, not with csr_write.
 */
struct trap_frame {
    unsigned long x[32];      /* x[2] is the interrupted sp */
    unsigned long cause, epc, tval, status;
};

/* Hook signature: `smode` is 1 when called from the S-mode handler. Return nonzero
   if the trap was handled; otherwise the runtime reports it and exits. */
typedef int (*trap_hook_t)(struct trap_frame *f, int smode);
extern volatile trap_hook_t m_trap_hook;
extern volatile trap_hook_t s_trap_hook;

/* Generic exception catcher. */
struct caught_trap {
    unsigned long count;      /* number of exceptions caught since trap_catch_start() */
    unsigned long cause, epc, tval;
    unsigned long handler;    /* PRV_M or PRV_S: which handler took it */
    unsigned long prev;       /* privilege the trap came from (MPP / SPP) */
    unsigned long status;     /* mstatus / sstatus at trap time (as saved) */
};
extern volatile struct caught_trap caught;
/* One-shot: if nonzero, the next caught trap resumes here instead of after the
   faulting instruction. (Fetch faults without it resume at the caller: epc = ra.) */
extern volatile unsigned long trap_resume_pc;
/* If nonzero, the length of the faulting instruction (else decoded from memory). */
extern volatile unsigned long trap_insn_len;
int trap_catch_hook(struct trap_frame *f, int smode);
void trap_catch_start(void);    /* reset `caught`, install trap_catch_hook on M and S */
void trap_catch_stop(void);     /* remove hooks */

/* Runs fn(arg) in `mode` (PRV_U / PRV_S / PRV_M) and returns its result in M-mode.
   Returns with mstatus.MIE = 0. See crt.S for offset/usp. */
long run_mode_ex(long mode, long (*fn)(long), long arg, long offset, long usp);
static inline long run_mode(long mode, long (*fn)(long), long arg)
{
    return run_mode_ex(mode, fn, arg, 0, 0);
}
#define RUN_MODE_MAGIC 0x52554e4d

static inline uint64_t rdinstret(void) { return csr_read(minstret); }
static inline uint64_t rdmtime(void) { return *CLINT_MTIME; }

#endif
