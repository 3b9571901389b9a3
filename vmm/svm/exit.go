package svm

import (
	"errors"
	"fmt"

	"github.com/doppel-ft/doppel/vmm"
)

// Exit is one #VMEXIT, read from the VMCB control area (App. B table B-1).
type Exit struct {
	Code         ExitCode
	Info1, Info2 uint64
	IntInfo      uint64
	RIP          uint64
	NextRIP      uint64 // with NRIP save, else 0
}

// ReadExit reads the exit information of the last #VMEXIT.
func (v VMCB) ReadExit() Exit {
	return Exit{
		Code: ExitCode(v.Get64(VMExitCode)), Info1: v.Get64(ExitInfo1), Info2: v.Get64(ExitInfo2),
		IntInfo: v.Get64(ExitIntInfo), RIP: v.Get64(SaveRIP), NextRIP: v.Get64(NextRIP),
	}
}

// VCPU is the state the exit handlers act on: the same general registers,
// I/O bus and actions as the VT-x vCPU (vmm.Regs, vmm.IOBus, vmm.Action),
// with the VMCB in place of the VMCS. Guest RAX, RIP, RSP and RFLAGS live
// in the VMCB; Run copies RAX between it and Regs around every VMRUN.
type VCPU struct {
	Regs vmm.Regs
	VMCB VMCB
	Bus  *vmm.IOBus
	// CPUID runs CPUID on the host (cpu.CPUID on the hardware).
	CPUID func(leaf, subleaf uint32) (eax, ebx, ecx, edx uint32)
	// NRIPS: the CPU stores the next RIP (VMCB 0xC8) on instruction
	// intercepts. Without it doppel decodes the instruction (decode.go).
	NRIPS bool
	// ReadGuest reads guest-physical memory for the decoder.
	ReadGuest func(gpa uint64, b []byte) error
	// Mem, when set, is guest RAM: the decoder walks the guest's page
	// tables through it.
	Mem vmm.GuestMemory
	// OnNPF decides what a nested page fault does; nil stops the guest.
	OnNPF func(v *VCPU, gpa uint64, q NPFInfo) (vmm.Action, error)
	// Counts counts exits by code; Decoded counts instructions doppel
	// decoded for their length.
	Counts  map[ExitCode]uint64
	Decoded uint64
}

// Errors of SVM exit handling beyond vmm's.
var (
	ErrNestedPageFault = errors.New("svm: guest nested page fault")
	ErrInvalidVMCB     = errors.New("svm: VMRUN refused the VMCB (VMEXIT_INVALID)")
)

// ExitHandler handles one exit code.
type ExitHandler func(v *VCPU, e *Exit) (vmm.Action, error)

var exitHandlers map[ExitCode]ExitHandler

func init() {
	exitHandlers = map[ExitCode]ExitHandler{
		ExitIntr:     handleIntr,
		ExitNMI:      handleIntr,
		ExitSMI:      handleIntr,
		ExitCPUID:    handleCPUID,
		ExitHLT:      handleHLT,
		ExitIOIO:     handleIOIO,
		ExitNPF:      handleNPF,
		ExitShutdown: handleShutdown,
		ExitMSR:      handleMSR,
		ExitInvalid:  handleInvalid,
	}
}

// Dispatch counts the exit and runs its handler; an exit without one
// stops the guest with vmm.ErrUnhandledExit naming the code.
func Dispatch(v *VCPU, e *Exit) (vmm.Action, error) {
	if v.Counts == nil {
		v.Counts = make(map[ExitCode]uint64)
	}
	v.Counts[e.Code]++
	h := exitHandlers[e.Code]
	if h == nil {
		return vmm.ActionStop, fmt.Errorf("%w: SVM %v (exitcode %#x, exitinfo1 %#x, exitinfo2 %#x, rip %#x)",
			vmm.ErrUnhandledExit, e.Code, uint64(e.Code), e.Info1, e.Info2, e.RIP)
	}
	return h(v, e)
}

// handleIntr resumes: the host takes the physical interrupt (or NMI) at
// the STGI after the #VMEXIT.
func handleIntr(*VCPU, *Exit) (vmm.Action, error) { return vmm.ActionResume, nil }

