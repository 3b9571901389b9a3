package loader

import (
	"encoding/binary"
	"fmt"
)

// segment is one piece of a kernel image to place in guest memory: data at
// addr, then zeros up to memsz.
type segment struct {
	addr  uint64
	data  []byte
	memsz uint64
}

// ELF constants (System V ABI, "ELF Header" and "Program Header").
const (
	elfClass32  = 1
	elfClass64  = 2
	elfData2LSB = 1
	emI386      = 3
	emX86_64    = 62
	ptLoad      = 1
)

// parseELF returns an ELF file's PT_LOAD segments at their physical
// addresses and its entry point, translated to a physical address when it
// lies in a segment whose virtual and physical addresses differ (GRUB does
// the same for multiboot ELF kernels). Every offset and size is checked
// against the file: the image may be anything.
func parseELF(image []byte) ([]segment, uint64, error) {
	if len(image) < 0x34 {
		return nil, 0, fmt.Errorf("ELF header: %d bytes: %w", len(image), ErrTruncated)
	}
	if string(image[:4]) != string(elfMagic) {
		return nil, 0, fmt.Errorf("no ELF magic (% x): %w", image[:4], ErrUnknownFormat)
	}
	class, data := image[4], image[5]
	if data != elfData2LSB {
		return nil, 0, fmt.Errorf("ELF data encoding %d, want little-endian: %w", data, ErrUnsupported)
	}
	le16 := func(off uint64) uint16 { return binary.LittleEndian.Uint16(image[off:]) }
	le64 := func(off uint64) uint64 { return binary.LittleEndian.Uint64(image[off:]) }
	l32 := func(off uint64) uint64 { return uint64(binary.LittleEndian.Uint32(image[off:])) }
	var entry, phoff, phentsize, phnum, minPhent uint64
	switch class {
	case elfClass32:
		entry, phoff = l32(0x18), l32(0x1C)
		phentsize, phnum, minPhent = uint64(le16(0x2A)), uint64(le16(0x2C)), 32
	case elfClass64:
		if len(image) < 0x40 {
			return nil, 0, fmt.Errorf("ELF64 header: %d bytes: %w", len(image), ErrTruncated)
		}
		entry, phoff = le64(0x18), le64(0x20)
		phentsize, phnum, minPhent = uint64(le16(0x36)), uint64(le16(0x38)), 56
	default:
		return nil, 0, fmt.Errorf("ELF class %d: %w", class, ErrCorrupt)
	}
	if m := le16(0x12); m != emI386 && m != emX86_64 {
		return nil, 0, fmt.Errorf("ELF machine %d, want x86 (3) or x86-64 (62): %w", m, ErrUnsupported)
	}
	if phnum == 0 {
		return nil, 0, fmt.Errorf("ELF has no program headers: %w", ErrCorrupt)
	}
	if phentsize < minPhent {
		return nil, 0, fmt.Errorf("ELF program header size %d < %d: %w", phentsize, minPhent, ErrCorrupt)
	}
	if phoff > uint64(len(image)) || phnum*phentsize > uint64(len(image))-phoff {
		return nil, 0, fmt.Errorf("ELF program headers at %#x (%d of %d bytes) beyond the file (%#x): %w", phoff, phnum, phentsize, len(image), ErrTruncated)
	}
	var segs []segment
	physEntry, found := entry, false
	for i := uint64(0); i < phnum; i++ {
		p := phoff + i*phentsize
		var typ, off, vaddr, paddr, filesz, memsz uint64
		if class == elfClass32 {
			typ, off, vaddr, paddr, filesz, memsz = l32(p), l32(p+4), l32(p+8), l32(p+12), l32(p+16), l32(p+20)
		} else {
			typ, off, vaddr, paddr, filesz, memsz = l32(p), le64(p+8), le64(p+16), le64(p+24), le64(p+32), le64(p+40)
		}
		if typ != ptLoad || memsz == 0 {
			continue
		}
		if filesz > memsz {
			return nil, 0, fmt.Errorf("ELF segment %d: file size %#x > memory size %#x: %w", i, filesz, memsz, ErrCorrupt)
		}
		if off > uint64(len(image)) || filesz > uint64(len(image))-off {
			return nil, 0, fmt.Errorf("ELF segment %d: %#x bytes at file offset %#x beyond the file (%#x): %w", i, filesz, off, len(image), ErrTruncated)
		}
		if paddr+memsz < paddr || vaddr+memsz < vaddr {
			return nil, 0, fmt.Errorf("ELF segment %d: %#x+%#x wraps: %w", i, paddr, memsz, ErrCorrupt)
		}
		segs = append(segs, segment{addr: paddr, data: image[off : off+filesz], memsz: memsz})
		if !found && entry >= vaddr && entry < vaddr+memsz {
			physEntry, found = entry-vaddr+paddr, true
		}
	}
	if len(segs) == 0 {
		return nil, 0, fmt.Errorf("ELF has no loadable segment: %w", ErrCorrupt)
	}
	if !found {
		return nil, 0, fmt.Errorf("ELF entry %#x is in no loadable segment: %w", entry, ErrCorrupt)
	}
	return segs, physEntry, nil
}

// aoutKludge returns the segment described by multiboot address fields
// (multiboot1 §3.1.3, multiboot2 §3.1.5 "The address tag"), the header
// having been found at file offset hdrOff.
func aoutKludge(image []byte, hdrOff int, headerAddr, loadAddr, loadEnd, bssEnd uint32) (segment, error) {
	if headerAddr < loadAddr || uint64(headerAddr-loadAddr) > uint64(hdrOff) {
		return segment{}, fmt.Errorf("address fields: header_addr %#x, load_addr %#x put the load start before the file (header at %#x): %w",
			headerAddr, loadAddr, hdrOff, ErrCorrupt)
	}
	fileOff := uint64(hdrOff) - uint64(headerAddr-loadAddr)
	size := uint64(len(image)) - fileOff
	if loadEnd != 0 {
		if loadEnd <= loadAddr {
			return segment{}, fmt.Errorf("address fields: load_end_addr %#x <= load_addr %#x: %w", loadEnd, loadAddr, ErrCorrupt)
		}
		size = uint64(loadEnd - loadAddr)
		if size > uint64(len(image))-fileOff {
			return segment{}, fmt.Errorf("address fields: %#x bytes to load from file offset %#x, the file has %#x: %w",
				size, fileOff, len(image), ErrTruncated)
		}
	}
	memsz := size
	if bssEnd != 0 {
		if uint64(bssEnd) < uint64(loadAddr)+size {
			return segment{}, fmt.Errorf("address fields: bss_end_addr %#x before the loaded end %#x: %w", bssEnd, uint64(loadAddr)+size, ErrCorrupt)
		}
		memsz = uint64(bssEnd - loadAddr)
	}
	return segment{addr: uint64(loadAddr), data: image[fileOff : fileOff+size], memsz: memsz}, nil
}
