package dirtytest

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/doppel-ft/doppel/ept"
	"github.com/doppel-ft/doppel/vmm"
)

type mapVMCS map[vmm.Field]uint64

func (m mapVMCS) Read(f vmm.Field) (uint64, error)  { return m[f], nil }
func (m mapVMCS) Write(f vmm.Field, v uint64) error { m[f] = v; return nil }

// world is a guest of memSize bytes behind EPT on a simulated CPU, with the
// test port on a bus, played by simGuest the way testguest/guest.S runs.
type world struct {
	r    *ept.Region
	t    *ept.Tables
	cpu  *ept.SimCPU
	ram  uint64
	bus  *vmm.IOBus
	dev  *Device
	vcpu *vmm.VCPU
	con  bytes.Buffer
}

func newWorld(t *testing.T, memSize uint32, pml bool, rounds int, probes []uint64) *world {
	w := &world{}
	var err error
	w.r, err = ept.NewHostRegion(0x8000_0000, uint64(memSize)+uint64(memSize)/256+64*4096)
	if err != nil {
		t.Fatal(err)
	}
	w.t, _ = ept.New(w.r, nil, ept.Options{AccessedDirty: true})
	w.ram, err = w.r.AllocGuestRAM(uint64(memSize), ept.LargeSize)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.t.Map(0, uint64(memSize), w.ram, ept.PermRWX, ept.MapOpt{}); err != nil {
		t.Fatal(err)
	}
	w.cpu = ept.NewSimCPU(w.t)
	w.cpu.RAM = w.r
	var src ept.DirtySource = ept.ScanSource{T: w.t}
	mode := "scan"
	if pml {
		w.cpu.PML = true
		ps := ept.NewPMLSource(w.t, &w.cpu.Log, w.cpu, uint64(memSize)/4096)
		w.cpu.PMLFull = func() { _, _ = ps.Drain() }
		src, mode = ps, "pml"
	}
	w.vcpu = &vmm.VCPU{VMCS: mapVMCS{}}
	w.dev, err = NewDevice(Config{
		Rounds: rounds, Seed: 12345, MemSize: memSize, Source: src, Mode: mode, Out: &w.con,
		Exits: func() *[vmm.NumExitReasons]uint64 { return &w.vcpu.Counts }, Probes: probes,
		ReadGuest: func(gpa uint64) (uint32, error) {
			m, ok := w.t.Lookup(gpa)
			if !ok {
				return 0, errors.New("not mapped")
			}
			b, err := w.r.Bytes(m.HPA+gpa-m.GPA, 4)
			if err != nil {
				return 0, err
			}
			return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	w.bus = &vmm.IOBus{}
	if err := w.bus.Add("doppel-test", PortBase, NumPorts, w.dev); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *world) in(off uint16) uint32 {
	w.vcpu.Counts[vmm.ExitIOInstruction]++
	return w.bus.In(PortBase+off, 4)
}

func (w *world) out(off uint16, v uint32) {
	w.vcpu.Counts[vmm.ExitIOInstruction]++
	w.bus.Out(PortBase+off, 4, v)
}

// simGuest runs the test guest's program. stackPage is dirtied each round
// like the real guest's stack; wild is an extra page written in round 2 to
// show a mismatch when set.
func (w *world) simGuest(t *testing.T, wild uint32) {
	const stackPage = 0xFF
	for steps := 0; ; steps++ {
		if steps > 10000 {
			t.Fatal("guest loops forever")
		}
		switch w.in(PortCmd) {
		case CmdStop:
			return
		case CmdRound:
			seed, count, mem := w.in(PortSeed), w.in(PortCount), w.in(PortMemSize)
			_ = w.cpu.Write32(stackPage<<12, seed)
			writes := Model(seed, count, mem)
			for _, x := range writes {
				if err := w.cpu.Write32(uint64(x.Page)<<12|uint64(x.Offset), x.Value); err != nil {
					t.Fatal(err)
				}
			}
			if wild != 0 && w.dev.round == 2 {
				_ = w.cpu.Write32(uint64(wild)<<12, 1)
			}
			for _, x := range writes {
				w.out(PortPage, x.Page)
			}
			w.out(PortDone, uint32(len(writes)))
		case CmdProbe:
			w.out(PortFixup, 0x100040)
			for gpa := w.in(PortProbe); gpa != 0; gpa = w.in(PortProbe) {
				if err := w.cpu.Write32(uint64(gpa), gpa^ProbeMarker); err != nil {
					w.vcpu.Counts[vmm.ExitEPTViolation]++
					act, err := w.dev.EPTViolation(w.vcpu, uint64(gpa), vmm.EPTViolationQual(vmm.EPTQualWrite))
					if act != vmm.ActionResume || err != nil || w.vcpu.VMCS.(mapVMCS)[vmm.GuestRIP] != 0x100040 {
						t.Fatalf("probe %#x: %v %v", gpa, act, err)
					}
					continue
				}
				w.out(PortProbed, 1)
			}
		}
	}
}

func TestDirtyRoundsExact(t *testing.T) {
	for _, pml := range []bool{false, true} {
		w := newWorld(t, 16<<20, pml, 12, nil)
		w.simGuest(t, 0)
		out := w.con.String()
		if w.dev.Err != nil || !strings.Contains(out, "ept-dirty: done 12/12") {
			t.Errorf("pml=%v: %v\n%s", pml, w.dev.Err, out)
		}
		if got := strings.Count(out, "ept-dirty: exact round="); got != 12 {
			t.Errorf("pml=%v: %d exact rounds", pml, got)
		}
		if !strings.Contains(out, "extra=1") || !strings.Contains(out, "frames=0xff (guest stack/code)") {
			t.Errorf("pml=%v: the stack page is not listed as extra:\n%s", pml, out)
		}
		if !strings.Contains(out, "ept-dirty: exits round=0 I/O-instruction=") {
			t.Errorf("no exit counts:\n%s", out)
		}
	}
}

func TestDirtyRoundMismatch(t *testing.T) {
	// A write outside the model and outside the window must be flagged.
	w := newWorld(t, 16<<20, false, 4, nil)
	w.simGuest(t, 0x345)
	out := w.con.String()
	if w.dev.Err == nil || !strings.Contains(out, "ept-dirty: mismatch round=2 ") || !strings.Contains(out, "unexpected=1 [0x345]") ||
		!strings.Contains(out, "ept-dirty: done 3/4") {
		t.Errorf("mismatch not reported: %v\n%s", w.dev.Err, out)
	}
}

func TestCompareMissed(t *testing.T) {
	model := []Write{{Page: 5}, {Page: 9}, {Page: 5}}
	rep := ept.NewBitmap(64)
	rep.Set(5)
	rep.Set(9)
	h := ept.NewBitmap(64)
	h.Set(5)
	r := Compare(model, 64, rep, 3, 3, h)
	if r.OK() || len(r.Missed) != 1 || r.Missed[0] != 9 || r.Pages != 2 {
		t.Errorf("%+v", r)
	}
	if s := r.String(); !strings.Contains(s, "missed=1 [0x9]") {
		t.Errorf("%q", s)
	}
	if r := Compare(model, 64, rep, 2, 3, h); r.ReportDiffers == "" {
		t.Error("a DONE count differing from the reports passed")
	}
}

func TestIsolationProbes(t *testing.T) {
	const mem = 16 << 20
	w := newWorld(t, mem, false, 1, nil)
	tablesLo, _ := w.r.TableFrames()
	probes := []uint64{mem, mem + 0x123000, 0xFEE0_0000, 0x3000, tablesLo & 0xFFFF_F000 % mem}
	w = newWorld(t, mem, false, 1, probes)
	w.simGuest(t, 0)
	out := w.con.String()
	if w.dev.Err != nil || !strings.Contains(out, "ept-isolation: ok probes=5 violations=3") {
		t.Errorf("%v\n%s", w.dev.Err, out)
	}
	if !strings.Contains(out, "probe gpa=0x3000 -> the guest's own RAM") {
		t.Errorf("in-RAM probe not checked:\n%s", out)
	}
}

func TestModelWindow(t *testing.T) {
	for _, w := range Model(7, 20000, 4<<20) {
		if InWindow(uint64(w.Page)) || w.Page >= 1024 || w.Offset > 0xFFC || w.Offset%4 != 0 {
			t.Fatalf("bad write %+v", w)
		}
	}
	// Reference values of xorshift32(1): 270369, 67634689, 2647435461.
	x := uint32(1)
	for _, want := range []uint32{270369, 67634689, 2647435461} {
		if x = xorshift32(x); x != want {
			t.Fatalf("xorshift32 %d, want %d", x, want)
		}
	}
}
