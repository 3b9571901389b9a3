// Package acpi builds the ACPI tables a doppel guest boots with (ACPI
// Specification 6.5, ch. 5 "ACPI Software Programming Model" and ch. 20
// "ACPI Machine Language Specification") and models the sleep-register
// port device through which the guest powers off.
//
// Build(Config, base) returns one blob to copy into guest memory at base:
//
//	RSDP  revision 2, XSDT address only (no RSDT)
//	XSDT  -> FADT, MADT
//	FADT  revision 6 with HW_REDUCED_ACPI: no PM1/GPE blocks, no FACS,
//	      sleep control/status registers (I/O ports SleepPort and
//	      SleepPort+1) and the reset register (I/O 0xCF9, value 0x06) as
//	      generic address structures, X_DSDT and DSDT
//	MADT  one Processor Local APIC per vCPU, the IOAPIC (GSI base 0),
//	      ISA IRQ0 -> GSI 2 if a PIT exists, the SCI override if any,
//	      LINT1 = NMI on all processors; PCAT_COMPAT if a PIC exists
//	DSDT  \_S5 (SLP_TYP S5SleepType), \_SB.COM1 (PNP0501, 0x3F8, IRQ 4) and
//	      \_SB.PCI0 (PNP0A03 with _CRS and a _PRT routing INTx to GSIs
//	      16-19 by pci.Swizzle, see PCIIRQ) when configured
//
// No MCFG: PCI configuration space is reached through ports 0xCF8/0xCFC.
//
// What Linux 6.1 needs from it, from arch/x86/kernel/acpi/boot.c and
// ACPICA: with HW_REDUCED_ACPI set, early_acpi_boot_init replaces the
// legacy PIC with null_legacy_pic and skips the PIT timer setup, and
// ACPICA installs no SCI handler and expects no FACS. Power-off
// (acpi_power_off -> acpi_hw_extended_sleep) writes WAK_STS to the
// status register, then SLP_TYP<<2 | SLP_EN to the control register,
// and needs both registers in the FADT and \_S5 in the DSDT. Reboot
// (acpi_reboot) writes the reset value to the reset register when
// RESET_REG_SUP is set; the machine's reset device at 0xCF9 acts on it.
// But Linux takes that path on a HW-reduced machine only with "reboot=acpi"
// on its command line: otherwise arch/x86/kernel/reboot.c's reboot_init
// picks EFI reboot (efi_reboot_required is true for HW-reduced ACPI), which
// without EFI falls through to a real-mode jump to the BIOS reset vector
// 0xFFFF0. The machine should pass reboot=acpi (checked by
// qemu-test/acpi_test.go: without it QEMU saw no write to 0xCF9).
// Because null_legacy_pic leaves no ISA IRQ mapped, the COM1 device's
// _CRS is what gives the 8250 driver its IRQ 4.
//
// Where the RSDP must go (Linux's acpi_os_get_root_pointer tries these in
// order): the boot_params ("zero page") field acpi_rsdp_addr at offset
// 0x070 (8 bytes, boot protocol 2.14+) holds its physical address when
// the machine loads a bzImage itself; otherwise the guest scans the first
// KiB of the EBDA and 0xE0000-0xFFFFF on 16-byte boundaries for
// "RSD PTR ". Placing the blob at a 16-byte-aligned base inside
// 0xE0000-0xFFFFF (it is a few KiB with PCI, under 1 KiB without)
// serves both. Mark the blob's range reserved (or ACPI) in the guest's
// E820 map so the kernel does not reuse it before it has read the tables.
package acpi
