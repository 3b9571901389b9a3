package qemutest

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"
)

// ovmf is the UEFI firmware image (Debian package ovmf, see scripts/deps.sh).
const ovmf = "/usr/share/ovmf/OVMF.fd"

// startQEMUUEFI builds a GRUB ISO with the given command line (scripts/mkiso.sh,
// which adds an EFI El Torito image when grub-efi-amd64-bin is installed)
// and boots it under QEMU TCG with OVMF, serial console on stdio.
func startQEMUUEFI(name, cmdline string, smp, memMiB int) (*Machine, error) {
	for _, p := range []string{ovmf, "/usr/lib/grub/x86_64-efi"} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("%s: %v (run scripts/deps.sh: ovmf, grub-efi-amd64-bin)", name, err)
		}
	}
	_, iso, err := buildISO(name, cmdline, nil)
	if err != nil {
		return nil, err
	}
	return runQEMU(name, []string{
		"-bios", ovmf, "-cdrom", iso,
		"-smp", strconv.Itoa(smp), "-m", strconv.Itoa(memMiB),
		"-display", "none", "-monitor", "none", "-serial", "stdio",
		"-no-reboot", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
	})
}

// TestQEMUUEFISelftest boots the GRUB ISO under UEFI firmware (OVMF): GRUB
// hands over the EFI memory map and the ACPI RSDP in multiboot2 tags (no
// RSDP in the BIOS area), and the kernel must pass its selftest.
func TestQEMUUEFISelftest(t *testing.T) {
	m, err := startQEMUUEFI(t.Name(), "doppel.selftest=1", 2, 1024)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.ExpectString("boot: acpi: 2 cpus", 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	checkSelftest(t, m, 6*time.Minute)
	checkS5(t, m, "0xb004", true) // OVMF puts the PIIX4's PM base at 0xB000
}
