/* fs.c: the file descriptors the layer serves (CONTRACT.md): the console
 * on 0-2, files under /proc and /dev generated at open, /dev/mem for
 * mmap, /dev/irq/<n>, /dev/urandom, and eventfd/epoll for Go's netpoller.
 * Only eventfds and /dev/irq/<n> can be added to an epoll set (an irq fd
 * is readable while its line has fired since the last read): epoll_ctl
 * on anything else fails with EPERM, as Linux does for regular files, so
 * Go falls back to blocking reads on those. */
#include "layer.h"

#define MAX_FILES 64
#define O_NONBLOCK 0x800
#define EPOLLIN 0x1
#define EPOLLOUT 0x4
#define NPROCBUF 16
#define PROCBUF 8192

enum ftype { F_NONE, F_CONSOLE, F_PROC, F_DEVMEM, F_IRQ, F_RANDOM, F_NULL, F_EVENTFD, F_EPOLL };

struct epitem {
	int fd;
	u32 events;
	u64 data;
};
struct file {
	int type, flags, gsi, slot;
	u64 count, len, off;
	struct epitem ep[8];
	int nep;
	u32 seq; /* epoll: odd while epoll_ctl edits ep (epoll_poll_lockfree) */
};
static struct file files[MAX_FILES];
static char procbuf[NPROCBUF][PROCBUF];
static int procbuf_used[NPROCBUF];
static struct {
	u64 count;
	int routed;
} irqs[NGSI + NMSI]; /* I/O APIC GSIs, then MSI lines */
static int com1_gsi = 4;

void fs_init(void) {
	for (int i = 0; i < 3; i++)
		files[i].type = F_CONSOLE, files[i].flags = 2; /* O_RDWR */
	int fl;
	com1_gsi = isa_to_gsi(4, &fl);
	ioapic_route(com1_gsi, VEC_IRQ0 + com1_gsi, 0, 0, 0);
}

static struct file *getf(int fd, int type) {
	if (fd < 0 || fd >= MAX_FILES || files[fd].type == F_NONE)
		return 0;
	if (type != F_NONE && files[fd].type != type)
		return 0;
	return &files[fd];
}

static int newfd(int type) {
	for (int i = 3; i < MAX_FILES; i++)
		if (files[i].type == F_NONE) {
			memset(&files[i], 0, sizeof files[i]);
			files[i].type = type;
			return i;
		}
	return -EMFILE;
}

static i64 open_proc(const char *p) {
	int s = 0;
	while (s < NPROCBUF && procbuf_used[s])
		s++;
	if (s == NPROCBUF)
		return -EMFILE;
	int len = procfs_gen(p, procbuf[s], PROCBUF);
	if (len < 0)
		return -ENOENT;
	int fd = newfd(F_PROC);
	if (fd < 0)
		return fd;
	procbuf_used[s] = 1;
	files[fd].slot = s;
	files[fd].len = (u64)len;
	return fd;
}

/* number parses a decimal file name; -1 if it is not one. */
static int number(const char *n) {
	int v = 0;
	if (!*n)
		return -1;
	for (; *n; n++) {
		if (*n < '0' || *n > '9' || v > 100000)
			return -1;
		v = v * 10 + (*n - '0');
	}
	return v;
}

/* open_irq routes GSI (ISA IRQ n through the MADT overrides; n >= 16 is a
 * GSI, PCI style: level, active low) to VEC_IRQ0 + gsi, unmasked. */
static i64 open_irq(const char *n) {
	int v = number(n), fl = 0;
	if (v < 0)
		return -ENOENT;
	int gsi = v < 16 ? isa_to_gsi(v, &fl) : v;
	if (gsi >= NGSI || gsi == com1_gsi)
		return -ENOENT;
	int level = v < 16 ? (fl >> 2 & 3) == 3 : 1, low = v < 16 ? (fl & 3) == 3 : 1;
	int fd = newfd(F_IRQ);
	if (fd < 0)
		return fd;
	files[fd].gsi = gsi;
	if (!irqs[gsi].routed)
		ioapic_route(gsi, VEC_IRQ0 + gsi, level, low, 0), irqs[gsi].routed = 1;
	return fd;
}

