package pci

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// MCFGEntry is one ECAM window of the ACPI MCFG table (PCI Firmware
// Specification 3.2, sec. 4.1.2, table 4-3): configuration space of buses
// StartBus..EndBus of Segment at Base.
type MCFGEntry struct {
	Base             uint64
	Segment          uint16
	StartBus, EndBus uint8
}

// ACPI table layout (ACPI 6.4 sec. 5.2.6 system description header: 36
// bytes; the MCFG adds 8 reserved bytes, then 16-byte entries).
const (
	acpiHeaderLen = 36
	mcfgEntries   = acpiHeaderLen + 8
	mcfgEntryLen  = 16
	maxACPITable  = 1 << 20
)

// ErrNoMCFG: the firmware has no MCFG table (no ECAM: use mechanism #1).
var ErrNoMCFG = errors.New("pci: no ACPI MCFG table")

// ParseMCFG checks and decodes an MCFG table (header included).
func ParseMCFG(t []byte) ([]MCFGEntry, error) {
	if err := checkTable(t, "MCFG"); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint32(t[4:])
	if n < mcfgEntries || (n-mcfgEntries)%mcfgEntryLen != 0 {
		return nil, fmt.Errorf("pci: MCFG length %d is not 44 + 16*n", n)
	}
	var out []MCFGEntry
	for o := uint32(mcfgEntries); o < n; o += mcfgEntryLen {
		e := MCFGEntry{
			Base:     binary.LittleEndian.Uint64(t[o:]),
			Segment:  binary.LittleEndian.Uint16(t[o+8:]),
			StartBus: t[o+10],
			EndBus:   t[o+11],
		}
		if e.EndBus < e.StartBus || e.Base%(1<<20) != 0 {
			return nil, fmt.Errorf("pci: MCFG entry %d: base %#x buses %d-%d", (o-mcfgEntries)/mcfgEntryLen, e.Base, e.StartBus, e.EndBus)
		}
		out = append(out, e)
	}
	return out, nil
}

// checkTable checks an ACPI table's signature, length and checksum.
func checkTable(t []byte, sig string) error {
	if len(t) < acpiHeaderLen {
		return fmt.Errorf("pci: ACPI table of %d bytes, shorter than its header", len(t))
	}
	if string(t[:4]) != sig {
		return fmt.Errorf("pci: ACPI table %q, want %q", t[:4], sig)
	}
	n := binary.LittleEndian.Uint32(t[4:])
	if n < acpiHeaderLen || int64(n) > int64(len(t)) {
		return fmt.Errorf("pci: ACPI %s length %d, have %d bytes", sig, n, len(t))
	}
	var sum byte
	for _, b := range t[:n] {
		sum += b
	}
	if sum != 0 {
		return fmt.Errorf("pci: ACPI %s checksum off by %d", sig, sum)
	}
	return nil
}

// PhysReader reads n bytes of physical memory at pa.
type PhysReader func(pa uint64, n int) ([]byte, error)

// FindACPITable finds the table with signature sig through the RSDP in
// the BIOS area (ACPI 6.4 sec. 5.2.5.1: the EBDA's first KiB or
// 0xE0000-0xFFFFF) and the XSDT, else the RSDT.
func FindACPITable(read PhysReader, sig string) ([]byte, error) {
	rsdp, err := findRSDP(read)
	if err != nil {
		return nil, err
	}
	root, esz := uint64(binary.LittleEndian.Uint32(rsdp[16:])), 4
	rootSig := "RSDT"
	if rsdp[15] >= 2 && len(rsdp) >= 36 {
		if x := binary.LittleEndian.Uint64(rsdp[24:]); x != 0 {
			root, esz, rootSig = x, 8, "XSDT"
		}
	}
	rt, err := readTable(read, root)
	if err != nil {
		return nil, err
	}
	if err := checkTable(rt, rootSig); err != nil {
		return nil, err
	}
	for o := acpiHeaderLen; o+esz <= len(rt); o += esz {
		pa := uint64(binary.LittleEndian.Uint32(rt[o:]))
		if esz == 8 {
			pa = binary.LittleEndian.Uint64(rt[o:])
		}
		h, err := read(pa, 4)
		if err != nil || string(h) != sig {
			continue
		}
		t, err := readTable(read, pa)
		if err != nil {
			return nil, err
		}
		return t, checkTable(t, sig)
	}
	if sig == "MCFG" {
		return nil, ErrNoMCFG
	}
	return nil, fmt.Errorf("pci: no ACPI %s table", sig)
}

func readTable(read PhysReader, pa uint64) ([]byte, error) {
	h, err := read(pa, acpiHeaderLen)
	if err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint32(h[4:])
	if n < acpiHeaderLen || n > maxACPITable {
		return nil, fmt.Errorf("pci: ACPI table at %#x: length %d", pa, n)
	}
	return read(pa, int(n))
}

func findRSDP(read PhysReader) ([]byte, error) {
	var areas [][2]uint64
	if b, err := read(0x40E, 2); err == nil {
		if ebda := uint64(binary.LittleEndian.Uint16(b)) << 4; ebda != 0 {
			areas = append(areas, [2]uint64{ebda, ebda + 1024})
		}
	}
	areas = append(areas, [2]uint64{0xE0000, 0x100000})
	for _, a := range areas {
		mem, err := read(a[0], int(a[1]-a[0]))
		if err != nil {
			continue
		}
		for o := 0; o+36 <= len(mem); o += 16 {
			if !bytes.Equal(mem[o:o+8], []byte("RSD PTR ")) {
				continue
			}
			var sum byte
			for _, b := range mem[o : o+20] {
				sum += b
			}
			if sum == 0 {
				return mem[o : o+36], nil
			}
		}
	}
	return nil, errors.New("pci: no ACPI RSDP in the BIOS area")
}
