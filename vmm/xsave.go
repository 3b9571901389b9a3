package vmm

import (
	"encoding/binary"
	"fmt"
	"unsafe"
)

// Guest x87/SSE/AVX state (SDM Vol. 1 ch. 13 "Managing State Using the
// XSAVE Feature Set"). The host kernel runs with CR4.OSXSAVE and an XCR0
// with AVX (boot/layer/cpu.c), but Go's ABI treats every vector register
// as clobbered by a call to assembly, so the host state the stub must keep
// is the x87 control word and MXCSR, in an FXSAVE image. A vCPU keeps
// its guest's state in a standard-format XSAVE area; the entry stub, with
// interrupts off, FXSAVEs the host's x87/SSE state, loads the
// switch XCR0 (every component the vCPU offers), XRSTORs the guest's area,
// loads the guest's XCR0 and enters; after the exit it loads the switch
// XCR0 again, XSAVEs the guest's area, clears the upper AVX state
// (VZEROUPPER), loads the host's XCR0 and FXRSTORs the host's state.
// XRSTOR and XSAVE run under the switch XCR0 because their requested-
// feature bitmap is XCR0 & EDX:EAX (13.7, 13.8): under a guest XCR0 of
// x87 alone (the reset value) the guest's SSE registers would be neither
// saved nor loaded, though it may use them. The legacy region of the area
// is the FXSAVE image (13.4.1), so x87/SSE need no FXSAVE of their own.

// XSAVE area layout, standard format (SDM Vol. 1 13.4).
const (
	// XSaveLegacySize is the legacy region: the FXSAVE image.
	XSaveLegacySize = 512
	// XSaveHeaderSize is the XSAVE header after it: XSTATE_BV, XCOMP_BV
	// and 48 reserved bytes.
	XSaveHeaderSize = 64
	// XSaveMinSize is an area for x87 and SSE only.
	XSaveMinSize = XSaveLegacySize + XSaveHeaderSize
	// xsaveMaxSize bounds an area read from a saved state; the standard
	// area for x87 to AVX-512 is 2688 bytes on current CPUs.
	xsaveMaxSize = 1 << 16

	fxFCW         = 0  // x87 control word (legacy region)
	fxMXCSR       = 24 // MXCSR (legacy region)
	xsaveXStateBV = 512
	xsaveXCompBV  = 520
)

// Reset values (SDM Vol. 3A 10.1.1 table 10-1).
const (
	resetFCW   = 0x037F
	resetMXCSR = 0x1F80
)

// SwitchableXCR0 returns the XSAVE components a vCPU may offer its guest
// on this CPU: XCR0Switchable & those CPUID leaf 0xD subleaf 0 reports,
// or 0 (FXSAVE switching, XSAVE and AVX hidden) when the CPU lacks XSAVE
// or the host kernel has not set CR4.OSXSAVE (CPUID.1:ECX.OSXSAVE). The
// AVX-512 components go together and only with AVX, as XSETBV demands.
func SwitchableXCR0(host func(leaf, sub uint32) (a, b, c, d uint32)) uint64 {
	maxLeaf, _, _, _ := host(0, 0)
	_, _, c1, _ := host(1, 0)
	if maxLeaf < 0xD || c1&(1<<CPUID01_ECX_XSAVE) == 0 || c1&(1<<CPUID01_ECX_OSXSAVE) == 0 {
		return 0
	}
	a, _, _, d := host(0xD, 0)
	m := (uint64(d)<<32 | uint64(a)) & XCR0Switchable
	if m&(XCR0_X87|XCR0_SSE) != XCR0_X87|XCR0_SSE {
		return 0
	}
	const avx512 = XCR0_OPMASK | XCR0_ZMMHi | XCR0_HiZMM
	if m&XCR0_AVX == 0 || m&avx512 != avx512 {
		m &^= avx512
	}
	return m
}

// XSaveSize is the size of a standard-format XSAVE area holding the
// components in set (SDM Vol. 1 13.4.3): the legacy region and header,
// or the end of the highest component (CPUID 0xD subleaf i: EAX size,
// EBX offset).
func XSaveSize(host func(leaf, sub uint32) (a, b, c, d uint32), set uint64) int {
	size := uint32(XSaveMinSize)
	for i := uint32(2); i < 64; i++ {
		if set&(1<<i) == 0 {
			continue
		}
		sz, off, _, _ := host(0xD, i)
		size = max(size, off+sz)
	}
	return int(size)
}

// XSaveCompactedSize is the size of a compacted-format XSAVE area (what
// XSAVEC and XSAVES write) for the components in set (SDM Vol. 1
// 13.4.3): after the legacy region and header the components follow in
// order, each at the end of the one before, rounded up to 64 bytes where
// CPUID 0xD subleaf i ECX bit 1 asks for it.
func XSaveCompactedSize(host func(leaf, sub uint32) (a, b, c, d uint32), set uint64) int {
	size := uint32(XSaveMinSize)
	for i := uint32(2); i < 64; i++ {
		if set&(1<<i) == 0 {
			continue
		}
		sz, _, ecx, _ := host(0xD, i)
		if ecx&2 != 0 {
			size = (size + 63) &^ 63
		}
		size += sz
	}
	return int(size)
}

