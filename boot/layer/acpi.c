/* acpi.c: find the CPUs and the I/O APIC in the ACPI MADT (ACPI 6.4
 * sec. 5.2.5 RSDP, 5.2.7/5.2.8 RSDT/XSDT, 5.2.12 MADT: entry types 0 =
 * Processor Local APIC, 1 = I/O APIC, 2 = Interrupt Source Override). */
#include "layer.h"

int ncpu_found;
u32 cpu_apic_ids[MAX_CPUS];
u64 ioapic_phys = 0xFEC00000;
u32 ioapic_gsi_base;
static struct {
	int gsi, flags;
} isa[16];

static int sum_ok(const u8 *p, u32 n) {
	u8 s = 0;
	for (u32 i = 0; i < n; i++)
		s += p[i];
	return s == 0;
}

static u64 scan(u64 lo, u64 hi) {
	for (u64 p = lo; p + 20 <= hi; p += 16)
		if (!memcmp(P2V(p), "RSD PTR ", 8) && sum_ok(P2V(p), 20))
			return p;
	return 0;
}

/* find_rsdp: the multiboot2 ACPI tag, else the EBDA's first KiB, else
 * the BIOS area 0xE0000-0xFFFFF (ACPI 6.4 sec. 5.2.5.1). */
static u8 *find_rsdp(void) {
	if (rsdp_phys)
		return (u8 *)rsdp_phys;
	u64 ebda = (u64)*(u16 *)P2V(0x40E) << 4;
	u64 p = ebda ? scan(ebda, ebda + 1024) : 0;
	if (!p)
		p = scan(0xE0000, 0x100000);
	return p ? P2V(p) : 0;
}

static u8 *find_table(u8 *rsdp, const char *sig) {
	int x = rsdp[15] >= 2 && *(u64 *)(rsdp + 24);
	u8 *root = P2V(x ? *(u64 *)(rsdp + 24) : *(u32 *)(rsdp + 16));
	u32 len = *(u32 *)(root + 4), esz = x ? 8 : 4;
	for (u32 off = 36; off + esz <= len; off += esz) {
		u64 pa = x ? *(u64 *)(root + off) : *(u32 *)(root + off);
		u8 *t = P2V(pa);
		if (!memcmp(t, sig, 4))
			return t;
	}
	return 0;
}

static void madt_entry(u8 *e) {
	switch (e[0]) {
	case 0:
		if ((*(u32 *)(e + 4) & 1) && ncpu_found < MAX_CPUS)
			cpu_apic_ids[ncpu_found++] = e[3];
		break;
	case 1:
		if (!ioapic_gsi_base && *(u32 *)(e + 8) == 0)
			ioapic_phys = *(u32 *)(e + 4);
		break;
	case 2:
		if (e[3] < 16) {
			isa[e[3]].gsi = (int)*(u32 *)(e + 4);
			isa[e[3]].flags = *(u16 *)(e + 8);
		}
		break;
	}
}

void acpi_init(void) {
	for (int i = 0; i < 16; i++)
		isa[i].gsi = i, isa[i].flags = 0;
	u8 *rsdp = find_rsdp();
	u8 *madt = rsdp ? find_table(rsdp, "APIC") : 0;
	if (!madt) {
		kprintf("boot: no ACPI MADT: one CPU, I/O APIC at the default address\n");
		ncpu_found = 1;
		cpu_apic_ids[0] = lapic_id();
		return;
	}
	u32 len = *(u32 *)(madt + 4);
	for (u8 *e = madt + 44; e + 2 <= madt + len && e[1]; e += e[1])
		madt_entry(e);
	kprintf("boot: acpi: %d cpus, ioapic %lx\n", ncpu_found, ioapic_phys);
}

/* isa_to_gsi applies the MADT overrides; flags: MPS INTI flags. */
int isa_to_gsi(int irq, int *flags) {
	*flags = isa[irq].flags;
	return isa[irq].gsi;
}
