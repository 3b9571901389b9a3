/* power.c: power off, restart and halt; exit_group's policy (CONTRACT.md).
 * Power off tries, in order: Bochs's "Shutdown" string on port 0x8900
 * (Bochs iodev/unmapped.cc; Bochs takes an ACPI S5 for a fatal error);
 * S5 as the FADT and the DSDT's \_S5 say (acpi.c), or where the tables
 * say nothing, PM1a_CNT SLP_EN|S5 at the emulators' fixed ports 0x604
 * (QEMU i440fx/q35) and 0xB004 (PIIX4 under OVMF, Bochs); then QEMU's
 * isa-debug-exit at 0xF4 (status 1: the machine was still on 200 ms
 * later). Restart pulses the 8042's reset line (0xFE to
 * port 0x64), then triple-faults. */
#include "layer.h"

#define LINUX_REBOOT_MAGIC1 0xfee1dead
#define LINUX_REBOOT_CMD_RESTART 0x01234567
#define LINUX_REBOOT_CMD_HALT 0xCDEF0123
#define LINUX_REBOOT_CMD_POWER_OFF 0x4321FEDC

static void stop_others(void) {
	for (int i = 0; i < ncpus; i++)
		if (cpus[i].online && &cpus[i] != mycpu())
			lapic_ipi(cpus[i].apic_id, VEC_HALT);
}

void power_off(void) {
	__asm__ volatile("cli");
	stop_others();
	kprintf("boot: power off\n");
	for (const char *s = "Shutdown"; *s; s++)
		outb(0x8900, (u8)*s);
	/* The fixed ports only where the tables said nothing: on a real
	 * machine they may be some other device's registers. */
	if (!acpi_s5()) {
		outw(0x604, 0x2000);
		outw(0xB004, 0x2000);
	}
	/* QEMU acts on the S5 write in its main loop, not at once: without
	 * the wait, isa-debug-exit's write below came first and QEMU ended
	 * with status 1 for a clean power off (make run reported an error). */
	udelay(200000);
	outb(0xF4, 0);
	power_halt();
}

void power_restart(void) {
	__asm__ volatile("cli");
	stop_others();
	kprintf("boot: restart\n");
	outb(0x64, 0xFE);
	udelay(100000);
	static const struct {
		u16 limit;
		u64 base;
	} __attribute__((packed)) none = {0, 0};
	__asm__ volatile("lidt %0; int3" ::"m"(none));
	power_halt();
}

void power_halt(void) {
	__asm__ volatile("cli");
	stop_others();
	for (;;)
		__asm__ volatile("hlt");
}

void exit_group(int code) {
	kprintf("boot: exit %d\n", code);
	if (code == 0)
		power_off();
	if (flag_fatal_reboot)
		power_restart();
	kprintf("boot: halted\n");
	power_halt();
}

i64 sys_reboot(u32 m1, u32 m2, u32 cmd) {
	(void)m2;
	if (m1 != LINUX_REBOOT_MAGIC1)
		return -EINVAL;
	switch (cmd) {
	case LINUX_REBOOT_CMD_POWER_OFF:
		power_off();
	case LINUX_REBOOT_CMD_RESTART:
		power_restart();
	case LINUX_REBOOT_CMD_HALT:
		kprintf("boot: halt\n");
		power_halt();
	}
	return -EINVAL;
}
