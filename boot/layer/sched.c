/* sched.c: threads and the scheduler. One big kernel lock (bkl) covers the
 * layer's state; it is taken on entry from Go and released on the way back,
 * and held across a switch (the next thread releases it), as in xv6. Every
 * thread has a kernel stack holding its trap frame; switching is swtch()
 * between kernel stacks plus the per-thread FS base and extended-state
 * image (fpu_save). One FIFO run queue serves all CPUs, honouring each thread's affinity mask.
 * Each CPU has an idle thread (its boot stack) that halts with interrupts
 * on. The LAPIC tick (apic.c) time-slices: without it the Go GC's
 * stop-the-world waits forever on a spinning thread. */
#include "layer.h"

volatile int bkl;
struct thread threads[MAX_THREADS];
static u8 kstacks[MAX_THREADS][KSTACK_SIZE] __attribute__((aligned(16)));
static struct thread idle_threads[MAX_CPUS];
static struct thread *runq_head, *runq_tail;
static int next_tid = 100;
void tlb_check(struct cpu *c);

/* Lock statistics (/proc/doppel/lockstat): per holder (what the CPU that
 * took the lock was doing: a system call, a vector, or 0 for the
 * scheduler's own acquisitions), how often and how long it held the lock
 * and how long other CPUs spun waiting for it. Only the holder writes
 * them. */
static struct lockstat lockstats[NLOCKSTAT];
static u64 holder_what, holder_tsc;

static struct lockstat *lockstat_slot(u64 what) {
	for (int i = 0; i < NLOCKSTAT; i++) {
		struct lockstat *l = &lockstats[(what + i) % NLOCKSTAT];
		if (l->used && l->what == what)
			return l;
		if (!l->used) {
			l->used = 1, l->what = what;
			return l;
		}
	}
	return 0;
}

void lock(void) {
	struct cpu *c = mycpu();
	u64 waited = 0, wwhat = 0;
	while (__atomic_exchange_n(&bkl, 1, __ATOMIC_ACQUIRE)) {
		u64 t0 = rdtsc();
		wwhat = __atomic_load_n(&holder_what, __ATOMIC_RELAXED);
		while (bkl) {
			cpu_relax();
			tlb_check(c);
		}
		waited += rdtsc() - t0;
	}
	c->holding = 1;
	if (waited) {
		struct lockstat *l = lockstat_slot(wwhat);
		if (l)
			l->waited += waited, l->waits++;
	}
	holder_what = 0;
	holder_tsc = rdtsc();
}

/* lock_what records what the holder is doing, for the statistics. */
void lock_what(u64 what) { holder_what = what; }

/* unlock releases the lock, then does the APIC writes deferred while it
 * was held (struct cpu): the I/O APIC lines to unmask, the last re-arm of
 * this CPU's timer and the reschedule IPIs. Interrupts are still off, so
 * nothing runs between. */
void unlock(void) {
	struct cpu *c = mycpu();
	struct lockstat *l = lockstat_slot(holder_what);
	if (l)
		l->held += rdtsc() - holder_tsc, l->count++;
	u32 ipis = c->ipi_pending;
	int arm = c->arm_pending;
	u64 at = c->arm_at, unmask = c->unmask_pending;
	c->ipi_pending = 0, c->arm_pending = 0, c->unmask_pending = 0;
	c->holding = 0;
	__atomic_store_n(&bkl, 0, __ATOMIC_RELEASE);
	for (int g = 0; unmask; g++, unmask >>= 1)
		if (unmask & 1)
			ioapic_mask(g, 0);
	if (arm) {
		u64 now = nanotime();
		lapic_timer_arm(at > now ? at - now : 0);
	}
	for (int i = 0; ipis; i++, ipis >>= 1)
		if (ipis & 1)
			lapic_ipi(cpus[i].apic_id, VEC_RESCHED);
}

/* defer_ipi sends c a reschedule IPI once the lock is released. */
void defer_ipi(struct cpu *c) { mycpu()->ipi_pending |= 1u << c->id; }

/* defer_unmask unmasks I/O APIC line gsi once the lock is released. */
void defer_unmask(int gsi) { mycpu()->unmask_pending |= 1ULL << gsi; }

