package loader

import (
	"encoding/binary"
	"fmt"
)

// Multiboot Specification 0.6.96 §3.1 (header), §3.2 (machine state),
// §3.3 (boot information format).
const (
	mb1Magic       = 0x1BADB002
	mb1BootMagic   = 0x2BADB002 // EAX at entry
	mb1Search      = 8192
	mb1PageAlign   = 1 << 0  // align modules on 4 KiB
	mb1MemInfo     = 1 << 1  // mem_* and mmap_* wanted
	mb1VideoMode   = 1 << 2  // video mode table wanted (not offered; ignored like QEMU)
	mb1AoutKludge  = 1 << 16 // address fields valid
	mb1KnownFlags  = mb1PageAlign | mb1MemInfo | mb1VideoMode
	mb1Required    = 0xFFFF // bits 0-15: a loader must fail on any it does not know
	mb1InfoSize    = 116    // struct multiboot_info up to the framebuffer fields
	mb1InfoMem     = 1 << 0 // mem_lower, mem_upper
	mb1InfoCmdline = 1 << 2
	mb1InfoMods    = 1 << 3
	mb1InfoMmap    = 1 << 6
	mb1InfoLoader  = 1 << 9 // boot_loader_name
)

// mb1Header is a multiboot1 header that passed its checksum.
type mb1Header struct {
	off   int
	flags uint32
	// address fields, valid with mb1AoutKludge
	headerAddr, loadAddr, loadEnd, bssEnd, entry uint32
}

// findMultiboot1 scans the first 8 KiB for a 4-byte aligned header with a
// good checksum. It returns the first bad header's error (and its offset)
// when no good one is found, and an error for a good header that is cut
// off or asks for what the loader cannot do.
func findMultiboot1(image []byte) (*mb1Header, int, error) {
	var firstErr error
	firstOff := -1
	for off := 0; off+4 <= min(len(image), mb1Search); off += 4 {
		if le32(image, off) != mb1Magic {
			continue
		}
		if off+12 > len(image) {
			return nil, off, fmt.Errorf("multiboot1 header at %#x: %w", off, ErrTruncated)
		}
		flags, sum := le32(image, off+4), le32(image, off+8)
		if mb1Magic+flags+sum != 0 {
			if firstErr == nil {
				firstErr = fmt.Errorf("multiboot1 header at %#x: magic+flags+checksum = %#x, want 0: %w", off, uint32(mb1Magic+flags+sum), ErrChecksum)
				firstOff = off
			}
			continue
		}
		h := &mb1Header{off: off, flags: flags}
		if unknown := flags & mb1Required &^ mb1KnownFlags; unknown != 0 {
			return nil, off, fmt.Errorf("multiboot1 header at %#x: flags %#x require unknown features %#x: %w", off, flags, unknown, ErrUnsupported)
		}
		if flags&mb1AoutKludge != 0 {
			if off+32 > len(image) {
				return nil, off, fmt.Errorf("multiboot1 header at %#x: address fields: %w", off, ErrTruncated)
			}
			h.headerAddr, h.loadAddr, h.loadEnd = le32(image, off+12), le32(image, off+16), le32(image, off+20)
			h.bssEnd, h.entry = le32(image, off+24), le32(image, off+28)
		}
		return h, off, nil
	}
	return nil, firstOff, firstErr
}

// loadMultiboot1 loads a multiboot1 kernel: by the a.out kludge address
// fields when flag 16 is set, else as an ELF file.
func loadMultiboot1(mem Memory, l Layout, image []byte, cmdline string, mods []Module) (*BootState, error) {
	h, _, err := findMultiboot1(image)
	if err != nil {
		return nil, err
	}
	if h == nil {
		return nil, fmt.Errorf("no multiboot1 header in the first %d KiB: %w", mb1Search/1024, ErrUnknownFormat)
	}
	var segs []segment
	var entry uint64
	if h.flags&mb1AoutKludge != 0 {
		seg, err := aoutKludge(image, h.off, h.headerAddr, h.loadAddr, h.loadEnd, h.bssEnd)
		if err != nil {
			return nil, fmt.Errorf("multiboot1: %w", err)
		}
		segs, entry = []segment{seg}, uint64(h.entry) // loadSegments checks it
	} else if segs, entry, err = parseELF(image); err != nil {
		return nil, fmt.Errorf("multiboot1 ELF kernel: %w", err)
	}
	if err := checkLowArea(l); err != nil {
		return nil, err
	}
	placed, err := loadSegments(mem, l, segs, entry)
	if err != nil {
		return nil, fmt.Errorf("multiboot1: %w", err)
	}
	modAddrs, err := loadModules(mem, l, placed, mods)
	if err != nil {
		return nil, fmt.Errorf("multiboot1: %w", err)
	}
	info := newInfoBuilder(mbInfo, mb1InfoSize)
	put := info.put32
	lower, upper := memLowerUpper(l)
	put(0, mb1InfoMem|mb1InfoCmdline|mb1InfoMods|mb1InfoMmap|mb1InfoLoader)
	put(4, lower)
	put(8, upper)
	put(16, info.str(cmdline))
	var modTable []byte
	for i, m := range mods {
		var e [16]byte // mod_start, mod_end, string, reserved
		binary.LittleEndian.PutUint32(e[0:], uint32(modAddrs[i]))
		binary.LittleEndian.PutUint32(e[4:], uint32(modAddrs[i]+uint64(len(m.Data))))
		binary.LittleEndian.PutUint32(e[8:], info.str(m.Cmdline))
		modTable = append(modTable, e[:]...)
	}
	put(20, uint32(len(mods)))
	put(24, info.add(modTable, 4))
	var mmap []byte
	for _, e := range l.Map {
		var b [24]byte // size (20, excluding itself), base_addr, length, type
		binary.LittleEndian.PutUint32(b[0:], 20)
		binary.LittleEndian.PutUint64(b[4:], e.Addr)
		binary.LittleEndian.PutUint64(b[12:], e.Size)
		binary.LittleEndian.PutUint32(b[20:], uint32(e.Type))
		mmap = append(mmap, b[:]...)
	}
	put(44, uint32(len(mmap)))
	put(48, info.add(mmap, 4))
	put(64, info.str(bootLoaderName))
	return startMultiboot(mem, l, placed, info, mb1BootMagic, entry)
}
