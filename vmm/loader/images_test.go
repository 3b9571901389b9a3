package loader

import (
	"encoding/binary"
)

// Synthetic kernel images for the tests, built field by field from the
// specs so each test can break one thing.

// bzImageOpts are the setup-header fields a test may change.
type bzImageOpts struct {
	version     uint16
	xloadflags  uint16
	relocatable bool
	align       uint32
	pref        uint64
	initSize    uint32
	cmdlineSize uint32
	initrdMax   uint32
	payload     int
}

func defaultBzOpts() bzImageOpts {
	return bzImageOpts{
		version: 0x020F, xloadflags: xlfKernel64 | xlfAbove4G, relocatable: true,
		align: 0x200000, pref: 0x1000000, initSize: 0x400000, cmdlineSize: 2048,
		initrdMax: 0x7FFFFFFF, payload: 0x3000,
	}
}

// testBzImage returns a bzImage with one setup sector after the boot
// sector and a payload of o.payload bytes of a pattern.
func testBzImage(o bzImageOpts) []byte {
	const setupSects = 1
	img := make([]byte, (setupSects+1)*512+o.payload)
	le16 := binary.LittleEndian.PutUint16
	le32 := binary.LittleEndian.PutUint32
	img[setupSectsOff] = setupSects
	le32(img[syssizeOff:], uint32((o.payload+15)/16))
	le16(img[bootFlagOff:], bootFlag)
	img[jumpOff], img[jumpOff+1] = 0xEB, 0x6A // header ends at 0x26C
	copy(img[hdrMagicOff:], hdrMagic)
	le16(img[versionOff:], o.version)
	img[loadflagsOff] = loadedHigh
	le32(img[initrdAddrMaxOff:], o.initrdMax)
	le32(img[kernelAlignOff:], o.align)
	if o.relocatable {
		img[relocatableOff] = 1
	}
	le16(img[xloadflagsOff:], o.xloadflags)
	le32(img[cmdlineSizeOff:], o.cmdlineSize)
	binary.LittleEndian.PutUint64(img[prefAddressOff:], o.pref)
	le32(img[initSizeOff:], o.initSize)
	for i := (setupSects + 1) * 512; i < len(img); i++ {
		img[i] = byte(i * 7)
	}
	return img
}

// testMB1Kludge returns a multiboot1 a.out-kludge kernel: header at file
// offset hdrOff, the file loaded at loadAddr, bss of bss bytes, entry at
// loadAddr+entryOff.
func testMB1Kludge(hdrOff int, flags uint32, loadAddr uint32, size, bss int, entryOff uint32) []byte {
	img := make([]byte, size)
	for i := range img {
		img[i] = byte(i*13 + 1)
	}
	le32 := func(off int, v uint32) { binary.LittleEndian.PutUint32(img[off:], v) }
	flags |= mb1AoutKludge
	le32(hdrOff, mb1Magic)
	le32(hdrOff+4, flags)
	le32(hdrOff+8, -(mb1Magic + flags))
	le32(hdrOff+12, loadAddr+uint32(hdrOff))
	le32(hdrOff+16, loadAddr)
	le32(hdrOff+20, loadAddr+uint32(size))
	le32(hdrOff+24, loadAddr+uint32(size+bss))
	le32(hdrOff+28, loadAddr+entryOff)
	return img
}

// elfSeg is a PT_LOAD segment for testELF.
type elfSeg struct {
	vaddr, paddr uint64
	data         []byte
	memsz        uint64
}

// testELF returns a little-endian ELF32 (class 1) or ELF64 (class 2) x86
// executable with the given segments; extra is copied at file offset
// 0x200 (room for a multiboot header) and the segments' data follow at
// 0x1000.
func testELF(class byte, entry uint64, segs []elfSeg, extra []byte) []byte {
	img := make([]byte, 0x1000)
	copy(img, elfMagic)
	img[4], img[5], img[6] = class, elfData2LSB, 1
	le16 := func(off int, v uint16) { binary.LittleEndian.PutUint16(img[off:], v) }
	le32 := func(off int, v uint32) { binary.LittleEndian.PutUint32(img[off:], v) }
	le64 := func(off int, v uint64) { binary.LittleEndian.PutUint64(img[off:], v) }
	le16(0x10, 2) // ET_EXEC
	phoff := 0x40
	if class == elfClass32 {
		le16(0x12, emI386)
		le32(0x18, uint32(entry))
		le32(0x1C, uint32(phoff))
		le16(0x2A, 32)
		le16(0x2C, uint16(len(segs)))
	} else {
		le16(0x12, emX86_64)
		le64(0x18, entry)
		le64(0x20, uint64(phoff))
		le16(0x36, 56)
		le16(0x38, uint16(len(segs)))
	}
	copy(img[0x200:], extra)
	for i, s := range segs {
		off := len(img)
		img = append(img, s.data...)
		if class == elfClass32 {
			p := phoff + 32*i
			le32(p, ptLoad)
			le32(p+4, uint32(off))
			le32(p+8, uint32(s.vaddr))
			le32(p+12, uint32(s.paddr))
			le32(p+16, uint32(len(s.data)))
			le32(p+20, uint32(s.memsz))
		} else {
			p := phoff + 56*i
			le32(p, ptLoad)
			le64(p+8, uint64(off))
			le64(p+16, s.vaddr)
			le64(p+24, s.paddr)
			le64(p+32, uint64(len(s.data)))
			le64(p+40, s.memsz)
		}
	}
	return img
}

// mb1Header returns a bare multiboot1 header (no address fields).
func mb1HeaderBytes(flags uint32) []byte {
	b := make([]byte, 12)
	binary.LittleEndian.PutUint32(b[0:], mb1Magic)
	binary.LittleEndian.PutUint32(b[4:], flags)
	binary.LittleEndian.PutUint32(b[8:], -(mb1Magic + flags))
	return b
}

// mb2HeaderBytes returns a multiboot2 header holding the given tags (each
// already 8-byte padded) and the end tag.
func mb2HeaderBytes(tags ...[]byte) []byte {
	b := make([]byte, 16)
	for _, t := range tags {
		b = append(b, t...)
	}
	b = append(b, 0, 0, 0, 0, 8, 0, 0, 0)
	binary.LittleEndian.PutUint32(b[0:], mb2Magic)
	binary.LittleEndian.PutUint32(b[8:], uint32(len(b)))
	binary.LittleEndian.PutUint32(b[12:], -(mb2Magic + uint32(len(b))))
	return b
}

// mb2Tag encodes one header tag, padded to 8 bytes.
func mb2Tag(typ, flags uint16, fields ...uint32) []byte {
	b := make([]byte, 8, 8+4*len(fields))
	binary.LittleEndian.PutUint16(b[0:], typ)
	binary.LittleEndian.PutUint16(b[2:], flags)
	binary.LittleEndian.PutUint32(b[4:], uint32(8+4*len(fields)))
	for _, f := range fields {
		b = binary.LittleEndian.AppendUint32(b, f)
	}
	for len(b)%8 != 0 {
		b = append(b, 0)
	}
	return b
}
