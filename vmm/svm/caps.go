package svm

import (
	"errors"
	"fmt"
	"strings"
)

// CPUID bits and leaves of SVM, AMD APM Vol. 2, 15.4 "Enabling SVM" and
// Vol. 3 App. E.4.9 (Fn8000_000A), E.4.2 (Fn8000_0001_ECX).
const (
	// CPUID_80000001_ECX_SVM: SVM present (Fn8000_0001_ECX[2]).
	CPUID_80000001_ECX_SVM = 2
	// CPUIDLeafSVM is Fn8000_000A: EAX[7:0] SVM revision, EBX number of
	// ASIDs, EDX the feature bits below.
	CPUIDLeafSVM = 0x8000_000A
)

// Fn8000_000A_EDX feature bits (APM Vol. 3 E.4.9; Vol. 2 ch. 15).
const (
	FeatNP            = 0  // nested paging (15.25)
	FeatLbrVirt       = 1  // LBR virtualisation
	FeatSVML          = 2  // SVM lock (VM_CR.LOCK and SVM_KEY)
	FeatNRIPS         = 3  // NRIP save: next RIP in VMCB 0xC8 on instruction exits
	FeatTscRateMsr    = 4  // TSC ratio MSR
	FeatVmcbClean     = 5  // VMCB clean bits (15.15.3)
	FeatFlushByAsid   = 6  // TLB_CONTROL 3 and 7: flush this guest's ASID only
	FeatDecodeAssists = 7  // decode assists (15.33): instruction bytes in the VMCB
	FeatPauseFilter   = 10 // PAUSE intercept filter count
	FeatPauseThresh   = 12 // PAUSE filter threshold
	FeatAVIC          = 13 // AMD virtual interrupt controller (15.29)
)

// MSRs of SVM, APM Vol. 2 15.30 "SVM-Related MSRs".
const (
	// MSR_EFER is EFER; bit 12 SVME enables SVM (15.4).
	MSR_EFER  = 0xC000_0080
	EFER_SVME = 1 << 12
	// MSR_VM_CR controls SVM (15.30.1): bit 3 LOCK makes SVMDIS read
	// only, bit 4 SVMDIS makes setting EFER.SVME fault.
	MSR_VM_CR      = 0xC001_0114
	VM_CR_DPD      = 1 << 0
	VM_CR_R_INIT   = 1 << 1
	VM_CR_DIS_A20M = 1 << 2
	VM_CR_LOCK     = 1 << 3
	VM_CR_SVMDIS   = 1 << 4
	// MSR_VM_HSAVE_PA is the physical address of the host save area that
	// VMRUN writes the host state to (15.30.4).
	MSR_VM_HSAVE_PA = 0xC001_0117
)

// Caps are the raw SVM capability values of a CPU.
type Caps struct {
	// SVM: CPUID Fn8000_0001_ECX[SVM]. Without it the other fields are zero.
	SVM bool
	// Fn8000_000A EAX, EBX, EDX.
	Revision, NASID, FeatureBits uint32
	// VMCR is MSR VM_CR (read only when SVM is present).
	VMCR uint64
}

// ReadCaps gathers Caps through cpuid and rdmsr (cpu.CPUID and cpu.RDMSR on
// the hardware, fakes in tests). VM_CR is read only when CPUID reports SVM:
// the MSR does not exist otherwise.
func ReadCaps(cpuid func(leaf, sub uint32) (a, b, c, d uint32), rdmsr func(uint32) uint64) Caps {
	maxExt, _, _, _ := cpuid(0x8000_0000, 0)
	if maxExt < 0x8000_0001 {
		return Caps{}
	}
	_, _, ecx, _ := cpuid(0x8000_0001, 0)
	if ecx&(1<<CPUID_80000001_ECX_SVM) == 0 {
		return Caps{}
	}
	c := Caps{SVM: true, VMCR: rdmsr(MSR_VM_CR)}
	if maxExt >= CPUIDLeafSVM {
		a, b, _, d := cpuid(CPUIDLeafSVM, 0)
		c.Revision, c.NASID, c.FeatureBits = a&0xFF, b, d
	}
	return c
}

func (c Caps) has(bit int) bool { return c.FeatureBits&(1<<bit) != 0 }

// Features is the decoded view of Caps.
type Features struct {
	SVM, NP, LbrVirt, SVML, NRIPS, VmcbClean, FlushByAsid, DecodeAssists bool
	PauseFilter, AVIC                                                    bool
	Revision, NASID                                                      uint32
	// Disabled: VM_CR.SVMDIS, firmware turned SVM off; Locked: VM_CR.LOCK,
	// and only firmware (or an SVM_KEY) can undo it.
	Disabled, Locked bool
}

