/* ftticks.S: a multiboot1 guest for the fault-tolerance tests. It prints
 * numbered lines on COM1 forever,
 *
 *	ftticks: tick N sum S
 *
 * one about every DELAY TSC cycles, and before each line writes N into a
 * 256 KiB area spread over 64 pages: word (N mod 64)*1024 + (N/64 mod 1024)
 * of the area. S is the 32-bit sum of the whole area after that write, so
 * a test can recompute it from N alone: a page that a checkpoint missed, or
 * a vCPU state restored from the wrong moment, shows as a wrong sum or a
 * gap in N after a failover. The counter lives in memory; the pacing reads
 * the TSC, and a TSC lower than at the previous line is reported as
 * "ftticks: TSC went backwards".
 * It also loads the debug registers a hypervisor must carry itself (no
 * VMCS or VMCB field holds DR0-DR3, the VMCS not DR6): breakpoint
 * addresses in DR0-DR3, none of them enabled (DR7 stays 400H), and B0 and
 * B2 in DR6. Before every line it checks them, and a value lost (across
 * a checkpoint, a failover) is reported as
 * "ftticks: debug registers lost" and loaded again.
 * No interrupts, no SSE: all its state is the general registers, the
 * segment, control and debug registers, and its memory.
 *
 * Multiboot 0.6.96 §3.1 (header with the a.out-kludge address fields);
 * COM1 output: com1.S. */

#define MB1_MAGIC  0x1BADB002
#define MB1_FLAGS  ((1 << 1) | (1 << 16))
#define COM1       0x3F8
#define AREA_WORDS (64 * 1024)
#define DELAY      40000000     /* TSC cycles between lines */
#define DR0_VALUE  0x00101000   /* breakpoint addresses, never enabled */
#define DR1_VALUE  0x00202008
#define DR2_VALUE  0x7FF03010
#define DR3_VALUE  0xC0404018
#define DR6_B      0x5          /* DR6 B0 and B2, as after a #DB */

	.code32
	.section .text
	.globl _start
	.align 4
mb_header:
	.long MB1_MAGIC
	.long MB1_FLAGS
	.long -(MB1_MAGIC + MB1_FLAGS)
	.long mb_header          /* header_addr */
	.long mb_header          /* load_addr */
	.long _load_end          /* load_end_addr */
	.long _bss_end           /* bss_end_addr */
	.long _start             /* entry_addr */

_start:
	cli
	movl $stack_top, %esp
	call com1_init
	movl $s_start, %esi
	call puts
	call dr_load
tick:
	call dr_check
	/* N = ++counter; area[(N%64)*1024 + (N/64)%1024] = N */
	movl counter, %eax
	incl %eax
	movl %eax, counter
	movl %eax, %ebx
	andl $63, %ebx
	shll $10, %ebx
	movl %eax, %ecx
	shrl $6, %ecx
	andl $1023, %ecx
	addl %ecx, %ebx
	movl %eax, area(,%ebx,4)
	/* S = sum of the area */
	xorl %edx, %edx
	xorl %ecx, %ecx
1:	addl area(,%ecx,4), %edx
	incl %ecx
	cmpl $AREA_WORDS, %ecx
	jb 1b
	movl %edx, sum
	/* the TSC must never go backwards, across a failover too */
	rdtsc
	cmpl last+4, %edx
	ja 3f
	jb 4f
	cmpl last, %eax
	jae 3f
4:	movl $s_back, %esi
	call puts
	rdtsc
3:	movl %eax, last
	movl %edx, last+4
	movl $s_tick, %esi
	call puts
	movl counter, %eax
	call putdec
	movl $s_sum, %esi
	call puts
	movl sum, %eax
	call putdec
	movl $s_nl, %esi
	call puts
	/* wait until DELAY cycles have passed since the line */
	rdtsc
	movl %eax, t0
	movl %edx, t0+4
2:	rdtsc
	subl t0, %eax
	sbbl t0+4, %edx
	jnz tick                 /* 2^32 cycles or more (or a jump) */
	cmpl $DELAY, %eax
	jb 2b
	jmp tick

/* dr_load loads DR0-DR3 and sets DR6's B0 and B2 (SDM Vol. 3B 18.2). */
dr_load:
	movl $DR0_VALUE, %eax
	movl %eax, %dr0
	movl $DR1_VALUE, %eax
	movl %eax, %dr1
	movl $DR2_VALUE, %eax
	movl %eax, %dr2
	movl $DR3_VALUE, %eax
	movl %eax, %dr3
	movl %dr6, %eax
	orl $DR6_B, %eax
	movl %eax, %dr6
	ret

/* dr_check reports and reloads debug registers that lost their values. */
dr_check:
	movl %dr0, %eax
	cmpl $DR0_VALUE, %eax
	jne 1f
	movl %dr1, %eax
	cmpl $DR1_VALUE, %eax
	jne 1f
	movl %dr2, %eax
	cmpl $DR2_VALUE, %eax
	jne 1f
	movl %dr3, %eax
	cmpl $DR3_VALUE, %eax
	jne 1f
	movl %dr6, %eax
	andl $0xF, %eax
	cmpl $DR6_B, %eax
	jne 1f
	ret
1:	movl $s_dr, %esi
	call puts
	jmp dr_load

#include "com1.S"

	.section .rodata
s_start: .asciz "ftticks: start\n"
s_tick:  .asciz "ftticks: tick "
s_sum:   .asciz " sum "
s_nl:    .asciz "\n"
s_back:  .asciz "ftticks: TSC went backwards\n"
s_dr:    .asciz "ftticks: debug registers lost\n"

	.section .bss
	.align 4096
area:    .skip AREA_WORDS * 4
counter: .skip 4
sum:     .skip 4
t0:      .skip 8
last:    .skip 8
	.align 16
stack:   .skip 4096
stack_top:
