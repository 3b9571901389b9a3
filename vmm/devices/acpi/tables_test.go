package acpi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// parsed is the result of walking the blob the way a guest does: from the
// RSDP through the XSDT to each table, by absolute address.
type parsed struct {
	xsdtEntries []uint64
	tables      map[string][]byte // by signature, header included
}

// parse decodes t independently of the builder and checks every checksum
// and length on the way.
func parse(t *testing.T, tb *Tables) *parsed {
	t.Helper()
	mem := func(addr uint64, n int) []byte {
		off := addr - tb.Base
		if addr < tb.Base || off+uint64(n) > uint64(len(tb.Bytes)) {
			t.Fatalf("address %#x+%d outside the blob at %#x+%d", addr, n, tb.Base, len(tb.Bytes))
		}
		return tb.Bytes[off : off+uint64(n)]
	}
	rsdp := mem(tb.RSDP, 36)
	if string(rsdp[:8]) != "RSD PTR " || rsdp[15] != 2 {
		t.Fatalf("RSDP signature %q revision %d", rsdp[:8], rsdp[15])
	}
	if checksum(rsdp[:20]) != 0 || checksum(rsdp) != 0 {
		t.Fatal("RSDP checksums do not sum to zero")
	}
	if n := binary.LittleEndian.Uint32(rsdp[20:]); n != 36 {
		t.Fatalf("RSDP length %d", n)
	}
	if tb.RSDP%16 != 0 {
		t.Fatalf("RSDP at %#x not 16-byte aligned", tb.RSDP)
	}
	p := &parsed{tables: map[string][]byte{}}
	sdt := func(addr uint64, want string) []byte {
		h := mem(addr, 36)
		n := int(binary.LittleEndian.Uint32(h[4:]))
		b := mem(addr, n)
		if string(b[:4]) != want {
			t.Fatalf("table at %#x is %q, want %q", addr, b[:4], want)
		}
		if checksum(b) != 0 {
			t.Fatalf("%s checksum does not sum to zero", want)
		}
		if string(b[10:16]) != "DOPPEL" {
			t.Errorf("%s OEM ID %q", want, b[10:16])
		}
		p.tables[want] = b
		return b
	}
	xsdt := sdt(binary.LittleEndian.Uint64(rsdp[24:]), "XSDT")
	for i := 36; i < len(xsdt); i += 8 {
		p.xsdtEntries = append(p.xsdtEntries, binary.LittleEndian.Uint64(xsdt[i:]))
	}
	if len(p.xsdtEntries) != 2 {
		t.Fatalf("XSDT has %d entries, want 2", len(p.xsdtEntries))
	}
	fadt := sdt(p.xsdtEntries[0], "FACP")
	sdt(p.xsdtEntries[1], "APIC")
	xdsdt := binary.LittleEndian.Uint64(fadt[140:])
	if d32 := binary.LittleEndian.Uint32(fadt[40:]); uint64(d32) != xdsdt {
		t.Errorf("FADT DSDT %#x and X_DSDT %#x differ", d32, xdsdt)
	}
	sdt(xdsdt, "DSDT")
	return p
}

// madtEntry is one decoded MADT interrupt controller structure.
type madtEntry struct {
	typ  uint8
	body []byte
}

func madtEntries(t *testing.T, madt []byte) []madtEntry {
	t.Helper()
	var out []madtEntry
	for i := 44; i < len(madt); {
		typ, n := madt[i], int(madt[i+1])
		if n < 2 || i+n > len(madt) {
			t.Fatalf("MADT entry at %d: length %d overruns", i, n)
		}
		out = append(out, madtEntry{typ, madt[i+2 : i+n]})
		i += n
	}
	return out
}

type gas struct {
	space, width, offset, access uint8
	addr                         uint64
}

func readGAS(b []byte) gas {
	return gas{b[0], b[1], b[2], b[3], binary.LittleEndian.Uint64(b[4:])}
}

func TestTables(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Config
		base uint64
	}{
		{"minimal", Config{NumCPUs: 1}, 0xE0000},
		{"legacy", Config{NumCPUs: 2, PIC: true, PIT: true, SCI: 9, I8042: true, RTC: true, COM1: true}, 0xF0000},
		{"pci", Config{NumCPUs: 4, COM1: true, IOAPICID: 4, PCI: &PCIConfig{MMIOBase: 0xC0000000, MMIOSize: 0x3EC00000}}, 0x7FF0000},
		{"max", Config{NumCPUs: MaxCPUs, SleepPort: 0x700, ResetPort: 0x64, ResetValue: 0xFE}, 0x100000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb, err := Build(tc.c, tc.base)
			if err != nil {
				t.Fatal(err)
			}
			p := parse(t, tb)
			checkFADT(t, &tc.c, p.tables["FACP"])
			checkMADT(t, &tc.c, p.tables["APIC"])
			checkDSDT(t, &tc.c, p.tables["DSDT"])
			if hasIASL() {
				disassemble(t, p)
			}
		})
	}
}