// Features decodes c.
func (c Caps) Features() Features {
	return Features{
		SVM: c.SVM, NP: c.has(FeatNP), LbrVirt: c.has(FeatLbrVirt), SVML: c.has(FeatSVML),
		NRIPS: c.has(FeatNRIPS), VmcbClean: c.has(FeatVmcbClean), FlushByAsid: c.has(FeatFlushByAsid),
		DecodeAssists: c.has(FeatDecodeAssists), PauseFilter: c.has(FeatPauseFilter), AVIC: c.has(FeatAVIC),
		Revision: c.Revision, NASID: c.NASID,
		Disabled: c.VMCR&VM_CR_SVMDIS != 0, Locked: c.VMCR&VM_CR_LOCK != 0,
	}
}

// Errors of Usable; the messages say why.
var (
	ErrNoSVM       = errors.New("svm: no AMD-V")
	ErrSVMDisabled = errors.New("svm: AMD-V disabled by firmware")
	ErrNoNPT       = errors.New("svm: no nested paging")
	ErrNoASID      = errors.New("svm: no guest ASID")
)

// Usable returns nil if doppel can run guests with these features: SVM on,
// nested paging (its dirty tracking needs NPT's D bits), an ASID besides
// the host's 0. NRIP save and decode assists are optional: without them
// doppel decodes the guest's instruction itself.
func (f Features) Usable() error {
	switch {
	case !f.SVM:
		return fmt.Errorf("%w (CPUID Fn8000_0001_ECX[2] SVM=0): the CPU or the emulator has no SVM", ErrNoSVM)
	case f.Disabled && f.Locked:
		return fmt.Errorf("%w (VM_CR.SVMDIS=1, VM_CR.LOCK=1): enable SVM (\"SVM Mode\", \"AMD-V\") in the firmware setup", ErrSVMDisabled)
	case f.Disabled:
		// Unlocked: SVMDIS is writable, but firmware meant it off.
		return fmt.Errorf("%w (VM_CR.SVMDIS=1, unlocked): enable SVM in the firmware setup", ErrSVMDisabled)
	case !f.NP:
		return fmt.Errorf("%w (CPUID Fn8000_000A_EDX[0] NP=0): doppel's memory isolation and dirty tracking need NPT", ErrNoNPT)
	case f.NASID < 2:
		return fmt.Errorf("%w (CPUID Fn8000_000A_EBX NASID=%d)", ErrNoASID, f.NASID)
	}
	return nil
}

func yesno(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// Report describes the capabilities in console lines, ending with whether
// doppel can run its guests here and, if not, why.
func (c Caps) Report() []string {
	f := c.Features()
	if !f.SVM {
		return []string{"svm: no AMD-V: CPUID Fn8000_0001_ECX[2] SVM=0"}
	}
	lines := []string{
		fmt.Sprintf("svm: AMD-V present: revision %d, %d ASIDs, VM_CR %#x (%s)", f.Revision, f.NASID, c.VMCR, vmcrText(c.VMCR)),
		fmt.Sprintf("svm: NPT %s, NRIP save %s, decode assists %s, VMCB clean bits %s, flush by ASID %s, AVIC %s",
			yesno(f.NP), yesno(f.NRIPS), yesno(f.DecodeAssists), yesno(f.VmcbClean), yesno(f.FlushByAsid), yesno(f.AVIC)),
		fmt.Sprintf("svm: LBR virtualisation %s, SVM lock %s, PAUSE filter %s", yesno(f.LbrVirt), yesno(f.SVML), yesno(f.PauseFilter)),
	}
	if err := f.Usable(); err != nil {
		return append(lines, "svm: not usable: "+strings.TrimPrefix(err.Error(), "svm: "))
	}
	how := "next RIP from the CPU (NRIP save)"
	if !f.NRIPS {
		how = "instruction lengths decoded by doppel (x86asm), no NRIP save"
	}
	if !f.DecodeAssists {
		how += "; no decode assists: MMIO operands decoded by doppel"
	}
	return append(lines, "svm: usable: NPT guests with dirty tracking by a scan of NPT D bits; "+how)
}

// vmcrText explains VM_CR's SVMDIS and LOCK (APM Vol. 2 15.30.1).
func vmcrText(v uint64) string {
	switch {
	case v&VM_CR_SVMDIS != 0 && v&VM_CR_LOCK != 0:
		return "SVMDIS=1 LOCK=1: firmware disabled SVM and locked it; EFER.SVME cannot be set until SVM is enabled in the firmware setup"
	case v&VM_CR_SVMDIS != 0:
		return "SVMDIS=1, unlocked: firmware disabled SVM; setting EFER.SVME faults"
	case v&VM_CR_LOCK != 0:
		return "SVMDIS=0 LOCK=1: SVM enabled and locked on"
	}
	return "SVMDIS=0: SVM enabled"
}
