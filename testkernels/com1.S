/* com1.S: COM1 output for the multiboot test kernels, included by each
 * (they are single-file flat images). Needs COM1 defined as the port base.
 * PC16550D datasheet: COM1 at 0x3F8, LSR at +5, bit 5 THRE. */

/* com1_init: 115200 8N1, FIFOs on, no interrupts. Clobbers AL, DX. */
com1_init:
	movw $COM1+1, %dx
	xorb %al, %al
	outb %al, %dx            /* IER: no interrupts */
	movw $COM1+3, %dx
	movb $0x80, %al
	outb %al, %dx            /* LCR: DLAB */
	movw $COM1, %dx
	movb $1, %al
	outb %al, %dx            /* DLL: divisor 1 */
	movw $COM1+1, %dx
	xorb %al, %al
	outb %al, %dx            /* DLM */
	movw $COM1+3, %dx
	movb $0x03, %al
	outb %al, %dx            /* LCR: 8N1 */
	movw $COM1+2, %dx
	movb $0x07, %al
	outb %al, %dx            /* FCR: enable and clear FIFOs */
	ret

/* putc writes AL to COM1 once THR is empty. Preserves all registers. */
putc:
	pushl %eax
	pushl %edx
	movw $COM1+5, %dx
1:	inb %dx, %al
	testb $0x20, %al
	jz 1b
	movl 4(%esp), %eax
	movw $COM1, %dx
	outb %al, %dx
	popl %edx
	popl %eax
	ret

/* puts writes the NUL-terminated string at ESI; "\n" becomes CR LF.
 * Advances ESI past the string. */
puts:
	pushl %eax
1:	movb (%esi), %al
	testb %al, %al
	jz 2f
	cmpb $'\n', %al
	jne 3f
	movb $'\r', %al
	call putc
	movb $'\n', %al
3:	call putc
	incl %esi
	jmp 1b
2:	popl %eax
	ret

/* putdec writes EAX in decimal (unsigned). Clobbers EAX. */
putdec:
	pushl %ebx
	pushl %ecx
	pushl %edx
	movl $10, %ebx
	xorl %ecx, %ecx
1:	xorl %edx, %edx
	divl %ebx
	pushl %edx
	incl %ecx
	testl %eax, %eax
	jnz 1b
2:	popl %eax
	addb $'0', %al
	call putc
	loop 2b
	popl %edx
	popl %ecx
	popl %ebx
	ret
