package dirtytest

import (
	"bytes"
	"strings"
	"testing"

	"github.com/doppel-ft/doppel/ept"
	"github.com/doppel-ft/doppel/vmm"
)

// vmexitDevice is a Device with no rounds and no probe, straight into the
// VM-exit phases; exits and ticks are the test's to move.
func vmexitDevice(t *testing.T) (*Device, *[vmm.NumExitReasons]uint64, *uint64, *bytes.Buffer) {
	t.Helper()
	var exits [vmm.NumExitReasons]uint64
	var ticks uint64
	var out bytes.Buffer
	tb, err := ept.NewHostRegion(0x8000_0000, 64*4096+MinMemSize)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := ept.New(tb, nil, ept.Options{AccessedDirty: true})
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDevice(Config{
		MemSize: MinMemSize, Source: ept.ScanSource{T: tables}, Mode: "scan", Out: &out,
		Exits:  func() *[vmm.NumExitReasons]uint64 { return &exits },
		VMExit: &VMExitConfig{SpinIters: 1000, HostTicks: func() uint64 { return ticks }},
	})
	if err != nil {
		t.Fatal(err)
	}
	return d, &exits, &ticks, &out
}

func sig(s string) (b, c, d uint32) {
	w := func(i int) uint32 { return le32([]byte(s[i : i+4])) }
	return w(0), w(4), w(8)
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// guestCPUID plays the guest's cpuid report.
func guestCPUID(d *Device, ecx, max uint32, vendor string) {
	b, c, dx := sig(vendor)
	for _, v := range []uint32{ecx, max, b, c, dx} {
		d.PortOut(PortCPUID, 4, v)
	}
}

func TestVMExitPhases(t *testing.T) {
	for _, c := range []struct {
		name          string
		ecx           uint32
		vendor        string
		ticks0        uint64 // host ticks during the IF=0 spin
		ext, ticks    uint64 // during the IF=1 spin
		tripleFault   bool
		wantErr, want string
	}{
		{"all pass", 1<<31 | 1, vmm.HypervisorSignature, 12, 826, 514, true, "",
			"vmexit: external-interrupt exits=826 host-ticks=514 during guest spin"},
		{"vmx visible", 1<<31 | 1<<5, vmm.HypervisorSignature, 3, 3, 3, true, "VMX set", "vmexit: FAIL cpuid"},
		{"no hypervisor bit", 0, vmm.HypervisorSignature, 3, 3, 3, true, "hypervisor clear", "vmexit: FAIL cpuid"},
		{"wrong vendor", 1 << 31, "KVMKVMKVM\x00\x00\x00", 3, 3, 3, true, "vendor", "vmexit: FAIL cpuid"},
		{"no exit with IF=0", 1 << 31, vmm.HypervisorSignature, 0, 3, 3, true, "whole IF=0 spin",
			"vmexit: spin with IF=0: external-interrupt exits=0 preemption-timer exits=0 host-ticks=0"},
		{"no external interrupts", 1 << 31, vmm.HypervisorSignature, 3, 0, 5, true, "no external-interrupt exit",
			"vmexit: external-interrupt exits=0 host-ticks=5 during guest spin"},
		{"host starved", 1 << 31, vmm.HypervisorSignature, 3, 7, 0, true, "never ran", "vmexit: FAIL the host thread"},
		{"no triple fault", 1 << 31, vmm.HypervisorSignature, 3, 7, 7, false, "without the triple fault", "vmexit: FAIL the guest stopped"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, exits, ticks, out := vmexitDevice(t)
			if cmd := d.PortIn(PortCmd, 4); cmd != CmdCPUID {
				t.Fatalf("first command %d, want cpuid", cmd)
			}
			guestCPUID(d, c.ecx, 0x4000_0000, c.vendor)
			for i, spin := range []struct {
				ext, ticks uint64
				want       uint32
			}{{0, c.ticks0, 1000}, {c.ext, c.ticks, 1000 | SpinInterruptsOn}} {
				if cmd := d.PortIn(PortCmd, 4); cmd != CmdSpin {
					t.Fatalf("command %d, want spin %d", cmd, i)
				}
				if n := d.PortIn(PortSpin, 4); n != spin.want {
					t.Fatalf("spin %d: SPIN %#x, want %#x", i, n, spin.want)
				}
				exits[vmm.ExitExternalInterrupt] += spin.ext
				if i == 0 { // the IF=0 spin: exits by the preemption timer
					exits[vmm.ExitPreemptionTimer] += spin.ticks
				}
				*ticks += spin.ticks
				d.PortOut(PortSpun, 4, 0)
			}
			var runErr error
			if c.tripleFault {
				if cmd := d.PortIn(PortCmd, 4); cmd != CmdTripleFault {
					t.Fatalf("last command %d, want triple fault", cmd)
				}
				runErr = &vmm.TripleFaultError{RIP: 0x100185}
			}
			if err := d.Finish(runErr); err != nil {
				t.Fatalf("Finish returned the run error %v", err)
			}
			switch {
			case c.wantErr == "" && d.Err != nil:
				t.Errorf("unexpected failure %v", d.Err)
			case c.wantErr != "" && (d.Err == nil || !strings.Contains(d.Err.Error(), c.wantErr)):
				t.Errorf("error %v, want one containing %q", d.Err, c.wantErr)
			}
			if !strings.Contains(out.String(), c.want) {
				t.Errorf("console lacks %q:\n%s", c.want, out.String())
			}
			if c.tripleFault && !strings.Contains(out.String(), "vmexit: guest triple fault at rip=0x100185 (guest stopped)") {
				t.Errorf("no triple-fault line:\n%s", out.String())
			}
		})
	}
}

// A triple fault nobody asked for stays the run's error.
func TestUnexpectedTripleFault(t *testing.T) {
	var out bytes.Buffer
	d := &Device{cfg: Config{Out: &out}}
	tf := &vmm.TripleFaultError{RIP: 0x1234}
	if err := d.Finish(tf); err != tf {
		t.Errorf("Finish: %v", err)
	}
	if !strings.Contains(out.String(), "vmexit: guest triple fault at rip=0x1234 (guest stopped)") {
		t.Errorf("console: %q", out.String())
	}
}

func TestSigString(t *testing.T) {
	b, c, d := sig(vmm.HypervisorSignature)
	if got := sigString(b, c, d); got != vmm.HypervisorSignature {
		t.Errorf("%q", got)
	}
}

func TestParseCounts(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"", FormatCounts(DefaultCounts), true},
		{"500,5000", "500,5000", true},
		{" 1, 2 ,3", "1,2,3", true},
		{"1,,2", "", false},
		{"-1", "", false},
		{"5000000000", "", false},
	} {
		got, err := ParseCounts(c.in)
		if (err == nil) != c.ok || c.ok && FormatCounts(got) != c.want {
			t.Errorf("ParseCounts(%q) = %v, %v; want %q ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}

func TestCPUIDRoundTrip(t *testing.T) {
	d, exits, _, out := vmexitDevice(t)
	clock := uint64(1000)
	d.cfg.Clock = func() uint64 { return clock }
	d.PortOut(PortMark, 4, 0)
	clock += 1000 * 2500
	exits[vmm.ExitCPUID] += 1000
	d.PortOut(PortMark, 4, 0)
	if want := "vmexit: cpuid exit round trip 2500 cycles (1000 exits)"; !strings.Contains(out.String(), want) {
		t.Errorf("console %q, want %q", out.String(), want)
	}
}
