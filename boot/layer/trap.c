/* trap.c: interrupts and exceptions (SDM 3A ch. 6, Table 6-1). Faults in
 * Go code become Linux signals (signal.c) the way the Linux kernel maps
 * them (arch/x86/kernel/traps.c); a fault in the layer itself, or one Go
 * has no handler for, prints the registers and stops (fatal). */
#include "layer.h"

struct stats stats;

/* nested: the trap interrupted the layer (RSP on the current kernel
 * stack), not Go code. vectors.S made the same decision. */
static int nested(struct trapframe *tf) {
	u64 top = mycpu()->kstack_top;
	return tf->rsp >= top - KSTACK_SIZE && tf->rsp < top;
}

void syscall_abort(struct trapframe *top) __attribute__((noreturn));

/* efault: the layer faulted on a bad Go pointer inside a system call;
 * like Linux, the call fails with EFAULT instead of taking the machine
 * down. The syscall frame sits at the top of the thread's kernel stack. */
static void efault(struct trapframe *tf, u64 addr) {
	struct trapframe *top = (struct trapframe *)(cur()->kstack_top - sizeof *top);
	if (cur()->idle || top->vector != VEC_SYSCALL)
		fatal("page fault in the layer", tf);
	kprintf("boot: syscall %lu: bad address %lx (EFAULT)\n", top->rax, addr);
	top->rax = (u64)-EFAULT;
	syscall_abort(top);
}

static void exception(struct trapframe *tf, int in_layer) {
	u64 v = tf->vector;
	if (v == 14) {
		u64 addr = read_cr2();
		int code = 1;
		stats.pagefaults++;
		if (addr < USER_MAX && vm_fault(addr, tf->error, &code) == 0)
			return;
		if (in_layer && addr < USER_MAX)
			efault(tf, addr);
		if (in_layer)
			fatal("page fault in the layer", tf);
		signal_fault(tf, SIGSEGV, code, addr);
		return;
	}
	if (v == 2)
		return; /* NMI: not reached, vectors.S returns from it at once */
	if (in_layer || v == 8 || v == 18)
		fatal("exception in the layer", tf);
	switch (v) {
	case 0:
		signal_fault(tf, SIGFPE, 1 /* FPE_INTDIV */, tf->rip);
		break;
	case 1:
	case 3:
		signal_fault(tf, SIGTRAP, 0x80, tf->rip);
		break;
	case 6:
		signal_fault(tf, SIGILL, 2 /* ILL_ILLOPN */, tf->rip);
		break;
	case 12:
	case 13:
		signal_fault(tf, SIGSEGV, 0x80 /* SI_KERNEL */, 0);
		break;
	case 16:
	case 19:
		signal_fault(tf, SIGFPE, 0x80, tf->rip);
		break;
	case 17:
		signal_fault(tf, SIGBUS, 1 /* BUS_ADRALN */, 0);
		break;
	default:
		fatal("unexpected exception", tf);
	}
}

/* interrupt_ack masks a device's I/O APIC line and acknowledges the
 * interrupt at the LAPIC, before the big lock is taken: neither touches
 * the layer's state, and under an emulator each access can wait on the
 * emulator's lock while other CPUs spin on ours. The line is masked
 * before the EOI, so a level-triggered device does not raise it again;
 * interrupts stay off until IRETQ, so none nests. */
static void interrupt_ack(u64 v) {
	if (v >= VEC_IRQ0 && v < VEC_IRQ0 + NGSI)
		irq_mask_line((int)(v - VEC_IRQ0));
	lapic_eoi();
}

static void interrupt(struct trapframe *tf, int in_layer) {
	u64 v = tf->vector;
	if (v == VEC_TIMER) {
		sched_timer();
		if (!in_layer)
			yield();
	} else if (v == VEC_RESCHED) {
		if (!in_layer)
			yield();
	} else if (v >= VEC_IRQ0 && v < VEC_IRQ0 + NGSI + NMSI) {
		stats.irqs++;
		irq_fire((int)(v - VEC_IRQ0));
	}
}

void trap_handler(struct trapframe *tf) {
	struct cpu *c = mycpu();
	u64 v = tf->vector;
	if (v == VEC_TLB) {
		tlb_check(c);
		lapic_eoi();
		return;
	}
	if (v == VEC_HALT)
		for (;;)
			__asm__ volatile("cli; hlt");
	if (v == VEC_SPURIOUS || (v >= VEC_PIC && v < VEC_PIC + 16))
		return;
	int in_layer = nested(tf), took = 0;
	if (v >= 32)
		interrupt_ack(v);
	if (!c->holding) {
		lock();
		lock_what(v);
		took = 1;
	}
	if (v < 32)
		exception(tf, in_layer);
	else
		interrupt(tf, in_layer);
	if (!in_layer)
		return_to_go(tf);
	else if (took)
		unlock();
}

/* return_to_go runs last before IRETQ to Go: pending signals, unlock. */
void return_to_go(struct trapframe *tf) {
	signal_deliver(tf);
	unlock();
}

static volatile int fatal_once;

void fatal(const char *why, struct trapframe *tf) {
	__asm__ volatile("cli");
	if (__atomic_exchange_n(&fatal_once, 1, __ATOMIC_SEQ_CST))
		for (;;)
			__asm__ volatile("hlt");
	if (tf) {
		kprintf("boot: vector %lu error %lx rip %lx rsp %lx rflags %lx cr2 %lx\n", tf->vector, tf->error,
			tf->rip, tf->rsp, tf->rflags, read_cr2());
		kprintf("boot: rax %lx rbx %lx rcx %lx rdx %lx rsi %lx rdi %lx rbp %lx\n", tf->rax, tf->rbx, tf->rcx,
			tf->rdx, tf->rsi, tf->rdi, tf->rbp);
		kprintf("boot: r8 %lx r9 %lx r10 %lx r11 %lx r12 %lx r13 %lx r14 %lx r15 %lx\n", tf->r8, tf->r9,
			tf->r10, tf->r11, tf->r12, tf->r13, tf->r14, tf->r15);
	}
	kprintf("boot: fatal %s (cpu %d tid %d)\n", why, mycpu()->id, mycpu()->cur ? mycpu()->cur->tid : 0);
	if (flag_fatal_reboot)
		power_restart();
	power_halt();
}
