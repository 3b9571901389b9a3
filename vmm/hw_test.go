package vmm

import (
	"testing"
	"unsafe"
)

// The entry/exit stub (vmx_amd64.s) addresses Regs by fixed offsets.
func TestRegsOffsets(t *testing.T) {
	var r Regs
	for _, c := range []struct {
		name string
		got  uintptr
		want uintptr
	}{
		{"RAX", unsafe.Offsetof(r.RAX), 0}, {"RBX", unsafe.Offsetof(r.RBX), 8},
		{"RCX", unsafe.Offsetof(r.RCX), 16}, {"RDX", unsafe.Offsetof(r.RDX), 24},
		{"RSI", unsafe.Offsetof(r.RSI), 32}, {"RDI", unsafe.Offsetof(r.RDI), 40},
		{"RBP", unsafe.Offsetof(r.RBP), 48}, {"R8", unsafe.Offsetof(r.R8), 56},
		{"R15", unsafe.Offsetof(r.R15), 112}, {"CR2", unsafe.Offsetof(r.CR2), 120},
	} {
		if c.got != c.want {
			t.Errorf("Regs.%s at %d, the stub uses %d", c.name, c.got, c.want)
		}
	}
}

func TestTSSBase(t *testing.T) {
	// A TSS at 0xFFFF_8000_1234_5678, limit 0x67, type 0xB (busy 64-bit TSS).
	lo := uint64(0x67) | 0x5678<<16 | 0x34<<32 | 0x8B<<40 | 0x12<<56
	hi := uint64(0xFFFF_8000)
	if got := TSSBase(lo, hi); got != 0xFFFF_8000_1234_5678 {
		t.Errorf("TSSBase %#x", got)
	}
}