func checkFADT(t *testing.T, c *Config, f []byte) {
	t.Helper()
	if len(f) != 276 || f[8] != 6 {
		t.Fatalf("FADT length %d revision %d, want 276 and 6", len(f), f[8])
	}
	flags := binary.LittleEndian.Uint32(f[112:])
	if flags&(1<<20) == 0 || flags&(1<<10) == 0 {
		t.Errorf("FADT flags %#x lack HW_REDUCED_ACPI or RESET_REG_SUP", flags)
	}
	wantPort := func(p, def uint16) uint16 {
		if p == 0 {
			return def
		}
		return p
	}
	reset := readGAS(f[116:])
	if reset != (gas{1, 8, 0, 1, uint64(wantPort(c.ResetPort, 0xCF9))}) {
		t.Errorf("reset register %+v", reset)
	}
	wantValue := c.ResetValue
	if c.ResetPort == 0 {
		wantValue = 6
	}
	if f[128] != wantValue {
		t.Errorf("reset value %#x, want %#x", f[128], wantValue)
	}
	sleep := wantPort(c.SleepPort, 0x600)
	if g := readGAS(f[244:]); g != (gas{1, 8, 0, 1, uint64(sleep)}) {
		t.Errorf("sleep control register %+v", g)
	}
	if g := readGAS(f[256:]); g != (gas{1, 8, 0, 1, uint64(sleep + 1)}) {
		t.Errorf("sleep status register %+v", g)
	}
	if fw := binary.LittleEndian.Uint32(f[36:]) | uint32(binary.LittleEndian.Uint64(f[132:])); fw != 0 {
		t.Errorf("FACS pointer %#x in a HW-reduced FADT", fw)
	}
	arch := binary.LittleEndian.Uint16(f[109:])
	if (arch&2 != 0) != c.I8042 || (arch&(1<<5) == 0) != c.RTC {
		t.Errorf("IAPC_BOOT_ARCH %#x for i8042=%v rtc=%v", arch, c.I8042, c.RTC)
	}
	if sci := binary.LittleEndian.Uint16(f[46:]); sci != uint16(c.SCI) {
		t.Errorf("SCI_INT %d, want %d", sci, c.SCI)
	}
}

func checkMADT(t *testing.T, c *Config, m []byte) {
	t.Helper()
	if addr := binary.LittleEndian.Uint32(m[36:]); addr != 0xFEE00000 {
		t.Errorf("LAPIC address %#x", addr)
	}
	if pcat := binary.LittleEndian.Uint32(m[40:])&1 != 0; pcat != c.PIC {
		t.Errorf("PCAT_COMPAT %v, want %v", pcat, c.PIC)
	}
	var cpus, ioapics, nmis int
	overrides := map[uint8][2]uint32{} // source -> GSI, flags
	for _, e := range madtEntries(t, m) {
		switch e.typ {
		case 0:
			if len(e.body) != 6 || int(e.body[0]) != cpus || int(e.body[1]) != cpus || binary.LittleEndian.Uint32(e.body[2:])&1 == 0 {
				t.Errorf("Local APIC entry %d: % x", cpus, e.body)
			}
			cpus++
		case 1:
			ioapics++
			if e.body[0] != c.IOAPICID || binary.LittleEndian.Uint32(e.body[2:]) != 0xFEC00000 || binary.LittleEndian.Uint32(e.body[6:]) != 0 {
				t.Errorf("IOAPIC entry % x", e.body)
			}
		case 2:
			if e.body[0] != 0 {
				t.Errorf("override bus %d", e.body[0])
			}
			overrides[e.body[1]] = [2]uint32{binary.LittleEndian.Uint32(e.body[2:]), uint32(binary.LittleEndian.Uint16(e.body[6:]))}
		case 4:
			nmis++
			if !bytes.Equal(e.body, []byte{0xFF, 0, 0, 1}) {
				t.Errorf("LAPIC NMI entry % x", e.body)
			}
		default:
			t.Errorf("unexpected MADT entry type %d", e.typ)
		}
	}
	if cpus != c.NumCPUs || ioapics != 1 || nmis != 1 {
		t.Errorf("%d CPUs, %d IOAPICs, %d NMI entries; want %d, 1, 1", cpus, ioapics, nmis, c.NumCPUs)
	}
	want := map[uint8][2]uint32{}
	if c.PIT {
		want[0] = [2]uint32{2, 0}
	}
	if c.SCI != 0 {
		want[c.SCI] = [2]uint32{uint32(c.SCI), 0xD}
	}
	if len(overrides) != len(want) {
		t.Errorf("overrides %v, want %v", overrides, want)
	}
	for k, v := range want {
		if overrides[k] != v {
			t.Errorf("override of IRQ %d = %v, want %v", k, overrides[k], v)
		}
	}
}

