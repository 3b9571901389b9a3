/* acpi.c: find the CPUs and the I/O APIC in the ACPI MADT (ACPI 6.4
 * sec. 5.2.5 RSDP, 5.2.7/5.2.8 RSDT/XSDT, 5.2.12 MADT: entry types 0 =
 * Processor Local APIC, 1 = I/O APIC, 2 = Interrupt Source Override), and
 * how to enter S5, soft off, from the FADT and the DSDT's \_S5 object
 * (5.2.9 FADT, 4.8.3.2.1 PM1 Control, 7.4.2 \_Sx, 20.2 AML). */
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

/* rd64 reads a 64-bit field that the tables need not align (the XSDT's
 * entries start at offset 36, the FADT's X_ fields at 4 mod 8). */
static u64 rd64(const u8 *p) {
	u64 v;
	memcpy(&v, p, 8);
	return v;
}

static u8 *find_table(u8 *rsdp, const char *sig) {
	int x = rsdp[15] >= 2 && rd64(rsdp + 24);
	u8 *root = P2V(x ? rd64(rsdp + 24) : *(u32 *)(rsdp + 16));
	u32 len = *(u32 *)(root + 4), esz = x ? 8 : 4;
	for (u32 off = 36; off + esz <= len; off += esz) {
		u64 pa = x ? rd64(root + off) : *(u32 *)(root + off);
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

/* A Generic Address Structure (5.2.3.2); only system memory (0) and
 * system I/O (1) spaces are used for the PM1 and sleep registers. */
struct gas {
	u8 space;
	u64 addr;
};

enum {
	GAS_MEMORY = 0,
	GAS_IO = 1,
	PM1_SCI_EN = 1 << 0,
	PM1_SLP_TYP = 7 << 10,
	PM1_SLP_EN = 1 << 13,
	SLEEP_CTL_SLP_EN = 1 << 5, /* HW-reduced sleep control register */
	FADT_HW_REDUCED = 1 << 20,
};

/* s5 is what power_off needs, found once at boot: the tables may lie in
 * memory that is reused by then. */
static struct {
	int found, reduced;
	struct gas pm1a, pm1b, sleep; /* pm1b.addr 0: none */
	u8 typ_a, typ_b;
	u32 smi_cmd;
	u8 acpi_enable;
} s5;

/* fadt_gas reads the FADT's 64-bit register block at off if the table is
 * long enough and gives one in memory or I/O space (others, such as PCI
 * configuration space, are not handled), else the legacy 32-bit I/O port
 * at legacy. */
static struct gas fadt_gas(const u8 *f, u32 len, u32 off, u32 legacy) {
	struct gas g = {GAS_IO, 0};
	if (off + 12 <= len && rd64(f + off + 4) && f[off] <= GAS_IO) {
		g.space = f[off];
		g.addr = rd64(f + off + 4);
	} else if (legacy + 4 <= len) {
		g.addr = *(const u32 *)(f + legacy);
	}
	return g;
}

/* aml_small_int reads an AML integer constant small enough for SLP_TYP:
 * ZeroOp, OneOp, or a BytePrefix, WordPrefix or DWordPrefix constant
 * (20.2.3, 20.2.5.4). */
static int aml_small_int(const u8 **pp, const u8 *end, u8 *out) {
	const u8 *p = *pp;
	int n;
	if (p >= end)
		return 0;
	switch (*p) {
	case 0x00:
	case 0x01:
		*out = *p;
		*pp = p + 1;
		return 1;
	case 0x0A:
		n = 1;
		break;
	case 0x0B:
		n = 2;
		break;
	case 0x0C:
		n = 4;
		break;
	default:
		return 0;
	}
	if (p + 1 + n > end)
		return 0;
	*out = p[1];
	*pp = p + 1 + n;
	return 1;
}

/* find_s5 looks in the AML for Name(\_S5, Package(){SLP_TYPa, SLP_TYPb,
 * ...}): NameOp 0x08, an optional root prefix, "_S5_", PackageOp 0x12,
 * its PkgLength (1-4 bytes: the lead byte's top two bits count the rest)
 * and NumElements. A \_S5 that a method computes is not handled. */
static int find_s5(const u8 *aml, const u8 *end, u8 *a, u8 *b) {
	for (const u8 *p = aml + 1; p + 5 < end; p++) {
		if (memcmp(p, "_S5_", 4) || !(p[-1] == 0x08 || (p[-1] == '\\' && p - 2 >= aml && p[-2] == 0x08)))
			continue;
		const u8 *q = p + 4;
		if (*q++ != 0x12)
			continue;
		q += 1 + (*q >> 6) + 1; /* PkgLength, NumElements */
		if (aml_small_int(&q, end, a) && aml_small_int(&q, end, b))
			return 1;
	}
	return 0;
}

static void s5_init(u8 *rsdp) {
	const u8 *f = rsdp ? find_table(rsdp, "FACP") : 0;
	if (!f) {
		kprintf("boot: acpi: no FADT: power off only by emulators' ports\n");
		return;
	}
	u32 len = *(const u32 *)(f + 4);
	u64 dsdt_pa = 148 <= len && rd64(f + 140) ? rd64(f + 140) : *(const u32 *)(f + 40);
	const u8 *dsdt = dsdt_pa ? P2V(dsdt_pa) : 0;
	if (!dsdt || memcmp(dsdt, "DSDT", 4)) {
		kprintf("boot: acpi: no DSDT at 0x%lx: power off only by emulators' ports\n", dsdt_pa);
		return;
	}
	u32 dsdt_len = *(const u32 *)(dsdt + 4);
	if (dsdt_len < 36 || dsdt_len > 16u << 20) { /* corrupt: do not scan past it */
		kprintf("boot: acpi: DSDT length %u implausible: power off only by emulators' ports\n", dsdt_len);
		return;
	}
	if (!find_s5(dsdt + 36, dsdt + dsdt_len, &s5.typ_a, &s5.typ_b)) {
		kprintf("boot: acpi: no \\_S5 package in the DSDT: power off only by emulators' ports\n");
		return;
	}
	s5.reduced = 116 <= len && (*(const u32 *)(f + 112) & FADT_HW_REDUCED);
	if (s5.reduced) {
		s5.sleep = fadt_gas(f, len, 244, len); /* no legacy port */
		s5.found = s5.sleep.addr != 0;
		kprintf("boot: acpi: S5 is SLP_TYP %u at the sleep control register (%s 0x%lx)\n", s5.typ_a,
			s5.sleep.space == GAS_IO ? "port" : "memory", s5.sleep.addr);
		return;
	}
	s5.pm1a = fadt_gas(f, len, 172, 64);
	s5.pm1b = fadt_gas(f, len, 184, 68);
	s5.smi_cmd = 53 <= len ? *(const u32 *)(f + 48) : 0;
	s5.acpi_enable = 53 <= len ? f[52] : 0;
	s5.found = s5.pm1a.addr != 0;
	kprintf("boot: acpi: S5 is SLP_TYP %u/%u at PM1a_CNT %s 0x%lx, PM1b_CNT 0x%lx\n", s5.typ_a, s5.typ_b,
		s5.pm1a.space == GAS_IO ? "port" : "memory", s5.pm1a.addr, s5.pm1b.addr);
}

static u16 gas_read16(const struct gas *g) {
	if (g->space == GAS_IO)
		return inw((u16)g->addr);
	return *(volatile u16 *)P2V(g->addr);
}

static void gas_write(const struct gas *g, u16 v, int width16) {
	if (g->space == GAS_IO) {
		if (width16)
			outw((u16)g->addr, v);
		else
			outb((u16)g->addr, (u8)v);
	} else if (width16) {
		*(volatile u16 *)P2V(g->addr) = v;
	} else {
		*(volatile u8 *)P2V(g->addr) = (u8)v;
	}
}

/* acpi_s5 enters S5 as the FADT and \_S5 say, first taking the machine
 * into ACPI mode through SMI_CMD if the firmware left it in legacy mode
 * (SCI_EN clear; 4.8.2.1.1, 16.3). It returns 0 if the tables did not
 * say how, else 1 once it has written: the emulators act on the write
 * asynchronously, so the caller waits before trying anything else. */
int acpi_s5(void) {
	if (!s5.found)
		return 0;
	if (s5.reduced) {
		gas_write(&s5.sleep, (u16)((s5.typ_a & 7) << 2 | SLEEP_CTL_SLP_EN), 0);
		return 1;
	}
	if (s5.smi_cmd && s5.acpi_enable && !(gas_read16(&s5.pm1a) & PM1_SCI_EN)) {
		outb((u16)s5.smi_cmd, s5.acpi_enable);
		for (int i = 0; i < 300 && !(gas_read16(&s5.pm1a) & PM1_SCI_EN); i++)
			udelay(1000);
	}
	u16 a = (gas_read16(&s5.pm1a) & ~(PM1_SLP_TYP | PM1_SLP_EN)) | (u16)((s5.typ_a & 7) << 10);
	u16 b = 0;
	gas_write(&s5.pm1a, a, 1);
	if (s5.pm1b.addr) {
		b = (gas_read16(&s5.pm1b) & ~(PM1_SLP_TYP | PM1_SLP_EN)) | (u16)((s5.typ_b & 7) << 10);
		gas_write(&s5.pm1b, b, 1);
	}
	gas_write(&s5.pm1a, a | PM1_SLP_EN, 1);
	if (s5.pm1b.addr)
		gas_write(&s5.pm1b, b | PM1_SLP_EN, 1);
	return 1;
}

void acpi_init(void) {
	for (int i = 0; i < 16; i++)
		isa[i].gsi = i, isa[i].flags = 0;
	u8 *rsdp = find_rsdp();
	s5_init(rsdp);
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
