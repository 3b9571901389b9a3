/* syscall.c: the Linux system-call table (x86-64 numbers from
 * arch/x86/entry/syscalls/syscall_64.tbl). Dispatch is one switch; each
 * case is one call or one line. boot/doc.go lists what each one does.
 * clock_gettime, gettid and getpid run without the big lock: without a
 * vDSO, nanotime is the runtime's most frequent system call. So do the
 * next two under a busy network stack: the scheduler's non-blocking
 * netpoll (epoll_poll_lockfree) and sleeps of a few
 * microseconds (nanosleep_short). */
#include "layer.h"

#define SYS_read 0
#define SYS_write 1
#define SYS_close 3
#define SYS_fstat 5
#define SYS_mmap 9
#define SYS_mprotect 10
#define SYS_munmap 11
#define SYS_brk 12
#define SYS_rt_sigaction 13
#define SYS_rt_sigprocmask 14
#define SYS_rt_sigreturn 15
#define SYS_ioctl 16
#define SYS_sched_yield 24
#define SYS_madvise 28
#define SYS_nanosleep 35
#define SYS_getpid 39
#define SYS_clone 56
#define SYS_exit 60
#define SYS_kill 62
#define SYS_uname 63
#define SYS_fcntl 72
#define SYS_getuid 102
#define SYS_getgid 104
#define SYS_geteuid 107
#define SYS_getegid 108
#define SYS_getppid 110
#define SYS_sigaltstack 131
#define SYS_prctl 157
#define SYS_arch_prctl 158
#define SYS_reboot 169
#define SYS_gettid 186
#define SYS_tkill 200
#define SYS_futex 202
#define SYS_sched_setaffinity 203
#define SYS_sched_getaffinity 204
#define SYS_set_tid_address 218
#define SYS_clock_gettime 228
#define SYS_clock_getres 229
#define SYS_clock_nanosleep 230
#define SYS_exit_group 231
#define SYS_epoll_wait 232
#define SYS_epoll_ctl 233
#define SYS_tgkill 234
#define SYS_openat 257
#define SYS_newfstatat 262
#define SYS_epoll_pwait 281
#define SYS_eventfd2 290
#define SYS_epoll_create1 291
#define SYS_prlimit64 302
#define SYS_getrandom 318
#define SYS_rseq 334

#define MAP_ANONYMOUS 0x20
#define ARCH_SET_FS 0x1002
#define ARCH_GET_FS 0x1003
#define PID 100

i64 sys_clone(struct trapframe *tf, u64 flags, u64 stack, u64 tls);
i64 sys_clock_gettime(int clk, u64 ts);
i64 sys_gettimeofday(u64 tv);
i64 sys_sched_getaffinity(int pid, u64 len, u64 mask);
i64 sys_sched_setaffinity(int pid, u64 len, u64 mask);
i64 sys_uname(u64 buf);
i64 sys_prlimit64(int pid, int res, u64 new, u64 old);
i64 sys_clock_nanosleep(int clk, int flags, u64 req);

static u64 enosys_seen[8];

static i64 enosys(u64 nr) {
	if (nr < 512 && !(enosys_seen[nr / 64] & (1ULL << (nr % 64)))) {
		enosys_seen[nr / 64] |= 1ULL << (nr % 64);
		kprintf("boot: syscall %lu not implemented (ENOSYS)\n", nr);
	}
	return -ENOSYS;
}

static i64 sys_mmap(u64 addr, u64 len, int prot, int flags, int fd, u64 off) {
	if (flags & MAP_ANONYMOUS)
		return vm_mmap(addr, len, prot, flags, V_ANON, 0);
	return fs_mmap_devmem(fd, addr, len, prot, flags, off);
}

static i64 sys_arch_prctl(int code, u64 addr) {
	if (code == ARCH_SET_FS) {
		cur()->fsbase = addr;
		wrmsr(MSR_FS_BASE, addr);
		return 0;
	}
	if (code == ARCH_GET_FS && user_ok(addr, 8)) {
		*(u64 *)addr = cur()->fsbase;
		return 0;
	}
	return -EINVAL;
}