// handleCPUID answers like the VT-x side (hypervisor bit, doppel's leaf
// 0x40000000) and also hides SVM from the guest (Fn8000_0001_ECX[2]).
func handleCPUID(v *VCPU, e *Exit) (vmm.Action, error) {
	next, err := v.nextRIP(e, "CPUID")
	if err != nil {
		return vmm.ActionStop, err
	}
	leaf, sub := uint32(v.Regs.RAX), uint32(v.Regs.RCX)
	var a, b, c, d uint32
	switch {
	case leaf == 0x4000_0000:
		s := vmm.HypervisorSignature
		a = 0x4000_0000
		b, c, d = le32(s[0:4]), le32(s[4:8]), le32(s[8:12])
	case leaf > 0x4000_0000 && leaf < 0x4000_0100:
	default:
		a, b, c, d = v.CPUID(leaf, sub)
		switch leaf {
		case 1:
			c = c&^(1<<vmm.CPUID01_ECX_VMX) | 1<<vmm.CPUID01_ECX_Hypervisor
		case 0x8000_0001:
			c &^= 1 << CPUID_80000001_ECX_SVM
		case CPUIDLeafSVM:
			a, b, c, d = 0, 0, 0, 0
		}
	}
	v.Regs.RAX, v.Regs.RBX, v.Regs.RCX, v.Regs.RDX = uint64(a), uint64(b), uint64(c), uint64(d)
	v.VMCB.Set64(SaveRIP, next)
	return vmm.ActionResume, nil
}

func le32(s string) uint32 {
	return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
}

// handleHLT stops the guest past its HLT: no interrupt injection yet, so
// a halted guest never wakes.
func handleHLT(v *VCPU, e *Exit) (vmm.Action, error) {
	next, err := v.nextRIP(e, "HLT")
	if err != nil {
		return vmm.ActionStop, err
	}
	v.VMCB.Set64(SaveRIP, next)
	return vmm.ActionStop, nil
}

// handleIOIO emulates IN and OUT on the bus. EXITINFO2 holds the next RIP
// for IOIO intercepts on every SVM CPU (15.10.2), NRIP save or not.
func handleIOIO(v *VCPU, e *Exit) (vmm.Action, error) {
	q := IOIOInfo(e.Info1)
	size := q.Size()
	if q.StringOp() || size == 0 {
		return vmm.ActionStop, fmt.Errorf("%w: %v at rip %#x", vmm.ErrUnsupported, q, e.RIP)
	}
	if q.In() {
		val := uint64(v.Bus.In(q.Port(), size))
		if size == 4 {
			v.Regs.RAX = val // a 32-bit destination zero-extends into RAX
		} else {
			mask := uint64(1)<<(8*size) - 1
			v.Regs.RAX = v.Regs.RAX&^mask | val
		}
	} else {
		v.Bus.Out(q.Port(), size, uint32(v.Regs.RAX))
	}
	v.VMCB.Set64(SaveRIP, e.Info2)
	return vmm.ActionResume, nil
}

// handleNPF: EXITINFO2 is the faulting guest-physical address (15.25).
func handleNPF(v *VCPU, e *Exit) (vmm.Action, error) {
	q := NPFInfo(e.Info1)
	if v.OnNPF != nil {
		return v.OnNPF(v, e.Info2, q)
	}
	return vmm.ActionStop, fmt.Errorf("%w: gpa %#x, %v, rip %#x", ErrNestedPageFault, e.Info2, q, e.RIP)
}

// handleShutdown: the guest shut down (a triple fault, APM Vol. 2 8.2.9);
// the same error as VT-x's triple-fault exit.
func handleShutdown(_ *VCPU, e *Exit) (vmm.Action, error) {
	return vmm.ActionStop, &vmm.TripleFaultError{RIP: e.RIP}
}

// handleMSR: every MSR access is intercepted (the MSRPM is all ones) and
// none is emulated yet. EXITINFO1 is 0 for RDMSR, 1 for WRMSR (15.11).
func handleMSR(v *VCPU, e *Exit) (vmm.Action, error) {
	op := "rdmsr"
	if e.Info1 == 1 {
		op = "wrmsr"
	}
	return vmm.ActionStop, fmt.Errorf("%w: %s %#x at rip %#x", vmm.ErrUnsupported, op, uint32(v.Regs.RCX), e.RIP)
}

func handleInvalid(v *VCPU, e *Exit) (vmm.Action, error) {
	return vmm.ActionStop, fmt.Errorf("%w: %w (guest EFER %#x CR0 %#x CR4 %#x ASID %d, APM Vol. 2 15.5.1)",
		vmm.ErrEntryFailed, ErrInvalidVMCB, v.VMCB.Get64(SaveEFER), v.VMCB.Get64(SaveCR0), v.VMCB.Get64(SaveCR4), v.VMCB.Get32(GuestASID))
}
