/* elf.c: load the embedded Go ELF (System V gABI, ELF-64 Object File Format
 * 1.5: program headers, PT_LOAD) and build the Linux initial process stack
 * (System V AMD64 ABI 3.4.1, Figure 3.9: argc, argv, envp, auxv). */
#include "layer.h"

#define PT_LOAD 1
#define PF_X 1
#define PF_W 2
#define AT_NULL 0
#define AT_PAGESZ 6
#define AT_CLKTCK 17
#define AT_HWCAP 16
#define AT_SECURE 23
#define AT_RANDOM 25

struct ehdr {
	u8 ident[16];
	u16 type, machine;
	u32 version;
	u64 entry, phoff, shoff;
	u32 flags;
	u16 ehsize, phentsize, phnum, shentsize, shnum, shstrndx;
};
struct phdr {
	u32 type, flags;
	u64 offset, vaddr, paddr, filesz, memsz, align;
};

u64 go_entry, go_image_start, go_image_end, go_phys;
u64 go_file_end; /* end of the frame-backed part; BSS pages after it are demand-zero */

static struct ehdr *eh(void) { return (struct ehdr *)goelf_start; }
static struct phdr *ph(int i) { return (struct phdr *)(goelf_start + eh()->phoff + (u64)i * eh()->phentsize); }

/* elf_span checks the header and returns the size of the frame-backed
 * image: the whole pages beyond the last segment's file contents (Go's
 * BSS, 32 MiB of it for the FIPS DRBG) are left to demand paging, which
 * saves the copy, the zeroing and the RAM of pages never touched. */
u64 elf_span(void) {
	if (memcmp(eh()->ident, "\177ELF\2\1", 6) || eh()->machine != 62) {
		kprintf("boot: fatal: embedded Go image is not an x86-64 ELF\n");
		for (;;)
			__asm__ volatile("cli; hlt");
	}
	go_image_start = ~0ULL;
	for (int i = 0; i < eh()->phnum; i++) {
		if (ph(i)->type != PT_LOAD)
			continue;
		go_image_start = MIN(go_image_start, ALIGN_DOWN(ph(i)->vaddr, PAGE));
		go_image_end = MAX(go_image_end, ALIGN_UP(ph(i)->vaddr + ph(i)->memsz, PAGE));
		go_file_end = MAX(go_file_end, ALIGN_UP(ph(i)->vaddr + ph(i)->filesz, PAGE));
	}
	for (int i = 0; i < eh()->phnum; i++) /* only a writable last segment may be lazy */
		if (ph(i)->type == PT_LOAD && ph(i)->vaddr + ph(i)->memsz > go_file_end && !(ph(i)->flags & PF_W))
			go_file_end = go_image_end;
	go_entry = eh()->entry;
	return go_file_end - go_image_start;
}

/* elf_load copies the segments to phys (contiguous, same layout). */
void elf_load(u64 phys) {
	go_phys = phys;
	for (int i = 0; i < eh()->phnum; i++) {
		struct phdr *p = ph(i);
		if (p->type != PT_LOAD)
			continue;
		u8 *dst = P2V(phys + (p->vaddr - go_image_start));
		u64 lead = p->vaddr & (PAGE - 1);
		memset(dst - lead, 0, lead);
		memcpy(dst, goelf_start + p->offset, p->filesz);
		u64 end = MIN(ALIGN_UP(p->vaddr + p->memsz, PAGE), go_file_end);
		if (end > p->vaddr + p->filesz)
			memset(dst + p->filesz, 0, end - (p->vaddr + p->filesz));
	}
}

/* elf_map maps the segments at their link addresses with their rights. */
void elf_map(void) {
	for (int i = 0; i < eh()->phnum; i++) {
		struct phdr *p = ph(i);
		if (p->type != PT_LOAD)
			continue;
		u64 fl = (p->flags & PF_W ? PTE_W : 0) | (p->flags & PF_X ? 0 : PTE_NX);
		for (u64 va = ALIGN_DOWN(p->vaddr, PAGE); va < MIN(p->vaddr + p->memsz, go_file_end); va += PAGE)
			map_page(va, go_phys + (va - go_image_start), fl);
	}
}

static int is_env(const char *w, int n) {
	for (int i = 0; i < n; i++) {
		if (w[i] == '=')
			return i > 0;
		if (w[i] == '.')
			return 0;
	}
	return 0;
}

/* build_initial_stack writes argv = ["doppel", cmdline words...], envp =
 * the undotted KEY=value words + TERM=vt100, and auxv, per CONTRACT.md. */
u64 build_initial_stack(void) {
	vm_add(STACK_TOP - STACK_SIZE, STACK_TOP, PROT_READ | PROT_WRITE, V_ANON, 0);
	for (u64 va = STACK_TOP - 4 * PAGE; va < STACK_TOP; va += PAGE)
		map_page(va, frame_alloc(), PTE_W | PTE_NX | PTE_ANON);
	char *sp = (char *)STACK_TOP;
	u64 argv[64], envp[64];
	int argc = 0, envc = 0;
	sp -= 7, memcpy(sp, "doppel", 7), argv[argc++] = (u64)sp;
	sp -= 11, memcpy(sp, "TERM=vt100", 11), envp[envc++] = (u64)sp;
	for (const char *w = cmdline; *w;) {
		while (*w == ' ')
			w++;
		int n = 0;
		while (w[n] && w[n] != ' ')
			n++;
		if (!n)
			break;
		sp -= n + 1;
		memcpy(sp, w, n);
		sp[n] = 0;
		if (argc < 63)
			argv[argc++] = (u64)sp;
		if (is_env(w, n) && envc < 63)
			envp[envc++] = (u64)sp;
		w += n;
	}
	sp = (char *)ALIGN_DOWN((u64)sp, 16) - 16;
	u64 rnd = (u64)sp;
	random_bytes((u8 *)sp, 16);
	u32 r[4];
	cpuid(1, 0, r);
	u64 aux[] = {AT_PAGESZ, PAGE, AT_RANDOM, rnd, AT_HWCAP, r[3], AT_CLKTCK, 100, AT_SECURE, 0, AT_NULL, 0};
	int words = 1 + argc + 1 + envc + 1 + (int)(sizeof aux / 8);
	u64 *v = (u64 *)(ALIGN_DOWN((u64)sp - words * 8, 16));
	u64 *p = v;
	*p++ = argc;
	for (int i = 0; i < argc; i++)
		*p++ = argv[i];
	*p++ = 0;
	for (int i = 0; i < envc; i++)
		*p++ = envp[i];
	*p++ = 0;
	memcpy(p, aux, sizeof aux);
	return (u64)v;
}
