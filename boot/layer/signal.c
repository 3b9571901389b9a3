/* signal.c: Linux signals for one process (asm-generic/signal.h numbers,
 * x86-64 frame layout of arch/x86/kernel/signal.c: struct rt_sigframe =
 * pretcode, ucontext (uc_flags, uc_link, uc_stack, sigcontext, sigmask),
 * siginfo, then the FPU image the sigcontext's fpstate points at: with
 * XSAVE an XSAVE image marked as Linux marks it, struct _fpx_sw_bytes in
 * the legacy region's software bytes and FP_XSTATE_MAGIC2 after it).
 * Go's handler uses the frame to turn a fault into a panic and to inject
 * asyncPreempt calls on SIGURG; rt_sigreturn resumes whatever it left. */
#include "layer.h"

#define SA_SIGINFO 0x4
#define SA_ONSTACK 0x08000000
#define SA_RESTORER 0x04000000
#define SA_NODEFER 0x40000000
#define SA_RESETHAND 0x80000000
#define SIG_DFL 0
#define SIG_IGN 1
#define SS_ONSTACK 1
#define SS_DISABLE 2
#define SI_TKILL (-6)
#define SI_USER 0
#define BIT(s) (1ULL << ((s) - 1))
#define UNBLOCKABLE (BIT(SIGKILL) | BIT(19))

struct ksigaction {
	u64 handler, flags, restorer, mask;
};
static struct ksigaction sigact[65];

struct sigcontext {
	u64 r8, r9, r10, r11, r12, r13, r14, r15, rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip, eflags;
	u16 cs, gs, fs, ss;
	u64 err, trapno, oldmask, cr2, fpstate, reserved[8];
};
struct ucontext {
	u64 uc_flags, uc_link, ss_sp;
	int ss_flags, pad;
	u64 ss_size;
	struct sigcontext mc;
	u64 sigmask;
};
struct siginfo {
	int signo, err, code, pad;
	u64 f[14];
};
struct rt_sigframe {
	u64 pretcode;
	struct ucontext uc;
	struct siginfo info;
};
_Static_assert(sizeof(struct sigcontext) == 256, "sigcontext");
_Static_assert(sizeof(struct ucontext) == 304, "ucontext");
_Static_assert(sizeof(struct siginfo) == 128, "siginfo");

/* Linux's marks on an XSAVE image in a signal frame
 * (arch/x86/include/uapi/asm/sigcontext.h): uc_flags UC_FP_XSTATE, and
 * struct _fpx_sw_bytes at byte 464 of the legacy region, which XSAVE and
 * FXSAVE leave to software (SDM Vol. 1 10.5.1). */
#define UC_FP_XSTATE 1
#define FP_XSTATE_MAGIC1 0x46505853u
#define FP_XSTATE_MAGIC2 0x46505845u
#define FX_SW_BYTES 464
#define XSAVE_HDR 512 /* XSTATE_BV, XCOMP_BV, 48 reserved bytes */

/* fpstate_bytes is the room a frame's FPU image takes. */
static u64 fpstate_bytes(void) { return xsave_mask ? xsave_size + 4 : 512; }

/* save_fpstate writes the current FPU state at fp (64-byte aligned). */
static void save_fpstate(u8 *fp) {
	if (!xsave_mask) {
		fpu_save(fp);
		return;
	}
	memset(fp + XSAVE_HDR, 0, 64); /* XSAVE writes XSTATE_BV only */
	fpu_save(fp);
	u32 *sw = (u32 *)(fp + FX_SW_BYTES);
	memset(sw, 0, 48);
	sw[0] = FP_XSTATE_MAGIC1;
	sw[1] = xsave_size + 4; /* extended_size */
	*(u64 *)&sw[2] = xsave_mask; /* xfeatures */
	sw[4] = xsave_size; /* xstate_size */
	*(u32 *)(fp + xsave_size) = FP_XSTATE_MAGIC2;
}

/* restore_fpstate loads what save_fpstate wrote, if it still looks so:
 * XRSTOR raises #GP on a header with bits outside XCR0, a nonzero
 * XCOMP_BV or reserved bytes (Vol. 1 13.8), and both XRSTOR and FXRSTOR on
 * MXCSR reserved bits, which in the layer would be a fatal fault. An
 * image that fails the checks is ignored and the state is reset, so a
 * handler that scribbled on its frame gets fresh registers, not a crash
 * of the machine. */
static void restore_fpstate(u64 fp) {
	u8 *p = (u8 *)fp;
	int ok = !(fp & 15) && user_ok(fp, 512) && !(*(u32 *)(p + 24) & ~0xFFFFu); /* MXCSR */
	if (ok && xsave_mask) {
		u64 *hdr = (u64 *)(p + XSAVE_HDR);
		ok = !(fp & 63) && user_ok(fp, xsave_size) && !(hdr[0] & ~xsave_mask);
		for (int i = 1; ok && i < 8; i++)
			ok = !hdr[i];
	}
	if (ok)
		fpu_restore(p);
	else
		fpu_init();
}