/* open_msi: MSI line k is vector VEC_IRQ0 + NGSI + k on the BSP; the
 * driver programs the device with that message (CONTRACT.md). No I/O
 * APIC pin and no masking: a message is an edge, it cannot storm. */
static i64 open_msi(const char *n) {
	int k = number(n);
	if (k < 0 || k >= NMSI)
		return -ENOENT;
	int fd = newfd(F_IRQ);
	if (fd >= 0)
		files[fd].gsi = NGSI + k;
	return fd;
}

i64 sys_openat(int dirfd, u64 path, int flags) {
	char p[128];
	(void)dirfd;
	if (!user_ok(path, 1))
		return -EFAULT;
	int i = 0;
	for (; i < 127 && user_ok(path + i, 1) && ((char *)path)[i]; i++)
		p[i] = ((char *)path)[i];
	p[i] = 0;
	i64 fd;
	if (!strcmp(p, "/dev/mem"))
		fd = newfd(F_DEVMEM);
	else if (!strcmp(p, "/dev/urandom") || !strcmp(p, "/dev/random"))
		fd = newfd(F_RANDOM);
	else if (!strcmp(p, "/dev/null"))
		fd = newfd(F_NULL);
	else if (!strncmp(p, "/dev/irq/", 9))
		fd = open_irq(p + 9);
	else if (!strncmp(p, "/dev/msi/", 9))
		fd = open_msi(p + 9);
	else if (!strncmp(p, "/proc/", 6))
		fd = open_proc(p);
	else
		fd = -ENOENT;
	if (fd >= 0)
		files[fd].flags = flags & O_NONBLOCK;
	return fd;
}

static i64 read_irq(struct file *f, u64 buf) {
	for (;;) {
		u64 c = irqs[f->gsi].count;
		if (c) {
			irqs[f->gsi].count = 0;
			*(u64 *)buf = c;
			if (f->gsi < NGSI)
				defer_unmask(f->gsi);
			return 8;
		}
		if (f->flags & O_NONBLOCK)
			return -EAGAIN;
		block(W_IRQ, (u64)f->gsi, 0);
	}
}

static i64 read_eventfd(struct file *f, u64 buf) {
	while (!f->count) {
		if (f->flags & O_NONBLOCK)
			return -EAGAIN;
		block(W_EVENTFD, (u64)f, 0);
	}
	*(u64 *)buf = f->count;
	f->count = 0;
	return 8;
}

i64 sys_read(int fd, u64 buf, u64 n) {
	struct file *f = getf(fd, F_NONE);
	if (!f)
		return -EBADF;
	if (!user_ok(buf, n))
		return -EFAULT;
	switch (f->type) {
	case F_CONSOLE:
		while (!console_avail())
			block(W_CONSOLE, 0, 0);
		return console_read((char *)buf, n);
	case F_PROC: {
		u64 k = f->off < f->len ? MIN(n, f->len - f->off) : 0;
		memcpy((void *)buf, procbuf[f->slot] + f->off, k);
		f->off += k;
		return (i64)k;
	}
	case F_RANDOM:
		random_bytes((u8 *)buf, n);
		return (i64)n;
	case F_IRQ:
		return n < 8 ? -EINVAL : read_irq(f, buf);
	case F_EVENTFD:
		return n < 8 ? -EINVAL : read_eventfd(f, buf);
	case F_NULL:
		return 0;
	}
	return -EINVAL;
}

void wake_all(int kind) {
	for (int i = 0; i < MAX_THREADS; i++)
		if (threads[i].state == T_BLOCKED && threads[i].wkind == kind)
			wake(&threads[i], 0);
}

void wake_console(void) { wake_all(W_CONSOLE); }
void wake_console_tx(void) { wake_all(W_CONSOLE_TX); }

#define TCSBRK 0x5409 /* tcdrain(3) is ioctl(fd, TCSBRK, 1) */

/* sys_ioctl: on the console, TCSBRK waits until what was written has gone
 * to the UART (a break is not sent); everything else is ENOTTY. A UART
 * that takes nothing for a second fails the wait with EIO. */