/* defer_timer re-arms this CPU's one-shot timer for at (ns) once the lock
 * is released; the last request wins. */
void defer_timer(u64 at) {
	struct cpu *c = mycpu();
	c->arm_pending = 1, c->arm_at = at;
}

int lockstat_gen(char *b, int m) {
	int n = 0;
	for (int i = 0; i < NLOCKSTAT && n < m; i++) {
		struct lockstat *l = &lockstats[i];
		if (l->used)
			n += snprintf(b + n, m - n, "%s%lu %lu %lu %lu %lu\n", l->what >= LOCK_SYSCALL ? "sys" : "vec",
				      l->what >= LOCK_SYSCALL ? l->what - LOCK_SYSCALL : l->what, l->count, l->held,
				      l->waits, l->waited);
	}
	return MIN(n, m - 1);
}

struct thread *cur(void) { return mycpu()->cur; }

int online_mask(void) {
	int m = 0;
	for (int i = 0; i < ncpus; i++)
		if (cpus[i].online)
			m |= 1 << i;
	return m;
}

static void runq_push(struct thread *t) {
	t->next = 0;
	if (runq_tail)
		runq_tail->next = t;
	else
		runq_head = t;
	runq_tail = t;
}

/* runq_pop takes the first thread allowed on cpu (peek only if !take). */
static struct thread *runq_pop(int cpu, int take) {
	for (struct thread *t = runq_head, *prev = 0; t; prev = t, t = t->next) {
		if (!(t->affinity & (1ULL << cpu)))
			continue;
		if (take) {
			if (prev)
				prev->next = t->next;
			else
				runq_head = t->next;
			if (runq_tail == t)
				runq_tail = prev;
			t->next = 0;
		}
		return t;
	}
	return 0;
}

static void switch_to(struct thread *next) {
	struct cpu *c = mycpu();
	struct thread *prev = c->cur;
	next->state = T_RUNNING;
	if (prev == next)
		return;
	fpu_save(prev->fx);
	next->cpu = c->id;
	c->cur = next;
	c->kstack_top = next->kstack_top;
	fpu_restore(next->fx);
	wrmsr(MSR_FS_BASE, next->fsbase);
	if (prev->idle) { /* an idle CPU's timer may be far away: arm the slice */
		u64 now = nanotime();
		if (c->next_event > now + SLICE_NS) {
			c->next_event = now + SLICE_NS;
			defer_timer(c->next_event);
		}
	}
	stats.switches++;
	swtch(&prev->ctx, next->ctx);
}

static void reschedule(void) {
	struct cpu *c = mycpu();
	struct thread *n = runq_pop(c->id, 1);
	switch_to(n ? n : c->idle);
}

/* kick_cpu gets t running soon: an idle CPU that may run it gets a
 * reschedule IPI; if none is idle, another allowed CPU is asked to
 * preempt its current thread (wakeup preemption, so a woken thread does
 * not wait for a spinning one's time slice). */
void kick_cpu(struct thread *t) {
	struct cpu *me = mycpu(), *busy = 0;
	for (int i = 0; i < ncpus; i++) {
		struct cpu *c = &cpus[i];
		if (!c->online || c == me || !(t->affinity & (1ULL << i)))
			continue;
		if (c->cur == c->idle) {
			defer_ipi(c);
			return;
		}
		if (!busy)
			busy = c;
	}
	if (busy && !(t->affinity & (1ULL << me->id)))
		defer_ipi(busy);
}

void wake(struct thread *t, i64 result) {
	if (t->state != T_BLOCKED)
		return;
	t->wresult = result;
	t->state = T_RUNNABLE;
	t->wkind = W_NONE;
	runq_push(t);
	kick_cpu(t);
}

i64 block(int kind, u64 addr, u64 deadline) {
	struct thread *t = cur();
	t->state = T_BLOCKED;
	t->wkind = kind;
	t->waddr = addr;
	t->deadline = deadline;
	t->wresult = 0;
	struct cpu *c = mycpu();
	if (deadline && deadline < c->next_event) { /* sooner than this CPU's timer */
		c->next_event = deadline;
		defer_timer(deadline);
	}
	reschedule();
	t->deadline = 0;
	return t->wresult;
}