i64 sys_rt_sigaction(int sig, u64 act, u64 old, u64 size) {
	if (sig < 1 || sig > 64 || size != 8)
		return -EINVAL;
	if ((act && !user_ok(act, 32)) || (old && !user_ok(old, 32)))
		return -EFAULT;
	struct ksigaction a;
	if (act)
		memcpy(&a, (void *)act, 32);
	if (old)
		memcpy((void *)old, &sigact[sig], 32);
	if (act) {
		if (BIT(sig) & UNBLOCKABLE)
			return -EINVAL;
		sigact[sig] = a;
	}
	return 0;
}

i64 sys_rt_sigprocmask(int how, u64 set, u64 old, u64 size) {
	struct thread *t = cur();
	if (size != 8 || (set && !user_ok(set, 8)) || (old && !user_ok(old, 8)))
		return -EINVAL;
	u64 s = set ? *(u64 *)set : 0;
	if (old)
		*(u64 *)old = t->sigmask;
	if (!set)
		return 0;
	if (how == 0)
		t->sigmask |= s;
	else if (how == 1)
		t->sigmask &= ~s;
	else if (how == 2)
		t->sigmask = s;
	else
		return -EINVAL;
	t->sigmask &= ~UNBLOCKABLE;
	return 0;
}

i64 sys_sigaltstack(u64 ss, u64 old) {
	struct thread *t = cur();
	if ((ss && !user_ok(ss, 24)) || (old && !user_ok(old, 24)))
		return -EFAULT;
	u64 nsp = 0, nsize = 0;
	int nflags = 0;
	if (ss)
		nsp = *(u64 *)ss, nflags = *(int *)(ss + 8), nsize = *(u64 *)(ss + 16);
	if (old) {
		*(u64 *)old = t->ss_sp;
		*(int *)(old + 8) = t->ss_size ? 0 : SS_DISABLE;
		*(u64 *)(old + 16) = t->ss_size;
	}
	if (ss) {
		t->ss_sp = (nflags & SS_DISABLE) ? 0 : nsp;
		t->ss_size = (nflags & SS_DISABLE) ? 0 : nsize;
	}
	return 0;
}

static void fill_mcontext(struct sigcontext *m, struct trapframe *tf) {
	m->r8 = tf->r8, m->r9 = tf->r9, m->r10 = tf->r10, m->r11 = tf->r11;
	m->r12 = tf->r12, m->r13 = tf->r13, m->r14 = tf->r14, m->r15 = tf->r15;
	m->rdi = tf->rdi, m->rsi = tf->rsi, m->rbp = tf->rbp, m->rbx = tf->rbx;
	m->rdx = tf->rdx, m->rax = tf->rax, m->rcx = tf->rcx, m->rsp = tf->rsp;
	m->rip = tf->rip, m->eflags = tf->rflags;
	m->cs = SEL_CODE64, m->ss = SEL_DATA;
	m->err = tf->vector < 32 ? tf->error : 0;
	m->trapno = tf->vector < 32 ? tf->vector : 0;
}

/* setup_frame builds the rt_sigframe on the Go stack, or on the
 * sigaltstack with SA_ONSTACK, and points tf at the handler. */
static void setup_frame(struct trapframe *tf, int sig, int code, u64 addr, int pid) {
	struct thread *t = cur();
	struct ksigaction *a = &sigact[sig];
	u64 sp = tf->rsp;
	int on = t->ss_size && sp > t->ss_sp && sp <= t->ss_sp + t->ss_size;
	if ((a->flags & SA_ONSTACK) && t->ss_size && !on)
		sp = t->ss_sp + t->ss_size;
	else
		sp -= 128; /* red zone */
	u64 fp = ALIGN_DOWN(sp - fpstate_bytes(), 64);
	struct rt_sigframe *f = (struct rt_sigframe *)(ALIGN_DOWN(fp - sizeof *f, 16) - 8);
	if (!user_ok((u64)f, fp + fpstate_bytes() - (u64)f))
		fatal("bad stack for a signal frame", tf);
	save_fpstate((u8 *)fp);
	memset(f, 0, sizeof *f);
	f->uc.uc_flags = xsave_mask ? UC_FP_XSTATE : 0;
	f->pretcode = a->restorer;
	f->uc.ss_sp = t->ss_sp, f->uc.ss_size = t->ss_size;
	f->uc.ss_flags = t->ss_size ? (on ? SS_ONSTACK : 0) : SS_DISABLE;
	fill_mcontext(&f->uc.mc, tf);
	f->uc.mc.cr2 = addr, f->uc.mc.fpstate = fp, f->uc.mc.oldmask = t->sigmask;
	f->uc.sigmask = t->sigmask;
	f->info.signo = sig, f->info.code = code;
	f->info.f[0] = pid ? ((u64)(u32)pid) : addr;
	t->sigmask |= a->mask | ((a->flags & SA_NODEFER) ? 0 : BIT(sig));
	t->sigmask &= ~UNBLOCKABLE;
	if (a->flags & SA_RESETHAND)
		a->handler = SIG_DFL;
	tf->rip = a->handler, tf->rsp = (u64)f, tf->rax = 0;
	tf->rdi = (u64)sig, tf->rsi = (u64)&f->info, tf->rdx = (u64)&f->uc;
	tf->rflags &= ~(0x400ULL | 0x100ULL); /* DF, TF */
	stats.signals++;
}

