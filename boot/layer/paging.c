/* paging.c: 4-level paging (Intel SDM Vol. 3A 4.5, "4-Level Paging").
 * One address space for the layer and the Go process:
 *   PML4[0..255]   Go's lower half: the Go image at its link address, the
 *                  layer identity-mapped at 1 MiB (plus the AP trampoline),
 *                  everything else demand-paged from VMAs (vm.c);
 *   PML4[256..]    DIRECT_MAP + pa: all physical memory with 2 MiB pages,
 *                  write-back where RAM, UC (PCD|PWT) elsewhere (MMIO).
 * Page 0 stays unmapped, so nil dereferences fault. */
#include "layer.h"

u64 kernel_pml4;
static int mem_ready;
static volatile u64 tlb_gen;

static u64 new_table(void) { return mem_ready ? frame_alloc() : early_alloc(); }

static u64 *table(u64 e) { return (u64 *)P2V(e & PTE_ADDR); }

/* pte_walk returns the PTE for va in the lower half, making missing
 * tables when create is set; 0 if absent. */
u64 *pte_walk(u64 va, int create) {
	u64 *t = (u64 *)P2V(kernel_pml4);
	for (int shift = 39; shift > 12; shift -= 9) {
		u64 *e = &t[(va >> shift) & 511];
		if (!(*e & PTE_P)) {
			if (!create)
				return 0;
			u64 pa = new_table();
			if (!pa)
				return 0;
			*e = pa | PTE_P | PTE_W;
		}
		t = table(*e);
	}
	return &t[(va >> 12) & 511];
}

int map_page(u64 va, u64 pa, u64 flags) {
	u64 *pte = pte_walk(va, 1);
	if (!pte)
		return -ENOMEM;
	*pte = (pa & PTE_ADDR) | flags | PTE_P;
	return 0;
}

/* unmap_range clears the PTEs of [start,end), freeing frames the mapping
 * owns (PTE_ANON) when asked; it skips absent tables a level at a time.
 * Returns how many present entries it cleared (the caller shoots down). */
u64 unmap_range(u64 start, u64 end, int free_frames) {
	u64 changed = 0, *t4 = (u64 *)P2V(kernel_pml4);
	for (u64 va = start; va < end;) {
		u64 e4 = t4[(va >> 39) & 511];
		if (!(e4 & PTE_P)) {
			va = ALIGN_DOWN(va, 1ULL << 39) + (1ULL << 39);
			continue;
		}
		u64 e3 = table(e4)[(va >> 30) & 511];
		if (!(e3 & PTE_P)) {
			va = ALIGN_DOWN(va, 1ULL << 30) + (1ULL << 30);
			continue;
		}
		u64 e2 = table(e3)[(va >> 21) & 511];
		if (!(e2 & PTE_P)) {
			va = ALIGN_DOWN(va, 1ULL << 21) + (1ULL << 21);
			continue;
		}
		u64 *pte = &table(e2)[(va >> 12) & 511];
		if (*pte & (PTE_P | PTE_ANON)) {
			if (free_frames && (*pte & PTE_ANON))
				frame_free(*pte & PTE_ADDR);
			changed += *pte & PTE_P;
			*pte = 0;
		}
		va += PAGE;
	}
	return changed;
}

/* direct_map maps [0, top) at DIRECT_MAP with 2 MiB pages (PDE with PS=1,
 * SDM 3A Table 4-17). */
static void direct_map(u64 top) {
	u64 *pml4 = (u64 *)P2V(kernel_pml4);
	for (u64 pa = 0; pa < top; pa += 2 << 20) {
		u64 va = DIRECT_MAP + pa;
		u64 *e4 = &pml4[(va >> 39) & 511];
		if (!(*e4 & PTE_P))
			*e4 = early_alloc() | PTE_P | PTE_W;
		u64 *e3 = &table(*e4)[(va >> 30) & 511];
		if (!(*e3 & PTE_P))
			*e3 = early_alloc() | PTE_P | PTE_W;
		int ram = 0;
		for (int i = 0; i < nmemmap; i++)
			if (memmap[i].type == 1 && memmap[i].start < pa + (2 << 20) && memmap[i].end > pa)
				ram = 1;
		u64 attr = ram ? 0 : PTE_PCD | PTE_PWT;
		table(*e3)[(va >> 21) & 511] = pa | PTE_P | PTE_W | PTE_PS | PTE_NX | attr;
	}
}

void paging_init(void) {
	kernel_pml4 = early_alloc();
	direct_map(ALIGN_UP(MAX(phys_top, 4ULL << 30), 2 << 20));
	for (u64 pa = kernel_start; pa < (u64)_end; pa += PAGE)
		map_page(pa, pa, PTE_W);
	map_page(AP_TRAMPOLINE, AP_TRAMPOLINE, PTE_W);
	elf_map();
	write_cr3(kernel_pml4);
}

void paging_ready(void) { mem_ready = 1; }

/* tlb_shootdown flushes this CPU's TLB and makes every other online CPU
 * flush before the caller (holding the lock) goes on: an IPI for CPUs in
 * Go or idle, the lock's spin loop for CPUs waiting on it (sched.c). */
void tlb_shootdown(void) {
	write_cr3(read_cr3());
	struct cpu *me = mycpu();
	u64 gen = ++tlb_gen;
	me->tlb_seen = gen;
	for (int i = 0; i < ncpus; i++)
		if (cpus[i].online && &cpus[i] != me)
			lapic_ipi(cpus[i].apic_id, VEC_TLB);
	for (int i = 0; i < ncpus; i++) {
		if (!cpus[i].online || &cpus[i] == me)
			continue;
		for (u64 n = 0; cpus[i].tlb_seen < gen; n++) {
			cpu_relax();
			if (n == 1000000000ULL)
				kprintf("boot: tlb shootdown: cpu %d does not answer\n", i);
		}
	}
}

/* tlb_check runs where a CPU waits (lock spin, TLB IPI). */
void tlb_check(struct cpu *c) {
	u64 gen = tlb_gen;
	if (c->tlb_seen != gen) {
		write_cr3(read_cr3());
		c->tlb_seen = gen;
	}
}
