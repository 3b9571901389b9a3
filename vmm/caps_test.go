package vmm

import (
	"strings"
	"testing"
)

// MSR dumps of real CPUs, from VirtualBox's CPU database
// (src/VBox/VMM/VMMR3/cpus/*.h). IA32_FEATURE_CONTROL is not in those
// dumps; 0x5 (locked, VMXON outside SMX) is what firmware with VT-x
// enabled leaves.
var (
	// Intel Core i7-5600U (Broadwell): EPT with A/D, no PML.
	broadwellI75600U = map[uint32]uint64{
		IA32_FEATURE_CONTROL: 0x5,
		0x480:                0xda040000000012,
		0x481:                0x7f00000016,
		0x482:                0xfff9fffe0401e172,
		0x483:                0x7fffff00036dff,
		0x484:                0xffff000011ff,
		0x485:                0x300481e5,
		0x486:                0x80000021,
		0x487:                0xffffffff,
		0x488:                0x2000,
		0x489:                0x3767ff,
		0x48a:                0x2a,
		0x48b:                0x57cff00000000,
		0x48c:                0xf0106334141,
		0x48d:                0x7f00000016,
		0x48e:                0xfff9fffe04006172,
		0x48f:                0x7fffff00036dfb,
		0x490:                0xffff000011fb,
		0x491:                0x1,
	}
	// Intel Xeon X5482 (Penryn): VT-x without EPT, no TRUE controls.
	penrynX5482 = map[uint32]uint64{
		IA32_FEATURE_CONTROL: 0x5,
		0x480:                0x5a08000000000d,
		0x481:                0x3f00000016,
		0x482:                0xf7f9fffe0401e172,
		0x483:                0x3ffff00036dff,
		0x484:                0x3fff000011ff,
		0x485:                0x403c0,
		0x486:                0x80000021,
		0x487:                0xffffffff,
		0x488:                0x2000,
		0x489:                0x27ff,
		0x48a:                0x2c,
		0x48b:                0x4100000000,
	}
)

func with(m map[uint32]uint64, msr uint32, v uint64) map[uint32]uint64 {
	n := map[uint32]uint64{}
	for k, x := range m {
		n[k] = x
	}
	n[msr] = v
	return n
}

// reader returns an MSRReader over m that fails the test on an MSR the
// CPU does not have (on hardware: #GP).
func reader(t *testing.T, m map[uint32]uint64) MSRReader {
	return func(msr uint32) uint64 {
		v, ok := m[msr]
		if !ok {
			t.Errorf("RDMSR %#x: not implemented by this CPU (#GP)", msr)
		}
		return v
	}
}

func TestCapsOfRealCPUs(t *testing.T) {
	for _, c := range []struct {
		name   string
		vmx    bool
		msrs   map[uint32]uint64
		want   Features
		usable string // "" if usable, else a substring of the error
		lines  []string
	}{
		{"Core i7-5600U Broadwell", true, broadwellI75600U, Features{
			VMX: true, Revision: 0x12, RegionSize: 1024, EPT: true, VPID: true, EPTAccessedDirty: true,
			EPTWB: true, EPTWalk4: true, EPT2M: true, EPT1G: true, INVEPTSingle: true,
			UnrestrictedGuest: true, PreemptionTimer: true, PreemptionRate: 5, ActivityHLT: true, TrueControls: true,
		}, "", []string{"EPT A/D yes, PML no", "unrestricted guest yes", "usable: EPT guests with dirty tracking by scan"}},
		{"Broadwell with PML added", true, with(broadwellI75600U, 0x48b, 0x57cff00000000|Proc2EnablePML<<32), Features{
			VMX: true, Revision: 0x12, RegionSize: 1024, EPT: true, VPID: true, EPTAccessedDirty: true, PML: true,
			EPTWB: true, EPTWalk4: true, EPT2M: true, EPT1G: true, INVEPTSingle: true,
			UnrestrictedGuest: true, PreemptionTimer: true, PreemptionRate: 5, ActivityHLT: true, TrueControls: true,
		}, "", []string{"PML yes", "dirty tracking by PML"}},
		{"Xeon X5482 Penryn", true, penrynX5482, Features{
			VMX: true, Revision: 0xd, RegionSize: 2048, ActivityHLT: true,
		}, "without EPT", []string{"EPT no", "not usable: VT-x without EPT"}},
		{"Broadwell locked off by firmware", true, with(broadwellI75600U, IA32_FEATURE_CONTROL, 0x1), Features{
			VMX: true, LockedOff: true, Revision: 0x12, RegionSize: 1024, EPT: true, VPID: true, EPTAccessedDirty: true,
			EPTWB: true, EPTWalk4: true, EPT2M: true, EPT1G: true, INVEPTSingle: true,
			UnrestrictedGuest: true, PreemptionTimer: true, PreemptionRate: 5, ActivityHLT: true, TrueControls: true,
		}, "disabled in firmware", []string{"locked with VMXON outside SMX off",
			"VT-x disabled in firmware: enable Intel Virtualization Technology (VT-x) in the BIOS setup"}},
		{"Broadwell unlocked", true, with(broadwellI75600U, IA32_FEATURE_CONTROL, 0), Features{
			VMX: true, Unlocked: true, Revision: 0x12, RegionSize: 1024, EPT: true, VPID: true, EPTAccessedDirty: true,
			EPTWB: true, EPTWalk4: true, EPT2M: true, EPT1G: true, INVEPTSingle: true,
			UnrestrictedGuest: true, PreemptionTimer: true, PreemptionRate: 5, ActivityHLT: true, TrueControls: true,
		}, "", []string{"unlocked"}},
		{"QEMU TCG or AMD: no VMX", false, map[uint32]uint64{}, Features{}, "no VT-x", []string{"vmx: no VT-x"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			caps := ReadCaps(c.vmx, reader(t, c.msrs))
			f := caps.Features()
			if f != c.want {
				t.Errorf("features\n got %+v\nwant %+v", f, c.want)
			}
			err := f.Usable()
			if (err == nil) != (c.usable == "") || err != nil && !strings.Contains(err.Error(), c.usable) {
				t.Errorf("Usable() = %v, want %q", err, c.usable)
			}
			report := strings.Join(caps.Report(), "\n")
			for _, l := range c.lines {
				if !strings.Contains(report, l) {
					t.Errorf("report lacks %q:\n%s", l, report)
				}
			}
		})
	}
}

func TestReadCapsUsesTrueControls(t *testing.T) {
	caps := ReadCaps(true, reader(t, broadwellI75600U))
	// TRUE_PROCBASED lets CR3-load/store exiting (bits 15, 16) be 0.
	if caps.Proc != 0xfff9fffe04006172 || caps.Entry != 0xffff000011fb {
		t.Errorf("proc %#x entry %#x: not the TRUE MSRs", caps.Proc, caps.Entry)
	}
	caps = ReadCaps(true, reader(t, penrynX5482))
	if caps.Proc != 0xf7f9fffe0401e172 || caps.EPTVPID != 0 {
		t.Errorf("Penryn: proc %#x ept %#x", caps.Proc, caps.EPTVPID)
	}
}