i64 sys_ioctl(int fd, u64 cmd, u64 arg) {
	(void)arg;
	struct file *f = getf(fd, F_NONE);
	if (!f)
		return -EBADF;
	if (f->type != F_CONSOLE || cmd != TCSBRK)
		return -ENOTTY;
	u32 left = serial_queued();
	u64 stuck = nanotime() + 1000000000ULL;
	while (!serial_drained()) {
		u32 now = serial_queued();
		if (now < left)
			left = now, stuck = nanotime() + 1000000000ULL;
		else if (nanotime() >= stuck)
			return -EIO;
		block(W_CONSOLE_TX, 0, nanotime() + 10000000ULL);
	}
	return 0;
}

i64 sys_write(int fd, u64 buf, u64 n) {
	struct file *f = getf(fd, F_NONE);
	if (!f)
		return -EBADF;
	if (!user_ok(buf, n))
		return -EFAULT;
	if (f->type == F_CONSOLE) {
		serial_write((const char *)buf, n);
		return (i64)n;
	}
	if (f->type == F_EVENTFD) {
		if (n < 8)
			return -EINVAL;
		f->count += *(u64 *)buf;
		wake_all(W_EVENTFD);
		wake_all(W_EPOLL);
		return 8;
	}
	return f->type == F_NULL ? (i64)n : -EINVAL;
}

i64 sys_close(int fd) {
	struct file *f = getf(fd, F_NONE);
	if (!f)
		return -EBADF;
	if (fd < 3)
		return 0;
	if (f->type == F_PROC)
		procbuf_used[f->slot] = 0;
	f->type = F_NONE;
	return 0;
}

i64 sys_fcntl(int fd, int cmd, u64 arg) {
	struct file *f = getf(fd, F_NONE);
	if (!f)
		return -EBADF;
	switch (cmd) {
	case 1: /* F_GETFD */
	case 2: /* F_SETFD */
		return 0;
	case 3: /* F_GETFL */
		return f->flags | (fd < 3 ? 2 : 0);
	case 4: /* F_SETFL */
		f->flags = (int)(arg & O_NONBLOCK);
		return 0;
	}
	return -EINVAL;
}

/* sys_fstat: a struct stat with st_mode (offset 24) and st_size (48). */
i64 sys_fstat(int fd, u64 st) {
	struct file *f = getf(fd, F_NONE);
	if (!f)
		return -EBADF;
	if (!user_ok(st, 144))
		return -EFAULT;
	memset((void *)st, 0, 144);
	*(u32 *)(st + 24) = f->type == F_PROC ? 0100444 : 0020666;
	*(u64 *)(st + 48) = f->type == F_PROC ? f->len : 0;
	*(u64 *)(st + 56) = PAGE;
	return 0;
}

i64 sys_eventfd2(u32 init, int flags) {
	int fd = newfd(F_EVENTFD);
	if (fd >= 0)
		files[fd].count = init, files[fd].flags = flags & O_NONBLOCK;
	return fd;
}

i64 sys_epoll_create1(int flags) {
	(void)flags;
	return newfd(F_EPOLL);
}

/* epoll_edit brackets an edit of e's items for lock-free readers. */
static void epoll_edit(struct file *e, int begin) {
	if (begin) {
		__atomic_store_n(&e->seq, e->seq + 1, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_RELEASE);
	} else {
		__atomic_store_n(&e->seq, e->seq + 1, __ATOMIC_RELEASE);
	}
}

i64 sys_epoll_ctl(int epfd, int op, int fd, u64 ev) {
	struct file *e = getf(epfd, F_EPOLL);
	if (!e)
		return -EBADF;
	if (!getf(fd, F_NONE))
		return -EBADF;
	if (!getf(fd, F_EVENTFD) && !getf(fd, F_IRQ))
		return -EPERM;
	int i = 0;
	while (i < e->nep && e->ep[i].fd != fd)
		i++;
	if (op == 2) { /* EPOLL_CTL_DEL */
		if (i == e->nep)
			return -ENOENT;
		epoll_edit(e, 1);
		e->ep[i] = e->ep[--e->nep];
		epoll_edit(e, 0);
		return 0;
	}
	if (!user_ok(ev, 12))
		return -EFAULT;
	if (op == 1 && i < e->nep)
		return -17; /* EEXIST */
	if (op == 3 && i == e->nep)
		return -ENOENT;
	if (i == e->nep && e->nep == 8)
		return -ENOMEM;
	struct epitem it = {fd, *(u32 *)ev, *(u64 *)(ev + 4)};
	epoll_edit(e, 1);
	if (i == e->nep)
		e->nep++;
	e->ep[i] = it;
	epoll_edit(e, 0);
	return 0;
}

