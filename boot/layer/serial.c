/* serial.c: COM1, a 16550A UART at I/O port 0x3F8 (PC16550D datasheet,
 * National Semiconductor, rev. 1995): 115200 8N1, received bytes buffered
 * by the IRQ 4 handler for read(0).
 *
 * Output goes through a ring that the UART drains by interrupt: write(1)
 * copies into it and loads what the transmit FIFO takes now, and the
 * THR-empty interrupt (IER bit 1) loads the rest. At 115200 baud a
 * character takes 87 us on the line, on real hardware and under Bochs
 * alike, so a 150-character log line written synchronously held the big
 * lock, and every system call of every CPU behind it, for 13 ms. A writer
 * waits only when the ring is full. tcdrain (ioctl TCSBRK) waits until the
 * ring is empty, for output that must have left the machine (the guest's
 * released output); kprintf drains the ring and writes synchronously, so
 * the layer's last words before a halt or power off are never lost. */
#include "layer.h"

#define COM1 0x3F8
#define UART_RBR 0 /* receive buffer (DLAB=0) */
#define UART_THR 0 /* transmit holding (DLAB=0) */
#define UART_DLL 0 /* divisor latch low (DLAB=1) */
#define UART_IER 1 /* interrupt enable; divisor latch high with DLAB=1 */
#define UART_IER_RDA 0x01
#define UART_IER_THRI 0x02 /* interrupt when THR (the transmit FIFO) is empty */
#define UART_IIR 2         /* interrupt identification (read) */
#define UART_IIR_NONE 0x01 /* no interrupt pending */
#define UART_IIR_FIFO 0xC0 /* both set: the FIFOs are enabled (16550A) */
#define UART_FCR 2
#define UART_LCR 3
#define UART_LCR_8N1 0x03
#define UART_LCR_DLAB 0x80
#define UART_MCR 4
#define UART_MCR_DTR_RTS_OUT2 0x0B /* OUT2 gates the IRQ line on PCs */
#define UART_LSR 5
#define UART_LSR_DR 0x01
#define UART_LSR_THRE 0x20

static char rxbuf[4096];
static volatile u32 rx_head, rx_tail;

#define TXRING 65536 /* 5.7 s of output at 115200 baud */
static char txring[TXRING];
static u32 tx_head, tx_tail; /* free-running; guarded by txlock */
static int txlock;
static u32 tx_depth = 1;      /* bytes THR takes when empty: 16 with the FIFO */
static u8 ier = UART_IER_RDA; /* what IER holds */

void serial_init(void) {
	outb(COM1 + UART_IER, 0);
	outb(COM1 + UART_LCR, UART_LCR_DLAB);
	outb(COM1 + UART_DLL, 1); /* 115200 = 1843200 / 16 / 1 */
	outb(COM1 + UART_IER, 0);
	outb(COM1 + UART_LCR, UART_LCR_8N1);
	/* Toggling the FIFO enable resets the FIFOs (QEMU does so too): save
	 * what arrived before boot first. */
	while (inb(COM1 + UART_LSR) & UART_LSR_DR)
		rxbuf[rx_head++ % sizeof rxbuf] = inb(COM1 + UART_RBR);
	outb(COM1 + UART_FCR, 0x07); /* enable + clear FIFOs */
	if ((inb(COM1 + UART_IIR) & UART_IIR_FIFO) == UART_IIR_FIFO)
		tx_depth = 16;
	outb(COM1 + UART_MCR, UART_MCR_DTR_RTS_OUT2);
	outb(COM1 + UART_IER, ier);
}

u64 serial_wait_tsc; /* TSC ticks spent waiting for the transmitter */

/* txlock is taken with interrupts off (the layer runs so). kprintf's
 * callers include fatal paths, where the holder may be a CPU that was
 * stopped: they give up waiting after a while and go on. */
static int tx_lock(u64 patience) {
	for (u64 i = 0; __atomic_exchange_n(&txlock, 1, __ATOMIC_ACQUIRE); i++) {
		if (patience && i >= patience)
			return 0;
		cpu_relax();
	}
	return 1;
}

static void tx_unlock(void) { __atomic_store_n(&txlock, 0, __ATOMIC_RELEASE); }

/* tx_load moves up to one FIFO's worth of ring bytes into the UART, whose
 * THR must be empty (txlock held). */
static void tx_load(void) {
	for (u32 i = 0; i < tx_depth && tx_head != tx_tail; i++)
		outb(COM1 + UART_THR, (u8)txring[tx_tail++ % TXRING]);
}

