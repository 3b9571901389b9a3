/* vm.c: Go's address space as a sorted array of VMAs over the lower half.
 * Anonymous memory is demand-paged: mmap only records the range (Go
 * reserves hundreds of MiB PROT_NONE and commits parts of it with
 * MAP_FIXED), the first touch allocates a zeroed frame, munmap and
 * madvise(MADV_DONTNEED) give frames back (that is how the Go scavenger
 * returns memory). /dev/mem mappings (V_DEVMEM) point at physical pages and
 * never free them; MMIO is mapped uncached. Hints are honoured when the
 * range is free; otherwise the search goes top-down from MMAP_TOP. */
#include "layer.h"

#define MAP_SHARED 0x01
#define MAP_FIXED 0x10
#define MAP_FIXED_NOREPLACE 0x100000
#define MADV_DONTNEED 4
#define MADV_FREE 8
#define MAX_VMAS 2048

struct vma {
	u64 start, end, phys;
	int prot, kind;
};
static struct vma vmas[MAX_VMAS];
static int nvmas;

int user_ok(u64 p, u64 n) { return p >= PAGE && p + n >= p && p + n <= USER_MAX; }

static struct vma *find(u64 a) {
	for (int i = 0; i < nvmas; i++)
		if (a >= vmas[i].start && a < vmas[i].end)
			return &vmas[i];
	return 0;
}

static int overlaps(u64 s, u64 e) {
	for (int i = 0; i < nvmas; i++)
		if (vmas[i].start < e && vmas[i].end > s)
			return 1;
	return 0;
}

/* carve removes [s,e) from the VMA list, splitting where needed. */
static int carve(u64 s, u64 e) {
	for (int i = 0; i < nvmas; i++) {
		struct vma *v = &vmas[i];
		if (v->start >= e || v->end <= s)
			continue;
		if (v->start < s && v->end > e) { /* split in two */
			if (nvmas >= MAX_VMAS)
				return -ENOMEM;
			memmove(v + 1, v, (nvmas - i) * sizeof *v);
			nvmas++;
			v[0].end = s;
			v[1].phys += e - v[1].start;
			v[1].start = e;
			return 0;
		}
		if (v->start < s)
			v->end = s;
		else if (v->end > e) {
			v->phys += e - v->start;
			v->start = e;
		} else {
			memmove(v, v + 1, (nvmas - i - 1) * sizeof *v);
			nvmas--;
			i--;
		}
	}
	return 0;
}

int vm_add(u64 start, u64 end, int prot, int kind, u64 phys) {
	if (nvmas >= MAX_VMAS)
		return -ENOMEM;
	int i = 0;
	while (i < nvmas && vmas[i].start < start)
		i++;
	memmove(&vmas[i + 1], &vmas[i], (nvmas - i) * sizeof vmas[0]);
	vmas[i] = (struct vma){start, end, phys, prot, kind};
	nvmas++;
	return 0;
}

/* find_gap: highest free [x, x+len) below MMAP_TOP. */
static u64 find_gap(u64 len) {
	u64 top = MMAP_TOP;
	for (int i = nvmas - 1; i >= -1; i--) {
		u64 lo = i >= 0 ? vmas[i].end : go_image_end;
		if (i >= 0 && vmas[i].start >= top)
			continue;
		if (lo < top && top - lo >= len)
			return top - len;
		if (i >= 0)
			top = MIN(top, vmas[i].start);
	}
	return 0;
}

static void drop(u64 s, u64 e) {
	if (unmap_range(s, e, 1))
		tlb_shootdown();
}

i64 vm_mmap(u64 addr, u64 len, int prot, int flags, int kind, u64 phys) {
	if (!len)
		return -EINVAL;
	len = ALIGN_UP(len, PAGE);
	if (addr & (PAGE - 1)) {
		if (flags & MAP_FIXED)
			return -EINVAL;
		addr = ALIGN_DOWN(addr, PAGE);
	}
	int fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE);
	int ok = addr && addr >= go_image_end && user_ok(addr, len);
	if (fixed && !ok)
		return -ENOMEM;
	if ((flags & MAP_FIXED_NOREPLACE) && overlaps(addr, addr + len))
		return -17; /* EEXIST */
	if (!fixed && (!ok || overlaps(addr, addr + len)))
		addr = find_gap(len);
	if (!addr)
		return -ENOMEM;
	if (fixed) {
		drop(addr, addr + len);
		if (carve(addr, addr + len))
			return -ENOMEM;
	}
	if (vm_add(addr, addr + len, prot, kind, phys))
		return -ENOMEM;
	return (i64)addr;
}

