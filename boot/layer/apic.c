/* apic.c: local APIC (SDM 3A ch. 10: registers Table 10-1, timer 10.5.4,
 * ICR 10.6.1), I/O APIC (82093AA datasheet: IOREGSEL 0x00, IOWIN 0x10,
 * redirection table at register 0x10 + 2n) and the 8259 PICs, which are
 * remapped away from the exception vectors and masked. */
#include "layer.h"

#define LAPIC_ID 0x20
#define LAPIC_TPR 0x80
#define LAPIC_EOI 0xB0
#define LAPIC_SVR 0xF0
#define LAPIC_SVR_ENABLE (1 << 8)
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define LAPIC_ICR_PENDING (1 << 12)
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_LVT_PERIODIC (1 << 17)
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_LVT_LINT1 0x360
#define LAPIC_LVT_MASKED (1 << 16)
#define LAPIC_TIMER_ICR 0x380
#define LAPIC_TIMER_CCR 0x390
#define LAPIC_TIMER_DCR 0x3E0
#define LAPIC_DIV16 0x3

#define IOREDTBL(n) (0x10 + 2 * (n))
#define IOAPIC_LEVEL (1 << 15)
#define IOAPIC_LOW (1 << 13)
#define IOAPIC_MASKED (1 << 16)

static volatile u32 *lapic;
static u32 timer_count; /* LAPIC ticks per 1/HZ s */
static u64 timer_mult;  /* LAPIC ticks per ns, 32.32 fixed point */

static u32 lr(u32 r) { return lapic[r / 4]; }
static void lw(u32 r, u32 v) { lapic[r / 4] = v; }

u32 lapic_id(void) {
	if (!lapic)
		lapic = P2V(rdmsr(MSR_APIC_BASE) & 0xFFFFF000);
	return lr(LAPIC_ID) >> 24;
}

void lapic_eoi(void) { lw(LAPIC_EOI, 0); }

void lapic_init(void) {
	lapic = P2V(rdmsr(MSR_APIC_BASE) & 0xFFFFF000);
	wrmsr(MSR_APIC_BASE, rdmsr(MSR_APIC_BASE) | (1 << 11)); /* global enable */
	lw(LAPIC_TPR, 0);
	lw(LAPIC_LVT_LINT0, LAPIC_LVT_MASKED);
	lw(LAPIC_LVT_LINT1, LAPIC_LVT_MASKED);
	lw(LAPIC_SVR, LAPIC_SVR_ENABLE | VEC_SPURIOUS);
	lapic_eoi();
}

/* lapic_count_start/read let time.c count LAPIC timer ticks (divide by
 * 16, masked, one-shot from 0xFFFFFFFF) over its PIT window. */
void lapic_count_start(void) {
	lw(LAPIC_TIMER_DCR, LAPIC_DIV16);
	lw(LAPIC_LVT_TIMER, LAPIC_LVT_MASKED | VEC_TIMER);
	lw(LAPIC_TIMER_ICR, 0xFFFFFFFF);
}

u32 lapic_count_read(void) { return 0xFFFFFFFF - lr(LAPIC_TIMER_CCR); }

void lapic_set_rate(u32 hz) {
	timer_count = MAX(hz / HZ, 1000u);
	timer_mult = ((u64)hz << 32) / 1000000000ULL;
	kprintf("boot: lapic timer %u Hz\n", hz);
}

/* lapic_timer_start runs the timer in one-shot mode: each expiry re-arms
 * it for the next time slice or the earliest sleeper's deadline,
 * whichever is first (sched.c). */
void lapic_timer_start(void) {
	lw(LAPIC_TIMER_DCR, LAPIC_DIV16);
	lw(LAPIC_LVT_TIMER, VEC_TIMER); /* one-shot */
	lw(LAPIC_TIMER_ICR, timer_count);
}

/* lapic_timer_arm fires VEC_TIMER on this CPU after ns nanoseconds. */
void lapic_timer_arm(u64 ns) {
	unsigned __int128 c = (unsigned __int128)ns * timer_mult;
	u64 n = (u64)(c >> 32);
	lw(LAPIC_TIMER_ICR, (u32)MIN(MAX(n, 16ULL), 0xFFFFFFFFULL));
}

void lapic_ipi(u32 apic, u32 icr_low) {
	while (lr(LAPIC_ICR_LO) & LAPIC_ICR_PENDING)
		cpu_relax();
	lw(LAPIC_ICR_HI, apic << 24);
	lw(LAPIC_ICR_LO, icr_low);
	__atomic_fetch_add(&stats.ipis, 1, __ATOMIC_RELAXED); /* also sent outside the lock */
}

static volatile u32 *ioapic(void) { return P2V(ioapic_phys); }

/* The I/O APIC's index/data pair is used from interrupt handlers before
 * they take the big lock (trap.c), so it has a lock of its own; the low
 * words of the redirection entries are kept here, so masking is two
 * writes and no read. */
static volatile int ioapic_lk;
static u32 redir_lo[NGSI];

static void ioapic_lock(void) {
	while (__atomic_exchange_n(&ioapic_lk, 1, __ATOMIC_ACQUIRE))
		while (ioapic_lk)
			cpu_relax();
}

static void ioapic_unlock(void) { __atomic_store_n(&ioapic_lk, 0, __ATOMIC_RELEASE); }

static void io_w(u32 reg, u32 v) {
	ioapic()[0] = reg;
	ioapic()[4] = v;
}

/* ioapic_route sends GSI gsi to the BSP as fixed vector. */
void ioapic_route(int gsi, int vector, int level, int low, int masked) {
	int pin = gsi - (int)ioapic_gsi_base;
	u32 lo = (u32)vector | (level ? IOAPIC_LEVEL : 0) | (low ? IOAPIC_LOW : 0) | (masked ? IOAPIC_MASKED : 0);
	ioapic_lock();
	io_w(IOREDTBL(pin) + 1, cpus[0].apic_id << 24);
	io_w(IOREDTBL(pin), lo);
	if (pin >= 0 && pin < NGSI)
		redir_lo[pin] = lo;
	ioapic_unlock();
}

void ioapic_mask(int gsi, int masked) {
	int pin = gsi - (int)ioapic_gsi_base;
	if (pin < 0 || pin >= NGSI)
		return;
	ioapic_lock();
	u32 lo = masked ? redir_lo[pin] | IOAPIC_MASKED : redir_lo[pin] & ~IOAPIC_MASKED;
	redir_lo[pin] = lo;
	io_w(IOREDTBL(pin), lo);
	ioapic_unlock();
}

/* pic_disable: ICW1-4 (8259A datasheet) move IRQs 0-15 to VEC_PIC.., then
 * OCW1 masks all of them. */
void pic_disable(void) {
	outb(0x20, 0x11), outb(0xA0, 0x11);
	outb(0x21, VEC_PIC), outb(0xA1, VEC_PIC + 8);
	outb(0x21, 4), outb(0xA1, 2);
	outb(0x21, 1), outb(0xA1, 1);
	outb(0x21, 0xFF), outb(0xA1, 0xFF);
}
