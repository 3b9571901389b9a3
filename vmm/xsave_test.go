package vmm

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"unsafe"

	"github.com/doppel-ft/doppel/vmm/devices"
)

// fakeXSAVEHost is a CPU with XSAVE: leaf 1 ECX, leaf 0xD subleaf 0
// EDX:EAX = comps, and the Skylake-X standard-format layout (SDM Vol. 1
// 13.4.3 lists the components; the offsets are that CPU's).
func fakeXSAVEHost(ecx1 uint32, comps uint64) func(leaf, sub uint32) (a, b, c, d uint32) {
	layout := map[uint32][2]uint32{2: {256, 576}, 3: {64, 960}, 4: {64, 1024}, 5: {64, 1088}, 6: {512, 1152}, 7: {1024, 1664}, 9: {8, 2688}}
	return func(leaf, sub uint32) (a, b, c, d uint32) {
		switch leaf {
		case 0:
			return 0x16, 0, 0, 0
		case 1:
			return 0, 0, ecx1, 0
		case 0xD:
			if sub == 0 {
				return uint32(comps), 0, 0, uint32(comps >> 32)
			}
			if l, ok := layout[sub]; ok && comps&(1<<sub) != 0 {
				return l[0], l[1], 0, 0
			}
		}
		return 0, 0, 0, 0
	}
}

func TestSwitchableXCR0(t *testing.T) {
	const xsave, osxsave = 1 << CPUID01_ECX_XSAVE, 1 << CPUID01_ECX_OSXSAVE
	for _, tc := range []struct {
		name  string
		ecx1  uint32
		comps uint64
		want  uint64
	}{
		{"no XSAVE", osxsave, 0x2FF, 0},
		{"host OS without OSXSAVE", xsave, 0x2FF, 0},
		{"Skylake-X: MPX and PKRU left out", xsave | osxsave, 0x2FF, 0xE7},
		{"AVX2 CPU", xsave | osxsave, 0x7, 0x7},
		{"SSE only", xsave | osxsave, 0x3, 0x3},
		{"part of AVX-512 dropped", xsave | osxsave, 0x27, 0x7},
		{"AVX-512 without AVX dropped", xsave | osxsave, 0xE3, 0x3},
		{"no SSE component", xsave | osxsave, 0x1, 0},
	} {
		if got := SwitchableXCR0(fakeXSAVEHost(tc.ecx1, tc.comps)); got != tc.want {
			t.Errorf("%s: SwitchableXCR0 = %#x, want %#x", tc.name, got, tc.want)
		}
		if got := SwitchableXCR0(fakeXSAVEHost(tc.ecx1, tc.comps)); got != 0 && !ValidXCR0(got, got) {
			t.Errorf("%s: %#x is no valid XCR0", tc.name, got)
		}
	}
	// The development host's dump (AMD EPYC under KVM): AVX-512 there.
	if got := SwitchableXCR0(loadCPUIDDump(t, "testdata/cpuid-amd-epyc.txt")); got != 0xE7 {
		t.Errorf("EPYC dump: SwitchableXCR0 = %#x, want 0xe7", got)
	}
}

func TestXSaveSize(t *testing.T) {
	host := fakeXSAVEHost(0, 0x2FF)
	for _, tc := range []struct {
		set  uint64
		want int
	}{{0, 576}, {3, 576}, {7, 832}, {0xE7, 2688}, {1 << 9, 2696}} {
		if got := XSaveSize(host, tc.set); got != tc.want {
			t.Errorf("XSaveSize(%#x) = %d, want %d", tc.set, got, tc.want)
		}
	}
}

