# doppel test guest: a flat 32-bit binary for the EPT dirty-tracking test.
#
# Start state (set up by doppel, see vmm/doc.go): 32-bit protected mode,
# paging off, flat CS/DS/ES/SS (base 0, limit 4 GiB), interrupts off,
# EIP = 0x100000 (this image), ESP = 0x100000.
#
# After the dirty rounds and the probe it may be told (doppel.vmexittest=1)
# to report CPUID, spin without exiting, and triple fault.
#
# It talks to the hypervisor only through I/O ports:
#   COM1 at 0x3F8 (a 16550: THR at +0, LSR at +5, bit 5 THR empty);
#   the doppel test port at 0xE00 (vmm/dirtytest/protocol.go has the
#   protocol and the Go model of the page choice below).
#
# Registers in the round loops: eax = x (xorshift32 state), ebx = scratch,
# ecx = draws left, edx = page (remainder of the division), esi = number of
# guest pages, edi = write address, ebp = reports made.

	.code32
	.set COM1_THR, 0x3F8
	.set COM1_LSR, 0x3FD
	.set LSR_THRE, 0x20
	.set TP_CMD,     0xE00
	.set TP_SEED,    0xE04
	.set TP_COUNT,   0xE08
	.set TP_MEMSIZE, 0xE0C
	.set TP_PAGE,    0xE10
	.set TP_DONE,    0xE14
	.set TP_FIXUP,   0xE18
	.set TP_PROBE,   0xE1C
	.set TP_PROBED,  0xE20
	.set TP_SPIN,    0xE28
	.set TP_SPUN,    0xE2C
	.set TP_CPUID,   0xE30
	.set TP_MARK,    0xE34
	.set CPUID_LOOPS, 1000		# timed CPUID exits
	.set CMD_ROUND, 1
	.set CMD_PROBE, 2
	.set CMD_CPUID, 3
	.set CMD_SPIN,  4
	.set CMD_TRIPLE_FAULT, 5
	.set CPUID_HV_LEAF, 0x40000000	# first hypervisor leaf
	.set SPIN_IF, 0x80000000	# in TP_SPIN: spin with interrupts on
	.set WINDOW_FIRST, 0xF0		# pages never written: stack and code
	.set WINDOW_END,   0x110
	.set SEED_ZERO, 0x9E3779B9	# replaces a zero seed
	.set PROBE_MARKER, 0x5A5A5A5A

	.text
	.globl _start
_start:
	cli
	cld
	movl	$0x100000, %esp
	movl	$banner, %esi
	call	puts

command:
	movw	$TP_CMD, %dx
	inl	%dx, %eax
	cmpl	$CMD_ROUND, %eax
	je	round
	cmpl	$CMD_PROBE, %eax
	je	probe
	cmpl	$CMD_CPUID, %eax
	je	report_cpuid
	cmpl	$CMD_SPIN, %eax
	je	spin
	cmpl	$CMD_TRIPLE_FAULT, %eax
	je	triple_fault
	movl	$bye, %esi
	call	puts
1:	hlt
	jmp	1b

# One round: write the pages, then report them by replaying the draws.
round:
	movw	$TP_SEED, %dx
	inl	%dx, %eax
	testl	%eax, %eax
	jnz	1f
	movl	$SEED_ZERO, %eax
1:	movl	%eax, seed
	movw	$TP_COUNT, %dx
	inl	%dx, %eax
	movl	%eax, count
	movw	$TP_MEMSIZE, %dx
	inl	%dx, %eax
	shrl	$12, %eax
	movl	%eax, %esi

	movl	seed, %eax
	movl	count, %ecx
	jecxz	written
write_loop:
	call	xorshift
	movl	%eax, %ebx
	xorl	%edx, %edx
	divl	%esi			# edx = x mod pages
	movl	%ebx, %eax
	cmpl	$WINDOW_FIRST, %edx
	jb	1f
	cmpl	$WINDOW_END, %edx
	jb	2f
1:	movl	%edx, %edi
	shll	$12, %edi		# page address
	shrl	$8, %ebx
	andl	$0xFFC, %ebx
	addl	%ebx, %edi		# + (x>>8 & 0xFFC)
	movl	%eax, (%edi)		# the write doppel must see
2:	decl	%ecx
	jnz	write_loop
written:

	movl	seed, %eax
	movl	count, %ecx
	xorl	%ebp, %ebp
	jecxz	reported
report_loop:
	call	xorshift
	movl	%eax, %ebx
	xorl	%edx, %edx
	divl	%esi
	cmpl	$WINDOW_FIRST, %edx
	jb	1f
	cmpl	$WINDOW_END, %edx
	jb	2f
