/* cpu.c: per-CPU setup: GDT with a TSS whose IST stacks every IDT gate
 * uses (SDM 3A 7.7 "Task Management in 64-bit Mode", 6.14.5 "Interrupt
 * Stack Table"), the IDT (6.14.1), the SYSCALL MSRs (SDM 2B "SYSCALL",
 * 3A 5.8.8) and SSE state (3A 13.1: CR4.OSFXSR). CR4.OSXSAVE is set with
 * XCR0 = x87|SSE only (xsave_init), so the VMM can switch a guest's AVX
 * state with XSETBV/XSAVE while the Go runtime still sees no AVX and the
 * thread switch's FXSAVE image stays the whole host state. */
#include "layer.h"

_Static_assert(offsetof(struct cpu, self) == CPU_SELF, "CPU_SELF");
_Static_assert(offsetof(struct cpu, kstack_top) == CPU_KSTACK_TOP, "CPU_KSTACK_TOP");
_Static_assert(offsetof(struct cpu, scratch) == CPU_SCRATCH, "CPU_SCRATCH");
_Static_assert(sizeof(struct trapframe) == 22 * 8, "trapframe");
_Static_assert(offsetof(struct trapframe, vector) == 15 * 8, "trapframe vector");

struct cpu cpus[MAX_CPUS];
int ncpus = 1;
u32 cpu_features_ecx, cpu_features_edx;
extern u64 gdt[];
extern struct {
	u16 limit;
	u64 base;
} __attribute__((packed)) gdt_ptr;

struct gate {
	u16 off0, sel;
	u8 ist, type;
	u16 off1;
	u32 off2, zero;
};
static struct gate idt[256];
static struct {
	u16 limit;
	u64 base;
} __attribute__((packed)) idt_ptr = {sizeof idt - 1, (u64)idt};

/* IST assignment: 1 for everything, 2 for #DF, 3 for NMI, 4 for #MC, so
 * a fault while the layer is on IST 1 still lands on a clean stack. */
void idt_init(void) {
	for (int v = 0; v < 256; v++) {
		u64 h = (u64)vectors + 16 * v;
		int ist = v == 8 ? 2 : v == 2 ? 3 : v == 18 ? 4 : 1;
		idt[v] = (struct gate){(u16)h, SEL_CODE64, (u8)ist, 0x8E, (u16)(h >> 16), (u32)(h >> 32), 0};
	}
}

void idt_load(void) { __asm__ volatile("lidt %0" ::"m"(idt_ptr)); }

/* tss_install writes the CPU's 16-byte TSS descriptor (type 9 = available
 * 64-bit TSS, SDM 3A Figure 7-4) and loads TR. */
static void tss_install(struct cpu *c, int id) {
	memset(c->tss, 0, sizeof c->tss);
	u8 *t = (u8 *)c->tss;
	for (int i = 0; i < 4; i++) {
		u64 top = (u64)c->ist[i] + sizeof c->ist[i];
		memcpy(t + 36 + 8 * i, &top, 8); /* IST1..IST4 at 0x24.. */
	}
	*(u16 *)(t + 102) = 104; /* I/O map base beyond the limit: no bitmap */
	u64 base = (u64)c->tss, lim = 103;
	int slot = SEL_TSS0 / 8 + 2 * id;
	gdt[slot] = (lim & 0xffff) | ((base & 0xffffff) << 16) | (0x89ULL << 40) | ((base >> 24 & 0xff) << 56);
	gdt[slot + 1] = base >> 32;
	u16 sel = SEL_TSS0 + 16 * id;
	__asm__ volatile("ltr %0" ::"r"(sel));
}

/* fpu_init gives the FPU/SSE unit its power-on state: FCW 0x37F, MXCSR
 * 0x1F80 (all exceptions masked), as Linux hands a new process. */
void fpu_init(void) {
	u32 mxcsr = 0x1F80;
	__asm__ volatile("fninit; ldmxcsr %0" ::"m"(mxcsr));
}

#define CPUID1_ECX_XSAVE (1u << 26)
#define CR4_OSXSAVE (1ull << 18)
#define XCR0_X87 1
#define XCR0_SSE 2

/* xsave_init sets CR4.OSXSAVE (SDM 3A 2.5) and XCR0 = x87|SSE (1 13.3):
 * XGETBV then tells the Go runtime the OS saves no AVX state, so it uses
 * none, and XSETBV works for the VMM's guest-state switch. Without XSAVE
 * in CPUID nothing changes. */
static void xsave_init(void) {
	u32 r[4];
	cpuid(1, 0, r);
	if (!(r[2] & CPUID1_ECX_XSAVE))
		return;
	u64 cr4;
	__asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
	__asm__ volatile("mov %0, %%cr4" ::"r"(cr4 | CR4_OSXSAVE));
	__asm__ volatile("xsetbv" ::"a"(XCR0_X87 | XCR0_SSE), "d"(0), "c"(0));
}

void cpu_init(struct cpu *c, int id) {
	c->self = c;
	c->id = id;
	__asm__ volatile("lgdt %0" ::"m"(gdt_ptr));
	__asm__ volatile("mov %0, %%ds; mov %0, %%es; mov %0, %%ss" ::"r"(SEL_DATA));
	wrmsr(MSR_GS_BASE, (u64)c);
	tss_install(c, id);
	idt_load();
	wrmsr(MSR_EFER, rdmsr(MSR_EFER) | 1 | (1 << 11)); /* SCE, NXE */
	wrmsr(MSR_STAR, ((u64)SEL_CODE64 << 32));
	wrmsr(MSR_LSTAR, (u64)syscall_entry);
	wrmsr(MSR_FMASK, 0x200 | 0x100 | 0x400 | 0x40000); /* IF TF DF AC */
	xsave_init();
	fpu_init();
	u32 r[4];
	cpuid(0x80000001, 0, r);
	if (r[3] & (1 << 27)) /* RDTSCP: IA32_TSC_AUX = CPU number, as Linux */
		wrmsr(0xC0000103, (u64)id);
	cpuid(1, 0, r);
	cpu_features_ecx = r[2];
	cpu_features_edx = r[3];
}
