package loader

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Kind is a kernel image format.
type Kind int

const (
	KindBzImage    Kind = iota + 1 // Linux bzImage (x86 boot protocol)
	KindMultiboot2                 // multiboot2 header in the first 32 KiB
	KindMultiboot1                 // multiboot1 header in the first 8 KiB
	KindELF64                      // plain ELF64, no multiboot header
	KindELF32                      // plain ELF32, no multiboot header
)

func (k Kind) String() string {
	switch k {
	case KindBzImage:
		return "bzImage"
	case KindMultiboot2:
		return "multiboot2"
	case KindMultiboot1:
		return "multiboot1"
	case KindELF64:
		return "ELF64"
	case KindELF32:
		return "ELF32"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

var elfMagic = []byte("\x7fELF")

// Detect tells an image's format from its headers, in this order: a Linux
// setup header ("HdrS" at 0x202), a multiboot2 header, a multiboot1
// header, an ELF file. A multiboot header whose checksum fails is skipped
// like GRUB skips it; if no valid header is found, the error names the
// first bad one. A header that is found but cut off or inconsistent is an
// error too: Detect checks the same headers Load uses.
func Detect(image []byte) (Kind, error) {
	if len(image) >= hdrMagicOff+4 && string(image[hdrMagicOff:hdrMagicOff+4]) == hdrMagic {
		if _, err := parseSetupHeader(image); err != nil {
			return 0, err
		}
		return KindBzImage, nil
	}
	h2, off2, err2 := findMultiboot2(image)
	if h2 != nil {
		return KindMultiboot2, nil
	}
	h1, off1, err1 := findMultiboot1(image)
	if h1 != nil {
		return KindMultiboot1, nil
	}
	switch {
	case err2 != nil && (err1 == nil || off2 <= off1):
		return 0, err2
	case err1 != nil:
		return 0, err1
	}
	if len(image) >= 4 && bytes.Equal(image[:4], elfMagic) {
		if len(image) < 5 {
			return 0, fmt.Errorf("ELF identification: %w", ErrTruncated)
		}
		switch image[4] { // EI_CLASS
		case 1:
			return KindELF32, nil
		case 2:
			return KindELF64, nil
		}
		return 0, fmt.Errorf("ELF class %d: %w", image[4], ErrCorrupt)
	}
	return 0, fmt.Errorf("no Linux setup header at %#x, no multiboot header in the first %d KiB, no ELF magic (first bytes % x): %w",
		hdrMagicOff, mb2Search/1024, image[:min(len(image), 8)], ErrUnknownFormat)
}

// le32 reads a little-endian uint32 at off; the caller checked the bounds.
func le32(b []byte, off int) uint32 { return binary.LittleEndian.Uint32(b[off:]) }
