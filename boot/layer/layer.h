/* layer.h: types, constants and prototypes shared by the boot layer's C files.
 * Constants keep the names of the manuals they come from: Intel SDM Vol. 3A
 * (paging ch. 4, interrupts ch. 6, APIC ch. 11), the Linux x86-64 ABI
 * (asm/signal.h, asm/sigcontext.h, asm/ucontext.h), Multiboot 1/2, ACPI 6. */
#ifndef LAYER_H
#define LAYER_H

#include <stdint.h>
#include <stddef.h>
#include <stdarg.h>
#include "asmdefs.h"

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int64_t i64;

#define PAGE 4096ULL
#define ALIGN_UP(x, a) (((x) + (a) - 1) & ~((u64)(a) - 1))
#define ALIGN_DOWN(x, a) ((x) & ~((u64)(a) - 1))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* Address-space layout (see doc.go). */
#define DIRECT_MAP 0xffff800000000000ULL /* all physical memory, PML4[256..] */
#define P2V(pa) ((void *)((u64)(pa) + DIRECT_MAP))
#define USER_MAX 0x0000800000000000ULL /* end of the canonical lower half */
#define MMAP_TOP 0x00007f0000000000ULL /* top-down search for mmap(NULL) */
#define STACK_TOP 0x00007ff000000000ULL /* main thread stack (8 MiB VMA) */
#define STACK_SIZE (8ULL << 20)
#define AP_TRAMPOLINE 0x8000ULL /* SIPI vector 0x08, SDM 3A 8.4.4.1 */

#define MAX_CPUS 16
#define MAX_THREADS 128
/* XSAVE_AREA_MAX bounds a thread's extended-state image: the standard-
 * format area for x87, SSE, AVX and AVX-512 is 2688 bytes (SDM Vol. 1
 * 13.4; CPUID 0xD.0 EBX gives the size for the XCR0 set). */
#define XSAVE_AREA_MAX 3072
#define HZ 250 /* time slice 4 ms; timeouts are exact (one-shot LAPIC) */
#define SLICE_NS (1000000000ULL / HZ)

/* Page-table entry bits, SDM Vol. 3A Table 4-19/4-20. */
#define PTE_P (1ULL << 0)
#define PTE_W (1ULL << 1)
#define PTE_PWT (1ULL << 3)
#define PTE_PCD (1ULL << 4)
#define PTE_PS (1ULL << 7)
#define PTE_ANON (1ULL << 9) /* software: frame owned by the mapping */
#define PTE_NX (1ULL << 63)
#define PTE_ADDR 0x000ffffffffff000ULL

/* Linux errno values (asm-generic/errno-base.h). */
#define EPERM 1
#define ENOENT 2
#define ESRCH 3
#define EINTR 4
#define EIO 5
#define EBADF 9
#define EAGAIN 11
#define ENOMEM 12
#define EFAULT 14
#define EINVAL 22
#define EMFILE 24
#define ENOTTY 25
#define ENOSYS 38
#define ETIMEDOUT 110

/* ---- trap frame: built by vectors.S, offsets in asmdefs.h ---- */
struct trapframe {
	u64 r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
	u64 vector, error;
	u64 rip, cs, rflags, rsp, ss; /* SDM 3A Figure 6-9, 64-bit frame */
};

/* Callee-saved context saved by swtch (vectors.S). */
struct context {
	u64 r15, r14, r13, r12, rbp, rbx, rip;
};

enum tstate { T_FREE, T_RUNNABLE, T_RUNNING, T_BLOCKED, T_ZOMBIE };
enum wkind { W_NONE, W_FUTEX, W_SLEEP, W_EPOLL, W_CONSOLE, W_IRQ, W_EVENTFD, W_CONSOLE_TX };

struct thread {
	u8 fx[XSAVE_AREA_MAX] __attribute__((aligned(64))); /* fpu_save image */
	struct context *ctx;
	u64 kstack_top;
	int state, tid, cpu, idle;
	u64 fsbase;
	u64 affinity;
	int wkind;
	u64 waddr;
	u64 deadline; /* monotonic ns, 0 = none */
	i64 wresult;
	u64 sigmask, sigpending;
	int sicode[65], sipid[65];
	u64 ss_sp, ss_size;
	int ss_flags;
	struct thread *next; /* run queue */
};

