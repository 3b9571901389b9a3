package svm

import (
	"fmt"

	"github.com/doppel-ft/doppel/vmm"
)

// vmcsView presents a VMCB as a vmm.VMCS, so that vmm's vendor-neutral
// exit handlers (CPUID view, MSR file, MMIO and string-I/O emulation, the
// interrupt Injector, XSETBV) run unchanged on SVM: each VMCS field they
// use maps to its VMCB counterpart (APM Vol. 2 App. B table B-1 control
// area, B-2 state save area).
//
// Mappings that are not one-to-one:
//   - segment access rights: VMX keeps descriptor bits 40-47 and 52-55 in
//     bits 0-7 and 12-15 (SDM Vol. 3C 25.4.1), the VMCB in bits 0-7 and
//     8-11 (15.5.1); bit 16 "unusable" is a non-present VMCB segment;
//   - EFER: the guest never sees SVME (15.4; VMRUN requires it set);
//   - VMEntryInterruptionInfo and its error code are EVENTINJ's low and
//     high halves (15.20: vector 7:0, TYPE 10:8, EV 11, V 31, ERRORCODE
//     63:32; the types INTR 0, NMI 2, exception 3, soft INT 4 are VMX's);
//   - IDTVectoringInfo and its error code are EXITINTINFO's (15.7.2);
//   - GuestInterruptibilityState bit 0 (blocking by STI or MOV SS) is
//     INTERRUPT_SHADOW bit 0 (App. B, offset 0x68);
//   - ProcBasedControls' interrupt-window exiting is V_IRQ with the VINTR
//     intercept (15.21.4): the guest exits as soon as it could take a
//     virtual interrupt;
//   - the exit's instruction length and instruction information come
//     from decoding (decode.go), set per exit by PCCPU;
//   - CR0 and CR4 read shadows read the VMCB's CR0 and CR4 and ignore
//     writes, and CR4.VMXE is dropped (see Write): so a VT-x state
//     restores here with the guest's own control registers;
//   - VMEntryControls reads "IA-32e mode guest" from EFER.LMA; the PAE
//     PDPTEs, activity state and pending debug exceptions have no VMCB
//     home and read as last written (0 at first), so that vmm's saved
//     vCPU state (vmm.SaveVCPUState) is the same encoding on both
//     vendors.
type vmcsView struct {
	v VMCB
	// proc is ProcBasedControls as last written (only interrupt-window
	// exiting means anything here).
	proc uint64
	// instrLen and instrInfo describe the current exit.
	instrLen, instrInfo uint64
	// other keeps VMX-only fields written by shared code (activity
	// state, pending debug exceptions, entry instruction length).
	other map[vmm.Field]uint64
}

// V_IRQ (bit 8) and V_IGN_TPR (bit 20) of VIntr (App. B offset 0x60), the
// VINTR intercept (InterceptMisc1 bit 4, table B-1) and the interrupt
// shadow bit (offset 0x68 bit 0).
const (
	VIntrVIRQ        = 1 << 8
	VIntrVIgnTPR     = 1 << 20
	InterceptVINTR   = 1 << 4
	InterruptShadow0 = 1 << 0
	// EVENTINJ/EXITINTINFO valid (V, bit 31) and error-code-valid (EV,
	// bit 11), 15.20.
	EventInjValid = 1 << 31
	EventInjEV    = 1 << 11
)

// vmxOnly are VMX guest-state fields with no VMCB counterpart that
// vendor-neutral code reads (the saved vCPU state): they read as last
// written, 0 before. The PAE PDPTEs: with nested paging the CPU reads
// them from guest memory at each use (15.25.9), so they need no home.
var vmxOnly = map[vmm.Field]bool{
	vmm.GuestActivityState: true, vmm.GuestPendingDebugExceptions: true, vmm.VMEntryInstructionLength: true,
	vmm.GuestPDPTE0: true, vmm.GuestPDPTE1: true, vmm.GuestPDPTE2: true, vmm.GuestPDPTE3: true,
}

type segFields struct {
	sel, base, limit, ar vmm.Field
	off                  int
}