static i64 dispatch(struct trapframe *tf) {
	u64 a0 = tf->rdi, a1 = tf->rsi, a2 = tf->rdx, a3 = tf->r10, a4 = tf->r8, a5 = tf->r9;
	switch (tf->rax) {
	case SYS_read: return sys_read((int)a0, a1, a2);
	case SYS_write: return sys_write((int)a0, a1, a2);
	case SYS_close: return sys_close((int)a0);
	case SYS_fstat: return sys_fstat((int)a0, a1);
	case SYS_newfstatat: return a3 & 0x1000 ? sys_fstat((int)a0, a2) : -ENOENT;
	case SYS_mmap: return sys_mmap(a0, a1, (int)a2, (int)a3, (int)a4, a5);
	case SYS_mprotect: return vm_mprotect(a0, a1, (int)a2);
	case SYS_munmap: return vm_munmap(a0, a1);
	case SYS_madvise: return vm_madvise(a0, a1, (int)a2);
	case SYS_brk: return 0;
	case SYS_rt_sigaction: return sys_rt_sigaction((int)a0, a1, a2, a3);
	case SYS_rt_sigprocmask: return sys_rt_sigprocmask((int)a0, a1, a2, a3);
	case SYS_rt_sigreturn: return sys_rt_sigreturn(tf);
	case SYS_sigaltstack: return sys_sigaltstack(a0, a1);
	case SYS_ioctl: return sys_ioctl((int)a0, a1, a2);
	case SYS_sched_yield: yield(); return 0;
	case SYS_nanosleep: return sys_nanosleep(a0, a1);
	case SYS_clock_nanosleep: return sys_clock_nanosleep((int)a0, (int)a1, a2);
	case SYS_getpid: return PID;
	case SYS_getppid: return 0;
	case SYS_getuid: case SYS_getgid: case SYS_geteuid: case SYS_getegid: return 0;
	case SYS_gettid: return cur()->tid;
	case SYS_set_tid_address: return cur()->tid;
	case SYS_clone: return sys_clone(tf, a0, a1, a4);
	case SYS_exit: thread_exit();
	case SYS_exit_group: exit_group((int)a0);
	case SYS_kill: return sys_kill((int)a0, (int)a1);
	case SYS_tkill: return sys_tgkill(PID, (int)a0, (int)a1);
	case SYS_tgkill: return sys_tgkill((int)a0, (int)a1, (int)a2);
	case SYS_uname: return sys_uname(a0);
	case SYS_fcntl: return sys_fcntl((int)a0, (int)a1, a2);
	case SYS_prctl: return a0 == PR_DOPPEL_KICK ? sys_kick((int)a1) : 0;
	case SYS_arch_prctl: return sys_arch_prctl((int)a0, a1);
	case SYS_reboot: return sys_reboot((u32)a0, (u32)a1, (u32)a2);
	case SYS_futex: return sys_futex(a0, (int)a1, (u32)a2, a3);
	case SYS_sched_getaffinity: return sys_sched_getaffinity((int)a0, a1, a2);
	case SYS_sched_setaffinity: return sys_sched_setaffinity((int)a0, a1, a2);
	case SYS_clock_getres: return sys_clock_gettime(-1, a1);
	case SYS_epoll_create1: return sys_epoll_create1((int)a0);
	case SYS_epoll_ctl: return sys_epoll_ctl((int)a0, (int)a1, (int)a2, a3);
	case SYS_epoll_wait:
	case SYS_epoll_pwait: return sys_epoll_pwait((int)a0, a1, (int)a2, (int)a3);
	case SYS_eventfd2: return sys_eventfd2((u32)a0, (int)a1);
	case SYS_openat: return sys_openat((int)a0, a1, (int)a2);
	case SYS_prlimit64: return sys_prlimit64((int)a0, (int)a1, a2, a3);
	case SYS_getrandom: return sys_getrandom(a0, a1, (int)a2);
	case SYS_rseq: return -ENOSYS;
	}
	return enosys(tf->rax);
}

u64 syscall_counts[NSYSCALLS];

void syscall_handler(struct trapframe *tf) {
	switch (tf->rax) { /* lock-free fast paths */
	case SYS_clock_gettime:
		tf->rax = (u64)sys_clock_gettime((int)tf->rdi, tf->rsi);
		return;
	case 96: /* gettimeofday */
		tf->rax = (u64)sys_gettimeofday(tf->rdi);
		return;
	case SYS_gettid:
		tf->rax = (u64)mycpu()->cur->tid;
		return;
	case SYS_nanosleep:
		if (nanosleep_short(tf->rdi)) {
			__atomic_fetch_add(&stats.lockfree_sleeps, 1, __ATOMIC_RELAXED);
			tf->rax = 0;
			return;
		}
		break;
	case SYS_epoll_pwait:
	case SYS_epoll_wait:
	{
		i64 n;
		if (epoll_poll_lockfree((int)tf->rdi, tf->rsi, (int)tf->rdx, (int)tf->r10, &n)) {
			__atomic_fetch_add(&stats.lockfree_polls, 1, __ATOMIC_RELAXED);
			tf->rax = (u64)n;
			return;
		}
		break;
	}
	}
	lock();
	lock_what(LOCK_SYSCALL + tf->rax);
	stats.syscalls++;
	if (tf->rax < NSYSCALLS)
		syscall_counts[tf->rax]++;
	tf->rax = (u64)dispatch(tf);
	return_to_go(tf);
}
