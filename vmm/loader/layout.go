package loader

import (
	"fmt"
	"sort"
)

// E820Type is the type of a memory-map range, as the BIOS INT 15h E820
// call reports it (ACPI 6.5 §15.1 "INT 15H E820H - Query System Address
// Map"). Linux's boot_params.e820_table and the multiboot memory maps use
// the same numbers.
type E820Type uint32

// E820 range types (ACPI 6.5 Table 15.1).
const (
	E820RAM      E820Type = 1 // AddressRangeMemory: usable RAM
	E820Reserved E820Type = 2 // AddressRangeReserved: MMIO, firmware, holes
	E820ACPI     E820Type = 3 // AddressRangeACPI: ACPI tables, reclaimable
	E820NVS      E820Type = 4 // AddressRangeNVS
	E820Unusable E820Type = 5 // AddressRangeUnusable
)

func (t E820Type) String() string {
	switch t {
	case E820RAM:
		return "RAM"
	case E820Reserved:
		return "reserved"
	case E820ACPI:
		return "ACPI"
	case E820NVS:
		return "NVS"
	case E820Unusable:
		return "unusable"
	}
	return fmt.Sprintf("type%d", uint32(t))
}

// E820Entry is one range of the guest's memory map.
type E820Entry struct {
	Addr, Size uint64
	Type       E820Type
}

// End is the first address after the range.
func (e E820Entry) End() uint64 { return e.Addr + e.Size }

// Layout is the guest-physical memory map the machine gives its guest: the
// same table becomes Linux's e820 table and the multiboot memory maps. The
// machine builds it (RAM, the holes below 1 MiB, the ACPI tables, the LAPIC
// and IOAPIC windows); the loader places the kernel, its initrd or modules
// and its boot structures only in RAM ranges of it.
type Layout struct {
	// Map is sorted by address; ranges do not overlap.
	Map []E820Entry
	// RSDP is the guest-physical address of the ACPI RSDP, 0 if none. Linux
	// gets it in boot_params.acpi_rsdp_addr (boot protocol 2.14 and later).
	RSDP uint64
}

// Guest-physical windows of the PC layout (NewPCLayout).
const (
	// LowRAMEnd ends conventional memory: 0x9F000-0xFFFFF holds the EBDA,
	// the VGA window and the BIOS ROMs on a PC.
	LowRAMEnd = 0x9F000
	// HighMemory is where extended memory starts (1 MiB).
	HighMemory = 0x100000
	// PCIHole starts the 32-bit MMIO window; RAM beyond it moves above 4 GiB.
	PCIHole = 0xC0000000
	// IOAPICBase and LAPICBase are the default APIC windows (Intel 82093AA
	// datasheet §3.0; SDM Vol. 3A §11.4.1), 4 KiB each.
	IOAPICBase = 0xFEC00000
	LAPICBase  = 0xFEE00000
	fourGiB    = 1 << 32
)

// NewPCLayout returns the memory map of a PC with ram bytes of RAM: low RAM
// up to LowRAMEnd, the legacy hole to 1 MiB, RAM from 1 MiB to PCIHole, the
// IOAPIC and LAPIC windows reserved, and what RAM is left above 4 GiB. The
// machine adds its ACPI tables with Carve.
func NewPCLayout(ram uint64) Layout {
	var l Layout
	l.Map = append(l.Map,
		E820Entry{0, LowRAMEnd, E820RAM},
		E820Entry{LowRAMEnd, HighMemory - LowRAMEnd, E820Reserved})
	if ram > HighMemory {
		below := min(ram, PCIHole) - HighMemory
		l.Map = append(l.Map, E820Entry{HighMemory, below, E820RAM})
	}
	l.Map = append(l.Map,
		E820Entry{IOAPICBase, 0x1000, E820Reserved},
		E820Entry{LAPICBase, 0x1000, E820Reserved})
	if ram > PCIHole {
		l.Map = append(l.Map, E820Entry{fourGiB, ram - PCIHole, E820RAM})
	}
	return l
}

// Carve gives the range [addr, addr+size) the type t, splitting the RAM
// entry that holds it (the machine's ACPI tables, for instance). The range
// must lie inside one RAM entry.
func (l *Layout) Carve(addr, size uint64, t E820Type) error {
	if size == 0 || addr+size < addr {
		return fmt.Errorf("carve %#x+%#x: %w", addr, size, ErrBadLayout)
	}
	for i, e := range l.Map {
		if e.Type != E820RAM || addr < e.Addr || addr+size > e.End() {
			continue
		}
		var parts []E820Entry
		if addr > e.Addr {
			parts = append(parts, E820Entry{e.Addr, addr - e.Addr, E820RAM})
		}
		parts = append(parts, E820Entry{addr, size, t})
		if addr+size < e.End() {
			parts = append(parts, E820Entry{addr + size, e.End() - addr - size, E820RAM})
		}
		l.Map = append(l.Map[:i], append(parts, l.Map[i+1:]...)...)
		return nil
	}
	return fmt.Errorf("carve %#x+%#x as %v: not inside one RAM range: %w", addr, size, t, ErrBadLayout)
}

// Validate checks that the map is sorted, without overlaps or empty or
// wrapping ranges, and has some RAM.
func (l Layout) Validate() error {
	ram := false
	for i, e := range l.Map {
		if e.Size == 0 || e.End() < e.Addr {
			return fmt.Errorf("memory map entry %d (%#x+%#x): empty or wraps: %w", i, e.Addr, e.Size, ErrBadLayout)
		}
		if i > 0 && e.Addr < l.Map[i-1].End() {
			return fmt.Errorf("memory map entry %d (%#x) overlaps or precedes entry %d: %w", i, e.Addr, i-1, ErrBadLayout)
		}
		ram = ram || e.Type == E820RAM
	}
	if !ram {
		return fmt.Errorf("memory map has no RAM: %w", ErrBadLayout)
	}
	return nil
}

// IsRAM reports whether [addr, addr+size) lies inside RAM (adjacent RAM
// entries count as one range).
func (l Layout) IsRAM(addr, size uint64) bool {
	if addr+size < addr {
		return false
	}
	for _, r := range l.ram() {
		if addr >= r.Addr && addr+size <= r.End() {
			return true
		}
	}
	return false
}

// RAMEnd is the end of the highest RAM range.
func (l Layout) RAMEnd() uint64 {
	var end uint64
	for _, e := range l.Map {
		if e.Type == E820RAM {
			end = max(end, e.End())
		}
	}
	return end
}

// ram returns the RAM entries, merged where adjacent.
func (l Layout) ram() []E820Entry {
	var out []E820Entry
	m := append([]E820Entry(nil), l.Map...)
	sort.Slice(m, func(i, j int) bool { return m[i].Addr < m[j].Addr })
	for _, e := range m {
		if e.Type != E820RAM {
			continue
		}
		if n := len(out); n > 0 && out[n-1].End() == e.Addr {
			out[n-1].Size += e.Size
			continue
		}
		out = append(out, e)
	}
	return out
}
