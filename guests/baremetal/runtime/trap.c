/* trap.c - C side of the trap handlers: run_mode returns, hooks, reporting. */
#include "riscv.h"
#include "htif.h"

extern char run_mode_resume[];
extern char __strap_stack_top[];

volatile trap_hook_t m_trap_hook;
volatile trap_hook_t s_trap_hook;
volatile struct caught_trap caught;
volatile unsigned long trap_resume_pc;
volatile unsigned long trap_insn_len;

static const char *mode_name(unsigned long m)
{
    return m == PRV_M ? "M" : m == PRV_S ? "S" : m == PRV_U ? "U" : "?";
}

void m_trap_dispatch(struct trap_frame *f)
{
    if ((f->cause == CAUSE_USER_ECALL || f->cause == CAUSE_SUPERVISOR_ECALL) &&
        f->x[17] == RUN_MODE_MAGIC) {
        /* End of run_mode_ex: back to M-mode, abandoning any S-mode trap frames. */
        f->epc = (unsigned long)run_mode_resume;
        f->status = (f->status & ~(MSTATUS_MPP | MSTATUS_MPIE)) | MSTATUS_MPP;
        csr_write(sscratch, (unsigned long)__strap_stack_top);
        return;
    }
    if (m_trap_hook && m_trap_hook(f, 0))
        return;
    printf("\n*** unexpected trap (M-mode handler): mcause=0x%lx mepc=0x%lx mtval=0x%lx"
           " from %s-mode\n", f->cause, f->epc, f->tval, mode_name((f->status >> 11) & 3));
    htif_exit(254);
}

void s_trap_dispatch(struct trap_frame *f)
{
    if (f->cause == CAUSE_USER_ECALL && f->x[17] == RUN_MODE_MAGIC) {
        /* U-mode ecalls are delegated: forward the run_mode_ex return to M-mode. */
        register unsigned long a0 __asm__("a0") = f->x[10];
        register unsigned long a7 __asm__("a7") = RUN_MODE_MAGIC;
        __asm__ __volatile__("ecall" : : "r"(a0), "r"(a7) : "memory");
        __builtin_unreachable();
    }
    if (s_trap_hook && s_trap_hook(f, 1))
        return;
    printf("\n*** unexpected trap (S-mode handler): scause=0x%lx sepc=0x%lx stval=0x%lx"
           " from %s-mode\n", f->cause, f->epc, f->tval, mode_name((f->status >> 8) & 1));
    htif_exit(253);
}

static unsigned long insn_len(unsigned long epc)
{
    if (trap_insn_len)
        return trap_insn_len;
    return ((*(volatile uint16_t *)epc) & 3) == 3 ? 4 : 2;
}

int trap_catch_hook(struct trap_frame *f, int smode)
{
    if ((long)f->cause < 0)
        return 0;     /* interrupts are not ours */
    caught.count++;
    caught.cause = f->cause;
    caught.epc = f->epc;
    caught.tval = f->tval;
    caught.handler = smode ? PRV_S : PRV_M;
    caught.prev = smode ? (f->status >> 8) & 1 : (f->status >> 11) & 3;
    caught.status = f->status;
    if (trap_resume_pc) {
        f->epc = trap_resume_pc;
        trap_resume_pc = 0;
    } else if (f->cause == CAUSE_FETCH_PAGE_FAULT || f->cause == CAUSE_FETCH_ACCESS ||
               f->cause == CAUSE_MISALIGNED_FETCH) {
        f->epc = f->x[1];   /* nothing to skip: return to the caller (ra) */
    } else {
        f->epc += insn_len(f->epc);
    }
    return 1;
}

void trap_catch_start(void)
{
    caught.count = 0;
    caught.cause = caught.epc = caught.tval = ~0ul;
    caught.handler = caught.prev = caught.status = ~0ul;
    trap_resume_pc = 0;
    m_trap_hook = trap_catch_hook;
    s_trap_hook = trap_catch_hook;
}

void trap_catch_stop(void)
{
    m_trap_hook = 0;
    s_trap_hook = 0;
}