// NewXSaveArea returns a 64-byte aligned (SDM Vol. 1 13.4: XSAVE and
// XRSTOR #GP otherwise) area of size bytes in the reset state: FCW and
// MXCSR at their reset values, XSTATE_BV 0 (every component in its
// initial configuration, which XRSTOR loads as such, 13.8.1).
func NewXSaveArea(size int) []byte {
	size = max(size, XSaveMinSize)
	b := make([]byte, size+63)
	off := (64 - int(uintptr(unsafe.Pointer(&b[0]))%64)) % 64
	a := b[off : off+size : off+size]
	binary.LittleEndian.PutUint16(a[fxFCW:], resetFCW)
	binary.LittleEndian.PutUint32(a[fxMXCSR:], resetMXCSR)
	return a
}

// FXArea turns an FXSAVE image into a standard-format XSAVE area whose
// header marks x87 and SSE as saved (a vCPU that switches with FXSAVE, or
// a version-2 saved state).
func FXArea(fx *[512]byte) []byte {
	a := make([]byte, XSaveMinSize)
	copy(a, fx[:])
	binary.LittleEndian.PutUint64(a[xsaveXStateBV:], XCR0_X87|XCR0_SSE)
	return a
}

// CheckXSaveArea reports why a saved area cannot be XRSTORed by a vCPU
// whose own area is size bytes and that switches the components in mask:
// XRSTOR in ring 0 would take #GP in the host, not the guest (SDM Vol. 1
// 13.8: a compacted-format or non-zero reserved header, XSTATE_BV bits
// beyond XCR0, MXCSR reserved bits), so a bad one is refused before.
func CheckXSaveArea(a []byte, size int, mask uint64) error {
	switch {
	case len(a) < XSaveMinSize:
		return fmt.Errorf("XSAVE area of %d bytes, less than %d", len(a), XSaveMinSize)
	case len(a) > size:
		return fmt.Errorf("XSAVE area of %d bytes, this vCPU's holds %d", len(a), size)
	}
	bv := binary.LittleEndian.Uint64(a[xsaveXStateBV:])
	mask |= XCR0_X87 | XCR0_SSE
	if bv&^mask != 0 {
		return fmt.Errorf("XSAVE area holds components %#x, this vCPU switches %#x", bv, mask)
	}
	// Beyond SSE the components sit where this CPU's CPUID 0xD puts
	// them: only an area of this vCPU's own size has them in place.
	if bv&^(XCR0_X87|XCR0_SSE) != 0 && len(a) != size {
		return fmt.Errorf("XSAVE area of %d bytes holds components %#x; this vCPU's is %d bytes", len(a), bv, size)
	}
	if cbv := binary.LittleEndian.Uint64(a[xsaveXCompBV:]); cbv != 0 {
		return fmt.Errorf("XSAVE area in compacted format (XCOMP_BV %#x)", cbv)
	}
	for _, c := range a[xsaveXCompBV+8 : XSaveMinSize] {
		if c != 0 {
			return fmt.Errorf("XSAVE header's reserved bytes not zero")
		}
	}
	// MXCSR bits 31:16 are reserved on every CPU; 15:0 are all defined
	// where DAZ exists (every CPU with XSAVE).
	if m := binary.LittleEndian.Uint32(a[fxMXCSR:]); m>>16 != 0 {
		return fmt.Errorf("MXCSR %#x sets reserved bits", m)
	}
	return nil
}

// fpuSwitch is what vmentry reads to switch x87/SSE/AVX state; the
// offsets are the stub's (vmx_amd64.s), checked in xsave_test.go.
type fpuSwitch struct {
	host [512]byte // the host's FXSAVE image (16-byte aligned)
	// guest is the address of the guest's XSAVE area (64-byte aligned);
	// the Go slice that keeps it alive is VMXCPU.xsave.
	guest uintptr
	// guestXCR0 is loaded before the entry when switchXCR0 is not 0.
	guestXCR0 uint64
	// switchXCR0 is the XCR0 XRSTOR and XSAVE run under; 0 switches
	// only the legacy region with FXRSTOR/FXSAVE.
	switchXCR0 uint64
	// hostXCR0 is loaded after the exit (the boot layer's XCR0).
	hostXCR0 uint64
}

// Offsets the stub uses.
const (
	fpuSwitchGuest      = 512
	fpuSwitchGuestXCR0  = 520
	fpuSwitchSwitchXCR0 = 528
	fpuSwitchHostXCR0   = 536
)

// newFPUSwitch returns a 16-byte aligned fpuSwitch. It lives in a byte
// slice the collector does not scan: guest is an address, kept alive by
// the caller.
func newFPUSwitch() *fpuSwitch {
	b := make([]byte, unsafe.Sizeof(fpuSwitch{})+16)
	off := (16 - uintptr(unsafe.Pointer(&b[0]))%16) % 16
	return (*fpuSwitch)(unsafe.Pointer(&b[off]))
}