void yield(void) {
	struct thread *t = cur();
	if (t->idle || !runq_pop(mycpu()->id, 0))
		return;
	t->state = T_RUNNABLE;
	runq_push(t);
	reschedule();
}

/* sched_migrate moves the caller onto its affinity mask. */
void sched_migrate(void) {
	struct thread *t = cur();
	if (t->affinity & (1ULL << mycpu()->id))
		return;
	t->state = T_RUNNABLE;
	runq_push(t);
	kick_cpu(t);
	reschedule();
}

/* sched_timer runs on every timer expiry: wakes sleepers whose deadline
 * passed and re-arms this CPU's one-shot for the next slice or the
 * earliest remaining deadline. An idle CPU has no slice to end: it sleeps
 * until a deadline (at most 1 s) or an IPI, so an idle machine (or, later,
 * a guest running under VMX) is not interrupted 250 times a second. */
void sched_timer(void) {
	u64 now = nanotime(), next = now + (cur()->idle ? 1000000000ULL : SLICE_NS);
	stats.ticks++;
	for (int i = 0; i < MAX_THREADS; i++) {
		struct thread *t = &threads[i];
		if (t->state != T_BLOCKED || !t->deadline)
			continue;
		if (now >= t->deadline)
			wake(t, -ETIMEDOUT);
		else if (t->deadline < next)
			next = t->deadline;
	}
	/* A THR-empty interrupt lost (IRQ 4 is edge-triggered) must not
	 * strand console output: the tick feeds the UART too. */
	if (serial_queued() && !serial_drained() && next > now + 10000000ULL)
		next = now + 10000000ULL;
	mycpu()->next_event = next;
	defer_timer(next);
}

struct thread *thread_alloc(void) {
	for (int i = 0; i < MAX_THREADS; i++) {
		struct thread *t = &threads[i];
		if (t->state != T_FREE && t->state != T_ZOMBIE)
			continue;
		memset(t, 0, sizeof *t);
		t->kstack_top = (u64)kstacks[i] + KSTACK_SIZE;
		t->tid = next_tid++;
		t->state = T_BLOCKED;
		return t;
	}
	return 0;
}

struct thread *thread_by_tid(int tid) {
	for (int i = 0; i < MAX_THREADS; i++)
		if (threads[i].tid == tid && threads[i].state != T_FREE && threads[i].state != T_ZOMBIE)
			return &threads[i];
	return 0;
}

/* thread_init_frame puts tf at the top of t's kernel stack and a context
 * below it that "returns" into thread_entry, then makes t runnable. */
void thread_init_frame(struct thread *t, struct trapframe *tf) {
	struct trapframe *ktf = (struct trapframe *)(t->kstack_top - sizeof *tf);
	*ktf = *tf;
	struct context *ctx = (struct context *)((u64)ktf - sizeof *ctx);
	memset(ctx, 0, sizeof *ctx);
	ctx->rip = (u64)thread_entry;
	t->ctx = ctx;
	t->state = T_BLOCKED;
	wake(t, 0);
}

void thread_exit(void) {
	cur()->state = T_ZOMBIE;
	reschedule();
	for (;;)
		;
}

static void idle_loop(void) {
	struct cpu *c = mycpu();
	for (;;) {
		struct thread *n = runq_pop(c->id, 1);
		if (n) {
			switch_to(n);
			continue;
		}
		unlock();
		__asm__ volatile("sti; hlt; cli" ::: "memory");
		lock();
	}
}

/* sched_start turns the calling boot stack into this CPU's idle thread. */
void sched_start_on(u64 stack_top) {
	struct cpu *c = mycpu();
	struct thread *idle = &idle_threads[c->id];
	idle->idle = 1;
	idle->state = T_RUNNING;
	idle->kstack_top = stack_top;
	idle->affinity = 1ULL << c->id;
	fpu_save(idle->fx);
	c->idle = c->cur = idle;
	c->kstack_top = stack_top;
	c->online = 1;
	lock();
	idle_loop();
}
