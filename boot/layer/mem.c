/* mem.c: physical memory. Carves the firmware memory map into the layer's
 * own regions (kernel = layer + Go image + boot page tables; the reserved
 * region for EPT and guest memory, doppel.reserve=, from the top of the
 * largest usable range) and hands out the rest as 4 KiB frames: a stack of
 * freed frames linked through the frames themselves (via the direct map)
 * in front of bump pointers over the never-used ranges, so both allocation
 * and freeing are O(1) and cost no metadata. */
#include "layer.h"

u64 kernel_start = 0x100000, kernel_end, reserve_start, reserve_end, phys_top;
static u64 early_next;

struct range {
	u64 cur, end;
};
static struct range ranges[MAX_REGIONS * 2];
static int nranges;
static u64 free_head, total_frames, used_frames;

int phys_is_ram(u64 pa) {
	for (int i = 0; i < nmemmap; i++)
		if (memmap[i].type == 1 && pa >= memmap[i].start && pa < memmap[i].end)
			return 1;
	return 0;
}

/* pick_reserve puts the reserved region at the top of the largest usable
 * range, 2 MiB aligned, unless that would overlap the kernel. */
static void pick_reserve(u64 kernel_top) {
	struct region *best = 0;
	for (int i = 0; i < nmemmap; i++)
		if (memmap[i].type == 1 && (!best || memmap[i].end - memmap[i].start > best->end - best->start))
			best = &memmap[i];
	if (!best || !flag_reserve)
		return;
	u64 end = ALIGN_DOWN(best->end, 2 << 20);
	u64 size = ALIGN_UP(flag_reserve, 2 << 20);
	if (end < size || end - size < MAX(best->start, kernel_top + (64 << 20))) {
		kprintf("boot: bad flag doppel.reserve: %lu bytes do not fit, no reserved region\n", flag_reserve);
		return;
	}
	reserve_start = end - size;
	reserve_end = end;
}

/* mem_place decides where the Go image goes: the first 2 MiB boundary
 * above the layer, the multiboot info and the modules. */
u64 mem_place(u64 span) {
	u64 top = (u64)_end;
	for (int i = 0; i < nmodules; i++)
		top = MAX(top, modules[i].end);
	if (mbinfo_end > kernel_start)
		top = MAX(top, mbinfo_end);
	u64 go = ALIGN_UP(top, 2 << 20);
	early_next = ALIGN_UP(go + span, PAGE);
	for (int i = 0; i < nmemmap; i++) /* RAM-like types; MMIO goes via /dev/mem */
		if (memmap[i].type == 1 || memmap[i].type == 3 || memmap[i].type == 4)
			phys_top = MAX(phys_top, memmap[i].end);
	pick_reserve(early_next);
	return go;
}

/* early_alloc hands out the frames right after the Go image while the
 * boot page tables are built; they become part of the kernel region. */
u64 early_alloc(void) {
	u64 pa = early_next;
	early_next += PAGE;
	memset(P2V(pa), 0, PAGE);
	return pa;
}

static void add_free(u64 lo, u64 hi, int ex) {
	u64 exl[3 + MAX_MODULES][2] = {{0, 1 << 20}, {kernel_start, kernel_end}, {reserve_start, reserve_end}};
	int n = 3;
	for (int i = 0; i < nmodules; i++)
		exl[n][0] = modules[i].start, exl[n][1] = modules[i].end, n++;
	for (; ex < n; ex++) {
		u64 a = ALIGN_DOWN(exl[ex][0], PAGE), b = ALIGN_UP(exl[ex][1], PAGE);
		if (a < hi && b > lo) {
			if (a > lo)
				add_free(lo, a, ex + 1);
			if (b < hi)
				add_free(b, hi, ex + 1);
			return;
		}
	}
	if (hi > lo && nranges < (int)(sizeof ranges / sizeof ranges[0])) {
		ranges[nranges++] = (struct range){lo, hi};
		total_frames += (hi - lo) / PAGE;
	}
}

void mem_init(void) {
	kernel_end = early_next;
	for (int i = 0; i < nmemmap; i++)
		if (memmap[i].type == 1)
			add_free(ALIGN_UP(memmap[i].start, PAGE), ALIGN_DOWN(memmap[i].end, PAGE), 0);
}

/* Freed frames carry FRAME_POISON after their link word until they are
 * handed out again: a frame found changed was written after it was freed
 * (a stale mapping, a device, a guest), the kind of corruption that
 * otherwise surfaces much later as a page table or Go memory overwritten
 * by whoever gets the frame next. frame_ok keeps the allocator from
 * handing out what was never free memory (a corrupted link). */
#define FRAME_POISON 0x5046524545444652ULL

static int frame_ok(u64 pa) {
	if (pa & (PAGE - 1) || pa < (1 << 20) || !phys_is_ram(pa))
		return 0;
	if ((pa >= kernel_start && pa < kernel_end) || (pa >= reserve_start && pa < reserve_end))
		return 0;
	for (int i = 0; i < nmodules; i++)
		if (pa + PAGE > modules[i].start && pa < modules[i].end)
			return 0;
	return 1;
}

u64 frame_alloc(void) {
	u64 pa = 0;
	if (free_head) {
		pa = free_head;
		if (!frame_ok(pa)) {
			kprintf("boot: frame allocator: free list holds %lx, not a free frame\n", pa);
			fatal("frame free list corrupted", 0);
		}
		u64 *w = (u64 *)P2V(pa);
		for (int i = 1; i < (int)(PAGE / 8); i++)
			if (w[i] != FRAME_POISON) {
				kprintf("boot: frame %lx written after it was freed: word %d is %lx\n", pa, i, w[i]);
				break;
			}
		free_head = w[0];
	} else {
		for (int i = 0; i < nranges && !pa; i++)
			if (ranges[i].cur < ranges[i].end) {
				pa = ranges[i].cur;
				ranges[i].cur += PAGE;
			}
		if (!pa)
			return 0;
		if (!frame_ok(pa)) {
			kprintf("boot: frame allocator: range hands out %lx, not a free frame\n", pa);
			fatal("frame ranges corrupted", 0);
		}
	}
	used_frames++;
	memset(P2V(pa), 0, PAGE);
	return pa;
}

void frame_free(u64 pa) {
	if (!frame_ok(pa)) {
		kprintf("boot: frame_free(%lx): not an allocator frame\n", pa);
		fatal("bad frame_free", 0);
	}
	u64 *w = (u64 *)P2V(pa);
	for (int i = 1; i < (int)(PAGE / 8); i++)
		w[i] = FRAME_POISON;
	w[0] = free_head;
	free_head = pa;
	used_frames--;
}

u64 frames_free(void) { return total_frames - used_frames; }
u64 frames_used(void) { return used_frames; }
