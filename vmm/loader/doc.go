// Package loader loads guest kernels into guest memory and says how the
// vCPU starts them: Linux bzImages by the 64-bit boot protocol, and
// multiboot1 and multiboot2 kernels with their modules. It is pure Go and
// touches nothing but the Memory it is given.
//
// References:
//   - Linux Documentation/arch/x86/boot.rst ("The Real-Mode Kernel Header",
//     "64-bit Boot Protocol") and zero-page.rst (struct boot_params);
//   - The Multiboot Specification 0.6.96 (§3.1 header, §3.2 machine state,
//     §3.3 boot information);
//   - The Multiboot2 Specification 2.0 (§3.1 header tags, §3.2 machine
//     state, §3.6 boot information);
//   - ACPI 6.5 §15 (the E820 memory map);
//   - Intel SDM Vol. 3A §3.4.5 (segment descriptors), §4.5 (4-level
//     paging); Vol. 3C §25.4.1 (guest segment access rights).
//
// # Use
//
// The machine describes guest-physical memory with a Layout (an E820 map:
// NewPCLayout gives the PC shape, Carve marks the ACPI tables) and passes
// a Memory that backs its RAM (Flat for one slice):
//
//	l := loader.NewPCLayout(256 << 20)
//	state, kind, err := loader.Load(mem, loader.Config{
//		Layout: l, Kernel: vmlinuz, Cmdline: "console=ttyS0", Initrd: initramfs,
//	})
//
// Load detects the format (Detect), loads, and returns a BootState: the
// register state to write into the VMCS (or VMCB) before the first entry.
// Every failure is an error wrapping one of the Err variables with what
// exactly was wrong; the loader never panics on a bad image (FuzzDetect,
// FuzzLoad).
//
// # Guest memory the loader uses
//
// Linux: GDT at 0x500, zero page at 0x7000, RSP 0x8FF0, PML4 at 0x9000,
// PDPT at 0xA000, four page directories at 0xB000-0xEFFF (the first 4 GiB
// identity-mapped with 2 MiB pages), command line at 0x20000 (64 KiB at
// most). The kernel goes to pref_address (or, when relocatable, the lowest
// kernel_alignment-aligned RAM at or above 1 MiB holding init_size bytes),
// the initrd as high as initrd_addr_max and RAM allow outside the kernel's
// init_size, above 4 GiB only if the kernel allows it (XLF_CAN_BE_LOADED_
// ABOVE_4G, ext_ramdisk_image). The zero page has the image's setup header
// with type_of_loader 0xFF, the layout's e820 table and, for boot protocol
// 2.14 and later, Layout.RSDP as acpi_rsdp_addr.
//
// Multiboot: GDT at 0x500, ESP 0x7FF0, the boot information with its
// strings, module list and memory map from 0x8000 to at most 0x80000. The
// kernel's segments go where its address fields or ELF physical addresses
// say; modules follow it page-aligned. Multiboot1 flags 0-2 are honoured
// (bit 2, video mode, is ignored like QEMU does: doppel has no display);
// other required bits 3-15 are refused. Multiboot2 tags that need a
// framebuffer, or unknown tags, are refused unless optional.
//
// All of this must be RAM in the Layout: the machine keeps the low 640 KiB
// as RAM, as a PC does.
//
// # Start state
//
// BootState holds the vendor-neutral register state. Linux starts in
// 64-bit mode (CR0 PE|ET|NE|PG, CR4 PAE, EFER LME|LMA, CR3 the PML4) at
// load address + 0x200 with RSI the zero page; multiboot kernels start in
// 32-bit protected mode with paging off at their entry with EAX the
// magic (0x2BADB002 or 0x36D76289) and EBX the boot information. Both
// use CS = 0x10 and DS = ES = SS = FS = GS = 0x18 from a GDT written to
// guest memory, RFLAGS = 0x2 (interrupts off).
//
// # Why not u-root's bzimage package
//
// u-root's pkg/boot/bzimage (v0.16.0) parses a bzImage by decompressing
// its payload, which pulls in several compressors and os/exec; the loader
// needs only the setup header's fields at their documented offsets, and
// it runs inside the ring-0 kernel. Its multiboot package builds kexec
// segments for a running Linux. So the parsing here is our own, small and
// fuzzed.
package loader