1:	movl	%edx, %eax
	movw	$TP_PAGE, %dx
	outl	%eax, %dx
	incl	%ebp
2:	movl	%ebx, %eax
	decl	%ecx
	jnz	report_loop
reported:
	movl	%ebp, %eax
	movw	$TP_DONE, %dx
	outl	%eax, %dx
	jmp	command

# Isolation probe: write to each address doppel names. A write that faults
# comes back at probe_fixup; one that does not is confirmed with PROBED.
probe:
	movl	$probing, %esi
	call	puts
	movl	$probe_fixup, %eax
	movw	$TP_FIXUP, %dx
	outl	%eax, %dx
probe_next:
	movw	$TP_PROBE, %dx
	inl	%dx, %eax
	testl	%eax, %eax
	jz	command
	movl	%eax, %edi
	xorl	$PROBE_MARKER, %eax
	movl	%eax, (%edi)		# may be an EPT violation
	movw	$TP_PROBED, %dx
	outl	%eax, %dx
probe_fixup:
	jmp	probe_next

# CPUID as this guest sees it: leaf 1 ECX, then leaf 0x40000000 EAX, EBX,
# ECX, EDX, each written to the CPUID port (every CPUID exits to doppel).
report_cpuid:
	movl	$1, %eax
	xorl	%ecx, %ecx
	cpuid
	movl	%ecx, %eax
	movw	$TP_CPUID, %dx
	outl	%eax, %dx
	movl	$CPUID_HV_LEAF, %eax
	xorl	%ecx, %ecx
	cpuid
	pushl	%edx
	pushl	%ecx
	pushl	%ebx
	movw	$TP_CPUID, %dx
	outl	%eax, %dx		# EAX: highest hypervisor leaf
	popl	%eax
	outl	%eax, %dx		# EBX, ECX, EDX: the vendor signature
	popl	%eax
	outl	%eax, %dx
	popl	%eax
	outl	%eax, %dx
	# Time CPUID_LOOPS CPUID exits between two marks.
	movw	$TP_MARK, %dx
	outl	%eax, %dx
	movl	$CPUID_LOOPS, %esi
1:	xorl	%eax, %eax
	cpuid
	decl	%esi
	jnz	1b
	movw	$TP_MARK, %dx
	outl	%eax, %dx
	jmp	command

# Spin: a counted loop (two instructions an iteration) that never exits by
# itself; only the host's interrupts (or doppel's preemption timer) take the
# CPU away from it. With SPIN_IF in the count it spins with IF=1 like an OS
# with interrupts on: doppel exits on every external interrupt and injects
# none, so the guest never takes one (and has no IDT).
spin:
	movl	$spinning, %esi
	call	puts
	movw	$TP_SPIN, %dx
	inl	%dx, %eax
	movl	%eax, %ecx
	andl	$~SPIN_IF, %ecx		# iterations
	testl	$SPIN_IF, %eax
	jz	1f
	sti
1:	jecxz	3f
2:	decl	%ecx
	jnz	2b
3:	cli
	movw	$TP_SPUN, %dx
	outl	%eax, %dx
	jmp	command

# Triple fault on purpose: with an empty IDT, INT3 (#BP) cannot be
# delivered (#GP), nor can the #GP (#DF), nor the #DF: the CPU shuts down,
# which doppel sees as a triple-fault VM exit. Never returns.
triple_fault:
	movl	$faulting, %esi
	call	puts
	lidt	null_idt
	int3
1:	hlt
	jmp	1b

# xorshift32: eax = next(eax); clobbers ebx.
xorshift:
	movl	%eax, %ebx
	shll	$13, %ebx
	xorl	%ebx, %eax
	movl	%eax, %ebx
	shrl	$17, %ebx
	xorl	%ebx, %eax
	movl	%eax, %ebx
	shll	$5, %ebx
	xorl	%ebx, %eax
	ret

# puts: print the NUL-terminated string at esi on COM1.
puts:
	lodsb
	testb	%al, %al
	jz	2f
	movb	%al, %ah
	movw	$COM1_LSR, %dx
1:	inb	%dx, %al
	testb	$LSR_THRE, %al
	jz	1b
	movb	%ah, %al
	movw	$COM1_THR, %dx
	outb	%al, %dx
	jmp	puts
2:	ret

	.data
	.balign 4
seed:	.long 0
count:	.long 0
banner:	.asciz "doppel testguest: 32-bit flat, paging off, writing seeded pages\n"
probing: .asciz "testguest: isolation probe\n"
bye:	.asciz "testguest: done, halting\n"
spinning: .asciz "testguest: spinning\n"
faulting: .asciz "testguest: triple fault on purpose\n"
	.balign 8
null_idt: .word 0			# IDTR limit 0: no vector fits
	.long 0				# base 0