// TestXSaveCompactedSize: the compacted sizes, which Linux checks against
// CPUID 0xD.1 EBX when it uses XSAVEC (seen under Bochs's Skylake-X:
// "XSAVE consistency problem: size 2432 != kernel_size 2688" while EBX
// held the standard size, and Linux fell back to FXSAVE).
func TestXSaveCompactedSize(t *testing.T) {
	host := fakeXSAVEHost(0, 0x2FF)
	for _, tc := range []struct {
		set  uint64
		want int
	}{{3, 576}, {7, 832}, {0xE7, 2432}, {0x2E7, 2440}} {
		if got := XSaveCompactedSize(host, tc.set); got != tc.want {
			t.Errorf("XSaveCompactedSize(%#x) = %d, want %d", tc.set, got, tc.want)
		}
	}
	// A component that asks for 64-byte alignment (ECX bit 1) starts on
	// one: with an 8-byte component 3 ending at 840, component 4 moves
	// to 896.
	aligned := func(leaf, sub uint32) (a, b, c, d uint32) {
		a, b, c, d = host(leaf, sub)
		switch {
		case leaf == 0xD && sub == 3:
			a = 8
		case leaf == 0xD && sub == 4:
			c = 2
		}
		return a, b, c, d
	}
	if got := XSaveCompactedSize(aligned, 0x1F); got != 896+64 {
		t.Errorf("aligned component: %d, want %d", got, 896+64)
	}
	v := NewCPUIDView(CPUIDConfig{Host: host, CPUs: 1, XCR0: 0xE7})
	if _, b, _, _ := v.Query(0, CR4_OSXSAVE, 0xE7, 0xD, 1); b != 2432 {
		t.Errorf("leaf 0xD.1 EBX = %d, want the compacted 2432", b)
	}
	if _, b, c, _ := v.Query(0, CR4_OSXSAVE, 0xE7, 0xD, 0); b != 2688 || c != 2688 {
		t.Errorf("leaf 0xD.0 EBX, ECX = %d, %d, want the standard 2688", b, c)
	}
}

func TestNewXSaveArea(t *testing.T) {
	for _, size := range []int{0, 576, 832, 2688} {
		a := NewXSaveArea(size)
		if uintptr(unsafe.Pointer(&a[0]))%64 != 0 || len(a) != max(size, XSaveMinSize) || cap(a) != len(a) {
			t.Errorf("size %d: area at %p, len %d cap %d", size, &a[0], len(a), cap(a))
		}
		if binary.LittleEndian.Uint16(a[fxFCW:]) != resetFCW || binary.LittleEndian.Uint32(a[fxMXCSR:]) != resetMXCSR ||
			binary.LittleEndian.Uint64(a[xsaveXStateBV:]) != 0 {
			t.Errorf("size %d: not the reset state", size)
		}
		if err := CheckXSaveArea(a, len(a), XCR0Switchable); err != nil {
			t.Errorf("size %d: a new area fails its check: %v", size, err)
		}
	}
	var fx [512]byte
	fx[0], fx[511] = 0x7F, 0x55
	a := FXArea(&fx)
	if len(a) != XSaveMinSize || a[0] != 0x7F || a[511] != 0x55 || binary.LittleEndian.Uint64(a[xsaveXStateBV:]) != 3 {
		t.Errorf("FXArea: %d bytes, XSTATE_BV %#x", len(a), binary.LittleEndian.Uint64(a[xsaveXStateBV:]))
	}
}

