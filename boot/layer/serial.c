/* serial.c: COM1, a 16550A UART at I/O port 0x3F8 (PC16550D datasheet,
 * National Semiconductor, rev. 1995): 115200 8N1 for output, received
 * bytes buffered by the IRQ 4 handler for read(0). */
#include "layer.h"

#define COM1 0x3F8
#define UART_RBR 0 /* receive buffer (DLAB=0) */
#define UART_THR 0 /* transmit holding (DLAB=0) */
#define UART_DLL 0 /* divisor latch low (DLAB=1) */
#define UART_IER 1 /* interrupt enable; divisor latch high with DLAB=1 */
#define UART_IER_RDA 0x01
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
	outb(COM1 + UART_MCR, UART_MCR_DTR_RTS_OUT2);
	outb(COM1 + UART_IER, UART_IER_RDA);
}

u64 serial_wait_tsc; /* TSC ticks spent waiting for the transmitter */

void serial_putc(char c) {
	if (!(inb(COM1 + UART_LSR) & UART_LSR_THRE)) {
		u64 t = rdtsc();
		for (int i = 0; i < 100000 && !(inb(COM1 + UART_LSR) & UART_LSR_THRE); i++)
			cpu_relax();
		serial_wait_tsc += rdtsc() - t;
	}
	outb(COM1 + UART_THR, (u8)c);
}

void serial_write(const char *s, size_t n) {
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\n')
			serial_putc('\r');
		serial_putc(s[i]);
	}
}

void kprintf(const char *fmt, ...) {
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	serial_write(buf, MIN((size_t)n, sizeof buf - 1));
}

/* serial_irq drains the receiver (IRQ 4; lock held). */
void serial_irq(void) {
	int got = 0;
	while (inb(COM1 + UART_LSR) & UART_LSR_DR) {
		u8 c = inb(COM1 + UART_RBR);
		if (rx_head - rx_tail < sizeof rxbuf)
			rxbuf[rx_head++ % sizeof rxbuf] = c;
		got = 1;
	}
	if (got)
		wake_console();
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
