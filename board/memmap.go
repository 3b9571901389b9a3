package board

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// RegionType is the type of a memory-map region, as the boot layer names it.
type RegionType string

// Region types of /proc/doppel/memmap (boot/CONTRACT.md). The first five
// come from the firmware (E820 / multiboot); the last two are the layer's
// carve-outs, which it takes out of usable RAM.
const (
	RegionUsable         RegionType = "usable"
	RegionReserved       RegionType = "reserved"
	RegionACPI           RegionType = "acpi"
	RegionNVS            RegionType = "nvs"
	RegionBad            RegionType = "bad"
	RegionKernel         RegionType = "kernel"          // layer + Go image + page tables
	RegionDoppelReserved RegionType = "doppel-reserved" // for EPT and guest memory
)

// Region is one range of physical memory, [Start, End).
type Region struct {
	Start, End uint64
	Type       RegionType
}

// Size returns the region's length in bytes.
func (r Region) Size() uint64 { return r.End - r.Start }

func (r Region) String() string {
	return fmt.Sprintf("0x%016x-0x%016x %8s %s", r.Start, r.End, FormatBytes(r.Size()), r.Type)
}

// MemoryMap is the physical memory map, sorted by start address.
type MemoryMap []Region

// ParseMemmap parses /proc/doppel/memmap: one region a line,
// "0x<start> 0x<end> <type>", hex, end exclusive. Blank lines are skipped.
// Unknown types are kept (a newer layer may add some) and never count as
// usable RAM.
func ParseMemmap(r io.Reader) (MemoryMap, error) {
	var m MemoryMap
	err := eachLine(r, func(lineNo int, line string) error {
		f := strings.Fields(line)
		if len(f) != 3 {
			return fmt.Errorf("line %d: %q: want \"0x<start> 0x<end> <type>\"", lineNo, line)
		}
		start, err := parseHex(f[0])
		if err != nil {
			return fmt.Errorf("line %d: start: %w", lineNo, err)
		}
		end, err := parseHex(f[1])
		if err != nil {
			return fmt.Errorf("line %d: end: %w", lineNo, err)
		}
		if end <= start {
			return fmt.Errorf("line %d: empty or inverted region %#x-%#x", lineNo, start, end)
		}
		m = append(m, Region{Start: start, End: end, Type: RegionType(f[2])})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("board: memmap: %w", err)
	}
	sort.SliceStable(m, func(i, j int) bool { return m[i].Start < m[j].Start })
	return m, nil
}

// ReadMemmap reads and parses the live /proc/doppel/memmap.
func ReadMemmap() (MemoryMap, error) {
	data, err := ReadFile(MemmapPath)
	if err != nil {
		return nil, fmt.Errorf("board: %w", err)
	}
	return ParseMemmap(bytes.NewReader(data))
}

// Of returns the regions of type t.
func (m MemoryMap) Of(t RegionType) []Region {
	var out []Region
	for _, r := range m {
		if r.Type == t {
			out = append(out, r)
		}
	}
	return out
}

// Total returns the bytes in regions of type t.
func (m MemoryMap) Total(t RegionType) uint64 {
	var n uint64
	for _, r := range m.Of(t) {
		n += r.Size()
	}
	return n
}

// Usable returns the bytes of usable RAM not covered by any other region.
// The layer may list its carve-outs either by splitting usable ranges or as
// overlapping ranges; either way they are not counted, and firmware ranges
// that overlap usable ones win too.
func (m MemoryMap) Usable() uint64 {
	var n uint64
	for _, u := range m.Of(RegionUsable) {
		n += u.Size() - m.overlap(u)
	}
	return n
}

// overlap returns how many bytes of u are covered by non-usable regions,
// counting bytes covered twice once.
func (m MemoryMap) overlap(u Region) uint64 {
	var cut []Region
	for _, r := range m {
		if r.Type == RegionUsable || r.End <= u.Start || r.Start >= u.End {
			continue
		}
		cut = append(cut, Region{Start: max(r.Start, u.Start), End: min(r.End, u.End)})
	}
	sort.Slice(cut, func(i, j int) bool { return cut[i].Start < cut[j].Start })
	var n, covered uint64 = 0, u.Start
	for _, c := range cut {
		if c.End <= covered {
			continue
		}
		n += c.End - max(c.Start, covered)
		covered = c.End
	}
	return n
}

// WriteReport prints the map and its summary: usable RAM, the reserved
// region and the kernel's own region.
func (m MemoryMap) WriteReport(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "memory map: %d regions\n", len(m))
	for _, r := range m {
		fmt.Fprintf(&b, "  %v\n", r)
	}
	fmt.Fprintf(&b, "usable RAM %d MiB (%s, after carve-outs)\n", m.Usable()>>20, FormatBytes(m.Usable()))
	for _, t := range []RegionType{RegionDoppelReserved, RegionKernel} {
		rs := m.Of(t)
		if len(rs) == 0 {
			fmt.Fprintf(&b, "%s: none\n", t)
		}
		for _, r := range rs {
			fmt.Fprintf(&b, "%s: %s at %#x-%#x\n", t, FormatBytes(r.Size()), r.Start, r.End)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// FormatBytes renders a byte count for people: 639K, 64M, 3.87G.
func FormatBytes(n uint64) string {
	for _, u := range []struct {
		shift  uint
		suffix string
	}{{40, "T"}, {30, "G"}, {20, "M"}, {10, "K"}} {
		if n >= 1<<u.shift {
			if n%(1<<u.shift) == 0 {
				return fmt.Sprintf("%d%s", n>>u.shift, u.suffix)
			}
			return fmt.Sprintf("%.2f%s", float64(n)/float64(uint64(1)<<u.shift), u.suffix)
		}
	}
	return fmt.Sprintf("%dB", n)
}

func parseHex(s string) (uint64, error) {
	if !strings.HasPrefix(s, "0x") && !strings.HasPrefix(s, "0X") {
		return 0, fmt.Errorf("%q: want 0x-prefixed hex", s)
	}
	n, err := strconv.ParseUint(s[2:], 16, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: want 0x-prefixed hex", s)
	}
	return n, nil
}

// eachLine calls fn with every non-blank line, trimmed, numbered from 1.
func eachLine(r io.Reader, fn func(lineNo int, line string) error) error {
	s := bufio.NewScanner(r)
	for n := 1; s.Scan(); n++ {
		line := strings.TrimSpace(s.Text())
		if line == "" {
			continue
		}
		if err := fn(n, line); err != nil {
			return err
		}
	}
	return s.Err()
}
