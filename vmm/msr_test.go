package vmm

import (
	"errors"
	"testing"
)

type fakeDeadline struct{ v uint64 }

func (d *fakeDeadline) TSCDeadline() uint64     { return d.v }
func (d *fakeDeadline) SetTSCDeadline(v uint64) { d.v = v }

func newTestMSRs(bsp bool) (*GuestMSRs, fakeVMCS, *fakeDeadline) {
	vmcs := fakeVMCS{GuestIA32EFER: EFER_LME | EFER_LMA, GuestIA32PAT: guestPAT}
	var frame [512]uint64
	area := NewMSRArea(&frame, SwitchedMSRs, make([]uint64, len(SwitchedMSRs)))
	g := NewGuestMSRs(vmcs, area, bsp)
	d := &fakeDeadline{}
	g.Deadline = d
	tsc := uint64(1000)
	g.TSC = func() uint64 { return tsc }
	g.SetTSC = func(v uint64) { tsc = v }
	return g, vmcs, d
}

func TestGuestMSRRead(t *testing.T) {
	g, _, d := newTestMSRs(true)
	ap, _, _ := newTestMSRs(false)
	d.v = 12345
	for _, tc := range []struct {
		name string
		g    *GuestMSRs
		msr  uint32
		want uint64
	}{
		{"apic base bsp", g, IA32_APIC_BASE, 0xFEE0_0900},
		{"apic base ap", ap, IA32_APIC_BASE, 0xFEE0_0800},
		{"efer from vmcs", g, IA32_EFER, EFER_LME | EFER_LMA},
		{"pat from vmcs", g, IA32_PAT, guestPAT},
		{"feature control locked, no vmx", g, IA32_FEATURE_CONTROL, 1},
		{"mtrrcap", g, IA32_MTRRCAP, 0x508},
		{"misc enable", g, IA32_MISC_ENABLE, 0x1801},
		{"tsc", g, IA32_TSC, 1000},
		{"tsc deadline", g, IA32_TSC_DEADLINE, 12345},
		{"mcg cap", g, IA32_MCG_CAP, 0},
		{"lstar in area", g, IA32_LSTAR, 0},
		{"var mtrr", g, IA32_MTRR_PHYSBASE0 + 15, 0},
		{"fixed mtrr", g, IA32_MTRR_FIX4K_F8, 0},
	} {
		got, err := tc.g.Read(tc.msr)
		if err != nil || got != tc.want {
			t.Errorf("%s: rdmsr %#x = %#x, %v; want %#x", tc.name, tc.msr, got, err, tc.want)
		}
	}
	for _, msr := range []uint32{IA32_SPEC_CTRL, IA32_XSS, IA32_TSC_ADJUST, 0x800, 0x3F, IA32_MTRR_PHYSBASE0 + 16, 0xC000_0104, 0x4000_0000} {
		if _, err := g.Read(msr); !errors.Is(err, ErrMSRFault) {
			t.Errorf("rdmsr %#x: err = %v, want ErrMSRFault", msr, err)
		}
	}
	g.Deadline = nil
	if _, err := g.Read(IA32_TSC_DEADLINE); !errors.Is(err, ErrMSRFault) {
		t.Errorf("TSC deadline without a LAPIC that has it: %v", err)
	}
}