static int collect(struct file *e, u64 out, int max) {
	int n = 0;
	for (int i = 0; i < e->nep && n < max; i++) {
		struct file *f = getf(e->ep[i].fd, F_NONE);
		u32 r = 0;
		if (f && f->type == F_EVENTFD)
			r = (f->count ? EPOLLIN : 0) | EPOLLOUT;
		else if (f && f->type == F_IRQ)
			r = irqs[f->gsi].count ? EPOLLIN : 0;
		r &= e->ep[i].events;
		if (!r)
			continue;
		*(u32 *)(out + 12 * n) = r; /* struct epoll_event is packed */
		*(u64 *)(out + 12 * n + 4) = e->ep[i].data;
		n++;
	}
	return n;
}

i64 sys_epoll_pwait(int epfd, u64 events, int max, int timeout) {
	struct file *e = getf(epfd, F_EPOLL);
	if (!e)
		return -EBADF;
	if (max <= 0 || !user_ok(events, (u64)max * 12))
		return -EINVAL;
	u64 dl = timeout > 0 ? nanotime() + (u64)timeout * 1000000 : 0;
	for (;;) {
		int n = collect(e, events, max);
		if (n || !timeout)
			return n;
		if (block(W_EPOLL, (u64)epfd, dl) == -ETIMEDOUT)
			return collect(e, events, max);
	}
}

/* epoll_poll_lockfree serves the commonest system call of a busy Go
 * kernel, the scheduler's netpoll, without the big lock unless it has to
 * block: a poll with timeout 0, or one that finds an event ready (Go's
 * wake-up eventfd stays readable until a blocking poll reads it). It
 * stores the events in *ret and returns 1, or returns 0 when the caller
 * must take the locked path. collect only
 * reads the files: a count that changes while it looks is the same race
 * as a poll a moment earlier. The set's items are read under its sequence
 * count, which epoll_ctl makes odd while it edits them, so a torn item is
 * never used. */
int epoll_poll_lockfree(int epfd, u64 events, int max, int timeout, i64 *ret) {
	if (max <= 0 || !user_ok(events, (u64)max * 12))
		return 0;
	struct file *e = getf(epfd, F_EPOLL);
	if (!e)
		return 0;
	u32 seq = __atomic_load_n(&e->seq, __ATOMIC_ACQUIRE);
	if (seq & 1)
		return 0;
	int n = collect(e, events, max);
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	if (__atomic_load_n(&e->seq, __ATOMIC_RELAXED) != seq || (n == 0 && timeout != 0))
		return 0; /* torn, or it has to block */
	*ret = n;
	return 1;
}

i64 fs_mmap_devmem(int fd, u64 addr, u64 len, int prot, int flags, u64 off) {
	if (!getf(fd, F_DEVMEM))
		return -EBADF;
	if (off & (PAGE - 1))
		return -EINVAL;
	return vm_mmap(addr, len, prot, flags, V_DEVMEM, off);
}

/* irq_mask_line masks a /dev/irq line at the I/O APIC until its file is
 * read (lock not needed: trap.c calls it before taking it). */
void irq_mask_line(int gsi) {
	if (gsi != com1_gsi && gsi < NGSI)
		ioapic_mask(gsi, 1);
}

/* irq_fire: IRQ handler (lock held). /dev/irq lines are masked until the
 * next read, so a level-triggered device cannot storm; the handler masked
 * this one before it took the lock (trap.c, interrupt_ack). */
void irq_fire(int gsi) {
	if (gsi == com1_gsi) {
		serial_irq();
		return;
	}
	irqs[gsi].count++;
	wake_all(W_EPOLL); /* an irq fd in an epoll set became readable */
	for (int i = 0; i < MAX_THREADS; i++)
		if (threads[i].state == T_BLOCKED && threads[i].wkind == W_IRQ && threads[i].waddr == (u64)gsi)
			wake(&threads[i], 0);
}
