/* proc.c: threads, futexes, sleeping, clocks, affinity and the small
 * process-wide system calls (futex(2), clone(2), clock_gettime(2),
 * sched_setaffinity(2), getrandom(2) semantics as on Linux). */
#include "layer.h"

#define CLONE_VM 0x100
#define CLONE_SETTLS 0x80000
#define CLONE_THREAD 0x10000
#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define FUTEX_WAIT_BITSET 9
#define FUTEX_WAKE_BITSET 10
#define FUTEX_CMD_MASK 0x7f /* strips FUTEX_PRIVATE_FLAG and CLOCK_REALTIME */
#define CLOCK_REALTIME 0
#define CLOCK_MONOTONIC 1
#define TIMER_ABSTIME 1

/* sys_clone makes a thread sharing everything (Go passes CLONE_VM |
 * CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_SYSVSEM | CLONE_THREAD):
 * the child returns 0 on stack, with TLS from tls under CLONE_SETTLS,
 * every other register and the FPU state copied from the parent. */
i64 sys_clone(struct trapframe *tf, u64 flags, u64 stack, u64 tls) {
	if (!(flags & CLONE_VM) || !(flags & CLONE_THREAD))
		return -EINVAL; /* no fork: one address space */
	struct thread *p = cur(), *t = thread_alloc();
	if (!t)
		return -EAGAIN;
	struct trapframe ctf = *tf;
	ctf.rax = 0;
	if (stack)
		ctf.rsp = stack;
	t->fsbase = (flags & CLONE_SETTLS) ? tls : p->fsbase;
	t->affinity = p->affinity;
	t->sigmask = p->sigmask;
	fpu_save(t->fx);
	thread_init_frame(t, &ctf);
	return t->tid;
}

static u64 ts_ns(u64 ts) { return *(u64 *)ts * 1000000000ULL + *(u64 *)(ts + 8); }

/* sys_futex: WAIT sleeps while *addr == val (checked under the lock, so
 * a WAKE after the store cannot be missed), with an optional relative
 * timeout; WAKE wakes up to val waiters on addr. */
i64 sys_futex(u64 addr, int op, u32 val, u64 ts) {
	int cmd = op & FUTEX_CMD_MASK;
	if (!user_ok(addr, 4) || (addr & 3))
		return -EINVAL;
	if (cmd == FUTEX_WAIT || cmd == FUTEX_WAIT_BITSET) {
		if (*(volatile u32 *)addr != val)
			return -EAGAIN;
		u64 dl = 0;
		if (ts && user_ok(ts, 16))
			dl = cmd == FUTEX_WAIT ? nanotime() + ts_ns(ts) + 1 : ts_ns(ts) + 1;
		i64 r = block(W_FUTEX, addr, dl);
		return r == -ETIMEDOUT ? -ETIMEDOUT : 0;
	}
	if (cmd == FUTEX_WAKE || cmd == FUTEX_WAKE_BITSET) {
		int n = 0;
		for (int i = 0; i < MAX_THREADS && n < (int)val; i++) {
			struct thread *t = &threads[i];
			if (t->state == T_BLOCKED && t->wkind == W_FUTEX && t->waddr == addr)
				wake(t, 0), n++;
		}
		return n;
	}
	return -ENOSYS;
}

static i64 sleep_until(u64 dl) {
	if (nanotime() >= dl)
		return 0;
	block(W_SLEEP, 0, dl);
	return 0;
}

/* nanosleep_short serves a sleep shorter than SHORT_SLEEP_NS without the
 * big lock by waiting on the clock, and returns 1; else 0. Go's scheduler
 * sleeps 3 us before it steals a P's next goroutine (runqgrab's usleep):
 * blocking for that would cost the lock, a one-shot timer, its interrupt
 * and two context switches, each far longer than the sleep under an
 * emulator. */
int nanosleep_short(u64 req) {
	if (!user_ok(req, 16))
		return 0;
	u64 sec = ((volatile u64 *)req)[0], ns = ((volatile u64 *)req)[1];
	if (sec || ns >= SHORT_SLEEP_NS)
		return 0;
	u64 dl = nanotime() + ns;
	while (nanotime() < dl) {
		cpu_relax();
		tlb_check(mycpu()); /* a shootdown may wait on this CPU */
	}
	return 1;
}

i64 sys_nanosleep(u64 req, u64 rem) {
	(void)rem;
	if (!user_ok(req, 16))
		return -EFAULT;
	return sleep_until(nanotime() + ts_ns(req));
}

i64 sys_clock_nanosleep(int clk, int flags, u64 req) {
	if (!user_ok(req, 16))
		return -EFAULT;
	u64 t = ts_ns(req);
	if (!(flags & TIMER_ABSTIME))
		return sleep_until(nanotime() + t);
	if (clk == CLOCK_REALTIME)
		t = t > realtime_ns() ? nanotime() + (t - realtime_ns()) : 0;
	return sleep_until(t);
}

