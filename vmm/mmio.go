package vmm

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// MMIO emulation: an EPT violation on a guest-physical address an MMIO
// device claims is the guest's load or store to that device. doppel
// decodes the faulting instruction with x86asm (the exit gives no operand,
// SDM Vol. 3C 28.2.1 table 28-7), performs the access on the bus and
// writes the result to the destination register.

// ErrMMIODecode is wrapped when the instruction at an MMIO exit is not
// one doppel emulates (or not an instruction at all).
var ErrMMIODecode = errors.New("vmm: cannot emulate MMIO instruction")

// reg returns a pointer to the 64-bit register holding hardware register
// number n (0 RAX, 1 RCX, 2 RDX, 3 RBX, 4 RSP, 5 RBP, 6 RSI, 7 RDI,
// 8-15 R8-R15, SDM Vol. 2A 2.1.5). RSP lives in the VMCS: nil.
func (r *Regs) reg(n int) *uint64 {
	switch n {
	case 0:
		return &r.RAX
	case 1:
		return &r.RCX
	case 2:
		return &r.RDX
	case 3:
		return &r.RBX
	case 5:
		return &r.RBP
	case 6:
		return &r.RSI
	case 7:
		return &r.RDI
	case 8:
		return &r.R8
	case 9:
		return &r.R9
	case 10:
		return &r.R10
	case 11:
		return &r.R11
	case 12:
		return &r.R12
	case 13:
		return &r.R13
	case 14:
		return &r.R14
	case 15:
		return &r.R15
	}
	return nil
}

// regSlot locates an x86asm register: the 64-bit register, the bit shift
// of the part (8 for AH-BH) and its size in bytes.
func (r *Regs) regSlot(x x86asm.Reg) (p *uint64, shift uint, size int, err error) {
	switch {
	case x >= x86asm.AL && x <= x86asm.BL:
		p, size = r.reg(int(x-x86asm.AL)), 1
	case x >= x86asm.AH && x <= x86asm.BH:
		p, shift, size = r.reg(int(x-x86asm.AH)), 8, 1
	case x >= x86asm.SPB && x <= x86asm.R15B:
		p, size = r.reg(int(x-x86asm.SPB)+4), 1
	case x >= x86asm.AX && x <= x86asm.R15W:
		p, size = r.reg(int(x-x86asm.AX)), 2
	case x >= x86asm.EAX && x <= x86asm.R15L:
		p, size = r.reg(int(x-x86asm.EAX)), 4
	case x >= x86asm.RAX && x <= x86asm.R15:
		p, size = r.reg(int(x-x86asm.RAX)), 8
	default:
		return nil, 0, 0, fmt.Errorf("%w: register %v", ErrMMIODecode, x)
	}
	if p == nil {
		return nil, 0, 0, fmt.Errorf("%w: stack pointer operand %v", ErrMMIODecode, x)
	}
	return p, shift, size, nil
}

// get reads register x.
func (r *Regs) get(x x86asm.Reg) (uint64, error) {
	p, shift, size, err := r.regSlot(x)
	if err != nil {
		return 0, err
	}
	return *p >> shift & sizeMask(size), nil
}

// set writes v to register x as the CPU does: a 32-bit destination
// zero-extends into the 64-bit register, 8- and 16-bit ones merge.
func (r *Regs) set(x x86asm.Reg, v uint64) error {
	p, shift, size, err := r.regSlot(x)
	if err != nil {
		return err
	}
	switch size {
	case 4:
		*p = v & 0xFFFF_FFFF
	case 8:
		*p = v
	default:
		m := sizeMask(size) << shift
		*p = *p&^m | v<<shift&m
	}
	return nil
}

func sizeMask(size int) uint64 {
	if size >= 8 {
		return ^uint64(0)
	}
	return 1<<(8*size) - 1
}

func signExtend(v uint64, size int) uint64 {
	s := 64 - 8*uint(size)
	return uint64(int64(v<<s) >> s)
}

// MMIOBusAccess is the bus an emulated instruction accesses.
type MMIOBusAccess interface {
	Read(gpa uint64, data []byte)
	Write(gpa uint64, data []byte)
}

