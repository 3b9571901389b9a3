package i8042

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/doppel-ft/doppel/vmm/devices/devtest"
)

type rig struct {
	*Controller
	irq1, irq12 *devtest.Line
	resets      *int
}

func newRig() rig {
	r := rig{irq1: &devtest.Line{}, irq12: &devtest.Line{}, resets: new(int)}
	r.Controller = New(r.irq1, r.irq12, func() { *r.resets++ })
	return r
}

func (r rig) cmd(v uint8)   { r.PortOut(offStatus, 1, uint32(v)) }
func (r rig) data(v uint8)  { r.PortOut(offData, 1, uint32(v)) }
func (r rig) status() uint8 { return uint8(r.PortIn(offStatus, 1)) }

// drain reads the output buffer while OBF is set, as i8042_flush does.
func (r rig) drain() []uint8 {
	var b []uint8
	for r.status()&StatusOBF != 0 {
		b = append(b, uint8(r.PortIn(offData, 1)))
	}
	return b
}

func TestLinuxProbe(t *testing.T) {
	r := newRig()
	if s := r.status(); s == 0xFF || s&StatusOBF != 0 {
		t.Fatalf("status %#x", s)
	}
	for _, tc := range []struct {
		name string
		do   func()
		want []uint8
	}{
		{"read CTR", func() { r.cmd(CmdReadCTR) }, []uint8{defaultCTR}},
		{"write CTR then read", func() { r.cmd(CmdWriteCTR); r.data(0x47); r.cmd(CmdReadCTR) }, []uint8{0x47}},
		{"self-test", func() { r.cmd(CmdSelfTest) }, []uint8{SelfTestOK}},
		{"keyboard interface test", func() { r.cmd(CmdKbdTest) }, []uint8{0}},
		{"aux interface test", func() { r.cmd(CmdAuxTest) }, []uint8{0}},
		{"aux loop", func() { r.cmd(CmdWriteAuxBuf); r.data(0x5A) }, []uint8{0x5A}},
		{"keyboard identify", func() { r.data(0xF2) }, []uint8{kbdACK, 0xAB, 0x83}},
		{"keyboard reset", func() { r.data(0xFF) }, []uint8{kbdACK, kbdBATOK}},
		{"keyboard LEDs", func() { r.data(0xED); r.data(0x07) }, []uint8{kbdACK, kbdACK}},
		{"get scan-code set", func() { r.data(0xF0); r.data(0) }, []uint8{kbdACK, kbdACK, 2}},
		{"echo", func() { r.data(kbdEcho) }, []uint8{kbdEcho}},
		{"not a command", func() { r.data(0x12) }, []uint8{kbdResend}},
		{"read output port", func() { r.cmd(CmdReadOutput) }, []uint8{defaultOut}},
	} {
		tc.do()
		if got := r.drain(); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: % x, want % x", tc.name, got, tc.want)
		}
	}
}

func TestInterrupts(t *testing.T) {
	r := newRig()
	r.cmd(CmdWriteCTR)
	r.data(CTRKbdInt | CTRAuxInt | CTRSys)
	r.data(0xF2) // three bytes queued
	if !r.irq1.High || r.irq1.Rises != 1 {
		t.Fatalf("IRQ1 %v after %d rises", r.irq1.High, r.irq1.Rises)
	}
	r.drain()
	if r.irq1.High || r.irq1.Rises != 3 {
		t.Errorf("each byte needs its own edge: %d rises, high %v", r.irq1.Rises, r.irq1.High)
	}
	// The aux loop byte comes with AUXB and IRQ12.
	r.cmd(CmdWriteAuxBuf)
	r.data(0x5A)
	if s := r.status(); s&(StatusOBF|StatusAUXB) != StatusOBF|StatusAUXB || !r.irq12.High || r.irq1.High {
		t.Errorf("aux byte: status %#x irq12 %v", s, r.irq12.High)
	}
	r.drain()
	// No mouse: a byte to the aux device times out with 0xFE.
	r.cmd(CmdWriteAux)
	r.data(0xF2)
	if s := r.status(); s&StatusTimeout == 0 || s&StatusAUXB == 0 {
		t.Errorf("aux write status %#x, want timeout from aux", s)
	}
	if b := r.PortIn(offData, 1); b != kbdResend {
		t.Errorf("aux write answered %#x", b)
	}
	// IRQ1 disabled in the CTR: data but no interrupt.
	r.cmd(CmdWriteCTR)
	r.data(CTRSys)
	r.data(kbdEcho)
	if r.irq1.High || r.status()&StatusOBF == 0 {
		t.Error("IRQ1 raised while disabled in the CTR")
	}
}

func TestResetLine(t *testing.T) {
	for _, tc := range []struct {
		name   string
		do     func(r rig)
		resets int
	}{
		{"pulse 0xFE", func(r rig) { r.cmd(CmdReset) }, 1},
		{"pulse 0xF0 (all four)", func(r rig) { r.cmd(0xF0) }, 1},
		{"pulse 0xFF (none)", func(r rig) { r.cmd(0xFF) }, 0},
		{"pulse 0xFD (A20 only)", func(r rig) { r.cmd(0xFD) }, 0},
		{"output port bit 0 clear", func(r rig) { r.cmd(CmdWriteOutput); r.data(0x02) }, 1},
		{"output port A20 off", func(r rig) { r.cmd(CmdWriteOutput); r.data(0x01) }, 0},
	} {
		r := newRig()
		tc.do(r)
		if *r.resets != tc.resets {
			t.Errorf("%s: %d resets, want %d", tc.name, *r.resets, tc.resets)
		}
	}
	r := newRig()
	r.cmd(CmdWriteOutput)
	r.data(0x01)
	if r.A20() {
		t.Error("A20 still on")
	}
}

func (r rig) Do(op devtest.Op) uint64 {
	switch op.Kind {
	case 0:
		return uint64(r.PortIn(op.Offset, 1))
	case 1:
		r.PortOut(op.Offset, 1, op.Value)
	}
	return 0
}

func (r rig) Observe() string {
	o := fmt.Sprint(r.irq1.High, r.irq1.Rises, r.irq12.High, r.irq12.Rises, *r.resets)
	r.irq1.Rises, r.irq12.Rises, *r.resets = 0, 0, 0
	return o
}

var interesting = []uint8{0x20, 0x21, 0x60, 0x61, 0xA7, 0xA8, 0xA9, 0xAA, 0xAB, 0xAD, 0xAE, 0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0xFE, 0xF2, 0xFF, 0xED, 0xF0, 0xF3, 0xEE, 0x03, 0x47, 0x00}

func TestSaveRestoreRandom(t *testing.T) {
	for seed := int64(1); seed <= 40; seed++ {
		devtest.SaveRestore(t, seed, 1500, func(*devtest.Clock) devtest.Subject {
			return newRig()
		}, func(r *rand.Rand) devtest.Op {
			off := uint16(offData)
			if r.Intn(2) == 0 {
				off = offStatus
			}
			v := uint32(interesting[r.Intn(len(interesting))])
			if r.Intn(5) == 0 {
				v = uint32(r.Intn(256))
			}
			return devtest.Op{Kind: r.Intn(2), Offset: off, Value: v}
		})
	}
}

func FuzzRestore(f *testing.F) {
	r := newRig()
	r.cmd(CmdWriteCTR)
	r.data(0x47)
	r.data(0xF2)
	r.cmd(CmdWriteAux)
	blob, _ := r.Save()
	f.Add(blob)
	f.Fuzz(func(t *testing.T, b []byte) {
		r := newRig()
		r.data(0xED)
		devtest.Restore(t, r, b)
	})
}