func TestGuestMSRWrite(t *testing.T) {
	for _, tc := range []struct {
		name  string
		msr   uint32
		v     uint64
		fault bool
		check func(t *testing.T, g *GuestMSRs, vmcs fakeVMCS, d *fakeDeadline)
	}{
		{"efer nxe keeps lma", IA32_EFER, EFER_SCE | EFER_LME | EFER_NXE, false, func(t *testing.T, g *GuestMSRs, vmcs fakeVMCS, _ *fakeDeadline) {
			if want := uint64(EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE); vmcs[GuestIA32EFER] != want {
				t.Errorf("EFER = %#x, want %#x", vmcs[GuestIA32EFER], want)
			}
		}},
		{"efer reserved", IA32_EFER, 1 << 20, true, nil},
		{"pat", IA32_PAT, 0x0007_0406_0007_0401, false, func(t *testing.T, g *GuestMSRs, vmcs fakeVMCS, _ *fakeDeadline) {
			if vmcs[GuestIA32PAT] != 0x0007_0406_0007_0401 {
				t.Errorf("PAT = %#x", vmcs[GuestIA32PAT])
			}
		}},
		{"pat bad type", IA32_PAT, 0x02, true, nil},
		{"lstar", IA32_LSTAR, 0xFFFF_FFFF_8100_0000, false, func(t *testing.T, g *GuestMSRs, _ fakeVMCS, _ *fakeDeadline) {
			if v, _ := g.Area.Get(IA32_LSTAR); v != 0xFFFF_FFFF_8100_0000 {
				t.Errorf("LSTAR in area = %#x", v)
			}
		}},
		{"lstar non-canonical", IA32_LSTAR, 0x8000_0000_0000_0000, true, nil},
		{"kernel gs", IA32_KERNEL_GS_BASE, 0xFFFF_8880_0000_0000, false, nil},
		{"tsc aux", IA32_TSC_AUX, 1, false, nil},
		{"tsc aux reserved", IA32_TSC_AUX, 1 << 32, true, nil},
		{"fs base", IA32_FS_BASE, 0x7F00_0000_0000, false, func(t *testing.T, _ *GuestMSRs, vmcs fakeVMCS, _ *fakeDeadline) {
			if vmcs[GuestFSBase] != 0x7F00_0000_0000 {
				t.Errorf("FS base = %#x", vmcs[GuestFSBase])
			}
		}},
		{"apic base same", IA32_APIC_BASE, 0xFEE0_0800, false, func(t *testing.T, g *GuestMSRs, _ fakeVMCS, _ *fakeDeadline) {
			if g.APICBase != 0xFEE0_0900 {
				t.Errorf("APIC base = %#x (BSP bit must stay)", g.APICBase)
			}
		}},
		{"apic base move", IA32_APIC_BASE, 0xFEF0_0800, true, nil},
		{"x2apic", IA32_APIC_BASE, 0xFEE0_0C00, true, nil},
		{"mtrr def", IA32_MTRR_DEF_TYPE, 0xC06, false, func(t *testing.T, g *GuestMSRs, _ fakeVMCS, _ *fakeDeadline) {
			if g.MTRRDef != 0xC06 {
				t.Errorf("MTRR def = %#x", g.MTRRDef)
			}
		}},
		{"mtrr def bad type", IA32_MTRR_DEF_TYPE, 0x2, true, nil},
		{"var mtrr", IA32_MTRR_PHYSBASE0 + 2, 0x8000_0006, false, func(t *testing.T, g *GuestMSRs, _ fakeVMCS, _ *fakeDeadline) {
			if v, _ := g.Read(IA32_MTRR_PHYSBASE0 + 2); v != 0x8000_0006 {
				t.Errorf("var MTRR read back %#x", v)
			}
		}},
		{"fixed mtrr", IA32_MTRR_FIX16K_A, 0x0606_0606_0606_0606, false, nil},
		{"fixed mtrr bad", IA32_MTRR_FIX16K_A, 0x0203, true, nil},
		{"tsc deadline", IA32_TSC_DEADLINE, 999, false, func(t *testing.T, _ *GuestMSRs, _ fakeVMCS, d *fakeDeadline) {
			if d.v != 999 {
				t.Errorf("deadline = %d", d.v)
			}
		}},
		{"tsc", IA32_TSC, 5, false, func(t *testing.T, g *GuestMSRs, _ fakeVMCS, _ *fakeDeadline) {
			if g.TSC() != 5 {
				t.Errorf("TSC = %d", g.TSC())
			}
		}},
		{"misc enable same", IA32_MISC_ENABLE, guestMiscEnable, false, nil},
		{"misc enable monitor", IA32_MISC_ENABLE, guestMiscEnable | 1<<18, true, nil},
		{"microcode probe", IA32_BIOS_SIGN_ID, 0, false, nil},
		{"debugctl 0", IA32_DEBUGCTL, 0, false, nil},
		{"debugctl lbr", IA32_DEBUGCTL, 1, true, nil},
		{"spec ctrl", IA32_SPEC_CTRL, 1, true, nil},
		{"feature control", IA32_FEATURE_CONTROL, 5, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, vmcs, d := newTestMSRs(true)
			err := g.Write(tc.msr, tc.v)
			if tc.fault != errors.Is(err, ErrMSRFault) || (!tc.fault && err != nil) {
				t.Fatalf("wrmsr %#x=%#x: %v, want fault %v", tc.msr, tc.v, err, tc.fault)
			}
			if tc.check != nil {
				tc.check(t, g, vmcs, d)
			}
		})
	}
}