struct cpu {
	struct cpu *self;  /* CPU_SELF */
	u64 kstack_top;    /* CPU_KSTACK_TOP: current thread's kernel stack */
	u64 scratch;       /* CPU_SCRATCH: user RSP during syscall entry */
	struct thread *cur;
	struct thread *idle;
	int id, apic_id, online, holding;
	volatile u64 tlb_seen;
	u64 next_event; /* ns when this CPU's one-shot timer fires */
	/* APIC writes asked for under the lock, done just after it is
	 * released (unlock): under an emulator an APIC access can wait on the
	 * emulator's own lock, and the other CPUs would spin meanwhile. */
	u32 ipi_pending; /* CPUs (by index) owed a reschedule IPI */
	int arm_pending;
	u64 unmask_pending; /* I/O APIC GSIs to unmask */
	u64 arm_at; /* ns the one-shot timer is to fire at */
	struct context *boot_ctx;
	u64 tss[13];           /* 104-byte TSS, SDM 3A Figure 7-11 */
	u8 ist[4][4096] __attribute__((aligned(16)));
	u8 stack[KSTACK_SIZE] __attribute__((aligned(16))); /* boot + idle stack */
};

/* stats for /proc/doppel/stats */
struct stats {
	u64 syscalls, switches, pagefaults, ticks, ipis, irqs, signals;
	u64 lockfree_polls, lockfree_sleeps; /* atomic: counted outside the lock */
};
extern struct stats stats;
#define SHORT_SLEEP_NS 10000 /* nanosleeps below this wait on the clock (nanosleep_short) */
int nanosleep_short(u64 req);
int epoll_poll_lockfree(int epfd, u64 events, int max, int timeout, i64 *ret);
struct lockstat {
	u64 used, what, count, held, waits, waited; /* held and waited in TSC ticks */
};
#define NLOCKSTAT 128
#define LOCK_SYSCALL 0x1000 /* lock_what(LOCK_SYSCALL + n): system call n; else a vector */
void lock_what(u64 what);
void defer_ipi(struct cpu *c);
void irq_mask_line(int gsi);
void defer_timer(u64 at);
void defer_unmask(int gsi);
int lockstat_gen(char *b, int m);
#define NSYSCALLS 336 /* syscall numbers counted per number (amd64 Linux's up to rseq's 334) */
extern u64 syscall_counts[NSYSCALLS];

/* ---- lib.c ---- */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
int snprintf(char *buf, size_t n, const char *fmt, ...);
int vsnprintf(char *buf, size_t n, const char *fmt, va_list ap);
u64 parse_size(const char *s, int *ok);

/* ---- serial.c ---- */
void serial_init(void);
void serial_write(const char *s, size_t n);
int serial_drained(void);
u32 serial_queued(void);
void kprintf(const char *fmt, ...);
void serial_irq(void);
int console_read(char *buf, size_t n);
int console_avail(void);

/* ---- cpu.c ---- */
static inline u64 rdmsr(u32 msr) {
	u32 lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((u64)hi << 32) | lo;
}
static inline void wrmsr(u32 msr, u64 v) {
	__asm__ volatile("wrmsr" ::"c"(msr), "a"((u32)v), "d"((u32)(v >> 32)));
}
static inline void outb(u16 p, u8 v) { __asm__ volatile("outb %0,%1" ::"a"(v), "Nd"(p)); }
static inline void outw(u16 p, u16 v) { __asm__ volatile("outw %0,%1" ::"a"(v), "Nd"(p)); }
static inline u8 inb(u16 p) {
	u8 v;
	__asm__ volatile("inb %1,%0" : "=a"(v) : "Nd"(p));
	return v;
}
static inline u16 inw(u16 p) {
	u16 v;
	__asm__ volatile("inw %1,%0" : "=a"(v) : "Nd"(p));
	return v;
}
static inline u64 rdtsc(void) {
	u32 lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((u64)hi << 32) | lo;
}
static inline void cpuid(u32 leaf, u32 sub, u32 r[4]) {
	__asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}
static inline struct cpu *mycpu(void) {
	struct cpu *c;
	__asm__ volatile("movq %%gs:0, %0" : "=r"(c));
	return c;
}
static inline u64 read_cr2(void) {
	u64 v;
	__asm__ volatile("mov %%cr2, %0" : "=r"(v));
	return v;
}
static inline u64 read_cr3(void) {
	u64 v;
	__asm__ volatile("mov %%cr3, %0" : "=r"(v));
	return v;
}
static inline void write_cr3(u64 v) { __asm__ volatile("mov %0, %%cr3" ::"r"(v) : "memory"); }
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }

#define MSR_EFER 0xC0000080
#define MSR_STAR 0xC0000081
#define MSR_LSTAR 0xC0000082
#define MSR_FMASK 0xC0000084
#define MSR_FS_BASE 0xC0000100
#define MSR_GS_BASE 0xC0000101
#define MSR_APIC_BASE 0x1B

extern struct cpu cpus[MAX_CPUS];
extern int ncpus;
void cpu_init(struct cpu *c, int id);
void fpu_init(void);
void fpu_save(u8 *area);
void fpu_restore(const u8 *area);
extern u64 xsave_mask; /* XCR0 on every CPU; 0: no XSAVE, FXSAVE images */
extern u32 xsave_size; /* bytes of one image under xsave_mask */
extern u32 cpu_features_ecx, cpu_features_edx;

/* ---- mem.c / paging.c ---- */
struct region {
	u64 start, end;
	int type; /* 1 usable 2 reserved 3 acpi 4 nvs 5 bad, 100 kernel, 101 doppel-reserved */
};
#define MAX_REGIONS 64
extern struct region memmap[MAX_REGIONS];
extern int nmemmap;
extern u64 kernel_start, kernel_end, reserve_start, reserve_end, phys_top;
void mem_init(void);
u64 early_alloc(void);
u64 frame_alloc(void); /* zeroed, 0 when out of memory */
void frame_free(u64 pa);
u64 frames_free(void);
u64 frames_used(void);
int phys_is_ram(u64 pa);

extern u64 kernel_pml4;
u64 *pte_walk(u64 va, int create);
int map_page(u64 va, u64 pa, u64 flags);
u64 unmap_range(u64 start, u64 end, int free_frames);
void paging_init(void);
void tlb_shootdown(void);

/* ---- vm.c ---- */
#define PROT_READ 1
#define PROT_WRITE 2
#define PROT_EXEC 4
enum vkind { V_ANON, V_DEVMEM, V_FIXED };
int vm_fault(u64 addr, u64 err, int *code);
i64 vm_mmap(u64 addr, u64 len, int prot, int flags, int kind, u64 phys);
i64 vm_munmap(u64 addr, u64 len);
i64 vm_madvise(u64 addr, u64 len, int advice);
i64 vm_mprotect(u64 addr, u64 len, int prot);
int vm_add(u64 start, u64 end, int prot, int kind, u64 phys);
int user_ok(u64 p, u64 n);

/* ---- multiboot.c ---- */
#define MAX_MODULES 16
struct module {
	u64 start, end;
	/* 448: sixteen modules' lines still fit /proc/doppel/modules (one
	 * 8 KiB procfs buffer); a longer one is cut with a warning. */
	char name[448];
};
extern struct module modules[MAX_MODULES];
extern int nmodules;
extern char cmdline[1024];
extern u64 rsdp_phys;
extern u64 mbinfo_end;
void multiboot_parse(u32 magic, u32 info);

/* ---- flags (main.c) ---- */
extern u64 flag_reserve;
extern int flag_fatal_reboot, flag_smp, flag_xsave_sse;

/* ---- elf.c ---- */
extern u64 go_entry, go_image_start, go_image_end, go_phys, go_file_end;
u64 elf_span(void);
void elf_load(u64 phys);
void elf_map(void);
u64 build_initial_stack(void);

/* ---- time.c ---- */
extern u64 tsc_hz;
void time_init(void);
u64 nanotime(void);
u64 realtime_ns(void);
void udelay(u64 us);

/* ---- apic.c / acpi.c ---- */
extern int ncpu_found;
extern u32 cpu_apic_ids[MAX_CPUS];
extern u64 ioapic_phys;
extern u32 ioapic_gsi_base;
void acpi_init(void);
int acpi_s5(void);
int isa_to_gsi(int irq, int *flags);
void lapic_init(void);
void lapic_timer_start(void);
void lapic_timer_arm(u64 ns);
void lapic_count_start(void);
u32 lapic_count_read(void);
void lapic_set_rate(u32 hz);
void lapic_eoi(void);
u32 lapic_id(void);
void lapic_ipi(u32 apic, u32 icr_low);
#define ICR_NMI 0x4400 /* ICR delivery mode 100b (NMI), level assert; vector ignored */
void ioapic_route(int gsi, int vector, int level, int low, int masked);
void ioapic_mask(int gsi, int masked);
void pic_disable(void);

