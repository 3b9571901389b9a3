package vmm

import (
	"fmt"
	"math/bits"
	"strings"
)

// Control words are masks rather than bit positions: they are only ever
// or'ed together into a VMCS field and checked against capability MSRs.

// Pin-based VM-execution controls, SDM Vol. 3C 25.6.1, table 25-5.
const (
	PinExternalInterruptExiting = 1 << 0
	PinNMIExiting               = 1 << 3
	PinVirtualNMIs              = 1 << 5
	PinActivatePreemptionTimer  = 1 << 6
	PinProcessPostedInterrupts  = 1 << 7
)

// Primary processor-based VM-execution controls, 25.6.2, table 25-6.
const (
	ProcInterruptWindowExiting = 1 << 2
	ProcUseTSCOffsetting       = 1 << 3
	ProcHLTExiting             = 1 << 7
	ProcINVLPGExiting          = 1 << 9
	ProcMWAITExiting           = 1 << 10
	ProcRDPMCExiting           = 1 << 11
	ProcRDTSCExiting           = 1 << 12
	ProcCR3LoadExiting         = 1 << 15
	ProcCR3StoreExiting        = 1 << 16
	ProcActivateTertiary       = 1 << 17
	ProcCR8LoadExiting         = 1 << 19
	ProcCR8StoreExiting        = 1 << 20
	ProcUseTPRShadow           = 1 << 21
	ProcNMIWindowExiting       = 1 << 22
	ProcMOVDRExiting           = 1 << 23
	ProcUnconditionalIOExiting = 1 << 24
	ProcUseIOBitmaps           = 1 << 25
	ProcMonitorTrapFlag        = 1 << 27
	ProcUseMSRBitmaps          = 1 << 28
	ProcMONITORExiting         = 1 << 29
	ProcPAUSEExiting           = 1 << 30
	ProcActivateSecondary      = 1 << 31
)

// Secondary processor-based VM-execution controls, 25.6.2, table 25-7.
const (
	Proc2VirtualizeAPICAccesses     = 1 << 0
	Proc2EnableEPT                  = 1 << 1
	Proc2DescriptorTableExiting     = 1 << 2
	Proc2EnableRDTSCP               = 1 << 3
	Proc2VirtualizeX2APIC           = 1 << 4
	Proc2EnableVPID                 = 1 << 5
	Proc2WBINVDExiting              = 1 << 6
	Proc2UnrestrictedGuest          = 1 << 7
	Proc2APICRegisterVirtualization = 1 << 8
	Proc2VirtualInterruptDelivery   = 1 << 9
	Proc2PAUSELoopExiting           = 1 << 10
	Proc2RDRANDExiting              = 1 << 11
	Proc2EnableINVPCID              = 1 << 12
	Proc2EnableVMFunctions          = 1 << 13
	Proc2VMCSShadowing              = 1 << 14
	Proc2ENCLSExiting               = 1 << 15
	Proc2RDSEEDExiting              = 1 << 16
	Proc2EnablePML                  = 1 << 17
	Proc2EPTViolationVE             = 1 << 18
	Proc2ConcealVMXFromPT           = 1 << 19
	Proc2EnableXSAVES               = 1 << 20
	Proc2ModeBasedExecuteEPT        = 1 << 22
	Proc2SubPageWritePermissions    = 1 << 23
	Proc2PTUsesGuestPhysical        = 1 << 24
	Proc2UseTSCScaling              = 1 << 25
	Proc2EnableUserWaitPause        = 1 << 26
	Proc2EnableENCLVExiting         = 1 << 28
)

// VM-exit controls, 25.7.1, table 25-13.
const (
	ExitSaveDebugControls      = 1 << 2
	ExitHostAddressSpaceSize   = 1 << 9
	ExitLoadIA32PerfGlobalCtrl = 1 << 12
	ExitAcknowledgeInterrupt   = 1 << 15
	ExitSaveIA32PAT            = 1 << 18
	ExitLoadIA32PAT            = 1 << 19
	ExitSaveIA32EFER           = 1 << 20
	ExitLoadIA32EFER           = 1 << 21
	ExitSavePreemptionTimer    = 1 << 22
	ExitClearIA32BNDCFGS       = 1 << 23
	ExitConcealVMXFromPT       = 1 << 24
)

// VM-entry controls, 25.8.1, table 25-15.
const (
	EntryLoadDebugControls      = 1 << 2
	EntryIA32eModeGuest         = 1 << 9
	EntryToSMM                  = 1 << 10
	EntryDeactivateDualMonitor  = 1 << 11
	EntryLoadIA32PerfGlobalCtrl = 1 << 13
	EntryLoadIA32PAT            = 1 << 14
	EntryLoadIA32EFER           = 1 << 15
	EntryLoadIA32BNDCFGS        = 1 << 16
	EntryConcealVMXFromPT       = 1 << 17
)

// ControlGroup names one VMCS control word, for messages and for picking
// the capability MSR that governs it.
type ControlGroup int

// The control words.
const (
	PinBased ControlGroup = iota
	ProcBased
	ProcBased2
	VMExit
	VMEntry
)

var groupNames = [...]string{"pin-based", "primary processor-based", "secondary processor-based", "VM-exit", "VM-entry"}

var controlNames = [...][32]string{
	PinBased:   {0: "external-interrupt exiting", 3: "NMI exiting", 5: "virtual NMIs", 6: "VMX-preemption timer", 7: "posted interrupts"},
	ProcBased:  {2: "interrupt-window exiting", 3: "TSC offsetting", 7: "HLT exiting", 9: "INVLPG exiting", 10: "MWAIT exiting", 11: "RDPMC exiting", 12: "RDTSC exiting", 15: "CR3-load exiting", 16: "CR3-store exiting", 17: "tertiary controls", 19: "CR8-load exiting", 20: "CR8-store exiting", 21: "TPR shadow", 22: "NMI-window exiting", 23: "MOV-DR exiting", 24: "unconditional I/O exiting", 25: "I/O bitmaps", 27: "monitor trap flag", 28: "MSR bitmaps", 29: "MONITOR exiting", 30: "PAUSE exiting", 31: "secondary controls"},
	ProcBased2: {0: "virtualize APIC accesses", 1: "enable EPT", 2: "descriptor-table exiting", 3: "enable RDTSCP", 4: "virtualize x2APIC mode", 5: "enable VPID", 6: "WBINVD exiting", 7: "unrestricted guest", 8: "APIC-register virtualization", 9: "virtual-interrupt delivery", 10: "PAUSE-loop exiting", 11: "RDRAND exiting", 12: "enable INVPCID", 13: "enable VM functions", 14: "VMCS shadowing", 15: "ENCLS exiting", 16: "RDSEED exiting", 17: "enable PML", 18: "EPT-violation #VE", 19: "conceal VMX from PT", 20: "enable XSAVES/XRSTORS", 22: "mode-based execute control for EPT", 23: "sub-page write permissions", 24: "PT uses guest-physical addresses", 25: "TSC scaling", 26: "user wait and pause", 28: "ENCLV exiting"},
	VMExit:     {2: "save debug controls", 9: "host address-space size", 12: "load IA32_PERF_GLOBAL_CTRL", 15: "acknowledge interrupt on exit", 18: "save IA32_PAT", 19: "load IA32_PAT", 20: "save IA32_EFER", 21: "load IA32_EFER", 22: "save VMX-preemption timer value", 23: "clear IA32_BNDCFGS", 24: "conceal VMX from PT"},
	VMEntry:    {2: "load debug controls", 9: "IA-32e mode guest", 10: "entry to SMM", 11: "deactivate dual-monitor treatment", 13: "load IA32_PERF_GLOBAL_CTRL", 14: "load IA32_PAT", 15: "load IA32_EFER", 16: "load IA32_BNDCFGS", 17: "conceal VMX from PT"},
}

func (g ControlGroup) String() string {
	if g < 0 || int(g) >= len(groupNames) {
		return fmt.Sprintf("ControlGroup(%d)", int(g))
	}
	return groupNames[g]
}

// ControlNames returns the names of the bits set in word, for group g.
func ControlNames(g ControlGroup, word uint32) string {
	var s []string
	for w := word; w != 0; w &= w - 1 {
		b := bits.TrailingZeros32(w)
		name := ""
		if g >= 0 && int(g) < len(controlNames) {
			name = controlNames[g][b]
		}
		if name == "" {
			name = fmt.Sprintf("bit %d", b)
		}
		s = append(s, name)
	}
	return strings.Join(s, ", ")
}

// AdjustControls fits a control word to a capability MSR value (SDM Vol.
// 3C App. A.3-A.5): bits 31:0 are the allowed 0-settings (a 1 there forces
// the control to 1), bits 63:32 the allowed 1-settings (a 0 there forces it
// to 0). Desired controls the CPU lacks are dropped silently unless they are
// also in required, in which case the error names them.
func AdjustControls(g ControlGroup, desired, required uint32, capMSR uint64) (uint32, error) {
	must1, may1 := uint32(capMSR), uint32(capMSR>>32)
	if missing := required &^ may1; missing != 0 {
		return 0, fmt.Errorf("vmm: the CPU lacks required %s controls: %s", g, ControlNames(g, missing))
	}
	return (desired|required|must1)&may1 | must1, nil
}
