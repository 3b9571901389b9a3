/* entry.S: Multiboot 1 and 2 headers, the 32-bit entry and the switch to
 * long mode (Intel SDM Vol. 3A 9.8.5 "Initializing IA-32e Mode").
 * The image is a flat binary loaded at 1 MiB: QEMU -kernel reads the
 * multiboot1 a.out-kludge address fields (flags bit 16), GRUB's multiboot2
 * command reads the address and entry-address tags. */
#include "asmdefs.h"

#define CR0_PE (1 << 0)
#define CR0_MP (1 << 1)
#define CR0_NE (1 << 5)
#define CR0_WP (1 << 16)
#define CR0_PG (1 << 31)
#define CR4_PAE (1 << 5)
#define CR4_OSFXSR (1 << 9)
#define CR4_OSXMMEXCPT (1 << 10)
#define EFER_SCE (1 << 0)
#define EFER_LME (1 << 8)
#define EFER_NXE (1 << 11)

	.section .multiboot, "a"
	.code32
	/* Multiboot 1 header: magic, flags, checksum, then the a.out kludge
	 * fields header_addr, load_addr, load_end_addr, bss_end_addr,
	 * entry_addr (Multiboot 0.6.96 sec. 3.1.1-3.1.3). Flags: bit 1 = memory
	 * map wanted, bit 16 = address fields valid. */
	.align 4
mb1_header:
	.long MB1_HEADER_MAGIC
	.long (1 << 1) | (1 << 16)
	.long -(MB1_HEADER_MAGIC + ((1 << 1) | (1 << 16)))
	.long mb1_header
	.long _layer_start
	.long _load_end
	.long _end
	.long _start32

	/* Multiboot 2 header (Multiboot2 sec. 3.1): architecture 0 = i386,
	 * tags: information request (memory map 6, cmdline 1, modules 3,
	 * ACPI old 14 / new 15), address (2), entry address (3), end (0). */
	.align 8
mb2_header:
	.long MB2_HEADER_MAGIC
	.long 0
	.long mb2_end - mb2_header
	.long -(MB2_HEADER_MAGIC + (mb2_end - mb2_header))
	.align 8
	.word 2, 0
	.long 24
	.long mb2_header
	.long _layer_start
	.long _load_end
	.long _end
	.align 8
	.word 3, 0
	.long 12
	.long _start32
	.align 8
	.word 0, 0
	.long 8
mb2_end:

	.text
	.code32
	.globl _start32
_start32:
	cli
	cld
	movl %eax, mb_magic
	movl %ebx, mb_info
	movl $(boot_stack + KSTACK_SIZE), %esp

	/* Temporary page tables: identity map of the low 4 GiB with 2 MiB
	 * pages (PS=1, SDM 3A Table 4-17), enough to parse the multiboot info
	 * and copy the Go image. paging.c builds the real tables. */
	movl $boot_pdpt, %eax
	orl $3, %eax
	movl %eax, boot_pml4
	movl %eax, boot_pml4 + 256 * 8   /* same 4 GiB at DIRECT_MAP */
	xorl %ecx, %ecx
1:	movl %ecx, %eax
	shll $12, %eax
	addl $boot_pd, %eax
	orl $3, %eax
	movl %eax, boot_pdpt(,%ecx,8)
	incl %ecx
	cmpl $4, %ecx
	jne 1b
	xorl %ecx, %ecx          /* 2048 PDEs: entry i maps i*2 MiB */
2:	movl %ecx, %eax
	shll $21, %eax
	orl $0x83, %eax          /* P | W | PS */
	movl %eax, boot_pd(,%ecx,8)
	movl %ecx, %eax
	shrl $11, %eax           /* high dword: bits 32+ of i*2 MiB */
	movl %eax, boot_pd+4(,%ecx,8)
	incl %ecx
	cmpl $2048, %ecx
	jne 2b

	movl %cr4, %eax
	orl $(CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT), %eax
	movl %eax, %cr4
	movl $boot_pml4, %eax
	movl %eax, %cr3
	movl $0xC0000080, %ecx   /* IA32_EFER */
	rdmsr
	orl $(EFER_SCE | EFER_LME | EFER_NXE), %eax
	wrmsr
	movl %cr0, %eax
	/* EM=0: FPU/SSE instructions execute; CD=NW=0: caches on, whatever
	 * the loader left (multiboot promises only PE and PG). */
	andl $~((1 << 30) | (1 << 29) | (1 << 2)), %eax
	orl $(CR0_PG | CR0_PE | CR0_MP | CR0_NE | CR0_WP), %eax
	movl %eax, %cr0
	lgdt gdt_ptr
	ljmp $SEL_CODE64, $long_entry

	.code64
long_entry:
	movw $SEL_DATA, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	xorw %ax, %ax
	movw %ax, %fs
	movw %ax, %gs
	movq $(boot_stack + KSTACK_SIZE), %rsp
	movl mb_magic, %edi
	movl mb_info, %esi
	call boot_main
3:	cli
	hlt
	jmp 3b

	.data
	.align 16
	.globl gdt
	/* GDT (SDM 3A 3.4.5): null, 64-bit code, data, 32-bit code (for the
	 * AP trampoline), then one 16-byte TSS descriptor per CPU (filled in
	 * by cpu.c). */
gdt:
	.quad 0
	.quad 0x00AF9A000000FFFF
	.quad 0x00CF92000000FFFF
	.quad 0x00CF9A000000FFFF
	.fill 2 * 16, 8, 0
gdt_end:
	.globl gdt_ptr
gdt_ptr:
	.word gdt_end - gdt - 1
	.quad gdt
	.globl mb_magic, mb_info
mb_magic: .long 0
mb_info: .long 0

	/* The Go kernel ELF, copied into place by elf.c. */
	.section .goelf, "a"
	.align 4096
	.globl goelf_start, goelf_end
goelf_start:
	.incbin GOELF
goelf_end:

	.bss
	.align 4096
boot_pml4: .skip 4096
boot_pdpt: .skip 4096
boot_pd: .skip 4 * 4096
	.globl boot_stack
	.align 16
boot_stack: .skip KSTACK_SIZE
