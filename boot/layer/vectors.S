/* vectors.S: interrupt/exception stubs, the SYSCALL entry, trap return and
 * the kernel-stack switch.
 *
 * Go runs in ring 0, so neither interrupts nor SYSCALL switch stacks by
 * themselves (SDM 3A 6.14.2: no stack switch without a privilege change,
 * unless the gate names an IST). Every IDT gate therefore uses an IST stack
 * (cpu.c); the common stub then moves the hardware frame to the current
 * thread's kernel stack, so a thread can be switched out in the middle of
 * a trap and the per-CPU IST stack is free again at once. If the trap
 * interrupted the layer itself (the RSP is already on the current kernel
 * stack), the frame continues below the interrupted RSP instead. */
#include "asmdefs.h"

	.text
	.code64

.macro PUSH_GPRS
	pushq %rax
	pushq %rbx
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %rbp
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
.endm

.macro POP_GPRS
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rbp
	popq %rdi
	popq %rsi
	popq %rdx
	popq %rcx
	popq %rbx
	popq %rax
.endm

	/* 256 stubs of 16 bytes each: vector n starts at vectors + 16*n.
	 * Vectors 8, 10-14, 17, 21, 29, 30 push an error code (SDM 3A
	 * Table 6-1); the others push a zero so the frame is uniform.
	 * The NMI (vector 2) only returns: doppel sends NMIs only to kick a
	 * vCPU out of the guest (sys_kick), and one that lands in the host
	 * has nothing left to do. It may arrive anywhere, even with IF=0
	 * inside intr_common or between a lock's exchange and its owner
	 * mark, so it touches no stack but its own IST and takes no lock.
	 * The IRETQ also ends the NMI blocking (SDM 3A 6.7.1). */
	.align 16
	.globl vectors
vectors:
	.set vec, 0
	.rept 256
	.align 16
	.if vec == 2
	iretq
	.else
	.if vec == 8 || (vec >= 10 && vec <= 14) || vec == 17 || vec == 21 || vec == 29 || vec == 30
	.else
	pushq $0
	.endif
	pushq $vec
	jmp intr_common
	.endif
	.set vec, vec + 1
	.endr

	/* On the IST stack after three pushes: 0 rcx, 8 rbx, 16 rax,
	 * 24 vector, 32 error, 40 rip, 48 cs, 56 rflags, 64 rsp, 72 ss. */
intr_common:
	pushq %rax
	pushq %rbx
	pushq %rcx
	movq 64(%rsp), %rax              /* interrupted RSP */
	movq %gs:CPU_KSTACK_TOP, %rbx
	leaq -KSTACK_SIZE(%rbx), %rcx
	cmpq %rcx, %rax
	jb 1f
	cmpq %rbx, %rax
	jae 1f
	movq %rax, %rbx                  /* nested: continue below it */
	andq $-16, %rbx
1:	subq $80, %rbx                   /* copy the 10 words */
	.irp off, 0, 8, 16, 24, 32, 40, 48, 56, 64, 72
	movq \off(%rsp), %rax
	movq %rax, \off(%rbx)
	.endr
	movq %rbx, %rsp
	popq %rcx
	popq %rbx
	popq %rax
	PUSH_GPRS
	movq %rsp, %rdi
	call trap_handler
	jmp trap_return

	/* SYSCALL (SDM 2B "SYSCALL"): RCX = return RIP, R11 = RFLAGS, RFLAGS
	 * masked by IA32_FMASK (IF cleared), CS/SS from IA32_STAR; RSP is
	 * unchanged, so switch to the thread's kernel stack and build the
	 * same frame an interrupt would. */
	.globl syscall_entry
syscall_entry:
	movq %rsp, %gs:CPU_SCRATCH
	movq %gs:CPU_KSTACK_TOP, %rsp
	pushq $SEL_DATA
	pushq %gs:CPU_SCRATCH
	pushq %r11
	pushq $SEL_CODE64
	pushq %rcx
	pushq $0
	pushq $VEC_SYSCALL
	PUSH_GPRS
	movq %rsp, %rdi
	call syscall_handler
	.globl trap_return
trap_return:
	POP_GPRS
	addq $16, %rsp                   /* vector, error */
	iretq                            /* ring 0 to ring 0: SYSRET cannot */

	/* A new thread starts here (its context's return address) with the
	 * trap frame right above: finish the kernel side, then return. */
	.globl thread_entry
thread_entry:
	movq %rsp, %rdi
	call return_to_go
	jmp trap_return

	/* void syscall_abort(struct trapframe *top): drop everything on the
	 * kernel stack above the syscall's own frame and return from it
	 * (used for -EFAULT when the layer faults on a Go pointer). */
	.globl syscall_abort
syscall_abort:
	movq %rdi, %rsp
	movq %rsp, %rdi
	call return_to_go
	jmp trap_return

	/* void swtch(struct context **old, struct context *new): save the
	 * callee-saved registers on this stack, store the stack pointer in
	 * *old, continue on new's stack. */
	.globl swtch
swtch:
	pushq %rbx
	pushq %rbp
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %rsp, (%rdi)
	movq %rsi, %rsp
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbp
	popq %rbx
	ret
