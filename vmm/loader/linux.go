package loader

import (
	"encoding/binary"
	"fmt"
)

// Offsets in the bzImage file and in struct boot_params (the zero page):
// the setup header sits at 0x1F1 in both (Documentation/arch/x86/boot.rst,
// "The Real-Mode Kernel Header"; Documentation/arch/x86/zero-page.rst).
const (
	setupSectsOff      = 0x1F1 // u8: setup size in 512-byte sectors, 0 means 4
	syssizeOff         = 0x1F4 // u32: protected-mode code size, 16-byte units
	bootFlagOff        = 0x1FE // u16: 0xAA55
	jumpOff            = 0x200 // u16: short jump; its byte 0x201 + 0x202 ends the header
	hdrMagicOff        = 0x202 // "HdrS"
	versionOff         = 0x206 // u16: boot protocol version
	typeOfLoaderOff    = 0x210 // u8
	loadflagsOff       = 0x211 // u8
	code32StartOff     = 0x214 // u32
	ramdiskImageOff    = 0x218 // u32
	ramdiskSizeOff     = 0x21C // u32
	cmdLinePtrOff      = 0x228 // u32
	initrdAddrMaxOff   = 0x22C // u32 (2.03+)
	kernelAlignOff     = 0x230 // u32 (2.05+)
	relocatableOff     = 0x234 // u8 (2.05+)
	xloadflagsOff      = 0x236 // u16 (2.12+)
	cmdlineSizeOff     = 0x238 // u32 (2.06+)
	prefAddressOff     = 0x258 // u64 (2.10+)
	initSizeOff        = 0x260 // u32 (2.10+)
	setupHeaderMinEnd  = 0x264 // the fields above, all read unconditionally
	acpiRSDPAddrOff    = 0x070 // u64 (2.14+)
	extRamdiskImageOff = 0x0C0 // u32: bits 63:32 of the initrd address
	extRamdiskSizeOff  = 0x0C4
	extCmdLinePtrOff   = 0x0C8
	e820EntriesOff     = 0x1E8 // u8
	e820TableOff       = 0x2D0 // 128 entries of {u64 addr, u64 size, u32 type}
	e820Max            = 128
	zeroPageSize       = 0x1000

	hdrMagic        = "HdrS"
	bootFlag        = 0xAA55
	typeOfLoaderAny = 0xFF // "undefined" boot loader
	loadedHigh      = 1 << 0
	xlfKernel64     = 1 << 0 // 64-bit entry at load address + 0x200
	xlfAbove4G      = 1 << 1 // kernel, boot_params, cmdline, initrd may be above 4 GiB
	entry64Offset   = 0x200
)

// Where the Linux loader puts its boot structures, all below 1 MiB.
const (
	linuxGDT      = 0x500
	linuxZeroPage = 0x7000
	linuxStack    = 0x8FF0 // RSP; the kernel sets its own stack at once
	linuxPML4     = 0x9000
	linuxPDPT     = 0xA000
	linuxPD       = 0xB000 // four page directories: 4 GiB of 2 MiB pages
	linuxCmdline  = 0x20000
	linuxCmdMax   = 0x10000
	linuxLowEnd   = linuxCmdline + linuxCmdMax
)

// setupHeader is what the loader reads from a bzImage's setup header.
type setupHeader struct {
	version      uint16
	setupSize    int // bytes before the protected-mode kernel
	hdrEnd       int // end of the setup header in the file
	loadflags    uint8
	initrdMax    uint32
	kernelAlign  uint32
	relocatable  bool
	xloadflags   uint16
	cmdlineSize  uint32
	prefAddress  uint64
	initSize     uint32
	payloadBytes int
}