/* default_fatal: SIG_DFL actions that end the process (signal(7)). */
static int default_ignored(int sig) { return sig == 17 || sig == SIGURG || sig == 28; }

static void die(int sig, struct trapframe *tf) {
	char why[48];
	snprintf(why, sizeof why, "signal %d with no handler", sig);
	fatal(why, tf);
}

void signal_fault(struct trapframe *tf, int sig, int code, u64 addr) {
	if (sigact[sig].handler <= SIG_IGN)
		die(sig, tf);
	setup_frame(tf, sig, code, addr, 0);
}

void signal_deliver(struct trapframe *tf) {
	struct thread *t = cur();
	if (t->idle)
		return;
	u64 pend = t->sigpending & ~t->sigmask;
	if (!pend)
		return;
	int sig = __builtin_ctzll(pend) + 1;
	t->sigpending &= ~BIT(sig);
	setup_frame(tf, sig, t->sicode[sig], 0, t->sipid[sig]);
}

static i64 post(struct thread *t, int sig, int code) {
	u64 h = sigact[sig].handler;
	if (h == SIG_IGN || (h == SIG_DFL && default_ignored(sig)))
		return 0;
	if (h == SIG_DFL)
		die(sig, 0);
	t->sigpending |= BIT(sig);
	t->sicode[sig] = code;
	t->sipid[sig] = 100;
	struct cpu *c = &cpus[t->cpu];
	if (t->state == T_RUNNING && c != mycpu())
		defer_ipi(c);
	return 0;
}

i64 sys_tgkill(int tgid, int tid, int sig) {
	struct thread *t = thread_by_tid(tid);
	if (!t || (tgid != 100 && tgid != -1))
		return -ESRCH;
	if (sig < 0 || sig > 64)
		return -EINVAL;
	return sig ? post(t, sig, SI_TKILL) : 0;
}

/* sys_kick makes thread tid leave VMX non-root or SVM guest mode at once:
 * an NMI to the CPU it runs on, which exits the guest whatever the
 * guest's RFLAGS.IF (NMI exiting, SDM 3C 25.2; AMD-V's NMI intercept).
 * Bochs gives no external-interrupt exit to a guest running
 * with IF=0, so a reschedule IPI would wait for the guest's next exit of
 * its own. A thread that is not running on another CPU is not in a guest:
 * nothing is sent. Returns 1 if an NMI went out, 0 if not. */
i64 sys_kick(int tid) {
	struct thread *t = thread_by_tid(tid);
	if (!t)
		return -ESRCH;
	struct cpu *c = &cpus[t->cpu];
	if (t->state != T_RUNNING || c == mycpu())
		return 0;
	lapic_ipi(c->apic_id, ICR_NMI);
	return 1;
}

i64 sys_kill(int pid, int sig) {
	if (pid != 100 && pid != 0 && pid != -1)
		return -ESRCH;
	if (sig < 0 || sig > 64)
		return -EINVAL;
	return sig ? post(cur(), sig, SI_USER) : 0;
}

i64 sys_rt_sigreturn(struct trapframe *tf) {
	struct rt_sigframe *f = (struct rt_sigframe *)(tf->rsp - 8);
	if (!user_ok((u64)f, sizeof *f))
		fatal("rt_sigreturn: bad frame", tf);
	struct sigcontext *m = &f->uc.mc;
	tf->r8 = m->r8, tf->r9 = m->r9, tf->r10 = m->r10, tf->r11 = m->r11;
	tf->r12 = m->r12, tf->r13 = m->r13, tf->r14 = m->r14, tf->r15 = m->r15;
	tf->rdi = m->rdi, tf->rsi = m->rsi, tf->rbp = m->rbp, tf->rbx = m->rbx;
	tf->rdx = m->rdx, tf->rax = m->rax, tf->rcx = m->rcx, tf->rsp = m->rsp;
	tf->rip = m->rip;
	tf->rflags = (m->eflags & 0x40CD5) | 0x202; /* keep IF on, no TF */
	tf->cs = SEL_CODE64, tf->ss = SEL_DATA;
	cur()->sigmask = f->uc.sigmask & ~UNBLOCKABLE;
	if (m->fpstate)
		restore_fpstate(m->fpstate);
	return (i64)tf->rax;
}
