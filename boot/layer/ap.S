/* ap.S: application-processor trampoline, copied to AP_TRAMPOLINE (0x8000)
 * and started by INIT-SIPI-SIPI with vector 0x08 (SDM 3A 8.4.4.1 / 10.6.1:
 * the AP starts in real mode at CS:IP = 0x0800:0000). It goes real ->
 * protected -> long mode with the kernel's page tables and calls ap_main.
 * All addresses inside are relative to the copy at 0x8000. */
#include "asmdefs.h"

#define T(x) ((x) - ap_tramp_start + 0x8000)

	.text
	.code16
	.globl ap_tramp_start, ap_tramp_end
	.globl ap_gdtptr, ap_cr3, ap_stack, ap_cpu
ap_tramp_start:
	cli
	xorw %ax, %ax
	movw %ax, %ds
	lgdtl T(ap_gdtptr)
	movl %cr0, %eax
	orl $1, %eax                      /* CR0.PE */
	movl %eax, %cr0
	ljmpl $SEL_CODE32, $T(ap32)

	.code32
ap32:
	movw $SEL_DATA, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movl %cr4, %eax
	orl $((1 << 5) | (1 << 9) | (1 << 10)), %eax   /* PAE OSFXSR OSXMMEXCPT */
	movl %eax, %cr4
	movl T(ap_cr3), %eax
	movl %eax, %cr3
	movl $0xC0000080, %ecx            /* IA32_EFER: SCE LME NXE */
	rdmsr
	orl $((1 << 0) | (1 << 8) | (1 << 11)), %eax
	wrmsr
	movl %cr0, %eax
	/* EM off; CD and NW off: INIT leaves them set (SDM 3A Table 10-1),
	 * and an AP that kept them would run with its caches disabled. */
	andl $~((1 << 30) | (1 << 29) | (1 << 2)), %eax
	orl $((1 << 31) | (1 << 16) | (1 << 5) | (1 << 1) | 1), %eax
	movl %eax, %cr0
	ljmpl $SEL_CODE64, $T(ap64)

	.code64
ap64:
	movw $SEL_DATA, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movq T(ap_stack), %rsp
	movq T(ap_cpu), %rdi
	movabsq $ap_main, %rax
	call *%rax
1:	cli
	hlt
	jmp 1b

	.align 8
ap_gdtptr: .word 0
	.long 0
	.align 8
ap_cr3: .quad 0
ap_stack: .quad 0
ap_cpu: .quad 0
ap_tramp_end:
