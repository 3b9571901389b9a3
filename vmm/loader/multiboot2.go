package loader

import (
	"encoding/binary"
	"fmt"
)

// Multiboot2 Specification 2.0 §3.1 (header and its tags), §3.2 (machine
// state), §3.6 (boot information).
const (
	mb2Magic     = 0xE85250D6
	mb2BootMagic = 0x36D76289 // EAX at entry
	mb2Search    = 32768
	mb2ArchI386  = 0

	mb2TagEnd         = 0
	mb2TagInfoRequest = 1
	mb2TagAddress     = 2
	mb2TagEntry       = 3
	mb2TagConsole     = 4
	mb2TagFramebuffer = 5
	mb2TagModAlign    = 6
	mb2TagEFIBS       = 7
	mb2TagEntryEFI32  = 8
	mb2TagEntryEFI64  = 9
	mb2TagRelocatable = 10
	mb2TagOptional    = 1 // tag flags bit 0

	// Boot information tag types (§3.6).
	mb2InfoCmdline = 1
	mb2InfoLoader  = 2
	mb2InfoModule  = 3
	mb2InfoMeminfo = 4
	mb2InfoMmap    = 6
	mb2InfoMaxType = 21 // the highest type the spec defines
)

// mb2Header is a multiboot2 header that passed its checksum, with the
// tags the loader acts on.
type mb2Header struct {
	off                                   int
	hasAddress, hasEntry                  bool
	headerAddr, loadAddr, loadEnd, bssEnd uint32
	entry                                 uint32
}

// findMultiboot2 scans the first 32 KiB for an 8-byte aligned header with a
// good checksum and parses its tags; like findMultiboot1 it reports the
// first bad header when no good one exists.
func findMultiboot2(image []byte) (*mb2Header, int, error) {
	var firstErr error
	firstOff := -1
	for off := 0; off+4 <= min(len(image), mb2Search); off += 8 {
		if le32(image, off) != mb2Magic {
			continue
		}
		if off+16 > len(image) {
			return nil, off, fmt.Errorf("multiboot2 header at %#x: %w", off, ErrTruncated)
		}
		arch, length, sum := le32(image, off+4), le32(image, off+8), le32(image, off+12)
		if mb2Magic+arch+length+sum != 0 {
			if firstErr == nil {
				firstErr = fmt.Errorf("multiboot2 header at %#x: magic+architecture+header_length+checksum = %#x, want 0: %w",
					off, uint32(mb2Magic+arch+length+sum), ErrChecksum)
				firstOff = off
			}
			continue
		}
		h, err := parseMB2Tags(image, off, arch, length)
		return h, off, err
	}
	return nil, firstOff, firstErr
}

func parseMB2Tags(image []byte, off int, arch, length uint32) (*mb2Header, error) {
	if arch != mb2ArchI386 {
		return nil, fmt.Errorf("multiboot2 header at %#x: architecture %d, want 0 (i386): %w", off, arch, ErrUnsupported)
	}
	if length < 16+8 || uint64(off)+uint64(length) > uint64(len(image)) {
		return nil, fmt.Errorf("multiboot2 header at %#x: header_length %#x, the file has %#x: %w", off, length, len(image), ErrTruncated)
	}
	h := &mb2Header{off: off}
	end := off + int(length)
	for t := off + 16; ; {
		if t+8 > end {
			return nil, fmt.Errorf("multiboot2 header at %#x: tags run past header_length without an end tag: %w", off, ErrCorrupt)
		}
		typ := binary.LittleEndian.Uint16(image[t:])
		flags := binary.LittleEndian.Uint16(image[t+2:])
		size := int(le32(image, t+4))
		if size < 8 || size > end-t {
			return nil, fmt.Errorf("multiboot2 tag %d at %#x: size %d outside 8..%d: %w", typ, t, size, end-t, ErrCorrupt)
		}
		optional := flags&mb2TagOptional != 0
		need := func(n int) error {
			if size < n {
				return fmt.Errorf("multiboot2 tag %d at %#x: size %d, want %d: %w", typ, t, size, n, ErrCorrupt)
			}
			return nil
		}
		switch typ {
		case mb2TagEnd:
			return h, nil
		case mb2TagInfoRequest:
			for r := t + 8; r+4 <= t+size; r += 4 {
				if req := le32(image, r); req > mb2InfoMaxType && !optional {
					return nil, fmt.Errorf("multiboot2 header at %#x: requires boot information of unknown type %d: %w", off, req, ErrUnsupported)
				}
			}
		case mb2TagAddress:
			if err := need(24); err != nil {
				return nil, err
			}
			h.hasAddress = true
			h.headerAddr, h.loadAddr = le32(image, t+8), le32(image, t+12)
			h.loadEnd, h.bssEnd = le32(image, t+16), le32(image, t+20)
		case mb2TagEntry:
			if err := need(12); err != nil {
				return nil, err
			}
			h.hasEntry, h.entry = true, le32(image, t+8)
		case mb2TagFramebuffer:
			if !optional {
				return nil, fmt.Errorf("multiboot2 header at %#x: requires a framebuffer, doppel offers only a serial console: %w", off, ErrUnsupported)
			}
		case mb2TagConsole, mb2TagModAlign, mb2TagEFIBS, mb2TagEntryEFI32, mb2TagEntryEFI64, mb2TagRelocatable:
			// Satisfied (modules are page-aligned) or irrelevant without
			// EFI; a relocatable kernel is loaded at its linked address.
		default:
			if !optional {
				return nil, fmt.Errorf("multiboot2 header at %#x: unknown required tag %d: %w", off, typ, ErrUnsupported)
			}
		}
		t += (size + 7) &^ 7
	}
}