i64 vm_munmap(u64 addr, u64 len) {
	if ((addr & (PAGE - 1)) || !len || !user_ok(addr, len) || addr < go_image_end)
		return -EINVAL;
	len = ALIGN_UP(len, PAGE);
	drop(addr, addr + len);
	return carve(addr, addr + len);
}

/* vm_madvise: DONTNEED and FREE give the frames back at once (anonymous
 * memory reads back as zeros, as on Linux); other advice is accepted. */
i64 vm_madvise(u64 addr, u64 len, int advice) {
	if ((addr & (PAGE - 1)) || !user_ok(addr, len))
		return -EINVAL;
	if (advice == MADV_DONTNEED || advice == MADV_FREE) {
		u64 e = addr + ALIGN_UP(len, PAGE);
		for (int i = 0; i < nvmas; i++) {
			struct vma *v = &vmas[i];
			if (v->kind == V_ANON && v->start < e && v->end > addr)
				drop(MAX(v->start, addr), MIN(v->end, e));
		}
	}
	return 0;
}

/* vm_mprotect splits out the range with the new rights and rewrites the
 * present PTEs; PROT_NONE keeps the frame in the PTE with P clear, so the
 * data is still there when access comes back. */
static u64 pte_flags(int prot) {
	return (prot & PROT_WRITE ? PTE_W : 0) | (prot & PROT_EXEC ? 0 : PTE_NX) | (prot ? PTE_P : 0);
}

i64 vm_mprotect(u64 addr, u64 len, int prot) {
	if ((addr & (PAGE - 1)) || !user_ok(addr, len))
		return -EINVAL;
	u64 e = addr + ALIGN_UP(len, PAGE);
	struct vma *v = find(addr);
	if (!v || v->end < e)
		return -ENOMEM;
	struct vma copy = *v;
	if (carve(addr, e))
		return -ENOMEM;
	vm_add(addr, e, prot, copy.kind, copy.phys + (addr - copy.start));
	for (u64 va = addr; va < e; va += PAGE) {
		u64 *pte = pte_walk(va, 0);
		if (pte && (*pte & (PTE_P | PTE_ANON)))
			*pte = (*pte & (PTE_ADDR | PTE_ANON | PTE_PCD | PTE_PWT)) | pte_flags(prot);
	}
	tlb_shootdown();
	return 0;
}

/* vm_fault maps the page behind a fault in a VMA; code gets the si_code
 * for SIGSEGV otherwise (SEGV_MAPERR 1, SEGV_ACCERR 2). */
int vm_fault(u64 addr, u64 err, int *code) {
	struct vma *v = find(addr);
	*code = 1;
	if (!v || v->kind == V_FIXED)
		return -1;
	*code = 2;
	if (!v->prot || ((err & 2) && !(v->prot & PROT_WRITE)) || ((err & 16) && !(v->prot & PROT_EXEC)))
		return -1;
	u64 va = ALIGN_DOWN(addr, PAGE);
	u64 *pte = pte_walk(va, 1);
	if (!pte)
		fatal("out of memory for page tables", 0);
	if (*pte & PTE_P)
		return 0; /* another CPU mapped it first */
	u64 fl = pte_flags(v->prot);
	if (*pte & PTE_ANON) { /* kept across PROT_NONE */
		*pte = (*pte & (PTE_ADDR | PTE_ANON)) | fl;
		return 0;
	}
	if (v->kind == V_DEVMEM) {
		u64 pa = v->phys + (va - v->start);
		*pte = pa | fl | (phys_is_ram(pa) ? 0 : PTE_PCD | PTE_PWT);
		return 0;
	}
	u64 pa = frame_alloc();
	if (!pa)
		fatal("out of memory", 0);
	*pte = pa | fl | PTE_ANON;
	return 0;
}