/* tx_pump moves ring bytes into the UART while THR is empty (txlock
 * held) and asks for the THR-empty interrupt while bytes remain. Under
 * QEMU, whose UART sends at once, it empties the ring; on a real line
 * it loads one FIFO's worth. Returns whether the ring is empty. */
static int tx_pump(void) {
	while (tx_head != tx_tail && (inb(COM1 + UART_LSR) & UART_LSR_THRE))
		tx_load();
	u8 want = UART_IER_RDA | (tx_head != tx_tail ? UART_IER_THRI : 0);
	if (want != ier) {
		ier = want;
		outb(COM1 + UART_IER, ier);
	}
	return tx_head == tx_tail;
}

/* tx_wait_thre waits, polling, until THR is empty, at most about as long
 * as the old synchronous writer waited for a character: a UART that never
 * empties must not hang the machine. */
static void tx_wait_thre(void) {
	if (inb(COM1 + UART_LSR) & UART_LSR_THRE)
		return;
	u64 t = rdtsc();
	for (int i = 0; i < 100000 && !(inb(COM1 + UART_LSR) & UART_LSR_THRE); i++)
		cpu_relax();
	serial_wait_tsc += rdtsc() - t;
}

/* tx_put appends a byte (txlock held); a full ring is drained by polling,
 * the old synchronous way, rather than dropping output. */
static void tx_put(char c) {
	while (tx_head - tx_tail >= TXRING) {
		tx_wait_thre();
		tx_load();
	}
	txring[tx_head++ % TXRING] = c;
}

/* tx_queue appends s to the ring, each \n as \r\n (txlock held). */
static void tx_queue(const char *s, size_t n) {
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\n')
			tx_put('\r');
		tx_put(s[i]);
	}
}

/* serial_write queues s for COM1 and returns; the IRQ 4 handler sends
 * it. */
void serial_write(const char *s, size_t n) {
	tx_lock(0);
	tx_queue(s, n);
	tx_pump();
	tx_unlock();
}

/* serial_flush sends everything queued, polling (no interrupt needed). */
static void serial_flush(void) {
	while (tx_head != tx_tail) {
		tx_wait_thre();
		tx_load();
	}
	tx_pump(); /* nothing left: the THR-empty interrupt off */
}

/* serial_drained reports whether every byte queued so far has gone to the
 * UART, sending more if it can (big lock held: tcdrain, the timer). */
int serial_drained(void) {
	tx_lock(0);
	int empty = tx_pump();
	tx_unlock();
	return empty;
}

/* serial_queued is how many bytes wait in the ring (a racy read: a hint). */
u32 serial_queued(void) { return __atomic_load_n(&tx_head, __ATOMIC_RELAXED) - __atomic_load_n(&tx_tail, __ATOMIC_RELAXED); }

/* kprintf prints synchronously, after what is queued: it serves the boot,
 * before interrupts, and the paths that end in a halt or power off. */
void kprintf(const char *fmt, ...) {
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	int locked = tx_lock(100000000);
	tx_queue(buf, MIN((size_t)n, sizeof buf - 1));
	serial_flush();
	if (locked)
		tx_unlock();
}

/* serial_irq drains the receiver and feeds the transmitter (IRQ 4; big
 * lock held). IRQ 4 is edge-triggered: the UART's line stays up while any
 * enabled condition is pending, so the handler goes on until IIR says
 * none is, or a condition that arrived meanwhile would never interrupt. */
void serial_irq(void) {
	int got = 0, empty = 0;
	for (int round = 0; round < 8; round++) {
		while (inb(COM1 + UART_LSR) & UART_LSR_DR) {
			u8 c = inb(COM1 + UART_RBR);
			if (rx_head - rx_tail < sizeof rxbuf)
				rxbuf[rx_head++ % sizeof rxbuf] = c;
			got = 1;
		}
		empty = serial_drained();
		if (inb(COM1 + UART_IIR) & UART_IIR_NONE)
			break;
	}
	if (got)
		wake_console();
	if (empty)
		wake_console_tx();
}

int console_avail(void) {
	serial_irq(); /* also poll: an emulator may have raised IRQ 4 early */
	return rx_head != rx_tail;
}

int console_read(char *buf, size_t n) {
	size_t i = 0;
	while (i < n && rx_tail != rx_head)
		buf[i++] = rxbuf[rx_tail++ % sizeof rxbuf];
	return (int)i;
}
