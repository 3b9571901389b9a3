package loader

import (
	"encoding/binary"
	"fmt"
)

// Module is a multiboot module: its contents and its command line (GRUB
// passes the words after the module's path; doppel passes the module's
// name first, then its arguments).
type Module struct {
	Data    []byte
	Cmdline string
}

// Where the multiboot loaders put their boot structures, below 1 MiB.
const (
	mbGDT     = 0x500
	mbStack   = 0x7FF0 // ESP at entry; the specs leave it undefined
	mbInfo    = 0x8000 // the info structure, its strings, tables, maps
	mbInfoEnd = 0x80000

	bootLoaderName = "doppel"
)

// lowArea is what the multiboot loaders reserve for themselves.
var lowArea = span{0, mbInfoEnd}

// loadSegments checks that the entry lies in one of the segments and that
// each segment lies in RAM and overlaps neither another segment nor the
// loader's low area, then writes it and zeroes its tail. It returns the
// spans taken.
func loadSegments(mem Memory, l Layout, segs []segment, entry uint64) ([]span, error) {
	if entry >= fourGiB {
		return nil, fmt.Errorf("entry %#x above 4 GiB for a 32-bit start: %w", entry, ErrUnsupported)
	}
	if !inSegment(segs, entry) {
		return nil, fmt.Errorf("entry_addr %#x is in no loaded segment: %w", entry, ErrCorrupt)
	}
	var taken []span
	for i, s := range segs {
		sp := span{s.addr, s.addr + s.memsz}
		if sp.end > fourGiB || !l.IsRAM(s.addr, s.memsz) {
			return nil, fmt.Errorf("segment %d at %#x+%#x is not in guest RAM (RAM ends at %#x): %w", i, s.addr, s.memsz, l.RAMEnd(), ErrTooBig)
		}
		if sp.overlaps(lowArea) {
			return nil, fmt.Errorf("segment %d at %#x+%#x overlaps the boot information area %#x-%#x: %w", i, s.addr, s.memsz, lowArea.start, lowArea.end, ErrOverlap)
		}
		for j, t := range taken {
			if sp.overlaps(t) {
				return nil, fmt.Errorf("segment %d at %#x+%#x overlaps segment %d at %#x-%#x: %w", i, s.addr, s.memsz, j, t.start, t.end, ErrOverlap)
			}
		}
		taken = append(taken, sp)
	}
	for i, s := range segs {
		if err := mem.WriteAt(s.data, s.addr); err != nil {
			return nil, fmt.Errorf("segment %d: %w", i, err)
		}
		if err := zero(mem, s.addr+uint64(len(s.data)), s.memsz-uint64(len(s.data))); err != nil {
			return nil, fmt.Errorf("segment %d bss: %w", i, err)
		}
	}
	return taken, nil
}

// loadModules places each module page-aligned after the kernel, lowest
// first, in RAM below 4 GiB (the multiboot fields are 32-bit).
func loadModules(mem Memory, l Layout, kernel []span, mods []Module) ([]uint64, error) {
	next := uint64(HighMemory)
	for _, s := range kernel {
		next = max(next, s.end)
	}
	var addrs []uint64
	for i, m := range mods {
		size := max(uint64(len(m.Data)), 1)
		addr, err := placeLow(l, size, alignUp(next, pageSize))
		if err != nil {
			return nil, fmt.Errorf("module %d (%q, %d bytes): %w", i, m.Cmdline, len(m.Data), err)
		}
		if err := mem.WriteAt(m.Data, addr); err != nil {
			return nil, fmt.Errorf("module %d: %w", i, err)
		}
		addrs = append(addrs, addr)
		next = addr + size
	}
	return addrs, nil
}

// placeLow finds the lowest page-aligned address at or above from where
// size bytes fit in RAM below 4 GiB.
func placeLow(l Layout, size, from uint64) (uint64, error) {
	for _, r := range l.ram() {
		a := alignUp(max(r.Addr, from), pageSize)
		if a+size >= a && a+size <= min(r.End(), fourGiB) {
			return a, nil
		}
	}
	return 0, fmt.Errorf("no room in RAM below 4 GiB after %#x (RAM ends at %#x): %w", from, l.RAMEnd(), ErrTooBig)
}

// memLowerUpper returns the multiboot mem_lower and mem_upper in KiB: the
// RAM from 0 (at most 640 KiB) and the contiguous RAM from 1 MiB.
func memLowerUpper(l Layout) (lower, upper uint32) {
	for _, r := range l.ram() {
		if r.Addr == 0 {
			lower = uint32(min(r.End(), 640<<10) >> 10)
		}
		if r.Addr <= HighMemory && r.End() > HighMemory {
			upper = uint32(min(r.End()-HighMemory, fourGiB-HighMemory) >> 10)
		}
	}
	return lower, upper
}

// infoBuilder lays out a boot information structure and what it points
// to in one buffer that will sit at guest-physical base.
type infoBuilder struct {
	base uint64
	buf  []byte
}

func newInfoBuilder(base uint64, fixed int) *infoBuilder {
	return &infoBuilder{base: base, buf: make([]byte, fixed)}
}

// add appends b aligned to align and returns its guest-physical address.
func (b *infoBuilder) add(p []byte, align int) uint32 {
	for len(b.buf)%align != 0 {
		b.buf = append(b.buf, 0)
	}
	addr := b.base + uint64(len(b.buf))
	b.buf = append(b.buf, p...)
	return uint32(addr)
}

// put32 stores v at offset off of the buffer.
func (b *infoBuilder) put32(off int, v uint32) { binary.LittleEndian.PutUint32(b.buf[off:], v) }

// str appends a NUL-terminated string.
func (b *infoBuilder) str(s string) uint32 { return b.add(append([]byte(s), 0), 1) }

// checkLowArea checks that the loader's own area is RAM.
func checkLowArea(l Layout) error {
	if err := l.Validate(); err != nil {
		return err
	}
	if !l.IsRAM(0, mbInfoEnd) {
		return fmt.Errorf("multiboot boot structures at 0..%#x are not all RAM in the memory map: %w", mbInfoEnd, ErrBadLayout)
	}
	return nil
}

// startMultiboot writes the info structure and returns the 32-bit
// protected-mode start state both multiboot specs define: EAX the magic,
// EBX the info address, flat 4 GiB segments, paging and interrupts off.
func startMultiboot(mem Memory, l Layout, kernel []span, info *infoBuilder, magic uint32, entry uint64) (*BootState, error) {
	if info.base+uint64(len(info.buf)) > mbInfoEnd {
		return nil, fmt.Errorf("boot information of %d bytes exceeds %#x-%#x (too many modules or too long command lines): %w",
			len(info.buf), mbInfo, mbInfoEnd, ErrTooBig)
	}
	if err := mem.WriteAt(info.buf, info.base); err != nil {
		return nil, fmt.Errorf("boot information: %w", err)
	}
	s, err := newBootState(mem, Protected32, mbGDT)
	if err != nil {
		return nil, err
	}
	s.RIP = entry
	s.RSP = mbStack
	s.RAX = uint64(magic)
	s.RBX = info.base
	return s, nil
}

// inSegment reports whether addr lies in one of segs as loaded.
func inSegment(segs []segment, addr uint64) bool {
	for _, s := range segs {
		if addr >= s.addr && addr-s.addr < s.memsz {
			return true
		}
	}
	return false
}
