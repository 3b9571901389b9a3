package vmm

import (
	"errors"
	"fmt"
)

// VMCS reads and writes fields of the current VMCS (VMREAD/VMWRITE on the
// hardware; a map in host tests).
type VMCS interface {
	Read(f Field) (uint64, error)
	Write(f Field, v uint64) error
}

// Regs are the guest registers the VMCS does not hold, saved and restored
// by the entry/exit stub around every VM entry. The order is the stub's.
type Regs struct {
	RAX, RBX, RCX, RDX, RSI, RDI, RBP    uint64
	R8, R9, R10, R11, R12, R13, R14, R15 uint64
	// CR2 is the guest's CR2 under VT-x, which no VMCS field holds (SDM
	// Vol. 3C 25.4): a VM exit leaves it in the register, where any host
	// page fault before the next entry would overwrite it (the boot layer
	// backs memory on first touch), and a guest whose #PF handler had
	// not yet read it, or whose #PF delivery the exit interrupted, would
	// see a host address. vmexitEntry saves it before anything can fault
	// and vmentry loads it last. AMD-V keeps CR2 in the VMCB and ignores
	// this field.
	CR2 uint64
}

// Action is what the vCPU loop does after an exit was handled.
type Action int

// Actions.
const (
	// ActionResume re-enters the guest.
	ActionResume Action = iota
	// ActionStop ends the guest's run without error (it halted, or a
	// device ended the test).
	ActionStop
	// ActionPark: the vCPU halted with interrupts disabled and waits for
	// what can still wake it (NMI, INIT; SDM Vol. 3A 9.1, 11.6.1). A
	// Machine keeps its other vCPUs running and stops when every live
	// vCPU is parked (machine.go).
	ActionPark
)

