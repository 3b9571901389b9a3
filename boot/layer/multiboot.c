/* multiboot.c: read the boot information of Multiboot 1 (spec 0.6.96
 * sec. 3.3: flags, cmdline, mods, mmap) or Multiboot 2 (spec 2.0 sec. 3.6:
 * tags 1 cmdline, 3 module, 6 memory map, 14/15 ACPI RSDP). Everything is
 * copied into the layer's own memory at once: QEMU places the info and the
 * modules right after the image, where the Go image will go. Runs on the
 * temporary identity map of the low 4 GiB. */
#include "layer.h"

struct region memmap[MAX_REGIONS];
int nmemmap;
struct module modules[MAX_MODULES];
int nmodules;
char cmdline[1024];
u64 rsdp_phys;
u64 mbinfo_end;
static u8 rsdp_copy[36];

/* copy_str copies src into dst (n bytes with its NUL) and says, on the
 * console, when it had to cut it: a guest's command line cut silently
 * boots a guest with other arguments than the user wrote. */
static void copy_str(char *dst, size_t n, const char *src, const char *what) {
	size_t i = 0;
	for (; src && src[i] && i + 1 < n; i++)
		dst[i] = src[i];
	dst[i] = 0;
	if (src && src[i])
		kprintf("boot: warning: %s is longer than %lu bytes: cut (the rest is lost)\n", what, (u64)(n - 1));
}

static void add_region(u64 base, u64 len, u32 type) {
	if (nmemmap >= MAX_REGIONS || !len)
		return;
	if (type < 1 || type > 5)
		type = 2;
	memmap[nmemmap++] = (struct region){base, base + len, (int)type};
}

static void add_module(u64 s, u64 e, const char *name) {
	if (nmodules >= MAX_MODULES)
		return;
	modules[nmodules].start = s;
	modules[nmodules].end = e;
	copy_str(modules[nmodules].name, sizeof modules[0].name, name, "a module's command line (modules lists it)");
	mbinfo_end = MAX(mbinfo_end, e);
	nmodules++;
}

struct mb1_info {
	u32 flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
	u32 syms[4], mmap_length, mmap_addr;
};

static void parse_mb1(struct mb1_info *mi) {
	mbinfo_end = (u64)(uintptr_t)mi + sizeof *mi;
	if (mi->flags & (1 << 2))
		copy_str(cmdline, sizeof cmdline, (const char *)(uintptr_t)mi->cmdline, "the command line");
	if (mi->flags & (1 << 3)) {
		u32 *m = (u32 *)(uintptr_t)mi->mods_addr;
		for (u32 i = 0; i < mi->mods_count; i++, m += 4)
			add_module(m[0], m[1], (const char *)(uintptr_t)m[2]);
	}
	if (mi->flags & (1 << 6)) {
		u64 p = mi->mmap_addr, end = p + mi->mmap_length;
		while (p < end) {
			u32 size = *(u32 *)p;
			u64 base = *(u64 *)(p + 4), len = *(u64 *)(p + 12);
			add_region(base, len, *(u32 *)(p + 20));
			p += size + 4;
		}
	} else {
		add_region(0, (u64)mi->mem_lower << 10, 1);
		add_region(1 << 20, (u64)mi->mem_upper << 10, 1);
	}
}

static void parse_mb2(u8 *info) {
	u32 total = *(u32 *)info;
	mbinfo_end = (u64)(uintptr_t)info + total;
	for (u8 *t = info + 8; t < info + total;) {
		u32 type = *(u32 *)t, size = *(u32 *)(t + 4);
		if (type == 0)
			break;
		if (type == 1)
			copy_str(cmdline, sizeof cmdline, (const char *)(t + 8), "the command line");
		if (type == 3)
			add_module(*(u32 *)(t + 8), *(u32 *)(t + 12), (const char *)(t + 16));
		if (type == 6) {
			u32 esize = *(u32 *)(t + 8);
			for (u8 *e = t + 16; e + esize <= t + size; e += esize)
				add_region(*(u64 *)e, *(u64 *)(e + 8), *(u32 *)(e + 16));
		}
		if ((type == 14 || type == 15) && !rsdp_phys) {
			memcpy(rsdp_copy, t + 8, MIN(size - 8, sizeof rsdp_copy));
			rsdp_phys = (u64)(uintptr_t)rsdp_copy;
		}
		t += ALIGN_UP(size, 8);
	}
}

/* strip_kernel_name drops a leading boot-file name: QEMU's multiboot
 * loader prefixes the command line with the kernel's file name. */
static void strip_kernel_name(void) {
	size_t n = 0;
	while (cmdline[n] && cmdline[n] != ' ')
		n++;
	int path = 0;
	for (size_t i = 0; i < n; i++) {
		if (cmdline[i] == '=')
			return;
		if (cmdline[i] == '/')
			path = 1;
	}
	if (!path && !(n > 4 && !strncmp(cmdline + n - 4, ".bin", 4)))
		return;
	while (cmdline[n] == ' ')
		n++;
	memmove(cmdline, cmdline + n, strlen(cmdline + n) + 1);
}

void multiboot_parse(u32 magic, u32 info) {
	if (magic == MB1_BOOT_MAGIC)
		parse_mb1((struct mb1_info *)(uintptr_t)info);
	else if (magic == MB2_BOOT_MAGIC)
		parse_mb2((u8 *)(uintptr_t)info);
	else {
		kprintf("boot: fatal: not started by a multiboot loader (eax=%x)\n", magic);
		for (;;)
			__asm__ volatile("cli; hlt");
	}
	strip_kernel_name();
}