// parseSetupHeader checks a bzImage's setup header for truncation and
// corruption. It does not judge the version: Load does.
func parseSetupHeader(image []byte) (*setupHeader, error) {
	if len(image) < setupHeaderMinEnd {
		return nil, fmt.Errorf("bzImage setup header: %d bytes, need %#x: %w", len(image), setupHeaderMinEnd, ErrTruncated)
	}
	if string(image[hdrMagicOff:hdrMagicOff+4]) != hdrMagic {
		return nil, fmt.Errorf("bzImage: no %q at %#x: %w", hdrMagic, hdrMagicOff, ErrUnknownFormat)
	}
	le16 := func(off int) uint16 { return binary.LittleEndian.Uint16(image[off:]) }
	if f := le16(bootFlagOff); f != bootFlag {
		return nil, fmt.Errorf("bzImage: boot_flag %#04x, want %#04x: %w", f, bootFlag, ErrCorrupt)
	}
	h := &setupHeader{
		version:     le16(versionOff),
		loadflags:   image[loadflagsOff],
		initrdMax:   0x37FFFFFF, // boot.rst: the limit before 2.03
		kernelAlign: le32(image, kernelAlignOff),
		relocatable: image[relocatableOff] != 0,
		xloadflags:  le16(xloadflagsOff),
		cmdlineSize: 255, // before 2.06
		prefAddress: HighMemory,
		initSize:    le32(image, initSizeOff),
	}
	sects := int(image[setupSectsOff])
	if sects == 0 {
		sects = 4
	}
	h.setupSize = (sects + 1) * 512
	h.hdrEnd = hdrMagicOff + int(image[jumpOff+1])
	if h.hdrEnd < setupHeaderMinEnd || h.hdrEnd > h.setupSize {
		return nil, fmt.Errorf("bzImage: setup header ends at %#x, outside %#x..%#x: %w", h.hdrEnd, setupHeaderMinEnd, h.setupSize, ErrCorrupt)
	}
	if h.setupSize >= len(image) {
		return nil, fmt.Errorf("bzImage: %d setup sectors (%#x bytes) but the file has %#x: %w", sects, h.setupSize, len(image), ErrTruncated)
	}
	h.payloadBytes = len(image) - h.setupSize
	if sys := uint64(le32(image, syssizeOff)) * 16; sys > uint64(h.payloadBytes) {
		return nil, fmt.Errorf("bzImage: syssize says %#x bytes of kernel, the file has %#x after the setup: %w", sys, h.payloadBytes, ErrTruncated)
	}
	if h.version >= 0x0203 {
		h.initrdMax = le32(image, initrdAddrMaxOff)
	}
	if h.version >= 0x0206 {
		h.cmdlineSize = le32(image, cmdlineSizeOff)
	}
	if h.version >= 0x020A {
		h.prefAddress = binary.LittleEndian.Uint64(image[prefAddressOff:])
	}
	return h, nil
}

// LoadLinux loads a bzImage for the 64-bit boot protocol (boot.rst,
// "64-bit Boot Protocol"): the protected-mode kernel at its preferred
// address (or, if relocatable, the lowest kernel_alignment-aligned RAM
// that holds init_size bytes), the initrd as high as initrd_addr_max and
// RAM allow, a zero page with the header copied from the image and the
// layout's e820 table, the command line, a GDT with __BOOT_CS/__BOOT_DS,
// and identity page tables for the first 4 GiB. The kernel starts in
// 64-bit mode at its load address + 0x200 with RSI pointing at the zero
// page and interrupts off.
func LoadLinux(mem Memory, l Layout, image []byte, cmdline string, initrd []byte) (*BootState, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	h, err := parseSetupHeader(image)
	if err != nil {
		return nil, err
	}
	if h.version < 0x020C || h.xloadflags&xlfKernel64 == 0 {
		return nil, fmt.Errorf("bzImage: boot protocol %d.%02d, xloadflags %#x: no 64-bit entry (needs 2.12 and XLF_KERNEL_64): %w",
			h.version>>8, h.version&0xFF, h.xloadflags, ErrUnsupported)
	}
	if !l.IsRAM(0, linuxLowEnd) {
		return nil, fmt.Errorf("linux boot structures at 0..%#x are not all RAM in the memory map: %w", linuxLowEnd, ErrBadLayout)
	}
	if len(l.Map) > e820Max {
		return nil, fmt.Errorf("memory map of %d entries, the zero page holds %d: %w", len(l.Map), e820Max, ErrBadLayout)
	}
	if uint64(len(cmdline)) > uint64(h.cmdlineSize) || len(cmdline) >= linuxCmdMax {
		return nil, fmt.Errorf("linux command line of %d bytes, the kernel takes %d: %w", len(cmdline), min(h.cmdlineSize, linuxCmdMax-1), ErrTooBig)
	}
	load, need, err := placeKernel(l, h)
	if err != nil {
		return nil, err
	}
	if err := mem.WriteAt(image[h.setupSize:], load); err != nil {
		return nil, fmt.Errorf("linux kernel at %#x: %w", load, err)
	}
	var initrdAddr uint64
	if len(initrd) > 0 {
		limit := uint64(h.initrdMax) + 1
		initrdAddr, err = placeHigh(l, uint64(len(initrd)), HighMemory, limit, span{load, load + need})
		if err != nil && h.xloadflags&xlfAbove4G != 0 {
			var errHigh error
			if initrdAddr, errHigh = placeHigh(l, uint64(len(initrd)), fourGiB, l.RAMEnd()); errHigh == nil {
				err = nil
			}
		}
		if err != nil {
			return nil, fmt.Errorf("initrd of %d bytes (below %#x, outside the kernel at %#x+%#x): %w", len(initrd), limit, load, need, err)
		}
		if err := mem.WriteAt(initrd, initrdAddr); err != nil {
			return nil, fmt.Errorf("initrd at %#x: %w", initrdAddr, err)
		}
	}
	zp := zeroPage(image, h, l, load, initrdAddr, uint64(len(initrd)))
	if err := mem.WriteAt(zp, linuxZeroPage); err != nil {
		return nil, fmt.Errorf("zero page: %w", err)
	}
	if err := mem.WriteAt(append([]byte(cmdline), 0), linuxCmdline); err != nil {
		return nil, fmt.Errorf("command line: %w", err)
	}
	if err := writeIdentityTables(mem); err != nil {
		return nil, err
	}
	s, err := newBootState(mem, Long64, linuxGDT)
	if err != nil {
		return nil, err
	}
	s.RIP = load + entry64Offset
	s.RSP = linuxStack
	s.RSI = linuxZeroPage
	s.CR0 |= CR0PG
	s.CR3 = linuxPML4
	s.CR4 = CR4PAE
	s.EFER = EFERLME | EFERLMA
	return s, nil
}

