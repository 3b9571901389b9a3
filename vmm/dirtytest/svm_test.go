package dirtytest

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/doppel-ft/doppel/ept"
	"github.com/doppel-ft/doppel/vmm"
	"github.com/doppel-ft/doppel/vmm/svm"
)

// TestNPTRoundsAndProbes plays the test guest against nested page tables
// on ept's simulated CPU (NPT A/D bits) with the Device wired as RunSVM
// wires it: every round exact by the NPT scan, probes outside guest RAM
// resumed at the fixup through NestedPageFault, probes inside it checked.
func TestNPTRoundsAndProbes(t *testing.T) {
	const mem = 16 << 20
	r, err := ept.NewHostRegion(0x8000_0000, mem+mem/256+64*4096)
	if err != nil {
		t.Fatal(err)
	}
	tb, _ := ept.New(r, nil, ept.Options{Nested: true})
	ram, _ := r.AllocGuestRAM(mem, ept.LargeSize)
	if err := tb.Map(0, mem, ram, ept.PermRWX, ept.MapOpt{}); err != nil {
		t.Fatal(err)
	}
	cpu := ept.NewSimCPU(tb)
	cpu.RAM = r
	m := &machine{region: r, tables: tb, ram: ram}
	var con bytes.Buffer
	var tick uint64
	clock := func() uint64 { tick++; return tick }
	dev, err := NewDevice(Config{Rounds: 12, Seed: 777, MemSize: mem, Source: ept.ScanSource{T: tb}, Mode: "npt", Out: &con, Clock: clock,
		Probes: []uint64{mem, 0xFEE0_0000, 0x3000}, ReadGuest: m.readGuest})
	if err != nil {
		t.Fatal(err)
	}
	var page [512]uint64
	v := &svm.VCPU{VMCB: svm.NewVMCB(&page), Bus: &vmm.IOBus{}}
	if err := v.Bus.Add("doppel-test", PortBase, NumPorts, dev); err != nil {
		t.Fatal(err)
	}
	in := func(off uint16) uint32 { return v.Bus.In(PortBase+off, 4) }
	out := func(off uint16, x uint32) { v.Bus.Out(PortBase+off, 4, x) }
	for steps := 0; ; steps++ {
		if steps > 1000 {
			t.Fatal("guest loops forever")
		}
		cmd := in(PortCmd)
		if cmd == CmdStop {
			break
		}
		switch cmd {
		case CmdRound:
			seed, count, size := in(PortSeed), in(PortCount), in(PortMemSize)
			_ = cpu.Write32(0xFF<<12, seed) // the stack page
			writes := Model(seed, count, size)
			for _, x := range writes {
				if err := cpu.Write32(uint64(x.Page)<<12|uint64(x.Offset), x.Value); err != nil {
					t.Fatal(err)
				}
			}
			for _, x := range writes {
				out(PortPage, x.Page)
			}
			out(PortDone, uint32(len(writes)))
		case CmdProbe:
			out(PortFixup, 0x100040)
			for gpa := in(PortProbe); gpa != 0; gpa = in(PortProbe) {
				if err := cpu.Write32(uint64(gpa), gpa^ProbeMarker); err != nil {
					v.VMCB.Set64(svm.SaveRIP, 0)
					act, err := dev.NestedPageFault(v, uint64(gpa), svm.NPFWrite|svm.NPFFinalGPA)
					if act != vmm.ActionResume || err != nil || v.VMCB.Get64(svm.SaveRIP) != 0x100040 {
						t.Fatalf("probe %#x: %v %v rip %#x", gpa, act, err, v.VMCB.Get64(svm.SaveRIP))
					}
					continue
				}
				out(PortProbed, 1)
			}
		}
	}
	s := con.String()
	if dev.Err != nil || !strings.Contains(s, "ept-dirty: done 12/12") || strings.Count(s, "ept-dirty: exact round=") != 12 {
		t.Errorf("%v\n%s", dev.Err, s)
	}
	for _, want := range []string{
		"ept-isolation: ok probes=3 violations=2",
		"probe gpa=0x1000000 -> nested page fault (write, not present), guest resumed",
		"probe gpa=0x3000 -> the guest's own RAM",
		"harvest round=0 mode=npt",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("missing %q:\n%s", want, s)
		}
	}
	// A fault away from any probe stops the guest with the NPF sentinel.
	if act, err := dev.NestedPageFault(v, 0x5000_0000, svm.NPFWrite); act != vmm.ActionStop || !errors.Is(err, svm.ErrNestedPageFault) {
		t.Errorf("stray NPF: %v %v", act, err)
	}
	// The decoder's reader goes through the nested tables.
	b := make([]byte, 4)
	if err := m.readGuestBytes(0x3000, b); err != nil || uint32(b[0])|uint32(b[1])<<8|uint32(b[2])<<16|uint32(b[3])<<24 != 0x3000^ProbeMarker {
		t.Errorf("readGuestBytes: % x %v", b, err)
	}
	if err := m.readGuestBytes(mem, b); err == nil {
		t.Error("readGuestBytes beyond guest RAM succeeded")
	}
}