var viewSegs = []segFields{
	{vmm.GuestESSelector, vmm.GuestESBase, vmm.GuestESLimit, vmm.GuestESAccessRights, SaveES},
	{vmm.GuestCSSelector, vmm.GuestCSBase, vmm.GuestCSLimit, vmm.GuestCSAccessRights, SaveCS},
	{vmm.GuestSSSelector, vmm.GuestSSBase, vmm.GuestSSLimit, vmm.GuestSSAccessRights, SaveSS},
	{vmm.GuestDSSelector, vmm.GuestDSBase, vmm.GuestDSLimit, vmm.GuestDSAccessRights, SaveDS},
	{vmm.GuestFSSelector, vmm.GuestFSBase, vmm.GuestFSLimit, vmm.GuestFSAccessRights, SaveFS},
	{vmm.GuestGSSelector, vmm.GuestGSBase, vmm.GuestGSLimit, vmm.GuestGSAccessRights, SaveGS},
	{vmm.GuestLDTRSelector, vmm.GuestLDTRBase, vmm.GuestLDTRLimit, vmm.GuestLDTRAccessRights, SaveLDTR},
	{vmm.GuestTRSelector, vmm.GuestTRBase, vmm.GuestTRLimit, vmm.GuestTRAccessRights, SaveTR},
}

// plain64 are the fields that are one VMCB quadword each.
var plain64 = map[vmm.Field]int{
	vmm.GuestRIP: SaveRIP, vmm.GuestRSP: SaveRSP, vmm.GuestRFLAGS: SaveRFLAGS,
	vmm.GuestCR0: SaveCR0, vmm.GuestCR3: SaveCR3, vmm.GuestCR4: SaveCR4,
	vmm.CR0ReadShadow: SaveCR0, vmm.CR4ReadShadow: SaveCR4,
	vmm.GuestDR7: SaveDR7, vmm.GuestIA32PAT: SaveGPAT, vmm.GuestIA32Debugctl: SaveDBGCTL,
	vmm.GuestIA32SysenterCS: SaveSysenterCS, vmm.GuestIA32SysenterESP: SaveSysenterESP,
	vmm.GuestIA32SysenterEIP: SaveSysenterEIP, vmm.TSCOffset: TSCOffset,
	vmm.GuestGDTRBase: SaveGDTR + segBase, vmm.GuestIDTRBase: SaveIDTR + segBase,
}

// arToAttrib and attribToAR convert segment attributes (see vmcsView).
func arToAttrib(ar uint64) uint16 {
	if ar&(1<<16) != 0 {
		return 0
	}
	return uint16(ar&0xFF | ar>>4&0xF00)
}

func attribToAR(a uint16) uint64 {
	if a&AttrP == 0 {
		return 1 << 16
	}
	return uint64(a&0xFF) | uint64(a&0xF00)<<4
}

// Read implements vmm.VMCS.
func (w *vmcsView) Read(f vmm.Field) (uint64, error) {
	v := w.v
	if off, ok := plain64[f]; ok {
		return v.Get64(off), nil
	}
	for _, s := range viewSegs {
		switch f {
		case s.sel:
			return uint64(v.Get16(s.off + segSelector)), nil
		case s.base:
			return v.Get64(s.off + segBase), nil
		case s.limit:
			return uint64(v.Get32(s.off + segLimit)), nil
		case s.ar:
			return attribToAR(v.Get16(s.off + segAttrib)), nil
		}
	}
	switch f {
	case vmm.GuestIA32EFER:
		return v.Get64(SaveEFER) &^ EFER_SVME, nil
	case vmm.GuestGDTRLimit:
		return uint64(v.Get32(SaveGDTR + segLimit)), nil
	case vmm.GuestIDTRLimit:
		return uint64(v.Get32(SaveIDTR + segLimit)), nil
	case vmm.GuestInterruptibilityState:
		return v.Get64(InterruptShadow) & InterruptShadow0, nil
	case vmm.VMEntryInterruptionInfo:
		return v.Get64(EventInj) & 0xFFFF_FFFF, nil
	case vmm.VMEntryExceptionErrorCode:
		return v.Get64(EventInj) >> 32, nil
	case vmm.IDTVectoringInfo:
		return v.Get64(ExitIntInfo) & 0xFFFF_FFFF, nil
	case vmm.IDTVectoringErrorCode:
		return v.Get64(ExitIntInfo) >> 32, nil
	case vmm.ProcBasedControls:
		return w.proc, nil
	case vmm.VMExitInstructionLength:
		return w.instrLen, nil
	case vmm.VMExitInstructionInfo:
		return w.instrInfo, nil
	case vmm.VMEntryControls:
		// Only "IA-32e mode guest" is guest state; SVM has it as
		// EFER.LMA (15.5.1 loads EFER as is).
		if v.Get64(SaveEFER)&EFER_LMA != 0 {
			return vmm.EntryIA32eModeGuest, nil
		}
		return 0, nil
	}
	if x, ok := w.other[f]; ok {
		return x, nil
	}
	if vmxOnly[f] {
		return 0, nil
	}
	return 0, fmt.Errorf("svm: VMCS field %#x has no VMCB counterpart", uint32(f))
}