func checkDSDT(t *testing.T, c *Config, d []byte) {
	t.Helper()
	// Name(\_S5_, Package(4){5, 0, 0, 0}) opens the body.
	want := []byte{0x08, '\\', '_', 'S', '5', '_', 0x12, 0x07, 0x04, 0x0A, S5SleepType, 0, 0, 0}
	if !bytes.HasPrefix(d[36:], want) {
		t.Errorf("DSDT body starts % x, want % x", d[36:36+len(want)], want)
	}
	for _, dev := range []struct {
		present bool
		name    string
		hid     uint32
	}{{c.COM1, "COM1", 0x0105D041}, {c.PCI != nil, "PCI0", 0x030AD041}} {
		hid := append([]byte("_HID\x0C"), binary.LittleEndian.AppendUint32(nil, dev.hid)...)
		if got := bytes.Contains(d, []byte(dev.name)) && bytes.Contains(d, hid); got != dev.present {
			t.Errorf("DSDT has %s with its _HID: %v, want %v", dev.name, got, dev.present)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Config
		base uint64
	}{
		{"no CPUs", Config{}, 0xE0000},
		{"too many CPUs", Config{NumCPUs: 255}, 0xE0000},
		{"unaligned", Config{NumCPUs: 1}, 0xE0008},
		{"above 4 GiB", Config{NumCPUs: 1}, 1<<32 - 16},
		{"SCI pin", Config{NumCPUs: 1, SCI: 24}, 0xE0000},
		{"PCI window", Config{NumCPUs: 1, PCI: &PCIConfig{MMIOBase: 0xF0000000, MMIOSize: 0x20000000}}, 0xE0000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Build(tc.c, tc.base); !errors.Is(err, ErrConfig) {
				t.Fatalf("err = %v, want ErrConfig", err)
			}
		})
	}
}

func TestPkgLength(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want []byte
	}{
		{0, []byte{1}},
		{62, []byte{63}},
		{63, []byte{0x41, 0x04}},         // 65 = 0x41
		{4093, []byte{0x4F, 0xFF}},       // 4095
		{4094, []byte{0x81, 0x00, 0x01}}, // 4097
	} {
		if got := pkgLength(tc.n); !bytes.Equal(got, tc.want) {
			t.Errorf("pkgLength(%d) = % x, want % x", tc.n, got, tc.want)
		}
	}
	if got := eisaID("PNP0A03"); got != 0x030AD041 {
		t.Errorf("eisaID(PNP0A03) = %#x", got)
	}
}

func TestPCIIRQ(t *testing.T) {
	for _, tc := range []struct {
		dev, pin int
		want     uint32
	}{
		{0, 1, 16}, {1, 1, 17}, {2, 1, 18}, {3, 1, 19}, {4, 1, 16},
		{1, 4, 16}, {3, 2, 16}, {31, 4, 18},
	} {
		if got := PCIIRQ(tc.dev, tc.pin); got != tc.want {
			t.Errorf("PCIIRQ(%d, INT%c) = %d, want %d", tc.dev, 'A'+tc.pin-1, got, tc.want)
		}
	}
}

