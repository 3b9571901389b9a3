package svm

import (
	"fmt"

	"github.com/doppel-ft/doppel/cpu"
	"github.com/doppel-ft/doppel/vmm"
)

// This file drives the hardware: it runs only in ring 0 under the boot
// layer, on one thread pinned with vmm.PinThread (SVM state, EFER.SVME and
// VM_HSAVE_PA, is per CPU).

// ProbeCaps reads the SVM capabilities of the CPU the thread runs on.
func ProbeCaps() Caps { return ReadCaps(cpu.CPUID, cpu.RDMSR) }

// Frames is where SVM structures come from: zeroed 4 KiB frames outside
// the Go heap (ept.Region) and their mapping.
type Frames interface {
	AllocTable() (uint64, error)
	Table(pa uint64) *[512]uint64
}

// SVM is SVM operation on one CPU.
type SVM struct {
	Caps     Caps
	Features Features
	hsavePA  uint64 // VM_HSAVE_PA: VMRUN's host save area
	hostPA   uint64 // VMSAVE/VMLOAD area for the host's FS, GS, TR...
	frames   Frames
	nextASID uint32
}

// Enable turns SVM on for this CPU (APM Vol. 2 15.4): checks the
// features, sets EFER.SVME and points VM_HSAVE_PA at a fresh page.
func Enable(caps Caps, frames Frames) (*SVM, error) {
	f := caps.Features()
	if err := f.Usable(); err != nil {
		return nil, err
	}
	s := &SVM{Caps: caps, Features: f, frames: frames, nextASID: 1}
	var err error
	if s.hsavePA, err = frames.AllocTable(); err != nil {
		return nil, fmt.Errorf("svm: host save area: %w", err)
	}
	if s.hostPA, err = frames.AllocTable(); err != nil {
		return nil, fmt.Errorf("svm: host VMSAVE area: %w", err)
	}
	cpu.WRMSR(MSR_EFER, cpu.RDMSR(MSR_EFER)|EFER_SVME)
	cpu.WRMSR(MSR_VM_HSAVE_PA, s.hsavePA)
	return s, nil
}

// Disable clears EFER.SVME.
func (s *SVM) Disable() {
	cpu.WRMSR(MSR_VM_HSAVE_PA, 0)
	cpu.WRMSR(MSR_EFER, cpu.RDMSR(MSR_EFER)&^EFER_SVME)
}

// HostNXE reports whether the host runs with EFER.NXE: nested NX bits are
// valid only then.
func HostNXE() bool { return cpu.RDMSR(MSR_EFER)&EFER_NXE != 0 }

// EFER_NXE (bit 11), AMD APM Vol. 2 3.1.7.
const EFER_NXE = 1 << 11

// allocContig allocates n frames that are physically contiguous and
// returns the lowest, filled with fill. The region hands out table frames
// top down, so consecutive fresh frames are adjacent.
func (s *SVM) allocContig(n int, fill uint64) (uint64, error) {
	pas := make([]uint64, n)
	for i := range pas {
		pa, err := s.frames.AllocTable()
		if err != nil {
			return 0, err
		}
		pas[i] = pa
	}
	lo := pas[0]
	for _, pa := range pas {
		lo = min(lo, pa)
	}
	for _, pa := range pas {
		if pa >= lo+uint64(n)*4096 {
			return 0, fmt.Errorf("svm: %d frames not contiguous (%#x)", n, pas)
		}
	}
	for i := range n {
		t := s.frames.Table(lo + uint64(i)*4096)
		for j := range t {
			t[j] = fill
		}
	}
	return lo, nil
}

// HWVCPU is a vCPU on this CPU: its VMCB and permission maps.
type HWVCPU struct {
	s      *SVM
	vmcbPA uint64
	VMCB   VMCB
	ASID   uint32
	flush  bool // flush this ASID's TLB at the next VMRUN
}

// NewVCPU allocates a VMCB, an IOPM and an MSRPM intercepting everything,
// takes the next ASID and sets up the guest's start state.
func (s *SVM) NewVCPU(c GuestConfig) (*HWVCPU, error) {
	if s.nextASID >= s.Features.NASID {
		return nil, fmt.Errorf("svm: out of ASIDs (%d)", s.Features.NASID)
	}
	// The first VMRUN flushes the ASID: every SVM on a CPU hands out ASIDs
	// from 1, so a vCPU of an earlier VM (the restore test) may have left
	// translations tagged with this one, of other tables (15.16.1).
	h := &HWVCPU{s: s, ASID: s.nextASID, flush: true}
	s.nextASID++
	var err error
	if h.vmcbPA, err = s.frames.AllocTable(); err != nil {
		return nil, fmt.Errorf("svm: VMCB: %w", err)
	}
	h.VMCB = NewVMCB(s.frames.Table(h.vmcbPA))
	if c.IOPM, err = s.allocContig(IOPMSize/4096, ^uint64(0)); err != nil {
		return nil, fmt.Errorf("svm: IOPM: %w", err)
	}
	if c.MSRPM, err = s.allocContig(MSRPMSize/4096, ^uint64(0)); err != nil {
		return nil, fmt.Errorf("svm: MSRPM: %w", err)
	}
	c.ASID = h.ASID
	return h, h.VMCB.SetupGuest(c)
}

// InvalidateSingleContext implements ept.Invalidator: nested translations
// of this guest are flushed at its next VMRUN (TLB_CONTROL, 15.16.1).
// doppel changes or harvests the tables only while the vCPU is out of the
// guest, so that is soon enough.
func (h *HWVCPU) InvalidateSingleContext(uint64) error {
	h.flush = true
	return nil
}

// Run enters the guest and handles its exits until a handler stops it.
// v.VMCB must be h.VMCB. It runs on the thread and CPU that made h.
func (h *HWVCPU) Run(v *VCPU) error {
	for {
		e := h.enter(v)
		act, err := Dispatch(v, &e)
		if err != nil {
			return err
		}
		if act == vmm.ActionStop {
			return nil
		}
	}
}

// enter runs the guest until its next #VMEXIT and returns the exit,
// flushing the ASID's translations first if the tables changed.
func (h *HWVCPU) enter(v *VCPU) Exit { return h.enterFX(v, nil) }

// enterFX is enter switching the guest's x87/SSE state with fx (nil: none).
func (h *HWVCPU) enterFX(v *VCPU, fx *vmm.FXState) Exit {
	tlb := uint8(TLBControlNone)
	if h.flush {
		tlb = TLBControlFlushAll
		if h.s != nil && h.s.Features.FlushByAsid {
			tlb = TLBControlFlushASD
		}
		h.flush = false
	}
	v.VMCB.Set8(TLBControl, tlb)
	v.VMCB.Set64(SaveRAX, v.Regs.RAX)
	svmrun(h.vmcbPA, h.s.hostPA, &v.Regs, fx)
	v.Regs.RAX = v.VMCB.Get64(SaveRAX)
	return v.VMCB.ReadExit()
}