// Write implements vmm.VMCS.
func (w *vmcsView) Write(f vmm.Field, x uint64) error {
	v := w.v
	switch f {
	case vmm.CR0ReadShadow, vmm.CR4ReadShadow:
		// VT-x's guest/host masks are CR0: none, CR4: VMXE (vmm's
		// controls), so the guest's own values are GuestCR0 and GuestCR4
		// without VMXE; a shadow in a VT-x state may be stale.
		return nil
	case vmm.GuestCR4:
		// VMXE is VT-x's (required in VMX operation, hidden by the
		// shadow) and reserved on AMD: VMRUN would fail (15.5.1).
		v.Set64(SaveCR4, x&^vmm.CR4_VMXE)
		return nil
	}
	if off, ok := plain64[f]; ok {
		v.Set64(off, x)
		return nil
	}
	for _, s := range viewSegs {
		switch f {
		case s.sel:
			v.Set16(s.off+segSelector, uint16(x))
			return nil
		case s.base:
			v.Set64(s.off+segBase, x)
			return nil
		case s.limit:
			v.Set32(s.off+segLimit, uint32(x))
			return nil
		case s.ar:
			v.Set16(s.off+segAttrib, arToAttrib(x))
			return nil
		}
	}
	switch f {
	case vmm.GuestIA32EFER:
		v.Set64(SaveEFER, x|EFER_SVME)
	case vmm.GuestGDTRLimit:
		v.Set32(SaveGDTR+segLimit, uint32(x))
	case vmm.GuestIDTRLimit:
		v.Set32(SaveIDTR+segLimit, uint32(x))
	case vmm.GuestInterruptibilityState:
		sh := v.Get64(InterruptShadow) &^ InterruptShadow0
		if x&(vmm.BlockingBySTI|vmm.BlockingByMOVSS) != 0 {
			sh |= InterruptShadow0
		}
		v.Set64(InterruptShadow, sh)
	case vmm.VMEntryInterruptionInfo:
		v.Set64(EventInj, v.Get64(EventInj)&^0xFFFF_FFFF|x&0xFFFF_FFFF)
	case vmm.VMEntryExceptionErrorCode:
		v.Set64(EventInj, v.Get64(EventInj)&0xFFFF_FFFF|x<<32)
	case vmm.ProcBasedControls:
		w.proc = x
		if x&vmm.ProcInterruptWindowExiting != 0 {
			v.Set64(VIntr, v.Get64(VIntr)|VIntrVIRQ|VIntrVIgnTPR)
			v.SetBits32(InterceptMisc1, InterceptVINTR)
		} else {
			v.Set64(VIntr, v.Get64(VIntr)&^(VIntrVIRQ|VIntrVIgnTPR))
			v.Set32(InterceptMisc1, v.Get32(InterceptMisc1)&^InterceptVINTR)
		}
	case vmm.VMEntryControls:
		// EFER.LMA carries IA-32e mode; the other controls are doppel's.
	case vmm.GuestActivityState, vmm.GuestPendingDebugExceptions, vmm.VMEntryInstructionLength,
		vmm.GuestPDPTE0, vmm.GuestPDPTE1, vmm.GuestPDPTE2, vmm.GuestPDPTE3:
		if w.other == nil {
			w.other = map[vmm.Field]uint64{}
		}
		w.other[f] = x
	default:
		return fmt.Errorf("svm: VMCS field %#x has no VMCB counterpart", uint32(f))
	}
	return nil
}
