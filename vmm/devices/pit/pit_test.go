package pit

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/doppel-ft/doppel/vmm/devices/devtest"
)

func newPIT() (*PIT, *devtest.Clock, *devtest.Line) {
	clk, l := &devtest.Clock{}, &devtest.Line{}
	return New(clk, l), clk, l
}

// program sets counter ch to mode with an LSB-then-MSB count.
func program(p *PIT, ch, mode int, count uint16) {
	p.PortOut(3, 1, uint32(ch<<6|RWLSBMSB<<4|mode<<1))
	p.PortOut(uint16(ch), 1, uint32(count&0xFF))
	p.PortOut(uint16(ch), 1, uint32(count>>8))
}

func readCount(p *PIT, ch int) uint16 {
	p.PortOut(3, 1, uint32(ch<<6)) // latch
	lo := p.PortIn(uint16(ch), 1)
	hi := p.PortIn(uint16(ch), 1)
	return uint16(hi<<8 | lo)
}

func TestTicks(t *testing.T) {
	for _, tc := range []struct {
		ns   int64
		want uint64
	}{{0, 0}, {838, 0}, {839, 1}, {1e9, Freq}, {3600e9, 3600 * Freq}, {-5, 0}} {
		if got := ticks(tc.ns); got != tc.want {
			t.Errorf("ticks(%d) = %d, want %d", tc.ns, got, tc.want)
		}
	}
	for _, n := range []uint64{1, 2, 1000, Freq, 1 << 40} {
		ns := nanos(n)
		if ticks(ns) < n || ticks(ns-1) >= n {
			t.Errorf("nanos(%d) = %d is not the first ns reaching it", n, ns)
		}
	}
}

// Linux's periodic tick: mode 2 on counter 0, LATCH = 1193 (1000 Hz).
func TestRateGenerator(t *testing.T) {
	p, clk, irq := newPIT()
	program(p, 0, 2, 1193)
	if !irq.High {
		t.Fatal("mode 2 OUT low after the count was written")
	}
	dl, ok := p.NextDeadline()
	if !ok || dl != nanos(1193) {
		t.Fatalf("deadline %d %v, want %d", dl, ok, nanos(1193))
	}
	clk.T = dl - 1
	p.Poll(clk.T)
	if irq.Rises != 1 {
		t.Fatalf("rises %d before the deadline", irq.Rises)
	}
	clk.T = dl
	p.Poll(clk.T)
	if irq.Rises != 2 || !irq.High {
		t.Fatalf("no rising edge at the deadline: %d rises", irq.Rises)
	}
	// Ten periods late: the PIC still sees an edge (it would have latched
	// one anyway), and the next deadline is the next period boundary.
	clk.T = nanos(11*1193 + 5)
	p.Poll(clk.T)
	if irq.Rises != 3 {
		t.Errorf("late poll: %d rises, want 3", irq.Rises)
	}
	if dl, _ := p.NextDeadline(); dl != nanos(12*1193) {
		t.Errorf("next deadline %d, want %d", dl, nanos(12*1193))
	}
	if c := readCount(p, 0); c != 1193-5 {
		t.Errorf("count %d, want %d", c, 1193-5)
	}
}

func TestOneShotMode0(t *testing.T) {
	p, clk, irq := newPIT()
	program(p, 0, 0, 100)
	if irq.High {
		t.Fatal("mode 0 OUT high before terminal count")
	}
	clk.T = nanos(50)
	if c := readCount(p, 0); c != 50 {
		t.Errorf("count %d at 50 clocks", c)
	}
	dl, ok := p.NextDeadline()
	if !ok || dl != nanos(100) {
		t.Fatalf("deadline %d %v", dl, ok)
	}
	clk.T = dl
	p.Poll(dl)
	if !irq.High {
		t.Error("mode 0 OUT low at terminal count")
	}
	if _, ok := p.NextDeadline(); ok {
		t.Error("a one-shot armed again")
	}
	clk.T = nanos(110)
	if c := readCount(p, 0); c != 0xFFFF-9 {
		t.Errorf("count %#x after wrapping", c)
	}
}

func TestSquareWaveAndStatus(t *testing.T) {
	p, clk, _ := newPIT()
	program(p, 0, 3, 10)
	for _, tc := range []struct {
		clocks uint64
		out    bool
	}{{0, true}, {4, true}, {5, false}, {9, false}, {10, true}, {15, false}} {
		clk.T = nanos(tc.clocks)
		p.PortOut(3, 1, 0xE2) // read-back status of counter 0
		st := p.PortIn(0, 1)
		if got := st&StatusOut != 0; got != tc.out {
			t.Errorf("clock %d: OUT %v, want %v (status %#x)", tc.clocks, got, tc.out, st)
		}
		if st&0x3F != RWLSBMSB<<4|3<<1 {
			t.Errorf("status %#x", st)
		}
	}
}

