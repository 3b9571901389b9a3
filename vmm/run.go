package vmm

import "fmt"

// Run enters the guest and handles its exits until a handler stops it or
// an entry fails. v.VMCS should be h.VMCS. It must run on the thread (and
// CPU) that created h.
func (h *HWVCPU) Run(v *VCPU) error {
	for {
		act, err := h.Step(v)
		if err != nil {
			return err
		}
		if act == ActionStop {
			return nil
		}
	}
}

// Step enters the guest once and handles the exit: one iteration of Run,
// for a vCPU loop that checks a run state between entries (a Machine's).
func (h *HWVCPU) Step(v *VCPU) (Action, error) {
	if res := vmentry(&v.Regs, h.launched, nil); res != 0 {
		return ActionStop, fmt.Errorf("%w: %v (controls pin %#x proc %#x proc2 %#x exit %#x entry %#x)",
			ErrEntryFailed, h.entryError(res), h.Pin, h.Proc, h.Proc2, h.ExitCtl, h.EntryCtl)
	}
	h.launched = true
	e, err := h.readExit()
	if err != nil {
		return ActionStop, err
	}
	return Dispatch(v, &e)
}

func (h *HWVCPU) entryError(res uint8) error {
	op := "vmresume"
	if !h.launched {
		op = "vmlaunch"
	}
	return vmxError(op, res)
}

// readExit reads the exit information fields (25.9).
func (h *HWVCPU) readExit() (Exit, error) {
	var e Exit
	var vals [5]uint64
	for i, f := range []Field{ExitReason, ExitQualification, GuestPhysicalAddress, VMExitInstructionLength, GuestRIP} {
		v, err := h.VMCS.Read(f)
		if err != nil {
			return e, fmt.Errorf("vmm: read exit information: %w", err)
		}
		vals[i] = v
	}
	e.Reason = ExitReasonField(vals[0])
	e.Qualification, e.GuestPhysical, e.InstrLen, e.RIP = vals[1], vals[2], vals[3], vals[4]
	return e, nil
}
