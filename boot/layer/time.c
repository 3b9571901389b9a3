/* time.c: clocks. CLOCK_MONOTONIC comes from the TSC, calibrated once
 * against PIT channel 2 (Intel 8254 datasheet: 1.193182 MHz input; channel
 * 2's gate and output are bits 0 and 5 of port 0x61). CLOCK_REALTIME is
 * the CMOS RTC read at boot (MC146818: registers 0-9, status B bit 2 =
 * binary, bit 1 = 24 h) plus monotonic time. Invariant TSCs are in sync
 * across cores on the machines and emulators doppel targets. */
#include "layer.h"

#define PIT_HZ 1193182ULL
#define PIT_CH2 0x42
#define PIT_CMD 0x43
#define PIT_GATE 0x61
#define CAL_MS 10

u64 tsc_hz;
static u64 tsc0, mult; /* ns = (tsc - tsc0) * mult >> 32 */
static u64 boot_unix;

#define CAL_TRIES 32

/* pit_window times one PIT window of CAL_MS in TSC ticks. The window
 * starts at the write of the count's high byte and ends when OUT2 goes
 * high; each edge is bracketed by TSC reads, and *slack returns how many
 * ticks the two brackets span. An emulator's vCPU on a loaded host can be
 * descheduled for milliseconds inside the window: a stretched edge shows
 * as a large slack (QEMU TCG once calibrated 18 GHz for a 2.6 GHz TSC
 * that way, and the kernel's clock ran 7 times slow). The LAPIC timer's
 * ticks are counted between two TSC-bracketed reads in the same window. */
static u64 pit_window(u64 *slack, u64 *lapic_ticks, u64 *lapic_tsc) {
	u16 count = (u16)(PIT_HZ * CAL_MS / 1000);
	outb(PIT_GATE, (inb(PIT_GATE) & ~0x02) | 0x01); /* gate on, speaker off */
	outb(PIT_CMD, 0xB0);                            /* ch2, lo/hi, mode 0 */
	outb(PIT_CH2, count & 0xff);
	lapic_count_start();
	u64 a = rdtsc();
	outb(PIT_CH2, count >> 8);
	u64 b = rdtsc();
	u32 l0 = lapic_count_read();
	u64 lt0 = rdtsc();
	u64 prev = b, p, q;
	for (;;) {
		p = rdtsc();
		u8 v = inb(PIT_GATE);
		q = rdtsc();
		if (v & 0x20)
			break;
		prev = p;
	}
	u32 l1 = lapic_count_read();
	u64 lt1 = rdtsc();
	*slack = (b - a) + (q - prev) + (lt0 - b) + (lt1 - q);
	*lapic_ticks = (u64)(l1 - l0);
	*lapic_tsc = ((lt1 + q) - (lt0 + b)) / 2;
	return (prev + q) / 2 - (a + b) / 2;
}

/* pit_calibrate returns the TSC rate and the LAPIC timer's, from the PIT
 * window whose edges were seen most precisely: the first within 0.5% of
 * the window, else the best of CAL_TRIES (on a quiet host the first one
 * qualifies; under load a few are stretched). */
static u64 pit_calibrate(u32 *lapic_hz, u64 *tries, u64 *best_slack) {
	u64 best = 0, lt_best = 0, ltsc_best = 1;
	*best_slack = ~0ULL;
	for (*tries = 1; *tries <= CAL_TRIES; ++*tries) {
		u64 slack, lt, ltsc;
		u64 t = pit_window(&slack, &lt, &ltsc);
		if (slack < *best_slack && ltsc) {
			best = t, *best_slack = slack, lt_best = lt, ltsc_best = ltsc;
		}
		if (best && *best_slack * 200 <= best)
			break;
	}
	*tries = MIN(*tries, (u64)CAL_TRIES);
	u64 hz = best * (1000 / CAL_MS);
	/* LAPIC ticks per TSC tick, times the TSC rate (no overflow: about
	 * 10^6 ticks in the window times a rate of about 10^10). */
	*lapic_hz = (u32)(lt_best * hz / ltsc_best);
	return hz;
}

static u8 cmos(u8 reg) {
	outb(0x70, reg);
	return inb(0x71);
}

static int bcd(int v, int binary) { return binary ? v : (v & 15) + (v >> 4) * 10; }

/* days_from_civil: days since 1970-01-01 (H. Hinnant's algorithm). */
static i64 days_from_civil(i64 y, int m, int d) {
	y -= m <= 2;
	i64 era = (y >= 0 ? y : y - 399) / 400;
	i64 yoe = y - era * 400;
	i64 doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	i64 doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static u64 rtc_read(void) {
	while (cmos(0x0A) & 0x80) /* update in progress */
		;
	int b = cmos(0x0B), bin = b & 4;
	int s = bcd(cmos(0), bin), mi = bcd(cmos(2), bin), hr = cmos(4);
	int pm = hr & 0x80;
	hr = bcd(hr & 0x7f, bin);
	if (!(b & 2) && pm)
		hr = (hr % 12) + 12;
	int d = bcd(cmos(7), bin), mo = bcd(cmos(8), bin), y = bcd(cmos(9), bin) + 2000;
	return (u64)(days_from_civil(y, mo, d) * 86400 + hr * 3600 + mi * 60 + s);
}

void time_init(void) {
	u32 lapic_hz;
	u64 tries, slack;
	tsc_hz = pit_calibrate(&lapic_hz, &tries, &slack);
	lapic_set_rate(lapic_hz);
	if (!tsc_hz)
		tsc_hz = 1000000000ULL;
	mult = (1000000000ULL << 32) / tsc_hz;
	tsc0 = rdtsc();
	boot_unix = rtc_read();
	kprintf("boot: tsc %lu kHz (PIT window %d of %lu, edges within %lu ticks), rtc %lu\n",
		tsc_hz / 1000, (int)tries, (u64)CAL_TRIES, slack, boot_unix);
}

u64 nanotime(void) {
	unsigned __int128 d = rdtsc() - tsc0;
	return (u64)((d * mult) >> 32);
}

u64 realtime_ns(void) { return boot_unix * 1000000000ULL + nanotime(); }

void udelay(u64 us) {
	u64 end = rdtsc() + tsc_hz / 1000000 * us;
	while (rdtsc() < end)
		cpu_relax();
}
