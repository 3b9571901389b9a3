/* asmdefs.h: numbers shared by the assembly and the C of the boot layer.
 * The C side checks the struct offsets with _Static_assert (cpu.c). */
#ifndef ASMDEFS_H
#define ASMDEFS_H

#define KSTACK_SIZE 16384 /* per-thread kernel stack */

/* struct cpu offsets (GS base points at the CPU's struct cpu) */
#define CPU_SELF 0
#define CPU_KSTACK_TOP 8
#define CPU_SCRATCH 16

/* GDT selectors (gdt in entry.S) */
#define SEL_CODE64 0x08
#define SEL_DATA 0x10
#define SEL_CODE32 0x18
#define SEL_TSS0 0x20 /* one 16-byte TSS descriptor per CPU */

/* vectors */
#define VEC_TIMER 0x20
#define VEC_IRQ0 0x30  /* I/O APIC GSI n -> VEC_IRQ0 + n */
#define NGSI 48
#define NMSI 16        /* /dev/msi/<k> -> VEC_IRQ0 + NGSI + k (vectors 0x60-0x6F) */
#define VEC_PIC 0xE0   /* 8259s remapped here, then masked */
#define VEC_RESCHED 0xF0
#define VEC_TLB 0xF1
#define VEC_HALT 0xF2
#define VEC_SPURIOUS 0xFF
#define VEC_SYSCALL 0x100 /* pseudo-vector for SYSCALL frames */

/* Multiboot magic values (Multiboot 0.6.96 sec. 3.1.1, Multiboot2 sec. 3.1.1) */
#define MB1_HEADER_MAGIC 0x1BADB002
#define MB1_BOOT_MAGIC 0x2BADB002
#define MB2_HEADER_MAGIC 0xE85250D6
#define MB2_BOOT_MAGIC 0x36D76289

#endif