// TestPRT decodes the _PRT from the DSDT and checks every entry against
// PCIIRQ: device d pin p (0-based in _PRT) goes to PCIIRQ(d, p+1).
func TestPRT(t *testing.T) {
	tb, err := Build(Config{NumCPUs: 1, PCI: &PCIConfig{MMIOBase: 0xC0000000, MMIOSize: 0x10000000}}, 0xE0000)
	if err != nil {
		t.Fatal(err)
	}
	dsdt := parse(t, tb).tables["DSDT"]
	i := bytes.Index(dsdt, []byte("_PRT"))
	if i < 0 {
		t.Fatal("no _PRT")
	}
	b := dsdt[i+4:]
	if b[0] != 0x12 {
		t.Fatalf("_PRT is not a package: %#x", b[0])
	}
	b = b[1+pkgLenSize(b[1]):]
	if b[0] != 128 {
		t.Fatalf("_PRT has %d entries, want 128", b[0])
	}
	b = b[1:]
	for e := 0; e < 128; e++ {
		// Package(4){DWordConst addr, pin, Zero, GSI}.
		if b[0] != 0x12 || b[2] != 4 || b[3] != 0x0C {
			t.Fatalf("entry %d: % x", e, b[:8])
		}
		addr := binary.LittleEndian.Uint32(b[4:])
		rest := b[8:]
		pin, n1 := amlIntAt(t, rest)
		src, n2 := amlIntAt(t, rest[n1:])
		gsi, n3 := amlIntAt(t, rest[n1+n2:])
		dev := int(addr >> 16)
		if addr&0xFFFF != 0xFFFF || src != 0 || dev != e/4 || int(pin) != e%4 {
			t.Fatalf("entry %d: addr %#x pin %d source %d", e, addr, pin, src)
		}
		if uint32(gsi) != PCIIRQ(dev, int(pin)+1) {
			t.Fatalf("device %d INT%c: GSI %d, want %d", dev, 'A'+pin, gsi, PCIIRQ(dev, int(pin)+1))
		}
		b = rest[n1+n2+n3:]
	}
}

func pkgLenSize(lead byte) int { return 1 + int(lead>>6) }

// amlIntAt decodes an AML integer constant; n is its encoded size.
func amlIntAt(t *testing.T, b []byte) (v uint64, n int) {
	t.Helper()
	switch b[0] {
	case 0x00:
		return 0, 1
	case 0x01:
		return 1, 1
	case 0x0A:
		return uint64(b[1]), 2
	case 0x0B:
		return uint64(binary.LittleEndian.Uint16(b[1:])), 3
	case 0x0C:
		return uint64(binary.LittleEndian.Uint32(b[1:])), 5
	}
	t.Fatalf("not an AML integer: % x", b[:4])
	return 0, 0
}

func hasIASL() bool {
	_, err := exec.LookPath("iasl")
	return err == nil
}

// disassemble runs ACPICA's iasl on every table and checks it decodes
// them without errors and finds what the tables should say.
func disassemble(t *testing.T, p *parsed) {
	t.Helper()
	dir := t.TempDir()
	wants := map[string][]string{
		"FACP": {"Hardware Reduced (V5) : 1", "Reset Register Supported (V2) : 1", "Sleep Control Register", "Sleep Status Register"},
		"APIC": {"Processor Local APIC", "I/O APIC"},
		"DSDT": {"_S5, Package (0x04)"},
	}
	for sig, tbl := range p.tables {
		if sig == "XSDT" {
			continue
		}
		in := filepath.Join(dir, strings.ToLower(sig)+".dat")
		if err := os.WriteFile(in, tbl, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("iasl", "-d", in).CombinedOutput()
		if err != nil {
			t.Fatalf("iasl -d %s: %v\n%s", sig, err, out)
		}
		dsl, err := os.ReadFile(strings.TrimSuffix(in, ".dat") + ".dsl")
		if err != nil {
			t.Fatal(err)
		}
		text := string(dsl)
		for _, w := range wants[sig] {
			if !strings.Contains(text, w) {
				t.Errorf("iasl's %s listing lacks %q:\n%s", sig, w, text)
			}
		}
		if strings.Contains(text, "Checksum is incorrect") || strings.Contains(strings.ToLower(string(out)), "error") {
			t.Errorf("iasl reports a problem in %s:\n%s\n%s", sig, out, text)
		}
		if sig == "DSDT" {
			dsdtListing(t, p.tables["DSDT"], text)
		}
	}
}

// dsdtListing checks the devices in iasl's ASL of the DSDT.
func dsdtListing(t *testing.T, dsdt []byte, asl string) {
	t.Helper()
	if bytes.Contains(dsdt, []byte("COM1")) {
		for _, w := range []string{`Device (COM1)`, `EisaId ("PNP0501")`, "IO (Decode16,", "0x03F8", "IRQNoFlags ()", "{4}"} {
			if !strings.Contains(asl, w) {
				t.Errorf("DSDT listing lacks %q:\n%s", w, asl)
			}
		}
	}
	if bytes.Contains(dsdt, []byte("PCI0")) {
		for _, w := range []string{`Device (PCI0)`, `EisaId ("PNP0A03")`, "WordBusNumber (ResourceProducer", "WordIO (ResourceProducer", "DWordMemory (ResourceProducer", "Name (_PRT, Package (0x80)", "0x0000FFFF", "0x001FFFFF"} {
			if !strings.Contains(asl, w) {
				t.Errorf("DSDT listing lacks %q:\n%s", w, asl)
			}
		}
	}
}
