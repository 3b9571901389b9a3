package vmm

import (
	"errors"
	"fmt"
)

// Event injection (SDM Vol. 3C 27.6 "Event Injection", 25.8.3 the
// VM-entry interruption-information field, 26.2.1.3 the interrupt window).

// Interruption-information encoding (VM-entry, VM-exit and IDT-vectoring
// fields share it, table 25-17): vector 7:0, type 10:8, deliver error code
// 11, valid 31.
const (
	IntInfoValid        = 1 << 31
	IntInfoErrorCode    = 1 << 11
	IntTypeExternal     = 0 << 8
	IntTypeNMI          = 2 << 8
	IntTypeHWException  = 3 << 8
	IntTypeSWInterrupt  = 4 << 8
	IntTypePrivSWExcept = 5 << 8
	IntTypeSWException  = 6 << 8
	intTypeMask         = 7 << 8
)

// Exception vectors (SDM Vol. 3A table 6-1).
const (
	VectorNMI = 2  // non-maskable interrupt
	VectorUD  = 6  // invalid opcode
	VectorGP  = 13 // general protection
	VectorPF  = 14 // page fault
)

// Guest interruptibility state bits (25.4.2 table 25-3).
const (
	BlockingBySTI   = 1 << 0
	BlockingByMOVSS = 1 << 1
	BlockingByNMI   = 1 << 3
)

// RFLAGS_IF is the interrupt flag (SDM Vol. 1 3.4.3).
const RFLAGS_IF = 1 << 9

// InterruptSource is where a vCPU's external interrupts come from: its
// local APIC, and through it (ExtINT, virtual wire) the 8259 PIC.
type InterruptSource interface {
	// InterruptPending reports that an interrupt waits for the CPU.
	InterruptPending() bool
	// TakeInterrupt is the CPU's acknowledge (the INTA cycle, or the
	// APIC moving the vector from IRR to ISR): it returns the vector,
	// or false if the request went away meanwhile.
	TakeInterrupt() (vector uint8, ok bool)
}

// InjectException makes the next VM entry deliver exception vector with
// an error code if hasCode (27.6.1). The guest RIP stays on the faulting
// instruction.
func InjectException(vmcs VMCS, vector uint8, hasCode bool, code uint32) error {
	info := uint64(vector) | IntTypeHWException | IntInfoValid
	if hasCode {
		info |= IntInfoErrorCode
		if err := vmcs.Write(VMEntryExceptionErrorCode, uint64(code)); err != nil {
			return err
		}
	}
	return vmcs.Write(VMEntryInterruptionInfo, info)
}

// RequeueIDTVectoring re-injects an event whose delivery a VM exit
// interrupted (an EPT violation while pushing the frame of an interrupt,
// say): the IDT-vectoring information (27.2.4) becomes the next entry's
// interruption information (SDM Vol. 3C 28.2.4 advises this). It returns
// whether there was such an event.
func RequeueIDTVectoring(vmcs VMCS) (bool, error) {
	info, err := vmcs.Read(IDTVectoringInfo)
	if err != nil || info&IntInfoValid == 0 {
		return false, err
	}
	if info&IntInfoErrorCode != 0 {
		code, err := vmcs.Read(IDTVectoringErrorCode)
		if err != nil {
			return false, err
		}
		if err := vmcs.Write(VMEntryExceptionErrorCode, code); err != nil {
			return false, err
		}
	}
	switch info & intTypeMask {
	case IntTypeSWInterrupt, IntTypePrivSWExcept, IntTypeSWException:
		// Software events are re-executed with their instruction length.
		n, err := vmcs.Read(VMExitInstructionLength)
		if err != nil {
			return false, err
		}
		if err := vmcs.Write(VMEntryInstructionLength, n); err != nil {
			return false, err
		}
	}
	// Bit 12 (NMI unblocking) and 30:12 are reserved in the entry field.
	return true, vmcs.Write(VMEntryInterruptionInfo, info&(IntInfoValid|IntInfoErrorCode|intTypeMask|0xFF))
}

// Injector decides before each VM entry whether an interrupt can be
// injected now, and asks for an interrupt-window exit when one waits but
// the guest cannot take it (IF=0, an STI or MOV SS shadow, or another
// event already queued for this entry).
type Injector struct {
	Source InterruptSource
	// Proc is the primary processor-based controls as last written.
	Proc uint32
	// Injected counts injected interrupts.
	Injected uint64
}