// loadMultiboot2 loads a multiboot2 kernel: by its address and entry tags
// when it has an address tag, else as an ELF file (an entry tag, if
// present, overrides the ELF entry).
func loadMultiboot2(mem Memory, l Layout, image []byte, cmdline string, mods []Module) (*BootState, error) {
	h, _, err := findMultiboot2(image)
	if err != nil {
		return nil, err
	}
	if h == nil {
		return nil, fmt.Errorf("no multiboot2 header in the first %d KiB: %w", mb2Search/1024, ErrUnknownFormat)
	}
	var segs []segment
	var entry uint64
	if h.hasAddress {
		if !h.hasEntry {
			return nil, fmt.Errorf("multiboot2: address tag without an entry address tag: %w", ErrCorrupt)
		}
		seg, err := aoutKludge(image, h.off, h.headerAddr, h.loadAddr, h.loadEnd, h.bssEnd)
		if err != nil {
			return nil, fmt.Errorf("multiboot2: %w", err)
		}
		segs, entry = []segment{seg}, uint64(h.entry)
	} else {
		if segs, entry, err = parseELF(image); err != nil {
			return nil, fmt.Errorf("multiboot2 ELF kernel: %w", err)
		}
		if h.hasEntry {
			entry = uint64(h.entry) // loadSegments checks it
		}
	}
	if err := checkLowArea(l); err != nil {
		return nil, err
	}
	placed, err := loadSegments(mem, l, segs, entry)
	if err != nil {
		return nil, fmt.Errorf("multiboot2: %w", err)
	}
	modAddrs, err := loadModules(mem, l, placed, mods)
	if err != nil {
		return nil, fmt.Errorf("multiboot2: %w", err)
	}
	info := newInfoBuilder(mbInfo, 8) // total_size, reserved
	tag := func(typ uint32, body []byte) {
		var hdr [8]byte
		binary.LittleEndian.PutUint32(hdr[0:], typ)
		binary.LittleEndian.PutUint32(hdr[4:], uint32(8+len(body)))
		info.add(append(hdr[:], body...), 8)
	}
	tag(mb2InfoCmdline, append([]byte(cmdline), 0))
	tag(mb2InfoLoader, append([]byte(bootLoaderName), 0))
	for i, m := range mods {
		body := make([]byte, 8, 8+len(m.Cmdline)+1)
		binary.LittleEndian.PutUint32(body[0:], uint32(modAddrs[i]))
		binary.LittleEndian.PutUint32(body[4:], uint32(modAddrs[i]+uint64(len(m.Data))))
		tag(mb2InfoModule, append(append(body, m.Cmdline...), 0))
	}
	lower, upper := memLowerUpper(l)
	meminfo := make([]byte, 8)
	binary.LittleEndian.PutUint32(meminfo[0:], lower)
	binary.LittleEndian.PutUint32(meminfo[4:], upper)
	tag(mb2InfoMeminfo, meminfo)
	mmap := make([]byte, 8, 8+24*len(l.Map)) // entry_size, entry_version
	binary.LittleEndian.PutUint32(mmap[0:], 24)
	for _, e := range l.Map {
		var b [24]byte // base_addr, length, type, reserved
		binary.LittleEndian.PutUint64(b[0:], e.Addr)
		binary.LittleEndian.PutUint64(b[8:], e.Size)
		binary.LittleEndian.PutUint32(b[16:], uint32(e.Type))
		mmap = append(mmap, b[:]...)
	}
	tag(mb2InfoMmap, mmap)
	tag(mb2TagEnd, nil)
	info.put32(0, uint32(len(info.buf)))
	return startMultiboot(mem, l, placed, info, mb2BootMagic, entry)
}
