package vmm

import "fmt"

func yesno(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// Report describes the capabilities in lines for the console, ending with
// whether doppel can run its guests here and, if not, what to do.
func (c Caps) Report() []string {
	f := c.Features()
	if !f.VMX {
		return []string{"vmx: " + f.Usable().Error()[len("vmm: "):]}
	}
	lines := []string{
		fmt.Sprintf("vmx: VT-x present: VMCS revision %#x, region %d bytes, TRUE controls %s",
			f.Revision, f.RegionSize, yesno(f.TrueControls)),
		fmt.Sprintf("vmx: IA32_FEATURE_CONTROL %#x: %s", c.FeatureControl, featureControlText(c.FeatureControl)),
		fmt.Sprintf("vmx: EPT %s (4-level %s, WB %s, 2M %s, 1G %s, single-context INVEPT %s), EPT A/D %s, PML %s",
			yesno(f.EPT), yesno(f.EPTWalk4), yesno(f.EPTWB), yesno(f.EPT2M), yesno(f.EPT1G),
			yesno(f.INVEPTSingle), yesno(f.EPTAccessedDirty), yesno(f.PML)),
		fmt.Sprintf("vmx: VPID %s, unrestricted guest %s, preemption timer %s (TSC/%d), HLT activity state %s",
			yesno(f.VPID), yesno(f.UnrestrictedGuest), yesno(f.PreemptionTimer), 1<<f.PreemptionRate, yesno(f.ActivityHLT)),
	}
	if err := f.Usable(); err != nil {
		return append(lines, "vmx: not usable: "+err.Error()[len("vmm: "):])
	}
	how := "PML, scan as fallback"
	if !f.PML {
		how = "scan of EPT dirty flags (no PML)"
	}
	return append(lines, "vmx: usable: EPT guests with dirty tracking by "+how)
}

func featureControlText(fc uint64) string {
	switch {
	case fc&FeatureControlLock == 0:
		return "unlocked (doppel sets VMXON outside SMX and locks it)"
	case fc&FeatureControlVMXOutsideSMX == 0:
		return "locked with VMXON outside SMX off"
	}
	return "locked, VMXON outside SMX allowed"
}
