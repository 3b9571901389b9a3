package acpi

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestACPICA loads the FADT, MADT and DSDT into ACPICA's acpiexec (the
// interpreter Linux runs, from acpica-tools) and evaluates the objects
// Linux uses: \_S5 for power-off, the devices' _HID and _CRS, and _PRT.
func TestACPICA(t *testing.T) {
	if _, err := exec.LookPath("acpiexec"); err != nil {
		t.Skip("acpiexec (acpica-tools, installed by scripts/deps.sh) not found")
	}
	tb, err := Build(Config{NumCPUs: 2, COM1: true, PCI: &PCIConfig{MMIOBase: 0xC0000000, MMIOSize: 0x3EC00000}}, 0xE0000)
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, tb)
	dir := t.TempDir()
	var files []string
	for _, sig := range []string{"FACP", "APIC", "DSDT"} {
		f := filepath.Join(dir, sig+".dat")
		if err := os.WriteFile(f, p.tables[sig], 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	cmds := `evaluate \_S5; evaluate \_SB.COM1._HID; evaluate \_SB.COM1._CRS; ` +
		`evaluate \_SB.PCI0._HID; evaluate \_SB.PCI0._CRS; evaluate \_SB.PCI0._PRT`
	out, err := exec.Command("acpiexec", append([]string{"-b", cmds}, files...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("acpiexec: %v\n%s", err, out)
	}
	text := string(out)
	for _, want := range []string{
		"FACP", "APIC", "DSDT",
		"Evaluation of \\_S5 returned object",
		"[Package] Contains 4 Elements:\n    [Integer] = 0000000000000005\n",
		"[Integer] = 000000000105D041",           // PNP0501
		"[Integer] = 00000000030AD041",           // PNP0A03
		"47 01 F8 03 F8 03 01 08 22 10 00 79 00", // COM1 _CRS: IO 0x3F8/8, IRQ 4
		"[Package] Contains 128 Elements:",
		"ACPI: No outstanding allocations",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("acpiexec output lacks %q", want)
		}
	}
	for _, bad := range []string{"ACPI Error", "ACPI Warning", "ACPI Exception", "AE_"} {
		if strings.Contains(text, bad) {
			t.Errorf("acpiexec reports %q", bad)
		}
	}
	if t.Failed() {
		t.Logf("acpiexec output:\n%s", text)
	}
}
