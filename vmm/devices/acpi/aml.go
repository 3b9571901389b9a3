package acpi

import (
	"encoding/binary"
	"fmt"
)

// A minimal AML encoder for the DSDT (ACPI 6.5 §20.2, "AML Grammar
// Definition"): just the terms the tables here need.

// AML opcodes (ACPI 6.5 §20.2.5).
const (
	amlZeroOp        = 0x00
	amlOneOp         = 0x01
	amlNameOp        = 0x08
	amlBytePrefix    = 0x0A
	amlWordPrefix    = 0x0B
	amlDWordPrefix   = 0x0C
	amlStringPrefix  = 0x0D
	amlQWordPrefix   = 0x0E
	amlScopeOp       = 0x10
	amlBufferOp      = 0x11
	amlPackageOp     = 0x12
	amlExtOpPrefix   = 0x5B
	amlDeviceOp      = 0x82 // after ExtOpPrefix
	amlRootChar      = '\\'
	amlDualNamePrefx = 0x2E
)

// pkgLength encodes the PkgLength of a body of n bytes; the length counts
// its own encoding (§20.2.4).
func pkgLength(n int) []byte {
	switch {
	case n+1 < 1<<6:
		return []byte{byte(n + 1)}
	case n+2 < 1<<12:
		l := n + 2
		return []byte{1<<6 | byte(l&0xF), byte(l >> 4)}
	case n+3 < 1<<20:
		l := n + 3
		return []byte{2<<6 | byte(l&0xF), byte(l >> 4), byte(l >> 12)}
	default:
		l := n + 4
		return []byte{3<<6 | byte(l&0xF), byte(l >> 4), byte(l >> 12), byte(l >> 20)}
	}
}

// nameString encodes a name path: an optional leading '\' and 4-character
// segments separated by '.', each padded with '_' (§20.2.2).
func nameString(path string) []byte {
	var out []byte
	if len(path) > 0 && path[0] == amlRootChar {
		out = append(out, amlRootChar)
		path = path[1:]
	}
	var segs [][]byte
	for len(path) > 0 {
		seg := path
		for i := 0; i < len(path); i++ {
			if path[i] == '.' {
				seg = path[:i]
				break
			}
		}
		path = path[min(len(seg)+1, len(path)):]
		if len(seg) == 0 || len(seg) > 4 {
			panic(fmt.Sprintf("acpi: bad AML name segment %q", seg)) // programming error
		}
		b := []byte("____")
		copy(b, seg)
		segs = append(segs, b)
	}
	switch len(segs) {
	case 1:
	case 2:
		out = append(out, amlDualNamePrefx)
	default:
		panic("acpi: AML name of more than two segments") // not needed here
	}
	for _, s := range segs {
		out = append(out, s...)
	}
	return out
}

// amlInt encodes an integer constant in its shortest form.
func amlInt(v uint64) []byte {
	switch {
	case v == 0:
		return []byte{amlZeroOp}
	case v == 1:
		return []byte{amlOneOp}
	case v <= 0xFF:
		return []byte{amlBytePrefix, byte(v)}
	case v <= 0xFFFF:
		return binary.LittleEndian.AppendUint16([]byte{amlWordPrefix}, uint16(v))
	case v <= 0xFFFFFFFF:
		return binary.LittleEndian.AppendUint32([]byte{amlDWordPrefix}, uint32(v))
	}
	return binary.LittleEndian.AppendUint64([]byte{amlQWordPrefix}, v)
}

// amlDWord encodes v always as a DWordConst (an EISA ID, a _PRT address).
func amlDWord(v uint32) []byte {
	return binary.LittleEndian.AppendUint32([]byte{amlDWordPrefix}, v)
}

// amlName encodes Name(name, value).
func amlName(name string, value []byte) []byte {
	out := append([]byte{amlNameOp}, nameString(name)...)
	return append(out, value...)
}