/* sys_clock_gettime: REALTIME (0, 5 coarse) from the RTC at boot plus
 * the TSC; every other clock is monotonic. clk -1 is clock_getres. */
i64 sys_clock_gettime(int clk, u64 ts) {
	if (!user_ok(ts, 16))
		return ts ? -EFAULT : 0;
	u64 ns = clk < 0 ? 1 : (clk == CLOCK_REALTIME || clk == 5) ? realtime_ns() : nanotime();
	((u64 *)ts)[0] = ns / 1000000000ULL;
	((u64 *)ts)[1] = ns % 1000000000ULL;
	return 0;
}

i64 sys_gettimeofday(u64 tv) {
	if (!user_ok(tv, 16))
		return tv ? -EFAULT : 0;
	u64 ns = realtime_ns();
	((u64 *)tv)[0] = ns / 1000000000ULL;
	((u64 *)tv)[1] = ns % 1000000000ULL / 1000;
	return 0;
}

i64 sys_sched_getaffinity(int pid, u64 len, u64 mask) {
	(void)pid;
	if (len < 8 || !user_ok(mask, 8))
		return -EINVAL;
	*(u64 *)mask = (u64)online_mask();
	return 8;
}

/* sys_sched_setaffinity pins a thread (0 = the caller) and moves the
 * caller at once if its CPU is no longer allowed. */
i64 sys_sched_setaffinity(int pid, u64 len, u64 mask) {
	if (len < 1 || !user_ok(mask, MIN(len, 8)))
		return -EINVAL;
	u64 m = len >= 8 ? *(u64 *)mask : *(u8 *)mask;
	m &= (u64)online_mask();
	if (!m)
		return -EINVAL;
	struct thread *t = pid ? thread_by_tid(pid) : cur();
	if (!t)
		return -ESRCH;
	t->affinity = m;
	if (t == cur())
		sched_migrate();
	return 0;
}

i64 sys_uname(u64 buf) {
	static const char *f[6] = {"Linux", "doppel", "6.1.0-doppel", "#1 SMP doppel", "x86_64", "(none)"};
	if (!user_ok(buf, 6 * 65))
		return -EFAULT;
	memset((void *)buf, 0, 6 * 65);
	for (int i = 0; i < 6; i++)
		memcpy((char *)buf + 65 * i, f[i], strlen(f[i]));
	return 0;
}

/* sys_prlimit64: RLIMIT_NOFILE (7) is the fd table; the rest unlimited. */
i64 sys_prlimit64(int pid, int res, u64 new, u64 old) {
	(void)pid, (void)new;
	if (old) {
		if (!user_ok(old, 16))
			return -EFAULT;
		((u64 *)old)[0] = res == 7 ? 64 : ~0ULL;
		((u64 *)old)[1] = res == 7 ? 64 : ~0ULL;
	}
	return 0;
}

/* random_bytes: RDRAND (CPUID.01H:ECX[30]) or RDSEED (CPUID.07H:EBX[18]);
 * without either, TSC jitter around port I/O folded through splitmix64
 * (weak: a warning is printed once). Never a fixed seed. */
static int rng_kind = -1;
static u64 mix_state;

static u64 splitmix(u64 x) {
	x += 0x9E3779B97F4A7C15ULL;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
	return x ^ (x >> 31);
}

static u64 rand64(void) {
	u64 v;
	unsigned char ok = 0;
	for (int i = 0; i < 100 && !ok; i++) {
		if (rng_kind == 1)
			__asm__ volatile("rdrand %0; setc %1" : "=r"(v), "=qm"(ok));
		else if (rng_kind == 2)
			__asm__ volatile("rdseed %0; setc %1" : "=r"(v), "=qm"(ok));
		else
			break;
	}
	if (ok)
		return v;
	for (int i = 0; i < 16; i++) {
		u64 t = rdtsc();
		inb(0x80);
		mix_state = splitmix(mix_state ^ (rdtsc() - t) ^ (t << 17));
	}
	return mix_state;
}

void random_bytes(u8 *p, u64 n) {
	if (rng_kind < 0) {
		u32 r[4];
		cpuid(1, 0, r);
		rng_kind = (r[2] >> 30) & 1 ? 1 : 0;
		cpuid(7, 0, r);
		if (!rng_kind && ((r[1] >> 18) & 1))
			rng_kind = 2;
		mix_state = rdtsc();
		if (!rng_kind)
			kprintf("boot: warning: no RDRAND/RDSEED; getrandom uses TSC jitter (weak entropy)\n");
	}
	while (n) {
		u64 v = rand64();
		u64 k = MIN(n, 8);
		memcpy(p, &v, k);
		p += k, n -= k;
	}
}

i64 sys_getrandom(u64 buf, u64 n, int flags) {
	(void)flags;
	if (!user_ok(buf, n))
		return -EFAULT;
	random_bytes((u8 *)buf, n);
	return (i64)n;
}
