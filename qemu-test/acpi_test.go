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

// The ACPI tests boot the Debian guest kernel on QEMU's microvm machine
// with QEMU's own ACPI off and doppel's tables (vmm/devices/acpi) loaded
// at 0xE0000, where Linux's RSDP scan finds them. QEMU's LAPIC, IOAPIC
// and UART do the device work, not doppel's: these tests check the tables
// against their real consumer. isa-debug-exit devices at the FADT's reset
// and sleep control ports make the guest's writes there end QEMU with
// exit status value*2+1, so the test sees what Linux wrote.

// acpiQEMU starts microvm with the tables, the guest kernel and args.
func acpiQEMU(t *testing.T, cmdline string, extra ...string) *Machine {
	t.Helper()
	if _, err := os.Stat(guestKernel()); err != nil {
		t.Fatalf("guest kernel missing (%v): image.sh could not build it, see scripts/guest-image.sh's message above", err)
	}
	tables, err := acpi.Build(acpi.Config{NumCPUs: 2, COM1: true}, 0xE0000)
	if err != nil {
		t.Fatal(err)
	}
	blob := filepath.Join(t.TempDir(), "acpi.bin")
	if err := os.WriteFile(blob, tables.Bytes, 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{
		// pit=on only so Linux can try to calibrate; tsc_early_khz gives
		// the TSC rate TCG has no CPUID leaf for.
		"-M", "microvm,acpi=off,pic=off,pit=on,rtc=off,isa-serial=on",
		"-cpu", "max", "-smp", "2", "-m", "256",
		"-kernel", guestKernel(),
		"-append", "console=ttyS0 tsc_early_khz=2000000 " + cmdline,
		"-device", "loader,file=" + blob + ",addr=0xE0000,force-raw=on",
		"-device", "isa-debug-exit,iobase=0xcf9,iosize=1", // FADT reset register
		"-device", "isa-debug-exit,iobase=0x600,iosize=1", // FADT sleep control register
		"-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot",
	}
	m, err := runQEMU(t.Name(), append(args, extra...))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestQEMUACPITables: Linux takes the CPUs and IOAPIC from the MADT, runs
// the DSDT (\_S5, the COM1 device) in ACPICA, brings up both CPUs and the
// console on the IRQ the DSDT gives; with no root file system it panics
// and reboots through the FADT reset register (0x06 to port 0xCF9).
func TestQEMUACPITables(t *testing.T) {
	// reboot=acpi: on a HW-reduced machine Linux 6.1 otherwise reboots by
	// EFI, then by jumping to the BIOS reset vector (see package acpi).
	m := acpiQEMU(t, "panic=1 reboot=acpi")
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
	if got, want := exitStatus(m.err), acpi.DefaultResetValue*2+1; got != want {
		t.Errorf("QEMU exit status %d, want %d: the reset value %#x written to the reset register", got, want, acpi.DefaultResetValue)
	}
}

// TestQEMUACPIPowerOff runs u-root's poweroff as init: Linux evaluates
// \_S5 and writes SLP_TYP|SLP_EN to the FADT's sleep control register.
// The value it wrote, fed to doppel's acpi.Sleep device, must power off.
func TestQEMUACPIPowerOff(t *testing.T) {
	if _, err := os.Stat(guestInitrd()); err != nil {
		t.Fatalf("guest initramfs missing (%v)", err)
	}
	m := acpiQEMU(t, "panic=-1 rdinit=/bbin/poweroff", "-initrd", guestInitrd())
	defer m.Close()
	if _, err := m.Expect(regexp.MustCompile(`ACPI: PM: Preparing to enter system sleep state S5`), 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := m.Wait(2 * time.Minute); err != nil {
		t.Fatal(err)
	}
	st := exitStatus(m.err)
	want := (acpi.S5SleepType<<acpi.SleepTypeShift|acpi.SleepEnable)*2 + 1
	if st != want {
		t.Fatalf("QEMU exit status %d, want %d: SLP_TYP %d with SLP_EN written to the sleep control register", st, want, acpi.S5SleepType)
	}
	off := false
	acpi.NewSleep(func() { off = true }).PortOut(0, 1, uint32(st-1)/2)
	if !off {
		t.Errorf("acpi.Sleep did not power off on the guest's write %#x", (st-1)/2)
	}
}
