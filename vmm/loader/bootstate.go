package loader

import (
	"encoding/binary"
	"fmt"
)

// Mode is the processor mode a guest starts in.
type Mode int

const (
	// Protected32: 32-bit protected mode, paging off (multiboot1 and 2).
	Protected32 Mode = iota + 1
	// Long64: IA-32e 64-bit mode, paging on with identity tables (Linux's
	// 64-bit boot protocol).
	Long64
)

func (m Mode) String() string {
	switch m {
	case Protected32:
		return "protected32"
	case Long64:
		return "long64"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Segment is a segment register as the processor holds it after loading
// the descriptor: selector, base, limit in bytes (granularity already
// applied) and the access rights in the VMX layout (SDM Vol. 3C §25.4.1,
// Table 25-2): bits 3:0 type, 4 S, 6:5 DPL, 7 P, 12 AVL, 13 L, 14 D/B,
// 15 G, 16 unusable. That is the descriptor's byte 5 in bits 7:0 and the
// flags nibble of byte 6 in bits 15:12; an SVM VMCB packs the same bits
// as attrib = (Access & 0xFF) | (Access >> 4 & 0xF00).
type Segment struct {
	Selector uint16
	Base     uint64
	Limit    uint32
	Access   uint32
}

// Access-rights bits (SDM Vol. 3C Table 25-2; Vol. 3A §3.4.5).
const (
	AccessAccessed  = 1 << 0  // type bit 0
	AccessWritable  = 1 << 1  // data: writable; code: readable
	AccessCode      = 1 << 3  // type bit 3: code segment
	AccessS         = 1 << 4  // code or data (not system)
	AccessPresent   = 1 << 7  // P
	AccessLong      = 1 << 13 // L: 64-bit code
	AccessDB        = 1 << 14 // D/B: 32-bit default size
	AccessGranular  = 1 << 15 // G: limit in 4 KiB units
	AccessUnusable  = 1 << 16 // VMX: segment unusable (null selector)
	AccessTSSBusy64 = 0xB     // system type 11: busy 32/64-bit TSS
)

// Segment access rights the loaders use.
const (
	code64Access = AccessPresent | AccessS | AccessCode | AccessWritable | AccessAccessed | AccessLong | AccessGranular
	code32Access = AccessPresent | AccessS | AccessCode | AccessWritable | AccessAccessed | AccessDB | AccessGranular
	dataAccess   = AccessPresent | AccessS | AccessWritable | AccessAccessed | AccessDB | AccessGranular
	tssAccess    = AccessPresent | AccessTSSBusy64
)

// Control-register and EFER bits the start states use (SDM Vol. 3A §2.5,
// §2.2.1).
const (
	CR0PE   = 1 << 0  // protection enable
	CR0ET   = 1 << 4  // extension type (always 1)
	CR0NE   = 1 << 5  // native x87 error reporting (VMX requires it)
	CR0PG   = 1 << 31 // paging
	CR4PAE  = 1 << 5  // physical address extension (needed for long mode)
	EFERLME = 1 << 8  // IA32_EFER.LME: long mode enable
	EFERLMA = 1 << 10 // IA32_EFER.LMA: long mode active
	RFLAGS1 = 1 << 1  // RFLAGS bit 1 is reserved and always 1
)

// Boot selectors: the GDT the loader writes has the null descriptor at 0,
// an unused one at 0x08, the code segment at 0x10 and the flat data
// segment at 0x18, the numbers Linux calls __BOOT_CS and __BOOT_DS
// (Documentation/arch/x86/boot.rst, "64-bit Boot Protocol").
const (
	BootCS = 0x10
	BootDS = 0x18
)

// BootState is the vendor-neutral register state a vCPU starts the loaded
// kernel with. The VT-x code writes it to the VMCS guest-state area (SDM
// Vol. 3C §25.4): CRn, EFER, the segment registers with their access
// rights, GDTR/IDTR, RIP/RSP/RFLAGS and the general registers; an SVM VMCB
// takes the same values (segment attributes repacked, see Segment).
//
// The GDT the selectors refer to is also written to guest memory at
// GDTBase, so the kernel may reload its segments from it. IDTR is empty:
// every kernel the loader boots runs with interrupts off until it loads
// its own IDT. TR is a busy TSS at base 0 (VM entry needs a usable TR, SDM
// Vol. 3C §26.3.1.2), LDTR is unusable.
type BootState struct {
	Mode Mode

	RIP, RSP, RFLAGS uint64
	RAX, RBX, RSI    uint64 // multiboot magic and info; Linux zero page

	CR0, CR3, CR4, EFER uint64

	GDTBase  uint64
	GDTLimit uint16
	IDTBase  uint64
	IDTLimit uint16

	CS, DS, ES, SS, FS, GS, TR, LDTR Segment
}

// gdtLen is the size of the boot GDT: 4 descriptors.
const gdtLen = 4 * 8

// descriptor encodes a flat (base 0, limit 4 GiB) code or data segment
// descriptor (SDM Vol. 3A §3.4.5, Figure 3-8).
func descriptor(access uint32) uint64 {
	const limit = 0xFFFFF // in 4 KiB units with G
	d := uint64(limit & 0xFFFF)
	d |= uint64(access&0xFF) << 40
	d |= uint64(limit>>16) << 48
	d |= uint64(access>>12&0xF) << 52
	return d
}

// newBootState returns the common part of both start states: flat
// segments with selectors BootCS and BootDS, interrupts off, and the GDT
// (which it writes to guest memory at gdt).
func newBootState(mem Memory, mode Mode, gdt uint64) (*BootState, error) {
	codeAccess := uint32(code32Access)
	if mode == Long64 {
		codeAccess = code64Access
	}
	var table [gdtLen]byte
	binary.LittleEndian.PutUint64(table[BootCS:], descriptor(codeAccess))
	binary.LittleEndian.PutUint64(table[BootDS:], descriptor(dataAccess))
	if err := mem.WriteAt(table[:], gdt); err != nil {
		return nil, fmt.Errorf("boot GDT: %w", err)
	}
	data := Segment{Selector: BootDS, Limit: 0xFFFFFFFF, Access: dataAccess}
	s := &BootState{
		Mode:     mode,
		RFLAGS:   RFLAGS1,
		CR0:      CR0PE | CR0ET | CR0NE,
		GDTBase:  gdt,
		GDTLimit: gdtLen - 1,
		CS:       Segment{Selector: BootCS, Limit: 0xFFFFFFFF, Access: codeAccess},
		DS:       data, ES: data, SS: data, FS: data, GS: data,
		TR:   Segment{Limit: 0x67, Access: tssAccess},
		LDTR: Segment{Access: AccessUnusable},
	}
	return s, nil
}
