/* procfs.c: the text of the /proc files the layer serves (CONTRACT.md,
 * "Files the layer serves"); fs.c turns them into file descriptors. */
#include "layer.h"

static const char *type_name(int t) {
	static const char *n[] = {"?", "usable", "reserved", "acpi", "nvs", "bad"};
	return t >= 1 && t <= 5 ? n[t] : "reserved";
}

/* procfs_gen fills the /proc file p into b (m bytes); returns its length,
 * -1 for a path the layer does not serve. */
int procfs_gen(const char *p, char *b, int m) {
	int n = 0;
	if (!strcmp(p, "/proc/cmdline"))
		return snprintf(b, m, "%s\n", cmdline);
	if (!strcmp(p, "/proc/doppel/memmap")) {
		for (int i = 0; i < nmemmap; i++)
			n += snprintf(b + n, m - n, "0x%lx 0x%lx %s\n", memmap[i].start, memmap[i].end, type_name(memmap[i].type));
		/* one line (the Go side wants one): it also spans any multiboot
		 * module QEMU put between the layer and the Go image; the
		 * modules are listed in /proc/doppel/modules. */
		n += snprintf(b + n, m - n, "0x%lx 0x%lx kernel\n", kernel_start, kernel_end);
		if (reserve_end)
			n += snprintf(b + n, m - n, "0x%lx 0x%lx doppel-reserved\n", reserve_start, reserve_end);
		return MIN(n, m - 1);
	}
	if (!strcmp(p, "/proc/doppel/modules")) {
		for (int i = 0; i < nmodules; i++)
			n += snprintf(b + n, m - n, "0x%lx 0x%lx %s\n", modules[i].start, modules[i].end, modules[i].name);
		return MIN(n, m - 1);
	}
	if (!strcmp(p, "/proc/meminfo")) {
		u64 total = 0;
		for (int i = 0; i < nmemmap; i++)
			if (memmap[i].type == 1)
				total += memmap[i].end - memmap[i].start;
		return snprintf(b, m, "MemTotal: %lu kB\nMemFree: %lu kB\nDoppelReserved: %lu kB\n", total >> 10,
				frames_free() * 4, (reserve_end - reserve_start) >> 10);
	}
	if (!strcmp(p, "/proc/doppel/cpus")) {
		for (int i = 0; i < ncpus; i++)
			n += snprintf(b + n, m - n, "%d apic=%d online=%d\n", i, cpus[i].apic_id, cpus[i].online);
		return MIN(n, m - 1);
	}
	if (!strcmp(p, "/proc/doppel/lockstat"))
		return lockstat_gen(b, m);
	if (!strcmp(p, "/proc/doppel/syscalls")) {
		for (int i = 0; i < NSYSCALLS; i++)
			if (syscall_counts[i])
				n += snprintf(b + n, m - n, "%d %lu\n", i, syscall_counts[i]);
		return MIN(n, m - 1);
	}
	if (!strcmp(p, "/proc/doppel/stats"))
		return snprintf(b, m,
				"syscalls %lu\ncontext_switches %lu\npage_faults %lu\ntimer_ticks %lu\nipis %lu\n"
				"irqs %lu\nsignals %lu\nlockfree_polls %lu\nlockfree_sleeps %lu\nframes_used %lu\nframes_free %lu\nkernel_bytes %lu\n",
				stats.syscalls, stats.switches, stats.pagefaults, stats.ticks, stats.ipis, stats.irqs,
				stats.signals, stats.lockfree_polls, stats.lockfree_sleeps, frames_used(), frames_free(), kernel_end - kernel_start);
	return -1;
}