func (a Action) String() string {
	switch a {
	case ActionResume:
		return "resume"
	case ActionStop:
		return "stop"
	case ActionPark:
		return "park"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Exit is the information of one VM exit, read from the VMCS (25.9).
type Exit struct {
	Reason        ExitReasonField
	Qualification uint64
	GuestPhysical uint64 // EPT violations and misconfigurations
	InstrLen      uint64 // VM-exit instruction length, for instruction exits
	RIP           uint64
}

// VCPU is the state the exit handlers act on.
type VCPU struct {
	Regs Regs
	VMCS VMCS
	Bus  *IOBus
	// CPUID runs CPUID on the host (cpu.CPUID on the hardware).
	CPUID func(leaf, subleaf uint32) (eax, ebx, ecx, edx uint32)
	// OnEPTViolation decides what an EPT violation does; nil stops the
	// guest with ErrEPTViolation.
	OnEPTViolation func(v *VCPU, gpa uint64, q EPTViolationQual) (Action, error)
	// OnPMLFull drains the page-modification log (ept.PMLSource.Drain).
	OnPMLFull func() error
	// Counts counts exits by basic reason.
	Counts [NumExitReasons]uint64

	// What a full guest needs; the test guest leaves them nil.

	// MSRs answers RDMSR and WRMSR exits (nil: they stop the guest).
	MSRs MSRHandler
	// MSRFaults counts MSR accesses answered with #GP.
	MSRFaults uint64
	// View is the guest's CPUID (nil: the host's, lightly edited).
	View *CPUIDView
	// APICID is this vCPU's local APIC ID, for CPUID.
	APICID uint32
	// XCR0 is the guest's XCR0 (XSETBV exits) and XCR0Allowed what it
	// may set (the components the entry path switches).
	XCR0, XCR0Allowed uint64
	// OnHalt sleeps a halted vCPU until an interrupt is due or it is
	// kicked; nil stops the guest at HLT.
	OnHalt func(v *VCPU) (Action, error)
	// Mem and MMIO serve MMIO emulation and string I/O.
	Mem  GuestMemory
	MMIO *MMIOBus
	// MMIOExits counts emulated MMIO accesses.
	MMIOExits uint64
	// TPR is the LAPIC's task priority, for MOV CR8 exits.
	TPR interface {
		TPR() uint8
		SetTPR(uint8)
	}
}

// MSRHandler answers a guest's RDMSR and WRMSR; an error wrapping
// ErrMSRFault becomes #GP(0) in the guest, any other stops it.
type MSRHandler interface {
	Read(msr uint32) (uint64, error)
	Write(msr uint32, v uint64) error
}

// Errors of exit handling; the messages wrap them with the details.
var (
	ErrUnhandledExit = errors.New("vmm: unhandled VM exit")
	ErrEntryFailed   = errors.New("vmm: VM entry failed")
	ErrTripleFault   = errors.New("vmm: guest triple fault")
	ErrEPTViolation  = errors.New("vmm: guest EPT violation")
	ErrEPTMisconfig  = errors.New("vmm: EPT misconfiguration")
	ErrUnsupported   = errors.New("vmm: unsupported guest operation")
)

// ExitHandler handles one basic exit reason.
type ExitHandler func(v *VCPU, e *Exit) (Action, error)

var exitHandlers [NumExitReasons]ExitHandler

func init() {
	exitHandlers = [NumExitReasons]ExitHandler{
		ExitExceptionOrNMI:    handleExceptionOrNMI,
		ExitExternalInterrupt: handleExternalInterrupt,
		ExitTripleFault:       handleTripleFault,
		ExitCPUID:             handleCPUID,
		ExitHLT:               handleHLT,
		ExitIOInstruction:     handleIO,
		ExitEPTViolation:      handleEPTViolation,
		ExitEPTMisconfig:      handleEPTMisconfig,
		ExitPMLFull:           handlePMLFull,
		ExitPreemptionTimer:   handlePreemptionTimer,
		ExitInterruptWindow:   handleInterruptWindow,
		ExitRDMSR:             handleRDMSR,
		ExitWRMSR:             handleWRMSR,
		ExitXSETBV:            handleXSETBV,
		ExitCRAccess:          handleCRAccess,
		ExitMWAIT:             handleUD,
		ExitMONITOR:           handleUD,
		ExitRDPMC:             handleGP,
	}
}

// Dispatch counts the exit and runs its handler.
func Dispatch(v *VCPU, e *Exit) (Action, error) {
	r := e.Reason.Basic()
	if int(r) < len(v.Counts) {
		v.Counts[r]++
	}
	if e.Reason.EntryFailure() {
		return ActionStop, fmt.Errorf("%w: %s (exit reason %#x, rip %#x)",
			ErrEntryFailed, EntryFailureDetail(r, e.Qualification), uint32(e.Reason), e.RIP)
	}
	if int(r) >= len(exitHandlers) || exitHandlers[r] == nil {
		return ActionStop, fmt.Errorf("%w: %v (reason %d, qualification %#x, rip %#x)",
			ErrUnhandledExit, r, uint16(r), e.Qualification, e.RIP)
	}
	return exitHandlers[r](v, e)
}

// skip advances the guest RIP past the exiting instruction.
func skip(v *VCPU, e *Exit) error {
	if err := v.VMCS.Write(GuestRIP, e.RIP+e.InstrLen); err != nil {
		return fmt.Errorf("vmm: advance rip: %w", err)
	}
	return nil
}

// handleExternalInterrupt resumes: without "acknowledge interrupt on exit"
// the interrupt stays pending and the host takes it when the vCPU loop
// enables interrupts again.
func handleExternalInterrupt(*VCPU, *Exit) (Action, error) { return ActionResume, nil }

// handleExceptionOrNMI resumes after a host NMI (a Kick, NMI exiting):
// the exit was all it was for. The exception bitmap is 0, so no guest
// exception exits; one would stop the guest as unhandled.
func handleExceptionOrNMI(v *VCPU, e *Exit) (Action, error) {
	info, err := v.VMCS.Read(VMExitInterruptionInfo)
	if err != nil {
		return ActionStop, fmt.Errorf("vmm: read exit interruption information: %w", err)
	}
	if info&IntInfoValid != 0 && info&intTypeMask == IntTypeNMI {
		return ActionResume, nil
	}
	return ActionStop, fmt.Errorf("%w: exception or NMI, interruption information %#x (rip %#x)",
		ErrUnhandledExit, info, e.RIP)
}

// TripleFaultError is the error of a guest that shut down: an exception
// while delivering a double fault (SDM Vol. 3A 7.15) is a triple-fault VM
// exit (Vol. 3C 26.2). errors.Is(err, ErrTripleFault) holds.
type TripleFaultError struct{ RIP uint64 }

func (e *TripleFaultError) Error() string {
	return fmt.Sprintf("%v at rip=%#x", ErrTripleFault, e.RIP)
}

// Is reports whether target is ErrTripleFault.
func (e *TripleFaultError) Is(target error) bool { return target == ErrTripleFault }

// handlePreemptionTimer resumes: the exit only gave the host its CPU (and
// any pending interrupt) back; the next entry reloads the timer.
func handlePreemptionTimer(*VCPU, *Exit) (Action, error) { return ActionResume, nil }

// handleUD answers an instruction doppel hides (MONITOR, MWAIT: CPUID
// says they are absent) with #UD, as the CPU would.
func handleUD(v *VCPU, _ *Exit) (Action, error) {
	return ActionResume, InjectException(v.VMCS, VectorUD, false, 0)
}

// handleGP answers RDPMC (no performance counters offered) with #GP(0).
func handleGP(v *VCPU, _ *Exit) (Action, error) {
	return ActionResume, InjectException(v.VMCS, VectorGP, true, 0)
}

// handleTripleFault stops the guest: a shut-down guest cannot go on, but
// the host can (doppel reports it and keeps running).
func handleTripleFault(_ *VCPU, e *Exit) (Action, error) {
	return ActionStop, &TripleFaultError{RIP: e.RIP}
}

// HypervisorSignature is what CPUID leaf 0x40000000 returns in EBX, ECX,
// EDX: the hypervisor vendor the guest sees.
const HypervisorSignature = "doppel-ft-hv"

// handleCPUID runs CPUID on the host and edits the answer: leaf 1 reports a
// hypervisor (ECX bit 31) and no VMX (ECX bit 5); leaf 0x40000000 names doppel.
func handleCPUID(v *VCPU, e *Exit) (Action, error) {
	leaf, sub := uint32(v.Regs.RAX), uint32(v.Regs.RCX)
	var a, b, c, d uint32
	switch {
	case v.View != nil:
		cr4, err := v.VMCS.Read(GuestCR4)
		if err != nil {
			return ActionStop, err
		}
		a, b, c, d = v.View.Query(v.APICID, cr4, v.XCR0, leaf, sub)
	case leaf == 0x4000_0000:
		s := []byte(HypervisorSignature)
		a = 0x4000_0000
		b = le32(s[0:4])
		c = le32(s[4:8])
		d = le32(s[8:12])
	case leaf > 0x4000_0000 && leaf < 0x4000_0100:
		// No further hypervisor leaves.
	default:
		a, b, c, d = v.CPUID(leaf, sub)
		if leaf == 1 {
			c = c&^(1<<CPUID01_ECX_VMX) | 1<<CPUID01_ECX_Hypervisor
		}
	}
	v.Regs.RAX, v.Regs.RBX, v.Regs.RCX, v.Regs.RDX = uint64(a), uint64(b), uint64(c), uint64(d)
	return ActionResume, skip(v, e)
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// handleHLT moves past the HLT and sleeps in v.OnHalt until an interrupt
// is due; without OnHalt (the test guest) a halted guest stops.
func handleHLT(v *VCPU, e *Exit) (Action, error) {
	if err := skip(v, e); err != nil {
		return ActionStop, err
	}
	if v.OnHalt == nil {
		return ActionStop, nil
	}
	return v.OnHalt(v)
}

// handleIO emulates IN and OUT on the bus; string forms in stringio.go.
func handleIO(v *VCPU, e *Exit) (Action, error) {
	q := IOQual(e.Qualification)
	if q.StringOp() {
		return handleStringIO(v, e)
	}
	size := q.Size()
	if q.In() {
		val := uint64(v.Bus.In(q.Port(), size))
		switch size {
		case 4: // a 32-bit destination zero-extends into RAX
			v.Regs.RAX = val
		default:
			mask := uint64(1)<<(8*size) - 1
			v.Regs.RAX = v.Regs.RAX&^mask | val
		}
	} else {
		v.Bus.Out(q.Port(), size, uint32(v.Regs.RAX))
	}
	return ActionResume, skip(v, e)
}

func handleEPTViolation(v *VCPU, e *Exit) (Action, error) {
	q := EPTViolationQual(e.Qualification)
	if v.MMIO != nil && v.MMIO.Claimed(e.GuestPhysical) {
		return HandleMMIO(v, e)
	}
	if v.OnEPTViolation != nil {
		return v.OnEPTViolation(v, e.GuestPhysical, q)
	}
	return ActionStop, fmt.Errorf("%w: gpa %#x, %v, rip %#x", ErrEPTViolation, e.GuestPhysical, q, e.RIP)
}

func handleEPTMisconfig(_ *VCPU, e *Exit) (Action, error) {
	return ActionStop, fmt.Errorf("%w at gpa %#x, rip %#x", ErrEPTMisconfig, e.GuestPhysical, e.RIP)
}

// handlePMLFull drains the log; the logging write is retried on resume.
func handlePMLFull(v *VCPU, _ *Exit) (Action, error) {
	if v.OnPMLFull == nil {
		return ActionStop, fmt.Errorf("%w: PML full without a PML consumer", ErrUnhandledExit)
	}
	if err := v.OnPMLFull(); err != nil {
		return ActionStop, fmt.Errorf("vmm: pml full: %w", err)
	}
	return ActionResume, nil
}
