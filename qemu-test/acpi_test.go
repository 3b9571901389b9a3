package qemutest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/doppel-ft/doppel/vmm/devices/acpi"
)

// TestQEMUACPITables boots the Debian guest kernel on QEMU's microvm
// machine with QEMU's own ACPI off and doppel's tables (vmm/devices/acpi)
// loaded at 0xE0000, where Linux's RSDP scan finds them: the real
// consumer of the tables must take the CPUs and IOAPIC from the MADT, run
// the DSDT (\_S5, the COM1 device) in its ACPICA interpreter, and bring up
// both CPUs and the console on the IRQ the DSDT gives. QEMU's LAPIC and
// IOAPIC do the interrupt work here, not doppel's; with no initramfs the
// kernel ends at the root-mount panic and, with -no-reboot, QEMU exits.
func TestQEMUACPITables(t *testing.T) {
	if _, err := os.Stat(guestKernel()); err != nil {
		t.Fatalf("guest kernel missing (%v): image.sh could not build it, see scripts/guest-image.sh's message above", err)
	}
	const base = 0xE0000
	tables, err := acpi.Build(acpi.Config{NumCPUs: 2, COM1: true}, base)
	if err != nil {
		t.Fatal(err)
	}
	blob := filepath.Join(t.TempDir(), "acpi.bin")
	if err := os.WriteFile(blob, tables.Bytes, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := runQEMU(t.Name(), []string{
		// pit=on only so Linux can try to calibrate; tsc_early_khz gives
		// the TSC rate TCG lacks a CPUID leaf for.
		"-M", "microvm,acpi=off,pic=off,pit=on,rtc=off,isa-serial=on",
		"-cpu", "max", "-smp", "2", "-m", "256",
		"-kernel", guestKernel(),
		"-append", "console=ttyS0 panic=-1 tsc_early_khz=2000000",
		"-device", "loader,file=" + blob + ",addr=0xE0000,force-raw=on",
		"-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	start := time.Now()
	if _, err := m.Expect(regexp.MustCompile(`Kernel panic - not syncing: VFS: Unable to mount root fs`), 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("kernel reached the root mount after %v", time.Since(start).Round(time.Millisecond))
	out := m.Output()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`ACPI: RSDP 0x00000000000E0000 000024 \(v02 DOPPEL\)`),
		regexp.MustCompile(`ACPI: FACP 0x[0-9A-F]+ 000114 \(v06 DOPPEL DOPPELVM`),
		regexp.MustCompile(`ACPI: APIC 0x[0-9A-F]+ [0-9A-F]+ \(v04 DOPPEL DOPPELVM`),
		regexp.MustCompile(`ACPI: DSDT 0x[0-9A-F]+ [0-9A-F]+ \(v02 DOPPEL DOPPELVM`),
		regexp.MustCompile(`IOAPIC\[0\]: apic_id 0, version \d+, address 0xfec00000, GSI 0-23`),
		regexp.MustCompile(`smpboot: Allowing 2 CPUs, 0 hotplug CPUs`),
		regexp.MustCompile(`smp: Brought up 1 node, 2 CPUs`),
		regexp.MustCompile(`ACPI: Interpreter enabled`),
		regexp.MustCompile(`ACPI: PM: \(supports S0 S5\)`),
		regexp.MustCompile(`pnp: PnP ACPI: found 1 devices`),
		regexp.MustCompile(`00:00: ttyS0 at I/O 0x3f8 \(irq = \d+, base_baud = 115200\) is a 16550A`),
	} {
		if !want.MatchString(out) {
			t.Errorf("console lacks %q", want)
		}
	}
	for _, bad := range []string{"ACPI Error", "ACPI BIOS Error", "ACPI Warning", "Invalid BIOS MADT"} {
		if strings.Contains(out, bad) {
			t.Errorf("console reports %q", bad)
		}
	}
	if err := m.Wait(2 * time.Minute); err != nil {
		t.Fatal(err)
	}
}