// amlPackage encodes Package(){elements...}.
func amlPackage(elements ...[]byte) []byte {
	body := []byte{byte(len(elements))}
	for _, e := range elements {
		body = append(body, e...)
	}
	return append(append([]byte{amlPackageOp}, pkgLength(len(body))...), body...)
}

// amlBuffer encodes Buffer(){data}.
func amlBuffer(data []byte) []byte {
	body := append(amlInt(uint64(len(data))), data...)
	return append(append([]byte{amlBufferOp}, pkgLength(len(body))...), body...)
}

// amlScope encodes Scope(name){terms}.
func amlScope(name string, terms ...[]byte) []byte {
	body := nameString(name)
	for _, t := range terms {
		body = append(body, t...)
	}
	return append(append([]byte{amlScopeOp}, pkgLength(len(body))...), body...)
}

// amlDevice encodes Device(name){terms}.
func amlDevice(name string, terms ...[]byte) []byte {
	body := nameString(name)
	for _, t := range terms {
		body = append(body, t...)
	}
	return append(append([]byte{amlExtOpPrefix, amlDeviceOp}, pkgLength(len(body))...), body...)
}

// eisaID compresses a 7-character PNP ID such as "PNP0501" (three letters,
// four hex digits) into its 32-bit EISA form (§6.1.5, _HID).
func eisaID(id string) uint32 {
	if len(id) != 7 {
		panic("acpi: EISA ID " + id) // programming error
	}
	var v uint32
	for i := 0; i < 3; i++ {
		v = v<<5 | uint32(id[i]-0x40)&0x1F
	}
	var hex uint32
	if _, err := fmt.Sscanf(id[3:], "%04X", &hex); err != nil {
		panic("acpi: EISA ID " + id)
	}
	// Stored big-endian: the 16-bit vendor then the 16-bit product.
	be := v<<16 | hex
	return be>>24 | be>>8&0xFF00 | be<<8&0xFF0000 | be<<24
}

// Resource descriptors for _CRS (ACPI 6.5 §6.4).

// resIO is an I/O port descriptor (§6.4.2.5), 16-bit decode.
func resIO(min, max uint16, align, length uint8) []byte {
	return []byte{0x47, 0x01, byte(min), byte(min >> 8), byte(max), byte(max >> 8), align, length}
}

// resIRQ is an IRQ descriptor without flags (§6.4.2.1): edge, active high.
func resIRQ(irq uint8) []byte {
	mask := uint16(1) << irq
	return []byte{0x22, byte(mask), byte(mask >> 8)}
}

// Address space descriptor resource types and flags (§6.4.3.5).
const (
	resTypeMemory = 0
	resTypeIO     = 1
	resTypeBus    = 2
	// General flags: producer, positive decode, min and max fixed.
	resProducerFixed = 1<<3 | 1<<2
	resIOEntireRange = 3 // I/O type flags: _RNG entire range
	resMemReadWrite  = 1 // memory type flags: read/write, non-cacheable
)

// resWordAddr is a Word Address Space Descriptor (§6.4.3.5.3).
func resWordAddr(typ, typeFlags uint8, min, max uint16) []byte {
	b := []byte{0x88, 13, 0, typ, resProducerFixed, typeFlags}
	for _, v := range []uint16{0, min, max, 0, max - min + 1} {
		b = binary.LittleEndian.AppendUint16(b, v)
	}
	return b
}

// resDWordAddr is a DWord Address Space Descriptor (§6.4.3.5.2).
func resDWordAddr(typ, typeFlags uint8, min, max uint32) []byte {
	b := []byte{0x87, 23, 0, typ, resProducerFixed, typeFlags}
	for _, v := range []uint32{0, min, max, 0, max - min + 1} {
		b = binary.LittleEndian.AppendUint32(b, v)
	}
	return b
}

// resEnd is the End Tag (§6.4.2.9); checksum 0 means "none".
var resEnd = []byte{0x79, 0x00}
