package vmm

import (
	"encoding/binary"
	"fmt"
)

// String I/O (INS, OUTS, with or without REP): the exit qualification
// gives port, size, direction and REP (SDM Vol. 3C 28.2.1 table 28-5);
// the VM-exit instruction-information field gives the address size and,
// for OUTS, the segment (28.2.5 table 28-8). The memory operand is
// ES:[RDI] for INS and seg:[RSI] for OUTS, stepped by the size, backwards
// when RFLAGS.DF is set.

// RFLAGS_DF is the direction flag (SDM Vol. 1 3.4.3).
const RFLAGS_DF = 1 << 10

// maxStringIOPerExit bounds the iterations done in one exit; the
// instruction is then re-entered with RCX lowered, as the CPU itself may
// pause a REP string instruction for an interrupt (Vol. 1 7.3.9.2), so a
// huge count neither stalls pause requests nor interrupt delivery.
const maxStringIOPerExit = 4096

var segBaseFields = [6]Field{GuestESBase, GuestCSBase, GuestSSBase, GuestDSBase, GuestFSBase, GuestGSBase}

// handleStringIO emulates one exit's worth of a string I/O instruction.
func handleStringIO(v *VCPU, e *Exit) (Action, error) {
	q := IOQual(e.Qualification)
	if v.Mem == nil {
		return ActionStop, fmt.Errorf("%w: %v at rip %#x (no guest memory)", ErrUnsupported, q, e.RIP)
	}
	info, err := v.VMCS.Read(VMExitInstructionInfo)
	if err != nil {
		return ActionStop, err
	}
	flags, err := v.VMCS.Read(GuestRFLAGS)
	if err != nil {
		return ActionStop, err
	}
	ps, err := pagingState(v.VMCS)
	if err != nil {
		return ActionStop, err
	}
	addrMask := [4]uint64{0xFFFF, 0xFFFF_FFFF, ^uint64(0), 0}[info>>7&7%4]
	if addrMask == 0 {
		return ActionStop, fmt.Errorf("%w: %v: address size field %d", ErrUnsupported, q, info>>7&7)
	}
	seg := 0 // ES for INS
	ptr := &v.Regs.RDI
	if !q.In() {
		seg, ptr = int(info>>15&7), &v.Regs.RSI
		if seg > 5 {
			return ActionStop, fmt.Errorf("%w: %v: segment field %d", ErrUnsupported, q, seg)
		}
	}
	var base uint64
	// In 64-bit mode only FS and GS have bases (Vol. 3A 3.4.4).
	if ps.EFER&EFER_LMA == 0 || seg >= 4 {
		if base, err = v.VMCS.Read(segBaseFields[seg]); err != nil {
			return ActionStop, err
		}
	}
	size := q.Size()
	step := uint64(size)
	if flags&RFLAGS_DF != 0 {
		step = -step
	}
	count := uint64(1)
	if q.REP() {
		count = v.Regs.RCX & addrMask
	}
	n := min(count, maxStringIOPerExit)
	var buf [4]byte
	for i := uint64(0); i < n; i++ {
		la := base + *ptr&addrMask
		if ps.EFER&EFER_LMA == 0 {
			la &= 0xFFFF_FFFF
		}
		if q.In() {
			binary.LittleEndian.PutUint32(buf[:], v.Bus.In(q.Port(), size))
			err = v.Mem.WriteLinear(ps, la, buf[:size])
		} else {
			if err = v.Mem.ReadLinear(ps, la, buf[:size]); err == nil {
				v.Bus.Out(q.Port(), size, binary.LittleEndian.Uint32(buf[:]))
			}
		}
		if err != nil {
			return ActionStop, fmt.Errorf("vmm: %v at rip %#x: %w", q, e.RIP, err)
		}
		*ptr = *ptr&^addrMask | (*ptr+step)&addrMask
		if q.REP() {
			v.Regs.RCX = v.Regs.RCX&^addrMask | (v.Regs.RCX-1)&addrMask
		}
	}
	if n < count {
		return ActionResume, nil // not done: re-execute with the lowered count
	}
	return ActionResume, skip(v, e)
}
