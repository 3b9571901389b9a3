/* main.c: the boot sequence and the layer's own flags (CONTRACT.md). */
#include "layer.h"

u64 flag_reserve = 64ULL << 20;
int flag_fatal_reboot, flag_smp = MAX_CPUS, flag_xsave_sse;
extern char boot_stack[];
extern u64 serial_wait_tsc;
static u64 phase[8];

/* choice returns 0 if the flag value v is the word a, 1 if it is b, else
 * -1 (a value ends at a space or the end of the command line). */
static int choice(const char *v, const char *a, const char *b) {
	for (int i = 0; i < 2; i++) {
		const char *s = i ? b : a;
		size_t n = strlen(s);
		if (!strncmp(v, s, n) && (v[n] == ' ' || !v[n]))
			return i;
	}
	return -1;
}

static void parse_flag(const char *w) {
	int ok = 1, c;
	if (!strncmp(w, "doppel.reserve=", 15)) {
		u64 v = parse_size(w + 15, &ok);
		if (ok)
			flag_reserve = v;
	} else if (!strncmp(w, "doppel.fatal=", 13)) {
		if ((c = choice(w + 13, "halt", "reboot")) >= 0)
			flag_fatal_reboot = c;
		else
			ok = 0;
	} else if (!strncmp(w, "doppel.xsave=", 13)) {
		if ((c = choice(w + 13, "all", "sse")) >= 0)
			flag_xsave_sse = c;
		else
			ok = 0;
	} else if (!strncmp(w, "doppel.smp=", 11)) {
		u64 v = parse_size(w + 11, &ok);
		if (ok && v >= 1)
			flag_smp = (int)MIN(v, MAX_CPUS);
		else
			ok = 0;
	}
	if (!ok) {
		size_t n = 0;
		while (w[n] && w[n] != ' ')
			n++;
		/* kprintf has no %.*s: print just this word. */
		kprintf("boot: bad flag ");
		serial_write(w, n);
		kprintf(" (default used)\n");
	}
}

static void parse_flags(void) {
	for (const char *w = cmdline; *w; w++)
		if ((w == cmdline || w[-1] == ' ') && !strncmp(w, "doppel.", 7))
			parse_flag(w);
}

static void start_go(void) {
	lock();
	vm_add(0, go_file_end, 0, V_FIXED, 0); /* layer + Go image: never mmap'd */
	if (go_file_end < go_image_end)       /* the rest of the BSS: demand-zero */
		vm_add(go_file_end, go_image_end, PROT_READ | PROT_WRITE, V_ANON, 0);
	struct thread *t = thread_alloc();
	struct trapframe tf = {0};
	tf.rip = go_entry;
	tf.rsp = build_initial_stack();
	tf.rflags = 0x202;
	tf.cs = SEL_CODE64;
	tf.ss = SEL_DATA;
	t->affinity = ~0ULL;
	fpu_init();
	fpu_save(t->fx);
	thread_init_frame(t, &tf);
	unlock();
}

void boot_main(u32 magic, u32 info) {
	serial_init();
	u64 tsc_first = rdtsc();
	kprintf("boot: doppel boot layer (tsc %lu)\n", tsc_first);
	multiboot_parse(magic, info);
	kprintf("boot: cmdline \"%s\"\n", cmdline);
	parse_flags();
	phase[0] = rdtsc();
	u64 go = mem_place(elf_span());
	elf_load(go);
	phase[1] = rdtsc();
	paging_init();
	mem_init();
	paging_ready();
	idt_init();
	cpu_init(&cpus[0], 0);
	cpus[0].apic_id = (int)lapic_id();
	pic_disable();
	lapic_init();
	phase[2] = rdtsc();
	time_init();
	phase[3] = rdtsc();
	acpi_init();
	fs_init();
	phase[4] = rdtsc();
	lapic_timer_start();
	cpus[0].online = 1;
	phase[5] = rdtsc();
	smp_start();
	phase[6] = rdtsc();
	kprintf("boot: go image 0x%lx-0x%lx (demand-zero from 0x%lx) at phys 0x%lx, entry 0x%lx\n", go_image_start,
		go_image_end, go_file_end, go_phys, go_entry);
	kprintf("boot: kernel 0x%lx-0x%lx (%lu KiB), reserved 0x%lx-0x%lx, free %lu MiB\n", kernel_start, kernel_end,
		(kernel_end - kernel_start) >> 10, reserve_start, reserve_end, frames_free() >> 8);
	kprintf("boot: tsc ticks: mb %lu, image %lu, paging+cpu %lu, calibration %lu, acpi %lu, timer %lu, "
		"aps %lu; serial waits %lu\n",
		phase[0] - tsc_first, phase[1] - phase[0], phase[2] - phase[1], phase[3] - phase[2], phase[4] - phase[3],
		phase[5] - phase[4], phase[6] - phase[5], serial_wait_tsc);
	u64 now = rdtsc(); /* printed before Go runs: an AP may start it at once */
	kprintf("boot: starting Go (tsc %lu, %lu since first line)\n", now, now - tsc_first);
	start_go();
	sched_start_on((u64)boot_stack + KSTACK_SIZE);
}