// EmulateMMIO decodes the instruction in code (mode 16, 32 or 64), which
// faulted accessing guest-physical gpa, performs its access on bus and
// updates regs. It returns the instruction's length. Emulated: MOV to and
// from memory (register and immediate sources), MOVZX and MOVSX loads.
func EmulateMMIO(code []byte, mode int, regs *Regs, gpa uint64, bus MMIOBusAccess) (int, error) {
	inst, err := x86asm.Decode(code, mode)
	if err != nil {
		return 0, fmt.Errorf("%w: % x: %v", ErrMMIODecode, code[:min(len(code), 15)], err)
	}
	var mem, other int = -1, -1
	for i, a := range inst.Args {
		if a == nil {
			break
		}
		if _, ok := a.(x86asm.Mem); ok {
			mem = i
		} else {
			other = i
		}
	}
	size := inst.MemBytes
	if mem < 0 || other < 0 || size != 1 && size != 2 && size != 4 && size != 8 {
		return 0, fmt.Errorf("%w: %v", ErrMMIODecode, inst)
	}
	var buf [8]byte
	data := buf[:size]
	switch inst.Op {
	case x86asm.MOV:
		if mem == 0 { // store
			var v uint64
			switch a := inst.Args[1].(type) {
			case x86asm.Reg:
				if v, err = regs.get(a); err != nil {
					return 0, err
				}
			case x86asm.Imm:
				v = uint64(a)
			default:
				return 0, fmt.Errorf("%w: %v", ErrMMIODecode, inst)
			}
			binary.LittleEndian.PutUint64(buf[:], v)
			bus.Write(gpa, data)
			return inst.Len, nil
		}
		dst, ok := inst.Args[0].(x86asm.Reg)
		if !ok {
			return 0, fmt.Errorf("%w: %v", ErrMMIODecode, inst)
		}
		if _, _, _, err := regs.regSlot(dst); err != nil {
			return 0, err // a segment or control register: checked before the access
		}
		bus.Read(gpa, data)
		return inst.Len, regs.set(dst, binary.LittleEndian.Uint64(buf[:]))
	case x86asm.MOVZX, x86asm.MOVSX, x86asm.MOVSXD:
		dst, ok := inst.Args[0].(x86asm.Reg)
		if !ok || mem != 1 {
			return 0, fmt.Errorf("%w: %v", ErrMMIODecode, inst)
		}
		if _, _, _, err := regs.regSlot(dst); err != nil {
			return 0, err
		}
		bus.Read(gpa, data)
		v := binary.LittleEndian.Uint64(buf[:])
		if inst.Op != x86asm.MOVZX {
			v = signExtend(v, size)
		}
		return inst.Len, regs.set(dst, v)
	}
	return 0, fmt.Errorf("%w: %v", ErrMMIODecode, inst)
}

// CPUMode is the guest's code size for decoding: 64 in 64-bit mode
// (EFER.LMA and CS.L), else 32 or 16 by CS.D (SDM Vol. 3A 5.2.1).
func CPUMode(efer, csAccessRights uint64) int {
	switch {
	case efer&EFER_LMA != 0 && csAccessRights&(1<<13) != 0:
		return 64
	case csAccessRights&(1<<14) != 0:
		return 32
	}
	return 16
}

// pagingState reads the guest's paging registers.
func pagingState(vmcs VMCS) (PagingState, error) {
	var ps PagingState
	var errs [4]error
	ps.CR0, errs[0] = vmcs.Read(GuestCR0)
	ps.CR3, errs[1] = vmcs.Read(GuestCR3)
	ps.CR4, errs[2] = vmcs.Read(GuestCR4)
	ps.EFER, errs[3] = vmcs.Read(GuestIA32EFER)
	return ps, errors.Join(errs[:]...)
}

// fetchInstruction reads up to 15 bytes at the guest's CS:RIP; a fetch
// that crosses into an unmapped page returns what it got.
func fetchInstruction(v *VCPU, rip uint64) ([]byte, int, error) {
	ps, err := pagingState(v.VMCS)
	if err != nil {
		return nil, 0, err
	}
	ar, err1 := v.VMCS.Read(GuestCSAccessRights)
	base, err2 := v.VMCS.Read(GuestCSBase)
	if err := errors.Join(err1, err2); err != nil {
		return nil, 0, err
	}
	mode := CPUMode(ps.EFER, ar)
	la := rip
	if mode != 64 {
		la = (base + rip) & 0xFFFF_FFFF
	}
	code := make([]byte, 15)
	first := min(15, int(4096-la&0xFFF))
	if err := v.Mem.ReadLinear(ps, la, code[:first]); err != nil {
		return nil, 0, err
	}
	if first < 15 && v.Mem.ReadLinear(ps, la+uint64(first), code[first:]) != nil {
		code = code[:first]
	}
	return code, mode, nil
}

// HandleMMIO emulates the instruction behind an EPT violation at gpa,
// which v.MMIO claims, and moves the guest past it.
func HandleMMIO(v *VCPU, e *Exit) (Action, error) {
	code, mode, err := fetchInstruction(v, e.RIP)
	if err != nil {
		return ActionStop, fmt.Errorf("vmm: mmio at gpa %#x: fetch at rip %#x: %w", e.GuestPhysical, e.RIP, err)
	}
	n, err := EmulateMMIO(code, mode, &v.Regs, e.GuestPhysical, v.MMIO)
	if err != nil {
		return ActionStop, fmt.Errorf("vmm: mmio at gpa %#x, rip %#x: %w", e.GuestPhysical, e.RIP, err)
	}
	v.MMIOExits++
	return ActionResume, v.VMCS.Write(GuestRIP, e.RIP+uint64(n))
}