func TestCheckXSaveArea(t *testing.T) {
	good := func(size int, bv uint64) []byte {
		a := NewXSaveArea(size)
		binary.LittleEndian.PutUint64(a[xsaveXStateBV:], bv)
		return a
	}
	with := func(a []byte, f func([]byte)) []byte { f(a); return a }
	for _, tc := range []struct {
		name string
		a    []byte
		size int
		mask uint64
		want string // "" for accepted
	}{
		{"x87/SSE in an AVX vCPU", good(576, 3), 832, 7, ""},
		{"AVX", good(832, 7), 832, 7, ""},
		{"AVX-512", good(2688, 0xE7), 2688, 0xE7, ""},
		{"x87/SSE in an FXSAVE vCPU", good(576, 3), 576, 0, ""},
		{"short", make([]byte, 575), 832, 7, "less than"},
		{"longer than the vCPU's", good(2688, 3), 832, 7, "holds 832"},
		{"AVX for an FXSAVE vCPU", good(576, 7), 576, 0, "components 0x7"},
		{"AVX-512 for an AVX vCPU", good(832, 0xE7), 832, 7, "components 0xe7"},
		{"AVX in a short area", good(576, 7), 832, 7, "holds components"},
		{"compacted", with(good(832, 7), func(a []byte) { a[xsaveXCompBV+7] = 0x80 }), 832, 7, "compacted"},
		{"reserved header", with(good(832, 7), func(a []byte) { a[560] = 1 }), 832, 7, "reserved"},
		{"MXCSR reserved", with(good(832, 3), func(a []byte) { a[fxMXCSR+2] = 1 }), 832, 7, "MXCSR"},
	} {
		err := CheckXSaveArea(tc.a, tc.size, tc.mask)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestFPUSwitchLayout: the offsets vmx_amd64.s uses, and the alignment
// FXSAVE needs.
func TestFPUSwitchLayout(t *testing.T) {
	var s fpuSwitch
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"guest", unsafe.Offsetof(s.guest), fpuSwitchGuest},
		{"guestXCR0", unsafe.Offsetof(s.guestXCR0), fpuSwitchGuestXCR0},
		{"switchXCR0", unsafe.Offsetof(s.switchXCR0), fpuSwitchSwitchXCR0},
		{"hostXCR0", unsafe.Offsetof(s.hostXCR0), fpuSwitchHostXCR0},
	} {
		if c.got != c.want {
			t.Errorf("fpuSwitch.%s at %d, the stub reads %d", c.name, c.got, c.want)
		}
	}
	for range 8 {
		if p := newFPUSwitch(); uintptr(unsafe.Pointer(p))%16 != 0 {
			t.Fatalf("fpuSwitch at %p", p)
		}
	}
}

// FuzzRestoreVCPUState: any blob either restores, and saves back to the
// same bytes, or is refused with ErrBadState and writes no field.
func FuzzRestoreVCPUState(f *testing.F) {
	src := fakeVMCS{}
	for i, fl := range savedFields {
		src[fl] = uint64(i)
	}
	var frame [512]uint64
	area := NewMSRArea(&frame, SwitchedMSRs, make([]uint64, len(SwitchedMSRs)))
	for _, bv := range []uint64{3, 7} {
		s := &VCPUState{XSave: NewXSaveArea(832), XCR0: bv, MSRArea: area, MSRs: NewGuestMSRs(src, area, true)}
		binary.LittleEndian.PutUint64(s.XSave[xsaveXStateBV:], bv)
		b, err := SaveVCPUState(src, s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fr [512]uint64
		a := NewMSRArea(&fr, SwitchedMSRs, make([]uint64, len(SwitchedMSRs)))
		dst := fakeVMCS{}
		s := &VCPUState{MSRArea: a, MSRs: NewGuestMSRs(dst, a, false), XSaveSize: 832, XCR0Allowed: 7}
		if err := RestoreVCPUState(dst, b, s); err != nil {
			if !errors.Is(err, devices.ErrBadState) || len(dst) != 0 {
				t.Fatalf("refused with %v, %d fields written", err, len(dst))
			}
			return
		}
		if CheckXSaveArea(s.XSave, 832, 7) != nil || !ValidXCR0(s.XCR0, 7) {
			t.Fatalf("restored an area or XCR0 (%#x) the vCPU cannot load", s.XCR0)
		}
		if binary.LittleEndian.Uint16(b[4:6]) != vcpuStateVersion {
			return // a version-2 blob saves as version 3
		}
		back, err := SaveVCPUState(dst, s)
		if err != nil || string(back) != string(b) {
			t.Fatalf("saved back differently: %v", err)
		}
	})
}
