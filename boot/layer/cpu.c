/* cpu.c: per-CPU setup: GDT with a TSS whose IST stacks every IDT gate
 * uses (SDM 3A 7.7 "Task Management in 64-bit Mode", 6.14.5 "Interrupt
 * Stack Table"), the IDT (6.14.1), the SYSCALL MSRs (SDM 2B "SYSCALL",
 * 3A 5.8.8) and SSE state (3A 13.1: CR4.OSFXSR). With XSAVE, CR4.OSXSAVE
 * is set and XCR0 enables x87, SSE, AVX and, where present, AVX-512
 * (xsave_init), so the Go runtime's own feature detection finds AVX2 and
 * AVX-512; each thread switch and signal frame keeps that state. */
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

/* Extended processor state (SDM Vol. 1 ch. 13 "Managing State Using the
 * XSAVE Feature Set"). xsave_mask is XCR0 on every CPU and the requested-
 * feature bitmap of every XSAVE and XRSTOR here; xsave_size is the
 * standard-format area it needs (CPUID 0xD.0 EBX under that XCR0). */
u64 xsave_mask;
u32 xsave_size = 512;
static u8 xsave_reset_area[XSAVE_AREA_MAX] __attribute__((aligned(64)));

#define CPUID1_ECX_XSAVE (1u << 26)
#define CR4_OSXSAVE (1ull << 18)
#define XCR0_X87 1
#define XCR0_SSE 2
#define XCR0_AVX 4
#define XCR0_AVX512 0xE0 /* opmask, ZMM_Hi256, Hi16_ZMM: set together */
#define FX_MXCSR 24      /* MXCSR in the legacy region (Vol. 1 10.5.1) */

static void xsetbv0(u64 v) { __asm__ volatile("xsetbv" ::"a"((u32)v), "d"((u32)(v >> 32)), "c"(0)); }

/* xsave_init sets CR4.OSXSAVE (SDM 3A 2.5) and XCR0 (Vol. 1 13.3). The
 * bootstrap CPU picks the mask: x87|SSE, with AVX and the AVX-512 trio
 * where CPUID 0xD.0 EAX offers them, unless doppel.xsave=sse; a component
 * is dropped if the area would outgrow XSAVE_AREA_MAX. Application
 * processors load the same mask. Without XSAVE nothing changes and
 * threads keep FXSAVE images. */
static void xsave_init(int bsp) {
	u32 r[4];
	cpuid(0, 0, r);
	u32 max = r[0];
	cpuid(1, 0, r);
	if (max < 0xD || !(r[2] & CPUID1_ECX_XSAVE))
		return;
	u64 cr4;
	__asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
	__asm__ volatile("mov %0, %%cr4" ::"r"(cr4 | CR4_OSXSAVE));
	if (!bsp) {
		if (xsave_mask)
			xsetbv0(xsave_mask);
		return;
	}
	cpuid(0xD, 0, r);
	u64 want = XCR0_X87 | XCR0_SSE;
	if (!flag_xsave_sse && (r[0] & XCR0_AVX)) {
		want |= XCR0_AVX;
		if ((r[0] & XCR0_AVX512) == XCR0_AVX512)
			want |= XCR0_AVX512;
	}
	for (;;) {
		xsetbv0(want);
		cpuid(0xD, 0, r);
		if (r[1] <= XSAVE_AREA_MAX || want == (XCR0_X87 | XCR0_SSE))
			break;
		want = (want & XCR0_AVX512) ? want & ~(u64)XCR0_AVX512 : XCR0_X87 | XCR0_SSE;
	}
	xsave_mask = want;
	xsave_size = r[1];
	/* The reset image: header all zero (every component in its initial
	 * state, standard format) and MXCSR's reset value, which XRSTOR
	 * loads from the legacy region whenever SSE or AVX is requested. */
	*(u32 *)(xsave_reset_area + FX_MXCSR) = 0x1F80;
	kprintf("boot: xsave: XCR0 0x%lx (%s), %u-byte thread images\n", xsave_mask,
	        (want & XCR0_AVX512) ? "x87 SSE AVX AVX-512" : (want & XCR0_AVX) ? "x87 SSE AVX" : "x87 SSE",
	        xsave_size);
}

/* fpu_save stores this CPU's x87/SSE/AVX state in a 64-byte aligned
 * image of xsave_size bytes: XSAVE in standard format (which writes only
 * XSTATE_BV of the header, so the image's header must start zeroed, as
 * thread images and signal frames do) or, without XSAVE, FXSAVE. */
void fpu_save(u8 *area) {
	if (xsave_mask)
		__asm__ volatile("xsave64 (%0)" ::"r"(area), "a"((u32)xsave_mask), "d"((u32)(xsave_mask >> 32))
		                 : "memory");
	else
		__asm__ volatile("fxsave64 (%0)" ::"r"(area) : "memory");
}

/* fpu_restore loads an image fpu_save wrote. */
void fpu_restore(const u8 *area) {
	if (xsave_mask)
		__asm__ volatile("xrstor64 (%0)" ::"r"(area), "a"((u32)xsave_mask), "d"((u32)(xsave_mask >> 32))
		                 : "memory");
	else
		__asm__ volatile("fxrstor64 (%0)" ::"r"(area) : "memory");
}

/* fpu_init gives the FPU/SSE/AVX unit its power-on state: FCW 0x37F,
 * MXCSR 0x1F80 (all exceptions masked), vector registers zero, as Linux
 * hands a new process. */
void fpu_init(void) {
	if (xsave_mask) {
		fpu_restore(xsave_reset_area);
		return;
	}
	u32 mxcsr = 0x1F80;
	__asm__ volatile("fninit; ldmxcsr %0" ::"m"(mxcsr));
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
	xsave_init(id == 0);
	fpu_init();
	u32 r[4];
	cpuid(0x80000001, 0, r);
	if (r[3] & (1 << 27)) /* RDTSCP: IA32_TSC_AUX = CPU number, as Linux */
		wrmsr(0xC0000103, (u64)id);
	cpuid(1, 0, r);
	cpu_features_ecx = r[2];
	cpu_features_edx = r[3];
}