func TestMSRBitmap(t *testing.T) {
	var b [4096]byte
	read := []uint32{IA32_FS_BASE, IA32_GS_BASE, IA32_TSC, IA32_STAR, IA32_KERNEL_GS_BASE}
	write := []uint32{IA32_FS_BASE, IA32_GS_BASE, IA32_KERNEL_GS_BASE}
	if err := MSRBitmap(&b, read, write); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		msr   uint32
		write bool
		exits bool
	}{
		{IA32_FS_BASE, false, false}, {IA32_FS_BASE, true, false},
		{IA32_TSC, false, false}, {IA32_TSC, true, true},
		{IA32_STAR, false, false}, {IA32_STAR, true, true},
		{IA32_KERNEL_GS_BASE, true, false},
		{IA32_EFER, false, true}, {IA32_EFER, true, true},
		{IA32_APIC_BASE, false, true},
		{0x4000_0000, false, true},
	} {
		if got := MSRExits(&b, tc.msr, tc.write); got != tc.exits {
			t.Errorf("msr %#x write=%v exits %v, want %v", tc.msr, tc.write, got, tc.exits)
		}
	}
	// The bit positions of the SDM: TSC (0x10) read is byte 2 bit 0,
	// FS_BASE (0xC0000100) write is byte 3072+32 bit 0.
	if b[2]&1 != 0 || b[3072+32]&1 != 0 || b[1024+32]&1 != 0 {
		t.Errorf("bits in the wrong place: %#x %#x %#x", b[2], b[3072+32], b[1024+32])
	}
	if b[2]&2 == 0 {
		t.Error("MSR 0x11 does not exit")
	}
	if err := MSRBitmap(&b, []uint32{0x4000_0000}, nil); err == nil {
		t.Error("an MSR outside the bitmap's ranges was accepted")
	}
}

// TestGuestMiscEnable: the guest sees the host's fast-strings setting
// (Bochs runs with it off; firmware turns it on on real machines) and
// never the host's other bits.
func TestGuestMiscEnable(t *testing.T) {
	for _, tc := range []struct {
		name string
		host uint64
		want uint64
	}{
		{"fast strings off (Bochs)", 0, MISC_ENABLE_BTS_UNAVAIL | MISC_ENABLE_PEBS_UNAVAIL},
		{"fast strings on", MISC_ENABLE_FAST_STRING, MISC_ENABLE_FAST_STRING | MISC_ENABLE_BTS_UNAVAIL | MISC_ENABLE_PEBS_UNAVAIL},
		// Firmware's usual value: fast strings (0), automatic thermal
		// control (3), performance monitoring (7), EIST (16), MONITOR
		// (18), xTPR disable (23): only fast strings passes.
		{"typical firmware", 0x85_0089, MISC_ENABLE_FAST_STRING | MISC_ENABLE_BTS_UNAVAIL | MISC_ENABLE_PEBS_UNAVAIL},
		{"everything but fast strings", ^uint64(MISC_ENABLE_FAST_STRING), MISC_ENABLE_BTS_UNAVAIL | MISC_ENABLE_PEBS_UNAVAIL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := GuestMiscEnable(tc.host)
			if got != tc.want {
				t.Fatalf("GuestMiscEnable(%#x) = %#x, want %#x", tc.host, got, tc.want)
			}
			// Linux writes back what it read: that must be accepted, and
			// so must toggling fast strings; MONITOR must not.
			g, _, _ := newTestMSRs(true)
			g.MiscEnable = got
			for _, v := range []uint64{got, got ^ MISC_ENABLE_FAST_STRING} {
				if err := g.Write(IA32_MISC_ENABLE, v); err != nil {
					t.Errorf("write %#x: %v", v, err)
				}
				if r, _ := g.Read(IA32_MISC_ENABLE); r != v {
					t.Errorf("read back %#x after writing %#x", r, v)
				}
			}
			if err := g.Write(IA32_MISC_ENABLE, g.MiscEnable|1<<18); err == nil {
				t.Errorf("enabling MONITOR accepted")
			}
		})
	}
}
