package vmm

import (
	"strings"
	"testing"
)

func TestControlBits(t *testing.T) {
	// SDM Vol. 3C tables 25-5 to 25-15.
	for _, c := range []struct {
		name      string
		got, want uint32
	}{
		{"external-interrupt exiting", PinExternalInterruptExiting, 1 << 0},
		{"preemption timer", PinActivatePreemptionTimer, 1 << 6},
		{"HLT exiting", ProcHLTExiting, 1 << 7},
		{"unconditional I/O exiting", ProcUnconditionalIOExiting, 1 << 24},
		{"use I/O bitmaps", ProcUseIOBitmaps, 1 << 25},
		{"use MSR bitmaps", ProcUseMSRBitmaps, 1 << 28},
		{"activate secondary", ProcActivateSecondary, 1 << 31},
		{"enable EPT", Proc2EnableEPT, 1 << 1},
		{"enable VPID", Proc2EnableVPID, 1 << 5},
		{"unrestricted guest", Proc2UnrestrictedGuest, 1 << 7},
		{"enable PML", Proc2EnablePML, 1 << 17},
		{"host address-space size", ExitHostAddressSpaceSize, 1 << 9},
		{"ack interrupt on exit", ExitAcknowledgeInterrupt, 1 << 15},
		{"exit load EFER", ExitLoadIA32EFER, 1 << 21},
		{"IA-32e mode guest", EntryIA32eModeGuest, 1 << 9},
		{"entry load EFER", EntryLoadIA32EFER, 1 << 15},
	} {
		if c.got != c.want {
			t.Errorf("%s: %#x, want %#x", c.name, c.got, c.want)
		}
	}
}

func TestAdjustControls(t *testing.T) {
	for _, c := range []struct {
		name              string
		g                 ControlGroup
		desired, required uint32
		cap               uint64
		want              uint32
		err               string
	}{
		// Broadwell TRUE_PROCBASED: must1 0x04006172, may1 0xfff9fffe.
		{"default1 bits forced on", ProcBased, ProcHLTExiting, 0, 0xfff9fffe04006172, 0x04006172 | ProcHLTExiting, ""},
		{"unsupported wish dropped", ProcBased, 1 << 0, 0, 0xfff9fffe04006172, 0x04006172, ""},
		{"required and allowed", ProcBased2, 0, Proc2EnableEPT | Proc2UnrestrictedGuest, 0x57cff00000000, Proc2EnableEPT | Proc2UnrestrictedGuest, ""},
		{"PML required but absent", ProcBased2, 0, Proc2EnableEPT | Proc2EnablePML, 0x57cff00000000, 0, "enable PML"},
		{"PML wished, absent: dropped", ProcBased2, Proc2EnablePML, Proc2EnableEPT, 0x57cff00000000, Proc2EnableEPT, ""},
		{"EPT absent on Penryn", ProcBased2, 0, Proc2EnableEPT | Proc2UnrestrictedGuest, 0x4100000000, 0, "enable EPT, unrestricted guest"},
		{"pin must1", PinBased, PinExternalInterruptExiting, 0, 0x7f00000016, 0x16 | 1, ""},
	} {
		got, err := AdjustControls(c.g, c.desired, c.required, c.cap)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want one naming %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: %#x, %v; want %#x", c.name, got, err, c.want)
		}
	}
}

func TestFieldEncodings(t *testing.T) {
	for _, c := range []struct {
		f     Field
		enc   uint32
		width FieldWidth
		typ   FieldType
	}{
		{VirtualProcessorID, 0x0000, Width16, TypeControl},
		{PMLIndex, 0x0812, Width16, TypeGuest},
		{HostTRSelector, 0x0C0C, Width16, TypeHost},
		{EPTPointer, 0x201A, Width64, TypeControl},
		{PMLAddress, 0x200E, Width64, TypeControl},
		{GuestPhysicalAddress, 0x2400, Width64, TypeReadOnly},
		{VMCSLinkPointer, 0x2800, Width64, TypeGuest},
		{HostIA32EFER, 0x2C02, Width64, TypeHost},
		{SecondaryProcBasedControls, 0x401E, Width32, TypeControl},
		{VMInstructionError, 0x4400, Width32, TypeReadOnly},
		{ExitReason, 0x4402, Width32, TypeReadOnly},
		{GuestCSAccessRights, 0x4816, Width32, TypeGuest},
		{ExitQualification, 0x6400, WidthNatural, TypeReadOnly},
		{GuestRIP, 0x681E, WidthNatural, TypeGuest},
		{HostRSP, 0x6C14, WidthNatural, TypeHost},
		{HostRIP, 0x6C16, WidthNatural, TypeHost},
	} {
		if uint32(c.f) != c.enc || c.f.Width() != c.width || c.f.Type() != c.typ {
			t.Errorf("field %#x: width %d type %d, want %#x width %d type %d", uint32(c.f), c.f.Width(), c.f.Type(), c.enc, c.width, c.typ)
		}
	}
}