// placeKernel picks the kernel's load address and the bytes it needs there
// (init_size covers the decompressor's work area; boot.rst, "init_size").
func placeKernel(l Layout, h *setupHeader) (load, need uint64, err error) {
	need = max(uint64(h.initSize), uint64(h.payloadBytes))
	align := uint64(h.kernelAlign)
	if h.relocatable && (align == 0 || align&(align-1) != 0) {
		return 0, 0, fmt.Errorf("bzImage: kernel_alignment %#x is not a power of two: %w", align, ErrCorrupt)
	}
	pref := h.prefAddress
	if pref >= HighMemory && pref+need <= fourGiB && l.IsRAM(pref, need) {
		return pref, need, nil
	}
	if h.relocatable {
		for _, r := range l.ram() {
			a := alignUp(max(r.Addr, HighMemory), align)
			if a+need <= min(r.End(), fourGiB) && a+need > a {
				return a, need, nil
			}
		}
	}
	return 0, 0, fmt.Errorf("linux kernel needs %#x bytes (init_size) at %#x (relocatable %v, alignment %#x); guest RAM ends at %#x: %w",
		need, pref, h.relocatable, align, l.RAMEnd(), ErrTooBig)
}

// zeroPage builds struct boot_params.
func zeroPage(image []byte, h *setupHeader, l Layout, load, initrd, initrdSize uint64) []byte {
	zp := make([]byte, zeroPageSize)
	copy(zp[setupSectsOff:h.hdrEnd], image[setupSectsOff:h.hdrEnd])
	put32 := func(off int, v uint32) { binary.LittleEndian.PutUint32(zp[off:], v) }
	zp[typeOfLoaderOff] = typeOfLoaderAny
	zp[loadflagsOff] |= loadedHigh
	put32(code32StartOff, uint32(load))
	put32(cmdLinePtrOff, linuxCmdline)
	put32(ramdiskImageOff, uint32(initrd))
	put32(ramdiskSizeOff, uint32(initrdSize))
	put32(extRamdiskImageOff, uint32(initrd>>32))
	put32(extRamdiskSizeOff, uint32(initrdSize>>32))
	if h.version >= 0x020E && l.RSDP != 0 {
		binary.LittleEndian.PutUint64(zp[acpiRSDPAddrOff:], l.RSDP)
	}
	zp[e820EntriesOff] = uint8(len(l.Map))
	for i, e := range l.Map {
		off := e820TableOff + 20*i
		binary.LittleEndian.PutUint64(zp[off:], e.Addr)
		binary.LittleEndian.PutUint64(zp[off+8:], e.Size)
		put32(off+16, uint32(e.Type))
	}
	return zp
}

// Page-table entry bits (SDM Vol. 3A §4.5, Tables 4-14 to 4-19).
const (
	ptePresent  = 1 << 0
	pteWritable = 1 << 1
	ptePageSize = 1 << 7 // PDE: maps a 2 MiB page
)

// writeIdentityTables maps guest-virtual = guest-physical for the first
// 4 GiB with 2 MiB pages: one PML4 entry, four PDPT entries, four PDs.
func writeIdentityTables(mem Memory) error {
	page := make([]byte, 0x1000)
	binary.LittleEndian.PutUint64(page, linuxPDPT|ptePresent|pteWritable)
	if err := mem.WriteAt(page, linuxPML4); err != nil {
		return fmt.Errorf("page tables: %w", err)
	}
	clear(page)
	for i := uint64(0); i < 4; i++ {
		binary.LittleEndian.PutUint64(page[8*i:], (linuxPD+i*0x1000)|ptePresent|pteWritable)
	}
	if err := mem.WriteAt(page, linuxPDPT); err != nil {
		return fmt.Errorf("page tables: %w", err)
	}
	for d := uint64(0); d < 4; d++ {
		for i := uint64(0); i < 512; i++ {
			addr := d<<30 | i<<21
			binary.LittleEndian.PutUint64(page[8*i:], addr|ptePresent|pteWritable|ptePageSize)
		}
		if err := mem.WriteAt(page, linuxPD+d*0x1000); err != nil {
			return fmt.Errorf("page tables: %w", err)
		}
	}
	return nil
}