/* ---- smp.c ---- */
void smp_start(void);

/* ---- sched.c ---- */
extern volatile int bkl;
void lock(void);
void unlock(void);
struct thread *cur(void);
struct thread *thread_alloc(void);
struct thread *thread_by_tid(int tid);
extern struct thread threads[MAX_THREADS];
void thread_init_frame(struct thread *t, struct trapframe *tf);
void wake(struct thread *t, i64 result);
i64 block(int kind, u64 addr, u64 deadline);
void yield(void);
void sched_start_on(u64 stack_top);
void sched_migrate(void);
void tlb_check(struct cpu *c);
void paging_ready(void);
u64 mem_place(u64 span);
void sched_timer(void);
void kick_cpu(struct thread *t);
void thread_exit(void) __attribute__((noreturn));
int online_mask(void);
extern u64 go_tid_next;

/* ---- trap.c ---- */
void trap_handler(struct trapframe *tf);
void return_to_go(struct trapframe *tf);
void fatal(const char *why, struct trapframe *tf) __attribute__((noreturn));
void idt_init(void);
void idt_load(void);

/* ---- signal.c ---- */
#define SIGILL 4
#define SIGTRAP 5
#define SIGBUS 7
#define SIGFPE 8
#define SIGKILL 9
#define SIGSEGV 11
#define SIGURG 23
i64 sys_rt_sigaction(int sig, u64 act, u64 old, u64 size);
i64 sys_rt_sigprocmask(int how, u64 set, u64 old, u64 size);
i64 sys_sigaltstack(u64 ss, u64 old);
i64 sys_rt_sigreturn(struct trapframe *tf);
i64 sys_tgkill(int tgid, int tid, int sig);
i64 sys_kill(int pid, int sig);
/* prctl(PR_DOPPEL_KICK, tid): doppel's own option ("KICK"), see sys_kick. */
#define PR_DOPPEL_KICK 0x4B49434B
i64 sys_kick(int tid);
void signal_deliver(struct trapframe *tf);
void signal_fault(struct trapframe *tf, int sig, int code, u64 addr);

/* ---- syscall.c / fs.c / futex.c ---- */
void syscall_handler(struct trapframe *tf);
i64 sys_futex(u64 addr, int op, u32 val, u64 ts);
i64 sys_nanosleep(u64 req, u64 rem);
i64 sys_openat(int dirfd, u64 path, int flags);
i64 sys_read(int fd, u64 buf, u64 n);
i64 sys_write(int fd, u64 buf, u64 n);
i64 sys_close(int fd);
i64 sys_fcntl(int fd, int cmd, u64 arg);
i64 sys_fstat(int fd, u64 st);
i64 sys_eventfd2(u32 init, int flags);
i64 sys_epoll_create1(int flags);
i64 sys_epoll_ctl(int epfd, int op, int fd, u64 ev);
i64 sys_epoll_pwait(int epfd, u64 events, int max, int timeout);
i64 fs_mmap_devmem(int fd, u64 addr, u64 len, int prot, int flags, u64 off);
void fs_init(void);
int procfs_gen(const char *p, char *b, int m);
void irq_fire(int gsi);
i64 sys_getrandom(u64 buf, u64 n, int flags);
void random_bytes(u8 *p, u64 n);
void wake_console(void);
void wake_console_tx(void);
i64 sys_ioctl(int fd, u64 cmd, u64 arg);

/* ---- power.c ---- */
void power_off(void) __attribute__((noreturn));
void power_restart(void) __attribute__((noreturn));
void power_halt(void) __attribute__((noreturn));
void exit_group(int code) __attribute__((noreturn));
i64 sys_reboot(u32 m1, u32 m2, u32 cmd);

/* asm */
void swtch(struct context **old, struct context *new);
void thread_entry(void);
void trap_return(void);
void syscall_entry(void);
extern char vectors[];
extern char ap_tramp_start[], ap_tramp_end[];
extern char _layer_start[], _text_end[], _end[];
extern char goelf_start[], goelf_end[];

#endif
