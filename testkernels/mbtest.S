/* mbtest.S: a multiboot1 test kernel for `qemu -kernel` and for doppel's
 * loader. It prints on COM1, checks the multiboot magic, reads the CPU
 * count and the RAM size from QEMU's fw_cfg through the legacy I/O ports,
 * prints them with the multiboot mem_upper, and ends the run by writing
 * the exit code to the debug-exit device at port 0xF4 (QEMU then exits
 * with status code*2+1). The code is "exit=N" from the command line
 * (default 7).
 *
 * Multiboot 0.6.96 §3.1 (header with the a.out-kludge address fields, so
 * the flat binary loads at 1 MiB), §3.2 (EAX = 0x2BADB002, EBX = info),
 * §3.3 (info: flags, mem_upper at +8, cmdline at +16).
 * QEMU docs/specs/fw_cfg.rst: selector port 0x510 (16-bit write), data
 * port 0x511 (8-bit reads); items FW_CFG_SIGNATURE 0x00 ("QEMU"),
 * FW_CFG_RAM_SIZE 0x03 (u64 LE), FW_CFG_NB_CPUS 0x05 (u16 LE).
 * COM1 output: com1.S. */

#define MB1_MAGIC      0x1BADB002
#define MB1_FLAGS      ((1 << 1) | (1 << 16))
#define MB1_BOOT_MAGIC 0x2BADB002
#define COM1           0x3F8
#define FW_CFG_SEL     0x510
#define FW_CFG_DATA    0x511
#define DEBUG_EXIT     0xF4
#define DEFAULT_EXIT   7

	.code32
	.section .text
	.globl _start
	.align 4
mb_header:
	.long MB1_MAGIC
	.long MB1_FLAGS
	.long -(MB1_MAGIC + MB1_FLAGS)
	.long mb_header          /* header_addr */
	.long mb_header          /* load_addr: the file starts with the header */
	.long _load_end          /* load_end_addr */
	.long _bss_end           /* bss_end_addr */
	.long _start             /* entry_addr */

_start:
	cli
	movl $stack_top, %esp
	movl %eax, magic
	movl %ebx, info
	call com1_init
	movl $s_start, %esi
	call puts
	cmpl $MB1_BOOT_MAGIC, magic
	je 1f
	movl $s_badmagic, %esi
	call puts
	movl $3, %eax
	jmp exit
1:	movl $s_mbok, %esi
	call puts

	/* fw_cfg signature */
	xorl %eax, %eax
	call fwcfg_select
	call fwcfg_read32
	cmpl $0x554D4551, %eax   /* "QEMU" little-endian */
	je 2f
	movl $s_nofwcfg, %esi
	call puts
	movl $5, %eax
	jmp exit
2:	movl $s_cpus, %esi
	call puts
	movl $5, %eax            /* FW_CFG_NB_CPUS */
	call fwcfg_select
	call fwcfg_read8
	movl %eax, %ebx
	call fwcfg_read8
	shll $8, %eax
	orl %ebx, %eax
	call putdec
	call newline

	movl $s_ram, %esi
	call puts
	movl $3, %eax            /* FW_CFG_RAM_SIZE */
	call fwcfg_select
	call fwcfg_read32
	movl %eax, %ebx          /* low dword */
	call fwcfg_read32        /* high dword */
	shll $12, %eax           /* MiB = high<<12 | low>>20 */
	shrl $20, %ebx
	orl %ebx, %eax
	call putdec
	movl $s_mib, %esi
	call puts

	movl $s_memupper, %esi
	call puts
	movl info, %ebx
	movl 8(%ebx), %eax       /* mem_upper, KiB */
	call putdec
	movl $s_kib, %esi
	call puts

	call exit_code
	pushl %eax
	movl $s_exit, %esi
	call puts
	movl (%esp), %eax
	call putdec
	call newline
	popl %eax
exit:
	movw $DEBUG_EXIT, %dx
	outl %eax, %dx
	/* No debug-exit device: stop here. */
	movl $s_halt, %esi
	call puts
3:	hlt
	jmp 3b

/* exit_code returns in EAX the N of "exit=N" in the multiboot command
 * line, or DEFAULT_EXIT. */
exit_code:
	movl info, %ebx
	testl $(1 << 2), (%ebx)
	jz 9f
	movl 16(%ebx), %esi
1:	movb (%esi), %al
	testb %al, %al
	jz 9f
	cmpl $0x74697865, (%esi) /* "exit" */
	jne 2f
	cmpb $'=', 4(%esi)
	jne 2f
	addl $5, %esi
	xorl %eax, %eax
3:	movzbl (%esi), %ecx
	subl $'0', %ecx
	cmpl $9, %ecx
	ja 4f
	imull $10, %eax
	addl %ecx, %eax
	incl %esi
	jmp 3b
4:	ret
2:	incl %esi
	jmp 1b
9:	movl $DEFAULT_EXIT, %eax
	ret

/* fw_cfg: select item EAX; read 1 or 4 bytes (little-endian) into EAX. */
fwcfg_select:
	movw $FW_CFG_SEL, %dx
	outw %ax, %dx
	ret
fwcfg_read8:
	movw $FW_CFG_DATA, %dx
	xorl %eax, %eax
	inb %dx, %al
	ret
fwcfg_read32:
	pushl %ebx
	pushl %ecx
	xorl %ebx, %ebx
	movl $0, %ecx
1:	call fwcfg_read8
	shll %cl, %eax
	orl %eax, %ebx
	addl $8, %ecx
	cmpl $32, %ecx
	jb 1b
	movl %ebx, %eax
	popl %ecx
	popl %ebx
	ret

#include "com1.S"

newline:
	movl $s_nl, %esi
	jmp puts

	.section .rodata
s_start:    .asciz "testkernel: start\n"
s_mbok:     .asciz "testkernel: multiboot magic ok\n"
s_badmagic: .asciz "testkernel: bad multiboot magic\n"
s_nofwcfg:  .asciz "testkernel: no fw_cfg signature\n"
s_cpus:     .asciz "testkernel: cpus "
s_ram:      .asciz "testkernel: ram "
s_mib:      .asciz " MiB\n"
s_memupper: .asciz "testkernel: mem_upper "
s_kib:      .asciz " KiB\n"
s_exit:     .asciz "testkernel: exit "
s_halt:     .asciz "testkernel: no debug-exit device, halted\n"
s_nl:       .asciz "\n"

	.section .bss
	.align 16
magic:	.long 0
info:	.long 0
stack:	.space 4096
stack_top:
