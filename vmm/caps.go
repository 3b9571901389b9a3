package vmm

import "fmt"

// Model-specific registers of VMX, SDM Vol. 4 table 2-2 and Vol. 3C App. A.
const (
	IA32_FEATURE_CONTROL         = 0x3A
	IA32_VMX_BASIC               = 0x480
	IA32_VMX_PINBASED_CTLS       = 0x481
	IA32_VMX_PROCBASED_CTLS      = 0x482
	IA32_VMX_EXIT_CTLS           = 0x483
	IA32_VMX_ENTRY_CTLS          = 0x484
	IA32_VMX_MISC                = 0x485
	IA32_VMX_CR0_FIXED0          = 0x486
	IA32_VMX_CR0_FIXED1          = 0x487
	IA32_VMX_CR4_FIXED0          = 0x488
	IA32_VMX_CR4_FIXED1          = 0x489
	IA32_VMX_VMCS_ENUM           = 0x48A
	IA32_VMX_PROCBASED_CTLS2     = 0x48B
	IA32_VMX_EPT_VPID_CAP        = 0x48C
	IA32_VMX_TRUE_PINBASED_CTLS  = 0x48D
	IA32_VMX_TRUE_PROCBASED_CTLS = 0x48E
	IA32_VMX_TRUE_EXIT_CTLS      = 0x48F
	IA32_VMX_TRUE_ENTRY_CTLS     = 0x490
	IA32_VMX_VMFUNC              = 0x491
)

// IA32_FEATURE_CONTROL bits, SDM Vol. 3C 24.7.
const (
	FeatureControlLock          = 1 << 0
	FeatureControlVMXInSMX      = 1 << 1
	FeatureControlVMXOutsideSMX = 1 << 2
)

// IA32_VMX_BASIC fields, App. A.1.
const (
	BasicRevisionMask    = 0x7FFF_FFFF
	BasicRegionSizeShift = 32
	BasicRegionSizeMask  = 0x1FFF << BasicRegionSizeShift
	BasicMemTypeShift    = 50
	BasicMemTypeMask     = 0xF << BasicMemTypeShift
	BasicINSOUTSInfo     = 1 << 54
	BasicTrueControls    = 1 << 55
)

// IA32_VMX_MISC fields, App. A.6.
const (
	MiscPreemptionRateMask = 0x1F   // timer ticks every 2^rate TSC ticks
	MiscStoreLMA           = 1 << 5 // VM exits store EFER.LMA in "IA-32e mode guest"
	MiscActivityHLT        = 1 << 6 // activity state 1 (HLT) supported
	MiscActivityShutdown   = 1 << 7
	MiscActivityWaitSIPI   = 1 << 8
)

// IA32_VMX_EPT_VPID_CAP bits, App. A.10.
const (
	EPTExecuteOnly      = 1 << 0
	EPTWalkLength4      = 1 << 6
	EPTWalkLength5      = 1 << 7
	EPTMemTypeUC        = 1 << 8
	EPTMemTypeWB        = 1 << 14
	EPTLarge2M          = 1 << 16
	EPTLarge1G          = 1 << 17
	EPTINVEPT           = 1 << 20
	EPTAccessedDirty    = 1 << 21
	EPTAdvancedExitInfo = 1 << 22
	EPTINVEPTSingle     = 1 << 25
	EPTINVEPTAll        = 1 << 26
	VPIDINVVPID         = 1 << 32
	VPIDINVVPIDAddress  = 1 << 40
	VPIDINVVPIDSingle   = 1 << 41
	VPIDINVVPIDAll      = 1 << 42
)

// CPUID bits for VMX, SDM Vol. 2A CPUID leaf 01H ECX.
const (
	CPUID01_ECX_VMX        = 5
	CPUID01_ECX_Hypervisor = 31
)

// MSRReader reads an MSR; the hardware one is cpu.RDMSR, pinned.
type MSRReader func(msr uint32) uint64

// Caps are the VMX capability MSRs of one CPU. Zero for an MSR the CPU does
// not have (reading it would raise #GP).
type Caps struct {
	VMX            bool // CPUID.01H:ECX.VMX
	FeatureControl uint64
	Basic          uint64
	// Pin, Proc, Exit and Entry are the MSRs that govern the controls:
	// the TRUE_* ones when Basic bit 55 is set.
	Pin, Proc, Exit, Entry uint64
	Proc2                  uint64
	Misc                   uint64
	EPTVPID                uint64
	VMFunc                 uint64
	CR0Fixed0, CR0Fixed1   uint64
	CR4Fixed0, CR4Fixed1   uint64
}

// ReadCaps reads the capability MSRs in the order App. A allows: nothing
// past IA32_FEATURE_CONTROL without CPUID.VMX, the secondary controls only
// when the primary ones allow them, EPT/VPID capabilities only when a
// secondary control allows EPT or VPID, VMFUNC only when VM functions are.
func ReadCaps(vmx bool, rd MSRReader) Caps {
	c := Caps{VMX: vmx}
	if !vmx {
		return c
	}
	c.FeatureControl = rd(IA32_FEATURE_CONTROL)
	c.Basic = rd(IA32_VMX_BASIC)
	pin, proc, exit, entry := uint32(IA32_VMX_PINBASED_CTLS), uint32(IA32_VMX_PROCBASED_CTLS), uint32(IA32_VMX_EXIT_CTLS), uint32(IA32_VMX_ENTRY_CTLS)
	if c.Basic&BasicTrueControls != 0 {
		pin, proc, exit, entry = IA32_VMX_TRUE_PINBASED_CTLS, IA32_VMX_TRUE_PROCBASED_CTLS, IA32_VMX_TRUE_EXIT_CTLS, IA32_VMX_TRUE_ENTRY_CTLS
	}
	c.Pin, c.Proc, c.Exit, c.Entry = rd(pin), rd(proc), rd(exit), rd(entry)
	c.Misc = rd(IA32_VMX_MISC)
	c.CR0Fixed0, c.CR0Fixed1 = rd(IA32_VMX_CR0_FIXED0), rd(IA32_VMX_CR0_FIXED1)
	c.CR4Fixed0, c.CR4Fixed1 = rd(IA32_VMX_CR4_FIXED0), rd(IA32_VMX_CR4_FIXED1)
	if c.Proc>>32&ProcActivateSecondary != 0 {
		c.Proc2 = rd(IA32_VMX_PROCBASED_CTLS2)
	}
	if c.Proc2>>32&(Proc2EnableEPT|Proc2EnableVPID) != 0 {
		c.EPTVPID = rd(IA32_VMX_EPT_VPID_CAP)
	}
	if c.Proc2>>32&Proc2EnableVMFunctions != 0 {
		c.VMFunc = rd(IA32_VMX_VMFUNC)
	}
	return c
}

// may1 reports whether the control bit of a capability MSR may be 1.
func may1(capMSR uint64, bit uint32) bool { return uint32(capMSR>>32)&bit != 0 }

// Features are what doppel needs to know about a CPU, derived from Caps.
type Features struct {
	VMX               bool // CPUID reports VMX
	LockedOff         bool // firmware locked IA32_FEATURE_CONTROL without VMXON outside SMX
	Unlocked          bool // IA32_FEATURE_CONTROL not locked: doppel may enable VMX itself
	Revision          uint32
	RegionSize        int
	EPT, VPID         bool
	EPTAccessedDirty  bool
	EPTWB, EPTWalk4   bool
	EPT2M, EPT1G      bool
	INVEPTSingle      bool
	PML               bool
	UnrestrictedGuest bool
	PreemptionTimer   bool
	PreemptionRate    uint
	ActivityHLT       bool
	TrueControls      bool
}

// Features decodes the capabilities.
func (c Caps) Features() Features {
	f := Features{VMX: c.VMX}
	if !c.VMX {
		return f
	}
	fc := c.FeatureControl
	f.LockedOff = fc&FeatureControlLock != 0 && fc&FeatureControlVMXOutsideSMX == 0
	f.Unlocked = fc&FeatureControlLock == 0
	f.Revision = uint32(c.Basic & BasicRevisionMask)
	f.RegionSize = int(c.Basic & BasicRegionSizeMask >> BasicRegionSizeShift)
	f.TrueControls = c.Basic&BasicTrueControls != 0
	sec := may1(c.Proc, ProcActivateSecondary)
	f.EPT = sec && may1(c.Proc2, Proc2EnableEPT)
	f.VPID = sec && may1(c.Proc2, Proc2EnableVPID)
	f.UnrestrictedGuest = f.EPT && may1(c.Proc2, Proc2UnrestrictedGuest)
	f.EPTAccessedDirty = f.EPT && c.EPTVPID&EPTAccessedDirty != 0
	f.PML = f.EPTAccessedDirty && may1(c.Proc2, Proc2EnablePML)
	f.EPTWB = c.EPTVPID&EPTMemTypeWB != 0
	f.EPTWalk4 = c.EPTVPID&EPTWalkLength4 != 0
	f.EPT2M = c.EPTVPID&EPTLarge2M != 0
	f.EPT1G = c.EPTVPID&EPTLarge1G != 0
	f.INVEPTSingle = c.EPTVPID&EPTINVEPT != 0 && c.EPTVPID&EPTINVEPTSingle != 0
	f.PreemptionTimer = may1(c.Pin, PinActivatePreemptionTimer)
	f.PreemptionRate = uint(c.Misc & MiscPreemptionRateMask)
	f.ActivityHLT = c.Misc&MiscActivityHLT != 0
	return f
}

// Usable returns nil if doppel can run an EPT guest with dirty tracking
// on this CPU, else an error saying what is missing and what to do.
func (f Features) Usable() error {
	switch {
	case !f.VMX:
		return fmt.Errorf("vmm: no VT-x: CPUID.01H:ECX.VMX[bit 5] is 0 (an AMD CPU, an emulator without VMX, or a hypervisor that hides it)")
	case f.LockedOff:
		return fmt.Errorf("vmm: VT-x disabled in firmware: enable Intel Virtualization Technology (VT-x) in the BIOS setup")
	case !f.EPT:
		return fmt.Errorf("vmm: VT-x without EPT: doppel needs extended page tables")
	case !f.EPTWalk4 || !f.EPTWB:
		return fmt.Errorf("vmm: EPT without 4-level write-back page walks")
	case !f.EPTAccessedDirty:
		return fmt.Errorf("vmm: EPT without accessed/dirty flags: no dirty-page tracking")
	case !f.INVEPTSingle:
		return fmt.Errorf("vmm: no single-context INVEPT")
	case !f.UnrestrictedGuest:
		return fmt.Errorf("vmm: no unrestricted guest: the test guest starts with paging off")
	}
	return nil
}
