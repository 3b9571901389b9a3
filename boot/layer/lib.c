/* lib.c: the few libc routines the layer needs (gcc may also emit calls to
 * memset/memcpy/memmove/memcmp in freestanding code), and a small
 * snprintf: %s %c %d %u %x %p with l/ll modifiers and a zero-pad width. */
#include "layer.h"

/* memset and memcpy move 8 bytes per iteration: Bochs counts every
 * iteration of a REP string instruction, so this is 8x fewer emulated
 * instructions for the image copy and page zeroing. */
void *memset(void *d, int c, size_t n) {
	void *r = d;
	u64 q = n / 8, v = 0x0101010101010101ULL * (u8)c;
	__asm__ volatile("rep stosq" : "+D"(d), "+c"(q) : "a"(v) : "memory");
	n &= 7;
	__asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
	return r;
}

void *memcpy(void *d, const void *s, size_t n) {
	void *r = d;
	u64 q = n / 8;
	__asm__ volatile("rep movsq" : "+D"(d), "+S"(s), "+c"(q)::"memory");
	n &= 7;
	__asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n)::"memory");
	return r;
}

void *memmove(void *d, const void *s, size_t n) {
	u8 *dp = d;
	const u8 *sp = s;
	if (dp <= sp || dp >= sp + n)
		return memcpy(d, s, n);
	while (n--)
		dp[n] = sp[n];
	return d;
}

int memcmp(const void *a, const void *b, size_t n) {
	const u8 *x = a, *y = b;
	for (size_t i = 0; i < n; i++)
		if (x[i] != y[i])
			return x[i] - y[i];
	return 0;
}

size_t strlen(const char *s) {
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

int strncmp(const char *a, const char *b, size_t n) {
	for (size_t i = 0; i < n; i++) {
		if (a[i] != b[i] || !a[i])
			return (u8)a[i] - (u8)b[i];
	}
	return 0;
}

int strcmp(const char *a, const char *b) { return strncmp(a, b, (size_t)-1); }

struct out {
	char *buf;
	size_t n, len;
};

static void put(struct out *o, char c) {
	if (o->len + 1 < o->n)
		o->buf[o->len] = c;
	o->len++;
}

static void putnum(struct out *o, u64 v, int base, int neg, int width, char pad) {
	char tmp[24];
	int i = 0;
	do {
		tmp[i++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	if (neg)
		tmp[i++] = '-';
	while (i < width--)
		put(o, pad);
	while (i)
		put(o, tmp[--i]);
}

int vsnprintf(char *buf, size_t n, const char *fmt, va_list ap) {
	struct out o = {buf, n, 0};
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			put(&o, *fmt);
			continue;
		}
		fmt++;
		char pad = ' ';
		int width = 0, lng = 0;
		if (*fmt == '0')
			pad = '0';
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		while (*fmt == 'l')
			lng++, fmt++;
		u64 v;
		switch (*fmt) {
		case 's': {
			const char *s = va_arg(ap, const char *);
			while (s && *s)
				put(&o, *s++);
			break;
		}
		case 'c':
			put(&o, (char)va_arg(ap, int));
			break;
		case 'd': {
			i64 x = lng ? va_arg(ap, i64) : va_arg(ap, int);
			putnum(&o, x < 0 ? -(u64)x : (u64)x, 10, x < 0, width, pad);
			break;
		}
		case 'u':
		case 'x':
			v = lng ? va_arg(ap, u64) : va_arg(ap, u32);
			putnum(&o, v, *fmt == 'u' ? 10 : 16, 0, width, pad);
			break;
		case 'p':
			put(&o, '0'), put(&o, 'x');
			putnum(&o, (u64)va_arg(ap, void *), 16, 0, 0, ' ');
			break;
		default:
			put(&o, *fmt);
		}
	}
	if (n)
		buf[o.len < n ? o.len : n - 1] = 0;
	return (int)o.len;
}

int snprintf(char *buf, size_t n, const char *fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	int r = vsnprintf(buf, n, fmt, ap);
	va_end(ap);
	return r;
}

/* parse_size reads "512M", "1G", "64K" or plain bytes. */
u64 parse_size(const char *s, int *ok) {
	u64 v = 0;
	int digits = 0;
	*ok = 0;
	while (*s >= '0' && *s <= '9')
		v = v * 10 + (*s++ - '0'), digits++;
	if (!digits)
		return 0;
	switch (*s) {
	case 'K': case 'k': v <<= 10; s++; break;
	case 'M': case 'm': v <<= 20; s++; break;
	case 'G': case 'g': v <<= 30; s++; break;
	}
	if (*s && *s != ' ')
		return 0;
	*ok = 1;
	return v;
}