// PrepareEntry runs before every VM entry.
func (j *Injector) PrepareEntry(vmcs VMCS) error {
	want := j.Proc &^ ProcInterruptWindowExiting
	if j.Source != nil && j.Source.InterruptPending() {
		queued, err := vmcs.Read(VMEntryInterruptionInfo)
		if err != nil {
			return err
		}
		if queued&IntInfoValid == 0 && j.canInject(vmcs) {
			if vec, ok := j.Source.TakeInterrupt(); ok {
				if err := vmcs.Write(VMEntryInterruptionInfo, uint64(vec)|IntTypeExternal|IntInfoValid); err != nil {
					return err
				}
				j.Injected++
			}
			// Another may be pending behind this one.
			if j.Source.InterruptPending() {
				want |= ProcInterruptWindowExiting
			}
		} else {
			want |= ProcInterruptWindowExiting
		}
	}
	if want != j.Proc {
		if err := vmcs.Write(ProcBasedControls, uint64(want)); err != nil {
			return err
		}
		j.Proc = want
	}
	return nil
}

// canInject: RFLAGS.IF set and no STI or MOV SS blocking (26.3.1.5).
func (j *Injector) canInject(vmcs VMCS) bool {
	fl, err1 := vmcs.Read(GuestRFLAGS)
	st, err2 := vmcs.Read(GuestInterruptibilityState)
	return err1 == nil && err2 == nil && fl&RFLAGS_IF != 0 && st&(BlockingBySTI|BlockingByMOVSS) == 0
}

// handleInterruptWindow resumes: PrepareEntry injects now that the guest
// can take the interrupt.
func handleInterruptWindow(*VCPU, *Exit) (Action, error) { return ActionResume, nil }

// handleRDMSR answers from v.MSRs; a missing MSR is #GP(0) in the guest.
func handleRDMSR(v *VCPU, e *Exit) (Action, error) {
	if v.MSRs == nil {
		return ActionStop, fmt.Errorf("%w: rdmsr %#x without an MSR file, rip %#x", ErrUnhandledExit, uint32(v.Regs.RCX), e.RIP)
	}
	val, err := v.MSRs.Read(uint32(v.Regs.RCX))
	if errors.Is(err, ErrMSRFault) {
		v.MSRFaults++
		return ActionResume, InjectException(v.VMCS, VectorGP, true, 0)
	}
	if err != nil {
		return ActionStop, err
	}
	v.Regs.RAX, v.Regs.RDX = val&0xFFFF_FFFF, val>>32
	return ActionResume, skip(v, e)
}

// handleWRMSR writes through v.MSRs; a refused write is #GP(0).
func handleWRMSR(v *VCPU, e *Exit) (Action, error) {
	if v.MSRs == nil {
		return ActionStop, fmt.Errorf("%w: wrmsr %#x without an MSR file, rip %#x", ErrUnhandledExit, uint32(v.Regs.RCX), e.RIP)
	}
	err := v.MSRs.Write(uint32(v.Regs.RCX), v.Regs.RDX<<32|v.Regs.RAX&0xFFFF_FFFF)
	if errors.Is(err, ErrMSRFault) {
		v.MSRFaults++
		return ActionResume, InjectException(v.VMCS, VectorGP, true, 0)
	}
	if err != nil {
		return ActionStop, err
	}
	return ActionResume, skip(v, e)
}

// ValidXCR0 reports whether the guest may load x into XCR0 when allowed
// components are offered (SDM Vol. 2C XSETBV, Vol. 1 13.3): x87 always
// set, AVX only with SSE, the three AVX-512 components together and only
// with AVX, nothing outside allowed.
func ValidXCR0(x, allowed uint64) bool {
	const avx512 = XCR0_OPMASK | XCR0_ZMMHi | XCR0_HiZMM
	switch {
	case x&XCR0_X87 == 0, x&^allowed != 0:
		return false
	case x&XCR0_AVX != 0 && x&XCR0_SSE == 0:
		return false
	case x&avx512 != 0 && (x&avx512 != avx512 || x&XCR0_AVX == 0):
		return false
	}
	return true
}

// handleXSETBV records the guest's XCR0 (XSETBV always exits, 26.1.2);
// the entry path loads it. A bad value or register is #GP(0).
func handleXSETBV(v *VCPU, e *Exit) (Action, error) {
	x := v.Regs.RDX<<32 | v.Regs.RAX&0xFFFF_FFFF
	cr4, err := v.VMCS.Read(GuestCR4)
	if err != nil {
		return ActionStop, err
	}
	if cr4&CR4_OSXSAVE == 0 {
		return ActionResume, InjectException(v.VMCS, VectorUD, false, 0)
	}
	if uint32(v.Regs.RCX) != 0 || !ValidXCR0(x, v.XCR0Allowed) {
		return ActionResume, InjectException(v.VMCS, VectorGP, true, 0)
	}
	v.XCR0 = x
	return ActionResume, skip(v, e)
}