// Linux's pit_calibrate_tsc: gate counter 2 through port 0x61, mode 0,
// wait for OUT in bit 5.
func TestCounter2Calibration(t *testing.T) {
	p, clk, _ := newPIT()
	spk := p.Speaker()
	spk.PortOut(0, 1, (spk.PortIn(0, 1)&^NMISCSpeaker)|NMISCGate2)
	program(p, 2, 0, 11932) // 10 ms
	clk.T = 9_999_000
	if spk.PortIn(0, 1)&NMISCOut2 != 0 {
		t.Error("OUT2 set before 10 ms")
	}
	clk.T = 10_000_200 // 11932 clocks are 10.00015 ms
	if spk.PortIn(0, 1)&NMISCOut2 == 0 {
		t.Error("OUT2 clear after 10 ms")
	}
	// Gate low pauses mode 0.
	program(p, 2, 0, 1000)
	clk.T += nanos(100)
	spk.PortOut(0, 1, 0)
	clk.T += nanos(5000)
	if c := readCount(p, 2); c != 900 {
		t.Errorf("count %d with the gate low, want 900", c)
	}
}

func TestLatchAndModes(t *testing.T) {
	p, clk, _ := newPIT()
	program(p, 1, 2, 500)
	p.PortOut(3, 1, 1<<6) // latch counter 1
	clk.T = nanos(100)
	lo := p.PortIn(1, 1)
	clk.T = nanos(300)
	hi := p.PortIn(1, 1)
	if hi<<8|lo != 500 {
		t.Errorf("latched count %d, want 500", hi<<8|lo)
	}
	// LSB-only access and mode 6 meaning mode 2.
	p.PortOut(3, 1, 1<<6|RWLSB<<4|6<<1)
	p.PortOut(1, 1, 200)
	clk.T += nanos(10)
	if c := p.PortIn(1, 1); c != 190 {
		t.Errorf("LSB read %d, want 190", c)
	}
	p.PortOut(3, 1, 0xE4) // read-back status of counter 1
	if st := p.PortIn(1, 1); st&0x0E != 2<<1 {
		t.Errorf("mode 6 reads as %d, want 2", (st>>1)&7)
	}
}

type subject struct {
	*PIT
	irq *devtest.Line
}

const (
	opIn = iota
	opOut
	opSpeakerIn
	opSpeakerOut
	opPoll
	opDeadline
)

func (s subject) Do(op devtest.Op) uint64 {
	switch op.Kind {
	case opIn:
		return uint64(s.PortIn(op.Offset, 1))
	case opOut:
		s.PortOut(op.Offset, 1, op.Value)
	case opSpeakerIn:
		return uint64(s.Speaker().PortIn(0, 1))
	case opSpeakerOut:
		s.Speaker().PortOut(0, 1, op.Value)
	case opPoll:
		s.Poll(s.clock.Nanotime())
	case opDeadline:
		d, ok := s.NextDeadline()
		if ok {
			return uint64(d)
		}
		return 1
	}
	return 0
}

func (s subject) Observe() string {
	o := fmt.Sprint(s.irq.High, s.irq.Rises)
	s.irq.Rises = 0
	return o
}

func genOp(r *rand.Rand) devtest.Op {
	op := devtest.Op{Kind: r.Intn(6), Offset: uint16(r.Intn(4)), Value: uint32(r.Intn(256))}
	if op.Kind == opOut && op.Offset == 3 && r.Intn(3) != 0 {
		op.Value &^= 0xC0 // counter 0 mostly
	}
	if op.Kind == opOut && op.Offset < 3 {
		op.Value = uint32(r.Intn(40)) // short counts: many edges
	}
	op.Delta = int64(r.Intn(30000))
	return op
}

func TestSaveRestoreRandom(t *testing.T) {
	for seed := int64(1); seed <= 50; seed++ {
		devtest.SaveRestore(t, seed, 2000, func(clk *devtest.Clock) devtest.Subject {
			l := &devtest.Line{}
			return subject{New(clk, l), l}
		}, genOp)
	}
}

func FuzzRestore(f *testing.F) {
	p, clk, _ := newPIT()
	program(p, 0, 2, 1193)
	program(p, 2, 3, 7)
	clk.T = 123456
	p.Speaker().PortOut(0, 1, 3)
	blob, _ := p.Save()
	f.Add(blob)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, _, _ := newPIT()
		program(p, 0, 0, 5)
		devtest.Restore(t, p, b)
		p.NextDeadline() // must not panic on any accepted state
		p.Poll(1 << 40)
		p.PortIn(0, 1)
	})
}
