package svm

import (
	"fmt"

	"github.com/doppel-ft/doppel/vmm"

	"golang.org/x/arch/x86/x86asm"
)

// Without NRIP save (QEMU TCG has none, nor decode assists) an instruction
// intercept leaves only the RIP of the instruction: doppel fetches its
// bytes from guest memory and decodes them with x86asm to learn its length
// (and, for MMIO later, its operands).

// maxInstrLen is the architectural limit of an x86 instruction.
const maxInstrLen = 15

// ErrDecode is wrapped when the guest's instruction cannot be fetched or
// decoded, or is not the one the exit names.
var ErrDecode = fmt.Errorf("svm: decode guest instruction")

// cpuMode returns the decoder's mode (16, 32, 64) from CS and EFER.LMA.
func (v VMCB) cpuMode() int {
	cs := v.Segment(SaveCS)
	switch {
	case v.Get64(SaveEFER)&EFER_LMA != 0 && cs.Attrib&AttrL != 0:
		return 64
	case cs.Attrib&AttrDB != 0:
		return 32
	}
	return 16
}

// EFER.LMA (bit 10), AMD APM Vol. 2 3.1.7.
const EFER_LMA = 1 << 10

// DecodeAt fetches and decodes the guest's instruction at rip. With Mem
// set the fetch walks the guest's page tables (vmm.GuestMemory.ReadLinear)
// when its paging is on; without, only paging-off guests are supported.
func (v *VCPU) DecodeAt(rip uint64) (x86asm.Inst, error) {
	paged := v.VMCB.Get64(SaveCR0)&CR0_PG != 0
	read := v.ReadGuest
	if v.Mem != nil {
		ps := v.VMCB.PagingState()
		read = func(la uint64, b []byte) error { return v.Mem.ReadLinear(ps, la, b) }
	} else if paged {
		return x86asm.Inst{}, fmt.Errorf("%w at rip %#x: guest paging is on and no guest memory to walk", ErrDecode, rip)
	}
	if read == nil {
		return x86asm.Inst{}, fmt.Errorf("%w at rip %#x: no guest memory reader", ErrDecode, rip)
	}
	mode := v.VMCB.cpuMode()
	lin := v.VMCB.Segment(SaveCS).Base + rip
	if mode == 64 {
		lin = rip
	} else {
		lin &= 0xFFFF_FFFF
	}
	var buf [maxInstrLen]byte
	// Fetch page by page: the instruction may end on the next page, and
	// the last page of guest RAM may end before maxInstrLen bytes.
	n := 0
	for n < maxInstrLen {
		chunk := min(maxInstrLen-n, int(4096-(lin+uint64(n))%4096))
		if err := read(lin+uint64(n), buf[n:n+chunk]); err != nil {
			if n == 0 {
				return x86asm.Inst{}, fmt.Errorf("%w at rip %#x: fetch: %v", ErrDecode, rip, err)
			}
			break
		}
		n += chunk
	}
	inst, err := x86asm.Decode(buf[:n], mode)
	if err != nil {
		return x86asm.Inst{}, fmt.Errorf("%w at rip %#x (% x): %v", ErrDecode, rip, buf[:n], err)
	}
	return inst, nil
}

// nextRIP returns the RIP after the intercepted instruction: the CPU's
// NextRIP when it saves one, else the decoded length, checked to be the
// instruction the exit names (want, an x86asm opcode name).
func (v *VCPU) nextRIP(e *Exit, want string) (uint64, error) {
	if v.NRIPS && e.NextRIP != 0 {
		return e.NextRIP, nil
	}
	inst, err := v.DecodeAt(e.RIP)
	if err != nil {
		return 0, err
	}
	if inst.Op.String() != want {
		return 0, fmt.Errorf("%w at rip %#x: found %v, the %v exit wants %s", ErrDecode, e.RIP, inst, e.Code, want)
	}
	v.Decoded++
	return e.RIP + uint64(inst.Len), nil
}

// PagingState is the guest's paging registers for vmm's page walker.
func (v VMCB) PagingState() vmm.PagingState {
	return vmm.PagingState{CR0: v.Get64(SaveCR0), CR3: v.Get64(SaveCR3), CR4: v.Get64(SaveCR4), EFER: v.Get64(SaveEFER)}
}
