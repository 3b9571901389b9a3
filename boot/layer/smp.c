/* smp.c: start the application processors (SDM 3A 8.4.4.1, "Typical BSP
 * Initialization Sequence": INIT IPI, 10 ms, STARTUP IPI, 200 us, STARTUP
 * IPI) with the trampoline in ap.S copied to AP_TRAMPOLINE. */
#include "layer.h"

#define ICR_INIT 0x4500    /* delivery mode 101b, level assert */
#define ICR_STARTUP 0x4600 /* delivery mode 110b | vector */

extern char ap_gdtptr[], ap_cr3[], ap_stack[], ap_cpu[];
extern u64 gdt[];
static volatile int ap_up;

static void *tramp(char *sym) { return P2V(AP_TRAMPOLINE + (sym - ap_tramp_start)); }

void ap_main(struct cpu *c) {
	cpu_init(c, c->id);
	lapic_init();
	lapic_timer_start();
	c->online = 1; /* from here on it answers TLB shootdowns (lock spin) */
	ap_up = 1;
	sched_start_on((u64)c->stack + KSTACK_SIZE);
}

/* init_delay_us: the SDM's 10 ms after INIT is for old CPUs; like Linux
 * (smpboot.c, init_udelay), skip it on Intel family 6 model >= 0x0F and
 * on family >= 0x10. */
static u64 init_delay_us(void) {
	u32 r[4];
	cpuid(1, 0, r);
	u32 fam = (r[0] >> 8) & 0xf, model = (r[0] >> 4) & 0xf;
	if (fam == 0xf)
		fam += (r[0] >> 20) & 0xff;
	if (fam == 6 || fam == 0xf)
		model |= ((r[0] >> 16) & 0xf) << 4;
	return (fam == 6 && model >= 0x0f) || fam >= 0x10 ? 10 : 10000;
}

static int start_one(struct cpu *c) {
	*(u64 *)tramp(ap_stack) = (u64)c->stack + KSTACK_SIZE;
	*(u64 *)tramp(ap_cpu) = (u64)c;
	ap_up = 0;
	lapic_ipi(c->apic_id, ICR_INIT);
	udelay(init_delay_us());
	for (int i = 0; i < 2 && !ap_up; i++) {
		lapic_ipi(c->apic_id, ICR_STARTUP | (AP_TRAMPOLINE >> 12));
		udelay(200);
		for (int w = 0; w < 1000 && !ap_up; w++)
			udelay(100);
	}
	return ap_up;
}

void smp_start(void) {
	u32 me = lapic_id();
	memcpy(P2V(AP_TRAMPOLINE), ap_tramp_start, ap_tramp_end - ap_tramp_start);
	*(u16 *)tramp(ap_gdtptr) = (u16)(SEL_TSS0 + 16 * MAX_CPUS - 1);
	*(u32 *)(tramp(ap_gdtptr) + 2) = (u32)(u64)gdt;
	*(u64 *)tramp(ap_cr3) = kernel_pml4;
	for (int i = 0; i < ncpu_found && ncpus < flag_smp && ncpus < MAX_CPUS; i++) {
		if (cpu_apic_ids[i] == me)
			continue;
		struct cpu *c = &cpus[ncpus];
		c->apic_id = (int)cpu_apic_ids[i];
		c->id = ncpus;
		if (!start_one(c)) {
			kprintf("boot: cpu apic=%d did not start\n", c->apic_id);
			continue;
		}
		ncpus++;
	}
	kprintf("boot: %d cpus online\n", ncpus);
}
