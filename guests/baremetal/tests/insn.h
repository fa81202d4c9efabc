/* insn.h - inline-assembly wrappers that execute exactly one instruction. */
#ifndef WASMVISOR_INSN_H
#define WASMVISOR_INSN_H

/* All wrappers assemble with .option norvc so the 32-bit encodings are tested. */
#define NORVC(x) ".option push\n\t.option norvc\n\t" x "\n\t.option pop"

/* rd = op rs1, rs2 */
#define RR(op, a, b) ({ unsigned long __r; \
    __asm__ __volatile__(NORVC(op " %0, %1, %2") : "=r"(__r) : "r"((unsigned long)(a)), "r"((unsigned long)(b))); __r; })
/* rd = op rs1, imm */
#define RI(op, a, imm) ({ unsigned long __r; \
    __asm__ __volatile__(NORVC(op " %0, %1, " #imm) : "=r"(__r) : "r"((unsigned long)(a))); __r; })
/* rd = op rs1 */
#define R1(op, a) ({ unsigned long __r; \
    __asm__ __volatile__(NORVC(op " %0, %1") : "=r"(__r) : "r"((unsigned long)(a))); __r; })
/* rd = op imm (lui/auipc style) */
#define U0(op, imm) ({ unsigned long __r; __asm__ __volatile__(NORVC(op " %0, " #imm) : "=r"(__r)); __r; })
/* 1 if the branch `op rs1, rs2` is taken, else 0 */
#define BR(op, a, b) ({ unsigned long __r; \
    __asm__ __volatile__(NORVC(op " %1, %2, 1f\n\tli %0, 0\n\tj 2f\n1:\tli %0, 1\n2:") \
                         : "=&r"(__r) : "r"((unsigned long)(a)), "r"((unsigned long)(b))); __r; })
/* rd = load op offset(base) */
#define LD(op, base, off) ({ unsigned long __r; \
    __asm__ __volatile__(NORVC(op " %0, " #off "(%1)") : "=r"(__r) : "r"(base) : "memory"); __r; })
/* store op value, offset(base) */
#define ST(op, base, off, v) __asm__ __volatile__(NORVC(op " %0, " #off "(%1)") : : "r"((unsigned long)(v)), "r"(base) : "memory")

#endif
